//! Certificate rotation under load: a TLS listener whose certificate comes
//! from file-based SDS with a `watched_directory`, rotated three times the
//! way Kubernetes updates a mounted secret (new files in a fresh directory,
//! then the `..data` symlink swapped with one atomic rename) while client
//! threads keep opening TLS connections and sending keep-alive requests.
//! Checked: no request fails, every new connection made after a rotation was
//! seen presents the new certificate, connections opened before the first
//! rotation keep working, and `ssl_context_update_by_sds` counts the
//! rotations. Where Envoy is installed the same scenario runs against it.

mod pki;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pki::{Pki, rvoy, single_chain, start, stat, write_sds_certificate};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use rvoy_testkit::{Binary, Proxy};

/// Certificate generations: the initial one and three rotations.
const GENERATIONS: usize = 4;
/// Load client threads.
const CLIENTS: usize = 4;
/// Keep-alive requests per new connection.
const REQUESTS_PER_CONNECTION: usize = 3;
/// Bounds of each client's loop.
const MAX_CONNECTIONS_PER_CLIENT: usize = 2_000;
const MAX_LOAD_TIME: Duration = Duration::from_secs(20);
/// How long a rotation may take to be served.
const ROTATION_TIMEOUT: Duration = Duration::from_secs(5);

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// The certificates of each generation (DER), and the TLS client config.
struct Certs {
    ders: Vec<CertificateDer<'static>>,
    client: Arc<ClientConfig>,
}

impl Certs {
    fn new(pki: &Pki) -> Certs {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(pki.dir.join("ca.crt")).expect("CA"))
            .expect("CA added");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let ders = (0..GENERATIONS)
            .map(|g| {
                CertificateDer::from_pem_file(pki.dir.join(format!("gen{g}.crt"))).expect("cert")
            })
            .collect();
        Certs {
            ders,
            client: Arc::new(client),
        }
    }

    /// A new TLS connection (handshake done) and the generation of the
    /// certificate it was presented.
    fn connect(&self, port: u16) -> Result<(Tls, usize), String> {
        let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
        tcp.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        tcp.set_write_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
        let conn = ClientConnection::new(self.client.clone(), name).map_err(|e| e.to_string())?;
        let mut tls = StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .map_err(|e| format!("handshake: {e}"))?;
        }
        let presented = tls
            .conn
            .peer_certificates()
            .and_then(|c| c.first())
            .ok_or("no certificate presented")?;
        let generation = self
            .ders
            .iter()
            .position(|d| d == presented)
            .ok_or("an unknown certificate was presented")?;
        Ok((tls, generation))
    }
}

/// One keep-alive request; the response must be `200` with body `rotating`.
fn request(tls: &mut Tls) -> Result<(), String> {
    tls.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tls.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed before the response".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    if !head.starts_with("http/1.1 200") {
        return Err(format!("unexpected response: {head}"));
    }
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or("no content-length")?;
    while buf.len() < head_end + length {
        let n = tls.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed in the body".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    if &buf[head_end..] != b"rotating" {
        return Err(format!(
            "unexpected body {:?}",
            String::from_utf8_lossy(&buf[head_end..])
        ));
    }
    Ok(())
}

/// What the load clients saw.
#[derive(Default)]
struct Seen {
    /// (when the handshake started, generation presented)
    handshakes: Vec<(Instant, usize)>,
    requests: usize,
    failures: Vec<String>,
    /// Requests served on connections opened before the first rotation.
    old_connection_requests: usize,
}

/// One load client: a connection opened at once and kept, then new
/// connections with keep-alive requests until `stop` or its bounds; every
/// round also reuses the kept connection.
fn client(certs: &Certs, port: u16, stop: &AtomicBool, seen: &Mutex<Seen>) {
    let record_failure = |e: String| seen.lock().expect("seen").failures.push(e);
    let mut kept = match certs.connect(port) {
        Ok((tls, 0)) => Some(tls),
        Ok((_, g)) => return record_failure(format!("first connection presented generation {g}")),
        Err(e) => return record_failure(e),
    };
    let started = Instant::now();
    for _ in 0..MAX_CONNECTIONS_PER_CLIENT {
        if stop.load(Ordering::Relaxed) || started.elapsed() > MAX_LOAD_TIME {
            break;
        }
        let at = Instant::now();
        let outcome = certs.connect(port).and_then(|(mut tls, generation)| {
            for _ in 0..REQUESTS_PER_CONNECTION {
                request(&mut tls)?;
            }
            Ok(generation)
        });
        let old = kept.as_mut().map(request);
        let mut s = seen.lock().expect("seen");
        match outcome {
            Ok(generation) => {
                s.handshakes.push((at, generation));
                s.requests += REQUESTS_PER_CONNECTION;
            }
            Err(e) => s.failures.push(e),
        }
        match old {
            Some(Ok(())) => {
                s.requests += 1;
                s.old_connection_requests += 1;
            }
            Some(Err(e)) => {
                s.failures
                    .push(format!("connection from before the rotations: {e}"));
                kept = None;
            }
            None => {}
        }
    }
}

