//! One request through the connection manager (Envoy's `ActiveStream`):
//! request validation, path normalization, forwarding headers, `100-continue`,
//! route selection, then a direct response, a redirect, or the router; and at
//! the end, response stats and access logs.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{EXPECT, HOST};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use rvoy_format::ResponseFlag;
use rvoy_model::hcm::UnderscoresAction;
use rvoy_model::route::{
    self, Redirect, RedirectPath, Route, RouteAction, RouteConfig, VirtualHost,
};

use crate::context::{HttpListenerRuntime, WorkerContext};
use crate::downstream::{CloseStage, Downstream, Protocol};
use crate::filter;
use crate::forwarding::{self, Peer};
use crate::headers::apply_mutations;
use crate::local_reply::{self, LocalReply};
use crate::path::{self, Normalized};
use crate::request_info::RequestInfo;
use crate::router;
use crate::stream_timers::{StreamTimeout, StreamTimers, Timed};
use smol_str::SmolStr;

/// A request head as the codec delivered it.
#[derive(Debug)]
pub struct Request {
    pub method: Method,
    /// The request target or `:path`. `SmolStr`: the short paths and
    /// authorities of most requests are kept inline, and the copies the
    /// request record and the router keep cost no allocation.
    pub path: SmolStr,
    /// `:authority` (HTTP/2) or `Host` (HTTP/1, also kept in `headers`).
    pub authority: Option<SmolStr>,
    pub scheme: Option<String>,
    pub headers: HeaderMap,
    pub protocol: Protocol,
    pub expect_continue: bool,
    /// The request has a body to read.
    pub has_body: bool,
    pub head_bytes: u64,
    /// The request body already read, replayed after an internal redirect.
    pub replay_body: Option<Bytes>,
    /// Internal redirects this request has followed.
    pub internal_redirects: u32,
}

impl rvoy_model::matcher::PseudoHeaders for Request {
    fn pseudo(&self, p: rvoy_model::matcher::Pseudo) -> Option<&str> {
        use rvoy_model::matcher::Pseudo;
        match p {
            Pseudo::Method => Some(self.method.as_str()),
            Pseudo::Path => Some(self.path.as_str()),
            Pseudo::Authority => self.authority.as_deref(),
            Pseudo::Scheme => Some(self.scheme.as_deref().unwrap_or_else(|| {
                self.headers
                    .get(&forwarding::names::X_FORWARDED_PROTO)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("http")
            })),
            Pseudo::Status | Pseudo::Protocol => None,
        }
    }
}

/// The connection a request arrived on.
#[derive(Clone, Copy, Debug)]
pub struct ConnInfo {
    pub id: u64,
    pub remote: Option<SocketAddr>,
    pub local: Option<SocketAddr>,
    pub tls: bool,
    /// When it was accepted: the start of the connection manager's
    /// connection (its idle timer, `downstream_cx_length_ms`).
    pub accepted: std::time::Instant,
}

/// How the stream ended, for the connection.
#[derive(Debug, Default, Clone, Copy)]
pub struct StreamOutcome {
    /// Close the connection after this response.
    pub close: bool,
    /// The response was not completed (reset mid-body): close without delay.
    pub reset: bool,
    /// The router followed an internal redirect: the request (rewritten in
    /// place) goes through routing again.
    pub redirected: bool,
}

