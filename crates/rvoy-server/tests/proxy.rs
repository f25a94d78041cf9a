//! Proxying to upstreams as an Envoy user sees it: what the upstream receives, local
//! replies (503, 504), retries, HTTP/1 edge cases (HTTP/1.0, malformed requests,
//! `connection: close`, `Expect: 100-continue`, chunked and large bodies, keep-alive reuse,
//! HEAD), websocket upgrades, h2c, access logs and DNS clusters.

mod common;

use std::time::Duration;

use common::{ADMIN, T, hcm, ports_for, start, start_with, stat, static_cluster, vhost};
use rvoy_testkit::echo::{pattern_bytes, sha256_hex};
use rvoy_testkit::raw::{RawConn, RawResponse, Request, send_once};
use rvoy_testkit::{EchoServer, HyperClient, Ports};

const ALL: &str = "[\"*\"]";

fn to_backend(extra_route: &str) -> String {
    let route = if extra_route.is_empty() {
        "{cluster: backend}".to_owned()
    } else {
        format!("{{cluster: backend, {extra_route}}}")
    };
    vhost(
        "v",
        ALL,
        &format!("- match: {{prefix: \"/\"}}\n  route: {route}"),
    )
}

/// A proxy with one route to a STATIC cluster `backend` (the echo), plus route fields.
fn proxy_to(echo: &EchoServer, extra_route: &str, hcm_extra: &str) -> rvoy_testkit::Proxy {
    let cfg = hcm(
        &to_backend(extra_route),
        hcm_extra,
        &static_cluster("backend", "backend", ""),
    );
    start(&cfg, &ports_for(&[echo]))
}

fn send(proxy: &rvoy_testkit::Proxy, req: &Request) -> RawResponse {
    send_once(proxy.addr("listener"), &req.to_bytes()).expect("a response")
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && s.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
}

#[test]
fn upstream_receives_envoy_headers() {
    let echo = EchoServer::start("backend").expect("echo");
    let proxy = proxy_to(&echo, "", "");
    let r = send(
        &proxy,
        &Request::get("/hello?x=1", "example.com")
            .header("User-Agent", "rvoy-test")
            .header("X-Custom-Case", "Kept"),
    );
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert_eq!(r.header("x-echo-server"), Some("backend"));
    assert!(
        r.header("x-envoy-upstream-service-time").is_some(),
        "{:?}",
        r.headers
    );
    assert_eq!(r.header("server"), Some("envoy"));
    let e = echo.last_request(T).expect("recorded");
    assert_eq!(e.method, "GET");
    assert_eq!(e.path, "/hello?x=1");
    assert_eq!(e.protocol, "HTTP/1.1");
    assert_eq!(e.header("host"), Some("example.com"));
    assert_eq!(e.header("user-agent"), Some("rvoy-test"));
    assert_eq!(e.header("x-forwarded-proto"), Some("http"));
    assert!(
        e.header("x-request-id").is_some_and(is_uuid),
        "{:?}",
        e.headers
    );
    assert_eq!(e.header("x-envoy-expected-rq-timeout-ms"), Some("15000"));
    // HTTP/1 header names reach the upstream lowercased.
    assert!(
        e.headers
            .iter()
            .any(|(k, v)| k == "x-custom-case" && v == "Kept"),
        "{:?}",
        e.headers
    );
    assert!(
        e.headers.iter().all(|(k, _)| *k == k.to_ascii_lowercase()),
        "{:?}",
        e.headers
    );
    // What the answer described is what the echo recorded.
    assert_eq!(r.echo().expect("echo json"), e);
}

#[test]
fn client_request_id_is_kept_and_route_timeout_is_announced() {
    let echo = EchoServer::start("backend").expect("echo");
    let proxy = proxy_to(&echo, "timeout: 3s", "");
    let r = send(
        &proxy,
        &Request::get("/", "example.com").header("x-request-id", "my-id-1"),
    );
    assert_eq!(r.status, 200);
    let e = r.echo().expect("echo");
    assert_eq!(e.header("x-request-id"), Some("my-id-1"));
    assert_eq!(e.header("x-envoy-expected-rq-timeout-ms"), Some("3000"));
}

#[test]
fn upstream_status_and_body_pass_through() {
    let echo = EchoServer::start("backend").expect("echo");
    let proxy = proxy_to(&echo, "", "");
    let r = send(
        &proxy,
        &Request::get("/", "example.com")
            .header("x-echo-status", "418")
            .header("x-echo-body", "custom%20body")
            .header("x-echo-set-header", "x-from-up=yes"),
    );
    assert_eq!(r.status, 418);
    assert_eq!(r.body_str(), "custom body");
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.header("x-from-up"), Some("yes"));
}

