//! Point-in-time views of a store: per-stat metadata computed once at
//! registration (name, tag-extracted name, interned tag sets with their
//! Prometheus label lists, Prometheus-sanitized names),
//! cached sort orders (Envoy's `/stats` string order and Prometheus' grouping
//! order, maintained incrementally as stats are added), summed values, and
//! merged histogram statistics. Rendering and stats sinks read only this.

use std::cmp::Ordering;
use std::sync::Arc;

use crate::histogram::{HistogramStatistics, HistogramUnit, SparseHist};
use crate::store::GaugeImportMode;
use crate::table::{ChunkVec, NameArena};

/// Kind of a stat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatKind {
    /// Monotonic counter.
    Counter,
    /// Gauge.
    Gauge,
    /// Histogram.
    Histogram,
}

/// Per-stat metadata (24 bytes): the name in the [`NameArena`], the
/// tag-extracted name, the interned tag set, and the kind-specific fields.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StatInfo {
    pub(crate) name_pos: u32,
    pub(crate) name_len: u32,
    /// Index into [`MetaTable::extracted`].
    pub(crate) extracted: u32,
    /// Index into [`MetaTable::tagsets`].
    pub(crate) tags: u32,
    /// Histograms: index into [`MetaTable::buckets`].
    pub(crate) buckets: u16,
    pub(crate) kind: StatKind,
    pub(crate) import_mode: GaugeImportMode,
    pub(crate) unit: HistogramUnit,
}

#[derive(Clone, Debug)]
pub(crate) struct NamePair {
    pub(crate) name: Arc<str>,
    /// Prometheus form: tag names sanitized; extracted names `envoy_` + sanitized.
    pub(crate) prom: Arc<str>,
}

