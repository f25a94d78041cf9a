//! Stream and connection timers, retries' per-try timers, downstream disconnects and
//! internal redirects, as an Envoy user sees them: status, body, `connection: close`,
//! closes, admin `/stats` counters and access-log lines.
//!
//! Every scenario is a function of the binary under test. `target::*` runs it against rvoy
//! (or Envoy with `RVOY_TEST_TARGET=envoy`); `envoy_oracle::*` (the differential section) runs
//! the very same scenario and assertions against real Envoy when it is installed, and prints
//! a message and passes when it is not. The assertions are Envoy's behaviour, and rvoy
//! meets all of them.
//!
//! The upstream is a small scripted HTTP/1.1 server (below) steered by the request path, so
//! it can stay silent, stall mid-body, redirect, or fail only the first attempt. Everything
//! listens on 127.0.0.1, ports are picked at run time, and every wait is bounded.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{hcm, static_cluster, vhost};
use rvoy_testkit::raw::{RawConn, RawResponse, Request};
use rvoy_testkit::{Binary, HyperClient, Ports, Proxy, ProxyBuilder};

/// The bound of one wait for something that should happen "soon".
const WAIT: Duration = Duration::from_secs(3);

// ---------------------------------------------------------------------------------------
// Scenario registry: each scenario runs against the binary under test and against Envoy.
// ---------------------------------------------------------------------------------------

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        /// The scenarios against the binary under test (rvoy by default).
        mod target {
            $(
                #[test]
                fn $name() {
                    super::$name(&super::Target::new(super::common::binary()));
                }
            )*
        }

        /// The differential section: the same scenarios against real Envoy, the oracle.
        mod envoy_oracle {
            $(
                #[test]
                fn $name() {
                    match rvoy_testkit::Binary::envoy() {
                        Some(envoy) => super::$name(&super::Target::new(envoy)),
                        None => println!("envoy not installed, skipping {}", stringify!($name)),
                    }
                }
            )*
        }
    };
}

scenarios!(
    stream_idle_timeout,
    request_timeout,
    max_stream_duration,
    route_idle_timeout_and_max_stream_duration,
    route_timeout,
    per_try_timeouts_and_retriable_request_headers,
    downstream_disconnect_while_waiting,
    internal_redirects,
    max_connection_duration_http1,
    http1_idle_timeout,
    http2_idle_timeout_and_goaway,
    connection_close_waits_delayed_close_timeout,
    connection_close_after_an_upstream_answer_closes_at_once,
    local_reply_header_order,
    http2_codec_starts_with_the_first_byte,
    http2_partial_preface_drains_at_idle_timeout,
);

/// Which binary a scenario runs against.
#[derive(Clone)]
struct Target {
    binary: Binary,
}

impl Target {
    fn new(binary: Binary) -> Target {
        Target { binary }
    }
}

// ---------------------------------------------------------------------------------------
// A scripted HTTP/1.1 upstream.
// ---------------------------------------------------------------------------------------

/// One request as the scripted upstream received it (the body only for answered requests).
#[derive(Debug, Clone)]
struct UpRequest {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl UpRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct UpState {
    requests: Mutex<Vec<UpRequest>>,
    seen: Mutex<HashMap<String, usize>>,
    accepted: AtomicUsize,
    closed_by_peer: AtomicUsize,
    stop: AtomicBool,
}

/// What the upstream does with a request.
enum Act {
    /// Never answers; keeps the connection open until the proxy closes it.
    Silent,
    /// Sends a 200 head with `content-length: 10` and 2 body bytes, then stalls.
    Stall,
    /// Answers after `delay`.
    Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
        delay: Duration,
    },
}

fn reply(status: u16, body: &str) -> Act {
    Act::Reply {
        status,
        headers: Vec::new(),
        body: body.to_owned(),
        delay: Duration::ZERO,
    }
}

fn redirect(status: u16, location: &str) -> Act {
    Act::Reply {
        status,
        headers: vec![
            ("location".to_owned(), location.to_owned()),
            ("x-copied".to_owned(), "from-3xx".to_owned()),
        ],
        body: "redirecting".to_owned(),
        delay: Duration::ZERO,
    }
}

/// The upstream's behaviour, chosen by the first keyword segment of the path:
///
/// | path | behaviour |
/// | --- | --- |
/// | `.../silent` | never answers |
/// | `.../stall` | 200 head (`content-length: 10`), 2 body bytes, then nothing |
/// | `.../slow/MS` | 200 `slow` after MS ms |
/// | `.../first-silent/KEY` | the first request for KEY never answered, later ones 200 `ok` |
/// | `.../r/CODE/final` | CODE with `location: http://other.example/final?q=1` |
/// | `.../r/CODE/https` | CODE with `location: https://other.example/final` |
/// | `.../r/CODE/bad` | CODE with an unparsable `location` |
/// | `.../r/CODE/relative` | CODE with `location: /final` |
/// | `.../chain/N` | N > 0: 302 to `http://other.example/chain/N-1`; N = 0: 200 `end of chain` |
/// | anything else | 200 `ok` |
///
/// Every 3xx also carries `x-copied: from-3xx`.
fn script(req: &UpRequest, st: &UpState) -> Act {
    let path = req.path.split('?').next().unwrap_or("");
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let arg = |i: usize| segs.get(i).copied().unwrap_or("");
    for (i, seg) in segs.iter().enumerate() {
        match *seg {
            "silent" => return Act::Silent,
            "stall" => return Act::Stall,
            "slow" => {
                return Act::Reply {
                    status: 200,
                    headers: Vec::new(),
                    body: "slow".to_owned(),
                    delay: Duration::from_millis(arg(i + 1).parse().unwrap_or(0)),
                };
            }
            "first-silent" => {
                let n = {
                    let mut seen = st.seen.lock().expect("seen");
                    let c = seen.entry(arg(i + 1).to_owned()).or_insert(0);
                    *c += 1;
                    *c
                };
                return if n == 1 {
                    Act::Silent
                } else {
                    reply(200, "ok")
                };
            }
            "r" => {
                let code = arg(i + 1).parse().unwrap_or(302);
                let location = match arg(i + 2) {
                    "https" => "https://other.example/final",
                    "bad" => "http://bad host/x",
                    "relative" => "/final",
                    _ => "http://other.example/final?q=1",
                };
                return redirect(code, location);
            }
            "chain" => {
                let n: u32 = arg(i + 1).parse().unwrap_or(0);
                return if n == 0 {
                    reply(200, "end of chain")
                } else {
                    redirect(302, &format!("http://other.example/chain/{}", n - 1))
                };
            }
            _ => {}
        }
    }
    reply(200, "ok")
}

/// The scripted upstream (see [`script`]); it stops when dropped.
struct Upstream {
    port: u16,
    st: Arc<UpState>,
    accept: Option<JoinHandle<()>>,
}

impl Upstream {
    fn start() -> Upstream {
        let mut last = None;
        for _ in 0..20 {
            let port = rvoy_testkit::ports::free_port().expect("a free port");
            match TcpListener::bind(("127.0.0.1", port)) {
                Ok(listener) => return Upstream::serve(listener, port),
                Err(e) => last = Some(e),
            }
        }
        panic!("no port for the upstream: {last:?}");
    }

