//! `envoy.filters.http.fault`: for requests that match the fault's cluster,
//! downstream nodes and headers, a delay (the request waits, flag `DI`), then
//! maybe an abort (a local reply, body `fault filter abort`, flag `FI`), and a
//! response body throughput limit. Percentages and header-driven values
//! (`x-envoy-fault-*`) follow Envoy's providers; `max_active_faults` bounds
//! concurrent faults across workers.
//!
//! Stats are `http.<stat_prefix>.fault.*`, and per downstream cluster
//! (`x-envoy-downstream-service-cluster`)
//! `http.<stat_prefix>.fault.<cluster>.{aborts,delays}_injected`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, StatusCode};
use rvoy_format::ResponseFlag;
use rvoy_model::http_filters::PerRouteConfig;
use rvoy_model::http_filters::fault::{AbortKind, DelayKind, Fault, RateLimitKind};
use rvoy_model::matcher::FractionalPercent;
use rvoy_model::route::{ClusterName, ClusterSpecifier, RouteAction};
use rvoy_stats::{Counter, Scope};

use super::{Decoded, RouteContext};
use crate::downstream::{Downstream, DownstreamError};
use crate::local_reply::LocalReply;
use crate::request_info::RequestInfo;
use crate::stream::Request;

mod names {
    use http::HeaderName;
    pub static ABORT: HeaderName = HeaderName::from_static("x-envoy-fault-abort-request");
    pub static ABORT_GRPC: HeaderName = HeaderName::from_static("x-envoy-fault-abort-grpc-request");
    pub static ABORT_PERCENT: HeaderName =
        HeaderName::from_static("x-envoy-fault-abort-request-percentage");
    pub static DELAY: HeaderName = HeaderName::from_static("x-envoy-fault-delay-request");
    pub static DELAY_PERCENT: HeaderName =
        HeaderName::from_static("x-envoy-fault-delay-request-percentage");
    pub static THROUGHPUT: HeaderName =
        HeaderName::from_static("x-envoy-fault-throughput-response");
    pub static THROUGHPUT_PERCENT: HeaderName =
        HeaderName::from_static("x-envoy-fault-throughput-response-percentage");
    pub static DOWNSTREAM_CLUSTER: HeaderName =
        HeaderName::from_static("x-envoy-downstream-service-cluster");
    pub static DOWNSTREAM_NODE: HeaderName =
        HeaderName::from_static("x-envoy-downstream-service-node");
}

rvoy_upstream::stats_struct!(
    /// `http.<stat_prefix>.fault.*`.
    FaultStats {
        counters: [aborts_injected, delays_injected, faults_overflow, response_rl_injected],
        gauges: [active_faults],
        histograms: [],
    }
);

/// The filter's state shared by every worker.
#[derive(Debug)]
pub struct FaultRuntime {
    config: Arc<Fault>,
    shared: Arc<Shared>,
    /// `http.<stat_prefix>.fault`, the prefix of per downstream cluster stats.
    cluster_prefix: Arc<str>,
    hcm_scope: Scope,
}

/// The active fault count: the gauge, and its value for `max_active_faults`.
#[derive(Debug)]
struct Shared {
    stats: FaultStats,
    active: AtomicU64,
}

impl FaultRuntime {
    /// `hcm_scope` is `http.<stat_prefix>.`.
    pub fn new(config: Arc<Fault>, hcm_scope: &Scope) -> Self {
        let scope = hcm_scope.scope("fault.");
        FaultRuntime {
            config,
            shared: Arc::new(Shared {
                stats: FaultStats::new(&scope),
                active: AtomicU64::new(0),
            }),
            cluster_prefix: Arc::from(format!("{}fault", hcm_scope.prefix())),
            hcm_scope: hcm_scope.clone(),
        }
    }

