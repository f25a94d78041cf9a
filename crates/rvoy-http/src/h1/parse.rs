//! HTTP/1 message heads: parsing requests (server side) and responses (client
//! side) with Envoy's limits and verdicts, and deciding how the body is framed.
//!
//! `httparse` tokenizes; this module applies what Envoy's codec adds on top:
//! the header size (`max_request_headers_kb`, 431) and count
//! (`max_headers_count`, 431) limits, HTTP version handling (426 for versions
//! other than 1.0/1.1), and the body framing rules (400 for conflicting or
//! malformed `Content-Length`, 400 for `Content-Length` with chunked encoding,
//! 501 for transfer codings other than chunked).

use std::mem::MaybeUninit;

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};

/// How an HTTP/1 message body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the peer closes (responses only).
    UntilClose,
}

/// Why a message head was refused, with Envoy's status and details.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeadError {
    pub status: StatusCode,
    /// Envoy's response code details (`http1.codec_error`, ...).
    pub details: &'static str,
}

impl HeadError {
    fn bad(details: &'static str) -> Self {
        HeadError {
            status: StatusCode::BAD_REQUEST,
            details,
        }
    }
}

/// Limits applied while reading a request head.
#[derive(Clone, Copy, Debug)]
pub struct HeadLimits {
    /// Total size of the request line and headers.
    pub max_head_bytes: usize,
    pub max_headers: usize,
}

/// A parsed request head.
#[derive(Debug)]
pub struct RequestHead {
    pub method: Method,
    /// The request target as sent (origin form, absolute form, `*`...).
    pub target: smol_str::SmolStr,
    pub version: Version,
    pub headers: HeaderMap,
    pub framing: BodyFraming,
    /// `Connection: close` (or HTTP/1.0 without keep-alive).
    pub close: bool,
    /// `Connection: keep-alive` was sent (matters for HTTP/1.0).
    pub keep_alive: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
    /// An `Upgrade` request (`Connection: upgrade` + `Upgrade: x`).
    pub upgrade: Option<String>,
    /// Bytes of the head, for stats and `%REQUEST_HEADERS_BYTES%`.
    pub head_len: usize,
}

/// Envoy's HTTP/1 codec's check of the request target: origin form (`/...`),
/// `*` only for `OPTIONS`, authority form for `CONNECT`, or an absolute
/// `http`/`https` URL; anything else is a codec error
/// (`http1.invalid_url`, `http1.invalid_scheme`, `http1.codec_error`).
fn check_target(method: &Method, target: &str) -> Result<(), HeadError> {
    if target.starts_with('/') {
        return Ok(());
    }
    if target.starts_with('*') {
        return if method == Method::OPTIONS {
            Ok(())
        } else {
            Err(HeadError::bad("http1.invalid_url"))
        };
    }
    if method == Method::CONNECT {
        return Ok(());
    }
    match target.split_once("://") {
        Some((scheme, _))
            if !scheme.is_empty()
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')) =>
        {
            if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") {
                Ok(())
            } else {
                Err(HeadError::bad("http1.invalid_scheme"))
            }
        }
        _ => Err(HeadError::bad("http1.codec_error")),
    }
}

/// The header slots a head is parsed with on the stack; a limit above them
/// takes slots on the heap.
const INLINE_HEADER_SLOTS: usize = 128;

/// The slots httparse parses a head's headers into: one more than
/// `max_headers`, so that "too many" is told apart from "just enough",
/// from `inline` when they fit, else from `heap`. They are left
/// uninitialised: zeroing 4 KiB per head cost more than parsing a small one.
fn header_slots<'s, 'b>(
    inline: &'s mut [MaybeUninit<httparse::Header<'b>>; INLINE_HEADER_SLOTS],
    heap: &'s mut Vec<MaybeUninit<httparse::Header<'b>>>,
    max_headers: usize,
) -> &'s mut [MaybeUninit<httparse::Header<'b>>] {
    let wanted = max_headers.saturating_add(1);
    if wanted <= INLINE_HEADER_SLOTS {
        &mut inline[..wanted]
    } else {
        heap.resize_with(wanted, MaybeUninit::uninit);
        heap
    }
}

