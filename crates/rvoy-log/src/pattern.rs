//! spdlog-compatible `--log-format` patterns: compiled once into pieces, then rendered per line.
//!
//! Flags follow spdlog as Envoy 1.40 configures it, including Envoy's custom flags
//! `%_` (message, newlines escaped), `%j` (message, JSON-escaped), `%*` (extracted log tags
//! as JSON properties) and `%+` (message without tags, JSON-escaped), plus padding specs
//! (`%8l`, `%-8l`, `%=8l`, `%3!v`). Unknown flags print as themselves (`%w`), a trailing `%`
//! is dropped. `--log-format-escaped` C-escapes the whole line except its newline.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::component::Component;
use crate::level::Level;

/// Envoy's default `--log-format`.
pub const DEFAULT_LOG_FORMAT: &str = "[%Y-%m-%d %T.%e][%t][%l][%n] [%g:%#] %v";

/// Prefix Envoy puts before a tagged log message (`ENVOY_TAGGED_LOG`, `ENVOY_CONN_LOG`...).
pub const TAGS_PREFIX: &str = "[Tags: ";
const TAGS_SUFFIX_FOR_SEARCH: &str = "\"] ";

/// One line to render.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// The logger.
    pub component: Component,
    /// The line's level.
    pub level: Level,
    /// Source file (`%g`, `%s`, `%@`); empty when unknown.
    pub file: &'a str,
    /// Source line (`%#`, `%@`); 0 when unknown (then the source flags print nothing).
    pub line: u32,
    /// Function name (`%!`); may be empty.
    pub func: &'a str,
    /// When the line was logged.
    pub time: SystemTime,
    /// OS thread id (`%t`).
    pub thread_id: u32,
    /// The formatted message (`%v`).
    pub message: &'a str,
}

