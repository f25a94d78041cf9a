//! YAML and JSON text to a positioned [`Node`] tree, with Envoy's scalar rules.
//!
//! Envoy reads YAML with yaml-cpp and converts each node to a
//! `google.protobuf.Value` (`source/common/protobuf/yaml_utility.cc`). The rules
//! reproduced here:
//! - a scalar that is quoted, a block scalar, or tagged `!` is a string;
//! - a plain scalar is null (`~`, `null`, empty), else a boolean in yaml-cpp's
//!   spelling (`y/yes/true/on`, `n/no/false/off` in lower, Upper or UPPER case),
//!   else an integer (decimal, `0x` hex, leading-`0` octal; outside int32 it
//!   becomes a decimal string, as the proto3 JSON mapping allows for 64-bit
//!   integers), else a double (`.inf`/`.nan` become the strings `Infinity`/`NaN`),
//!   else a string;
//! - mapping keys tagged `!ignore` are dropped with their value;
//! - anchors and aliases are expanded; only the first document is read.
//!
//! JSON files are checked to be strict JSON first, then read with JSON's own
//! scalar rules. Alias expansion and nesting are bounded, so hostile input gives
//! an error, not a hang or a stack overflow.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};

use crate::node::{Key, Node, Number, Pos, Value};

/// Deepest nesting accepted (real configs stay well under 64).
const MAX_DEPTH: usize = 256;
/// Most nodes a document may expand to, aliases included.
const MAX_NODES: usize = 5_000_000;

/// Most nodes and text bytes aliases may copy in one document. yaml-cpp has
/// no such bound; without one a few hundred bytes of nested aliases ("billion
/// laughs") take gigabytes. Real configs use aliases for a few shared blocks,
/// far below this (see docs/compat.md).
const MAX_ALIAS_NODES: usize = 100_000;
const MAX_ALIAS_BYTES: usize = 16 << 20;

/// A syntax error, with the position the parser stopped at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// Which scalar rules apply.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Yaml,
    Json,
}

/// Reads the first YAML document of `text`. An empty document is `Null`.
pub fn parse_yaml(text: &str) -> Result<Node, SyntaxError> {
    Builder::new(Dialect::Yaml).run(text)
}

/// Reads a strict JSON text.
pub fn parse_json(text: &str) -> Result<Node, SyntaxError> {
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
        return Err(SyntaxError {
            pos: Pos {
                line: e.line() as u32,
                col: e.column() as u32,
            },
            message: format!("invalid JSON: {e}"),
        });
    }
    Builder::new(Dialect::Json).run(text)
}

fn pos_of(span: &Span) -> Pos {
    Pos {
        line: span.start.line() as u32,
        col: span.start.col() as u32 + 1,
    }
}

enum Frame {
    Seq {
        items: Vec<Node>,
        pos: Pos,
        anchor: usize,
    },
    Map {
        entries: Vec<(Key, Node)>,
        /// The key read, waiting for its value (`None` inside: an `!ignore`d key).
        key: Option<Option<Key>>,
        /// The names in `entries` once there are many (see [`has_key`]), so
        /// that a repeated key is found without a scan.
        names: HashSet<String>,
        pos: Pos,
        anchor: usize,
    },
}

struct Builder {
    dialect: Dialect,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
    alias_nodes: usize,
    alias_bytes: usize,
}

/// A key or value completed by the builder.
enum Item {
    Node(Node),
    /// A key scalar tagged `!ignore`.
    IgnoredKey,
}

impl Builder {
    fn new(dialect: Dialect) -> Self {
        Builder {
            dialect,
            stack: Vec::new(),
            anchors: HashMap::new(),
            nodes: 0,
            alias_nodes: 0,
            alias_bytes: 0,
        }
    }

