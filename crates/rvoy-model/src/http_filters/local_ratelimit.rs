//! `envoy.filters.http.local_ratelimit`: a token bucket shared by every
//! worker (or one per downstream connection) that requests must take a token
//! from; when enforced, the others get a local reply (429 by default). The
//! same `LocalRateLimit` message is the filter's config and its per-route
//! override (which must have a token bucket).

use std::time::Duration;

use http::StatusCode;
use rvoy_api::envoy::extensions::common::ratelimit::v3 as ratelimit_pb;
use rvoy_api::envoy::extensions::filters::http::local_ratelimit::v3 as pb;
use rvoy_config_load::{ConfigError, FieldPath};

use crate::headers::HeaderMutations;
use crate::matcher::RuntimeFraction;
use crate::support::{MessageSupport, yes};

pub(crate) static SUPPORT: &[MessageSupport] = &[
    MessageSupport {
        message: "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
        fields: &[
            yes("stat_prefix"),
            yes("status"),
            yes("token_bucket"),
            yes("filter_enabled"),
            yes("filter_enforced"),
            yes("request_headers_to_add_when_not_enforced"),
            yes("response_headers_to_add"),
            yes("local_rate_limit_per_downstream_connection"),
            yes("enable_x_ratelimit_headers"),
            yes("rate_limited_as_resource_exhausted"),
            yes("enable_retry_after_header"),
            // Request descriptors come from the embedded `rate_limits` (not
            // supported, so rejected) or, without it, from the route's and
            // virtual host's `rate_limits`, which rvoy rejects too: no request
            // ever has a descriptor, so configured `descriptors` are checked
            // as Envoy checks them and never match, as in Envoy with no rate
            // limit policies. The next four only select or shape descriptors.
            yes("descriptors"),
            yes("stage"),
            yes("vh_rate_limits"),
            yes("always_consume_default_token_bucket"),
            yes("max_dynamic_descriptors"),
        ],
    },
    MessageSupport {
        message: "envoy.extensions.common.ratelimit.v3.LocalRateLimitDescriptor",
        fields: &[yes("entries"), yes("token_bucket"), yes("shadow_mode")],
    },
    MessageSupport {
        message: "envoy.extensions.common.ratelimit.v3.RateLimitDescriptor.Entry",
        fields: &[yes("key"), yes("value")],
    },
    MessageSupport {
        message: "envoy.type.v3.TokenBucket",
        fields: &[
            yes("max_tokens"),
            yes("tokens_per_fill"),
            yes("fill_interval"),
        ],
    },
    MessageSupport {
        message: "envoy.type.v3.HttpStatus",
        fields: &[yes("code")],
    },
];

/// The default bucket, as Envoy builds it from `token_bucket`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bucket {
    /// No `token_bucket` (or a zero `fill_interval`): every request passes
    /// and no `x-ratelimit-*` headers are added.
    None,
    /// `max_tokens: 0`: every request is limited.
    AlwaysDeny,
    /// A bucket of `max_tokens`, refilled continuously at `fill_rate` tokens
    /// per second (`tokens_per_fill / fill_interval`), starting full.
    Tokens { max_tokens: u64, fill_rate: f64 },
}

/// A `LocalRateLimit` config (filter level or per route).
#[derive(Clone, Debug)]
pub struct LocalRateLimit {
    /// Stats are `<stat_prefix>.http_local_rate_limit.*`.
    pub stat_prefix: String,
    /// The status of the local reply (`status` when it is 400 or more, else 429).
    pub status: StatusCode,
    pub bucket: Bucket,
    /// `None`: the filter does nothing (Envoy's default is 0%).
    pub filter_enabled: Option<RuntimeFraction>,
    /// `None`: limited requests are not answered (0%).
    pub filter_enforced: Option<RuntimeFraction>,
    pub request_headers_when_not_enforced: HeaderMutations,
    pub response_headers: HeaderMutations,
    pub per_connection: bool,
    /// `enable_x_ratelimit_headers: DRAFT_VERSION_03`.
    pub x_ratelimit_headers: bool,
    /// gRPC clients get `RESOURCE_EXHAUSTED` instead of `UNAVAILABLE`.
    pub resource_exhausted: bool,
    pub retry_after: bool,
}

