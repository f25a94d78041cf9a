//! Allocations per proxied request through rvoy's real data path (issue 6's
//! "counting-allocator test"). A measurement, not a timed test: it prints a
//! table and asserts nothing.
//!
//! The binary runs twice. Started by `cargo bench -p rvoy-server --bench
//! alloc_per_request` (or `bench/alloc`), it starts a minimal HTTP/1.1 origin
//! on a thread, writes a bootstrap proxying to it, and starts *itself* again
//! as the proxy: with `RVOY_ALLOC_CONTROL` set it installs a counting global
//! allocator, answers "how many so far" on a Unix socket from a thread that
//! does not count, and hands the command line to `rvoy_server::main_entry()`,
//! i.e. the real `rvoy` on `--concurrency 1`. The parent then sends warm-up
//! requests, reads the counters, sends N more, reads them again, and reports
//! allocations (and bytes) per request, less what the idle proxy allocates in
//! the same time (its background timers). Scenarios: HTTP/1.1 keep-alive,
//! a new connection per request, h2c (one connection, sequential streams).
//!
//! Environment: `ALLOC_REQUESTS` (default 5000) requests per scenario.

// The allocator shim needs `unsafe impl GlobalAlloc`; it is confined to this
// bench binary and forwards every call unchanged to the system allocator.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const CONTROL_ENV: &str = "RVOY_ALLOC_CONTROL";
const BODY: &[u8; 100] = b"0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789";

// ---------------------------------------------------------------- counting allocator (proxy side)

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static REALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Set on the control thread, whose own allocations are not the proxy's.
    static SILENT: Cell<bool> = const { Cell::new(false) };
}

fn counted() -> bool {
    !SILENT.try_with(Cell::get).unwrap_or(false)
}

// SAFETY: every method forwards to `System` with the caller's arguments, so
// `System`'s guarantees hold; the bookkeeping touches only a const-initialized
// thread-local `Cell` and atomics, neither of which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counted() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        // SAFETY: forwarded verbatim; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if counted() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        // SAFETY: forwarded verbatim; the caller upholds `alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counted() {
            REALLOCS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(
                new_size.saturating_sub(layout.size()) as u64,
                Ordering::Relaxed,
            );
        }
        // SAFETY: `ptr` came from this allocator (hence `System`) with `layout`;
        // the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Proxy side: answers each line on the control socket with
/// "allocs reallocs bytes", without allocating on the proxy's account.
fn serve_control(path: PathBuf) {
    SILENT.with(|s| s.set(true));
    let Ok(listener) = UnixListener::bind(&path) else {
        eprintln!("alloc bench: cannot bind {}", path.display());
        return;
    };
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let mut line = [0u8; 16];
        while matches!(stream.read(&mut line), Ok(n) if n > 0) {
            let answer = format!(
                "{} {} {}\n",
                ALLOCS.load(Ordering::SeqCst),
                REALLOCS.load(Ordering::SeqCst),
                BYTES.load(Ordering::SeqCst)
            );
            if stream.write_all(answer.as_bytes()).is_err() {
                break;
            }
        }
    }
}

// ---------------------------------------------------------------- harness side

fn main() -> ExitCode {
    if let Some(path) = std::env::var_os(CONTROL_ENV) {
        let path = PathBuf::from(path);
        std::thread::spawn(move || serve_control(path));
        return rvoy_server::main_entry();
    }
    match measure() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("alloc bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Counters read from the proxy.
#[derive(Clone, Copy)]
struct Counts {
    allocs: u64,
    reallocs: u64,
    bytes: u64,
}

struct Control(BufReader<UnixStream>);

impl Control {
    fn read(&mut self) -> Result<Counts> {
        self.0.get_mut().write_all(b"?\n")?;
        let mut line = String::new();
        self.0.read_line(&mut line)?;
        let mut it = line.split_whitespace().map(str::parse::<u64>);
        let mut next = || -> Result<u64> { Ok(it.next().ok_or("short control answer")??) };
        Ok(Counts {
            allocs: next()?,
            reallocs: next()?,
            bytes: next()?,
        })
    }
}

/// The proxy process; killed (by its PID) when dropped.
struct Proxy {
    child: Child,
    dir: PathBuf,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The origin: HTTP/1.1 keep-alive, 100-byte 200 for every request.
fn start_origin() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || origin_connection(conn));
        }
    });
    Ok(addr)
}

