//! The command operators: parsing one `%COMMAND(ARG):LEN%` into an [`Op`]
//! with its arguments pre-parsed, and evaluating an `Op` against a
//! [`StreamInfo`] into a borrowed [`Val`].
//!
//! The table of commands and their syntax rules (argument required,
//! optional or forbidden; length allowed or not) is Envoy 1.40's, checked
//! against the binary command by command.

use std::borrow::Cow;
use std::io::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use http::HeaderName;

use crate::FormatError;
use crate::stream_info::{
    Address, AddressKind, MetadataKind, PseudoHeader, StreamInfo, TimePoint, TlsInfo,
};
use crate::time::TimeFormat;

/// A value an operator produced, borrowed where possible.
pub(crate) enum Val<'a> {
    /// Not available: `-` in text, `null` (or omitted) in JSON.
    Missing,
    Str(&'a str),
    Bytes(&'a [u8]),
    Cow(Cow<'a, str>),
    /// A string the operator wrote into the buffer, from this offset on.
    Written(usize),
    U64(u64),
    I64(i64),
    Proto(&'a prost_types::Value),
    ProtoStruct(&'a prost_types::Struct),
    /// A typed filter state object (text form is its JSON).
    Json(serde_json::Value),
}

/// Where a header operator looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeaderSource {
    Request,
    Response,
    Trailers,
}

/// A header name, parsed once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum HeaderKey {
    Regular(HeaderName),
    Pseudo(PseudoHeader),
    /// `host`: Envoy's header map answers it with `:authority`.
    Host,
    /// An empty name: never present.
    Never,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GrpcFormat {
    Camel,
    Snake,
    Number,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PathOption {
    OrigOrPath,
    Path,
    Orig,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DurationOp {
    Total,
    Since(TimePoint),
    ResponseTx,
    PoolReady,
    /// `%DOWNSTREAM_CX_RTT%`, milliseconds.
    ConnectionRtt,
    /// `%ROUTE_RESOLUTION_TIME_US%`, microseconds.
    RouteResolutionMicros,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TimeRef {
    Start,
    Point(TimePoint),
    Custom(Box<str>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Precision {
    Millis,
    Micros,
    Nanos,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MeterField {
    WireSent,
    WireReceived,
    HeaderSent,
    HeaderReceived,
    DecompressedHeaderSent,
    DecompressedHeaderReceived,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Counter {
    BytesReceived,
    BytesSent,
    BytesRetransmitted,
    PacketsRetransmitted,
    ResponseCode,
    ConnectionId,
    UpstreamConnectionId,
    AttemptCount,
    RouteResolutionCount,
    Meter { upstream: bool, field: MeterField },
}

/// Optional string fields of the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TextField {
    ConnectionTerminationDetails,
    RouteName,
    VirtualClusterName,
    FilterChainName,
    ListenerName,
    StreamId,
    Ja3,
    Ja4,
    UpstreamCluster,
    UpstreamClusterRaw,
    TraceId,
    SpanId,
    UpstreamServerName,
    UpstreamLocalCloseReason,
    DownstreamLocalCloseReason,
    CustomFlags,
    DownstreamTransportFailureReason,
    UpstreamTransportFailureReason,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AddrMode {
    WithPort,
    /// Without port; with a CIDR mask when a prefix length was given.
    WithoutPort(Mask),
    JustPort,
    EndpointId,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mask {
    None,
    Prefix(u32),
    /// A negative prefix length: Envoy prints an empty string.
    Invalid,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Attempted {
    Hosts { without_port: bool },
    HostNames { without_port: bool },
    ConnectionIds,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TlsField {
    PeerUriSan,
    PeerDnsSan,
    PeerIpSan,
    PeerEmailSan,
    PeerOthernameSan,
    LocalUriSan,
    LocalDnsSan,
    LocalIpSan,
    LocalEmailSan,
    LocalOthernameSan,
    PeerSubject,
    LocalSubject,
    PeerIssuer,
    SessionId,
    Cipher,
    Version,
    Group,
    PeerFingerprint256,
    PeerFingerprint1,
    PeerSerial,
    PeerIssuerFingerprint256,
    PeerIssuerSerial,
    PeerChainFingerprints256,
    PeerChainFingerprints1,
    PeerChainSerials,
    PeerCert,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TimeSource {
    Start,
    Emit,
    PeerCertValidFrom { upstream: bool },
    PeerCertExpiration { upstream: bool },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FilterStateMode {
    Plain,
    Typed,
    Field(Box<str>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SniMode {
    SniOnly,
    SniFirst,
    HostFirst,
}

/// Which host `%REQUESTED_SERVER_NAME%` falls back to (or prefers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HostMode {
    /// `x-envoy-original-host`, else `:authority`.
    OrigOrHost,
    /// `:authority`.
    Host,
    /// `x-envoy-original-host` (set when a route rewrote the host).
    Orig,
}

/// One compiled command operator.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Op {
    Header {
        source: HeaderSource,
        main: HeaderKey,
        alt: Option<HeaderKey>,
    },
    LocalReplyBody,
    AccessLogType,
    GrpcStatus(GrpcFormat),
    HeadersBytes(HeaderSource),
    QueryParam(Box<str>),
    QueryParams {
        decoded: bool,
    },
    Path {
        with_query: bool,
        option: PathOption,
    },
    Coalesce(Box<[(Op, Option<usize>)]>),
    Duration(DurationOp),
    CommonDuration {
        start: TimeRef,
        end: TimeRef,
        precision: Precision,
    },
    Counter(Counter),
    Protocol {
        upstream: bool,
    },
    ResponseCodeDetails {
        allow_whitespaces: bool,
    },
    Text(TextField),
    ResponseFlags {
        long: bool,
    },
    Address {
        kind: AddressKind,
        mode: AddrMode,
    },
    UpstreamHostName {
        without_port: bool,
    },
    Attempted(Attempted),
    DetectedCloseType {
        upstream: bool,
    },
    Tls {
        upstream: bool,
        field: TlsField,
    },
    Time {
        source: TimeSource,
        format: TimeFormat,
    },
    Metadata {
        kind: MetadataKind,
        namespace: Box<str>,
        path: Box<[Box<str>]>,
    },
    FilterState {
        key: Box<str>,
        upstream: bool,
        mode: FilterStateMode,
    },
    /// A value fixed at parse time (`%ENVIRONMENT%`, `%HOSTNAME%`).
    Constant(Option<Box<str>>),
    UniqueId,
    RequestedServerName(SniMode, HostMode),
}

// ---- syntax rules -------------------------------------------------------------

const COMMAND_ONLY: u8 = 0;
const PARAMS_REQUIRED: u8 = 1;
const PARAMS_OPTIONAL: u8 = 2;
const LENGTH_ALLOWED: u8 = 4;

/// Envoy's `CommandSyntaxChecker::verifySyntax`.
fn verify(flags: u8, command: &str, arg: &str, max: Option<usize>) -> Result<(), FormatError> {
    if flags == COMMAND_ONLY && (!arg.is_empty() || max.is_some()) {
        return Err(FormatError::NoParameters(command.to_owned()));
    }
    if flags & PARAMS_REQUIRED != 0 && arg.is_empty() {
        return Err(FormatError::ParametersRequired(command.to_owned()));
    }
    if flags & LENGTH_ALLOWED == 0 && max.is_some() {
        return Err(FormatError::LengthNotAllowed(command.to_owned()));
    }
    Ok(())
}

/// Every operator name Envoy 1.40 accepts.
pub const OPERATORS: &[&str] = &[
    "ACCESS_LOG_TYPE",
    "BYTES_RECEIVED",
    "BYTES_RETRANSMITTED",
    "BYTES_SENT",
    "CEL",
    "CLUSTER_METADATA",
    "COALESCE",
    "COMMON_DURATION",
    "CONNECTION_ID",
    "CONNECTION_TERMINATION_DETAILS",
    "CUSTOM_FLAGS",
    "DOWNSTREAM_CX_RTT",
    "DOWNSTREAM_DECOMPRESSED_HEADER_BYTES_RECEIVED",
    "DOWNSTREAM_DECOMPRESSED_HEADER_BYTES_SENT",
    "DOWNSTREAM_DETECTED_CLOSE_TYPE",
    "DOWNSTREAM_DIRECT_LOCAL_ADDRESS",
    "DOWNSTREAM_DIRECT_LOCAL_ADDRESS_ENDPOINT_ID",
    "DOWNSTREAM_DIRECT_LOCAL_ADDRESS_WITHOUT_PORT",
    "DOWNSTREAM_DIRECT_LOCAL_PORT",
    "DOWNSTREAM_DIRECT_REMOTE_ADDRESS",
    "DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT",
    "DOWNSTREAM_DIRECT_REMOTE_PORT",
    "DOWNSTREAM_HANDSHAKE_DURATION",
    "DOWNSTREAM_HEADER_BYTES_RECEIVED",
    "DOWNSTREAM_HEADER_BYTES_SENT",
    "DOWNSTREAM_LOCAL_ADDRESS",
    "DOWNSTREAM_LOCAL_ADDRESS_ENDPOINT_ID",
    "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT",
    "DOWNSTREAM_LOCAL_CLOSE_REASON",
    "DOWNSTREAM_LOCAL_DNS_SAN",
    "DOWNSTREAM_LOCAL_EMAIL_SAN",
    "DOWNSTREAM_LOCAL_IP_SAN",
    "DOWNSTREAM_LOCAL_OTHERNAME_SAN",
    "DOWNSTREAM_LOCAL_PORT",
    "DOWNSTREAM_LOCAL_SUBJECT",
    "DOWNSTREAM_LOCAL_URI_SAN",
    "DOWNSTREAM_PEER_CERT",
    "DOWNSTREAM_PEER_CERT_V_END",
    "DOWNSTREAM_PEER_CERT_V_START",
    "DOWNSTREAM_PEER_CHAIN_FINGERPRINTS_1",
    "DOWNSTREAM_PEER_CHAIN_FINGERPRINTS_256",
    "DOWNSTREAM_PEER_CHAIN_SERIALS",
    "DOWNSTREAM_PEER_DNS_SAN",
    "DOWNSTREAM_PEER_EMAIL_SAN",
    "DOWNSTREAM_PEER_FINGERPRINT_1",
    "DOWNSTREAM_PEER_FINGERPRINT_256",
    "DOWNSTREAM_PEER_IP_SAN",
    "DOWNSTREAM_PEER_ISSUER",
    "DOWNSTREAM_PEER_ISSUER_FINGERPRINT_256",
    "DOWNSTREAM_PEER_ISSUER_SERIAL",
    "DOWNSTREAM_PEER_OTHERNAME_SAN",
    "DOWNSTREAM_PEER_SERIAL",
    "DOWNSTREAM_PEER_SUBJECT",
    "DOWNSTREAM_PEER_URI_SAN",
    "DOWNSTREAM_REMOTE_ADDRESS",
    "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT",
    "DOWNSTREAM_REMOTE_PORT",
    "DOWNSTREAM_TLS_CIPHER",
    "DOWNSTREAM_TLS_GROUP",
    "DOWNSTREAM_TLS_SESSION_ID",
    "DOWNSTREAM_TLS_VERSION",
    "DOWNSTREAM_TRANSPORT_FAILURE_REASON",
    "DOWNSTREAM_WIRE_BYTES_RECEIVED",
    "DOWNSTREAM_WIRE_BYTES_SENT",
    "DURATION",
    "DYNAMIC_METADATA",
    "EMIT_TIME",
    "EMIT_TIME_LOCAL",
    "ENVIRONMENT",
    "FILTER_CHAIN_NAME",
    "FILTER_STATE",
    "GRPC_STATUS",
    "GRPC_STATUS_NUMBER",
    "HOSTNAME",
    "LISTENER_NAME",
    "LOCAL_REPLY_BODY",
    "METADATA",
    "PACKETS_RETRANSMITTED",
    "PATH",
    "PROTOCOL",
    "QUERY_PARAM",
    "QUERY_PARAMS",
    "REQ",
    "REQUESTED_SERVER_NAME",
    "REQUEST_DURATION",
    "REQUEST_HEADER",
    "REQUEST_HEADERS_BYTES",
    "REQUEST_TX_DURATION",
    "RESP",
    "RESPONSE_CODE",
    "RESPONSE_CODE_DETAILS",
    "RESPONSE_DURATION",
    "RESPONSE_FLAGS",
    "RESPONSE_FLAGS_LONG",
    "RESPONSE_HEADER",
    "RESPONSE_HEADERS_BYTES",
    "RESPONSE_TRAILER",
    "RESPONSE_TRAILERS_BYTES",
    "RESPONSE_TX_DURATION",
    "ROUNDTRIP_DURATION",
    "ROUTE_NAME",
    "ROUTE_RESOLUTION_COUNT",
    "ROUTE_RESOLUTION_TIME_US",
    "SPAN_ID",
    "START_TIME",
    "START_TIME_LOCAL",
    "STREAM_ID",
    "STREAM_INFO_REQ",
    "TLS_JA3_FINGERPRINT",
    "TLS_JA4_FINGERPRINT",
    "TRACE_ID",
    "TRAILER",
    "UNIQUE_ID",
    "UPSTREAM_CLUSTER",
    "UPSTREAM_CLUSTER_RAW",
    "UPSTREAM_CONNECTION_ID",
    "UPSTREAM_CONNECTION_IDS_ATTEMPTED",
    "UPSTREAM_CONNECTION_POOL_READY_DURATION",
    "UPSTREAM_DECOMPRESSED_HEADER_BYTES_RECEIVED",
    "UPSTREAM_DECOMPRESSED_HEADER_BYTES_SENT",
    "UPSTREAM_DETECTED_CLOSE_TYPE",
    "UPSTREAM_FILTER_STATE",
    "UPSTREAM_HEADER_BYTES_RECEIVED",
    "UPSTREAM_HEADER_BYTES_SENT",
    "UPSTREAM_HOST",
    "UPSTREAM_HOSTS_ATTEMPTED",
    "UPSTREAM_HOSTS_ATTEMPTED_WITHOUT_PORT",
    "UPSTREAM_HOST_NAME",
    "UPSTREAM_HOST_NAMES_ATTEMPTED",
    "UPSTREAM_HOST_NAMES_ATTEMPTED_WITHOUT_PORT",
    "UPSTREAM_HOST_NAME_WITHOUT_PORT",
    "UPSTREAM_LOCAL_ADDRESS",
    "UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT",
    "UPSTREAM_LOCAL_CLOSE_REASON",
    "UPSTREAM_LOCAL_DNS_SAN",
    "UPSTREAM_LOCAL_IP_SAN",
    "UPSTREAM_LOCAL_PORT",
    "UPSTREAM_LOCAL_URI_SAN",
    "UPSTREAM_METADATA",
    "UPSTREAM_PEER_CERT",
    "UPSTREAM_PEER_CERT_V_END",
    "UPSTREAM_PEER_CERT_V_START",
    "UPSTREAM_PEER_DNS_SAN",
    "UPSTREAM_PEER_IP_SAN",
    "UPSTREAM_PEER_ISSUER",
    "UPSTREAM_PEER_SUBJECT",
    "UPSTREAM_PEER_URI_SAN",
    "UPSTREAM_PROTOCOL",
    "UPSTREAM_REMOTE_ADDRESS",
    "UPSTREAM_REMOTE_ADDRESS_ENDPOINT_ID",
    "UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT",
    "UPSTREAM_REMOTE_PORT",
    "UPSTREAM_REQUEST_ATTEMPT_COUNT",
    "UPSTREAM_SERVER_NAME",
    "UPSTREAM_TLS_CIPHER",
    "UPSTREAM_TLS_GROUP",
    "UPSTREAM_TLS_SESSION_ID",
    "UPSTREAM_TLS_VERSION",
    "UPSTREAM_TRANSPORT_FAILURE_REASON",
    "UPSTREAM_WIRE_BYTES_RECEIVED",
    "UPSTREAM_WIRE_BYTES_SENT",
    "VIRTUAL_CLUSTER_NAME",
];

// ---- parsing -----------------------------------------------------------------

/// Splits like Envoy's `SubstitutionFormatUtils::parseSubcommand`.
fn split_arg(arg: &str, sep: char) -> Vec<&str> {
    arg.split(sep).collect()
}

/// Compiles one command. `name`, `arg` and `max` come from the
/// `%NAME(ARG):MAX%` syntax.
pub(crate) fn parse_command(name: &str, arg: &str, max: Option<usize>) -> Result<Op, FormatError> {
    if let Some(op) = parse_simple(name) {
        verify(COMMAND_ONLY, name, arg, max)?;
        return Ok(op);
    }
    let header = |source: HeaderSource| -> Result<Op, FormatError> {
        verify(PARAMS_REQUIRED | LENGTH_ALLOWED, name, arg, max)?;
        let (main, alt) = parse_header_pair(arg)?;
        Ok(Op::Header { source, main, alt })
    };
    let opt = |flags: u8| verify(flags, name, arg, max);
    Ok(match name {
        "REQ" | "REQUEST_HEADER" | "STREAM_INFO_REQ" => header(HeaderSource::Request)?,
        "RESP" | "RESPONSE_HEADER" => header(HeaderSource::Response)?,
        "TRAILER" | "RESPONSE_TRAILER" => header(HeaderSource::Trailers)?,
        "GRPC_STATUS" => {
            opt(PARAMS_OPTIONAL)?;
            Op::GrpcStatus(match arg {
                "" | "CAMEL_STRING" => GrpcFormat::Camel,
                "SNAKE_STRING" => GrpcFormat::Snake,
                "NUMBER" => GrpcFormat::Number,
                other => {
                    return Err(FormatError::invalid(format!(
                        "GrpcStatusFormatter only supports CAMEL_STRING, SNAKE_STRING or NUMBER. Got: {other}"
                    )));
                }
            })
        }
        "QUERY_PARAM" => {
            opt(PARAMS_REQUIRED | LENGTH_ALLOWED)?;
            Op::QueryParam(arg.into())
        }
        "QUERY_PARAMS" => {
            opt(PARAMS_OPTIONAL | LENGTH_ALLOWED)?;
            Op::QueryParams {
                decoded: match arg {
                    "" | "ORIG" => false,
                    "DECODED" => true,
                    other => {
                        return Err(FormatError::invalid(format!(
                            "Invalid QUERY_PARAMS option: '{other}', only 'ORIG'/'DECODED' are allowed"
                        )));
                    }
                },
            }
        }
        "PATH" => {
            opt(PARAMS_OPTIONAL | LENGTH_ALLOWED)?;
            let parts = split_arg(arg, ':');
            let query = parts.first().copied().unwrap_or("");
            let option = parts.get(1).copied().unwrap_or("");
            let with_query = match query {
                "" | "WQ" => true,
                "NQ" => false,
                other => {
                    return Err(FormatError::invalid(format!(
                        "Invalid PATH option: '{other}', only 'WQ'/'NQ' are allowed"
                    )));
                }
            };
            let option = match option {
                "" | "ORIG_OR_PATH" => PathOption::OrigOrPath,
                "PATH" => PathOption::Path,
                "ORIG" => PathOption::Orig,
                other => {
                    return Err(FormatError::invalid(format!(
                        "Invalid PATH option: '{other}', only 'ORIG'/'PATH'/'ORIG_OR_PATH' are allowed"
                    )));
                }
            };
            Op::Path { with_query, option }
        }
        "COALESCE" => {
            opt(PARAMS_REQUIRED | LENGTH_ALLOWED)?;
            parse_coalesce(arg)?
        }
        "RESPONSE_CODE_DETAILS" => {
            opt(PARAMS_OPTIONAL)?;
            Op::ResponseCodeDetails {
                allow_whitespaces: arg == "ALLOW_WHITESPACES",
            }
        }
        "COMMON_DURATION" => {
            opt(PARAMS_REQUIRED)?;
            parse_common_duration(arg)?
        }
        "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT" => {
            without_port(name, arg, max, AddressKind::DownstreamLocal)?
        }
        "DOWNSTREAM_DIRECT_LOCAL_ADDRESS_WITHOUT_PORT" => {
            without_port(name, arg, max, AddressKind::DownstreamDirectLocal)?
        }
        "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => {
            without_port(name, arg, max, AddressKind::DownstreamRemote)?
        }
        "DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT" => {
            without_port(name, arg, max, AddressKind::DownstreamDirectRemote)?
        }
        "UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT" => {
            without_port(name, arg, max, AddressKind::UpstreamLocal)?
        }
        "UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => {
            without_port(name, arg, max, AddressKind::UpstreamRemote)?
        }
        "START_TIME" | "START_TIME_LOCAL" | "EMIT_TIME" | "EMIT_TIME_LOCAL" => {
            opt(PARAMS_OPTIONAL)?;
            let source = if name.starts_with("START") {
                TimeSource::Start
            } else {
                TimeSource::Emit
            };
            time_op(source, arg, name.ends_with("_LOCAL"))?
        }
        "DOWNSTREAM_PEER_CERT_V_START"
        | "DOWNSTREAM_PEER_CERT_V_END"
        | "UPSTREAM_PEER_CERT_V_START"
        | "UPSTREAM_PEER_CERT_V_END" => {
            opt(PARAMS_OPTIONAL)?;
            let upstream = name.starts_with("UPSTREAM");
            let source = if name.ends_with("START") {
                TimeSource::PeerCertValidFrom { upstream }
            } else {
                TimeSource::PeerCertExpiration { upstream }
            };
            time_op(source, arg, false)?
        }
        "DYNAMIC_METADATA" => {
            // Envoy 1.40 accepts a length here but not for CLUSTER/UPSTREAM_METADATA.
            opt(PARAMS_REQUIRED | LENGTH_ALLOWED)?;
            metadata_op(MetadataKind::Dynamic, arg)
        }
        "CLUSTER_METADATA" => {
            opt(PARAMS_REQUIRED)?;
            metadata_op(MetadataKind::Cluster, arg)
        }
        "UPSTREAM_METADATA" => {
            opt(PARAMS_REQUIRED)?;
            metadata_op(MetadataKind::UpstreamHost, arg)
        }
        "METADATA" => {
            let (kind, rest) = match arg.split_once(':') {
                Some((k, rest)) => (k, rest),
                None => (arg, ""),
            };
            let Some(kind) = MetadataKind::from_name(kind) else {
                return Err(FormatError::invalid(format!(
                    "{kind} is not supported type of metadata"
                )));
            };
            metadata_op(kind, rest)
        }
        "FILTER_STATE" | "UPSTREAM_FILTER_STATE" => {
            opt(PARAMS_OPTIONAL | LENGTH_ALLOWED)?;
            parse_filter_state(arg, name == "UPSTREAM_FILTER_STATE")?
        }
        "ENVIRONMENT" => {
            opt(PARAMS_REQUIRED | LENGTH_ALLOWED)?;
            let value = match std::env::var_os(arg) {
                Some(v) => {
                    let v = v.to_string_lossy().into_owned();
                    truncate_str(&v, max).to_owned()
                }
                None => "-".to_owned(),
            };
            Op::Constant(Some(value.into()))
        }
        "REQUESTED_SERVER_NAME" => {
            opt(PARAMS_OPTIONAL)?;
            let parts = split_arg(arg, ':');
            let sni = match parts.first().copied().unwrap_or("") {
                "" | "SNI_ONLY" => SniMode::SniOnly,
                "SNI_FIRST" => SniMode::SniFirst,
                "HOST_FIRST" => SniMode::HostFirst,
                other => {
                    return Err(FormatError::invalid(format!(
                        "Invalid REQUESTED_SERVER_NAME option: '{other}', only 'SNI_ONLY'/'SNI_FIRST'/'HOST_FIRST' are allowed"
                    )));
                }
            };
            let host = match parts.get(1).copied().unwrap_or("") {
                "" | "ORIG_OR_HOST" => HostMode::OrigOrHost,
                "HOST" => HostMode::Host,
                "ORIG" => HostMode::Orig,
                other => {
                    return Err(FormatError::invalid(format!(
                        "Invalid REQUESTED_SERVER_NAME option: '{other}', only 'ORIG_OR_HOST'/'HOST'/'ORIG' are allowed"
                    )));
                }
            };
            Op::RequestedServerName(sni, host)
        }
        "CEL" => {
            return Err(FormatError::Unsupported {
                operator: "CEL".to_owned(),
                reason: "CEL expressions are not implemented".to_owned(),
            });
        }
        _ => return Err(FormatError::UnknownOperator(name.to_owned())),
    })
}

/// Commands that take no argument and no length.
fn parse_simple(name: &str) -> Option<Op> {
    use AddressKind as K;
    use Counter as C;
    use DurationOp as D;
    use MeterField as M;
    use TextField as T;
    use TimePoint as P;
    let tls = |upstream: bool, field: TlsField| Op::Tls { upstream, field };
    let addr = |kind: AddressKind, mode: AddrMode| Op::Address { kind, mode };
    let meter = |upstream: bool, field: MeterField| Op::Counter(C::Meter { upstream, field });
    Some(match name {
        "LOCAL_REPLY_BODY" => Op::LocalReplyBody,
        "ACCESS_LOG_TYPE" => Op::AccessLogType,
        "GRPC_STATUS_NUMBER" => Op::GrpcStatus(GrpcFormat::Number),
        "REQUEST_HEADERS_BYTES" => Op::HeadersBytes(HeaderSource::Request),
        "RESPONSE_HEADERS_BYTES" => Op::HeadersBytes(HeaderSource::Response),
        "RESPONSE_TRAILERS_BYTES" => Op::HeadersBytes(HeaderSource::Trailers),
        "TRACE_ID" => Op::Text(T::TraceId),
        "SPAN_ID" => Op::Text(T::SpanId),

        "DURATION" => Op::Duration(D::Total),
        "REQUEST_DURATION" => Op::Duration(D::Since(P::LastDownstreamRxByteReceived)),
        "REQUEST_TX_DURATION" => Op::Duration(D::Since(P::LastUpstreamTxByteSent)),
        "RESPONSE_DURATION" => Op::Duration(D::Since(P::FirstUpstreamRxByteReceived)),
        "RESPONSE_TX_DURATION" => Op::Duration(D::ResponseTx),
        "DOWNSTREAM_HANDSHAKE_DURATION" => Op::Duration(D::Since(P::DownstreamHandshakeComplete)),
        "ROUNDTRIP_DURATION" => Op::Duration(D::Since(P::LastDownstreamAckReceived)),
        "UPSTREAM_CONNECTION_POOL_READY_DURATION" => Op::Duration(D::PoolReady),
        "DOWNSTREAM_CX_RTT" => Op::Duration(D::ConnectionRtt),
        "ROUTE_RESOLUTION_TIME_US" => Op::Duration(D::RouteResolutionMicros),

        "BYTES_RECEIVED" => Op::Counter(C::BytesReceived),
        "BYTES_SENT" => Op::Counter(C::BytesSent),
        "BYTES_RETRANSMITTED" => Op::Counter(C::BytesRetransmitted),
        "PACKETS_RETRANSMITTED" => Op::Counter(C::PacketsRetransmitted),
        "RESPONSE_CODE" => Op::Counter(C::ResponseCode),
        "CONNECTION_ID" => Op::Counter(C::ConnectionId),
        "UPSTREAM_CONNECTION_ID" => Op::Counter(C::UpstreamConnectionId),
        "UPSTREAM_REQUEST_ATTEMPT_COUNT" => Op::Counter(C::AttemptCount),
        "ROUTE_RESOLUTION_COUNT" => Op::Counter(C::RouteResolutionCount),
        "UPSTREAM_WIRE_BYTES_SENT" => meter(true, M::WireSent),
        "UPSTREAM_WIRE_BYTES_RECEIVED" => meter(true, M::WireReceived),
        "UPSTREAM_HEADER_BYTES_SENT" => meter(true, M::HeaderSent),
        "UPSTREAM_HEADER_BYTES_RECEIVED" => meter(true, M::HeaderReceived),
        "UPSTREAM_DECOMPRESSED_HEADER_BYTES_SENT" => meter(true, M::DecompressedHeaderSent),
        "UPSTREAM_DECOMPRESSED_HEADER_BYTES_RECEIVED" => meter(true, M::DecompressedHeaderReceived),
        "DOWNSTREAM_WIRE_BYTES_SENT" => meter(false, M::WireSent),
        "DOWNSTREAM_WIRE_BYTES_RECEIVED" => meter(false, M::WireReceived),
        "DOWNSTREAM_HEADER_BYTES_SENT" => meter(false, M::HeaderSent),
        "DOWNSTREAM_HEADER_BYTES_RECEIVED" => meter(false, M::HeaderReceived),
        "DOWNSTREAM_DECOMPRESSED_HEADER_BYTES_SENT" => meter(false, M::DecompressedHeaderSent),
        "DOWNSTREAM_DECOMPRESSED_HEADER_BYTES_RECEIVED" => {
            meter(false, M::DecompressedHeaderReceived)
        }

        "PROTOCOL" => Op::Protocol { upstream: false },
        "UPSTREAM_PROTOCOL" => Op::Protocol { upstream: true },
        "CONNECTION_TERMINATION_DETAILS" => Op::Text(T::ConnectionTerminationDetails),
        "CUSTOM_FLAGS" => Op::Text(T::CustomFlags),
        "RESPONSE_FLAGS" => Op::ResponseFlags { long: false },
        "RESPONSE_FLAGS_LONG" => Op::ResponseFlags { long: true },
        "ROUTE_NAME" => Op::Text(T::RouteName),
        "VIRTUAL_CLUSTER_NAME" => Op::Text(T::VirtualClusterName),
        "FILTER_CHAIN_NAME" => Op::Text(T::FilterChainName),
        "LISTENER_NAME" => Op::Text(T::ListenerName),
        "STREAM_ID" => Op::Text(T::StreamId),
        "TLS_JA3_FINGERPRINT" => Op::Text(T::Ja3),
        "TLS_JA4_FINGERPRINT" => Op::Text(T::Ja4),
        "UPSTREAM_CLUSTER" => Op::Text(T::UpstreamCluster),
        "UPSTREAM_CLUSTER_RAW" => Op::Text(T::UpstreamClusterRaw),
        "UPSTREAM_SERVER_NAME" => Op::Text(T::UpstreamServerName),
        "UPSTREAM_LOCAL_CLOSE_REASON" => Op::Text(T::UpstreamLocalCloseReason),
        "DOWNSTREAM_LOCAL_CLOSE_REASON" => Op::Text(T::DownstreamLocalCloseReason),
        "DOWNSTREAM_TRANSPORT_FAILURE_REASON" => Op::Text(T::DownstreamTransportFailureReason),
        "UPSTREAM_TRANSPORT_FAILURE_REASON" => Op::Text(T::UpstreamTransportFailureReason),
        "UPSTREAM_DETECTED_CLOSE_TYPE" => Op::DetectedCloseType { upstream: true },
        "DOWNSTREAM_DETECTED_CLOSE_TYPE" => Op::DetectedCloseType { upstream: false },
        "UNIQUE_ID" => Op::UniqueId,
        "HOSTNAME" => Op::Constant(hostname().map(Into::into)),

        "UPSTREAM_HOST" => addr(K::UpstreamHost, AddrMode::WithPort),
        "UPSTREAM_HOST_NAME" => Op::UpstreamHostName {
            without_port: false,
        },
        "UPSTREAM_HOST_NAME_WITHOUT_PORT" => Op::UpstreamHostName { without_port: true },
        "UPSTREAM_HOSTS_ATTEMPTED" => Op::Attempted(Attempted::Hosts {
            without_port: false,
        }),
        "UPSTREAM_HOSTS_ATTEMPTED_WITHOUT_PORT" => {
            Op::Attempted(Attempted::Hosts { without_port: true })
        }
        "UPSTREAM_HOST_NAMES_ATTEMPTED" => Op::Attempted(Attempted::HostNames {
            without_port: false,
        }),
        "UPSTREAM_HOST_NAMES_ATTEMPTED_WITHOUT_PORT" => {
            Op::Attempted(Attempted::HostNames { without_port: true })
        }
        "UPSTREAM_CONNECTION_IDS_ATTEMPTED" => Op::Attempted(Attempted::ConnectionIds),
        "UPSTREAM_LOCAL_ADDRESS" => addr(K::UpstreamLocal, AddrMode::WithPort),
        "UPSTREAM_LOCAL_PORT" => addr(K::UpstreamLocal, AddrMode::JustPort),
        "UPSTREAM_REMOTE_ADDRESS" => addr(K::UpstreamRemote, AddrMode::WithPort),
        "UPSTREAM_REMOTE_PORT" => addr(K::UpstreamRemote, AddrMode::JustPort),
        "UPSTREAM_REMOTE_ADDRESS_ENDPOINT_ID" => addr(K::UpstreamRemote, AddrMode::EndpointId),
        "DOWNSTREAM_LOCAL_ADDRESS" => addr(K::DownstreamLocal, AddrMode::WithPort),
        "DOWNSTREAM_LOCAL_PORT" => addr(K::DownstreamLocal, AddrMode::JustPort),
        "DOWNSTREAM_LOCAL_ADDRESS_ENDPOINT_ID" => addr(K::DownstreamLocal, AddrMode::EndpointId),
        "DOWNSTREAM_DIRECT_LOCAL_ADDRESS" => addr(K::DownstreamDirectLocal, AddrMode::WithPort),
        "DOWNSTREAM_DIRECT_LOCAL_PORT" => addr(K::DownstreamDirectLocal, AddrMode::JustPort),
        "DOWNSTREAM_DIRECT_LOCAL_ADDRESS_ENDPOINT_ID" => {
            addr(K::DownstreamDirectLocal, AddrMode::EndpointId)
        }
        "DOWNSTREAM_REMOTE_ADDRESS" => addr(K::DownstreamRemote, AddrMode::WithPort),
        "DOWNSTREAM_REMOTE_PORT" => addr(K::DownstreamRemote, AddrMode::JustPort),
        "DOWNSTREAM_DIRECT_REMOTE_ADDRESS" => addr(K::DownstreamDirectRemote, AddrMode::WithPort),
        "DOWNSTREAM_DIRECT_REMOTE_PORT" => addr(K::DownstreamDirectRemote, AddrMode::JustPort),

        "UPSTREAM_PEER_URI_SAN" => tls(true, TlsField::PeerUriSan),
        "UPSTREAM_PEER_DNS_SAN" => tls(true, TlsField::PeerDnsSan),
        "UPSTREAM_PEER_IP_SAN" => tls(true, TlsField::PeerIpSan),
        "UPSTREAM_LOCAL_URI_SAN" => tls(true, TlsField::LocalUriSan),
        "UPSTREAM_LOCAL_DNS_SAN" => tls(true, TlsField::LocalDnsSan),
        "UPSTREAM_LOCAL_IP_SAN" => tls(true, TlsField::LocalIpSan),
        "UPSTREAM_PEER_SUBJECT" => tls(true, TlsField::PeerSubject),
        "UPSTREAM_PEER_ISSUER" => tls(true, TlsField::PeerIssuer),
        "UPSTREAM_PEER_CERT" => tls(true, TlsField::PeerCert),
        "UPSTREAM_TLS_CIPHER" => tls(true, TlsField::Cipher),
        "UPSTREAM_TLS_VERSION" => tls(true, TlsField::Version),
        "UPSTREAM_TLS_SESSION_ID" => tls(true, TlsField::SessionId),
        "UPSTREAM_TLS_GROUP" => tls(true, TlsField::Group),
        "DOWNSTREAM_PEER_URI_SAN" => tls(false, TlsField::PeerUriSan),
        "DOWNSTREAM_PEER_DNS_SAN" => tls(false, TlsField::PeerDnsSan),
        "DOWNSTREAM_PEER_IP_SAN" => tls(false, TlsField::PeerIpSan),
        "DOWNSTREAM_PEER_EMAIL_SAN" => tls(false, TlsField::PeerEmailSan),
        "DOWNSTREAM_PEER_OTHERNAME_SAN" => tls(false, TlsField::PeerOthernameSan),
        "DOWNSTREAM_LOCAL_URI_SAN" => tls(false, TlsField::LocalUriSan),
        "DOWNSTREAM_LOCAL_DNS_SAN" => tls(false, TlsField::LocalDnsSan),
        "DOWNSTREAM_LOCAL_IP_SAN" => tls(false, TlsField::LocalIpSan),
        "DOWNSTREAM_LOCAL_EMAIL_SAN" => tls(false, TlsField::LocalEmailSan),
        "DOWNSTREAM_LOCAL_OTHERNAME_SAN" => tls(false, TlsField::LocalOthernameSan),
        "DOWNSTREAM_PEER_SUBJECT" => tls(false, TlsField::PeerSubject),
        "DOWNSTREAM_LOCAL_SUBJECT" => tls(false, TlsField::LocalSubject),
        "DOWNSTREAM_TLS_SESSION_ID" => tls(false, TlsField::SessionId),
        "DOWNSTREAM_TLS_CIPHER" => tls(false, TlsField::Cipher),
        "DOWNSTREAM_TLS_VERSION" => tls(false, TlsField::Version),
        "DOWNSTREAM_TLS_GROUP" => tls(false, TlsField::Group),
        "DOWNSTREAM_PEER_FINGERPRINT_256" => tls(false, TlsField::PeerFingerprint256),
        "DOWNSTREAM_PEER_FINGERPRINT_1" => tls(false, TlsField::PeerFingerprint1),
        "DOWNSTREAM_PEER_SERIAL" => tls(false, TlsField::PeerSerial),
        "DOWNSTREAM_PEER_ISSUER_FINGERPRINT_256" => tls(false, TlsField::PeerIssuerFingerprint256),
        "DOWNSTREAM_PEER_ISSUER_SERIAL" => tls(false, TlsField::PeerIssuerSerial),
        "DOWNSTREAM_PEER_CHAIN_FINGERPRINTS_256" => tls(false, TlsField::PeerChainFingerprints256),
        "DOWNSTREAM_PEER_CHAIN_FINGERPRINTS_1" => tls(false, TlsField::PeerChainFingerprints1),
        "DOWNSTREAM_PEER_CHAIN_SERIALS" => tls(false, TlsField::PeerChainSerials),
        "DOWNSTREAM_PEER_ISSUER" => tls(false, TlsField::PeerIssuer),
        "DOWNSTREAM_PEER_CERT" => tls(false, TlsField::PeerCert),
        _ => return None,
    })
}

fn without_port(
    name: &str,
    arg: &str,
    max: Option<usize>,
    kind: AddressKind,
) -> Result<Op, FormatError> {
    verify(PARAMS_OPTIONAL, name, arg, max)?;
    // The optional argument is a CIDR prefix length; one that is not an
    // integer is ignored, as Envoy does.
    let mask = if arg.is_empty() {
        Mask::None
    } else {
        match arg.parse::<i32>() {
            Ok(n) if n < 0 => Mask::Invalid,
            Ok(n) => Mask::Prefix(n.unsigned_abs()),
            Err(_) => Mask::None,
        }
    };
    Ok(Op::Address {
        kind,
        mode: AddrMode::WithoutPort(mask),
    })
}

fn time_op(source: TimeSource, arg: &str, local: bool) -> Result<Op, FormatError> {
    if TimeFormat::has_newline_specifier(arg) {
        return Err(FormatError::invalid(
            "Invalid header configuration. Format string contains newline.",
        ));
    }
    Ok(Op::Time {
        source,
        format: TimeFormat::parse(arg, local),
    })
}

fn metadata_op(kind: MetadataKind, arg: &str) -> Op {
    let mut parts = arg.split(':');
    let namespace = parts.next().unwrap_or("").into();
    let path = parts.map(Into::into).collect();
    Op::Metadata {
        kind,
        namespace,
        path,
    }
}

fn parse_filter_state(arg: &str, upstream: bool) -> Result<Op, FormatError> {
    let parts = split_arg(arg, ':');
    let key = parts.first().copied().unwrap_or("");
    let mut kind = parts.get(1).copied().unwrap_or("");
    let field = parts.get(2).copied().unwrap_or("");
    if key.is_empty() {
        return Err(FormatError::invalid(
            "Invalid filter state configuration, key cannot be empty.",
        ));
    }
    if kind.is_empty() {
        kind = "TYPED";
    }
    if !matches!(kind, "PLAIN" | "TYPED" | "FIELD") {
        return Err(FormatError::invalid(
            "Invalid filter state serialize type, only support PLAIN/TYPED/FIELD.",
        ));
    }
    if (kind == "FIELD") ^ !field.is_empty() {
        return Err(FormatError::invalid(
            "Invalid filter state serialize type, FIELD should be used with the field name.",
        ));
    }
    let mode = if !field.is_empty() {
        FilterStateMode::Field(field.into())
    } else if kind == "PLAIN" {
        FilterStateMode::Plain
    } else {
        FilterStateMode::Typed
    };
    Ok(Op::FilterState {
        key: key.into(),
        upstream,
        mode,
    })
}

fn parse_common_duration(arg: &str) -> Result<Op, FormatError> {
    let parts = split_arg(arg, ':');
    if parts.len() < 2 || parts.len() > 3 {
        return Err(FormatError::invalid(format!(
            "Invalid common duration configuration: {arg}."
        )));
    }
    let precision = match parts.get(2).copied() {
        None | Some("ms") => Precision::Millis,
        Some("us") => Precision::Micros,
        Some("ns") => Precision::Nanos,
        Some(other) => {
            return Err(FormatError::invalid(format!(
                "Invalid common duration precision: {other}."
            )));
        }
    };
    let point = |name: &str| -> TimeRef {
        use TimePoint as P;
        match name {
            "DS_RX_BEG" => TimeRef::Start,
            "DS_RX_END" => TimeRef::Point(P::LastDownstreamRxByteReceived),
            "US_CX_BEG" => TimeRef::Point(P::UpstreamConnectStart),
            "US_CX_END" => TimeRef::Point(P::UpstreamConnectComplete),
            "US_HS_END" => TimeRef::Point(P::UpstreamHandshakeComplete),
            "US_TX_BEG" => TimeRef::Point(P::FirstUpstreamTxByteSent),
            "US_TX_END" => TimeRef::Point(P::LastUpstreamTxByteSent),
            "US_RX_BEG" => TimeRef::Point(P::FirstUpstreamRxByteReceived),
            "US_RX_BODY_BEG" => TimeRef::Point(P::FirstUpstreamRxBodyByteReceived),
            "US_RX_END" => TimeRef::Point(P::LastUpstreamRxByteReceived),
            "DS_TX_BEG" => TimeRef::Point(P::FirstDownstreamTxByteSent),
            "DS_TX_END" => TimeRef::Point(P::LastDownstreamTxByteSent),
            custom => TimeRef::Custom(custom.into()),
        }
    };
    Ok(Op::CommonDuration {
        start: point(parts[0]),
        end: point(parts[1]),
        precision,
    })
}

fn parse_coalesce(arg: &str) -> Result<Op, FormatError> {
    let json: serde_json::Value = serde_json::from_str(arg).map_err(|e| {
        FormatError::invalid(format!("COALESCE: failed to parse JSON configuration: {e}"))
    })?;
    let Some(operators) = json.get("operators") else {
        return Err(FormatError::invalid(
            "COALESCE: JSON configuration must contain 'operators' array",
        ));
    };
    let Some(operators) = operators.as_array() else {
        return Err(FormatError::invalid(
            "COALESCE: 'operators' must be an array: key 'operators' missing or not an array from lines 1-1",
        ));
    };
    if operators.is_empty() {
        return Err(FormatError::invalid(
            "COALESCE: 'operators' array must not be empty",
        ));
    }
    let mut ops = Vec::with_capacity(operators.len());
    for (i, entry) in operators.iter().enumerate() {
        let at = |msg: String| {
            FormatError::invalid(format!(
                "COALESCE: failed to parse operator at index {i}: {msg}"
            ))
        };
        let (command, param, max) = match entry {
            serde_json::Value::String(s) => (s.as_str(), "", None),
            serde_json::Value::Object(o) => {
                let command = o
                    .get("command")
                    .and_then(serde_json::Value::as_str)
                    .ok_or_else(|| {
                        at("operator object must have 'command' field: key 'command' missing or not a string from lines 1-1".to_owned())
                    })?;
                let param = match o.get("param") {
                    None => "",
                    Some(p) => p.as_str().ok_or_else(|| {
                        at("'param' field must be a string: key 'param' missing or not a string from lines 1-1".to_owned())
                    })?,
                };
                let max = match o.get("max_length") {
                    None => None,
                    Some(m) => {
                        let n = m.as_i64().ok_or_else(|| {
                            at("'max_length' field must be an integer: key 'max_length' missing or not an integer from lines 1-1"
                                .to_owned())
                        })?;
                        if n <= 0 {
                            return Err(at("'max_length' must be a positive integer".to_owned()));
                        }
                        Some(usize::try_from(n).unwrap_or(usize::MAX))
                    }
                };
                (command, param, max)
            }
            _ => {
                return Err(at(
                    "operator entry must be either a string (command name) or an object with 'command' field".to_owned(),
                ));
            }
        };
        let op = match parse_command(command, param, max) {
            Ok(op) => op,
            Err(FormatError::UnknownOperator(c)) => {
                return Err(at(format!("unknown command: '{c}'")));
            }
            // The METADATA formatter throws instead of returning its error.
            Err(e) if command == "METADATA" => return Err(e),
            Err(e) => return Err(at(e.to_string())),
        };
        ops.push((op, max));
    }
    Ok(Op::Coalesce(ops.into()))
}

/// Envoy's `parseSubcommandHeaders` plus header name validation.
fn parse_header_pair(arg: &str) -> Result<(HeaderKey, Option<HeaderKey>), FormatError> {
    let parts: Vec<&str> = arg.split('?').collect();
    if parts.len() > 2 {
        return Err(FormatError::invalid(format!(
            "More than 1 alternative header specified in token: {arg}"
        )));
    }
    let main = parts[0];
    let alt = parts.get(1).copied().unwrap_or("");
    for name in [main, alt] {
        if !header_name_is_valid(&name.to_ascii_lowercase()) {
            return Err(FormatError::invalid(
                "Invalid header configuration. Format string contains invalid characters.",
            ));
        }
    }
    let main = header_key(main);
    let alt = if alt.is_empty() {
        None
    } else {
        Some(header_key(alt))
    };
    Ok((main, alt))
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Envoy's `HeaderUtility::headerNameIsValid` on a lower-cased name.
fn header_name_is_valid(name: &str) -> bool {
    match name.strip_prefix(':') {
        Some("") => false,
        Some(rest) => rest.bytes().all(|b| is_tchar(b) && !b.is_ascii_uppercase()),
        None => name.bytes().all(is_tchar),
    }
}

pub(crate) fn header_key(name: &str) -> HeaderKey {
    let lower = name.to_ascii_lowercase();
    if lower.is_empty() {
        return HeaderKey::Never;
    }
    if lower.starts_with(':') {
        return HeaderKey::Pseudo(PseudoHeader::from_lower(&lower));
    }
    if lower == "host" {
        return HeaderKey::Host;
    }
    match HeaderName::from_bytes(lower.as_bytes()) {
        Ok(h) => HeaderKey::Regular(h),
        Err(_) => HeaderKey::Never,
    }
}

fn hostname() -> Option<String> {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_string_lossy().into_owned();
    if name.is_empty() { None } else { Some(name) }
}

// ---- evaluation ----------------------------------------------------------------

pub(crate) fn truncate_bytes(b: &[u8], max: Option<usize>) -> &[u8] {
    match max {
        Some(m) if b.len() > m => &b[..m],
        _ => b,
    }
}

fn truncate_str(s: &str, max: Option<usize>) -> &str {
    match max {
        Some(m) if s.len() > m => {
            let mut end = m;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            &s[..end]
        }
        _ => s,
    }
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

fn val_str(s: Option<&str>) -> Val<'_> {
    s.map_or(Val::Missing, Val::Str)
}

fn header_lookup<'a>(
    si: &'a dyn StreamInfo,
    source: HeaderSource,
    key: &HeaderKey,
) -> Option<&'a [u8]> {
    let map = match source {
        HeaderSource::Request => si.request_headers(),
        HeaderSource::Response => si.response_headers(),
        HeaderSource::Trailers => si.response_trailers(),
    };
    match key {
        HeaderKey::Regular(name) => map.and_then(|m| m.get(name)).map(|v| v.as_bytes()),
        HeaderKey::Pseudo(p) => match source {
            HeaderSource::Request => si.request_pseudo_header(p).map(str::as_bytes),
            HeaderSource::Response => si.response_pseudo_header(p).map(str::as_bytes),
            HeaderSource::Trailers => None,
        },
        HeaderKey::Host => {
            let pseudo = match source {
                HeaderSource::Request => si.request_pseudo_header(&PseudoHeader::Authority),
                _ => None,
            };
            pseudo.map(str::as_bytes).or_else(|| {
                map.and_then(|m| m.get(http::header::HOST))
                    .map(|v| v.as_bytes())
            })
        }
        HeaderKey::Never => None,
    }
}

fn request_header<'a>(si: &'a dyn StreamInfo, name: &HeaderName) -> Option<&'a [u8]> {
    si.request_headers()
        .and_then(|m| m.get(name))
        .map(|v| v.as_bytes())
}

const ORIGINAL_PATH: HeaderName = HeaderName::from_static("x-envoy-original-path");
const ORIGINAL_HOST: HeaderName = HeaderName::from_static("x-envoy-original-host");
const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

impl Op {
    /// Evaluates the operator. Computed strings are written into `buf` (and
    /// reported as [`Val::Written`]); nothing is written for other results.
    pub(crate) fn eval<'a>(&'a self, si: &'a dyn StreamInfo, buf: &mut Vec<u8>) -> Val<'a> {
        match self {
            Op::Header { source, main, alt } => {
                let found = header_lookup(si, *source, main)
                    .or_else(|| alt.as_ref().and_then(|a| header_lookup(si, *source, a)));
                found.map_or(Val::Missing, Val::Bytes)
            }
            Op::LocalReplyBody => Val::Str(si.local_reply_body()),
            Op::AccessLogType => Val::Str(si.access_log_type().as_str()),
            Op::GrpcStatus(f) => eval_grpc_status(si, *f, buf),
            Op::HeadersBytes(source) => Val::U64(match source {
                HeaderSource::Request => si.request_headers_bytes(),
                HeaderSource::Response => si.response_headers_bytes(),
                HeaderSource::Trailers => si.response_trailers_bytes(),
            }),
            Op::QueryParam(key) => eval_query_param(si, key, buf),
            Op::QueryParams { decoded } => {
                let Some(path) = si.request_pseudo_header(&PseudoHeader::Path) else {
                    return Val::Missing;
                };
                let Some((_, query)) = path.split_once('?') else {
                    return Val::Missing;
                };
                if *decoded {
                    let start = buf.len();
                    decode_unreserved(buf, query.as_bytes());
                    Val::Written(start)
                } else {
                    Val::Str(query)
                }
            }
            Op::Path { with_query, option } => {
                let path = si
                    .request_pseudo_header(&PseudoHeader::Path)
                    .map(str::as_bytes);
                let orig = request_header(si, &ORIGINAL_PATH);
                let chosen = match option {
                    PathOption::Path => path,
                    PathOption::Orig => orig,
                    PathOption::OrigOrPath => orig.filter(|o| !o.is_empty()).or(path),
                };
                let Some(mut p) = chosen.filter(|p| !p.is_empty()) else {
                    return Val::Missing;
                };
                if !with_query && let Some(q) = p.iter().position(|&b| b == b'?') {
                    p = &p[..q];
                }
                Val::Bytes(p)
            }
            Op::Coalesce(ops) => eval_coalesce(ops, si, buf),
            Op::Duration(d) => eval_duration(si, *d),
            Op::CommonDuration {
                start,
                end,
                precision,
            } => {
                let at = |r: &TimeRef| match r {
                    TimeRef::Start => Some(Duration::ZERO),
                    TimeRef::Point(p) => si.timing(*p),
                    TimeRef::Custom(k) => si.custom_timing(k),
                };
                match (at(start), at(end)) {
                    (Some(b), Some(e)) if e >= b => {
                        let d = e - b;
                        Val::U64(match precision {
                            Precision::Millis => d.as_millis(),
                            Precision::Micros => d.as_micros(),
                            Precision::Nanos => d.as_nanos(),
                        } as u64)
                    }
                    _ => Val::Missing,
                }
            }
            Op::Counter(c) => Val::U64(eval_counter(si, *c)),
            Op::Protocol { upstream } => {
                let p = if *upstream {
                    si.upstream_protocol()
                } else {
                    si.protocol()
                };
                p.map_or(Val::Missing, |p| Val::Str(p.as_str()))
            }
            Op::ResponseCodeDetails { allow_whitespaces } => match si.response_code_details() {
                None => Val::Missing,
                Some(d) if *allow_whitespaces || !d.bytes().any(is_envoy_space) => Val::Str(d),
                Some(d) => {
                    let start = buf.len();
                    buf.extend(d.bytes().map(|b| if is_envoy_space(b) { b'_' } else { b }));
                    Val::Written(start)
                }
            },
            Op::Text(f) => eval_text(si, *f, buf),
            Op::ResponseFlags { long } => {
                let start = buf.len();
                si.response_flags().write_names_bytes(buf, *long);
                Val::Written(start)
            }
            Op::Address { kind, mode } => match si.address(*kind) {
                None => Val::Missing,
                Some(a) => eval_address(a, *mode, buf),
            },
            Op::UpstreamHostName { without_port } => {
                let start = buf.len();
                match non_empty(si.upstream_host_name()) {
                    Some(name) => buf.extend_from_slice(name.as_bytes()),
                    None => match si.address(AddressKind::UpstreamHost) {
                        Some(a) => write_address(buf, a),
                        None => return Val::Missing,
                    },
                }
                if *without_port {
                    strip_port(buf, start);
                }
                Val::Written(start)
            }
            Op::Attempted(kind) => eval_attempted(si, *kind, buf),
            Op::DetectedCloseType { upstream } => {
                let t = if *upstream {
                    si.upstream_detected_close_type()
                } else {
                    si.downstream_detected_close_type()
                };
                t.map_or(Val::Missing, |t| Val::Str(t.as_str()))
            }
            Op::Tls { upstream, field } => {
                let info = if *upstream {
                    si.upstream_tls()
                } else {
                    si.downstream_tls()
                };
                match info {
                    None => Val::Missing,
                    Some(info) => eval_tls(info, *field, buf),
                }
            }
            Op::Time { source, format } => {
                let t = match source {
                    TimeSource::Start => si.start_time(),
                    TimeSource::Emit => Some(si.emit_time()),
                    TimeSource::PeerCertValidFrom { upstream } => {
                        let info = if *upstream {
                            si.upstream_tls()
                        } else {
                            si.downstream_tls()
                        };
                        info.and_then(|i| i.peer_cert_valid_from)
                    }
                    TimeSource::PeerCertExpiration { upstream } => {
                        let info = if *upstream {
                            si.upstream_tls()
                        } else {
                            si.downstream_tls()
                        };
                        info.and_then(|i| i.peer_cert_expiration)
                    }
                };
                match t {
                    None => Val::Missing,
                    Some(t) => {
                        let start = buf.len();
                        format.write(buf, t);
                        Val::Written(start)
                    }
                }
            }
            Op::Metadata {
                kind,
                namespace,
                path,
            } => {
                let Some(ns) = si.metadata(*kind, namespace) else {
                    return Val::Missing;
                };
                let Some((first, rest)) = path.split_first() else {
                    return Val::ProtoStruct(ns);
                };
                let mut v = match ns.fields.get(&**first) {
                    Some(v) => v,
                    None => return Val::Missing,
                };
                for key in rest {
                    use prost_types::value::Kind;
                    v = match &v.kind {
                        Some(Kind::StructValue(s)) => match s.fields.get(&**key) {
                            Some(v) => v,
                            None => return Val::Missing,
                        },
                        _ => return Val::Missing,
                    };
                }
                Val::Proto(v)
            }
            Op::FilterState {
                key,
                upstream,
                mode,
            } => {
                let obj = if *upstream {
                    si.upstream_filter_state(key)
                } else {
                    si.filter_state(key)
                };
                let Some(obj) = obj else {
                    return Val::Missing;
                };
                match mode {
                    FilterStateMode::Plain => {
                        obj.serialize_as_string().map_or(Val::Missing, Val::Cow)
                    }
                    FilterStateMode::Typed => {
                        obj.serialize_as_json().map_or(Val::Missing, Val::Json)
                    }
                    FilterStateMode::Field(name) => match obj.field(name) {
                        crate::FieldValue::None => Val::Missing,
                        crate::FieldValue::Int(i) => {
                            let start = buf.len();
                            let _ = write!(buf, "{i}");
                            Val::Written(start)
                        }
                        crate::FieldValue::Str(s) => Val::Cow(s),
                    },
                }
            }
            Op::Constant(v) => v.as_deref().map_or(Val::Missing, Val::Str),
            Op::UniqueId => {
                let start = buf.len();
                write_uuid4(buf);
                Val::Written(start)
            }
            Op::RequestedServerName(mode, host_mode) => {
                let sni = non_empty(si.requested_server_name());
                let host = || -> Option<&'a [u8]> {
                    let authority = || {
                        si.request_pseudo_header(&PseudoHeader::Authority)
                            .map(str::as_bytes)
                    };
                    let orig = || request_header(si, &ORIGINAL_HOST);
                    let h = match host_mode {
                        HostMode::Host => authority(),
                        HostMode::Orig => orig(),
                        HostMode::OrigOrHost => orig().filter(|o| !o.is_empty()).or_else(authority),
                    };
                    h.filter(|h| !h.is_empty())
                };
                let start = buf.len();
                let mut write_sni = |sni: &str| {
                    sanitize_hostname(buf, sni);
                    Val::Written(start)
                };
                match (mode, sni) {
                    (SniMode::SniOnly, Some(s)) | (SniMode::SniFirst, Some(s)) => write_sni(s),
                    (SniMode::SniOnly, None) => Val::Missing,
                    (SniMode::SniFirst, None) => host().map_or(Val::Missing, Val::Bytes),
                    (SniMode::HostFirst, _) => match (host(), sni) {
                        (Some(h), _) => Val::Bytes(h),
                        (None, Some(s)) => write_sni(s),
                        (None, None) => Val::Missing,
                    },
                }
            }
        }
    }
}

/// `StringUtil::replaceAllEmptySpace` replaces these with `_`.
fn is_envoy_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn eval_counter(si: &dyn StreamInfo, c: Counter) -> u64 {
    match c {
        Counter::BytesReceived => si.bytes_received(),
        Counter::BytesSent => si.bytes_sent(),
        Counter::BytesRetransmitted => si.bytes_retransmitted(),
        Counter::PacketsRetransmitted => si.packets_retransmitted(),
        Counter::ResponseCode => si.response_code().map_or(0, u64::from),
        Counter::ConnectionId => si.connection_id().unwrap_or(0),
        Counter::UpstreamConnectionId => si.upstream_connection_id().unwrap_or(0),
        Counter::AttemptCount => si.upstream_request_attempt_count().map_or(0, u64::from),
        Counter::RouteResolutionCount => si.route_resolution_count().unwrap_or(0),
        Counter::Meter { upstream, field } => {
            let m = if upstream {
                si.upstream_bytes_meter()
            } else {
                si.downstream_bytes_meter()
            };
            m.map_or(0, |m| match field {
                MeterField::WireSent => m.wire_bytes_sent,
                MeterField::WireReceived => m.wire_bytes_received,
                MeterField::HeaderSent => m.header_bytes_sent,
                MeterField::HeaderReceived => m.header_bytes_received,
                MeterField::DecompressedHeaderSent => m.decompressed_header_bytes_sent,
                MeterField::DecompressedHeaderReceived => m.decompressed_header_bytes_received,
            })
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn eval_duration<'a>(si: &'a dyn StreamInfo, d: DurationOp) -> Val<'a> {
    let ms = |d: Option<Duration>| d.map_or(Val::Missing, |d| Val::U64(millis(d)));
    match d {
        DurationOp::Total => ms(si.duration()),
        DurationOp::Since(p) => ms(si.timing(p)),
        DurationOp::PoolReady => ms(si.upstream_connection_pool_ready_duration()),
        DurationOp::ConnectionRtt => ms(si.downstream_connection_rtt()),
        DurationOp::RouteResolutionMicros => si.route_resolution_time().map_or(Val::Missing, |d| {
            Val::U64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        }),
        DurationOp::ResponseTx => {
            match (
                si.timing(TimePoint::LastDownstreamTxByteSent),
                si.timing(TimePoint::FirstUpstreamRxByteReceived),
            ) {
                (Some(down), Some(up)) => {
                    if down >= up {
                        Val::U64(millis(down - up))
                    } else {
                        Val::I64(-i64::try_from(millis(up - down)).unwrap_or(i64::MAX))
                    }
                }
                _ => Val::Missing,
            }
        }
    }
}

fn eval_text<'a>(si: &'a dyn StreamInfo, f: TextField, buf: &mut Vec<u8>) -> Val<'a> {
    use TextField as T;
    match f {
        T::ConnectionTerminationDetails => val_str(si.connection_termination_details()),
        T::RouteName => val_str(non_empty(si.route_name())),
        T::VirtualClusterName => val_str(si.virtual_cluster_name()),
        T::FilterChainName => val_str(non_empty(si.filter_chain_name())),
        T::ListenerName => val_str(non_empty(si.listener_name())),
        T::StreamId => val_str(si.stream_id()),
        T::Ja3 => val_str(non_empty(si.ja3_hash())),
        T::Ja4 => val_str(non_empty(si.ja4_hash())),
        T::UpstreamCluster => val_str(non_empty(si.upstream_cluster_observability_name())),
        T::UpstreamClusterRaw => val_str(non_empty(si.upstream_cluster_name())),
        T::TraceId => val_str(non_empty(si.trace_id())),
        T::SpanId => val_str(non_empty(si.span_id())),
        T::UpstreamServerName => val_str(non_empty(si.upstream_server_name())),
        T::UpstreamLocalCloseReason => val_str(non_empty(si.upstream_local_close_reason())),
        T::DownstreamLocalCloseReason => val_str(non_empty(si.downstream_local_close_reason())),
        T::CustomFlags => Val::Str(si.custom_flags()),
        T::DownstreamTransportFailureReason | T::UpstreamTransportFailureReason => {
            let reason = if f == T::DownstreamTransportFailureReason {
                si.downstream_transport_failure_reason()
            } else {
                si.upstream_transport_failure_reason()
            };
            match non_empty(reason) {
                None => Val::Missing,
                Some(r) if !r.contains(' ') => Val::Str(r),
                Some(r) => {
                    let start = buf.len();
                    buf.extend(r.bytes().map(|b| if b == b' ' { b'_' } else { b }));
                    Val::Written(start)
                }
            }
        }
    }
}

fn write_ip(buf: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf.push(b'.');
                }
                crate::json::push_u64(buf, u64::from(octet));
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(buf, "{v6}");
        }
    }
}

/// `Address` as Envoy's `asString()`, without the formatting machinery for IPv4.
fn write_address(buf: &mut Vec<u8>, a: Address<'_>) {
    match a {
        Address::Ip(sa) => {
            if sa.is_ipv6() {
                buf.push(b'[');
                write_ip(buf, sa.ip());
                buf.push(b']');
            } else {
                write_ip(buf, sa.ip());
            }
            buf.push(b':');
            crate::json::push_u64(buf, u64::from(sa.port()));
        }
        other => {
            let _ = write!(buf, "{other}");
        }
    }
}

fn eval_address<'a>(a: Address<'a>, mode: AddrMode, buf: &mut Vec<u8>) -> Val<'a> {
    let start = buf.len();
    match mode {
        AddrMode::WithPort => {
            write_address(buf, a);
            Val::Written(start)
        }
        AddrMode::WithoutPort(mask) => match a {
            Address::Ip(sa) => {
                match mask {
                    Mask::None => write_ip(buf, sa.ip()),
                    Mask::Invalid => {}
                    Mask::Prefix(len) => {
                        let (net, len) = mask_ip(sa.ip(), len);
                        write_ip(buf, net);
                        let _ = write!(buf, "/{len}");
                    }
                }
                Val::Written(start)
            }
            other => {
                let _ = write!(buf, "{other}");
                Val::Written(start)
            }
        },
        AddrMode::JustPort => match a {
            Address::Ip(sa) => Val::U64(u64::from(sa.port())),
            // Envoy prints an empty string (and null in JSON) for non-IP addresses.
            _ => Val::Missing,
        },
        AddrMode::EndpointId => match a {
            Address::Internal { endpoint_id, .. } => Val::Str(endpoint_id),
            _ => Val::Str(""),
        },
    }
}

fn mask_ip(ip: IpAddr, len: u32) -> (IpAddr, u32) {
    match ip {
        IpAddr::V4(v4) => {
            let len = len.min(32);
            let bits = u32::from(v4);
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            (IpAddr::V4((bits & mask).into()), len)
        }
        IpAddr::V6(v6) => {
            let len = len.min(128);
            let bits = u128::from(v6);
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            (IpAddr::V6((bits & mask).into()), len)
        }
    }
}

/// Envoy's `HeaderUtility::stripPortFromHost`, on `buf[start..]`.
fn strip_port(buf: &mut Vec<u8>, start: usize) {
    let host = &buf[start..];
    let Some(colon) = host.iter().rposition(|&b| b == b':') else {
        return;
    };
    if let Some(v6_end) = host.iter().rposition(|&b| b == b']')
        && v6_end > colon
    {
        return;
    }
    let port = &host[colon + 1..];
    if !port.is_empty() && port.len() <= 10 && port.iter().all(u8::is_ascii_digit) {
        let fits = std::str::from_utf8(port)
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_some();
        if fits {
            buf.truncate(start + colon);
        }
    }
}

fn eval_attempted<'a>(si: &'a dyn StreamInfo, kind: Attempted, buf: &mut Vec<u8>) -> Val<'a> {
    let start = buf.len();
    let mut first = true;
    match kind {
        Attempted::ConnectionIds => si.for_each_upstream_connection_id_attempted(&mut |id| {
            if !first {
                buf.push(b',');
            }
            first = false;
            let _ = write!(buf, "{id}");
        }),
        Attempted::Hosts { without_port } | Attempted::HostNames { without_port } => {
            let names = matches!(kind, Attempted::HostNames { .. });
            si.for_each_upstream_host_attempted(&mut |addr, hostname| {
                if !first {
                    buf.push(b',');
                }
                first = false;
                let item = buf.len();
                if names && !hostname.is_empty() {
                    buf.extend_from_slice(hostname.as_bytes());
                    if without_port {
                        strip_port(buf, item);
                    }
                } else if without_port {
                    match addr {
                        Address::Ip(sa) => write_ip(buf, sa.ip()),
                        other => {
                            let _ = write!(buf, "{other}");
                        }
                    }
                } else {
                    let _ = write!(buf, "{addr}");
                }
            });
        }
    }
    if first {
        Val::Missing
    } else {
        Val::Written(start)
    }
}

fn eval_tls<'a>(info: &'a TlsInfo, field: TlsField, buf: &mut Vec<u8>) -> Val<'a> {
    use TlsField as F;
    let list = |l: &'a [String], buf: &mut Vec<u8>| -> Val<'a> {
        match l {
            [] => Val::Missing,
            [one] => val_str(non_empty(Some(one))),
            many => {
                let start = buf.len();
                for (i, s) in many.iter().enumerate() {
                    if i > 0 {
                        buf.push(b',');
                    }
                    buf.extend_from_slice(s.as_bytes());
                }
                Val::Written(start)
            }
        }
    };
    let one = |s: &'a str| val_str(non_empty(Some(s)));
    match field {
        F::PeerUriSan => list(&info.peer_uri_sans, buf),
        F::PeerDnsSan => list(&info.peer_dns_sans, buf),
        F::PeerIpSan => list(&info.peer_ip_sans, buf),
        F::PeerEmailSan => list(&info.peer_email_sans, buf),
        F::PeerOthernameSan => list(&info.peer_othername_sans, buf),
        F::LocalUriSan => list(&info.local_uri_sans, buf),
        F::LocalDnsSan => list(&info.local_dns_sans, buf),
        F::LocalIpSan => list(&info.local_ip_sans, buf),
        F::LocalEmailSan => list(&info.local_email_sans, buf),
        F::LocalOthernameSan => list(&info.local_othername_sans, buf),
        F::PeerChainFingerprints256 => list(&info.peer_chain_fingerprints_256, buf),
        F::PeerChainFingerprints1 => list(&info.peer_chain_fingerprints_1, buf),
        F::PeerChainSerials => list(&info.peer_chain_serials, buf),
        F::PeerSubject => one(&info.peer_subject),
        F::LocalSubject => one(&info.local_subject),
        F::PeerIssuer => one(&info.peer_issuer),
        F::SessionId => one(&info.session_id),
        F::Cipher => one(&info.cipher),
        F::Version => one(&info.version),
        F::Group => one(&info.group),
        F::PeerFingerprint256 => one(&info.peer_fingerprint_256),
        F::PeerFingerprint1 => one(&info.peer_fingerprint_1),
        F::PeerSerial => one(&info.peer_serial),
        F::PeerIssuerFingerprint256 => one(&info.peer_issuer_fingerprint_256),
        F::PeerIssuerSerial => one(&info.peer_issuer_serial),
        F::PeerCert => one(&info.peer_cert_url_encoded_pem),
    }
}

