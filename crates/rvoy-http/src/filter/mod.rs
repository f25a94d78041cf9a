//! The HTTP filter chain of a stream (Envoy's filter manager).
//!
//! Before the router, each configured filter that is enabled for the route
//! sees the request head in order ([`FilterChain::decode_headers`]) and may
//! answer it locally. Every response then goes back through the filters in
//! reverse order: [`Encoder`] wraps the downstream so that response headers
//! ([`Downstream::encode_headers`]), body data and trailers pass through each
//! filter's encode hooks, whoever produced them (router, local reply, a filter).
//!
//! Filters are dispatched statically over [`ActiveFilter`]; a chain with no
//! filters costs nothing per request.

pub mod buffer;
pub mod compression;
pub mod compressor;
pub mod cors;
pub mod fault;
pub mod header_mutation;
pub mod health_check;
pub mod local_ratelimit;

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use rvoy_model::http_filters::{FilterConfig, HttpFilter, PerFilterEntry, PerRouteConfig};
use rvoy_model::route::{Route, RouteConfig, VirtualHost};
use rvoy_stats::Scope;

use crate::downstream::{Downstream, DownstreamError, Protocol};
use crate::local_reply::LocalReply;
use crate::request_info::RequestInfo;
use crate::stream::Request;

/// The per-listener runtime of one configured filter (its stats, shared state).
#[derive(Debug)]
pub struct FilterRuntime {
    pub config: HttpFilter,
    pub kind: FilterKind,
}

/// What a filter needs at run time besides its config.
#[derive(Debug)]
pub enum FilterKind {
    Cors(cors::CorsRuntime),
    Compressor(Arc<compressor::CompressorRuntime>),
    HeaderMutation(Arc<rvoy_model::http_filters::header_mutation::HeaderMutation>),
    Buffer(buffer::BufferRuntime),
    HealthCheck(health_check::HealthCheckRuntime),
    Fault(fault::FaultRuntime),
    LocalRateLimit(local_ratelimit::LocalRateLimitRuntime),
}

/// What building an HCM's filters needs from the server besides their configs.
pub struct FilterEnv<'a> {
    /// The store's root scope (filters with a `stat_prefix` of their own).
    pub root_scope: &'a Scope,
    /// Set while the server fails health checks (admin `/healthcheck/fail`).
    pub health_failed: &'a Arc<std::sync::atomic::AtomicBool>,
    pub clusters: &'a rvoy_upstream::cluster::ClusterManager,
    /// `node.cluster`: the local service cluster.
    pub local_cluster: &'a str,
    /// The HCM's route configuration (per-route filter configs with state).
    pub route_config: &'a RouteConfig,
}

/// Builds the runtimes of an HCM's filters; `hcm_scope` is `http.<stat_prefix>.`.
pub fn build(filters: &[HttpFilter], hcm_scope: &Scope, env: &FilterEnv<'_>) -> Vec<FilterRuntime> {
    filters
        .iter()
        .map(|f| FilterRuntime {
            config: f.clone(),
            kind: match &f.config {
                FilterConfig::Cors => FilterKind::Cors(cors::CorsRuntime::new(hcm_scope)),
                FilterConfig::Compressor(c) => FilterKind::Compressor(Arc::new(
                    compressor::CompressorRuntime::new(c, filters, hcm_scope),
                )),
                FilterConfig::HeaderMutation(m) => FilterKind::HeaderMutation(m.clone()),
                FilterConfig::Buffer(b) => {
                    FilterKind::Buffer(buffer::BufferRuntime::new(*b, hcm_scope))
                }
                FilterConfig::HealthCheck(h) => {
                    FilterKind::HealthCheck(health_check::HealthCheckRuntime::new(
                        h.clone(),
                        hcm_scope,
                        env.health_failed.clone(),
                        env.clusters,
                        env.local_cluster,
                    ))
                }
                FilterConfig::Fault(c) => {
                    FilterKind::Fault(fault::FaultRuntime::new(c.clone(), hcm_scope))
                }
                FilterConfig::LocalRateLimit(c) => {
                    FilterKind::LocalRateLimit(local_ratelimit::LocalRateLimitRuntime::new(
                        c.clone(),
                        &f.name,
                        env.route_config,
                        env.root_scope,
                    ))
                }
            },
        })
        .collect()
}