impl LocalRateLimit {
    /// `per_route`: the config is a `typed_per_filter_config` entry.
    pub fn from_proto(
        p: &pb::LocalRateLimit,
        path: &FieldPath,
        per_route: bool,
    ) -> Result<Self, ConfigError> {
        if p.stat_prefix.is_empty() {
            return Err(ConfigError::semantic(
                path.field("stat_prefix"),
                "value length must be at least 1 characters",
            ));
        }
        if per_route && p.token_bucket.is_none() {
            return Err(ConfigError::semantic(
                path.field("token_bucket"),
                "local rate limit token bucket must be set for per filter configs",
            ));
        }
        let bucket = match &p.token_bucket {
            None => Bucket::None,
            Some(tb) => {
                let fill_interval = crate::duration::opt(&tb.fill_interval)
                    .map(|d| Duration::from_millis(d.as_millis() as u64))
                    .unwrap_or_default();
                if fill_interval.is_zero() {
                    Bucket::None
                } else if tb.max_tokens == 0 {
                    Bucket::AlwaysDeny
                } else if fill_interval < Duration::from_millis(50) {
                    return Err(ConfigError::semantic(
                        path.field("token_bucket").field("fill_interval"),
                        "local rate limit token bucket fill timer must be >= 50ms",
                    ));
                } else {
                    let per_fill = tb.tokens_per_fill.unwrap_or(1);
                    Bucket::Tokens {
                        max_tokens: u64::from(tb.max_tokens),
                        fill_rate: f64::from(per_fill) / fill_interval.as_secs_f64(),
                    }
                }
            }
        };
        check_descriptors(&p.descriptors, &path.field("descriptors"))?;
        let code = p.status.as_ref().map_or(0, |s| s.code);
        let status = u16::try_from(code)
            .ok()
            .filter(|c| *c >= 400)
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::TOO_MANY_REQUESTS);
        let x_ratelimit_headers = p.enable_x_ratelimit_headers
            == ratelimit_pb::XRateLimitHeadersRfcVersion::DraftVersion03 as i32;
        Ok(LocalRateLimit {
            stat_prefix: p.stat_prefix.clone(),
            status,
            bucket,
            filter_enabled: p.filter_enabled.as_ref().map(RuntimeFraction::from_proto),
            filter_enforced: p.filter_enforced.as_ref().map(RuntimeFraction::from_proto),
            request_headers_when_not_enforced: HeaderMutations::from_proto(
                &p.request_headers_to_add_when_not_enforced,
                &[],
                &path.field("request_headers_to_add_when_not_enforced"),
                &path.field("request_headers_to_add_when_not_enforced"),
                true,
            )?,
            response_headers: HeaderMutations::from_proto(
                &p.response_headers_to_add,
                &[],
                &path.field("response_headers_to_add"),
                &path.field("response_headers_to_add"),
                false,
            )?,
            per_connection: p.local_rate_limit_per_downstream_connection,
            x_ratelimit_headers,
            resource_exhausted: p.rate_limited_as_resource_exhausted,
            retry_after: p.enable_retry_after_header,
        })
    }
}

