//! [`TestStreamInfo`]: a [`StreamInfo`] made of plain public fields, for
//! tests of this crate and of its users.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use http::HeaderMap;

use crate::ResponseFlags;
use crate::stream_info::{
    AccessLogType, Address, AddressKind, BytesMeter, DetectedCloseType, FilterStateObject,
    MetadataKind, Protocol, PseudoHeader, StreamInfo, TimePoint, TlsInfo,
};

/// An owned address for [`TestStreamInfo`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnedAddress {
    Ip(SocketAddr),
    Pipe(String),
    Internal {
        server_id: String,
        endpoint_id: String,
    },
}

impl OwnedAddress {
    pub fn as_address(&self) -> Address<'_> {
        match self {
            OwnedAddress::Ip(a) => Address::Ip(*a),
            OwnedAddress::Pipe(p) => Address::Pipe(p),
            OwnedAddress::Internal {
                server_id,
                endpoint_id,
            } => Address::Internal {
                server_id,
                endpoint_id,
            },
        }
    }
}

impl From<SocketAddr> for OwnedAddress {
    fn from(a: SocketAddr) -> Self {
        OwnedAddress::Ip(a)
    }
}

/// Every piece of stream data as a public field; `Default` is a stream with
/// nothing known.
#[derive(Default)]
pub struct TestStreamInfo {
    pub start_time: Option<SystemTime>,
    /// `None`: the real clock.
    pub emit_time: Option<SystemTime>,
    pub duration: Option<Duration>,
    pub timings: HashMap<TimePoint, Duration>,
    pub custom_timings: HashMap<String, Duration>,
    pub upstream_connection_pool_ready_duration: Option<Duration>,
    pub downstream_connection_rtt: Option<Duration>,
    pub route_resolution_count: Option<u64>,
    pub route_resolution_time: Option<Duration>,

    pub request_headers: Option<HeaderMap>,
    /// `:method`, `:path`, ... by name with the colon.
    pub request_pseudo_headers: BTreeMap<String, String>,
    pub response_headers: Option<HeaderMap>,
    /// `:status`.
    pub response_status: Option<String>,
    pub response_trailers: Option<HeaderMap>,
    pub local_reply_body: String,
    pub access_log_type: AccessLogType,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,

    pub protocol: Option<Protocol>,
    pub upstream_protocol: Option<Protocol>,
    pub response_code: Option<u16>,
    pub response_code_details: Option<String>,
    pub connection_termination_details: Option<String>,
    pub response_flags: ResponseFlags,
    pub custom_flags: String,

    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub bytes_retransmitted: u64,
    pub packets_retransmitted: u64,
    pub upstream_bytes_meter: Option<BytesMeter>,
    pub downstream_bytes_meter: Option<BytesMeter>,

    pub addresses: HashMap<AddressKind, OwnedAddress>,
    pub upstream_host_name: Option<String>,
    /// (address, hostname) of every host tried.
    pub upstream_hosts_attempted: Vec<(OwnedAddress, String)>,
    pub upstream_connection_ids_attempted: Vec<u64>,
    pub connection_id: Option<u64>,
    pub upstream_connection_id: Option<u64>,
    pub upstream_cluster_observability_name: Option<String>,
    pub upstream_cluster_name: Option<String>,
    pub upstream_request_attempt_count: Option<u32>,
    pub upstream_transport_failure_reason: Option<String>,
    pub downstream_transport_failure_reason: Option<String>,
    pub upstream_server_name: Option<String>,
    pub upstream_local_close_reason: Option<String>,
    pub downstream_local_close_reason: Option<String>,
    pub upstream_detected_close_type: Option<DetectedCloseType>,
    pub downstream_detected_close_type: Option<DetectedCloseType>,
    pub requested_server_name: Option<String>,
    pub route_name: Option<String>,
    pub virtual_cluster_name: Option<String>,
    pub filter_chain_name: Option<String>,
    pub listener_name: Option<String>,
    pub stream_id: Option<String>,
    pub ja3_hash: Option<String>,
    pub ja4_hash: Option<String>,
    pub downstream_tls: Option<TlsInfo>,
    pub upstream_tls: Option<TlsInfo>,

