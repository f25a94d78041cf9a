//! The router filter: forwards a routed request to its cluster.
//!
//! Chooses the cluster and host, applies rewrites and header mutations, sends
//! the request on a pooled connection, retries per the retry policy (with
//! Envoy's backoff), enforces the route and per-try timeouts, mirrors requests,
//! and streams the response back with Envoy's headers
//! (`x-envoy-upstream-service-time`, attempt counts). Failures become Envoy's
//! local replies with its reset reasons and response flags.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use rvoy_format::ResponseFlag;
use rvoy_model::cluster::UpstreamProtocol;
use rvoy_model::route::{
    ClusterName, ClusterSpecifier, ForwardAction, HostRewrite, RetryOn, RetryPolicy, Route,
    RouteConfig, VirtualHost,
};
use rvoy_upstream::cluster::Cluster;
use rvoy_upstream::host::Host;

use crate::context::{HttpListenerRuntime, WorkerContext};
use crate::downstream::{Downstream, Protocol};
use crate::forwarding::{self, Forwarding, names};
use crate::h1::body::BodyDecoder;
use crate::h1::encode;
use crate::h1::parse::{self, BodyFraming, HeadLimits};
use crate::headers::{apply_mutations, apply_request_mutations};
use crate::local_reply::LocalReply;
use crate::pool::{self, H1Conn, PoolKey};
use crate::request_info::RequestInfo;
use crate::stream::{Request, StreamOutcome, finalize_response_headers, send_local};
use crate::upstream_h1::{self, Body, UpstreamError, WriteOutcome};

/// How a single attempt ended when no response was forwarded.
pub(crate) enum AttemptFailure {
    NoHealthyUpstream,
    Overflow,
    Connect { reason: String, timeout: bool },
    Reset { reason: &'static str },
    PerTryTimeout,
    PerTryIdleTimeout,
    GlobalTimeout,
    Downstream,
}

/// A response head received from upstream, not yet forwarded.
pub(crate) struct UpstreamResponse {
    pub status: StatusCode,
    pub reason: Option<Bytes>,
    pub headers: HeaderMap,
    pub body: UpstreamBody,
}

pub(crate) enum UpstreamBody {
    H1 {
        conn: H1Conn,
        decoder: BodyDecoder,
        close: bool,
    },
    H2(crate::upstream_h2::H2Response),
    Empty,
}

/// The timers that still run while a response streams downstream: the
/// route's overall `timeout` and the retry policy's `per_try_idle_timeout`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ResponseDeadline {
    pub global: Option<Instant>,
    pub idle: Option<Duration>,
}

/// Which response timer fired.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ResponseTimeout {
    Global,
    Idle,
}

impl ResponseDeadline {
    /// Awaits one read from upstream under the timers.
    pub(crate) async fn read<F: std::future::Future>(
        &self,
        fut: F,
    ) -> Result<F::Output, ResponseTimeout> {
        let idle = self.idle.map(|i| crate::clock::now() + i);
        let (deadline, kind) = match (self.global, idle) {
            (Some(g), Some(i)) if i < g => (i, ResponseTimeout::Idle),
            (Some(g), _) => (g, ResponseTimeout::Global),
            (None, Some(i)) => (i, ResponseTimeout::Idle),
            (None, None) => return Ok(fut.await),
        };
        tokio::time::timeout_at(deadline.into(), fut)
            .await
            .map_err(|_| kind)
    }

    /// Accounts a timer that fired after the response started.
    pub(crate) fn on_timeout(kind: ResponseTimeout, info: &mut RequestInfo, cluster: &Cluster) {
        let stats = &cluster.stats.traffic;
        let details = match kind {
            ResponseTimeout::Global => {
                stats.upstream_rq_timeout.inc();
                "response_timeout"
            }
            ResponseTimeout::Idle => {
                stats.upstream_rq_per_try_idle_timeout.inc();
                "upstream_per_try_idle_timeout"
            }
        };
        info.response_code_details = Some(details);
        if let Some(h) = &info.upstream_host {
            rvoy_upstream::host::HostStats::inc(&h.stats.rq_timeout);
        }
        info.set_flag(ResponseFlag::UpstreamRequestTimeout);
    }
}

/// Retry accounting for one request.
struct RetryState {
    policy: Option<Arc<RetryPolicy>>,
    retry_on: RetryOn,
    max: u32,
    used: u32,
    retriable_status_codes: Vec<u16>,
}

impl RetryState {
    /// `envoy_headers`: the request has `x-envoy-*` headers (that may set
    /// retry policy).
    fn new(policy: Option<&Arc<RetryPolicy>>, req: &Request, envoy_headers: bool) -> Self {
        let headers = &req.headers;
        let mut retry_on = policy.map(|p| p.retry_on).unwrap_or_default();
        let mut max = policy.map(|p| p.num_retries).unwrap_or(1);
        let mut codes: Vec<u16> = policy
            .map(|p| p.retriable_status_codes.clone())
            .unwrap_or_default();
        if !envoy_headers && policy.is_none() {
            return RetryState {
                policy: None,
                retry_on,
                max,
                used: 0,
                retriable_status_codes: codes,
            };
        }
        if let Some(v) = headers
            .get(&names::X_ENVOY_RETRY_ON)
            .and_then(|v| v.to_str().ok())
        {
            retry_on.0 |= RetryOn::parse(v).0;
        }
        if let Some(v) = headers
            .get(&names::X_ENVOY_RETRY_GRPC_ON)
            .and_then(|v| v.to_str().ok())
        {
            retry_on.0 |= RetryOn::parse(v).0;
        }
        if let Some(n) = headers
            .get(&names::X_ENVOY_MAX_RETRIES)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u32>().ok())
        {
            max = n;
        }
        if let Some(v) = headers
            .get(&names::X_ENVOY_RETRIABLE_STATUS_CODES)
            .and_then(|v| v.to_str().ok())
        {
            codes.extend(v.split(',').filter_map(|c| c.trim().parse::<u16>().ok()));
        }
        // Retries only for requests matching one of `retriable_request_headers`.
        if let Some(p) = policy
            && !p.retriable_request_headers.is_empty()
            && !p
                .retriable_request_headers
                .iter()
                .any(|m| m.matches_with(headers, req))
        {
            max = 0;
        }
        RetryState {
            policy: policy.cloned(),
            retry_on,
            max,
            used: 0,
            retriable_status_codes: codes,
        }
    }

    fn enabled(&self) -> bool {
        self.retry_on.0 != 0 && self.max > 0
    }

    fn can_retry(&self) -> bool {
        self.enabled() && self.used < self.max
    }

    /// Whether a response with this status (and headers) should be retried.
    fn retriable_response(&self, status: u16, headers: &HeaderMap) -> bool {
        let r = self.retry_on;
        (r.has(RetryOn::FIVE_XX) && status >= 500)
            || (r.has(RetryOn::GATEWAY_ERROR) && matches!(status, 502..=504))
            || (r.has(RetryOn::RETRIABLE_4XX) && status == 409)
            || (r.has(RetryOn::RETRIABLE_STATUS_CODES)
                && self.retriable_status_codes.contains(&status))
            || (r.has(RetryOn::ENVOY_RATELIMITED)
                && headers.contains_key(&names::X_ENVOY_RATELIMITED))
            || (r.has(RetryOn::RETRIABLE_HEADERS)
                && self
                    .policy
                    .as_ref()
                    .is_some_and(|p| p.retriable_headers.iter().any(|m| m.matches(headers))))
            || (grpc_retriable(r, headers))
    }

    /// Whether a failure before any response should be retried.
    fn retriable_failure(&self, f: &AttemptFailure) -> bool {
        let r = self.retry_on;
        match f {
            AttemptFailure::Connect { .. } => {
                r.has(RetryOn::CONNECT_FAILURE)
                    || r.has(RetryOn::FIVE_XX)
                    || r.has(RetryOn::GATEWAY_ERROR)
                    || r.has(RetryOn::RESET)
                    || r.has(RetryOn::RESET_BEFORE_REQUEST)
            }
            AttemptFailure::Reset { reason } => {
                r.has(RetryOn::RESET)
                    || r.has(RetryOn::FIVE_XX)
                    || r.has(RetryOn::GATEWAY_ERROR)
                    || (r.has(RetryOn::REFUSED_STREAM)
                        && *reason == crate::upstream_h2::REFUSED_STREAM_RESET)
            }
            AttemptFailure::PerTryTimeout | AttemptFailure::PerTryIdleTimeout => {
                r.has(RetryOn::FIVE_XX) || r.has(RetryOn::GATEWAY_ERROR) || r.has(RetryOn::RESET)
            }
            _ => false,
        }
    }

    /// Envoy's jittered exponential backoff: a random time below
    /// `base * 2^attempt`, capped at `max_interval`.
    fn backoff(&self) -> Duration {
        let (base, max) = self
            .policy
            .as_ref()
            .map(|p| (p.base_interval, p.max_interval))
            .unwrap_or((Duration::from_millis(25), Duration::from_millis(250)));
        let ceiling = base.saturating_mul(1u32 << self.used.min(16)).min(max);
        let ms = ceiling.as_millis().max(1) as u64;
        Duration::from_millis(fastrand::u64(0..ms))
    }
}

