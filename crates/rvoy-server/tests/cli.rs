//! The command line as an Envoy user meets it: `--version`, `--help`, usage errors,
//! `--mode validate` (OK, errors naming the file, exit codes) and `--config-yaml`.

mod common;

use std::time::Duration;

use common::{binary, is_envoy};
use rvoy_testkit::raw::{Request, send_once};
use rvoy_testkit::{ProxyBuilder, run_once};

const RUN: Duration = Duration::from_secs(30);

fn direct_listener(name: &str, port: &str, body: &str) -> String {
    format!(
        r#"  - name: {name}
    address: {{socket_address: {{address: 127.0.0.1, port_value: {{{{port:{port}}}}}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                direct_response: {{status: 200, body: {{inline_string: "{body}"}}}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
"#
    )
}

fn ok_config() -> String {
    format!(
        "static_resources:\n  listeners:\n{}",
        direct_listener("one", "listener", "one")
    )
}

#[test]
fn version_prints_envoy_style_line() {
    let b = binary();
    let out = run_once(b.path(), &["--version"], RUN).expect("runs");
    assert_eq!(out.code, Some(0), "{out:?}");
    let text = out.stdout;
    assert!(text.starts_with('\n') && text.ends_with("\n\n"), "{text:?}");
    let line = text.trim();
    let (argv0, version) = line
        .split_once("  version: ")
        .expect("'  version: ' in the line");
    assert_eq!(argv0, b.path().to_string_lossy());
    let parts: Vec<&str> = version.split('/').collect();
    assert_eq!(
        parts.len(),
        5,
        "sha/version/status/build type/ssl: {version}"
    );
    assert_eq!(parts[0].len(), 40, "{version}");
    assert!(parts[0].chars().all(|c| c.is_ascii_hexdigit()), "{version}");
    assert_eq!(parts[1].split('.').count(), 3, "{version}");
    assert!(parts[2] == "Clean" || parts[2] == "Modified", "{version}");
}

#[test]
fn help_lists_envoy_flags() {
    let out = run_once(binary().path(), &["--help"], RUN).expect("runs");
    assert_eq!(out.code, Some(0));
    assert!(
        out.stdout.starts_with("\nUSAGE: \n\n   "),
        "{:?}",
        &out.stdout[..40.min(out.stdout.len())]
    );
    for flag in [
        "--config-path <string>",
        "--config-yaml <string>",
        "--mode <string>",
        "--concurrency <uint32_t>",
        "--disable-hot-restart",
        "--file-flush-interval-msec <uint32_t>",
        "--log-level <string>",
        "--version",
    ] {
        assert!(out.stdout.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn unknown_flag_is_a_parse_error_with_exit_1() {
    let out = run_once(binary().path(), &["--bogus-flag"], RUN).expect("runs");
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.starts_with(
            "PARSE ERROR: Argument: --bogus-flag\n             Couldn't find match for argument\n"
        ),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn validate_ok_config() {
    let out = ProxyBuilder::new(binary())
        .config(&ok_config())
        .args(&["--mode", "validate", "-c", "{{config}}"])
        .run_to_exit(RUN)
        .expect("runs");
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(
        out.normalize(&out.stdout),
        "configuration '{{tmp}}/envoy.yaml' OK\n"
    );
}

/// A key spelled with an escape: the load first reads the config with a
/// descriptor pool pruned to the words of its text, where `admin` is missing,
/// and must then read it with the whole one, as Envoy reads it.
#[test]
fn validate_a_key_spelled_with_an_escape() {
    let config = format!(
        "\"\\x61dmin\": {{address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}}}\n{}",
        ok_config()
    );
    let out = ProxyBuilder::new(binary())
        .config(&config)
        .args(&["--mode", "validate", "-c", "{{config}}"])
        .run_to_exit(RUN)
        .expect("runs");
    assert_eq!(out.code, Some(0), "{}", out.stderr);
}

/// A field left out that a rule requires is reported, although the config
/// names neither it nor its type.
#[test]
fn validate_required_field_left_out_fails() {
    let config = ok_config().replace("- match: {prefix: \"/\"}\n", "- ");
    assert!(!config.contains("match"), "{config}");
    let (code, line) = validate_bad(&config);
    assert_eq!(code, Some(1));
    if is_envoy() {
        assert!(line.contains("Match: value is required"), "{line}");
    } else {
        assert!(line.contains("value is required at bad.yaml:"), "{line}");
        assert!(line.contains("routes[0].match)"), "{line}");
    }
}

#[test]
fn validate_relative_path_is_echoed_as_given() {
    let out = ProxyBuilder::new(binary())
        .config(&ok_config())
        .args(&["--mode", "validate", "-c", "envoy.yaml"])
        .run_to_exit(RUN)
        .expect("runs");
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, "configuration 'envoy.yaml' OK\n");
}

/// Runs `--mode validate -c bad.yaml` on `text`; returns (exit code, stderr from the
/// critical line on).
fn validate_bad(text: &str) -> (Option<i32>, String) {
    let out = ProxyBuilder::new(binary())
        .file("bad.yaml", text)
        .args(&["--mode", "validate", "-c", "bad.yaml"])
        .run_to_exit(RUN)
        .expect("runs");
    assert!(out.stdout.is_empty(), "nothing on stdout: {}", out.stdout);
    // The critical line and what follows it (Envoy's messages can span lines).
    let start = out
        .stderr
        .find("[critical]")
        .unwrap_or_else(|| panic!("a [critical] line in stderr:\n{}", out.stderr));
    let line = out.stderr[start..].to_owned();
    (out.code, line)
}

#[test]
fn validate_unknown_field_names_the_field_and_fails() {
    let (code, line) = validate_bad(
        "static_resources:\n  listeners:\n  - name: l\n    address: {socket_address: {address: 127.0.0.1, port_value: 1}}\n    bogus_field: 1\n",
    );
    assert_eq!(code, Some(1));
    assert!(
        line.contains("error initializing configuration 'bad.yaml': "),
        "{line}"
    );
    assert!(line.contains("bogus_field"), "{line}");
    if !is_envoy() {
        // rvoy's addition: where it is.
        assert!(line.contains("bad.yaml:5:5"), "file:line:col in {line}");
    }
}

#[test]
fn validate_yaml_syntax_error_gives_line_and_column() {
    let (code, line) = validate_bad("static_resources:\n  listeners:\n  - name: [\n");
    assert_eq!(code, Some(1));
    assert!(
        line.contains("error initializing configuration 'bad.yaml': "),
        "{line}"
    );
    if is_envoy() {
        assert!(line.contains("line 4, column 1"), "{line}");
    } else {
        assert!(line.contains("bad.yaml:4:1"), "file:line:col in {line}");
    }
}

#[test]
fn validate_constraint_violation_fails() {
    let (code, line) = validate_bad(
        r#"static_resources:
  clusters:
  - name: c
    connect_timeout: 1s
    type: STATIC
    load_assignment:
      cluster_name: c
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 99999}}}}]}]
"#,
    );
    assert_eq!(code, Some(1));
    assert!(
        line.contains("65535") || line.contains("PortValue"),
        "{line}"
    );
    if !is_envoy() {
        assert!(line.contains("bad.yaml:8:"), "file:line:col in {line}");
        assert!(line.contains("port_value"), "{line}");
    }
}

#[test]
fn validate_semantic_error_fails() {
    // Parses, but a listener without filter chains is refused when it is added.
    let (code, line) = validate_bad(
        "static_resources:\n  listeners:\n  - name: l\n    address: {socket_address: {address: 127.0.0.1, port_value: 1}}\n",
    );
    assert_eq!(code, Some(1));
    assert!(line.contains("no filter chains specified"), "{line}");
}

#[test]
fn validate_without_config_fails() {
    let out = run_once(binary().path(), &["--mode", "validate"], RUN).expect("runs");
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr
            .contains("At least one of --config-path or --config-yaml or Options::configProto() should be non-empty"),
        "{}",
        out.stderr
    );
}

