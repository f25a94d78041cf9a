//! Envoy's v3 API at one pinned snapshot (see `proto/README.md`).
//!
//! Owns two things generated from the very same `FileDescriptorSet` at build time:
//! the prost message types (modules mirroring the proto packages, e.g.
//! [`envoy::config::bootstrap::v3::Bootstrap`]) and the [`descriptor_pool`] that
//! the config loader uses to read YAML/JSON with the proto3 JSON mapping and to
//! enforce `validate.rules`. Nothing else lives here.

#![allow(clippy::all, missing_docs, rustdoc::all, unused_qualifications)]

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use prost_reflect::{
    DescriptorPool, DynamicMessage, EnumValueDescriptor, FieldDescriptor, MessageDescriptor,
    OneofDescriptor,
};

include!(concat!(env!("OUT_DIR"), "/envoy_api.rs"));

/// The encoded `FileDescriptorSet` of every proto in the snapshot (imports included).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/envoy_api.fds"));

mod prune;

#[path = "../type_name_hash.rs"]
mod type_name_hash;

/// Where each file of [`FILE_DESCRIPTOR_SET`] sits, what it depends on, and
/// which file declares each type (generated with the set).
mod file_index {
    include!(concat!(env!("OUT_DIR"), "/envoy_api_index.rs"));

    use super::type_name_hash::type_name_hash;

    /// The dependencies of file `file` (indexes into `FILE_SPANS`).
    pub(crate) fn dependencies(file: usize) -> &'static [u16] {
        FILE_DEPS
            .get(file)
            .and_then(|&(start, count)| {
                let start = start as usize;
                DEPENDENCIES.get(start..start + usize::from(count))
            })
            .unwrap_or_default()
    }

    /// The file that declares the message or enum `name` (a full name),
    /// found by the hash of the name (see the build script: a name that is
    /// no type's matches only by a hash collision).
    pub(crate) fn declaring_file(name: &str) -> Option<usize> {
        TYPE_HASHES
            .binary_search(&type_name_hash(name))
            .ok()
            .and_then(|i| TYPE_HASH_FILES.get(i))
            .map(|&file| usize::from(file))
    }
}

/// The custom options rvoy reads (`validate.*`, Envoy's
/// `disallowed_by_default` annotations), which the build takes out of
/// [`FILE_DESCRIPTOR_SET`]'s descriptors: decoding a pool resolves every
/// options message it holds, and these were most of that work. Generated
/// with the set.
mod custom_options {
    /// The custom options of the elements of some kind of descriptor.
    pub(crate) struct Table {
        /// Each parent (message, enum): its name in [`BLOB`], its first row
        /// and its number of rows; sorted by name.
        pub(crate) parents: &'static [((u32, u16), u16, u16)],
        /// Each element's name and encoded options in [`BLOB`], grouped by
        /// parent, each group sorted by name.
        pub(crate) rows: &'static [((u32, u16), (u32, u16))],
    }

    include!(concat!(env!("OUT_DIR"), "/envoy_api_options.rs"));

    /// The bytes at `(offset, len)` in [`BLOB`].
    pub(crate) fn blob((offset, len): (u32, u16)) -> &'static [u8] {
        BLOB.get(offset as usize..)
            .and_then(|b| b.get(..usize::from(len)))
            .unwrap_or_default()
    }
}

/// Rows of a side table: (element name, encoded options).
type Rows = &'static [((u32, u16), (u32, u16))];

/// The rows of `table` whose parent is `parent`.
fn rows_of(table: &custom_options::Table, parent: &str) -> Rows {
    table
        .parents
        .binary_search_by(|(name, _, _)| custom_options::blob(*name).cmp(parent.as_bytes()))
        .ok()
        .and_then(|i| {
            let (_, first, count) = table.parents[i];
            table
                .rows
                .get(usize::from(first)..usize::from(first) + usize::from(count))
        })
        .unwrap_or_default()
}

/// The encoded options of `name` among `rows`.
fn row(rows: Rows, name: &str) -> Option<&'static [u8]> {
    rows.iter()
        .find(|(n, _)| custom_options::blob(*n) == name.as_bytes())
        .map(|(_, encoded)| custom_options::blob(*encoded))
}

