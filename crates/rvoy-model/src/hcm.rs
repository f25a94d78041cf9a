//! The `http_connection_manager` network filter: codec and protocol options,
//! forwarding-header policy, timeouts, the HTTP filter chain, the route table,
//! local replies and access logs of one HTTP listener.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use rvoy_api::envoy::config::core::v3 as core;
use rvoy_api::envoy::extensions::filters::http::router::v3 as router_pb;
use rvoy_api::envoy::extensions::filters::network::http_connection_manager::v3 as pb;
use rvoy_config_load::{ConfigError, FieldPath};

use crate::access_log::{
    AccessLog, AccessLogFilter, SubstitutionFormat, access_logs, substitution_format,
};
use crate::duration;
use crate::extension::{self, Category};
use crate::headers::{HeaderMutations, data_source};
use crate::route::{self, RouteConfig};
use crate::support::{Diagnostics, MessageSupport, ignored, yes};

pub(crate) static SUPPORT: &[MessageSupport] = &[
    MessageSupport {
        message: "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        fields: &[
            yes("codec_type"),
            yes("stat_prefix"),
            yes("route_config"),
            yes("http_filters"),
            yes("add_user_agent"),
            yes("common_http_protocol_options"),
            yes("http_protocol_options"),
            yes("http2_protocol_options"),
            yes("server_name"),
            yes("server_header_transformation"),
            yes("max_request_headers_kb"),
            yes("stream_idle_timeout"),
            yes("request_timeout"),
            yes("request_headers_timeout"),
            yes("drain_timeout"),
            yes("delayed_close_timeout"),
            yes("access_log"),
            yes("use_remote_address"),
            yes("xff_num_trusted_hops"),
            yes("internal_address_config"),
            yes("skip_xff_append"),
            yes("via"),
            yes("generate_request_id"),
            yes("preserve_external_request_id"),
            yes("always_set_request_id_in_response"),
            yes("forward_client_cert_details"),
            yes("proxy_100_continue"),
            yes("upgrade_configs"),
            yes("normalize_path"),
            yes("merge_slashes"),
            yes("path_with_escaped_slashes_action"),
            yes("request_id_extension"),
            yes("local_reply_config"),
            yes("strip_matching_host_port"),
            yes("strip_any_host_port"),
            yes("stream_error_on_invalid_http_message"),
            yes("strip_trailing_host_dot"),
            ignored(
                "access_log_flush_interval",
                "periodic access log flushing of long streams",
            ),
            ignored(
                "flush_access_log_on_new_request",
                "periodic access log flushing of long streams",
            ),
            ignored(
                "access_log_options",
                "periodic access log flushing of long streams",
            ),
        ],
    },
    MessageSupport {
        message: "envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter",
        fields: &[
            yes("name"),
            yes("typed_config"),
            yes("is_optional"),
            yes("disabled"),
        ],
    },
    MessageSupport {
        message: "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.InternalAddressConfig",
        fields: &[yes("unix_sockets"), yes("cidr_ranges")],
    },
    MessageSupport {
        message: "envoy.config.core.v3.CidrRange",
        fields: &[yes("address_prefix"), yes("prefix_len")],
    },
    MessageSupport {
        message: "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.UpgradeConfig",
        fields: &[yes("upgrade_type"), yes("enabled")],
    },
    MessageSupport {
        message: "envoy.extensions.filters.network.http_connection_manager.v3.RequestIDExtension",
        fields: &[yes("typed_config")],
    },
    MessageSupport {
        message: "envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig",
        fields: &[
            yes("pack_trace_reason"),
            yes("use_request_id_for_trace_sampling"),
        ],
    },
    MessageSupport {
        message: "envoy.extensions.filters.network.http_connection_manager.v3.LocalReplyConfig",
        fields: &[yes("mappers"), yes("body_format")],
    },
    MessageSupport {
        message: "envoy.extensions.filters.network.http_connection_manager.v3.ResponseMapper",
        fields: &[
            yes("filter"),
            yes("status_code"),
            yes("body"),
            yes("body_format_override"),
            yes("headers_to_add"),
        ],
    },
    MessageSupport {
        message: "envoy.config.core.v3.HttpProtocolOptions",
        fields: &[
            yes("idle_timeout"),
            yes("max_connection_duration"),
            yes("max_headers_count"),
            yes("max_stream_duration"),
            yes("headers_with_underscores_action"),
            yes("max_requests_per_connection"),
        ],
    },
    MessageSupport {
        message: "envoy.config.core.v3.Http1ProtocolOptions",
        fields: &[
            yes("allow_absolute_url"),
            yes("accept_http_10"),
            yes("default_host_for_http_10"),
            yes("header_key_format"),
            yes("enable_trailers"),
            ignored("use_balsa_parser", "selects Envoy's internal HTTP/1 parser"),
        ],
    },
    MessageSupport {
        message: "envoy.config.core.v3.Http1ProtocolOptions.HeaderKeyFormat",
        fields: &[yes("proper_case_words")],
    },
    MessageSupport {
        message: "envoy.config.core.v3.Http1ProtocolOptions.HeaderKeyFormat.ProperCaseWords",
        fields: &[],
    },
    MessageSupport {
        message: "envoy.config.core.v3.Http2ProtocolOptions",
        fields: &[
            yes("hpack_table_size"),
            yes("max_concurrent_streams"),
            yes("initial_stream_window_size"),
            yes("initial_connection_window_size"),
            yes("allow_connect"),
            yes("allow_metadata"),
            yes("max_outbound_frames"),
            yes("max_outbound_control_frames"),
            yes("max_consecutive_inbound_frames_with_empty_payload"),
            yes("max_inbound_priority_frames_per_stream"),
            yes("max_inbound_window_update_frames_per_data_frame_sent"),
            yes("stream_error_on_invalid_http_messaging"),
            yes("override_stream_error_on_invalid_http_message"),
            yes("custom_settings_parameters"),
            yes("connection_keepalive"),
            yes("use_oghttp2_codec"),
            ignored(
                "max_metadata_size",
                "METADATA frames are never accepted (allow_metadata is rejected)",
            ),
            ignored(
                "enable_huffman_encoding",
                "only how HPACK encodes header strings, not what they say",
            ),
            ignored(
                "max_header_field_size_kb",
                "applies to Envoy's oghttp2 codec only",
            ),
            ignored("disallow_obs_text", "applies to Envoy's oghttp2 codec only"),
            yes("stream_reset_burst"),
            yes("stream_reset_rate"),
        ],
    },
    MessageSupport {
        message: "envoy.config.core.v3.KeepaliveSettings",
        fields: &[
            yes("interval"),
            yes("timeout"),
            yes("interval_jitter"),
            yes("connection_idle_interval"),
        ],
    },
    MessageSupport {
        message: "envoy.extensions.filters.http.router.v3.Router",
        fields: &[
            yes("dynamic_stats"),
            ignored("start_child_span", "tracing spans; rvoy has no tracer"),
            yes("suppress_envoy_headers"),
            yes("strict_check_headers"),
            yes("respect_expected_rq_timeout"),
            yes("suppress_grpc_request_failure_code_stats"),
        ],
    },
];