fn origin_connection(mut conn: TcpStream) {
    let _ = conn.set_nodelay(true);
    let mut response =
        format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", BODY.len()).into_bytes();
    response.extend_from_slice(BODY);
    let mut buf = vec![0u8; 16 * 1024];
    let mut filled = 0;
    loop {
        match conn.read(&mut buf[filled..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => filled += n,
        }
        // answer every complete request head in the buffer (requests have no body)
        while let Some(end) = find(&buf[..filled], b"\r\n\r\n") {
            if conn.write_all(&response).is_err() {
                return;
            }
            buf.copy_within(end + 4..filled, 0);
            filled -= end + 4;
        }
        if filled == buf.len() {
            return;
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn start_proxy(origin: SocketAddr) -> Result<(Proxy, SocketAddr, Control)> {
    let dir = std::env::temp_dir().join(format!("rvoy-alloc-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let listen: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    let config = dir.join("proxy.yaml");
    std::fs::write(&config, bootstrap(listen, origin))?;
    let control = dir.join("control.sock");
    let child = Command::new(std::env::current_exe()?)
        .env(CONTROL_ENV, &control)
        .args([
            "--concurrency",
            "1",
            "--disable-hot-restart",
            "--log-level",
            "warn",
            "-c",
        ])
        .arg(&config)
        .stdin(Stdio::null())
        .spawn()?;
    let proxy = Proxy { child, dir };
    let deadline = Instant::now() + Duration::from_secs(30);
    let sock = loop {
        if let (Ok(s), true) = (
            UnixStream::connect(&control),
            TcpStream::connect(listen).is_ok(),
        ) {
            break s;
        }
        if Instant::now() > deadline {
            return Err("the proxy did not start within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok((proxy, listen, Control(BufReader::new(sock))))
}

/// The same shape as bench/configs/envoy/proxy.yaml, without the admin listener.
fn bootstrap(listen: SocketAddr, origin: SocketAddr) -> String {
    format!(
        r#"static_resources:
  listeners:
  - name: ingress
    address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          codec_type: AUTO
          route_config:
            virtual_hosts:
            - name: origin
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                route: {{cluster: origin}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: origin
    connect_timeout: 1s
    type: STATIC
    load_assignment:
      cluster_name: origin
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{address: 127.0.0.1, port_value: {}}}
"#,
        listen.port(),
        origin.port()
    )
}

/// An HTTP/1.1 client connection that reads Content-Length responses.
struct H1 {
    conn: TcpStream,
    buf: Vec<u8>,
}

impl H1 {
    fn connect(addr: SocketAddr) -> Result<H1> {
        let conn = TcpStream::connect(addr)?;
        conn.set_nodelay(true)?;
        conn.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(H1 {
            conn,
            buf: Vec::with_capacity(4096),
        })
    }

    fn get(&mut self, close: bool) -> Result<()> {
        let request: &[u8] = if close {
            b"GET /small HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
        } else {
            b"GET /small HTTP/1.1\r\nHost: bench\r\n\r\n"
        };
        self.conn.write_all(request)?;
        self.buf.clear();
        let mut chunk = [0u8; 4096];
        loop {
            let n = self.conn.read(&mut chunk)?;
            if n == 0 {
                return Err("connection closed before the response ended".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_ascii_lowercase();
                if !head.starts_with("http/1.1 200") {
                    return Err(format!("unexpected response: {head}").into());
                }
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .ok_or("response without content-length")?;
                if self.buf.len() >= end + 4 + length {
                    return Ok(());
                }
            }
        }
    }
}

struct Row {
    scenario: &'static str,
    requests: u64,
    allocs: f64,
    reallocs: f64,
    bytes: f64,
}

/// Counts over `requests` runs of `one`, less the idle proxy's own
/// allocations over the same time.
fn count(
    control: &mut Control,
    scenario: &'static str,
    requests: u64,
    mut one: impl FnMut() -> Result<()>,
) -> Result<Row> {
    for _ in 0..requests.min(500) {
        one()?; // warm-up: pools, buffers, lazily created stats
    }
    let before = control.read()?;
    let t0 = Instant::now();
    for _ in 0..requests {
        one()?;
    }
    let elapsed = t0.elapsed();
    let after = control.read()?;
    // the same time with no traffic: timers and stats flushes
    std::thread::sleep(elapsed);
    let idle = control.read()?;
    let per = |a: u64, b: u64, c: u64| {
        let busy = b.saturating_sub(a) as f64;
        let background = c.saturating_sub(b) as f64;
        (busy - background).max(0.0) / requests as f64
    };
    Ok(Row {
        scenario,
        requests,
        allocs: per(before.allocs, after.allocs, idle.allocs),
        reallocs: per(before.reallocs, after.reallocs, idle.reallocs),
        bytes: per(before.bytes, after.bytes, idle.bytes),
    })
}

fn measure() -> Result<()> {
    let requests: u64 = std::env::var("ALLOC_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let origin = start_origin()?;
    let (_proxy, listen, mut control) = start_proxy(origin)?;
    let mut rows = Vec::new();

    let mut keepalive = H1::connect(listen)?;
    rows.push(count(
        &mut control,
        "HTTP/1.1 keep-alive GET",
        requests,
        || keepalive.get(false),
    )?);

    rows.push(count(
        &mut control,
        "HTTP/1.1 GET, new connection",
        requests / 5,
        || H1::connect(listen)?.get(true),
    )?);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut h2 = runtime.block_on(rvoy_testkit::client::HyperClient::h2c(listen))?;
    rows.push(count(
        &mut control,
        "h2c GET (one connection)",
        requests,
        || {
            let resp = runtime.block_on(h2.get("/small", "bench"))?;
            if resp.status != 200 {
                return Err(format!("h2c status {}", resp.status).into());
            }
            Ok(())
        },
    )?);

    println!("allocations per proxied request (rvoy, counting allocator in the proxy process):");
    println!(
        "{:<32} {:>9} {:>12} {:>14} {:>16}",
        "scenario", "requests", "allocs/req", "reallocs/req", "bytes alloc/req"
    );
    for r in &rows {
        println!(
            "{:<32} {:>9} {:>12.1} {:>14.1} {:>16.0}",
            r.scenario, r.requests, r.allocs, r.reallocs, r.bytes
        );
    }
    Ok(())
}
