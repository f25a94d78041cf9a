//! The admin endpoints' bodies, each shaped like Envoy 1.40's: JSON through
//! the admin protos (proto field names, Envoy's one-space indentation), text
//! in Envoy's line formats.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use http::{HeaderMap, StatusCode};
use prost_reflect::{DynamicMessage, SerializeOptions};
use rvoy_api::envoy::admin::v3 as admin_pb;
use rvoy_api::envoy::config::core::v3 as core_pb;
use rvoy_model::cluster::EdsHealth;
use rvoy_upstream::host::{Host, HostAddress};

use crate::admin::{AdminResponse, HTML, JSON, TEXT};
use crate::server::{Server, ServerState};

/// Renders a prost message as Envoy's admin JSON (proto field names,
/// 64-bit integers as strings, defaults shown when `print_defaults`).
pub fn to_json<M: prost::Message + prost::Name>(msg: &M, print_defaults: bool) -> String {
    let pool = &rvoy_api::descriptor_pool();
    let Some(desc) = pool.get_message_by_name(&M::full_name()) else {
        return "{}".to_owned();
    };
    let Ok(dynamic) = DynamicMessage::decode(desc, msg.encode_to_vec().as_slice()) else {
        return "{}".to_owned();
    };
    dynamic_to_json(&dynamic, print_defaults)
}

/// Renders a dynamic message as Envoy's pretty admin JSON.
pub fn dynamic_to_json(msg: &DynamicMessage, print_defaults: bool) -> String {
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .skip_default_fields(!print_defaults)
        .stringify_64_bit_integers(true);
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(
        &mut out,
        serde_json::ser::PrettyFormatter::with_indent(b" "),
    );
    if msg.serialize_with_options(&mut ser, &options).is_err() {
        return "{}".to_owned();
    }
    let mut s = String::from_utf8(out).unwrap_or_default();
    s.push('\n');
    s
}

/// Pretty-prints JSON with Envoy's one-space indentation and a final newline.
pub fn pretty_json(value: &serde_json::Value) -> String {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(
        &mut out,
        serde_json::ser::PrettyFormatter::with_indent(b" "),
    );
    if serde::Serialize::serialize(value, &mut ser).is_err() {
        return "{}\n".to_owned();
    }
    let mut s = String::from_utf8(out).unwrap_or_default();
    s.push('\n');
    s
}

fn state_pb(s: ServerState) -> admin_pb::server_info::State {
    match s {
        ServerState::Live => admin_pb::server_info::State::Live,
        ServerState::Draining => admin_pb::server_info::State::Draining,
        ServerState::PreInitializing => admin_pb::server_info::State::PreInitializing,
        ServerState::Initializing => admin_pb::server_info::State::Initializing,
    }
}

/// `user_agent_build_version` of the node, with Envoy's metadata keys.
pub fn build_version() -> core_pb::BuildVersion {
    let mut fields = BTreeMap::new();
    let string = |s: &str| prost_types::Value {
        kind: Some(prost_types::value::Kind::StringValue(s.to_owned())),
    };
    fields.insert("revision.sha".to_owned(), string(crate::cli::BUILD_SHA));
    fields.insert(
        "revision.status".to_owned(),
        string(crate::cli::BUILD_STATUS),
    );
    fields.insert(
        "build.type".to_owned(),
        string(if cfg!(debug_assertions) {
            "DEBUG"
        } else {
            "RELEASE"
        }),
    );
    fields.insert("ssl.version".to_owned(), string("rustls"));
    core_pb::BuildVersion {
        version: Some(rvoy_api::envoy::r#type::v3::SemanticVersion {
            major_number: 1,
            minor_number: 40,
            patch: 0,
        }),
        metadata: Some(prost_types::Struct { fields }),
    }
}

