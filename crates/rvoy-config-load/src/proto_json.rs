//! The proto3 JSON mapping from a [`Node`] tree into a [`DynamicMessage`], as
//! Envoy's loader applies it.
//!
//! Envoy parses JSON with protobuf's parser in "legacy" mode with
//! `case_insensitive_enum_parsing`, then retries with `ignore_unknown_fields` to
//! tell unknown fields (a policy decision) from real errors. Reading the tree
//! ourselves gives the same verdicts in one pass, plus what protobuf cannot
//! give: every error has its line and column, and unknown names get a
//! did-you-mean. Behaviours matched against Envoy 1.40:
//! - field names in `snake_case` or `lowerCamelCase`;
//! - enums by name in any case, or by number; an unknown enum name counts as an
//!   unknown field;
//! - integers from numbers without a fraction or from decimal strings; bools
//!   also from strings as absl's `SimpleAtob` reads them (`"yes"`, `"1"`,
//!   `"F"`...); floats also from `"NaN"`/`"Infinity"`;
//! - `Duration` as `"1.5s"` or `{seconds, nanos}`; wrappers as bare scalars;
//!   `Struct`/`Value`/`ListValue`, `Timestamp`, `FieldMask`, `Empty`;
//! - `Any` as `{"@type": ..., fields...}` with the type resolved in the pool;
//!   an unknown type is an error; `TypedStruct` contents are also read as the
//!   message they name, when the pool has it;
//! - `null` leaves a field unset; two members of one oneof are an error;
//! - repeated fields in protobuf's legacy syntax: a single value stands for a
//!   one-element list, a `null` item is the type's default, and a list nested
//!   in the list is flattened into it (not for `Value`/`ListValue` items).

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use prost_reflect::ReflectMessage as _;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor,
    Value as PValue,
};

use crate::error::{ConfigError, ErrorKind, FieldPath, Location, Seg, did_you_mean};
use crate::node::{Node, Number, Pos, Value};

/// The message names that have a special JSON form.
pub(crate) const ANY: &str = "google.protobuf.Any";
const DURATION: &str = "google.protobuf.Duration";
const TIMESTAMP: &str = "google.protobuf.Timestamp";
const FIELD_MASK: &str = "google.protobuf.FieldMask";
const STRUCT: &str = "google.protobuf.Struct";
const VALUE: &str = "google.protobuf.Value";
const LIST_VALUE: &str = "google.protobuf.ListValue";
const EMPTY: &str = "google.protobuf.Empty";
pub(crate) const TYPED_STRUCT_UDPA: &str = "udpa.type.v1.TypedStruct";
pub(crate) const TYPED_STRUCT_XDS: &str = "xds.type.v3.TypedStruct";

fn is_wrapper(name: &str) -> bool {
    matches!(
        name,
        "google.protobuf.DoubleValue"
            | "google.protobuf.FloatValue"
            | "google.protobuf.Int64Value"
            | "google.protobuf.UInt64Value"
            | "google.protobuf.Int32Value"
            | "google.protobuf.UInt32Value"
            | "google.protobuf.BoolValue"
            | "google.protobuf.StringValue"
            | "google.protobuf.BytesValue"
    )
}

/// Whether the JSON form of `name` is not an object of its fields (so that
/// inside an `Any` it sits under `"value"`).
fn has_special_json(name: &str) -> bool {
    is_wrapper(name)
        || matches!(
            name,
            DURATION | TIMESTAMP | FIELD_MASK | STRUCT | VALUE | LIST_VALUE
        )
}

/// The outcome of reading one document.
pub struct Parsed {
    pub message: DynamicMessage,
    /// Type errors, bad values, unknown `@type`s...: any of them fails the load.
    pub errors: Vec<ConfigError>,
    /// Unknown fields and enum names: whether they fail depends on the policy.
    pub unknown_fields: Vec<ConfigError>,
}

/// Reads `node` as a message of type `desc`.
pub fn parse_message(
    pool: &DescriptorPool,
    node: &Node,
    desc: &MessageDescriptor,
    file: Option<Arc<str>>,
    base: FieldPath,
) -> Parsed {
    let mut reader = Reader {
        pool,
        file,
        base,
        segs: Vec::new(),
        errors: Vec::new(),
        unknown: Vec::new(),
    };
    let message = reader.message(node, desc);
    Parsed {
        message,
        errors: reader.errors,
        unknown_fields: reader.unknown,
    }
}

