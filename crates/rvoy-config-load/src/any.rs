//! Unpacking `typed_config` (`google.protobuf.Any`) into the message it holds.
//!
//! Envoy resolves an extension's config by the Any's type URL; a `TypedStruct`
//! (`udpa.type.v1` or `xds.type.v3`) is replaced by the message its own
//! `type_url` names, read from its `Struct` with the JSON mapping and the same
//! unknown-field policy as the rest of the config.
//!
//! Also owns [`SharedDecodes`]: one decode of each `Any` payload for all the
//! passes over a config that open it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash as _, Hasher as _};
use std::marker::PhantomData;
use std::sync::Arc;

use prost::Message as _;
use prost::bytes::Bytes;
use prost_reflect::{DynamicMessage, MessageDescriptor, ReflectMessage as _, Value};

use crate::error::{ConfigError, ErrorKind, FieldPath};
use crate::node::Node;
use crate::proto_json::{self, TYPED_STRUCT_UDPA, TYPED_STRUCT_XDS};

/// The message inside an Any, with the type it was resolved to.
#[derive(Clone, Debug)]
pub struct Unpacked {
    /// The full proto name of the config message (after TypedStruct resolution).
    pub type_name: String,
    /// The type URL as written (the inner one for a TypedStruct).
    pub type_url: String,
    /// Shared with the other passes that opened the same payload under a
    /// [`SharedDecodes`].
    pub message: Arc<DynamicMessage>,
    /// The wire encoding `message` was decoded from (`None` for a TypedStruct,
    /// whose message was read from JSON): [`to_prost`] decodes it directly
    /// instead of encoding `message` again.
    pub encoded: Option<Bytes>,
    /// Unknown fields met in a TypedStruct (reported by the caller's policy).
    pub unknown_fields: Vec<ConfigError>,
}

/// The proto name a type URL designates (the text after the last `/`).
pub fn type_name_of(type_url: &str) -> &str {
    type_url.rsplit('/').next().unwrap_or(type_url)
}

/// The type URL that counts for extension lookup: the inner one of a TypedStruct.
pub fn effective_type_url(any: &prost_types::Any) -> String {
    if matches!(
        type_name_of(&any.type_url),
        TYPED_STRUCT_UDPA | TYPED_STRUCT_XDS
    ) && let Some(ts) = decode_typed_struct(&any.value)
    {
        return ts.0;
    }
    any.type_url.clone()
}

fn decode_typed_struct(value: &[u8]) -> Option<(String, Option<prost_types::Struct>)> {
    #[derive(Clone, PartialEq, prost::Message)]
    struct TypedStruct {
        #[prost(string, tag = "1")]
        type_url: String,
        #[prost(message, optional, tag = "2")]
        value: Option<prost_types::Struct>,
    }
    TypedStruct::decode(value)
        .ok()
        .map(|t| (t.type_url, t.value))
}

/// Unpacks `any` (at `path`) into a dynamic message of the type it names.
///
/// Returns `Ok(None)` when the pool does not know the type; the caller turns that
/// into Envoy's "Didn't find a registered implementation" error.
pub fn unpack(any: &prost_types::Any, path: &FieldPath) -> Result<Option<Unpacked>, ConfigError> {
    unpack_parts(&any.type_url, Bytes::copy_from_slice(&any.value), path)
}

/// [`unpack`] for an Any held as a dynamic message (inside a config being
/// walked), without converting it to `prost_types::Any` first.
pub fn unpack_dynamic(
    any: &DynamicMessage,
    path: &FieldPath,
) -> Result<Option<Unpacked>, ConfigError> {
    let type_url = any.get_field_by_number(1);
    let value = any.get_field_by_number(2);
    let type_url = type_url.as_deref().and_then(Value::as_str).unwrap_or("");
    // The payload is shared with the message, not copied.
    let value = value
        .as_deref()
        .and_then(Value::as_bytes)
        .cloned()
        .unwrap_or_default();
    unpack_parts(type_url, value, path)
}

