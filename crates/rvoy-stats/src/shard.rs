//! Per-thread shards and the thread-local that finds the current thread's
//! shard: the lock-free, allocation-free recording path.
//!
//! A shard is two chunked arrays (value slots for counters/gauges, cells for
//! histograms) made of fixed-size segments that are allocated on first touch
//! and never moved or freed while the store lives, so the main thread can read
//! them while the owner writes. Each shard has exactly one writer (its owner
//! thread), which records with a relaxed load and store (no read-modify-write);
//! the store's shared fallback shard (used only when a thread's thread-locals
//! are already torn down) is written with atomic read-modify-write instead.
//!
//! Slot encoding: bit 0 is the "used" flag, bits 1.. hold the value (counters:
//! unsigned running total; gauges: signed running delta), so one relaxed store
//! updates both.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use crate::histogram::HistShard;

// Sizes: a segment holds 512 slots (4 KiB of counters and gauges), a
// directory 64 segments and the top 256 directories: 8.4 million stats of
// each kind. A `Chunked` writes its top (256 entries of 24 bytes) when it is
// created and a directory (64 entries, 1.5 KiB) when a slot of its range is
// first recorded. Directories of 512 segments (12 KiB) held 33.5 million
// stats, and an idle proxy with one worker kept six of them resident
// (72 KiB) for the few segments a small config uses.
const SEG_BITS: usize = 9;
const SEG_LEN: usize = 1 << SEG_BITS;
const DIR_BITS: usize = 6;
const DIR_LEN: usize = 1 << DIR_BITS;
const TOP_LEN: usize = 256;

/// Largest number of slots of one kind a store can hand out.
pub(crate) const MAX_SLOTS: usize = SEG_LEN * DIR_LEN * TOP_LEN;

type Segment<T> = OnceLock<Box<[T]>>;
type Directory<T> = OnceLock<Box<[Segment<T>]>>;

/// A lazily allocated, never-moving array of `T` indexed by `u32`.
pub(crate) struct Chunked<T> {
    top: Box<[Directory<T>]>,
}

impl<T: Default> Chunked<T> {
    pub(crate) fn new() -> Self {
        Chunked {
            top: (0..TOP_LEN).map(|_| OnceLock::new()).collect(),
        }
    }

    /// The element at `idx` if its segment exists. Never allocates.
    #[inline]
    pub(crate) fn get(&self, idx: u32) -> Option<&T> {
        let idx = idx as usize;
        let dir = self.top.get(idx >> (SEG_BITS + DIR_BITS))?.get()?;
        let seg = dir[(idx >> SEG_BITS) & (DIR_LEN - 1)].get()?;
        seg.get(idx & (SEG_LEN - 1))
    }

    /// The element at `idx`, allocating its segment on first touch.
    #[inline]
    pub(crate) fn get_or_alloc(&self, idx: u32) -> Option<&T> {
        let idx = idx as usize;
        let dir = self
            .top
            .get(idx >> (SEG_BITS + DIR_BITS))?
            .get_or_init(|| (0..DIR_LEN).map(|_| OnceLock::new()).collect());
        let seg = dir[(idx >> SEG_BITS) & (DIR_LEN - 1)]
            .get_or_init(|| (0..SEG_LEN).map(|_| T::default()).collect());
        seg.get(idx & (SEG_LEN - 1))
    }

    /// Calls `f(first_index, segment)` for every allocated segment whose
    /// first index is below `limit`, in index order.
    pub(crate) fn for_each_segment(&self, limit: usize, mut f: impl FnMut(usize, &[T])) {
        for (t, dir) in self.top.iter().enumerate() {
            let base_t = t << (SEG_BITS + DIR_BITS);
            if base_t >= limit {
                break;
            }
            let Some(dir) = dir.get() else { continue };
            for (d, seg) in dir.iter().enumerate() {
                let base = base_t + (d << SEG_BITS);
                if base >= limit {
                    break;
                }
                if let Some(seg) = seg.get() {
                    f(base, seg);
                }
            }
        }
    }
}

/// One recording thread's slice of every stat.
pub(crate) struct Shard {
    pub(crate) values: Chunked<AtomicU64>,
    pub(crate) hists: Chunked<OnceLock<Box<HistShard>>>,
    shared: bool,
}