struct Reader<'a> {
    pool: &'a DescriptorPool,
    file: Option<Arc<str>>,
    /// Where the document sits.
    base: FieldPath,
    /// The way from `base` to the value being read; a [`FieldPath`] is made
    /// of it only for an error (most fields have none).
    segs: Vec<PathSeg>,
    errors: Vec<ConfigError>,
    unknown: Vec<ConfigError>,
}

/// One step of [`Reader::segs`]: a field as its descriptor, which costs no
/// allocation to push.
enum PathSeg {
    Field(FieldDescriptor),
    Name(&'static str),
    Index(usize),
    Key(Arc<str>),
}

impl Reader<'_> {
    /// The path of the value being read.
    fn path(&self) -> FieldPath {
        let mut path = self.base.clone();
        path.0.extend(self.segs.iter().map(|seg| match seg {
            PathSeg::Field(field) => Seg::Field(field.name().into()),
            PathSeg::Name(name) => Seg::Field((*name).into()),
            PathSeg::Index(i) => Seg::Index(*i),
            PathSeg::Key(key) => Seg::Key(key.clone()),
        }));
        path
    }

    fn location(&self, pos: Pos) -> Option<Location> {
        match (&self.file, pos.line) {
            (Some(file), line) if line > 0 => Some(Location {
                file: file.clone(),
                pos,
            }),
            _ => None,
        }
    }

    fn error(&mut self, pos: Pos, message: impl Into<String>) {
        let e = ConfigError::new(ErrorKind::Type, self.path(), message).at(self.location(pos));
        self.errors.push(e);
    }

    fn type_error(&mut self, node: &Node, expected: &str) {
        self.error(
            node.pos,
            format!("expected {expected}, got {}", describe(&node.value)),
        );
    }

    /// Reads a message (including the well-known types).
    fn message(&mut self, node: &Node, desc: &MessageDescriptor) -> DynamicMessage {
        let mut msg = DynamicMessage::new(desc.clone());
        match desc.full_name() {
            ANY => self.any(node, &mut msg),
            DURATION => self.duration(node, &mut msg),
            TIMESTAMP => self.timestamp(node, &mut msg),
            FIELD_MASK => self.field_mask(node, &mut msg),
            STRUCT => self.struct_fields(node, &mut msg),
            VALUE => self.value_kind(node, &mut msg),
            LIST_VALUE => self.list_value(node, &mut msg),
            EMPTY => {
                if !matches!(&node.value, Value::Map(e) if e.is_empty()) {
                    self.type_error(node, "an empty mapping");
                }
            }
            name if is_wrapper(name) => self.wrapper(node, &mut msg),
            _ => self.fields(node, desc, &mut msg, &[]),
        }
        msg
    }

    /// Reads the fields of an ordinary message from a mapping.
    fn fields(
        &mut self,
        node: &Node,
        desc: &MessageDescriptor,
        msg: &mut DynamicMessage,
        skip: &[&str],
    ) {
        let entries = match &node.value {
            Value::Map(entries) => entries,
            _ => {
                self.type_error(node, &format!("a mapping for {}", desc.full_name()));
                return;
            }
        };
        // The oneofs set so far, with the member that set each.
        let mut oneofs_set: Vec<(prost_reflect::OneofDescriptor, FieldDescriptor)> = Vec::new();
        for (key, value) in entries {
            if skip.contains(&key.name.as_str()) {
                continue;
            }
            let field = desc
                .get_field_by_name(&key.name)
                .or_else(|| desc.get_field_by_json_name(&key.name));
            let Some(field) = field else {
                self.unknown_field(desc, &key.name, key.pos);
                continue;
            };
            if matches!(value.value, Value::Null) && !accepts_null(&field) {
                continue;
            }
            if let Some(oneof) = field.containing_oneof().filter(|o| !o.is_synthetic()) {
                if let Some((_, previous)) = oneofs_set.iter_mut().find(|(o, _)| *o == oneof) {
                    // The next member met is reported against this one.
                    let previous = std::mem::replace(previous, field.clone());
                    let message = format!(
                        "'{}' and '{}' are both set, but they are alternatives (oneof '{}')",
                        field.name(),
                        previous.name(),
                        oneof.name()
                    );
                    self.segs.push(PathSeg::Field(field.clone()));
                    self.error(key.pos, message);
                    self.segs.pop();
                    continue;
                }
                oneofs_set.push((oneof, field.clone()));
            }
            self.segs.push(PathSeg::Field(field.clone()));
            if let Some(v) = self.field_value(value, &field) {
                msg.set_field(&field, v);
            }
            self.segs.pop();
        }
    }

