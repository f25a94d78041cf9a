//! DNS resolution for `STRICT_DNS` and `LOGICAL_DNS` clusters.
//!
//! A [`ClusterResolver`] is built from a cluster's [`DnsResolverConfig`] (its
//! own or the server's) and resolves every named endpoint; the results become
//! hosts. The resolvers Envoy offers map onto two engines:
//! - c-ares and hickory configs run on hickory, with c-ares' behaviour where
//!   the two differ (servers tried in order, no response cache unless
//!   `qcache_max_ttl` asks for one, 127.0.0.1 when the system names no server);
//! - getaddrinfo runs the system's `getaddrinfo()` on blocking threads, at most
//!   `num_resolver_threads` at once, with Envoy's fixed 60 s TTL.
//!
//! `AUTO` prefers IPv6 and falls back to IPv4, `V4_PREFERRED` the reverse,
//! `ALL` keeps both, as Envoy's lookup families do. `/etc/hosts` is honoured,
//! so `localhost` works offline.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ProtocolConfig, ResolverConfig,
    ResolverOpts, ServerOrderingStrategy,
};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use rvoy_model::cluster::DnsLookupFamily;
use rvoy_model::dns_resolver::{
    CaresResolver, DnsResolverConfig, GetAddrInfoResolver, HickoryResolver,
};
use tokio::sync::Semaphore;

/// A resolution failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DnsError(pub String);

/// The TTL Envoy gives getaddrinfo answers (the call reports none).
const GETADDRINFO_TTL: Duration = Duration::from_secs(60);

/// A resolver for one cluster.
pub struct ClusterResolver {
    config: DnsResolverConfig,
    family: DnsLookupFamily,
    engine: Engine,
    /// The family the engine looks up (the configured one, or what is left
    /// of it after `filter_unroutable_families`).
    engine_family: DnsLookupFamily,
    /// When the engine was built (for `max_udp_channel_duration`).
    built: Instant,
}

enum Engine {
    Hickory(Box<TokioResolver>),
    GetAddrInfo {
        /// One permit per resolver thread.
        threads: Arc<Semaphore>,
        num_retries: Option<u32>,
    },
}

/// The addresses a name resolved to, and until when they are valid.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub addresses: Vec<IpAddr>,
    pub valid_until: Option<Instant>,
}

impl ClusterResolver {
    pub fn new(config: &DnsResolverConfig, family: DnsLookupFamily) -> Result<Self, DnsError> {
        Ok(ClusterResolver {
            engine: Engine::new(config, family)?,
            config: config.clone(),
            family,
            engine_family: family,
            built: Instant::now(),
        })
    }

    /// Resolves `host` (an IP literal resolves to itself).
    pub async fn resolve(&mut self, host: &str) -> Result<Resolved, DnsError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Resolved {
                addresses: vec![ip],
                valid_until: None,
            });
        }
        if let DnsResolverConfig::Cares(c) = &self.config
            && c.max_udp_channel_duration
                .is_some_and(|d| self.built.elapsed() >= d)
        {
            self.rebuild()?;
        }
        let Some(family) = self.lookup_family() else {
            return Err(DnsError(format!("no routable family for {host}")));
        };
        if family != self.engine_family {
            self.engine = Engine::new(&self.config, family)?;
            self.engine_family = family;
        }
        let result = match &self.engine {
            Engine::Hickory(resolver) => resolve_hickory(resolver, host, family).await,
            Engine::GetAddrInfo {
                threads,
                num_retries,
            } => getaddrinfo(threads, *num_retries, host, self.family).await,
        };
        if let (Err(Lookup::TimedOut(_)), DnsResolverConfig::Cares(c)) = (&result, &self.config)
            && c.reinit_channel_on_timeout
        {
            self.rebuild()?;
        }
        let addresses = result.map_err(Lookup::into_error)?;
        if addresses.0.is_empty() {
            return Err(DnsError(format!("no addresses for {host}")));
        }
        Ok(Resolved {
            addresses: addresses.0,
            valid_until: addresses.1,
        })
    }

    /// c-ares' channel re-initialisation: a fresh resolver (and system config).
    fn rebuild(&mut self) -> Result<(), DnsError> {
        self.engine = Engine::new(&self.config, self.engine_family)?;
        self.built = Instant::now();
        Ok(())
    }

    /// The family to look up: the configured one, less the families no
    /// interface can route when `filter_unroutable_families` asks; `None` when
    /// nothing is left.
    fn lookup_family(&self) -> Option<DnsLookupFamily> {
        match &self.config {
            DnsResolverConfig::Cares(c) if c.filter_unroutable_families => {
                routable_family(self.family, routable_interfaces())
            }
            _ => Some(self.family),
        }
    }
}