fn grpc_retriable(r: RetryOn, headers: &HeaderMap) -> bool {
    const ANY_GRPC: u32 = RetryOn::GRPC_CANCELLED
        | RetryOn::GRPC_DEADLINE_EXCEEDED
        | RetryOn::GRPC_RESOURCE_EXHAUSTED
        | RetryOn::GRPC_UNAVAILABLE
        | RetryOn::GRPC_INTERNAL;
    if r.0 & ANY_GRPC == 0 {
        return false;
    }
    let Some(code) = headers
        .get(&crate::grpc::GRPC_STATUS)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok())
    else {
        return false;
    };
    (r.has(RetryOn::GRPC_CANCELLED) && code == 1)
        || (r.has(RetryOn::GRPC_DEADLINE_EXCEEDED) && code == 4)
        || (r.has(RetryOn::GRPC_RESOURCE_EXHAUSTED) && code == 8)
        || (r.has(RetryOn::GRPC_UNAVAILABLE) && code == 14)
        || (r.has(RetryOn::GRPC_INTERNAL) && code == 13)
}

fn header_u64(headers: &HeaderMap, name: &HeaderName) -> Option<u64> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Forwards a request matched to a `route` action.
#[allow(clippy::too_many_arguments)]
#[allow(clippy::manual_async_fn)] // an `async move` block on purpose, see the body
pub fn forward<D: Downstream>(
    ds: &mut D,
    req: &mut Request,
    info: &mut RequestInfo,
    rt: &Arc<HttpListenerRuntime>,
    worker: &Rc<WorkerContext>,
    rc: &RouteConfig,
    vhost: &VirtualHost,
    route: &Route,
    action: &ForwardAction,
    _fwd: &Forwarding,
    grpc: bool,
) -> impl std::future::Future<Output = StreamOutcome> {
    // An `async move` block, not an `async fn`: the latter keeps a second
    // copy of its arguments in the future (rust-lang/rust#62958), written
    // on every request.
    async move {
        // Cluster selection.
        let (cluster_name, weighted) = match &action.cluster {
            ClusterSpecifier::Cluster(c) => (Some(std::borrow::Cow::Borrowed(&**c)), None),
            ClusterSpecifier::Header(h) => (
                req.headers
                    .get(h)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| std::borrow::Cow::Owned(v.to_owned())),
                None,
            ),
            ClusterSpecifier::Weighted(w) => {
                let random = w
                    .random_value_header
                    .as_ref()
                    .and_then(|h| header_u64(&req.headers, h))
                    .unwrap_or_else(|| fastrand::u64(..));
                match w.pick(random) {
                    Some(c) => {
                        let name = match &c.name {
                            ClusterName::Static(n) => Some(std::borrow::Cow::Borrowed(&**n)),
                            ClusterName::Header(h) => req
                                .headers
                                .get(h)
                                .and_then(|v| v.to_str().ok())
                                .map(|v| std::borrow::Cow::Owned(v.to_owned())),
                        };
                        (name, Some(c))
                    }
                    None => (None, None),
                }
            }
        };
        let cluster = cluster_name
            .as_deref()
            .and_then(|n| rt.clusters.get(n))
            .cloned();
        let Some(cluster) = cluster else {
            rt.stats.hcm.no_cluster.inc();
            info.set_flag(ResponseFlag::NoClusterFound);
            let reply = LocalReply::new(
                action.cluster_not_found_status,
                Bytes::new(),
                "cluster_not_found",
            );
            return send_local(ds, reply, info, rt, worker, false, grpc).await;
        };
        info.upstream_cluster = Some(cluster.config.name.clone());
        rvoy_log::debug!(
            rvoy_log::Component::Router,
            "[Tags: \"ConnectionId\":\"{}\"] cluster '{}' match for URL '{}'",
            info.connection_id,
            cluster.config.name,
            req.path
        );

        // Timeouts: route timeout, overridable by x-envoy-upstream-rq-timeout-ms.
        let has_envoy_headers = req
            .headers
            .keys()
            .any(|k| k.as_str().starts_with("x-envoy-"));
        let mut global_timeout = action.timeout;
        if let Some(ms) = has_envoy_headers
            .then(|| header_u64(&req.headers, &names::X_ENVOY_UPSTREAM_RQ_TIMEOUT_MS))
            .flatten()
        {
            global_timeout = (ms > 0).then(|| Duration::from_millis(ms));
        }
        let mut per_try = action.retry_policy.as_ref().and_then(|p| p.per_try_timeout);
        if let Some(ms) = has_envoy_headers
            .then(|| header_u64(&req.headers, &names::X_ENVOY_UPSTREAM_RQ_PER_TRY_TIMEOUT_MS))
            .flatten()
        {
            per_try = (ms > 0).then(|| Duration::from_millis(ms));
        }
        if per_try.is_some_and(|p| global_timeout.is_some_and(|g| p >= g)) {
            per_try = None;
        }
        let per_try_idle = action
            .retry_policy
            .as_ref()
            .and_then(|p| p.per_try_idle_timeout);
        let mut retry = RetryState::new(action.retry_policy.as_ref(), req, has_envoy_headers);
        for h in [
            &names::X_ENVOY_UPSTREAM_RQ_TIMEOUT_MS,
            &names::X_ENVOY_UPSTREAM_RQ_PER_TRY_TIMEOUT_MS,
            &names::X_ENVOY_RETRY_ON,
            &names::X_ENVOY_RETRY_GRPC_ON,
            &names::X_ENVOY_MAX_RETRIES,
            &names::X_ENVOY_RETRIABLE_STATUS_CODES,
            &names::X_ENVOY_RETRIABLE_HEADER_NAMES,
            &names::X_ENVOY_UPSTREAM_RQ_TIMEOUT_ALT_RESPONSE,
        ] {
            if !has_envoy_headers {
                break;
            }
            req.headers.remove(h);
        }
        let suppress = router_config(rt).is_some_and(|r| r.suppress_envoy_headers);

        // Request headers for upstream: mutations, rewrites.
        info.request_headers = Some(std::mem::take(&mut req.headers));
        let levels = if rc.most_specific_header_mutations_wins {
            [
                &rc.request_headers,
                &vhost.request_headers,
                &route.request_headers,
            ]
        } else {
            [
                &route.request_headers,
                &vhost.request_headers,
                &rc.request_headers,
            ]
        };
        for m in levels {
            apply_request_mutations(m, info);
        }
        if let Some(w) = weighted {
            apply_request_mutations(&w.request_headers, info);
        }
        let mut headers = info.request_headers.take().unwrap_or_default();
        let mut path = req.path.clone();
        let rewritten = rewrite_path(&path, route, action);
        if let Some(new_path) = rewritten {
            if !suppress && let Ok(v) = HeaderValue::from_str(&path) {
                headers.insert(names::X_ENVOY_ORIGINAL_PATH.clone(), v);
            }
            path = new_path.into();
        }
        let mut authority = req.authority.clone().unwrap_or_default();
        match &action.host_rewrite {
            HostRewrite::Literal(h) => authority = h.as_str().into(),
            HostRewrite::Header(h) => {
                if let Some(v) = headers.get(h).and_then(|v| v.to_str().ok())
                    && !v.is_empty()
                {
                    authority = v.into();
                }
            }
            HostRewrite::PathRegex {
                pattern,
                substitution,
            } => {
                let path_only = path.split('?').next().unwrap_or("");
                authority = pattern
                    .replace_all(path_only, substitution.as_str())
                    .as_ref()
                    .into();
            }
            HostRewrite::None | HostRewrite::Auto => {}
        }
        if let Some(w) = weighted
            && let Some(h) = &w.host_rewrite_literal
        {
            authority = h.as_str().into();
        }
        if info.authority.as_deref() != Some(authority.as_str()) {
            info.authority = Some(authority.clone());
        }
        // Expected timeout header.
        if !suppress {
            let expected = match (per_try, global_timeout) {
                (Some(p), _) => Some(p),
                (None, g) => g,
            };
            if let Some(t) = expected {
                headers.insert(
                    names::X_ENVOY_EXPECTED_RQ_TIMEOUT_MS.clone(),
                    forwarding::decimal_value(t.as_millis() as u64),
                );
            }
        }
        // The request headers live in `info` from here on (access logs,
        // `%REQ(...)%`), in `req` only while an attempt sends them.
        let is_upgrade = forwarding::is_upgrade(&headers);
        let upgrade_type = is_upgrade.then(|| {
            headers
                .get(http::header::UPGRADE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_ascii_lowercase()
        });
        info.request_headers = Some(headers);
        if let Some(upgrade_type) = upgrade_type {
            let route_override = action
                .upgrades
                .iter()
                .find(|(t, _)| *t == upgrade_type)
                .map(|(_, e)| *e);
            let allowed = route_override.unwrap_or_else(|| rt.hcm.upgrades.contains(&upgrade_type));
            if !allowed {
                rt.stats.hcm.downstream_rq_ws_on_non_ws_route.inc();
                let reply = LocalReply::new(StatusCode::FORBIDDEN, Bytes::new(), "upgrade_failed");
                return send_local(ds, reply, info, rt, worker, true, grpc).await;
            }
        }

        let start = crate::clock::now();
        // The route timeout runs from the end of the request, so an upgraded
        // stream (whose request never ends) has none.
        if is_upgrade {
            global_timeout = None;
        }
        let stream_timers = ds.timers();
        let global_deadline = || {
            let t = global_timeout?;
            match &stream_timers {
                Some(st) => st.request_completed_at().map(|at| at + t),
                None => Some(start + t),
            }
        };
        // Request body: read it all when it must be replayable (retries/mirrors)
        // or small; otherwise it streams during the first attempt.
        let buffer_limit = route
            .per_request_buffer_limit_bytes
            .or(vhost.per_request_buffer_limit_bytes)
            .unwrap_or(1024 * 1024) as usize;
        let mirrors: Vec<_> = action
            .mirror_policies
            .iter()
            .chain(vhost.mirror_policies.iter())
            .chain(rc.mirror_policies.iter())
            .collect();
        let mut body_buf: Option<BytesMut> = None;
        let mut stream_prefix: Option<Bytes> = None;
        let need_replay =
            (retry.enabled() || !mirrors.is_empty() || action.internal_redirect.is_some())
                && !is_upgrade;
        if let Some(replay) = req.replay_body.take() {
            // After an internal redirect: the body read by the first pass.
            body_buf = Some(BytesMut::from(&replay[..]));
        } else if need_replay && req.has_body {
            let mut buf = BytesMut::new();
            let mut too_large = false;
            loop {
                match ds.read_body().await {
                    Ok(Some(chunk)) => {
                        if buf.len() + chunk.len() > buffer_limit {
                            too_large = true;
                        }
                        buf.extend_from_slice(&chunk);
                        if too_large {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(_) => {
                        info.downstream_disconnected();
                        return StreamOutcome {
                            close: true,
                            reset: true,
                            redirected: false,
                        };
                    }
                }
            }
            if too_large {
                // Too big to replay: no retries, mirrors or redirects; what was
                // read goes first and the rest streams.
                cluster.stats.traffic.retry_or_shadow_abandoned.inc();
                retry.max = 0;
                stream_prefix = Some(buf.freeze());
            } else {
                body_buf = Some(buf);
            }
        } else if !req.has_body {
            body_buf = Some(BytesMut::new());
        }
        info.mark(|t| &mut t.last_downstream_rx);
        let trailers_in = ds.take_trailers();

        for mirror in &mirrors {
            if let Some(body) = &body_buf
                && body.len() <= buffer_limit
            {
                spawn_mirror(
                    mirror,
                    rt,
                    worker,
                    &req.method,
                    &path,
                    &authority,
                    info.request_headers.as_ref().unwrap_or(&HeaderMap::new()),
                    body.clone().freeze(),
                );
            }
        }

        let attempts_header = vhost.include_request_attempt_count;
        let mut previous_hosts: Vec<Arc<Host>> = Vec::new();
        let mut attempt = 0u32;
        let mut last_was_timeout = false;
        let stats = &cluster.stats.traffic;
        let failure = loop {
            attempt += 1;
            info.attempt_count = attempt;
            let remaining =
                global_deadline().map(|d| d.saturating_duration_since(crate::clock::now()));
            if remaining.is_some_and(|r| r.is_zero()) {
                break AttemptFailure::GlobalTimeout;
            }
            // During the attempt the headers sit in the request, so that they are
            // still there for the access log if a stream timer ends it.
            req.headers = info.request_headers.take().unwrap_or_default();
            let attempt_headers = &mut req.headers;
            if attempts_header {
                attempt_headers.insert(
                    names::X_ENVOY_ATTEMPT_COUNT.clone(),
                    forwarding::decimal_value(u64::from(attempt)),
                );
            }
            if attempt > 1 && vhost.include_is_timeout_retry_header {
                attempt_headers.insert(
                    names::X_ENVOY_IS_TIMEOUT_RETRY.clone(),
                    HeaderValue::from_static(if last_was_timeout { "true" } else { "false" }),
                );
            }
            if attempt > 1 && !suppress {
                // The expected timeout carries the time left.
                let left = per_try.or(remaining);
                if let Some(t) = left {
                    attempt_headers.insert(
                        names::X_ENVOY_EXPECTED_RQ_TIMEOUT_MS.clone(),
                        forwarding::decimal_value(t.as_millis() as u64),
                    );
                }
            }
            let timers = AttemptTimers {
                start,
                per_try: per_try.map(|p| crate::clock::now() + p),
                global: global_timeout,
                idle: per_try_idle,
            };
            let avoid_previous = retry
                .policy
                .as_ref()
                .is_some_and(|p| p.avoid_previous_hosts);
            let result = attempt_once(
                ds,
                req,
                info,
                rt,
                worker,
                &cluster,
                action,
                &req.headers,
                &path,
                &authority,
                body_buf.as_ref().map(|b| b.clone().freeze()),
                stream_prefix.take(),
                trailers_in.clone(),
                timers,
                if avoid_previous { &previous_hosts } else { &[] },
                retry
                    .policy
                    .as_ref()
                    .map_or(1, |p| p.host_selection_retry_max_attempts),
            )
            .await;
            info.request_headers = Some(std::mem::take(&mut req.headers));
            if let (true, Some(h)) = (avoid_previous, &info.upstream_host)
                && !previous_hosts.iter().any(|p| Arc::ptr_eq(p, h))
            {
                previous_hosts.push(h.clone());
            }
            match result {
                Ok(resp) => {
                    let status = resp.status.as_u16();
                    if retry.retriable_response(status, &resp.headers)
                        && retry.can_retry()
                        && body_buf.is_some()
                    {
                        if cluster
                            .resources(action.priority_high)
                            .retries
                            .try_acquire()
                        {
                            cluster.stats.rq_codes.inc(status);
                            discard(resp, worker, &cluster);
                            last_was_timeout = false;
                            retry.used += 1;
                            stats.upstream_rq_retry.inc();
                            let wait = retry.backoff();
                            tokio::time::sleep(wait).await;
                            cluster.resources(action.priority_high).retries.release();
                            continue;
                        }
                        // No retry budget: the response goes as it is.
                        stats.upstream_rq_retry_overflow.inc();
                    } else {
                        if retry.used > 0 && status < 500 {
                            stats.upstream_rq_retry_success.inc();
                        }
                        if retry.used > 0
                            && retry.used >= retry.max
                            && retry.retriable_response(status, &resp.headers)
                        {
                            stats.upstream_rq_retry_limit_exceeded.inc();
                        }
                        if let Some(policy) = &action.internal_redirect
                            && policy.redirect_response_codes.contains(&status)
                        {
                            let empty = HeaderMap::new();
                            let redirect = InternalRedirect {
                                policy,
                                response: &resp.headers,
                                status,
                                headers: info.request_headers.as_ref().unwrap_or(&empty),
                                path: &path,
                                authority: &authority,
                                body: body_buf.as_ref(),
                            };
                            match redirect.apply(req, rc, rt) {
                                Ok(()) => {
                                    info.response_status = Some(resp.status);
                                    info.response_code_details = Some("internal_redirect");
                                    cluster.stats.rq_codes.inc(status);
                                    stats.upstream_internal_redirect_succeeded_total.inc();
                                    discard(resp, worker, &cluster);
                                    return StreamOutcome {
                                        close: false,
                                        reset: false,
                                        redirected: true,
                                    };
                                }
                                Err(passthrough) => {
                                    if let Some(reason) = passthrough {
                                        reason.counter(&rt.stats.hcm).inc();
                                    }
                                    stats.upstream_internal_redirect_failed_total.inc();
                                }
                            }
                        }
                    }
                    return send_response(
                        ds,
                        resp,
                        info,
                        rt,
                        worker,
                        rc,
                        vhost,
                        route,
                        action,
                        start,
                        attempt,
                        ResponseDeadline {
                            global: global_deadline(),
                            idle: per_try_idle,
                        },
                        grpc,
                        &cluster,
                        weighted,
                    )
                    .await;
                }
                Err(failure) => {
                    if matches!(failure, AttemptFailure::Downstream) {
                        info.downstream_disconnected();
                        return StreamOutcome {
                            close: true,
                            reset: true,
                            redirected: false,
                        };
                    }
                    let retriable = retry.retriable_failure(&failure)
                        && retry.can_retry()
                        && body_buf.is_some();
                    if retriable
                        && cluster
                            .resources(action.priority_high)
                            .retries
                            .try_acquire()
                    {
                        last_was_timeout = matches!(
                            failure,
                            AttemptFailure::PerTryTimeout | AttemptFailure::PerTryIdleTimeout
                        );
                        retry.used += 1;
                        stats.upstream_rq_retry.inc();
                        let wait = retry.backoff();
                        tokio::time::sleep(wait).await;
                        cluster.resources(action.priority_high).retries.release();
                        continue;
                    }
                    if retriable {
                        stats.upstream_rq_retry_overflow.inc();
                    }
                    if retry.used > 0 && retry.retriable_failure(&failure) {
                        info.set_flag(ResponseFlag::UpstreamRetryLimitExceeded);
                        stats.upstream_rq_retry_limit_exceeded.inc();
                    }
                    break failure;
                }
            }
        };
        let retried = retry.used > 0;
        let mut reply = match failure {
            AttemptFailure::NoHealthyUpstream => {
                info.set_flag(ResponseFlag::NoHealthyUpstream);
                LocalReply::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no healthy upstream",
                    "no_healthy_upstream",
                )
            }
            AttemptFailure::Overflow => {
                info.set_flag(ResponseFlag::UpstreamOverflow);
                LocalReply::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    reset_body(retried, "overflow", ""),
                    "upstream_reset_before_response_started{overflow}",
                )
            }
            AttemptFailure::Connect { reason, timeout } => {
                info.set_flag(ResponseFlag::UpstreamConnectionFailure);
                cluster.stats.rq_codes.inc(503);
                let what = if timeout {
                    "connection timeout"
                } else {
                    "remote connection failure"
                };
                info.upstream_transport_failure_reason = (!reason.is_empty()).then_some(reason);
                LocalReply::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    reset_body(retried, what, ""),
                    if timeout {
                        "upstream_reset_before_response_started{connection_timeout}"
                    } else {
                        "upstream_reset_before_response_started{remote_connection_failure}"
                    },
                )
            }
            AttemptFailure::Reset { reason } => {
                let (flag, details) = crate::upstream_h2::reset_flag_and_details(reason);
                info.set_flag(flag);
                cluster.stats.rq_codes.inc(503);
                LocalReply::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    reset_body(retried, reason, ""),
                    details,
                )
            }
            AttemptFailure::PerTryTimeout
            | AttemptFailure::PerTryIdleTimeout
            | AttemptFailure::GlobalTimeout => {
                info.set_flag(ResponseFlag::UpstreamRequestTimeout);
                cluster.stats.rq_codes.inc(504);
                LocalReply::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream request timeout",
                    match failure {
                        AttemptFailure::PerTryTimeout => "upstream_per_try_timeout",
                        AttemptFailure::PerTryIdleTimeout => "upstream_per_try_idle_timeout",
                        _ => "response_timeout",
                    },
                )
            }
            AttemptFailure::Downstream => LocalReply::new(
                StatusCode::BAD_REQUEST,
                Bytes::new(),
                "downstream_remote_disconnect",
            ),
        };
        if vhost.include_attempt_count_in_response {
            reply.headers.insert(
                names::X_ENVOY_ATTEMPT_COUNT.clone(),
                forwarding::decimal_value(u64::from(attempt)),
            );
        }
        send_local(ds, reply, info, rt, worker, false, grpc).await
    }
}

