//! The data a format reads: Envoy's `StreamInfo` plus the formatter context
//! (headers, trailers, local reply body, access log type, active span).
//!
//! The data plane implements [`StreamInfo`] once per stream; every method has
//! a default that reports "not available", so an implementer overrides only
//! what it has. Methods return borrowed data so rendering costs no
//! allocation. [`TestStreamInfo`](crate::TestStreamInfo) is a plain-struct
//! implementation for tests.

use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use http::HeaderMap;

use crate::ResponseFlags;

/// HTTP protocol of a stream, rendered as Envoy does (`HTTP/1.1`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Http10,
    Http11,
    Http2,
    Http3,
}

impl Protocol {
    /// Envoy's `Http::Utility::getProtocolString`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http10 => "HTTP/1.0",
            Protocol::Http11 => "HTTP/1.1",
            Protocol::Http2 => "HTTP/2",
            Protocol::Http3 => "HTTP/3",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A network address as Envoy's `Network::Address::Instance`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Address<'a> {
    /// An IP socket address: `1.2.3.4:80`, `[::1]:80`.
    Ip(SocketAddr),
    /// A unix domain socket path (abstract sockets start with `@`).
    Pipe(&'a str),
    /// An Envoy internal address: `envoy://server_id/endpoint_id`.
    Internal {
        server_id: &'a str,
        endpoint_id: &'a str,
    },
}

impl fmt::Display for Address<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Ip(SocketAddr::V4(a)) => write!(f, "{}:{}", a.ip(), a.port()),
            Address::Ip(SocketAddr::V6(a)) => write!(f, "[{}]:{}", a.ip(), a.port()),
            Address::Pipe(p) => f.write_str(p),
            Address::Internal {
                server_id,
                endpoint_id,
            } => write!(f, "envoy://{server_id}/{endpoint_id}"),
        }
    }
}

/// Which address of a stream an operator reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddressKind {
    /// `%DOWNSTREAM_LOCAL_ADDRESS%`: possibly restored by original_dst.
    DownstreamLocal,
    /// `%DOWNSTREAM_DIRECT_LOCAL_ADDRESS%`: the socket's own local address.
    DownstreamDirectLocal,
    /// `%DOWNSTREAM_REMOTE_ADDRESS%`: possibly from XFF or proxy protocol.
    DownstreamRemote,
    /// `%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%`: the socket's peer.
    DownstreamDirectRemote,
    /// `%UPSTREAM_LOCAL_ADDRESS%`.
    UpstreamLocal,
    /// `%UPSTREAM_REMOTE_ADDRESS%`.
    UpstreamRemote,
    /// `%UPSTREAM_HOST%`: the selected host's address.
    UpstreamHost,
}

/// Monotonic timing points, as offsets from the stream's start
/// (Envoy's `DownstreamTiming` and `UpstreamTiming`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimePoint {
    /// `DS_RX_END`.
    LastDownstreamRxByteReceived,
    /// `US_CX_BEG`.
    UpstreamConnectStart,
    /// `US_CX_END`.
    UpstreamConnectComplete,
    /// `US_HS_END`.
    UpstreamHandshakeComplete,
    /// `US_TX_BEG`.
    FirstUpstreamTxByteSent,
    /// `US_TX_END`.
    LastUpstreamTxByteSent,
    /// `US_RX_BEG`.
    FirstUpstreamRxByteReceived,
    /// `US_RX_BODY_BEG`.
    FirstUpstreamRxBodyByteReceived,
    /// `US_RX_END`.
    LastUpstreamRxByteReceived,
    /// `DS_TX_BEG`.
    FirstDownstreamTxByteSent,
    /// `DS_TX_END`.
    LastDownstreamTxByteSent,
    /// Downstream TLS handshake complete (`%DOWNSTREAM_HANDSHAKE_DURATION%`).
    DownstreamHandshakeComplete,
    /// Last downstream ack received (`%ROUNDTRIP_DURATION%`, HTTP/3).
    LastDownstreamAckReceived,
}

