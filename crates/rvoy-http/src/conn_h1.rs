//! A downstream HTTP/1 connection: reads request heads (with Envoy's limits and
//! timeouts), hands each request to the connection manager, keeps the
//! connection alive between requests without holding buffer memory, answers
//! codec errors as Envoy does, and closes with Envoy's delayed close.
//! The connection's start (transport, first byte, codec choice) is
//! [`crate::connection`]'s.

use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use http::HeaderMap;
use rvoy_format::ResponseFlag;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::context::{HttpListenerRuntime, WorkerContext};
use crate::downstream::{Downstream, H1Downstream, Protocol};
use crate::h1::parse::{self, HeadError, HeadLimits};
use crate::io::Stream;
use crate::local_reply::{self, LocalReply};
use crate::request_info::RequestInfo;
use crate::stats::HcmCounters;
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
    Error(HeadError),
}

/// Serves one HTTP/1 connection until it closes.
#[allow(clippy::manual_async_fn)] // an `async move` block on purpose, see the body
pub fn serve<'a>(
    mut stream: Stream,
    mut buf: BytesMut,
    rt: Arc<HttpListenerRuntime>,
    worker: Rc<WorkerContext>,
    conn: &'a ConnInfo,
) -> impl Future<Output = ()> + 'a {
    // An `async move` block, not an `async fn`: the latter keeps a second
    // copy of its arguments in the future (rust-lang/rust#62958), and this
    // future is what every idle connection holds.
    async move {
        let stats = &rt.stats.hcm;
        let rec = &worker.stats;
        rec.inc(stats.downstream_cx_total);
        rec.gauge_inc(stats.downstream_cx_active);
        // The codec (and with it the HTTP/1 counts) comes with the first byte.
        let mut codec = false;
        let opened = conn.accepted;
        let hcm = rt.hcm.clone();
        let limits = HeadLimits {
            max_head_bytes: hcm.max_request_headers_kb as usize * 1024,
            max_headers: hcm.common.max_headers_count as usize,
        };
        let mut served: u32 = 0;
        let mut local_close = true;
        let max_duration_at = hcm.common.max_connection_duration.map(|d| opened + d);
        // The timer of the waits for a request head, kept across requests
        // (see `wait_until`): armed once, not once per request.
        let idle_timer = tokio::time::sleep(FAR_FUTURE);
        tokio::pin!(idle_timer);
        // Envoy's drain sequence on an HTTP/1 connection (after its idle timeout
        // or maximum duration): requests arriving within `drain_timeout` are
        // served with `connection: close`, then the connection closes.
        let mut drain_until: Option<Instant> = None;
        // Bytes read before the codec started (protocol detection) count too.
        rec.add(stats.downstream_cx_rx_bytes_total, buf.len() as u64);
        // Asked as each response head goes out, as Envoy's `encodeHeaders`.
        let drain_close = || rt.drain_close();
        let mut ending = Ending::Close;
        loop {
            // `read` (a whole request head) must not outlive this block: it
            // would take room in the idle connection's future.
            let head = {
                let buffered = buf.len();
                let read = read_head(
                    &mut stream,
                    &mut buf,
                    limits,
                    &hcm,
                    max_duration_at,
                    drain_until,
                    idle_timer.as_mut(),
                    &worker.read_bufs,
                )
                .await;
                // A parsed head was split off the buffer.
                let read_len = buf.len()
                    + match &read {
                        HeadRead::Head(h) => h.head_len,
                        _ => 0,
                    };
                rec.add(
                    stats.downstream_cx_rx_bytes_total,
                    read_len.saturating_sub(buffered) as u64,
                );
                if !codec && read_len > 0 {
                    codec = true;
                    rec.inc(stats.downstream_cx_http1_total);
                    rec.gauge_inc(stats.downstream_cx_http1_active);
                }
                match read {
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
                        if !codec {
                            // No byte ever came, so no codec: Envoy closes at once.
                            break;
                        }
                        drain_until = Some(crate::clock::now() + hcm.drain_timeout);
                        continue;
                    }
                    HeadRead::DrainTimeout => {
                        ending = Ending::DelayedClose;
                        break;
                    }
                    HeadRead::HeaderTimeout => {
                        stats.downstream_rq_header_timeout.inc();
                        break;
                    }
                    HeadRead::Error(e) => {
                        stats.downstream_cx_protocol_error.inc();
                        ending = Ending::CodecError(e);
                        break;
                    }
                }
            };
            served += 1;
            let max_reached = hcm
                .common
                .max_requests_per_connection
                .is_some_and(|m| served >= m);
            let close_after = max_reached || drain_until.is_some();
            // Boxed: the request's state (~7 KiB of futures, its head and its
            // downstream) lives only while the request does, so an idle
            // keep-alive connection holds little more than its socket.
            // Written into a fresh allocation rather than moved into one
            // (`Box::pin`), which lets the compiler build the future in place
            // instead of copying all of it.
            let served = Box::into_pin(Box::write(
                Box::new_uninit(),
                serve_request(
                    &mut stream,
                    &mut buf,
                    head,
                    close_after,
                    max_reached,
                    max_duration_at,
                    &drain_close,
                    &rt,
                    &worker,
                    conn,
                ),
            ))
            .await;
            if served.reset {
                stats.downstream_cx_destroy_active_rq.inc();
                if served.peer_closed {
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
            if served.draining {
                stats.downstream_cx_drain_close.inc();
            }
            if served.body_pending || served.close {
                // Envoy (`doEndStream`) closes as soon as the response is
                // flushed (`FlushWrite`) after a tunnel, and when the client's
                // request to close counts, nothing of the request is left
                // unread (or the response is close-delimited) and the
                // response was written outside the request's decoding (an
                // upstream's answer, a timer's reply): no request bytes can
                // race the close. Otherwise (a request not read whole, a
                // drain, a close the client did not ask for, a direct
                // response or local reply) it closes with
                // `FlushWriteAndDelay`: the end comes only once the client
                // closed or `delayed_close_timeout` passed.
                let skip_delay = served.tunnel
                    || (served.saw_connection_close
                        && served.answered_later
                        && (!served.body_pending || served.close_delimited));
                ending = if skip_delay {
                    Ending::FlushClose
                } else {
                    Ending::DelayedClose
                };
                break;
            }
            if buf.is_empty() {
                // Keep no buffer memory while idle: the worker keeps it.
                worker.read_bufs.put(std::mem::take(&mut buf));
            }
        }
        // What is left unread is not used again: the buffer goes back.
        buf.clear();
        worker.read_bufs.put(std::mem::take(&mut buf));
        match ending {
            Ending::Close => {}
            Ending::CodecError(e) => {
                Box::pin(codec_error_reply(&mut stream, e, &rt, &worker, conn)).await;
                let tls = stream.is_tls();
                let ended =
                    delayed_close(&mut stream, hcm.delayed_close_timeout, tls, &worker.sleeps)
                        .await;
                local_close = ended.count(stats);
            }
            Ending::FlushClose => {
                // What was written goes out, then the socket closes; TLS sends
                // its `close_notify` first, as Envoy's TLS socket does.
                let _ = stream.flush().await;
                if stream.is_tls() {
                    let _ = stream.shutdown().await;
                }
            }
            Ending::DelayedClose => {
                let tls = stream.is_tls();
                let ended =
                    delayed_close(&mut stream, hcm.delayed_close_timeout, tls, &worker.sleeps)
                        .await;
                local_close = ended.count(stats);
            }
        }
        rec.gauge_dec(stats.downstream_cx_active);
        if codec {
            rec.gauge_dec(stats.downstream_cx_http1_active);
        }
        stats.connection_closed(rec, local_close, opened);
    }
}

