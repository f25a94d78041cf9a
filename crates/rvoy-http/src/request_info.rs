//! What one request did, for access logs, header formatters and local reply
//! mappers: Envoy's `StreamInfo` for an HTTP stream.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderMap, Method};
use rvoy_format::{
    AccessLogType, Address, AddressKind, PseudoHeader, ResponseFlag, ResponseFlags, StreamInfo,
    TimePoint,
};
use rvoy_upstream::host::{Host, HostAddress};

use crate::downstream::Protocol;

/// Timing points recorded during a request, as offsets from its start.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timings {
    pub last_downstream_rx: Option<Duration>,
    pub upstream_connect_start: Option<Duration>,
    pub upstream_connect_complete: Option<Duration>,
    pub first_upstream_tx: Option<Duration>,
    pub last_upstream_tx: Option<Duration>,
    pub first_upstream_rx: Option<Duration>,
    pub last_upstream_rx: Option<Duration>,
    pub first_downstream_tx: Option<Duration>,
    pub last_downstream_tx: Option<Duration>,
}

/// The record of one HTTP request.
#[derive(Debug)]
pub struct RequestInfo {
    pub start_time: SystemTime,
    pub start: Instant,
    pub end: Option<Instant>,
    pub timings: Timings,
    pub protocol: Protocol,
    pub connection_id: u64,
    /// The trusted client address (after XFF when `use_remote_address` is off).
    pub downstream_remote: Option<SocketAddr>,
    pub downstream_direct_remote: Option<SocketAddr>,
    pub downstream_local: Option<SocketAddr>,
    pub method: Method,
    /// `:path` after normalization (what routing and the upstream see).
    pub path: smol_str::SmolStr,
    pub authority: Option<smol_str::SmolStr>,
    pub scheme: &'static str,
    pub request_headers: Option<HeaderMap>,
    pub request_headers_bytes: u64,
    pub response_status: Option<http::StatusCode>,
    pub response_code_details: Option<&'static str>,
    pub response_flags: ResponseFlags,
    pub response_headers: Option<HeaderMap>,
    pub response_trailers: Option<HeaderMap>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub upstream_host: Option<Arc<Host>>,
    pub upstream_cluster: Option<Arc<str>>,
    pub upstream_local: Option<SocketAddr>,
    pub upstream_protocol: Option<Protocol>,
    pub upstream_transport_failure_reason: Option<String>,
    pub attempt_count: u32,
    pub route_name: Option<Arc<str>>,
    pub local_reply_body: Option<String>,
    pub request_id: Option<String>,
    pub is_health_check: bool,
    pub grpc_status: Option<i32>,
    /// Whether [`RequestInfo::mark`] records (off when nothing reads timings).
    pub record_timings: bool,
    /// `DownstreamEnd` once the stream is logged; `NotSet` before (local
    /// reply mappers), as in Envoy.
    pub access_log_type: AccessLogType,
}

impl RequestInfo {
    pub fn new(
        protocol: Protocol,
        connection_id: u64,
        remote: Option<SocketAddr>,
        local: Option<SocketAddr>,
    ) -> Self {
        RequestInfo {
            start_time: crate::clock::system_now(),
            start: crate::clock::now(),
            end: None,
            timings: Timings::default(),
            protocol,
            connection_id,
            downstream_remote: remote,
            downstream_direct_remote: remote,
            downstream_local: local,
            method: Method::GET,
            path: smol_str::SmolStr::default(),
            authority: None,
            scheme: "http",
            request_headers: None,
            request_headers_bytes: 0,
            response_status: None,
            response_code_details: None,
            response_flags: ResponseFlags::empty(),
            response_headers: None,
            response_trailers: None,
            bytes_received: 0,
            bytes_sent: 0,
            upstream_host: None,
            upstream_cluster: None,
            upstream_local: None,
            upstream_protocol: None,
            upstream_transport_failure_reason: None,
            attempt_count: 0,
            route_name: None,
            local_reply_body: None,
            request_id: None,
            is_health_check: false,
            grpc_status: None,
            record_timings: true,
            access_log_type: AccessLogType::NotSet,
        }
    }

    /// The record of the next pass of the same request after an internal
    /// redirect: same connection, request id and method, a new start.
    pub fn next_pass(&self) -> RequestInfo {
        let mut next = RequestInfo::new(
            self.protocol,
            self.connection_id,
            self.downstream_direct_remote,
            self.downstream_local,
        );
        next.downstream_remote = self.downstream_remote;
        next.method = self.method.clone();
        next.scheme = self.scheme;
        next.request_headers_bytes = self.request_headers_bytes;
        next.request_id = self.request_id.clone();
        next.bytes_received = self.bytes_received;
        next.record_timings = self.record_timings;
        next
    }

    /// The client went away before the response was complete (`DC`).
    pub fn downstream_disconnected(&mut self) {
        self.set_flag(ResponseFlag::DownstreamConnectionTermination);
        if self.response_code_details.is_none() || self.response_status.is_none() {
            self.response_code_details = Some("downstream_remote_disconnect");
        }
    }

    /// The time since the request started.
    pub fn elapsed(&self) -> Duration {
        crate::clock::elapsed(self.start)
    }

    pub fn set_flag(&mut self, flag: ResponseFlag) {
        self.response_flags.set(flag);
    }

    /// Records a timing point now.
    /// Records a timing point the first time it is reached, when something
    /// (an access log, a format) can read timings.
    pub fn mark(&mut self, point: fn(&mut Timings) -> &mut Option<Duration>) {
        if !self.record_timings {
            return;
        }
        let start = self.start;
        let slot = point(&mut self.timings);
        if slot.is_none() {
            *slot = Some(crate::clock::elapsed(start));
        }
    }
}

