//! The command line, Envoy-compatible: every flag of `envoy --help` (1.40) with Envoy's
//! spellings and defaults, parsed with TCLAP's rules (space-separated values, `--` ends
//! parsing, `-h` may be combined), then Envoy's own checks in Envoy's order. Help, version,
//! `--hot-restart-version` and every error reproduce Envoy's text, stream and exit code.
//!
//! [`parse`] returns the typed [`Options`], or a [`CliExit`] saying what to print where and
//! with which exit code. [`Options::command_line_options`] is the admin `/server_info` view.

use std::io::Write;
use std::time::Duration;

use rvoy_api::envoy::admin::v3::CommandLineOptions;
use rvoy_api::envoy::admin::v3::command_line_options as clo;
use rvoy_log::{Component, Level};

/// Where a [`CliExit`]'s text goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output (`--help`, `--version`).
    Stdout,
    /// Standard error (errors, `--hot-restart-version`).
    Stderr,
}

/// "Print this and exit": help, version, hot restart version (code 0) or an error (code 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliExit {
    /// Exactly what to print (newlines included).
    pub text: String,
    /// Where to print it.
    pub stream: Stream,
    /// The process exit code.
    pub code: i32,
}

impl CliExit {
    fn stdout(text: String) -> CliExit {
        CliExit {
            text,
            stream: Stream::Stdout,
            code: 0,
        }
    }

    fn error(text: String) -> CliExit {
        CliExit {
            text,
            stream: Stream::Stderr,
            code: 1,
        }
    }

    /// Writes the text to its stream (errors writing are ignored: we are exiting anyway).
    pub fn print(&self) {
        let _ = match self.stream {
            Stream::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(self.text.as_bytes())
                    .and_then(|()| out.flush())
            }
            Stream::Stderr => {
                let mut err = std::io::stderr().lock();
                err.write_all(self.text.as_bytes())
                    .and_then(|()| err.flush())
            }
        };
    }
}

/// `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `serve`: validate the config, then serve traffic.
    Serve,
    /// `validate`: validate the config and exit.
    Validate,
    /// `init_only`: fully initialize, then exit without serving.
    InitOnly,
}

/// `--drain-strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainStrategy {
    /// `gradual` (default): discourage connections progressively over the drain time.
    Gradual,
    /// `immediate`: discourage all connections at once.
    Immediate,
}

/// `--local-address-ip-version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpVersion {
    /// `v4` (default).
    V4,
    /// `v6`.
    V6,
}

/// Everything the command line configures, typed, with Envoy's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `argv[0]` as given.
    pub argv0: String,
    /// `--base-id` (hot restart only; no effect in rvoy).
    pub base_id: u32,
    /// `--use-dynamic-base-id` (hot restart only).
    pub use_dynamic_base_id: bool,
    /// `--base-id-path` (hot restart only).
    pub base_id_path: String,
    /// `--concurrency`, at least 1; defaults to the CPUs available to the process.
    pub concurrency: u32,
    /// `-c/--config-path`.
    pub config_path: String,
    /// `--config-yaml`.
    pub config_yaml: String,
    /// `--allow-unknown-static-fields` or the deprecated `--allow-unknown-fields`.
    pub allow_unknown_static_fields: bool,
    /// `--allow-unknown-fields` itself (deprecated; warns).
    pub allow_unknown_fields: bool,
    /// `--reject-unknown-dynamic-fields`.
    pub reject_unknown_dynamic_fields: bool,
    /// `--ignore-unknown-dynamic-fields`.
    pub ignore_unknown_dynamic_fields: bool,
    /// `--skip-deprecated-logs`.
    pub skip_deprecated_logs: bool,
    /// `--admin-address-path`.
    pub admin_address_path: String,
    /// `--local-address-ip-version`.
    pub local_address_ip_version: IpVersion,
    /// `-l/--log-level`.
    pub log_level: Level,
    /// `--component-log-level` as given (shown by `/server_info`).
    pub component_log_level: String,
    /// `--component-log-level` parsed, in order.
    pub component_log_levels: Vec<(Component, Level)>,
    /// `--log-format`.
    pub log_format: String,
    /// Whether `--log-format` was given.
    pub log_format_set: bool,
    /// `--log-format-escaped`.
    pub log_format_escaped: bool,
    /// `--enable-fine-grain-logging`.
    pub enable_fine_grain_logging: bool,
    /// `--log-path` (empty: stderr).
    pub log_path: String,
    /// `--log-stacktrace-single-entry`.
    pub log_stacktrace_single_entry: bool,
    /// `--service-cluster`.
    pub service_cluster: String,
    /// `--service-node`.
    pub service_node: String,
    /// `--service-zone`.
    pub service_zone: String,
    /// `--file-flush-interval-msec`.
    pub file_flush_interval: Duration,
    /// `--file-flush-min-size-kb`.
    pub file_flush_min_size_kb: u32,
    /// `--drain-time-s`.
    pub drain_time: Duration,
    /// `--drain-strategy`.
    pub drain_strategy: DrainStrategy,
    /// `--parent-shutdown-time-s` (hot restart only).
    pub parent_shutdown_time: Duration,
    /// `--mode`.
    pub mode: Mode,
    /// `--disable-hot-restart` (rvoy never hot restarts).
    pub disable_hot_restart: bool,
    /// `--enable-mutex-tracing`.
    pub enable_mutex_tracing: bool,
    /// `--restart-epoch` (hot restart only).
    pub restart_epoch: u32,
    /// `--cpuset-threads` (the default behaviour already).
    pub cpuset_threads: bool,
    /// `--disable-extensions`, split on `,`.
    pub disabled_extensions: Vec<String>,
    /// `--socket-path` (hot restart only).
    pub socket_path: String,
    /// `--socket-mode` parsed as octal; 0 for abstract (`@`) socket paths.
    pub socket_mode: u32,
    /// `--enable-core-dump`.
    pub enable_core_dump: bool,
    /// `--stats-tag name:value`, in order.
    pub stats_tags: Vec<(String, String)>,
    /// `--skip-hot-restart-on-no-parent` (hot restart only).
    pub skip_hot_restart_on_no_parent: bool,
    /// `--skip-hot-restart-parent-stats` (hot restart only).
    pub skip_hot_restart_parent_stats: bool,
    /// Warnings Envoy logs while reading the options, to be logged once logging is up.
    pub warnings: Vec<(Component, String)>,
}

/// What `--hot-restart-version` prints (to stderr, no newline): rvoy has no hot restart,
/// and Envoy prints this when hot restart is disabled.
pub const HOT_RESTART_VERSION: &str = "disabled";

/// The git commit rvoy was built from (40 hex digits; zeros when unknown).
pub const BUILD_SHA: &str = env!("RVOY_GIT_SHA");

/// `Clean` or `Modified`: the git tree state at build time.
pub const BUILD_STATUS: &str = env!("RVOY_GIT_STATUS");

/// The version string shaped like Envoy's: `<sha>/<semver>/<Clean|Modified>/<RELEASE|DEBUG>/rustls`.
pub fn version_string() -> String {
    let build = if cfg!(debug_assertions) {
        "DEBUG"
    } else {
        "RELEASE"
    };
    format!(
        "{BUILD_SHA}/{}/{BUILD_STATUS}/{build}/rustls",
        env!("CARGO_PKG_VERSION")
    )
}

/// TCLAP's message shown at the end of `--help`.
const PROGRAM_MESSAGE: &str = "rvoy";