/// Which clock offset date/time flags use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeZone {
    /// The process's local time zone (spdlog's default, what Envoy uses).
    #[default]
    Local,
    /// A fixed offset east of UTC, in seconds (tests, or forcing UTC with 0).
    Fixed(i32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Left,
    Right,
    Center,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Padding {
    width: usize,
    side: Side,
    truncate: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ElapsedUnit {
    Nanos,
    Micros,
    Millis,
    Seconds,
}

#[derive(Debug)]
enum Flag {
    Message,
    Name,
    Level,
    ShortLevel,
    ThreadId,
    ProcessId,
    WeekdayShort,
    WeekdayFull,
    MonthShort,
    MonthFull,
    DateTime,
    Year2,
    Year4,
    ShortDate,
    Month,
    Day,
    Hour24,
    Hour12,
    Minute,
    Second,
    Millis,
    Micros,
    Nanos,
    Epoch,
    AmPm,
    Time12,
    Time24Short,
    Time24,
    TzOffset,
    SourceLoc,
    ShortFile,
    File,
    Line,
    FuncName,
    Elapsed(ElapsedUnit, AtomicU64),
    /// `%&` (spdlog's mapped diagnostic context): always empty here.
    Mdc,
}

impl Flag {
    fn needs_time(&self) -> bool {
        matches!(
            self,
            Flag::WeekdayShort
                | Flag::WeekdayFull
                | Flag::MonthShort
                | Flag::MonthFull
                | Flag::DateTime
                | Flag::Year2
                | Flag::Year4
                | Flag::ShortDate
                | Flag::Month
                | Flag::Day
                | Flag::Hour24
                | Flag::Hour12
                | Flag::Minute
                | Flag::Second
                | Flag::AmPm
                | Flag::Time12
                | Flag::Time24Short
                | Flag::Time24
                | Flag::TzOffset
        )
    }
}

#[derive(Debug)]
enum Piece {
    Literal(String),
    Flag(Flag, Option<Padding>),
    /// Envoy's custom flags and `%%`: never padded.
    EscapedNewlines,
    JsonMessage,
    ExtractedTags,
    ExtractedMessage,
    Version,
}

/// A compiled `--log-format` pattern.
#[derive(Debug)]
pub struct Pattern {
    source: String,
    pieces: Vec<Piece>,
    needs_time: bool,
}

impl Pattern {
    /// Compiles a pattern the way spdlog does (never fails: unknown flags print as-is).
    pub fn compile(pattern: &str) -> Pattern {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let chars: Vec<char> = pattern.chars().collect();
        let mut i = 0;
        let now = nanos_since_epoch(SystemTime::now());
        while i < chars.len() {
            let c = chars[i];
            if c != '%' {
                literal.push(c);
                i += 1;
                continue;
            }
            if !literal.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut literal)));
            }
            i += 1;
            let padding = parse_padspec(&chars, &mut i);
            let Some(&flag) = chars.get(i) else {
                break;
            };
            i += 1;
            let f = match flag {
                '_' => {
                    pieces.push(Piece::EscapedNewlines);
                    continue;
                }
                'j' => {
                    pieces.push(Piece::JsonMessage);
                    continue;
                }
                '*' => {
                    pieces.push(Piece::ExtractedTags);
                    continue;
                }
                '+' => {
                    pieces.push(Piece::ExtractedMessage);
                    continue;
                }
                'N' => {
                    pieces.push(Piece::Version);
                    continue;
                }
                '%' => {
                    literal.push('%');
                    continue;
                }
                '^' | '$' => continue,
                'v' => Flag::Message,
                'n' => Flag::Name,
                'l' => Flag::Level,
                'L' => Flag::ShortLevel,
                't' => Flag::ThreadId,
                'P' => Flag::ProcessId,
                'a' => Flag::WeekdayShort,
                'A' => Flag::WeekdayFull,
                'b' | 'h' => Flag::MonthShort,
                'B' => Flag::MonthFull,
                'c' => Flag::DateTime,
                'C' => Flag::Year2,
                'Y' => Flag::Year4,
                'D' | 'x' => Flag::ShortDate,
                'm' => Flag::Month,
                'd' => Flag::Day,
                'H' => Flag::Hour24,
                'I' => Flag::Hour12,
                'M' => Flag::Minute,
                'S' => Flag::Second,
                'e' => Flag::Millis,
                'f' => Flag::Micros,
                'F' => Flag::Nanos,
                'E' => Flag::Epoch,
                'p' => Flag::AmPm,
                'r' => Flag::Time12,
                'R' => Flag::Time24Short,
                'T' | 'X' => Flag::Time24,
                'z' => Flag::TzOffset,
                '@' => Flag::SourceLoc,
                's' => Flag::ShortFile,
                'g' => Flag::File,
                '#' => Flag::Line,
                '!' => Flag::FuncName,
                'o' => Flag::Elapsed(ElapsedUnit::Millis, AtomicU64::new(now)),
                'i' => Flag::Elapsed(ElapsedUnit::Micros, AtomicU64::new(now)),
                'u' => Flag::Elapsed(ElapsedUnit::Nanos, AtomicU64::new(now)),
                'O' => Flag::Elapsed(ElapsedUnit::Seconds, AtomicU64::new(now)),
                '&' => Flag::Mdc,
                other => {
                    match padding {
                        Some(p) if p.truncate => {
                            // spdlog: `%N!x` with an unknown `x` is a padded `%!` then `x`.
                            let p = Padding {
                                truncate: false,
                                ..p
                            };
                            pieces.push(Piece::Flag(Flag::FuncName, Some(p)));
                            literal.push(other);
                        }
                        _ => {
                            literal.push('%');
                            literal.push(other);
                        }
                    }
                    continue;
                }
            };
            pieces.push(Piece::Flag(f, padding));
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        let needs_time = pieces
            .iter()
            .any(|p| matches!(p, Piece::Flag(f, _) if f.needs_time()));
        Pattern {
            source: pattern.to_owned(),
            pieces,
            needs_time,
        }
    }

    /// The pattern text this was compiled from.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Appends the rendered line (without a newline) to `out`.
    pub fn render(&self, rec: &Record<'_>, tz: TimeZone, version: &str, out: &mut Vec<u8>) {
        let tm = if self.needs_time {
            Some(broken_down(rec.time, tz))
        } else {
            None
        };
        for piece in &self.pieces {
            match piece {
                Piece::Literal(s) => out.extend_from_slice(s.as_bytes()),
                Piece::EscapedNewlines => {
                    for b in rec.message.bytes() {
                        if b == b'\n' {
                            out.extend_from_slice(b"\\n");
                        } else {
                            out.push(b);
                        }
                    }
                }
                Piece::JsonMessage => json_escape(rec.message, out),
                Piece::ExtractedTags => {
                    if let Some(rest) = rec.message.strip_prefix(TAGS_PREFIX)
                        && let Some(end) = rest.find(TAGS_SUFFIX_FOR_SEARCH)
                    {
                        out.push(b',');
                        out.extend_from_slice(&rest.as_bytes()[..=end]);
                    }
                }
                Piece::ExtractedMessage => {
                    let msg = rec
                        .message
                        .strip_prefix(TAGS_PREFIX)
                        .and_then(|rest| {
                            rest.find(TAGS_SUFFIX_FOR_SEARCH)
                                .map(|end| &rest[end + TAGS_SUFFIX_FOR_SEARCH.len()..])
                        })
                        .unwrap_or(rec.message);
                    json_escape(msg, out);
                }
                Piece::Version => out.extend_from_slice(version.as_bytes()),
                Piece::Flag(flag, padding) => {
                    let start = out.len();
                    render_flag(flag, rec, tm.as_ref(), out);
                    if let Some(p) = padding {
                        apply_padding(out, start, *p);
                    }
                }
            }
        }
    }
}