/// `encoded` (a side-table entry) as a message of the options type
/// `options_type` of `pool`; else, for a descriptor that carries its custom
/// options itself (a pool compiled from protos, as tests do), `own` when
/// `has_own` says it has options.
fn custom_options_message(
    pool: &DescriptorPool,
    options_type: &str,
    encoded: Option<&[u8]>,
    has_own: bool,
    own: impl FnOnce() -> DynamicMessage,
) -> Option<DynamicMessage> {
    match encoded {
        Some(encoded) => {
            let desc = pool.get_message_by_name(options_type)?;
            DynamicMessage::decode(desc, encoded).ok()
        }
        None => has_own.then(own),
    }
}

/// The custom options of a message and of its fields and oneofs, found once
/// for the message. Each is `None` where there are none, or read as a
/// `google.protobuf.*Options` message (with the extension descriptors of the
/// message's pool). The built-in options (`deprecated`) stay in the
/// descriptors: `field.field_descriptor_proto().options`.
pub struct CustomOptions<'m> {
    message: &'m MessageDescriptor,
    fields: Rows,
    oneofs: Rows,
}

impl<'m> CustomOptions<'m> {
    /// Those of `message`.
    pub fn of(message: &'m MessageDescriptor) -> Self {
        let name = message.full_name();
        CustomOptions {
            message,
            fields: rows_of(&custom_options::FIELDS, name),
            oneofs: rows_of(&custom_options::ONEOFS, name),
        }
    }

    /// The message's own.
    pub fn message(&self) -> Option<DynamicMessage> {
        let message = self.message;
        let encoded = row(rows_of(&custom_options::MESSAGES, message.full_name()), "");
        custom_options_message(
            message.parent_pool(),
            "google.protobuf.MessageOptions",
            encoded,
            message.descriptor_proto().options.is_some(),
            || message.options(),
        )
    }

    /// Those of the field named `name`, encoded as the side table has them
    /// (for [`decode_extension`]); `None` for a field not in the table,
    /// including one of a pool that carries its options itself.
    pub fn encoded_field(&self, name: &str) -> Option<&'static [u8]> {
        row(self.fields, name)
    }

    /// Those of `field`, one of the message's fields.
    pub fn field(&self, field: &FieldDescriptor) -> Option<DynamicMessage> {
        custom_options_message(
            self.message.parent_pool(),
            "google.protobuf.FieldOptions",
            row(self.fields, field.name()),
            field.field_descriptor_proto().options.is_some(),
            || field.options(),
        )
    }

    /// Those of `oneof`, one of the message's oneofs.
    pub fn oneof(&self, oneof: &OneofDescriptor) -> Option<DynamicMessage> {
        custom_options_message(
            self.message.parent_pool(),
            "google.protobuf.OneofOptions",
            row(self.oneofs, oneof.name()),
            oneof.oneof_descriptor_proto().options.is_some(),
            || oneof.options(),
        )
    }
}

/// The custom options of `field` (see [`CustomOptions`]).
pub fn field_options(field: &FieldDescriptor) -> Option<DynamicMessage> {
    CustomOptions::of(&field.parent_message()).field(field)
}

/// The message-typed extension `number` of the encoded options `encoded`
/// (every occurrence merged, as a decoder does), or `None` when absent or
/// malformed.
pub fn decode_extension<M: prost::Message + Default>(mut encoded: &[u8], number: u32) -> Option<M> {
    use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};
    let mut found: Option<M> = None;
    while !encoded.is_empty() {
        let (tag, wire_type) = decode_key(&mut encoded).ok()?;
        if tag == number && wire_type == WireType::LengthDelimited {
            let len = usize::try_from(decode_varint(&mut encoded).ok()?).ok()?;
            let payload = encoded.get(..len)?;
            found.get_or_insert_with(M::default).merge(payload).ok()?;
            encoded = &encoded[len..];
        } else {
            skip_field(wire_type, tag, &mut encoded, DecodeContext::default()).ok()?;
        }
    }
    found
}

/// The custom options of `value` (a `google.protobuf.EnumValueOptions`), as
/// [`field_options`].
pub fn enum_value_options(value: &EnumValueDescriptor) -> Option<DynamicMessage> {
    let enumeration = value.parent_enum();
    custom_options_message(
        enumeration.parent_pool(),
        "google.protobuf.EnumValueOptions",
        row(
            rows_of(&custom_options::ENUM_VALUES, enumeration.full_name()),
            value.name(),
        ),
        value.enum_value_descriptor_proto().options.is_some(),
        || value.options(),
    )
}

