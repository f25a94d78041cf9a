//! The cluster manager: every cluster's live host set, stats and circuit
//! breakers, and the DNS refresh loops that keep DNS clusters current.
//!
//! Workers read a cluster's hosts through an `ArcSwap` (no lock); the main
//! thread publishes new host sets when DNS answers change.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rvoy_model::address::{Address, EndpointAddress};
use rvoy_model::cluster::{self as model, Discovery, EdsHealth, TransportSocketChoice};
use rvoy_stats::{Counter, Scope};

use crate::dns::ClusterResolver;
use crate::host::{Host, HostAddress, HostSet};
use crate::resources::Resources;
use crate::stats::{CircuitBreakerStats, ClusterMembershipStats, ClusterStats};
use rvoy_model::dns_resolver::DnsResolverConfig;

/// One cluster at runtime.
#[derive(Debug)]
pub struct Cluster {
    pub config: Arc<model::Cluster>,
    hosts: ArcSwap<HostSet>,
    pub stats: ClusterStats,
    pub membership: ClusterMembershipStats,
    pub resources: Resources,
    pub high_resources: Resources,
    pub cb_default: CircuitBreakerStats,
    pub cb_high: CircuitBreakerStats,
    version: AtomicU64,
    /// When the last DNS resolution succeeded (for `/clusters`).
    pub last_update: std::sync::Mutex<Option<Instant>>,
    /// `transport_socket` (Envoy's `default` match).
    default_socket: TransportSocket,
    /// `transport_socket_matches`, in order.
    socket_matches: Vec<TransportSocket>,
}

/// One transport socket of a cluster, built once per config: its TLS context
/// and its `<match name>.total_match_count` (hosts that chose it).
#[derive(Debug)]
pub struct TransportSocket {
    /// `None`: raw buffer.
    pub tls: Option<Arc<rvoy_tls::ClientContext>>,
    pub total_match_count: Counter,
}

/// The TLS contexts of a cluster's transport sockets (`None`: raw buffer).
#[derive(Clone, Debug, Default)]
pub struct ClusterTls {
    /// `transport_socket`.
    pub default: Option<Arc<rvoy_tls::ClientContext>>,
    /// `transport_socket_matches`, in order.
    pub matches: Vec<Option<Arc<rvoy_tls::ClientContext>>>,
}

impl Cluster {
    fn new(config: Arc<model::Cluster>, root: &Scope, tls: ClusterTls) -> Self {
        let scope = root.scope(&format!("cluster.{}.", config.stat_name));
        let socket = |name: &str, tls: Option<Arc<rvoy_tls::ClientContext>>| TransportSocket {
            tls,
            total_match_count: scope
                .scope(&format!("{name}."))
                .counter("total_match_count"),
        };
        let default_socket = socket("default", tls.default);
        let mut matches = tls.matches.into_iter();
        let socket_matches = config
            .transport_socket_matches
            .iter()
            .map(|m| socket(&m.name, matches.next().flatten()))
            .collect();
        let hosts = static_hosts(&config);
        let set = HostSet::new(hosts, 1);
        let cluster = Cluster {
            stats: ClusterStats::new(&scope),
            membership: ClusterMembershipStats::new(&scope),
            resources: Resources::new(&config.thresholds),
            high_resources: Resources::new(&config.high_thresholds),
            cb_default: CircuitBreakerStats::new(&scope.scope("circuit_breakers.default.")),
            cb_high: CircuitBreakerStats::new(&scope.scope("circuit_breakers.high.")),
            hosts: ArcSwap::from_pointee(set),
            version: AtomicU64::new(1),
            last_update: std::sync::Mutex::new(None),
            default_socket,
            socket_matches,
            config,
        };
        cluster.membership.warming_state.set(0);
        if cluster.config.discovery == Discovery::Static {
            // Envoy counts the initial host set of a static cluster as one
            // membership change, and resolves each host's transport socket.
            cluster.membership.membership_change.inc();
            for h in &cluster.hosts.load().hosts {
                cluster
                    .transport_socket(h.transport_socket)
                    .total_match_count
                    .inc();
            }
        }
        cluster.record_membership();
        cluster
    }

