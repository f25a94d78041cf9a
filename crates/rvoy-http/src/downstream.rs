//! The downstream side of one request, whichever codec carries it.
//!
//! [`Downstream`] is what the connection manager and router need from a client
//! connection: read the request body and trailers, send `100 Continue`, send
//! the response head, data and trailers. The HTTP/1 implementation lives here,
//! with Envoy's rules for framing a response on the wire (`content-length: 0`
//! on headers-only responses, chunked encoding when the length is unknown,
//! nothing for 1xx/204/304, close-delimited for HTTP/1.0 clients).

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::h1::body::{BodyDecoder, BodyError, Decoded, chunk_header, last_chunk};
use crate::h1::encode;
use crate::io::{Stream, write_all_vectored};

/// The codec of a downstream request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http10,
    Http11,
    Http2,
}

/// A failure on the downstream side.
#[derive(Debug, thiserror::Error)]
pub enum DownstreamError {
    /// The client went away or the socket failed.
    #[error("downstream connection error: {0}")]
    Io(#[from] std::io::Error),
    /// The request body is malformed (400 if nothing was sent yet).
    #[error("malformed request body: {0}")]
    Body(#[from] BodyError),
    /// The client reset the stream (HTTP/2).
    #[error("downstream stream reset")]
    Reset,
    /// The request body is larger than allowed.
    #[error("request body too large")]
    TooLarge,
}

/// What the HCM and router need from a downstream stream.
#[allow(async_fn_in_trait)]
pub trait Downstream {
    fn protocol(&self) -> Protocol;
    /// The next piece of the request body; `None` once it is complete.
    async fn read_body(&mut self) -> Result<Option<Bytes>, DownstreamError>;
    /// Whether the whole request body has been read.
    fn body_complete(&self) -> bool;
    /// Raw bytes from the client after an upgrade (tunnel); `None` at EOF.
    async fn read_raw(&mut self) -> Result<Option<Bytes>, DownstreamError> {
        self.read_body().await
    }
    /// Trailers that ended the request body, if any.
    fn take_trailers(&mut self) -> Option<HeaderMap>;
    /// Sends `100 Continue`.
    async fn send_continue(&mut self) -> Result<(), DownstreamError>;
    /// Sends the response head. `end_stream`: no body follows. An HTTP/2
    /// downstream hands the map to its codec and leaves `headers` empty when
    /// nothing reads the sent headers later
    /// ([`HttpListenerRuntime::formats_stream_info`](crate::context::HttpListenerRuntime::formats_stream_info)).
    async fn send_head(
        &mut self,
        status: StatusCode,
        reason: Option<&[u8]>,
        headers: &mut HeaderMap,
        end_stream: bool,
    ) -> Result<(), DownstreamError>;
    /// Sends response body data.
    async fn send_data(&mut self, data: Bytes, end_stream: bool) -> Result<(), DownstreamError>;
    /// Sends consecutive pieces of response body data (not the last), as
    /// one where the codec can: HTTP/1 writes up to three with one `writev`
    /// (and one chunk, when chunked).
    async fn send_data_parts(&mut self, parts: &[Bytes]) -> Result<(), DownstreamError> {
        for part in parts {
            self.send_data(part.clone(), false).await?;
        }
        Ok(())
    }
    /// Ends the response with trailers.
    async fn send_trailers(&mut self, trailers: HeaderMap) -> Result<(), DownstreamError>;
    /// Bytes of response written so far (body and framing).
    fn bytes_sent(&self) -> u64;
    /// Bytes of request body read so far.
    fn bytes_received(&self) -> u64;
    /// Asks for the connection to close after this response (`connection: close`).
    fn set_close(&mut self) {}
    /// Answers with an `HTTP/1.1` status line whatever the request's version
    /// (Envoy's codec does so when it refuses HTTP/1.0).
    fn use_http11_status_line(&mut self) {}
    /// The connection manager's header checks reached `stage`: from there on
    /// the client's request to close counts (Envoy's `saw_connection_close`),
    /// and a response closes the connection at once rather than with the
    /// delayed close.
    fn close_request_counts(&mut self, stage: CloseStage) {
        let _ = stage;
    }
    /// The response was produced after the stream waited on something other
    /// than the request (an upstream answered, a stream timer fired). Envoy
    /// then writes it outside the codec's dispatch of the request, and a
    /// counted request to close closes at once (`FlushWrite`); a response
    /// made while the request was being decoded (a direct response, a local
    /// reply of the header checks or a filter) gets the delayed close.
    fn answered_later(&mut self) {}
    /// Runs the HTTP filters' response-head hooks on a response about to be
    /// sent; callers invoke it right before [`Downstream::send_head`].
    fn encode_headers(
        &mut self,
        status: StatusCode,
        headers: &mut HeaderMap,
        end_stream: bool,
        info: &crate::request_info::RequestInfo,
    ) {
        let _ = (status, headers, end_stream, info);
    }
    /// Resolves when the client has gone away (connection closed, stream
    /// reset) while the response is awaited. Bytes the client sends meanwhile
    /// (a pipelined request) are kept for later.
    async fn closed(&mut self) {
        std::future::pending::<()>().await
    }
    /// The stream's timers, when the connection manager runs them.
    fn timers(&self) -> Option<std::rc::Rc<crate::stream_timers::StreamTimers>> {
        None
    }
}

/// Pieces of response body one `writev` of an HTTP/1 response takes.
const WRITE_PARTS: usize = 3;

/// How many bytes of pipelined requests are read while a response is awaited.
const PIPELINE_BUFFER_LIMIT: usize = 64 * 1024;

/// How the response body goes on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    /// Nothing (headers-only, HEAD, 204...).
    None,
    Identity,
    Chunked,
}

/// An HTTP/1 request in progress on a client connection.
/// Where in the connection manager's header checks a client's request to
/// close starts to count (Envoy's `decodeHeaders`): an HTTP/1.0 request's
/// once its version was accepted, an HTTP/1.1 `connection: close` once the
/// host and path checks passed. Local replies of the checks before answer a
/// request whose close does not count yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseStage {
    /// HTTP/1.0 was accepted.
    VersionAccepted,
    /// The host and path checks passed.
    PathAccepted,
}

