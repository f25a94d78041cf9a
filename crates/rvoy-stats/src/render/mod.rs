//! Admin stats rendering over a [`Snapshot`]: `/stats` text and JSON (all
//! `histogram_buckets` modes) and `/stats/prometheus`, byte-compatible with
//! Envoy 1.40. Everything per stat that does not depend on values (names,
//! tags, sanitized Prometheus names, sort orders) is precomputed in the
//! snapshot's metadata, so rendering is formatting only: a Prometheus sample
//! is its tag-extracted name's `envoy_...` form, its tag set's label list
//! (rendered once per distinct tag set, shared by e.g. all the stats of a
//! cluster) and its value, copied into the output without allocating.
//! `/stats/prometheus` can also be rendered in chunks as it is sent
//! ([`PrometheusRender`]).

pub mod params;

use std::fmt::Write as _;
use std::sync::OnceLock;

use crate::histogram::{HistogramStatistics, SUPPORTED_QUANTILES};
use crate::numfmt::{fmt_g, fmt_shortest, fmt_to_chars};
use crate::snapshot::{HistogramView, Snapshot, StatKind};
pub use params::{HiddenFlag, HistogramBucketsMode, StatsFormat, StatsParams, StatsType};

/// `Content-Type` of text and Prometheus output.
pub const CONTENT_TYPE_TEXT: &str = "text/plain; charset=UTF-8";
/// `Content-Type` of JSON output.
pub const CONTENT_TYPE_JSON: &str = "application/json";

/// Renders `/stats` in `params.format` (text or JSON; Prometheus is
/// delegated to [`render_prometheus`]). Returns the content type.
pub fn render_stats(snap: &Snapshot, params: &StatsParams, out: &mut String) -> &'static str {
    match params.format {
        StatsFormat::Json => {
            render_json(snap, params, out);
            CONTENT_TYPE_JSON
        }
        StatsFormat::Prometheus => {
            render_prometheus(snap, params, out);
            CONTENT_TYPE_TEXT
        }
        _ => {
            render_text(snap, params, out);
            CONTENT_TYPE_TEXT
        }
    }
}

fn want_values(params: &StatsParams) -> (bool, bool) {
    match params.stats_type {
        StatsType::All => (true, true),
        StatsType::Counters => (true, false),
        StatsType::Gauges => (false, true),
        _ => (false, false),
    }
}

fn want_histograms(params: &StatsParams) -> bool {
    matches!(params.stats_type, StatsType::All | StatsType::Histograms)
}

/// Calls `f(name, value)` for shown counters and gauges in `/stats` order.
fn for_each_value<'a>(snap: &'a Snapshot, params: &StatsParams, mut f: impl FnMut(&'a str, u64)) {
    let (counters, gauges) = want_values(params);
    if !counters && !gauges {
        return;
    }
    let meta = &snap.meta;
    let order = &meta.order_name_values;
    let shown = |slot: u32| -> bool {
        let info = &meta.values[slot as usize];
        let kind_ok = match info.kind {
            StatKind::Counter => counters,
            StatKind::Gauge => gauges,
            StatKind::Histogram => false,
        };
        kind_ok
            && params.should_show(
                meta.name(info),
                snap.used[slot as usize],
                info.import_mode == crate::store::GaugeImportMode::HiddenAccumulate,
            )
    };
    for (i, &slot) in order.iter().enumerate() {
        if !shown(slot) {
            continue;
        }
        let info = &meta.values[slot as usize];
        // Envoy keys its output map by name: a gauge replaces a counter of the
        // same name.
        let name = meta.name(info);
        if let Some(&next) = order.get(i + 1)
            && meta.value_name(next) == name
            && shown(next)
        {
            continue;
        }
        f(name, snap.values[slot as usize]);
    }
}

fn for_each_histogram<'a>(
    snap: &'a Snapshot,
    params: &StatsParams,
    mut f: impl FnMut(HistogramView<'a>),
) {
    if !want_histograms(params) {
        return;
    }
    for h in snap.histograms() {
        if params.should_show(h.name(), h.used(), false) {
            f(h);
        }
    }
}

