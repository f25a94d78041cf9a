//! Clusters: discovery type, endpoints, load balancing policy, DNS settings,
//! connection options, circuit breakers and the upstream HTTP protocol.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rvoy_api::envoy::config::cluster::v3 as pb;
use rvoy_api::envoy::config::core::v3 as core;
use rvoy_api::envoy::config::endpoint::v3 as ep;
use rvoy_api::envoy::extensions::upstreams::http::v3 as upstream_http;
use rvoy_config_load::{ConfigError, FieldPath};

use crate::address::{self, EndpointAddress, TcpKeepalive};
use crate::dns_resolver::{self, DnsResolverConfig};
use crate::duration;
use crate::extension::{self, Category};
use crate::hcm::{CommonHttpOptions, Http1Options, Http2Options};
use crate::support::{Diagnostics, MessageSupport, ignored, yes};
use crate::tls::{self, Secrets, UpstreamTls};

pub(crate) static SUPPORT: &[MessageSupport] = &[
    MessageSupport {
        message: "envoy.config.cluster.v3.Cluster",
        fields: &[
            yes("name"),
            yes("alt_stat_name"),
            yes("type"),
            yes("connect_timeout"),
            yes("per_connection_buffer_limit_bytes"),
            yes("lb_policy"),
            yes("load_assignment"),
            yes("max_requests_per_connection"),
            yes("circuit_breakers"),
            yes("common_http_protocol_options"),
            yes("http_protocol_options"),
            yes("http2_protocol_options"),
            yes("typed_extension_protocol_options"),
            yes("dns_refresh_rate"),
            yes("dns_failure_refresh_rate"),
            yes("respect_dns_ttl"),
            yes("dns_lookup_family"),
            yes("dns_resolvers"),
            yes("use_tcp_for_dns_lookups"),
            yes("typed_dns_resolver_config"),
            yes("dns_resolution_config"),
            yes("upstream_bind_config"),
            yes("transport_socket"),
            yes("transport_socket_matches"),
            ignored(
                "metadata",
                "read only by filters and formatters rvoy does not implement",
            ),
            yes("upstream_connection_options"),
            ignored(
                "track_timeout_budgets",
                "only adds timeout budget histograms",
            ),
            ignored("track_cluster_stats", "only adds optional cluster stats"),
            yes("wait_for_warm_on_init"),
            ignored(
                "cleanup_interval",
                "only used by ORIGINAL_DST clusters, which rvoy rejects",
            ),
            yes("protocol_selection"),
        ],
    },
    MessageSupport {
        // Reached only through endpoint and locality metadata, whose keys
        // other than `envoy.transport_socket_match` the lowering reports.
        message: "envoy.config.core.v3.Metadata",
        fields: &[yes("filter_metadata"), yes("typed_filter_metadata")],
    },
    MessageSupport {
        message: "envoy.config.cluster.v3.Cluster.TransportSocketMatch",
        fields: &[yes("name"), yes("match"), yes("transport_socket")],
    },
    MessageSupport {
        message: "envoy.config.cluster.v3.Cluster.RefreshRate",
        fields: &[yes("base_interval"), yes("max_interval")],
    },
    MessageSupport {
        message: "envoy.config.endpoint.v3.ClusterLoadAssignment",
        fields: &[yes("cluster_name"), yes("endpoints")],
    },
    MessageSupport {
        message: "envoy.config.endpoint.v3.LocalityLbEndpoints",
        fields: &[
            ignored(
                "locality",
                "labels only: locality weights are rejected, and so is zone-aware routing where it could apply",
            ),
            yes("lb_endpoints"),
            yes("priority"),
            // `envoy.transport_socket_match`; other keys: `*_METADATA_IGNORED`.
            yes("metadata"),
        ],
    },
    MessageSupport {
        message: "envoy.config.core.v3.Locality",
        fields: &[yes("region"), yes("zone"), yes("sub_zone")],
    },
    MessageSupport {
        message: "envoy.config.endpoint.v3.LbEndpoint",
        fields: &[
            yes("endpoint"),
            yes("health_status"),
            // `envoy.transport_socket_match`; other keys: `*_METADATA_IGNORED`.
            yes("metadata"),
            yes("load_balancing_weight"),
        ],
    },
    MessageSupport {
        message: "envoy.config.endpoint.v3.Endpoint",
        fields: &[yes("address"), yes("hostname")],
    },
    MessageSupport {
        message: "envoy.config.cluster.v3.CircuitBreakers",
        fields: &[yes("thresholds")],
    },
    MessageSupport {
        message: "envoy.config.cluster.v3.CircuitBreakers.Thresholds",
        fields: &[
            yes("priority"),
            yes("max_connections"),
            yes("max_pending_requests"),
            yes("max_requests"),
            yes("max_retries"),
            ignored("track_remaining", "only adds remaining_* gauges"),
        ],
    },
    MessageSupport {
        message: "envoy.config.cluster.v3.UpstreamConnectionOptions",
        fields: &[yes("tcp_keepalive")],
    },
    MessageSupport {
        message: "envoy.config.core.v3.BindConfig",
        fields: &[
            yes("source_address"),
            yes("freebind"),
            yes("socket_options"),
        ],
    },
    MessageSupport {
        message: "envoy.config.core.v3.DnsResolutionConfig",
        fields: &[yes("resolvers"), yes("dns_resolver_options")],
    },
    MessageSupport {
        message: "envoy.config.core.v3.DnsResolverOptions",
        fields: &[
            yes("use_tcp_for_dns_lookups"),
            yes("no_default_search_domain"),
        ],
    },
    MessageSupport {
        message: "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        fields: &[
            yes("common_http_protocol_options"),
            yes("explicit_http_config"),
            yes("use_downstream_protocol_config"),
        ],
    },
    MessageSupport {
        message: "envoy.extensions.upstreams.http.v3.HttpProtocolOptions.ExplicitHttpConfig",
        fields: &[yes("http_protocol_options"), yes("http2_protocol_options")],
    },
    MessageSupport {
        message: "envoy.extensions.upstreams.http.v3.HttpProtocolOptions.UseDownstreamHttpConfig",
        fields: &[yes("http_protocol_options"), yes("http2_protocol_options")],
    },
];

