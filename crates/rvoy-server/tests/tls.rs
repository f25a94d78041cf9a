//! TLS as an Envoy user sees it, with real clients (`curl`, `openssl
//! s_client`) and certificates generated at test time: downstream TLS with
//! ALPN (h2 and HTTP/1.1), SNI filter chain selection through the TLS
//! inspector, client certificates, certificate choice by key type, TLS
//! parameters, file-based SDS rotation, `/certs`, upstream TLS (SNI, ALPN h2,
//! SAN validation failures, client certificates), `transport_socket_matches`
//! (TLS or plaintext per endpoint) and load-time rejection of fields rvoy
//! does not implement. Where Envoy is installed, the upstream tests also run
//! against it and compare what clients and stats show.

mod pki;

use std::process::Command;
use std::time::Duration;

use pki::{
    ADMIN, Pki, admin_get, cert, curl, direct, direct_with, hcm_filter, run, rvoy, s_client,
    single_chain, start, stat, tls_socket, tools, wait_until, write_sds_certificate,
};
use rvoy_testkit::{Binary, Proxy, ProxyBuilder};

#[test]
fn downstream_alpn_selects_h2_or_http11() {
    if !tools() {
        return;
    }
    let pki = Pki::new();
    pki.leaf("server", "localhost", &["localhost"], false);
    let cfg = single_chain(
        &format!(
            "alpn_protocols: [h2, http/1.1]\n              tls_certificates: [{}]",
            cert("server")
        ),
        "",
        "hello tls",
    );
    let proxy = start(rvoy(), &cfg, &pki);
    let port = proxy.port("listener");
    let (code, out) = curl(&pki, port, "localhost", "/", &["--http2"]);
    assert_eq!((code, out.as_str()), (0, "hello tls\n2"));
    let (code, out) = curl(&pki, port, "localhost", "/", &["--http1.1"]);
    assert_eq!((code, out.as_str()), (0, "hello tls\n1.1"));
    let (code, out) = curl(&pki, port, "localhost", "/", &["--http1.1", "--no-alpn"]);
    assert_eq!((code, out.as_str()), (0, "hello tls\n1.1"));
    let admin = proxy.port("admin");
    let prefix = format!("listener.127.0.0.1_{port}");
    assert_eq!(stat(admin, &format!("{prefix}.ssl.handshake")), Some(3));
    assert_eq!(
        stat(admin, &format!("{prefix}.ssl.versions.TLSv1.3")),
        Some(3)
    );
    assert_eq!(stat(admin, "http.tls.downstream_rq_http2_total"), Some(1));
    assert_eq!(stat(admin, "http.tls.downstream_rq_http1_total"), Some(2));
    // Plaintext to a TLS listener: the handshake fails, the connection closes.
    let (code, _) = {
        let out = run(
            Command::new("curl").args([
                "-sS",
                "--max-time",
                "5",
                &format!("http://127.0.0.1:{port}/"),
            ]),
            Duration::from_secs(10),
        );
        (out.status.code().unwrap_or(-1), ())
    };
    assert_ne!(code, 0);
    assert!(wait_until(Duration::from_secs(5), || stat(
        admin,
        &format!("{prefix}.ssl.connection_error")
    ) == Some(1)));
}

#[test]
fn tls_inspector_selects_chains_by_sni() {
    if !tools() {
        return;
    }
    let pki = Pki::new();
    pki.leaf("a", "a.example.com", &["a.example.com"], false);
    pki.leaf(
        "b",
        "b.example.com",
        &["b.example.com", "*.b.example.com"],
        false,
    );
    let cfg = format!(
        r#"{ADMIN}
static_resources:
  listeners:
  - name: sni
    address: {{socket_address: {{address: 127.0.0.1, port_value: {{{{port:listener}}}}}}}}
    listener_filters:
    - name: envoy.filters.listener.tls_inspector
      typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector}}
    filter_chains:
    - filter_chain_match: {{server_names: [a.example.com]}}
      {tls_a}
      filters:
      {a}
    - filter_chain_match: {{server_names: [b.example.com, "*.b.example.com"]}}
      {tls_b}
      filters:
      {b}
    - filter_chain_match: {{transport_protocol: raw_buffer}}
      filters:
      {plain}
"#,
        tls_a = tls_socket(&format!("tls_certificates: [{}]", cert("a")), ""),
        tls_b = tls_socket(&format!("tls_certificates: [{}]", cert("b")), ""),
        a = direct("chain_a", "chain A"),
        b = direct("chain_b", "chain B"),
        plain = direct("plain", "plaintext"),
    );
    let proxy = start(rvoy(), &cfg, &pki);
    let port = proxy.port("listener");
    let h = s_client(&pki, port, &["-servername", "a.example.com"]);
    assert_eq!(h.subject_cn.as_deref(), Some("a.example.com"), "{}", h.text);
    let h = s_client(&pki, port, &["-servername", "x.b.example.com"]);
    assert_eq!(h.subject_cn.as_deref(), Some("b.example.com"), "{}", h.text);
    let (code, out) = curl(&pki, port, "b.example.com", "/", &[]);
    assert_eq!((code, out.as_str()), (0, "chain B\n1.1"));
    // No chain for this name: the connection is closed during the handshake.
    let h = s_client(&pki, port, &["-servername", "c.example.com"]);
    assert!(h.subject_cn.is_none(), "{}", h.text);
    // Plaintext goes to the raw_buffer chain.
    let out = run(
        Command::new("curl").args([
            "-sS",
            "--max-time",
            "5",
            &format!("http://127.0.0.1:{port}/"),
        ]),
        Duration::from_secs(10),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "plaintext");
    let admin = proxy.port("admin");
    assert_eq!(
        stat(
            admin,
            &format!("listener.127.0.0.1_{port}.no_filter_chain_match")
        ),
        Some(1)
    );
    assert_eq!(stat(admin, "tls_inspector.tls_found"), Some(4));
    assert_eq!(stat(admin, "tls_inspector.tls_not_found"), Some(1));
    assert_eq!(stat(admin, "tls_inspector.sni_found"), Some(4));
}