/// A distinct list of tags, shared by every stat that has it (all the stats
/// of one cluster share one), with its Prometheus label list rendered once.
#[derive(Debug)]
pub(crate) struct TagSet {
    /// `(tag name id, value)` in Envoy's order.
    pub(crate) tags: Box<[(u32, Arc<str>)]>,
    /// `name="value",...` (sanitized names, escaped values), no braces.
    pub(crate) prom: Box<str>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct MetaTable {
    pub(crate) names: NameArena,
    /// Counters and gauges, by slot.
    pub(crate) values: ChunkVec<StatInfo>,
    /// Histograms, by slot.
    pub(crate) hists: ChunkVec<StatInfo>,
    pub(crate) extracted: Vec<NamePair>,
    pub(crate) tag_names: Vec<NamePair>,
    /// Tag sets; id 0 is the empty set.
    pub(crate) tagsets: ChunkVec<Arc<TagSet>>,
    /// Histogram bucket bounds (id 0: Envoy's defaults).
    pub(crate) buckets: Arc<[Arc<[f64]>]>,
    /// Counters and gauges by name (byte order), as `/stats` prints them.
    pub(crate) order_name_values: Arc<Vec<u32>>,
    pub(crate) order_name_hists: Arc<Vec<u32>>,
    /// Counters, gauges and histograms by (tag-extracted name, name),
    /// token-wise, as `/stats/prometheus` prints them.
    pub(crate) order_prom_counters: Arc<Vec<u32>>,
    pub(crate) order_prom_gauges: Arc<Vec<u32>>,
    pub(crate) order_prom_hists: Arc<Vec<u32>>,
}

/// Replaces every character outside `[a-zA-Z0-9_]` with `_`.
pub(crate) fn prom_sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Prometheus label-value escaping (`\`, newline, `"`).
pub(crate) fn prom_value(out: &mut String, v: &str) {
    if !v.contains(['\\', '\n', '"']) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

impl MetaTable {
    pub(crate) fn new(buckets: Vec<Arc<[f64]>>) -> Self {
        let mut m = MetaTable {
            buckets: buckets.into(),
            ..MetaTable::default()
        };
        m.tagsets.push(Arc::new(TagSet {
            tags: Box::new([]),
            prom: "".into(),
        }));
        m
    }

    pub(crate) fn push_extracted(&mut self, name: Arc<str>) {
        let prom: Arc<str> = Arc::from(format!("envoy_{}", prom_sanitize(&name)));
        self.extracted.push(NamePair { name, prom });
    }

    pub(crate) fn push_tag_name(&mut self, name: Arc<str>) {
        let prom: Arc<str> = Arc::from(prom_sanitize(&name));
        self.tag_names.push(NamePair { name, prom });
    }

    /// Adds a tag set (not already present), rendering its label list.
    pub(crate) fn push_tagset(&mut self, tags: Box<[(u32, Arc<str>)]>) -> u32 {
        let mut prom = String::new();
        for (i, (n, v)) in tags.iter().enumerate() {
            if i > 0 {
                prom.push(',');
            }
            prom.push_str(&self.tag_names[*n as usize].prom);
            prom.push_str("=\"");
            prom_value(&mut prom, v);
            prom.push('"');
        }
        self.tagsets.push(Arc::new(TagSet {
            tags,
            prom: prom.into(),
        })) as u32
    }

    /// The full name of a stat.
    #[inline]
    pub(crate) fn name(&self, info: &StatInfo) -> &str {
        self.names.get(info.name_pos, info.name_len)
    }

    #[inline]
    pub(crate) fn value_name(&self, slot: u32) -> &str {
        self.name(&self.values[slot as usize])
    }

    #[inline]
    pub(crate) fn hist_name(&self, slot: u32) -> &str {
        self.name(&self.hists[slot as usize])
    }

    #[inline]
    pub(crate) fn tagset(&self, info: &StatInfo) -> &TagSet {
        &self.tagsets[info.tags as usize]
    }

    #[inline]
    pub(crate) fn bucket_bounds(&self, info: &StatInfo) -> &[f64] {
        &self.buckets[info.buckets as usize]
    }
}

/// Envoy's `SymbolTable::lessThan`: token-by-token comparison of the
/// dot-separated name (a prefix sorts first). Equivalent to byte order with
/// `.` mapped below every other byte.
pub(crate) fn token_cmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len().min(b.len());
    for i in 0..n {
        let (x, y) = (a[i], b[i]);
        if x != y {
            let x = if x == b'.' { 0 } else { x as u16 + 1 };
            let y = if y == b'.' { 0 } else { y as u16 + 1 };
            return x.cmp(&y);
        }
    }
    a.len().cmp(&b.len())
}

fn merge_sorted(old: &[u32], new: &[u32], cmp: impl Fn(u32, u32) -> Ordering) -> Vec<u32> {
    let mut out = Vec::with_capacity(old.len() + new.len());
    let (mut i, mut j) = (0, 0);
    while i < old.len() && j < new.len() {
        if cmp(new[j], old[i]) == Ordering::Less {
            out.push(new[j]);
            j += 1;
        } else {
            out.push(old[i]);
            i += 1;
        }
    }
    out.extend_from_slice(&old[i..]);
    out.extend_from_slice(&new[j..]);
    out
}

/// Brings the cached sort orders up to date with newly registered stats.
pub(crate) fn update_orders(
    meta: &mut Arc<MetaTable>,
    sorted_values: &mut usize,
    sorted_hists: &mut usize,
) {
    if *sorted_values == meta.values.len() && *sorted_hists == meta.hists.len() {
        return;
    }
    let m = Arc::make_mut(meta);
    // Rank of every tag-extracted name in token order, so the Prometheus
    // sort compares integers first and names only within a group.
    let mut ranks: Vec<u32> = vec![0; m.extracted.len()];
    {
        let mut ids: Vec<u32> = (0..m.extracted.len() as u32).collect();
        ids.sort_unstable_by(|&a, &b| {
            token_cmp(&m.extracted[a as usize].name, &m.extracted[b as usize].name)
        });
        for (rank, id) in ids.into_iter().enumerate() {
            ranks[id as usize] = rank as u32;
        }
    }
    let MetaTable {
        names,
        values,
        hists,
        order_name_values,
        order_name_hists,
        order_prom_counters,
        order_prom_gauges,
        order_prom_hists,
        ..
    } = m;
    let name_of = |infos: &ChunkVec<StatInfo>, i: u32| -> &str {
        let info = &infos[i as usize];
        names.get(info.name_pos, info.name_len)
    };
    let extend_by_name = |infos: &ChunkVec<StatInfo>, from: usize, order: &mut Arc<Vec<u32>>| {
        if from >= infos.len() {
            return;
        }
        let name = |i: u32| name_of(infos, i);
        let name_cmp = |a: u32, b: u32| -> Ordering {
            name(a).as_bytes().cmp(name(b).as_bytes()).then(a.cmp(&b))
        };
        let mut keyed: Vec<(&[u8], u32)> = (from..infos.len())
            .map(|i| (name(i as u32).as_bytes(), i as u32))
            .collect();
        keyed.sort_unstable();
        let new: Vec<u32> = keyed.iter().map(|k| k.1).collect();
        drop(keyed);
        *order = Arc::new(merge_sorted(order, &new, name_cmp));
    };
    let extend_by_prom =
        |infos: &ChunkVec<StatInfo>, from: usize, kind: StatKind, order: &mut Arc<Vec<u32>>| {
            if from >= infos.len() {
                return;
            }
            let name = |i: u32| name_of(infos, i);
            let prom_cmp = |a: u32, b: u32| -> Ordering {
                let (x, y) = (&infos[a as usize], &infos[b as usize]);
                ranks[x.extracted as usize]
                    .cmp(&ranks[y.extracted as usize])
                    .then_with(|| token_cmp(name(a), name(b)))
                    .then(a.cmp(&b))
            };
            let mut keyed: Vec<(u32, &str, u32)> = (from..infos.len())
                .filter(|&i| infos[i].kind == kind)
                .map(|i| (ranks[infos[i].extracted as usize], name(i as u32), i as u32))
                .collect();
            keyed.sort_unstable_by(|a, b| {
                a.0.cmp(&b.0)
                    .then_with(|| token_cmp(a.1, b.1))
                    .then(a.2.cmp(&b.2))
            });
            let new: Vec<u32> = keyed.iter().map(|k| k.2).collect();
            drop(keyed);
            // Ranks change when names are added: re-sort the old order too when
            // its groups might interleave differently (cheap: already sorted).
            let mut old: Vec<u32> = order.to_vec();
            old.sort_by(|&a, &b| prom_cmp(a, b));
            *order = Arc::new(merge_sorted(&old, &new, prom_cmp));
        };
    extend_by_name(values, *sorted_values, order_name_values);
    extend_by_prom(
        values,
        *sorted_values,
        StatKind::Counter,
        order_prom_counters,
    );
    extend_by_prom(values, *sorted_values, StatKind::Gauge, order_prom_gauges);
    extend_by_name(hists, *sorted_hists, order_name_hists);
    extend_by_prom(hists, *sorted_hists, StatKind::Histogram, order_prom_hists);
    *sorted_values = m.values.len();
    *sorted_hists = m.hists.len();
}

/// Merged state of one histogram (Envoy's `ParentHistogramImpl`).
#[derive(Clone, Debug)]
pub(crate) struct HistData {
    /// Envoy's `used()`: merged at least once with data.
    pub(crate) used: bool,
    pub(crate) interval: HistogramStatistics,
    pub(crate) cumulative: HistogramStatistics,
    pub(crate) interval_hist: SparseHist,
    pub(crate) cumulative_hist: SparseHist,
}

/// A point-in-time view of every stat in a store.
#[derive(Clone)]
pub struct Snapshot {
    pub(crate) meta: Arc<MetaTable>,
    pub(crate) values: Vec<u64>,
    pub(crate) used: Vec<bool>,
    pub(crate) deltas: Option<Vec<u64>>,
    pub(crate) hists: Vec<Arc<HistData>>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("values", &self.values.len())
            .field("histograms", &self.hists.len())
            .finish()
    }
}

impl Snapshot {
    pub(crate) fn new(
        meta: Arc<MetaTable>,
        values: Vec<u64>,
        used: Vec<bool>,
        deltas: Option<Vec<u64>>,
        hists: Vec<Arc<HistData>>,
    ) -> Self {
        Snapshot {
            meta,
            values,
            used,
            deltas,
            hists,
        }
    }

