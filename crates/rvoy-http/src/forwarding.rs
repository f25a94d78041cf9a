//! The headers the connection manager adds, trusts or strips on the way in and
//! out (Envoy's `ConnectionManagerUtility`): hop-by-hop headers,
//! `x-forwarded-for`/`-proto`, internal vs external requests and the
//! `x-envoy-*` headers only internal callers may set, `x-request-id`, `via`,
//! `x-envoy-external-address`, `x-forwarded-client-cert` and `server`.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use http::header::{CONNECTION, HeaderName, HeaderValue, TE, TRANSFER_ENCODING, UPGRADE};
use rvoy_model::hcm::{ForwardClientCert, HttpConnectionManager, ServerHeader};

/// Header names the forwarding logic uses.
pub mod names {
    use http::HeaderName;

    pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
    pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
    pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
    pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
    pub static X_ENVOY_INTERNAL: HeaderName = HeaderName::from_static("x-envoy-internal");
    pub static X_ENVOY_EXTERNAL_ADDRESS: HeaderName =
        HeaderName::from_static("x-envoy-external-address");
    pub static X_ENVOY_ORIGINAL_PATH: HeaderName = HeaderName::from_static("x-envoy-original-path");
    pub static X_ENVOY_ORIGINAL_HOST: HeaderName = HeaderName::from_static("x-envoy-original-host");
    pub static X_ENVOY_EXPECTED_RQ_TIMEOUT_MS: HeaderName =
        HeaderName::from_static("x-envoy-expected-rq-timeout-ms");
    pub static X_ENVOY_UPSTREAM_SERVICE_TIME: HeaderName =
        HeaderName::from_static("x-envoy-upstream-service-time");
    pub static X_ENVOY_ATTEMPT_COUNT: HeaderName = HeaderName::from_static("x-envoy-attempt-count");
    pub static X_ENVOY_IS_TIMEOUT_RETRY: HeaderName =
        HeaderName::from_static("x-envoy-is-timeout-retry");
    pub static X_ENVOY_OVERLOADED: HeaderName = HeaderName::from_static("x-envoy-overloaded");
    pub static X_ENVOY_UPSTREAM_CANARY: HeaderName =
        HeaderName::from_static("x-envoy-upstream-canary");
    pub static X_ENVOY_RETRY_ON: HeaderName = HeaderName::from_static("x-envoy-retry-on");
    pub static X_ENVOY_RETRY_GRPC_ON: HeaderName = HeaderName::from_static("x-envoy-retry-grpc-on");
    pub static X_ENVOY_MAX_RETRIES: HeaderName = HeaderName::from_static("x-envoy-max-retries");
    pub static X_ENVOY_RETRIABLE_STATUS_CODES: HeaderName =
        HeaderName::from_static("x-envoy-retriable-status-codes");
    pub static X_ENVOY_RETRIABLE_HEADER_NAMES: HeaderName =
        HeaderName::from_static("x-envoy-retriable-header-names");
    pub static X_ENVOY_UPSTREAM_RQ_TIMEOUT_MS: HeaderName =
        HeaderName::from_static("x-envoy-upstream-rq-timeout-ms");
    pub static X_ENVOY_UPSTREAM_RQ_PER_TRY_TIMEOUT_MS: HeaderName =
        HeaderName::from_static("x-envoy-upstream-rq-per-try-timeout-ms");
    pub static X_ENVOY_UPSTREAM_RQ_TIMEOUT_ALT_RESPONSE: HeaderName =
        HeaderName::from_static("x-envoy-upstream-rq-timeout-alt-response");
    pub static X_ENVOY_UPSTREAM_ALT_STAT_NAME: HeaderName =
        HeaderName::from_static("x-envoy-upstream-alt-stat-name");
    pub static X_ENVOY_FORCE_TRACE: HeaderName = HeaderName::from_static("x-envoy-force-trace");
    pub static X_ENVOY_IP_TAGS: HeaderName = HeaderName::from_static("x-envoy-ip-tags");
    pub static X_ENVOY_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-envoy-original-url");
    pub static X_ENVOY_HEDGE_ON_PER_TRY_TIMEOUT: HeaderName =
        HeaderName::from_static("x-envoy-hedge-on-per-try-timeout");
    pub static X_ENVOY_DECORATOR_OPERATION: HeaderName =
        HeaderName::from_static("x-envoy-decorator-operation");
    pub static X_ENVOY_DOWNSTREAM_SERVICE_CLUSTER: HeaderName =
        HeaderName::from_static("x-envoy-downstream-service-cluster");
    pub static X_ENVOY_DOWNSTREAM_SERVICE_NODE: HeaderName =
        HeaderName::from_static("x-envoy-downstream-service-node");
    pub static X_FORWARDED_CLIENT_CERT: HeaderName =
        HeaderName::from_static("x-forwarded-client-cert");
    pub static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
    pub static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
    pub static VIA: HeaderName = HeaderName::from_static("via");
    pub static X_ENVOY_RATELIMITED: HeaderName = HeaderName::from_static("x-envoy-ratelimited");
}

