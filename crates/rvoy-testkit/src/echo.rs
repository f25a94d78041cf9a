//! Echo upstreams: an HTTP server that records every request and answers with a JSON
//! description of it, and a plain TCP echo.
//!
//! The HTTP server speaks HTTP/1.1 (keep-alive, chunked request and response bodies,
//! `Expect: 100-continue`, HTTP/1.0) and h2c with prior knowledge (detected from the
//! connection preface). A request with `Upgrade: websocket` gets a 101 and a websocket echo
//! (every message sent back); any other `Upgrade` gets a 101 and every byte echoed back.
//!
//! The JSON answer:
//! `{"echo": true, "server": NAME, "protocol": "HTTP/1.1"|"HTTP/1.0"|"HTTP/2",
//!   "method", "path", "authority", "headers": [[name, value], ...] (arrival order, names as
//!   received), "body_len", "body_sha256", "chunked", "connection": N}`.
//!
//! Request headers (or query parameters of the same name) steer the answer:
//!
//! | header | effect |
//! | --- | --- |
//! | `x-echo-status: 503` | answer with this status |
//! | `x-echo-body: text` | answer with this body (percent-decoded), `text/plain` |
//! | `x-echo-response-size: N` | answer with N bytes of a fixed pattern |
//! | `x-echo-set-header: a=1&b=2` | add response headers (may repeat; replaces a default of the same name) |
//! | `x-echo-delay-ms: N` | wait N ms before answering (at most 30 s) |
//! | `x-echo-fail-times: N` | the first N requests with the same `x-echo-key` (else the path) get `x-echo-fail-status` (503) |
//! | `x-echo-chunked: 1` | chunked response (HTTP/1.1) |
//! | `x-echo-no-content-length: 1` | body delimited by closing the connection (HTTP/1.1) |
//! | `x-echo-close: 1` | `connection: close`, then close |
//! | `x-echo-reset: 1` | close with RST without answering (HTTP/2: RST_STREAM) |
//!
//! Each server runs on its own thread and tokio runtime, so it works under blocking tests
//! and any test runtime; dropping it stops it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::error::{Error, IoContext, Result};
use crate::ports::free_port;

/// The longest `x-echo-delay-ms` honoured.
const MAX_DELAY_MS: u64 = 30_000;
/// The largest request head accepted.
const MAX_HEAD: usize = 1 << 20;
/// The largest `x-echo-response-size`.
const MAX_RESPONSE_SIZE: usize = 64 << 20;
/// The HTTP/2 connection preface.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// One request as the upstream received it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordedRequest {
    /// The echo server's name.
    pub server: String,
    /// `HTTP/1.1`, `HTTP/1.0` or `HTTP/2`.
    pub protocol: String,
    /// The method.
    pub method: String,
    /// The request target (path and query) as received.
    pub path: String,
    /// HTTP/2 `:authority` (HTTP/1: `None`; see [`RecordedRequest::authority`]).
    pub h2_authority: Option<String>,
    /// Headers in arrival order, names as received (HTTP/1 keeps the case).
    pub headers: Vec<(String, String)>,
    /// Body length.
    pub body_len: usize,
    /// Body SHA-256, lowercase hex.
    pub body_sha256: String,
    /// Whether the body came chunked.
    pub chunked: bool,
    /// Which accepted connection it came on (0, 1, ... per server).
    pub connection: usize,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// `Host` (HTTP/1) or `:authority` (HTTP/2).
    pub fn authority(&self) -> Option<&str> {
        self.h2_authority.as_deref().or_else(|| self.header("host"))
    }

    /// The JSON the echo answers with.
    pub fn to_json(&self) -> Value {
        json!({
            "echo": true,
            "server": self.server,
            "protocol": self.protocol,
            "method": self.method,
            "path": self.path,
            "authority": self.h2_authority,
            "headers": self.headers.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            "body_len": self.body_len,
            "body_sha256": self.body_sha256,
            "chunked": self.chunked,
            "connection": self.connection,
        })
    }

    /// Parses [`RecordedRequest::to_json`] output.
    pub fn from_json(v: &Value) -> Option<RecordedRequest> {
        if v.get("echo")? != &Value::Bool(true) {
            return None;
        }
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let headers = v
            .get("headers")?
            .as_array()?
            .iter()
            .filter_map(|h| {
                let a = h.as_array()?;
                Some((
                    a.first()?.as_str()?.to_owned(),
                    a.get(1)?.as_str()?.to_owned(),
                ))
            })
            .collect();
        Some(RecordedRequest {
            server: s("server")?,
            protocol: s("protocol")?,
            method: s("method")?,
            path: s("path")?,
            h2_authority: s("authority"),
            headers,
            body_len: usize::try_from(v.get("body_len")?.as_u64()?).ok()?,
            body_sha256: s("body_sha256")?,
            chunked: v.get("chunked")?.as_bool()?,
            connection: usize::try_from(v.get("connection")?.as_u64()?).ok()?,
        })
    }

    /// Parses an echo answer body.
    pub fn from_body(body: &[u8]) -> Option<RecordedRequest> {
        serde_json::from_slice::<Value>(body)
            .ok()
            .as_ref()
            .and_then(RecordedRequest::from_json)
    }
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The body pattern of `x-echo-response-size` (and of test uploads): byte i is `i % 251`.
pub fn pattern_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

