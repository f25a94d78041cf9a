//! Byte streams the proxy reads and writes: TCP or Unix domain sockets, or
//! TLS over TCP, on either side, behind one type so codecs are written once.
//! The plain variants dispatch straight to tokio's sockets; TLS is boxed so
//! the enum stays small.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// Applies TCP keepalive settings (a listener's `tcp_keepalive` socket
/// option, a cluster's `upstream_connection_options`) to a connected socket;
/// unset values keep the system's defaults.
pub fn set_tcp_keepalive(
    stream: &TcpStream,
    ka: rvoy_model::address::TcpKeepalive,
) -> io::Result<()> {
    let mut params = socket2::TcpKeepalive::new();
    if let Some(t) = ka.time_secs {
        params = params.with_time(std::time::Duration::from_secs(u64::from(t)));
    }
    if let Some(i) = ka.interval_secs {
        params = params.with_interval(std::time::Duration::from_secs(u64::from(i)));
    }
    if let Some(p) = ka.probes {
        params = params.with_retries(p);
    }
    socket2::SockRef::from(stream).set_tcp_keepalive(&params)
}

/// A connected stream socket.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<rvoy_tls::TlsStream>),
}

impl Stream {
    /// Waits until the socket has data (or EOF) to read; for TLS, plaintext.
    pub async fn readable(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.readable().await,
            Stream::Unix(s) => s.readable().await,
            Stream::Tls(s) => s.readable().await,
        }
    }

    /// [`readable`](Self::readable) as a poll function.
    pub fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Tcp(s) => s.poll_read_ready(cx),
            Stream::Unix(s) => s.poll_read_ready(cx),
            Stream::Tls(s) => s.poll_readable(cx),
        }
    }

    /// Whether the peer closed or sent unexpected bytes (for idle pooled connections).
    pub fn is_stale(&mut self) -> bool {
        let mut probe = [0u8; 1];
        let plain =
            |r: io::Result<usize>| !matches!(r, Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        match self {
            Stream::Tcp(s) => plain(s.try_read(&mut probe)),
            Stream::Unix(s) => plain(s.try_read(&mut probe)),
            Stream::Tls(s) => s.is_stale(),
        }
    }

    /// Whether this is a TLS connection.
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// The ALPN protocol a TLS handshake negotiated.
    pub fn alpn(&self) -> Option<&[u8]> {
        match self {
            Stream::Tls(s) => s.alpn(),
            _ => None,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

/// Writes several buffers with as few `writev` calls as possible.
pub async fn write_all_vectored(stream: &mut Stream, bufs: &mut [&[u8]]) -> io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut index = 0;
    let mut offset = 0;
    while index < bufs.len() {
        if bufs[index].len() == offset {
            index += 1;
            offset = 0;
            continue;
        }
        let mut slices = [io::IoSlice::new(&[]); 8];
        slices[0] = io::IoSlice::new(&bufs[index][offset..]);
        let mut n = 1;
        for b in &bufs[index + 1..] {
            if n == slices.len() {
                break;
            }
            slices[n] = io::IoSlice::new(b);
            n += 1;
        }
        let mut written = stream.write_vectored(&slices[..n]).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while written > 0 && index < bufs.len() {
            let left = bufs[index].len() - offset;
            if written >= left {
                written -= left;
                index += 1;
                offset = 0;
            } else {
                offset += written;
                written = 0;
            }
        }
    }
    Ok(())
}

/// A stream that first yields bytes already read from it (after protocol
/// detection), then reads from the socket.
#[derive(Debug)]
pub struct Rewind {
    pre: bytes::Bytes,
    pub inner: Stream,
}

impl Rewind {
    pub fn new(pre: bytes::Bytes, inner: Stream) -> Self {
        Rewind { pre, inner }
    }

    /// The bytes read ahead, still to be read again.
    pub fn buffered(&self) -> &[u8] {
        &self.pre
    }
}

impl AsyncRead for Rewind {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.pre.is_empty() {
            let n = this.pre.len().min(buf.remaining());
            buf.put_slice(&this.pre[..n]);
            bytes::Buf::advance(&mut this.pre, n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