/// The extensions rvoy implements, as the node advertises them.
pub fn node_extensions() -> Vec<core_pb::Extension> {
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<core_pb::Extension> = rvoy_model::extensions()
        .iter()
        .filter(|e| seen.insert((e.category.envoy_name(), e.name)))
        .map(|e| core_pb::Extension {
            name: e.name.to_owned(),
            category: e.category.envoy_name().to_owned(),
            type_urls: vec![e.config_type.to_owned()],
            ..Default::default()
        })
        .collect();
    out.sort_by(|a, b| (&a.category, &a.name).cmp(&(&b.category, &b.name)));
    out
}

/// The node as `/server_info` and the bootstrap dump show it.
pub fn node_pb(server: &Server) -> core_pb::Node {
    let node = &server.snapshot.load().config.node;
    core_pb::Node {
        id: node.id.clone(),
        cluster: node.cluster.clone(),
        metadata: node.metadata.clone(),
        locality: if node.zone.is_empty() && node.region.is_empty() && node.sub_zone.is_empty() {
            None
        } else {
            Some(core_pb::Locality {
                region: node.region.clone(),
                zone: node.zone.clone(),
                sub_zone: node.sub_zone.clone(),
            })
        },
        user_agent_name: "envoy".to_owned(),
        user_agent_version_type: Some(core_pb::node::UserAgentVersionType::UserAgentBuildVersion(
            build_version(),
        )),
        extensions: node_extensions(),
        ..core_pb::Node::default()
    }
}

pub fn server_info(server: &Server, state: ServerState) -> String {
    let uptime = server.started.elapsed();
    let d = prost_types::Duration {
        seconds: uptime.as_secs() as i64,
        nanos: 0,
    };
    let info = admin_pb::ServerInfo {
        version: crate::cli::version_string(),
        state: state_pb(state) as i32,
        uptime_current_epoch: Some(d),
        uptime_all_epochs: Some(d),
        hot_restart_version: crate::cli::HOT_RESTART_VERSION.to_owned(),
        hot_restart_initializing: false,
        command_line_options: Some(server.options.command_line_options()),
        node: Some(node_pb(server)),
    };
    to_json(&info, true)
}