#[derive(Debug, Default)]
struct Log {
    requests: Mutex<Vec<RecordedRequest>>,
    failures: Mutex<HashMap<String, u64>>,
    connections: AtomicUsize,
}

impl Log {
    fn add(&self, r: RecordedRequest) {
        if let Ok(mut v) = self.requests.lock() {
            v.push(r);
        }
    }

    /// Whether this request (by key) is one of the first `n` to fail.
    fn take_failure(&self, key: &str, n: u64) -> bool {
        let Ok(mut f) = self.failures.lock() else {
            return false;
        };
        let c = f.entry(key.to_owned()).or_insert(0);
        if *c < n {
            *c += 1;
            true
        } else {
            false
        }
    }
}

/// A background server: its thread, runtime and stop signal.
#[derive(Debug)]
struct Background {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    fn spawn<F, Fut>(name: &str, listener: std::net::TcpListener, serve: F) -> Result<Background>
    where
        F: FnOnce(TcpListener) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()>,
    {
        listener
            .set_nonblocking(true)
            .ctx("setting listener non-blocking")?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ctx("building echo runtime")?;
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("echo-{name}"))
            .spawn(move || {
                rt.block_on(async move {
                    let Ok(listener) = TcpListener::from_std(listener) else {
                        return;
                    };
                    tokio::select! {
                        () = serve(listener) => {}
                        _ = stopped => {}
                    }
                });
                rt.shutdown_timeout(Duration::from_millis(100));
            })
            .ctx("spawning echo thread")?;
        Ok(Background {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn bind_free() -> Result<(std::net::TcpListener, u16)> {
    let mut last = None;
    for _ in 0..20 {
        let port = free_port()?;
        match std::net::TcpListener::bind(("127.0.0.1", port)) {
            Ok(l) => return Ok((l, port)),
            Err(e) => last = Some(e),
        }
    }
    Err(Error::io(
        "binding an echo server",
        last.unwrap_or_else(|| std::io::Error::other("no port")),
    ))
}

/// The HTTP echo upstream.
#[derive(Debug)]
pub struct EchoServer {
    name: String,
    port: u16,
    log: Arc<Log>,
    _bg: Background,
}

impl EchoServer {
    /// Starts an echo server named `name` on a free 127.0.0.1 port.
    pub fn start(name: &str) -> Result<EchoServer> {
        let (listener, port) = bind_free()?;
        let log = Arc::new(Log::default());
        let (n, l) = (name.to_owned(), log.clone());
        let bg = Background::spawn(name, listener, move |listener| accept_http(listener, n, l))?;
        Ok(EchoServer {
            name: name.to_owned(),
            port,
            log,
            _bg: bg,
        })
    }

    /// Its name (the `server` of its answers and `x-echo-server` header).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.log
            .requests
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }

    /// Forgets the requests received so far (not the failure counters).
    pub fn clear(&self) {
        if let Ok(mut v) = self.log.requests.lock() {
            v.clear();
        }
    }

    /// How many TCP connections it accepted.
    pub fn connections(&self) -> usize {
        self.log.connections.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests arrived; returns them all.
    pub fn wait_requests(&self, n: usize, timeout: Duration) -> Result<Vec<RecordedRequest>> {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.requests();
            if r.len() >= n {
                return Ok(r);
            }
            if Instant::now() >= deadline {
                return Err(Error::timeout(
                    format!("{n} request(s) at echo {:?} (got {})", self.name, r.len()),
                    timeout,
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The last request received, waiting (bounded) for one.
    pub fn last_request(&self, timeout: Duration) -> Result<RecordedRequest> {
        let r = self.wait_requests(1, timeout)?;
        r.last()
            .cloned()
            .ok_or_else(|| Error::Protocol("no request".into()))
    }
}

/// A plain TCP echo: every byte received is sent back.
#[derive(Debug)]
pub struct TcpEcho {
    port: u16,
    log: Arc<Log>,
    _bg: Background,
}

impl TcpEcho {
    /// Starts a TCP echo on a free 127.0.0.1 port.
    pub fn start() -> Result<TcpEcho> {
        let (listener, port) = bind_free()?;
        let log = Arc::new(Log::default());
        let l = log.clone();
        let bg = Background::spawn("tcp", listener, move |listener| async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    continue;
                };
                l.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    let _ = w.shutdown().await;
                });
            }
        })?;
        Ok(TcpEcho { port, log, _bg: bg })
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// How many connections it accepted.
    pub fn connections(&self) -> usize {
        self.log.connections.load(Ordering::SeqCst)
    }
}

async fn accept_http(listener: TcpListener, name: String, log: Arc<Log>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let conn = log.connections.fetch_add(1, Ordering::SeqCst);
        let (name, log) = (name.clone(), log.clone());
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            if is_h2(&stream).await {
                serve_h2(stream, &name, &log, conn).await;
            } else {
                let _ = serve_h1(stream, &name, &log, conn).await;
            }
        });
    }
}

