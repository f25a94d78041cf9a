//! A downstream HTTP/2 connection (h2c with prior knowledge, or h2 over TLS):
//! each stream is a request run on the worker, with the settings of
//! `http2_protocol_options` and Envoy's connection-level behaviour:
//!
//! * the codec's byte stream is watched frame by frame ([`crate::h2_io`]) for
//!   the `http2.*` stats and flood limits; a flood closes the connection;
//! * requests are checked as Envoy's codec checks them (header count and
//!   size, a missing `:authority`): the stream is reset, or with
//!   `stream_error_on_invalid_http_message` off an invalid request closes
//!   the whole connection, as Envoy does;
//! * rapid reset (CVE-2023-44487): streams reset before they got a response
//!   within a second of opening are counted, one RST_STREAM at a time as the
//!   codec reads them, and a connection where they are half of the streams
//!   is aborted (`downstream_rq_too_many_premature_resets`); streams a
//!   connection close ends count as reset by the client, as in Envoy;
//! * Envoy's drain sequence at `idle_timeout`, at `max_connection_duration`
//!   and on drain (listener drain, health check failure): a GOAWAY with the
//!   last stream id 2^31-1, `drain_timeout` later the final GOAWAY (the last
//!   stream processed), and once no stream is open the close, after
//!   `delayed_close_timeout` ([`DrainIo`]); the idle timer runs only while no
//!   stream is open; `connection_keepalive` PINGs.

use std::cell::{Cell, RefCell};
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::RecvStream;
use h2::server::SendResponse;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::conn_h1::delayed_close;
use crate::context::{HttpListenerRuntime, WorkerContext};
use crate::downstream::{Downstream, DownstreamError, Protocol};
use crate::h2_io::{Failure, FrameIo, H2State};
use crate::io::Rewind;
use crate::stream::{self, ConnInfo, Request};
use crate::upstream_h2::send_all;

/// The HTTP/2 connection preface.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Streams reset by the client before they were accepted that the codec
/// holds at most (beyond: GOAWAY `ENHANCE_YOUR_CALM`). The codec gets no
/// more than one RST_STREAM before the connection accepts what it has
/// ([`FrameIo`]), so this never binds before Envoy's premature-reset
/// accounting does.
const PENDING_ACCEPT_RESETS: usize = 2048;

/// Envoy's `overload.premature_reset_total_stream_count`.
const PREMATURE_RESET_TOTAL: u64 = 500;