#[test]
fn no_healthy_upstream_is_503() {
    let cfg = hcm(
        &to_backend(""),
        "",
        "- name: backend\n  type: STATIC\n  connect_timeout: 1s\n  load_assignment: {cluster_name: backend}",
    );
    let proxy = start(&cfg, &Ports::new());
    let r = send(&proxy, &Request::get("/", "example.com"));
    assert_eq!((r.status, r.reason.as_str()), (503, "Service Unavailable"));
    assert_eq!(r.body_str(), "no healthy upstream");
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.header("content-length"), Some("19"));
}

#[test]
fn connection_refused_is_503_with_reset_reason() {
    let mut ports = Ports::new();
    ports
        .port("dead")
        .expect("reserved port, nothing listening");
    let cfg = hcm(&to_backend(""), "", &static_cluster("backend", "dead", ""));
    let proxy = start(&cfg, &ports);
    let r = send(&proxy, &Request::get("/", "example.com"));
    assert_eq!(r.status, 503);
    assert_eq!(
        r.body_str(),
        "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure"
    );
    assert_eq!(r.header("content-type"), Some("text/plain"));
}

#[test]
fn upstream_reset_is_503() {
    let echo = EchoServer::start("backend").expect("echo");
    let proxy = proxy_to(&echo, "", "");
    let r = send(
        &proxy,
        &Request::get("/", "example.com").header("x-echo-reset", "1"),
    );
    assert_eq!(r.status, 503);
    assert!(
        r.body_str().starts_with(
            "upstream connect error or disconnect/reset before headers. reset reason: "
        ),
        "{}",
        r.body_str()
    );
}

#[test]
fn route_timeout_is_504() {
    let echo = EchoServer::start("backend").expect("echo");
    let proxy = proxy_to(&echo, "timeout: 0.3s", "");
    let started = std::time::Instant::now();
    let r = send(
        &proxy,
        &Request::get("/", "example.com").header("x-echo-delay-ms", "3000"),
    );
    assert_eq!((r.status, r.reason.as_str()), (504, "Gateway Timeout"));
    assert_eq!(r.body_str(), "upstream request timeout");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn retries_on_5xx_until_success() {
    let echo = EchoServer::start("backend").expect("echo");
    let proxy = proxy_to(
        &echo,
        "retry_policy: {retry_on: 5xx, num_retries: 3, per_try_timeout: 2s}",
        "",
    );
    let r = send(
        &proxy,
        &Request::get("/retry", "example.com")
            .header("x-echo-fail-times", "2")
            .header("x-echo-key", "retry-success"),
    );
    assert_eq!(r.status, 200, "{}", r.body_str());
    let reqs = echo.wait_requests(3, T).expect("three attempts");
    assert_eq!(reqs.len(), 3);
    assert_eq!(
        reqs.iter()
            .map(|q| q.header("x-envoy-attempt-count"))
            .collect::<Vec<_>>(),
        vec![None, None, None],
        "attempt count is only sent when the vhost asks for it"
    );
    assert!(
        reqs.iter()
            .all(|q| q.header("x-request-id") == reqs[0].header("x-request-id"))
    );
}

#[test]
fn retries_exhausted_return_the_last_upstream_answer() {
    let echo = EchoServer::start("backend").expect("echo");
    let proxy = proxy_to(&echo, "retry_policy: {retry_on: 5xx, num_retries: 1}", "");
    let r = send(
        &proxy,
        &Request::get("/", "example.com")
            .header("x-echo-fail-times", "5")
            .header("x-echo-key", "retry-exhausted"),
    );
    assert_eq!(r.status, 503);
    assert!(
        r.echo().is_some(),
        "the upstream's own 503 answer: {}",
        r.body_str()
    );
    assert_eq!(echo.wait_requests(2, T).expect("two attempts").len(), 2);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(echo.requests().len(), 2, "no third attempt");
}

#[test]
fn no_retry_without_policy() {
    let echo = EchoServer::start("backend").expect("echo");
    let proxy = proxy_to(&echo, "", "");
    let r = send(
        &proxy,
        &Request::get("/", "example.com")
            .header("x-echo-fail-times", "1")
            .header("x-echo-key", "no-policy"),
    );
    assert_eq!(r.status, 503);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(echo.requests().len(), 1);
}

#[test]
fn http10_is_426() {
    let echo = EchoServer::start("backend").expect("echo");
    let proxy = proxy_to(&echo, "", "");
    let mut c = RawConn::connect(proxy.addr("listener")).expect("connect");
    c.send(b"GET / HTTP/1.0\r\nhost: example.com\r\n\r\n")
        .expect("send");
    let r = c.read_response().expect("response");
    assert_eq!((r.status, r.reason.as_str()), (426, "Upgrade Required"));
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.is_closed(T));
    assert!(echo.requests().is_empty());
}

