//! rvoy's dev-only test kit.
//!
//! Everything an integration test needs to drive the real `rvoy` binary (or real Envoy,
//! the oracle) the way an Envoy user would:
//!
//! * [`ports`]: free loopback ports and `{{port:NAME}}` config templates;
//! * [`process`]: start rvoy or Envoy on a rendered config, wait until its listeners are in
//!   LISTEN state, capture stdout/stderr, SIGTERM then SIGKILL on drop; one-shot runs
//!   (`--mode validate`, `--version`) with a bounded wait;
//! * [`echo`]: an echo upstream (HTTP/1.1 keep-alive and chunked, h2c prior knowledge,
//!   websocket and raw `Upgrade`) that records every request and is steered by `x-echo-*`
//!   request headers, and a plain TCP echo;
//! * [`raw`] and [`client`]: a byte-exact HTTP/1 client and a hyper (HTTP/1.1, h2c) client;
//! * [`dns`]: an authoritative DNS server for DNS cluster tests;
//! * [`diff`]: run the same config and requests against Envoy and rvoy and diff what a user
//!   sees.
//!
//! Every wait is bounded; everything listens on and connects to 127.0.0.1 only.

pub mod client;
pub mod diff;
pub mod dns;
pub mod echo;
pub mod error;
pub mod ports;
pub mod process;
pub mod procnet;
pub mod raw;

pub use client::{HyperClient, HyperResponse};
pub use diff::{DiffOutcome, DiffRequest, Differential};
pub use dns::DnsServer;
pub use echo::{EchoServer, RecordedRequest, TcpEcho};
pub use error::{Error, Result};
pub use ports::{Ports, render};
pub use process::{Binary, Proxy, ProxyBuilder, RunOutput, envoy_binary, run_once, rvoy_binary};
pub use raw::{RawConn, RawResponse};

/// The default bound for one request or one wait in this kit.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Re-exported for tests (websocket client).
pub use futures_util;
/// Re-exported for tests (`http::Version`, headers).
pub use http;
/// Re-exported for tests (websocket client).
pub use tokio_tungstenite;
