//! DNS resolvers: Envoy's `envoy.network.dns_resolver` extensions (c-ares,
//! getaddrinfo, hickory) and the older fields that configure c-ares
//! (`dns_resolvers`, `use_tcp_for_dns_lookups`, `dns_resolution_config`),
//! lowered into one [`DnsResolverConfig`].
//!
//! Which resolver a DNS cluster uses follows Envoy's `selectDnsResolver`: the
//! cluster gets its own when it has a `typed_dns_resolver_config` with a config,
//! resolvers in `dns_resolution_config`, or `dns_resolvers`; otherwise it shares
//! the server's, built from the bootstrap's fields in the same order of
//! precedence (typed config, then `dns_resolution_config`, then the legacy
//! fields).

use std::net::SocketAddr;
use std::time::Duration;

use rvoy_api::envoy::config::core::v3 as core;
use rvoy_api::envoy::extensions::network::dns_resolver::cares::v3::CaresDnsResolverConfig;
use rvoy_api::envoy::extensions::network::dns_resolver::getaddrinfo::v3::GetAddrInfoDnsResolverConfig;
use rvoy_api::envoy::extensions::network::dns_resolver::hickory::v3::HickoryDnsResolverConfig;
use rvoy_config_load::{ConfigError, FieldPath};

use crate::address;
use crate::duration;
use crate::extension::{self, Category};
use crate::support::{Diagnostics, MessageSupport, yes};

pub(crate) static SUPPORT: &[MessageSupport] = &[
    MessageSupport {
        message: "envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig",
        fields: &[
            yes("resolvers"),
            yes("use_resolvers_as_fallback"),
            yes("filter_unroutable_families"),
            yes("dns_resolver_options"),
            // hickory sends every UDP query from a fresh random port, which
            // keeps any cap on the queries per socket.
            yes("udp_max_queries"),
            yes("query_timeout_seconds"),
            yes("query_tries"),
            yes("rotate_nameservers"),
            yes("edns0_max_payload_size"),
            yes("max_udp_channel_duration"),
            yes("reinit_channel_on_timeout"),
            yes("qcache_max_ttl"),
        ],
    },
    MessageSupport {
        message: "envoy.extensions.network.dns_resolver.getaddrinfo.v3.GetAddrInfoDnsResolverConfig",
        fields: &[yes("num_retries"), yes("num_resolver_threads")],
    },
    MessageSupport {
        message: "envoy.extensions.network.dns_resolver.hickory.v3.HickoryDnsResolverConfig",
        fields: &[
            yes("resolvers"),
            yes("cache_size"),
            yes("use_system_config"),
            yes("query_timeout"),
            yes("query_tries"),
            crate::support::ignored(
                "num_resolver_threads",
                "rvoy resolves on its main thread's runtime",
            ),
        ],
    },
];

/// How one resolver is configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsResolverConfig {
    /// `envoy.network.dns_resolver.cares`, Envoy's default.
    Cares(CaresResolver),
    /// `envoy.network.dns_resolver.getaddrinfo`: the system's `getaddrinfo()`.
    GetAddrInfo(GetAddrInfoResolver),
    /// `envoy.network.dns_resolver.hickory`.
    Hickory(HickoryResolver),
}

impl Default for DnsResolverConfig {
    fn default() -> Self {
        DnsResolverConfig::Cares(CaresResolver::default())
    }
}

/// The c-ares resolver's settings, with Envoy's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaresResolver {
    /// Name servers; empty means the system's (`/etc/resolv.conf`).
    pub resolvers: Vec<SocketAddr>,
    /// Use `resolvers` only when the system names no name server.
    pub use_resolvers_as_fallback: bool,
    /// Skip the lookups of a family no non-loopback interface has.
    pub filter_unroutable_families: bool,
    pub use_tcp: bool,
    pub no_default_search_domain: bool,
    /// Per try (Envoy's default 5 s).
    pub query_timeout: Duration,
    /// Tries before giving up (Envoy's default 4).
    pub query_tries: u32,
    pub rotate_nameservers: bool,
    /// EDNS0 is sent with this UDP payload size when set.
    pub edns0_max_payload_size: Option<u16>,
    /// The resolver is rebuilt after this long.
    pub max_udp_channel_duration: Option<Duration>,
    /// The resolver is rebuilt after a query timed out.
    pub reinit_channel_on_timeout: bool,
    /// Longest a response is cached; 0 (Envoy's default) caches nothing.
    pub qcache_max_ttl: u32,
}