    fn serve(listener: TcpListener, port: u16) -> Upstream {
        let st = Arc::new(UpState::default());
        let st2 = st.clone();
        let accept = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if st2.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                st2.accepted.fetch_add(1, Ordering::SeqCst);
                let st3 = st2.clone();
                std::thread::spawn(move || serve_conn(stream, &st3));
            }
        });
        Upstream {
            port,
            st,
            accept: Some(accept),
        }
    }

    fn requests(&self) -> Vec<UpRequest> {
        self.st.requests.lock().expect("requests").clone()
    }

    /// The requests whose path starts with `prefix`.
    fn requests_to(&self, prefix: &str) -> Vec<UpRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.starts_with(prefix))
            .collect()
    }

    /// Waits until `n` requests whose path starts with `prefix` arrived.
    fn wait_requests_to(&self, prefix: &str, n: usize) -> Vec<UpRequest> {
        let deadline = Instant::now() + WAIT;
        loop {
            let r = self.requests_to(prefix);
            if r.len() >= n || Instant::now() >= deadline {
                return r;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Connections the proxy closed (EOF or reset seen by the upstream).
    fn closed_by_proxy(&self) -> usize {
        self.st.closed_by_peer.load(Ordering::SeqCst)
    }

    /// Waits until the proxy closed at least `n` upstream connections.
    fn wait_closed(&self, n: usize, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        while self.closed_by_proxy() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.closed_by_proxy()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.st.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads more bytes; `false` at EOF, on an error, or when the upstream stops.
fn fill(s: &mut TcpStream, buf: &mut Vec<u8>, st: &UpState) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if st.stop.load(Ordering::SeqCst) {
            return false;
        }
        match s.read(&mut chunk) {
            Ok(0) => {
                st.closed_by_peer.fetch_add(1, Ordering::SeqCst);
                return false;
            }
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return true;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {
                st.closed_by_peer.fetch_add(1, Ordering::SeqCst);
                return false;
            }
        }
    }
}

/// Reads the body of a request (content-length or chunked); `None` if the connection ended.
fn read_body(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    headers: &[(String, String)],
    st: &UpState,
) -> Option<Vec<u8>> {
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.to_ascii_lowercase())
    };
    if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(p) = find(buf, b"\r\n") {
                    break p;
                }
                if !fill(s, buf, st) {
                    return None;
                }
            };
            let line = String::from_utf8_lossy(&buf[..line_end]).into_owned();
            buf.drain(..line_end + 2);
            let size =
                usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
            if size == 0 {
                // Trailers (none expected) up to the empty line.
                loop {
                    let p = loop {
                        if let Some(p) = find(buf, b"\r\n") {
                            break p;
                        }
                        if !fill(s, buf, st) {
                            return None;
                        }
                    };
                    buf.drain(..p + 2);
                    if p == 0 {
                        return Some(body);
                    }
                }
            }
            while buf.len() < size + 2 {
                if !fill(s, buf, st) {
                    return None;
                }
            }
            body.extend(buf.drain(..size));
            buf.drain(..2);
        }
    }
    let n: usize = get("content-length")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < n {
        if !fill(s, buf, st) {
            return None;
        }
    }
    Some(buf.drain(..n).collect())
}