/// Which HTTP codecs a listener speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodecType {
    /// HTTP/1.1, or HTTP/2 when the client starts with the h2 preface (or ALPN h2).
    Auto,
    Http1,
    Http2,
}

/// `server_header_transformation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerHeader {
    Overwrite,
    AppendIfAbsent,
    PassThrough,
}

/// `path_with_escaped_slashes_action`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EscapedSlashesAction {
    KeepUnchanged,
    RejectRequest,
    UnescapeAndRedirect,
    UnescapeAndForward,
}

/// `headers_with_underscores_action`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnderscoresAction {
    Allow,
    RejectRequest,
    DropHeader,
}

/// `forward_client_cert_details`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardClientCert {
    Sanitize,
    ForwardOnly,
    AppendForward,
    SanitizeSet,
    AlwaysForwardOnly,
}

/// Connection-level HTTP options (`common_http_protocol_options`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommonHttpOptions {
    /// Default 1 hour; `None` disables.
    pub idle_timeout: Option<Duration>,
    pub max_connection_duration: Option<Duration>,
    /// Default 100.
    pub max_headers_count: u32,
    pub max_stream_duration: Option<Duration>,
    pub headers_with_underscores: UnderscoresAction,
    pub max_requests_per_connection: Option<u32>,
}

impl CommonHttpOptions {
    pub fn from_proto(
        o: Option<&core::HttpProtocolOptions>,
        default_idle: Option<Duration>,
    ) -> Self {
        let Some(o) = o else {
            return CommonHttpOptions {
                idle_timeout: default_idle,
                max_connection_duration: None,
                max_headers_count: 100,
                max_stream_duration: None,
                headers_with_underscores: UnderscoresAction::Allow,
                max_requests_per_connection: None,
            };
        };
        use core::http_protocol_options::HeadersWithUnderscoresAction as U;
        CommonHttpOptions {
            idle_timeout: match &o.idle_timeout {
                None => default_idle,
                Some(d) => Some(duration::from_proto(d)).filter(|d| !d.is_zero()),
            },
            max_connection_duration: duration::opt_nonzero(&o.max_connection_duration),
            max_headers_count: o.max_headers_count.unwrap_or(100),
            max_stream_duration: duration::opt_nonzero(&o.max_stream_duration),
            headers_with_underscores: match U::try_from(o.headers_with_underscores_action) {
                Ok(U::RejectRequest) => UnderscoresAction::RejectRequest,
                Ok(U::DropHeader) => UnderscoresAction::DropHeader,
                _ => UnderscoresAction::Allow,
            },
            max_requests_per_connection: o.max_requests_per_connection.filter(|n| *n > 0),
        }
    }
}

