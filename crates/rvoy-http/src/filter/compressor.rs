//! `envoy.filters.http.compressor`: compresses response bodies the client
//! accepts (and, with `request_direction_config`, request bodies), as Envoy
//! 1.40's compressor filter does.
//!
//! Response side ([`ActiveCompressor::encode_headers`]): a response is
//! compressed when compression is enabled (runtime flag default, per-route
//! `CompressorPerRoute`), it has a body, its `content-length` (when known)
//! reaches `min_content_length`, it is no upgrade, its content type is allowed,
//! it has no `cache-control: no-transform`, no `content-encoding` and no
//! compressing `transfer-encoding`, its ETag allows it, its status is not
//! listed as uncompressible, and `accept-encoding` negotiation (q-values,
//! `identity`, `*`, `choose_first`, shared by every compressor filter of the
//! chain) picks this filter's encoding. `vary: Accept-Encoding` is added to
//! every compressible response, even one the client did not ask to compress.
//!
//! Stats: `http.<stat_prefix>.compressor.<library name>.<library prefix>` then
//! `request.*`, `response.*` (directly under the prefix when the deprecated
//! top-level fields configure the response) and the accept-encoding stats.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{
    CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, ETAG, TRANSFER_ENCODING, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use rvoy_model::http_filters::compressor::{
    Compressor as Config, CompressorLibrary, CompressorPerRoute, DirectionConfig,
};
use rvoy_model::http_filters::{FilterConfig, HttpFilter, PerRouteConfig};
use rvoy_stats::{Counter, Scope};

use super::compression::Compressor;
use super::{Decoded, RouteContext};
use crate::stream::Request;

static X_ENVOY_COMPRESSION_STATUS: HeaderName =
    HeaderName::from_static("x-envoy-compression-status");
const ACCEPT_ENCODING_VARY: &str = "Accept-Encoding";

/// Counters of one direction.
#[derive(Debug)]
struct DirectionStats {
    compressed: Counter,
    not_compressed: Counter,
    total_uncompressed_bytes: Counter,
    total_compressed_bytes: Counter,
    content_length_too_small: Counter,
}

impl DirectionStats {
    fn new(scope: &Scope) -> Self {
        DirectionStats {
            compressed: scope.counter("compressed"),
            not_compressed: scope.counter("not_compressed"),
            total_uncompressed_bytes: scope.counter("total_uncompressed_bytes"),
            total_compressed_bytes: scope.counter("total_compressed_bytes"),
            content_length_too_small: scope.counter("content_length_too_small"),
        }
    }
}

/// The response-only counters (accept-encoding negotiation, ETag).
#[derive(Debug)]
struct ResponseStats {
    no_accept_header: Counter,
    header_identity: Counter,
    header_compressor_used: Counter,
    header_compressor_overshadowed: Counter,
    header_wildcard: Counter,
    header_not_valid: Counter,
    not_compressed_etag: Counter,
}

/// One compressor filter of the chain, as the negotiation sees it.
#[derive(Debug)]
struct Sibling {
    filter: HttpFilter,
    config: Arc<Config>,
}

/// The per-listener runtime of one compressor filter.
#[derive(Debug)]
pub struct CompressorRuntime {
    config: Arc<Config>,
    request_stats: DirectionStats,
    response_stats: DirectionStats,
    stats: ResponseStats,
    /// Every compressor filter of the chain, in order (this one included).
    siblings: Vec<Sibling>,
    /// This filter's position in `siblings`.
    index: usize,
}

