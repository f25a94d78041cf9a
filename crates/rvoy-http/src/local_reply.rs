//! Responses the proxy makes itself (Envoy's `sendLocalReply`): errors, direct
//! responses and redirects.
//!
//! The body is plain text (`content-type: text/plain`) unless empty;
//! `local_reply_config` mappers may change the status, body and headers, and
//! `body_format` may render the body; requests from gRPC clients get a
//! trailers-only gRPC error instead (`grpc-status`, `grpc-message`), as Envoy
//! does.

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, StatusCode};
use rvoy_format::StreamInfo;
use rvoy_model::access_log::AccessLogFilter;
use rvoy_model::hcm::HttpConnectionManager;

use crate::access_log::filter_matches;
use crate::headers::apply_mutations;
use crate::request_info::RequestInfo;

/// A local reply to send.
#[derive(Debug)]
pub struct LocalReply {
    pub status: StatusCode,
    pub body: Bytes,
    /// Envoy's response code details (`route_not_found`, ...).
    pub details: &'static str,
    /// Extra headers (e.g. `location`).
    pub headers: HeaderMap,
    /// Whether the request came from a gRPC client.
    pub grpc: bool,
    /// A filter's own response (a CORS preflight answer): sent as it is,
    /// without `local_reply_config` or the gRPC conversion.
    pub raw: bool,
    /// The `grpc-status` a gRPC client gets, instead of the one mapped from
    /// `status` (a filter's explicit gRPC status: fault abort, rate limit).
    pub grpc_status: Option<u32>,
}

impl LocalReply {
    pub fn new(status: StatusCode, body: impl Into<Bytes>, details: &'static str) -> Self {
        LocalReply {
            status,
            body: body.into(),
            details,
            headers: HeaderMap::new(),
            grpc: false,
            raw: false,
            grpc_status: None,
        }
    }
}

/// Envoy's `Grpc::Utility::httpToGrpcStatus`.
pub fn http_to_grpc_status(status: u16) -> u32 {
    match status {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502 | 503 | 504 => 14,
        _ => 2,
    }
}

/// Whether the request came from a gRPC client (`content-type: application/grpc...`).
pub fn is_grpc_request(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

fn percent_encode_grpc_message(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The head and body of a local reply after `local_reply_config`.
pub struct Rendered {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Applies `local_reply_config` and the gRPC conversion; records the body for
/// `%LOCAL_REPLY_BODY%` in `info`.
pub fn render(reply: LocalReply, hcm: &HttpConnectionManager, info: &mut RequestInfo) -> Rendered {
    let mut status = reply.status;
    let mut body = reply.body;
    let mut headers = reply.headers;
    info.response_status = Some(status);
    if reply.raw {
        return Rendered {
            status,
            headers,
            body,
        };
    }
    let mut format = hcm.local_reply.body_format.as_ref();
    for mapper in &hcm.local_reply.mappers {
        if filter_matches(&mapper.filter, info) {
            if let Some(s) = mapper.status {
                status = s;
                info.response_status = Some(s);
            }
            if let Some(b) = &mapper.body {
                body = b.clone();
            }
            if !mapper.headers.is_empty() {
                apply_mutations(&mapper.headers, &mut headers, info);
            }
            if let Some(f) = &mapper.body_format {
                format = Some(f);
            }
            break;
        }
    }
    info.local_reply_body = Some(String::from_utf8_lossy(&body).into_owned());
    let mut content_type: Option<HeaderValue> = None;
    if let Some(f) = format {
        let mut out = String::new();
        f.format.render(info as &dyn StreamInfo, &mut out);
        body = Bytes::from(out);
        content_type = HeaderValue::from_str(&f.content_type).ok();
    } else if !body.is_empty() {
        content_type = Some(HeaderValue::from_static("text/plain"));
    }
    if reply.grpc {
        // Envoy keeps the headers the reply was given (a filter's, a
        // mapper's) and drops a content-length among them.
        let mut h = headers;
        h.remove(CONTENT_LENGTH);
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        let code = reply
            .grpc_status
            .unwrap_or_else(|| http_to_grpc_status(status.as_u16()));
        h.insert("grpc-status", HeaderValue::from(code));
        let msg = String::from_utf8_lossy(&body);
        if !msg.is_empty()
            && let Ok(v) = HeaderValue::from_str(&percent_encode_grpc_message(&msg))
        {
            h.insert("grpc-message", v);
        }
        info.grpc_status = Some(code as i32);
        return Rendered {
            status: StatusCode::OK,
            headers: h,
            body: Bytes::new(),
        };
    }
    // Envoy's order on the wire: content-length, content-type.
    if !body.is_empty() {
        headers.insert(
            CONTENT_LENGTH,
            crate::forwarding::decimal_value(body.len() as u64),
        );
    }
    if let Some(ct) = content_type {
        headers.insert(CONTENT_TYPE, ct);
    }
    Rendered {
        status,
        headers,
        body,
    }
}

/// Whether a mapper's filter matches (re-exported for callers).
pub fn mapper_matches(filter: &AccessLogFilter, info: &RequestInfo) -> bool {
    filter_matches(filter, info)
}