async fn resolve_hickory(
    resolver: &TokioResolver,
    host: &str,
    family: DnsLookupFamily,
) -> Result<(Vec<IpAddr>, Option<Instant>), Lookup> {
    let lookup = resolver.lookup_ip(host).await.map_err(Lookup::from)?;
    let valid_until = Some(lookup.valid_until());
    let mut addresses: Vec<IpAddr> = lookup.iter().collect();
    match family {
        DnsLookupFamily::V4Only => addresses.retain(IpAddr::is_ipv4),
        DnsLookupFamily::V6Only => addresses.retain(IpAddr::is_ipv6),
        _ => {}
    }
    Ok((addresses, valid_until))
}

/// How a lookup failed.
enum Lookup {
    TimedOut(String),
    Failed(String),
}

impl Lookup {
    fn into_error(self) -> DnsError {
        match self {
            Lookup::TimedOut(e) | Lookup::Failed(e) => DnsError(e),
        }
    }
}

impl From<NetError> for Lookup {
    fn from(e: NetError) -> Self {
        match e {
            NetError::Timeout => Lookup::TimedOut(e.to_string()),
            e => Lookup::Failed(e.to_string()),
        }
    }
}

impl Engine {
    fn new(config: &DnsResolverConfig, family: DnsLookupFamily) -> Result<Self, DnsError> {
        let (resolver_config, opts) = match config {
            DnsResolverConfig::GetAddrInfo(GetAddrInfoResolver {
                num_retries,
                num_resolver_threads,
            }) => {
                return Ok(Engine::GetAddrInfo {
                    threads: Arc::new(Semaphore::new(*num_resolver_threads as usize)),
                    num_retries: *num_retries,
                });
            }
            DnsResolverConfig::Cares(c) => cares(c),
            DnsResolverConfig::Hickory(h) => hickory(h),
        };
        let mut builder =
            TokioResolver::builder_with_config(resolver_config, TokioRuntimeProvider::default())
                .with_options(opts);
        builder.options_mut().ip_strategy = match family {
            DnsLookupFamily::Auto => LookupIpStrategy::Ipv6thenIpv4,
            DnsLookupFamily::V4Only => LookupIpStrategy::Ipv4Only,
            DnsLookupFamily::V6Only => LookupIpStrategy::Ipv6Only,
            DnsLookupFamily::V4Preferred => LookupIpStrategy::Ipv4thenIpv6,
            DnsLookupFamily::All => LookupIpStrategy::Ipv4AndIpv6,
        };
        let resolver = builder.build().map_err(|e| DnsError(e.to_string()))?;
        Ok(Engine::Hickory(Box::new(resolver)))
    }
}

/// `/etc/resolv.conf`: name servers, search domains and options; empty when
/// the file is missing or unreadable.
fn system_config() -> (ResolverConfig, ResolverOpts) {
    hickory_resolver::system_conf::read_system_conf().unwrap_or_else(|_| {
        (
            ResolverConfig::from_parts(None, Vec::new(), Vec::new()),
            ResolverOpts::default(),
        )
    })
}