/// Parses a request head from the start of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed (and the limit is not hit
/// yet). A complete head is split off the front of `buf` (what follows it,
/// the body or a pipelined request, stays), and the header values are slices
/// of it: no copy of the head and no allocation per value.
pub fn parse_request(
    buf: &mut BytesMut,
    limits: HeadLimits,
) -> Result<Option<RequestHead>, HeadError> {
    if !first_line_method_valid(buf) {
        return Err(HeadError::bad("http1.codec_error"));
    }
    let too_large = HeadError {
        status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        details: "http1.headers_too_large",
    };
    let mut inline = [const { MaybeUninit::uninit() }; INLINE_HEADER_SLOTS];
    let mut heap = Vec::new();
    let slots = header_slots(&mut inline, &mut heap, limits.max_headers);
    let mut req = httparse::Request::new(&mut []);
    let status = req.parse_with_uninit_headers(buf, slots);
    let head_len = match status {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > limits.max_head_bytes {
                return Err(too_large);
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(too_large),
        Err(httparse::Error::Version) => {
            return Err(if looks_like_http_version(buf) {
                HeadError {
                    status: StatusCode::UPGRADE_REQUIRED,
                    details: "low_version",
                }
            } else {
                HeadError::bad("http1.codec_error")
            });
        }
        Err(_) => return Err(HeadError::bad("http1.codec_error")),
    };
    if head_len > limits.max_head_bytes || req.headers.len() > limits.max_headers {
        return Err(too_large);
    }
    let method = Method::from_bytes(req.method.unwrap_or("").as_bytes())
        .map_err(|_| HeadError::bad("http1.codec_error"))?;
    let target = smol_str::SmolStr::new(req.path.unwrap_or(""));
    check_target(&method, &target)?;
    let version = if req.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let mut pending = PendingHeaders::new();
    let codec =
        note_headers(buf, req.headers, &mut pending).ok_or(HeadError::bad("http1.codec_error"))?;
    let head = buf.split_to(head_len).freeze();
    let headers =
        cut_values(&head, &mut pending).map_err(|_| HeadError::bad("http1.codec_error"))?;
    let framing = request_framing(&headers, codec)?;
    let ConnectionTokens {
        close,
        keep_alive,
        upgrade: upgrade_token,
    } = codec.tokens;
    let upgrading = method == Method::CONNECT || (upgrade_token && codec.upgrade);
    if codec.connection && !upgrading && !connection_nominations_allowed(&headers) {
        return Err(HeadError::bad("http1.connection_header_rejected"));
    }
    let close = close || (version == Version::HTTP_10 && !keep_alive);
    let expect_continue = codec.expect
        && headers
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let upgrade = if upgrade_token && codec.upgrade {
        headers
            .get(http::header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.to_owned())
    } else {
        None
    };
    Ok(Some(RequestHead {
        method,
        target,
        version,
        headers,
        framing,
        close,
        keep_alive,
        expect_continue,
        upgrade,
        head_len,
    }))
}

/// The methods Envoy's HTTP/1 parser (Balsa) accepts; any other (a custom
/// or lowercase method, HTTP/2's `PRI`) is a codec error. Sorted.
const METHODS: [&[u8]; 34] = [
    b"ACL",
    b"BIND",
    b"CHECKOUT",
    b"CONNECT",
    b"COPY",
    b"DELETE",
    b"GET",
    b"HEAD",
    b"LINK",
    b"LOCK",
    b"MERGE",
    b"MKACTIVITY",
    b"MKCALENDAR",
    b"MKCOL",
    b"MOVE",
    b"MSEARCH",
    b"NOTIFY",
    b"OPTIONS",
    b"PATCH",
    b"POST",
    b"PROPFIND",
    b"PROPPATCH",
    b"PURGE",
    b"PUT",
    b"REBIND",
    b"REPORT",
    b"SEARCH",
    b"SOURCE",
    b"SUBSCRIBE",
    b"TRACE",
    b"UNBIND",
    b"UNLINK",
    b"UNLOCK",
    b"UNSUBSCRIBE",
];

/// False once the request line is whole and its method is not one Envoy's
/// parser knows: Envoy checks the method as soon as the first line is in,
/// before the version and before the rest of the head.
fn first_line_method_valid(buf: &[u8]) -> bool {
    // Empty lines before the request line are skipped.
    let start = buf
        .iter()
        .position(|b| *b != b'\r' && *b != b'\n')
        .unwrap_or(buf.len());
    let line = &buf[start..];
    let Some(end) = memchr::memchr(b'\n', line) else {
        return true;
    };
    let line = &line[..end];
    let method = line
        .iter()
        .position(|b| *b == b' ' || *b == b'\t' || *b == b'\r')
        .map_or(line, |n| &line[..n]);
    METHODS.binary_search(&method).is_ok()
}

fn looks_like_http_version(buf: &[u8]) -> bool {
    let line_end = memchr::memchr(b'\n', buf).unwrap_or(buf.len());
    let line = &buf[..line_end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(pos) = memchr::memmem::rfind(line, b" HTTP/") else {
        return false;
    };
    let v = &line[pos + 6..];
    v.len() == 3 && v[0].is_ascii_digit() && v[1] == b'.' && v[2].is_ascii_digit()
}

/// Room left in a parsed head's map for the headers the connection manager
/// adds (`x-forwarded-proto`, `x-request-id`, `x-envoy-expected-rq-timeout-ms`,
/// `x-envoy-upstream-service-time`, `date`, `server`, ...) without growing it.
const ADDED_HEADERS: usize = 6;

/// The headers of a head being parsed: names resolved, values as ranges of
/// the head, cut from it once the head is split off the read buffer. Inline
/// up to 16 headers.
type PendingHeaders = smallvec::SmallVec<[(HeaderName, Range<usize>); 16]>;

/// Where `part`, a slice of `buf`, lies in it.
fn range_in(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(buf.as_ptr() as usize);
    start..start + part.len()
}

/// Resolves the names of a head's `headers` (parsed from `buf`) into
/// `pending`, with their (trimmed) values' ranges, and notes what the codec
/// reads of them. `None` if a name is not a valid header name.
fn note_headers(
    buf: &[u8],
    headers: &[httparse::Header<'_>],
    pending: &mut PendingHeaders,
) -> Option<CodecHeaders> {
    let mut codec = CodecHeaders::default();
    for h in headers {
        let name = header_name(h.name.as_bytes())?;
        let raw = trim_ows(h.value);
        codec.note(&name, raw);
        pending.push((name, range_in(buf, raw)));
    }
    Some(codec)
}

/// The head's header map: each value a slice of `head` (checked as
/// `HeaderValue::from_bytes` checks it).
///
/// `pending` is borrowed and drained, not moved: it is large, and moving it
/// copies all its inline slots.
fn cut_values(
    head: &Bytes,
    pending: &mut PendingHeaders,
) -> Result<HeaderMap, http::header::InvalidHeaderValue> {
    let mut headers = crate::header_pool::take(pending.len() + ADDED_HEADERS);
    for (name, range) in pending.drain(..) {
        headers.append(name, HeaderValue::from_maybe_shared(head.slice(range))?);
    }
    Ok(headers)
}

/// Which of the headers the HTTP/1 codec itself reads a head carries, noted
/// while its names are parsed, so that the framing and connection checks look
/// up only those present (most heads carry one or two of them).
///
/// The values the codec parses (`content-length`, the `connection` tokens) are
/// read here too, from the bytes the header values are made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodecHeaders {
    pub content_length: bool,
    pub transfer_encoding: bool,
    pub connection: bool,
    pub upgrade: bool,
    pub expect: bool,
    /// The `content-length` all values agree on; `Err` if one is malformed or
    /// two disagree.
    pub length: Result<Option<u64>, ()>,
    /// The tokens of all `connection` values.
    pub tokens: ConnectionTokens,
}

impl Default for CodecHeaders {
    fn default() -> Self {
        CodecHeaders {
            content_length: false,
            transfer_encoding: false,
            connection: false,
            upgrade: false,
            expect: false,
            length: Ok(None),
            tokens: ConnectionTokens::default(),
        }
    }
}

impl CodecHeaders {
    /// Notes header `name` with (trimmed) value `value`.
    fn note(&mut self, name: &HeaderName, value: &[u8]) {
        // The length sorts out almost every other name before a comparison.
        match name.as_str().len() {
            6 if name == http::header::EXPECT => self.expect = true,
            7 if name == http::header::UPGRADE => self.upgrade = true,
            10 if name == http::header::CONNECTION => {
                self.connection = true;
                self.tokens.add(value);
            }
            14 if name == CONTENT_LENGTH => {
                self.content_length = true;
                if let Ok(found) = &mut self.length
                    && content_length_value(value, found).is_err()
                {
                    self.length = Err(());
                }
            }
            17 if name == TRANSFER_ENCODING => self.transfer_encoding = true,
            _ => {}
        }
    }
}

/// Header names this thread has parsed before, by their exact bytes.
///
/// A connection's heads repeat the same names in the same spelling, and
/// `HeaderName::from_bytes` lowercases and classifies every name anew (and
/// copies each custom name into a fresh allocation): a hit here is one short
/// comparison and a clone. Direct-mapped; a colliding name replaces the entry.
struct NameCache {
    entries: [Option<CachedName>; NameCache::SLOTS],
}

struct CachedName {
    raw: [u8; NameCache::MAX_LEN],
    len: u8,
    name: HeaderName,
}

impl NameCache {
    const SLOTS: usize = 64;
    /// Longer names are parsed every time.
    const MAX_LEN: usize = 32;

    fn slot(raw: &[u8]) -> usize {
        let n = raw.len();
        let mix = n
            .wrapping_mul(31)
            .wrapping_add(usize::from(raw[0]) * 7)
            .wrapping_add(usize::from(raw[n / 2]) * 3)
            .wrapping_add(usize::from(raw[n - 1]));
        mix % Self::SLOTS
    }
}

thread_local! {
    static NAMES: std::cell::RefCell<NameCache> = const {
        std::cell::RefCell::new(NameCache { entries: [const { None }; NameCache::SLOTS] })
    };
}

/// `raw` as a header name, `None` if it is not a valid one.
fn header_name(raw: &[u8]) -> Option<HeaderName> {
    if raw.is_empty() || raw.len() > NameCache::MAX_LEN {
        return HeaderName::from_bytes(raw).ok();
    }
    let slot = NameCache::slot(raw);
    let cached = NAMES.try_with(|cache| {
        let mut cache = cache.try_borrow_mut().ok()?;
        let entry = &mut cache.entries[slot];
        if let Some(e) = entry
            && e.raw.get(..usize::from(e.len)) == Some(raw)
        {
            return Some(Some(e.name.clone()));
        }
        let Ok(name) = HeaderName::from_bytes(raw) else {
            return Some(None);
        };
        let mut copy = [0u8; NameCache::MAX_LEN];
        copy[..raw.len()].copy_from_slice(raw);
        *entry = Some(CachedName {
            raw: copy,
            len: u8::try_from(raw.len()).ok()?,
            name: name.clone(),
        });
        Some(Some(name))
    });
    match cached {
        Ok(Some(name)) => name,
        // The cache is gone (thread exit) or busy: parse as usual.
        _ => HeaderName::from_bytes(raw).ok(),
    }
}

fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| *b != b' ' && *b != b'\t')
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| *b != b' ' && *b != b'\t')
        .map_or(start, |e| e + 1);
    &v[start..end]
}