/// spdlog's `handle_padspec_`: `[-=]?digits!?`; no digits means no padding.
fn parse_padspec(chars: &[char], i: &mut usize) -> Option<Padding> {
    const MAX_WIDTH: usize = 64;
    let side = match chars.get(*i) {
        Some('-') => {
            *i += 1;
            Side::Right
        }
        Some('=') => {
            *i += 1;
            Side::Center
        }
        _ => Side::Left,
    };
    let first = chars.get(*i).and_then(|c| c.to_digit(10))?;
    let mut width = first as usize;
    *i += 1;
    while let Some(d) = chars.get(*i).and_then(|c| c.to_digit(10)) {
        width = width.saturating_mul(10).saturating_add(d as usize);
        *i += 1;
    }
    let truncate = chars.get(*i) == Some(&'!');
    if truncate {
        *i += 1;
    }
    Some(Padding {
        width: width.min(MAX_WIDTH),
        side,
        truncate,
    })
}

/// spdlog's `scoped_padder` applied to the bytes rendered since `start`.
fn apply_padding(out: &mut Vec<u8>, start: usize, p: Padding) {
    let len = out.len() - start;
    if len >= p.width {
        if p.truncate && len > p.width {
            out.truncate(start + p.width);
        }
        return;
    }
    let pad = p.width - len;
    let (left, right) = match p.side {
        Side::Left => (pad, 0),
        Side::Right => (0, pad),
        Side::Center => (pad / 2, pad / 2 + (pad & 1)),
    };
    if left > 0 {
        out.splice(start..start, std::iter::repeat_n(b' ', left));
    }
    out.extend(std::iter::repeat_n(b' ', right));
}

/// A broken-down local time (`std::tm` plus fractions and offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tm {
    year: i32,
    month: u32,   // 1-12
    day: u32,     // 1-31
    hour: u32,    // 0-23
    minute: u32,  // 0-59
    second: u32,  // 0-60
    weekday: u32, // 0 = Sunday
    offset_secs: i32,
}

fn broken_down(time: SystemTime, tz: TimeZone) -> Tm {
    use chrono::{Datelike, Offset, Timelike};
    let secs = unix_seconds(time);
    thread_local! {
        static CACHE: std::cell::Cell<Option<(i64, TimeZone, Tm)>> =
            const { std::cell::Cell::new(None) };
    }
    if let Some((s, z, tm)) = CACHE.with(|c| c.get())
        && s == secs
        && z == tz
    {
        return tm;
    }
    let utc = chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default();
    let (naive, offset_secs) = match tz {
        TimeZone::Local => {
            let local = utc.with_timezone(&chrono::Local);
            (local.naive_local(), local.offset().fix().local_minus_utc())
        }
        TimeZone::Fixed(off) => {
            let fixed = chrono::FixedOffset::east_opt(off).unwrap_or_else(|| chrono::Utc.fix());
            let dt = utc.with_timezone(&fixed);
            (dt.naive_local(), fixed.local_minus_utc())
        }
    };
    let tm = Tm {
        year: naive.year(),
        month: naive.month(),
        day: naive.day(),
        hour: naive.hour(),
        minute: naive.minute(),
        second: naive.second(),
        weekday: naive.weekday().num_days_from_sunday(),
        offset_secs,
    };
    CACHE.with(|c| c.set(Some((secs, tz, tm))));
    tm
}