/// Per-direction byte counters (Envoy's `BytesMeter`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BytesMeter {
    pub wire_bytes_sent: u64,
    pub wire_bytes_received: u64,
    pub header_bytes_sent: u64,
    pub header_bytes_received: u64,
    pub decompressed_header_bytes_sent: u64,
    pub decompressed_header_bytes_received: u64,
}

/// The request pseudo headers and response `:status`, which `http::HeaderMap`
/// cannot hold.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PseudoHeader {
    Method,
    Path,
    Authority,
    Scheme,
    Protocol,
    Status,
    /// Any other `:name`; looked up through [`StreamInfo::request_pseudo_header`] as well.
    Other(Box<str>),
}

impl PseudoHeader {
    pub(crate) fn from_lower(name: &str) -> PseudoHeader {
        match name {
            ":method" => PseudoHeader::Method,
            ":path" => PseudoHeader::Path,
            ":authority" => PseudoHeader::Authority,
            ":scheme" => PseudoHeader::Scheme,
            ":protocol" => PseudoHeader::Protocol,
            ":status" => PseudoHeader::Status,
            other => PseudoHeader::Other(other.into()),
        }
    }

    /// The header's name, with its colon.
    pub fn as_str(&self) -> &str {
        match self {
            PseudoHeader::Method => ":method",
            PseudoHeader::Path => ":path",
            PseudoHeader::Authority => ":authority",
            PseudoHeader::Scheme => ":scheme",
            PseudoHeader::Protocol => ":protocol",
            PseudoHeader::Status => ":status",
            PseudoHeader::Other(s) => s,
        }
    }
}

/// Envoy's `AccessLogType` enum; `%ACCESS_LOG_TYPE%` prints its name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AccessLogType {
    #[default]
    NotSet,
    TcpUpstreamConnected,
    TcpPeriodic,
    TcpConnectionStart,
    TcpConnectionEnd,
    DownstreamStart,
    DownstreamPeriodic,
    DownstreamEnd,
    UpstreamPoolReady,
    UpstreamPeriodic,
    UpstreamEnd,
    DownstreamTunnelSuccessfullyEstablished,
    UdpTunnelUpstreamConnected,
    UdpPeriodic,
    UdpSessionEnd,
}

impl AccessLogType {
    /// The proto enum value name.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessLogType::NotSet => "NotSet",
            AccessLogType::TcpUpstreamConnected => "TcpUpstreamConnected",
            AccessLogType::TcpPeriodic => "TcpPeriodic",
            AccessLogType::TcpConnectionStart => "TcpConnectionStart",
            AccessLogType::TcpConnectionEnd => "TcpConnectionEnd",
            AccessLogType::DownstreamStart => "DownstreamStart",
            AccessLogType::DownstreamPeriodic => "DownstreamPeriodic",
            AccessLogType::DownstreamEnd => "DownstreamEnd",
            AccessLogType::UpstreamPoolReady => "UpstreamPoolReady",
            AccessLogType::UpstreamPeriodic => "UpstreamPeriodic",
            AccessLogType::UpstreamEnd => "UpstreamEnd",
            AccessLogType::DownstreamTunnelSuccessfullyEstablished => {
                "DownstreamTunnelSuccessfullyEstablished"
            }
            AccessLogType::UdpTunnelUpstreamConnected => "UdpTunnelUpstreamConnected",
            AccessLogType::UdpPeriodic => "UdpPeriodic",
            AccessLogType::UdpSessionEnd => "UdpSessionEnd",
        }
    }
}

/// How a connection was seen to close (`%*_DETECTED_CLOSE_TYPE%`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DetectedCloseType {
    Normal,
    LocalReset,
    RemoteReset,
}

impl DetectedCloseType {
    pub fn as_str(self) -> &'static str {
        match self {
            DetectedCloseType::Normal => "Normal",
            DetectedCloseType::LocalReset => "LocalReset",
            DetectedCloseType::RemoteReset => "RemoteReset",
        }
    }
}