fn serve_conn(mut s: TcpStream, st: &UpState) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
    let _ = s.set_nodelay(true);
    let mut buf = Vec::new();
    loop {
        let head_len = loop {
            if let Some(p) = find(&buf, b"\r\n\r\n") {
                break p + 4;
            }
            if !fill(&mut s, &mut buf, st) {
                return;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
        buf.drain(..head_len);
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or("").split(' ');
        let method = first.next().unwrap_or("").to_owned();
        let path = first.next().unwrap_or("").to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let mut req = UpRequest {
            method,
            path,
            headers,
            body: Vec::new(),
        };
        let act = script(&req, st);
        match act {
            Act::Silent | Act::Stall => {
                st.requests.lock().expect("requests").push(req);
                if matches!(act, Act::Stall) {
                    let _ = s.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 10\r\n\r\nab",
                    );
                }
                // Whatever else comes (the rest of a body) is read and dropped until the
                // proxy closes the connection.
                loop {
                    buf.clear();
                    if !fill(&mut s, &mut buf, st) {
                        return;
                    }
                }
            }
            Act::Reply {
                status,
                headers,
                body,
                delay,
            } => {
                let Some(b) = read_body(&mut s, &mut buf, &req.headers, st) else {
                    return;
                };
                req.body = b;
                st.requests.lock().expect("requests").push(req);
                let until = Instant::now() + delay;
                while Instant::now() < until {
                    if st.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                let mut out = format!("HTTP/1.1 {status} X\r\ncontent-type: text/plain\r\n");
                for (k, v) in &headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
                if s.write_all(out.as_bytes()).is_err() {
                    return;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The proxy under test: config, admin stats, access log.
// ---------------------------------------------------------------------------------------

/// The access-log line format: a marker (the request's `x-mark`) and what the scenarios
/// check.
const LOG_FORMAT: &str = "LOG %REQ(X-MARK)% %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %REQ(:AUTHORITY)% %REQ(:PATH)% %RESPONSE_CODE_DETAILS%\n";

/// One access-log line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LogLine {
    code: String,
    flags: String,
    received: String,
    sent: String,
    authority: String,
    path: String,
    details: String,
}

/// A running proxy with its scripted upstream.
struct Env {
    proxy: Proxy,
    up: Upstream,
}

/// Starts `target` with one listener (HCM `ingress`, extra fields `hcm_extra`, access log to
/// stdout), `routes` (a YAML list) in one virtual host for every domain, a cluster `up` (the
/// scripted upstream) and an admin listener.
fn start(target: &Target, routes: &str, hcm_extra: &str) -> Env {
    let up = Upstream::start();
    let log = format!(
        r#"access_log:
- name: envoy.access_loggers.stdout
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
    log_format: {{text_format_source: {{inline_string: {LOG_FORMAT:?}}}}}"#
    );
    let extra = if hcm_extra.is_empty() {
        log
    } else {
        format!("{log}\n{hcm_extra}")
    };
    let config = format!(
        "admin:\n  address: {{socket_address: {{address: 127.0.0.1, port_value: {{{{port:admin}}}}}}}}\n{}",
        hcm(
            &vhost("v", "[\"*\"]", routes),
            &extra,
            &static_cluster("up", "up", ""),
        )
    );
    let mut ports = Ports::new();
    ports.insert("up", up.port);
    let proxy = ProxyBuilder::new(target.binary.clone())
        .config(&config)
        .ports(&ports)
        .extra_args(&["--file-flush-interval-msec", "20"])
        .start()
        .expect("proxy starts and listens");
    Env { proxy, up }
}

impl Env {
    fn addr(&self) -> SocketAddr {
        self.proxy.addr("listener")
    }

    fn connect(&self) -> RawConn {
        RawConn::connect_timeout(self.addr(), WAIT).expect("connect")
    }

    /// Sends `req` on a new connection and reads the response (bounded).
    fn send(&self, req: &Request) -> (RawResponse, RawConn) {
        let mut c = self.connect();
        let r = c.request(req).expect("a response");
        (r, c)
    }

    /// Every counter of the admin `/stats` page.
    fn stats(&self) -> HashMap<String, u64> {
        let mut c = RawConn::connect_timeout(self.proxy.addr("admin"), WAIT).expect("admin");
        let r = c
            .request(&Request::get("/stats", "127.0.0.1"))
            .expect("stats page");
        assert_eq!(r.status, 200, "{}", r.body_str());
        r.body_str()
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(": ")?;
                Some((k.to_owned(), v.trim().parse().ok()?))
            })
            .collect()
    }

    /// The counter `name` (0 when absent), once it reached `want` or after a bounded wait.
    fn stat(&self, name: &str, want: u64) -> u64 {
        let deadline = Instant::now() + WAIT;
        loop {
            let v = self.stats().get(name).copied().unwrap_or(0);
            if v >= want || Instant::now() >= deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The access-log lines of the request marked `mark` (by its `x-mark` header, or by
    /// the `mark=` of its path), once there are `n` (bounded wait; then whatever there is),
    /// read again after a short pause so that a surplus line shows up too.
    #[track_caller]
    fn log(&self, mark: &str, n: usize) -> Vec<LogLine> {
        let in_path = format!("mark={mark}");
        let read = || -> Vec<(String, LogLine)> {
            self.proxy
                .stdout()
                .lines()
                .filter_map(|l| l.strip_prefix("LOG "))
                .map(|l| {
                    let f: Vec<&str> = l.split(' ').collect();
                    let at = |i: usize| f.get(i).copied().unwrap_or("").to_owned();
                    let line = LogLine {
                        code: at(1),
                        flags: at(2),
                        received: at(3),
                        sent: at(4),
                        authority: at(5),
                        path: at(6),
                        details: at(7),
                    };
                    (at(0), line)
                })
                .filter(|(m, l)| {
                    m == mark
                        || l.path.ends_with(&in_path)
                        || l.path.contains(&format!("{in_path}&"))
                })
                .collect()
        };
        let deadline = Instant::now() + WAIT;
        while read().len() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(60));
        let lines = read();
        // Local replies of the stream timers too log the request's headers.
        for (m, l) in &lines {
            assert_eq!(m, mark, "%REQ(X-MARK)% of {l:?}");
        }
        lines.into_iter().map(|(_, l)| l).collect()
    }

    /// The single access-log line of requests marked `mark`.
    #[track_caller]
    fn log1(&self, mark: &str) -> LogLine {
        let lines = self.log(mark, 1);
        assert_eq!(lines.len(), 1, "one log line for {mark}: {lines:#?}");
        lines[0].clone()
    }
}

/// `path` with the query parameter `mark=MARK` (the upstream ignores queries).
fn marked(path: &str, mark: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}mark={mark}")
}

/// A GET of `path` marked `mark` (header `x-mark` and query parameter `mark`).
fn get(path: &str, mark: &str) -> Request {
    Request::get(&marked(path, mark), "example.com").header("x-mark", mark)
}

/// A POST of `body` to `path` marked `mark`.
fn post(path: &str, mark: &str, body: &[u8]) -> Request {
    Request::new("POST", &marked(path, mark))
        .header("host", "example.com")
        .header("x-mark", mark)
        .body(body)
}

/// A POST marked `mark` that announces `content-length: 100` but sends only 10 body bytes.
fn incomplete_post(env: &Env, path: &str, mark: &str) -> RawConn {
    let mut c = env.connect();
    c.send(
        format!(
            "POST {} HTTP/1.1\r\nhost: example.com\r\nx-mark: {mark}\r\ncontent-length: 100\r\n\r\n0123456789",
            marked(path, mark)
        )
        .as_bytes(),
    )
    .expect("send");
    c
}

/// `started` was about `at_least` ago (timers may fire a few ms early by our clock).
fn assert_took(started: Instant, at_least: Duration, what: &str) {
    let took = started.elapsed();
    assert!(
        took + Duration::from_millis(50) >= at_least
            && took < at_least + Duration::from_millis(2500),
        "{what}: took {took:?}, expected about {at_least:?}"
    );
}

/// An error answer of the proxy itself: status, body, `connection: close` and the close.
fn assert_local_reply(c: &mut RawConn, status: u16, body: &str, closes: bool) {
    let r = c.read_response().expect("a local reply");
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(r.body_str(), body, "{r:?}");
    assert_eq!(r.header("content-type"), Some("text/plain"), "{r:?}");
    if closes {
        assert_eq!(r.header("connection"), Some("close"), "{r:?}");
        assert!(c.is_closed(WAIT), "closed after {status}");
    } else {
        assert_eq!(r.header("connection"), None, "{r:?}");
        assert!(
            !c.is_closed(Duration::from_millis(100)),
            "kept open after {status}"
        );
    }
}

/// Requests `path` (the upstream sends a 200 head, `content-length: 10` and 2 body bytes,
/// then stalls) and checks that the proxy cuts the response: the client gets the head and
/// the 2 bytes, then the connection closes. Returns how long that took.
fn assert_cut_mid_body(env: &Env, path: &str, mark: &str) -> Duration {
    let started = Instant::now();
    let mut c = env.connect();
    c.send(&get(path, mark).to_bytes()).expect("send");
    let raw = c.read_to_close().expect("the proxy closes the connection");
    let text = String::from_utf8_lossy(&raw).into_owned();
    assert!(text.starts_with("HTTP/1.1 200 "), "{text:?}");
    assert!(text.contains("\r\ncontent-length: 10\r\n"), "{text:?}");
    assert!(
        text.ends_with("\r\n\r\nab"),
        "only the 2 bytes sent: {text:?}"
    );
    started.elapsed()
}

/// GETs `paths` one after the other on one h2c connection: each status and body, or the
/// client's error (a reset stream).
fn h2_gets(env: &Env, paths: &[&str]) -> Vec<Result<(u16, String), String>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut client = HyperClient::h2c(env.addr()).await.expect("h2c connect");
        client.set_timeout(WAIT);
        let mut out = Vec::new();
        for path in paths {
            out.push(
                client
                    .get(path, "example.com")
                    .await
                    .map(|r| (r.status, r.body_str()))
                    .map_err(|e| e.to_string()),
            );
        }
        out
    })
}

const HCM_FAST_CLOSE: &str = "delayed_close_timeout: 0.1s";

// ---------------------------------------------------------------------------------------
// 1. stream_idle_timeout
// ---------------------------------------------------------------------------------------

fn stream_idle_timeout(t: &Target) {
    let env = start(
        t,
        "- match: {prefix: \"/\"}\n  route: {cluster: up}",
        &format!("stream_idle_timeout: 0.4s\n{HCM_FAST_CLOSE}"),
    );

    // The request is complete, the upstream never answers: 504.
    let started = Instant::now();
    let mut c = env.connect();
    c.send(&get("/silent", "si-complete").to_bytes())
        .expect("send");
    assert_local_reply(&mut c, 504, "stream timeout", false);
    assert_took(started, Duration::from_millis(400), "idle timeout");
    let l = env.log1("si-complete");
    assert_eq!((l.code.as_str(), l.flags.as_str()), ("504", "SI"), "{l:?}");
    assert_eq!(l.details, "stream_idle_timeout", "{l:?}");

    // The request body is still arriving: 408 and the connection closes.
    let mut c = incomplete_post(&env, "/silent", "si-partial");
    assert_local_reply(&mut c, 408, "stream timeout", true);
    let l = env.log1("si-partial");
    assert_eq!((l.code.as_str(), l.flags.as_str()), ("408", "SI"), "{l:?}");
    assert_eq!(l.received, "10", "{l:?}");

    // An answer within the timeout is not affected.
    let (r, _) = env.send(&get("/slow/200", "si-ok"));
    assert_eq!((r.status, r.body_str().as_str()), (200, "slow"));

    // Once the response started, the stream is reset: the response is cut.
    let took = assert_cut_mid_body(&env, "/stall", "si-body");
    assert!(took >= Duration::from_millis(350), "cut after {took:?}");
    let l = env.log1("si-body");
    assert_eq!((l.code.as_str(), l.flags.as_str()), ("200", "SI"), "{l:?}");
    assert_eq!(l.sent, "2", "{l:?}");

    // HTTP/2: the stream gets the 504, the connection carries on; a stream whose response
    // started is reset.
    let answers = h2_gets(&env, &["/silent", "/", "/stall", "/"]);
    assert_eq!(answers[0], Ok((504, "stream timeout".to_owned())));
    assert_eq!(answers[1], Ok((200, "ok".to_owned())));
    assert!(answers[2].is_err(), "{answers:?}");
    assert_eq!(answers[3], Ok((200, "ok".to_owned())));

    assert_eq!(env.stat("http.ingress.downstream_rq_idle_timeout", 5), 5);
    // The timed-out upstream requests were reset: their connections are closed.
    assert_eq!(env.up.wait_closed(5, WAIT), 5);
}

// ---------------------------------------------------------------------------------------
// 2. request_timeout
// ---------------------------------------------------------------------------------------

fn request_timeout(t: &Target) {
    let env = start(
        t,
        "- match: {prefix: \"/\"}\n  route: {cluster: up}",
        &format!("request_timeout: 0.4s\n{HCM_FAST_CLOSE}"),
    );

    let started = Instant::now();
    let mut c = incomplete_post(&env, "/silent", "rt-partial");
    assert_local_reply(&mut c, 408, "request timeout", true);
    assert_took(started, Duration::from_millis(400), "request timeout");
    let l = env.log1("rt-partial");
    assert_eq!((l.code.as_str(), l.flags.as_str()), ("408", "-"), "{l:?}");
    assert_eq!(l.details, "request_overall_timeout", "{l:?}");

    // A complete request is not affected, however slow the upstream.
    let (r, _) = env.send(&get("/slow/800", "rt-slow"));
    assert_eq!((r.status, r.body_str().as_str()), (200, "slow"));
    let (r, _) = env.send(&post("/slow/700", "rt-post", b"complete body"));
    assert_eq!((r.status, r.body_str().as_str()), (200, "slow"));
    assert_eq!(env.log1("rt-post").code, "200");

    assert_eq!(env.stat("http.ingress.downstream_rq_timeout", 1), 1);
    assert_eq!(env.stat("http.ingress.downstream_rq_idle_timeout", 0), 0);
}

// ---------------------------------------------------------------------------------------
// 3. common_http_protocol_options.max_stream_duration
// ---------------------------------------------------------------------------------------

fn max_stream_duration(t: &Target) {
    let env = start(
        t,
        "- match: {prefix: \"/\"}\n  route: {cluster: up}",
        &format!("common_http_protocol_options: {{max_stream_duration: 0.4s}}\n{HCM_FAST_CLOSE}"),
    );

    let started = Instant::now();
    let mut c = env.connect();
    c.send(&get("/silent", "msd-complete").to_bytes())
        .expect("send");
    assert_local_reply(&mut c, 504, "downstream duration timeout", false);
    assert_took(started, Duration::from_millis(400), "max stream duration");
    let l = env.log1("msd-complete");
    // No response flag for this timeout.
    assert_eq!((l.code.as_str(), l.flags.as_str()), ("504", "-"), "{l:?}");
    assert_eq!(l.details, "max_duration_timeout", "{l:?}");

    let mut c = incomplete_post(&env, "/silent", "msd-partial");
    assert_local_reply(&mut c, 408, "downstream duration timeout", true);
    let l = env.log1("msd-partial");
    assert_eq!((l.code.as_str(), l.flags.as_str()), ("408", "-"), "{l:?}");

    // Shorter streams are not affected.
    let (r, _) = env.send(&get("/slow/100", "msd-ok"));
    assert_eq!(r.status, 200);

    // Once the response started, the stream is reset: the response is cut.
    let took = assert_cut_mid_body(&env, "/stall", "msd-body");
    assert!(took >= Duration::from_millis(350), "cut after {took:?}");
    let l = env.log1("msd-body");
    assert_eq!(
        (l.code.as_str(), l.flags.as_str(), l.sent.as_str()),
        ("200", "-", "2"),
        "{l:?}"
    );
    assert_eq!(l.details, "max_duration_timeout", "{l:?}");

    assert_eq!(
        env.stat("http.ingress.downstream_rq_max_duration_reached", 3),
        3
    );
}

// ---------------------------------------------------------------------------------------
// 4. Route idle_timeout (and 0s) over stream_idle_timeout; route max_stream_duration.
// ---------------------------------------------------------------------------------------

fn route_idle_timeout_and_max_stream_duration(t: &Target) {
    let routes = r#"- match: {prefix: "/long/"}
  route: {cluster: up, idle_timeout: 3s}
- match: {prefix: "/off/"}
  route: {cluster: up, idle_timeout: 0s}
- match: {prefix: "/short/"}
  route: {cluster: up, idle_timeout: 0.2s}
- match: {prefix: "/maxdur/"}
  route: {cluster: up, max_stream_duration: {max_stream_duration: 0.3s}}
- match: {prefix: "/"}
  route: {cluster: up}"#;
    let env = start(t, routes, "stream_idle_timeout: 1s");

    // Three 1.3 s requests at once: the HCM's 1 s applies by default, a longer route
    // idle_timeout replaces it, and 0s disables it.
    let answers: Vec<(u16, String)> = std::thread::scope(|s| {
        let env = &env;
        let hs: Vec<_> = [
            ("/slow/1300", "rit-default"),
            ("/long/slow/1300", "rit-long"),
            ("/off/slow/1300", "rit-off"),
        ]
        .into_iter()
        .map(|(path, mark)| {
            s.spawn(move || {
                let (r, _) = env.send(&get(path, mark));
                (r.status, r.body_str())
            })
        })
        .collect();
        hs.into_iter()
            .map(|h| h.join().expect("request thread"))
            .collect()
    });
    assert_eq!(
        answers,
        [
            (504, "stream timeout".to_owned()),
            (200, "slow".to_owned()),
            (200, "slow".to_owned())
        ]
    );
    let l = env.log1("rit-default");
    assert_eq!((l.code.as_str(), l.flags.as_str()), ("504", "SI"), "{l:?}");

    // A shorter route idle_timeout applies too.
    let started = Instant::now();
    let (r, _) = env.send(&get("/short/silent", "rit-short"));
    assert_eq!((r.status, r.body_str().as_str()), (504, "stream timeout"));
    let took = started.elapsed();
    let l = env.log1("rit-short");
    assert_eq!((l.code.as_str(), l.flags.as_str()), ("504", "SI"), "{l:?}");
    assert_took(started, Duration::from_millis(200), "route idle timeout");
    assert!(
        took < Duration::from_millis(800),
        "the route's 0.2 s, not the HCM's 1 s: {took:?}"
    );

    // The route's max_stream_duration.
    let started = Instant::now();
    let (r, _) = env.send(&get("/maxdur/silent", "rmsd"));
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (504, "downstream duration timeout")
    );
    let took = started.elapsed();
    let l = env.log1("rmsd");
    assert_eq!((l.code.as_str(), l.flags.as_str()), ("504", "-"), "{l:?}");
    assert_eq!(l.details, "max_duration_timeout", "{l:?}");
    assert_took(
        started,
        Duration::from_millis(300),
        "route max stream duration",
    );
    assert!(
        took < Duration::from_millis(800),
        "the route's 0.3 s, not at the HCM idle timeout: {took:?}"
    );

    assert_eq!(env.stat("http.ingress.downstream_rq_idle_timeout", 2), 2);
    assert_eq!(
        env.stat("http.ingress.downstream_rq_max_duration_reached", 1),
        1
    );
}

