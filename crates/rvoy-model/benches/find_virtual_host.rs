//! Micro-benchmark of virtual host selection (`RouteConfig::find_virtual_host`,
//! Envoy's `findVirtualHost`) in route tables of 1,000 and 10,000 routes (ten
//! routes per virtual host): an exact domain, a `*.suffix` and a `prefix.*`
//! wildcard of the last virtual host (the wildcard lists are scanned in order),
//! a host that falls through to the `*` default, and an upper-case host that
//! is lower-cased first. Run with `cargo bench -p rvoy-model --bench find_virtual_host`.

use std::fmt::Write as _;
use std::sync::OnceLock;

use rvoy_config_load::bootstrap::{LoadOptions, load_bootstrap};
use rvoy_model::BuildOptions;
use rvoy_model::listener::NetworkFilter;
use rvoy_model::route::RouteConfig;

const ROUTES: &[usize] = &[1_000, 10_000];
const ROUTES_PER_VHOST: usize = 10;

fn main() {
    divan::main();
}

/// A bootstrap with `routes` routes in `routes / 10` virtual hosts, each with
/// an exact, a suffix-wildcard and a prefix-wildcard domain, plus a `*` host.
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
",
    );
    for v in 0..routes / ROUTES_PER_VHOST {
        let _ = writeln!(
            y,
            "            - name: vh{v}\n              domains: [\"svc{v}.example.com\", \"*.svc{v}.example.net\", \"svc{v}-canary.*\"]\n              routes:"
        );
        for r in 0..ROUTES_PER_VHOST {
            let _ = writeln!(
                y,
                "              - {{match: {{prefix: \"/r{r}/\"}}, route: {{cluster: c{v}}}}}"
            );
        }
    }
    y.push_str(
        "            - name: default
              domains: [\"*\"]
              routes:
              - {match: {prefix: \"/\"}, route: {cluster: c0}}
",
    );
    y
}

/// The route table of a bootstrap of `routes` routes, built once per size.
fn table(routes: usize) -> &'static RouteConfig {
    static TABLES: [OnceLock<std::sync::Arc<RouteConfig>>; 2] = [OnceLock::new(), OnceLock::new()];
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

fn last_vhost(routes: usize) -> usize {
    routes / ROUTES_PER_VHOST - 1
}

fn lookup(bencher: divan::Bencher<'_, '_>, routes: usize, host: String) {
    let rc = table(routes);
    assert!(rc.find_virtual_host(&host).is_some(), "{host} finds a host");
    bencher.bench_local(|| {
        rc.find_virtual_host(divan::black_box(&host))
            .map(|v| v.routes.len())
    });
}

#[divan::bench(args = ROUTES)]
fn exact(bencher: divan::Bencher<'_, '_>, routes: usize) {
    let host = format!("svc{}.example.com", last_vhost(routes));
    lookup(bencher, routes, host);
}

#[divan::bench(args = ROUTES)]
fn suffix_wildcard(bencher: divan::Bencher<'_, '_>, routes: usize) {
    let host = format!("api.svc{}.example.net", last_vhost(routes));
    lookup(bencher, routes, host);
}

#[divan::bench(args = ROUTES)]
fn prefix_wildcard(bencher: divan::Bencher<'_, '_>, routes: usize) {
    let host = format!("svc{}-canary.example.org", last_vhost(routes));
    lookup(bencher, routes, host);
}

#[divan::bench(args = ROUTES)]
fn default_host(bencher: divan::Bencher<'_, '_>, routes: usize) {
    lookup(bencher, routes, "unknown.example.org".to_owned());
}

#[divan::bench(args = ROUTES)]
fn upper_case_host(bencher: divan::Bencher<'_, '_>, routes: usize) {
    let host = format!("SVC{}.Example.COM", last_vhost(routes));
    lookup(bencher, routes, host);
}