/// Runs one request to completion.
#[allow(clippy::manual_async_fn)] // an `async move` block on purpose, see the body
pub fn handle<D: Downstream>(
    ds: &mut D,
    mut req: Request,
    rt: &Arc<HttpListenerRuntime>,
    worker: &Rc<WorkerContext>,
    conn: &ConnInfo,
) -> impl std::future::Future<Output = StreamOutcome> {
    // An `async move` block, not an `async fn`: the latter keeps a second
    // copy of its arguments in the future (rust-lang/rust#62958), written
    // on every request.
    async move {
        let stats = &rt.stats.hcm;
        let rec = &worker.stats;
        rec.inc(stats.downstream_rq_total);
        rec.gauge_inc(stats.downstream_rq_active);
        match req.protocol {
            Protocol::Http2 => rec.inc(stats.downstream_rq_http2_total),
            _ => rec.inc(stats.downstream_rq_http1_total),
        }
        let mut info = RequestInfo::new(req.protocol, conn.id, conn.remote, conn.local);
        info.record_timings = rt.formats_stream_info();
        let stream_id = worker.next_id();
        rvoy_log::stream_log!(
            rvoy_log::Component::Http,
            rvoy_log::Level::Debug,
            conn.id,
            stream_id,
            "request headers complete (end_stream={}):\n':authority', '{}'\n':path', '{}'\n':method', '{}'",
            !req.has_body,
            req.authority.as_deref().unwrap_or(""),
            req.path,
            req.method
        );
        info.method = req.method.clone();
        info.request_headers_bytes = req.head_bytes;
        info.scheme = if conn.tls { "https" } else { "http" };
        let hcm = &rt.hcm;
        let grpc = local_reply::is_grpc_request(&req.headers);
        let timers = Rc::new(StreamTimers::new(
            hcm.stream_idle_timeout,
            hcm.request_timeout,
            hcm.common.max_stream_duration,
            !req.has_body,
        ));
        let result = {
            let mut timed = Timed {
                inner: &mut *ds,
                timers: timers.clone(),
            };
            let stream =
                std::pin::pin!(run(&mut timed, &mut req, &mut info, rt, worker, conn, grpc));
            timers.run(stream, &worker.sleeps).await
        };
        if info.request_headers.is_none() {
            info.request_headers = Some(std::mem::take(&mut req.headers));
        }
        let outcome = match result {
            Ok(outcome) => {
                if info.upstream_host.is_some() {
                    ds.answered_later();
                }
                outcome
            }
            Err(kind) => {
                ds.answered_later();
                on_stream_timeout(ds, kind, &timers, &mut info, rt, worker, grpc).await
            }
        };
        info.end = Some(crate::clock::now());
        info.bytes_received = ds.bytes_received();
        info.bytes_sent = ds.bytes_sent();
        if info.request_headers.is_none() {
            info.request_headers = Some(std::mem::take(&mut req.headers));
        }
        rec.gauge_dec(stats.downstream_rq_active);
        if let Some(code) = info.response_status {
            rt.stats.response_code(rec, code.as_u16());
            rec.inc(stats.downstream_rq_completed);
            rec.inc(rt.stats.listener.downstream_rq_completed);
        }
        rec.record(stats.downstream_rq_time, info.elapsed().as_millis() as u64);
        crate::access_log::emit(&rt.access_logs, &mut info);
        rvoy_log::stream_log!(
            rvoy_log::Component::Http,
            rvoy_log::Level::Debug,
            conn.id,
            stream_id,
            "encoding headers via codec (end_stream={}):\n':status', '{}'",
            outcome.reset,
            info.response_status.map_or(0, |s| s.as_u16())
        );
        // The heads' maps serve the next requests' heads.
        if let Some(h) = info.request_headers.take() {
            crate::header_pool::put(h);
        }
        if let Some(h) = info.response_headers.take() {
            crate::header_pool::put(h);
        }
        outcome
    }
}