/// Envoy's HTTP/1 codec check of what a (non-upgrade) request's `connection`
/// header nominates as hop-by-hop (`Utility::sanitizeConnectionHeader`): at most
/// nine tokens; never `x-forwarded-for`, `-host` or `-proto` (removing them
/// would hide where the request came from) nor a pseudo-header; and a
/// nominated `te` shorter than 256 bytes. A request that breaks it gets 400.
fn connection_nominations_allowed(headers: &HeaderMap) -> bool {
    const MAX_NOMINATED: usize = 10;
    const MAX_TE_LEN: usize = 256;
    let mut values = headers.get_all(http::header::CONNECTION).iter().peekable();
    if values.peek().is_none() {
        return true;
    }
    let mut tokens = 0;
    for v in values {
        for token in v.as_bytes().split(|b| *b == b',') {
            if token.is_empty() {
                continue;
            }
            tokens += 1;
            if tokens >= MAX_NOMINATED {
                return false;
            }
            let t = trim_ows(token);
            let forbidden = t.starts_with(b":")
                || [
                    &b"x-forwarded-for"[..],
                    b"x-forwarded-host",
                    b"x-forwarded-proto",
                ]
                .iter()
                .any(|f| t.eq_ignore_ascii_case(f));
            if forbidden {
                return false;
            }
            if t.eq_ignore_ascii_case(b"te")
                && headers
                    .get(http::header::TE)
                    .is_some_and(|te| te.len() >= MAX_TE_LEN)
            {
                return false;
            }
        }
    }
    true
}

