//! Listener sockets and worker threads.
//!
//! Each listener is bound once on the main thread (to fail early on a busy port
//! and to learn the port when it is 0); with `enable_reuse_port` (the default)
//! every other worker then binds its own `SO_REUSEPORT` socket on that
//! address, so the kernel spreads connections and no lock is shared. Each
//! worker is an OS thread running a single-threaded tokio runtime; a
//! connection lives on one worker from accept to close.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rvoy_http::io::Stream;
use rvoy_http::{ConnInfo, TransportFailure, WorkerContext};
use rvoy_model::address::{Address, SocketOptionValue, SocketState};
use rvoy_model::listener::Listener;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::sync::watch;
use tokio_util::task::AbortOnDropHandle;

use crate::snapshot::{ListenerRuntime, Snapshot};
use crate::tls_inspector::{InspectError, Inspected};
use rvoy_model::filter_chain_index::ConnectionFacts;

/// A bound listening socket, ready to hand to a worker.
#[derive(Debug)]
pub enum BoundSocket {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

impl BoundSocket {
    fn try_clone(&self) -> std::io::Result<BoundSocket> {
        Ok(match self {
            BoundSocket::Tcp(l) => BoundSocket::Tcp(l.try_clone()?),
            BoundSocket::Unix(l) => BoundSocket::Unix(l.try_clone()?),
        })
    }
}

/// Failure to bind a listener, with Envoy's wording.
#[derive(Debug, thiserror::Error)]
#[error("error adding listener '{address}': cannot bind '{address}': {reason}")]
pub struct BindError {
    pub address: String,
    pub reason: String,
}

fn apply_options(socket: &Socket, l: &Listener, state: SocketState) -> std::io::Result<()> {
    for o in l.socket_options.iter().filter(|o| o.state == state) {
        match &o.value {
            SocketOptionValue::Int(v) => {
                crate::sockopt::set_raw(socket, o.level, o.name, &v.to_ne_bytes())?
            }
            SocketOptionValue::Bytes(b) => crate::sockopt::set_raw(socket, o.level, o.name, b)?,
        }
    }
    Ok(())
}

/// Binds one socket for `l`; `addr` overrides the configured address (port 0 resolved).
fn bind_tcp(
    l: &Listener,
    addr: SocketAddr,
    reuse_port: bool,
) -> Result<std::net::TcpListener, BindError> {
    let err = |e: std::io::Error| BindError {
        address: l.address.envoy_string(),
        reason: e.to_string(),
    };
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    socket.set_reuse_address(true).map_err(err)?;
    if reuse_port {
        socket.set_reuse_port(true).map_err(err)?;
    }
    if let Address::Ip { ipv4_compat, .. } = &l.address
        && addr.is_ipv6()
    {
        socket.set_only_v6(!ipv4_compat).map_err(err)?;
    }
    if l.freebind {
        if addr.is_ipv4() {
            socket.set_freebind_v4(true).map_err(err)?;
        } else {
            socket.set_freebind_v6(true).map_err(err)?;
        }
    }
    if l.transparent {
        socket.set_ip_transparent_v4(true).map_err(err)?;
    }
    apply_options(&socket, l, SocketState::Prebind).map_err(err)?;
    socket.bind(&SockAddr::from(addr)).map_err(err)?;
    apply_options(&socket, l, SocketState::Bound).map_err(err)?;
    let backlog = l.tcp_backlog_size.map_or(libc_somaxconn(), |b| b as i32);
    socket.listen(backlog).map_err(err)?;
    apply_options(&socket, l, SocketState::Listening).map_err(err)?;
    // Accepted sockets inherit TCP_NODELAY from the listening socket on
    // Linux: set once here, it saves a setsockopt() per connection (Envoy
    // sets it on every accepted connection, whatever the listener's options).
    let _ = socket.set_tcp_nodelay(true);
    if let Some(q) = l.tcp_fast_open_queue_length {
        let _ = crate::sockopt::set_raw(
            &socket,
            libc::IPPROTO_TCP,
            libc::TCP_FASTOPEN,
            &(q as i32).to_ne_bytes(),
        );
    }
    socket.set_nonblocking(true).map_err(err)?;
    Ok(socket.into())
}

fn libc_somaxconn() -> i32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4096)
}

