//! Pruning a narrowed descriptor set down to what one text config can use.
//!
//! Decoding a descriptor pool costs in proportion to the names it holds, and
//! the files a bootstrap imports declare ~500 messages with ~2,000 fields, of
//! which a typical config sets a few dozen. A field matters to reading and
//! checking a text config (YAML, JSON, text format) only if
//!
//! * its name or JSON name is a word of the text (else the text cannot set it),
//! * or it has `validate` rules, or is in a oneof that has: PGV checks unset
//!   fields too (`min_len`, `required`),
//! * or it is an enum: Envoy reports an unset enum whose default value is
//!   deprecated,
//! * or it is an extension's `name` or `typed_config`, which the extension
//!   checks look up on every message.
//!
//! Load-time code that reads a field while it is unset (through the
//! descriptor, not the typed config) must be kept by these rules too.
//!
//! [`prune`] drops every other field, then every message and enum no longer
//! reachable from the bootstrap, the types the text names by a type URL, the
//! option extensions and the `google.*` and `validate.*` packages (kept
//! whole: the JSON mapping of the well-known types and the validation rules
//! read them). What stays reads and checks the text exactly as the whole set
//! does; a text the pruned pool cannot read (a name spelled in some way this
//! word scan misses) fails to load, and the loader then loads it again with
//! the whole snapshot (see `narrow_descriptor_pool`).

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use prost::Message as _;
use prost_types::field_descriptor_proto::Type;
use prost_types::{DescriptorProto, FileDescriptorProto, FileDescriptorSet};

use crate::custom_options::{FIELDS, ONEOFS};
use crate::{row, rows_of};

/// A multiplicative hash for the short keys of a pruning (words, type
/// names): the default SipHash costs more than the pruning saves on a large
/// config. Keys come from the operator's own config and the build's
/// descriptors, so collision flooding is not a concern.
#[derive(Default)]
pub(crate) struct WordHasher(u64);

impl Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) type FastBuild = BuildHasherDefault<WordHasher>;

