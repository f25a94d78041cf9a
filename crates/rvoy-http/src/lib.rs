//! rvoy's HTTP data plane.
//!
//! Owns the HTTP connection manager (Envoy's `http_connection_manager`): the
//! HTTP/1 codec ([`h1`]), HTTP/2 through the `h2` crate, request handling
//! ([`stream`]), forwarding headers ([`forwarding`]), local replies, the router
//! ([`router`]) with upstream connection pools ([`pool`]), and access log
//! emission. Everything here runs on a worker thread's single-threaded runtime.

pub mod access_log;
pub mod buf_pool;
pub mod clock;
pub mod conn_h1;
pub mod conn_h2;
pub mod connection;
pub mod context;
pub mod downstream;
pub mod filter;
pub mod forwarding;
pub mod grpc;
pub mod h1;
pub mod h2_io;
pub mod header_pool;
pub mod headers;
pub mod io;
pub mod local_reply;
pub mod path;
pub mod pool;
pub mod request_info;
pub mod router;
pub mod sleep_pool;
pub mod stats;
pub mod stream;
pub mod stream_timers;
pub mod upstream_h1;
pub mod upstream_h2;

use std::rc::Rc;
use std::sync::Arc;

pub use connection::{Transport, TransportFailure};
pub use context::{AccessLogger, HttpListenerRuntime, LogSink, WorkerContext};
pub use stream::ConnInfo;

/// Serves an accepted connection with the HTTP connection manager, from its
/// transport socket's handshake on ([`connection`]): HTTP/1 or HTTP/2 as
/// `codec_type` says (`AUTO`: as ALPN says, else HTTP/2 when the client opens
/// with the h2 preface).
pub fn serve_connection<'a>(
    transport: Transport<'a>,
    rt: Arc<HttpListenerRuntime>,
    worker: Rc<WorkerContext>,
    conn: ConnInfo,
) -> impl std::future::Future<Output = ()> + 'a {
    connection::serve(transport, rt, worker, conn)
}

#[cfg(test)]
mod tests {
    /// The size of the future an async fn returns, without calling it.
    fn future_size<A, B, C, D, Fut>(_: fn(A, B, C, D) -> Fut) -> usize {
        std::mem::size_of::<Fut>()
    }

    /// An idle keep-alive connection holds only its connection future: the
    /// per-request state (~7 KiB of nested futures) and HTTP/2's codec are
    /// boxed while they run, so thousands of idle connections stay cheap.
    /// 952 bytes with Rust 1.95 (2,712 before the idle state was trimmed);
    /// the bound catches a regression that puts a request's state back in.
    #[test]
    fn idle_connection_future_is_small() {
        let size = future_size(super::serve_connection);
        eprintln!("serve_connection future: {size} bytes");
        assert!(size <= 1152, "serve_connection future is {size} bytes");
    }
}