/// The sockets of one listener for every worker.
#[derive(Debug)]
pub struct ListenerSockets {
    pub name: String,
    /// The address actually bound (port 0 resolved).
    pub bound: Option<SocketAddr>,
    pub per_worker: Vec<BoundSocket>,
}

/// Binds every listener that binds to a port, for `workers` workers.
pub fn bind_all(snapshot: &Snapshot, workers: usize) -> Result<Vec<ListenerSockets>, BindError> {
    let mut out = Vec::with_capacity(snapshot.listeners.len());
    for lr in &snapshot.listeners {
        let l = &lr.config;
        if !l.bind_to_port {
            out.push(ListenerSockets {
                name: l.name.clone(),
                bound: None,
                per_worker: Vec::new(),
            });
            continue;
        }
        match &l.address {
            Address::Ip { addr, .. } => {
                let first = bind_tcp(l, *addr, l.reuse_port)?;
                let bound = first.local_addr().map_err(|e| BindError {
                    address: l.address.envoy_string(),
                    reason: e.to_string(),
                })?;
                let mut per_worker = vec![BoundSocket::Tcp(first)];
                for _ in 1..workers {
                    let s = if l.reuse_port {
                        BoundSocket::Tcp(bind_tcp(l, bound, true)?)
                    } else {
                        per_worker[0].try_clone().map_err(|e| BindError {
                            address: l.address.envoy_string(),
                            reason: e.to_string(),
                        })?
                    };
                    per_worker.push(s);
                }
                out.push(ListenerSockets {
                    name: l.name.clone(),
                    bound: Some(bound),
                    per_worker,
                });
            }
            Address::Pipe { path, mode } => {
                let err = |e: std::io::Error| BindError {
                    address: l.address.envoy_string(),
                    reason: e.to_string(),
                };
                let path_str = path.to_string_lossy();
                let listener = if let Some(abstract_name) = path_str.strip_prefix('@') {
                    let addr = <std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(abstract_name.as_bytes())
                        .map_err(err)?;
                    std::os::unix::net::UnixListener::bind_addr(&addr).map_err(err)?
                } else {
                    let _ = std::fs::remove_file(path);
                    let listener = std::os::unix::net::UnixListener::bind(path).map_err(err)?;
                    if *mode != 0 {
                        std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode))
                            .map_err(err)?;
                    }
                    listener
                };
                listener.set_nonblocking(true).map_err(err)?;
                let first = BoundSocket::Unix(listener);
                let mut per_worker = Vec::with_capacity(workers);
                for _ in 1..workers {
                    per_worker.push(first.try_clone().map_err(err)?);
                }
                per_worker.insert(0, first);
                out.push(ListenerSockets {
                    name: l.name.clone(),
                    bound: None,
                    per_worker,
                });
            }
        }
    }
    Ok(out)
}

/// Signals workers send and receive.
#[derive(Clone, Debug)]
pub struct WorkerControl {
    /// Becomes true when listeners must stop accepting.
    pub stop_accepting: watch::Receiver<bool>,
    /// Becomes true when connections must be closed now.
    pub terminate: watch::Receiver<bool>,
}

/// Starts `count` workers serving `snapshot`'s listeners on `sockets`.
pub fn start(
    count: usize,
    snapshot: Arc<ArcSwap<Snapshot>>,
    mut sockets: Vec<ListenerSockets>,
    control: WorkerControl,
    store: rvoy_stats::Store,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    let mut handles = Vec::with_capacity(count);
    for id in (0..count).rev() {
        let mine: Vec<(usize, Option<BoundSocket>)> = sockets
            .iter_mut()
            .enumerate()
            .map(|(i, s)| {
                (
                    i,
                    if s.per_worker.is_empty() {
                        None
                    } else {
                        Some(s.per_worker.remove(id.min(s.per_worker.len() - 1)))
                    },
                )
            })
            .collect();
        let snap = snapshot.clone();
        let ctl = control.clone();
        let store = store.clone();
        let handle = std::thread::Builder::new()
            .name(format!("wrk:worker_{id}"))
            .spawn(move || {
                let _stats = store.register_thread();
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        rvoy_log::critical!(
                            rvoy_log::Component::Main,
                            "worker {} could not start: {}",
                            id,
                            e
                        );
                        return;
                    }
                };
                let local = tokio::task::LocalSet::new();
                // Dropped (with every task holding it) before `_stats`.
                let recorder = store.recorder();
                local.block_on(&rt, run_worker(id, snap, mine, ctl, recorder));
            })?;
        handles.push(handle);
    }
    handles.reverse();
    Ok(handles)
}

