//! [`Format`]: a compiled substitution format (text or JSON) and its
//! rendering.
//!
//! Compiling follows Envoy's `SubstitutionFormatParser` (the command regex
//! `^%([A-Z0-9_]+)(?:\((.*?)\))?(?::([0-9]+))?%`, `%%` escapes) and
//! `JsonFormatterImpl`/`OmitEmptyJsonFormatterImpl` (sorted keys, typed
//! values for single-operator strings, omission rules). Rendering appends to
//! a caller's buffer.

use std::cell::RefCell;
use std::sync::Arc;

use crate::FormatError;
use crate::json;
use crate::ops::{self, Op, Val};
use crate::stream_info::StreamInfo;

/// Envoy's default access log format, used when none is configured.
pub const DEFAULT_ACCESS_LOG_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n";

/// One piece of a text template.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Piece {
    Literal(Box<str>),
    Op { op: Op, max: Option<usize> },
}

/// A compiled substitution format: a text template or a JSON structure.
///
/// Cheap to share (`Arc` inside); compile once at config load, render per
/// request. Its `Debug` shows the source it was compiled from.
#[derive(Clone)]
pub struct Format {
    inner: Arc<Inner>,
    /// The text (or, for JSON, the structure as JSON) it was compiled from.
    source: Arc<str>,
}

impl std::fmt::Debug for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.is_json() {
            "JsonFormat"
        } else {
            "Format"
        };
        f.debug_tuple(kind).field(&&*self.source).finish()
    }
}

#[derive(Debug)]
enum Inner {
    Text {
        pieces: Box<[Piece]>,
        /// Rendered when an operator has no value: `-`, or `` with `omit_empty_values`.
        empty: &'static str,
    },
    Json {
        root: JsonNode,
        omit_empty: bool,
    },
}

/// A node of a JSON format.
#[derive(Clone, Debug, PartialEq)]
enum JsonNode {
    /// Pre-serialized JSON (scalars, and constant subtrees).
    Const(Box<[u8]>),
    /// A string with command operators.
    Template(Box<[Piece]>),
    /// Fields sorted by key; each key pre-serialized with its quotes.
    Object(Box<[(Box<[u8]>, JsonNode)]>),
    Array(Box<[JsonNode]>),
}

impl PartialEq for Format {
    fn eq(&self, other: &Self) -> bool {
        match (&*self.inner, &*other.inner) {
            (
                Inner::Text {
                    pieces: a,
                    empty: ea,
                },
                Inner::Text {
                    pieces: b,
                    empty: eb,
                },
            ) => a == b && ea == eb,
            (
                Inner::Json {
                    root: a,
                    omit_empty: oa,
                },
                Inner::Json {
                    root: b,
                    omit_empty: ob,
                },
            ) => a == b && oa == ob,
            _ => false,
        }
    }
}

impl Format {
    /// Compiles a text format, rendering unavailable values as `-`.
    pub fn parse(text: &str) -> Result<Format, FormatError> {
        Format::text(text, false)
    }

    /// Compiles a text format; with `omit_empty_values` unavailable values
    /// render as nothing instead of `-`.
    pub fn text(text: &str, omit_empty_values: bool) -> Result<Format, FormatError> {
        Ok(Format::from_inner(
            Inner::Text {
                pieces: parse_template(text)?.into(),
                empty: if omit_empty_values { "" } else { "-" },
            },
            text,
        ))
    }

    /// Compiles a header value of `request_headers_to_add` and friends, as
    /// Envoy's `HeaderParser` does: the obsolete `%UPSTREAM_METADATA(["ns",
    /// "key"])%` / `%DYNAMIC_METADATA([...])%` and `%PER_REQUEST_STATE(key)%`
    /// syntaxes are translated first, and unavailable values render as
    /// nothing.
    pub fn header_value(text: &str) -> Result<Format, FormatError> {
        let translated = translate_per_request_state(&translate_metadata(text)?);
        let mut format = Format::text(&translated, true)?;
        format.source = text.into();
        Ok(format)
    }

    /// Compiles a JSON format (`json_format`). `structure` must be an object;
    /// strings containing `%` are templates, every other value is a literal.
    pub fn json(
        structure: &serde_json::Value,
        omit_empty_values: bool,
    ) -> Result<Format, FormatError> {
        let serde_json::Value::Object(map) = structure else {
            return Err(FormatError::Json(
                "a JSON format must be a JSON object".to_owned(),
            ));
        };
        let root = build_object(map, omit_empty_values)?;
        Ok(Format::from_inner(
            Inner::Json {
                root,
                omit_empty: omit_empty_values,
            },
            &structure.to_string(),
        ))
    }

