//! `envoy.filters.http.local_ratelimit`: each request the filter is enabled
//! for takes a token from a bucket shared by every worker (lock-free, Envoy's
//! `AtomicTokenBucketImpl`: the bucket is the instant it was empty, refilled
//! continuously), or from its connection's own bucket
//! (`local_rate_limit_per_downstream_connection`). Limited requests get the
//! configured status with body `local_rate_limited` (flag `RL`) when the
//! filter is enforced, else continue with `request_headers_to_add_when_not_enforced`.
//! `x-ratelimit-{limit,remaining,reset}` go on every response when asked for.
//!
//! Stats are `<stat_prefix>.http_local_rate_limit.*` at the root of the store,
//! one set per config (the filter's and each per-route override).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use http::{HeaderMap, HeaderName, HeaderValue};
use rvoy_format::ResponseFlag;
use rvoy_model::http_filters::local_ratelimit::{Bucket, LocalRateLimit};
use rvoy_model::http_filters::{PerFilterEntry, PerRouteConfig};
use rvoy_model::route::RouteConfig;
use rvoy_stats::Scope;

use super::{Decoded, RouteContext};
use crate::headers::{apply_mutations, apply_request_mutations};
use crate::local_reply::LocalReply;
use crate::request_info::RequestInfo;
use crate::stream::Request;

mod names {
    use http::HeaderName;
    pub static LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
    pub static REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
    pub static RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
    pub static RETRY_AFTER: HeaderName = HeaderName::from_static("retry-after");
}

/// gRPC `RESOURCE_EXHAUSTED`.
const GRPC_RESOURCE_EXHAUSTED: u32 = 8;

rvoy_upstream::stats_struct!(
    /// `<stat_prefix>.http_local_rate_limit.*`.
    LocalRateLimitStats {
        counters: [enabled, enforced, ok, rate_limited, shadow_mode],
        gauges: [],
        histograms: [],
    }
);

/// Seconds on a process-wide monotonic clock.
fn now_secs() -> f64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed().as_secs_f64()
}

/// A token bucket refilled continuously, shared without locks: its state is
/// the instant (on [`now_secs`]'s clock) at which it was (or would have been)
/// empty, so the tokens are `(now - empty_at) * fill_rate`, capped.
#[derive(Debug)]
pub struct TokenBucket {
    max_tokens: f64,
    fill_rate: f64,
    /// `f64` bits of the empty instant.
    empty_at: AtomicU64,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(max_tokens: u64, fill_rate: f64) -> Self {
        let max = max_tokens as f64;
        TokenBucket {
            max_tokens: max,
            fill_rate,
            empty_at: AtomicU64::new((now_secs() - max / fill_rate).to_bits()),
        }
    }

    fn tokens_at(&self, now: f64, empty_at: f64) -> f64 {
        ((now - empty_at) * self.fill_rate).min(self.max_tokens)
    }

