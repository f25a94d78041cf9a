//! `envoy.filters.http.cors`: answers preflight requests from allowed origins
//! and adds `access-control-allow-origin` (and friends) to responses of
//! cross-origin requests, per the route's [`CorsPolicy`] levels.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use rvoy_model::http_filters::PerRouteConfig;
use rvoy_model::http_filters::cors::CorsPolicy;
use rvoy_stats::{Counter, Scope};

use super::{Decoded, RouteContext};
use crate::local_reply::LocalReply;
use crate::stream::Request;

mod names {
    use http::HeaderName;
    pub static ORIGIN: HeaderName = HeaderName::from_static("origin");
    pub static REQUEST_METHOD: HeaderName =
        HeaderName::from_static("access-control-request-method");
    pub static REQUEST_PRIVATE_NETWORK: HeaderName =
        HeaderName::from_static("access-control-request-private-network");
    pub static ALLOW_ORIGIN: HeaderName = HeaderName::from_static("access-control-allow-origin");
    pub static ALLOW_CREDENTIALS: HeaderName =
        HeaderName::from_static("access-control-allow-credentials");
    pub static ALLOW_METHODS: HeaderName = HeaderName::from_static("access-control-allow-methods");
    pub static ALLOW_HEADERS: HeaderName = HeaderName::from_static("access-control-allow-headers");
    pub static MAX_AGE: HeaderName = HeaderName::from_static("access-control-max-age");
    pub static EXPOSE_HEADERS: HeaderName =
        HeaderName::from_static("access-control-expose-headers");
    pub static ALLOW_PRIVATE_NETWORK: HeaderName =
        HeaderName::from_static("access-control-allow-private-network");
}

/// `http.<stat_prefix>.cors.*`.
#[derive(Debug)]
pub struct CorsRuntime {
    origin_valid: Counter,
    origin_invalid: Counter,
}

impl CorsRuntime {
    pub fn new(hcm_scope: &Scope) -> Self {
        let scope = hcm_scope.scope("cors.");
        CorsRuntime {
            origin_valid: scope.counter("origin_valid"),
            origin_invalid: scope.counter("origin_invalid"),
        }
    }
}

/// The CORS state of one request.
#[derive(Default)]
pub struct ActiveCors {
    /// The policy levels, most specific first.
    policies: Vec<Arc<CorsPolicy>>,
    /// The request's origin when it is an allowed cross-origin request.
    origin: Option<HeaderValue>,
}

impl ActiveCors {
    fn first<'a, T: ?Sized>(
        &'a self,
        f: impl Fn(&'a CorsPolicy) -> Option<&'a T>,
    ) -> Option<&'a T> {
        self.policies.iter().find_map(|p| f(p))
    }

    fn string(&self, f: impl Fn(&CorsPolicy) -> &String) -> &str {
        self.policies
            .iter()
            .map(|p| f(p).as_str())
            .find(|s| !s.is_empty())
            .unwrap_or("")
    }

    fn flag(&self, f: impl Fn(&CorsPolicy) -> Option<bool>) -> Option<bool> {
        self.policies.iter().find_map(|p| f(p))
    }

    fn enabled(&self) -> bool {
        self.first(|p| p.filter_enabled.as_ref())
            .is_none_or(|f| f.default.sample(fastrand::u64(..)))
    }

    fn shadow_enabled(&self) -> bool {
        self.first(|p| p.shadow_enabled.as_ref())
            .is_some_and(|f| f.default.sample(fastrand::u64(..)))
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        self.policies
            .iter()
            .find(|p| !p.allow_origins.is_empty())
            .is_some_and(|p| p.allow_origins.iter().any(|m| m.matches(origin)))
    }

    /// Adds the response headers of an allowed cross-origin request.
    pub fn encode_headers(&mut self, headers: &mut HeaderMap) {
        let Some(origin) = self.origin.clone() else {
            return;
        };
        headers.insert(names::ALLOW_ORIGIN.clone(), origin);
        if self.flag(|p| p.allow_credentials) == Some(true) {
            headers.insert(
                names::ALLOW_CREDENTIALS.clone(),
                HeaderValue::from_static("true"),
            );
        }
        let expose = self.string(|p| &p.expose_headers);
        if let Ok(v) = HeaderValue::from_str(expose)
            && !expose.is_empty()
        {
            headers.insert(names::EXPOSE_HEADERS.clone(), v);
        }
    }
}

fn is_preflight(req: &Request) -> bool {
    req.method == Method::OPTIONS
        && req
            .headers
            .get(&names::REQUEST_METHOD)
            .is_some_and(|v| !v.is_empty())
}

pub fn decode_headers(
    rt: &CorsRuntime,
    name: &str,
    ctx: RouteContext<'_>,
    req: &Request,
) -> (ActiveCors, Decoded) {
    let mut active = ActiveCors::default();
    if ctx.route.is_none() {
        return (active, Decoded::Continue);
    }
    active.policies = ctx
        .configs(name)
        .filter_map(|c| match c {
            PerRouteConfig::Cors(p) => Some(p.clone()),
            _ => None,
        })
        .collect();
    if active.policies.is_empty() {
        return (active, Decoded::Continue);
    }
    let enabled = active.enabled();
    if !enabled && !active.shadow_enabled() {
        return (active, Decoded::Continue);
    }
    let Some(origin) = req.headers.get(&names::ORIGIN).filter(|v| !v.is_empty()) else {
        return (active, Decoded::Continue);
    };
    let origin_str = origin.to_str().unwrap_or("");
    if !active.origin_allowed(origin_str) {
        rt.origin_invalid.inc();
        if enabled
            && active.flag(|p| p.forward_not_matching_preflights) == Some(false)
            && is_preflight(req)
        {
            let mut reply = LocalReply::new(StatusCode::OK, Bytes::new(), "cors_response");
            reply.raw = true;
            return (active, Decoded::Reply(reply));
        }
        return (active, Decoded::Continue);
    }
    rt.origin_valid.inc();
    if !enabled {
        return (active, Decoded::Continue);
    }
    active.origin = Some(origin.clone());
    if !is_preflight(req) {
        return (active, Decoded::Continue);
    }
    let mut reply = LocalReply::new(StatusCode::OK, Bytes::new(), "cors_response");
    reply.raw = true;
    let h = &mut reply.headers;
    h.insert(names::ALLOW_ORIGIN.clone(), origin.clone());
    if active.flag(|p| p.allow_credentials) == Some(true) {
        h.insert(
            names::ALLOW_CREDENTIALS.clone(),
            HeaderValue::from_static("true"),
        );
    }
    for (name, value) in [
        (&names::ALLOW_METHODS, active.string(|p| &p.allow_methods)),
        (&names::ALLOW_HEADERS, active.string(|p| &p.allow_headers)),
        (&names::MAX_AGE, active.string(|p| &p.max_age)),
    ] {
        if !value.is_empty()
            && let Ok(v) = HeaderValue::from_str(value)
        {
            h.insert(name.clone(), v);
        }
    }
    if active.flag(|p| p.allow_private_network_access) == Some(true)
        && req
            .headers
            .get(&names::REQUEST_PRIVATE_NETWORK)
            .is_some_and(|v| v.as_bytes() == b"true")
    {
        h.insert(
            names::ALLOW_PRIVATE_NETWORK.clone(),
            HeaderValue::from_static("true"),
        );
    }
    (active, Decoded::Reply(reply))
}
