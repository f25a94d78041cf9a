//! An authoritative DNS server on 127.0.0.1 for the DNS cluster tests: it
//! answers `A` queries for the names it is given (any other name is
//! `NXDOMAIN`, an `AAAA` query for a known name has no answer), over UDP and
//! TCP on the same port, and counts the queries it gets on each.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::oneshot;

use crate::error::{Error, IoContext, Result};

/// Queries seen, by transport.
#[derive(Debug, Default)]
struct Counts {
    udp: AtomicUsize,
    tcp: AtomicUsize,
}

/// The DNS server; stops when dropped.
#[derive(Debug)]
pub struct DnsServer {
    addr: SocketAddr,
    counts: Arc<Counts>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DnsServer {
    /// Serves `records` (name → IPv4 address, names without the final dot)
    /// with `ttl` seconds on a free 127.0.0.1 port.
    pub fn start(records: &[(&str, Ipv4Addr)], ttl: u32) -> Result<DnsServer> {
        let zone: HashMap<String, Ipv4Addr> = records
            .iter()
            .map(|(n, ip)| (n.trim_end_matches('.').to_ascii_lowercase(), *ip))
            .collect();
        let (udp, tcp, addr) = bind_pair()?;
        let counts = Arc::new(Counts::default());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ctx("building the DNS server runtime")?;
        let (stop, stopped) = oneshot::channel::<()>();
        let (zone, c) = (Arc::new(zone), counts.clone());
        let thread = std::thread::Builder::new()
            .name("dns-server".into())
            .spawn(move || {
                rt.block_on(async move {
                    let (Ok(udp), Ok(tcp)) = (UdpSocket::from_std(udp), TcpListener::from_std(tcp))
                    else {
                        return;
                    };
                    tokio::select! {
                        () = serve_udp(udp, zone.clone(), ttl, c.clone()) => {}
                        () = serve_tcp(tcp, zone, ttl, c) => {}
                        _ = stopped => {}
                    }
                });
                rt.shutdown_timeout(Duration::from_millis(100));
            })
            .ctx("spawning the DNS server thread")?;
        Ok(DnsServer {
            addr,
            counts,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Queries received over UDP so far.
    pub fn udp_queries(&self) -> usize {
        self.counts.udp.load(Ordering::SeqCst)
    }

    /// Queries received over TCP so far.
    pub fn tcp_queries(&self) -> usize {
        self.counts.tcp.load(Ordering::SeqCst)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A UDP socket and a TCP listener on the same free port.
fn bind_pair() -> Result<(std::net::UdpSocket, std::net::TcpListener, SocketAddr)> {
    let mut last = None;
    for _ in 0..20 {
        let tcp = std::net::TcpListener::bind(("127.0.0.1", 0)).ctx("binding DNS over TCP")?;
        let addr = tcp.local_addr().ctx("DNS listener address")?;
        match std::net::UdpSocket::bind(addr) {
            Ok(udp) => {
                udp.set_nonblocking(true).ctx("non-blocking UDP")?;
                tcp.set_nonblocking(true).ctx("non-blocking TCP")?;
                return Ok((udp, tcp, addr));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(Error::io(
        "binding a DNS server",
        last.unwrap_or_else(|| std::io::Error::other("no port")),
    ))
}

async fn serve_udp(
    socket: UdpSocket,
    zone: Arc<HashMap<String, Ipv4Addr>>,
    ttl: u32,
    counts: Arc<Counts>,
) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            return;
        };
        counts.udp.fetch_add(1, Ordering::SeqCst);
        if let Some(answer) = answer(&buf[..n], &zone, ttl) {
            let _ = socket.send_to(&answer, peer).await;
        }
    }
}

async fn serve_tcp(
    listener: TcpListener,
    zone: Arc<HashMap<String, Ipv4Addr>>,
    ttl: u32,
    counts: Arc<Counts>,
) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            return;
        };
        let (zone, counts) = (zone.clone(), counts.clone());
        tokio::spawn(async move {
            loop {
                let Ok(len) = conn.read_u16().await else {
                    return;
                };
                let mut query = vec![0u8; usize::from(len)];
                if conn.read_exact(&mut query).await.is_err() {
                    return;
                }
                counts.tcp.fetch_add(1, Ordering::SeqCst);
                let Some(answer) = answer(&query, &zone, ttl) else {
                    return;
                };
                let Ok(len) = u16::try_from(answer.len()) else {
                    return;
                };
                if conn.write_u16(len).await.is_err() || conn.write_all(&answer).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// The response to one query message; `None` for a message that is not one.
fn answer(query: &[u8], zone: &HashMap<String, Ipv4Addr>, ttl: u32) -> Option<Vec<u8>> {
    let request = Message::from_vec(query).ok()?;
    if request.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.metadata.authoritative = true;
    let mut code = ResponseCode::NoError;
    for q in &request.queries {
        response.add_query(q.clone());
        let name = q
            .name()
            .to_ascii()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        match zone.get(&name) {
            Some(ip) if q.query_type() == RecordType::A => {
                response.add_answer(Record::from_rdata(q.name().clone(), ttl, RData::A(A(*ip))));
            }
            Some(_) => {}
            None => code = ResponseCode::NXDomain,
        }
    }
    response.metadata.response_code = code;
    response.to_vec().ok()
}
