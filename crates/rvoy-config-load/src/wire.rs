//! Protobuf wire encoding of a [`DynamicMessage`] in time linear in its size.
//!
//! prost-reflect's `Message::encode` writes a nested message's length prefix by
//! asking the message for its length, which walks the whole subtree: a message
//! at depth d is measured d times, so encoding a config with deep and wide
//! trees (routes, endpoints) cost several times its size. Here every nested
//! message is measured once, bottom-up, into a table that the writer reads in
//! the same order (what protobuf's C++ does with its cached sizes).
//!
//! The bytes are prost-reflect's, field for field, except that a message's
//! unknown fields (kept from a binary input) follow its known fields instead of
//! being interleaved with them by number; decoders read both alike.

use prost::bytes::BufMut;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MapKey, Value};

/// The wire encoding of `msg`.
pub fn encode(msg: &DynamicMessage) -> Vec<u8> {
    let mut sizes = Vec::new();
    let len = measure(msg, &mut sizes);
    let mut writer = Writer {
        sizes: &sizes,
        next: 0,
        buf: Vec::with_capacity(len),
    };
    writer.message(msg);
    debug_assert_eq!(writer.buf.len(), len);
    writer.buf
}

/// Converts `msg` to its generated prost type (`DynamicMessage::transcode_to`
/// with [`encode`]).
pub fn transcode<T: prost::Message + Default>(
    msg: &DynamicMessage,
) -> Result<T, prost::DecodeError> {
    T::decode(encode(msg).as_slice())
}

/// The encoded length of `msg`'s fields. Pushes onto `sizes` the length of
/// every message below it, in the order [`Writer`] meets them: a message's
/// slot comes before the slots of the messages inside it.
fn measure(msg: &DynamicMessage, sizes: &mut Vec<usize>) -> usize {
    let mut len = 0;
    for (field, value) in msg.fields() {
        len += measure_field(&field, value, sizes);
    }
    for unknown in msg.unknown_fields() {
        len += unknown.encoded_len();
    }
    len
}

fn measure_field(field: &FieldDescriptor, value: &Value, sizes: &mut Vec<usize>) -> usize {
    let number = field.number();
    let kind = field.kind();
    match value {
        Value::List(items) if field.is_packed() => {
            let body = packed_len(items, &kind);
            key_len(number) + encoded_len_varint(body as u64) + body
        }
        Value::List(items) => items
            .iter()
            .map(|item| measure_single(number, field.is_group(), item, &kind, sizes))
            .sum(),
        Value::Map(entries) => {
            let Some(entry) = MapEntry::of(&kind) else {
                return 0;
            };
            entries
                .iter()
                .map(|(key, value)| {
                    let body = entry.key_len(key) + entry.measure_value(value, sizes);
                    key_len(number) + encoded_len_varint(body as u64) + body
                })
                .sum()
        }
        single => measure_single(number, field.is_group(), single, &kind, sizes),
    }
}

fn measure_single(
    number: u32,
    group: bool,
    value: &Value,
    kind: &Kind,
    sizes: &mut Vec<usize>,
) -> usize {
    match value {
        Value::Message(m) => {
            let slot = sizes.len();
            sizes.push(0);
            let body = measure(m, sizes);
            sizes[slot] = body;
            if group {
                2 * key_len(number) + body
            } else {
                key_len(number) + encoded_len_varint(body as u64) + body
            }
        }
        other => Scalar::of(other, kind).map_or(0, |s| key_len(number) + s.len()),
    }
}

fn packed_len(items: &[Value], kind: &Kind) -> usize {
    items
        .iter()
        .filter_map(|item| Scalar::of(item, kind))
        .map(|s| s.len())
        .sum()
}

/// The key and value fields of a map's entry message.
struct MapEntry {
    key: FieldDescriptor,
    key_kind: Kind,
    value: FieldDescriptor,
    value_kind: Kind,
}

impl MapEntry {
    fn of(kind: &Kind) -> Option<MapEntry> {
        let Kind::Message(entry) = kind else {
            return None;
        };
        let key = entry.map_entry_key_field();
        let value = entry.map_entry_value_field();
        Some(MapEntry {
            key_kind: key.kind(),
            value_kind: value.kind(),
            key,
            value,
        })
    }