// ---------------------------------------------------------------------------------------
// 5. Route timeout: before the response head, and while the body streams.
// ---------------------------------------------------------------------------------------

fn route_timeout(t: &Target) {
    let env = start(
        t,
        "- match: {prefix: \"/\"}\n  route: {cluster: up, timeout: 0.4s}",
        "",
    );

    let started = Instant::now();
    let (r, mut c) = env.send(&get("/silent", "rto-head"));
    let up = env.up.requests_to("/silent");
    assert_eq!(
        up[0].header("x-envoy-expected-rq-timeout-ms"),
        Some("400"),
        "{up:?}"
    );
    assert_eq!((r.status, r.reason.as_str()), (504, "Gateway Timeout"));
    assert_eq!(r.body_str(), "upstream request timeout");
    assert_took(started, Duration::from_millis(400), "route timeout");
    assert!(!c.is_closed(Duration::from_millis(100)), "kept open");
    let l = env.log1("rto-head");
    assert_eq!((l.code.as_str(), l.flags.as_str()), ("504", "UT"), "{l:?}");
    assert_eq!(l.details, "response_timeout", "{l:?}");

    // The head and 2 of 10 body bytes went out; the timer still runs and cuts the
    // response: the client sees a truncated body and the connection closing.
    let took = assert_cut_mid_body(&env, "/stall", "rto-body");
    assert!(took >= Duration::from_millis(350), "cut after {took:?}");
    let l = env.log1("rto-body");
    assert_eq!((l.code.as_str(), l.flags.as_str()), ("200", "UT"), "{l:?}");
    assert_eq!(l.sent, "2", "{l:?}");

    // HTTP/2: the same, the stream is reset mid-body and the connection carries on.
    let answers = h2_gets(&env, &["/silent", "/stall", "/"]);
    assert_eq!(answers[0], Ok((504, "upstream request timeout".to_owned())));
    assert!(answers[1].is_err(), "{answers:?}");
    assert_eq!(answers[2], Ok((200, "ok".to_owned())));

    assert_eq!(env.stat("cluster.up.upstream_rq_timeout", 4), 4);
    assert_eq!(env.up.wait_closed(4, WAIT), 4);
}

// ---------------------------------------------------------------------------------------
// 6. per_try_timeout, per_try_idle_timeout, retriable_request_headers.
// ---------------------------------------------------------------------------------------