/// Peeks at the first bytes: the HTTP/2 preface?
async fn is_h2(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 24];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = match tokio::time::timeout(Duration::from_secs(30), stream.peek(&mut buf)).await {
            Ok(Ok(n)) => n,
            _ => return false,
        };
        if n == 0 || !H2_PREFACE.starts_with(&buf[..n]) {
            return false;
        }
        if n == H2_PREFACE.len() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// What the request asked of the answer.
#[derive(Debug, Default)]
struct Controls {
    ctl: HashMap<String, String>,
    set_headers: Vec<String>,
}

impl Controls {
    fn from(headers: &[(String, String)], path: &str) -> Controls {
        let mut c = Controls::default();
        if let Some((_, query)) = path.split_once('?') {
            for pair in query.split('&') {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                c.add(&percent_decode(k), &percent_decode(v));
            }
        }
        for (k, v) in headers {
            c.add(k, v);
        }
        c
    }

    fn add(&mut self, k: &str, v: &str) {
        let k = k.to_ascii_lowercase();
        if k == "x-echo-set-header" {
            self.set_headers.push(v.to_owned());
        } else if k.starts_with("x-echo-") {
            self.ctl.insert(k, v.to_owned());
        }
    }

    fn flag(&self, k: &str) -> bool {
        self.ctl.get(k).is_some_and(|v| !v.is_empty() && v != "0")
    }

    fn int(&self, k: &str) -> Option<u64> {
        self.ctl.get(k).and_then(|v| v.trim().parse().ok())
    }
}

/// The answer to one request.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    delay: Duration,
    chunked: bool,
    no_content_length: bool,
    close: bool,
    reset: bool,
}

