//! Loading the bootstrap the way Envoy's `InstanceUtil::loadBootstrapConfig` does.
//!
//! `-c FILE` is read by its extension (`.pb` binary, `.pb_text` text format,
//! `.yaml`/`.yml` YAML, anything else JSON); `--config-yaml` is read as YAML and
//! merged over it with protobuf MergeFrom semantics (scalars replaced, messages
//! merged, repeated fields appended). The merged message is then checked:
//! unknown fields (rejected unless `--allow-unknown-static-fields`),
//! `validate.rules`, deprecated fields. The result keeps the source documents so
//! that later errors, found while building the model, can still name a file,
//! line and column.

use std::path::Path;
use std::sync::Arc;

use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};
use rvoy_api::envoy::config::bootstrap::v3::Bootstrap;

use crate::error::{ConfigError, ConfigErrors, ErrorKind, FieldPath};
use crate::node::Node;
use crate::source::SourceMap;
use crate::{deprecation, proto_json, validate, wire, yaml};

/// The name used for `--config-yaml` in error locations.
pub const CONFIG_YAML_SOURCE: &str = "--config-yaml";

/// What to load and how strictly.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// `-c` / `--config-path`.
    pub config_path: Option<String>,
    /// `--config-yaml`.
    pub config_yaml: Option<String>,
    /// `--allow-unknown-static-fields` (or the deprecated `--allow-unknown-fields`).
    pub allow_unknown_static_fields: bool,
}

/// A bootstrap that parsed and passed the proto-level checks.
#[derive(Debug)]
pub struct LoadedBootstrap {
    pub bootstrap: Bootstrap,
    /// The same config as a dynamic message (what `/config_dump` renders).
    pub message: DynamicMessage,
    /// The documents it came from, to locate later errors.
    pub sources: SourceMap,
    /// Accepted but worth a log line: allowed unknown fields, deprecated fields.
    pub warnings: Vec<ConfigError>,
}

/// Reads, merges and checks the bootstrap.
pub fn load_bootstrap(options: &LoadOptions) -> Result<LoadedBootstrap, ConfigErrors> {
    // Decoding the descriptor pool on first use takes tens of milliseconds:
    // it runs on a thread of its own while this one reads and parses the
    // file. Should no thread start, the pool is decoded when first needed.
    let _ = std::thread::Builder::new()
        .name("descriptor-pool".into())
        .spawn(rvoy_api::prefetch_descriptor_pool);

    let path = options.config_path.as_deref().filter(|p| !p.is_empty());
    let yaml_override = options.config_yaml.as_deref().filter(|y| !y.is_empty());
    if path.is_none() && yaml_override.is_none() {
        return Err(ConfigError::new(
            ErrorKind::Io,
            FieldPath::root(),
            "At least one of --config-path or --config-yaml or Options::configProto() should be non-empty",
        )
        .into());
    }

    let mut sources = SourceMap::new();
    let mut warnings = Vec::new();
    let mut errors = Vec::new();
    let doc = path.map(read_file).transpose()?;
    let (pool, desc) = bootstrap_type()?;
    let pool = &pool;
    let mut message = DynamicMessage::new(desc.clone());

    if let (Some(path), Some(doc)) = (path, doc) {
        take_parsed(
            doc.parsed,
            options,
            &mut message,
            &mut errors,
            &mut warnings,
        );
        if let Some(node) = doc.node {
            sources.push(path.into(), node);
        }
    }
    if let Some(text) = yaml_override {
        let node = yaml::parse_yaml(text).map_err(|e| syntax_error(CONFIG_YAML_SOURCE, e))?;
        let node = require_mapping(node, CONFIG_YAML_SOURCE)?;
        let parsed = proto_json::parse_message(
            pool,
            &node,
            &desc,
            Some(CONFIG_YAML_SOURCE.into()),
            FieldPath::root(),
        );
        let mut overlay = DynamicMessage::new(desc.clone());
        take_parsed(parsed, options, &mut overlay, &mut errors, &mut warnings);
        // MergeFrom: the wire encoding of the overlay merged into the base has
        // exactly protobuf's MergeFrom semantics.
        message
            .merge(wire::encode(&overlay).as_slice())
            .map_err(|e| {
                ConfigError::new(
                    ErrorKind::Syntax,
                    FieldPath::root(),
                    format!("merging --config-yaml: {e}"),
                )
            })?;
        sources.push(CONFIG_YAML_SOURCE.into(), Arc::new(node));
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }

    let root = FieldPath::root();
    let checked = check_message(&message, &root, &sources, true);
    warnings.extend(checked.warnings);
    if !checked.errors.is_empty() {
        return Err(ConfigErrors(checked.errors));
    }

    let bootstrap: Bootstrap = wire::transcode(&message).map_err(|e| {
        ConfigError::new(
            ErrorKind::Syntax,
            root,
            format!("converting the bootstrap: {e}"),
        )
    })?;
    Ok(LoadedBootstrap {
        bootstrap,
        message,
        sources,
        warnings,
    })
}