fn eval_coalesce<'a>(
    ops: &'a [(Op, Option<usize>)],
    si: &'a dyn StreamInfo,
    buf: &mut Vec<u8>,
) -> Val<'a> {
    use prost_types::value::Kind;
    for (op, max) in ops {
        let start = buf.len();
        let v = op.eval(si, buf);
        let empty = match &v {
            Val::Missing => true,
            Val::Str(s) => s.is_empty(),
            Val::Bytes(b) => b.is_empty(),
            Val::Cow(c) => c.is_empty(),
            Val::Written(s) => buf.len() == *s,
            Val::U64(_) | Val::I64(_) | Val::ProtoStruct(_) => false,
            Val::Proto(p) => match &p.kind {
                None | Some(Kind::NullValue(_)) => true,
                Some(Kind::StringValue(s)) => s.is_empty(),
                _ => false,
            },
            Val::Json(j) => j.is_null() || j.as_str() == Some(""),
        };
        if !empty {
            // An entry's own max_length applies to its value first.
            return truncate_val(v, *max, buf);
        }
        buf.truncate(start);
    }
    Val::Missing
}

fn truncate_val<'a>(v: Val<'a>, max: Option<usize>, buf: &mut Vec<u8>) -> Val<'a> {
    let Some(max) = max else {
        return v;
    };
    match v {
        Val::Str(s) => Val::Bytes(truncate_bytes(s.as_bytes(), Some(max))),
        Val::Bytes(b) => Val::Bytes(truncate_bytes(b, Some(max))),
        Val::Cow(Cow::Borrowed(s)) => Val::Bytes(truncate_bytes(s.as_bytes(), Some(max))),
        Val::Cow(Cow::Owned(s)) => {
            let start = buf.len();
            buf.extend_from_slice(truncate_bytes(s.as_bytes(), Some(max)));
            Val::Written(start)
        }
        Val::Written(start) => {
            if buf.len() - start > max {
                buf.truncate(start + max);
            }
            Val::Written(start)
        }
        other => other,
    }
}

