//! A byte-exact HTTP/1 client over a plain `std` TCP socket: send exactly the bytes a test
//! gives, parse the status line, headers (order and case kept) and body (content-length,
//! chunked, or until close), and tell whether the proxy closed the connection. Every read
//! and write is bounded by the connection's timeout.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::DEFAULT_TIMEOUT;
use crate::echo::RecordedRequest;
use crate::error::{Error, IoContext, Result};

/// A parsed HTTP/1 response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawResponse {
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub version: String,
    /// The status code.
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
    /// Whether the body was chunked.
    pub chunked: bool,
    /// Trailers of a chunked body.
    pub trailers: Vec<(String, String)>,
    /// Whether the body was delimited by the connection closing.
    pub until_close: bool,
}

impl RawResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as text (lossy).
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The upstream request described by an echo answer.
    pub fn echo(&self) -> Option<RecordedRequest> {
        RecordedRequest::from_body(&self.body)
    }
}

/// Builds request bytes.
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    target: String,
    version: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    chunks: Option<Vec<Vec<u8>>>,
}

impl Request {
    /// `METHOD TARGET HTTP/1.1` with no headers yet.
    pub fn new(method: &str, target: &str) -> Request {
        Request {
            method: method.to_owned(),
            target: target.to_owned(),
            version: "HTTP/1.1".to_owned(),
            headers: Vec::new(),
            body: None,
            chunks: None,
        }
    }

    /// `GET target` with `host: host`.
    pub fn get(target: &str, host: &str) -> Request {
        Request::new("GET", target).header("host", host)
    }

    /// The version token (`HTTP/1.0`).
    pub fn version(mut self, v: &str) -> Self {
        self.version = v.to_owned();
        self
    }

    /// Adds a header (as written).
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.to_owned(), v.to_owned()));
        self
    }

    /// A body with `content-length`.
    pub fn body(mut self, b: &[u8]) -> Self {
        self.body = Some(b.to_vec());
        self
    }

    /// A chunked body in these chunks (`transfer-encoding: chunked` added).
    pub fn chunked(mut self, chunks: &[&[u8]]) -> Self {
        self.chunks = Some(chunks.iter().map(|c| c.to_vec()).collect());
        self
    }

    /// The method.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The bytes on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("{} {} {}\r\n", self.method, self.target, self.version).into_bytes();
        for (k, v) in &self.headers {
            out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        if let Some(b) = &self.body {
            out.extend_from_slice(format!("content-length: {}\r\n\r\n", b.len()).as_bytes());
            out.extend_from_slice(b);
        } else if let Some(chunks) = &self.chunks {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
            for c in chunks {
                out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                out.extend_from_slice(c);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
        } else {
            out.extend_from_slice(b"\r\n");
        }
        out
    }
}

/// One client connection.
#[derive(Debug)]
pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
    timeout: Duration,
    eof: bool,
}

impl RawConn {
    /// Connects with the default 10 s timeout for every operation.
    pub fn connect(addr: SocketAddr) -> Result<RawConn> {
        RawConn::connect_timeout(addr, DEFAULT_TIMEOUT)
    }

    /// Connects; `timeout` bounds the connect and every later read or write.
    pub fn connect_timeout(addr: SocketAddr, timeout: Duration) -> Result<RawConn> {
        let stream =
            TcpStream::connect_timeout(&addr, timeout).ctx(&format!("connecting to {addr}"))?;
        stream.set_nodelay(true).ctx("nodelay")?;
        stream
            .set_write_timeout(Some(timeout))
            .ctx("write timeout")?;
        Ok(RawConn {
            stream,
            buf: Vec::new(),
            timeout,
            eof: false,
        })
    }

