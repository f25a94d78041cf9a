//! Which descriptor options the embedded set keeps, and the wire-level
//! rewrite of a `FileDescriptorProto` that takes the others out (part of the
//! build script).
//!
//! Decoding a descriptor pool resolves every options message of every
//! descriptor (a decode and a re-encode of each), which was a quarter of the
//! pool's decode time. So the embedded set keeps only the built-in options
//! the pool itself needs on messages, fields, enums and enum values
//! (`map_entry`, `packed`, `allow_alias`, `deprecated`: field numbers below
//! 1000 of `google.protobuf.*Options`) and no file, service or method options
//! at all. The custom options (extensions) rvoy reads, `validate.*` (the PGV
//! checks) and Envoy's `disallowed_by_default` annotations (the deprecation
//! checks), move to a side table, [`CustomOptions`], that rvoy decodes for
//! the descriptors a config uses. Every other custom option is dropped. Add
//! an extension's full name to `KEPT_EXTENSIONS` before reading it.

use prost::encoding::{decode_varint, encode_varint};

/// The custom options rvoy reads, by full name.
const KEPT_EXTENSIONS: &[&str] = &[
    "validate.rules",
    "validate.disabled",
    "validate.ignored",
    "validate.required",
    "envoy.annotations.disallowed_by_default",
    "envoy.annotations.disallowed_by_default_enum",
];

/// Field numbers below this are `google.protobuf.*Options`' own fields.
const FIRST_EXTENSION_NUMBER: u64 = 1000;

/// The extension numbers kept on each kind of options message.
pub struct Kept {
    field: Vec<u64>,
    message: Vec<u64>,
    oneof: Vec<u64>,
    enum_value: Vec<u64>,
}

/// One field of an encoded message: its number, its whole encoding (key
/// included), and its payload when length-delimited.
struct WireField<'a> {
    number: u64,
    raw: &'a [u8],
    payload: Option<&'a [u8]>,
}

/// The fields of an encoded message, in order. Descriptors use no groups.
fn wire_fields(mut buf: &[u8]) -> Vec<WireField<'_>> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let whole = buf;
        let key = decode_varint(&mut buf).expect("a valid descriptor");
        let payload = match key & 7 {
            0 => {
                decode_varint(&mut buf).expect("a valid varint");
                None
            }
            1 => {
                buf = &buf[8..];
                None
            }
            2 => {
                let len = decode_varint(&mut buf).expect("a valid length") as usize;
                let (payload, rest) = buf.split_at(len);
                buf = rest;
                Some(payload)
            }
            5 => {
                buf = &buf[4..];
                None
            }
            w => panic!("wire type {w} in a descriptor"),
        };
        let used = whole.len() - buf.len();
        out.push(WireField {
            number: key >> 3,
            raw: &whole[..used],
            payload,
        });
    }
    out
}

fn push_length_delimited(out: &mut Vec<u8>, number: u64, payload: &[u8]) {
    encode_varint((number << 3) | 2, out);
    encode_varint(payload.len() as u64, out);
    out.extend_from_slice(payload);
}

/// The custom options taken out of the set, by the descriptor they belong
/// to: each an encoded `google.protobuf.*Options` message that holds only
/// kept extensions.
#[derive(Default)]
pub struct CustomOptions {
    /// (message full name, field name, `FieldOptions`).
    fields: Vec<(String, String, Vec<u8>)>,
    /// (message full name, `MessageOptions`).
    messages: Vec<(String, Vec<u8>)>,
    /// (message full name, oneof name, `OneofOptions`).
    oneofs: Vec<(String, String, Vec<u8>)>,
    /// (enum full name, value name, `EnumValueOptions`).
    enum_values: Vec<(String, String, Vec<u8>)>,
}