fn per_try_timeouts_and_retriable_request_headers(t: &Target) {
    let routes = r#"- match: {prefix: "/pt/"}
  route:
    cluster: up
    retry_policy: {retry_on: 5xx, num_retries: 1, per_try_timeout: 0.3s}
- match: {prefix: "/pti/"}
  route:
    cluster: up
    retry_policy: {retry_on: 5xx, num_retries: 1, per_try_idle_timeout: 0.3s}
- match: {prefix: "/rh/"}
  route:
    cluster: up
    retry_policy:
      retry_on: 5xx
      num_retries: 1
      per_try_timeout: 0.3s
      retriable_request_headers: [{name: ":method", string_match: {exact: GET}}]
- match: {prefix: "/"}
  route: {cluster: up}"#;
    let env = start(t, routes, "");

    // The first attempt times out, the retry succeeds.
    let started = Instant::now();
    let (r, _) = env.send(&get("/pt/first-silent/a", "pt"));
    assert_eq!((r.status, r.body_str().as_str()), (200, "ok"));
    assert_took(started, Duration::from_millis(300), "per-try timeout");
    let tries = env.up.requests_to("/pt/");
    assert_eq!(tries.len(), 2);
    // Each try announces the per-try timeout.
    for r in &tries {
        assert_eq!(
            r.header("x-envoy-expected-rq-timeout-ms"),
            Some("300"),
            "{r:?}"
        );
    }
    let l = env.log1("pt");
    assert_eq!((l.code.as_str(), l.flags.as_str()), ("200", "-"), "{l:?}");
    assert_eq!(env.stat("cluster.up.upstream_rq_per_try_timeout", 1), 1);

    let (r, _) = env.send(&get("/pti/first-silent/b", "pti"));
    assert_eq!((r.status, r.body_str().as_str()), (200, "ok"));
    assert_eq!(env.up.requests_to("/pti/").len(), 2);
    assert_eq!(
        env.stat("cluster.up.upstream_rq_per_try_idle_timeout", 1),
        1
    );

    // Unlike per_try_timeout, the per-try idle timer keeps running once the response
    // streams: a stalled body is cut.
    let took = assert_cut_mid_body(&env, "/pti/stall", "pti-body");
    assert!(took >= Duration::from_millis(250), "cut after {took:?}");
    let l = env.log1("pti-body");
    assert_eq!(
        (l.code.as_str(), l.flags.as_str(), l.sent.as_str()),
        ("200", "UT", "2"),
        "{l:?}"
    );
    assert_eq!(l.details, "upstream_per_try_idle_timeout", "{l:?}");
    assert_eq!(
        env.stat("cluster.up.upstream_rq_per_try_idle_timeout", 2),
        2
    );

    // retriable_request_headers: a GET is retried, a POST is not.
    let (r, _) = env.send(&get("/rh/first-silent/c", "rh-get"));
    assert_eq!((r.status, r.body_str().as_str()), (200, "ok"));
    assert_eq!(env.up.requests_to("/rh/first-silent/c").len(), 2);
    let (r, _) = env.send(&post("/rh/first-silent/d", "rh-post", b"x"));
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (504, "upstream request timeout")
    );
    assert_eq!(env.up.requests_to("/rh/first-silent/d").len(), 1);
    let l = env.log1("rh-post");
    assert_eq!((l.code.as_str(), l.flags.as_str()), ("504", "UT"), "{l:?}");
    assert_eq!(l.details, "upstream_per_try_timeout", "{l:?}");

    assert_eq!(env.stat("cluster.up.upstream_rq_per_try_timeout", 3), 3);
    assert_eq!(env.stat("cluster.up.upstream_rq_retry", 3), 3);
    assert_eq!(env.stat("cluster.up.upstream_rq_retry_success", 3), 3);
}

// ---------------------------------------------------------------------------------------
// 7. The client goes away while the upstream is slow.
// ---------------------------------------------------------------------------------------

fn downstream_disconnect_while_waiting(t: &Target) {
    let env = start(t, "- match: {prefix: \"/\"}\n  route: {cluster: up}", "");
    let mut c = env.connect();
    c.send(&get("/silent", "dc").to_bytes()).expect("send");
    assert_eq!(env.up.wait_requests_to("/silent", 1).len(), 1);
    let accepted = env.up.st.accepted.load(Ordering::SeqCst);
    drop(c);

    let l = env.log1("dc");
    assert_eq!((l.code.as_str(), l.flags.as_str()), ("0", "DC"), "{l:?}");
    assert_eq!(l.sent, "0", "{l:?}");
    assert_eq!(l.details, "downstream_remote_disconnect", "{l:?}");
    // The upstream request is reset: its connection closes.
    assert_eq!(env.up.wait_closed(1, WAIT), 1);
    // And the proxy carries on.
    let (r, _) = env.send(&get("/after", "dc-after"));
    assert_eq!((r.status, r.body_str().as_str()), (200, "ok"));
    assert_eq!(env.up.st.accepted.load(Ordering::SeqCst), accepted + 1);
    assert_eq!(
        env.stat("http.ingress.downstream_cx_destroy_remote_active_rq", 1),
        1
    );
}

// ---------------------------------------------------------------------------------------
// 8. internal_redirect_policy.
// ---------------------------------------------------------------------------------------

const REDIRECT_ROUTES: &str = r#"- match: {prefix: "/r/"}
  route:
    cluster: up
    internal_redirect_policy:
      max_internal_redirects: 2
      redirect_response_codes: [302, 303]
      response_headers_to_copy: [x-copied]
- match: {prefix: "/chain/"}
  route:
    cluster: up
    internal_redirect_policy: {max_internal_redirects: 2}
- match: {prefix: "/"}
  route: {cluster: up}"#;

fn internal_redirects(t: &Target) {
    let env = start(t, REDIRECT_ROUTES, "");

    // Followed: the upstream's 302 never reaches the client.
    let (r, _) = env.send(&get("/r/302/final", "ir"));
    assert_eq!((r.status, r.body_str().as_str()), (200, "ok"), "{r:?}");
    assert_eq!(r.header("location"), None, "{r:?}");
    let finals = env.up.wait_requests_to("/final", 1);
    assert_eq!(finals.len(), 1, "{finals:?}");
    let f = &finals[0];
    assert_eq!((f.method.as_str(), f.path.as_str()), ("GET", "/final?q=1"));
    assert_eq!(f.header("host"), Some("other.example"), "{f:?}");
    assert_eq!(
        f.header("x-envoy-original-url"),
        Some("http://example.com/r/302/final?mark=ir"),
        "{f:?}"
    );
    assert_eq!(f.header("x-copied"), Some("from-3xx"), "{f:?}");
    assert_eq!(f.header("x-mark"), Some("ir"), "{f:?}");
    // One access-log line per pass: the 3xx pass (nothing sent), then the final one. Both
    // show the request headers as they are at the end: the redirected :authority and :path.
    let lines = env.log("ir", 2);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert_eq!(
        (lines[0].code.as_str(), lines[0].sent.as_str()),
        ("302", "0"),
        "{lines:#?}"
    );
    assert_eq!(
        (lines[0].authority.as_str(), lines[0].path.as_str()),
        ("other.example", "/final?q=1"),
        "{lines:#?}"
    );
    assert_eq!(lines[0].details, "internal_redirect", "{lines:#?}");
    assert_eq!(
        (lines[1].code.as_str(), lines[1].sent.as_str()),
        ("200", "2"),
        "{lines:#?}"
    );
    assert_eq!(
        (lines[1].authority.as_str(), lines[1].path.as_str()),
        ("other.example", "/final?q=1"),
        "{lines:#?}"
    );

    // 303: the POST becomes a GET without a body.
    let (r, _) = env.send(&post("/r/303/final", "ir-303", b"hello"));
    assert_eq!((r.status, r.body_str().as_str()), (200, "ok"), "{r:?}");
    let finals = env.up.wait_requests_to("/final", 2);
    let f = &finals[1];
    assert_eq!(f.method, "GET", "{f:?}");
    assert!(f.body.is_empty(), "{f:?}");
    assert_eq!(f.header("content-length"), None, "{f:?}");
    assert_eq!(f.header("transfer-encoding"), None, "{f:?}");
    let lines = env.log("ir-303", 2);
    assert_eq!(
        lines
            .iter()
            .map(|l| (l.code.as_str(), l.received.as_str(), l.sent.as_str()))
            .collect::<Vec<_>>(),
        [("303", "5", "0"), ("200", "5", "2")],
        "{lines:#?}"
    );

    // Up to max_internal_redirects hops are followed, ... (each pass is logged with the
    // request as redirected by that pass)
    let (r, _) = env.send(&get("/chain/2", "ir-chain"));
    assert_eq!((r.status, r.body_str().as_str()), (200, "end of chain"));
    let lines = env.log("ir-chain", 3);
    assert_eq!(
        lines
            .iter()
            .map(|l| (l.code.as_str(), l.sent.as_str(), l.path.as_str()))
            .collect::<Vec<_>>(),
        [
            ("302", "0", "/chain/1"),
            ("302", "0", "/chain/0"),
            ("200", "12", "/chain/0")
        ],
        "{lines:#?}"
    );
    // ... one more and the 3xx goes to the client.
    let (r, _) = env.send(&get("/chain/3", "ir-toomany"));
    assert_eq!(r.status, 302);
    assert_eq!(r.body_str(), "redirecting");
    assert_eq!(
        r.header("location"),
        Some("http://other.example/chain/0"),
        "{r:?}"
    );
    let lines = env.log("ir-toomany", 3);
    assert_eq!(
        lines
            .iter()
            .map(|l| (l.code.as_str(), l.sent.as_str(), l.path.as_str()))
            .collect::<Vec<_>>(),
        [
            ("302", "0", "/chain/2"),
            ("302", "0", "/chain/1"),
            ("302", "11", "/chain/1")
        ],
        "{lines:#?}"
    );
    assert_eq!(
        env.stat(
            "http.ingress.passthrough_internal_redirect_too_many_redirects",
            1
        ),
        1
    );

    // An https target from an http request is passed through.
    let (r, _) = env.send(&get("/r/302/https", "ir-https"));
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("https://other.example/final"));
    assert_eq!(
        env.stat(
            "http.ingress.passthrough_internal_redirect_unsafe_scheme",
            1
        ),
        1
    );

    // So is an unparsable location.
    let (r, _) = env.send(&get("/r/302/bad", "ir-bad"));
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("http://bad host/x"));
    let l = env.log1("ir-bad");
    assert_eq!((l.code.as_str(), l.sent.as_str()), ("302", "11"), "{l:?}");
    assert_eq!(
        env.stat("http.ingress.passthrough_internal_redirect_bad_location", 1),
        1
    );

    // A relative location is not followed either.
    let (r, _) = env.send(&get("/r/302/relative", "ir-rel"));
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("/final"));
    let l = env.log1("ir-rel");
    assert_eq!(
        (l.code.as_str(), l.path.as_str(), l.details.as_str()),
        ("302", "/r/302/relative?mark=ir-rel", "via_upstream"),
        "{l:?}"
    );
    assert_eq!(
        env.stat("http.ingress.passthrough_internal_redirect_bad_location", 2),
        2
    );

    // A code not in redirect_response_codes is not a redirect at all.
    let (r, _) = env.send(&get("/r/307/final", "ir-307"));
    assert_eq!(r.status, 307);

    // Succeeded: /r/302/final, /r/303/final and the two hops of /chain/2 and /chain/3.
    assert_eq!(
        env.stat("cluster.up.upstream_internal_redirect_succeeded_total", 6),
        6
    );
    // Failed: too many redirects, unsafe scheme, two bad locations.
    assert_eq!(
        env.stat("cluster.up.upstream_internal_redirect_failed_total", 4),
        4
    );
}