#[test]
fn validate_missing_file_fails_naming_it() {
    let out = run_once(
        binary().path(),
        &["--mode", "validate", "-c", "/nonexistent/rvoy-test.yaml"],
        RUN,
    )
    .expect("runs");
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr
            .contains("error initializing configuration '/nonexistent/rvoy-test.yaml': "),
        "{}",
        out.stderr
    );
}

#[test]
fn validate_config_yaml_alone() {
    let out = ProxyBuilder::new(binary())
        .args(&[
            "--mode",
            "validate",
            "--config-yaml",
            "static_resources: {clusters: [{name: c, connect_timeout: 1s}]}",
        ])
        .run_to_exit(RUN)
        .expect("runs");
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, "configuration '' OK\n");
}

#[test]
fn config_yaml_is_merged_into_config_file() {
    // -c has listener "one"; --config-yaml appends listener "two" (repeated fields append).
    let second = direct_listener("two", "second", "two");
    let overlay = format!("static_resources:\n  listeners:\n{second}");
    let proxy = ProxyBuilder::new(binary())
        .config(&ok_config())
        .extra_args(&["--config-yaml", &overlay])
        .start()
        .expect("starts with both listeners");
    let r1 = send_once(proxy.addr("listener"), &Request::get("/", "x").to_bytes()).expect("one");
    let r2 = send_once(proxy.addr("second"), &Request::get("/", "x").to_bytes()).expect("two");
    assert_eq!((r1.status, r1.body_str().as_str()), (200, "one"));
    assert_eq!((r2.status, r2.body_str().as_str()), (200, "two"));
}

#[test]
fn config_yaml_overrides_scalars() {
    // The overlay replaces a scalar (the listener's stat prefix is irrelevant here; the
    // admin-less bootstrap gets a node id) and the server still serves.
    let proxy = ProxyBuilder::new(binary())
        .config(&ok_config())
        .extra_args(&["--config-yaml", "node: {id: overlay-node, cluster: c}"])
        .start()
        .expect("starts");
    let r = send_once(proxy.addr("listener"), &Request::get("/", "x").to_bytes()).expect("resp");
    assert_eq!(r.status, 200);
}

#[test]
fn sigterm_exits_cleanly() {
    let mut proxy = ProxyBuilder::new(binary())
        .config(&ok_config())
        .start()
        .expect("starts");
    let r = send_once(proxy.addr("listener"), &Request::get("/", "x").to_bytes()).expect("resp");
    assert_eq!(r.status, 200);
    let st = proxy.stop().expect("stops");
    assert!(st.success(), "exit status after SIGTERM: {st}");
}