    /// The entry's key as a scalar; `None` when it is left out (a default
    /// key is, as prost-reflect leaves it out).
    fn key_scalar<'a>(&self, key: &'a MapKey) -> Option<Scalar<'a>> {
        if !self.key.supports_presence() && key.is_default(&self.key_kind) {
            return None;
        }
        Scalar::of_key(key, &self.key_kind)
    }

    fn key_len(&self, key: &MapKey) -> usize {
        self.key_scalar(key)
            .map_or(0, |s| key_len(self.key.number()) + s.len())
    }

    /// Whether the entry's value is left out (a default scalar).
    fn skips_value(&self, value: &Value) -> bool {
        !self.value.supports_presence() && value.is_default_for_field(&self.value)
    }

    fn measure_value(&self, value: &Value, sizes: &mut Vec<usize>) -> usize {
        if self.skips_value(value) {
            return 0;
        }
        measure_single(self.value.number(), false, value, &self.value_kind, sizes)
    }
}

/// Writes what [`measure`] measured, taking the nested messages' lengths from
/// its table in the same order.
struct Writer<'a> {
    sizes: &'a [usize],
    next: usize,
    buf: Vec<u8>,
}

impl Writer<'_> {
    fn message(&mut self, msg: &DynamicMessage) {
        for (field, value) in msg.fields() {
            self.field(&field, value);
        }
        for unknown in msg.unknown_fields() {
            unknown.encode(&mut self.buf);
        }
    }

    /// The length of the next nested message, without taking it.
    fn peek(&self) -> usize {
        self.sizes.get(self.next).copied().unwrap_or_default()
    }

    fn take(&mut self) -> usize {
        let len = self.peek();
        self.next += 1;
        len
    }

    fn field(&mut self, field: &FieldDescriptor, value: &Value) {
        let number = field.number();
        let kind = field.kind();
        match value {
            Value::List(items) if field.is_packed() => {
                encode_key(number, WireType::LengthDelimited, &mut self.buf);
                encode_varint(packed_len(items, &kind) as u64, &mut self.buf);
                for item in items {
                    if let Some(s) = Scalar::of(item, &kind) {
                        s.write(&mut self.buf);
                    }
                }
            }
            Value::List(items) => {
                for item in items {
                    self.single(number, field.is_group(), item, &kind);
                }
            }
            Value::Map(entries) => {
                let Some(entry) = MapEntry::of(&kind) else {
                    return;
                };
                for (key, value) in entries {
                    let value_len = if entry.skips_value(value) {
                        0
                    } else {
                        match value {
                            Value::Message(_) => {
                                let body = self.peek();
                                key_len(entry.value.number())
                                    + encoded_len_varint(body as u64)
                                    + body
                            }
                            other => Scalar::of(other, &entry.value_kind)
                                .map_or(0, |s| key_len(entry.value.number()) + s.len()),
                        }
                    };
                    let body = entry.key_len(key) + value_len;
                    encode_key(number, WireType::LengthDelimited, &mut self.buf);
                    encode_varint(body as u64, &mut self.buf);
                    if let Some(s) = entry.key_scalar(key) {
                        encode_key(entry.key.number(), s.wire_type(), &mut self.buf);
                        s.write(&mut self.buf);
                    }
                    if !entry.skips_value(value) {
                        self.single(entry.value.number(), false, value, &entry.value_kind);
                    }
                }
            }
            single => self.single(number, field.is_group(), single, &kind),
        }
    }

    fn single(&mut self, number: u32, group: bool, value: &Value, kind: &Kind) {
        match value {
            Value::Message(m) => {
                let body = self.take();
                if group {
                    encode_key(number, WireType::StartGroup, &mut self.buf);
                    self.message(m);
                    encode_key(number, WireType::EndGroup, &mut self.buf);
                } else {
                    encode_key(number, WireType::LengthDelimited, &mut self.buf);
                    encode_varint(body as u64, &mut self.buf);
                    self.message(m);
                }
            }
            other => {
                if let Some(s) = Scalar::of(other, kind) {
                    encode_key(number, s.wire_type(), &mut self.buf);
                    s.write(&mut self.buf);
                }
            }
        }
    }
}

/// A scalar value in its wire form.
#[derive(Clone, Copy)]
enum Scalar<'a> {
    Varint(u64),
    Fixed32(u32),
    Fixed64(u64),
    Delimited(&'a [u8]),
}

