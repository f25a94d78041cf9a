//! Config snapshots: one immutable [`Snapshot`] per config version, holding the
//! model and the runtime objects built from it (cluster manager, per-listener
//! and per-filter-chain runtimes with their stat handles and log sinks).
//!
//! Snapshots are published with `arc-swap`; a connection keeps the snapshot it
//! was accepted under until it ends.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use rvoy_http::{AccessLogger, HttpListenerRuntime};
use rvoy_model::Config;
use rvoy_model::listener::{FilterChainMatch, Listener, NetworkFilter, SourceType};
use rvoy_stats::{Scope, Store};
use rvoy_upstream::cluster::ClusterManager;
use rvoy_upstream::stats_struct;

use crate::access_log_files::AccessLogFiles;

stats_struct!(
    /// `listener.<address>.*`.
    ListenerStats {
        counters: [
            downstream_cx_total,
            downstream_cx_destroy,
            downstream_cx_overflow,
            downstream_cx_overload_reject,
            downstream_global_cx_overflow,
            downstream_cx_transport_socket_connect_timeout,
            downstream_listener_filter_error,
            downstream_listener_filter_remote_close,
            downstream_pre_cx_timeout,
            extension_config_missing,
            network_extension_config_missing,
            no_filter_chain_match,
        ],
        gauges: [downstream_cx_active, downstream_pre_cx_active],
        histograms: [downstream_cx_length_ms: Milliseconds],
    }
);

stats_struct!(
    /// `listener.<address>.worker_<n>.*`.
    ListenerWorkerStats {
        counters: [downstream_cx_total],
        gauges: [downstream_cx_active],
        histograms: [],
    }
);

/// One filter chain at runtime.
#[derive(Debug)]
pub struct ChainRuntime {
    pub matcher: FilterChainMatch,
    pub http: Arc<HttpListenerRuntime>,
}

/// One listener at runtime.
#[derive(Debug)]
pub struct ListenerRuntime {
    pub config: Arc<Listener>,
    pub chains: Vec<ChainRuntime>,
    pub default_chain: Option<ChainRuntime>,
    pub stats: ListenerStats,
    pub worker_stats: Vec<ListenerWorkerStats>,
}

/// Everything one config version runs with.
#[derive(Debug)]
pub struct Snapshot {
    pub epoch: u64,
    pub config: Arc<Config>,
    pub clusters: Arc<ClusterManager>,
    pub listeners: Vec<Arc<ListenerRuntime>>,
}

/// Errors building the runtime objects (log files that cannot be opened...).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(pub String);

/// Builds a snapshot from a validated config.
pub fn build(
    epoch: u64,
    config: Arc<Config>,
    store: &Store,
    logs: &AccessLogFiles,
    concurrency: usize,
    machine_address: Option<IpAddr>,
    draining: &Arc<AtomicBool>,
) -> Result<Snapshot, BuildError> {
    let root = store.scope("");
    let clusters = Arc::new(ClusterManager::new(
        &config.clusters,
        &root,
        config.use_tcp_for_dns_lookups,
    ));
    let mut listeners = Vec::with_capacity(config.listeners.len());
    for l in &config.listeners {
        let scope = root.scope(&format!("listener.{}.", l.stat_prefix));
        let listener_logs = loggers(&l.access_logs, logs)?;
        let port = l.address.socket_addr().map(|a| a.port());
        let chain = |fc: &rvoy_model::listener::FilterChain| -> Result<ChainRuntime, BuildError> {
            let NetworkFilter::HttpConnectionManager(hcm) = &fc.filter;
            let http = HttpListenerRuntime {
                hcm: hcm.clone(),
                stats: rvoy_http::stats::HcmStats::new(&root, &hcm.stat_prefix, &scope),
                clusters: clusters.clone(),
                access_logs: loggers(&hcm.access_logs, logs)?,
                machine_address,
                listener_port: port,
                listener_access_logs: listener_logs.clone(),
                draining: draining.clone(),
            };
            Ok(ChainRuntime {
                matcher: fc.matcher.clone(),
                http: Arc::new(http),
            })
        };
        let chains = l
            .filter_chains
            .iter()
            .map(chain)
            .collect::<Result<Vec<_>, _>>()?;
        let default_chain = l.default_filter_chain.as_ref().map(chain).transpose()?;
        listeners.push(Arc::new(ListenerRuntime {
            config: l.clone(),
            chains,
            default_chain,
            stats: ListenerStats::new(&scope),
            worker_stats: (0..concurrency)
                .map(|i| ListenerWorkerStats::new(&scope.scope(&format!("worker_{i}."))))
                .collect(),
        }));
    }
    Ok(Snapshot {
        epoch,
        config,
        clusters,
        listeners,
    })
}

