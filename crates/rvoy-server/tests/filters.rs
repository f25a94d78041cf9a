//! The buffer, health check, fault and local rate limit HTTP filters end to end: the real
//! rvoy binary on loopback in front of echo upstreams, byte-exact HTTP/1 and hyper h2c
//! clients, stats read from the admin, access log flags from stdout; config errors from
//! `--mode validate`; and differential runs against real Envoy (skipped, with a message,
//! when Envoy is not installed).

mod common;

use std::time::{Duration, Instant};

use common::{T, binary, indent, is_envoy, ports_for, start, stat};
use rvoy_testkit::echo::pattern_bytes;
use rvoy_testkit::raw::{RawConn, RawResponse, Request, send_once};
use rvoy_testkit::{DiffRequest, Differential, EchoServer, HyperClient, Proxy, ProxyBuilder};

/// The access log line every request writes on stdout.
const LOG_FORMAT: &str =
    "LOG %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %REQ(:PATH)%\\n";

/// One listener `{{port:listener}}` (stat prefix `ingress`) with `filters` (YAML list of
/// HTTP filters before the router) and `routes` (YAML list, before a catch-all route to
/// `backend`), cluster `backend` at `{{port:backend}}`, an admin at `{{port:admin}}`,
/// and an access log on stdout (health checks excluded when `log_health_checks` is false).
fn config_with(filters: &str, routes: &str, log_health_checks: bool) -> String {
    let log_filter = if log_health_checks {
        ""
    } else {
        "\n            filter: {not_health_check_filter: {}}"
    };
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
          access_log:
          - name: envoy.access_loggers.stdout{log_filter}
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
              log_format: {{text_format_source: {{inline_string: "{LOG_FORMAT}"}}}}
          http_filters:
          {filters}
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
          route_config:
            virtual_hosts:
            - name: v
              domains: ["*"]
              routes:{routes}
              - match: {{prefix: "/"}}
                route: {{cluster: backend}}
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
        routes = if routes.trim().is_empty() || routes.trim() == "[]" {
            String::new()
        } else {
            format!("\n              {}", indent(routes, 14))
        },
    )
}

fn config(filters: &str, routes: &str) -> String {
    config_with(filters, routes, true)
}

fn filter(name: &str, ty: &str, body: &str) -> String {
    format!(
        "- name: {name}\n  typed_config:\n    \"@type\": type.googleapis.com/{ty}\n    {}",
        indent(body, 4)
    )
}

const BUFFER: &str = "envoy.extensions.filters.http.buffer.v3.Buffer";
const BUFFER_PER_ROUTE: &str = "envoy.extensions.filters.http.buffer.v3.BufferPerRoute";
const HEALTH_CHECK: &str = "envoy.extensions.filters.http.health_check.v3.HealthCheck";
const FAULT: &str = "envoy.extensions.filters.http.fault.v3.HTTPFault";
const LOCAL_RL: &str = "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";

/// A route for `prefix` to `backend` with a `typed_per_filter_config` entry for
/// `filter_name` of type `ty` (YAML mapping body).
fn route_with(prefix: &str, filter_name: &str, ty: &str, body: &str) -> String {
    format!(
        "- match: {{prefix: \"{prefix}\"}}\n  route: {{cluster: backend}}\n  typed_per_filter_config:\n    {filter_name}:\n      \"@type\": type.googleapis.com/{ty}\n      {}",
        indent(body, 6)
    )
}

fn send(proxy: &Proxy, req: &Request) -> RawResponse {
    send_once(proxy.addr("listener"), &req.to_bytes()).expect("a response")
}

fn admin(proxy: &Proxy, method: &str, path: &str) -> RawResponse {
    let req = Request::new(method, path)
        .header("Host", "admin")
        .header("Content-Length", "0");
    send_once(proxy.addr("admin"), &req.to_bytes()).expect("an admin response")
}

/// The access log lines on stdout, after waiting (bounded) for at least `n`.
fn log_lines(proxy: &Proxy, n: usize) -> Vec<String> {
    let _ = proxy.wait_stdout_lines("LOG ", n, T);
    proxy
        .stdout()
        .lines()
        .filter(|l| l.starts_with("LOG "))
        .map(str::to_owned)
        .collect()
}

fn post(path: &str, body: &[u8]) -> Request {
    Request::new("POST", path)
        .header("Host", "example.com")
        .body(body)
}

// ---------------------------------------------------------------------------------------
// buffer

