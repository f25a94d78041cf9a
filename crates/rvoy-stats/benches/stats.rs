//! Micro-benchmark of the stats hot path on a registered worker thread:
//! counter increments (through the handle and through the worker's
//! `Recorder`), gauge adds/subtracts, histogram records, a status-code
//! counter lookup (`StatusCodeCounters`), and looking an existing counter up by
//! name (what a cold path costs), and registering clusters' stats in a fresh
//! store (what each of a large config's clusters costs at start-up), alone
//! and followed by the first snapshot, which extracts their tags. Run with `cargo bench -p rvoy-stats --bench stats`.

use rvoy_stats::{GaugeImportMode, HistogramUnit, StatusCodeCounters, Store};

fn main() {
    divan::main();
}

#[divan::bench]
fn counter_inc(bencher: divan::Bencher<'_, '_>) {
    let store = Store::new();
    let _thread = store.register_thread();
    let c = store.scope("cluster.backend.").counter("upstream_rq_total");
    c.inc();
    bencher.bench_local(|| divan::black_box(&c).inc());
}

#[divan::bench]
fn gauge_inc_dec(bencher: divan::Bencher<'_, '_>) {
    let store = Store::new();
    let _thread = store.register_thread();
    let g = store
        .scope("cluster.backend.")
        .gauge("upstream_rq_active", GaugeImportMode::Accumulate);
    g.inc();
    bencher.bench_local(|| {
        let g = divan::black_box(&g);
        g.inc();
        g.dec();
    });
}

#[divan::bench]
fn histogram_record(bencher: divan::Bencher<'_, '_>) {
    let store = Store::new();
    let _thread = store.register_thread();
    let h = store
        .scope("cluster.backend.")
        .histogram("upstream_rq_time", HistogramUnit::Milliseconds);
    h.record(1);
    let mut v = 0u64;
    bencher.bench_local(|| {
        v = (v + 7) % 1000;
        divan::black_box(&h).record(v);
    });
}

#[divan::bench]
fn status_code_counter(bencher: divan::Bencher<'_, '_>) {
    let store = Store::new();
    let _thread = store.register_thread();
    let codes = StatusCodeCounters::new(&store.scope("cluster.backend."), "upstream_rq_");
    codes.code(200).inc();
    codes.class(200).inc();
    bencher.bench_local(|| {
        let codes = divan::black_box(&codes);
        codes.code(200).inc();
        codes.class(200).inc();
    });
}

/// [`counter_inc`] through the worker's [`rvoy_stats::Recorder`].
#[divan::bench]
fn counter_inc_recorder(bencher: divan::Bencher<'_, '_>) {
    let store = Store::new();
    let _thread = store.register_thread();
    let rec = store.recorder();
    let c = store.scope("cluster.backend.").counter("upstream_rq_total");
    rec.inc(c);
    bencher.bench_local(|| divan::black_box(&rec).inc(*divan::black_box(&c)));
}

/// The per-request stats of a proxied request in Envoy's HTTP connection
/// manager and router: about a dozen counters, two gauges, two histograms;
/// through each handle (`recorder: false`) or the worker's recorder.
#[divan::bench(args = [false, true])]
fn request_stats(bencher: divan::Bencher<'_, '_>, recorder: bool) {
    let store = Store::new();
    let _thread = store.register_thread();
    let rec = if recorder {
        store.recorder()
    } else {
        rvoy_stats::Recorder::default()
    };
    let hcm = store.scope("http.ingress_http.");
    let cluster = store.scope("cluster.backend.");
    let counters = [
        hcm.counter("downstream_rq_total"),
        hcm.counter("downstream_rq_http1_total"),
        hcm.counter("downstream_rq_completed"),
        hcm.counter("downstream_rq_2xx"),
        cluster.counter("upstream_rq_total"),
        cluster.counter("upstream_rq_completed"),
        cluster.counter("upstream_rq_200"),
        cluster.counter("upstream_rq_2xx"),
        store.counter("listener.127.0.0.1_10000.http.ingress_http.downstream_rq_2xx"),
    ];
    let gauges = [
        hcm.gauge("downstream_rq_active", GaugeImportMode::Accumulate),
        cluster.gauge("upstream_rq_active", GaugeImportMode::Accumulate),
    ];
    let histograms = [
        hcm.histogram("downstream_rq_time", HistogramUnit::Milliseconds),
        cluster.histogram("upstream_rq_time", HistogramUnit::Milliseconds),
    ];
    bencher.bench_local(|| {
        for g in &gauges {
            rec.gauge_inc(*g);
        }
        for c in &counters {
            rec.inc(*c);
        }
        for g in &gauges {
            rec.gauge_dec(*g);
        }
        for h in &histograms {
            rec.record(*h, 3);
        }
    });
}

#[divan::bench]
fn counter_by_name(bencher: divan::Bencher<'_, '_>) {
    let store = Store::new();
    let _thread = store.register_thread();
    let scope = store.scope("cluster.backend.");
    scope.counter("upstream_cx_total").inc();
    bencher.bench_local(|| scope.counter(divan::black_box("upstream_cx_total")));
}

/// Stat names of one cluster, as `ClusterManager` registers them (a sample of
/// the ~107 of Envoy's cluster stats, with the tag-bearing ones).
const CLUSTER_STATS: &[&str] = &[
    "upstream_cx_total",
    "upstream_cx_active",
    "upstream_cx_connect_fail",
    "upstream_cx_rx_bytes_total",
    "upstream_rq_total",
    "upstream_rq_active",
    "upstream_rq_pending_total",
    "upstream_rq_retry",
    "upstream_rq_timeout",
    "upstream_rq_200",
    "upstream_rq_2xx",
    "external.upstream_rq_503",
    "membership_change",
    "membership_healthy",
    "lb_healthy_panic",
    "circuit_breakers.default.cx_open",
    "circuit_breakers.high.rq_pending_open",
    "default.total_match_count",
    "update_attempt",
    "version",
];

fn warm_store() -> Store {
    // The store's tag extractors compile their regexes on first use, once
    // per process in rvoy: warm them outside the measurement.
    let store = Store::new();
    let scope = store.scope("cluster.warm.");
    for name in CLUSTER_STATS {
        scope.counter(name);
    }
    drop(store.snapshot());
    store
}

fn register_clusters(store: &Store, scopes: &[String]) {
    for prefix in scopes {
        let scope = store.scope(prefix);
        for name in CLUSTER_STATS {
            divan::black_box(scope.counter(name));
        }
    }
}

fn cluster_scopes(clusters: usize) -> Vec<String> {
    (0..clusters).map(|i| format!("cluster.c{i:05}.")).collect()
}

#[divan::bench(args = [100])]
fn register_cluster_stats(bencher: divan::Bencher<'_, '_>, clusters: usize) {
    let scopes = cluster_scopes(clusters);
    bencher.with_inputs(warm_store).bench_local_values(|store| {
        register_clusters(&store, &scopes);
        store
    });
}

#[divan::bench(args = [100])]
fn register_cluster_stats_then_snapshot(bencher: divan::Bencher<'_, '_>, clusters: usize) {
    let scopes = cluster_scopes(clusters);
    bencher.with_inputs(warm_store).bench_local_values(|store| {
        register_clusters(&store, &scopes);
        divan::black_box(store.snapshot());
        store
    });
}
