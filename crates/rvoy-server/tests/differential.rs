//! Differential tests: the same config and the same byte-exact requests against real Envoy
//! (the oracle) and rvoy; what a user sees (status, headers, body, what the upstream
//! received, connection close, access log lines) must be equal after normalization.
//! Skipped, with a message, only when Envoy is not installed.

mod common;

use std::time::Duration;

use common::{hcm, static_cluster, vhost};
use rvoy_testkit::diff::{DiffRequest, Differential};
use rvoy_testkit::echo::pattern_bytes;
use rvoy_testkit::raw::Request;

const ALL: &str = "[\"*\"]";

fn diff(config: &str) -> Differential {
    Differential::new(env!("CARGO_BIN_EXE_rvoy"), config)
}

fn check(d: Differential) {
    match d.run().expect("differential run") {
        None => println!("envoy not installed, skipping"),
        Some(outcome) => {
            if std::env::var_os("RVOY_DIFF_DUMP").is_some() {
                println!("envoy saw:\n{}", outcome.envoy);
            }
            assert!(outcome.is_same(), "{outcome}");
        }
    }
}

fn get(label: &str, path: &str) -> DiffRequest {
    DiffRequest::new(label, &Request::get(path, "example.com"))
}

fn req(label: &str, r: Request) -> DiffRequest {
    DiffRequest::new(label, &r)
}

fn proxied(route_extra: &str, hcm_extra: &str) -> String {
    let route = if route_extra.is_empty() {
        "{cluster: backend}".to_owned()
    } else {
        format!("{{cluster: backend, {route_extra}}}")
    };
    hcm(
        &vhost(
            "v",
            ALL,
            &format!("- match: {{prefix: \"/\"}}\n  route: {route}"),
        ),
        hcm_extra,
        &static_cluster("backend", "backend", ""),
    )
}

#[test]
fn direct_responses_and_redirects() {
    let routes = r#"- match: {path: "/"}
  direct_response: {status: 200, body: {inline_string: "hello\n"}}
- match: {path: "/empty"}
  direct_response: {status: 204}
- match: {path: "/teapot"}
  direct_response: {status: 418, body: {inline_string: "tea"}}
- match: {prefix: "/https"}
  redirect: {https_redirect: true}
- match: {prefix: "/moved"}
  redirect: {path_redirect: "/new", response_code: FOUND}
- match: {prefix: "/old/"}
  redirect: {prefix_rewrite: "/fresh/", response_code: TEMPORARY_REDIRECT}
- match: {prefix: "/elsewhere"}
  redirect: {host_redirect: "other.example.org", port_redirect: 8443, strip_query: true}"#;
    check(
        diff(&hcm(&vhost("v", ALL, routes), "", ""))
            .request(get("direct", "/"))
            .request(get("204", "/empty"))
            .request(get("418", "/teapot"))
            .request(get("https redirect", "/https/x?q=1"))
            .request(get("path redirect", "/moved?keep=1"))
            .request(DiffRequest::new(
                "prefix redirect with port",
                &Request::get("/old/a/b", "example.com:8080"),
            ))
            .request(get("host redirect", "/elsewhere/p?drop=1"))
            .request(get("no route", "/nothing/here")),
    );
}

#[test]
fn proxied_request_headers_and_bodies() {
    check(
        diff(&proxied("", ""))
            .upstream("backend")
            .request(req(
                "get",
                Request::get("/hello?x=1", "example.com")
                    .header("User-Agent", "diff")
                    .header("X-Mixed-Case", "Value"),
            ))
            .request(req(
                "client request id",
                Request::get("/", "example.com").header("x-request-id", "fixed-id"),
            ))
            .request(req(
                "post body",
                Request::new("POST", "/p")
                    .header("host", "example.com")
                    .body(b"0123456789"),
            ))
            .request(req(
                "head",
                Request::new("HEAD", "/h").header("host", "example.com"),
            ))
            .request(req(
                "upstream status",
                Request::get("/", "example.com")
                    .header("x-echo-status", "418")
                    .header("x-echo-body", "custom"),
            ))
            .request(req(
                "hop by hop",
                Request::get("/", "example.com")
                    .header("connection", "keep-alive, x-drop")
                    .header("x-drop", "1")
                    .header("keep-alive", "timeout=5")
                    .header("te", "trailers"),
            )),
    );
}