impl<'a> Scalar<'a> {
    /// `value` as a field of `kind` encodes it; `None` for a message, list or
    /// map (which a `DynamicMessage` never holds where a scalar belongs: it
    /// checks values against their fields when they are set).
    fn of(value: &'a Value, kind: &Kind) -> Option<Scalar<'a>> {
        Some(match value {
            Value::Bool(b) => Scalar::Varint(u64::from(*b)),
            Value::I32(v) | Value::EnumNumber(v) => Scalar::signed(i64::from(*v), kind),
            Value::I64(v) => Scalar::signed(*v, kind),
            Value::U32(v) => Scalar::unsigned(u64::from(*v), kind),
            Value::U64(v) => Scalar::unsigned(*v, kind),
            Value::F32(v) => Scalar::Fixed32(v.to_bits()),
            Value::F64(v) => Scalar::Fixed64(v.to_bits()),
            Value::String(s) => Scalar::Delimited(s.as_bytes()),
            Value::Bytes(b) => Scalar::Delimited(b.as_ref()),
            Value::Message(_) | Value::List(_) | Value::Map(_) => return None,
        })
    }

    fn of_key(key: &'a MapKey, kind: &Kind) -> Option<Scalar<'a>> {
        Some(match key {
            MapKey::Bool(b) => Scalar::Varint(u64::from(*b)),
            MapKey::I32(v) => Scalar::signed(i64::from(*v), kind),
            MapKey::I64(v) => Scalar::signed(*v, kind),
            MapKey::U32(v) => Scalar::unsigned(u64::from(*v), kind),
            MapKey::U64(v) => Scalar::unsigned(*v, kind),
            MapKey::String(s) => Scalar::Delimited(s.as_bytes()),
        })
    }

    /// A signed integer (or enum number) of `kind`. A negative int32 is
    /// sign-extended to ten bytes, as protobuf writes it.
    fn signed(v: i64, kind: &Kind) -> Scalar<'a> {
        match kind {
            Kind::Sint32 | Kind::Sint64 => Scalar::Varint(((v << 1) ^ (v >> 63)) as u64),
            Kind::Sfixed32 => Scalar::Fixed32(v as i32 as u32),
            Kind::Sfixed64 => Scalar::Fixed64(v as u64),
            _ => Scalar::Varint(v as u64),
        }
    }

    fn unsigned(v: u64, kind: &Kind) -> Scalar<'a> {
        match kind {
            Kind::Fixed32 => Scalar::Fixed32(v as u32),
            Kind::Fixed64 => Scalar::Fixed64(v),
            _ => Scalar::Varint(v),
        }
    }

    fn wire_type(self) -> WireType {
        match self {
            Scalar::Varint(_) => WireType::Varint,
            Scalar::Fixed32(_) => WireType::ThirtyTwoBit,
            Scalar::Fixed64(_) => WireType::SixtyFourBit,
            Scalar::Delimited(_) => WireType::LengthDelimited,
        }
    }

    /// The length of the value, without its key.
    fn len(self) -> usize {
        match self {
            Scalar::Varint(v) => encoded_len_varint(v),
            Scalar::Fixed32(_) => 4,
            Scalar::Fixed64(_) => 8,
            Scalar::Delimited(b) => encoded_len_varint(b.len() as u64) + b.len(),
        }
    }

