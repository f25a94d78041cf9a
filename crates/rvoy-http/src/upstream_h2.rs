//! HTTP/2 to upstreams: per-worker multiplexed connections (h2c) and one
//! request/response exchange on them.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::SendRequest;
use http::{HeaderMap, HeaderValue, StatusCode};
use rvoy_format::ResponseFlag;
use rvoy_upstream::cluster::Cluster;
use rvoy_upstream::host::Host;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::context::{HttpListenerRuntime, WorkerContext};
use crate::downstream::{Downstream, Protocol};
use crate::pool::{self, PoolKey};
use crate::request_info::RequestInfo;
use crate::router::{AttemptFailure, UpstreamBody, UpstreamResponse};
use crate::stream::{Request, StreamOutcome};

/// The reset reason of an upstream `RST_STREAM(REFUSED_STREAM)`: retriable
/// under `retry_on: refused-stream`.
pub(crate) const REFUSED_STREAM_RESET: &str = "remote refused stream reset";

/// Envoy's response flag and details for an upstream reset before the
/// response started (`streamResetReasonToResponseFlag`).
pub(crate) fn reset_flag_and_details(reason: &str) -> (ResponseFlag, &'static str) {
    match reason {
        "remote reset" => (
            ResponseFlag::UpstreamRemoteReset,
            "upstream_reset_before_response_started{remote_reset}",
        ),
        REFUSED_STREAM_RESET => (
            ResponseFlag::UpstreamRemoteReset,
            "upstream_reset_before_response_started{remote_refused_stream_reset}",
        ),
        "protocol error" => (
            ResponseFlag::UpstreamProtocolError,
            "upstream_reset_before_response_started{protocol_error}",
        ),
        "local reset" => (
            ResponseFlag::LocalReset,
            "upstream_reset_before_response_started{local_reset}",
        ),
        _ => (
            ResponseFlag::UpstreamConnectionTermination,
            "upstream_reset_before_response_started{connection_termination}",
        ),
    }
}

/// A worker's HTTP/2 upstream connections, one per cluster and host.
#[derive(Debug, Default)]
pub struct H2Pools {
    conns: RefCell<HashMap<PoolKey, PooledH2, pool::FastHash>>,
}

/// One pooled connection: its handle and how it is used.
#[derive(Debug)]
struct PooledH2 {
    send: SendRequest<Bytes>,
    usage: Rc<H2Usage>,
    /// The cluster's `common_http_protocol_options.idle_timeout`.
    idle_timeout: Option<Duration>,
    idle_timeouts: rvoy_stats::Counter,
}

/// Streams open on a connection, requests sent on it, and since when it
/// has had no stream.
#[derive(Debug)]
struct H2Usage {
    active: Cell<u32>,
    requests: Cell<u32>,
    idle_since: Cell<Instant>,
}

/// One stream open on a pooled connection; the connection is idle again
/// when the last one is dropped.
#[derive(Debug)]
pub struct ActiveStream(Rc<H2Usage>);

impl Drop for ActiveStream {
    fn drop(&mut self) {
        let active = self.0.active.get().saturating_sub(1);
        self.0.active.set(active);
        if active == 0 {
            self.0.idle_since.set(crate::clock::now());
        }
    }
}

impl PooledH2 {
    /// Idle for at least the cluster's idle timeout.
    fn expired(&self, now: Instant) -> bool {
        self.usage.active.get() == 0
            && self
                .idle_timeout
                .is_some_and(|t| now.duration_since(self.usage.idle_since.get()) >= t)
    }
}

impl H2Pools {
    /// The pooled connection to `key`, unless it has been idle for the
    /// cluster's idle timeout (then it is closed, as Envoy's timer does).
    fn get(&self, key: &PoolKey) -> Option<(SendRequest<Bytes>, Rc<H2Usage>)> {
        let mut conns = self.conns.borrow_mut();
        let pooled = conns.get(key)?;
        if pooled.expired(crate::clock::now()) {
            pooled.idle_timeouts.inc();
            conns.remove(key);
            return None;
        }
        Some((pooled.send.clone(), pooled.usage.clone()))
    }

    fn put(&self, key: PoolKey, send: SendRequest<Bytes>, cluster: &Cluster) -> Rc<H2Usage> {
        let usage = Rc::new(H2Usage {
            active: Cell::new(0),
            requests: Cell::new(0),
            idle_since: Cell::new(crate::clock::now()),
        });
        self.conns.borrow_mut().insert(
            key,
            PooledH2 {
                send,
                usage: usage.clone(),
                idle_timeout: cluster.config.common_http.idle_timeout,
                idle_timeouts: cluster.stats.traffic.upstream_cx_idle_timeout,
            },
        );
        usage
    }