/// c-ares' behaviour on hickory.
fn cares(c: &CaresResolver) -> (ResolverConfig, ResolverOpts) {
    let (mut config, mut opts) = system_config();
    let use_configured =
        !c.resolvers.is_empty() && (!c.use_resolvers_as_fallback || config.name_servers.is_empty());
    if use_configured {
        config.name_servers = c.resolvers.iter().map(|a| name_server(*a)).collect();
    } else if config.name_servers.is_empty() {
        // c-ares' own default when the system names no server.
        config.name_servers = vec![name_server(SocketAddr::from(([127, 0, 0, 1], 53)))];
    }
    if c.use_tcp {
        for ns in &mut config.name_servers {
            let port = ns.connections.first().map_or(53, |cc| cc.port);
            ns.connections
                .retain(|cc| matches!(cc.protocol, ProtocolConfig::Tcp));
            if ns.connections.is_empty() {
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = port;
                ns.connections.push(tcp);
            }
        }
    }
    if c.no_default_search_domain {
        config.domain = None;
        config.search.clear();
    }
    opts.timeout = c.query_timeout;
    opts.attempts = c.query_tries.saturating_sub(1) as usize;
    // c-ares asks the servers in order unless told to rotate, and does not
    // switch a failed UDP query to TCP (only a truncated answer).
    opts.server_ordering_strategy = if c.rotate_nameservers {
        ServerOrderingStrategy::RoundRobin
    } else {
        ServerOrderingStrategy::UserProvidedOrder
    };
    opts.try_tcp_on_error = false;
    opts.edns0 = true;
    opts.edns_payload_len = c.edns0_max_payload_size.unwrap_or(1232);
    if c.qcache_max_ttl == 0 {
        opts.cache_size = 0;
    } else {
        let max = Duration::from_secs(u64::from(c.qcache_max_ttl));
        opts.positive_max_ttl = Some(max);
        opts.negative_max_ttl = Some(max);
    }
    (config, opts)
}

/// Envoy's hickory resolver.
fn hickory(h: &HickoryResolver) -> (ResolverConfig, ResolverOpts) {
    let (mut config, mut opts) = if h.use_system_config {
        system_config()
    } else {
        (
            ResolverConfig::from_parts(None, Vec::new(), Vec::new()),
            ResolverOpts::default(),
        )
    };
    if !h.resolvers.is_empty() {
        config.name_servers = h.resolvers.iter().map(|a| name_server(*a)).collect();
    }
    opts.cache_size = u64::from(h.cache_size);
    opts.timeout = h.query_timeout;
    opts.attempts = h.query_tries.saturating_sub(1) as usize;
    (config, opts)
}

/// A name server asked over UDP first, TCP for truncated answers.
fn name_server(addr: SocketAddr) -> NameServerConfig {
    let mut udp = ConnectionConfig::udp();
    udp.port = addr.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = addr.port();
    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
}

/// Whether some non-loopback interface has an IPv4 and an IPv6 address (as
/// c-ares' `filter_unroutable_families` checks).
fn routable_interfaces() -> (bool, bool) {
    let (mut v4, mut v6) = (false, false);
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for ifa in addrs {
            let Some(addr) = ifa.address else { continue };
            if let Some(sin) = addr.as_sockaddr_in() {
                v4 |= !sin.ip().is_loopback();
            } else if let Some(sin6) = addr.as_sockaddr_in6() {
                v6 |= !sin6.ip().is_loopback();
            }
        }
    }
    (v4, v6)
}

/// The family left to look up once unroutable ones are filtered out; `None`
/// when nothing is left (the lookup answers no address, as Envoy's does).
fn routable_family(family: DnsLookupFamily, (v4, v6): (bool, bool)) -> Option<DnsLookupFamily> {
    use DnsLookupFamily as F;
    match (family, v4, v6) {
        (_, false, false) | (F::V4Only, false, _) | (F::V6Only, _, false) => None,
        (F::V4Only | F::V6Only, ..) | (_, true, true) => Some(family),
        (_, true, false) => Some(F::V4Only),
        (_, false, true) => Some(F::V6Only),
    }
}