/// Whose metadata `%METADATA(KIND:...)%` and friends read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetadataKind {
    /// The stream's dynamic metadata (`%DYNAMIC_METADATA%`).
    Dynamic,
    /// The upstream cluster's metadata (`%CLUSTER_METADATA%`).
    Cluster,
    /// The route's metadata.
    Route,
    /// The upstream host's metadata (`%UPSTREAM_METADATA%`).
    UpstreamHost,
    /// The listener's metadata.
    Listener,
    /// The virtual host's metadata.
    VirtualHost,
    /// The matched filter chain's metadata.
    ListenerFilterChain,
}

impl MetadataKind {
    /// The `METADATA(KIND:...)` spelling.
    pub fn from_name(name: &str) -> Option<MetadataKind> {
        Some(match name {
            "DYNAMIC" => MetadataKind::Dynamic,
            "CLUSTER" => MetadataKind::Cluster,
            "ROUTE" => MetadataKind::Route,
            "UPSTREAM_HOST" => MetadataKind::UpstreamHost,
            "LISTENER" => MetadataKind::Listener,
            "VIRTUAL_HOST" => MetadataKind::VirtualHost,
            "LISTENER_FILTER_CHAIN" => MetadataKind::ListenerFilterChain,
            _ => return None,
        })
    }
}

/// What a TLS connection reports (Envoy's `Ssl::ConnectionInfo`). Empty
/// strings and lists render as missing values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsInfo {
    pub peer_uri_sans: Vec<String>,
    pub peer_dns_sans: Vec<String>,
    pub peer_ip_sans: Vec<String>,
    pub peer_email_sans: Vec<String>,
    pub peer_othername_sans: Vec<String>,
    pub local_uri_sans: Vec<String>,
    pub local_dns_sans: Vec<String>,
    pub local_ip_sans: Vec<String>,
    pub local_email_sans: Vec<String>,
    pub local_othername_sans: Vec<String>,
    /// RFC 2253 subject of the peer certificate.
    pub peer_subject: String,
    pub local_subject: String,
    pub peer_issuer: String,
    /// Lower-case hex SHA-256 of the peer certificate.
    pub peer_fingerprint_256: String,
    /// Lower-case hex SHA-1 of the peer certificate.
    pub peer_fingerprint_1: String,
    pub peer_serial: String,
    pub peer_issuer_fingerprint_256: String,
    pub peer_issuer_serial: String,
    pub peer_chain_fingerprints_256: Vec<String>,
    pub peer_chain_fingerprints_1: Vec<String>,
    pub peer_chain_serials: Vec<String>,
    /// URL-encoded PEM of the peer certificate.
    pub peer_cert_url_encoded_pem: String,
    pub peer_cert_valid_from: Option<SystemTime>,
    pub peer_cert_expiration: Option<SystemTime>,
    /// Hex session id.
    pub session_id: String,
    /// e.g. `TLS_AES_128_GCM_SHA256`.
    pub cipher: String,
    /// e.g. `TLSv1.3`.
    pub version: String,
    /// The key exchange group, e.g. `X25519`.
    pub group: String,
}

/// One field of a filter state object (`%FILTER_STATE(KEY:FIELD:NAME)%`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldValue<'a> {
    None,
    Int(i64),
    Str(Cow<'a, str>),
}

/// A filter state object as the formatter sees it.
pub trait FilterStateObject {
    /// `PLAIN` serialization.
    fn serialize_as_string(&self) -> Option<Cow<'_, str>> {
        None
    }
    /// `TYPED` serialization: the object's proto as JSON.
    fn serialize_as_json(&self) -> Option<serde_json::Value> {
        None
    }
    /// `FIELD` access.
    fn field(&self, _name: &str) -> FieldValue<'_> {
        FieldValue::None
    }
}

/// A plain string filter state object (Envoy's `envoy.string`): `PLAIN`
/// gives the string, `TYPED` a JSON string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StringFilterState(pub String);

impl FilterStateObject for StringFilterState {
    fn serialize_as_string(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(&self.0))
    }
    fn serialize_as_json(&self) -> Option<serde_json::Value> {
        Some(serde_json::Value::String(self.0.clone()))
    }
}

/// Everything a format may read about a stream. Every method has a default
/// meaning "not available" (or Envoy's zero for counters).
pub trait StreamInfo {
    // ---- times -------------------------------------------------------------

