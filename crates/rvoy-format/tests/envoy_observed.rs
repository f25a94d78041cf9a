//! Lines Envoy 1.40 wrote for real requests (`envoy.access_loggers.file`,
//! curl against a listener on 127.0.0.1), re-rendered here from the same
//! stream data.

mod common;

use std::time::{Duration, SystemTime};

use common::sock;
use rvoy_format::{
    AddressKind, DEFAULT_ACCESS_LOG_FORMAT, Format, Protocol, ResponseFlag, TestStreamInfo,
};

fn at(epoch_millis: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(epoch_millis)
}

fn request(method: &str, path: &str, request_id: &str) -> TestStreamInfo {
    let mut i = TestStreamInfo::new();
    i.set_request_header(":method", method);
    i.set_request_header(":path", path);
    i.set_request_header(":authority", "127.0.0.1:18000");
    i.set_request_header(":scheme", "http");
    i.set_request_header("user-agent", "curl/7.88.1");
    i.set_request_header("accept", "*/*");
    i.set_request_header("x-forwarded-proto", "http");
    i.set_request_header("x-request-id", request_id);
    i.protocol = Some(Protocol::Http11);
    i
}

#[test]
fn default_format_is_envoys() {
    // The documented default, byte for byte.
    assert_eq!(
        DEFAULT_ACCESS_LOG_FORMAT,
        concat!(
            "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" ",
            "%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% ",
            "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" ",
            "\"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n"
        )
    );
}

#[test]
fn default_format_lines() {
    let format = Format::parse(DEFAULT_ACCESS_LOG_FORMAT).expect("default format compiles");

    // POST /up/x with a 5-byte body, proxied to 127.0.0.1:18001.
    let mut up = request("POST", "/up/x", "4765f0cd-47c3-41a5-8f55-4d9a16ab4fbf");
    up.start_time = Some(at(1_795_635_012_047));
    up.response_code = Some(200);
    up.bytes_received = 5;
    up.bytes_sent = 12;
    up.duration = Some(Duration::from_micros(1_400));
    up.set_response_header("x-envoy-upstream-service-time", "0");
    up.set_address(AddressKind::UpstreamHost, sock("127.0.0.1:18001"));
    assert_eq!(
        format.render_to_string(&up),
        "[2026-11-25T19:30:12.047Z] \"POST /up/x HTTP/1.1\" 200 - 5 12 1 0 \"-\" \"curl/7.88.1\" \"4765f0cd-47c3-41a5-8f55-4d9a16ab4fbf\" \"127.0.0.1:18000\" \"127.0.0.1:18001\"\n"
    );

    // GET /bad to a cluster whose only host refuses connections.
    let mut bad = request("GET", "/bad", "e8b77081-f7f6-4ebe-94ed-91156211cbbe");
    bad.start_time = Some(at(1_795_635_012_066));
    bad.response_code = Some(503);
    bad.response_flags
        .set(ResponseFlag::UpstreamConnectionFailure);
    bad.bytes_sent = 98;
    bad.duration = Some(Duration::from_micros(600));
    bad.set_address(AddressKind::UpstreamHost, sock("127.0.0.1:18009"));
    assert_eq!(
        format.render_to_string(&bad),
        "[2026-11-25T19:30:12.066Z] \"GET /bad HTTP/1.1\" 503 UF 0 98 0 - \"-\" \"curl/7.88.1\" \"e8b77081-f7f6-4ebe-94ed-91156211cbbe\" \"127.0.0.1:18000\" \"127.0.0.1:18009\"\n"
    );

    // HTTP/2 request without a route, X-Forwarded-For given.
    let mut nr = request("GET", "/nowhere", "ca6f60d0-e034-4289-a563-5310571ffebd");
    nr.protocol = Some(Protocol::Http2);
    nr.set_request_header("x-forwarded-for", "1.2.3.4");
    nr.start_time = Some(at(1_795_635_012_075));
    nr.response_code = Some(404);
    nr.response_flags.set(ResponseFlag::NoRouteFound);
    nr.duration = Some(Duration::ZERO);
    assert_eq!(
        format.render_to_string(&nr),
        "[2026-11-25T19:30:12.075Z] \"GET /nowhere HTTP/2\" 404 NR 0 0 0 - \"1.2.3.4\" \"curl/7.88.1\" \"ca6f60d0-e034-4289-a563-5310571ffebd\" \"127.0.0.1:18000\" \"-\"\n"
    );
}

