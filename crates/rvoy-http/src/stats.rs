//! The connection manager's stats (`http.<stat_prefix>.*`), with Envoy's names,
//! resolved to handles when the listener is built.

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
            rq_direct_response,
            rq_redirect,
            rq_total,
            rq_reset_after_downstream_response_started,
        ],
        gauges: [
            downstream_cx_active,
            downstream_cx_ssl_active,
            downstream_cx_http1_active,
            downstream_cx_upgrades_active,
            downstream_cx_http2_active,
            downstream_cx_http3_active,
            downstream_cx_rx_bytes_buffered,
            downstream_cx_tx_bytes_buffered,
            downstream_rq_active,
        ],
        histograms: [downstream_cx_length_ms: Milliseconds, downstream_rq_time: Milliseconds],
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
    pub http1: Http1CodecStats,
    pub listener: ListenerHttpStats,
}

impl HcmStats {
    /// `scope` is `http.<stat_prefix>.`; `listener_scope` is `listener.<addr>.`.
    pub fn new(root: &Scope, stat_prefix: &str, listener_scope: &Scope) -> Self {
        let hcm_scope = root.scope(&format!("http.{stat_prefix}."));
        HcmStats {
            hcm: HcmCounters::new(&hcm_scope),
            http1: Http1CodecStats::new(&root.scope("http1.")),
            listener: ListenerHttpStats::new(
                &listener_scope.scope(&format!("http.{stat_prefix}.")),
            ),
        }
    }

    /// Counts a response code in both the HCM and the listener scopes.
    pub fn response_code(&self, code: u16) {
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
        h.inc();
        l.inc();
    }
}
