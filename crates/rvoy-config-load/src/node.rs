//! The document tree every config source is read into before it becomes a proto.
//!
//! Envoy turns YAML into a `google.protobuf.Value` tree and then parses that with
//! the proto3 JSON mapping. [`Node`] is that tree, with two additions: every node
//! keeps its line and column, and integers keep their exact value.

use std::fmt;

/// A line and column in a source file, both starting at 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A JSON-like value with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
}

/// A number as Envoy's YAML reader produces it: integers in int32 range stay
/// exact; everything else is a double (bigger integers become strings upstream,
/// as in Envoy).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    /// The value as a double.
    pub fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
        }
    }

    /// The value as an exact integer, if it is one (`3.0` is, `3.5` is not).
    pub fn as_integer(self) -> Option<i128> {
        match self {
            Number::Int(i) => Some(i128::from(i)),
            Number::Float(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 1.9e19 => {
                Some(f as i128)
            }
            Number::Float(_) => None,
        }
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Number::Int(i) => write!(f, "{i}"),
            Number::Float(x) => write!(f, "{x}"),
        }
    }
}

/// One value of the tree.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    List(Vec<Node>),
    /// Keys in document order; a repeated key keeps its last value, as in Envoy.
    Map(Vec<(Key, Node)>),
}

/// A mapping key with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    pub name: String,
    pub pos: Pos,
}

impl Value {
    /// The JSON kind of the value, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::List(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

impl Node {
    pub fn new(value: Value, pos: Pos) -> Self {
        Node { value, pos }
    }

    /// The value of `key` if this is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .rev()
                .find(|(k, _)| k.name == key)
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// Renders the tree as compact JSON (used for `TypedStruct` and diagnostics).
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Number(Number::Int(i)) => serde_json::Value::from(*i),
            Value::Number(Number::Float(f)) => serde_json::Number::from_f64(*f)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            Value::String(s) => serde_json::Value::String(s.clone()),
            Value::List(items) => {
                serde_json::Value::Array(items.iter().map(Node::to_json).collect())
            }
            Value::Map(entries) => {
                let mut map = serde_json::Map::new();
                for (k, v) in entries {
                    map.insert(k.name.clone(), v.to_json());
                }
                serde_json::Value::Object(map)
            }
        }
    }

    /// Builds a tree (without positions) from a protobuf `Struct`-like JSON value.
    pub fn from_json(value: &serde_json::Value) -> Node {
        let pos = Pos::default();
        let value = match value {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Number(Number::Int(i)),
                None => Value::Number(Number::Float(n.as_f64().unwrap_or(f64::NAN))),
            },
            serde_json::Value::String(s) => Value::String(s.clone()),
            serde_json::Value::Array(items) => {
                Value::List(items.iter().map(Node::from_json).collect())
            }
            serde_json::Value::Object(map) => Value::Map(
                map.iter()
                    .map(|(k, v)| {
                        (
                            Key {
                                name: k.clone(),
                                pos,
                            },
                            Node::from_json(v),
                        )
                    })
                    .collect(),
            ),
        };
        Node { value, pos }
    }
}
