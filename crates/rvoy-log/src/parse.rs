//! Parsing of level lists: `--component-log-level` (command line) and admin
//! `/logging?paths=` / `?level=`, each with Envoy's exact rules and error texts.

use crate::component::Component;
use crate::level::Level;

/// A bad `--component-log-level` value; `Display` is Envoy's exact message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComponentLevelError {
    /// An entry is not exactly `name:level`.
    #[error("error: component log level not correctly specified '{0}'")]
    Malformed(String),
    /// The level is not one of Envoy's level names (or `warn`).
    #[error("error: invalid log level specified '{0}'")]
    InvalidLevel(String),
    /// The name is not one of Envoy's loggers.
    #[error("error: invalid component specified '{0}'")]
    InvalidComponent(String),
}

/// Parses a `--component-log-level` value such as `upstream:debug,connection:trace`.
///
/// Envoy's rules: an empty value means "none"; otherwise split on every `,` (so an empty
/// entry is an error), each entry must split on `:` into exactly two parts, the level is
/// checked before the component name, and no whitespace is trimmed.
pub fn parse_component_log_levels(
    value: &str,
) -> Result<Vec<(Component, Level)>, ComponentLevelError> {
    if value.is_empty() {
        return Ok(Vec::new());
    }
    value
        .split(',')
        .map(|entry| {
            let mut parts = entry.split(':');
            let (Some(name), Some(level), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(ComponentLevelError::Malformed(entry.to_owned()));
            };
            let level = Level::from_cli_name(level)
                .ok_or_else(|| ComponentLevelError::InvalidLevel(level.to_owned()))?;
            let component = Component::from_name(name)
                .ok_or_else(|| ComponentLevelError::InvalidComponent(name.to_owned()))?;
            Ok((component, level))
        })
        .collect()
}

/// A bad admin `/logging` request; `Display` is Envoy's message (without the `error: ` prefix
/// and usage text that [`render_admin_logging_error`] adds).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminLevelError {
    /// More or fewer than one query parameter.
    #[error("invalid number of parameters")]
    InvalidNumberOfParameters,
    /// A `paths=` entry without a name or a level.
    #[error("empty logger name or empty logger level")]
    EmptyNameOrLevel,
    /// Not a spdlog level name (admin does not accept `warn`).
    #[error("unknown logger level")]
    UnknownLevel,
    /// Not one of Envoy's loggers.
    #[error("unknown logger name")]
    UnknownName,
}

/// Parses a level as admin `/logging` does: spdlog names only.
pub fn parse_admin_level(value: &str) -> Result<Level, AdminLevelError> {
    Level::from_spdlog_name(value).ok_or(AdminLevelError::UnknownLevel)
}

/// Parses the value of admin `/logging?paths=name1:level1,name2:level2`.
///
/// Envoy's rules: entries are split on `,` skipping empty/whitespace-only ones; each entry is
/// split at its first `:` skipping empty/whitespace-only halves; a missing half is
/// "empty logger name or empty logger level"; every level is checked (in order) before any
/// name; a repeated name keeps its last level. The result is in Envoy's logger order.
pub fn parse_admin_paths(value: &str) -> Result<Vec<(Component, Level)>, AdminLevelError> {
    let mut pairs: Vec<(&str, Level)> = Vec::new();
    for entry in value.split(',') {
        if entry.trim_matches(is_absl_space).is_empty() {
            continue;
        }
        let mut halves = match entry.split_once(':') {
            Some((n, l)) => vec![n, l],
            None => vec![entry],
        };
        halves.retain(|h| !h.trim_matches(is_absl_space).is_empty());
        let (name, level) = match halves.as_slice() {
            [n, l] => (*n, *l),
            _ => return Err(AdminLevelError::EmptyNameOrLevel),
        };
        let level = parse_admin_level(level)?;
        match pairs.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = level,
            None => pairs.push((name, level)),
        }
    }
    resolve_admin_names(&pairs)
}

/// Resolves admin `name -> level` changes; any unknown name fails the whole request.
/// The result is in Envoy's logger order.
pub fn resolve_admin_names(
    pairs: &[(&str, Level)],
) -> Result<Vec<(Component, Level)>, AdminLevelError> {
    let mut out = Vec::with_capacity(pairs.len());
    for &(name, level) in pairs {
        let c = Component::from_name(name).ok_or(AdminLevelError::UnknownName)?;
        out.push((c, level));
    }
    out.sort_by_key(|(c, _)| *c);
    Ok(out)
}