    /// Takes one token if there is one.
    pub fn consume(&self) -> bool {
        let now = now_secs();
        let mut old = self.empty_at.load(Ordering::Relaxed);
        loop {
            let tokens = self.tokens_at(now, f64::from_bits(old));
            if tokens < 1.0 {
                return false;
            }
            let new = now - (tokens - 1.0) / self.fill_rate;
            match self.empty_at.compare_exchange_weak(
                old,
                new.to_bits(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(current) => old = current,
            }
        }
    }

    fn tokens(&self) -> f64 {
        self.tokens_at(
            now_secs(),
            f64::from_bits(self.empty_at.load(Ordering::Relaxed)),
        )
    }

    pub fn max_tokens(&self) -> u64 {
        self.max_tokens as u64
    }

    pub fn remaining(&self) -> u64 {
        self.tokens().max(0.0) as u64
    }

    /// Whole seconds until the next token (0 when one is there).
    pub fn reset_seconds(&self) -> u64 {
        let tokens = self.tokens();
        if tokens >= 1.0 {
            return 0;
        }
        let ms = ((1.0 - tokens) / self.fill_rate * 1000.0) as u64;
        (ms as f64 / 1000.0).ceil() as u64
    }

    fn is_full(&self) -> bool {
        self.tokens() >= self.max_tokens
    }
}

/// One config's limiter: its shared bucket and stats.
#[derive(Debug)]
struct Limiter {
    config: Arc<LocalRateLimit>,
    /// The bucket every worker shares (`Bucket::Tokens`, not per connection).
    bucket: Option<Arc<TokenBucket>>,
    stats: LocalRateLimitStats,
}

impl Limiter {
    fn new(config: Arc<LocalRateLimit>, root: &Scope) -> Self {
        let bucket = match config.bucket {
            Bucket::Tokens {
                max_tokens,
                fill_rate,
            } if !config.per_connection => Some(Arc::new(TokenBucket::new(max_tokens, fill_rate))),
            _ => None,
        };
        let scope = root.scope(&format!("{}.http_local_rate_limit.", config.stat_prefix));
        Limiter {
            stats: LocalRateLimitStats::new(&scope),
            config,
            bucket,
        }
    }
}

/// The filter's config and every per-route override of it, with their state.
#[derive(Debug)]
pub struct LocalRateLimitRuntime {
    filter: Limiter,
    /// Per-route limiters, by the address of their config.
    per_route: HashMap<usize, Limiter>,
}

fn key(config: &Arc<LocalRateLimit>) -> usize {
    Arc::as_ptr(config) as usize
}

impl LocalRateLimitRuntime {
    /// Builds the limiters of the filter named `name` and of its per-route
    /// configs in `rc`; `root` is the store's root scope.
    pub fn new(config: Arc<LocalRateLimit>, name: &str, rc: &RouteConfig, root: &Scope) -> Self {
        let mut per_route = HashMap::new();
        let mut add = |entry: Option<&PerFilterEntry>| {
            if let Some(PerRouteConfig::LocalRateLimit(c)) = entry.and_then(|e| e.config.as_ref()) {
                per_route
                    .entry(key(c))
                    .or_insert_with(|| Limiter::new(c.clone(), root));
            }
        };
        add(rc.per_filter.get(name));
        for vhost in &rc.virtual_hosts {
            add(vhost.per_filter.get(name));
            for route in &vhost.routes {
                add(route.per_filter.get(name));
            }
        }
        LocalRateLimitRuntime {
            filter: Limiter::new(config, root),
            per_route,
        }
    }
}

/// The bucket a request took from, for the `x-ratelimit-*` headers.
enum BucketRef {
    Shared(Arc<TokenBucket>),
    Connection(Rc<TokenBucket>),
}

impl BucketRef {
    fn get(&self) -> &TokenBucket {
        match self {
            BucketRef::Shared(b) => b,
            BucketRef::Connection(b) => b,
        }
    }
}

/// The rate limit state of one request.
#[derive(Default)]
pub struct ActiveLocalRateLimit {
    context: Option<BucketRef>,
    x_ratelimit_headers: bool,
}

/// Per-connection buckets of this worker, by connection id. Envoy keeps one
/// per connection (made from the first config that needs it); a full bucket
/// is the same as a new one, so full buckets are dropped now and then.
struct ConnectionBuckets {
    buckets: HashMap<u64, Rc<TokenBucket>>,
    sweep_at: usize,
}

const FIRST_SWEEP: usize = 1024;

fn connection_bucket(connection: u64, max_tokens: u64, fill_rate: f64) -> Rc<TokenBucket> {
    thread_local! {
        static BUCKETS: RefCell<ConnectionBuckets> = RefCell::new(ConnectionBuckets {
            buckets: HashMap::new(),
            sweep_at: FIRST_SWEEP,
        });
    }
    BUCKETS.with(|b| {
        let mut b = b.borrow_mut();
        if let Some(bucket) = b.buckets.get(&connection) {
            return bucket.clone();
        }
        if b.buckets.len() >= b.sweep_at {
            b.buckets.retain(|_, bucket| !bucket.is_full());
            b.sweep_at = (b.buckets.len() * 2).max(FIRST_SWEEP);
        }
        let bucket = Rc::new(TokenBucket::new(max_tokens, fill_rate));
        b.buckets.insert(connection, bucket.clone());
        bucket
    })
}

/// Envoy's `requestAllowed` for the default bucket: whether the request may
/// pass, and the bucket it was counted against.
fn request_allowed(limiter: &Limiter, connection: u64) -> (bool, Option<BucketRef>) {
    match limiter.config.bucket {
        Bucket::None => (true, None),
        Bucket::AlwaysDeny => (false, None),
        Bucket::Tokens {
            max_tokens,
            fill_rate,
        } => {
            let bucket = match &limiter.bucket {
                Some(shared) => BucketRef::Shared(shared.clone()),
                None => BucketRef::Connection(connection_bucket(connection, max_tokens, fill_rate)),
            };
            (bucket.get().consume(), Some(bucket))
        }
    }
}

pub fn decode_headers(
    rt: &LocalRateLimitRuntime,
    name: &str,
    ctx: RouteContext<'_>,
    req: &mut Request,
    info: &mut RequestInfo,
) -> (ActiveLocalRateLimit, Decoded) {
    let mut active = ActiveLocalRateLimit::default();
    let limiter = ctx
        .configs(name)
        .find_map(|c| match c {
            PerRouteConfig::LocalRateLimit(c) => rt.per_route.get(&key(c)),
            _ => None,
        })
        .unwrap_or(&rt.filter);
    let config = &limiter.config;
    let sampled = |f: &Option<rvoy_model::matcher::RuntimeFraction>| {
        f.as_ref()
            .is_some_and(|f| f.default.sample(fastrand::u64(..)))
    };
    if !sampled(&config.filter_enabled) {
        return (active, Decoded::Continue);
    }
    limiter.stats.enabled.inc();
    let (allowed, context) = request_allowed(limiter, info.connection_id);
    active.context = context;
    active.x_ratelimit_headers = config.x_ratelimit_headers;
    if allowed {
        limiter.stats.ok.inc();
        return (active, Decoded::Continue);
    }
    limiter.stats.rate_limited.inc();
    if !sampled(&config.filter_enforced) {
        if !config.request_headers_when_not_enforced.is_empty() {
            // Rendered against the request as it is (`%REQ(...)%`).
            info.request_headers = Some(std::mem::take(&mut req.headers));
            apply_request_mutations(&config.request_headers_when_not_enforced, info);
            req.headers = info.request_headers.take().unwrap_or_default();
        }
        return (active, Decoded::Continue);
    }
    limiter.stats.enforced.inc();
    let mut reply = LocalReply::new(config.status, "local_rate_limited", "local_rate_limited");
    apply_mutations(&config.response_headers, &mut reply.headers, &*info);
    if config.retry_after
        && config.status == http::StatusCode::TOO_MANY_REQUESTS
        && !reply.headers.contains_key(&names::RETRY_AFTER)
        && let Some(bucket) = &active.context
    {
        let seconds = bucket.get().reset_seconds().max(1);
        reply
            .headers
            .insert(names::RETRY_AFTER.clone(), HeaderValue::from(seconds));
    }
    if config.resource_exhausted {
        reply.grpc_status = Some(GRPC_RESOURCE_EXHAUSTED);
    }
    info.set_flag(ResponseFlag::RateLimited);
    (active, Decoded::Reply(reply))
}

impl ActiveLocalRateLimit {
    /// Adds `x-ratelimit-*` (DRAFT_VERSION_03) to any response of a request
    /// that was counted against a bucket.
    pub fn encode_headers(&mut self, headers: &mut HeaderMap) {
        let Some(bucket) = &self.context else {
            return;
        };
        if !self.x_ratelimit_headers {
            return;
        }
        let bucket = bucket.get();
        let add = |headers: &mut HeaderMap, name: &HeaderName, v: u64| {
            headers.append(name.clone(), HeaderValue::from(v));
        };
        add(headers, &names::LIMIT, bucket.max_tokens());
        add(headers, &names::REMAINING, bucket.remaining());
        add(headers, &names::RESET, bucket.reset_seconds());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_starts_full_and_empties() {
        let b = TokenBucket::new(2, 1.0 / 3600.0);
        assert_eq!(b.remaining(), 2);
        assert_eq!(b.reset_seconds(), 0);
        assert!(b.consume());
        assert_eq!(b.remaining(), 1);
        assert_eq!(b.reset_seconds(), 0);
        assert!(b.consume());
        assert_eq!(b.remaining(), 0);
        assert_eq!(b.reset_seconds(), 3600);
        assert!(!b.consume());
        assert_eq!(b.max_tokens(), 2);
        assert!(!b.is_full());
    }

    #[test]
    fn bucket_refills_continuously() {
        let b = TokenBucket::new(1, 100.0);
        assert!(b.consume());
        assert!(!b.consume());
        std::thread::sleep(std::time::Duration::from_millis(30));
        assert!(b.consume());
        std::thread::sleep(std::time::Duration::from_millis(30));
        assert!(b.is_full());
    }

    #[test]
    fn bucket_is_shared_across_threads() {
        // A refill too slow to add a token during the test, yet not so slow
        // that `max_tokens / fill_rate` (the bucket's time span, ~1e12 s at
        // 1e-9 tokens/s) leaves the f64 instant too coarse to count 1000
        // tokens exactly: 1e6 s here.
        let b = Arc::new(TokenBucket::new(1000, 1e-3));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || (0..500).filter(|_| b.consume()).count())
            })
            .collect();
        let taken: usize = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
        assert_eq!(taken, 1000);
    }

    #[test]
    fn connection_buckets_are_per_connection() {
        let a = connection_bucket(u64::MAX - 1, 1, 1e-6);
        assert!(a.consume());
        let again = connection_bucket(u64::MAX - 1, 1, 1e-6);
        assert!(!again.consume());
        let other = connection_bucket(u64::MAX - 2, 1, 1e-6);
        assert!(other.consume());
    }
}
