//! The `envoy.filters.network.tcp_proxy` network filter at run time: pick a
//! cluster (weighted if asked) and a host, connect (plain or TLS, with
//! `max_connect_attempts` and backoff), then relay bytes both ways with
//! half-close semantics as Envoy does: a FIN from one side is passed on as a
//! write shutdown to the other, and the connection ends once both directions
//! ended, on a reset, on the idle timeout or on
//! `max_downstream_connection_duration`. Envoy's `tcp.<stat_prefix>.*`
//! stats, cluster stats and TCP access logs (Envoy's default format when
//! none is given) are recorded.
//!
//! Also owns [`ConnectionInfo`], the connection-level stream info that TCP
//! and listener access logs render.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rvoy_format::{AccessLogType, Address, AddressKind, ResponseFlag, ResponseFlags, StreamInfo};
use rvoy_http::io::Stream;
use rvoy_http::{AccessLogger, WorkerContext};
use rvoy_model::tcp_proxy::TcpProxy;
use rvoy_upstream::cluster::{Cluster, ClusterManager};
use rvoy_upstream::host::{Host, HostAddress, HostStats};
use rvoy_upstream::stats_struct;
use std::cell::Cell;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

stats_struct!(
    /// `tcp.<stat_prefix>.*`.
    TcpProxyStats {
        counters: [
            downstream_cx_drain_close,
            downstream_cx_no_route,
            downstream_cx_overload_close,
            downstream_cx_rx_bytes_total,
            downstream_cx_total,
            downstream_cx_tx_bytes_total,
            downstream_flow_control_paused_reading_total,
            downstream_flow_control_resumed_reading_total,
            early_data_received_count_total,
            idle_timeout,
            max_downstream_connection_duration,
            route_delayed_total,
            upstream_flush_total,
        ],
        gauges: [
            downstream_cx_rx_bytes_buffered,
            downstream_cx_tx_bytes_buffered,
            upstream_flush_active,
        ],
        histograms: [],
    }
);

/// One TCP proxy filter chain at run time.
#[derive(Debug)]
pub struct TcpProxyRuntime {
    pub config: Arc<TcpProxy>,
    pub stats: TcpProxyStats,
    pub clusters: Arc<ClusterManager>,
    pub access_logs: Vec<AccessLogger>,
}

/// What a connection did, for access logs.
#[derive(Debug)]
pub struct ConnectionInfo {
    pub start_time: SystemTime,
    pub start: Instant,
    pub end: Option<Instant>,
    pub connection_id: u64,
    pub downstream_remote: Option<SocketAddr>,
    pub downstream_local: Option<SocketAddr>,
    pub requested_server_name: Option<String>,
    pub filter_chain_name: Option<String>,
    pub listener_name: Option<String>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub response_flags: ResponseFlags,
    pub response_code_details: Option<&'static str>,
    pub upstream_host: Option<Arc<Host>>,
    pub upstream_cluster: Option<Arc<str>>,
    pub upstream_local: Option<SocketAddr>,
    pub upstream_transport_failure_reason: Option<String>,
    pub downstream_transport_failure_reason: Option<String>,
    /// `TcpConnectionEnd` while the TCP proxy logs; `NotSet` for the
    /// listener's access logs, as in Envoy.
    pub access_log_type: AccessLogType,
}

impl ConnectionInfo {
    pub fn new(
        connection_id: u64,
        remote: Option<SocketAddr>,
        local: Option<SocketAddr>,
    ) -> ConnectionInfo {
        ConnectionInfo {
            start_time: rvoy_http::clock::system_now(),
            start: rvoy_http::clock::now(),
            end: None,
            connection_id,
            downstream_remote: remote,
            downstream_local: local,
            requested_server_name: None,
            filter_chain_name: None,
            listener_name: None,
            bytes_received: 0,
            bytes_sent: 0,
            response_flags: ResponseFlags::default(),
            response_code_details: None,
            upstream_host: None,
            upstream_cluster: None,
            upstream_local: None,
            upstream_transport_failure_reason: None,
            downstream_transport_failure_reason: None,
            access_log_type: AccessLogType::NotSet,
        }
    }
}