impl CompressorRuntime {
    /// `filters`: the whole chain (for the negotiation between compressors);
    /// `hcm_scope`: `http.<stat_prefix>.`.
    pub fn new(config: &Arc<Config>, filters: &[HttpFilter], hcm_scope: &Scope) -> Self {
        let scope = hcm_scope.scope(&format!(
            "compressor.{}.{}",
            config.library_name,
            config.library.stats_prefix()
        ));
        let siblings: Vec<Sibling> = filters
            .iter()
            .filter_map(|f| match &f.config {
                FilterConfig::Compressor(c) => Some(Sibling {
                    filter: f.clone(),
                    config: c.clone(),
                }),
                _ => None,
            })
            .collect();
        let index = siblings
            .iter()
            .position(|s| Arc::ptr_eq(&s.config, config))
            .unwrap_or(0);
        let response_scope = if config.response_stats_nested {
            scope.scope("response.")
        } else {
            scope.scope("")
        };
        CompressorRuntime {
            config: config.clone(),
            request_stats: DirectionStats::new(&scope.scope("request.")),
            response_stats: DirectionStats::new(&response_scope),
            stats: ResponseStats {
                no_accept_header: scope.counter("no_accept_header"),
                header_identity: scope.counter("header_identity"),
                header_compressor_used: scope.counter("header_compressor_used"),
                header_compressor_overshadowed: scope.counter("header_compressor_overshadowed"),
                header_wildcard: scope.counter("header_wildcard"),
                header_not_valid: scope.counter("header_not_valid"),
                not_compressed_etag: scope.counter("not_compressed_etag"),
            },
            siblings,
            index,
        }
    }
}

/// How the accept-encoding negotiation ended (Envoy's `HeaderStat`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderStat {
    NotValid,
    Identity,
    Wildcard,
    ValidCompressor,
}

/// The encoding chosen for a response, shared by the compressor filters of
/// the chain: the first one to negotiate decides for all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodingDecision {
    pub encoding: String,
    pub stat: HeaderStat,
}

/// The compressor state of one request.
pub struct ActiveCompressor {
    rt: Arc<CompressorRuntime>,
    accept_encoding: Option<HeaderValue>,
    per_route: Option<Arc<CompressorPerRoute>>,
    /// Bit `i`: compressor sibling `i` runs for this route.
    registered: u64,
    response: Option<Box<Compressor>>,
    request: Option<Box<Compressor>>,
}

/// The request hook: remembers `accept-encoding`, removes it when asked, and
/// starts compressing the request body when the request direction applies.
pub fn decode_headers(
    rt: &Arc<CompressorRuntime>,
    name: &str,
    ctx: RouteContext<'_>,
    req: &mut Request,
) -> (ActiveCompressor, Decoded) {
    let per_route = ctx.configs(name).find_map(|c| match c {
        PerRouteConfig::Compressor(p) => Some(p.clone()),
        _ => None,
    });
    let mut registered = 0u64;
    for (i, s) in rt.siblings.iter().enumerate().take(64) {
        if ctx.enabled(&s.filter) {
            registered |= 1 << i;
        }
    }
    let mut active = ActiveCompressor {
        rt: rt.clone(),
        accept_encoding: req.headers.get(http::header::ACCEPT_ENCODING).cloned(),
        per_route,
        registered,
        response: None,
        request: None,
    };
    if active.response_enabled() && active.remove_accept_encoding() {
        req.headers.remove(http::header::ACCEPT_ENCODING);
    }
    active.start_request(req);
    (active, Decoded::Continue)
}

impl ActiveCompressor {
    fn config(&self) -> &Config {
        &self.rt.config
    }

    fn library(&self) -> &CompressorLibrary {
        match self.per_route.as_ref().and_then(|p| p.library.as_deref()) {
            Some(lib) => lib,
            None => &self.rt.config.library,
        }
    }

