//! Graceful drain under load loses no request.
//!
//! An HTTP listener proxies to a loopback echo upstream that answers after
//! 30 ms (so requests are in flight at any moment); the proxy runs with
//! `--drain-time-s 2`. Client threads keep HTTP/1.1 keep-alive connections
//! busy (or HTTP/2 connections with concurrent streams), and mid-load the
//! admin `POST /drain_listeners?graceful` starts Envoy 1.40's drain sequence:
//! responses start closing their connections (`connection: close`, GOAWAY) and
//! the listeners stop accepting after the drain time.
//!
//! What users see is asserted, for rvoy and, where installed, for Envoy (the
//! oracle: its run must pass the same assertions, else the test is wrong):
//!
//! * every response is a complete 200 with the full body (a JSON echo naming
//!   the request, or 48 KiB of a known pattern);
//! * no request sent on an established connection fails (closed or reset
//!   before its response); a client told `connection: close` reconnects, and
//!   only new connections may be refused, after the drain time;
//! * no request that reached the upstream is lost;
//! * with `--drain-strategy immediate`, responses sent after the drain started
//!   carry `connection: close`, including the response to a request that was
//!   in flight when the drain started;
//! * a keep-alive connection idle when the drain starts is still served
//!   during the drain time (Envoy 1.40 does not close idle connections then);
//! * nor after it: a keep-alive connection idle through the whole drain, and
//!   a connection that has not sent a byte yet, are still open once the drain
//!   time is over (the listener stopped), and their next request is answered
//!   with `connection: close`;
//! * HTTP/2: GOAWAY lets the streams in flight finish, and goes out with a
//!   response (Envoy decides to drain a connection in
//!   `ActiveStream::encodeHeaders`), not as soon as a request arrives;
//! * `http.ingress.downstream_cx_drain_close` > 0,
//!   `listener_manager.listener_stopped` 1 and
//!   `listener_manager.total_listeners_draining` 0 (Envoy counts only
//!   LDS-removed listeners there), and new connections are refused once the
//!   drain time is over.
//!
//! Every loop is bounded in count and time; every socket operation has a
//! timeout. Both runs' facts are printed side by side (`--nocapture`).

mod common;

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::stat;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rvoy_testkit::echo::pattern_bytes;
use rvoy_testkit::raw::{RawConn, RawResponse, Request, send_once};
use rvoy_testkit::{Binary, EchoServer, Ports, Proxy, ProxyBuilder};

/// `--drain-time-s`.
const DRAIN_TIME: Duration = Duration::from_secs(2);
/// How long the upstream takes to answer a load request.
const UPSTREAM_DELAY_MS: u64 = 30;
/// The size of the "big" responses (every other request).
const BIG: usize = 48 * 1024;
/// When the drain starts, from the start of the load.
const DRAIN_AFTER: Duration = Duration::from_millis(800);
/// How long the load runs: past the drain time, so the listener stop is seen.
const LOAD_TIME: Duration = Duration::from_millis(800 + 2000 + 700);
/// HTTP/1 client threads, one keep-alive connection each at a time.
const H1_THREADS: usize = 8;
/// Requests per HTTP/1 thread at most (~100 fit in the load time).
const H1_MAX_REQUESTS: usize = 200;
/// HTTP/2 client connections and concurrent streams on each.
const H2_CONNS: usize = 3;
const H2_STREAMS: usize = 5;
/// Batches of streams per HTTP/2 connection at most.
const H2_MAX_BATCHES: usize = 200;
/// Bound of one connect, read or write.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// A refusal this long after the drain started is before the drain time:
/// the listener stopped too early.
const EARLIEST_STOP: Duration = Duration::from_millis(1500);
/// The upstream delay of the request in flight when the drain starts, and how
/// long before the drain it is sent.
const SLOW_DELAY_MS: u64 = 600;
const SLOW_LEAD: Duration = Duration::from_millis(250);
/// A client's pause between a response and its next request on the probes.
const THINK: Duration = Duration::from_millis(50);
/// The upstream delay of the request on an HTTP/2 connection opened during
/// the drain.
const LATE_DELAY_MS: u64 = 300;

const CONFIG: &str = r#"admin:
  address: {socket_address: {address: 127.0.0.1, port_value: {{port:admin}}}}
static_resources:
  listeners:
  - name: listener
    address: {socket_address: {address: 127.0.0.1, port_value: {{port:listener}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            name: local
            virtual_hosts:
            - name: v
              domains: ["*"]
              routes:
              - match: {prefix: "/"}
                route: {cluster: backend}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: {{port:backend}}}}}
"#;

/// The stats compared after a run.
const STATS: &[&str] = &[
    "http.ingress.downstream_cx_drain_close",
    "http.ingress.downstream_cx_total",
    "http.ingress.downstream_cx_destroy_local",
    "http.ingress.downstream_cx_destroy_remote",
    "http.ingress.downstream_cx_destroy_active_rq",
    "http.ingress.downstream_rq_total",
    "listener_manager.listener_stopped",
    "listener_manager.total_listeners_draining",
    "listener_manager.total_listeners_active",
];

// ---------------------------------------------------------------- set-up --

/// Envoy first when installed (its run checks the test), then rvoy.
fn binaries() -> Vec<Binary> {
    let mut v = Vec::new();
    match Binary::envoy() {
        Some(e) => v.push(e),
        None => eprintln!(
            "Envoy is not installed (ENVOY_BIN, .envoy/bin/envoy or PATH): \
             the differential part of this test is skipped, rvoy runs alone"
        ),
    }
    v.push(Binary::Rvoy(env!("CARGO_BIN_EXE_rvoy").into()));
    v
}

/// Runs the scenario on every binary; each gets up to two more tries when it
/// breaks the expectations. On this 2-core machine both Envoy and rvoy
/// occasionally leave one load stream unanswered for the whole 5 s window
/// (about one run in three for the HTTP/2 scenario, on both, with the same
/// signature), which also delays the listener probe past its deadline; with
/// one retry that still failed a CI run of an unrelated change (stop 22:
/// rvoy broke both runs, 1 stream unanswered). A real regression breaks
/// every run.
fn run_all<F>(run: impl Fn(&Binary) -> F, violations: impl Fn(&F) -> Vec<String>) -> Vec<F> {
    const TRIES: usize = 3;
    binaries()
        .iter()
        .map(|b| {
            let mut facts = run(b);
            for retry in 1..TRIES {
                if violations(&facts).is_empty() {
                    break;
                }
                eprintln!(
                    "{} broke the expectations (run {retry} of at most {TRIES}); running it again",
                    b.name()
                );
                facts = run(b);
            }
            facts
        })
        .collect()
}