#[test]
fn http10_accepted_when_configured() {
    let echo = EchoServer::start("backend").expect("echo");
    let proxy = proxy_to(
        &echo,
        "",
        "http_protocol_options: {accept_http_10: true, default_host_for_http_10: legacy.example}",
    );
    let mut c = RawConn::connect(proxy.addr("listener")).expect("connect");
    c.send(b"GET /old HTTP/1.0\r\n\r\n").expect("send");
    let r = c.read_response().expect("response");
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert_eq!(r.version, "HTTP/1.0");
    let e = r.echo().expect("echo");
    assert_eq!(e.header("host"), Some("legacy.example"));
    assert!(c.is_closed(T), "HTTP/1.0 without keep-alive closes");
}

fn expect_error_and_close(proxy: &rvoy_testkit::Proxy, bytes: &[u8], status: u16, reason: &str) {
    let mut c = RawConn::connect(proxy.addr("listener")).expect("connect");
    c.send(bytes).expect("send");
    let r = c.read_response().expect("an error response");
    assert_eq!(
        (r.status, r.reason.as_str()),
        (status, reason),
        "for {:?}",
        String::from_utf8_lossy(&bytes[..bytes.len().min(60)])
    );
    assert_eq!(r.header("connection"), Some("close"), "{:?}", r.headers);
    assert!(c.is_closed(T), "closed after {status}");
}

#[test]
fn malformed_requests_get_400_and_close() {
    let echo = EchoServer::start("backend").expect("echo");
    let proxy = proxy_to(&echo, "", "");
    expect_error_and_close(&proxy, b"GARBAGE\r\n\r\n", 400, "Bad Request");
    expect_error_and_close(
        &proxy,
        b"GET / HTTP/1.1\r\nhost: x\r\nbad header\r\n\r\n",
        400,
        "Bad Request",
    );
    expect_error_and_close(
        &proxy,
        b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab",
        400,
        "Bad Request",
    );
    expect_error_and_close(
        &proxy,
        b"GET / HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n",
        400,
        "Bad Request",
    );
    assert!(echo.requests().is_empty(), "{:?}", echo.requests());
}

#[test]
fn oversized_headers_get_431() {
    let echo = EchoServer::start("backend").expect("echo");
    let proxy = proxy_to(&echo, "", "");
    let big = "a".repeat(70 * 1024);
    let req = format!("GET / HTTP/1.1\r\nhost: x\r\nx-big: {big}\r\n\r\n");
    expect_error_and_close(
        &proxy,
        req.as_bytes(),
        431,
        "Request Header Fields Too Large",
    );
    assert!(echo.requests().is_empty());
}

#[test]
fn unsupported_transfer_encoding_gets_501() {
    let echo = EchoServer::start("backend").expect("echo");
    let proxy = proxy_to(&echo, "", "");
    expect_error_and_close(
        &proxy,
        b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip\r\n\r\n",
        501,
        "Not Implemented",
    );
}

#[test]
fn connection_close_request_closes_after_response() {
    let echo = EchoServer::start("backend").expect("echo");
    let proxy = proxy_to(&echo, "", "");
    let mut c = RawConn::connect(proxy.addr("listener")).expect("connect");
    let r = c
        .request(&Request::get("/", "example.com").header("connection", "close"))
        .expect("response");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.is_closed(T));
    let e = r.echo().expect("echo");
    assert_eq!(
        e.header("connection"),
        None,
        "hop-by-hop headers are not forwarded"
    );
}

#[test]
fn hop_by_hop_and_connection_nominated_headers_are_not_forwarded() {
    let echo = EchoServer::start("backend").expect("echo");
    let proxy = proxy_to(&echo, "", "");
    let r = send(
        &proxy,
        &Request::get("/", "example.com")
            .header("connection", "keep-alive, x-drop")
            .header("x-drop", "1")
            .header("keep-alive", "timeout=5")
            .header("proxy-connection", "keep-alive")
            .header("te", "trailers")
            .header("x-keep", "1"),
    );
    assert_eq!(r.status, 200);
    let e = r.echo().expect("echo");
    assert_eq!(e.header("x-keep"), Some("1"));
    assert_eq!(e.header("te"), Some("trailers"), "te: trailers is kept");
    for h in ["connection", "keep-alive", "proxy-connection"] {
        assert_eq!(e.header(h), None, "{h} is hop-by-hop");
    }
    assert_eq!(
        e.header("x-drop"),
        None,
        "a header named by Connection is hop-by-hop"
    );
}

#[test]
fn upstream_close_does_not_close_downstream() {
    let echo = EchoServer::start("backend").expect("echo");
    let proxy = proxy_to(&echo, "", "");
    let mut c = RawConn::connect(proxy.addr("listener")).expect("connect");
    let r = c
        .request(&Request::get("/", "example.com").header("x-echo-close", "1"))
        .expect("response");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), None, "{:?}", r.headers);
    let r = c
        .request(&Request::get("/again", "example.com"))
        .expect("second");
    assert_eq!(r.status, 200);
    assert_eq!(
        echo.connections(),
        2,
        "a new upstream connection after the close"
    );
}