/// How a cluster finds its hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Discovery {
    Static,
    /// Every address each name resolves to is a host.
    StrictDns,
    /// One connection target: the first address of the last resolution.
    LogicalDns,
}

/// The load balancing policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LbPolicy {
    RoundRobin,
    LeastRequest { choice_count: u32 },
    Random,
}

/// `dns_lookup_family`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsLookupFamily {
    /// IPv6 if there is any, else IPv4 (Envoy's AUTO).
    Auto,
    V4Only,
    V6Only,
    /// IPv4 if there is any, else IPv6.
    V4Preferred,
    /// Both families.
    All,
}

/// DNS settings of a DNS cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsSettings {
    pub lookup_family: DnsLookupFamily,
    pub refresh_rate: Duration,
    pub failure_refresh_base: Option<Duration>,
    pub failure_refresh_max: Option<Duration>,
    pub respect_ttl: bool,
    /// The cluster's own resolver; `None` uses the server's
    /// ([`crate::Config::dns_resolver`]).
    pub resolver: Option<DnsResolverConfig>,
}

/// A host's health as EDS or the load assignment states it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EdsHealth {
    Healthy,
    Unhealthy,
    Draining,
    Degraded,
}

/// One configured endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub address: EndpointAddress,
    pub hostname: String,
    pub weight: u32,
    pub priority: u32,
    pub health: EdsHealth,
    /// The transport socket its connections use, chosen at load time by the
    /// cluster's `transport_socket_matches`.
    pub transport_socket: TransportSocketChoice,
}

/// Which transport socket of its cluster an endpoint uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TransportSocketChoice {
    /// The cluster's `transport_socket` (Envoy's `default` match).
    #[default]
    Default,
    /// The entry of `transport_socket_matches` at this index.
    Match(usize),
}

/// One entry of `transport_socket_matches`.
#[derive(Debug)]
pub struct TransportSocketMatch {
    /// Its name, the stats prefix of `<name>.total_match_count`.
    pub name: String,
    /// `envoy.transport_sockets.tls`; `None`: raw buffer.
    pub tls: Option<Arc<UpstreamTls>>,
}

