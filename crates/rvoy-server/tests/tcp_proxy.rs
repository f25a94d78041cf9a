//! `envoy.filters.network.tcp_proxy` as a user sees it: bytes relayed both
//! ways in order, half-close passed on, large payloads, `tcp.<prefix>.*` and
//! cluster stats, unreachable upstreams (connect attempts, flags in the TCP
//! access log with Envoy's default format), weighted clusters, the idle
//! timeout, TLS termination in front of a TCP proxy, and listener access
//! logs. Where Envoy is installed, the access log and stats are compared
//! with Envoy's on the same config and traffic.

mod pki;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use pki::{Pki, stat, wait_until};
use rvoy_testkit::{Binary, Ports, Proxy, ProxyBuilder, TcpEcho};

fn rvoy() -> Binary {
    Binary::Rvoy(env!("CARGO_BIN_EXE_rvoy").into())
}

fn start(binary: Binary, config: &str, ports: &Ports) -> Proxy {
    ProxyBuilder::new(binary)
        .config(config)
        .ports(ports)
        .extra_args(&["--file-flush-interval-msec", "50"])
        .start()
        .expect("proxy starts and listens")
}

const ADMIN: &str =
    "admin: {address: {socket_address: {address: 127.0.0.1, port_value: {{port:admin}}}}}";

fn cluster(name: &str, port: &str) -> String {
    format!(
        r#"  - name: {name}
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: {name}
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {{{{port:{port}}}}}}}}}}}}}]}}]
"#
    )
}

/// One listener with a TCP proxy configured by `tcp` (YAML mapping lines,
/// indented for the typed config), and `clusters`.
fn tcp_config(tcp: &str, listener_extra: &str, clusters: &str) -> String {
    format!(
        r#"{ADMIN}
static_resources:
  listeners:
  - name: tcp
    address: {{socket_address: {{address: 127.0.0.1, port_value: {{{{port:listener}}}}}}}}
    {listener_extra}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          {tcp}
  clusters:
{clusters}"#
    )
}

fn connect(proxy: &Proxy) -> TcpStream {
    let s = TcpStream::connect(proxy.addr("listener")).expect("connects");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s
}

fn read_exact_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).expect("echoed bytes");
    buf
}

fn read_to_close(s: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (out, true),
            Err(_) => return (out, false),
        }
    }
}

#[test]
fn relays_bytes_with_half_close_and_counts_them() {
    let echo = TcpEcho::start().expect("echo");
    let mut ports = Ports::new();
    ports.insert("echo", echo.port());
    let cfg = tcp_config(
        "stat_prefix: echo\n          cluster: echo",
        "",
        &cluster("echo", "echo"),
    );
    let proxy = start(rvoy(), &cfg, &ports);
    let mut s = connect(&proxy);
    for part in ["one ", "two ", "three\n"] {
        s.write_all(part.as_bytes()).expect("write");
    }
    assert_eq!(read_exact_n(&mut s, 14), b"one two three\n");
    drop(s);
    // Half-close: the FIN reaches the upstream, its answer and FIN come back.
    let mut s = connect(&proxy);
    s.write_all(b"bye\n").expect("write");
    s.shutdown(Shutdown::Write).expect("half-close");
    assert_eq!(read_to_close(&mut s), (b"bye\n".to_vec(), true));
    // 1 MiB each way.
    let mut s = connect(&proxy);
    let payload: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let writer = {
        let mut w = s.try_clone().expect("clone");
        let p = payload.clone();
        std::thread::spawn(move || {
            w.write_all(&p).expect("write");
            w.shutdown(Shutdown::Write).expect("half-close");
        })
    };
    let (got, closed) = read_to_close(&mut s);
    writer.join().expect("writer");
    assert!(closed);
    assert_eq!(got.len(), payload.len());
    assert!(got == payload, "bytes arrive in order");
    let admin = proxy.port("admin");
    let total = (14 + 4 + payload.len()) as u64;
    assert!(wait_until(Duration::from_secs(5), || stat(
        admin,
        "tcp.echo.downstream_cx_tx_bytes_total"
    ) == Some(total)));
    assert_eq!(stat(admin, "tcp.echo.downstream_cx_total"), Some(3));
    assert_eq!(
        stat(admin, "tcp.echo.downstream_cx_rx_bytes_total"),
        Some(total)
    );
    assert_eq!(stat(admin, "cluster.echo.upstream_cx_total"), Some(3));
    assert_eq!(
        stat(admin, "cluster.echo.upstream_cx_tx_bytes_total"),
        Some(total)
    );
}