pub struct H1Downstream<'a> {
    pub stream: &'a mut Stream,
    /// Bytes read past the request head (body, or the next request).
    pub buf: &'a mut BytesMut,
    decoder: BodyDecoder,
    trailers: Option<HeaderMap>,
    version: Version,
    method_head: bool,
    method_connect: bool,
    encoding: Encoding,
    proper_case: bool,
    /// The response is close-delimited (HTTP/1.0 client, unknown length).
    pub close_delimited: bool,
    /// The response asked for `connection: close`.
    pub close_after: bool,
    /// The request asked to close (`connection: close`, HTTP/1.0 without
    /// keep-alive).
    pub close_requested: bool,
    /// Envoy's `saw_connection_close`: the request's close counts (see
    /// [`CloseStage`]), or it was the last the connection allows.
    pub saw_connection_close: bool,
    /// See [`Downstream::answered_later`].
    pub answered_later: bool,
    /// The response made the connection a tunnel (`101`, `CONNECT` 2xx).
    pub tunnel: bool,
    /// From this instant the connection drains (`max_connection_duration`,
    /// listener drain): the response says `connection: close`.
    pub drain_at: Option<std::time::Instant>,
    /// Asked when the response head goes out (Envoy decides in
    /// `encodeHeaders`): whether the listener's drain closes this connection.
    pub drain_close: Option<&'a dyn Fn() -> bool>,
    /// The response said `connection: close` because of the listener drain.
    pub drain_closed: bool,
    /// The client closed the connection (or it failed) during the request.
    pub peer_closed: bool,
    head_buf: Vec<u8>,
    sent: u64,
    received: u64,
    /// Bytes read from / written to the socket during this request, framing
    /// included (`downstream_cx_rx_bytes_total` / `tx_bytes_total`).
    pub wire_rx: u64,
    pub wire_tx: u64,
    max_body: Option<u64>,
}

