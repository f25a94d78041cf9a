//! HTTP/2 connections frame by frame: the byte stream under the `h2` codec,
//! watched in both directions for Envoy's `http2.*` accounting and flood
//! protections (which `h2` does not expose).
//!
//! [`FrameIo`] wraps a connection's stream. It reads ahead (up to
//! [`READ_AHEAD`] bytes, as Envoy reads a socket until it is empty before
//! dispatching) and parses the header of every frame as it hands it to the
//! codec and as the codec writes it, never the payload beyond the few bytes
//! it needs (pad length, error codes). Frames are counted in the order the
//! codec processes them; on a server each RST_STREAM is the end of a
//! hand-over, so the connection manager accounts for the reset stream
//! before the next frame (Envoy's premature-reset check runs per stream).
//! [`H2State`] keeps the counts Envoy keeps:
//!
//! * inbound floods: consecutive empty HEADERS/CONTINUATION/DATA frames,
//!   PRIORITY frames per opened stream, WINDOW_UPDATE frames per DATA frame
//!   sent (`max_consecutive_inbound_frames_with_empty_payload`,
//!   `max_inbound_priority_frames_per_stream`,
//!   `max_inbound_window_update_frames_per_data_frame_sent`);
//! * outbound floods: PING/SETTINGS acknowledgements owed but not yet
//!   written (`max_outbound_control_frames`, and the codec's own limit of
//!   1000 that Envoy's nghttp2 applies first), and response frames queued
//!   but not yet written (`max_outbound_frames`);
//! * the server's RST_STREAM token bucket (`stream_reset_burst` /
//!   `stream_reset_rate`, GOAWAY `INTERNAL_ERROR` when empty);
//! * `rx_reset`, `tx_reset`, `stream_refused_errors`, `pending_send_bytes`,
//!   `outbound_frames_active`, `outbound_control_frames_active`, and the
//!   connection's byte counters;
//! * streams the codec rejected as malformed before the connection manager
//!   saw them (Envoy's `rx_messaging_error`), and GOAWAY from the peer.
//!
//! A server's first SETTINGS frame goes out as Envoy's (the same values,
//! `SETTINGS_ENABLE_CONNECT_PROTOCOL` always, no `SETTINGS_MAX_HEADER_LIST_SIZE`,
//! Envoy's order).
//!
//! When a limit is crossed the state records a [`Failure`]; for the ones that
//! close the connection outright the wrapper fails every later read and
//! write, so `h2` gives up on the connection without writing anything more.

use std::cell::{Cell, RefCell};
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::{BufMut, BytesMut};
use rvoy_model::hcm::Http2Options;
use rvoy_stats::Counter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::stats::Http2CodecStats;

/// How many bytes are read from the socket at most before `h2` sees them.
pub const READ_AHEAD: usize = 64 * 1024;

/// The most one read of the socket takes.
const READ_CHUNK: usize = 16 * 1024;

/// Bytes handed to `h2` in one go before the wrapper yields to the
/// runtime, so accepted streams (and their resets) are seen between batches.
const YIELD_EVERY: usize = 16 * 1024;

/// The limit of pending PING/SETTINGS acknowledgements of Envoy's nghttp2
/// (its `max_outbound_ack`): crossing it closes the connection uncounted.
const CODEC_MAX_OUTBOUND_ACK: u64 = 1000;

/// The largest payload of one DATA frame `h2` writes (the default
/// `SETTINGS_MAX_FRAME_SIZE`), for the queued-frames estimate.
const MAX_FRAME: u64 = 16 * 1024;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;

const FLAG_END_STREAM: u8 = 0x1;
const FLAG_ACK: u8 = 0x1;
const FLAG_PADDED: u8 = 0x8;

/// The client connection preface (skipped before frames start).
const PREFACE_LEN: usize = 24;