impl Default for CaresResolver {
    fn default() -> Self {
        CaresResolver {
            resolvers: Vec::new(),
            use_resolvers_as_fallback: false,
            filter_unroutable_families: false,
            use_tcp: false,
            no_default_search_domain: false,
            query_timeout: Duration::from_secs(5),
            query_tries: 4,
            rotate_nameservers: false,
            edns0_max_payload_size: None,
            max_udp_channel_duration: None,
            reinit_channel_on_timeout: false,
            qcache_max_ttl: 0,
        }
    }
}

/// The getaddrinfo resolver's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetAddrInfoResolver {
    /// Retries of a lookup that failed with `EAI_AGAIN`; `None` retries until
    /// it answers.
    pub num_retries: Option<u32>,
    /// Lookups running at once.
    pub num_resolver_threads: u32,
}

/// The hickory resolver's settings, with Envoy's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HickoryResolver {
    pub resolvers: Vec<SocketAddr>,
    /// Read `/etc/resolv.conf` (name servers when `resolvers` is empty, and
    /// search domains).
    pub use_system_config: bool,
    pub cache_size: u32,
    pub query_timeout: Duration,
    pub query_tries: u32,
}

/// The resolver a cluster configures for itself, `None` when it uses the
/// server's (Envoy's `selectDnsResolver`).
pub(crate) fn for_cluster(
    c: &rvoy_api::envoy::config::cluster::v3::Cluster,
    path: &FieldPath,
    diags: &mut Diagnostics,
) -> Result<Option<DnsResolverConfig>, ConfigError> {
    let typed = c.typed_dns_resolver_config.as_ref().filter(|t| {
        t.typed_config
            .as_ref()
            .is_some_and(|a| !a.type_url.is_empty())
    });
    let resolution_resolvers = c
        .dns_resolution_config
        .as_ref()
        .is_some_and(|r| !r.resolvers.is_empty());
    if typed.is_none() && !resolution_resolvers && c.dns_resolvers.is_empty() {
        // Envoy still checks the addresses it will not use.
        addresses(&c.dns_resolvers, &path.field("dns_resolvers"))?;
        return Ok(None);
    }
    let config = if let Some(t) = typed {
        typed_config(t, &path.field("typed_dns_resolver_config"), diags)?
    } else if let Some(r) = &c.dns_resolution_config {
        from_resolution_config(r, &path.field("dns_resolution_config"))?
    } else {
        DnsResolverConfig::Cares(CaresResolver {
            resolvers: addresses(&c.dns_resolvers, &path.field("dns_resolvers"))?,
            use_tcp: c.use_tcp_for_dns_lookups,
            ..CaresResolver::default()
        })
    };
    Ok(Some(config))
}

/// The server's resolver, from the bootstrap.
pub(crate) fn for_bootstrap(
    b: &rvoy_api::envoy::config::bootstrap::v3::Bootstrap,
    path: &FieldPath,
    diags: &mut Diagnostics,
) -> Result<DnsResolverConfig, ConfigError> {
    if let Some(t) = &b.typed_dns_resolver_config {
        return typed_config(t, &path.field("typed_dns_resolver_config"), diags);
    }
    if let Some(r) = &b.dns_resolution_config {
        return from_resolution_config(r, &path.field("dns_resolution_config"));
    }
    Ok(DnsResolverConfig::Cares(CaresResolver {
        use_tcp: b.use_tcp_for_dns_lookups,
        ..CaresResolver::default()
    }))
}

fn from_resolution_config(
    r: &core::DnsResolutionConfig,
    path: &FieldPath,
) -> Result<DnsResolverConfig, ConfigError> {
    let options = r.dns_resolver_options.unwrap_or_default();
    Ok(DnsResolverConfig::Cares(CaresResolver {
        resolvers: addresses(&r.resolvers, &path.field("resolvers"))?,
        use_tcp: options.use_tcp_for_dns_lookups,
        no_default_search_domain: options.no_default_search_domain,
        ..CaresResolver::default()
    }))
}