    fn content_encoding(&self) -> &'static str {
        self.library().content_encoding()
    }

    fn response_enabled(&self) -> bool {
        self.per_route
            .as_ref()
            .and_then(|p| p.response_enabled)
            .unwrap_or(self.config().response.common.enabled)
    }

    fn remove_accept_encoding(&self) -> bool {
        self.per_route
            .as_ref()
            .and_then(|p| p.remove_accept_encoding_header)
            .unwrap_or(self.config().response.remove_accept_encoding_header)
    }

    /// Whether the request body is being compressed.
    pub fn compresses_request(&self) -> bool {
        self.request.is_some()
    }

    fn start_request(&mut self, req: &mut Request) {
        let stats = &self.rt.request_stats;
        let eligible = match &self.rt.config.request {
            Some(rc) => {
                req.has_body
                    && rc.enabled
                    && !crate::forwarding::is_upgrade(&req.headers)
                    && min_length_ok(&req.headers, rc, stats)
                    && content_type_allowed(&req.headers, rc)
                    && !req.headers.contains_key(CONTENT_ENCODING)
                    && transfer_encoding_allowed(&req.headers, self.content_encoding())
            }
            None => false,
        };
        if !eligible {
            stats.not_compressed.inc();
            return;
        }
        match Compressor::new(self.library()) {
            Ok(c) => {
                req.headers.remove(CONTENT_LENGTH);
                req.headers.insert(
                    CONTENT_ENCODING,
                    HeaderValue::from_static(self.content_encoding()),
                );
                stats.compressed.inc();
                self.request = Some(Box::new(c));
            }
            Err(e) => {
                rvoy_log::warn!(rvoy_log::Component::Http, "request compressor: {e}");
                stats.not_compressed.inc();
            }
        }
    }

    /// Compresses a piece of the request body.
    pub fn decode_data(&mut self, data: Bytes, end_stream: bool) -> Bytes {
        let Some(c) = self.request.as_mut() else {
            return data;
        };
        let out = run(c, &data, end_stream, &self.rt.request_stats);
        if end_stream || out.is_none() {
            self.request = None;
        }
        out.unwrap_or_default()
    }

    /// The response-head hook. `decision` is the negotiation result shared
    /// by the compressor filters of this response.
    pub fn encode_headers(
        &mut self,
        status: StatusCode,
        headers: &mut HeaderMap,
        end_stream: bool,
        decision: &mut Option<EncodingDecision>,
    ) {
        if self.config().response.status_header_enabled {
            self.encode_headers_with_status(status, headers, end_stream, decision);
            return;
        }
        let rc = &self.config().response;
        let stats = &self.rt.response_stats;
        let enabled_and_big_enough =
            self.response_enabled() && min_length_ok(headers, &rc.common, stats);
        let compressible = enabled_and_big_enough
            && !is_upgrade(status, headers)
            && content_type_allowed(headers, &rc.common)
            && !has_no_transform(headers)
            && self.etag_allowed_logged(headers)
            && !headers.contains_key(CONTENT_ENCODING)
            && !rc.uncompressible_response_codes.contains(&status.as_u16());
        if !end_stream
            && enabled_and_big_enough
            && self.accept_encoding_allowed(headers, decision)
            && compressible
            && transfer_encoding_allowed(headers, self.content_encoding())
            && self.start_response(headers).is_some()
        {
            self.rt.response_stats.compressed.inc();
        } else {
            self.rt.response_stats.not_compressed.inc();
        }
        if compressible {
            insert_vary(headers);
        }
    }

    /// Envoy's `encodeHeadersWithStatusHeader`: the checks in the order that
    /// names the reason in `x-envoy-compression-status`.
    fn encode_headers_with_status(
        &mut self,
        status: StatusCode,
        headers: &mut HeaderMap,
        end_stream: bool,
        decision: &mut Option<EncodingDecision>,
    ) {
        let rt = self.rt.clone();
        let rc = &rt.config.response;
        let stats = &rt.response_stats;
        let base = self.response_enabled()
            && !is_upgrade(status, headers)
            && !has_no_transform(headers)
            && !headers.contains_key(CONTENT_ENCODING);
        let compressible = base
            && min_length_ok(headers, &rc.common, stats)
            && content_type_allowed(headers, &rc.common)
            && self.etag_allowed(headers)
            && !rc.uncompressible_response_codes.contains(&status.as_u16());
        if compressible {
            insert_vary(headers);
        }
        let encoding = self.content_encoding();
        if end_stream || !base || !transfer_encoding_allowed(headers, encoding) {
            stats.not_compressed.inc();
            return;
        }
        let reason = if !min_length_ok(headers, &rc.common, stats) {
            Some("ContentLengthTooSmall")
        } else if !content_type_allowed(headers, &rc.common) {
            Some("ContentTypeNotAllowed")
        } else if !self.etag_allowed(headers) {
            rt.stats.not_compressed_etag.inc();
            Some("EtagNotAllowed")
        } else if rc.uncompressible_response_codes.contains(&status.as_u16()) {
            Some("StatusCodeNotAllowed")
        } else {
            None
        };
        if let Some(reason) = reason {
            add_status_header(headers, &format!("{encoding};{reason}"));
            stats.not_compressed.inc();
            return;
        }
        if !self.accept_encoding_allowed(headers, decision) {
            stats.not_compressed.inc();
            return;
        }
        let original = headers
            .get(CONTENT_LENGTH)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        if self.start_response(headers).is_none() {
            stats.not_compressed.inc();
            return;
        }
        stats.compressed.inc();
        add_status_header(
            headers,
            &format!("{encoding};Compressed;OriginalLength={original}"),
        );
    }

    /// Creates the response compressor and rewrites the head for it.
    fn start_response(&mut self, headers: &mut HeaderMap) -> Option<()> {
        let c = match Compressor::new(self.library()) {
            Ok(c) => c,
            Err(e) => {
                rvoy_log::warn!(rvoy_log::Component::Http, "response compressor: {e}");
                return None;
            }
        };
        if self.config().response.weaken_etag_on_compress {
            weaken_etag(headers);
        } else {
            sanitize_etag(headers);
        }
        headers.remove(CONTENT_LENGTH);
        headers.insert(
            CONTENT_ENCODING,
            HeaderValue::from_static(self.content_encoding()),
        );
        self.response = Some(Box::new(c));
        Some(())
    }

    fn etag_allowed(&self, headers: &HeaderMap) -> bool {
        let rc = &self.config().response;
        rc.weaken_etag_on_compress || !(rc.disable_on_etag_header && headers.contains_key(ETAG))
    }

    fn etag_allowed_logged(&self, headers: &HeaderMap) -> bool {
        let allowed = self.etag_allowed(headers);
        if !allowed {
            self.rt.stats.not_compressed_etag.inc();
        }
        allowed
    }

    /// Envoy's `isAcceptEncodingAllowed`: negotiates once per response (the
    /// first compressor filter to ask decides for all) and counts the result.
    fn accept_encoding_allowed(
        &self,
        headers: &HeaderMap,
        decision: &mut Option<EncodingDecision>,
    ) -> bool {
        let Some(accept) = &self.accept_encoding else {
            self.rt.stats.no_accept_header.inc();
            return false;
        };
        let d = match decision {
            Some(d) => d,
            None => decision.insert(self.choose_encoding(accept.as_bytes(), headers)),
        };
        let should = d.encoding.eq_ignore_ascii_case(self.content_encoding());
        let s = &self.rt.stats;
        match d.stat {
            HeaderStat::ValidCompressor if should => s.header_compressor_used.inc(),
            HeaderStat::ValidCompressor => s.header_compressor_overshadowed.inc(),
            HeaderStat::Identity => s.header_identity.inc(),
            HeaderStat::Wildcard => s.header_wildcard.inc(),
            HeaderStat::NotValid => s.header_not_valid.inc(),
        }
        should
    }

    /// Envoy's `chooseEncoding` over the compressor filters of the chain.
    fn choose_encoding(&self, accept: &[u8], headers: &HeaderMap) -> EncodingDecision {
        let media = media_type(headers);
        let mut allowed: Vec<Allowed> = Vec::new();
        let mut count = 0u32;
        for (i, s) in self.rt.siblings.iter().enumerate() {
            if i >= 64 || self.registered & (1 << i) == 0 {
                continue;
            }
            if let Some(m) = media
                && !m.is_empty()
                && !s.config.response.common.content_types.allows(m)
            {
                continue;
            }
            let encoding = if i == self.rt.index {
                self.content_encoding()
            } else {
                s.config.library.content_encoding()
            };
            if !allowed.iter().any(|a| a.encoding == encoding) {
                insert_sorted(
                    &mut allowed,
                    Allowed {
                        encoding: encoding.to_owned(),
                        registration: count,
                        choose_first: s.config.choose_first,
                    },
                );
                count += 1;
            }
        }
        negotiate(accept, allowed)
    }

    /// Compresses a piece of the response body.
    pub fn encode_data(&mut self, data: Bytes, end_stream: bool) -> Bytes {
        let Some(c) = self.response.as_mut() else {
            return data;
        };
        let out = run(c, &data, end_stream, &self.rt.response_stats);
        if end_stream || out.is_none() {
            self.response = None;
        }
        out.unwrap_or_default()
    }

    /// Trailers end the response: `data` (what filters after this one still
    /// held) and the end of the compressed body.
    pub fn encode_trailers(&mut self, data: Bytes) -> Bytes {
        self.encode_data(data, true)
    }
}

