//! A throw-away PKI generated at test time with rcgen: a CA and leaf
//! certificates (ECDSA P-256, one RSA) written as PEM files into a temp dir,
//! helpers to run `curl` and `openssl s_client` with bounded waits, and the
//! TLS test configs (listeners with TLS chains answering direct responses)
//! with the proxy starters they share.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use rvoy_testkit::{Binary, Ports, Proxy, ProxyBuilder};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType,
};

/// A CA and its leaves, as files in `dir`.
pub struct Pki {
    pub dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    _tmp: TempDir,
}

/// A temp dir removed on drop.
pub struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir() -> TempDir {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("rvoy-pki-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    TempDir(dir)
}

impl Pki {
    /// A new CA (`ca.crt`).
    pub fn new() -> Pki {
        let tmp = temp_dir();
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "rvoy test ca");
        let cert = params.self_signed(&key).expect("CA cert");
        std::fs::write(tmp.0.join("ca.crt"), cert.pem()).expect("write CA");
        Pki {
            dir: tmp.0.clone(),
            issuer: Issuer::new(params, key),
            _tmp: tmp,
        }
    }

    /// Writes `<name>.crt` / `<name>.key`: CN `cn`, DNS SANs `dns` and
    /// 127.0.0.1; `rsa` for an RSA key.
    pub fn leaf(&self, name: &str, cn: &str, dns: &[&str], rsa: bool) {
        let key = if rsa {
            KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("RSA key")
        } else {
            KeyPair::generate().expect("key")
        };
        let mut params =
            CertificateParams::new(dns.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        std::fs::write(self.dir.join(format!("{name}.crt")), cert.pem()).expect("write crt");
        std::fs::write(self.dir.join(format!("{name}.key")), key.serialize_pem())
            .expect("write key");
    }

    /// The path of a file of the PKI.
    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }
}

/// Runs a command with a bound on its duration.
pub fn run(cmd: &mut Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("command starts");
    let started = Instant::now();
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("command output")
}

/// `curl` over TLS to `127.0.0.1:port` as `host` (resolved there), with the
/// test CA; returns (exit code, body + `\n<http_version>`).
pub fn curl(pki: &Pki, port: u16, host: &str, path: &str, extra: &[&str]) -> (i32, String) {
    let url = format!("https://{host}:{port}{path}");
    let resolve = format!("{host}:{port}:127.0.0.1");
    let out = run(
        Command::new("curl")
            .args(["-sS", "--max-time", "5", "--cacert"])
            .arg(pki.path("ca.crt"))
            .args(["--resolve", &resolve, "-w", "\n%{http_version}"])
            .args(extra)
            .arg(&url),
        Duration::from_secs(10),
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// What `openssl s_client` saw.
#[derive(Debug)]
pub struct Handshake {
    pub ok: bool,
    pub subject_cn: Option<String>,
    pub protocol: Option<String>,
    pub cipher: Option<String>,
    pub alpn: Option<String>,
    pub text: String,
}

/// `openssl s_client` to `127.0.0.1:port` with `args`.
pub fn s_client(pki: &Pki, port: u16, args: &[&str]) -> Handshake {
    let out = run(
        Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{port}"),
                "-CAfile",
            ])
            .arg(pki.path("ca.crt"))
            .args(args)
            .stdin(Stdio::null()),
        Duration::from_secs(10),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let find = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_owned()))
    };
    let subject_cn = text
        .lines()
        .find(|l| l.starts_with("subject="))
        .and_then(|l| l.split("CN = ").nth(1).or(l.split("CN=").nth(1)))
        .map(|s| s.trim().to_owned());
    Handshake {
        ok: text.contains("Verify return code: 0 (ok)") && !text.contains("no peer certificate"),
        subject_cn,
        protocol: find("Protocol  :").or_else(|| find("Protocol :")),
        cipher: find("Cipher    :").or_else(|| find("Cipher is ")),
        alpn: find("ALPN protocol:"),
        text,
    }
}

