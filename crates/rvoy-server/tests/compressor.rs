//! `envoy.filters.http.compressor` end to end: the real rvoy binary on loopback in front of
//! echo upstreams (and small hand-written upstreams for streaming and uploads), real
//! clients (a byte-exact HTTP/1 client, curl --compressed, a hyper h2c client), bodies
//! decompressed and checked; stats read from the admin; and a differential run against
//! real Envoy (skipped, with a message, when Envoy is not installed).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{T, indent, ports_for, start};
use rvoy_testkit::raw::{RawConn, RawResponse, Request, send_once};
use rvoy_testkit::{Binary, EchoServer, HyperClient, Ports, ProxyBuilder};

/// One listener `{{port:listener}}` (stat prefix `ingress`) with `filters` (a YAML list
/// of HTTP filters before the router), `routes` (YAML list) to cluster `backend` at
/// `{{port:backend}}`, and an admin at `{{port:admin}}`.
fn config(filters: &str, routes: &str) -> String {
    format!(
        r#"admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {{{{port:admin}}}}}}}}}}
static_resources:
  listeners:
  - name: listener
    address: {{socket_address: {{address: 127.0.0.1, port_value: {{{{port:listener}}}}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          http_filters:
          {filters}
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
          route_config:
            virtual_hosts:
            - name: v
              domains: ["*"]
              routes:
              {routes}
  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {{{{port:backend}}}}}}}}}}
"#,
        filters = indent(filters, 10),
        routes = indent(routes, 14),
    )
}

const DEFAULT_ROUTE: &str = "- match: {prefix: \"/\"}\n  route: {cluster: backend}";

/// A compressor filter named `name` with `library` (`gzip`, `brotli`, `zstd`) and extra
/// `Compressor` fields (YAML mapping, may be empty).
fn compressor(name: &str, library: &str, extra: &str) -> String {
    let (ty, lib_name) = match library {
        "gzip" => ("envoy.extensions.compression.gzip.compressor.v3.Gzip", "gz"),
        "brotli" => (
            "envoy.extensions.compression.brotli.compressor.v3.Brotli",
            "br",
        ),
        _ => ("envoy.extensions.compression.zstd.compressor.v3.Zstd", "zs"),
    };
    let extra = if extra.trim().is_empty() {
        String::new()
    } else {
        format!("\n    {}", indent(extra, 4))
    };
    format!(
        r#"- name: {name}
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.compressor.v3.Compressor{extra}
    compressor_library:
      name: {lib_name}
      typed_config: {{"@type": type.googleapis.com/{ty}}}"#
    )
}

fn text(n: usize) -> String {
    "compress-me-please;"
        .repeat(n / 19 + 1)
        .chars()
        .take(n)
        .collect()
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

fn unbrotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(data, 4096)
        .read_to_end(&mut out)
        .expect("valid brotli");
    out
}

/// The body decoded per `content-encoding`.
fn decoded(content_encoding: Option<&str>, body: &[u8]) -> Vec<u8> {
    match content_encoding {
        Some("gzip") => gunzip(body),
        Some("br") => unbrotli(body),
        Some("zstd") => zstd::decode_all(body).expect("valid zstd"),
        _ => body.to_vec(),
    }
}

fn get(path: &str) -> Request {
    Request::get(path, "example.com")
}

fn send(proxy: &rvoy_testkit::Proxy, req: &Request) -> RawResponse {
    send_once(proxy.addr("listener"), &req.to_bytes()).expect("a response")
}

/// `GET /stats` of the admin, as `name: value` lines.
fn stats(admin: std::net::SocketAddr) -> String {
    let r = send_once(admin, &Request::get("/stats", "admin").to_bytes()).expect("stats");
    r.body_str()
}

fn counter(stats: &str, name: &str) -> Option<u64> {
    stats.lines().find_map(|l| {
        let (k, v) = l.split_once(": ")?;
        (k == name).then(|| v.trim().parse().ok()).flatten()
    })
}