/// Compresses through `c`, counting bytes in and out; `None` if the library
/// failed (the stream is then cut short).
fn run(c: &mut Compressor, data: &[u8], end: bool, stats: &DirectionStats) -> Option<Bytes> {
    stats.total_uncompressed_bytes.add(data.len() as u64);
    match c.compress(data, end) {
        Ok(out) => {
            stats.total_compressed_bytes.add(out.len() as u64);
            Some(out)
        }
        Err(e) => {
            rvoy_log::warn!(rvoy_log::Component::Http, "{e}");
            None
        }
    }
}

/// An encoding the chain can produce, in `std::map` order (by name), as
/// Envoy keeps them while negotiating.
#[derive(Debug)]
struct Allowed {
    encoding: String,
    registration: u32,
    choose_first: bool,
}

fn insert_sorted(v: &mut Vec<Allowed>, a: Allowed) {
    let at = v.partition_point(|x| x.encoding < a.encoding);
    v.insert(at, a);
}

/// Envoy's negotiation between the `accept-encoding` value and the encodings
/// the chain can produce, quirks included (a tie looks the encoding up with
/// `std::map::operator[]`, which adds it).
fn negotiate(accept: &[u8], mut allowed: Vec<Allowed>) -> EncodingDecision {
    let identity = || EncodingDecision {
        encoding: "identity".to_owned(),
        stat: HeaderStat::NotValid,
    };
    let accept = String::from_utf8_lossy(accept);
    let mut pairs: Vec<(&str, f32)> = Vec::new();
    for token in accept.split(',').filter(|t| !t.is_empty()) {
        let (name, params) = match token.split_once(';') {
            Some((n, p)) => (n, Some(p)),
            None => (token, None),
        };
        let mut q = 1f32;
        if let Some((key, value)) = params.and_then(|p| p.split_once('='))
            && key.trim_matches(is_ws).eq_ignore_ascii_case("q")
        {
            match value.trim_matches(is_ws).parse::<f32>() {
                Ok(v) => q = v,
                // An unparseable q-value drops the whole token.
                Err(_) => continue,
            }
        }
        let name = name.trim_matches(is_ws);
        pairs.push((name, q));
        if q == 0.0 {
            allowed.retain(|a| a.encoding != name);
        }
    }
    if pairs.is_empty() || allowed.is_empty() {
        return identity();
    }
    let mut choice: (&str, f32) = ("identity", 0.0);
    for &(name, q) in &pairs {
        let known = allowed.iter().any(|a| a.encoding == name);
        if !(known || name == "identity" || name == "*") {
            continue;
        }
        let better = q > choice.1
            || (q == choice.1 && {
                // `allowed_compressors[name]`: inserts a default entry.
                match allowed.iter().find(|a| a.encoding == name) {
                    Some(a) => a.choose_first,
                    None => {
                        insert_sorted(
                            &mut allowed,
                            Allowed {
                                encoding: name.to_owned(),
                                registration: 0,
                                choose_first: false,
                            },
                        );
                        false
                    }
                }
            });
        if better {
            choice = (name, q);
        }
    }
    if choice.1 == 0.0 {
        return identity();
    }
    if choice.0 == "identity" {
        return EncodingDecision {
            encoding: "identity".to_owned(),
            stat: HeaderStat::Identity,
        };
    }
    if choice.0 == "*" {
        // The first registered (by registration order; ties in name order).
        let mut first: Option<&Allowed> = None;
        for a in &allowed {
            if first.is_none_or(|f| a.registration < f.registration) {
                first = Some(a);
            }
        }
        return EncodingDecision {
            encoding: first.map(|a| a.encoding.clone()).unwrap_or_default(),
            stat: HeaderStat::Wildcard,
        };
    }
    EncodingDecision {
        encoding: choice.0.to_owned(),
        stat: HeaderStat::ValidCompressor,
    }
}

