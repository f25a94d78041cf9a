//! The whole config: a bootstrap lowered into listeners, clusters, admin, node
//! identity, stats and runtime settings, with Envoy's cross-resource checks
//! (duplicate names and addresses, routes to unknown clusters).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use prost_reflect::DynamicMessage;
use rvoy_api::envoy::config::bootstrap::v3 as pb;
use rvoy_config_load::source::SourceMap;
use rvoy_config_load::{ConfigError, ConfigErrors, ErrorKind, FieldPath};

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
            yes("stats_sinks"),
            yes("stats_flush_on_admin"),
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
            yes("typed_dns_resolver_config"),
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
        fields: &[yes("listeners"), yes("clusters"), yes("secrets")],
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
                "only drives zone-aware routing, which rvoy rejects where it could apply (see `zone_aware_routing`)",
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
    pub static_values: BTreeMap<String, prost_types::Value>,
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
    /// Bootstrap `stats_sinks`.
    pub stats_sinks: Vec<crate::stats_sink::StatsSink>,
    pub runtime: RuntimeConfig,
    /// The server's DNS resolver, used by DNS clusters without their own.
    pub dns_resolver: crate::dns_resolver::DnsResolverConfig,
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
    diags.errors.extend(support::unknown_extensions(message));
    if !diags.errors.is_empty() {
        return Err(located(ordered(diags.errors), sources));
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
    let secrets = match crate::tls::secrets(
        &sr.secrets,
        &root.field("static_resources").field("secrets"),
    ) {
        Ok(s) => s,
        Err(e) => {
            errors.push(e);
            crate::tls::Secrets::default()
        }
    };
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
        match cluster::build(&c, &path, &secrets, &mut diags) {
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
        match listener::build(l, &path, &secrets, &mut diags) {
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
                let unknown = |c: &str| !cluster_names.contains(c);
                for (route_path, cluster) in static_cluster_references(&built, unknown) {
                    errors.push(ConfigError::semantic(
                        FieldPath(path.0.iter().cloned().chain(route_path.0).collect()),
                        format!("route: unknown cluster '{cluster}'"),
                    ));
                }
                listeners.push(Arc::new(built));
            }
            Err(e) => errors.push(e),
        }
    }

    if let Some(local) = bootstrap
        .cluster_manager
        .as_ref()
        .map(|cm| cm.local_cluster_name.as_str())
        .filter(|n| !n.is_empty())
    {
        if !cluster_names.contains(local) {
            errors.push(ConfigError::semantic(
                root.field("cluster_manager").field("local_cluster_name"),
                format!("local cluster '{local}' must be defined"),
            ));
        }
        errors.extend(zone_aware_routing(&sr.clusters, &node));
    }

    let stats_sinks = crate::stats_sink::stats_sinks(
        &bootstrap.stats_sinks,
        &root.field("stats_sinks"),
        &mut diags,
    )
    .unwrap_or_else(|e| {
        errors.push(e);
        Vec::new()
    });

    let runtime = match &bootstrap.layered_runtime {
        None => RuntimeConfig::default(),
        Some(lr) => runtime(lr, &root.field("layered_runtime"), &mut errors),
    };

    errors.extend(runtime_overrides(message, &runtime));
    errors.extend(crate::http_filters::fault::runtime_conflicts(
        message,
        &runtime.static_values,
    ));

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
    let dns_resolver = match crate::dns_resolver::for_bootstrap(bootstrap, &root, &mut diags) {
        Ok(r) => r,
        Err(e) => {
            errors.push(e);
            crate::dns_resolver::DnsResolverConfig::default()
        }
    };

    errors.extend(support::read_by_formatters(
        message,
        diags.ignored.iter().chain(&diags.partly_read),
    ));

    // Support-table errors first: a field rvoy has no table entry for is named
    // as `Message.field`, the way the docs list it; a builder's error about the
    // same field says nothing more.
    let mut all = diags.errors;
    all.extend(errors);
    let errors = ordered(all);
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
        stats_sinks,
        runtime,
        dns_resolver,
        ignored: diags.ignored,
    })
}

/// Every `runtime_key` of the config that a static runtime layer sets. Envoy
/// reads such a field's value from the runtime, falling back to the default
/// in the config; rvoy always uses the default, so it rejects the config
/// rather than behave differently.
fn runtime_overrides(message: &DynamicMessage, runtime: &RuntimeConfig) -> Vec<ConfigError> {
    let mut out = Vec::new();
    if runtime.static_values.is_empty() {
        return out;
    }
    let mut keys = Vec::new();
    runtime_keys(
        &prost_reflect::Value::Message(message.clone()),
        &FieldPath::root(),
        &mut keys,
    );
    for (path, key) in keys {
        if runtime.static_values.contains_key(&key) {
            out.push(ConfigError::not_supported(
                path,
                format_args!("a runtime override of '{key}' (a static runtime layer sets it)"),
            ));
        }
    }
    out
}