/// `grpc`: the request came from a gRPC client (its local replies are gRPC).
#[allow(clippy::manual_async_fn)] // an `async move` block on purpose, see the body
fn run<D: Downstream>(
    ds: &mut D,
    req: &mut Request,
    info: &mut RequestInfo,
    rt: &Arc<HttpListenerRuntime>,
    worker: &Rc<WorkerContext>,
    conn: &ConnInfo,
    grpc: bool,
) -> impl std::future::Future<Output = StreamOutcome> {
    // An `async move` block, not an `async fn`: the latter keeps a second
    // copy of its arguments in the future (rust-lang/rust#62958), written
    // on every request.
    async move {
        let hcm = &rt.hcm;

        // HTTP/1.0 and Host handling (Envoy's codec and HCM checks).
        if req.protocol == Protocol::Http10 && !hcm.http1.accept_http_10 {
            info.set_flag(ResponseFlag::DownstreamProtocolError);
            ds.use_http11_status_line();
            let reply = LocalReply::new(
                StatusCode::UPGRADE_REQUIRED,
                "Upgrade Required",
                "low_version",
            );
            return send_local(ds, reply, info, rt, worker, true, false).await;
        }
        ds.close_request_counts(CloseStage::VersionAccepted);
        if req.authority.is_none() {
            if req.protocol == Protocol::Http10
                && let Some(h) = &hcm.http1.default_host_for_http_10
            {
                req.authority = Some(h.as_str().into());
            }
            if req.authority.is_none() {
                info.set_flag(ResponseFlag::DownstreamProtocolError);
                let reply =
                    LocalReply::new(StatusCode::BAD_REQUEST, Bytes::new(), "missing_host_header");
                return send_local(ds, reply, info, rt, worker, true, false).await;
            }
        }

        // Headers with underscores.
        if hcm.common.headers_with_underscores != UnderscoresAction::Allow {
            let offending: Vec<http::HeaderName> = req
                .headers
                .keys()
                .filter(|k| k.as_str().contains('_'))
                .cloned()
                .collect();
            if !offending.is_empty() {
                if hcm.common.headers_with_underscores == UnderscoresAction::RejectRequest {
                    rt.stats
                        .http1
                        .requests_rejected_with_underscores_in_headers
                        .inc();
                    info.set_flag(ResponseFlag::DownstreamProtocolError);
                    let reply = LocalReply::new(
                        StatusCode::BAD_REQUEST,
                        "Bad Request",
                        "unexpected_underscore",
                    );
                    return send_local(ds, reply, info, rt, worker, true, false).await;
                }
                for k in offending {
                    req.headers.remove(&k);
                    rt.stats.http1.dropped_headers_with_underscores.inc();
                }
            }
        }

        // Path: absolute form, then normalization.
        if !req.path.starts_with('/') {
            let scheme_len = ["http://", "https://"].iter().find_map(|s| {
                req.path
                    .get(..s.len())
                    .filter(|p| p.eq_ignore_ascii_case(s))
                    .map(str::len)
            });
            if let Some(rest) = scheme_len.map(|n| &req.path[n..]) {
                let (authority, path) = match rest.find('/') {
                    Some(i) => (&rest[..i], &rest[i..]),
                    None => (rest, "/"),
                };
                req.authority = Some(authority.into());
                req.path = path.into();
            } else if req.method != Method::CONNECT {
                // `OPTIONS *` too: Envoy's connection manager only takes paths.
                info.path = req.path.clone();
                rt.stats.hcm.downstream_rq_non_relative_path.inc();
                info.set_flag(ResponseFlag::DownstreamProtocolError);
                let reply = LocalReply::new(
                    StatusCode::NOT_FOUND,
                    Bytes::new(),
                    "absolute_path_rejected",
                );
                return send_local(ds, reply, info, rt, worker, false, grpc).await;
            }
        }
        if path::is_active(hcm.normalize_path, hcm.merge_slashes, hcm.escaped_slashes) {
            match path::normalize(
                &req.path,
                hcm.normalize_path,
                hcm.merge_slashes,
                hcm.escaped_slashes,
            ) {
                Normalized::Path(p) => req.path = p.into(),
                Normalized::Reject => {
                    rt.stats.hcm.downstream_rq_failed_path_normalization.inc();
                    info.set_flag(ResponseFlag::DownstreamProtocolError);
                    let reply = LocalReply::new(
                        StatusCode::BAD_REQUEST,
                        "Bad Request",
                        "path_normalization_failed",
                    );
                    return send_local(ds, reply, info, rt, worker, false, grpc).await;
                }
                Normalized::Redirect(p) => {
                    rt.stats
                        .hcm
                        .downstream_rq_redirected_with_normalized_path
                        .inc();
                    let mut reply = LocalReply::new(
                        StatusCode::TEMPORARY_REDIRECT,
                        Bytes::new(),
                        "path_normalization_redirect",
                    );
                    if let Ok(v) = HeaderValue::from_str(&p) {
                        reply.headers.insert(http::header::LOCATION, v);
                    }
                    return send_local(ds, reply, info, rt, worker, false, grpc).await;
                }
            }
        }
        info.path = req.path.clone();
        info.authority = req.authority.clone();
        ds.close_request_counts(CloseStage::PathAccepted);

        // Forwarding headers, request id.
        let peer = Peer {
            remote: conn.remote,
            tls: conn.tls,
            machine_address: rt.machine_address,
        };
        let route_config = hcm.route_config.clone();
        let fwd = forwarding::mutate_request(
            &mut req.headers,
            &peer,
            hcm,
            &route_config.internal_only_headers,
            forwarding::new_uuid,
        );
        if fwd.remote.is_some() {
            info.downstream_remote = fwd.remote;
        }
        info.request_id = req
            .headers
            .get(&forwarding::names::X_REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if req.expect_continue && !hcm.proxy_100_continue {
            req.headers.remove(EXPECT);
            if ds.send_continue().await.is_err() {
                return StreamOutcome {
                    close: true,
                    reset: true,
                    redirected: false,
                };
            }
        }

        loop {
            let outcome = route_request(ds, req, info, rt, worker, &route_config, &fwd, grpc).await;
            if !outcome.redirected {
                return outcome;
            }
            // Envoy logs each pass of an internally redirected request, with
            // the rewritten request and the upstream's 3xx.
            info.path = req.path.clone();
            info.authority = req.authority.clone();
            info.method = req.method.clone();
            info.request_headers = Some(req.headers.clone());
            info.end = Some(crate::clock::now());
            info.bytes_received = ds.bytes_received();
            crate::access_log::emit(&rt.access_logs, info);
            *info = info.next_pass();
            info.path = req.path.clone();
            info.authority = req.authority.clone();
        }
    }
}

/// Routes a request and runs its route's action.
#[allow(clippy::too_many_arguments)]
#[allow(clippy::manual_async_fn)] // an `async move` block on purpose, see the body
fn route_request<D: Downstream>(
    ds: &mut D,
    req: &mut Request,
    info: &mut RequestInfo,
    rt: &Arc<HttpListenerRuntime>,
    worker: &Rc<WorkerContext>,
    route_config: &Arc<RouteConfig>,
    fwd: &forwarding::Forwarding,
    grpc: bool,
) -> impl std::future::Future<Output = StreamOutcome> {
    // An `async move` block, not an `async fn`: the latter keeps a second
    // copy of its arguments in the future (rust-lang/rust#62958), written
    // on every request.
    async move {
        let route_config = &**route_config;
        let host = routing_host(req, rt);
        let vhost = route_config.find_virtual_host(&host);
        let tls_redirect = vhost.is_some_and(|v| needs_tls_redirect(v, req));
        let route = match vhost {
            Some(v) if !tls_redirect => {
                match_route(v, req, route_config.ignore_path_parameters_in_path_matching)
            }
            _ => None,
        };
        // The HTTP filters see the request before the router; every response
        // goes back through them.
        let ctx = filter::RouteContext {
            rc: route_config,
            vhost,
            route,
        };
        let (chain, filter_reply) =
            filter::FilterChain::decode_headers(&rt.filters, ctx, req, info, ds).await;
        let ds = &mut filter::Encoder { inner: ds, chain };
        if let Some(reply) = filter_reply {
            let close = !ds.body_complete();
            return send_local(ds, reply, info, rt, worker, close, grpc).await;
        }
        worker.stats.inc(rt.stats.hcm.rq_total);
        let Some(vhost) = vhost else {
            return no_route(ds, req, info, rt, worker, grpc).await;
        };
        if tls_redirect {
            // Envoy's SSL redirect route: 301 to the same URL over https.
            rt.stats.hcm.rq_redirect.inc();
            let mut reply =
                LocalReply::new(StatusCode::MOVED_PERMANENTLY, Bytes::new(), "redirect");
            let location = format!(
                "https://{}{}",
                req.authority.as_deref().unwrap_or(""),
                req.path
            );
            if let Ok(v) = HeaderValue::from_str(&location) {
                reply.headers.insert(http::header::LOCATION, v);
            }
            return send_local(ds, reply, info, rt, worker, false, grpc).await;
        }
        let Some(route) = route else {
            return no_route(ds, req, info, rt, worker, grpc).await;
        };
        info.route_name = Some(route.name.clone());

        match &route.action {
            RouteAction::DirectResponse(d) => {
                rt.stats.hcm.rq_direct_response.inc();
                let mut reply = LocalReply::new(
                    d.status,
                    d.body.clone().unwrap_or_default(),
                    "direct_response",
                );
                reply.grpc = false;
                let code = d.status.as_u16();
                if (code == 201 || (300..400).contains(&code))
                    && let Ok(v) = HeaderValue::from_str(&new_uri(req, None, None))
                {
                    reply.headers.insert(http::header::LOCATION, v);
                }
                finalize_response_headers(&mut reply.headers, route, vhost, route_config, info);
                send_local(ds, reply, info, rt, worker, false, false).await
            }
            RouteAction::Redirect(r) => {
                rt.stats.hcm.rq_redirect.inc();
                let mut reply = LocalReply::new(r.status, Bytes::new(), "redirect");
                let prefix = match &route.matcher.path {
                    route::PathMatch::Prefix(p) | route::PathMatch::SeparatedPrefix(p) => {
                        Some(p.as_str())
                    }
                    _ => None,
                };
                if let Ok(v) = HeaderValue::from_str(&new_uri(req, Some(r), prefix)) {
                    reply.headers.insert(http::header::LOCATION, v);
                }
                finalize_response_headers(&mut reply.headers, route, vhost, route_config, info);
                send_local(ds, reply, info, rt, worker, false, grpc).await
            }
            RouteAction::NonForwarding => {
                let reply = LocalReply::new(StatusCode::NOT_FOUND, Bytes::new(), "route_not_found");
                send_local(ds, reply, info, rt, worker, false, grpc).await
            }
            RouteAction::Forward(action) => {
                if let Some(timers) = ds.timers() {
                    timers.apply_route(action.idle_timeout, action.max_stream_duration);
                    crate::grpc::apply_route_timeout(
                        &timers,
                        action,
                        &mut req.headers,
                        rt.hcm.common.max_stream_duration,
                    );
                }
                router::forward(
                    ds,
                    req,
                    info,
                    rt,
                    worker,
                    route_config,
                    vhost,
                    route,
                    action,
                    fwd,
                    grpc,
                )
                .await
            }
        }
    }
}

/// A stream timer fired: Envoy's local reply (408 while the request is still
/// arriving, 504 after), or a reset once the response has started.
async fn on_stream_timeout<D: Downstream>(
    ds: &mut D,
    kind: StreamTimeout,
    timers: &StreamTimers,
    info: &mut RequestInfo,
    rt: &HttpListenerRuntime,
    worker: &WorkerContext,
    grpc: bool,
) -> StreamOutcome {
    let hcm_stats = &rt.stats.hcm;
    match kind {
        StreamTimeout::Idle => {
            hcm_stats.downstream_rq_idle_timeout.inc();
            info.set_flag(ResponseFlag::StreamIdleTimeout);
        }
        StreamTimeout::Request => hcm_stats.downstream_rq_timeout.inc(),
        StreamTimeout::MaxDuration => hcm_stats.downstream_rq_max_duration_reached.inc(),
    }
    if timers.response_started() {
        info.response_code_details = Some(kind.details());
        return StreamOutcome {
            close: true,
            reset: true,
            redirected: false,
        };
    }
    let status = if timers.request_complete() {
        StatusCode::GATEWAY_TIMEOUT
    } else {
        StatusCode::REQUEST_TIMEOUT
    };
    let mut reply = LocalReply::new(status, kind.body(), kind.details());
    if kind == StreamTimeout::MaxDuration {
        // Envoy: `DeadlineExceeded` for gRPC clients.
        reply.grpc_status = Some(4);
    }
    send_local(ds, reply, info, rt, worker, false, grpc).await
}

/// The virtual host and route a request selects, if any.
pub(crate) fn resolve_route<'a>(
    rc: &'a RouteConfig,
    req: &Request,
    rt: &HttpListenerRuntime,
) -> Option<(&'a VirtualHost, &'a Route)> {
    let host = routing_host(req, rt);
    let vhost = rc.find_virtual_host(&host)?;
    if needs_tls_redirect(vhost, req) {
        return None;
    }
    let route = match_route(vhost, req, rc.ignore_path_parameters_in_path_matching)?;
    Some((vhost, route))
}

