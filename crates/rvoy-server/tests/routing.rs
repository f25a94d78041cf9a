//! What an Envoy user sees from route configuration: direct responses, redirects
//! (`Location`), route matching (prefix, path, regex, headers, query), virtual host
//! selection, rewrites, header mutations and the 404 of an unmatched request.

mod common;

use common::{hcm, ports_for, start, static_cluster, vhost};
use rvoy_testkit::EchoServer;
use rvoy_testkit::raw::{RawConn, RawResponse, Request, send_once};

fn get(proxy: &rvoy_testkit::Proxy, path: &str, host: &str) -> RawResponse {
    send_once(proxy.addr("listener"), &Request::get(path, host).to_bytes()).expect("a response")
}

fn send(proxy: &rvoy_testkit::Proxy, req: Request) -> RawResponse {
    send_once(proxy.addr("listener"), &req.to_bytes()).expect("a response")
}

#[test]
fn direct_response_status_body_and_headers() {
    let cfg = hcm(
        &vhost(
            "v",
            "[\"*\"]",
            r#"- match: {path: "/"}
  direct_response: {status: 200, body: {inline_string: "hello from rvoy\n"}}
- match: {path: "/empty"}
  direct_response: {status: 204}
- match: {path: "/teapot"}
  direct_response: {status: 418, body: {inline_string: "short and stout"}}"#,
        ),
        "",
        "",
    );
    let proxy = start(&cfg, &Default::default());
    let r = get(&proxy, "/", "example.com");
    assert_eq!(
        (r.version.as_str(), r.status, r.reason.as_str()),
        ("HTTP/1.1", 200, "OK")
    );
    assert_eq!(r.body_str(), "hello from rvoy\n");
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.header("content-length"), Some("16"));
    assert_eq!(r.header("server"), Some("envoy"));
    assert!(
        r.header("date").is_some_and(|d| d.ends_with(" GMT")),
        "{:?}",
        r.headers
    );

    let r = get(&proxy, "/empty", "example.com");
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-length"), None);

    let r = get(&proxy, "/teapot", "example.com");
    assert_eq!((r.status, r.reason.as_str()), (418, "Unknown"));
    assert_eq!(r.body_str(), "short and stout");
}

#[test]
fn redirects_set_location() {
    let cfg = hcm(
        &vhost(
            "v",
            "[\"*\"]",
            r#"- match: {prefix: "/https"}
  redirect: {https_redirect: true}
- match: {prefix: "/moved"}
  redirect: {path_redirect: "/new/place", response_code: FOUND}
- match: {prefix: "/old/"}
  redirect: {prefix_rewrite: "/fresh/", response_code: TEMPORARY_REDIRECT}
- match: {prefix: "/elsewhere"}
  redirect: {host_redirect: "other.example.org", port_redirect: 8443, strip_query: true}
- match: {prefix: "/"}
  direct_response: {status: 200, body: {inline_string: "home"}}"#,
        ),
        "",
        "",
    );
    let proxy = start(&cfg, &Default::default());

    let r = get(&proxy, "/https/x?q=1", "example.com");
    assert_eq!((r.status, r.reason.as_str()), (301, "Moved Permanently"));
    assert_eq!(
        r.header("location"),
        Some("https://example.com/https/x?q=1")
    );
    assert!(r.body.is_empty());

    let r = get(&proxy, "/moved?keep=1", "example.com");
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("http://example.com/new/place?keep=1")
    );

    let r = get(&proxy, "/old/a/b", "example.com:8080");
    assert_eq!(r.status, 307);
    assert_eq!(
        r.header("location"),
        Some("http://example.com:8080/fresh/a/b")
    );

    let r = get(&proxy, "/elsewhere/p?drop=1", "example.com");
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some("http://other.example.org:8443/elsewhere/p")
    );
}

