//! DNS resolution for `STRICT_DNS` and `LOGICAL_DNS` clusters (hickory).
//!
//! Each DNS cluster gets a resolver built from its settings (custom resolvers,
//! TCP, lookup family) and resolves every named endpoint; the results become
//! hosts. `AUTO` prefers IPv6 and falls back to IPv4, `V4_PREFERRED` the
//! reverse, `ALL` keeps both, as Envoy's lookup families do. `/etc/hosts` is
//! honoured, so `localhost` works offline.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use rvoy_model::cluster::{DnsLookupFamily, DnsSettings};

/// A resolution failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DnsError(pub String);

/// A resolver for one cluster's settings.
pub struct ClusterResolver {
    resolver: TokioResolver,
    family: DnsLookupFamily,
}

/// The addresses a name resolved to, and until when they are valid.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub addresses: Vec<IpAddr>,
    pub valid_until: Option<Instant>,
}

impl ClusterResolver {
    pub fn new(settings: &DnsSettings, use_tcp: bool) -> Result<Self, DnsError> {
        let strategy = match settings.lookup_family {
            DnsLookupFamily::Auto => LookupIpStrategy::Ipv6thenIpv4,
            DnsLookupFamily::V4Only => LookupIpStrategy::Ipv4Only,
            DnsLookupFamily::V6Only => LookupIpStrategy::Ipv6Only,
            DnsLookupFamily::V4Preferred => LookupIpStrategy::Ipv4thenIpv6,
            DnsLookupFamily::All => LookupIpStrategy::Ipv4AndIpv6,
        };
        let tcp = use_tcp || settings.use_tcp;
        let mut builder = if settings.resolvers.is_empty() {
            match TokioResolver::builder_tokio() {
                Ok(b) => b,
                // No /etc/resolv.conf: names can still come from /etc/hosts.
                Err(_) => TokioResolver::builder_with_config(
                    ResolverConfig::default(),
                    TokioRuntimeProvider::default(),
                ),
            }
        } else {
            let mut config = ResolverConfig::default();
            for addr in &settings.resolvers {
                config.name_servers.push(name_server(*addr, tcp));
            }
            TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        };
        let opts = builder.options_mut();
        opts.ip_strategy = strategy;
        opts.timeout = Duration::from_secs(5);
        opts.attempts = 2;
        opts.try_tcp_on_error = true;
        let resolver = builder.build().map_err(|e| DnsError(e.to_string()))?;
        Ok(ClusterResolver {
            resolver,
            family: settings.lookup_family,
        })
    }

    /// Resolves `host` (an IP literal resolves to itself).
    pub async fn resolve(&self, host: &str) -> Result<Resolved, DnsError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Resolved {
                addresses: vec![ip],
                valid_until: None,
            });
        }
        let lookup = self
            .resolver
            .lookup_ip(host)
            .await
            .map_err(|e| DnsError(e.to_string()))?;
        let valid_until = Some(lookup.valid_until());
        let mut addresses: Vec<IpAddr> = lookup.iter().collect();
        match self.family {
            DnsLookupFamily::V4Only => addresses.retain(IpAddr::is_ipv4),
            DnsLookupFamily::V6Only => addresses.retain(IpAddr::is_ipv6),
            _ => {}
        }
        if addresses.is_empty() {
            return Err(DnsError(format!("no addresses for {host}")));
        }
        Ok(Resolved {
            addresses,
            valid_until,
        })
    }
}

fn name_server(addr: SocketAddr, tcp: bool) -> NameServerConfig {
    let mut connections = Vec::new();
    if !tcp {
        let mut udp = ConnectionConfig::udp();
        udp.port = addr.port();
        connections.push(udp);
    }
    let mut t = ConnectionConfig::tcp();
    t.port = addr.port();
    connections.push(t);
    NameServerConfig::new(addr.ip(), true, connections)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(family: DnsLookupFamily) -> DnsSettings {
        DnsSettings {
            lookup_family: family,
            refresh_rate: Duration::from_secs(5),
            failure_refresh_base: None,
            failure_refresh_max: None,
            respect_ttl: false,
            resolvers: vec![],
            use_tcp: false,
        }
    }

    #[tokio::test]
    async fn localhost_from_hosts_file_and_literals() {
        let r = ClusterResolver::new(&settings(DnsLookupFamily::V4Only), false).expect("resolver");
        let got = r.resolve("localhost").await.expect("localhost resolves");
        assert!(got.addresses.iter().all(IpAddr::is_ipv4));
        assert!(got.addresses.contains(&IpAddr::from([127, 0, 0, 1])));
        let lit = r.resolve("10.1.2.3").await.expect("literal");
        assert_eq!(lit.addresses, vec![IpAddr::from([10, 1, 2, 3])]);
    }
}