#[test]
fn gzip_negotiation_headers_and_bodies() {
    let echo = EchoServer::start("backend").expect("echo");
    let filters = compressor(
        "envoy.filters.http.compressor",
        "gzip",
        "response_direction_config:\n  common_config:\n    min_content_length: 100\n    content_type: [text/plain, application/json]",
    );
    let proxy = start(&config(&filters, DEFAULT_ROUTE), &ports_for(&[&echo]));
    let big = text(760);

    // Accepted and large enough: compressed, chunked, vary added.
    let r = send(
        &proxy,
        &get("/big.txt")
            .header("accept-encoding", "gzip")
            .header("x-echo-body", &big),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    assert!(r.header("content-length").is_none());
    assert!(r.chunked);
    assert_eq!(gunzip(&r.body), big.as_bytes());
    // The upstream saw the client's accept-encoding.
    let up = echo.requests();
    assert_eq!(
        up.last().and_then(|u| u.header("accept-encoding")),
        Some("gzip")
    );

    // No accept-encoding: identity, but vary says it could have been compressed.
    let r = send(&proxy, &get("/big.txt").header("x-echo-body", &big));
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    assert_eq!(r.header("content-length"), Some("760"));
    assert_eq!(r.body, big.as_bytes());

    // Too small: untouched, no vary.
    let r = send(
        &proxy,
        &get("/small.txt")
            .header("accept-encoding", "gzip")
            .header("x-echo-body", "tiny"),
    );
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.header("vary"), None);
    assert_eq!(r.body, b"tiny");

    // Content type not listed (the echo's JSON is, an octet stream is not).
    let r = send(
        &proxy,
        &get("/bin")
            .header("accept-encoding", "gzip")
            .header("x-echo-response-size", "5000"),
    );
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.body.len(), 5000);

    // q-values: gzip allowed at 0.5 (brotli not configured), refused at q=0.
    let r = send(
        &proxy,
        &get("/q.txt")
            .header("accept-encoding", "br;q=1.0, gzip;q=0.5")
            .header("x-echo-body", &big),
    );
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(gunzip(&r.body), big.as_bytes());
    for refused in ["gzip;q=0", "identity", "deflate", "gzip;q=0, *"] {
        let r = send(
            &proxy,
            &get("/q0.txt")
                .header("accept-encoding", refused)
                .header("x-echo-body", &big),
        );
        assert_eq!(r.header("content-encoding"), None, "{refused}");
        assert_eq!(r.header("vary"), Some("Accept-Encoding"), "{refused}");
        assert_eq!(r.body, big.as_bytes(), "{refused}");
    }
    let r = send(
        &proxy,
        &get("/star.txt")
            .header("accept-encoding", "*")
            .header("x-echo-body", &big),
    );
    assert_eq!(r.header("content-encoding"), Some("gzip"));

    // Already encoded, no-transform: untouched.
    for (h, v) in [
        ("content-encoding", "br"),
        ("cache-control", "max-age=3, no-transform"),
    ] {
        let r = send(
            &proxy,
            &get("/enc.txt")
                .header("accept-encoding", "gzip")
                .header("x-echo-body", &big)
                .header("x-echo-set-header", &format!("{h}={v}")),
        );
        assert_eq!(r.header(h), Some(v));
        assert_eq!(r.header("content-length"), Some("760"), "{h}");
        assert_eq!(r.header("vary"), None, "{h}");
        assert_eq!(r.body, big.as_bytes());
    }

    // A strong ETag is dropped when compressing, a weak one is kept.
    let r = send(
        &proxy,
        &get("/etag.txt")
            .header("accept-encoding", "gzip")
            .header("x-echo-body", &big)
            .header("x-echo-set-header", "etag=%22abc%22"),
    );
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.header("etag"), None);
    let r = send(
        &proxy,
        &get("/etag.txt")
            .header("accept-encoding", "gzip")
            .header("x-echo-body", &big)
            .header("x-echo-set-header", "etag=W/%22abc%22"),
    );
    assert_eq!(r.header("etag"), Some("W/\"abc\""));

    // HEAD and bodiless statuses are never compressed.
    let mut conn = RawConn::connect(proxy.addr("listener")).expect("connect");
    let head = Request::new("HEAD", "/h.txt")
        .header("host", "example.com")
        .header("accept-encoding", "gzip")
        .header("x-echo-body", &big);
    let r = conn.request(&head).expect("HEAD response");
    assert_eq!(r.header("content-encoding"), None);
    assert!(r.body.is_empty());
    for status in ["204", "304"] {
        let r = send(
            &proxy,
            &get("/s.txt")
                .header("accept-encoding", "gzip")
                .header("x-echo-status", status),
        );
        assert_eq!(r.status.to_string(), status);
        assert_eq!(r.header("content-encoding"), None, "{status}");
    }

    // An upstream's chunked body of unknown length is compressed too.
    let r = send(
        &proxy,
        &get("/chunked.txt")
            .header("accept-encoding", "gzip")
            .header("x-echo-chunked", "1")
            .header("x-echo-body", &big),
    );
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(gunzip(&r.body), big.as_bytes());

    let s = stats(proxy.addr("admin"));
    let p = "http.ingress.compressor.gz.gzip.";
    assert!(
        counter(&s, &format!("{p}response.compressed")).is_some_and(|n| n >= 5),
        "{s}"
    );
    assert!(counter(&s, &format!("{p}response.not_compressed")).is_some_and(|n| n >= 5));
    assert!(counter(&s, &format!("{p}header_compressor_used")).is_some_and(|n| n >= 4));
    assert!(counter(&s, &format!("{p}no_accept_header")).is_some_and(|n| n >= 1));
    assert!(counter(&s, &format!("{p}header_identity")).is_some_and(|n| n >= 1));
    assert!(counter(&s, &format!("{p}header_not_valid")).is_some_and(|n| n >= 2));
    assert!(counter(&s, &format!("{p}response.content_length_too_small")).is_some_and(|n| n >= 1));
    assert!(counter(&s, &format!("{p}request.not_compressed")).is_some_and(|n| n >= 10));
    let unc = counter(&s, &format!("{p}response.total_uncompressed_bytes")).unwrap_or(0);
    let comp = counter(&s, &format!("{p}response.total_compressed_bytes")).unwrap_or(0);
    assert!(unc >= 760 * 4 && comp > 0 && comp < unc, "{unc} {comp}");
}