fn eval_grpc_status<'a>(si: &'a dyn StreamInfo, f: GrpcFormat, buf: &mut Vec<u8>) -> Val<'a> {
    // Only for gRPC requests: a :path and a content-type of application/grpc[+...].
    if si.request_pseudo_header(&PseudoHeader::Path).is_none() {
        return Val::Missing;
    }
    let ct = request_header(si, &http::header::CONTENT_TYPE).unwrap_or(b"");
    let grpc = ct.starts_with(b"application/grpc") && (ct.len() == 16 || ct[16] == b'+');
    if !grpc {
        return Val::Missing;
    }
    let from_map = |m: Option<&http::HeaderMap>| -> Option<i64> {
        let v = m?.get(&GRPC_STATUS)?.as_bytes();
        if v.is_empty() {
            return None;
        }
        Some(
            std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .map_or(-1, |n| i64::try_from(n).unwrap_or(-1)),
        )
    };
    let status = from_map(si.response_trailers())
        .or_else(|| from_map(si.response_headers()))
        .or_else(|| si.response_code().map(http_to_grpc_status));
    let Some(status) = status else {
        return Val::Missing;
    };
    match f {
        GrpcFormat::Number => Val::I64(status),
        GrpcFormat::Camel | GrpcFormat::Snake => {
            let name = usize::try_from(status).ok().and_then(|i| {
                let table = if f == GrpcFormat::Camel {
                    &GRPC_CAMEL
                } else {
                    &GRPC_SNAKE
                };
                table.get(i).copied()
            });
            match name {
                Some(n) => Val::Str(n),
                None => {
                    let start = buf.len();
                    let _ = write!(buf, "{status}");
                    Val::Written(start)
                }
            }
        }
    }
}

