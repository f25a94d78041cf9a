//! Access logs: loggers (stdout, stderr, file), their formats and filters.
//!
//! Formats are compiled once here with `rvoy_format`; filters become a small
//! tree evaluated per request. Also home of `SubstitutionFormatString`, which
//! local replies reuse.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rvoy_api::envoy::config::accesslog::v3 as pb;
use rvoy_api::envoy::config::core::v3 as core;
use rvoy_api::envoy::extensions::access_loggers::file::v3 as file_pb;
use rvoy_api::envoy::extensions::access_loggers::stream::v3 as stream_pb;
use rvoy_config_load::any::struct_to_json;
use rvoy_config_load::{ConfigError, FieldPath};
use rvoy_format::{AccessLogType, Format};

use crate::extension::{self, Category};
use crate::headers::data_source;
use crate::matcher::{FractionalPercent, HeaderMatcher, ValueMatcher, metadata_value};
use crate::support::{Diagnostics, MessageSupport, yes};

pub(crate) static SUPPORT: &[MessageSupport] = &[
    MessageSupport {
        message: "envoy.config.accesslog.v3.AccessLog",
        fields: &[yes("name"), yes("filter"), yes("typed_config")],
    },
    MessageSupport {
        message: "envoy.config.accesslog.v3.AccessLogFilter",
        fields: &[
            yes("status_code_filter"),
            yes("duration_filter"),
            yes("not_health_check_filter"),
            yes("traceable_filter"),
            yes("runtime_filter"),
            yes("and_filter"),
            yes("or_filter"),
            yes("header_filter"),
            yes("response_flag_filter"),
            yes("grpc_status_filter"),
            yes("metadata_filter"),
            yes("log_type_filter"),
        ],
    },
    MessageSupport {
        message: "envoy.config.accesslog.v3.MetadataFilter",
        fields: &[yes("matcher"), yes("match_if_key_not_found")],
    },
    MessageSupport {
        message: "envoy.config.accesslog.v3.LogTypeFilter",
        fields: &[yes("types"), yes("exclude")],
    },
    MessageSupport {
        message: "envoy.config.accesslog.v3.ComparisonFilter",
        fields: &[yes("op"), yes("value")],
    },
    MessageSupport {
        message: "envoy.config.core.v3.RuntimeUInt32",
        fields: &[yes("default_value"), yes("runtime_key")],
    },
    MessageSupport {
        message: "envoy.config.accesslog.v3.StatusCodeFilter",
        fields: &[yes("comparison")],
    },
    MessageSupport {
        message: "envoy.config.accesslog.v3.DurationFilter",
        fields: &[yes("comparison")],
    },
    MessageSupport {
        message: "envoy.config.accesslog.v3.NotHealthCheckFilter",
        fields: &[],
    },
    MessageSupport {
        message: "envoy.config.accesslog.v3.TraceableFilter",
        fields: &[],
    },
    MessageSupport {
        message: "envoy.config.accesslog.v3.RuntimeFilter",
        fields: &[
            yes("runtime_key"),
            yes("percent_sampled"),
            yes("use_independent_randomness"),
        ],
    },
    MessageSupport {
        message: "envoy.config.accesslog.v3.AndFilter",
        fields: &[yes("filters")],
    },
    MessageSupport {
        message: "envoy.config.accesslog.v3.OrFilter",
        fields: &[yes("filters")],
    },
    MessageSupport {
        message: "envoy.config.accesslog.v3.HeaderFilter",
        fields: &[yes("header")],
    },
    MessageSupport {
        message: "envoy.config.accesslog.v3.ResponseFlagFilter",
        fields: &[yes("flags")],
    },
    MessageSupport {
        message: "envoy.config.accesslog.v3.GrpcStatusFilter",
        fields: &[yes("statuses"), yes("exclude")],
    },
    MessageSupport {
        message: "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
        fields: &[yes("log_format")],
    },
    MessageSupport {
        message: "envoy.extensions.access_loggers.stream.v3.StderrAccessLog",
        fields: &[yes("log_format")],
    },
    MessageSupport {
        message: "envoy.extensions.access_loggers.file.v3.FileAccessLog",
        fields: &[
            yes("path"),
            yes("format"),
            yes("json_format"),
            yes("typed_json_format"),
            yes("log_format"),
        ],
    },
    MessageSupport {
        message: "envoy.config.core.v3.SubstitutionFormatString",
        fields: &[
            yes("text_format"),
            yes("json_format"),
            yes("text_format_source"),
            yes("omit_empty_values"),
            yes("content_type"),
        ],
    },
];