#[test]
fn curl_decodes_every_library() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("curl not installed, skipping");
        return;
    }
    let echo = EchoServer::start("backend").expect("echo");
    for (library, encoding) in [("gzip", "gzip"), ("brotli", "br"), ("zstd", "zstd")] {
        let filters = compressor("c", library, "");
        let proxy = start(&config(&filters, DEFAULT_ROUTE), &ports_for(&[&echo]));
        let body = text(20_000);
        let out = std::process::Command::new("curl")
            .args(["-s", "--compressed", "--max-time", "10", "-D", "-"])
            .args(["-H", &format!("accept-encoding: {encoding}")])
            .args(["-H", &format!("x-echo-body: {body}")])
            .arg(format!("http://{}/c.txt", proxy.addr("listener")))
            .output()
            .expect("curl runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let (head, got) = stdout.split_once("\r\n\r\n").expect("head and body");
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("content-encoding: {encoding}")),
            "{library}: {head}"
        );
        assert_eq!(got, body, "{library}");
    }
}

#[test]
fn hyper_h2c_client_gets_brotli() {
    let echo = EchoServer::start("backend").expect("echo");
    let filters = format!(
        "{}\n{}",
        compressor("gz", "gzip", ""),
        compressor("br", "brotli", "choose_first: true")
    );
    let proxy = start(&config(&filters, DEFAULT_ROUTE), &ports_for(&[&echo]));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut c = HyperClient::h2c(proxy.addr("listener")).await.expect("h2c");
        c.set_timeout(T);
        let body = text(3000);
        // Equal q-values: choose_first picks brotli.
        let req = c
            .builder("GET", "/h2.txt", "example.com")
            .header("accept-encoding", "gzip, br")
            .header("x-echo-body", &body)
            .body(Default::default())
            .expect("request");
        let r = c.send(req).await.expect("response");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-encoding"), Some("br"));
        assert!(r.header("content-length").is_none());
        assert_eq!(unbrotli(&r.body), body.as_bytes());
        let req = c
            .builder("GET", "/h2.txt", "example.com")
            .header("accept-encoding", "gzip;q=0.9, br;q=0.1")
            .header("x-echo-body", &body)
            .body(Default::default())
            .expect("request");
        let r = c.send(req).await.expect("response");
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        assert_eq!(gunzip(&r.body), body.as_bytes());
    });
    let s = stats(proxy.addr("admin"));
    assert_eq!(
        counter(
            &s,
            "http.ingress.compressor.br.brotli.header_compressor_used"
        ),
        Some(1),
        "{s}"
    );
    assert_eq!(
        counter(
            &s,
            "http.ingress.compressor.br.brotli.header_compressor_overshadowed"
        ),
        Some(1)
    );
    assert_eq!(
        counter(&s, "http.ingress.compressor.gz.gzip.header_compressor_used"),
        Some(1)
    );
    assert_eq!(
        counter(&s, "http.ingress.compressor.gz.gzip.compressed"),
        Some(1)
    );
}

