//! Route tables: `RouteConfiguration` compiled for matching.
//!
//! Owns virtual host selection (exact domain, then the longest `*suffix`, then
//! the longest `prefix*`, then `*`), route matchers with regexes compiled, and
//! route actions (forward, redirect, direct response) with their rewrites,
//! timeouts, retry and mirror policies and header mutations, all resolved once
//! when the config is built.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, StatusCode};
use regex::Regex;
use rvoy_api::envoy::config::route::v3 as pb;
use rvoy_config_load::{ConfigError, FieldPath, Seg};

use crate::duration;
use crate::extension::{self, Category};
use crate::headers::{HeaderMutations, data_source};
use crate::http_filters::PerFilterConfigs;
use crate::matcher::{
    FractionalPercent, HeaderMatcher, QueryParameterMatcher, RuntimeFraction, compile_regex,
    compile_regex_unanchored, header_name,
};
use crate::support::{Diagnostics, MessageSupport, ignored, yes};

pub(crate) static SUPPORT: &[MessageSupport] = &[
    MessageSupport {
        message: "envoy.config.route.v3.RouteConfiguration",
        fields: &[
            yes("name"),
            yes("typed_per_filter_config"),
            yes("virtual_hosts"),
            yes("internal_only_headers"),
            yes("response_headers_to_add"),
            yes("response_headers_to_remove"),
            yes("request_headers_to_add"),
            yes("request_headers_to_remove"),
            yes("most_specific_header_mutations_wins"),
            yes("validate_clusters"),
            yes("max_direct_response_body_size_bytes"),
            yes("request_mirror_policies"),
            yes("ignore_port_in_host_matching"),
            yes("ignore_path_parameters_in_path_matching"),
            ignored(
                "metadata",
                "read only by filters and formatters rvoy does not implement",
            ),
        ],
    },
    MessageSupport {
        message: "envoy.config.route.v3.VirtualHost",
        fields: &[
            yes("name"),
            yes("typed_per_filter_config"),
            yes("domains"),
            yes("routes"),
            yes("require_tls"),
            ignored("virtual_clusters", "only adds per-virtual-cluster stats"),
            yes("request_headers_to_add"),
            yes("request_headers_to_remove"),
            yes("response_headers_to_add"),
            yes("response_headers_to_remove"),
            yes("include_request_attempt_count"),
            yes("include_attempt_count_in_response"),
            yes("retry_policy"),
            yes("include_is_timeout_retry_header"),
            yes("per_request_buffer_limit_bytes"),
            yes("request_mirror_policies"),
            ignored(
                "metadata",
                "read only by filters and formatters rvoy does not implement",
            ),
        ],
    },
    MessageSupport {
        message: "envoy.config.route.v3.Route",
        fields: &[
            yes("name"),
            yes("typed_per_filter_config"),
            yes("match"),
            yes("route"),
            yes("redirect"),
            yes("direct_response"),
            yes("non_forwarding_action"),
            ignored(
                "metadata",
                "read only by filters and formatters rvoy does not implement",
            ),
            ignored("decorator", "names tracing spans; rvoy has no tracer"),
            ignored("tracing", "tracing sampling; rvoy has no tracer"),
            yes("request_headers_to_add"),
            yes("request_headers_to_remove"),
            yes("response_headers_to_add"),
            yes("response_headers_to_remove"),
            yes("per_request_buffer_limit_bytes"),
            ignored("stat_prefix", "only adds per-route stats"),
        ],
    },
    MessageSupport {
        message: "envoy.config.route.v3.Decorator",
        fields: &[yes("operation"), yes("propagate")],
    },
    MessageSupport {
        message: "envoy.config.route.v3.NonForwardingAction",
        fields: &[],
    },
    MessageSupport {
        message: "envoy.config.route.v3.RouteMatch",
        fields: &[
            yes("prefix"),
            yes("path"),
            yes("safe_regex"),
            yes("path_separated_prefix"),
            yes("case_sensitive"),
            yes("runtime_fraction"),
            yes("headers"),
            yes("query_parameters"),
            yes("grpc"),
        ],
    },
    MessageSupport {
        message: "envoy.config.route.v3.RouteMatch.GrpcRouteMatchOptions",
        fields: &[],
    },
    MessageSupport {
        message: "envoy.config.route.v3.RouteAction",
        fields: &[
            yes("cluster"),
            yes("cluster_header"),
            yes("weighted_clusters"),
            yes("cluster_not_found_response_code"),
            yes("prefix_rewrite"),
            yes("regex_rewrite"),
            yes("host_rewrite_literal"),
            yes("auto_host_rewrite"),
            yes("host_rewrite_header"),
            yes("host_rewrite_path_regex"),
            yes("append_x_forwarded_host"),
            yes("timeout"),
            yes("idle_timeout"),
            yes("retry_policy"),
            yes("request_mirror_policies"),
            yes("priority"),
            yes("upgrade_configs"),
            yes("internal_redirect_policy"),
            yes("max_stream_duration"),
        ],
    },
    MessageSupport {
        message: "envoy.config.route.v3.RouteAction.UpgradeConfig",
        fields: &[yes("upgrade_type"), yes("enabled")],
    },
    MessageSupport {
        message: "envoy.config.route.v3.RouteAction.MaxStreamDuration",
        fields: &[
            yes("max_stream_duration"),
            yes("grpc_timeout_header_max"),
            yes("grpc_timeout_header_offset"),
        ],
    },
    MessageSupport {
        message: "envoy.config.route.v3.RouteAction.RequestMirrorPolicy",
        fields: &[
            yes("cluster"),
            yes("cluster_header"),
            yes("runtime_fraction"),
            ignored("trace_sampled", "tracing sampling; rvoy has no tracer"),
            yes("disable_shadow_host_suffix_append"),
            yes("host_rewrite_literal"),
        ],
    },
    MessageSupport {
        message: "envoy.config.route.v3.WeightedCluster",
        fields: &[yes("clusters"), yes("total_weight"), yes("header_name")],
    },
    MessageSupport {
        message: "envoy.config.route.v3.WeightedCluster.ClusterWeight",
        fields: &[
            yes("name"),
            yes("cluster_header"),
            yes("weight"),
            yes("request_headers_to_add"),
            yes("request_headers_to_remove"),
            yes("response_headers_to_add"),
            yes("response_headers_to_remove"),
            yes("host_rewrite_literal"),
        ],
    },
    MessageSupport {
        message: "envoy.config.route.v3.RetryPolicy",
        fields: &[
            yes("retry_on"),
            yes("num_retries"),
            yes("per_try_timeout"),
            yes("per_try_idle_timeout"),
            yes("retry_host_predicate"),
            yes("host_selection_retry_max_attempts"),
            yes("retriable_status_codes"),
            yes("retry_back_off"),
            yes("retriable_headers"),
            yes("retriable_request_headers"),
        ],
    },
    MessageSupport {
        message: "envoy.config.route.v3.RetryPolicy.RetryBackOff",
        fields: &[yes("base_interval"), yes("max_interval")],
    },
    MessageSupport {
        message: "envoy.config.route.v3.RetryPolicy.RetryHostPredicate",
        fields: &[yes("name"), yes("typed_config")],
    },
    MessageSupport {
        message: "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate",
        fields: &[],
    },
    MessageSupport {
        message: "envoy.config.route.v3.RedirectAction",
        fields: &[
            yes("https_redirect"),
            yes("scheme_redirect"),
            yes("host_redirect"),
            yes("port_redirect"),
            yes("path_redirect"),
            yes("prefix_rewrite"),
            yes("regex_rewrite"),
            yes("response_code"),
            yes("strip_query"),
        ],
    },
    MessageSupport {
        message: "envoy.config.route.v3.DirectResponseAction",
        fields: &[yes("status"), yes("body")],
    },
    MessageSupport {
        message: "envoy.config.route.v3.InternalRedirectPolicy",
        fields: &[
            yes("max_internal_redirects"),
            yes("redirect_response_codes"),
            yes("allow_cross_scheme_redirect"),
            yes("response_headers_to_copy"),
        ],
    },
];