/// A compiled `SubstitutionFormatString` (access log line or local reply body).
#[derive(Debug)]
pub struct SubstitutionFormat {
    pub format: Format,
    /// True for `json_format` (the line is one JSON object).
    pub json: bool,
    /// `content_type` of a local reply body (defaults per format kind).
    pub content_type: String,
}

/// Where log lines go.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Sink {
    Stdout,
    Stderr,
    File(PathBuf),
}

/// One configured access logger.
#[derive(Debug)]
pub struct AccessLog {
    pub name: String,
    pub filter: Option<AccessLogFilter>,
    pub sink: Sink,
    pub format: SubstitutionFormat,
}

/// A comparison in a status code or duration filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparison {
    Eq(u64),
    Ge(u64),
    Le(u64),
    Ne(u64),
}

impl Comparison {
    pub fn test(self, v: u64) -> bool {
        match self {
            Comparison::Eq(x) => v == x,
            Comparison::Ge(x) => v >= x,
            Comparison::Le(x) => v <= x,
            Comparison::Ne(x) => v != x,
        }
    }

    fn from_proto(c: Option<&pb::ComparisonFilter>) -> Comparison {
        let value = c
            .and_then(|c| c.value.as_ref())
            .map(|v| u64::from(v.default_value))
            .unwrap_or(0);
        match c.map(|c| pb::comparison_filter::Op::try_from(c.op)) {
            Some(Ok(pb::comparison_filter::Op::Ge)) => Comparison::Ge(value),
            Some(Ok(pb::comparison_filter::Op::Le)) => Comparison::Le(value),
            Some(Ok(pb::comparison_filter::Op::Ne)) => Comparison::Ne(value),
            _ => Comparison::Eq(value),
        }
    }
}

/// A compiled `AccessLogFilter` (also used by local reply mappers).
#[derive(Debug)]
pub enum AccessLogFilter {
    StatusCode(Comparison),
    /// Compared in milliseconds against the request duration.
    Duration(Comparison),
    NotHealthCheck,
    Traceable,
    Runtime {
        default: FractionalPercent,
        key: String,
    },
    And(Vec<AccessLogFilter>),
    Or(Vec<AccessLogFilter>),
    Header(HeaderMatcher),
    /// Any of these flags (short names); empty means any flag at all.
    ResponseFlags(Vec<String>),
    GrpcStatus {
        statuses: Vec<i32>,
        exclude: bool,
    },
    Metadata(MetadataFilter),
    /// The record's type is one of `types` (or, with `exclude`, is not).
    LogType {
        types: Vec<AccessLogType>,
        exclude: bool,
    },
}

/// `metadata_filter`: a value of the stream's dynamic metadata.
#[derive(Clone, Debug)]
pub struct MetadataFilter {
    /// The metadata namespace (`matcher.filter`).
    pub namespace: String,
    /// Keys into nested structs (`matcher.path`).
    pub path: Vec<String>,
    /// What the value must match when it is there.
    pub value: Option<ValueMatcher>,
    /// The answer when there is no value at the path
    /// (`match_if_key_not_found`, default true).
    pub default_match: bool,
}

impl MetadataFilter {
    /// Envoy's `MetadataFilter::evaluate` on the stream's namespace.
    pub fn matches(&self, namespace: Option<&prost_types::Struct>) -> bool {
        match metadata_value(namespace, &self.path) {
            Some(v) if v.kind.is_some() => self.value.as_ref().is_some_and(|m| m.matches(Some(v))),
            _ => self.default_match,
        }
    }
}

