//! Micro-benchmark of the stats hot path on a registered worker thread:
//! counter increments, gauge adds/subtracts, histogram records, a status-code
//! counter lookup (`StatusCodeCounters`), and looking an existing counter up by
//! name (what a cold path costs). Run with `cargo bench -p rvoy-stats --bench stats`.

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

/// The per-request stats of a proxied request in Envoy's HTTP connection
/// manager and router: about a dozen counters, two gauges, two histograms.
#[divan::bench]
fn request_stats(bencher: divan::Bencher<'_, '_>) {
    let store = Store::new();
    let _thread = store.register_thread();
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
            g.inc();
        }
        for c in &counters {
            c.inc();
        }
        for g in &gauges {
            g.dec();
        }
        for h in &histograms {
            h.record(3);
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