/// HTTP/1 codec options.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Http1Options {
    pub accept_http_10: bool,
    pub default_host_for_http_10: Option<String>,
    /// Send header names in Proper-Case.
    pub proper_case_headers: bool,
    pub enable_trailers: bool,
    pub allow_absolute_url: bool,
}

impl Http1Options {
    pub fn from_proto(
        o: Option<&core::Http1ProtocolOptions>,
        path: &FieldPath,
    ) -> Result<Self, ConfigError> {
        let Some(o) = o else {
            return Ok(Http1Options {
                allow_absolute_url: true,
                ..Http1Options::default()
            });
        };
        use core::http1_protocol_options::header_key_format::HeaderFormat;
        let proper_case_headers = match o
            .header_key_format
            .as_ref()
            .and_then(|f| f.header_format.as_ref())
        {
            Some(HeaderFormat::ProperCaseWords(_)) => true,
            Some(HeaderFormat::StatefulFormatter(_)) => {
                return Err(ConfigError::not_supported(
                    path.field("header_key_format").field("stateful_formatter"),
                    "stateful header formatters (preserve_case)",
                ));
            }
            None => false,
        };
        Ok(Http1Options {
            accept_http_10: o.accept_http_10,
            default_host_for_http_10: (!o.default_host_for_http_10.is_empty())
                .then(|| o.default_host_for_http_10.clone()),
            proper_case_headers,
            enable_trailers: o.enable_trailers,
            allow_absolute_url: o.allow_absolute_url.unwrap_or(true),
        })
    }
}

/// HTTP/2 keepalive (`connection_keepalive`): a PING every `interval`
/// (plus up to `jitter_percent` of it), the connection closed when no PING
/// ACK arrives within `timeout`.
#[derive(Clone, Debug, PartialEq)]
pub struct Keepalive {
    pub interval: Option<Duration>,
    pub timeout: Duration,
    /// Percent of `interval` added at random to each wait (default 15).
    pub jitter_percent: f64,
    /// Upstream: a connection idle this long is PINGed before it is reused.
    pub connection_idle_interval: Option<Duration>,
}

/// HTTP/2 codec options (Envoy 1.40's defaults applied).
#[derive(Clone, Debug, PartialEq)]
pub struct Http2Options {
    pub hpack_table_size: u32,
    pub max_concurrent_streams: u32,
    pub initial_stream_window_size: u32,
    pub initial_connection_window_size: u32,
    pub allow_connect: bool,
    /// Pending outbound frames of all types (flood limit, default 10000).
    pub max_outbound_frames: u32,
    /// Pending outbound PING/SETTINGS/RST_STREAM frames (default 1000).
    pub max_outbound_control_frames: u32,
    /// Consecutive empty HEADERS/CONTINUATION/DATA frames (default 1).
    pub max_consecutive_inbound_frames_with_empty_payload: u32,
    /// PRIORITY frames per opened stream (default 100).
    pub max_inbound_priority_frames_per_stream: u32,
    /// WINDOW_UPDATE frames per DATA frame sent (default 10).
    pub max_inbound_window_update_frames_per_data_frame_sent: u32,
    /// The deprecated `stream_error_on_invalid_http_messaging`.
    pub stream_error_on_invalid_http_messaging: bool,
    pub override_stream_error_on_invalid_http_message: Option<bool>,
    pub keepalive: Option<Keepalive>,
    /// `use_oghttp2_codec`: only which `http2.*_connections` counter counts.
    pub oghttp2: bool,
    /// The RST_STREAM token bucket of a server connection (burst, per second).
    pub stream_reset_burst: u64,
    pub stream_reset_rate: u64,
}

impl Http2Options {
    /// Envoy 1.40's defaults.
    pub fn defaults() -> Self {
        Http2Options {
            hpack_table_size: 4096,
            max_concurrent_streams: 1024,
            initial_stream_window_size: 16 * 1024 * 1024,
            initial_connection_window_size: 24 * 1024 * 1024,
            allow_connect: false,
            max_outbound_frames: 10_000,
            max_outbound_control_frames: 1_000,
            max_consecutive_inbound_frames_with_empty_payload: 1,
            max_inbound_priority_frames_per_stream: 100,
            max_inbound_window_update_frames_per_data_frame_sent: 10,
            stream_error_on_invalid_http_messaging: false,
            override_stream_error_on_invalid_http_message: None,
            keepalive: None,
            oghttp2: false,
            stream_reset_burst: 1000,
            stream_reset_rate: 33,
        }
    }

