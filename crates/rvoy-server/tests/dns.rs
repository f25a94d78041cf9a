//! DNS resolvers of `STRICT_DNS` clusters, against a DNS server of the test's
//! own on 127.0.0.1: the c-ares, getaddrinfo and hickory typed resolver
//! configs, `dns_resolution_config`, the bootstrap's resolver shared by
//! clusters without one, TCP lookups and c-ares' query cache.
//!
//! Each scenario runs on rvoy and, when it is installed, on Envoy 1.40; both
//! must give the same observations: the answer to a request through the
//! cluster, and which transport and how many queries reached the DNS server.

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use rvoy_testkit::raw::{Request, send_once};
use rvoy_testkit::{Binary, DnsServer, EchoServer, Ports, Proxy, ProxyBuilder};

/// The name the DNS server knows.
const NAME: &str = "backend.rvoy.test";

/// A bootstrap proxying `/` to STRICT_DNS cluster `backend`, whose endpoint is
/// `endpoint`:echo port; `cluster_extra` and `bootstrap_extra` are YAML added
/// to the cluster and to the bootstrap.
fn config(endpoint: &str, cluster_extra: &str, bootstrap_extra: &str) -> String {
    let cluster = format!(
        r#"- name: backend
  type: STRICT_DNS
  connect_timeout: 1s
  dns_lookup_family: V4_ONLY
  {}
  load_assignment:
    cluster_name: backend
    endpoints:
    - lb_endpoints:
      - endpoint: {{address: {{socket_address: {{address: {endpoint}, port_value: {{{{port:echo}}}}}}}}}}"#,
        common::indent(cluster_extra, 2)
    );
    let vhost = common::vhost(
        "all",
        "[\"*\"]",
        "- match: {prefix: /}\n  route: {cluster: backend}",
    );
    format!(
        "admin:\n  address: {{socket_address: {{address: 127.0.0.1, port_value: {{{{port:admin}}}}}}}}\n{bootstrap_extra}\n{}",
        common::hcm(&vhost, "", &cluster)
    )
}

/// `typed_dns_resolver_config` for c-ares asking the test's DNS server, with
/// more `CaresDnsResolverConfig` fields in `extra` (a YAML mapping body).
fn cares(extra: &str) -> String {
    format!(
        r#"typed_dns_resolver_config:
  name: envoy.network.dns_resolver.cares
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig
    resolvers: [{{socket_address: {{address: 127.0.0.1, port_value: {{{{port:dns}}}}}}}}]
    {}"#,
        common::indent(extra, 4)
    )
}

/// What a user sees of one scenario.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    status: u16,
    udp_queries: bool,
    tcp_queries: bool,
    /// Queries after `watch` more time with a fast refresh: "few" (cached)
    /// or "many".
    refreshes: Option<&'static str>,
}

/// Runs one scenario on `binary`: starts a DNS server answering `NAME` with
/// 127.0.0.1 (TTL `ttl`), then the proxy, and sends `GET /` until the cluster
/// has resolved (bounded). With `watch`, also counts the queries over that
/// time.
fn observe(binary: Binary, template: &str, ttl: u32, watch: Option<Duration>) -> Seen {
    let echo = EchoServer::start("echo").expect("echo upstream");
    let dns = DnsServer::start(&[(NAME, Ipv4Addr::LOCALHOST)], ttl).expect("DNS server");
    let mut ports = Ports::new();
    ports.insert("echo", echo.port());
    ports.insert("dns", dns.port());
    let proxy = ProxyBuilder::new(binary)
        .config(template)
        .ports(&ports)
        .start()
        .expect("proxy starts");
    let status = get_until_ok(&proxy);
    let refreshes = watch.map(|d| {
        let before = dns.udp_queries() + dns.tcp_queries();
        std::thread::sleep(d);
        let n = dns.udp_queries() + dns.tcp_queries() - before;
        if n <= 2 { "few" } else { "many" }
    });
    Seen {
        status,
        udp_queries: dns.udp_queries() > 0,
        tcp_queries: dns.tcp_queries() > 0,
        refreshes,
    }
}