/// The observations of the unreachable-upstream test (for both binaries).
fn unreachable_observations(proxy: &Proxy) -> Vec<String> {
    let mut s = connect(proxy);
    let _ = s.write_all(b"anyone?");
    let (got, closed) = read_to_close(&mut s);
    let mut seen = vec![format!("received {} bytes, closed {closed}", got.len())];
    let lines = proxy
        .wait_stdout_lines("\"- - -\"", 1, Duration::from_secs(5))
        .expect("access log line");
    // Envoy's default format, with the time and duration masked.
    let line = lines[0].clone();
    let masked = line
        .split_once("] ")
        .map(|(_, rest)| rest.to_owned())
        .unwrap_or(line);
    let fields: Vec<&str> = masked.split(' ').collect();
    let mut fields: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
    // `"- - -" 0 UF,URX <bytes received> <bytes sent> <duration> ...`
    if fields.len() > 7 {
        fields[7] = "<duration>".to_owned();
    }
    seen.push(proxy.normalize(&fields.join(" ")));
    let admin = proxy.port("admin");
    for name in [
        "tcp.dead.downstream_cx_total",
        "cluster.dead.upstream_cx_connect_fail",
        "cluster.dead.upstream_cx_connect_attempts_exceeded",
        "cluster.dead.upstream_cx_total",
    ] {
        seen.push(format!("{name}: {:?}", stat(admin, name)));
    }
    seen
}