impl CustomOptions {
    /// Rust source declaring the tables. Everything they hold (names and
    /// encoded options) is in one byte string, `BLOB`, which the tables
    /// index by (offset, length): no pointers, so no relocations to apply at
    /// load, and a lookup touches few pages. Each table is a list of parents
    /// (messages, enums) sorted by name, with the range of their rows.
    pub fn into_rust(mut self) -> String {
        use std::fmt::Write as _;
        let mut blob: Vec<u8> = Vec::new();
        let mut put = |bytes: &[u8]| {
            let offset = u32::try_from(blob.len()).expect("a blob under 4 GiB");
            blob.extend_from_slice(bytes);
            let len = u16::try_from(bytes.len()).expect("an entry under 64 KiB");
            format!("({offset}, {len})")
        };
        let mut out = String::new();
        let tables = [
            (
                "FIELDS",
                "fields, by message",
                std::mem::take(&mut self.fields),
            ),
            (
                "ONEOFS",
                "oneofs, by message",
                std::mem::take(&mut self.oneofs),
            ),
            (
                "ENUM_VALUES",
                "enum values, by enum",
                std::mem::take(&mut self.enum_values),
            ),
            (
                "MESSAGES",
                "messages (each its own single row)",
                std::mem::take(&mut self.messages)
                    .into_iter()
                    .map(|(m, e)| (m, String::new(), e))
                    .collect(),
            ),
        ];
        for (name, what, mut rows) in tables {
            rows.sort();
            // The parents' names first, together, for the binary search.
            let mut parents: Vec<(String, usize, usize)> = Vec::new();
            for (i, (parent, _, _)) in rows.iter().enumerate() {
                match parents.last_mut() {
                    Some((p, _, count)) if p == parent => *count += 1,
                    _ => parents.push((parent.clone(), i, 1)),
                }
            }
            let _ = writeln!(out, "/// The custom options of {what}.");
            let _ = writeln!(out, "pub(crate) static {name}: Table = Table {{");
            out.push_str("    parents: &[\n");
            for (parent, first, count) in &parents {
                let _ = writeln!(
                    out,
                    "        ({}, {first}, {count}),",
                    put(parent.as_bytes())
                );
            }
            out.push_str("    ],\n    rows: &[\n");
            for (_, element, encoded) in &rows {
                let _ = writeln!(
                    out,
                    "        ({}, {}),",
                    put(element.as_bytes()),
                    put(encoded)
                );
            }
            out.push_str("    ],\n};\n");
        }
        out.push_str("/// The names and encoded options the tables index.\n");
        out.push_str("pub(crate) static BLOB: &[u8] = b\"");
        for byte in &blob {
            let _ = write!(out, "\\x{byte:02x}");
        }
        out.push_str("\";\n");
        out
    }
}

/// How a length-delimited field of a descriptor is rewritten.
enum Rewrite {
    Keep,
    /// Replaced by this payload, or dropped.
    Replace(Option<Vec<u8>>),
}

/// Copies `message`, rewriting its length-delimited fields as `how` says.
fn rewrite(message: &[u8], mut how: impl FnMut(u64, &[u8]) -> Rewrite) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len());
    for field in wire_fields(message) {
        let action = match field.payload {
            Some(payload) => how(field.number, payload),
            None => Rewrite::Keep,
        };
        match action {
            Rewrite::Keep => out.extend_from_slice(field.raw),
            Rewrite::Replace(Some(payload)) => {
                push_length_delimited(&mut out, field.number, &payload)
            }
            Rewrite::Replace(None) => {}
        }
    }
    out
}

/// An encoded options message split in two: its built-in options, and the
/// extensions among `kept` (each `None` when there are none). Other
/// extensions are dropped.
fn split_options(options: &[u8], kept: &[u64]) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let (mut builtin, mut custom) = (Vec::new(), Vec::new());
    for option in wire_fields(options) {
        if option.number < FIRST_EXTENSION_NUMBER {
            builtin.extend_from_slice(option.raw);
        } else if kept.contains(&option.number) {
            custom.extend_from_slice(option.raw);
        }
    }
    let some = |v: Vec<u8>| (!v.is_empty()).then_some(v);
    (some(builtin), some(custom))
}

/// The string field `number` of an encoded descriptor (`name` is 1, a
/// file's `package` 2), empty when absent.
fn string_field(descriptor: &[u8], number: u64) -> String {
    wire_fields(descriptor)
        .into_iter()
        .find(|f| f.number == number)
        .and_then(|f| f.payload)
        .map(|p| String::from_utf8(p.to_vec()).expect("a UTF-8 name"))
        .unwrap_or_default()
}

/// `name` inside `scope` (a package or a message's full name).
fn join(scope: &str, name: &str) -> String {
    if scope.is_empty() {
        name.to_owned()
    } else {
        format!("{scope}.{name}")
    }
}

impl Kept {
    /// Looks the kept extensions up among the set's extension declarations.
    pub fn of(fds: &prost_types::FileDescriptorSet) -> Kept {
        let mut kept = Kept {
            field: Vec::new(),
            message: Vec::new(),
            oneof: Vec::new(),
            enum_value: Vec::new(),
        };
        let mut found = 0;
        for file in &fds.file {
            for ext in &file.extension {
                let name = format!("{}.{}", file.package(), ext.name());
                if !KEPT_EXTENSIONS.contains(&name.as_str()) {
                    continue;
                }
                let number = u64::try_from(ext.number()).expect("a positive field number");
                match ext.extendee() {
                    ".google.protobuf.FieldOptions" => kept.field.push(number),
                    ".google.protobuf.MessageOptions" => kept.message.push(number),
                    ".google.protobuf.OneofOptions" => kept.oneof.push(number),
                    ".google.protobuf.EnumValueOptions" => kept.enum_value.push(number),
                    other => panic!("{name} extends {other}, which rvoy does not read"),
                }
                found += 1;
            }
        }
        assert_eq!(
            found,
            KEPT_EXTENSIONS.len(),
            "every kept extension is declared once"
        );
        kept
    }

