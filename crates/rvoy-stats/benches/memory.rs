//! Memory per stat and per cluster, and the cost of one `/stats/prometheus`
//! render, for a store holding N clusters' worth of `cluster.<name>.*` stats
//! registered through the API the server uses (`Scope::counter`, `gauge`,
//! `histogram`; the gauges the cluster manager sets at start-up are set).
//!
//! A counting global allocator reports live heap bytes (and the peak during
//! the render); RSS is read from `/proc/self/status`.
//!
//! ```sh
//! cargo bench -p rvoy-stats --bench memory            # 10,000 clusters
//! cargo bench -p rvoy-stats --bench memory -- 1000    # 1,000 clusters
//! ```
//!
//! Envoy 1.40's figure to compare with: ~53 KiB RSS per cluster for the whole
//! process (528 MiB idle with 10,000 static clusters, `bench/prometheus-render`).
#![allow(unsafe_code)] // the counting allocator

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use rvoy_stats::{GaugeImportMode, HistogramUnit, StatusCodeCounters, Store, render};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

fn note_alloc(size: usize) {
    let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(live, Ordering::Relaxed);
    ALLOCS.fetch_add(1, Ordering::Relaxed);
}

// SAFETY: forwards to the system allocator unchanged, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        note_alloc(new_size);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// `cluster.<name>.*` as rvoy 0.1 registers them for a static cluster
/// (`rvoy_upstream::stats`): counters, gauges, histograms.
const COUNTERS: &[&str] = &[
    "bind_errors",
    "upstream_cx_close_notify",
    "upstream_cx_connect_attempts_exceeded",
    "upstream_cx_connect_fail",
    "upstream_cx_connect_timeout",
    "upstream_cx_connect_with_0_rtt",
    "upstream_cx_destroy",
    "upstream_cx_destroy_local",
    "upstream_cx_destroy_local_with_active_rq",
    "upstream_cx_destroy_remote",
    "upstream_cx_destroy_remote_with_active_rq",
    "upstream_cx_destroy_with_active_rq",
    "upstream_cx_http1_total",
    "upstream_cx_http2_total",
    "upstream_cx_http3_total",
    "upstream_cx_idle_timeout",
    "upstream_cx_max_duration_reached",
    "upstream_cx_max_requests",
    "upstream_cx_none_healthy",
    "upstream_cx_overflow",
    "upstream_cx_pool_overflow",
    "upstream_cx_preconnect_skipped",
    "upstream_cx_protocol_error",
    "upstream_cx_rx_bytes_total",
    "upstream_cx_total",
    "upstream_cx_tx_bytes_total",
    "upstream_flow_control_backed_up_total",
    "upstream_flow_control_drained_total",
    "upstream_flow_control_paused_reading_total",
    "upstream_flow_control_resumed_reading_total",
    "upstream_http3_broken",
    "upstream_internal_redirect_failed_total",
    "upstream_internal_redirect_succeeded_total",
    "upstream_rq_0rtt",
    "upstream_rq_active_overflow",
    "upstream_rq_cancelled",
    "upstream_rq_completed",
    "upstream_rq_maintenance_mode",
    "upstream_rq_max_duration_reached",
    "upstream_rq_pending_failure_eject",
    "upstream_rq_pending_overflow",
    "upstream_rq_pending_total",
    "upstream_rq_per_try_timeout",
    "upstream_rq_per_try_idle_timeout",
    "upstream_rq_retry",
    "upstream_rq_retry_backoff_exponential",
    "upstream_rq_retry_backoff_ratelimited",
    "upstream_rq_retry_limit_exceeded",
    "upstream_rq_retry_overflow",
    "upstream_rq_retry_success",
    "upstream_rq_rx_reset",
    "upstream_rq_rx_reset_no_error",
    "upstream_rq_timeout",
    "upstream_rq_total",
    "upstream_rq_tx_reset",
    "retry_or_shadow_abandoned",
    "default.total_match_count",
    "assignment_stale",
    "assignment_timeout_received",
    "assignment_use_cached",
    "lb_healthy_panic",
    "lb_local_cluster_not_ok",
    "lb_recalculate_zone_structures",
    "lb_subsets_created",
    "lb_subsets_fallback",
    "lb_subsets_fallback_panic",
    "lb_subsets_removed",
    "lb_subsets_selected",
    "lb_zone_cluster_too_small",
    "lb_zone_no_capacity_left",
    "lb_zone_routing_all_directly",
    "lb_zone_routing_cross_zone",
    "lb_zone_routing_sampled",
    "membership_change",
    "original_dst_host_invalid",
    "update_attempt",
    "update_empty",
    "update_failure",
    "update_no_rebuild",
    "update_success",
];

const GAUGES: &[&str] = &[
    "upstream_cx_active",
    "upstream_cx_rx_bytes_buffered",
    "upstream_cx_tx_bytes_buffered",
    "upstream_rq_active",
    "upstream_rq_pending_active",
    "lb_subsets_active",
    "max_host_weight",
    "membership_degraded",
    "membership_excluded",
    "membership_healthy",
    "membership_total",
    "upstream_queue_overloaded",
    "version",
    "warming_state",
];