/// The deadline that ended an idle wait for a request head.
#[derive(Clone, Copy)]
enum Expired {
    Idle,
    MaxDuration,
    Drain,
}

impl From<Expired> for HeadRead {
    fn from(expired: Expired) -> Self {
        match expired {
            Expired::Idle => HeadRead::IdleTimeout,
            Expired::MaxDuration => HeadRead::MaxDuration,
            Expired::Drain => HeadRead::DrainTimeout,
        }
    }
}

/// How an HTTP/1 connection's loop ended: what is left to do before the
/// socket closes.
enum Ending {
    Close,
    /// Answer the malformed request head, then the delayed close.
    CodecError(HeadError),
    /// Envoy's delayed close (`FlushWriteAndDelay`).
    DelayedClose,
    /// Envoy's `FlushWrite`: flush, then close at once.
    FlushClose,
}

/// What the connection needs to know of a request once it was served.
struct Served {
    /// The stream was reset (the connection must close).
    reset: bool,
    peer_closed: bool,
    /// The request body was not read whole.
    body_pending: bool,
    /// The response closes the connection.
    close: bool,
    /// The response is close-delimited (HTTP/1.0, unknown length).
    close_delimited: bool,
    /// The connection became a tunnel (upgrade, `CONNECT`).
    tunnel: bool,
    /// Envoy's `saw_connection_close` ([`H1Downstream::saw_connection_close`]).
    saw_connection_close: bool,
    /// The response was written after the stream waited
    /// ([`Downstream::answered_later`]).
    answered_later: bool,
    /// The response carried the listener drain's `connection: close`.
    draining: bool,
}

