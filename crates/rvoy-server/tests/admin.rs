//! The admin interface end to end: starts the real `rvoy` binary with its
//! admin on port 0 (the address read from `--admin-address-path`) and checks
//! every endpoint's status, content type and shape, a Prometheus parser on
//! `/stats/prometheus`, the drain and quit endpoints, and a statsd sink
//! flushing to a loopback UDP receiver. Everything listens on 127.0.0.1 and
//! every wait is bounded.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

struct Rvoy {
    child: Child,
    admin: SocketAddr,
    dir: PathBuf,
}

impl Drop for Rvoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "rvoy-admin-test-{tag}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn start(tag: &str, config: &str) -> Rvoy {
    start_with(tag, config, &[])
}

fn start_with(tag: &str, config: &str, extra_args: &[&str]) -> Rvoy {
    let dir = temp_dir(tag);
    let config_path = dir.join("envoy.yaml");
    std::fs::write(&config_path, config).expect("write config");
    let address_path = dir.join("admin_address");
    let child = Command::new(env!("CARGO_BIN_EXE_rvoy"))
        .arg("-c")
        .arg(&config_path)
        .arg("--admin-address-path")
        .arg(&address_path)
        .args([
            "--concurrency",
            "1",
            "--disable-hot-restart",
            "-l",
            "warning",
        ])
        .args(extra_args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rvoy");
    let mut rvoy = Rvoy {
        child,
        admin: SocketAddr::from(([127, 0, 0, 1], 0)),
        dir,
    };
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(text) = std::fs::read_to_string(&address_path)
            && let Ok(addr) = text.trim().parse::<SocketAddr>()
        {
            rvoy.admin = addr;
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no admin address within {WAIT:?}"
        );
        assert!(
            rvoy.child.try_wait().ok().flatten().is_none(),
            "rvoy exited during startup"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Ready once the workers run.
    let deadline = Instant::now() + WAIT;
    while get(rvoy.admin, "/ready").status != 200 {
        assert!(Instant::now() < deadline, "not LIVE within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    rvoy
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(pos) = body.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = std::str::from_utf8(&body[..pos])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .unwrap_or(0);
        body = &body[pos + 2..];
        if size == 0 || body.len() < size {
            return out;
        }
        out.extend_from_slice(&body[..size]);
        body = body.get(size + 2..).unwrap_or_default();
    }
}

fn request(addr: SocketAddr, method: &str, path: &str, extra: &str, body: &str) -> Resp {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("send");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let rest = raw.get(split + 4..).unwrap_or_default();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v == "chunked");
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// A keep-alive GET (no `Connection: close`): reads the head and a
/// `content-length` body, then drops the connection.
fn get_keepalive(addr: SocketAddr, path: &str) -> Resp {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .expect("send");
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..split]).into_owned();
            let len: usize = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0);
            if raw.len() >= split + 4 + len {
                let mut lines = head.lines();
                let status = lines
                    .next()
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                return Resp {
                    status,
                    headers: lines
                        .filter_map(|l| l.split_once(':'))
                        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                        .collect(),
                    body: String::from_utf8_lossy(&raw[split + 4..split + 4 + len]).into_owned(),
                };
            }
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => panic!("connection ended before the response"),
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
}

fn get(addr: SocketAddr, path: &str) -> Resp {
    request(addr, "GET", path, "", "")
}

fn post(addr: SocketAddr, path: &str) -> Resp {
    request(addr, "POST", path, "", "")
}

const TEXT: &str = "text/plain; charset=UTF-8";
const JSON: &str = "application/json";

fn config(extra: &str) -> String {
    format!(
        r#"
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
static_resources:
  listeners:
  - name: main
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
          route_config:
            name: main_routes
            virtual_hosts:
            - name: vh
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                direct_response: {{status: 200, body: {{inline_string: "direct"}}}}
  clusters:
  - name: backend
    type: STATIC
    load_assignment:
      cluster_name: backend
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 1}}}}}}}}]}}]
{extra}"#
    )
}

fn listener_addr(admin: SocketAddr) -> SocketAddr {
    let listeners = get(admin, "/listeners");
    let line = listeners.body.lines().next().expect("a listener");
    line.split_once("::")
        .and_then(|(_, a)| a.parse().ok())
        .expect("listener address")
}

