//! `envoy.filters.http.fault`: delays and aborts injected into a share of the
//! requests (fixed, or asked for by `x-envoy-fault-*` request headers), and a
//! response body throughput limit. The same `HTTPFault` message is the
//! filter's config and its per-route override.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rvoy_api::envoy::extensions::filters::common::fault::v3 as common_pb;
use rvoy_api::envoy::extensions::filters::http::fault::v3 as pb;
use rvoy_config_load::{ConfigError, FieldPath};

use crate::matcher::{FractionalPercent, HeaderMatcher};
use crate::support::{MessageSupport, yes};

pub(crate) static SUPPORT: &[MessageSupport] = &[
    MessageSupport {
        message: "envoy.extensions.filters.http.fault.v3.HTTPFault",
        fields: &[
            yes("delay"),
            yes("abort"),
            yes("upstream_cluster"),
            yes("headers"),
            yes("downstream_nodes"),
            yes("max_active_faults"),
            yes("response_rate_limit"),
            // Names of runtime keys: rvoy reads no runtime in the data plane,
            // so (as Envoy with no runtime layer setting them) the configured
            // values apply; a static layer setting one is rejected at load.
            yes("delay_percent_runtime"),
            yes("abort_percent_runtime"),
            yes("delay_duration_runtime"),
            yes("abort_http_status_runtime"),
            yes("max_active_faults_runtime"),
            yes("response_rate_limit_percent_runtime"),
            yes("abort_grpc_status_runtime"),
            yes("disable_downstream_cluster_stats"),
        ],
    },
    MessageSupport {
        message: "envoy.extensions.filters.http.fault.v3.FaultAbort",
        fields: &[
            yes("http_status"),
            yes("grpc_status"),
            yes("header_abort"),
            yes("percentage"),
            yes("response_body"),
        ],
    },
    MessageSupport {
        message: "envoy.extensions.filters.http.fault.v3.FaultAbort.HeaderAbort",
        fields: &[],
    },
    MessageSupport {
        message: "envoy.extensions.filters.common.fault.v3.FaultDelay",
        fields: &[yes("fixed_delay"), yes("header_delay"), yes("percentage")],
    },
    MessageSupport {
        message: "envoy.extensions.filters.common.fault.v3.FaultDelay.HeaderDelay",
        fields: &[],
    },
    MessageSupport {
        message: "envoy.extensions.filters.common.fault.v3.FaultRateLimit",
        fields: &[yes("fixed_limit"), yes("header_limit"), yes("percentage")],
    },
    MessageSupport {
        message: "envoy.extensions.filters.common.fault.v3.FaultRateLimit.FixedLimit",
        fields: &[yes("limit_kbps")],
    },
    MessageSupport {
        message: "envoy.extensions.filters.common.fault.v3.FaultRateLimit.HeaderLimit",
        fields: &[],
    },
];

/// Envoy's default runtime keys of the fault filter.
pub mod runtime_keys {
    pub const DELAY_PERCENT: &str = "fault.http.delay.fixed_delay_percent";
    pub const ABORT_PERCENT: &str = "fault.http.abort.abort_percent";
    pub const DELAY_DURATION: &str = "fault.http.delay.fixed_duration_ms";
    pub const ABORT_HTTP_STATUS: &str = "fault.http.abort.http_status";
    pub const ABORT_GRPC_STATUS: &str = "fault.http.abort.grpc_status";
    pub const MAX_ACTIVE_FAULTS: &str = "fault.http.max_active_faults";
    pub const RESPONSE_RATE_LIMIT_PERCENT: &str = "fault.http.rate_limit.response_percent";
    /// Every key per downstream cluster starts with this.
    pub const PREFIX: &str = "fault.http.";
}

/// The body of an abort when `response_body` is unset.
pub const DEFAULT_ABORT_BODY: &str = "fault filter abort";

/// What an abort answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AbortKind {
    /// `http_status`.
    Http(u16),
    /// `grpc_status`: HTTP 200 with this gRPC status.
    Grpc(u32),
    /// `header_abort`: `x-envoy-fault-abort-request` /
    /// `x-envoy-fault-abort-grpc-request` say.
    Header,
}

/// `FaultAbort`.
#[derive(Clone, Debug)]
pub struct Abort {
    pub kind: AbortKind,
    pub percentage: FractionalPercent,
    pub body: Bytes,
}

/// How long a delay lasts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DelayKind {
    /// `fixed_delay`, in whole milliseconds as Envoy reads it.
    Fixed(Duration),
    /// `header_delay`: `x-envoy-fault-delay-request` (milliseconds).
    Header,
}

