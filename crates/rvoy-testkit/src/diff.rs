//! The differential runner: the same config and the same requests against real Envoy and
//! rvoy, what a user sees normalized (ports → `{{port:NAME}}`, `date`, UUIDs,
//! `x-envoy-upstream-service-time` values, echo body lengths), and a readable line diff.
//!
//! Each side gets fresh ports, fresh echo upstreams (named in the config as
//! `{{port:NAME}}`), its own temp dir and process. Requests are byte-exact HTTP/1 requests,
//! each on a new connection. [`Differential::run`] returns `Ok(None)` only when Envoy is not
//! installed.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use regex::Regex;

use crate::client::HyperClient;
use crate::echo::EchoServer;
use crate::error::{Error, Result};
use crate::ports::Ports;
use crate::process::{Binary, Proxy, ProxyBuilder, tail};
use crate::raw::{RawConn, RawResponse, Request};

/// How long [`DiffRequest::check_close`] waits for a close: Envoy closes after an error
/// only when the client does or its 1 s `delayed_close_timeout` passes.
const CLOSE_WINDOW: Duration = Duration::from_millis(1500);

/// How long [`DiffRequest::check_prompt_close`] waits: well inside Envoy's default 1 s
/// `delayed_close_timeout`, so a close at once and a delayed close tell apart.
const PROMPT_CLOSE_WINDOW: Duration = Duration::from_millis(500);

/// An h2c request: method, path, host (`:authority`), headers.
type H2cRequest = (String, String, String, Vec<(String, String)>);

/// One request of a differential run.
#[derive(Debug, Clone)]
pub struct DiffRequest {
    label: String,
    /// Sent with the hyper h2c client instead of as raw bytes.
    h2c: Option<H2cRequest>,
    bytes: Vec<u8>,
    method: String,
    port: String,
    check_close: bool,
    check_prompt_close: bool,
    pause_after: Duration,
}

impl DiffRequest {
    /// A request built with [`Request`].
    pub fn new(label: &str, req: &Request) -> DiffRequest {
        DiffRequest::raw(label, &req.to_bytes())
    }

    /// Exactly these bytes (the method is read from them, for HEAD).
    pub fn raw(label: &str, bytes: &[u8]) -> DiffRequest {
        let method = bytes
            .split(|b| *b == b' ')
            .next()
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .unwrap_or_default();
        DiffRequest {
            label: label.to_owned(),
            h2c: None,
            bytes: bytes.to_vec(),
            method,
            port: "listener".to_owned(),
            check_close: false,
            check_prompt_close: false,
            pause_after: Duration::ZERO,
        }
    }

    /// An HTTP/2 request with prior knowledge (h2c), sent with the hyper client.
    pub fn h2c(
        label: &str,
        method: &str,
        path: &str,
        host: &str,
        headers: &[(&str, &str)],
    ) -> DiffRequest {
        let mut d = DiffRequest::raw(label, b"");
        d.method = method.to_owned();
        d.h2c = Some((
            method.to_owned(),
            path.to_owned(),
            host.to_owned(),
            headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ));
        d
    }

    /// Sends to the port named `name` (default `listener`).
    pub fn on(mut self, name: &str) -> Self {
        self.port = name.to_owned();
        self
    }

    /// Also observes whether the proxy closes the connection after the response.
    pub fn check_close(mut self) -> Self {
        self.check_close = true;
        self
    }

    /// Also observes whether the proxy closes the connection at once after the response
    /// (within 0.5 s) rather than after the default 1 s `delayed_close_timeout`; the
    /// client keeps its end open meanwhile.
    pub fn check_prompt_close(mut self) -> Self {
        self.check_prompt_close = true;
        self
    }

    /// Waits this long after the response (e.g. for a timer to pass).
    pub fn pause_after(mut self, d: Duration) -> Self {
        self.pause_after = d;
        self
    }
}

/// What a differential run found.
#[derive(Debug, Clone)]
pub struct DiffOutcome {
    /// Envoy's normalized observations.
    pub envoy: String,
    /// rvoy's normalized observations.
    pub rvoy: String,
    /// The line diff (`-` Envoy, `+` rvoy), empty when equal.
    pub diff: String,
}

