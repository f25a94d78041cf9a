//! The process-global logger: configuration ([`init`]), the write path the macros call,
//! output switching (`reopen`, `flush`, capture), thread ids and per-thread buffers.

use std::cell::{Cell, RefCell};
use std::fmt::{self, Write as _};
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use crate::component::{self, Component};
use crate::level::Level;
use crate::pattern::{DEFAULT_LOG_FORMAT, LineFormatter, Record};
use crate::sink::{CapturedOutput, LogError, Output, open_append};

/// Everything the command line says about application logging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `-l/--log-level`: the level of every component...
    pub level: Level,
    /// ...then `--component-log-level` overrides, applied in order.
    pub component_levels: Vec<(Component, Level)>,
    /// `--log-format` (spdlog syntax).
    pub format: String,
    /// `--log-format-escaped`.
    pub escaped: bool,
    /// `--log-path`: append to this file instead of writing to stderr.
    pub path: Option<PathBuf>,
    /// What `%N` prints (the build version).
    pub version: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: Level::Info,
            component_levels: Vec::new(),
            format: DEFAULT_LOG_FORMAT.to_owned(),
            escaped: false,
            path: None,
            version: String::new(),
        }
    }
}

struct Global {
    formatter: RwLock<Arc<LineFormatter>>,
    output: Mutex<Output>,
}

static GLOBAL: LazyLock<Global> = LazyLock::new(|| Global {
    formatter: RwLock::new(Arc::new(LineFormatter::new(DEFAULT_LOG_FORMAT, false))),
    output: Mutex::new(Output::Stderr),
});

/// Applies `config`: levels, format, and output. On error (the log file cannot be opened)
/// nothing changes.
pub fn init(config: LogConfig) -> Result<(), LogError> {
    let output = match &config.path {
        Some(path) => Output::File {
            file: open_append(path)?,
            path: path.clone(),
        },
        None => Output::Stderr,
    };
    let mut levels: Vec<(Component, Level)> =
        Component::ALL.iter().map(|&c| (c, config.level)).collect();
    levels.extend(config.component_levels.iter().copied());
    component::set_levels(&levels);
    set_formatter(LineFormatter::new(&config.format, config.escaped).with_version(config.version));
    replace_output(output);
    Ok(())
}

/// Replaces the line formatter (pattern, escaping, time zone, version).
pub fn set_formatter(formatter: LineFormatter) {
    *GLOBAL
        .formatter
        .write()
        .unwrap_or_else(PoisonError::into_inner) = Arc::new(formatter);
}

fn replace_output(new: Output) {
    let mut out = GLOBAL.output.lock().unwrap_or_else(PoisonError::into_inner);
    out.flush();
    *out = new;
}

/// Sends log lines to an in-memory buffer from now on (until [`init`] is called again).
pub fn capture_output() -> CapturedOutput {
    let buf = Arc::new(Mutex::new(Vec::new()));
    replace_output(Output::Memory(buf.clone()));
    CapturedOutput { buf }
}

/// Flushes the current output (call before exiting).
pub fn flush() {
    GLOBAL
        .output
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .flush();
}

/// Reopens the `--log-path` file (after log rotation, e.g. on SIGUSR1). No-op for stderr.
pub fn reopen() -> Result<(), LogError> {
    GLOBAL
        .output
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .reopen()
}

/// The calling OS thread's id (`gettid`), what `%t` prints. Cached per thread.
pub fn thread_id() -> u32 {
    thread_local! {
        static TID: Cell<u32> = const { Cell::new(0) };
    }
    let fetch = || {
        rustix::thread::gettid()
            .as_raw_nonzero()
            .get()
            .unsigned_abs()
    };
    TID.try_with(|t| {
        let v = t.get();
        if v != 0 {
            return v;
        }
        let v = fetch();
        t.set(v);
        v
    })
    .unwrap_or_else(|_| fetch())
}

/// Where a log macro was invoked.
#[derive(Debug, Clone, Copy)]
pub struct Location {
    /// `file!()`
    pub file: &'static str,
    /// `line!()`
    pub line: u32,
    /// The enclosing function's name.
    pub func: &'static str,
}

#[derive(Default)]
struct Buffers {
    message: String,
    line: Vec<u8>,
    scratch: Vec<u8>,
}

impl Buffers {
    fn trim(&mut self) {
        const KEEP: usize = 64 * 1024;
        if self.message.capacity() > KEEP {
            self.message = String::new();
        }
        if self.line.capacity() > KEEP {
            self.line = Vec::new();
        }
        if self.scratch.capacity() > KEEP {
            self.scratch = Vec::new();
        }
    }
}

thread_local! {
    static BUFFERS: RefCell<Buffers> = RefCell::new(Buffers::default());
}

/// Runs `f` with this thread's buffers, or fresh ones if they are in use (a `Display` impl
/// that logs) or gone (thread teardown).
fn with_buffers(f: impl FnOnce(&mut Buffers)) {
    let mut f = Some(f);
    let _ = BUFFERS.try_with(|b| {
        if let Ok(mut b) = b.try_borrow_mut() {
            if let Some(f) = f.take() {
                f(&mut b);
            }
            b.trim();
        }
    });
    if let Some(f) = f {
        f(&mut Buffers::default());
    }
}

/// Formats and writes one line. The macros call this only after [`crate::enabled`].
pub fn log_args(component: Component, level: Level, loc: &Location, args: fmt::Arguments<'_>) {
    with_buffers(|b| {
        b.message.clear();
        match args.as_str() {
            Some(s) => b.message.push_str(s),
            None => {
                let _ = b.message.write_fmt(args);
            }
        }
        let Buffers {
            message,
            line,
            scratch,
        } = b;
        write_record(
            component, level, loc.file, loc.line, loc.func, message, line, scratch,
        );
    });
}

/// Writes one already-formatted message (no level check: callers check [`crate::enabled`]).
/// `file` empty / `line` 0 mean "no source location".
pub fn log_message(
    component: Component,
    level: Level,
    file: &str,
    line: u32,
    func: &str,
    message: &str,
) {
    with_buffers(|b| {
        let Buffers {
            line: out, scratch, ..
        } = b;
        write_record(component, level, file, line, func, message, out, scratch);
    });
}

#[allow(clippy::too_many_arguments)]
fn write_record(
    component: Component,
    level: Level,
    file: &str,
    line: u32,
    func: &str,
    message: &str,
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
) {
    let rec = Record {
        component,
        level,
        file,
        line,
        func,
        time: SystemTime::now(),
        thread_id: thread_id(),
        message,
    };
    let formatter = GLOBAL
        .formatter
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    out.clear();
    formatter.format(&rec, out, scratch);
    GLOBAL
        .output
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .write_line(out);
}

/// The last path segment of a function's type name, closures stripped: what `%!` prints.
#[doc(hidden)]
pub fn function_name(type_name: &'static str) -> &'static str {
    let mut name = type_name
        .strip_suffix("::__rvoy_log_f")
        .unwrap_or(type_name);
    while let Some(outer) = name.strip_suffix("::{{closure}}") {
        name = outer;
    }
    name.rsplit("::").next().unwrap_or(name)
}