/// Envoy's `overload.premature_reset_min_stream_lifetime_seconds`.
const PREMATURE_RESET_MIN_LIFETIME_SECS: u64 = 1;

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
    // The connection manager's connection (and its idle timer) started at
    // the accept; the codec with the first byte.
    let opened = conn.accepted;
    let h2opts = &rt.hcm.http2;
    let state = H2State::new(
        true,
        h2opts,
        rt.hcm
            .http2
            .stream_error(rt.hcm.stream_error_on_invalid_http_message),
        rt.stats.http2().clone(),
        stats.downstream_cx_rx_bytes_total,
        stats.downstream_cx_tx_bytes_total,
        worker.stats.clone(),
    );
    let pre = io.buffered();
    let n = pre.len().min(PREFACE.len());
    if pre[..n] != PREFACE[..n] {
        // Not the client preface: Envoy's codec fails on it before its
        // SETTINGS go out, and closes with the delayed close.
        stats.downstream_cx_protocol_error.inc();
        stats.downstream_cx_rx_bytes_total.add(pre.len() as u64);
        let mut io = io;
        let local = delayed_close(&mut io, rt.hcm.delayed_close_timeout, true, &worker.sleeps)
            .await
            .count(stats);
        finish(&rt, &state, opened, local, 0);
        return;
    }
    let mut builder = h2::server::Builder::new();
    builder
        .initial_window_size(h2opts.initial_stream_window_size)
        .initial_connection_window_size(h2opts.initial_connection_window_size)
        .max_concurrent_streams(h2opts.max_concurrent_streams)
        .header_table_size(h2opts.hpack_table_size)
        .max_header_list_size(codec_header_list_limit(&rt))
        .max_pending_accept_reset_streams(PENDING_ACCEPT_RESETS);
    if h2opts.allow_connect {
        builder.enable_connect_protocol();
    }
    let idle = rt.hcm.common.idle_timeout;
    let drain = Rc::new(DrainCtl::default());
    let mut handshake = Box::pin(
        builder.handshake::<_, Bytes>(DrainIo::new(FrameIo::new(io, state.clone()), drain.clone())),
    );
    let shaken = match idle {
        Some(t) => tokio::time::timeout_at((opened + t).into(), &mut handshake)
            .await
            .ok(),
        None => Some(handshake.as_mut().await),
    };
    let mut connection = match shaken {
        Some(Ok(c)) => c,
        Some(Err(e)) if e.is_io() => {
            // The client closed (or the socket failed) before its preface.
            finish(&rt, &state, opened, false, 0);
            return;
        }
        Some(Err(_)) => {
            // A broken client preface: Envoy's delayed close.
            stats.downstream_cx_protocol_error.inc();
            drain.park_on_drop.set(true);
            drop(handshake);
            let local = match drain.take_parked() {
                Some(mut io) => {
                    delayed_close(&mut io, rt.hcm.delayed_close_timeout, true, &worker.sleeps)
                        .await
                        .count(stats)
                }
                None => true,
            };
            finish(&rt, &state, opened, local, 0);
            return;
        }
        None => {
            // The client preface has not come whole: Envoy's codec is there
            // all the same, so the idle timeout starts its drain sequence.
            stats.downstream_cx_idle_timeout.inc();
            drain.park_on_drop.set(true);
            drop(handshake);
            let local = match drain.take_parked() {
                Some(io) => drain_before_preface(io, &rt, &worker).await,
                None => true,
            };
            finish(&rt, &state, opened, local, 0);
            return;
        }
    };
    // The idle timer runs only while no stream is open (Envoy's
    // `idle_timeout`); `max_connection_duration` and drain send GOAWAY and
    // let open streams finish.
    let max_duration_at = rt.hcm.common.max_connection_duration.map(|d| opened + d);
    let shared = Rc::new(ConnShared::new());
    // Idle since the accept until a first stream opens.
    shared.last_closed.set(opened);
    let mut keepalive = Keepalive::new(h2opts.keepalive.as_ref(), connection.ping_pong());
    let mut shutting_down = false;
    // While draining: when the final GOAWAY is due.
    let mut final_goaway_at: Option<Instant> = None;
    let mut failure_handled = false;
    let mut rejected_seen = 0u64;
    let mut local_close = false;
    let drain_timeout = rt.hcm.drain_timeout;
    loop {
        let deadline = if shutting_down {
            final_goaway_at
        } else {
            let idle_at = idle.map(|t| shared.idle_since().unwrap_or_else(Instant::now) + t);
            [idle_at, max_duration_at].into_iter().flatten().min()
        };
        // Keepalive PINGs pause until the final GOAWAY: `h2` sends none
        // while its shutdown PING is pending.
        let keepalive_at = final_goaway_at.map_or(keepalive.deadline(), |_| None);
        let deadline = [deadline, keepalive_at].into_iter().flatten().min();
        let timer = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        let next = tokio::select! {
            biased;
            failure = std::future::poll_fn(|cx| state.poll_failure(cx)), if !failure_handled => {
                failure_handled = true;
                local_close = true;
                on_failure(&rt, failure);
                if failure.aborts() {
                    break;
                }
                // The reset rate limit: GOAWAY INTERNAL_ERROR, then close.
                drain.abort();
                final_goaway_at = None;
                connection.abrupt_shutdown(h2::Reason::INTERNAL_ERROR);
                shutting_down = true;
                continue;
            }
            _ = std::future::poll_fn(|cx| keepalive.poll_pong(cx)) => continue,
            _ = std::future::poll_fn(|cx| shared.poll_drain(cx)), if !shutting_down => {
                stats.downstream_cx_drain_close.inc();
                final_goaway_at = Some(start_drain(&mut connection, &drain, drain_timeout));
                shutting_down = true;
                continue;
            }
            next = connection.accept() => next,
            _ = timer => {
                let now = crate::clock::now();
                if final_goaway_at.is_none() && keepalive.on_timer(now, &state) {
                    continue;
                }
                if shutting_down {
                    if final_goaway_at.is_some_and(|at| at <= now) {
                        // drain_timeout passed: the final GOAWAY.
                        drain.final_goaway();
                        final_goaway_at = None;
                    }
                    continue;
                }
                if max_duration_at.is_some_and(|at| at <= now) {
                    stats.downstream_cx_max_duration_reached.inc();
                    final_goaway_at = Some(start_drain(&mut connection, &drain, drain_timeout));
                    shutting_down = true;
                } else if let (Some(t), Some(since)) = (idle, shared.idle_since())
                    && since + t <= now {
                        stats.downstream_cx_idle_timeout.inc();
                        final_goaway_at = Some(start_drain(&mut connection, &drain, drain_timeout));
                        shutting_down = true;
                    }
                continue;
            }
        };
        // Requests the codec refused as malformed count as requests too.
        let rejected = state.rejected_streams();
        for _ in rejected_seen..rejected {
            stats.downstream_rq_total.inc();
            stats.downstream_rq_http2_total.inc();
            stats.downstream_rq_rx_reset.inc();
            shared.stream_closed(true, &rt, &state);
        }
        rejected_seen = rejected;
        match next {
            Some(Ok((request, respond))) => {
                let id = respond.stream_id().as_u32();
                if id > state.last_accepted.get() {
                    state.last_accepted.set(id);
                }
                let mut respond = respond;
                if already_reset(&mut respond) {
                    // Reset before we got to it (rapid reset): counted as
                    // Envoy counts it, without running the request.
                    stats.downstream_rq_total.inc();
                    stats.downstream_rq_http2_total.inc();
                    stats.downstream_rq_rx_reset.inc();
                    shared.stream_closed(true, &rt, &state);
                    continue;
                }
                let stream_rt = rt.clone();
                let stream_worker = worker.clone();
                let stream_shared = shared.clone();
                let stream_state = state.clone();
                shared.open.set(shared.open.get() + 1);
                state.rec.gauge_inc(state.stats.streams_active);
                // Boxed: the task then holds a pointer, not the stream's ~8 KiB
                // state, which tokio would otherwise copy into the task and
                // again when it writes the finished stage. Clocked: one clock
                // reading per poll.
                tokio::task::spawn_local(crate::clock::Clocked(Box::into_pin(Box::write(
                    Box::new_uninit(),
                    async move {
                        let started = crate::clock::now();
                        let responded = serve_stream(
                            request,
                            respond,
                            &stream_rt,
                            stream_worker,
                            conn,
                            &stream_state,
                            &stream_shared,
                        )
                        .await;
                        stream_state
                            .rec
                            .gauge_dec(stream_state.stats.streams_active);
                        stream_shared.open.set(stream_shared.open.get() - 1);
                        stream_shared.last_closed.set(crate::clock::now());
                        let premature = !responded
                            && crate::clock::elapsed(started).as_secs()
                                <= PREMATURE_RESET_MIN_LIFETIME_SECS;
                        stream_shared.stream_closed(premature, &stream_rt, &stream_state);
                    },
                ))));
            }
            Some(Err(e)) => {
                if e.is_go_away()
                    || e.is_library()
                    || e.reason() == Some(h2::Reason::PROTOCOL_ERROR)
                {
                    if state.failure().is_none() {
                        stats.downstream_cx_protocol_error.inc();
                        local_close = true;
                    }
                } else if e.is_io() && state.failure().is_some() {
                    local_close = true;
                }
                break;
            }
            None => break,
        }
    }
    let active = shared.open.get();
    drop(connection);
    if let Some(mut io) = drain.take_parked() {
        // The drain sequence ended with `h2` closing the connection: Envoy's
        // delayed close, unless the client already closed its side.
        local_close = !drain.eof.get()
            && delayed_close(&mut io, rt.hcm.delayed_close_timeout, true, &worker.sleeps)
                .await
                .count(stats);
    }
    finish(&rt, &state, opened, local_close, active);
}

