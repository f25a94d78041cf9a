//! `envoy.filters.http.health_check`: marks requests matching the filter's
//! headers as health checks (`info.is_health_check`, `tracing.health_check`)
//! and, when it handles them, answers after the request ends: 503 while the
//! server fails health checks (admin `POST /healthcheck/fail`), else the
//! cached answer (`cache_time`), else 200 or 503 from the listed clusters'
//! share of healthy hosts. Responses to health checks carry
//! `x-envoy-upstream-healthchecked-cluster`; while the server fails health
//! checks every response carries `x-envoy-immediate-health-check-fail: true`.
//!
//! Stats are `http.<stat_prefix>.health_check.*`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use rvoy_format::ResponseFlag;
use rvoy_model::cluster::EdsHealth;
use rvoy_model::http_filters::health_check::HealthCheck;
use rvoy_stats::{Counter, Scope};
use rvoy_upstream::cluster::{Cluster, ClusterManager};

use super::Decoded;
use crate::downstream::Downstream;
use crate::local_reply::LocalReply;
use crate::request_info::RequestInfo;
use crate::stream::Request;

mod names {
    use http::HeaderName;
    pub static HEALTHCHECKED_CLUSTER: HeaderName =
        HeaderName::from_static("x-envoy-upstream-healthchecked-cluster");
    pub static IMMEDIATE_FAIL: HeaderName =
        HeaderName::from_static("x-envoy-immediate-health-check-fail");
    pub static DEGRADED: HeaderName = HeaderName::from_static("x-envoy-degraded");
}

rvoy_upstream::stats_struct!(
    /// `http.<stat_prefix>.health_check.*`.
    HealthCheckStats {
        counters: [
            cached_response,
            degraded,
            failed,
            failed_cluster_empty,
            failed_cluster_not_found,
            failed_cluster_unhealthy,
            ok,
            request_total,
        ],
        gauges: [],
        histograms: [],
    }
);

/// The last health check answer, reused until the next `cache_time` tick
/// (Envoy's `HealthCheckCacheManager`, whose timer starts with the filter).
#[derive(Debug)]
struct Cache {
    start: Instant,
    period: Duration,
    /// `(tick + 1) << 17 | degraded << 16 | status`; 0: nothing cached.
    state: AtomicU64,
}

impl Cache {
    fn tick(&self) -> u64 {
        let nanos = self.period.as_nanos().max(1);
        (crate::clock::elapsed(self.start).as_nanos() / nanos) as u64
    }

    /// The cached status and whether it was degraded, if still valid.
    fn get(&self) -> Option<(StatusCode, bool)> {
        let s = self.state.load(Ordering::Relaxed);
        if s == 0 || s >> 17 != self.tick() + 1 {
            return None;
        }
        let status = StatusCode::from_u16((s & 0xffff) as u16).ok()?;
        Some((status, s & (1 << 16) != 0))
    }

    fn set(&self, status: StatusCode, degraded: bool) {
        let s =
            ((self.tick() + 1) << 17) | (u64::from(degraded) << 16) | u64::from(status.as_u16());
        self.state.store(s, Ordering::Relaxed);
    }
}

/// What the response hooks need: the server's health flag, the cache.
#[derive(Debug)]
struct Shared {
    health_failed: Arc<AtomicBool>,
    /// `node.cluster`, the value of `x-envoy-upstream-healthchecked-cluster`.
    local_cluster: HeaderValue,
    cache: Option<Cache>,
}

impl Shared {
    fn failed(&self) -> bool {
        self.health_failed.load(Ordering::Relaxed)
    }
}

/// The filter's state shared by its requests: config, health flag, stats.
#[derive(Debug)]
pub struct HealthCheckRuntime {
    config: Arc<HealthCheck>,
    shared: Arc<Shared>,
    /// `cluster_min_healthy_percentages`, resolved (`None`: no such cluster).
    clusters: Vec<(Option<Arc<Cluster>>, u64)>,
    stats: HealthCheckStats,
    tracing_health_check: Counter,
}

impl HealthCheckRuntime {
    /// `hcm_scope` is `http.<stat_prefix>.`.
    pub fn new(
        config: Arc<HealthCheck>,
        hcm_scope: &Scope,
        health_failed: Arc<AtomicBool>,
        cluster_manager: &ClusterManager,
        local_cluster: &str,
    ) -> Self {
        let clusters = config
            .cluster_min_healthy
            .iter()
            .map(|(name, pct)| (cluster_manager.get(name).cloned(), *pct))
            .collect();
        HealthCheckRuntime {
            shared: Arc::new(Shared {
                cache: config.cache_time.map(|period| Cache {
                    start: crate::clock::now(),
                    period,
                    state: AtomicU64::new(0),
                }),
                local_cluster: HeaderValue::from_str(local_cluster)
                    .unwrap_or_else(|_| HeaderValue::from_static("")),
                health_failed,
            }),
            clusters,
            stats: HealthCheckStats::new(&hcm_scope.scope("health_check.")),
            tracing_health_check: hcm_scope.counter("tracing.health_check"),
            config,
        }
    }