fn unix_seconds(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            let d = e.duration();
            let s = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            if d.subsec_nanos() > 0 { -s - 1 } else { -s }
        }
    }
}

fn subsec_nanos(time: SystemTime) -> u32 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => d.subsec_nanos(),
        Err(e) => {
            let n = e.duration().subsec_nanos();
            if n == 0 { 0 } else { 1_000_000_000 - n }
        }
    }
}

fn nanos_since_epoch(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const FULL_DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const FULL_MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

fn push_int(out: &mut Vec<u8>, v: impl std::fmt::Display) {
    use std::io::Write;
    let _ = write!(out, "{v}");
}

fn pad2(out: &mut Vec<u8>, v: u32) {
    use std::io::Write;
    let _ = write!(out, "{v:02}");
}

fn to12h(hour: u32) -> u32 {
    if hour > 12 { hour - 12 } else { hour }
}

fn ampm(hour: u32) -> &'static str {
    if hour >= 12 { "PM" } else { "AM" }
}

fn render_flag(flag: &Flag, rec: &Record<'_>, tm: Option<&Tm>, out: &mut Vec<u8>) {
    use std::io::Write;
    let has_source = rec.line != 0;
    let month_idx = |tm: &Tm| (tm.month.clamp(1, 12) - 1) as usize;
    let day_idx = |tm: &Tm| (tm.weekday % 7) as usize;
    match flag {
        Flag::Message => out.extend_from_slice(rec.message.as_bytes()),
        Flag::Name => out.extend_from_slice(rec.component.name().as_bytes()),
        Flag::Level => out.extend_from_slice(rec.level.as_str().as_bytes()),
        Flag::ShortLevel => out.extend_from_slice(rec.level.short_str().as_bytes()),
        Flag::ThreadId => push_int(out, rec.thread_id),
        Flag::ProcessId => push_int(out, std::process::id()),
        Flag::Millis => {
            let _ = write!(out, "{:03}", subsec_nanos(rec.time) / 1_000_000);
        }
        Flag::Micros => {
            let _ = write!(out, "{:06}", subsec_nanos(rec.time) / 1_000);
        }
        Flag::Nanos => {
            let _ = write!(out, "{:09}", subsec_nanos(rec.time));
        }
        Flag::Epoch => push_int(out, unix_seconds(rec.time)),
        Flag::SourceLoc => {
            if has_source {
                out.extend_from_slice(rec.file.as_bytes());
                out.push(b':');
                push_int(out, rec.line);
            }
        }
        Flag::ShortFile => {
            if has_source {
                let base = rec.file.rsplit('/').next().unwrap_or(rec.file);
                out.extend_from_slice(base.as_bytes());
            }
        }
        Flag::File => {
            if has_source {
                out.extend_from_slice(rec.file.as_bytes());
            }
        }
        Flag::Line => {
            if has_source {
                push_int(out, rec.line);
            }
        }
        Flag::FuncName => {
            if has_source {
                out.extend_from_slice(rec.func.as_bytes());
            }
        }
        Flag::Elapsed(unit, last) => {
            let now = nanos_since_epoch(rec.time);
            let prev = last.swap(now, Ordering::Relaxed);
            let delta = now.saturating_sub(prev);
            let v = match unit {
                ElapsedUnit::Nanos => delta,
                ElapsedUnit::Micros => delta / 1_000,
                ElapsedUnit::Millis => delta / 1_000_000,
                ElapsedUnit::Seconds => delta / 1_000_000_000,
            };
            push_int(out, v);
        }
        Flag::Mdc => {}
        time_flag => {
            let Some(tm) = tm else { return };
            match time_flag {
                Flag::WeekdayShort => out.extend_from_slice(DAYS[day_idx(tm)].as_bytes()),
                Flag::WeekdayFull => out.extend_from_slice(FULL_DAYS[day_idx(tm)].as_bytes()),
                Flag::MonthShort => out.extend_from_slice(MONTHS[month_idx(tm)].as_bytes()),
                Flag::MonthFull => out.extend_from_slice(FULL_MONTHS[month_idx(tm)].as_bytes()),
                Flag::DateTime => {
                    let _ = write!(
                        out,
                        "{} {} {} {:02}:{:02}:{:02} {}",
                        DAYS[day_idx(tm)],
                        MONTHS[month_idx(tm)],
                        tm.day,
                        tm.hour,
                        tm.minute,
                        tm.second,
                        tm.year
                    );
                }
                Flag::Year2 => pad2(out, tm.year.rem_euclid(100).unsigned_abs()),
                Flag::Year4 => push_int(out, tm.year),
                Flag::ShortDate => {
                    let _ = write!(
                        out,
                        "{:02}/{:02}/{:02}",
                        tm.month,
                        tm.day,
                        tm.year.rem_euclid(100)
                    );
                }
                Flag::Month => pad2(out, tm.month),
                Flag::Day => pad2(out, tm.day),
                Flag::Hour24 => pad2(out, tm.hour),
                Flag::Hour12 => pad2(out, to12h(tm.hour)),
                Flag::Minute => pad2(out, tm.minute),
                Flag::Second => pad2(out, tm.second),
                Flag::AmPm => out.extend_from_slice(ampm(tm.hour).as_bytes()),
                Flag::Time12 => {
                    let _ = write!(
                        out,
                        "{:02}:{:02}:{:02} {}",
                        to12h(tm.hour),
                        tm.minute,
                        tm.second,
                        ampm(tm.hour)
                    );
                }
                Flag::Time24Short => {
                    let _ = write!(out, "{:02}:{:02}", tm.hour, tm.minute);
                }
                Flag::Time24 => {
                    let _ = write!(out, "{:02}:{:02}:{:02}", tm.hour, tm.minute, tm.second);
                }
                Flag::TzOffset => {
                    let minutes = tm.offset_secs / 60;
                    let sign = if minutes < 0 { '-' } else { '+' };
                    let m = minutes.unsigned_abs();
                    let _ = write!(out, "{sign}{:02}:{:02}", m / 60, m % 60);
                }
                _ => {}
            }
        }
    }
}

