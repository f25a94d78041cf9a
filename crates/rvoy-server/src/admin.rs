//! The admin server (Envoy's `/` endpoints), served from the main thread.
//!
//! One HTTP/1 server on `admin.address`. Like Envoy's admin (an HTTP
//! connection manager with one filter), it keeps the `listener.admin.*`,
//! `listener.admin.main_thread.*` and `http.admin.*` stats, writes
//! `admin.access_log` entries, and answers every endpoint of [`ENDPOINTS`]
//! with Envoy's path, methods, query parameters, content type and output
//! shape: a path is matched exactly (the query aside); a mutating endpoint
//! answers any other method than POST with 405; an unknown path gets 404 with
//! the command list. Bodies are sent chunked, as Envoy does.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use rvoy_http::AccessLogger;
use rvoy_http::stats::HcmStats;
use rvoy_model::address::Address;
use rvoy_stats::Counter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::server::{Server, ServerState};
use crate::snapshot::{ADMIN_LISTENER_SKIPPED_STATS, ListenerStats, ListenerWorkerStats};

/// `text/plain; charset=UTF-8`.
pub const TEXT: &str = "text/plain; charset=UTF-8";
/// `application/json`.
pub const JSON: &str = "application/json";
/// `text/html; charset=UTF-8`.
pub const HTML: &str = "text/html; charset=UTF-8";
/// `text/plain` (Envoy's `/config_dump` errors).
pub const TEXT_BARE: &str = "text/plain";

/// The type of an endpoint's query parameter (how the home page offers it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// A flag: present or not.
    Bool,
    /// Free text.
    Str,
    /// One of a list.
    Enum(&'static [&'static str]),
}

/// A documented query parameter.
#[derive(Clone, Copy, Debug)]
pub struct Param {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: ParamKind,
}

/// One admin endpoint, as Envoy's handler table declares it.
#[derive(Clone, Copy, Debug)]
pub struct Endpoint {
    pub path: &'static str,
    pub help: &'static str,
    /// Mutates server state: POST only.
    pub post: bool,
    pub params: &'static [Param],
}

const fn p(name: &'static str, help: &'static str, kind: ParamKind) -> Param {
    Param { name, help, kind }
}

const fn e(
    path: &'static str,
    help: &'static str,
    post: bool,
    params: &'static [Param],
) -> Endpoint {
    Endpoint {
        path,
        help,
        post,
        params,
    }
}

use ParamKind::{Bool, Enum, Str};

const YN: ParamKind = Enum(&["y", "n"]);
const STATS_FILTER: &str = "Regular expression (Google re2) for filtering stats";
const USED_ONLY: &str = "Only include stats that have been written by system since restart";