    fn unknown_field(&mut self, desc: &MessageDescriptor, name: &str, pos: Pos) {
        let prefix = snake(desc.name());
        let hint = did_you_mean(
            name,
            desc.fields().flat_map(|f| {
                let n = f.name().to_owned();
                [(n.clone(), n.clone()), (format!("{prefix}_{n}"), n)]
            }),
        );
        let e = ConfigError::new(
            ErrorKind::UnknownField,
            self.path(),
            format!("unknown field '{name}'"),
        )
        .at(self.location(pos))
        .with_hint(hint);
        self.unknown.push(e);
    }

    /// Reads the value of one field (repeated and map fields whole).
    fn field_value(&mut self, node: &Node, field: &FieldDescriptor) -> Option<PValue> {
        if field.is_map() {
            return self.map(node, field);
        }
        if field.is_list() {
            let kind = field.kind();
            let Value::List(items) = &node.value else {
                if matches!(node.value, Value::Null) {
                    return None;
                }
                // Legacy syntax: a single element in place of a list of them.
                self.segs.push(PathSeg::Index(0));
                let one = self.single(node, &kind);
                self.segs.pop();
                return Some(PValue::List(one.into_iter().collect()));
            };
            let mut out = Vec::with_capacity(items.len());
            let mut index = 0;
            self.list_items(items, &kind, &mut out, &mut index);
            return Some(PValue::List(out));
        }
        self.single(node, &field.kind())
    }

    /// Reads the items of a repeated field the way protobuf's legacy JSON
    /// syntax does: a `null` item is the type's default value, and a list
    /// nested in the list is flattened into it (except for `Value` and
    /// `ListValue` items, where a list is a value of its own).
    fn list_items(
        &mut self,
        items: &[Node],
        kind: &Kind,
        out: &mut Vec<PValue>,
        index: &mut usize,
    ) {
        let keeps_lists =
            matches!(kind, Kind::Message(m) if matches!(m.full_name(), VALUE | LIST_VALUE));
        for item in items {
            if let (Value::List(inner), false) = (&item.value, keeps_lists) {
                self.list_items(inner, kind, out, index);
                continue;
            }
            self.segs.push(PathSeg::Index(*index));
            let value = if matches!(item.value, Value::Null) {
                Some(null_item(kind))
            } else {
                self.single(item, kind)
            };
            out.extend(value);
            self.segs.pop();
            *index += 1;
        }
    }