const NO_HOT_RESTART: &str = "rvoy: accepted; has no effect (rvoy has no hot restart).";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Switch,
    Value(&'static str),
    Multi(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt {
    StatsTag,
    EnableCoreDump,
    SocketMode,
    SocketPath,
    DisableExtensions,
    CpusetThreads,
    EnableMutexTracing,
    DisableHotRestart,
    Mode,
    ParentShutdownTimeS,
    DrainStrategy,
    DrainTimeS,
    FileFlushMinSizeKb,
    FileFlushIntervalMsec,
    ServiceZone,
    ServiceNode,
    ServiceCluster,
    HotRestartVersion,
    RestartEpoch,
    LogPath,
    EnableFineGrainLogging,
    LogFormatEscaped,
    LogFormat,
    ComponentLogLevel,
    LogLevel,
    LocalAddressIpVersion,
    AdminAddressPath,
    LogStacktraceSingleEntry,
    SkipDeprecatedLogs,
    IgnoreUnknownDynamicFields,
    RejectUnknownDynamicFields,
    AllowUnknownStaticFields,
    AllowUnknownFields,
    ConfigYaml,
    ConfigPath,
    Concurrency,
    BaseIdPath,
    SkipHotRestartParentStats,
    SkipHotRestartOnNoParent,
    UseDynamicBaseId,
    BaseId,
    IgnoreRest,
    Version,
    Help,
}

#[derive(Debug)]
struct Spec {
    id: Opt,
    /// The short flag without its dash (`"l"`), or empty.
    flag: &'static str,
    /// The long name without its dashes.
    name: &'static str,
    kind: Kind,
    description: &'static str,
    /// rvoy's extra help line.
    note: Option<&'static str>,
}

const fn spec(
    id: Opt,
    flag: &'static str,
    name: &'static str,
    kind: Kind,
    description: &'static str,
) -> Spec {
    Spec {
        id,
        flag,
        name,
        kind,
        description,
        note: None,
    }
}

const fn hot(
    id: Opt,
    flag: &'static str,
    name: &'static str,
    kind: Kind,
    description: &'static str,
) -> Spec {
    Spec {
        id,
        flag,
        name,
        kind,
        description,
        note: Some(NO_HOT_RESTART),
    }
}

const STRING: Kind = Kind::Value("string");
const UINT32: Kind = Kind::Value("uint32_t");

/// Envoy 1.40's arguments in TCLAP's list order (the order `--help` prints and parsing tries).
static SPECS: &[Spec] = &[
    spec(
        Opt::StatsTag,
        "",
        "stats-tag",
        Kind::Multi("string"),
        "This flag provides a universal tag for all stats generated by Envoy. The format is \
         ``tag:value``. Only alphanumeric values are allowed for tag names. For tag values all \
         characters are permitted except for '.' (dot). This flag can be repeated multiple \
         times to set multiple universal tags. Multiple values for the same tag name are not \
         allowed.",
    ),
    spec(
        Opt::EnableCoreDump,
        "",
        "enable-core-dump",
        Kind::Switch,
        "Enable core dumps",
    ),
    hot(
        Opt::SocketMode,
        "",
        "socket-mode",
        STRING,
        "Socket file permission",
    ),
    hot(
        Opt::SocketPath,
        "",
        "socket-path",
        STRING,
        "Path to hot restart socket file",
    ),
    spec(
        Opt::DisableExtensions,
        "",
        "disable-extensions",
        STRING,
        "Comma-separated list of extensions to disable",
    ),
    spec(
        Opt::CpusetThreads,
        "",
        "cpuset-threads",
        Kind::Switch,
        "Get the default # of worker threads from cpuset size",
    ),
    spec(
        Opt::EnableMutexTracing,
        "",
        "enable-mutex-tracing",
        Kind::Switch,
        "Enable mutex contention tracing functionality",
    ),
    hot(
        Opt::DisableHotRestart,
        "",
        "disable-hot-restart",
        Kind::Switch,
        "Disable hot restart functionality",
    ),
    spec(
        Opt::Mode,
        "",
        "mode",
        STRING,
        "One of 'serve' (default; validate configs and then serve traffic normally) or \
         'validate' (validate configs and exit).",
    ),
    hot(
        Opt::ParentShutdownTimeS,
        "",
        "parent-shutdown-time-s",
        UINT32,
        "Hot restart parent shutdown time in seconds",
    ),
    spec(
        Opt::DrainStrategy,
        "",
        "drain-strategy",
        STRING,
        "Hot restart drain sequence behaviour, one of 'gradual' (default) or 'immediate'.",
    ),
    spec(
        Opt::DrainTimeS,
        "",
        "drain-time-s",
        UINT32,
        "Hot restart and LDS removal drain time in seconds",
    ),
    spec(
        Opt::FileFlushMinSizeKb,
        "",
        "file-flush-min-size-kb",
        UINT32,
        "Minimum size in KB for log flushing",
    ),
    spec(
        Opt::FileFlushIntervalMsec,
        "",
        "file-flush-interval-msec",
        UINT32,
        "Interval for log flushing in msec",
    ),
    spec(Opt::ServiceZone, "", "service-zone", STRING, "Zone name"),
    spec(Opt::ServiceNode, "", "service-node", STRING, "Node name"),
    spec(
        Opt::ServiceCluster,
        "",
        "service-cluster",
        STRING,
        "Cluster name",
    ),
    Spec {
        id: Opt::HotRestartVersion,
        flag: "",
        name: "hot-restart-version",
        kind: Kind::Switch,
        description: "Hot restart compatibility version",
        note: Some("rvoy: prints 'disabled' (rvoy has no hot restart)."),
    },
    hot(
        Opt::RestartEpoch,
        "",
        "restart-epoch",
        UINT32,
        "Hot restart epoch #",
    ),
    spec(Opt::LogPath, "", "log-path", STRING, "Path to logfile"),
    spec(
        Opt::EnableFineGrainLogging,
        "",
        "enable-fine-grain-logging",
        Kind::Switch,
        "Logger mode: enable file level log control (Fine-Grain Logger) or not",
    ),
    spec(
        Opt::LogFormatEscaped,
        "",
        "log-format-escaped",
        Kind::Switch,
        "Escape c-style escape sequences in the application logs",
    ),
    spec(
        Opt::LogFormat,
        "",
        "log-format",
        STRING,
        "Log message format in spdlog syntax (see \
         https://github.com/gabime/spdlog/wiki/3.-Custom-formatting)\nDefault is \
         \"[%Y-%m-%d %T.%e][%t][%l][%n] [%g:%#] %v\"",
    ),
    spec(
        Opt::ComponentLogLevel,
        "",
        "component-log-level",
        STRING,
        "Comma-separated list of component log levels. For example upstream:debug,config:trace",
    ),
    spec(
        Opt::LogLevel,
        "l",
        "log-level",
        STRING,
        "Log levels: [trace][debug][info][warning|warn][error][critical][off]\nDefault is [info]",
    ),
    spec(
        Opt::LocalAddressIpVersion,
        "",
        "local-address-ip-version",
        STRING,
        "The local IP address version (v4 or v6).",
    ),
    spec(
        Opt::AdminAddressPath,
        "",
        "admin-address-path",
        STRING,
        "Admin address path",
    ),
    spec(
        Opt::LogStacktraceSingleEntry,
        "",
        "log-stacktrace-single-entry",
        Kind::Switch,
        "Emit the entire stack trace in a single log entry instead of one log call per frame. \
         Useful for log aggregation systems.",
    ),
    spec(
        Opt::SkipDeprecatedLogs,
        "",
        "skip-deprecated-logs",
        Kind::Switch,
        "Skips the logging of deprecated field warnings during Protobuf message validation",
    ),
    spec(
        Opt::IgnoreUnknownDynamicFields,
        "",
        "ignore-unknown-dynamic-fields",
        Kind::Switch,
        "Ignore unknown fields in dynamic configuration",
    ),
    spec(
        Opt::RejectUnknownDynamicFields,
        "",
        "reject-unknown-dynamic-fields",
        Kind::Switch,
        "Reject unknown fields in dynamic configuration",
    ),
    spec(
        Opt::AllowUnknownStaticFields,
        "",
        "allow-unknown-static-fields",
        Kind::Switch,
        "Allow unknown fields in static configuration",
    ),
    spec(
        Opt::AllowUnknownFields,
        "",
        "allow-unknown-fields",
        Kind::Switch,
        "Allow unknown fields in static configuration (DEPRECATED)",
    ),
    spec(
        Opt::ConfigYaml,
        "",
        "config-yaml",
        STRING,
        "Inline YAML configuration, merges with the contents of --config-path",
    ),
    spec(
        Opt::ConfigPath,
        "c",
        "config-path",
        STRING,
        "Path to configuration file",
    ),
    spec(
        Opt::Concurrency,
        "",
        "concurrency",
        UINT32,
        "# of worker threads to run",
    ),
    hot(
        Opt::BaseIdPath,
        "",
        "base-id-path",
        STRING,
        "Path to which the base ID is written",
    ),
    hot(
        Opt::SkipHotRestartParentStats,
        "",
        "skip-hot-restart-parent-stats",
        Kind::Switch,
        "When hot restarting, by default the child instance copies stats from the parent \
         instance periodically during the draining period. This can potentially be an \
         expensive operation; set this to true to reset all stats in child process.",
    ),
    hot(
        Opt::SkipHotRestartOnNoParent,
        "",
        "skip-hot-restart-on-no-parent",
        Kind::Switch,
        "When hot restarting with epoch>0, the default behavior is for the child to crash if \
         the connection to the parent cannot be established. Set this to true to instead \
         continue with a regular startup, while retaining the new epoch value.",
    ),
    hot(
        Opt::UseDynamicBaseId,
        "",
        "use-dynamic-base-id",
        Kind::Switch,
        "The server chooses a base ID dynamically. Supersedes a static base ID. May not be \
         used when the restart epoch is non-zero.",
    ),
    hot(
        Opt::BaseId,
        "",
        "base-id",
        UINT32,
        "Base ID so that multiple envoys can run on the same host if needed",
    ),
    spec(
        Opt::IgnoreRest,
        "-",
        "ignore_rest",
        Kind::Switch,
        "Ignores the rest of the labeled arguments following this flag.",
    ),
    spec(
        Opt::Version,
        "",
        "version",
        Kind::Switch,
        "Displays version information and exits.",
    ),
    spec(
        Opt::Help,
        "h",
        "help",
        Kind::Switch,
        "Displays usage information and exits.",
    ),
];

impl Spec {
    /// TCLAP `Arg::toString()`: `-l (--log-level)` or `(--mode)`.
    fn to_id_string(&self) -> String {
        if self.flag.is_empty() {
            format!("(--{})", self.name)
        } else {
            format!("-{} (--{})", self.flag, self.name)
        }
    }

    fn matches(&self, flag: &str) -> bool {
        (!self.flag.is_empty() && flag.strip_prefix('-') == Some(self.flag))
            || flag.strip_prefix("--") == Some(self.name)
    }

    /// TCLAP `shortID()`: `[--mode <string>]`, `[-l <string>]`, `[--stats-tag <string>] ...`.
    fn short_id(&self) -> String {
        let mut id = if self.flag.is_empty() {
            format!("--{}", self.name)
        } else {
            format!("-{}", self.flag)
        };
        match self.kind {
            Kind::Switch => format!("[{id}]"),
            Kind::Value(t) => {
                id.push_str(&format!(" <{t}>"));
                format!("[{id}]")
            }
            Kind::Multi(t) => format!("[{id} <{t}>] ..."),
        }
    }

    /// TCLAP `longID()`: `-l <string>,  --log-level <string>`.
    fn long_id(&self) -> String {
        let value = match self.kind {
            Kind::Switch => String::new(),
            Kind::Value(t) | Kind::Multi(t) => format!(" <{t}>"),
        };
        let mut id = String::new();
        if !self.flag.is_empty() {
            id.push_str(&format!("-{}{value},  ", self.flag));
        }
        id.push_str(&format!("--{}{value}", self.name));
        if let Kind::Multi(_) = self.kind {
            id.push_str("  (accepted multiple times)");
        }
        id
    }
}

/// TCLAP `StdOutput::spacePrint`: wraps at 75 columns, breaking after ' ', ',' or '|',
/// honouring embedded newlines.
fn space_print(out: &mut Vec<u8>, s: &str, indent: usize, second_line_offset: usize) {
    const MAX_WIDTH: isize = 75;
    let s = s.as_bytes();
    let at = |i: isize| -> u8 {
        usize::try_from(i)
            .ok()
            .and_then(|i| s.get(i).copied())
            .unwrap_or(0)
    };
    let len = s.len() as isize;
    let mut indent = indent as isize;
    if len + indent > MAX_WIDTH {
        let mut allowed = MAX_WIDTH - indent;
        let mut start: isize = 0;
        while start < len {
            let mut n = (len - start).min(allowed);
            if n == allowed {
                while n >= 0 && !matches!(at(n + start), b' ' | b',' | b'|') {
                    n -= 1;
                }
            }
            if n <= 0 {
                n = allowed;
            }
            let mut i = 0;
            while i < n {
                if at(start + i) == b'\n' {
                    n = i + 1;
                }
                i += 1;
            }
            out.extend(std::iter::repeat_n(b' ', indent.max(0) as usize));
            if start == 0 {
                indent += second_line_offset as isize;
                allowed -= second_line_offset as isize;
            }
            let from = start.max(0) as usize;
            let to = ((start + n).max(0) as usize).min(s.len());
            out.extend_from_slice(&s[from.min(to)..to]);
            out.push(b'\n');
            while at(n + start) == b' ' && start < len {
                start += 1;
            }
            start += n;
        }
    } else {
        out.extend(std::iter::repeat_n(b' ', indent.max(0) as usize));
        out.extend_from_slice(s);
        out.push(b'\n');
    }
}

fn short_usage(out: &mut Vec<u8>, prog: &str) {
    let mut s = format!("{prog} ");
    for spec in SPECS {
        s.push(' ');
        s.push_str(&spec.short_id());
    }
    let offset = (prog.len() + 2).min(75 / 2);
    space_print(out, &s, 3, offset);
}

fn usage_text(prog: &str, message: &str, notes: bool) -> String {
    let mut out = Vec::new();
    out.extend_from_slice(b"\nUSAGE: \n\n");
    short_usage(&mut out, prog);
    out.extend_from_slice(b"\n\nWhere: \n\n");
    for spec in SPECS {
        space_print(&mut out, &spec.long_id(), 3, 3);
        space_print(&mut out, spec.description, 5, 0);
        if let (true, Some(note)) = (notes, spec.note) {
            space_print(&mut out, note, 5, 0);
        }
        out.push(b'\n');
    }
    out.push(b'\n');
    space_print(&mut out, message, 3, 0);
    out.push(b'\n');
    String::from_utf8_lossy(&out).into_owned()
}

/// The full `--help` text for program name `prog` (TCLAP's layout).
pub fn usage(prog: &str) -> String {
    usage_text(prog, PROGRAM_MESSAGE, true)
}

/// A TCLAP `ArgException`: rendered by [`parse_failure`].
struct ArgError {
    id: String,
    text: &'static str,
    /// For "Couldn't read argument value from string '...'" style messages.
    detail: Option<String>,
}

impl ArgError {
    fn new(id: String, text: &'static str) -> ArgError {
        ArgError {
            id,
            text,
            detail: None,
        }
    }

    fn error_text(&self) -> String {
        match &self.detail {
            Some(d) => format!("{}{d}'", self.text),
            None => self.text.to_owned(),
        }
    }
}

/// TCLAP `StdOutput::failure` plus Envoy's `e.what()` line.
fn parse_failure(prog: &str, e: &ArgError) -> CliExit {
    let arg_id = if e.id == "undefined" {
        " ".to_owned()
    } else {
        format!("Argument: {}", e.id)
    };
    let error = e.error_text();
    let mut out = Vec::new();
    out.extend_from_slice(format!("PARSE ERROR: {arg_id}\n             {error}\n\n").as_bytes());
    out.extend_from_slice(b"Brief USAGE: \n");
    short_usage(&mut out, prog);
    out.extend_from_slice(
        format!("\nFor complete USAGE and HELP type: \n   {prog} --help\n\n").as_bytes(),
    );
    out.extend_from_slice(format!("{} -- {error}\n", e.id).as_bytes());
    CliExit::error(String::from_utf8_lossy(&out).into_owned())
}

/// TCLAP's `ExtractValue` for `uint32_t` through libc++'s `istream >>`: leading whitespace is
/// skipped, one optional sign, decimal digits only, `-n` wraps modulo 2^32, overflow fails,
/// and every whitespace-separated value is read (two values is its own error). `Ok(None)`
/// for an empty string: TCLAP keeps the default then.
fn extract_u32(s: &str) -> Result<Option<u32>, &'static str> {
    const CANT_READ: &str = "Couldn't read argument value from string '";
    const MORE_THAN_ONE: &str = "More than one valid value parsed from string '";
    let b = s.as_bytes();
    let mut pos = 0;
    let mut value = None;
    let mut count = 0;
    while pos < b.len() {
        while pos < b.len() && matches!(b[pos], b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
            pos += 1;
        }
        let negative = match b.get(pos) {
            Some(b'-') => {
                pos += 1;
                true
            }
            Some(b'+') => {
                pos += 1;
                false
            }
            _ => false,
        };
        let digits_start = pos;
        let mut v: u64 = 0;
        let mut overflow = false;
        while let Some(d) = b.get(pos).filter(|c| c.is_ascii_digit()) {
            v = v.saturating_mul(10).saturating_add(u64::from(d - b'0'));
            overflow |= v > u64::from(u32::MAX);
            pos += 1;
        }
        if pos == digits_start || overflow {
            return Err(CANT_READ);
        }
        let v = u32::try_from(v).map_err(|_| CANT_READ)?;
        value = Some(if negative { v.wrapping_neg() } else { v });
        count += 1;
    }
    if count > 1 {
        return Err(MORE_THAN_ONE);
    }
    Ok(value)
}

/// Raw parse state, one slot per [`Spec`].
#[derive(Default)]
struct Raw {
    set: Vec<bool>,
    values: Vec<Option<String>>,
    multi: Vec<Vec<String>>,
    numbers: Vec<Option<u32>>,
}

impl Raw {
    fn idx(id: Opt) -> usize {
        SPECS.iter().position(|s| s.id == id).unwrap_or(0)
    }
    fn is_set(&self, id: Opt) -> bool {
        self.set[Self::idx(id)]
    }
    fn string(&self, id: Opt, default: &str) -> String {
        self.values[Self::idx(id)]
            .clone()
            .unwrap_or_else(|| default.to_owned())
    }
    fn number(&self, id: Opt, default: u32) -> u32 {
        self.number_or_else(id, || default)
    }
    /// [`Raw::number`] with a default that is only computed when needed.
    fn number_or_else(&self, id: Opt, default: impl FnOnce() -> u32) -> u32 {
        self.numbers[Self::idx(id)].unwrap_or_else(default)
    }
}

/// The CPUs this process may use (affinity and cgroup aware), at least 1.
pub fn default_concurrency() -> u32 {
    std::thread::available_parallelism()
        .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
        .unwrap_or(1)
}

/// Parses `args` (`argv[0]` first) exactly as Envoy 1.40 does.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, CliExit> {
    let mut args: Vec<String> = args.into_iter().collect();
    let prog = if args.is_empty() {
        String::new()
    } else {
        args.remove(0)
    };
    let raw = tclap_parse(&prog, &mut args)?;
    finish(prog, &raw)
}