    /// Whether an invalid request resets only its stream (`true`) or closes
    /// the connection: the override here, else the HCM's
    /// `stream_error_on_invalid_http_message`, else the deprecated field.
    pub fn stream_error(&self, hcm_level: Option<bool>) -> bool {
        self.override_stream_error_on_invalid_http_message
            .or(hcm_level)
            .unwrap_or(self.stream_error_on_invalid_http_messaging)
    }

    pub fn from_proto(
        o: Option<&core::Http2ProtocolOptions>,
        path: &FieldPath,
    ) -> Result<Self, ConfigError> {
        let defaults = Self::defaults();
        let Some(o) = o else { return Ok(defaults) };
        if !o.custom_settings_parameters.is_empty() {
            return Err(ConfigError::not_supported(
                path.field("custom_settings_parameters"),
                "custom_settings_parameters",
            ));
        }
        if o.allow_metadata {
            return Err(ConfigError::not_supported(
                path.field("allow_metadata"),
                "HTTP/2 METADATA frames",
            ));
        }
        let initial_stream_window_size = o
            .initial_stream_window_size
            .unwrap_or(defaults.initial_stream_window_size);
        let initial_connection_window_size = o
            .initial_connection_window_size
            .unwrap_or(defaults.initial_connection_window_size);
        for (field, v) in [
            ("initial_stream_window_size", initial_stream_window_size),
            (
                "initial_connection_window_size",
                initial_connection_window_size,
            ),
        ] {
            if !(65_535..=2_147_483_647).contains(&v) {
                return Err(ConfigError::semantic(
                    path.field(field),
                    format!("value must be inside range [65535, 2147483647]: {v}"),
                ));
            }
        }
        let max_concurrent_streams = o
            .max_concurrent_streams
            .unwrap_or(defaults.max_concurrent_streams);
        if !(1..=2_147_483_647).contains(&max_concurrent_streams) {
            return Err(ConfigError::semantic(
                path.field("max_concurrent_streams"),
                "value must be inside range [1, 2147483647]",
            ));
        }
        let keepalive = match &o.connection_keepalive {
            None => None,
            Some(k) => {
                let kp = path.field("connection_keepalive");
                let timeout = duration::opt(&k.timeout).ok_or_else(|| {
                    ConfigError::semantic(kp.field("timeout"), "value is required")
                })?;
                if timeout < Duration::from_millis(1) {
                    return Err(ConfigError::semantic(
                        kp.field("timeout"),
                        "value must be greater than or equal to 1ms",
                    ));
                }
                let interval = duration::opt(&k.interval);
                if interval.is_some_and(|i| i < Duration::from_millis(1)) {
                    return Err(ConfigError::semantic(
                        kp.field("interval"),
                        "value must be greater than or equal to 1ms",
                    ));
                }
                Some(Keepalive {
                    interval,
                    timeout,
                    jitter_percent: k.interval_jitter.as_ref().map_or(15.0, |p| p.value),
                    connection_idle_interval: duration::opt_nonzero(&k.connection_idle_interval),
                })
            }
        };
        #[allow(deprecated)]
        let legacy_stream_error = o.stream_error_on_invalid_http_messaging;
        Ok(Http2Options {
            hpack_table_size: o.hpack_table_size.unwrap_or(defaults.hpack_table_size),
            max_concurrent_streams,
            initial_stream_window_size,
            initial_connection_window_size,
            allow_connect: o.allow_connect,
            max_outbound_frames: o
                .max_outbound_frames
                .unwrap_or(defaults.max_outbound_frames),
            max_outbound_control_frames: o
                .max_outbound_control_frames
                .unwrap_or(defaults.max_outbound_control_frames),
            max_consecutive_inbound_frames_with_empty_payload: o
                .max_consecutive_inbound_frames_with_empty_payload
                .unwrap_or(defaults.max_consecutive_inbound_frames_with_empty_payload),
            max_inbound_priority_frames_per_stream: o
                .max_inbound_priority_frames_per_stream
                .unwrap_or(defaults.max_inbound_priority_frames_per_stream),
            max_inbound_window_update_frames_per_data_frame_sent: o
                .max_inbound_window_update_frames_per_data_frame_sent
                .unwrap_or(defaults.max_inbound_window_update_frames_per_data_frame_sent),
            stream_error_on_invalid_http_messaging: legacy_stream_error,
            override_stream_error_on_invalid_http_message: o
                .override_stream_error_on_invalid_http_message,
            keepalive,
            oghttp2: o.use_oghttp2_codec.unwrap_or(false),
            stream_reset_burst: o.stream_reset_burst.unwrap_or(defaults.stream_reset_burst),
            stream_reset_rate: o.stream_reset_rate.unwrap_or(defaults.stream_reset_rate),
        })
    }
}

