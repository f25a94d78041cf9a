//! Envoy's v3 API at one pinned snapshot (see `proto/README.md`).
//!
//! Owns two things generated from the very same `FileDescriptorSet` at build time:
//! the prost message types (modules mirroring the proto packages, e.g.
//! [`envoy::config::bootstrap::v3::Bootstrap`]) and the [`descriptor_pool`] that
//! the config loader uses to read YAML/JSON with the proto3 JSON mapping and to
//! enforce `validate.rules`. Nothing else lives here.

#![allow(clippy::all, missing_docs, rustdoc::all, unused_qualifications)]

use std::sync::LazyLock;

use prost_reflect::DescriptorPool;

include!(concat!(env!("OUT_DIR"), "/envoy_api.rs"));

/// The encoded `FileDescriptorSet` of every proto in the snapshot (imports included).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/envoy_api.fds"));

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(FILE_DESCRIPTOR_SET)
        .expect("the descriptor set generated at build time decodes")
});

/// The descriptor pool of the whole snapshot, decoded once.
pub fn descriptor_pool() -> &'static DescriptorPool {
    &POOL
}

/// The type URL prefix Envoy uses for `Any` and `TypedStruct`.
pub const TYPE_URL_PREFIX: &str = "type.googleapis.com/";

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Name;

    #[test]
    fn pool_has_bootstrap_and_extensions() {
        let pool = descriptor_pool();
        for name in [
            "envoy.config.bootstrap.v3.Bootstrap",
            "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "envoy.extensions.filters.http.router.v3.Router",
            "udpa.type.v1.TypedStruct",
            "xds.type.v3.TypedStruct",
            "google.protobuf.Duration",
            "validate.FieldRules",
        ] {
            assert!(pool.get_message_by_name(name).is_some(), "{name} missing");
        }
    }

    #[test]
    fn prost_names_match_descriptors() {
        assert_eq!(
            envoy::config::bootstrap::v3::Bootstrap::full_name(),
            "envoy.config.bootstrap.v3.Bootstrap"
        );
        let pool = descriptor_pool();
        assert!(
            pool.get_message_by_name(&envoy::config::cluster::v3::Cluster::full_name())
                .is_some()
        );
    }
}
