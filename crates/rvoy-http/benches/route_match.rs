//! Micro-benchmark of route selection as the data path does it: the virtual
//! host (`RouteConfig::find_virtual_host`), then its first matching route
//! (`stream::match_route`), in one virtual host of 1,000 and 10,000 routes.
//! Routes are prefix matches, every tenth an exact path and every seventh with
//! a header matcher; requests hit the first route, the middle one, the last
//! one, or none (a 404 after scanning everything).
//! Run with `cargo bench -p rvoy-http --bench route_match`.

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use http::{HeaderMap, HeaderValue, Method};
use rvoy_config_load::bootstrap::{LoadOptions, load_bootstrap};
use rvoy_http::downstream::Protocol;
use rvoy_http::stream::{Request, match_route};
use rvoy_model::BuildOptions;
use rvoy_model::listener::NetworkFilter;
use rvoy_model::route::RouteConfig;

const ROUTES: &[usize] = &[1_000, 10_000];
const HOST: &str = "api.example.com";

fn main() {
    divan::main();
}

fn path_of(i: usize) -> String {
    format!("/api/v1/r{i:05}/items")
}

/// One virtual host of `routes` routes, plus a `*` host that only answers
/// `/health` (so an unmatched path on `HOST` is a 404, as in a real table).
fn bootstrap(routes: usize) -> String {
    let mut y = String::from(
        "static_resources:
  listeners:
  - name: l
    address: {socket_address: {address: 127.0.0.1, port_value: 10000}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
          route_config:
            validate_clusters: false
            virtual_hosts:
            - name: api
              domains: [\"api.example.com\", \"api.example.com:*\"]
              routes:
",
    );
    for i in 0..routes {
        let path = path_of(i);
        let matcher = if i % 10 == 9 {
            format!("path: \"{path}\"")
        } else {
            format!("prefix: \"/api/v1/r{i:05}/\"")
        };
        let headers = if i % 7 == 6 {
            format!(", headers: [{{name: x-tenant, string_match: {{exact: t{i}}}}}]")
        } else {
            String::new()
        };
        let _ = writeln!(
            y,
            "              - {{match: {{{matcher}{headers}}}, route: {{cluster: c{}}}}}",
            i % 100
        );
    }
    y.push_str(
        "            - name: default
              domains: [\"*\"]
              routes:
              - {match: {path: \"/health\"}, route: {cluster: c0}}
",
    );
    y
}

fn table(routes: usize) -> &'static RouteConfig {
    static TABLES: [OnceLock<Arc<RouteConfig>>; 2] = [OnceLock::new(), OnceLock::new()];
    let slot = &TABLES[ROUTES
        .iter()
        .position(|&r| r == routes)
        .expect("a listed size")];
    slot.get_or_init(|| {
        let loaded = load_bootstrap(&LoadOptions {
            config_yaml: Some(bootstrap(routes)),
            ..LoadOptions::default()
        })
        .expect("the bench bootstrap loads");
        let config = rvoy_model::build(
            &loaded.bootstrap,
            &loaded.message,
            &loaded.sources,
            &BuildOptions::default(),
        )
        .expect("the bench bootstrap builds");
        let NetworkFilter::HttpConnectionManager(hcm) =
            &config.listeners[0].filter_chains[0].filter
        else {
            panic!("the bench listener is an HTTP connection manager");
        };
        hcm.route_config.clone()
    })
}

/// A GET as the HTTP/1 codec delivers it, with typical client headers.
fn request(path: String) -> Request {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("host", HOST),
        ("user-agent", "curl/8.5.0"),
        ("accept", "*/*"),
        ("x-request-id", "a4b2f0c3-6a8e-4d1f-9b7a-3c2e1d0f9a8b"),
        ("x-tenant", "t1"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    Request {
        method: Method::GET,
        path: path.into(),
        authority: Some(HOST.into()),
        scheme: None,
        headers,
        protocol: Protocol::Http11,
        expect_continue: false,
        has_body: false,
        head_bytes: 0,
        replay_body: None,
        internal_redirects: 0,
    }
}

fn route(bencher: divan::Bencher<'_, '_>, routes: usize, path: String, hit: bool) {
    let rc = table(routes);
    let req = request(path);
    let find = |req: &Request| {
        let vhost = rc.find_virtual_host(req.authority.as_deref().unwrap_or(""))?;
        match_route(vhost, req, rc.ignore_path_parameters_in_path_matching).map(|r| r.name.len())
    };
    assert_eq!(find(&req).is_some(), hit, "{} matches: {hit}", req.path);
    bencher.bench_local(|| find(divan::black_box(&req)));
}

#[divan::bench(args = ROUTES)]
fn first_route(bencher: divan::Bencher<'_, '_>, routes: usize) {
    route(bencher, routes, path_of(0), true);
}

#[divan::bench(args = ROUTES)]
fn middle_route(bencher: divan::Bencher<'_, '_>, routes: usize) {
    // an even index below 10 * k + 9 and not 7 * k + 6: a plain prefix route
    route(bencher, routes, path_of(routes / 2), true);
}

#[divan::bench(args = ROUTES)]
fn last_route(bencher: divan::Bencher<'_, '_>, routes: usize) {
    route(bencher, routes, path_of(routes - 1), true);
}

#[divan::bench(args = ROUTES)]
fn no_route(bencher: divan::Bencher<'_, '_>, routes: usize) {
    route(bencher, routes, "/api/v2/unknown".to_owned(), false);
}