/// `absl::ascii_isspace`: space, `\t`, `\n`, `\v`, `\f`, `\r`.
fn is_absl_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// The body Envoy's admin `/logging` starts with on a bad request (HTTP 400): the error, the
/// usage lines and the level names. Envoy appends [`crate::render_active_loggers`] after it.
pub fn render_admin_logging_error(error: &AdminLevelError) -> String {
    let mut out = format!("error: {error}\n\n");
    out.push_str("usage: /logging?<name>=<level> (change single level)\n");
    out.push_str("usage: /logging?paths=name1:level1,name2:level2,... (change multiple levels)\n");
    out.push_str("usage: /logging?level=<level> (change all levels)\n");
    out.push_str("usage: /logging?group=<group_name>:<level> (change group of loggers)\n");
    out.push_str("levels: ");
    for l in Level::ALL {
        out.push_str(l.as_str());
        out.push(' ');
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli_err(v: &str) -> String {
        match parse_component_log_levels(v) {
            Ok(x) => panic!("{v:?} parsed as {x:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn cli_component_levels() {
        assert_eq!(parse_component_log_levels(""), Ok(vec![]));
        assert_eq!(
            parse_component_log_levels("upstream:debug,connection:trace,http:warn"),
            Ok(vec![
                (Component::Upstream, Level::Debug),
                (Component::Connection, Level::Trace),
                (Component::Http, Level::Warning),
            ])
        );
        // Duplicates are kept in order (the last one wins when applied).
        assert_eq!(
            parse_component_log_levels("upstream:debug,upstream:trace").map(|v| v.len()),
            Ok(2)
        );
    }

    #[test]
    fn cli_component_level_errors_match_envoy() {
        // Each text was checked against `envoy --component-log-level <value>` (1.40).
        assert_eq!(
            cli_err("foo:debug"),
            "error: invalid component specified 'foo'"
        );
        assert_eq!(
            cli_err("upstream:chatty"),
            "error: invalid log level specified 'chatty'"
        );
        assert_eq!(
            cli_err("foo:chatty"),
            "error: invalid log level specified 'chatty'"
        );
        assert_eq!(
            cli_err("upstream"),
            "error: component log level not correctly specified 'upstream'"
        );
        assert_eq!(
            cli_err("upstream:debug:x"),
            "error: component log level not correctly specified 'upstream:debug:x'"
        );
        assert_eq!(
            cli_err("upstream:debug,"),
            "error: component log level not correctly specified ''"
        );
        assert_eq!(
            cli_err(","),
            "error: component log level not correctly specified ''"
        );
        assert_eq!(
            cli_err("upstream:"),
            "error: invalid log level specified ''"
        );
        assert_eq!(cli_err(":debug"), "error: invalid component specified ''");
        assert_eq!(
            cli_err(" upstream:debug"),
            "error: invalid component specified ' upstream'"
        );
        assert_eq!(
            cli_err("upstream:WARN"),
            "error: invalid log level specified 'WARN'"
        );
    }

    #[test]
    fn admin_paths_match_envoy() {
        use AdminLevelError::*;
        assert_eq!(
            parse_admin_paths("router:debug,http:critical"),
            Ok(vec![
                (Component::Http, Level::Critical),
                (Component::Router, Level::Debug)
            ])
        );
        assert_eq!(parse_admin_paths(""), Ok(vec![]));
        assert_eq!(
            parse_admin_paths("router:debug,"),
            Ok(vec![(Component::Router, Level::Debug)])
        );
        assert_eq!(
            parse_admin_paths("router:debug,router:trace"),
            Ok(vec![(Component::Router, Level::Trace)])
        );
        assert_eq!(parse_admin_paths("bogus:debug"), Err(UnknownName));
        assert_eq!(
            parse_admin_paths("router:debug,bogus:trace"),
            Err(UnknownName)
        );
        assert_eq!(
            parse_admin_paths("bogus:debug,router:chatty"),
            Err(UnknownLevel)
        );
        assert_eq!(parse_admin_paths("router:warn"), Err(UnknownLevel));
        assert_eq!(parse_admin_paths("router:debug:x"), Err(UnknownLevel));
        assert_eq!(parse_admin_paths("router"), Err(EmptyNameOrLevel));
        assert_eq!(parse_admin_paths("router:"), Err(EmptyNameOrLevel));
        assert_eq!(parse_admin_paths(":debug"), Err(EmptyNameOrLevel));
        assert_eq!(parse_admin_paths(" router:debug"), Err(UnknownName));
        assert_eq!(parse_admin_level("off"), Ok(Level::Off));
        assert_eq!(parse_admin_level("warn"), Err(UnknownLevel));
    }

    #[test]
    fn admin_error_body_matches_envoy() {
        assert_eq!(
            render_admin_logging_error(&AdminLevelError::UnknownName),
            "error: unknown logger name\n\n\
             usage: /logging?<name>=<level> (change single level)\n\
             usage: /logging?paths=name1:level1,name2:level2,... (change multiple levels)\n\
             usage: /logging?level=<level> (change all levels)\n\
             usage: /logging?group=<group_name>:<level> (change group of loggers)\n\
             levels: trace debug info warning error critical off \n"
        );
    }
}
