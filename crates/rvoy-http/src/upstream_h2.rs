//! HTTP/2 to upstreams: per-worker multiplexed connections (h2c) and one
//! request/response exchange on them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use h2::client::SendRequest;
use http::{HeaderMap, HeaderValue, StatusCode};
use rvoy_format::ResponseFlag;
use rvoy_upstream::cluster::Cluster;
use rvoy_upstream::host::Host;

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
    conns: RefCell<HashMap<PoolKey, SendRequest<Bytes>>>,
}

impl H2Pools {
    fn get(&self, key: &PoolKey) -> Option<SendRequest<Bytes>> {
        self.conns.borrow().get(key).cloned()
    }

    fn put(&self, key: PoolKey, send: SendRequest<Bytes>) {
        self.conns.borrow_mut().insert(key, send);
    }

    fn remove(&self, key: &PoolKey) {
        self.conns.borrow_mut().remove(key);
    }

    /// Nothing to reclaim eagerly: a closed connection is replaced on next use.
    pub fn reclaim(&self) {}
}

/// The streaming body of an HTTP/2 response.
pub struct H2Response {
    pub body: h2::RecvStream,
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
) -> Result<(PoolKey, SendRequest<Bytes>), AttemptFailure> {
    let key = PoolKey::new(&cluster.config, host);
    if let Some(send) = worker.h2_pools.get(&key) {
        match send.ready().await {
            Ok(send) => return Ok((key, send)),
            Err(_) => worker.h2_pools.remove(&key),
        }
    }
    let stats = &cluster.stats.traffic;
    // No usable connection: the request is pending until a new one is ready.
    let _pending = crate::router::PendingRequest::start(cluster)?;
    stats.upstream_cx_total.inc();
    stats.upstream_cx_http2_total.inc();
    rvoy_upstream::host::HostStats::inc(&host.stats.cx_total);
    info.mark(|t| &mut t.upstream_connect_start);
    let started = Instant::now();
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
        .record(started.elapsed().as_millis() as u64);
    info.mark(|t| &mut t.upstream_connect_complete);
    let h2opts = &cluster.config.http2;
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
    let active = stats.upstream_cx_active;
    let host_for_close = host.clone();
    let destroy = stats.upstream_cx_destroy;
    tokio::task::spawn_local(async move {
        let _ = conn.await;
        active.dec();
        destroy.inc();
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
    worker.h2_pools.put(key.clone(), send.clone());
    Ok((key, send))
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
    let (key, mut send) = connection(worker, cluster, host, info).await?;
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
    let end = body.is_end_stream();
    Ok(UpstreamResponse {
        status: parts.status,
        reason: None,
        headers: parts.headers,
        body: if end {
            UpstreamBody::Empty
        } else {
            UpstreamBody::H2(H2Response { body })
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