async fn run_worker(
    id: usize,
    snapshot: Arc<ArcSwap<Snapshot>>,
    sockets: Vec<(usize, Option<BoundSocket>)>,
    control: WorkerControl,
    stats: rvoy_stats::Recorder,
) {
    let mut worker = WorkerContext::new(id);
    worker.stats = stats;
    let worker = Rc::new(worker);
    let mut accept_tasks = Vec::new();
    for (index, socket) in sockets {
        let Some(socket) = socket else { continue };
        let snap = snapshot.clone();
        let worker = worker.clone();
        let ctl = control.clone();
        accept_tasks.push(tokio::task::spawn_local(async move {
            accept_loop(id, index, socket, snap, worker, ctl).await;
        }));
    }
    // Reclaim idle upstream connections periodically.
    let reclaim_worker = worker.clone();
    tokio::task::spawn_local(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            reclaim_worker.reclaim_idle();
        }
    });
    // Waits in a task of its own (see `spawn_wait`): this future is polled
    // whenever any of the worker's tasks is woken.
    let mut terminate = control.terminate.clone();
    let _ = spawn_wait(async move {
        while !*terminate.borrow() {
            if terminate.changed().await.is_err() {
                break;
            }
        }
    })
    .await;
}

/// Runs `wait` as a task of its own and returns its handle, for a loop that
/// awaits it next to work that wakes the loop far more often.
///
/// Polling a `watch::Receiver::changed()` future takes the channel's lock
/// (tokio's `Notify` compares the waiter's waker under it) every time the
/// task that awaits it is polled: the accept loop's task is polled for every
/// accepted connection, and the worker's main future whenever any of the
/// worker's tasks is woken (`LocalSet::run_until`). That was ~560
/// instructions per new connection. Run as a task, the receivers are polled
/// when they change; polling the handle reads the task's state.
///
/// Dropping the handle aborts the task. Needs the worker's `LocalSet`.
fn spawn_wait(wait: impl Future<Output = ()> + 'static) -> AbortOnDropHandle<()> {
    AbortOnDropHandle::new(tokio::task::spawn_local(wait))
}

/// Drops the readiness tokio assumes for a socket it just accepted (it
/// marks it readable, so that the first read tries the socket at once).
/// A client's request usually arrives after the handshake that woke the
/// listener: that read finds nothing, a `recvfrom` spent on every
/// connection. Without the assumption the connection reads once the
/// reactor reports data, as Envoy and nginx do; data that came with the
/// connection is reported by the reactor's first event for the socket.
///
/// Sound because it runs right after the accept, in the same poll of this
/// single-threaded worker: the reactor has not run since it registered the
/// socket, so the readiness cleared is only the assumed one.
fn forget_assumed_readiness(stream: &tokio::net::TcpStream) {
    let _ = stream.try_io(tokio::io::Interest::READABLE, || {
        Err::<(), _>(std::io::ErrorKind::WouldBlock.into())
    });
}