use names::*;

/// Where a connection comes from, as the forwarding logic needs it.
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    /// The client's address; `None` for Unix domain sockets.
    pub remote: Option<SocketAddr>,
    pub tls: bool,
    /// Envoy's "local address" of the machine (first non-loopback interface),
    /// appended to XFF for loopback peers.
    pub machine_address: Option<IpAddr>,
}

/// What the request mutation decided.
#[derive(Clone, Copy, Debug)]
pub struct Forwarding {
    /// The trusted client address (`%DOWNSTREAM_REMOTE_ADDRESS%`).
    pub remote: Option<SocketAddr>,
    pub internal: bool,
    pub edge: bool,
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|m| m.is_loopback()),
    }
}

/// The address `hops_from_end` entries before the end of the XFF list.
fn xff_address(headers: &HeaderMap, hops_from_end: usize) -> Option<IpAddr> {
    let mut all: Vec<&str> = Vec::new();
    for v in headers.get_all(&X_FORWARDED_FOR) {
        let Ok(s) = v.to_str() else { return None };
        all.extend(s.split(',').map(str::trim));
    }
    let idx = all.len().checked_sub(1 + hops_from_end)?;
    all.get(idx)?.parse().ok()
}

/// Appends `ip` to `x-forwarded-for`; `present` says whether the request may
/// carry one already.
fn append_xff(headers: &mut HeaderMap, ip: IpAddr, present: bool) {
    let ip = ip.to_string();
    let existing = if present {
        headers.get(&X_FORWARDED_FOR)
    } else {
        None
    };
    let new = match existing {
        Some(existing) if !existing.is_empty() => {
            let mut s = existing.as_bytes().to_vec();
            s.push(b',');
            s.extend_from_slice(ip.as_bytes());
            HeaderValue::from_bytes(&s).ok()
        }
        _ => HeaderValue::from_str(&ip).ok(),
    };
    if let Some(v) = new {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
}

/// Appends to a comma-separated header (`via`).
pub fn append_comma(headers: &mut HeaderMap, name: &HeaderName, value: &HeaderValue) {
    let new = match headers.get(name) {
        Some(existing) if !existing.is_empty() => {
            let mut s = existing.as_bytes().to_vec();
            s.extend_from_slice(b", ");
            s.extend_from_slice(value.as_bytes());
            HeaderValue::from_bytes(&s).ok()
        }
        _ => Some(value.clone()),
    };
    if let Some(v) = new {
        headers.insert(name.clone(), v);
    }
}

/// Appends to a comma-separated header without a space (`x-forwarded-for`).
pub fn append_comma_no_space(headers: &mut HeaderMap, name: &HeaderName, value: &HeaderValue) {
    let new = match headers.get(name) {
        Some(existing) if !existing.is_empty() => {
            let mut s = existing.as_bytes().to_vec();
            s.push(b',');
            s.extend_from_slice(value.as_bytes());
            HeaderValue::from_bytes(&s).ok()
        }
        _ => Some(value.clone()),
    };
    if let Some(v) = new {
        headers.insert(name.clone(), v);
    }
}

/// Whether the request is an upgrade (`Connection: upgrade` + `Upgrade`).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(UPGRADE) && crate::h1::parse::connection_tokens(headers).2
}