    /// The transport socket a host chose (its TLS context, if any).
    pub fn transport_socket(&self, choice: TransportSocketChoice) -> &TransportSocket {
        match choice {
            TransportSocketChoice::Default => &self.default_socket,
            TransportSocketChoice::Match(i) => {
                self.socket_matches.get(i).unwrap_or(&self.default_socket)
            }
        }
    }

    /// The current hosts.
    pub fn hosts(&self) -> arc_swap::Guard<Arc<HostSet>> {
        self.hosts.load()
    }

    /// The current hosts as an owned handle.
    pub fn hosts_full(&self) -> Arc<HostSet> {
        self.hosts.load_full()
    }

    /// The circuit breakers of a priority.
    pub fn resources(&self, high: bool) -> &Resources {
        if high {
            &self.high_resources
        } else {
            &self.resources
        }
    }

    /// Sets the membership gauges as Envoy does: healthy and degraded hosts
    /// are counted apart; `max_host_weight` is only maintained by STRICT_DNS
    /// clusters, where it is the weight of the last resolved target.
    fn record_membership(&self) {
        let set = self.hosts.load();
        let m = &self.membership;
        m.membership_total.set(set.hosts.len() as u64);
        let count = |h: EdsHealth| set.hosts.iter().filter(|x| x.health == h).count() as u64;
        m.membership_healthy.set(count(EdsHealth::Healthy));
        m.membership_degraded.set(count(EdsHealth::Degraded));
        m.membership_excluded.set(0);
        if self.config.discovery == Discovery::StrictDns {
            m.max_host_weight.set(
                self.config
                    .endpoints
                    .last()
                    .map_or(0, |e| u64::from(e.weight.max(1))),
            );
        }
    }

    /// Publishes new hosts, keeping the existing `Host` of unchanged addresses.
    fn publish(&self, mut hosts: Vec<Arc<Host>>) -> bool {
        let current = self.hosts.load();
        let same = current.hosts.len() == hosts.len()
            && current
                .hosts
                .iter()
                .zip(&hosts)
                .all(|(a, b)| a.same_endpoint(b));
        if same {
            return false;
        }
        // Hosts that stay keep their identity (and their connection pools);
        // each existing host is kept once (endpoints may repeat an address).
        let mut kept = vec![false; current.hosts.len()];
        for h in hosts.iter_mut() {
            let existing = current
                .hosts
                .iter()
                .enumerate()
                .position(|(i, e)| !kept[i] && e.same_endpoint(h));
            if let Some(i) = existing {
                kept[i] = true;
                *h = current.hosts[i].clone();
            } else {
                self.transport_socket(h.transport_socket)
                    .total_match_count
                    .inc();
            }
        }
        let version = self.version.fetch_add(1, Ordering::Relaxed) + 1;
        let first = current.hosts.is_empty() && version == 2;
        self.hosts.store(Arc::new(HostSet::new(hosts, version)));
        // Envoy updates the membership once per resolve target; on the first
        // resolution every target changes it.
        self.membership.membership_change.add(if first {
            resolve_targets(&self.config)
        } else {
            1
        });
        self.record_membership();
        true
    }
}

fn to_host_address(a: &Address) -> HostAddress {
    match a {
        Address::Ip { addr, .. } => HostAddress::Tcp(*addr),
        Address::Pipe { path, .. } => HostAddress::Unix(path.clone()),
    }
}