/// Serves one request whose head was read: builds the request and the
/// downstream, runs the connection manager's stream, and counts what came
/// of it. Runs boxed, see [`serve`].
#[allow(clippy::too_many_arguments)]
#[allow(clippy::manual_async_fn)] // an `async move` block on purpose, see the body
fn serve_request(
    stream: &mut Stream,
    buf: &mut BytesMut,
    head: parse::RequestHead,
    close_after: bool,
    last_request: bool,
    max_duration_at: Option<Instant>,
    drain_close: &dyn Fn() -> bool,
    rt: &Arc<HttpListenerRuntime>,
    worker: &Rc<WorkerContext>,
    conn: &ConnInfo,
) -> impl std::future::Future<Output = Served> {
    // An `async move` block, not an `async fn`: the latter keeps a second
    // copy of its arguments in the future (rust-lang/rust#62958), written
    // on every request.
    async move {
        let stats = &rt.stats.hcm;
        let hcm = &rt.hcm;
        let protocol = if head.version == http::Version::HTTP_10 {
            Protocol::Http10
        } else {
            Protocol::Http11
        };
        let authority = head
            .headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(smol_str::SmolStr::new);
        let request = Request {
            method: head.method.clone(),
            path: head.target,
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
        let mut ds = H1Downstream::new(
            stream,
            buf,
            head.framing,
            head.version,
            &head.method,
            hcm.http1.proper_case_headers,
            worker.take_head_buf(),
        );
        ds.close_after = head.close || close_after;
        ds.close_requested = head.close;
        // Envoy's connection manager marks the last request the connection
        // allows as soon as the stream starts.
        ds.saw_connection_close = last_request;
        ds.drain_at = max_duration_at;
        ds.drain_close = Some(drain_close);
        let closing_before = ds.close_after;
        let outcome = stream::handle(&mut ds, request, rt, worker, conn).await;
        if ds.close_after
            && !closing_before
            && max_duration_at.is_some_and(|at| at <= crate::clock::now())
        {
            stats.downstream_cx_max_duration_reached.inc();
        }
        worker
            .stats
            .add(stats.downstream_cx_rx_bytes_total, ds.wire_rx);
        worker
            .stats
            .add(stats.downstream_cx_tx_bytes_total, ds.wire_tx);
        let served = Served {
            reset: outcome.reset,
            peer_closed: ds.peer_closed,
            body_pending: !ds.body_complete(),
            close: outcome.close || ds.close_after || ds.close_delimited,
            close_delimited: ds.close_delimited,
            tunnel: ds.tunnel,
            saw_connection_close: ds.saw_connection_close,
            answered_later: ds.answered_later,
            draining: ds.drain_closed,
        };
        worker.put_head_buf(ds.into_head_buf());
        served
    }
}

use crate::buf_pool::DownstreamReadBufs;
use crate::sleep_pool::FAR_FUTURE;

/// Waits until `deadline` (forever for `None`) on `timer`, the connection's
/// own timer, kept across waits ([`crate::sleep_pool::poll_until`]). A
/// keep-alive connection's deadline moves later with every request, so its
/// timer is touched about once per timeout period instead of being
/// registered and removed for every request.
async fn wait_until(mut timer: Pin<&mut tokio::time::Sleep>, deadline: Option<Instant>) {
    let Some(deadline) = deadline else {
        return std::future::pending().await;
    };
    let deadline = tokio::time::Instant::from_std(deadline);
    std::future::poll_fn(|cx| crate::sleep_pool::poll_until(timer.as_mut(), deadline, cx)).await
}

#[allow(clippy::manual_async_fn)] // an `async move` block on purpose, see the body
#[allow(clippy::too_many_arguments)]
fn read_head<'a>(
    stream: &'a mut Stream,
    buf: &'a mut BytesMut,
    limits: HeadLimits,
    hcm: &'a rvoy_model::hcm::HttpConnectionManager,
    max_duration_at: Option<Instant>,
    drain_until: Option<Instant>,
    mut idle_timer: Pin<&'a mut tokio::time::Sleep>,
    bufs: &'a DownstreamReadBufs,
) -> impl Future<Output = HeadRead> + 'a {
    // An `async move` block, not an `async fn`: the latter keeps a second
    // copy of its arguments in the future (rust-lang/rust#62958), and this
    // future is what every idle connection holds.
    async move {
        let started = crate::clock::now();
        // Between requests the connection idle timeout applies (from the end of
        // the last response, or from the connection's start).
        let idle_at = hcm.common.idle_timeout.map(|t| started + t);
        // When the first byte of the request head came (the start of the request
        // headers timeout).
        let mut head_started = (!buf.is_empty()).then_some(started);
        loop {
            if !buf.is_empty() {
                match parse::parse_request(buf, limits) {
                    Ok(Some(h)) => return HeadRead::Head(h),
                    Ok(None) => {}
                    Err(e) => return HeadRead::Error(e),
                }
            }
            if buf.is_empty() {
                // Wait for the socket first so an idle connection holds no buffer.
                // Which deadline ends the wait; the small `Expired` (not a
                // `HeadRead`, which holds a whole request head) is what an idle
                // connection keeps.
                let (deadline, expired) = match drain_until {
                    Some(until) => (Some(until), Expired::Drain),
                    None => match (idle_at, max_duration_at) {
                        (Some(i), Some(m)) if m < i => (Some(m), Expired::MaxDuration),
                        (None, Some(m)) => (Some(m), Expired::MaxDuration),
                        (i, _) => (i, Expired::Idle),
                    },
                };
                tokio::select! {
                    biased;
                    // Polled in place (not `readable()`'s future): the
                    // smallest idle state.
                    ready = std::future::poll_fn(|cx| stream.poll_readable(cx)) => {
                        if ready.is_err() {
                            return HeadRead::Closed;
                        }
                    }
                    _ = wait_until(idle_timer.as_mut(), deadline) => return expired.into(),
                }
                if buf.capacity() == 0 {
                    *buf = bufs.take();
                } else {
                    buf.reserve(4096);
                }
                match crate::connection::read_now(stream, buf) {
                    // Stale readiness (see `connection::first_bytes`): wait
                    // again, with the deadlines, holding no buffer.
                    None => bufs.put(std::mem::take(buf)),
                    Some(Ok(0) | Err(_)) => return HeadRead::Closed,
                    Some(Ok(_)) => head_started = Some(crate::clock::now()),
                }
                continue;
            }
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(8192);
            }
            // Once a request started: the request headers timeout (if any), else
            // the stream idle timeout.
            let timeout = match hcm.request_headers_timeout {
                Some(t) => Some(t.saturating_sub(head_started.unwrap_or(started).elapsed())),
                None => hcm.stream_idle_timeout,
            };
            let read = match timeout {
                Some(t) => match tokio::time::timeout(t, stream.read_buf(buf)).await {
                    Ok(r) => r,
                    Err(_) => return HeadRead::HeaderTimeout,
                },
                None => stream.read_buf(buf).await,
            };
            match read {
                Ok(0) | Err(_) => return HeadRead::Closed,
                Ok(_) => {}
            }
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
    info.response_code_details = Some(e.details);
    let body = e.status.canonical_reason().unwrap_or("");
    let reply = LocalReply::new(e.status, body.to_owned(), e.details);
    let rendered = local_reply::render(reply, &rt.hcm, &mut info);
    let mut headers: HeaderMap = rendered.headers;
    // `date` before `server`, as on every response Envoy encodes.
    headers.insert(http::header::DATE, worker.date.now());
    crate::forwarding::set_server(&mut headers, &rt.hcm);
    let mut scratch = BytesMut::new();
    let mut ds = H1Downstream::new(
        stream,
        &mut scratch,
        parse::BodyFraming::Empty,
        http::Version::HTTP_11,
        &http::Method::GET,
        rt.hcm.http1.proper_case_headers,
        worker.take_head_buf(),
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
    info.end = Some(crate::clock::now());
    rt.stats
        .response_code(&worker.stats, rendered.status.as_u16());
    stats.downstream_rq_completed.inc();
    crate::access_log::emit(&rt.access_logs, &mut info);
}

/// How a delayed close ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelayedClose {
    /// The client closed first: Envoy counts a remote close.
    ClientClosed,
    /// `delayed_close_timeout` ran out: a local close.
    TimedOut,
    /// No `delayed_close_timeout`: closed at once, locally.
    Immediate,
}