/// The headers Envoy strips, trusts or adds on the way in and out
/// (`x-envoy-*` from external clients, `x-forwarded-*`, `te`, legacy hop-by-hop
/// headers on responses), as an edge proxy and as an internal hop.
#[test]
fn forwarded_and_internal_headers() {
    let requests = |d: Differential| {
        d.upstream("backend")
            .request(req(
                "envoy headers from a client",
                Request::get("/", "example.com")
                    .header("x-envoy-retry-on", "5xx")
                    .header("x-envoy-max-retries", "3")
                    .header("x-envoy-upstream-rq-timeout-ms", "100")
                    .header("x-envoy-internal", "true")
                    .header("x-envoy-decorator-operation", "op")
                    .header("x-envoy-downstream-service-node", "n")
                    .header("x-envoy-expected-rq-timeout-ms", "5")
                    .header("x-forwarded-client-cert", "By=spiffe://x")
                    .header("proxy-connection", "keep-alive"),
            ))
            .request(req(
                "forwarded for and proto",
                Request::get("/", "example.com")
                    .header("x-forwarded-for", "10.0.0.1, 1.2.3.4")
                    .header("x-forwarded-proto", "https"),
            ))
            .request(req(
                "one forwarded-for entry",
                Request::get("/", "example.com").header("x-forwarded-for", "10.1.2.3"),
            ))
            .request(req(
                "te without trailers",
                Request::get("/", "example.com").header("te", "gzip"),
            ))
            .request(req(
                "te with trailers",
                Request::get("/", "example.com").header("te", "gzip, trailers"),
            ))
            .request(req(
                "upgrade without connection token",
                Request::get("/", "example.com").header("upgrade", "foo"),
            ))
            .request(req(
                "connection naming a forwarded header",
                Request::get("/", "example.com")
                    .header("connection", "x-forwarded-proto")
                    .header("x-forwarded-proto", "https"),
            ))
            .request(req(
                "ten connection tokens",
                Request::get("/", "example.com").header("connection", "a,b,c,d,e,f,g,h,i,j"),
            ))
            .request(req(
                "legacy hop-by-hop response headers",
                Request::get("/", "example.com").header(
                    "x-echo-set-header",
                    "keep-alive=timeout%3D5&proxy-connection=close&x-envoy-upstream-service-time=1",
                ),
            ))
    };
    check(requests(diff(&proxied("", ""))));
    check(requests(diff(&proxied("", "use_remote_address: true"))));
    check(requests(diff(&proxied(
        "",
        "use_remote_address: true\nxff_num_trusted_hops: 1",
    ))));
}

/// `always_set_request_id_in_response`: the request's id comes back on
/// proxied responses and on local replies alike.
#[test]
fn request_id_written_back_to_responses() {
    let routes = r#"- match: {path: "/local"}
  direct_response: {status: 503, body: {inline_string: "local"}}
- match: {prefix: "/"}
  route: {cluster: backend}"#;
    let config = hcm(
        &vhost("v", ALL, routes),
        "always_set_request_id_in_response: true",
        &static_cluster("backend", "backend", ""),
    );
    check(
        diff(&config)
            .upstream("backend")
            .request(req(
                "proxied, client id",
                Request::get("/", "example.com").header("x-request-id", "fixed-id"),
            ))
            .request(get("proxied, generated id", "/"))
            .request(req(
                "local reply, client id",
                Request::get("/local", "example.com").header("x-request-id", "fixed-id"),
            ))
            .request(get("local reply, generated id", "/local")),
    );
}

