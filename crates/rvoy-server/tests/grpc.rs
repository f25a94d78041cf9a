//! Real gRPC through the proxy, and HTTP/2 rapid reset (CVE-2023-44487), differentially:
//! every scenario runs against rvoy and, when it is installed, against real Envoy, and
//! what the client sees (and, for rapid reset, the admin counters) must be the same.
//!
//! * gRPC: a Python grpcio server (`tests/grpc/peer.py server`, generic handlers, raw
//!   bytes, no codegen) is the upstream of an h2 cluster behind a listener with
//!   `codec_type: AUTO` and `grpc: {}` route matches; the grpcio client
//!   (`peer.py client`) makes unary (small and 1 MiB), server-streaming, client-streaming
//!   and bidirectional calls, a call that outlives its deadline, a call the server fails
//!   (`INVALID_ARGUMENT "bad"`), and calls to routes whose cluster has no endpoint or a
//!   refused one (the proxy's local reply as a gRPC `UNAVAILABLE`). It prints one JSON line
//!   per call. The Python used is `$RVOY_TEST_PYTHON`, else `<workspace>/.envoy/bin/python3`
//!   when it imports `grpc`, else `python3`; without grpcio the test prints why and passes.
//! * Rapid reset: a hand-written h2c client (raw frames, so the test controls every byte)
//!   sends 2000 HEADERS each reset with RST_STREAM(CANCEL) (each at once, or in writes of
//!   100 HEADERS then their 100 resets) to a route whose upstream never answers; the proxy
//!   must abort the connection after 250 premature
//!   resets (Envoy's `overload.premature_reset_total_stream_count` 500, half of it) with
//!   no GOAWAY, count it in `http.ingress.downstream_rq_too_many_premature_resets`, and serve a fresh
//!   connection normally afterwards.
//!
//! Everything listens on and connects to 127.0.0.1; every wait and loop is bounded.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{H2Frames, T, hcm, static_cluster, targets, vhost};
use rvoy_testkit::process::workspace_root;
use rvoy_testkit::raw::{RawConn, Request};
use rvoy_testkit::{Binary, HyperClient, Ports, Proxy, ProxyBuilder};

/// The admin block of every config here.
const ADMIN: &str =
    "admin:\n  address: {socket_address: {address: 127.0.0.1, port_value: {{port:admin}}}}\n";

/// Every counter of the admin `/stats` page.
fn stats(proxy: &Proxy) -> BTreeMap<String, u64> {
    let mut c = RawConn::connect_timeout(proxy.addr("admin"), T).expect("admin");
    let r = c
        .request(&Request::get("/stats", "127.0.0.1"))
        .expect("stats page");
    assert_eq!(r.status, 200, "{}", r.body_str());
    r.body_str()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(": ")?;
            Some((k.to_owned(), v.trim().parse().ok()?))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Python and the grpcio peer.
// ---------------------------------------------------------------------------------------

/// The peer script.
fn peer_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/grpc/peer.py")
}

/// A Python command with the proxy variables grpcio would honour removed.
fn python_cmd(python: &Path) -> Command {
    let mut cmd = Command::new(python);
    for v in [
        "http_proxy",
        "https_proxy",
        "grpc_proxy",
        "all_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
    ] {
        cmd.env_remove(v);
    }
    cmd.env("no_proxy", "127.0.0.1").stdin(Stdio::null());
    cmd
}

/// Runs `cmd` to completion with its output in files under `dir`, killed after
/// `timeout`; `None` when it did not finish in time or could not start.
fn run_bounded(
    mut cmd: Command,
    dir: &Path,
    tag: &str,
    timeout: Duration,
) -> Option<(bool, String, String)> {
    let out_path = dir.join(format!("{tag}.stdout"));
    let err_path = dir.join(format!("{tag}.stderr"));
    let out = std::fs::File::create(&out_path).ok()?;
    let err = std::fs::File::create(&err_path).ok()?;
    let mut child = cmd.stdout(out).stderr(err).spawn().ok()?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    status.map(|s| (s.success(), read(&out_path), read(&err_path)))
}

