//! [`Recorder`]: a worker's handle on its own shard of a store, for the
//! request path. Every [`Counter::inc`] finds the thread's shard through a
//! thread-local (its state check, a borrow, a search by store); a worker
//! that records a few dozen stats per request looks its shard up once, when
//! it starts, and records through the recorder instead: the handle's slot
//! in the shard it already holds.

use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

use crate::shard::Shard;
use crate::store::{Counter, Gauge, Histogram, StatusCodeCounters};

/// This thread's shard of one store ([`crate::Store::recorder`]). A handle
/// of another store, or a recorder made on a thread without a shard (the
/// [`Default`] one), records through the handle's own path instead, so a
/// recorder is never wrong, only sometimes not faster.
///
/// Not `Send`: the shard is the thread's, whose registration
/// ([`crate::Store::register_thread`]) must outlive the recorder.
#[derive(Clone, Default)]
pub struct Recorder {
    store: u32,
    shard: Option<Arc<Shard>>,
    _not_send: PhantomData<Rc<()>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("store", &self.store)
            .field("local", &self.shard.is_some())
            .finish()
    }
}

impl Recorder {
    pub(crate) fn new(store: u32, shard: Option<Arc<Shard>>) -> Recorder {
        Recorder {
            store,
            shard,
            _not_send: PhantomData,
        }
    }

    /// The shard to record `store`'s slots in, if it is this recorder's.
    #[inline]
    fn shard_of(&self, store: u32) -> Option<&Shard> {
        match &self.shard {
            Some(s) if store == self.store => Some(s),
            _ => None,
        }
    }

    /// Adds an already-shifted delta to a value slot of this recorder's
    /// shard, or runs the handle's own path (`fallback`).
    #[inline]
    fn value_add(&self, (store, slot): (u32, u32), shifted: u64, fallback: impl FnOnce()) {
        match self.shard_of(store) {
            Some(s) => s.value_add(slot, shifted),
            None => fallback(),
        }
    }

    /// [`Counter::inc`].
    #[inline]
    pub fn inc(&self, c: Counter) {
        self.add(c, 1);
    }

    /// [`Counter::add`].
    #[inline]
    pub fn add(&self, c: Counter, n: u64) {
        self.value_add(c.parts(), n << 1, || c.add(n));
    }

    /// [`Gauge::inc`].
    #[inline]
    pub fn gauge_inc(&self, g: Gauge) {
        self.gauge_add(g, 1);
    }

    /// [`Gauge::dec`].
    #[inline]
    pub fn gauge_dec(&self, g: Gauge) {
        self.gauge_sub(g, 1);
    }

    /// [`Gauge::add`].
    #[inline]
    pub fn gauge_add(&self, g: Gauge, n: u64) {
        self.value_add(g.parts(), n << 1, || g.add(n));
    }

    /// [`Gauge::sub`] (wrapping, as the handle's).
    #[inline]
    pub fn gauge_sub(&self, g: Gauge, n: u64) {
        self.value_add(g.parts(), 0u64.wrapping_sub(n << 1), || g.sub(n));
    }

    /// [`StatusCodeCounters::inc`]: `code`'s counter and its class's.
    #[inline]
    pub fn inc_code(&self, codes: &StatusCodeCounters, code: u16) {
        self.inc(codes.class(code));
        self.inc(codes.code(code));
    }

    /// [`Histogram::record`].
    #[inline]
    pub fn record(&self, h: Histogram, value: u64) {
        let (store, slot) = h.parts();
        match self.shard_of(store) {
            Some(s) => s.hist_record(slot, value),
            None => h.record(value),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{GaugeImportMode, HistogramUnit, Store};

    #[test]
    fn records_into_the_threads_shard_and_falls_back_for_other_stores() {
        let store = Store::new();
        let other = Store::new();
        let _thread = store.register_thread();
        let rec = store.recorder();
        let c = store.counter("c");
        let g = store.gauge("g", GaugeImportMode::Accumulate);
        let h = store.histogram("h", HistogramUnit::Milliseconds);
        let foreign = other.counter("c");
        rec.inc(c);
        rec.add(c, 4);
        rec.gauge_inc(g);
        rec.gauge_inc(g);
        rec.gauge_dec(g);
        rec.gauge_add(g, 5);
        rec.gauge_sub(g, 2);
        rec.record(h, 7);
        rec.inc(foreign);
        rec.inc(crate::Counter::null());
        assert_eq!(store.counter_value(c), 5);
        assert_eq!(store.gauge_value(g), 4);
        assert_eq!(other.counter_value(foreign), 1);
        store.merge_histograms();
        let snap = store.snapshot();
        let hist = snap
            .histograms()
            .find(|v| v.name() == "h")
            .expect("the histogram");
        assert_eq!(hist.cumulative().sample_count, 1);
    }

    #[test]
    fn a_recorder_without_a_shard_records_through_the_handles() {
        let store = Store::new();
        let c = store.counter("c");
        let rec = crate::Recorder::default();
        rec.inc(c);
        rec.gauge_dec(crate::Gauge::null());
        assert_eq!(store.counter_value(c), 1);
    }
}
