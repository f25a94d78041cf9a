//! A text config reads and checks the same with the pruned descriptor pool a
//! load decodes first (`rvoy_api::narrow_descriptor_pool`) as with the whole
//! snapshot: the same message, the same errors, unknown fields, validation
//! errors and deprecation reports. Run over every YAML config of the
//! repository (examples, fuzz seeds and regressions, model fixtures, bench
//! configs).

use std::path::{Path, PathBuf};

use prost_reflect::{DescriptorPool, DynamicMessage, MapKey, ReflectMessage as _, Value};
use rvoy_config_load::error::FieldPath;
use rvoy_config_load::{deprecation, proto_json, validate, yaml};

/// What reading and checking a config gives, as text.
fn read(pool: &DescriptorPool, text: &str) -> Vec<String> {
    let desc = pool
        .get_message_by_name("envoy.config.bootstrap.v3.Bootstrap")
        .expect("the bootstrap");
    let Ok(node) = yaml::parse_yaml(text) else {
        return vec!["not YAML".into()];
    };
    let root = FieldPath::root();
    let parsed = proto_json::parse_message(pool, &node, &desc, None, root.clone());
    let mut out = vec![canonical(&parsed.message)];
    out.extend(parsed.errors.iter().map(|e| format!("error: {e}")));
    out.extend(
        parsed
            .unknown_fields
            .iter()
            .map(|e| format!("unknown: {e}")),
    );
    out.extend(
        validate::validate(&parsed.message, &root)
            .iter()
            .map(|e| format!("invalid: {e}")),
    );
    let report = deprecation::check_bootstrap(&parsed.message, &root);
    out.extend(report.errors.iter().map(|e| format!("deprecated: {e}")));
    out.extend(
        report
            .warnings
            .iter()
            .map(|e| format!("deprecated (warning): {e}")),
    );
    out
}

/// `message` as text that does not depend on the order of map entries (a
/// map's encoding does), with `Any` payloads opened.
fn canonical(message: &DynamicMessage) -> String {
    let desc = message.descriptor();
    if desc.full_name() == "google.protobuf.Any" {
        let get = |name: &str| message.get_field_by_name(name).map(|v| v.into_owned());
        if let (Some(Value::String(url)), Some(Value::Bytes(bytes))) =
            (get("type_url"), get("value"))
        {
            let name = url.rsplit('/').next().unwrap_or_default();
            if let Some(inner) = desc.parent_pool().get_message_by_name(name)
                && let Ok(inner) = DynamicMessage::decode(inner, bytes)
            {
                return format!("Any({url}){{{}}}", canonical(&inner));
            }
        }
    }
    let mut out = String::new();
    for (field, value) in message.fields() {
        out.push_str(&format!("{}: {}; ", field.name(), canonical_value(value)));
    }
    out
}

fn canonical_value(value: &Value) -> String {
    match value {
        Value::Message(m) => format!("{{{}}}", canonical(m)),
        Value::List(items) => {
            let items: Vec<String> = items.iter().map(canonical_value).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Map(entries) => {
            let mut entries: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{}={}", canonical_key(k), canonical_value(v)))
                .collect();
            entries.sort();
            format!("map[{}]", entries.join(", "))
        }
        other => format!("{other:?}"),
    }
}

fn canonical_key(key: &MapKey) -> String {
    format!("{key:?}")
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml") {
            out.push(path);
        }
    }
}

#[test]
fn every_repository_config_reads_the_same_with_the_pruned_pool() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    for dir in [
        "examples",
        "fuzz/seeds/yaml",
        "fuzz/regressions",
        "crates/rvoy-model/tests/fixtures",
        "bench/configs/envoy",
    ] {
        yaml_files(&repo.join(dir), &mut files);
    }
    assert!(files.len() >= 30, "{} configs", files.len());
    let whole = rvoy_api::descriptor_pool();
    for file in files {
        // The bench's templates: ports and paths filled in as `bench/run` does.
        let text = std::fs::read_to_string(&file)
            .expect("readable")
            .replace("{{port:", "{{")
            .replace("{{path:", "/tmp/{{");
        let text = fill_placeholders(&text);
        let pruned = rvoy_api::pruned_descriptor_pool(&[text.as_bytes()])
            .unwrap_or_else(|| panic!("{} prunes", file.display()));
        assert_eq!(
            read(&pruned, &text),
            read(&whole, &text),
            "{}",
            file.display()
        );
    }
}

/// Configs that break what the checks read on unset fields: a required
/// field and a required oneof left out, enums left at a deprecated default.
#[test]
fn unset_fields_are_checked_the_same_with_the_pruned_pool() {
    const HCM: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
    const ZIPKIN: &str = "tracing: {provider: {name: envoy.tracers.zipkin, typed_config: {'@type': type.googleapis.com/envoy.config.trace.v3.ZipkinConfig, collector_cluster: c, collector_endpoint: /api/v2/spans}}}";
    let listener = |route: &str, hcm: &str| {
        format!(
            "static_resources:\n  listeners:\n  - name: l\n    address: {{socket_address: {{address: 127.0.0.1, port_value: 1}}}}\n    filter_chains:\n    - filters:\n      - name: hcm\n        typed_config:\n          '@type': {HCM}\n          stat_prefix: s\n          route_config: {{virtual_hosts: [{{name: v, domains: ['*'], routes: [{route}]}}]}}\n          {hcm}\n"
        )
    };
    let whole = rvoy_api::descriptor_pool();
    for text in [
        listener("{direct_response: {status: 200}}", ""),
        listener("{match: {prefix: /}}", ""),
        listener("{match: {prefix: /}, route: {cluster: c}}", ZIPKIN),
        "dynamic_resources: {cds_config: {api_config_source: {}}}\n".to_owned(),
    ] {
        let pruned = rvoy_api::pruned_descriptor_pool(&[text.as_bytes()]).expect("prunes");
        let read_whole = read(&whole, &text);
        assert!(
            read_whole.len() > 1,
            "{text} finds something: {read_whole:?}"
        );
        assert_eq!(read(&pruned, &text), read_whole, "{text}");
    }
}

/// `{{name}}` placeholders as a number.
fn fill_placeholders(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        match rest[start..].find("}}") {
            Some(end) => {
                out.push_str("10000");
                rest = &rest[start + end + 2..];
            }
            None => {
                rest = &rest[start..];
                break;
            }
        }
    }
    out.push_str(rest);
    out
}