/// An upgrade response (Envoy's `isUpgrade`: `upgrade` with `connection:
/// upgrade`; a `101` is one whatever headers are left).
fn is_upgrade(status: StatusCode, headers: &HeaderMap) -> bool {
    status == StatusCode::SWITCHING_PROTOCOLS || crate::forwarding::is_upgrade(headers)
}

/// Envoy's `StringUtil::trim` whitespace.
fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\x0b' | '\x0c' | '\n' | '\r')
}

/// The media type of `content-type` (before `;`, trimmed), if any.
fn media_type(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    Some(v.split(';').next().unwrap_or("").trim_matches(is_ws))
}

fn content_type_allowed(headers: &HeaderMap, dc: &DirectionConfig) -> bool {
    match headers.get(CONTENT_TYPE) {
        Some(v) => {
            let raw = String::from_utf8_lossy(v.as_bytes());
            let media = raw.split(';').next().unwrap_or("").trim_matches(is_ws);
            dc.content_types.allows(media)
        }
        None => true,
    }
}

/// A known `content-length` must reach the minimum (counted when it does not).
fn min_length_ok(headers: &HeaderMap, dc: &DirectionConfig, stats: &DirectionStats) -> bool {
    let Some(v) = headers.get(CONTENT_LENGTH) else {
        return true;
    };
    let ok = std::str::from_utf8(v.as_bytes())
        .ok()
        .and_then(|s| s.trim_matches(is_ws).parse::<u64>().ok())
        .is_some_and(|n| n >= dc.min_content_length);
    if !ok {
        stats.content_length_too_small.inc();
    }
    ok
}