fn unpack_parts(
    type_url: &str,
    value: Bytes,
    path: &FieldPath,
) -> Result<Option<Unpacked>, ConfigError> {
    let pool = &rvoy_api::descriptor_pool();
    let outer = type_name_of(type_url);
    if matches!(outer, TYPED_STRUCT_UDPA | TYPED_STRUCT_XDS) {
        let Some((inner_url, value)) = decode_typed_struct(&value) else {
            return Err(ConfigError::new(
                ErrorKind::Syntax,
                path.clone(),
                "undecodable TypedStruct",
            ));
        };
        let Some(desc) = pool.get_message_by_name(type_name_of(&inner_url)) else {
            return Ok(None);
        };
        let json = value
            .map(|s| struct_to_json(&s))
            .unwrap_or_else(|| serde_json::json!({}));
        let node = Node::from_json(&json);
        let parsed = proto_json::parse_message(pool, &node, &desc, None, path.field("value"));
        if let Some(e) = parsed.errors.into_iter().next() {
            return Err(e);
        }
        return Ok(Some(Unpacked {
            type_name: desc.full_name().to_owned(),
            type_url: inner_url,
            message: Arc::new(parsed.message),
            encoded: None,
            unknown_fields: parsed.unknown_fields,
        }));
    }
    let Some(desc) = pool.get_message_by_name(outer) else {
        return Ok(None);
    };
    let message = decode_shared(&desc, &value).map_err(|e| {
        ConfigError::new(
            ErrorKind::Syntax,
            path.clone(),
            format!("undecodable {type_url}: {e}"),
        )
    })?;
    Ok(Some(Unpacked {
        type_name: desc.full_name().to_owned(),
        type_url: type_url.to_owned(),
        message,
        encoded: Some(value),
        unknown_fields: Vec::new(),
    }))
}

/// Decodes of `Any` payloads shared by the passes over one config.
///
/// A config is opened by several passes (`validate.rules`, deprecation checks,
/// the model's support checks, its search for unknown extensions, extension
/// lookup), each unpacking the `Any`s it meets: a big `typed_config` (an HCM
/// with thousands of routes) was decoded, and freed, once per pass. While a
/// `SharedDecodes` is alive, the thread that began it decodes each payload once
/// and hands the same message to every pass after. Payloads under
/// [`SHARED_MIN_LEN`] bytes are decoded each time: cheaper than remembering.
#[must_use = "sharing stops when the guard is dropped"]
pub struct SharedDecodes {
    /// The sharing this one interrupts (restored at the end).
    previous: Option<DecodeMemo>,
    ended: bool,
    /// The memo is the thread's: the guard stays on that thread.
    _thread: PhantomData<*const ()>,
}

/// Smallest payload worth remembering.
pub const SHARED_MIN_LEN: usize = 1024;

thread_local! {
    static MEMO: RefCell<Option<DecodeMemo>> = const { RefCell::new(None) };
}

#[derive(Default)]
struct DecodeMemo {
    /// By hash of the payload; the payloads themselves tell collisions apart.
    by_hash: HashMap<u64, Vec<Decoded>>,
}

/// A payload and the message decoded from it.
type Decoded = (Vec<u8>, Arc<DynamicMessage>);

impl SharedDecodes {
    /// Starts sharing decodes on this thread.
    pub fn begin() -> Self {
        let previous = MEMO.with(|m| m.replace(Some(DecodeMemo::default())));
        SharedDecodes {
            previous,
            ended: false,
            _thread: PhantomData,
        }
    }

    /// Stops sharing; returns the messages decoded, for the caller to free
    /// wherever it likes (a big config's take a while).
    pub fn end(mut self) -> impl Send {
        self.restore()
    }

    fn restore(&mut self) -> DecodeMemo {
        self.ended = true;
        MEMO.with(|m| m.replace(self.previous.take()))
            .unwrap_or_default()
    }
}

impl Drop for SharedDecodes {
    fn drop(&mut self) {
        if !self.ended {
            drop(self.restore());
        }
    }
}

/// `payload` decoded as a `desc`, once per payload while a [`SharedDecodes`]
/// is alive on this thread.
pub(crate) fn decode_shared(
    desc: &MessageDescriptor,
    payload: &[u8],
) -> Result<Arc<DynamicMessage>, prost::DecodeError> {
    if !sharing(payload) {
        return DynamicMessage::decode(desc.clone(), payload).map(Arc::new);
    }
    let hash = payload_hash(payload);
    let found = MEMO.with(|m| {
        let memo = m.borrow();
        memo.as_ref()?
            .by_hash
            .get(&hash)?
            .iter()
            .find(|(p, message)| p.as_slice() == payload && message.descriptor() == *desc)
            .map(|(_, message)| message.clone())
    });
    if let Some(message) = found {
        return Ok(message);
    }
    let message = Arc::new(DynamicMessage::decode(desc.clone(), payload)?);
    remember(hash, payload, message.clone());
    Ok(message)
}

