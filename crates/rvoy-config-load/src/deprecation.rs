//! Envoy's deprecated-field checks (`MessageUtil::checkForUnexpectedFields`).
//!
//! Owns the verdicts on deprecated options in a loaded proto. Envoy walks every
//! set message (list elements and map values included, and the contents of
//! each typed config when it instantiates it) and, for each field:
//! - a singular enum field whose value (the default one when unset) is a
//!   deprecated enum value is reported: "Using the default now-deprecated
//!   value ..." when unset, "Using deprecated value ..." when set;
//! - a set field (non-empty when repeated) marked `deprecated = true` is
//!   reported: "Using deprecated option '<full name>' from file <file> ...".
//!
//! A report is an error when the option or value is also annotated
//! `envoy.annotations.disallowed_by_default` (`..._enum` for values), else a
//! warning. Envoy only makes disallowed options fatal when its runtime exists:
//! at bootstrap load (before runtime) they are warnings, in typed configs and
//! xDS resources errors; [`check`] gives the latter verdicts everywhere,
//! [`check_bootstrap`] Envoy's bootstrap ones. Plans are compiled once per
//! message type, with the walk skipping types under which nothing can be
//! deprecated.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, OnceLock};

use prost_reflect::{
    DescriptorPool, DynamicMessage, ExtensionDescriptor, FieldDescriptor, Kind, MessageDescriptor,
    ReflectMessage as _, Value,
};

use crate::error::{ConfigError, ErrorKind, FieldPath, Seg};
use crate::validate::{Special, Tables, TypePlan, TypeTable, unpack_any, unpack_typed_struct};

/// What [`check`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeprecationReport {
    /// Options and enum values disallowed by default ([`ErrorKind::Deprecated`]).
    pub errors: Vec<ConfigError>,
    /// Deprecated options and enum values still allowed ([`ErrorKind::Deprecated`]).
    pub warnings: Vec<ConfigError>,
}

/// Checks `msg` (at `path`) and everything under it for deprecated options, with
/// the verdicts Envoy gives when its runtime exists (typed configs, xDS
/// resources): disallowed-by-default options are errors.
pub fn check(msg: &DynamicMessage, path: &FieldPath) -> DeprecationReport {
    run(msg, path, true)
}

/// Like [`check`], for a bootstrap: Envoy checks the bootstrap before its runtime
/// exists, so there disallowed-by-default options are only warnings, except
/// inside typed configs (`Any`/`TypedStruct`), checked again when instantiated.
pub fn check_bootstrap(msg: &DynamicMessage, path: &FieldPath) -> DeprecationReport {
    run(msg, path, false)
}

fn run(msg: &DynamicMessage, path: &FieldPath, fatal: bool) -> DeprecationReport {
    let desc = msg.descriptor();
    let table = TypeTable::<DepPlan>::for_pool(&TABLES, desc.parent_pool());
    let mut walker = Walker {
        table,
        path: path.clone(),
        fatal,
        report: DeprecationReport::default(),
        depth: 0,
    };
    walker.message(msg);
    walker.report
}

static TABLES: Tables<DepPlan> = LazyLock::new(|| Mutex::new(Vec::new()));

/// Forgets every pool's table (see `crate::release_caches`).
pub(crate) fn release_tables() {
    TABLES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clear();
}

/// See `validate::MAX_DEPTH`.
const MAX_DEPTH: usize = 100;

const VERSION_HISTORY: &str =
    "https://www.envoyproxy.io/docs/envoy/latest/version_history/version_history";
const OVERRIDE: &str = " If continued use of this field is absolutely necessary, see \
     https://www.envoyproxy.io/docs/envoy/latest/configuration/operations/runtime#using-runtime-overrides-for-deprecated-features \
     for how to apply a temporary and highly discouraged override.";

struct Exts {
    disallowed: Option<ExtensionDescriptor>,
    disallowed_enum: Option<ExtensionDescriptor>,
}

struct DepPlan {
    special: Special,
    fields: Vec<DepField>,
    children: Vec<MessageDescriptor>,
    interesting: bool,
}

struct DepField {
    fd: FieldDescriptor,
    name: Arc<str>,
    /// `Some(disallowed)` when the field is deprecated.
    deprecated: Option<bool>,
    /// For a singular enum field: its deprecated values, by number, with their
    /// name and whether they are disallowed.
    deprecated_values: Option<HashMap<i32, (String, bool)>>,
    /// The message type of the field (or of its elements / map values).
    child: Option<MessageDescriptor>,
    /// Whether `child` is worth walking; resolved on first use.
    child_walks: OnceLock<bool>,
}