/// The route a request selected, for per-route filter configs.
#[derive(Clone, Copy)]
pub struct RouteContext<'a> {
    pub rc: &'a RouteConfig,
    pub vhost: Option<&'a VirtualHost>,
    pub route: Option<&'a Route>,
}

impl<'a> RouteContext<'a> {
    /// The per-route entries for the filter named `name`, most specific first
    /// (route, virtual host, route configuration).
    pub fn entries(&self, name: &'a str) -> impl Iterator<Item = &'a PerFilterEntry> + 'a {
        let route = self.route.and_then(|r| r.per_filter.get(name));
        let vhost = self.vhost.and_then(|v| v.per_filter.get(name));
        let rc = self.rc.per_filter.get(name);
        [route, vhost, rc].into_iter().flatten()
    }

    /// The per-route configs for the filter, most specific first.
    pub fn configs(&self, name: &'a str) -> impl Iterator<Item = &'a PerRouteConfig> + 'a {
        self.entries(name).filter_map(|e| e.config.as_ref())
    }

    /// Whether the filter runs for this route: the most specific
    /// `FilterConfig.disabled` wins over the filter's default.
    pub fn enabled(&self, filter: &'a HttpFilter) -> bool {
        match self.entries(&filter.name).find_map(|e| e.disabled) {
            Some(disabled) => !disabled,
            None => !filter.disabled_by_default,
        }
    }
}

/// What a filter decided about the request head.
pub enum Decoded {
    Continue,
    /// Answer locally; the filters' encode hooks still run on the reply.
    Reply(LocalReply),
}

/// One filter's per-request state, kept for its response hooks.
pub enum ActiveFilter {
    Cors(cors::ActiveCors),
    Compressor(compressor::ActiveCompressor),
    HeaderMutation(header_mutation::ActiveHeaderMutation),
    Buffer,
    HealthCheck(health_check::ActiveHealthCheck),
    Fault(fault::ActiveFault),
    LocalRateLimit(local_ratelimit::ActiveLocalRateLimit),
}

/// The filters of one request.
#[derive(Default)]
pub struct FilterChain {
    active: Vec<ActiveFilter>,
}

impl FilterChain {
    /// Runs the request hooks of the filters enabled for the route, in order.
    /// A filter may read the request body from `ds` (it then leaves the
    /// whole body in `req.replay_body` for the router), wait, or answer.
    pub async fn decode_headers<D: Downstream>(
        filters: &[FilterRuntime],
        ctx: RouteContext<'_>,
        req: &mut Request,
        info: &mut RequestInfo,
        ds: &mut D,
    ) -> (FilterChain, Option<LocalReply>) {
        let _ = &ds;
        let mut chain = FilterChain::default();
        if filters.is_empty() {
            return (chain, None);
        }
        chain.active.reserve(filters.len());
        for f in filters {
            if !ctx.enabled(&f.config) {
                continue;
            }
            let (active, decoded) = match &f.kind {
                FilterKind::Cors(rt) => {
                    let (a, d) = cors::decode_headers(rt, &f.config.name, ctx, req);
                    (ActiveFilter::Cors(a), d)
                }
                FilterKind::Compressor(rt) => {
                    let (a, d) = compressor::decode_headers(rt, &f.config.name, ctx, req);
                    (ActiveFilter::Compressor(a), d)
                }
                FilterKind::HeaderMutation(config) => {
                    let (a, d) =
                        header_mutation::decode_headers(config, &f.config.name, ctx, req, info);
                    (ActiveFilter::HeaderMutation(a), d)
                }
                FilterKind::Buffer(rt) => {
                    let d = buffer::decode_headers(rt, &f.config.name, ctx, req, ds).await;
                    (ActiveFilter::Buffer, d)
                }
                FilterKind::HealthCheck(rt) => {
                    let (a, d) = health_check::decode_headers(rt, req, info, ds).await;
                    (ActiveFilter::HealthCheck(a), d)
                }
                FilterKind::Fault(rt) => {
                    let (a, d) = fault::decode_headers(rt, &f.config.name, ctx, req, info).await;
                    (ActiveFilter::Fault(a), d)
                }
                FilterKind::LocalRateLimit(rt) => {
                    let (a, d) =
                        local_ratelimit::decode_headers(rt, &f.config.name, ctx, req, info);
                    (ActiveFilter::LocalRateLimit(a), d)
                }
            };
            chain.active.push(active);
            if let Decoded::Reply(reply) = decoded {
                return (chain, Some(reply));
            }
        }
        (chain, None)
    }

