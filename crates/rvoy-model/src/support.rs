//! Which config fields rvoy implements, which it accepts but ignores, and the
//! check that rejects everything else with its path.
//!
//! Every message type rvoy reads has a [`MessageSupport`] table listing its
//! fields in one of two tiers:
//! - [`Tier::Implemented`]: rvoy behaves as Envoy does for it;
//! - [`Tier::Ignored`]: it cannot change traffic (cosmetic or observability
//!   tuning); it is accepted, warned about once and counted.
//!
//! Any other field that is set (including every field of a message type with no
//! table) is the third tier: rejected at load, with an error naming its path:
//! `static_resources.clusters[0].outlier_detection: envoy.config.cluster.v3.Cluster.outlier_detection is not supported by rvoy`.
//!
//! [`check`] walks a [`DynamicMessage`] against the tables. It stops at
//! `google.protobuf.Any`: an extension's config is checked by the code that
//! resolves the extension, against the extension's own tables.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use prost_reflect::{DynamicMessage, ReflectMessage, Value};
use rvoy_config_load::{ConfigError, ErrorKind, FieldPath, Seg};

/// How rvoy treats one field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    /// Behaves as in Envoy.
    Implemented,
    /// Accepted, warned once and counted; the reason says why it is harmless.
    Ignored(&'static str),
}

/// The tiers of the fields of one message type.
#[derive(Debug)]
pub struct MessageSupport {
    /// Full proto name, e.g. `envoy.config.cluster.v3.Cluster`.
    pub message: &'static str,
    pub fields: &'static [(&'static str, Tier)],
}

/// Shorthand for an implemented field in a table.
pub const fn yes(name: &'static str) -> (&'static str, Tier) {
    (name, Tier::Implemented)
}

/// Shorthand for an ignored-but-safe field in a table.
pub const fn ignored(name: &'static str, why: &'static str) -> (&'static str, Tier) {
    (name, Tier::Ignored(why))
}

/// A field accepted without effect, reported once per load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IgnoredField {
    pub path: FieldPath,
    /// `Message.field`.
    pub field: String,
    pub reason: &'static str,
}

/// Errors and ignored fields found while building the model.
#[derive(Debug, Default)]
pub struct Diagnostics {
    pub errors: Vec<ConfigError>,
    pub ignored: Vec<IgnoredField>,
    /// Set fields rvoy reads only in part, and whose unread part is unused
    /// (endpoint metadata holding only `envoy.transport_socket_match`): no
    /// warning, but like ignored fields [`read_by_formatters`] rejects a
    /// config whose format strings read them.
    pub partly_read: Vec<IgnoredField>,
}

impl Diagnostics {
    pub fn error(&mut self, e: ConfigError) {
        self.errors.push(e);
    }
}

static TABLES: LazyLock<HashMap<&'static str, &'static MessageSupport>> = LazyLock::new(|| {
    let mut map = HashMap::new();
    for table in crate::support_tables() {
        map.insert(table.message, table);
    }
    map
});

/// The table of a message type, if rvoy reads that type.
pub fn table(message: &str) -> Option<&'static MessageSupport> {
    TABLES.get(message).copied()
}

/// The tier of `message.field`, or `None` when rvoy rejects it.
pub fn tier(message: &str, field: &str) -> Option<Tier> {
    table(message)?
        .fields
        .iter()
        .find(|(f, _)| *f == field)
        .map(|(_, t)| *t)
}

/// Message types read without a table: the well-known types are leaves.
fn is_leaf(message: &str) -> bool {
    message.starts_with("google.protobuf.")
}

/// Checks every set field of `msg` (at `path`) and below against the tables.
pub fn check(msg: &DynamicMessage, path: &FieldPath, diags: &mut Diagnostics) {
    check_at(msg, &mut path.clone(), diags);
}

