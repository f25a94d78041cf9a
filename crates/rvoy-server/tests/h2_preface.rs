//! The downstream HTTP/2 server preface, differentially: a raw h2c client sends the
//! client preface, an empty SETTINGS and a PING, and once that PING is acknowledged a
//! second PING as a barrier; it records the frames the server sent up to the second
//! acknowledgement (kinds in order), its SETTINGS values (in order) and its connection
//! WINDOW_UPDATE. rvoy must send what Envoy sends for the default
//! `http2_protocol_options` and for explicit values: `SETTINGS_ENABLE_CONNECT_PROTOCOL`
//! always, no `SETTINGS_MAX_HEADER_LIST_SIZE`, and a connection WINDOW_UPDATE raising
//! the window to `initial_connection_window_size`.
//!
//! Everything listens on and connects to 127.0.0.1; every read is bounded.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{ADMIN, H2Frames, T, hcm, targets, vhost};
use rvoy_testkit::{Binary, Ports, ProxyBuilder};

/// What the server sent before acknowledging the client's PING.
#[derive(Debug, Default, PartialEq, Eq)]
struct Preface {
    /// `(identifier, value)` of the server's SETTINGS frame, in order.
    settings: Vec<(u16, u32)>,
    /// Increments of connection-level WINDOW_UPDATE frames.
    window_updates: Vec<u32>,
    /// `(type, flags)` of every frame, in order.
    frames: Vec<(u8, u8)>,
}

fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("small frame");
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[kind, flags, 0, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

/// Reads the server preface of an h2c connection to `addr`.
fn preface(addr: SocketAddr) -> Preface {
    let mut s = TcpStream::connect_timeout(&addr, T).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(frame(0x4, 0, &[]));
    hello.extend(frame(0x6, 0, b"first..."));
    s.write_all(&hello).expect("client preface");
    let mut seen = Preface::default();
    let mut reader = H2Frames::default();
    let deadline = Instant::now() + T;
    while Instant::now() < deadline {
        let Some(frames) = reader.read(&mut s) else {
            panic!("closed before the PING ACK: {seen:?}");
        };
        for f in frames {
            seen.frames.push((f.kind, f.flags));
            let p = &f.payload;
            match f.kind {
                0x4 if f.flags & 1 == 0 => {
                    seen.settings = p
                        .chunks_exact(6)
                        .map(|e| {
                            (
                                u16::from_be_bytes([e[0], e[1]]),
                                u32::from_be_bytes([e[2], e[3], e[4], e[5]]),
                            )
                        })
                        .collect();
                }
                0x8 if f.stream == 0 && p.len() == 4 => {
                    seen.window_updates
                        .push(u32::from_be_bytes([p[0], p[1], p[2], p[3]]));
                }
                0x6 if f.flags & 1 == 1 && p == b"first..." => {
                    s.write_all(&frame(0x6, 0, b"barrier!")).expect("PING");
                }
                0x6 if f.flags & 1 == 1 => return seen,
                _ => {}
            }
        }
    }
    panic!("no PING ACK in time: {seen:?}");
}

/// The server preface `binary` sends with these HCM fields.
fn preface_of(binary: &Binary, hcm_extra: &str) -> Preface {
    let routes = r#"- match: {prefix: "/"}
  direct_response: {status: 200}"#;
    let extra = format!("codec_type: AUTO\n{hcm_extra}");
    let config = format!("{ADMIN}{}", hcm(&vhost("v", "[\"*\"]", routes), &extra, ""));
    let proxy = ProxyBuilder::new(binary.clone())
        .config(&config)
        .ports(&Ports::new())
        .start()
        .expect("proxy starts and listens");
    preface(proxy.addr("listener"))
}

const HEADER_TABLE_SIZE: u16 = 0x1;
const MAX_CONCURRENT_STREAMS: u16 = 0x3;
const INITIAL_WINDOW_SIZE: u16 = 0x4;
const ENABLE_CONNECT_PROTOCOL: u16 = 0x8;

/// Envoy's frames: SETTINGS, its ACK, the first PING's ACK, then the connection
/// WINDOW_UPDATE when there is one, and the barrier's ACK.
fn frames(window_update: bool) -> Vec<(u8, u8)> {
    let mut f = vec![(0x4, 0), (0x4, 1), (0x6, 1)];
    if window_update {
        f.push((0x8, 0));
    }
    f.push((0x6, 1));
    f
}

/// Runs `hcm_extra` on every target: each must send `expected`.
fn check(hcm_extra: &str, expected: &Preface) {
    for b in targets() {
        assert_eq!(
            &preface_of(&b, hcm_extra),
            expected,
            "{} with {hcm_extra:?}",
            b.name()
        );
    }
}

/// What Envoy sends with the default `http2_protocol_options`.
fn default_preface() -> Preface {
    Preface {
        settings: vec![
            (HEADER_TABLE_SIZE, 4096),
            (ENABLE_CONNECT_PROTOCOL, 0),
            (MAX_CONCURRENT_STREAMS, 1024),
            (INITIAL_WINDOW_SIZE, 16 << 20),
        ],
        // Envoy's default connection window is 24 MiB.
        window_updates: vec![(24 << 20) - 65535],
        frames: frames(true),
    }
}

#[test]
fn default_options_send_envoys_settings_and_window_update() {
    check("", &default_preface());
}

#[test]
fn explicit_options_send_envoys_settings_and_window_update() {
    check(
        "http2_protocol_options: {hpack_table_size: 8192, max_concurrent_streams: 50, \
         initial_stream_window_size: 65535, initial_connection_window_size: 1048576, \
         allow_connect: true}",
        &Preface {
            settings: vec![
                (HEADER_TABLE_SIZE, 8192),
                (ENABLE_CONNECT_PROTOCOL, 1),
                (MAX_CONCURRENT_STREAMS, 50),
                (INITIAL_WINDOW_SIZE, 65535),
            ],
            window_updates: vec![1048576 - 65535],
            frames: frames(true),
        },
    );
    // The default connection window of the protocol: no WINDOW_UPDATE.
    check(
        "http2_protocol_options: {max_concurrent_streams: 100, \
         initial_stream_window_size: 1048576, initial_connection_window_size: 65535}",
        &Preface {
            settings: vec![
                (HEADER_TABLE_SIZE, 4096),
                (ENABLE_CONNECT_PROTOCOL, 0),
                (MAX_CONCURRENT_STREAMS, 100),
                (INITIAL_WINDOW_SIZE, 1048576),
            ],
            window_updates: vec![],
            frames: frames(false),
        },
    );
}

#[test]
fn header_limits_are_not_advertised() {
    check(
        "max_request_headers_kb: 96\ncommon_http_protocol_options: {max_headers_count: 200}",
        &default_preface(),
    );
}