/// The router filter's options.
#[derive(Clone, Debug)]
pub struct RouterConfig {
    pub dynamic_stats: bool,
    pub suppress_envoy_headers: bool,
    /// Headers whose values are validated (`x-envoy-retry-on`...).
    pub strict_check_headers: Vec<String>,
    pub respect_expected_rq_timeout: bool,
}

/// A local reply mapper.
#[derive(Debug)]
pub struct ResponseMapper {
    pub filter: AccessLogFilter,
    pub status: Option<StatusCode>,
    pub body: Option<bytes::Bytes>,
    pub body_format: Option<Arc<SubstitutionFormat>>,
    pub headers: HeaderMutations,
}

/// `local_reply_config`.
#[derive(Debug, Default)]
pub struct LocalReplyConfig {
    pub mappers: Vec<ResponseMapper>,
    pub body_format: Option<Arc<SubstitutionFormat>>,
}

/// An IPv4/IPv6 CIDR range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CidrRange {
    pub addr: std::net::IpAddr,
    pub prefix_len: u8,
}

impl CidrRange {
    pub fn from_proto(c: &core::CidrRange, path: &FieldPath) -> Result<Self, ConfigError> {
        let addr: std::net::IpAddr = c.address_prefix.parse().map_err(|_| {
            ConfigError::semantic(
                path.field("address_prefix"),
                format!("malformed IP address: {}", c.address_prefix),
            )
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len = c.prefix_len.unwrap_or(0).min(max) as u8;
        Ok(CidrRange { addr, prefix_len })
    }

    /// Whether `ip` falls in the range (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = if self.prefix_len == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(self.prefix_len))
                };
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = if self.prefix_len == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(self.prefix_len))
                };
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// A compiled `HttpConnectionManager`.
#[derive(Debug)]
pub struct HttpConnectionManager {
    pub codec_type: CodecType,
    pub stat_prefix: String,
    pub route_config: Arc<RouteConfig>,
    /// The HTTP filters before the router, in order.
    pub http_filters: Vec<crate::http_filters::HttpFilter>,
    /// The terminal router filter.
    pub router: RouterConfig,
    pub add_user_agent: bool,
    pub common: CommonHttpOptions,
    pub http1: Http1Options,
    pub http2: Http2Options,
    pub server_name: String,
    /// `server_name` as the `server` header's value (`None` if it cannot be
    /// one), made once here rather than per response (see [`server_value`]).
    pub server_value: Option<http::HeaderValue>,
    pub server_header: ServerHeader,
    pub max_request_headers_kb: u32,
    /// Default 5 minutes; `None` disables.
    pub stream_idle_timeout: Option<Duration>,
    pub request_timeout: Option<Duration>,
    pub request_headers_timeout: Option<Duration>,
    pub drain_timeout: Duration,
    /// Default 1 s; `None` closes immediately.
    pub delayed_close_timeout: Option<Duration>,
    pub access_logs: Vec<Arc<AccessLog>>,
    pub use_remote_address: bool,
    pub xff_num_trusted_hops: u32,
    /// `None`: no address is internal (Envoy 1.40's default).
    pub internal_cidrs: Vec<CidrRange>,
    pub internal_unix_sockets: bool,
    pub skip_xff_append: bool,
    pub via: Option<http::HeaderValue>,
    pub generate_request_id: bool,
    pub preserve_external_request_id: bool,
    pub always_set_request_id_in_response: bool,
    pub forward_client_cert: ForwardClientCert,
    pub proxy_100_continue: bool,
    /// Enabled upgrade types (lower case), e.g. `websocket`.
    pub upgrades: Vec<String>,
    pub normalize_path: bool,
    pub merge_slashes: bool,
    pub escaped_slashes: EscapedSlashesAction,
    pub local_reply: LocalReplyConfig,
    pub strip_matching_host_port: bool,
    pub strip_any_host_port: bool,
    /// `stream_error_on_invalid_http_message` as set (`None`: unset; see
    /// [`Http2Options::stream_error`] for HTTP/2).
    pub stream_error_on_invalid_http_message: Option<bool>,
    pub strip_trailing_host_dot: bool,
}

