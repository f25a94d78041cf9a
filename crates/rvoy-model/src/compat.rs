//! What a loaded config uses, and how rvoy treats each part of it.
//!
//! [`usage`] walks every set field of a config (a bootstrap as loaded, before
//! lowering), through `typed_config`s and `TypedStruct`s, and reports each
//! field as `Message.field` with its [`FieldTier`] from the support tables, and
//! each extension (`name` + config type) with its [`ExtensionStatus`] from the
//! registry. The compatibility table in `docs/compat.md` is built from it by
//! `examples/compat_table.rs`.

use prost_reflect::{DynamicMessage, Kind, MapKey, ReflectMessage as _, Value};
use rvoy_config_load::FieldPath;
use rvoy_config_load::any::{type_name_of, unpack};

use crate::extension;
use crate::support::{self, Tier};

/// How rvoy treats one `Message.field`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FieldTier {
    /// Behaves as in Envoy.
    Implemented,
    /// Accepted without effect, with a warning; the reason says why that is safe.
    Ignored(&'static str),
    /// Rejected with `... is not supported by rvoy`.
    NotSupported,
}

impl FieldTier {
    /// The tier of `message.field` in the support tables.
    pub fn of(message: &str, field: &str) -> FieldTier {
        match support::tier(message, field) {
            Some(Tier::Implemented) => FieldTier::Implemented,
            Some(Tier::Ignored(why)) => FieldTier::Ignored(why),
            None => FieldTier::NotSupported,
        }
    }
}

/// One set field, where it was met.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldUse {
    /// Full proto name of the message holding the field.
    pub message: String,
    pub field: String,
    pub path: FieldPath,
    pub tier: FieldTier,
}

/// How rvoy treats an extension.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExtensionStatus {
    /// In rvoy's registry.
    Implemented,
    #[default]
    /// Envoy 1.40 has it, rvoy does not: rejected as not supported.
    NotSupported,
    /// Envoy 1.40 does not have it either: rejected as Envoy rejects it.
    UnknownToEnvoy,
    /// Named without a `typed_config`: Envoy 1.40 finds extensions by config
    /// type, so it rejects this, and so does rvoy.
    MissingConfig,
}

/// One extension (or other typed config) met in a config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtensionUse {
    /// The `name` beside the `typed_config` (or the map key naming it); may be empty.
    pub name: String,
    /// Full proto name of its config (the inner type of a `TypedStruct`);
    /// empty when the extension is named without a config.
    pub type_name: String,
    /// `Message.field` holding the config, e.g.
    /// `envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.http_filters`.
    pub site: String,
    pub path: FieldPath,
    pub status: ExtensionStatus,
}

/// Everything a config uses.
#[derive(Clone, Debug, Default)]
pub struct Usage {
    pub fields: Vec<FieldUse>,
    pub extensions: Vec<ExtensionUse>,
}

/// Walks every set field of `message` (at the root of a config).
pub fn usage(message: &DynamicMessage) -> Usage {
    let mut out = Usage::default();
    walk(message, &FieldPath::root(), &mut out);
    out
}

/// The status of an extension with this config type, or (when `type_name` is
/// empty) this name. A config type the API has is taken as one Envoy knows.
pub fn extension_status(name: &str, type_name: &str) -> ExtensionStatus {
    let registry = crate::implemented_extensions();
    if type_name.is_empty() {
        let known = extension::envoy_knows_any(name)
            || registry
                .iter()
                .any(|e| e.name == name || e.aliases.contains(&name));
        return if known {
            ExtensionStatus::MissingConfig
        } else {
            ExtensionStatus::UnknownToEnvoy
        };
    }
    if registry.iter().any(|e| e.config_type == type_name) {
        return ExtensionStatus::Implemented;
    }
    if rvoy_api::descriptor_pool()
        .get_message_by_name(type_name)
        .is_some()
    {
        ExtensionStatus::NotSupported
    } else {
        ExtensionStatus::UnknownToEnvoy
    }
}

fn is_leaf(message: &str) -> bool {
    message.starts_with("google.protobuf.")
}