/// Envoy's `JsonEscaper::escapeString` (nlohmann's): `"` `\` `\b` `\f` `\n` `\r` `\t`
/// get two-character escapes, other bytes <= 0x1f become `\u00xx`, the rest pass through.
pub fn json_escape(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            _ => out.push(b),
        }
    }
}

/// `absl::CEscape`: `\n` `\r` `\t` `"` `'` `\` get backslash escapes, every other byte
/// outside printable ASCII becomes a three-digit octal escape (so UTF-8 is escaped too).
pub fn c_escape(input: &[u8], out: &mut Vec<u8>) {
    for &b in input {
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\'' => out.extend_from_slice(b"\\'"),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x20..=0x7e => out.push(b),
            _ => {
                out.push(b'\\');
                out.push(b'0' + (b >> 6));
                out.push(b'0' + ((b >> 3) & 7));
                out.push(b'0' + (b & 7));
            }
        }
    }
}

/// Serializes log tags the way Envoy prefixes tagged messages:
/// `[Tags: "key1":"val1","key2":"val2"] ` (keys in the given order; empty for no tags).
pub fn serialize_tags(tags: &[(&str, &str)]) -> String {
    if tags.is_empty() {
        return String::new();
    }
    let mut s = String::from(TAGS_PREFIX);
    for (i, (k, v)) in tags.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push('"');
        s.push_str(k);
        s.push_str("\":\"");
        s.push_str(v);
        s.push('"');
    }
    s.push_str("] ");
    s
}

/// A pattern plus the settings that shape a whole line: the thing `--log-format` and
/// `--log-format-escaped` configure.
#[derive(Debug)]
pub struct LineFormatter {
    pattern: Pattern,
    escaped: bool,
    tz: TimeZone,
    version: String,
}

impl LineFormatter {
    /// A formatter for `pattern`; `escaped` is `--log-format-escaped`.
    pub fn new(pattern: &str, escaped: bool) -> LineFormatter {
        LineFormatter {
            pattern: Pattern::compile(pattern),
            escaped,
            tz: TimeZone::Local,
            version: String::new(),
        }
    }

    /// Uses `tz` for date/time flags instead of the local time zone.
    pub fn with_time_zone(mut self, tz: TimeZone) -> LineFormatter {
        self.tz = tz;
        self
    }

    /// The build version printed by `%N`.
    pub fn with_version(mut self, version: impl Into<String>) -> LineFormatter {
        self.version = version.into();
        self
    }

    /// The compiled pattern.
    pub fn pattern(&self) -> &Pattern {
        &self.pattern
    }

