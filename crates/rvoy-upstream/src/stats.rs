//! Cluster stats (`cluster.<name>.*`) with Envoy 1.40's names: traffic
//! counters the router and pools record, membership and DNS update stats,
//! load balancer and circuit breaker gauges, resolved to handles when the
//! cluster is built.
//!
//! Envoy creates most cluster stats eagerly (they show in `/stats` with value
//! 0 from startup) and a few on first use: the response-code counters
//! (`upstream_rq_200`, `external.upstream_rq_2xx`...) and the response time
//! histograms (`upstream_rq_time`, `external.upstream_rq_time`). The lazy ones
//! are [`ResponseCodeStats`] and [`ResponseTiming`] here, so `/stats` lists the
//! same names as Envoy at every point.

use std::sync::OnceLock;

pub use rvoy_stats::{
    Counter, Gauge, GaugeImportMode, Histogram, HistogramUnit, Scope, StatusCodeCounters,
};

/// Declares a struct of stat handles named like its fields, built from a scope.
///
/// `new(scope)` registers every stat; `new_without(scope, skip)` leaves the
/// named ones as null handles (never registered, record nothing), for users
/// that have a subset of a stat family (the admin listener has no
/// `extension_config_missing`, the admin HCM no router stats). An optional
/// `extra: [field: Type = constructor]` section adds fields built by
/// `constructor(scope)` (lazily created stats).
#[macro_export]
macro_rules! stats_struct {
    ($(#[$m:meta])* $name:ident {
        counters: [$($c:ident),* $(,)?],
        gauges: [$($g:ident),* $(,)?],
        histograms: [$($h:ident : $u:ident),* $(,)?]
        $(, extra: [$($x:ident : $xt:ty = $xf:path),* $(,)?])?
        $(,)?
    }) => {
        $(#[$m])*
        #[derive(Debug)]
        pub struct $name {
            $(pub $c: $crate::stats::Counter,)*
            $(pub $g: $crate::stats::Gauge,)*
            $(pub $h: $crate::stats::Histogram,)*
            $($(pub $x: $xt,)*)?
        }

        impl $name {
            /// Every stat of the family, registered under `scope`.
            pub fn new(scope: &$crate::stats::Scope) -> Self {
                Self::new_without(scope, &[])
            }

            /// The family without the stats named in `skip` (null handles).
            #[allow(clippy::redundant_closure_call)]
            pub fn new_without(scope: &$crate::stats::Scope, skip: &[&str]) -> Self {
                let keep = |n: &str| !skip.contains(&n);
                $name {
                    $($c: if keep(stringify!($c)) {
                        scope.counter(stringify!($c))
                    } else {
                        $crate::stats::Counter::null()
                    },)*
                    $($g: if keep(stringify!($g)) {
                        scope.gauge(stringify!($g), $crate::stats::GaugeImportMode::Accumulate)
                    } else {
                        $crate::stats::Gauge::null()
                    },)*
                    $($h: if keep(stringify!($h)) {
                        scope.histogram(stringify!($h), $crate::stats::HistogramUnit::$u)
                    } else {
                        $crate::stats::Histogram::null()
                    },)*
                    $($($x: $xf(scope),)*)?
                }
            }

            /// The names of the family's stats, in declaration order.
            pub const NAMES: &'static [&'static str] = &[
                $(stringify!($c),)* $(stringify!($g),)* $(stringify!($h),)*
            ];
        }
    };
}

/// A counter registered on first use (Envoy's dynamically named stats).
#[derive(Debug)]
pub struct LazyCounter {
    scope: Scope,
    name: &'static str,
    cell: OnceLock<Counter>,
}

impl LazyCounter {
    pub fn new(scope: &Scope, name: &'static str) -> Self {
        LazyCounter {
            scope: scope.clone(),
            name,
            cell: OnceLock::new(),
        }
    }

    /// The counter, registering it now if needed.
    pub fn get(&self) -> Counter {
        *self.cell.get_or_init(|| self.scope.counter(self.name))
    }

    pub fn inc(&self) {
        self.get().inc();
    }

    pub fn add(&self, n: u64) {
        self.get().add(n);
    }
}

/// A histogram registered on first use.
#[derive(Debug)]
pub struct LazyHistogram {
    scope: Scope,
    name: &'static str,
    unit: HistogramUnit,
    cell: OnceLock<Histogram>,
}

impl LazyHistogram {
    pub fn new(scope: &Scope, name: &'static str, unit: HistogramUnit) -> Self {
        LazyHistogram {
            scope: scope.clone(),
            name,
            unit,
            cell: OnceLock::new(),
        }
    }