    fn map(&mut self, node: &Node, field: &FieldDescriptor) -> Option<PValue> {
        let Value::Map(entries) = &node.value else {
            if matches!(node.value, Value::Null) {
                return None;
            }
            self.type_error(node, "a mapping");
            return None;
        };
        let Kind::Message(entry) = field.kind() else {
            return None;
        };
        let key_kind = entry.map_entry_key_field().kind();
        let value_kind = entry.map_entry_value_field().kind();
        let mut out = HashMap::with_capacity(entries.len());
        for (key, value) in entries {
            self.segs.push(PathSeg::Key(key.name.as_str().into()));
            let map_key = match key_kind {
                Kind::String => Some(MapKey::String(key.name.clone())),
                Kind::Bool => match key.name.as_str() {
                    "true" => Some(MapKey::Bool(true)),
                    "false" => Some(MapKey::Bool(false)),
                    _ => None,
                },
                Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                    key.name.parse().ok().map(MapKey::I32)
                }
                Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                    key.name.parse().ok().map(MapKey::I64)
                }
                Kind::Uint32 | Kind::Fixed32 => key.name.parse().ok().map(MapKey::U32),
                Kind::Uint64 | Kind::Fixed64 => key.name.parse().ok().map(MapKey::U64),
                _ => None,
            };
            match map_key {
                None => self.error(
                    key.pos,
                    format!("'{}' is not a valid map key here", key.name),
                ),
                Some(k) => {
                    if let Some(v) = self.single(value, &value_kind) {
                        out.insert(k, v);
                    }
                }
            }
            self.segs.pop();
        }
        Some(PValue::Map(out))
    }

    /// Reads a single (non-repeated) value of `kind`.
    fn single(&mut self, node: &Node, kind: &Kind) -> Option<PValue> {
        match kind {
            Kind::Message(desc) => {
                if matches!(node.value, Value::Null) && desc.full_name() != VALUE {
                    return Some(PValue::Message(DynamicMessage::new(desc.clone())));
                }
                Some(PValue::Message(self.message(node, desc)))
            }
            Kind::Enum(e) => self.enumeration(node, e),
            Kind::String => match &node.value {
                Value::String(s) => Some(PValue::String(s.clone())),
                _ => {
                    self.type_error(node, "a string");
                    None
                }
            },
            Kind::Bytes => match &node.value {
                Value::String(s) => match decode_base64(s) {
                    Some(b) => Some(PValue::Bytes(b.into())),
                    None => {
                        self.error(node.pos, "expected base64-encoded bytes");
                        None
                    }
                },
                _ => {
                    self.type_error(node, "a base64 string");
                    None
                }
            },
            Kind::Bool => match &node.value {
                Value::Bool(b) => Some(PValue::Bool(*b)),
                Value::String(s) => match simple_atob(s) {
                    Some(b) => Some(PValue::Bool(b)),
                    None => {
                        self.error(node.pos, format!("expected 'true' or 'false', got '{s}'"));
                        None
                    }
                },
                _ => {
                    self.type_error(node, "a boolean");
                    None
                }
            },
            Kind::Double | Kind::Float => {
                let f = match &node.value {
                    Value::Number(n) => Some(n.as_f64()),
                    Value::String(s) => match s.as_str() {
                        "NaN" => Some(f64::NAN),
                        "Infinity" => Some(f64::INFINITY),
                        "-Infinity" => Some(f64::NEG_INFINITY),
                        other => other.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
                    },
                    _ => None,
                };
                match f {
                    None => {
                        self.type_error(node, "a number");
                        None
                    }
                    Some(f) if matches!(kind, Kind::Float) => {
                        if f.is_finite() && f.abs() > f64::from(f32::MAX) {
                            self.error(node.pos, format!("{f} is out of range for a float"));
                            return None;
                        }
                        Some(PValue::F32(f as f32))
                    }
                    Some(f) => Some(PValue::F64(f)),
                }
            }
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => self
                .integer(node, i128::from(i32::MIN), i128::from(i32::MAX), "int32")
                .map(|i| PValue::I32(i as i32)),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => self
                .integer(node, i128::from(i64::MIN), i128::from(i64::MAX), "int64")
                .map(|i| PValue::I64(i as i64)),
            Kind::Uint32 | Kind::Fixed32 => self
                .integer(node, 0, i128::from(u32::MAX), "uint32")
                .map(|i| PValue::U32(i as u32)),
            Kind::Uint64 | Kind::Fixed64 => self
                .integer(node, 0, i128::from(u64::MAX), "uint64")
                .map(|i| PValue::U64(i as u64)),
        }
    }

    fn integer(&mut self, node: &Node, min: i128, max: i128, type_name: &str) -> Option<i128> {
        let value = match &node.value {
            Value::Number(n) => match n.as_integer() {
                Some(i) => i,
                None => {
                    self.error(
                        node.pos,
                        format!("expected an integer ({type_name}), got {n}"),
                    );
                    return None;
                }
            },
            Value::String(s) => match s.trim().parse::<i128>() {
                Ok(i) => i,
                Err(_) => match s
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .and_then(|f| Number::Float(f).as_integer())
                {
                    Some(i) => i,
                    None => {
                        self.error(
                            node.pos,
                            format!("expected an integer ({type_name}), got '{s}'"),
                        );
                        return None;
                    }
                },
            },
            _ => {
                self.type_error(node, &format!("an integer ({type_name})"));
                return None;
            }
        };
        if value < min || value > max {
            self.error(node.pos, format!("{value} is out of range for {type_name}"));
            return None;
        }
        Some(value)
    }

    fn enumeration(&mut self, node: &Node, e: &prost_reflect::EnumDescriptor) -> Option<PValue> {
        match &node.value {
            Value::Null if e.full_name() == "google.protobuf.NullValue" => {
                Some(PValue::EnumNumber(0))
            }
            Value::String(s) => {
                let found = e.get_value_by_name(s).or_else(|| {
                    let upper = s.to_ascii_uppercase();
                    e.values().find(|v| v.name().eq_ignore_ascii_case(&upper))
                });
                match found {
                    Some(v) => Some(PValue::EnumNumber(v.number())),
                    None => {
                        let hint = did_you_mean(
                            s,
                            e.values()
                                .map(|v| (v.name().to_owned(), v.name().to_owned())),
                        );
                        let err = ConfigError::new(
                            ErrorKind::UnknownField,
                            self.path(),
                            format!("unknown value '{s}' for enum {}", e.full_name()),
                        )
                        .at(self.location(node.pos))
                        .with_hint(hint);
                        self.unknown.push(err);
                        None
                    }
                }
            }
            Value::Number(n) => match n.as_integer().and_then(|i| i32::try_from(i).ok()) {
                Some(i) => Some(PValue::EnumNumber(i)),
                None => {
                    self.error(
                        node.pos,
                        format!("{n} is not a valid value for enum {}", e.full_name()),
                    );
                    None
                }
            },
            _ => {
                self.type_error(node, &format!("a name of enum {}", e.full_name()));
                None
            }
        }
    }

    fn any(&mut self, node: &Node, msg: &mut DynamicMessage) {
        let Value::Map(entries) = &node.value else {
            self.type_error(node, "a mapping with \"@type\"");
            return;
        };
        if entries.is_empty() {
            return;
        }
        let Some(type_node) = node.get("@type") else {
            self.error(
                node.pos,
                "missing \"@type\" in an Any (typed_config needs one)",
            );
            return;
        };
        let Value::String(type_url) = &type_node.value else {
            self.type_error(type_node, "a type URL string for \"@type\"");
            return;
        };
        let type_name = type_url.rsplit('/').next().unwrap_or(type_url);
        let Some(inner_desc) = self.pool.get_message_by_name(type_name) else {
            self.error(type_node.pos, format!("could not find @type '{type_url}'"));
            return;
        };
        let inner = if has_special_json(inner_desc.full_name()) {
            for (key, _) in entries {
                if key.name != "@type" && key.name != "value" {
                    self.unknown_field(&inner_desc, &key.name, key.pos);
                }
            }
            match node.get("value") {
                Some(v) => self.message(v, &inner_desc),
                None => DynamicMessage::new(inner_desc.clone()),
            }
        } else {
            let mut inner = DynamicMessage::new(inner_desc.clone());
            self.fields(node, &inner_desc, &mut inner, &["@type"]);
            inner
        };
        if matches!(inner_desc.full_name(), TYPED_STRUCT_UDPA | TYPED_STRUCT_XDS) {
            self.typed_struct_contents(node);
        }
        let encoded = crate::wire::encode(&inner);
        crate::any::remember_decoded(&encoded, inner);
        msg.set_field_by_number(1, PValue::String(type_url.clone()));
        msg.set_field_by_number(2, PValue::Bytes(encoded.into()));
    }

    /// Reads a TypedStruct's `value` as the message its `type_url` names (when the
    /// pool has it), so its mistakes are reported with their positions.
    fn typed_struct_contents(&mut self, node: &Node) {
        let Some(Value::String(inner_url)) = node.get("type_url").map(|n| &n.value) else {
            return;
        };
        let name = inner_url.rsplit('/').next().unwrap_or(inner_url);
        let Some(desc) = self.pool.get_message_by_name(name) else {
            return;
        };
        let empty = Node::new(Value::Map(Vec::new()), node.pos);
        let value = node.get("value").unwrap_or(&empty);
        self.segs.push(PathSeg::Name("value"));
        let _ = self.message(value, &desc);
        self.segs.pop();
    }

    fn duration(&mut self, node: &Node, msg: &mut DynamicMessage) {
        match &node.value {
            Value::String(s) => match parse_duration(s) {
                Some((secs, nanos)) => {
                    msg.set_field_by_number(1, PValue::I64(secs));
                    msg.set_field_by_number(2, PValue::I32(nanos));
                }
                None => self.error(
                    node.pos,
                    format!("'{s}' is not a duration (write it like \"1.5s\")"),
                ),
            },
            Value::Map(_) => {
                let desc = msg.descriptor();
                self.fields(node, &desc, msg, &[]);
            }
            _ => self.type_error(node, "a duration string like \"1.5s\""),
        }
    }

    fn timestamp(&mut self, node: &Node, msg: &mut DynamicMessage) {
        let Value::String(s) = &node.value else {
            self.type_error(node, "an RFC 3339 timestamp string");
            return;
        };
        match chrono::DateTime::parse_from_rfc3339(s) {
            Ok(t) => {
                msg.set_field_by_number(1, PValue::I64(t.timestamp()));
                msg.set_field_by_number(2, PValue::I32(t.timestamp_subsec_nanos() as i32));
            }
            Err(_) => self.error(node.pos, format!("'{s}' is not an RFC 3339 timestamp")),
        }
    }

    fn field_mask(&mut self, node: &Node, msg: &mut DynamicMessage) {
        let Value::String(s) = &node.value else {
            self.type_error(node, "a comma-separated field mask string");
            return;
        };
        let paths: Vec<PValue> = s
            .split(',')
            .filter(|p| !p.is_empty())
            .map(|p| PValue::String(p.split('.').map(snake).collect::<Vec<_>>().join(".")))
            .collect();
        msg.set_field_by_number(1, PValue::List(paths));
    }

    fn wrapper(&mut self, node: &Node, msg: &mut DynamicMessage) {
        let desc = msg.descriptor();
        let Some(field) = desc.get_field(1) else {
            return;
        };
        if let Value::Map(entries) = &node.value
            && entries.iter().all(|(k, _)| k.name == "value")
        {
            self.fields(node, &desc, msg, &[]);
            return;
        }
        if let Some(v) = self.single(node, &field.kind()) {
            msg.set_field(&field, v);
        }
    }

    fn struct_fields(&mut self, node: &Node, msg: &mut DynamicMessage) {
        let Value::Map(entries) = &node.value else {
            self.type_error(node, "a mapping");
            return;
        };
        let value_desc = self.value_descriptor();
        let mut fields = HashMap::with_capacity(entries.len());
        for (key, value) in entries {
            self.segs.push(PathSeg::Key(key.name.as_str().into()));
            let mut v = DynamicMessage::new(value_desc.clone());
            self.value_kind(value, &mut v);
            fields.insert(MapKey::String(key.name.clone()), PValue::Message(v));
            self.segs.pop();
        }
        msg.set_field_by_number(1, PValue::Map(fields));
    }

    fn list_value(&mut self, node: &Node, msg: &mut DynamicMessage) {
        let Value::List(items) = &node.value else {
            self.type_error(node, "a list");
            return;
        };
        let value_desc = self.value_descriptor();
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            self.segs.push(PathSeg::Index(i));
            let mut v = DynamicMessage::new(value_desc.clone());
            self.value_kind(item, &mut v);
            out.push(PValue::Message(v));
            self.segs.pop();
        }
        msg.set_field_by_number(1, PValue::List(out));
    }

    /// Fills a `google.protobuf.Value` from any node.
    fn value_kind(&mut self, node: &Node, msg: &mut DynamicMessage) {
        match &node.value {
            Value::Null => msg.set_field_by_number(1, PValue::EnumNumber(0)),
            Value::Number(n) => msg.set_field_by_number(2, PValue::F64(n.as_f64())),
            Value::String(s) => msg.set_field_by_number(3, PValue::String(s.clone())),
            Value::Bool(b) => msg.set_field_by_number(4, PValue::Bool(*b)),
            Value::Map(_) => {
                let desc = self.struct_descriptor();
                let mut s = DynamicMessage::new(desc);
                self.struct_fields(node, &mut s);
                msg.set_field_by_number(5, PValue::Message(s));
            }
            Value::List(_) => {
                let desc = self.list_descriptor();
                let mut l = DynamicMessage::new(desc);
                self.list_value(node, &mut l);
                msg.set_field_by_number(6, PValue::Message(l));
            }
        }
    }

    fn value_descriptor(&self) -> MessageDescriptor {
        self.pool.get_message_by_name(VALUE).expect("WKT in pool")
    }
    fn struct_descriptor(&self) -> MessageDescriptor {
        self.pool.get_message_by_name(STRUCT).expect("WKT in pool")
    }
    fn list_descriptor(&self) -> MessageDescriptor {
        self.pool
            .get_message_by_name(LIST_VALUE)
            .expect("WKT in pool")
    }
}