#[test]
fn unreachable_upstream_closes_and_logs_flags() {
    let mut ports = Ports::new();
    let dead = rvoy_testkit::ports::free_port().expect("port");
    ports.insert("dead", dead);
    let cfg = tcp_config(
        r#"stat_prefix: dead
          cluster: dead
          max_connect_attempts: 3
          access_log:
          - name: envoy.access_loggers.stdout
            typed_config: {"@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog}"#,
        "",
        &cluster("dead", "dead"),
    );
    let proxy = start(rvoy(), &cfg, &ports);
    let seen = unreachable_observations(&proxy);
    assert_eq!(
        seen,
        [
            "received 0 bytes, closed true",
            "\"- - -\" 0 UF,URX 0 0 <duration> - \"-\" \"-\" \"-\" \"-\" \"127.0.0.1:{{port:dead}}\"",
            "tcp.dead.downstream_cx_total: Some(1)",
            "cluster.dead.upstream_cx_connect_fail: Some(3)",
            "cluster.dead.upstream_cx_connect_attempts_exceeded: Some(1)",
            "cluster.dead.upstream_cx_total: Some(3)",
        ]
    );
    match Binary::envoy() {
        Some(envoy) => {
            let oracle = start(envoy, &cfg, &ports);
            assert_eq!(unreachable_observations(&oracle), seen, "Envoy disagrees");
        }
        None => eprintln!("differential part skipped: Envoy is not installed"),
    }
}

#[test]
fn weighted_clusters_share_connections() {
    let a = TcpEcho::start().expect("echo a");
    let b = TcpEcho::start().expect("echo b");
    let mut ports = Ports::new();
    ports.insert("a", a.port());
    ports.insert("b", b.port());
    let cfg = tcp_config(
        "stat_prefix: w\n          weighted_clusters: {clusters: [{name: a, weight: 1}, {name: b, weight: 1}]}",
        "",
        &format!("{}{}", cluster("a", "a"), cluster("b", "b")),
    );
    let proxy = start(rvoy(), &cfg, &ports);
    for _ in 0..40 {
        let mut s = connect(&proxy);
        s.write_all(b"x").expect("write");
        assert_eq!(read_exact_n(&mut s, 1), b"x");
    }
    let admin = proxy.port("admin");
    let ca = stat(admin, "cluster.a.upstream_cx_total").unwrap_or(0);
    let cb = stat(admin, "cluster.b.upstream_cx_total").unwrap_or(0);
    assert_eq!(ca + cb, 40);
    assert!(ca > 0 && cb > 0, "both clusters used: {ca} {cb}");
}

#[test]
fn idle_timeout_closes_quiet_connections() {
    let echo = TcpEcho::start().expect("echo");
    let mut ports = Ports::new();
    ports.insert("echo", echo.port());
    let cfg = tcp_config(
        "stat_prefix: idle\n          cluster: echo\n          idle_timeout: 0.3s",
        "",
        &cluster("echo", "echo"),
    );
    let proxy = start(rvoy(), &cfg, &ports);
    let mut s = connect(&proxy);
    s.write_all(b"ping").expect("write");
    assert_eq!(read_exact_n(&mut s, 4), b"ping");
    let (_, closed) = read_to_close(&mut s);
    assert!(closed);
    assert_eq!(stat(proxy.port("admin"), "tcp.idle.idle_timeout"), Some(1));
}

#[test]
fn tls_terminated_in_front_of_tcp_proxy_with_listener_log() {
    let has_openssl = std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_ok();
    if !has_openssl {
        eprintln!("skipped: openssl is needed");
        return;
    }
    let pki = Pki::new();
    pki.leaf("server", "localhost", &["localhost"], false);
    let echo = TcpEcho::start().expect("echo");
    let mut ports = Ports::new();
    ports.insert("echo", echo.port());
    let cfg = format!(
        r#"{ADMIN}
static_resources:
  listeners:
  - name: tls_tcp
    address: {{socket_address: {{address: 127.0.0.1, port_value: {{{{port:listener}}}}}}}}
    access_log:
    - name: envoy.access_loggers.stdout
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
        log_format: {{text_format_source: {{inline_string: "listener %UPSTREAM_CLUSTER% %BYTES_RECEIVED% %BYTES_SENT% %RESPONSE_FLAGS%\n"}}}}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            tls_certificates: [{{certificate_chain: {{filename: {dir}/server.crt}}, private_key: {{filename: {dir}/server.key}}}}]
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tls_tcp
          cluster: echo
  clusters:
{echo}"#,
        dir = pki.dir.display(),
        echo = cluster("echo", "echo"),
    );
    let proxy = start(rvoy(), &cfg, &ports);
    let mut child = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-ign_eof",
            "-connect",
            &format!("127.0.0.1:{}", proxy.port("listener")),
            "-CAfile",
            &pki.path("ca.crt"),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl starts");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"through tls\n").expect("write");
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 12];
        let r = stdout.read_exact(&mut buf);
        (r.is_ok(), buf)
    });
    let done = wait_until(Duration::from_secs(5), || reader.is_finished());
    let _ = child.kill();
    let _ = child.wait();
    assert!(done, "echo through TLS arrived");
    let (ok, buf) = reader.join().expect("reader");
    assert!(ok);
    assert_eq!(&buf, b"through tls\n");
    let lines = proxy
        .wait_stdout_lines("listener ", 1, Duration::from_secs(5))
        .expect("listener access log");
    assert_eq!(lines[0], "listener echo 12 12 -");
    let admin = proxy.port("admin");
    assert_eq!(
        stat(
            admin,
            &format!(
                "listener.127.0.0.1_{}.ssl.handshake",
                proxy.port("listener")
            )
        ),
        Some(1)
    );
}

#[test]
fn tcp_proxy_fields_rvoy_lacks_are_rejected() {
    let mut ports = Ports::new();
    ports.insert("echo", rvoy_testkit::ports::free_port().expect("port"));
    for (field, yaml) in [
        ("tunneling_config", "tunneling_config: {hostname: x}"),
        ("hash_policy", "hash_policy: [{source_ip: {}}]"),
        (
            "metadata_match",
            "metadata_match: {filter_metadata: {x: {y: z}}}",
        ),
    ] {
        let cfg = tcp_config(
            &format!("stat_prefix: t\n          cluster: echo\n          {yaml}"),
            "",
            &cluster("echo", "echo"),
        );
        let out = ProxyBuilder::new(rvoy())
            .config(&cfg)
            .ports(&ports)
            .args(&["--mode", "validate", "-c", "{{config}}"])
            .run_to_exit(Duration::from_secs(20))
            .expect("runs");
        assert_eq!(out.code, Some(1), "{field}: {}", out.stderr);
        assert!(
            format!("{}{}", out.stdout, out.stderr).contains(field),
            "{field}: {}",
            out.stderr
        );
    }
}
