//! A TLS connection over a TCP socket, driven by hand on the worker's
//! runtime: handshake, `AsyncRead`/`AsyncWrite` of plaintext, and the
//! readiness checks the proxy needs on raw sockets (`readable`, `is_stale`)
//! answered in terms of plaintext rather than encrypted bytes, so a TLS 1.3
//! session ticket arriving on an idle pooled connection is not mistaken for
//! a response.
//!
//! Writes never leave encrypted bytes behind unnoticed: a write first pushes
//! out what is pending, and reads (which is where a proxy waits) also push
//! pending bytes, so a response tail is sent even if the writer never flushes.

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use rustls::Connection;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// What a handshake learned, for stats and the codec choice.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Negotiated {
    pub alpn: Option<Vec<u8>>,
    pub sni: Option<String>,
}

/// A TLS connection (either side).
#[derive(Debug)]
pub struct TlsStream {
    io: TcpStream,
    conn: Connection,
    /// The socket reached EOF.
    eof: bool,
    /// `close_notify` was queued by `poll_shutdown`.
    shutdown_sent: bool,
}

struct SyncRead<'a>(&'a TcpStream);

impl Read for SyncRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

struct SyncWrite<'a>(&'a TcpStream);

impl Write for SyncWrite<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl TlsStream {
    /// Wraps a connected socket; the handshake runs on [`handshake`](Self::handshake).
    pub fn new(io: TcpStream, conn: Connection) -> Self {
        TlsStream {
            io,
            conn,
            eof: false,
            shutdown_sent: false,
        }
    }

    /// The rustls connection (negotiated parameters, peer certificates).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The TCP socket.
    pub fn tcp(&self) -> &TcpStream {
        &self.io
    }

    /// The negotiated ALPN protocol.
    pub fn alpn(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// Reads encrypted bytes from the socket into rustls.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.io.poll_read_ready(cx))?;
            match self.conn.read_tls(&mut SyncRead(&self.io)) {
                Ok(0) => {
                    self.eof = true;
                    return Poll::Ready(Ok(0));
                }
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Writes pending encrypted bytes to the socket.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.conn.wants_write() {
            ready!(self.io.poll_write_ready(cx))?;
            match self.conn.write_tls(&mut SyncWrite(&self.io)) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Processes received records; on a TLS error the alert is sent (best
    /// effort) and the error returned.
    fn process(&mut self, cx: &mut Context<'_>) -> io::Result<rustls::IoState> {
        match self.conn.process_new_packets() {
            Ok(state) => Ok(state),
            Err(e) => {
                let _ = self.poll_drain(cx);
                Err(tls_error(e))
            }
        }
    }

    /// Runs the handshake to completion.
    pub fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.conn.is_handshaking() {
            if self.conn.wants_write() {
                ready!(self.poll_drain(cx))?;
                continue;
            }
            if self.eof {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed during the TLS handshake",
                )));
            }
            ready!(self.poll_fill(cx))?;
            self.process(cx)?;
        }
        if !self.conn.wants_write() && matches!(self.conn, Connection::Server(_)) {
            self.acknowledge_now();
        }
        self.poll_drain(cx)
    }

    /// A server handshake that ends on the client's last flight with nothing
    /// to send back (TLS 1.3 without session tickets) leaves that flight's
    /// ACK to the kernel's delayed-ACK timer. A client that has Nagle's
    /// algorithm on holds its request behind the unacknowledged `Finished`
    /// for that long (40 ms on Linux) before sending it. Acknowledging at
    /// once (`TCP_QUICKACK`) lets the request follow immediately; when the
    /// server does send something (session tickets, TLS 1.2's `Finished`),
    /// the ACK rides on it and this is not needed.
    fn acknowledge_now(&self) {
        // Best effort: a failure only costs the delayed ACK.
        let _ = socket2::SockRef::from(&self.io).set_tcp_quickack(true);
    }

    /// Runs the handshake.
    pub async fn handshake(&mut self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_handshake(cx)).await
    }

    /// Ready when plaintext (or the end of the stream) can be read.
    pub fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let state = match self.process(cx) {
                Ok(s) => s,
                // The read reports it.
                Err(_) => return Poll::Ready(Ok(())),
            };
            if state.plaintext_bytes_to_read() > 0 || state.peer_has_closed() || self.eof {
                return Poll::Ready(Ok(()));
            }
            if self.conn.wants_write() {
                let _ = self.poll_drain(cx)?;
            }
            match ready!(self.poll_fill(cx)) {
                Ok(_) => {}
                Err(_) => return Poll::Ready(Ok(())),
            }
        }
    }

    /// Waits until plaintext (or the end of the stream) can be read.
    pub async fn readable(&mut self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_readable(cx)).await
    }

    /// Whether an idle connection was closed by the peer or has unexpected
    /// plaintext (checked without waiting).
    pub fn is_stale(&mut self) -> bool {
        loop {
            match self.conn.process_new_packets() {
                Ok(s) if s.plaintext_bytes_to_read() > 0 || s.peer_has_closed() => return true,
                Ok(_) => {}
                Err(_) => return true,
            }
            if self.eof {
                return true;
            }
            match self.conn.read_tls(&mut SyncRead(&self.io)) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(_) => return true,
            }
        }
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match this.conn.reader().read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed without close_notify: an end of stream to
                // the proxy, as in Envoy.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Poll::Ready(Ok(()));
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
            if this.conn.wants_write() {
                // Push out what a writer left behind; a pending write
                // registers this task for writability as well.
                if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
                    return Poll::Ready(Err(e));
                }
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            ready!(this.poll_fill(cx))?;
            this.process(cx)?;
        }
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // Backpressure: nothing new is taken while old bytes wait.
        ready!(this.poll_drain(cx))?;
        let n = this.conn.writer().write(buf)?;
        if n == 0 && !buf.is_empty() {
            ready!(this.poll_drain(cx))?;
            let n = this.conn.writer().write(buf)?;
            let _ = this.poll_drain(cx)?;
            return Poll::Ready(Ok(n));
        }
        let _ = this.poll_drain(cx)?;
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        let n = this.conn.writer().write_vectored(bufs)?;
        let _ = this.poll_drain(cx)?;
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.shutdown_sent {
            this.conn.send_close_notify();
            this.shutdown_sent = true;
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}