/// Whether the virtual host's `require_tls` sends this request to https.
fn needs_tls_redirect(vhost: &VirtualHost, req: &Request) -> bool {
    let external = || {
        req.headers
            .get(&forwarding::names::X_ENVOY_INTERNAL)
            .is_none_or(|v| v.as_bytes() != b"true")
    };
    let required = match vhost.require_tls {
        route::RequireTls::None => false,
        route::RequireTls::All => true,
        route::RequireTls::ExternalOnly => external(),
    };
    required
        && req
            .headers
            .get(&forwarding::names::X_FORWARDED_PROTO)
            .is_none_or(|v| !v.as_bytes().eq_ignore_ascii_case(b"https"))
}

/// The host used for virtual host selection, after the port/dot options.
fn routing_host<'r>(req: &'r Request, rt: &HttpListenerRuntime) -> Cow<'r, str> {
    let hcm = &rt.hcm;
    let mut host = Cow::Borrowed(req.authority.as_deref().unwrap_or_default());
    if hcm.strip_trailing_host_dot {
        let (h, port) = match route::strip_port(&host) {
            Some(h) => (h, &host[h.len()..]),
            None => (&*host, ""),
        };
        if let Some(stripped) = h.strip_suffix('.') {
            host = Cow::Owned(format!("{stripped}{port}"));
        }
    }
    if hcm.strip_any_host_port {
        if let Some(h) = route::strip_port(&host) {
            host = Cow::Owned(h.to_owned());
        }
    } else if hcm.strip_matching_host_port
        && let (Some(h), Some(lp)) = (route::strip_port(&host), rt.listener_port)
        && host[h.len() + 1..].parse::<u16>().ok() == Some(lp)
    {
        host = Cow::Owned(h.to_owned());
    }
    host
}