#[test]
fn client_certificates_are_required_and_checked() {
    if !tools() {
        return;
    }
    let pki = Pki::new();
    pki.leaf("server", "localhost", &["localhost"], false);
    pki.leaf(
        "client",
        "client.example.com",
        &["client.example.com"],
        false,
    );
    pki.leaf("other", "other.example.com", &["other.example.com"], false);
    let common = format!(
        "tls_certificates: [{}]\n              validation_context:\n                trusted_ca: {{filename: CERTS/ca.crt}}\n                match_typed_subject_alt_names: [{{san_type: DNS, matcher: {{exact: client.example.com}}}}]",
        cert("server")
    );
    let cfg = single_chain(&common, "require_client_certificate: true", "mtls ok");
    let proxy = start(rvoy(), &cfg, &pki);
    let port = proxy.port("listener");
    let with = |name: &str| {
        curl(
            &pki,
            port,
            "localhost",
            "/",
            &[
                "--cert",
                &pki.path(&format!("{name}.crt")),
                "--key",
                &pki.path(&format!("{name}.key")),
            ],
        )
    };
    assert_eq!(with("client"), (0, "mtls ok\n1.1".to_owned()));
    assert_ne!(with("other").0, 0);
    assert_ne!(curl(&pki, port, "localhost", "/", &[]).0, 0);
    let admin = proxy.port("admin");
    let prefix = format!("listener.127.0.0.1_{port}.ssl");
    assert!(wait_until(Duration::from_secs(5), || {
        stat(admin, &format!("{prefix}.fail_verify_san")) == Some(1)
            && stat(admin, &format!("{prefix}.fail_verify_no_cert")) == Some(1)
    }));
    assert_eq!(stat(admin, &format!("{prefix}.handshake")), Some(1));
}

#[test]
fn certificate_is_chosen_by_key_type() {
    if !tools() {
        return;
    }
    let pki = Pki::new();
    pki.leaf("ec", "ec.localhost", &["localhost"], false);
    pki.leaf("rsa", "rsa.localhost", &["localhost"], true);
    let cfg = single_chain(
        &format!("tls_certificates: [{}, {}]", cert("ec"), cert("rsa")),
        "",
        "ok",
    );
    let proxy = start(rvoy(), &cfg, &pki);
    let port = proxy.port("listener");
    let h = s_client(
        &pki,
        port,
        &["-servername", "localhost", "-sigalgs", "RSA-PSS+SHA256"],
    );
    assert_eq!(h.subject_cn.as_deref(), Some("rsa.localhost"), "{}", h.text);
    let h = s_client(
        &pki,
        port,
        &["-servername", "localhost", "-sigalgs", "ECDSA+SHA256"],
    );
    assert_eq!(h.subject_cn.as_deref(), Some("ec.localhost"), "{}", h.text);
}

#[test]
fn tls_parameters_are_honoured() {
    if !tools() {
        return;
    }
    let pki = Pki::new();
    pki.leaf("server", "localhost", &["localhost"], false);
    let common = format!(
        "tls_params: {{tls_maximum_protocol_version: TLSv1_2, cipher_suites: [ECDHE-ECDSA-AES256-GCM-SHA384], ecdh_curves: [P-256]}}\n              tls_certificates: [{}]",
        cert("server")
    );
    let proxy = start(rvoy(), &single_chain(&common, "", "ok"), &pki);
    let port = proxy.port("listener");
    let h = s_client(&pki, port, &["-servername", "localhost"]);
    assert_eq!(h.protocol.as_deref(), Some("TLSv1.2"), "{}", h.text);
    assert!(
        h.text.contains("ECDHE-ECDSA-AES256-GCM-SHA384"),
        "{}",
        h.text
    );
    let h = s_client(&pki, port, &["-servername", "localhost", "-tls1_3"]);
    assert!(h.subject_cn.is_none(), "TLS 1.3 was refused: {}", h.text);
    let admin = proxy.port("admin");
    let prefix = format!("listener.127.0.0.1_{port}.ssl");
    assert_eq!(
        stat(
            admin,
            &format!("{prefix}.ciphers.ECDHE-ECDSA-AES256-GCM-SHA384")
        ),
        Some(1)
    );
    assert_eq!(stat(admin, &format!("{prefix}.curves.P-256")), Some(1));
}