/// rvoy follows a 302 for a POST with a small body and replays the body. Envoy 1.40 does
/// not answer such a request at all (the client gives up), a deliberate difference: this is
/// rvoy only and not run against Envoy.
#[test]
fn internal_redirect_replays_a_small_post_body() {
    let t = Target::new(Binary::Rvoy(env!("CARGO_BIN_EXE_rvoy").into()));
    let env = start(&t, REDIRECT_ROUTES, "");
    let (r, _) = env.send(&post("/r/302/final", "ir-post", b"hello body"));
    assert_eq!((r.status, r.body_str().as_str()), (200, "ok"), "{r:?}");
    let finals = env.up.wait_requests_to("/final", 1);
    assert_eq!(finals.len(), 1);
    let f = &finals[0];
    assert_eq!(f.method, "POST", "{f:?}");
    assert_eq!(f.body, b"hello body", "{f:?}");
    assert_eq!(f.header("host"), Some("other.example"), "{f:?}");
    let lines = env.log("ir-post", 2);
    assert_eq!(
        lines.iter().map(|l| l.code.as_str()).collect::<Vec<_>>(),
        ["302", "200"],
        "{lines:#?}"
    );
}

// ---------------------------------------------------------------------------------------
// 9. Connection timers: max_connection_duration (HTTP/1), idle_timeout (HTTP/1, HTTP/2).
// ---------------------------------------------------------------------------------------

fn max_connection_duration_http1(t: &Target) {
    // At max_connection_duration the connection starts draining: a response sent from then
    // on carries `connection: close`, and drain_timeout later an idle connection is closed
    // (after delayed_close_timeout).
    let env = start(
        t,
        "- match: {prefix: \"/\"}\n  route: {cluster: up}",
        "common_http_protocol_options: {max_connection_duration: 0.5s}\ndrain_timeout: 0.4s\ndelayed_close_timeout: 0.1s",
    );
    let started = Instant::now();
    let mut busy = env.connect();
    let mut later = env.connect();
    let mut idle = env.connect();
    busy.send(&get("/slow/900", "mcd-busy").to_bytes())
        .expect("send");
    for c in [&mut later, &mut idle] {
        let r = c.request(&get("/", "mcd-first")).expect("response");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("connection"), None, "{r:?}");
    }

    // A request after the deadline, while draining, is answered with `connection: close`.
    std::thread::sleep(Duration::from_millis(600).saturating_sub(started.elapsed()));
    let r = later.request(&get("/", "mcd-later")).expect("response");
    assert_eq!((r.status, r.body_str().as_str()), (200, "ok"));
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    assert!(later.is_closed(WAIT));

    // An idle connection is closed, drain_timeout after the deadline.
    assert!(idle.is_closed(WAIT), "closed when the duration ran out");
    let idle_closed = started.elapsed();
    // (max_connection_duration + drain_timeout + delayed_close_timeout is 1 s.)
    assert!(
        idle_closed >= Duration::from_millis(950),
        "closed after {idle_closed:?}"
    );

    // A request in flight at the deadline is answered with `connection: close`.
    let r = busy.read_response().expect("response");
    assert_eq!((r.status, r.body_str().as_str()), (200, "slow"));
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    assert!(busy.is_closed(WAIT));
    assert!(started.elapsed() >= Duration::from_millis(900));

    assert_eq!(
        env.stat("http.ingress.downstream_cx_max_duration_reached", 3),
        3
    );
}

fn http1_idle_timeout(t: &Target) {
    let env = start(
        t,
        "- match: {prefix: \"/\"}\n  route: {cluster: up}",
        "common_http_protocol_options: {idle_timeout: 0.4s}\ndrain_timeout: 0.3s\ndelayed_close_timeout: 0.1s",
    );
    // A connection that never sends a byte.
    let mut mute = env.connect();

    // The idle timer does not run while a request is open: a 900 ms one is not cut.
    let mut c = env.connect();
    let r = c.request(&get("/slow/900", "it-slow")).expect("response");
    assert_eq!((r.status, r.body_str().as_str()), (200, "slow"));
    assert_eq!(r.header("connection"), None, "{r:?}");
    let answered = Instant::now();

    // Idle afterwards, it drains and is closed: idle_timeout + drain_timeout +
    // delayed_close_timeout (0.8 s) after the response; the connection's end too waits for
    // the delayed close.
    assert!(c.is_closed(WAIT), "closed once idle");
    let idle_for = answered.elapsed();
    assert!(
        idle_for >= Duration::from_millis(750),
        "closed {idle_for:?} after the response"
    );

    // A connection on which no byte ever arrived has no codec: it is closed at idle_timeout.
    assert!(mute.is_closed(WAIT), "a mute connection is closed");
    assert_eq!(env.stat("http.ingress.downstream_cx_idle_timeout", 2), 2);
    assert!(env.stat("http.ingress.downstream_cx_idle_timeout", 1) >= 1);
}

/// What a raw h2c client (preface and SETTINGS sent, SETTINGS acked, PINGs acked if
/// `ack_pings`, no stream) sees on a connection to `addr` within `within`: every GOAWAY
/// (when, last stream id) and when the proxy closed the connection.
fn h2_watch_goaways(
    addr: SocketAddr,
    ack_pings: bool,
    within: Duration,
) -> (Vec<(Duration, u32)>, Option<Duration>) {
    let (_, goaways, closed) = h2_watch(
        addr,
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
        ack_pings,
        within,
    );
    (goaways, closed)
}

/// What a raw h2c client that opens with `opening` (SETTINGS acked when that is the
/// whole preface, PINGs acked if `ack_pings`, no stream) sees on a connection to `addr`
/// within `within`: the type of every frame, every GOAWAY (when, last stream id) and when
/// the proxy closed the connection.
fn h2_watch(
    addr: SocketAddr,
    opening: &[u8],
    ack_pings: bool,
    within: Duration,
) -> (Vec<u8>, Vec<(Duration, u32)>, Option<Duration>) {
    let started = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, WAIT).expect("connect h2c");
    s.write_all(opening).expect("preface");
    let whole_preface = opening.starts_with(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    let deadline = started + within;
    let mut buf: Vec<u8> = Vec::new();
    let mut kinds = Vec::new();
    let mut goaways = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while buf.len() >= 9 {
            let len = usize::from(buf[0]) << 16 | usize::from(buf[1]) << 8 | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            let (kind, flags) = (buf[3], buf[4]);
            let payload = &buf[9..9 + len];
            kinds.push(kind);
            if kind == 4 && flags & 1 == 0 && whole_preface {
                let _ = s.write_all(b"\x00\x00\x00\x04\x01\x00\x00\x00\x00");
            }
            if kind == 6 && flags & 1 == 0 && ack_pings {
                let mut ack = b"\x00\x00\x08\x06\x01\x00\x00\x00\x00".to_vec();
                ack.extend_from_slice(payload);
                let _ = s.write_all(&ack);
            }
            if kind == 7 && len >= 8 {
                let last = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
                    & 0x7fff_ffff;
                goaways.push((started.elapsed(), last));
            }
            buf.drain(..9 + len);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (kinds, goaways, None);
        }
        s.set_read_timeout(Some(left)).expect("read timeout");
        match s.read(&mut chunk) {
            Ok(0) => return (kinds, goaways, Some(started.elapsed())),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return (kinds, goaways, None);
            }
            Err(_) => return (kinds, goaways, Some(started.elapsed())),
        }
    }
}

