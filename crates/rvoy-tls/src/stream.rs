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

use std::io::{self, BufRead, Read, Write};
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

/// Copies the plaintext rustls has decrypted into the unfilled part of
/// `buf`, as much as fits, and reports what `rustls::Reader::read` would when
/// there is none: `WouldBlock` (more TLS records needed), `UnexpectedEof` (the
/// socket closed without `close_notify`), or nothing copied after a
/// `close_notify` (the end of the stream).
///
/// `Reader::read` takes an initialised slice, and the callers' buffers are
/// the spare capacity of a `BytesMut`, uninitialised on every call: zeroing
/// all of it before each read cost more than the read (a memset of ~20,000
/// instructions per request on h2 over TLS, where the h2 codec reads into up
/// to 16 KiB of spare capacity). The plaintext chunks are copied as they are.
fn read_plaintext(conn: &mut Connection, buf: &mut ReadBuf<'_>) -> io::Result<()> {
    let mut reader = conn.reader();
    let mut copied = false;
    while buf.remaining() > 0 {
        let chunk = match reader.fill_buf() {
            Ok(chunk) => chunk,
            Err(_) if copied => break,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            break;
        }
        let n = chunk.len().min(buf.remaining());
        buf.put_slice(&chunk[..n]);
        reader.consume(n);
        copied = true;
    }
    Ok(())
}

impl AsyncRead for TlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match read_plaintext(&mut this.conn, buf) {
                Ok(()) => return Poll::Ready(Ok(())),
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

#[cfg(test)]
mod tests {
    use std::mem::MaybeUninit;
    use std::sync::Arc;

    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

    use super::*;

    /// A client and a server connection, handshaken in memory.
    fn connected_pair() -> (Connection, Connection) {
        let issued =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key =
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(issued.signing_key.serialize_der()));
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![issued.cert.der().clone()], key)
            .expect("server config");
        let mut roots = RootCertStore::empty();
        roots.add(issued.cert.der().clone()).expect("root");
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = "localhost".try_into().expect("server name");
        let mut client = Connection::Client(
            ClientConnection::new(Arc::new(client), name).expect("client connection"),
        );
        let mut server =
            Connection::Server(ServerConnection::new(Arc::new(server)).expect("server connection"));
        for _ in 0..10 {
            if !client.is_handshaking() && !server.is_handshaking() {
                break;
            }
            pump(&mut client, &mut server);
            pump(&mut server, &mut client);
        }
        assert!(!client.is_handshaking() && !server.is_handshaking());
        (client, server)
    }

    /// Moves every TLS record `from` has queued to `to`.
    fn pump(from: &mut Connection, to: &mut Connection) {
        let mut records = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut records).expect("write_tls");
        }
        let mut rest = &records[..];
        while !rest.is_empty() {
            to.read_tls(&mut rest).expect("read_tls");
            to.process_new_packets().expect("records");
        }
    }

    fn read_into(conn: &mut Connection, capacity: usize) -> io::Result<Vec<u8>> {
        let mut storage = vec![MaybeUninit::<u8>::uninit(); capacity];
        let mut buf = ReadBuf::uninit(&mut storage);
        read_plaintext(conn, &mut buf)?;
        Ok(buf.filled().to_vec())
    }

    #[test]
    fn plaintext_is_copied_into_uninitialised_buffers_across_records() {
        let (mut client, mut server) = connected_pair();
        assert_eq!(
            read_into(&mut server, 64).map_err(|e| e.kind()),
            Err(io::ErrorKind::WouldBlock)
        );

        // Two writes, two records: the plaintext sits in two chunks (rustls
        // holds at most 16 KiB of it).
        let long: Vec<u8> = (0..12_000u32).map(|i| (i % 251) as u8).collect();
        client.writer().write_all(b"hello").expect("write");
        client.writer().write_all(&long).expect("write");
        pump(&mut client, &mut server);

        assert_eq!(read_into(&mut server, 3).expect("read"), b"hel");
        let mut expected = b"lo".to_vec();
        expected.extend_from_slice(&long);
        assert_eq!(read_into(&mut server, 64 * 1024).expect("read"), expected);
        assert_eq!(
            read_into(&mut server, 64).map_err(|e| e.kind()),
            Err(io::ErrorKind::WouldBlock)
        );
        assert_eq!(read_into(&mut server, 0).expect("empty buffer"), b"");

        // close_notify: the end of the stream, read as nothing.
        client.send_close_notify();
        pump(&mut client, &mut server);
        assert_eq!(read_into(&mut server, 64).expect("end of stream"), b"");
    }

    #[test]
    fn a_socket_closed_without_close_notify_reads_as_unexpected_eof_after_the_data() {
        let (mut client, mut server) = connected_pair();
        client.writer().write_all(b"tail").expect("write");
        pump(&mut client, &mut server);
        assert_eq!(server.read_tls(&mut io::empty()).expect("eof"), 0);
        server.process_new_packets().expect("state");

        assert_eq!(read_into(&mut server, 64).expect("the data first"), b"tail");
        assert_eq!(
            read_into(&mut server, 64).map_err(|e| e.kind()),
            Err(io::ErrorKind::UnexpectedEof)
        );
    }
}
