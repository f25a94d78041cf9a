//! The connection manager's stats (`http.<stat_prefix>.*`), with Envoy 1.40's
//! names, resolved to handles when the listener is built.
//!
//! Envoy's `http.<stat_prefix>.` scope holds three families: the connection
//! manager's own stats, the router filter's stats (`no_route`, `rq_total`...,
//! [`ROUTER_STAT_NAMES`]) and the tracing stats (`tracing.*`). The admin
//! interface has only the first ([`HcmStats::admin`]); `http.async-client.*`
//! has only the router's ([`RouterStats`]).

use rvoy_stats::Scope;

use rvoy_upstream::stats_struct;

stats_struct!(
    /// `http.<stat_prefix>.*` counters and gauges.
    HcmCounters {
        counters: [
            downstream_cx_total,
            downstream_cx_ssl_total,
            downstream_cx_http1_total,
            downstream_cx_upgrades_total,
            downstream_cx_http2_total,
            downstream_cx_http3_total,
            downstream_cx_destroy,
            downstream_cx_destroy_remote,
            downstream_cx_destroy_local,
            downstream_cx_destroy_active_rq,
            downstream_cx_destroy_local_active_rq,
            downstream_cx_destroy_remote_active_rq,
            downstream_cx_protocol_error,
            downstream_cx_rx_bytes_total,
            downstream_cx_tx_bytes_total,
            downstream_cx_drain_close,
            downstream_cx_idle_timeout,
            downstream_cx_max_duration_reached,
            downstream_cx_max_requests_reached,
            downstream_cx_overload_disable_keepalive,
            downstream_cx_delayed_close_timeout,
            downstream_flow_control_paused_reading_total,
            downstream_flow_control_resumed_reading_total,
            downstream_rq_total,
            downstream_rq_http1_total,
            downstream_rq_http2_total,
            downstream_rq_http3_total,
            downstream_rq_rejected_via_ip_detection,
            downstream_rq_response_before_rq_complete,
            downstream_rq_rx_reset,
            downstream_rq_tx_reset,
            downstream_rq_non_relative_path,
            downstream_rq_too_large,
            downstream_rq_completed,
            downstream_rq_failed_path_normalization,
            downstream_rq_1xx,
            downstream_rq_2xx,
            downstream_rq_3xx,
            downstream_rq_4xx,
            downstream_rq_5xx,
            downstream_rq_idle_timeout,
            downstream_rq_overload_close,
            downstream_rq_redirected_with_normalized_path,
            downstream_rq_ws_on_non_ws_route,
            downstream_rq_header_timeout,
            downstream_rq_max_duration_reached,
            downstream_rq_timeout,
            downstream_rq_too_many_premature_resets,
            rs_too_large,
            no_route,
            no_cluster,
            passthrough_internal_redirect_bad_location,
            passthrough_internal_redirect_no_route,
            passthrough_internal_redirect_predicate,
            passthrough_internal_redirect_too_many_redirects,
            passthrough_internal_redirect_unsafe_scheme,
            rq_direct_response,
            rq_overload_local_reply,
            rq_redirect,
            rq_total,
            rq_reset_after_downstream_response_started,
        ],
        gauges: [
            downstream_cx_active,
            downstream_cx_ssl_active,
            downstream_cx_http1_active,
            downstream_cx_upgrades_active,
            downstream_cx_http1_soft_drain,
            downstream_cx_http2_active,
            downstream_cx_http3_active,
            downstream_cx_rx_bytes_buffered,
            downstream_cx_tx_bytes_buffered,
            downstream_rq_active,
        ],
        histograms: [downstream_cx_length_ms: Milliseconds, downstream_rq_time: Milliseconds],
    }
);

impl HcmCounters {
    /// A connection opened at `opened` closed, by this side (`local`) or the
    /// client: `downstream_cx_destroy`, `_destroy_local` or `_destroy_remote`,
    /// `downstream_cx_length_ms`; recorded through `rec`.
    pub fn connection_closed(
        &self,
        rec: &rvoy_stats::Recorder,
        local: bool,
        opened: std::time::Instant,
    ) {
        rec.inc(self.downstream_cx_destroy);
        if local {
            rec.inc(self.downstream_cx_destroy_local);
        } else {
            rec.inc(self.downstream_cx_destroy_remote);
        }
        rec.record(
            self.downstream_cx_length_ms,
            crate::clock::elapsed(opened).as_millis() as u64,
        );
    }
}

/// The router filter's stats in the `http.<stat_prefix>.` scope (Envoy's
/// `ALL_ROUTER_STATS`), part of [`HcmCounters`] for a data-plane HCM.
pub const ROUTER_STAT_NAMES: &[&str] = &[
    "no_route",
    "no_cluster",
    "passthrough_internal_redirect_bad_location",
    "passthrough_internal_redirect_no_route",
    "passthrough_internal_redirect_predicate",
    "passthrough_internal_redirect_too_many_redirects",
    "passthrough_internal_redirect_unsafe_scheme",
    "rq_direct_response",
    "rq_overload_local_reply",
    "rq_redirect",
    "rq_total",
    "rq_reset_after_downstream_response_started",
];

stats_struct!(
    /// The router stats alone, e.g. `http.async-client.*` (the cluster
    /// manager's async HTTP client).
    RouterStats {
        counters: [
            no_route,
            no_cluster,
            passthrough_internal_redirect_bad_location,
            passthrough_internal_redirect_no_route,
            passthrough_internal_redirect_predicate,
            passthrough_internal_redirect_too_many_redirects,
            passthrough_internal_redirect_unsafe_scheme,
            rq_direct_response,
            rq_overload_local_reply,
            rq_redirect,
            rq_total,
            rq_reset_after_downstream_response_started,
        ],
        gauges: [],
        histograms: [],
    }
);

