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
pub mod compat;
pub mod dns_resolver;
pub mod duration;
pub mod extension;
pub mod filter_chain_index;
pub mod hcm;
pub mod headers;
pub mod http_filters;
pub mod listener;
pub mod matcher;
pub mod render;
pub mod route;
pub mod route_index;
pub mod stats_sink;
pub mod support;
pub mod tcp_proxy;
pub mod tls;
pub mod tls_inspector;

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
        .chain(http_filters::support_tables())
        .chain(cluster::SUPPORT)
        .chain(dns_resolver::SUPPORT)
        .chain(access_log::SUPPORT)
        .chain(stats_sink::SUPPORT)
        .chain(tls::SUPPORT)
        .chain(tls_inspector::SUPPORT)
        .chain(tcp_proxy::SUPPORT)
}

/// Every extension rvoy implements (what the node advertises).
pub fn extensions() -> &'static [extension::Implemented] {
    implemented_extensions()
}

/// Every extension rvoy implements.
pub(crate) fn implemented_extensions() -> &'static [extension::Implemented] {
    extension_registry::ALL
}

mod extension_registry {
    use crate::extension::{Category, Implemented};

    /// The registry: one line per implemented extension.
    pub(crate) static ALL: &[Implemented] = &[
        Implemented {
            category: Category::DnsResolver,
            name: "envoy.network.dns_resolver.cares",
            aliases: &[],
            config_type: "envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig",
            config_optional: false,
        },
        Implemented {
            category: Category::DnsResolver,
            name: "envoy.network.dns_resolver.getaddrinfo",
            aliases: &[],
            config_type: "envoy.extensions.network.dns_resolver.getaddrinfo.v3.GetAddrInfoDnsResolverConfig",
            config_optional: false,
        },
        Implemented {
            category: Category::DnsResolver,
            name: "envoy.network.dns_resolver.hickory",
            aliases: &[],
            config_type: "envoy.extensions.network.dns_resolver.hickory.v3.HickoryDnsResolverConfig",
            config_optional: false,
        },
        Implemented {
            category: Category::HttpFilter,
            name: "envoy.filters.http.compressor",
            aliases: &[],
            config_type: "envoy.extensions.filters.http.compressor.v3.Compressor",
            config_optional: false,
        },
        Implemented {
            category: Category::Compressor,
            name: "envoy.compression.gzip.compressor",
            aliases: &[],
            config_type: "envoy.extensions.compression.gzip.compressor.v3.Gzip",
            config_optional: false,
        },
        Implemented {
            category: Category::Compressor,
            name: "envoy.compression.brotli.compressor",
            aliases: &[],
            config_type: "envoy.extensions.compression.brotli.compressor.v3.Brotli",
            config_optional: false,
        },
        Implemented {
            category: Category::Compressor,
            name: "envoy.compression.zstd.compressor",
            aliases: &[],
            config_type: "envoy.extensions.compression.zstd.compressor.v3.Zstd",
            config_optional: false,
        },
        Implemented {
            category: Category::HttpFilter,
            name: "envoy.filters.http.cors",
            aliases: &["envoy.cors"],
            config_type: "envoy.extensions.filters.http.cors.v3.Cors",
            config_optional: false,
        },
        Implemented {
            category: Category::HttpFilter,
            name: "envoy.filters.http.buffer",
            aliases: &["envoy.buffer"],
            config_type: "envoy.extensions.filters.http.buffer.v3.Buffer",
            config_optional: false,
        },
        Implemented {
            category: Category::HttpFilter,
            name: "envoy.filters.http.health_check",
            aliases: &["envoy.health_check"],
            config_type: "envoy.extensions.filters.http.health_check.v3.HealthCheck",
            config_optional: false,
        },
        Implemented {
            category: Category::HttpFilter,
            name: "envoy.filters.http.fault",
            aliases: &["envoy.fault"],
            config_type: "envoy.extensions.filters.http.fault.v3.HTTPFault",
            config_optional: false,
        },
        Implemented {
            category: Category::HttpFilter,
            name: "envoy.filters.http.local_ratelimit",
            aliases: &[],
            config_type: "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            config_optional: false,
        },
        Implemented {
            category: Category::HttpFilter,
            name: "envoy.filters.http.header_mutation",
            aliases: &[],
            config_type: "envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
            config_optional: false,
        },
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
            config_optional: false,
        },
        Implemented {
            category: Category::AccessLogger,
            name: "envoy.access_loggers.stdout",
            aliases: &["envoy.stdout_access_log"],
            config_type: "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
            config_optional: false,
        },
        Implemented {
            category: Category::AccessLogger,
            name: "envoy.access_loggers.stderr",
            aliases: &["envoy.stderr_access_log"],
            config_type: "envoy.extensions.access_loggers.stream.v3.StderrAccessLog",
            config_optional: false,
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
            config_optional: false,
        },
        Implemented {
            category: Category::UpstreamTransportSocket,
            name: "envoy.transport_sockets.raw_buffer",
            aliases: &["raw_buffer"],
            config_type: "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer",
            config_optional: false,
        },
        Implemented {
            category: Category::DownstreamTransportSocket,
            name: "envoy.transport_sockets.tls",
            aliases: &["tls"],
            config_type: "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            config_optional: false,
        },
        Implemented {
            category: Category::UpstreamTransportSocket,
            name: "envoy.transport_sockets.tls",
            aliases: &["tls"],
            config_type: "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            config_optional: false,
        },
        Implemented {
            category: Category::ListenerFilter,
            name: "envoy.filters.listener.tls_inspector",
            aliases: &["envoy.listener.tls_inspector"],
            config_type: "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector",
            config_optional: false,
        },
        Implemented {
            category: Category::NetworkFilter,
            name: "envoy.filters.network.tcp_proxy",
            aliases: &["envoy.tcp_proxy"],
            config_type: "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
            config_optional: false,
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
            config_optional: false,
        },
        Implemented {
            category: Category::RequestId,
            name: "envoy.request_id.uuid",
            aliases: &[],
            config_type: "envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig",
            config_optional: true,
        },
        Implemented {
            category: Category::StatsSink,
            name: "envoy.stat_sinks.statsd",
            aliases: &["envoy.statsd"],
            config_type: "envoy.config.metrics.v3.StatsdSink",
            config_optional: false,
        },
        Implemented {
            category: Category::StatsSink,
            name: "envoy.stat_sinks.dog_statsd",
            aliases: &["envoy.dog_statsd"],
            config_type: "envoy.config.metrics.v3.DogStatsdSink",
            config_optional: false,
        },
    ];
}