/// Envoy 1.40's admin endpoints, in the (byte) order `/help` lists them.
pub static ENDPOINTS: &[Endpoint] = &[
    e("/", "Admin home page", false, &[]),
    e(
        "/allocprofiler",
        "enable/disable the allocation profiler (if supported)",
        true,
        &[p("enable", "enable/disable the allocation profiler", YN)],
    ),
    e("/certs", "print certs on machine", false, &[]),
    e(
        "/clusters",
        "upstream cluster status",
        false,
        &[p(
            "filter",
            "Regular expression (Google re2) for filtering clusters by name",
            Str,
        )],
    ),
    e(
        "/config_dump",
        "dump current Envoy configs",
        false,
        &[
            p("resource", "The resource to dump", Str),
            p(
                "mask",
                "The mask to apply. When both resource and mask are specified, the mask is applied to every element in the desired repeated field so that only a subset of fields are returned. The mask is parsed as a Protobuf::FieldMask",
                Str,
            ),
            p(
                "name_regex",
                "Dump only the currently loaded configurations whose names match the specified regex. Can be used with both resource and mask query parameters.",
                Str,
            ),
            p(
                "include_eds",
                "Dump currently loaded configuration including EDS. See the response definition for more information",
                Bool,
            ),
        ],
    ),
    e(
        "/contention",
        "dump current Envoy mutex contention stats (if enabled)",
        false,
        &[],
    ),
    e(
        "/cpuprofiler",
        "enable/disable the CPU profiler",
        true,
        &[p("enable", "enables the CPU profiler", YN)],
    ),
    e(
        "/drain_listeners",
        "drain listeners",
        true,
        &[
            p(
                "graceful",
                "When draining listeners, enter a graceful drain period prior to closing listeners. This behaviour and duration is configurable via server options or CLI",
                Bool,
            ),
            p(
                "skip_exit",
                "When draining listeners, drain the connections but never stop the listeners. The graceful parameter has no effect when this is set, since the drain period only delays stopping the listeners",
                Bool,
            ),
            p(
                "inboundonly",
                "Drains all inbound listeners. traffic_direction field in envoy_v3_api_msg_config.listener.v3.Listener is used to determine whether a listener is inbound or outbound.",
                Bool,
            ),
        ],
    ),
    e(
        "/healthcheck/fail",
        "cause the server to fail health checks",
        true,
        &[],
    ),
    e(
        "/healthcheck/ok",
        "cause the server to pass health checks",
        true,
        &[],
    ),
    e(
        "/heap_dump",
        "dump current Envoy heap (if supported)",
        false,
        &[],
    ),
    e(
        "/heapprofiler",
        "enable/disable the heap profiler",
        true,
        &[p("enable", "enable/disable the heap profiler", YN)],
    ),
    e("/help", "print out list of admin commands", false, &[]),
    e(
        "/hot_restart_version",
        "print the hot restart compatibility version",
        false,
        &[],
    ),
    e(
        "/init_dump",
        "dump current Envoy init manager information (experimental)",
        false,
        &[p(
            "mask",
            "The desired component to dump unready targets. The mask is parsed as a Protobuf::FieldMask. For example, get the unready targets of all listeners with /init_dump?mask=listener`",
            Str,
        )],
    ),
    e(
        "/listeners",
        "print listener info",
        false,
        &[p("format", "File format to use", Enum(&["text", "json"]))],
    ),
    e(
        "/logging",
        "query/change logging levels",
        true,
        &[
            p(
                "paths",
                "Change multiple logging levels by setting to <logger_name1>:<desired_level1>,<logger_name2>:<desired_level2>. If fine grain logging is enabled, use __FILE__ or a glob experision as the logger name. For example, source/common*:warning",
                Str,
            ),
            p(
                "group",
                "Change given logger group to desired level, set to <logger_group_name>:<desired_level>. logger_group_name must be a logger name.",
                Str,
            ),
            p(
                "level",
                "desired logging level, this will change all loggers's level",
                Enum(&[
                    "", "trace", "debug", "info", "warning", "error", "critical", "off",
                ]),
            ),
        ],
    ),
    e("/memory", "print current allocation/heap usage", false, &[]),
    e("/memory/tcmalloc", "print TCMalloc stats", false, &[]),
    e(
        "/peak_heap_dump",
        "dump peak Envoy heap (if supported)",
        false,
        &[],
    ),
    e("/quitquitquit", "exit the server", true, &[]),
    e(
        "/ready",
        "print server state, return 200 if LIVE, otherwise return 503",
        false,
        &[],
    ),
    e("/reopen_logs", "reopen access logs", true, &[]),
    e("/reset_counters", "reset all counters to zero", true, &[]),
    e("/runtime", "print runtime values", false, &[]),
    e(
        "/runtime_modify",
        "Adds or modifies runtime values as passed in query parameters. To delete a previously added key, use an empty string as the value. Note that deletion only applies to overrides added via this endpoint; values loaded from disk can be modified via override but not deleted. E.g. ?key1=value1&key2=value2...",
        true,
        &[],
    ),
    e(
        "/server_info",
        "print server version/status information",
        false,
        &[],
    ),
    e(
        "/stats",
        "print server stats",
        false,
        &[
            p("usedonly", USED_ONLY, Bool),
            p("filter", STATS_FILTER, Str),
            p("invert_filter", "Invert the filter regex", Bool),
            p(
                "format",
                "Format to use",
                Enum(&["html", "active-html", "text", "json"]),
            ),
            p(
                "type",
                "Stat types to include.",
                Enum(&["All", "Counters", "Histograms", "Gauges", "TextReadouts"]),
            ),
            p(
                "histogram_buckets",
                "Histogram bucket display mode",
                Enum(&["cumulative", "disjoint", "detailed", "summary"]),
            ),
        ],
    ),
    e(
        "/stats/prometheus",
        "print server stats in prometheus format",
        false,
        &[
            p("usedonly", USED_ONLY, Bool),
            p(
                "text_readouts",
                "Render text_readouts as new gaugues with value 0 (increases Prometheus data size)",
                Bool,
            ),
            p("filter", STATS_FILTER, Str),
            p("invert_filter", "Invert the filter regex", Bool),
            p(
                "histogram_buckets",
                "Histogram bucket display mode",
                Enum(&["cumulative", "summary"]),
            ),
        ],
    ),
    e(
        "/stats/recentlookups",
        "Show recent stat-name lookups",
        false,
        &[],
    ),
    e(
        "/stats/recentlookups/clear",
        "clear list of stat-name lookups and counter",
        true,
        &[],
    ),
    e(
        "/stats/recentlookups/disable",
        "disable recording of reset stat-name lookup names",
        true,
        &[],
    ),
    e(
        "/stats/recentlookups/enable",
        "enable recording of reset stat-name lookup names",
        true,
        &[],
    ),
];