    /// Appends the full line, newline included, to `out`; `scratch` is reused working space.
    pub fn format(&self, rec: &Record<'_>, out: &mut Vec<u8>, scratch: &mut Vec<u8>) {
        if self.escaped {
            scratch.clear();
            self.pattern.render(rec, self.tz, &self.version, scratch);
            c_escape(scratch, out);
        } else {
            self.pattern.render(rec, self.tz, &self.version, out);
        }
        out.push(b'\n');
    }

    /// Formats one line into a new `String` (lossy for invalid UTF-8; tests and tools).
    pub fn format_to_string(&self, rec: &Record<'_>) -> String {
        let mut out = Vec::new();
        let mut scratch = Vec::new();
        self.format(rec, &mut out, &mut scratch);
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    // 2026-11-25 19:24:34.721788 UTC, a Wednesday.
    fn t0() -> SystemTime {
        UNIX_EPOCH + Duration::new(1_795_634_674, 721_788_123)
    }

    fn rec(msg: &str) -> Record<'_> {
        Record {
            component: Component::Main,
            level: Level::Info,
            file: "source/server/server.cc",
            line: 463,
            func: "initializeOrThrow",
            time: t0(),
            thread_id: 17950,
            message: msg,
        }
    }

    fn fmt_tz(pattern: &str, r: &Record<'_>, tz: TimeZone) -> String {
        LineFormatter::new(pattern, false)
            .with_time_zone(tz)
            .with_version("v/1")
            .format_to_string(r)
    }

    fn fmt(pattern: &str, r: &Record<'_>) -> String {
        fmt_tz(pattern, r, TimeZone::Fixed(0))
    }

    #[test]
    fn default_format_matches_envoy_shape() {
        assert_eq!(
            fmt(DEFAULT_LOG_FORMAT, &rec("initializing epoch 0")),
            "[2026-11-25 19:24:34.721][17950][info][main] [source/server/server.cc:463] \
             initializing epoch 0\n"
        );
    }

    #[test]
    fn every_flag() {
        let r = rec("hello");
        let cases: &[(&str, &str)] = &[
            ("%v", "hello"),
            ("%n", "main"),
            ("%t", "17950"),
            ("%l", "info"),
            ("%L", "I"),
            ("%a", "Wed"),
            ("%A", "Wednesday"),
            ("%b", "Nov"),
            ("%h", "Nov"),
            ("%B", "November"),
            ("%c", "Wed Nov 25 19:24:34 2026"),
            ("%C", "26"),
            ("%Y", "2026"),
            ("%D", "11/25/26"),
            ("%x", "11/25/26"),
            ("%m", "11"),
            ("%d", "25"),
            ("%H", "19"),
            ("%I", "07"),
            ("%M", "24"),
            ("%S", "34"),
            ("%e", "721"),
            ("%f", "721788"),
            ("%F", "721788123"),
            ("%p", "PM"),
            ("%z", "+00:00"),
            ("%%", "%"),
            ("%@", "source/server/server.cc:463"),
            ("%s", "server.cc"),
            ("%g", "source/server/server.cc"),
            ("%#", "463"),
            ("%!", "initializeOrThrow"),
            ("%T", "19:24:34"),
            ("%X", "19:24:34"),
            ("%R", "19:24"),
            ("%r", "07:24:34 PM"),
            ("%E", "1795634674"),
            ("%_", "hello"),
            ("%j", "hello"),
            ("%+", "hello"),
            ("%*", ""),
            ("%^", ""),
            ("%$", ""),
            ("%&", ""),
            ("%N", "v/1"),
            // Unknown flags print as-is, like Envoy's spdlog (checked against envoy 1.40).
            ("%y", "%y"),
            ("%w", "%w"),
            ("%q", "%q"),
            ("% ", "% "),
            ("%0>", "%>"),
            ("<%v>%", "<hello>"),
            ("%-v", "hello"),
        ];
        for (pattern, want) in cases {
            assert_eq!(fmt(pattern, &r), format!("{want}\n"), "pattern {pattern:?}");
        }
        assert_eq!(fmt("%P", &r), format!("{}\n", std::process::id()));
    }

