//! Every command operator, in text form, on a rich stream and on an empty one.

mod common;

use std::time::Duration;

use common::{err, rich, sock, text, tls};
use rvoy_format::{
    AddressKind, FieldValue, FilterStateObject, Format, OPERATORS, OwnedAddress, TestStreamInfo,
};

fn check(info: &TestStreamInfo, cases: &[(&str, &str)]) {
    let mut failures = Vec::new();
    for (format, want) in cases {
        let got = text(format, info);
        if got != *want {
            failures.push(format!("{format}: got {got:?}, want {want:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn headers() {
    check(
        &rich(),
        &[
            ("%REQ(:METHOD)%", "POST"),
            ("%REQ(:method)%", "POST"),
            ("%REQ(USER-AGENT)%", "curl/7.88.1"),
            ("%REQUEST_HEADER(user-agent)%", "curl/7.88.1"),
            ("%STREAM_INFO_REQ(user-agent)%", "curl/7.88.1"),
            ("%REQ(X-MULTI)%", "first"),
            ("%REQ(x-empty)%", ""),
            ("%REQ(x-nothere)%", "-"),
            ("%REQ(x-nothere?user-agent)%", "curl/7.88.1"),
            (
                "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
                "/up/x?a=1&b=hello&e=&enc=a%20b+c&a=2",
            ),
            ("%REQ(user-agent?x-nothere)%", "curl/7.88.1"),
            ("%REQ(USER-AGENT):4%", "curl"),
            ("%REQ(USER-AGENT):0%", ""),
            ("%REQ(USER-AGENT):100%", "curl/7.88.1"),
            // Envoy's header map answers `host` with :authority.
            ("%REQ(host)%", "myhost:99"),
            ("%REQ(:authority)%", "myhost:99"),
            ("%RESP(content-type)%", "text/plain"),
            ("%RESPONSE_HEADER(content-type)%", "text/plain"),
            ("%RESP(:status)%", "200"),
            ("%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%", "0"),
            ("%RESP(x-trailer)%", "-"),
            ("%TRAILER(x-trailer)%", "tval"),
            ("%RESPONSE_TRAILER(x-trailer):2%", "tv"),
            ("%TRAILER(content-type)%", "-"),
        ],
    );
}

#[test]
fn header_byte_sizes_count_keys_and_values_with_pseudo_headers() {
    let mut i = TestStreamInfo::new();
    // The request Envoy logged REQUEST_HEADERS_BYTES=157 for (GET /direct, curl).
    i.set_request_header(":authority", "127.0.0.1:18000");
    i.set_request_header(":path", "/direct");
    i.set_request_header(":method", "GET");
    i.set_request_header(":scheme", "http");
    i.set_request_header("user-agent", "curl/7.88.1");
    i.set_request_header("accept", "*/*");
    i.set_request_header("x-forwarded-proto", "http");
    i.set_request_header("x-request-id", "8d1287fd-ec81-493b-b952-ea164bdeeb18");
    i.set_response_header(":status", "200");
    i.set_response_header("content-type", "text/plain");
    check(
        &i,
        &[
            ("%REQUEST_HEADERS_BYTES%", "157"),
            ("%RESPONSE_HEADERS_BYTES%", "32"),
            ("%RESPONSE_TRAILERS_BYTES%", "0"),
        ],
    );
}

#[test]
fn stream_info_basics() {
    check(
        &rich(),
        &[
            ("%PROTOCOL%", "HTTP/1.1"),
            ("%UPSTREAM_PROTOCOL%", "HTTP/2"),
            ("%RESPONSE_CODE%", "200"),
            ("%RESPONSE_CODE_DETAILS%", "via_upstream"),
            ("%RESPONSE_FLAGS%", "URX,UF"),
            (
                "%RESPONSE_FLAGS_LONG%",
                "UpstreamRetryLimitExceeded,UpstreamConnectionFailure",
            ),
            ("%BYTES_RECEIVED%", "5"),
            ("%BYTES_SENT%", "12"),
            ("%BYTES_RETRANSMITTED%", "0"),
            ("%PACKETS_RETRANSMITTED%", "0"),
            ("%UPSTREAM_WIRE_BYTES_SENT%", "224"),
            ("%UPSTREAM_WIRE_BYTES_RECEIVED%", "129"),
            ("%UPSTREAM_HEADER_BYTES_SENT%", "171"),
            ("%UPSTREAM_HEADER_BYTES_RECEIVED%", "94"),
            ("%UPSTREAM_DECOMPRESSED_HEADER_BYTES_SENT%", "172"),
            ("%UPSTREAM_DECOMPRESSED_HEADER_BYTES_RECEIVED%", "95"),
            ("%DOWNSTREAM_WIRE_BYTES_SENT%", "163"),
            ("%DOWNSTREAM_WIRE_BYTES_RECEIVED%", "108"),
            ("%DOWNSTREAM_HEADER_BYTES_SENT%", "132"),
            ("%DOWNSTREAM_HEADER_BYTES_RECEIVED%", "52"),
            ("%DOWNSTREAM_DECOMPRESSED_HEADER_BYTES_SENT%", "133"),
            ("%DOWNSTREAM_DECOMPRESSED_HEADER_BYTES_RECEIVED%", "53"),
            ("%CONNECTION_ID%", "1"),
            ("%UPSTREAM_CONNECTION_ID%", "3"),
            ("%UPSTREAM_REQUEST_ATTEMPT_COUNT%", "2"),
            ("%ROUTE_NAME%", "up_route"),
            ("%LISTENER_NAME%", "front"),
            ("%STREAM_ID%", "4765f0cd-47c3-41a5-8f55-4d9a16ab4fbf"),
            ("%UPSTREAM_CLUSTER%", "back_alt"),
            ("%UPSTREAM_CLUSTER_RAW%", "back"),
            ("%UPSTREAM_DETECTED_CLOSE_TYPE%", "Normal"),
            ("%DOWNSTREAM_DETECTED_CLOSE_TYPE%", "RemoteReset"),
            ("%CUSTOM_FLAGS%", ""),
            ("%ACCESS_LOG_TYPE%", "NotSet"),
            ("%LOCAL_REPLY_BODY%", ""),
            ("%ROUTE_RESOLUTION_COUNT%", "1"),
            ("%ROUTE_RESOLUTION_TIME_US%", "7"),
            ("%DOWNSTREAM_CX_RTT%", "2"),
        ],
    );
}

#[test]
fn durations_in_milliseconds() {
    check(
        &rich(),
        &[
            ("%DURATION%", "12"),
            ("%REQUEST_DURATION%", "1"),
            ("%REQUEST_TX_DURATION%", "3"),
            ("%RESPONSE_DURATION%", "8"),
            ("%RESPONSE_TX_DURATION%", "3"),
            ("%DOWNSTREAM_HANDSHAKE_DURATION%", "-"),
            ("%ROUNDTRIP_DURATION%", "-"),
            ("%UPSTREAM_CONNECTION_POOL_READY_DURATION%", "0"),
            ("%COMMON_DURATION(DS_RX_BEG:DS_RX_END)%", "1"),
            ("%COMMON_DURATION(DS_RX_BEG:DS_RX_END:ms)%", "1"),
            ("%COMMON_DURATION(DS_RX_BEG:DS_RX_END:us)%", "1500"),
            ("%COMMON_DURATION(DS_RX_BEG:DS_RX_END:ns)%", "1500000"),
            ("%COMMON_DURATION(US_CX_BEG:US_CX_END:us)%", "250"),
            ("%COMMON_DURATION(US_TX_BEG:US_TX_END:us)%", "700"),
            ("%COMMON_DURATION(US_RX_BEG:US_RX_BODY_BEG:us)%", "100"),
            ("%COMMON_DURATION(US_RX_BEG:US_RX_END:us)%", "1000"),
            ("%COMMON_DURATION(DS_TX_BEG:DS_TX_END:us)%", "3700"),
            ("%COMMON_DURATION(DS_RX_BEG:US_HS_END)%", "-"),
            // End before start: no value.
            ("%COMMON_DURATION(DS_TX_END:DS_RX_BEG:us)%", "-"),
            // A name that is not a built-in point is a custom downstream timing.
            ("%COMMON_DURATION(DS_RX_BEG:my_point:us)%", "4000"),
            ("%COMMON_DURATION(DS_RX_BEG:unknown_point)%", "-"),
        ],
    );
}

#[test]
fn times() {
    let info = rich();
    check(
        &info,
        &[
            ("%START_TIME%", "2026-11-25T19:32:34.149Z"),
            ("%START_TIME()%", "2026-11-25T19:32:34.149Z"),
            ("%START_TIME(%s.%3f)%", "1795635154.149"),
            ("%START_TIME(%s.%6f)%", "1795635154.149577"),
            ("%START_TIME(%s.%9f)%", "1795635154.149577000"),
            (
                "%START_TIME(%Y/%m/%dT%H:%M:%S%z %s)%",
                "2026/11/25T19:32:34+0000 1795635154",
            ),
            ("%START_TIME(plain)%", "plain"),
            ("%EMIT_TIME%", "2026-11-25T19:32:34.161Z"),
            ("%EMIT_TIME(%s)%", "1795635154"),
        ],
    );
    assert_eq!(text("%START_TIME%", &TestStreamInfo::new()), "-");
}

#[test]
fn addresses() {
    let mut info = rich();
    info.set_address(
        AddressKind::DownstreamDirectLocal,
        OwnedAddress::Internal {
            server_id: "internal_listener".to_owned(),
            endpoint_id: "ep1".to_owned(),
        },
    );
    info.set_address(
        AddressKind::UpstreamRemote,
        OwnedAddress::Pipe("/tmp/up.sock".to_owned()),
    );
    check(
        &info,
        &[
            ("%DOWNSTREAM_REMOTE_ADDRESS%", "10.1.2.3:34556"),
            ("%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", "10.1.2.3"),
            ("%DOWNSTREAM_REMOTE_PORT%", "34556"),
            (
                "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT(16)%",
                "10.1.0.0/16",
            ),
            ("%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT(8)%", "10.0.0.0/8"),
            ("%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT(0)%", "0.0.0.0/0"),
            (
                "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT(33)%",
                "10.1.2.3/32",
            ),
            ("%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT(x)%", "10.1.2.3"),
            ("%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT(-1)%", ""),
            ("%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%", "127.0.0.1:34556"),
            (
                "%DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT%",
                "127.0.0.1",
            ),
            ("%DOWNSTREAM_DIRECT_REMOTE_PORT%", "34556"),
            ("%DOWNSTREAM_LOCAL_ADDRESS%", "127.0.0.1:18000"),
            ("%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%", "127.0.0.1"),
            ("%DOWNSTREAM_LOCAL_PORT%", "18000"),
            ("%DOWNSTREAM_LOCAL_ADDRESS_ENDPOINT_ID%", ""),
            (
                "%DOWNSTREAM_DIRECT_LOCAL_ADDRESS%",
                "envoy://internal_listener/ep1",
            ),
            (
                "%DOWNSTREAM_DIRECT_LOCAL_ADDRESS_WITHOUT_PORT%",
                "envoy://internal_listener/ep1",
            ),
            ("%DOWNSTREAM_DIRECT_LOCAL_ADDRESS_ENDPOINT_ID%", "ep1"),
            ("%DOWNSTREAM_DIRECT_LOCAL_PORT%", "-"),
            ("%UPSTREAM_LOCAL_ADDRESS%", "[::1]:54038"),
            ("%UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%", "::1"),
            ("%UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT(64)%", "::/64"),
            ("%UPSTREAM_LOCAL_PORT%", "54038"),
            ("%UPSTREAM_REMOTE_ADDRESS%", "/tmp/up.sock"),
            ("%UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", "/tmp/up.sock"),
            ("%UPSTREAM_REMOTE_ADDRESS_ENDPOINT_ID%", ""),
            ("%UPSTREAM_HOST%", "127.0.0.1:18001"),
        ],
    );
    check(
        &TestStreamInfo::new(),
        &[
            ("%DOWNSTREAM_REMOTE_ADDRESS%", "-"),
            ("%DOWNSTREAM_REMOTE_PORT%", "-"),
            ("%UPSTREAM_REMOTE_ADDRESS_ENDPOINT_ID%", "-"),
            ("%UPSTREAM_HOST%", "-"),
        ],
    );
}

#[test]
fn upstream_hosts() {
    let info = rich();
    check(
        &info,
        &[
            ("%UPSTREAM_HOST_NAME%", "backhost"),
            ("%UPSTREAM_HOST_NAME_WITHOUT_PORT%", "backhost"),
            (
                "%UPSTREAM_HOSTS_ATTEMPTED%",
                "127.0.0.1:18009,127.0.0.1:18001",
            ),
            (
                "%UPSTREAM_HOSTS_ATTEMPTED_WITHOUT_PORT%",
                "127.0.0.1,127.0.0.1",
            ),
            (
                "%UPSTREAM_HOST_NAMES_ATTEMPTED%",
                "127.0.0.1:18009,backhost:8080",
            ),
            (
                "%UPSTREAM_HOST_NAMES_ATTEMPTED_WITHOUT_PORT%",
                "127.0.0.1,backhost",
            ),
            ("%UPSTREAM_CONNECTION_IDS_ATTEMPTED%", "2,3"),
        ],
    );
    // Without a hostname the address stands in (as Envoy logged for /bad).
    let mut i = TestStreamInfo::new();
    i.set_address(AddressKind::UpstreamHost, sock("127.0.0.1:18009"));
    check(
        &i,
        &[
            ("%UPSTREAM_HOST_NAME%", "127.0.0.1:18009"),
            ("%UPSTREAM_HOST_NAME_WITHOUT_PORT%", "127.0.0.1"),
            ("%UPSTREAM_HOSTS_ATTEMPTED%", "-"),
            ("%UPSTREAM_CONNECTION_IDS_ATTEMPTED%", "-"),
        ],
    );
}

#[test]
fn defaults_when_nothing_is_known() {
    let empty = TestStreamInfo::new();
    let mut cases: Vec<(&str, &str)> = vec![
        ("%RESPONSE_CODE%", "0"),
        ("%BYTES_RECEIVED%", "0"),
        ("%CONNECTION_ID%", "0"),
        ("%UPSTREAM_CONNECTION_ID%", "0"),
        ("%UPSTREAM_REQUEST_ATTEMPT_COUNT%", "0"),
        ("%UPSTREAM_WIRE_BYTES_SENT%", "0"),
        ("%REQUEST_HEADERS_BYTES%", "0"),
        ("%RESPONSE_FLAGS%", "-"),
        ("%RESPONSE_FLAGS_LONG%", "-"),
        ("%CUSTOM_FLAGS%", ""),
        ("%LOCAL_REPLY_BODY%", ""),
        ("%ROUTE_RESOLUTION_COUNT%", "0"),
    ];
    for op in [
        "PROTOCOL",
        "UPSTREAM_PROTOCOL",
        "RESPONSE_CODE_DETAILS",
        "CONNECTION_TERMINATION_DETAILS",
        "DURATION",
        "REQUEST_DURATION",
        "RESPONSE_TX_DURATION",
        "ROUTE_NAME",
        "VIRTUAL_CLUSTER_NAME",
        "FILTER_CHAIN_NAME",
        "STREAM_ID",
        "TLS_JA3_FINGERPRINT",
        "TLS_JA4_FINGERPRINT",
        "TRACE_ID",
        "SPAN_ID",
        "UPSTREAM_CLUSTER",
        "UPSTREAM_HOST_NAME",
        "REQUESTED_SERVER_NAME",
        "DOWNSTREAM_PEER_SUBJECT",
        "UPSTREAM_TLS_VERSION",
        "DOWNSTREAM_PEER_CERT_V_START",
        "GRPC_STATUS",
        "PATH",
        "QUERY_PARAMS",
        "UPSTREAM_TRANSPORT_FAILURE_REASON",
        "ROUTE_RESOLUTION_TIME_US",
    ] {
        cases.push((Box::leak(format!("%{op}%").into_boxed_str()), "-"));
    }
    check(&empty, &cases);
}

#[test]
fn literal_strings_and_percent_escapes() {
    let info = rich();
    check(
        &info,
        &[
            ("plain text", "plain text"),
            ("", ""),
            ("%%", "%"),
            ("100%% done", "100% done"),
            ("%%%%", "%%"),
            ("%START_TIME(%s)%%%", "1795635154%"),
            ("a%PROTOCOL%b%PROTOCOL%c", "aHTTP/1.1bHTTP/1.1c"),
            ("é%PROTOCOL%✓", "éHTTP/1.1✓"),
        ],
    );
}

#[test]
fn response_code_details_whitespace() {
    let mut i = TestStreamInfo::new();
    i.response_code_details =
        Some("upstream_reset_before_response_started{remote connection failure}".to_owned());
    check(
        &i,
        &[
            (
                "%RESPONSE_CODE_DETAILS%",
                "upstream_reset_before_response_started{remote_connection_failure}",
            ),
            (
                "%RESPONSE_CODE_DETAILS(ALLOW_WHITESPACES)%",
                "upstream_reset_before_response_started{remote connection failure}",
            ),
            (
                "%RESPONSE_CODE_DETAILS(OTHER)%",
                "upstream_reset_before_response_started{remote_connection_failure}",
            ),
        ],
    );
    i.upstream_transport_failure_reason = Some("TLS error: 268435581 x".to_owned());
    i.downstream_transport_failure_reason = Some(String::new());
    check(
        &i,
        &[
            (
                "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
                "TLS_error:_268435581_x",
            ),
            ("%DOWNSTREAM_TRANSPORT_FAILURE_REASON%", "-"),
        ],
    );
}

#[test]
fn path_and_query_params() {
    // Observed from Envoy for GET /up/x?a=1&b=hello&e=&enc=a%20b+c&a=2.
    check(
        &rich(),
        &[
            ("%PATH%", "/up/x?a=1&b=hello&e=&enc=a%20b+c&a=2"),
            ("%PATH(NQ)%", "/up/x"),
            ("%PATH(WQ:ORIG)%", "-"),
            ("%PATH(NQ:PATH):4%", "/up/"),
            ("%QUERY_PARAM(a)%", "1"),
            ("%QUERY_PARAM(b):2%", "he"),
            ("%QUERY_PARAM(e)%", ""),
            ("%QUERY_PARAM(enc)%", "a b+c"),
            ("%QUERY_PARAM(zz)%", "-"),
            ("%QUERY_PARAMS%", "a=1&b=hello&e=&enc=a%20b+c&a=2"),
            ("%QUERY_PARAMS(ORIG)%", "a=1&b=hello&e=&enc=a%20b+c&a=2"),
            ("%QUERY_PARAMS:3%", "a=1"),
        ],
    );
    let mut i = TestStreamInfo::new();
    i.set_request_header(":path", "/new/x?q=1");
    i.set_request_header("x-envoy-original-path", "/rw/x?q=1");
    check(
        &i,
        &[
            ("%PATH%", "/rw/x?q=1"),
            ("%PATH(WQ:ORIG)%", "/rw/x?q=1"),
            ("%PATH(NQ:ORIG)%", "/rw/x"),
            ("%PATH(WQ:PATH)%", "/new/x?q=1"),
            ("%PATH(NQ:ORIG_OR_PATH)%", "/rw/x"),
        ],
    );
    // Observed: escapes and oddities.
    let mut i = TestStreamInfo::new();
    i.set_request_header(":path", "/up/x?a=%4&b=%&c=%%41&d=%4g&e=%c3%a9&f%20g=1&a=2");
    check(
        &i,
        &[
            (
                "%QUERY_PARAMS(DECODED)%",
                "a=4&b=&c=A&d=4g&e=%c3%a9&f%20g=1&a=2",
            ),
            ("%QUERY_PARAM(a)%", "%4"),
            ("%QUERY_PARAM(b)%", "%"),
            ("%QUERY_PARAM(c)%", "%A"),
            ("%QUERY_PARAM(d)%", "%4g"),
            ("%QUERY_PARAM(e)%", "é"),
            ("%QUERY_PARAM(f%20g)%", "-"),
            ("%QUERY_PARAM(f g)%", "1"),
        ],
    );
    let mut i = TestStreamInfo::new();
    i.set_request_header(":path", "/up/x?=v&a&a=1");
    check(
        &i,
        &[("%QUERY_PARAM(a)%", ""), ("%QUERY_PARAMS%", "=v&a&a=1")],
    );
    let mut i = TestStreamInfo::new();
    i.set_request_header(":path", "/up/x?");
    check(&i, &[("%QUERY_PARAMS%", ""), ("%QUERY_PARAM(a)%", "-")]);
}

#[test]
fn metadata() {
    check(
        &rich(),
        &[
            (
                "%DYNAMIC_METADATA(dns)%",
                r#"{"b":false,"big":12345678901234567168,"e":"","f":1.5,"l":["a",2],"n":12,"nul":null,"o":{"l":[1,2],"x":{"y":"deep"}},"s":"str","sp":"a b\"c"}"#,
            ),
            ("%DYNAMIC_METADATA(dns:s)%", "str"),
            ("%DYNAMIC_METADATA(dns:n)%", "12"),
            ("%DYNAMIC_METADATA(dns:f)%", "1.5"),
            ("%DYNAMIC_METADATA(dns:b)%", "false"),
            ("%DYNAMIC_METADATA(dns:nul)%", "-"),
            ("%DYNAMIC_METADATA(dns:o:x:y)%", "deep"),
            ("%DYNAMIC_METADATA(dns:l)%", r#"["a",2]"#),
            ("%DYNAMIC_METADATA(dns:e)%", ""),
            ("%DYNAMIC_METADATA(dns:big)%", "12345678901234567168"),
            ("%DYNAMIC_METADATA(dns:sp)%", "a b\"c"),
            ("%DYNAMIC_METADATA(dns:o):5%", r#"{"l":"#),
            ("%DYNAMIC_METADATA(dns:s):2%", "st"),
            ("%DYNAMIC_METADATA(nope)%", "-"),
            ("%DYNAMIC_METADATA(dns:l:a)%", "-"),
            ("%DYNAMIC_METADATA(dns:s:x)%", "-"),
            ("%DYNAMIC_METADATA(dns:):3%", "-"),
            ("%DYNAMIC_METADATA(dns::s)%", "-"),
            ("%CLUSTER_METADATA(cns:cnum)%", "7"),
            ("%CLUSTER_METADATA(cns)%", r#"{"ckey":"cval","cnum":7}"#),
            (
                "%UPSTREAM_METADATA(hns)%",
                r#"{"hbool":true,"hkey":"hval","hnum":3.5}"#,
            ),
            ("%UPSTREAM_METADATA(hns:hnum)%", "3.5"),
            ("%METADATA(ROUTE:rns)%", r#"{"rk":"rv"}"#),
            ("%METADATA(ROUTE:rns:rk):1%", "r"),
            ("%METADATA(DYNAMIC:dns:s)%", "str"),
            ("%METADATA(CLUSTER:cns:ckey)%", "cval"),
            ("%METADATA(UPSTREAM_HOST:hns:hkey)%", "hval"),
            ("%METADATA(LISTENER_FILTER_CHAIN:x)%", "-"),
            ("%METADATA(ROUTE)%", "-"),
        ],
    );
}

struct Fielded;

impl FilterStateObject for Fielded {
    fn field(&self, name: &str) -> FieldValue<'_> {
        match name {
            "n" => FieldValue::Int(-42),
            "s" => FieldValue::Str("text".into()),
            _ => FieldValue::None,
        }
    }
}

#[test]
fn filter_state() {
    let mut info = rich();
    info.filter_state
        .insert("obj".to_owned(), Box::new(Fielded));
    check(
        &info,
        &[
            ("%FILTER_STATE(fs.str)%", "\"fsval-/up\""),
            ("%FILTER_STATE(fs.str:TYPED)%", "\"fsval-/up\""),
            ("%FILTER_STATE(fs.str:PLAIN)%", "fsval-/up"),
            ("%FILTER_STATE(fs.str:PLAIN):3%", "fsv"),
            ("%FILTER_STATE(fs.str:TYPED):3%", "\"fs"),
            ("%FILTER_STATE(nope:PLAIN)%", "-"),
            ("%FILTER_STATE(fs.str:FIELD:x)%", "-"),
            ("%FILTER_STATE(obj:FIELD:n)%", "-42"),
            ("%FILTER_STATE(obj:FIELD:s):2%", "te"),
            ("%FILTER_STATE(obj:PLAIN)%", "-"),
            ("%UPSTREAM_FILTER_STATE(ufs:PLAIN)%", "upstream-val"),
            ("%UPSTREAM_FILTER_STATE(fs.str:PLAIN)%", "-"),
        ],
    );
}

#[test]
fn tls_operators() {
    let mut info = rich();
    info.downstream_tls = Some(tls());
    info.upstream_tls = Some(tls());
    check(
        &info,
        &[
            ("%DOWNSTREAM_PEER_URI_SAN%", "spiffe://a/b,spiffe://c/d"),
            ("%DOWNSTREAM_PEER_DNS_SAN%", "client.example.com"),
            ("%DOWNSTREAM_PEER_IP_SAN%", "-"),
            ("%DOWNSTREAM_PEER_SUBJECT%", "CN=client,O=Acme"),
            ("%DOWNSTREAM_LOCAL_SUBJECT%", "CN=server"),
            ("%DOWNSTREAM_PEER_ISSUER%", "CN=ca"),
            ("%DOWNSTREAM_PEER_FINGERPRINT_256%", "abcdef"),
            ("%DOWNSTREAM_PEER_FINGERPRINT_1%", "0123"),
            ("%DOWNSTREAM_PEER_SERIAL%", "1f"),
            ("%DOWNSTREAM_PEER_CHAIN_SERIALS%", "1f,2e"),
            ("%DOWNSTREAM_PEER_CHAIN_FINGERPRINTS_256%", "-"),
            ("%DOWNSTREAM_PEER_ISSUER_SERIAL%", "-"),
            ("%DOWNSTREAM_PEER_CERT%", "-----BEGIN%20CERTIFICATE-----"),
            ("%DOWNSTREAM_TLS_VERSION%", "TLSv1.3"),
            ("%DOWNSTREAM_TLS_CIPHER%", "TLS_AES_128_GCM_SHA256"),
            ("%DOWNSTREAM_TLS_SESSION_ID%", "beef"),
            ("%DOWNSTREAM_TLS_GROUP%", "X25519"),
            ("%DOWNSTREAM_PEER_CERT_V_START%", "2023-11-14T22:13:20.000Z"),
            ("%DOWNSTREAM_PEER_CERT_V_END(%s)%", "1800000000"),
            ("%UPSTREAM_PEER_URI_SAN%", "spiffe://a/b,spiffe://c/d"),
            ("%UPSTREAM_PEER_SUBJECT%", "CN=client,O=Acme"),
            ("%UPSTREAM_TLS_VERSION%", "TLSv1.3"),
            ("%UPSTREAM_PEER_CERT_V_START(%Y)%", "2023"),
            ("%UPSTREAM_LOCAL_URI_SAN%", "-"),
        ],
    );
}

#[test]
fn grpc_status() {
    let grpc = |ct: &str, trailer: Option<&str>, header: Option<&str>, code: Option<u16>| {
        let mut i = TestStreamInfo::new();
        i.set_request_header(":path", "/svc/Method");
        i.set_request_header("content-type", ct);
        if let Some(t) = trailer {
            i.set_response_trailer("grpc-status", t);
        }
        if let Some(h) = header {
            i.set_response_header("grpc-status", h);
        }
        i.response_code = code;
        i
    };
    let forms = "%GRPC_STATUS%|%GRPC_STATUS(CAMEL_STRING)%|%GRPC_STATUS(SNAKE_STRING)%|%GRPC_STATUS(NUMBER)%|%GRPC_STATUS_NUMBER%";
    // Observed from Envoy: a gRPC request answered 200 without grpc-status.
    assert_eq!(
        text(forms, &grpc("application/grpc", None, None, Some(200))),
        "Unknown|Unknown|UNKNOWN|2|2"
    );
    assert_eq!(
        text(
            forms,
            &grpc("application/grpc+proto", Some("1"), Some("5"), Some(200))
        ),
        "Canceled|Canceled|CANCELLED|1|1"
    );
    assert_eq!(
        text(forms, &grpc("application/grpc", None, Some("0"), None)),
        "Ok|Ok|OK|0|0"
    );
    assert_eq!(
        text(forms, &grpc("application/grpc", None, None, Some(503))),
        "Unavailable|Unavailable|UNAVAILABLE|14|14"
    );
    assert_eq!(
        text(forms, &grpc("application/grpc", Some("42"), None, None)),
        "42|42|42|42|42"
    );
    assert_eq!(
        text(forms, &grpc("application/grpc", Some("x"), None, None)),
        "-1|-1|-1|-1|-1"
    );
    assert_eq!(
        text(
            forms,
            &grpc("application/grpc-web", Some("1"), None, Some(200))
        ),
        "-|-|-|-|-"
    );
    assert_eq!(
        text(forms, &grpc("application/grpc", None, None, None)),
        "-|-|-|-|-"
    );
}

#[test]
fn requested_server_name() {
    let mut i = TestStreamInfo::new();
    i.set_request_header(":authority", "my_host:99");
    check(
        &i,
        &[
            ("%REQUESTED_SERVER_NAME%", "-"),
            ("%REQUESTED_SERVER_NAME(SNI_ONLY)%", "-"),
            ("%REQUESTED_SERVER_NAME(SNI_FIRST)%", "my_host:99"),
            ("%REQUESTED_SERVER_NAME(HOST_FIRST)%", "my_host:99"),
        ],
    );
    i.requested_server_name = Some("sni.example.com".to_owned());
    check(
        &i,
        &[
            ("%REQUESTED_SERVER_NAME%", "sni.example.com"),
            ("%REQUESTED_SERVER_NAME(SNI_FIRST)%", "sni.example.com"),
            ("%REQUESTED_SERVER_NAME(HOST_FIRST)%", "my_host:99"),
        ],
    );
    i.requested_server_name = Some("bad_sni".to_owned());
    check(&i, &[("%REQUESTED_SERVER_NAME%", "invalid:bad_sni")]);
}

#[test]
fn coalesce() {
    let info = rich();
    check(
        &info,
        &[
            (
                r#"%COALESCE({"operators":[{"command":"REQ","param":"x-nope"},"RESPONSE_CODE"]})%"#,
                "200",
            ),
            (
                r#"%COALESCE({"operators":[{"command":"REQ","param":"x-empty"},"PROTOCOL"]})%"#,
                "HTTP/1.1",
            ),
            (
                r#"%COALESCE({"operators":["PROTOCOL",{"command":"REQ","param":"x"}]}):5%"#,
                "HTTP/",
            ),
            (
                r#"%COALESCE({"operators":[{"command":"REQ","param":"user-agent","max_length":4},"PROTOCOL"]})%"#,
                "curl",
            ),
            (r#"%COALESCE({"operators":["TRACE_ID","SPAN_ID"]})%"#, "-"),
        ],
    );
}

#[test]
fn unique_id_and_hostname() {
    let info = TestStreamInfo::new();
    let a = text("%UNIQUE_ID%", &info);
    let b = text("%UNIQUE_ID%", &info);
    assert_ne!(a, b);
    assert_eq!(a.len(), 36);
    let bytes = a.as_bytes();
    assert_eq!(bytes[14], b'4', "{a}");
    assert!(matches!(bytes[19], b'8' | b'9' | b'a' | b'b'), "{a}");
    assert!(
        a.chars()
            .all(|c| c == '-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    let host = text("%HOSTNAME%", &info);
    assert!(!host.is_empty() && host != "-");
}

#[test]
fn environment_is_read_once_at_parse_time() {
    // PATH is set for any test process.
    let path = std::env::var("PATH").unwrap_or_default();
    let f = Format::parse("%ENVIRONMENT(PATH)%").expect("compiles");
    assert_eq!(f.as_literal(), Some(path.as_str()));
    let f = Format::parse("%ENVIRONMENT(PATH):2%").expect("compiles");
    assert_eq!(f.as_literal(), Some(&path[..2]));
    // Missing: `-`, even when omitting empty values.
    let f = Format::text("%ENVIRONMENT(RVOY_SURELY_UNSET_VAR)%", true).expect("compiles");
    assert_eq!(f.as_literal(), Some("-"));
    assert_eq!(text("%ENVIRONMENT(PATH:Y)%", &TestStreamInfo::new()), "-");
}

#[test]
fn omit_empty_values_in_text() {
    let f = Format::text("[%REQ(x-nothere)%][%REQ(x-empty)%][%RESPONSE_CODE%]", true)
        .expect("compiles");
    let mut i = TestStreamInfo::new();
    i.set_request_header("x-empty", "");
    i.response_code = Some(203);
    assert_eq!(f.render_to_string(&i), "[][][203]");
    let f = Format::parse("[%REQ(x-nothere)%][%REQ(x-empty)%][%RESPONSE_CODE%]").expect("compiles");
    assert_eq!(f.render_to_string(&i), "[-][][203]");
}

#[test]
fn truncation_is_by_bytes() {
    let mut i = TestStreamInfo::new();
    i.set_request_header("x-u", "é-suffix");
    assert_eq!(text("%REQ(x-u):2%", &i), "é");
    // Cutting a multi-byte character: exact bytes, or U+FFFD in a String.
    let f = Format::parse("%REQ(x-u):1%").expect("compiles");
    let mut bytes = Vec::new();
    f.render_bytes(&i, &mut bytes);
    assert_eq!(bytes, vec![0xc3]);
    assert_eq!(f.render_to_string(&i), "\u{fffd}");
}

#[test]
fn every_listed_operator_compiles_with_a_suitable_argument() {
    for op in OPERATORS {
        let format = match *op {
            "REQ" | "RESP" | "TRAILER" | "REQUEST_HEADER" | "RESPONSE_HEADER"
            | "RESPONSE_TRAILER" | "STREAM_INFO_REQ" => {
                format!("%{op}(x-a?x-b):3%")
            }
            "DYNAMIC_METADATA" | "CLUSTER_METADATA" | "UPSTREAM_METADATA" => {
                format!("%{op}(ns:k)%")
            }
            "FILTER_STATE" | "UPSTREAM_FILTER_STATE" => format!("%{op}(k:PLAIN)%"),
            "METADATA" => "%METADATA(ROUTE:ns:k)%".to_owned(),
            "QUERY_PARAM" | "ENVIRONMENT" => format!("%{op}(X)%"),
            "COMMON_DURATION" => "%COMMON_DURATION(DS_RX_BEG:DS_TX_END:us)%".to_owned(),
            "COALESCE" => r#"%COALESCE({"operators":["PROTOCOL"]})%"#.to_owned(),
            "CEL" => continue,
            other => format!("%{other}%"),
        };
        let r = Format::parse(&format);
        assert!(r.is_ok(), "{format}: {r:?}");
        // And renders on an empty stream.
        let _ = r.map(|f| f.render_to_string(&TestStreamInfo::new()));
    }
    assert!(err("%CEL(request.path)%").contains("not supported by rvoy"));
}

#[test]
fn times_before_and_durations_above_limits_do_not_panic() {
    let mut i = TestStreamInfo::new();
    i.duration = Some(Duration::MAX);
    i.start_time =
        Some(std::time::SystemTime::UNIX_EPOCH - Duration::from_secs(86_400 * 365 * 3000));
    let _ = text("%DURATION% %START_TIME% %START_TIME(%c %j %U %V %G)%", &i);
}