/// A one-connection HTTP/1.1 upstream: answers the first request with a chunked
/// `text/plain` body, one chunk per element of `chunks`, waiting for a signal on `go`
/// before each chunk after the first. Returns the port and the request it received.
fn streaming_upstream(
    chunks: Vec<Vec<u8>>,
    go: mpsc::Receiver<()>,
) -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let handle = std::thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else {
            return;
        };
        let _ = s.set_read_timeout(Some(T));
        let mut r = BufReader::new(s.try_clone().expect("clone"));
        let mut line = String::new();
        while r.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
            line.clear();
        }
        let _ = s.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n",
        );
        for (i, c) in chunks.iter().enumerate() {
            if i > 0 && go.recv_timeout(T).is_err() {
                return;
            }
            let _ = s.write_all(format!("{:x}\r\n", c.len()).as_bytes());
            let _ = s.write_all(c);
            let _ = s.write_all(b"\r\n");
            let _ = s.flush();
        }
        let _ = s.write_all(b"0\r\n\r\n");
        std::thread::sleep(Duration::from_millis(200));
    });
    (port, handle)
}

#[test]
fn streamed_responses_are_flushed_chunk_by_chunk() {
    let (go_tx, go_rx) = mpsc::channel();
    let first = text(4000).into_bytes();
    let second = b"second part".repeat(300);
    let (port, upstream) = streaming_upstream(vec![first.clone(), second.clone()], go_rx);
    let mut ports = Ports::new();
    ports.insert("backend", port);
    let filters = compressor("c", "gzip", "");
    let proxy = start(&config(&filters, DEFAULT_ROUTE), &ports);

    let mut s = TcpStream::connect(proxy.addr("listener")).expect("connect");
    s.set_read_timeout(Some(T)).expect("timeout");
    s.write_all(b"GET /stream HTTP/1.1\r\nhost: example.com\r\naccept-encoding: gzip\r\n\r\n")
        .expect("send");
    // The first chunk arrives compressed before the upstream sends the second.
    let mut got = Vec::new();
    let deadline = Instant::now() + T;
    let mut decoded_first = Vec::new();
    while decoded_first.len() < first.len() && Instant::now() < deadline {
        let mut buf = [0u8; 8192];
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0, "closed early");
        got.extend_from_slice(&buf[..n]);
        if let Some(body_at) = find(&got, b"\r\n\r\n") {
            let body = dechunk_partial(&got[body_at + 4..]);
            decoded_first.clear();
            let _ = flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut decoded_first);
        }
    }
    assert_eq!(
        decoded_first, first,
        "the first chunk was flushed on its own"
    );
    let head = String::from_utf8_lossy(&got[..find(&got, b"\r\n\r\n").unwrap_or(0)]).to_lowercase();
    assert!(head.contains("content-encoding: gzip"), "{head}");
    go_tx.send(()).expect("go");
    // The rest, up to the end of the chunked body.
    while !got.ends_with(b"0\r\n\r\n") && Instant::now() < deadline {
        let mut buf = [0u8; 8192];
        let n = s.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let body_at = find(&got, b"\r\n\r\n").expect("head") + 4;
    let all = gunzip(&dechunk_partial(&got[body_at..]));
    assert_eq!(all, [first, second].concat());
    let _ = upstream.join();
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// The data of the complete chunks at the start of `b`.
fn dechunk_partial(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = find(b, b"\r\n") {
        let Ok(size) = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16) else {
            break;
        };
        if size == 0 || b.len() < eol + 2 + size + 2 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
    out
}

/// A one-request HTTP/1.1 upstream that reads a chunked or sized request body and
/// reports `(head, body)`.
fn recording_upstream() -> (u16, mpsc::Receiver<(String, Vec<u8>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let Ok((s, _)) = listener.accept() else {
            return;
        };
        let _ = s.set_read_timeout(Some(T));
        let mut r = BufReader::new(s.try_clone().expect("clone"));
        let mut head = String::new();
        let mut line = String::new();
        while r.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
            head.push_str(&line);
            line.clear();
        }
        let lower = head.to_ascii_lowercase();
        let mut body = Vec::new();
        if lower.contains("transfer-encoding: chunked") {
            loop {
                let mut size = String::new();
                if r.read_line(&mut size).unwrap_or(0) == 0 {
                    break;
                }
                let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                let mut chunk = vec![0u8; n + 2];
                if r.read_exact(&mut chunk).is_err() || n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else if let Some(cl) = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse::<usize>().ok())
        {
            body.resize(cl, 0);
            let _ = r.read_exact(&mut body);
        }
        let mut s = s;
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        let _ = tx.send((head, body));
    });
    (port, rx)
}