#[test]
fn unsupported_tls_fields_are_rejected_at_load() {
    let pki = Pki::new();
    pki.leaf("server", "localhost", &["localhost"], false);
    let cases = [
        (
            "tls_params: {tls_minimum_protocol_version: TLSv1_0}",
            "tls_params.tls_minimum_protocol_version",
        ),
        (
            "tls_params: {cipher_suites: [AES128-SHA]}",
            "tls_params.cipher_suites[0]",
        ),
        (
            "tls_params: {ecdh_curves: [P-521]}",
            "tls_params.ecdh_curves[0]",
        ),
        ("key_log: {path: /tmp/keys}", "common_tls_context.key_log"),
    ];
    for (bad, path) in cases {
        let common = format!(
            "{bad}\n              tls_certificates: [{}]",
            cert("server")
        );
        let cfg = single_chain(&common, "", "x").replace("CERTS", &pki.dir.display().to_string());
        let out = ProxyBuilder::new(rvoy())
            .config(&cfg)
            .args(&["--mode", "validate", "-c", "{{config}}"])
            .run_to_exit(Duration::from_secs(20))
            .expect("runs");
        let text = format!("{}{}", out.stdout, out.stderr);
        assert_eq!(out.code, Some(1), "{bad}: {text}");
        assert!(text.contains(path), "{bad}: {text}");
    }
    // A session ticket key, and a certificate file that does not exist.
    let cfg = single_chain(
        &format!("tls_certificates: [{}]", cert("server")),
        "session_ticket_keys: {keys: [{inline_string: \"0123456789012345678901234567890123456789012345678901234567890123456789012345\"}]}",
        "x",
    )
    .replace("CERTS", &pki.dir.display().to_string());
    let out = ProxyBuilder::new(rvoy())
        .config(&cfg)
        .args(&["--mode", "validate", "-c", "{{config}}"])
        .run_to_exit(Duration::from_secs(20))
        .expect("runs");
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(format!("{}{}", out.stdout, out.stderr).contains("session_ticket_keys"));
    let cfg = single_chain(&format!("tls_certificates: [{}]", cert("missing")), "", "x")
        .replace("CERTS", &pki.dir.display().to_string());
    let out = ProxyBuilder::new(rvoy())
        .config(&cfg)
        .args(&["--mode", "validate", "-c", "{{config}}"])
        .run_to_exit(Duration::from_secs(20))
        .expect("runs");
    assert_eq!(out.code, Some(1));
    assert!(format!("{}{}", out.stdout, out.stderr).contains("missing.crt"));
}

#[test]
fn sds_file_rotation_is_picked_up_without_restart() {
    if !tools() {
        return;
    }
    let pki = Pki::new();
    pki.leaf("one", "one.localhost", &["localhost"], false);
    pki.leaf("two", "two.localhost", &["localhost"], false);
    std::fs::copy(pki.dir.join("one.crt"), pki.dir.join("live.crt")).expect("copy");
    std::fs::copy(pki.dir.join("one.key"), pki.dir.join("live.key")).expect("copy");
    write_sds_certificate(
        &pki,
        &pki.dir.join("live.crt"),
        &pki.dir.join("live.key"),
        "",
    );
    let common = "tls_certificate_sds_secret_configs:\n              - name: server_cert\n                sds_config: {path_config_source: {path: CERTS/sds.yaml}, resource_api_version: V3}";
    let proxy = start(rvoy(), &single_chain(common, "", "rotating"), &pki);
    let port = proxy.port("listener");
    let admin = proxy.port("admin");
    let cn = || s_client(&pki, port, &["-servername", "localhost"]).subject_cn;
    assert_eq!(cn().as_deref(), Some("one.localhost"));
    // An open connection made before the rotation.
    let mut open = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-connect",
            &format!("127.0.0.1:{port}"),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl starts");
    std::thread::sleep(Duration::from_millis(300));
    // Rotate: new files moved into place.
    std::fs::copy(pki.dir.join("two.crt"), pki.dir.join("live.crt.new")).expect("copy");
    std::fs::copy(pki.dir.join("two.key"), pki.dir.join("live.key.new")).expect("copy");
    std::fs::rename(pki.dir.join("live.key.new"), pki.dir.join("live.key")).expect("mv");
    std::fs::rename(pki.dir.join("live.crt.new"), pki.dir.join("live.crt")).expect("mv");
    assert!(
        wait_until(Duration::from_secs(10), || cn().as_deref()
            == Some("two.localhost")),
        "the new certificate is served"
    );
    let prefix = format!("listener.127.0.0.1_{port}");
    assert_eq!(
        stat(
            admin,
            &format!("{prefix}.server_ssl_socket_factory.ssl_context_update_by_sds")
        ),
        // The first load and the rotation, as in Envoy.
        Some(2)
    );
    // The connection opened before the rotation still works.
    {
        use std::io::{Read, Write};
        let mut stdin = open.stdin.take().expect("stdin");
        stdin
            .write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
            .expect("write");
        let mut stdout = open.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stdout.read_to_end(&mut buf);
            buf
        });
        let done = wait_until(Duration::from_secs(5), || {
            matches!(open.try_wait(), Ok(Some(_)))
        });
        if !done {
            let _ = open.kill();
        }
        drop(stdin);
        let body = String::from_utf8_lossy(&reader.join().expect("reader")).into_owned();
        assert!(body.contains("rotating"), "{body}");
    }
    let certs = admin_get(admin, "/certs");
    assert!(certs.contains("live.crt"), "{certs}");
    assert!(
        stat(
            admin,
            &format!("{prefix}.ssl.certificate.server_cert.expiration_unix_time_seconds")
        )
        .is_some_and(|v| v > 0)
    );
}

/// The admin, and a plain HTTP listener `front` on port `listener` with the
/// route list `routes` (the first line of `static_resources.listeners`).
fn front(routes: &str) -> String {
    format!(
        r#"{ADMIN}
static_resources:
  listeners:
  - name: front
    address: {{socket_address: {{address: 127.0.0.1, port_value: {{{{port:listener}}}}}}}}
    filter_chains:
    - filters:
      {hcm}"#,
        hcm = hcm_filter("front", &format!("\n{routes}"))
    )
}

