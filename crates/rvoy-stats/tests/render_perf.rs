//! Rendering cost at scale: 10,000 clusters x 60 stats. In release builds
//! `/stats/prometheus` (snapshot + render) must take well under a second; in
//! debug builds the same code runs on 1,000 clusters without a time limit.
//! Run `cargo test --release -p rvoy-stats --test render_perf -- --nocapture`
//! to see the timings.

use std::time::Instant;

use rvoy_stats::render::{self, StatsParams};
use rvoy_stats::{GaugeImportMode, HistogramUnit, Store};

const COUNTERS: [&str; 50] = [
    "assignment_stale",
    "assignment_timeout_received",
    "bind_errors",
    "default.total_match_count",
    "lb_healthy_panic",
    "lb_local_cluster_not_ok",
    "lb_recalculate_zone_structures",
    "lb_subsets_created",
    "lb_subsets_fallback",
    "lb_subsets_removed",
    "lb_subsets_selected",
    "lb_zone_cluster_too_small",
    "membership_change",
    "original_dst_host_invalid",
    "retry_or_shadow_abandoned",
    "update_attempt",
    "update_empty",
    "update_failure",
    "update_no_rebuild",
    "update_success",
    "upstream_cx_close_notify",
    "upstream_cx_connect_attempts_exceeded",
    "upstream_cx_connect_fail",
    "upstream_cx_connect_timeout",
    "upstream_cx_destroy",
    "upstream_cx_destroy_local",
    "upstream_cx_destroy_remote",
    "upstream_cx_http1_total",
    "upstream_cx_http2_total",
    "upstream_cx_idle_timeout",
    "upstream_cx_none_healthy",
    "upstream_cx_overflow",
    "upstream_cx_pool_overflow",
    "upstream_cx_protocol_error",
    "upstream_cx_rx_bytes_total",
    "upstream_cx_total",
    "upstream_cx_tx_bytes_total",
    "upstream_flow_control_paused_reading_total",
    "upstream_rq_200",
    "upstream_rq_2xx",
    "upstream_rq_503",
    "upstream_rq_5xx",
    "upstream_rq_cancelled",
    "upstream_rq_completed",
    "upstream_rq_maintenance_mode",
    "upstream_rq_pending_overflow",
    "upstream_rq_per_try_timeout",
    "upstream_rq_retry",
    "upstream_rq_timeout",
    "upstream_rq_total",
];
const GAUGES: [&str; 7] = [
    "circuit_breakers.default.cx_open",
    "circuit_breakers.default.rq_open",
    "lb_subsets_active",
    "max_host_weight",
    "membership_healthy",
    "membership_total",
    "upstream_cx_active",
];
const HISTOGRAMS: [&str; 3] = [
    "upstream_cx_connect_ms",
    "upstream_cx_length_ms",
    "upstream_rq_time",
];

#[test]
fn prometheus_render_at_scale() {
    let clusters = if cfg!(debug_assertions) {
        1_000
    } else {
        10_000
    };
    let store = Store::new();
    let _g = store.register_thread();
    let t = Instant::now();
    for c in 0..clusters {
        let scope = store.scope(&format!("cluster.backend_{c}"));
        for (i, n) in COUNTERS.iter().enumerate() {
            scope.counter(n).add((c * i) as u64);
        }
        for n in GAUGES {
            scope.gauge(n, GaugeImportMode::Accumulate).inc();
        }
        for n in HISTOGRAMS {
            let h = scope.histogram(n, HistogramUnit::Milliseconds);
            h.record(c as u64 % 1000);
            h.record(42);
        }
    }
    let registered = t.elapsed();
    let t = Instant::now();
    store.merge_histograms();
    let merged = t.elapsed();
    let params = StatsParams::parse("").expect("params");
    let mut out = String::new();
    // The first snapshot also builds the cached sort orders.
    let t = Instant::now();
    render::render_prometheus(&store.snapshot(), &params, &mut out);
    let first = t.elapsed();
    out.clear();
    let t = Instant::now();
    let snap = store.snapshot();
    let snapped = t.elapsed();
    render::render_prometheus(&snap, &params, &mut out);
    let rendered = t.elapsed();
    let mut text = String::new();
    let t = Instant::now();
    render::render_text(&snap, &params, &mut text);
    let text_time = t.elapsed();
    println!(
        "{clusters} clusters, {} stats: register {registered:?}, merge {merged:?}, first render {first:?}, \
         snapshot {snapped:?}, snapshot+prometheus {rendered:?} ({} bytes), text {text_time:?}",
        clusters * 60,
        out.len()
    );
    assert!(out.contains("envoy_cluster_upstream_rq{envoy_response_code=\"503\",envoy_cluster_name=\"backend_1\"} 40\n"));
    if !cfg!(debug_assertions) {
        assert!(
            rendered.as_millis() < 500,
            "prometheus render took {rendered:?}"
        );
        assert!(first.as_millis() < 1500, "first render took {first:?}");
    }
}