#[test]
fn request_bodies_are_compressed_when_configured() {
    let (port, rx) = recording_upstream();
    let mut ports = Ports::new();
    ports.insert("backend", port);
    let filters = compressor(
        "c",
        "gzip",
        "request_direction_config: {common_config: {min_content_length: 10}}",
    );
    let proxy = start(&config(&filters, DEFAULT_ROUTE), &ports);
    let body = text(50_000);
    let r = send(
        &proxy,
        &Request::new("POST", "/upload")
            .header("host", "example.com")
            .header("content-type", "text/plain")
            .body(body.as_bytes()),
    );
    assert_eq!(r.status, 200);
    let (head, got) = rx.recv_timeout(T).expect("the upstream got the request");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("content-encoding: gzip"), "{head}");
    assert!(lower.contains("transfer-encoding: chunked"), "{head}");
    assert!(!lower.contains("content-length"), "{head}");
    assert_eq!(gunzip(&got), body.as_bytes());
    let s = stats(proxy.addr("admin"));
    assert_eq!(
        counter(&s, "http.ingress.compressor.gz.gzip.request.compressed"),
        Some(1),
        "{s}"
    );
    assert_eq!(
        counter(
            &s,
            "http.ingress.compressor.gz.gzip.request.total_uncompressed_bytes"
        ),
        Some(50_000)
    );
}

#[test]
fn per_route_configs() {
    let echo = EchoServer::start("backend").expect("echo");
    let filters = compressor(
        "comp",
        "gzip",
        "response_direction_config: {remove_accept_encoding_header: false}",
    );
    let routes = r#"- match: {prefix: "/off"}
  route: {cluster: backend}
  typed_per_filter_config:
    comp:
      "@type": type.googleapis.com/envoy.extensions.filters.http.compressor.v3.CompressorPerRoute
      disabled: true
- match: {prefix: "/strip"}
  route: {cluster: backend}
  typed_per_filter_config:
    comp:
      "@type": type.googleapis.com/envoy.extensions.filters.http.compressor.v3.CompressorPerRoute
      overrides:
        response_direction_config: {remove_accept_encoding_header: true}
- match: {prefix: "/br"}
  route: {cluster: backend}
  typed_per_filter_config:
    comp:
      "@type": type.googleapis.com/envoy.extensions.filters.http.compressor.v3.CompressorPerRoute
      overrides:
        compressor_library:
          name: br-route
          typed_config: {"@type": type.googleapis.com/envoy.extensions.compression.brotli.compressor.v3.Brotli}
- match: {prefix: "/"}
  route: {cluster: backend}"#;
    let proxy = start(&config(&filters, routes), &ports_for(&[&echo]));
    let big = text(2000);
    let ask = |path: &str, ae: &str| {
        send(
            &proxy,
            &get(path)
                .header("accept-encoding", ae)
                .header("x-echo-body", &big),
        )
    };
    let r = ask("/off", "gzip");
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.header("vary"), None);
    let r = ask("/strip", "gzip");
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(
        echo.requests()
            .last()
            .and_then(|u| u.header("accept-encoding")),
        None
    );
    let r = ask("/on", "gzip");
    assert_eq!(
        echo.requests()
            .last()
            .and_then(|u| u.header("accept-encoding")),
        Some("gzip")
    );
    assert_eq!(gunzip(&r.body), big.as_bytes());
    let r = ask("/br", "br");
    assert_eq!(r.header("content-encoding"), Some("br"));
    assert_eq!(unbrotli(&r.body), big.as_bytes());
    let r = ask("/br", "gzip");
    assert_eq!(r.header("content-encoding"), None);
}