/// The `server` header value for `name`, backed by a `'static` string so
/// that workers add it to responses without sharing a reference count.
/// Names other than Envoy's default are interned: each distinct name is
/// kept once for the life of the process, whatever the number of config
/// updates carrying it.
fn server_value(name: &str) -> Option<http::HeaderValue> {
    static NAMES: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    if name == "envoy" {
        return Some(http::HeaderValue::from_static("envoy"));
    }
    // What `HeaderValue::from_str` (and `from_static`, which panics instead)
    // takes: visible ASCII and tabs. Any other name sets no `server` header.
    if !name
        .bytes()
        .all(|b| b == b'\t' || (b' '..0x7f).contains(&b))
    {
        return None;
    }
    let mut names = NAMES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let kept = match names.iter().find(|n| **n == name) {
        Some(n) => *n,
        None => {
            let n: &'static str = Box::leak(name.to_owned().into_boxed_str());
            names.push(n);
            n
        }
    };
    Some(http::HeaderValue::from_static(kept))
}

/// Builds the HCM of a filter chain. `path` is the filter's `typed_config`.
pub fn build(
    hcm: &pb::HttpConnectionManager,
    path: &FieldPath,
    diags: &mut Diagnostics,
) -> Result<HttpConnectionManager, ConfigError> {
    use pb::http_connection_manager::{
        CodecType as C, ForwardClientCertDetails as F, PathWithEscapedSlashesAction as E,
        RouteSpecifier as R, ServerHeaderTransformation as S, StripPortMode,
    };
    let codec_type = match C::try_from(hcm.codec_type) {
        Ok(C::Http1) => CodecType::Http1,
        Ok(C::Http2) => CodecType::Http2,
        Ok(C::Http3) => {
            return Err(ConfigError::not_supported(
                path.field("codec_type"),
                "HTTP3",
            ));
        }
        _ => CodecType::Auto,
    };
    let route_config = match &hcm.route_specifier {
        Some(R::RouteConfig(rc)) => Arc::new(route::build(rc, &path.field("route_config"), diags)?),
        Some(R::Rds(_)) => {
            return Err(ConfigError::not_supported(
                path.field("rds"),
                "rds (dynamic route configuration)",
            ));
        }
        Some(R::ScopedRoutes(_)) => {
            return Err(ConfigError::not_supported(
                path.field("scoped_routes"),
                "scoped_routes",
            ));
        }
        None => {
            return Err(ConfigError::semantic(
                path.clone(),
                "a route_config is required",
            ));
        }
    };
    let (http_filters, router) =
        http_filters(&hcm.http_filters, &path.field("http_filters"), diags)?;
    let mut internal_cidrs = Vec::new();
    let mut internal_unix_sockets = false;
    if let Some(iac) = &hcm.internal_address_config {
        internal_unix_sockets = iac.unix_sockets;
        for (i, c) in iac.cidr_ranges.iter().enumerate() {
            internal_cidrs.push(CidrRange::from_proto(
                c,
                &path
                    .field("internal_address_config")
                    .field("cidr_ranges")
                    .index(i),
            )?);
        }
    }
    if let Some(ext) = &hcm.request_id_extension {
        let p = path.field("request_id_extension");
        let any = ext.typed_config.as_ref();
        let name = "envoy.request_id.uuid";
        extension::resolve(Category::RequestId, name, any, &p, diags)?;
    }
    if hcm.set_current_client_cert_details.is_some() {
        return Err(ConfigError::not_supported(
            path.field("set_current_client_cert_details"),
            "set_current_client_cert_details",
        ));
    }
    let mut upgrades = Vec::new();
    for u in &hcm.upgrade_configs {
        if !u.filters.is_empty() {
            return Err(ConfigError::not_supported(
                path.field("upgrade_configs").field("filters"),
                "upgrade filter chains",
            ));
        }
        if u.enabled.unwrap_or(true) {
            upgrades.push(u.upgrade_type.to_ascii_lowercase());
        }
    }
    let escaped_slashes = match E::try_from(hcm.path_with_escaped_slashes_action) {
        Ok(E::RejectRequest) => EscapedSlashesAction::RejectRequest,
        Ok(E::UnescapeAndRedirect) => EscapedSlashesAction::UnescapeAndRedirect,
        Ok(E::UnescapeAndForward) => EscapedSlashesAction::UnescapeAndForward,
        _ => EscapedSlashesAction::KeepUnchanged,
    };
    let via = if hcm.via.is_empty() {
        None
    } else {
        Some(
            http::HeaderValue::from_str(&hcm.via)
                .map_err(|_| ConfigError::semantic(path.field("via"), "invalid via value"))?,
        )
    };
    let local_reply = match &hcm.local_reply_config {
        None => LocalReplyConfig::default(),
        Some(lr) => local_reply_config(lr, &path.field("local_reply_config"), diags)?,
    };
    let server_name = if hcm.server_name.is_empty() {
        "envoy".to_owned()
    } else {
        hcm.server_name.clone()
    };
    Ok(HttpConnectionManager {
        codec_type,
        stat_prefix: hcm.stat_prefix.clone(),
        route_config,
        http_filters,
        router,
        add_user_agent: hcm.add_user_agent.unwrap_or(false),
        common: CommonHttpOptions::from_proto(
            hcm.common_http_protocol_options.as_ref(),
            Some(Duration::from_secs(3600)),
        ),
        http1: Http1Options::from_proto(
            hcm.http_protocol_options.as_ref(),
            &path.field("http_protocol_options"),
        )?,
        http2: Http2Options::from_proto(
            hcm.http2_protocol_options.as_ref(),
            &path.field("http2_protocol_options"),
        )?,
        server_value: server_value(&server_name),
        server_name,
        server_header: match S::try_from(hcm.server_header_transformation) {
            Ok(S::AppendIfAbsent) => ServerHeader::AppendIfAbsent,
            Ok(S::PassThrough) => ServerHeader::PassThrough,
            _ => ServerHeader::Overwrite,
        },
        max_request_headers_kb: hcm.max_request_headers_kb.unwrap_or(60),
        stream_idle_timeout: duration::timeout_or(
            &hcm.stream_idle_timeout,
            Duration::from_secs(300),
        ),
        request_timeout: duration::opt_nonzero(&hcm.request_timeout),
        request_headers_timeout: duration::opt_nonzero(&hcm.request_headers_timeout),
        drain_timeout: duration::opt(&hcm.drain_timeout).unwrap_or(Duration::from_secs(5)),
        delayed_close_timeout: duration::timeout_or(
            &hcm.delayed_close_timeout,
            Duration::from_secs(1),
        ),
        access_logs: access_logs(&hcm.access_log, &path.field("access_log"), diags)?,
        use_remote_address: hcm.use_remote_address.unwrap_or(false),
        xff_num_trusted_hops: hcm.xff_num_trusted_hops,
        internal_cidrs,
        internal_unix_sockets,
        skip_xff_append: hcm.skip_xff_append,
        via,
        generate_request_id: hcm.generate_request_id.unwrap_or(true),
        preserve_external_request_id: hcm.preserve_external_request_id,
        always_set_request_id_in_response: hcm.always_set_request_id_in_response,
        forward_client_cert: match F::try_from(hcm.forward_client_cert_details) {
            Ok(F::ForwardOnly) => ForwardClientCert::ForwardOnly,
            Ok(F::AppendForward) => ForwardClientCert::AppendForward,
            Ok(F::SanitizeSet) => ForwardClientCert::SanitizeSet,
            Ok(F::AlwaysForwardOnly) => ForwardClientCert::AlwaysForwardOnly,
            _ => ForwardClientCert::Sanitize,
        },
        proxy_100_continue: hcm.proxy_100_continue,
        upgrades,
        normalize_path: hcm.normalize_path.unwrap_or(false),
        merge_slashes: hcm.merge_slashes,
        escaped_slashes,
        local_reply,
        strip_matching_host_port: hcm.strip_matching_host_port,
        strip_any_host_port: matches!(
            hcm.strip_port_mode,
            Some(StripPortMode::StripAnyHostPort(true))
        ),
        stream_error_on_invalid_http_message: hcm.stream_error_on_invalid_http_message,
        strip_trailing_host_dot: hcm.strip_trailing_host_dot,
    })
}

