//! The stats store: registration of named stats (main thread, config time;
//! occasionally workers), the copyable handles that record into the current
//! thread's shard, scopes, per-status-code counter tables, histogram merging,
//! counter reset, and snapshots for rendering and sinks.
//!
//! Hot path: `Counter::add`, `Gauge::add/sub`, `Histogram::record` find the
//! thread's shard through one thread-local lookup and do a relaxed load+store
//! on a slot only that thread writes; no lock, hash, format or allocation
//! (except the one-time allocation of a segment the first time a thread
//! touches it). A thread that records without having called
//! [`Store::register_thread`] is registered automatically on its first record
//! (that one call takes a lock).
//!
//! Gauge semantics: a gauge's value is `base + sum(per-shard deltas)` (mod
//! 2^64, as Envoy's `uint64_t` gauges). `add`/`sub`/`inc`/`dec` change the
//! calling thread's delta; `set(v)` (main thread, not hot path: takes a lock)
//! reads the current delta sum `S` and stores `base = v - S`. An `add` racing
//! with `set` is ordered either before it (absorbed into `S`, overwritten) or
//! after it (kept), which is exactly the linearizable behaviour of Envoy's
//! single atomic gauge. Concurrent `set` calls are serialized by the lock.
//!
//! Counter reset (`reset_counters`, admin `/reset_counters`) never writes
//! worker slots: it records a per-counter baseline subtracted on read.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, Weak};

use smallvec::SmallVec;

use crate::histogram::{
    DEFAULT_BUCKETS, HistogramStatistics, HistogramUnit, NUM_BUCKETS, SparseHist,
};
use crate::matcher::{NameMatcher, StatsMatcher};
use crate::shard::{self, Chunked, MAX_SLOTS, Shard, ShardOwner};
use crate::snapshot::{HistData, MetaTable, Snapshot, StatInfo, StatKind};
use crate::table::{IdIndex, MAX_INDEXED_ID, NameHashBuilder, hash_bytes};
use crate::tags::{TagProducer, TagRefs};

const NULL_SLOT: u32 = u32::MAX;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How a gauge is treated on hot restart (Envoy's `Gauge::ImportMode`).
/// Stored only; `HiddenAccumulate` also hides the gauge from admin output
/// unless `hidden=include|only` is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum GaugeImportMode {
    /// Mode not yet known.
    Uninitialized,
    /// Parent's value is added on hot restart.
    #[default]
    Accumulate,
    /// Never imported from the parent.
    NeverImport,
    /// Like `Accumulate`, and hidden from admin output by default.
    HiddenAccumulate,
}

/// Per-stat-name histogram buckets (`stats_config.histogram_bucket_settings`).
#[derive(Clone)]
pub struct HistogramBucketRule {
    /// Matches the full stat name.
    pub matcher: NameMatcher,
    /// Bucket upper bounds, ascending.
    pub buckets: Vec<f64>,
}

impl std::fmt::Debug for HistogramBucketRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistogramBucketRule")
            .field("buckets", &self.buckets)
            .finish()
    }
}

/// Store construction options (from bootstrap `stats_config` and CLI).
#[derive(Default)]
pub struct StoreOptions {
    /// Tag extraction (defaults: all of Envoy's default tags).
    pub tag_producer: TagProducer,
    /// `stats_matcher`; `None` accepts every stat.
    pub matcher: Option<Arc<dyn StatsMatcher>>,
    /// `histogram_bucket_settings`, first match wins.
    pub histogram_buckets: Vec<HistogramBucketRule>,
}

/// A counter handle. `Copy`, 8 bytes; the null handle records nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Counter {
    store: u32,
    slot: u32,
}

/// A gauge handle. `Copy`, 8 bytes; the null handle records nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Gauge {
    store: u32,
    slot: u32,
}

/// A histogram handle. `Copy`, 8 bytes; the null handle records nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Histogram {
    store: u32,
    slot: u32,
}

#[inline]
fn record(store: u32, f: impl Fn(&Shard)) {
    if shard::with_local(store, &f).is_none() {
        record_slow(store, &f);
    }
}

#[cold]
#[inline(never)]
fn record_slow(store: u32, f: &dyn Fn(&Shard)) {
    let Some(inner) = lookup_store(store) else {
        return;
    };
    if inner.install_current_thread() && shard::with_local(store, f).is_some() {
        return;
    }
    f(&inner.shared_shard);
}

impl Counter {
    /// The store id and slot (for [`crate::Recorder`]).
    #[inline]
    pub(crate) fn parts(self) -> (u32, u32) {
        (self.store, self.slot)
    }

    /// A handle that records nothing (rejected by `stats_matcher`).
    pub const fn null() -> Self {
        Counter {
            store: 0,
            slot: NULL_SLOT,
        }
    }