    fn run(mut self, text: &str) -> Result<Node, SyntaxError> {
        let mut parser = Parser::new_from_str(text);
        let mut root: Option<Node> = None;
        loop {
            let (event, span) = match parser.next_event() {
                None => break,
                Some(Ok(ev)) => ev,
                Some(Err(e)) => {
                    return Err(SyntaxError {
                        pos: Pos {
                            line: e.marker().line() as u32,
                            col: e.marker().col() as u32 + 1,
                        },
                        message: e.info().to_owned(),
                    });
                }
            };
            let pos = pos_of(&span);
            let item = match event {
                Event::StreamStart | Event::Nothing => continue,
                Event::StreamEnd => break,
                Event::DocumentStart(_) => {
                    if root.is_some() {
                        // Only the first document counts, as with yaml-cpp's Load.
                        break;
                    }
                    continue;
                }
                Event::DocumentEnd => {
                    if root.is_none() {
                        root = Some(Node::new(Value::Null, Pos { line: 1, col: 1 }));
                    }
                    continue;
                }
                Event::Alias(id) => {
                    let (size, bytes) = self
                        .anchors
                        .get(&id)
                        .map(|n| (count_nodes(n), count_bytes(n)))
                        .ok_or_else(|| SyntaxError {
                            pos,
                            message: "alias to an unknown anchor".to_owned(),
                        })?;
                    self.count(size, pos)?;
                    self.alias_nodes = self.alias_nodes.saturating_add(size);
                    self.alias_bytes = self.alias_bytes.saturating_add(bytes);
                    if self.alias_nodes > MAX_ALIAS_NODES || self.alias_bytes > MAX_ALIAS_BYTES {
                        return Err(SyntaxError {
                            pos,
                            message: format!(
                                "aliases expand to more than {MAX_ALIAS_NODES} nodes or {} MiB of text",
                                MAX_ALIAS_BYTES >> 20
                            ),
                        });
                    }
                    let value = self
                        .anchors
                        .get(&id)
                        .map(|n| n.value.clone())
                        .unwrap_or(Value::Null);
                    Item::Node(Node::new(value, pos))
                }
                Event::Scalar(text, style, anchor, tag) => {
                    self.count(1, pos)?;
                    if self.expecting_key() {
                        if is_ignore_tag(tag.as_deref()) {
                            Item::IgnoredKey
                        } else {
                            // yaml-cpp's `as<std::string>()`: a key is its text as written.
                            let node = Node::new(Value::String(text.into_owned()), pos);
                            if anchor != 0 {
                                self.anchors.insert(anchor, node.clone());
                            }
                            Item::Node(node)
                        }
                    } else {
                        let node = Node::new(self.scalar(text, style, tag.as_deref()), pos);
                        if anchor != 0 {
                            self.anchors.insert(anchor, node.clone());
                        }
                        Item::Node(node)
                    }
                }
                Event::SequenceStart(anchor, _) => {
                    self.open(pos)?;
                    self.stack.push(Frame::Seq {
                        items: Vec::new(),
                        pos,
                        anchor,
                    });
                    continue;
                }
                Event::MappingStart(anchor, _) => {
                    self.open(pos)?;
                    self.stack.push(Frame::Map {
                        entries: Vec::new(),
                        key: None,
                        names: HashSet::new(),
                        pos,
                        anchor,
                    });
                    continue;
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    let Some(frame) = self.stack.pop() else {
                        return Err(SyntaxError {
                            pos,
                            message: "unbalanced collection end".to_owned(),
                        });
                    };
                    let (node, anchor) = match frame {
                        Frame::Seq { items, pos, anchor } => {
                            (Node::new(Value::List(items), pos), anchor)
                        }
                        Frame::Map {
                            entries,
                            pos,
                            anchor,
                            ..
                        } => (Node::new(Value::Map(entries), pos), anchor),
                    };
                    if anchor != 0 {
                        self.anchors.insert(anchor, node.clone());
                    }
                    Item::Node(node)
                }
            };
            if let Some(done) = self.attach(item, pos)? {
                root.get_or_insert(done);
            }
        }
        Ok(root.unwrap_or_else(|| Node::new(Value::Null, Pos { line: 1, col: 1 })))
    }