fn http_filters(
    filters: &[pb::HttpFilter],
    path: &FieldPath,
    diags: &mut Diagnostics,
) -> Result<(Vec<crate::http_filters::HttpFilter>, RouterConfig), ConfigError> {
    let mut out = Vec::with_capacity(filters.len());
    let mut router = None;
    let mut saw_terminal = None;
    for (i, f) in filters.iter().enumerate() {
        let p = path.index(i);
        if let Some(prev) = saw_terminal {
            return Err(ConfigError::semantic(
                p,
                format!(
                    "Error: terminal filter named {prev} of type envoy.filters.http.router must be the last filter in a http filter chain."
                ),
            ));
        }
        let typed = match &f.config_type {
            Some(pb::http_filter::ConfigType::TypedConfig(a)) => Some(a),
            Some(pb::http_filter::ConfigType::ConfigDiscovery(_)) => {
                return Err(ConfigError::not_supported(
                    p.field("config_discovery"),
                    "config_discovery (ECDS)",
                ));
            }
            None => None,
        };
        let resolved = match extension::resolve(Category::HttpFilter, &f.name, typed, &p, diags) {
            Ok(r) => r,
            Err(e) if f.is_optional && e.kind == rvoy_config_load::ErrorKind::UnknownExtension => {
                continue;
            }
            Err(e) => return Err(e),
        };
        if f.disabled && resolved.extension.name == "envoy.filters.http.router" {
            return Err(ConfigError::semantic(
                p.field("disabled"),
                "the terminal router filter cannot be disabled",
            ));
        }
        if resolved.extension.name == "envoy.filters.http.router" {
            let r: router_pb::Router = resolved.config_as(&p)?;
            if !r.upstream_log.is_empty() {
                return Err(ConfigError::not_supported(
                    p.field("typed_config").field("upstream_log"),
                    "router upstream_log",
                ));
            }
            if !r.upstream_http_filters.is_empty() {
                return Err(ConfigError::not_supported(
                    p.field("typed_config").field("upstream_http_filters"),
                    "upstream HTTP filters",
                ));
            }
            router = Some(RouterConfig {
                dynamic_stats: r.dynamic_stats.unwrap_or(true),
                suppress_envoy_headers: r.suppress_envoy_headers,
                strict_check_headers: r.strict_check_headers.clone(),
                respect_expected_rq_timeout: r.respect_expected_rq_timeout,
            });
            saw_terminal = Some(f.name.clone());
            continue;
        }
        match crate::http_filters::lower(&f.name, &resolved, &p, diags)? {
            Some(config) => out.push(crate::http_filters::HttpFilter {
                name: Arc::from(f.name.as_str()),
                config,
                disabled_by_default: f.disabled,
            }),
            None => return Err(ConfigError::not_supported(p, resolved.extension.name)),
        }
    }
    match router {
        Some(r) => Ok((out, r)),
        // Envoy 1.40 installs the router when no HTTP filter is configured.
        None if filters.is_empty() => Ok((
            out,
            RouterConfig {
                dynamic_stats: true,
                suppress_envoy_headers: false,
                strict_check_headers: Vec::new(),
                respect_expected_rq_timeout: false,
            },
        )),
        None => {
            let last = filters.last().map(|f| f.name.clone()).unwrap_or_default();
            Err(ConfigError::semantic(
                path.clone(),
                format!(
                    "Error: non-terminal filter named {last} is the last filter in a http filter chain."
                ),
            ))
        }
    }
}

