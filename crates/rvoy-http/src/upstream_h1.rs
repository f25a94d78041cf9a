//! One request/response exchange on an upstream HTTP/1 connection: writing
//! the request (while noticing an early response), reading the response head
//! and body.

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::h1::body::{BodyDecoder, Decoded};
use crate::h1::parse::{self, HeadLimits, ResponseError, ResponseHead};
use crate::io::Stream;
use crate::pool::H1Conn;

/// A failure on the upstream side, mapped to Envoy's reset reasons.
#[derive(Debug)]
pub enum UpstreamError {
    /// The peer closed or reset the connection (`connection termination`).
    Terminated,
    /// The response could not be parsed (`protocol error`).
    Protocol,
    /// The response head is over the limit.
    HeadersTooLarge,
    Io(io::Error),
}

impl UpstreamError {
    /// Envoy's reset reason text.
    pub fn reset_reason(&self) -> &'static str {
        match self {
            UpstreamError::Terminated | UpstreamError::Io(_) => "connection termination",
            UpstreamError::Protocol | UpstreamError::HeadersTooLarge => "protocol error",
        }
    }
}

impl From<io::Error> for UpstreamError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof => UpstreamError::Terminated,
            _ => UpstreamError::Io(e),
        }
    }
}

/// What happened while writing part of a request.
pub enum WriteOutcome {
    Written,
    /// The upstream started answering before the request was fully sent.
    ResponseStarted,
}

/// Writes `bufs` completely, unless the upstream becomes readable first.
pub fn write_or_readable<'a>(stream: &'a mut Stream, bufs: &'a [&'a [u8]]) -> WriteOrReadable<'a> {
    WriteOrReadable {
        stream,
        bufs,
        index: 0,
        offset: 0,
    }
}

/// Future of [`write_or_readable`].
pub struct WriteOrReadable<'a> {
    stream: &'a mut Stream,
    bufs: &'a [&'a [u8]],
    index: usize,
    offset: usize,
}

