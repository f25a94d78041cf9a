//! The kit checks itself without a proxy: echo upstream over HTTP/1.1 (keep-alive,
//! chunked, controls), h2c, websocket and raw upgrades, the TCP echo, and the clients.

use std::io::{Read, Write};
use std::time::Duration;

use rvoy_testkit::echo::{pattern_bytes, sha256_hex};
use rvoy_testkit::futures_util::{SinkExt, StreamExt};
use rvoy_testkit::raw::{RawConn, Request};
use rvoy_testkit::tokio_tungstenite::tungstenite::Message;
use rvoy_testkit::{EchoServer, HyperClient, TcpEcho};

const T: Duration = Duration::from_secs(10);

#[test]
fn echo_records_and_answers_http1() {
    let echo = EchoServer::start("up").expect("echo");
    let mut c = RawConn::connect(echo.addr()).expect("connect");
    let r = c
        .request(
            &Request::new("POST", "/a?b=c")
                .header("Host", "h.example")
                .header("X-Mixed", "V")
                .body(b"hello"),
        )
        .expect("response");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-echo-server"), Some("up"));
    let e = r.echo().expect("json");
    assert_eq!((e.method.as_str(), e.path.as_str()), ("POST", "/a?b=c"));
    assert_eq!(e.headers[0], ("Host".to_owned(), "h.example".to_owned()));
    assert_eq!(e.headers[1], ("X-Mixed".to_owned(), "V".to_owned()));
    assert_eq!(
        (e.body_len, e.body_sha256.clone()),
        (5, sha256_hex(b"hello"))
    );
    assert_eq!(echo.last_request(T).expect("log"), e);

    // keep-alive, chunked both ways, controls
    let r = c
        .request(
            &Request::new("PUT", "/c")
                .header("host", "h")
                .header("x-echo-chunked", "1")
                .header("x-echo-status", "201")
                .header("x-echo-set-header", "a=1&b=2")
                .chunked(&[b"ab", b"cd"]),
        )
        .expect("response");
    assert_eq!(r.status, 201);
    assert!(r.chunked);
    assert_eq!((r.header("a"), r.header("b")), (Some("1"), Some("2")));
    let e = r.echo().expect("json");
    assert!(e.chunked);
    assert_eq!(e.body_len, 4);
    assert_eq!(echo.connections(), 1);

    let r = c
        .request(&Request::get("/", "h").header("x-echo-response-size", "100000"))
        .expect("big");
    assert_eq!(r.body, pattern_bytes(100_000));

    // fail-times by key
    for expected in [503, 503, 200] {
        let r = c
            .request(
                &Request::get("/f", "h")
                    .header("x-echo-fail-times", "2")
                    .header("x-echo-key", "k"),
            )
            .expect("resp");
        assert_eq!(r.status, expected);
    }

    // HEAD has no body; close-delimited body; close
    let r = c
        .request(&Request::new("HEAD", "/").header("host", "h"))
        .expect("head");
    assert!(r.body.is_empty() && r.header("content-length").is_some());
    let r = c
        .request(
            &Request::get("/", "h")
                .header("x-echo-no-content-length", "1")
                .header("x-echo-body", "bye"),
        )
        .expect("until close");
    assert!(r.until_close);
    assert_eq!(r.body_str(), "bye");
    assert!(c.is_closed(T));
}

#[test]
fn echo_expect_continue_reset_and_delay() {
    let echo = EchoServer::start("up").expect("echo");
    let mut c = RawConn::connect(echo.addr()).expect("connect");
    c.send(b"POST / HTTP/1.1\r\nhost: h\r\ncontent-length: 2\r\nexpect: 100-continue\r\n\r\n")
        .expect("send");
    assert_eq!(c.read_response().expect("100").status, 100);
    c.send(b"ok").expect("body");
    assert_eq!(
        c.read_response()
            .expect("200")
            .echo()
            .expect("json")
            .body_len,
        2
    );

    let started = std::time::Instant::now();
    let r = c
        .request(&Request::get("/", "h").header("x-echo-delay-ms", "200"))
        .expect("delayed");
    assert_eq!(r.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(200));

    c.send(
        &Request::get("/", "h")
            .header("x-echo-reset", "1")
            .to_bytes(),
    )
    .expect("send");
    assert!(c.read_response().is_err());
}

#[test]
fn raw_upgrade_echoes_bytes_and_tcp_echo() {
    let echo = EchoServer::start("up").expect("echo");
    let mut c = RawConn::connect(echo.addr()).expect("connect");
    let r = c
        .request(
            &Request::get("/", "h")
                .header("connection", "upgrade")
                .header("upgrade", "custom"),
        )
        .expect("101");
    assert_eq!(r.status, 101);
    c.send(b"ping").expect("send");
    std::thread::sleep(Duration::from_millis(100));
    assert!(!c.is_closed(Duration::from_millis(100)));
    assert_eq!(c.pending(), b"ping");

    let tcp = TcpEcho::start().expect("tcp echo");
    let mut s = std::net::TcpStream::connect(tcp.addr()).expect("connect");
    s.set_read_timeout(Some(T)).expect("timeout");
    s.write_all(b"abc").expect("write");
    let mut buf = [0u8; 3];
    s.read_exact(&mut buf).expect("read");
    assert_eq!(&buf, b"abc");
    assert_eq!(tcp.connections(), 1);
}

#[tokio::test]
async fn hyper_clients_and_websocket_against_echo() {
    let echo = EchoServer::start("up").expect("echo");
    let mut h2 = HyperClient::h2c(echo.addr()).await.expect("h2c");
    let r = h2.get("/x", "auth.example").await.expect("h2 response");
    assert_eq!(r.status, 200);
    let e = r.echo().expect("json");
    assert_eq!(e.protocol, "HTTP/2");
    assert_eq!(e.authority(), Some("auth.example"));

    let mut h1 = HyperClient::http1(echo.addr()).await.expect("h1");
    let r = h1.get("/y", "h").await.expect("h1 response");
    assert_eq!(r.echo().expect("json").protocol, "HTTP/1.1");

    let url = format!("ws://{}/ws", echo.addr());
    let (mut ws, _) = rvoy_testkit::tokio_tungstenite::connect_async(url)
        .await
        .expect("ws handshake");
    ws.send(Message::text("hi")).await.expect("send");
    let got = tokio::time::timeout(T, ws.next())
        .await
        .expect("in time")
        .expect("msg")
        .expect("ok");
    assert_eq!(got, Message::text("hi"));
}
