//! gRPC on the HTTP data plane: the `grpc-timeout` header (Envoy's
//! `Grpc::Common::getGrpcTimeout` / `toGrpcTimeout`), the route's
//! `max_stream_duration.grpc_timeout_header_max` / `_offset` (Envoy's
//! `refreshDurationTimeout`), service and method names of a request path,
//! and counting length-prefixed messages in a body.

use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use rvoy_model::route::ForwardAction;

use crate::stream_timers::StreamTimers;

/// `grpc-timeout`.
pub const GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");
/// `grpc-status`.
pub const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");

/// The largest `TimeoutValue` (8 digits).
const MAX_TIMEOUT_VALUE: u64 = 99_999_999;

/// Parses a `grpc-timeout` value (`<1-8 digits><H|M|S|m|u|n>`), rounding
/// sub-millisecond units up, as Envoy does.
pub fn parse_timeout(v: &HeaderValue) -> Option<Duration> {
    let b = v.as_bytes();
    let (&unit, digits) = b.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    if n > MAX_TIMEOUT_VALUE {
        return None;
    }
    let ms = match unit {
        b'H' => n * 3_600_000,
        b'M' => n * 60_000,
        b'S' => n * 1000,
        b'm' => n,
        b'u' => n.div_ceil(1000),
        b'n' => n.div_ceil(1_000_000),
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

/// Formats a timeout as Envoy writes `grpc-timeout` (milliseconds, or the
/// next unit up when it needs more than 8 digits).
pub fn format_timeout(d: Duration) -> HeaderValue {
    let mut value = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let units = [b'm', b'S', b'M', b'H'];
    let mut unit = 0;
    if value > MAX_TIMEOUT_VALUE {
        value /= 1000;
        unit = 1;
    }
    while value > MAX_TIMEOUT_VALUE {
        if unit == units.len() - 1 {
            value = MAX_TIMEOUT_VALUE;
        } else {
            value /= 60;
            unit += 1;
        }
    }
    let mut s = value.to_string();
    s.push(units[unit] as char);
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static("0m"))
}

/// Applies the route's gRPC timeout rules to a routed request (Envoy's
/// `refreshDurationTimeout`, after the route's `max_stream_duration` was
/// applied): with `grpc_timeout_header_max` set, a request's `grpc-timeout`
/// (capped, minus `grpc_timeout_header_offset`) becomes its max stream
/// duration; when the route sets `max_stream_duration` at all, a gRPC
/// request's `grpc-timeout` is rewritten to the duration that applies.
pub fn apply_route_timeout(
    timers: &StreamTimers,
    action: &ForwardAction,
    headers: &mut HeaderMap,
    hcm_max_stream_duration: Option<Duration>,
) {
    // The header counts only when the route sets a maximum for it.
    let header = action
        .grpc_timeout_header_max
        .and_then(|max| Some((headers.get(&GRPC_TIMEOUT).and_then(parse_timeout)?, max)));
    let effective = match header {
        Some((t, max)) => {
            let mut t = if !max.is_zero() && t > max { max } else { t };
            if !t.is_zero()
                && let Some(offset) = action.grpc_timeout_header_offset
            {
                t = t.saturating_sub(offset);
            }
            timers.set_max_duration(t);
            Some(t)
        }
        _ => match action.max_stream_duration {
            Some(t) if t.is_zero() => None,
            Some(t) => Some(t),
            None => hcm_max_stream_duration,
        },
    };
    if action.uses_max_stream_duration
        && crate::local_reply::is_grpc_request(headers)
        && let Some(t) = effective
    {
        headers.insert(GRPC_TIMEOUT, format_timeout(t));
    }
}

/// The service and method of a gRPC request path (`/pkg.Service/Method`),
/// as Envoy's `resolveServiceAndMethod` splits it.
pub fn service_and_method(path: &str) -> Option<(&str, &str)> {
    let path = path.split('?').next().unwrap_or(path);
    let mut parts = path.split('/').filter(|p| !p.is_empty());
    let service = parts.next()?;
    let method = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    Some((service, method))
}

/// Counts gRPC messages (5-byte length-prefixed frames) across body chunks.
#[derive(Debug, Default, Clone)]
pub struct MessageCounter {
    /// Prefix bytes of the current message collected so far.
    prefix: [u8; 5],
    have: usize,
    /// Payload bytes of the current message still to come.
    remaining: u64,
    /// Messages whose prefix has been seen.
    pub count: u64,
}

impl MessageCounter {
    /// Feeds body bytes; returns how many new messages started in them.
    pub fn feed(&mut self, mut data: &[u8]) -> u64 {
        let before = self.count;
        while !data.is_empty() {
            if self.remaining > 0 {
                let n = (self.remaining.min(data.len() as u64)) as usize;
                self.remaining -= n as u64;
                data = &data[n..];
                continue;
            }
            let n = (5 - self.have).min(data.len());
            self.prefix[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have == 5 {
                self.count += 1;
                self.remaining = u64::from(u32::from_be_bytes([
                    self.prefix[1],
                    self.prefix[2],
                    self.prefix[3],
                    self.prefix[4],
                ]));
                self.have = 0;
            }
        }
        self.count - before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_and_format_as_envoy() {
        let p = |s: &'static str| parse_timeout(&HeaderValue::from_static(s));
        assert_eq!(p("1S"), Some(Duration::from_secs(1)));
        assert_eq!(p("250m"), Some(Duration::from_millis(250)));
        assert_eq!(p("1500u"), Some(Duration::from_millis(2)));
        assert_eq!(p("1n"), Some(Duration::from_millis(1)));
        assert_eq!(p("2M"), Some(Duration::from_secs(120)));
        assert_eq!(p("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(p("123456789S"), None);
        assert_eq!(p("S"), None);
        assert_eq!(p("10x"), None);
        assert_eq!(p("-1S"), None);
        assert_eq!(format_timeout(Duration::from_millis(300)), "300m");
        assert_eq!(format_timeout(Duration::from_secs(200_000)), "200000S");
        assert_eq!(format_timeout(Duration::from_secs(100_000_000)), "1666666M");
    }

    #[test]
    fn service_and_method_of_paths() {
        assert_eq!(
            service_and_method("/pkg.Svc/Method"),
            Some(("pkg.Svc", "Method"))
        );
        assert_eq!(service_and_method("/pkg.Svc"), None);
        assert_eq!(service_and_method("/a/b/c"), None);
    }

    #[test]
    fn messages_are_counted_across_chunks() {
        let mut body = Vec::new();
        for payload in [&b"abc"[..], b"", b"hello world"] {
            body.push(0);
            body.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            body.extend_from_slice(payload);
        }
        for chunk in [1, 2, 3, 7, 100] {
            let mut c = MessageCounter::default();
            let mut n = 0;
            for part in body.chunks(chunk) {
                n += c.feed(part);
            }
            assert_eq!(n, 3, "chunk {chunk}");
        }
    }
}