    fn value_view(&self, slot: u32) -> StatView<'_> {
        StatView { snap: self, slot }
    }

    /// Counters in name order.
    pub fn counters(&self) -> impl Iterator<Item = StatView<'_>> + '_ {
        self.meta
            .order_name_values
            .iter()
            .filter(|&&s| self.meta.values[s as usize].kind == StatKind::Counter)
            .map(|&s| self.value_view(s))
    }

    /// Gauges in name order.
    pub fn gauges(&self) -> impl Iterator<Item = StatView<'_>> + '_ {
        self.meta
            .order_name_values
            .iter()
            .filter(|&&s| self.meta.values[s as usize].kind == StatKind::Gauge)
            .map(|&s| self.value_view(s))
    }

    /// Histograms in name order.
    pub fn histograms(&self) -> impl Iterator<Item = HistogramView<'_>> + '_ {
        self.meta.order_name_hists.iter().map(|&s| HistogramView {
            snap: self,
            slot: s,
        })
    }

    /// The counter named `name`.
    pub fn counter(&self, name: &str) -> Option<StatView<'_>> {
        self.find_value(name, StatKind::Counter)
    }

    /// The gauge named `name`.
    pub fn gauge(&self, name: &str) -> Option<StatView<'_>> {
        self.find_value(name, StatKind::Gauge)
    }

    /// The histogram named `name`.
    pub fn histogram(&self, name: &str) -> Option<HistogramView<'_>> {
        let order = &self.meta.order_name_hists;
        let i = order.partition_point(|&s| self.meta.hist_name(s) < name);
        let &s = order.get(i)?;
        (self.meta.hist_name(s) == name).then_some(HistogramView {
            snap: self,
            slot: s,
        })
    }

    fn find_value(&self, name: &str, kind: StatKind) -> Option<StatView<'_>> {
        let order = &self.meta.order_name_values;
        let mut i = order.partition_point(|&s| self.meta.value_name(s) < name);
        while let Some(&s) = order.get(i) {
            let info = &self.meta.values[s as usize];
            if self.meta.name(info) != name {
                return None;
            }
            if info.kind == kind {
                return Some(self.value_view(s));
            }
            i += 1;
        }
        None
    }
}