    /// A text format that is only `text`, with no operators.
    pub fn literal(text: impl Into<String>) -> Format {
        let text: String = text.into();
        let source = text.clone();
        Format::from_inner(
            Inner::Text {
                pieces: Box::new([Piece::Literal(text.into())]),
                empty: "-",
            },
            &source,
        )
    }

    fn from_inner(inner: Inner, source: &str) -> Format {
        Format {
            inner: Arc::new(inner),
            source: source.into(),
        }
    }

    /// The text it was compiled from (for a JSON format, the structure as
    /// JSON); for [`Format::literal`], the literal text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The constant output of a text format without operators, so callers can
    /// skip per-request work.
    pub fn as_literal(&self) -> Option<&str> {
        match &*self.inner {
            Inner::Text { pieces, .. } => match &**pieces {
                [] => Some(""),
                [Piece::Literal(s)] => Some(s),
                _ => None,
            },
            Inner::Json { .. } => None,
        }
    }

    /// True for a JSON format (whose output is one JSON object and a newline).
    pub fn is_json(&self) -> bool {
        matches!(&*self.inner, Inner::Json { .. })
    }

    /// Appends the rendering to `out`. Bytes that are not UTF-8 (from headers,
    /// for instance) become U+FFFD; [`Format::render_bytes`] keeps them.
    pub fn render(&self, info: &dyn StreamInfo, out: &mut String) {
        if let Some(lit) = self.as_literal() {
            out.push_str(lit);
            return;
        }
        let mut bytes = std::mem::take(out).into_bytes();
        self.render_bytes(info, &mut bytes);
        *out = match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
    }

    /// The rendering as a new string.
    pub fn render_to_string(&self, info: &dyn StreamInfo) -> String {
        let mut s = String::new();
        self.render(info, &mut s);
        s
    }

    /// Appends the rendering to `out`, byte for byte as Envoy would write it.
    pub fn render_bytes(&self, info: &dyn StreamInfo, out: &mut Vec<u8>) {
        match &*self.inner {
            Inner::Text { pieces, empty } => {
                for piece in pieces.iter() {
                    render_text_piece(piece, info, out, empty);
                }
            }
            Inner::Json { root, omit_empty } => with_scratch(|scratch| {
                if !render_node(root, info, out, scratch, *omit_empty) {
                    out.extend_from_slice(b"{}");
                }
                out.push(b'\n');
            }),
        }
    }

    /// Alias of [`Format::render`], for JSON formats.
    pub fn render_json(&self, info: &dyn StreamInfo, out: &mut String) {
        self.render(info, out);
    }
}

fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    thread_local! {
        static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            f(&mut buf)
        }
        Err(_) => f(&mut Vec::new()),
    })
}

// ---- text templates ------------------------------------------------------------

/// Parses a template into pieces (Envoy's `SubstitutionFormatParser::parse`).
pub(crate) fn parse_template(format: &str) -> Result<Vec<Piece>, FormatError> {
    let b = format.as_bytes();
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut pos = 0;
    while pos < b.len() {
        if b[pos] != b'%' {
            let next = b[pos..]
                .iter()
                .position(|&c| c == b'%')
                .map_or(b.len(), |n| pos + n);
            literal.push_str(&format[pos..next]);
            pos = next;
            continue;
        }
        if b.get(pos + 1) == Some(&b'%') {
            literal.push('%');
            pos += 2;
            continue;
        }
        let Some(m) = match_command(b, pos) else {
            return Err(FormatError::InvalidSyntax {
                format: format.to_owned(),
                position: pos,
            });
        };
        let name = &format[m.name.0..m.name.1];
        let arg = m.arg.map_or("", |(s, e)| &format[s..e]);
        let max = match m.len {
            None => None,
            Some((s, e)) => match format[s..e]
                .parse::<u64>()
                .ok()
                .and_then(|n| usize::try_from(n).ok())
            {
                Some(n) => Some(n),
                // RE2 fails the whole match when the length does not fit size_t.
                None => {
                    return Err(FormatError::InvalidSyntax {
                        format: format.to_owned(),
                        position: pos,
                    });
                }
            },
        };
        let op = ops::parse_command(name, arg, max)?;
        match op {
            // Values fixed at parse time are literals.
            Op::Constant(Some(v)) => literal.push_str(&v),
            op => {
                if !literal.is_empty() {
                    pieces.push(Piece::Literal(std::mem::take(&mut literal).into()));
                }
                pieces.push(Piece::Op { op, max });
            }
        }
        pos = m.end;
    }
    if !literal.is_empty() || pieces.is_empty() {
        pieces.push(Piece::Literal(literal.into()));
    }
    Ok(pieces)
}