#[test]
fn route_matching_prefix_path_regex_headers_query() {
    let cfg = hcm(
        &vhost(
            "v",
            "[\"*\"]",
            r#"- match: {path: "/exact"}
  direct_response: {status: 200, body: {inline_string: "path"}}
- match: {safe_regex: {regex: "/items/[0-9]+"}}
  direct_response: {status: 200, body: {inline_string: "regex"}}
- match:
    prefix: "/hdr"
    headers: [{name: x-env, string_match: {exact: canary}}]
  direct_response: {status: 200, body: {inline_string: "header"}}
- match:
    prefix: "/hdr"
    headers: [{name: x-present, present_match: true}]
  direct_response: {status: 200, body: {inline_string: "present"}}
- match:
    prefix: "/q"
    query_parameters: [{name: debug, string_match: {exact: "1"}}]
  direct_response: {status: 200, body: {inline_string: "query"}}
- match: {prefix: "/api", case_sensitive: false}
  direct_response: {status: 200, body: {inline_string: "prefix-ci"}}
- match: {prefix: "/"}
  direct_response: {status: 200, body: {inline_string: "fallback"}}"#,
        ),
        "",
        "",
    );
    let proxy = start(&cfg, &Default::default());
    let body = |path: &str, headers: &[(&str, &str)]| {
        let mut req = Request::get(path, "example.com");
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let r = send(&proxy, req);
        assert_eq!(r.status, 200, "{path}");
        r.body_str()
    };
    assert_eq!(body("/exact", &[]), "path");
    assert_eq!(
        body("/exact?x=1", &[]),
        "path",
        "path match ignores the query"
    );
    assert_eq!(body("/exact/", &[]), "fallback");
    assert_eq!(body("/items/42", &[]), "regex");
    assert_eq!(
        body("/items/42x", &[]),
        "fallback",
        "regex must match the whole path"
    );
    assert_eq!(body("/hdr", &[("x-env", "canary")]), "header");
    assert_eq!(
        body("/hdr", &[("X-Env", "canary")]),
        "header",
        "header names are case-insensitive"
    );
    assert_eq!(body("/hdr", &[("x-env", "prod")]), "fallback");
    assert_eq!(body("/hdr", &[("x-present", "")]), "present");
    assert_eq!(body("/q?debug=1", &[]), "query");
    assert_eq!(body("/q?a=b&debug=1", &[]), "query");
    assert_eq!(body("/q?debug=2", &[]), "fallback");
    assert_eq!(body("/API/v1", &[]), "prefix-ci");
    assert_eq!(body("/apix", &[]), "prefix-ci", "prefix is a string prefix");
}

#[test]
fn no_route_is_404_with_empty_body() {
    let cfg = hcm(
        &vhost(
            "v",
            "[\"*\"]",
            r#"- match: {prefix: "/only"}
  direct_response: {status: 200}"#,
        ),
        "",
        "",
    );
    let proxy = start(&cfg, &Default::default());
    let r = get(&proxy, "/other", "example.com");
    assert_eq!((r.status, r.reason.as_str()), (404, "Not Found"));
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-length"), Some("0"));
    assert_eq!(r.header("server"), Some("envoy"));
}

#[test]
fn virtual_host_selection() {
    let vhosts = [
        vhost(
            "exact",
            "[\"a.example.com\"]",
            "- match: {prefix: \"/\"}\n  direct_response: {status: 200, body: {inline_string: exact}}",
        ),
        vhost(
            "with-port",
            "[\"p.example.com:8080\"]",
            "- match: {prefix: \"/\"}\n  direct_response: {status: 200, body: {inline_string: with-port}}",
        ),
        vhost(
            "suffix",
            "[\"*.example.com\"]",
            "- match: {prefix: \"/\"}\n  direct_response: {status: 200, body: {inline_string: suffix}}",
        ),
        vhost(
            "prefix",
            "[\"api.*\"]",
            "- match: {prefix: \"/\"}\n  direct_response: {status: 200, body: {inline_string: prefix}}",
        ),
        vhost(
            "default",
            "[\"*\"]",
            "- match: {prefix: \"/\"}\n  direct_response: {status: 200, body: {inline_string: default}}",
        ),
    ]
    .join("\n");
    let proxy = start(&hcm(&vhosts, "", ""), &Default::default());
    let which = |host: &str| get(&proxy, "/", host).body_str();
    assert_eq!(which("a.example.com"), "exact");
    assert_eq!(
        which("A.Example.COM"),
        "exact",
        "domains match case-insensitively"
    );
    assert_eq!(which("b.example.com"), "suffix");
    assert_eq!(which("deep.b.example.com"), "suffix");
    assert_eq!(which("api.other.net"), "prefix");
    assert_eq!(which("unknown.net"), "default");
    assert_eq!(which("p.example.com:8080"), "with-port");
    assert_eq!(
        which("a.example.com:9999"),
        "default",
        "a port makes the exact domain miss"
    );
}