impl<'a> H1Downstream<'a> {
    /// `head_buf`: an empty buffer the response head is encoded into (the
    /// worker's spare, [`crate::WorkerContext::take_head_buf`]); given back
    /// by [`into_head_buf`](Self::into_head_buf).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        stream: &'a mut Stream,
        buf: &'a mut BytesMut,
        framing: crate::h1::parse::BodyFraming,
        version: Version,
        method: &Method,
        proper_case: bool,
        head_buf: Vec<u8>,
    ) -> Self {
        H1Downstream {
            stream,
            buf,
            decoder: BodyDecoder::new(framing),
            trailers: None,
            version,
            method_head: method == Method::HEAD,
            method_connect: method == Method::CONNECT,
            encoding: Encoding::None,
            proper_case,
            close_delimited: false,
            tunnel: false,
            close_requested: false,
            saw_connection_close: false,
            answered_later: false,
            close_after: false,
            drain_at: None,
            drain_close: None,
            drain_closed: false,
            peer_closed: false,
            head_buf,
            sent: 0,
            received: 0,
            wire_rx: 0,
            wire_tx: 0,
            max_body: None,
        }
    }

    /// The head buffer, for the next response.
    pub fn into_head_buf(self) -> Vec<u8> {
        self.head_buf
    }

    /// Reads and discards what is left of the request body (to keep the
    /// connection usable), up to `limit` bytes.
    pub async fn drain_body(&mut self, limit: u64) -> bool {
        let mut drained = 0u64;
        while !self.decoder.is_done() {
            match self.read_body().await {
                Ok(Some(chunk)) => {
                    drained += chunk.len() as u64;
                    if drained > limit {
                        return false;
                    }
                }
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
        true
    }

    /// Writes body data (`parts`: up to [`WRITE_PARTS`] consecutive pieces,
    /// sent as one) after the head if that is still unsent, framed for the
    /// response's encoding; one `writev` when the socket takes it all.
    async fn write_body(
        &mut self,
        parts: &[Bytes],
        end_stream: bool,
    ) -> Result<(), DownstreamError> {
        let head = std::mem::take(&mut self.head_buf);
        let mut chunk_hdr = Vec::new();
        let mut tail = Vec::new();
        let framed = self.encoding != Encoding::None;
        let len: usize = if framed {
            parts.iter().map(|p| p.len()).sum()
        } else {
            0
        };
        if self.encoding == Encoding::Chunked {
            if len > 0 {
                chunk_header(len, &mut chunk_hdr);
                tail.extend_from_slice(b"\r\n");
            }
            if end_stream {
                last_chunk(None, &mut tail);
            }
        }
        let mut bufs: [&[u8]; 6] = [&head, &chunk_hdr, &[], &[], &[], &[]];
        let mut n = 2;
        if framed {
            for part in parts.iter().take(WRITE_PARTS) {
                bufs[n] = part;
                n += 1;
            }
        }
        bufs[n] = &tail;
        n += 1;
        let wire = head.len() + chunk_hdr.len() + len + tail.len();
        write_all_vectored(self.stream, &mut bufs[..n]).await?;
        self.wire_tx += wire as u64;
        self.sent += len as u64;
        self.head_buf = head;
        self.head_buf.clear();
        if end_stream {
            self.stream.flush().await?;
        }
        Ok(())
    }

    async fn flush_head(&mut self) -> Result<(), DownstreamError> {
        let head = std::mem::take(&mut self.head_buf);
        self.stream.write_all(&head).await?;
        self.wire_tx += head.len() as u64;
        self.head_buf = head;
        self.head_buf.clear();
        Ok(())
    }
}

impl Downstream for H1Downstream<'_> {
    fn protocol(&self) -> Protocol {
        if self.version == Version::HTTP_10 {
            Protocol::Http10
        } else {
            Protocol::Http11
        }
    }

    async fn read_body(&mut self) -> Result<Option<Bytes>, DownstreamError> {
        loop {
            match self.decoder.decode(self.buf)? {
                Decoded::Data(d) => {
                    self.received += d.len() as u64;
                    if self.max_body.is_some_and(|m| self.received > m) {
                        return Err(DownstreamError::TooLarge);
                    }
                    return Ok(Some(d));
                }
                Decoded::Done(t) => {
                    if t.is_some() {
                        self.trailers = t;
                    }
                    return Ok(None);
                }
                Decoded::NeedMore => {
                    self.buf.reserve(16 * 1024);
                    let n = match self.stream.read_buf(self.buf).await {
                        Ok(n) => n,
                        Err(e) => {
                            self.peer_closed = true;
                            return Err(e.into());
                        }
                    };
                    self.wire_rx += n as u64;
                    if n == 0 {
                        self.peer_closed = true;
                        if self.decoder.on_eof() {
                            return Ok(None);
                        }
                        return Err(DownstreamError::Io(
                            std::io::ErrorKind::UnexpectedEof.into(),
                        ));
                    }
                }
            }
        }
    }

    fn body_complete(&self) -> bool {
        self.decoder.is_done()
    }

    async fn closed(&mut self) {
        // While the body arrives, `read_body` sees the end of the connection.
        if !self.decoder.is_done() {
            return std::future::pending().await;
        }
        loop {
            // Pipelined requests wait here, within reason.
            if self.buf.len() >= PIPELINE_BUFFER_LIMIT {
                return std::future::pending().await;
            }
            // The request head was split off this buffer and its header
            // values still point into it: read into the room left rather
            // than reserving (which would reallocate a shared buffer).
            if self.buf.capacity() - self.buf.len() < 1024 {
                self.buf.reserve(4096);
            }
            match self.stream.read_buf(self.buf).await {
                Ok(0) | Err(_) => {
                    self.peer_closed = true;
                    return;
                }
                Ok(n) => self.wire_rx += n as u64,
            }
        }
    }

    async fn read_raw(&mut self) -> Result<Option<Bytes>, DownstreamError> {
        if !self.buf.is_empty() {
            let n = self.buf.len();
            return Ok(Some(self.buf.split_to(n).freeze()));
        }
        self.buf.reserve(16 * 1024);
        match self.stream.read_buf(self.buf).await? {
            0 => Ok(None),
            n => {
                self.wire_rx += n as u64;
                Ok(Some(self.buf.split_to(n).freeze()))
            }
        }
    }

    fn take_trailers(&mut self) -> Option<HeaderMap> {
        self.trailers.take()
    }

    async fn send_continue(&mut self) -> Result<(), DownstreamError> {
        let mut out = Vec::with_capacity(32);
        encode::continue_head(&mut out);
        self.stream.write_all(&out).await?;
        self.wire_tx += out.len() as u64;
        Ok(())
    }

    async fn send_head(
        &mut self,
        status: StatusCode,
        reason: Option<&[u8]>,
        headers: &mut HeaderMap,
        end_stream: bool,
    ) -> Result<(), DownstreamError> {
        // The connection manager's `connection` header first, then the
        // codec's framing headers (`content-length: 0`, `transfer-encoding`),
        // in Envoy's order on the wire.
        if self.drain_at.is_some_and(|at| at <= crate::clock::now()) {
            self.close_after = true;
        }
        if !self.close_after && self.drain_close.is_some_and(|f| f()) {
            self.close_after = true;
            self.drain_closed = true;
        }
        if self.close_after {
            headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        } else if self.version == Version::HTTP_10 {
            headers.insert(
                http::header::CONNECTION,
                HeaderValue::from_static("keep-alive"),
            );
        }
        let code = status.as_u16();
        let no_body_status = code < 200 || code == 204 || code == 304;
        if status == StatusCode::SWITCHING_PROTOCOLS {
            // The connection becomes a tunnel: bytes are relayed as they are.
            self.encoding = Encoding::Identity;
            self.tunnel = true;
        } else if headers.contains_key(CONTENT_LENGTH) {
            self.encoding = if end_stream || self.method_head || no_body_status {
                Encoding::None
            } else {
                Encoding::Identity
            };
        } else if no_body_status {
            self.encoding = Encoding::None;
        } else if end_stream && !self.method_head {
            headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
            self.encoding = Encoding::None;
        } else if self.version == Version::HTTP_10 {
            self.encoding = if end_stream || self.method_head {
                Encoding::None
            } else {
                Encoding::Identity
            };
            if !end_stream && !self.method_head {
                self.close_delimited = true;
            }
        } else if self.method_connect && status.is_success() {
            self.encoding = Encoding::Identity;
            self.tunnel = true;
        } else {
            headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
            let upgrade = crate::forwarding::is_upgrade(headers);
            self.encoding = if upgrade || self.method_head || end_stream {
                Encoding::None
            } else {
                Encoding::Chunked
            };
            if upgrade {
                self.encoding = Encoding::Identity;
            }
        }
        if self.close_delimited {
            // The body's end is the connection's (the codec's choice, after
            // the connection manager's header).
            headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        self.head_buf.clear();
        encode::response_head(
            self.version,
            status,
            reason,
            headers,
            self.proper_case,
            &mut self.head_buf,
        );
        if end_stream {
            self.flush_head().await?;
            self.stream.flush().await?;
        }
        Ok(())
    }

    async fn send_data(&mut self, data: Bytes, end_stream: bool) -> Result<(), DownstreamError> {
        self.write_body(std::slice::from_ref(&data), end_stream)
            .await
    }

    async fn send_data_parts(&mut self, parts: &[Bytes]) -> Result<(), DownstreamError> {
        for group in parts.chunks(WRITE_PARTS) {
            self.write_body(group, false).await?;
        }
        Ok(())
    }

    async fn send_trailers(&mut self, trailers: HeaderMap) -> Result<(), DownstreamError> {
        let head = std::mem::take(&mut self.head_buf);
        let mut tail = Vec::new();
        if self.encoding == Encoding::Chunked {
            last_chunk(Some(&trailers), &mut tail);
        }
        let wire = head.len() + tail.len();
        let mut bufs: [&[u8]; 2] = [&head, &tail];
        write_all_vectored(self.stream, &mut bufs).await?;
        self.wire_tx += wire as u64;
        self.head_buf = head;
        self.head_buf.clear();
        self.stream.flush().await?;
        Ok(())
    }

    fn bytes_sent(&self) -> u64 {
        self.sent
    }

    fn bytes_received(&self) -> u64 {
        self.received
    }

    fn set_close(&mut self) {
        self.close_after = true;
    }

    fn use_http11_status_line(&mut self) {
        self.version = Version::HTTP_11;
    }

    fn close_request_counts(&mut self, stage: CloseStage) {
        let applies = match stage {
            CloseStage::VersionAccepted => self.version == Version::HTTP_10,
            CloseStage::PathAccepted => true,
        };
        if applies && self.close_requested {
            self.saw_connection_close = true;
        }
    }

    fn answered_later(&mut self) {
        self.answered_later = true;
    }
}
