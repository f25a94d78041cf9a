//! Upstream hosts and host sets.
//!
//! A [`Host`] is one endpoint of a cluster with the counters `/clusters`
//! reports. A [`HostSet`] is an immutable list of a cluster's hosts grouped by
//! priority; DNS refreshes publish a new one (keeping the `Arc<Host>` of hosts
//! that did not change, so their stats and pools survive).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rvoy_model::cluster::{EdsHealth, TransportSocketChoice};

/// Where a host is reached.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HostAddress {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl HostAddress {
    /// Envoy's rendering (`127.0.0.1:8080`, `[::1]:80`, or the socket path).
    pub fn to_envoy_string(&self) -> String {
        match self {
            HostAddress::Tcp(a) => a.to_string(),
            HostAddress::Unix(p) => p.to_string_lossy().into_owned(),
        }
    }
}

/// Per-host counters, read by `/clusters`.
#[derive(Debug, Default)]
pub struct HostStats {
    pub cx_total: AtomicU64,
    pub cx_active: AtomicU64,
    pub cx_connect_fail: AtomicU64,
    pub rq_total: AtomicU64,
    pub rq_active: AtomicU64,
    pub rq_success: AtomicU64,
    pub rq_error: AtomicU64,
    pub rq_timeout: AtomicU64,
}

impl HostStats {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn dec(counter: &AtomicU64) {
        counter.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One upstream endpoint.
#[derive(Debug)]
pub struct Host {
    pub address: HostAddress,
    /// The hostname used by `auto_host_rewrite` (`hostname`, else the DNS name).
    pub hostname: Arc<str>,
    pub weight: u32,
    pub priority: u32,
    pub health: EdsHealth,
    /// The cluster transport socket its connections use.
    pub transport_socket: TransportSocketChoice,
    pub stats: HostStats,
}

impl Host {
    pub fn new(
        address: HostAddress,
        hostname: Arc<str>,
        weight: u32,
        priority: u32,
        health: EdsHealth,
    ) -> Self {
        Host {
            address,
            hostname,
            weight: weight.max(1),
            priority,
            health,
            transport_socket: TransportSocketChoice::Default,
            stats: HostStats::default(),
        }
    }

    /// The host, using transport socket `choice` of its cluster.
    pub fn with_transport_socket(mut self, choice: TransportSocketChoice) -> Self {
        self.transport_socket = choice;
        self
    }

    /// Whether `other` is the same endpoint (a DNS refresh keeps the host,
    /// its stats and its pooled connections).
    pub fn same_endpoint(&self, other: &Host) -> bool {
        self.address == other.address
            && self.weight == other.weight
            && self.transport_socket == other.transport_socket
    }

    /// Whether the host may receive traffic.
    pub fn is_healthy(&self) -> bool {
        matches!(self.health, EdsHealth::Healthy | EdsHealth::Degraded)
    }
}

/// A cluster's hosts at one moment.
#[derive(Debug, Default)]
pub struct HostSet {
    /// Every host, in configuration order.
    pub hosts: Vec<Arc<Host>>,
    /// Healthy hosts per priority (index = priority).
    pub healthy_by_priority: Vec<Vec<Arc<Host>>>,
    /// Increases with every change; pools and LB state use it to notice changes.
    pub version: u64,
}

impl HostSet {
    pub fn new(hosts: Vec<Arc<Host>>, version: u64) -> Self {
        let max_priority = hosts.iter().map(|h| h.priority).max().unwrap_or(0) as usize;
        let mut healthy_by_priority = vec![
            Vec::new();
            if hosts.is_empty() {
                0
            } else {
                max_priority + 1
            }
        ];
        for h in &hosts {
            if h.is_healthy() {
                healthy_by_priority[h.priority as usize].push(h.clone());
            }
        }
        HostSet {
            hosts,
            healthy_by_priority,
            version,
        }
    }

    /// The hosts to balance over: the first priority with a healthy host
    /// (Envoy with all hosts healthy sends everything to the highest priority).
    pub fn routable(&self) -> &[Arc<Host>] {
        self.healthy_by_priority
            .iter()
            .find(|p| !p.is_empty())
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The number of healthy hosts.
    pub fn healthy_count(&self) -> usize {
        self.healthy_by_priority.iter().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(port: u16, priority: u32, health: EdsHealth) -> Arc<Host> {
        Arc::new(Host::new(
            HostAddress::Tcp(SocketAddr::from(([127, 0, 0, 1], port))),
            "h".into(),
            1,
            priority,
            health,
        ))
    }

    #[test]
    fn routable_picks_first_healthy_priority() {
        let set = HostSet::new(
            vec![
                host(1, 0, EdsHealth::Unhealthy),
                host(2, 1, EdsHealth::Healthy),
                host(3, 1, EdsHealth::Healthy),
            ],
            1,
        );
        assert_eq!(set.routable().len(), 2);
        assert_eq!(set.healthy_count(), 2);
        assert!(HostSet::new(vec![], 1).routable().is_empty());
    }
}