impl DelayedClose {
    /// Counts `downstream_cx_delayed_close_timeout`; whether the close was
    /// local.
    pub fn count(self, stats: &HcmCounters) -> bool {
        if self == DelayedClose::TimedOut {
            stats.downstream_cx_delayed_close_timeout.inc();
        }
        self != DelayedClose::ClientClosed
    }
}

/// Envoy's delayed close (`FlushWriteAndDelay`: after the drain sequence, a
/// codec error, a response to a request not read whole, or a `connection:
/// close` response that does not close at once, see [`serve`]): what was written
/// is flushed, then the client gets up to `delayed_close_timeout` to close
/// first (what it still sends is read and dropped), so that it reads the
/// whole response rather than a reset; only then is the connection closed.
///
/// Once the client has closed, a plain socket is only dropped (closed):
/// `shutdown()` before `close()` would send the same FIN at the cost of one
/// more system call. TLS (`shutdown_after_client_close`) still sends its
/// `close_notify`, as Envoy's TLS socket does on any close.
pub async fn delayed_close<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    timeout: Option<Duration>,
    shutdown_after_client_close: bool,
    sleeps: &crate::sleep_pool::SleepPool,
) -> DelayedClose {
    let _ = io.flush().await;
    let ended = match timeout {
        Some(t) if read_until_closed(io, t, sleeps).await => DelayedClose::ClientClosed,
        Some(_) => DelayedClose::TimedOut,
        None => DelayedClose::Immediate,
    };
    if ended != DelayedClose::ClientClosed || shutdown_after_client_close {
        let _ = io.shutdown().await;
    }
    ended
}