const GRPC_CAMEL: [&str; 17] = [
    "Ok",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

const GRPC_SNAKE: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// Envoy's `Grpc::Utility::httpToGrpcStatus`.
fn http_to_grpc_status(code: u16) -> i64 {
    match code {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502 | 503 | 504 => 14,
        _ => 2,
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `%QUERY_PARAM(KEY)%`: the first value of KEY, both percent-decoded.
fn eval_query_param<'a>(si: &'a dyn StreamInfo, key: &str, buf: &mut Vec<u8>) -> Val<'a> {
    let Some(path) = si.request_pseudo_header(&PseudoHeader::Path) else {
        return Val::Missing;
    };
    let Some((_, query)) = path.split_once('?') else {
        return Val::Missing;
    };
    let start = buf.len();
    for pair in query.split('&') {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        percent_decode(buf, k.as_bytes());
        let matches = &buf[start..] == key.as_bytes();
        buf.truncate(start);
        if matches {
            if !v.contains('%') {
                return Val::Str(v);
            }
            percent_decode(buf, v.as_bytes());
            return Val::Written(start);
        }
    }
    Val::Missing
}

/// Envoy's `PercentEncoding::decode`: valid `%XX` escapes decoded, anything
/// else copied.
fn percent_decode(buf: &mut Vec<u8>, s: &[u8]) {
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%'
            && i + 2 < s.len()
            && let (Some(h), Some(l)) = (hex_val(s[i + 1]), hex_val(s[i + 2]))
        {
            buf.push(h << 4 | l);
            i += 3;
            continue;
        }
        buf.push(s[i]);
        i += 1;
    }
}