impl StreamInfo for ConnectionInfo {
    fn access_log_type(&self) -> AccessLogType {
        self.access_log_type
    }

    fn start_time(&self) -> Option<SystemTime> {
        Some(self.start_time)
    }

    fn duration(&self) -> Option<Duration> {
        Some(self.end.map_or_else(
            || rvoy_http::clock::elapsed(self.start),
            |e| e.duration_since(self.start),
        ))
    }

    fn response_code(&self) -> Option<u16> {
        None
    }

    fn response_code_details(&self) -> Option<&str> {
        self.response_code_details
    }

    fn response_flags(&self) -> ResponseFlags {
        self.response_flags
    }

    fn bytes_received(&self) -> u64 {
        self.bytes_received
    }

    fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }

    fn address(&self, kind: AddressKind) -> Option<Address<'_>> {
        match kind {
            AddressKind::DownstreamRemote | AddressKind::DownstreamDirectRemote => {
                self.downstream_remote.map(Address::Ip)
            }
            AddressKind::DownstreamLocal | AddressKind::DownstreamDirectLocal => {
                self.downstream_local.map(Address::Ip)
            }
            AddressKind::UpstreamLocal => self.upstream_local.map(Address::Ip),
            AddressKind::UpstreamRemote | AddressKind::UpstreamHost => {
                self.upstream_host.as_deref().map(|h| match &h.address {
                    HostAddress::Tcp(a) => Address::Ip(*a),
                    HostAddress::Unix(p) => Address::Pipe(p.to_str().unwrap_or("")),
                })
            }
        }
    }

    fn upstream_host_name(&self) -> Option<&str> {
        self.upstream_host
            .as_deref()
            .map(|h| &*h.hostname)
            .filter(|h| !h.is_empty())
    }

    fn connection_id(&self) -> Option<u64> {
        Some(self.connection_id)
    }

    fn upstream_cluster_name(&self) -> Option<&str> {
        self.upstream_cluster.as_deref()
    }

    fn upstream_cluster_observability_name(&self) -> Option<&str> {
        self.upstream_cluster.as_deref()
    }

    fn upstream_transport_failure_reason(&self) -> Option<&str> {
        self.upstream_transport_failure_reason.as_deref()
    }

    fn downstream_transport_failure_reason(&self) -> Option<&str> {
        self.downstream_transport_failure_reason.as_deref()
    }

    fn requested_server_name(&self) -> Option<&str> {
        self.requested_server_name
            .as_deref()
            .filter(|s| !s.is_empty())
    }

    fn filter_chain_name(&self) -> Option<&str> {
        self.filter_chain_name.as_deref().filter(|s| !s.is_empty())
    }

    fn listener_name(&self) -> Option<&str> {
        self.listener_name.as_deref().filter(|s| !s.is_empty())
    }
}

/// Decrements the cluster's and host's connection gauges when the upstream
/// connection ends.
struct UpstreamGuard {
    cluster: Arc<Cluster>,
    host: Arc<Host>,
    created: Instant,
}

impl Drop for UpstreamGuard {
    fn drop(&mut self) {
        let stats = &self.cluster.stats.traffic;
        stats.upstream_cx_active.dec();
        stats.upstream_cx_destroy.inc();
        stats
            .upstream_cx_length_ms
            .record(rvoy_http::clock::elapsed(self.created).as_millis() as u64);
        HostStats::dec(&self.host.stats.cx_active);
        self.cluster.resources(false).connections.release();
    }
}