fn typed_config(
    t: &core::TypedExtensionConfig,
    path: &FieldPath,
    diags: &mut Diagnostics,
) -> Result<DnsResolverConfig, ConfigError> {
    let resolved = extension::resolve(
        Category::DnsResolver,
        &t.name,
        t.typed_config.as_ref(),
        path,
        diags,
    )?;
    let config_path = path.field("typed_config");
    Ok(match resolved.extension.name {
        "envoy.network.dns_resolver.getaddrinfo" => {
            let g: GetAddrInfoDnsResolverConfig = resolved.config_as(path)?;
            DnsResolverConfig::GetAddrInfo(GetAddrInfoResolver {
                num_retries: g.num_retries,
                num_resolver_threads: g.num_resolver_threads.unwrap_or(1).max(1),
            })
        }
        "envoy.network.dns_resolver.hickory" => {
            let h: HickoryDnsResolverConfig = resolved.config_as(path)?;
            let resolvers = addresses(&h.resolvers, &config_path.field("resolvers"))?;
            DnsResolverConfig::Hickory(HickoryResolver {
                use_system_config: h.use_system_config.unwrap_or(resolvers.is_empty()),
                resolvers,
                cache_size: h.cache_size.unwrap_or(1024),
                query_timeout: duration::opt(&h.query_timeout).unwrap_or(Duration::from_secs(5)),
                query_tries: h.query_tries.unwrap_or(3).max(1),
            })
        }
        _ => {
            let c: CaresDnsResolverConfig = resolved.config_as(path)?;
            let options = c.dns_resolver_options.unwrap_or_default();
            let defaults = CaresResolver::default();
            DnsResolverConfig::Cares(CaresResolver {
                resolvers: addresses(&c.resolvers, &config_path.field("resolvers"))?,
                use_resolvers_as_fallback: c.use_resolvers_as_fallback,
                filter_unroutable_families: c.filter_unroutable_families,
                use_tcp: options.use_tcp_for_dns_lookups,
                no_default_search_domain: options.no_default_search_domain,
                query_timeout: c
                    .query_timeout_seconds
                    .map_or(defaults.query_timeout, Duration::from_secs),
                query_tries: c.query_tries.unwrap_or(defaults.query_tries).max(1),
                rotate_nameservers: c.rotate_nameservers,
                edns0_max_payload_size: c
                    .edns0_max_payload_size
                    .map(|n| u16::try_from(n).unwrap_or(u16::MAX)),
                max_udp_channel_duration: duration::opt(&c.max_udp_channel_duration)
                    .filter(|d| !d.is_zero()),
                reinit_channel_on_timeout: c.reinit_channel_on_timeout,
                qcache_max_ttl: c.qcache_max_ttl.unwrap_or(0),
            })
        }
    })
}