/// The outcome of the proto-level checks of one message.
#[derive(Debug, Default)]
pub struct Checked {
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<ConfigError>,
}

/// `validate.rules` and deprecation checks of a parsed message, with locations.
/// `bootstrap`: the message is a bootstrap (checked before Envoy's runtime exists).
pub fn check_message(
    message: &DynamicMessage,
    path: &FieldPath,
    sources: &SourceMap,
    bootstrap: bool,
) -> Checked {
    let mut errors: Vec<ConfigError> = validate::validate(message, path)
        .into_iter()
        .map(|e| sources.annotate(e))
        .collect();
    let deprecated = if bootstrap {
        deprecation::check_bootstrap(message, path)
    } else {
        deprecation::check(message, path)
    };
    errors.extend(deprecated.errors.into_iter().map(|e| sources.annotate(e)));
    let warnings = deprecated
        .warnings
        .into_iter()
        .map(|e| sources.annotate(e))
        .collect();
    Checked { errors, warnings }
}

/// One source file read into a message.
struct ReadDoc {
    parsed: proto_json::Parsed,
    /// The positioned tree, for YAML and JSON files.
    node: Option<Arc<Node>>,
}

/// The API's descriptor pool and its `Bootstrap`.
fn bootstrap_type() -> Result<(DescriptorPool, MessageDescriptor), ConfigErrors> {
    let pool = rvoy_api::descriptor_pool();
    let desc = pool
        .get_message_by_name("envoy.config.bootstrap.v3.Bootstrap")
        .ok_or_else(|| {
            ConfigError::new(
                ErrorKind::Syntax,
                FieldPath::root(),
                "Bootstrap missing from the API pool",
            )
        })?;
    Ok((pool, desc))
}

/// Whether the bootstrap file at `path` is binary protobuf (`.pb`, as Envoy
/// reads it); every other one is text (YAML, JSON, `.pb_text`).
pub fn is_binary(path: &str) -> bool {
    path.to_ascii_lowercase().ends_with(".pb")
}

/// Reads a bootstrap file; a YAML or JSON one is parsed before the descriptor
/// pool is asked for (see [`load_bootstrap`]).
fn read_file(path: &str) -> Result<ReadDoc, ConfigErrors> {
    let file: Arc<str> = path.into();
    let io_error = |e: std::io::Error| {
        ConfigErrors::from(ConfigError::new(
            ErrorKind::Io,
            FieldPath::root(),
            format!("unable to read file: {path}: {e}"),
        ))
    };
    let lower = path.to_ascii_lowercase();
    if is_binary(path) {
        let bytes = std::fs::read(Path::new(path)).map_err(io_error)?;
        let (_, desc) = bootstrap_type()?;
        let message = DynamicMessage::decode(desc, bytes.as_slice()).map_err(|e| {
            ConfigError::new(
                ErrorKind::Syntax,
                FieldPath::root(),
                format!("unable to parse binary proto {path}: {e}"),
            )
        })?;
        let unknown = unknown_binary_fields(&message, &FieldPath::root(), &file);
        return Ok(ReadDoc {
            parsed: proto_json::Parsed {
                message,
                errors: Vec::new(),
                unknown_fields: unknown,
            },
            node: None,
        });
    }
    let text = std::fs::read_to_string(Path::new(path)).map_err(io_error)?;
    if lower.ends_with(".pb_text") {
        let (_, desc) = bootstrap_type()?;
        let message = DynamicMessage::parse_text_format(desc, &text).map_err(|e| {
            ConfigError::new(
                ErrorKind::Syntax,
                FieldPath::root(),
                format!("unable to parse text proto {path}: {e}"),
            )
        })?;
        return Ok(ReadDoc {
            parsed: proto_json::Parsed {
                message,
                errors: Vec::new(),
                unknown_fields: Vec::new(),
            },
            node: None,
        });
    }
    let node = if lower.ends_with(".yaml") || lower.ends_with(".yml") {
        yaml::parse_yaml(&text).map_err(|e| syntax_error(path, e))?
    } else {
        yaml::parse_json(&text).map_err(|e| syntax_error(path, e))?
    };
    let node = require_mapping(node, path)?;
    let (pool, desc) = bootstrap_type()?;
    let parsed = proto_json::parse_message(&pool, &node, &desc, Some(file), FieldPath::root());
    Ok(ReadDoc {
        parsed,
        node: Some(Arc::new(node)),
    })
}

