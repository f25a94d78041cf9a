//! The whole config: a bootstrap lowered into listeners, clusters, admin, node
//! identity, stats and runtime settings, with Envoy's cross-resource checks
//! (duplicate names and addresses, routes to unknown clusters).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use prost_reflect::DynamicMessage;
use rvoy_api::envoy::config::bootstrap::v3 as pb;
use rvoy_config_load::source::SourceMap;
use rvoy_config_load::{ConfigError, ConfigErrors, FieldPath};

use crate::access_log::{AccessLog, access_logs};
use crate::address::{self, Address};
use crate::cluster::{self, Cluster};
use crate::duration;
use crate::listener::{self, Listener, NetworkFilter};
use crate::support::{self, Diagnostics, IgnoredField, MessageSupport, ignored, yes};

pub(crate) static SUPPORT: &[MessageSupport] = &[
    MessageSupport {
        message: "envoy.config.bootstrap.v3.Bootstrap",
        fields: &[
            yes("node"),
            yes("static_resources"),
            yes("cluster_manager"),
            yes("stats_flush_interval"),
            ignored("watchdog", "deadlock detection tuning"),
            ignored("watchdogs", "deadlock detection tuning"),
            yes("layered_runtime"),
            yes("admin"),
            ignored("enable_dispatcher_stats", "only adds event loop stats"),
            ignored(
                "stats_server_version_override",
                "only changes server.version",
            ),
            yes("use_tcp_for_dns_lookups"),
            yes("dns_resolution_config"),
            ignored("inline_headers", "a header-map performance hint"),
            ignored("perf_tracing_file_path", "Perfetto tracing output"),
            ignored(
                "node_context_params",
                "xDS resource naming context, used only by xDS",
            ),
            yes("default_regex_engine"),
            ignored("memory_allocator_manager", "allocator release tuning"),
            yes("stats_config"),
        ],
    },
    MessageSupport {
        message: "envoy.config.metrics.v3.StatsConfig",
        fields: &[
            yes("stats_tags"),
            yes("use_all_default_tags"),
            yes("stats_matcher"),
            yes("histogram_bucket_settings"),
        ],
    },
    MessageSupport {
        message: "envoy.config.metrics.v3.TagSpecifier",
        fields: &[yes("tag_name"), yes("regex"), yes("fixed_value")],
    },
    MessageSupport {
        message: "envoy.config.metrics.v3.StatsMatcher",
        fields: &[
            yes("reject_all"),
            yes("exclusion_list"),
            yes("inclusion_list"),
        ],
    },
    MessageSupport {
        message: "envoy.type.matcher.v3.ListStringMatcher",
        fields: &[yes("patterns")],
    },
    MessageSupport {
        message: "envoy.config.metrics.v3.HistogramBucketSettings",
        fields: &[yes("match"), yes("buckets")],
    },
    MessageSupport {
        message: "envoy.config.bootstrap.v3.Bootstrap.StaticResources",
        fields: &[yes("listeners"), yes("clusters")],
    },
    MessageSupport {
        message: "envoy.config.bootstrap.v3.Admin",
        fields: &[
            yes("access_log"),
            yes("access_log_path"),
            ignored("profile_path", "CPU profiler output path"),
            yes("address"),
            yes("socket_options"),
            ignored(
                "ignore_global_conn_limit",
                "rvoy has no global connection limit yet",
            ),
        ],
    },
    MessageSupport {
        message: "envoy.config.bootstrap.v3.ClusterManager",
        fields: &[
            ignored(
                "local_cluster_name",
                "used by zone-aware routing, which rvoy does not do",
            ),
            yes("upstream_bind_config"),
        ],
    },
    MessageSupport {
        message: "envoy.config.bootstrap.v3.Watchdog",
        fields: &[],
    },
    MessageSupport {
        message: "envoy.config.bootstrap.v3.LayeredRuntime",
        fields: &[yes("layers")],
    },
    MessageSupport {
        message: "envoy.config.bootstrap.v3.RuntimeLayer",
        fields: &[yes("name"), yes("static_layer"), yes("admin_layer")],
    },
    MessageSupport {
        message: "envoy.config.bootstrap.v3.RuntimeLayer.AdminLayer",
        fields: &[],
    },
    MessageSupport {
        message: "envoy.config.core.v3.Node",
        fields: &[
            yes("id"),
            yes("cluster"),
            yes("metadata"),
            yes("locality"),
            yes("user_agent_name"),
            yes("user_agent_version"),
            ignored(
                "dynamic_parameters",
                "xDS resource naming context, used only by xDS",
            ),
            ignored("client_features", "sent to xDS servers only"),
            ignored("extensions", "sent to xDS servers only"),
            ignored("listening_addresses", "sent to xDS servers only"),
        ],
    },
    MessageSupport {
        message: "envoy.config.core.v3.TypedExtensionConfig",
        fields: &[yes("name"), yes("typed_config")],
    },
    MessageSupport {
        message: "envoy.extensions.regex_engines.v3.GoogleRE2",
        fields: &[],
    },
];