/// Proxies one downstream connection; `info` is filled for the access logs
/// (the caller writes the listener's, this writes the filter's).
pub async fn serve(
    downstream: Stream,
    rt: &TcpProxyRuntime,
    worker: &Rc<WorkerContext>,
    info: &mut ConnectionInfo,
) {
    rt.stats.downstream_cx_total.inc();
    run(downstream, rt, worker, info).await;
    info.end = Some(rvoy_http::clock::now());
    info.access_log_type = AccessLogType::TcpConnectionEnd;
    rvoy_http::access_log::emit_info(&rt.access_logs, info);
    info.access_log_type = AccessLogType::NotSet;
}

async fn run(
    downstream: Stream,
    rt: &TcpProxyRuntime,
    worker: &Rc<WorkerContext>,
    info: &mut ConnectionInfo,
) {
    let config = &rt.config;
    let name = config.cluster.pick(fastrand::u64(..));
    let Some(cluster) = rt.clusters.get(name).cloned() else {
        rt.stats.downstream_cx_no_route.inc();
        info.response_flags.set(ResponseFlag::NoRouteFound);
        return;
    };
    info.upstream_cluster = Some(cluster.config.name.clone());
    let upstream = match connect(&cluster, worker, config, info).await {
        Some(u) => u,
        None => return,
    };
    let (stream, _guard) = upstream;
    relay(downstream, stream, rt, &cluster, info).await;
}

async fn connect(
    cluster: &Arc<Cluster>,
    worker: &Rc<WorkerContext>,
    config: &TcpProxy,
    info: &mut ConnectionInfo,
) -> Option<(Stream, UpstreamGuard)> {
    let stats = &cluster.stats.traffic;
    let mut tried: Vec<Arc<Host>> = Vec::new();
    for attempt in 0..config.max_connect_attempts {
        if attempt > 0
            && let Some((base, max)) = config.backoff
        {
            let factor = 1u32 << (attempt - 1).min(16);
            let ceiling = base.saturating_mul(factor).min(max);
            let wait = ceiling.mul_f64(fastrand::f64());
            tokio::time::sleep(wait).await;
        }
        let set = cluster.hosts();
        let lb = worker.lb_state(cluster);
        let Some(host) = lb.choose(
            cluster.config.lb_policy,
            &set,
            &|h| tried.iter().any(|t| t.address == h.address),
            attempt,
        ) else {
            stats.upstream_cx_none_healthy.inc();
            info.response_flags.set(ResponseFlag::NoHealthyUpstream);
            return None;
        };
        drop(set);
        info.upstream_host = Some(host.clone());
        let resources = cluster.resources(false);
        if !resources.connections.try_acquire() {
            stats.upstream_cx_overflow.inc();
            info.response_flags.set(ResponseFlag::UpstreamOverflow);
            return None;
        }
        stats.upstream_cx_total.inc();
        HostStats::inc(&host.stats.cx_total);
        let started = rvoy_http::clock::now();
        match rvoy_http::pool::connect(&host, cluster, rvoy_tls::AlpnFallback::None).await {
            Ok(stream) => {
                stats
                    .upstream_cx_connect_ms
                    .record(rvoy_http::clock::elapsed(started).as_millis() as u64);
                stats.upstream_cx_active.inc();
                HostStats::inc(&host.stats.cx_active);
                if let Stream::Tcp(s) = &stream {
                    info.upstream_local = s.local_addr().ok();
                } else if let Stream::Tls(s) = &stream {
                    info.upstream_local = s.tcp().local_addr().ok();
                }
                info.upstream_transport_failure_reason = None;
                return Some((
                    stream,
                    UpstreamGuard {
                        cluster: cluster.clone(),
                        host,
                        created: rvoy_http::clock::now(),
                    },
                ));
            }
            Err(e) => {
                resources.connections.release();
                stats.upstream_cx_connect_fail.inc();
                HostStats::inc(&host.stats.cx_connect_fail);
                if matches!(e, rvoy_http::pool::ConnectError::Timeout) {
                    stats.upstream_cx_connect_timeout.inc();
                }
                let reason = match &e {
                    rvoy_http::pool::ConnectError::Failure(io) => {
                        format!("delayed connect error: {}", describe_os_error(io))
                    }
                    other => other.transport_reason(),
                };
                info.upstream_transport_failure_reason = (!reason.is_empty()).then_some(reason);
                tried.push(host);
            }
        }
    }
    stats.upstream_cx_connect_attempts_exceeded.inc();
    info.response_flags
        .set(ResponseFlag::UpstreamConnectionFailure);
    info.response_flags
        .set(ResponseFlag::UpstreamRetryLimitExceeded);
    None
}