/// Why a connection must end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// `http2.inbound_empty_frames_flood`.
    EmptyFramesFlood,
    /// `http2.inbound_priority_frames_flood`.
    PriorityFlood,
    /// `http2.inbound_window_update_frames_flood`.
    WindowUpdateFlood,
    /// `http2.outbound_control_flood`.
    OutboundControlFlood,
    /// The codec's own limit on owed acknowledgements (not counted).
    CodecFlood,
    /// `http2.outbound_flood`.
    OutboundFlood,
    /// The RST_STREAM token bucket ran out: GOAWAY `INTERNAL_ERROR`.
    ResetRate,
    /// An invalid request while `stream_error_on_invalid_http_message` is
    /// off (`http2.rx_messaging_error`).
    Messaging,
    /// Too many streams reset before they got a response
    /// (`downstream_rq_too_many_premature_resets`).
    PrematureResets,
    /// No PING acknowledgement in time (`http2.keepalive_timeout`).
    KeepaliveTimeout,
}

impl Failure {
    /// Whether the connection is closed at once, without writing anything
    /// more (everything but the reset rate limit, which sends GOAWAY).
    pub fn aborts(self) -> bool {
        self != Failure::ResetRate
    }
}

/// The flood limits of one connection.
#[derive(Clone, Copy, Debug)]
struct Limits {
    empty_frames: u32,
    priority_per_stream: u64,
    window_update_per_data: u64,
    outbound_control: u64,
    outbound: u64,
    reset_burst: f64,
    reset_rate: f64,
}

impl Limits {
    fn from(o: &Http2Options) -> Self {
        Limits {
            empty_frames: o.max_consecutive_inbound_frames_with_empty_payload,
            priority_per_stream: u64::from(o.max_inbound_priority_frames_per_stream),
            window_update_per_data: u64::from(
                o.max_inbound_window_update_frames_per_data_frame_sent,
            ),
            outbound_control: u64::from(o.max_outbound_control_frames),
            outbound: u64::from(o.max_outbound_frames),
            reset_burst: o.stream_reset_burst as f64,
            reset_rate: o.stream_reset_rate as f64,
        }
    }
}

/// What one HTTP/2 connection has seen go by, shared by the connection task,
/// its streams and the [`FrameIo`] under the codec (one worker thread).
#[derive(Debug)]
pub struct H2State {
    server: bool,
    /// `stream_error_on_invalid_http_message`: an invalid request resets its
    /// stream only (else it closes the connection).
    stream_error: bool,
    limits: Limits,
    pub stats: std::sync::Arc<Http2CodecStats>,
    rx_bytes: Counter,
    tx_bytes: Counter,
    /// The worker's recorder, for the per-frame and per-stream stats.
    pub rec: rvoy_stats::Recorder,
    /// The highest stream id the peer opened.
    max_peer_stream: Cell<u32>,
    /// Streams the peer opened.
    inbound_streams: Cell<u64>,
    empty_run: Cell<u32>,
    priority_frames: Cell<u64>,
    window_updates: Cell<u64>,
    outbound_data_frames: Cell<u64>,
    /// PING/SETTINGS acknowledgements owed and not yet written.
    owed_acks: Cell<u64>,
    /// Frames handed to the codec by streams and not yet written (estimate).
    queued_frames: Cell<u64>,
    pending_send_bytes: Cell<u64>,
    reset_tokens: Cell<f64>,
    reset_refill: Cell<Instant>,
    /// When bytes last arrived from the peer.
    last_rx: Cell<Instant>,
    /// The highest stream id the connection manager accepted.
    pub last_accepted: Cell<u32>,
    /// RST_STREAM frames we asked for and have not seen written yet.
    local_resets: Cell<u32>,
    /// Streams the codec rejected before they were accepted.
    rejected_streams: Cell<u64>,
    /// The peer's GOAWAY (upstream connections): its last stream id.
    goaway: Cell<Option<u32>>,
    failure: Cell<Option<Failure>>,
    waker: RefCell<Option<Waker>>,
}