/// Whether the custom `options` (if any) set the bool extension `ext`.
fn bool_ext(options: Option<DynamicMessage>, ext: Option<&ExtensionDescriptor>) -> bool {
    match (options, ext) {
        (Some(options), Some(ext)) => {
            options.has_extension(ext) && options.get_extension(ext).as_bool() == Some(true)
        }
        _ => false,
    }
}

impl TypePlan for DepPlan {
    type Ctx = Exts;

    fn context(pool: &DescriptorPool) -> Exts {
        Exts {
            disallowed: pool.get_extension_by_name("envoy.annotations.disallowed_by_default"),
            disallowed_enum: pool
                .get_extension_by_name("envoy.annotations.disallowed_by_default_enum"),
        }
    }

    fn compile(desc: &MessageDescriptor, ctx: &Exts) -> DepPlan {
        let special = Special::of(desc);
        let mut plan = DepPlan {
            special,
            fields: Vec::new(),
            children: Vec::new(),
            interesting: matches!(special, Special::Any | Special::TypedStruct),
        };
        if special != Special::None {
            return plan;
        }
        for fd in desc.fields() {
            // The typed options say whether the field is deprecated; only then
            // are they decoded with their extensions (most fields are not).
            let deprecated = fd
                .field_descriptor_proto()
                .options
                .as_ref()
                .is_some_and(|o| o.deprecated())
                .then(|| bool_ext(rvoy_api::field_options(&fd), ctx.disallowed.as_ref()));
            let kind = fd.kind();
            let deprecated_values = match &kind {
                Kind::Enum(e) if !fd.is_list() => {
                    let values: HashMap<i32, (String, bool)> = e
                        .values()
                        .filter(|v| {
                            v.enum_value_descriptor_proto()
                                .options
                                .as_ref()
                                .is_some_and(|o| o.deprecated())
                        })
                        .map(|v| {
                            (
                                v.number(),
                                (
                                    v.name().to_owned(),
                                    bool_ext(
                                        rvoy_api::enum_value_options(&v),
                                        ctx.disallowed_enum.as_ref(),
                                    ),
                                ),
                            )
                        })
                        .collect();
                    (!values.is_empty()).then_some(values)
                }
                _ => None,
            };
            let child = match &kind {
                Kind::Message(m) if fd.is_map() => match m.map_entry_value_field().kind() {
                    Kind::Message(v) => Some(v),
                    _ => None,
                },
                Kind::Message(m) => Some(m.clone()),
                _ => None,
            };
            if deprecated.is_none() && deprecated_values.is_none() && child.is_none() {
                continue;
            }
            if deprecated.is_some() || deprecated_values.is_some() {
                plan.interesting = true;
            }
            if let Some(c) = &child
                && !plan.children.contains(c)
            {
                plan.children.push(c.clone());
            }
            plan.fields.push(DepField {
                name: fd.name().into(),
                fd,
                deprecated,
                deprecated_values,
                child,
                child_walks: OnceLock::new(),
            });
        }
        plan
    }

    fn interesting(&self) -> bool {
        self.interesting
    }

    fn children(&self) -> &[MessageDescriptor] {
        &self.children
    }
}

/// The file name Envoy shows (`filenameFromPath`: the last path component).
fn file_of(fd: &FieldDescriptor) -> String {
    let file = fd.parent_file();
    let name = file.name();
    name.rsplit('/').next().unwrap_or(name).to_owned()
}

struct Walker {
    table: Arc<TypeTable<DepPlan>>,
    path: FieldPath,
    /// Whether disallowed options are fatal here (Envoy's runtime exists).
    fatal: bool,
    report: DeprecationReport,
    depth: usize,
}

impl Walker {
    fn report(&mut self, disallowed: bool, text: String) {
        let fatal = disallowed && self.fatal;
        let e = ConfigError::new(ErrorKind::Deprecated, self.path.clone(), text);
        if fatal {
            self.report.errors.push(e);
        } else {
            self.report.warnings.push(e);
        }
    }