fn buffer_proxy(echo: &EchoServer) -> Proxy {
    let routes = [
        route_with(
            "/nobuf",
            "envoy.filters.http.buffer",
            BUFFER_PER_ROUTE,
            "disabled: true",
        ),
        route_with(
            "/big",
            "envoy.filters.http.buffer",
            BUFFER_PER_ROUTE,
            "buffer: {max_request_bytes: 8192}",
        ),
    ]
    .join("\n");
    let filters = filter(
        "envoy.filters.http.buffer",
        BUFFER,
        "max_request_bytes: 1024",
    );
    start(&config(&filters, &routes), &ports_for(&[echo]))
}

#[test]
fn buffer_forwards_small_and_chunked_bodies_with_a_content_length() {
    let echo = EchoServer::start("backend").expect("echo");
    let proxy = buffer_proxy(&echo);
    let r = send(&proxy, &post("/upload", b"small body"));
    assert_eq!(r.status, 200, "{}", r.body_str());
    let up = r.echo().expect("echoed");
    assert_eq!(up.body_len, 10);
    assert_eq!(up.header("content-length"), Some("10"));

    let body = pattern_bytes(900);
    let chunks: Vec<&[u8]> = body.chunks(100).collect();
    let r = send(
        &proxy,
        &Request::new("POST", "/upload-chunked")
            .header("Host", "example.com")
            .chunked(&chunks),
    );
    assert_eq!(r.status, 200, "{}", r.body_str());
    let up = r.echo().expect("echoed");
    assert_eq!(up.body_len, 900);
    assert!(!up.chunked, "forwarded with a length");
    assert_eq!(up.header("content-length"), Some("900"));
    assert_eq!(up.header("transfer-encoding"), None);

    // An empty chunked body gets `content-length: 0`.
    let r = send(
        &proxy,
        &Request::new("POST", "/empty")
            .header("Host", "example.com")
            .chunked(&[]),
    );
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert_eq!(
        r.echo().expect("echoed").header("content-length"),
        Some("0")
    );
}

#[test]
fn buffer_answers_413_and_closes_over_the_limit() {
    let echo = EchoServer::start("backend").expect("echo");
    let proxy = buffer_proxy(&echo);
    let mut conn = RawConn::connect(proxy.addr("listener")).expect("connect");
    conn.send(&post("/too-big", &pattern_bytes(4096)).to_bytes())
        .expect("send");
    let r = conn.read_response().expect("a response");
    assert_eq!(r.status, 413);
    assert_eq!(r.reason, "Payload Too Large");
    assert_eq!(r.body_str(), "Payload Too Large");
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.header("connection"), Some("close"));
    assert!(conn.is_closed(Duration::from_secs(3)), "connection closed");
    assert!(echo.requests().is_empty(), "nothing went upstream");
    assert_eq!(
        stat(&proxy, "http.ingress.downstream_rq_too_large"),
        Some(1)
    );
    let logs = log_lines(&proxy, 1);
    assert!(
        logs.iter()
            .any(|l| l == "LOG 413 - request_payload_too_large /too-big"),
        "{logs:?}"
    );
}

#[test]
fn buffer_per_route_disable_and_override() {
    let echo = EchoServer::start("backend").expect("echo");
    let proxy = buffer_proxy(&echo);
    // Disabled: the body streams (and keeps its framing).
    let body = pattern_bytes(4096);
    let chunks: Vec<&[u8]> = body.chunks(1000).collect();
    let r = send(
        &proxy,
        &Request::new("POST", "/nobuf")
            .header("Host", "example.com")
            .chunked(&chunks),
    );
    assert_eq!(r.status, 200, "{}", r.body_str());
    let up = r.echo().expect("echoed");
    assert_eq!(up.body_len, 4096);
    assert!(up.chunked, "not buffered: still chunked");
    // Overridden to 8 KiB.
    let r = send(&proxy, &post("/big", &pattern_bytes(4096)));
    assert_eq!(r.status, 200, "{}", r.body_str());
    let r = send(&proxy, &post("/big", &pattern_bytes(9000)));
    assert_eq!(r.status, 413);
}

#[tokio::test]
async fn buffer_h2c_limits_bodies_like_envoy() {
    let echo = EchoServer::start("backend").expect("echo");
    let proxy = buffer_proxy(&echo);
    let mut c = HyperClient::h2c(proxy.addr("listener")).await.expect("h2c");
    c.set_timeout(T);
    // hyper sends a small full body in one DATA frame that ends the stream:
    // Envoy does not buffer it, so it passes whatever its size.
    let req = c
        .builder("POST", "/h2", "example.com")
        .body(pattern_bytes(2000).into())
        .expect("request");
    let r = c.send(req).await.expect("response");
    assert_eq!(r.status, 200, "{}", r.body_str());
    let up = r.echo().expect("echoed");
    assert_eq!(up.body_len, 2000);
    assert_eq!(up.header("content-length"), Some("2000"));
}