/// Envoy's default route timeout.
pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(15);

/// A compiled `RouteConfiguration`.
#[derive(Debug)]
pub struct RouteConfig {
    pub name: String,
    pub virtual_hosts: Vec<VirtualHost>,
    exact: BTreeMap<String, usize>,
    /// `*suffix` domains: (suffix, vhost), longest suffix first.
    suffixes: Vec<(String, usize)>,
    /// `prefix*` domains: (prefix, vhost), longest prefix first.
    prefixes: Vec<(String, usize)>,
    default_vhost: Option<usize>,
    pub ignore_port_in_host_matching: bool,
    pub ignore_path_parameters_in_path_matching: bool,
    pub internal_only_headers: Vec<HeaderName>,
    pub request_headers: HeaderMutations,
    pub response_headers: HeaderMutations,
    pub most_specific_header_mutations_wins: bool,
    pub mirror_policies: Vec<MirrorPolicy>,
    /// Clusters named by routes, checked against the cluster manager when
    /// `validate_clusters` is on (the default for static route configs).
    pub validate_clusters: bool,
    pub per_filter: PerFilterConfigs,
    /// Some header mutation value has command operators (it may read the
    /// request's stream info, timings included).
    formatted_headers: bool,
}

/// A virtual host and its routes.
#[derive(Debug)]
pub struct VirtualHost {
    pub name: String,
    pub domains: Vec<String>,
    pub routes: Vec<Route>,
    /// The routes indexed by literal path (hosts with many routes).
    pub route_index: Option<crate::route_index::RouteIndex>,
    pub require_tls: RequireTls,
    pub request_headers: HeaderMutations,
    pub response_headers: HeaderMutations,
    pub retry_policy: Option<Arc<RetryPolicy>>,
    pub include_request_attempt_count: bool,
    pub include_attempt_count_in_response: bool,
    pub include_is_timeout_retry_header: bool,
    pub per_request_buffer_limit_bytes: Option<u32>,
    pub mirror_policies: Vec<MirrorPolicy>,
    pub per_filter: PerFilterConfigs,
}

/// `VirtualHost.require_tls`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequireTls {
    None,
    ExternalOnly,
    All,
}

/// One route: a matcher and what to do.
#[derive(Debug)]
pub struct Route {
    /// Shared with every request's record of it (`%ROUTE_NAME%`).
    pub name: Arc<str>,
    pub matcher: RouteMatch,
    pub action: RouteAction,
    pub request_headers: HeaderMutations,
    pub response_headers: HeaderMutations,
    pub per_request_buffer_limit_bytes: Option<u32>,
    pub per_filter: PerFilterConfigs,
}

/// How the path is matched.
#[derive(Clone, Debug)]
pub enum PathMatch {
    Prefix(String),
    Exact(String),
    Regex(Regex),
    /// `path_separated_prefix`: the prefix, then end of path, `?` or `/`.
    SeparatedPrefix(String),
}

/// A compiled `RouteMatch`.
#[derive(Clone, Debug)]
pub struct RouteMatch {
    pub path: PathMatch,
    pub case_sensitive: bool,
    pub headers: Vec<HeaderMatcher>,
    pub query_parameters: Vec<QueryParameterMatcher>,
    pub runtime_fraction: Option<RuntimeFraction>,
    /// `grpc: {}`: only requests with a gRPC content type.
    pub grpc: bool,
}

impl RouteMatch {
    /// Whether `path` (without the query) matches the path part of this route.
    pub fn path_matches(&self, path: &str) -> bool {
        match &self.path {
            PathMatch::Prefix(p) => starts_with(path, p, self.case_sensitive),
            PathMatch::Exact(p) => {
                if self.case_sensitive {
                    path == p
                } else {
                    path.eq_ignore_ascii_case(p)
                }
            }
            PathMatch::Regex(r) => r.is_match(path),
            PathMatch::SeparatedPrefix(p) => {
                starts_with(path, p, self.case_sensitive)
                    && matches!(path.as_bytes().get(p.len()), None | Some(b'/') | Some(b'?'))
            }
        }
    }
}

fn starts_with(s: &str, prefix: &str, case_sensitive: bool) -> bool {
    if case_sensitive {
        s.starts_with(prefix)
    } else {
        s.len() >= prefix.len()
            && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
    }
}

/// What a matched route does.
#[derive(Debug)]
pub enum RouteAction {
    Forward(Box<ForwardAction>),
    Redirect(Box<Redirect>),
    DirectResponse(DirectResponse),
    /// `non_forwarding_action`: filters act, the router sends nothing upstream.
    NonForwarding,
}

/// How the upstream cluster is chosen.
#[derive(Debug)]
pub enum ClusterSpecifier {
    Cluster(Arc<str>),
    /// The cluster named by a request header.
    Header(HeaderName),
    Weighted(WeightedClusters),
}

/// `weighted_clusters`.
#[derive(Debug)]
pub struct WeightedClusters {
    pub clusters: Vec<ClusterWeight>,
    pub total_weight: u64,
    /// `header_name`: a request header carrying the random value to use.
    pub random_value_header: Option<HeaderName>,
}

/// One member of `weighted_clusters`.
#[derive(Debug)]
pub struct ClusterWeight {
    pub name: ClusterName,
    pub weight: u32,
    pub request_headers: HeaderMutations,
    pub response_headers: HeaderMutations,
    pub host_rewrite_literal: Option<String>,
}

/// A cluster given by name or by a request header.
#[derive(Debug, Clone)]
pub enum ClusterName {
    Static(Arc<str>),
    Header(HeaderName),
}

impl WeightedClusters {
    /// Envoy's pick: `random % total` walks the cumulative weights.
    pub fn pick(&self, random: u64) -> Option<&ClusterWeight> {
        if self.total_weight == 0 {
            return None;
        }
        let mut target = random % self.total_weight;
        for c in &self.clusters {
            let w = u64::from(c.weight);
            if target < w {
                return Some(c);
            }
            target -= w;
        }
        self.clusters.last()
    }
}

/// How the Host/:authority is rewritten on the way upstream.
#[derive(Debug)]
pub enum HostRewrite {
    None,
    Literal(String),
    /// To the upstream host's hostname (from DNS clusters or `hostname`).
    Auto,
    Header(HeaderName),
    PathRegex {
        pattern: Regex,
        substitution: String,
    },
}

