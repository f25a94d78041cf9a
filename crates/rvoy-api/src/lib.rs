//! Envoy's v3 API at one pinned snapshot (see `proto/README.md`).
//!
//! Owns two things generated from the very same `FileDescriptorSet` at build time:
//! the prost message types (modules mirroring the proto packages, e.g.
//! [`envoy::config::bootstrap::v3::Bootstrap`]) and the [`descriptor_pool`] that
//! the config loader uses to read YAML/JSON with the proto3 JSON mapping and to
//! enforce `validate.rules`. Nothing else lives here.

#![allow(clippy::all, missing_docs, rustdoc::all, unused_qualifications)]

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use prost_reflect::DescriptorPool;

include!(concat!(env!("OUT_DIR"), "/envoy_api.rs"));

/// The encoded `FileDescriptorSet` of every proto in the snapshot (imports included).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/envoy_api.fds"));

/// The decoded pool while something uses it, and when it was last handed out.
static POOL: Mutex<Option<(DescriptorPool, Instant)>> = Mutex::new(None);

/// The descriptor pool of the whole snapshot: decoded on first use (~20 ms),
/// then shared until [`release_idle_descriptor_pool`] drops it.
///
/// The pool is only needed while config is read, checked or dumped; it is
/// ~17 MiB of heap, so a running proxy lets it go between those moments.
pub fn descriptor_pool() -> DescriptorPool {
    let mut cached = POOL.lock().unwrap_or_else(PoisonError::into_inner);
    let now = Instant::now();
    match &mut *cached {
        Some((pool, used)) => {
            *used = now;
            pool.clone()
        }
        None => {
            // Decoded on a thread of its own so the pool's many small
            // allocations sit on allocator pages of their own: when the pool
            // is released those pages empty entirely and go back to the
            // system, instead of staying pinned by longer-lived neighbours.
            let pool = std::thread::scope(|s| {
                s.spawn(|| DescriptorPool::decode(FILE_DESCRIPTOR_SET))
                    .join()
                    .ok()
            })
            .and_then(Result::ok)
            .expect("the descriptor set generated at build time decodes");
            *cached = Some((pool.clone(), now));
            pool
        }
    }
}

/// Drops the cached pool when nothing asked for it during `idle`; returns
/// whether it did. Descriptors and dynamic messages still held elsewhere keep
/// their pool alive; the memory is freed once the last one is gone.
pub fn release_idle_descriptor_pool(idle: Duration) -> bool {
    let mut cached = POOL.lock().unwrap_or_else(PoisonError::into_inner);
    match &*cached {
        Some((_, used)) if used.elapsed() >= idle => {
            *cached = None;
            true
        }
        _ => false,
    }
}

/// The type URL prefix Envoy uses for `Any` and `TypedStruct`.
pub const TYPE_URL_PREFIX: &str = "type.googleapis.com/";

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Name;

    #[test]
    fn pool_has_bootstrap_and_extensions() {
        let pool = &descriptor_pool();
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
        let pool = &descriptor_pool();
        assert!(
            pool.get_message_by_name(&envoy::config::cluster::v3::Cluster::full_name())
                .is_some()
        );
    }
}
