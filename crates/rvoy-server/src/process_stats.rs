//! Process-wide stats with Envoy 1.40's names: `server.*`,
//! `cluster_manager.*`, `listener_manager.*`, `runtime.*`, `filesystem.*`,
//! the watchdog counters, `thread_local_cluster_manager.*`, the overload
//! manager's stats and `http.async-client.*`.
//!
//! They are created when the server starts (Envoy creates them all before
//! the first `/stats` can be asked) and their gauges are set where Envoy sets
//! them: at startup, when the workers start, and on every stats flush
//! ([`ProcessStats::on_flush`]: uptime, memory, connection count).

use rvoy_stats::{Counter, GaugeImportMode, HistogramUnit, Store};
use rvoy_upstream::stats_struct;

stats_struct!(
    /// `server.*`.
    ServerStats {
        counters: [
            debug_assertion_failures,
            dropped_stat_flushes,
            dynamic_unknown_fields,
            envoy_bug_failures,
            envoy_notifications,
            static_unknown_fields,
            wip_protos,
        ],
        gauges: [
            concurrency,
            days_until_first_cert_expiring,
            hot_restart_epoch,
            live,
            memory_allocated,
            memory_heap_size,
            memory_physical_size,
            parent_connections,
            seconds_until_first_ocsp_response_expiring,
            state,
            stats_recent_lookups,
            total_connections,
            uptime,
            version,
        ],
        histograms: [initialization_time_ms: Milliseconds],
    }
);

stats_struct!(
    /// `cluster_manager.*`.
    ClusterManagerStats {
        counters: [
            cluster_added,
            cluster_modified,
            cluster_removed,
            cluster_updated,
            cluster_updated_via_merge,
            update_merge_cancelled,
            update_out_of_merge_window,
        ],
        gauges: [active_clusters, warming_clusters],
        histograms: [],
    }
);

stats_struct!(
    /// `listener_manager.*`.
    ListenerManagerStats {
        counters: [
            listener_added,
            listener_create_failure,
            listener_create_success,
            listener_in_place_updated,
            listener_modified,
            listener_removed,
            listener_stopped,
        ],
        gauges: [
            total_filter_chains_draining,
            total_listeners_active,
            total_listeners_draining,
            total_listeners_warming,
            workers_pinned,
            workers_started,
        ],
        histograms: [],
    }
);

stats_struct!(
    /// `runtime.*`.
    RuntimeStats {
        counters: [
            deprecated_feature_use,
            load_error,
            load_success,
            override_dir_exists,
            override_dir_not_exists,
        ],
        gauges: [
            admin_overrides_active,
            deprecated_feature_seen_since_process_start,
            num_keys,
            num_layers,
        ],
        histograms: [],
    }
);

stats_struct!(
    /// `filesystem.*` (file access log writes).
    FilesystemStats {
        counters: [
            flushed_by_timer,
            reopen_failed,
            write_buffered,
            write_completed,
            write_failed,
        ],
        gauges: [write_total_buffered],
        histograms: [],
    }
);

stats_struct!(
    /// `<thread>.watchdog_miss` / `watchdog_mega_miss`.
    WatchdogStats {
        counters: [watchdog_mega_miss, watchdog_miss],
        gauges: [],
        histograms: [],
    }
);

/// Codec stat families Envoy creates with the first connection of a kind:
/// `http2.*` (first downstream HTTP/2 connection), `cluster.<name>.http1.*`
/// and `cluster.<name>.http2.*` (first upstream connection of that
/// protocol). rvoy creates them when the connection counters first show
/// such a connection (before every `/stats` answer and flush), and keeps the
/// `*_connections` counters in step.
#[derive(Debug, Default)]
pub struct CodecFamilies {
    downstream_h2: std::sync::OnceLock<rvoy_http::stats::Http2CodecStats>,
    downstream_h2_seen: std::sync::atomic::AtomicU64,
    clusters: std::sync::Mutex<std::collections::HashMap<String, ClusterCodecs>>,
}

#[derive(Debug, Default)]
struct ClusterCodecs {
    http1: Option<rvoy_http::stats::Http1CodecStats>,
    http2: Option<(rvoy_http::stats::Http2CodecStats, u64)>,
}