/// Why an internal redirect was not followed (the router's
/// `passthrough_internal_redirect_*` stats).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RedirectPassthrough {
    BadLocation,
    NoRoute,
    TooManyRedirects,
    UnsafeScheme,
}

impl RedirectPassthrough {
    fn counter(self, stats: &crate::stats::HcmCounters) -> &rvoy_stats::Counter {
        match self {
            RedirectPassthrough::BadLocation => &stats.passthrough_internal_redirect_bad_location,
            RedirectPassthrough::NoRoute => &stats.passthrough_internal_redirect_no_route,
            RedirectPassthrough::TooManyRedirects => {
                &stats.passthrough_internal_redirect_too_many_redirects
            }
            RedirectPassthrough::UnsafeScheme => &stats.passthrough_internal_redirect_unsafe_scheme,
        }
    }
}

/// An upstream `3xx` that the route's `internal_redirect_policy` may follow.
struct InternalRedirect<'a> {
    policy: &'a rvoy_model::route::InternalRedirectPolicy,
    response: &'a HeaderMap,
    status: u16,
    /// The request headers as sent upstream.
    headers: &'a HeaderMap,
    path: &'a str,
    authority: &'a str,
    /// The whole request body, when it was buffered.
    body: Option<&'a BytesMut>,
}