/// A compiled `RouteAction`.
#[derive(Debug)]
pub struct ForwardAction {
    pub cluster: ClusterSpecifier,
    pub cluster_not_found_status: StatusCode,
    pub prefix_rewrite: Option<String>,
    pub regex_rewrite: Option<(Regex, String)>,
    pub host_rewrite: HostRewrite,
    pub append_x_forwarded_host: bool,
    /// `None`: no timeout (`timeout: 0s`).
    pub timeout: Option<Duration>,
    /// The route's `idle_timeout`; `Some(ZERO)` disables the stream idle timeout.
    pub idle_timeout: Option<Duration>,
    /// `max_stream_duration.max_stream_duration`; `Some(ZERO)` disables the
    /// connection manager's.
    pub max_stream_duration: Option<Duration>,
    /// `max_stream_duration` is set (Envoy's "new timeouts": the effective
    /// duration is written to a gRPC request's `grpc-timeout`).
    pub uses_max_stream_duration: bool,
    /// `max_stream_duration.grpc_timeout_header_max`: a request's
    /// `grpc-timeout` becomes its max stream duration, capped at this
    /// (`ZERO`: uncapped).
    pub grpc_timeout_header_max: Option<Duration>,
    /// `max_stream_duration.grpc_timeout_header_offset`: subtracted from the
    /// `grpc-timeout` duration.
    pub grpc_timeout_header_offset: Option<Duration>,
    pub retry_policy: Option<Arc<RetryPolicy>>,
    pub mirror_policies: Vec<MirrorPolicy>,
    pub priority_high: bool,
    /// Per-route overrides of the HCM's `upgrade_configs` (type -> enabled).
    pub upgrades: Vec<(String, bool)>,
    pub internal_redirect: Option<InternalRedirectPolicy>,
}

/// A redirect response.
#[derive(Debug)]
pub struct Redirect {
    pub scheme: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub path: RedirectPath,
    pub status: StatusCode,
    pub strip_query: bool,
}

#[derive(Debug)]
pub enum RedirectPath {
    Keep,
    Path(String),
    Prefix(String),
    Regex(Regex, String),
}

/// A direct response.
#[derive(Clone, Debug)]
pub struct DirectResponse {
    pub status: StatusCode,
    pub body: Option<Bytes>,
}

/// `RetryPolicy`, with Envoy's defaults applied.
#[derive(Debug)]
pub struct RetryPolicy {
    pub retry_on: RetryOn,
    pub num_retries: u32,
    pub per_try_timeout: Option<Duration>,
    pub per_try_idle_timeout: Option<Duration>,
    pub retriable_status_codes: Vec<u16>,
    pub retriable_headers: Vec<HeaderMatcher>,
    pub retriable_request_headers: Vec<HeaderMatcher>,
    pub base_interval: Duration,
    pub max_interval: Duration,
    /// `envoy.retry_host_predicates.previous_hosts`.
    pub avoid_previous_hosts: bool,
    pub host_selection_retry_max_attempts: u32,
}

/// The `retry_on` conditions as bits. Its `Debug` lists them by name:
/// `RetryOn(5xx,reset)`.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryOn(pub u32);

impl std::fmt::Debug for RetryOn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = RetryOn::NAMES
            .iter()
            .filter(|(_, bit)| self.has(*bit))
            .map(|(name, _)| *name)
            .collect();
        write!(f, "RetryOn({})", names.join(","))
    }
}

impl RetryOn {
    pub const FIVE_XX: u32 = 1 << 0;
    pub const GATEWAY_ERROR: u32 = 1 << 1;
    pub const RESET: u32 = 1 << 2;
    pub const CONNECT_FAILURE: u32 = 1 << 3;
    pub const RETRIABLE_4XX: u32 = 1 << 4;
    pub const REFUSED_STREAM: u32 = 1 << 5;
    pub const RETRIABLE_STATUS_CODES: u32 = 1 << 6;
    pub const RETRIABLE_HEADERS: u32 = 1 << 7;
    pub const ENVOY_RATELIMITED: u32 = 1 << 8;
    pub const RESET_BEFORE_REQUEST: u32 = 1 << 9;
    pub const HTTP3_POST_CONNECT_FAILURE: u32 = 1 << 10;
    pub const GRPC_CANCELLED: u32 = 1 << 16;
    pub const GRPC_DEADLINE_EXCEEDED: u32 = 1 << 17;
    pub const GRPC_RESOURCE_EXHAUSTED: u32 = 1 << 18;
    pub const GRPC_UNAVAILABLE: u32 = 1 << 19;
    pub const GRPC_INTERNAL: u32 = 1 << 20;

    /// Envoy's names of the conditions.
    pub const NAMES: [(&'static str, u32); 16] = [
        ("5xx", Self::FIVE_XX),
        ("gateway-error", Self::GATEWAY_ERROR),
        ("reset", Self::RESET),
        ("connect-failure", Self::CONNECT_FAILURE),
        ("retriable-4xx", Self::RETRIABLE_4XX),
        ("refused-stream", Self::REFUSED_STREAM),
        ("retriable-status-codes", Self::RETRIABLE_STATUS_CODES),
        ("retriable-headers", Self::RETRIABLE_HEADERS),
        ("envoy-ratelimited", Self::ENVOY_RATELIMITED),
        ("reset-before-request", Self::RESET_BEFORE_REQUEST),
        (
            "http3-post-connect-failure",
            Self::HTTP3_POST_CONNECT_FAILURE,
        ),
        ("cancelled", Self::GRPC_CANCELLED),
        ("deadline-exceeded", Self::GRPC_DEADLINE_EXCEEDED),
        ("resource-exhausted", Self::GRPC_RESOURCE_EXHAUSTED),
        ("unavailable", Self::GRPC_UNAVAILABLE),
        ("internal", Self::GRPC_INTERNAL),
    ];

    /// Parses Envoy's comma-separated `retry_on` / `x-envoy-retry-on` values;
    /// unknown tokens are ignored, as Envoy does.
    pub fn parse(text: &str) -> RetryOn {
        let mut bits = 0;
        for token in text.split(',').map(str::trim) {
            if let Some((_, bit)) = Self::NAMES.iter().find(|(name, _)| *name == token) {
                bits |= bit;
            }
        }
        RetryOn(bits)
    }

    pub fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }
}

/// A request mirror (shadow) policy.
#[derive(Clone, Debug)]
pub struct MirrorPolicy {
    pub cluster: ClusterName,
    pub fraction: Option<RuntimeFraction>,
    pub disable_shadow_host_suffix_append: bool,
    pub host_rewrite_literal: Option<String>,
}

/// `internal_redirect_policy`.
#[derive(Clone, Debug)]
pub struct InternalRedirectPolicy {
    pub max_internal_redirects: u32,
    pub redirect_response_codes: Vec<u16>,
    pub allow_cross_scheme_redirect: bool,
    pub response_headers_to_copy: Vec<HeaderName>,
}

