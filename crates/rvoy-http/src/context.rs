//! The runtime objects requests run against: one [`HttpListenerRuntime`] per
//! HTTP filter chain (shared by workers, part of a config snapshot) and one
//! [`WorkerContext`] per worker thread (pools and balancer state, no locks).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::SystemTime;

use http::HeaderValue;
use rvoy_model::access_log::AccessLog;
use rvoy_model::hcm::HttpConnectionManager;
use rvoy_upstream::cluster::{Cluster, ClusterManager};
use rvoy_upstream::lb::LbState;

use crate::pool::H1Pools;
use crate::stats::HcmStats;
use crate::upstream_h2::H2Pools;

/// Where rendered access log lines go (buffered per worker by the server).
pub trait LogSink: Send + Sync + std::fmt::Debug {
    /// Writes one complete line (the format decides its ending).
    fn write_line(&self, line: &[u8]);
}

/// A configured access logger with its sink.
#[derive(Debug, Clone)]
pub struct AccessLogger {
    pub config: Arc<AccessLog>,
    pub sink: Arc<dyn LogSink>,
}

/// Everything a request on one HTTP filter chain needs, for one snapshot.
#[derive(Debug)]
pub struct HttpListenerRuntime {
    pub hcm: Arc<HttpConnectionManager>,
    pub stats: HcmStats,
    pub clusters: Arc<ClusterManager>,
    pub access_logs: Vec<AccessLogger>,
    /// Envoy's "local address" of the machine, for XFF of loopback peers.
    pub machine_address: Option<IpAddr>,
    /// The listener's port, for `strip_matching_host_port`.
    pub listener_port: Option<u16>,
    /// Connection-level access logs of the listener (`Listener.access_log`).
    pub listener_access_logs: Vec<AccessLogger>,
    /// The listener's drain state (`/drain_listeners`).
    pub draining: Arc<Drain>,
    /// The server's health check failure flag (admin `/healthcheck/fail`) on
    /// listeners with `drain_type: DEFAULT`: while it is set, Envoy's drain
    /// manager drain-closes every connection, as when draining.
    pub health_failed: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// The runtimes of the HCM's HTTP filters (before the router), in order.
    pub filters: Vec<crate::filter::FilterRuntime>,
}

impl HttpListenerRuntime {
    /// Whether anything formats a request's stream info once it was sent (its
    /// timing points, the response headers as sent): access logs, local reply
    /// formats, or header values with command operators.
    pub fn formats_stream_info(&self) -> bool {
        !self.access_logs.is_empty()
            || !self.listener_access_logs.is_empty()
            || self.hcm.local_reply.body_format.is_some()
            || !self.hcm.local_reply.mappers.is_empty()
            || self.hcm.route_config.has_formatted_headers()
    }
}

impl HttpListenerRuntime {
    /// Whether responses close their connection (`connection: close`, HTTP/2
    /// GOAWAY): the listener drains or the server fails health checks.
    pub fn drain_close(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        // A server failing health checks drain-closes at once (DEFAULT drain type).
        self.health_failed.as_ref().is_some_and(|f| f.load(Relaxed)) || self.draining.drain_close()
    }
}

/// A listener's drain (Envoy's drain manager for it): once started, responses
/// close their connections (`connection: close`, HTTP/2 GOAWAY) with Envoy's
/// probability over `--drain-time-s` (`gradual`) or at once (`immediate`).
///
/// As in Envoy 1.40, a drain closes no connection by itself: an HTTP/1
/// connection idle between requests (or one that has not sent a byte yet)
/// stays open, also once the drain time is over, and its next response
/// closes it. So nothing waits for a drain to start: connections ask
/// [`drain_close`](Self::drain_close) as each response goes out.
#[derive(Debug, Default)]
pub struct Drain {
    started: std::sync::OnceLock<DrainStart>,
}

#[derive(Debug, Clone, Copy)]
struct DrainStart {
    at: std::time::Instant,
    time: std::time::Duration,
    gradual: bool,
}

impl Drain {
    /// Starts draining (once; later calls change nothing).
    pub fn start(&self, time: std::time::Duration, gradual: bool) {
        let _ = self.started.set(DrainStart {
            at: crate::clock::now(),
            time,
            gradual,
        });
    }

    pub fn is_draining(&self) -> bool {
        self.started.get().is_some()
    }

    /// Envoy's `drainClose()`: whether a connection should close now. With
    /// the gradual strategy the probability grows linearly over the drain time.
    pub fn drain_close(&self) -> bool {
        let Some(s) = self.started.get() else {
            return false;
        };
        if !s.gradual || s.time.is_zero() {
            return true;
        }
        let elapsed = s.at.elapsed();
        if elapsed >= s.time {
            return true;
        }
        // As Envoy: the remaining time in whole seconds (rounded down), so
        // the elapsed count starts at 1 and the probability at 1/drain-time.
        let secs = s.time.as_secs().max(1);
        let remaining = (s.time - elapsed).as_secs();
        secs.saturating_sub(remaining) > fastrand::u64(..) % secs
    }
}