    /// Wall-clock start of the request (or connection).
    fn start_time(&self) -> Option<SystemTime> {
        None
    }
    /// Wall-clock time of rendering (`%EMIT_TIME%`).
    fn emit_time(&self) -> SystemTime {
        SystemTime::now()
    }
    /// Total duration so far, or the final one (`%DURATION%`).
    fn duration(&self) -> Option<Duration> {
        None
    }
    /// A timing point, as an offset from the start.
    fn timing(&self, _point: TimePoint) -> Option<Duration> {
        None
    }
    /// A custom downstream timing point set by a filter
    /// (`%COMMON_DURATION%` with a name that is not a built-in point).
    fn custom_timing(&self, _key: &str) -> Option<Duration> {
        None
    }
    /// How long the upstream pool took to be ready.
    fn upstream_connection_pool_ready_duration(&self) -> Option<Duration> {
        None
    }
    /// Round trip time of the downstream connection (`%DOWNSTREAM_CX_RTT%`).
    fn downstream_connection_rtt(&self) -> Option<Duration> {
        None
    }
    /// How many times the route was resolved.
    fn route_resolution_count(&self) -> Option<u64> {
        None
    }
    /// Time spent resolving routes.
    fn route_resolution_time(&self) -> Option<Duration> {
        None
    }

    // ---- headers -----------------------------------------------------------

    /// Request headers, without pseudo headers.
    fn request_headers(&self) -> Option<&HeaderMap> {
        None
    }
    /// A request pseudo header (`:method`, `:path`, `:authority`, `:scheme`, ...).
    fn request_pseudo_header(&self, _name: &PseudoHeader) -> Option<&str> {
        None
    }
    /// Response headers, without `:status`.
    fn response_headers(&self) -> Option<&HeaderMap> {
        None
    }
    /// A response pseudo header (`:status`).
    fn response_pseudo_header(&self, _name: &PseudoHeader) -> Option<&str> {
        None
    }
    fn response_trailers(&self) -> Option<&HeaderMap> {
        None
    }
    /// Envoy's `HeaderMap::byteSize()` of the request headers: every key and
    /// value length, pseudo headers included.
    fn request_headers_bytes(&self) -> u64 {
        let mut n = self.request_headers().map_or(0, header_map_bytes);
        for p in [
            PseudoHeader::Method,
            PseudoHeader::Path,
            PseudoHeader::Authority,
            PseudoHeader::Scheme,
            PseudoHeader::Protocol,
        ] {
            if let Some(v) = self.request_pseudo_header(&p) {
                n += (p.as_str().len() + v.len()) as u64;
            }
        }
        n
    }
    fn response_headers_bytes(&self) -> u64 {
        let mut n = self.response_headers().map_or(0, header_map_bytes);
        if let Some(v) = self.response_pseudo_header(&PseudoHeader::Status) {
            n += (":status".len() + v.len()) as u64;
        }
        n
    }
    fn response_trailers_bytes(&self) -> u64 {
        self.response_trailers().map_or(0, header_map_bytes)
    }
    /// The body of a local reply (`%LOCAL_REPLY_BODY%`); empty elsewhere.
    fn local_reply_body(&self) -> &str {
        ""
    }
    fn access_log_type(&self) -> AccessLogType {
        AccessLogType::NotSet
    }
    /// Trace id of the active span.
    fn trace_id(&self) -> Option<&str> {
        None
    }
    /// Span id of the active span.
    fn span_id(&self) -> Option<&str> {
        None
    }

    // ---- response ----------------------------------------------------------

    fn protocol(&self) -> Option<Protocol> {
        None
    }
    fn upstream_protocol(&self) -> Option<Protocol> {
        None
    }
    fn response_code(&self) -> Option<u16> {
        None
    }
    fn response_code_details(&self) -> Option<&str> {
        None
    }
    fn connection_termination_details(&self) -> Option<&str> {
        None
    }
    fn response_flags(&self) -> ResponseFlags {
        ResponseFlags::empty()
    }
    /// Flags set by extensions (`%CUSTOM_FLAGS%`), comma separated.
    fn custom_flags(&self) -> &str {
        ""
    }

