//! Protobuf durations, percentages and wrapper values as std types.

use std::time::Duration;

/// A set `google.protobuf.Duration` as a std duration (negative ones were
/// rejected by the loader).
pub fn from_proto(d: &prost_types::Duration) -> Duration {
    let secs = u64::try_from(d.seconds).unwrap_or(0);
    let nanos = u32::try_from(d.nanos).unwrap_or(0);
    Duration::new(secs, nanos)
}

/// An optional duration field.
pub fn opt(d: &Option<prost_types::Duration>) -> Option<Duration> {
    d.as_ref().map(from_proto)
}

/// An optional duration where Envoy treats an explicit zero as "disabled".
pub fn opt_nonzero(d: &Option<prost_types::Duration>) -> Option<Duration> {
    opt(d).filter(|d| !d.is_zero())
}

/// A timeout field with Envoy's default when unset; zero disables it.
pub fn timeout_or(d: &Option<prost_types::Duration>, default: Duration) -> Option<Duration> {
    match d {
        None => Some(default),
        Some(d) => Some(from_proto(d)).filter(|d| !d.is_zero()),
    }
}