impl H2State {
    /// The state of a server (`server`) or client connection with these
    /// options. `rx_bytes`/`tx_bytes` count the connection's bytes.
    pub fn new(
        server: bool,
        opts: &Http2Options,
        stream_error: bool,
        stats: std::sync::Arc<Http2CodecStats>,
        rx_bytes: Counter,
        tx_bytes: Counter,
        rec: rvoy_stats::Recorder,
    ) -> Rc<Self> {
        let limits = Limits::from(opts);
        let now = crate::clock::now();
        Rc::new(H2State {
            server,
            stream_error,
            limits,
            stats,
            rx_bytes,
            tx_bytes,
            rec,
            max_peer_stream: Cell::new(0),
            inbound_streams: Cell::new(0),
            empty_run: Cell::new(0),
            priority_frames: Cell::new(0),
            window_updates: Cell::new(0),
            outbound_data_frames: Cell::new(0),
            owed_acks: Cell::new(0),
            queued_frames: Cell::new(0),
            pending_send_bytes: Cell::new(0),
            reset_tokens: Cell::new(limits.reset_burst),
            reset_refill: Cell::new(now),
            last_rx: Cell::new(now),
            last_accepted: Cell::new(0),
            local_resets: Cell::new(0),
            rejected_streams: Cell::new(0),
            goaway: Cell::new(None),
            failure: Cell::new(None),
            waker: RefCell::new(None),
        })
    }

    /// Why the connection must end, if it must.
    pub fn failure(&self) -> Option<Failure> {
        self.failure.get()
    }

