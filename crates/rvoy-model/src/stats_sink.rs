//! Bootstrap `stats_sinks`: the statsd sinks rvoy implements
//! (`envoy.stat_sinks.statsd`, `envoy.stat_sinks.dog_statsd`), lowered to
//! a UDP destination, a prefix and a datagram size limit.
//!
//! Envoy's statsd sink can also send over TCP through a cluster
//! (`tcp_cluster_name`); rvoy rejects that field.

use std::net::SocketAddr;

use rvoy_api::envoy::config::metrics::v3 as pb;
use rvoy_config_load::{ConfigError, FieldPath};

use crate::address::{self, Address};
use crate::extension::{self, Category};
use crate::support::{Diagnostics, MessageSupport, yes};

pub(crate) static SUPPORT: &[MessageSupport] = &[
    MessageSupport {
        message: "envoy.config.metrics.v3.StatsSink",
        fields: &[yes("name"), yes("typed_config")],
    },
    MessageSupport {
        message: "envoy.config.metrics.v3.StatsdSink",
        fields: &[yes("address"), yes("prefix")],
    },
    MessageSupport {
        message: "envoy.config.metrics.v3.DogStatsdSink",
        fields: &[yes("address"), yes("prefix"), yes("max_bytes_per_datagram")],
    },
];

/// The statsd dialect of a sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatsdFlavor {
    /// Plain statsd: `prefix.name:value|c`.
    Statsd,
    /// DogStatsD: tags as `|#name:value,...`.
    DogStatsd,
}

/// One statsd sink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatsSink {
    pub flavor: StatsdFlavor,
    /// UDP destination.
    pub address: SocketAddr,
    /// Prefix of every stat name (Envoy's default: `envoy`).
    pub prefix: String,
    /// DogStatsD only: the largest datagram to send (Envoy's default: one
    /// line per datagram when unset).
    pub max_bytes_per_datagram: Option<u64>,
}

/// Envoy's default statsd prefix.
pub const DEFAULT_PREFIX: &str = "envoy";

fn udp_address(
    addr: Option<&rvoy_api::envoy::config::core::v3::Address>,
    path: &FieldPath,
) -> Result<SocketAddr, ConfigError> {
    let Some(addr) = addr else {
        return Err(ConfigError::semantic(
            path.clone(),
            "a statsd sink needs an address",
        ));
    };
    match address::resolved(addr, path)? {
        Address::Ip { addr, .. } => Ok(addr),
        Address::Pipe { .. } => Err(ConfigError::not_supported(
            path.field("pipe"),
            "statsd sinks on a pipe address",
        )),
    }
}

/// Lowers bootstrap `stats_sinks`.
pub fn stats_sinks(
    sinks: &[pb::StatsSink],
    path: &FieldPath,
    diags: &mut Diagnostics,
) -> Result<Vec<StatsSink>, ConfigError> {
    let mut out = Vec::with_capacity(sinks.len());
    for (i, sink) in sinks.iter().enumerate() {
        let p = path.index(i);
        let typed = sink
            .config_type
            .as_ref()
            .map(|pb::stats_sink::ConfigType::TypedConfig(a)| a);
        let resolved = extension::resolve(Category::StatsSink, &sink.name, typed, &p, diags)?;
        let cp = p.field("typed_config");
        let lowered = match resolved.extension.name {
            "envoy.stat_sinks.dog_statsd" => {
                let c: pb::DogStatsdSink = resolved.config_as(&p)?;
                let address = c
                    .dog_statsd_specifier
                    .as_ref()
                    .map(|pb::dog_statsd_sink::DogStatsdSpecifier::Address(a)| a);
                StatsSink {
                    flavor: StatsdFlavor::DogStatsd,
                    address: udp_address(address, &cp.field("address"))?,
                    prefix: if c.prefix.is_empty() {
                        DEFAULT_PREFIX.to_owned()
                    } else {
                        c.prefix
                    },
                    max_bytes_per_datagram: c.max_bytes_per_datagram,
                }
            }
            _ => {
                let c: pb::StatsdSink = resolved.config_as(&p)?;
                let address = match &c.statsd_specifier {
                    Some(pb::statsd_sink::StatsdSpecifier::Address(a)) => Some(a),
                    _ => None,
                };
                StatsSink {
                    flavor: StatsdFlavor::Statsd,
                    address: udp_address(address, &cp.field("address"))?,
                    prefix: if c.prefix.is_empty() {
                        DEFAULT_PREFIX.to_owned()
                    } else {
                        c.prefix
                    },
                    max_bytes_per_datagram: None,
                }
            }
        };
        out.push(lowered);
    }
    Ok(out)
}