/// Whether `payload` is worth remembering under the [`SharedDecodes`] of
/// this thread (none: nothing is).
fn sharing(payload: &[u8]) -> bool {
    payload.len() >= SHARED_MIN_LEN && MEMO.with(|m| m.borrow().is_some())
}

/// Records `message` as what `payload` decodes to: the JSON reader, which
/// encodes each `Any` from the message it read, hands that message over so
/// that the passes after it do not decode the payload again. The message
/// must be what decoding `payload` gives (the fields it has, their values).
pub(crate) fn remember_decoded(payload: &[u8], message: DynamicMessage) {
    if sharing(payload) {
        remember(payload_hash(payload), payload, Arc::new(message));
    }
}

fn remember(hash: u64, payload: &[u8], message: Arc<DynamicMessage>) {
    MEMO.with(|m| {
        if let Some(memo) = m.borrow_mut().as_mut() {
            memo.by_hash
                .entry(hash)
                .or_default()
                .push((payload.to_vec(), message));
        }
    });
}

/// The memo's key for a payload: its length and its ends. Hashing all of a
/// big payload cost more than decoding it once; payloads that share the key
/// are told apart by comparing them.
fn payload_hash(payload: &[u8]) -> u64 {
    const ENDS: usize = 256;
    let mut hasher = DefaultHasher::new();
    payload.len().hash(&mut hasher);
    payload[..payload.len().min(ENDS)].hash(&mut hasher);
    payload[payload.len().saturating_sub(ENDS)..].hash(&mut hasher);
    hasher.finish()
}

/// Converts an unpacked message to its prost type.
pub fn to_prost<T: prost::Message + Default>(
    unpacked: &Unpacked,
    path: &FieldPath,
) -> Result<T, ConfigError> {
    let converted = match &unpacked.encoded {
        Some(bytes) => T::decode(bytes.as_ref()),
        None => crate::wire::transcode(&unpacked.message),
    };
    converted.map_err(|e| {
        ConfigError::new(
            ErrorKind::Syntax,
            path.clone(),
            format!("converting {}: {e}", unpacked.type_name),
        )
    })
}

/// Decodes an Any whose type the caller already checked, straight into `T`.
pub fn decode_as<T: prost::Message + Default + prost::Name>(
    any: &prost_types::Any,
    path: &FieldPath,
) -> Result<T, ConfigError> {
    match unpack(any, path)? {
        Some(u) if u.type_name == T::full_name() => to_prost(&u, path),
        Some(u) => Err(ConfigError::new(
            ErrorKind::Type,
            path.clone(),
            format!("expected a {} but got a {}", T::full_name(), u.type_name),
        )),
        None => Err(ConfigError::new(
            ErrorKind::UnknownExtension,
            path.clone(),
            format!("could not find @type '{}'", any.type_url),
        )),
    }
}

/// A `google.protobuf.Struct` as JSON (numbers are doubles, as in protobuf).
pub fn struct_to_json(s: &prost_types::Struct) -> serde_json::Value {
    serde_json::Value::Object(
        s.fields
            .iter()
            .map(|(k, v)| (k.clone(), value_to_json(v)))
            .collect(),
    )
}

/// A `google.protobuf.Value` as JSON.
pub fn value_to_json(v: &prost_types::Value) -> serde_json::Value {
    use prost_types::value::Kind;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::NumberValue(n)) => {
            if n.fract() == 0.0 && n.abs() < 9.0e15 {
                serde_json::Value::from(*n as i64)
            } else {
                serde_json::Number::from_f64(*n)
                    .map_or(serde_json::Value::Null, serde_json::Value::Number)
            }
        }
        Some(Kind::StringValue(s)) => serde_json::Value::String(s.clone()),
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(*b),
        Some(Kind::StructValue(s)) => struct_to_json(s),
        Some(Kind::ListValue(l)) => {
            serde_json::Value::Array(l.values.iter().map(value_to_json).collect())
        }
    }
}

