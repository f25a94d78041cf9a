//! Time formatting for `%START_TIME(...)%` and friends: Envoy's
//! `DateFormatter` (its own `%f`, `%Nf` and `%s` specifiers) on top of
//! `absl::FormatTime` (`%E*S`, `%E3f`, `%Ez`, ...) on top of glibc's
//! `strftime` in the C locale, flags and widths included.
//!
//! A pattern is split once at parse time; formatting appends to a buffer and
//! does not allocate.

use std::cell::Cell;
use std::io::Write as _;
use std::time::SystemTime;

use chrono::{Offset as _, TimeZone as _};

/// A parsed time pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TimeFormat {
    segments: Vec<Segment>,
    local: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    /// Envoy's default: `%Y-%m-%dT%H:%M:%E3SZ` (UTC) or `...%E3S%z` (local).
    Default,
    /// Handed to the strftime layer.
    Strftime(String),
    /// `%f` (9 digits) or `%Nf`: leading digits of the nanoseconds.
    Subsecond(usize),
    /// `%s`: seconds since the epoch.
    EpochSeconds,
}

/// Broken-down time.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tm {
    pub year: i64,
    /// 1..=12
    pub month: u32,
    /// 1..=31
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub nanos: u32,
    /// 0 = Sunday.
    pub weekday: u32,
    /// 0-based day of the year.
    pub yday: u32,
    pub epoch_seconds: i64,
    /// Seconds east of UTC.
    pub offset: i32,
    pub utc: bool,
}

impl TimeFormat {
    /// Parses a `START_TIME` sub-command. An empty one is Envoy's default format.
    pub(crate) fn parse(pattern: &str, local: bool) -> TimeFormat {
        if pattern.is_empty() {
            return TimeFormat {
                segments: vec![Segment::Default],
                local,
            };
        }
        // Envoy searches `(%([1-9])?f)|(%s)` left to right without regard to
        // `%%` escapes; the text between matches goes to absl/strftime.
        let bytes = pattern.as_bytes();
        let mut segments = Vec::new();
        let mut lit_start = 0;
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let special = match bytes.get(i + 1) {
                    Some(b'f') => Some((Segment::Subsecond(9), 2)),
                    Some(b's') => Some((Segment::EpochSeconds, 2)),
                    Some(d @ b'1'..=b'9') if bytes.get(i + 2) == Some(&b'f') => {
                        Some((Segment::Subsecond(usize::from(d - b'0')), 3))
                    }
                    _ => None,
                };
                if let Some((seg, len)) = special {
                    if lit_start < i {
                        segments.push(Segment::Strftime(pattern[lit_start..i].to_owned()));
                    }
                    segments.push(seg);
                    i += len;
                    lit_start = i;
                    continue;
                }
            }
            i += 1;
        }
        if lit_start < bytes.len() {
            segments.push(Segment::Strftime(pattern[lit_start..].to_owned()));
        }
        TimeFormat { segments, local }
    }

    /// True when the pattern would print a newline (`%n` with any flags),
    /// which Envoy rejects.
    pub(crate) fn has_newline_specifier(pattern: &str) -> bool {
        // Envoy's regex: %[-_0^#]*[1-9]*(E|O)?n
        let b = pattern.as_bytes();
        for start in 0..b.len() {
            if b[start] != b'%' {
                continue;
            }
            let mut i = start + 1;
            while i < b.len() && b"-_0^#".contains(&b[i]) {
                i += 1;
            }
            while i < b.len() && (b'1'..=b'9').contains(&b[i]) {
                i += 1;
            }
            if i < b.len() && (b[i] == b'E' || b[i] == b'O') {
                i += 1;
            }
            if i < b.len() && b[i] == b'n' {
                return true;
            }
        }
        false
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>, t: SystemTime) {
        let (secs, nanos) = epoch_parts(t);
        // Broken down only when a segment needs it (the default one keeps
        // its own per-second cache).
        let mut tm = None;
        for seg in &self.segments {
            match seg {
                Segment::Default => self.write_default(out, secs, nanos),
                Segment::Strftime(p) => {
                    let tm = tm.get_or_insert_with(|| self.tm(secs, nanos));
                    strftime(out, p.as_bytes(), tm)
                }
                Segment::Subsecond(width) => {
                    out.extend_from_slice(&nine_digits(nanos)[..(*width).min(9)])
                }
                Segment::EpochSeconds => {
                    let _ = write!(out, "{secs}");
                }
            }
        }
    }

    fn tm(&self, secs: i64, nanos: u32) -> Tm {
        let offset = if self.local { local_offset(secs) } else { 0 };
        Tm::from_parts(secs, nanos, offset, !self.local)
    }

    /// `%Y-%m-%dT%H:%M:%E3S` then `Z` (UTC) or `%z` (local). The part up to
    /// the seconds is the same for every line of a second: it is kept per
    /// thread with its offset, and only the milliseconds are written anew.
    fn write_default(&self, out: &mut Vec<u8>, secs: i64, nanos: u32) {
        let cached = DEFAULT_PREFIX
            .with(Cell::get)
            .filter(|c| c.secs == secs && c.local == self.local);
        let offset = match cached {
            Some(c) => {
                out.extend_from_slice(&c.prefix);
                c.offset
            }
            None => {
                let tm = self.tm(secs, nanos);
                let start = out.len();
                if (0..=9999).contains(&tm.year) {
                    push_digits(out, tm.year as u32, 4);
                } else {
                    let _ = write!(out, "{:04}", tm.year);
                }
                out.push(b'-');
                push_digits(out, tm.month, 2);
                out.push(b'-');
                push_digits(out, tm.day, 2);
                out.push(b'T');
                push_digits(out, tm.hour, 2);
                out.push(b':');
                push_digits(out, tm.minute, 2);
                out.push(b':');
                push_digits(out, tm.second, 2);
                if let Ok(prefix) = <[u8; 19]>::try_from(&out[start..]) {
                    DEFAULT_PREFIX.with(|c| {
                        c.set(Some(DefaultPrefix {
                            secs,
                            local: self.local,
                            offset: tm.offset,
                            prefix,
                        }))
                    });
                }
                tm.offset
            }
        };
        out.push(b'.');
        push_digits(out, nanos / 1_000_000, 3);
        if self.local {
            write_offset(out, offset, false, false);
        } else {
            out.push(b'Z');
        }
    }
}