// ---------------------------------------------------------------------------------------
// health check

fn health_check(body: &str) -> String {
    filter("envoy.filters.http.health_check", HEALTH_CHECK, body)
}

#[test]
fn health_check_answers_locally_and_follows_the_admin_flag() {
    let echo = EchoServer::start("backend").expect("echo");
    let filters = health_check(
        "pass_through_mode: false\nheaders: [{name: \":path\", string_match: {exact: \"/healthz\"}}]",
    );
    let proxy = start(&config_with(&filters, "[]", false), &ports_for(&[&echo]));
    let hc = Request::get("/healthz", "example.com");

    let r = send(&proxy, &hc);
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "");
    assert_eq!(r.header("x-envoy-upstream-healthchecked-cluster"), Some(""));
    assert_eq!(r.header("x-envoy-immediate-health-check-fail"), None);
    assert!(echo.requests().is_empty(), "answered locally");

    assert_eq!(admin(&proxy, "POST", "/healthcheck/fail").status, 200);
    let r = send(&proxy, &hc);
    assert_eq!(r.status, 503);
    assert_eq!(r.reason, "Service Unavailable");
    assert_eq!(
        r.header("x-envoy-immediate-health-check-fail"),
        Some("true")
    );
    assert_eq!(r.header("x-envoy-upstream-healthchecked-cluster"), Some(""));
    assert_eq!(r.header("connection"), Some("close"));
    // Other traffic still flows, told the server is failing and drain-closed.
    let r = send(&proxy, &Request::get("/regular", "example.com"));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("x-envoy-immediate-health-check-fail"),
        Some("true")
    );
    assert_eq!(r.header("connection"), Some("close"));

    assert_eq!(admin(&proxy, "POST", "/healthcheck/ok").status, 200);
    let r = send(&proxy, &hc);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), None);

    assert_eq!(
        stat(&proxy, "http.ingress.health_check.request_total"),
        Some(3)
    );
    assert_eq!(stat(&proxy, "http.ingress.health_check.ok"), Some(2));
    assert_eq!(stat(&proxy, "http.ingress.health_check.failed"), Some(1));
    assert_eq!(stat(&proxy, "http.ingress.tracing.health_check"), Some(3));
    assert_eq!(
        stat(&proxy, "http.ingress.downstream_cx_drain_close"),
        Some(2)
    );
    // Health checks are marked as such: the not_health_check filter drops them.
    let logs = log_lines(&proxy, 1);
    assert_eq!(logs, vec!["LOG 200 - via_upstream /regular".to_owned()]);
}

#[test]
fn health_check_pass_through_with_cache() {
    let echo = EchoServer::start("backend").expect("echo");
    let filters = health_check(
        "pass_through_mode: true\ncache_time: 60s\nheaders: [{name: \":path\", string_match: {exact: \"/healthz\"}}]",
    );
    let proxy = start(&config(&filters, "[]"), &ports_for(&[&echo]));
    let hc =
        Request::get("/healthz", "example.com").header("x-echo-set-header", "x-envoy-degraded=1");
    // The first goes upstream, and its answer is cached.
    let r = send(&proxy, &hc);
    assert_eq!(r.status, 200);
    assert!(r.echo().is_some(), "went upstream");
    assert_eq!(r.header("x-envoy-upstream-healthchecked-cluster"), Some(""));
    let r = send(&proxy, &hc);
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "");
    assert_eq!(r.header("x-envoy-degraded"), Some(""), "cached as degraded");
    assert_eq!(echo.requests().len(), 1);
    // A failing server answers 503 itself, and that answer is cached in turn.
    admin(&proxy, "POST", "/healthcheck/fail");
    assert_eq!(send(&proxy, &hc).status, 503);
    admin(&proxy, "POST", "/healthcheck/ok");
    let r = send(&proxy, &hc);
    assert_eq!(r.status, 503);
    assert_eq!(echo.requests().len(), 1);
    assert_eq!(
        stat(&proxy, "http.ingress.health_check.cached_response"),
        Some(2)
    );
    assert_eq!(stat(&proxy, "http.ingress.health_check.degraded"), Some(1));
    assert_eq!(stat(&proxy, "http.ingress.health_check.failed"), Some(2));
    let logs = log_lines(&proxy, 4);
    assert_eq!(
        logs,
        vec![
            "LOG 200 - via_upstream /healthz",
            "LOG 200 - health_check_cached /healthz",
            "LOG 503 LH health_check_failed /healthz",
            "LOG 503 LH health_check_cached /healthz",
        ]
    );
}

