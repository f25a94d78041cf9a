//! `envoy.filters.http.health_check`: requests matching `headers` are health
//! checks; outside pass-through mode the filter answers them itself (200, or
//! 503 while the server fails health checks or the listed clusters lack
//! healthy hosts); in pass-through mode they go upstream unless the server
//! fails health checks or `cache_time` holds a cached answer.

use std::time::Duration;

use rvoy_api::envoy::extensions::filters::http::health_check::v3 as pb;
use rvoy_config_load::{ConfigError, FieldPath};

use crate::matcher::HeaderMatcher;
use crate::support::{MessageSupport, yes};

pub(crate) static SUPPORT: &[MessageSupport] = &[
    MessageSupport {
        message: "envoy.extensions.filters.http.health_check.v3.HealthCheck",
        fields: &[
            yes("pass_through_mode"),
            yes("cache_time"),
            yes("cluster_min_healthy_percentages"),
            yes("headers"),
        ],
    },
    MessageSupport {
        message: "envoy.type.v3.Percent",
        fields: &[yes("value")],
    },
];

/// The filter's config.
#[derive(Clone, Debug)]
pub struct HealthCheck {
    pub pass_through_mode: bool,
    /// `cache_time` when non-zero (pass-through mode only).
    pub cache_time: Option<Duration>,
    /// What makes a request a health check (all must match; none: every request).
    pub headers: Vec<HeaderMatcher>,
    /// `cluster_min_healthy_percentages` by cluster name, in name order (Envoy
    /// walks a `std::map`); only outside pass-through mode.
    pub cluster_min_healthy: Vec<(String, u64)>,
}

impl HealthCheck {
    pub fn from_proto(p: &pb::HealthCheck, path: &FieldPath) -> Result<Self, ConfigError> {
        let Some(pass_through_mode) = p.pass_through_mode else {
            return Err(ConfigError::semantic(
                path.field("pass_through_mode"),
                "Proto constraint validation failed (HealthCheckValidationError.PassThroughMode: value is required)",
            ));
        };
        let cache_time = crate::duration::opt(&p.cache_time).filter(|d| d.as_millis() > 0);
        if !pass_through_mode && cache_time.is_some() {
            return Err(ConfigError::semantic(
                path.field("cache_time"),
                "cache_time_ms must not be set when path_through_mode is disabled",
            ));
        }
        let headers = p
            .headers
            .iter()
            .enumerate()
            .map(|(i, h)| HeaderMatcher::from_proto(h, &path.field("headers").index(i)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut cluster_min_healthy = Vec::new();
        if !pass_through_mode {
            cluster_min_healthy = p
                .cluster_min_healthy_percentages
                .iter()
                .map(|(name, pct)| {
                    // Envoy truncates the double (`static_cast<uint64_t>`).
                    (name.clone(), pct.value.clamp(0.0, 100.0) as u64)
                })
                .collect();
            cluster_min_healthy.sort_by(|a, b| a.0.cmp(&b.0));
        }
        Ok(HealthCheck {
            pass_through_mode,
            cache_time,
            headers,
            cluster_min_healthy,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvoy_api::envoy::r#type::v3::Percent;

    fn base(pass: bool) -> pb::HealthCheck {
        pb::HealthCheck {
            pass_through_mode: Some(pass),
            ..Default::default()
        }
    }

    #[test]
    fn pass_through_mode_is_required() {
        let e = HealthCheck::from_proto(&pb::HealthCheck::default(), &FieldPath::root());
        assert!(e.is_err());
    }

    #[test]
    fn cache_time_needs_pass_through() {
        let mut p = base(false);
        p.cache_time = Some(prost_types::Duration {
            seconds: 1,
            nanos: 0,
        });
        let e = HealthCheck::from_proto(&p, &FieldPath::root())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("cache_time_ms must not be set"), "{e}");
        p.pass_through_mode = Some(true);
        let hc = HealthCheck::from_proto(&p, &FieldPath::root()).ok();
        assert_eq!(hc.and_then(|h| h.cache_time), Some(Duration::from_secs(1)));
    }

    #[test]
    fn cluster_percentages_sorted_and_only_without_pass_through() {
        let mut p = base(false);
        p.cluster_min_healthy_percentages
            .insert("b".into(), Percent { value: 50.9 });
        p.cluster_min_healthy_percentages
            .insert("a".into(), Percent { value: 10.0 });
        let hc = HealthCheck::from_proto(&p, &FieldPath::root()).ok();
        assert_eq!(
            hc.map(|h| h.cluster_min_healthy),
            Some(vec![("a".to_owned(), 10), ("b".to_owned(), 50)])
        );
        p.pass_through_mode = Some(true);
        let hc = HealthCheck::from_proto(&p, &FieldPath::root()).ok();
        assert_eq!(hc.map(|h| h.cluster_min_healthy.len()), Some(0));
    }
}