fn path_key(
    segment: &rvoy_api::envoy::r#type::matcher::v3::metadata_matcher::PathSegment,
) -> String {
    use rvoy_api::envoy::r#type::matcher::v3::metadata_matcher::path_segment::Segment;
    match &segment.segment {
        Some(Segment::Key(k)) => k.clone(),
        None => String::new(),
    }
}

/// The `data.accesslog.v3.AccessLogType` value `t` (already checked to be
/// defined by the config's validation).
fn access_log_type(t: i32) -> AccessLogType {
    use rvoy_api::envoy::data::accesslog::v3::AccessLogType as Pb;
    match Pb::try_from(t) {
        Ok(Pb::TcpUpstreamConnected) => AccessLogType::TcpUpstreamConnected,
        Ok(Pb::TcpPeriodic) => AccessLogType::TcpPeriodic,
        Ok(Pb::TcpConnectionStart) => AccessLogType::TcpConnectionStart,
        Ok(Pb::TcpConnectionEnd) => AccessLogType::TcpConnectionEnd,
        Ok(Pb::DownstreamStart) => AccessLogType::DownstreamStart,
        Ok(Pb::DownstreamPeriodic) => AccessLogType::DownstreamPeriodic,
        Ok(Pb::DownstreamEnd) => AccessLogType::DownstreamEnd,
        Ok(Pb::UpstreamPoolReady) => AccessLogType::UpstreamPoolReady,
        Ok(Pb::UpstreamPeriodic) => AccessLogType::UpstreamPeriodic,
        Ok(Pb::UpstreamEnd) => AccessLogType::UpstreamEnd,
        Ok(Pb::DownstreamTunnelSuccessfullyEstablished) => {
            AccessLogType::DownstreamTunnelSuccessfullyEstablished
        }
        Ok(Pb::UdpTunnelUpstreamConnected) => AccessLogType::UdpTunnelUpstreamConnected,
        Ok(Pb::UdpPeriodic) => AccessLogType::UdpPeriodic,
        Ok(Pb::UdpSessionEnd) => AccessLogType::UdpSessionEnd,
        Ok(Pb::NotSet) | Err(_) => AccessLogType::NotSet,
    }
}

/// Envoy's response flag short names accepted by `response_flag_filter`.
pub const RESPONSE_FLAG_NAMES: &[&str] = &[
    "LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "RL", "UAEX", "RLSE", "DC",
    "URX", "SI", "IH", "DPE", "UMSDR", "RFCF", "NFCF", "DT", "UPE", "NC", "OM", "DF", "DO", "DR",
    "UDO",
];

