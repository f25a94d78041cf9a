//! Shared helpers of rvoy's integration tests: which binary runs (rvoy, or Envoy with
//! `RVOY_TEST_TARGET=envoy` to check that the tests assert Envoy's behaviour), and config
//! templates for the usual listener + HTTP connection manager + clusters shape.

#![allow(dead_code)]

use std::time::Duration;

use rvoy_testkit::{Binary, Ports, Proxy, ProxyBuilder};

/// Bound for one request in these tests.
pub const T: Duration = Duration::from_secs(10);

/// The binary under test: rvoy (this package's `rvoy`), or Envoy when
/// `RVOY_TEST_TARGET=envoy` (the tests then check themselves against the oracle).
pub fn binary() -> Binary {
    if std::env::var("RVOY_TEST_TARGET").as_deref() == Ok("envoy") {
        Binary::envoy().expect("RVOY_TEST_TARGET=envoy but Envoy is not installed")
    } else {
        Binary::Rvoy(env!("CARGO_BIN_EXE_rvoy").into())
    }
}

/// The binaries a differential test runs against: rvoy, then Envoy when installed.
pub fn targets() -> Vec<Binary> {
    let mut t = vec![Binary::Rvoy(env!("CARGO_BIN_EXE_rvoy").into())];
    match Binary::envoy() {
        Some(e) => t.push(e),
        None => eprintln!("Envoy is not installed: running against rvoy only"),
    }
    t
}

/// Whether the binary under test is Envoy.
pub fn is_envoy() -> bool {
    matches!(binary(), Binary::Envoy(_))
}

/// Indents every line but the first of `text` by `n` spaces (to embed YAML blocks).
pub fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.trim_end()
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 || l.is_empty() {
                l.to_owned()
            } else {
                format!("{pad}{l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A bootstrap: one listener `{{port:listener}}` with an HTTP connection manager whose
/// `virtual_hosts` are `vhosts` (a YAML list), extra HCM fields `hcm_extra` (YAML
/// mapping, may be empty), and `clusters` (a YAML list, may be empty).
pub fn hcm(vhosts: &str, hcm_extra: &str, clusters: &str) -> String {
    let clusters = if clusters.trim().is_empty() {
        "[]".to_owned()
    } else {
        indent(clusters, 4)
    };
    let extra = if hcm_extra.trim().is_empty() {
        String::new()
    } else {
        format!("          {}\n", indent(hcm_extra, 10))
    };
    format!(
        r#"static_resources:
  listeners:
  - name: listener
    address: {{socket_address: {{address: 127.0.0.1, port_value: {{{{port:listener}}}}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
{extra}          route_config:
            name: local
            virtual_hosts:
            {vhosts}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
    {clusters}
"#,
        vhosts = indent(vhosts, 12),
    )
}

/// A STATIC cluster `name` with one endpoint at `127.0.0.1:{{port:PORT_NAME}}`;
/// `extra` is more cluster fields (YAML mapping, may be empty).
pub fn static_cluster(name: &str, port_name: &str, extra: &str) -> String {
    let extra = if extra.trim().is_empty() {
        String::new()
    } else {
        format!("\n  {}", indent(extra, 2))
    };
    format!(
        r#"- name: {name}
  type: STATIC
  connect_timeout: 1s{extra}
  load_assignment:
    cluster_name: {name}
    endpoints:
    - lb_endpoints:
      - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {{{{port:{port_name}}}}}}}}}}}"#
    )
}

/// One virtual host `name` for `domains` (YAML flow list) with `routes` (YAML list).
pub fn vhost(name: &str, domains: &str, routes: &str) -> String {
    format!(
        "- name: {name}\n  domains: {domains}\n  routes:\n  {}",
        indent(routes, 2)
    )
}

/// Starts the binary under test on `config`, with `ports` (echo upstreams) preset.
pub fn start(config: &str, ports: &Ports) -> Proxy {
    start_with(config, ports, &[])
}

/// [`start`] with extra arguments.
pub fn start_with(config: &str, ports: &Ports, extra_args: &[&str]) -> Proxy {
    ProxyBuilder::new(binary())
        .config(config)
        .ports(ports)
        .extra_args(extra_args)
        .start()
        .expect("proxy starts and listens")
}

/// Ports with these echo servers named.
pub fn ports_for(echos: &[&rvoy_testkit::EchoServer]) -> Ports {
    let mut p = Ports::new();
    for e in echos {
        p.insert(e.name(), e.port());
    }
    p
}

/// The value of counter/gauge `name` in the admin's `/stats` (`None` when
/// absent); the proxy's admin listens on `{{port:admin}}`.
pub fn stat(proxy: &Proxy, name: &str) -> Option<u64> {
    let req = rvoy_testkit::raw::Request::new(
        "GET",
        &format!("/stats?filter=^{}$", name.replace('.', "\\.")),
    )
    .header("host", "admin");
    let r = rvoy_testkit::raw::send_once(proxy.addr("admin"), &req.to_bytes()).ok()?;
    r.body_str().lines().find_map(|l| {
        let (k, v) = l.split_once(": ")?;
        (k == name).then(|| v.trim().parse().ok()).flatten()
    })
}

/// The admin listener, to put before a bootstrap from [`hcm`].
pub const ADMIN: &str =
    "admin: {address: {socket_address: {address: 127.0.0.1, port_value: {{port:admin}}}}}\n";

/// One HTTP/2 frame read by [`H2Frames`].
#[derive(Debug)]
pub struct RawFrame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

/// Whole HTTP/2 frames from a raw connection (a read timeout is no data).
#[derive(Default)]
pub struct H2Frames {
    buf: Vec<u8>,
}

impl H2Frames {
    /// One read of `s`: the frames it completed, or `None` once the connection is
    /// closed (EOF or error).
    pub fn read(&mut self, s: &mut std::net::TcpStream) -> Option<Vec<RawFrame>> {
        use std::io::Read;
        let mut chunk = [0u8; 16384];
        match s.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return None,
        }
        let mut frames = Vec::new();
        while self.buf.len() >= 9 {
            let b = &self.buf;
            let len = usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]);
            if b.len() < 9 + len {
                break;
            }
            frames.push(RawFrame {
                kind: b[3],
                flags: b[4],
                stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
                payload: b[9..9 + len].to_vec(),
            });
            self.buf.drain(..9 + len);
        }
        Some(frames)
    }
}