impl Future for WriteOrReadable<'_> {
    type Output = Result<WriteOutcome, UpstreamError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            while this.index < this.bufs.len() && this.bufs[this.index].len() == this.offset {
                this.index += 1;
                this.offset = 0;
            }
            if this.index >= this.bufs.len() {
                return Poll::Ready(Ok(WriteOutcome::Written));
            }
            let mut slices = [io::IoSlice::new(&[]); 8];
            slices[0] = io::IoSlice::new(&this.bufs[this.index][this.offset..]);
            let mut n = 1;
            for b in &this.bufs[this.index + 1..] {
                if n == slices.len() {
                    break;
                }
                slices[n] = io::IoSlice::new(b);
                n += 1;
            }
            match Pin::new(&mut *this.stream).poll_write_vectored(cx, &slices[..n]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(UpstreamError::Terminated)),
                Poll::Ready(Ok(mut written)) => {
                    while written > 0 && this.index < this.bufs.len() {
                        let left = this.bufs[this.index].len() - this.offset;
                        if written >= left {
                            written -= left;
                            this.index += 1;
                            this.offset = 0;
                        } else {
                            this.offset += written;
                            written = 0;
                        }
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Pending => {
                    let ready = this.stream.poll_readable(cx);
                    if let Poll::Ready(Ok(())) = ready {
                        return Poll::Ready(Ok(WriteOutcome::ResponseStarted));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

async fn read_more(conn: &mut H1Conn) -> Result<usize, UpstreamError> {
    use tokio::io::AsyncReadExt;
    // 16 KiB reads, 64 KiB once a read filled its buffer (a large body is
    // coming): fewer reads and writes per response, small ones stay cheap.
    if conn.read_buf.capacity() - conn.read_buf.len() < 4096 {
        let want = if conn.read_filled {
            64 * 1024
        } else {
            16 * 1024
        };
        conn.read_buf.reserve(want);
    }
    let spare = conn.read_buf.capacity() - conn.read_buf.len();
    let n = conn.stream.read_buf(&mut conn.read_buf).await?;
    conn.read_filled = n == spare;
    conn.cluster
        .stats
        .traffic
        .upstream_cx_rx_bytes_total
        .add(n as u64);
    Ok(n)
}

/// Reads the response head (skipping 1xx interim responses unless wanted).
pub async fn read_response_head(
    conn: &mut H1Conn,
    limits: HeadLimits,
) -> Result<ResponseHead, UpstreamError> {
    loop {
        if !conn.read_buf.is_empty() {
            match parse::parse_response(&mut conn.read_buf, limits) {
                Ok(Some(head)) => return Ok(head),
                Ok(None) => {}
                Err(ResponseError::Malformed) => return Err(UpstreamError::Protocol),
                Err(ResponseError::TooLarge) => return Err(UpstreamError::HeadersTooLarge),
            }
        }
        if read_more(conn).await? == 0 {
            return Err(UpstreamError::Terminated);
        }
    }
}

/// The next piece of the response body if the bytes already read hold it
/// (`None`: [`read_body`] has to wait for more).
pub fn decode_buffered(
    conn: &mut H1Conn,
    decoder: &mut BodyDecoder,
) -> Option<Result<Body, UpstreamError>> {
    match decoder.decode(&mut conn.read_buf) {
        Ok(Decoded::Data(d)) => Some(Ok(Body::Data(d))),
        Ok(Decoded::Done(t)) => Some(Ok(Body::End(t))),
        Ok(Decoded::NeedMore) => None,
        Err(_) => Some(Err(UpstreamError::Protocol)),
    }
}

/// The next piece of the response body if it can be had without waiting:
/// decoded from the bytes already read or, when the last read filled its
/// buffer (a large body is arriving), from one more read tried at once.
/// `None`: [`read_body`] has to wait (or sees the end of the connection).
///
/// Pieces had this way go downstream with the one before them, in one write.
pub fn next_ready(
    conn: &mut H1Conn,
    decoder: &mut BodyDecoder,
) -> Option<Result<Body, UpstreamError>> {
    if let Some(piece) = decode_buffered(conn, decoder) {
        return Some(piece);
    }
    if !conn.read_filled {
        return None;
    }
    // A socket with nothing to read answers `Pending` (and the connection's
    // next real read registers the task's waker again).
    let mut cx = Context::from_waker(Waker::noop());
    let read = pin!(read_more(conn)).poll(&mut cx);
    match read {
        Poll::Ready(Ok(0)) | Poll::Pending => None,
        Poll::Ready(Ok(_)) => decode_buffered(conn, decoder),
        Poll::Ready(Err(e)) => Some(Err(e)),
    }
}

/// The next piece of the response body, `None` at the end (with trailers).
pub async fn read_body(
    conn: &mut H1Conn,
    decoder: &mut BodyDecoder,
) -> Result<Body, UpstreamError> {
    loop {
        if let Some(piece) = decode_buffered(conn, decoder) {
            return piece;
        }
        if read_more(conn).await? == 0 {
            if decoder.on_eof() {
                return Ok(Body::End(None));
            }
            return Err(UpstreamError::Terminated);
        }
    }
}

/// A step of a response body.
pub enum Body {
    Data(Bytes),
    End(Option<http::HeaderMap>),
}

/// Reads into the connection buffer once (for tunnels after an upgrade).
pub async fn read_some(conn: &mut H1Conn) -> Result<Option<Bytes>, UpstreamError> {
    if !conn.read_buf.is_empty() {
        let n = conn.read_buf.len();
        return Ok(Some(conn.read_buf.split_to(n).freeze()));
    }
    match read_more(conn).await? {
        0 => Ok(None),
        n => Ok(Some(conn.read_buf.split_to(n).freeze())),
    }
}

/// Is the stream writable type (compile-time helper for generic code).
pub fn assert_io<T: AsyncRead + AsyncWrite>(_: &T) {}