impl DiffOutcome {
    /// Whether both saw the same.
    pub fn is_same(&self) -> bool {
        self.envoy == self.rvoy
    }
}

impl fmt::Display for DiffOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_same() {
            write!(f, "envoy and rvoy agree:\n{}", self.envoy)
        } else {
            write!(f, "envoy (-) and rvoy (+) differ:\n{}", self.diff)
        }
    }
}

/// A differential test: one config, echo upstreams, requests.
#[derive(Debug, Clone)]
pub struct Differential {
    rvoy: PathBuf,
    config: String,
    upstreams: Vec<String>,
    dead: Vec<String>,
    extra_args: Vec<String>,
    requests: Vec<DiffRequest>,
    masks: Vec<(String, String)>,
    compare_stdout: Option<String>,
}

impl Differential {
    /// A run of `config` (a template) with rvoy at `rvoy` (pass
    /// `env!("CARGO_BIN_EXE_rvoy")`).
    pub fn new(rvoy: &str, config: &str) -> Differential {
        Differential {
            rvoy: PathBuf::from(rvoy),
            config: config.to_owned(),
            upstreams: Vec::new(),
            dead: Vec::new(),
            extra_args: Vec::new(),
            requests: Vec::new(),
            masks: Vec::new(),
            compare_stdout: None,
        }
    }

    /// An echo upstream bound to `{{port:NAME}}`.
    pub fn upstream(mut self, name: &str) -> Self {
        self.upstreams.push(name.to_owned());
        self
    }

    /// A reserved port where nothing listens (`{{port:NAME}}`, connection refused).
    pub fn dead_port(mut self, name: &str) -> Self {
        self.dead.push(name.to_owned());
        self
    }

    /// Extra command line arguments (templated).
    pub fn extra_args(mut self, args: &[&str]) -> Self {
        self.extra_args.extend(args.iter().map(|s| (*s).to_owned()));
        self
    }

    /// Adds a request.
    pub fn request(mut self, r: DiffRequest) -> Self {
        self.requests.push(r);
        self
    }

    /// Replaces every match of `regex` by `with` in both observations.
    pub fn mask(mut self, regex: &str, with: &str) -> Self {
        self.masks.push((regex.to_owned(), with.to_owned()));
        self
    }

    /// Also compares the stdout lines containing `needle` (access logs), read after the
    /// requests (waiting up to 5 s for one per request).
    pub fn compare_stdout(mut self, needle: &str) -> Self {
        self.compare_stdout = Some(needle.to_owned());
        self
    }