    /// The answer from the listed clusters' membership (Envoy's order: by
    /// cluster name, the first failing cluster decides).
    fn cluster_answer(&self) -> (StatusCode, &'static str, Option<&Counter>) {
        let mut details = "health_check_ok";
        for (cluster, min) in &self.clusters {
            details = "health_check_ok_cluster_healthy";
            let Some(cluster) = cluster else {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "health_check_failed_no_cluster_found",
                    Some(&self.stats.failed_cluster_not_found),
                );
            };
            let hosts = cluster.hosts();
            let total = hosts.hosts.len() as u64;
            if total == 0 {
                if *min == 0 {
                    continue;
                }
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "health_check_failed_cluster_empty",
                    Some(&self.stats.failed_cluster_empty),
                );
            }
            let available = hosts
                .hosts
                .iter()
                .filter(|h| matches!(h.health, EdsHealth::Healthy | EdsHealth::Degraded))
                .count() as u64;
            if 100 * available < total * min {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "health_check_failed_cluster_unhealthy",
                    Some(&self.stats.failed_cluster_unhealthy),
                );
            }
        }
        (StatusCode::OK, details, None)
    }

    /// Envoy's `onComplete`: the local answer to a health check.
    fn answer(&self, info: &mut RequestInfo) -> LocalReply {
        self.stats.request_total.inc();
        if self.shared.failed() {
            info.set_flag(ResponseFlag::FailedLocalHealthCheck);
            self.stats.failed.inc();
            return LocalReply::new(
                StatusCode::SERVICE_UNAVAILABLE,
                Bytes::new(),
                "health_check_failed",
            );
        }
        let mut degraded = false;
        let (status, details) = match self.shared.cache.as_ref().and_then(Cache::get) {
            Some((status, d)) => {
                self.stats.cached_response.inc();
                degraded = d;
                (status, "health_check_cached")
            }
            None => {
                let (status, details, counter) = self.cluster_answer();
                if let Some(c) = counter {
                    c.inc();
                }
                (status, details)
            }
        };
        if status.is_success() {
            self.stats.ok.inc();
        } else {
            info.set_flag(ResponseFlag::FailedLocalHealthCheck);
            self.stats.failed.inc();
        }
        let mut reply = LocalReply::new(status, Bytes::new(), details);
        if degraded {
            self.stats.degraded.inc();
            reply
                .headers
                .insert(names::DEGRADED.clone(), HeaderValue::from_static(""));
        }
        reply
    }
}

/// The health check state of one request, for its response.
pub struct ActiveHealthCheck {
    shared: Arc<Shared>,
    health_check: bool,
}

pub async fn decode_headers<D: Downstream>(
    rt: &HealthCheckRuntime,
    req: &Request,
    info: &mut RequestInfo,
    ds: &mut D,
) -> (ActiveHealthCheck, Decoded) {
    let mut active = ActiveHealthCheck {
        shared: rt.shared.clone(),
        health_check: false,
    };
    if !rt
        .config
        .headers
        .iter()
        .all(|m| m.matches_with(&req.headers, req))
    {
        return (active, Decoded::Continue);
    }
    active.health_check = true;
    info.is_health_check = true;
    rt.tracing_health_check.inc();
    let handling = !rt.config.pass_through_mode
        || rt.shared.failed()
        || rt.shared.cache.as_ref().is_some_and(|c| c.get().is_some());
    if !handling {
        return (active, Decoded::Continue);
    }
    // Envoy answers once the request has ended; the body is discarded.
    if req.has_body {
        loop {
            match ds.read_body().await {
                Ok(Some(_)) => {}
                Ok(None) => break,
                // The client went away: nothing to answer.
                Err(_) => return (active, Decoded::Continue),
            }
        }
    }
    let reply = rt.answer(info);
    (active, Decoded::Reply(reply))
}

impl ActiveHealthCheck {
    pub fn encode_headers(&mut self, status: StatusCode, headers: &mut HeaderMap) {
        let rt = &*self.shared;
        if self.health_check {
            if let Some(cache) = &rt.cache {
                cache.set(status, headers.contains_key(&names::DEGRADED));
            }
            headers.insert(
                names::HEALTHCHECKED_CLUSTER.clone(),
                rt.local_cluster.clone(),
            );
        }
        if rt.failed() {
            headers.insert(
                names::IMMEDIATE_FAIL.clone(),
                HeaderValue::from_static("true"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_holds_until_the_next_tick() {
        let cache = Cache {
            start: Instant::now(),
            period: Duration::from_secs(3600),
            state: AtomicU64::new(0),
        };
        assert_eq!(cache.get(), None);
        cache.set(StatusCode::SERVICE_UNAVAILABLE, true);
        assert_eq!(cache.get(), Some((StatusCode::SERVICE_UNAVAILABLE, true)));
        cache.set(StatusCode::OK, false);
        assert_eq!(cache.get(), Some((StatusCode::OK, false)));
        // Cached during the previous period: the timer cleared it since.
        let previous = (cache.tick() << 17) | 200;
        cache.state.store(previous, Ordering::Relaxed);
        assert_eq!(cache.get(), None);
    }
}