#[test]
fn health_check_cluster_min_healthy_percentages() {
    let echo = EchoServer::start("backend").expect("echo");
    let filters = health_check(
        "pass_through_mode: false\nheaders: [{name: \":path\", string_match: {exact: \"/healthz\"}}]\ncluster_min_healthy_percentages: {backend: {value: 100}}",
    );
    let proxy = start(&config(&filters, "[]"), &ports_for(&[&echo]));
    assert_eq!(send(&proxy, &Request::get("/healthz", "x")).status, 200);
    let filters = health_check(
        "pass_through_mode: false\nheaders: [{name: \":path\", string_match: {exact: \"/healthz\"}}]\ncluster_min_healthy_percentages: {backend: {value: 100}, nope: {value: 1}}",
    );
    let proxy = start(&config(&filters, "[]"), &ports_for(&[&echo]));
    assert_eq!(send(&proxy, &Request::get("/healthz", "x")).status, 503);
    assert_eq!(
        stat(&proxy, "http.ingress.health_check.failed_cluster_not_found"),
        Some(1)
    );
    let logs = log_lines(&proxy, 1);
    assert_eq!(
        logs,
        vec!["LOG 503 LH health_check_failed_no_cluster_found /healthz"]
    );
}

// ---------------------------------------------------------------------------------------
// fault

fn fault_proxy(echo: &EchoServer) -> Proxy {
    let routes = [
        route_with(
            "/abort",
            "envoy.filters.http.fault",
            FAULT,
            "abort: {http_status: 503, percentage: {numerator: 100, denominator: HUNDRED}}",
        ),
        route_with(
            "/delay",
            "envoy.filters.http.fault",
            FAULT,
            "delay: {fixed_delay: 0.3s, percentage: {numerator: 100}}",
        ),
        route_with(
            "/grpc",
            "envoy.filters.http.fault",
            FAULT,
            "abort: {grpc_status: 5, percentage: {numerator: 1000000, denominator: MILLION}}",
        ),
        route_with(
            "/both",
            "envoy.filters.http.fault",
            FAULT,
            "max_active_faults: 1\nabort: {http_status: 418, response_body: teapot, percentage: {numerator: 100}}\ndelay: {fixed_delay: 0.5s, percentage: {numerator: 100}}",
        ),
        route_with(
            "/throttle",
            "envoy.filters.http.fault",
            FAULT,
            "response_rate_limit: {fixed_limit: {limit_kbps: 16}, percentage: {numerator: 100}}",
        ),
        route_with(
            "/other-cluster",
            "envoy.filters.http.fault",
            FAULT,
            "upstream_cluster: elsewhere\nabort: {http_status: 503, percentage: {numerator: 100}}",
        ),
        route_with(
            "/nodes",
            "envoy.filters.http.fault",
            FAULT,
            "downstream_nodes: [n1]\nheaders: [{name: x-fault, present_match: true}]\nabort: {http_status: 500, percentage: {numerator: 100}}",
        ),
    ]
    .join("\n");
    let filters = filter(
        "envoy.filters.http.fault",
        FAULT,
        "abort: {header_abort: {}, percentage: {numerator: 100, denominator: HUNDRED}}\ndelay: {header_delay: {}, percentage: {numerator: 100}}",
    );
    start(&config(&filters, &routes), &ports_for(&[echo]))
}

