//! Micro-benchmark of access-log formatting: Envoy's default text format
//! (`Format::text(DEFAULT_ACCESS_LOG_FORMAT)`), a short custom text format, a
//! JSON format, and a format-free literal, each rendered into a reused buffer
//! for one typical proxied request. Run with
//! `cargo bench -p rvoy-format --bench access_log`.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue};
use rvoy_format::{AddressKind, DEFAULT_ACCESS_LOG_FORMAT, Format, Protocol, TestStreamInfo};

fn main() {
    divan::main();
}

/// A GET proxied to an upstream that answered 200 with 100 bytes.
fn stream_info() -> TestStreamInfo {
    let mut info = TestStreamInfo::new();
    info.start_time = Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_790_000_000_123));
    info.duration = Some(Duration::from_micros(1_234));
    for (name, value) in [
        (":method", "GET"),
        (":path", "/api/v1/items?page=2"),
        (":authority", "api.example.com"),
    ] {
        info.set_request_header(name, value);
    }
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("host", "api.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0",
        ),
        ("x-request-id", "a4b2f0c3-6a8e-4d1f-9b7a-3c2e1d0f9a8b"),
        ("x-forwarded-for", "203.0.113.7"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    info.request_headers = Some(headers);
    info.protocol = Some(Protocol::Http11);
    info.response_code = Some(200);
    info.response_code_details = Some("via_upstream".to_owned());
    info.bytes_received = 0;
    info.bytes_sent = 100;
    let peer: SocketAddr = ([10, 1, 2, 3], 54_321).into();
    let upstream: SocketAddr = ([127, 0, 0, 1], 8080).into();
    info.set_address(AddressKind::DownstreamRemote, peer);
    info.set_address(AddressKind::DownstreamDirectRemote, peer);
    info.set_address(AddressKind::UpstreamRemote, upstream);
    info.upstream_cluster_name = Some("backend".to_owned());
    info
}

fn render(bencher: divan::Bencher<'_, '_>, format: &Format) {
    let info = stream_info();
    let mut out = String::with_capacity(1024);
    bencher.bench_local(|| {
        out.clear();
        format.render(&info, &mut out);
        out.len()
    });
}

#[divan::bench]
fn envoy_default(bencher: divan::Bencher<'_, '_>) {
    let format =
        Format::text(DEFAULT_ACCESS_LOG_FORMAT, false).expect("the default format compiles");
    render(bencher, &format);
}

#[divan::bench]
fn short_text(bencher: divan::Bencher<'_, '_>) {
    let format = Format::text(
        "%REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% %DURATION% %UPSTREAM_HOST%\n",
        false,
    )
    .expect("the format compiles");
    render(bencher, &format);
}

#[divan::bench]
fn json(bencher: divan::Bencher<'_, '_>) {
    let structure = serde_json::json!({
        "start": "%START_TIME%",
        "method": "%REQ(:METHOD)%",
        "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
        "protocol": "%PROTOCOL%",
        "code": "%RESPONSE_CODE%",
        "flags": "%RESPONSE_FLAGS%",
        "bytes_sent": "%BYTES_SENT%",
        "duration": "%DURATION%",
        "upstream": "%UPSTREAM_HOST%",
        "request_id": "%REQ(X-REQUEST-ID)%",
    });
    let format = Format::json(&structure, false).expect("the JSON format compiles");
    let info = stream_info();
    let mut out = String::with_capacity(1024);
    bencher.bench_local(|| {
        out.clear();
        format.render_json(&info, &mut out);
        out.len()
    });
}

#[divan::bench]
fn literal(bencher: divan::Bencher<'_, '_>) {
    render(bencher, &Format::literal("request served\n"));
}