#[test]
fn etag_options_and_status_header() {
    let echo = EchoServer::start("backend").expect("echo");
    let filters = format!(
        "{}\n{}",
        compressor(
            "weak",
            "gzip",
            "response_direction_config:\n  weaken_etag_on_compress: true\n  disable_on_etag_header: true\n  uncompressible_response_codes: [206]\n  status_header_enabled: true"
        ),
        compressor(
            "strict",
            "zstd",
            "response_direction_config: {disable_on_etag_header: true}"
        )
    );
    let proxy = start(&config(&filters, DEFAULT_ROUTE), &ports_for(&[&echo]));
    let big = text(2000);
    let r = send(
        &proxy,
        &get("/e.txt")
            .header("accept-encoding", "gzip")
            .header("x-echo-body", &big)
            .header("x-echo-set-header", "etag=%22v1%22"),
    );
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.header("etag"), Some("W/\"v1\""));
    assert_eq!(
        r.header("x-envoy-compression-status"),
        Some("gzip;Compressed;OriginalLength=2000")
    );
    // zstd refuses responses with an ETag.
    let r = send(
        &proxy,
        &get("/e.txt")
            .header("accept-encoding", "zstd")
            .header("x-echo-body", &big)
            .header("x-echo-set-header", "etag=%22v1%22"),
    );
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.header("etag"), Some("\"v1\""));
    let r = send(
        &proxy,
        &get("/p.txt")
            .header("accept-encoding", "gzip")
            .header("x-echo-status", "206")
            .header("x-echo-body", &big),
    );
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(
        r.header("x-envoy-compression-status"),
        Some("gzip;StatusCodeNotAllowed")
    );
    let r = send(
        &proxy,
        &get("/small.txt")
            .header("accept-encoding", "gzip")
            .header("x-echo-body", "small"),
    );
    assert_eq!(
        r.header("x-envoy-compression-status"),
        Some("gzip;ContentLengthTooSmall")
    );
    let s = stats(proxy.addr("admin"));
    assert_eq!(
        counter(&s, "http.ingress.compressor.zs.zstd.not_compressed_etag"),
        Some(2),
        "{s}"
    );
}

#[test]
fn config_errors_name_their_path() {
    let cases = [
        (
            "response_direction_config: {uncompressible_response_codes: [100]}",
            "uncompressible_response_codes",
        ),
        ("choose_first: true\nbogus_field: 1", "bogus_field"),
    ];
    for (extra, needle) in cases {
        let filters = compressor("c", "gzip", extra);
        let mut ports = Ports::new();
        ports.insert("backend", 1);
        let out = ProxyBuilder::new(common::binary())
            .config(&config(&filters, DEFAULT_ROUTE))
            .ports(&ports)
            .extra_args(&["--mode", "validate"])
            .run_to_exit(T)
            .expect("runs");
        assert_ne!(out.code, Some(0), "{extra}");
        assert!(
            out.stderr.contains(needle) || out.stdout.contains(needle),
            "{extra}: {}{}",
            out.stdout,
            out.stderr
        );
    }
}

/// Status, headers (sorted; dates and timings masked; vary kept) and the decoded body.
fn normalized(r: &RawResponse) -> String {
    let mut headers: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .filter(|(k, _)| k != "date" && k != "x-envoy-upstream-service-time")
        .collect();
    headers.sort();
    let body = decoded(r.header("content-encoding"), &r.body);
    let echo = rvoy_testkit::echo::RecordedRequest::from_body(&body).is_some();
    let body = if echo {
        "<echo>".to_owned()
    } else {
        String::from_utf8_lossy(&body).into_owned()
    };
    let headers: Vec<String> = headers
        .into_iter()
        .map(|(k, v)| {
            if k == "content-length" && echo {
                format!("{k}: <echo length>")
            } else if k == "x-envoy-compression-status" && echo {
                // The echo's JSON length differs between proxies.
                format!("{k}: {}", v.split("OriginalLength=").next().unwrap_or(""))
            } else {
                format!("{k}: {v}")
            }
        })
        .collect();
    format!(
        "{} chunked={}\n{}\n{}",
        r.status,
        r.chunked,
        headers.join("\n"),
        body
    )
}