/// Envoy needs the top level to be a mapping (or list): a scalar document is an error.
fn require_mapping(node: Node, file: &str) -> Result<Node, ConfigErrors> {
    match node.value {
        crate::node::Value::Map(_) => Ok(node),
        crate::node::Value::Null => Ok(Node::new(crate::node::Value::Map(Vec::new()), node.pos)),
        _ => Err(ConfigError::new(
            ErrorKind::Syntax,
            FieldPath::root(),
            format!("Unable to convert YAML as JSON: the top level of {file} must be a mapping"),
        )
        .into()),
    }
}

fn syntax_error(file: &str, e: yaml::SyntaxError) -> ConfigErrors {
    ConfigError::new(
        ErrorKind::Syntax,
        FieldPath::root(),
        format!("unable to parse {file}: {}", e.message),
    )
    .at(Some(crate::error::Location {
        file: file.into(),
        pos: e.pos,
    }))
    .into()
}

/// Moves a parsed document's message and diagnostics into the load's accumulators.
fn take_parsed(
    parsed: proto_json::Parsed,
    options: &LoadOptions,
    message: &mut DynamicMessage,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<ConfigError>,
) {
    *message = parsed.message;
    errors.extend(parsed.errors);
    if options.allow_unknown_static_fields {
        warnings.extend(parsed.unknown_fields);
    } else {
        errors.extend(parsed.unknown_fields);
    }
}

/// Unknown fields preserved by a binary decode, as unknown-field diagnostics.
pub fn unknown_binary_fields(
    message: &DynamicMessage,
    path: &FieldPath,
    file: &Arc<str>,
) -> Vec<ConfigError> {
    let mut out = Vec::new();
    walk_unknown(message, path, file, &mut out);
    out
}

fn walk_unknown(
    message: &DynamicMessage,
    path: &FieldPath,
    file: &Arc<str>,
    out: &mut Vec<ConfigError>,
) {
    for field in message.unknown_fields() {
        out.push(ConfigError::new(
            ErrorKind::UnknownField,
            path.clone(),
            format!(
                "unknown field number {} in {} ({})",
                field.number(),
                message.descriptor().full_name(),
                file
            ),
        ));
    }
    for (fd, value) in message.fields() {
        let p = path.field(fd.name());
        match value {
            prost_reflect::Value::Message(m) => walk_unknown(m, &p, file, out),
            prost_reflect::Value::List(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let prost_reflect::Value::Message(m) = item {
                        walk_unknown(m, &p.index(i), file, out);
                    }
                }
            }
            prost_reflect::Value::Map(entries) => {
                for (k, v) in entries {
                    if let prost_reflect::Value::Message(m) = v {
                        let key = match k {
                            prost_reflect::MapKey::String(s) => s.clone(),
                            other => format!("{other:?}"),
                        };
                        walk_unknown(m, &p.key(&key), file, out);
                    }
                }
            }
            _ => {}
        }
    }
}