/// TCLAP's `CmdLine::parse` over the arguments after `argv[0]`.
fn tclap_parse(prog: &str, args: &mut [String]) -> Result<Raw, CliExit> {
    let n = SPECS.len();
    let mut raw = Raw {
        set: vec![false; n],
        values: vec![None; n],
        multi: vec![Vec::new(); n],
        numbers: vec![None; n],
    };
    let mut ignoring = false;
    let mut i = 0;
    while i < args.len() {
        let mut matched = false;
        if !ignoring {
            let arg = args[i].clone();
            for (k, spec) in SPECS.iter().enumerate() {
                match spec.kind {
                    Kind::Value(_) | Kind::Multi(_) => {
                        // `_hasBlanks`: a '*' after the first character never matches.
                        if arg.bytes().skip(1).any(|b| b == b'*') {
                            continue;
                        }
                        let (flag, inline) = trim_flag(&arg);
                        if !spec.matches(flag) {
                            continue;
                        }
                        if matches!(spec.kind, Kind::Value(_)) && raw.set[k] {
                            let e = ArgError::new(spec.to_id_string(), "Argument already set!");
                            return Err(parse_failure(prog, &e));
                        }
                        let value = if inline.is_empty() {
                            i += 1;
                            match args.get(i) {
                                Some(v) => v.clone(),
                                None => {
                                    let e = ArgError::new(
                                        spec.to_id_string(),
                                        "Missing a value for this argument!",
                                    );
                                    return Err(parse_failure(prog, &e));
                                }
                            }
                        } else {
                            inline.to_owned()
                        };
                        match spec.kind {
                            Kind::Multi(_) => raw.multi[k].push(value),
                            _ if spec.kind == UINT32 => match extract_u32(&value) {
                                Ok(v) => {
                                    if v.is_some() {
                                        raw.numbers[k] = v;
                                    }
                                    raw.values[k] = Some(value);
                                }
                                Err(text) => {
                                    let e = ArgError {
                                        id: spec.to_id_string(),
                                        text,
                                        detail: Some(value),
                                    };
                                    return Err(parse_failure(prog, &e));
                                }
                            },
                            _ => raw.values[k] = Some(value),
                        }
                        raw.set[k] = true;
                        matched = true;
                    }
                    Kind::Switch => {
                        if spec.matches(&arg) {
                            if raw.set[k] {
                                let e = ArgError::new(spec.to_id_string(), "Argument already set!");
                                return Err(parse_failure(prog, &e));
                            }
                        } else if combined_switch_match(spec, &mut args[i]) {
                            if combined_switch_match(spec, &mut args[i]) || raw.set[k] {
                                let e = ArgError::new(spec.to_id_string(), "Argument already set!");
                                return Err(parse_failure(prog, &e));
                            }
                        } else {
                            continue;
                        }
                        raw.set[k] = true;
                        matched = true;
                        match spec.id {
                            Opt::Help => return Err(CliExit::stdout(usage(prog))),
                            Opt::Version => {
                                return Err(CliExit::stdout(format!(
                                    "\n{prog}  version: {}\n\n",
                                    version_string()
                                )));
                            }
                            Opt::IgnoreRest => ignoring = true,
                            _ => {}
                        }
                    }
                }
                break;
            }
        }
        if !matched && !empty_combined(&args[i]) && !ignoring {
            let e = ArgError::new(args[i].clone(), "Couldn't find match for argument");
            return Err(parse_failure(prog, &e));
        }
        i += 1;
    }
    Ok(raw)
}