fn has_no_transform(headers: &HeaderMap) -> bool {
    headers.get(CACHE_CONTROL).is_some_and(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .any(|t| trim_bytes(t).eq_ignore_ascii_case(b"no-transform"))
    })
}

/// No compressing transfer coding (any Envoy knows, or this filter's own).
fn transfer_encoding_allowed(headers: &HeaderMap, own: &str) -> bool {
    headers.get_all(TRANSFER_ENCODING).iter().all(|v| {
        v.as_bytes().split(|b| *b == b',').all(|t| {
            let t = trim_bytes(t);
            !["gzip", "br", "deflate", "compress", "zstd", own]
                .iter()
                .any(|e| t.eq_ignore_ascii_case(e.as_bytes()))
        })
    })
}

fn trim_bytes(b: &[u8]) -> &[u8] {
    let ws = |c: &u8| matches!(c, b' ' | b'\t' | 0x0b | 0x0c | b'\n' | b'\r');
    let start = b.iter().position(|c| !ws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !ws(c)).map_or(start, |e| e + 1);
    &b[start..end]
}

fn is_weak_etag(v: &[u8]) -> bool {
    v.len() >= 2 && (v[0] == b'w' || v[0] == b'W') && v[1] == b'/'
}

/// Strong ETags do not survive compression; weak ones do.
fn sanitize_etag(headers: &mut HeaderMap) {
    if headers
        .get(ETAG)
        .is_some_and(|v| !is_weak_etag(v.as_bytes()))
    {
        headers.remove(ETAG);
    }
}

/// `weaken_etag_on_compress`: a strong ETag becomes weak (`W/` prefix).
fn weaken_etag(headers: &mut HeaderMap) {
    let Some(v) = headers.get(ETAG) else {
        return;
    };
    if is_weak_etag(v.as_bytes()) {
        return;
    }
    let mut weak = Vec::with_capacity(v.len() + 2);
    weak.extend_from_slice(b"W/");
    weak.extend_from_slice(v.as_bytes());
    if let Ok(w) = HeaderValue::from_bytes(&weak) {
        headers.insert(ETAG, w);
    }
}

/// Adds `Accept-Encoding` to `vary` unless it is listed already.
fn insert_vary(headers: &mut HeaderMap) {
    let existing: Vec<&[u8]> = headers.get_all(VARY).iter().map(|v| v.as_bytes()).collect();
    if existing.is_empty() {
        headers.insert(VARY, HeaderValue::from_static(ACCEPT_ENCODING_VARY));
        return;
    }
    let joined = existing.join(&b","[..]);
    if joined
        .split(|b| *b == b',')
        .any(|t| trim_bytes(t) == ACCEPT_ENCODING_VARY.as_bytes())
    {
        return;
    }
    let mut v = joined;
    v.extend_from_slice(b", ");
    v.extend_from_slice(ACCEPT_ENCODING_VARY.as_bytes());
    if let Ok(v) = HeaderValue::from_bytes(&v) {
        headers.insert(VARY, v);
    }
}

