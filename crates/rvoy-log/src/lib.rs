//! Envoy's application logger for rvoy.
//!
//! Owns: the log [`Level`]s and Envoy's named loggers ([`Component`]) with their
//! process-global levels (one relaxed atomic load per check), parsing of
//! `--component-log-level` and admin `/logging` parameters with Envoy's error texts,
//! spdlog-compatible `--log-format` patterns ([`Pattern`], [`LineFormatter`]), the output
//! (stderr or `--log-path`, reopenable), the logging macros, and an optional bridge that
//! routes `tracing` events here.
//!
//! ```
//! use rvoy_log::Component;
//! let host = "10.0.0.1";
//! rvoy_log::debug!(Component::Upstream, "adding host {host}");
//! rvoy_log::info!(Component::Main, "starting {} workers", 4);
//! ```
//!
//! The macros check the component's level before evaluating any argument.

mod component;
mod level;
mod logger;
mod parse;
mod pattern;
mod sink;
#[cfg(feature = "tracing")]
mod tracing_bridge;

pub use component::{
    COUNT as COMPONENT_COUNT, Component, enabled, level, levels, most_verbose_level,
    render_active_loggers, set_all_levels, set_level, set_levels,
};
pub use level::{InvalidLevel, Level};
pub use logger::{
    LogConfig, capture_output, flush, init, log_message, reopen, set_formatter, thread_id,
};
pub use parse::{
    AdminLevelError, ComponentLevelError, parse_admin_level, parse_admin_paths,
    parse_component_log_levels, render_admin_logging_error, resolve_admin_names,
};
pub use pattern::{
    DEFAULT_LOG_FORMAT, LineFormatter, Pattern, Record, TAGS_PREFIX, TimeZone, c_escape,
    json_escape, serialize_tags,
};
pub use sink::{CapturedOutput, LogError};
#[cfg(feature = "tracing")]
pub use tracing_bridge::{TracingBridge, component_for_target, install_tracing_bridge, level_for};

/// Macro support; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::logger::{Location, function_name, log_args};
}

/// Logs at an explicit level: `log!(Component::Upstream, Level::Debug, "x={}", x)`.
/// Nothing is evaluated or formatted unless the component is enabled at that level.
#[macro_export]
macro_rules! log {
    ($component:expr, $level:expr, $($arg:tt)+) => {{
        let component: $crate::Component = $component;
        let level: $crate::Level = $level;
        if $crate::enabled(component, level) {
            $crate::__private::log_args(
                component,
                level,
                &$crate::__private::Location {
                    file: ::core::file!(),
                    line: ::core::line!(),
                    func: $crate::__function_name!(),
                },
                ::core::format_args!($($arg)+),
            );
        }
    }};
}

/// The enclosing function's name (for `%!`).
#[doc(hidden)]
#[macro_export]
macro_rules! __function_name {
    () => {{
        fn __rvoy_log_f() {}
        $crate::__private::function_name(::core::any::type_name_of_val(&__rvoy_log_f))
    }};
}

/// `trace` line: `trace!(Component::Http, "...", args)`.
#[macro_export]
macro_rules! trace {
    ($component:expr, $($arg:tt)+) => { $crate::log!($component, $crate::Level::Trace, $($arg)+) };
}

/// `debug` line: `debug!(Component::Upstream, "...", args)`.
#[macro_export]
macro_rules! debug {
    ($component:expr, $($arg:tt)+) => { $crate::log!($component, $crate::Level::Debug, $($arg)+) };
}

/// `info` line: `info!(Component::Main, "...", args)`.
#[macro_export]
macro_rules! info {
    ($component:expr, $($arg:tt)+) => { $crate::log!($component, $crate::Level::Info, $($arg)+) };
}

/// `warning` line: `warn!(Component::Config, "...", args)`.
#[macro_export]
macro_rules! warn {
    ($component:expr, $($arg:tt)+) => { $crate::log!($component, $crate::Level::Warning, $($arg)+) };
}

/// `error` line: `error!(Component::Upstream, "...", args)`.
#[macro_export]
macro_rules! error {
    ($component:expr, $($arg:tt)+) => { $crate::log!($component, $crate::Level::Error, $($arg)+) };
}

/// `critical` line: `critical!(Component::Main, "...", args)`.
#[macro_export]
macro_rules! critical {
    ($component:expr, $($arg:tt)+) => { $crate::log!($component, $crate::Level::Critical, $($arg)+) };
}