    /// Runs both; `Ok(None)` when Envoy is not installed.
    pub fn run(&self) -> Result<Option<DiffOutcome>> {
        let Some(envoy) = Binary::envoy() else {
            return Ok(None);
        };
        let masks = self
            .masks
            .iter()
            .map(|(r, w)| {
                Regex::new(r)
                    .map(|re| (re, w.clone()))
                    .map_err(|e| Error::Usage(format!("bad mask {r:?}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let e = self.observe(&envoy, &masks, true)?;
        let r = self.observe(&Binary::Rvoy(self.rvoy.clone()), &masks, false)?;
        let diff = if e == r {
            String::new()
        } else {
            line_diff(&e, &r)
        };
        Ok(Some(DiffOutcome {
            envoy: e,
            rvoy: r,
            diff,
        }))
    }

    fn observe(&self, binary: &Binary, masks: &[(Regex, String)], oracle: bool) -> Result<String> {
        let mut ports = Ports::new();
        let mut echos = Vec::new();
        for name in &self.upstreams {
            let e = EchoServer::start(name)?;
            ports.insert(name, e.port());
            echos.push(e);
        }
        for name in &self.dead {
            ports.port(name)?;
        }
        let args: Vec<&str> = self.extra_args.iter().map(String::as_str).collect();
        let builder = ProxyBuilder::new(binary.clone())
            .config(&self.config)
            .ports(&ports)
            .extra_args(&args);
        let mut proxy = match builder.start() {
            Ok(p) => p,
            Err(e) if oracle => return Err(e),
            Err(e) => return Ok(format!("startup failed: {e}\n")),
        };
        let mut out = String::new();
        for req in &self.requests {
            out.push_str(&format!("== {}\n", req.label));
            out.push_str(&observe_request(&proxy, req));
            if !req.pause_after.is_zero() {
                std::thread::sleep(req.pause_after);
            }
        }
        if let Some(needle) = &self.compare_stdout {
            let lines = proxy
                .wait_stdout_lines(needle, self.requests.len(), Duration::from_secs(5))
                .unwrap_or_else(|_| {
                    proxy
                        .stdout()
                        .lines()
                        .filter(|l| l.contains(needle.as_str()))
                        .map(str::to_owned)
                        .collect()
                });
            out.push_str("== stdout\n");
            for l in lines {
                out.push_str(&format!("log: {l}\n"));
            }
        }
        let status = proxy.stop();
        out.push_str(&format!(
            "== shutdown\nexit: {}\n",
            status.map_or_else(|e| e.to_string(), |s| s.to_string())
        ));
        let mut text = normalize(&proxy, &out);
        for (re, with) in masks {
            text = re.replace_all(&text, with.as_str()).into_owned();
        }
        if std::env::var_os("RVOY_DIFF_VERBOSE").is_some() {
            eprintln!(
                "--- {} stderr tail ---\n{}",
                binary.name(),
                tail(&proxy.stderr(), 30)
            );
        }
        Ok(text)
    }
}

fn observe_request(proxy: &Proxy, req: &DiffRequest) -> String {
    if let Some(h2) = &req.h2c {
        return observe_h2c(proxy.addr(&req.port), h2);
    }
    let mut conn = match RawConn::connect_timeout(proxy.addr(&req.port), Duration::from_secs(5)) {
        Ok(c) => c,
        Err(e) => return format!("connect failed: {}\n", first_line(&e.to_string())),
    };
    if let Err(e) = conn.send(&req.bytes) {
        return format!("send failed: {}\n", first_line(&e.to_string()));
    }
    let mut out = String::new();
    loop {
        match conn.read_response_or_close(&req.method) {
            Ok(Some(resp)) => {
                out.push_str(&describe(&resp));
                if resp.status >= 200 || resp.status == 101 {
                    break;
                }
            }
            Ok(None) => {
                out.push_str("no response: connection closed\n");
                return out;
            }
            Err(e) => {
                out.push_str(&format!("error: {}\n", first_line(&e.to_string())));
                return out;
            }
        }
    }
    if req.check_prompt_close {
        out.push_str(&format!(
            "closed at once after response: {}\n",
            conn.is_closed(PROMPT_CLOSE_WINDOW)
        ));
    }
    if req.check_close {
        out.push_str(&format!(
            "closed after response: {}\n",
            conn.is_closed(CLOSE_WINDOW)
        ));
    }
    out
}

fn observe_h2c(addr: std::net::SocketAddr, (method, path, host, headers): &H2cRequest) -> String {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return format!("runtime: {e}\n"),
    };
    rt.block_on(async {
        let mut client = match HyperClient::h2c(addr).await {
            Ok(c) => c,
            Err(e) => return format!("connect failed: {}\n", first_line(&e.to_string())),
        };
        let mut b = client.builder(method, path, host);
        for (k, v) in headers {
            b = b.header(k.as_str(), v.as_str());
        }
        let req = match b.body(http_body_util::Full::new(bytes::Bytes::new())) {
            Ok(r) => r,
            Err(e) => return format!("bad request: {e}\n"),
        };
        match client.send(req).await {
            Ok(resp) => {
                let raw = RawResponse {
                    version: format!("{:?}", resp.version),
                    status: resp.status,
                    reason: String::new(),
                    headers: resp
                        .headers
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.as_str().to_owned(),
                                String::from_utf8_lossy(v.as_bytes()).into_owned(),
                            )
                        })
                        .collect(),
                    body: resp.body.to_vec(),
                    ..RawResponse::default()
                };
                describe(&raw)
            }
            Err(e) => format!("error: {}\n", first_line(&e.to_string())),
        }
    })
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// Renders a response for comparison: status, headers sorted by name, then either the echo
/// description or the body.
pub fn describe(resp: &RawResponse) -> String {
    let mut out = format!("status: {} {} {}\n", resp.version, resp.status, resp.reason);
    let echo = resp.echo();
    let mut headers = resp.headers.clone();
    headers.sort_by_key(|(k, _)| k.to_ascii_lowercase());
    for (k, v) in &headers {
        let lk = k.to_ascii_lowercase();
        let v = match lk.as_str() {
            "date" => "<date>".to_owned(),
            "x-envoy-upstream-service-time" => "<present>".to_owned(),
            "content-length" if echo.is_some() => "<echo length>".to_owned(),
            _ => v.clone(),
        };
        out.push_str(&format!("header {k}: {v}\n"));
    }
    if resp.chunked {
        out.push_str("body chunked\n");
    }
    if resp.until_close {
        out.push_str("body until close\n");
    }
    if let Some(e) = echo {
        out.push_str(&format!(
            "upstream: {} {} {} via {}\n",
            e.method, e.path, e.protocol, e.server
        ));
        if let Some(a) = &e.h2_authority {
            out.push_str(&format!("upstream :authority: {a}\n"));
        }
        let mut h = e.headers.clone();
        h.sort_by_key(|(k, _)| k.to_ascii_lowercase());
        for (k, v) in h {
            out.push_str(&format!("upstream header {k}: {v}\n"));
        }
        out.push_str(&format!(
            "upstream body: {} bytes, chunked {}\n",
            e.body_len, e.chunked
        ));
    } else if resp.body.len() <= 4096 && std::str::from_utf8(&resp.body).is_ok() {
        out.push_str(&format!("body: {:?}\n", resp.body_str()));
    } else {
        out.push_str(&format!(
            "body: {} bytes sha256 {}\n",
            resp.body.len(),
            crate::echo::sha256_hex(&resp.body)
        ));
    }
    out
}

fn normalize(proxy: &Proxy, text: &str) -> String {
    let t = proxy.normalize(text);
    uuid_re()
        .map(|re| re.replace_all(&t, "<uuid>").into_owned())
        .unwrap_or(t)
}

fn uuid_re() -> Option<&'static Regex> {
    static RE: std::sync::OnceLock<Option<Regex>> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        Regex::new("[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
            .ok()
    })
    .as_ref()
}

