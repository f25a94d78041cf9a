//! The admin endpoints' bodies, each shaped like Envoy's.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use http::{Method, StatusCode};
use prost::Message as _;
use prost_reflect::{DynamicMessage, SerializeOptions};
use rvoy_api::envoy::admin::v3 as admin_pb;
use rvoy_api::envoy::config::core::v3 as core_pb;

use crate::admin::AdminResponse;
use crate::server::{Server, ServerState};

/// Renders a prost message as Envoy's admin JSON (proto field names, defaults shown).
pub fn to_json<M: prost::Message + prost::Name>(msg: &M, print_defaults: bool) -> String {
    let pool = rvoy_api::descriptor_pool();
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

pub fn home() -> String {
    let mut out = String::from(
        "<!DOCTYPE html>\n<html lang='en'>\n<head><title>Envoy Admin</title></head>\n<body>\n<table class='home-table'>\n<thead><th class='home-data'>Command</th><th class='home-data'>Description</th></thead>\n<tbody>\n",
    );
    for line in include_str!("admin_help.txt")
        .lines()
        .filter_map(|l| l.strip_prefix("  /"))
    {
        let (name, desc) = line.split_once(": ").unwrap_or((line, ""));
        let name = name.trim_end_matches(" (POST)");
        let _ = writeln!(
            out,
            "<tr class='home-row'><td class='home-data'><a href='{name}'>{name}</a></td><td class='home-data'>{desc}</td></tr>"
        );
    }
    out.push_str("</tbody>\n</table>\n</body>\n</html>\n");
    out
}

fn state_pb(s: ServerState) -> admin_pb::server_info::State {
    match s {
        ServerState::Live => admin_pb::server_info::State::Live,
        ServerState::Draining => admin_pb::server_info::State::Draining,
        ServerState::PreInitializing => admin_pb::server_info::State::PreInitializing,
        ServerState::Initializing => admin_pb::server_info::State::Initializing,
    }
}

/// The node as `/server_info` shows it.
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
            core_pb::BuildVersion {
                version: Some(rvoy_api::envoy::r#type::v3::SemanticVersion {
                    major_number: 1,
                    minor_number: 40,
                    patch: 0,
                }),
                metadata: None,
            },
        )),
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