impl RouteConfig {
    /// Selects the virtual host for a Host/:authority value (Envoy's `findVirtualHost`).
    /// Every header mutation list of the configuration.
    fn mutation_levels(&self) -> impl Iterator<Item = &HeaderMutations> {
        let rc = [&self.request_headers, &self.response_headers].into_iter();
        let vhosts = self.virtual_hosts.iter().flat_map(|v| {
            let routes = v.routes.iter().flat_map(|r| {
                let weighted = match &r.action {
                    RouteAction::Forward(a) => match &a.cluster {
                        ClusterSpecifier::Weighted(w) => w
                            .clusters
                            .iter()
                            .flat_map(|c| [&c.request_headers, &c.response_headers])
                            .collect::<Vec<_>>(),
                        _ => Vec::new(),
                    },
                    _ => Vec::new(),
                };
                [&r.request_headers, &r.response_headers]
                    .into_iter()
                    .chain(weighted)
            });
            [&v.request_headers, &v.response_headers]
                .into_iter()
                .chain(routes)
        });
        rc.chain(vhosts)
    }

    /// Whether some header mutation value has command operators.
    pub fn has_formatted_headers(&self) -> bool {
        self.formatted_headers
    }

    pub fn find_virtual_host(&self, host: &str) -> Option<&VirtualHost> {
        let mut host_buf;
        let mut host = host;
        if host.bytes().any(|b| b.is_ascii_uppercase()) {
            host_buf = host.to_ascii_lowercase();
            host = &host_buf;
        }
        if self.ignore_port_in_host_matching
            && let Some(stripped) = strip_port(host)
        {
            host_buf = stripped.to_owned();
            host = &host_buf;
        }
        if let Some(&i) = self.exact.get(host) {
            return self.virtual_hosts.get(i);
        }
        for (suffix, i) in &self.suffixes {
            if host.len() > suffix.len() && host.ends_with(suffix.as_str()) {
                return self.virtual_hosts.get(*i);
            }
        }
        for (prefix, i) in &self.prefixes {
            if host.len() > prefix.len() && host.starts_with(prefix.as_str()) {
                return self.virtual_hosts.get(*i);
            }
        }
        self.default_vhost.and_then(|i| self.virtual_hosts.get(i))
    }

    /// Every cluster named statically by a route that `pick` selects (for
    /// `validate_clusters`: the unknown ones), in route order. Paths are built
    /// only for the clusters picked.
    pub fn referenced_clusters(&self, pick: impl Fn(&str) -> bool) -> Vec<(FieldPath, Arc<str>)> {
        let route_path = |vi: usize, ri: usize| {
            FieldPath::root()
                .field("virtual_hosts")
                .index(vi)
                .field("routes")
                .index(ri)
                .field("route")
        };
        let mut out = Vec::new();
        for (vi, vh) in self.virtual_hosts.iter().enumerate() {
            for (ri, r) in vh.routes.iter().enumerate() {
                let RouteAction::Forward(f) = &r.action else {
                    continue;
                };
                match &f.cluster {
                    ClusterSpecifier::Cluster(c) if pick(c) => {
                        out.push((route_path(vi, ri).field("cluster"), c.clone()))
                    }
                    ClusterSpecifier::Cluster(_) | ClusterSpecifier::Header(_) => {}
                    ClusterSpecifier::Weighted(w) => {
                        for (ci, c) in w.clusters.iter().enumerate() {
                            if let ClusterName::Static(n) = &c.name
                                && pick(n)
                            {
                                out.push((
                                    route_path(vi, ri)
                                        .field("weighted_clusters")
                                        .field("clusters")
                                        .index(ci),
                                    n.clone(),
                                ));
                            }
                        }
                    }
                }
            }
        }
        out
    }
}

/// `host:port` -> `host` (IPv6 literals keep their brackets).
pub fn strip_port(host: &str) -> Option<&str> {
    if host.starts_with('[') {
        let end = host.find(']')?;
        return host[end + 1..].starts_with(':').then(|| &host[..=end]);
    }
    let (h, port) = host.rsplit_once(':')?;
    (!port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())).then_some(h)
}

/// Builds a route table from its proto. `path` is where the route config sits.
pub fn build(
    rc: &pb::RouteConfiguration,
    path: &FieldPath,
    diags: &mut Diagnostics,
) -> Result<RouteConfig, ConfigError> {
    let mut virtual_hosts = Vec::with_capacity(rc.virtual_hosts.len());
    let mut exact = BTreeMap::new();
    let mut suffixes = Vec::new();
    let mut prefixes = Vec::new();
    let mut default_vhost = None;
    let mut seen_domains: HashMap<String, ()> = HashMap::new();
    for (vi, vh) in rc.virtual_hosts.iter().enumerate() {
        let vpath = path.field("virtual_hosts").index(vi);
        for (di, domain) in vh.domains.iter().enumerate() {
            let d = domain.to_ascii_lowercase();
            let dpath = vpath.field("domains").index(di);
            if seen_domains.insert(d.clone(), ()).is_some() {
                if d == "*" {
                    return Err(ConfigError::semantic(
                        dpath,
                        format!(
                            "Only a single wildcard domain is permitted in route {}",
                            rc.name
                        ),
                    ));
                }
                return Err(ConfigError::semantic(
                    dpath,
                    format!(
                        "Only unique values for domains are permitted. Duplicate entry of domain {d} in route {}",
                        rc.name
                    ),
                ));
            }
            if d == "*" {
                default_vhost = Some(vi);
            } else if let Some(suffix) = d.strip_prefix('*') {
                suffixes.push((suffix.to_owned(), vi));
            } else if let Some(prefix) = d.strip_suffix('*') {
                prefixes.push((prefix.to_owned(), vi));
            } else {
                exact.insert(d, vi);
            }
        }
        virtual_hosts.push(virtual_host(vh, &vpath, diags)?);
    }
    // Longest wildcard first; among equal lengths the first configured wins.
    suffixes.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
    prefixes.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
    let internal_only_headers = rc
        .internal_only_headers
        .iter()
        .enumerate()
        .map(|(i, h)| header_name(h, &path.field("internal_only_headers").index(i)))
        .collect::<Result<_, _>>()?;
    let request_headers = header_mutations(
        &rc.request_headers_to_add,
        &rc.request_headers_to_remove,
        path,
        Direction::Request,
    )?;
    let response_headers = header_mutations(
        &rc.response_headers_to_add,
        &rc.response_headers_to_remove,
        path,
        Direction::Response,
    )?;
    let max_body = rc.max_direct_response_body_size_bytes.unwrap_or(4096);
    let built = RouteConfig {
        name: rc.name.clone(),
        virtual_hosts,
        exact,
        suffixes,
        prefixes,
        default_vhost,
        ignore_port_in_host_matching: rc.ignore_port_in_host_matching,
        ignore_path_parameters_in_path_matching: rc.ignore_path_parameters_in_path_matching,
        internal_only_headers,
        request_headers,
        response_headers,
        most_specific_header_mutations_wins: rc.most_specific_header_mutations_wins,
        mirror_policies: mirror_policies(
            &rc.request_mirror_policies,
            &path.field("request_mirror_policies"),
        )?,
        validate_clusters: rc.validate_clusters.unwrap_or(true),
        per_filter: crate::http_filters::per_filter_configs(
            &rc.typed_per_filter_config,
            &path.field("typed_per_filter_config"),
            diags,
        )?,
        formatted_headers: false,
    };
    let mut built = built;
    let formatted = built.mutation_levels().any(HeaderMutations::has_formats);
    built.formatted_headers = formatted;
    for (vi, vh) in built.virtual_hosts.iter().enumerate() {
        for (ri, r) in vh.routes.iter().enumerate() {
            if let RouteAction::DirectResponse(DirectResponse {
                body: Some(body), ..
            }) = &r.action
                && body.len() > max_body as usize
            {
                return Err(ConfigError::semantic(
                    path.field("virtual_hosts")
                        .index(vi)
                        .field("routes")
                        .index(ri)
                        .field("direct_response")
                        .field("body"),
                    format!(
                        "response body size is {} bytes; maximum is {max_body}",
                        body.len()
                    ),
                ));
            }
        }
    }
    Ok(built)
}