    fn write(self, buf: &mut impl BufMut) {
        match self {
            Scalar::Varint(v) => encode_varint(v, buf),
            Scalar::Fixed32(v) => buf.put_u32_le(v),
            Scalar::Fixed64(v) => buf.put_u64_le(v),
            Scalar::Delimited(b) => {
                encode_varint(b.len() as u64, buf);
                buf.put_slice(b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;
    use crate::validate::tests::read;

    fn dynamic(type_name: &str, yaml: &str) -> DynamicMessage {
        read(&rvoy_api::descriptor_pool(), type_name, yaml)
    }

    /// Every kind of field the configs use: nested and repeated messages,
    /// packed integers, negative int32/int64, doubles, floats, bools, enums,
    /// bytes, maps with message values (one entry: a map's order is its
    /// hash order), Any, and oneofs.
    const CLUSTER: &str = r#"
name: c
type: STRICT_DNS
connect_timeout: {seconds: -2, nanos: -5}
per_connection_buffer_limit_bytes: 0
lb_policy: LEAST_REQUEST
least_request_lb_config: {choice_count: 3, active_request_bias: {default_value: 1.5, runtime_key: k}}
load_assignment:
  cluster_name: c
  endpoints:
  - priority: 1
    load_balancing_weight: 7
    lb_endpoints:
    - endpoint: {address: {socket_address: {address: 10.0.0.1, port_value: 80}}}
      metadata: {filter_metadata: {envoy.lb: {a: 1, b: [x, null, true], c: {d: -1.25}}}}
    - endpoint: {address: {pipe: {path: /tmp/sock, mode: 384}}}
  policy: {overprovisioning_factor: 140}
common_lb_config: {healthy_panic_threshold: {value: 0.5}}
dns_lookup_family: V4_ONLY
typed_extension_protocol_options:
  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
    "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
    explicit_http_config: {http2_protocol_options: {max_concurrent_streams: 100}}
transport_socket:
  name: envoy.transport_sockets.tls
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
    sni: example.com
    common_tls_context:
      validation_context:
        match_typed_subject_alt_names: [{san_type: DNS, matcher: {exact: a}}]
        verify_certificate_spki: [Zm9v]
"#;

    const ROUTE: &str = r#"
name: r
virtual_hosts:
- name: v
  domains: ["*", a.example]
  routes:
  - match: {prefix: /, headers: [{name: x, range_match: {start: -10, end: 10}}]}
    route:
      cluster: c
      retry_policy: {retriable_status_codes: [503, 504, 0, 70000], num_retries: 3}
      weighted_clusters: null
  - match: {safe_regex: {regex: "^/a.*"}}
    direct_response: {status: 200, body: {inline_bytes: AAEC}}
"#;

    #[test]
    fn writes_the_bytes_prost_reflect_writes() {
        for (type_name, yaml) in [
            ("envoy.config.cluster.v3.Cluster", CLUSTER),
            ("envoy.config.route.v3.RouteConfiguration", ROUTE),
        ] {
            let msg = dynamic(type_name, yaml);
            assert_eq!(encode(&msg), msg.encode_to_vec(), "{type_name}");
        }
    }

    #[test]
    fn integers_as_protobuf_writes_them() {
        use prost::encoding::{int32, int64, sfixed32, sfixed64, sint32, sint64};
        let ours = |v: i64, kind: Kind| {
            let s = Scalar::signed(v, &kind);
            let mut buf = Vec::new();
            encode_key(1, s.wire_type(), &mut buf);
            s.write(&mut buf);
            buf
        };
        for v in [0, 1, -1, 300, -300, i32::MIN, i32::MAX] {
            let theirs = |f: fn(u32, &i32, &mut Vec<u8>)| {
                let mut buf = Vec::new();
                f(1, &v, &mut buf);
                buf
            };
            let w = i64::from(v);
            assert_eq!(ours(w, Kind::Int32), theirs(int32::encode), "int32 {v}");
            assert_eq!(ours(w, Kind::Sint32), theirs(sint32::encode), "sint32 {v}");
            assert_eq!(
                ours(w, Kind::Sfixed32),
                theirs(sfixed32::encode),
                "sfixed32 {v}"
            );
        }
        for v in [0, -1, i64::MIN, i64::MAX] {
            let theirs = |f: fn(u32, &i64, &mut Vec<u8>)| {
                let mut buf = Vec::new();
                f(1, &v, &mut buf);
                buf
            };
            assert_eq!(ours(v, Kind::Int64), theirs(int64::encode), "int64 {v}");
            assert_eq!(ours(v, Kind::Sint64), theirs(sint64::encode), "sint64 {v}");
            assert_eq!(
                ours(v, Kind::Sfixed64),
                theirs(sfixed64::encode),
                "sfixed64 {v}"
            );
        }
    }

    #[test]
    fn transcodes_to_the_generated_type() {
        let msg = dynamic("envoy.config.route.v3.RouteConfiguration", ROUTE);
        let ours: rvoy_api::envoy::config::route::v3::RouteConfiguration =
            transcode(&msg).expect("decodes");
        let theirs: rvoy_api::envoy::config::route::v3::RouteConfiguration =
            msg.transcode_to().expect("decodes");
        assert_eq!(ours, theirs);
        assert_eq!(
            ours.virtual_hosts[0].routes.len(),
            2,
            "both routes survive the round trip"
        );
    }

    #[test]
    fn unknown_fields_follow_the_known_ones() {
        let desc = rvoy_api::descriptor_pool()
            .get_message_by_name("envoy.config.core.v3.SocketAddress")
            .expect("SocketAddress");
        // address = "a" (field 2), an unknown varint field 99, port_value = 80 (field 3).
        let mut bytes = vec![0x12, 0x01, b'a'];
        encode_key(99, WireType::Varint, &mut bytes);
        encode_varint(5, &mut bytes);
        bytes.extend([0x18, 80]);
        let msg = DynamicMessage::decode(desc.clone(), bytes.as_slice()).expect("decodes");
        let ours = encode(&msg);
        assert_eq!(ours.len(), msg.encoded_len());
        let again = DynamicMessage::decode(desc, ours.as_slice()).expect("decodes again");
        assert_eq!(again, msg);
    }
}