/// The default format's rendering of one second, cached per thread.
#[derive(Clone, Copy)]
struct DefaultPrefix {
    secs: i64,
    local: bool,
    /// Seconds east of UTC (local time).
    offset: i32,
    /// `YYYY-MM-DDTHH:MM:SS`.
    prefix: [u8; 19],
}

thread_local! {
    static DEFAULT_PREFIX: Cell<Option<DefaultPrefix>> = const { Cell::new(None) };
}

/// Seconds since the epoch (floor) and the nanoseconds past them.
fn epoch_parts(t: SystemTime) -> (i64, u32) {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(e) => {
            let d = e.duration();
            let s = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            if d.subsec_nanos() == 0 {
                (-s, 0)
            } else {
                (-s - 1, 1_000_000_000 - d.subsec_nanos())
            }
        }
    }
}

impl Tm {
    pub(crate) fn from_parts(epoch_seconds: i64, nanos: u32, offset: i32, utc: bool) -> Tm {
        let local_secs = epoch_seconds.saturating_add(i64::from(offset));
        let days = local_secs.div_euclid(86_400);
        let sod = local_secs.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        let weekday = (days + 4).rem_euclid(7) as u32;
        let yday = (days - days_from_civil(year, 1, 1)) as u32;
        Tm {
            year,
            month,
            day,
            hour: sod / 3600,
            minute: sod / 60 % 60,
            second: sod % 60,
            nanos,
            weekday,
            yday,
            epoch_seconds,
            offset,
            utc,
        }
    }