fn virtual_host(
    vh: &pb::VirtualHost,
    path: &FieldPath,
    diags: &mut Diagnostics,
) -> Result<VirtualHost, ConfigError> {
    let require_tls = match pb::virtual_host::TlsRequirementType::try_from(vh.require_tls) {
        Ok(pb::virtual_host::TlsRequirementType::ExternalOnly) => RequireTls::ExternalOnly,
        Ok(pb::virtual_host::TlsRequirementType::All) => RequireTls::All,
        _ => RequireTls::None,
    };
    let retry_policy = vh
        .retry_policy
        .as_ref()
        .map(|r| retry_policy(r, &path.field("retry_policy"), diags).map(Arc::new))
        .transpose()?;
    let mut routes = Vec::with_capacity(vh.routes.len());
    // One path extended in place for every route (not one built per route).
    let mut route_path = path.field("routes");
    for (ri, r) in vh.routes.iter().enumerate() {
        route_path.push(Seg::Index(ri));
        routes.push(route(r, &route_path, retry_policy.as_ref(), diags)?);
        route_path.pop();
    }
    Ok(VirtualHost {
        name: vh.name.clone(),
        domains: vh.domains.clone(),
        route_index: crate::route_index::RouteIndex::build(&routes),
        routes,
        require_tls,
        request_headers: header_mutations(
            &vh.request_headers_to_add,
            &vh.request_headers_to_remove,
            path,
            Direction::Request,
        )?,
        response_headers: header_mutations(
            &vh.response_headers_to_add,
            &vh.response_headers_to_remove,
            path,
            Direction::Response,
        )?,
        retry_policy,
        include_request_attempt_count: vh.include_request_attempt_count,
        include_attempt_count_in_response: vh.include_attempt_count_in_response,
        include_is_timeout_retry_header: vh.include_is_timeout_retry_header,
        per_request_buffer_limit_bytes: vh.per_request_buffer_limit_bytes,
        mirror_policies: mirror_policies(
            &vh.request_mirror_policies,
            &path.field("request_mirror_policies"),
        )?,
        per_filter: crate::http_filters::per_filter_configs(
            &vh.typed_per_filter_config,
            &path.field("typed_per_filter_config"),
            diags,
        )?,
    })
}

fn route(
    r: &pb::Route,
    path: &FieldPath,
    vhost_retry: Option<&Arc<RetryPolicy>>,
    diags: &mut Diagnostics,
) -> Result<Route, ConfigError> {
    let Some(m) = &r.r#match else {
        return Err(ConfigError::semantic(
            path.field("match"),
            "a route needs a match",
        ));
    };
    let matcher = route_match(m, &path.field("match"))?;
    let action = match &r.action {
        Some(pb::route::Action::Route(a)) => RouteAction::Forward(Box::new(forward_action(
            a,
            &path.field("route"),
            vhost_retry,
            diags,
        )?)),
        Some(pb::route::Action::Redirect(rd)) => {
            RouteAction::Redirect(Box::new(redirect(rd, &path.field("redirect"))?))
        }
        Some(pb::route::Action::DirectResponse(d)) => {
            let p = path.field("direct_response");
            let status = StatusCode::from_u16(d.status as u16).map_err(|_| {
                ConfigError::semantic(p.field("status"), format!("invalid status {}", d.status))
            })?;
            let body = d
                .body
                .as_ref()
                .map(|b| data_source(b, &p.field("body")))
                .transpose()?;
            RouteAction::DirectResponse(DirectResponse { status, body })
        }
        Some(pb::route::Action::NonForwardingAction(_)) => RouteAction::NonForwarding,
        Some(pb::route::Action::FilterAction(_)) => {
            return Err(ConfigError::not_supported(
                path.field("filter_action"),
                "filter_action",
            ));
        }
        None => {
            return Err(ConfigError::semantic(
                path.clone(),
                "a route needs one of route, redirect, direct_response",
            ));
        }
    };
    Ok(Route {
        name: r.name.as_str().into(),
        matcher,
        action,
        request_headers: header_mutations(
            &r.request_headers_to_add,
            &r.request_headers_to_remove,
            path,
            Direction::Request,
        )?,
        response_headers: header_mutations(
            &r.response_headers_to_add,
            &r.response_headers_to_remove,
            path,
            Direction::Response,
        )?,
        per_request_buffer_limit_bytes: r.per_request_buffer_limit_bytes,
        per_filter: if r.typed_per_filter_config.is_empty() {
            PerFilterConfigs::default()
        } else {
            crate::http_filters::per_filter_configs(
                &r.typed_per_filter_config,
                &path.field("typed_per_filter_config"),
                diags,
            )?
        },
    })
}

/// Which headers a level's `*_headers_to_add` / `*_headers_to_remove` change.
#[derive(Clone, Copy)]
enum Direction {
    Request,
    Response,
}

/// The header mutations of a route (or virtual host) at `path`. Their field
/// paths are built only when there are mutations: a big route table has
/// thousands of routes without any.
fn header_mutations(
    add: &[rvoy_api::envoy::config::core::v3::HeaderValueOption],
    remove: &[String],
    path: &FieldPath,
    direction: Direction,
) -> Result<HeaderMutations, ConfigError> {
    if add.is_empty() && remove.is_empty() {
        return Ok(HeaderMutations::default());
    }
    let (add_field, remove_field, request) = match direction {
        Direction::Request => ("request_headers_to_add", "request_headers_to_remove", true),
        Direction::Response => (
            "response_headers_to_add",
            "response_headers_to_remove",
            false,
        ),
    };
    HeaderMutations::from_proto(
        add,
        remove,
        &path.field(add_field),
        &path.field(remove_field),
        request,
    )
}