/// What the command line adds to the bootstrap.
#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// `--service-node`, overriding `node.id` when given.
    pub service_node: Option<String>,
    /// `--service-cluster`, overriding `node.cluster`.
    pub service_cluster: Option<String>,
    /// `--service-zone`, overriding `node.locality.zone`.
    pub service_zone: Option<String>,
}

/// The node identity.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeInfo {
    pub id: String,
    pub cluster: String,
    pub zone: String,
    pub region: String,
    pub sub_zone: String,
    pub metadata: Option<prost_types::Struct>,
    pub user_agent_name: String,
}

/// The admin server's settings.
#[derive(Debug)]
pub struct Admin {
    pub address: Address,
    pub access_logs: Vec<Arc<AccessLog>>,
    pub socket_options: Vec<address::SocketOption>,
}

/// A static runtime layer value.
#[derive(Clone, Debug, Default)]
pub struct RuntimeConfig {
    /// Flattened `static_layer` values (`a.b.c` -> value).
    pub static_values: HashMap<String, prost_types::Value>,
    /// Whether an admin layer accepts `/runtime_modify`.
    pub admin_layer: bool,
    /// Layer names in order, for `/runtime`.
    pub layer_names: Vec<String>,
}

/// The validated model of a whole config.
#[derive(Debug)]
pub struct Config {
    pub node: NodeInfo,
    pub admin: Option<Admin>,
    pub listeners: Vec<Arc<Listener>>,
    pub clusters: Vec<Arc<Cluster>>,
    pub stats_flush_interval: Duration,
    pub runtime: RuntimeConfig,
    pub use_tcp_for_dns_lookups: bool,
    /// Accepted fields that change nothing, to warn about once and count.
    pub ignored: Vec<IgnoredField>,
}

