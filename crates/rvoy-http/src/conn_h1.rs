//! A downstream HTTP/1 connection: reads request heads (with Envoy's limits and
//! timeouts), hands each request to the connection manager, keeps the
//! connection alive between requests without holding buffer memory, answers
//! codec errors as Envoy does, and closes with Envoy's delayed close.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use http::{HeaderMap, HeaderValue, StatusCode};
use rvoy_format::ResponseFlag;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::context::{HttpListenerRuntime, WorkerContext};
use crate::downstream::{Downstream, H1Downstream, Protocol};
use crate::h1::parse::{self, HeadError, HeadLimits};
use crate::io::Stream;
use crate::local_reply::{self, LocalReply};
use crate::request_info::RequestInfo;
use crate::stream::{self, ConnInfo, Request};

/// Why reading the next request head stopped.
enum HeadRead {
    Head(parse::RequestHead),
    /// The client closed (or the idle timeout fired) between requests.
    Closed,
    IdleTimeout,
    HeaderTimeout,
    /// `max_connection_duration` passed while the connection was idle.
    MaxDuration,
    /// The drain sequence (after the idle timeout or the maximum duration)
    /// ended with no new request.
    DrainTimeout,
    /// The listener drains: this idle connection's turn to close came.
    ListenerDrain,
    Error(HeadError),
}

/// Serves one HTTP/1 connection until it closes.
pub async fn serve(
    mut stream: Stream,
    mut buf: BytesMut,
    rt: Arc<HttpListenerRuntime>,
    worker: Rc<WorkerContext>,
    conn: ConnInfo,
) {
    let stats = &rt.stats.hcm;
    stats.downstream_cx_total.inc();
    stats.downstream_cx_http1_total.inc();
    stats.downstream_cx_active.inc();
    stats.downstream_cx_http1_active.inc();
    let opened = Instant::now();
    let hcm = rt.hcm.clone();
    let limits = HeadLimits {
        max_head_bytes: hcm.max_request_headers_kb as usize * 1024,
        max_headers: hcm.common.max_headers_count as usize,
    };
    let mut served: u32 = 0;
    let mut local_close = true;
    let max_duration_at = hcm.common.max_connection_duration.map(|d| opened + d);
    // Envoy's drain sequence on an HTTP/1 connection (after its idle timeout
    // or maximum duration): requests arriving within `drain_timeout` are
    // served with `connection: close`, then the connection closes.
    let mut drain_until: Option<Instant> = None;
    loop {
        let read = read_head(
            &mut stream,
            &mut buf,
            limits,
            &hcm,
            max_duration_at,
            drain_until,
            &rt.draining,
        )
        .await;
        let head = match read {
            HeadRead::Head(h) => h,
            HeadRead::Closed => {
                local_close = false;
                break;
            }
            HeadRead::IdleTimeout | HeadRead::MaxDuration => {
                if matches!(read, HeadRead::IdleTimeout) {
                    stats.downstream_cx_idle_timeout.inc();
                } else {
                    stats.downstream_cx_max_duration_reached.inc();
                }
                if served == 0 {
                    // No codec yet: Envoy closes at once.
                    break;
                }
                drain_until = Some(Instant::now() + hcm.drain_timeout);
                continue;
            }
            HeadRead::DrainTimeout => {
                delayed_close(&mut stream, hcm.delayed_close_timeout).await;
                break;
            }
            HeadRead::ListenerDrain => {
                stats.downstream_cx_drain_close.inc();
                break;
            }
            HeadRead::HeaderTimeout => {
                stats.downstream_rq_header_timeout.inc();
                break;
            }
            HeadRead::Error(e) => {
                stats.downstream_cx_protocol_error.inc();
                codec_error_reply(&mut stream, e, &rt, &worker, &conn).await;
                delayed_close(&mut stream, hcm.delayed_close_timeout).await;
                break;
            }
        };
        buf.advance(head.head_len);
        let protocol = if head.version == http::Version::HTTP_10 {
            Protocol::Http10
        } else {
            Protocol::Http11
        };
        let authority = head
            .headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let request = Request {
            method: head.method.clone(),
            path: head.target.clone(),
            authority,
            scheme: None,
            headers: head.headers,
            protocol,
            expect_continue: head.expect_continue,
            has_body: head.framing != parse::BodyFraming::Empty,
            head_bytes: head.head_len as u64,
            replay_body: None,
            internal_redirects: 0,
        };
        served += 1;
        let max_reached = hcm
            .common
            .max_requests_per_connection
            .is_some_and(|m| served >= m);
        let draining = rt.drain_close();
        let mut ds = H1Downstream::new(
            &mut stream,
            &mut buf,
            head.framing,
            head.version,
            &head.method,
            hcm.http1.proper_case_headers,
        );
        ds.close_after = head.close || max_reached || draining || drain_until.is_some();
        ds.drain_at = max_duration_at;
        let closing_before = ds.close_after;
        let outcome = stream::handle(&mut ds, request, &rt, &worker, &conn).await;
        let close = outcome.close || ds.close_after || ds.close_delimited;
        if ds.close_after
            && !closing_before
            && max_duration_at.is_some_and(|at| at <= Instant::now())
        {
            stats.downstream_cx_max_duration_reached.inc();
        }
        let body_pending = !ds.body_complete();
        let peer_closed = ds.peer_closed;
        drop(ds);
        if outcome.reset {
            stats.downstream_cx_destroy_active_rq.inc();
            if peer_closed {
                stats.downstream_cx_destroy_remote_active_rq.inc();
                local_close = false;
            } else {
                stats.downstream_cx_destroy_local_active_rq.inc();
            }
            break;
        }
        if max_reached {
            stats.downstream_cx_max_requests_reached.inc();
        }
        if draining {
            stats.downstream_cx_drain_close.inc();
        }
        if close || body_pending {
            let _ = stream.flush().await;
            delayed_close(&mut stream, hcm.delayed_close_timeout).await;
            break;
        }
        if buf.is_empty() {
            // Keep no buffer memory while idle.
            buf = BytesMut::new();
        }
    }
    stats.downstream_cx_active.dec();
    stats.downstream_cx_http1_active.dec();
    stats.downstream_cx_destroy.inc();
    if local_close {
        stats.downstream_cx_destroy_local.inc();
    } else {
        stats.downstream_cx_destroy_remote.inc();
    }
    stats
        .downstream_cx_length_ms
        .record(opened.elapsed().as_millis() as u64);
}