#[test]
fn route_matching_and_virtual_hosts() {
    let routes = r#"- match: {path: "/exact"}
  direct_response: {status: 200, body: {inline_string: "path"}}
- match: {safe_regex: {regex: "/items/[0-9]+"}}
  direct_response: {status: 200, body: {inline_string: "regex"}}
- match:
    prefix: "/hdr"
    headers: [{name: x-env, string_match: {exact: canary}}]
  direct_response: {status: 200, body: {inline_string: "header"}}
- match:
    prefix: "/q"
    query_parameters: [{name: debug, string_match: {exact: "1"}}]
  direct_response: {status: 200, body: {inline_string: "query"}}
- match: {prefix: "/api", case_sensitive: false}
  direct_response: {status: 200, body: {inline_string: "prefix"}}"#;
    let vhosts = [
        vhost("main", "[\"example.com\"]", routes),
        vhost(
            "suffix",
            "[\"*.example.com\"]",
            "- match: {prefix: \"/\"}\n  direct_response: {status: 200, body: {inline_string: suffix}}",
        ),
        vhost(
            "default",
            ALL,
            "- match: {prefix: \"/\"}\n  direct_response: {status: 200, body: {inline_string: default}}",
        ),
    ]
    .join("\n");
    check(
        diff(&hcm(&vhosts, "", ""))
            .request(get("exact", "/exact"))
            .request(get("exact with slash", "/exact/"))
            .request(get("regex", "/items/42"))
            .request(get("regex partial", "/items/42x"))
            .request(req(
                "header",
                Request::get("/hdr", "example.com").header("x-env", "canary"),
            ))
            .request(req(
                "header mismatch",
                Request::get("/hdr", "example.com").header("x-env", "prod"),
            ))
            .request(get("query", "/q?a=b&debug=1"))
            .request(get("query mismatch", "/q?debug=2"))
            .request(get("case insensitive prefix", "/API/x"))
            .request(DiffRequest::new(
                "suffix vhost",
                &Request::get("/", "a.example.com"),
            ))
            .request(DiffRequest::new(
                "default vhost",
                &Request::get("/", "other.net"),
            ))
            .request(DiffRequest::new(
                "host with port",
                &Request::get("/exact", "example.com:80"),
            )),
    );
}

#[test]
fn rewrites_and_header_mutations() {
    let routes = r#"- match: {prefix: "/api/"}
  route: {cluster: backend, prefix_rewrite: "/v1/"}
- match: {safe_regex: {regex: "^/re/([0-9]+)/(.*)$"}}
  route:
    cluster: backend
    regex_rewrite: {pattern: {regex: "^/re/([0-9]+)/(.*)$"}, substitution: "/out/\\2/\\1"}
- match: {prefix: "/host"}
  route: {cluster: backend, host_rewrite_literal: rewritten.example}
- match: {prefix: "/"}
  route: {cluster: backend}
  request_headers_to_add:
  - header: {key: x-added, value: route}
  - header: {key: x-over, value: by-route}
    append_action: OVERWRITE_IF_EXISTS_OR_ADD
  - header: {key: x-app, value: second}
    append_action: APPEND_IF_EXISTS_OR_ADD
  - header: {key: x-dyn, value: "%REQ(x-src)%-copy"}
  request_headers_to_remove: [x-secret]
  response_headers_to_add:
  - header: {key: x-resp, value: r}
  response_headers_to_remove: [x-echo-server]"#;
    check(
        diff(&hcm(
            &vhost("v", ALL, routes),
            "",
            &static_cluster("backend", "backend", ""),
        ))
        .upstream("backend")
        .request(get("prefix rewrite", "/api/users?id=7"))
        .request(get("regex rewrite", "/re/12/a/b?z=1"))
        .request(get("host rewrite", "/host/x"))
        .request(req(
            "mutations",
            Request::get("/m", "example.com")
                .header("x-over", "client")
                .header("x-app", "first")
                .header("x-secret", "s")
                .header("x-src", "abc"),
        )),
    );
}

#[test]
fn local_replies() {
    let vhosts = vhost(
        "v",
        ALL,
        r#"- match: {prefix: "/empty"}
  route: {cluster: empty}
- match: {prefix: "/dead"}
  route: {cluster: dead}
- match: {prefix: "/slow"}
  route: {cluster: backend, timeout: 0.3s}
- match: {prefix: "/up"}
  route: {cluster: backend}"#,
    );
    let clusters = format!(
        "{}\n{}\n- name: empty\n  type: STATIC\n  connect_timeout: 1s\n  load_assignment: {{cluster_name: empty}}",
        static_cluster("backend", "backend", ""),
        static_cluster("dead", "dead", "")
    );
    check(
        diff(&hcm(&vhosts, "", &clusters))
            .upstream("backend")
            .dead_port("dead")
            .request(get("no route", "/nowhere"))
            .request(get("no healthy upstream", "/empty"))
            .request(get("connection refused", "/dead"))
            .request(req(
                "route timeout",
                Request::get("/slow", "example.com").header("x-echo-delay-ms", "2000"),
            ))
            .request(req(
                "upstream reset",
                Request::get("/up", "example.com").header("x-echo-reset", "1"),
            )),
    );
}