/// The endpoint serving `path` (exact match).
pub fn endpoint(path: &str) -> Option<&'static Endpoint> {
    ENDPOINTS.iter().find(|e| e.path == path)
}

/// Envoy's `/help` text.
pub fn help_text() -> String {
    let mut out = String::from("admin commands are:\n");
    for ep in ENDPOINTS {
        let post = if ep.post { " (POST)" } else { "" };
        out.push_str(&format!("  {}{post}: {}\n", ep.path, ep.help));
        for param in ep.params {
            out.push_str(&format!("      {}: {}", param.name, param.help));
            if let Enum(choices) = param.kind {
                out.push_str(&format!("; One of ({})", choices.join(", ")));
            }
            out.push('\n');
        }
    }
    out
}

/// An admin response before the common headers are added.
#[derive(Debug)]
pub struct AdminResponse {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: Bytes,
    /// A body rendered while it is sent, after `body` (`/stats/prometheus`).
    pub stream: Option<BodyStream>,
    /// Envoy's `/config_dump` errors add a second `x-content-type-options`
    /// header before `content-type`.
    pub extra_nosniff: bool,
}

impl AdminResponse {
    pub fn text(status: StatusCode, body: impl Into<String>) -> Self {
        Self::with_type(status, TEXT, body)
    }

    pub fn json(body: impl Into<String>) -> Self {
        Self::with_type(StatusCode::OK, JSON, body)
    }

    pub fn with_type(
        status: StatusCode,
        content_type: &'static str,
        body: impl Into<String>,
    ) -> Self {
        AdminResponse {
            status,
            content_type,
            body: Bytes::from(body.into()),
            stream: None,
            extra_nosniff: false,
        }
    }

    /// A response whose body is produced chunk by chunk as it is sent.
    pub fn streamed(status: StatusCode, content_type: &'static str, stream: BodyStream) -> Self {
        AdminResponse {
            status,
            content_type,
            body: Bytes::new(),
            stream: Some(stream),
            extra_nosniff: false,
        }
    }

    /// Renders the rest of the stream, if any, into `body`.
    pub fn collect_stream(&mut self) {
        if let Some(stream) = self.stream.take() {
            let mut all = Vec::from(std::mem::take(&mut self.body));
            for chunk in stream.0 {
                all.extend_from_slice(&chunk);
            }
            self.body = Bytes::from(all);
        }
    }
}

/// The chunks of a body rendered while it is sent: each is produced when
/// the connection can take more, so a large body (a 128 MB
/// `/stats/prometheus`) is never held in memory whole and its first bytes
/// leave before the rest is rendered.
pub struct BodyStream(pub Box<dyn Iterator<Item = Bytes>>);

impl std::fmt::Debug for BodyStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BodyStream")
    }
}

/// A response body sent with chunked transfer encoding (hyper picks
/// chunked when the size is not known), as Envoy's admin does: a body in
/// one piece, then the chunks of a stream.
pub struct ChunkedBody {
    full: Option<Bytes>,
    stream: Option<BodyStream>,
}

impl ChunkedBody {
    pub fn new(body: Bytes) -> Self {
        ChunkedBody {
            full: Some(body),
            stream: None,
        }
    }

    pub fn with_stream(body: Bytes, stream: Option<BodyStream>) -> Self {
        ChunkedBody {
            full: Some(body),
            stream,
        }
    }
}