struct CommandMatch {
    name: (usize, usize),
    arg: Option<(usize, usize)>,
    len: Option<(usize, usize)>,
    end: usize,
}

/// Matches `^%([A-Z0-9_]+)(?:\((.*?)\))?(?::([0-9]+))?%` at `pos`, with RE2's
/// leftmost-first semantics (`.` does not match a newline).
fn match_command(b: &[u8], pos: usize) -> Option<CommandMatch> {
    let name_start = pos + 1;
    let mut i = name_start;
    while i < b.len() && (b[i].is_ascii_uppercase() || b[i].is_ascii_digit() || b[i] == b'_') {
        i += 1;
    }
    if i == name_start {
        return None;
    }
    let name = (name_start, i);
    // The rest after the arguments: `(:digits)?%`.
    let tail = |j: usize| -> Option<(Option<(usize, usize)>, usize)> {
        if b.get(j) == Some(&b':') {
            let ds = j + 1;
            let mut k = ds;
            while k < b.len() && b[k].is_ascii_digit() {
                k += 1;
            }
            if k > ds && b.get(k) == Some(&b'%') {
                return Some((Some((ds, k)), k + 1));
            }
        }
        if b.get(j) == Some(&b'%') {
            return Some((None, j + 1));
        }
        None
    };
    if b.get(i) == Some(&b'(') {
        let arg_start = i + 1;
        let mut j = arg_start;
        while j < b.len() && b[j] != b'\n' {
            if b[j] == b')'
                && let Some((len, end)) = tail(j + 1)
            {
                return Some(CommandMatch {
                    name,
                    arg: Some((arg_start, j)),
                    len,
                    end,
                });
            }
            j += 1;
        }
    }
    let (len, end) = tail(i)?;
    Some(CommandMatch {
        name,
        arg: None,
        len,
        end,
    })
}

fn render_text_piece(piece: &Piece, info: &dyn StreamInfo, out: &mut Vec<u8>, empty: &str) {
    match piece {
        Piece::Literal(s) => out.extend_from_slice(s.as_bytes()),
        Piece::Op { op, max } => render_text_op(op, *max, info, out, empty),
    }
}

/// Text form of one operator, truncated to `max` bytes.
fn render_text_op(
    op: &Op,
    max: Option<usize>,
    info: &dyn StreamInfo,
    out: &mut Vec<u8>,
    empty: &str,
) {
    use prost_types::value::Kind;
    let start = out.len();
    match op.eval(info, out) {
        Val::Missing => out.extend_from_slice(empty.as_bytes()),
        Val::Str(s) => out.extend_from_slice(ops::truncate_bytes(s.as_bytes(), max)),
        Val::Bytes(b) => out.extend_from_slice(ops::truncate_bytes(b, max)),
        Val::Cow(c) => out.extend_from_slice(ops::truncate_bytes(c.as_bytes(), max)),
        Val::Written(_) => truncate_tail(out, start, max),
        Val::U64(n) => {
            json::push_u64(out, n);
            truncate_tail(out, start, max);
        }
        Val::I64(n) => {
            json::push_i64(out, n);
            truncate_tail(out, start, max);
        }
        Val::Proto(v) => match &v.kind {
            None | Some(Kind::NullValue(_)) => out.extend_from_slice(empty.as_bytes()),
            Some(Kind::StringValue(s)) => {
                out.extend_from_slice(ops::truncate_bytes(s.as_bytes(), max))
            }
            Some(_) => {
                json::write_proto_value(out, v);
                truncate_tail(out, start, max);
            }
        },
        Val::ProtoStruct(s) => {
            json::write_proto_struct(out, s);
            truncate_tail(out, start, max);
        }
        Val::Json(v) => {
            json::write_json_value(out, &v);
            truncate_tail(out, start, max);
        }
    }
}

fn truncate_tail(out: &mut Vec<u8>, start: usize, max: Option<usize>) {
    if let Some(m) = max
        && out.len() - start > m
    {
        out.truncate(start + m);
    }
}