/// A boolean from a string as absl's `SimpleAtob` reads it (what protobuf's
/// legacy JSON syntax uses): `true`/`t`/`yes`/`y`/`1` and
/// `false`/`f`/`no`/`n`/`0`, in any case.
fn simple_atob(s: &str) -> Option<bool> {
    const TRUE: [&str; 5] = ["true", "t", "yes", "y", "1"];
    const FALSE: [&str; 5] = ["false", "f", "no", "n", "0"];
    if TRUE.iter().any(|t| t.eq_ignore_ascii_case(s)) {
        Some(true)
    } else if FALSE.iter().any(|f| f.eq_ignore_ascii_case(s)) {
        Some(false)
    } else {
        None
    }
}

/// What a `null` item of a repeated field reads as: the type's default
/// (`null` itself for `Value`).
fn null_item(kind: &Kind) -> PValue {
    match kind {
        Kind::Message(m) => {
            let mut msg = DynamicMessage::new(m.clone());
            if m.full_name() == VALUE {
                msg.set_field_by_number(1, PValue::EnumNumber(0));
            }
            PValue::Message(msg)
        }
        Kind::Enum(_) => PValue::EnumNumber(0),
        Kind::String => PValue::String(String::new()),
        Kind::Bytes => PValue::Bytes(Default::default()),
        Kind::Bool => PValue::Bool(false),
        Kind::Double => PValue::F64(0.0),
        Kind::Float => PValue::F32(0.0),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => PValue::I32(0),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => PValue::I64(0),
        Kind::Uint32 | Kind::Fixed32 => PValue::U32(0),
        Kind::Uint64 | Kind::Fixed64 => PValue::U64(0),
    }
}