impl CodecFamilies {
    /// Creates the families whose first connection happened.
    pub fn materialize(&self, store: &Store, snap: &crate::snapshot::Snapshot) {
        use std::sync::atomic::Ordering;
        let h2_total: u64 = snap
            .listeners
            .iter()
            .flat_map(|l| l.chains.iter().chain(l.default_chain.iter()))
            .filter_map(|c| c.http.as_ref())
            .map(|h| store.counter_value(h.stats.hcm.downstream_cx_http2_total))
            .sum();
        if h2_total > 0 {
            let stats = self
                .downstream_h2
                .get_or_init(|| rvoy_http::stats::Http2CodecStats::new(&store.scope("http2.")));
            let seen = self.downstream_h2_seen.swap(h2_total, Ordering::Relaxed);
            stats
                .nghttp2_downstream_connections
                .add(h2_total.saturating_sub(seen));
        }
        let Ok(mut clusters) = self.clusters.lock() else {
            return;
        };
        for c in &snap.clusters.ordered {
            let t = &c.stats.traffic;
            let h1 = store.counter_value(t.upstream_cx_http1_total);
            let h2 = store.counter_value(t.upstream_cx_http2_total);
            if h1 == 0 && h2 == 0 {
                continue;
            }
            let entry = clusters.entry(c.config.stat_name.clone()).or_default();
            let scope = store.scope(&format!("cluster.{}.", c.config.stat_name));
            if h1 > 0 && entry.http1.is_none() {
                entry.http1 = Some(rvoy_http::stats::Http1CodecStats::new(
                    &scope.scope("http1."),
                ));
            }
            if h2 > 0 {
                let (stats, seen) = entry.http2.get_or_insert_with(|| {
                    (
                        rvoy_http::stats::Http2CodecStats::new(&scope.scope("http2.")),
                        0,
                    )
                });
                stats
                    .nghttp2_upstream_connections
                    .add(h2.saturating_sub(*seen));
                *seen = h2.max(*seen);
            }
        }
    }
}

/// Every process-wide stat family.
#[derive(Debug)]
pub struct ProcessStats {
    pub server: ServerStats,
    pub cluster_manager: ClusterManagerStats,
    pub listener_manager: ListenerManagerStats,
    pub runtime: RuntimeStats,
    pub filesystem: FilesystemStats,
    pub async_client: rvoy_http::stats::RouterStats,
    pub watchdogs: Vec<WatchdogStats>,
    /// `thread_local_cluster_manager.<thread>.clusters_inflated`.
    pub clusters_inflated: Vec<rvoy_stats::Gauge>,
    pub reset_high_memory_stream: Counter,
    pub overload_refresh_interval_delay: rvoy_stats::Histogram,
    /// Codec families created with the first connection of their kind.
    pub codecs: CodecFamilies,
}

/// Envoy's `server.version`: the first 24 bits of the build's git SHA.
pub fn server_version(sha: &str) -> u64 {
    sha.get(..6)
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or(0)
}

impl ProcessStats {
    /// Creates every family. `filesystem` is passed in because Envoy creates
    /// it before the bootstrap's tag producer is installed, so its stats have
    /// no tags at all (not even `--stats-tag` ones).
    pub fn new(store: &Store, concurrency: usize, filesystem: FilesystemStats) -> Self {
        let root = store.scope("");
        let server_scope = root.scope("server.");
        let mut watchdogs = vec![
            WatchdogStats::new(&root.scope("main_thread.")),
            WatchdogStats::new(&root.scope("workers.")),
            WatchdogStats::new(&server_scope.scope("main_thread.")),
        ];
        let mut threads = vec!["main_thread".to_owned()];
        for i in 0..concurrency {
            watchdogs.push(WatchdogStats::new(
                &server_scope.scope(&format!("worker_{i}.")),
            ));
            threads.push(format!("worker_{i}"));
        }
        let tlcm = root.scope("thread_local_cluster_manager.");
        let stats = ProcessStats {
            server: ServerStats::new(&server_scope),
            cluster_manager: ClusterManagerStats::new(&root.scope("cluster_manager.")),
            listener_manager: ListenerManagerStats::new(&root.scope("listener_manager.")),
            runtime: RuntimeStats::new(&root.scope("runtime.")),
            filesystem,
            async_client: rvoy_http::stats::RouterStats::new(&root.scope("http.async-client.")),
            watchdogs,
            clusters_inflated: threads
                .iter()
                .map(|t| {
                    tlcm.scope(t)
                        .gauge("clusters_inflated", GaugeImportMode::NeverImport)
                })
                .collect(),
            reset_high_memory_stream: root
                .scope("envoy.overload_actions.reset_high_memory_stream.")
                .counter("count"),
            overload_refresh_interval_delay: root
                .scope("overload.")
                .histogram("refresh_interval_delay", HistogramUnit::Milliseconds),
            codecs: CodecFamilies::default(),
        };
        server_scope
            .scope("compilation_settings.")
            .gauge("fips_mode", GaugeImportMode::NeverImport)
            .set(0);
        stats
    }