/// Typed JSON form of one operator; false (nothing written) when it has no value.
fn render_typed_op(
    op: &Op,
    max: Option<usize>,
    info: &dyn StreamInfo,
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
) -> bool {
    use prost_types::value::Kind;
    scratch.clear();
    match op.eval(info, scratch) {
        Val::Missing => false,
        Val::Str(s) => {
            json::write_str(out, ops::truncate_bytes(s.as_bytes(), max));
            true
        }
        Val::Bytes(b) => {
            json::write_str(out, ops::truncate_bytes(b, max));
            true
        }
        Val::Cow(c) => {
            json::write_str(out, ops::truncate_bytes(c.as_bytes(), max));
            true
        }
        Val::Written(start) => {
            json::write_str(out, ops::truncate_bytes(&scratch[start..], max));
            true
        }
        Val::U64(n) => {
            json::write_u64_number(out, n);
            true
        }
        Val::I64(n) => {
            json::write_f64(out, n as f64);
            true
        }
        Val::Proto(v) => match &v.kind {
            None | Some(Kind::NullValue(_)) => false,
            Some(Kind::StringValue(s)) => {
                json::write_str(out, ops::truncate_bytes(s.as_bytes(), max));
                true
            }
            Some(_) => {
                json::write_proto_value(out, v);
                true
            }
        },
        Val::ProtoStruct(s) => {
            json::write_proto_struct(out, s);
            true
        }
        Val::Json(serde_json::Value::Null) => false,
        Val::Json(v) => {
            json::write_json_value(out, &v);
            true
        }
    }
}

// ---- JSON formats ----------------------------------------------------------------

fn build_object(
    map: &serde_json::Map<String, serde_json::Value>,
    omit: bool,
) -> Result<JsonNode, FormatError> {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    let mut fields = Vec::with_capacity(keys.len());
    for k in keys {
        let Some(v) = map.get(k) else { continue };
        // Omitting, a literal null is dropped when the format is built.
        if omit && v.is_null() {
            continue;
        }
        let mut key = Vec::with_capacity(k.len() + 2);
        json::write_str(&mut key, k.as_bytes());
        fields.push((key.into_boxed_slice(), build_value(v, omit)?));
    }
    // A constant, non-empty object is pre-serialized. An empty one is kept as
    // a node so that, when omitting, it is dropped.
    let all_const = fields.iter().all(|(_, n)| matches!(n, JsonNode::Const(_)));
    if all_const && (!fields.is_empty() || !omit) {
        let mut out = vec![b'{'];
        for (i, (k, n)) in fields.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(k);
            out.push(b':');
            if let JsonNode::Const(c) = n {
                out.extend_from_slice(c);
            }
        }
        out.push(b'}');
        return Ok(JsonNode::Const(out.into()));
    }
    Ok(JsonNode::Object(fields.into()))
}

fn build_value(v: &serde_json::Value, omit: bool) -> Result<JsonNode, FormatError> {
    use serde_json::Value;
    Ok(match v {
        Value::String(s) if s.contains('%') => {
            let pieces = parse_template(s)?;
            JsonNode::Template(pieces.into())
        }
        Value::Object(m) => build_object(m, omit)?,
        Value::Array(items) => {
            let mut nodes = Vec::with_capacity(items.len());
            for item in items {
                if omit && item.is_null() {
                    continue;
                }
                nodes.push(build_value(item, omit)?);
            }
            if nodes.iter().all(|n| matches!(n, JsonNode::Const(_))) {
                let mut out = vec![b'['];
                for (i, n) in nodes.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    if let JsonNode::Const(c) = n {
                        out.extend_from_slice(c);
                    }
                }
                out.push(b']');
                JsonNode::Const(out.into())
            } else {
                JsonNode::Array(nodes.into())
            }
        }
        other => {
            let mut out = Vec::new();
            json::write_json_value(&mut out, other);
            JsonNode::Const(out.into())
        }
    })
}