#[test]
fn expect_100_continue() {
    let echo = EchoServer::start("backend").expect("echo");
    let proxy = proxy_to(&echo, "", "");
    let mut c = RawConn::connect(proxy.addr("listener")).expect("connect");
    c.send(b"POST /upload HTTP/1.1\r\nhost: example.com\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n")
        .expect("send head");
    let interim = c.read_response().expect("100 Continue");
    assert_eq!((interim.status, interim.reason.as_str()), (100, "Continue"));
    c.send(b"hello").expect("send body");
    let r = c.read_response().expect("final response");
    assert_eq!(r.status, 200);
    let e = r.echo().expect("echo");
    assert_eq!(e.body_len, 5);
    assert_eq!(e.body_sha256, sha256_hex(b"hello"));
    assert_eq!(
        e.header("expect"),
        None,
        "Envoy answers the expectation itself"
    );
}

#[test]
fn chunked_request_body_is_forwarded_chunked() {
    let echo = EchoServer::start("backend").expect("echo");
    let proxy = proxy_to(&echo, "", "");
    let r = send(
        &proxy,
        &Request::new("POST", "/c")
            .header("host", "example.com")
            .chunked(&[b"hello ", b"chunked ", b"world"]),
    );
    assert_eq!(r.status, 200);
    let e = r.echo().expect("echo");
    assert!(e.chunked, "{:?}", e.headers);
    assert_eq!(e.body_len, 19);
    assert_eq!(e.body_sha256, sha256_hex(b"hello chunked world"));
    assert_eq!(e.header("content-length"), None);
}

#[test]
fn chunked_and_close_delimited_responses() {
    let echo = EchoServer::start("backend").expect("echo");
    let proxy = proxy_to(&echo, "", "");
    let r = send(
        &proxy,
        &Request::get("/", "example.com")
            .header("x-echo-chunked", "1")
            .header("x-echo-response-size", "40000"),
    );
    assert_eq!(r.status, 200);
    assert!(r.chunked, "{:?}", r.headers);
    assert_eq!(r.body, pattern_bytes(40_000));

    // A body the upstream ends by closing reaches an HTTP/1.1 client chunked.
    let mut c = RawConn::connect(proxy.addr("listener")).expect("connect");
    let r = c
        .request(
            &Request::get("/", "example.com")
                .header("x-echo-no-content-length", "1")
                .header("x-echo-body", "until-close"),
        )
        .expect("response");
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "until-close");
    assert!(r.chunked, "{:?}", r.headers);
    assert!(!r.until_close);
}

#[test]
fn one_mebibyte_bodies_both_ways() {
    let echo = EchoServer::start("backend").expect("echo");
    let proxy = proxy_to(&echo, "", "");
    let body = pattern_bytes(1 << 20);
    let r = send(
        &proxy,
        &Request::new("PUT", "/big")
            .header("host", "example.com")
            .body(&body),
    );
    assert_eq!(r.status, 200, "{}", r.body_str());
    let e = r.echo().expect("echo");
    assert_eq!(e.body_len, 1 << 20);
    assert_eq!(e.body_sha256, sha256_hex(&body));
    assert_eq!(e.header("content-length"), Some("1048576"));

    let r = send(
        &proxy,
        &Request::get("/big", "example.com").header("x-echo-response-size", "1048576"),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("1048576"));
    assert_eq!(r.body.len(), 1 << 20);
    assert_eq!(sha256_hex(&r.body), sha256_hex(&body));
}

/// A large response body reaches every kind of client whole, whatever pieces the proxy
/// reads it in and gathers into its writes: re-chunked for HTTP/1.1, delimited by the
/// close for HTTP/1.0, in DATA frames for HTTP/2; a keep-alive connection stays in sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_response_bodies_reach_each_kind_of_client_whole() {
    let echo = EchoServer::start("backend").expect("echo");
    let proxy = proxy_to(
        &echo,
        "",
        "http_protocol_options: {accept_http_10: true, default_host_for_http_10: example.com}",
    );
    let addr = proxy.addr("listener");
    let sizes = [1usize << 20, 300_001, 70_000];
    let raw = tokio::task::spawn_blocking(move || {
        let mut c = RawConn::connect(addr).expect("connect");
        for size in sizes {
            for chunked in [true, false] {
                let mut req = Request::get("/big", "example.com")
                    .header("x-echo-response-size", &size.to_string());
                if chunked {
                    req = req.header("x-echo-chunked", "1");
                }
                let r = c.request(&req).expect("response");
                assert_eq!(r.status, 200);
                assert_eq!(r.chunked, chunked, "{:?}", r.headers);
                assert_eq!(r.body.len(), size, "chunked upstream: {chunked}");
                assert!(r.body == pattern_bytes(size), "{size} bytes differ");
            }
        }
        let r = c
            .request(&Request::get("/after", "example.com"))
            .expect("next");
        assert_eq!(r.echo().expect("echo").path, "/after");

        let mut c = RawConn::connect(addr).expect("connect");
        c.send(b"GET /old HTTP/1.0\r\nx-echo-chunked: 1\r\nx-echo-response-size: 1048576\r\n\r\n")
            .expect("send");
        let r = c.read_response().expect("response");
        assert_eq!(r.status, 200);
        assert_eq!(r.version, "HTTP/1.0");
        assert!(!r.chunked);
        assert!(r.body == pattern_bytes(1 << 20), "HTTP/1.0 body differs");
    });
    raw.await.expect("HTTP/1 clients");

    let mut h2 = HyperClient::h2c(addr).await.expect("h2c connect");
    for size in sizes {
        let req = h2
            .builder("GET", "/big", "example.com")
            .header("x-echo-chunked", "1")
            .header("x-echo-response-size", size.to_string())
            .body(Default::default())
            .expect("request");
        let r = h2.send(req).await.expect("response");
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), size);
        assert!(r.body == pattern_bytes(size), "HTTP/2: {size} bytes differ");
    }
}