    /// `fault.<cluster>.{aborts,delays}_injected` under the HCM scope; the
    /// handles are kept per worker, so the stats store is asked once.
    fn cluster_counters(&self, cluster: &str) -> (Counter, Counter) {
        thread_local! {
            static CACHE: RefCell<ClusterCounters> = RefCell::new(HashMap::new());
        }
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            let by_cluster = match c.get_mut(&*self.cluster_prefix) {
                Some(m) => m,
                None => c.entry(self.cluster_prefix.clone()).or_default(),
            };
            if let Some(pair) = by_cluster.get(cluster) {
                return *pair;
            }
            let pair = (
                self.hcm_scope
                    .counter(&format!("fault.{cluster}.aborts_injected")),
                self.hcm_scope
                    .counter(&format!("fault.{cluster}.delays_injected")),
            );
            by_cluster.insert(Box::from(cluster), pair);
            pair
        })
    }
}

/// Per HCM stats prefix, per downstream cluster: (aborts, delays) injected.
type ClusterCounters = HashMap<Arc<str>, HashMap<Box<str>, (Counter, Counter)>>;

/// One charge against `max_active_faults`, released when dropped.
struct ActiveCharge(Arc<Shared>);

impl Drop for ActiveCharge {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
        self.0.stats.active_faults.dec();
    }
}

/// Paces the response body at a fixed rate (Envoy's `StreamRateLimiter`):
/// a bucket of 16 slices of `kbps * 1024 / 16` bytes, refilled 16 per second,
/// starting full.
pub struct ResponseLimiter {
    bytes_per_slice: u64,
    tokens: f64,
    last: Instant,
}

const SLICES_PER_SECOND: f64 = 16.0;

impl ResponseLimiter {
    fn new(kbps: u64) -> Self {
        ResponseLimiter {
            bytes_per_slice: (kbps.saturating_mul(1024) / 16).max(1),
            tokens: SLICES_PER_SECOND,
            last: crate::clock::now(),
        }
    }

    fn refill(&mut self) {
        let now = crate::clock::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * SLICES_PER_SECOND).min(SLICES_PER_SECOND);
        self.last = now;
    }

    /// Takes up to `want` whole tokens.
    fn consume(&mut self, want: u64) -> u64 {
        self.refill();
        let got = (self.tokens.floor() as u64).min(want);
        self.tokens -= got as f64;
        got
    }

    /// How long until a whole token is there.
    fn next_token(&self) -> Duration {
        let missing = (1.0 - self.tokens).max(0.0);
        Duration::from_secs_f64(missing / SLICES_PER_SECOND).max(Duration::from_millis(1))
    }

    /// Sends `data` downstream as the bucket allows, waiting for tokens.
    pub async fn send<D: Downstream>(
        &mut self,
        ds: &mut D,
        mut data: Bytes,
        end_stream: bool,
    ) -> Result<(), DownstreamError> {
        if data.is_empty() {
            return ds.send_data(data, end_stream).await;
        }
        loop {
            let slices = (data.len() as u64).div_ceil(self.bytes_per_slice);
            let got = self.consume(slices);
            if got > 0 {
                let n = (got * self.bytes_per_slice).min(data.len() as u64) as usize;
                let part = data.split_to(n);
                let last = data.is_empty();
                ds.send_data(part, end_stream && last).await?;
                if last {
                    return Ok(());
                }
            }
            tokio::time::sleep(self.next_token()).await;
        }
    }
}

/// The fault state of one request.
#[derive(Default)]
pub struct ActiveFault {
    charge: Option<ActiveCharge>,
    pub limiter: Option<ResponseLimiter>,
}

impl ActiveFault {
    /// Envoy's `tryIncActiveFaults`: one charge per request, checked against
    /// `max_active_faults` when first taken.
    fn try_charge(&mut self, shared: &Arc<Shared>, settings: &Fault) -> bool {
        if self.charge.is_some() {
            return true;
        }
        let max = settings.max_active_faults.unwrap_or(u64::MAX);
        if shared.active.load(Ordering::Relaxed) >= max {
            shared.stats.faults_overflow.inc();
            return false;
        }
        shared.active.fetch_add(1, Ordering::Relaxed);
        shared.stats.active_faults.inc();
        self.charge = Some(ActiveCharge(shared.clone()));
        true
    }
}