    // ---- bytes -------------------------------------------------------------

    /// Body bytes received (or connection bytes, for TCP).
    fn bytes_received(&self) -> u64 {
        0
    }
    fn bytes_sent(&self) -> u64 {
        0
    }
    fn bytes_retransmitted(&self) -> u64 {
        0
    }
    fn packets_retransmitted(&self) -> u64 {
        0
    }
    fn upstream_bytes_meter(&self) -> Option<&BytesMeter> {
        None
    }
    fn downstream_bytes_meter(&self) -> Option<&BytesMeter> {
        None
    }

    // ---- addresses and connections -----------------------------------------

    fn address(&self, _kind: AddressKind) -> Option<Address<'_>> {
        None
    }
    /// The selected upstream host's hostname (empty when it has none).
    fn upstream_host_name(&self) -> Option<&str> {
        None
    }
    /// Every upstream host tried, in order: address and hostname ("" when none).
    fn for_each_upstream_host_attempted(&self, _f: &mut dyn FnMut(Address<'_>, &str)) {}
    /// Every upstream connection id tried, in order.
    fn for_each_upstream_connection_id_attempted(&self, _f: &mut dyn FnMut(u64)) {}
    fn connection_id(&self) -> Option<u64> {
        None
    }
    fn upstream_connection_id(&self) -> Option<u64> {
        None
    }
    /// Observability name of the upstream cluster (`alt_stat_name` if set).
    fn upstream_cluster_observability_name(&self) -> Option<&str> {
        None
    }
    /// Name of the upstream cluster.
    fn upstream_cluster_name(&self) -> Option<&str> {
        None
    }
    fn upstream_request_attempt_count(&self) -> Option<u32> {
        None
    }
    fn upstream_transport_failure_reason(&self) -> Option<&str> {
        None
    }
    fn downstream_transport_failure_reason(&self) -> Option<&str> {
        None
    }
    /// SNI the upstream connection used.
    fn upstream_server_name(&self) -> Option<&str> {
        None
    }
    fn upstream_local_close_reason(&self) -> Option<&str> {
        None
    }
    fn downstream_local_close_reason(&self) -> Option<&str> {
        None
    }
    fn upstream_detected_close_type(&self) -> Option<DetectedCloseType> {
        None
    }
    fn downstream_detected_close_type(&self) -> Option<DetectedCloseType> {
        None
    }
    /// SNI of the downstream connection.
    fn requested_server_name(&self) -> Option<&str> {
        None
    }
    fn route_name(&self) -> Option<&str> {
        None
    }
    fn virtual_cluster_name(&self) -> Option<&str> {
        None
    }
    fn filter_chain_name(&self) -> Option<&str> {
        None
    }
    fn listener_name(&self) -> Option<&str> {
        None
    }
    /// The stream id (`x-request-id` by default).
    fn stream_id(&self) -> Option<&str> {
        None
    }
    fn ja3_hash(&self) -> Option<&str> {
        None
    }
    fn ja4_hash(&self) -> Option<&str> {
        None
    }
    fn downstream_tls(&self) -> Option<&TlsInfo> {
        None
    }
    fn upstream_tls(&self) -> Option<&TlsInfo> {
        None
    }

    // ---- metadata and filter state ------------------------------------------

    /// One namespace of some metadata (`filter_metadata[namespace]`).
    fn metadata(&self, _kind: MetadataKind, _namespace: &str) -> Option<&prost_types::Struct> {
        None
    }
    fn filter_state(&self, _key: &str) -> Option<&dyn FilterStateObject> {
        None
    }
    fn upstream_filter_state(&self, _key: &str) -> Option<&dyn FilterStateObject> {
        None
    }
}

/// Envoy's `HeaderMap::byteSize()` for a map without pseudo headers.
pub fn header_map_bytes(map: &HeaderMap) -> u64 {
    map.iter()
        .map(|(k, v)| (k.as_str().len() + v.len()) as u64)
        .sum()
}