/// A counter or gauge in a [`Snapshot`].
#[derive(Clone, Copy)]
pub struct StatView<'a> {
    snap: &'a Snapshot,
    slot: u32,
}

impl<'a> StatView<'a> {
    fn info(&self) -> &'a StatInfo {
        &self.snap.meta.values[self.slot as usize]
    }

    /// Full name.
    pub fn name(&self) -> &'a str {
        self.snap.meta.name(self.info())
    }

    /// Counter or gauge.
    pub fn kind(&self) -> StatKind {
        self.info().kind
    }

    /// Value at snapshot time.
    pub fn value(&self) -> u64 {
        self.snap.values[self.slot as usize]
    }

    /// Ever written (Envoy's `used()`, what `usedonly` shows).
    pub fn used(&self) -> bool {
        self.snap.used[self.slot as usize]
    }

    /// Counters in a [`Store::flush`](crate::Store::flush) snapshot: the
    /// increase since the previous flush. `None` otherwise.
    pub fn delta(&self) -> Option<u64> {
        if self.kind() != StatKind::Counter {
            return None;
        }
        self.snap.deltas.as_ref().map(|d| d[self.slot as usize])
    }

    /// Gauge import mode.
    pub fn import_mode(&self) -> GaugeImportMode {
        self.info().import_mode
    }

    /// Hidden from admin output by default (`HiddenAccumulate` gauges).
    pub fn hidden(&self) -> bool {
        self.info().import_mode == GaugeImportMode::HiddenAccumulate
    }

    /// Tag-extracted name, e.g. `cluster.upstream_rq`.
    pub fn tag_extracted_name(&self) -> &'a str {
        &self.snap.meta.extracted[self.info().extracted as usize].name
    }

    /// Tags in Envoy's order.
    pub fn tags(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let meta: &'a MetaTable = &self.snap.meta;
        meta.tagset(self.info())
            .tags
            .iter()
            .map(move |(n, v)| (&*meta.tag_names[*n as usize].name, &**v))
    }
}

/// A histogram in a [`Snapshot`].
#[derive(Clone, Copy)]
pub struct HistogramView<'a> {
    snap: &'a Snapshot,
    slot: u32,
}

impl<'a> HistogramView<'a> {
    fn info(&self) -> &'a StatInfo {
        &self.snap.meta.hists[self.slot as usize]
    }

    pub(crate) fn data(&self) -> &'a HistData {
        &self.snap.hists[self.slot as usize]
    }

    /// Full name.
    pub fn name(&self) -> &'a str {
        self.snap.meta.name(self.info())
    }

    /// Merged at least once with data (Envoy's `used()`).
    pub fn used(&self) -> bool {
        self.data().used
    }

    /// Unit.
    pub fn unit(&self) -> HistogramUnit {
        self.info().unit
    }

    /// Bucket bounds used for bucket output.
    pub fn supported_buckets(&self) -> &'a [f64] {
        self.snap.meta.bucket_bounds(self.info())
    }

    /// Statistics of the last merge interval.
    pub fn interval(&self) -> &'a HistogramStatistics {
        &self.data().interval
    }

    /// Statistics of everything merged so far.
    pub fn cumulative(&self) -> &'a HistogramStatistics {
        &self.data().cumulative
    }

    /// Raw merged buckets `(lower_bound, width, count)` of the interval.
    pub fn interval_buckets(&self) -> impl Iterator<Item = (f64, f64, u64)> + 'a {
        let scale = self.scale();
        self.data()
            .interval_hist
            .detailed()
            .map(move |(l, w, c)| (l * scale, w * scale, c))
    }

    /// Raw merged buckets `(lower_bound, width, count)` since start.
    pub fn cumulative_buckets(&self) -> impl Iterator<Item = (f64, f64, u64)> + 'a {
        let scale = self.scale();
        self.data()
            .cumulative_hist
            .detailed()
            .map(move |(l, w, c)| (l * scale, w * scale, c))
    }

    fn scale(&self) -> f64 {
        if self.unit() == HistogramUnit::Percent {
            1.0 / crate::histogram::PERCENT_SCALE
        } else {
            1.0
        }
    }

    /// Tag-extracted name.
    pub fn tag_extracted_name(&self) -> &'a str {
        &self.snap.meta.extracted[self.info().extracted as usize].name
    }

    /// Tags in Envoy's order.
    pub fn tags(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let meta: &'a MetaTable = &self.snap.meta;
        meta.tagset(self.info())
            .tags
            .iter()
            .map(move |(n, v)| (&*meta.tag_names[*n as usize].name, &**v))
    }
}