    fn remove(&self, key: &PoolKey) {
        self.conns.borrow_mut().remove(key);
    }

    /// Closes the connections idle for their cluster's idle timeout: once
    /// out of the pool, a connection without streams sends GOAWAY and closes.
    pub fn reclaim(&self) {
        let now = crate::clock::now();
        self.conns.borrow_mut().retain(|_, pooled| {
            let expired = pooled.expired(now);
            if expired {
                pooled.idle_timeouts.inc();
            }
            !expired
        });
    }

    /// Starts a stream on the connection to `key`: counts the request, and
    /// takes the connection out of the pool once it has carried the
    /// cluster's `max_requests_per_connection` (it closes when its streams
    /// end).
    fn start_stream(&self, key: &PoolKey, usage: &Rc<H2Usage>, cluster: &Cluster) -> ActiveStream {
        usage.active.set(usage.active.get() + 1);
        let requests = usage.requests.get() + 1;
        usage.requests.set(requests);
        if cluster
            .config
            .common_http
            .max_requests_per_connection
            .is_some_and(|max| requests >= max)
        {
            cluster.stats.traffic.upstream_cx_max_requests.inc();
            let mut conns = self.conns.borrow_mut();
            if conns.get(key).is_some_and(|p| Rc::ptr_eq(&p.usage, usage)) {
                conns.remove(key);
            }
        }
        ActiveStream(usage.clone())
    }
}

/// Which side closed an upstream connection first (Envoy's
/// `upstream_cx_destroy_local` and `_remote`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Closer {
    Local,
    Remote,
}

/// An upstream socket that notes whether the peer's end of stream (or a
/// read error) or rvoy's shutdown came first.
struct CloseTracking {
    stream: crate::io::Stream,
    closer: Rc<Cell<Option<Closer>>>,
}

impl CloseTracking {
    fn saw(&self, who: Closer) {
        if self.closer.get().is_none() {
            self.closer.set(Some(who));
        }
    }
}

impl AsyncRead for CloseTracking {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let room = buf.remaining();
        let result = Pin::new(&mut self.stream).poll_read(cx, buf);
        match &result {
            Poll::Ready(Ok(())) if room > 0 && buf.filled().len() == before => {
                self.saw(Closer::Remote);
            }
            Poll::Ready(Err(_)) => self.saw(Closer::Remote),
            _ => {}
        }
        result
    }
}

impl AsyncWrite for CloseTracking {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.saw(Closer::Local);
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The streaming body of an HTTP/2 response.
pub struct H2Response {
    pub body: h2::RecvStream,
    /// Keeps the connection busy until the body is done.
    pub stream: ActiveStream,
}

/// Connection-specific headers HTTP/2 forbids.
fn strip_connection_headers(headers: &mut HeaderMap) {
    for h in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "host",
    ] {
        headers.remove(h);
    }
    if let Some(te) = headers.get(http::header::TE)
        && !te.as_bytes().eq_ignore_ascii_case(b"trailers")
    {
        headers.remove(http::header::TE);
    }
}

async fn connection(
    worker: &WorkerContext,
    cluster: &Cluster,
    host: &Arc<Host>,
    info: &mut RequestInfo,
) -> Result<(PoolKey, SendRequest<Bytes>, Rc<H2Usage>), AttemptFailure> {
    let key = PoolKey::new(&cluster.config, host);
    if let Some((send, usage)) = worker.h2_pools.get(&key) {
        match send.ready().await {
            Ok(send) => return Ok((key, send, usage)),
            Err(_) => worker.h2_pools.remove(&key),
        }
    }
    let stats = &cluster.stats.traffic;
    // No usable connection: the request is pending until a new one is ready.
    let _pending = crate::router::PendingRequest::start(cluster, &worker.stats)?;
    stats.upstream_cx_total.inc();
    stats.upstream_cx_http2_total.inc();
    rvoy_upstream::host::HostStats::inc(&host.stats.cx_total);
    info.mark(|t| &mut t.upstream_connect_start);
    let started = crate::clock::now();
    let stream = match pool::connect(host, cluster, rvoy_tls::AlpnFallback::Http2).await {
        Ok(s) => s,
        Err(e) => {
            stats.upstream_cx_connect_fail.inc();
            rvoy_upstream::host::HostStats::inc(&host.stats.cx_connect_fail);
            rvoy_upstream::host::HostStats::inc(&host.stats.rq_error);
            let timeout = matches!(e, pool::ConnectError::Timeout);
            return Err(AttemptFailure::Connect {
                reason: e.transport_reason(),
                timeout,
            });
        }
    };
    stats
        .upstream_cx_connect_ms
        .record(crate::clock::elapsed(started).as_millis() as u64);
    info.mark(|t| &mut t.upstream_connect_complete);
    let h2opts = &cluster.config.http2;
    let closer = Rc::new(Cell::new(None));
    let stream = CloseTracking {
        stream,
        closer: closer.clone(),
    };
    let handshake = h2::client::Builder::new()
        .initial_window_size(h2opts.initial_stream_window_size)
        .initial_connection_window_size(h2opts.initial_connection_window_size)
        .header_table_size(h2opts.hpack_table_size)
        .handshake::<_, Bytes>(stream)
        .await;
    let (send, conn) = match handshake {
        Ok(pair) => pair,
        Err(_) => {
            stats.upstream_cx_protocol_error.inc();
            return Err(AttemptFailure::Reset {
                reason: "protocol error",
            });
        }
    };
    stats.upstream_cx_active.inc();
    rvoy_upstream::host::HostStats::inc(&host.stats.cx_active);
    let host_for_close = host.clone();
    let (active, destroy) = (stats.upstream_cx_active, stats.upstream_cx_destroy);
    let (destroy_local, destroy_remote) = (
        stats.upstream_cx_destroy_local,
        stats.upstream_cx_destroy_remote,
    );
    tokio::task::spawn_local(async move {
        let _ = conn.await;
        active.dec();
        destroy.inc();
        if closer.get() == Some(Closer::Local) {
            destroy_local.inc();
        } else {
            destroy_remote.inc();
        }
        rvoy_upstream::host::HostStats::dec(&host_for_close.stats.cx_active);
    });
    let send = match send.ready().await {
        Ok(s) => s,
        Err(_) => {
            return Err(AttemptFailure::Reset {
                reason: "connection termination",
            });
        }
    };
    let usage = worker.h2_pools.put(key.clone(), send.clone(), cluster);
    Ok((key, send, usage))
}