/// `GET /` through the listener until it answers 200 (at most 5 s); the last
/// status.
fn get_until_ok(proxy: &Proxy) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(5);
    let req = Request::get("/", "example.com").to_bytes();
    loop {
        let status = send_once(proxy.addr("listener"), &req).map_or(0, |r| r.status);
        if status == 200 || Instant::now() >= deadline {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `template` on rvoy and on Envoy (when installed) and checks both see
/// `want`.
fn check(label: &str, template: &str, ttl: u32, watch: Option<Duration>, want: Seen) {
    let rvoy = observe(
        Binary::Rvoy(env!("CARGO_BIN_EXE_rvoy").into()),
        template,
        ttl,
        watch,
    );
    assert_eq!(rvoy, want, "{label}: rvoy");
    match Binary::envoy() {
        Some(envoy) => {
            let oracle = observe(envoy, template, ttl, watch);
            assert_eq!(
                oracle, want,
                "{label}: Envoy disagrees with the expectation"
            );
        }
        None => eprintln!("{label}: differential part skipped: Envoy is not installed"),
    }
}

fn ok(udp: bool, tcp: bool) -> Seen {
    Seen {
        status: 200,
        udp_queries: udp,
        tcp_queries: tcp,
        refreshes: None,
    }
}

#[test]
fn cares_typed_config_asks_its_resolvers() {
    check(
        "cares over UDP",
        &config(NAME, &cares(""), ""),
        30,
        None,
        ok(true, false),
    );
    check(
        "cares over TCP",
        &config(
            NAME,
            &cares("dns_resolver_options: {use_tcp_for_dns_lookups: true}"),
            "",
        ),
        30,
        None,
        ok(false, true),
    );
}

#[test]
fn dns_resolution_config_and_the_bootstrap_resolver() {
    check(
        "cluster dns_resolution_config over TCP",
        &config(
            NAME,
            "dns_resolution_config:\n  resolvers: [{socket_address: {address: 127.0.0.1, port_value: {{port:dns}}}}]\n  dns_resolver_options: {use_tcp_for_dns_lookups: true}",
            "",
        ),
        30,
        None,
        ok(false, true),
    );
    check(
        "bootstrap typed resolver, shared by the cluster",
        &config(NAME, "", &cares("")),
        30,
        None,
        ok(true, false),
    );
}

#[test]
fn cares_caches_answers_only_when_asked() {
    let fast = "dns_refresh_rate: 0.1s\n";
    check(
        "no query cache (Envoy's default)",
        &config(NAME, &format!("{fast}{}", cares("")), ""),
        300,
        Some(Duration::from_millis(1500)),
        Seen {
            refreshes: Some("many"),
            ..ok(true, false)
        },
    );
    check(
        "qcache_max_ttl",
        &config(NAME, &format!("{fast}{}", cares("qcache_max_ttl: 300")), ""),
        300,
        Some(Duration::from_millis(1500)),
        Seen {
            refreshes: Some("few"),
            ..ok(true, false)
        },
    );
}

#[test]
fn getaddrinfo_and_hickory_resolvers() {
    check(
        "getaddrinfo resolves localhost",
        &config(
            "localhost",
            "typed_dns_resolver_config:\n  name: envoy.network.dns_resolver.getaddrinfo\n  typed_config:\n    \"@type\": type.googleapis.com/envoy.extensions.network.dns_resolver.getaddrinfo.v3.GetAddrInfoDnsResolverConfig\n    num_retries: 2",
            "",
        ),
        30,
        None,
        ok(false, false),
    );
    check(
        "hickory asks its resolvers",
        &config(
            NAME,
            "typed_dns_resolver_config:\n  name: envoy.network.dns_resolver.hickory\n  typed_config:\n    \"@type\": type.googleapis.com/envoy.extensions.network.dns_resolver.hickory.v3.HickoryDnsResolverConfig\n    resolvers: [{socket_address: {address: 127.0.0.1, port_value: {{port:dns}}}}]",
            "",
        ),
        30,
        None,
        ok(true, false),
    );
}