fn p_labels() -> &'static [String] {
    static LABELS: OnceLock<Vec<String>> = OnceLock::new();
    LABELS.get_or_init(|| {
        SUPPORTED_QUANTILES
            .iter()
            .map(|q| format!("P{}(", fmt_g(100.0 * q, 6)))
            .collect()
    })
}

/// `P0(i,c) P25(i,c) ...` (Envoy's `quantileSummary`).
pub fn quantile_summary(
    interval: &HistogramStatistics,
    cumulative: &HistogramStatistics,
) -> String {
    let mut s = String::with_capacity(200);
    for (i, label) in p_labels().iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(label);
        s.push_str(&fmt_shortest(interval.quantiles[i]));
        s.push(',');
        s.push_str(&fmt_shortest(cumulative.quantiles[i]));
        s.push(')');
    }
    s
}

fn bucket_summary(buckets: &[f64], interval: &[u64], cumulative: &[u64], out: &mut String) {
    for (i, b) in buckets.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let _ = write!(
            out,
            "B{}({},{})",
            fmt_g(*b, 6),
            interval.get(i).copied().unwrap_or(0),
            cumulative.get(i).copied().unwrap_or(0)
        );
    }
}

fn text_detail(buckets: impl Iterator<Item = (f64, f64, u64)>, out: &mut String) {
    let mut delim = "";
    for (l, w, c) in buckets {
        let _ = write!(out, "{delim}{},{}:{c}", fmt_g(l, 6), fmt_g(w, 6));
        delim = ", ";
    }
}

/// `/stats` text output.
pub fn render_text(snap: &Snapshot, params: &StatsParams, out: &mut String) {
    // Names, `: `, values and newlines; histograms' summaries are ~250 bytes.
    let meta = &snap.meta;
    out.reserve(meta.names.bytes() + meta.values.len() * 8 + meta.hists.len() * 256);
    let mut buf = itoa_buf();
    for_each_value(snap, params, |name, value| {
        out.push_str(name);
        out.push_str(": ");
        push_u64(out, &mut buf, value);
        out.push('\n');
    });
    for_each_histogram(snap, params, |h| {
        let name = h.name();
        if !h.used() {
            out.push_str(name);
            out.push_str(": No recorded values\n");
            return;
        }
        match params.histogram_buckets {
            HistogramBucketsMode::Cumulative => {
                out.push_str(name);
                out.push_str(": ");
                bucket_summary(
                    h.supported_buckets(),
                    &h.interval().buckets,
                    &h.cumulative().buckets,
                    out,
                );
                out.push('\n');
            }
            HistogramBucketsMode::Disjoint => {
                out.push_str(name);
                out.push_str(": ");
                let i = h.interval().disjoint_buckets();
                let c = h.cumulative().disjoint_buckets();
                bucket_summary(h.supported_buckets(), &i, &c, out);
                out.push('\n');
            }
            HistogramBucketsMode::Detailed => {
                out.push_str(name);
                out.push_str(":\n  totals=");
                text_detail(h.cumulative_buckets(), out);
                out.push_str("\n  intervals=");
                text_detail(h.interval_buckets(), out);
                out.push_str("\n  summary=");
                out.push_str(&quantile_summary(h.interval(), h.cumulative()));
                out.push('\n');
            }
            _ => {
                out.push_str(name);
                out.push_str(": ");
                out.push_str(&quantile_summary(h.interval(), h.cumulative()));
                out.push('\n');
            }
        }
    });
}

/// Appends `s` as a JSON string literal (Envoy's `Json::sanitize`).
pub fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_number(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("null");
    } else {
        out.push_str(&fmt_to_chars(v));
    }
}

fn json_supported_percentiles(out: &mut String) {
    out.push('[');
    for (i, q) in SUPPORTED_QUANTILES.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&fmt_g(q * 100.0, 6));
    }
    out.push(']');
}

fn json_percentiles(out: &mut String, h: &HistogramView<'_>) {
    out.push('[');
    for i in 0..SUPPORTED_QUANTILES.len() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"cumulative\":");
        json_number(out, h.cumulative().quantiles[i]);
        out.push_str(",\"interval\":");
        json_number(out, h.interval().quantiles[i]);
        out.push('}');
    }
    out.push(']');
}