fn start(binary: &Binary, echo: &EchoServer, strategy: &str) -> Proxy {
    let mut ports = Ports::new();
    ports.insert("backend", echo.port());
    let proxy = ProxyBuilder::new(binary.clone())
        .config(CONFIG)
        .ports(&ports)
        .extra_args(&[
            "--drain-time-s",
            "2",
            "--drain-strategy",
            strategy,
            "-l",
            "warning",
        ])
        .start()
        .unwrap_or_else(|e| panic!("{} starts and listens: {e}", binary.name()));
    // Listening is not serving yet (workers): wait for a first 200.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ok = RawConn::connect_timeout(proxy.addr("listener"), IO_TIMEOUT)
            .and_then(|mut c| c.request(&Request::get("/warmup", "drain.test")))
            .is_ok_and(|r| r.status == 200);
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} serves no 200 within 10 s",
            binary.name()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    proxy
}

fn admin(proxy: &Proxy, method: &str, path: &str) -> RawResponse {
    let req = Request::new(method, path).header("host", "admin").body(b"");
    send_once(proxy.addr("admin"), &req.to_bytes())
        .unwrap_or_else(|e| panic!("admin {method} {path}: {e}"))
}

fn stats(proxy: &Proxy) -> BTreeMap<&'static str, Option<u64>> {
    STATS.iter().map(|n| (*n, stat(proxy, n))).collect()
}

