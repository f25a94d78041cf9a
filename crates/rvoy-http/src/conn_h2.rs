//! A downstream HTTP/2 connection (h2c with prior knowledge): each stream is a
//! request run on the worker, with the HTTP/2 settings of
//! `http2_protocol_options` and GOAWAY when the listener drains.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use h2::RecvStream;
use h2::server::SendResponse;
use http::{HeaderMap, StatusCode};

use crate::context::{HttpListenerRuntime, WorkerContext};
use crate::downstream::{Downstream, DownstreamError, Protocol};
use crate::io::Rewind;
use crate::stream::{self, ConnInfo, Request};
use crate::upstream_h2::send_all;

/// The HTTP/2 connection preface.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Serves one HTTP/2 connection until it closes.
pub async fn serve(
    io: Rewind,
    rt: Arc<HttpListenerRuntime>,
    worker: Rc<WorkerContext>,
    conn: ConnInfo,
) {
    let stats = &rt.stats.hcm;
    stats.downstream_cx_total.inc();
    stats.downstream_cx_http2_total.inc();
    stats.downstream_cx_active.inc();
    stats.downstream_cx_http2_active.inc();
    let opened = Instant::now();
    let h2opts = &rt.hcm.http2;
    let handshake = h2::server::Builder::new()
        .initial_window_size(h2opts.initial_stream_window_size)
        .initial_connection_window_size(h2opts.initial_connection_window_size)
        .max_concurrent_streams(h2opts.max_concurrent_streams)
        .header_table_size(h2opts.hpack_table_size)
        .max_pending_accept_reset_streams(100)
        .handshake::<_, Bytes>(io)
        .await;
    let mut connection = match handshake {
        Ok(c) => c,
        Err(_) => {
            stats.downstream_cx_protocol_error.inc();
            finish(&rt, opened);
            return;
        }
    };
    let idle = rt.hcm.common.idle_timeout;
    loop {
        let next = match idle {
            Some(t) => match tokio::time::timeout(t, connection.accept()).await {
                Ok(n) => n,
                Err(_) => {
                    stats.downstream_cx_idle_timeout.inc();
                    connection.graceful_shutdown();
                    let _ = tokio::time::timeout(
                        std::time::Duration::from_secs(1),
                        std::future::poll_fn(|cx| connection.poll_closed(cx)),
                    )
                    .await;
                    break;
                }
            },
            None => connection.accept().await,
        };
        match next {
            Some(Ok((request, respond))) => {
                let stream_rt = rt.clone();
                let stream_worker = worker.clone();
                tokio::task::spawn_local(async move {
                    serve_stream(request, respond, stream_rt, stream_worker, conn).await;
                });
                if rt.draining.load(std::sync::atomic::Ordering::Relaxed) {
                    stats.downstream_cx_drain_close.inc();
                    connection.graceful_shutdown();
                }
            }
            Some(Err(e)) => {
                if e.is_go_away() || e.reason() == Some(h2::Reason::PROTOCOL_ERROR) {
                    stats.downstream_cx_protocol_error.inc();
                }
                break;
            }
            None => break,
        }
    }
    finish(&rt, opened);
}

fn finish(rt: &HttpListenerRuntime, opened: Instant) {
    let stats = &rt.stats.hcm;
    stats.downstream_cx_active.dec();
    stats.downstream_cx_http2_active.dec();
    stats.downstream_cx_destroy.inc();
    stats
        .downstream_cx_length_ms
        .record(opened.elapsed().as_millis() as u64);
}