/// A request is served whether it reaches the proxy with the connection (already
/// there when the worker accepts it) or after a pause (the worker waits for the
/// socket's first readable event, not reading a just accepted socket at once).
#[test]
fn requests_sent_with_the_connection_or_after_a_pause_are_served() {
    let echo = EchoServer::start("backend").expect("echo");
    let proxy = proxy_to(&echo, "", "");
    let addr = proxy.addr("listener");
    let req = Request::get("/early", "example.com").header("connection", "close");
    // A burst: the later connections of it wait in the backlog with their request.
    let mut conns: Vec<RawConn> = (0..40)
        .map(|_| {
            let mut c = RawConn::connect(addr).expect("connect");
            c.send(&req.to_bytes()).expect("send");
            c
        })
        .collect();
    for c in &mut conns {
        let r = c.read_response().expect("response");
        assert_eq!(r.status, 200);
        assert_eq!(r.echo().expect("echo").path, "/early");
    }
    for _ in 0..3 {
        let mut c = RawConn::connect(addr).expect("connect");
        std::thread::sleep(Duration::from_millis(50));
        let r = c
            .request(&Request::get("/late", "example.com"))
            .expect("response");
        assert_eq!(r.status, 200);
        assert_eq!(r.echo().expect("echo").path, "/late");
    }
}

#[test]
fn keepalive_reuses_downstream_and_upstream_connections() {
    let echo = EchoServer::start("backend").expect("echo");
    let proxy = proxy_to(&echo, "", "");
    let mut c = RawConn::connect(proxy.addr("listener")).expect("connect");
    for i in 0..5 {
        let r = c
            .request(&Request::get(&format!("/k{i}"), "example.com"))
            .expect("response");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("connection"), None);
    }
    assert!(!c.is_closed(Duration::from_millis(100)));
    let reqs = echo.requests();
    assert_eq!(reqs.len(), 5);
    assert!(
        reqs.iter().all(|r| r.connection == reqs[0].connection),
        "one upstream connection"
    );
    assert_eq!(echo.connections(), 1);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let echo = EchoServer::start("backend").expect("echo");
    let proxy = proxy_to(&echo, "", "");
    let mut c = RawConn::connect(proxy.addr("listener")).expect("connect");
    let mut bytes = Request::get("/p1", "example.com").to_bytes();
    bytes.extend(Request::get("/p2", "example.com").to_bytes());
    c.send(&bytes).expect("send");
    let r1 = c.read_response().expect("first");
    let r2 = c.read_response().expect("second");
    assert_eq!(r1.echo().expect("echo").path, "/p1");
    assert_eq!(r2.echo().expect("echo").path, "/p2");
}

#[test]
fn head_request_has_headers_but_no_body() {
    let echo = EchoServer::start("backend").expect("echo");
    let proxy = proxy_to(&echo, "", "");
    let mut c = RawConn::connect(proxy.addr("listener")).expect("connect");
    let r = c
        .request(&Request::new("HEAD", "/h").header("host", "example.com"))
        .expect("response");
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    let cl: usize = r
        .header("content-length")
        .expect("content-length of the GET body")
        .parse()
        .expect("number");
    assert!(cl > 0);
    assert_eq!(echo.last_request(T).expect("recorded").method, "HEAD");
    // The connection is still in sync: no stray body bytes.
    let r = c
        .request(&Request::get("/after", "example.com"))
        .expect("next");
    assert_eq!(r.echo().expect("echo").path, "/after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_echo() {
    use rvoy_testkit::futures_util::{SinkExt, StreamExt};
    use rvoy_testkit::tokio_tungstenite::tungstenite::Message;

    let echo = EchoServer::start("backend").expect("echo");
    let proxy = proxy_to(&echo, "", "upgrade_configs: [{upgrade_type: websocket}]");
    let url = format!("ws://127.0.0.1:{}/ws", proxy.port("listener"));
    let (mut ws, resp) =
        tokio::time::timeout(T, rvoy_testkit::tokio_tungstenite::connect_async(url))
            .await
            .expect("handshake in time")
            .expect("handshake");
    assert_eq!(resp.status(), 101);
    for text in ["hello", "world"] {
        ws.send(Message::text(text)).await.expect("send");
        let got = tokio::time::timeout(T, ws.next())
            .await
            .expect("echo in time")
            .expect("a message")
            .expect("ok message");
        assert_eq!(got, Message::text(text));
    }
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .expect("send");
    let got = tokio::time::timeout(T, ws.next())
        .await
        .expect("in time")
        .expect("msg")
        .expect("ok");
    assert_eq!(got, Message::binary(vec![0u8, 1, 2, 255]));
    ws.close(None).await.expect("close");
    let up = echo.last_request(T).expect("upgrade request");
    assert_eq!(up.header("upgrade"), Some("websocket"));
    assert!(
        up.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("upgrade"))
    );
}