/// Sends all of `data`, respecting flow control.
pub async fn send_all(
    stream: &mut h2::SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
) -> Result<(), h2::Error> {
    if data.is_empty() {
        return stream.send_data(data, end);
    }
    while !data.is_empty() {
        stream.reserve_capacity(data.len());
        let cap = match std::future::poll_fn(|cx| stream.poll_capacity(cx)).await {
            Some(Ok(c)) => c,
            Some(Err(e)) => return Err(e),
            None => return Err(h2::Error::from(h2::Reason::CANCEL)),
        };
        if cap == 0 {
            continue;
        }
        let chunk = data.split_to(cap.min(data.len()));
        stream.send_data(chunk, end && data.is_empty())?;
    }
    Ok(())
}

/// One request/response exchange over HTTP/2.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn exchange<D: Downstream>(
    ds: &mut D,
    req: &Request,
    info: &mut RequestInfo,
    _rt: &HttpListenerRuntime,
    worker: &WorkerContext,
    cluster: &Arc<Cluster>,
    host: &Arc<Host>,
    headers: &HeaderMap,
    path: &str,
    authority: &str,
    body: Option<Bytes>,
    mut prefix: Option<Bytes>,
    trailers: Option<HeaderMap>,
) -> Result<UpstreamResponse, AttemptFailure> {
    let (key, mut send, usage) = connection(worker, cluster, host, info).await?;
    rvoy_upstream::host::HostStats::inc(&host.stats.rq_total);
    let uri = format!("http://{authority}{path}");
    let mut builder = http::Request::builder()
        .method(req.method.clone())
        .uri(uri)
        .version(http::Version::HTTP_2);
    if let Some(h) = builder.headers_mut() {
        *h = headers.clone();
        strip_connection_headers(h);
    }
    let request = builder.body(()).map_err(|_| AttemptFailure::Reset {
        reason: "protocol error",
    })?;
    let end_on_headers = matches!(&body, Some(b) if b.is_empty()) && trailers.is_none();
    info.mark(|t| &mut t.first_upstream_tx);
    let active = worker.h2_pools.start_stream(&key, &usage, cluster);
    let (response, mut stream) = match send.send_request(request, end_on_headers) {
        Ok(pair) => pair,
        Err(_) => {
            worker.h2_pools.remove(&key);
            return Err(AttemptFailure::Reset {
                reason: "connection termination",
            });
        }
    };
    if !end_on_headers {
        match body {
            Some(b) => {
                if send_all(&mut stream, b, trailers.is_none()).await.is_err() {
                    return Err(AttemptFailure::Reset {
                        reason: "connection termination",
                    });
                }
                if let Some(t) = trailers {
                    let _ = stream.send_trailers(t);
                }
            }
            None => loop {
                let chunk = match prefix.take() {
                    Some(p) => Ok(Some(p)),
                    None => ds.read_body().await,
                };
                match chunk {
                    Ok(Some(chunk)) => {
                        if send_all(&mut stream, chunk, false).await.is_err() {
                            return Err(AttemptFailure::Reset {
                                reason: "connection termination",
                            });
                        }
                    }
                    Ok(None) => {
                        match ds.take_trailers() {
                            Some(t) => {
                                let _ = stream.send_trailers(t);
                            }
                            None => {
                                let _ = stream.send_data(Bytes::new(), true);
                            }
                        }
                        break;
                    }
                    Err(_) => {
                        stream.send_reset(h2::Reason::CANCEL);
                        return Err(AttemptFailure::Downstream);
                    }
                }
            },
        }
    }
    info.mark(|t| &mut t.last_upstream_tx);
    let response = tokio::select! {
        biased;
        r = response => r,
        _ = ds.closed() => {
            stream.send_reset(h2::Reason::CANCEL);
            return Err(AttemptFailure::Downstream);
        }
    };
    let resp = match response {
        Ok(r) => r,
        Err(e) => {
            let reason = match e.reason() {
                Some(h2::Reason::REFUSED_STREAM) if e.is_remote() => REFUSED_STREAM_RESET,
                Some(_) if e.is_reset() && e.is_remote() => "remote reset",
                Some(h2::Reason::PROTOCOL_ERROR) if !e.is_remote() => "protocol error",
                _ => "connection termination",
            };
            if e.is_go_away() || e.is_io() {
                worker.h2_pools.remove(&key);
            }
            return Err(AttemptFailure::Reset { reason });
        }
    };
    info.mark(|t| &mut t.first_upstream_rx);
    info.upstream_protocol = Some(Protocol::Http2);
    let (parts, body) = resp.into_parts();
    // Envoy's limit counts `:status` with the headers.
    if parts.headers.len() + 1 > cluster.config.common_http.max_headers_count as usize {
        stream.send_reset(h2::Reason::PROTOCOL_ERROR);
        return Err(AttemptFailure::Reset {
            reason: "protocol error",
        });
    }
    let end = body.is_end_stream();
    Ok(UpstreamResponse {
        status: parts.status,
        reason: None,
        headers: parts.headers,
        body: if end {
            UpstreamBody::Empty
        } else {
            UpstreamBody::H2(H2Response {
                body,
                stream: active,
            })
        },
    })
}