/// A Python that imports `grpc`: `$RVOY_TEST_PYTHON`, else `.envoy/bin/python3` of the
/// workspace, else `python3`. `None` (with the reason printed) when none does.
fn grpc_python() -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = match std::env::var_os("RVOY_TEST_PYTHON") {
        Some(p) if !p.is_empty() => vec![PathBuf::from(p)],
        _ => {
            let mut c = vec![workspace_root().join(".envoy/bin/python3")];
            // The venv Envoy was installed into (`ENVOY_BIN=…/.envoy/bin/envoy`).
            if let Some(dir) =
                Binary::envoy().and_then(|e| e.path().parent().map(Path::to_path_buf))
            {
                c.push(dir.join("python3"));
            }
            c.push(PathBuf::from("python3"));
            c
        }
    };
    let dir = std::env::temp_dir();
    for (i, py) in candidates.iter().enumerate() {
        let mut cmd = python_cmd(py);
        cmd.args(["-c", "import grpc"]);
        let tag = format!("rvoy-grpc-probe-{}-{i}", std::process::id());
        let ok = run_bounded(cmd, &dir, &tag, Duration::from_secs(20)).is_some_and(|r| r.0);
        let _ = std::fs::remove_file(dir.join(format!("{tag}.stdout")));
        let _ = std::fs::remove_file(dir.join(format!("{tag}.stderr")));
        if ok {
            return Some(py.clone());
        }
    }
    eprintln!(
        "SKIPPED: no Python with grpcio (tried {candidates:?}; `pip install grpcio` or set \
         RVOY_TEST_PYTHON)"
    );
    None
}

/// The grpcio upstream server, stopped (stdin closed, then killed) on drop.
struct GrpcServer {
    child: Child,
    port: u16,
}

