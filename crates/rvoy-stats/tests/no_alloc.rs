//! Recording stats on the request path allocates nothing. Once a worker's
//! shard is installed and the histogram blocks and status-code hundreds a
//! worker uses are touched, counter, gauge, histogram and status-code updates
//! are atomic operations on preallocated slots. A counting global allocator
//! (this test binary only) checks it on the recording thread.

// The counting allocator needs `unsafe impl GlobalAlloc`; it is confined to
// this test binary and forwards every call unchanged to the system allocator.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use rvoy_stats::{GaugeImportMode, HistogramUnit, StatusCodeCounters, Store};

struct Counting;

thread_local! {
    /// Allocations made by this thread (const-initialized: no allocation).
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: every method forwards to `System` with the caller's arguments, so
// `System`'s guarantees hold; the bookkeeping only touches a const-initialized
// thread-local `Cell`, which does not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged (see above).
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged (see above).
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged (see above).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged (see above).
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn recording_on_the_request_path_allocates_nothing() {
    let store = Store::new();
    let _worker = store.register_thread();
    let rq_total = store.counter("http.ingress.downstream_rq_total");
    let rx_bytes = store.counter("http.ingress.downstream_cx_rx_bytes_total");
    let active = store.gauge(
        "http.ingress.downstream_rq_active",
        GaugeImportMode::Accumulate,
    );
    let rq_time = store.histogram(
        "http.ingress.downstream_rq_time",
        HistogramUnit::Milliseconds,
    );
    let codes = StatusCodeCounters::new(&store.scope("cluster.backend"), "upstream_rq_");
    let record = |v: u64| {
        rq_total.inc();
        rx_bytes.add(v);
        active.inc();
        rq_time.record(v);
        codes.inc(if v.is_multiple_of(2) { 200 } else { 503 });
        active.dec();
    };
    // A worker's first records install its shard and touch what it uses.
    for v in 0..10_000 {
        record(v);
    }
    let before = allocations();
    for v in 0..100_000 {
        record(v % 10_000);
    }
    assert_eq!(allocations() - before, 0, "allocations while recording");
    let snapshot = store.snapshot();
    let total = snapshot
        .counters()
        .find(|c| c.name() == "http.ingress.downstream_rq_total")
        .map(|c| c.value());
    assert_eq!(total, Some(110_000));
}