/// The tokens of `connection` values the codec acts on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionTokens {
    pub close: bool,
    pub keep_alive: bool,
    pub upgrade: bool,
}

impl ConnectionTokens {
    /// Adds the tokens of one `connection` value.
    fn add(&mut self, value: &[u8]) {
        for token in value.split(|b| *b == b',') {
            let t = trim_ows(token);
            if t.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if t.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if t.eq_ignore_ascii_case(b"upgrade") {
                self.upgrade = true;
            }
        }
    }
}

/// (`close`, `keep-alive`, `upgrade`) tokens of the Connection header(s).
pub fn connection_tokens(headers: &HeaderMap) -> (bool, bool, bool) {
    let mut tokens = ConnectionTokens::default();
    for v in headers.get_all(http::header::CONNECTION) {
        tokens.add(v.as_bytes());
    }
    (tokens.close, tokens.keep_alive, tokens.upgrade)
}

/// Folds one `Content-Length` value into `found`: every comma-separated part
/// must be plain decimal and agree with what was found before.
fn content_length_value(value: &[u8], found: &mut Option<u64>) -> Result<(), ()> {
    for part in value.split(|b| *b == b',') {
        let part = trim_ows(part);
        if part.is_empty() || part.len() > 19 {
            return Err(());
        }
        let mut n: u64 = 0;
        for b in part {
            if !b.is_ascii_digit() {
                return Err(());
            }
            // 19 digits always fit in a u64.
            n = n * 10 + u64::from(b - b'0');
        }
        match *found {
            Some(prev) if prev != n => return Err(()),
            _ => *found = Some(n),
        }
    }
    Ok(())
}