#[test]
fn rewrites_reach_the_upstream() {
    let echo = EchoServer::start("backend").expect("echo");
    let routes = r#"- match: {prefix: "/api/"}
  route: {cluster: backend, prefix_rewrite: "/v1/"}
- match: {prefix: "/strip"}
  route: {cluster: backend, prefix_rewrite: "/"}
- match: {safe_regex: {regex: "^/re/([0-9]+)/(.*)$"}}
  route:
    cluster: backend
    regex_rewrite: {pattern: {regex: "^/re/([0-9]+)/(.*)$"}, substitution: "/out/\\2/\\1"}
- match: {prefix: "/host"}
  route: {cluster: backend, host_rewrite_literal: rewritten.example}
- match: {prefix: "/"}
  route: {cluster: backend}"#;
    let cfg = hcm(
        &vhost("v", "[\"*\"]", routes),
        "",
        &static_cluster("backend", "backend", ""),
    );
    let proxy = start(&cfg, &ports_for(&[&echo]));
    let up = |path: &str| {
        let r = get(&proxy, path, "example.com");
        assert_eq!(r.status, 200, "{path}: {}", r.body_str());
        r.echo().expect("an echo answer")
    };
    let e = up("/api/users?id=7");
    assert_eq!(e.path, "/v1/users?id=7");
    assert_eq!(e.header("x-envoy-original-path"), Some("/api/users?id=7"));
    assert_eq!(e.header("host"), Some("example.com"));

    assert_eq!(up("/strip").path, "/");
    assert_eq!(up("/stripped/x").path, "/ped/x");

    let e = up("/re/12/a/b?z=1");
    assert_eq!(e.path, "/out/a/b/12?z=1");
    assert_eq!(e.header("x-envoy-original-path"), Some("/re/12/a/b?z=1"));

    let e = up("/host/x");
    assert_eq!(e.path, "/host/x");
    assert_eq!(e.header("host"), Some("rewritten.example"));
    assert_eq!(e.header("x-envoy-original-host"), Some("example.com"));
    assert_eq!(e.header("x-envoy-original-path"), None);

    let e = up("/plain");
    assert_eq!(e.path, "/plain");
    assert_eq!(e.header("x-envoy-original-path"), None);
}

#[test]
fn header_mutations_at_route_vhost_and_route_config() {
    let echo = EchoServer::start("backend").expect("echo");
    let routes = r#"- match: {prefix: "/"}
  route: {cluster: backend}
  request_headers_to_add:
  - header: {key: x-route-added, value: route}
  - header: {key: x-overwritten, value: by-route}
    append_action: OVERWRITE_IF_EXISTS_OR_ADD
  - header: {key: x-appended, value: second}
    append_action: APPEND_IF_EXISTS_OR_ADD
  - header: {key: x-if-absent, value: default}
    append_action: ADD_IF_ABSENT
  - header: {key: x-dynamic, value: "%REQ(x-source)%-copy"}
  request_headers_to_remove: [x-secret]
  response_headers_to_add:
  - header: {key: x-resp-route, value: r1}
  response_headers_to_remove: [x-echo-server]"#;
    let vhosts = format!(
        "{}\n  request_headers_to_add:\n  - header: {{key: x-vhost-added, value: vhost}}\n  response_headers_to_add:\n  - header: {{key: x-resp-vhost, value: v1}}",
        vhost("v", "[\"*\"]", routes)
    );
    let cfg = hcm(&vhosts, "", &static_cluster("backend", "backend", ""));
    let proxy = start(&cfg, &ports_for(&[&echo]));
    let r = send(
        &proxy,
        Request::get("/", "example.com")
            .header("x-overwritten", "by-client")
            .header("x-appended", "first")
            .header("x-if-absent", "client")
            .header("x-secret", "s3cr3t")
            .header("x-source", "abc"),
    );
    assert_eq!(r.status, 200);
    let e = r.echo().expect("echo");
    assert_eq!(e.header("x-route-added"), Some("route"));
    assert_eq!(e.header("x-vhost-added"), Some("vhost"));
    assert_eq!(e.header_all("x-overwritten"), vec!["by-route"]);
    assert_eq!(e.header_all("x-appended"), vec!["first", "second"]);
    assert_eq!(e.header_all("x-if-absent"), vec!["client"]);
    assert_eq!(e.header("x-dynamic"), Some("abc-copy"));
    assert_eq!(e.header("x-secret"), None);
    assert_eq!(r.header("x-resp-route"), Some("r1"));
    assert_eq!(r.header("x-resp-vhost"), Some("v1"));
    assert_eq!(r.header("x-echo-server"), None);
}

#[test]
fn direct_response_on_keepalive_connection() {
    let cfg = hcm(
        &vhost(
            "v",
            "[\"*\"]",
            "- match: {prefix: \"/\"}\n  direct_response: {status: 200, body: {inline_string: ok}}",
        ),
        "",
        "",
    );
    let proxy = start(&cfg, &Default::default());
    let mut c = RawConn::connect(proxy.addr("listener")).expect("connect");
    for i in 0..3 {
        let r = c
            .request(&Request::get(&format!("/{i}"), "x"))
            .expect("response");
        assert_eq!((r.status, r.body_str().as_str()), (200, "ok"));
    }
    assert!(!c.is_closed(std::time::Duration::from_millis(200)));
}
