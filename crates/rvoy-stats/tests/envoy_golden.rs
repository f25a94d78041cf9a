//! Golden tests against output captured from a real Envoy 1.40 (see
//! `tests/data/README.md`): the same stat names, values and histogram buckets
//! are loaded into a `Store` configured like that Envoy, and every renderer
//! must reproduce Envoy's bytes. Stats that Envoy's admin requests themselves
//! change between the captures (`*admin*`) are compared structurally only.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use rvoy_stats::render::{self, StatsParams};
use rvoy_stats::{
    GaugeImportMode, HistogramBucketRule, HistogramUnit, Store, StoreOptions, Tag, TagConfig,
    TagProducer, TagSpecifier, TagValue,
};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/envoy_probe");

fn read(name: &str) -> String {
    std::fs::read_to_string(format!("{DIR}/{name}")).expect("test data file")
}

fn lines(name: &str) -> Vec<String> {
    read(name)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// The probe Envoy's `stats_config` and `--stats-tag` flags.
fn probe_options() -> StoreOptions {
    let tags = TagConfig {
        use_all_default_tags: None,
        stats_tags: vec![
            TagSpecifier {
                tag_name: "my_fixed".into(),
                value: TagValue::Fixed("fv".into()),
            },
            TagSpecifier {
                tag_name: "my_regex".into(),
                value: TagValue::Regex(r"^cluster\.backend_3\.((upstream)_)".into()),
            },
        ],
        cli_tags: vec![
            Tag {
                name: "cli1".into(),
                value: "v1".into(),
            },
            Tag {
                name: "cli2".into(),
                value: "v2".into(),
            },
        ],
    };
    let prefix =
        |p: &'static str| -> rvoy_stats::NameMatcher { Arc::new(move |n: &str| n.starts_with(p)) };
    StoreOptions {
        tag_producer: TagProducer::new(&tags).expect("tag config"),
        matcher: None,
        histogram_buckets: vec![
            HistogramBucketRule {
                matcher: prefix("cluster.backend.upstream_rq_time"),
                buckets: vec![1.0, 10.0, 100.5, 1000.0],
            },
            HistogramBucketRule {
                matcher: prefix("cluster.backend."),
                buckets: vec![0.25, 3.0, 1e7],
            },
        ],
    }
}

struct Values {
    values: HashMap<String, u64>,
    used: Option<HashSet<String>>,
}

const DETAILED: &str = "detailed.json";

/// Builds a store holding the probe's stats with the given counter/gauge
/// values and the histograms of `detailed.json`.
/// Stats Envoy creates before it installs the bootstrap's tag producer; they
/// carry no tags at all.
const EARLY_STATS: &[&str] = &[
    "filesystem.flushed_by_timer",
    "filesystem.reopen_failed",
    "filesystem.write_buffered",
    "filesystem.write_completed",
    "filesystem.write_failed",
    "filesystem.write_total_buffered",
    "server.hot_restart_generation",
];

fn build(v: &Values) -> Store {
    build_with(v, DETAILED)
}

fn build_with(v: &Values, detailed_file: &str) -> Store {
    let mut options = probe_options();
    let producer = std::mem::replace(&mut options.tag_producer, TagProducer::none());
    let store = Store::with_options(options);
    let _g = store.register_thread();
    let gauges: HashSet<String> = lines("names_gauges.txt").into_iter().collect();
    for name in EARLY_STATS {
        if gauges.contains(*name) {
            store.gauge(name, GaugeImportMode::Accumulate);
        } else {
            store.counter(name);
        }
    }
    store.set_tag_producer(producer);
    let is_used = |n: &str| v.used.as_ref().is_none_or(|u| u.contains(n));
    for name in lines("names_counters.txt") {
        let c = store.counter(&name);
        if is_used(&name) {
            c.add(v.values.get(&name).copied().unwrap_or(0));
        }
    }
    for name in lines("names_gauges.txt") {
        let g = store.gauge(&name, GaugeImportMode::Accumulate);
        if is_used(&name) {
            g.set(v.values.get(&name).copied().unwrap_or(0));
        }
    }
    let detailed: serde_json::Value = serde_json::from_str(&read(detailed_file)).expect("json");
    let stats = detailed["stats"].as_array().expect("stats");
    let hists = stats
        .iter()
        .find_map(|s| s.get("histograms"))
        .and_then(|h| h["details"].as_array())
        .expect("details");
    let buckets = |v: &serde_json::Value| -> Vec<(u64, u64)> {
        v.as_array()
            .expect("buckets")
            .iter()
            .map(|b| {
                (
                    b["lower_bound"].as_f64().expect("lb").round() as u64,
                    b["count"].as_u64().expect("count"),
                )
            })
            .collect()
    };
    let mut second = Vec::new();
    for h in hists {
        let name = h["name"].as_str().expect("name");
        let hist = store.histogram(name, HistogramUnit::Unspecified);
        let totals = buckets(&h["totals"]);
        let intervals: HashMap<u64, u64> = buckets(&h["intervals"]).into_iter().collect();
        for (value, count) in totals {
            let iv = intervals.get(&value).copied().unwrap_or(0);
            for _ in 0..(count - iv) {
                hist.record(value);
            }
        }
        second.push((hist, intervals));
    }
    store.merge_histograms();
    for (hist, intervals) in second {
        for (value, count) in intervals {
            for _ in 0..count {
                hist.record(value);
            }
        }
    }
    store.merge_histograms();
    store
}

fn text_values(file: &str) -> HashMap<String, u64> {
    lines(file)
        .iter()
        .filter_map(|l| {
            let (n, v) = l.split_once(": ")?;
            Some((n.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn json_values(file: &str) -> HashMap<String, u64> {
    let v: serde_json::Value = serde_json::from_str(&read(file)).expect("json");
    v["stats"]
        .as_array()
        .expect("stats")
        .iter()
        .filter_map(|s| {
            Some((
                s.get("name")?.as_str()?.to_string(),
                s.get("value")?.as_u64()?,
            ))
        })
        .collect()
}

fn volatile(line: &str) -> bool {
    line.contains("admin")
}

fn compare_lines(what: &str, expected: &str, actual: &str) {
    let e: Vec<&str> = expected.split('\n').collect();
    let a: Vec<&str> = actual.split('\n').collect();
    let mut bad = Vec::new();
    let (mut head_x, mut head_y) = ("", "");
    for i in 0..e.len().max(a.len()) {
        let (x, y) = (
            e.get(i).copied().unwrap_or("<eof>"),
            a.get(i).copied().unwrap_or("<eof>"),
        );
        if !x.starts_with(' ') {
            head_x = x;
        }
        if !y.starts_with(' ') {
            head_y = y;
        }
        if x != y && !(volatile(head_x) && volatile(head_y)) {
            bad.push(format!("line {}:\n  envoy: {x}\n  rvoy:  {y}", i + 1));
        }
    }
    assert!(
        bad.is_empty(),
        "{what}: {} mismatching lines, first:\n{}",
        bad.len(),
        bad[..bad.len().min(8)].join("\n")
    );
}

fn render_text(store: &Store, query: &str) -> String {
    let params = StatsParams::parse(query).expect("params");
    let mut out = String::new();
    render::render_stats(&store.snapshot(), &params, &mut out);
    out
}

#[test]
fn text_default() {
    let store = build(&Values {
        values: text_values("stats.txt"),
        used: None,
    });
    compare_lines("stats.txt", &read("stats.txt"), &render_text(&store, ""));
}

#[test]
fn text_histogram_modes() {
    for (file, q) in [
        ("stats_cum.txt", "histogram_buckets=cumulative"),
        ("stats_disj.txt", "histogram_buckets=disjoint"),
        ("stats_det.txt", "histogram_buckets=detailed"),
    ] {
        let store = build(&Values {
            values: text_values(file),
            used: None,
        });
        compare_lines(file, &read(file), &render_text(&store, q));
    }
}

#[test]
fn text_usedonly() {
    let values = text_values("stats_used.txt");
    let used = values.keys().cloned().collect();
    let store = build(&Values {
        values,
        used: Some(used),
    });
    compare_lines(
        "stats_used.txt",
        &read("stats_used.txt"),
        &render_text(&store, "usedonly"),
    );
}

/// Splits Envoy JSON into per-stat pieces so volatile ones can be skipped.
fn json_pieces(s: &str) -> Vec<&str> {
    s.split("{\"name\":").collect()
}

fn compare_json(what: &str, expected: &str, actual: &str) {
    let (e, a) = (json_pieces(expected), json_pieces(actual));
    assert_eq!(e.len(), a.len(), "{what}: number of entries");
    let mut bad = Vec::new();
    for (x, y) in e.iter().zip(&a) {
        if x != y && !(volatile(x) && volatile(y)) {
            bad.push(format!(
                "  envoy: {}\n  rvoy:  {}",
                &x[..x.len().min(300)],
                &y[..y.len().min(300)]
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "{what}: {} mismatches, first:\n{}",
        bad.len(),
        bad[..bad.len().min(5)].join("\n")
    );
}

#[test]
fn json_default_and_cumulative() {
    for (file, q) in [
        ("stats.json", "format=json"),
        ("stats_cum.json", "format=json&histogram_buckets=cumulative"),
    ] {
        let store = build(&Values {
            values: json_values(file),
            used: None,
        });
        compare_json(file, &read(file), &render_text(&store, q));
    }
}

fn sanitize(s: &str) -> String {
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

/// Values keyed by full name, looked up in Envoy's Prometheus output through
/// the tag-extracted name and tags this crate computes.
fn prom_values(file: &str) -> HashMap<String, u64> {
    let by_key: HashMap<String, u64> = lines(file)
        .iter()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect();
    let store = build(&Values {
        values: HashMap::new(),
        used: None,
    });
    let snap = store.snapshot();
    let mut out = HashMap::new();
    for s in snap.counters().chain(snap.gauges()) {
        let tags: Vec<String> = s
            .tags()
            .map(|(n, v)| format!("{}=\"{}\"", sanitize(n), v))
            .collect();
        let key = format!(
            "envoy_{}{{{}}}",
            sanitize(s.tag_extracted_name()),
            tags.join(",")
        );
        if let Some(v) = by_key.get(&key) {
            out.insert(s.name().to_string(), *v);
        }
    }
    out
}

fn render_prom(store: &Store, query: &str) -> String {
    let params = StatsParams::parse(query).expect("params");
    params.validate_for_prometheus().expect("valid");
    let mut out = String::new();
    render::render_prometheus(&store.snapshot(), &params, &mut out);
    out
}

#[test]
fn prometheus_default() {
    let store = build(&Values {
        values: prom_values("prom.txt"),
        used: None,
    });
    compare_lines("prom.txt", &read("prom.txt"), &render_prom(&store, ""));
}

#[test]
fn prometheus_summary_and_filter() {
    let store = build(&Values {
        values: prom_values("prom_summary.txt"),
        used: None,
    });
    compare_lines(
        "prom_summary.txt",
        &read("prom_summary.txt"),
        &render_prom(&store, "histogram_buckets=summary"),
    );
    let store = build(&Values {
        values: prom_values("prom_filter.txt"),
        used: None,
    });
    compare_lines(
        "prom_filter.txt",
        &read("prom_filter.txt"),
        &render_prom(&store, "filter=cluster%5C.backend"),
    );
}

#[test]
fn prometheus_usedonly() {
    let values = prom_values("prom_used.txt");
    let used = values.keys().cloned().collect();
    let store = build(&Values {
        values,
        used: Some(used),
    });
    compare_lines(
        "prom_used.txt",
        &read("prom_used.txt"),
        &render_prom(&store, "usedonly"),
    );
}

/// `detailed_first.json` was captured right after traffic, so its intervals
/// are non-empty: checks interval and cumulative quantiles, totals and
/// intervals of every histogram in Envoy's detailed JSON.
#[test]
fn json_detailed_with_intervals() {
    let file = "detailed_first.json";
    let store = build_with(
        &Values {
            values: json_values(file),
            used: None,
        },
        file,
    );
    compare_json(
        file,
        &read(file),
        &render_text(&store, "format=json&histogram_buckets=detailed"),
    );
}