/// The first value of a header as an unsigned number (Envoy's `SimpleAtoi`).
fn header_u64(headers: &HeaderMap, name: &HeaderName) -> Option<u64> {
    let v = headers.get(name)?.to_str().ok()?;
    let v = v.strip_prefix('+').unwrap_or(v);
    v.parse().ok()
}

/// Envoy's `HeaderPercentageProvider`: the header's numerator, capped by the
/// configured one, over the configured denominator.
fn header_percent(
    headers: &HeaderMap,
    name: &HeaderName,
    configured: FractionalPercent,
) -> FractionalPercent {
    match header_u64(headers, name).and_then(|v| u32::try_from(v).ok()) {
        Some(n) => FractionalPercent {
            numerator: n.min(configured.numerator),
            denominator: configured.denominator,
        },
        None => configured,
    }
}

fn sample(p: FractionalPercent) -> bool {
    p.sample(fastrand::u64(..))
}

/// Whether the request goes to `cluster` (Envoy compares the route's cluster
/// name; a weighted cluster is picked by weight, as the route would).
fn routes_to(ctx: RouteContext<'_>, req: &Request, cluster: &str) -> bool {
    let Some(route) = ctx.route else {
        return false;
    };
    let RouteAction::Forward(action) = &route.action else {
        return false;
    };
    match &action.cluster {
        ClusterSpecifier::Cluster(name) => &**name == cluster,
        ClusterSpecifier::Header(h) => req
            .headers
            .get(h)
            .is_some_and(|v| v.as_bytes() == cluster.as_bytes()),
        ClusterSpecifier::Weighted(w) => {
            let random = w
                .random_value_header
                .as_ref()
                .and_then(|h| header_u64(&req.headers, h))
                .unwrap_or_else(|| fastrand::u64(..));
            match w.pick(random).map(|c| &c.name) {
                Some(ClusterName::Static(n)) => &**n == cluster,
                Some(ClusterName::Header(h)) => req
                    .headers
                    .get(h)
                    .is_some_and(|v| v.as_bytes() == cluster.as_bytes()),
                None => false,
            }
        }
    }
}

/// The abort to inject (HTTP status, gRPC status), if the draw says so.
fn abort_status(settings: &Fault, headers: &HeaderMap) -> Option<(StatusCode, Option<u32>)> {
    let abort = settings.abort.as_ref()?;
    let percent = match abort.kind {
        AbortKind::Header => header_percent(headers, &names::ABORT_PERCENT, abort.percentage),
        _ => abort.percentage,
    };
    if !sample(percent) {
        return None;
    }
    let http = match abort.kind {
        AbortKind::Http(code) => Some(u64::from(code)),
        AbortKind::Grpc(_) => None,
        AbortKind::Header => header_u64(headers, &names::ABORT).filter(|c| (200..600).contains(c)),
    };
    if let Some(code) = http {
        return StatusCode::from_u16(code as u16).ok().map(|s| (s, None));
    }
    let grpc = match abort.kind {
        AbortKind::Grpc(g) => Some(g),
        AbortKind::Http(_) => None,
        AbortKind::Header => header_u64(headers, &names::ABORT_GRPC).map(|g| g as u32),
    };
    grpc.map(|g| (StatusCode::OK, Some(g)))
}

/// The delay to inject, if the draw says so and it is not zero.
fn delay_duration(settings: &Fault, headers: &HeaderMap) -> Option<Duration> {
    let delay = settings.delay.as_ref()?;
    let percent = match delay.kind {
        DelayKind::Header => header_percent(headers, &names::DELAY_PERCENT, delay.percentage),
        DelayKind::Fixed(_) => delay.percentage,
    };
    if !sample(percent) {
        return None;
    }
    let d = match &delay.kind {
        DelayKind::Fixed(d) => *d,
        DelayKind::Header => Duration::from_millis(header_u64(headers, &names::DELAY)?),
    };
    (!d.is_zero()).then_some(d)
}