async fn accept_loop(
    worker_id: usize,
    index: usize,
    socket: BoundSocket,
    snapshot: Arc<ArcSwap<Snapshot>>,
    worker: Rc<WorkerContext>,
    control: WorkerControl,
) {
    enum L {
        Tcp(tokio::net::TcpListener),
        Unix(tokio::net::UnixListener),
    }
    let listener = match socket {
        BoundSocket::Tcp(s) => tokio::net::TcpListener::from_std(s).map(L::Tcp),
        BoundSocket::Unix(s) => tokio::net::UnixListener::from_std(s).map(L::Unix),
    };
    let listener = match listener {
        Ok(l) => l,
        Err(e) => {
            rvoy_log::error!(
                rvoy_log::Component::Main,
                "worker {}: listener {}: {}",
                worker_id,
                index,
                e
            );
            return;
        }
    };
    let mut stop = control.stop_accepting.clone();
    // Holding the listener keeps its stop sender alive while this loop runs.
    let held = snapshot.load().listeners.get(index).cloned();
    let (_no_stop, no_stop_rx) = tokio::sync::watch::channel(false);
    let mut listener_stop = held.as_ref().map_or(no_stop_rx, |l| l.stop.subscribe());
    // A socket bound to one address (not a wildcard, not transparent) accepts
    // connections to that address only: their local address is known without
    // a getsockname() per connection.
    let fixed_local = match &listener {
        L::Tcp(l) => l.local_addr().ok().filter(|a| {
            !a.ip().is_unspecified() && !held.as_ref().is_some_and(|h| h.config.transparent)
        }),
        L::Unix(_) => None,
    };
    // Whether accepted connections come with TCP_NODELAY (inherited from a
    // listening socket that has it, see `bind_tcp`).
    let nodelay_inherited = match &listener {
        L::Tcp(l) => socket2::SockRef::from(l).tcp_nodelay().unwrap_or(false),
        L::Unix(_) => false,
    };
    // Resolves when this loop must stop accepting (the worker stops, or the
    // listener is stopped). Waits in a task of its own (see `spawn_wait`),
    // so that an accept does not poll the two signals.
    let mut stopping = spawn_wait(async move {
        // A listener whose stop signal is gone cannot be stopped by it.
        let mut listener_stoppable = true;
        loop {
            if *stop.borrow_and_update() || *listener_stop.borrow_and_update() {
                return;
            }
            tokio::select! {
                biased;
                r = stop.changed() => if r.is_err() { return },
                r = listener_stop.changed(), if listener_stoppable => {
                    listener_stoppable = r.is_ok();
                }
            }
        }
    });
    loop {
        let accepted = tokio::select! {
            biased;
            _ = &mut stopping => break,
            r = async {
                match &listener {
                    L::Tcp(l) => l.accept().await.map(|(s, peer)| {
                        forget_assumed_readiness(&s);
                        let local = fixed_local.or_else(|| s.local_addr().ok());
                        if !nodelay_inherited {
                            let _ = s.set_nodelay(true);
                        }
                        (Stream::Tcp(s), Some(peer), local)
                    }),
                    L::Unix(l) => l.accept().await.map(|(s, _)| (Stream::Unix(s), None, None)),
                }
            } => r,
        };
        let (stream, remote, local) = match accepted {
            Ok(a) => a,
            Err(e) => {
                rvoy_log::debug!(rvoy_log::Component::Connection, "accept error: {}", e);
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let snap = snapshot.load_full();
        let Some(lr) = snap.listeners.get(index).cloned() else {
            continue;
        };
        // The connection's future is built in its own box, in place: tokio
        // moves a task's future several times while spawning it (~1.5 KiB
        // copied each time), a box only once. Clocked: the connection reads
        // the clock at most once per poll (rvoy_http::clock).
        tokio::task::spawn_local(rvoy_http::clock::Clocked(Box::into_pin(Box::write(
            Box::new_uninit(),
            serve_connection(worker_id, lr, snap, stream, remote, local, worker.clone()),
        ))));
    }
}

#[allow(clippy::manual_async_fn)] // an `async move` block on purpose, see the body
fn serve_connection(
    worker_id: usize,
    lr: Arc<ListenerRuntime>,
    _snapshot: Arc<Snapshot>,
    stream: Stream,
    remote: Option<SocketAddr>,
    local: Option<SocketAddr>,
    worker: Rc<WorkerContext>,
) -> impl Future<Output = ()> {
    // An `async move` block, not an `async fn`: the latter keeps a second
    // copy of its arguments in the future (rust-lang/rust#62958), and this
    // future is what every idle connection holds.
    async move {
        let stats = &lr.stats;
        let rec = &worker.stats;
        rec.record(stats.connections_accepted_per_socket_event, 1);
        rec.inc(stats.downstream_cx_total);
        rec.gauge_inc(stats.downstream_cx_active);
        if let Some(w) = lr.worker_stats.get(worker_id) {
            rec.inc(w.downstream_cx_total);
            rec.gauge_inc(w.downstream_cx_active);
        }
        let started = rvoy_http::clock::now();
        if let (Some(ka), Stream::Tcp(s)) = (lr.config.tcp_keepalive, &stream) {
            let _ = rvoy_http::io::set_tcp_keepalive(s, ka);
        }
        let conn_id = rvoy_http::context::next_connection_id();
        // The connection's record for the listener's access logs and the TCP
        // proxy: only built when one of them will read it (an HTTP connection
        // on a listener without access logs needs none), and boxed, so that
        // an idle connection's task stays small.
        let mut info: Option<Box<crate::tcp_proxy::ConnectionInfo>> = None;
        // Scoped: what the accept and the listener filters found is only
        // needed to pick the chain, not by the idle connection's future.
        let chain = {
            let start_time = rvoy_http::clock::system_now();
            let accepted = (conn_id, remote, local, started, start_time);
            match listener_filters(&lr, &stream).await {
                Some(inspected) => {
                    let facts = ConnectionFacts {
                        local,
                        remote,
                        direct_remote: remote,
                        server_name: &inspected.server_name,
                        transport_protocol: inspected.transport_protocol,
                        application_protocols: &inspected.alpn,
                    };
                    let chain = crate::snapshot::select_chain(&lr, &facts);
                    if chain.is_none() {
                        stats.no_filter_chain_match.inc();
                    }
                    if !lr.access_logs.is_empty() || chain.is_some_and(|c| c.tcp.is_some()) {
                        let mut record = connection_record(&lr, accepted);
                        if !inspected.server_name.is_empty() {
                            record.requested_server_name = Some(inspected.server_name.clone());
                        }
                        match chain {
                            Some(c) => record.filter_chain_name = Some(c.name.clone()),
                            None => {
                                record
                                    .response_flags
                                    .set(rvoy_format::ResponseFlag::NoRouteFound);
                                record.response_code_details = Some("filter_chain_not_found");
                            }
                        }
                        info = Some(record);
                    }
                    chain
                }
                None => {
                    if !lr.access_logs.is_empty() {
                        info = Some(connection_record(&lr, accepted));
                    }
                    None
                }
            }
        };
        match chain {
            None => drop(stream),
            Some(chain) => {
                let conn = ConnInfo {
                    id: conn_id,
                    remote,
                    local,
                    tls: chain.tls.is_some(),
                    accepted: started,
                };
                rvoy_log::conn_log!(
                    rvoy_log::Component::ConnHandler,
                    rvoy_log::Level::Debug,
                    conn.id,
                    "new connection from {}",
                    remote.map(|r| r.to_string()).unwrap_or_default()
                );
                if let Some(http) = &chain.http {
                    // The connection manager bounds the handshake too (its
                    // idle timer runs from the accept).
                    let transport = if chain.tls.is_some() {
                        rvoy_http::Transport::Handshake(Box::pin(transport(
                            chain,
                            stream,
                            stats,
                            info.as_deref_mut(),
                        )))
                    } else {
                        rvoy_http::Transport::Ready(stream)
                    };
                    rvoy_http::serve_connection(transport, http.clone(), worker.clone(), conn)
                        .await;
                } else if let (Some(tcp), Some(record)) = (&chain.tcp, info.as_deref_mut())
                    && let Ok(stream) = transport(chain, stream, stats, Some(&mut *record)).await
                {
                    Box::pin(crate::tcp_proxy::serve(stream, tcp, &worker, record)).await;
                }
            }
        }
        if let Some(record) = info.as_deref_mut() {
            record.end = Some(rvoy_http::clock::now());
            rvoy_http::access_log::emit_info(&lr.access_logs, &*record);
        }
        let rec = &worker.stats;
        rec.gauge_dec(stats.downstream_cx_active);
        rec.inc(stats.downstream_cx_destroy);
        if let Some(w) = lr.worker_stats.get(worker_id) {
            rec.gauge_dec(w.downstream_cx_active);
        }
        rec.record(
            stats.downstream_cx_length_ms,
            rvoy_http::clock::elapsed(started).as_millis() as u64,
        );
    }
}

/// An accepted connection: its id, peer and local addresses, and when.
type Accepted = (
    u64,
    Option<SocketAddr>,
    Option<SocketAddr>,
    Instant,
    std::time::SystemTime,
);

/// A connection's record for the listener's access logs and the TCP proxy,
/// from its accept.
fn connection_record(
    lr: &ListenerRuntime,
    (id, remote, local, start, start_time): Accepted,
) -> Box<crate::tcp_proxy::ConnectionInfo> {
    let mut record = Box::new(crate::tcp_proxy::ConnectionInfo::new(id, remote, local));
    record.start = start;
    record.start_time = start_time;
    record.listener_name = Some(lr.config.name.clone());
    record
}

/// Runs the listener filters (the TLS inspector) within
/// `listener_filters_timeout`; `None` when the connection must close.
async fn listener_filters(lr: &ListenerRuntime, stream: &Stream) -> Option<Inspected> {
    let raw = Inspected {
        transport_protocol: "raw_buffer",
        ..Inspected::default()
    };
    let (Some((config, inspector_stats)), Stream::Tcp(tcp)) = (&lr.tls_inspector, stream) else {
        return Some(raw);
    };
    let stats = &lr.stats;
    stats.downstream_pre_cx_active.inc();
    let fut = Box::pin(crate::tls_inspector::inspect(tcp, config, inspector_stats));
    let result = match lr.config.listener_filters_timeout {
        Some(t) => tokio::time::timeout(t, fut).await,
        None => Ok(fut.await),
    };
    stats.downstream_pre_cx_active.dec();
    match result {
        Ok(Ok(inspected)) => Some(inspected),
        Ok(Err(InspectError::RemoteClose)) => {
            stats.downstream_listener_filter_remote_close.inc();
            None
        }
        Ok(Err(InspectError::Rejected)) => {
            stats.downstream_listener_filter_error.inc();
            None
        }
        Ok(Err(InspectError::Io(_))) => None,
        Err(_) => {
            stats.downstream_pre_cx_timeout.inc();
            lr.config
                .continue_on_listener_filters_timeout
                .then_some(raw)
        }
    }
}

/// The chain's transport socket: the TLS handshake (within the chain's
/// `transport_socket_connect_timeout`), or the plain stream.
async fn transport(
    chain: &crate::snapshot::ChainRuntime,
    stream: Stream,
    stats: &crate::snapshot::ListenerStats,
    info: Option<&mut crate::tcp_proxy::ConnectionInfo>,
) -> Result<Stream, TransportFailure> {
    let Some(tls) = &chain.tls else {
        return Ok(stream);
    };
    let Stream::Tcp(tcp) = stream else {
        // Listeners on pipes with TLS are rejected at load.
        return Err(TransportFailure::Failed);
    };
    // Boxed: a handshake's state is only held while it runs.
    let handshake = Box::pin(tls.accept(tcp));
    let result = match chain.transport_socket_connect_timeout {
        Some(t) => match tokio::time::timeout(t, handshake).await {
            Ok(r) => r,
            Err(_) => {
                stats.downstream_cx_transport_socket_connect_timeout.inc();
                return Err(TransportFailure::ConnectTimeout);
            }
        },
        None => handshake.await,
    };
    match result {
        Ok(s) => Ok(Stream::Tls(Box::new(s))),
        Err(f) => {
            rvoy_log::debug!(
                rvoy_log::Component::Connection,
                "TLS handshake failed: {}",
                f.error
            );
            if let Some(info) = info {
                info.downstream_transport_failure_reason =
                    (!f.reason.is_empty()).then_some(f.reason);
            }
            Err(TransportFailure::Failed)
        }
    }
}

#[cfg(test)]
mod tests {
    fn future_size<A, B, C, D, E, F, G, Fut>(_: fn(A, B, C, D, E, F, G) -> Fut) -> usize {
        std::mem::size_of::<Fut>()
    }

    /// What one accepted connection costs while idle (see rvoy-http's
    /// `idle_connection_future_is_small`): TLS handshakes, listener filters,
    /// tcp_proxy sessions and each request's state are boxed where they run.
    /// 1,288 bytes with Rust 1.95 (3,984 before the idle state was trimmed);
    /// the bound catches a regression that puts a request's state back in.
    #[test]
    fn connection_future_is_small() {
        let size = future_size(super::serve_connection);
        eprintln!("serve_connection future: {size} bytes");
        assert!(size <= 1536, "serve_connection future is {size} bytes");
    }
}