pub fn stats(server: &Server, query: &str) -> AdminResponse {
    let params = match rvoy_stats::render::StatsParams::parse(query) {
        Ok(p) => p,
        Err(e) => return AdminResponse::text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    if let Err(e) = params.validate_for_stats() {
        return AdminResponse::text(StatusCode::BAD_REQUEST, e.to_string());
    }
    server.store.merge_histograms();
    let snap = server.store.snapshot();
    let mut out = String::new();
    let ct = rvoy_stats::render::render_stats(&snap, &params, &mut out);
    AdminResponse {
        status: StatusCode::OK,
        content_type: if ct.starts_with("application/json") {
            "application/json"
        } else {
            "text/plain; charset=UTF-8"
        },
        body: out,
    }
}

pub fn prometheus(server: &Server, query: &str) -> AdminResponse {
    let params = match rvoy_stats::render::StatsParams::parse(query) {
        Ok(p) => p,
        Err(e) => return AdminResponse::text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    if let Err(e) = params.validate_for_prometheus() {
        return AdminResponse::text(StatusCode::BAD_REQUEST, e.to_owned());
    }
    server.store.merge_histograms();
    let snap = server.store.snapshot();
    let mut out = String::new();
    rvoy_stats::render::render_prometheus(&snap, &params, &mut out);
    AdminResponse::text(StatusCode::OK, out)
}

pub fn logging(method: &Method, query: &str) -> AdminResponse {
    let _ = method;
    let params = crate::admin::query_params(query);
    if params.is_empty() {
        return AdminResponse::text(StatusCode::OK, rvoy_log::render_active_loggers());
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

pub fn clusters(server: &Server, params: &HashMap<String, String>) -> AdminResponse {
    let snap = server.snapshot.load();
    let json = params.get("format").is_some_and(|f| f == "json");
    if json {
        let mut statuses = Vec::new();
        for c in &snap.clusters.ordered {
            let set = c.hosts();
            let mut host_statuses = Vec::new();
            for h in &set.hosts {
                let address = match &h.address {
                    rvoy_upstream::host::HostAddress::Tcp(a) => core_pb::Address {
                        address: Some(core_pb::address::Address::SocketAddress(
                            core_pb::SocketAddress {
                                address: a.ip().to_string(),
                                port_specifier: Some(
                                    core_pb::socket_address::PortSpecifier::PortValue(u32::from(
                                        a.port(),
                                    )),
                                ),
                                ..Default::default()
                            },
                        )),
                    },
                    rvoy_upstream::host::HostAddress::Unix(p) => core_pb::Address {
                        address: Some(core_pb::address::Address::Pipe(core_pb::Pipe {
                            path: p.to_string_lossy().into_owned(),
                            mode: 0,
                        })),
                    },
                };
                let stat = |name: &str, v: u64| admin_pb::SimpleMetric {
                    r#type: admin_pb::simple_metric::Type::Counter as i32,
                    value: v,
                    name: name.to_owned(),
                };
                let s = &h.stats;
                host_statuses.push(admin_pb::HostStatus {
                    address: Some(address),
                    stats: vec![
                        stat("cx_connect_fail", s.cx_connect_fail.load(Ordering::Relaxed)),
                        stat("cx_total", s.cx_total.load(Ordering::Relaxed)),
                        stat("rq_error", s.rq_error.load(Ordering::Relaxed)),
                        stat("rq_success", s.rq_success.load(Ordering::Relaxed)),
                        stat("rq_timeout", s.rq_timeout.load(Ordering::Relaxed)),
                        stat("rq_total", s.rq_total.load(Ordering::Relaxed)),
                        admin_pb::SimpleMetric {
                            r#type: admin_pb::simple_metric::Type::Gauge as i32,
                            value: s.cx_active.load(Ordering::Relaxed),
                            name: "cx_active".to_owned(),
                        },
                        admin_pb::SimpleMetric {
                            r#type: admin_pb::simple_metric::Type::Gauge as i32,
                            value: s.rq_active.load(Ordering::Relaxed),
                            name: "rq_active".to_owned(),
                        },
                    ],
                    health_status: Some(admin_pb::HostHealthStatus {
                        eds_health_status: core_pb::HealthStatus::Healthy as i32,
                        ..Default::default()
                    }),
                    weight: h.weight,
                    hostname: h.hostname.to_string(),
                    priority: h.priority,
                    ..Default::default()
                });
            }
            statuses.push(admin_pb::ClusterStatus {
                name: c.config.name.to_string(),
                host_statuses,
                observability_name: c.config.stat_name.clone(),
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
    for c in &snap.clusters.ordered {
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
            let s = &h.stats;
            let _ = writeln!(
                out,
                "{name}::{a}::cx_active::{}",
                s.cx_active.load(Ordering::Relaxed)
            );
            let _ = writeln!(
                out,
                "{name}::{a}::cx_connect_fail::{}",
                s.cx_connect_fail.load(Ordering::Relaxed)
            );
            let _ = writeln!(
                out,
                "{name}::{a}::cx_total::{}",
                s.cx_total.load(Ordering::Relaxed)
            );
            let _ = writeln!(
                out,
                "{name}::{a}::rq_active::{}",
                s.rq_active.load(Ordering::Relaxed)
            );
            let _ = writeln!(
                out,
                "{name}::{a}::rq_error::{}",
                s.rq_error.load(Ordering::Relaxed)
            );
            let _ = writeln!(
                out,
                "{name}::{a}::rq_success::{}",
                s.rq_success.load(Ordering::Relaxed)
            );
            let _ = writeln!(
                out,
                "{name}::{a}::rq_timeout::{}",
                s.rq_timeout.load(Ordering::Relaxed)
            );
            let _ = writeln!(
                out,
                "{name}::{a}::rq_total::{}",
                s.rq_total.load(Ordering::Relaxed)
            );
            let _ = writeln!(out, "{name}::{a}::hostname::{}", h.hostname);
            let _ = writeln!(
                out,
                "{name}::{a}::health_flags::{}",
                if h.is_healthy() {
                    "healthy"
                } else {
                    "/eds_health_status/unhealthy"
                }
            );
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

pub fn listeners(server: &Server, params: &HashMap<String, String>) -> AdminResponse {
    if params.get("format").is_some_and(|f| f == "json") {
        let statuses = server
            .bound
            .iter()
            .map(|(name, bound, configured)| {
                let addr = bound
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| configured.clone());
                let (ip, port) = addr.rsplit_once(':').unwrap_or((addr.as_str(), "0"));
                admin_pb::ListenerStatus {
                    name: name.clone(),
                    local_address: Some(core_pb::Address {
                        address: Some(core_pb::address::Address::SocketAddress(
                            core_pb::SocketAddress {
                                address: ip.trim_matches(['[', ']']).to_owned(),
                                port_specifier: Some(
                                    core_pb::socket_address::PortSpecifier::PortValue(
                                        port.parse().unwrap_or(0),
                                    ),
                                ),
                                ..Default::default()
                            },
                        )),
                    }),
                    additional_local_addresses: vec![],
                }
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

pub fn config_dump(server: &Server, _params: &HashMap<String, String>) -> AdminResponse {
    let pool = rvoy_api::descriptor_pool();
    let Some(desc) = pool.get_message_by_name("envoy.admin.v3.BootstrapConfigDump") else {
        return AdminResponse::json("{}\n");
    };
    let mut dump = DynamicMessage::new(desc);
    dump.set_field_by_name(
        "bootstrap",
        prost_reflect::Value::Message((*server.bootstrap).clone()),
    );
    let any = prost_types::Any {
        type_url: "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump".to_owned(),
        value: dump.encode_to_vec(),
    };
    let config_dump = admin_pb::ConfigDump { configs: vec![any] };
    AdminResponse::json(to_json(&config_dump, false))
}

pub fn memory() -> String {
    let rss = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|pages| pages * 4096)
        .unwrap_or(0);
    let m = admin_pb::Memory {
        allocated: rss,
        heap_size: rss,
        pageheap_unmapped: 0,
        pageheap_free: 0,
        total_thread_cache: 0,
        total_physical_bytes: rss,
    };
    to_json(&m, true)
}

pub fn runtime(server: &Server) -> String {
    let snap = server.snapshot.load();
    let rt = &snap.config.runtime;
    let mut entries = serde_json::Map::new();
    for (k, v) in &rt.static_values {
        let value = rvoy_config_load::any::value_to_json(v);
        let text = match &value {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        entries.insert(
            k.clone(),
            serde_json::json!({"final_value": text, "layer_values": [text]}),
        );
    }
    let layers: Vec<serde_json::Value> = rt
        .layer_names
        .iter()
        .map(|n| serde_json::Value::String(n.clone()))
        .collect();
    let body = serde_json::json!({"layers": layers, "entries": entries});
    let mut s = serde_json::to_string_pretty(&body).unwrap_or_default();
    s.push('\n');
    s
}

pub fn drain_listeners(server: &Server, params: &HashMap<String, String>) -> AdminResponse {
    server.draining.store(true, Ordering::Relaxed);
    let skip_exit = params.contains_key("skip_exit");
    let graceful = params.contains_key("graceful");
    if !skip_exit {
        let stop = server.stop_accepting.clone();
        let delay = if graceful {
            server.options.drain_time
        } else {
            std::time::Duration::ZERO
        };
        tokio::task::spawn_local(async move {
            tokio::time::sleep(delay).await;
            let _ = stop.send(true);
        });
    }
    AdminResponse::text(StatusCode::OK, "OK\n")
}
