//! Micro-benchmark of header mutations (`headers::apply_mutations`, Envoy's
//! `HeaderParser::evaluateHeaders`) on a typical request header map: static
//! values with each append action, values with command operators
//! (`%REQ(...)%`, `%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%`, `%START_TIME%`),
//! and removals. The mutations come from a route's `request_headers_to_add` /
//! `request_headers_to_remove`, compiled by rvoy-model as in the data path.
//! Run with `cargo bench -p rvoy-http --bench header_mutation`.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue};
use rvoy_config_load::bootstrap::{LoadOptions, load_bootstrap};
use rvoy_format::{AddressKind, TestStreamInfo};
use rvoy_http::headers::apply_mutations;
use rvoy_model::BuildOptions;
use rvoy_model::headers::HeaderMutations;
use rvoy_model::listener::NetworkFilter;

fn main() {
    divan::main();
}

const STATIC: &str = "
                - header: {key: x-static-append, value: one}
                  append_action: APPEND_IF_EXISTS_OR_ADD
                - header: {key: x-static-overwrite, value: two}
                  append_action: OVERWRITE_IF_EXISTS_OR_ADD
                - header: {key: x-static-absent, value: three}
                  append_action: ADD_IF_ABSENT";

const FORMATTED: &str = "
                - header: {key: x-client-ip, value: \"%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%\"}
                  append_action: OVERWRITE_IF_EXISTS_OR_ADD
                - header: {key: x-request-id-copy, value: \"%REQ(x-request-id)%\"}
                  append_action: OVERWRITE_IF_EXISTS_OR_ADD
                - header: {key: x-start, value: \"%START_TIME(%s)%\"}
                  append_action: OVERWRITE_IF_EXISTS_OR_ADD";

/// The request header mutations of a route with `add` (YAML list items, as
/// above) and `remove`.
fn mutations(add: &str, remove: &[&str]) -> HeaderMutations {
    let mut route = String::new();
    if !add.is_empty() {
        route.push_str("\n                request_headers_to_add:");
        route.push_str(add);
    }
    if !remove.is_empty() {
        route.push_str("\n                request_headers_to_remove: [");
        route.push_str(&remove.join(", "));
        route.push(']');
    }
    let yaml = format!(
        "static_resources:
  listeners:
  - name: l
    address: {{socket_address: {{address: 127.0.0.1, port_value: 10000}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{\"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
          route_config:
            validate_clusters: false
            virtual_hosts:
            - name: v
              domains: [\"*\"]
              routes:
              - match: {{prefix: \"/\"}}
                route: {{cluster: c}}{route}
"
    );
    let loaded = load_bootstrap(&LoadOptions {
        config_yaml: Some(yaml),
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
    let NetworkFilter::HttpConnectionManager(hcm) = &config.listeners[0].filter_chains[0].filter
    else {
        panic!("the bench listener is an HTTP connection manager");
    };
    hcm.route_config.virtual_hosts[0].routes[0]
        .request_headers
        .clone()
}

/// A typical proxied request's headers.
fn request_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in [
        ("host", "api.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0",
        ),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, deflate, br"),
        ("x-request-id", "a4b2f0c3-6a8e-4d1f-9b7a-3c2e1d0f9a8b"),
        ("x-forwarded-proto", "http"),
        ("x-static-overwrite", "old"),
        ("x-static-append", "zero"),
        ("x-remove-me", "1"),
        ("cookie", "session=0123456789abcdef"),
    ] {
        h.append(name, HeaderValue::from_static(value));
    }
    h
}

fn stream_info() -> TestStreamInfo {
    let mut info = TestStreamInfo::new();
    info.start_time = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000));
    info.request_headers = Some(request_headers());
    let peer: SocketAddr = ([10, 1, 2, 3], 54_321).into();
    info.set_address(AddressKind::DownstreamRemote, peer);
    info
}

fn apply(bencher: divan::Bencher<'_, '_>, m: HeaderMutations) {
    let info = stream_info();
    let headers = request_headers();
    bencher
        .with_inputs(|| headers.clone())
        .bench_local_refs(|h| apply_mutations(&m, h, &info));
}

#[divan::bench]
fn static_values(bencher: divan::Bencher<'_, '_>) {
    apply(bencher, mutations(STATIC, &[]));
}

#[divan::bench]
fn formatted_values(bencher: divan::Bencher<'_, '_>) {
    apply(bencher, mutations(FORMATTED, &[]));
}

#[divan::bench]
fn removals(bencher: divan::Bencher<'_, '_>) {
    apply(
        bencher,
        mutations("", &["x-remove-me", "cookie", "x-absent"]),
    );
}

#[divan::bench]
fn mixed(bencher: divan::Bencher<'_, '_>) {
    let add = format!("{STATIC}{FORMATTED}");
    apply(bencher, mutations(&add, &["x-remove-me", "cookie"]));
}