    /// `FileDescriptorProto`, encoded: rewritten as the module doc says, the
    /// kept custom options going to `custom`.
    pub fn strip_file(&self, file: &[u8], custom: &mut CustomOptions) -> Vec<u8> {
        let package = string_field(file, 2);
        rewrite(file, |number, payload| match number {
            4 => Rewrite::Replace(Some(self.strip_message(payload, &package, custom))),
            5 => Rewrite::Replace(Some(self.strip_enum(payload, &package, custom))),
            6 => Rewrite::Replace(Some(strip_service(payload))),
            7 => Rewrite::Replace(Some(strip_extension(payload))),
            // `FileOptions`.
            8 => Rewrite::Replace(None),
            _ => Rewrite::Keep,
        })
    }

    /// `DescriptorProto` declared in `scope`.
    fn strip_message(&self, message: &[u8], scope: &str, custom: &mut CustomOptions) -> Vec<u8> {
        let name = join(scope, &string_field(message, 1));
        rewrite(message, |number, payload| match number {
            2 => Rewrite::Replace(Some(self.strip_field(payload, &name, custom))),
            3 => Rewrite::Replace(Some(self.strip_message(payload, &name, custom))),
            4 => Rewrite::Replace(Some(self.strip_enum(payload, &name, custom))),
            6 => Rewrite::Replace(Some(strip_extension(payload))),
            7 => {
                let (builtin, kept) = split_options(payload, &self.message);
                if let Some(kept) = kept {
                    custom.messages.push((name.clone(), kept));
                }
                Rewrite::Replace(builtin)
            }
            8 => Rewrite::Replace(Some(self.strip_oneof(payload, &name, custom))),
            _ => Rewrite::Keep,
        })
    }

    /// `FieldDescriptorProto` of a field of `message`.
    fn strip_field(&self, field: &[u8], message: &str, custom: &mut CustomOptions) -> Vec<u8> {
        strip_element(field, 8, &self.field, message, &mut custom.fields)
    }

    /// `OneofDescriptorProto` of `message`.
    fn strip_oneof(&self, oneof: &[u8], message: &str, custom: &mut CustomOptions) -> Vec<u8> {
        strip_element(oneof, 2, &self.oneof, message, &mut custom.oneofs)
    }

    /// `EnumDescriptorProto` declared in `scope`.
    fn strip_enum(&self, enumeration: &[u8], scope: &str, custom: &mut CustomOptions) -> Vec<u8> {
        let name = join(scope, &string_field(enumeration, 1));
        rewrite(enumeration, |number, payload| match number {
            2 => Rewrite::Replace(Some(self.strip_enum_value(payload, &name, custom))),
            3 => Rewrite::Replace(split_options(payload, &[]).0),
            _ => Rewrite::Keep,
        })
    }

    /// `EnumValueDescriptorProto` of `enumeration`.
    fn strip_enum_value(
        &self,
        value: &[u8],
        enumeration: &str,
        custom: &mut CustomOptions,
    ) -> Vec<u8> {
        strip_element(
            value,
            3,
            &self.enum_value,
            enumeration,
            &mut custom.enum_values,
        )
    }
}

/// A descriptor of an element of `parent` (a field, a oneof, an enum value)
/// whose options are its field `options`: the built-in ones stay, those of
/// the extensions `kept` go to `rows` under (`parent`, the element's name).
fn strip_element(
    element: &[u8],
    options: u64,
    kept: &[u64],
    parent: &str,
    rows: &mut Vec<(String, String, Vec<u8>)>,
) -> Vec<u8> {
    rewrite(element, |number, payload| {
        if number != options {
            return Rewrite::Keep;
        }
        let (builtin, custom) = split_options(payload, kept);
        if let Some(custom) = custom {
            rows.push((parent.to_owned(), string_field(element, 1), custom));
        }
        Rewrite::Replace(builtin)
    })
}

/// `FieldDescriptorProto` of an extension: its custom options are dropped.
fn strip_extension(field: &[u8]) -> Vec<u8> {
    rewrite(field, |number, payload| match number {
        8 => Rewrite::Replace(split_options(payload, &[]).0),
        _ => Rewrite::Keep,
    })
}

/// `ServiceDescriptorProto`: its options and its methods' are dropped.
fn strip_service(service: &[u8]) -> Vec<u8> {
    rewrite(service, |number, payload| match number {
        2 => Rewrite::Replace(Some(rewrite(payload, |number, _| match number {
            4 => Rewrite::Replace(None),
            _ => Rewrite::Keep,
        }))),
        3 => Rewrite::Replace(None),
        _ => Rewrite::Keep,
    })
}