/// Finds the first route of `vhost` matching the request (Envoy's `getRouteFromEntries`).
pub fn match_route<'a>(
    vhost: &'a VirtualHost,
    req: &Request,
    ignore_path_parameters: bool,
) -> Option<&'a Route> {
    let (path_only, query) = match req.path.find('?') {
        Some(i) => (&req.path[..i], &req.path[i + 1..]),
        None => (req.path.as_str(), ""),
    };
    let path_only = match path_only.find('#') {
        Some(i) => &path_only[..i],
        None => path_only,
    };
    let without_params;
    let path_only = if ignore_path_parameters && path_only.contains(';') {
        without_params = strip_path_parameters(path_only);
        without_params.as_str()
    } else {
        path_only
    };
    let grpc = local_reply::is_grpc_request(&req.headers);
    let matches = |r: &&Route| {
        let m = &r.matcher;
        if !m.path_matches(path_only) {
            return false;
        }
        if m.grpc && !grpc {
            return false;
        }
        if !m.headers.iter().all(|h| h.matches_with(&req.headers, req)) {
            return false;
        }
        if !m.query_parameters.iter().all(|q| q.matches(query)) {
            return false;
        }
        if let Some(f) = &m.runtime_fraction
            && !f.default.sample(fastrand::u64(..))
        {
            return false;
        }
        true
    };
    // Many routes: only those the index says can match the path, in order.
    if let Some(index) = &vhost.route_index {
        thread_local! {
            static CANDIDATES: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        return CANDIDATES.with(|c| {
            let mut c = c.borrow_mut();
            index.candidates(path_only, &mut c);
            c.iter()
                .filter_map(|&i| vhost.routes.get(i as usize))
                .find(matches)
        });
    }
    vhost.routes.iter().find(matches)
}