/// Which of the headers the forwarding logic strips or consults a request or
/// response carries, found in one pass over its names.
///
/// Most requests carry none of them, and each `HeaderMap` lookup of a custom
/// name hashes the whole name: one scan of the (few) names present replaces
/// some thirty lookups. A flag that is clear means the header is absent; a
/// set flag means it may be present (a later removal can take it away).
#[derive(Clone, Copy, Default, Debug)]
struct Present {
    connection: bool,
    upgrade: bool,
    te: bool,
    transfer_encoding: bool,
    /// `keep-alive` or `proxy-connection`.
    legacy_hop_by_hop: bool,
    /// Any `x-envoy-*` header.
    x_envoy: bool,
    x_forwarded_for: bool,
    x_forwarded_proto: bool,
    x_request_id: bool,
    x_forwarded_client_cert: bool,
    /// A name of the route configuration's `internal_only_headers`.
    internal_only: bool,
    date: bool,
    grpc_status: bool,
}

/// What `mutate_response` saw of the response headers it did not change: the
/// caller's later checks skip the lookups of absent ones.
#[derive(Clone, Copy, Debug)]
pub struct ResponseSeen {
    /// `date` may be present.
    pub date: bool,
    /// `grpc-status` may be present.
    pub grpc_status: bool,
}

impl Present {
    /// One pass over the names. Their length sorts out almost every name
    /// before a comparison (the few names of a typical request cost a
    /// length check each, not a dozen comparisons).
    fn scan(headers: &HeaderMap, internal_only: &[HeaderName]) -> Present {
        let mut p = Present::default();
        for name in headers.keys() {
            let s = name.as_str();
            match s.len() {
                2 => p.te |= s == "te",
                4 => p.date |= s == "date",
                7 => p.upgrade |= s == "upgrade",
                10 => {
                    p.connection |= s == "connection";
                    p.legacy_hop_by_hop |= s == "keep-alive";
                }
                11 => p.grpc_status |= s == "grpc-status",
                12 => p.x_request_id |= s == "x-request-id",
                15 => p.x_forwarded_for |= s == "x-forwarded-for",
                16 => p.legacy_hop_by_hop |= s == "proxy-connection",
                17 => {
                    p.transfer_encoding |= s == "transfer-encoding";
                    p.x_forwarded_proto |= s == "x-forwarded-proto";
                }
                23 => p.x_forwarded_client_cert |= s == "x-forwarded-client-cert",
                _ => {}
            }
            p.x_envoy |= s.starts_with("x-envoy-");
            if !internal_only.is_empty() && internal_only.contains(name) {
                p.internal_only = true;
            }
        }
        p
    }
}