fn build_answer(rec: &RecordedRequest, log: &Log) -> Answer {
    let c = Controls::from(&rec.headers, &rec.path);
    let mut status = c
        .int("x-echo-status")
        .and_then(|s| u16::try_from(s).ok())
        .filter(|s| (100..1000).contains(s))
        .unwrap_or(200);
    if let Some(n) = c.int("x-echo-fail-times") {
        let key = c
            .ctl
            .get("x-echo-key")
            .cloned()
            .unwrap_or_else(|| rec.path.split('?').next().unwrap_or("").to_owned());
        if log.take_failure(&key, n) {
            status = c
                .int("x-echo-fail-status")
                .and_then(|s| u16::try_from(s).ok())
                .unwrap_or(503);
        }
    }
    let delay = Duration::from_millis(c.int("x-echo-delay-ms").unwrap_or(0).min(MAX_DELAY_MS));
    let mut headers = Vec::new();
    let body = if let Some(b) = c.ctl.get("x-echo-body") {
        headers.push(("content-type".to_owned(), "text/plain".to_owned()));
        percent_decode(b).into_bytes()
    } else if let Some(n) = c.int("x-echo-response-size") {
        headers.push((
            "content-type".to_owned(),
            "application/octet-stream".to_owned(),
        ));
        pattern_bytes(
            usize::try_from(n)
                .unwrap_or(MAX_RESPONSE_SIZE)
                .min(MAX_RESPONSE_SIZE),
        )
    } else {
        headers.push(("content-type".to_owned(), "application/json".to_owned()));
        let mut b = rec.to_json().to_string().into_bytes();
        b.push(b'\n');
        b
    };
    headers.push(("x-echo-server".to_owned(), rec.server.clone()));
    let mut extra = Vec::new();
    for set in &c.set_headers {
        for pair in set.split('&') {
            if let Some((k, v)) = pair.split_once('=') {
                extra.push((percent_decode(k), percent_decode(v)));
            }
        }
    }
    headers.retain(|(k, _)| !extra.iter().any(|(e, _)| e.eq_ignore_ascii_case(k)));
    headers.extend(extra);
    Answer {
        status,
        headers,
        body,
        delay,
        chunked: c.flag("x-echo-chunked"),
        no_content_length: c.flag("x-echo-no-content-length"),
        close: c.flag("x-echo-close"),
        reset: c.flag("x-echo-reset"),
    }
}

/// `%XX` and `+`-free percent decoding (invalid escapes are kept as is).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Reads more bytes into `buf`; `Ok(false)` at EOF.
async fn fill(stream: &mut TcpStream, buf: &mut BytesMut) -> std::io::Result<bool> {
    buf.reserve(16 * 1024);
    let n = stream.read_buf(buf).await?;
    Ok(n > 0)
}

/// Reads one CRLF-terminated line (without the CRLF).
async fn read_line(stream: &mut TcpStream, buf: &mut BytesMut) -> std::io::Result<Vec<u8>> {
    loop {
        if let Some(pos) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = buf.split_to(pos).to_vec();
            buf.advance(2);
            return Ok(line);
        }
        if buf.len() > MAX_HEAD || !fill(stream, buf).await? {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "eof in chunked body",
            ));
        }
    }
}

async fn read_exact_buf(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    n: usize,
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    while buf.len() < n {
        if !fill(stream, buf).await? {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "eof in body",
            ));
        }
    }
    out.extend_from_slice(&buf.split_to(n));
    Ok(())
}

async fn read_chunked(stream: &mut TcpStream, buf: &mut BytesMut) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(stream, buf).await?;
        let text = String::from_utf8_lossy(&line);
        let size_text = text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunk size"))?;
        if size == 0 {
            // trailers until an empty line
            loop {
                if read_line(stream, buf).await?.is_empty() {
                    return Ok(body);
                }
            }
        }
        read_exact_buf(stream, buf, size, &mut body).await?;
        if !read_line(stream, buf).await?.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "chunk not followed by CRLF",
            ));
        }
    }
}

struct Head {
    method: String,
    path: String,
    minor: u8,
    headers: Vec<(String, String)>,
}