/// The path without `;parameters` in its segments
/// (`ignore_path_parameters_in_path_matching`).
fn strip_path_parameters(path: &str) -> String {
    path.split('/')
        .map(|segment| segment.split(';').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("/")
}

/// Route, virtual host and route configuration response headers, in Envoy's order.
pub fn finalize_response_headers(
    headers: &mut HeaderMap,
    route: &Route,
    vhost: &VirtualHost,
    rc: &RouteConfig,
    info: &RequestInfo,
) {
    if rc.most_specific_header_mutations_wins {
        apply_mutations(&rc.response_headers, headers, info);
        apply_mutations(&vhost.response_headers, headers, info);
        apply_mutations(&route.response_headers, headers, info);
    } else {
        apply_mutations(&route.response_headers, headers, info);
        apply_mutations(&vhost.response_headers, headers, info);
        apply_mutations(&rc.response_headers, headers, info);
    }
}

/// Envoy's `newUri`: the Location of a redirect (or a 201/3xx direct response).
/// `matched_prefix` is the route's prefix, for `prefix_rewrite`.
fn new_uri(req: &Request, r: Option<&Redirect>, matched_prefix: Option<&str>) -> String {
    let forwarded_proto = req
        .headers
        .get(&forwarding::names::X_FORWARDED_PROTO)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("http");
    let scheme = r
        .and_then(|r| r.scheme.as_deref())
        .unwrap_or(forwarded_proto);
    let port = r
        .and_then(|r| r.port)
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    let host = match r.and_then(|r| r.host.as_deref()) {
        Some(h) => h.to_owned(),
        None => {
            let authority = req.authority.as_deref().unwrap_or("");
            match route::strip_port(authority) {
                Some(h) => {
                    let request_port = &authority[h.len()..];
                    let mut remove = !port.is_empty();
                    if scheme != forwarded_proto {
                        remove |= forwarded_proto == "https" && request_port == ":443";
                        remove |= forwarded_proto == "http" && request_port == ":80";
                    }
                    if remove {
                        h.to_owned()
                    } else {
                        authority.to_owned()
                    }
                }
                None => authority.to_owned(),
            }
        }
    };
    let (orig_path, orig_query) = match req.path.find('?') {
        Some(i) => (&req.path[..i], &req.path[i..]),
        None => (req.path.as_str(), ""),
    };
    let mut path = match r.map(|r| &r.path) {
        None | Some(RedirectPath::Keep) => req.path.to_string(),
        Some(RedirectPath::Path(p)) => {
            if p.contains('?') {
                p.clone()
            } else {
                format!("{p}{orig_query}")
            }
        }
        Some(RedirectPath::Prefix(p)) => match matched_prefix {
            Some(prefix) if req.path.len() >= prefix.len() => {
                format!("{p}{}", &req.path[prefix.len()..])
            }
            _ => req.path.to_string(),
        },
        Some(RedirectPath::Regex(re, sub)) => {
            format!("{}{orig_query}", re.replace_all(orig_path, sub.as_str()))
        }
    };
    if r.is_some_and(|r| r.strip_query)
        && let Some(i) = path.find('?')
    {
        path.truncate(i);
    }
    format!("{scheme}://{host}{port}{path}")
}

async fn no_route<D: Downstream>(
    ds: &mut D,
    _req: &Request,
    info: &mut RequestInfo,
    rt: &HttpListenerRuntime,
    worker: &WorkerContext,
    grpc: bool,
) -> StreamOutcome {
    rt.stats.hcm.no_route.inc();
    info.set_flag(ResponseFlag::NoRouteFound);
    let reply = LocalReply::new(StatusCode::NOT_FOUND, Bytes::new(), "route_not_found");
    send_local(ds, reply, info, rt, worker, false, grpc).await
}

/// Sends a local reply downstream and records it.
pub async fn send_local<D: Downstream>(
    ds: &mut D,
    mut reply: LocalReply,
    info: &mut RequestInfo,
    rt: &HttpListenerRuntime,
    worker: &WorkerContext,
    close: bool,
    grpc: bool,
) -> StreamOutcome {
    reply.grpc = grpc;
    // A reply sent before the request body was read ends an HTTP/1 connection.
    let close = close || !ds.body_complete();
    if close {
        ds.set_close();
    }
    info.response_code_details = Some(reply.details);
    let rendered = local_reply::render(reply, &rt.hcm, info);
    let mut headers = rendered.headers;
    let is_head = info.method == Method::HEAD;
    if !headers.contains_key(http::header::DATE) {
        headers.insert(http::header::DATE, worker.date.now());
    }
    forwarding::mutate_response(&mut headers, false, info.request_id.as_deref(), &rt.hcm);
    info.response_status = Some(rendered.status);
    let end = rendered.body.is_empty() || is_head;
    info.mark(|t| &mut t.first_downstream_tx);
    ds.encode_headers(rendered.status, &mut headers, end, info);
    let mut ok = ds
        .send_head(rendered.status, None, &mut headers, end)
        .await
        .is_ok();
    if ok && !end {
        ok = ds.send_data(rendered.body, true).await.is_ok();
    }
    info.mark(|t| &mut t.last_downstream_tx);
    info.response_headers = Some(headers);
    let close = close || !ok;
    StreamOutcome {
        close,
        reset: !ok,
        redirected: false,
    }
}

/// The `Host`/`:authority` of a request (HTTP/1 keeps it in the headers).
pub fn authority_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}
