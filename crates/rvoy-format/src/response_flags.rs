//! Envoy's response flags (`%RESPONSE_FLAGS%`, `%RESPONSE_FLAGS_LONG%`): a
//! bitset in Envoy's `CoreResponseFlag` order, with its short and long names.
//!
//! Used by the data plane to record why a stream ended the way it did, by
//! stats, by access log `response_flag_filter`, and by the formatter.

use std::fmt;

/// One response flag. The discriminant is Envoy's `CoreResponseFlag` value,
/// which is also the order flags are printed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum ResponseFlag {
    FailedLocalHealthCheck = 0,
    NoHealthyUpstream,
    UpstreamRequestTimeout,
    LocalReset,
    UpstreamRemoteReset,
    UpstreamConnectionFailure,
    UpstreamConnectionTermination,
    UpstreamOverflow,
    NoRouteFound,
    DelayInjected,
    FaultInjected,
    RateLimited,
    UnauthorizedExternalService,
    RateLimitServiceError,
    DownstreamConnectionTermination,
    UpstreamRetryLimitExceeded,
    StreamIdleTimeout,
    InvalidEnvoyRequestHeaders,
    DownstreamProtocolError,
    UpstreamMaxStreamDurationReached,
    ResponseFromCacheFilter,
    NoFilterConfigFound,
    DurationTimeout,
    UpstreamProtocolError,
    NoClusterFound,
    OverloadManager,
    DnsResolutionFailed,
    DropOverLoad,
    DownstreamRemoteReset,
    UnconditionalDropOverload,
}

impl ResponseFlag {
    /// Every flag, in Envoy's order.
    pub const ALL: [ResponseFlag; 30] = [
        ResponseFlag::FailedLocalHealthCheck,
        ResponseFlag::NoHealthyUpstream,
        ResponseFlag::UpstreamRequestTimeout,
        ResponseFlag::LocalReset,
        ResponseFlag::UpstreamRemoteReset,
        ResponseFlag::UpstreamConnectionFailure,
        ResponseFlag::UpstreamConnectionTermination,
        ResponseFlag::UpstreamOverflow,
        ResponseFlag::NoRouteFound,
        ResponseFlag::DelayInjected,
        ResponseFlag::FaultInjected,
        ResponseFlag::RateLimited,
        ResponseFlag::UnauthorizedExternalService,
        ResponseFlag::RateLimitServiceError,
        ResponseFlag::DownstreamConnectionTermination,
        ResponseFlag::UpstreamRetryLimitExceeded,
        ResponseFlag::StreamIdleTimeout,
        ResponseFlag::InvalidEnvoyRequestHeaders,
        ResponseFlag::DownstreamProtocolError,
        ResponseFlag::UpstreamMaxStreamDurationReached,
        ResponseFlag::ResponseFromCacheFilter,
        ResponseFlag::NoFilterConfigFound,
        ResponseFlag::DurationTimeout,
        ResponseFlag::UpstreamProtocolError,
        ResponseFlag::NoClusterFound,
        ResponseFlag::OverloadManager,
        ResponseFlag::DnsResolutionFailed,
        ResponseFlag::DropOverLoad,
        ResponseFlag::DownstreamRemoteReset,
        ResponseFlag::UnconditionalDropOverload,
    ];

