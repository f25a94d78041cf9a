//! `/config_dump`: Envoy's `ConfigDump` rendered from the retained bootstrap.
//!
//! The dump has Envoy's sections in Envoy's order: `BootstrapConfigDump`
//! (the bootstrap as loaded, with the node as the server sees it: command
//! line overrides, user agent, extensions), `ClustersConfigDump`
//! (`static_clusters`), with `?include_eds` an `EndpointsConfigDump` of the
//! live hosts, `ListenersConfigDump` (`static_listeners`),
//! `ScopedRoutesConfigDump`, `RoutesConfigDump` (`static_route_configs`: the
//! inline route configs of the HTTP connection managers) and
//! `SecretsConfigDump`.
//!
//! Query parameters as in Envoy: `resource=` dumps each element of that
//! repeated field (404 when no section has it), `mask=` trims with a
//! `FieldMask` (through the one `Any` field of a resource), `name_regex=`
//! keeps the named resources the regex fully matches.

use std::collections::HashMap;

use http::StatusCode;
use prost::Message as _;
use prost_reflect::{DynamicMessage, Kind, MessageDescriptor, ReflectMessage, Value};

use crate::admin::{AdminResponse, TEXT_BARE};
use crate::server::Server;

const TYPE_PREFIX: &str = "type.googleapis.com/";

/// Errors of a dump request, with Envoy's status and text.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("{0} not found in config dump")]
    ResourceNotFound(String),
    #[error("{0} is not a repeated field. Use ?mask={0} to get only this field")]
    NotRepeated(String),
    #[error("FieldMask paths: \"{0}\" could not be successfully used.")]
    BadResourceMask(String),
    #[error("FieldMask {0} could not be successfully applied to any configs.")]
    MaskAppliesToNothing(String),
}