/// Waits (bounded) until a new connection to the listener is refused; returns
/// when, relative to `drain`.
fn wait_refused(addr: SocketAddr, drain: Instant) -> Option<Duration> {
    let deadline = drain + DRAIN_TIME + Duration::from_secs(3);
    while Instant::now() < deadline {
        if RawConn::connect_timeout(addr, Duration::from_millis(500)).is_err() {
            return Some(drain.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Milliseconds from `base` to `t` (negative before).
fn ms(t: Instant, base: Instant) -> i64 {
    if t >= base {
        i64::try_from(t.duration_since(base).as_millis()).unwrap_or(i64::MAX)
    } else {
        -i64::try_from(base.duration_since(t).as_millis()).unwrap_or(i64::MAX)
    }
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

// --------------------------------------------------------------- HTTP/1 --

/// What a client saw of one request.
#[derive(Debug, Clone)]
enum Outcome {
    /// A complete 200 with the expected body; whether it said `connection: close`.
    Ok { close: bool },
    /// The connection closed (or was reset) before any byte of a response.
    NoResponse(String),
    /// Anything else: another status, a wrong or truncated body, a timeout.
    Broken(String),
}

impl Outcome {
    fn text(&self) -> String {
        match self {
            Outcome::Ok { close: true } => "200, connection: close".to_owned(),
            Outcome::Ok { close: false } => "200, keep-alive".to_owned(),
            Outcome::NoResponse(e) => format!("no response ({e})"),
            Outcome::Broken(e) => format!("broken ({e})"),
        }
    }
}

#[derive(Debug, Clone)]
struct Event {
    path: String,
    /// Sent on a connection that had served a request before.
    reused: bool,
    sent: Instant,
    done: Instant,
    outcome: Outcome,
}

fn h1_request(path: &str, delay_ms: u64, big: bool) -> Request {
    let mut req = Request::get(path, "drain.test").header("x-echo-delay-ms", &delay_ms.to_string());
    if big {
        req = req.header("x-echo-response-size", &BIG.to_string());
    }
    req
}

/// Checks a response: 200 and the full expected body.
fn check_body(
    status: u16,
    body: &[u8],
    path: &str,
    big: bool,
    pattern: &[u8],
) -> Result<(), String> {
    if status != 200 {
        return Err(format!(
            "status {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ));
    }
    if big {
        if body != pattern {
            return Err(format!(
                "body of {} bytes, want {BIG} of the pattern",
                body.len()
            ));
        }
    } else {
        match rvoy_testkit::RecordedRequest::from_body(body) {
            Some(e) if e.path == path => {}
            Some(e) => return Err(format!("echo of {} for {path}", e.path)),
            None => return Err(format!("not an echo body ({} bytes)", body.len())),
        }
    }
    Ok(())
}

/// One request on `conn`, its response read and checked.
fn exchange(conn: &mut RawConn, path: &str, delay_ms: u64, big: bool, pattern: &[u8]) -> Outcome {
    if let Err(e) = conn.send(&h1_request(path, delay_ms, big).to_bytes()) {
        return Outcome::NoResponse(format!("send: {e}"));
    }
    match conn.read_response_or_close("GET") {
        Ok(None) => Outcome::NoResponse("closed before any response byte".to_owned()),
        Ok(Some(r)) => match check_body(r.status, &r.body, path, big, pattern) {
            Ok(()) => Outcome::Ok {
                close: r
                    .header("connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("close")),
            },
            Err(e) => Outcome::Broken(e),
        },
        Err(e) => Outcome::Broken(e.to_string()),
    }
}

/// One load thread: keep-alive requests until the load time or the count is
/// over; reconnects after `connection: close` or a failure.
fn h1_load(
    addr: SocketAddr,
    t: usize,
    start: Instant,
    pattern: &[u8],
) -> (Vec<Event>, Vec<(Instant, String)>) {
    let mut events = Vec::new();
    let mut refusals = Vec::new();
    let mut conn: Option<(RawConn, usize)> = None;
    for i in 0..H1_MAX_REQUESTS {
        if start.elapsed() >= LOAD_TIME {
            break;
        }
        if conn.is_none() {
            match RawConn::connect_timeout(addr, IO_TIMEOUT) {
                Ok(c) => conn = Some((c, 0)),
                Err(e) => {
                    refusals.push((Instant::now(), e.to_string()));
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            }
        }
        let Some((c, served)) = conn.as_mut() else {
            continue;
        };
        let path = format!("/load/{t}/{i}");
        let big = i % 2 == 1;
        let sent = Instant::now();
        let outcome = exchange(c, &path, UPSTREAM_DELAY_MS, big, pattern);
        let reused = *served > 0;
        *served += 1;
        let keep = matches!(outcome, Outcome::Ok { close: false });
        events.push(Event {
            path,
            reused,
            sent,
            done: Instant::now(),
            outcome,
        });
        if !keep {
            conn = None;
        }
    }
    (events, refusals)
}

/// The request in flight when the drain starts: sent `SLOW_LEAD` before it,
/// answered `SLOW_DELAY_MS` later; then, after a client's pause, the next
/// request (on the same connection unless told `connection: close`).
fn slow_probe(addr: SocketAddr, start: Instant, pattern: &[u8]) -> (Event, Event) {
    sleep_until(start + DRAIN_AFTER - SLOW_LEAD);
    let mut conn = RawConn::connect_timeout(addr, IO_TIMEOUT).expect("probe connects");
    let sent = Instant::now();
    let outcome = exchange(&mut conn, "/probe/slow", SLOW_DELAY_MS, false, pattern);
    let first = Event {
        path: "/probe/slow".to_owned(),
        reused: false,
        sent,
        done: Instant::now(),
        outcome,
    };
    std::thread::sleep(THINK);
    let reuse = matches!(first.outcome, Outcome::Ok { close: false });
    if !reuse {
        match RawConn::connect_timeout(addr, IO_TIMEOUT) {
            Ok(c) => conn = c,
            Err(e) => {
                let now = Instant::now();
                let refused = Event {
                    path: "/probe/slow/next".to_owned(),
                    reused: false,
                    sent: now,
                    done: now,
                    outcome: Outcome::NoResponse(format!("connect: {e}")),
                };
                return (first, refused);
            }
        }
    }
    let sent = Instant::now();
    let outcome = exchange(&mut conn, "/probe/slow/next", 0, false, pattern);
    let next = Event {
        path: "/probe/slow/next".to_owned(),
        reused: reuse,
        sent,
        done: Instant::now(),
        outcome,
    };
    (first, next)
}

/// What one HTTP/1 run showed.
#[derive(Debug, Default)]
struct H1Facts {
    binary: String,
    requests: usize,
    ok: usize,
    ok_close: usize,
    broken: Vec<String>,
    /// Requests on a connection that had served one before, with no response.
    failed_established: Vec<String>,
    /// Requests on a new connection with no response (the listener stopping).
    failed_new: Vec<String>,
    /// Requests the upstream received whose response the client did not get.
    lost_upstream: Vec<String>,
    refusals: usize,
    /// Connects refused before the drain time was (nearly) over.
    refused_early: Vec<String>,
    first_refusal_ms: Option<i64>,
    /// Requests sent after the drain began (admin answered) and answered.
    sent_after_drain: usize,
    /// ... of which without `connection: close`.
    keepalive_after_drain: Vec<String>,
    /// Keep-alive responses that arrived 20 ms or more after the drain began
    /// (in flight when it started); informative.
    late_keepalive: usize,
    slow: String,
    slow_close: bool,
    slow_next: String,
    slow_next_ok: bool,
    idle: String,
    idle_ok: bool,
    mid_drain_draining_gauge: Option<u64>,
    stopped_ms: Option<i64>,
    stats: BTreeMap<&'static str, Option<u64>>,
}

fn run_h1(binary: &Binary, strategy: &str) -> H1Facts {
    let echo = EchoServer::start("backend").expect("echo upstream");
    let proxy = start(binary, &echo, strategy);
    let addr = proxy.addr("listener");
    let pattern = pattern_bytes(BIG);
    // A keep-alive connection that served one request and is idle when the
    // drain starts.
    let mut idle = RawConn::connect_timeout(addr, IO_TIMEOUT).expect("idle probe connects");
    let first = exchange(&mut idle, "/probe/idle/0", 0, false, &pattern);
    assert!(
        matches!(first, Outcome::Ok { close: false }),
        "{}: first request on the idle probe: {}",
        binary.name(),
        first.text()
    );
    let start = Instant::now();
    let mut drain = (start, start);
    let mut idle_event = None;
    let mut mid_gauge = None;
    let (loads, slow) = std::thread::scope(|s| {
        let pattern = &pattern;
        let loads: Vec<_> = (0..H1_THREADS)
            .map(|t| s.spawn(move || h1_load(addr, t, start, pattern)))
            .collect();
        let slow = s.spawn(move || slow_probe(addr, start, pattern));
        sleep_until(start + DRAIN_AFTER);
        let sent = Instant::now();
        let r = admin(&proxy, "POST", "/drain_listeners?graceful");
        drain = (sent, Instant::now());
        assert_eq!(
            (r.status, r.body_str().as_str()),
            (200, "OK\n"),
            "{}: /drain_listeners?graceful",
            binary.name()
        );
        // The idle connection, 300 ms into the drain.
        std::thread::sleep(Duration::from_millis(300));
        let sent = Instant::now();
        let outcome = exchange(&mut idle, "/probe/idle/1", 0, false, pattern);
        idle_event = Some(Event {
            path: "/probe/idle/1".to_owned(),
            reused: true,
            sent,
            done: Instant::now(),
            outcome,
        });
        mid_gauge = stat(&proxy, "listener_manager.total_listeners_draining");
        let loads: Vec<_> = loads
            .into_iter()
            .map(|h| h.join().expect("load thread"))
            .collect();
        (loads, slow.join().expect("slow probe thread"))
    });
    let (drain_sent, drain_done) = drain;
    let stopped = wait_refused(addr, drain_sent);
    let stats = stats(&proxy);
    let upstream: HashSet<String> = echo.requests().into_iter().map(|r| r.path).collect();

    let mut f = H1Facts {
        binary: binary.name().to_owned(),
        stats,
        mid_drain_draining_gauge: mid_gauge,
        stopped_ms: stopped.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        ..H1Facts::default()
    };
    let idle_event = idle_event.expect("idle probe ran");
    let (slow_first, slow_next) = slow;
    let mut events: Vec<Event> = Vec::new();
    for (ev, refusals) in loads {
        events.extend(ev);
        f.refusals += refusals.len();
        for (at, e) in refusals {
            let rel = ms(at, drain_sent);
            f.first_refusal_ms = Some(f.first_refusal_ms.map_or(rel, |m| m.min(rel)));
            if at < drain_sent + EARLIEST_STOP {
                f.refused_early.push(format!("at {rel} ms: {e}"));
            }
        }
    }
    events.extend([slow_first.clone(), slow_next.clone(), idle_event.clone()]);
    for e in &events {
        f.requests += 1;
        let what = format!(
            "{} sent at {} ms, done at {} ms{}: {}",
            e.path,
            ms(e.sent, drain_sent),
            ms(e.done, drain_sent),
            if e.reused {
                " (reused connection)"
            } else {
                " (new connection)"
            },
            e.outcome.text()
        );
        match &e.outcome {
            Outcome::Ok { close } => {
                f.ok += 1;
                if *close {
                    f.ok_close += 1;
                }
                if e.sent >= drain_done {
                    f.sent_after_drain += 1;
                    if !close {
                        f.keepalive_after_drain.push(what.clone());
                    }
                }
                if !close && e.done >= drain_done + Duration::from_millis(20) && e.sent < drain_sent
                {
                    f.late_keepalive += 1;
                }
            }
            Outcome::NoResponse(_) => {
                if e.reused {
                    f.failed_established.push(what.clone());
                } else {
                    f.failed_new.push(what.clone());
                }
            }
            Outcome::Broken(_) => f.broken.push(what.clone()),
        }
        if !matches!(e.outcome, Outcome::Ok { .. }) && upstream.contains(&e.path) {
            f.lost_upstream.push(what);
        }
    }
    f.slow = format!(
        "{} (sent {} ms, answered {} ms from the drain)",
        slow_first.outcome.text(),
        ms(slow_first.sent, drain_sent),
        ms(slow_first.done, drain_sent)
    );
    f.slow_close = matches!(slow_first.outcome, Outcome::Ok { close: true });
    f.slow_next = format!(
        "{} on a {} connection",
        slow_next.outcome.text(),
        if slow_next.reused { "reused" } else { "new" }
    );
    f.slow_next_ok = matches!(slow_next.outcome, Outcome::Ok { .. });
    f.idle = idle_event.outcome.text();
    f.idle_ok = matches!(idle_event.outcome, Outcome::Ok { .. });
    drop(proxy);
    f
}

fn first_few(v: &[String]) -> String {
    let mut s = String::new();
    for line in v.iter().take(6) {
        let _ = write!(s, "\n      {line}");
    }
    if v.len() > 6 {
        let _ = write!(s, "\n      ... {} more", v.len() - 6);
    }
    s
}

fn h1_violations(f: &H1Facts, immediate: bool) -> Vec<String> {
    let mut v = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            v.push(what);
        }
    };
    check(
        f.ok >= 200 && f.sent_after_drain > 0,
        format!(
            "too little load: {} responses, {} sent after the drain began",
            f.ok, f.sent_after_drain
        ),
    );
    check(
        f.broken.is_empty(),
        format!(
            "{} responses not a complete 200 with the full body:{}",
            f.broken.len(),
            first_few(&f.broken)
        ),
    );
    check(
        f.failed_established.is_empty(),
        format!(
            "{} requests on established keep-alive connections got no response (closed/reset):{}",
            f.failed_established.len(),
            first_few(&f.failed_established)
        ),
    );
    check(
        f.lost_upstream.is_empty(),
        format!(
            "{} requests reached the upstream but their response was lost:{}",
            f.lost_upstream.len(),
            first_few(&f.lost_upstream)
        ),
    );
    check(
        f.refused_early.is_empty(),
        format!(
            "new connections refused before the drain time was over:{}",
            first_few(&f.refused_early)
        ),
    );
    if immediate {
        check(
            f.keepalive_after_drain.is_empty(),
            format!(
                "{} responses to requests sent after the drain began lack `connection: close`:{}",
                f.keepalive_after_drain.len(),
                first_few(&f.keepalive_after_drain)
            ),
        );
        check(
            f.slow_close,
            format!(
                "the response to the request in flight when the drain began lacks `connection: close`: {}",
                f.slow
            ),
        );
        check(
            f.idle_ok,
            format!(
                "a keep-alive connection idle when the drain began is not served 300 ms later: {}",
                f.idle
            ),
        );
    }
    check(
        f.slow_next_ok,
        format!(
            "the request after the in-flight one ({}) failed: {}",
            f.slow, f.slow_next
        ),
    );
    let s = |n: &str| f.stats.get(n).copied().flatten();
    check(
        s("http.ingress.downstream_cx_drain_close").is_some_and(|n| n > 0),
        format!(
            "http.ingress.downstream_cx_drain_close = {:?}, want > 0",
            s("http.ingress.downstream_cx_drain_close")
        ),
    );
    check(
        s("listener_manager.listener_stopped") == Some(1),
        format!(
            "listener_manager.listener_stopped = {:?}, want 1",
            s("listener_manager.listener_stopped")
        ),
    );
    check(
        s("listener_manager.total_listeners_draining") == Some(0)
            && f.mid_drain_draining_gauge == Some(0),
        format!(
            "listener_manager.total_listeners_draining = {:?} during the drain, {:?} after, want 0",
            f.mid_drain_draining_gauge,
            s("listener_manager.total_listeners_draining")
        ),
    );
    check(
        f.stopped_ms
            .is_some_and(|m| m >= EARLIEST_STOP.as_millis() as i64),
        format!(
            "new connections refused from {:?} ms after the drain began, want after ~{} ms",
            f.stopped_ms,
            DRAIN_TIME.as_millis()
        ),
    );
    v
}

/// One table row: `label`, then `cell` of each run.
fn row<T>(label: &str, runs: &[T], cell: impl Fn(&T) -> String) -> (String, Vec<String>) {
    (label.to_owned(), runs.iter().map(cell).collect())
}

fn h1_table(runs: &[H1Facts]) -> String {
    let mut rows: Vec<(String, Vec<String>)> = vec![
        row("requests", runs, |f| f.requests.to_string()),
        row("complete 200", runs, |f| f.ok.to_string()),
        row("... with connection: close", runs, |f| {
            f.ok_close.to_string()
        }),
        row("broken responses", runs, |f| f.broken.len().to_string()),
        row("no response, established conn", runs, |f| {
            f.failed_established.len().to_string()
        }),
        row("no response, new conn", runs, |f| {
            f.failed_new.len().to_string()
        }),
        row("lost after reaching upstream", runs, |f| {
            f.lost_upstream.len().to_string()
        }),
        row("connects refused", runs, |f| f.refusals.to_string()),
        row("first refusal (ms from drain)", runs, |f| {
            format!("{:?}", f.first_refusal_ms)
        }),
        row("sent after drain, answered", runs, |f| {
            f.sent_after_drain.to_string()
        }),
        row("... keep-alive (no close)", runs, |f| {
            f.keepalive_after_drain.len().to_string()
        }),
        row("in flight at drain, keep-alive reply", runs, |f| {
            f.late_keepalive.to_string()
        }),
        row("slow probe", runs, |f| f.slow.clone()),
        row("slow probe, next request", runs, |f| f.slow_next.clone()),
        row("idle conn at drain+300ms", runs, |f| f.idle.clone()),
        row("listener refused at (ms)", runs, |f| {
            format!("{:?}", f.stopped_ms)
        }),
        row("total_listeners_draining mid-drain", runs, |f| {
            format!("{:?}", f.mid_drain_draining_gauge)
        }),
    ];
    for name in STATS {
        rows.push((
            (*name).to_owned(),
            runs.iter()
                .map(|f| format!("{:?}", f.stats.get(name).copied().flatten()))
                .collect(),
        ));
    }
    table(
        &runs.iter().map(|f| f.binary.clone()).collect::<Vec<_>>(),
        &rows,
    )
}

fn table(names: &[String], rows: &[(String, Vec<String>)]) -> String {
    let mut out = format!("  {:<40}", "");
    for n in names {
        let _ = write!(out, " | {n:<40}");
    }
    out.push('\n');
    for (k, vals) in rows {
        let _ = write!(out, "  {k:<40}");
        for v in vals {
            let _ = write!(out, " | {v:<40}");
        }
        out.push('\n');
    }
    out
}

/// Runs the scenario on every binary, prints the facts side by side, and
/// fails on the violations (Envoy's first: they would mean the test is wrong).
fn judge<F>(
    title: &str,
    runs: &[F],
    violations: impl Fn(&F) -> Vec<String>,
    name: impl Fn(&F) -> &str,
    table: String,
) {
    eprintln!("{title}\n{table}");
    let mut failures = String::new();
    for f in runs {
        let v = violations(f);
        if v.is_empty() {
            eprintln!("{}: no violation", name(f));
            continue;
        }
        let who = if name(f) == "envoy" {
            "envoy (the oracle: the test's expectations are wrong or the machine is overloaded)"
        } else {
            name(f)
        };
        let _ = write!(failures, "\n{who}:");
        for line in v {
            let _ = write!(failures, "\n  - {line}");
        }
    }
    assert!(failures.is_empty(), "{title}:{failures}\n{table}");
}

// ------------------------------------------------------ idle connections --

/// What became of a connection left idle through a whole drain.
#[derive(Debug)]
struct IdleConn {
    /// Which connection: one keep-alive connection that had one request
    /// answered before the drain, one that sent nothing.
    what: &'static str,
    /// Closed by the proxy by the end of the drain time and a second.
    closed: bool,
    /// Its next request: the status and `connection` header, or the failure.
    next: String,
}

#[derive(Debug)]
struct IdleFacts {
    binary: String,
    conns: [IdleConn; 2],
}

/// A request's answer as `status connection: value`, or what went wrong.
fn answer(conn: &mut RawConn, path: &str) -> String {
    match conn.request(&Request::get(path, "drain.test")) {
        Ok(r) => format!(
            "{} connection: {}",
            r.status,
            r.header("connection").unwrap_or("-")
        ),
        Err(e) => format!("failed: {e}"),
    }
}

fn run_idle(binary: &Binary) -> IdleFacts {
    let echo = EchoServer::start("backend").expect("echo");
    let proxy = start(binary, &echo, "immediate");
    let addr = proxy.addr("listener");
    let mut keepalive = RawConn::connect_timeout(addr, IO_TIMEOUT).expect("connects");
    let first = answer(&mut keepalive, "/idle/0");
    assert!(first.starts_with("200 "), "{}: {first}", binary.name());
    let silent = RawConn::connect_timeout(addr, IO_TIMEOUT).expect("connects");
    std::thread::sleep(THINK);
    let drained = admin(&proxy, "POST", "/drain_listeners");
    assert_eq!(drained.status, 200, "{}: drain_listeners", binary.name());
    let drain = Instant::now();
    // The drain time is over (and the listener stopped) a second before.
    sleep_until(drain + DRAIN_TIME + Duration::from_secs(1));
    let conns = [("keep-alive", keepalive), ("silent", silent)].map(|(what, mut conn)| {
        let closed = conn.is_closed(Duration::from_millis(50));
        IdleConn {
            what,
            closed,
            next: answer(&mut conn, &format!("/idle/{what}")),
        }
    });
    IdleFacts {
        binary: binary.name().to_owned(),
        conns,
    }
}

fn idle_violations(f: &IdleFacts) -> Vec<String> {
    let wanted = "200 connection: close";
    let mut v = Vec::new();
    for c in &f.conns {
        if c.closed {
            v.push(format!(
                "the idle {} connection was closed by the drain",
                c.what
            ));
        }
        if c.next != wanted {
            v.push(format!(
                "the {} connection's next request got `{}`, want `{wanted}`",
                c.what, c.next
            ));
        }
    }
    v
}

#[test]
fn idle_connections_outlive_the_drain() {
    let runs = run_all(run_idle, idle_violations);
    let mut rows = Vec::new();
    for (i, what) in ["keep-alive", "silent"].iter().enumerate() {
        rows.push(row(&format!("{what} conn closed by drain"), &runs, |f| {
            f.conns[i].closed.to_string()
        }));
        rows.push(row("... its next request", &runs, |f| {
            f.conns[i].next.clone()
        }));
    }
    let table = table(
        &runs.iter().map(|f| f.binary.clone()).collect::<Vec<_>>(),
        &rows,
    );
    judge(
        "two connections idle through the drain, --drain-strategy immediate, POST /drain_listeners",
        &runs,
        idle_violations,
        |f| &f.binary,
        table,
    );
}

#[test]
fn h1_immediate_drain_under_load_loses_no_request() {
    let runs = run_all(|b| run_h1(b, "immediate"), |f| h1_violations(f, true));
    judge(
        "HTTP/1.1 keep-alive load, --drain-strategy immediate, POST /drain_listeners?graceful",
        &runs,
        |f| h1_violations(f, true),
        |f| &f.binary,
        h1_table(&runs),
    );
}

#[test]
fn h1_gradual_drain_under_load_loses_no_request() {
    let runs = run_all(|b| run_h1(b, "gradual"), |f| h1_violations(f, false));
    judge(
        "HTTP/1.1 keep-alive load, --drain-strategy gradual, POST /drain_listeners?graceful",
        &runs,
        |f| h1_violations(f, false),
        |f| &f.binary,
        h1_table(&runs),
    );
}

// --------------------------------------------------------------- HTTP/2 --

type H2Sender = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

/// What went over one client HTTP/2 connection (frames, EOF), with when.
type FrameLog = std::sync::Mutex<Vec<(Instant, String)>>;

/// An h2c (prior knowledge) connection; the connection task runs on the
/// runtime. Its frames are logged (to explain a failed stream).
async fn h2_connect(addr: SocketAddr) -> Result<(H2Sender, Arc<FrameLog>), String> {
    let tcp = tokio::time::timeout(IO_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let log = Arc::new(FrameLog::default());
    let tap = Tap {
        inner: tcp,
        log: log.clone(),
        rx: FrameScan::new(0, "<-"),
        tx: FrameScan::new(24, "->"),
    };
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tap),
    )
    .await
    .map_err(|e| format!("handshake: {e:?}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok((sender, log))
}

/// Finds frame headers in one direction of an HTTP/2 byte stream and logs
/// the frames that matter for a drain (HEADERS, END_STREAM, RST_STREAM,
/// GOAWAY, PING).
struct FrameScan {
    dir: &'static str,
    /// Bytes of the client preface still to skip.
    preface: usize,
    head: Vec<u8>,
    /// The current frame: type, flags, stream, payload still to come, and
    /// the first payload bytes (for RST_STREAM, GOAWAY).
    cur: Option<(u8, u8, u32, usize)>,
    payload: Vec<u8>,
}

impl FrameScan {
    fn new(preface: usize, dir: &'static str) -> Self {
        FrameScan {
            dir,
            preface,
            head: Vec::with_capacity(9),
            cur: None,
            payload: Vec::new(),
        }
    }

    fn feed(&mut self, mut data: &[u8], log: &FrameLog) {
        let skip = self.preface.min(data.len());
        self.preface -= skip;
        data = &data[skip..];
        while !data.is_empty() {
            if let Some((ty, flags, id, left)) = self.cur {
                let take = left.min(data.len());
                if self.payload.len() < 8 {
                    let want = (8 - self.payload.len()).min(take);
                    self.payload.extend_from_slice(&data[..want]);
                }
                data = &data[take..];
                if left - take == 0 {
                    self.cur = None;
                    self.finish(ty, flags, id, log);
                } else {
                    self.cur = Some((ty, flags, id, left - take));
                }
                continue;
            }
            let take = (9 - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.head.len() == 9 {
                let h = std::mem::take(&mut self.head);
                let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
                let id = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                self.payload.clear();
                if len == 0 {
                    self.finish(h[3], h[4], id, log);
                } else {
                    self.cur = Some((h[3], h[4], id, len));
                }
            }
        }
    }

    fn finish(&mut self, ty: u8, flags: u8, id: u32, log: &FrameLog) {
        let word = |i: usize| {
            self.payload
                .get(i..i + 4)
                .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        let end = if flags & 1 == 1 { " END_STREAM" } else { "" };
        let line = match ty {
            0 if flags & 1 == 1 => format!("DATA stream {id}{end}"),
            1 => format!("HEADERS stream {id}{end}"),
            3 => format!("RST_STREAM stream {id} error {}", word(0)),
            6 => format!("PING{}", if flags & 1 == 1 { " ACK" } else { "" }),
            7 => format!(
                "GOAWAY last_stream_id {} error {}",
                word(0) & 0x7fff_ffff,
                word(4)
            ),
            _ => return,
        };
        if let Ok(mut l) = log.lock() {
            l.push((Instant::now(), format!("{} {line}", self.dir)));
        }
    }
}

/// A TCP stream that logs the HTTP/2 frames going over it.
struct Tap {
    inner: tokio::net::TcpStream,
    log: Arc<FrameLog>,
    rx: FrameScan,
    tx: FrameScan,
}

impl Tap {
    fn note(&self, what: &str) {
        if let Ok(mut l) = self.log.lock() {
            l.push((Instant::now(), what.to_owned()));
        }
    }
}

impl tokio::io::AsyncRead for Tap {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut this.inner).poll_read(cx, buf);
        match &r {
            std::task::Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                if new.is_empty() {
                    this.note("<- EOF");
                } else {
                    this.rx.feed(new, &this.log);
                }
            }
            std::task::Poll::Ready(Err(e)) => this.note(&format!("<- error {e}")),
            std::task::Poll::Pending => {}
        }
        r
    }
}

impl tokio::io::AsyncWrite for Tap {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = std::pin::Pin::new(&mut this.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = r {
            this.tx.feed(&buf[..n], &this.log);
        }
        r
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        this.note("-> FIN (client closes)");
        std::pin::Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// The frames of `log` from 60 ms before `from` to 20 ms after `to`,
/// relative to `base`.
fn frames_around(log: &FrameLog, from: Instant, to: Instant, base: Instant) -> String {
    let Ok(l) = log.lock() else {
        return String::new();
    };
    let lo = from.checked_sub(Duration::from_millis(60)).unwrap_or(from);
    let hi = to + Duration::from_millis(20);
    let mut out = String::new();
    for (at, line) in l.iter().filter(|(at, _)| *at >= lo && *at <= hi).take(30) {
        let _ = write!(out, "\n          {:>5} ms {line}", ms(*at, base));
    }
    out
}

/// How an HTTP/2 request ended.
#[derive(Debug, Clone)]
enum H2Outcome {
    Ok,
    /// Failed before any response (refused by GOAWAY, or the connection closed).
    NoResponse(String),
    /// A response that is not a complete 200 with the full body, or a timeout.
    Broken(String),
}

async fn h2_get(
    sender: &mut H2Sender,
    path: &str,
    delay_ms: u64,
    big: bool,
    pattern: &[u8],
) -> H2Outcome {
    let mut b = http::Request::builder()
        .method("GET")
        .version(http::Version::HTTP_2)
        .uri(format!("http://drain.test{path}"))
        .header("x-echo-delay-ms", delay_ms.to_string());
    if big {
        b = b.header("x-echo-response-size", BIG.to_string());
    }
    let req = match b.body(Full::new(Bytes::new())) {
        Ok(r) => r,
        Err(e) => return H2Outcome::Broken(format!("request: {e}")),
    };
    let fut = async {
        if let Err(e) = sender.ready().await {
            return H2Outcome::NoResponse(format!("ready: {e:?}"));
        }
        let resp = match sender.send_request(req).await {
            Ok(r) => r,
            Err(e) => return H2Outcome::NoResponse(format!("send: {e:?}")),
        };
        let status = resp.status().as_u16();
        match resp.into_body().collect().await {
            Ok(body) => match check_body(status, &body.to_bytes(), path, big, pattern) {
                Ok(()) => H2Outcome::Ok,
                Err(e) => H2Outcome::Broken(e),
            },
            Err(e) => H2Outcome::Broken(format!("status {status}, then body error: {e:?}")),
        }
    };
    tokio::time::timeout(IO_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| H2Outcome::Broken(format!("no response within {IO_TIMEOUT:?}")))
}

#[derive(Debug, Clone)]
struct H2Event {
    path: String,
    sent: Instant,
    done: Instant,
    outcome: H2Outcome,
    /// The frames of its connection.
    frames: Arc<FrameLog>,
}

/// One HTTP/2 connection's load: batches of concurrent streams; reconnects
/// when a stream is refused or the connection closed (GOAWAY).
async fn h2_load(
    addr: SocketAddr,
    c: usize,
    start: Instant,
    pattern: Arc<Vec<u8>>,
) -> (Vec<H2Event>, Vec<(Instant, String)>, usize) {
    let mut events = Vec::new();
    let mut refusals = Vec::new();
    let mut connections = 0;
    let mut sender: Option<(H2Sender, Arc<FrameLog>)> = None;
    for batch in 0..H2_MAX_BATCHES {
        if start.elapsed() >= LOAD_TIME {
            break;
        }
        let (s, frames) = match &sender {
            Some((s, f)) if !s.is_closed() => (s.clone(), f.clone()),
            _ => match h2_connect(addr).await {
                Ok(s) => {
                    connections += 1;
                    sender = Some(s.clone());
                    s
                }
                Err(e) => {
                    sender = None;
                    refusals.push((Instant::now(), e));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let futs = (0..H2_STREAMS).map(|k| {
            let mut s = s.clone();
            let pattern = pattern.clone();
            let frames = frames.clone();
            let path = format!("/h2/{c}/{batch}/{k}");
            async move {
                let sent = Instant::now();
                let outcome = h2_get(&mut s, &path, UPSTREAM_DELAY_MS, k % 2 == 1, &pattern).await;
                H2Event {
                    path,
                    sent,
                    done: Instant::now(),
                    outcome,
                    frames,
                }
            }
        });
        let done = rvoy_testkit::futures_util::future::join_all(futs).await;
        if done.iter().any(|e| !matches!(e.outcome, H2Outcome::Ok)) {
            sender = None;
        }
        events.extend(done);
    }
    (events, refusals, connections)
}

#[derive(Debug, Default)]
struct H2Facts {
    binary: String,
    streams: usize,
    ok: usize,
    broken: Vec<String>,
    /// Streams that failed before a response and never reached the upstream:
    /// refused by GOAWAY (safe to retry).
    refused_streams: Vec<String>,
    /// Streams that reached the upstream but got no complete response.
    lost_upstream: Vec<String>,
    connections: usize,
    refusals: usize,
    refused_early: Vec<String>,
    /// The stream in flight when the drain began.
    slow: String,
    slow_ok: bool,
    /// A new stream on the same connection 100 ms into the drain.
    quick: String,
    /// A stream on that connection after both finished (and GOAWAY).
    after: String,
    /// Whether the client saw the connection close (or refuse new streams)
    /// after GOAWAY.
    told_to_go_away: bool,
    /// A connection opened 100 ms into the drain, one request answered after
    /// 300 ms: when its GOAWAY came, relative to the request and its response.
    late: String,
    late_ok: bool,
    late_goaway_ms: Option<i64>,
    late_response_ms: Option<i64>,
    stopped_ms: Option<i64>,
    stats: BTreeMap<&'static str, Option<u64>>,
}

fn h2_text(o: &H2Outcome) -> String {
    match o {
        H2Outcome::Ok => "200, full body".to_owned(),
        H2Outcome::NoResponse(e) => format!("no response ({e})"),
        H2Outcome::Broken(e) => format!("broken ({e})"),
    }
}

fn run_h2(binary: &Binary) -> H2Facts {
    let echo = EchoServer::start("backend").expect("echo upstream");
    let proxy = start(binary, &echo, "immediate");
    let addr = proxy.addr("listener");
    let pattern = Arc::new(pattern_bytes(BIG));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let admin_addr = proxy.addr("admin");
    let (loads, probe, drain_sent) = rt.block_on(async {
        let start = Instant::now();
        let loads: Vec<_> = (0..H2_CONNS)
            .map(|c| tokio::spawn(h2_load(addr, c, start, pattern.clone())))
            .collect();
        // The probe connection: a slow stream in flight when the drain starts.
        let (mut probe, probe_frames) = h2_connect(addr).await.expect("probe connects");
        tokio::time::sleep_until((start + DRAIN_AFTER - SLOW_LEAD).into()).await;
        let slow = {
            let mut s = probe.clone();
            let pattern = pattern.clone();
            let frames = probe_frames.clone();
            tokio::spawn(async move {
                let sent = Instant::now();
                let outcome = h2_get(&mut s, "/probe/slow", SLOW_DELAY_MS, true, &pattern).await;
                H2Event {
                    path: "/probe/slow".into(),
                    sent,
                    done: Instant::now(),
                    outcome,
                    frames,
                }
            })
        };
        tokio::time::sleep_until((start + DRAIN_AFTER).into()).await;
        let drain_sent = Instant::now();
        let r = tokio::task::spawn_blocking(move || {
            let req = Request::new("POST", "/drain_listeners?graceful")
                .header("host", "admin")
                .body(b"");
            send_once(admin_addr, &req.to_bytes())
        })
        .await
        .expect("admin task")
        .expect("admin answers");
        assert_eq!(r.status, 200, "/drain_listeners?graceful");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let late = {
            let pattern = pattern.clone();
            tokio::spawn(async move {
                let (mut s, frames) = h2_connect(addr).await.expect("late probe connects");
                let sent = Instant::now();
                let outcome = h2_get(&mut s, "/probe/late", LATE_DELAY_MS, false, &pattern).await;
                H2Event {
                    path: "/probe/late".into(),
                    sent,
                    done: Instant::now(),
                    outcome,
                    frames,
                }
            })
        };
        let sent = Instant::now();
        let quick = h2_get(&mut probe, "/probe/quick", 0, false, &pattern).await;
        let quick = H2Event {
            path: "/probe/quick".into(),
            sent,
            done: Instant::now(),
            outcome: quick,
            frames: probe_frames.clone(),
        };
        let slow = slow.await.expect("slow stream task");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let sent = Instant::now();
        let after = h2_get(&mut probe, "/probe/after", 0, false, &pattern).await;
        let after = H2Event {
            path: "/probe/after".into(),
            sent,
            done: Instant::now(),
            outcome: after,
            frames: probe_frames.clone(),
        };
        // Told to go away: the connection refuses new streams or closes.
        let deadline = Instant::now() + Duration::from_secs(1);
        while !probe.is_closed() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let closed = probe.is_closed();
        let mut results = Vec::new();
        for l in loads {
            results.push(l.await.expect("load task"));
        }
        let late = late.await.expect("late probe task");
        (results, (slow, quick, after, closed, late), drain_sent)
    });
    let stopped = wait_refused(addr, drain_sent);
    let stats = stats(&proxy);
    let upstream: HashSet<String> = echo.requests().into_iter().map(|r| r.path).collect();
    let mut f = H2Facts {
        binary: binary.name().to_owned(),
        stats,
        stopped_ms: stopped.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        ..H2Facts::default()
    };
    let (slow, quick, after, closed, late) = probe;
    let mut events = Vec::new();
    for (ev, refusals, conns) in loads {
        events.extend(ev);
        f.connections += conns;
        f.refusals += refusals.len();
        for (at, e) in refusals {
            if at < drain_sent + EARLIEST_STOP {
                f.refused_early
                    .push(format!("at {} ms: {e}", ms(at, drain_sent)));
            }
        }
    }
    events.extend([slow.clone(), quick.clone()]);
    for e in &events {
        f.streams += 1;
        let what = format!(
            "{} sent at {} ms, done at {} ms: {}",
            e.path,
            ms(e.sent, drain_sent),
            ms(e.done, drain_sent),
            h2_text(&e.outcome)
        );
        let reached = upstream.contains(&e.path);
        match &e.outcome {
            H2Outcome::Ok => f.ok += 1,
            H2Outcome::NoResponse(_) if reached => f.lost_upstream.push(format!(
                "{what}; frames on its connection:{}",
                frames_around(&e.frames, e.sent, e.done, drain_sent)
            )),
            H2Outcome::NoResponse(_) => f.refused_streams.push(what),
            H2Outcome::Broken(_) => f.broken.push(what),
        }
    }
    f.slow = format!(
        "{} (sent {} ms, done {} ms from the drain)",
        h2_text(&slow.outcome),
        ms(slow.sent, drain_sent),
        ms(slow.done, drain_sent)
    );
    f.slow_ok = matches!(slow.outcome, H2Outcome::Ok);
    f.quick = h2_text(&quick.outcome);
    let first = |needle: &str| {
        late.frames.lock().ok().and_then(|l| {
            l.iter()
                .find(|(_, line)| line.starts_with(needle))
                .map(|(at, _)| ms(*at, late.sent))
        })
    };
    f.late_goaway_ms = first("<- GOAWAY");
    f.late_response_ms = first("<- HEADERS stream 1");
    f.late_ok = matches!(late.outcome, H2Outcome::Ok);
    f.late = format!(
        "{}; GOAWAY at {:?} ms, response at {:?} ms",
        h2_text(&late.outcome),
        f.late_goaway_ms,
        f.late_response_ms
    );
    let after_reached = upstream.contains(&after.path);
    f.after = format!(
        "{}{}",
        h2_text(&after.outcome),
        if after_reached {
            ", reached the upstream"
        } else {
            ""
        }
    );
    f.told_to_go_away = closed || (!after_reached && !matches!(after.outcome, H2Outcome::Ok));
    drop(proxy);
    f
}

fn h2_violations(f: &H2Facts) -> Vec<String> {
    let mut v = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            v.push(what);
        }
    };
    check(
        f.ok >= 200,
        format!("too little load: {} complete streams", f.ok),
    );
    check(
        f.broken.is_empty(),
        format!(
            "{} streams not a complete 200 with the full body:{}",
            f.broken.len(),
            first_few(&f.broken)
        ),
    );
    check(
        f.lost_upstream.is_empty(),
        format!(
            "{} streams reached the upstream but got no response:{}",
            f.lost_upstream.len(),
            first_few(&f.lost_upstream)
        ),
    );
    check(
        f.slow_ok,
        format!(
            "the stream in flight when the drain began did not finish: {}",
            f.slow
        ),
    );
    check(
        f.refused_early.is_empty(),
        format!(
            "new connections refused before the drain time was over:{}",
            first_few(&f.refused_early)
        ),
    );
    // Envoy decides to drain a connection when it encodes a response
    // (`ActiveStream::encodeHeaders`): GOAWAY goes out with the first
    // response, not when a request arrives.
    check(
        f.late_ok
            && f.late_goaway_ms
                .is_some_and(|g| g >= LATE_DELAY_MS as i64 - 50)
            && f.late_response_ms.is_some(),
        format!(
            "on a connection opened during the drain, GOAWAY should come with the first response \
             ({LATE_DELAY_MS} ms after the request), not when the request arrives: {}",
            f.late
        ),
    );
    let s = |n: &str| f.stats.get(n).copied().flatten();
    check(
        s("http.ingress.downstream_cx_drain_close").is_some_and(|n| n > 0),
        format!(
            "http.ingress.downstream_cx_drain_close = {:?}, want > 0 (GOAWAY sent)",
            s("http.ingress.downstream_cx_drain_close")
        ),
    );
    check(
        s("listener_manager.listener_stopped") == Some(1),
        format!(
            "listener_manager.listener_stopped = {:?}, want 1",
            s("listener_manager.listener_stopped")
        ),
    );
    check(
        f.stopped_ms
            .is_some_and(|m| m >= EARLIEST_STOP.as_millis() as i64),
        format!(
            "new connections refused from {:?} ms after the drain began, want after ~{} ms",
            f.stopped_ms,
            DRAIN_TIME.as_millis()
        ),
    );
    v
}

fn h2_table(runs: &[H2Facts]) -> String {
    let mut rows: Vec<(String, Vec<String>)> = vec![
        row("streams", runs, |f| f.streams.to_string()),
        row("complete 200", runs, |f| f.ok.to_string()),
        row("broken", runs, |f| f.broken.len().to_string()),
        row("refused (not at upstream)", runs, |f| {
            f.refused_streams.len().to_string()
        }),
        row("lost after reaching upstream", runs, |f| {
            f.lost_upstream.len().to_string()
        }),
        row("connections opened", runs, |f| f.connections.to_string()),
        row("connects refused", runs, |f| f.refusals.to_string()),
        row("in-flight stream at drain", runs, |f| f.slow.clone()),
        row("new stream 100 ms into drain", runs, |f| f.quick.clone()),
        row("stream after GOAWAY", runs, |f| f.after.clone()),
        row("conn opened in drain: GOAWAY/response", runs, |f| {
            f.late.clone()
        }),
        row("client told to go away", runs, |f| {
            f.told_to_go_away.to_string()
        }),
        row("listener refused at (ms)", runs, |f| {
            format!("{:?}", f.stopped_ms)
        }),
    ];
    for name in STATS {
        rows.push((
            (*name).to_owned(),
            runs.iter()
                .map(|f| format!("{:?}", f.stats.get(name).copied().flatten()))
                .collect(),
        ));
    }
    let mut t = table(
        &runs.iter().map(|f| f.binary.clone()).collect::<Vec<_>>(),
        &rows,
    );
    for f in runs {
        if !f.refused_streams.is_empty() {
            let _ = writeln!(
                t,
                "  {} refused streams:{}",
                f.binary,
                first_few(&f.refused_streams)
            );
        }
    }
    t
}

#[test]
fn h2_goaway_lets_in_flight_streams_finish() {
    let runs = run_all(run_h2, h2_violations);
    judge(
        "h2c load (3 connections x 5 concurrent streams), --drain-strategy immediate, POST /drain_listeners?graceful",
        &runs,
        h2_violations,
        |f| &f.binary,
        h2_table(&runs),
    );
}