fn route_match(m: &pb::RouteMatch, path: &FieldPath) -> Result<RouteMatch, ConfigError> {
    use pb::route_match::PathSpecifier as P;
    let case_sensitive = m.case_sensitive.unwrap_or(true);
    let fold = |s: &str| s.to_owned();
    let path_match = match &m.path_specifier {
        Some(P::Prefix(p)) => PathMatch::Prefix(fold(p)),
        Some(P::Path(p)) => PathMatch::Exact(fold(p)),
        Some(P::SafeRegex(r)) => PathMatch::Regex(compile_regex(
            &r.regex,
            &path.field("safe_regex").field("regex"),
        )?),
        Some(P::PathSeparatedPrefix(p)) => {
            if p.contains(['?', '#']) || (p.len() > 1 && p.ends_with('/')) {
                return Err(ConfigError::semantic(
                    path.field("path_separated_prefix"),
                    "path_separated_prefix may not contain ? or # or end with /",
                ));
            }
            PathMatch::SeparatedPrefix(fold(p))
        }
        Some(P::ConnectMatcher(_)) => {
            return Err(ConfigError::not_supported(
                path.field("connect_matcher"),
                "connect_matcher",
            ));
        }
        Some(P::PathMatchPolicy(_)) => {
            return Err(ConfigError::not_supported(
                path.field("path_match_policy"),
                "path_match_policy",
            ));
        }
        None => {
            return Err(ConfigError::semantic(
                path.clone(),
                "a path specifier is required",
            ));
        }
    };
    Ok(RouteMatch {
        path: path_match,
        case_sensitive,
        headers: m
            .headers
            .iter()
            .enumerate()
            .map(|(i, h)| HeaderMatcher::from_proto(h, &path.field("headers").index(i)))
            .collect::<Result<_, _>>()?,
        query_parameters: m
            .query_parameters
            .iter()
            .enumerate()
            .map(|(i, q)| {
                QueryParameterMatcher::from_proto(q, &path.field("query_parameters").index(i))
            })
            .collect::<Result<_, _>>()?,
        runtime_fraction: m.runtime_fraction.as_ref().map(RuntimeFraction::from_proto),
        grpc: m.grpc.is_some(),
    })
}

fn cluster_not_found_status(code: i32) -> StatusCode {
    match pb::route_action::ClusterNotFoundResponseCode::try_from(code) {
        Ok(pb::route_action::ClusterNotFoundResponseCode::NotFound) => StatusCode::NOT_FOUND,
        Ok(pb::route_action::ClusterNotFoundResponseCode::InternalServerError) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn forward_action(
    a: &pb::RouteAction,
    path: &FieldPath,
    vhost_retry: Option<&Arc<RetryPolicy>>,
    diags: &mut Diagnostics,
) -> Result<ForwardAction, ConfigError> {
    use pb::route_action::ClusterSpecifier as C;
    use pb::route_action::HostRewriteSpecifier as H;
    let cluster = match &a.cluster_specifier {
        Some(C::Cluster(c)) => ClusterSpecifier::Cluster(c.as_str().into()),
        Some(C::ClusterHeader(h)) => {
            ClusterSpecifier::Header(header_name(h, &path.field("cluster_header"))?)
        }
        Some(C::WeightedClusters(w)) => {
            ClusterSpecifier::Weighted(weighted(w, &path.field("weighted_clusters"))?)
        }
        Some(C::ClusterSpecifierPlugin(_)) | Some(C::InlineClusterSpecifierPlugin(_)) => {
            return Err(ConfigError::not_supported(
                path.clone(),
                "cluster specifier plugins",
            ));
        }
        None => {
            return Err(ConfigError::semantic(
                path.clone(),
                "a cluster specifier is required",
            ));
        }
    };
    let host_rewrite = match &a.host_rewrite_specifier {
        None => HostRewrite::None,
        Some(H::HostRewriteLiteral(h)) => HostRewrite::Literal(h.clone()),
        Some(H::AutoHostRewrite(b)) => {
            if *b {
                HostRewrite::Auto
            } else {
                HostRewrite::None
            }
        }
        Some(H::HostRewriteHeader(h)) => {
            HostRewrite::Header(header_name(h, &path.field("host_rewrite_header"))?)
        }
        Some(H::HostRewritePathRegex(r)) => {
            let p = path.field("host_rewrite_path_regex");
            let pattern = r.pattern.as_ref().ok_or_else(|| {
                ConfigError::semantic(p.field("pattern"), "a pattern is required")
            })?;
            HostRewrite::PathRegex {
                pattern: compile_regex_unanchored(
                    &pattern.regex,
                    &p.field("pattern").field("regex"),
                )?,
                substitution: rewrite_substitution(&r.substitution),
            }
        }
        Some(H::HostRewrite(_)) => {
            return Err(ConfigError::not_supported(
                path.field("host_rewrite"),
                "host_rewrite (formatter)",
            ));
        }
    };
    let regex_rewrite = a
        .regex_rewrite
        .as_ref()
        .map(|r| {
            let p = path.field("regex_rewrite");
            let pattern = r.pattern.as_ref().ok_or_else(|| {
                ConfigError::semantic(p.field("pattern"), "a pattern is required")
            })?;
            Ok::<_, ConfigError>((
                compile_regex_unanchored(&pattern.regex, &p.field("pattern").field("regex"))?,
                rewrite_substitution(&r.substitution),
            ))
        })
        .transpose()?;
    if !a.prefix_rewrite.is_empty() && regex_rewrite.is_some() {
        return Err(ConfigError::semantic(
            path.clone(),
            "Cannot specify both prefix_rewrite and regex_rewrite",
        ));
    }
    let retry_policy = match &a.retry_policy {
        Some(r) => Some(Arc::new(retry_policy(
            r,
            &path.field("retry_policy"),
            diags,
        )?)),
        None => vhost_retry.cloned(),
    };
    let upgrades = a
        .upgrade_configs
        .iter()
        .map(|u| {
            (
                u.upgrade_type.to_ascii_lowercase(),
                u.enabled.unwrap_or(true),
            )
        })
        .collect();
    let internal_redirect = a
        .internal_redirect_policy
        .as_ref()
        .map(|p| {
            let ip = path.field("internal_redirect_policy");
            Ok::<_, ConfigError>(InternalRedirectPolicy {
                max_internal_redirects: p.max_internal_redirects.unwrap_or(1),
                redirect_response_codes: if p.redirect_response_codes.is_empty() {
                    vec![302]
                } else {
                    p.redirect_response_codes
                        .iter()
                        .map(|c| *c as u16)
                        .collect()
                },
                allow_cross_scheme_redirect: p.allow_cross_scheme_redirect,
                response_headers_to_copy: p
                    .response_headers_to_copy
                    .iter()
                    .enumerate()
                    .map(|(i, h)| header_name(h, &ip.field("response_headers_to_copy").index(i)))
                    .collect::<Result<_, _>>()?,
            })
        })
        .transpose()?;
    if a.internal_redirect_action
        == pb::route_action::InternalRedirectAction::HandleInternalRedirect as i32
    {
        return Err(ConfigError::not_supported(
            path.field("internal_redirect_action"),
            "internal_redirect_action (use internal_redirect_policy)",
        ));
    }
    Ok(ForwardAction {
        cluster,
        cluster_not_found_status: cluster_not_found_status(a.cluster_not_found_response_code),
        prefix_rewrite: (!a.prefix_rewrite.is_empty()).then(|| a.prefix_rewrite.clone()),
        regex_rewrite,
        host_rewrite,
        append_x_forwarded_host: a.append_x_forwarded_host,
        timeout: duration::timeout_or(&a.timeout, DEFAULT_ROUTE_TIMEOUT),
        idle_timeout: duration::opt(&a.idle_timeout),
        max_stream_duration: a
            .max_stream_duration
            .as_ref()
            .and_then(|m| duration::opt(&m.max_stream_duration)),
        uses_max_stream_duration: a.max_stream_duration.is_some(),
        grpc_timeout_header_max: a
            .max_stream_duration
            .as_ref()
            .and_then(|m| duration::opt(&m.grpc_timeout_header_max)),
        grpc_timeout_header_offset: a
            .max_stream_duration
            .as_ref()
            .and_then(|m| duration::opt(&m.grpc_timeout_header_offset)),
        retry_policy,
        mirror_policies: if a.request_mirror_policies.is_empty() {
            Vec::new()
        } else {
            mirror_policies(
                &a.request_mirror_policies,
                &path.field("request_mirror_policies"),
            )?
        },
        priority_high: a.priority
            == rvoy_api::envoy::config::core::v3::RoutingPriority::High as i32,
        upgrades,
        internal_redirect,
    })
}

/// Envoy substitutions use `\1`; the regex crate wants `${1}`.
fn rewrite_substitution(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(d) if d.is_ascii_digit() => {
                    let d = *d;
                    chars.next();
                    out.push_str("${");
                    out.push(d);
                    out.push('}');
                }
                Some('\\') => {
                    chars.next();
                    out.push('\\');
                }
                _ => out.push('\\'),
            },
            '$' => out.push_str("$$"),
            other => out.push(other),
        }
    }
    out
}

