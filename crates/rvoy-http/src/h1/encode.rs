//! Writing HTTP/1 message heads: responses to clients and requests to upstreams.
//!
//! Header names go out in lower case, as Envoy's codec writes them, or in
//! Proper-Case when `header_key_format.proper_case_words` asks for it.

use http::{HeaderMap, Method, StatusCode, Version};

/// Envoy's reason phrase for a status code (`CodeUtility::toString`); codes
/// Envoy has no name for are "Unknown".
pub fn reason_phrase(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        208 => "Already Reported",
        226 => "IM Used",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Entity",
        423 => "Locked",
        424 => "Failed Dependency",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        506 => "Variant Also Negotiates",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        510 => "Not Extended",
        511 => "Network Authentication Required",
        599 => "Last Unassigned Server Error Code",
        _ => "Unknown",
    }
}

fn write_headers(headers: &HeaderMap, proper_case: bool, out: &mut Vec<u8>) {
    for (name, value) in headers {
        if proper_case {
            write_proper_case(name.as_str(), out);
        } else {
            out.extend_from_slice(name.as_str().as_bytes());
        }
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// `content-type` -> `Content-Type`: upper case at the start and after any
/// non-alphanumeric character.
pub fn write_proper_case(name: &str, out: &mut Vec<u8>) {
    let mut upper = true;
    for b in name.bytes() {
        if upper {
            out.push(b.to_ascii_uppercase());
        } else {
            out.push(b);
        }
        upper = !b.is_ascii_alphanumeric();
    }
}

/// Encodes a response head.
pub fn response_head(
    version: Version,
    status: StatusCode,
    reason: Option<&[u8]>,
    headers: &HeaderMap,
    proper_case: bool,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(if version == Version::HTTP_10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    match reason {
        Some(r) => out.extend_from_slice(r),
        None => out.extend_from_slice(reason_phrase(status).as_bytes()),
    }
    out.extend_from_slice(b"\r\n");
    write_headers(headers, proper_case, out);
    out.extend_from_slice(b"\r\n");
}

/// Encodes an interim `100 Continue`.
pub fn continue_head(out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
}

/// Encodes a request head. `host` goes first, as a `Host` header.
pub fn request_head(
    method: &Method,
    target: &str,
    host: Option<&[u8]>,
    headers: &HeaderMap,
    proper_case: bool,
    framing: RequestFraming,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if let Some(h) = host {
        out.extend_from_slice(if proper_case { b"Host: " } else { b"host: " });
        out.extend_from_slice(h);
        out.extend_from_slice(b"\r\n");
    }
    let mut length_written = false;
    for (name, value) in headers {
        if host.is_some() && name == http::header::HOST {
            continue;
        }
        if name == http::header::TRANSFER_ENCODING && framing.replaces_transfer_encoding() {
            continue;
        }
        let value = if name == http::header::CONTENT_LENGTH {
            match framing {
                RequestFraming::Length(_) if length_written => continue,
                RequestFraming::Length(n) => {
                    length_written = true;
                    write_name(name.as_str(), proper_case, out);
                    out.extend_from_slice(b": ");
                    write_u64(n, out);
                    out.extend_from_slice(b"\r\n");
                    continue;
                }
                RequestFraming::Chunked => continue,
                _ => value.as_bytes(),
            }
        } else {
            value.as_bytes()
        };
        write_name(name.as_str(), proper_case, out);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        RequestFraming::Length(n) if !length_written => {
            write_name("content-length", proper_case, out);
            out.extend_from_slice(b": ");
            write_u64(n, out);
            out.extend_from_slice(b"\r\n");
        }
        RequestFraming::Chunked => {
            write_name("transfer-encoding", proper_case, out);
            out.extend_from_slice(b": chunked\r\n");
        }
        _ => {}
    }
    out.extend_from_slice(b"\r\n");
}

/// How a request head announces its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestFraming {
    /// The headers as they are.
    AsIs,
    /// As they are, without `transfer-encoding` (an upgrade request).
    NoTransferEncoding,
    /// `content-length: n` (in place of any content-length), no transfer-encoding.
    Length(u64),
    /// `transfer-encoding: chunked` (and no content-length).
    Chunked,
}

impl RequestFraming {
    fn replaces_transfer_encoding(self) -> bool {
        !matches!(self, RequestFraming::AsIs)
    }
}

fn write_name(name: &str, proper_case: bool, out: &mut Vec<u8>) {
    if proper_case {
        write_proper_case(name, out);
    } else {
        out.extend_from_slice(name.as_bytes());
    }
}

fn write_u64(n: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(itoa_buf(n).as_bytes());
}

/// Decimal digits of `n` without allocating.
struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

fn itoa_buf(mut n: u64) -> Digits {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    Digits { buf, start: i }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proper_case() {
        let mut out = Vec::new();
        write_proper_case("x-envoy-upstream-service-time", &mut out);
        assert_eq!(out, b"X-Envoy-Upstream-Service-Time");
    }

    #[test]
    fn heads() {
        let mut h = HeaderMap::new();
        h.insert("content-length", "0".parse().expect("v"));
        let mut out = Vec::new();
        response_head(
            Version::HTTP_11,
            StatusCode::NOT_FOUND,
            None,
            &h,
            false,
            &mut out,
        );
        assert_eq!(out, b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
        out.clear();
        request_head(
            &Method::GET,
            "/x",
            Some(b"a.com"),
            &h,
            false,
            RequestFraming::AsIs,
            &mut out,
        );
        assert_eq!(
            out,
            b"GET /x HTTP/1.1\r\nhost: a.com\r\ncontent-length: 0\r\n\r\n"
        );
        h.insert("host", "b.com".parse().expect("v"));
        h.insert("transfer-encoding", "chunked".parse().expect("v"));
        out.clear();
        request_head(
            &Method::POST,
            "/x",
            Some(b"a.com"),
            &h,
            false,
            RequestFraming::Length(1234),
            &mut out,
        );
        assert_eq!(
            out,
            b"POST /x HTTP/1.1\r\nhost: a.com\r\ncontent-length: 1234\r\n\r\n"
        );
        h.remove("content-length");
        out.clear();
        request_head(
            &Method::POST,
            "/x",
            Some(b"a.com"),
            &h,
            true,
            RequestFraming::Chunked,
            &mut out,
        );
        assert_eq!(
            out,
            b"POST /x HTTP/1.1\r\nHost: a.com\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
    }
}