/// Envoy's drain sequence on a connection whose client preface never came
/// whole (so `h2` has no connection to drain): the GOAWAY with the last
/// stream id 2^31-1, `drain_timeout` later the final GOAWAY (last stream 0),
/// then the delayed close. What the client sends meanwhile is read and
/// dropped. Whether the close was local.
async fn drain_before_preface(
    mut io: FrameIo<Rewind>,
    rt: &HttpListenerRuntime,
    worker: &WorkerContext,
) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stats = &rt.stats.hcm;
    if io.write_all(&goaway_frame(0x7fff_ffff)).await.is_err() || io.flush().await.is_err() {
        return true;
    }
    let mut scratch = [0u8; 1024];
    let waited = tokio::time::timeout(rt.hcm.drain_timeout, async {
        loop {
            match io.read(&mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    if waited.is_ok() {
        // The client closed first.
        return false;
    }
    if io.write_all(&goaway_frame(0)).await.is_err() {
        return true;
    }
    delayed_close(&mut io, rt.hcm.delayed_close_timeout, true, &worker.sleeps)
        .await
        .count(stats)
}

/// A GOAWAY frame (`NO_ERROR`) with the last stream id `last`.
fn goaway_frame(last: u32) -> [u8; 17] {
    let mut f = [0u8, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    f[9..13].copy_from_slice(&last.to_be_bytes());
    f
}

/// Starts Envoy's drain sequence (`startDrainSequence`): a GOAWAY with the
/// last stream id 2^31-1 now, the final GOAWAY when the returned instant
/// (`drain_timeout` later) comes.
fn start_drain(
    connection: &mut h2::server::Connection<DrainIo, Bytes>,
    drain: &DrainCtl,
    drain_timeout: Duration,
) -> Instant {
    drain.start();
    connection.graceful_shutdown();
    crate::clock::now() + drain_timeout
}

/// The payload of the PING `h2`'s graceful shutdown sends (`h2` 0.4's
/// `Ping::SHUTDOWN`, public only with its `unstable` feature; should it
/// change, `idle_timeout_drains_as_envoy_does` sees the PING).
const SHUTDOWN_PAYLOAD: [u8; 8] = [0x0b, 0x7b, 0xa2, 0xf0, 0x8b, 0x9b, 0xfe, 0x54];

/// That PING as written on the wire.
const SHUTDOWN_PING: [u8; 17] = ping_frame(0, SHUTDOWN_PAYLOAD);

/// Its acknowledgement.
const SHUTDOWN_PING_ACK: [u8; 17] = ping_frame(1, SHUTDOWN_PAYLOAD);

const fn ping_frame(flags: u8, payload: [u8; 8]) -> [u8; 17] {
    let mut f = [0u8, 0, 8, 6, flags, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let mut i = 0;
    while i < 8 {
        f[9 + i] = payload[i];
        i += 1;
    }
    f
}

/// Steers the drain sequence of one connection through its [`DrainIo`].
#[derive(Default)]
struct DrainCtl {
    /// The SHUTDOWN PING of `h2`'s graceful shutdown is still to be dropped.
    drop_ping: Cell<bool>,
    /// The final GOAWAY is due: hand `h2` the SHUTDOWN PING's ACK.
    inject_ack: Cell<bool>,
    /// The drain sequence runs: `h2`'s close of the write side parks the
    /// stream here for the delayed close instead.
    defer_shutdown: Cell<bool>,
    parked: RefCell<Option<FrameIo<Rewind>>>,
    /// The client closed its side.
    eof: Cell<bool>,
    /// Dropped before its handshake completed, the stream is parked here
    /// (for the drain sequence of a connection without a whole preface).
    park_on_drop: Cell<bool>,
}

impl DrainCtl {
    fn start(&self) {
        self.drop_ping.set(true);
        self.defer_shutdown.set(true);
    }

    fn final_goaway(&self) {
        self.inject_ack.set(true);
    }

    /// The connection is being torn down instead (GOAWAY with an error).
    fn abort(&self) {
        self.inject_ack.set(false);
        self.defer_shutdown.set(false);
    }

    fn take_parked(&self) -> Option<FrameIo<Rewind>> {
        self.parked.borrow_mut().take()
    }
}

/// The `h2` codec's byte stream, for Envoy's drain sequence on top of `h2`'s
/// graceful shutdown. `h2` sends GOAWAY (2^31-1) and a PING, and the final
/// GOAWAY when that PING is acknowledged; Envoy sends no PING and the final
/// GOAWAY after `drain_timeout`, whatever the client does. So this stream
/// drops that PING on its way out, hands `h2` its ACK (at a frame boundary)
/// once `drain_timeout` passed, and when `h2` closes the connection keeps
/// the socket open for the delayed close (see [`DrainCtl`]).
struct DrainIo {
    inner: Option<FrameIo<Rewind>>,
    ctl: Rc<DrainCtl>,
    rx: Framer,
    tx: Framer,
    /// Bytes of the injected ACK already handed to `h2`.
    injected: usize,
}

impl DrainIo {
    fn new(inner: FrameIo<Rewind>, ctl: Rc<DrainCtl>) -> Self {
        DrainIo {
            inner: Some(inner),
            ctl,
            rx: Framer::new(PREFACE.len()),
            tx: Framer::new(0),
            injected: 0,
        }
    }
}

impl Drop for DrainIo {
    fn drop(&mut self) {
        if self.ctl.park_on_drop.get() {
            *self.ctl.parked.borrow_mut() = self.inner.take();
        }
    }
}

/// Writes `buf` to `inner`, or while the SHUTDOWN PING is to be dropped, the
/// part of it before that PING (or drops the PING when it comes first).
fn write_filtered(
    tx: &mut Framer,
    ctl: &DrainCtl,
    inner: &mut FrameIo<Rewind>,
    cx: &mut Context<'_>,
    buf: &[u8],
) -> Poll<io::Result<usize>> {
    let mut upto = buf.len();
    if ctl.drop_ping.get() {
        match tx.find(buf, &SHUTDOWN_PING) {
            Some(0) => {
                ctl.drop_ping.set(false);
                return Poll::Ready(Ok(SHUTDOWN_PING.len()));
            }
            Some(at) => upto = at,
            None => {}
        }
    }
    let r = Pin::new(inner).poll_write(cx, &buf[..upto]);
    if let Poll::Ready(Ok(n)) = r {
        tx.feed(&buf[..n]);
    }
    r
}

fn parked_error() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "HTTP/2 connection closed")
}

impl AsyncRead for DrainIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        if !this.ctl.inject_ack.get() {
            let before = buf.filled().len();
            let r = Pin::new(inner).poll_read(cx, buf);
            if let Poll::Ready(Ok(())) = r {
                let new = &buf.filled()[before..];
                if new.is_empty() && buf.remaining() > 0 {
                    this.ctl.eof.set(true);
                }
                this.rx.feed(new);
            }
            return r;
        }
        if this.rx.at_boundary() {
            let n = (SHUTDOWN_PING_ACK.len() - this.injected).min(buf.remaining());
            buf.put_slice(&SHUTDOWN_PING_ACK[this.injected..this.injected + n]);
            this.injected += n;
            if this.injected == SHUTDOWN_PING_ACK.len() {
                this.ctl.inject_ack.set(false);
            }
            return Poll::Ready(Ok(()));
        }
        // Up to the next frame boundary (or header) only, so the ACK goes
        // in between two frames.
        let mut scratch = [0u8; 2048];
        let want = this.rx.next_mark().min(buf.remaining());
        let mut part = ReadBuf::new(&mut scratch[..want.min(2048)]);
        let r = Pin::new(inner).poll_read(cx, &mut part);
        if let Poll::Ready(Ok(())) = r {
            let got = part.filled();
            if got.is_empty() && want > 0 {
                this.ctl.eof.set(true);
            }
            this.rx.feed(got);
            buf.put_slice(got);
        }
        r
    }
}

impl AsyncWrite for DrainIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Err(parked_error()));
        };
        write_filtered(&mut this.tx, &this.ctl, inner, cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Err(parked_error()));
        };
        if this.ctl.drop_ping.get() {
            // `h2` writes control frames from its first buffer.
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &b[..]);
            return write_filtered(&mut this.tx, &this.ctl, inner, cx, first);
        }
        let r = Pin::new(inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(mut n)) = r {
            for b in bufs {
                if n == 0 {
                    break;
                }
                let take = b.len().min(n);
                this.tx.feed(&b[..take]);
                n -= take;
            }
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| i.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        if !this.ctl.defer_shutdown.get() {
            return Pin::new(inner).poll_shutdown(cx);
        }
        std::task::ready!(Pin::new(&mut *inner).poll_flush(cx))?;
        *this.ctl.parked.borrow_mut() = this.inner.take();
        Poll::Ready(Ok(()))
    }
}