/// Circuit breaker limits of one priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    pub max_connections: u32,
    pub max_pending_requests: u32,
    pub max_requests: u32,
    pub max_retries: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            max_connections: 1024,
            max_pending_requests: 1024,
            max_requests: 1024,
            max_retries: 3,
        }
    }
}

/// Which HTTP protocol is spoken to the hosts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamProtocol {
    Http1,
    /// HTTP/2 (h2c over plain TCP).
    Http2,
    /// The protocol the downstream request used.
    UseDownstream,
}

/// A compiled cluster.
#[derive(Debug)]
pub struct Cluster {
    pub name: Arc<str>,
    /// The stats scope name (`alt_stat_name` or the name).
    pub stat_name: String,
    pub discovery: Discovery,
    pub lb_policy: LbPolicy,
    pub endpoints: Vec<Endpoint>,
    pub connect_timeout: Duration,
    pub per_connection_buffer_limit_bytes: u32,
    pub dns: DnsSettings,
    pub thresholds: Thresholds,
    pub high_thresholds: Thresholds,
    pub protocol: UpstreamProtocol,
    pub common_http: CommonHttpOptions,
    pub http1: Http1Options,
    pub http2: Http2Options,
    pub tcp_keepalive: Option<TcpKeepalive>,
    pub source_address: Option<SocketAddr>,
    pub bind_freebind: bool,
    pub bind_socket_options: Vec<address::SocketOption>,
    /// `transport_socket`: `envoy.transport_sockets.tls`; `None`: raw buffer.
    pub tls: Option<Arc<UpstreamTls>>,
    /// `transport_socket_matches`, in order; endpoints refer to them by index.
    pub transport_socket_matches: Vec<TransportSocketMatch>,
}

