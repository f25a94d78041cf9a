//! Listeners: where to bind, socket options, listener filters, filter chains
//! with their match criteria and transport sockets, and the network filter
//! each chain runs.

use std::sync::Arc;
use std::time::Duration;

use rvoy_api::envoy::config::core::v3 as core;
use rvoy_api::envoy::config::listener::v3 as pb;
use rvoy_api::envoy::extensions::filters::network::http_connection_manager::v3 as hcm_pb;
use rvoy_config_load::{ConfigError, FieldPath};

use crate::access_log::{AccessLog, access_logs};
use crate::address::{self, Address, SocketOption, TcpKeepalive};
use crate::duration;
use crate::extension::{self, Category};
use crate::filter_chain_index::FilterChainIndex;
use crate::hcm::{self, CidrRange, HttpConnectionManager};
use crate::support::{Diagnostics, MessageSupport, ignored, yes};
use crate::tcp_proxy::{self, TcpProxy};
use crate::tls::{self, DownstreamTls, Secrets};
use crate::tls_inspector::{self, TlsInspector};

pub(crate) static SUPPORT: &[MessageSupport] = &[
    MessageSupport {
        message: "envoy.config.listener.v3.Listener",
        fields: &[
            yes("name"),
            yes("address"),
            yes("stat_prefix"),
            yes("listener_filters"),
            yes("filter_chains"),
            yes("default_filter_chain"),
            yes("per_connection_buffer_limit_bytes"),
            ignored(
                "metadata",
                "read only by filters and formatters rvoy does not implement",
            ),
            yes("drain_type"),
            yes("listener_filters_timeout"),
            yes("continue_on_listener_filters_timeout"),
            yes("transparent"),
            yes("freebind"),
            yes("socket_options"),
            yes("tcp_fast_open_queue_length"),
            ignored("traffic_direction", "only labels stats and traces"),
            yes("reuse_port"),
            yes("enable_reuse_port"),
            yes("access_log"),
            yes("tcp_backlog_size"),
            ignored(
                "max_connections_to_accept_per_socket_event",
                "accept batching is tuned by rvoy",
            ),
            yes("bind_to_port"),
            ignored(
                "ignore_global_conn_limit",
                "rvoy has no global connection limit yet",
            ),
            ignored(
                "bypass_overload_manager",
                "rvoy has no overload manager yet",
            ),
            yes("tcp_keepalive"),
        ],
    },
    MessageSupport {
        message: "envoy.config.listener.v3.FilterChain",
        fields: &[
            yes("filter_chain_match"),
            yes("filters"),
            ignored(
                "metadata",
                "read only by filters and formatters rvoy does not implement",
            ),
            yes("transport_socket"),
            yes("transport_socket_connect_timeout"),
            yes("name"),
        ],
    },
    MessageSupport {
        message: "envoy.config.listener.v3.ListenerFilter",
        fields: &[yes("name"), yes("typed_config")],
    },
    MessageSupport {
        message: "envoy.config.listener.v3.FilterChainMatch",
        fields: &[
            yes("destination_port"),
            yes("server_names"),
            yes("application_protocols"),
            yes("prefix_ranges"),
            yes("direct_source_prefix_ranges"),
            yes("source_type"),
            yes("source_prefix_ranges"),
            yes("source_ports"),
            yes("transport_protocol"),
        ],
    },
    MessageSupport {
        message: "envoy.config.listener.v3.Filter",
        fields: &[yes("name"), yes("typed_config")],
    },
    MessageSupport {
        message: "envoy.config.core.v3.TransportSocket",
        fields: &[yes("name"), yes("typed_config")],
    },
    MessageSupport {
        message: "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer",
        fields: &[],
    },
];

/// `Listener.drain_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrainType {
    Default,
    ModifyOnly,
}

/// `FilterChainMatch.source_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceType {
    Any,
    SameIpOrLoopback,
    External,
}

/// The criteria of a filter chain (Envoy's `FilterChainMatch`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FilterChainMatch {
    pub destination_port: Option<u16>,
    pub prefix_ranges: Vec<CidrRange>,
    /// Lower case; `*.example.com` for wildcards.
    pub server_names: Vec<String>,
    /// `""` (any), `raw_buffer`, `tls`, or what another inspector names.
    pub transport_protocol: String,
    pub application_protocols: Vec<String>,
    pub direct_source_prefix_ranges: Vec<CidrRange>,
    pub source_type: Option<SourceType>,
    pub source_prefix_ranges: Vec<CidrRange>,
    pub source_ports: Vec<u16>,
}