/// Where frames start in an HTTP/2 byte stream (after the client preface).
#[derive(Debug, Clone, Copy)]
struct Framer {
    /// Bytes of the connection preface still to come.
    preface: usize,
    head: [u8; 3],
    /// Bytes of the current frame header seen (0..9).
    have: usize,
    /// Payload bytes of the current frame still to come.
    skip: usize,
}

impl Framer {
    fn new(preface: usize) -> Self {
        Framer {
            preface,
            head: [0; 3],
            have: 0,
            skip: 0,
        }
    }

    /// Whether the next byte starts a frame.
    fn at_boundary(&self) -> bool {
        self.preface == 0 && self.have == 0 && self.skip == 0
    }

    /// Bytes to the end of the preface, of the frame header or of the frame.
    fn next_mark(&self) -> usize {
        if self.preface > 0 {
            self.preface
        } else if self.have > 0 || self.skip == 0 {
            9 - self.have
        } else {
            self.skip
        }
    }

    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let n = self.next_mark().min(data.len());
            if self.preface > 0 {
                self.preface -= n;
            } else if self.have > 0 || self.skip == 0 {
                for (i, b) in data[..n].iter().enumerate() {
                    if self.have + i < 3 {
                        self.head[self.have + i] = *b;
                    }
                }
                self.have += n;
                if self.have == 9 {
                    self.have = 0;
                    self.skip = usize::from(self.head[0]) << 16
                        | usize::from(self.head[1]) << 8
                        | usize::from(self.head[2]);
                }
            } else {
                self.skip -= n;
            }
            data = &data[n..];
        }
    }

    /// Where in `data` (the bytes that follow what was fed) the frame
    /// `frame` starts, if it is there whole.
    fn find(mut self, data: &[u8], frame: &[u8]) -> Option<usize> {
        let mut at = 0;
        while at < data.len() {
            if self.at_boundary() && data[at..].starts_with(frame) {
                return Some(at);
            }
            let n = self.next_mark().min(data.len() - at);
            self.feed(&data[at..at + n]);
            at += n;
        }
        None
    }
}