impl hyper::body::Body for ChunkedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(b) = this.full.take().filter(|b| !b.is_empty()) {
            return Poll::Ready(Some(Ok(Frame::data(b))));
        }
        let next = this.stream.as_mut().and_then(|s| s.0.next());
        if next.is_none() {
            this.stream = None;
        }
        Poll::Ready(next.map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        false
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// The admin listener's stats and access logs.
#[derive(Debug)]
pub struct AdminRuntime {
    /// The machine's address Envoy's admin HCM (`use_remote_address`)
    /// appends to `x-forwarded-for` for loopback peers.
    pub machine_address: Option<std::net::IpAddr>,
    pub http: HcmStats,
    pub listener: ListenerStats,
    pub main_thread: ListenerWorkerStats,
    pub access_logs: Vec<AccessLogger>,
}

impl AdminRuntime {
    /// Registers `listener.admin.*` and `http.admin.*`.
    pub fn new(store: &rvoy_stats::Store, access_logs: Vec<AccessLogger>) -> Self {
        let root = store.scope("");
        let listener_scope = root.scope("listener.admin.");
        let listener = ListenerStats::new_without(&listener_scope, ADMIN_LISTENER_SKIPPED_STATS);
        listener.downstream_pre_cx_active.set(0);
        AdminRuntime {
            machine_address: crate::snapshot::machine_address(false),
            http: HcmStats::admin(&root, &listener_scope),
            listener,
            main_thread: ListenerWorkerStats::new(&listener_scope.scope("main_thread.")),
            access_logs,
        }
    }
}

/// Counts the bytes read and written on a connection into two counters.
struct CountingIo<T> {
    inner: T,
    rx: Counter,
    tx: Counter,
}

impl<T: AsyncRead + Unpin> AsyncRead for CountingIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        if n > 0 {
            self.rx.add(n as u64);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CountingIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.tx.add(*n as u64);
        }
        r
    }

    // Vectored writes let hyper queue body chunks and send them with
    // `writev` instead of copying them into one flat buffer first (for a
    // 48 MB `/stats` or a streamed 128 MB `/stats/prometheus`).
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &r {
            self.tx.add(*n as u64);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Binds the admin listener and starts serving; returns the bound address.
pub async fn start(
    server: Arc<Server>,
    admin: &rvoy_model::bootstrap::Admin,
) -> std::io::Result<SocketAddr> {
    let addr = match &admin.address {
        Address::Ip { addr, .. } => *addr,
        Address::Pipe { .. } => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "admin on a pipe address is not supported by rvoy",
            ));
        }
    };
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr).map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot bind admin address '{addr}': {e}"))
    })?;
    let listener = socket.listen(1024)?;
    let bound = listener.local_addr()?;
    tokio::task::spawn_local(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(a) => a,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let local = stream.local_addr().ok();
            let server = server.clone();
            tokio::task::spawn_local(serve_connection(server, stream, peer, local));
        }
    });
    Ok(bound)
}

async fn serve_connection(
    server: Arc<Server>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    local: Option<SocketAddr>,
) {
    let rt = server.admin.clone();
    let started = Instant::now();
    let l = &rt.listener;
    let h = &rt.http.hcm;
    l.connections_accepted_per_socket_event.record(1);
    l.downstream_cx_total.inc();
    l.downstream_cx_active.inc();
    rt.main_thread.downstream_cx_total.inc();
    rt.main_thread.downstream_cx_active.inc();
    h.downstream_cx_total.inc();
    h.downstream_cx_active.inc();
    h.downstream_cx_http1_total.inc();
    h.downstream_cx_http1_active.inc();
    let io = CountingIo {
        inner: stream,
        rx: h.downstream_cx_rx_bytes_total,
        tx: h.downstream_cx_tx_bytes_total,
    };
    let conn_server = server.clone();
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let server = conn_server.clone();
        async move { Ok::<_, Infallible>(handle(server, req, Some(peer), local).await) }
    });
    let result = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .await;
    if result.is_err() {
        h.downstream_cx_protocol_error.inc();
    }
    let length = started.elapsed().as_millis() as u64;
    l.downstream_cx_active.dec();
    l.downstream_cx_destroy.inc();
    l.downstream_cx_length_ms.record(length);
    rt.main_thread.downstream_cx_active.dec();
    h.downstream_cx_active.dec();
    h.downstream_cx_http1_active.dec();
    h.downstream_cx_destroy.inc();
    h.downstream_cx_destroy_remote.inc();
    h.downstream_cx_length_ms.record(length);
}

/// Splits a query string into decoded (key, value) pairs, first occurrence wins.
pub fn query_params(query: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (k, v) in query_pairs(query) {
        out.entry(k).or_insert(v);
    }
    out
}

/// Decoded (key, value) pairs in order (`+` stays a plus, as in Envoy).
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (
                rvoy_stats::render::params::percent_decode(k),
                rvoy_stats::render::params::percent_decode(v),
            )
        })
        .collect()
}