    /// (kind, namespace) → struct.
    pub metadata: HashMap<(MetadataKind, String), prost_types::Struct>,
    pub filter_state: HashMap<String, Box<dyn FilterStateObject>>,
    pub upstream_filter_state: HashMap<String, Box<dyn FilterStateObject>>,
}

impl TestStreamInfo {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a request header; names starting with `:` are pseudo headers.
    pub fn set_request_header(&mut self, name: &str, value: &str) {
        if name.starts_with(':') {
            self.request_pseudo_headers
                .insert(name.to_ascii_lowercase(), value.to_owned());
            return;
        }
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            self.request_headers
                .get_or_insert_with(HeaderMap::new)
                .append(n, v);
        }
    }

    pub fn set_response_header(&mut self, name: &str, value: &str) {
        if name == ":status" {
            self.response_status = Some(value.to_owned());
            return;
        }
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            self.response_headers
                .get_or_insert_with(HeaderMap::new)
                .append(n, v);
        }
    }

    pub fn set_response_trailer(&mut self, name: &str, value: &str) {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            self.response_trailers
                .get_or_insert_with(HeaderMap::new)
                .append(n, v);
        }
    }

    pub fn set_address(&mut self, kind: AddressKind, addr: impl Into<OwnedAddress>) {
        self.addresses.insert(kind, addr.into());
    }

    pub fn set_metadata(
        &mut self,
        kind: MetadataKind,
        namespace: &str,
        value: prost_types::Struct,
    ) {
        self.metadata.insert((kind, namespace.to_owned()), value);
    }
}