fn local_reply_config(
    lr: &pb::LocalReplyConfig,
    path: &FieldPath,
    diags: &mut Diagnostics,
) -> Result<LocalReplyConfig, ConfigError> {
    let mut mappers = Vec::with_capacity(lr.mappers.len());
    for (i, m) in lr.mappers.iter().enumerate() {
        let p = path.field("mappers").index(i);
        let filter = m
            .filter
            .as_ref()
            .map(|f| AccessLogFilter::from_proto(f, &p.field("filter"), diags))
            .transpose()?
            .ok_or_else(|| ConfigError::semantic(p.field("filter"), "a filter is required"))?;
        mappers.push(ResponseMapper {
            filter,
            status: m
                .status_code
                .map(|s| {
                    StatusCode::from_u16(s as u16).map_err(|_| {
                        ConfigError::semantic(p.field("status_code"), format!("invalid status {s}"))
                    })
                })
                .transpose()?,
            body: m
                .body
                .as_ref()
                .map(|b| data_source(b, &p.field("body")))
                .transpose()?,
            body_format: m
                .body_format_override
                .as_ref()
                .map(|f| {
                    substitution_format(f, &p.field("body_format_override"), diags).map(Arc::new)
                })
                .transpose()?,
            headers: HeaderMutations::from_proto(
                &m.headers_to_add,
                &[],
                &p.field("headers_to_add"),
                &p,
                false,
            )?,
        });
    }
    Ok(LocalReplyConfig {
        mappers,
        body_format: lr
            .body_format
            .as_ref()
            .map(|f| substitution_format(f, &path.field("body_format"), diags).map(Arc::new))
            .transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_values_are_kept_once_per_name() {
        assert_eq!(server_value("envoy").expect("default"), "envoy");
        let a = server_value("edge-proxy").expect("a visible name");
        let b = server_value("edge-proxy").expect("a visible name");
        assert_eq!(a, "edge-proxy");
        assert_eq!(a.as_bytes().as_ptr(), b.as_bytes().as_ptr());
        assert_eq!(
            server_value("tab\there").expect("tabs are allowed"),
            "tab\there"
        );
        assert_eq!(server_value("bad\u{1}name"), None);
        assert_eq!(server_value("caf\u{e9}"), None);
    }

    #[test]
    fn cidr_contains() {
        let c = CidrRange {
            addr: "10.0.0.0".parse().expect("ip"),
            prefix_len: 8,
        };
        assert!(c.contains("10.1.2.3".parse().expect("ip")));
        assert!(c.contains("::ffff:10.1.2.3".parse().expect("ip")));
        assert!(!c.contains("11.1.2.3".parse().expect("ip")));
    }
}