fn http2_idle_timeout_and_goaway(t: &Target) {
    let env = start(
        t,
        "- match: {prefix: \"/\"}\n  route: {cluster: up}",
        "common_http_protocol_options: {idle_timeout: 0.4s}\ndrain_timeout: 0.3s\ndelayed_close_timeout: 0.1s",
    );

    // The idle timer does not run while a stream is open: a 900 ms stream is not cut.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut client = HyperClient::h2c(env.addr()).await.expect("h2c connect");
        client.set_timeout(WAIT);
        let r = client
            .get("/slow/900", "example.com")
            .await
            .expect("a response");
        assert_eq!((r.status, r.body_str().as_str()), (200, "slow"));
        let r = client.get("/again", "example.com").await.expect("second");
        assert_eq!(r.status, 200);
    });

    // Idle connections get a graceful GOAWAY (last stream 2^31-1) once idle_timeout passed,
    // drain_timeout later a final GOAWAY (last stream 0), then they are closed (after
    // delayed_close_timeout), whether the client answers PINGs or not.
    let (goaways, closed) = h2_watch_goaways(env.addr(), true, WAIT);
    assert_eq!(
        goaways.iter().map(|(_, last)| *last).collect::<Vec<_>>(),
        [0x7fff_ffff, 0],
        "{goaways:?}"
    );
    let (first, second) = (goaways[0].0, goaways[1].0);
    assert!(
        first >= Duration::from_millis(350) && first < Duration::from_millis(2000),
        "first GOAWAY after {first:?}"
    );
    let closed = closed.expect("closed after the GOAWAYs");
    assert!(
        closed >= second + Duration::from_millis(50),
        "closed delayed_close_timeout after the final GOAWAY: {closed:?} {goaways:?}"
    );
    assert!(
        second >= first + Duration::from_millis(250),
        "drain_timeout between the GOAWAYs: {goaways:?}"
    );
    let silent = h2_watch_goaways(env.addr(), false, WAIT);
    let (goaways, closed) = &silent;
    assert_eq!(
        goaways.iter().map(|(_, last)| *last).collect::<Vec<_>>(),
        [0x7fff_ffff, 0],
        "{silent:?}"
    );
    assert!(closed.is_some(), "closed: {silent:?}");

    assert!(env.stat("http.ingress.downstream_cx_idle_timeout", 2) >= 2);
}

// ---------------------------------------------------------------------------------------
// 10. How connections end and start: the delayed close after `connection: close`, the
//     header order of local replies, the codec created with the first byte, a partial
//     HTTP/2 preface.
// ---------------------------------------------------------------------------------------

/// Direct responses (200 `ok`, an empty 200) and a route to the scripted upstream; other
/// paths get 404.
const EDGE_ROUTES: &str = "- match: {prefix: \"/ok\"}\n  direct_response: {status: 200, body: {inline_string: ok}}\n- match: {prefix: \"/empty\"}\n  direct_response: {status: 200}\n- match: {prefix: \"/up\"}\n  route: {cluster: up}";

/// The requests after which the proxy closes the connection: `connection: close` on a
/// direct response and on a 404, an HTTP/1.0 request.
const CLOSING_REQUESTS: [(&str, &str); 3] = [
    (
        "connection: close",
        "GET /ok HTTP/1.1\r\nhost: example.com\r\nconnection: close\r\n\r\n",
    ),
    (
        "404 with connection: close",
        "GET /none HTTP/1.1\r\nhost: example.com\r\nconnection: close\r\n\r\n",
    ),
    ("HTTP/1.0", "GET /ok HTTP/1.0\r\nhost: example.com\r\n\r\n"),
];

/// Sends `bytes` (`what`: a request after which the proxy closes) on a new connection and
/// reads the response, which says `connection: close`.
fn closing_exchange(env: &Env, what: &str, bytes: &str) -> RawConn {
    let mut c = env.connect();
    c.send(bytes.as_bytes()).expect("send");
    let r = c.read_response().expect("a response");
    assert_eq!(r.header("connection"), Some("close"), "{what}: {r:?}");
    c
}

fn connection_close_waits_delayed_close_timeout(t: &Target) {
    // After a response with `connection: close` the proxy flushes, keeps reading and closes
    // only delayed_close_timeout later (or when the client closes first).
    let env = start(
        t,
        EDGE_ROUTES,
        "delayed_close_timeout: 0.5s\nhttp_protocol_options: {accept_http_10: true}",
    );
    for (what, bytes) in CLOSING_REQUESTS {
        let mut c = closing_exchange(&env, what, bytes);
        let answered = Instant::now();
        assert!(
            !c.is_closed(Duration::from_millis(300)),
            "{what}: open during delayed_close_timeout"
        );
        assert!(c.is_closed(WAIT), "{what}: closed after it");
        assert_took(answered, Duration::from_millis(500), what);
    }
    // A client that closes first ends the connection at once (a remote close).
    let (what, bytes) = CLOSING_REQUESTS[0];
    drop(closing_exchange(&env, what, bytes));
    assert_eq!(
        env.stat("http.ingress.downstream_cx_destroy_remote", 1),
        1,
        "the client closed first"
    );
    assert_eq!(
        env.stat("http.ingress.downstream_cx_delayed_close_timeout", 3),
        3
    );
    assert_eq!(env.stat("http.ingress.downstream_cx_destroy_local", 3), 3);

    // delayed_close_timeout 0: closed as soon as the response is out.
    let env = start(
        t,
        EDGE_ROUTES,
        "delayed_close_timeout: 0s\nhttp_protocol_options: {accept_http_10: true}",
    );
    for (what, bytes) in CLOSING_REQUESTS {
        let mut c = closing_exchange(&env, what, bytes);
        assert!(
            c.is_closed(Duration::from_millis(250)),
            "{what}: closed at once"
        );
    }
    assert_eq!(env.stat("http.ingress.downstream_cx_destroy_local", 3), 3);
    assert_eq!(
        env.stat("http.ingress.downstream_cx_delayed_close_timeout", 0),
        0
    );
}

fn connection_close_after_an_upstream_answer_closes_at_once(t: &Target) {
    // Envoy closes as soon as the response is out (`FlushWrite`) when the client's
    // `connection: close` (or HTTP/1.0, or the last request a connection allows) meets a
    // request read whole and a response written after the request was decoded: an
    // upstream's answer, or a reply to an upstream that timed out. The client is not
    // waited for, however long `delayed_close_timeout` is.
    let routes = format!(
        "{EDGE_ROUTES}\n- match: {{prefix: \"/t\"}}\n  route: {{cluster: up, timeout: 0.2s}}"
    );
    let env = start(
        t,
        &routes,
        "delayed_close_timeout: 5s\nhttp_protocol_options: {accept_http_10: true}",
    );
    let cases = [
        (
            "upstream answer",
            "GET /up HTTP/1.1\r\nhost: example.com\r\nconnection: close\r\n\r\n",
            200,
        ),
        (
            "upstream answer to HTTP/1.0",
            "GET /up HTTP/1.0\r\nhost: example.com\r\n\r\n",
            200,
        ),
        (
            "upstream timeout",
            "GET /t/silent HTTP/1.1\r\nhost: example.com\r\nconnection: close\r\n\r\n",
            504,
        ),
    ];
    for (what, bytes, status) in cases {
        let mut c = env.connect();
        c.send(bytes.as_bytes()).expect("send");
        let r = c.read_response().expect("a response");
        assert_eq!(r.status, status, "{what}: {r:?}");
        assert_eq!(r.header("connection"), Some("close"), "{what}: {r:?}");
        assert!(
            c.is_closed(Duration::from_millis(2500)),
            "{what}: closed at once"
        );
    }
    // A request `connection: close` on a direct response still waits for the client.
    let (what, bytes) = CLOSING_REQUESTS[0];
    let mut c = closing_exchange(&env, what, bytes);
    assert!(!c.is_closed(Duration::from_millis(300)), "{what}: delayed");
    drop(c);
    assert_eq!(env.stat("http.ingress.downstream_cx_destroy_remote", 1), 1);
    assert_eq!(env.stat("http.ingress.downstream_cx_destroy_local", 3), 3);
    assert_eq!(
        env.stat("http.ingress.downstream_cx_delayed_close_timeout", 0),
        0
    );

    // The last request `max_requests_per_connection` allows counts as a request to close.
    let env = start(
        t,
        EDGE_ROUTES,
        "delayed_close_timeout: 5s\ncommon_http_protocol_options: {max_requests_per_connection: 1}",
    );
    let mut c = env.connect();
    c.send(b"GET /up HTTP/1.1\r\nhost: example.com\r\n\r\n")
        .expect("send");
    let r = c.read_response().expect("a response");
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    assert!(
        c.is_closed(Duration::from_millis(2500)),
        "last request: closed at once"
    );
}