async fn serve_stream(
    request: http::Request<RecvStream>,
    respond: SendResponse<Bytes>,
    rt: Arc<HttpListenerRuntime>,
    worker: Rc<WorkerContext>,
    conn: ConnInfo,
) {
    let (parts, body) = request.into_parts();
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            parts
                .headers
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        });
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".to_owned());
    let mut headers = parts.headers;
    headers.remove(http::header::HOST);
    let head_bytes = rvoy_format::header_map_bytes(&headers);
    // Envoy's HTTP/2 codec resets streams whose headers are over the limits.
    let limit = u64::from(rt.hcm.max_request_headers_kb) * 1024;
    if head_bytes + path.len() as u64 > limit
        || headers.len() > rt.hcm.common.max_headers_count as usize
    {
        rt.stats.hcm.downstream_rq_total.inc();
        rt.stats.hcm.downstream_rq_rx_reset.inc();
        let mut respond = respond;
        respond.send_reset(h2::Reason::PROTOCOL_ERROR);
        return;
    }
    let has_body = !body.is_end_stream();
    let request = Request {
        method: parts.method,
        path,
        authority,
        scheme: parts.uri.scheme_str().map(str::to_owned),
        expect_continue: headers
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue")),
        headers,
        protocol: Protocol::Http2,
        has_body,
        head_bytes,
    };
    let mut ds = H2Downstream {
        recv: body,
        respond,
        send: None,
        trailers: None,
        done: !has_body,
        sent: 0,
        received: 0,
    };
    let outcome = stream::handle(&mut ds, request, &rt, &worker, &conn).await;
    if outcome.reset {
        if let Some(s) = ds.send.as_mut() {
            s.send_reset(h2::Reason::INTERNAL_ERROR);
        } else {
            ds.respond.send_reset(h2::Reason::INTERNAL_ERROR);
        }
    }
}

/// The downstream side of one HTTP/2 stream.
pub struct H2Downstream {
    recv: RecvStream,
    respond: SendResponse<Bytes>,
    send: Option<h2::SendStream<Bytes>>,
    trailers: Option<HeaderMap>,
    done: bool,
    sent: u64,
    received: u64,
}

impl Downstream for H2Downstream {
    fn protocol(&self) -> Protocol {
        Protocol::Http2
    }

    async fn read_body(&mut self) -> Result<Option<Bytes>, DownstreamError> {
        if self.done {
            return Ok(None);
        }
        match self.recv.data().await {
            Some(Ok(chunk)) => {
                let _ = self.recv.flow_control().release_capacity(chunk.len());
                self.received += chunk.len() as u64;
                Ok(Some(chunk))
            }
            Some(Err(_)) => Err(DownstreamError::Reset),
            None => {
                self.done = true;
                if let Ok(Some(t)) = self.recv.trailers().await {
                    self.trailers = Some(t);
                }
                Ok(None)
            }
        }
    }

    fn body_complete(&self) -> bool {
        self.done
    }

    fn take_trailers(&mut self) -> Option<HeaderMap> {
        self.trailers.take()
    }

    async fn send_continue(&mut self) -> Result<(), DownstreamError> {
        // HTTP/2 clients get the interim 100 as a headers frame.
        let resp = http::Response::builder()
            .status(StatusCode::CONTINUE)
            .body(())
            .map_err(|_| DownstreamError::Reset)?;
        self.respond
            .send_informational(resp)
            .map_err(|_| DownstreamError::Reset)
    }

    async fn send_head(
        &mut self,
        status: StatusCode,
        _reason: Option<&[u8]>,
        headers: &mut HeaderMap,
        end_stream: bool,
    ) -> Result<(), DownstreamError> {
        for h in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "transfer-encoding",
            "upgrade",
        ] {
            headers.remove(h);
        }
        let mut resp = http::Response::new(());
        *resp.status_mut() = status;
        *resp.headers_mut() = headers.clone();
        let send = self
            .respond
            .send_response(resp, end_stream)
            .map_err(|_| DownstreamError::Reset)?;
        self.send = Some(send);
        Ok(())
    }

    async fn send_data(&mut self, data: Bytes, end_stream: bool) -> Result<(), DownstreamError> {
        let Some(send) = self.send.as_mut() else {
            return Err(DownstreamError::Reset);
        };
        self.sent += data.len() as u64;
        send_all(send, data, end_stream)
            .await
            .map_err(|_| DownstreamError::Reset)
    }

    async fn send_trailers(&mut self, trailers: HeaderMap) -> Result<(), DownstreamError> {
        let Some(send) = self.send.as_mut() else {
            return Err(DownstreamError::Reset);
        };
        send.send_trailers(trailers)
            .map_err(|_| DownstreamError::Reset)
    }

    fn bytes_sent(&self) -> u64 {
        self.sent
    }

    fn bytes_received(&self) -> u64 {
        self.received
    }
}