#[test]
fn retries() {
    check(
        diff(&proxied(
            "retry_policy: {retry_on: 5xx, num_retries: 2}",
            "",
        ))
        .upstream("backend")
        // A retry announces the time left, which depends on timing.
        .mask(
            "x-envoy-expected-rq-timeout-ms: 1[0-9]{4}",
            "x-envoy-expected-rq-timeout-ms: <left>",
        )
        .request(req(
            "succeeds on third try",
            Request::get("/r", "example.com")
                .header("x-echo-fail-times", "2")
                .header("x-echo-key", "ok"),
        ))
        .request(req(
            "exhausted",
            Request::get("/r", "example.com")
                .header("x-echo-fail-times", "9")
                .header("x-echo-key", "exhausted"),
        ))
        .request(req(
            "retriable 4xx is not retried",
            Request::get("/r", "example.com").header("x-echo-status", "409"),
        )),
    );
}

#[test]
fn http1_edge_cases() {
    let big = "a".repeat(70 * 1024);
    check(
        diff(&proxied("", ""))
            .upstream("backend")
            .request(
                DiffRequest::raw("http/1.0", b"GET / HTTP/1.0\r\nhost: x\r\n\r\n")
                    .check_prompt_close()
                    .check_close(),
            )
            .request(DiffRequest::raw("garbage", b"GARBAGE\r\n\r\n").check_close())
            .request(
                DiffRequest::raw("bad header line", b"GET / HTTP/1.1\r\nhost: x\r\nbad header\r\n\r\n")
                    .check_prompt_close()
                    .check_close(),
            )
            .request(
                DiffRequest::raw(
                    "two content-lengths",
                    b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab",
                )
                .check_close(),
            )
            .request(
                DiffRequest::raw(
                    "oversized headers",
                    format!("GET / HTTP/1.1\r\nhost: x\r\nx-big: {big}\r\n\r\n").as_bytes(),
                )
                .check_close(),
            )
            .request(
                DiffRequest::raw(
                    "unknown transfer-encoding",
                    b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip\r\n\r\n",
                )
                .check_close(),
            )
            .request(
                DiffRequest::raw("missing host", b"GET / HTTP/1.1\r\n\r\n").check_close(),
            )
            .request(DiffRequest::raw("GET *", b"GET * HTTP/1.1\r\nhost: x\r\n\r\n").check_close())
            .request(DiffRequest::raw("OPTIONS *", b"OPTIONS * HTTP/1.1\r\nhost: x\r\n\r\n"))
            .request(
                DiffRequest::raw("ftp scheme", b"GET ftp://x/y HTTP/1.1\r\nhost: x\r\n\r\n")
                    .check_close(),
            )
            .request(DiffRequest::raw("relative target", b"GET foo HTTP/1.1\r\nhost: x\r\n\r\n").check_close())
            .request(DiffRequest::raw("uppercase scheme", b"GET HTTP://x/up HTTP/1.1\r\nhost: x\r\n\r\n"))
            .request(
                DiffRequest::raw("unknown method", b"FOO / HTTP/1.1\r\nhost: x\r\n\r\n")
                    .check_close(),
            )
            .request(
                DiffRequest::raw("lowercase method", b"get / HTTP/1.1\r\nhost: x\r\n\r\n")
                    .check_close(),
            )
            .request(
                DiffRequest::raw("unknown method, first line only", b"FOO / HTTP/1.1\r\n")
                    .check_close(),
            )
            .request(DiffRequest::raw("PRI over HTTP/1", b"PRI / HTTP/2.0\r\n\r\n").check_close())
            .request(
                DiffRequest::raw(
                    "connection close",
                    b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
                )
                .check_prompt_close()
                .check_close(),
            )
            .request(
                DiffRequest::raw(
                    "expect 100-continue",
                    b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\nhello",
                )
                .check_close(),
            )
            .request(
                DiffRequest::raw("absolute uri", b"GET http://example.com/abs?q HTTP/1.1\r\nhost: example.com\r\n\r\n"),
            ),
    );
}