/// The OS error text as Envoy prints it (`Connection refused`).
fn describe_os_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "Connection refused".to_owned(),
        _ => {
            let text = e.to_string();
            match text.find(" (os error") {
                Some(i) => text[..i].to_owned(),
                None => text,
            }
        }
    }
}

/// A stream that counts what is read from it (and notes when).
struct Counted<'a> {
    inner: &'a mut Stream,
    counters: [rvoy_stats::Counter; 2],
    total: &'a Cell<u64>,
    progress: &'a Cell<Instant>,
}

impl AsyncRead for Counted<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut *this.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            this.total.set(this.total.get() + n);
            this.progress.set(rvoy_http::clock::now());
            for c in &this.counters {
                c.add(n);
            }
        }
        r
    }
}

impl AsyncWrite for Counted<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_shutdown(cx)
    }
}

async fn relay(
    mut downstream: Stream,
    mut upstream: Stream,
    rt: &TcpProxyRuntime,
    cluster: &Arc<Cluster>,
    info: &mut ConnectionInfo,
) {
    let progress = Cell::new(rvoy_http::clock::now());
    let received = Cell::new(0u64);
    let sent = Cell::new(0u64);
    let traffic = &cluster.stats.traffic;
    let mut down = Counted {
        inner: &mut downstream,
        counters: [
            rt.stats.downstream_cx_rx_bytes_total,
            traffic.upstream_cx_tx_bytes_total,
        ],
        total: &received,
        progress: &progress,
    };
    let mut up = Counted {
        inner: &mut upstream,
        counters: [
            rt.stats.downstream_cx_tx_bytes_total,
            traffic.upstream_cx_rx_bytes_total,
        ],
        total: &sent,
        progress: &progress,
    };
    // Half-close as Envoy: EOF on one side shuts the other side's write
    // down; the relay ends when both directions ended, or on an error.
    let copy = tokio::io::copy_bidirectional(&mut down, &mut up);
    tokio::pin!(copy);
    let deadline = rt
        .config
        .max_downstream_connection_duration
        .map(|d| info.start + d);
    let idle = rt.config.idle_timeout;
    loop {
        let next_idle = idle.map(|t| progress.get() + t);
        let wake = [next_idle, deadline].into_iter().flatten().min();
        let timer = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut copy => break,
            _ = timer => {
                let now = rvoy_http::clock::now();
                if deadline.is_some_and(|d| d <= now) {
                    rt.stats.max_downstream_connection_duration.inc();
                    info.response_flags.set(ResponseFlag::DurationTimeout);
                    break;
                }
                if idle.is_some_and(|t| progress.get() + t <= now) {
                    rt.stats.idle_timeout.inc();
                    info.response_flags.set(ResponseFlag::StreamIdleTimeout);
                    break;
                }
            }
        }
    }
    info.bytes_received = received.get();
    info.bytes_sent = sent.get();
}

#[cfg(test)]
mod tests {
    use super::describe_os_error;

    #[test]
    fn os_errors_read_as_envoy_prints_them() {
        let e = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(describe_os_error(&e), "Connection refused");
        let e = std::io::Error::from_raw_os_error(113);
        assert_eq!(describe_os_error(&e), "No route to host");
    }
}