fn walk(msg: &DynamicMessage, path: &FieldPath, out: &mut Usage) {
    let desc = msg.descriptor();
    let message = desc.full_name();
    if is_leaf(message) {
        return;
    }
    // An extension named without a config: `{name: envoy.filters.http.router}`.
    if let (Some(name_field), Some(config_field)) = (
        desc.get_field_by_name("name"),
        desc.get_field_by_name("typed_config"),
    ) {
        let is_any = matches!(config_field.kind(), Kind::Message(m) if m.full_name() == "google.protobuf.Any");
        if is_any && !msg.has_field(&config_field) && msg.has_field(&name_field) {
            // Only names an extension registry has: other messages with a
            // `name` and a `typed_config` (overload actions) are not looked
            // up by Envoy.
            if let Value::String(name) = msg.get_field(&name_field).as_ref() {
                let status = extension_status(name, "");
                if status != ExtensionStatus::UnknownToEnvoy {
                    out.extensions.push(ExtensionUse {
                        name: name.clone(),
                        type_name: String::new(),
                        site: message.to_owned(),
                        path: path.clone(),
                        status,
                    });
                }
            }
        }
    }
    let sibling_name = desc
        .get_field_by_name("name")
        .filter(|f| msg.has_field(f))
        .and_then(|f| match msg.get_field(&f).as_ref() {
            Value::String(s) => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_default();
    for (field, value) in msg.fields() {
        let field_path = path.field(field.name());
        out.fields.push(FieldUse {
            message: message.to_owned(),
            field: field.name().to_owned(),
            path: field_path.clone(),
            tier: FieldTier::of(message, field.name()),
        });
        let site = format!("{message}.{}", field.name());
        match value {
            Value::Message(m) => value_message(m, &field_path, &sibling_name, &site, out),
            Value::List(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Value::Message(m) = item {
                        value_message(m, &field_path.index(i), &sibling_name, &site, out);
                    }
                }
            }
            Value::Map(entries) => {
                let mut entries: Vec<_> = entries.iter().collect();
                entries.sort_by_key(|(k, _)| map_key(k));
                for (key, item) in entries {
                    let key = map_key(key);
                    if let Value::Message(m) = item {
                        value_message(m, &field_path.key(&key), &key, &site, out);
                    }
                }
            }
            _ => {}
        }
    }
}

fn map_key(key: &MapKey) -> String {
    match key {
        MapKey::String(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

/// A message value: an `Any` is opened and recorded as an extension.
fn value_message(m: &DynamicMessage, path: &FieldPath, name: &str, site: &str, out: &mut Usage) {
    if m.descriptor().full_name() != "google.protobuf.Any" {
        walk(m, path, out);
        return;
    }
    let Ok(any) = m.transcode_to::<prost_types::Any>() else {
        return;
    };
    if any.type_url.is_empty() {
        return;
    }
    match unpack(&any, path) {
        Ok(Some(unpacked)) => {
            out.extensions.push(ExtensionUse {
                name: name.to_owned(),
                type_name: unpacked.type_name.clone(),
                site: site.to_owned(),
                path: path.clone(),
                status: extension_status(name, &unpacked.type_name),
            });
            walk(&unpacked.message, path, out);
        }
        _ => {
            let type_url = rvoy_config_load::any::effective_type_url(&any);
            let type_name = type_name_of(&type_url).to_owned();
            out.extensions.push(ExtensionUse {
                name: name.to_owned(),
                status: extension_status(name, &type_name),
                type_name,
                site: site.to_owned(),
                path: path.clone(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> DynamicMessage {
        let pool = &rvoy_api::descriptor_pool();
        let desc = pool
            .get_message_by_name("envoy.config.bootstrap.v3.Bootstrap")
            .expect("Bootstrap");
        let node = rvoy_config_load::yaml::parse_yaml(yaml).expect("yaml");
        let parsed = rvoy_config_load::proto_json::parse_message(
            pool,
            &node,
            &desc,
            None,
            FieldPath::root(),
        );
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        parsed.message
    }

    #[test]
    fn fields_and_extensions_with_their_tiers() {
        let config = load(
            r#"
static_resources:
  listeners:
  - address: {socket_address: {address: 127.0.0.1, port_value: 10000}}
    traffic_direction: INBOUND
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: x
          http_filters:
          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
          - name: envoy.filters.http.router
  clusters:
  - name: c
    outlier_detection: {}
"#,
        );
        let u = usage(&config);
        let tier = |m: &str, f: &str| {
            u.fields
                .iter()
                .find(|x| x.message.ends_with(m) && x.field == f)
                .map(|x| x.tier)
        };
        assert_eq!(tier("v3.Listener", "address"), Some(FieldTier::Implemented));
        assert!(matches!(
            tier("v3.Listener", "traffic_direction"),
            Some(FieldTier::Ignored(_))
        ));
        assert_eq!(
            tier("v3.Cluster", "outlier_detection"),
            Some(FieldTier::NotSupported)
        );
        assert_eq!(
            tier("v3.HttpConnectionManager", "stat_prefix"),
            Some(FieldTier::Implemented)
        );
        let ext: Vec<_> = u
            .extensions
            .iter()
            .map(|e| (e.name.as_str(), e.status))
            .collect();
        assert_eq!(
            ext,
            [
                (
                    "envoy.filters.network.http_connection_manager",
                    ExtensionStatus::Implemented
                ),
                (
                    "envoy.filters.http.jwt_authn",
                    ExtensionStatus::NotSupported
                ),
                ("envoy.filters.http.router", ExtensionStatus::MissingConfig),
            ]
        );
        assert_eq!(
            u.extensions[1].path.to_string(),
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config"
        );
    }

    #[test]
    fn unknown_extensions() {
        assert_eq!(
            extension_status("istio.stats", "istio.stats.PluginConfig"),
            ExtensionStatus::UnknownToEnvoy
        );
        assert_eq!(
            extension_status("envoy.filters.http.cors", ""),
            ExtensionStatus::MissingConfig
        );
    }
}
