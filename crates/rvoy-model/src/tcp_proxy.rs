//! The `envoy.filters.network.tcp_proxy` network filter's config: which
//! cluster (or weighted clusters) a connection is relayed to, its stats
//! prefix, timeouts, connect attempts and access logs.

use std::sync::Arc;
use std::time::Duration;

use rvoy_api::envoy::extensions::filters::network::tcp_proxy::v3 as pb;
use rvoy_config_load::{ConfigError, FieldPath};

use crate::access_log::{AccessLog, access_logs};
use crate::duration;
use crate::support::{Diagnostics, MessageSupport, yes};

pub(crate) static SUPPORT: &[MessageSupport] = &[
    MessageSupport {
        message: "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
        fields: &[
            yes("stat_prefix"),
            yes("cluster"),
            yes("weighted_clusters"),
            yes("idle_timeout"),
            yes("access_log"),
            yes("max_connect_attempts"),
            yes("backoff_options"),
            yes("max_downstream_connection_duration"),
        ],
    },
    MessageSupport {
        message: "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.WeightedCluster",
        fields: &[yes("clusters")],
    },
    MessageSupport {
        message: "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.WeightedCluster.ClusterWeight",
        fields: &[yes("name"), yes("weight")],
    },
    MessageSupport {
        message: "envoy.config.core.v3.BackoffStrategy",
        fields: &[yes("base_interval"), yes("max_interval")],
    },
];

/// Where a connection goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TcpCluster {
    Single(Arc<str>),
    /// Clusters with their weights (all positive), and the weights' sum.
    Weighted {
        clusters: Vec<(Arc<str>, u32)>,
        total: u64,
    },
}

impl TcpCluster {
    /// The cluster for a random number in `0..total` (or any number for one cluster).
    pub fn pick(&self, random: u64) -> &Arc<str> {
        match self {
            TcpCluster::Single(c) => c,
            TcpCluster::Weighted { clusters, total } => {
                let mut point = random % (*total).max(1);
                for (name, w) in clusters {
                    if point < u64::from(*w) {
                        return name;
                    }
                    point -= u64::from(*w);
                }
                // Unreachable with positive weights summing to `total`.
                &clusters[clusters.len() - 1].0
            }
        }
    }

    /// Every cluster named.
    pub fn names(&self) -> Vec<Arc<str>> {
        match self {
            TcpCluster::Single(c) => vec![c.clone()],
            TcpCluster::Weighted { clusters, .. } => {
                clusters.iter().map(|(c, _)| c.clone()).collect()
            }
        }
    }
}

/// A compiled `TcpProxy`.
#[derive(Debug)]
pub struct TcpProxy {
    /// `tcp.<stat_prefix>.`.
    pub stat_prefix: String,
    pub cluster: TcpCluster,
    /// `None`: disabled (Envoy's default is one hour).
    pub idle_timeout: Option<Duration>,
    pub max_connect_attempts: u32,
    /// Backoff between connect attempts (base, max); `None`: retry at once.
    pub backoff: Option<(Duration, Duration)>,
    pub max_downstream_connection_duration: Option<Duration>,
    pub access_logs: Vec<Arc<AccessLog>>,
}

/// Lowers the filter's config.
pub fn build(
    c: &pb::TcpProxy,
    path: &FieldPath,
    diags: &mut Diagnostics,
) -> Result<TcpProxy, ConfigError> {
    use pb::tcp_proxy::ClusterSpecifier as S;
    if c.stat_prefix.is_empty() {
        return Err(ConfigError::semantic(
            path.field("stat_prefix"),
            "value length must be at least 1 characters",
        ));
    }
    let cluster = match &c.cluster_specifier {
        Some(S::Cluster(name)) => TcpCluster::Single(name.as_str().into()),
        Some(S::WeightedClusters(w)) => {
            let p = path.field("weighted_clusters");
            if w.clusters.is_empty() {
                return Err(ConfigError::semantic(
                    p.field("clusters"),
                    "value must contain at least 1 item(s)",
                ));
            }
            let mut clusters = Vec::with_capacity(w.clusters.len());
            let mut total = 0u64;
            for (i, cw) in w.clusters.iter().enumerate() {
                let cp = p.field("clusters").index(i);
                if cw.metadata_match.is_some() {
                    return Err(ConfigError::not_supported(
                        cp.field("metadata_match"),
                        "metadata_match",
                    ));
                }
                if cw.weight == 0 {
                    return Err(ConfigError::semantic(
                        cp.field("weight"),
                        "value must be greater than or equal to 1",
                    ));
                }
                total += u64::from(cw.weight);
                clusters.push((cw.name.as_str().into(), cw.weight));
            }
            TcpCluster::Weighted { clusters, total }
        }
        None => {
            return Err(ConfigError::semantic(
                path.clone(),
                "a tcp_proxy needs a cluster or weighted_clusters",
            ));
        }
    };
    let backoff = match &c.backoff_options {
        None => None,
        Some(b) => {
            let bp = path.field("backoff_options");
            let base = duration::opt(&b.base_interval).ok_or_else(|| {
                ConfigError::semantic(bp.field("base_interval"), "base_interval is required")
            })?;
            let max = duration::opt(&b.max_interval).unwrap_or(base * 10);
            if max < base {
                return Err(ConfigError::semantic(
                    bp.field("max_interval"),
                    "max_interval must be greater than or equal to the base_interval",
                ));
            }
            Some((base, max))
        }
    };
    Ok(TcpProxy {
        stat_prefix: format!("tcp.{}.", c.stat_prefix),
        cluster,
        idle_timeout: duration::timeout_or(&c.idle_timeout, Duration::from_secs(3600)),
        max_connect_attempts: c.max_connect_attempts.unwrap_or(1).max(1),
        backoff,
        max_downstream_connection_duration: duration::opt_nonzero(
            &c.max_downstream_connection_duration,
        ),
        access_logs: access_logs(&c.access_log, &path.field("access_log"), diags)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_pick_covers_every_cluster() {
        let w = TcpCluster::Weighted {
            clusters: vec![("a".into(), 1), ("b".into(), 3)],
            total: 4,
        };
        assert_eq!(&**w.pick(0), "a");
        assert_eq!(&**w.pick(1), "b");
        assert_eq!(&**w.pick(3), "b");
        assert_eq!(&**w.pick(4), "a");
    }
}
