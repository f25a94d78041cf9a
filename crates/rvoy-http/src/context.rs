//! The runtime objects requests run against: one [`HttpListenerRuntime`] per
//! HTTP filter chain (shared by workers, part of a config snapshot) and one
//! [`WorkerContext`] per worker thread (pools and balancer state, no locks).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

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
    /// Set when the server is draining: responses get `connection: close`.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
}

/// A cached `date` header, refreshed at most once a second.
#[derive(Debug, Default)]
pub struct DateCache {
    cached: RefCell<Option<(u64, HeaderValue)>>,
}

impl DateCache {
    /// The current HTTP date.
    pub fn now(&self) -> HeaderValue {
        let now = SystemTime::now();
        let secs = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut cached = self.cached.borrow_mut();
        if let Some((s, v)) = &*cached {
            if *s == secs {
                return v.clone();
            }
        }
        let v = HeaderValue::from_str(&httpdate::fmt_http_date(now))
            .unwrap_or_else(|_| HeaderValue::from_static(""));
        *cached = Some((secs, v.clone()));
        v
    }
}

/// One worker's private state.
#[derive(Debug, Default)]
pub struct WorkerContext {
    pub h1_pools: H1Pools,
    pub h2_pools: H2Pools,
    lb: RefCell<HashMap<usize, (Arc<Cluster>, Rc<LbState>)>>,
    pub date: DateCache,
    pub worker_id: usize,
    next_stream_id: Cell<u64>,
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

    /// A worker-local sequence number (for upstream stream ids).
    pub fn next_id(&self) -> u64 {
        let id = self.next_stream_id.get().wrapping_add(1);
        self.next_stream_id.set(id);
        id
    }

    /// Closes idle pooled connections older than `max_idle`.
    pub fn reclaim_idle(&self, max_idle: Duration) {
        self.h1_pools.reclaim(max_idle);
        self.h2_pools.reclaim();
    }
}

/// Process-wide connection ids (Envoy numbers connections globally).
pub fn next_connection_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}
