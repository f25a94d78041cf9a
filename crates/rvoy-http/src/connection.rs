//! A downstream connection before its codec: the transport socket coming up
//! (the TLS handshake), then the first bytes of data. As in Envoy, the
//! connection manager (its `downstream_cx_*` counts and its connection idle
//! timer) exists from the accept, and the codec only from the first byte of
//! data, whatever `codec_type` says: so `idle_timeout` (and
//! `max_connection_duration`) bound a handshake that never completes and a
//! connection that never sends a byte, and such a connection counts as
//! neither HTTP/1 nor HTTP/2.
//!
//! Owns the codec choice (`codec_type`, ALPN, the `PRI * HTTP/2` prefix of
//! Envoy's `determineNextProtocol`) and the accounting of connections that end
//! without a codec.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::BytesMut;
use rvoy_model::hcm::CodecType;
use tokio::io::AsyncReadExt;

use crate::context::{HttpListenerRuntime, WorkerContext};
use crate::io::{Rewind, Stream};
use crate::stream::ConnInfo;

/// What Envoy's `determineNextProtocol` looks for in the first bytes of a
/// `codec_type: AUTO` connection (HTTP/2's `CLIENT_MAGIC_PREFIX`): a first
/// read that starts with it makes an HTTP/2 connection, even when the rest
/// of the client preface has not come yet.
const HTTP2_PREFIX: &[u8] = b"PRI * HTTP/2";

/// Why the transport socket did not come up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportFailure {
    /// The handshake failed (or the client closed): Envoy counts a remote
    /// close.
    Failed,
    /// The filter chain's `transport_socket_connect_timeout` passed: a local
    /// close.
    ConnectTimeout,
}

/// The transport socket of an accepted connection.
pub enum Transport<'a> {
    /// A plain connection.
    Ready(Stream),
    /// A handshake under way (bounded by the filter chain's
    /// `transport_socket_connect_timeout`, if any).
    Handshake(Pin<Box<dyn Future<Output = Result<Stream, TransportFailure>> + 'a>>),
}

/// Why a connection ended before its codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NoCodec {
    IdleTimeout,
    MaxDuration,
    PeerClosed,
    Transport(TransportFailure),
}

/// Which codec the first bytes get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Http1,
    Http2,
}

/// Serves an accepted connection with the HTTP connection manager: waits for
/// the transport and the first byte (within `idle_timeout`), then runs the
/// HTTP/1 or HTTP/2 codec.
#[allow(clippy::manual_async_fn)] // an `async move` block on purpose, see the body
pub fn serve<'a>(
    transport: Transport<'a>,
    rt: Arc<HttpListenerRuntime>,
    worker: Rc<WorkerContext>,
    conn: ConnInfo,
) -> impl Future<Output = ()> + 'a {
    // An `async move` block, not an `async fn`: the latter keeps a second
    // copy of its arguments in the future (rust-lang/rust#62958), and this
    // future is what every idle connection holds.
    async move {
        let stats = &rt.stats.hcm;
        if conn.tls {
            stats.downstream_cx_ssl_total.inc();
            stats.downstream_cx_ssl_active.inc();
        }
        stats.downstream_cx_active.inc();
        let started = first_bytes(transport, &rt, &worker, conn.accepted).await;
        stats.downstream_cx_active.dec();
        // Matched in place (no binding of the whole result): what an idle
        // HTTP/1 connection's future holds is its codec's state and little more.
        match started {
            Ok((stream, buf)) if codec(&rt, &stream, &buf) == Codec::Http1 => {
                crate::conn_h1::serve(stream, buf, rt.clone(), worker, &conn).await
            }
            Ok((stream, buf)) => {
                let io = Rewind::new(buf.freeze(), stream);
                Box::pin(crate::conn_h2::serve(io, rt.clone(), worker, conn)).await
            }
            Err(ended) => count_without_codec(&rt, ended, conn.accepted),
        }
        if conn.tls {
            stats.downstream_cx_ssl_active.dec();
        }
    }
}