    /// True for the null handle.
    pub fn is_null(&self) -> bool {
        self.slot == NULL_SLOT
    }

    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n` (counter values are kept modulo 2^63).
    #[inline]
    pub fn add(&self, n: u64) {
        if self.slot == NULL_SLOT {
            return;
        }
        let slot = self.slot;
        record(self.store, move |s| s.value_add(slot, n << 1));
    }
}

impl Gauge {
    /// The store id and slot (for [`crate::Recorder`]).
    #[inline]
    pub(crate) fn parts(self) -> (u32, u32) {
        (self.store, self.slot)
    }

    /// A handle that records nothing (rejected by `stats_matcher`).
    pub const fn null() -> Self {
        Gauge {
            store: 0,
            slot: NULL_SLOT,
        }
    }

    /// True for the null handle.
    pub fn is_null(&self) -> bool {
        self.slot == NULL_SLOT
    }

    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Subtracts one.
    #[inline]
    pub fn dec(&self) {
        self.sub(1);
    }

    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        if self.slot == NULL_SLOT {
            return;
        }
        let slot = self.slot;
        record(self.store, move |s| s.value_add(slot, n << 1));
    }

    /// Subtracts `n` (wrapping, like Envoy's `uint64_t` gauge).
    #[inline]
    pub fn sub(&self, n: u64) {
        if self.slot == NULL_SLOT {
            return;
        }
        let slot = self.slot;
        record(self.store, move |s| {
            s.value_add(slot, 0u64.wrapping_sub(n << 1))
        });
    }

    /// Sets the value. Takes a store lock and reads every shard: meant for
    /// the main thread / config-time values, not per-request paths.
    pub fn set(&self, value: u64) {
        if self.slot == NULL_SLOT {
            return;
        }
        if let Some(inner) = lookup_store(self.store) {
            inner.gauge_set(self.slot, value);
        }
    }
}

impl Histogram {
    /// The store id and slot (for [`crate::Recorder`]).
    #[inline]
    pub(crate) fn parts(self) -> (u32, u32) {
        (self.store, self.slot)
    }

    /// A handle that records nothing (rejected by `stats_matcher`).
    pub const fn null() -> Self {
        Histogram {
            store: 0,
            slot: NULL_SLOT,
        }
    }

    /// True for the null handle.
    pub fn is_null(&self) -> bool {
        self.slot == NULL_SLOT
    }

    /// Records one value.
    #[inline]
    pub fn record(&self, value: u64) {
        if self.slot == NULL_SLOT {
            return;
        }
        let slot = self.slot;
        record(self.store, move |s| s.hist_record(slot, value));
    }
}

// ---------------------------------------------------------------------------
// Store registry (id -> store), used only on cold paths.

static NEXT_STORE_ID: AtomicU32 = AtomicU32::new(1);

fn stores() -> &'static RwLock<HashMap<u32, Weak<StoreInner>>> {
    static STORES: OnceLock<RwLock<HashMap<u32, Weak<StoreInner>>>> = OnceLock::new();
    STORES.get_or_init(|| RwLock::new(HashMap::new()))
}

fn lookup_store(id: u32) -> Option<Arc<StoreInner>> {
    let map = stores().read().unwrap_or_else(|e| e.into_inner());
    map.get(&id).and_then(Weak::upgrade)
}

// ---------------------------------------------------------------------------

struct Registry {
    /// Counter and gauge slots by name (a counter and a gauge may share one).
    value_index: IdIndex,
    hist_index: IdIndex,
    rejected: HashSet<Box<str>>,
    tag_producer: Arc<TagProducer>,
    meta: Arc<MetaTable>,
    extracted_ids: HashMap<Arc<str>, u32, NameHashBuilder>,
    tag_name_ids: HashMap<Arc<str>, u32, NameHashBuilder>,
    tag_values: HashSet<Arc<str>, NameHashBuilder>,
    tagset_index: IdIndex,
    /// Counters and gauges below this slot have their tags extracted (see
    /// [`Registry::resolve_tags`]).
    tagged_values: usize,
    /// Histograms below this slot have their tags extracted.
    tagged_hists: usize,
    /// Merged state of a histogram nothing was recorded in, per bucket set.
    empty_hists: Vec<Arc<HistData>>,
    sorted_values: usize,
    sorted_hists: usize,
}

impl Registry {
    /// Extracts the tags of the stats registered since the last call and
    /// interns them (tag-extracted name, tag names and values, tag set).
    ///
    /// Registration leaves this to the first reader that needs tags (a
    /// snapshot: `/stats/prometheus`, a sink's flush) or to a change of tag
    /// producer: tag extraction is most of what registering a stat costs, and
    /// a large config registers a hundred thousand stats while it starts
    /// (1,000 clusters: 43 % of the instructions to the first request).
    fn resolve_tags(&mut self) {
        let (values, hists) = (self.meta.values.len(), self.meta.hists.len());
        if self.tagged_values == values && self.tagged_hists == hists {
            return;
        }
        let producer = self.tag_producer.clone();
        let mut extracted = String::new();
        let mut name = String::new();
        for is_hist in [false, true] {
            let (from, to) = if is_hist {
                (self.tagged_hists, hists)
            } else {
                (self.tagged_values, values)
            };
            for slot in from..to {
                let info = if is_hist {
                    self.meta.hists[slot]
                } else {
                    self.meta.values[slot]
                };
                name.clear();
                name.push_str(self.meta.name(&info));
                let (extracted_id, tagset) = self.intern_tags(&producer, &name, &mut extracted);
                let meta = Arc::make_mut(&mut self.meta);
                let infos = if is_hist {
                    &mut meta.hists
                } else {
                    &mut meta.values
                };
                let info = infos.get_mut(slot);
                info.extracted = extracted_id;
                info.tags = tagset;
            }
        }
        self.tagged_values = values;
        self.tagged_hists = hists;
    }

    /// The ids of `name`'s tag-extracted name and tag set, interning them.
    /// A table past [`MAX_INDEXED_ID`] entries leaves the stat untagged.
    fn intern_tags(
        &mut self,
        producer: &TagProducer,
        name: &str,
        extracted: &mut String,
    ) -> (u32, u32) {
        let mut tags = TagRefs::new();
        producer.produce_tags_into(name, extracted, &mut tags);
        let extracted_id = match self.extracted_ids.get(extracted.as_str()) {
            Some(&id) => id,
            None => {
                let s: Arc<str> = Arc::from(extracted.as_str());
                let meta = Arc::make_mut(&mut self.meta);
                meta.push_extracted(s.clone());
                let id = (meta.extracted.len() - 1) as u32;
                self.extracted_ids.insert(s, id);
                id
            }
        };
        let mut tag_refs: SmallVec<[(u32, Arc<str>); 4]> = SmallVec::new();
        for t in tags {
            let name_id = match self.tag_name_ids.get(t.name) {
                Some(&id) => id,
                None => {
                    let s: Arc<str> = Arc::from(t.name);
                    let meta = Arc::make_mut(&mut self.meta);
                    meta.push_tag_name(s.clone());
                    let id = (meta.tag_names.len() - 1) as u32;
                    self.tag_name_ids.insert(s, id);
                    id
                }
            };
            let value = match self.tag_values.get(&*t.value) {
                Some(v) => v.clone(),
                None => {
                    let v: Arc<str> = Arc::from(&*t.value);
                    self.tag_values.insert(v.clone());
                    v
                }
            };
            tag_refs.push((name_id, value));
        }
        if tag_refs.is_empty() {
            return (extracted_id, 0);
        }
        let tags_hash = tagset_hash(&tag_refs);
        if let Some(id) = self.tagset_index.find(tags_hash, |id| {
            *self.meta.tagsets[id as usize].tags == *tag_refs
        }) {
            return (extracted_id, id);
        }
        if self.meta.tagsets.len() >= MAX_INDEXED_ID {
            return (extracted_id, 0);
        }
        let meta = Arc::make_mut(&mut self.meta);
        let id = meta.push_tagset(tag_refs.into_vec().into_boxed_slice());
        let tagsets = &meta.tagsets;
        self.tagset_index
            .insert(tags_hash, id, |i| tagset_hash(&tagsets[i as usize].tags));
        (extracted_id, id)
    }
}

fn tagset_hash(tags: &[(u32, Arc<str>)]) -> u64 {
    let mut h = tags.len() as u64;
    for (n, v) in tags {
        h = (h.rotate_left(17) ^ u64::from(*n)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ hash_bytes(v.as_bytes());
    }
    hash_bytes(&h.to_le_bytes())
}

struct HistState {
    data: Vec<Arc<HistData>>,
    dense: Vec<u64>,
    touched: Vec<u16>,
}

/// Counter totals at the last flush (or reset), for flush deltas: only the
/// non-zero ones, by slot (most counters of a large config stay at zero).
#[derive(Default)]
struct FlushState {
    slots: Vec<u32>,
    totals: Vec<u64>,
}

impl FlushState {
    /// Replaces the latched totals with the counters' current `totals`,
    /// calling `f(slot, total, previous)` for every counter.
    fn relatch(&mut self, meta: &MetaTable, totals: &[u64], mut f: impl FnMut(usize, u64, u64)) {
        let mut slots = Vec::with_capacity(self.slots.len());
        let mut latched = Vec::with_capacity(self.totals.len());
        let mut j = 0;
        for (k, &total) in totals.iter().enumerate() {
            if meta.values[k].kind != StatKind::Counter {
                continue;
            }
            while j < self.slots.len() && (self.slots[j] as usize) < k {
                j += 1;
            }
            let prev = match self.slots.get(j) {
                Some(&s) if s as usize == k => self.totals[j],
                _ => 0,
            };
            f(k, total, prev);
            if total != 0 {
                slots.push(k as u32);
                latched.push(total);
            }
        }
        self.slots = slots;
        self.totals = latched;
    }
}

pub(crate) struct StoreInner {
    id: u32,
    self_weak: Weak<StoreInner>,
    shards: RwLock<Vec<Arc<Shard>>>,
    free_shards: Mutex<Vec<usize>>,
    shared_shard: Arc<Shard>,
    /// Counters: reset baseline. Gauges: base written by `set`.
    central: Chunked<AtomicU64>,
    /// Gauges used through `set`: one bit per slot (slot / 64, bit slot % 64).
    central_flags: Chunked<AtomicU64>,
    set_lock: Mutex<()>,
    reg: Mutex<Registry>,
    hists: Mutex<HistState>,
    flush: Mutex<FlushState>,
    matcher: Option<Arc<dyn StatsMatcher>>,
    bucket_rules: Vec<(NameMatcher, u32)>,
}

impl ShardOwner for StoreInner {
    fn release_shard(&self, index: usize) {
        if index != 0 {
            lock(&self.free_shards).push(index);
        }
    }
}

impl Drop for StoreInner {
    fn drop(&mut self) {
        let mut map = stores().write().unwrap_or_else(|e| e.into_inner());
        map.remove(&self.id);
    }
}

/// A stats store. Cheap to clone (shared `Arc`).
#[derive(Clone)]
pub struct Store {
    inner: Arc<StoreInner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("id", &self.inner.id).finish()
    }
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

/// Keeps the current thread registered with a store; dropping it gives the
/// thread's shard back to the store's pool (its values are kept).
#[derive(Debug)]
pub struct ThreadGuard {
    store: u32,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for ThreadGuard {
    fn drop(&mut self) {
        if let Some(index) = shard::uninstall_local(self.store)
            && let Some(inner) = lookup_store(self.store)
        {
            inner.release_shard(index);
        }
    }
}

impl Store {
    /// A store with Envoy's defaults (all default tag extractors, default
    /// histogram buckets, no matcher).
    pub fn new() -> Store {
        Store::with_options(StoreOptions::default())
    }

    /// A store with the given options.
    pub fn with_options(options: StoreOptions) -> Store {
        let id = NEXT_STORE_ID.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(Shard::new(true));
        let mut bucket_ids: Vec<Arc<[f64]>> = vec![Arc::from(&DEFAULT_BUCKETS[..])];
        let mut bucket_rules = Vec::new();
        // Bucket set ids are 16 bits; rules past that many never match.
        for rule in options
            .histogram_buckets
            .into_iter()
            .take(u16::MAX as usize)
        {
            bucket_ids.push(Arc::from(rule.buckets));
            bucket_rules.push((rule.matcher, (bucket_ids.len() - 1) as u32));
        }
        let inner = Arc::new_cyclic(|weak| StoreInner {
            id,
            self_weak: weak.clone(),
            shards: RwLock::new(vec![shared.clone()]),
            free_shards: Mutex::new(Vec::new()),
            shared_shard: shared,
            central: Chunked::new(),
            central_flags: Chunked::new(),
            set_lock: Mutex::new(()),
            reg: Mutex::new(Registry {
                value_index: IdIndex::default(),
                hist_index: IdIndex::default(),
                rejected: HashSet::new(),
                tag_producer: Arc::new(options.tag_producer),
                empty_hists: bucket_ids
                    .iter()
                    .map(|b| {
                        let empty = HistogramStatistics::empty(b);
                        Arc::new(HistData {
                            used: false,
                            interval: empty.clone(),
                            cumulative: empty,
                            interval_hist: SparseHist::default(),
                            cumulative_hist: SparseHist::default(),
                        })
                    })
                    .collect(),
                meta: Arc::new(MetaTable::new(bucket_ids)),
                extracted_ids: HashMap::default(),
                tag_name_ids: HashMap::default(),
                tag_values: HashSet::default(),
                tagged_values: 0,
                tagged_hists: 0,
                tagset_index: IdIndex::default(),
                sorted_values: 0,
                sorted_hists: 0,
            }),
            hists: Mutex::new(HistState {
                data: Vec::new(),
                dense: vec![0; NUM_BUCKETS],
                touched: Vec::new(),
            }),
            flush: Mutex::new(FlushState::default()),
            matcher: options.matcher,
            bucket_rules,
        });
        stores()
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, Arc::downgrade(&inner));
        Store { inner }
    }

    /// The tag producer in use.
    pub fn tag_producer(&self) -> Arc<TagProducer> {
        lock(&self.inner.reg).tag_producer.clone()
    }

    /// Replaces the tag producer (Envoy's `setTagProducer`, called once the
    /// bootstrap is loaded). Stats registered before keep the names and tags
    /// they were given: Envoy's early stats (`server.hot_restart_generation`,
    /// `filesystem.*`) are created with no tag producer and show no tags.
    pub fn set_tag_producer(&self, producer: TagProducer) {
        let mut reg = lock(&self.inner.reg);
        reg.resolve_tags();
        reg.tag_producer = Arc::new(producer);
    }

    /// The counter named `name` (same name, same counter). Null if rejected.
    pub fn counter(&self, name: &str) -> Counter {
        match self.inner.register(
            name,
            StatKind::Counter,
            GaugeImportMode::Uninitialized,
            HistogramUnit::Unspecified,
        ) {
            Some(slot) => Counter {
                store: self.inner.id,
                slot,
            },
            None => Counter::null(),
        }
    }

    /// The gauge named `name`. Null if rejected. The import mode of the first
    /// registration wins (an `Uninitialized` one is upgraded).
    pub fn gauge(&self, name: &str, mode: GaugeImportMode) -> Gauge {
        match self
            .inner
            .register(name, StatKind::Gauge, mode, HistogramUnit::Unspecified)
        {
            Some(slot) => Gauge {
                store: self.inner.id,
                slot,
            },
            None => Gauge::null(),
        }
    }

    /// The histogram named `name`. Null if rejected.
    pub fn histogram(&self, name: &str, unit: HistogramUnit) -> Histogram {
        match self.inner.register(
            name,
            StatKind::Histogram,
            GaugeImportMode::Uninitialized,
            unit,
        ) {
            Some(slot) => Histogram {
                store: self.inner.id,
                slot,
            },
            None => Histogram::null(),
        }
    }

    /// A scope whose stats are named `prefix` + `.` + name (a trailing dot on
    /// `prefix` is accepted).
    pub fn scope(&self, prefix: &str) -> Scope {
        Scope::new(self.clone(), prefix)
    }

    /// Registers the current thread (worker or main) with its own shard.
    /// Optional: threads are registered on their first record anyway.
    pub fn register_thread(&self) -> ThreadGuard {
        self.inner.install_current_thread();
        ThreadGuard {
            store: self.inner.id,
            _not_send: std::marker::PhantomData,
        }
    }

    /// A [`Recorder`](crate::Recorder) on this thread's shard, for a worker
    /// to record through without a thread-local lookup per update. Call it
    /// after [`Store::register_thread`] (without a shard the recorder records
    /// through each handle's own path); the registration must outlive it.
    pub fn recorder(&self) -> crate::Recorder {
        crate::Recorder::new(self.inner.id, shard::local_shard(self.inner.id))
    }

    /// Current value of a counter (sums all shards).
    pub fn counter_value(&self, c: Counter) -> u64 {
        if c.is_null() || c.store != self.inner.id {
            return 0;
        }
        self.inner
            .counter_total(c.slot)
            .wrapping_sub(self.inner.central_load(c.slot))
    }

    /// Current value of a gauge (sums all shards).
    pub fn gauge_value(&self, g: Gauge) -> u64 {
        if g.is_null() || g.store != self.inner.id {
            return 0;
        }
        self.inner
            .central_load(g.slot)
            .wrapping_add(self.inner.gauge_delta_sum(g.slot))
    }

    /// Merges per-thread histogram data into each histogram's interval (data
    /// since the previous merge) and cumulative views, and recomputes their
    /// statistics. Envoy does this on every stats flush.
    pub fn merge_histograms(&self) {
        self.inner.merge_histograms();
    }

    /// Envoy's `/reset_counters`: every counter reads 0 afterwards (its
    /// "used" flag stays set) and its flush delta restarts.
    pub fn reset_counters(&self) {
        self.inner.reset_counters();
    }

    /// A point-in-time view of every stat, for rendering.
    pub fn snapshot(&self) -> Snapshot {
        self.inner.snapshot(false)
    }

    /// A stats flush: merges histograms, then snapshots with each counter's
    /// delta since the previous flush (for sinks).
    pub fn flush(&self) -> Snapshot {
        self.inner.merge_histograms();
        self.inner.snapshot(true)
    }

    /// Number of registered counters, gauges and histograms.
    pub fn len(&self) -> usize {
        let reg = lock(&self.inner.reg);
        reg.meta.values.len() + reg.meta.hists.len()
    }

    /// True when no stat is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl StoreInner {
    fn install_current_thread(&self) -> bool {
        if shard::has_local(self.id) {
            return true;
        }
        let (shard, index) = {
            let reused = lock(&self.free_shards).pop();
            let mut shards = self.shards.write().unwrap_or_else(|e| e.into_inner());
            match reused {
                Some(i) if i < shards.len() => (shards[i].clone(), i),
                _ => {
                    let s = Arc::new(Shard::new(false));
                    shards.push(s.clone());
                    (s, shards.len() - 1)
                }
            }
        };
        let owner: Weak<dyn ShardOwner> = self.self_weak.clone();
        if shard::install_local(self.id, shard, index, owner) {
            true
        } else {
            self.release_shard(index);
            false
        }
    }

    fn central_load(&self, slot: u32) -> u64 {
        self.central
            .get(slot)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    fn counter_total(&self, slot: u32) -> u64 {
        let shards = self.shards.read().unwrap_or_else(|e| e.into_inner());
        shards
            .iter()
            .fold(0u64, |a, s| a.wrapping_add(s.raw(slot) >> 1))
    }

    fn gauge_delta_sum(&self, slot: u32) -> u64 {
        let shards = self.shards.read().unwrap_or_else(|e| e.into_inner());
        shards.iter().fold(0u64, |a, s| {
            a.wrapping_add(((s.raw(slot) as i64) >> 1) as u64)
        })
    }

    fn gauge_set(&self, slot: u32, value: u64) {
        let _g = lock(&self.set_lock);
        let sum = self.gauge_delta_sum(slot);
        if let Some(c) = self.central.get_or_alloc(slot) {
            c.store(value.wrapping_sub(sum), Ordering::Relaxed);
        }
        if let Some(f) = self.central_flags.get_or_alloc(slot >> 6) {
            f.fetch_or(1 << (slot & 63), Ordering::Relaxed);
        }
    }

    fn rejects(&self, name: &str) -> bool {
        self.matcher.as_ref().is_some_and(|m| m.rejects(name))
    }

    fn register(
        &self,
        name: &str,
        kind: StatKind,
        mode: GaugeImportMode,
        unit: HistogramUnit,
    ) -> Option<u32> {
        let mut reg = lock(&self.reg);
        let reg = &mut *reg;
        let hash = hash_bytes(name.as_bytes());
        let is_hist = kind == StatKind::Histogram;
        let found = {
            let meta = &reg.meta;
            let (index, infos) = if is_hist {
                (&reg.hist_index, &meta.hists)
            } else {
                (&reg.value_index, &meta.values)
            };
            index.find(hash, |id| {
                let info = &infos[id as usize];
                info.kind == kind && meta.name(info) == name
            })
        };
        if let Some(slot) = found {
            if kind == StatKind::Gauge
                && mode != GaugeImportMode::Uninitialized
                && reg.meta.values[slot as usize].import_mode == GaugeImportMode::Uninitialized
            {
                Arc::make_mut(&mut reg.meta)
                    .values
                    .get_mut(slot as usize)
                    .import_mode = mode;
            }
            return Some(slot);
        }
        if self.matcher.is_some() {
            if reg.rejected.contains(name) {
                return None;
            }
            if self.rejects(name) {
                reg.rejected.insert(name.into());
                return None;
            }
        }
        let full = if is_hist {
            reg.meta.hists.len()
        } else {
            reg.meta.values.len()
        } >= MAX_SLOTS.min(MAX_INDEXED_ID);
        if full {
            return None;
        }
        let buckets = if is_hist {
            self.bucket_rules
                .iter()
                .find(|(m, _)| m(name))
                .map_or(0, |r| r.1)
        } else {
            0
        };
        let meta = Arc::make_mut(&mut reg.meta);
        let name_pos = meta.names.push(name)?;
        let info = StatInfo {
            name_pos,
            name_len: name.len() as u32,
            kind,
            // Set by `Registry::resolve_tags` before any snapshot reads them.
            extracted: 0,
            tags: 0,
            import_mode: if kind == StatKind::Gauge {
                mode
            } else {
                GaugeImportMode::Uninitialized
            },
            unit,
            buckets: buckets as u16,
        };
        let MetaTable {
            names,
            values,
            hists,
            ..
        } = meta;
        let (index, infos) = if is_hist {
            (&mut reg.hist_index, hists)
        } else {
            (&mut reg.value_index, values)
        };
        let slot = infos.push(info) as u32;
        index.insert(hash, slot, |id| {
            let info = &infos[id as usize];
            hash_bytes(names.get(info.name_pos, info.name_len).as_bytes())
        });
        if is_hist {
            lock(&self.hists)
                .data
                .push(reg.empty_hists[buckets as usize].clone());
        }
        Some(slot)
    }

    /// Sums every shard's value slots into per-slot raw totals (before the
    /// central baselines and bases) and used flags.
    fn read_totals(&self, meta: &MetaTable) -> (Vec<u64>, Vec<bool>) {
        let n = meta.values.len();
        let mut totals = vec![0u64; n];
        let mut used = vec![false; n];
        {
            let shards = self.shards.read().unwrap_or_else(|e| e.into_inner());
            for s in shards.iter() {
                s.values.for_each_segment(n, |base, seg| {
                    let end = (base + seg.len()).min(n);
                    for (k, cell) in (base..end).zip(seg.iter()) {
                        let raw = cell.load(Ordering::Relaxed);
                        if raw != 0 {
                            let v = if meta.values[k].kind == StatKind::Gauge {
                                ((raw as i64) >> 1) as u64
                            } else {
                                raw >> 1
                            };
                            totals[k] = totals[k].wrapping_add(v);
                            used[k] |= raw & 1 == 1;
                        }
                    }
                });
            }
        }
        let words = n.div_ceil(64);
        self.central_flags.for_each_segment(words, |base, seg| {
            let end = (base + seg.len()).min(words);
            for (w, cell) in (base..end).zip(seg.iter()) {
                let mut bits = cell.load(Ordering::Relaxed);
                while bits != 0 {
                    let k = w * 64 + bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    if let Some(u) = used.get_mut(k) {
                        *u = true;
                    }
                }
            }
        });
        (totals, used)
    }

    /// Turns raw totals into values: counters minus their reset baseline,
    /// gauges plus their base.
    fn apply_central(&self, meta: &MetaTable, values: &mut [u64]) {
        let n = values.len();
        self.central.for_each_segment(n, |base, seg| {
            let end = (base + seg.len()).min(n);
            for (k, cell) in (base..end).zip(seg.iter()) {
                let c = cell.load(Ordering::Relaxed);
                if meta.values[k].kind == StatKind::Gauge {
                    values[k] = values[k].wrapping_add(c);
                } else {
                    values[k] = values[k].wrapping_sub(c);
                }
            }
        });
    }

    fn reset_counters(&self) {
        let meta = lock(&self.reg).meta.clone();
        let (totals, _) = self.read_totals(&meta);
        lock(&self.flush).relatch(&meta, &totals, |k, total, _| {
            // A zero total needs no baseline unless one is already there.
            let cell = if total != 0 {
                self.central.get_or_alloc(k as u32)
            } else {
                self.central.get(k as u32)
            };
            if let Some(c) = cell {
                c.store(total, Ordering::Relaxed);
            }
        });
    }

    fn merge_histograms(&self) {
        let meta = lock(&self.reg).meta.clone();
        let n = meta.hists.len();
        let shards: Vec<Arc<Shard>> = self
            .shards
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        let mut st = lock(&self.hists);
        let HistState {
            data,
            dense,
            touched,
        } = &mut *st;
        for (slot, entry) in data.iter_mut().enumerate().take(n) {
            let mut any = false;
            for s in &shards {
                if let Some(cell) = s.hists.get(slot as u32)
                    && let Some(h) = cell.get()
                {
                    any |= h.add_into(dense, touched);
                }
            }
            if !(entry.used || any) {
                continue;
            }
            touched.sort_unstable();
            let mut totals = Vec::with_capacity(touched.len());
            let mut interval = Vec::new();
            for &k in touched.iter() {
                let total = dense[k as usize];
                dense[k as usize] = 0;
                if total == 0 {
                    continue;
                }
                totals.push((k, total));
                let prev = entry.cumulative_hist.count_at(k);
                let d = total.wrapping_sub(prev);
                if d != 0 {
                    interval.push((k, d));
                }
            }
            touched.clear();
            let cumulative_hist = SparseHist::from_sorted(totals);
            let interval_hist = SparseHist::from_sorted(interval);
            let info = &meta.hists[slot];
            let bounds = meta.bucket_bounds(info);
            *entry = Arc::new(HistData {
                used: true,
                interval: HistogramStatistics::compute(&interval_hist, bounds, info.unit),
                cumulative: HistogramStatistics::compute(&cumulative_hist, bounds, info.unit),
                interval_hist,
                cumulative_hist,
            });
        }
    }

    fn snapshot(&self, latch: bool) -> Snapshot {
        let meta = {
            let mut reg = lock(&self.reg);
            let reg = &mut *reg;
            reg.resolve_tags();
            crate::snapshot::update_orders(
                &mut reg.meta,
                &mut reg.sorted_values,
                &mut reg.sorted_hists,
            );
            reg.meta.clone()
        };
        let (mut values, used) = self.read_totals(&meta);
        let deltas = if latch {
            let mut deltas = vec![0u64; values.len()];
            lock(&self.flush).relatch(&meta, &values, |k, total, prev| {
                deltas[k] = total.wrapping_sub(prev);
            });
            Some(deltas)
        } else {
            None
        };
        self.apply_central(&meta, &mut values);
        let hists = {
            let st = lock(&self.hists);
            st.data.iter().take(meta.hists.len()).cloned().collect()
        };
        Snapshot::new(meta, values, used, deltas, hists)
    }
}

// ---------------------------------------------------------------------------

/// A naming helper: stats created through a scope are named
/// `prefix.name`. Names are plain strings internally.
#[derive(Clone, Debug)]
pub struct Scope {
    store: Store,
    prefix: Arc<str>,
}

impl Scope {
    fn new(store: Store, prefix: &str) -> Scope {
        let prefix = if prefix.is_empty() || prefix.ends_with('.') {
            prefix.to_string()
        } else {
            format!("{prefix}.")
        };
        Scope {
            store,
            prefix: Arc::from(prefix),
        }
    }

    /// The prefix including its trailing dot (empty for the root scope).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The store this scope belongs to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Full name of `name` in this scope.
    pub fn full_name(&self, name: &str) -> String {
        let mut s = String::with_capacity(self.prefix.len() + name.len());
        s.push_str(&self.prefix);
        s.push_str(name);
        s
    }

    /// A nested scope.
    pub fn scope(&self, prefix: &str) -> Scope {
        Scope::new(self.store.clone(), &self.full_name(prefix))
    }

    /// Calls `f` with `prefix.name`, built on the stack when it is short
    /// (registering a cluster's hundred stats formats a hundred names).
    fn with_full_name<R>(&self, name: &str, f: impl FnOnce(&str) -> R) -> R {
        const INLINE: usize = 192;
        let (p, n) = (self.prefix.as_bytes(), name.as_bytes());
        let len = p.len() + n.len();
        if len <= INLINE {
            let mut buf = [0u8; INLINE];
            buf[..p.len()].copy_from_slice(p);
            buf[p.len()..len].copy_from_slice(n);
            // Two `str`s end to end are UTF-8; the check cannot fail.
            if let Ok(full) = std::str::from_utf8(&buf[..len]) {
                return f(full);
            }
        }
        f(&self.full_name(name))
    }

    /// `prefix.name` counter.
    pub fn counter(&self, name: &str) -> Counter {
        self.with_full_name(name, |full| self.store.counter(full))
    }

    /// `prefix.name` gauge.
    pub fn gauge(&self, name: &str, mode: GaugeImportMode) -> Gauge {
        self.with_full_name(name, |full| self.store.gauge(full, mode))
    }

    /// `prefix.name` histogram.
    pub fn histogram(&self, name: &str, unit: HistogramUnit) -> Histogram {
        self.with_full_name(name, |full| self.store.histogram(full, unit))
    }
}

/// Lazily created per-status-code counters `prefix{code}` (100..=599) and
/// per-class counters `prefix{class}xx` (1..=5) under a scope, e.g. prefix
/// `upstream_rq_` gives `upstream_rq_503` and `upstream_rq_5xx`. The first
/// use of a code registers its counter (one lock, one format); later uses are
/// two atomic loads and the counter's hot path. A class's table of 100 codes
/// is allocated the first time one of its codes is used, so an unused table
/// (most clusters never see a 1xx or a 3xx, many see no traffic at all) costs
/// a few pointers instead of 500 cells.
pub struct StatusCodeCounters {
    scope: Scope,
    prefix: Box<str>,
    codes: [OnceLock<Box<[OnceLock<Counter>; 100]>>; 5],
    classes: [OnceLock<Counter>; 5],
}

impl std::fmt::Debug for StatusCodeCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusCodeCounters")
            .field("scope", &self.scope.prefix())
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl StatusCodeCounters {
    /// A table for `scope` + `prefix`.
    pub fn new(scope: &Scope, prefix: &str) -> Self {
        StatusCodeCounters {
            scope: scope.clone(),
            prefix: prefix.into(),
            codes: std::array::from_fn(|_| OnceLock::new()),
            classes: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// The counter for `code` (null outside 100..=599).
    #[inline]
    pub fn code(&self, code: u16) -> Counter {
        if !(100..600).contains(&code) {
            return Counter::null();
        }
        let i = code as usize - 100;
        let table =
            self.codes[i / 100].get_or_init(|| Box::new(std::array::from_fn(|_| OnceLock::new())));
        *table[i % 100].get_or_init(|| self.scope.counter(&format!("{}{}", self.prefix, code)))
    }

    /// The counter for `code`'s class, `prefix{N}xx` (null outside 100..=599).
    #[inline]
    pub fn class(&self, code: u16) -> Counter {
        if !(100..600).contains(&code) {
            return Counter::null();
        }
        let class = (code / 100) as usize;
        *self.classes[class - 1]
            .get_or_init(|| self.scope.counter(&format!("{}{}xx", self.prefix, class)))
    }

    /// Increments both the code and the class counter.
    #[inline]
    pub fn inc(&self, code: u16) {
        self.class(code).inc();
        self.code(code).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_share_tag_sets_and_names_are_stored_once() {
        let store = Store::new();
        for c in 0..50 {
            let scope = store.scope(&format!("cluster.c{c}"));
            for n in ["bind_errors", "upstream_cx_total", "lb_healthy_panic"] {
                scope.counter(n);
                scope.counter(n);
            }
            scope.gauge("membership_total", GaugeImportMode::Accumulate);
            scope.histogram("upstream_rq_time", HistogramUnit::Milliseconds);
        }
        store.counter("server.no_tags");
        let mut reg = lock(&store.inner.reg);
        // Tags are extracted when first read.
        assert_eq!(reg.meta.tagsets.len(), 1);
        reg.resolve_tags();
        // The empty set, then one per cluster.
        assert_eq!(reg.meta.tagsets.len(), 51);
        assert_eq!(reg.meta.values.len(), 50 * 4 + 1);
        assert_eq!(reg.meta.hists.len(), 50);
        let names: usize = (0..50)
            .map(|c| {
                ["bind_errors", "upstream_cx_total", "lb_healthy_panic"]
                    .iter()
                    .chain(&["membership_total", "upstream_rq_time"])
                    .map(|n| format!("cluster.c{c}.{n}").len())
                    .sum::<usize>()
            })
            .sum();
        assert_eq!(reg.meta.names.bytes(), names + "server.no_tags".len());
        // Unused histograms share one merged state.
        let hists = lock(&store.inner.hists);
        assert!(
            hists
                .data
                .iter()
                .all(|d| Arc::ptr_eq(d, &reg.empty_hists[0]))
        );
    }
}