#[test]
fn fault_aborts_and_delays() {
    let echo = EchoServer::start("backend").expect("echo");
    let proxy = fault_proxy(&echo);
    let r = send(&proxy, &Request::get("/abort/x", "example.com"));
    assert_eq!(r.status, 503);
    assert_eq!(r.body_str(), "fault filter abort");
    assert_eq!(r.header("content-type"), Some("text/plain"));

    let started = Instant::now();
    let r = send(&proxy, &Request::get("/delay/x", "example.com"));
    assert_eq!(r.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(290), "delayed");

    let r = send(
        &proxy,
        &Request::get("/other", "example.com").header("x-envoy-fault-abort-request", "429"),
    );
    assert_eq!(r.status, 429);
    assert_eq!(r.body_str(), "fault filter abort");
    // Out of range, or a zero percentage: no abort.
    let r = send(
        &proxy,
        &Request::get("/other", "example.com").header("x-envoy-fault-abort-request", "700"),
    );
    assert_eq!(r.status, 200);
    let r = send(
        &proxy,
        &Request::get("/other", "example.com")
            .header("x-envoy-fault-abort-request", "404")
            .header("x-envoy-fault-abort-request-percentage", "0"),
    );
    assert_eq!(r.status, 200);
    let started = Instant::now();
    let r = send(
        &proxy,
        &Request::get("/other", "example.com").header("x-envoy-fault-delay-request", "200"),
    );
    assert_eq!(r.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(190), "delayed");
    // Per downstream cluster stats.
    let r = send(
        &proxy,
        &Request::get("/other", "example.com")
            .header("x-envoy-fault-abort-request", "404")
            .header("x-envoy-downstream-service-cluster", "web"),
    );
    assert_eq!(r.status, 404);
    // Not this route's cluster; missing node or header: no fault.
    assert_eq!(
        send(&proxy, &Request::get("/other-cluster", "x")).status,
        200
    );
    assert_eq!(
        send(&proxy, &Request::get("/nodes", "x").header("x-fault", "1")).status,
        200
    );
    assert_eq!(
        send(
            &proxy,
            &Request::get("/nodes", "x").header("x-envoy-downstream-service-node", "n1")
        )
        .status,
        200
    );
    assert_eq!(
        send(
            &proxy,
            &Request::get("/nodes", "x")
                .header("x-envoy-downstream-service-node", "n1")
                .header("x-fault", "1")
        )
        .status,
        500
    );

    assert_eq!(stat(&proxy, "http.ingress.fault.aborts_injected"), Some(4));
    assert_eq!(stat(&proxy, "http.ingress.fault.delays_injected"), Some(2));
    assert_eq!(
        stat(&proxy, "http.ingress.fault.web.aborts_injected"),
        Some(1)
    );
    assert_eq!(stat(&proxy, "http.ingress.fault.active_faults"), Some(0));
    let logs = log_lines(&proxy, 11);
    assert_eq!(logs[0], "LOG 503 FI fault_filter_abort /abort/x");
    assert_eq!(logs[1], "LOG 200 DI via_upstream /delay/x");
}

#[tokio::test]
async fn fault_grpc_abort_and_max_active_faults() {
    let echo = EchoServer::start("backend").expect("echo");
    let proxy = fault_proxy(&echo);
    let mut c = HyperClient::h2c(proxy.addr("listener")).await.expect("h2c");
    c.set_timeout(T);
    let req = c
        .builder("POST", "/grpc", "example.com")
        .header("content-type", "application/grpc")
        .body(Default::default())
        .expect("request");
    let r = c.send(req).await.expect("response");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("grpc-status"), Some("5"));
    assert_eq!(r.header("grpc-message"), Some("fault filter abort"));
    // Not a gRPC client: 200 with the text body.
    let r = c.get("/grpc", "example.com").await.expect("response");
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "fault filter abort");

    // One fault at a time on /both: the second request runs without one.
    let addr = proxy.addr("listener");
    let first = tokio::task::spawn_blocking(move || {
        send_once(addr, &Request::get("/both", "x").to_bytes()).expect("response")
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let second = tokio::task::spawn_blocking(move || {
        send_once(addr, &Request::get("/both", "x").to_bytes()).expect("response")
    });
    let (first, second) = (first.await.expect("joined"), second.await.expect("joined"));
    assert_eq!(first.status, 418);
    assert_eq!(first.body_str(), "teapot");
    assert_eq!(second.status, 200);
    assert_eq!(stat(&proxy, "http.ingress.fault.faults_overflow"), Some(2));
}

#[test]
fn fault_response_rate_limit_paces_the_body() {
    let echo = EchoServer::start("backend").expect("echo");
    let proxy = fault_proxy(&echo);
    // 16 KiB/s: the first second's worth (16 KiB) at once, 8 KiB more in ~0.5 s.
    let started = Instant::now();
    let r = send(
        &proxy,
        &Request::get("/throttle", "example.com").header("x-echo-response-size", "24576"),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 24576);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(400), "paced: {took:?}");
    assert!(took < Duration::from_secs(3), "not too slow: {took:?}");
    assert_eq!(
        stat(&proxy, "http.ingress.fault.response_rl_injected"),
        Some(1)
    );
}

// ---------------------------------------------------------------------------------------
// local rate limit