/// What a filter chain does with a connection.
#[derive(Debug)]
pub enum NetworkFilter {
    HttpConnectionManager(Arc<HttpConnectionManager>),
    TcpProxy(Arc<TcpProxy>),
}

/// A filter chain.
#[derive(Debug)]
pub struct FilterChain {
    pub name: String,
    pub matcher: FilterChainMatch,
    /// `envoy.transport_sockets.tls`; `None`: raw buffer.
    pub tls: Option<Arc<DownstreamTls>>,
    /// How long the TLS handshake may take (`None`: no limit).
    pub transport_socket_connect_timeout: Option<Duration>,
    pub filter: NetworkFilter,
}

/// A listener filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenerFilter {
    TlsInspector(TlsInspector),
}

/// A compiled listener.
#[derive(Debug)]
pub struct Listener {
    pub name: String,
    pub address: Address,
    /// The stats scope: `listener.<stat_prefix or address>.`.
    pub stat_prefix: String,
    pub listener_filters: Vec<ListenerFilter>,
    pub filter_chains: Vec<FilterChain>,
    /// Chooses among `filter_chains` (indices into it).
    pub chain_index: FilterChainIndex,
    pub default_filter_chain: Option<FilterChain>,
    pub per_connection_buffer_limit_bytes: u32,
    pub drain_type: DrainType,
    pub listener_filters_timeout: Option<Duration>,
    pub continue_on_listener_filters_timeout: bool,
    pub transparent: bool,
    pub freebind: bool,
    pub socket_options: Vec<SocketOption>,
    pub tcp_fast_open_queue_length: Option<u32>,
    pub reuse_port: bool,
    pub access_logs: Vec<Arc<AccessLog>>,
    /// `None`: the system's default (`net.core.somaxconn`).
    pub tcp_backlog_size: Option<u32>,
    pub bind_to_port: bool,
    pub tcp_keepalive: Option<TcpKeepalive>,
}

/// Envoy's name for a listener's stats scope: the stat prefix, else the address
/// with `:` replaced by `_` (`listener.127.0.0.1_10000.`).
pub fn stat_scope_name(stat_prefix: &str, address: &Address) -> String {
    if !stat_prefix.is_empty() {
        return stat_prefix.to_owned();
    }
    match address {
        Address::Ip { addr, .. } => format!("{}_{}", addr.ip(), addr.port()),
        Address::Pipe { path, .. } => path.to_string_lossy().replace(':', "_"),
    }
}