    /// The local address (to tell connections apart).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.stream.local_addr().ctx("local_addr")
    }

    /// Sends exactly these bytes.
    pub fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes).ctx("sending")?;
        self.stream.flush().ctx("flushing")
    }

    /// Half-closes the sending side.
    pub fn shutdown_write(&mut self) -> Result<()> {
        self.stream.shutdown(Shutdown::Write).ctx("shutdown")
    }

    /// Sends `req` and reads its response.
    pub fn request(&mut self, req: &Request) -> Result<RawResponse> {
        self.send(&req.to_bytes())?;
        self.read_response_for(req.method())
    }

    /// Reads more bytes (bounded by `deadline`); `Ok(false)` at EOF.
    fn fill(&mut self, deadline: Instant) -> Result<bool> {
        if self.eof {
            return Ok(false);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::timeout("response bytes", self.timeout));
        }
        self.stream
            .set_read_timeout(Some(left))
            .ctx("read timeout")?;
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => {
                self.eof = true;
                Ok(false)
            }
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Err(Error::timeout("response bytes", self.timeout))
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                self.eof = true;
                Ok(false)
            }
            Err(e) => Err(Error::io("reading", e)),
        }
    }

    /// Reads a response to a non-HEAD request.
    pub fn read_response(&mut self) -> Result<RawResponse> {
        self.read_response_for("GET")
    }

    /// Reads a response, or `None` if the proxy closed the connection before sending any
    /// byte of one.
    pub fn read_response_or_close(&mut self, method: &str) -> Result<Option<RawResponse>> {
        let deadline = Instant::now() + self.timeout;
        while self.buf.is_empty() {
            if !self.fill(deadline)? {
                return Ok(None);
            }
        }
        self.read_response_for(method).map(Some)
    }

    /// Reads a response to a request with this method (`HEAD` responses have no body).
    /// A 1xx response is returned by itself; call again for the final one.
    pub fn read_response_for(&mut self, method: &str) -> Result<RawResponse> {
        let deadline = Instant::now() + self.timeout;
        let head_len = loop {
            if let Some(pos) = find(&self.buf, b"\r\n\r\n") {
                break pos + 4;
            }
            if !self.fill(deadline)? {
                return Err(Error::Protocol(format!(
                    "connection closed before a complete response head (got {:?})",
                    String::from_utf8_lossy(&self.buf)
                )));
            }
        };
        let mut storage = [httparse::EMPTY_HEADER; 256];
        let mut resp = httparse::Response::new(&mut storage);
        resp.parse(&self.buf[..head_len])
            .map_err(|e| Error::Protocol(format!("bad response head: {e}")))?;
        let mut out = RawResponse {
            version: format!("HTTP/1.{}", resp.version.unwrap_or(1)),
            status: resp.code.unwrap_or(0),
            reason: resp.reason.unwrap_or("").to_owned(),
            headers: resp
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_owned(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect(),
            ..RawResponse::default()
        };
        self.buf.drain(..head_len);
        let no_body = method.eq_ignore_ascii_case("HEAD")
            || out.status < 200
            || out.status == 204
            || out.status == 304;
        if no_body {
            return Ok(out);
        }
        let chunked = out
            .header_all("transfer-encoding")
            .iter()
            .any(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            out.chunked = true;
            self.read_chunked(&mut out, deadline)?;
        } else if let Some(cl) = out.header("content-length") {
            let n: usize = cl
                .trim()
                .parse()
                .map_err(|_| Error::Protocol(format!("bad content-length {cl:?}")))?;
            while self.buf.len() < n {
                if !self.fill(deadline)? {
                    return Err(Error::Protocol(format!(
                        "connection closed after {} of {n} body bytes",
                        self.buf.len()
                    )));
                }
            }
            out.body = self.buf.drain(..n).collect();
        } else {
            while self.fill(deadline)? {}
            out.body = std::mem::take(&mut self.buf);
            out.until_close = true;
        }
        Ok(out)
    }

    fn read_line(&mut self, deadline: Instant) -> Result<Vec<u8>> {
        loop {
            if let Some(pos) = find(&self.buf, b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..pos).collect();
                self.buf.drain(..2);
                return Ok(line);
            }
            if !self.fill(deadline)? {
                return Err(Error::Protocol("connection closed in chunked body".into()));
            }
        }
    }

    fn read_chunked(&mut self, out: &mut RawResponse, deadline: Instant) -> Result<()> {
        loop {
            let line = self.read_line(deadline)?;
            let text = String::from_utf8_lossy(&line).into_owned();
            let size_text = text.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| Error::Protocol(format!("bad chunk size {text:?}")))?;
            if size == 0 {
                loop {
                    let t = self.read_line(deadline)?;
                    if t.is_empty() {
                        return Ok(());
                    }
                    let t = String::from_utf8_lossy(&t).into_owned();
                    if let Some((k, v)) = t.split_once(':') {
                        out.trailers
                            .push((k.trim().to_owned(), v.trim().to_owned()));
                    }
                }
            }
            while self.buf.len() < size + 2 {
                if !self.fill(deadline)? {
                    return Err(Error::Protocol("connection closed in a chunk".into()));
                }
            }
            out.body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
        }
    }

    /// Whether the peer closes the connection within `within` (EOF or reset, with no other
    /// byte arriving first). Bytes that do arrive are kept for the next read.
    pub fn is_closed(&mut self, within: Duration) -> bool {
        if self.eof {
            return true;
        }
        let deadline = Instant::now() + within;
        matches!(self.fill(deadline), Ok(false))
    }

    /// Reads everything until the peer closes (bounded), returning the raw bytes.
    pub fn read_to_close(&mut self) -> Result<Vec<u8>> {
        let deadline = Instant::now() + self.timeout;
        while self.fill(deadline)? {}
        Ok(std::mem::take(&mut self.buf))
    }

    /// Bytes received but not consumed yet.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Sends `bytes` on a new connection and reads one response (the method is taken from the
/// bytes, for HEAD).
pub fn send_once(addr: SocketAddr, bytes: &[u8]) -> Result<RawResponse> {
    let mut c = RawConn::connect(addr)?;
    c.send(bytes)?;
    let method = bytes
        .split(|b| *b == b' ')
        .next()
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .unwrap_or_default();
    c.read_response_for(&method)
}