/// The header list size the codec itself accepts: well above Envoy's
/// `max_request_headers_kb` (checked per stream, with Envoy's reset) so that
/// only absurd header blocks are refused by the codec.
fn codec_header_list_limit(rt: &HttpListenerRuntime) -> u32 {
    let envoy = u64::from(rt.hcm.max_request_headers_kb) * 1024;
    let per_header = 32 * u64::from(rt.hcm.common.max_headers_count);
    (4 * envoy + per_header).min(u64::from(u32::MAX)) as u32
}

/// Whether the client reset the stream before it was accepted.
fn already_reset(respond: &mut SendResponse<Bytes>) -> bool {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    matches!(respond.poll_reset(&mut cx), std::task::Poll::Ready(_))
}

/// The connection-level counters of a failure.
fn on_failure(rt: &HttpListenerRuntime, failure: Failure) {
    let stats = &rt.stats.hcm;
    match failure {
        Failure::Messaging | Failure::PrematureResets => stats.downstream_cx_protocol_error.inc(),
        Failure::ResetRate => stats.downstream_cx_protocol_error.inc(),
        _ => {}
    }
}

/// State shared by a connection and its streams (one worker thread).
#[derive(Debug)]
struct ConnShared {
    open: Cell<usize>,
    last_closed: Cell<Instant>,
    /// Streams closed so far, and those of them reset prematurely.
    closed: Cell<u64>,
    premature: Cell<u64>,
    drain: Cell<bool>,
    drain_waker: std::cell::RefCell<Option<std::task::Waker>>,
}

impl ConnShared {
    fn new() -> Self {
        ConnShared {
            open: Cell::new(0),
            last_closed: Cell::new(crate::clock::now()),
            closed: Cell::new(0),
            premature: Cell::new(0),
            drain: Cell::new(false),
            drain_waker: std::cell::RefCell::new(None),
        }
    }

    /// Since when the connection has had no open stream, if it has none.
    fn idle_since(&self) -> Option<Instant> {
        (self.open.get() == 0).then(|| self.last_closed.get())
    }

    /// A stream ended; `premature`: without a response, within a second.
    /// Closes the connection when premature resets are half of its streams
    /// (Envoy's `maybeDrainDueToPrematureResets`).
    fn stream_closed(&self, premature: bool, rt: &HttpListenerRuntime, state: &H2State) {
        let closed = self.closed.get() + 1;
        self.closed.set(closed);
        if !premature {
            return;
        }
        let bad = self.premature.get() + 1;
        self.premature.set(bad);
        let too_many = if closed < PREMATURE_RESET_TOTAL {
            bad * 2 >= PREMATURE_RESET_TOTAL
        } else {
            bad * 2 >= closed
        };
        if too_many && state.failure().is_none() {
            rt.stats.hcm.downstream_rq_too_many_premature_resets.inc();
            state.fail(Failure::PrematureResets);
        }
    }

    /// A response goes out while the listener drains (Envoy decides on each
    /// response head): the drain sequence starts.
    fn request_drain(&self) {
        if !self.drain.replace(true)
            && let Some(w) = self.drain_waker.borrow_mut().take()
        {
            w.wake();
        }
    }

    fn poll_drain(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if self.drain.get() {
            return std::task::Poll::Ready(());
        }
        *self.drain_waker.borrow_mut() = Some(cx.waker().clone());
        std::task::Poll::Pending
    }
}

/// `connection_keepalive`: a PING every interval (with jitter), the
/// connection closed when nothing comes back within the timeout.
struct Keepalive {
    config: Option<rvoy_model::hcm::Keepalive>,
    ping: Option<h2::PingPong>,
    next_ping: Option<Instant>,
    /// When the PING awaiting its ACK was sent.
    sent: Option<Instant>,
}

impl Keepalive {
    fn new(config: Option<&rvoy_model::hcm::Keepalive>, ping: Option<h2::PingPong>) -> Self {
        let config = config.filter(|k| k.interval.is_some()).cloned();
        let mut k = Keepalive {
            next_ping: None,
            sent: None,
            ping: if config.is_some() { ping } else { None },
            config,
        };
        k.schedule(crate::clock::now());
        k
    }

    fn schedule(&mut self, now: Instant) {
        self.next_ping = self.config.as_ref().and_then(|c| {
            let interval = c.interval?;
            let jitter = interval.mul_f64(c.jitter_percent.clamp(0.0, 100.0) / 100.0);
            let extra = if jitter.is_zero() {
                Duration::ZERO
            } else {
                jitter.mul_f64(fastrand::f64())
            };
            Some(now + interval + extra)
        });
    }

    fn deadline(&self) -> Option<Instant> {
        match (self.sent, &self.config) {
            (Some(at), Some(c)) => Some(at + c.timeout),
            _ => self.next_ping,
        }
    }