fn json_detail(out: &mut String, buckets: impl Iterator<Item = (f64, f64, u64)>) {
    out.push('[');
    let mut first = true;
    for (l, w, c) in buckets {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str("{\"lower_bound\":");
        json_number(out, l);
        out.push_str(",\"width\":");
        json_number(out, w);
        let _ = write!(out, ",\"count\":{c}}}");
    }
    out.push(']');
}

/// `/stats?format=json` output.
pub fn render_json(snap: &Snapshot, params: &StatsParams, out: &mut String) {
    out.push_str("{\"stats\":[");
    let mut first = true;
    let mut buf = itoa_buf();
    for_each_value(snap, params, |name, value| {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str("{\"name\":");
        json_string(out, name);
        out.push_str(",\"value\":");
        push_u64(out, &mut buf, value);
        out.push('}');
    });
    let mode = params.histogram_buckets;
    let mut started = false;
    for_each_histogram(snap, params, |h| {
        if !started {
            started = true;
            if !first {
                out.push(',');
            }
            match mode {
                HistogramBucketsMode::Detailed => {
                    out.push_str("{\"histograms\":{\"supported_percentiles\":");
                    json_supported_percentiles(out);
                    out.push_str(",\"details\":[");
                }
                HistogramBucketsMode::Cumulative | HistogramBucketsMode::Disjoint => {
                    out.push_str("{\"histograms\":[");
                }
                _ => {
                    out.push_str("{\"histograms\":{\"supported_quantiles\":");
                    json_supported_percentiles(out);
                    out.push_str(",\"computed_quantiles\":[");
                }
            }
        } else {
            out.push(',');
        }
        out.push_str("{\"name\":");
        json_string(out, h.name());
        match mode {
            HistogramBucketsMode::Detailed => {
                out.push_str(",\"totals\":");
                json_detail(out, h.cumulative_buckets());
                out.push_str(",\"intervals\":");
                json_detail(out, h.interval_buckets());
                out.push_str(",\"percentiles\":");
                json_percentiles(out, &h);
            }
            HistogramBucketsMode::Cumulative | HistogramBucketsMode::Disjoint => {
                let (iv, cu) = if mode == HistogramBucketsMode::Cumulative {
                    (h.interval().buckets.clone(), h.cumulative().buckets.clone())
                } else {
                    (
                        h.interval().disjoint_buckets(),
                        h.cumulative().disjoint_buckets(),
                    )
                };
                out.push_str(",\"buckets\":[");
                for (i, b) in h.supported_buckets().iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str("{\"upper_bound\":");
                    json_number(out, *b);
                    let _ = write!(
                        out,
                        ",\"interval\":{},\"cumulative\":{}}}",
                        iv.get(i).copied().unwrap_or(0),
                        cu.get(i).copied().unwrap_or(0)
                    );
                }
                out.push(']');
            }
            _ => {
                out.push_str(",\"values\":");
                json_percentiles(out, &h);
            }
        }
        out.push('}');
    });
    if started {
        match mode {
            HistogramBucketsMode::Cumulative | HistogramBucketsMode::Disjoint => out.push_str("]}"),
            _ => out.push_str("]}}"),
        }
    }
    out.push_str("]}");
}

/// Target size of one [`PrometheusRender::fill`] chunk of the admin
/// server's streamed `/stats/prometheus` body.
pub const PROMETHEUS_CHUNK: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Counters,
    Gauges,
    Histograms,
    Done,
}

/// `/stats/prometheus` rendered incrementally: each [`fill`](Self::fill)
/// appends whole stats until the output reaches a target length, so the
/// admin server can send the body in chunks while it renders. Holds the
/// snapshot (`S` is a [`Snapshot`] or a reference to one).
///
/// Per sample this copies the stat's Prometheus name (one per tag-extracted
/// name) and its tag set's label list (rendered once per distinct tag set
/// when the first stat with it was registered), and formats the value: no
/// allocation per sample.
pub struct PrometheusRender<S> {
    snap: S,
    params: StatsParams,
    stage: Stage,
    /// Position in the stage's order.
    pos: usize,
    /// Tag-extracted name whose `# TYPE` line was written last.
    current: Option<u32>,
    /// Histograms are rendered (as summaries when `summary`).
    histograms: bool,
    summary: bool,
    quantile_labels: Vec<String>,
    /// `le="..."} ` per bucket of each bucket set, built on first use.
    le_labels: Vec<Option<Vec<String>>>,
    itoa: ItoaBuf,
}