/// Reads and parses one request head; `None` at a clean EOF.
async fn read_head(stream: &mut TcpStream, buf: &mut BytesMut) -> std::io::Result<Option<Head>> {
    loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head_len = pos + 4;
            let mut storage = [httparse::EMPTY_HEADER; 256];
            let mut req = httparse::Request::new(&mut storage);
            let parsed = req
                .parse(&buf[..head_len])
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
            if parsed.is_partial() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "partial head",
                ));
            }
            let head = Head {
                method: req.method.unwrap_or("").to_owned(),
                path: req.path.unwrap_or("").to_owned(),
                minor: req.version.unwrap_or(1),
                headers: req
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_owned(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect(),
            };
            buf.advance(head_len);
            return Ok(Some(head));
        }
        if buf.len() > MAX_HEAD {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "head too large",
            ));
        }
        if !fill(stream, buf).await? {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "eof in head",
                ))
            };
        }
    }
}

fn has_token(headers: &[(String, String)], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .any(|(_, v)| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

fn first<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

async fn serve_h1(
    mut stream: TcpStream,
    name: &str,
    log: &Log,
    conn: usize,
) -> std::io::Result<()> {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    loop {
        let Some(head) = read_head(&mut stream, &mut buf).await? else {
            return Ok(());
        };
        let chunked = has_token(&head.headers, "transfer-encoding", "chunked");
        let content_length = first(&head.headers, "content-length")
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        let upgrade = first(&head.headers, "upgrade").map(str::to_owned);
        let is_upgrade = upgrade.is_some() && has_token(&head.headers, "connection", "upgrade");
        if (chunked || content_length > 0)
            && first(&head.headers, "expect")
                .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        {
            stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        }
        let body = if chunked {
            read_chunked(&mut stream, &mut buf).await?
        } else {
            let mut b = Vec::with_capacity(content_length);
            read_exact_buf(&mut stream, &mut buf, content_length, &mut b).await?;
            b
        };
        let rec = RecordedRequest {
            server: name.to_owned(),
            protocol: format!("HTTP/1.{}", head.minor),
            method: head.method.clone(),
            path: head.path.clone(),
            h2_authority: None,
            headers: head.headers.clone(),
            body_len: body.len(),
            body_sha256: sha256_hex(&body),
            chunked,
            connection: conn,
        };
        log.add(rec.clone());
        if is_upgrade && let Some(up) = upgrade {
            return upgrade_echo(stream, buf, &head, &up, name).await;
        }
        let ans = build_answer(&rec, log);
        if ans.reset {
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            return Ok(());
        }
        if !ans.delay.is_zero() {
            tokio::time::sleep(ans.delay).await;
        }
        let no_body_status = ans.status == 204 || ans.status == 304 || ans.status < 200;
        let req_close = has_token(&head.headers, "connection", "close")
            || (head.minor == 0 && !has_token(&head.headers, "connection", "keep-alive"));
        let close = ans.close || ans.no_content_length || req_close;
        let reason = http::StatusCode::from_u16(ans.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Unknown");
        let mut out = format!("HTTP/1.1 {} {reason}\r\n", ans.status).into_bytes();
        for (k, v) in &ans.headers {
            out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        let chunked_out = ans.chunked && !no_body_status && head.minor == 1;
        if chunked_out {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        } else if !ans.no_content_length && !no_body_status {
            out.extend_from_slice(format!("content-length: {}\r\n", ans.body.len()).as_bytes());
        }
        if close {
            out.extend_from_slice(b"connection: close\r\n");
        } else if head.minor == 0 {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if head.method != "HEAD" && !no_body_status {
            if chunked_out {
                for piece in ans.body.chunks(16 * 1024) {
                    out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                    out.extend_from_slice(piece);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
            } else {
                out.extend_from_slice(&ans.body);
            }
        }
        stream.write_all(&out).await?;
        if close {
            stream.shutdown().await?;
            // Drain (bounded) until the peer closes, so it sees a FIN, not a RST.
            let mut sink = [0u8; 16 * 1024];
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while let Ok(n) = stream.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .await;
            return Ok(());
        }
    }
}

async fn upgrade_echo(
    mut stream: TcpStream,
    buf: BytesMut,
    head: &Head,
    upgrade: &str,
    name: &str,
) -> std::io::Result<()> {
    let key = first(&head.headers, "sec-websocket-key");
    let mut out = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: {upgrade}\r\nconnection: Upgrade\r\nx-echo-server: {name}\r\n"
    );
    let websocket = upgrade.eq_ignore_ascii_case("websocket") && key.is_some();
    if let Some(k) = key {
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(k.as_bytes());
        out.push_str(&format!("sec-websocket-accept: {accept}\r\n"));
    }
    out.push_str("\r\n");
    stream.write_all(out.as_bytes()).await?;
    if websocket {
        let mut ws = tokio_tungstenite::WebSocketStream::from_partially_read(
            stream,
            buf.to_vec(),
            tokio_tungstenite::tungstenite::protocol::Role::Server,
            None,
        )
        .await;
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_text() || msg.is_binary() {
                if ws.send(msg).await.is_err() {
                    break;
                }
            } else if msg.is_close() {
                break;
            }
        }
        let _ = ws.close(None).await;
        return Ok(());
    }
    if !buf.is_empty() {
        stream.write_all(&buf).await?;
    }
    let (mut r, mut w) = stream.split();
    tokio::io::copy(&mut r, &mut w).await?;
    w.shutdown().await
}

async fn serve_h2(stream: TcpStream, name: &str, log: &Arc<Log>, conn: usize) {
    let Ok(mut connection) = h2::server::handshake(stream).await else {
        return;
    };
    while let Some(Ok((req, respond))) = connection.accept().await {
        let (name, log) = (name.to_owned(), log.clone());
        tokio::spawn(async move {
            let _ = handle_h2(req, respond, &name, &log, conn).await;
        });
    }
}

async fn handle_h2(
    req: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    name: &str,
    log: &Log,
    conn: usize,
) -> std::result::Result<(), h2::Error> {
    let (parts, mut body) = req.into_parts();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let rec = RecordedRequest {
        server: name.to_owned(),
        protocol: "HTTP/2".to_owned(),
        method: parts.method.as_str().to_owned(),
        path: parts
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
        h2_authority: parts.uri.authority().map(|a| a.as_str().to_owned()),
        headers,
        body_len: data.len(),
        body_sha256: sha256_hex(&data),
        chunked: false,
        connection: conn,
    };
    log.add(rec.clone());
    let ans = build_answer(&rec, log);
    if ans.reset {
        respond.send_reset(h2::Reason::INTERNAL_ERROR);
        return Ok(());
    }
    if !ans.delay.is_zero() {
        tokio::time::sleep(ans.delay).await;
    }
    let no_body = rec.method == "HEAD" || ans.status == 204 || ans.status == 304;
    let mut builder = http::Response::builder().status(ans.status);
    for (k, v) in &ans.headers {
        builder = builder.header(k.to_ascii_lowercase(), v);
    }
    if !ans.no_content_length && ans.status != 204 && ans.status != 304 {
        builder = builder.header("content-length", ans.body.len());
    }
    let Ok(response) = builder.body(()) else {
        respond.send_reset(h2::Reason::INTERNAL_ERROR);
        return Ok(());
    };
    let end = no_body || ans.body.is_empty();
    let mut send = respond.send_response(response, end)?;
    if !end {
        send.send_data(Bytes::from(ans.body), true)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%2x%"), "a b%2x%");
        assert_eq!(percent_decode("%41%42"), "AB");
    }

    #[test]
    fn json_round_trip() {
        let r = RecordedRequest {
            server: "s".into(),
            protocol: "HTTP/1.1".into(),
            method: "GET".into(),
            path: "/x?y".into(),
            h2_authority: None,
            headers: vec![("Host".into(), "h".into())],
            body_len: 0,
            body_sha256: sha256_hex(b""),
            chunked: false,
            connection: 3,
        };
        assert_eq!(RecordedRequest::from_json(&r.to_json()), Some(r));
    }
}