use prost_reflect::ReflectMessage as _;

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> String {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p.to_string_lossy().into_owned()
    }

    fn tmpdir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("rvoy-load-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("mkdir");
        d
    }

    const BASE: &str =
        "static_resources:\n  clusters:\n  - name: a\n    type: STATIC\n    connect_timeout: 1s\n";

    #[test]
    fn config_yaml_merges_like_merge_from() {
        let dir = tmpdir("merge");
        let path = write(&dir, "b.yaml", BASE);
        let loaded = load_bootstrap(&LoadOptions {
            config_path: Some(path),
            config_yaml: Some(
                "{admin: {address: {socket_address: {address: 127.0.0.1, port_value: 9901}}}, static_resources: {clusters: [{name: b, type: STATIC}]}}"
                    .into(),
            ),
            ..LoadOptions::default()
        })
        .expect("loads");
        let names: Vec<_> = loaded
            .bootstrap
            .static_resources
            .as_ref()
            .expect("sr")
            .clusters
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert!(loaded.bootstrap.admin.is_some());
    }

    #[test]
    fn config_yaml_alone_and_neither() {
        let loaded = load_bootstrap(&LoadOptions {
            config_yaml: Some("{}".into()),
            ..LoadOptions::default()
        })
        .expect("empty bootstrap is valid");
        assert!(loaded.bootstrap.static_resources.is_none());
        let err = load_bootstrap(&LoadOptions::default()).expect_err("nothing to load");
        assert!(err.to_string().contains("At least one of --config-path"));
    }

    #[test]
    fn unknown_fields_fail_unless_allowed() {
        let dir = tmpdir("unknown");
        let path = write(&dir, "u.yaml", &format!("{BASE}    cluster_nme: x\n"));
        let err = load_bootstrap(&LoadOptions {
            config_path: Some(path.clone()),
            ..LoadOptions::default()
        })
        .expect_err("unknown field");
        assert_eq!(
            err.to_string(),
            format!(
                "unknown field 'cluster_nme' at {path}:6:5 (static_resources.clusters[0]); did you mean 'name'?"
            )
        );
        let ok = load_bootstrap(&LoadOptions {
            config_path: Some(path),
            allow_unknown_static_fields: true,
            ..LoadOptions::default()
        })
        .expect("allowed");
        assert_eq!(ok.warnings.len(), 1);
    }

    #[test]
    fn json_and_binary_files() {
        let dir = tmpdir("kinds");
        let json = write(
            &dir,
            "b.json",
            r#"{"static_resources": {"clusters": [{"name": "j", "type": "STATIC"}]}}"#,
        );
        let loaded = load_bootstrap(&LoadOptions {
            config_path: Some(json),
            ..LoadOptions::default()
        })
        .expect("json");
        let bytes = loaded.bootstrap.encode_to_vec();
        let pb = dir.join("b.pb");
        std::fs::write(&pb, bytes).expect("write pb");
        let again = load_bootstrap(&LoadOptions {
            config_path: Some(pb.to_string_lossy().into_owned()),
            ..LoadOptions::default()
        })
        .expect("pb");
        assert_eq!(again.bootstrap, loaded.bootstrap);
        let text = write(
            &dir,
            "b.pb_text",
            "static_resources { clusters { name: \"t\" } }",
        );
        let t = load_bootstrap(&LoadOptions {
            config_path: Some(text),
            ..LoadOptions::default()
        })
        .expect("pb_text");
        assert_eq!(
            t.bootstrap.static_resources.expect("sr").clusters[0].name,
            "t"
        );
    }

    #[test]
    fn constraint_errors_are_located() {
        let dir = tmpdir("pgv");
        let path = write(
            &dir,
            "n.yaml",
            "static_resources:\n  clusters:\n  - name: a\n    connect_timeout: -1s\n",
        );
        let err = load_bootstrap(&LoadOptions {
            config_path: Some(path.clone()),
            ..LoadOptions::default()
        })
        .expect_err("negative duration");
        let first = err.first().expect("one");
        assert_eq!(
            first.path.to_string(),
            "static_resources.clusters[0].connect_timeout"
        );
        assert_eq!(first.location.as_ref().map(|l| l.pos.line), Some(4));
    }
}