/// `null` means "unset" except where the type has a null of its own.
fn accepts_null(field: &FieldDescriptor) -> bool {
    match field.kind() {
        Kind::Message(m) => m.full_name() == VALUE && !field.is_list() && !field.is_map(),
        Kind::Enum(e) => e.full_name() == "google.protobuf.NullValue",
        _ => false,
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("the string '{s}'"),
        Value::Number(n) => format!("the number {n}"),
        Value::Bool(b) => {
            format!("the boolean {b} (in Envoy's YAML, yes/no/on/off are booleans; quote them)")
        }
        other => other.kind().to_owned(),
    }
}

/// `lowerCamelCase` or `CamelCase` to `snake_case`.
pub(crate) fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let engines = [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    engines.iter().find_map(|e| e.decode(s.trim()).ok())
}

/// Parses the proto3 JSON form of a Duration: `[-]SECONDS[.FRACTION]s`.
pub(crate) fn parse_duration(s: &str) -> Option<(i64, i32)> {
    let body = s.strip_suffix('s')?;
    let (negative, body) = match body.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, body),
    };
    let (whole, frac) = match body.split_once('.') {
        Some((w, f)) => (w, f),
        None => (body, ""),
    };
    if (whole.is_empty() && frac.is_empty())
        || !whole.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
        || frac.len() > 9
    {
        return None;
    }
    let secs: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let nanos: i32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    if secs > 315_576_000_000 {
        return None;
    }
    Some(if negative {
        (-secs, -nanos)
    } else {
        (secs, nanos)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse_yaml;

    fn cluster(yaml: &str) -> Parsed {
        let pool = &rvoy_api::descriptor_pool();
        let desc = pool
            .get_message_by_name("envoy.config.cluster.v3.Cluster")
            .expect("Cluster");
        let node = parse_yaml(yaml).expect("yaml");
        parse_message(pool, &node, &desc, Some("c.yaml".into()), FieldPath::root())
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1s"), Some((1, 0)));
        assert_eq!(parse_duration("0.25s"), Some((0, 250_000_000)));
        assert_eq!(parse_duration("1.000000001s"), Some((1, 1)));
        assert_eq!(parse_duration("-1.5s"), Some((-1, -500_000_000)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("s"), None);
    }

    #[test]
    #[allow(deprecated)]
    fn reads_a_cluster_with_envoy_leniencies() {
        let p = cluster(
            "name: c\ntype: strict_dns\nlbPolicy: Round_Robin\nconnect_timeout: {seconds: 2}\nper_connection_buffer_limit_bytes: '15'\nrespect_dns_ttl: 'true'\n",
        );
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert!(p.unknown_fields.is_empty(), "{:?}", p.unknown_fields);
        let c: rvoy_api::envoy::config::cluster::v3::Cluster =
            p.message.transcode_to().expect("transcode");
        assert_eq!(c.name, "c");
        assert_eq!(c.connect_timeout.map(|d| d.seconds), Some(2));
        assert_eq!(c.per_connection_buffer_limit_bytes, Some(15));
        assert!(c.respect_dns_ttl);
    }

    #[test]
    fn repeated_fields_take_legacy_forms() {
        let pool = &rvoy_api::descriptor_pool();
        let desc = pool
            .get_message_by_name("envoy.config.route.v3.VirtualHost")
            .expect("VirtualHost");
        let read = |yaml: &str| {
            let node = parse_yaml(yaml).expect("yaml");
            let p = parse_message(pool, &node, &desc, None, FieldPath::root());
            assert!(p.errors.is_empty(), "{:?}", p.errors);
            let vh: rvoy_api::envoy::config::route::v3::VirtualHost =
                p.message.transcode_to().expect("transcode");
            vh
        };
        // A single value in place of a list, for scalars and messages.
        let vh = read("name: v\ndomains: '*'\nroutes: {match: {prefix: /}}\n");
        assert_eq!(vh.domains, ["*"]);
        assert_eq!(vh.routes.len(), 1);
        // Nested lists are flattened; null items are defaults.
        let vh = read("name: v\ndomains: [a, [b, [c]], null]\nroutes: [null]\n");
        assert_eq!(vh.domains, ["a", "b", "c", ""]);
        assert_eq!(vh.routes.len(), 1);
        // A null list is no list.
        let vh = read("name: v\ndomains: null\n");
        assert!(vh.domains.is_empty());
    }

    #[test]
    #[allow(deprecated)]
    fn bools_from_strings_as_simple_atob() {
        for (text, want) in [
            ("'yes'", true),
            ("'T'", true),
            ("'1'", true),
            ("'n'", false),
        ] {
            let p = cluster(&format!("name: c\nrespect_dns_ttl: {text}\n"));
            assert!(p.errors.is_empty(), "{text}: {:?}", p.errors);
            let c: rvoy_api::envoy::config::cluster::v3::Cluster =
                p.message.transcode_to().expect("transcode");
            assert_eq!(c.respect_dns_ttl, want, "{text}");
        }
        let p = cluster("name: c\nrespect_dns_ttl: 'on'\n");
        assert_eq!(p.errors.len(), 1);
    }

    #[test]
    fn unknown_field_has_position_and_hint() {
        let p = cluster("name: c\ncluster_nme: x\n");
        let e = &p.unknown_fields[0];
        assert_eq!(
            e.to_string(),
            "unknown field 'cluster_nme' at c.yaml:2:1; did you mean 'name'?"
        );
    }

    #[test]
    fn type_errors() {
        let p = cluster("name: 123\n");
        assert_eq!(p.errors.len(), 1);
        assert!(
            p.errors[0].to_string().contains("expected a string"),
            "{}",
            p.errors[0]
        );
        let p = cluster("name: c\nper_connection_buffer_limit_bytes: 1.5\n");
        assert!(
            p.errors[0].to_string().contains("integer"),
            "{}",
            p.errors[0]
        );
        let p = cluster("name: c\nconnect_timeout: 5\n");
        assert_eq!(p.errors.len(), 1);
    }

    #[test]
    fn unknown_enum_value_is_an_unknown_field() {
        let p = cluster("name: c\nlb_policy: ROUND_ROBN\n");
        assert!(p.errors.is_empty());
        assert_eq!(
            p.unknown_fields[0].hint.as_deref(),
            Some("did you mean 'ROUND_ROBIN'?")
        );
    }

    #[test]
    fn oneof_members_conflict() {
        let pool = &rvoy_api::descriptor_pool();
        let desc = pool
            .get_message_by_name("envoy.config.route.v3.Route")
            .expect("Route");
        let node = parse_yaml(
            "match: {prefix: /}\ndirect_response: {status: 200}\nredirect: {path_redirect: /x}\n",
        )
        .expect("yaml");
        let p = parse_message(pool, &node, &desc, None, FieldPath::root());
        assert_eq!(p.errors.len(), 1, "{:?}", p.errors);
        assert_eq!(p.errors[0].path.to_string(), "redirect");
    }

    #[test]
    fn any_is_resolved_and_unknown_types_fail() {
        let pool = &rvoy_api::descriptor_pool();
        let desc = pool
            .get_message_by_name("envoy.config.listener.v3.Filter")
            .expect("Filter");
        let ok = parse_yaml(
            "name: hcm\ntyped_config:\n  '@type': type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager\n  stat_prefix: x\n  bogus: 1\n",
        )
        .expect("yaml");
        let p = parse_message(pool, &ok, &desc, None, FieldPath::root());
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert_eq!(p.unknown_fields.len(), 1);
        assert_eq!(p.unknown_fields[0].path.to_string(), "typed_config");
        let bad = parse_yaml("name: x\ntyped_config: {'@type': type.googleapis.com/nope.Nope}\n")
            .expect("yaml");
        let p = parse_message(pool, &bad, &desc, None, FieldPath::root());
        assert!(p.errors[0].message.contains("could not find @type"));
    }

    #[test]
    fn struct_and_value() {
        let pool = &rvoy_api::descriptor_pool();
        let desc = pool
            .get_message_by_name("envoy.config.core.v3.Metadata")
            .expect("Metadata");
        let node =
            parse_yaml("filter_metadata:\n  envoy.lb: {a: 1, b: [x, null, true], c: {d: e}}\n")
                .expect("yaml");
        let p = parse_message(pool, &node, &desc, None, FieldPath::root());
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        let m: rvoy_api::envoy::config::core::v3::Metadata = p.message.transcode_to().expect("t");
        assert_eq!(m.filter_metadata["envoy.lb"].fields.len(), 3);
    }
}