/// The words of `text` that can name a field: runs of ASCII letters, digits
/// and `_` that start with a lowercase letter (Envoy's field names and their
/// JSON names all do).
pub(crate) fn words(text: &[u8]) -> HashSet<&[u8], FastBuild> {
    text.split(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
        .filter(|w| w.first().is_some_and(u8::is_ascii_lowercase))
        .collect()
}

/// Packages kept whole.
fn kept_whole(full_name: &str) -> bool {
    full_name.starts_with("google.") || full_name.starts_with("validate.")
}

/// The messages and enums of a set, numbered in the order [`for_each_type`]
/// visits them, with what each one keeps alive.
#[derive(Default)]
struct Graph {
    /// Full names with a leading dot (as a field's `type_name` has them).
    index: HashMap<String, usize, FastBuild>,
    /// For each type: the types it keeps alive (its parent, which declares
    /// it, and the types of its kept fields).
    edges: Vec<Vec<usize>>,
    /// Field type names, resolved once all types are numbered.
    pending: Vec<(usize, String)>,
}

impl Graph {
    fn add(&mut self, full_name: &str, parent: Option<usize>) -> usize {
        let id = self.edges.len();
        self.index.insert(full_name.to_owned(), id);
        self.edges.push(parent.into_iter().collect());
        id
    }
}

/// Prunes the fields of `message` (full name `full`, with a leading dot) and
/// its nested types, and numbers them all in `graph`.
fn visit_message(
    message: &mut DescriptorProto,
    full: &mut String,
    parent: Option<usize>,
    words: &HashSet<&[u8], FastBuild>,
    graph: &mut Graph,
) {
    let len = full.len();
    full.push('.');
    full.push_str(message.name());
    let id = graph.add(full, parent);
    let name = &full[1..];
    let is_map_entry = message.options.as_ref().is_some_and(|o| o.map_entry());
    if !kept_whole(name) && !is_map_entry {
        let rules = rows_of(&FIELDS, name);
        let oneof_rules = rows_of(&ONEOFS, name);
        let ruled_oneofs: Vec<bool> = message
            .oneof_decl
            .iter()
            .map(|o| row(oneof_rules, o.name()).is_some())
            .collect();
        message.field.retain(|f| {
            let field = f.name();
            words.contains(field.as_bytes())
                || words.contains(f.json_name().as_bytes())
                || f.r#type() == Type::Enum
                || field == "name"
                || field == "typed_config"
                || row(rules, field).is_some()
                || f.oneof_index
                    .and_then(|i| ruled_oneofs.get(usize::try_from(i).ok()?).copied())
                    .unwrap_or(false)
        });
        renumber_oneofs(message);
    }
    for f in message.field.iter().chain(&message.extension) {
        for type_name in [f.type_name(), f.extendee()] {
            if !type_name.is_empty() {
                graph.pending.push((id, type_name.to_owned()));
            }
        }
    }
    for nested in &mut message.nested_type {
        visit_message(nested, full, Some(id), words, graph);
    }
    for e in &message.enum_type {
        let n = full.len();
        full.push('.');
        full.push_str(e.name());
        graph.add(full, Some(id));
        full.truncate(n);
    }
    full.truncate(len);
}

/// Drops the oneofs left without fields and renumbers the fields' oneof
/// indices, keeping the declarations' order (synthetic oneofs stay last).
fn renumber_oneofs(message: &mut DescriptorProto) {
    let mut used = vec![false; message.oneof_decl.len()];
    for f in &message.field {
        if let Some(u) = f
            .oneof_index
            .and_then(|i| used.get_mut(usize::try_from(i).ok()?))
        {
            *u = true;
        }
    }
    if used.iter().all(|u| *u) {
        return;
    }
    let mut new_index = Vec::with_capacity(used.len());
    let mut next = 0i32;
    for u in &used {
        new_index.push(next);
        next += i32::from(*u);
    }
    for f in &mut message.field {
        if let Some(i) = f.oneof_index {
            f.oneof_index = usize::try_from(i)
                .ok()
                .and_then(|i| new_index.get(i).copied());
        }
    }
    let mut keep = used.into_iter();
    message.oneof_decl.retain(|_| keep.next().unwrap_or(true));
}

/// Keeps the live types among `message`'s nested ones (numbered as
/// [`visit_message`] numbered them); returns whether `message` is live.
fn retain_live(message: &mut DescriptorProto, next: &mut usize, live: &[bool]) -> bool {
    let id = *next;
    *next += 1;
    message
        .nested_type
        .retain_mut(|nested| retain_live(nested, next, live));
    message.enum_type.retain(|_| {
        let id = *next;
        *next += 1;
        live.get(id).copied().unwrap_or(true)
    });
    live.get(id).copied().unwrap_or(true)
}

/// `files` (an encoded set: whole files with their dependencies) pruned for
/// a config of words `words` whose type URLs name `roots`; `None` if `files`
/// does not decode.
pub(crate) fn prune(
    files: &[u8],
    words: &HashSet<&[u8], FastBuild>,
    roots: &[&str],
) -> Option<FileDescriptorSet> {
    let mut set = FileDescriptorSet::decode(files).ok()?;
    let mut graph = Graph::default();
    let mut live_from: Vec<usize> = Vec::new();
    let mut full = String::new();
    for file in &mut set.file {
        // Services are not read by the loader; their methods would keep
        // their request types alive.
        file.service.clear();
        full.clear();
        if !file.package().is_empty() {
            full.push('.');
            full.push_str(file.package());
        }
        let first = graph.edges.len();
        for message in &mut file.message_type {
            visit_message(message, &mut full, None, words, &mut graph);
        }
        for e in &file.enum_type {
            let n = full.len();
            full.push('.');
            full.push_str(e.name());
            graph.add(&full, None);
            full.truncate(n);
        }
        if kept_whole(file.package()) {
            live_from.extend(first..graph.edges.len());
        }
        for x in &file.extension {
            for type_name in [x.type_name(), x.extendee()] {
                if let Some(&id) = graph.index.get(type_name) {
                    live_from.push(id);
                }
            }
        }
    }
    for (from, type_name) in std::mem::take(&mut graph.pending) {
        if let Some(&to) = graph.index.get(type_name.as_str()) {
            graph.edges[from].push(to);
        }
    }
    let mut dotted = String::new();
    for root in roots {
        dotted.clear();
        dotted.push('.');
        dotted.push_str(root);
        if let Some(&id) = graph.index.get(dotted.as_str()) {
            live_from.push(id);
        }
    }
    let mut live = vec![false; graph.edges.len()];
    while let Some(id) = live_from.pop() {
        if let Some(l) = live.get_mut(id)
            && !std::mem::replace(l, true)
        {
            live_from.extend_from_slice(&graph.edges[id]);
        }
    }
    let mut next = 0;
    for file in &mut set.file {
        retain_file(file, &mut next, &live);
    }
    Some(set)
}

/// [`retain_live`] for the top-level types of `file`.
fn retain_file(file: &mut FileDescriptorProto, next: &mut usize, live: &[bool]) {
    file.message_type
        .retain_mut(|message| retain_live(message, next, live));
    file.enum_type.retain(|_| {
        let id = *next;
        *next += 1;
        live.get(id).copied().unwrap_or(true)
    });
}

#[cfg(test)]
mod tests {
    use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MessageDescriptor};

    use super::*;
    use crate::{BOOTSTRAP, descriptor_pool};

    const CONFIG: &str = r#"{
      "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 9901}}},
      "static_resources": {
        "listeners": [{
          "name": "ingress",
          "address": {"socket_address": {"address": "127.0.0.1", "port_value": 10000}},
          "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
              "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
              "stat_prefix": "ingress_http",
              "codec_type": "AUTO",
              "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"],
                "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "origin", "timeout": "5s"}}]}]},
              "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]
            }}]}]
        }],
        "clusters": [{
          "name": "origin", "connectTimeout": "1s", "type": "STATIC",
          "load_assignment": {"cluster_name": "origin", "endpoints": [{"lb_endpoints": [{"endpoint":
            {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 8080}}}}]}]}
        }]
      }
    }"#;

    /// The pool a load of `text` gets.
    fn pruned_pool(text: &str) -> Option<DescriptorPool> {
        crate::pruned_descriptor_pool(&[text.as_bytes()])
    }

    fn read(pool: &DescriptorPool, text: &str) -> Result<Vec<u8>, serde_json::Error> {
        let desc = pool.get_message_by_name(BOOTSTRAP).expect("the bootstrap");
        let mut de = serde_json::Deserializer::from_str(text);
        DynamicMessage::deserialize(desc, &mut de).map(|m| prost::Message::encode_to_vec(&m))
    }

    fn field(pool: &DescriptorPool, message: &str, field: &str) -> bool {
        pool.get_message_by_name(message)
            .is_some_and(|m| m.get_field_by_name(field).is_some())
    }

    #[test]
    fn a_pruned_pool_reads_a_config_as_the_whole_one_does() {
        let pruned = pruned_pool(CONFIG).expect("prunes and decodes");
        let whole = descriptor_pool();
        let read_pruned = read(&pruned, CONFIG).expect("reads");
        assert_eq!(read_pruned, read(&whole, CONFIG).expect("reads"));
        // Pruned: a field the config does not set and nothing checks, and a
        // type only such fields lead to.
        assert!(field(&whole, BOOTSTRAP, "hds_config"));
        assert!(!field(&pruned, BOOTSTRAP, "hds_config"));
        assert!(
            whole
                .get_message_by_name("envoy.config.trace.v3.Tracing")
                .is_some()
        );
        assert!(
            pruned
                .get_message_by_name("envoy.config.trace.v3.Tracing")
                .is_none()
        );
        assert!(pruned.all_messages().count() * 2 < whole.all_messages().count() / 4);
        // Kept: a field named by its JSON name, and the names extension
        // checks look up.
        assert!(field(
            &pruned,
            "envoy.config.cluster.v3.Cluster",
            "connect_timeout"
        ));
        assert!(field(
            &pruned,
            "envoy.config.listener.v3.Filter",
            "typed_config"
        ));
    }

    /// Every field a load checks while it is unset is in the pruned pool:
    /// those with validation rules, those of oneofs with rules, enums.
    #[test]
    fn a_pruned_pool_keeps_every_field_the_checks_read_unset() {
        let pruned = pruned_pool(CONFIG).expect("prunes and decodes");
        let whole = descriptor_pool();
        let mut checked = 0;
        for message in pruned.all_messages() {
            let full = whole
                .get_message_by_name(message.full_name())
                .expect("the same message in the whole pool");
            let oneof_rules = rows_of(&ONEOFS, full.full_name());
            let custom = crate::CustomOptions::of(&full);
            for f in full.fields() {
                let ruled = custom.encoded_field(f.name()).is_some()
                    || f.containing_oneof()
                        .is_some_and(|o| row(oneof_rules, o.name()).is_some());
                let is_enum = matches!(f.kind(), Kind::Enum(_));
                if ruled || is_enum {
                    checked += 1;
                    assert!(
                        message.get_field_by_name(f.name()).is_some(),
                        "{} lost {}",
                        message.full_name(),
                        f.name()
                    );
                }
            }
            assert_same_oneofs(&message, &full);
        }
        assert!(checked > 100, "{checked} checked fields");
    }

    fn assert_same_oneofs(pruned: &MessageDescriptor, whole: &MessageDescriptor) {
        for oneof in pruned.oneofs() {
            let original = whole
                .oneofs()
                .find(|o| o.name() == oneof.name())
                .expect("a oneof of the message");
            assert_eq!(oneof.is_synthetic(), original.is_synthetic());
            for f in oneof.fields() {
                assert_eq!(
                    whole
                        .get_field_by_name(f.name())
                        .and_then(|f| f.containing_oneof())
                        .map(|o| o.name().to_owned()),
                    Some(oneof.name().to_owned())
                );
            }
        }
    }

    /// A field named in a way the word scan does not see (a JSON escape)
    /// is missing: the load fails and the loader retries with the whole
    /// snapshot.
    #[test]
    fn a_field_the_words_miss_fails_to_read() {
        let text = CONFIG.replacen("\"admin\"", "\"\\u0061dmin\"", 1);
        let pruned = pruned_pool(&text).expect("prunes and decodes");
        assert!(read(&pruned, &text).is_err());
        assert!(read(&descriptor_pool(), &text).is_ok());
    }

    /// The build writes every field's JSON name into the set, which the word
    /// match reads (a field without one would only be matched by its name).
    #[test]
    fn every_field_of_the_set_carries_its_json_name() {
        use prost::Message as _;
        fn check(m: &DescriptorProto, fields: &mut usize) {
            for f in &m.field {
                *fields += 1;
                assert!(
                    f.json_name.is_some(),
                    "{}.{} has no JSON name",
                    m.name(),
                    f.name()
                );
            }
            m.nested_type.iter().for_each(|n| check(n, fields));
        }
        let set = FileDescriptorSet::decode(crate::FILE_DESCRIPTOR_SET).expect("decodes");
        let mut fields = 0;
        set.file
            .iter()
            .flat_map(|f| &f.message_type)
            .for_each(|m| check(m, &mut fields));
        assert!(fields > 5000, "{fields} fields");
        let connect_timeout = set
            .file
            .iter()
            .flat_map(|f| &f.message_type)
            .find(|m| m.name() == "Cluster")
            .and_then(|m| m.field.iter().find(|f| f.name() == "connect_timeout"))
            .expect("Cluster.connect_timeout");
        assert_eq!(connect_timeout.json_name(), "connectTimeout");
    }
}