#[test]
fn many_operators_line() {
    // From `/up/x?a=1&b=hello&e=&enc=a%20b+c&a=2` with `Host: myhost:99`.
    let format = Format::parse(concat!(
        "host=%REQ(host)%|auth=%REQ(:authority)%|m=%REQ(:METHOD)%|sch=%REQ(:scheme)%|st=%RESP(:status)%|",
        "pnq=%PATH(NQ)%|porig=%PATH(WQ:ORIG)%|pp=%PATH(NQ:PATH):4%|q=%QUERY_PARAM(a)%|q2=%QUERY_PARAM(b):2%|",
        "qe=%QUERY_PARAM(e)%|qenc=%QUERY_PARAM(enc)%|rt=%RESPONSE_TRAILER(x)%|rtb=%RESPONSE_TRAILERS_BYTES%|",
        "alt=%ACCESS_LOG_TYPE%|cf=%CUSTOM_FLAGS%|rcd=%RESPONSE_CODE_DETAILS%|ctd=%CONNECTION_TERMINATION_DETAILS%|",
        "fcn=%FILTER_CHAIN_NAME%|tid=%TRACE_ID%|lrb=%LOCAL_REPLY_BODY%|gs=%GRPC_STATUS%|",
        "uha=%UPSTREAM_HOSTS_ATTEMPTED%|uhna=%UPSTREAM_HOST_NAMES_ATTEMPTED%|ucia=%UPSTREAM_CONNECTION_IDS_ATTEMPTED%|",
        "uhn=%UPSTREAM_HOST_NAME%|udct=%UPSTREAM_DETECTED_CLOSE_TYPE%|urae=%UPSTREAM_REMOTE_ADDRESS_ENDPOINT_ID%|",
        "dlae=%DOWNSTREAM_LOCAL_ADDRESS_ENDPOINT_ID%|uci=%UPSTREAM_CONNECTION_ID%|ula=%UPSTREAM_LOCAL_ADDRESS%|",
        "ulp=%UPSTREAM_LOCAL_PORT%|ura=%UPSTREAM_REMOTE_ADDRESS%|dra=%DOWNSTREAM_REMOTE_ADDRESS%|",
        "ddla=%DOWNSTREAM_DIRECT_LOCAL_ADDRESS_WITHOUT_PORT%|rf=%RESPONSE_FLAGS%|rfl=%RESPONSE_FLAGS_LONG%|",
        "uwbs=%UPSTREAM_WIRE_BYTES_SENT%|cd=%COMMON_DURATION(FS:LS)%|rstd=%RESPONSE_TX_DURATION%\n"
    ))
    .expect("compiles");
    let mut i = request(
        "GET",
        "/up/x?a=1&b=hello&e=&enc=a%20b+c&a=2",
        "ea666a72-fb43-4903-baea-d61089ec2abc",
    );
    i.set_request_header(":authority", "myhost:99");
    i.request_pseudo_headers
        .insert(":authority".to_owned(), "myhost:99".to_owned());
    i.access_log_type = rvoy_format::AccessLogType::DownstreamEnd;
    i.set_response_header(":status", "200");
    i.response_code = Some(200);
    i.response_code_details = Some("via_upstream".to_owned());
    i.upstream_hosts_attempted = vec![(sock("127.0.0.1:18001").into(), "backhost".to_owned())];
    i.upstream_connection_ids_attempted = vec![2];
    i.upstream_host_name = Some("backhost".to_owned());
    i.set_address(AddressKind::UpstreamHost, sock("127.0.0.1:18001"));
    i.upstream_detected_close_type = Some(rvoy_format::DetectedCloseType::Normal);
    i.set_address(AddressKind::UpstreamRemote, sock("127.0.0.1:18001"));
    i.set_address(AddressKind::UpstreamLocal, sock("127.0.0.1:54038"));
    i.set_address(AddressKind::DownstreamLocal, sock("127.0.0.1:18000"));
    i.set_address(AddressKind::DownstreamDirectLocal, sock("127.0.0.1:18000"));
    i.set_address(AddressKind::DownstreamRemote, sock("127.0.0.1:34556"));
    i.upstream_connection_id = Some(2);
    i.upstream_bytes_meter = Some(rvoy_format::BytesMeter {
        wire_bytes_sent: 224,
        ..Default::default()
    });
    i.timings.insert(
        rvoy_format::TimePoint::FirstUpstreamRxByteReceived,
        Duration::from_micros(1_200),
    );
    i.timings.insert(
        rvoy_format::TimePoint::LastDownstreamTxByteSent,
        Duration::from_micros(1_300),
    );
    assert_eq!(
        format.render_to_string(&i),
        concat!(
            "host=myhost:99|auth=myhost:99|m=GET|sch=http|st=200|pnq=/up/x|porig=-|pp=/up/|q=1|q2=he|qe=|qenc=a b+c|",
            "rt=-|rtb=0|alt=DownstreamEnd|cf=|rcd=via_upstream|ctd=-|fcn=-|tid=-|lrb=|gs=-|uha=127.0.0.1:18001|",
            "uhna=backhost|ucia=2|uhn=backhost|udct=Normal|urae=|dlae=|uci=2|ula=127.0.0.1:54038|ulp=54038|",
            "ura=127.0.0.1:18001|dra=127.0.0.1:34556|ddla=127.0.0.1|rf=-|rfl=-|uwbs=224|cd=-|rstd=0\n"
        )
    );
}