/// Envoy's getaddrinfo resolver: `getaddrinfo()` on a blocking thread, retried
/// while it answers `EAI_AGAIN` (`num_retries` times, or until it answers).
async fn getaddrinfo(
    threads: &Arc<Semaphore>,
    num_retries: Option<u32>,
    host: &str,
    family: DnsLookupFamily,
) -> Result<(Vec<IpAddr>, Option<Instant>), Lookup> {
    let mut tries_left = num_retries.map(|n| n.saturating_add(1));
    loop {
        let permit = threads
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Lookup::Failed(e.to_string()))?;
        let name = host.to_owned();
        let answer = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            (name.as_str(), 0u16)
                .to_socket_addrs()
                .map(|it| it.map(|a| a.ip()).collect::<Vec<_>>())
        })
        .await
        .map_err(|e| Lookup::Failed(e.to_string()))?;
        match answer {
            Ok(ips) => {
                let until = Instant::now() + GETADDRINFO_TTL;
                return Ok((by_family(ips, family), Some(until)));
            }
            Err(e) if is_eai_again(&e) => {
                if let Some(n) = &mut tries_left {
                    *n -= 1;
                    if *n == 0 {
                        return Err(Lookup::Failed(e.to_string()));
                    }
                }
            }
            Err(e) => return Err(Lookup::Failed(e.to_string())),
        }
    }
}

/// `EAI_AGAIN`: the standard library reports getaddrinfo's errors only by
/// their `gai_strerror` text.
fn is_eai_again(e: &std::io::Error) -> bool {
    e.to_string()
        .contains("Temporary failure in name resolution")
}

/// Envoy's getaddrinfo ordering: `ALL` gives IPv6 then IPv4, `AUTO` IPv6 if
/// any else IPv4, `V4_PREFERRED` the reverse.
fn by_family(ips: Vec<IpAddr>, family: DnsLookupFamily) -> Vec<IpAddr> {
    let (v4, v6): (Vec<IpAddr>, Vec<IpAddr>) = ips.into_iter().partition(IpAddr::is_ipv4);
    match family {
        DnsLookupFamily::V4Only => v4,
        DnsLookupFamily::V6Only => v6,
        DnsLookupFamily::All => v6.into_iter().chain(v4).collect(),
        DnsLookupFamily::V4Preferred if !v4.is_empty() => v4,
        DnsLookupFamily::V4Preferred => v6,
        DnsLookupFamily::Auto if !v6.is_empty() => v6,
        DnsLookupFamily::Auto => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn localhost_from_hosts_file_and_literals() {
        for config in [
            DnsResolverConfig::default(),
            DnsResolverConfig::GetAddrInfo(GetAddrInfoResolver {
                num_retries: Some(0),
                num_resolver_threads: 1,
            }),
        ] {
            let mut r = ClusterResolver::new(&config, DnsLookupFamily::V4Only).expect("resolver");
            let got = r.resolve("localhost").await.expect("localhost resolves");
            assert!(got.addresses.iter().all(IpAddr::is_ipv4), "{config:?}");
            assert!(got.addresses.contains(&IpAddr::from([127, 0, 0, 1])));
            let lit = r.resolve("10.1.2.3").await.expect("literal");
            assert_eq!(lit.addresses, vec![IpAddr::from([10, 1, 2, 3])]);
        }
    }

    #[test]
    fn unroutable_families_are_left_out() {
        use DnsLookupFamily as F;
        assert_eq!(routable_family(F::Auto, (true, false)), Some(F::V4Only));
        assert_eq!(routable_family(F::All, (false, true)), Some(F::V6Only));
        assert_eq!(
            routable_family(F::V4Preferred, (true, true)),
            Some(F::V4Preferred)
        );
        assert_eq!(routable_family(F::V6Only, (true, false)), None);
        assert_eq!(routable_family(F::V4Only, (true, false)), Some(F::V4Only));
        assert_eq!(routable_family(F::Auto, (false, false)), None);
    }

    #[test]
    fn getaddrinfo_orders_families_as_envoy() {
        let v4 = IpAddr::from([10, 0, 0, 1]);
        let v6: IpAddr = "fd00::1".parse().expect("v6");
        use DnsLookupFamily as F;
        assert_eq!(by_family(vec![v4, v6], F::All), vec![v6, v4]);
        assert_eq!(by_family(vec![v4, v6], F::Auto), vec![v6]);
        assert_eq!(by_family(vec![v4], F::Auto), vec![v4]);
        assert_eq!(by_family(vec![v4, v6], F::V4Preferred), vec![v4]);
        assert_eq!(by_family(vec![v6], F::V4Preferred), vec![v6]);
        assert_eq!(by_family(vec![v4, v6], F::V6Only), vec![v6]);
    }
}