    #[test]
    fn padding_like_spdlog() {
        let r = rec("initializing");
        assert_eq!(fmt("<%8l>", &r), "<    info>\n");
        assert_eq!(fmt("<%-8l>", &r), "<info    >\n");
        assert_eq!(fmt("<%=9l>", &r), "<  info   >\n");
        assert_eq!(fmt("<%3!v>", &r), "<ini>\n");
        assert_eq!(fmt("<%3v>", &r), "<initializing>\n");
        assert_eq!(fmt("<%20v>", &r), "<        initializing>\n");
        // spdlog: an unknown flag after a truncating spec is a padded `%!` then the char.
        let mut short_fn = rec("x");
        short_fn.func = "main";
        assert_eq!(fmt("<%-5!w>", &short_fn), "<main w>\n");
        assert_eq!(fmt("<%99n>", &r).len(), "<>\n".len() + 64);
        // No source: the source flags only pad.
        let mut nosrc = rec("x");
        nosrc.line = 0;
        assert_eq!(fmt("<%@|%s|%g|%#|%!|%4#>", &nosrc), "<|||||    >\n");
    }

    #[test]
    fn twelve_hour_clock_and_offsets() {
        let mut r = rec("x");
        // 00:05:00 UTC
        r.time = UNIX_EPOCH + Duration::from_secs(1_795_564_800 + 300);
        assert_eq!(fmt("%I %p %r", &r), "00 AM 00:05:00 AM\n");
        r.time = UNIX_EPOCH + Duration::from_secs(1_795_564_800 + 12 * 3600);
        assert_eq!(fmt("%I %p", &r), "12 PM\n");
        r.time = t0();
        assert_eq!(
            fmt_tz("%H:%M %z", &r, TimeZone::Fixed(5 * 3600 + 1800)),
            "00:54 +05:30\n"
        );
        assert_eq!(
            fmt_tz("%d %H %z %a", &r, TimeZone::Fixed(-8 * 3600)),
            "25 11 -08:00 Wed\n"
        );
        // Single-digit day in %c is not zero padded.
        r.time = UNIX_EPOCH + Duration::from_secs(1_793_836_800); // 2026-11-05
        assert_eq!(fmt("%c|%d", &r), "Thu Nov 5 00:00:00 2026|05\n");
    }

    #[test]
    fn envoy_custom_message_flags() {
        let r = rec("a\"b\\c\nd\te\u{1}f é");
        assert_eq!(fmt("%_", &r), "a\"b\\c\\nd\te\u{1}f é\n");
        assert_eq!(fmt("%j", &r), "a\\\"b\\\\c\\nd\\te\\u0001f é\n");
        let tagged = format!(
            "{}new connection \"x\"",
            serialize_tags(&[("ConnectionId", "7"), ("StreamId", "9")])
        );
        assert_eq!(
            tagged,
            "[Tags: \"ConnectionId\":\"7\",\"StreamId\":\"9\"] new connection \"x\""
        );
        let r = rec(&tagged);
        assert_eq!(
            fmt("{%*}", &r),
            "{,\"ConnectionId\":\"7\",\"StreamId\":\"9\"}\n"
        );
        assert_eq!(fmt("%+", &r), "new connection \\\"x\\\"\n");
        assert_eq!(serialize_tags(&[]), "");
    }

    #[test]
    fn escaped_lines_match_envoy() {
        // Envoy 1.40 with --log-format-escaped --log-format $'%n"\'\\\t\x01\x7fé\r\n|'
        // printed: main\"\'\\\t\001\177\303\251\r\n|
        let f = LineFormatter::new("%n\"'\\\t\u{1}\u{7f}é\r\n|", true)
            .with_time_zone(TimeZone::Fixed(0));
        assert_eq!(
            f.format_to_string(&rec("m")),
            "main\\\"\\'\\\\\\t\\001\\177\\303\\251\\r\\n|\n"
        );
        let f = LineFormatter::new("[%v]", true);
        assert_eq!(f.format_to_string(&rec("a\nb")), "[a\\nb]\n");
    }

    #[test]
    fn elapsed_flags() {
        let f = LineFormatter::new("%o %i %u %O", false);
        let mut r = rec("x");
        r.time = SystemTime::now();
        let _ = f.format_to_string(&r);
        r.time += Duration::from_micros(2_500);
        assert_eq!(f.format_to_string(&r), "2 2500 2500000 0\n");
        // Time going backwards clamps to zero.
        r.time -= Duration::from_secs(1);
        assert_eq!(f.format_to_string(&r), "0 0 0 0\n");
    }
}