/// Whether the transfer codings are exactly `chunked` (Envoy supports no other).
fn transfer_encoding(headers: &HeaderMap) -> Result<bool, HeadError> {
    let mut any = false;
    let mut chunked_last = false;
    for v in headers.get_all(TRANSFER_ENCODING) {
        for coding in v.as_bytes().split(|b| *b == b',') {
            let c = trim_ows(coding);
            if c.is_empty() {
                continue;
            }
            any = true;
            if c.eq_ignore_ascii_case(b"chunked") {
                if chunked_last {
                    return Err(HeadError::bad("http1.invalid_transfer_encoding"));
                }
                chunked_last = true;
            } else {
                return Err(HeadError {
                    status: StatusCode::NOT_IMPLEMENTED,
                    details: "http1.invalid_transfer_encoding",
                });
            }
        }
    }
    Ok(any && chunked_last)
}

fn request_framing(headers: &HeaderMap, codec: CodecHeaders) -> Result<BodyFraming, HeadError> {
    let cl = codec
        .length
        .map_err(|()| HeadError::bad("http1.content_length_not_allowed"))?;
    if codec.transfer_encoding {
        if codec.content_length {
            return Err(HeadError::bad("http1.content_length_not_allowed"));
        }
        return if transfer_encoding(headers)? {
            Ok(BodyFraming::Chunked)
        } else {
            Err(HeadError::bad("http1.invalid_transfer_encoding"))
        };
    }
    Ok(match cl {
        Some(0) | None => BodyFraming::Empty,
        Some(n) => BodyFraming::Length(n),
    })
}

/// A parsed response head (client side).
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub reason: Option<Bytes>,
    pub version: Version,
    pub headers: HeaderMap,
    pub close: bool,
    pub head_len: usize,
    /// Which framing headers `headers` carried when parsed.
    pub codec: CodecHeaders,
}

/// Why an upstream response could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseError {
    Malformed,
    TooLarge,
}

/// Parses a response head from the start of `buf`: as [`parse_request`], the
/// complete head is split off and its header values are slices of it.
pub fn parse_response(
    buf: &mut BytesMut,
    limits: HeadLimits,
) -> Result<Option<ResponseHead>, ResponseError> {
    let mut inline = [const { MaybeUninit::uninit() }; INLINE_HEADER_SLOTS];
    let mut heap = Vec::new();
    let slots = header_slots(&mut inline, &mut heap, limits.max_headers);
    let mut resp = httparse::Response::new(&mut []);
    let parsed =
        httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut resp, buf, slots);
    let head_len = match parsed {
        Ok(httparse::Status::Complete(_)) if resp.headers.len() > limits.max_headers => {
            return Err(ResponseError::TooLarge);
        }
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > limits.max_head_bytes {
                return Err(ResponseError::TooLarge);
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(ResponseError::TooLarge),
        Err(_) => return Err(ResponseError::Malformed),
    };
    let status =
        StatusCode::from_u16(resp.code.unwrap_or(0)).map_err(|_| ResponseError::Malformed)?;
    let version = if resp.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let mut pending = PendingHeaders::new();
    let codec = note_headers(buf, resp.headers, &mut pending).ok_or(ResponseError::Malformed)?;
    let reason = resp
        .reason
        .filter(|r| !r.is_empty())
        .map(|r| range_in(buf, r.as_bytes()));
    let head = buf.split_to(head_len).freeze();
    let headers = cut_values(&head, &mut pending).map_err(|_| ResponseError::Malformed)?;
    let ConnectionTokens {
        close, keep_alive, ..
    } = codec.tokens;
    let reason = reason.map(|r| head.slice(r));
    Ok(Some(ResponseHead {
        status,
        reason,
        version,
        close: close || (version == Version::HTTP_10 && !keep_alive),
        headers,
        head_len,
        codec,
    }))
}