/// `curl` of `path` on the plain listener at `port`: the body and `[status]`.
fn get_plain(port: u16, path: &str) -> String {
    let out = run(
        Command::new("curl").args([
            "-sS",
            "--max-time",
            "5",
            "-w",
            " [%{http_code}]",
            &format!("http://127.0.0.1:{port}{path}"),
        ]),
        Duration::from_secs(10),
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A front listener (plain HTTP) routing to TLS clusters, and a TLS backend
/// listener that only accepts SNI `upstream.example.com`.
fn upstream_config() -> String {
    let tls_cluster = |name: &str, extra: &str, common: &str| {
        format!(
            r#"  - name: {name}
    type: STATIC
    connect_timeout: 2s
    {extra}
    load_assignment:
      cluster_name: {name}
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {{{{port:backend}}}}}}}}}}}}]}}]
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        {common}
"#
        )
    };
    let validation = "validation_context: {trusted_ca: {filename: CERTS/ca.crt}}";
    format!(
        r#"{front}
  - name: backend
    address: {{socket_address: {{address: 127.0.0.1, port_value: {{{{port:backend}}}}}}}}
    listener_filters:
    - name: envoy.filters.listener.tls_inspector
      typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector}}
    filter_chains:
    - filter_chain_match: {{server_names: [upstream.example.com]}}
      {backend_tls}
      filters:
      {backend}
  clusters:
{h1}{h2}{wrong}{nosni}"#,
        backend_tls = tls_socket(
            &format!(
                "alpn_protocols: [h2, http/1.1]\n              tls_certificates: [{}]\n              validation_context: {{trusted_ca: {{filename: CERTS/ca.crt}}}}",
                cert("upstream")
            ),
            "require_client_certificate: true",
        ),
        front = front(
            r#"              - {match: {prefix: "/h2"}, route: {cluster: tls_h2}}
              - {match: {prefix: "/wrong"}, route: {cluster: wrong_san}}
              - {match: {prefix: "/nosni"}, route: {cluster: no_sni}}
              - {match: {prefix: "/"}, route: {cluster: tls_h1}}"#
        ),
        backend = direct("backend", "from backend"),
        h1 = tls_cluster(
            "tls_h1",
            "",
            &format!(
                "sni: upstream.example.com\n        common_tls_context:\n          tls_certificates: [{}]\n          {validation}",
                cert("client")
            )
        ),
        h2 = tls_cluster(
            "tls_h2",
            "typed_extension_protocol_options: {envoy.extensions.upstreams.http.v3.HttpProtocolOptions: {\"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions, explicit_http_config: {http2_protocol_options: {}}}}",
            &format!(
                "sni: upstream.example.com\n        common_tls_context:\n          tls_certificates: [{}]\n          {validation}",
                cert("client")
            )
        ),
        wrong = tls_cluster(
            "wrong_san",
            "",
            &format!(
                "sni: upstream.example.com\n        common_tls_context:\n          tls_certificates: [{}]\n          validation_context: {{trusted_ca: {{filename: CERTS/ca.crt}}, match_typed_subject_alt_names: [{{san_type: DNS, matcher: {{exact: other.example.com}}}}]}}",
                cert("client")
            )
        ),
        nosni = tls_cluster(
            "no_sni",
            "",
            &format!(
                "common_tls_context:\n          tls_certificates: [{}]\n          {validation}",
                cert("client")
            )
        ),
    )
}

/// What a client and the stats saw through the upstream TLS config.
fn upstream_observations(proxy: &Proxy) -> Vec<String> {
    let port = proxy.port("listener");
    let admin = proxy.port("admin");
    let mut seen = Vec::new();
    for path in ["/h1", "/h2", "/wrong", "/nosni"] {
        seen.push(format!("{path}: {}", get_plain(port, path)));
    }
    for name in [
        "cluster.tls_h1.ssl.handshake",
        "cluster.tls_h1.ssl.versions.TLSv1.2",
        "cluster.tls_h2.upstream_cx_http2_total",
        "cluster.wrong_san.ssl.fail_verify_san",
        "cluster.wrong_san.ssl.connection_error",
        "cluster.wrong_san.upstream_cx_connect_fail",
        "http.backend.downstream_rq_http2_total",
        "http.backend.downstream_rq_http1_total",
        "tls_inspector.sni_found",
    ] {
        seen.push(format!("{name}: {:?}", stat(admin, name)));
    }
    seen
}

#[test]
fn upstream_tls_sni_alpn_client_certs_and_san_failures() {
    if !tools() {
        return;
    }
    let pki = upstream_pki();
    pki.leaf(
        "client",
        "client.example.com",
        &["client.example.com"],
        false,
    );
    let expected = [
        "/h1: from backend [200]",
        "/h2: from backend [200]",
        "/wrong: upstream connect error or disconnect/reset before headers. reset reason: remote connection failure [503]",
        "/nosni: upstream connect error or disconnect/reset before headers. reset reason: remote connection failure [503]",
        "cluster.tls_h1.ssl.handshake: Some(1)",
        "cluster.tls_h1.ssl.versions.TLSv1.2: Some(1)",
        "cluster.tls_h2.upstream_cx_http2_total: Some(1)",
        "cluster.wrong_san.ssl.fail_verify_san: Some(1)",
        "cluster.wrong_san.ssl.connection_error: Some(0)",
        "cluster.wrong_san.upstream_cx_connect_fail: Some(1)",
        "http.backend.downstream_rq_http2_total: Some(1)",
        "http.backend.downstream_rq_http1_total: Some(1)",
        "tls_inspector.sni_found: Some(3)",
    ];
    rvoy_then_envoy(&upstream_config(), &pki, upstream_observations, &expected);
}