/// Builds a listener. `path` is where it sits in the bootstrap.
pub fn build(
    l: &pb::Listener,
    path: &FieldPath,
    secrets: &Secrets,
    diags: &mut Diagnostics,
) -> Result<Listener, ConfigError> {
    let addr = l.address.as_ref().ok_or_else(|| {
        ConfigError::semantic(path.field("address"), "a listener needs an address")
    })?;
    let address = address::resolved(addr, &path.field("address"))?;
    let mut listener_filters = Vec::with_capacity(l.listener_filters.len());
    for (i, lf) in l.listener_filters.iter().enumerate() {
        let p = path.field("listener_filters").index(i);
        if lf.filter_disabled.is_some() {
            return Err(ConfigError::not_supported(
                p.field("filter_disabled"),
                "filter_disabled",
            ));
        }
        let typed = match &lf.config_type {
            Some(pb::listener_filter::ConfigType::TypedConfig(a)) => Some(a),
            Some(pb::listener_filter::ConfigType::ConfigDiscovery(_)) => {
                return Err(ConfigError::not_supported(
                    p.field("config_discovery"),
                    "config_discovery (ECDS)",
                ));
            }
            None => None,
        };
        let resolved = extension::resolve(Category::ListenerFilter, &lf.name, typed, &p, diags)?;
        match resolved.extension.name {
            "envoy.filters.listener.tls_inspector" => {
                let proto = resolved.config_as(&p)?;
                listener_filters.push(ListenerFilter::TlsInspector(tls_inspector::build(
                    &proto,
                    &p.field("typed_config"),
                )?));
            }
            other => return Err(ConfigError::not_supported(p, other)),
        }
    }
    if l.connection_balance_config.is_some() {
        return Err(ConfigError::not_supported(
            path.field("connection_balance_config"),
            "connection_balance_config",
        ));
    }
    let mut filter_chains = Vec::with_capacity(l.filter_chains.len());
    for (i, fc) in l.filter_chains.iter().enumerate() {
        filter_chains.push(filter_chain(
            fc,
            &path.field("filter_chains").index(i),
            secrets,
            diags,
        )?);
    }
    for i in 0..filter_chains.len() {
        for j in 0..i {
            if filter_chains[i].matcher == filter_chains[j].matcher {
                return Err(ConfigError::semantic(
                    path.field("filter_chains").index(i),
                    format!(
                        "error adding listener '{}': filter chain '{}' has the same matching rules defined as '{}'",
                        address.envoy_string(),
                        filter_chains[i].name,
                        filter_chains[j].name
                    ),
                ));
            }
        }
    }
    if matches!(address, Address::Pipe { .. })
        && (filter_chains.iter().any(|c| c.tls.is_some()) || !listener_filters.is_empty())
    {
        return Err(ConfigError::not_supported(
            path.field("filter_chains"),
            "TLS and listener filters on pipe (Unix socket) listeners",
        ));
    }
    let chain_index =
        FilterChainIndex::build(filter_chains.iter().map(|c| &c.matcher)).map_err(|_| {
            ConfigError::semantic(
                path.field("filter_chains"),
                format!(
                    "error adding listener '{}': multiple filter chains with overlapping matching rules are defined",
                    address.envoy_string()
                ),
            )
        })?;
    let default_filter_chain = l
        .default_filter_chain
        .as_ref()
        .map(|fc| filter_chain(fc, &path.field("default_filter_chain"), secrets, diags))
        .transpose()?;
    if filter_chains.is_empty() && default_filter_chain.is_none() {
        return Err(ConfigError::semantic(
            path.field("filter_chains"),
            format!(
                "error adding listener '{}': no filter chains specified",
                address.envoy_string()
            ),
        ));
    }
    Ok(Listener {
        name: l.name.clone(),
        stat_prefix: stat_scope_name(&l.stat_prefix, &address),
        address,
        listener_filters,
        filter_chains,
        chain_index,
        default_filter_chain,
        per_connection_buffer_limit_bytes: l
            .per_connection_buffer_limit_bytes
            .unwrap_or(1024 * 1024),
        drain_type: if l.drain_type == pb::listener::DrainType::ModifyOnly as i32 {
            DrainType::ModifyOnly
        } else {
            DrainType::Default
        },
        listener_filters_timeout: duration::timeout_or(
            &l.listener_filters_timeout,
            Duration::from_secs(15),
        ),
        continue_on_listener_filters_timeout: l.continue_on_listener_filters_timeout,
        transparent: l.transparent.unwrap_or(false),
        freebind: l.freebind.unwrap_or(false),
        socket_options: address::socket_options(&l.socket_options, &path.field("socket_options"))?,
        tcp_fast_open_queue_length: l.tcp_fast_open_queue_length,
        reuse_port: l.enable_reuse_port.unwrap_or(true) || l.reuse_port,
        access_logs: access_logs(&l.access_log, &path.field("access_log"), diags)?,
        tcp_backlog_size: l.tcp_backlog_size,
        bind_to_port: l.bind_to_port.unwrap_or(true),
        tcp_keepalive: l.tcp_keepalive.as_ref().map(address::tcp_keepalive),
    })
}