    /// The short name (`UH`, `UF`, ...).
    pub fn short_name(self) -> &'static str {
        match self {
            ResponseFlag::FailedLocalHealthCheck => "LH",
            ResponseFlag::NoHealthyUpstream => "UH",
            ResponseFlag::UpstreamRequestTimeout => "UT",
            ResponseFlag::LocalReset => "LR",
            ResponseFlag::UpstreamRemoteReset => "UR",
            ResponseFlag::UpstreamConnectionFailure => "UF",
            ResponseFlag::UpstreamConnectionTermination => "UC",
            ResponseFlag::UpstreamOverflow => "UO",
            ResponseFlag::NoRouteFound => "NR",
            ResponseFlag::DelayInjected => "DI",
            ResponseFlag::FaultInjected => "FI",
            ResponseFlag::RateLimited => "RL",
            ResponseFlag::UnauthorizedExternalService => "UAEX",
            ResponseFlag::RateLimitServiceError => "RLSE",
            ResponseFlag::DownstreamConnectionTermination => "DC",
            ResponseFlag::UpstreamRetryLimitExceeded => "URX",
            ResponseFlag::StreamIdleTimeout => "SI",
            ResponseFlag::InvalidEnvoyRequestHeaders => "IH",
            ResponseFlag::DownstreamProtocolError => "DPE",
            ResponseFlag::UpstreamMaxStreamDurationReached => "UMSDR",
            ResponseFlag::ResponseFromCacheFilter => "RFCF",
            ResponseFlag::NoFilterConfigFound => "NFCF",
            ResponseFlag::DurationTimeout => "DT",
            ResponseFlag::UpstreamProtocolError => "UPE",
            ResponseFlag::NoClusterFound => "NC",
            ResponseFlag::OverloadManager => "OM",
            ResponseFlag::DnsResolutionFailed => "DF",
            ResponseFlag::DropOverLoad => "DO",
            ResponseFlag::DownstreamRemoteReset => "DR",
            ResponseFlag::UnconditionalDropOverload => "UDO",
        }
    }

    /// The long name (`NoHealthyUpstream`, ...).
    pub fn long_name(self) -> &'static str {
        match self {
            ResponseFlag::FailedLocalHealthCheck => "FailedLocalHealthCheck",
            ResponseFlag::NoHealthyUpstream => "NoHealthyUpstream",
            ResponseFlag::UpstreamRequestTimeout => "UpstreamRequestTimeout",
            ResponseFlag::LocalReset => "LocalReset",
            ResponseFlag::UpstreamRemoteReset => "UpstreamRemoteReset",
            ResponseFlag::UpstreamConnectionFailure => "UpstreamConnectionFailure",
            ResponseFlag::UpstreamConnectionTermination => "UpstreamConnectionTermination",
            ResponseFlag::UpstreamOverflow => "UpstreamOverflow",
            ResponseFlag::NoRouteFound => "NoRouteFound",
            ResponseFlag::DelayInjected => "DelayInjected",
            ResponseFlag::FaultInjected => "FaultInjected",
            ResponseFlag::RateLimited => "RateLimited",
            ResponseFlag::UnauthorizedExternalService => "UnauthorizedExternalService",
            ResponseFlag::RateLimitServiceError => "RateLimitServiceError",
            ResponseFlag::DownstreamConnectionTermination => "DownstreamConnectionTermination",
            ResponseFlag::UpstreamRetryLimitExceeded => "UpstreamRetryLimitExceeded",
            ResponseFlag::StreamIdleTimeout => "StreamIdleTimeout",
            ResponseFlag::InvalidEnvoyRequestHeaders => "InvalidEnvoyRequestHeaders",
            ResponseFlag::DownstreamProtocolError => "DownstreamProtocolError",
            ResponseFlag::UpstreamMaxStreamDurationReached => "UpstreamMaxStreamDurationReached",
            ResponseFlag::ResponseFromCacheFilter => "ResponseFromCacheFilter",
            ResponseFlag::NoFilterConfigFound => "NoFilterConfigFound",
            ResponseFlag::DurationTimeout => "DurationTimeout",
            ResponseFlag::UpstreamProtocolError => "UpstreamProtocolError",
            ResponseFlag::NoClusterFound => "NoClusterFound",
            ResponseFlag::OverloadManager => "OverloadManager",
            ResponseFlag::DnsResolutionFailed => "DnsResolutionFailed",
            ResponseFlag::DropOverLoad => "DropOverload",
            ResponseFlag::DownstreamRemoteReset => "DownstreamRemoteReset",
            ResponseFlag::UnconditionalDropOverload => "UnconditionalDropOverload",
        }
    }

    /// A flag by its short name, as `response_flag_filter` spells them.
    pub fn from_short_name(name: &str) -> Option<ResponseFlag> {
        ResponseFlag::ALL
            .into_iter()
            .find(|f| f.short_name() == name)
    }

    /// A flag by its long name.
    pub fn from_long_name(name: &str) -> Option<ResponseFlag> {
        ResponseFlag::ALL
            .into_iter()
            .find(|f| f.long_name() == name)
    }

    fn bit(self) -> u32 {
        1u32 << (self as u8)
    }
}

/// The response flags of a stream: a set that remembers the order flags
/// were set in, because Envoy prints them in that order (a retried connect
/// failure logs `URX,UF`).
#[derive(Clone, Copy)]
pub struct ResponseFlags {
    bits: u32,
    len: u8,
    order: [u8; ResponseFlag::ALL.len()],
}

impl PartialEq for ResponseFlags {
    /// Equal when the same flags were set in the same order.
    fn eq(&self, other: &Self) -> bool {
        self.order[..usize::from(self.len)] == other.order[..usize::from(other.len)]
    }
}

impl Eq for ResponseFlags {}

impl std::hash::Hash for ResponseFlags {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.order[..usize::from(self.len)].hash(state);
    }
}

impl Default for ResponseFlags {
    fn default() -> Self {
        ResponseFlags::empty()
    }
}

impl ResponseFlags {
    pub const fn empty() -> ResponseFlags {
        ResponseFlags {
            bits: 0,
            len: 0,
            order: [0; ResponseFlag::ALL.len()],
        }
    }

    pub fn is_empty(self) -> bool {
        self.bits == 0
    }

    /// Sets a flag; setting one already set keeps its place (Envoy's
    /// `setResponseFlag`).
    pub fn set(&mut self, flag: ResponseFlag) {
        if self.contains(flag) {
            return;
        }
        self.bits |= flag.bit();
        self.order[usize::from(self.len)] = flag as u8;
        self.len += 1;
    }

    pub fn clear(&mut self, flag: ResponseFlag) {
        if !self.contains(flag) {
            return;
        }
        self.bits &= !flag.bit();
        let len = usize::from(self.len);
        if let Some(pos) = self.order[..len].iter().position(|&f| f == flag as u8) {
            self.order.copy_within(pos + 1..len, pos);
            self.len -= 1;
        }
    }

