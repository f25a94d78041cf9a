//! Config snapshots: one immutable [`Snapshot`] per config version, holding the
//! model and the runtime objects built from it (cluster manager, per-listener
//! and per-filter-chain runtimes with their stat handles and log sinks).
//!
//! Snapshots are published with `arc-swap`; a connection keeps the snapshot it
//! was accepted under until it ends.
//!
//! Listener stats (`listener.<address>.*`) have Envoy's names; each listener
//! has its own drain flag and stop signal so `/drain_listeners?inboundonly`
//! can drain and stop a subset.
//!
//! TLS contexts (listener chains and clusters) are built here too, reading
//! their certificates once; file-based SDS secrets come from the server's
//! [`SecretManager`](rvoy_tls::SecretManager), which rebuilds them on change.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use rvoy_http::{AccessLogger, HttpListenerRuntime};
use rvoy_model::Config;
use rvoy_model::filter_chain_index::ConnectionFacts;
use rvoy_model::listener::{Listener, ListenerFilter, NetworkFilter};
use rvoy_stats::{Scope, Store};
use rvoy_tls::SecretManager;
use rvoy_upstream::cluster::ClusterManager;
use rvoy_upstream::stats_struct;

use crate::access_log_files::AccessLogFiles;
use crate::tcp_proxy::{TcpProxyRuntime, TcpProxyStats};
use crate::tls_inspector::TlsInspectorStats;

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
        histograms: [
            connections_accepted_per_socket_event: Unspecified,
            downstream_cx_length_ms: Milliseconds,
        ],
    }
);

/// The stats of `ListenerStats` the admin listener does not have.
pub const ADMIN_LISTENER_SKIPPED_STATS: &[&str] = &[
    "extension_config_missing",
    "network_extension_config_missing",
];

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
    pub name: String,
    /// The HTTP connection manager, when that is the chain's filter.
    pub http: Option<Arc<HttpListenerRuntime>>,
    /// The TCP proxy, when that is the chain's filter.
    pub tcp: Option<Arc<TcpProxyRuntime>>,
    /// The TLS context (`None`: raw buffer).
    pub tls: Option<Arc<rvoy_tls::ServerContext>>,
    pub transport_socket_connect_timeout: Option<Duration>,
}