/// The response rate limit to apply, in KiB/s.
fn rate_limit_kbps(settings: &Fault, headers: &HeaderMap) -> Option<u64> {
    let rl = settings.response_rate_limit.as_ref()?;
    let percent = match rl.kind {
        RateLimitKind::Header => header_percent(headers, &names::THROUGHPUT_PERCENT, rl.percentage),
        RateLimitKind::Fixed(_) => rl.percentage,
    };
    if !sample(percent) {
        return None;
    }
    match rl.kind {
        RateLimitKind::Fixed(k) => Some(k),
        RateLimitKind::Header => header_u64(headers, &names::THROUGHPUT).filter(|k| *k > 0),
    }
}

pub async fn decode_headers(
    rt: &FaultRuntime,
    name: &str,
    ctx: RouteContext<'_>,
    req: &Request,
    info: &mut RequestInfo,
) -> (ActiveFault, Decoded) {
    let mut active = ActiveFault::default();
    let settings: &Fault = ctx
        .configs(name)
        .find_map(|c| match c {
            PerRouteConfig::Fault(f) => Some(&**f),
            _ => None,
        })
        .unwrap_or(&rt.config);
    if let Some(cluster) = &settings.upstream_cluster
        && !routes_to(ctx, req, cluster)
    {
        return (active, Decoded::Continue);
    }
    if !settings.downstream_nodes.is_empty() {
        let node = req
            .headers
            .get(&names::DOWNSTREAM_NODE)
            .map(|v| v.as_bytes());
        if !node.is_some_and(|n| settings.downstream_nodes.iter().any(|d| d.as_bytes() == n)) {
            return (active, Decoded::Continue);
        }
    }
    if !settings
        .headers
        .iter()
        .all(|m| m.matches_with(&req.headers, req))
    {
        return (active, Decoded::Continue);
    }
    let cluster_stats = req
        .headers
        .get(&names::DOWNSTREAM_CLUSTER)
        .and_then(|v| v.to_str().ok())
        .filter(|c| {
            !c.is_empty()
                && !settings.disable_downstream_cluster_stats
                && !rt.config.disable_downstream_cluster_stats
        });
    let shared = &rt.shared;
    if let Some(kbps) = rate_limit_kbps(settings, &req.headers)
        && active.try_charge(shared, settings)
    {
        shared.stats.response_rl_injected.inc();
        active.limiter = Some(ResponseLimiter::new(kbps));
    }
    if let Some(delay) = delay_duration(settings, &req.headers)
        && active.try_charge(shared, settings)
    {
        shared.stats.delays_injected.inc();
        if let Some(c) = cluster_stats {
            rt.cluster_counters(c).1.inc();
        }
        info.set_flag(ResponseFlag::DelayInjected);
        tokio::time::sleep(delay).await;
        // Delays can be followed by aborts (drawn now, no new charge).
        if let Some((status, grpc)) = abort_status(settings, &req.headers) {
            return abort(rt, settings, cluster_stats, status, grpc, info, active);
        }
        // The delay is over: only a rate limit keeps the fault active.
        if active.limiter.is_none() {
            active.charge = None;
        }
        return (active, Decoded::Continue);
    }
    if let Some((status, grpc)) = abort_status(settings, &req.headers)
        && active.try_charge(shared, settings)
    {
        return abort(rt, settings, cluster_stats, status, grpc, info, active);
    }
    (active, Decoded::Continue)
}