    /// Records a failure (the first one wins) and wakes the connection task.
    pub fn fail(&self, f: Failure) {
        if self.failure.get().is_some() {
            return;
        }
        self.failure.set(Some(f));
        match f {
            Failure::EmptyFramesFlood => self.stats.inbound_empty_frames_flood.inc(),
            Failure::PriorityFlood => self.stats.inbound_priority_frames_flood.inc(),
            Failure::WindowUpdateFlood => self.stats.inbound_window_update_frames_flood.inc(),
            Failure::OutboundControlFlood => self.stats.outbound_control_flood.inc(),
            Failure::OutboundFlood => self.stats.outbound_flood.inc(),
            Failure::KeepaliveTimeout => self.stats.keepalive_timeout.inc(),
            Failure::CodecFlood
            | Failure::ResetRate
            | Failure::Messaging
            | Failure::PrematureResets => {}
        }
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Resolves once a failure is recorded (for the connection task).
    pub fn poll_failure(&self, cx: &mut Context<'_>) -> Poll<Failure> {
        if let Some(f) = self.failure.get() {
            return Poll::Ready(f);
        }
        let mut slot = self.waker.borrow_mut();
        match slot.as_ref() {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// When bytes last arrived from the peer.
    pub fn last_rx(&self) -> Instant {
        self.last_rx.get()
    }

    /// The last stream id of the peer's GOAWAY, if it sent one.
    pub fn goaway(&self) -> Option<u32> {
        self.goaway.get()
    }

    /// Streams the codec rejected before the connection manager accepted them.
    pub fn rejected_streams(&self) -> u64 {
        self.rejected_streams.get()
    }

    /// A stream is about to be reset by us (so the RST_STREAM written for it
    /// is not taken for one the codec sent on its own).
    pub fn note_local_reset(&self) {
        self.local_resets.set(self.local_resets.get() + 1);
    }

    /// A stream handed `frames` frames carrying `bytes` body bytes to the
    /// codec (`pending_send_bytes`, `outbound_frames_active`); checks the
    /// outbound flood limit.
    pub fn queued(&self, frames: u64, bytes: u64) {
        if bytes > 0 {
            self.pending_send_bytes
                .set(self.pending_send_bytes.get() + bytes);
            self.rec.gauge_add(self.stats.pending_send_bytes, bytes);
        }
        let q = self.queued_frames.get() + frames;
        self.queued_frames.set(q);
        self.rec
            .gauge_add(self.stats.outbound_frames_active, frames);
        if self.server && q > self.limits.outbound {
            self.fail(Failure::OutboundFlood);
        }
    }

    /// The frames a DATA payload of `len` bytes is written as.
    pub fn data_frames(len: usize) -> u64 {
        (len as u64).div_ceil(MAX_FRAME).max(1)
    }

    /// Settles the gauges when the connection ends.
    pub fn close(&self) {
        self.stats
            .pending_send_bytes
            .sub(self.pending_send_bytes.replace(0));
        self.stats
            .outbound_frames_active
            .sub(self.queued_frames.replace(0));
        self.stats
            .outbound_control_frames_active
            .sub(self.owed_acks.replace(0));
    }

    fn take_reset_token(&self) -> bool {
        let now = crate::clock::now();
        let elapsed = now
            .saturating_duration_since(self.reset_refill.get())
            .as_secs_f64();
        self.reset_refill.set(now);
        let tokens = (self.reset_tokens.get() + elapsed * self.limits.reset_rate)
            .min(self.limits.reset_burst);
        if tokens < 1.0 {
            self.reset_tokens.set(tokens);
            return false;
        }
        self.reset_tokens.set(tokens - 1.0);
        true
    }

    /// One frame read from the peer.
    fn on_inbound(&self, f: &Frame) {
        match f.ty {
            HEADERS | CONTINUATION | DATA => {
                let payload = f.len.saturating_sub(u32::from(f.pad));
                if payload == 0 && f.flags & FLAG_END_STREAM == 0 {
                    self.empty_run.set(self.empty_run.get() + 1);
                } else {
                    self.empty_run.set(0);
                }
                if f.ty == HEADERS && f.stream > self.max_peer_stream.get() {
                    self.max_peer_stream.set(f.stream);
                    self.inbound_streams.set(self.inbound_streams.get() + 1);
                }
            }
            PRIORITY => self.priority_frames.set(self.priority_frames.get() + 1),
            WINDOW_UPDATE => self.window_updates.set(self.window_updates.get() + 1),
            RST_STREAM => {
                if f.stream != 0
                    && f.stream <= self.max_peer_stream.get().max(self.max_own_stream())
                {
                    self.stats.rx_reset.inc();
                }
                if self.server && !self.take_reset_token() {
                    self.fail(Failure::ResetRate);
                }
            }
            SETTINGS | PING if f.flags & FLAG_ACK == 0 => {
                self.owed_acks.set(self.owed_acks.get() + 1);
                self.stats.outbound_control_frames_active.inc();
            }
            GOAWAY => self.goaway.set(Some(f.code_hi & 0x7fff_ffff)),
            _ => {}
        }
        if !self.server {
            return;
        }
        if self.empty_run.get() > self.limits.empty_frames {
            self.fail(Failure::EmptyFramesFlood);
        } else if self.priority_frames.get()
            > self.limits.priority_per_stream * (1 + self.inbound_streams.get())
        {
            self.fail(Failure::PriorityFlood);
        } else if self.window_updates.get()
            > 1 + 2
                * (self.inbound_streams.get()
                    + self.limits.window_update_per_data * self.outbound_data_frames.get())
        {
            self.fail(Failure::WindowUpdateFlood);
        }
    }

    /// Highest stream id this side opened (client connections).
    fn max_own_stream(&self) -> u32 {
        if self.server { 0 } else { u32::MAX >> 1 }
    }

    /// After a read batch: the acknowledgements it made us owe.
    fn check_owed(&self) {
        if !self.server {
            return;
        }
        let owed = self.owed_acks.get();
        if owed > CODEC_MAX_OUTBOUND_ACK {
            self.fail(Failure::CodecFlood);
        } else if owed > self.limits.outbound_control {
            self.fail(Failure::OutboundControlFlood);
        }
    }

    /// One frame written to the peer.
    fn on_outbound(&self, f: &Frame) {
        match f.ty {
            DATA => {
                self.outbound_data_frames
                    .set(self.outbound_data_frames.get() + 1);
                let n = u64::from(f.len.saturating_sub(u32::from(f.pad)));
                let left = self.pending_send_bytes.get().min(n);
                self.pending_send_bytes
                    .set(self.pending_send_bytes.get() - left);
                self.rec.gauge_sub(self.stats.pending_send_bytes, left);
                self.dequeue_frame();
            }
            HEADERS => self.dequeue_frame(),
            RST_STREAM => {
                self.stats.tx_reset.inc();
                if f.code_hi == u32::from(h2::Reason::REFUSED_STREAM) {
                    self.stats.stream_refused_errors.inc();
                }
                if self.local_resets.get() > 0 {
                    self.local_resets.set(self.local_resets.get() - 1);
                } else if self.server
                    && f.stream > self.last_accepted.get()
                    && f.code_hi == u32::from(h2::Reason::PROTOCOL_ERROR)
                {
                    // The codec refused a malformed request before the
                    // connection manager ever saw it.
                    self.rejected_streams.set(self.rejected_streams.get() + 1);
                    self.stats.rx_messaging_error.inc();
                    if !self.stream_error {
                        self.fail(Failure::Messaging);
                    }
                }
            }
            SETTINGS | PING if f.flags & FLAG_ACK != 0 && self.owed_acks.get() > 0 => {
                self.owed_acks.set(self.owed_acks.get() - 1);
                self.stats.outbound_control_frames_active.dec();
            }
            _ => {}
        }
    }

    fn dequeue_frame(&self) {
        if self.queued_frames.get() > 0 {
            self.queued_frames.set(self.queued_frames.get() - 1);
            self.rec.gauge_dec(self.stats.outbound_frames_active);
        }
    }
}

/// The parts of a frame the state needs.
#[derive(Debug, Default, Clone, Copy)]
struct Frame {
    len: u32,
    ty: u8,
    flags: u8,
    stream: u32,
    /// Pad length of a padded DATA/HEADERS frame.
    pad: u8,
    /// RST_STREAM: the error code; GOAWAY: the last stream id.
    code_hi: u32,
}

/// Splits a byte stream into frame headers (and a few payload bytes).
#[derive(Debug)]
struct FrameParser {
    /// Bytes of the connection preface still to skip.
    preface: usize,
    head: [u8; 17],
    have: usize,
    /// Head bytes wanted for the current frame (0: header not complete).
    want: usize,
    /// Payload bytes to skip.
    skip: usize,
}

impl FrameParser {
    fn new(preface: bool) -> Self {
        FrameParser {
            preface: if preface { PREFACE_LEN } else { 0 },
            head: [0; 17],
            have: 0,
            want: 0,
            skip: 0,
        }
    }

    fn feed(&mut self, data: &[u8], mut on: impl FnMut(&Frame)) {
        self.feed_until(data, |f| {
            on(f);
            false
        });
    }

    /// Feeds `data` until the end of a frame for which `on` returned true;
    /// returns the bytes consumed (all of `data` when no frame stopped it).
    fn feed_until(&mut self, data: &[u8], mut on: impl FnMut(&Frame) -> bool) -> usize {
        let total = data.len();
        let mut data = data;
        let mut stop = false;
        while !data.is_empty() {
            if self.preface > 0 {
                let n = self.preface.min(data.len());
                self.preface -= n;
                data = &data[n..];
                continue;
            }
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                self.skip -= n;
                data = &data[n..];
                if stop && self.skip == 0 {
                    break;
                }
                continue;
            }
            let target = if self.want == 0 { 9 } else { self.want };
            let n = (target - self.have).min(data.len());
            self.head[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have < target {
                continue;
            }
            let h = &self.head;
            let len = u32::from_be_bytes([0, h[0], h[1], h[2]]);
            let (ty, flags) = (h[3], h[4]);
            if self.want == 0 {
                let extra = match ty {
                    DATA | HEADERS if flags & FLAG_PADDED != 0 => 1,
                    RST_STREAM => 4,
                    GOAWAY => 4,
                    _ => 0,
                };
                self.want = 9 + extra.min(len as usize);
                if self.want > 9 {
                    continue;
                }
            }
            let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
            let mut frame = Frame {
                len,
                ty,
                flags,
                stream,
                pad: 0,
                code_hi: 0,
            };
            match self.want - 9 {
                1 => frame.pad = h[9],
                4 => frame.code_hi = u32::from_be_bytes([h[9], h[10], h[11], h[12]]),
                _ => {}
            }
            stop = on(&frame);
            self.skip = len as usize - (self.want - 9);
            self.have = 0;
            self.want = 0;
            if stop && self.skip == 0 {
                break;
            }
        }
        total - data.len()
    }
}

/// A connection's byte stream with its frames watched (see the module docs).
#[derive(Debug)]
pub struct FrameIo<T> {
    inner: T,
    state: Rc<H2State>,
    rx: FrameParser,
    tx: FrameParser,
    ahead: BytesMut,
    eof: bool,
    since_yield: usize,
    /// The last hand-over stopped at a frame the connection must see
    /// handled first: yield before the next one.
    yield_next: bool,
    /// A server's first SETTINGS frame is still to be rewritten.
    rewrite_settings: bool,
    /// Rewritten bytes not yet written.
    out: BytesMut,
}

impl<T> FrameIo<T> {
    /// Wraps `inner`. A server connection's peer starts with the connection
    /// preface; a client's own writes do.
    pub fn new(inner: T, state: Rc<H2State>) -> Self {
        let server = state.server;
        FrameIo {
            inner,
            state,
            rx: FrameParser::new(server),
            tx: FrameParser::new(!server),
            ahead: BytesMut::new(),
            eof: false,
            since_yield: 0,
            yield_next: false,
            rewrite_settings: server,
            out: BytesMut::new(),
        }
    }

    fn aborted(&self) -> bool {
        self.state.failure.get().is_some_and(Failure::aborts)
    }
}

fn aborted_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "HTTP/2 connection aborted",
    )
}

impl<T: AsyncRead + Unpin> FrameIo<T> {
    /// Reads what the socket has, up to [`READ_AHEAD`] bytes, and watches
    /// its frames. Ready with 0 new bytes at EOF.
    fn fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let start = self.ahead.len();
        while self.ahead.len() < READ_AHEAD && !self.eof {
            // Read into the spare capacity as it is: zeroing 16 KiB first
            // cost more than the read on small frames.
            self.ahead.reserve(READ_CHUNK);
            let mut room = (&mut self.ahead).limit(READ_CHUNK);
            let polled = tokio_util::io::poll_read_buf(Pin::new(&mut self.inner), cx, &mut room);
            match polled {
                Poll::Ready(Ok(0)) => {
                    self.eof = true;
                    break;
                }
                // A read that did not fill its chunk drained the socket: asking
                // again would only grow (and copy) the buffer to hear "later".
                Poll::Ready(Ok(n)) if n < READ_CHUNK => break,
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    if self.ahead.len() > start {
                        break;
                    }
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => {
                    if self.ahead.len() > start {
                        break;
                    }
                    return Poll::Pending;
                }
            }
        }
        let got = self.ahead.len() - start;
        if got > 0 {
            self.state.rec.add(self.state.rx_bytes, got as u64);
            self.state.last_rx.set(crate::clock::now());
        }
        Poll::Ready(Ok(got))
    }