    fn count(&mut self, n: usize, pos: Pos) -> Result<(), SyntaxError> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            return Err(SyntaxError {
                pos,
                message: format!(
                    "document expands to more than {MAX_NODES} nodes (alias expansion)"
                ),
            });
        }
        Ok(())
    }

    fn open(&mut self, pos: Pos) -> Result<(), SyntaxError> {
        self.count(1, pos)?;
        if self.stack.len() >= MAX_DEPTH {
            return Err(SyntaxError {
                pos,
                message: format!("nesting deeper than {MAX_DEPTH} levels"),
            });
        }
        if self.expecting_key() {
            return Err(SyntaxError {
                pos,
                message: "a mapping key must be a scalar".to_owned(),
            });
        }
        Ok(())
    }

    fn expecting_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }

    /// Puts a completed item into its parent; returns it when it is the root.
    fn attach(&mut self, item: Item, pos: Pos) -> Result<Option<Node>, SyntaxError> {
        match self.stack.last_mut() {
            None => match item {
                Item::Node(node) => Ok(Some(node)),
                Item::IgnoredKey => Ok(None),
            },
            Some(Frame::Seq { items, .. }) => {
                if let Item::Node(node) = item {
                    items.push(node);
                }
                Ok(None)
            }
            Some(Frame::Map {
                entries,
                key,
                names,
                ..
            }) => {
                match key.take() {
                    None => {
                        *key = Some(match item {
                            Item::IgnoredKey => None,
                            Item::Node(node) => Some(Key {
                                pos: node.pos,
                                name: key_text(node).ok_or_else(|| SyntaxError {
                                    pos,
                                    message: "a mapping key must be a scalar".to_owned(),
                                })?,
                            }),
                        });
                    }
                    Some(None) => {} // value of an !ignore key
                    Some(Some(k)) => {
                        if let Item::Node(node) = item {
                            // yaml-cpp keeps the last of repeated keys.
                            if has_key(entries, names, &k.name) {
                                entries.retain(|(existing, _)| existing.name != k.name);
                            }
                            entries.push((k, node));
                        }
                    }
                }
                Ok(None)
            }
        }
    }

    fn scalar(&self, text: Cow<'_, str>, style: ScalarStyle, tag: Option<&Tag>) -> Value {
        if self.dialect == Dialect::Json {
            return json_scalar(&text, style);
        }
        let forced_string = style != ScalarStyle::Plain || tag.is_some_and(is_non_specific_tag);
        if forced_string {
            return Value::String(text.into_owned());
        }
        resolve_plain(&text)
    }
}

/// The non-specific tag `!` (saphyr reports it as an empty handle with suffix `!`).
fn is_non_specific_tag(tag: &Tag) -> bool {
    (tag.handle.is_empty() && tag.suffix == "!") || (tag.handle == "!" && tag.suffix.is_empty())
}

fn is_ignore_tag(tag: Option<&Tag>) -> bool {
    tag.is_some_and(|t| t.handle == "!" && t.suffix == "ignore")
}