/// How a response body is framed, given the request method and status.
pub fn response_framing(
    head: &ResponseHead,
    request_method: &Method,
) -> Result<BodyFraming, ResponseError> {
    let s = head.status.as_u16();
    if request_method == Method::HEAD || (100..200).contains(&s) || s == 204 || s == 304 {
        return Ok(BodyFraming::Empty);
    }
    if request_method == Method::CONNECT && head.status.is_success() {
        return Ok(BodyFraming::Empty);
    }
    if head.codec.transfer_encoding {
        return match transfer_encoding(&head.headers) {
            Ok(true) => Ok(BodyFraming::Chunked),
            Ok(false) => Ok(BodyFraming::UntilClose),
            Err(_) => Err(ResponseError::Malformed),
        };
    }
    match head.codec.length {
        Err(()) => Err(ResponseError::Malformed),
        Ok(Some(0)) => Ok(BodyFraming::Empty),
        Ok(Some(n)) => Ok(BodyFraming::Length(n)),
        Ok(None) => Ok(BodyFraming::UntilClose),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits {
        max_head_bytes: 60 * 1024,
        max_headers: 100,
    };

    fn req(raw: &str) -> Result<Option<RequestHead>, HeadError> {
        parse_request(&mut BytesMut::from(raw.as_bytes()), LIMITS)
    }

    fn resp(raw: &[u8], limits: HeadLimits) -> Result<Option<ResponseHead>, ResponseError> {
        parse_response(&mut BytesMut::from(raw), limits)
    }

    fn status(raw: &str) -> u16 {
        req(raw).expect_err("refused").status.as_u16()
    }

    #[test]
    fn request_targets_as_envoys_codec_checks_them() {
        let details = |line: &str| {
            req(&format!("{line}\r\nHost: a\r\n\r\n"))
                .err()
                .map(|e| e.details)
        };
        for ok in [
            "GET /x HTTP/1.1",
            "OPTIONS * HTTP/1.1",
            "OPTIONS *x HTTP/1.1",
            "CONNECT host:443 HTTP/1.1",
            "GET HTTP://a/b HTTP/1.1",
            "GET https://a HTTP/1.1",
        ] {
            assert_eq!(details(ok), None, "{ok}");
        }
        for (line, want) in [
            ("GET * HTTP/1.1", "http1.invalid_url"),
            ("CONNECT * HTTP/1.1", "http1.invalid_url"),
            ("POST *x HTTP/1.1", "http1.invalid_url"),
            ("GET ftp://x/y HTTP/1.1", "http1.invalid_scheme"),
            ("GET http:/x HTTP/1.1", "http1.codec_error"),
            ("GET foo HTTP/1.1", "http1.codec_error"),
            ("GET ?a HTTP/1.1", "http1.codec_error"),
        ] {
            assert_eq!(details(line), Some(want), "{line}");
        }
        // An HTTP version other than 1.x is Envoy's `low_version` (426).
        let e = req("GET / HTTP/2.0\r\nHost: a\r\n\r\n").expect_err("refused");
        assert_eq!((e.status.as_u16(), e.details), (426, "low_version"));
    }

    #[test]
    fn valid_and_partial() {
        let h = req("GET /a?b HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n")
            .expect("ok")
            .expect("complete");
        assert_eq!(h.method, Method::GET);
        assert_eq!(h.target, "/a?b");
        assert_eq!(h.upgrade.as_deref(), Some("websocket"));
        assert_eq!(h.framing, BodyFraming::Empty);
        assert!(
            req("GET / HTTP/1.1\r\nHost: x\r\n")
                .expect("partial")
                .is_none()
        );
    }

    #[test]
    fn header_values_are_read_whole_and_trimmed_with_few_or_many_headers() {
        let few = req("GET / HTTP/1.1\r\nHost:  a \r\nX-E:\r\n\r\n")
            .expect("ok")
            .expect("complete");
        assert_eq!(few.headers["host"], "a");
        assert_eq!(few.headers["x-e"], "");
        let raw = "GET / HTTP/1.1\r\nHost: a\r\nX-A: \t1 2\t \r\nX-E:\r\nX-A: 3\r\nX-O: caf\u{e9}\r\n\r\n";
        let many = req(raw).expect("ok").expect("complete");
        let xa: Vec<_> = many.headers.get_all("x-a").iter().collect();
        assert_eq!(xa, ["1 2", "3"]);
        assert_eq!(many.headers["x-e"], "");
        assert_eq!(many.headers["x-o"].as_bytes(), "caf\u{e9}".as_bytes());
        let resp = resp(
            b"HTTP/1.1 404 Not Here\r\nServer: s\r\nContent-Length: 0\r\nX-B:  b \r\n\r\n",
            LIMITS,
        )
        .expect("ok")
        .expect("complete");
        assert_eq!(resp.reason.as_deref(), Some(&b"Not Here"[..]));
        assert_eq!(resp.headers["x-b"], "b");
        assert_eq!(resp.headers["server"], "s");
    }

    #[test]
    fn envoy_codec_verdicts() {
        assert_eq!(
            status("GET / HTTP/1.1\r\nHost: example.com\r\nX-Bad: a\x01b\r\n\r\n"),
            400
        );
        assert_eq!(
            status("GET / HTTP/1.1\r\nHost: example.com\r\nBad Header: x\r\n\r\n"),
            400
        );
        assert_eq!(status("G@T / HTTP/1.1\r\nHost: example.com\r\n\r\n"), 400);
        assert_eq!(
            status(
                "POST / HTTP/1.1\r\nHost: e\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
            ),
            400
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: e\r\nContent-Length: abc\r\n\r\n"),
            400
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: e\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"),
            400
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: gzip\r\n\r\n"),
            501
        );
        assert_eq!(status("THIS IS NOT HTTP\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/3.7\r\nHost: e\r\n\r\n"), 426);
        // Envoy's parser knows a fixed list of methods, checked first.
        assert_eq!(status("FOO / HTTP/1.1\r\nHost: e\r\n\r\n"), 400);
        assert_eq!(status("get / HTTP/1.1\r\nHost: e\r\n\r\n"), 400);
        assert_eq!(status("PRI / HTTP/2.0\r\n\r\n"), 400);
        let known = req("PROPFIND / HTTP/1.1\r\nHost: e\r\n\r\n").expect("a known method");
        assert_eq!(known.expect("complete").method.as_str(), "PROPFIND");
    }

    #[test]
    fn connection_nominations_as_envoys_codec_checks_them() {
        let details = |connection: &str, extra: &str| {
            let raw =
                format!("GET / HTTP/1.1\r\nHost: e\r\nConnection: {connection}\r\n{extra}\r\n");
            req(&raw).err().map(|e| (e.status.as_u16(), e.details))
        };
        let rejected = Some((400, "http1.connection_header_rejected"));
        for bad in [
            "x-forwarded-for",
            "X-Forwarded-Proto",
            "close, x-forwarded-host",
            ":path",
        ] {
            assert_eq!(details(bad, ""), rejected, "{bad}");
        }
        assert_eq!(details("a,b,c,d,e,f,g,h,i,j", ""), rejected);
        assert_eq!(details("a,b,c,d,e,f,g,h,i", ""), None);
        assert_eq!(details("a,,b", ""), None);
        let long_te = format!("TE: {}\r\n", "x".repeat(256));
        assert_eq!(details("te", &long_te), rejected);
        assert_eq!(details("keep-alive, x-drop, te", "TE: trailers\r\n"), None);
        // An upgrade request is the upgrade's business, not this check's.
        assert_eq!(
            details("upgrade, x-forwarded-for", "Upgrade: websocket\r\n"),
            None
        );
    }

    #[test]
    fn unknown_method_is_refused_once_the_first_line_is_in() {
        let limits = HeadLimits {
            max_head_bytes: 60 * 1024,
            max_headers: 100,
        };
        assert!(matches!(
            parse_request(&mut BytesMut::from(&b"FOO / HT"[..]), limits),
            Ok(None)
        ));
        assert!(parse_request(&mut BytesMut::from(&b"FOO / HTTP/1.1\r\n"[..]), limits).is_err());
        assert!(matches!(
            parse_request(&mut BytesMut::from(&b"\r\nGET / HTTP/1.1\r\n"[..]), limits),
            Ok(None)
        ));
        let sorted = METHODS.windows(2).all(|w| w[0] < w[1]);
        assert!(sorted, "METHODS is sorted for the binary search");
    }

    #[test]
    fn header_names_are_the_same_from_the_cache() {
        let long = "x-".repeat(NameCache::MAX_LEN);
        for _ in 0..3 {
            for (raw, want) in [
                ("Content-Length", "content-length"),
                ("content-length", "content-length"),
                ("X-Custom-Thing", "x-custom-thing"),
                ("x-custom-thing", "x-custom-thing"),
                ("Host", "host"),
                (long.as_str(), long.as_str()),
            ] {
                let name = header_name(raw.as_bytes()).expect("valid");
                assert_eq!(name.as_str(), want, "{raw}");
            }
            for bad in ["", "a b", "x:y", "\u{e9}t\u{e9}"] {
                assert!(header_name(bad.as_bytes()).is_none(), "{bad:?}");
            }
        }
        // Names that share a slot replace each other and stay right.
        let names: Vec<String> = (0..200).map(|i| format!("x-n{i}")).collect();
        for _ in 0..2 {
            for n in &names {
                assert_eq!(header_name(n.as_bytes()).expect("valid").as_str(), n);
            }
        }
    }

    #[test]
    fn codec_headers_are_noted_whatever_their_case() {
        let head = req("POST / HTTP/1.1\r\nHost: a\r\nCONTENT-LENGTH: 3\r\nconnection: Keep-Alive\r\nExpect: 100-continue\r\nx-upgrade-ish: 1\r\n\r\n")
            .expect("valid")
            .expect("complete");
        assert_eq!(head.framing, BodyFraming::Length(3));
        assert!(head.expect_continue);
        assert!(head.keep_alive && !head.close);
        assert_eq!(head.upgrade, None);
        let chunked = req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
            .expect("valid")
            .expect("complete");
        assert_eq!(chunked.framing, BodyFraming::Chunked);
        let closing = resp(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n",
            LIMITS,
        )
        .expect("valid")
        .expect("complete");
        assert!(closing.close);
        assert_eq!(
            closing.codec,
            CodecHeaders {
                content_length: true,
                connection: true,
                length: Ok(Some(5)),
                tokens: ConnectionTokens {
                    close: true,
                    ..ConnectionTokens::default()
                },
                ..CodecHeaders::default()
            }
        );
        assert_eq!(
            response_framing(&closing, &Method::GET),
            Ok(BodyFraming::Length(5))
        );
        let until_close = resp(b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\n", LIMITS)
            .expect("valid")
            .expect("complete");
        assert_eq!(
            response_framing(&until_close, &Method::GET),
            Ok(BodyFraming::UntilClose)
        );
    }

    #[test]
    fn a_parsed_head_leaves_what_follows_it_in_the_buffer() {
        let mut names = String::new();
        for i in 0..40 {
            names.push_str(&format!("X-H{i}: v{i}\r\n"));
        }
        let raw =
            format!("POST /p HTTP/1.1\r\nHost: a\r\n{names}Content-Length: 4\r\n\r\nbodyGET /next");
        let mut buf = BytesMut::from(raw.as_bytes());
        let head = parse_request(&mut buf, LIMITS)
            .expect("valid")
            .expect("complete");
        assert_eq!(&buf[..], b"bodyGET /next");
        assert_eq!(head.head_len, raw.len() - buf.len());
        assert_eq!(head.headers.len(), 42);
        assert_eq!(head.headers["x-h39"], "v39");
        assert_eq!(head.framing, BodyFraming::Length(4));
        // A partial head stays whole.
        let mut partial = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: a\r\n"[..]);
        assert!(
            parse_request(&mut partial, LIMITS)
                .expect("valid")
                .is_none()
        );
        assert_eq!(&partial[..], &b"GET / HTTP/1.1\r\nHost: a\r\n"[..]);
        let mut resp = BytesMut::from(&b"HTTP/1.1 201 Made It\r\nX-A:  a \r\n\r\nrest"[..]);
        let head = parse_response(&mut resp, LIMITS)
            .expect("valid")
            .expect("complete");
        assert_eq!(&resp[..], b"rest");
        assert_eq!(head.reason.as_deref(), Some(&b"Made It"[..]));
        assert_eq!(head.headers["x-a"], "a");
    }

    #[test]
    fn limits_give_431() {
        let many: String = (0..101).map(|i| format!("h{i}: v\r\n")).collect();
        assert_eq!(status(&format!("GET / HTTP/1.1\r\n{many}\r\n")), 431);
        let big = format!("GET / HTTP/1.1\r\nx: {}\r\n\r\n", "a".repeat(61 * 1024));
        assert_eq!(status(&big), 431);
    }

    #[test]
    fn http10_defaults_to_close() {
        let h = req("GET / HTTP/1.0\r\n\r\n")
            .expect("ok")
            .expect("complete");
        assert!(h.close);
        let h = req("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .expect("ok")
            .expect("complete");
        assert!(!h.close);
    }

    #[test]
    fn response_header_count_limits() {
        let head = |n: usize| {
            let mut raw = String::from("HTTP/1.1 200 OK\r\n");
            for i in 0..n {
                raw.push_str(&format!("x-h{i}: {i}\r\n"));
            }
            raw.push_str("\r\n");
            raw
        };
        let limits = |max_headers| HeadLimits {
            max_head_bytes: 60 * 1024,
            max_headers,
        };
        // More headers than the first, small set of slots: parsed in full.
        let big = resp(head(90).as_bytes(), limits(100)).expect("parsed");
        assert_eq!(big.expect("complete").headers.len(), 90);
        assert_eq!(
            resp(head(101).as_bytes(), limits(100)).err(),
            Some(ResponseError::TooLarge)
        );
        assert!(resp(head(20).as_bytes(), limits(20)).is_ok());
        assert_eq!(
            resp(head(21).as_bytes(), limits(20)).err(),
            Some(ResponseError::TooLarge)
        );
    }

    #[test]
    fn response_framing_rules() {
        let r = resp(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", LIMITS)
            .expect("ok")
            .expect("complete");
        assert_eq!(
            response_framing(&r, &Method::GET),
            Ok(BodyFraming::Length(3))
        );
        assert_eq!(response_framing(&r, &Method::HEAD), Ok(BodyFraming::Empty));
        let r = resp(b"HTTP/1.1 200 OK\r\n\r\n", LIMITS)
            .expect("ok")
            .expect("complete");
        assert_eq!(
            response_framing(&r, &Method::GET),
            Ok(BodyFraming::UntilClose)
        );
    }
}