/// One listener at runtime.
#[derive(Debug)]
pub struct ListenerRuntime {
    pub config: Arc<Listener>,
    pub chains: Vec<ChainRuntime>,
    pub default_chain: Option<ChainRuntime>,
    /// The TLS inspector listener filter, with its stats.
    pub tls_inspector: Option<(
        rvoy_model::tls_inspector::TlsInspector,
        Arc<TlsInspectorStats>,
    )>,
    /// `Listener.access_log`: one line per connection.
    pub access_logs: Vec<AccessLogger>,
    pub stats: ListenerStats,
    pub worker_stats: Vec<ListenerWorkerStats>,
    /// Set when this listener drains (`/drain_listeners`): its HTTP
    /// responses carry `connection: close`.
    pub draining: Arc<rvoy_http::context::Drain>,
    /// Becomes true when this listener must stop accepting (a drain without
    /// `skip_exit`); the server-wide stop is `WorkerControl::stop_accepting`.
    pub stop: tokio::sync::watch::Sender<bool>,
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
#[allow(clippy::too_many_arguments)]
pub fn build(
    epoch: u64,
    config: Arc<Config>,
    store: &Store,
    logs: &AccessLogFiles,
    concurrency: usize,
    machine_address: Option<IpAddr>,
    draining: &Arc<AtomicBool>,
    health_failed: &Arc<AtomicBool>,
    secrets: &Arc<SecretManager>,
) -> Result<Snapshot, BuildError> {
    let root = store.scope("");
    let mut cluster_tls = HashMap::new();
    for c in &config.clusters {
        let scope = root.scope(&format!("cluster.{}.", c.stat_name));
        let context = |tls: &Option<Arc<rvoy_model::tls::UpstreamTls>>| {
            tls.as_ref()
                .map(|t| rvoy_tls::ClientContext::new(t.clone(), &scope, secrets))
                .transpose()
                .map_err(|e| BuildError(format!("cluster '{}': {e}", c.name)))
        };
        let contexts = rvoy_upstream::cluster::ClusterTls {
            default: context(&c.tls)?,
            matches: c
                .transport_socket_matches
                .iter()
                .map(|m| context(&m.tls))
                .collect::<Result<_, _>>()?,
        };
        cluster_tls.insert(c.name.clone(), contexts);
    }
    let clusters = Arc::new(ClusterManager::with_tls(
        &config.clusters,
        &root,
        config.dns_resolver.clone(),
        cluster_tls,
    ));
    let mut listeners = Vec::with_capacity(config.listeners.len());
    for l in &config.listeners {
        let scope = root.scope(&format!("listener.{}.", l.stat_prefix));
        let listener_logs = loggers(&l.access_logs, logs)?;
        let port = l.address.socket_addr().map(|a| a.port());
        let listener_draining = Arc::new(rvoy_http::context::Drain::default());
        if draining.load(std::sync::atomic::Ordering::Relaxed) {
            listener_draining.start(std::time::Duration::ZERO, false);
        }
        let chain = |fc: &rvoy_model::listener::FilterChain| -> Result<ChainRuntime, BuildError> {
            let tls = fc
                .tls
                .as_ref()
                .map(|t| rvoy_tls::ServerContext::new(t.clone(), &scope, secrets))
                .transpose()
                .map_err(|e| BuildError(format!("listener '{}': {e}", l.name)))?;
            let hcm = match &fc.filter {
                NetworkFilter::HttpConnectionManager(hcm) => hcm,
                NetworkFilter::TcpProxy(tp) => {
                    let tcp = TcpProxyRuntime {
                        config: tp.clone(),
                        stats: TcpProxyStats::new(&root.scope(&tp.stat_prefix)),
                        clusters: clusters.clone(),
                        access_logs: loggers(&tp.access_logs, logs)?,
                    };
                    return Ok(ChainRuntime {
                        name: fc.name.clone(),
                        http: None,
                        tcp: Some(Arc::new(tcp)),
                        tls,
                        transport_socket_connect_timeout: fc.transport_socket_connect_timeout,
                    });
                }
            };
            let http = HttpListenerRuntime {
                hcm: hcm.clone(),
                stats: rvoy_http::stats::HcmStats::new(&root, &hcm.stat_prefix, &scope),
                clusters: clusters.clone(),
                access_logs: loggers(&hcm.access_logs, logs)?,
                machine_address,
                listener_port: port,
                listener_access_logs: listener_logs.clone(),
                draining: listener_draining.clone(),
                health_failed: (l.drain_type == rvoy_model::listener::DrainType::Default)
                    .then(|| health_failed.clone()),
                filters: rvoy_http::filter::build(
                    &hcm.http_filters,
                    &root.scope(&format!("http.{}.", hcm.stat_prefix)),
                    &rvoy_http::filter::FilterEnv {
                        root_scope: &root,
                        health_failed,
                        clusters: &clusters,
                        local_cluster: &config.node.cluster,
                        route_config: &hcm.route_config,
                    },
                ),
            };
            Ok(ChainRuntime {
                name: fc.name.clone(),
                http: Some(Arc::new(http)),
                tcp: None,
                tls,
                transport_socket_connect_timeout: fc.transport_socket_connect_timeout,
            })
        };
        let chains = l
            .filter_chains
            .iter()
            .map(chain)
            .collect::<Result<Vec<_>, _>>()?;
        let default_chain = l.default_filter_chain.as_ref().map(chain).transpose()?;
        let mut tls_inspector = None;
        for f in &l.listener_filters {
            match f {
                ListenerFilter::TlsInspector(t) if tls_inspector.is_none() => {
                    tls_inspector = Some((
                        t.clone(),
                        Arc::new(TlsInspectorStats::new(&root.scope("tls_inspector."))),
                    ));
                }
                ListenerFilter::TlsInspector(_) => {}
            }
        }
        listeners.push(Arc::new(ListenerRuntime {
            config: l.clone(),
            chains,
            default_chain,
            tls_inspector,
            access_logs: listener_logs,
            stats: ListenerStats::new(&scope),
            worker_stats: (0..concurrency)
                .map(|i| ListenerWorkerStats::new(&scope.scope(&format!("worker_{i}."))))
                .collect(),
            draining: listener_draining,
            stop: tokio::sync::watch::channel(false).0,
        }));
    }
    Ok(Snapshot {
        epoch,
        config,
        clusters,
        listeners,
    })
}

/// Opens the sinks of access log configs.
pub fn loggers(
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

/// Chooses the filter chain for a connection as Envoy does (see
/// `rvoy_model::filter_chain_index`), falling back to the default chain.
pub fn select_chain<'a>(
    l: &'a ListenerRuntime,
    facts: &ConnectionFacts<'_>,
) -> Option<&'a ChainRuntime> {
    match l.config.chain_index.find(facts) {
        Some(i) => l.chains.get(i),
        None => l.default_chain.as_ref(),
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
        if let IpAddr::V6(v) = ip
            && (v.segments()[0] & 0xffc0) == 0xfe80
        {
            continue;
        }
        return Some(ip);
    }
    None
}

/// The scope helper for server-level stats.
pub fn server_scope(store: &Store) -> Scope {
    store.scope("server.")
}