/// Renders a node; false when it is omitted (only with `omit_empty_values`).
fn render_node(
    node: &JsonNode,
    info: &dyn StreamInfo,
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    omit: bool,
) -> bool {
    match node {
        JsonNode::Const(c) => {
            out.extend_from_slice(c);
            true
        }
        JsonNode::Template(pieces) => match &**pieces {
            [Piece::Literal(s)] => {
                json::write_str(out, s.as_bytes());
                true
            }
            [Piece::Op { op, max }] => {
                if render_typed_op(op, *max, info, out, scratch) {
                    true
                } else if omit {
                    false
                } else {
                    out.extend_from_slice(b"null");
                    true
                }
            }
            many => {
                // Several pieces: always a string; missing values are `-`
                // (nothing when omitting).
                scratch.clear();
                let empty = if omit { "" } else { "-" };
                for piece in many {
                    render_text_piece(piece, info, scratch, empty);
                }
                json::write_str(out, scratch);
                true
            }
        },
        JsonNode::Object(fields) => {
            let node_start = out.len();
            out.push(b'{');
            let mut any = false;
            for (key, value) in fields.iter() {
                let field_start = out.len();
                if any {
                    out.push(b',');
                }
                out.extend_from_slice(key);
                out.push(b':');
                if render_node(value, info, out, scratch, omit) {
                    any = true;
                } else {
                    out.truncate(field_start);
                }
            }
            if omit && !any {
                out.truncate(node_start);
                return false;
            }
            out.push(b'}');
            true
        }
        JsonNode::Array(items) => {
            out.push(b'[');
            let mut any = false;
            for item in items.iter() {
                let item_start = out.len();
                if any {
                    out.push(b',');
                }
                if render_node(item, info, out, scratch, omit) {
                    any = true;
                } else {
                    out.truncate(item_start);
                }
            }
            out.push(b']');
            true
        }
    }
}

// ---- header value compatibility --------------------------------------------------

/// `%UPSTREAM_METADATA(["ns", "key", ...])%` → `%UPSTREAM_METADATA(ns:key:...)%`
/// (and `DYNAMIC_METADATA`), as Envoy's `HeaderParser` still accepts.
fn translate_metadata(text: &str) -> Result<String, FormatError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let next = ["%UPSTREAM_METADATA(", "%DYNAMIC_METADATA("]
            .iter()
            .filter_map(|p| rest.find(p).map(|i| (i, *p)))
            .min_by_key(|(i, _)| *i);
        let Some((at, prefix)) = next else {
            out.push_str(rest);
            return Ok(out);
        };
        let after = &rest[at + prefix.len()..];
        let trimmed = after.trim_start();
        if !trimmed.starts_with('[') {
            out.push_str(&rest[..at + prefix.len()]);
            rest = after;
            continue;
        }
        // The shortest `[ ... ]` followed by optional spaces and `)%`.
        let mut found = None;
        for (i, _) in trimmed.match_indices(']') {
            let tail = trimmed[i + 1..].trim_start();
            if tail.starts_with(")%") {
                found = Some((i, trimmed.len() - tail.len()));
                break;
            }
        }
        let Some((close, tail_at)) = found else {
            out.push_str(&rest[..at + prefix.len()]);
            rest = after;
            continue;
        };
        let array = &trimmed[..=close];
        let command = &prefix[1..prefix.len() - 1];
        let bad = || {
            FormatError::invalid(format!(
                "Invalid header configuration. Expected format {command}([\"namespace\", \"k\", ...]), actual format {command}({array})"
            ))
        };
        let parsed: serde_json::Value = serde_json::from_str(array).map_err(|_| bad())?;
        let items = parsed.as_array().ok_or_else(bad)?;
        let mut parts = Vec::with_capacity(items.len());
        for item in items {
            parts.push(item.as_str().ok_or_else(bad)?);
        }
        out.push_str(&rest[..at]);
        out.push('%');
        out.push_str(command);
        out.push('(');
        out.push_str(&parts.join(":"));
        out.push_str(")%");
        rest = &trimmed[tail_at + 2..];
    }
}

/// `%PER_REQUEST_STATE(key)%` → `%FILTER_STATE(key:PLAIN)%`.
fn translate_per_request_state(text: &str) -> String {
    const PREFIX: &str = "%PER_REQUEST_STATE(";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(PREFIX) {
        let after = &rest[at + PREFIX.len()..];
        // `(.+?)\)%`: at least one character, the shortest that ends in `)%`.
        let close = after
            .char_indices()
            .skip(1)
            .find(|(i, _)| after[*i..].starts_with(")%"))
            .map(|(i, _)| i);
        match close {
            Some(c) if !after[..c].contains('\n') => {
                out.push_str(&rest[..at]);
                out.push_str("%FILTER_STATE(");
                out.push_str(&after[..c]);
                out.push_str(":PLAIN)%");
                rest = &after[c + 2..];
            }
            _ => {
                out.push_str(&rest[..at + PREFIX.len()]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}