impl<S: std::borrow::Borrow<Snapshot>> PrometheusRender<S> {
    /// A renderer of `snap` with `params` (call
    /// [`StatsParams::validate_for_prometheus`] first; unsupported bucket
    /// modes render no histograms).
    pub fn new(snap: S, params: &StatsParams) -> Self {
        let (summary, histograms) = match params.histogram_buckets {
            HistogramBucketsMode::Summary => (true, true),
            HistogramBucketsMode::Unset | HistogramBucketsMode::Cumulative => (false, true),
            _ => (false, false),
        };
        let quantile_labels = if summary {
            SUPPORTED_QUANTILES
                .iter()
                .map(|q| format!("quantile=\"{}\"}} ", fmt_shortest(*q)))
                .collect()
        } else {
            Vec::new()
        };
        let buckets = snap.borrow().meta.buckets.len();
        PrometheusRender {
            snap,
            params: params.clone(),
            stage: Stage::Counters,
            pos: 0,
            current: None,
            histograms,
            summary,
            quantile_labels,
            le_labels: vec![None; buckets],
            itoa: itoa_buf(),
        }
    }

    /// True once everything has been rendered.
    pub fn is_done(&self) -> bool {
        self.stage == Stage::Done
    }

    /// An upper estimate of the whole output's length (to size a buffer).
    pub fn estimate_len(&self) -> usize {
        let snap = self.snap.borrow();
        let meta = &snap.meta;
        let mut n = 0usize;
        meta.values.for_each_chunk(|_, infos| {
            for info in infos {
                n += meta.extracted[info.extracted as usize].prom.len()
                    + meta.tagset(info).prom.len()
                    + 8;
            }
        });
        if self.histograms {
            meta.hists.for_each_chunk(|_, infos| {
                for info in infos {
                    let lines = if self.summary {
                        SUPPORTED_QUANTILES.len() + 2
                    } else {
                        meta.bucket_bounds(info).len() + 3
                    };
                    n += lines
                        * (meta.extracted[info.extracted as usize].prom.len()
                            + meta.tagset(info).prom.len()
                            + 40);
                }
            });
        }
        n + meta.extracted.len() * 64
    }

    /// Appends output to `out` until it holds at least `target` bytes (or
    /// everything is rendered). Returns true while more remains.
    pub fn fill(&mut self, out: &mut String, target: usize) -> bool {
        while self.stage != Stage::Done && out.len() < target {
            match self.stage {
                Stage::Counters => self.values(out, target, StatKind::Counter, "counter"),
                Stage::Gauges => self.values(out, target, StatKind::Gauge, "gauge"),
                Stage::Histograms => self.histograms(out, target),
                Stage::Done => {}
            }
        }
        self.stage != Stage::Done
    }

    fn next_stage(&mut self) {
        self.stage = match self.stage {
            Stage::Counters => Stage::Gauges,
            Stage::Gauges if self.histograms => Stage::Histograms,
            _ => Stage::Done,
        };
        self.pos = 0;
        self.current = None;
    }

    fn values(&mut self, out: &mut String, target: usize, kind: StatKind, type_name: &str) {
        let snap = self.snap.borrow();
        let meta = &snap.meta;
        let order = if kind == StatKind::Counter {
            &meta.order_prom_counters
        } else {
            &meta.order_prom_gauges
        };
        while let Some(&slot) = order.get(self.pos) {
            self.pos += 1;
            let info = &meta.values[slot as usize];
            if !self.params.should_show_lazy(
                || meta.name(info),
                snap.used[slot as usize],
                info.import_mode == crate::store::GaugeImportMode::HiddenAccumulate,
            ) {
                continue;
            }
            let prom = &*meta.extracted[info.extracted as usize].prom;
            if self.current != Some(info.extracted) {
                self.current = Some(info.extracted);
                out.push_str("# TYPE ");
                out.push_str(prom);
                out.push(' ');
                out.push_str(type_name);
                out.push('\n');
            }
            out.push_str(prom);
            out.push('{');
            out.push_str(&meta.tagset(info).prom);
            out.push_str("} ");
            push_u64(out, &mut self.itoa, snap.values[slot as usize]);
            out.push('\n');
            if out.len() >= target {
                return;
            }
        }
        self.next_stage();
    }