impl InternalRedirect<'_> {
    /// Rewrites `req` for a second pass through routing (Envoy's
    /// `convertRequestHeadersForInternalRedirect`), or says why not; `Err(None)`
    /// when the request cannot be replayed at all.
    fn apply(
        &self,
        req: &mut Request,
        rc: &RouteConfig,
        rt: &HttpListenerRuntime,
    ) -> Result<(), Option<RedirectPassthrough>> {
        let body = self.body.ok_or(None)?;
        let location = self
            .response
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(None)?;
        if req.internal_redirects >= self.policy.max_internal_redirects {
            return Err(Some(RedirectPassthrough::TooManyRedirects));
        }
        let target = AbsoluteUrl::parse(location).ok_or(Some(RedirectPassthrough::BadLocation))?;
        let scheme = req.scheme.as_deref().unwrap_or_else(|| {
            self.headers
                .get(&names::X_FORWARDED_PROTO)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("http")
        });
        let scheme_is_http = scheme.eq_ignore_ascii_case("http");
        let target_is_http = target.scheme.eq_ignore_ascii_case("http");
        if !self.policy.allow_cross_scheme_redirect && scheme_is_http != target_is_http {
            return Err(Some(RedirectPassthrough::UnsafeScheme));
        }
        let mut headers = self.headers.clone();
        headers.remove(HOST);
        for name in &self.policy.response_headers_to_copy {
            let mut values = self.response.get_all(name).iter().peekable();
            if values.peek().is_none() {
                headers.remove(name);
            }
            for v in values {
                headers.append(name.clone(), v.clone());
            }
        }
        let original_url = format!(
            "{}://{}{}",
            if scheme_is_http { "http" } else { "https" },
            self.authority,
            self.path
        );
        let mut next = Request {
            method: req.method.clone(),
            path: target.path_and_query.into(),
            authority: Some(target.host_and_port.into()),
            scheme: Some(target.scheme.to_ascii_lowercase()),
            headers,
            protocol: req.protocol,
            expect_continue: false,
            has_body: !body.is_empty(),
            head_bytes: req.head_bytes,
            replay_body: Some(body.clone().freeze()),
            internal_redirects: req.internal_redirects + 1,
        };
        if crate::stream::resolve_route(rc, &next, rt).is_none() {
            return Err(Some(RedirectPassthrough::NoRoute));
        }
        // RFC 7231 6.4.4: a 303 turns the request into a GET without a body.
        if self.status == 303 && next.method != Method::GET && next.method != Method::HEAD {
            next.method = Method::GET;
            next.headers.remove(CONTENT_LENGTH);
            next.has_body = false;
            next.replay_body = Some(Bytes::new());
        }
        if let Ok(v) = HeaderValue::from_str(&original_url) {
            next.headers.insert(names::X_ENVOY_ORIGINAL_URL.clone(), v);
        }
        *req = next;
        Ok(())
    }
}

/// An absolute `http(s)://host[:port][/path][?query]` URL (a redirect target).
#[derive(Debug, PartialEq, Eq)]
struct AbsoluteUrl {
    scheme: String,
    host_and_port: String,
    /// Path and query, `/` when the URL has no path; the fragment is dropped.
    path_and_query: String,
}

impl AbsoluteUrl {
    fn parse(url: &str) -> Option<AbsoluteUrl> {
        let (scheme, _) = url.split_once("://")?;
        if scheme.is_empty()
            || !scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        {
            return None;
        }
        let url = url.split('#').next().unwrap_or(url);
        let rest = url.get(scheme.len() + 3..)?;
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let host = &rest[..end];
        if host.is_empty() || host.contains('@') || host.bytes().any(|b| b <= b' ' || b >= 0x7f) {
            return None;
        }
        let mut path_and_query = rest[end..].to_owned();
        if path_and_query.is_empty() || path_and_query.starts_with('?') {
            path_and_query.insert(0, '/');
        }
        Some(AbsoluteUrl {
            scheme: scheme.to_owned(),
            host_and_port: host.to_owned(),
            path_and_query,
        })
    }
}

fn reset_body(retried: bool, reason: &str, transport: &str) -> String {
    let mut s = if retried {
        format!(
            "upstream connect error or disconnect/reset before headers. retried and the latest reset reason: {reason}"
        )
    } else {
        format!("upstream connect error or disconnect/reset before headers. reset reason: {reason}")
    };
    if !transport.is_empty() {
        s.push_str(", transport failure reason: ");
        s.push_str(transport);
    }
    s
}

fn router_config(rt: &HttpListenerRuntime) -> Option<&rvoy_model::hcm::RouterConfig> {
    Some(&rt.hcm.router)
}

/// `prefix_rewrite` / `regex_rewrite` of the path (query kept).
fn rewrite_path(path: &str, route: &Route, action: &ForwardAction) -> Option<String> {
    if let Some(new_prefix) = &action.prefix_rewrite {
        let matched = match &route.matcher.path {
            rvoy_model::route::PathMatch::Prefix(p)
            | rvoy_model::route::PathMatch::SeparatedPrefix(p) => p.len(),
            rvoy_model::route::PathMatch::Exact(p) => p.len(),
            rvoy_model::route::PathMatch::Regex(_) => path.split('?').next().map_or(0, str::len),
        };
        let rest = path.get(matched.min(path.len())..).unwrap_or("");
        return Some(format!("{new_prefix}{rest}"));
    }
    if let Some((re, sub)) = &action.regex_rewrite {
        let (p, q) = match path.find('?') {
            Some(i) => (&path[..i], &path[i..]),
            None => (path, ""),
        };
        return Some(format!("{}{q}", re.replace_all(p, sub.as_str())));
    }
    None
}

