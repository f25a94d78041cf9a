//! Shared fixtures for the integration tests: a stream with most fields set.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use prost_types::value::Kind;
use rvoy_format::{
    AddressKind, BytesMeter, DetectedCloseType, Format, MetadataKind, OwnedAddress, Protocol,
    ResponseFlag, StringFilterState, TestStreamInfo, TimePoint, TlsInfo,
};

pub fn sock(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

pub fn text(format: &str, info: &TestStreamInfo) -> String {
    Format::parse(format)
        .expect("format compiles")
        .render_to_string(info)
}

pub fn json(format: serde_json::Value, omit: bool, info: &TestStreamInfo) -> String {
    Format::json(&format, omit)
        .expect("json format compiles")
        .render_to_string(info)
}

pub fn err(format: &str) -> String {
    match Format::parse(format) {
        Ok(_) => "OK".to_owned(),
        Err(e) => e.to_string(),
    }
}

pub fn pv(kind: Kind) -> prost_types::Value {
    prost_types::Value { kind: Some(kind) }
}

pub fn pstruct(fields: Vec<(&str, prost_types::Value)>) -> prost_types::Struct {
    prost_types::Struct {
        fields: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    }
}

/// 2026-11-25T19:32:34.149577Z.
pub fn start() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::new(1_795_635_154, 149_577_000)
}