fn local_rl(body: &str) -> String {
    filter("envoy.filters.http.local_ratelimit", LOCAL_RL, body)
}

const ENABLED_ENFORCED: &str = "filter_enabled: {runtime_key: e, default_value: {numerator: 100, denominator: HUNDRED}}\nfilter_enforced: {runtime_key: f, default_value: {numerator: 100, denominator: HUNDRED}}";

#[tokio::test]
async fn local_ratelimit_limits_across_connections_and_protocols() {
    let echo = EchoServer::start("backend").expect("echo");
    let filters = local_rl(&format!(
        "stat_prefix: rl\ntoken_bucket: {{max_tokens: 2, tokens_per_fill: 1, fill_interval: 3600s}}\n{ENABLED_ENFORCED}\nenable_x_ratelimit_headers: DRAFT_VERSION_03\nresponse_headers_to_add:\n- append_action: OVERWRITE_IF_EXISTS_OR_ADD\n  header: {{key: x-local-rate-limit, value: \"true\"}}"
    ));
    let proxy = start(&config(&filters, "[]"), &ports_for(&[&echo]));
    let r = send(&proxy, &Request::get("/a", "x"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-ratelimit-limit"), Some("2"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("1"));
    assert_eq!(r.header("x-ratelimit-reset"), Some("0"));
    assert_eq!(r.header("x-local-rate-limit"), None);
    let r = send(&proxy, &Request::get("/a", "x"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(r.header("x-ratelimit-reset"), Some("3600"));
    let r = send(&proxy, &Request::get("/a", "x"));
    assert_eq!(r.status, 429);
    assert_eq!(r.reason, "Too Many Requests");
    assert_eq!(r.body_str(), "local_rate_limited");
    assert_eq!(r.header("x-local-rate-limit"), Some("true"));
    assert_eq!(
        r.header("x-envoy-ratelimited"),
        None,
        "Envoy's local limiter does not add it"
    );
    let mut c = HyperClient::h2c(proxy.addr("listener")).await.expect("h2c");
    c.set_timeout(T);
    let r = c.get("/h2", "x").await.expect("response");
    assert_eq!(r.status, 429);
    assert_eq!(r.body_str(), "local_rate_limited");
    // gRPC clients get UNAVAILABLE.
    let req = c
        .builder("POST", "/g", "x")
        .header("content-type", "application/grpc")
        .body(Default::default())
        .expect("request");
    let r = c.send(req).await.expect("response");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("grpc-status"), Some("14"));
    assert_eq!(r.header("x-local-rate-limit"), Some("true"));
    for (name, value) in [
        ("enabled", 5),
        ("enforced", 3),
        ("ok", 2),
        ("rate_limited", 3),
    ] {
        assert_eq!(
            stat(&proxy, &format!("rl.http_local_rate_limit.{name}")),
            Some(value),
            "{name}"
        );
    }
    let logs = log_lines(&proxy, 5);
    assert_eq!(logs[2], "LOG 429 RL local_rate_limited /a");
}

#[test]
fn local_ratelimit_per_route_per_connection_and_not_enforced() {
    let echo = EchoServer::start("backend").expect("echo");
    let routes = [
        route_with(
            "/shadow",
            "envoy.filters.http.local_ratelimit",
            LOCAL_RL,
            "stat_prefix: shadow\ntoken_bucket: {max_tokens: 1, fill_interval: 100s}\nfilter_enabled: {runtime_key: e, default_value: {numerator: 100}}\nrequest_headers_to_add_when_not_enforced: [{header: {key: x-not-enforced, value: \"%REQ(x-who)%\"}}]",
        ),
        route_with(
            "/conn",
            "envoy.filters.http.local_ratelimit",
            LOCAL_RL,
            &format!(
                "stat_prefix: conn\ntoken_bucket: {{max_tokens: 1, fill_interval: 100s}}\n{ENABLED_ENFORCED}\nlocal_rate_limit_per_downstream_connection: true\nenable_retry_after_header: true\nstatus: {{code: 503}}"
            ),
        ),
        route_with(
            "/retry",
            "envoy.filters.http.local_ratelimit",
            LOCAL_RL,
            &format!(
                "stat_prefix: retry\ntoken_bucket: {{max_tokens: 1, fill_interval: 100s}}\n{ENABLED_ENFORCED}\nenable_retry_after_header: true"
            ),
        ),
    ]
    .join("\n");
    // The filter itself is disabled (no filter_enabled): only the routes limit.
    let filters =
        local_rl("stat_prefix: global\ntoken_bucket: {max_tokens: 1, fill_interval: 100s}");
    let proxy = start(&config(&filters, &routes), &ports_for(&[&echo]));
    for _ in 0..3 {
        assert_eq!(send(&proxy, &Request::get("/free", "x")).status, 200);
    }
    assert_eq!(
        stat(&proxy, "global.http_local_rate_limit.enabled"),
        Some(0)
    );

    assert_eq!(send(&proxy, &Request::get("/shadow", "x")).status, 200);
    let r = send(&proxy, &Request::get("/shadow", "x").header("x-who", "me"));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.echo().expect("echoed").header("x-not-enforced"),
        Some("me")
    );
    assert_eq!(
        stat(&proxy, "shadow.http_local_rate_limit.rate_limited"),
        Some(1)
    );
    assert_eq!(
        stat(&proxy, "shadow.http_local_rate_limit.enforced"),
        Some(0)
    );

    // One token per connection.
    for _ in 0..2 {
        let mut conn = RawConn::connect(proxy.addr("listener")).expect("connect");
        let r = conn.request(&Request::get("/conn", "x")).expect("response");
        assert_eq!(r.status, 200);
        let r = conn.request(&Request::get("/conn", "x")).expect("response");
        assert_eq!(r.status, 503, "status override");
        assert_eq!(r.header("retry-after"), None, "only on 429");
    }
    assert_eq!(send(&proxy, &Request::get("/retry", "x")).status, 200);
    let r = send(&proxy, &Request::get("/retry", "x"));
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("100"));
}

// ---------------------------------------------------------------------------------------
// config errors

/// `--mode validate` on a config with `filters`/`routes`: (exit code, stderr).
fn validate(filters: &str, routes: &str) -> (Option<i32>, String) {
    let out = ProxyBuilder::new(binary())
        .config(&config(filters, routes))
        .args(&["--mode", "validate", "-c", "{{config}}"])
        .run_to_exit(T)
        .expect("runs");
    (out.code, out.stderr)
}

#[test]
fn config_errors_as_envoy() {
    for (filters, routes, needle) in [
        (
            health_check("pass_through_mode: false\ncache_time: 1s"),
            "[]".to_owned(),
            "cache_time_ms must not be set when path_through_mode is disabled",
        ),
        (
            local_rl("stat_prefix: a\ntoken_bucket: {max_tokens: 1, fill_interval: 0.01s}"),
            "[]".to_owned(),
            "local rate limit token bucket fill timer must be >= 50ms",
        ),
        (
            local_rl("stat_prefix: a"),
            route_with(
                "/r",
                "envoy.filters.http.local_ratelimit",
                LOCAL_RL,
                "stat_prefix: b",
            ),
            "local rate limit token bucket must be set for per filter configs",
        ),
        (
            local_rl(
                "stat_prefix: a\ndescriptors:\n- {entries: [{key: a, value: b}], token_bucket: {max_tokens: 1, fill_interval: 1s}}\n- {entries: [{key: a, value: b}], token_bucket: {max_tokens: 2, fill_interval: 1s}}",
            ),
            "[]".to_owned(),
            "duplicate descriptor in the local rate descriptor: a=b",
        ),
        (
            filter("envoy.filters.http.buffer", BUFFER, "max_request_bytes: 0"),
            "[]".to_owned(),
            "max_request_bytes",
        ),
    ] {
        let (code, stderr) = validate(&filters, &routes);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.contains(needle), "{needle}: {stderr}");
    }
}