fn abort(
    rt: &FaultRuntime,
    settings: &Fault,
    cluster_stats: Option<&str>,
    status: StatusCode,
    grpc: Option<u32>,
    info: &mut RequestInfo,
    active: ActiveFault,
) -> (ActiveFault, Decoded) {
    rt.shared.stats.aborts_injected.inc();
    if let Some(c) = cluster_stats {
        rt.cluster_counters(c).0.inc();
    }
    info.set_flag(ResponseFlag::FaultInjected);
    let body = settings
        .abort
        .as_ref()
        .map(|a| a.body.clone())
        .unwrap_or_default();
    let mut reply = LocalReply::new(status, body, "fault_filter_abort");
    reply.grpc_status = grpc;
    (active, Decoded::Reply(reply))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvoy_config_load::FieldPath;
    use rvoy_model::http_filters::fault::{Abort, Delay};

    fn percent(n: u32) -> FractionalPercent {
        FractionalPercent {
            numerator: n,
            denominator: 100,
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        h
    }

    fn fault() -> Fault {
        Fault::from_proto(&Default::default(), &FieldPath::root()).expect("empty fault")
    }

    #[test]
    fn header_percentage_is_capped_by_the_config() {
        let h = headers(&[("x-envoy-fault-abort-request-percentage", "70")]);
        assert_eq!(
            header_percent(&h, &names::ABORT_PERCENT, percent(50)).numerator,
            50
        );
        assert_eq!(
            header_percent(&h, &names::ABORT_PERCENT, percent(100)).numerator,
            70
        );
        let bad = headers(&[("x-envoy-fault-abort-request-percentage", "x")]);
        assert_eq!(
            header_percent(&bad, &names::ABORT_PERCENT, percent(30)).numerator,
            30
        );
    }

    #[test]
    fn header_abort_statuses() {
        let mut f = fault();
        f.abort = Some(Abort {
            kind: AbortKind::Header,
            percentage: percent(100),
            body: Bytes::new(),
        });
        let h = headers(&[("x-envoy-fault-abort-request", "429")]);
        assert_eq!(
            abort_status(&f, &h),
            Some((StatusCode::TOO_MANY_REQUESTS, None))
        );
        let h = headers(&[("x-envoy-fault-abort-request", "600")]);
        assert_eq!(abort_status(&f, &h), None);
        let h = headers(&[
            ("x-envoy-fault-abort-request", "600"),
            ("x-envoy-fault-abort-grpc-request", "14"),
        ]);
        assert_eq!(abort_status(&f, &h), Some((StatusCode::OK, Some(14))));
        assert_eq!(abort_status(&f, &HeaderMap::new()), None);
        f.abort = Some(Abort {
            kind: AbortKind::Http(503),
            percentage: percent(0),
            body: Bytes::new(),
        });
        assert_eq!(abort_status(&f, &HeaderMap::new()), None, "0%");
    }

    #[test]
    fn delays() {
        let mut f = fault();
        f.delay = Some(Delay {
            kind: DelayKind::Header,
            percentage: percent(100),
        });
        let h = headers(&[("x-envoy-fault-delay-request", "250")]);
        assert_eq!(delay_duration(&f, &h), Some(Duration::from_millis(250)));
        let h = headers(&[("x-envoy-fault-delay-request", "0")]);
        assert_eq!(delay_duration(&f, &h), None, "zero is no delay");
        f.delay = Some(Delay {
            kind: DelayKind::Fixed(Duration::from_millis(5)),
            percentage: percent(100),
        });
        assert_eq!(
            delay_duration(&f, &HeaderMap::new()),
            Some(Duration::from_millis(5))
        );
    }

    #[test]
    fn limiter_starts_with_a_second_of_slices() {
        let mut l = ResponseLimiter::new(16);
        assert_eq!(l.bytes_per_slice, 1024);
        assert_eq!(l.consume(100), 16);
        assert_eq!(l.consume(1), 0);
        assert!(l.next_token() <= Duration::from_millis(63));
    }

    #[test]
    fn active_faults_are_bounded_and_released() {
        let rt = FaultRuntime::new(
            Arc::new(fault()),
            &rvoy_stats::Store::new().scope("http.t."),
        );
        let mut settings = fault();
        settings.max_active_faults = Some(1);
        let mut a = ActiveFault::default();
        assert!(a.try_charge(&rt.shared, &settings));
        assert!(
            a.try_charge(&rt.shared, &settings),
            "one charge per request"
        );
        let mut b = ActiveFault::default();
        assert!(!b.try_charge(&rt.shared, &settings), "overflow");
        drop(a);
        assert!(b.try_charge(&rt.shared, &settings));
    }
}
