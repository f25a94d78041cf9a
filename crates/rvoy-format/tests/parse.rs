//! Compile errors and syntax corner cases, with the messages
//! `envoy --mode validate` (1.40) printed for the same formats.

mod common;

use common::{err, text};
use rvoy_format::{Format, TestStreamInfo};

#[test]
fn errors_match_envoy() {
    let cases: &[(&str, &str)] = &[
        ("%FOO%", "Not supported field in StreamInfo: FOO"),
        ("%A_%", "Not supported field in StreamInfo: A_"),
        ("%_A%", "Not supported field in StreamInfo: _A"),
        ("%A1%", "Not supported field in StreamInfo: A1"),
        (
            "%REQ_WITHOUT_QUERY(:PATH)%",
            "Not supported field in StreamInfo: REQ_WITHOUT_QUERY",
        ),
        (
            "%FILE_CONTENT(/etc/hostname)%",
            "Not supported field in StreamInfo: FILE_CONTENT",
        ),
        (
            "%REQ(a)b)%",
            "Invalid header configuration. Format string contains invalid characters.",
        ),
        (
            "%REQ(a b)%",
            "Invalid header configuration. Format string contains invalid characters.",
        ),
        (
            "%REQ(A:B)%",
            "Invalid header configuration. Format string contains invalid characters.",
        ),
        (
            "%START_TIME:10%",
            "START_TIME does not allow length to be specified.",
        ),
        (
            "%PROTOCOL(x)%",
            "PROTOCOL does not take any parameters or length",
        ),
        (
            "%PROTOCOL:3%",
            "PROTOCOL does not take any parameters or length",
        ),
        (
            "%UPSTREAM_HOST(x)%",
            "UPSTREAM_HOST does not take any parameters or length",
        ),
        (
            "%LOCAL_REPLY_BODY:3%",
            "LOCAL_REPLY_BODY does not take any parameters or length",
        ),
        ("%REQ%", "REQ requires parameters"),
        ("%REQ():3%", "REQ requires parameters"),
        ("%ENVIRONMENT()%", "ENVIRONMENT requires parameters"),
        ("%QUERY_PARAM%", "QUERY_PARAM requires parameters"),
        (
            "%REQ(a?b?c)%",
            "More than 1 alternative header specified in token: a?b?c",
        ),
        (
            "abc%",
            "Incorrect configuration: abc%. Couldn't find valid command at position 3",
        ),
        (
            "%abc",
            "Incorrect configuration: %abc. Couldn't find valid command at position 0",
        ),
        (
            "a % b",
            "Incorrect configuration: a % b. Couldn't find valid command at position 2",
        ),
        (
            "%REQ(x):abc%",
            "Incorrect configuration: %REQ(x):abc%. Couldn't find valid command at position 0",
        ),
        (
            "%req(x)%",
            "Incorrect configuration: %req(x)%. Couldn't find valid command at position 0",
        ),
        (
            "%REQ(x)",
            "Incorrect configuration: %REQ(x). Couldn't find valid command at position 0",
        ),
        (
            "%REQ(x):99999999999999999999999%",
            "Incorrect configuration: %REQ(x):99999999999999999999999%. Couldn't find valid command at position 0",
        ),
        (
            "%START_TIME(%Y%n)%",
            "Invalid header configuration. Format string contains newline.",
        ),
        (
            "%START_TIME(%Y%2n)%",
            "Invalid header configuration. Format string contains newline.",
        ),
        (
            "%FILTER_STATE(k:BAD)%",
            "Invalid filter state serialize type, only support PLAIN/TYPED/FIELD.",
        ),
        (
            "%FILTER_STATE(k:FIELD)%",
            "Invalid filter state serialize type, FIELD should be used with the field name.",
        ),
        (
            "%FILTER_STATE(k:PLAIN:x)%",
            "Invalid filter state serialize type, FIELD should be used with the field name.",
        ),
        (
            "%FILTER_STATE(:PLAIN)%",
            "Invalid filter state configuration, key cannot be empty.",
        ),
        (
            "%FILTER_STATE%",
            "Invalid filter state configuration, key cannot be empty.",
        ),
        (
            "%UPSTREAM_FILTER_STATE%",
            "Invalid filter state configuration, key cannot be empty.",
        ),
        (
            "%GRPC_STATUS(BAD)%",
            "GrpcStatusFormatter only supports CAMEL_STRING, SNAKE_STRING or NUMBER. Got: BAD",
        ),
        (
            "%GRPC_STATUS(NUMBER):3%",
            "GRPC_STATUS does not allow length to be specified.",
        ),
        (
            "%COMMON_DURATION(a)%",
            "Invalid common duration configuration: a.",
        ),
        (
            "%COMMON_DURATION(a:b:c:d)%",
            "Invalid common duration configuration: a:b:c:d.",
        ),
        (
            "%COMMON_DURATION(a:b:xs)%",
            "Invalid common duration precision: xs.",
        ),
        (
            "%COMMON_DURATION(a:b):3%",
            "COMMON_DURATION does not allow length to be specified.",
        ),
        (
            "%PATH(BAD)%",
            "Invalid PATH option: 'BAD', only 'WQ'/'NQ' are allowed",
        ),
        (
            "%PATH(WQ:BAD)%",
            "Invalid PATH option: 'BAD', only 'ORIG'/'PATH'/'ORIG_OR_PATH' are allowed",
        ),
        (
            "%QUERY_PARAMS(x)%",
            "Invalid QUERY_PARAMS option: 'x', only 'ORIG'/'DECODED' are allowed",
        ),
        (
            "%REQUESTED_SERVER_NAME(x)%",
            "Invalid REQUESTED_SERVER_NAME option: 'x', only 'SNI_ONLY'/'SNI_FIRST'/'HOST_FIRST' are allowed",
        ),
        (
            "%REQUESTED_SERVER_NAME(SNI_FIRST):3%",
            "REQUESTED_SERVER_NAME does not allow length to be specified.",
        ),
        ("%METADATA%", " is not supported type of metadata"),
        (
            "%METADATA(BAD:ns)%",
            "BAD is not supported type of metadata",
        ),
        (
            "%METADATA(route:ns)%",
            "route is not supported type of metadata",
        ),
        (
            "%CLUSTER_METADATA(ns):3%",
            "CLUSTER_METADATA does not allow length to be specified.",
        ),
        (
            "%UPSTREAM_METADATA(ns):3%",
            "UPSTREAM_METADATA does not allow length to be specified.",
        ),
        ("%CLUSTER_METADATA%", "CLUSTER_METADATA requires parameters"),
        (
            "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT(x):3%",
            "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT does not allow length to be specified.",
        ),
        (
            "%DOWNSTREAM_REMOTE_ADDRESS(16)%",
            "DOWNSTREAM_REMOTE_ADDRESS does not take any parameters or length",
        ),
        (
            "%START_TIME(x):3%",
            "START_TIME does not allow length to be specified.",
        ),
        (
            "%DOWNSTREAM_PEER_CERT_V_START:3%",
            "DOWNSTREAM_PEER_CERT_V_START does not allow length to be specified.",
        ),
        (
            "%COALESCE({\"operators\":[]})%",
            "COALESCE: 'operators' array must not be empty",
        ),
        (
            "%COALESCE({\"op\":1})%",
            "COALESCE: JSON configuration must contain 'operators' array",
        ),
        (
            "%COALESCE({\"operators\":[\"NOPE\"]})%",
            "COALESCE: failed to parse operator at index 0: unknown command: 'NOPE'",
        ),
        (
            "%COALESCE({\"operators\":[{\"command\":\"REQ\"}]})%",
            "COALESCE: failed to parse operator at index 0: REQ requires parameters",
        ),
        ("%COALESCE%", "COALESCE requires parameters"),
    ];
    let mut failures = Vec::new();
    for (format, want) in cases {
        let got = err(format);
        if got != *want {
            failures.push(format!("{format}: got {got:?}, want {want:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    // serde's wording differs from Envoy's JSON library after the prefix.
    assert!(err("%COALESCE(x)%").starts_with("COALESCE: failed to parse JSON configuration: "));
}

#[test]
fn accepted_by_envoy() {
    for format in [
        "%%",
        "%%%%",
        "%START_TIME%%%",
        "%PROTOCOL()%",
        "%UNIQUE_ID()%",
        "%REQ(x):0%",
        "%REQ(:path)%",
        "%DYNAMIC_METADATA(ns:a:b):5%",
        "%QUERY_PARAM(a):3%",
        "%ENVIRONMENT(X):3%",
        "%ENVIRONMENT(X:Y)%",
        "%RESPONSE_CODE_DETAILS(FOO)%",
        "%METADATA(ROUTE:ns):3%",
        "%METADATA(ROUTE:)%",
        "%METADATA(UPSTREAM_HOST)%",
        "%METADATA(LISTENER:ns)%",
        "%METADATA(VIRTUAL_HOST:ns)%",
        "%METADATA(LISTENER_FILTER_CHAIN:ns)%",
        "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT(16)%",
        "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT(x)%",
        "%QUERY_PARAMS(ORIG)%",
        "%QUERY_PARAMS(DECODED):3%",
        "%REQUESTED_SERVER_NAME()%",
        "%COALESCE({\"operators\":[\"PROTOCOL\",{\"command\":\"REQ\",\"param\":\"x\"}]}):5%",
        "%START_TIME(%t)%",
        "%FILTER_STATE(k):3%",
        "%UPSTREAM_FILTER_STATE(k:FIELD:f):3%",
        "%PATH:3%",
        "%PATH(NQ:ORIG):3%",
    ] {
        assert_eq!(err(format), "OK", "{format}");
    }
}

#[test]
fn command_matching_is_lazy_like_re2() {
    let mut i = TestStreamInfo::new();
    i.set_request_header("x-a", "A");
    // The argument ends at the first ')' that is followed by `(:N)?%`.
    assert_eq!(text("%REQ(x-a):1%%REQ(x-a)%", &i), "AA");
    assert_eq!(text("(%REQ(x-a)%)", &i), "(A)");
    assert!(err("(%REQ(x-a))").starts_with("Incorrect configuration"));
    assert_eq!(text("%PROTOCOL%:%RESPONSE_CODE%", &i), "-:0");
    // The length group needs digits.
    assert_eq!(
        err("%REQ(x-a):%"),
        "Incorrect configuration: %REQ(x-a):%. Couldn't find valid command at position 0"
    );
    // An argument cannot span a newline.
    assert!(err("%REQ(x\n)%").starts_with("Incorrect configuration"));
    // COALESCE's JSON may contain ')' characters.
    assert_eq!(
        text(
            "%COALESCE({\"operators\":[{\"command\":\"REQ\",\"param\":\"x-a\"}]})%",
            &i
        ),
        "A"
    );
}

#[test]
fn literals_skip_rendering() {
    let f = Format::parse("foo").expect("compiles");
    assert_eq!(f.as_literal(), Some("foo"));
    assert_eq!(Format::parse("").expect("compiles").as_literal(), Some(""));
    assert_eq!(
        Format::parse("a%%b").expect("compiles").as_literal(),
        Some("a%b")
    );
    assert_eq!(
        Format::parse("%PROTOCOL%").expect("compiles").as_literal(),
        None
    );
    assert_eq!(Format::literal("x%y").as_literal(), Some("x%y"));
    let mut out = String::from(">");
    Format::literal("x%y").render(&TestStreamInfo::new(), &mut out);
    assert_eq!(out, ">x%y");
    assert_eq!(
        Format::parse("a").expect("a"),
        Format::parse("a").expect("a")
    );
}

#[test]
fn header_values_translate_the_obsolete_syntaxes() {
    use prost_types::value::Kind;
    let mut i = TestStreamInfo::new();
    i.set_metadata(
        rvoy_format::MetadataKind::Dynamic,
        "dns",
        common::pstruct(vec![("s", common::pv(Kind::StringValue("str".into())))]),
    );
    i.set_metadata(
        rvoy_format::MetadataKind::UpstreamHost,
        "ns",
        common::pstruct(vec![(
            "a",
            common::pv(Kind::StructValue(common::pstruct(vec![(
                "b",
                common::pv(Kind::StringValue("deep".into())),
            )]))),
        )]),
    );
    i.filter_state.insert(
        "fs.str".to_owned(),
        Box::new(rvoy_format::StringFilterState("fsval".to_owned())),
    );
    let render = |s: &str| {
        Format::header_value(s)
            .expect("compiles")
            .render_to_string(&i)
    };
    // Observed through Envoy's request_headers_to_add.
    assert_eq!(render(r#"%DYNAMIC_METADATA(["dns", "s"])%"#), "str");
    assert_eq!(render("%DYNAMIC_METADATA(dns:s)%"), "str");
    assert_eq!(render("%PER_REQUEST_STATE(fs.str)%"), "fsval");
    assert_eq!(render("%FILTER_STATE(fs.str:PLAIN)%"), "fsval");
    assert_eq!(render("a%REQ(x-nothere)%b"), "ab");
    assert_eq!(render("100%%"), "100%");
    assert_eq!(
        render(r#"x%UPSTREAM_METADATA( [ "ns" , "a", "b" ] )%y"#),
        "xdeepy"
    );
    assert!(Format::header_value(r#"%UPSTREAM_METADATA(["ns", 1])%"#).is_err());
    assert_eq!(
        Format::header_value("foo").expect("compiles").as_literal(),
        Some("foo")
    );
    // Missing values are empty in header values.
    assert_eq!(render("%UPSTREAM_HOST%"), "");
}