fn weighted(w: &pb::WeightedCluster, path: &FieldPath) -> Result<WeightedClusters, ConfigError> {
    let mut clusters = Vec::with_capacity(w.clusters.len());
    let mut total: u64 = 0;
    for (i, c) in w.clusters.iter().enumerate() {
        let p = path.field("clusters").index(i);
        let name = if !c.cluster_header.is_empty() {
            ClusterName::Header(header_name(&c.cluster_header, &p.field("cluster_header"))?)
        } else if !c.name.is_empty() {
            ClusterName::Static(c.name.as_str().into())
        } else {
            return Err(ConfigError::semantic(
                p,
                "a weighted cluster needs a name or cluster_header",
            ));
        };
        let weight = c.weight.unwrap_or(0);
        total += u64::from(weight);
        use pb::weighted_cluster::cluster_weight::HostRewriteSpecifier as H;
        clusters.push(ClusterWeight {
            name,
            weight,
            request_headers: header_mutations(
                &c.request_headers_to_add,
                &c.request_headers_to_remove,
                &p,
                Direction::Request,
            )?,
            response_headers: header_mutations(
                &c.response_headers_to_add,
                &c.response_headers_to_remove,
                &p,
                Direction::Response,
            )?,
            host_rewrite_literal: c
                .host_rewrite_specifier
                .as_ref()
                .map(|H::HostRewriteLiteral(h)| h.clone()),
        });
    }
    if let Some(expected) = w.total_weight
        && u64::from(expected) != total
    {
        return Err(ConfigError::semantic(
            path.field("total_weight"),
            format!("Sum of weights in the weighted_cluster should add up to {expected}"),
        ));
    }
    if total == 0 {
        return Err(ConfigError::semantic(
            path.clone(),
            "Sum of weights in the weighted_cluster must be greater than 0",
        ));
    }
    use pb::weighted_cluster::RandomValueSpecifier as R;
    let random_value_header = match &w.random_value_specifier {
        Some(R::HeaderName(h)) => Some(header_name(h, &path.field("header_name"))?),
        Some(R::UseHashPolicy(true)) => {
            return Err(ConfigError::not_supported(
                path.field("use_hash_policy"),
                "use_hash_policy",
            ));
        }
        _ => None,
    };
    Ok(WeightedClusters {
        clusters,
        total_weight: total,
        random_value_header,
    })
}

fn retry_policy(
    r: &pb::RetryPolicy,
    path: &FieldPath,
    diags: &mut Diagnostics,
) -> Result<RetryPolicy, ConfigError> {
    let base_interval = r
        .retry_back_off
        .as_ref()
        .and_then(|b| duration::opt(&b.base_interval))
        .unwrap_or(Duration::from_millis(25));
    let max_interval = r
        .retry_back_off
        .as_ref()
        .and_then(|b| duration::opt(&b.max_interval))
        .unwrap_or(base_interval * 10);
    if max_interval < base_interval {
        return Err(ConfigError::semantic(
            path.field("retry_back_off").field("max_interval"),
            "max_interval must be greater than or equal to the base_interval",
        ));
    }
    let mut avoid_previous_hosts = false;
    for (i, p) in r.retry_host_predicate.iter().enumerate() {
        let pp = path.field("retry_host_predicate").index(i);
        let typed = p
            .config_type
            .as_ref()
            .map(|pb::retry_policy::retry_host_predicate::ConfigType::TypedConfig(a)| a);
        let resolved =
            extension::resolve(Category::RetryHostPredicate, &p.name, typed, &pp, diags)?;
        if resolved.extension.name == "envoy.retry_host_predicates.previous_hosts" {
            avoid_previous_hosts = true;
        }
    }
    Ok(RetryPolicy {
        retry_on: RetryOn::parse(&r.retry_on),
        num_retries: r.num_retries.unwrap_or(1),
        per_try_timeout: duration::opt_nonzero(&r.per_try_timeout),
        per_try_idle_timeout: duration::opt_nonzero(&r.per_try_idle_timeout),
        retriable_status_codes: r.retriable_status_codes.iter().map(|c| *c as u16).collect(),
        retriable_headers: r
            .retriable_headers
            .iter()
            .enumerate()
            .map(|(i, h)| HeaderMatcher::from_proto(h, &path.field("retriable_headers").index(i)))
            .collect::<Result<_, _>>()?,
        retriable_request_headers: r
            .retriable_request_headers
            .iter()
            .enumerate()
            .map(|(i, h)| {
                HeaderMatcher::from_proto(h, &path.field("retriable_request_headers").index(i))
            })
            .collect::<Result<_, _>>()?,
        base_interval,
        max_interval,
        avoid_previous_hosts,
        host_selection_retry_max_attempts: u32::try_from(
            r.host_selection_retry_max_attempts.max(1),
        )
        .unwrap_or(1),
    })
}

fn mirror_policies(
    policies: &[pb::route_action::RequestMirrorPolicy],
    path: &FieldPath,
) -> Result<Vec<MirrorPolicy>, ConfigError> {
    policies
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let p = path.index(i);
            if !m.request_headers_mutations.is_empty() {
                return Err(ConfigError::not_supported(
                    p.field("request_headers_mutations"),
                    "request_headers_mutations",
                ));
            }
            let cluster = if !m.cluster_header.is_empty() {
                ClusterName::Header(header_name(&m.cluster_header, &p.field("cluster_header"))?)
            } else if !m.cluster.is_empty() {
                ClusterName::Static(m.cluster.as_str().into())
            } else {
                return Err(ConfigError::semantic(
                    p,
                    "a mirror policy needs cluster or cluster_header",
                ));
            };
            Ok(MirrorPolicy {
                cluster,
                fraction: m.runtime_fraction.as_ref().map(RuntimeFraction::from_proto),
                disable_shadow_host_suffix_append: m.disable_shadow_host_suffix_append,
                host_rewrite_literal: (!m.host_rewrite_literal.is_empty())
                    .then(|| m.host_rewrite_literal.clone()),
            })
        })
        .collect()
}