/// TCLAP `Arg::trimFlag` with the space delimiter: `"--mode validate"` as one argument is
/// flag `--mode`, value `validate` (only when the first space is past index 1).
fn trim_flag(arg: &str) -> (&str, &str) {
    match arg.find(' ') {
        Some(stop) if stop > 1 => (&arg[..stop], &arg[stop + 1..]),
        _ => (arg, ""),
    }
}

/// TCLAP `SwitchArg::combinedSwitchesMatch`: `-xh` contains `-h`. Marks the matched
/// character as used ('*') like TCLAP does.
fn combined_switch_match(spec: &Spec, arg: &mut String) -> bool {
    let Some(&short) = spec.flag.as_bytes().first() else {
        return false;
    };
    if short == b'-' || !arg.starts_with('-') || arg.starts_with("--") || arg.contains(' ') {
        return false;
    }
    match arg.bytes().skip(1).position(|b| b == short) {
        Some(p) => {
            arg.replace_range(p + 1..p + 2, "*");
            true
        }
        None => false,
    }
}

/// TCLAP `CmdLine::_emptyCombined`: `""`, `"-"`, `"-**"` are silently accepted.
fn empty_combined(arg: &str) -> bool {
    let b = arg.as_bytes();
    if !b.is_empty() && b[0] != b'-' {
        return false;
    }
    b.iter().skip(1).all(|&c| c == b'*')
}

/// `--socket-mode` as Envoy 1.40 reads it (measured): optional leading whitespace, then only
/// octal digits to the end, no sign, fitting in 64 bits.
fn parse_socket_mode(s: &str) -> Option<u64> {
    let digits = s.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u64::from_str_radix(digits, 8).ok()
}

/// Envoy's `MalformedArgvException` as printed by Envoy's `main`: the message and a newline
/// on stderr, exit code 1.
fn fail(message: String) -> CliExit {
    CliExit::error(format!("{message}\n"))
}

/// Envoy's checks after TCLAP, in Envoy's order, with Envoy's messages.
fn finish(argv0: String, raw: &Raw) -> Result<Options, CliExit> {
    let mut warnings = Vec::new();

    let log_level = if raw.is_set(Opt::LogLevel) {
        let v = raw.string(Opt::LogLevel, "info");
        Level::from_cli_name(&v)
            .ok_or_else(|| fail(format!("error: invalid log level specified '{v}'")))?
    } else {
        Level::Info
    };
    let log_format = raw.string(Opt::LogFormat, rvoy_log::DEFAULT_LOG_FORMAT);
    let enable_fine_grain_logging = raw.is_set(Opt::EnableFineGrainLogging);
    let component_log_level = raw.string(Opt::ComponentLogLevel, "");
    if enable_fine_grain_logging && !component_log_level.is_empty() {
        return Err(fail(
            "error: --component-log-level will not work with --enable-fine-grain-logging"
                .to_owned(),
        ));
    }
    let component_log_levels = rvoy_log::parse_component_log_levels(&component_log_level)
        .map_err(|e| fail(e.to_string()))?;

    let mode = match raw.string(Opt::Mode, "serve").as_str() {
        "serve" => Mode::Serve,
        "validate" => Mode::Validate,
        "init_only" => Mode::InitOnly,
        other => return Err(fail(format!("error: unknown mode '{other}'"))),
    };
    let local_address_ip_version = match raw.string(Opt::LocalAddressIpVersion, "v4").as_str() {
        "v4" => IpVersion::V4,
        "v6" => IpVersion::V6,
        other => return Err(fail(format!("error: unknown IP address version '{other}'"))),
    };

    let base_id = raw.number(Opt::BaseId, 0);
    let use_dynamic_base_id = raw.is_set(Opt::UseDynamicBaseId);
    let restart_epoch = raw.number(Opt::RestartEpoch, 0);
    if use_dynamic_base_id && restart_epoch > 0 {
        return Err(fail(format!(
            "error: cannot use --restart-epoch={restart_epoch} with --use-dynamic-base-id"
        )));
    }

    let cpuset_threads = raw.is_set(Opt::CpusetThreads);
    let concurrency = if raw.is_set(Opt::Concurrency) {
        if cpuset_threads {
            warnings.push((
                Component::Config,
                "Both --concurrency and --cpuset-threads options are set; not applying \
                 --cpuset-threads."
                    .to_owned(),
            ));
        }
        // The default costs a look at the cgroup's CPU quota: only when it is used.
        raw.number_or_else(Opt::Concurrency, default_concurrency)
            .max(1)
    } else {
        if cpuset_threads {
            warnings.push((
                Component::Config,
                "--cpuset-threads is now the default behavior and no longer required.".to_owned(),
            ));
        }
        default_concurrency().max(1)
    };

    let allow_unknown_fields = raw.is_set(Opt::AllowUnknownFields);
    if allow_unknown_fields {
        warnings.push((
            Component::Config,
            "--allow-unknown-fields is deprecated, use --allow-unknown-static-fields instead."
                .to_owned(),
        ));
    }

    let socket_path = raw.string(Opt::SocketPath, "@envoy_domain_socket");
    // Envoy aborts on an empty --socket-path; rvoy (no hot restart) treats it as abstract.
    let socket_mode = if socket_path.is_empty() || socket_path.starts_with('@') {
        0
    } else {
        let v = raw.string(Opt::SocketMode, "600");
        // Truncated like Envoy's `mode_t`.
        parse_socket_mode(&v).ok_or_else(|| fail(format!("error: invalid socket-mode '{v}'")))?
            as u32
    };

    let drain_strategy = match raw.string(Opt::DrainStrategy, "gradual").as_str() {
        "immediate" => DrainStrategy::Immediate,
        "gradual" => DrainStrategy::Gradual,
        // Envoy's message quotes the --mode value here (sic).
        _ => {
            return Err(fail(format!(
                "error: unknown drain-strategy '{}'",
                raw.string(Opt::Mode, "serve")
            )));
        }
    };

    if raw.is_set(Opt::HotRestartVersion) {
        return Err(CliExit {
            text: HOT_RESTART_VERSION.to_owned(),
            stream: Stream::Stderr,
            code: 0,
        });
    }

    let disable_extensions = raw.string(Opt::DisableExtensions, "");
    let disabled_extensions = if disable_extensions.is_empty() {
        Vec::new()
    } else {
        disable_extensions.split(',').map(str::to_owned).collect()
    };

    let mut stats_tags = Vec::new();
    for pair in &raw.multi[Raw::idx(Opt::StatsTag)] {
        let Some((name, value)) = pair.split_once(':') else {
            return Err(fail(format!("error: misformatted stats-tag '{pair}'")));
        };
        if !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(fail(format!(
                "error: misformatted stats-tag '{pair}' contains invalid char in '{name}'"
            )));
        }
        // Envoy 1.40 also rejects an empty value (measured: `--stats-tag foo:`).
        if value.is_empty() || value.contains('.') {
            return Err(fail(format!(
                "error: misformatted stats-tag '{pair}' contains invalid char in '{value}'"
            )));
        }
        stats_tags.push((name.to_owned(), value.to_owned()));
    }

    Ok(Options {
        argv0,
        base_id,
        use_dynamic_base_id,
        base_id_path: raw.string(Opt::BaseIdPath, ""),
        concurrency,
        config_path: raw.string(Opt::ConfigPath, ""),
        config_yaml: raw.string(Opt::ConfigYaml, ""),
        allow_unknown_static_fields: raw.is_set(Opt::AllowUnknownStaticFields)
            || allow_unknown_fields,
        allow_unknown_fields,
        reject_unknown_dynamic_fields: raw.is_set(Opt::RejectUnknownDynamicFields),
        ignore_unknown_dynamic_fields: raw.is_set(Opt::IgnoreUnknownDynamicFields),
        skip_deprecated_logs: raw.is_set(Opt::SkipDeprecatedLogs),
        admin_address_path: raw.string(Opt::AdminAddressPath, ""),
        local_address_ip_version,
        log_level,
        component_log_level,
        component_log_levels,
        log_format_set: raw.is_set(Opt::LogFormat),
        log_format,
        log_format_escaped: raw.is_set(Opt::LogFormatEscaped),
        enable_fine_grain_logging,
        log_path: raw.string(Opt::LogPath, ""),
        log_stacktrace_single_entry: raw.is_set(Opt::LogStacktraceSingleEntry),
        service_cluster: raw.string(Opt::ServiceCluster, ""),
        service_node: raw.string(Opt::ServiceNode, ""),
        service_zone: raw.string(Opt::ServiceZone, ""),
        file_flush_interval: Duration::from_millis(u64::from(
            raw.number(Opt::FileFlushIntervalMsec, 10_000),
        )),
        file_flush_min_size_kb: raw.number(Opt::FileFlushMinSizeKb, 64),
        drain_time: Duration::from_secs(u64::from(raw.number(Opt::DrainTimeS, 600))),
        drain_strategy,
        parent_shutdown_time: Duration::from_secs(u64::from(
            raw.number(Opt::ParentShutdownTimeS, 900),
        )),
        mode,
        disable_hot_restart: raw.is_set(Opt::DisableHotRestart),
        enable_mutex_tracing: raw.is_set(Opt::EnableMutexTracing),
        restart_epoch,
        cpuset_threads,
        disabled_extensions,
        socket_path,
        socket_mode,
        enable_core_dump: raw.is_set(Opt::EnableCoreDump),
        stats_tags,
        skip_hot_restart_on_no_parent: raw.is_set(Opt::SkipHotRestartOnNoParent),
        skip_hot_restart_parent_stats: raw.is_set(Opt::SkipHotRestartParentStats),
        warnings,
    })
}

fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

impl Options {
    /// The admin `/server_info` `command_line_options`, filled exactly as Envoy 1.40 fills
    /// it (which leaves `enable_core_dump` false and `file_flush_min_size` 0).
    pub fn command_line_options(&self) -> CommandLineOptions {
        CommandLineOptions {
            base_id: u64::from(self.base_id),
            use_dynamic_base_id: self.use_dynamic_base_id,
            skip_hot_restart_on_no_parent: self.skip_hot_restart_on_no_parent,
            skip_hot_restart_parent_stats: self.skip_hot_restart_parent_stats,
            base_id_path: self.base_id_path.clone(),
            concurrency: self.concurrency,
            config_path: self.config_path.clone(),
            config_yaml: self.config_yaml.clone(),
            allow_unknown_static_fields: self.allow_unknown_static_fields,
            reject_unknown_dynamic_fields: self.reject_unknown_dynamic_fields,
            ignore_unknown_dynamic_fields: self.ignore_unknown_dynamic_fields,
            skip_deprecated_logs: self.skip_deprecated_logs,
            admin_address_path: self.admin_address_path.clone(),
            local_address_ip_version: match self.local_address_ip_version {
                IpVersion::V4 => clo::IpVersion::V4,
                IpVersion::V6 => clo::IpVersion::V6,
            } as i32,
            log_level: self.log_level.as_str().to_owned(),
            component_log_level: self.component_log_level.clone(),
            log_format: self.log_format.clone(),
            log_format_escaped: self.log_format_escaped,
            log_path: self.log_path.clone(),
            service_cluster: self.service_cluster.clone(),
            service_node: self.service_node.clone(),
            service_zone: self.service_zone.clone(),
            file_flush_interval: Some(duration(self.file_flush_interval)),
            file_flush_min_size: 0,
            drain_time: Some(duration(self.drain_time)),
            drain_strategy: match self.drain_strategy {
                DrainStrategy::Gradual => clo::DrainStrategy::Gradual,
                DrainStrategy::Immediate => clo::DrainStrategy::Immediate,
            } as i32,
            parent_shutdown_time: Some(duration(self.parent_shutdown_time)),
            mode: match self.mode {
                Mode::Serve => clo::Mode::Serve,
                Mode::Validate => clo::Mode::Validate,
                Mode::InitOnly => clo::Mode::InitOnly,
            } as i32,
            disable_hot_restart: self.disable_hot_restart,
            enable_mutex_tracing: self.enable_mutex_tracing,
            restart_epoch: self.restart_epoch,
            cpuset_threads: self.cpuset_threads,
            disabled_extensions: self.disabled_extensions.clone(),
            enable_fine_grain_logging: self.enable_fine_grain_logging,
            log_stacktrace_single_entry: self.log_stacktrace_single_entry,
            socket_path: self.socket_path.clone(),
            socket_mode: self.socket_mode,
            enable_core_dump: false,
            stats_tag: self
                .stats_tags
                .iter()
                .map(|(n, v)| format!("{n}:{v}"))
                .collect(),
        }
    }