const CB_GAUGES: &[&str] = &[
    "cx_open",
    "cx_pool_open",
    "rq_pending_open",
    "rq_open",
    "rq_retry_open",
];

const HISTOGRAMS: &[(&str, HistogramUnit)] = &[
    ("upstream_cx_connect_ms", HistogramUnit::Milliseconds),
    ("upstream_cx_length_ms", HistogramUnit::Milliseconds),
    ("upstream_rq_per_cx", HistogramUnit::Unspecified),
];

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn mib(b: usize) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// Keeps what the server keeps per cluster besides the store's own data:
/// the lazily registered response-code tables (`ResponseCodeStats`).
struct ClusterHandles {
    _codes: [StatusCodeCounters; 2],
}

fn register_cluster(store: &Store, i: usize) -> ClusterHandles {
    let scope = store.scope(&format!("cluster.c{i:05}."));
    let codes = [
        StatusCodeCounters::new(&scope, "upstream_rq_"),
        StatusCodeCounters::new(&scope.scope("external."), "upstream_rq_"),
    ];
    for c in COUNTERS {
        scope.counter(c);
    }
    for g in GAUGES {
        let g = scope.gauge(g, GaugeImportMode::Accumulate);
        g.set(0);
    }
    for priority in ["default", "high"] {
        let cb = scope.scope(&format!("circuit_breakers.{priority}."));
        for g in CB_GAUGES {
            cb.gauge(g, GaugeImportMode::Accumulate).set(0);
        }
    }
    for (h, unit) in HISTOGRAMS {
        scope.histogram(h, *unit);
    }
    // What the cluster manager records at start-up.
    scope.counter("membership_change").inc();
    scope.counter("update_success").inc();
    scope
        .gauge("membership_total", GaugeImportMode::Accumulate)
        .set(1);
    scope
        .gauge("membership_healthy", GaugeImportMode::Accumulate)
        .set(1);
    ClusterHandles { _codes: codes }
}

fn main() {
    let clusters: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000);
    let rss0 = rss_kib();
    let live0 = LIVE.load(Ordering::Relaxed);
    let allocs0 = ALLOCS.load(Ordering::Relaxed);
    let t = Instant::now();
    let store = Store::new();
    let _thread = store.register_thread();
    let handles: Vec<ClusterHandles> = (0..clusters).map(|i| register_cluster(&store, i)).collect();
    let reg_time = t.elapsed();
    // A stats flush (the server's first one comes 5 s after start-up).
    let t = Instant::now();
    drop(store.flush());
    let flush_time = t.elapsed();
    let stats = store.len();
    let live = LIVE.load(Ordering::Relaxed) - live0;
    let allocs = ALLOCS.load(Ordering::Relaxed) - allocs0;
    let rss = rss_kib().saturating_sub(rss0);
    println!(
        "{clusters} clusters, {stats} stats registered in {:.0} ms, first flush {:.0} ms ({} allocations)",
        reg_time.as_secs_f64() * 1000.0,
        flush_time.as_secs_f64() * 1000.0,
        allocs
    );
    println!(
        "heap: {:.1} MiB live = {:.0} bytes/stat, {:.2} KiB/cluster",
        mib(live),
        live as f64 / stats as f64,
        live as f64 / 1024.0 / clusters as f64
    );
    println!(
        "RSS growth: {:.1} MiB = {:.2} KiB/cluster",
        rss as f64 / 1024.0,
        rss as f64 / clusters as f64
    );

    let params = render::StatsParams::parse("").expect("params");
    for round in 0..3 {
        let before = LIVE.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let t = Instant::now();
        let snap = store.snapshot();
        let mut out = String::new();
        render::render_prometheus(&snap, &params, &mut out);
        let elapsed = t.elapsed();
        let peak = PEAK.load(Ordering::Relaxed) - before;
        println!(
            "render {round}: {:.1} MiB Prometheus body, {:.0} ms, heap peak +{:.1} MiB",
            mib(out.len()),
            elapsed.as_secs_f64() * 1000.0,
            mib(peak)
        );
        drop(out);
        drop(snap);
    }
    for round in 0..3 {
        let before = LIVE.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let t = Instant::now();
        let mut r = render::PrometheusRender::new(store.snapshot(), &params);
        let mut chunk = String::with_capacity(render::PROMETHEUS_CHUNK + 4096);
        let (mut bytes, mut chunks) = (0, 0);
        loop {
            let more = r.fill(&mut chunk, render::PROMETHEUS_CHUNK);
            bytes += chunk.len();
            chunks += 1;
            chunk.clear();
            if !more {
                break;
            }
        }
        println!(
            "streamed render {round}: {:.1} MiB in {chunks} chunks, {:.0} ms, heap peak +{:.1} MiB",
            mib(bytes),
            t.elapsed().as_secs_f64() * 1000.0,
            mib(PEAK.load(Ordering::Relaxed) - before)
        );
    }
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let t = Instant::now();
    let snap = store.snapshot();
    let mut out = String::new();
    render::render_text(&snap, &params, &mut out);
    println!(
        "/stats text: {:.1} MiB, {:.0} ms, heap peak +{:.1} MiB",
        mib(out.len()),
        t.elapsed().as_secs_f64() * 1000.0,
        mib(PEAK.load(Ordering::Relaxed) - before)
    );
    drop(handles);
}