impl AccessLogFilter {
    pub fn from_proto(
        f: &pb::AccessLogFilter,
        path: &FieldPath,
        diags: &mut Diagnostics,
    ) -> Result<Self, ConfigError> {
        use pb::access_log_filter::FilterSpecifier as F;
        Ok(match &f.filter_specifier {
            Some(F::StatusCodeFilter(s)) => {
                AccessLogFilter::StatusCode(Comparison::from_proto(s.comparison.as_ref()))
            }
            Some(F::DurationFilter(d)) => {
                AccessLogFilter::Duration(Comparison::from_proto(d.comparison.as_ref()))
            }
            Some(F::NotHealthCheckFilter(_)) => AccessLogFilter::NotHealthCheck,
            Some(F::TraceableFilter(_)) => AccessLogFilter::Traceable,
            Some(F::RuntimeFilter(r)) => AccessLogFilter::Runtime {
                default: r
                    .percent_sampled
                    .as_ref()
                    .map(FractionalPercent::from_proto)
                    .unwrap_or(FractionalPercent {
                        numerator: 0,
                        denominator: 100,
                    }),
                key: r.runtime_key.clone(),
            },
            Some(F::AndFilter(a)) => AccessLogFilter::And(Self::list(
                &a.filters,
                &path.field("and_filter").field("filters"),
                diags,
            )?),
            Some(F::OrFilter(o)) => AccessLogFilter::Or(Self::list(
                &o.filters,
                &path.field("or_filter").field("filters"),
                diags,
            )?),
            Some(F::HeaderFilter(h)) => {
                let p = path.field("header_filter").field("header");
                let header = h
                    .header
                    .as_ref()
                    .ok_or_else(|| ConfigError::semantic(p.clone(), "a header is required"))?;
                AccessLogFilter::Header(HeaderMatcher::from_proto(header, &p)?)
            }
            Some(F::ResponseFlagFilter(r)) => {
                for (i, flag) in r.flags.iter().enumerate() {
                    if !RESPONSE_FLAG_NAMES.contains(&flag.as_str()) {
                        return Err(ConfigError::semantic(
                            path.field("response_flag_filter").field("flags").index(i),
                            format!("unknown response flag '{flag}'"),
                        ));
                    }
                }
                AccessLogFilter::ResponseFlags(r.flags.clone())
            }
            Some(F::GrpcStatusFilter(g)) => AccessLogFilter::GrpcStatus {
                statuses: g.statuses.clone(),
                exclude: g.exclude,
            },
            Some(F::ExtensionFilter(e)) => {
                let typed = e
                    .config_type
                    .as_ref()
                    .map(|pb::extension_filter::ConfigType::TypedConfig(a)| a);
                let p = path.field("extension_filter");
                extension::resolve(Category::AccessLogFilter, &e.name, typed, &p, diags)?;
                return Err(ConfigError::not_supported(p, &e.name));
            }
            Some(F::MetadataFilter(m)) => {
                let p = path.field("metadata_filter").field("matcher");
                let matcher = m.matcher.clone().unwrap_or_default();
                AccessLogFilter::Metadata(MetadataFilter {
                    path: matcher.path.iter().map(path_key).collect(),
                    value: matcher
                        .value
                        .as_ref()
                        .map(|v| ValueMatcher::from_proto(v, &p.field("value")))
                        .transpose()?,
                    namespace: matcher.filter,
                    default_match: m.match_if_key_not_found.unwrap_or(true),
                })
            }
            Some(F::LogTypeFilter(l)) => AccessLogFilter::LogType {
                types: l.types.iter().map(|t| access_log_type(*t)).collect(),
                exclude: l.exclude,
            },
            None => {
                return Err(ConfigError::semantic(
                    path.clone(),
                    "a filter specifier is required",
                ));
            }
        })
    }

    fn list(
        filters: &[pb::AccessLogFilter],
        path: &FieldPath,
        diags: &mut Diagnostics,
    ) -> Result<Vec<Self>, ConfigError> {
        filters
            .iter()
            .enumerate()
            .map(|(i, f)| Self::from_proto(f, &path.index(i), diags))
            .collect()
    }
}

/// Envoy's default access log format, used when none is configured.
pub fn default_format() -> Format {
    Format::parse(rvoy_format::DEFAULT_ACCESS_LOG_FORMAT)
        .unwrap_or_else(|_| Format::literal(String::new()))
}

/// Compiles a `SubstitutionFormatString`.
pub fn substitution_format(
    f: &core::SubstitutionFormatString,
    path: &FieldPath,
    _diags: &mut Diagnostics,
) -> Result<SubstitutionFormat, ConfigError> {
    use core::substitution_format_string::Format as F;
    if !f.formatters.is_empty() {
        return Err(ConfigError::not_supported(
            path.field("formatters"),
            "formatter extensions",
        ));
    }
    if f.json_format_options.is_some() {
        return Err(ConfigError::not_supported(
            path.field("json_format_options"),
            "json_format_options",
        ));
    }
    let bad = |p: FieldPath| {
        move |e: rvoy_format::FormatError| ConfigError::semantic(p.clone(), e.to_string())
    };
    let (format, json) = match &f.format {
        Some(F::TextFormat(t)) => (
            Format::text(t, f.omit_empty_values).map_err(bad(path.field("text_format")))?,
            false,
        ),
        Some(F::TextFormatSource(ds)) => {
            let p = path.field("text_format_source");
            let text = data_source(ds, &p)?;
            (
                Format::text(&String::from_utf8_lossy(&text), f.omit_empty_values)
                    .map_err(bad(p))?,
                false,
            )
        }
        Some(F::JsonFormat(s)) => (
            Format::json(&struct_to_json(s), f.omit_empty_values)
                .map_err(bad(path.field("json_format")))?,
            true,
        ),
        None => (default_format(), false),
    };
    let content_type = if !f.content_type.is_empty() {
        f.content_type.clone()
    } else if json {
        "application/json".to_owned()
    } else {
        "text/plain".to_owned()
    };
    Ok(SubstitutionFormat {
        format,
        json,
        content_type,
    })
}