async fn handle(
    server: Arc<Server>,
    req: Request<Incoming>,
    peer: Option<SocketAddr>,
    local: Option<SocketAddr>,
) -> Response<ChunkedBody> {
    let rt = server.admin.clone();
    let hcm = &rt.http.hcm;
    hcm.downstream_rq_total.inc();
    let protocol = match req.version() {
        http::Version::HTTP_10 => rvoy_http::downstream::Protocol::Http10,
        _ => rvoy_http::downstream::Protocol::Http11,
    };
    if protocol == rvoy_http::downstream::Protocol::Http11 {
        hcm.downstream_rq_http1_total.inc();
    }
    hcm.downstream_rq_active.inc();
    let mut info = rvoy_http::request_info::RequestInfo::new(protocol, 0, peer, local);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    info.method = method.clone();
    info.path = req
        .uri()
        .path_and_query()
        .map_or_else(|| path.as_str().into(), |p| p.as_str().into());
    info.authority = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(Into::into);
    let request_headers = req.headers().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    info.bytes_received = body.len() as u64;
    let mut resp = dispatch(&server, &method, &path, &query, &request_headers, &body).await;
    if !rt.access_logs.is_empty() {
        // The access log entry gives the bytes sent: render all of it now.
        resp.collect_stream();
    }

    let mut headers = HeaderMap::new();
    if resp.extra_nosniff {
        headers.append(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
    }
    headers.append("content-type", HeaderValue::from_static(resp.content_type));
    headers.append(
        "cache-control",
        HeaderValue::from_static("no-cache, max-age=0"),
    );
    headers.append(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(std::time::SystemTime::now())) {
        headers.append("date", v);
    }
    headers.append("server", HeaderValue::from_static("envoy"));

    let code = resp.status.as_u16();
    rt.http
        .response_code(&rvoy_stats::Recorder::default(), code);
    hcm.downstream_rq_completed.inc();
    rt.http.listener.downstream_rq_completed.inc();
    hcm.downstream_rq_active.dec();
    hcm.downstream_rq_time
        .record(info.start.elapsed().as_millis() as u64);
    if !rt.access_logs.is_empty() {
        let mut request_headers = request_headers;
        // The admin HCM uses the remote address: x-forwarded-for gets the
        // peer, or the machine's address for a loopback peer.
        let xff = match peer.map(|p| p.ip()) {
            Some(ip) if ip.is_loopback() => rt.machine_address.or(Some(ip)),
            other => other,
        };
        if let Some(Ok(v)) = xff.map(|ip| HeaderValue::from_str(&ip.to_string())) {
            request_headers.append("x-forwarded-for", v);
        }
        info.request_headers = Some(request_headers);
        info.response_status = Some(resp.status);
        info.response_code_details = Some("admin_filter_response");
        info.response_headers = Some(headers.clone());
        info.bytes_sent = resp.body.len() as u64;
        info.end = Some(Instant::now());
        rvoy_http::access_log::emit(&rt.access_logs, &mut info);
    }

    let mut response = Response::new(ChunkedBody::with_stream(resp.body, resp.stream));
    *response.status_mut() = resp.status;
    *response.headers_mut() = headers;
    response
}

/// Answers one admin request.
pub async fn dispatch(
    server: &Arc<Server>,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> AdminResponse {
    let Some(ep) = endpoint(path) else {
        return AdminResponse::text(
            StatusCode::NOT_FOUND,
            format!("invalid path. {}", help_text()),
        );
    };
    if ep.post && method != Method::POST {
        rvoy_log::error!(
            rvoy_log::Component::Admin,
            "admin path \"{}\" mutates state, method={} rather than POST",
            ep.path,
            method
        );
        return AdminResponse::text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("Method {method} not allowed, POST required."),
        );
    }
    let params = query_params(query);
    use crate::admin_pages as pages;
    match path {
        "/" => AdminResponse::with_type(StatusCode::OK, HTML, crate::admin_html::home()),
        "/help" => AdminResponse::text(StatusCode::OK, help_text()),
        "/ready" => {
            let state = effective_state(server);
            let status = if state == ServerState::Live {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            AdminResponse::text(status, format!("{}\n", state.as_str()))
        }
        "/server_info" => AdminResponse::json(pages::server_info(server, effective_state(server))),
        "/stats" => pages::stats(server, query),
        "/stats/prometheus" => pages::prometheus(server, query),
        "/stats/recentlookups" => pages::recent_lookups(server),
        "/stats/recentlookups/clear" => {
            server.recent_lookups_clear();
            ok()
        }
        "/stats/recentlookups/enable" => {
            server.recent_lookups_enabled.store(true, Ordering::Relaxed);
            ok()
        }
        "/stats/recentlookups/disable" => {
            server
                .recent_lookups_enabled
                .store(false, Ordering::Relaxed);
            ok()
        }
        "/logging" => pages::logging(query),
        "/healthcheck/fail" => {
            server.health_failed.store(true, Ordering::Relaxed);
            ok()
        }
        "/healthcheck/ok" => {
            server.health_failed.store(false, Ordering::Relaxed);
            ok()
        }
        "/quitquitquit" => {
            // Let the response go out before the main loop ends.
            let s = server.clone();
            tokio::task::spawn_local(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                s.request_shutdown();
            });
            ok()
        }
        "/reset_counters" => {
            server.store.reset_counters();
            server.recent_lookups_clear();
            ok()
        }
        "/hot_restart_version" => {
            AdminResponse::text(StatusCode::OK, crate::cli::HOT_RESTART_VERSION)
        }
        "/reopen_logs" => {
            server.logs.reopen_all();
            let _ = rvoy_log::reopen();
            ok()
        }
        "/clusters" => pages::clusters(server, &params),
        "/listeners" => pages::listeners(server, &params),
        "/config_dump" => crate::admin_config_dump::handle(server, &params),
        "/init_dump" => pages::init_dump(&params),
        "/memory" => AdminResponse::json(pages::memory()),
        "/memory/tcmalloc" => {
            AdminResponse::with_type(StatusCode::OK, TEXT_BARE, pages::memory_text())
        }
        "/runtime" => AdminResponse::json(pages::runtime(server)),
        "/runtime_modify" => pages::runtime_modify(server, &params, headers, body),
        "/certs" => crate::admin_certs::handle(server),
        "/contention" => AdminResponse::text(
            StatusCode::OK,
            "Mutex contention tracing is not enabled. To enable, run Envoy with flag --enable-mutex-tracing.",
        ),
        "/cpuprofiler" | "/allocprofiler" => pages::profiler(&params, path),
        "/heapprofiler" => AdminResponse::text(
            StatusCode::NOT_IMPLEMENTED,
            "The current build does not support heap profiler",
        ),
        "/heap_dump" | "/peak_heap_dump" => AdminResponse::text(
            StatusCode::NOT_IMPLEMENTED,
            "Heap dump is not supported by this build (rvoy does not use tcmalloc)",
        ),
        "/drain_listeners" => pages::drain_listeners(server, &params),
        other => AdminResponse::text(
            StatusCode::NOT_IMPLEMENTED,
            format!("{other} is not supported by rvoy\n"),
        ),
    }
}

fn ok() -> AdminResponse {
    AdminResponse::text(StatusCode::OK, "OK\n")
}

/// `/ready` and `/server_info` report DRAINING while health checks fail.
pub fn effective_state(server: &Server) -> ServerState {
    if server.health_failed.load(Ordering::Relaxed) || server.draining.load(Ordering::Relaxed) {
        return match server.state() {
            ServerState::Live => ServerState::Draining,
            other => other,
        };
    }
    server.state()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_is_envoys() {
        assert_eq!(help_text(), include_str!("admin_help.txt"));
    }

    #[test]
    fn endpoints_are_sorted_and_unique() {
        for w in ENDPOINTS.windows(2) {
            assert!(w[0].path < w[1].path, "{} {}", w[0].path, w[1].path);
        }
        assert!(endpoint("/ready").is_some());
        assert!(endpoint("/ready/").is_none());
        assert!(endpoint("/logging").is_some_and(|e| e.post));
    }

    #[test]
    fn query_pairs_decode() {
        let q = query_pairs("a=1&b=%2Fx&c&a=2");
        assert_eq!(q[1], ("b".to_owned(), "/x".to_owned()));
        assert_eq!(q[2], ("c".to_owned(), String::new()));
        assert_eq!(
            query_params("a=1&a=2").get("a").map(String::as_str),
            Some("1")
        );
    }

    #[test]
    fn chunked_body_has_no_size() {
        use hyper::body::Body;
        let b = ChunkedBody::new(Bytes::from_static(b"x"));
        assert!(b.size_hint().exact().is_none());
        assert!(!b.is_end_stream());
    }
}