    #[must_use]
    pub fn with(mut self, flag: ResponseFlag) -> ResponseFlags {
        self.set(flag);
        self
    }

    pub fn contains(self, flag: ResponseFlag) -> bool {
        self.bits & flag.bit() != 0
    }

    /// True when any flag of `other` is set here.
    pub fn intersects(self, other: ResponseFlags) -> bool {
        self.bits & other.bits != 0
    }

    /// The set as bits, bit `n` being the flag with discriminant `n` (Envoy's
    /// legacy bitmask order, for stats).
    pub fn bits(self) -> u32 {
        self.bits
    }

    /// Set flags in the order they were set.
    pub fn iter(self) -> impl Iterator<Item = ResponseFlag> {
        (0..usize::from(self.len))
            .filter_map(move |i| ResponseFlag::ALL.get(usize::from(self.order[i])).copied())
    }

    /// Envoy's `ResponseFlagUtils::toShortString`: short names joined with
    /// `,` in the order set, or `-` when none is.
    pub fn write_short(self, out: &mut String) {
        self.write_names(out, ResponseFlag::short_name);
    }

    /// Envoy's `ResponseFlagUtils::toString`: long names joined with `,`, or
    /// `-` when none is set.
    pub fn write_long(self, out: &mut String) {
        self.write_names(out, ResponseFlag::long_name);
    }

    pub fn to_short_string(self) -> String {
        let mut s = String::new();
        self.write_short(&mut s);
        s
    }

    pub fn to_long_string(self) -> String {
        let mut s = String::new();
        self.write_long(&mut s);
        s
    }

    /// Short (or long) names into a byte buffer, as the formatter writes them.
    pub(crate) fn write_names_bytes(self, out: &mut Vec<u8>, long: bool) {
        if self.is_empty() {
            out.push(b'-');
            return;
        }
        for (i, f) in self.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(if long { f.long_name() } else { f.short_name() }.as_bytes());
        }
    }

    fn write_names(self, out: &mut String, name: fn(ResponseFlag) -> &'static str) {
        if self.is_empty() {
            out.push('-');
            return;
        }
        for (i, f) in self.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(name(f));
        }
    }
}

impl FromIterator<ResponseFlag> for ResponseFlags {
    fn from_iter<I: IntoIterator<Item = ResponseFlag>>(iter: I) -> Self {
        let mut flags = ResponseFlags::empty();
        for f in iter {
            flags.set(f);
        }
        flags
    }
}

impl From<ResponseFlag> for ResponseFlags {
    fn from(f: ResponseFlag) -> Self {
        ResponseFlags::empty().with(f)
    }
}

impl fmt::Display for ResponseFlags {
    /// The short form, as `%RESPONSE_FLAGS%` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_short_string())
    }
}

impl fmt::Debug for ResponseFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_renders_dash() {
        assert_eq!(ResponseFlags::empty().to_short_string(), "-");
        assert_eq!(ResponseFlags::empty().to_long_string(), "-");
    }

    #[test]
    fn flags_render_in_the_order_set() {
        // Envoy 1.40 logged `URX,UF` for a connect failure with one retry.
        let mut f = ResponseFlags::empty();
        f.set(ResponseFlag::UpstreamRetryLimitExceeded);
        f.set(ResponseFlag::UpstreamConnectionFailure);
        f.set(ResponseFlag::UpstreamRetryLimitExceeded);
        assert_eq!(f.to_short_string(), "URX,UF");
        assert_eq!(
            f.to_long_string(),
            "UpstreamRetryLimitExceeded,UpstreamConnectionFailure"
        );
        assert!(f.contains(ResponseFlag::UpstreamConnectionFailure));
        assert_eq!(f.bits(), (1 << 5) | (1 << 15));
        f.clear(ResponseFlag::UpstreamRetryLimitExceeded);
        assert_eq!(f.to_short_string(), "UF");
        f.clear(ResponseFlag::UpstreamConnectionFailure);
        assert!(f.is_empty());
        assert_eq!(f, ResponseFlags::default());
    }

    #[test]
    fn names_are_unique_and_round_trip() {
        for flag in ResponseFlag::ALL {
            assert_eq!(ResponseFlag::from_short_name(flag.short_name()), Some(flag));
            assert_eq!(ResponseFlag::from_long_name(flag.long_name()), Some(flag));
        }
        for (i, flag) in ResponseFlag::ALL.iter().enumerate() {
            assert_eq!(*flag as usize, i);
        }
    }

    #[test]
    fn every_flag_short_names() {
        let all: ResponseFlags = ResponseFlag::ALL.into_iter().collect();
        assert_eq!(
            all.to_short_string(),
            "LH,UH,UT,LR,UR,UF,UC,UO,NR,DI,FI,RL,UAEX,RLSE,DC,URX,SI,IH,DPE,UMSDR,RFCF,NFCF,DT,UPE,NC,OM,DF,DO,DR,UDO"
        );
    }
}