impl StreamInfo for TestStreamInfo {
    fn start_time(&self) -> Option<SystemTime> {
        self.start_time
    }
    fn emit_time(&self) -> SystemTime {
        self.emit_time.unwrap_or_else(SystemTime::now)
    }
    fn duration(&self) -> Option<Duration> {
        self.duration
    }
    fn timing(&self, point: TimePoint) -> Option<Duration> {
        self.timings.get(&point).copied()
    }
    fn custom_timing(&self, key: &str) -> Option<Duration> {
        self.custom_timings.get(key).copied()
    }
    fn upstream_connection_pool_ready_duration(&self) -> Option<Duration> {
        self.upstream_connection_pool_ready_duration
    }
    fn downstream_connection_rtt(&self) -> Option<Duration> {
        self.downstream_connection_rtt
    }
    fn route_resolution_count(&self) -> Option<u64> {
        self.route_resolution_count
    }
    fn route_resolution_time(&self) -> Option<Duration> {
        self.route_resolution_time
    }
    fn request_headers(&self) -> Option<&HeaderMap> {
        self.request_headers.as_ref()
    }
    fn request_pseudo_header(&self, name: &PseudoHeader) -> Option<&str> {
        self.request_pseudo_headers
            .get(name.as_str())
            .map(String::as_str)
    }
    fn response_headers(&self) -> Option<&HeaderMap> {
        self.response_headers.as_ref()
    }
    fn response_pseudo_header(&self, name: &PseudoHeader) -> Option<&str> {
        match name {
            PseudoHeader::Status => self.response_status.as_deref(),
            _ => None,
        }
    }
    fn response_trailers(&self) -> Option<&HeaderMap> {
        self.response_trailers.as_ref()
    }
    fn local_reply_body(&self) -> &str {
        &self.local_reply_body
    }
    fn access_log_type(&self) -> AccessLogType {
        self.access_log_type
    }
    fn trace_id(&self) -> Option<&str> {
        self.trace_id.as_deref()
    }
    fn span_id(&self) -> Option<&str> {
        self.span_id.as_deref()
    }
    fn protocol(&self) -> Option<Protocol> {
        self.protocol
    }
    fn upstream_protocol(&self) -> Option<Protocol> {
        self.upstream_protocol
    }
    fn response_code(&self) -> Option<u16> {
        self.response_code
    }
    fn response_code_details(&self) -> Option<&str> {
        self.response_code_details.as_deref()
    }
    fn connection_termination_details(&self) -> Option<&str> {
        self.connection_termination_details.as_deref()
    }
    fn response_flags(&self) -> ResponseFlags {
        self.response_flags
    }
    fn custom_flags(&self) -> &str {
        &self.custom_flags
    }
    fn bytes_received(&self) -> u64 {
        self.bytes_received
    }
    fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }
    fn bytes_retransmitted(&self) -> u64 {
        self.bytes_retransmitted
    }
    fn packets_retransmitted(&self) -> u64 {
        self.packets_retransmitted
    }
    fn upstream_bytes_meter(&self) -> Option<&BytesMeter> {
        self.upstream_bytes_meter.as_ref()
    }
    fn downstream_bytes_meter(&self) -> Option<&BytesMeter> {
        self.downstream_bytes_meter.as_ref()
    }
    fn address(&self, kind: AddressKind) -> Option<Address<'_>> {
        self.addresses.get(&kind).map(OwnedAddress::as_address)
    }
    fn upstream_host_name(&self) -> Option<&str> {
        self.upstream_host_name.as_deref()
    }
    fn for_each_upstream_host_attempted(&self, f: &mut dyn FnMut(Address<'_>, &str)) {
        for (a, h) in &self.upstream_hosts_attempted {
            f(a.as_address(), h);
        }
    }
    fn for_each_upstream_connection_id_attempted(&self, f: &mut dyn FnMut(u64)) {
        for id in &self.upstream_connection_ids_attempted {
            f(*id);
        }
    }
    fn connection_id(&self) -> Option<u64> {
        self.connection_id
    }
    fn upstream_connection_id(&self) -> Option<u64> {
        self.upstream_connection_id
    }
    fn upstream_cluster_observability_name(&self) -> Option<&str> {
        self.upstream_cluster_observability_name.as_deref()
    }
    fn upstream_cluster_name(&self) -> Option<&str> {
        self.upstream_cluster_name.as_deref()
    }
    fn upstream_request_attempt_count(&self) -> Option<u32> {
        self.upstream_request_attempt_count
    }
    fn upstream_transport_failure_reason(&self) -> Option<&str> {
        self.upstream_transport_failure_reason.as_deref()
    }
    fn downstream_transport_failure_reason(&self) -> Option<&str> {
        self.downstream_transport_failure_reason.as_deref()
    }
    fn upstream_server_name(&self) -> Option<&str> {
        self.upstream_server_name.as_deref()
    }
    fn upstream_local_close_reason(&self) -> Option<&str> {
        self.upstream_local_close_reason.as_deref()
    }
    fn downstream_local_close_reason(&self) -> Option<&str> {
        self.downstream_local_close_reason.as_deref()
    }
    fn upstream_detected_close_type(&self) -> Option<DetectedCloseType> {
        self.upstream_detected_close_type
    }
    fn downstream_detected_close_type(&self) -> Option<DetectedCloseType> {
        self.downstream_detected_close_type
    }
    fn requested_server_name(&self) -> Option<&str> {
        self.requested_server_name.as_deref()
    }
    fn route_name(&self) -> Option<&str> {
        self.route_name.as_deref()
    }
    fn virtual_cluster_name(&self) -> Option<&str> {
        self.virtual_cluster_name.as_deref()
    }
    fn filter_chain_name(&self) -> Option<&str> {
        self.filter_chain_name.as_deref()
    }
    fn listener_name(&self) -> Option<&str> {
        self.listener_name.as_deref()
    }
    fn stream_id(&self) -> Option<&str> {
        self.stream_id.as_deref()
    }
    fn ja3_hash(&self) -> Option<&str> {
        self.ja3_hash.as_deref()
    }
    fn ja4_hash(&self) -> Option<&str> {
        self.ja4_hash.as_deref()
    }
    fn downstream_tls(&self) -> Option<&TlsInfo> {
        self.downstream_tls.as_ref()
    }
    fn upstream_tls(&self) -> Option<&TlsInfo> {
        self.upstream_tls.as_ref()
    }
    fn metadata(&self, kind: MetadataKind, namespace: &str) -> Option<&prost_types::Struct> {
        self.metadata.get(&(kind, namespace.to_owned()))
    }
    fn filter_state(&self, key: &str) -> Option<&dyn FilterStateObject> {
        self.filter_state.get(key).map(|b| &**b)
    }
    fn upstream_filter_state(&self, key: &str) -> Option<&dyn FilterStateObject> {
        self.upstream_filter_state.get(key).map(|b| &**b)
    }
}