/// `FaultDelay`.
#[derive(Clone, Debug)]
pub struct Delay {
    pub kind: DelayKind,
    pub percentage: FractionalPercent,
}

/// The response throughput limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RateLimitKind {
    /// `fixed_limit.limit_kbps` (KiB/s).
    Fixed(u64),
    /// `header_limit`: `x-envoy-fault-throughput-response` (KiB/s).
    Header,
}

/// `FaultRateLimit`.
#[derive(Clone, Debug)]
pub struct ResponseRateLimit {
    pub kind: RateLimitKind,
    pub percentage: FractionalPercent,
}

/// `HTTPFault`: the filter's config or a route's override.
#[derive(Clone, Debug)]
pub struct Fault {
    pub abort: Option<Abort>,
    pub delay: Option<Delay>,
    /// Faults apply only to requests routed to this cluster.
    pub upstream_cluster: Option<Arc<str>>,
    pub headers: Vec<HeaderMatcher>,
    /// Faults apply only to requests whose `x-envoy-downstream-service-node`
    /// is one of these (when any is listed).
    pub downstream_nodes: Vec<String>,
    pub max_active_faults: Option<u64>,
    pub response_rate_limit: Option<ResponseRateLimit>,
    pub disable_downstream_cluster_stats: bool,
    /// The runtime keys this config reads (configured or Envoy's defaults).
    pub runtime_keys: Vec<String>,
}

fn percent(p: &Option<rvoy_api::envoy::r#type::v3::FractionalPercent>) -> FractionalPercent {
    // An unset percentage is 0%, as an empty proto message in Envoy.
    p.as_ref()
        .map(FractionalPercent::from_proto)
        .unwrap_or(FractionalPercent {
            numerator: 0,
            denominator: 100,
        })
}

fn or_default(v: &str, default: &str) -> String {
    if v.is_empty() {
        default.to_owned()
    } else {
        v.to_owned()
    }
}

impl Fault {
    pub fn from_proto(p: &pb::HttpFault, path: &FieldPath) -> Result<Self, ConfigError> {
        let abort = p
            .abort
            .as_ref()
            .map(|a| abort(a, &path.field("abort")))
            .transpose()?;
        let delay = p
            .delay
            .as_ref()
            .map(|d| delay(d, &path.field("delay")))
            .transpose()?;
        let response_rate_limit = p
            .response_rate_limit
            .as_ref()
            .map(|r| rate_limit(r, &path.field("response_rate_limit")))
            .transpose()?;
        let headers = p
            .headers
            .iter()
            .enumerate()
            .map(|(i, h)| HeaderMatcher::from_proto(h, &path.field("headers").index(i)))
            .collect::<Result<Vec<_>, _>>()?;
        use runtime_keys as k;
        let runtime_keys = vec![
            or_default(&p.delay_percent_runtime, k::DELAY_PERCENT),
            or_default(&p.abort_percent_runtime, k::ABORT_PERCENT),
            or_default(&p.delay_duration_runtime, k::DELAY_DURATION),
            or_default(&p.abort_http_status_runtime, k::ABORT_HTTP_STATUS),
            or_default(&p.abort_grpc_status_runtime, k::ABORT_GRPC_STATUS),
            or_default(&p.max_active_faults_runtime, k::MAX_ACTIVE_FAULTS),
            or_default(
                &p.response_rate_limit_percent_runtime,
                k::RESPONSE_RATE_LIMIT_PERCENT,
            ),
        ];
        Ok(Fault {
            abort,
            delay,
            upstream_cluster: (!p.upstream_cluster.is_empty())
                .then(|| Arc::from(p.upstream_cluster.as_str())),
            headers,
            downstream_nodes: p.downstream_nodes.clone(),
            max_active_faults: p.max_active_faults.map(u64::from),
            response_rate_limit,
            disable_downstream_cluster_stats: p.disable_downstream_cluster_stats,
            runtime_keys,
        })
    }

    /// Whether a runtime key set by a static layer would change what this
    /// config does in Envoy.
    pub fn reads_runtime_key(&self, key: &str) -> bool {
        self.runtime_keys.iter().any(|k| k == key)
            || (key.starts_with(runtime_keys::PREFIX)
                && [
                    ".delay.fixed_delay_percent",
                    ".abort.abort_percent",
                    ".delay.fixed_duration_ms",
                    ".abort.http_status",
                    ".abort.grpc_status",
                ]
                .iter()
                .any(|s| key.ends_with(s)))
    }
}