/// [`check`] with the path extended in place while walking; it is cloned only
/// into the findings.
fn check_at(msg: &DynamicMessage, path: &mut FieldPath, diags: &mut Diagnostics) {
    let desc = msg.descriptor();
    let name = desc.full_name();
    if is_leaf(name) {
        return;
    }
    let table = table(name);
    for (field, value) in msg.fields() {
        let tier = table.and_then(|t| {
            t.fields
                .iter()
                .find(|(f, _)| *f == field.name())
                .map(|(_, t)| *t)
        });
        match tier {
            None => {
                diags.error(ConfigError::not_supported(
                    path.field(field.name()),
                    format_args!("{name}.{}", field.name()),
                ));
            }
            Some(Tier::Ignored(reason)) => {
                diags.ignored.push(IgnoredField {
                    path: path.field(field.name()),
                    field: format!("{name}.{}", field.name()),
                    reason,
                });
            }
            Some(Tier::Implemented) => {
                if descends(value) {
                    path.push(Seg::Field(field.name().into()));
                    descend(value, path, diags);
                    path.pop();
                }
            }
        }
    }
}

/// Ignored fields that a command operator of a format string can read, with
/// the commands that do. Such a field is harmless only while no format string
/// of the config uses one of them: rvoy renders them as if the field were
/// unset.
const READ_BY_FORMATTERS: &[(&str, &[&str])] = &[
    (
        "envoy.config.cluster.v3.Cluster.metadata",
        &[
            "%CLUSTER_METADATA(",
            "%METADATA(CLUSTER:",
            "%METADATA(CLUSTER)",
        ],
    ),
    (
        "envoy.config.endpoint.v3.LbEndpoint.metadata",
        &[
            "%UPSTREAM_METADATA(",
            "%METADATA(UPSTREAM_HOST:",
            "%METADATA(UPSTREAM_HOST)",
        ],
    ),
    (
        "envoy.config.route.v3.Route.metadata",
        &["%METADATA(ROUTE:", "%METADATA(ROUTE)"],
    ),
    (
        "envoy.config.route.v3.VirtualHost.metadata",
        &["%METADATA(VIRTUAL_HOST:", "%METADATA(VIRTUAL_HOST)"],
    ),
    (
        "envoy.config.listener.v3.Listener.metadata",
        &["%METADATA(LISTENER:", "%METADATA(LISTENER)"],
    ),
    (
        "envoy.config.listener.v3.FilterChain.metadata",
        &[
            "%METADATA(LISTENER_FILTER_CHAIN:",
            "%METADATA(LISTENER_FILTER_CHAIN)",
        ],
    ),
    (
        "envoy.config.route.v3.VirtualHost.virtual_clusters",
        &["%VIRTUAL_CLUSTER_NAME%"],
    ),
];

/// "Not supported" for every ignored field of `config` that one of its format
/// strings reads (`%CLUSTER_METADATA(...)%` with a cluster's `metadata` set):
/// ignoring it would change what rvoy writes.
pub fn read_by_formatters<'a>(
    config: &DynamicMessage,
    ignored: impl IntoIterator<Item = &'a IgnoredField>,
) -> Vec<ConfigError> {
    let readable: Vec<&IgnoredField> = ignored
        .into_iter()
        .filter(|i| READ_BY_FORMATTERS.iter().any(|(f, _)| *f == i.field))
        .collect();
    if readable.is_empty() {
        return Vec::new();
    }
    let mut text = String::new();
    format_strings(&Value::Message(config.clone()), &mut text);
    let mut out = Vec::new();
    for i in readable {
        let Some((_, commands)) = READ_BY_FORMATTERS.iter().find(|(f, _)| *f == i.field) else {
            continue;
        };
        if let Some(command) = commands.iter().find(|c| text.contains(*c)) {
            let command = command.trim_end_matches(['(', ':', ')', '%']);
            out.push(ConfigError::not_supported(
                i.path.clone(),
                format_args!("{} read by {command}...%", i.field),
            ));
        }
    }
    out
}