fn host_address(h: &Host) -> Address<'_> {
    match &h.address {
        HostAddress::Tcp(a) => Address::Ip(*a),
        HostAddress::Unix(p) => Address::Pipe(p.to_str().unwrap_or("")),
    }
}

fn proto(p: Protocol) -> rvoy_format::Protocol {
    match p {
        Protocol::Http10 => rvoy_format::Protocol::Http10,
        Protocol::Http11 => rvoy_format::Protocol::Http11,
        Protocol::Http2 => rvoy_format::Protocol::Http2,
    }
}

impl StreamInfo for RequestInfo {
    fn access_log_type(&self) -> AccessLogType {
        self.access_log_type
    }

    fn start_time(&self) -> Option<SystemTime> {
        Some(self.start_time)
    }

    fn duration(&self) -> Option<Duration> {
        Some(self.end.map_or_else(
            || crate::clock::elapsed(self.start),
            |e| e.duration_since(self.start),
        ))
    }

    fn timing(&self, point: TimePoint) -> Option<Duration> {
        let t = &self.timings;
        match point {
            TimePoint::LastDownstreamRxByteReceived => t.last_downstream_rx,
            TimePoint::UpstreamConnectStart => t.upstream_connect_start,
            TimePoint::UpstreamConnectComplete => t.upstream_connect_complete,
            TimePoint::FirstUpstreamTxByteSent => t.first_upstream_tx,
            TimePoint::LastUpstreamTxByteSent => t.last_upstream_tx,
            TimePoint::FirstUpstreamRxByteReceived | TimePoint::FirstUpstreamRxBodyByteReceived => {
                t.first_upstream_rx
            }
            TimePoint::LastUpstreamRxByteReceived => t.last_upstream_rx,
            TimePoint::FirstDownstreamTxByteSent => t.first_downstream_tx,
            TimePoint::LastDownstreamTxByteSent => t.last_downstream_tx,
            _ => None,
        }
    }

    fn request_headers(&self) -> Option<&HeaderMap> {
        self.request_headers.as_ref()
    }

    fn request_pseudo_header(&self, name: &PseudoHeader) -> Option<&str> {
        match name {
            // A request whose head never completed (a codec error) has none.
            PseudoHeader::Method => self.request_headers.as_ref().map(|_| self.method.as_str()),
            PseudoHeader::Path => Some(self.path.as_str()).filter(|p| !p.is_empty()),
            PseudoHeader::Authority => self.authority.as_deref(),
            PseudoHeader::Scheme => Some(self.scheme),
            _ => None,
        }
    }

    fn response_headers(&self) -> Option<&HeaderMap> {
        self.response_headers.as_ref()
    }

    fn response_pseudo_header(&self, name: &PseudoHeader) -> Option<&str> {
        match name {
            PseudoHeader::Status => self.response_status.as_ref().map(http::StatusCode::as_str),
            _ => None,
        }
    }

    fn response_trailers(&self) -> Option<&HeaderMap> {
        self.response_trailers.as_ref()
    }

    fn request_headers_bytes(&self) -> u64 {
        self.request_headers_bytes
    }

    fn local_reply_body(&self) -> &str {
        self.local_reply_body.as_deref().unwrap_or("")
    }

    fn protocol(&self) -> Option<rvoy_format::Protocol> {
        Some(proto(self.protocol))
    }

    fn upstream_protocol(&self) -> Option<rvoy_format::Protocol> {
        self.upstream_protocol.map(proto)
    }

    fn response_code(&self) -> Option<u16> {
        self.response_status.map(|s| s.as_u16())
    }

    fn response_code_details(&self) -> Option<&str> {
        self.response_code_details
    }

    fn response_flags(&self) -> ResponseFlags {
        self.response_flags
    }

    fn bytes_received(&self) -> u64 {
        self.bytes_received
    }

    fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }

    fn address(&self, kind: AddressKind) -> Option<Address<'_>> {
        match kind {
            AddressKind::DownstreamRemote => self.downstream_remote.map(Address::Ip),
            AddressKind::DownstreamDirectRemote => self.downstream_direct_remote.map(Address::Ip),
            AddressKind::DownstreamLocal | AddressKind::DownstreamDirectLocal => {
                self.downstream_local.map(Address::Ip)
            }
            AddressKind::UpstreamLocal => self.upstream_local.map(Address::Ip),
            AddressKind::UpstreamRemote | AddressKind::UpstreamHost => {
                self.upstream_host.as_deref().map(host_address)
            }
        }
    }

    fn upstream_host_name(&self) -> Option<&str> {
        self.upstream_host
            .as_deref()
            .map(|h| &*h.hostname)
            .filter(|h| !h.is_empty())
    }

    fn connection_id(&self) -> Option<u64> {
        Some(self.connection_id)
    }

    fn upstream_cluster_name(&self) -> Option<&str> {
        self.upstream_cluster.as_deref()
    }

    fn upstream_cluster_observability_name(&self) -> Option<&str> {
        self.upstream_cluster.as_deref()
    }

    fn upstream_request_attempt_count(&self) -> Option<u32> {
        (self.attempt_count > 0).then_some(self.attempt_count)
    }

    fn upstream_transport_failure_reason(&self) -> Option<&str> {
        self.upstream_transport_failure_reason.as_deref()
    }

    fn route_name(&self) -> Option<&str> {
        self.route_name.as_deref().filter(|n| !n.is_empty())
    }

    fn stream_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }
}
