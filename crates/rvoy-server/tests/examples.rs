//! The shipped examples: every `examples/*.yaml` validates, and the demo serves what the
//! README promises (a direct response on `/`, the admin server under `/admin/`).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{T, binary};
use rvoy_testkit::raw::{Request, send_once};
use rvoy_testkit::{ProxyBuilder, run_once};

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

#[test]
fn every_example_validates() {
    let mut seen = 0;
    for entry in std::fs::read_dir(examples_dir()).expect("examples/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let p = path.to_string_lossy().into_owned();
            let out = run_once(
                binary().path(),
                &["--mode", "validate", "-c", &p],
                Duration::from_secs(30),
            )
            .expect("runs");
            assert_eq!(out.code, Some(0), "{p}: {}", out.stderr);
            assert_eq!(out.stdout, format!("configuration '{p}' OK\n"));
            seen += 1;
        }
    }
    assert!(seen >= 1, "no example found");
}

#[test]
fn demo_serves_direct_response_and_admin() {
    let text = std::fs::read_to_string(examples_dir().join("envoy-demo.yaml")).expect("demo");
    assert!(text.contains("port_value: 10000") && text.contains("port_value: 9901"));
    // The same config on free ports.
    let template = text
        .replace("port_value: 10000", "port_value: {{port:listener}}")
        .replace("port_value: 9901", "port_value: {{port:admin}}");
    let proxy = ProxyBuilder::new(binary())
        .config(&template)
        .extra_args(&["--file-flush-interval-msec", "50"])
        .start()
        .expect("demo starts");
    let r = send_once(
        proxy.addr("listener"),
        &Request::get("/", "localhost").to_bytes(),
    )
    .expect("response");
    assert_eq!(r.status, 200);
    assert!(
        r.body_str().starts_with("Hello from rvoy!"),
        "{}",
        r.body_str()
    );
    let r = send_once(
        proxy.addr("listener"),
        &Request::get("/admin/server_info", "localhost").to_bytes(),
    )
    .expect("response");
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert!(
        r.body_str().contains("\"state\": \"LIVE\""),
        "{}",
        r.body_str()
    );
    let lines = proxy
        .wait_stdout_lines("\"GET /", 2, T)
        .expect("access log lines");
    assert!(
        lines.iter().any(|l| l.contains("\"GET / HTTP/1.1\" 200 ")),
        "{lines:#?}"
    );
}
