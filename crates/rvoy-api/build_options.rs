//! Which descriptor options the embedded set keeps, and the wire-level
//! rewrite of a `FileDescriptorProto` that drops the others (part of the
//! build script).
//!
//! Every built-in option (field numbers below 1000 of `google.protobuf.*Options`:
//! `deprecated`, `map_entry`, `packed`, ...) is kept, since the descriptor pool
//! and the proto3 JSON mapping read them. Of the custom options (extensions),
//! only those rvoy reads are kept: `validate.*` (the PGV checks) and Envoy's
//! `disallowed_by_default` annotations (the deprecation checks). An options
//! message left empty is dropped with its field. Add an extension's full name
//! to `KEPT_EXTENSIONS` before reading it through `options()`.

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

/// How a field of a descriptor message is rewritten.
enum Rewrite<'k> {
    /// A nested descriptor, rewritten by this function.
    Nested(fn(&Kept, &[u8]) -> Vec<u8>),
    /// An options message: extensions outside this list are dropped.
    Options(&'k [u64]),
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

    /// `FileDescriptorProto`, encoded.
    pub fn strip_file(&self, file: &[u8]) -> Vec<u8> {
        self.rewrite(file, |number| match number {
            4 => Some(Rewrite::Nested(Kept::strip_message)),
            5 => Some(Rewrite::Nested(Kept::strip_enum)),
            6 => Some(Rewrite::Nested(Kept::strip_service)),
            7 => Some(Rewrite::Nested(Kept::strip_field)),
            8 => Some(Rewrite::Options(&[])),
            _ => None,
        })
    }

    /// `DescriptorProto`.
    fn strip_message(&self, message: &[u8]) -> Vec<u8> {
        self.rewrite(message, |number| match number {
            2 | 6 => Some(Rewrite::Nested(Kept::strip_field)),
            3 => Some(Rewrite::Nested(Kept::strip_message)),
            4 => Some(Rewrite::Nested(Kept::strip_enum)),
            7 => Some(Rewrite::Options(&self.message)),
            8 => Some(Rewrite::Nested(Kept::strip_oneof)),
            _ => None,
        })
    }

    /// `FieldDescriptorProto` (fields and extensions).
    fn strip_field(&self, field: &[u8]) -> Vec<u8> {
        self.rewrite(field, |number| {
            (number == 8).then_some(Rewrite::Options(&self.field))
        })
    }

    /// `OneofDescriptorProto`.
    fn strip_oneof(&self, oneof: &[u8]) -> Vec<u8> {
        self.rewrite(oneof, |number| {
            (number == 2).then_some(Rewrite::Options(&self.oneof))
        })
    }

    /// `EnumDescriptorProto`.
    fn strip_enum(&self, enumeration: &[u8]) -> Vec<u8> {
        self.rewrite(enumeration, |number| match number {
            2 => Some(Rewrite::Nested(Kept::strip_enum_value)),
            3 => Some(Rewrite::Options(&[])),
            _ => None,
        })
    }

    /// `EnumValueDescriptorProto`.
    fn strip_enum_value(&self, value: &[u8]) -> Vec<u8> {
        self.rewrite(value, |number| {
            (number == 3).then_some(Rewrite::Options(&self.enum_value))
        })
    }

    /// `ServiceDescriptorProto` and its `MethodDescriptorProto`s.
    fn strip_service(&self, service: &[u8]) -> Vec<u8> {
        fn strip_method(kept: &Kept, method: &[u8]) -> Vec<u8> {
            kept.rewrite(method, |number| {
                (number == 4).then_some(Rewrite::Options(&[]))
            })
        }
        self.rewrite(service, |number| match number {
            2 => Some(Rewrite::Nested(strip_method)),
            3 => Some(Rewrite::Options(&[])),
            _ => None,
        })
    }

    /// Copies `message`, rewriting the length-delimited fields `how` names.
    fn rewrite<'k>(&'k self, message: &[u8], how: impl Fn(u64) -> Option<Rewrite<'k>>) -> Vec<u8> {
        let mut out = Vec::with_capacity(message.len());
        for field in wire_fields(message) {
            match (field.payload, how(field.number)) {
                (Some(payload), Some(Rewrite::Nested(strip))) => {
                    push_length_delimited(&mut out, field.number, &strip(self, payload));
                }
                (Some(payload), Some(Rewrite::Options(extensions))) => {
                    let mut options = Vec::with_capacity(payload.len());
                    for option in wire_fields(payload) {
                        if option.number < FIRST_EXTENSION_NUMBER
                            || extensions.contains(&option.number)
                        {
                            options.extend_from_slice(option.raw);
                        }
                    }
                    if !options.is_empty() {
                        push_length_delimited(&mut out, field.number, &options);
                    }
                }
                _ => out.extend_from_slice(field.raw),
            }
        }
        out
    }
}