async fn read_head(
    stream: &mut Stream,
    buf: &mut BytesMut,
    limits: HeadLimits,
    hcm: &rvoy_model::hcm::HttpConnectionManager,
    max_duration_at: Option<Instant>,
    drain_until: Option<Instant>,
    drain: &crate::context::Drain,
) -> HeadRead {
    let started = Instant::now();
    loop {
        if !buf.is_empty() {
            match parse::parse_request(buf, limits) {
                Ok(Some(h)) => return HeadRead::Head(h),
                Ok(None) => {}
                Err(e) => return HeadRead::Error(e),
            }
        }
        // Between requests the connection idle timeout applies; once a request
        // started, the request headers timeout (if any) and the stream idle timeout.
        let timeout = if buf.is_empty() {
            hcm.common.idle_timeout
        } else {
            match hcm.request_headers_timeout {
                Some(t) => Some(t.saturating_sub(started.elapsed())),
                None => hcm.stream_idle_timeout,
            }
        };
        if buf.is_empty() {
            // Wait for the socket first so an idle connection holds no buffer.
            let now = Instant::now();
            let (deadline, expired) = match drain_until {
                Some(until) => (Some(until), HeadRead::DrainTimeout),
                None => {
                    let idle_at = timeout.map(|t| now + t);
                    match (idle_at, max_duration_at) {
                        (Some(i), Some(m)) if m < i => (Some(m), HeadRead::MaxDuration),
                        (None, Some(m)) => (Some(m), HeadRead::MaxDuration),
                        (i, _) => (i, HeadRead::IdleTimeout),
                    }
                }
            };
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                ready = stream.readable() => {
                    if ready.is_err() {
                        return HeadRead::Closed;
                    }
                }
                _ = sleep => return expired,
                _ = drain.idle_close() => return HeadRead::ListenerDrain,
            }
            buf.reserve(4096);
        } else if buf.capacity() - buf.len() < 1024 {
            buf.reserve(8192);
        }
        let read = match timeout {
            Some(t) => match tokio::time::timeout(t, stream.read_buf(buf)).await {
                Ok(r) => r,
                Err(_) => {
                    return if buf.is_empty() {
                        HeadRead::IdleTimeout
                    } else {
                        HeadRead::HeaderTimeout
                    };
                }
            },
            None => stream.read_buf(buf).await,
        };
        match read {
            Ok(0) | Err(_) => {
                if buf.is_empty() {
                    return HeadRead::Closed;
                }
                return HeadRead::Closed;
            }
            Ok(_) => {}
        }
    }
}

/// Answers a malformed request head as Envoy's HTTP/1 codec does.
async fn codec_error_reply(
    stream: &mut Stream,
    e: HeadError,
    rt: &HttpListenerRuntime,
    worker: &WorkerContext,
    conn: &ConnInfo,
) {
    let stats = &rt.stats.hcm;
    stats.downstream_rq_total.inc();
    stats.downstream_rq_http1_total.inc();
    let mut info = RequestInfo::new(Protocol::Http11, conn.id, conn.remote, conn.local);
    info.set_flag(ResponseFlag::DownstreamProtocolError);
    info.response_code_details = Some(e.details.to_owned());
    let body = e.status.canonical_reason().unwrap_or("");
    let reply = LocalReply::new(e.status, body.to_owned(), e.details);
    let rendered = local_reply::render(reply, &rt.hcm, &mut info);
    let mut headers: HeaderMap = rendered.headers;
    crate::forwarding::set_server(&mut headers, &rt.hcm);
    headers.insert(http::header::DATE, worker.date.now());
    let mut scratch = BytesMut::new();
    let mut ds = H1Downstream::new(
        stream,
        &mut scratch,
        parse::BodyFraming::Empty,
        http::Version::HTTP_11,
        &http::Method::GET,
        rt.hcm.http1.proper_case_headers,
    );
    ds.close_after = true;
    let end = rendered.body.is_empty();
    if ds
        .send_head(rendered.status, None, &mut headers, end)
        .await
        .is_ok()
        && !end
    {
        let _ = ds.send_data(rendered.body, true).await;
    }
    info.bytes_sent = ds.bytes_sent();
    info.response_status = Some(rendered.status);
    info.response_headers = Some(headers);
    info.end = Some(Instant::now());
    rt.stats.response_code(rendered.status.as_u16());
    stats.downstream_rq_completed.inc();
    crate::access_log::emit(&rt.access_logs, &info);
    let _ = StatusCode::OK;
    let _ = HeaderValue::from_static("");
}

/// Envoy's delayed close: stop writing, then give the client up to
/// `delayed_close_timeout` to close its side (draining what it still sends),
/// so it reads the whole response instead of a reset.
pub async fn delayed_close(stream: &mut Stream, timeout: Option<Duration>) {
    let _ = stream.shutdown().await;
    let Some(t) = timeout else { return };
    let mut scratch = [0u8; 4096];
    let _ = tokio::time::timeout(t, async {
        loop {
            match stream.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}
