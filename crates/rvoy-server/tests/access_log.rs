//! Access log types and the filters that read them and dynamic metadata:
//! `%ACCESS_LOG_TYPE%` of the HTTP connection manager's, the TCP proxy's, the
//! listener's and the admin server's logs, `log_type_filter` and
//! `metadata_filter` on access logs and local reply mappers; header values
//! that are not UTF-8 written as their bytes.
//!
//! The scenario runs on rvoy and, when it is installed, on Envoy 1.40; the
//! log files and answers must be the same.

mod common;

use std::time::{Duration, Instant};

use rvoy_testkit::raw::{Request, send_once};
use rvoy_testkit::{Binary, Proxy, ProxyBuilder};

/// A file access logger writing `line` (a format string) to `{{tmp}}/<file>`.
fn logger(name: &str, file: &str, line: &str, filter: &str) -> String {
    let filter = if filter.is_empty() {
        String::new()
    } else {
        format!("filter: {filter}, ")
    };
    format!(
        "{{name: {name}, {filter}typed_config: {{\"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog, path: \"{{{{tmp}}}}/{file}\", log_format: {{text_format: \"{line} %ACCESS_LOG_TYPE%\\n\"}}}}}}"
    )
}

fn config() -> String {
    let meta = "{matcher: {filter: rvoy.test, path: [{key: k}], value: {string_match: {exact: v}}}";
    let hcm_logs = [
        logger(
            "end",
            "hcm.log",
            "end",
            "{log_type_filter: {types: [DownstreamEnd]}}",
        ),
        logger(
            "not-end",
            "hcm.log",
            "not-end",
            "{log_type_filter: {types: [DownstreamEnd], exclude: true}}",
        ),
        logger(
            "meta-default",
            "hcm.log",
            "meta-default",
            &format!("{{metadata_filter: {meta}}}}}"),
        ),
        logger(
            "meta-false",
            "hcm.log",
            "meta-false",
            &format!("{{metadata_filter: {meta}, match_if_key_not_found: false}}}}"),
        ),
        logger(
            "meta-empty",
            "hcm.log",
            "meta-empty",
            "{metadata_filter: {}}",
        ),
    ]
    .join(", ");
    format!(
        r#"admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {{{{port:admin}}}}}}}}
  access_log: [{admin}]
static_resources:
  listeners:
  - name: http
    address: {{socket_address: {{address: 127.0.0.1, port_value: {{{{port:listener}}}}}}}}
    access_log: [{listener}]
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: x
          access_log: [{hcm_logs}]
          local_reply_config:
            mappers:
            - filter: {{log_type_filter: {{types: [DownstreamEnd]}}}}
              status_code: 500
            - filter: {{log_type_filter: {{types: [NotSet]}}}}
              status_code: 418
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
          route_config:
            virtual_hosts:
            - name: v
              domains: ["*"]
              routes: [{{match: {{path: /ok}}, direct_response: {{status: 200}}}}]
  - name: tcp
    address: {{socket_address: {{address: 127.0.0.1, port_value: {{{{port:tcp}}}}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: t
          cluster: admin
          access_log: [{tcp}]
  clusters:
  - name: admin
    type: STATIC
    load_assignment:
      cluster_name: admin
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {{{{port:admin}}}}}}}}}}}}]}}]
"#,
        admin = logger("admin", "admin.log", "admin", ""),
        listener = logger("listener", "listener.log", "listener", ""),
        tcp = logger("tcp", "tcp.log", "tcp", ""),
    )
}

/// The answers to `/ok` and `/missing`, then each log file's lines (sorted).
fn observe(binary: Binary) -> Vec<String> {
    let proxy = ProxyBuilder::new(binary)
        .config(&config())
        .extra_args(&["--file-flush-interval-msec", "50"])
        .start()
        .expect("proxy starts");
    let mut seen = Vec::new();
    for (port, path) in [
        ("listener", "/ok"),
        ("listener", "/missing"),
        ("admin", "/ready"),
        ("tcp", "/ready"),
    ] {
        let req = Request::get(path, "example.com").to_bytes();
        let status = send_once(proxy.addr(port), &req).map_or(0, |r| r.status);
        seen.push(format!("{port} {path}: {status}"));
    }
    for file in ["hcm.log", "listener.log", "admin.log", "tcp.log"] {
        seen.push(format!("{file}: {}", wait_lines(&proxy, file)));
    }
    seen
}

/// The sorted lines of `file` once it stops growing (bounded).
fn wait_lines(proxy: &Proxy, file: &str) -> String {
    let path = proxy.tmp().join(file);
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut last = String::new();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = std::fs::read_to_string(&path).unwrap_or_default();
        if (now == last && !now.is_empty()) || Instant::now() >= deadline {
            let mut lines: Vec<&str> = now.lines().collect();
            lines.sort_unstable();
            return lines.join(" | ");
        }
        last = now;
    }
}

#[test]
fn access_log_types_and_filters_as_envoy() {
    let want = [
        // A direct response is a local reply: the mapper applies.
        "listener /ok: 418",
        "listener /missing: 418",
        "admin /ready: 200",
        "tcp /ready: 200",
        "hcm.log: end DownstreamEnd | end DownstreamEnd | meta-default DownstreamEnd | meta-default DownstreamEnd | meta-empty DownstreamEnd | meta-empty DownstreamEnd",
        "listener.log: listener NotSet | listener NotSet",
        "admin.log: admin DownstreamEnd | admin DownstreamEnd",
        "tcp.log: tcp TcpConnectionEnd",
    ];
    let rvoy = observe(Binary::Rvoy(env!("CARGO_BIN_EXE_rvoy").into()));
    assert_eq!(rvoy, want, "rvoy");
    match Binary::envoy() {
        Some(envoy) => assert_eq!(observe(envoy), want, "Envoy disagrees with the expectation"),
        None => eprintln!("differential part skipped: Envoy is not installed"),
    }
}

/// A header value that is not UTF-8 (obs-text) is logged as the bytes that
/// came, as Envoy writes it, not replaced.
fn log_bytes_of_obs_text(binary: Binary) -> Vec<u8> {
    let access_log = r#"access_log:
- name: ua
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
    path: "{{tmp}}/ua.log"
    log_format: {text_format: "%REQ(USER-AGENT)%\n"}"#;
    let config = common::hcm(
        &common::vhost(
            "v",
            "[\"*\"]",
            "- {match: {prefix: /}, direct_response: {status: 200}}",
        ),
        access_log,
        "",
    );
    let proxy = ProxyBuilder::new(binary)
        .config(&config)
        .extra_args(&["--file-flush-interval-msec", "50"])
        .start()
        .expect("proxy starts");
    let req = b"GET / HTTP/1.1\r\nhost: x\r\nuser-agent: caf\xe9-\xff\r\n\r\n";
    let status = send_once(proxy.addr("listener"), req).map_or(0, |r| r.status);
    assert_eq!(status, 200);
    let path = proxy.tmp().join("ua.log");
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let bytes = std::fs::read(&path).unwrap_or_default();
        if bytes.ends_with(b"\n") || Instant::now() >= deadline {
            return bytes;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn header_values_are_logged_as_their_bytes() {
    let want = b"caf\xe9-\xff\n".to_vec();
    let rvoy = log_bytes_of_obs_text(Binary::Rvoy(env!("CARGO_BIN_EXE_rvoy").into()));
    assert_eq!(rvoy, want, "rvoy");
    match Binary::envoy() {
        Some(envoy) => assert_eq!(log_bytes_of_obs_text(envoy), want, "Envoy"),
        None => eprintln!("differential part skipped: Envoy is not installed"),
    }
}