fn filter_chain(
    fc: &pb::FilterChain,
    path: &FieldPath,
    secrets: &Secrets,
    diags: &mut Diagnostics,
) -> Result<FilterChain, ConfigError> {
    let matcher = match &fc.filter_chain_match {
        None => FilterChainMatch::default(),
        Some(m) => filter_chain_match(m, &path.field("filter_chain_match"))?,
    };
    let mut tls = None;
    if let Some(ts) = &fc.transport_socket {
        let tp = path.field("transport_socket");
        let typed = ts
            .config_type
            .as_ref()
            .map(|core::transport_socket::ConfigType::TypedConfig(a)| a);
        let resolved = extension::resolve(
            Category::DownstreamTransportSocket,
            &ts.name,
            typed,
            &tp,
            diags,
        )?;
        if resolved.extension.name == "envoy.transport_sockets.tls" {
            let proto = resolved.config_as(&tp)?;
            tls = Some(Arc::new(tls::downstream(
                &proto,
                &tp.field("typed_config"),
                secrets,
                &matcher.server_names,
            )?));
        }
    }
    if fc.filters.is_empty() {
        return Err(ConfigError::semantic(
            path.field("filters"),
            "a filter chain needs a network filter",
        ));
    }
    let mut terminal = None;
    for (i, f) in fc.filters.iter().enumerate() {
        let p = path.field("filters").index(i);
        if let Some(previous) = &terminal {
            let kind = match previous {
                NetworkFilter::HttpConnectionManager(_) => {
                    "envoy.filters.network.http_connection_manager"
                }
                NetworkFilter::TcpProxy(_) => "envoy.filters.network.tcp_proxy",
            };
            return Err(ConfigError::semantic(
                p,
                format!(
                    "Error: terminal filter named {} of type {kind} must be the last filter in a network filter chain.",
                    fc.filters[i - 1].name
                ),
            ));
        }
        let typed = match &f.config_type {
            Some(pb::filter::ConfigType::TypedConfig(a)) => Some(a),
            Some(pb::filter::ConfigType::ConfigDiscovery(_)) => {
                return Err(ConfigError::not_supported(
                    p.field("config_discovery"),
                    "config_discovery (ECDS)",
                ));
            }
            None => None,
        };
        let resolved = extension::resolve(Category::NetworkFilter, &f.name, typed, &p, diags)?;
        match resolved.extension.name {
            "envoy.filters.network.http_connection_manager" => {
                let proto: hcm_pb::HttpConnectionManager = resolved.config_as(&p)?;
                terminal = Some(NetworkFilter::HttpConnectionManager(Arc::new(hcm::build(
                    &proto,
                    &p.field("typed_config"),
                    diags,
                )?)));
            }
            "envoy.filters.network.tcp_proxy" => {
                let proto = resolved.config_as(&p)?;
                terminal = Some(NetworkFilter::TcpProxy(Arc::new(tcp_proxy::build(
                    &proto,
                    &p.field("typed_config"),
                    diags,
                )?)));
            }
            other => return Err(ConfigError::not_supported(p, other)),
        }
    }
    let filter = terminal.ok_or_else(|| {
        ConfigError::semantic(
            path.field("filters"),
            "a filter chain needs a terminal network filter",
        )
    })?;
    Ok(FilterChain {
        name: fc.name.clone(),
        matcher,
        tls,
        transport_socket_connect_timeout: duration::opt_nonzero(
            &fc.transport_socket_connect_timeout,
        ),
        filter,
    })
}

fn filter_chain_match(
    m: &pb::FilterChainMatch,
    path: &FieldPath,
) -> Result<FilterChainMatch, ConfigError> {
    let mut server_names = Vec::with_capacity(m.server_names.len());
    for name in &m.server_names {
        if name.contains('*') && !name.starts_with("*.") {
            return Err(ConfigError::semantic(
                path.field("server_names"),
                "partial wildcards are not supported in \"server_names\"",
            ));
        }
        server_names.push(name.to_ascii_lowercase());
    }
    if !m.address_suffix.is_empty() || m.suffix_len.is_some() {
        return Err(ConfigError::not_supported(
            path.field("address_suffix"),
            "address_suffix",
        ));
    }
    let cidrs = |list: &[core::CidrRange], name: &str| -> Result<Vec<CidrRange>, ConfigError> {
        list.iter()
            .enumerate()
            .map(|(i, c)| CidrRange::from_proto(c, &path.field(name).index(i)))
            .collect()
    };
    use pb::filter_chain_match::ConnectionSourceType as S;
    Ok(FilterChainMatch {
        destination_port: m.destination_port.map(|p| p as u16),
        prefix_ranges: cidrs(&m.prefix_ranges, "prefix_ranges")?,
        server_names,
        transport_protocol: m.transport_protocol.clone(),
        application_protocols: m.application_protocols.clone(),
        direct_source_prefix_ranges: cidrs(
            &m.direct_source_prefix_ranges,
            "direct_source_prefix_ranges",
        )?,
        source_type: match S::try_from(m.source_type) {
            Ok(S::SameIpOrLoopback) => Some(SourceType::SameIpOrLoopback),
            Ok(S::External) => Some(SourceType::External),
            _ => None,
        },
        source_prefix_ranges: cidrs(&m.source_prefix_ranges, "source_prefix_ranges")?,
        source_ports: m.source_ports.iter().map(|p| *p as u16).collect(),
    })
}