/// A cached `date` header, refreshed at most once a second.
#[derive(Debug, Default)]
pub struct DateCache {
    cached: RefCell<Option<(u64, HeaderValue)>>,
}

impl DateCache {
    /// The current HTTP date.
    pub fn now(&self) -> HeaderValue {
        let now = crate::clock::system_now();
        let secs = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut cached = self.cached.borrow_mut();
        if let Some((s, v)) = &*cached
            && *s == secs
        {
            return v.clone();
        }
        let v = HeaderValue::from_str(&httpdate::fmt_http_date(now))
            .unwrap_or_else(|_| HeaderValue::from_static(""));
        *cached = Some((secs, v.clone()));
        v
    }
}

/// A new head buffer's capacity: most heads fit.
const HEAD_BUF_CAPACITY: usize = 512;
/// Spare head buffers a worker keeps: about its concurrent requests' worth.
const SPARE_HEAD_BUFS: usize = 64;
/// A buffer grown past this (a huge head) is not kept.
const MAX_SPARE_HEAD_BUF: usize = 16 * 1024;

/// A worker's load-balancer state for one cluster, keyed by the cluster's
/// address so a replaced cluster gets fresh state.
type WorkerLb = (Arc<Cluster>, Rc<LbState>);

/// One worker's private state.
#[derive(Debug, Default)]
pub struct WorkerContext {
    pub h1_pools: H1Pools,
    pub h2_pools: H2Pools,
    lb: RefCell<HashMap<usize, WorkerLb, crate::pool::FastHash>>,
    pub date: DateCache,
    /// Reusable timers for the waits of every request.
    pub sleeps: crate::sleep_pool::SleepPool,
    /// Spare buffers for encoding HTTP/1 message heads, kept between requests.
    head_bufs: RefCell<Vec<Vec<u8>>>,
    /// Spare read buffers of downstream HTTP/1 connections.
    pub read_bufs: crate::buf_pool::DownstreamReadBufs,
    pub worker_id: usize,
    next_stream_id: Cell<u64>,
    /// The worker's own shard of the stats store: the request path records
    /// through it ([`rvoy_stats::Recorder`]).
    pub stats: rvoy_stats::Recorder,
}

impl WorkerContext {
    pub fn new(worker_id: usize) -> Self {
        WorkerContext {
            worker_id,
            ..WorkerContext::default()
        }
    }

    /// The balancer state of a cluster on this worker.
    pub fn lb_state(&self, cluster: &Arc<Cluster>) -> Rc<LbState> {
        let key = Arc::as_ptr(cluster) as usize;
        let mut map = self.lb.borrow_mut();
        if let Some((_, s)) = map.get(&key) {
            return s.clone();
        }
        let state = Rc::new(LbState::default());
        map.insert(key, (cluster.clone(), state.clone()));
        state
    }

    /// Drops state of clusters no longer in use (after a config change).
    pub fn forget_clusters(&self, alive: &dyn Fn(&Arc<Cluster>) -> bool) {
        self.lb.borrow_mut().retain(|_, (c, _)| alive(c));
    }

    /// An empty buffer to encode an HTTP/1 message head into: a spare one
    /// when there is one (give it back with [`put_head_buf`](Self::put_head_buf)).
    pub fn take_head_buf(&self) -> Vec<u8> {
        self.head_bufs
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(HEAD_BUF_CAPACITY))
    }

    /// Keeps `buf` for a later [`take_head_buf`](Self::take_head_buf)
    /// (up to [`SPARE_HEAD_BUFS`] of ordinary size; others are dropped).
    pub fn put_head_buf(&self, mut buf: Vec<u8>) {
        let mut spare = self.head_bufs.borrow_mut();
        if spare.len() < SPARE_HEAD_BUFS && buf.capacity() <= MAX_SPARE_HEAD_BUF {
            buf.clear();
            spare.push(buf);
        }
    }

    /// A worker-local sequence number (for upstream stream ids).
    pub fn next_id(&self) -> u64 {
        let id = self.next_stream_id.get().wrapping_add(1);
        self.next_stream_id.set(id);
        id
    }

    /// Closes the pooled connections idle for their cluster's idle timeout.
    pub fn reclaim_idle(&self) {
        self.h1_pools.reclaim();
        self.h2_pools.reclaim();
    }
}

/// Process-wide connection ids (Envoy numbers connections globally).
pub fn next_connection_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}