/// "Not supported" for every fault filter config (filter level or per route)
/// that reads a runtime key a static runtime layer sets: Envoy would take the
/// layer's value, rvoy uses the config's.
pub(crate) fn runtime_conflicts(
    config: &prost_reflect::DynamicMessage,
    static_values: &std::collections::BTreeMap<String, prost_types::Value>,
) -> Vec<ConfigError> {
    let mut out = Vec::new();
    if !static_values.is_empty() {
        find_faults(
            &prost_reflect::Value::Message(config.clone()),
            &FieldPath::root(),
            static_values,
            &mut out,
        );
    }
    out
}

fn find_faults(
    value: &prost_reflect::Value,
    path: &FieldPath,
    static_values: &std::collections::BTreeMap<String, prost_types::Value>,
    out: &mut Vec<ConfigError>,
) {
    use prost_reflect::{ReflectMessage as _, Value};
    match value {
        Value::Message(m) if m.descriptor().full_name() == "google.protobuf.Any" => {
            if let Ok(Some(inner)) = rvoy_config_load::any::unpack_dynamic(m, path) {
                find_faults(
                    &Value::Message(Arc::unwrap_or_clone(inner.message)),
                    path,
                    static_values,
                    out,
                );
            }
        }
        Value::Message(m)
            if m.descriptor().full_name() == "envoy.extensions.filters.http.fault.v3.HTTPFault" =>
        {
            let Ok(p) = m.transcode_to::<pb::HttpFault>() else {
                return;
            };
            let Ok(fault) = Fault::from_proto(&p, path) else {
                return;
            };
            if let Some(key) = static_values.keys().find(|k| fault.reads_runtime_key(k)) {
                out.push(ConfigError::not_supported(
                    path.clone(),
                    format_args!(
                        "a runtime override of '{key}' read by the fault filter (a static runtime layer sets it)"
                    ),
                ));
            }
        }
        Value::Message(m) => {
            for (field, v) in m.fields() {
                find_faults(v, &path.field(field.name()), static_values, out);
            }
        }
        Value::List(items) => {
            for (i, item) in items.iter().enumerate() {
                find_faults(item, &path.index(i), static_values, out);
            }
        }
        Value::Map(entries) => {
            for (k, item) in entries {
                let key = match k {
                    prost_reflect::MapKey::String(s) => s.clone(),
                    other => format!("{other:?}"),
                };
                find_faults(item, &path.key(&key), static_values, out);
            }
        }
        _ => {}
    }
}

fn abort(a: &pb::FaultAbort, path: &FieldPath) -> Result<Abort, ConfigError> {
    use pb::fault_abort::ErrorType;
    let kind = match &a.error_type {
        Some(ErrorType::HttpStatus(s)) => match u16::try_from(*s) {
            Ok(code) if (200..600).contains(&code) => AbortKind::Http(code),
            _ => {
                return Err(ConfigError::semantic(
                    path.field("http_status"),
                    "value must be inside range [200, 600)",
                ));
            }
        },
        Some(ErrorType::GrpcStatus(s)) => AbortKind::Grpc(*s),
        Some(ErrorType::HeaderAbort(_)) => AbortKind::Header,
        None => {
            return Err(ConfigError::semantic(
                path.clone(),
                "one of http_status, grpc_status, header_abort is required",
            ));
        }
    };
    let body = if a.response_body.is_empty() {
        Bytes::from_static(DEFAULT_ABORT_BODY.as_bytes())
    } else {
        Bytes::from(a.response_body.clone())
    };
    Ok(Abort {
        kind,
        percentage: percent(&a.percentage),
        body,
    })
}

fn delay(d: &common_pb::FaultDelay, path: &FieldPath) -> Result<Delay, ConfigError> {
    use common_pb::fault_delay::FaultDelaySecifier;
    let kind = match &d.fault_delay_secifier {
        Some(FaultDelaySecifier::FixedDelay(dur)) => {
            let dur = crate::duration::from_proto(dur);
            if dur.is_zero() {
                return Err(ConfigError::semantic(
                    path.field("fixed_delay"),
                    "value must be greater than 0s",
                ));
            }
            // `PROTOBUF_GET_MS_REQUIRED`: whole milliseconds.
            DelayKind::Fixed(Duration::from_millis(dur.as_millis() as u64))
        }
        Some(FaultDelaySecifier::HeaderDelay(_)) => DelayKind::Header,
        None => {
            return Err(ConfigError::semantic(
                path.clone(),
                "one of fixed_delay, header_delay is required",
            ));
        }
    };
    Ok(Delay {
        kind,
        percentage: percent(&d.percentage),
    })
}