/// Builds a cluster. `path` is where it sits in the bootstrap.
pub fn build(
    c: &pb::Cluster,
    path: &FieldPath,
    secrets: &Secrets,
    diags: &mut Diagnostics,
) -> Result<Cluster, ConfigError> {
    use pb::cluster::{ClusterDiscoveryType, DiscoveryType as T, LbPolicy as L};
    let discovery = match &c.cluster_discovery_type {
        None => Discovery::Static,
        Some(ClusterDiscoveryType::Type(t)) => match T::try_from(*t) {
            Ok(T::Static) => Discovery::Static,
            Ok(T::StrictDns) => Discovery::StrictDns,
            Ok(T::LogicalDns) => Discovery::LogicalDns,
            Ok(T::Eds) => {
                return Err(ConfigError::not_supported(
                    path.field("type"),
                    "EDS clusters",
                ));
            }
            Ok(T::OriginalDst) => {
                return Err(ConfigError::not_supported(
                    path.field("type"),
                    "ORIGINAL_DST clusters",
                ));
            }
            Err(_) => {
                return Err(ConfigError::semantic(
                    path.field("type"),
                    format!("unknown cluster type {t}"),
                ));
            }
        },
        Some(ClusterDiscoveryType::ClusterType(ct)) => {
            let p = path.field("cluster_type");
            extension::resolve(
                Category::Cluster,
                &ct.name,
                ct.typed_config.as_ref(),
                &p,
                diags,
            )?;
            return Err(ConfigError::not_supported(p, &ct.name));
        }
    };
    let lb_policy = match L::try_from(c.lb_policy) {
        Ok(L::RoundRobin) => LbPolicy::RoundRobin,
        Ok(L::Random) => LbPolicy::Random,
        Ok(L::LeastRequest) => LbPolicy::LeastRequest {
            choice_count: match &c.lb_config {
                Some(pb::cluster::LbConfig::LeastRequestLbConfig(l)) => {
                    l.choice_count.unwrap_or(2).max(2)
                }
                _ => 2,
            },
        },
        Ok(other) => {
            return Err(ConfigError::not_supported(
                path.field("lb_policy"),
                other.as_str_name(),
            ));
        }
        Err(_) => {
            return Err(ConfigError::semantic(
                path.field("lb_policy"),
                "unknown lb_policy",
            ));
        }
    };
    if let Some(cfg) = &c.lb_config
        && !matches!(cfg, pb::cluster::LbConfig::LeastRequestLbConfig(l) if l.active_request_bias.is_none() && l.slow_start_config.is_none())
    {
        return Err(ConfigError::not_supported(
            path.field("lb_config"),
            "lb_config",
        ));
    }
    let allow_dns = discovery != Discovery::Static;
    let mut endpoints = Vec::new();
    // Each endpoint's own and its locality's metadata, for transport socket
    // matching below.
    let mut endpoint_metadata = Vec::new();
    if let Some(la) = &c.load_assignment {
        let lp = path.field("load_assignment");
        if la
            .policy
            .as_ref()
            .is_some_and(|p| !p.drop_overloads.is_empty())
        {
            return Err(ConfigError::not_supported(
                lp.field("policy"),
                "drop_overloads",
            ));
        }
        for (li, locality) in la.endpoints.iter().enumerate() {
            let llp = lp.field("endpoints").index(li);
            report_other_metadata(
                locality.metadata.as_ref(),
                LOCALITY_METADATA_IGNORED,
                &llp,
                diags,
            );
            if locality.load_balancing_weight.is_some() {
                return Err(ConfigError::not_supported(
                    llp.field("load_balancing_weight"),
                    "locality weights",
                ));
            }
            for (ei, lb) in locality.lb_endpoints.iter().enumerate() {
                let ep_path = llp.field("lb_endpoints").index(ei);
                report_other_metadata(
                    lb.metadata.as_ref(),
                    ENDPOINT_METADATA_IGNORED,
                    &ep_path,
                    diags,
                );
                let endpoint = match &lb.host_identifier {
                    Some(ep::lb_endpoint::HostIdentifier::Endpoint(e)) => e,
                    Some(ep::lb_endpoint::HostIdentifier::EndpointName(_)) => {
                        return Err(ConfigError::not_supported(
                            ep_path.field("endpoint_name"),
                            "endpoint_name",
                        ));
                    }
                    None => return Err(ConfigError::semantic(ep_path, "an endpoint is required")),
                };
                let ep_path = ep_path.field("endpoint");
                if endpoint.health_check_config.is_some() {
                    return Err(ConfigError::not_supported(
                        ep_path.field("health_check_config"),
                        "health_check_config",
                    ));
                }
                let addr = endpoint.address.as_ref().ok_or_else(|| {
                    ConfigError::semantic(ep_path.field("address"), "an address is required")
                })?;
                let address = address::lower(addr, &ep_path.field("address"), allow_dns)?;
                use rvoy_api::envoy::config::core::v3::HealthStatus as H;
                let health = match H::try_from(lb.health_status) {
                    Ok(H::Unhealthy) | Ok(H::Timeout) => EdsHealth::Unhealthy,
                    Ok(H::Draining) => EdsHealth::Draining,
                    Ok(H::Degraded) => EdsHealth::Degraded,
                    _ => EdsHealth::Healthy,
                };
                endpoints.push(Endpoint {
                    address,
                    hostname: endpoint.hostname.clone(),
                    weight: lb.load_balancing_weight.unwrap_or(1).max(1),
                    priority: locality.priority,
                    health,
                    transport_socket: TransportSocketChoice::Default,
                });
                endpoint_metadata.push((lb.metadata.as_ref(), locality.metadata.as_ref()));
            }
        }
    }
    if discovery == Discovery::LogicalDns {
        let count = endpoints.len();
        if count != 1 {
            return Err(ConfigError::semantic(
                path.field("load_assignment"),
                "LOGICAL_DNS clusters must have a single locality_lb_endpoint and a single lb_endpoint",
            ));
        }
    }
    let mut thresholds = Thresholds::default();
    let mut high_thresholds = Thresholds::default();
    if let Some(cb) = &c.circuit_breakers {
        if !cb.per_host_thresholds.is_empty() {
            return Err(ConfigError::not_supported(
                path.field("circuit_breakers").field("per_host_thresholds"),
                "per_host_thresholds",
            ));
        }
        for (i, t) in cb.thresholds.iter().enumerate() {
            let tp = path.field("circuit_breakers").field("thresholds").index(i);
            if t.retry_budget.is_some() {
                return Err(ConfigError::not_supported(
                    tp.field("retry_budget"),
                    "retry_budget",
                ));
            }
            if t.max_connection_pools.is_some() {
                return Err(ConfigError::not_supported(
                    tp.field("max_connection_pools"),
                    "max_connection_pools",
                ));
            }
            let target = if t.priority == core::RoutingPriority::High as i32 {
                &mut high_thresholds
            } else {
                &mut thresholds
            };
            *target = Thresholds {
                max_connections: t.max_connections.unwrap_or(1024),
                max_pending_requests: t.max_pending_requests.unwrap_or(1024),
                max_requests: t.max_requests.unwrap_or(1024),
                max_retries: t.max_retries.unwrap_or(3),
            };
        }
    }
    let (protocol, common_http, http1, http2) = protocol(c, path, diags)?;
    let dns = dns_settings(c, path, diags)?;
    let (source_address, bind_freebind, bind_socket_options) = match &c.upstream_bind_config {
        None => (None, false, Vec::new()),
        Some(b) => {
            let bp = path.field("upstream_bind_config");
            if !b.extra_source_addresses.is_empty() || !b.additional_source_addresses.is_empty() {
                return Err(ConfigError::not_supported(
                    bp.field("extra_source_addresses"),
                    "extra_source_addresses",
                ));
            }
            if b.local_address_selector.is_some() {
                return Err(ConfigError::not_supported(
                    bp.field("local_address_selector"),
                    "local_address_selector",
                ));
            }
            let src = b
                .source_address
                .as_ref()
                .map(|sa| {
                    let a = core::Address {
                        address: Some(core::address::Address::SocketAddress(sa.clone())),
                    };
                    address::resolved(&a, &bp.field("source_address")).map(|a| a.socket_addr())
                })
                .transpose()?
                .flatten();
            (
                src,
                b.freebind.unwrap_or(false),
                address::socket_options(&b.socket_options, &bp.field("socket_options"))?,
            )
        }
    };
    let tls = match &c.transport_socket {
        Some(ts) => transport_socket(ts, &path.field("transport_socket"), secrets, diags)?,
        None => None,
    };
    let mut transport_socket_matches = Vec::with_capacity(c.transport_socket_matches.len());
    let mut criteria = Vec::with_capacity(c.transport_socket_matches.len());
    for (i, m) in c.transport_socket_matches.iter().enumerate() {
        let mp = path.field("transport_socket_matches").index(i);
        let tp = mp.field("transport_socket");
        let tls = match &m.transport_socket {
            Some(ts) => transport_socket(ts, &tp, secrets, diags)?,
            // Envoy looks up the factory of an empty transport socket.
            None => {
                extension::resolve(Category::UpstreamTransportSocket, "", None, &tp, diags)?;
                None
            }
        };
        transport_socket_matches.push(TransportSocketMatch {
            name: m.name.clone(),
            tls,
        });
        criteria.push(m.r#match.as_ref());
    }
    for (e, (own, locality)) in endpoints.iter_mut().zip(&endpoint_metadata) {
        e.transport_socket = match_transport_socket(&criteria, *own, *locality);
    }
    let tls_to_pipe = endpoints.iter().position(|e| {
        matches!(
            &e.address,
            EndpointAddress::Resolved(crate::address::Address::Pipe { .. })
        ) && match e.transport_socket {
            TransportSocketChoice::Default => tls.is_some(),
            TransportSocketChoice::Match(i) => transport_socket_matches[i].tls.is_some(),
        }
    });
    if let Some(i) = tls_to_pipe {
        let tp = match endpoints[i].transport_socket {
            TransportSocketChoice::Default => path.field("transport_socket"),
            TransportSocketChoice::Match(m) => path
                .field("transport_socket_matches")
                .index(m)
                .field("transport_socket"),
        };
        return Err(ConfigError::not_supported(
            tp,
            "TLS to pipe (Unix socket) endpoints",
        ));
    }
    Ok(Cluster {
        name: c.name.as_str().into(),
        stat_name: if c.alt_stat_name.is_empty() {
            c.name.clone()
        } else {
            c.alt_stat_name.clone()
        },
        discovery,
        lb_policy,
        endpoints,
        connect_timeout: duration::opt(&c.connect_timeout).unwrap_or(Duration::from_secs(5)),
        per_connection_buffer_limit_bytes: c
            .per_connection_buffer_limit_bytes
            .unwrap_or(1024 * 1024),
        dns,
        thresholds,
        high_thresholds,
        protocol,
        common_http: CommonHttpOptions {
            max_requests_per_connection: common_http
                .max_requests_per_connection
                .or(c.max_requests_per_connection.filter(|n| *n > 0)),
            ..common_http
        },
        http1,
        http2,
        tcp_keepalive: c
            .upstream_connection_options
            .as_ref()
            .and_then(|o| o.tcp_keepalive.as_ref())
            .map(address::tcp_keepalive),
        source_address,
        bind_freebind,
        bind_socket_options,
        tls,
        transport_socket_matches,
    })
}

/// Lowers a cluster transport socket: the TLS context of
/// `envoy.transport_sockets.tls`, `None` for raw buffer.
fn transport_socket(
    ts: &core::TransportSocket,
    tp: &FieldPath,
    secrets: &Secrets,
    diags: &mut Diagnostics,
) -> Result<Option<Arc<UpstreamTls>>, ConfigError> {
    let typed = ts
        .config_type
        .as_ref()
        .map(|core::transport_socket::ConfigType::TypedConfig(a)| a);
    let resolved = extension::resolve(
        Category::UpstreamTransportSocket,
        &ts.name,
        typed,
        tp,
        diags,
    )?;
    if resolved.extension.name != "envoy.transport_sockets.tls" {
        return Ok(None);
    }
    let proto = resolved.config_as(tp)?;
    Ok(Some(Arc::new(tls::upstream(
        &proto,
        &tp.field("typed_config"),
        secrets,
    )?)))
}

/// The metadata key transport socket matching reads.
const TRANSPORT_SOCKET_MATCH: &str = "envoy.transport_socket_match";

/// Endpoint and locality metadata other than `envoy.transport_socket_match`
/// is accepted without effect: only filters, subset load balancing and
/// format operators rvoy lacks read it (`support::read_by_formatters`
/// rejects a config whose format strings read `LbEndpoint.metadata`).
const ENDPOINT_METADATA_IGNORED: (&str, &str) = (
    "envoy.config.endpoint.v3.LbEndpoint.metadata",
    "read by filters and subset load balancing rvoy lacks; %UPSTREAM_METADATA% is checked",
);
const LOCALITY_METADATA_IGNORED: (&str, &str) = (
    "envoy.config.endpoint.v3.LocalityLbEndpoints.metadata",
    "read only by filters rvoy lacks; no format operator reads it",
);

/// Reports metadata with keys other than `envoy.transport_socket_match` as
/// the ignored field `(field, reason)`; metadata with only that key as read
/// in part (format strings reading it are still rejected).
fn report_other_metadata(
    metadata: Option<&core::Metadata>,
    (field, reason): (&str, &'static str),
    path: &FieldPath,
    diags: &mut Diagnostics,
) {
    let Some(m) = metadata else { return };
    let other = !m.typed_filter_metadata.is_empty()
        || m.filter_metadata
            .keys()
            .any(|k| k != TRANSPORT_SOCKET_MATCH);
    let report = crate::support::IgnoredField {
        path: path.field("metadata"),
        field: field.to_owned(),
        reason,
    };
    if other {
        diags.ignored.push(report);
    } else {
        diags.partly_read.push(report);
    }
}

/// Envoy's choice of transport socket for an endpoint: the first entry of
/// `transport_socket_matches` whose every `match` field equals the field of
/// the endpoint's `envoy.transport_socket_match` metadata, then the same
/// against its locality's metadata, else the cluster's `transport_socket`.
/// An empty `match` matches every endpoint.
fn match_transport_socket(
    criteria: &[Option<&prost_types::Struct>],
    own: Option<&core::Metadata>,
    locality: Option<&core::Metadata>,
) -> TransportSocketChoice {
    for metadata in [own, locality] {
        if let Some(i) = criteria.iter().position(|c| labels_match(*c, metadata)) {
            return TransportSocketChoice::Match(i);
        }
    }
    TransportSocketChoice::Default
}

/// Whether every field of `labels` is in the `envoy.transport_socket_match`
/// metadata with an equal value (Envoy's `metadataLabelMatch`).
fn labels_match(labels: Option<&prost_types::Struct>, metadata: Option<&core::Metadata>) -> bool {
    let Some(labels) = labels.filter(|l| !l.fields.is_empty()) else {
        return true;
    };
    let Some(values) = metadata.and_then(|m| m.filter_metadata.get(TRANSPORT_SOCKET_MATCH)) else {
        return false;
    };
    labels
        .fields
        .iter()
        .all(|(k, v)| values.fields.get(k) == Some(v))
}

type Protocol = (
    UpstreamProtocol,
    CommonHttpOptions,
    Http1Options,
    Http2Options,
);

/// A cluster's `common_http_protocol_options` (upstream idle timeout 1 h by
/// default). Of the limits on upstream connections and streams, rvoy has the
/// idle timeout, `max_requests_per_connection` and `max_headers_count`.
fn upstream_common(
    o: Option<&core::HttpProtocolOptions>,
    path: &FieldPath,
) -> Result<CommonHttpOptions, ConfigError> {
    if let Some(o) = o {
        let unsupported = [
            (
                o.max_connection_duration.is_some(),
                "max_connection_duration",
            ),
            (o.max_stream_duration.is_some(), "max_stream_duration"),
            (
                o.headers_with_underscores_action != 0,
                "headers_with_underscores_action",
            ),
        ];
        if let Some((_, field)) = unsupported.iter().find(|(set, _)| *set) {
            return Err(ConfigError::not_supported(
                path.field(field),
                format_args!("upstream {field}"),
            ));
        }
    }
    Ok(CommonHttpOptions::from_proto(
        o,
        Some(Duration::from_secs(3600)),
    ))
}

fn protocol(
    c: &pb::Cluster,
    path: &FieldPath,
    diags: &mut Diagnostics,
) -> Result<Protocol, ConfigError> {
    let key = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
    let typed = c.typed_extension_protocol_options.iter().find(|(k, _)| {
        k.as_str() == key || k.as_str() == "envoy.upstreams.http.http_protocol_options"
    });
    for k in c.typed_extension_protocol_options.keys() {
        if k != key && k != "envoy.upstreams.http.http_protocol_options" {
            return Err(ConfigError::not_supported(
                path.field("typed_extension_protocol_options").key(k),
                k,
            ));
        }
    }
    if let Some((k, any)) = typed {
        let p = path.field("typed_extension_protocol_options").key(k);
        if c.http_protocol_options.is_some()
            || c.http2_protocol_options.is_some()
            || c.common_http_protocol_options.is_some()
        {
            return Err(ConfigError::semantic(
                p,
                "cluster: Both HttpProtocolOptions and the deprecated protocol option fields are set",
            ));
        }
        // The map value is the config itself: its fields sit right under the key.
        let resolved =
            extension::resolve_at(Category::UpstreamOptions, key, Some(any), &p, &p, diags)?;
        let opts: upstream_http::HttpProtocolOptions = resolved.config_as(&p)?;
        let tp = p.clone();
        if !opts.http_filters.is_empty() {
            return Err(ConfigError::not_supported(
                tp.field("http_filters"),
                "upstream HTTP filters",
            ));
        }
        if opts.upstream_http_protocol_options.is_some() {
            return Err(ConfigError::not_supported(
                tp.field("upstream_http_protocol_options"),
                "upstream_http_protocol_options",
            ));
        }
        let common = upstream_common(
            opts.common_http_protocol_options.as_ref(),
            &tp.field("common_http_protocol_options"),
        )?;
        use upstream_http::http_protocol_options::UpstreamProtocolOptions as U;
        use upstream_http::http_protocol_options::explicit_http_config::ProtocolConfig as E;
        return Ok(match &opts.upstream_protocol_options {
            None => (
                UpstreamProtocol::Http1,
                common,
                Http1Options::from_proto(None, &tp)?,
                Http2Options::from_proto(None, &tp)?,
            ),
            Some(U::ExplicitHttpConfig(e)) => match &e.protocol_config {
                Some(E::Http2ProtocolOptions(h2)) => (
                    UpstreamProtocol::Http2,
                    common,
                    Http1Options::from_proto(None, &tp)?,
                    Http2Options::from_proto(
                        Some(h2),
                        &tp.field("explicit_http_config")
                            .field("http2_protocol_options"),
                    )?,
                ),
                Some(E::HttpProtocolOptions(h1)) => (
                    UpstreamProtocol::Http1,
                    common,
                    Http1Options::from_proto(
                        Some(h1),
                        &tp.field("explicit_http_config")
                            .field("http_protocol_options"),
                    )?,
                    Http2Options::from_proto(None, &tp)?,
                ),
                Some(E::Http3ProtocolOptions(_)) => {
                    return Err(ConfigError::not_supported(
                        tp.field("explicit_http_config")
                            .field("http3_protocol_options"),
                        "HTTP/3 upstreams",
                    ));
                }
                None => (
                    UpstreamProtocol::Http1,
                    common,
                    Http1Options::from_proto(None, &tp)?,
                    Http2Options::from_proto(None, &tp)?,
                ),
            },
            Some(U::UseDownstreamProtocolConfig(d)) => {
                if d.http3_protocol_options.is_some() {
                    return Err(ConfigError::not_supported(
                        tp.field("use_downstream_protocol_config")
                            .field("http3_protocol_options"),
                        "HTTP/3 upstreams",
                    ));
                }
                (
                    UpstreamProtocol::UseDownstream,
                    common,
                    Http1Options::from_proto(
                        d.http_protocol_options.as_ref(),
                        &tp.field("use_downstream_protocol_config")
                            .field("http_protocol_options"),
                    )?,
                    Http2Options::from_proto(
                        d.http2_protocol_options.as_ref(),
                        &tp.field("use_downstream_protocol_config")
                            .field("http2_protocol_options"),
                    )?,
                )
            }
            Some(U::AutoConfig(_)) => {
                return Err(ConfigError::not_supported(
                    tp.field("auto_config"),
                    "auto_config (ALPN protocol selection needs TLS)",
                ));
            }
        });
    }
    let common = upstream_common(
        c.common_http_protocol_options.as_ref(),
        &path.field("common_http_protocol_options"),
    )?;
    let http1 = Http1Options::from_proto(
        c.http_protocol_options.as_ref(),
        &path.field("http_protocol_options"),
    )?;
    let http2 = Http2Options::from_proto(
        c.http2_protocol_options.as_ref(),
        &path.field("http2_protocol_options"),
    )?;
    let use_downstream =
        c.protocol_selection == pb::cluster::ClusterProtocolSelection::UseDownstreamProtocol as i32;
    let protocol = if use_downstream {
        UpstreamProtocol::UseDownstream
    } else if c.http2_protocol_options.is_some() {
        UpstreamProtocol::Http2
    } else {
        UpstreamProtocol::Http1
    };
    Ok((protocol, common, http1, http2))
}

fn dns_settings(
    c: &pb::Cluster,
    path: &FieldPath,
    diags: &mut Diagnostics,
) -> Result<DnsSettings, ConfigError> {
    use pb::cluster::DnsLookupFamily as F;
    let lookup_family = match F::try_from(c.dns_lookup_family) {
        Ok(F::V4Only) => DnsLookupFamily::V4Only,
        Ok(F::V6Only) => DnsLookupFamily::V6Only,
        Ok(F::V4Preferred) => DnsLookupFamily::V4Preferred,
        Ok(F::All) => DnsLookupFamily::All,
        _ => DnsLookupFamily::Auto,
    };
    let resolver = dns_resolver::for_cluster(c, path, diags)?;
    let refresh_rate = duration::opt(&c.dns_refresh_rate).unwrap_or(Duration::from_secs(5));
    if refresh_rate < Duration::from_millis(1) {
        return Err(ConfigError::semantic(
            path.field("dns_refresh_rate"),
            "dns_refresh_rate must be at least 1ms",
        ));
    }
    Ok(DnsSettings {
        lookup_family,
        refresh_rate,
        failure_refresh_base: c
            .dns_failure_refresh_rate
            .as_ref()
            .and_then(|r| duration::opt(&r.base_interval)),
        failure_refresh_max: c
            .dns_failure_refresh_rate
            .as_ref()
            .and_then(|r| duration::opt(&r.max_interval)),
        respect_ttl: c.respect_dns_ttl,
        resolver,
    })
}