/// Envoy's checks of `descriptors` when it builds the limiter: a bucket that
/// refills must do so at most every 50 ms, and no two descriptors (with
/// wildcard values, or without) may have the same entries.
fn check_descriptors(
    descriptors: &[ratelimit_pb::LocalRateLimitDescriptor],
    path: &FieldPath,
) -> Result<(), ConfigError> {
    let mut seen: Vec<(bool, &[ratelimit_pb::rate_limit_descriptor::Entry])> =
        Vec::with_capacity(descriptors.len());
    for (i, d) in descriptors.iter().enumerate() {
        let p = path.index(i);
        let tb = d.token_bucket.unwrap_or_default();
        let fill = crate::duration::opt(&tb.fill_interval).unwrap_or_default();
        if tb.max_tokens != 0 && fill.as_millis() < 50 {
            return Err(ConfigError::semantic(
                p.field("token_bucket").field("fill_interval"),
                "local rate limit descriptor token bucket fill timer must be >= 50ms",
            ));
        }
        let wildcard = d.entries.iter().any(|e| e.value.is_empty());
        if seen
            .iter()
            .any(|(w, entries)| *w == wildcard && *entries == d.entries.as_slice())
        {
            let text = d
                .entries
                .iter()
                .map(|e| format!("{}={}", e.key, e.value))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(ConfigError::semantic(
                p,
                format!("duplicate descriptor in the local rate descriptor: {text}"),
            ));
        }
        seen.push((wildcard, &d.entries));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvoy_api::envoy::r#type::v3::{HttpStatus, TokenBucket};

    fn tb(max: u32, per_fill: Option<u32>, ms: i32) -> Option<TokenBucket> {
        Some(TokenBucket {
            max_tokens: max,
            tokens_per_fill: per_fill,
            fill_interval: Some(prost_types::Duration {
                seconds: i64::from(ms / 1000),
                nanos: (ms % 1000) * 1_000_000,
            }),
        })
    }

    fn base() -> pb::LocalRateLimit {
        pb::LocalRateLimit {
            stat_prefix: "rl".into(),
            ..Default::default()
        }
    }

    #[test]
    fn buckets() {
        let path = FieldPath::root();
        let mut p = base();
        assert_eq!(
            LocalRateLimit::from_proto(&p, &path, false)
                .map(|c| c.bucket)
                .ok(),
            Some(Bucket::None)
        );
        assert!(LocalRateLimit::from_proto(&p, &path, true).is_err());
        p.token_bucket = tb(0, None, 1000);
        assert_eq!(
            LocalRateLimit::from_proto(&p, &path, false)
                .map(|c| c.bucket)
                .ok(),
            Some(Bucket::AlwaysDeny)
        );
        p.token_bucket = tb(3, None, 10);
        let e = LocalRateLimit::from_proto(&p, &path, false)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains(">= 50ms"), "{e}");
        p.token_bucket = tb(4, Some(2), 500);
        assert_eq!(
            LocalRateLimit::from_proto(&p, &path, false)
                .map(|c| c.bucket)
                .ok(),
            Some(Bucket::Tokens {
                max_tokens: 4,
                fill_rate: 4.0
            })
        );
    }

    #[test]
    fn descriptors_are_checked_as_envoy() {
        use ratelimit_pb::rate_limit_descriptor::Entry;
        let path = FieldPath::root();
        let d = |value: &str, ms: i32, max: u32| ratelimit_pb::LocalRateLimitDescriptor {
            entries: vec![Entry {
                key: "a".into(),
                value: value.into(),
            }],
            token_bucket: tb(max, None, ms),
            shadow_mode: false,
        };
        let mut p = base();
        p.descriptors = vec![d("b", 1000, 1), d("", 1000, 1)];
        assert!(LocalRateLimit::from_proto(&p, &path, false).is_ok());
        p.descriptors = vec![d("b", 1000, 1), d("b", 2000, 1)];
        let e = LocalRateLimit::from_proto(&p, &path, false)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("duplicate descriptor in the local rate descriptor: a=b"),
            "{e}"
        );
        p.descriptors = vec![d("b", 10, 1)];
        assert!(LocalRateLimit::from_proto(&p, &path, false).is_err());
        p.descriptors = vec![d("b", 10, 0)];
        assert!(LocalRateLimit::from_proto(&p, &path, false).is_ok());
    }

    #[test]
    fn status_defaults_to_429_below_400() {
        let path = FieldPath::root();
        let mut p = base();
        let c = LocalRateLimit::from_proto(&p, &path, false).expect("valid");
        assert_eq!(c.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(c.filter_enabled.is_none() && c.filter_enforced.is_none());
        p.status = Some(HttpStatus { code: 302 });
        let c = LocalRateLimit::from_proto(&p, &path, false).expect("valid");
        assert_eq!(c.status, StatusCode::TOO_MANY_REQUESTS);
        p.status = Some(HttpStatus { code: 503 });
        let c = LocalRateLimit::from_proto(&p, &path, false).expect("valid");
        assert_eq!(c.status, StatusCode::SERVICE_UNAVAILABLE);
    }
}