/// Streams an HTTP/2 response body (and trailers) downstream.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn relay_response<D: Downstream>(
    ds: &mut D,
    mut resp: H2Response,
    status: StatusCode,
    reason: Option<&[u8]>,
    mut headers: HeaderMap,
    info: &mut RequestInfo,
    cluster: &Arc<Cluster>,
    deadline: crate::router::ResponseDeadline,
) -> StreamOutcome {
    let stats = &cluster.stats.traffic;
    ds.encode_headers(status, &mut headers, false, info);
    if ds
        .send_head(status, reason, &mut headers, false)
        .await
        .is_err()
    {
        info.response_headers = Some(headers);
        return StreamOutcome {
            close: true,
            reset: true,
            redirected: false,
        };
    }
    info.response_headers = Some(headers);
    loop {
        let read = match tokio::select! {
            biased;
            r = deadline.read(resp.body.data()) => r,
            _ = ds.closed() => {
                info.downstream_disconnected();
                return StreamOutcome {
                    close: true,
                    reset: true, redirected: false };
            }
        } {
            Ok(r) => r,
            Err(kind) => {
                crate::router::ResponseDeadline::on_timeout(kind, info, cluster);
                return StreamOutcome {
                    close: true,
                    reset: true,
                    redirected: false,
                };
            }
        };
        match read {
            Some(Ok(chunk)) => {
                let _ = resp.body.flow_control().release_capacity(chunk.len());
                stats.upstream_cx_rx_bytes_total.add(chunk.len() as u64);
                if ds.send_data(chunk, false).await.is_err() {
                    info.downstream_disconnected();
                    return StreamOutcome {
                        close: true,
                        reset: true,
                        redirected: false,
                    };
                }
            }
            Some(Err(_)) => {
                info.set_flag(ResponseFlag::UpstreamConnectionTermination);
                stats.upstream_rq_rx_reset.inc();
                return StreamOutcome {
                    close: true,
                    reset: true,
                    redirected: false,
                };
            }
            None => break,
        }
    }
    let done = match resp.body.trailers().await {
        Ok(Some(t)) => {
            info.response_trailers = Some(t.clone());
            ds.send_trailers(t).await
        }
        _ => ds.send_data(Bytes::new(), true).await,
    };
    info.mark(|t| &mut t.last_upstream_rx);
    info.mark(|t| &mut t.last_downstream_tx);
    stats.upstream_rq_completed.inc();
    if done.is_err() {
        return StreamOutcome {
            close: true,
            reset: true,
            redirected: false,
        };
    }
    let _ = HeaderValue::from_static("");
    StreamOutcome::default()
}