/// The text of a key: yaml-cpp's `as<std::string>()` of a scalar.
fn key_text(node: Node) -> Option<String> {
    match node.value {
        Value::String(s) => Some(s),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

/// Mappings with fewer keys than this are searched for a repeated key by a
/// scan; bigger ones through their set of names.
const SCAN_KEYS: usize = 16;

/// Whether `name` is already a key of `entries` (whose names `names` holds
/// once the mapping has [`SCAN_KEYS`] keys); records it. Scanning every
/// mapping made one of n keys cost O(n²); hashing every key made the common
/// small mappings pay for a set each.
fn has_key(entries: &[(Key, Node)], names: &mut HashSet<String>, name: &str) -> bool {
    if entries.len() < SCAN_KEYS {
        return entries.iter().any(|(k, _)| k.name == name);
    }
    if names.is_empty() {
        names.extend(entries.iter().map(|(k, _)| k.name.clone()));
    }
    !names.insert(name.to_owned())
}

/// The text an aliased node copies: its strings and keys.
fn count_bytes(node: &Node) -> usize {
    match &node.value {
        Value::String(s) => s.len(),
        Value::List(items) => items.iter().map(count_bytes).sum::<usize>(),
        Value::Map(entries) => entries
            .iter()
            .map(|(k, v)| k.name.len() + count_bytes(v))
            .sum::<usize>(),
        _ => 0,
    }
}

fn count_nodes(node: &Node) -> usize {
    match &node.value {
        Value::List(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        Value::Map(entries) => {
            1 + entries
                .iter()
                .map(|(_, v)| 1 + count_nodes(v))
                .sum::<usize>()
        }
        _ => 1,
    }
}

fn json_scalar(text: &str, style: ScalarStyle) -> Value {
    if style != ScalarStyle::Plain {
        return Value::String(text.to_owned());
    }
    match text {
        "null" => Value::Null,
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => match text.parse::<i64>() {
            Ok(i) => Value::Number(Number::Int(i)),
            Err(_) => match text.parse::<f64>() {
                Ok(f) => Value::Number(Number::Float(f)),
                Err(_) => Value::String(text.to_owned()),
            },
        },
    }
}

/// Envoy's resolution of a plain YAML scalar.
pub(crate) fn resolve_plain(text: &str) -> Value {
    if matches!(text, "" | "~" | "null" | "Null" | "NULL") {
        return Value::Null;
    }
    if let Some(b) = yaml_cpp_bool(text) {
        return Value::Bool(b);
    }
    if let Some(i) = yaml_cpp_int(text) {
        return if i32::try_from(i).is_ok() {
            Value::Number(Number::Int(i))
        } else {
            Value::String(i.to_string())
        };
    }
    if let Some(f) = yaml_cpp_double(text) {
        return if f.is_finite() {
            Value::Number(Number::Float(f))
        } else if f.is_nan() {
            Value::String("NaN".to_owned())
        } else if f > 0.0 {
            Value::String("Infinity".to_owned())
        } else {
            Value::String("-Infinity".to_owned())
        };
    }
    Value::String(text.to_owned())
}

/// yaml-cpp's `convert<bool>`: the four word pairs, in lower, Upper or UPPER case.
fn yaml_cpp_bool(text: &str) -> Option<bool> {
    // The longest word is "false": longer texts (most scalars) are not booleans.
    if text.len() > "false".len() {
        return None;
    }
    let flexible = {
        let mut chars = text.chars();
        match chars.next() {
            None => true,
            Some(first) => {
                let rest: Vec<char> = chars.collect();
                let rest_lower = rest.iter().all(|c| !c.is_uppercase());
                let rest_upper = rest.iter().all(|c| !c.is_lowercase());
                if first.is_uppercase() {
                    rest_lower || rest_upper
                } else {
                    rest_lower
                }
            }
        }
    };
    if !flexible {
        return None;
    }
    match text.to_ascii_lowercase().as_str() {
        "y" | "yes" | "true" | "on" => Some(true),
        "n" | "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

/// An `std::istream >> int64_t` with base detection (`0x` hex, `0` octal), which
/// must consume the whole text.
fn yaml_cpp_int(text: &str) -> Option<i64> {
    let trimmed = text.trim_end_matches([' ', '\t', '\n', '\r']);
    let (negative, body) = match trimmed.as_bytes().first()? {
        b'-' => (true, &trimmed[1..]),
        b'+' => (false, &trimmed[1..]),
        _ => (false, trimmed),
    };
    let (radix, digits) =
        if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
            (16, hex)
        } else if body.len() > 1 && body.starts_with('0') {
            (8, &body[1..])
        } else {
            (10, body)
        };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u64::from_str_radix(digits, radix).ok()?;
    if negative {
        if magnitude == 1u64 << 63 {
            Some(i64::MIN)
        } else {
            i64::try_from(magnitude).ok().map(|m| -m)
        }
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// An `std::istream >> double` over the whole text, plus yaml-cpp's `.inf`/`.nan`.
fn yaml_cpp_double(text: &str) -> Option<f64> {
    match text {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        _ => {}
    }
    let trimmed = text.trim_end_matches([' ', '\t', '\n', '\r']);
    let bytes = trimmed.as_bytes();
    let mut i = 0;
    if matches!(bytes.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let int_start = i;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    let mut digits = i - int_start;
    if i < bytes.len() && bytes[i] == b'.' {
        i += 1;
        let frac_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        digits += i - frac_start;
    }
    if digits == 0 {
        return None;
    }
    if i < bytes.len() && matches!(bytes[i], b'e' | b'E') {
        i += 1;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == exp_start {
            return None;
        }
    }
    if i != bytes.len() {
        return None;
    }
    trimmed.parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Node {
        parse_yaml(text).expect("parses")
    }

    fn scalar(text: &str) -> Value {
        yaml(&format!("k: {text}\n"))
            .get("k")
            .expect("k")
            .value
            .clone()
    }

    #[test]
    fn envoy_booleans() {
        for t in [
            "yes", "Yes", "YES", "on", "On", "ON", "y", "Y", "true", "True", "TRUE",
        ] {
            assert_eq!(scalar(t), Value::Bool(true), "{t}");
        }
        for t in ["no", "off", "n", "false", "OFF", "No"] {
            assert_eq!(scalar(t), Value::Bool(false), "{t}");
        }
        assert_eq!(scalar("yEs"), Value::String("yEs".into()));
        assert_eq!(scalar("\"yes\""), Value::String("yes".into()));
        assert_eq!(scalar("'on'"), Value::String("on".into()));
        assert_eq!(scalar("! yes"), Value::String("yes".into()));
    }

    #[test]
    fn envoy_numbers() {
        assert_eq!(scalar("42"), Value::Number(Number::Int(42)));
        assert_eq!(scalar("0x1F"), Value::Number(Number::Int(31)));
        assert_eq!(scalar("010"), Value::Number(Number::Int(8)));
        assert_eq!(scalar("08"), Value::Number(Number::Float(8.0)));
        assert_eq!(scalar("-7"), Value::Number(Number::Int(-7)));
        assert_eq!(scalar("4294967296"), Value::String("4294967296".into()));
        assert_eq!(scalar("0.25"), Value::Number(Number::Float(0.25)));
        assert_eq!(scalar("1e3"), Value::Number(Number::Float(1000.0)));
        assert_eq!(scalar(".inf"), Value::String("Infinity".into()));
        assert_eq!(scalar("-.inf"), Value::String("-Infinity".into()));
        assert_eq!(scalar(".nan"), Value::String("NaN".into()));
        assert_eq!(scalar("inf"), Value::String("inf".into()));
        assert_eq!(scalar("0.25s"), Value::String("0.25s".into()));
        assert_eq!(scalar("1.2.3"), Value::String("1.2.3".into()));
        assert_eq!(scalar("'42'"), Value::String("42".into()));
    }

    #[test]
    fn nulls() {
        assert_eq!(scalar("~"), Value::Null);
        assert_eq!(scalar("null"), Value::Null);
        assert_eq!(scalar(""), Value::Null);
        assert_eq!(scalar("''"), Value::String(String::new()));
    }

    #[test]
    fn ignore_tag_and_anchors() {
        let node = yaml("!ignore defs:\n  base: &base {a: 1, b: two}\nx: *base\ny: [*base]\n");
        assert!(node.get("defs").is_none());
        assert_eq!(
            node.get("x").and_then(|x| x.get("b")).map(|b| &b.value),
            Some(&Value::String("two".into()))
        );
        match &node.get("y").expect("y").value {
            Value::List(items) => assert_eq!(items.len(), 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn positions_are_one_based() {
        let node = yaml("a:\n  b: 1\n");
        let b = node.get("a").and_then(|a| a.get("b")).expect("b");
        assert_eq!(b.pos, Pos { line: 2, col: 6 });
        if let Value::Map(entries) = &node.get("a").expect("a").value {
            assert_eq!(entries[0].0.pos, Pos { line: 2, col: 3 });
        }
    }

    #[test]
    fn json_rules() {
        let node =
            parse_json(r#"{"a": "yes", "b": 5000000000, "c": 1.5, "d": true}"#).expect("json");
        assert_eq!(
            node.get("a").map(|n| &n.value),
            Some(&Value::String("yes".into()))
        );
        assert_eq!(
            node.get("b").map(|n| &n.value),
            Some(&Value::Number(Number::Int(5_000_000_000)))
        );
        assert!(parse_json("{a: 1}").is_err());
    }

    #[test]
    fn hostile_input_is_bounded() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..12 {
            let prev = if i == 0 {
                "a".to_owned()
            } else {
                format!("a{}", i - 1)
            };
            text.push_str(&format!(
                "a{i}: &a{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
        }
        assert!(parse_yaml(&text).is_err());
        let deep = "[".repeat(10_000);
        assert!(parse_yaml(&deep).is_err());
    }

    /// A repeated key keeps its last value, moved to the end (yaml-cpp), and a big
    /// mapping is read in linear time (it was quadratic: 100k keys took seconds).
    #[test]
    fn repeated_keys_and_big_mappings() {
        let node = yaml("a: 1\nb: 2\na: 3\n");
        let Value::Map(entries) = &node.value else {
            panic!("a mapping")
        };
        let keys: Vec<_> = entries.iter().map(|(k, _)| k.name.as_str()).collect();
        assert_eq!(keys, ["b", "a"]);
        assert_eq!(
            node.get("a").map(|n| &n.value),
            Some(&Value::Number(Number::Int(3)))
        );
        let text: String = (0..100_000).map(|i| format!("k{i}: {i}\n")).collect();
        let Value::Map(entries) = parse_yaml(&text).expect("big mapping").value else {
            panic!("a mapping")
        };
        assert_eq!(entries.len(), 100_000);
        // Repeats are found in big mappings too (through their set of names).
        let text: String = (0..40)
            .chain([3, 39, 3])
            .map(|i| format!("k{i}: {i}\n"))
            .collect();
        let Value::Map(entries) = parse_yaml(&text).expect("repeats").value else {
            panic!("a mapping")
        };
        let keys: Vec<_> = entries.iter().map(|(k, _)| k.name.as_str()).collect();
        assert_eq!(keys.len(), 40);
        assert_eq!(keys[38..], ["k39", "k3"]);
    }

    /// Nested aliases that would copy gigabytes are refused early.
    #[test]
    fn alias_expansion_is_bounded() {
        let mut text =
            String::from("a: &a [\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"]\n");
        let mut prev = 'a';
        for name in ['b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'] {
            text.push_str(&format!(
                "{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
            prev = name;
        }
        let err = parse_yaml(&text).expect_err("refused");
        assert!(err.message.contains("aliases expand"), "{}", err.message);
        // A few shared blocks are fine.
        assert!(parse_yaml("a: &a {x: 1, y: [1, 2]}\nb: *a\nc: *a\n").is_ok());
    }
}