    /// Runs the response-head hooks, last filter first.
    pub fn encode_headers(
        &mut self,
        status: StatusCode,
        headers: &mut HeaderMap,
        end_stream: bool,
        info: &RequestInfo,
    ) {
        // The compressors' accept-encoding negotiation, made once for all.
        let mut encoding = None;
        for f in self.active.iter_mut().rev() {
            match f {
                ActiveFilter::Cors(a) => a.encode_headers(headers),
                ActiveFilter::Compressor(a) => {
                    a.encode_headers(status, headers, end_stream, &mut encoding)
                }
                ActiveFilter::HeaderMutation(a) => {
                    a.encode_headers(status, headers, end_stream, info)
                }
                ActiveFilter::HealthCheck(a) => a.encode_headers(status, headers),
                ActiveFilter::LocalRateLimit(a) => a.encode_headers(headers),
                ActiveFilter::Buffer | ActiveFilter::Fault(_) => {}
            }
        }
    }

    /// Runs the response-body hooks, last filter first: each may transform
    /// the chunk (a compressor); at `end_stream` it flushes what it holds.
    fn encode_data(&mut self, mut data: Bytes, end_stream: bool) -> Bytes {
        for f in self.active.iter_mut().rev() {
            data = match f {
                ActiveFilter::Compressor(a) => a.encode_data(data, end_stream),
                ActiveFilter::Cors(_) | ActiveFilter::HeaderMutation(_) => data,
                ActiveFilter::Buffer
                | ActiveFilter::HealthCheck(_)
                | ActiveFilter::Fault(_)
                | ActiveFilter::LocalRateLimit(_) => data,
            };
        }
        let _ = end_stream;
        data
    }

    /// Before trailers end the response: what the filters still hold.
    fn encode_trailers(&mut self, trailers: &mut HeaderMap) -> Bytes {
        let _ = trailers;
        let mut data = Bytes::new();
        for f in self.active.iter_mut().rev() {
            data = match f {
                ActiveFilter::Compressor(a) => a.encode_trailers(data),
                ActiveFilter::Cors(_) | ActiveFilter::HeaderMutation(_) => data,
                ActiveFilter::Buffer
                | ActiveFilter::HealthCheck(_)
                | ActiveFilter::Fault(_)
                | ActiveFilter::LocalRateLimit(_) => data,
            };
        }
        data
    }

    /// The response throughput limit a fault filter put on this response.
    fn response_limiter(&mut self) -> Option<&mut fault::ResponseLimiter> {
        self.active.iter_mut().rev().find_map(|f| match f {
            ActiveFilter::Fault(a) => a.limiter.as_mut(),
            _ => None,
        })
    }

    /// Runs the request-body hooks, in order: each may transform the chunk
    /// (a compressor); at `end_stream` it flushes what it holds.
    fn decode_data(&mut self, mut data: Bytes, end_stream: bool) -> Bytes {
        for f in self.active.iter_mut() {
            if let ActiveFilter::Compressor(a) = f {
                data = a.decode_data(data, end_stream);
            }
        }
        data
    }

    /// Whether a filter transforms or paces the response body (a
    /// compressor, a fault filter's throughput limit).
    fn encodes_data(&self) -> bool {
        self.active.iter().any(|f| match f {
            ActiveFilter::Compressor(_) => true,
            ActiveFilter::Fault(a) => a.limiter.is_some(),
            _ => false,
        })
    }

