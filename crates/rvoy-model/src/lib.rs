//! rvoy's validated internal config model.
//!
//! Owns the lowering of Envoy's v3 protos (a bootstrap, and later xDS
//! resources) into plain Rust structs that the data plane reads: regexes
//! compiled, names resolved, defaults applied, every field either implemented,
//! ignored-and-reported, or rejected with its path ([`support`]). Nothing here
//! touches sockets or threads; the server turns a [`Config`] into running
//! listeners and clusters.

#![allow(deprecated)] // Envoy's protos mark fields deprecated; lowering reads them on purpose.

pub mod access_log;
pub mod address;
pub mod bootstrap;
pub mod cluster;
pub mod duration;
pub mod extension;
pub mod hcm;
pub mod headers;
pub mod listener;
pub mod matcher;
pub mod route;
pub mod support;

pub use bootstrap::{BuildOptions, Config, build};
pub use support::{Diagnostics, IgnoredField, MessageSupport, Tier};

/// Every support table, from every area.
pub(crate) fn support_tables() -> impl Iterator<Item = &'static MessageSupport> {
    bootstrap::SUPPORT
        .iter()
        .chain(address::SUPPORT)
        .chain(listener::SUPPORT)
        .chain(hcm::SUPPORT)
        .chain(route::SUPPORT)
        .chain(matcher::SUPPORT)
        .chain(headers::SUPPORT)
        .chain(cluster::SUPPORT)
        .chain(access_log::SUPPORT)
}

/// Every extension rvoy implements.
pub(crate) fn implemented_extensions() -> &'static [extension::Implemented] {
    &extension_registry::ALL
}

mod extension_registry {
    use crate::extension::{Category, Implemented};

    /// The registry: one line per implemented extension.
    pub(crate) static ALL: [Implemented; 10] = [
        Implemented {
            category: Category::NetworkFilter,
            name: "envoy.filters.network.http_connection_manager",
            aliases: &["envoy.http_connection_manager"],
            config_type: "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            config_optional: false,
        },
        Implemented {
            category: Category::HttpFilter,
            name: "envoy.filters.http.router",
            aliases: &["envoy.router"],
            config_type: "envoy.extensions.filters.http.router.v3.Router",
            config_optional: true,
        },
        Implemented {
            category: Category::AccessLogger,
            name: "envoy.access_loggers.stdout",
            aliases: &["envoy.stdout_access_log"],
            config_type: "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
            config_optional: true,
        },
        Implemented {
            category: Category::AccessLogger,
            name: "envoy.access_loggers.stderr",
            aliases: &["envoy.stderr_access_log"],
            config_type: "envoy.extensions.access_loggers.stream.v3.StderrAccessLog",
            config_optional: true,
        },
        Implemented {
            category: Category::AccessLogger,
            name: "envoy.access_loggers.file",
            aliases: &["envoy.file_access_log"],
            config_type: "envoy.extensions.access_loggers.file.v3.FileAccessLog",
            config_optional: false,
        },
        Implemented {
            category: Category::DownstreamTransportSocket,
            name: "envoy.transport_sockets.raw_buffer",
            aliases: &["raw_buffer"],
            config_type: "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer",
            config_optional: true,
        },
        Implemented {
            category: Category::UpstreamTransportSocket,
            name: "envoy.transport_sockets.raw_buffer",
            aliases: &["raw_buffer"],
            config_type: "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer",
            config_optional: true,
        },
        Implemented {
            category: Category::UpstreamOptions,
            name: "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            aliases: &["envoy.upstreams.http.http_protocol_options"],
            config_type: "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            config_optional: false,
        },
        Implemented {
            category: Category::RetryHostPredicate,
            name: "envoy.retry_host_predicates.previous_hosts",
            aliases: &[],
            config_type: "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate",
            config_optional: true,
        },
        Implemented {
            category: Category::RequestId,
            name: "envoy.request_id.uuid",
            aliases: &[],
            config_type: "envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig",
            config_optional: true,
        },
    ];
}