/// A proxied HTTP/1.1 request that succeeded.
pub fn rich() -> TestStreamInfo {
    let mut i = TestStreamInfo::new();
    i.start_time = Some(start());
    i.emit_time = Some(start() + Duration::from_millis(12));
    i.duration = Some(Duration::from_micros(12_345));
    i.timings.insert(
        TimePoint::LastDownstreamRxByteReceived,
        Duration::from_micros(1_500),
    );
    i.timings.insert(
        TimePoint::UpstreamConnectStart,
        Duration::from_micros(2_000),
    );
    i.timings.insert(
        TimePoint::UpstreamConnectComplete,
        Duration::from_micros(2_250),
    );
    i.timings.insert(
        TimePoint::FirstUpstreamTxByteSent,
        Duration::from_micros(2_300),
    );
    i.timings.insert(
        TimePoint::LastUpstreamTxByteSent,
        Duration::from_micros(3_000),
    );
    i.timings.insert(
        TimePoint::FirstUpstreamRxByteReceived,
        Duration::from_micros(8_000),
    );
    i.timings.insert(
        TimePoint::FirstUpstreamRxBodyByteReceived,
        Duration::from_micros(8_100),
    );
    i.timings.insert(
        TimePoint::LastUpstreamRxByteReceived,
        Duration::from_micros(9_000),
    );
    i.timings.insert(
        TimePoint::FirstDownstreamTxByteSent,
        Duration::from_micros(8_200),
    );
    i.timings.insert(
        TimePoint::LastDownstreamTxByteSent,
        Duration::from_micros(11_900),
    );
    i.custom_timings
        .insert("my_point".to_owned(), Duration::from_micros(4_000));
    i.upstream_connection_pool_ready_duration = Some(Duration::from_micros(300));
    i.downstream_connection_rtt = Some(Duration::from_micros(2_500));
    i.route_resolution_count = Some(1);
    i.route_resolution_time = Some(Duration::from_micros(7));

    i.set_request_header(":method", "POST");
    i.set_request_header(":path", "/up/x?a=1&b=hello&e=&enc=a%20b+c&a=2");
    i.set_request_header(":authority", "myhost:99");
    i.set_request_header(":scheme", "http");
    i.set_request_header("user-agent", "curl/7.88.1");
    i.set_request_header("x-forwarded-proto", "http");
    i.set_request_header("x-request-id", "4765f0cd-47c3-41a5-8f55-4d9a16ab4fbf");
    i.set_request_header("x-multi", "first");
    i.set_request_header("x-multi", "second");
    i.set_request_header("x-empty", "");
    i.set_response_header(":status", "200");
    i.set_response_header("content-type", "text/plain");
    i.set_response_header("x-envoy-upstream-service-time", "0");
    i.set_response_trailer("x-trailer", "tval");

    i.protocol = Some(Protocol::Http11);
    i.upstream_protocol = Some(Protocol::Http2);
    i.response_code = Some(200);
    i.response_code_details = Some("via_upstream".to_owned());
    i.response_flags
        .set(ResponseFlag::UpstreamRetryLimitExceeded);
    i.response_flags
        .set(ResponseFlag::UpstreamConnectionFailure);
    i.bytes_received = 5;
    i.bytes_sent = 12;
    i.upstream_bytes_meter = Some(BytesMeter {
        wire_bytes_sent: 224,
        wire_bytes_received: 129,
        header_bytes_sent: 171,
        header_bytes_received: 94,
        decompressed_header_bytes_sent: 172,
        decompressed_header_bytes_received: 95,
    });
    i.downstream_bytes_meter = Some(BytesMeter {
        wire_bytes_sent: 163,
        wire_bytes_received: 108,
        header_bytes_sent: 132,
        header_bytes_received: 52,
        decompressed_header_bytes_sent: 133,
        decompressed_header_bytes_received: 53,
    });

    i.set_address(AddressKind::DownstreamLocal, sock("127.0.0.1:18000"));
    i.set_address(AddressKind::DownstreamDirectLocal, sock("127.0.0.1:18000"));
    i.set_address(AddressKind::DownstreamRemote, sock("10.1.2.3:34556"));
    i.set_address(AddressKind::DownstreamDirectRemote, sock("127.0.0.1:34556"));
    i.set_address(AddressKind::UpstreamLocal, sock("[::1]:54038"));
    i.set_address(AddressKind::UpstreamRemote, sock("127.0.0.1:18001"));
    i.set_address(AddressKind::UpstreamHost, sock("127.0.0.1:18001"));
    i.upstream_host_name = Some("backhost".to_owned());
    i.upstream_hosts_attempted = vec![
        (OwnedAddress::Ip(sock("127.0.0.1:18009")), String::new()),
        (
            OwnedAddress::Ip(sock("127.0.0.1:18001")),
            "backhost:8080".to_owned(),
        ),
    ];
    i.upstream_connection_ids_attempted = vec![2, 3];
    i.connection_id = Some(1);
    i.upstream_connection_id = Some(3);
    i.upstream_cluster_observability_name = Some("back_alt".to_owned());
    i.upstream_cluster_name = Some("back".to_owned());
    i.upstream_request_attempt_count = Some(2);
    i.upstream_detected_close_type = Some(DetectedCloseType::Normal);
    i.downstream_detected_close_type = Some(DetectedCloseType::RemoteReset);
    i.route_name = Some("up_route".to_owned());
    i.listener_name = Some("front".to_owned());
    i.stream_id = Some("4765f0cd-47c3-41a5-8f55-4d9a16ab4fbf".to_owned());
    i.custom_flags = String::new();

    i.set_metadata(
        MetadataKind::Dynamic,
        "dns",
        pstruct(vec![
            ("s", pv(Kind::StringValue("str".into()))),
            ("n", pv(Kind::NumberValue(12.0))),
            ("f", pv(Kind::NumberValue(1.5))),
            ("b", pv(Kind::BoolValue(false))),
            ("nul", pv(Kind::NullValue(0))),
            (
                "o",
                pv(Kind::StructValue(pstruct(vec![
                    (
                        "x",
                        pv(Kind::StructValue(pstruct(vec![(
                            "y",
                            pv(Kind::StringValue("deep".into())),
                        )]))),
                    ),
                    (
                        "l",
                        pv(Kind::ListValue(prost_types::ListValue {
                            values: vec![pv(Kind::NumberValue(1.0)), pv(Kind::NumberValue(2.0))],
                        })),
                    ),
                ]))),
            ),
            (
                "l",
                pv(Kind::ListValue(prost_types::ListValue {
                    values: vec![
                        pv(Kind::StringValue("a".into())),
                        pv(Kind::NumberValue(2.0)),
                    ],
                })),
            ),
            ("e", pv(Kind::StringValue(String::new()))),
            ("big", pv(Kind::NumberValue(12345678901234567890.0))),
            ("sp", pv(Kind::StringValue("a b\"c".into()))),
        ]),
    );
    i.set_metadata(
        MetadataKind::Cluster,
        "cns",
        pstruct(vec![
            ("ckey", pv(Kind::StringValue("cval".into()))),
            ("cnum", pv(Kind::NumberValue(7.0))),
        ]),
    );
    i.set_metadata(
        MetadataKind::UpstreamHost,
        "hns",
        pstruct(vec![
            ("hkey", pv(Kind::StringValue("hval".into()))),
            ("hnum", pv(Kind::NumberValue(3.5))),
            ("hbool", pv(Kind::BoolValue(true))),
        ]),
    );
    i.set_metadata(
        MetadataKind::Route,
        "rns",
        pstruct(vec![("rk", pv(Kind::StringValue("rv".into())))]),
    );
    i.filter_state.insert(
        "fs.str".to_owned(),
        Box::new(StringFilterState("fsval-/up".to_owned())),
    );
    i.upstream_filter_state.insert(
        "ufs".to_owned(),
        Box::new(StringFilterState("upstream-val".to_owned())),
    );
    i
}

/// A TLS connection's details.
pub fn tls() -> TlsInfo {
    TlsInfo {
        peer_uri_sans: vec!["spiffe://a/b".to_owned(), "spiffe://c/d".to_owned()],
        peer_dns_sans: vec!["client.example.com".to_owned()],
        peer_ip_sans: vec![],
        peer_subject: "CN=client,O=Acme".to_owned(),
        local_subject: "CN=server".to_owned(),
        peer_issuer: "CN=ca".to_owned(),
        peer_fingerprint_256: "abcdef".to_owned(),
        peer_fingerprint_1: "0123".to_owned(),
        peer_serial: "1f".to_owned(),
        peer_chain_serials: vec!["1f".to_owned(), "2e".to_owned()],
        peer_cert_url_encoded_pem: "-----BEGIN%20CERTIFICATE-----".to_owned(),
        peer_cert_valid_from: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        peer_cert_expiration: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)),
        session_id: "beef".to_owned(),
        cipher: "TLS_AES_128_GCM_SHA256".to_owned(),
        version: "TLSv1.3".to_owned(),
        group: "X25519".to_owned(),
        ..TlsInfo::default()
    }
}