#[test]
fn unsupported_fields_are_rejected_with_their_path() {
    if is_envoy() {
        eprintln!("rvoy-only: Envoy accepts these fields");
        return;
    }
    for (filters, path) in [
        (
            local_rl(
                "stat_prefix: a\nrate_limits: [{actions: [{generic_key: {descriptor_value: x}}]}]",
            ),
            "rate_limits",
        ),
        (
            local_rl("stat_prefix: a\nlocal_cluster_rate_limit: {}"),
            "local_cluster_rate_limit",
        ),
        (
            filter(
                "envoy.filters.http.fault",
                FAULT,
                "filter_metadata: {a: b}\ndelay: {fixed_delay: 1s}",
            ),
            "filter_metadata",
        ),
    ] {
        let (code, stderr) = validate(&filters, "[]");
        assert_eq!(code, Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!("typed_config.{path}"))
                && stderr.contains("not supported by rvoy"),
            "{path}: {stderr}"
        );
    }
    // Envoy would read this runtime key; rvoy reads no runtime in the data plane.
    let filters = filter(
        "envoy.filters.http.fault",
        FAULT,
        "abort: {http_status: 503, percentage: {numerator: 0}}",
    );
    let cfg = format!(
        "{}layered_runtime:\n  layers:\n  - name: static\n    static_layer: {{fault.http.abort.abort_percent: 100}}\n",
        config(&filters, "[]")
    );
    let out = ProxyBuilder::new(binary())
        .config(&cfg)
        .args(&["--mode", "validate", "-c", "{{config}}"])
        .run_to_exit(T)
        .expect("runs");
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("fault.http.abort.abort_percent")
            && out.stderr.contains("not supported by rvoy"),
        "{}",
        out.stderr
    );
}