/// Lowers a loaded bootstrap. `message` is the same bootstrap as a dynamic
/// message (for the support check); `sources` locates errors in the files.
pub fn build(
    bootstrap: &pb::Bootstrap,
    message: &DynamicMessage,
    sources: &SourceMap,
    options: &BuildOptions,
) -> Result<Config, ConfigErrors> {
    let mut diags = Diagnostics::default();
    support::check(message, &FieldPath::root(), &mut diags);
    if !diags.errors.is_empty() {
        return Err(located(diags.errors, sources));
    }
    let mut errors = Vec::new();
    let root = FieldPath::root();

    let mut node = NodeInfo::default();
    if let Some(n) = &bootstrap.node {
        node.id = n.id.clone();
        node.cluster = n.cluster.clone();
        node.metadata = n.metadata.clone();
        node.user_agent_name = n.user_agent_name.clone();
        if let Some(l) = &n.locality {
            node.region = l.region.clone();
            node.zone = l.zone.clone();
            node.sub_zone = l.sub_zone.clone();
        }
    }
    if let Some(v) = &options.service_node {
        node.id = v.clone();
    }
    if let Some(v) = &options.service_cluster {
        node.cluster = v.clone();
    }
    if let Some(v) = &options.service_zone {
        node.zone = v.clone();
    }

    let admin = match &bootstrap.admin {
        None => None,
        Some(a) => match admin(a, &root.field("admin"), &mut diags) {
            Ok(a) => a,
            Err(e) => {
                errors.push(e);
                None
            }
        },
    };

    let sr = bootstrap.static_resources.clone().unwrap_or_default();
    let mut clusters: Vec<Arc<Cluster>> = Vec::with_capacity(sr.clusters.len());
    let mut cluster_names = HashSet::new();
    let default_bind = bootstrap
        .cluster_manager
        .as_ref()
        .and_then(|cm| cm.upstream_bind_config.clone());
    for (i, c) in sr.clusters.iter().enumerate() {
        let path = root.field("static_resources").field("clusters").index(i);
        if !cluster_names.insert(c.name.clone()) {
            errors.push(ConfigError::semantic(
                path.field("name"),
                format!("cluster manager: duplicate cluster '{}'", c.name),
            ));
            continue;
        }
        let mut c = c.clone();
        if c.upstream_bind_config.is_none() {
            c.upstream_bind_config = default_bind.clone();
        }
        match cluster::build(&c, &path, &mut diags) {
            Ok(c) => clusters.push(Arc::new(c)),
            Err(e) => errors.push(e),
        }
    }

    let mut listeners: Vec<Arc<Listener>> = Vec::with_capacity(sr.listeners.len());
    let mut listener_names = HashSet::new();
    let mut addresses: HashMap<String, String> = HashMap::new();
    for (i, l) in sr.listeners.iter().enumerate() {
        let path = root.field("static_resources").field("listeners").index(i);
        if !l.name.is_empty() && !listener_names.insert(l.name.clone()) {
            errors.push(ConfigError::semantic(
                path.field("name"),
                format!(
                    "error adding listener named '{}': duplicate listener name",
                    l.name
                ),
            ));
            continue;
        }
        match listener::build(l, &path, &mut diags) {
            Ok(built) => {
                if built.bind_to_port {
                    let key = built.address.envoy_string();
                    if let Some(other) = addresses.insert(key.clone(), built.name.clone()) {
                        errors.push(ConfigError::semantic(
                            path.field("address"),
                            format!(
                                "error adding listener '{key}': listener '{}' has duplicate address '{key}' as existing listener '{other}'",
                                built.name
                            ),
                        ));
                        continue;
                    }
                }
                for (route_path, cluster) in static_cluster_references(&built) {
                    if !cluster_names.contains(cluster.as_ref()) {
                        errors.push(ConfigError::semantic(
                            FieldPath(path.0.iter().cloned().chain(route_path.0).collect()),
                            format!("route: unknown cluster '{cluster}'"),
                        ));
                    }
                }
                listeners.push(Arc::new(built));
            }
            Err(e) => errors.push(e),
        }
    }

    let runtime = match &bootstrap.layered_runtime {
        None => RuntimeConfig::default(),
        Some(lr) => runtime(lr, &root.field("layered_runtime"), &mut errors),
    };

    if let Some(engine) = &bootstrap.default_regex_engine {
        let p = root.field("default_regex_engine");
        let url = engine
            .typed_config
            .as_ref()
            .map(|a| a.type_url.as_str())
            .unwrap_or("");
        if !url.ends_with("envoy.extensions.regex_engines.v3.GoogleRE2") {
            errors.push(ConfigError::not_supported(
                p,
                format_args!("regex engine '{}'", engine.name),
            ));
        }
    }
    if let Some(cfg) = &bootstrap.dns_resolution_config {
        if !cfg.resolvers.is_empty() {
            errors.push(ConfigError::not_supported(
                root.field("dns_resolution_config").field("resolvers"),
                "bootstrap-wide DNS resolvers (set them per cluster)",
            ));
        }
    }

    errors.extend(diags.errors);
    if !errors.is_empty() {
        return Err(located(errors, sources));
    }
    Ok(Config {
        node,
        admin,
        listeners,
        clusters,
        stats_flush_interval: duration::opt(&bootstrap.stats_flush_interval)
            .unwrap_or(Duration::from_secs(5)),
        runtime,
        use_tcp_for_dns_lookups: bootstrap.use_tcp_for_dns_lookups,
        ignored: diags.ignored,
    })
}