/// The hosts known without DNS (all of a STATIC cluster's).
fn static_hosts(config: &model::Cluster) -> Vec<Arc<Host>> {
    if config.discovery != Discovery::Static {
        return Vec::new();
    }
    config
        .endpoints
        .iter()
        .filter_map(|e| match &e.address {
            EndpointAddress::Resolved(a) => Some(Arc::new(
                Host::new(
                    to_host_address(a),
                    e.hostname.as_str().into(),
                    e.weight,
                    e.priority,
                    e.health,
                )
                .with_transport_socket(e.transport_socket),
            )),
            EndpointAddress::Dns { .. } => None,
        })
        .collect()
}

/// The number of DNS resolve targets of a cluster (Envoy counts its update
/// stats per target): every endpoint of a STRICT_DNS cluster, one for
/// LOGICAL_DNS.
fn resolve_targets(config: &model::Cluster) -> u64 {
    match config.discovery {
        Discovery::StrictDns => config.endpoints.len().max(1) as u64,
        _ => 1,
    }
}

/// All clusters of a config.
#[derive(Debug, Default)]
pub struct ClusterManager {
    /// Looked up once per request: hashed with foldhash, not SipHash (the
    /// names come from config, not from clients).
    by_name: HashMap<Arc<str>, Arc<Cluster>, foldhash::fast::RandomState>,
    /// In configuration order (for `/clusters`).
    pub ordered: Vec<Arc<Cluster>>,
    /// The server's resolver, for DNS clusters without their own.
    pub dns_resolver: DnsResolverConfig,
}

impl ClusterManager {
    pub fn new(
        clusters: &[Arc<model::Cluster>],
        root: &Scope,
        dns_resolver: DnsResolverConfig,
    ) -> Self {
        Self::with_tls(clusters, root, dns_resolver, HashMap::new())
    }