#[test]
fn endpoints_answer_like_envoy() {
    let rvoy = start("endpoints", &config(""));
    let a = rvoy.admin;

    let r = get(a, "/ready");
    assert_eq!((r.status, r.body.as_str()), (200, "LIVE\n"));
    assert_eq!(r.header("content-type"), Some(TEXT));
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.header("cache-control"), Some("no-cache, max-age=0"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("server"), Some("envoy"));

    let r = get(a, "/help");
    assert!(r.body.starts_with("admin commands are:\n"));
    assert!(
        r.body
            .contains("  /config_dump: dump current Envoy configs\n")
    );

    let r = get(a, "/");
    assert_eq!(r.header("content-type"), Some("text/html; charset=UTF-8"));
    assert!(r.body.contains("<table class='home-table'>"));
    assert!(r.body.contains("<a href='server_info'>server_info</a>"));

    let r = get(a, "/no/such/endpoint");
    assert_eq!(r.status, 404);
    assert!(r.body.starts_with("invalid path. admin commands are:"));

    let r = get(a, "/healthcheck/fail");
    assert_eq!(
        (r.status, r.body.as_str()),
        (405, "Method GET not allowed, POST required.")
    );

    let info = get(a, "/server_info");
    assert_eq!(info.header("content-type"), Some(JSON));
    let v = info.json();
    assert_eq!(v["state"], "LIVE");
    assert_eq!(v["hot_restart_version"], "disabled");
    assert_eq!(v["command_line_options"]["concurrency"], 1);
    assert_eq!(v["node"]["user_agent_name"], "envoy");
    assert!(
        v["node"]["extensions"]
            .as_array()
            .is_some_and(|e| !e.is_empty())
    );

    let stats = get(a, "/stats");
    assert_eq!(stats.header("content-type"), Some(TEXT));
    for line in [
        "cluster_manager.active_clusters: 1",
        "cluster_manager.cluster_added: 1",
        "listener_manager.total_listeners_active: 1",
        "listener_manager.workers_started: 1",
        "server.live: 1",
        "server.concurrency: 1",
        "cluster.backend.membership_total: 1",
        "cluster.backend.upstream_rq_0rtt: 0",
        "runtime.load_success: 2",
        "server.days_until_first_cert_expiring: 4294967295",
    ] {
        assert!(stats.body.lines().any(|l| l == line), "missing {line}");
    }
    assert!(stats.body.contains("http.admin.downstream_rq_total: "));
    assert!(
        stats
            .body
            .contains("listener.admin.main_thread.downstream_cx_total: ")
    );
    assert!(!stats.body.contains("server.hot_restart_generation"));

    let j = get(a, "/stats?format=json&filter=^server\\.live$");
    assert_eq!(j.header("content-type"), Some(JSON));
    assert_eq!(
        j.json(),
        serde_json::json!({"stats": [{"name": "server.live", "value": 1}]})
    );
    assert_eq!(get(a, "/stats?filter=(").status, 400);
    let used = get(a, "/stats?usedonly&type=Gauges&filter=^cluster_manager");
    assert!(used.body.contains("cluster_manager.active_clusters: 1"));

    let r = get(a, "/stats/recentlookups");
    assert!(r.body.starts_with("Lookup tracking is not enabled."));
    assert_eq!(post(a, "/stats/recentlookups/enable").body, "OK\n");
    assert!(
        get(a, "/stats/recentlookups")
            .body
            .starts_with("   Count Lookup\n")
    );

    let c = get(a, "/clusters");
    for line in [
        "backend::observability_name::backend",
        "backend::default_priority::max_connections::1024",
        "backend::high_priority::max_retries::3",
        "backend::added_via_api::false",
        "backend::127.0.0.1:1::rq_pending_active::0",
        "backend::127.0.0.1:1::health_flags::healthy",
        "backend::127.0.0.1:1::weight::1",
        "backend::127.0.0.1:1::local_origin_success_rate::-1",
    ] {
        assert!(c.body.lines().any(|l| l == line), "missing {line}");
    }
    assert_eq!(get(a, "/clusters?filter=nomatch").body, "");
    let cj = get(a, "/clusters?format=json").json();
    assert_eq!(cj["cluster_statuses"][0]["name"], "backend");
    assert_eq!(
        cj["cluster_statuses"][0]["circuit_breakers"]["thresholds"][1]["priority"],
        "HIGH"
    );
    assert_eq!(
        cj["cluster_statuses"][0]["host_statuses"][0]["health_status"]["eds_health_status"],
        "HEALTHY"
    );

    let l = get(a, "/listeners");
    assert!(l.body.starts_with("main::127.0.0.1:"));
    let lj = get(a, "/listeners?format=json").json();
    assert_eq!(lj["listener_statuses"][0]["name"], "main");

    let dump = get(a, "/config_dump").json();
    let types: Vec<&str> = dump["configs"]
        .as_array()
        .expect("configs")
        .iter()
        .filter_map(|c| c["@type"].as_str())
        .collect();
    assert_eq!(
        types,
        [
            "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
            "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
            "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
            "type.googleapis.com/envoy.admin.v3.ScopedRoutesConfigDump",
            "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
            "type.googleapis.com/envoy.admin.v3.SecretsConfigDump",
        ]
    );
    assert_eq!(
        dump["configs"][0]["bootstrap"]["node"]["user_agent_name"],
        "envoy"
    );
    assert_eq!(
        dump["configs"][1]["static_clusters"][0]["cluster"]["name"],
        "backend"
    );
    assert!(
        dump["configs"][1]["static_clusters"][0]["last_updated"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert_eq!(
        dump["configs"][2]["static_listeners"][0]["listener"]["name"],
        "main"
    );
    assert_eq!(
        dump["configs"][4]["static_route_configs"][0]["route_config"]["name"],
        "main_routes"
    );
    let r = get(a, "/config_dump?resource=static_clusters&mask=cluster.name");
    assert_eq!(
        r.json()["configs"][0],
        serde_json::json!({
            "@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump.StaticCluster",
            "cluster": {"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": "backend"}
        })
    );
    let r = get(a, "/config_dump?resource=bogus");
    assert_eq!(
        (r.status, r.body.as_str()),
        (404, "bogus not found in config dump")
    );
    assert_eq!(r.header("content-type"), Some("text/plain"));
    let r = get(a, "/config_dump?mask=bogus");
    assert_eq!(r.status, 400);
    let r = get(a, "/config_dump?resource=bootstrap");
    assert_eq!(r.status, 400);
    assert_eq!(
        get(a, "/config_dump?name_regex=nomatch").json()["configs"][1]["static_clusters"],
        serde_json::Value::Null
    );
    let eds = get(a, "/config_dump?include_eds").json();
    assert_eq!(
        eds["configs"][2]["@type"],
        "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump"
    );

    assert_eq!(
        get(a, "/runtime").json(),
        serde_json::json!({"layers": [], "entries": {}})
    );
    let r = post(a, "/runtime_modify?x=1");
    assert_eq!(
        (r.status, r.body.as_str()),
        (503, "No admin layer specified")
    );
    assert_eq!(post(a, "/runtime_modify").status, 400);

    let m = get(a, "/memory").json();
    assert!(m["allocated"].as_str().is_some());
    assert_eq!(
        get(a, "/certs").json(),
        serde_json::json!({"certificates": []})
    );
    assert_eq!(get(a, "/init_dump").json(), serde_json::json!({}));
    assert_eq!(get(a, "/hot_restart_version").body, "disabled");
    assert_eq!(post(a, "/cpuprofiler").status, 400);

    assert_eq!(get(a, "/logging").status, 405);
    let r = post(a, "/logging");
    assert!(r.body.starts_with("active loggers:\n"));
    let r = post(a, "/logging?level=loud");
    assert_eq!(r.status, 400);
    assert!(r.body.starts_with("error: unknown logger level\n"));

    assert_eq!(post(a, "/healthcheck/fail").body, "OK\n");
    let r = get(a, "/ready");
    assert_eq!((r.status, r.body.as_str()), (503, "DRAINING\n"));
    assert_eq!(get(a, "/server_info").json()["state"], "DRAINING");
    post(a, "/healthcheck/ok");
    assert_eq!(get(a, "/ready").status, 200);

    assert_eq!(post(a, "/reset_counters").body, "OK\n");
    assert!(
        get(a, "/stats?filter=^cluster_manager.cluster_added$")
            .body
            .contains("cluster_manager.cluster_added: 0")
    );
}

#[test]
fn prometheus_output_parses() {
    let rvoy = start("prometheus", &config(""));
    let listener = listener_addr(rvoy.admin);
    assert_eq!(get(listener, "/x").status, 200);
    let r = get(rvoy.admin, "/stats/prometheus");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some(TEXT));
    // Every line is a comment (`# TYPE name kind`) or a sample.
    let sample = regex::Regex::new(
        r#"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? -?[0-9.eE+-]+|NaN|[+-]Inf$"#,
    )
    .expect("regex");
    for line in r.body.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let kind = rest.split_whitespace().nth(1).unwrap_or("");
            assert!(
                ["counter", "gauge", "histogram", "summary"].contains(&kind),
                "{line}"
            );
        } else {
            assert!(sample.is_match(line), "not a sample line: {line}");
        }
    }
    let scrape =
        prometheus_parse::Scrape::parse(r.body.lines().map(|l| Ok(l.to_owned()))).expect("parses");
    let find = |name: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name)
            .map(|s| s.value.clone())
    };
    // prometheus-parse skips samples with an empty label set (`name{} 1`,
    // valid exposition format that Envoy prints too); the strict line check
    // above covers those.
    assert!(r.body.lines().any(|l| l == "envoy_server_live{} 1"));
    assert!(matches!(
        find("envoy_cluster_membership_total"),
        Some(prometheus_parse::Value::Gauge(v)) if v == 1.0
    ));
    let rq = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "envoy_http_downstream_rq_total"
                && s.labels.get("envoy_http_conn_manager_prefix") == Some("ingress_http")
        })
        .expect("downstream_rq_total");
    assert!(matches!(rq.value, prometheus_parse::Value::Counter(v) if v == 1.0));
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| matches!(s.value, prometheus_parse::Value::Histogram(_))),
        "histograms are exposed"
    );
}