fn stream_format(
    log_format: Option<&core::SubstitutionFormatString>,
    path: &FieldPath,
    diags: &mut Diagnostics,
) -> Result<SubstitutionFormat, ConfigError> {
    match log_format {
        Some(f) => substitution_format(f, &path.field("log_format"), diags),
        None => Ok(SubstitutionFormat {
            format: default_format(),
            json: false,
            content_type: "text/plain".to_owned(),
        }),
    }
}

/// Builds the access loggers of a list (`access_log` of an HCM, listener or admin).
pub fn access_logs(
    logs: &[pb::AccessLog],
    path: &FieldPath,
    diags: &mut Diagnostics,
) -> Result<Vec<Arc<AccessLog>>, ConfigError> {
    let mut out = Vec::with_capacity(logs.len());
    for (i, log) in logs.iter().enumerate() {
        let p = path.index(i);
        let typed = log
            .config_type
            .as_ref()
            .map(|pb::access_log::ConfigType::TypedConfig(a)| a);
        let resolved = extension::resolve(Category::AccessLogger, &log.name, typed, &p, diags)?;
        let cp = p.field("typed_config");
        let (sink, format) = match resolved.extension.name {
            "envoy.access_loggers.stdout" => {
                let c: stream_pb::StdoutAccessLog = resolved.config_as(&p)?;
                let f = c
                    .access_log_format
                    .map(|stream_pb::stdout_access_log::AccessLogFormat::LogFormat(f)| f);
                (Sink::Stdout, stream_format(f.as_ref(), &cp, diags)?)
            }
            "envoy.access_loggers.stderr" => {
                let c: stream_pb::StderrAccessLog = resolved.config_as(&p)?;
                let f = c
                    .access_log_format
                    .map(|stream_pb::stderr_access_log::AccessLogFormat::LogFormat(f)| f);
                (Sink::Stderr, stream_format(f.as_ref(), &cp, diags)?)
            }
            "envoy.access_loggers.file" => {
                let c: file_pb::FileAccessLog = resolved.config_as(&p)?;
                use file_pb::file_access_log::AccessLogFormat as A;
                let bad = |p: FieldPath| {
                    move |e: rvoy_format::FormatError| {
                        ConfigError::semantic(p.clone(), e.to_string())
                    }
                };
                let format = match &c.access_log_format {
                    None => stream_format(None, &cp, diags)?,
                    Some(A::Format(t)) => SubstitutionFormat {
                        format: if t.is_empty() {
                            default_format()
                        } else {
                            Format::parse(t).map_err(bad(cp.field("format")))?
                        },
                        json: false,
                        content_type: "text/plain".to_owned(),
                    },
                    Some(A::JsonFormat(s)) | Some(A::TypedJsonFormat(s)) => SubstitutionFormat {
                        format: Format::json(&struct_to_json(s), false)
                            .map_err(bad(cp.field("json_format")))?,
                        json: true,
                        content_type: "application/json".to_owned(),
                    },
                    Some(A::LogFormat(f)) => {
                        substitution_format(f, &cp.field("log_format"), diags)?
                    }
                };
                if c.path.is_empty() {
                    return Err(ConfigError::semantic(
                        cp.field("path"),
                        "a path is required",
                    ));
                }
                (Sink::File(PathBuf::from(&c.path)), format)
            }
            other => return Err(ConfigError::not_supported(p, other)),
        };
        let filter = log
            .filter
            .as_ref()
            .map(|f| AccessLogFilter::from_proto(f, &p.field("filter"), diags))
            .transpose()?;
        out.push(Arc::new(AccessLog {
            name: log.name.clone(),
            filter,
            sink,
            format,
        }));
    }
    Ok(out)
}

/// How often buffered access logs are flushed (`--file-flush-interval-msec`).
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_millis(10_000);
