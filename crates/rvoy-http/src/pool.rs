//! Upstream connections and the per-worker connection pools.
//!
//! Each worker keeps its own pools (no locks): HTTP/1 connections are reused
//! one request at a time (LIFO, so idle ones age out), HTTP/2 connections are
//! shared by many streams. Idle HTTP/1 connections are checked before reuse
//! (a peer that closed is dropped, not used) and reclaimed after the cluster's
//! idle timeout; empty pool entries are removed so a pool never grows with the
//! set of hosts ever seen.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use rvoy_model::cluster::{Cluster, TransportSocketChoice};
use rvoy_upstream::host::{Host, HostAddress};
use tokio::net::{TcpSocket, TcpStream, UnixStream};

use crate::io::Stream;

/// Why connecting to a host failed, as Envoy's reset reasons name it.
#[derive(Debug)]
pub enum ConnectError {
    /// `connection failure` (refused, unreachable...), with the OS error.
    Failure(io::Error),
    /// `connection timeout`.
    Timeout,
    /// The TLS handshake failed (a `connection failure` too), with Envoy's
    /// transport failure reason (`TLS_error:|...:TLS_error_end`).
    Tls(String),
}

impl ConnectError {
    /// Envoy's "transport failure reason" text (`delayed connect error: 111`).
    pub fn transport_reason(&self) -> String {
        match self {
            ConnectError::Failure(e) => match e.raw_os_error() {
                Some(code) => format!("delayed connect error: {code}"),
                None => e.to_string(),
            },
            ConnectError::Timeout => String::new(),
            ConnectError::Tls(reason) => reason.clone(),
        }
    }
}

/// Opens a connection to `host` with the cluster's socket settings, and its
/// TLS handshake when the cluster has a TLS transport socket (`alpn`: the
/// protocol offered when the TLS context configures none). The cluster's
/// `connect_timeout` covers both, as in Envoy.
pub async fn connect(
    host: &Host,
    cluster: &rvoy_upstream::cluster::Cluster,
    alpn: rvoy_tls::AlpnFallback,
) -> Result<Stream, ConnectError> {
    let config = &cluster.config;
    let fut = async {
        match (
            &host.address,
            &cluster.transport_socket(host.transport_socket).tls,
        ) {
            (HostAddress::Tcp(addr), None) => connect_tcp(*addr, config)
                .await
                .map(Stream::Tcp)
                .map_err(ConnectError::Failure),
            (HostAddress::Tcp(addr), Some(tls)) => {
                let tcp = connect_tcp(*addr, config)
                    .await
                    .map_err(ConnectError::Failure)?;
                tls.connect(tcp, &host.hostname, addr.ip(), alpn)
                    .await
                    .map(|s| Stream::Tls(Box::new(s)))
                    .map_err(|f| ConnectError::Tls(f.reason))
            }
            (HostAddress::Unix(path), _) => UnixStream::connect(path)
                .await
                .map(Stream::Unix)
                .map_err(ConnectError::Failure),
        }
    };
    match tokio::time::timeout(config.connect_timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(ConnectError::Timeout),
    }
}

async fn connect_tcp(addr: SocketAddr, cluster: &Cluster) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(src) = cluster.source_address {
        socket.bind(src)?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    if let Some(ka) = cluster.tcp_keepalive {
        crate::io::set_tcp_keepalive(&stream, ka)?;
    }
    Ok(stream)
}

/// An HTTP/1 upstream connection and its read buffer.
///
/// Dropping it closes the connection and settles its accounting (cluster
/// and host gauges, circuit breaker, lifetime histogram), wherever that
/// happens: a failed request, a cancelled stream, or pool reclaim.
#[derive(Debug)]
pub struct H1Conn {
    pub stream: Stream,
    pub read_buf: BytesMut,
    pub host: Arc<Host>,
    pub cluster: Arc<rvoy_upstream::cluster::Cluster>,
    /// Requests sent on this connection so far.
    pub requests: u32,
    pub created: Instant,
    /// Whether we (not the peer) decided to close it.
    pub closing_locally: bool,
    /// The upstream announced it closes after the current response.
    pub close_notified: bool,
    /// The last read filled the buffer's spare room (more was waiting).
    pub read_filled: bool,
}

impl Drop for H1Conn {
    fn drop(&mut self) {
        let stats = &self.cluster.stats.traffic;
        stats.upstream_cx_active.dec();
        stats.upstream_cx_destroy.inc();
        if self.closing_locally {
            stats.upstream_cx_destroy_local.inc();
        } else {
            stats.upstream_cx_destroy_remote.inc();
        }
        stats
            .upstream_cx_length_ms
            .record(crate::clock::elapsed(self.created).as_millis() as u64);
        stats.upstream_rq_per_cx.record(u64::from(self.requests));
        rvoy_upstream::host::HostStats::dec(&self.host.stats.cx_active);
        self.cluster.resources(false).connections.release();
    }
}