    /// Sets the gauges whose value is known once the config is loaded.
    pub fn on_config(&self, config: &rvoy_model::Config, runtime: &RuntimeSummary) {
        let s = &self.server;
        s.concurrency
            .set(self.clusters_inflated.len().saturating_sub(1) as u64);
        s.days_until_first_cert_expiring.set(u64::from(u32::MAX));
        // Envoy writes these at startup (zero), so `usedonly` lists them.
        s.dynamic_unknown_fields.add(0);
        s.static_unknown_fields.add(0);
        s.wip_protos.add(0);
        self.listener_manager.total_listeners_warming.set(0);
        self.cluster_manager.warming_clusters.set(0);
        let cm = &self.cluster_manager;
        cm.cluster_added.add(config.clusters.len() as u64);
        cm.active_clusters.set(config.clusters.len() as u64);
        for g in &self.clusters_inflated {
            g.set(config.clusters.len() as u64);
        }
        self.listener_manager
            .listener_added
            .add(config.listeners.len() as u64);
        let rt = &self.runtime;
        // Envoy loads the runtime twice at startup (initial snapshot, then the
        // one with the admin layer) and looks for an override directory each time.
        rt.load_success.add(2);
        rt.override_dir_not_exists.add(2);
        rt.num_layers.set(runtime.layers as u64);
        rt.num_keys.set(runtime.keys as u64);
    }

    /// The workers started: listeners are active on each of them.
    pub fn on_workers_started(&self, listeners: usize, workers: usize) {
        let lm = &self.listener_manager;
        lm.listener_create_success.add((listeners * workers) as u64);
        lm.total_listeners_active.set(listeners as u64);
        lm.workers_started.set(1);
    }
}

/// What `/runtime` and `runtime.*` report about the layered runtime.
#[derive(Clone, Debug, Default)]
pub struct RuntimeSummary {
    pub layers: usize,
    pub keys: usize,
}

/// Memory figures for `/memory` and `server.memory_*`, from
/// `/proc/self/status` (rvoy uses the system allocator, which has no
/// tcmalloc-style statistics): allocated = anonymous resident memory,
/// heap size = data segment size, physical = resident set size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryFigures {
    pub allocated: u64,
    pub heap_size: u64,
    pub physical: u64,
}

impl MemoryFigures {
    /// Reads the current figures (zeros when `/proc` is unavailable).
    pub fn read() -> Self {
        std::fs::read_to_string("/proc/self/status")
            .map(|s| Self::parse(&s))
            .unwrap_or_default()
    }

    /// Parses `/proc/<pid>/status`.
    pub fn parse(status: &str) -> Self {
        let kb = |key: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
                .map_or(0, |v| v * 1024)
        };
        MemoryFigures {
            allocated: kb("RssAnon:"),
            heap_size: kb("VmData:"),
            physical: kb("VmRSS:"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_from_sha() {
        assert_eq!(
            server_version("9e5580933739775e8bce696a57a2e1bc99368f23"),
            10376576
        );
        assert_eq!(server_version(""), 0);
        assert_eq!(server_version("zz"), 0);
    }

    #[test]
    fn memory_from_proc_status() {
        let m = MemoryFigures::parse(
            "Name:\trvoy\nVmData:\t  100 kB\nVmRSS:\t  30 kB\nRssAnon:\t 20 kB\n",
        );
        assert_eq!(
            m,
            MemoryFigures {
                allocated: 20 * 1024,
                heap_size: 100 * 1024,
                physical: 30 * 1024
            }
        );
    }

    #[test]
    fn names_match_envoy() {
        let store = Store::new();
        let fs = FilesystemStats::new(&store.scope("filesystem."));
        let _p = ProcessStats::new(&store, 2, fs);
        let snap = store.snapshot();
        for name in [
            "cluster_manager.active_clusters",
            "listener_manager.workers_started",
            "runtime.num_layers",
            "filesystem.write_total_buffered",
            "thread_local_cluster_manager.worker_1.clusters_inflated",
            "server.compilation_settings.fips_mode",
        ] {
            assert!(snap.gauge(name).is_some(), "{name}");
        }
        for name in [
            "server.worker_1.watchdog_miss",
            "workers.watchdog_mega_miss",
            "http.async-client.rq_total",
            "envoy.overload_actions.reset_high_memory_stream.count",
        ] {
            assert!(snap.counter(name).is_some(), "{name}");
        }
        assert!(snap.gauge("server.hot_restart_generation").is_none());
    }
}
