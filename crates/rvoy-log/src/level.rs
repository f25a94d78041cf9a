//! Log levels, spelled exactly as Envoy (spdlog) spells them.

use std::fmt;
use std::str::FromStr;

/// A log level. Ordered from most to least verbose; [`Level::Off`] disables a logger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Level {
    /// `trace`
    Trace = 0,
    /// `debug`
    Debug = 1,
    /// `info`
    Info = 2,
    /// `warning` (also parsed from `warn` on the command line)
    Warning = 3,
    /// `error`
    Error = 4,
    /// `critical`
    Critical = 5,
    /// `off`
    Off = 6,
}

impl Level {
    /// Every level, in spdlog's order.
    pub const ALL: [Level; 7] = [
        Level::Trace,
        Level::Debug,
        Level::Info,
        Level::Warning,
        Level::Error,
        Level::Critical,
        Level::Off,
    ];

    /// The spdlog name: `trace`, `debug`, `info`, `warning`, `error`, `critical`, `off`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Error => "error",
            Level::Critical => "critical",
            Level::Off => "off",
        }
    }

    /// spdlog's one-letter name (`%L`): `T`, `D`, `I`, `W`, `E`, `C`, `O`.
    pub const fn short_str(self) -> &'static str {
        match self {
            Level::Trace => "T",
            Level::Debug => "D",
            Level::Info => "I",
            Level::Warning => "W",
            Level::Error => "E",
            Level::Critical => "C",
            Level::Off => "O",
        }
    }

    /// Strict spdlog name lookup (what admin `/logging` accepts: no `warn`).
    pub fn from_spdlog_name(s: &str) -> Option<Level> {
        Level::ALL.into_iter().find(|l| l.as_str() == s)
    }

    /// Command-line lookup (`-l`, `--component-log-level`): spdlog names plus `warn`.
    pub fn from_cli_name(s: &str) -> Option<Level> {
        if s == "warn" {
            return Some(Level::Warning);
        }
        Level::from_spdlog_name(s)
    }

    pub(crate) const fn from_u8(v: u8) -> Level {
        match v {
            0 => Level::Trace,
            1 => Level::Debug,
            2 => Level::Info,
            3 => Level::Warning,
            4 => Level::Error,
            5 => Level::Critical,
            _ => Level::Off,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`Level`] with [`FromStr`]; its text is Envoy's command-line message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("error: invalid log level specified '{0}'")]
pub struct InvalidLevel(pub String);

impl FromStr for Level {
    type Err = InvalidLevel;

    /// Parses like Envoy's command line: spdlog names and `warn`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Level::from_cli_name(s).ok_or_else(|| InvalidLevel(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for l in Level::ALL {
            assert_eq!(Level::from_spdlog_name(l.as_str()), Some(l));
            assert_eq!(l.as_str().parse::<Level>(), Ok(l));
            assert_eq!(Level::from_u8(l as u8), l);
        }
        assert_eq!("warn".parse::<Level>(), Ok(Level::Warning));
        assert_eq!(Level::from_spdlog_name("warn"), None);
        assert_eq!(
            "WARN".parse::<Level>().map_err(|e| e.to_string()),
            Err("error: invalid log level specified 'WARN'".to_owned())
        );
        assert!(Level::Trace < Level::Debug && Level::Critical < Level::Off);
        assert_eq!(Level::Warning.short_str(), "W");
        assert_eq!(Level::Warning.to_string(), "warning");
    }
}