/// Waits (bounded) until `f` holds.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// GET `path` on the admin port (plain HTTP), the body.
pub fn admin_get(port: u16, path: &str) -> String {
    let out = run(
        Command::new("curl").args([
            "-sS",
            "--max-time",
            "5",
            &format!("http://127.0.0.1:{port}{path}"),
        ]),
        Duration::from_secs(10),
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of one stat from `/stats` text.
pub fn stat(port: u16, name: &str) -> Option<u64> {
    let body = admin_get(port, &format!("/stats?filter=^{}$", regex_escape(name)));
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .and_then(|v| v.trim().parse().ok())
}

fn regex_escape(s: &str) -> String {
    s.replace('.', "\\.")
}

/// Whether a path exists (for skipping when a tool is missing).
pub fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// A file path as a string.
pub fn p(path: &Path) -> String {
    path.display().to_string()
}

/// This package's `rvoy`, or `$RVOY_BIN` when set (a binary built
/// elsewhere, such as a release build).
pub fn rvoy() -> Binary {
    match std::env::var_os("RVOY_BIN") {
        Some(bin) => Binary::Rvoy(bin.into()),
        None => Binary::Rvoy(env!("CARGO_BIN_EXE_rvoy").into()),
    }
}

pub fn start(binary: Binary, config: &str, pki: &Pki) -> Proxy {
    start_with_ports(binary, config, pki, &Ports::new())
}

pub fn start_with_ports(binary: Binary, config: &str, pki: &Pki, ports: &Ports) -> Proxy {
    ProxyBuilder::new(binary)
        .config(&config.replace("CERTS", &pki.dir.display().to_string()))
        .ports(ports)
        .extra_args(&["--file-flush-interval-msec", "50"])
        .start()
        .expect("proxy starts and listens")
}

pub fn tools() -> bool {
    let ok = Command::new("curl").arg("--version").output().is_ok()
        && Command::new("openssl").arg("version").output().is_ok();
    if !ok {
        eprintln!("skipped: curl and openssl are needed");
    }
    ok
}

pub const ADMIN: &str =
    "admin: {address: {socket_address: {address: 127.0.0.1, port_value: {{port:admin}}}}}";

pub fn direct(stat_prefix: &str, body: &str) -> String {
    direct_with(stat_prefix, body, "codec_type: AUTO")
}

/// [`direct`] with more connection manager fields `extra` (one line of YAML,
/// in place of `codec_type: AUTO`).
pub fn direct_with(stat_prefix: &str, body: &str, extra: &str) -> String {
    hcm_filter_with(
        stat_prefix,
        &format!(
            r#"[{{match: {{prefix: "/"}}, direct_response: {{status: 200, body: {{inline_string: "{body}"}}}}}}]"#
        ),
        extra,
    )
}

/// An HTTP connection manager filter (an item of `filters`, indented for a
/// listener's first filter chain) with one virtual host whose `routes` are
/// `routes` (an inline list, or a block list on the lines that follow).
pub fn hcm_filter(stat_prefix: &str, routes: &str) -> String {
    hcm_filter_with(stat_prefix, routes, "codec_type: AUTO")
}

/// [`hcm_filter`] with more connection manager fields `extra` (one line of
/// YAML, in place of `codec_type: AUTO`).
pub fn hcm_filter_with(stat_prefix: &str, routes: &str, extra: &str) -> String {
    format!(
        r#"- name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {stat_prefix}
          {extra}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
          route_config:
            virtual_hosts:
            - name: vh
              domains: ["*"]
              routes: {routes}"#
    )
}

/// Writes the file-based SDS resource file `sds.yaml` of the PKI: the
/// `Secret` `server_cert`, a certificate from `chain` and `key` plus `extra`
/// `TlsCertificate` fields (one line, may be empty).
pub fn write_sds_certificate(pki: &Pki, chain: &Path, key: &Path, extra: &str) {
    std::fs::write(
        pki.dir.join("sds.yaml"),
        format!(
            r#"resources:
- "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret
  name: server_cert
  tls_certificate:
    certificate_chain: {{filename: {chain}}}
    private_key: {{filename: {key}}}
    {extra}
"#,
            chain = chain.display(),
            key = key.display(),
        ),
    )
    .expect("sds file");
}

pub fn tls_socket(common: &str, extra: &str) -> String {
    format!(
        r#"transport_socket:
          name: envoy.transport_sockets.tls
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
            {extra}
            common_tls_context:
              {common}"#
    )
}

pub fn cert(name: &str) -> String {
    format!(
        "{{certificate_chain: {{filename: CERTS/{name}.crt}}, private_key: {{filename: CERTS/{name}.key}}}}"
    )
}

/// One TLS listener `listener` with one chain answering `body`.
pub fn single_chain(common: &str, extra: &str, body: &str) -> String {
    format!(
        r#"{ADMIN}
static_resources:
  listeners:
  - name: tls
    address: {{socket_address: {{address: 127.0.0.1, port_value: {{{{port:listener}}}}}}}}
    filter_chains:
    - {socket}
      filters:
      {filter}
"#,
        socket = tls_socket(common, extra),
        filter = direct("tls", body)
    )
}