fn redirect(r: &pb::RedirectAction, path: &FieldPath) -> Result<Redirect, ConfigError> {
    use pb::redirect_action::PathRewriteSpecifier as P;
    use pb::redirect_action::SchemeRewriteSpecifier as S;
    let scheme = match &r.scheme_rewrite_specifier {
        Some(S::HttpsRedirect(true)) => Some("https".to_owned()),
        Some(S::SchemeRedirect(s)) if !s.is_empty() => Some(s.to_ascii_lowercase()),
        _ => None,
    };
    let path_rewrite = match &r.path_rewrite_specifier {
        None => RedirectPath::Keep,
        Some(P::PathRedirect(p)) => RedirectPath::Path(p.clone()),
        Some(P::PrefixRewrite(p)) => RedirectPath::Prefix(p.clone()),
        Some(P::RegexRewrite(rr)) => {
            let p = path.field("regex_rewrite");
            let pattern = rr.pattern.as_ref().ok_or_else(|| {
                ConfigError::semantic(p.field("pattern"), "a pattern is required")
            })?;
            RedirectPath::Regex(
                compile_regex_unanchored(&pattern.regex, &p.field("pattern").field("regex"))?,
                rewrite_substitution(&rr.substitution),
            )
        }
        Some(P::PathRewrite(_)) => {
            return Err(ConfigError::not_supported(
                path.field("path_rewrite"),
                "path_rewrite",
            ));
        }
    };
    let status = match pb::redirect_action::RedirectResponseCode::try_from(r.response_code) {
        Ok(pb::redirect_action::RedirectResponseCode::Found) => StatusCode::FOUND,
        Ok(pb::redirect_action::RedirectResponseCode::SeeOther) => StatusCode::SEE_OTHER,
        Ok(pb::redirect_action::RedirectResponseCode::TemporaryRedirect) => {
            StatusCode::TEMPORARY_REDIRECT
        }
        Ok(pb::redirect_action::RedirectResponseCode::PermanentRedirect) => {
            StatusCode::PERMANENT_REDIRECT
        }
        _ => StatusCode::MOVED_PERMANENTLY,
    };
    Ok(Redirect {
        scheme,
        host: (!r.host_redirect.is_empty()).then(|| r.host_redirect.clone()),
        port: u16::try_from(r.port_redirect).ok().filter(|p| *p != 0),
        path: path_rewrite,
        status,
        strip_query: r.strip_query,
    })
}

/// Fraction helper re-exported for routes.
pub fn fraction_default(f: &RuntimeFraction) -> FractionalPercent {
    f.default
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A route config of one virtual host (`*`) with `routes_yaml` as its
    /// routes (a YAML list indented at column 0).
    pub(crate) fn config_with_routes(routes_yaml: &str) -> Arc<RouteConfig> {
        let mut yaml = String::from("virtual_hosts:\n- name: vh\n  domains: [\"*\"]\n  routes:\n");
        for line in routes_yaml.lines() {
            yaml.push_str("  ");
            yaml.push_str(line);
            yaml.push('\n');
        }
        Arc::new(config(&yaml))
    }

    fn config(yaml: &str) -> RouteConfig {
        let pool = &rvoy_api::descriptor_pool();
        let desc = pool
            .get_message_by_name("envoy.config.route.v3.RouteConfiguration")
            .expect("desc");
        let node = rvoy_config_load::yaml::parse_yaml(yaml).expect("yaml");
        let parsed = rvoy_config_load::proto_json::parse_message(
            pool,
            &node,
            &desc,
            None,
            FieldPath::root(),
        );
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        let rc: pb::RouteConfiguration = parsed.message.transcode_to().expect("rc");
        build(&rc, &FieldPath::root(), &mut Diagnostics::default()).expect("builds")
    }

    #[test]
    fn virtual_host_selection_order() {
        let rc = config(
            r#"
virtual_hosts:
- {name: exact, domains: [api.example.com], routes: []}
- {name: long_suffix, domains: ["*.api.example.com"], routes: []}
- {name: suffix, domains: ["*.example.com"], routes: []}
- {name: prefix, domains: ["api.*"], routes: []}
- {name: default, domains: ["*"], routes: []}
"#,
        );
        let pick = |h: &str| rc.find_virtual_host(h).map(|v| v.name.as_str());
        assert_eq!(pick("api.example.com"), Some("exact"));
        assert_eq!(pick("API.Example.COM"), Some("exact"));
        assert_eq!(pick("v1.api.example.com"), Some("long_suffix"));
        assert_eq!(pick("www.example.com"), Some("suffix"));
        assert_eq!(pick("api.other.org"), Some("prefix"));
        assert_eq!(pick("other.org"), Some("default"));
        assert_eq!(pick("api.example.com:8080"), Some("prefix"));
    }

    #[test]
    fn duplicate_wildcard_is_rejected() {
        let pool = &rvoy_api::descriptor_pool();
        let desc = pool
            .get_message_by_name("envoy.config.route.v3.RouteConfiguration")
            .expect("desc");
        let node = rvoy_config_load::yaml::parse_yaml(
            "name: third-listener\nvirtual_hosts:\n- {name: a, domains: ['*']}\n- {name: b, domains: ['*']}\n",
        )
        .expect("yaml");
        let parsed = rvoy_config_load::proto_json::parse_message(
            pool,
            &node,
            &desc,
            None,
            FieldPath::root(),
        );
        let rc: pb::RouteConfiguration = parsed.message.transcode_to().expect("rc");
        let e = build(&rc, &FieldPath::root(), &mut Diagnostics::default()).expect_err("dup");
        assert!(
            e.message
                .contains("Only a single wildcard domain is permitted in route third-listener")
        );
    }

    #[test]
    fn path_matching() {
        let m = |spec: PathMatch, cs: bool| RouteMatch {
            path: spec,
            case_sensitive: cs,
            headers: vec![],
            query_parameters: vec![],
            runtime_fraction: None,
            grpc: false,
        };
        assert!(m(PathMatch::Prefix("/api".into()), true).path_matches("/api/x"));
        assert!(!m(PathMatch::Prefix("/API".into()), true).path_matches("/api/x"));
        assert!(m(PathMatch::Prefix("/API".into()), false).path_matches("/api/x"));
        let sep = m(PathMatch::SeparatedPrefix("/api".into()), true);
        assert!(sep.path_matches("/api"));
        assert!(sep.path_matches("/api/v1"));
        assert!(!sep.path_matches("/apiv1"));
    }

    #[test]
    fn weighted_pick_and_substitution() {
        assert_eq!(rewrite_substitution(r"/v2/\1/x$"), "/v2/${1}/x$$");
        let w = WeightedClusters {
            clusters: vec![
                ClusterWeight {
                    name: ClusterName::Static("a".into()),
                    weight: 1,
                    request_headers: Default::default(),
                    response_headers: Default::default(),
                    host_rewrite_literal: None,
                },
                ClusterWeight {
                    name: ClusterName::Static("b".into()),
                    weight: 3,
                    request_headers: Default::default(),
                    response_headers: Default::default(),
                    host_rewrite_literal: None,
                },
            ],
            total_weight: 4,
            random_value_header: None,
        };
        let name = |r| match &w.pick(r).expect("pick").name {
            ClusterName::Static(n) => n.to_string(),
            ClusterName::Header(_) => String::new(),
        };
        assert_eq!(name(0), "a");
        assert_eq!(name(1), "b");
        assert_eq!(name(4), "a");
    }
}