/// Envoy's `mutateRequestHeaders`, run once per request before routing.
pub fn mutate_request(
    headers: &mut HeaderMap,
    peer: &Peer,
    hcm: &HttpConnectionManager,
    internal_only_headers: &[HeaderName],
    new_request_id: impl FnOnce() -> HeaderValue,
) -> Forwarding {
    let present = Present::scan(headers, internal_only_headers);
    if (present.connection || present.upgrade || present.te) && !is_upgrade(headers) {
        if present.connection {
            // Headers the client nominated as hop-by-hop go with `connection`
            // (`te` is handled by `sanitize_te`).
            let nominated: Vec<HeaderName> = headers
                .get_all(CONNECTION)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .filter(|t| {
                    !t.is_empty()
                        && !t.eq_ignore_ascii_case("te")
                        && !t.eq_ignore_ascii_case("close")
                        && !t.eq_ignore_ascii_case("keep-alive")
                })
                .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
                .collect();
            for name in nominated {
                headers.remove(name);
            }
            headers.remove(CONNECTION);
        }
        headers.remove(UPGRADE);
        sanitize_te(headers);
    }
    if present.x_envoy {
        headers.remove(&X_ENVOY_INTERNAL);
    }
    if present.legacy_hop_by_hop {
        headers.remove(&KEEP_ALIVE);
        headers.remove(&PROXY_CONNECTION);
    }
    if present.transfer_encoding {
        headers.remove(TRANSFER_ENCODING);
    }

    let scheme: &'static str = if peer.tls { "https" } else { "http" };
    let mut final_remote: Option<SocketAddr> = None;
    let mut allow_trusted_checks = false;
    // Whether `x-forwarded-proto` may be present: set once it is inserted.
    let mut has_xfp = present.x_forwarded_proto;
    if hcm.use_remote_address {
        allow_trusted_checks = !present.x_forwarded_for || !headers.contains_key(&X_FORWARDED_FOR);
        if hcm.xff_num_trusted_hops > 0 && present.x_forwarded_for {
            final_remote = xff_address(headers, hcm.xff_num_trusted_hops as usize - 1)
                .map(|ip| SocketAddr::new(ip, 0));
        }
        if final_remote.is_none() {
            final_remote = peer.remote;
        }
        if !hcm.skip_xff_append {
            match peer.remote {
                Some(r) if is_loopback(r.ip()) => {
                    if let Some(local) = peer.machine_address {
                        append_xff(headers, local, present.x_forwarded_for);
                    }
                }
                Some(r) => append_xff(headers, r.ip(), present.x_forwarded_for),
                None => {}
            }
        }
        if hcm.xff_num_trusted_hops == 0 || !has_xfp || !headers.contains_key(&X_FORWARDED_PROTO) {
            headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(scheme));
            has_xfp = true;
        }
    } else if present.x_forwarded_for {
        // Envoy's default original-IP detection: the XFF entry
        // `xff_num_trusted_hops` from the end names the client.
        if let Some(ip) = xff_address(headers, hcm.xff_num_trusted_hops as usize) {
            final_remote = Some(SocketAddr::new(ip, 0));
            let single = headers
                .get_all(&X_FORWARDED_FOR)
                .iter()
                .map(|v| v.as_bytes().split(|b| *b == b',').count())
                .sum::<usize>()
                == 1;
            allow_trusted_checks = single;
        }
    }
    if !has_xfp || !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(scheme));
    }

    let internal = allow_trusted_checks
        && match final_remote {
            Some(addr) => hcm.internal_cidrs.iter().any(|c| c.contains(addr.ip())),
            None => hcm.internal_unix_sockets && peer.remote.is_none(),
        };
    let edge = !internal && hcm.use_remote_address;
    if internal {
        headers.insert(X_ENVOY_INTERNAL.clone(), HeaderValue::from_static("true"));
    } else if present.x_envoy || present.internal_only {
        clean_internal_headers(headers, edge, internal_only_headers);
    }
    if edge
        && let Some(addr) = final_remote
        && let Ok(v) = HeaderValue::from_str(&addr.ip().to_string())
    {
        headers.insert(X_ENVOY_EXTERNAL_ADDRESS.clone(), v);
    }
    if hcm.generate_request_id {
        let force = edge && !hcm.preserve_external_request_id;
        if force || !present.x_request_id || !headers.contains_key(&X_REQUEST_ID) {
            headers.insert(X_REQUEST_ID.clone(), new_request_id());
        }
    }
    if let Some(via) = &hcm.via {
        append_comma(headers, &VIA, via);
    }
    if present.x_forwarded_client_cert {
        let strip = match hcm.forward_client_cert {
            ForwardClientCert::ForwardOnly => !peer.tls,
            ForwardClientCert::AlwaysForwardOnly => false,
            ForwardClientCert::AppendForward => !peer.tls,
            ForwardClientCert::Sanitize | ForwardClientCert::SanitizeSet => true,
        };
        if strip {
            headers.remove(&X_FORWARDED_CLIENT_CERT);
        }
    }
    Forwarding {
        remote: final_remote.or(peer.remote),
        internal,
        edge,
    }
}

/// `te` keeps only the `trailers` token.
fn sanitize_te(headers: &mut HeaderMap) {
    let Some(te) = headers.get(TE) else { return };
    let keep = te
        .as_bytes()
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers"));
    if keep {
        headers.insert(TE, HeaderValue::from_static("trailers"));
    } else {
        headers.remove(TE);
    }
}

fn clean_internal_headers(headers: &mut HeaderMap, edge: bool, internal_only: &[HeaderName]) {
    if edge {
        headers.remove(&X_ENVOY_DECORATOR_OPERATION);
        headers.remove(&X_ENVOY_DOWNSTREAM_SERVICE_CLUSTER);
        headers.remove(&X_ENVOY_DOWNSTREAM_SERVICE_NODE);
    }
    for h in [
        &X_ENVOY_RETRIABLE_STATUS_CODES,
        &X_ENVOY_RETRIABLE_HEADER_NAMES,
        &X_ENVOY_RETRY_ON,
        &X_ENVOY_RETRY_GRPC_ON,
        &X_ENVOY_MAX_RETRIES,
        &X_ENVOY_UPSTREAM_ALT_STAT_NAME,
        &X_ENVOY_UPSTREAM_RQ_TIMEOUT_MS,
        &X_ENVOY_UPSTREAM_RQ_PER_TRY_TIMEOUT_MS,
        &X_ENVOY_UPSTREAM_RQ_TIMEOUT_ALT_RESPONSE,
        &X_ENVOY_EXPECTED_RQ_TIMEOUT_MS,
        &X_ENVOY_FORCE_TRACE,
        &X_ENVOY_IP_TAGS,
        &X_ENVOY_ORIGINAL_URL,
        &X_ENVOY_HEDGE_ON_PER_TRY_TIMEOUT,
    ] {
        headers.remove(h);
    }
    for h in internal_only {
        headers.remove(h);
    }
}