/// Drops a response that will be retried (returning its connection when clean).
fn discard(resp: UpstreamResponse, _worker: &WorkerContext, _cluster: &Cluster) {
    drop(resp);
}

/// Runs one attempt: choose a host, connect or reuse, send, read the head.
#[allow(clippy::too_many_arguments)]
#[allow(clippy::manual_async_fn)] // an `async move` block on purpose, see the body
fn attempt_once<D: Downstream>(
    ds: &mut D,
    req: &Request,
    info: &mut RequestInfo,
    rt: &HttpListenerRuntime,
    worker: &WorkerContext,
    cluster: &Arc<Cluster>,
    action: &ForwardAction,
    headers: &HeaderMap,
    path: &str,
    authority: &str,
    body: Option<Bytes>,
    prefix: Option<Bytes>,
    trailers: Option<HeaderMap>,
    timers: AttemptTimers,
    avoid: &[Arc<Host>],
    host_attempts: u32,
) -> impl std::future::Future<Output = Result<UpstreamResponse, AttemptFailure>> {
    // An `async move` block, not an `async fn`: the latter keeps a second
    // copy of its arguments in the future (rust-lang/rust#62958), written
    // on every request.
    async move {
        let stats = &cluster.stats.traffic;
        let set = cluster.hosts();
        let lb = worker.lb_state(cluster);
        let Some(host) = lb.choose(
            cluster.config.lb_policy,
            &set,
            &|h| avoid.iter().any(|a| a.address == h.address),
            host_attempts,
        ) else {
            stats.upstream_cx_none_healthy.inc();
            return Err(AttemptFailure::NoHealthyUpstream);
        };
        drop(set);
        info.upstream_host = Some(host.clone());
        let resources = cluster.resources(action.priority_high);
        if !resources.requests.try_acquire() {
            stats.upstream_rq_pending_overflow.inc();
            return Err(AttemptFailure::Overflow);
        }
        let _rq_guard = ReleaseOnDrop(&resources.requests);
        worker.stats.inc(stats.upstream_rq_total);
        worker.stats.gauge_inc(stats.upstream_rq_active);
        let _active = GaugeGuard(stats.upstream_rq_active, &worker.stats);
        rvoy_upstream::host::HostStats::inc(&host.stats.rq_active);
        let _host_active = HostActive(&host);

        let h2 = match cluster.config.protocol {
            UpstreamProtocol::Http2 => true,
            UpstreamProtocol::Http1 => false,
            UpstreamProtocol::UseDownstream => req.protocol == Protocol::Http2,
        };
        let upstream_authority: std::borrow::Cow<'_, str> = match &action.host_rewrite {
            HostRewrite::Auto if !host.hostname.is_empty() => host.hostname.to_string().into(),
            _ => authority.into(),
        };
        // With a rewritten host the attempt's headers say where the request was
        // going (`x-envoy-original-host`, `x-forwarded-host`); otherwise they are
        // sent as they are. The `host` header is always written from the authority.
        let original_host = req.authority.as_deref().unwrap_or("");
        let rewritten;
        let headers = if upstream_authority != original_host && !original_host.is_empty() {
            let mut h = headers.clone();
            if let Ok(v) = HeaderValue::from_str(original_host) {
                if action.append_x_forwarded_host {
                    forwarding::append_comma(&mut h, &names::X_FORWARDED_HOST, &v);
                }
                h.insert(names::X_ENVOY_ORIGINAL_HOST.clone(), v);
            }
            rewritten = h;
            &rewritten
        } else {
            headers
        };
        let stream_timers = ds.timers();
        // Pinned where it is built and lent to the timers, so the exchange's
        // state is stored once in this future, not copied into each wrapper.
        let exchange = std::pin::pin!(async {
            if h2 {
                // Boxed: the HTTP/2 exchange's state (~4 KiB) would otherwise
                // size every request's future, HTTP/1 upstreams' too.
                Box::pin(crate::upstream_h2::exchange(
                    ds,
                    req,
                    info,
                    rt,
                    worker,
                    cluster,
                    &host,
                    headers,
                    path,
                    &upstream_authority,
                    body,
                    prefix,
                    trailers,
                ))
                .await
            } else {
                exchange_h1(
                    ds,
                    req,
                    info,
                    rt,
                    worker,
                    cluster,
                    &host,
                    headers,
                    path,
                    &upstream_authority,
                    body,
                    prefix,
                    trailers,
                )
                .await
            }
        });
        let result = timers.run(exchange, stream_timers, &worker.sleeps).await;
        match &result {
            Err(AttemptFailure::PerTryTimeout) => {
                stats.upstream_rq_per_try_timeout.inc();
                rvoy_upstream::host::HostStats::inc(&host.stats.rq_timeout);
            }
            Err(AttemptFailure::PerTryIdleTimeout) => {
                stats.upstream_rq_per_try_idle_timeout.inc();
                rvoy_upstream::host::HostStats::inc(&host.stats.rq_timeout);
            }
            Err(AttemptFailure::GlobalTimeout) => {
                stats.upstream_rq_timeout.inc();
                rvoy_upstream::host::HostStats::inc(&host.stats.rq_timeout);
            }
            _ => {}
        }
        result
    }
}

/// The timers of one attempt until the response head: `per_try_timeout`,
/// the route `timeout`, and `per_try_idle_timeout` (reset by request body
/// progress).
#[derive(Clone, Copy, Debug)]
struct AttemptTimers {
    /// When the router started (the route timeout's start without stream timers).
    start: Instant,
    per_try: Option<Instant>,
    /// The route `timeout`.
    global: Option<Duration>,
    idle: Option<Duration>,
}

impl AttemptTimers {
    /// The route timeout's deadline: it runs from the end of the request.
    fn global_deadline(
        &self,
        stream_timers: Option<&crate::stream_timers::StreamTimers>,
    ) -> Option<Instant> {
        let t = self.global?;
        match stream_timers {
            Some(st) => st.request_completed_at().map(|at| at + t),
            None => Some(self.start + t),
        }
    }

    async fn run<F>(
        self,
        fut: F,
        stream_timers: Option<Rc<crate::stream_timers::StreamTimers>>,
        sleeps: &crate::sleep_pool::SleepPool,
    ) -> Result<UpstreamResponse, AttemptFailure>
    where
        F: std::future::Future<Output = Result<UpstreamResponse, AttemptFailure>>,
    {
        let mut fut = std::pin::pin!(fut);
        if self.per_try.is_none() && self.global.is_none() && self.idle.is_none() {
            return fut.await;
        }
        let attempt_start = crate::clock::now();
        let st = stream_timers.as_deref();
        let last_progress = || st.map_or(attempt_start, |t| t.last_activity().max(attempt_start));
        loop {
            let global = self.global_deadline(st);
            let idle = self.idle.map(|i| last_progress() + i);
            let next = [self.per_try, global, idle].into_iter().flatten().min();
            let sleep = async {
                match next {
                    Some(d) => sleeps.sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                r = &mut fut => return r,
                _ = sleep => {
                    let now = crate::clock::now();
                    let global = self.global_deadline(st);
                    let expired = |d: Option<Instant>| d.is_some_and(|d| d <= now);
                    match (self.per_try, global) {
                        (Some(p), Some(g)) if p <= g && p <= now => {
                            return Err(AttemptFailure::PerTryTimeout)
                        }
                        (_, g) if expired(g) => return Err(AttemptFailure::GlobalTimeout),
                        (p, _) if expired(p) => return Err(AttemptFailure::PerTryTimeout),
                        _ => {}
                    }
                    if expired(self.idle.map(|i| last_progress() + i)) {
                        return Err(AttemptFailure::PerTryIdleTimeout);
                    }
                }
            }
        }
    }
}

struct ReleaseOnDrop<'a>(&'a rvoy_upstream::resources::Resource);
impl Drop for ReleaseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// Decrements a gauge (through the worker's [`rvoy_stats::Recorder`]) when
/// dropped.
struct GaugeGuard<'a>(rvoy_stats::Gauge, &'a rvoy_stats::Recorder);
impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.1.gauge_dec(self.0);
    }
}

/// A request waiting for a new upstream connection (Envoy's pending
/// request): holds a `max_pending_requests` slot and the
/// `upstream_rq_pending_active` gauge until it is dropped.
pub(crate) struct PendingRequest<'a> {
    _slot: ReleaseOnDrop<'a>,
    _active: GaugeGuard<'a>,
}

impl<'a> PendingRequest<'a> {
    /// Takes a pending slot of `cluster` (default priority), or fails the
    /// attempt with `upstream_rq_pending_overflow`.
    pub(crate) fn start(
        cluster: &'a Cluster,
        rec: &'a rvoy_stats::Recorder,
    ) -> Result<Self, AttemptFailure> {
        let stats = &cluster.stats.traffic;
        let slot = &cluster.resources(false).pending_requests;
        if !slot.try_acquire() {
            stats.upstream_rq_pending_overflow.inc();
            return Err(AttemptFailure::Overflow);
        }
        rec.inc(stats.upstream_rq_pending_total);
        rec.gauge_inc(stats.upstream_rq_pending_active);
        Ok(PendingRequest {
            _slot: ReleaseOnDrop(slot),
            _active: GaugeGuard(stats.upstream_rq_pending_active, rec),
        })
    }
}