#[test]
fn bodies_chunked_and_large() {
    let mib = pattern_bytes(1 << 20);
    check(
        diff(&proxied("", ""))
            .upstream("backend")
            .request(req(
                "chunked request",
                Request::new("POST", "/c")
                    .header("host", "example.com")
                    .chunked(&[b"hello ", b"world"]),
            ))
            .request(req(
                "chunked response",
                Request::get("/", "example.com")
                    .header("x-echo-chunked", "1")
                    .header("x-echo-response-size", "40000"),
            ))
            .request(req(
                "close-delimited response",
                Request::get("/", "example.com")
                    .header("x-echo-no-content-length", "1")
                    .header("x-echo-body", "until-close"),
            ))
            .request(req(
                "1 MiB upload",
                Request::new("PUT", "/big")
                    .header("host", "example.com")
                    .body(&mib),
            ))
            .request(req(
                "1 MiB download",
                Request::get("/big", "example.com").header("x-echo-response-size", "1048576"),
            )),
    );
}

#[test]
fn access_log_lines() {
    let hcm_extra = r#"access_log:
- name: envoy.access_loggers.stdout
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
    log_format:
      text_format_source:
        inline_string: "LOG %REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL% %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %UPSTREAM_CLUSTER% %REQ(:AUTHORITY)% %REQ(X-MISSING)%\n""#;
    let routes = r#"- match: {prefix: "/api/"}
  route: {cluster: backend, prefix_rewrite: "/"}
- match: {prefix: "/direct"}
  direct_response: {status: 200, body: {inline_string: abc}}"#;
    check(
        diff(&hcm(
            &vhost("v", ALL, routes),
            hcm_extra,
            &static_cluster("backend", "backend", ""),
        ))
        .upstream("backend")
        .extra_args(&["--file-flush-interval-msec", "50"])
        .compare_stdout("LOG ")
        .request(req(
            "proxied",
            Request::get("/api/x", "example.com").header("x-echo-body", "12345"),
        ))
        .request(get("direct", "/direct"))
        .request(get("no route", "/nowhere").pause_after(Duration::from_millis(50))),
    );
}

#[test]
fn dns_clusters_resolving_localhost() {
    let clusters = ["STRICT_DNS", "LOGICAL_DNS"]
        .iter()
        .map(|kind| {
            format!(
                r#"- name: {kind}
  type: {kind}
  connect_timeout: 1s
  dns_lookup_family: V4_ONLY
  load_assignment:
    cluster_name: {kind}
    endpoints:
    - lb_endpoints:
      - endpoint: {{address: {{socket_address: {{address: localhost, port_value: {{{{port:backend}}}}}}}}}}"#
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let routes = "- match: {prefix: \"/strict\"}\n  route: {cluster: STRICT_DNS}\n- match: {prefix: \"/logical\"}\n  route: {cluster: LOGICAL_DNS}";
    check(
        diff(&hcm(&vhost("v", ALL, routes), "", &clusters))
            .upstream("backend")
            .request(get("strict", "/strict"))
            .request(get("logical", "/logical")),
    );
}

#[test]
fn websocket_handshake_and_h2c() {
    let raw_ws = b"GET /ws HTTP/1.1\r\nhost: example.com\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n";
    check(
        diff(&proxied("", "upgrade_configs: [{upgrade_type: websocket}]"))
            .upstream("backend")
            .request(DiffRequest::raw("websocket handshake", raw_ws))
            .request(DiffRequest::h2c(
                "h2c get",
                "GET",
                "/h2?x=1",
                "example.com",
                &[("x-client", "h2")],
            ))
            .request(DiffRequest::h2c(
                "h2c upstream status",
                "GET",
                "/",
                "example.com",
                &[("x-echo-status", "404"), ("x-echo-body", "nope")],
            ))
            .request(DiffRequest::h2c(
                "h2c head",
                "HEAD",
                "/",
                "example.com",
                &[],
            )),
    );
}

#[test]
fn websocket_without_upgrade_config_is_refused() {
    let raw_ws = b"GET /ws HTTP/1.1\r\nhost: example.com\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n";
    check(
        diff(&proxied("", ""))
            .upstream("backend")
            .request(DiffRequest::raw("websocket refused", raw_ws).check_close()),
    );
}