impl GrpcServer {
    fn start(python: &Path) -> GrpcServer {
        let mut cmd = python_cmd(python);
        cmd.arg(peer_script())
            .arg("server")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("python grpc server starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(30));
        let port = line
            .as_deref()
            .ok()
            .and_then(|l| l.trim().strip_prefix("READY "))
            .and_then(|p| p.parse().ok());
        let mut server = GrpcServer { child, port: 0 };
        server.port = port.unwrap_or_else(|| panic!("grpc server not ready: {line:?}"));
        server
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The h2 cluster options of the gRPC clusters.
const H2_UPSTREAM: &str = r#"typed_extension_protocol_options:
  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
    "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
    explicit_http_config: {http2_protocol_options: {}}"#;

/// Listener (`codec_type: AUTO`) with gRPC routes: `nohost.Svc` to a cluster without
/// endpoints, `refused.Svc` to a dead port, everything else to the grpcio server.
fn grpc_config() -> String {
    let routes = r#"- match: {prefix: "/nohost.Svc/", grpc: {}}
  route: {cluster: nohost}
- match: {prefix: "/refused.Svc/", grpc: {}}
  route: {cluster: refused}
- match: {prefix: "/", grpc: {}}
  route: {cluster: grpc}"#;
    let nohost = format!(
        "- name: nohost\n  type: STATIC\n  connect_timeout: 1s\n  {}\n  load_assignment: {{cluster_name: nohost}}",
        common::indent(H2_UPSTREAM, 2)
    );
    let clusters = format!(
        "{}\n{}\n{nohost}",
        static_cluster("grpc", "grpc", H2_UPSTREAM),
        static_cluster("refused", "dead", H2_UPSTREAM),
    );
    format!(
        "{ADMIN}{}",
        hcm(
            &vhost("v", "[\"*\"]", routes),
            "codec_type: AUTO",
            &clusters
        )
    )
}

/// What the grpcio client saw, one JSON line per call, by call name.
fn run_grpc_client(python: &Path, proxy: &Proxy) -> BTreeMap<String, serde_json::Value> {
    let mut cmd = python_cmd(python);
    cmd.arg(peer_script())
        .arg("client")
        .arg(proxy.addr("listener").to_string());
    let (ok, out, err) = run_bounded(cmd, proxy.tmp(), "grpc-client", Duration::from_secs(60))
        .expect("grpc client finishes within 60 s");
    assert!(ok, "grpc client failed:\n{out}\n{err}");
    out.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            (v["call"].as_str().expect("call").to_owned(), v)
        })
        .collect()
}

/// `(code, details, messages)` of one call.
fn call(seen: &BTreeMap<String, serde_json::Value>, name: &str) -> (String, String, Vec<String>) {
    let v = seen
        .get(name)
        .unwrap_or_else(|| panic!("no call {name}: {seen:?}"));
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
    let msgs = v["messages"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    (s("code"), s("details"), msgs)
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// Runs the gRPC scenario against `binary`; returns what the client saw.
fn grpc_scenario(python: &Path, binary: &Binary) -> BTreeMap<String, serde_json::Value> {
    let server = GrpcServer::start(python);
    let mut ports = Ports::new();
    ports.insert("grpc", server.port);
    ports
        .port("dead")
        .expect("reserved port, nothing listening");
    let proxy = ProxyBuilder::new(binary.clone())
        .config(&grpc_config())
        .ports(&ports)
        .start()
        .expect("proxy starts and listens");
    let seen = run_grpc_client(python, &proxy);
    let who = binary.name();
    let ok = |name: &str, msgs: &[&str]| {
        assert_eq!(
            call(&seen, name),
            ("OK".to_owned(), String::new(), strings(msgs)),
            "{who}: {name}"
        );
    };
    ok("unary", &["echo:hello"]);
    ok("big", &["len:1048576"]);
    ok(
        "server_stream",
        &["msg-0", "msg-1", "msg-2", "msg-3", "msg-4"],
    );
    ok("client_stream", &["got:a,b,c"]);
    ok("bidi", &["bidi:x", "bidi:y", "bidi:z"]);
    assert_eq!(
        call(&seen, "deadline").0,
        "DEADLINE_EXCEEDED",
        "{who}: {seen:?}"
    );
    assert_eq!(
        call(&seen, "error"),
        ("INVALID_ARGUMENT".to_owned(), "bad".to_owned(), vec![]),
        "{who}"
    );
    assert_eq!(
        call(&seen, "no_upstream"),
        (
            "UNAVAILABLE".to_owned(),
            "no healthy upstream".to_owned(),
            vec![]
        ),
        "{who}"
    );
    assert_eq!(
        call(&seen, "refused_upstream"),
        (
            "UNAVAILABLE".to_owned(),
            "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure".to_owned(),
            vec![]
        ),
        "{who}"
    );
    // A request that is not gRPC matches no route.
    let mut c = RawConn::connect_timeout(proxy.addr("listener"), T).expect("connect");
    let r = c
        .request(&Request::get("/test.Test/Unary", "x"))
        .expect("response");
    assert_eq!(r.status, 404, "{who}: {}", r.body_str());
    let s = stats(&proxy);
    assert!(
        s.get("cluster.grpc.upstream_cx_http2_total")
            .copied()
            .unwrap_or(0)
            >= 1,
        "{who}: {s:?}"
    );
    seen
}

#[test]
fn grpc_calls_through_the_proxy_match_envoy() {
    let Some(python) = grpc_python() else {
        return;
    };
    let mut seen = Vec::new();
    for b in targets() {
        seen.push((b.name(), grpc_scenario(&python, &b)));
    }
    if let [(_, rvoy), (_, envoy)] = &seen[..] {
        assert_eq!(rvoy, envoy, "rvoy (left) and Envoy (right) differ");
    }
}

// ---------------------------------------------------------------------------------------
// HTTP/2 rapid reset (CVE-2023-44487).
// ---------------------------------------------------------------------------------------

/// Streams the attacking client opens (each reset at once).
const RAPID_STREAMS: u32 = 2000;

/// One HTTP/2 frame.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("small frame");
    let mut f = Vec::with_capacity(9 + payload.len());
    f.extend_from_slice(&len.to_be_bytes()[1..]);
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A GET `path` request block (HPACK: static `:method GET`, `:scheme http`, literal
/// `:path` and `:authority` without indexing, so every block is the same).
fn request_block(path: &str) -> Vec<u8> {
    let mut b = vec![0x82, 0x86, 0x04, u8::try_from(path.len()).expect("short")];
    b.extend_from_slice(path.as_bytes());
    b.extend_from_slice(&[0x01, 9]);
    b.extend_from_slice(b"localhost");
    b
}

/// What the attacking client saw.
#[derive(Debug, Default, PartialEq, Eq)]
struct Seen {
    /// `(last stream id, error code)` of each GOAWAY.
    goaways: Vec<(u32, u32)>,
    /// HEADERS frames (responses) received.
    headers: usize,
    /// RST_STREAM frames received.
    resets: usize,
    /// The connection was closed by the proxy (EOF or reset) within the bound.
    closed: bool,
    /// Streams the client managed to write before the proxy closed.
    written: u32,
}

/// Reads frames from `s` until EOF/error or `deadline`.
fn read_frames(mut s: TcpStream, deadline: Instant) -> Seen {
    let mut seen = Seen::default();
    let mut reader = H2Frames::default();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    while Instant::now() < deadline {
        let Some(frames) = reader.read(&mut s) else {
            seen.closed = true;
            break;
        };
        for f in frames {
            match f.kind {
                0x1 => seen.headers += 1,
                0x3 => seen.resets += 1,
                0x7 if f.payload.len() >= 8 => {
                    let w = |i: usize| {
                        u32::from_be_bytes(f.payload[i..i + 4].try_into().expect("4 bytes"))
                    };
                    seen.goaways.push((w(0) & 0x7fff_ffff, w(4)));
                }
                _ => {}
            }
        }
    }
    seen
}

/// How the attacking client orders its frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attack {
    /// Each HEADERS followed at once by its RST_STREAM (the codec reads both before the
    /// connection manager can accept the stream).
    Paired,
    /// A write of 100 HEADERS, then a write of their 100 RST_STREAMs (the streams are
    /// accepted and waiting for the upstream when their resets come).
    HeadersThenResets,
}

/// Opens an h2c connection to `addr`, sends `RAPID_STREAMS` HEADERS each reset with
/// RST_STREAM(CANCEL) as `attack` orders them, and reads until the proxy closes
/// (bounded).
fn rapid_reset(addr: SocketAddr, attack: Attack) -> Seen {
    let mut s = TcpStream::connect_timeout(&addr, T).expect("connect");
    s.set_write_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let reader = s.try_clone().expect("clone");
    let deadline = Instant::now() + Duration::from_secs(15);
    let reading = std::thread::spawn(move || read_frames(reader, deadline));
    let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    preface.extend(frame(0x4, 0, 0, &[]));
    s.write_all(&preface).expect("preface");
    let block = request_block("/blackhole");
    let mut written = 0;
    'batches: for batch in 0..RAPID_STREAMS / 100 {
        let (mut heads, mut resets) = (Vec::new(), Vec::new());
        for i in 0..100 {
            let id = 2 * (batch * 100 + i) + 1;
            heads.extend(frame(0x1, 0x5, id, &block));
            let reset = frame(0x3, 0, id, &8u32.to_be_bytes());
            match attack {
                Attack::Paired => heads.extend(reset),
                Attack::HeadersThenResets => resets.extend(reset),
            }
        }
        for bytes in [heads, resets] {
            if bytes.is_empty() {
                continue;
            }
            if s.write_all(&bytes).is_err() || Instant::now() >= deadline {
                break 'batches;
            }
            if attack == Attack::HeadersThenResets {
                // Let the proxy read the HEADERS on their own.
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        written += 100;
    }
    let mut seen = reading.join().expect("reader");
    seen.written = written;
    seen
}

/// The counters the rapid-reset scenario compares (between rvoy and Envoy).
const RAPID_COUNTERS: &[&str] = &[
    "http.ingress.downstream_cx_total",
    "http.ingress.downstream_cx_destroy_active_rq",
    "http.ingress.downstream_cx_destroy_local_active_rq",
    "http.ingress.downstream_rq_tx_reset",
    "http.ingress.downstream_cx_http2_total",
    "http.ingress.downstream_cx_protocol_error",
    "http.ingress.downstream_cx_destroy_local",
    "http.ingress.downstream_cx_destroy_remote",
    "http2.outbound_control_flood",
    "http2.outbound_flood",
    "http2.inbound_empty_frames_flood",
    "http2.inbound_priority_frames_flood",
    "http2.inbound_window_update_frames_flood",
];

/// The rapid-reset scenario against `binary`: what the client saw, the counters.
fn rapid_reset_scenario(binary: &Binary, attack: Attack) -> (Seen, BTreeMap<String, u64>) {
    // The upstream accepts connections into its backlog and never answers.
    let blackhole = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut ports = Ports::new();
    ports.insert("blackhole", blackhole.local_addr().expect("addr").port());
    let routes = r#"- match: {prefix: "/ok"}
  direct_response: {status: 200, body: {inline_string: "ok"}}
- match: {prefix: "/"}
  route: {cluster: blackhole}"#;
    let config = format!(
        "{ADMIN}{}",
        hcm(
            &vhost("v", "[\"*\"]", routes),
            "codec_type: AUTO",
            &static_cluster("blackhole", "blackhole", ""),
        )
    );
    let proxy = ProxyBuilder::new(binary.clone())
        .config(&config)
        .ports(&ports)
        .start()
        .expect("proxy starts and listens");
    let who = binary.name();
    let seen = rapid_reset(proxy.addr("listener"), attack);
    // A fresh connection is served normally.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let fresh = rt.block_on(async {
        let mut c = HyperClient::h2c(proxy.addr("listener")).await?;
        let mut out = Vec::new();
        for _ in 0..3 {
            let r = c.get("/ok", "localhost").await?;
            out.push((r.status, r.body_str()));
        }
        rvoy_testkit::Result::Ok(out)
    });
    assert_eq!(
        fresh.expect("fresh h2c connection"),
        vec![(200, "ok".to_owned()); 3],
        "{who}"
    );
    // Counters settle (the close is counted once the connection is gone).
    let deadline = Instant::now() + T;
    let mut s = stats(&proxy);
    while Instant::now() < deadline
        && s.get("http.ingress.downstream_cx_destroy_local")
            .copied()
            .unwrap_or(0)
            + s.get("http.ingress.downstream_cx_destroy_remote")
                .copied()
                .unwrap_or(0)
            < 1
    {
        std::thread::sleep(Duration::from_millis(50));
        s = stats(&proxy);
    }
    let all: BTreeMap<String, u64> = s
        .iter()
        .filter(|(k, _)| k.starts_with("http.ingress.downstream_") || k.starts_with("http2."))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    eprintln!("{who} {attack:?}: client saw {seen:?}\n{who}: counters {all:#?}");
    // What rvoy and Envoy both do: the attack connection is closed by the proxy as a
    // protocol error, no attacking stream got a response, no flood limit fired.
    assert!(seen.closed, "{who}: connection not closed: {seen:?}");
    assert_eq!(seen.headers, 0, "{who}: {seen:?}");
    let stat = |k: &str| s.get(k).copied().unwrap_or(0);
    assert_eq!(
        stat("http.ingress.downstream_cx_protocol_error"),
        1,
        "{who}"
    );
    assert_eq!(stat("http.ingress.downstream_cx_destroy_local"), 1, "{who}");
    // Envoy's premature-reset accounting: the connection is aborted (no GOAWAY) right at
    // the 250th premature reset, and every attacking stream up to it is a request reset
    // by the client.
    assert_eq!(seen.goaways, vec![], "{who}: {seen:?}");
    assert_eq!(
        stat("http.ingress.downstream_rq_too_many_premature_resets"),
        1,
        "{who}"
    );
    // Requests: the attacking streams opened (up to the close), and the three fresh ones;
    // the streams still open when the connection closes are reset by it (counted as
    // reset by the peer, as the client's resets are).
    let opened = match attack {
        Attack::Paired => 250,
        Attack::HeadersThenResets => 300,
    };
    assert_eq!(stat("http.ingress.downstream_rq_rx_reset"), opened, "{who}");
    assert_eq!(
        stat("http.ingress.downstream_rq_total"),
        opened + 3,
        "{who}"
    );
    assert_eq!(stat("http2.rx_reset"), 250, "{who}");
    let picked = RAPID_COUNTERS
        .iter()
        .map(|k| ((*k).to_owned(), s.get(*k).copied().unwrap_or(0)))
        .collect();
    (seen, picked)
}

/// Runs the rapid-reset scenario on every target and compares rvoy with Envoy.
fn rapid_reset_differential(attack: Attack) {
    let mut runs = Vec::new();
    for b in targets() {
        runs.push((b.name(), rapid_reset_scenario(&b, attack)));
    }
    if let [(_, (rvoy_seen, rvoy)), (_, (envoy_seen, envoy))] = &runs[..] {
        assert_eq!(
            rvoy, envoy,
            "counters: rvoy (left) and Envoy (right) differ"
        );
        assert_eq!(
            (&rvoy_seen.goaways, rvoy_seen.closed, rvoy_seen.headers),
            (&envoy_seen.goaways, envoy_seen.closed, envoy_seen.headers),
            "what the client saw: rvoy {rvoy_seen:?}, Envoy {envoy_seen:?}"
        );
    }
}

#[test]
fn rapid_reset_closes_the_connection_like_envoy() {
    rapid_reset_differential(Attack::Paired);
}

#[test]
fn rapid_reset_of_accepted_streams_closes_the_connection_like_envoy() {
    rapid_reset_differential(Attack::HeadersThenResets);
}