struct HostActive<'a>(&'a Host);
impl Drop for HostActive<'_> {
    fn drop(&mut self) {
        rvoy_upstream::host::HostStats::dec(&self.0.stats.rq_active);
    }
}

/// Gets an HTTP/1 connection to `host`: a pooled one, or a new one.
async fn h1_connection(
    worker: &WorkerContext,
    cluster: &Arc<Cluster>,
    host: &Arc<Host>,
    info: &mut RequestInfo,
) -> Result<H1Conn, AttemptFailure> {
    let key = PoolKey::new(&cluster.config, host);
    if let Some(conn) = worker.h1_pools.take(&key) {
        return Ok(conn);
    }
    let stats = &cluster.stats.traffic;
    let resources = cluster.resources(false);
    // No idle connection: the request is pending until a new one connects.
    let _pending = PendingRequest::start(cluster, &worker.stats)?;
    if !resources.connections.try_acquire() {
        stats.upstream_cx_overflow.inc();
        resources.connections.acquire_unchecked();
    }
    info.mark(|t| &mut t.upstream_connect_start);
    rvoy_log::debug!(
        rvoy_log::Component::Pool,
        "creating a new connection to {} (cluster {})",
        host.address.to_envoy_string(),
        cluster.config.name
    );
    let started = crate::clock::now();
    stats.upstream_cx_total.inc();
    stats.upstream_cx_http1_total.inc();
    rvoy_upstream::host::HostStats::inc(&host.stats.cx_total);
    match pool::connect(host, cluster, rvoy_tls::AlpnFallback::Http1).await {
        Ok(stream) => {
            stats
                .upstream_cx_connect_ms
                .record(crate::clock::elapsed(started).as_millis() as u64);
            stats.upstream_cx_active.inc();
            rvoy_upstream::host::HostStats::inc(&host.stats.cx_active);
            info.mark(|t| &mut t.upstream_connect_complete);
            Ok(H1Conn {
                stream,
                read_buf: worker.h1_pools.read_bufs.take(),
                host: host.clone(),
                cluster: cluster.clone(),
                requests: 0,
                created: crate::clock::now(),
                closing_locally: true,
                close_notified: false,
                read_filled: false,
            })
        }
        Err(e) => {
            resources.connections.release();
            stats.upstream_cx_connect_fail.inc();
            rvoy_upstream::host::HostStats::inc(&host.stats.cx_connect_fail);
            rvoy_upstream::host::HostStats::inc(&host.stats.rq_error);
            let timeout = matches!(e, pool::ConnectError::Timeout);
            if timeout {
                stats.upstream_cx_connect_timeout.inc();
            }
            Err(AttemptFailure::Connect {
                reason: e.transport_reason(),
                timeout,
            })
        }
    }
}

/// Closes an upstream HTTP/1 connection; `local` when we chose to close it.
pub(crate) fn close_h1(mut conn: H1Conn, _cluster: &Cluster, local: bool) {
    conn.closing_locally = local;
    drop(conn);
}

/// Sends the request on HTTP/1 and reads the response head.
#[allow(clippy::too_many_arguments)]
#[allow(clippy::manual_async_fn)] // an `async move` block on purpose, see the body
fn exchange_h1<D: Downstream>(
    ds: &mut D,
    req: &Request,
    info: &mut RequestInfo,
    rt: &HttpListenerRuntime,
    worker: &WorkerContext,
    cluster: &Arc<Cluster>,
    host: &Arc<Host>,
    headers: &HeaderMap,
    path: &str,
    authority: &str,
    body: Option<Bytes>,
    mut prefix: Option<Bytes>,
    trailers: Option<HeaderMap>,
) -> impl std::future::Future<Output = Result<UpstreamResponse, AttemptFailure>> {
    // An `async move` block, not an `async fn`: the latter keeps a second
    // copy of its arguments in the future (rust-lang/rust#62958), written
    // on every request.
    async move {
        // A client that goes away while the connection is made cancels the
        // request (Envoy cancels its pending pool request).
        let mut conn = tokio::select! {
            biased;
            c = h1_connection(worker, cluster, host, info) => c?,
            _ = ds.closed() => return Err(AttemptFailure::Downstream),
        };
        conn.requests += 1;
        rvoy_upstream::host::HostStats::inc(&host.stats.rq_total);
        let streaming_body = body.is_none();
        let chunked = streaming_body && !headers.contains_key(CONTENT_LENGTH);
        let framing = if forwarding::is_upgrade(headers) {
            encode::RequestFraming::NoTransferEncoding
        } else if let Some(b) = &body {
            // Envoy adds `content-length: 0` to bodyless requests of methods that may
            // carry a body (`requestShouldHaveNoBody`: not GET, HEAD, DELETE,
            // CONNECT, TRACE).
            let no_body_method = matches!(
                req.method,
                Method::GET | Method::HEAD | Method::DELETE | Method::CONNECT | Method::TRACE
            );
            if !b.is_empty() || headers.contains_key(CONTENT_LENGTH) || !no_body_method {
                encode::RequestFraming::Length(b.len() as u64)
            } else {
                encode::RequestFraming::AsIs
            }
        } else if chunked {
            encode::RequestFraming::Chunked
        } else {
            encode::RequestFraming::AsIs
        };
        let mut head = worker.take_head_buf();
        encode::request_head(
            &req.method,
            path,
            Some(authority.as_bytes()),
            headers,
            cluster.config.http1.proper_case_headers,
            framing,
            &mut head,
        );
        info.mark(|t| &mut t.first_upstream_tx);
        let stats = &cluster.stats.traffic;
        let empty: &[u8] = &[];
        let body_bytes = body.clone().unwrap_or_default();
        let mut early_response = false;
        let first: [&[u8]; 2] = [&head, if streaming_body { empty } else { &body_bytes }];
        match upstream_h1::write_or_readable(&mut conn.stream, &first).await {
            Ok(WriteOutcome::Written) => {}
            Ok(WriteOutcome::ResponseStarted) => early_response = true,
            Err(e) => {
                let reused = conn.requests > 1;
                close_h1(conn, cluster, false);
                let _ = reused;
                return Err(AttemptFailure::Reset {
                    reason: e.reset_reason(),
                });
            }
        }
        worker.stats.add(
            stats.upstream_cx_tx_bytes_total,
            (head.len() + body_bytes.len()) as u64,
        );
        worker.put_head_buf(head);
        if streaming_body && !early_response {
            // Stream the request body as it arrives.
            loop {
                let chunk = match prefix.take() {
                    Some(p) => Ok(Some(p)),
                    None => tokio::select! {
                        biased;
                        r = ds.read_body() => r,
                        _ = conn.stream.readable() => { early_response = true; break; }
                    },
                };
                match chunk {
                    Ok(Some(data)) => {
                        let mut hdr = Vec::new();
                        if chunked {
                            crate::h1::body::chunk_header(data.len(), &mut hdr);
                        }
                        let crlf: &[u8] = if chunked { b"\r\n" } else { b"" };
                        let parts: [&[u8]; 3] = [&hdr, &data, crlf];
                        match upstream_h1::write_or_readable(&mut conn.stream, &parts).await {
                            Ok(WriteOutcome::Written) => {}
                            Ok(WriteOutcome::ResponseStarted) => {
                                early_response = true;
                                break;
                            }
                            Err(e) => {
                                close_h1(conn, cluster, false);
                                return Err(AttemptFailure::Reset {
                                    reason: e.reset_reason(),
                                });
                            }
                        }
                        stats.upstream_cx_tx_bytes_total.add(data.len() as u64);
                    }
                    Ok(None) => {
                        if chunked {
                            let mut tail = Vec::new();
                            crate::h1::body::last_chunk(ds.take_trailers().as_ref(), &mut tail);
                            if upstream_h1::write_or_readable(&mut conn.stream, &[&tail])
                                .await
                                .is_err()
                            {
                                close_h1(conn, cluster, false);
                                return Err(AttemptFailure::Reset {
                                    reason: "connection termination",
                                });
                            }
                        }
                        break;
                    }
                    Err(_) => {
                        close_h1(conn, cluster, true);
                        return Err(AttemptFailure::Downstream);
                    }
                }
            }
            info.mark(|t| &mut t.last_downstream_rx);
        } else if let Some(t) = trailers {
            let _ = t;
        }
        info.mark(|t| &mut t.last_upstream_tx);
        let limits = HeadLimits {
            max_head_bytes: 60 * 1024,
            max_headers: cluster.config.common_http.max_headers_count as usize,
        };
        let head = loop {
            let read = tokio::select! {
                biased;
                r = upstream_h1::read_response_head(&mut conn, limits) => r,
                _ = ds.closed() => {
                    close_h1(conn, cluster, true);
                    return Err(AttemptFailure::Downstream);
                }
            };
            match read {
                Ok(h) if h.status.as_u16() == 100 => {
                    if rt.hcm.proxy_100_continue {
                        let _ = ds.send_continue().await;
                    }
                    continue;
                }
                Ok(h)
                    if h.status.is_informational()
                        && h.status != StatusCode::SWITCHING_PROTOCOLS =>
                {
                    continue;
                }
                Ok(h) => break h,
                Err(e) => {
                    let reason = e.reset_reason();
                    if matches!(e, UpstreamError::Protocol | UpstreamError::HeadersTooLarge) {
                        stats.upstream_cx_protocol_error.inc();
                    }
                    close_h1(conn, cluster, false);
                    return Err(AttemptFailure::Reset { reason });
                }
            }
        };
        let _ = early_response;
        info.mark(|t| &mut t.first_upstream_rx);
        info.upstream_protocol = Some(Protocol::Http11);
        let framing = match parse::response_framing(&head, &req.method) {
            Ok(f) => f,
            Err(_) => {
                stats.upstream_cx_protocol_error.inc();
                close_h1(conn, cluster, false);
                return Err(AttemptFailure::Reset {
                    reason: "protocol error",
                });
            }
        };
        if head.close {
            // The upstream said it closes after this response (`connection:
            // close`, or HTTP/1.0 without keep-alive): we close it when done.
            cluster.stats.traffic.upstream_cx_close_notify.inc();
            conn.close_notified = true;
        }
        let close = head.close
            || framing == BodyFraming::UntilClose
            || head.status == StatusCode::SWITCHING_PROTOCOLS;
        Ok(UpstreamResponse {
            status: head.status,
            reason: head.reason,
            headers: head.headers,
            body: UpstreamBody::H1 {
                conn,
                decoder: BodyDecoder::new(framing),
                close,
            },
        })
    }
}

