//! Header mutations (`*_headers_to_add` / `*_headers_to_remove`) and data sources.
//!
//! A [`HeaderMutations`] is Envoy's `HeaderParser`: removals, then additions in
//! order, each addition with its append action and a value that may contain
//! command operators (`%DOWNSTREAM_REMOTE_ADDRESS%`), compiled once here.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use rvoy_api::envoy::config::core::v3 as core;
use rvoy_config_load::{ConfigError, FieldPath};

use crate::matcher::header_name;
use crate::support::{MessageSupport, yes};

pub(crate) static SUPPORT: &[MessageSupport] = &[
    MessageSupport {
        message: "envoy.config.core.v3.HeaderValueOption",
        fields: &[
            yes("header"),
            yes("append"),
            yes("append_action"),
            yes("keep_empty_value"),
        ],
    },
    MessageSupport {
        message: "envoy.config.core.v3.HeaderValue",
        fields: &[yes("key"), yes("value"), yes("raw_value")],
    },
    MessageSupport {
        message: "envoy.config.core.v3.DataSource",
        fields: &[
            yes("filename"),
            yes("inline_bytes"),
            yes("inline_string"),
            yes("environment_variable"),
        ],
    },
];

/// What an addition does when the header is already there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendAction {
    /// Add another value (Envoy's default).
    AppendIfExistsOrAdd,
    /// Add only when absent.
    AddIfAbsent,
    /// Replace every value, or add.
    OverwriteIfExistsOrAdd,
    /// Replace every value; do nothing when absent.
    OverwriteIfExists,
}

/// The value of an added header.
#[derive(Clone, Debug)]
pub enum HeaderValueSource {
    /// A constant, validated once.
    Literal(HeaderValue),
    /// A value with command operators, rendered per request.
    Format(Arc<rvoy_format::Format>),
}

/// One header to add.
#[derive(Clone, Debug)]
pub struct HeaderAddition {
    pub name: HeaderName,
    pub value: HeaderValueSource,
    pub action: AppendAction,
    /// Add even when the rendered value is empty.
    pub keep_empty: bool,
}

/// Envoy's `HeaderParser`: remove, then add.
#[derive(Clone, Debug, Default)]
pub struct HeaderMutations {
    pub remove: Vec<HeaderName>,
    pub add: Vec<HeaderAddition>,
}

impl HeaderMutations {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.add.is_empty()
    }

    /// Whether some added value has command operators.
    pub fn has_formats(&self) -> bool {
        self.add
            .iter()
            .any(|a| matches!(a.value, HeaderValueSource::Format(_)))
    }

    /// Builds the mutations of one config level. `request` selects Envoy's checks
    /// for request headers (no `:`-pseudo headers and no `host` may be changed).
    pub fn from_proto(
        add: &[core::HeaderValueOption],
        remove: &[String],
        add_path: &FieldPath,
        remove_path: &FieldPath,
        request: bool,
    ) -> Result<Self, ConfigError> {
        let mut out = HeaderMutations::default();
        for (i, name) in remove.iter().enumerate() {
            let p = remove_path.index(i);
            let h = header_name(name, &p)?;
            if name.starts_with(':') || (request && h == http::header::HOST) {
                return Err(ConfigError::semantic(
                    p,
                    ":-prefixed or host headers may not be removed",
                ));
            }
            out.remove.push(h);
        }
        for (i, option) in add.iter().enumerate() {
            let p = add_path.index(i);
            let Some(hv) = &option.header else {
                return Err(ConfigError::semantic(
                    p.field("header"),
                    "a header is required",
                ));
            };
            let key = hv.key.as_str();
            if key.starts_with(':') && !(request && key.eq_ignore_ascii_case(":authority"))
                || key.is_empty()
            {
                return Err(ConfigError::semantic(
                    p.field("header").field("key"),
                    ":-prefixed or host headers may not be modified",
                ));
            }
            let name = header_name(key, &p.field("header").field("key"))?;
            if request && name == http::header::HOST {
                return Err(ConfigError::semantic(
                    p.field("header").field("key"),
                    ":-prefixed or host headers may not be modified",
                ));
            }
            let raw = if hv.raw_value.is_empty() {
                hv.value.clone()
            } else {
                String::from_utf8_lossy(&hv.raw_value).into_owned()
            };
            let value = value_source(&raw, &p.field("header").field("value"))?;
            let action = match option.append {
                Some(true) => AppendAction::AppendIfExistsOrAdd,
                Some(false) => AppendAction::OverwriteIfExistsOrAdd,
                None => match core::header_value_option::HeaderAppendAction::try_from(
                    option.append_action,
                ) {
                    Ok(core::header_value_option::HeaderAppendAction::AddIfAbsent) => {
                        AppendAction::AddIfAbsent
                    }
                    Ok(core::header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd) => {
                        AppendAction::OverwriteIfExistsOrAdd
                    }
                    Ok(core::header_value_option::HeaderAppendAction::OverwriteIfExists) => {
                        AppendAction::OverwriteIfExists
                    }
                    _ => AppendAction::AppendIfExistsOrAdd,
                },
            };
            out.add.push(HeaderAddition {
                name,
                value,
                action,
                keep_empty: option.keep_empty_value,
            });
        }
        Ok(out)
    }
}