fn rate_limit(
    r: &common_pb::FaultRateLimit,
    path: &FieldPath,
) -> Result<ResponseRateLimit, ConfigError> {
    use common_pb::fault_rate_limit::LimitType;
    let kind = match &r.limit_type {
        Some(LimitType::FixedLimit(f)) if f.limit_kbps >= 1 => RateLimitKind::Fixed(f.limit_kbps),
        Some(LimitType::FixedLimit(_)) => {
            return Err(ConfigError::semantic(
                path.field("fixed_limit").field("limit_kbps"),
                "value must be greater than or equal to 1",
            ));
        }
        Some(LimitType::HeaderLimit(_)) => RateLimitKind::Header,
        None => {
            return Err(ConfigError::semantic(
                path.clone(),
                "one of fixed_limit, header_limit is required",
            ));
        }
    };
    Ok(ResponseRateLimit {
        kind,
        percentage: percent(&r.percentage),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvoy_api::envoy::r#type::v3::FractionalPercent as PbPercent;

    fn hundred() -> Option<PbPercent> {
        Some(PbPercent {
            numerator: 100,
            denominator: 0,
        })
    }

    #[test]
    fn abort_and_delay() {
        let p = pb::HttpFault {
            abort: Some(pb::FaultAbort {
                error_type: Some(pb::fault_abort::ErrorType::HttpStatus(503)),
                percentage: hundred(),
                ..Default::default()
            }),
            delay: Some(common_pb::FaultDelay {
                fault_delay_secifier: Some(common_pb::fault_delay::FaultDelaySecifier::FixedDelay(
                    prost_types::Duration {
                        seconds: 0,
                        nanos: 100_500_000,
                    },
                )),
                percentage: None,
            }),
            upstream_cluster: "backend".into(),
            max_active_faults: Some(3),
            ..Default::default()
        };
        let f = Fault::from_proto(&p, &FieldPath::root()).expect("valid");
        assert!(f.reads_runtime_key("fault.http.abort.abort_percent"));
        assert!(f.reads_runtime_key("fault.http.web.delay.fixed_duration_ms"));
        assert!(!f.reads_runtime_key("other.key"));
        let a = f.abort.expect("abort");
        assert_eq!(a.kind, AbortKind::Http(503));
        assert_eq!(a.percentage.numerator, 100);
        assert_eq!(&a.body[..], b"fault filter abort");
        let d = f.delay.expect("delay");
        assert_eq!(d.kind, DelayKind::Fixed(Duration::from_millis(100)));
        assert_eq!(d.percentage.numerator, 0);
        assert_eq!(f.upstream_cluster.as_deref(), Some("backend"));
        assert_eq!(f.max_active_faults, Some(3));
    }

    #[test]
    fn invalid_abort_status_is_rejected() {
        let p = pb::HttpFault {
            abort: Some(pb::FaultAbort {
                error_type: Some(pb::fault_abort::ErrorType::HttpStatus(700)),
                ..Default::default()
            }),
            ..Default::default()
        };
        let e = Fault::from_proto(&p, &FieldPath::root())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("abort.http_status"), "{e}");
    }

    #[test]
    fn custom_body_and_rate_limit() {
        let p = pb::HttpFault {
            abort: Some(pb::FaultAbort {
                error_type: Some(pb::fault_abort::ErrorType::HeaderAbort(
                    pb::fault_abort::HeaderAbort {},
                )),
                response_body: "nope".into(),
                ..Default::default()
            }),
            response_rate_limit: Some(common_pb::FaultRateLimit {
                limit_type: Some(common_pb::fault_rate_limit::LimitType::FixedLimit(
                    common_pb::fault_rate_limit::FixedLimit { limit_kbps: 2 },
                )),
                percentage: hundred(),
            }),
            abort_percent_runtime: "my.key".into(),
            ..Default::default()
        };
        let f = Fault::from_proto(&p, &FieldPath::root()).expect("valid");
        assert!(f.reads_runtime_key("my.key"));
        assert_eq!(f.abort.map(|a| a.body), Some(Bytes::from_static(b"nope")));
        assert_eq!(
            f.response_rate_limit.map(|r| r.kind),
            Some(RateLimitKind::Fixed(2))
        );
    }
}