    /// Hands the codec up to `max` read-ahead bytes, watching their frames
    /// as it gets them (so limits fire in the order the codec sees frames,
    /// as in Envoy, not when bytes are read ahead). A server hands over no
    /// more than one RST_STREAM at a time and then yields, so the connection
    /// manager sees each reset stream (premature-reset accounting) before the
    /// codec reads on.
    fn hand_over(&mut self, max: usize) -> BytesMut {
        let state = &self.state;
        let server = state.server;
        let n = self.ahead.len().min(max);
        let failed = state.failure.get().is_some();
        let n = self.rx.feed_until(&self.ahead[..n], |f| {
            state.on_inbound(f);
            server && (f.ty == RST_STREAM || (!failed && state.failure.get().is_some()))
        });
        state.check_owed();
        if n < self.ahead.len().min(max) {
            self.yield_next = true;
        }
        self.ahead.split_to(n)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for FrameIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.aborted() {
            return Poll::Ready(Err(aborted_error()));
        }
        if this.yield_next || (this.ahead.is_empty() && this.since_yield >= YIELD_EVERY) {
            this.yield_next = false;
            this.since_yield = 0;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if this.ahead.is_empty() {
            match this.fill(cx) {
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    this.since_yield = 0;
                    return Poll::Pending;
                }
            }
        }
        let part = this.hand_over(buf.remaining());
        if this.aborted() {
            this.ahead = BytesMut::new();
            return Poll::Ready(Err(aborted_error()));
        }
        buf.put_slice(&part);
        this.since_yield += part.len();
        if this.ahead.is_empty() {
            // Idle connections keep no read-ahead memory.
            this.ahead = BytesMut::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> FrameIo<T> {
    fn wrote(&mut self, bufs: &[&[u8]], mut n: usize) {
        self.state.rec.add(self.state.tx_bytes, n as u64);
        let state = &self.state;
        for b in bufs {
            if n == 0 {
                break;
            }
            let take = b.len().min(n);
            self.tx.feed(&b[..take], |f| state.on_outbound(f));
            n -= take;
        }
    }

    /// Writes what is left of a rewritten frame; ready when nothing is.
    fn poll_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            let n = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            let _ = self.out.split_to(n);
        }
        Poll::Ready(Ok(()))
    }

    /// A server's first write is `h2`'s SETTINGS frame: it goes out as
    /// Envoy's instead ([`envoy_settings`]). Returns the bytes of `buf` it
    /// took, if it rewrote them.
    fn rewrite_settings(&mut self, buf: &[u8]) -> Option<usize> {
        if !self.rewrite_settings {
            return None;
        }
        self.rewrite_settings = false;
        let (frame, settings) = split_settings(buf)?;
        let rewritten = envoy_settings(settings);
        self.state.tx_bytes.add(rewritten.len() as u64);
        let state = &self.state;
        self.tx.feed(frame, |f| state.on_outbound(f));
        self.out = BytesMut::from(&rewritten[..]);
        Some(frame.len())
    }
}

/// `buf`'s leading SETTINGS frame (not an ACK) and its payload, if it is
/// there whole.
fn split_settings(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let head = buf.get(..9)?;
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    if head[3] != SETTINGS || head[4] & FLAG_ACK != 0 || len % 6 != 0 {
        return None;
    }
    let frame = buf.get(..9 + len)?;
    Some((frame, &frame[9..]))
}

const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
const SETTINGS_MAX_HEADER_LIST_SIZE: u16 = 0x6;
const SETTINGS_ENABLE_CONNECT_PROTOCOL: u16 = 0x8;

/// The SETTINGS frame Envoy's server sends for the parameters `h2` chose:
/// `SETTINGS_ENABLE_CONNECT_PROTOCOL` always (0 without `allow_connect`),
/// no `SETTINGS_MAX_HEADER_LIST_SIZE` (Envoy enforces its header limits
/// without advertising them), in Envoy's order (header table size, connect
/// protocol, concurrent streams, initial window size, then the rest).
fn envoy_settings(payload: &[u8]) -> Vec<u8> {
    let mut entries: Vec<(u16, [u8; 4])> = payload
        .chunks_exact(6)
        .map(|e| (u16::from_be_bytes([e[0], e[1]]), [e[2], e[3], e[4], e[5]]))
        .filter(|(id, _)| *id != SETTINGS_MAX_HEADER_LIST_SIZE)
        .collect();
    if !entries
        .iter()
        .any(|(id, _)| *id == SETTINGS_ENABLE_CONNECT_PROTOCOL)
    {
        entries.push((SETTINGS_ENABLE_CONNECT_PROTOCOL, [0; 4]));
    }
    let rank = |id: u16| match id {
        SETTINGS_HEADER_TABLE_SIZE => 0,
        SETTINGS_ENABLE_CONNECT_PROTOCOL => 1,
        SETTINGS_MAX_CONCURRENT_STREAMS => 2,
        SETTINGS_INITIAL_WINDOW_SIZE => 3,
        _ => 4,
    };
    entries.sort_by_key(|(id, _)| rank(*id));
    let len = entries.len() * 6;
    let mut f = Vec::with_capacity(9 + len);
    f.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    f.extend_from_slice(&[SETTINGS, 0, 0, 0, 0, 0]);
    for (id, value) in entries {
        f.extend_from_slice(&id.to_be_bytes());
        f.extend_from_slice(&value);
    }
    f
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FrameIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.aborted() {
            return Poll::Ready(Err(aborted_error()));
        }
        std::task::ready!(this.poll_out(cx))?;
        if let Some(n) = this.rewrite_settings(buf) {
            let _ = this.poll_out(cx)?;
            return Poll::Ready(Ok(n));
        }
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            this.wrote(&[buf], n);
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.aborted() {
            return Poll::Ready(Err(aborted_error()));
        }
        std::task::ready!(this.poll_out(cx))?;
        if this.rewrite_settings {
            // `h2` writes its control frames from the first buffer.
            let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| b);
            return Pin::new(this).poll_write(cx, first);
        }
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            let mut slices: [&[u8]; 16] = [&[]; 16];
            let count = bufs.len().min(slices.len());
            for (s, b) in slices.iter_mut().zip(bufs.iter()) {
                *s = b;
            }
            this.wrote(&slices[..count], n);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_out(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_out(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut v = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, ty, flags];
        v.extend_from_slice(&stream.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    fn parse_all(bytes: &[u8], chunk: usize, preface: bool) -> Vec<Frame> {
        let mut p = FrameParser::new(preface);
        let mut out = Vec::new();
        for c in bytes.chunks(chunk) {
            p.feed(c, |f| out.push(*f));
        }
        out
    }

    #[test]
    fn frames_are_found_whatever_the_chunking() {
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend(frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]));
        bytes.extend(frame(HEADERS, FLAG_PADDED | 0x4, 1, &[2, 0x82, 0, 0]));
        bytes.extend(frame(RST_STREAM, 0, 1, &8u32.to_be_bytes()));
        bytes.extend(frame(GOAWAY, 0, 0, &[0, 0, 0, 7, 0, 0, 0, 0]));
        bytes.extend(frame(DATA, 0, 3, &[]));
        for chunk in [1, 2, 5, 9, 17, 1000] {
            let frames = parse_all(&bytes, chunk, true);
            assert_eq!(frames.len(), 5, "chunk {chunk}");
            assert_eq!(frames[0].ty, SETTINGS);
            assert_eq!(frames[1].pad, 2);
            assert_eq!(frames[1].stream, 1);
            assert_eq!(frames[2].code_hi, 8);
            assert_eq!(frames[3].code_hi, 7);
            assert_eq!(frames[4].len, 0);
        }
    }

    #[test]
    fn empty_frames_flood_is_detected() {
        let stats = std::sync::Arc::new(Http2CodecStats::new_without(
            &rvoy_stats::Store::new().scope("http2."),
            &[],
        ));
        let opts = Http2Options::defaults();
        let st = H2State::new(
            true,
            &opts,
            false,
            stats,
            Counter::null(),
            Counter::null(),
            rvoy_stats::Recorder::default(),
        );
        let mut p = FrameParser::new(false);
        let mut bytes = frame(HEADERS, 0x4, 1, &[0x82]);
        bytes.extend(frame(DATA, 0, 1, &[]));
        p.feed(&bytes, |f| st.on_inbound(f));
        assert_eq!(st.failure(), None);
        p.feed(&frame(DATA, 0, 1, &[]), |f| st.on_inbound(f));
        assert_eq!(st.failure(), Some(Failure::EmptyFramesFlood));
    }
}