/// What the next decode is limited to (see [`narrow_descriptor_pool`]).
struct Narrowing {
    /// The encoded files a config can use.
    files: Vec<u8>,
    /// The bootstrap and the types the config names by type URL.
    roots: Vec<String>,
    /// The config's texts (joined by line breaks), when the fields it cannot
    /// set are pruned from those files.
    texts: Option<Vec<u8>>,
}

impl Narrowing {
    /// The narrowing for `config`, pruned for its text when `text`.
    fn new(config: &[&[u8]], text: bool) -> Self {
        let roots: Vec<String> = std::iter::once(BOOTSTRAP)
            .chain(config.iter().flat_map(|t| type_url_names(t)))
            .filter(|name| file_index::declaring_file(name).is_some())
            .map(str::to_owned)
            .collect();
        Narrowing {
            files: narrowed_set(&roots),
            roots,
            texts: text.then(|| config.join(&b'\n')),
        }
    }

    fn decode(&self) -> Option<DescriptorPool> {
        self.pruned()
            .or_else(|| DescriptorPool::decode(self.files.as_slice()).ok())
    }

    /// The pool of the pruned files, if the fields are pruned.
    fn pruned(&self) -> Option<DescriptorPool> {
        let texts = self.texts.as_deref()?;
        let roots: Vec<&str> = self.roots.iter().map(String::as_str).collect();
        let set = prune::prune(&self.files, &prune::words(texts), &roots)?;
        DescriptorPool::from_file_descriptor_set(set).ok()
    }
}

/// The pool a load of the text config `config` decodes first (see
/// [`narrow_descriptor_pool`]), decoded apart from the shared one; `None` if
/// pruning fails (the load then decodes the narrowed files whole). For tests
/// that compare what a config reads as with it and with the whole snapshot.
#[doc(hidden)]
pub fn pruned_descriptor_pool(config: &[&[u8]]) -> Option<DescriptorPool> {
    Narrowing::new(config, true).pruned()
}

/// The bootstrap's type: the root of every narrowing.
const BOOTSTRAP: &str = "envoy.config.bootstrap.v3.Bootstrap";

/// The decoded pool while something uses it.
struct Cached {
    pool: DescriptorPool,
    /// When it was last handed out.
    used: Instant,
    /// Decoded from a part of the set only (see [`narrow_descriptor_pool`]).
    narrowed: bool,
}

/// The pool's state: the cached pool, the part of the set the next decode
/// is limited to, if any, and how many decodes there were.
struct PoolState {
    cached: Option<Cached>,
    narrow_to: Option<Narrowing>,
    decodes: u32,
}

static POOL: Mutex<PoolState> = Mutex::new(PoolState {
    cached: None,
    narrow_to: None,
    decodes: 0,
});

/// Decodes the pool ahead of its first use (on a thread of the caller's), so
/// that it is ready when config is read. Does nothing once a pool has been
/// decoded: a prefetch that only gets to run after the load is done (one
/// core, the loader first) must not decode the whole snapshot again (17 MiB
/// and tens of milliseconds) once the load's pool has been released.
pub fn prefetch_descriptor_pool() {
    let mut state = POOL.lock().unwrap_or_else(PoisonError::into_inner);
    if state.decodes == 0 {
        drop(cached_or_decoded(&mut state));
    }
}

/// The descriptor pool: decoded on first use (~20 ms for the whole snapshot,
/// ~3 ms for a typical config's part of it, see [`narrow_descriptor_pool`]),
/// then shared until [`release_idle_descriptor_pool`] drops it.
///
/// The pool is only needed while config is read, checked or dumped; the
/// whole snapshot's is ~17 MiB of heap, so a running proxy lets it go between
/// those moments.
pub fn descriptor_pool() -> DescriptorPool {
    let mut state = POOL.lock().unwrap_or_else(PoisonError::into_inner);
    cached_or_decoded(&mut state)
}