/// The codec for a connection whose first bytes are `buf`.
fn codec(rt: &HttpListenerRuntime, stream: &Stream, buf: &[u8]) -> Codec {
    match rt.hcm.codec_type {
        CodecType::Http1 => Codec::Http1,
        CodecType::Http2 => Codec::Http2,
        // ALPN decides when it chose a protocol, else the first bytes do.
        CodecType::Auto => match stream.alpn() {
            Some(b"h2") => Codec::Http2,
            Some(_) => Codec::Http1,
            None if buf.starts_with(HTTP2_PREFIX) => Codec::Http2,
            None => Codec::Http1,
        },
    }
}

/// Closed without a codec: Envoy's connection manager counted the
/// connection and its close, nothing else.
fn count_without_codec(rt: &HttpListenerRuntime, ended: NoCodec, accepted: Instant) {
    let stats = &rt.stats.hcm;
    stats.downstream_cx_total.inc();
    match ended {
        NoCodec::IdleTimeout => stats.downstream_cx_idle_timeout.inc(),
        NoCodec::MaxDuration => stats.downstream_cx_max_duration_reached.inc(),
        NoCodec::PeerClosed | NoCodec::Transport(_) => {}
    }
    let remote = matches!(
        ended,
        NoCodec::PeerClosed | NoCodec::Transport(TransportFailure::Failed)
    );
    stats.connection_closed(&rvoy_stats::Recorder::default(), !remote, accepted);
}

/// Waits for the transport, then for the first bytes of data, within the
/// connection idle timeout (from the accept). A listener drain does not end
/// the wait (as in Envoy 1.40: see [`crate::context::Drain`]).
///
/// The deadline is waited on a sleep lent by the worker's pool
/// ([`crate::sleep_pool`]): an armed sleep whose deadline is earlier than
/// this one's is kept as it is, so a connection that sends its request at
/// once (one per request when clients do not keep connections alive) does
/// not insert a timer into the wheel and remove it again.
async fn first_bytes(
    transport: Transport<'_>,
    rt: &HttpListenerRuntime,
    worker: &WorkerContext,
    accepted: Instant,
) -> Result<(Stream, BytesMut), NoCodec> {
    // The connection manager's timers that run before a codec: the idle
    // timer and `max_connection_duration`, whichever ends first.
    let common = &rt.hcm.common;
    let idle_at = common
        .idle_timeout
        .map(|t| (accepted + t, NoCodec::IdleTimeout));
    let max_at = common
        .max_connection_duration
        .map(|t| (accepted + t, NoCodec::MaxDuration));
    let deadline = match (idle_at, max_at) {
        (Some(i), Some(m)) => Some(if m.0 < i.0 { m } else { i }),
        (i, m) => i.or(m),
    };
    let idle = async {
        match deadline {
            Some((at, why)) => {
                worker.sleeps.sleep_until(at.into()).await;
                why
            }
            None => std::future::pending().await,
        }
    };
    tokio::pin!(idle);
    let mut stream = match transport {
        Transport::Ready(s) => s,
        Transport::Handshake(handshake) => tokio::select! {
            biased;
            done = handshake => done.map_err(NoCodec::Transport)?,
            why = &mut idle => return Err(why),
        },
    };
    loop {
        tokio::select! {
            biased;
            ready = stream.readable() => {
                if ready.is_err() {
                    return Err(NoCodec::PeerClosed);
                }
            }
            why = &mut idle => return Err(why),
        }
        // One of the worker's spare buffers (the HTTP/1 codec gives it back).
        let mut buf = worker.read_bufs.take();
        match read_now(&mut stream, &mut buf) {
            // The readiness was stale (tokio assumes a just accepted Unix
            // socket readable; the TCP accept loop drops that assumption):
            // wait again, holding no buffer.
            None => {
                worker.read_bufs.put(buf);
                continue;
            }
            Some(Ok(0) | Err(_)) => return Err(NoCodec::PeerClosed),
            Some(Ok(_)) => return Ok((stream, buf)),
        }
    }
}

/// Reads what the socket has, without waiting: `None` when it has nothing
/// (the readiness that woke the caller was stale).
pub(crate) fn read_now(stream: &mut Stream, buf: &mut BytesMut) -> Option<io::Result<usize>> {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(stream.read_buf(buf)).poll(&mut cx) {
        Poll::Ready(r) => Some(r),
        Poll::Pending => None,
    }
}