    /// Writes the zone abbreviation: `UTC`, or for local time (whose
    /// abbreviation chrono does not expose) `UTC` at offset zero and the
    /// numeric offset elsewhere.
    fn write_zone(&self, out: &mut Vec<u8>) {
        if self.utc || self.offset == 0 {
            out.extend_from_slice(b"UTC");
        } else {
            write_offset(out, self.offset, false, false);
        }
    }
}

fn local_offset(epoch_seconds: i64) -> i32 {
    match chrono::DateTime::from_timestamp(epoch_seconds, 0) {
        Some(utc) => chrono::Local
            .offset_from_utc_datetime(&utc.naive_utc())
            .fix()
            .local_minus_utc(),
        None => 0,
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
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

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

/// ISO 8601 week-based year and week number.
fn iso_week(tm: &Tm) -> (i64, u32) {
    let wday = i64::from((tm.weekday + 6) % 7); // Monday = 0
    let yday = i64::from(tm.yday);
    // Thursday of this week decides the year.
    let thursday = yday - wday + 3;
    let year_len = |y: i64| if is_leap(y) { 366 } else { 365 };
    if thursday < 0 {
        let py = tm.year - 1;
        let t = thursday + year_len(py);
        (py, (t / 7 + 1) as u32)
    } else if thursday >= year_len(tm.year) {
        (tm.year + 1, 1)
    } else {
        (tm.year, (thursday / 7 + 1) as u32)
    }
}

fn write_offset(out: &mut Vec<u8>, offset: i32, colon: bool, seconds: bool) {
    let sign = if offset < 0 { b'-' } else { b'+' };
    let abs = offset.unsigned_abs();
    out.push(sign);
    let (h, m, s) = (abs / 3600, abs / 60 % 60, abs % 60);
    if colon {
        let _ = write!(out, "{h:02}:{m:02}");
        if seconds {
            let _ = write!(out, ":{s:02}");
        }
    } else {
        let _ = write!(out, "{h:02}{m:02}");
    }
}

/// Padding requested by a glibc flag.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pad {
    Default,
    Zero,
    Space,
    None,
}

/// A strftime in the C locale with glibc's flags, widths and `E`/`O`
/// modifiers, plus absl's `%E#S`, `%E*S`, `%E#f`, `%E*f`, `%Ez`, `%E*z`,
/// `%E4Y` and `%:z`. Unknown conversions are copied as written.
pub(crate) fn strftime(out: &mut Vec<u8>, p: &[u8], tm: &Tm) {
    let mut i = 0;
    while i < p.len() {
        if p[i] != b'%' {
            let next = p[i..]
                .iter()
                .position(|&c| c == b'%')
                .map_or(p.len(), |n| i + n);
            out.extend_from_slice(&p[i..next]);
            i = next;
            continue;
        }
        let start = i;
        i += 1;
        if i >= p.len() {
            out.push(b'%');
            break;
        }
        // absl extensions first: they are recognized only right after '%'.
        if let Some(used) = absl_extension(out, &p[i..], tm) {
            i += used;
            continue;
        }
        let mut pad = Pad::Default;
        let mut upper = false;
        let mut swap = false;
        while i < p.len() {
            match p[i] {
                b'_' => pad = Pad::Space,
                b'-' => pad = Pad::None,
                b'0' => pad = Pad::Zero,
                b'^' => upper = true,
                b'#' => swap = true,
                _ => break,
            }
            i += 1;
        }
        let mut width: Option<usize> = None;
        while i < p.len() && p[i].is_ascii_digit() {
            width = Some(
                width
                    .unwrap_or(0)
                    .saturating_mul(10)
                    .saturating_add(usize::from(p[i] - b'0')),
            );
            i += 1;
        }
        let mut modifier = None;
        if i < p.len() && (p[i] == b'E' || p[i] == b'O') {
            modifier = Some(p[i]);
            i += 1;
        }
        if i >= p.len() {
            // An incomplete specifier at the end is copied.
            out.extend_from_slice(&p[start..]);
            break;
        }
        let conv = p[i];
        i += 1;
        let modifier_ok = match modifier {
            None => true,
            Some(b'E') => b"cCxXyY".contains(&conv),
            Some(_) => b"deHImMSuUVwWy".contains(&conv),
        };
        let spec = Spec {
            pad,
            width,
            upper,
            swap,
        };
        if !modifier_ok || !conversion(out, conv, spec, tm) {
            let text = &p[start..i];
            if let Some(w) = width {
                out.extend(std::iter::repeat_n(b' ', w.saturating_sub(text.len())));
            }
            out.extend_from_slice(text);
        }
    }
}

#[derive(Clone, Copy)]
struct Spec {
    pad: Pad,
    width: Option<usize>,
    upper: bool,
    swap: bool,
}

impl Spec {
    fn num(self, out: &mut Vec<u8>, n: i64, natural: usize, default_pad: Pad) {
        let pad = if self.pad == Pad::Default {
            default_pad
        } else {
            self.pad
        };
        let width = match (pad, self.width) {
            (Pad::None, _) => 0,
            (_, Some(w)) => w,
            (_, None) => natural,
        };
        let mut digits = [0u8; 20];
        let mut len = 0;
        let mut v = n.unsigned_abs();
        loop {
            digits[len] = b'0' + (v % 10) as u8;
            len += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        let neg = n < 0;
        let fill = width.saturating_sub(len + usize::from(neg));
        match pad {
            Pad::Space => {
                out.extend(std::iter::repeat_n(b' ', fill));
                if neg {
                    out.push(b'-');
                }
            }
            _ => {
                if neg {
                    out.push(b'-');
                }
                out.extend(std::iter::repeat_n(b'0', fill));
            }
        }
        out.extend(digits[..len].iter().rev());
    }

    fn text(self, out: &mut Vec<u8>, s: &str, swap_to_upper: bool) {
        let width = if self.pad == Pad::None {
            0
        } else {
            self.width.unwrap_or(0)
        };
        let fill = width.saturating_sub(s.len());
        let c = if self.pad == Pad::Zero { b'0' } else { b' ' };
        out.extend(std::iter::repeat_n(c, fill));
        if self.upper || (self.swap && swap_to_upper) {
            out.extend(s.bytes().map(|b| b.to_ascii_uppercase()));
        } else if self.swap {
            out.extend(s.bytes().map(|b| b.to_ascii_lowercase()));
        } else {
            out.extend_from_slice(s.as_bytes());
        }
    }

    /// A composite conversion (`%T`, `%D`, ...): flags apply to the whole.
    fn composite(self, out: &mut Vec<u8>, pattern: &[u8], tm: &Tm) {
        if self.width.is_none() && !self.upper && !self.swap {
            strftime(out, pattern, tm);
            return;
        }
        let mut tmp = Vec::with_capacity(32);
        strftime(&mut tmp, pattern, tm);
        self.text(out, &String::from_utf8_lossy(&tmp), true);
    }
}

/// Writes one glibc conversion; false when it is unknown.
fn conversion(out: &mut Vec<u8>, conv: u8, spec: Spec, tm: &Tm) -> bool {
    let hour12 = |h: u32| if h.is_multiple_of(12) { 12 } else { h % 12 };
    match conv {
        b'a' => spec.text(out, &WEEKDAYS[tm.weekday as usize][..3], true),
        b'A' => spec.text(out, WEEKDAYS[tm.weekday as usize], true),
        b'b' | b'h' => spec.text(out, &MONTHS[(tm.month - 1) as usize][..3], true),
        b'B' => spec.text(out, MONTHS[(tm.month - 1) as usize], true),
        b'c' => spec.composite(out, b"%a %b %e %H:%M:%S %Y", tm),
        b'C' => spec.num(out, tm.year.div_euclid(100), 2, Pad::Zero),
        b'd' => spec.num(out, i64::from(tm.day), 2, Pad::Zero),
        b'D' | b'x' => spec.composite(out, b"%m/%d/%y", tm),
        b'e' => spec.num(out, i64::from(tm.day), 2, Pad::Space),
        b'F' => spec.composite(out, b"%Y-%m-%d", tm),
        b'g' => spec.num(out, iso_week(tm).0.rem_euclid(100), 2, Pad::Zero),
        b'G' => spec.num(out, iso_week(tm).0, 1, Pad::Zero),
        b'H' => spec.num(out, i64::from(tm.hour), 2, Pad::Zero),
        b'I' => spec.num(out, i64::from(hour12(tm.hour)), 2, Pad::Zero),
        b'j' => spec.num(out, i64::from(tm.yday + 1), 3, Pad::Zero),
        b'k' => spec.num(out, i64::from(tm.hour), 2, Pad::Space),
        b'l' => spec.num(out, i64::from(hour12(tm.hour)), 2, Pad::Space),
        b'm' => spec.num(out, i64::from(tm.month), 2, Pad::Zero),
        b'M' => spec.num(out, i64::from(tm.minute), 2, Pad::Zero),
        b'n' => spec.text(out, "\n", false),
        b'p' => {
            let s = if tm.hour < 12 { "AM" } else { "PM" };
            // '#' lower-cases %p.
            spec.text(out, s, false);
        }
        b'P' => spec.text(out, if tm.hour < 12 { "am" } else { "pm" }, false),
        b'r' => spec.composite(out, b"%I:%M:%S %p", tm),
        b'R' => spec.composite(out, b"%H:%M", tm),
        b's' => spec.num(out, tm.epoch_seconds, 1, Pad::Zero),
        b'S' => spec.num(out, i64::from(tm.second), 2, Pad::Zero),
        b't' => spec.text(out, "\t", false),
        b'T' | b'X' => spec.composite(out, b"%H:%M:%S", tm),
        b'u' => spec.num(
            out,
            i64::from(if tm.weekday == 0 { 7 } else { tm.weekday }),
            1,
            Pad::Zero,
        ),
        b'U' => spec.num(out, i64::from((tm.yday + 7 - tm.weekday) / 7), 2, Pad::Zero),
        b'V' => spec.num(out, i64::from(iso_week(tm).1), 2, Pad::Zero),
        b'w' => spec.num(out, i64::from(tm.weekday), 1, Pad::Zero),
        b'W' => spec.num(
            out,
            i64::from((tm.yday + 7 - (tm.weekday + 6) % 7) / 7),
            2,
            Pad::Zero,
        ),
        b'y' => spec.num(out, tm.year.rem_euclid(100), 2, Pad::Zero),
        b'Y' => spec.num(out, tm.year, 1, Pad::Zero),
        b'z' | b'Z' => {
            let plain = spec.width.is_none() && !spec.upper && !spec.swap;
            let mut tmp = Vec::new();
            let target = if plain { &mut *out } else { &mut tmp };
            if conv == b'z' {
                write_offset(target, tm.offset, false, false);
            } else {
                tm.write_zone(target);
            }
            if !plain {
                spec.text(out, &String::from_utf8_lossy(&tmp), false);
            }
        }
        b'%' => spec.text(out, "%", false),
        _ => return false,
    }
    true
}

/// absl's own specifiers, right after '%'. Returns how many bytes were used.
fn absl_extension(out: &mut Vec<u8>, p: &[u8], tm: &Tm) -> Option<usize> {
    match p {
        [b':', b'z', ..] => {
            write_offset(out, tm.offset, true, false);
            Some(2)
        }
        [b'E', b'z', ..] => {
            write_offset(out, tm.offset, true, false);
            Some(2)
        }
        [b'E', b'*', b'z', ..] => {
            write_offset(out, tm.offset, true, true);
            Some(3)
        }
        [b'E', b'*', b'S', ..] => {
            let _ = write!(out, "{:02}", tm.second);
            out.push(b'.');
            if !write_trimmed_fraction(out, tm.nanos) {
                out.pop();
            }
            Some(3)
        }
        [b'E', b'*', b'f', ..] => {
            if !write_trimmed_fraction(out, tm.nanos) {
                out.push(b'0');
            }
            Some(3)
        }
        [b'E', b'4', b'Y', ..] => {
            if tm.year < 0 {
                let _ = write!(out, "-{:03}", -tm.year);
            } else {
                let _ = write!(out, "{:04}", tm.year);
            }
            Some(3)
        }
        [b'E', rest @ ..] => {
            let ndigits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
            if ndigits == 0 {
                return None;
            }
            let conv = *rest.get(ndigits)?;
            if conv != b'S' && conv != b'f' {
                return None;
            }
            let precision: usize = std::str::from_utf8(&rest[..ndigits]).ok()?.parse().ok()?;
            if conv == b'S' {
                let _ = write!(out, "{:02}", tm.second);
                if precision > 0 {
                    out.push(b'.');
                    write_fraction(out, tm.nanos, precision);
                }
            } else {
                write_fraction(out, tm.nanos, precision);
            }
            Some(1 + ndigits + 1)
        }
        _ => None,
    }
}

/// Appends `n` zero-padded to `width` digits (`n` must fit).
fn push_digits(out: &mut Vec<u8>, n: u32, width: usize) {
    let mut digits = [b'0'; 10];
    let mut v = n;
    for d in digits[10 - width..].iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.extend_from_slice(&digits[10 - width..]);
}

fn nine_digits(nanos: u32) -> [u8; 9] {
    let mut digits = [b'0'; 9];
    let mut n = nanos;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
    digits
}

fn write_fraction(out: &mut Vec<u8>, nanos: u32, precision: usize) {
    let digits = nine_digits(nanos);
    let take = precision.min(9);
    out.extend_from_slice(&digits[..take]);
    out.extend(std::iter::repeat_n(b'0', precision - take));
}

/// The fraction's digits without trailing zeros (empty for zero).
fn write_trimmed_fraction(out: &mut Vec<u8>, nanos: u32) -> bool {
    let digits = nine_digits(nanos);
    let len = digits.iter().rposition(|&d| d != b'0').map_or(0, |i| i + 1);
    out.extend_from_slice(&digits[..len]);
    len > 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// 2026-11-25T19:32:34.149577Z, a Wednesday.
    fn t() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::new(1_795_635_154, 149_577_000)
    }

    fn fmt(p: &str) -> String {
        let mut out = Vec::new();
        TimeFormat::parse(p, false).write(&mut out, t());
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn default_format_is_iso8601_millis_utc() {
        assert_eq!(fmt(""), "2026-11-25T19:32:34.149Z");
    }

    /// The default format's per-second cache: the same second renders the
    /// same prefix with new milliseconds, another second (or the other
    /// zone) renders afresh, and before 1970 works as without the cache.
    #[test]
    fn default_format_cache_follows_the_second_and_zone() {
        let render = |local: bool, secs: u64, nanos: u32| {
            let mut out = Vec::new();
            let at = SystemTime::UNIX_EPOCH + Duration::new(secs, nanos);
            TimeFormat::parse("", local).write(&mut out, at);
            String::from_utf8(out).expect("utf8")
        };
        assert_eq!(
            render(false, 1_795_635_154, 149_000_000),
            "2026-11-25T19:32:34.149Z"
        );
        assert_eq!(
            render(false, 1_795_635_154, 999_000_000),
            "2026-11-25T19:32:34.999Z"
        );
        assert_eq!(
            render(false, 1_795_635_155, 1_000_000),
            "2026-11-25T19:32:35.001Z"
        );
        assert_eq!(render(false, 1_795_635_154, 0), "2026-11-25T19:32:34.000Z");
        // Local time: its own prefix and offset, whatever UTC cached.
        let offset = local_offset(1_795_635_154);
        let expected = {
            let tm = Tm::from_parts(1_795_635_154, 0, offset, false);
            let mut out = Vec::new();
            strftime(&mut out, b"%Y-%m-%dT%H:%M:%S.000%z", &tm);
            String::from_utf8(out).expect("utf8")
        };
        assert_eq!(render(true, 1_795_635_154, 0), expected);
        assert_eq!(
            render(false, 1_795_635_154, 5_000_000),
            "2026-11-25T19:32:34.005Z"
        );
        let mut out = Vec::new();
        let before = SystemTime::UNIX_EPOCH - Duration::new(1, 500_000_000);
        TimeFormat::parse("", false).write(&mut out, before);
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "1969-12-31T23:59:58.500Z"
        );
    }

    #[test]
    fn matches_envoy_observed_output() {
        // Pattern and output observed from Envoy 1.40 (same instant).
        let pattern = "%s.%3f|%f|%1f|%9f|%s|%Y-%m-%dT%H:%M:%S%z|%%f|%Q|%E4Y|%Ez|%E*z|%E3S|%E*S|%a %A %b %B %C %d %D %e %F %g %G %h %H %I %j %k %l %m %M %p %r %R %S %T %u %U %V %w %W %x %X %y %Y %Z %c|%E3f|%E*f|%Ey|%Oy|%+|%P|%-d|%_H|%010Y|%^a";
        assert_eq!(
            fmt(pattern),
            "1795635154.149|149577000|1|149577000|1795635154|2026-11-25T19:32:34+0000|%149577000|%Q|2026|+00:00|+00:00:00|34.149|34.149577|Wed Wednesday Nov November 20 25 11/25/26 25 2026-11-25 26 2026 Nov 19 07 329 19  7 11 32 PM 07:32:34 PM 19:32 34 19:32:34 3 47 48 3 47 11/25/26 19:32:34 26 2026 UTC Wed Nov 25 19:32:34 2026|149|149577|26|26|%+|pm|25|19|0000002026|WED"
        );
    }

    #[test]
    fn matches_more_envoy_observed_edge_cases() {
        let at = SystemTime::UNIX_EPOCH + Duration::new(1_795_635_177, 196_403_000);
        let mut out = Vec::new();
        TimeFormat::parse("%%s|%%Y|%3f%3f|%0f|%10f|abc%|%%%f|%-3f|%E9S|%E0S|%E10S|%E*z|%:z|%Ey|%EY|%Ec|%Od|%OH|%t|%G-W%V", false).write(&mut out, at);
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "%1795635177|%Y|196196|%0f|      %10f|abc%|%196403000|%-3f|57.196403000|57|57.1964030000|+00:00:00|+00:00|26|2026|Wed Nov 25 19:32:57 2026|25|19|\t|2026-W48"
        );
    }

    #[test]
    fn newline_specifiers_are_detected() {
        assert!(TimeFormat::has_newline_specifier("%Y%n"));
        assert!(TimeFormat::has_newline_specifier("%-_2En"));
        assert!(!TimeFormat::has_newline_specifier("%Y%t"));
        assert!(!TimeFormat::has_newline_specifier("n%Y"));
    }

    #[test]
    fn civil_conversions_round_trip() {
        for days in [-719_468, -1, 0, 59, 365, 11_016, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_782), (2026, 11, 25));
    }

    #[test]
    fn iso_weeks_at_year_edges() {
        // 2021-01-01 is a Friday: ISO week 53 of 2020.
        let tm = Tm::from_parts(1_609_459_200, 0, 0, true);
        assert_eq!(iso_week(&tm), (2020, 53));
        // 2024-12-30 is a Monday: ISO week 1 of 2025.
        let tm = Tm::from_parts(1_735_516_800, 0, 0, true);
        assert_eq!(iso_week(&tm), (2025, 1));
    }

    #[test]
    fn before_the_epoch() {
        let mut out = Vec::new();
        TimeFormat::parse("", false).write(
            &mut out,
            SystemTime::UNIX_EPOCH - Duration::from_millis(1500),
        );
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "1969-12-31T23:59:58.500Z"
        );
    }
}
