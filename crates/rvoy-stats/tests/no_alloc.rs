//! The recording hot path must not allocate: a counting global allocator
//! (counting only on the test thread, only while armed) checks that counter,
//! gauge and histogram recording and cached status-code lookups perform zero
//! allocations once the thread's segments exist.

// The allocator shim needs `unsafe impl GlobalAlloc`; it is confined to this
// test crate and forwards every call unchanged to the system allocator.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use rvoy_stats::{GaugeImportMode, HistogramUnit, StatusCodeCounters, Store};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

fn note() {
    if ARMED.try_with(Cell::get).unwrap_or(false) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments, so
// `System`'s guarantees hold; the bookkeeping touches only a const-initialized
// thread-local `Cell` and an atomic, neither of which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded verbatim; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (all
        // allocations go through `alloc`/`alloc_zeroed`/`realloc` above).
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded verbatim.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: forwarded verbatim; `ptr`/`layout` come from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn count_allocs(f: impl FnOnce()) -> usize {
    let before = ALLOCS.load(Ordering::Relaxed);
    ARMED.with(|a| a.set(true));
    f();
    ARMED.with(|a| a.set(false));
    ALLOCS.load(Ordering::Relaxed) - before
}

#[test]
fn recording_does_not_allocate() {
    let store = Store::new();
    let _guard = store.register_thread();
    let scope = store.scope("cluster.backend");
    let counter = scope.counter("upstream_rq_total");
    let gauge = scope.gauge("upstream_rq_active", GaugeImportMode::Accumulate);
    let hist = scope.histogram("upstream_rq_time", HistogramUnit::Milliseconds);
    let codes = StatusCodeCounters::new(&scope, "upstream_rq_");
    // Warm-up: first touch allocates this thread's segments and the
    // histogram's decade blocks; the first use of a code registers it.
    counter.inc();
    gauge.inc();
    for v in [0u64, 5, 50, 500, 5000] {
        hist.record(v);
    }
    codes.inc(200);

    let n = count_allocs(|| {
        for i in 0..10_000u64 {
            counter.inc();
            counter.add(i);
            gauge.add(2);
            gauge.sub(1);
            hist.record(i % 10_000);
            codes.inc(200);
        }
    });
    assert_eq!(n, 0, "hot path allocated {n} times");
    assert!(store.counter_value(counter) > 10_000);
}