/// A line diff (longest common subsequence): ` ` same, `-` only in `a`, `+` only in `b`;
/// runs of unchanged lines are cut to 2 lines of context, and each hunk names the request
/// (`== label`) it is in.
pub fn line_diff(a: &str, b: &str) -> String {
    let a: Vec<&str> = a.lines().collect();
    let b: Vec<&str> = b.lines().collect();
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            ops.push(('+', b[j]));
            j += 1;
        } else {
            ops.push(('-', a[i]));
            i += 1;
        }
    }
    let changed: Vec<bool> = ops.iter().map(|(c, _)| *c != ' ').collect();
    let near = |k: usize| {
        let lo = k.saturating_sub(2);
        let hi = (k + 2).min(ops.len() - 1);
        (lo..=hi).any(|x| changed[x])
    };
    let mut out = String::new();
    let mut section = "";
    let mut printed_section = "";
    let mut gap = false;
    for (k, (c, line)) in ops.iter().enumerate() {
        if line.starts_with("== ") && *c == ' ' {
            section = line;
        }
        if near(k) {
            if section != printed_section && !line.starts_with("== ") {
                out.push_str(&format!("  {section}\n"));
                printed_section = section;
            } else if gap {
                out.push_str("  ...\n");
            }
            if line.starts_with("== ") {
                printed_section = line;
            }
            out.push_str(&format!("{c} {line}\n"));
            gap = false;
        } else {
            gap = true;
        }
    }
    out
}

/// Turns a raw [`Request`] into a diff request (shorthand).
pub fn req(label: &str, r: Request) -> DiffRequest {
    DiffRequest::new(label, &r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_shows_changed_lines_with_section() {
        let a = "== one\nstatus: 200\nx\n== two\nstatus: 404\n";
        let b = "== one\nstatus: 200\nx\n== two\nstatus: 503\n";
        let d = line_diff(a, b);
        assert!(d.contains("- status: 404"), "{d}");
        assert!(d.contains("+ status: 503"), "{d}");
        assert!(d.contains("== two"), "{d}");
        assert_eq!(line_diff(a, a), "");
    }
}
