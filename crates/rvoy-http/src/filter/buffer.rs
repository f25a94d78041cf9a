//! `envoy.filters.http.buffer`: reads the whole request body before the
//! request goes on, and answers 413 `Payload Too Large` (closing an HTTP/1
//! connection) once more than `max_request_bytes` arrived. The buffered body
//! goes upstream with a `content-length`.
//!
//! As in Envoy, an HTTP/2 body that arrives whole in its first DATA frame is
//! never buffered by the filter, so it is not held to the limit.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderValue, StatusCode};
use rvoy_model::http_filters::PerRouteConfig;
use rvoy_model::http_filters::buffer::{Buffer, BufferPerRoute};
use rvoy_stats::{Counter, Scope};

use super::{Decoded, RouteContext};
use crate::downstream::{Downstream, DownstreamError, Protocol};
use crate::local_reply::LocalReply;
use crate::stream::Request;

/// The filter's config and the connection manager's `downstream_rq_too_large`.
#[derive(Debug)]
pub struct BufferRuntime {
    config: Buffer,
    too_large: Counter,
}

impl BufferRuntime {
    /// `hcm_scope` is `http.<stat_prefix>.`.
    pub fn new(config: Buffer, hcm_scope: &Scope) -> Self {
        BufferRuntime {
            config,
            too_large: hcm_scope.counter("downstream_rq_too_large"),
        }
    }
}

/// The limit that applies to this request, `None` when a route disables the filter.
fn settings(rt: &BufferRuntime, name: &str, ctx: RouteContext<'_>) -> Option<Buffer> {
    let route = ctx.configs(name).find_map(|c| match c {
        PerRouteConfig::Buffer(b) => Some(*b),
        _ => None,
    });
    match route {
        Some(BufferPerRoute::Disabled) => None,
        Some(BufferPerRoute::Override(b)) => Some(b),
        None => Some(rt.config),
    }
}

/// The next body chunk if it is already there: `Some(None)` when the body has
/// ended, `None` when nothing is ready yet.
fn ready_now<D: Downstream>(ds: &mut D) -> Option<Result<Option<Bytes>, DownstreamError>> {
    let mut fut = pin!(ds.read_body());
    let mut cx = Context::from_waker(Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(r) => Some(r),
        Poll::Pending => None,
    }
}

/// Reads the body into `req.replay_body`, or answers 413.
pub async fn decode_headers<D: Downstream>(
    rt: &BufferRuntime,
    name: &str,
    ctx: RouteContext<'_>,
    req: &mut Request,
    ds: &mut D,
) -> Decoded {
    if !req.has_body || req.replay_body.is_some() {
        return Decoded::Continue;
    }
    let Some(settings) = settings(rt, name, ctx) else {
        return Decoded::Continue;
    };
    let limit = settings.max_request_bytes;
    let mut body = BytesMut::new();
    let mut first = true;
    let mut over = false;
    loop {
        let chunk = match ds.read_body().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            // The router sees the failure again when it reads the body.
            Err(_) => return Decoded::Continue,
        };
        if first && ds.protocol() == Protocol::Http2 {
            // A first DATA frame that ends the stream passes unbuffered.
            if let Some(next) = ready_now(ds) {
                match next {
                    Ok(None) => {
                        body.extend_from_slice(&chunk);
                        break;
                    }
                    Ok(Some(more)) => {
                        body.extend_from_slice(&chunk);
                        body.extend_from_slice(&more);
                        first = false;
                        if body.len() as u64 > limit {
                            over = true;
                            break;
                        }
                        continue;
                    }
                    Err(_) => return Decoded::Continue,
                }
            }
        }
        first = false;
        body.extend_from_slice(&chunk);
        if body.len() as u64 > limit {
            over = true;
            break;
        }
    }
    if over {
        rt.too_large.inc();
        // The rest of the body is never read: the connection cannot be reused.
        ds.set_close();
        return Decoded::Reply(LocalReply::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Payload Too Large",
            "request_payload_too_large",
        ));
    }
    if !req.headers.contains_key(CONTENT_LENGTH) {
        req.headers
            .insert(CONTENT_LENGTH, HeaderValue::from(body.len() as u64));
    }
    req.headers.remove(TRANSFER_ENCODING);
    req.replay_body = Some(body.freeze());
    Decoded::Continue
}