    /// [`new`](Self::new), with the TLS contexts of clusters by name.
    pub fn with_tls(
        clusters: &[Arc<model::Cluster>],
        root: &Scope,
        dns_resolver: DnsResolverConfig,
        mut tls: HashMap<Arc<str>, ClusterTls>,
    ) -> Self {
        let mut by_name = HashMap::with_capacity_and_hasher(
            clusters.len(),
            foldhash::fast::RandomState::default(),
        );
        let mut ordered = Vec::with_capacity(clusters.len());
        for c in clusters {
            rvoy_log::debug!(
                rvoy_log::Component::Upstream,
                "cm init: adding: cluster={} primary=1 secondary=0",
                c.name
            );
            let contexts = tls.remove(&c.name).unwrap_or_default();
            let cluster = Arc::new(Cluster::new(c.clone(), root, contexts));
            by_name.insert(c.name.clone(), cluster.clone());
            ordered.push(cluster);
        }
        ClusterManager {
            by_name,
            ordered,
            dns_resolver,
        }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Cluster>> {
        self.by_name.get(name)
    }

    /// Resolves every DNS cluster once (Envoy's cluster warming), then keeps
    /// refreshing them on the current runtime. Returns when the first round of
    /// every cluster finished, successfully or not.
    pub async fn initialize(self: &Arc<Self>) {
        let mut waits = Vec::new();
        for cluster in &self.ordered {
            if cluster.config.discovery == Discovery::Static {
                continue;
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            let c = cluster.clone();
            let resolver = c
                .config
                .dns
                .resolver
                .clone()
                .unwrap_or_else(|| self.dns_resolver.clone());
            tokio::spawn(async move {
                dns_loop(c, resolver, Some(tx)).await;
            });
            waits.push(rx);
        }
        for w in waits {
            let _ = w.await;
        }
        for c in &self.ordered {
            rvoy_log::debug!(
                rvoy_log::Component::Upstream,
                "cm init: init complete: cluster={} primary=0 secondary=0",
                c.config.name
            );
        }
        rvoy_log::debug!(
            rvoy_log::Component::Upstream,
            "maybe finish initialize state: 0"
        );
    }
}

/// Resolves a DNS cluster's endpoints forever, publishing changes.
async fn dns_loop(
    cluster: Arc<Cluster>,
    resolver: DnsResolverConfig,
    mut first: Option<tokio::sync::oneshot::Sender<()>>,
) {
    let config = cluster.config.clone();
    let mut resolver = match ClusterResolver::new(&resolver, config.dns.lookup_family) {
        Ok(r) => r,
        Err(e) => {
            rvoy_log::error!(
                rvoy_log::Component::Upstream,
                "cluster {}: DNS resolver unavailable: {}",
                config.name,
                e
            );
            if let Some(tx) = first.take() {
                let _ = tx.send(());
            }
            return;
        }
    };
    let mut failures = 0u32;
    let targets = resolve_targets(&config);
    loop {
        cluster.membership.update_attempt.add(targets);
        let mut hosts = Vec::new();
        let mut ok = true;
        let mut min_valid: Option<Instant> = None;
        for e in &config.endpoints {
            match &e.address {
                EndpointAddress::Resolved(a) => {
                    // A DNS cluster's target named by an IP literal: Envoy
                    // resolves it like a name, and the literal is the hostname.
                    let hostname: Arc<str> = match a {
                        Address::Ip { addr, .. } if e.hostname.is_empty() => {
                            addr.ip().to_string().into()
                        }
                        _ => e.hostname.as_str().into(),
                    };
                    hosts.push(Arc::new(
                        Host::new(to_host_address(a), hostname, e.weight, e.priority, e.health)
                            .with_transport_socket(e.transport_socket),
                    ));
                }
                EndpointAddress::Dns { host, port } => match resolver.resolve(host).await {
                    Ok(resolved) => {
                        if let Some(v) = resolved.valid_until {
                            min_valid = Some(min_valid.map_or(v, |m| m.min(v)));
                        }
                        let hostname: Arc<str> = if e.hostname.is_empty() {
                            host.as_str().into()
                        } else {
                            e.hostname.as_str().into()
                        };
                        let addrs: Vec<_> = if config.discovery == Discovery::LogicalDns {
                            resolved.addresses.into_iter().take(1).collect()
                        } else {
                            resolved.addresses
                        };
                        for ip in addrs {
                            hosts.push(Arc::new(
                                Host::new(
                                    HostAddress::Tcp(std::net::SocketAddr::new(ip, *port)),
                                    hostname.clone(),
                                    e.weight,
                                    e.priority,
                                    e.health,
                                )
                                .with_transport_socket(e.transport_socket),
                            ));
                        }
                    }
                    Err(err) => {
                        ok = false;
                        rvoy_log::debug!(
                            rvoy_log::Component::Upstream,
                            "cluster {}: DNS resolution of {} failed: {}",
                            config.name,
                            host,
                            err
                        );
                    }
                },
            }
        }
        if ok {
            failures = 0;
            cluster.membership.update_success.add(targets);
            if let Ok(mut t) = cluster.last_update.lock() {
                *t = Some(Instant::now());
            }
            if !cluster.publish(hosts) {
                cluster.membership.update_no_rebuild.inc();
            }
        } else {
            failures += 1;
            cluster.membership.update_failure.inc();
        }
        if let Some(tx) = first.take() {
            let _ = tx.send(());
        }
        let wait = if ok {
            match (config.dns.respect_ttl, min_valid) {
                (true, Some(until)) => until
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
                _ => config.dns.refresh_rate,
            }
        } else {
            let base = config
                .dns
                .failure_refresh_base
                .unwrap_or(config.dns.refresh_rate);
            let max = config.dns.failure_refresh_max.unwrap_or(base * 10);
            let backoff = base.saturating_mul(1u32 << failures.min(10));
            let capped = backoff.min(max);
            // Jitter like Envoy's backoff strategy: a random point below the cap.
            Duration::from_millis(fastrand::u64(
                capped.as_millis().max(1) as u64 / 2..=capped.as_millis().max(1) as u64,
            ))
        };
        tokio::time::sleep(wait).await;
    }
}