/// `%QUERY_PARAMS(DECODED)%`: escapes of unreserved characters decoded,
/// other valid escapes kept, a `%` that starts no valid escape dropped.
fn decode_unreserved(buf: &mut Vec<u8>, s: &[u8]) {
    let mut i = 0;
    while i < s.len() {
        if s[i] != b'%' {
            buf.push(s[i]);
            i += 1;
            continue;
        }
        match (
            s.get(i + 1).copied().and_then(hex_val),
            s.get(i + 2).copied().and_then(hex_val),
        ) {
            (Some(h), Some(l)) => {
                let c = h << 4 | l;
                if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
                    buf.push(c);
                } else {
                    buf.extend_from_slice(&s[i..i + 3]);
                }
                i += 3;
            }
            _ => i += 1,
        }
    }
}

/// Envoy's `StringUtil::sanitizeInvalidHostname`.
fn sanitize_hostname(buf: &mut Vec<u8>, s: &str) {
    let ok = |b: u8| b.is_ascii_alphanumeric() || b == b'.' || b == b'-';
    if s.bytes().all(ok) {
        buf.extend_from_slice(s.as_bytes());
        return;
    }
    buf.extend_from_slice(b"invalid:");
    buf.extend(s.bytes().map(|b| if ok(b) { b } else { b'_' }));
}

fn write_uuid4(buf: &mut Vec<u8>) {
    let mut bytes = random_128().to_be_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            buf.push(b'-');
        }
        let _ = write!(buf, "{b:02x}");
    }
}

fn random_128() -> u128 {
    use std::cell::Cell;
    use std::hash::{BuildHasher as _, Hasher as _};
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(0x9e37_79b9_7f4a_7c15);
            h.finish() | 1
        });
    }
    // splitmix64, seeded per thread from the OS-randomized hasher keys.
    let next = || {
        STATE.with(|s| {
            let x = s.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
            s.set(x);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        })
    };
    (u128::from(next()) << 64) | u128::from(next())
}