#[test]
fn drain_and_quit() {
    // With the default gradual strategy a drain that just started closes
    // almost no connection (as Envoy); immediate closes every one.
    let mut rvoy = start_with("drain", &config(""), &["--drain-strategy", "immediate"]);
    let a = rvoy.admin;
    let listener = listener_addr(a);
    assert_eq!(get_keepalive(listener, "/").header("connection"), None);
    // skip_exit: drain (connection: close) but keep accepting.
    assert_eq!(post(a, "/drain_listeners?skip_exit").body, "OK\n");
    let r = get_keepalive(listener, "/");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(get(a, "/ready").body, "LIVE\n");
    // Without skip_exit the listeners stop; the server keeps running.
    post(a, "/drain_listeners");
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect_timeout(&listener, Duration::from_millis(200)).is_ok() {
        assert!(Instant::now() < deadline, "listener still accepting");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        get(a, "/stats?filter=listener_stopped")
            .body
            .contains("listener_manager.listener_stopped: 1")
    );
    assert_eq!(post(a, "/quitquitquit").body, "OK\n");
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(Some(status)) = rvoy.child.try_wait() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "rvoy did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn statsd_sink_flushes_to_udp() {
    let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind");
    receiver
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let port = receiver.local_addr().expect("addr").port();
    let extra = format!(
        r#"stats_flush_interval: 0.2s
stats_sinks:
- name: envoy.stat_sinks.statsd
  typed_config:
    "@type": type.googleapis.com/envoy.config.metrics.v3.StatsdSink
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    prefix: rvoytest
"#
    );
    let rvoy = start("statsd", &config(&extra));
    let listener = listener_addr(rvoy.admin);
    assert_eq!(get(listener, "/").status, 200);
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    let mut buf = [0u8; 65536];
    let wanted = [
        "rvoytest.server.live:1|g",
        "rvoytest.http.ingress_http.downstream_rq_total:1|c",
    ];
    // Plain statsd sends one line per datagram; histogram values come last.
    while !wanted.iter().all(|w| seen.iter().any(|l: &String| l == w))
        || !seen
            .iter()
            .any(|l| l.starts_with("rvoytest.http.ingress_http.downstream_rq_time:"))
    {
        assert!(
            Instant::now() < deadline,
            "missing statsd lines {wanted:?} in {} lines",
            seen.len()
        );
        if let Ok(n) = receiver.recv(&mut buf) {
            seen.extend(
                String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .map(str::to_owned),
            );
        }
    }
    assert!(
        seen.iter().any(
            |l| l.starts_with("rvoytest.http.ingress_http.downstream_rq_time:")
                && l.ends_with("|ms")
        ),
        "histogram values are sent as timers"
    );
    drop(rvoy);
}