fn add_status_header(headers: &mut HeaderMap, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.append(X_ENVOY_COMPRESSION_STATUS.clone(), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(list: &[(&str, bool)]) -> Vec<Allowed> {
        let mut v = Vec::new();
        for (i, (e, first)) in list.iter().enumerate() {
            insert_sorted(
                &mut v,
                Allowed {
                    encoding: (*e).to_owned(),
                    registration: i as u32,
                    choose_first: *first,
                },
            );
        }
        v
    }

    fn pick(accept: &str, list: &[(&str, bool)]) -> (String, HeaderStat) {
        let d = negotiate(accept.as_bytes(), allowed(list));
        (d.encoding, d.stat)
    }

    #[test]
    fn negotiation_follows_envoy() {
        use HeaderStat::*;
        let gb = [("gzip", false), ("br", false)];
        assert_eq!(pick("gzip", &gb), ("gzip".into(), ValidCompressor));
        assert_eq!(pick("gzip, br", &gb), ("gzip".into(), ValidCompressor));
        assert_eq!(
            pick("br;q=0.5, gzip", &gb),
            ("gzip".into(), ValidCompressor)
        );
        assert_eq!(
            pick("br;q=1.0, gzip;q=0.5", &gb),
            ("br".into(), ValidCompressor)
        );
        assert_eq!(pick("*", &gb), ("gzip".into(), Wildcard));
        assert_eq!(pick("gzip;q=0, *", &gb), ("br".into(), Wildcard));
        assert_eq!(pick("identity", &gb), ("identity".into(), Identity));
        assert_eq!(pick("xyz", &gb), ("identity".into(), NotValid));
        assert_eq!(pick("", &gb), ("identity".into(), NotValid));
        assert_eq!(
            pick("gzip;q=0", &[("gzip", false)]),
            ("identity".into(), NotValid)
        );
        assert_eq!(pick("gzip;q=abc, br", &gb), ("br".into(), ValidCompressor));
        assert_eq!(pick(" GZIP ", &gb), ("identity".into(), NotValid));
        assert_eq!(
            pick("gzip; Q = 0.3 , br;q=0.2", &gb),
            ("gzip".into(), ValidCompressor)
        );
        // choose_first wins ties.
        assert_eq!(
            pick("gzip, br", &[("gzip", false), ("br", true)]),
            ("br".into(), ValidCompressor)
        );
        assert_eq!(pick("identity;q=0", &gb), ("identity".into(), NotValid));
        // Two wildcards: the second adds "*" itself, which sorts first.
        assert_eq!(pick("*, *", &gb), ("*".into(), Wildcard));
    }

    #[test]
    fn vary_is_appended_once() {
        let mut h = HeaderMap::new();
        insert_vary(&mut h);
        assert_eq!(h[VARY], "Accept-Encoding");
        insert_vary(&mut h);
        assert_eq!(h.get_all(VARY).iter().count(), 1);
        let mut h = HeaderMap::new();
        h.insert(VARY, HeaderValue::from_static("Origin"));
        insert_vary(&mut h);
        assert_eq!(h[VARY], "Origin, Accept-Encoding");
        let mut h = HeaderMap::new();
        h.insert(VARY, HeaderValue::from_static("accept-encoding"));
        insert_vary(&mut h);
        assert_eq!(h[VARY], "accept-encoding, Accept-Encoding");
    }

    #[test]
    fn etags() {
        let mut h = HeaderMap::new();
        h.insert(ETAG, HeaderValue::from_static("\"abc\""));
        weaken_etag(&mut h);
        assert_eq!(h[ETAG], "W/\"abc\"");
        weaken_etag(&mut h);
        assert_eq!(h[ETAG], "W/\"abc\"");
        sanitize_etag(&mut h);
        assert_eq!(h[ETAG], "W/\"abc\"");
        h.insert(ETAG, HeaderValue::from_static("\"abc\""));
        sanitize_etag(&mut h);
        assert!(h.get(ETAG).is_none());
    }

    fn active(accept: Option<&'static str>) -> (rvoy_stats::Store, ActiveCompressor) {
        use rvoy_model::http_filters::compressor::{
            ContentTypes, Gzip, GzipStrategy, ResponseDirection,
        };
        let store = rvoy_stats::Store::new();
        let config = Arc::new(Config {
            library_name: "lib".into(),
            library: CompressorLibrary::Gzip(Gzip {
                level: -1,
                strategy: GzipStrategy::Default,
                memory_level: 5,
                window_bits: 12,
                chunk_size: 4096,
            }),
            request: None,
            response: ResponseDirection {
                common: DirectionConfig {
                    enabled: true,
                    min_content_length: 30,
                    content_types: ContentTypes::Names(vec!["text/plain".into()]),
                },
                disable_on_etag_header: false,
                weaken_etag_on_compress: false,
                remove_accept_encoding_header: false,
                uncompressible_response_codes: Vec::new(),
                status_header_enabled: false,
            },
            response_stats_nested: false,
            choose_first: false,
        });
        let filter = HttpFilter {
            name: "c".into(),
            config: FilterConfig::Compressor(config.clone()),
            disabled_by_default: false,
        };
        let rt = Arc::new(CompressorRuntime::new(
            &config,
            &[filter],
            &store.scope("http.t."),
        ));
        let a = ActiveCompressor {
            rt,
            accept_encoding: accept.map(HeaderValue::from_static),
            per_route: None,
            registered: 1,
            response: None,
            request: None,
        };
        (store, a)
    }

    fn text_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("5000"));
        h.insert(ETAG, HeaderValue::from_static("\"strong\""));
        h
    }

    #[test]
    fn response_is_compressed_and_finished_before_trailers() {
        use std::io::Read as _;
        let (store, mut a) = active(Some("gzip"));
        let mut h = text_headers();
        let mut decision = None;
        a.encode_headers(StatusCode::OK, &mut h, false, &mut decision);
        assert_eq!(h[CONTENT_ENCODING], "gzip");
        assert_eq!(h[VARY], "Accept-Encoding");
        assert!(h.get(CONTENT_LENGTH).is_none());
        assert!(h.get(ETAG).is_none());
        assert_eq!(
            decision,
            Some(EncodingDecision {
                encoding: "gzip".into(),
                stat: HeaderStat::ValidCompressor
            })
        );
        let body = "abc".repeat(2000);
        let mut out = a
            .encode_data(Bytes::from(body[..3000].to_owned()), false)
            .to_vec();
        out.extend_from_slice(&a.encode_data(Bytes::from(body[3000..].to_owned()), false));
        out.extend_from_slice(&a.encode_trailers(Bytes::new()));
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&out[..])
            .read_to_end(&mut back)
            .expect("valid gzip");
        assert_eq!(back, body.as_bytes());
        // The stream is over: later data passes untouched.
        assert_eq!(a.encode_data(Bytes::from_static(b"x"), true), "x");
        let stats = store.snapshot();
        let get = |n: &str| stats.counter(n).map(|c| c.value());
        assert_eq!(get("http.t.compressor.lib.gzip.compressed"), Some(1));
        assert_eq!(
            get("http.t.compressor.lib.gzip.total_uncompressed_bytes"),
            Some(6000)
        );
        assert_eq!(
            get("http.t.compressor.lib.gzip.header_compressor_used"),
            Some(1)
        );
    }

    #[test]
    fn bodiless_and_upgrade_responses_are_not_compressed() {
        for (status, end_stream, vary) in [
            (StatusCode::OK, true, true),
            (StatusCode::NO_CONTENT, true, true),
            (StatusCode::SWITCHING_PROTOCOLS, false, false),
        ] {
            let (_store, mut a) = active(Some("gzip"));
            let mut h = text_headers();
            a.encode_headers(status, &mut h, end_stream, &mut None);
            assert!(h.get(CONTENT_ENCODING).is_none(), "{status}");
            assert_eq!(h.get(VARY).is_some(), vary, "{status}");
            assert_eq!(h[ETAG], "\"strong\"");
            assert!(a.response.is_none());
        }
        let (_store, mut a) = active(None);
        let mut h = text_headers();
        a.encode_headers(StatusCode::OK, &mut h, false, &mut None);
        assert!(h.get(CONTENT_ENCODING).is_none());
        assert_eq!(h[VARY], "Accept-Encoding");
    }

    #[test]
    fn header_checks() {
        let mut h = HeaderMap::new();
        h.insert(
            CACHE_CONTROL,
            HeaderValue::from_static("max-age=1, No-Transform"),
        );
        assert!(has_no_transform(&h));
        h.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        assert!(transfer_encoding_allowed(&h, "gzip"));
        h.insert(TRANSFER_ENCODING, HeaderValue::from_static("gzip, chunked"));
        assert!(!transfer_encoding_allowed(&h, "br"));
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(" text/html ; charset=utf-8"),
        );
        assert_eq!(media_type(&h), Some("text/html"));
    }
}