/// A line prefixed with Envoy's connection tag, like `ENVOY_CONN_LOG`:
/// `conn_log!(Component::Connection, Level::Debug, conn_id, "closing")` writes
/// `[Tags: "ConnectionId":"<id>"] closing`.
#[macro_export]
macro_rules! conn_log {
    ($component:expr, $level:expr, $conn_id:expr, $fmt:literal $($arg:tt)*) => {
        $crate::log!(
            $component,
            $level,
            ::core::concat!("[Tags: \"ConnectionId\":\"{}\"] ", $fmt),
            $conn_id
            $($arg)*
        )
    };
}

/// A line prefixed with Envoy's connection and stream tags, like `ENVOY_STREAM_LOG`:
/// `[Tags: "ConnectionId":"<c>","StreamId":"<s>"] ...`.
#[macro_export]
macro_rules! stream_log {
    ($component:expr, $level:expr, $conn_id:expr, $stream_id:expr, $fmt:literal $($arg:tt)*) => {
        $crate::log!(
            $component,
            $level,
            ::core::concat!("[Tags: \"ConnectionId\":\"{}\",\"StreamId\":\"{}\"] ", $fmt),
            $conn_id,
            $stream_id
            $($arg)*
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Tests touching the global levels/output run one at a time.
    static GLOBAL: Mutex<()> = Mutex::new(());

    fn lock() -> std::sync::MutexGuard<'static, ()> {
        GLOBAL
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[test]
    fn component_list_matches_envoy_1_40() {
        assert_eq!(COMPONENT_COUNT, 73);
        assert_eq!(Component::ALL[0], Component::A2a);
        assert_eq!(Component::ALL[72], Component::IpTagging);
        assert_eq!(Component::from_name("http2"), Some(Component::Http2));
        assert_eq!(Component::from_name("envoy_bug"), Some(Component::EnvoyBug));
        assert_eq!(Component::from_name("Upstream"), None);
        for (i, c) in Component::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
            assert_eq!(Component::from_name(c.name()), Some(*c));
        }
    }

    #[test]
    fn active_loggers_text_matches_envoy() {
        let _g = lock();
        set_all_levels(Level::Info);
        let text = render_active_loggers();
        // The exact body of `curl -X POST envoy:admin/logging` from Envoy 1.40 (all info).
        let expected = include_str!("testdata/active_loggers_info.txt");
        assert_eq!(text, expected);
        set_level(Component::Router, Level::Debug);
        set_level(Component::Http, Level::Critical);
        let text = render_active_loggers();
        assert!(text.contains("\n  http: critical\n  http2: info\n"));
        assert!(text.contains("\n  router: debug\n"));
        set_all_levels(Level::Info);
    }

    #[test]
    fn levels_and_filtering() {
        let _g = lock();
        set_all_levels(Level::Warning);
        assert_eq!(level(Component::Upstream), Level::Warning);
        assert!(!enabled(Component::Upstream, Level::Info));
        assert!(enabled(Component::Upstream, Level::Warning));
        assert!(enabled(Component::Upstream, Level::Critical));
        set_level(Component::Upstream, Level::Trace);
        assert!(enabled(Component::Upstream, Level::Trace));
        assert!(!enabled(Component::Router, Level::Debug));
        assert_eq!(most_verbose_level(), Level::Trace);
        set_all_levels(Level::Off);
        assert!(!enabled(Component::Main, Level::Critical));
        assert!(!enabled(Component::Main, Level::Off));
        assert_eq!(levels().count(), COMPONENT_COUNT);
        set_all_levels(Level::Info);
    }

    #[test]
    fn macros_check_level_before_formatting() {
        let _g = lock();
        let out = capture_output();
        set_formatter(LineFormatter::new("%l|%n|%s|%!|%v", false));
        set_all_levels(Level::Info);
        let mut evaluated = false;
        let mut side_effect = || {
            evaluated = true;
            1
        };
        debug!(Component::Upstream, "never {}", side_effect());
        assert!(!evaluated);
        assert_eq!(out.contents(), "");
        let host = "h1";
        info!(Component::Upstream, "adding host {host} #{}", 2);
        warn!(Component::Config, "plain");
        crate::error!(Component::Admin, "e");
        critical!(Component::Main, "c");
        trace!(Component::Main, "t");
        conn_log!(Component::Connection, Level::Info, 7, "closing {}", "now");
        stream_log!(Component::Router, Level::Info, 7, 9, "route");
        assert_eq!(
            out.take(),
            "info|upstream|lib.rs|macros_check_level_before_formatting|adding host h1 #2\n\
             warning|config|lib.rs|macros_check_level_before_formatting|plain\n\
             error|admin|lib.rs|macros_check_level_before_formatting|e\n\
             critical|main|lib.rs|macros_check_level_before_formatting|c\n\
             info|connection|lib.rs|macros_check_level_before_formatting|[Tags: \"ConnectionId\":\"7\"] closing now\n\
             info|router|lib.rs|macros_check_level_before_formatting|[Tags: \"ConnectionId\":\"7\",\"StreamId\":\"9\"] route\n"
        );
        let closure = || info!(Component::Main, "in closure");
        closure();
        assert_eq!(
            out.take(),
            "info|main|lib.rs|macros_check_level_before_formatting|in closure\n"
        );
        reset_output();
    }

    #[test]
    fn init_applies_levels_format_and_file() {
        let _g = lock();
        let dir = std::env::temp_dir().join(format!("rvoy-log-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok();
        let path = dir.join("app.log");
        let _ = std::fs::remove_file(&path);
        std::fs::write(&path, "existing\n").ok();
        let config = LogConfig {
            level: Level::Warning,
            component_levels: vec![(Component::Upstream, Level::Debug)],
            format: "[%l][%n] %v".into(),
            escaped: false,
            path: Some(path.clone()),
            version: "sha/1.0/Clean/RELEASE/rustls".into(),
        };
        assert!(init(config).is_ok());
        assert_eq!(level(Component::Upstream), Level::Debug);
        assert_eq!(level(Component::Router), Level::Warning);
        debug!(Component::Upstream, "one");
        info!(Component::Router, "dropped");
        std::thread::scope(|s| {
            for i in 0..4 {
                s.spawn(move || {
                    for j in 0..50 {
                        warn!(Component::Router, "thread {i} line {j}");
                    }
                });
            }
        });
        flush();
        // Rotate: rename, reopen, keep writing to the new file.
        let rotated = dir.join("app.log.1");
        std::fs::rename(&path, &rotated).ok();
        assert!(reopen().is_ok());
        error!(Component::Main, "after reopen");
        flush();
        let old = std::fs::read_to_string(&rotated).unwrap_or_default();
        let lines: Vec<&str> = old.lines().collect();
        assert_eq!(lines[0], "existing");
        assert_eq!(lines[1], "[debug][upstream] one");
        assert_eq!(lines.len(), 2 + 200);
        assert!(
            lines[2..]
                .iter()
                .all(|l| l.starts_with("[warning][router] thread "))
        );
        let new = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(new, "[error][main] after reopen\n");

        let bad = LogConfig {
            path: Some("/nonexistent/dir/x.log".into()),
            ..LogConfig::default()
        };
        assert!(matches!(init(bad), Err(LogError::OpenLogFile { .. })));
        // A failed init changes nothing.
        assert_eq!(level(Component::Upstream), Level::Debug);
        let _ = std::fs::remove_dir_all(&dir);
        set_all_levels(Level::Info);
        reset_output();
    }

    #[test]
    fn thread_ids_are_os_tids() {
        let main = thread_id();
        assert!(main > 0);
        assert_eq!(main, thread_id());
        let other = std::thread::spawn(thread_id).join().unwrap_or(main);
        assert_ne!(main, other);
    }

    #[test]
    fn function_names() {
        assert_eq!(__private::function_name("a::b::foo::__rvoy_log_f"), "foo");
        assert_eq!(
            __private::function_name("a::foo::{{closure}}::{{closure}}::__rvoy_log_f"),
            "foo"
        );
        assert_eq!(__private::function_name("main::__rvoy_log_f"), "main");
    }

    #[cfg(feature = "tracing")]
    #[test]
    fn tracing_events_go_through_levels_and_format() {
        let _g = lock();
        let out = capture_output();
        set_formatter(LineFormatter::new("%l|%n|%#|%v", false));
        set_all_levels(Level::Info);
        set_level(Component::Http2, Level::Debug);
        tracing::subscriber::with_default(TracingBridge, || {
            tracing::debug!(target: "h2::codec", stream = 3, "frame {}", "HEADERS");
            tracing::debug!(target: "hyper::proto", "dropped");
            tracing::info!(target: "upstream", "host added");
            tracing::warn!(target: "whatever", code = "x", "odd");
            tracing::info!(target: "upstream", answer = 42);
        });
        let text = out.take();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("debug|http2|"));
        assert!(lines[0].ends_with("|frame HEADERS stream=3"));
        assert!(lines[1].starts_with("info|upstream|") && lines[1].ends_with("|host added"));
        assert!(lines[2].starts_with("warning|misc|") && lines[2].ends_with("|odd code=x"));
        assert!(lines[3].ends_with("|answer=42"));
        set_all_levels(Level::Info);
        reset_output();
    }

    fn reset_output() {
        set_formatter(LineFormatter::new(DEFAULT_LOG_FORMAT, false));
        let _ = init(LogConfig::default());
    }
}