fn cached_or_decoded(state: &mut PoolState) -> DescriptorPool {
    let now = Instant::now();
    if let Some(cached) = &mut state.cached {
        cached.used = now;
        return cached.pool.clone();
    }
    let narrowed = state.narrow_to.is_some();
    let narrow_to = state.narrow_to.as_ref();
    let decode = || match narrow_to {
        Some(narrowing) => narrowing.decode(),
        None => DescriptorPool::decode(FILE_DESCRIPTOR_SET).ok(),
    };
    // Decoded on a thread of its own so the pool's many small allocations
    // sit on allocator pages of their own: when the pool is released those
    // pages empty entirely and go back to the system, instead of staying
    // pinned by longer-lived neighbours.
    let pool = std::thread::scope(|s| s.spawn(decode).join().ok())
        .flatten()
        .expect("the descriptor set generated at build time decodes");
    state.decodes = state.decodes.saturating_add(1);
    state.cached = Some(Cached {
        pool: pool.clone(),
        used: now,
        narrowed,
    });
    pool
}

/// Limits the pool's next decode to what a config can use: the files that
/// declare the bootstrap and every type named by a type URL in `config` (the
/// bootstrap's text or binary, the `--config-yaml` override), with their
/// dependencies. That is a fifth of the snapshot for a typical config, and
/// it takes a seventh of the time to decode. With `text` (every part of
/// `config` is YAML, JSON or text format, and the load rejects unknown
/// fields), those files are also pruned of the fields and types the text
/// cannot set or the load does not check (see the `prune` module), which
/// halves the decode again.
///
/// A type or field outside that part is missing from the pool, so a config
/// that uses one some other way fails to load: the caller then calls
/// [`widen_descriptor_pool`] and loads it again with the whole snapshot. A
/// load that succeeds is the same with either pool. Does nothing when a pool
/// is decoded already.
pub fn narrow_descriptor_pool(config: &[&[u8]], text: bool) {
    let mut state = POOL.lock().unwrap_or_else(PoisonError::into_inner);
    if state.cached.is_some() {
        return;
    }
    state.narrow_to = Some(Narrowing::new(config, text));
}

/// The encoded set of the files that declare `types`, with their
/// dependencies.
fn narrowed_set(types: &[String]) -> Vec<u8> {
    let mut wanted = vec![false; file_index::FILE_SPANS.len()];
    let mut pending: Vec<usize> = types
        .iter()
        .filter_map(|t| file_index::declaring_file(t))
        .collect();
    while let Some(file) = pending.pop() {
        if !std::mem::replace(&mut wanted[file], true) {
            pending.extend(
                file_index::dependencies(file)
                    .iter()
                    .map(|&d| usize::from(d)),
            );
        }
    }
    // Dependencies come before their dependents in the set, so in order.
    let mut set = Vec::new();
    for (file, &(start, end)) in file_index::FILE_SPANS.iter().enumerate() {
        if wanted[file] {
            set.extend_from_slice(&FILE_DESCRIPTOR_SET[start as usize..end as usize]);
        }
    }
    set
}

/// Undoes [`narrow_descriptor_pool`]: the next decode is the whole snapshot
/// again. Drops the cached pool if it was a narrowed one; returns whether it
/// did (the caller then drops what it built with that pool, and a failed
/// load is worth retrying).
pub fn widen_descriptor_pool() -> bool {
    let mut state = POOL.lock().unwrap_or_else(PoisonError::into_inner);
    state.narrow_to = None;
    if state.cached.as_ref().is_some_and(|c| c.narrowed) {
        state.cached = None;
        return true;
    }
    false
}

/// The names that follow a `/` in `text` (what a type URL names), as
/// candidates: only those that name a type in the snapshot are kept. Works
/// on YAML, JSON (`\/` included) and binary protobuf alike.
fn type_url_names(text: &[u8]) -> impl Iterator<Item = &str> {
    let name_byte = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'.';
    text.iter()
        .enumerate()
        .filter(|(_, b)| **b == b'/')
        .filter_map(move |(i, _)| {
            let rest = &text[i + 1..];
            let len = rest
                .iter()
                .position(|b| !name_byte(b))
                .unwrap_or(rest.len());
            let name = std::str::from_utf8(&rest[..len]).ok()?;
            let name = name.trim_end_matches('.');
            (name.contains('.')).then_some(name)
        })
}

/// Drops the cached pool when nothing asked for it during `idle`; returns
/// whether it did. Descriptors and dynamic messages still held elsewhere keep
/// their pool alive; the memory is freed once the last one is gone.
pub fn release_idle_descriptor_pool(idle: Duration) -> bool {
    let mut state = POOL.lock().unwrap_or_else(PoisonError::into_inner);
    match &state.cached {
        Some(cached) if cached.used.elapsed() >= idle => {
            state.cached = None;
            true
        }
        _ => false,
    }
}