    fn histograms(&mut self, out: &mut String, target: usize) {
        let snap = self.snap.borrow();
        let meta = &snap.meta;
        let summary = self.summary;
        while let Some(&slot) = meta.order_prom_hists.get(self.pos) {
            self.pos += 1;
            let info = &meta.hists[slot as usize];
            let data = &snap.hists[slot as usize];
            if !self
                .params
                .should_show_lazy(|| meta.name(info), data.used, false)
            {
                continue;
            }
            let prom = &*meta.extracted[info.extracted as usize].prom;
            if self.current != Some(info.extracted) {
                self.current = Some(info.extracted);
                out.push_str("# TYPE ");
                out.push_str(prom);
                out.push_str(if summary {
                    " summary\n"
                } else {
                    " histogram\n"
                });
            }
            let tags = &*meta.tagset(info).prom;
            let sep = if tags.is_empty() { "" } else { "," };
            let stats = if summary {
                &data.interval
            } else {
                &data.cumulative
            };
            if summary {
                for (i, label) in self.quantile_labels.iter().enumerate() {
                    out.push_str(prom);
                    out.push('{');
                    out.push_str(tags);
                    out.push_str(sep);
                    out.push_str(label);
                    out.push_str(&fmt_g(stats.quantiles[i], 32));
                    out.push('\n');
                }
            } else {
                let bounds = meta.bucket_bounds(info);
                let labels = self.le_labels[info.buckets as usize].get_or_insert_with(|| {
                    bounds
                        .iter()
                        .map(|b| format!("le=\"{}\"}} ", fmt_g(*b, 32)))
                        .collect()
                });
                for (i, label) in labels.iter().enumerate() {
                    out.push_str(prom);
                    out.push_str("_bucket{");
                    out.push_str(tags);
                    out.push_str(sep);
                    out.push_str(label);
                    push_u64(
                        out,
                        &mut self.itoa,
                        stats.buckets.get(i).copied().unwrap_or(0),
                    );
                    out.push('\n');
                }
                out.push_str(prom);
                out.push_str("_bucket{");
                out.push_str(tags);
                out.push_str(sep);
                out.push_str("le=\"+Inf\"} ");
                push_u64(out, &mut self.itoa, stats.sample_count);
                out.push('\n');
            }
            out.push_str(prom);
            out.push_str("_sum{");
            out.push_str(tags);
            out.push_str("} ");
            out.push_str(&fmt_g(stats.sample_sum, 32));
            out.push('\n');
            out.push_str(prom);
            out.push_str("_count{");
            out.push_str(tags);
            out.push_str("} ");
            push_u64(out, &mut self.itoa, stats.sample_count);
            out.push('\n');
            if out.len() >= target {
                return;
            }
        }
        self.next_stage();
    }
}

/// `/stats/prometheus` output (text exposition) in one piece. Call
/// [`StatsParams::validate_for_prometheus`] first; unsupported bucket modes
/// render no histograms.
pub fn render_prometheus(snap: &Snapshot, params: &StatsParams, out: &mut String) {
    let mut r = PrometheusRender::new(snap, params);
    out.reserve(r.estimate_len());
    r.fill(out, usize::MAX);
}

type ItoaBuf = [u8; 20];

fn itoa_buf() -> ItoaBuf {
    [0u8; 20]
}

/// Appends `v` in decimal (most stats are single digits: no formatting).
#[inline]
fn push_u64(out: &mut String, buf: &mut ItoaBuf, v: u64) {
    if v < 10 {
        out.push(char::from(b'0' + v as u8));
    } else {
        out.push_str(fmt_u64(buf, v));
    }
}

/// Formats `v` in decimal into `buf` without allocating.
fn fmt_u64(buf: &mut ItoaBuf, mut v: u64) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[i..]).unwrap_or("0")
}