stats_struct!(
    /// `http.<stat_prefix>.tracing.*`.
    TracingStats {
        counters: [client_enabled, health_check, not_traceable, random_sampling, service_forced],
        gauges: [],
        histograms: [],
    }
);

stats_struct!(
    /// `http1.*` codec stats, shared by all HTTP/1 connections of a listener.
    Http1CodecStats {
        counters: [
            dropped_headers_with_underscores,
            metadata_not_supported_error,
            requests_rejected_with_underscores_in_headers,
            response_flood,
        ],
        gauges: [],
        histograms: [],
    }
);

stats_struct!(
    /// `http2.*` codec stats (downstream; `cluster.<name>.http2.*` upstream),
    /// created by Envoy with the first HTTP/2 connection.
    Http2CodecStats {
        counters: [
            cookies_total_bytes_too_large,
            dropped_headers_with_underscores,
            goaway_sent,
            header_list_size_too_large,
            header_overflow,
            headers_cb_no_stream,
            inbound_empty_frames_flood,
            inbound_priority_frames_flood,
            inbound_window_update_frames_flood,
            keepalive_timeout,
            metadata_empty_frames,
            nghttp2_downstream_connections,
            nghttp2_upstream_connections,
            oghttp2_downstream_connections,
            oghttp2_upstream_connections,
            outbound_control_flood,
            outbound_flood,
            requests_rejected_with_underscores_in_headers,
            rx_messaging_error,
            rx_reset,
            stream_refused_errors,
            trailers,
            tx_flush_timeout,
            tx_reset,
        ],
        gauges: [
            deferred_stream_close,
            outbound_control_frames_active,
            outbound_frames_active,
            pending_send_bytes,
            streams_active,
        ],
        histograms: [
            cookie_count: Unspecified,
            cookie_size: Unspecified,
            header_count: Unspecified,
            header_list_size: Unspecified,
        ],
    }
);

stats_struct!(
    /// `listener.<address>.http.<stat_prefix>.*`: per-listener response classes.
    ListenerHttpStats {
        counters: [downstream_rq_1xx, downstream_rq_2xx, downstream_rq_3xx, downstream_rq_4xx, downstream_rq_5xx, downstream_rq_completed],
        gauges: [],
        histograms: [],
    }
);

/// All stats of one HTTP connection manager.
#[derive(Debug)]
pub struct HcmStats {
    pub hcm: HcmCounters,
    pub tracing: TracingStats,
    pub http1: Http1CodecStats,
    pub listener: ListenerHttpStats,
    /// The store's root scope (stats named at run time: `http2.*` with the
    /// first HTTP/2 connection, `cluster.<name>.http2.*`, gRPC stats).
    pub root: Scope,
    http2: std::sync::OnceLock<std::sync::Arc<Http2CodecStats>>,
}

impl HcmStats {
    /// `scope` is `http.<stat_prefix>.`; `listener_scope` is `listener.<addr>.`.
    pub fn new(root: &Scope, stat_prefix: &str, listener_scope: &Scope) -> Self {
        let hcm_scope = root.scope(&format!("http.{stat_prefix}."));
        HcmStats {
            hcm: HcmCounters::new(&hcm_scope),
            tracing: TracingStats::new(&hcm_scope.scope("tracing.")),
            http1: Http1CodecStats::new(&root.scope("http1.")),
            listener: ListenerHttpStats::new(
                &listener_scope.scope(&format!("http.{stat_prefix}.")),
            ),
            root: root.clone(),
            http2: std::sync::OnceLock::new(),
        }
    }

    /// The downstream `http2.*` codec stats, created with the first HTTP/2
    /// connection as Envoy does.
    pub fn http2(&self) -> &std::sync::Arc<Http2CodecStats> {
        self.http2
            .get_or_init(|| std::sync::Arc::new(Http2CodecStats::new(&self.root.scope("http2."))))
    }

    /// The admin interface's HCM (`http.admin.*`, `listener.admin.http.admin.*`):
    /// no router stats, and tracing stats Envoy keeps in a store it never
    /// shows (null handles here).
    pub fn admin(root: &Scope, listener_scope: &Scope) -> Self {
        let hcm_scope = root.scope("http.admin.");
        HcmStats {
            hcm: HcmCounters::new_without(&hcm_scope, ROUTER_STAT_NAMES),
            tracing: TracingStats::new_without(&hcm_scope, TracingStats::NAMES),
            http1: Http1CodecStats::new(&root.scope("http1.")),
            listener: ListenerHttpStats::new(&listener_scope.scope("http.admin.")),
            root: root.clone(),
            http2: std::sync::OnceLock::new(),
        }
    }

    /// Counts a response code in both the HCM and the listener scopes,
    /// through `rec`.
    pub fn response_code(&self, rec: &rvoy_stats::Recorder, code: u16) {
        let (h, l) = match code / 100 {
            1 => (
                &self.hcm.downstream_rq_1xx,
                &self.listener.downstream_rq_1xx,
            ),
            2 => (
                &self.hcm.downstream_rq_2xx,
                &self.listener.downstream_rq_2xx,
            ),
            3 => (
                &self.hcm.downstream_rq_3xx,
                &self.listener.downstream_rq_3xx,
            ),
            4 => (
                &self.hcm.downstream_rq_4xx,
                &self.listener.downstream_rq_4xx,
            ),
            _ => (
                &self.hcm.downstream_rq_5xx,
                &self.listener.downstream_rq_5xx,
            ),
        };
        rec.inc(*h);
        rec.inc(*l);
    }
}
