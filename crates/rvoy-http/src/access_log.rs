//! Access log emission for HTTP streams: evaluating `AccessLogFilter`s and
//! rendering each logger's format into its sink.

use rvoy_format::{AccessLogType, MetadataKind, StreamInfo};
use rvoy_model::access_log::{AccessLogFilter, Comparison};

use crate::context::AccessLogger;
use crate::request_info::RequestInfo;

/// Whether a filter lets this stream be logged (or a local reply mapper apply).
pub fn filter_matches(filter: &AccessLogFilter, info: &RequestInfo) -> bool {
    match filter {
        AccessLogFilter::StatusCode(c) => {
            c.test(u64::from(info.response_status.map_or(0, |s| s.as_u16())))
        }
        AccessLogFilter::Duration(c) => {
            let ms = info.duration().map_or(0, |d| d.as_millis() as u64);
            c.test(ms)
        }
        AccessLogFilter::NotHealthCheck => !info.is_health_check,
        AccessLogFilter::Traceable => false,
        AccessLogFilter::Runtime { default, .. } => default.sample(fastrand::u64(..)),
        AccessLogFilter::And(all) => all.iter().all(|f| filter_matches(f, info)),
        AccessLogFilter::Or(any) => any.iter().any(|f| filter_matches(f, info)),
        AccessLogFilter::Header(h) => info
            .request_headers
            .as_ref()
            .is_some_and(|hdrs| h.matches(hdrs)),
        AccessLogFilter::ResponseFlags(flags) => {
            if flags.is_empty() {
                !info.response_flags.is_empty()
            } else {
                let set = info.response_flags.to_short_string();
                set.split(',').any(|f| flags.iter().any(|x| x == f))
            }
        }
        AccessLogFilter::Metadata(m) => m.matches(StreamInfo::metadata(
            info,
            MetadataKind::Dynamic,
            &m.namespace,
        )),
        AccessLogFilter::LogType { types, exclude } => {
            types.contains(&info.access_log_type) != *exclude
        }
        AccessLogFilter::GrpcStatus { statuses, exclude } => {
            let code = info.grpc_status.unwrap_or_else(|| {
                info.response_status.map_or(2, |s| {
                    crate::local_reply::http_to_grpc_status(s.as_u16()) as i32
                })
            });
            let hit = statuses.contains(&code);
            hit != *exclude
        }
    }
}

/// Logs the end of the stream (`DownstreamEnd`) to every logger whose
/// filter matches.
pub fn emit(loggers: &[AccessLogger], info: &mut RequestInfo) {
    if loggers.is_empty() {
        return;
    }
    info.access_log_type = AccessLogType::DownstreamEnd;
    let info = &*info;
    // Bytes, as Envoy writes them: a header value that is not UTF-8 is
    // logged as it came, not replaced.
    let mut line = Vec::with_capacity(256);
    for logger in loggers {
        if let Some(f) = &logger.config.filter
            && !filter_matches(f, info)
        {
            continue;
        }
        write_line(logger, info, &mut line);
    }
}

#[allow(dead_code)]
fn _comparison_is_used(c: Comparison) -> bool {
    c.test(0)
}

/// Whether a filter lets a connection-level record (TCP proxy, listener
/// access logs) be logged: the same filters, read through [`StreamInfo`]
/// (no headers; the response code of a connection is 0).
pub fn filter_matches_info(filter: &AccessLogFilter, info: &dyn StreamInfo) -> bool {
    match filter {
        AccessLogFilter::StatusCode(c) => c.test(u64::from(info.response_code().unwrap_or(0))),
        AccessLogFilter::Duration(c) => c.test(info.duration().map_or(0, |d| d.as_millis() as u64)),
        AccessLogFilter::NotHealthCheck => true,
        AccessLogFilter::Traceable => false,
        AccessLogFilter::Runtime { default, .. } => default.sample(fastrand::u64(..)),
        AccessLogFilter::And(all) => all.iter().all(|f| filter_matches_info(f, info)),
        AccessLogFilter::Or(any) => any.iter().any(|f| filter_matches_info(f, info)),
        AccessLogFilter::Header(h) => info.request_headers().is_some_and(|hdrs| h.matches(hdrs)),
        AccessLogFilter::ResponseFlags(flags) => {
            let set = info.response_flags();
            if flags.is_empty() {
                !set.is_empty()
            } else {
                let short = set.to_short_string();
                short.split(',').any(|f| flags.iter().any(|x| x == f))
            }
        }
        AccessLogFilter::Metadata(m) => {
            m.matches(info.metadata(MetadataKind::Dynamic, &m.namespace))
        }
        AccessLogFilter::LogType { types, exclude } => {
            types.contains(&info.access_log_type()) != *exclude
        }
        AccessLogFilter::GrpcStatus { statuses, exclude } => {
            let code =
                crate::local_reply::http_to_grpc_status(info.response_code().unwrap_or(0)) as i32;
            statuses.contains(&code) != *exclude
        }
    }
}

/// Renders and writes a connection-level record to every logger whose
/// filter matches.
pub fn emit_info(loggers: &[AccessLogger], info: &dyn StreamInfo) {
    if loggers.is_empty() {
        return;
    }
    let mut line = Vec::with_capacity(256);
    for logger in loggers {
        if let Some(f) = &logger.config.filter
            && !filter_matches_info(f, info)
        {
            continue;
        }
        write_line(logger, info, &mut line);
    }
}

/// Renders `info` with the logger's format into `line` (cleared first) and
/// hands it to the logger's sink; a JSON line gets its newline.
fn write_line(logger: &AccessLogger, info: &dyn StreamInfo, line: &mut Vec<u8>) {
    line.clear();
    logger.config.format.format.render_bytes(info, line);
    if logger.config.format.json && line.last() != Some(&b'\n') {
        line.push(b'\n');
    }
    logger.sink.write_line(line);
}