    /// The histogram, registering it now if needed.
    pub fn get(&self) -> Histogram {
        *self
            .cell
            .get_or_init(|| self.scope.histogram(self.name, self.unit))
    }

    pub fn record(&self, value: u64) {
        self.get().record(value);
    }
}

/// `upstream_rq_time` and `external.upstream_rq_time` (Envoy's
/// `CodeStats::chargeResponseTiming` for a request that is not internal):
/// created on the first response, recorded together.
#[derive(Debug)]
pub struct ResponseTiming {
    all: LazyHistogram,
    external: LazyHistogram,
}

impl ResponseTiming {
    /// `scope` is `cluster.<stat name>.`.
    pub fn new(scope: &Scope) -> Self {
        ResponseTiming {
            all: LazyHistogram::new(scope, "upstream_rq_time", HistogramUnit::Milliseconds),
            external: LazyHistogram::new(
                &scope.scope("external."),
                "upstream_rq_time",
                HistogramUnit::Milliseconds,
            ),
        }
    }

    /// Records a response time in milliseconds.
    pub fn record(&self, ms: u64) {
        self.all.record(ms);
        self.external.record(ms);
    }

    /// [`ResponseTiming::record`] through a worker's recorder.
    pub fn record_with(&self, rec: &rvoy_stats::Recorder, ms: u64) {
        rec.record(self.all.get(), ms);
        rec.record(self.external.get(), ms);
    }
}

/// The response-code counters Envoy's `CodeStats::chargeResponseStat`
/// charges for a request that is not internal: `upstream_rq_<code>`,
/// `upstream_rq_<N>xx`, and the same under `external.` with
/// `external.upstream_rq_completed`. All are created on first use.
/// (`upstream_rq_completed` itself is an eager traffic counter the router
/// increments when a response completes.)
#[derive(Debug)]
pub struct ResponseCodeStats {
    pub all: StatusCodeCounters,
    pub external: StatusCodeCounters,
    external_completed: LazyCounter,
}

impl ResponseCodeStats {
    /// `scope` is `cluster.<stat name>.`.
    pub fn new(scope: &Scope) -> Self {
        let external = scope.scope("external.");
        ResponseCodeStats {
            all: StatusCodeCounters::new(scope, "upstream_rq_"),
            external: StatusCodeCounters::new(&external, "upstream_rq_"),
            external_completed: LazyCounter::new(&external, "upstream_rq_completed"),
        }
    }

    /// Counts one response with `code`.
    pub fn inc(&self, code: u16) {
        self.all.inc(code);
        self.external.inc(code);
        self.external_completed.inc();
    }

    /// [`ResponseCodeStats::inc`] through a worker's recorder.
    pub fn inc_with(&self, rec: &rvoy_stats::Recorder, code: u16) {
        rec.inc_code(&self.all, code);
        rec.inc_code(&self.external, code);
        rec.inc(self.external_completed.get());
    }

    /// The counter of `upstream_rq_<code>`.
    pub fn code(&self, code: u16) -> Counter {
        self.all.code(code)
    }

    /// The counter of `upstream_rq_<N>xx`.
    pub fn class(&self, code: u16) -> Counter {
        self.all.class(code)
    }
}

stats_struct!(
    /// `cluster.<name>.*` stats the router and pools record (Envoy's
    /// `ALL_CLUSTER_TRAFFIC_STATS`).
    ClusterTrafficStats {
        counters: [
            bind_errors,
            upstream_cx_close_notify,
            upstream_cx_connect_attempts_exceeded,
            upstream_cx_connect_fail,
            upstream_cx_connect_timeout,
            upstream_cx_connect_with_0_rtt,
            upstream_cx_destroy,
            upstream_cx_destroy_local,
            upstream_cx_destroy_local_with_active_rq,
            upstream_cx_destroy_remote,
            upstream_cx_destroy_remote_with_active_rq,
            upstream_cx_destroy_with_active_rq,
            upstream_cx_http1_total,
            upstream_cx_http2_total,
            upstream_cx_http3_total,
            upstream_cx_idle_timeout,
            upstream_cx_max_duration_reached,
            upstream_cx_max_requests,
            upstream_cx_none_healthy,
            upstream_cx_overflow,
            upstream_cx_pool_overflow,
            upstream_cx_preconnect_skipped,
            upstream_cx_protocol_error,
            upstream_cx_rx_bytes_total,
            upstream_cx_total,
            upstream_cx_tx_bytes_total,
            upstream_flow_control_backed_up_total,
            upstream_flow_control_drained_total,
            upstream_flow_control_paused_reading_total,
            upstream_flow_control_resumed_reading_total,
            upstream_http3_broken,
            upstream_internal_redirect_failed_total,
            upstream_internal_redirect_succeeded_total,
            upstream_rq_0rtt,
            upstream_rq_active_overflow,
            upstream_rq_cancelled,
            upstream_rq_completed,
            upstream_rq_maintenance_mode,
            upstream_rq_max_duration_reached,
            upstream_rq_pending_failure_eject,
            upstream_rq_pending_overflow,
            upstream_rq_pending_total,
            upstream_rq_per_try_timeout,
            upstream_rq_per_try_idle_timeout,
            upstream_rq_retry,
            upstream_rq_retry_backoff_exponential,
            upstream_rq_retry_backoff_ratelimited,
            upstream_rq_retry_limit_exceeded,
            upstream_rq_retry_overflow,
            upstream_rq_retry_success,
            upstream_rq_rx_reset,
            upstream_rq_rx_reset_no_error,
            upstream_rq_timeout,
            upstream_rq_total,
            upstream_rq_tx_reset,
            retry_or_shadow_abandoned,
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
            upstream_rq_per_cx: Unspecified,
        ],
        extra: [upstream_rq_time: ResponseTiming = ResponseTiming::new],
    }
);

