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
use std::sync::LazyLock;

use prost_reflect::{DynamicMessage, ReflectMessage, Value};
use rvoy_config_load::{ConfigError, FieldPath};

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
    let desc = msg.descriptor();
    let name = desc.full_name();
    if is_leaf(name) {
        return;
    }
    let table = table(name);
    for (field, value) in msg.fields() {
        let field_path = path.field(field.name());
        let tier = table.and_then(|t| {
            t.fields
                .iter()
                .find(|(f, _)| *f == field.name())
                .map(|(_, t)| *t)
        });
        match tier {
            None => diags.error(ConfigError::not_supported(
                field_path,
                format_args!("{name}.{}", field.name()),
            )),
            Some(Tier::Ignored(reason)) => diags.ignored.push(IgnoredField {
                path: field_path,
                field: format!("{name}.{}", field.name()),
                reason,
            }),
            Some(Tier::Implemented) => descend(value, &field_path, diags),
        }
    }
}

fn descend(value: &Value, path: &FieldPath, diags: &mut Diagnostics) {
    match value {
        Value::Message(m) => {
            if m.descriptor().full_name() != "google.protobuf.Any" {
                check(m, path, diags);
            }
        }
        Value::List(items) => {
            for (i, item) in items.iter().enumerate() {
                descend(item, &path.index(i), diags);
            }
        }
        Value::Map(entries) => {
            for (key, item) in entries {
                let key = match key {
                    prost_reflect::MapKey::String(s) => s.clone(),
                    other => format!("{other:?}"),
                };
                descend(item, &path.key(&key), diags);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_names_real_fields() {
        let pool = rvoy_api::descriptor_pool();
        for table in crate::support_tables() {
            let desc = pool
                .get_message_by_name(table.message)
                .unwrap_or_else(|| panic!("{} is not in the API", table.message));
            for (field, _) in table.fields {
                assert!(
                    desc.get_field_by_name(field).is_some(),
                    "{}.{field} does not exist",
                    table.message
                );
            }
        }
    }
}
