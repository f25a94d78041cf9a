//! rvoy's HTTP data plane.
//!
//! Owns the HTTP connection manager (Envoy's `http_connection_manager`): the
//! HTTP/1 codec ([`h1`]), HTTP/2 through the `h2` crate, request handling
//! ([`stream`]), forwarding headers ([`forwarding`]), local replies, the router
//! ([`router`]) with upstream connection pools ([`pool`]), and access log
//! emission. Everything here runs on a worker thread's single-threaded runtime.

pub mod access_log;
pub mod conn_h1;
pub mod conn_h2;
pub mod context;
pub mod downstream;
pub mod filter;
pub mod forwarding;
pub mod grpc;
pub mod h1;
pub mod h2_io;
pub mod headers;
pub mod io;
pub mod local_reply;
pub mod path;
pub mod pool;
pub mod request_info;
pub mod router;
pub mod stats;
pub mod stream;
pub mod stream_timers;
pub mod upstream_h1;
pub mod upstream_h2;

use std::rc::Rc;
use std::sync::Arc;

use bytes::BytesMut;
use rvoy_model::hcm::CodecType;
use tokio::io::AsyncReadExt;

pub use context::{AccessLogger, HttpListenerRuntime, LogSink, WorkerContext};
pub use stream::ConnInfo;

/// Serves an accepted connection with the HTTP connection manager, choosing
/// HTTP/1 or HTTP/2 as `codec_type` says (`AUTO`: HTTP/2 when the client opens
/// with the h2 preface).
pub async fn serve_connection(
    mut stream: io::Stream,
    rt: Arc<HttpListenerRuntime>,
    worker: Rc<WorkerContext>,
    conn: ConnInfo,
) {
    match rt.hcm.codec_type {
        CodecType::Http1 => conn_h1::serve(stream, BytesMut::new(), rt, worker, conn).await,
        CodecType::Http2 => {
            conn_h2::serve(
                io::Rewind::new(bytes::Bytes::new(), stream),
                rt,
                worker,
                conn,
            )
            .await
        }
        // Over TLS, ALPN decides when it chose a protocol (Envoy's
        // `determineNextProtocol`); otherwise the bytes do.
        CodecType::Auto if stream.alpn() == Some(b"h2") => {
            conn_h2::serve(
                io::Rewind::new(bytes::Bytes::new(), stream),
                rt,
                worker,
                conn,
            )
            .await
        }
        CodecType::Auto if stream.alpn() == Some(b"http/1.1") => {
            conn_h1::serve(stream, BytesMut::new(), rt, worker, conn).await
        }
        CodecType::Auto => {
            // Read until the bytes decide: the preface, or anything else.
            let mut buf = BytesMut::new();
            loop {
                let n = buf.len().min(conn_h2::PREFACE.len());
                if buf[..n] != conn_h2::PREFACE[..n] || n == conn_h2::PREFACE.len() {
                    break;
                }
                if buf.is_empty() {
                    let idle = rt.hcm.common.idle_timeout;
                    let ready = match idle {
                        Some(t) => tokio::time::timeout(t, stream.readable()).await.ok(),
                        None => Some(stream.readable().await),
                    };
                    if !matches!(ready, Some(Ok(()))) {
                        return;
                    }
                }
                buf.reserve(4096);
                match stream.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
            if buf.starts_with(conn_h2::PREFACE) {
                conn_h2::serve(io::Rewind::new(buf.freeze(), stream), rt, worker, conn).await;
            } else {
                conn_h1::serve(stream, buf, rt, worker, conn).await;
            }
        }
    }
}