fn local_reply_header_order(t: &Target) {
    // The connection manager's `connection: close` goes before the codec's
    // `content-length: 0`, after the headers of a reply with a body; `date` before `server`.
    let env = start(
        t,
        EDGE_ROUTES,
        "delayed_close_timeout: 0s\nrequest_timeout: 0.3s\nhttp_protocol_options: {accept_http_10: true}",
    );
    let bodyless = ["date", "server", "connection", "content-length"];
    let with_body = [
        "content-length",
        "content-type",
        "date",
        "server",
        "connection",
    ];
    let big = format!(
        "GET /ok HTTP/1.1\r\nhost: example.com\r\nx-big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let cases: [(&str, &str, u16, &[&str]); 7] = [
        (
            "empty direct response",
            "GET /empty HTTP/1.1\r\nhost: example.com\r\nconnection: close\r\n\r\n",
            200,
            &bodyless,
        ),
        (
            "no route",
            "GET /none HTTP/1.1\r\nhost: example.com\r\nconnection: close\r\n\r\n",
            404,
            &bodyless,
        ),
        (
            "HTTP/1.0 without host",
            "GET /ok HTTP/1.0\r\n\r\n",
            400,
            &bodyless,
        ),
        (
            "direct response with a body",
            "GET /ok HTTP/1.1\r\nhost: example.com\r\nconnection: close\r\n\r\n",
            200,
            &with_body,
        ),
        (
            "codec error",
            "GET /ok HTTP/1.1\r\nhost: example.com\r\nbad header\r\n\r\n",
            400,
            &with_body,
        ),
        ("headers too large", &big, 431, &with_body),
        (
            "request timeout",
            "POST /up HTTP/1.1\r\nhost: example.com\r\ncontent-length: 10\r\n\r\n",
            408,
            &with_body,
        ),
    ];
    for (what, bytes, status, names) in cases {
        let mut c = env.connect();
        c.send(bytes.as_bytes()).expect("send");
        let r = c.read_response().expect("a response");
        assert_eq!(r.status, status, "{what}: {r:?}");
        let got: Vec<String> = r
            .headers
            .iter()
            .map(|(k, _)| k.to_ascii_lowercase())
            .collect();
        assert_eq!(got, names, "{what}: {r:?}");
    }
}

fn http2_codec_starts_with_the_first_byte(t: &Target) {
    // With codec_type HTTP2 too the codec comes with the first byte: a connection that
    // never sends one gets nothing (no SETTINGS), is closed at idle_timeout (or at
    // max_connection_duration), and counts as a connection but not as an HTTP/2 one.
    let env = start(
        t,
        EDGE_ROUTES,
        "codec_type: HTTP2\ncommon_http_protocol_options: {idle_timeout: 0.4s}",
    );
    let closing = env.connect();
    assert_eq!(env.stat("http.ingress.downstream_cx_active", 1), 1);
    drop(closing);
    let started = Instant::now();
    let mut mute = env.connect();
    let got = mute.read_to_close().expect("closed at idle_timeout");
    assert!(got.is_empty(), "nothing sent: {got:?}");
    assert_took(started, Duration::from_millis(400), "idle_timeout");
    assert_eq!(env.stat("http.ingress.downstream_cx_destroy", 2), 2);
    for (name, want) in [
        ("downstream_cx_total", 2),
        ("downstream_cx_http2_total", 0),
        ("downstream_cx_idle_timeout", 1),
        ("downstream_cx_destroy_remote", 1),
        ("downstream_cx_destroy_local", 1),
        ("downstream_cx_tx_bytes_total", 0),
    ] {
        let stat = format!("http.ingress.{name}");
        assert_eq!(env.stat(&stat, want), want, "{stat}");
    }

    // max_connection_duration too closes a connection without a codec, at once.
    let env = start(
        t,
        EDGE_ROUTES,
        "codec_type: HTTP2\ncommon_http_protocol_options: {idle_timeout: 5s, max_connection_duration: 0.4s}",
    );
    let started = Instant::now();
    let got = env
        .connect()
        .read_to_close()
        .expect("closed at the duration");
    assert!(got.is_empty(), "nothing sent: {got:?}");
    assert_took(
        started,
        Duration::from_millis(400),
        "max_connection_duration",
    );
    assert_eq!(
        env.stat("http.ingress.downstream_cx_max_duration_reached", 1),
        1
    );
    assert_eq!(env.stat("http.ingress.downstream_cx_http2_total", 0), 0);
}

fn http2_partial_preface_drains_at_idle_timeout(t: &Target) {
    // A first read that starts with `PRI * HTTP/2` makes an HTTP/2 connection (with
    // codec_type AUTO too): SETTINGS go out, and with the rest of the preface missing the
    // idle timer drains it as any idle HTTP/2 connection: GOAWAY (2^31-1), drain_timeout
    // later the final GOAWAY (0), delayed_close_timeout later the close.
    for codec in ["AUTO", "HTTP2"] {
        let env = start(
            t,
            EDGE_ROUTES,
            &format!(
                "codec_type: {codec}\ncommon_http_protocol_options: {{idle_timeout: 0.4s}}\ndrain_timeout: 0.3s\ndelayed_close_timeout: 0.2s"
            ),
        );
        let watched = h2_watch(env.addr(), b"PRI * HTTP/2.0\r\n", false, WAIT);
        let (kinds, goaways, closed) = &watched;
        assert_eq!(
            kinds.first(),
            Some(&4),
            "{codec}: SETTINGS first: {watched:?}"
        );
        assert_eq!(
            goaways.iter().map(|(_, last)| *last).collect::<Vec<_>>(),
            [0x7fff_ffff, 0],
            "{codec}: {watched:?}"
        );
        let (first, second) = (goaways[0].0, goaways[1].0);
        assert!(
            first >= Duration::from_millis(350) && first < Duration::from_millis(2000),
            "{codec}: first GOAWAY after {first:?}"
        );
        assert!(
            second >= first + Duration::from_millis(250),
            "{codec}: drain_timeout between the GOAWAYs: {watched:?}"
        );
        let closed = closed.unwrap_or_else(|| panic!("{codec}: closed: {watched:?}"));
        assert!(
            closed >= second + Duration::from_millis(150),
            "{codec}: closed delayed_close_timeout after the final GOAWAY: {watched:?}"
        );
        for (name, want) in [
            ("downstream_cx_http2_total", 1),
            ("downstream_cx_idle_timeout", 1),
            ("downstream_cx_delayed_close_timeout", 1),
            ("downstream_cx_destroy_local", 1),
        ] {
            let stat = format!("http.ingress.{name}");
            assert_eq!(env.stat(&stat, want), want, "{codec}: {stat}");
        }
        if codec == "HTTP2" {
            // Bytes that are not the preface: a protocol error before any SETTINGS, then
            // the delayed close.
            let (kinds, _, closed) = h2_watch(
                env.addr(),
                b"PRI * HTTP/2.0\r\nhost: x\r\n\r\n",
                false,
                WAIT,
            );
            assert!(kinds.is_empty(), "nothing sent: {kinds:?}");
            let closed = closed.expect("closed");
            assert!(
                closed >= Duration::from_millis(150) && closed < Duration::from_millis(2000),
                "closed delayed_close_timeout after the error: {closed:?}"
            );
            assert_eq!(env.stat("http.ingress.downstream_cx_protocol_error", 1), 1);
            assert_eq!(
                env.stat("http.ingress.downstream_cx_delayed_close_timeout", 2),
                2
            );
        }
    }
}