/// `/stats` (text, JSON, HTML). Histograms show the state of the last
/// stats flush, as in Envoy (`stats_flush_on_admin` flushes first).
pub fn stats(server: &Server, query: &str) -> AdminResponse {
    let params = match rvoy_stats::render::StatsParams::parse(query) {
        Ok(p) => p,
        Err(e) => return AdminResponse::text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    if let Err(e) = params.validate_for_stats() {
        return AdminResponse::text(StatusCode::BAD_REQUEST, e.to_string());
    }
    if server.flush_on_admin {
        server.flush_stats();
    } else {
        server.materialize_stats();
    }
    let snap = server.store.snapshot();
    let mut out = String::new();
    use rvoy_stats::render::StatsFormat;
    if matches!(params.format, StatsFormat::Html | StatsFormat::ActiveHtml) {
        let mut text_params = params.clone();
        text_params.format = StatsFormat::Text;
        rvoy_stats::render::render_stats(&snap, &text_params, &mut out);
        return AdminResponse::with_type(
            StatusCode::OK,
            HTML,
            crate::admin_html::stats_page(query, &params, &out),
        );
    }
    let ct = rvoy_stats::render::render_stats(&snap, &params, &mut out);
    AdminResponse::with_type(
        StatusCode::OK,
        if ct.starts_with("application/json") {
            JSON
        } else {
            TEXT
        },
        out,
    )
}

pub fn prometheus(server: &Server, query: &str) -> AdminResponse {
    let params = match rvoy_stats::render::StatsParams::parse(query) {
        Ok(p) => p,
        Err(e) => return AdminResponse::text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    if let Err(e) = params.validate_for_prometheus() {
        return AdminResponse::text(StatusCode::BAD_REQUEST, e.to_owned());
    }
    if server.flush_on_admin {
        server.flush_stats();
    } else {
        server.materialize_stats();
    }
    // Rendered while it is sent, one ~64 KiB chunk at a time.
    let mut render = rvoy_stats::render::PrometheusRender::new(server.store.snapshot(), &params);
    let chunks = std::iter::from_fn(move || {
        if render.is_done() {
            return None;
        }
        let chunk = rvoy_stats::render::PROMETHEUS_CHUNK;
        let mut out = String::with_capacity(chunk + chunk / 8);
        render.fill(&mut out, chunk);
        (!out.is_empty()).then(|| bytes::Bytes::from(out))
    });
    AdminResponse::streamed(
        StatusCode::OK,
        crate::admin::TEXT,
        crate::admin::BodyStream(Box::new(chunks)),
    )
}

/// `/stats/recentlookups`. rvoy's stats store has no symbol table, so no
/// names are listed; `total` counts stat lookups (registrations) since the
/// last clear.
pub fn recent_lookups(server: &Server) -> AdminResponse {
    let total = server.recent_lookups_total();
    let mut out = String::new();
    if server.recent_lookups_enabled.load(Ordering::Relaxed) {
        out.push_str("   Count Lookup\n");
    } else {
        out.push_str(
            "Lookup tracking is not enabled. Use /stats/recentlookups/enable to enable.\n",
        );
    }
    let _ = write!(out, "\ntotal: {total}\n");
    AdminResponse::text(StatusCode::OK, out)
}

/// `/logging`: no parameter lists the loggers; `level=`, `paths=` or
/// `<logger>=<level>` change levels; `group=` needs fine-grain logging.
pub fn logging(query: &str) -> AdminResponse {
    let params = crate::admin::query_params(query);
    if params.is_empty() {
        return AdminResponse::text(StatusCode::OK, rvoy_log::render_active_loggers());
    }
    let error_page = |first_line: &str| {
        let usage = rvoy_log::render_admin_logging_error(&rvoy_log::AdminLevelError::UnknownLevel);
        let rest = usage.split_once("\n\n").map_or("", |(_, r)| r);
        AdminResponse::text(
            StatusCode::BAD_REQUEST,
            format!(
                "error: {first_line}\n\n{rest}{}",
                rvoy_log::render_active_loggers()
            ),
        )
    };
    if params.contains_key("group") {
        return error_page("group parameter requires fine-grain logging to be enabled");
    }
    let result = if let Some(paths) = params.get("paths") {
        rvoy_log::parse_admin_paths(paths).map(|list| {
            for (c, l) in list {
                rvoy_log::set_level(c, l);
            }
        })
    } else if let Some(level) = params.get("level") {
        rvoy_log::parse_admin_level(level).map(rvoy_log::set_all_levels)
    } else {
        let mut pairs: Vec<(&str, rvoy_log::Level)> = Vec::new();
        let mut bad = None;
        for (k, v) in &params {
            match rvoy_log::parse_admin_level(v) {
                Ok(l) => pairs.push((k.as_str(), l)),
                Err(e) => bad = Some(e),
            }
        }
        match bad {
            Some(e) => Err(e),
            None => rvoy_log::resolve_admin_names(&pairs),
        }
        .map(|list| {
            for (c, l) in list {
                rvoy_log::set_level(c, l);
            }
        })
    };
    match result {
        Ok(()) => AdminResponse::text(StatusCode::OK, rvoy_log::render_active_loggers()),
        Err(e) => AdminResponse::text(
            StatusCode::BAD_REQUEST,
            format!(
                "{}{}",
                rvoy_log::render_admin_logging_error(&e),
                rvoy_log::render_active_loggers()
            ),
        ),
    }
}

/// Envoy's `health_flags` text for a host.
pub fn health_flags(h: &Host) -> &'static str {
    match h.health {
        EdsHealth::Healthy => "healthy",
        EdsHealth::Degraded => "/degraded_eds_health",
        EdsHealth::Unhealthy | EdsHealth::Draining => "/failed_eds_health",
    }
}

fn eds_health_pb(h: &Host) -> core_pb::HealthStatus {
    match h.health {
        EdsHealth::Healthy => core_pb::HealthStatus::Healthy,
        EdsHealth::Unhealthy => core_pb::HealthStatus::Unhealthy,
        EdsHealth::Draining => core_pb::HealthStatus::Draining,
        EdsHealth::Degraded => core_pb::HealthStatus::Degraded,
    }
}

/// A host address as the admin protos carry it.
pub fn address_pb(a: &HostAddress) -> core_pb::Address {
    match a {
        HostAddress::Tcp(a) => socket_address_pb(*a),
        HostAddress::Unix(p) => core_pb::Address {
            address: Some(core_pb::address::Address::Pipe(core_pb::Pipe {
                path: p.to_string_lossy().into_owned(),
                mode: 0,
            })),
        },
    }
}

fn socket_address_pb(a: std::net::SocketAddr) -> core_pb::Address {
    core_pb::Address {
        address: Some(core_pb::address::Address::SocketAddress(
            core_pb::SocketAddress {
                address: a.ip().to_string(),
                port_specifier: Some(core_pb::socket_address::PortSpecifier::PortValue(
                    u32::from(a.port()),
                )),
                ..Default::default()
            },
        )),
    }
}

/// A host's `/clusters` stats, in Envoy's name order (counters and gauges).
fn host_stats(h: &Host) -> [(&'static str, u64, bool); 9] {
    let s = &h.stats;
    let v = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    [
        ("cx_active", v(&s.cx_active), true),
        ("cx_connect_fail", v(&s.cx_connect_fail), false),
        ("cx_total", v(&s.cx_total), false),
        ("rq_active", v(&s.rq_active), true),
        ("rq_error", v(&s.rq_error), false),
        ("rq_pending_active", 0, true),
        ("rq_success", v(&s.rq_success), false),
        ("rq_timeout", v(&s.rq_timeout), false),
        ("rq_total", v(&s.rq_total), false),
    ]
}

/// `/clusters`: Envoy's per-cluster and per-host lines, or `?format=json`.
pub fn clusters(server: &Server, params: &HashMap<String, String>) -> AdminResponse {
    let filter = match params.get("filter").filter(|f| !f.is_empty()) {
        None => None,
        Some(f) => match regex::Regex::new(f) {
            Ok(r) => Some(r),
            Err(e) => {
                return AdminResponse::text(
                    StatusCode::BAD_REQUEST,
                    format!("Invalid re2 regex: {e}"),
                );
            }
        },
    };
    let snap = server.snapshot.load();
    let shown = snap
        .clusters
        .ordered
        .iter()
        .filter(|c| filter.as_ref().is_none_or(|r| r.is_match(&c.config.name)));
    if params.get("format").is_some_and(|f| f == "json") {
        let mut statuses = Vec::new();
        for c in shown {
            let host_statuses = c
                .hosts()
                .hosts
                .iter()
                .map(|h| {
                    let stats = host_stats(h);
                    // Envoy lists counters first, then gauges.
                    let metric =
                        |(name, value, gauge): &(&str, u64, bool)| admin_pb::SimpleMetric {
                            r#type: if *gauge {
                                admin_pb::simple_metric::Type::Gauge as i32
                            } else {
                                admin_pb::simple_metric::Type::Counter as i32
                            },
                            value: *value,
                            name: (*name).to_owned(),
                        };
                    let mut list: Vec<admin_pb::SimpleMetric> =
                        stats.iter().filter(|s| !s.2).map(metric).collect();
                    list.extend(stats.iter().filter(|s| s.2).map(metric));
                    admin_pb::HostStatus {
                        address: Some(address_pb(&h.address)),
                        stats: list,
                        health_status: Some(admin_pb::HostHealthStatus {
                            eds_health_status: eds_health_pb(h) as i32,
                            ..Default::default()
                        }),
                        weight: h.weight,
                        hostname: h.hostname.to_string(),
                        priority: h.priority,
                        locality: Some(core_pb::Locality::default()),
                        ..Default::default()
                    }
                })
                .collect();
            let threshold = |t: &rvoy_model::cluster::Thresholds, high: bool| {
                rvoy_api::envoy::config::cluster::v3::circuit_breakers::Thresholds {
                    priority: if high {
                        core_pb::RoutingPriority::High as i32
                    } else {
                        0
                    },
                    max_connections: Some(t.max_connections),
                    max_pending_requests: Some(t.max_pending_requests),
                    max_requests: Some(t.max_requests),
                    max_retries: Some(t.max_retries),
                    ..Default::default()
                }
            };
            statuses.push(admin_pb::ClusterStatus {
                name: c.config.name.to_string(),
                host_statuses,
                observability_name: c.config.stat_name.clone(),
                circuit_breakers: Some(rvoy_api::envoy::config::cluster::v3::CircuitBreakers {
                    thresholds: vec![
                        threshold(&c.config.thresholds, false),
                        threshold(&c.config.high_thresholds, true),
                    ],
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        return AdminResponse::json(to_json(
            &admin_pb::Clusters {
                cluster_statuses: statuses,
            },
            false,
        ));
    }
    let mut out = String::new();
    for c in shown {
        let name = &c.config.name;
        let _ = writeln!(out, "{name}::observability_name::{}", c.config.stat_name);
        for (prio, t) in [
            ("default_priority", &c.config.thresholds),
            ("high_priority", &c.config.high_thresholds),
        ] {
            let _ = writeln!(
                out,
                "{name}::{prio}::max_connections::{}",
                t.max_connections
            );
            let _ = writeln!(
                out,
                "{name}::{prio}::max_pending_requests::{}",
                t.max_pending_requests
            );
            let _ = writeln!(out, "{name}::{prio}::max_requests::{}", t.max_requests);
            let _ = writeln!(out, "{name}::{prio}::max_retries::{}", t.max_retries);
        }
        let _ = writeln!(out, "{name}::added_via_api::false");
        for h in &c.hosts().hosts {
            let a = h.address.to_envoy_string();
            for (stat, value, _) in host_stats(h) {
                let _ = writeln!(out, "{name}::{a}::{stat}::{value}");
            }
            let _ = writeln!(out, "{name}::{a}::hostname::{}", h.hostname);
            let _ = writeln!(out, "{name}::{a}::health_flags::{}", health_flags(h));
            let _ = writeln!(out, "{name}::{a}::weight::{}", h.weight);
            let _ = writeln!(out, "{name}::{a}::region::");
            let _ = writeln!(out, "{name}::{a}::zone::");
            let _ = writeln!(out, "{name}::{a}::sub_zone::");
            let _ = writeln!(out, "{name}::{a}::canary::false");
            let _ = writeln!(out, "{name}::{a}::priority::{}", h.priority);
            let _ = writeln!(out, "{name}::{a}::success_rate::-1");
            let _ = writeln!(out, "{name}::{a}::local_origin_success_rate::-1");
        }
    }
    AdminResponse::text(StatusCode::OK, out)
}

/// `/listeners` (text `name::address` lines or `?format=json`).
pub fn listeners(server: &Server, params: &HashMap<String, String>) -> AdminResponse {
    let address = |bound: &Option<std::net::SocketAddr>, configured: &str| -> core_pb::Address {
        match bound {
            Some(a) => socket_address_pb(*a),
            None => core_pb::Address {
                address: Some(core_pb::address::Address::Pipe(core_pb::Pipe {
                    path: configured.to_owned(),
                    mode: 0,
                })),
            },
        }
    };
    if params.get("format").is_some_and(|f| f == "json") {
        let statuses = server
            .bound
            .iter()
            .map(|(name, bound, configured)| admin_pb::ListenerStatus {
                name: name.clone(),
                local_address: Some(address(bound, configured)),
                additional_local_addresses: vec![],
            })
            .collect();
        return AdminResponse::json(to_json(
            &admin_pb::Listeners {
                listener_statuses: statuses,
            },
            false,
        ));
    }
    let mut out = String::new();
    for (name, bound, configured) in &server.bound {
        let addr = bound
            .map(|a| a.to_string())
            .unwrap_or_else(|| configured.clone());
        let _ = writeln!(out, "{name}::{addr}");
    }
    AdminResponse::text(StatusCode::OK, out)
}

/// `/init_dump`: every init target of a static config is ready once the
/// server is live, so there is nothing unready to show.
pub fn init_dump(_params: &HashMap<String, String>) -> AdminResponse {
    AdminResponse::json("{}\n")
}

/// `/memory`.
pub fn memory() -> String {
    let m = crate::process_stats::MemoryFigures::read();
    let mem = admin_pb::Memory {
        allocated: m.allocated,
        heap_size: m.heap_size,
        pageheap_unmapped: 0,
        pageheap_free: 0,
        total_thread_cache: 0,
        total_physical_bytes: m.physical,
    };
    to_json(&mem, true)
}

/// `/memory/tcmalloc`: rvoy has no tcmalloc; the figures it has, in the
/// `MALLOC:` line style of tcmalloc's report.
pub fn memory_text() -> String {
    let m = crate::process_stats::MemoryFigures::read();
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    format!(
        "rvoy uses the system allocator; tcmalloc statistics are not available.\n\
         ------------------------------------------------\n\
         MALLOC: {:>14} ({:>7.1} MiB) Bytes in use by application\n\
         MALLOC: {:>14} ({:>7.1} MiB) Data segment size\n\
         MALLOC: {:>14} ({:>7.1} MiB) Actual memory used (physical + swap)\n",
        m.allocated,
        mib(m.allocated),
        m.heap_size,
        mib(m.heap_size),
        m.physical,
        mib(m.physical),
    )
}

/// `/cpuprofiler` and `/allocprofiler`: Envoy's parameter check; rvoy has no
/// profiler to start.
pub fn profiler(params: &HashMap<String, String>, _path: &str) -> AdminResponse {
    match (params.len(), params.get("enable").map(String::as_str)) {
        (1, Some("n")) => AdminResponse::text(StatusCode::OK, "OK\n"),
        (1, Some("y")) => AdminResponse::text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "failure to start the profiler",
        ),
        _ => AdminResponse::text(StatusCode::BAD_REQUEST, "?enable=<y|n>\n"),
    }
}

/// `/runtime`: every layer's name and, per key, each layer's value and the
/// final one.
pub fn runtime(server: &Server) -> String {
    let layers = server.runtime_layers();
    let mut keys: BTreeMap<&str, ()> = BTreeMap::new();
    for (_, values) in &layers {
        for k in values.keys() {
            keys.insert(k, ());
        }
    }
    // Envoy prints a protobuf Struct: "layers", then "entries" keyed by name,
    // each with "final_value" and "layer_values".
    let mut entries: Vec<(String, serde_json::Value)> = Vec::new();
    for k in keys.keys() {
        let values: Vec<String> = layers
            .iter()
            .map(|(_, v)| v.get(*k).cloned().unwrap_or_default())
            .collect();
        let final_value = values
            .iter()
            .rev()
            .find(|v| !v.is_empty())
            .cloned()
            .unwrap_or_default();
        entries.push((
            (*k).to_owned(),
            serde_json::json!({"final_value": final_value, "layer_values": values}),
        ));
    }
    let names: Vec<serde_json::Value> = layers
        .iter()
        .map(|(n, _)| serde_json::Value::String(n.clone()))
        .collect();
    let indent = |v: &serde_json::Value, depth: usize| -> String {
        let text = pretty_json(v);
        let pad = " ".repeat(depth);
        text.trim_end()
            .lines()
            .enumerate()
            .map(|(i, l)| {
                if i == 0 {
                    l.to_owned()
                } else {
                    format!("{pad}{l}")
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut out = String::from("{\n");
    out.push_str(&format!(
        " \"layers\": {},\n",
        indent(&serde_json::Value::Array(names), 1)
    ));
    if entries.is_empty() {
        out.push_str(" \"entries\": {}\n}\n");
        return out;
    }
    out.push_str(" \"entries\": {\n");
    let n = entries.len();
    for (i, (k, v)) in entries.iter().enumerate() {
        out.push_str(&format!(
            "  {}: {}{}\n",
            serde_json::Value::String(k.clone()),
            indent(v, 2),
            if i + 1 < n { "," } else { "" }
        ));
    }
    out.push_str(" }\n}\n");
    out
}

/// `/runtime_modify`: sets (or, with an empty value, removes) admin-layer
/// overrides, from the query or a form body.
pub fn runtime_modify(
    server: &Server,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
) -> AdminResponse {
    let mut pairs: Vec<(String, String)> =
        params.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    if pairs.is_empty()
        && headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes() == b"application/x-www-form-urlencoded")
    {
        pairs = crate::admin::query_pairs(&String::from_utf8_lossy(body).replace('+', " "));
    }
    if pairs.is_empty() {
        return AdminResponse::text(
            StatusCode::BAD_REQUEST,
            "usage: /runtime_modify?key1=value1&key2=value2&keyN=valueN\n       or send the parameters as form values\nuse an empty value to remove a previously added override",
        );
    }
    match server.runtime_modify(pairs) {
        Ok(()) => AdminResponse::text(StatusCode::OK, "OK\n"),
        Err(e) => AdminResponse::text(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

/// `/drain_listeners`: starts draining (HTTP/1 responses get
/// `connection: close`); without `skip_exit` the listeners stop accepting,
/// at once or, with `graceful`, after `--drain-time-s`. The process keeps
/// running and `/ready` stays LIVE, as in Envoy.
pub fn drain_listeners(server: &Server, params: &HashMap<String, String>) -> AdminResponse {
    let graceful = params.contains_key("graceful");
    let skip_exit = params.contains_key("skip_exit");
    let inbound_only = params.contains_key("inboundonly");
    let selected = server.drain_listeners(inbound_only);
    if !skip_exit {
        let delay = if graceful {
            server.options.drain_time
        } else {
            std::time::Duration::ZERO
        };
        let listeners: Vec<_> = selected;
        let stats = server.stats.listener_manager.listener_stopped;
        tokio::task::spawn_local(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            for l in listeners {
                if !l.stop.send_replace(true) {
                    stats.inc();
                }
            }
        });
    }
    AdminResponse::text(StatusCode::OK, "OK\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_json_uses_one_space() {
        let v = serde_json::json!({"a": [1]});
        assert_eq!(pretty_json(&v), "{\n \"a\": [\n  1\n ]\n}\n");
    }

    #[test]
    fn profiler_params() {
        let mut p = HashMap::new();
        assert_eq!(profiler(&p, "/cpuprofiler").status, StatusCode::BAD_REQUEST);
        p.insert("enable".to_owned(), "n".to_owned());
        assert_eq!(profiler(&p, "/cpuprofiler").status, StatusCode::OK);
    }

    #[test]
    fn node_extensions_are_unique() {
        let ext = node_extensions();
        assert!(ext.iter().any(|e| e.name == "envoy.filters.http.router"));
        let mut keys: Vec<_> = ext.iter().map(|e| (&e.category, &e.name)).collect();
        let n = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), n);
    }
}