/// Everything the data plane records for one cluster.
#[derive(Debug)]
pub struct ClusterStats {
    pub traffic: ClusterTrafficStats,
    /// `upstream_rq_<code>`, `upstream_rq_<N>xx` and their `external.` twins.
    pub rq_codes: ResponseCodeStats,
}

impl ClusterStats {
    /// `scope` is `cluster.<stat name>.`.
    pub fn new(scope: &Scope) -> Self {
        ClusterStats {
            traffic: ClusterTrafficStats::new(scope),
            rq_codes: ResponseCodeStats::new(scope),
        }
    }
}

stats_struct!(
    /// `cluster.<name>.*` membership, discovery, config and load balancer
    /// stats (Envoy's `ALL_CLUSTER_CONFIG_UPDATE_STATS`,
    /// `ALL_CLUSTER_LB_STATS` and the membership gauges).
    ClusterMembershipStats {
        counters: [
            assignment_stale,
            assignment_timeout_received,
            assignment_use_cached,
            lb_healthy_panic,
            lb_local_cluster_not_ok,
            lb_recalculate_zone_structures,
            lb_subsets_created,
            lb_subsets_fallback,
            lb_subsets_fallback_panic,
            lb_subsets_removed,
            lb_subsets_selected,
            lb_zone_cluster_too_small,
            lb_zone_no_capacity_left,
            lb_zone_routing_all_directly,
            lb_zone_routing_cross_zone,
            lb_zone_routing_sampled,
            membership_change,
            original_dst_host_invalid,
            update_attempt,
            update_empty,
            update_failure,
            update_no_rebuild,
            update_success,
        ],
        gauges: [
            lb_subsets_active,
            max_host_weight,
            membership_degraded,
            membership_excluded,
            membership_healthy,
            membership_total,
            upstream_queue_overloaded,
            version,
            warming_state,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_code_stats_are_lazy_and_charge_external() {
        let store = rvoy_stats::Store::new();
        let scope = store.scope("cluster.c.");
        let codes = ResponseCodeStats::new(&scope);
        let timing = ResponseTiming::new(&scope);
        let snap = store.snapshot();
        assert!(snap.counter("cluster.c.upstream_rq_200").is_none());
        assert!(snap.histogram("cluster.c.upstream_rq_time").is_none());
        codes.inc(200);
        timing.record(3);
        let snap = store.snapshot();
        for name in [
            "cluster.c.upstream_rq_200",
            "cluster.c.upstream_rq_2xx",
            "cluster.c.external.upstream_rq_200",
            "cluster.c.external.upstream_rq_2xx",
            "cluster.c.external.upstream_rq_completed",
        ] {
            assert_eq!(snap.counter(name).map(|c| c.value()), Some(1), "{name}");
        }
        assert!(snap.histogram("cluster.c.upstream_rq_time").is_some());
        assert!(
            snap.histogram("cluster.c.external.upstream_rq_time")
                .is_some()
        );
    }

    #[test]
    fn new_without_skips_names() {
        let store = rvoy_stats::Store::new();
        let cb = CircuitBreakerStats::new_without(&store.scope("cb."), &["rq_open"]);
        assert!(cb.rq_open.is_null());
        assert!(!cb.cx_open.is_null());
        let snap = store.snapshot();
        assert!(snap.gauge("cb.rq_open").is_none());
        assert!(snap.gauge("cb.cx_open").is_some());
        assert_eq!(CircuitBreakerStats::NAMES.len(), 5);
    }
}