/// The secret directory as Kubernetes mounts it: `tls.crt` and `tls.key`
/// link into `..data`, a link to the current generation's directory.
fn publish(dir: &Path, pki: &Pki, generation: usize) {
    let target = format!("..gen{generation}");
    std::fs::create_dir_all(dir.join(&target)).expect("generation dir");
    for (from, to) in [("crt", "tls.crt"), ("key", "tls.key")] {
        std::fs::copy(
            pki.dir.join(format!("gen{generation}.{from}")),
            dir.join(&target).join(to),
        )
        .expect("copy");
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&target, &tmp).expect("symlink");
    std::fs::rename(&tmp, dir.join("..data")).expect("atomic swap");
    for f in ["tls.crt", "tls.key"] {
        if std::fs::symlink_metadata(dir.join(f)).is_err() {
            std::os::unix::fs::symlink(format!("..data/{f}"), dir.join(f)).expect("symlink");
        }
    }
}

fn config(pki: &Pki) -> String {
    let secret_dir = pki.dir.join("secret");
    std::fs::create_dir_all(&secret_dir).expect("secret dir");
    publish(&secret_dir, pki, 0);
    write_sds_certificate(
        pki,
        &secret_dir.join("tls.crt"),
        &secret_dir.join("tls.key"),
        &format!("watched_directory: {{path: {}}}", secret_dir.display()),
    );
    let common = "tls_certificate_sds_secret_configs:\n              - name: server_cert\n                sds_config: {path_config_source: {path: CERTS/sds.yaml}, resource_api_version: V3}";
    // Envoy's SDS needs a node identity.
    format!(
        "node: {{id: rotation, cluster: tls}}\n{}",
        single_chain(common, "", "rotating")
    )
}

/// Runs the rotations under load against `proxy`; returns what went wrong.
fn rotate_under_load(proxy: &Proxy, pki: &Pki) -> Vec<String> {
    let port = proxy.port("listener");
    let certs = Certs::new(pki);
    let stop = AtomicBool::new(false);
    let seen = Mutex::new(Seen::default());
    let mut problems = Vec::new();
    let mut served_at = Vec::new();
    std::thread::scope(|scope| {
        for _ in 0..CLIENTS {
            scope.spawn(|| client(&certs, port, &stop, &seen));
        }
        std::thread::sleep(Duration::from_millis(500));
        for generation in 1..GENERATIONS {
            publish(&pki.dir.join("secret"), pki, generation);
            // The first new connection presenting the new certificate.
            let deadline = Instant::now() + ROTATION_TIMEOUT;
            let served = loop {
                let at = Instant::now();
                match certs.connect(port) {
                    Ok((_, g)) if g == generation => break Some(at),
                    Ok(_) => {}
                    Err(e) => problems.push(format!("probe: {e}")),
                }
                if Instant::now() > deadline {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            match served {
                Some(at) => served_at.push((at, generation)),
                None => {
                    problems.push(format!("generation {generation} was never served"));
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(400));
        }
        stop.store(true, Ordering::Relaxed);
    });
    let seen = seen.into_inner().expect("seen");
    problems.extend(seen.failures.iter().take(5).cloned());
    if !seen.failures.is_empty() {
        problems.push(format!(
            "{} of {} requests failed",
            seen.failures.len(),
            seen.requests + seen.failures.len()
        ));
    }
    // After a new certificate was seen, no new connection gets an older one.
    for (served, generation) in &served_at {
        let stale = seen
            .handshakes
            .iter()
            .filter(|(at, g)| at > served && g < generation)
            .count();
        if stale > 0 {
            problems.push(format!(
                "{stale} connections opened after generation {generation} was served got an older certificate"
            ));
        }
    }
    for generation in 0..GENERATIONS {
        if !seen.handshakes.iter().any(|(_, g)| *g == generation) {
            problems.push(format!("no load connection saw generation {generation}"));
        }
    }
    if seen.old_connection_requests < CLIENTS * (GENERATIONS - 1) {
        problems.push(format!(
            "connections from before the rotations served only {} requests",
            seen.old_connection_requests
        ));
    }
    let updates = stat(
        proxy.port("admin"),
        &format!("listener.127.0.0.1_{port}.server_ssl_socket_factory.ssl_context_update_by_sds"),
    );
    // Envoy counts the first load and every rotation.
    if updates != Some(GENERATIONS as u64) {
        problems.push(format!("ssl_context_update_by_sds: {updates:?}"));
    }
    eprintln!(
        "{} requests on {} new connections, {} on connections from before the rotations",
        seen.requests,
        seen.handshakes.len(),
        seen.old_connection_requests
    );
    problems
}

fn pki() -> Pki {
    let pki = Pki::new();
    for g in 0..GENERATIONS {
        pki.leaf(
            &format!("gen{g}"),
            &format!("gen{g}.localhost"),
            &["localhost"],
            false,
        );
    }
    pki
}

#[test]
fn certificate_rotation_under_load_fails_no_request() {
    let pki = pki();
    let proxy = start(rvoy(), &config(&pki), &pki);
    let problems = rotate_under_load(&proxy, &pki);
    assert!(problems.is_empty(), "rvoy: {problems:#?}");
    drop(proxy);
    match Binary::envoy() {
        Some(envoy) => {
            let pki = self::pki();
            let oracle = start(envoy, &config(&pki), &pki);
            let problems = rotate_under_load(&oracle, &pki);
            assert!(problems.is_empty(), "Envoy: {problems:#?}");
        }
        None => eprintln!("differential part skipped: Envoy is not installed"),
    }
}