/// Compiles a header value: a literal when it has no command operators.
pub fn value_source(text: &str, path: &FieldPath) -> Result<HeaderValueSource, ConfigError> {
    let format = rvoy_format::Format::header_value(text).map_err(|e| {
        ConfigError::semantic(path.clone(), format!("invalid header value format: {e}"))
    })?;
    if let Some(literal) = format.as_literal() {
        let value = HeaderValue::from_str(literal).map_err(|_| {
            ConfigError::semantic(path.clone(), format!("invalid header value '{literal}'"))
        })?;
        return Ok(HeaderValueSource::Literal(value));
    }
    Ok(HeaderValueSource::Format(Arc::new(format)))
}

/// Reads a `DataSource` (file, inline bytes or string, environment variable).
pub fn data_source(ds: &core::DataSource, path: &FieldPath) -> Result<Bytes, ConfigError> {
    use core::data_source::Specifier as S;
    match &ds.specifier {
        Some(S::Filename(f)) => read_config_file(Path::new(f))
            .map(Bytes::from)
            .map_err(|e| {
                ConfigError::semantic(path.field("filename"), format!("Invalid path: {f}: {e}"))
            }),
        Some(S::InlineBytes(b)) => Ok(Bytes::from(b.clone())),
        Some(S::InlineString(s)) => Ok(Bytes::from(s.clone())),
        Some(S::EnvironmentVariable(v)) => std::env::var(v).map(Bytes::from).map_err(|_| {
            ConfigError::semantic(
                path.field("environment_variable"),
                format!("Environment variable doesn't exist: {v}"),
            )
        }),
        None => Ok(Bytes::new()),
    }
}

/// Reads a file named by the config (`DataSource.filename`, TLS material) the way
/// Envoy's `Filesystem::Instance::fileReadToEnd` does: a path under `/dev/fd/` is
/// read as is; any other path is canonicalized first and refused when that fails or
/// lands in `/dev`, `/sys` or `/proc` (Envoy's `illegalPath`). So `filename:
/// /dev/zero` (or `/dev/stdin`, `/dev/urandom`) is a config error, not a read that
/// never ends.
pub fn read_config_file(path: &Path) -> std::io::Result<Vec<u8>> {
    let fd_path = path.to_str().is_some_and(|p| p.starts_with("/dev/fd/"));
    if !fd_path {
        let canonical = std::fs::canonicalize(path)?;
        if ["/dev", "/sys", "/proc"]
            .iter()
            .any(|dir| canonical.starts_with(dir))
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "files under /dev, /sys and /proc are not read",
            ));
        }
    }
    std::fs::read(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str) -> core::DataSource {
        core::DataSource {
            specifier: Some(core::data_source::Specifier::Filename(name.into())),
            ..Default::default()
        }
    }

    /// Found by the `config_yaml` fuzz target's review (docs/fuzzing.md): `filename:
    /// /dev/zero` used to read until memory ran out. Envoy refuses such paths.
    #[test]
    fn special_files_are_refused_like_envoy() {
        let p = FieldPath::root();
        for f in [
            "/dev/zero",
            "/dev/urandom",
            "/proc/self/status",
            "/sys",
            "/dev",
        ] {
            let err = data_source(&file(f), &p).expect_err(f).to_string();
            assert!(err.contains(&format!("Invalid path: {f}: ")), "{err}");
        }
        let err = data_source(&file("/nonexistent/rvoy"), &p).expect_err("missing");
        assert!(
            err.to_string()
                .contains("Invalid path: /nonexistent/rvoy: ")
        );
        let ok = std::env::temp_dir().join(format!("rvoy-ds-{}.txt", std::process::id()));
        std::fs::write(&ok, b"body").expect("write");
        let read = data_source(&file(&ok.to_string_lossy()), &p).expect("regular file");
        assert_eq!(read, Bytes::from_static(b"body"));
        let _ = std::fs::remove_file(ok);
    }
}