fn located(errors: Vec<ConfigError>, sources: &SourceMap) -> ConfigErrors {
    ConfigErrors(errors.into_iter().map(|e| sources.annotate(e)).collect())
}

fn static_cluster_references(l: &Listener) -> Vec<(FieldPath, Arc<str>)> {
    let mut out = Vec::new();
    for (i, fc) in l.filter_chains.iter().enumerate() {
        let NetworkFilter::HttpConnectionManager(hcm) = &fc.filter;
        if !hcm.route_config.validate_clusters {
            continue;
        }
        let base = FieldPath::root()
            .field("filter_chains")
            .index(i)
            .field("filters")
            .index(0)
            .field("typed_config")
            .field("route_config");
        for (p, c) in hcm.route_config.referenced_clusters() {
            out.push((FieldPath(base.0.iter().cloned().chain(p.0).collect()), c));
        }
    }
    out
}

fn admin(
    a: &pb::Admin,
    path: &FieldPath,
    diags: &mut Diagnostics,
) -> Result<Option<Admin>, ConfigError> {
    let Some(addr) = &a.address else {
        return Ok(None);
    };
    let mut logs = access_logs(&a.access_log, &path.field("access_log"), diags)?;
    if !a.access_log_path.is_empty() {
        logs.push(Arc::new(AccessLog {
            name: "envoy.access_loggers.file".to_owned(),
            filter: None,
            sink: crate::access_log::Sink::File(a.access_log_path.clone().into()),
            format: crate::access_log::SubstitutionFormat {
                format: crate::access_log::default_format(),
                json: false,
                content_type: "text/plain".to_owned(),
            },
        }));
    }
    if !a.allow_paths.is_empty() {
        return Err(ConfigError::not_supported(
            path.field("allow_paths"),
            "admin allow_paths",
        ));
    }
    Ok(Some(Admin {
        address: address::resolved(addr, &path.field("address"))?,
        access_logs: logs,
        socket_options: address::socket_options(&a.socket_options, &path.field("socket_options"))?,
    }))
}

fn runtime(
    lr: &pb::LayeredRuntime,
    path: &FieldPath,
    errors: &mut Vec<ConfigError>,
) -> RuntimeConfig {
    use pb::runtime_layer::LayerSpecifier as L;
    let mut out = RuntimeConfig::default();
    let mut names = HashSet::new();
    for (i, layer) in lr.layers.iter().enumerate() {
        let p = path.field("layers").index(i);
        if !names.insert(layer.name.clone()) {
            errors.push(ConfigError::semantic(
                p.field("name"),
                format!("Duplicate layer name: {}", layer.name),
            ));
        }
        out.layer_names.push(layer.name.clone());
        match &layer.layer_specifier {
            Some(L::StaticLayer(s)) => flatten("", s, &mut out.static_values),
            Some(L::AdminLayer(_)) => out.admin_layer = true,
            Some(L::DiskLayer(_)) => errors.push(ConfigError::not_supported(
                p.field("disk_layer"),
                "runtime disk layers",
            )),
            Some(L::RtdsLayer(_)) => errors.push(ConfigError::not_supported(
                p.field("rtds_layer"),
                "RTDS runtime layers",
            )),
            None => {}
        }
    }
    out
}

fn flatten(prefix: &str, s: &prost_types::Struct, out: &mut HashMap<String, prost_types::Value>) {
    for (k, v) in &s.fields {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match &v.kind {
            Some(prost_types::value::Kind::StructValue(inner))
                if !inner.fields.contains_key("numerator") =>
            {
                flatten(&key, inner, out)
            }
            _ => {
                out.insert(key, v.clone());
            }
        }
    }
}