/// Envoy's `mutateResponseHeaders` plus the `server` header policy.
pub fn mutate_response(
    headers: &mut HeaderMap,
    request_upgrade: bool,
    request_id: Option<&str>,
    hcm: &HttpConnectionManager,
) -> ResponseSeen {
    let present = Present::scan(headers, &[]);
    let upgraded =
        (present.connection || present.upgrade) && request_upgrade && is_upgrade(headers);
    strip_hop_by_hop(headers, present, upgraded);
    // The request's id becomes a header value only when it is written back.
    if hcm.always_set_request_id_in_response
        && let Some(id) = request_id.and_then(|id| HeaderValue::from_str(id).ok())
    {
        headers.insert(X_REQUEST_ID.clone(), id);
    }
    if let Some(via) = &hcm.via {
        append_comma(headers, &VIA, via);
    }
    set_server(headers, hcm);
    ResponseSeen {
        date: present.date,
        grpc_status: present.grpc_status,
    }
}

/// Removes the HTTP/1 connection-specific headers HTTP/2 forbids
/// (`connection`, `keep-alive`, `proxy-connection`, `transfer-encoding`,
/// `upgrade`), looking up only those present.
pub fn strip_connection_specific(headers: &mut HeaderMap) {
    let present = Present::scan(headers, &[]);
    strip_hop_by_hop(headers, present, false);
}

/// Removes the hop-by-hop headers `present` found, keeping `connection` and
/// `upgrade` on a successful upgrade.
fn strip_hop_by_hop(headers: &mut HeaderMap, present: Present, upgraded: bool) {
    if !upgraded {
        if present.connection {
            headers.remove(CONNECTION);
        }
        if present.upgrade {
            headers.remove(UPGRADE);
        }
    }
    if present.transfer_encoding {
        headers.remove(TRANSFER_ENCODING);
    }
    if present.legacy_hop_by_hop {
        headers.remove(&KEEP_ALIVE);
        headers.remove(&PROXY_CONNECTION);
    }
}

/// Applies `server_header_transformation`.
pub fn set_server(headers: &mut HeaderMap, hcm: &HttpConnectionManager) {
    match hcm.server_header {
        ServerHeader::Overwrite => {
            if let Some(v) = &hcm.server_value {
                headers.insert(http::header::SERVER, v.clone());
            }
        }
        ServerHeader::AppendIfAbsent => {
            if !headers.contains_key(http::header::SERVER)
                && let Some(v) = &hcm.server_value
            {
                headers.insert(http::header::SERVER, v.clone());
            }
        }
        ServerHeader::PassThrough => {}
    }
}

/// The decimal digits of 0..=999, back to back (`0123456789101112…999`): the
/// header values of small numbers are slices of it.
static SMALL_NUMBERS: [u8; 2890] = {
    let mut out = [0u8; 2890];
    let mut n = 0;
    let mut at = 0;
    while n < 1000 {
        if n >= 100 {
            out[at] = b'0' + (n / 100) as u8;
            at += 1;
        }
        if n >= 10 {
            out[at] = b'0' + (n / 10 % 10) as u8;
            at += 1;
        }
        out[at] = b'0' + (n % 10) as u8;
        at += 1;
        n += 1;
    }
    out
};

thread_local! {
    /// The last few larger numbers made into header values on this thread
    /// (route timeouts repeat request after request), by `n % 8`.
    static LARGER_NUMBERS: std::cell::RefCell<[Option<(u64, HeaderValue)>; 8]> =
        const { std::cell::RefCell::new([const { None }; 8]) };
}

