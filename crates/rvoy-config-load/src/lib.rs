//! Envoy-faithful reading of configuration into Envoy's v3 protos.
//!
//! Owns everything between config text and a validated proto: YAML/JSON/proto
//! text and binary reading with Envoy's rules ([`yaml`], [`proto_json`]),
//! `--config-yaml` merging, `validate.rules` and deprecation checks, and errors
//! that name the file, line, column and field path ([`error`]). Pure: no I/O
//! besides reading the files it is pointed at, no async.

pub mod any;
pub mod bootstrap;
pub mod deprecation;
pub mod error;
pub mod node;
pub mod proto_json;
pub mod source;
pub mod validate;
pub mod wire;
pub mod yaml;

pub use error::{ConfigError, ConfigErrors, ErrorKind, FieldPath, Location, Seg};
pub use node::{Node, Pos};

/// Drops the validation and deprecation plans compiled for descriptor pools
/// (each holds its pool): with [`rvoy_api::release_idle_descriptor_pool`] this
/// lets a running proxy give the pool's memory back between config loads.
pub fn release_caches() {
    validate::release_tables();
    deprecation::release_tables();
}