    /// Sends a PING or closes on a missing ACK when due; true if it acted.
    fn on_timer(&mut self, now: Instant, state: &H2State) -> bool {
        let Some(config) = &self.config else {
            return false;
        };
        if let Some(at) = self.sent {
            if at + config.timeout > now {
                return false;
            }
            if state.last_rx() > at {
                // Frames arrived meanwhile: the peer is alive.
                self.sent = None;
                self.schedule(now);
            } else {
                state.fail(Failure::KeepaliveTimeout);
            }
            return true;
        }
        if self.next_ping.is_some_and(|t| t <= now) {
            if let Some(p) = self.ping.as_mut()
                && p.send_ping(h2::Ping::opaque()).is_ok()
            {
                self.sent = Some(now);
            }
            self.next_ping = None;
            if self.sent.is_none() {
                self.schedule(now);
            }
            return true;
        }
        false
    }

    fn poll_pong(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if self.sent.is_none() {
            return std::task::Poll::Pending;
        }
        let Some(p) = self.ping.as_mut() else {
            return std::task::Poll::Pending;
        };
        match p.poll_pong(cx) {
            std::task::Poll::Ready(Ok(_)) => {
                self.sent = None;
                self.schedule(crate::clock::now());
                std::task::Poll::Ready(())
            }
            std::task::Poll::Ready(Err(_)) => {
                self.ping = None;
                self.sent = None;
                std::task::Poll::Pending
            }
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

fn finish(rt: &HttpListenerRuntime, state: &H2State, opened: Instant, local: bool, active: usize) {
    let stats = &rt.stats.hcm;
    state.close();
    stats.downstream_cx_active.dec();
    stats.downstream_cx_http2_active.dec();
    stats.connection_closed(&rvoy_stats::Recorder::default(), local, opened);
    if active > 0 {
        stats.downstream_cx_destroy_active_rq.inc();
        if local {
            stats.downstream_cx_destroy_local_active_rq.inc();
        } else {
            stats.downstream_cx_destroy_remote_active_rq.inc();
        }
    }
}

/// Envoy's codec checks on a request head: header count and header list
/// size (RFC 7541 sizes, pseudo-headers included).
fn head_limits_exceeded(
    parts: &http::request::Parts,
    rt: &HttpListenerRuntime,
) -> Option<&'static str> {
    let uri = &parts.uri;
    let mut count =
        2 + usize::from(uri.scheme().is_some()) + usize::from(uri.authority().is_some());
    let mut size: u64 = (":method".len() + parts.method.as_str().len() + 32) as u64;
    size += (":path".len() + uri.path_and_query().map_or(0, |p| p.as_str().len()) + 32) as u64;
    if let Some(s) = uri.scheme_str() {
        size += (":scheme".len() + s.len() + 32) as u64;
    }
    if let Some(a) = uri.authority() {
        size += (":authority".len() + a.as_str().len() + 32) as u64;
    }
    if let Some(p) = parts.extensions.get::<h2::ext::Protocol>() {
        count += 1;
        size += (":protocol".len() + p.as_str().len() + 32) as u64;
    }
    for (k, v) in &parts.headers {
        count += 1;
        size += (k.as_str().len() + v.len() + 32) as u64;
    }
    if size > u64::from(rt.hcm.max_request_headers_kb) * 1024 {
        return Some("header_list_size_too_large");
    }
    if count > rt.hcm.common.max_headers_count as usize {
        return Some("header_overflow");
    }
    None
}

/// Runs one stream; returns whether a response head was sent.
#[allow(clippy::manual_async_fn)] // an `async move` block on purpose, see the body
fn serve_stream(
    request: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    rt: &Arc<HttpListenerRuntime>,
    worker: Rc<WorkerContext>,
    conn: ConnInfo,
    state: &Rc<H2State>,
    shared: &Rc<ConnShared>,
) -> impl std::future::Future<Output = bool> {
    // An `async move` block, not an `async fn`: the latter keeps a second
    // copy of its arguments in the future (rust-lang/rust#62958), written
    // on every request.
    async move {
        let (mut parts, body) = request.into_parts();
        let stats = &rt.stats.hcm;
        if let Some(which) = head_limits_exceeded(&parts, rt) {
            // Envoy's codec resets the stream (INTERNAL_ERROR).
            match which {
                "header_overflow" => state.stats.header_overflow.inc(),
                _ => state.stats.header_list_size_too_large.inc(),
            }
            stats.downstream_rq_total.inc();
            stats.downstream_rq_http2_total.inc();
            stats.downstream_rq_rx_reset.inc();
            state.note_local_reset();
            respond.send_reset(h2::Reason::INTERNAL_ERROR);
            return false;
        }
        let extended_connect = parts
            .extensions
            .get::<h2::ext::Protocol>()
            .map(|p| p.as_str().to_owned());
        let authority = parts
            .uri
            .authority()
            .map(|a| smol_str::SmolStr::new(a.as_str()))
            .or_else(|| {
                parts
                    .headers
                    .get(http::header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .map(smol_str::SmolStr::new)
            });
        if authority.is_none() {
            // Envoy's codec: a request needs `:authority` or `host`.
            state.stats.rx_messaging_error.inc();
            stats.downstream_rq_total.inc();
            stats.downstream_rq_http2_total.inc();
            stats.downstream_rq_rx_reset.inc();
            if rt
                .hcm
                .http2
                .stream_error(rt.hcm.stream_error_on_invalid_http_message)
            {
                state.note_local_reset();
                respond.send_reset(h2::Reason::PROTOCOL_ERROR);
            } else {
                state.fail(Failure::Messaging);
            }
            return false;
        }
        let mut method = parts.method;
        let path = if method == Method::CONNECT && extended_connect.is_none() {
            // A plain CONNECT has no `:path`.
            smol_str::SmolStr::default()
        } else {
            parts
                .uri
                .path_and_query()
                .map_or_else(|| smol_str::SmolStr::new_static("/"), |p| p.as_str().into())
        };
        let mut headers = std::mem::take(&mut parts.headers);
        headers.remove(http::header::HOST);
        join_cookies(&mut headers);
        if let Some(protocol) = &extended_connect {
            // Extended CONNECT (RFC 8441) is an HTTP/1 upgrade to the rest of
            // the proxy, as in Envoy: GET with `upgrade: <protocol>`.
            method = Method::GET;
            if let Ok(v) = HeaderValue::from_str(protocol) {
                headers.insert(http::header::UPGRADE, v);
                headers.insert(
                    http::header::CONNECTION,
                    HeaderValue::from_static("upgrade"),
                );
            }
        }
        let head_bytes = rvoy_format::header_map_bytes(&headers);
        let has_body = !body.is_end_stream();
        let request = Request {
            method,
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
            replay_body: None,
            internal_redirects: 0,
        };
        let mut ds = H2Downstream {
            recv: body,
            respond,
            send: None,
            trailers: None,
            done: !has_body,
            sent: 0,
            received: 0,
            state: state.clone(),
            upgrade: extended_connect.is_some(),
            reset_by_peer: false,
            rt: rt.clone(),
            conn: shared.clone(),
        };
        let outcome = stream::handle(&mut ds, request, rt, &worker, &conn).await;
        let responded = ds.send.is_some();
        if outcome.reset {
            if !ds.peer_reset() {
                state.note_local_reset();
                stats.downstream_rq_tx_reset.inc();
                match ds.send.as_mut() {
                    Some(s) => s.send_reset(h2::Reason::INTERNAL_ERROR),
                    None => ds.respond.send_reset(h2::Reason::INTERNAL_ERROR),
                }
            } else {
                stats.downstream_rq_rx_reset.inc();
            }
        } else if ds.peer_reset() {
            stats.downstream_rq_rx_reset.inc();
        }
        responded
    }
}

/// HTTP/2 splits `cookie` into one field per cookie; the rest of the proxy
/// (and HTTP/1 upstreams) get one `cookie` header joined with `; `, as
/// Envoy's codec does.
fn join_cookies(headers: &mut HeaderMap) {
    let mut values = headers.get_all(http::header::COOKIE).iter();
    let (Some(first), Some(_)) = (values.next(), values.next()) else {
        return;
    };
    let mut joined = first.as_bytes().to_vec();
    for v in headers.get_all(http::header::COOKIE).iter().skip(1) {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(v.as_bytes());
    }
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        headers.insert(http::header::COOKIE, v);
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
    state: Rc<H2State>,
    /// An extended CONNECT (websocket over HTTP/2): a `101` from upstream is
    /// a `200` here, and the stream carries the tunnel.
    upgrade: bool,
    reset_by_peer: bool,
    rt: Arc<HttpListenerRuntime>,
    /// The connection, told when a response head goes out while draining.
    conn: Rc<ConnShared>,
}

impl H2Downstream {
    /// Whether the client reset the stream, or its connection is gone (Envoy
    /// counts the streams a connection close resets as reset by the peer).
    fn peer_reset(&mut self) -> bool {
        if self.reset_by_peer {
            return true;
        }
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let polled = match self.send.as_mut() {
            Some(s) => s.poll_reset(&mut cx),
            None => self.respond.poll_reset(&mut cx),
        };
        if polled.is_ready() {
            self.reset_by_peer = true;
        }
        self.reset_by_peer
    }
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
                if self.recv.is_end_stream() {
                    self.done = true;
                }
                Ok(Some(chunk))
            }
            Some(Err(e)) => {
                if (e.is_reset() && e.is_remote()) || e.is_io() {
                    self.reset_by_peer = true;
                }
                Err(DownstreamError::Reset)
            }
            None => {
                self.done = true;
                match self.recv.trailers().await {
                    Ok(Some(t)) => {
                        self.state.stats.trailers.inc();
                        self.trailers = Some(t);
                    }
                    Ok(None) => {}
                    Err(_) => return Err(DownstreamError::Reset),
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

    async fn closed(&mut self) {
        let respond = &mut self.respond;
        // A reset, or an error: the connection is gone.
        let _ = match self.send.as_mut() {
            Some(send) => std::future::poll_fn(|cx| send.poll_reset(cx)).await,
            None => std::future::poll_fn(|cx| respond.poll_reset(cx)).await,
        };
        self.reset_by_peer = true;
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
        crate::forwarding::strip_connection_specific(headers);
        let status = if self.upgrade && status == StatusCode::SWITCHING_PROTOCOLS {
            // The upgrade succeeded: over HTTP/2 that is a 200 (RFC 8441).
            headers.remove("sec-websocket-accept");
            StatusCode::OK
        } else {
            status
        };
        let mut resp = http::Response::new(());
        *resp.status_mut() = status;
        // h2 takes the map; a copy stays behind only for what reads the sent
        // headers later (access logs and the other formatters).
        *resp.headers_mut() = if self.rt.formats_stream_info() {
            headers.clone()
        } else {
            std::mem::take(headers)
        };
        self.state.queued(1, 0);
        let send = self
            .respond
            .send_response(resp, end_stream)
            .map_err(|_| DownstreamError::Reset)?;
        self.send = Some(send);
        if self.rt.drain_close() {
            // Envoy's drain decision on a response head: GOAWAY.
            self.conn.request_drain();
        }
        Ok(())
    }

    async fn send_data(&mut self, data: Bytes, end_stream: bool) -> Result<(), DownstreamError> {
        let Some(send) = self.send.as_mut() else {
            return Err(DownstreamError::Reset);
        };
        self.sent += data.len() as u64;
        self.state
            .queued(H2State::data_frames(data.len()), data.len() as u64);
        send_all(send, data, end_stream)
            .await
            .map_err(|_| DownstreamError::Reset)
    }

    async fn send_trailers(&mut self, trailers: HeaderMap) -> Result<(), DownstreamError> {
        let Some(send) = self.send.as_mut() else {
            return Err(DownstreamError::Reset);
        };
        self.state.queued(1, 0);
        send.send_trailers(trailers)
            .map_err(|_| DownstreamError::Reset)
    }

    async fn read_raw(&mut self) -> Result<Option<Bytes>, DownstreamError> {
        // A tunnel's bytes are the stream's DATA frames.
        if self.done {
            return Ok(None);
        }
        self.read_body().await
    }

    fn bytes_sent(&self) -> u64 {
        self.sent
    }

    fn bytes_received(&self) -> u64 {
        self.received
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::conn_h1::tests::Fixture;

    #[test]
    fn framer_finds_frames_whatever_the_chunking() {
        let mut bytes = PREFACE.to_vec();
        bytes.extend_from_slice(&[0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100]);
        bytes.extend_from_slice(&[0, 0, 0, 4, 1, 0, 0, 0, 0]);
        let ping_at = bytes.len();
        bytes.extend_from_slice(&SHUTDOWN_PING);
        bytes.extend_from_slice(&[0, 0, 4, 8, 0, 0, 0, 0, 0, 0, 1, 0, 0]);
        for chunk in [1, 2, 5, 9, 17, 1000] {
            let mut f = Framer::new(PREFACE.len());
            let mut fed = 0;
            let mut found = None;
            for c in bytes.chunks(chunk) {
                if found.is_none() {
                    found = f.find(c, &SHUTDOWN_PING).map(|at| fed + at);
                }
                f.feed(c);
                fed += c.len();
            }
            assert!(f.at_boundary(), "chunk {chunk}");
            // Found when it is whole within one chunk.
            let whole = ping_at / chunk == (ping_at + SHUTDOWN_PING.len() - 1) / chunk;
            assert_eq!(found, whole.then_some(ping_at), "chunk {chunk}");
        }
    }

    /// Envoy's drain sequence at `idle_timeout`, as a raw h2c client sees it:
    /// GOAWAY (2^31-1), no PING, `drain_timeout` later GOAWAY (0), and the
    /// close `delayed_close_timeout` after that.
    #[test]
    fn idle_timeout_drains_as_envoy_does() {
        let f = Fixture::new(
            "common_http_protocol_options: {idle_timeout: 0.2s}
          drain_timeout: 0.3s
          delayed_close_timeout: 0.1s",
        );
        f.run(|mut client, stream, rt, worker, conn| async move {
            let started = Instant::now();
            let task = tokio::task::spawn_local(crate::serve_connection(
                crate::Transport::Ready(stream),
                rt,
                worker,
                conn,
            ));
            let mut hello = PREFACE.to_vec();
            hello.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
            client.write_all(&hello).await.expect("preface");
            let mut frames: Vec<(Duration, u8, Vec<u8>)> = Vec::new();
            let mut buf = Vec::new();
            let mut scratch = [0u8; 4096];
            let closed = loop {
                let read = tokio::time::timeout(Duration::from_secs(3), client.read(&mut scratch));
                let n = match read.await.expect("closed in time") {
                    Ok(0) | Err(_) => break started.elapsed(),
                    Ok(n) => n,
                };
                buf.extend_from_slice(&scratch[..n]);
                while buf.len() >= 9 {
                    let len =
                        usize::from(buf[0]) << 16 | usize::from(buf[1]) << 8 | usize::from(buf[2]);
                    if buf.len() < 9 + len {
                        break;
                    }
                    let (ty, flags) = (buf[3], buf[4]);
                    if ty == 4 && flags & 1 == 0 {
                        client
                            .write_all(&[0, 0, 0, 4, 1, 0, 0, 0, 0])
                            .await
                            .expect("settings ack");
                    }
                    frames.push((started.elapsed(), ty, buf[9..9 + len].to_vec()));
                    buf.drain(..9 + len);
                }
            };
            task.await.expect("served");
            assert!(
                !frames.iter().any(|(_, ty, _)| *ty == 6),
                "no PING: {frames:?}"
            );
            let goaways: Vec<_> = frames.iter().filter(|(_, ty, _)| *ty == 7).collect();
            assert_eq!(goaways.len(), 2, "{frames:?}");
            assert_eq!(goaways[0].2, [0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
            assert_eq!(goaways[1].2, [0, 0, 0, 0, 0, 0, 0, 0]);
            let (first, second) = (goaways[0].0, goaways[1].0);
            assert!(first >= Duration::from_millis(150), "{frames:?}");
            assert!(second >= first + Duration::from_millis(250), "{frames:?}");
            assert!(
                closed >= second + Duration::from_millis(50),
                "{closed:?} {frames:?}"
            );
        });
        let s = &f.rt.stats.hcm;
        assert_eq!(f.count(s.downstream_cx_http2_total), 1);
        assert_eq!(f.count(s.downstream_cx_idle_timeout), 1);
        assert_eq!(f.count(s.downstream_cx_delayed_close_timeout), 1);
        assert_eq!(f.count(s.downstream_cx_destroy_local), 1);
        assert_eq!(f.store.gauge_value(s.downstream_cx_active), 0);
    }
}