    /// Whether a filter transforms the request body.
    fn decodes_data(&self) -> bool {
        self.active
            .iter()
            .any(|f| matches!(f, ActiveFilter::Compressor(a) if a.compresses_request()))
    }
}

/// The downstream as the filters' encode hooks see it.
pub struct Encoder<'a, D> {
    pub inner: &'a mut D,
    pub chain: FilterChain,
}

impl<D: Downstream> Downstream for Encoder<'_, D> {
    fn protocol(&self) -> Protocol {
        self.inner.protocol()
    }

    async fn read_body(&mut self) -> Result<Option<Bytes>, DownstreamError> {
        if !self.chain.decodes_data() {
            return self.inner.read_body().await;
        }
        loop {
            match self.inner.read_body().await? {
                Some(data) => {
                    let end = self.inner.body_complete();
                    let out = self.chain.decode_data(data, end);
                    if !out.is_empty() {
                        return Ok(Some(out));
                    }
                }
                None => {
                    let tail = self.chain.decode_data(Bytes::new(), true);
                    return Ok((!tail.is_empty()).then_some(tail));
                }
            }
        }
    }

    fn body_complete(&self) -> bool {
        self.inner.body_complete()
    }

    async fn read_raw(&mut self) -> Result<Option<Bytes>, DownstreamError> {
        self.inner.read_raw().await
    }

    fn take_trailers(&mut self) -> Option<HeaderMap> {
        self.inner.take_trailers()
    }

    async fn closed(&mut self) {
        self.inner.closed().await
    }

    async fn send_continue(&mut self) -> Result<(), DownstreamError> {
        self.inner.send_continue().await
    }

    fn encode_headers(
        &mut self,
        status: StatusCode,
        headers: &mut HeaderMap,
        end_stream: bool,
        info: &RequestInfo,
    ) {
        self.chain.encode_headers(status, headers, end_stream, info);
        self.inner.encode_headers(status, headers, end_stream, info);
    }

    async fn send_head(
        &mut self,
        status: StatusCode,
        reason: Option<&[u8]>,
        headers: &mut HeaderMap,
        end_stream: bool,
    ) -> Result<(), DownstreamError> {
        self.inner
            .send_head(status, reason, headers, end_stream)
            .await
    }

    async fn send_data(&mut self, data: Bytes, end_stream: bool) -> Result<(), DownstreamError> {
        let data = self.chain.encode_data(data, end_stream);
        if let Some(limiter) = self.chain.response_limiter() {
            return limiter.send(self.inner, data, end_stream).await;
        }
        self.inner.send_data(data, end_stream).await
    }

    async fn send_data_parts(&mut self, parts: &[Bytes]) -> Result<(), DownstreamError> {
        if self.chain.encodes_data() {
            for part in parts {
                self.send_data(part.clone(), false).await?;
            }
            return Ok(());
        }
        self.inner.send_data_parts(parts).await
    }

    async fn send_trailers(&mut self, mut trailers: HeaderMap) -> Result<(), DownstreamError> {
        let held = self.chain.encode_trailers(&mut trailers);
        if !held.is_empty() {
            self.inner.send_data(held, false).await?;
        }
        self.inner.send_trailers(trailers).await
    }

    fn bytes_sent(&self) -> u64 {
        self.inner.bytes_sent()
    }

    fn bytes_received(&self) -> u64 {
        self.inner.bytes_received()
    }

    fn set_close(&mut self) {
        self.inner.set_close();
    }

    fn use_http11_status_line(&mut self) {
        self.inner.use_http11_status_line();
    }

    fn close_request_counts(&mut self, stage: crate::downstream::CloseStage) {
        self.inner.close_request_counts(stage);
    }

    fn answered_later(&mut self) {
        self.inner.answered_later();
    }

    fn timers(&self) -> Option<std::rc::Rc<crate::stream_timers::StreamTimers>> {
        self.inner.timers()
    }
}