impl DumpError {
    fn status(&self) -> StatusCode {
        match self {
            DumpError::ResourceNotFound(_) => StatusCode::NOT_FOUND,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

fn message(name: &str) -> Option<DynamicMessage> {
    rvoy_api::descriptor_pool()
        .get_message_by_name(name)
        .map(DynamicMessage::new)
}

/// Packs a dynamic message into an `Any` (as a dynamic `google.protobuf.Any`).
fn pack(msg: &DynamicMessage) -> Value {
    let mut any = match message("google.protobuf.Any") {
        Some(a) => a,
        None => return Value::Message(msg.clone()),
    };
    any.set_field_by_name(
        "type_url",
        Value::String(format!("{TYPE_PREFIX}{}", msg.descriptor().full_name())),
    );
    any.set_field_by_name("value", Value::Bytes(msg.encode_to_vec().into()));
    Value::Message(any)
}

/// Unpacks a dynamic `Any`.
fn unpack(any: &DynamicMessage) -> Option<DynamicMessage> {
    let url = any.get_field_by_name("type_url")?;
    let name = url.as_str()?.rsplit('/').next()?.to_owned();
    let value = any.get_field_by_name("value")?;
    let bytes = value.as_bytes()?;
    let desc = rvoy_api::descriptor_pool().get_message_by_name(&name)?;
    DynamicMessage::decode(desc, bytes.as_ref()).ok()
}

fn timestamp(t: std::time::SystemTime) -> Value {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let ts = prost_types::Timestamp {
        seconds: d.as_secs() as i64,
        // Envoy's timestamps have millisecond precision.
        nanos: (d.subsec_millis() * 1_000_000) as i32,
    };
    match message("google.protobuf.Timestamp")
        .and_then(|m| DynamicMessage::decode(m.descriptor(), ts.encode_to_vec().as_slice()).ok())
    {
        Some(m) => Value::Message(m),
        None => Value::I64(0),
    }
}

fn name_of(msg: &DynamicMessage) -> String {
    msg.get_field_by_name("name")
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn list_field(msg: &DynamicMessage, name: &str) -> Vec<DynamicMessage> {
    msg.get_field_by_name(name)
        .and_then(|v| {
            v.as_list().map(|l| {
                l.iter()
                    .filter_map(|x| x.as_message().cloned())
                    .collect::<Vec<_>>()
            })
        })
        .unwrap_or_default()
}

fn sub(msg: &DynamicMessage, name: &str) -> Option<DynamicMessage> {
    if !msg.has_field_by_name(name) {
        return None;
    }
    msg.get_field_by_name(name)
        .and_then(|v| v.as_message().cloned())
}

/// The sections of the dump, in Envoy's order.
fn sections(
    server: &Server,
    matches: &dyn Fn(&str) -> bool,
    include_eds: bool,
) -> Vec<DynamicMessage> {
    let mut out = Vec::new();
    let when = timestamp(server.loaded_at);
    // Rebuilt from the typed bootstrap: the dynamic form would keep the
    // descriptor pool (~17 MiB) alive for the life of the process.
    let Some(bootstrap) = message("envoy.config.bootstrap.v3.Bootstrap").and_then(|m| {
        DynamicMessage::decode(
            m.descriptor(),
            server.bootstrap_pb.encode_to_vec().as_slice(),
        )
        .ok()
    }) else {
        return out;
    };
    let static_resources = sub(&bootstrap, "static_resources");
    let listeners = static_resources
        .as_ref()
        .map(|s| list_field(s, "listeners"))
        .unwrap_or_default();
    // Envoy keeps its clusters in a map ordered by name.
    let mut clusters = static_resources
        .as_ref()
        .map(|s| list_field(s, "clusters"))
        .unwrap_or_default();
    clusters.sort_by_key(name_of);

    // Bootstrap, with the node the server runs as.
    if let Some(mut dump) = message("envoy.admin.v3.BootstrapConfigDump") {
        let mut b = bootstrap.clone();
        let node = crate::admin_pages::node_pb(server);
        if let Some(desc) =
            rvoy_api::descriptor_pool().get_message_by_name("envoy.config.core.v3.Node")
            && let Ok(node) = DynamicMessage::decode(desc, node.encode_to_vec().as_slice())
        {
            b.set_field_by_name("node", Value::Message(node));
        }
        dump.set_field_by_name("bootstrap", Value::Message(b));
        dump.set_field_by_name("last_updated", when.clone());
        out.push(dump);
    }

    // Clusters.
    if let Some(mut dump) = message("envoy.admin.v3.ClustersConfigDump") {
        let items: Vec<Value> = clusters
            .iter()
            .filter(|c| matches(&name_of(c)))
            .filter_map(|c| {
                let mut item = message("envoy.admin.v3.ClustersConfigDump.StaticCluster")?;
                item.set_field_by_name("cluster", pack(c));
                item.set_field_by_name("last_updated", when.clone());
                Some(Value::Message(item))
            })
            .collect();
        if !items.is_empty() {
            dump.set_field_by_name("static_clusters", Value::List(items));
        }
        out.push(dump);
    }

    if include_eds && let Some(dump) = endpoints(server, matches) {
        out.push(dump);
    }

    // Listeners.
    if let Some(mut dump) = message("envoy.admin.v3.ListenersConfigDump") {
        let items: Vec<Value> = listeners
            .iter()
            .filter(|l| matches(&name_of(l)))
            .filter_map(|l| {
                let mut item = message("envoy.admin.v3.ListenersConfigDump.StaticListener")?;
                item.set_field_by_name("listener", pack(l));
                item.set_field_by_name("last_updated", when.clone());
                Some(Value::Message(item))
            })
            .collect();
        if !items.is_empty() {
            dump.set_field_by_name("static_listeners", Value::List(items));
        }
        out.push(dump);
    }

    if let Some(dump) = message("envoy.admin.v3.ScopedRoutesConfigDump") {
        out.push(dump);
    }

    // Routes: the inline route configs of every HTTP connection manager.
    if let Some(mut dump) = message("envoy.admin.v3.RoutesConfigDump") {
        let mut items = Vec::new();
        for l in &listeners {
            let mut chains = list_field(l, "filter_chains");
            chains.extend(sub(l, "default_filter_chain"));
            for chain in chains {
                for filter in list_field(&chain, "filters") {
                    let Some(hcm) = sub(&filter, "typed_config").and_then(|a| unpack(&a)) else {
                        continue;
                    };
                    if hcm.descriptor().full_name()
                        != "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
                    {
                        continue;
                    }
                    let Some(rc) = sub(&hcm, "route_config") else {
                        continue;
                    };
                    if !matches(&name_of(&rc)) {
                        continue;
                    }
                    if let Some(mut item) =
                        message("envoy.admin.v3.RoutesConfigDump.StaticRouteConfig")
                    {
                        item.set_field_by_name("route_config", pack(&rc));
                        item.set_field_by_name("last_updated", when.clone());
                        items.push(Value::Message(item));
                    }
                }
            }
        }
        if !items.is_empty() {
            dump.set_field_by_name("static_route_configs", Value::List(items));
        }
        out.push(dump);
    }

    if let Some(dump) = message("envoy.admin.v3.SecretsConfigDump") {
        out.push(dump);
    }
    out
}

/// `EndpointsConfigDump` of the live hosts (`?include_eds`).
fn endpoints(server: &Server, matches: &dyn Fn(&str) -> bool) -> Option<DynamicMessage> {
    use rvoy_api::envoy::config::core::v3 as core_pb;
    use rvoy_api::envoy::config::endpoint::v3 as ep;
    let snap = server.snapshot.load();
    let mut items = Vec::new();
    for c in &snap.clusters.ordered {
        if !matches(&c.config.name) {
            continue;
        }
        let hosts = c.hosts();
        let cla = ep::ClusterLoadAssignment {
            cluster_name: c.config.name.to_string(),
            endpoints: hosts
                .hosts
                .iter()
                .map(|h| ep::LocalityLbEndpoints {
                    locality: Some(core_pb::Locality::default()),
                    lb_endpoints: vec![ep::LbEndpoint {
                        host_identifier: Some(ep::lb_endpoint::HostIdentifier::Endpoint(
                            ep::Endpoint {
                                address: Some(crate::admin_pages::address_pb(&h.address)),
                                health_check_config: Some(Default::default()),
                                hostname: h.hostname.to_string(),
                                ..Default::default()
                            },
                        )),
                        health_status: match h.health {
                            rvoy_model::cluster::EdsHealth::Healthy => {
                                core_pb::HealthStatus::Healthy
                            }
                            rvoy_model::cluster::EdsHealth::Unhealthy => {
                                core_pb::HealthStatus::Unhealthy
                            }
                            rvoy_model::cluster::EdsHealth::Draining => {
                                core_pb::HealthStatus::Draining
                            }
                            rvoy_model::cluster::EdsHealth::Degraded => {
                                core_pb::HealthStatus::Degraded
                            }
                        } as i32,
                        load_balancing_weight: Some(h.weight),
                        ..Default::default()
                    }],
                    load_balancing_weight: Some(0),
                    priority: h.priority,
                    ..Default::default()
                })
                .collect(),
            policy: Some(ep::cluster_load_assignment::Policy {
                overprovisioning_factor: Some(140),
                ..Default::default()
            }),
            ..Default::default()
        };
        let desc = rvoy_api::descriptor_pool()
            .get_message_by_name("envoy.config.endpoint.v3.ClusterLoadAssignment")?;
        let cla = DynamicMessage::decode(desc, cla.encode_to_vec().as_slice()).ok()?;
        let mut item = message("envoy.admin.v3.EndpointsConfigDump.StaticEndpointConfig")?;
        item.set_field_by_name("endpoint_config", pack(&cla));
        items.push(Value::Message(item));
    }
    let mut dump = message("envoy.admin.v3.EndpointsConfigDump")?;
    if !items.is_empty() {
        dump.set_field_by_name("static_endpoint_configs", Value::List(items));
    }
    Some(dump)
}

/// Whether every path of `mask` names fields of `desc` (Envoy's
/// `FieldMaskUtil::GetFieldDescriptors`: only the last segment may be a
/// repeated or non-message field).
pub fn mask_valid(desc: &MessageDescriptor, paths: &[&str]) -> bool {
    paths.iter().all(|path| {
        let mut d = desc.clone();
        let segs: Vec<&str> = path.split('.').collect();
        for (i, seg) in segs.iter().enumerate() {
            let Some(f) = d.get_field_by_name(seg) else {
                return false;
            };
            if i + 1 < segs.len() {
                match f.kind() {
                    Kind::Message(m) if !f.is_list() && !f.is_map() => d = m,
                    _ => return false,
                }
            }
        }
        true
    })
}

/// Protobuf's `FieldMaskUtil::TrimMessage`: keeps only the masked fields.
pub fn trim(msg: &mut DynamicMessage, paths: &[&str]) {
    let mut tree: HashMap<&str, Vec<&str>> = HashMap::new();
    for p in paths {
        let (head, rest) = p.split_once('.').unwrap_or((p, ""));
        let entry = tree.entry(head).or_default();
        if !rest.is_empty() {
            entry.push(rest);
        } else {
            // The whole field is kept.
            entry.push("");
        }
    }
    let fields: Vec<_> = msg.descriptor().fields().collect();
    for f in fields {
        match tree.get(f.name()) {
            None => msg.clear_field(&f),
            Some(subs) if subs.iter().any(|s| s.is_empty()) => {}
            Some(subs) => {
                if msg.has_field(&f)
                    && let Value::Message(inner) = msg.get_field_mut(&f)
                {
                    trim(inner, subs);
                }
            }
        }
    }
}

/// `trimResourceMessage`: a mask whose first segment is the resource's
/// `Any` field is applied inside the packed message.
fn trim_resource(msg: &mut DynamicMessage, paths: &[&str]) -> bool {
    let desc = msg.descriptor();
    let mut outer: Vec<String> = Vec::new();
    let mut inner: Vec<String> = Vec::new();
    let mut any_field: Option<String> = None;
    for p in paths {
        let (head, rest) = p.split_once('.').unwrap_or((p, ""));
        let is_any = desc.get_field_by_name(head).is_some_and(|f| {
            !f.is_list()
                && matches!(f.kind(), Kind::Message(m) if m.full_name() == "google.protobuf.Any")
        });
        if is_any {
            any_field.get_or_insert_with(|| head.to_owned());
            outer.push(head.to_owned());
            inner.push(rest.to_owned());
        } else {
            outer.push((*p).to_owned());
        }
    }
    if let Some(field) = &any_field
        && msg.has_field_by_name(field)
    {
        let Some(any) = sub(msg, field) else {
            return false;
        };
        let Some(mut unpacked) = unpack(&any) else {
            return false;
        };
        let inner_paths: Vec<&str> = inner.iter().map(String::as_str).collect();
        if !mask_valid(&unpacked.descriptor(), &inner_paths) {
            return false;
        }
        trim(&mut unpacked, &inner_paths);
        msg.set_field_by_name(field, pack(&unpacked));
    }
    let outer_paths: Vec<&str> = outer.iter().map(String::as_str).collect();
    if !mask_valid(&msg.descriptor(), &outer_paths) {
        return false;
    }
    trim(msg, &outer_paths);
    true
}

/// Builds the dump's `configs` for the query.
pub fn build(
    server: &Server,
    resource: Option<&str>,
    mask: Option<&str>,
    matches: &dyn Fn(&str) -> bool,
    include_eds: bool,
) -> Result<Vec<Value>, DumpError> {
    let sections = sections(server, matches, include_eds);
    let paths: Vec<&str> = mask
        .map(|m| m.split(',').filter(|p| !p.is_empty()).collect())
        .unwrap_or_default();
    if let Some(resource) = resource {
        for section in &sections {
            let Some(field) = section.descriptor().get_field_by_name(resource) else {
                continue;
            };
            if !field.is_list() {
                return Err(DumpError::NotRepeated(resource.to_owned()));
            }
            let mut configs = Vec::new();
            for mut item in list_field(section, resource) {
                if mask.is_some() && !trim_resource(&mut item, &paths) {
                    return Err(DumpError::BadResourceMask(paths.join(",")));
                }
                configs.push(pack(&item));
            }
            return Ok(configs);
        }
        return Err(DumpError::ResourceNotFound(resource.to_owned()));
    }
    let mut configs = Vec::new();
    for mut section in sections {
        if mask.is_some() {
            if !mask_valid(&section.descriptor(), &paths) {
                continue;
            }
            trim(&mut section, &paths);
        }
        configs.push(pack(&section));
    }
    if configs.is_empty()
        && let Some(m) = mask
    {
        return Err(DumpError::MaskAppliesToNothing(m.to_owned()));
    }
    Ok(configs)
}

/// The `/config_dump` handler.
pub fn handle(server: &Server, params: &HashMap<String, String>) -> AdminResponse {
    let name_regex = params.get("name_regex").filter(|r| !r.is_empty());
    let regex = match name_regex {
        None => None,
        Some(r) => match regex::Regex::new(&format!("^(?:{r})$")) {
            Ok(re) => Some(re),
            Err(e) => {
                let reason = e.to_string();
                let reason = reason
                    .lines()
                    .rev()
                    .find(|l| l.starts_with("error: "))
                    .map_or(reason.as_str(), |l| l.trim_start_matches("error: "))
                    .to_owned();
                return AdminResponse::with_type(
                    StatusCode::BAD_REQUEST,
                    TEXT_BARE,
                    format!("INVALID_ARGUMENT: Error while parsing name_regex from {r}: {reason}"),
                );
            }
        },
    };
    let matches = |name: &str| regex.as_ref().is_none_or(|re| re.is_match(name));
    let configs = build(
        server,
        params.get("resource").map(String::as_str),
        params.get("mask").map(String::as_str),
        &matches,
        params.contains_key("include_eds"),
    );
    match configs {
        Ok(configs) => {
            let Some(mut dump) = message("envoy.admin.v3.ConfigDump") else {
                return AdminResponse::json("{}\n");
            };
            if !configs.is_empty() {
                dump.set_field_by_name("configs", Value::List(configs));
            }
            AdminResponse::json(crate::admin_pages::dynamic_to_json(&dump, false))
        }
        Err(e) => {
            let mut r = AdminResponse::with_type(e.status(), TEXT_BARE, e.to_string());
            r.extra_nosniff = true;
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(name: &str) -> MessageDescriptor {
        rvoy_api::descriptor_pool()
            .get_message_by_name(name)
            .expect("descriptor")
    }

    #[test]
    fn mask_validity_follows_field_mask_util() {
        let b = desc("envoy.config.bootstrap.v3.Bootstrap");
        assert!(mask_valid(&b, &["node", "admin.address"]));
        assert!(!mask_valid(&b, &["bogus"]));
        assert!(!mask_valid(&b, &["static_resources.listeners.name"]));
        assert!(mask_valid(&b, &["static_resources.listeners"]));
    }

    #[test]
    fn trim_keeps_masked_fields() {
        let d = desc("envoy.config.listener.v3.Listener");
        let mut m = DynamicMessage::new(d);
        m.set_field_by_name("name", Value::String("l".into()));
        m.set_field_by_name("stat_prefix", Value::String("s".into()));
        trim(&mut m, &["name"]);
        assert!(m.has_field_by_name("name"));
        assert!(!m.has_field_by_name("stat_prefix"));
    }

    #[test]
    fn pack_and_unpack_round_trip() {
        let d = desc("envoy.config.listener.v3.Listener");
        let mut m = DynamicMessage::new(d);
        m.set_field_by_name("name", Value::String("l".into()));
        let Value::Message(any) = pack(&m) else {
            panic!("not a message")
        };
        let back = unpack(&any).expect("unpack");
        assert_eq!(name_of(&back), "l");
    }
}