/// Response body bytes gathered from an HTTP/1 upstream before they are
/// written downstream: pieces already read, or readable at once, join the
/// write of the piece before them until this much is gathered.
const GATHER_BODY: usize = 128 * 1024;

/// Sends an upstream response downstream (head, body, trailers).
#[allow(clippy::too_many_arguments)]
#[allow(clippy::manual_async_fn)] // an `async move` block on purpose, see the body
fn send_response<D: Downstream>(
    ds: &mut D,
    resp: UpstreamResponse,
    info: &mut RequestInfo,
    rt: &Arc<HttpListenerRuntime>,
    worker: &Rc<WorkerContext>,
    rc: &RouteConfig,
    vhost: &VirtualHost,
    route: &Route,
    _action: &ForwardAction,
    start: Instant,
    attempt: u32,
    deadline: ResponseDeadline,
    _grpc: bool,
    cluster: &Arc<Cluster>,
    weighted: Option<&rvoy_model::route::ClusterWeight>,
) -> impl std::future::Future<Output = StreamOutcome> {
    // An `async move` block, not an `async fn`: the latter keeps a second
    // copy of its arguments in the future (rust-lang/rust#62958), written
    // on every request.
    async move {
        let UpstreamResponse {
            status,
            reason,
            mut headers,
            body,
        } = resp;
        let code = status.as_u16();
        let stats = &cluster.stats.traffic;
        let rec = &worker.stats;
        cluster.stats.rq_codes.inc_with(rec, code);
        let upstream_ms = crate::clock::elapsed(start).as_millis() as u64;
        stats.upstream_rq_time.record_with(rec, upstream_ms);
        if let Some(h) = &info.upstream_host {
            if code >= 500 {
                rvoy_upstream::host::HostStats::inc(&h.stats.rq_error);
            } else {
                rvoy_upstream::host::HostStats::inc(&h.stats.rq_success);
            }
        }
        let request_upgrade = info
            .request_headers
            .as_ref()
            .is_some_and(forwarding::is_upgrade);
        let suppress = router_config(rt).is_some_and(|r| r.suppress_envoy_headers);
        if !suppress && status != StatusCode::SWITCHING_PROTOCOLS {
            headers.insert(
                names::X_ENVOY_UPSTREAM_SERVICE_TIME.clone(),
                forwarding::decimal_value(upstream_ms),
            );
        }
        if vhost.include_attempt_count_in_response {
            headers.insert(
                names::X_ENVOY_ATTEMPT_COUNT.clone(),
                forwarding::decimal_value(u64::from(attempt)),
            );
        }
        if let Some(w) = weighted {
            apply_mutations(&w.response_headers, &mut headers, info);
        }
        finalize_response_headers(&mut headers, route, vhost, rc, info);
        let seen = forwarding::mutate_response(
            &mut headers,
            request_upgrade,
            info.request_id.as_deref(),
            &rt.hcm,
        );
        if !seen.date {
            headers.insert(http::header::DATE, worker.date.now());
        }
        info.response_status = Some(status);
        info.response_code_details = Some("via_upstream");
        if seen.grpc_status
            && let Some(g) = headers
                .get(&crate::grpc::GRPC_STATUS)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
        {
            info.grpc_status = Some(g);
        }
        // Envoy writes the standard reason phrase, not the upstream's.
        let _ = reason;
        let reason_ref: Option<&[u8]> = None;
        info.mark(|t| &mut t.first_downstream_tx);
        match body {
            UpstreamBody::Empty => {
                ds.encode_headers(status, &mut headers, true, info);
                let ok = ds
                    .send_head(status, reason_ref, &mut headers, true)
                    .await
                    .is_ok();
                info.response_headers = Some(headers);
                rec.inc(stats.upstream_rq_completed);
                StreamOutcome {
                    close: !ok,
                    reset: !ok,
                    redirected: false,
                }
            }
            UpstreamBody::H1 {
                mut conn,
                mut decoder,
                close,
            } => {
                let end = decoder.is_done() && status != StatusCode::SWITCHING_PROTOCOLS;
                ds.encode_headers(status, &mut headers, end, info);
                if ds
                    .send_head(status, reason_ref, &mut headers, end)
                    .await
                    .is_err()
                {
                    info.response_headers = Some(headers);
                    close_h1(conn, cluster, true);
                    return StreamOutcome {
                        close: true,
                        reset: true,
                        redirected: false,
                    };
                }
                info.response_headers = Some(headers);
                if status == StatusCode::SWITCHING_PROTOCOLS {
                    // The connection is now a tunnel: send the 101 now, then relay bytes.
                    if ds.send_data(Bytes::new(), false).await.is_err() {
                        close_h1(conn, cluster, true);
                        return StreamOutcome {
                            close: true,
                            reset: true,
                            redirected: false,
                        };
                    }
                    return tunnel_h1(ds, conn, cluster, info).await;
                }
                let mut trailers: Option<HeaderMap>;
                if !end {
                    // A piece had while gathering the one before (not body data).
                    let mut ready = None;
                    loop {
                        // What is already buffered needs no waiting and no timers
                        // (a small response's body came with its head).
                        let read = match ready
                            .take()
                            .or_else(|| upstream_h1::decode_buffered(&mut conn, &mut decoder))
                        {
                            Some(r) => Ok(r),
                            None => tokio::select! {
                                biased;
                                r = deadline.read(upstream_h1::read_body(&mut conn, &mut decoder)) => r,
                                _ = ds.closed() => {
                                    close_h1(conn, cluster, true);
                                    info.downstream_disconnected();
                                    return StreamOutcome {
                                        close: true,
                                        reset: true, redirected: false };
                                }
                            },
                        };
                        let read = match read {
                            Ok(r) => r,
                            Err(kind) => {
                                ResponseDeadline::on_timeout(kind, info, cluster);
                                close_h1(conn, cluster, true);
                                return StreamOutcome {
                                    close: true,
                                    reset: true,
                                    redirected: false,
                                };
                            }
                        };
                        match read {
                            Ok(Body::Data(d)) => {
                                // The rest of a large body is often in the socket
                                // already: it goes out with this piece, in one write.
                                let mut parts = [d, Bytes::new(), Bytes::new()];
                                let mut n = 1;
                                let mut size = parts[0].len();
                                while n < parts.len() && size < GATHER_BODY && !decoder.is_done() {
                                    match upstream_h1::next_ready(&mut conn, &mut decoder) {
                                        Some(Ok(Body::Data(more))) => {
                                            size += more.len();
                                            parts[n] = more;
                                            n += 1;
                                        }
                                        other => {
                                            ready = other;
                                            break;
                                        }
                                    }
                                }
                                let sent = if n == 1 {
                                    let [d, _, _] = parts;
                                    ds.send_data(d, false).await
                                } else {
                                    ds.send_data_parts(&parts[..n]).await
                                };
                                if sent.is_err() {
                                    close_h1(conn, cluster, true);
                                    info.downstream_disconnected();
                                    return StreamOutcome {
                                        close: true,
                                        reset: true,
                                        redirected: false,
                                    };
                                }
                            }
                            Ok(Body::End(t)) => {
                                trailers = t;
                                break;
                            }
                            Err(_) => {
                                close_h1(conn, cluster, false);
                                info.set_flag(ResponseFlag::UpstreamConnectionTermination);
                                stats.upstream_rq_rx_reset.inc();
                                return StreamOutcome {
                                    close: true,
                                    reset: true,
                                    redirected: false,
                                };
                            }
                        }
                    }
                    let done = match trailers.take() {
                        Some(t) if ds.protocol() == Protocol::Http2 || !t.is_empty() => {
                            info.response_trailers = Some(t.clone());
                            ds.send_trailers(t).await
                        }
                        _ => ds.send_data(Bytes::new(), true).await,
                    };
                    if done.is_err() {
                        close_h1(conn, cluster, true);
                        return StreamOutcome {
                            close: true,
                            reset: true,
                            redirected: false,
                        };
                    }
                }
                info.mark(|t| &mut t.last_upstream_rx);
                info.mark(|t| &mut t.last_downstream_tx);
                rec.inc(stats.upstream_rq_completed);
                let max_requests = cluster.config.common_http.max_requests_per_connection;
                let exhausted = max_requests.is_some_and(|m| conn.requests >= m);
                if exhausted {
                    stats.upstream_cx_max_requests.inc();
                }
                if close || exhausted || !decoder.is_done() || !conn.read_buf.is_empty() {
                    let local = exhausted || conn.close_notified;
                    close_h1(conn, cluster, local);
                } else {
                    let key = PoolKey::new(&cluster.config, &conn.host);
                    worker.h1_pools.put(key, conn);
                }
                StreamOutcome::default()
            }
            UpstreamBody::H2(h2) => {
                crate::upstream_h2::relay_response(
                    ds, h2, status, reason_ref, headers, info, cluster, deadline,
                )
                .await
            }
        }
    }
}