#[test]
fn local_reply_bodies() {
    // local_reply_config body_format, observed for a 404 NR and a 503 UF.
    let text = Format::parse(
        "LR[%LOCAL_REPLY_BODY%][%RESPONSE_CODE%][%RESPONSE_FLAGS%][%REQ(x-nothere)%]",
    )
    .expect("compiles");
    let mut i = TestStreamInfo::new();
    i.response_code = Some(404);
    i.response_flags.set(ResponseFlag::NoRouteFound);
    assert_eq!(text.render_to_string(&i), "LR[][404][NR][-]");

    let json = Format::json(
        &serde_json::json!({"b": "%LOCAL_REPLY_BODY%", "c": "%RESPONSE_CODE%", "m": "%REQ(x-nothere)%"}),
        false,
    )
    .expect("compiles");
    let mut i = TestStreamInfo::new();
    i.response_code = Some(503);
    i.local_reply_body = "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure".to_owned();
    assert_eq!(
        json.render_to_string(&i),
        "{\"b\":\"upstream connect error or disconnect/reset before headers. reset reason: remote connection failure\",\"c\":503,\"m\":null}\n"
    );
}

#[test]
fn requested_server_name_host_modes() {
    // A route with host_rewrite_literal: Envoy keeps the client's host in
    // x-envoy-original-host. No TLS, so no SNI.
    let format = Format::parse(concat!(
        "%REQUESTED_SERVER_NAME(HOST_FIRST)%|%REQUESTED_SERVER_NAME(HOST_FIRST:HOST)%|",
        "%REQUESTED_SERVER_NAME(HOST_FIRST:ORIG)%|%REQUESTED_SERVER_NAME(HOST_FIRST:ORIG_OR_HOST)%|",
        "%REQUESTED_SERVER_NAME(SNI_FIRST:ORIG)%|%REQUESTED_SERVER_NAME(SNI_ONLY:ORIG)%|%REQ(:authority)%"
    ))
    .expect("compiles");
    let mut rewritten = TestStreamInfo::new();
    rewritten.set_request_header(":authority", "rewritten.example");
    rewritten.set_request_header("x-envoy-original-host", "orig.example:81");
    assert_eq!(
        format.render_to_string(&rewritten),
        "orig.example:81|rewritten.example|orig.example:81|orig.example:81|orig.example:81|-|rewritten.example"
    );
    let mut plain = TestStreamInfo::new();
    plain.set_request_header(":authority", "plain.example");
    assert_eq!(
        format.render_to_string(&plain),
        "plain.example|plain.example|-|plain.example|-|-|plain.example"
    );
}

#[test]
fn flags_keep_the_order_they_were_set_in() {
    // A route to a refusing host with one connect-failure retry: the router
    // sets URX, then the last attempt's UF.
    let format = Format::parse("%RESPONSE_FLAGS%|%RESPONSE_FLAGS_LONG%|%UPSTREAM_REQUEST_ATTEMPT_COUNT%|%RESPONSE_CODE_DETAILS%")
        .expect("compiles");
    let mut i = TestStreamInfo::new();
    i.response_flags
        .set(ResponseFlag::UpstreamRetryLimitExceeded);
    i.response_flags
        .set(ResponseFlag::UpstreamConnectionFailure);
    i.upstream_request_attempt_count = Some(2);
    i.response_code_details = Some(
        "upstream_reset_before_response_started{remote_connection_failure|delayed_connect_error:_Connection_refused}"
            .to_owned(),
    );
    assert_eq!(
        format.render_to_string(&i),
        "URX,UF|UpstreamRetryLimitExceeded,UpstreamConnectionFailure|2|upstream_reset_before_response_started{remote_connection_failure|delayed_connect_error:_Connection_refused}"
    );
}