fn loggers(
    configs: &[Arc<rvoy_model::access_log::AccessLog>],
    logs: &AccessLogFiles,
) -> Result<Vec<AccessLogger>, BuildError> {
    configs
        .iter()
        .map(|c| {
            let sink = logs.open(&c.sink).map_err(BuildError)?;
            Ok(AccessLogger {
                config: c.clone(),
                sink,
            })
        })
        .collect()
}

/// Chooses the filter chain for a connection, most specific criteria first
/// (Envoy's order: destination port, destination IP, direct source IP,
/// source type, source IP, source port).
pub fn select_chain<'a>(
    l: &'a ListenerRuntime,
    local: Option<SocketAddr>,
    remote: Option<SocketAddr>,
) -> Option<&'a ChainRuntime> {
    let mut candidates: Vec<&ChainRuntime> = l.chains.iter().collect();
    // Destination port.
    if let Some(port) = local.map(|a| a.port()) {
        let exact: Vec<_> = candidates
            .iter()
            .copied()
            .filter(|c| c.matcher.destination_port == Some(port))
            .collect();
        candidates = if exact.is_empty() {
            candidates
                .into_iter()
                .filter(|c| c.matcher.destination_port.is_none())
                .collect()
        } else {
            exact
        };
    }
    candidates = by_prefix(candidates, local.map(|a| a.ip()), |m| &m.prefix_ranges);
    candidates = by_prefix(candidates, remote.map(|a| a.ip()), |m| {
        &m.direct_source_prefix_ranges
    });
    // Source type.
    let is_local = match (remote, local) {
        (Some(r), Some(l)) => r.ip().is_loopback() || r.ip() == l.ip(),
        _ => true,
    };
    let typed: Vec<_> = candidates
        .iter()
        .copied()
        .filter(|c| match c.matcher.source_type {
            Some(SourceType::SameIpOrLoopback) => is_local,
            Some(SourceType::External) => !is_local,
            _ => false,
        })
        .collect();
    candidates = if typed.is_empty() {
        candidates
            .into_iter()
            .filter(|c| matches!(c.matcher.source_type, None | Some(SourceType::Any)))
            .collect()
    } else {
        typed
    };
    candidates = by_prefix(candidates, remote.map(|a| a.ip()), |m| {
        &m.source_prefix_ranges
    });
    if let Some(port) = remote.map(|a| a.port()) {
        let exact: Vec<_> = candidates
            .iter()
            .copied()
            .filter(|c| c.matcher.source_ports.contains(&port))
            .collect();
        candidates = if exact.is_empty() {
            candidates
                .into_iter()
                .filter(|c| c.matcher.source_ports.is_empty())
                .collect()
        } else {
            exact
        };
    }
    candidates.first().copied().or(l.default_chain.as_ref())
}

fn by_prefix<'a>(
    candidates: Vec<&'a ChainRuntime>,
    ip: Option<IpAddr>,
    ranges: impl Fn(&FilterChainMatch) -> &Vec<rvoy_model::hcm::CidrRange>,
) -> Vec<&'a ChainRuntime> {
    let Some(ip) = ip else {
        return candidates
            .into_iter()
            .filter(|c| ranges(&c.matcher).is_empty())
            .collect();
    };
    let mut best_len: Option<u8> = None;
    let mut best: Vec<&ChainRuntime> = Vec::new();
    for c in &candidates {
        for r in ranges(&c.matcher) {
            if r.contains(ip) {
                match best_len {
                    Some(l) if r.prefix_len < l => {}
                    Some(l) if r.prefix_len == l => best.push(c),
                    _ => {
                        best_len = Some(r.prefix_len);
                        best = vec![c];
                    }
                }
            }
        }
    }
    if best.is_empty() {
        candidates
            .into_iter()
            .filter(|c| ranges(&c.matcher).is_empty())
            .collect()
    } else {
        best.dedup_by(|a, b| std::ptr::eq(*a, *b));
        best
    }
}

/// Envoy's "local address": the first non-loopback address of the machine in
/// the requested family (used in `x-forwarded-for` for loopback peers).
pub fn machine_address(v6: bool) -> Option<IpAddr> {
    let addrs = nix::ifaddrs::getifaddrs().ok()?;
    for ifa in addrs {
        let Some(addr) = ifa.address else { continue };
        let ip = if let Some(v4) = addr.as_sockaddr_in() {
            IpAddr::V4(v4.ip())
        } else if let Some(sin6) = addr.as_sockaddr_in6() {
            IpAddr::V6(sin6.ip())
        } else {
            continue;
        };
        if ip.is_loopback() || ip.is_ipv6() != v6 {
            continue;
        }
        if let IpAddr::V6(v) = ip {
            if (v.segments()[0] & 0xffc0) == 0xfe80 {
                continue;
            }
        }
        return Some(ip);
    }
    None
}

/// The scope helper for server-level stats.
pub fn server_scope(store: &Store) -> Scope {
    store.scope("server.")
}