/// After a `101 Switching Protocols`: copy bytes both ways until either side closes.
async fn tunnel_h1<D: Downstream>(
    ds: &mut D,
    mut conn: H1Conn,
    cluster: &Arc<Cluster>,
    info: &mut RequestInfo,
) -> StreamOutcome {
    use tokio::io::AsyncWriteExt;
    let _ = info;
    loop {
        tokio::select! {
            up = upstream_h1::read_some(&mut conn) => match up {
                Ok(Some(data)) => {
                    if ds.send_data(data, false).await.is_err() { break; }
                }
                _ => break,
            },
            down = ds.read_raw() => match down {
                Ok(Some(data)) => {
                    if conn.stream.write_all(&data).await.is_err() { break; }
                }
                _ => break,
            },
        }
    }
    close_h1(conn, cluster, true);
    StreamOutcome {
        close: true,
        reset: false,
        redirected: false,
    }
}

/// Sends a copy of the request to a mirror cluster, ignoring the answer, as
/// Envoy's shadow requests do (an internal request from this proxy: the
/// `x-envoy-internal` header and this host appended to `x-forwarded-for`).
#[allow(clippy::too_many_arguments)]
fn spawn_mirror(
    mirror: &rvoy_model::route::MirrorPolicy,
    rt: &Arc<HttpListenerRuntime>,
    worker: &Rc<WorkerContext>,
    method: &Method,
    path: &str,
    authority: &str,
    headers: &HeaderMap,
    body: Bytes,
) {
    if let Some(f) = &mirror.fraction
        && !f.default.sample(fastrand::u64(..))
    {
        return;
    }
    let name = match &mirror.cluster {
        ClusterName::Static(n) => n.to_string(),
        ClusterName::Header(h) => match headers.get(h).and_then(|v| v.to_str().ok()) {
            Some(n) => n.to_owned(),
            None => return,
        },
    };
    let Some(cluster) = rt.clusters.get(&name).cloned() else {
        return;
    };
    let shadow_authority = match &mirror.host_rewrite_literal {
        Some(h) => h.clone(),
        None if mirror.disable_shadow_host_suffix_append => authority.to_owned(),
        None => shadow_host(authority),
    };
    let mut headers = headers.clone();
    headers.remove(HOST);
    headers.insert(
        names::X_ENVOY_INTERNAL.clone(),
        HeaderValue::from_static("true"),
    );
    if let Some(ip) = rt.machine_address
        && let Ok(v) = HeaderValue::from_str(&ip.to_string())
    {
        forwarding::append_comma_no_space(&mut headers, &names::X_FORWARDED_FOR, &v);
    }
    let request = Request {
        method: method.clone(),
        path: path.into(),
        authority: Some(shadow_authority.as_str().into()),
        scheme: None,
        headers: HeaderMap::new(),
        protocol: Protocol::Http11,
        expect_continue: false,
        has_body: !body.is_empty(),
        head_bytes: 0,
        replay_body: None,
        internal_redirects: 0,
    };
    let rt = rt.clone();
    let worker = worker.clone();
    let path = path.to_owned();
    tokio::task::spawn_local(async move {
        let mut info = RequestInfo::new(Protocol::Http11, 0, None, None);
        let mut null = NullDownstream;
        let set = cluster.hosts_full();
        let lb = worker.lb_state(&cluster);
        let Some(host) = lb.choose(cluster.config.lb_policy, &set, &|_| false, 1) else {
            cluster.stats.traffic.upstream_cx_none_healthy.inc();
            return;
        };
        cluster.stats.traffic.upstream_rq_total.inc();
        let h2 = matches!(cluster.config.protocol, UpstreamProtocol::Http2);
        let result = if h2 {
            crate::upstream_h2::exchange(
                &mut null,
                &request,
                &mut info,
                &rt,
                &worker,
                &cluster,
                &host,
                &headers,
                &path,
                &shadow_authority,
                Some(body),
                None,
                None,
            )
            .await
        } else {
            exchange_h1(
                &mut null,
                &request,
                &mut info,
                &rt,
                &worker,
                &cluster,
                &host,
                &headers,
                &path,
                &shadow_authority,
                Some(body),
                None,
                None,
            )
            .await
        };
        let Ok(resp) = result else { return };
        cluster.stats.rq_codes.inc(resp.status.as_u16());
        match resp.body {
            UpstreamBody::H1 {
                mut conn,
                mut decoder,
                close,
            } => {
                loop {
                    match upstream_h1::read_body(&mut conn, &mut decoder).await {
                        Ok(Body::Data(_)) => {}
                        Ok(Body::End(_)) => break,
                        Err(_) => {
                            close_h1(conn, &cluster, false);
                            return;
                        }
                    }
                }
                cluster.stats.traffic.upstream_rq_completed.inc();
                if close || !decoder.is_done() {
                    close_h1(conn, &cluster, true);
                } else {
                    let key = PoolKey::new(&cluster.config, &conn.host);
                    worker.h1_pools.put(key, conn);
                }
            }
            UpstreamBody::H2(mut h2) => {
                while let Some(Ok(chunk)) = h2.body.data().await {
                    let _ = h2.body.flow_control().release_capacity(chunk.len());
                }
                cluster.stats.traffic.upstream_rq_completed.inc();
            }
            UpstreamBody::Empty => cluster.stats.traffic.upstream_rq_completed.inc(),
        }
    });
}

/// A downstream for requests the proxy makes itself (mirrors): no client.
struct NullDownstream;

impl Downstream for NullDownstream {
    fn protocol(&self) -> Protocol {
        Protocol::Http11
    }
    async fn read_body(&mut self) -> Result<Option<Bytes>, crate::downstream::DownstreamError> {
        Ok(None)
    }
    fn body_complete(&self) -> bool {
        true
    }
    fn take_trailers(&mut self) -> Option<HeaderMap> {
        None
    }
    async fn send_continue(&mut self) -> Result<(), crate::downstream::DownstreamError> {
        Ok(())
    }
    async fn send_head(
        &mut self,
        _: StatusCode,
        _: Option<&[u8]>,
        _: &mut HeaderMap,
        _: bool,
    ) -> Result<(), crate::downstream::DownstreamError> {
        Ok(())
    }
    async fn send_data(
        &mut self,
        _: Bytes,
        _: bool,
    ) -> Result<(), crate::downstream::DownstreamError> {
        Ok(())
    }
    async fn send_trailers(
        &mut self,
        _: HeaderMap,
    ) -> Result<(), crate::downstream::DownstreamError> {
        Ok(())
    }
    fn bytes_sent(&self) -> u64 {
        0
    }
    fn bytes_received(&self) -> u64 {
        0
    }
}

/// Envoy's shadow host: `-shadow` appended to the host name (before any port).
fn shadow_host(authority: &str) -> String {
    match rvoy_model::route::strip_port(authority) {
        Some(h) => format!("{h}-shadow{}", &authority[h.len()..]),
        None => format!("{authority}-shadow"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_url_parts() {
        let u = AbsoluteUrl::parse("http://example.com:8080/a/b?x=1#frag").unwrap();
        assert_eq!(u.scheme, "http");
        assert_eq!(u.host_and_port, "example.com:8080");
        assert_eq!(u.path_and_query, "/a/b?x=1");
        let u = AbsoluteUrl::parse("https://h").unwrap();
        assert_eq!(u.path_and_query, "/");
        let u = AbsoluteUrl::parse("https://h?q").unwrap();
        assert_eq!(u.path_and_query, "/?q");
        assert!(AbsoluteUrl::parse("/relative").is_none());
        assert!(AbsoluteUrl::parse("http:///nohost").is_none());
        assert!(AbsoluteUrl::parse("://x/").is_none());
    }
}