/// Every string of a config that could be a format string (has a `%`), one a
/// line, through typed configs.
fn format_strings(value: &Value, out: &mut String) {
    match value {
        Value::String(s) if s.contains('%') => {
            out.push_str(s);
            out.push('\n');
        }
        Value::Message(m) if m.descriptor().full_name() == "google.protobuf.Any" => {
            if let Ok(Some(inner)) = rvoy_config_load::any::unpack_dynamic(m, &FieldPath::root()) {
                format_strings(&Value::Message(Arc::unwrap_or_clone(inner.message)), out);
            }
        }
        Value::Message(m) => {
            for (_, v) in m.fields() {
                format_strings(v, out);
            }
        }
        Value::List(items) => items.iter().for_each(|v| format_strings(v, out)),
        Value::Map(entries) => entries.values().for_each(|v| format_strings(v, out)),
        _ => {}
    }
}

/// The `name` field of `msg`, if it has a set one (an extension's name beside
/// its `typed_config`).
fn sibling_name(msg: &DynamicMessage) -> String {
    msg.descriptor()
        .get_field_by_name("name")
        .filter(|f| msg.has_field(f))
        .and_then(|f| match msg.get_field(&f).as_ref() {
            Value::String(s) => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// Envoy's own error for every extension of `config` whose config type Envoy
/// does not have either (a `TypedStruct` naming a type outside the API),
/// wherever it sits: Envoy instantiates every extension of a static config, so
/// it rejects these whatever rvoy implements around them. An HTTP filter
/// marked `is_optional` is skipped, as Envoy skips it.
pub fn unknown_extensions(config: &DynamicMessage) -> Vec<ConfigError> {
    let mut out = Vec::new();
    unknown_in(config, &mut FieldPath::root(), &mut out);
    out
}

fn unknown_in(msg: &DynamicMessage, path: &mut FieldPath, out: &mut Vec<ConfigError>) {
    // Looked up only for an unregistered type (rare), not for every message.
    let optional = || {
        msg.descriptor()
            .get_field_by_name("is_optional")
            .is_some_and(|f| {
                msg.has_field(&f) && matches!(msg.get_field(&f).as_ref(), Value::Bool(true))
            })
    };
    for (field, value) in msg.fields() {
        if !matches!(value, Value::Message(_) | Value::List(_) | Value::Map(_)) {
            continue;
        }
        path.push(Seg::Field(field.name().into()));
        match value {
            Value::Message(m) if m.descriptor().full_name() == "google.protobuf.Any" => {
                match rvoy_config_load::any::unpack_dynamic(m, path) {
                    Ok(Some(inner)) => unknown_in(&inner.message, path, out),
                    Ok(None) if field.name() == "typed_config" && !optional() => {
                        out.push(unregistered(msg, m, path));
                    }
                    _ => {}
                }
            }
            Value::Message(m) => unknown_in(m, path, out),
            Value::List(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Value::Message(m) = item {
                        path.push(Seg::Index(i));
                        unknown_in_value(m, path, out);
                        path.pop();
                    }
                }
            }
            Value::Map(entries) => {
                for (key, item) in entries {
                    if let Value::Message(m) = item {
                        let key = match key {
                            prost_reflect::MapKey::String(s) => s.as_str().into(),
                            other => format!("{other:?}").into(),
                        };
                        path.push(Seg::Key(key));
                        unknown_in_value(m, path, out);
                        path.pop();
                    }
                }
            }
            _ => {}
        }
        path.pop();
    }
}

/// Envoy's error for the `typed_config` `any` of `msg` (at `path`, the
/// `typed_config` itself), whose type the API does not have.
fn unregistered(msg: &DynamicMessage, any: &DynamicMessage, path: &FieldPath) -> ConfigError {
    let url = any
        .transcode_to::<prost_types::Any>()
        .map(|any| rvoy_config_load::any::effective_type_url(&any))
        .unwrap_or_default();
    let type_name = rvoy_config_load::any::type_name_of(&url);
    let name = sibling_name(msg);
    let mut at = path.clone();
    at.pop();
    ConfigError::new(
        ErrorKind::UnknownExtension,
        at,
        format!(
            "Didn't find a registered implementation for '{name}' with type URL: '{type_name}'"
        ),
    )
}

/// A list item or map value: an `Any` there is opened, not judged (it is no
/// extension's `typed_config`).
fn unknown_in_value(m: &DynamicMessage, path: &mut FieldPath, out: &mut Vec<ConfigError>) {
    if m.descriptor().full_name() != "google.protobuf.Any" {
        unknown_in(m, path, out);
        return;
    }
    if let Ok(Some(inner)) = rvoy_config_load::any::unpack_dynamic(m, path) {
        unknown_in(&inner.message, path, out);
    }
}

/// Whether [`descend`] has anything to check in `value`.
fn descends(value: &Value) -> bool {
    match value {
        Value::Message(m) => m.descriptor().full_name() != "google.protobuf.Any",
        Value::List(_) | Value::Map(_) => true,
        _ => false,
    }
}

fn descend(value: &Value, path: &mut FieldPath, diags: &mut Diagnostics) {
    match value {
        Value::Message(m) if m.descriptor().full_name() != "google.protobuf.Any" => {
            check_at(m, path, diags);
        }
        Value::List(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(Seg::Index(i));
                descend(item, path, diags);
                path.pop();
            }
        }
        Value::Map(entries) => {
            for (key, item) in entries {
                let key = match key {
                    prost_reflect::MapKey::String(s) => s.as_str().into(),
                    other => format!("{other:?}").into(),
                };
                path.push(Seg::Key(key));
                descend(item, path, diags);
                path.pop();
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use super::Tier;

    #[test]
    fn every_table_names_real_fields() {
        let pool = &rvoy_api::descriptor_pool();
        let mut messages = HashSet::new();
        for table in crate::support_tables() {
            assert!(
                messages.insert(table.message),
                "{} has two tables",
                table.message
            );
            let desc = pool
                .get_message_by_name(table.message)
                .unwrap_or_else(|| panic!("{} is not in the API", table.message));
            let mut fields = HashSet::new();
            for (field, _) in table.fields {
                assert!(
                    desc.get_field_by_name(field).is_some(),
                    "{}.{field} does not exist",
                    table.message
                );
                assert!(
                    fields.insert(*field),
                    "{}.{field} is listed twice",
                    table.message
                );
            }
        }
    }

    #[test]
    fn every_implemented_extension_has_a_checked_config() {
        let pool = &rvoy_api::descriptor_pool();
        for e in crate::implemented_extensions() {
            assert!(
                pool.get_message_by_name(e.config_type).is_some(),
                "{}: {} is not in the API",
                e.name,
                e.config_type
            );
            assert!(
                super::table(e.config_type).is_some(),
                "{}: {} has no support table, so every field of it is rejected",
                e.name,
                e.config_type
            );
        }
    }

    /// Every field rvoy accepts without implementing it, and why that cannot
    /// change traffic. A field joins `Tier::Ignored` only with an entry here,
    /// reviewed: "it would be nice to have" is not a reason; where a field is
    /// harmless only under a condition, the model checks the condition (the
    /// tests of `tests/tiers.rs` cover each such check).
    const REVIEWED: &[(&str, &str)] = &[
        // Process-level tuning and observability.
        (
            "envoy.config.bootstrap.v3.Bootstrap.watchdog",
            "acts only on a deadlocked event loop (stats, or killing the process)",
        ),
        (
            "envoy.config.bootstrap.v3.Bootstrap.watchdogs",
            "acts only on a deadlocked event loop (stats, or killing the process)",
        ),
        (
            "envoy.config.bootstrap.v3.Bootstrap.enable_dispatcher_stats",
            "event loop histograms only",
        ),
        (
            "envoy.extensions.network.dns_resolver.hickory.v3.HickoryDnsResolverConfig.num_resolver_threads",
            "how many threads run lookups; the answers are the same",
        ),
        (
            "envoy.config.bootstrap.v3.Bootstrap.stats_server_version_override",
            "the value of one gauge",
        ),
        (
            "envoy.config.bootstrap.v3.Bootstrap.inline_headers",
            "a header map lookup speed-up, no change in what headers hold",
        ),
        (
            "envoy.config.bootstrap.v3.Bootstrap.perf_tracing_file_path",
            "where Perfetto traces go",
        ),
        (
            "envoy.config.bootstrap.v3.Bootstrap.memory_allocator_manager",
            "when freed memory goes back to the OS",
        ),
        (
            "envoy.config.bootstrap.v3.Admin.profile_path",
            "where the admin CPU profiler writes",
        ),
        // xDS only: rvoy rejects dynamic_resources and every ConfigSource.
        (
            "envoy.config.bootstrap.v3.Bootstrap.node_context_params",
            "xDS resource names; no xDS in rvoy",
        ),
        (
            "envoy.config.core.v3.Node.dynamic_parameters",
            "sent to xDS servers; no xDS in rvoy",
        ),
        (
            "envoy.config.core.v3.Node.client_features",
            "sent to xDS servers; no xDS in rvoy",
        ),
        (
            "envoy.config.core.v3.Node.extensions",
            "sent to xDS servers; no xDS in rvoy",
        ),
        (
            "envoy.config.core.v3.Node.listening_addresses",
            "sent to xDS servers; no xDS in rvoy",
        ),
        // Limits of machinery rvoy rejects (overload manager, global
        // connection limit): with none configured, opting out changes nothing.
        (
            "envoy.config.bootstrap.v3.Admin.ignore_global_conn_limit",
            "opts out of a limit rvoy never has (overload_manager is rejected)",
        ),
        (
            "envoy.config.listener.v3.Listener.ignore_global_conn_limit",
            "opts out of a limit rvoy never has (overload_manager is rejected)",
        ),
        (
            "envoy.config.listener.v3.Listener.bypass_overload_manager",
            "opts out of an overload manager rvoy never has",
        ),
        (
            "envoy.config.cluster.v3.Cluster.cleanup_interval",
            "only read by ORIGINAL_DST clusters, which rvoy rejects",
        ),
        // Zone-aware routing: `zone_aware_routing` rejects every cluster it
        // could apply to, so the local cluster and localities are labels.
        (
            "envoy.config.bootstrap.v3.ClusterManager.local_cluster_name",
            "only drives zone-aware routing, rejected where it could apply; the cluster must exist, as in Envoy",
        ),
        (
            "envoy.config.endpoint.v3.LocalityLbEndpoints.locality",
            "a label: locality weights are rejected, zone-aware routing too where it could apply",
        ),
        // Stats only.
        (
            "envoy.config.cluster.v3.Cluster.track_timeout_budgets",
            "timeout budget histograms only",
        ),
        (
            "envoy.config.cluster.v3.Cluster.track_cluster_stats",
            "extra cluster stats only",
        ),
        (
            "envoy.config.cluster.v3.CircuitBreakers.Thresholds.track_remaining",
            "remaining_* gauges only",
        ),
        (
            "envoy.config.route.v3.Route.stat_prefix",
            "per-route stats only",
        ),
        // Read by filters rvoy lacks, or by format strings: `read_by_formatters`
        // rejects the config when one of its format strings reads the field.
        (
            "envoy.config.cluster.v3.Cluster.metadata",
            "read by filters rvoy lacks; %CLUSTER_METADATA% is checked",
        ),
        // `LbEndpoint.metadata` and `LocalityLbEndpoints.metadata` are
        // implemented for `envoy.transport_socket_match`; the cluster lowering
        // reports their other keys as ignored (and `read_by_formatters` checks
        // them) with the reasons in `cluster::*_METADATA_IGNORED`.
        (
            "envoy.config.listener.v3.Listener.metadata",
            "read by filters rvoy lacks; %METADATA(LISTENER)% is checked",
        ),
        (
            "envoy.config.listener.v3.FilterChain.metadata",
            "read by filters rvoy lacks; %METADATA(LISTENER_FILTER_CHAIN)% is checked",
        ),
        (
            "envoy.config.route.v3.RouteConfiguration.metadata",
            "read only by filters rvoy lacks; no format operator reads it",
        ),
        (
            "envoy.config.route.v3.VirtualHost.metadata",
            "read by filters rvoy lacks; %METADATA(VIRTUAL_HOST)% is checked",
        ),
        (
            "envoy.config.route.v3.Route.metadata",
            "read by filters rvoy lacks; %METADATA(ROUTE)% is checked",
        ),
        (
            "envoy.config.route.v3.VirtualHost.virtual_clusters",
            "stats only; %VIRTUAL_CLUSTER_NAME% is checked",
        ),
        // Tracing: HttpConnectionManager.tracing and Bootstrap.tracing are
        // rejected, and Envoy applies these only when a tracer is configured
        // (the decorator header and sampling bits of x-request-id included).
        (
            "envoy.config.route.v3.Route.decorator",
            "span names, and a header set only under a tracer",
        ),
        (
            "envoy.config.route.v3.Route.tracing",
            "sampling, applied only under a tracer",
        ),
        (
            "envoy.config.route.v3.RouteAction.RequestMirrorPolicy.trace_sampled",
            "sampling of the shadow's span, only under a tracer",
        ),
        (
            "envoy.extensions.filters.http.router.v3.Router.start_child_span",
            "child spans, only under a tracer",
        ),
        (
            "envoy.config.listener.v3.Listener.traffic_direction",
            "names spans; no format operator reads it",
        ),
        // When access log lines are written, not what rvoy forwards.
        (
            "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.access_log_flush_interval",
            "extra periodic log lines of long streams, not traffic",
        ),
        (
            "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.flush_access_log_on_new_request",
            "an extra log line at request start, not traffic",
        ),
        (
            "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.access_log_options",
            "extra periodic log lines of long streams, not traffic",
        ),
        // Codec internals and abuse limits.
        (
            "envoy.config.core.v3.Http1ProtocolOptions.use_balsa_parser",
            "which of Envoy's two conforming HTTP/1 parsers runs",
        ),
        (
            "envoy.config.core.v3.Http2ProtocolOptions.max_metadata_size",
            "METADATA frames are never accepted (allow_metadata is rejected)",
        ),
        (
            "envoy.config.core.v3.Http2ProtocolOptions.enable_huffman_encoding",
            "how HPACK encodes header strings on the wire, not what they say",
        ),
        (
            "envoy.config.core.v3.Http2ProtocolOptions.max_header_field_size_kb",
            "read by Envoy's oghttp2 codec only, which Envoy 1.40 does not use by default",
        ),
        (
            "envoy.config.core.v3.Http2ProtocolOptions.disallow_obs_text",
            "read by Envoy's oghttp2 codec only, which Envoy 1.40 does not use by default",
        ),
        (
            "envoy.config.listener.v3.Listener.max_connections_to_accept_per_socket_event",
            "how many connections one accept wakeup takes",
        ),
        // Load-time limits that never change matching.
        (
            "envoy.type.matcher.v3.RegexMatcher.google_re2",
            "deprecated; a program size limit checked at load, never a change in what matches",
        ),
        (
            "envoy.type.matcher.v3.RegexMatcher.GoogleRE2.max_program_size",
            "deprecated; a program size limit checked at load, never a change in what matches",
        ),
    ];

    #[test]
    fn every_ignored_field_is_reviewed() {
        let reviewed: BTreeMap<&str, &str> = REVIEWED.iter().copied().collect();
        assert_eq!(
            reviewed.len(),
            REVIEWED.len(),
            "REVIEWED lists a field twice"
        );
        let mut ignored = BTreeMap::new();
        for table in crate::support_tables() {
            for (field, tier) in table.fields {
                if let Tier::Ignored(reason) = tier {
                    assert!(
                        !reason.is_empty(),
                        "{}.{field} has no reason",
                        table.message
                    );
                    ignored.insert(format!("{}.{field}", table.message), *reason);
                }
            }
        }
        let unreviewed: Vec<&String> = ignored
            .keys()
            .filter(|f| !reviewed.contains_key(f.as_str()))
            .collect();
        assert!(
            unreviewed.is_empty(),
            "ignored fields nobody reviewed (add them to REVIEWED with why they cannot change traffic, or reject them): {unreviewed:?}"
        );
        let stale: Vec<&&str> = reviewed
            .keys()
            .filter(|f| !ignored.contains_key(**f))
            .collect();
        assert!(
            stale.is_empty(),
            "reviewed fields that are no longer ignored: {stale:?}"
        );
    }
}