/// The descriptor name of a dynamic message (for diagnostics).
pub fn message_name(m: &DynamicMessage) -> String {
    m.descriptor().full_name().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Name;
    use rvoy_api::envoy::extensions::filters::http::router::v3::Router;

    #[test]
    fn decodes_are_shared_while_a_guard_lives() {
        let rc = rvoy_api::envoy::config::route::v3::RouteConfiguration {
            name: "x".repeat(SHARED_MIN_LEN),
            ..Default::default()
        };
        let any = prost_types::Any {
            type_url: "type.googleapis.com/envoy.config.route.v3.RouteConfiguration".into(),
            value: rc.encode_to_vec(),
        };
        let open = || {
            unpack(&any, &FieldPath::root())
                .expect("decodes")
                .expect("known type")
                .message
        };
        assert!(!Arc::ptr_eq(&open(), &open()), "no sharing without a guard");
        let shared = SharedDecodes::begin();
        let first = open();
        assert!(Arc::ptr_eq(&first, &open()), "one decode under the guard");
        let decoded = shared.end();
        assert!(!Arc::ptr_eq(&first, &open()), "sharing ends with the guard");
        drop(decoded);
        let back: rvoy_api::envoy::config::route::v3::RouteConfiguration = to_prost(
            &unpack(&any, &FieldPath::root())
                .expect("ok")
                .expect("known"),
            &FieldPath::root(),
        )
        .expect("converts");
        assert_eq!(back, rc);
    }

    /// The JSON reader hands the message it read for a big `Any` to the
    /// guard: the passes after it open that message, not a decode of the
    /// payload, and it reads the same as the decode would.
    #[test]
    fn the_json_reader_shares_what_it_read() {
        use rvoy_api::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
        let routes = (0..100)
            .map(|i| format!("{{match: {{prefix: /r{i}}}, route: {{cluster: c{i}}}}}"))
            .collect::<Vec<_>>()
            .join(", ");
        // `codec_type: AUTO` is an explicit default: set in the message
        // read, absent from the payload.
        let yaml = format!(
            "name: hcm\ntyped_config:\n  '@type': type.googleapis.com/{}\n  stat_prefix: x\n  codec_type: AUTO\n  route_config: {{virtual_hosts: [{{name: v, domains: ['*'], routes: [{routes}]}}]}}\n",
            HttpConnectionManager::full_name()
        );
        let pool = &rvoy_api::descriptor_pool();
        let desc = pool
            .get_message_by_name("envoy.config.listener.v3.Filter")
            .expect("Filter");
        let node = crate::yaml::parse_yaml(&yaml).expect("yaml");
        let shared = SharedDecodes::begin();
        let parsed = proto_json::parse_message(pool, &node, &desc, None, FieldPath::root());
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        let any = parsed
            .message
            .get_field_by_name("typed_config")
            .expect("set");
        let Value::Message(any) = &*any else {
            panic!("an Any message")
        };
        let open = || {
            unpack_dynamic(any, &FieldPath::root())
                .expect("decodes")
                .expect("known type")
        };
        let first = open();
        assert!(Arc::ptr_eq(&first.message, &open().message), "shared");
        let payload = first.encoded.clone().expect("a payload");
        assert!(payload.len() >= SHARED_MIN_LEN);
        let read: HttpConnectionManager = first.message.transcode_to().expect("transcodes");
        let decoded = HttpConnectionManager::decode(payload.as_ref()).expect("decodes");
        assert_eq!(read, decoded);
        let codec_type = first
            .message
            .descriptor()
            .get_field_by_name("codec_type")
            .expect("codec_type");
        assert!(!first.message.has_field(&codec_type), "a default is unset");
        drop(shared.end());
    }

    #[test]
    fn plain_and_typed_struct() {
        let router = Router {
            suppress_envoy_headers: true,
            ..Router::default()
        };
        let any = prost_types::Any {
            type_url: format!("type.googleapis.com/{}", Router::full_name()),
            value: router.encode_to_vec(),
        };
        let back: Router = decode_as(&any, &FieldPath::root()).expect("router");
        assert!(back.suppress_envoy_headers);

        let pool = &rvoy_api::descriptor_pool();
        let desc = pool
            .get_message_by_name("google.protobuf.Any")
            .expect("Any");
        let node = crate::yaml::parse_yaml(
            "'@type': type.googleapis.com/udpa.type.v1.TypedStruct\ntype_url: type.googleapis.com/envoy.extensions.filters.http.router.v3.Router\nvalue: {suppress_envoy_headers: true}\n",
        )
        .expect("yaml");
        let parsed = proto_json::parse_message(pool, &node, &desc, None, FieldPath::root());
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        let any: prost_types::Any = parsed.message.transcode_to().expect("any");
        assert_eq!(
            effective_type_url(&any),
            "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
        );
        let back: Router = decode_as(&any, &FieldPath::root()).expect("typed struct router");
        assert!(back.suppress_envoy_headers);
    }
}
