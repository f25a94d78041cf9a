//! The `envoy.filters.listener.tls_inspector` listener filter at run time:
//! peeks at the first bytes of an accepted connection (`MSG_PEEK`, nothing
//! is consumed) until they show a whole TLS ClientHello or show that the
//! connection is not TLS, and reports the transport protocol, SNI and ALPN
//! for filter chain selection, with Envoy's `tls_inspector.*` stats.

use std::io;
use std::os::fd::AsRawFd;

use nix::sys::socket::{MsgFlags, recv};
use rvoy_model::tls_inspector::TlsInspector;
use rvoy_tls::client_hello::{self, Hello};
use rvoy_upstream::stats_struct;
use tokio::io::Interest;
use tokio::net::TcpStream;

stats_struct!(
    /// `tls_inspector.*` (a process-wide scope in Envoy).
    TlsInspectorStats {
        counters: [
            alpn_found,
            alpn_not_found,
            client_hello_too_large,
            sni_found,
            sni_not_found,
            tls_found,
            tls_not_found,
        ],
        gauges: [],
        histograms: [bytes_processed: Unspecified],
    }
);

/// What the inspector learned.
#[derive(Debug, Default)]
pub struct Inspected {
    /// `tls` or `raw_buffer`.
    pub transport_protocol: &'static str,
    /// Lower-case SNI, empty when absent.
    pub server_name: String,
    pub alpn: Vec<String>,
}

/// Why inspection ended the connection.
#[derive(Debug)]
pub enum InspectError {
    /// The peer closed before the first bytes decided.
    RemoteClose,
    /// The ClientHello is over the limit, or unparseable, and the filter
    /// closes such connections.
    Rejected,
    Io(io::Error),
}

fn peek(tcp: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    recv(
        tcp.as_raw_fd(),
        buf,
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    )
    .map_err(io::Error::from)
}

/// Inspects the start of a connection.
pub async fn inspect(
    tcp: &TcpStream,
    config: &TlsInspector,
    stats: &TlsInspectorStats,
) -> Result<Inspected, InspectError> {
    let max = config.max_client_hello_size as usize;
    // Room for the record headers of a hello split over a few records.
    let cap = max + 64;
    let mut buf = vec![0u8; (config.initial_read_buffer_size as usize).clamp(256, cap)];
    let mut seen = 0usize;
    loop {
        let result = tcp.try_io(Interest::READABLE, || {
            let n = peek(tcp, &mut buf)?;
            if n == seen && n != 0 && n < buf.len() {
                // Nothing new: wait for the next bytes.
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        let n = match result {
            Ok(0) => return Err(InspectError::RemoteClose),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tcp.readable().await.map_err(InspectError::Io)?;
                continue;
            }
            Err(e) => return Err(InspectError::Io(e)),
        };
        seen = n;
        match client_hello::parse(&buf[..n], max) {
            Hello::NeedMore if n == buf.len() && buf.len() < cap => {
                let grown = (buf.len() * 2).min(cap);
                buf.resize(grown, 0);
            }
            Hello::NeedMore if n == buf.len() => {
                stats.client_hello_too_large.inc();
                return Err(InspectError::Rejected);
            }
            Hello::NeedMore => {}
            Hello::TooLarge => {
                stats.client_hello_too_large.inc();
                stats.bytes_processed.record(n as u64);
                return Err(InspectError::Rejected);
            }
            Hello::NotTls => {
                stats.tls_not_found.inc();
                stats.bytes_processed.record(n as u64);
                if config.close_on_parse_errors {
                    return Err(InspectError::Rejected);
                }
                return Ok(Inspected {
                    transport_protocol: "raw_buffer",
                    ..Inspected::default()
                });
            }
            Hello::Tls { sni, alpn, bytes } => {
                stats.tls_found.inc();
                stats.bytes_processed.record(bytes as u64);
                if sni.is_some() {
                    stats.sni_found.inc();
                } else {
                    stats.sni_not_found.inc();
                }
                if alpn.is_empty() {
                    stats.alpn_not_found.inc();
                } else {
                    stats.alpn_found.inc();
                }
                return Ok(Inspected {
                    transport_protocol: "tls",
                    server_name: sni.unwrap_or_default(),
                    alpn,
                });
            }
        }
    }
}
