//! JSON formats: typing, nesting, key order, literals, omission, escaping.

mod common;

use common::{json, rich};
use rvoy_format::{Format, TestStreamInfo};
use serde_json::json as j;

#[test]
fn typed_values_nesting_and_sorted_keys() {
    // The shape Envoy 1.40 printed for this format (values differ per request).
    let format = j!({
        "zeta": "%RESPONSE_CODE%",
        "alpha": "%DURATION%",
        "start": "%START_TIME%",
        "bytes": "%BYTES_SENT%",
        "miss": "%REQ(x-nothere)%",
        "multi": "%RESPONSE_CODE%/%PROTOCOL%/%REQ(x-nothere)%",
        "lit": "plain",
        "num": 42,
        "flt": 1.5,
        "big": 1e20,
        "neg": -0.25,
        "bool": true,
        "nul": null,
        "nested": {"code": "%RESPONSE_CODE%", "inner": {"p": "%PROTOCOL%"}},
        "list": ["%RESPONSE_CODE%", "x", 3, {"k": "%PROTOCOL%"}],
        "pct": "100%%",
        "flags": "%RESPONSE_FLAGS%",
        "port": "%DOWNSTREAM_REMOTE_PORT%",
        "uhost": "%UPSTREAM_HOST%",
        "empty": ""
    });
    let mut info = TestStreamInfo::new();
    info.response_code = Some(203);
    info.duration = Some(std::time::Duration::from_millis(0));
    info.start_time = Some(common::start());
    info.bytes_sent = 10;
    info.protocol = Some(rvoy_format::Protocol::Http11);
    info.set_address(
        rvoy_format::AddressKind::DownstreamRemote,
        common::sock("127.0.0.1:55858"),
    );
    assert_eq!(
        json(format, false, &info),
        concat!(
            r#"{"alpha":0,"big":1e+20,"bool":true,"bytes":10,"empty":"","flags":"-","flt":1.5,"#,
            r#""list":[203,"x",3,{"k":"HTTP/1.1"}],"lit":"plain","miss":null,"multi":"203/HTTP/1.1/-","#,
            r#""neg":-0.25,"nested":{"code":203,"inner":{"p":"HTTP/1.1"}},"nul":null,"num":42,"pct":"100%","#,
            r#""port":55858,"start":"2026-11-25T19:32:34.149Z","uhost":null,"zeta":203}"#,
            "\n"
        )
    );
}

#[test]
fn omit_empty_values() {
    let mut info = TestStreamInfo::new();
    info.response_code = Some(203);
    info.set_request_header("x-empty", "");
    // Observed from Envoy 1.40.
    let format = j!({
        "zeta": "%RESPONSE_CODE%", "miss": "%REQ(x-nothere)%", "emptyhdr": "%REQ(x-empty)%",
        "multi": "%RESPONSE_CODE%/%REQ(x-nothere)%/", "allmiss": "%REQ(x-nothere)%%REQ(x-no2)%",
        "n": {"c": "%UPSTREAM_HOST%"}, "l": ["%UPSTREAM_HOST%"], "lit": "", "nul": null
    });
    assert_eq!(
        json(format, true, &info),
        "{\"allmiss\":\"\",\"emptyhdr\":\"\",\"l\":[],\"lit\":\"\",\"multi\":\"203//\",\"zeta\":203}\n"
    );
    let format = j!({
        "n": {"c": "%UPSTREAM_HOST%", "d": "%RESPONSE_CODE%"}, "m": {"c": "%UPSTREAM_HOST%"},
        "e": {}, "l2": [null, "%UPSTREAM_HOST%"]
    });
    assert_eq!(json(format, true, &info), "{\"l2\":[],\"n\":{\"d\":203}}\n");
    let format = j!({"a": {"b": {"c": "%UPSTREAM_HOST%"}}, "l": [{}, {"c": "%UPSTREAM_HOST%"}, [], ["%UPSTREAM_HOST%"]]});
    assert_eq!(json(format, true, &info), "{\"l\":[[],[]]}\n");
    // Everything omitted: still an object.
    assert_eq!(json(j!({"a": "%UPSTREAM_HOST%"}), true, &info), "{}\n");
    // Without omission the same shapes keep their nulls and empties.
    let format = j!({"e": {}, "l": [], "l2": [null, "%UPSTREAM_HOST%"]});
    assert_eq!(
        json(format, false, &info),
        "{\"e\":{},\"l\":[],\"l2\":[null,null]}\n"
    );
    assert_eq!(json(j!({}), false, &info), "{}\n");
}

#[test]
fn numbers_as_envoy_prints_them() {
    let format = j!({"a":0.1,"b":std::f64::consts::PI,"c":1e15,"d":1e16,"e":123456789012u64,"f":1e-7,"g":0.0001,"h":-0.0,"i":100.0,"j":1e21,"k":12345678.9,"m":1.7976931348623157e308,"n":5e-324,"o":2.5e-5,"p":123456.0});
    assert_eq!(
        json(format, false, &TestStreamInfo::new()),
        "{\"a\":0.1,\"b\":3.141592653589793,\"c\":1e+15,\"d\":1e+16,\"e\":123456789012,\"f\":1e-07,\"g\":1e-04,\"h\":-0,\"i\":100,\"j\":1e+21,\"k\":12345678.9,\"m\":1.7976931348623157e+308,\"n\":5e-324,\"o\":2.5e-05,\"p\":123456}\n"
    );
}

