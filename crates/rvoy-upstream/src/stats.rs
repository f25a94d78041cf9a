//! Cluster stats (`cluster.<name>.*`) with Envoy's names: traffic counters the
//! router and pools record, membership and DNS update stats, circuit breaker
//! gauges, resolved to handles when the cluster is built.

pub use rvoy_stats::{
    Counter, Gauge, GaugeImportMode, Histogram, HistogramUnit, Scope, StatusCodeCounters,
};

/// Declares a struct of stat handles named like its fields, built from a scope.
#[macro_export]
macro_rules! stats_struct {
    ($(#[$m:meta])* $name:ident { counters: [$($c:ident),* $(,)?], gauges: [$($g:ident),* $(,)?], histograms: [$($h:ident : $u:ident),* $(,)?] $(,)? }) => {
        $(#[$m])*
        #[derive(Debug)]
        pub struct $name {
            $(pub $c: $crate::stats::Counter,)*
            $(pub $g: $crate::stats::Gauge,)*
            $(pub $h: $crate::stats::Histogram,)*
        }

        impl $name {
            pub fn new(scope: &$crate::stats::Scope) -> Self {
                $name {
                    $($c: scope.counter(stringify!($c)),)*
                    $($g: scope.gauge(stringify!($g), $crate::stats::GaugeImportMode::Accumulate),)*
                    $($h: scope.histogram(stringify!($h), $crate::stats::HistogramUnit::$u),)*
                }
            }
        }
    };
}

stats_struct!(
    /// `cluster.<name>.*` stats the router and pools record.
    ClusterTrafficStats {
        counters: [
            upstream_cx_total,
            upstream_cx_http1_total,
            upstream_cx_http2_total,
            upstream_cx_connect_fail,
            upstream_cx_connect_timeout,
            upstream_cx_idle_timeout,
            upstream_cx_connect_attempts_exceeded,
            upstream_cx_overflow,
            upstream_cx_destroy,
            upstream_cx_destroy_local,
            upstream_cx_destroy_remote,
            upstream_cx_destroy_with_active_rq,
            upstream_cx_destroy_local_with_active_rq,
            upstream_cx_destroy_remote_with_active_rq,
            upstream_cx_close_notify,
            upstream_cx_rx_bytes_total,
            upstream_cx_tx_bytes_total,
            upstream_cx_protocol_error,
            upstream_cx_max_requests,
            upstream_cx_none_healthy,
            upstream_cx_pool_overflow,
            upstream_rq_total,
            upstream_rq_completed,
            upstream_rq_cancelled,
            upstream_rq_maintenance_mode,
            upstream_rq_timeout,
            upstream_rq_max_duration_reached,
            upstream_rq_per_try_timeout,
            upstream_rq_per_try_idle_timeout,
            upstream_rq_rx_reset,
            upstream_rq_tx_reset,
            upstream_rq_retry,
            upstream_rq_retry_backoff_exponential,
            upstream_rq_retry_backoff_ratelimited,
            upstream_rq_retry_limit_exceeded,
            upstream_rq_retry_success,
            upstream_rq_retry_overflow,
            upstream_rq_pending_total,
            upstream_rq_pending_overflow,
            upstream_rq_pending_failure_eject,
            upstream_flow_control_paused_reading_total,
            upstream_flow_control_resumed_reading_total,
            upstream_flow_control_backed_up_total,
            upstream_flow_control_drained_total,
            upstream_internal_redirect_failed_total,
            upstream_internal_redirect_succeeded_total,
        ],
        gauges: [
            upstream_cx_active,
            upstream_cx_rx_bytes_buffered,
            upstream_cx_tx_bytes_buffered,
            upstream_rq_active,
            upstream_rq_pending_active,
        ],
        histograms: [
            upstream_cx_connect_ms: Milliseconds,
            upstream_cx_length_ms: Milliseconds,
            upstream_rq_time: Milliseconds,
        ],
    }
);

/// Everything the data plane records for one cluster.
#[derive(Debug)]
pub struct ClusterStats {
    pub traffic: ClusterTrafficStats,
    /// `upstream_rq_<code>` and `upstream_rq_<N>xx`.
    pub rq_codes: StatusCodeCounters,
    /// `external.upstream_rq_<code>`... (Envoy's dynamic stats for external requests).
    pub external_codes: StatusCodeCounters,
    pub external_time: Histogram,
}

impl ClusterStats {
    /// `scope` is `cluster.<stat name>.`.
    pub fn new(scope: &Scope) -> Self {
        let external = scope.scope("external.");
        ClusterStats {
            traffic: ClusterTrafficStats::new(scope),
            rq_codes: StatusCodeCounters::new(scope, "upstream_rq_"),
            external_codes: StatusCodeCounters::new(&external, "upstream_rq_"),
            external_time: external.histogram("upstream_rq_time", HistogramUnit::Milliseconds),
        }
    }
}

stats_struct!(
    /// `cluster.<name>.*` membership, DNS and config stats.
    ClusterMembershipStats {
        counters: [
            membership_change,
            update_attempt,
            update_success,
            update_failure,
            update_empty,
            update_no_rebuild,
            assignment_stale,
            assignment_timeout_received,
            lb_healthy_panic,
            lb_local_cluster_not_ok,
            lb_recalculate_zone_structures,
            lb_zone_cluster_too_small,
            lb_zone_no_capacity_left,
            lb_zone_number_differs,
            lb_zone_routing_all_directly,
            lb_zone_routing_sampled,
            lb_zone_routing_cross_zone,
            original_dst_host_invalid,
            retry_or_shadow_abandoned,
            bind_errors,
        ],
        gauges: [
            membership_healthy,
            membership_degraded,
            membership_excluded,
            membership_total,
            max_host_weight,
            version,
            lb_subsets_active,
        ],
        histograms: [],
    }
);

stats_struct!(
    /// `cluster.<name>.circuit_breakers.<priority>.*`.
    CircuitBreakerStats {
        counters: [],
        gauges: [cx_open, cx_pool_open, rq_pending_open, rq_open, rq_retry_open],
        histograms: [],
    }
);