// ---------------------------------------------------------------------------------------
// differential

fn diff(config: &str, requests: Vec<DiffRequest>) {
    let mut d = Differential::new(env!("CARGO_BIN_EXE_rvoy"), config).upstream("backend");
    for r in requests {
        d = d.request(r);
    }
    match d.run().expect("differential run") {
        None => eprintln!("skipped: Envoy is not installed"),
        Some(outcome) => assert!(outcome.is_same(), "{outcome}"),
    }
}

fn admin_request(label: &str, method: &str, path: &str) -> DiffRequest {
    DiffRequest::new(
        label,
        &Request::new(method, path)
            .header("Host", "admin")
            .header("Content-Length", "0"),
    )
    .on("admin")
}

#[test]
fn differential_buffer_and_health_check() {
    let filters = [
        health_check(
            "pass_through_mode: false\nheaders: [{name: \":path\", string_match: {exact: \"/healthz\"}}]",
        ),
        filter("envoy.filters.http.buffer", BUFFER, "max_request_bytes: 1024"),
    ]
    .join("\n");
    let body = pattern_bytes(900);
    let chunks: Vec<&[u8]> = body.chunks(100).collect();
    diff(
        &config(&filters, "[]"),
        vec![
            DiffRequest::new("small body", &post("/upload", b"small body")),
            DiffRequest::new(
                "chunked body",
                &Request::new("POST", "/chunked")
                    .header("Host", "example.com")
                    .chunked(&chunks),
            ),
            DiffRequest::new("too big", &post("/big", &pattern_bytes(4096))).check_close(),
            DiffRequest::new("health check", &Request::get("/healthz", "example.com")),
            admin_request("fail", "POST", "/healthcheck/fail"),
            // Envoy drain-closes these (`connection: close`) but leaves the connection
            // open until its drain timeout: not compared.
            DiffRequest::new("failing", &Request::get("/healthz", "example.com")),
            DiffRequest::new("regular", &Request::get("/regular", "example.com")),
            admin_request("ok", "POST", "/healthcheck/ok"),
            DiffRequest::new("passing", &Request::get("/healthz", "example.com")),
        ],
    );
}

#[test]
fn differential_fault_and_local_ratelimit() {
    let filters = [
        filter(
            "envoy.filters.http.fault",
            FAULT,
            "abort: {header_abort: {}, percentage: {numerator: 100}}",
        ),
        local_rl(&format!(
            "stat_prefix: rl\ntoken_bucket: {{max_tokens: 3, tokens_per_fill: 1, fill_interval: 3600s}}\n{ENABLED_ENFORCED}\nenable_x_ratelimit_headers: DRAFT_VERSION_03\nresponse_headers_to_add: [{{header: {{key: x-rl, value: \"%RESPONSE_CODE%\"}}}}]"
        )),
    ]
    .join("\n");
    let routes = route_with(
        "/abort",
        "envoy.filters.http.fault",
        FAULT,
        "abort: {http_status: 503, percentage: {numerator: 100}}",
    );
    diff(
        &config(&filters, &routes),
        vec![
            DiffRequest::new("route abort", &Request::get("/abort/x", "example.com")),
            DiffRequest::new(
                "header abort",
                &Request::get("/other", "example.com").header("x-envoy-fault-abort-request", "429"),
            ),
            DiffRequest::new("no fault", &Request::get("/other", "example.com")),
            DiffRequest::new("second", &Request::get("/other", "example.com")),
            DiffRequest::new("third", &Request::get("/other", "example.com")),
            DiffRequest::new("limited", &Request::get("/other", "example.com")),
            DiffRequest::h2c("limited h2c", "GET", "/h2", "example.com", &[]),
            DiffRequest::h2c(
                "limited grpc",
                "POST",
                "/g",
                "example.com",
                &[("content-type", "application/grpc")],
            ),
        ],
    );
}