#[test]
fn differential_against_envoy() {
    let Some(envoy) = Binary::envoy() else {
        println!("envoy not installed, skipping");
        return;
    };
    let filters = format!(
        "{}\n{}",
        compressor(
            "gz",
            "gzip",
            "response_direction_config:\n  common_config: {min_content_length: 100, content_type: [text/plain, application/json]}\n  status_header_enabled: true"
        ),
        compressor("br", "brotli", "")
    );
    let cfg = config(&filters, DEFAULT_ROUTE);
    let big = text(900);
    let requests: Vec<Request> = vec![
        get("/a")
            .header("accept-encoding", "gzip")
            .header("x-echo-body", &big),
        get("/b")
            .header("accept-encoding", "br")
            .header("x-echo-body", &big),
        get("/c")
            .header("accept-encoding", "gzip, br")
            .header("x-echo-body", &big),
        get("/d")
            .header("accept-encoding", "br;q=0.5, gzip")
            .header("x-echo-body", &big),
        get("/e")
            .header("accept-encoding", "*")
            .header("x-echo-body", &big),
        get("/f")
            .header("accept-encoding", "gzip;q=0, *")
            .header("x-echo-body", &big),
        get("/g")
            .header("accept-encoding", "identity")
            .header("x-echo-body", &big),
        get("/h")
            .header("accept-encoding", "xyz")
            .header("x-echo-body", &big),
        get("/i").header("x-echo-body", &big),
        get("/j")
            .header("accept-encoding", "gzip")
            .header("x-echo-body", "short"),
        get("/k")
            .header("accept-encoding", "br")
            .header("x-echo-response-size", "3000"),
        get("/l")
            .header("accept-encoding", "gzip")
            .header("x-echo-body", &big)
            .header("x-echo-set-header", "content-type=text/html"),
        get("/m")
            .header("accept-encoding", "br")
            .header("x-echo-body", &big)
            .header("x-echo-set-header", "vary=Origin&etag=%22x%22"),
        get("/n")
            .header("accept-encoding", "gzip")
            .header("x-echo-status", "204"),
        get("/o")
            .header("accept-encoding", "gzip")
            .header("x-echo-chunked", "1")
            .header("x-echo-body", &big),
        get("/p")
            .header("accept-encoding", "gzip, br")
            .header("x-echo-set-header", "content-type=application/json"),
    ];
    let mut outputs = Vec::new();
    for binary in [envoy, Binary::Rvoy(env!("CARGO_BIN_EXE_rvoy").into())] {
        let echo = EchoServer::start("backend").expect("echo");
        let mut proxy = ProxyBuilder::new(binary)
            .config(&cfg)
            .ports(&ports_for(&[&echo]))
            .start()
            .expect("starts");
        let mut out = String::new();
        for req in &requests {
            let r = send_once(proxy.addr("listener"), &req.to_bytes()).expect("response");
            out.push_str(&format!(
                "== {}\n{}\n",
                req.to_bytes().len(),
                normalized(&r)
            ));
        }
        let s = stats(proxy.addr("admin"));
        for line in s
            .lines()
            .filter(|l| l.starts_with("http.ingress.compressor."))
        {
            // Compressed sizes differ between zlib builds.
            if !line.contains("total_compressed_bytes") {
                out.push_str(line);
                out.push('\n');
            }
        }
        let _ = proxy.stop();
        outputs.push(out);
    }
    let (e, r) = (&outputs[0], &outputs[1]);
    if std::env::var_os("RVOY_DIFF_DUMP").is_some() {
        println!("envoy saw:\n{e}");
    }
    assert!(e == r, "{}", rvoy_testkit::diff::line_diff(e, r));
}