#[test]
fn metadata_and_filter_state_typed() {
    // Observed from Envoy 1.40 with the same dynamic metadata and filter state.
    let format = j!({
        "all": "%DYNAMIC_METADATA(dns)%", "s": "%DYNAMIC_METADATA(dns:s)%", "n": "%DYNAMIC_METADATA(dns:n)%",
        "b": "%DYNAMIC_METADATA(dns:b)%", "nul": "%DYNAMIC_METADATA(dns:nul)%", "l": "%DYNAMIC_METADATA(dns:l)%",
        "big": "%DYNAMIC_METADATA(dns:big)%", "t5": "%DYNAMIC_METADATA(dns:o):5%", "t2": "%DYNAMIC_METADATA(dns:s):2%",
        "n2": "%DYNAMIC_METADATA(dns:n):1%", "fs": "%FILTER_STATE(fs.str)%", "fsp": "%FILTER_STATE(fs.str:PLAIN)%",
        "fsp3": "%FILTER_STATE(fs.str:PLAIN):3%", "fst3": "%FILTER_STATE(fs.str:TYPED):3%", "hn": "%UPSTREAM_METADATA(hns:hnum)%"
    });
    assert_eq!(
        json(format, false, &rich()),
        concat!(
            r#"{"all":{"b":false,"big":12345678901234567168,"e":"","f":1.5,"l":["a",2],"n":12,"nul":null,"o":{"l":[1,2],"x":{"y":"deep"}},"s":"str","sp":"a b\"c"},"#,
            r#""b":false,"big":12345678901234567168,"fs":"fsval-/up","fsp":"fsval-/up","fsp3":"fsv","fst3":"fsval-/up","hn":3.5,"l":["a",2],"#,
            r#""n":12,"n2":12,"nul":null,"s":"str","t2":"st","t5":{"l":[1,2],"x":{"y":"deep"}}}"#,
            "\n"
        )
    );
}

#[test]
fn typed_operator_kinds() {
    let mut info = rich();
    info.set_request_header("content-type", "application/grpc");
    let format = j!({
        "code": "%RESPONSE_CODE%", "dur": "%DURATION%", "rport": "%DOWNSTREAM_REMOTE_PORT%",
        "gnum": "%GRPC_STATUS(NUMBER)%", "gcamel": "%GRPC_STATUS%", "cd": "%COMMON_DURATION(DS_RX_BEG:DS_RX_END:us)%",
        "rrc": "%ROUTE_RESOLUTION_COUNT%", "rrt": "%ROUTE_RESOLUTION_TIME_US%", "rtt": "%DOWNSTREAM_CX_RTT%",
        "cf": "%CUSTOM_FLAGS%", "lrb": "%LOCAL_REPLY_BODY%", "alt": "%ACCESS_LOG_TYPE%", "ids": "%UPSTREAM_CONNECTION_IDS_ATTEMPTED%",
        "env": "%ENVIRONMENT(RVOY_SURELY_UNSET_VAR)%", "sts": "%START_TIME(%s)%", "mask": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT(8)%",
        "coal": "%COALESCE({\"operators\":[{\"command\":\"REQ\",\"param\":\"x-nope\"},\"RESPONSE_CODE\"]})%",
        "cm": "%METADATA(CLUSTER:cns:cnum)%", "hdr": "%REQ(user-agent):4%"
    });
    assert_eq!(
        json(format, false, &info),
        concat!(
            r#"{"alt":"NotSet","cd":1500,"cf":"","cm":7,"coal":200,"code":200,"dur":12,"env":"-","gcamel":"Unknown","gnum":2,"#,
            r#""hdr":"curl","ids":"2,3","lrb":"","mask":"10.0.0.0/8","rport":34556,"rrc":1,"rrt":7,"rtt":2,"sts":"1795635154"}"#,
            "\n"
        )
    );
}

#[test]
fn strings_are_sanitized() {
    let mut info = TestStreamInfo::new();
    let value =
        http::HeaderValue::from_bytes(b"a\"b\\\\c\\t\xc3\xa9<>&\xff").expect("header value");
    info.request_headers
        .get_or_insert_with(http::HeaderMap::new)
        .insert("x-esc", value);
    assert_eq!(
        json(
            j!({"esc": "%REQ(x-esc)%", "esc2": "[%REQ(x-esc)%]"}),
            false,
            &info
        ),
        "{\"esc\":\"a\\\"b\\\\\\\\c\\\\t\u{e9}<>&\\u00ff\",\"esc2\":\"[a\\\"b\\\\\\\\c\\\\t\u{e9}<>&\\u00ff]\"}\n"
    );
    // Keys and literal strings too.
    assert_eq!(
        json(j!({"k\"\n": "v\t"}), false, &info),
        "{\"k\\\"\\n\":\"v\\t\"}\n"
    );
}

#[test]
fn json_errors() {
    assert!(Format::json(&j!("x"), false).is_err());
    assert!(Format::json(&j!([1]), false).is_err());
    let e = Format::json(&j!({"a": "%NOPE%"}), false).expect_err("unknown operator");
    assert_eq!(e.to_string(), "Not supported field in StreamInfo: NOPE");
    let e = Format::json(&j!({"a": {"b": ["%REQ%"]}}), false).expect_err("nested error");
    assert_eq!(e.to_string(), "REQ requires parameters");
    // A string without '%' is never parsed.
    assert!(Format::json(&j!({"a": "REQ(x"}), false).is_ok());
}

#[test]
fn json_format_flags() {
    let f = Format::json(&j!({"a": 1}), false).expect("compiles");
    assert!(f.is_json());
    assert_eq!(f.as_literal(), None);
    let mut s = String::from("prefix:");
    f.render_json(&TestStreamInfo::new(), &mut s);
    assert_eq!(s, "prefix:{\"a\":1}\n");
}