/// Reads and drops what the client sends until it closes (true) or `within`
/// passed (false), waiting on one of the worker's reusable timers.
async fn read_until_closed<S: AsyncRead + Unpin>(
    io: &mut S,
    within: Duration,
    sleeps: &crate::sleep_pool::SleepPool,
) -> bool {
    let deadline = crate::clock::tokio_now() + within;
    let drain = async {
        // Usually the client just closes: its end of stream needs no buffer.
        let mut first = [0u8; 64];
        match io.read(&mut first).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        // It sent more: read it into spare capacity (nothing zeroed first).
        let mut scratch = Vec::with_capacity(4096);
        loop {
            scratch.clear();
            match io.read_buf(&mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::select! {
        biased;
        _ = drain => true,
        _ = sleeps.sleep_until(deadline) => false,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! The connection timers on loopback sockets, against a connection manager
    //! built from an Envoy config with direct responses only.

    use std::future::Future;
    use std::time::{Duration, Instant};

    use rvoy_config_load::bootstrap::{LoadOptions, load_bootstrap};
    use rvoy_model::BuildOptions;
    use rvoy_model::listener::NetworkFilter;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// The idle timer kept across waits ends each wait at its own deadline:
    /// later than the one it was armed for, earlier, or after it fired.
    #[tokio::test(start_paused = true)]
    async fn idle_timer_waits_end_at_their_own_deadlines() {
        // Paused time: tokio's clock, not std's, moves.
        let now = || tokio::time::Instant::now().into_std();
        let start = now();
        let at = |s: u64| Some(start + Duration::from_secs(s));
        let elapsed = || (now() - start).as_secs();
        let timer = tokio::time::sleep(FAR_FUTURE);
        tokio::pin!(timer);
        // An unarmed timer is armed for the wait's deadline.
        wait_until(timer.as_mut(), at(10)).await;
        assert_eq!(elapsed(), 10);
        // Once fired, re-armed for the next deadline.
        wait_until(timer.as_mut(), at(25)).await;
        assert_eq!(elapsed(), 25);
        // A wait cut short (the request came) leaves the timer armed (60 s)...
        let cut = tokio::time::timeout(Duration::from_secs(5), wait_until(timer.as_mut(), at(60)));
        assert!(cut.await.is_err());
        assert_eq!(elapsed(), 30);
        // ...and a wait with an earlier deadline moves it.
        wait_until(timer.as_mut(), at(40)).await;
        assert_eq!(elapsed(), 40);
        // Armed for 50 s, then a wait until 70 s: the timer fires at 50 and
        // the wait goes on to its own deadline.
        let cut = tokio::time::timeout(Duration::from_secs(1), wait_until(timer.as_mut(), at(50)));
        assert!(cut.await.is_err());
        wait_until(timer.as_mut(), at(70)).await;
        assert_eq!(elapsed(), 70);
    }

    /// A connection manager (`hcm_extra`: more of its fields) that answers
    /// every request with a direct 200 `ok`, and the stats store it counts in.
    pub(crate) struct Fixture {
        pub rt: Arc<HttpListenerRuntime>,
        pub store: rvoy_stats::Store,
    }

    impl Fixture {
        pub(crate) fn new(hcm_extra: &str) -> Fixture {
            let yaml = format!(
                r#"static_resources:
  listeners:
  - name: l
    address: {{socket_address: {{address: 127.0.0.1, port_value: 10000}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: t
          {hcm_extra}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
          route_config:
            virtual_hosts:
            - name: v
              domains: ["*"]
              routes:
              - {{match: {{prefix: "/"}}, direct_response: {{status: 200, body: {{inline_string: ok}}}}}}
"#
            );
            let loaded = load_bootstrap(&LoadOptions {
                config_yaml: Some(yaml),
                ..LoadOptions::default()
            })
            .expect("the test bootstrap loads");
            let config = rvoy_model::build(
                &loaded.bootstrap,
                &loaded.message,
                &loaded.sources,
                &BuildOptions::default(),
            )
            .expect("the test bootstrap builds");
            let NetworkFilter::HttpConnectionManager(hcm) =
                &config.listeners[0].filter_chains[0].filter
            else {
                panic!("the test listener is an HTTP connection manager");
            };
            let store = rvoy_stats::Store::new();
            let root = store.scope("");
            let rt = HttpListenerRuntime {
                hcm: hcm.clone(),
                stats: crate::stats::HcmStats::new(&root, "t", &root.scope("listener.l.")),
                clusters: Arc::new(rvoy_upstream::cluster::ClusterManager::new(
                    &[],
                    &root,
                    Default::default(),
                )),
                access_logs: Vec::new(),
                machine_address: None,
                listener_port: None,
                listener_access_logs: Vec::new(),
                draining: Arc::default(),
                health_failed: None,
                filters: Vec::new(),
            };
            Fixture {
                rt: Arc::new(rt),
                store,
            }
        }

        pub(crate) fn count(&self, c: rvoy_stats::Counter) -> u64 {
            self.store.counter_value(c)
        }

        /// Runs `test` on a single-threaded runtime (as a worker's), with a
        /// connected pair: the client's socket and the proxy's.
        pub(crate) fn run<F: Future<Output = ()>>(
            &self,
            test: impl FnOnce(
                TcpStream,
                Stream,
                Arc<HttpListenerRuntime>,
                Rc<WorkerContext>,
                ConnInfo,
            ) -> F,
        ) {
            let _thread = self.store.register_thread();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            tokio::task::LocalSet::new().block_on(&rt, async {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
                let addr = listener.local_addr().expect("addr");
                let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
                let (server, remote) = accepted.expect("accept");
                let conn = ConnInfo {
                    id: 1,
                    remote: Some(remote),
                    local: Some(addr),
                    tls: false,
                    accepted: Instant::now(),
                };
                let worker = Rc::new(WorkerContext::new(0));
                let client = client.expect("connect");
                test(client, Stream::Tcp(server), self.rt.clone(), worker, conn).await;
            });
        }
    }

    /// When the proxy closes `client` (bounded wait); `None` if it did not.
    pub(crate) async fn closed_after(client: &mut TcpStream, started: Instant) -> Option<Duration> {
        let mut scratch = [0u8; 1024];
        loop {
            let read = tokio::time::timeout(Duration::from_secs(3), client.read(&mut scratch));
            match read.await {
                Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
                Ok(Ok(_)) => {}
                Err(_) => return None,
            }
        }
    }

    const IDLE: &str = "common_http_protocol_options: {idle_timeout: 0.2s}";

    #[test]
    fn auto_connection_without_a_byte_closes_at_idle_timeout() {
        let f = Fixture::new(IDLE);
        f.run(|mut client, stream, rt, worker, conn| async move {
            let started = Instant::now();
            let task = tokio::task::spawn_local(crate::serve_connection(
                crate::Transport::Ready(stream),
                rt,
                worker,
                conn,
            ));
            let closed = closed_after(&mut client, started).await;
            let closed = closed.expect("closed at the idle timeout");
            assert!(closed >= Duration::from_millis(150), "{closed:?}");
            task.await.expect("served");
        });
        let s = &f.rt.stats.hcm;
        assert_eq!(f.count(s.downstream_cx_total), 1);
        assert_eq!(f.count(s.downstream_cx_idle_timeout), 1);
        assert_eq!(f.count(s.downstream_cx_destroy_local), 1);
        assert_eq!(f.count(s.downstream_cx_http1_total), 0, "no codec");
        assert_eq!(f.store.gauge_value(s.downstream_cx_active), 0);
    }

    #[test]
    fn http1_connection_without_a_byte_closes_at_idle_timeout() {
        let f = Fixture::new(IDLE);
        f.run(|mut client, stream, rt, worker, conn| async move {
            let started = Instant::now();
            let task = tokio::task::spawn_local(async move {
                serve(stream, BytesMut::new(), rt, worker, &conn).await
            });
            let closed = closed_after(&mut client, started).await;
            let closed = closed.expect("closed at the idle timeout");
            assert!(closed >= Duration::from_millis(150), "{closed:?}");
            task.await.expect("served");
        });
        let s = &f.rt.stats.hcm;
        assert_eq!(f.count(s.downstream_cx_idle_timeout), 1);
        assert_eq!(f.count(s.downstream_cx_http1_total), 0, "no codec");
        assert_eq!(f.store.gauge_value(s.downstream_cx_http1_active), 0);
    }

    #[test]
    fn auto_connection_serves_http1_then_idles_out() {
        let f = Fixture::new(&format!("{IDLE}\n          drain_timeout: 0.2s"));
        f.run(|mut client, stream, rt, worker, conn| async move {
            let task = tokio::task::spawn_local(crate::serve_connection(
                crate::Transport::Ready(stream),
                rt,
                worker,
                conn,
            ));
            let got = exchange(&mut client, b"GET / HTTP/1.1\r\nhost: example.com\r\n\r\n").await;
            assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"), "{got:?}");
            let answered = Instant::now();
            assert!(closed_after(&mut client, answered).await.is_some());
            task.await.expect("served");
        });
        let s = &f.rt.stats.hcm;
        assert_eq!(f.count(s.downstream_cx_total), 1);
        assert_eq!(f.count(s.downstream_cx_http1_total), 1);
        assert_eq!(f.count(s.downstream_cx_idle_timeout), 1);
        assert_eq!(f.store.gauge_value(s.downstream_cx_active), 0);
    }

    /// After a codec error Envoy closes with `FlushWriteAndDelay`: the 400
    /// goes out at once, the connection's end only `delayed_close_timeout`
    /// later (unless the client closes first).
    #[test]
    fn codec_error_closes_after_delayed_close_timeout() {
        let f = Fixture::new("delayed_close_timeout: 0.3s");
        f.run(|mut client, stream, rt, worker, conn| async move {
            let task = tokio::task::spawn_local(crate::serve_connection(
                crate::Transport::Ready(stream),
                rt,
                worker,
                conn,
            ));
            client
                .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nbad header\r\n\r\n")
                .await
                .expect("send");
            let mut scratch = [0u8; 1024];
            let n = tokio::time::timeout(Duration::from_secs(3), client.read(&mut scratch))
                .await
                .expect("a response in time")
                .expect("read");
            assert!(scratch[..n].starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
            let answered = Instant::now();
            let closed = closed_after(&mut client, answered).await.expect("closed");
            assert!(closed >= Duration::from_millis(250), "{closed:?}");
            task.await.expect("served");
        });
        let s = &f.rt.stats.hcm;
        assert_eq!(f.count(s.downstream_cx_protocol_error), 1);
        assert_eq!(f.count(s.downstream_cx_delayed_close_timeout), 1);
    }

    /// Sends `request` on `client` and reads until the `ok` body came.
    async fn exchange(client: &mut TcpStream, request: &[u8]) -> Vec<u8> {
        client.write_all(request).await.expect("send");
        let mut got = Vec::new();
        let mut scratch = [0u8; 1024];
        while !got.ends_with(b"ok") {
            let n = tokio::time::timeout(Duration::from_secs(3), client.read(&mut scratch))
                .await
                .expect("a response in time")
                .expect("read");
            assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&scratch[..n]);
        }
        got
    }

    /// Serves `request` on a fresh connection of a manager with
    /// `hcm_extra`; returns the response and how long after it the proxy
    /// closed (`None`: not within 3 s).
    fn close_after_request(f: &Fixture, request: &'static [u8]) -> (Vec<u8>, Option<Duration>) {
        let mut result = (Vec::new(), None);
        let out = &mut result;
        f.run(|mut client, stream, rt, worker, conn| async move {
            let task = tokio::task::spawn_local(async move {
                serve(stream, BytesMut::new(), rt, worker, &conn).await
            });
            let got = exchange(&mut client, request).await;
            let answered = Instant::now();
            let closed = closed_after(&mut client, answered).await;
            drop(client);
            task.await.expect("served");
            *out = (got, closed);
        });
        result
    }

    /// A request that asked to close but whose body was not read (answered
    /// before it came) still gets the delayed close: the client may still
    /// be sending, and closing on unread bytes would reset the response.
    #[test]
    fn connection_close_request_not_read_whole_closes_after_the_delay() {
        let f = Fixture::new("delayed_close_timeout: 0.3s");
        let (got, closed) = close_after_request(
            &f,
            b"POST / HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 100000\r\n\r\nab",
        );
        assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"), "{got:?}");
        let closed = closed.expect("closed at the delayed close timeout");
        assert!(closed >= Duration::from_millis(250), "{closed:?}");
        assert_eq!(
            f.count(f.rt.stats.hcm.downstream_cx_delayed_close_timeout),
            1
        );
    }

    #[test]
    fn auto_connection_closed_by_the_client_without_a_byte() {
        let f = Fixture::new(IDLE);
        f.run(|client, stream, rt, worker, conn| async move {
            drop(client);
            crate::serve_connection(crate::Transport::Ready(stream), rt, worker, conn).await;
        });
        let s = &f.rt.stats.hcm;
        assert_eq!(f.count(s.downstream_cx_total), 1);
        assert_eq!(f.count(s.downstream_cx_destroy_remote), 1);
        assert_eq!(f.count(s.downstream_cx_idle_timeout), 0);
    }
}