/// The type URL prefix Envoy uses for `Any` and `TypedStruct`.
pub const TYPE_URL_PREFIX: &str = "type.googleapis.com/";

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Name;

    /// Every message and enum of the snapshot, nested ones too, is found in
    /// the file that declares it; names that are no type are not found.
    #[test]
    fn every_type_is_found_in_its_file() {
        fn messages(
            m: &prost_types::DescriptorProto,
            prefix: &str,
            file: usize,
            found: &mut usize,
        ) {
            let name = format!("{prefix}{}", m.name());
            assert_eq!(file_index::declaring_file(&name), Some(file), "{name}");
            *found += 1;
            for e in &m.enum_type {
                let e = format!("{name}.{}", e.name());
                assert_eq!(file_index::declaring_file(&e), Some(file), "{e}");
                *found += 1;
            }
            for nested in &m.nested_type {
                messages(nested, &format!("{name}."), file, found);
            }
        }
        let set = <prost_types::FileDescriptorSet as prost::Message>::decode(FILE_DESCRIPTOR_SET)
            .expect("the embedded set decodes");
        let mut found = 0;
        for (i, f) in set.file.iter().enumerate() {
            let prefix = if f.package().is_empty() {
                String::new()
            } else {
                format!("{}.", f.package())
            };
            for e in &f.enum_type {
                let e = format!("{prefix}{}", e.name());
                assert_eq!(file_index::declaring_file(&e), Some(i), "{e}");
                found += 1;
            }
            for m in &f.message_type {
                messages(m, &prefix, i, &mut found);
            }
        }
        assert!(found > 1000, "{found} types");
        for word in [
            "",
            "api.v1",
            "envoy.config",
            "small",
            BOOTSTRAP.trim_end_matches('p'),
        ] {
            assert_eq!(file_index::declaring_file(word), None, "{word}");
        }
    }

    #[test]
    fn pool_has_bootstrap_and_extensions() {
        let pool = &descriptor_pool();
        for name in [
            "envoy.config.bootstrap.v3.Bootstrap",
            "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "envoy.extensions.filters.http.router.v3.Router",
            "udpa.type.v1.TypedStruct",
            "xds.type.v3.TypedStruct",
            "google.protobuf.Duration",
            "validate.FieldRules",
        ] {
            assert!(pool.get_message_by_name(name).is_some(), "{name} missing");
        }
    }

    const HCM: &str =
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
    const ROUTER: &str = "envoy.extensions.filters.http.router.v3.Router";
    const JWT: &str = "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication";

    #[test]
    fn type_urls_are_found_in_yaml_json_and_binary() {
        let yaml = format!("typed_config:\n  \"@type\": type.googleapis.com/{HCM}\n");
        let json = format!(r#"{{"@type": "type.googleapis.com\/{ROUTER}"}}"#);
        let mut binary = vec![0x0a, 0x20];
        binary.extend_from_slice(format!("type.googleapis.com/{JWT}").as_bytes());
        binary.push(0x12);
        let names = |t: &[u8]| {
            type_url_names(t)
                .filter(|n| file_index::declaring_file(n).is_some())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(yaml.as_bytes()), [HCM]);
        assert_eq!(names(json.as_bytes()), [ROUTER]);
        assert_eq!(names(&binary), [JWT]);
    }

    #[test]
    fn narrowed_set_holds_what_the_config_names_with_dependencies() {
        let yaml = format!("a: type.googleapis.com/{HCM}\nb: type.googleapis.com/{ROUTER}\n");
        let set = Narrowing::new(&[yaml.as_bytes()], false).files;
        assert!(
            set.len() < FILE_DESCRIPTOR_SET.len() / 2,
            "{} bytes",
            set.len()
        );
        let pool = DescriptorPool::decode(set.as_slice()).expect("a narrowed set decodes");
        for name in [
            "envoy.config.bootstrap.v3.Bootstrap",
            HCM,
            ROUTER,
            "envoy.config.route.v3.RouteConfiguration",
            "google.protobuf.Any",
            "validate.FieldRules",
        ] {
            assert!(pool.get_message_by_name(name).is_some(), "{name} missing");
        }
        assert!(pool.get_message_by_name(JWT).is_none());
    }

    #[test]
    fn the_embedded_set_keeps_builtin_options_and_a_side_table_the_custom_ones_rvoy_reads() {
        let pool = &descriptor_pool();
        let ext = |name| pool.get_extension_by_name(name).expect(name);
        let message = |name| pool.get_message_by_name(name).expect(name);
        let field =
            |m: &prost_reflect::MessageDescriptor, name| m.get_field_by_name(name).expect(name);
        let cluster = message("envoy.config.cluster.v3.Cluster");
        // `udpa.annotations.versioning` was the only option of most messages.
        assert!(cluster.descriptor_proto().options.is_none());
        assert!(CustomOptions::of(&cluster).message().is_none());
        // No custom option is left in a descriptor; rvoy's are in the table.
        let connect_timeout = field(&cluster, "connect_timeout");
        assert!(connect_timeout.field_descriptor_proto().options.is_none());
        assert!(
            field_options(&connect_timeout)
                .is_some_and(|o| o.has_extension(&ext("validate.rules")))
        );
        assert!(field_options(&field(&cluster, "alt_stat_name")).is_none());
        let encoded = CustomOptions::of(&cluster)
            .encoded_field("connect_timeout")
            .expect("in the table");
        let rules: validate::FieldRules =
            decode_extension(encoded, ext("validate.rules").number()).expect("decoded");
        assert!(rules.r#type.is_some());
        assert!(decode_extension::<validate::FieldRules>(encoded, 1).is_none());
        let deprecated = field(&cluster, "max_requests_per_connection");
        assert!(
            deprecated
                .field_descriptor_proto()
                .options
                .as_ref()
                .is_some_and(|o| o.deprecated())
        );
        assert!(field_options(&deprecated).is_none_or(|o| {
            !o.has_extension(&ext("envoy.annotations.deprecated_at_minor_version"))
        }));
        let library = field(&message("envoy.config.trace.v3.DynamicOtConfig"), "library");
        assert!(
            field_options(&library).is_some_and(|o| {
                o.has_extension(&ext("envoy.annotations.disallowed_by_default"))
            })
        );
        let address = message("envoy.config.core.v3.Address");
        let required = address
            .oneofs()
            .find(|o| o.name() == "address")
            .expect("Address.address");
        assert!(
            CustomOptions::of(&address)
                .oneof(&required)
                .is_some_and(|o| o.has_extension(&ext("validate.required")))
        );
        // Built-in options stay, such as `map_entry`; file options go.
        let metadata = message("envoy.config.core.v3.Metadata");
        assert!(field(&metadata, "filter_metadata").is_map());
        assert!(
            metadata
                .parent_file()
                .file_descriptor_proto()
                .options
                .is_none()
        );
    }

    #[test]
    fn the_side_tables_are_sorted_for_binary_search() {
        use custom_options::{ENUM_VALUES, FIELDS, MESSAGES, ONEOFS, blob};
        assert!(FIELDS.rows.len() > 1000 && ONEOFS.rows.len() > 100);
        for table in [&FIELDS, &ONEOFS, &ENUM_VALUES, &MESSAGES] {
            assert!(
                table
                    .parents
                    .windows(2)
                    .all(|w| blob(w[0].0) < blob(w[1].0))
            );
            let mut next = 0;
            for &(_, first, count) in table.parents {
                assert_eq!(usize::from(first), next);
                next += usize::from(count);
                let rows = &table.rows[usize::from(first)..next];
                assert!(rows.windows(2).all(|w| blob(w[0].0) < blob(w[1].0)));
            }
            assert_eq!(next, table.rows.len());
        }
    }

    #[test]
    fn a_prefetch_after_the_first_decode_decodes_nothing() {
        drop(descriptor_pool());
        let before = POOL.lock().map(|s| s.decodes).unwrap_or(0);
        assert!(before > 0);
        // Released (as after a load), a prefetch leaves it released.
        assert!(release_idle_descriptor_pool(Duration::ZERO));
        prefetch_descriptor_pool();
        let state = POOL.lock().expect("not poisoned");
        assert!(state.cached.is_none());
        assert_eq!(state.decodes, before);
    }

    #[test]
    fn prost_names_match_descriptors() {
        assert_eq!(
            envoy::config::bootstrap::v3::Bootstrap::full_name(),
            "envoy.config.bootstrap.v3.Bootstrap"
        );
        let pool = &descriptor_pool();
        assert!(
            pool.get_message_by_name(&envoy::config::cluster::v3::Cluster::full_name())
                .is_some()
        );
    }
}