/// Name server addresses: IP addresses only, as Envoy requires; port 0 means 53.
fn addresses(list: &[core::Address], path: &FieldPath) -> Result<Vec<SocketAddr>, ConfigError> {
    let mut out = Vec::with_capacity(list.len());
    for (i, a) in list.iter().enumerate() {
        let p = path.index(i);
        let resolved = address::resolved(a, &p)?;
        let Some(mut sa) = resolved.socket_addr() else {
            return Err(ConfigError::semantic(
                p,
                format!(
                    "DNS resolver '{}' is not an IP address",
                    resolved.envoy_string()
                ),
            ));
        };
        if sa.port() == 0 {
            sa.set_port(53);
        }
        out.push(sa);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    use rvoy_config_load::bootstrap::{LoadOptions, load_bootstrap};

    /// The resolver of cluster `c` configured with `yaml_fields`, or the
    /// first error.
    fn cluster(yaml_fields: &str) -> Result<Option<DnsResolverConfig>, String> {
        let yaml = format!(
            "static_resources:\n  clusters:\n  - name: c\n    type: STRICT_DNS\n{yaml_fields}"
        );
        let loaded = load_bootstrap(&LoadOptions {
            config_yaml: Some(yaml),
            ..LoadOptions::default()
        })
        .map_err(|e| e.to_string())?;
        let config = crate::build(
            &loaded.bootstrap,
            &loaded.message,
            &loaded.sources,
            &crate::BuildOptions::default(),
        )
        .map_err(|e| e.to_string())?;
        Ok(config.clusters[0].dns.resolver.clone())
    }

    #[test]
    fn a_cluster_without_resolvers_uses_the_servers() {
        assert_eq!(cluster("    use_tcp_for_dns_lookups: true\n"), Ok(None));
        assert_eq!(
            cluster(
                "    dns_resolution_config: {resolvers: [], dns_resolver_options: {use_tcp_for_dns_lookups: true}}\n"
            ),
            Err("value must contain at least 1 item(s) at --config-yaml:5:40 (static_resources.clusters[0].dns_resolution_config.resolvers)".into())
        );
    }

    #[test]
    fn legacy_fields_configure_cares() {
        let got = cluster(
            "    use_tcp_for_dns_lookups: true\n    dns_resolvers: [{socket_address: {address: 127.0.0.1, port_value: 5353}}]\n",
        );
        assert_eq!(
            got,
            Ok(Some(DnsResolverConfig::Cares(CaresResolver {
                resolvers: vec!["127.0.0.1:5353".parse().expect("addr")],
                use_tcp: true,
                ..CaresResolver::default()
            })))
        );
    }

    #[test]
    fn typed_cares_config_wins_and_keeps_every_field() {
        let got = cluster(concat!(
            "    dns_resolvers: [{socket_address: {address: 10.0.0.1, port_value: 53}}]\n",
            "    typed_dns_resolver_config:\n",
            "      name: envoy.network.dns_resolver.cares\n",
            "      typed_config:\n",
            "        \"@type\": type.googleapis.com/envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig\n",
            "        resolvers: [{socket_address: {address: \"::1\", port_value: 0}}]\n",
            "        use_resolvers_as_fallback: true\n",
            "        dns_resolver_options: {use_tcp_for_dns_lookups: true, no_default_search_domain: true}\n",
            "        query_timeout_seconds: 2\n",
            "        query_tries: 1\n",
            "        rotate_nameservers: true\n",
            "        edns0_max_payload_size: 1232\n",
            "        max_udp_channel_duration: 30s\n",
            "        reinit_channel_on_timeout: true\n",
            "        qcache_max_ttl: 60\n",
        ));
        assert_eq!(
            got,
            Ok(Some(DnsResolverConfig::Cares(CaresResolver {
                resolvers: vec!["[::1]:53".parse().expect("addr")],
                use_resolvers_as_fallback: true,
                filter_unroutable_families: false,
                use_tcp: true,
                no_default_search_domain: true,
                query_timeout: Duration::from_secs(2),
                query_tries: 1,
                rotate_nameservers: true,
                edns0_max_payload_size: Some(1232),
                max_udp_channel_duration: Some(Duration::from_secs(30)),
                reinit_channel_on_timeout: true,
                qcache_max_ttl: 60,
            })))
        );
    }

    #[test]
    fn getaddrinfo_and_hickory() {
        let got = cluster(concat!(
            "    typed_dns_resolver_config:\n",
            "      name: envoy.network.dns_resolver.getaddrinfo\n",
            "      typed_config:\n",
            "        \"@type\": type.googleapis.com/envoy.extensions.network.dns_resolver.getaddrinfo.v3.GetAddrInfoDnsResolverConfig\n",
            "        num_retries: 3\n",
        ));
        assert_eq!(
            got,
            Ok(Some(DnsResolverConfig::GetAddrInfo(GetAddrInfoResolver {
                num_retries: Some(3),
                num_resolver_threads: 1,
            })))
        );
        let got = cluster(concat!(
            "    typed_dns_resolver_config:\n",
            "      name: envoy.network.dns_resolver.hickory\n",
            "      typed_config:\n",
            "        \"@type\": type.googleapis.com/envoy.extensions.network.dns_resolver.hickory.v3.HickoryDnsResolverConfig\n",
            "        resolvers: [{socket_address: {address: 127.0.0.1, port_value: 53}}]\n",
        ));
        assert_eq!(
            got,
            Ok(Some(DnsResolverConfig::Hickory(HickoryResolver {
                resolvers: vec!["127.0.0.1:53".parse().expect("addr")],
                use_system_config: false,
                cache_size: 1024,
                query_timeout: Duration::from_secs(5),
                query_tries: 3,
            })))
        );
    }

    #[test]
    fn dns_over_tls_is_rejected_with_its_path() {
        let err = cluster(concat!(
            "    typed_dns_resolver_config:\n",
            "      name: envoy.network.dns_resolver.hickory\n",
            "      typed_config:\n",
            "        \"@type\": type.googleapis.com/envoy.extensions.network.dns_resolver.hickory.v3.HickoryDnsResolverConfig\n",
            "        dns_over_tls: {servers: [{socket_address: {address: 1.1.1.1, port_value: 853}}], tls_server_name: one.one.one.one}\n",
        ))
        .expect_err("DoT is not supported");
        assert!(
            err.contains("typed_dns_resolver_config.typed_config.dns_over_tls")
                && err.contains("not supported by rvoy"),
            "{err}"
        );
    }
}