/// `n` in decimal as a header value (`x-envoy-upstream-service-time`,
/// `x-envoy-expected-rq-timeout-ms`, `x-envoy-attempt-count`, ...) without
/// allocating for numbers below 1,000 or for one seen recently.
pub fn decimal_value(n: u64) -> HeaderValue {
    if n < 1000 {
        let (start, len) = match n {
            0..10 => (n as usize, 1),
            10..100 => (10 + (n as usize - 10) * 2, 2),
            _ => (190 + (n as usize - 100) * 3, 3),
        };
        let digits = bytes::Bytes::from_static(&SMALL_NUMBERS).slice(start..start + len);
        return HeaderValue::from_maybe_shared(digits).unwrap_or_else(|_| HeaderValue::from(n));
    }
    LARGER_NUMBERS
        .try_with(|cache| {
            let mut cache = cache.borrow_mut();
            let slot = &mut cache[(n % 8) as usize];
            match slot {
                Some((m, v)) if *m == n => v.clone(),
                _ => slot.insert((n, HeaderValue::from(n))).1.clone(),
            }
        })
        .unwrap_or_else(|_| HeaderValue::from(n))
}

/// A random version 4 UUID, as Envoy's request id extension generates.
pub fn new_uuid() -> HeaderValue {
    let a = fastrand::u64(..);
    let b = fastrand::u64(..);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&a.to_le_bytes());
    bytes[8..].copy_from_slice(&b.to_le_bytes());
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 36];
    let mut j = 0;
    for (i, byte) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out[j] = b'-';
            j += 1;
        }
        out[j] = HEX[(byte >> 4) as usize];
        out[j + 1] = HEX[(byte & 0xf) as usize];
        j += 2;
    }
    HeaderValue::from_bytes(&out)
        .unwrap_or_else(|_| HeaderValue::from_static("00000000-0000-4000-8000-000000000000"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scan_notes_each_header_it_looks_for_and_no_other() {
        let flags = |p: Present| {
            [
                p.connection,
                p.upgrade,
                p.te,
                p.transfer_encoding,
                p.legacy_hop_by_hop,
                p.x_envoy,
                p.x_forwarded_for,
                p.x_forwarded_proto,
                p.x_request_id,
                p.x_forwarded_client_cert,
                p.internal_only,
                p.date,
                p.grpc_status,
            ]
        };
        let internal = [HeaderName::from_static("x-internal")];
        let cases: [(&str, usize); 15] = [
            ("connection", 0),
            ("upgrade", 1),
            ("te", 2),
            ("transfer-encoding", 3),
            ("keep-alive", 4),
            ("proxy-connection", 4),
            ("x-envoy-retry-on", 5),
            ("x-forwarded-for", 6),
            ("x-forwarded-proto", 7),
            ("x-request-id", 8),
            ("x-forwarded-client-cert", 9),
            ("x-internal", 10),
            ("date", 11),
            ("grpc-status", 12),
            ("x-envoy-", 5),
        ];
        for (name, flag) in cases {
            let mut headers = HeaderMap::new();
            headers.insert(HeaderName::from_static(name), HeaderValue::from_static("v"));
            let got = flags(Present::scan(&headers, &internal));
            for (i, set) in got.iter().enumerate() {
                assert_eq!(*set, i == flag, "{name}: flag {i}");
            }
        }
        // Names of the same lengths that are none of them.
        let mut headers = HeaderMap::new();
        for name in [
            "tx",
            "dat",
            "date2",
            "upgrades",
            "connexion",
            "grpc-stat",
            "x-request-ix",
            "x-forwarded-fox",
            "proxy-connectiox",
            "transfer-encodinx",
            "x-envoy",
            "accept",
        ] {
            headers.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("v"),
            );
        }
        assert!(flags(Present::scan(&headers, &internal)).iter().all(|f| !f));
    }

    #[test]
    fn decimal_values_match_their_numbers() {
        for n in (0..1200).chain([9_999, 15_000, 15_000, 15_008, 15_000, u64::MAX]) {
            assert_eq!(decimal_value(n), n.to_string().as_str(), "{n}");
        }
    }

    #[test]
    fn uuid_shape() {
        let u = new_uuid();
        let s = u.to_str().expect("ascii");
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "4");
    }

    #[test]
    fn xff_lookup() {
        let mut h = HeaderMap::new();
        h.insert(
            X_FORWARDED_FOR.clone(),
            "1.1.1.1, 2.2.2.2".parse().expect("v"),
        );
        assert_eq!(xff_address(&h, 0), Some("2.2.2.2".parse().expect("ip")));
        assert_eq!(xff_address(&h, 1), Some("1.1.1.1".parse().expect("ip")));
        assert_eq!(xff_address(&h, 2), None);
    }
}