#[derive(Debug)]
struct Idle {
    conn: H1Conn,
    since: Instant,
}

impl Idle {
    /// Whether its cluster's `idle_timeout` has run out; if so, the
    /// connection is marked as closed by us and counted as Envoy's idle timer
    /// counts it.
    fn expire(&mut self, now: Instant) -> bool {
        let cluster = &self.conn.cluster;
        let expired = cluster
            .config
            .common_http
            .idle_timeout
            .is_some_and(|t| now.duration_since(self.since) >= t);
        if expired {
            self.conn.closing_locally = true;
            cluster.stats.traffic.upstream_cx_idle_timeout.inc();
        }
        expired
    }
}

/// Identifies a pool: one per host of a cluster (endpoints with the same
/// address are hosts of their own, and never share a connection).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolKey {
    pub cluster: Arc<str>,
    pub address: HostAddress,
    pub transport_socket: TransportSocketChoice,
    /// The host itself (where it lives): two hosts of a cluster with the same
    /// address have a pool each, as in Envoy. A pooled connection holds its
    /// host, so the identity is not reused while the pool has connections.
    host: usize,
}

impl PoolKey {
    /// The pool of `host` in `cluster`.
    pub fn new(cluster: &Cluster, host: &Host) -> Self {
        PoolKey {
            cluster: cluster.name.clone(),
            address: host.address.clone(),
            transport_socket: host.transport_socket,
            host: std::ptr::from_ref(host) as usize,
        }
    }
}

impl std::hash::Hash for PoolKey {
    /// The host alone: it tells pools apart (equal keys have the same host),
    /// and hashing a pointer is cheaper than hashing the cluster's name.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.host.hash(state);
    }
}

/// The hasher of the per-worker maps keyed by pointers or pool keys: fast, and
/// enough for keys no client chooses.
pub type FastHash = foldhash::fast::FixedState;

/// A worker's HTTP/1 pools.
#[derive(Debug, Default)]
pub struct H1Pools {
    /// A host's list stays (empty) once its last connection is taken, so the
    /// next `put` does not allocate it again; `reclaim` drops empty lists.
    idle: RefCell<HashMap<PoolKey, Vec<Idle>, FastHash>>,
    /// Read buffers of the connections (idle ones hold none).
    pub read_bufs: crate::buf_pool::UpstreamReadBufs,
}

impl H1Pools {
    /// An idle, still-open connection to the host, if any.
    pub fn take(&self, key: &PoolKey) -> Option<H1Conn> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(key)?;
        let now = crate::clock::now();
        let mut found = None;
        while let Some(mut entry) = list.pop() {
            if entry.expire(now) || entry.conn.stream.is_stale() {
                continue;
            }
            let mut conn = entry.conn;
            if conn.read_buf.capacity() == 0 {
                conn.read_buf = self.read_bufs.take();
            }
            found = Some(conn);
            break;
        }
        found
    }

    /// Returns a connection for reuse.
    pub fn put(&self, key: PoolKey, mut conn: H1Conn) {
        if conn.read_buf.is_empty() {
            // Idle connections keep no buffer memory.
            self.read_bufs.put(std::mem::take(&mut conn.read_buf));
        }
        let idle = Idle {
            conn,
            since: crate::clock::now(),
        };
        let mut pools = self.idle.borrow_mut();
        match pools.get_mut(&key) {
            Some(list) => list.push(idle),
            None => {
                pools.insert(key, vec![idle]);
            }
        }
    }

    /// Closes the idle connections their cluster's `idle_timeout` has run
    /// out on (counted as Envoy's idle timer does), and those the upstream
    /// closed.
    pub fn reclaim(&self) {
        let now = crate::clock::now();
        self.idle.borrow_mut().retain(|_, list| {
            list.retain_mut(|e| !e.expire(now) && !e.conn.stream.is_stale());
            !list.is_empty()
        });
    }

    /// Drops every idle connection to hosts no longer in `alive`.
    pub fn retain_hosts(&self, cluster: &str, alive: &dyn Fn(&HostAddress) -> bool) {
        self.idle
            .borrow_mut()
            .retain(|k, _| &*k.cluster != cluster || alive(&k.address));
    }

    /// The number of idle connections (for tests and `/clusters`).
    pub fn idle_count(&self) -> usize {
        self.idle.borrow().values().map(Vec::len).sum()
    }
}