impl Shard {
    pub(crate) fn new(shared: bool) -> Self {
        Shard {
            values: Chunked::new(),
            hists: Chunked::new(),
            shared,
        }
    }

    /// Adds an already-shifted delta to a value slot and marks it used.
    #[inline]
    pub(crate) fn value_add(&self, slot: u32, shifted: u64) {
        if let Some(c) = self.values.get_or_alloc(slot) {
            if self.shared {
                c.fetch_add(shifted, Ordering::Relaxed);
                c.fetch_or(1, Ordering::Relaxed);
            } else {
                let v = c.load(Ordering::Relaxed);
                c.store(v.wrapping_add(shifted) | 1, Ordering::Relaxed);
            }
        }
    }

    /// Records one histogram value.
    #[inline]
    pub(crate) fn hist_record(&self, slot: u32, value: u64) {
        if let Some(cell) = self.hists.get_or_alloc(slot) {
            cell.get_or_init(Box::default).record(value, self.shared);
        }
    }

    /// The raw encoded value slot (0 when never touched).
    #[inline]
    pub(crate) fn raw(&self, slot: u32) -> u64 {
        self.values
            .get(slot)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// The store side of a thread-local entry: lets the thread give its shard
/// back when it exits.
pub(crate) trait ShardOwner: Send + Sync {
    fn release_shard(&self, index: usize);
}

struct LocalEntry {
    store_id: u32,
    shard: Arc<Shard>,
    index: usize,
    owner: Weak<dyn ShardOwner>,
}

#[derive(Default)]
struct Local {
    entries: Vec<LocalEntry>,
}

impl Drop for Local {
    fn drop(&mut self) {
        for e in self.entries.drain(..) {
            if let Some(owner) = e.owner.upgrade() {
                owner.release_shard(e.index);
            }
        }
    }
}

thread_local! {
    static LOCAL: RefCell<Local> = const { RefCell::new(Local { entries: Vec::new() }) };
}

/// Runs `f` on this thread's shard of store `store_id`; `None` if this thread
/// has no shard for it (or its thread-locals are gone).
#[inline]
pub(crate) fn with_local<R>(store_id: u32, f: impl FnOnce(&Shard) -> R) -> Option<R> {
    LOCAL
        .try_with(|l| {
            let l = l.try_borrow().ok()?;
            let e = l.entries.iter().find(|e| e.store_id == store_id)?;
            Some(f(&e.shard))
        })
        .ok()
        .flatten()
}

/// This thread's shard of `store_id`, if it has one.
pub(crate) fn local_shard(store_id: u32) -> Option<Arc<Shard>> {
    LOCAL
        .try_with(|l| {
            let l = l.try_borrow().ok()?;
            let e = l.entries.iter().find(|e| e.store_id == store_id)?;
            Some(e.shard.clone())
        })
        .ok()
        .flatten()
}

/// Whether this thread already has a shard for `store_id`.
pub(crate) fn has_local(store_id: u32) -> bool {
    with_local(store_id, |_| ()).is_some()
}

/// Installs `shard` as this thread's shard for `store_id`. Returns false (and
/// does nothing) if thread-locals are unavailable.
pub(crate) fn install_local(
    store_id: u32,
    shard: Arc<Shard>,
    index: usize,
    owner: Weak<dyn ShardOwner>,
) -> bool {
    LOCAL
        .try_with(|l| match l.try_borrow_mut() {
            Ok(mut l) => {
                // Drop entries of stores that no longer exist.
                l.entries.retain(|e| e.owner.strong_count() > 0);
                l.entries.push(LocalEntry {
                    store_id,
                    shard,
                    index,
                    owner,
                });
                true
            }
            Err(_) => false,
        })
        .unwrap_or(false)
}

/// Removes this thread's shard for `store_id`, returning its pool index.
pub(crate) fn uninstall_local(store_id: u32) -> Option<usize> {
    LOCAL
        .try_with(|l| {
            let mut l = l.try_borrow_mut().ok()?;
            let pos = l.entries.iter().position(|e| e.store_id == store_id)?;
            Some(l.entries.swap_remove(pos).index)
        })
        .ok()
        .flatten()
}