    /// The logger configuration these options ask for.
    pub fn log_config(&self) -> rvoy_log::LogConfig {
        rvoy_log::LogConfig {
            level: self.log_level,
            component_levels: self.component_log_levels.clone(),
            format: self.log_format.clone(),
            escaped: self.log_format_escaped,
            path: (!self.log_path.is_empty()).then(|| self.log_path.clone().into()),
            version: version_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENVOY: &str = "/work/.envoy/bin/envoy";

    fn args(list: &[&str]) -> Vec<String> {
        std::iter::once("rvoy")
            .chain(list.iter().copied())
            .map(str::to_owned)
            .collect()
    }

    fn ok(list: &[&str]) -> Options {
        match parse(args(list)) {
            Ok(o) => o,
            Err(e) => panic!("{list:?} failed: {e:?}"),
        }
    }

    fn exit(list: &[&str]) -> CliExit {
        match parse(args(list)) {
            Ok(o) => panic!("{list:?} parsed: {o:?}"),
            Err(e) => e,
        }
    }

    /// The error text of Envoy's own semantic errors (stderr, exit 1).
    fn semantic(list: &[&str]) -> String {
        let e = exit(list);
        assert_eq!((e.stream, e.code), (Stream::Stderr, 1), "{list:?}");
        e.text
    }

    /// The first two lines of a TCLAP parse error (stderr, exit 1).
    fn tclap(list: &[&str]) -> String {
        let e = exit(list);
        assert_eq!((e.stream, e.code), (Stream::Stderr, 1), "{list:?}");
        assert!(
            e.text
                .contains("\nBrief USAGE: \n   rvoy  [--stats-tag <string>] ...")
        );
        assert!(
            e.text
                .contains("\nFor complete USAGE and HELP type: \n   rvoy --help\n\n")
        );
        e.text.lines().take(2).collect::<Vec<_>>().join("\n")
    }

    /// `envoy --help` from Envoy 1.40, run as /work/.envoy/bin/envoy (stdout, exit 0).
    const ENVOY_HELP: &str = r##"
USAGE: 

   /work/.envoy/bin/envoy  [--stats-tag <string>] ... [--enable-core-dump]
                           [--socket-mode <string>] [--socket-path
                           <string>] [--disable-extensions <string>]
                           [--cpuset-threads] [--enable-mutex-tracing]
                           [--disable-hot-restart] [--mode <string>]
                           [--parent-shutdown-time-s <uint32_t>]
                           [--drain-strategy <string>] [--drain-time-s
                           <uint32_t>] [--file-flush-min-size-kb
                           <uint32_t>] [--file-flush-interval-msec
                           <uint32_t>] [--service-zone <string>]
                           [--service-node <string>] [--service-cluster
                           <string>] [--hot-restart-version]
                           [--restart-epoch <uint32_t>] [--log-path
                           <string>] [--enable-fine-grain-logging]
                           [--log-format-escaped] [--log-format <string>]
                           [--component-log-level <string>] [-l <string>]
                           [--local-address-ip-version <string>]
                           [--admin-address-path <string>]
                           [--log-stacktrace-single-entry]
                           [--skip-deprecated-logs]
                           [--ignore-unknown-dynamic-fields]
                           [--reject-unknown-dynamic-fields]
                           [--allow-unknown-static-fields]
                           [--allow-unknown-fields] [--config-yaml
                           <string>] [-c <string>] [--concurrency
                           <uint32_t>] [--base-id-path <string>]
                           [--skip-hot-restart-parent-stats]
                           [--skip-hot-restart-on-no-parent]
                           [--use-dynamic-base-id] [--base-id <uint32_t>]
                           [--] [--version] [-h]


Where: 

   --stats-tag <string>  (accepted multiple times)
     This flag provides a universal tag for all stats generated by Envoy.
     The format is ``tag:value``. Only alphanumeric values are allowed for
     tag names. For tag values all characters are permitted except for '.'
     (dot). This flag can be repeated multiple times to set multiple
     universal tags. Multiple values for the same tag name are not
     allowed.

   --enable-core-dump
     Enable core dumps

   --socket-mode <string>
     Socket file permission

   --socket-path <string>
     Path to hot restart socket file

   --disable-extensions <string>
     Comma-separated list of extensions to disable

   --cpuset-threads
     Get the default # of worker threads from cpuset size

   --enable-mutex-tracing
     Enable mutex contention tracing functionality

   --disable-hot-restart
     Disable hot restart functionality

   --mode <string>
     One of 'serve' (default; validate configs and then serve traffic
     normally) or 'validate' (validate configs and exit).

   --parent-shutdown-time-s <uint32_t>
     Hot restart parent shutdown time in seconds

   --drain-strategy <string>
     Hot restart drain sequence behaviour, one of 'gradual' (default) or
     'immediate'.

   --drain-time-s <uint32_t>
     Hot restart and LDS removal drain time in seconds

   --file-flush-min-size-kb <uint32_t>
     Minimum size in KB for log flushing

   --file-flush-interval-msec <uint32_t>
     Interval for log flushing in msec

   --service-zone <string>
     Zone name

   --service-node <string>
     Node name

   --service-cluster <string>
     Cluster name

   --hot-restart-version
     Hot restart compatibility version

   --restart-epoch <uint32_t>
     Hot restart epoch #

   --log-path <string>
     Path to logfile

   --enable-fine-grain-logging
     Logger mode: enable file level log control (Fine-Grain Logger) or not

   --log-format-escaped
     Escape c-style escape sequences in the application logs

   --log-format <string>
     Log message format in spdlog syntax (see
     https://github.com/gabime/spdlog/wiki/3.-Custom-formatting)

     Default is "[%Y-%m-%d %T.%e][%t][%l][%n] [%g:%#] %v"

   --component-log-level <string>
     Comma-separated list of component log levels. For example
     upstream:debug,config:trace

   -l <string>,  --log-level <string>
     Log levels: [trace][debug][info][warning
     |warn][error][critical][off]

     Default is [info]

   --local-address-ip-version <string>
     The local IP address version (v4 or v6).

   --admin-address-path <string>
     Admin address path

   --log-stacktrace-single-entry
     Emit the entire stack trace in a single log entry instead of one log
     call per frame. Useful for log aggregation systems.

   --skip-deprecated-logs
     Skips the logging of deprecated field warnings during Protobuf message
     validation

   --ignore-unknown-dynamic-fields
     Ignore unknown fields in dynamic configuration

   --reject-unknown-dynamic-fields
     Reject unknown fields in dynamic configuration

   --allow-unknown-static-fields
     Allow unknown fields in static configuration

   --allow-unknown-fields
     Allow unknown fields in static configuration (DEPRECATED)

   --config-yaml <string>
     Inline YAML configuration, merges with the contents of --config-path

   -c <string>,  --config-path <string>
     Path to configuration file

   --concurrency <uint32_t>
     # of worker threads to run

   --base-id-path <string>
     Path to which the base ID is written

   --skip-hot-restart-parent-stats
     When hot restarting, by default the child instance copies stats from
     the parent instance periodically during the draining period. This can
     potentially be an expensive operation; set this to true to reset all
     stats in child process.

   --skip-hot-restart-on-no-parent
     When hot restarting with epoch>0, the default behavior is for the
     child to crash if the connection to the parent cannot be established.
     Set this to true to instead continue with a regular startup, while
     retaining the new epoch value.

   --use-dynamic-base-id
     The server chooses a base ID dynamically. Supersedes a static base ID.
     May not be used when the restart epoch is non-zero.

   --base-id <uint32_t>
     Base ID so that multiple envoys can run on the same host if needed

   --,  --ignore_rest
     Ignores the rest of the labeled arguments following this flag.

   --version
     Displays version information and exits.

   -h,  --help
     Displays usage information and exits.


   envoy

"##;

    /// `envoy --definitely-not-a-flag` from Envoy 1.40 (stderr, exit 1).
    const ENVOY_UNKNOWN_FLAG: &str = r##"PARSE ERROR: Argument: --definitely-not-a-flag
             Couldn't find match for argument

Brief USAGE: 
   /work/.envoy/bin/envoy  [--stats-tag <string>] ... [--enable-core-dump]
                           [--socket-mode <string>] [--socket-path
                           <string>] [--disable-extensions <string>]
                           [--cpuset-threads] [--enable-mutex-tracing]
                           [--disable-hot-restart] [--mode <string>]
                           [--parent-shutdown-time-s <uint32_t>]
                           [--drain-strategy <string>] [--drain-time-s
                           <uint32_t>] [--file-flush-min-size-kb
                           <uint32_t>] [--file-flush-interval-msec
                           <uint32_t>] [--service-zone <string>]
                           [--service-node <string>] [--service-cluster
                           <string>] [--hot-restart-version]
                           [--restart-epoch <uint32_t>] [--log-path
                           <string>] [--enable-fine-grain-logging]
                           [--log-format-escaped] [--log-format <string>]
                           [--component-log-level <string>] [-l <string>]
                           [--local-address-ip-version <string>]
                           [--admin-address-path <string>]
                           [--log-stacktrace-single-entry]
                           [--skip-deprecated-logs]
                           [--ignore-unknown-dynamic-fields]
                           [--reject-unknown-dynamic-fields]
                           [--allow-unknown-static-fields]
                           [--allow-unknown-fields] [--config-yaml
                           <string>] [-c <string>] [--concurrency
                           <uint32_t>] [--base-id-path <string>]
                           [--skip-hot-restart-parent-stats]
                           [--skip-hot-restart-on-no-parent]
                           [--use-dynamic-base-id] [--base-id <uint32_t>]
                           [--] [--version] [-h]

For complete USAGE and HELP type: 
   /work/.envoy/bin/envoy --help

--definitely-not-a-flag -- Couldn't find match for argument
"##;

    #[test]
    fn help_layout_is_tclap_byte_for_byte() {
        assert_eq!(usage_text(ENVOY, "envoy", false), ENVOY_HELP);
    }

    #[test]
    fn help_and_short_help() {
        for flag in ["--help", "-h", "-xh", "-chf"] {
            let e = exit(&[flag]);
            assert_eq!((e.stream, e.code), (Stream::Stdout, 0), "{flag}");
            assert_eq!(e.text, usage("rvoy"));
        }
        let text = usage("rvoy");
        assert!(
            text.starts_with(
                "\nUSAGE: \n\n   rvoy  [--stats-tag <string>] ... [--enable-core-dump]"
            )
        );
        assert!(text.ends_with("     Displays usage information and exits.\n\n\n   rvoy\n\n"));
        assert!(text.contains(
            "   --restart-epoch <uint32_t>\n     Hot restart epoch #\n     rvoy: accepted; has no \
             effect (rvoy has no hot restart).\n\n"
        ));
        assert_eq!(text.matches(NO_HOT_RESTART).count(), 10);
        // Processed in order: an earlier bad argument wins, a later one is never seen.
        assert_eq!(exit(&["--help", "--bogus"]).code, 0);
        assert_eq!(
            tclap(&["--bogus", "--help"]),
            "PARSE ERROR: Argument: --bogus\n             Couldn't find match for argument"
        );
        assert!(exit(&["--version", "--help"]).text.contains("  version: "));
        assert!(exit(&["-h", "--version"]).text.contains("USAGE:"));
        assert_eq!(
            tclap(&["-hh"]),
            "PARSE ERROR: Argument: -h (--help)\n             Argument already set!"
        );
    }

    #[test]
    fn version_line_shape() {
        let e = exit(&["--version"]);
        assert_eq!((e.stream, e.code), (Stream::Stdout, 0));
        let v = version_string();
        assert_eq!(e.text, format!("\nrvoy  version: {v}\n\n"));
        let parts: Vec<&str> = v.split('/').collect();
        assert_eq!(parts.len(), 5);
        assert_eq!(parts[0].len(), 40);
        assert!(parts[0].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(parts[1], env!("CARGO_PKG_VERSION"));
        assert!(parts[2] == "Clean" || parts[2] == "Modified");
        assert_eq!(
            parts[3],
            if cfg!(debug_assertions) {
                "DEBUG"
            } else {
                "RELEASE"
            }
        );
        assert_eq!(parts[4], "rustls");
        // argv[0] is printed as given.
        let e = parse(vec![
            "/usr/local/bin/envoy".to_owned(),
            "--version".to_owned(),
        ]);
        assert_eq!(
            e.map(|_| ()).map_err(|e| e.text),
            Err(format!("\n/usr/local/bin/envoy  version: {v}\n\n"))
        );
    }

    #[test]
    fn hot_restart_version_prints_disabled() {
        for list in [
            &["--hot-restart-version"][..],
            &["--hot-restart-version", "--disable-hot-restart"],
        ] {
            let e = exit(list);
            assert_eq!(
                e,
                CliExit {
                    text: "disabled".to_owned(),
                    stream: Stream::Stderr,
                    code: 0
                }
            );
        }
        // Checked after the drain strategy, before the stats tags (as in Envoy).
        assert_eq!(
            semantic(&["--hot-restart-version", "--drain-strategy", "x"]),
            "error: unknown drain-strategy 'serve'\n"
        );
        assert_eq!(
            exit(&["--hot-restart-version", "--stats-tag", "foo"]).code,
            0
        );
    }

    #[test]
    fn unknown_flag_matches_envoy_byte_for_byte() {
        let Err(e) = parse(vec![ENVOY.to_owned(), "--definitely-not-a-flag".to_owned()]) else {
            panic!("parsed");
        };
        assert_eq!((e.stream, e.code), (Stream::Stderr, 1));
        assert_eq!(e.text, ENVOY_UNKNOWN_FLAG);
    }

    #[test]
    fn tclap_errors_match_envoy() {
        // Every expectation below was produced by envoy 1.40 with the same arguments.
        let cant_read = |v: &str| {
            format!(
                "PARSE ERROR: Argument: (--concurrency)\n             Couldn't read argument value from string '{v}'"
            )
        };
        for v in [
            "many",
            "3 ",
            "4294967296",
            "0x10",
            "1e3",
            " ",
            "3x",
            "-",
            "-4294967296",
        ] {
            assert_eq!(tclap(&["--concurrency", v]), cant_read(v), "{v:?}");
        }
        assert!(
            exit(&["--concurrency", "\t7\n"])
                .text
                .starts_with(&cant_read("\t7\n"))
        );
        assert_eq!(
            tclap(&["--concurrency", "3 4"]),
            "PARSE ERROR: Argument: (--concurrency)\n             More than one valid value parsed from string '3 4'"
        );
        let e = exit(&["--concurrency", "many"]);
        assert!(e.text.ends_with(
            "   rvoy --help\n\n(--concurrency) -- Couldn't read argument value from string 'many'\n"
        ));
        assert_eq!(
            tclap(&["--concurrency"]),
            "PARSE ERROR: Argument: (--concurrency)\n             Missing a value for this argument!"
        );
        assert_eq!(
            tclap(&["--drain-time-s "]),
            "PARSE ERROR: Argument: (--drain-time-s)\n             Missing a value for this argument!"
        );
        assert_eq!(
            tclap(&["--mode", "serve", "--mode", "validate"]),
            "PARSE ERROR: Argument: (--mode)\n             Argument already set!"
        );
        assert_eq!(
            tclap(&["-l", "info", "--log-level", "debug"]),
            "PARSE ERROR: Argument: -l (--log-level)\n             Argument already set!"
        );
        assert_eq!(
            tclap(&["--disable-hot-restart", "--disable-hot-restart"]),
            "PARSE ERROR: Argument: (--disable-hot-restart)\n             Argument already set!"
        );
        for bad in [
            "--mode=validate",
            "foo",
            "-cfoo",
            "--mode*",
            "--enable-core-dump x",
        ] {
            assert_eq!(
                tclap(&[bad]),
                format!(
                    "PARSE ERROR: Argument: {bad}\n             Couldn't find match for argument"
                )
            );
        }
        let e = exit(&["undefined"]);
        assert!(
            e.text
                .starts_with("PARSE ERROR:  \n             Couldn't find match for argument\n")
        );
        assert!(
            e.text
                .ends_with("\nundefined -- Couldn't find match for argument\n")
        );
    }

    #[test]
    fn semantic_errors_match_envoy() {
        let cases: &[(&[&str], &str)] = &[
            (&["--mode", "bogus"], "error: unknown mode 'bogus'"),
            (&["--mode", ""], "error: unknown mode ''"),
            (
                &["-l", "chatty"],
                "error: invalid log level specified 'chatty'",
            ),
            (&["-l", ""], "error: invalid log level specified ''"),
            (&["-l", "WARN"], "error: invalid log level specified 'WARN'"),
            (
                &["--drain-strategy", "bogus"],
                "error: unknown drain-strategy 'serve'",
            ),
            (
                &["--drain-strategy", "bogus", "--mode", "validate"],
                "error: unknown drain-strategy 'validate'",
            ),
            (
                &["--local-address-ip-version", "v5"],
                "error: unknown IP address version 'v5'",
            ),
            (
                &["--component-log-level", "foo:debug"],
                "error: invalid component specified 'foo'",
            ),
            (
                &["--component-log-level", "upstream:chatty"],
                "error: invalid log level specified 'chatty'",
            ),
            (
                &["--component-log-level", "upstream"],
                "error: component log level not correctly specified 'upstream'",
            ),
            (
                &["--component-log-level", "upstream:debug:x"],
                "error: component log level not correctly specified 'upstream:debug:x'",
            ),
            (
                &["--component-log-level", "upstream:debug,"],
                "error: component log level not correctly specified ''",
            ),
            (
                &[
                    "--enable-fine-grain-logging",
                    "--component-log-level",
                    "bogus",
                ],
                "error: --component-log-level will not work with --enable-fine-grain-logging",
            ),
            (
                &["--use-dynamic-base-id", "--restart-epoch", "2"],
                "error: cannot use --restart-epoch=2 with --use-dynamic-base-id",
            ),
            (
                &["--socket-mode", "999", "--socket-path", "/tmp/x"],
                "error: invalid socket-mode '999'",
            ),
            (
                &["--socket-path", "x", "--socket-mode", ""],
                "error: invalid socket-mode ''",
            ),
            (
                &["--socket-path", "x", "--socket-mode", "-1"],
                "error: invalid socket-mode '-1'",
            ),
            (
                &["--socket-path", "x", "--socket-mode", "0o644"],
                "error: invalid socket-mode '0o644'",
            ),
            (
                &["--socket-path", "x", "--socket-mode", "+644"],
                "error: invalid socket-mode '+644'",
            ),
            (
                &["--socket-path", "x", "--socket-mode", "644 "],
                "error: invalid socket-mode '644 '",
            ),
            (
                &["--socket-path", "x", "--socket-mode", "8"],
                "error: invalid socket-mode '8'",
            ),
            (
                &[
                    "--socket-path",
                    "x",
                    "--socket-mode",
                    "2000000000000000000000",
                ],
                "error: invalid socket-mode '2000000000000000000000'",
            ),
            (
                &["--stats-tag", "foo"],
                "error: misformatted stats-tag 'foo'",
            ),
            (
                &["--stats-tag", "f.o:bar"],
                "error: misformatted stats-tag 'f.o:bar' contains invalid char in 'f.o'",
            ),
            (
                &["--stats-tag", "f_o:bar"],
                "error: misformatted stats-tag 'f_o:bar' contains invalid char in 'f_o'",
            ),
            (
                &["--stats-tag", "foo:b.r"],
                "error: misformatted stats-tag 'foo:b.r' contains invalid char in 'b.r'",
            ),
            (
                &["--stats-tag", "foo:"],
                "error: misformatted stats-tag 'foo:' contains invalid char in ''",
            ),
        ];
        for (list, want) in cases {
            assert_eq!(semantic(list), format!("{want}\n"), "{list:?}");
        }
    }

    #[test]
    fn semantic_error_order_matches_envoy() {
        // Pairs of errors: the first checked wins (order measured against envoy 1.40):
        // log level, fine-grain conflict, component levels, mode, IP version, dynamic base
        // id, socket mode, drain strategy, hot restart version, stats tags.
        let chain: &[&[&str]] = &[
            &["-l", "chatty"],
            &[
                "--enable-fine-grain-logging",
                "--component-log-level",
                "upstream:debug",
            ],
            &["--mode", "bogus"],
            &["--local-address-ip-version", "v5"],
            &["--use-dynamic-base-id", "--restart-epoch", "2"],
            &["--socket-mode", "999", "--socket-path", "/tmp/x"],
            &["--drain-strategy", "bogus"],
            &["--stats-tag", "foo"],
        ];
        for (i, first) in chain.iter().enumerate() {
            for later in &chain[i + 1..] {
                // The later error's flags come first on the command line: order of checks,
                // not of arguments, decides.
                let mut both: Vec<&str> = later.to_vec();
                both.extend_from_slice(first);
                assert_eq!(semantic(&both), semantic(first), "{both:?}");
            }
        }
        assert_eq!(
            semantic(&["--component-log-level", "foo:debug", "--mode", "bogus"]),
            "error: invalid component specified 'foo'\n"
        );
    }

    #[test]
    fn defaults_match_envoy() {
        let o = ok(&[]);
        assert_eq!(o.argv0, "rvoy");
        assert_eq!(o.mode, Mode::Serve);
        assert_eq!(o.log_level, Level::Info);
        assert_eq!(o.log_format, rvoy_log::DEFAULT_LOG_FORMAT);
        assert!(!o.log_format_set);
        assert_eq!(o.concurrency, default_concurrency());
        assert_eq!(o.drain_time, Duration::from_secs(600));
        assert_eq!(o.parent_shutdown_time, Duration::from_secs(900));
        assert_eq!(o.file_flush_interval, Duration::from_millis(10_000));
        assert_eq!(o.drain_strategy, DrainStrategy::Gradual);
        assert_eq!(o.local_address_ip_version, IpVersion::V4);
        assert_eq!(o.socket_path, "@envoy_domain_socket");
        assert_eq!(o.socket_mode, 0);
        assert_eq!((o.base_id, o.restart_epoch), (0, 0));
        assert!(o.component_log_levels.is_empty() && o.stats_tags.is_empty());
        assert!(o.disabled_extensions.is_empty() && o.warnings.is_empty());
        assert!(!o.disable_hot_restart && !o.cpuset_threads && !o.allow_unknown_static_fields);
        assert_eq!(o.config_path, "");
        assert_eq!(o.log_path, "");
        assert_eq!(o.log_config().path, None);
    }

    #[test]
    fn every_flag_in_both_spellings() {
        let full: &[&str] = &[
            "--stats-tag",
            "a:b",
            "--stats-tag",
            "c:d:e",
            "--enable-core-dump",
            "--socket-mode",
            "0644",
            "--socket-path",
            "/tmp/sock",
            "--disable-extensions",
            "x/y,z",
            "--cpuset-threads",
            "--enable-mutex-tracing",
            "--disable-hot-restart",
            "--mode",
            "validate",
            "--parent-shutdown-time-s",
            "9",
            "--drain-strategy",
            "immediate",
            "--drain-time-s",
            "5",
            "--file-flush-min-size-kb",
            "12",
            "--file-flush-interval-msec",
            "1500",
            "--service-zone",
            "z",
            "--service-node",
            "n",
            "--service-cluster",
            "c",
            "--restart-epoch",
            "3",
            "--log-path",
            "/tmp/rvoy.log",
            "--log-format-escaped",
            "--log-format",
            "[%v]",
            "--component-log-level",
            "upstream:debug,http:warn",
            "-l",
            "warn",
            "--local-address-ip-version",
            "v6",
            "--admin-address-path",
            "/tmp/admin",
            "--log-stacktrace-single-entry",
            "--skip-deprecated-logs",
            "--ignore-unknown-dynamic-fields",
            "--reject-unknown-dynamic-fields",
            "--allow-unknown-static-fields",
            "--allow-unknown-fields",
            "--config-yaml",
            "{}",
            "-c",
            "envoy.yaml",
            "--concurrency",
            "0",
            "--base-id-path",
            "/tmp/base",
            "--skip-hot-restart-parent-stats",
            "--skip-hot-restart-on-no-parent",
            "--base-id",
            "7",
        ];
        // TCLAP's other spelling of a value flag: flag and value in one argument
        // separated by a space ("--mode validate"); short/long forms are interchangeable.
        let mut joined: Vec<String> = Vec::new();
        let mut it = full.iter();
        while let Some(a) = it.next() {
            let takes_value = SPECS.iter().any(|s| s.matches(a) && s.kind != Kind::Switch);
            match (takes_value, it.clone().next()) {
                (true, Some(v)) => {
                    let long = match *a {
                        "-l" => "--log-level",
                        "-c" => "--config-path",
                        other => other,
                    };
                    joined.push(format!("{long} {v}"));
                    it.next();
                }
                _ => joined.push((*a).to_owned()),
            }
        }
        let joined: Vec<&str> = joined.iter().map(String::as_str).collect();
        for list in [full, &joined[..]] {
            let o = ok(list);
            assert_eq!(
                o.stats_tags,
                vec![("a".into(), "b".into()), ("c".into(), "d:e".into())]
            );
            assert!(o.enable_core_dump);
            assert_eq!(o.socket_mode, 0o644);
            assert_eq!(o.socket_path, "/tmp/sock");
            assert_eq!(
                o.disabled_extensions,
                vec!["x/y".to_owned(), "z".to_owned()]
            );
            assert!(o.cpuset_threads && o.enable_mutex_tracing && o.disable_hot_restart);
            assert_eq!(o.mode, Mode::Validate);
            assert_eq!(o.parent_shutdown_time, Duration::from_secs(9));
            assert_eq!(o.drain_strategy, DrainStrategy::Immediate);
            assert_eq!(o.drain_time, Duration::from_secs(5));
            assert_eq!(o.file_flush_min_size_kb, 12);
            assert_eq!(o.file_flush_interval, Duration::from_millis(1500));
            assert_eq!(
                (
                    o.service_zone.as_str(),
                    o.service_node.as_str(),
                    o.service_cluster.as_str()
                ),
                ("z", "n", "c")
            );
            assert_eq!(o.restart_epoch, 3);
            assert_eq!(o.log_path, "/tmp/rvoy.log");
            assert!(o.log_format_escaped && o.log_format_set);
            assert_eq!(o.log_format, "[%v]");
            assert_eq!(o.component_log_level, "upstream:debug,http:warn");
            assert_eq!(
                o.component_log_levels,
                vec![
                    (Component::Upstream, Level::Debug),
                    (Component::Http, Level::Warning)
                ]
            );
            assert_eq!(o.log_level, Level::Warning);
            assert_eq!(o.local_address_ip_version, IpVersion::V6);
            assert_eq!(o.admin_address_path, "/tmp/admin");
            assert!(o.log_stacktrace_single_entry && o.skip_deprecated_logs);
            assert!(o.ignore_unknown_dynamic_fields && o.reject_unknown_dynamic_fields);
            assert!(o.allow_unknown_static_fields && o.allow_unknown_fields);
            assert_eq!(o.config_yaml, "{}");
            assert_eq!(o.config_path, "envoy.yaml");
            assert_eq!(o.concurrency, 1, "--concurrency 0 means 1");
            assert_eq!(o.base_id_path, "/tmp/base");
            assert!(o.skip_hot_restart_parent_stats && o.skip_hot_restart_on_no_parent);
            assert_eq!(o.base_id, 7);
            assert!(!o.use_dynamic_base_id);
            assert_eq!(
                o.warnings,
                vec![
                    (Component::Config, "Both --concurrency and --cpuset-threads options are set; not applying --cpuset-threads.".to_owned()),
                    (Component::Config, "--allow-unknown-fields is deprecated, use --allow-unknown-static-fields instead.".to_owned()),
                ]
            );
            let log = o.log_config();
            assert_eq!(log.level, Level::Warning);
            assert_eq!(log.path, Some("/tmp/rvoy.log".into()));
            assert!(log.escaped);
            assert_eq!(log.format, "[%v]");
        }
        let o = ok(&[
            "--use-dynamic-base-id",
            "--mode",
            "init_only",
            "--cpuset-threads",
            "--config-path",
            "x.yaml",
            "--log-level",
            "off",
        ]);
        assert!(o.use_dynamic_base_id);
        assert_eq!(o.mode, Mode::InitOnly);
        assert_eq!(o.config_path, "x.yaml");
        assert_eq!(o.log_level, Level::Off);
        assert_eq!(
            o.warnings,
            vec![(
                Component::Config,
                "--cpuset-threads is now the default behavior and no longer required.".to_owned()
            )]
        );
    }

    #[test]
    fn tclap_quirks() {
        // Values may start with a dash; '--' ends option processing; empty and dash-only
        // arguments are ignored; an empty numeric value keeps the default.
        assert_eq!(ok(&["--log-format", "- %v"]).log_format, "- %v");
        assert_eq!(ok(&["-c", "--mode"]).config_path, "--mode");
        assert_eq!(
            ok(&["--", "--bogus", "foo", "--help", "-l", "bogus"]).log_level,
            Level::Info
        );
        assert_eq!(ok(&["--ignore_rest", "--mode", "x"]).mode, Mode::Serve);
        let o = ok(&["", "-", "-**", "--concurrency", ""]);
        assert_eq!(o.concurrency, default_concurrency());
        assert_eq!(ok(&["--concurrency", " 3"]).concurrency, 3);
        assert_eq!(ok(&["--concurrency", "+5"]).concurrency, 5);
        assert_eq!(ok(&["--concurrency", "010"]).concurrency, 10);
        assert_eq!(ok(&["--base-id", "-1"]).base_id, u32::MAX);
        assert_eq!(ok(&["--base-id", "-4294967295"]).base_id, 1);
        assert_eq!(ok(&["--concurrency", "-0"]).concurrency, 1);
        assert_eq!(
            ok(&["--socket-path", "x", "--socket-mode", " 0644"]).socket_mode,
            0o644
        );
        assert_eq!(
            ok(&[
                "--socket-path",
                "x",
                "--socket-mode",
                "1777777777777777777777"
            ])
            .socket_mode,
            u32::MAX
        );
        assert_eq!(
            ok(&["--socket-mode", "garbage"]).socket_mode,
            0,
            "abstract socket: mode unused"
        );
        assert_eq!(
            ok(&["--stats-tag", ":bar"]).stats_tags,
            vec![(String::new(), "bar".to_owned())]
        );
        assert_eq!(
            ok(&["--enable-fine-grain-logging", "--component-log-level", ""]).component_log_levels,
            vec![]
        );
        assert_eq!(
            ok(&["--restart-epoch", "0", "--use-dynamic-base-id"]).restart_epoch,
            0
        );
        assert_eq!(ok(&["-l", "warning"]).log_level, Level::Warning);
    }

    #[test]
    fn extract_u32_like_libcxx() {
        assert_eq!(extract_u32("0"), Ok(Some(0)));
        assert_eq!(extract_u32("4294967295"), Ok(Some(u32::MAX)));
        assert_eq!(extract_u32(""), Ok(None));
        assert_eq!(extract_u32("-1"), Ok(Some(u32::MAX)));
        assert!(extract_u32("4294967296").is_err());
        assert!(extract_u32("99999999999999999999999").is_err());
        assert!(extract_u32("+-1").is_err());
        assert!(extract_u32("1 ").is_err());
        assert!(extract_u32("1 2").is_err_and(|e| e.starts_with("More than one")));
    }

    #[test]
    fn server_info_view_matches_envoy() {
        // Envoy 1.40's /server_info for the same flags: enable_core_dump stays false and
        // file_flush_min_size stays 0 there, log_level is spdlog's name.
        let o = ok(&[
            "-l",
            "warn",
            "--component-log-level",
            "upstream:debug,http:warn",
            "--base-id",
            "7",
            "--concurrency",
            "0",
            "--file-flush-interval-msec",
            "1500",
            "--file-flush-min-size-kb",
            "12",
            "--drain-time-s",
            "5",
            "--drain-strategy",
            "immediate",
            "--parent-shutdown-time-s",
            "9",
            "--socket-path",
            "/tmp/xx",
            "--socket-mode",
            "0644",
            "--stats-tag",
            "a:b",
            "--stats-tag",
            "c:d:e",
            "--disable-extensions",
            "x/y,z",
            "--log-format-escaped",
            "--enable-core-dump",
            "--local-address-ip-version",
            "v6",
            "--disable-hot-restart",
        ]);
        let c = o.command_line_options();
        assert_eq!(c.base_id, 7);
        assert_eq!(c.concurrency, 1);
        assert_eq!(c.log_level, "warning");
        assert_eq!(c.component_log_level, "upstream:debug,http:warn");
        assert_eq!(
            c.file_flush_interval,
            Some(prost_types::Duration {
                seconds: 1,
                nanos: 500_000_000
            })
        );
        assert_eq!(
            c.drain_time,
            Some(prost_types::Duration {
                seconds: 5,
                nanos: 0
            })
        );
        assert_eq!(
            c.parent_shutdown_time,
            Some(prost_types::Duration {
                seconds: 9,
                nanos: 0
            })
        );
        assert_eq!(c.drain_strategy, clo::DrainStrategy::Immediate as i32);
        assert_eq!(c.local_address_ip_version, clo::IpVersion::V6 as i32);
        assert_eq!(c.mode, clo::Mode::Serve as i32);
        assert_eq!(c.socket_mode, 420);
        assert_eq!(c.socket_path, "/tmp/xx");
        assert_eq!(c.stats_tag, vec!["a:b".to_owned(), "c:d:e".to_owned()]);
        assert_eq!(
            c.disabled_extensions,
            vec!["x/y".to_owned(), "z".to_owned()]
        );
        assert!(c.log_format_escaped && c.disable_hot_restart);
        assert!(!c.enable_core_dump);
        assert_eq!(c.file_flush_min_size, 0);
        assert_eq!(c.log_format, rvoy_log::DEFAULT_LOG_FORMAT);
    }

    #[test]
    fn space_print_wraps_like_tclap() {
        let mut out = Vec::new();
        space_print(&mut out, "short", 5, 0);
        assert_eq!(out, b"     short\n");
        // Breaks at '|' keep the '|' on the next line (Envoy's -l description).
        let mut out = Vec::new();
        space_print(
            &mut out,
            "Log levels: [trace][debug][info][warning|warn][error][critical][off]\nDefault is [info]",
            5,
            0,
        );
        assert_eq!(
            String::from_utf8_lossy(&out),
            "     Log levels: [trace][debug][info][warning\n     |warn][error][critical][off]\n\n     Default is [info]\n"
        );
        // A program name longer than 35 characters caps the continuation indent at 37.
        let long = "/a/very/long/path/to/some/install/dir/bin/rvoy";
        let text = usage(long);
        let second = text.lines().nth(4).unwrap_or_default();
        assert!(
            second.starts_with(&" ".repeat(40)) && !second.starts_with(&" ".repeat(41)),
            "{second:?}"
        );
    }
}