/// A PKI with the upstream server's certificate (`upstream.example.com`).
fn upstream_pki() -> Pki {
    let pki = Pki::new();
    pki.leaf(
        "upstream",
        "upstream.example.com",
        &["upstream.example.com"],
        false,
    );
    pki
}

/// Runs `cfg` on rvoy, then on Envoy when installed, and checks that
/// `observe` sees `expected` on both.
fn rvoy_then_envoy<S: AsRef<str> + std::fmt::Debug>(
    cfg: &str,
    pki: &Pki,
    observe: impl Fn(&Proxy) -> Vec<String>,
    expected: &[S],
) {
    let expected: Vec<&str> = expected.iter().map(AsRef::as_ref).collect();
    let proxy = start(rvoy(), cfg, pki);
    assert_eq!(observe(&proxy), expected);
    drop(proxy);
    match Binary::envoy() {
        Some(envoy) => {
            let oracle = start(envoy, cfg, pki);
            assert_eq!(observe(&oracle), expected, "Envoy disagrees");
        }
        None => eprintln!("differential part skipped: Envoy is not installed"),
    }
}

#[test]
fn certs_endpoint_lists_every_context() {
    let pki = Pki::new();
    pki.leaf("server", "localhost", &["localhost", "example.com"], false);
    let common = format!(
        "tls_certificates: [{}]\n              validation_context: {{trusted_ca: {{filename: CERTS/ca.crt}}}}",
        cert("server")
    );
    let proxy = start(rvoy(), &single_chain(&common, "", "ok"), &pki);
    let body = admin_get(proxy.port("admin"), "/certs");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let certs = v["certificates"].as_array().expect("certificates");
    assert_eq!(certs.len(), 1, "{body}");
    let chain = &certs[0]["cert_chain"][0];
    assert_eq!(chain["path"], pki.path("server.crt"));
    assert_eq!(
        chain["subject_alt_names"],
        serde_json::json!([{"dns": "localhost"}, {"dns": "example.com"}, {"ip_address": "127.0.0.1"}])
    );
    assert!(
        chain["serial_number"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert!(
        chain["valid_from"]
            .as_str()
            .is_some_and(|s| s.ends_with('Z'))
    );
    assert_eq!(certs[0]["ca_cert"][0]["path"], pki.path("ca.crt"));
    if let Some(envoy) = Binary::envoy() {
        let oracle = start(envoy, &single_chain(&common, "", "ok"), &pki);
        let theirs: serde_json::Value =
            serde_json::from_str(&admin_get(oracle.port("admin"), "/certs")).expect("JSON");
        assert_eq!(theirs, v, "Envoy's /certs differs");
    } else {
        eprintln!("differential part skipped: Envoy is not installed");
    }
}

/// Two TLS listeners: `idle` (the connection manager's `idle_timeout` 0.5 s, ALPN h2 and
/// HTTP/1.1) and `connect` (the chain's `transport_socket_connect_timeout` 0.3 s, an
/// `idle_timeout` of 5 s).
fn unfinished_config() -> String {
    let socket = tls_socket(
        &format!(
            "alpn_protocols: [h2, http/1.1]\n              tls_certificates: [{}]",
            cert("server")
        ),
        "",
    );
    format!(
        r#"{ADMIN}
static_resources:
  listeners:
  - name: idle
    address: {{socket_address: {{address: 127.0.0.1, port_value: {{{{port:idle}}}}}}}}
    filter_chains:
    - {socket}
      filters:
      {idle}
  - name: connect
    address: {{socket_address: {{address: 127.0.0.1, port_value: {{{{port:connect}}}}}}}}
    filter_chains:
    - transport_socket_connect_timeout: 0.3s
      {socket}
      filters:
      {connect}
"#,
        idle = direct_with(
            "idle",
            "",
            "common_http_protocol_options: {idle_timeout: 0.5s}"
        ),
        connect = direct_with(
            "connect",
            "",
            "common_http_protocol_options: {idle_timeout: 5s}"
        ),
    )
}

/// How long until the proxy closes a TCP connection to `port` on which the client sends
/// nothing (bounded).
fn closed_after_silence(port: u16) -> Option<Duration> {
    use std::io::Read;
    let started = std::time::Instant::now();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    let mut scratch = [0u8; 256];
    match s.read(&mut scratch) {
        Ok(0) => Some(started.elapsed()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Some(started.elapsed()),
        _ => None,
    }
}

/// What clients and stats see of connections that never get to HTTP: no TLS handshake at
/// all, and a completed handshake (ALPN h2) with no byte after it.
fn unfinished_observations(proxy: &Proxy, pki: &Pki) -> Vec<String> {
    let (idle, connect) = (proxy.port("idle"), proxy.port("connect"));
    let admin = proxy.port("admin");
    let within = |d: Option<Duration>, from: u64, to: u64| {
        d.is_some_and(|d| d >= Duration::from_millis(from) && d < Duration::from_millis(to))
    };
    let mut seen = vec![
        format!(
            "no handshake, idle_timeout: {}",
            within(closed_after_silence(idle), 450, 2500)
        ),
        format!(
            "no handshake, transport_socket_connect_timeout: {}",
            within(closed_after_silence(connect), 250, 2500)
        ),
    ];
    let started = std::time::Instant::now();
    let h = s_client(
        pki,
        idle,
        &["-servername", "localhost", "-alpn", "h2", "-ign_eof"],
    );
    seen.push(format!(
        "h2 without a byte: alpn {:?}, closed at idle_timeout: {}",
        h.alpn,
        within(Some(started.elapsed()), 450, 5000)
    ));
    let prefix = format!("listener.127.0.0.1_{connect}");
    let names = [
        "http.idle.downstream_cx_total".to_owned(),
        "http.idle.downstream_cx_ssl_total".to_owned(),
        "http.idle.downstream_cx_idle_timeout".to_owned(),
        "http.idle.downstream_cx_destroy_local".to_owned(),
        "http.idle.downstream_cx_http1_total".to_owned(),
        "http.idle.downstream_cx_http2_total".to_owned(),
        "http.connect.downstream_cx_total".to_owned(),
        "http.connect.downstream_cx_ssl_total".to_owned(),
        "http.connect.downstream_cx_destroy_local".to_owned(),
        "http.connect.downstream_cx_idle_timeout".to_owned(),
        format!("{prefix}.downstream_cx_transport_socket_connect_timeout"),
    ];
    // The counts settle once the connections are closed.
    wait_until(Duration::from_secs(5), || {
        stat(admin, "http.idle.downstream_cx_destroy") == Some(2)
            && stat(admin, "http.connect.downstream_cx_destroy") == Some(1)
    });
    for name in names {
        let shown = name.replace(&prefix, "listener.<connect>");
        seen.push(format!("{shown}: {:?}", stat(admin, &name)));
    }
    seen
}

#[test]
fn unfinished_tls_connections_are_bounded_as_in_envoy() {
    if !tools() {
        return;
    }
    let pki = Pki::new();
    pki.leaf("server", "localhost", &["localhost"], false);
    let expected = [
        "no handshake, idle_timeout: true",
        "no handshake, transport_socket_connect_timeout: true",
        "h2 without a byte: alpn Some(\"h2\"), closed at idle_timeout: true",
        "http.idle.downstream_cx_total: Some(2)",
        "http.idle.downstream_cx_ssl_total: Some(2)",
        "http.idle.downstream_cx_idle_timeout: Some(2)",
        "http.idle.downstream_cx_destroy_local: Some(2)",
        "http.idle.downstream_cx_http1_total: Some(0)",
        "http.idle.downstream_cx_http2_total: Some(0)",
        "http.connect.downstream_cx_total: Some(1)",
        "http.connect.downstream_cx_ssl_total: Some(1)",
        "http.connect.downstream_cx_destroy_local: Some(1)",
        "http.connect.downstream_cx_idle_timeout: Some(0)",
        "listener.<connect>.downstream_cx_transport_socket_connect_timeout: Some(1)",
    ];
    rvoy_then_envoy(
        &unfinished_config(),
        &pki,
        |p| unfinished_observations(p, &pki),
        &expected,
    );
}

/// A plain front listener routing to cluster `mixed`, whose four endpoints
/// are two backends answering `tls` over TLS and `plain` in plaintext, two
/// endpoints each with different transport sockets (so they must not share
/// connections). `transport_socket_matches` picks each endpoint's socket: by
/// its own metadata, by its locality's, or the default (plaintext).
fn socket_matches_config() -> String {
    let ep = |port: &str, meta: &str| {
        format!(
            "{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {{{{port:{port}}}}}}}}}}}{meta}}}"
        )
    };
    let meta =
        |m: &str| format!(", metadata: {{filter_metadata: {{envoy.transport_socket_match: {m}}}}}");
    // A listener answering `tls` over TLS and `plain` in plaintext.
    let backend = |port: &str| {
        format!(
            r#"  - name: {port}
    address: {{socket_address: {{address: 127.0.0.1, port_value: {{{{port:{port}}}}}}}}}
    listener_filters:
    - name: envoy.filters.listener.tls_inspector
      typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector}}
    filter_chains:
    - filter_chain_match: {{transport_protocol: tls}}
      {backend_tls}
      filters:
      {tls}
    - filters:
      {plain}
"#,
            backend_tls = tls_socket(&format!("tls_certificates: [{}]", cert("upstream")), ""),
            tls = direct("backend_tls", "tls"),
            plain = direct("backend_plain", "plain"),
        )
    };
    format!(
        r#"{front}
{backend}{backend2}  clusters:
  - name: mixed
    type: STATIC
    connect_timeout: 2s
    load_assignment:
      cluster_name: mixed
      endpoints:
      - lb_endpoints: [{tls_by_endpoint}, {default}]
      - metadata: {{filter_metadata: {{envoy.transport_socket_match: {{tls: true}}}}}}
        lb_endpoints: [{tls_by_locality}, {raw}]
    transport_socket_matches:
    - name: tls-on
      match: {{tls: true}}
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
          common_tls_context: {{validation_context: {{trusted_ca: {{filename: CERTS/ca.crt}}}}}}
    - name: raw
      match: {{tls: false}}
      transport_socket:
        name: envoy.transport_sockets.raw_buffer
        typed_config: {{"@type": type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer}}
"#,
        front = front(r#"              - {match: {prefix: "/"}, route: {cluster: mixed}}"#),
        backend = backend("backend"),
        backend2 = backend("backend2"),
        tls_by_endpoint = ep("backend", &meta("{tls: true, zone: a}")),
        default = ep("backend", ""),
        tls_by_locality = ep("backend2", ""),
        raw = ep("backend2", &meta("{tls: false}")),
    )
}

/// Eight requests through `mixed` (two per endpoint, round robin) and the
/// stats that show which transport socket each endpoint chose.
fn socket_matches_observations(proxy: &Proxy) -> Vec<String> {
    let port = proxy.port("listener");
    let admin = proxy.port("admin");
    let mut bodies: Vec<String> = (0..8).map(|_| get_plain(port, "/")).collect();
    bodies.sort();
    for name in [
        "cluster.mixed.default.total_match_count",
        "cluster.mixed.tls-on.total_match_count",
        "cluster.mixed.raw.total_match_count",
        "cluster.mixed.upstream_rq_200",
        "http.backend_tls.downstream_rq_total",
        "http.backend_plain.downstream_rq_total",
    ] {
        bodies.push(format!("{name}: {:?}", stat(admin, name)));
    }
    let handshakes = stat(admin, "cluster.mixed.ssl.handshake");
    bodies.push(format!(
        "cluster.mixed.ssl.handshake between 2 and 4: {}",
        handshakes.is_some_and(|n| (2..=4).contains(&n))
    ));
    bodies
}

#[test]
fn transport_socket_matches_pick_tls_per_endpoint() {
    if !tools() {
        return;
    }
    let pki = upstream_pki();
    let mut expected = vec!["plain [200]".to_owned(); 4];
    expected.extend(vec!["tls [200]".to_owned(); 4]);
    expected.extend(
        [
            "cluster.mixed.default.total_match_count: Some(1)",
            "cluster.mixed.tls-on.total_match_count: Some(2)",
            "cluster.mixed.raw.total_match_count: Some(1)",
            "cluster.mixed.upstream_rq_200: Some(8)",
            "http.backend_tls.downstream_rq_total: Some(4)",
            "http.backend_plain.downstream_rq_total: Some(4)",
            "cluster.mixed.ssl.handshake between 2 and 4: true",
        ]
        .map(String::from),
    );
    rvoy_then_envoy(
        &socket_matches_config(),
        &pki,
        socket_matches_observations,
        &expected,
    );
}

/// `--mode validate` on `cfg`: exit code and output.
fn validate(binary: Binary, cfg: &str, pki: &Pki) -> (Option<i32>, String) {
    let out = ProxyBuilder::new(binary)
        .config(&cfg.replace("CERTS", &pki.dir.display().to_string()))
        .args(&["--mode", "validate", "-c", "{{config}}"])
        .run_to_exit(Duration::from_secs(30))
        .expect("runs");
    (out.code, format!("{}{}", out.stdout, out.stderr))
}

#[test]
fn transport_socket_matches_config_errors() {
    let pki = Pki::new();
    pki.leaf("upstream", "upstream.example.com", &[], false);
    let good = socket_matches_config();
    let raw = "      transport_socket:\n        name: envoy.transport_sockets.raw_buffer\n        typed_config: {\"@type\": type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer}\n";
    assert!(good.contains(raw));
    // Envoy's own errors: a match without a transport socket, a match
    // without a name.
    let cases = [
        (
            good.replace(raw, ""),
            "Didn't find a registered implementation for '' with type URL: ''",
        ),
        (
            good.replace("name: raw\n", "name: \"\"\n"),
            "value length must be at least 1 characters",
        ),
    ];
    for (cfg, message) in &cases {
        let (code, text) = validate(rvoy(), cfg, &pki);
        assert_eq!(code, Some(1), "{text}");
        assert!(text.contains(message), "{message}: {text}");
        if let Some(envoy) = Binary::envoy() {
            let (code, text) = validate(envoy, cfg, &pki);
            assert_eq!(code, Some(1), "Envoy: {text}");
            assert!(text.contains(message), "Envoy: {message}: {text}");
        }
    }
    // The matcher form is not implemented by rvoy: rejected with its path.
    let cfg = good.replace(
        "    transport_socket_matches:\n",
        "    transport_socket_matcher: {on_no_match: {action: {name: tls, typed_config: {\"@type\": type.googleapis.com/envoy.extensions.matching.common_inputs.transport_socket.v3.TransportSocketNameAction, name: tls-on}}}}\n    transport_socket_matches:\n",
    );
    let (code, text) = validate(rvoy(), &cfg, &pki);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("static_resources.clusters[0].transport_socket_matcher: envoy.config.cluster.v3.Cluster.transport_socket_matcher is not supported by rvoy"),
        "{text}"
    );
}

/// Writes the SDS file `sds.yaml` (replacing it atomically, as a rotation does) with
/// `body` as its content.
fn replace_sds_file(pki: &Pki, body: &str) {
    let tmp = pki.dir.join("sds.yaml.tmp");
    std::fs::write(&tmp, body).expect("sds file");
    std::fs::rename(&tmp, pki.dir.join("sds.yaml")).expect("atomic replace");
}

/// An SDS file with `server_cert` from `chain` and `key` of the PKI, at `version`.
fn sds_file(pki: &Pki, version: &str, chain: &str, key: &str) -> String {
    format!(
        r#"version_info: "{version}"
resources:
- "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret
  name: server_cert
  tls_certificate:
    certificate_chain: {{filename: {}}}
    private_key: {{filename: {}}}
"#,
        pki.path(chain),
        pki.path(key)
    )
}

/// The `sds.server_cert.*` counters and the `version` gauge (`update_time` checked to
/// be set, its value being a time).
fn sds_stats(admin: u16) -> Vec<(String, u64)> {
    let body = admin_get(admin, "/stats?filter=^sds\\.server_cert\\.");
    let mut out = Vec::new();
    for line in body.lines() {
        let Some((name, value)) = line.split_once(": ") else {
            continue;
        };
        let Ok(value) = value.trim().parse::<u64>() else {
            continue;
        };
        if name == "sds.server_cert.update_time" {
            assert!(value > 1_600_000_000_000, "{line}");
            continue;
        }
        out.push((name.to_owned(), value));
    }
    out
}

/// The SDS scenario against `binary`: the secret's stats after the first read, after a
/// key rotation (certificate files replaced), after an accepted update, after one the listener refuses (a key that does not match the
/// certificate) and after an unreadable file.
fn sds_stats_scenario(binary: Binary) -> Vec<Vec<(String, u64)>> {
    let pki = Pki::new();
    pki.leaf("one", "one.localhost", &["localhost"], false);
    pki.leaf("two", "two.localhost", &["localhost"], false);
    pki.leaf("three", "three.localhost", &["localhost"], false);
    // The first secret's certificate and key in one file, so that the key
    // rotation below replaces both with one rename: replacing two files one
    // after the other shows the watcher a key that does not match its
    // certificate in between, and Envoy counts that as `key_rotation_failed`
    // whenever its watch fires there.
    let pem = |name: &str| {
        let mut both = std::fs::read(pki.dir.join(format!("{name}.crt"))).expect("crt");
        both.extend(std::fs::read(pki.dir.join(format!("{name}.key"))).expect("key"));
        both
    };
    std::fs::write(pki.dir.join("live.pem"), pem("one")).expect("live.pem");
    replace_sds_file(&pki, &sds_file(&pki, "v1", "live.pem", "live.pem"));
    let common = "tls_certificate_sds_secret_configs:\n              - name: server_cert\n                sds_config: {path_config_source: {path: CERTS/sds.yaml}, resource_api_version: V3}";
    // Envoy's SDS needs a node identity.
    let config = format!(
        "node: {{id: sds-stats, cluster: tls}}\n{}",
        single_chain(common, "", "ok")
    );
    let proxy = start(binary, &config, &pki);
    let admin = proxy.port("admin");
    let counter = |name: &str| stat(admin, &format!("sds.server_cert.{name}")).unwrap_or(0);
    let mut seen = vec![sds_stats(admin)];
    // A key rotation: the certificate file replaced, the SDS file unchanged.
    std::fs::write(pki.dir.join("new.tmp"), pem("two")).expect("new.tmp");
    std::fs::rename(pki.dir.join("new.tmp"), pki.dir.join("live.pem")).expect("mv");
    let port = proxy.port("listener");
    assert!(
        wait_until(Duration::from_secs(10), || {
            s_client(&pki, port, &["-servername", "localhost"])
                .subject_cn
                .as_deref()
                == Some("two.localhost")
        }),
        "the rotated certificate is never served"
    );
    seen.push(sds_stats(admin));
    let steps: [(String, &str, u64); 3] = [
        (
            sds_file(&pki, "v2", "two.crt", "two.key"),
            "update_success",
            2,
        ),
        (
            sds_file(&pki, "v3", "three.crt", "two.key"),
            "update_rejected",
            1,
        ),
        ("resources: [".to_owned(), "update_failure", 1),
    ];
    for (body, counter_name, value) in steps {
        replace_sds_file(&pki, &body);
        assert!(
            wait_until(Duration::from_secs(10), || counter(counter_name) >= value),
            "{counter_name} never reached {value}: {:?}",
            sds_stats(admin)
        );
        seen.push(sds_stats(admin));
    }
    seen
}

#[test]
fn sds_secret_stats_count_updates_like_envoy() {
    if !tools() {
        return;
    }
    let ours = sds_stats_scenario(rvoy());
    let get = |step: &[(String, u64)], name: &str| {
        step.iter()
            .find(|(n, _)| n == &format!("sds.server_cert.{name}"))
            .map(|(_, v)| *v)
    };
    // attempt, success, rejected, failure after each step.
    let expected = [
        (1, 1, 0, 0),
        // A key rotation is no update.
        (1, 1, 0, 0),
        (2, 2, 0, 0),
        (3, 2, 1, 0),
        (4, 2, 1, 1),
    ];
    for (step, (attempt, success, rejected, failure)) in ours.iter().zip(expected) {
        assert_eq!(get(step, "update_attempt"), Some(attempt), "{step:?}");
        assert_eq!(get(step, "update_success"), Some(success), "{step:?}");
        assert_eq!(get(step, "update_rejected"), Some(rejected), "{step:?}");
        assert_eq!(get(step, "update_failure"), Some(failure), "{step:?}");
        assert_eq!(get(step, "key_rotation_failed"), Some(0), "{step:?}");
        assert_eq!(get(step, "init_fetch_timeout"), Some(0), "{step:?}");
    }
    // The version is the accepted `version_info`'s hash: it moved once.
    assert_eq!(get(&ours[0], "version"), get(&ours[1], "version"));
    assert_ne!(get(&ours[1], "version"), get(&ours[2], "version"));
    assert_eq!(get(&ours[2], "version"), get(&ours[4], "version"));
    match Binary::envoy() {
        Some(envoy) => {
            let theirs = sds_stats_scenario(envoy);
            eprintln!("Envoy's sds.server_cert.* after each step: {theirs:?}");
            assert_eq!(ours, theirs, "Envoy disagrees");
        }
        None => eprintln!("differential part skipped: Envoy is not installed"),
    }
}