    fn message(&mut self, msg: &DynamicMessage) {
        if self.depth >= MAX_DEPTH {
            return;
        }
        let desc = msg.descriptor();
        let Some(plan) = self.table.walkable(&desc) else {
            return;
        };
        self.depth += 1;
        match plan.special {
            Special::Any | Special::TypedStruct => {
                let inner = if plan.special == Special::Any {
                    unpack_any(msg)
                } else {
                    unpack_typed_struct(msg).map(Arc::new)
                };
                if let Some(inner) = inner {
                    // A typed config is checked again when instantiated, with runtime.
                    let fatal = std::mem::replace(&mut self.fatal, true);
                    let pushed = plan.special == Special::TypedStruct;
                    if pushed {
                        self.path.push(Seg::Field("value".into()));
                    }
                    self.message(&inner);
                    if pushed {
                        self.path.pop();
                    }
                    self.fatal = fatal;
                }
            }
            Special::Duration | Special::None => {
                for f in &plan.fields {
                    self.field(msg, f);
                }
            }
        }
        self.depth -= 1;
    }

    fn field(&mut self, msg: &DynamicMessage, f: &DepField) {
        let walks = *f
            .child_walks
            .get_or_init(|| f.child.as_ref().is_some_and(|c| self.table.visit(c)));
        if !walks && f.deprecated.is_none() && f.deprecated_values.is_none() {
            return;
        }
        let has = msg.has_field(&f.fd);
        if let Some(values) = &f.deprecated_values {
            // Envoy checks the value even when the field is unset (its default).
            let number = msg.get_field(&f.fd).as_enum_number();
            if let Some((name, disallowed)) = number.and_then(|n| values.get(&n)) {
                let file = file_of(&f.fd);
                let text = if has {
                    format!(
                        "Using deprecated value {name} for enum '{}' from file {file}. This enum value will be removed \
                         from Envoy soon. Please see {VERSION_HISTORY} for details.",
                        f.fd.full_name()
                    )
                } else {
                    format!(
                        "Using the default now-deprecated value {name} for enum '{}' from file {file}. This enum \
                         value will be removed from Envoy soon so a non-default value must now be explicitly set. \
                         Please see {VERSION_HISTORY} for details.",
                        f.fd.full_name()
                    )
                };
                let text = self.finish(text, *disallowed);
                self.path.push(Seg::Field(f.name.clone()));
                self.report(*disallowed, text);
                self.path.pop();
            }
        }
        if !has {
            return;
        }
        self.path.push(Seg::Field(f.name.clone()));
        if let Some(disallowed) = f.deprecated {
            let text = format!(
                "Using deprecated option '{}' from file {}. This configuration will be removed from Envoy soon. \
                 Please see {VERSION_HISTORY} for details.",
                f.fd.full_name(),
                file_of(&f.fd)
            );
            let text = self.finish(text, disallowed);
            self.report(disallowed, text);
        }
        if walks {
            {
                match &*msg.get_field(&f.fd) {
                    Value::Message(m) => self.message(m),
                    Value::List(items) => {
                        for (i, item) in items.iter().enumerate() {
                            if let Value::Message(m) = item {
                                self.path.push(Seg::Index(i));
                                self.message(m);
                                self.path.pop();
                            }
                        }
                    }
                    Value::Map(map) => {
                        let mut entries: Vec<_> = map.iter().collect();
                        entries.sort_by(|a, b| a.0.cmp(b.0));
                        for (key, value) in entries {
                            if let Value::Message(m) = value {
                                self.path.push(Seg::Key(map_key_text(key).into()));
                                self.message(m);
                                self.path.pop();
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        self.path.pop();
    }

    /// Adds Envoy's closing sentence, and says when the option is disallowed.
    fn finish(&self, mut text: String, disallowed: bool) -> String {
        if disallowed && self.fatal {
            text.push_str(" It is disallowed by default.");
        }
        text.push_str(OVERRIDE);
        text
    }
}

fn map_key_text(key: &prost_reflect::MapKey) -> String {
    use prost_reflect::MapKey;
    match key {
        MapKey::String(s) => s.clone(),
        MapKey::Bool(b) => b.to_string(),
        MapKey::I32(i) => i.to_string(),
        MapKey::I64(i) => i.to_string(),
        MapKey::U32(i) => i.to_string(),
        MapKey::U64(i) => i.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::tests::{TYPICAL_BOOTSTRAP, bootstrap, envoy_pool, read};

    fn lines(errors: &[ConfigError]) -> Vec<String> {
        errors
            .iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect()
    }

    fn typical_with(from: &str, to: &str) -> DynamicMessage {
        assert!(TYPICAL_BOOTSTRAP.contains(from), "{from}");
        bootstrap(&TYPICAL_BOOTSTRAP.replacen(from, to, 1))
    }

    const HCM: &str = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config";

    #[test]
    fn typical_bootstrap_has_nothing_deprecated() {
        let report = check(&bootstrap(TYPICAL_BOOTSTRAP), &FieldPath::root());
        assert_eq!(report, DeprecationReport::default());
        let report = check_bootstrap(&bootstrap(TYPICAL_BOOTSTRAP), &FieldPath::root());
        assert_eq!(report, DeprecationReport::default());
    }

    // The verdicts below were checked against Envoy 1.40 (`--mode validate`).

    #[test]
    fn deprecated_fields_warn() {
        let msg = typical_with(
            "    lb_policy: ROUND_ROBIN\n",
            "    lb_policy: ROUND_ROBIN\n    respect_dns_ttl: true\n    http2_protocol_options: {}\n    dns_lookup_family: AUTO\n",
        );
        let report = check(&msg, &FieldPath::root());
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let warnings = lines(&report.warnings);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            report
                .warnings
                .iter()
                .all(|w| w.kind == ErrorKind::Deprecated)
        );
        assert_eq!(
            warnings[0],
            "static_resources.clusters[0].http2_protocol_options: Using deprecated option \
             'envoy.config.cluster.v3.Cluster.http2_protocol_options' from file cluster.proto. This \
             configuration will be removed from Envoy soon. Please see \
             https://www.envoyproxy.io/docs/envoy/latest/version_history/version_history for details. \
             If continued use of this field is absolutely necessary, see \
             https://www.envoyproxy.io/docs/envoy/latest/configuration/operations/runtime#using-runtime-overrides-for-deprecated-features \
             for how to apply a temporary and highly discouraged override."
        );
        assert!(warnings[1].starts_with(
            "static_resources.clusters[0].respect_dns_ttl: Using deprecated option 'envoy.config.cluster.v3.Cluster.respect_dns_ttl'"
        ));
        // A proto3 scalar at its default value is not "set".
        let msg = typical_with(
            "    lb_policy: ROUND_ROBIN\n",
            "    lb_policy: ROUND_ROBIN\n    respect_dns_ttl: false\n",
        );
        assert_eq!(
            check(&msg, &FieldPath::root()),
            DeprecationReport::default()
        );
    }

    #[test]
    fn bootstrap_level_deprecated_field() {
        let report = check(
            &bootstrap("use_tcp_for_dns_lookups: true\n"),
            &FieldPath::root(),
        );
        assert_eq!(report.warnings.len(), 1);
        assert_eq!(
            report.warnings[0].path.to_string(),
            "use_tcp_for_dns_lookups"
        );
        assert!(
            report.warnings[0]
                .message
                .contains("from file bootstrap.proto")
        );
    }

    #[test]
    fn disallowed_field_is_an_error() {
        let msg = typical_with(
            "retry_policy: {retry_on: 5xx, num_retries: 3, per_try_timeout: 2s}",
            "retry_policy: {retry_on: 5xx, num_retries: 3, per_try_timeout: 2s}\n                  rate_limits: [{actions: [{dynamic_metadata: {descriptor_key: k, metadata_key: {key: a, path: [{key: b}]}}}]}]",
        );
        for report in [
            check(&msg, &FieldPath::root()),
            check_bootstrap(&msg, &FieldPath::root()),
        ] {
            assert!(report.warnings.is_empty(), "{:?}", report.warnings);
            let errors = lines(&report.errors);
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(errors[0].starts_with(&format!(
                "{HCM}.route_config.virtual_hosts[0].routes[0].route.rate_limits[0].actions[0].dynamic_metadata: \
                 Using deprecated option 'envoy.config.route.v3.RateLimit.Action.dynamic_metadata' from file route_components.proto."
            )), "{errors:?}");
            assert!(
                errors[0].contains("It is disallowed by default."),
                "{errors:?}"
            );
        }
    }

    #[test]
    fn default_deprecated_enum_value_in_a_set_message() {
        // Envoy flags the default (0) value of a singular enum field when it is
        // deprecated, in every message it visits, even with the field unset.
        let zipkin = |extra: &str| {
            typical_with(
                "          stat_prefix: ingress_http\n",
                &format!(
                    "          stat_prefix: ingress_http\n          tracing:\n            provider:\n              name: envoy.tracers.zipkin\n              typed_config:\n                '@type': type.googleapis.com/envoy.config.trace.v3.ZipkinConfig\n                collector_cluster: service\n                collector_endpoint: /api/v2/spans\n{extra}"
                ),
            )
        };
        let report = check_bootstrap(&zipkin(""), &FieldPath::root());
        let errors = lines(&report.errors);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with(&format!(
            "{HCM}.tracing.provider.typed_config.collector_endpoint_version: Using the default now-deprecated value \
             DEPRECATED_AND_UNAVAILABLE_DO_NOT_USE for enum 'envoy.config.trace.v3.ZipkinConfig.collector_endpoint_version' \
             from file zipkin.proto. This enum value will be removed from Envoy soon so a non-default value must now be explicitly set."
        )), "{errors:?}");
        let ok = zipkin("                collector_endpoint_version: HTTP_JSON\n");
        assert_eq!(
            check_bootstrap(&ok, &FieldPath::root()),
            DeprecationReport::default()
        );
    }

    #[test]
    fn bootstrap_level_disallowed_values_only_warn() {
        // Envoy checks the bootstrap before its runtime exists: a disallowed value
        // outside any typed config is a warning there, an error elsewhere.
        let yaml = "dynamic_resources:\n  cds_config:\n    api_config_source:\n      transport_api_version: V3\n      grpc_services: [{envoy_grpc: {cluster_name: xds}}]\n";
        let msg = bootstrap(yaml);
        let report = check_bootstrap(&msg, &FieldPath::root());
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let warnings = lines(&report.warnings);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].starts_with(
            "dynamic_resources.cds_config.api_config_source.api_type: Using the default now-deprecated value DEPRECATED_AND_UNAVAILABLE_DO_NOT_USE for enum 'envoy.config.core.v3.ApiConfigSource.api_type'"
        ), "{warnings:?}");
        assert!(!warnings[0].contains("disallowed"));
        let report = check(&msg, &FieldPath::root());
        assert_eq!(report.errors.len(), 1);
        assert!(report.warnings.is_empty());
        // Set to a good value: nothing.
        let msg = bootstrap(&yaml.replace(
            "transport_api_version: V3",
            "api_type: GRPC\n      transport_api_version: V3",
        ));
        assert_eq!(
            check_bootstrap(&msg, &FieldPath::root()),
            DeprecationReport::default()
        );
    }

    #[test]
    fn typed_struct_contents_are_checked() {
        let yaml = "name: hcm\ntyped_config:\n  '@type': type.googleapis.com/udpa.type.v1.TypedStruct\n  type_url: type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager\n  value:\n    stat_prefix: s\n    route_config:\n      virtual_hosts:\n      - name: v\n        domains: ['*']\n        rate_limits: [{actions: [{dynamic_metadata: {descriptor_key: k, metadata_key: {key: a, path: [{key: b}]}}}]}]\n";
        let msg = read(envoy_pool(), "envoy.config.listener.v3.Filter", yaml);
        let report = check_bootstrap(&msg, &FieldPath::root().field("filters").index(0));
        let errors = lines(&report.errors);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with(
            "filters[0].typed_config.value.route_config.virtual_hosts[0].rate_limits[0].actions[0].dynamic_metadata: Using deprecated option"
        ), "{errors:?}");
    }

    #[test]
    fn map_values_and_unset_fields() {
        // A deprecated field inside a map value (an Any in typed_extension_protocol_options).
        let msg = typical_with(
            "          http2_protocol_options: {initial_stream_window_size: 65536}\n",
            "          http2_protocol_options: {initial_stream_window_size: 65536, stream_error_on_invalid_http_messaging: true}\n",
        );
        let report = check(&msg, &FieldPath::root());
        assert!(report.errors.is_empty());
        assert_eq!(
            report
                .warnings
                .iter()
                .map(|w| w.path.to_string())
                .collect::<Vec<_>>(),
            [
                "static_resources.clusters[0].typed_extension_protocol_options['envoy.extensions.upstreams.http.v3.HttpProtocolOptions'].explicit_http_config.http2_protocol_options.stream_error_on_invalid_http_messaging"
            ]
        );
        // Empty repeated fields are not set; non-empty ones are.
        let msg = typical_with(
            "    lb_policy: ROUND_ROBIN\n",
            "    lb_policy: ROUND_ROBIN\n    dns_resolvers: []\n",
        );
        assert_eq!(
            check(&msg, &FieldPath::root()),
            DeprecationReport::default()
        );
        let msg = typical_with(
            "    lb_policy: ROUND_ROBIN\n",
            "    lb_policy: ROUND_ROBIN\n    dns_resolvers: [{socket_address: {address: 1.1.1.1, port_value: 53}}]\n",
        );
        let report = check(&msg, &FieldPath::root());
        assert_eq!(lines(&report.warnings).len(), 1, "{:?}", report.warnings);
        assert_eq!(
            report.warnings[0].path.to_string(),
            "static_resources.clusters[0].dns_resolvers"
        );
    }
}
