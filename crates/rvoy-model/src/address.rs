//! Addresses: Envoy's `core.v3.Address` as something a socket can bind or connect to.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use rvoy_api::envoy::config::core::v3 as core;
use rvoy_config_load::{ConfigError, FieldPath};

use crate::support::{MessageSupport, yes};

pub(crate) static SUPPORT: &[MessageSupport] = &[
    MessageSupport {
        message: "envoy.config.core.v3.Address",
        fields: &[yes("socket_address"), yes("pipe")],
    },
    MessageSupport {
        message: "envoy.config.core.v3.SocketAddress",
        fields: &[
            yes("protocol"),
            yes("address"),
            yes("port_value"),
            yes("ipv4_compat"),
        ],
    },
    MessageSupport {
        message: "envoy.config.core.v3.Pipe",
        fields: &[yes("path"), yes("mode")],
    },
    MessageSupport {
        message: "envoy.config.core.v3.SocketOption",
        fields: &[
            yes("description"),
            yes("level"),
            yes("name"),
            yes("int_value"),
            yes("buf_value"),
            yes("state"),
        ],
    },
    MessageSupport {
        message: "envoy.config.core.v3.TcpKeepalive",
        fields: &[
            yes("keepalive_probes"),
            yes("keepalive_time"),
            yes("keepalive_interval"),
        ],
    },
];

/// Where a listener binds or an upstream host is reached.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Address {
    /// An IP and port; `ipv4_compat` lets an IPv6 wildcard also accept IPv4.
    Ip { addr: SocketAddr, ipv4_compat: bool },
    /// A Unix domain socket path (`@name` for the abstract namespace) and its mode.
    Pipe { path: PathBuf, mode: u32 },
}

impl Address {
    /// Envoy's rendering: `127.0.0.1:80`, `[::1]:80`, or the pipe path.
    pub fn envoy_string(&self) -> String {
        match self {
            Address::Ip { addr, .. } => addr.to_string(),
            Address::Pipe { path, .. } => path.to_string_lossy().into_owned(),
        }
    }

    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self {
            Address::Ip { addr, .. } => Some(*addr),
            Address::Pipe { .. } => None,
        }
    }
}

/// A socket address that may still need DNS (upstream endpoints of DNS clusters).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum EndpointAddress {
    Resolved(Address),
    /// A host name and port, resolved by the cluster's DNS settings.
    Dns {
        host: String,
        port: u16,
    },
}

/// Lowers an `Address` that must be an IP literal or a pipe (listeners, STATIC hosts).
pub fn resolved(addr: &core::Address, path: &FieldPath) -> Result<Address, ConfigError> {
    match lower(addr, path, false)? {
        EndpointAddress::Resolved(a) => Ok(a),
        EndpointAddress::Dns { host, .. } => Err(ConfigError::semantic(
            path.field("socket_address").field("address"),
            format!("malformed IP address: {host}"),
        )),
    }
}

/// Lowers an `Address`, allowing host names when `allow_dns` (DNS clusters).
pub fn lower(
    addr: &core::Address,
    path: &FieldPath,
    allow_dns: bool,
) -> Result<EndpointAddress, ConfigError> {
    use core::address::Address as A;
    match &addr.address {
        Some(A::SocketAddress(sa)) => socket_address(sa, &path.field("socket_address"), allow_dns),
        Some(A::Pipe(pipe)) => Ok(EndpointAddress::Resolved(Address::Pipe {
            path: PathBuf::from(&pipe.path),
            mode: pipe.mode,
        })),
        Some(A::EnvoyInternalAddress(_)) => Err(ConfigError::not_supported(
            path.field("envoy_internal_address"),
            "envoy_internal_address (internal listeners)",
        )),
        None => Err(ConfigError::semantic(
            path.clone(),
            "an address is required",
        )),
    }
}

fn socket_address(
    sa: &core::SocketAddress,
    path: &FieldPath,
    allow_dns: bool,
) -> Result<EndpointAddress, ConfigError> {
    use core::socket_address::PortSpecifier;
    if sa.protocol == core::socket_address::Protocol::Udp as i32 {
        return Err(ConfigError::not_supported(path.field("protocol"), "UDP"));
    }
    let port = match &sa.port_specifier {
        Some(PortSpecifier::PortValue(p)) => u16::try_from(*p).map_err(|_| {
            ConfigError::semantic(path.field("port_value"), format!("invalid port {p}"))
        })?,
        Some(PortSpecifier::NamedPort(_)) => {
            return Err(ConfigError::not_supported(
                path.field("named_port"),
                "named_port",
            ));
        }
        None => return Err(ConfigError::semantic(path.clone(), "a port is required")),
    };
    match sa.address.parse::<IpAddr>() {
        Ok(ip) => Ok(EndpointAddress::Resolved(Address::Ip {
            addr: SocketAddr::new(ip, port),
            ipv4_compat: sa.ipv4_compat,
        })),
        Err(_) if allow_dns => Ok(EndpointAddress::Dns {
            host: sa.address.clone(),
            port,
        }),
        Err(_) => Err(ConfigError::semantic(
            path.field("address"),
            format!("malformed IP address: {}", sa.address),
        )),
    }
}

/// A raw socket option to apply (`setsockopt(level, name, value)`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketOption {
    pub level: i32,
    pub name: i32,
    pub value: SocketOptionValue,
    pub state: SocketState,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SocketOptionValue {
    Int(i32),
    Bytes(Vec<u8>),
}

/// When a socket option is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketState {
    Prebind,
    Bound,
    Listening,
}

pub fn socket_options(
    opts: &[core::SocketOption],
    path: &FieldPath,
) -> Result<Vec<SocketOption>, ConfigError> {
    opts.iter()
        .enumerate()
        .map(|(i, o)| {
            let p = path.index(i);
            let level = i32::try_from(o.level)
                .map_err(|_| ConfigError::semantic(p.field("level"), "out of range"))?;
            let name = i32::try_from(o.name)
                .map_err(|_| ConfigError::semantic(p.field("name"), "out of range"))?;
            let value = match &o.value {
                Some(core::socket_option::Value::IntValue(v)) => SocketOptionValue::Int(
                    i32::try_from(*v)
                        .map_err(|_| ConfigError::semantic(p.field("int_value"), "out of range"))?,
                ),
                Some(core::socket_option::Value::BufValue(b)) => {
                    SocketOptionValue::Bytes(b.clone())
                }
                None => return Err(ConfigError::semantic(p, "a value is required")),
            };
            let state = match core::socket_option::SocketState::try_from(o.state) {
                Ok(core::socket_option::SocketState::StateBound) => SocketState::Bound,
                Ok(core::socket_option::SocketState::StateListening) => SocketState::Listening,
                _ => SocketState::Prebind,
            };
            Ok(SocketOption {
                level,
                name,
                value,
                state,
            })
        })
        .collect()
}

/// TCP keepalive settings (unset values keep the system's defaults).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpKeepalive {
    pub probes: Option<u32>,
    pub time_secs: Option<u32>,
    pub interval_secs: Option<u32>,
}

pub fn tcp_keepalive(k: &core::TcpKeepalive) -> TcpKeepalive {
    TcpKeepalive {
        probes: k.keepalive_probes,
        time_secs: k.keepalive_time,
        interval_secs: k.keepalive_interval,
    }
}