#[test]
fn upgrade_without_config_is_403() {
    let echo = EchoServer::start("backend").expect("echo");
    let proxy = proxy_to(&echo, "", "");
    let r = send(
        &proxy,
        &Request::get("/ws", "example.com")
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("sec-websocket-version", "13"),
    );
    assert_eq!((r.status, r.reason.as_str()), (403, "Forbidden"));
    assert!(echo.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_downstream() {
    let echo = EchoServer::start("backend").expect("echo");
    let proxy = proxy_to(&echo, "", "");
    let mut client = HyperClient::h2c(proxy.addr("listener"))
        .await
        .expect("h2c connect");
    for i in 0..3 {
        let r = client
            .get(&format!("/h2/{i}"), "example.com")
            .await
            .expect("response");
        assert_eq!(r.status, 200, "{}", r.body_str());
        assert_eq!(r.version, http_version_2());
        assert_eq!(r.header("server"), Some("envoy"));
        let e = r.echo().expect("echo");
        assert_eq!(
            e.protocol, "HTTP/1.1",
            "the cluster speaks HTTP/1.1 upstream"
        );
        assert_eq!(e.path, format!("/h2/{i}"));
        assert_eq!(e.header("host"), Some("example.com"));
        assert_eq!(e.header("x-forwarded-proto"), Some("http"));
    }
}

/// Cluster `backend` at `{{port:backend}}`, speaking h2c.
fn h2c_cluster() -> String {
    h2c_cluster_with("")
}

/// [`h2c_cluster`] with `common_http_protocol_options` (a YAML flow mapping).
fn h2c_cluster_with(common: &str) -> String {
    let common = if common.is_empty() {
        String::new()
    } else {
        format!("\n    common_http_protocol_options: {common}")
    };
    static_cluster(
        "backend",
        "backend",
        &format!(
            r#"typed_extension_protocol_options:
  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
    "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
    explicit_http_config: {{http2_protocol_options: {{}}}}{common}"#
        ),
    )
}

/// An idle upstream HTTP/1 connection is closed when the cluster's idle
/// timeout runs out, not only when it would be reused.
#[test]
fn h1_upstream_idle_timeout_closes_the_connection() {
    let echo = EchoServer::start("backend").expect("echo");
    let cluster = static_cluster(
        "backend",
        "backend",
        "common_http_protocol_options: {idle_timeout: 0.3s}",
    );
    let cfg = format!("{}{}", common::ADMIN, hcm(&to_backend(""), "", &cluster));
    let proxy = start(&cfg, &ports_for(&[&echo]));
    assert_eq!(send(&proxy, &Request::get("/1", "example.com")).status, 200);
    let deadline = std::time::Instant::now() + T;
    while common::stat(&proxy, "cluster.backend.upstream_cx_destroy") != Some(1)
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let got: Vec<_> = [
        "upstream_cx_idle_timeout",
        "upstream_cx_destroy_local",
        "upstream_cx_active",
    ]
    .iter()
    .map(|s| common::stat(&proxy, &format!("cluster.backend.{s}")))
    .collect();
    assert_eq!(got, [Some(1), Some(1), Some(0)]);
}

/// Upstream HTTP/2 connections: closed after the cluster's idle timeout, and
/// after `max_requests_per_connection` requests.
#[test]
fn h2_upstream_idle_timeout_and_max_requests() {
    let echo = EchoServer::start("backend").expect("echo");
    let cluster = h2c_cluster_with("{idle_timeout: 0.3s, max_requests_per_connection: 2}");
    let cfg = format!("{}{}", common::ADMIN, hcm(&to_backend(""), "", &cluster));
    let proxy = start(&cfg, &ports_for(&[&echo]));
    assert_eq!(send(&proxy, &Request::get("/1", "example.com")).status, 200);
    std::thread::sleep(std::time::Duration::from_millis(800));
    // The idle connection is gone: a new one carries two requests, then the
    // third needs another.
    for path in ["/2", "/3", "/4"] {
        assert_eq!(send(&proxy, &Request::get(path, "example.com")).status, 200);
    }
    assert_eq!(echo.connections(), 3);
    let deadline = std::time::Instant::now() + T;
    while common::stat(&proxy, "cluster.backend.upstream_cx_destroy") != Some(2)
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let got: Vec<_> = [
        "upstream_cx_idle_timeout",
        "upstream_cx_max_requests",
        "upstream_cx_destroy_local",
        "upstream_cx_destroy_remote",
    ]
    .iter()
    .map(|s| common::stat(&proxy, &format!("cluster.backend.{s}")))
    .collect();
    assert_eq!(got, [Some(1), Some(1), Some(2), Some(0)]);
}

fn http_version_2() -> rvoy_testkit::http::Version {
    rvoy_testkit::http::Version::HTTP_2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_upstream_and_http1_client_via_hyper() {
    let echo = EchoServer::start("backend").expect("echo");
    let cluster = h2c_cluster();
    let cfg = hcm(&to_backend(""), "", &cluster);
    let proxy = start(&cfg, &ports_for(&[&echo]));
    let mut client = HyperClient::http1(proxy.addr("listener"))
        .await
        .expect("connect");
    let r = client.get("/up-h2", "example.com").await.expect("response");
    assert_eq!(r.status, 200, "{}", r.body_str());
    let e = r.echo().expect("echo");
    assert_eq!(e.protocol, "HTTP/2");
    assert_eq!(e.authority(), Some("example.com"));
    assert_eq!(e.header("x-forwarded-proto"), Some("http"));
    let r = client.get("/again", "example.com").await.expect("second");
    assert_eq!(r.status, 200);
    assert_eq!(echo.connections(), 1, "one multiplexed upstream connection");
}

/// An upstream HTTP/2 connection closed by the upstream is a remote destroy.
#[test]
fn h2_upstream_close_is_counted_as_remote() {
    let echo = EchoServer::start("backend").expect("echo");
    let cluster = h2c_cluster();
    let cfg = format!("{}{}", common::ADMIN, hcm(&to_backend(""), "", &cluster));
    let proxy = start(&cfg, &ports_for(&[&echo]));
    let r = send(&proxy, &Request::get("/up-h2", "example.com"));
    assert_eq!(r.status, 200);
    drop(echo);
    let deadline = std::time::Instant::now() + T;
    let name = "cluster.backend.upstream_cx_destroy";
    while common::stat(&proxy, name) != Some(1) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let got: Vec<_> = ["", "_local", "_remote"]
        .iter()
        .map(|s| common::stat(&proxy, &format!("{name}{s}")))
        .collect();
    assert_eq!(got, [Some(1), Some(0), Some(1)]);
}

const LOG_FORMAT: &str = "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL% %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %UPSTREAM_CLUSTER% %REQ(X-MARK)%\n";

#[test]
fn access_log_lines_on_stdout() {
    let echo = EchoServer::start("backend").expect("echo");
    let hcm_extra = format!(
        r#"access_log:
- name: envoy.access_loggers.stdout
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
    log_format: {{text_format_source: {{inline_string: {LOG_FORMAT:?}}}}}"#
    );
    let vhosts = vhost(
        "v",
        ALL,
        "- match: {prefix: \"/api/\"}\n  route: {cluster: backend, prefix_rewrite: \"/\"}\n- match: {prefix: \"/direct\"}\n  direct_response: {status: 200, body: {inline_string: abc}}",
    );
    let cfg = hcm(
        &vhosts,
        &hcm_extra,
        &static_cluster("backend", "backend", ""),
    );
    let proxy = start_with(
        &cfg,
        &ports_for(&[&echo]),
        &["--file-flush-interval-msec", "50"],
    );
    send(
        &proxy,
        &Request::get("/api/x", "example.com").header("x-mark", "m1"),
    );
    send(
        &proxy,
        &Request::get("/direct", "example.com").header("x-mark", "m2"),
    );
    send(
        &proxy,
        &Request::get("/nowhere", "example.com").header("x-mark", "m3"),
    );
    send(
        &proxy,
        &Request::new("POST", "/api/p")
            .header("host", "example.com")
            .header("x-mark", "m4")
            .body(b"0123456789"),
    );
    let lines = proxy.wait_stdout_lines(" m", 4, T).expect("four log lines");
    let find = |m: &str| {
        lines
            .iter()
            .find(|l| l.ends_with(&format!(" {m}")))
            .unwrap_or_else(|| panic!("a line for {m} in {lines:#?}"))
            .clone()
    };
    assert!(
        find("m1").starts_with("GET /api/x HTTP/1.1 200 - 0 "),
        "{}",
        find("m1")
    );
    assert!(find("m1").ends_with(" backend m1"));
    assert_eq!(find("m2"), "GET /direct HTTP/1.1 200 - 0 3 - m2");
    assert_eq!(find("m3"), "GET /nowhere HTTP/1.1 404 NR 0 0 - m3");
    assert!(
        find("m4").starts_with("POST /api/p HTTP/1.1 200 - 10 "),
        "{}",
        find("m4")
    );
}

#[test]
fn default_access_log_format() {
    let hcm_extra = r#"access_log:
- name: envoy.access_loggers.stdout
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"#;
    let vhosts = vhost(
        "v",
        ALL,
        "- match: {prefix: \"/\"}\n  direct_response: {status: 201, body: {inline_string: hey}}",
    );
    let proxy = start_with(
        &hcm(&vhosts, hcm_extra, ""),
        &Ports::new(),
        &["--file-flush-interval-msec", "50"],
    );
    send(
        &proxy,
        &Request::get("/path?q=1", "example.com")
            .header("user-agent", "ua/1")
            .header("x-request-id", "rid-1"),
    );
    let line = proxy.wait_stdout_lines("rid-1", 1, T).expect("a log line")[0].clone();
    // [%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%"
    // %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION%
    // %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%"
    // "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"
    assert!(line.starts_with('[') && line.contains("Z] "), "{line}");
    let rest = line.split_once("Z] ").expect("start time").1;
    let head = "\"GET /path?q=1 HTTP/1.1\" 201 - 0 3 ";
    let tail = " - \"-\" \"ua/1\" \"rid-1\" \"example.com\" \"-\"";
    assert!(rest.starts_with(head) && rest.ends_with(tail), "{rest}");
    let duration = &rest[head.len()..rest.len() - tail.len()];
    assert!(
        duration.parse::<u64>().is_ok(),
        "duration {duration:?} in {rest}"
    );
}

fn dns_cluster(kind: &str) -> String {
    format!(
        r#"- name: backend
  type: {kind}
  connect_timeout: 1s
  dns_lookup_family: V4_ONLY
  load_assignment:
    cluster_name: backend
    endpoints:
    - lb_endpoints:
      - endpoint: {{address: {{socket_address: {{address: localhost, port_value: {{{{port:backend}}}}}}}}}}"#
    )
}

#[test]
fn strict_dns_cluster_resolves_localhost() {
    let echo = EchoServer::start("backend").expect("echo");
    let cfg = hcm(&to_backend(""), "", &dns_cluster("STRICT_DNS"));
    let proxy = start(&cfg, &ports_for(&[&echo]));
    let r = send(&proxy, &Request::get("/dns", "example.com"));
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert_eq!(r.echo().expect("echo").path, "/dns");
}

#[test]
fn logical_dns_cluster_resolves_localhost() {
    let echo = EchoServer::start("backend").expect("echo");
    let cfg = hcm(&to_backend(""), "", &dns_cluster("LOGICAL_DNS"));
    let proxy = start(&cfg, &ports_for(&[&echo]));
    let r = send(&proxy, &Request::get("/dns", "example.com"));
    assert_eq!(r.status, 200, "{}", r.body_str());
    let e = r.echo().expect("echo");
    assert_eq!(e.header("host"), Some("example.com"));
}

#[test]
fn round_robin_over_two_static_endpoints() {
    let a = EchoServer::start("a").expect("echo a");
    let b = EchoServer::start("b").expect("echo b");
    let cluster = r#"- name: backend
  type: STATIC
  connect_timeout: 1s
  lb_policy: ROUND_ROBIN
  load_assignment:
    cluster_name: backend
    endpoints:
    - lb_endpoints:
      - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: {{port:a}}}}}
      - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: {{port:b}}}}}"#;
    let proxy = start(&hcm(&to_backend(""), "", cluster), &ports_for(&[&a, &b]));
    for i in 0..4 {
        let r = send(&proxy, &Request::get(&format!("/{i}"), "example.com"));
        assert_eq!(r.status, 200);
    }
    assert_eq!((a.requests().len(), b.requests().len()), (2, 2));
}

/// Two endpoints of a cluster with the same address are two hosts, each with its own
/// connection pool (as in Envoy): round robin over them opens one upstream connection
/// per host, and each is reused by its host's requests.
#[test]
fn hosts_with_the_same_address_have_a_pool_each() {
    let echo = EchoServer::start("backend").expect("echo");
    let endpoint = "      - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: {{port:backend}}}}}";
    let cluster = format!("{}\n{endpoint}", static_cluster("backend", "backend", ""));
    let routes = r#"- match: {prefix: "/"}
  route: {cluster: backend}"#;
    let config = format!(
        "{ADMIN}{}",
        hcm(&vhost("v", "[\"*\"]", routes), "", &cluster)
    );
    let proxy = start(&config, &ports_for(&[&echo]));
    let mut c = RawConn::connect(proxy.addr("listener")).expect("connect");
    for _ in 0..4 {
        c.send(&Request::get("/", "example.com").to_bytes())
            .expect("send");
        let r = c.read_response().expect("response");
        assert_eq!(r.status, 200, "{}", r.body_str());
    }
    assert_eq!(echo.requests().len(), 4);
    assert_eq!(stat(&proxy, "cluster.backend.upstream_cx_total"), Some(2));
    assert_eq!(echo.connections(), 2);
}