/// The `runtime_key` fields of a config, through typed configs.
fn runtime_keys(
    value: &prost_reflect::Value,
    path: &FieldPath,
    out: &mut Vec<(FieldPath, String)>,
) {
    use prost_reflect::{ReflectMessage as _, Value};
    match value {
        Value::Message(m) if m.descriptor().full_name() == "google.protobuf.Any" => {
            if let Ok(Some(inner)) = rvoy_config_load::any::unpack_dynamic(m, path) {
                runtime_keys(
                    &Value::Message(Arc::unwrap_or_clone(inner.message)),
                    path,
                    out,
                );
            }
        }
        Value::Message(m) => {
            for (field, v) in m.fields() {
                let p = path.field(field.name());
                match v {
                    Value::String(key) if field.name() == "runtime_key" && !key.is_empty() => {
                        out.push((p, key.clone()));
                    }
                    _ => runtime_keys(v, &p, out),
                }
            }
        }
        Value::List(items) => {
            for (i, item) in items.iter().enumerate() {
                runtime_keys(item, &path.index(i), out);
            }
        }
        Value::Map(entries) => {
            for (k, item) in entries {
                let key = match k {
                    prost_reflect::MapKey::String(s) => s.clone(),
                    other => format!("{other:?}"),
                };
                runtime_keys(item, &path.key(&key), out);
            }
        }
        _ => {}
    }
}

/// With a local cluster, Envoy routes by zone when a cluster has endpoints in
/// several localities, one of them the node's. rvoy does not (it ignores
/// `local_cluster_name` and endpoint localities), so it rejects such clusters
/// rather than spread their traffic differently. Envoy also needs six healthy
/// hosts and a non-empty local cluster before it routes by zone; rvoy
/// rejects without weighing those (runtime can lower the minimum).
fn zone_aware_routing(
    clusters: &[rvoy_api::envoy::config::cluster::v3::Cluster],
    node: &NodeInfo,
) -> Vec<ConfigError> {
    if node.region.is_empty() && node.zone.is_empty() && node.sub_zone.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (i, c) in clusters.iter().enumerate() {
        let Some(la) = &c.load_assignment else {
            continue;
        };
        let localities: HashSet<(&str, &str, &str)> = la
            .endpoints
            .iter()
            .map(|e| {
                e.locality.as_ref().map_or(("", "", ""), |l| {
                    (l.region.as_str(), l.zone.as_str(), l.sub_zone.as_str())
                })
            })
            .collect();
        let local = (
            node.region.as_str(),
            node.zone.as_str(),
            node.sub_zone.as_str(),
        );
        if localities.len() >= 2 && localities.contains(&local) {
            out.push(ConfigError::not_supported(
                FieldPath::root()
                    .field("static_resources")
                    .field("clusters")
                    .index(i)
                    .field("load_assignment")
                    .field("endpoints"),
                "zone-aware routing (cluster_manager.local_cluster_name with endpoints in the node's and other localities)",
            ));
        }
    }
    out
}

/// Envoy's own unknown-extension errors first (Envoy rejects those configs
/// whatever rvoy supports; each once, though both the scan and the builder
/// find them), then the rest in order, without a "not supported" error at a
/// path an earlier one already names.
fn ordered(errors: Vec<ConfigError>) -> Vec<ConfigError> {
    let (unknown, rest): (Vec<_>, Vec<_>) = errors
        .into_iter()
        .partition(|e| e.kind == ErrorKind::UnknownExtension);
    let mut seen_unknown = HashSet::new();
    let mut out: Vec<ConfigError> = unknown
        .into_iter()
        .filter(|e| seen_unknown.insert(e.path.clone()))
        .collect();
    let mut seen = HashSet::new();
    out.extend(
        rest.into_iter()
            .filter(|e| e.kind != ErrorKind::NotSupported || seen.insert(e.path.clone())),
    );
    out
}

fn located(errors: Vec<ConfigError>, sources: &SourceMap) -> ConfigErrors {
    ConfigErrors(errors.into_iter().map(|e| sources.annotate(e)).collect())
}

/// The clusters named statically by `l`'s routes that `pick` selects.
fn static_cluster_references(
    l: &Listener,
    pick: impl Fn(&str) -> bool,
) -> Vec<(FieldPath, Arc<str>)> {
    let mut out = Vec::new();
    for (i, fc) in l.filter_chains.iter().enumerate() {
        let NetworkFilter::HttpConnectionManager(hcm) = &fc.filter else {
            continue;
        };
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
        for (p, c) in hcm.route_config.referenced_clusters(&pick) {
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

fn flatten(prefix: &str, s: &prost_types::Struct, out: &mut BTreeMap<String, prost_types::Value>) {
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
