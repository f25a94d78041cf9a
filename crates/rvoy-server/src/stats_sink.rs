//! Statsd stats sinks (`envoy.stat_sinks.statsd`, `envoy.stat_sinks.dog_statsd`),
//! flushed from the main thread on every stats flush.
//!
//! Each flush sends, over UDP, Envoy's statsd lines for every used stat:
//! counters as the increase since the previous flush (`name:delta|c`),
//! gauges as their value (`name:value|g`), and the values recorded into
//! histograms during the interval (`name:value|ms`; `|h` for percent
//! histograms). The plain statsd sink uses full stat names; the DogStatsD
//! sink uses tag-extracted names with the tags appended
//! (`|#tag:value,...`) and packs lines into datagrams of up to
//! `max_bytes_per_datagram` bytes.
//!
//! Envoy sends each histogram value as it is recorded; rvoy's store merges
//! histograms per flush, so the interval's values are sent at flush time,
//! one line per recorded value at its bucket's lower bound (at most
//! [`MAX_HISTOGRAM_LINES`] per histogram and flush).

use std::fmt::Write as _;
use std::net::{SocketAddr, UdpSocket};

use rvoy_model::stats_sink::{StatsSink, StatsdFlavor};
use rvoy_stats::{HistogramUnit, Snapshot, StatKind};

/// The most lines one histogram contributes to one flush.
pub const MAX_HISTOGRAM_LINES: u64 = 10_000;

/// The largest UDP payload the sink builds.
const MAX_DATAGRAM: usize = 65_000;

/// Errors setting a sink up.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot create the statsd sink socket for {address}: {source}")]
    Socket {
        address: SocketAddr,
        source: std::io::Error,
    },
}

/// A statsd sink: a connected UDP socket and the line format.
#[derive(Debug)]
pub struct StatsdSink {
    config: StatsSink,
    socket: UdpSocket,
}

impl StatsdSink {
    pub fn new(config: &StatsSink) -> Result<Self, SinkError> {
        let address = config.address;
        let bind: SocketAddr = if address.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        let socket = UdpSocket::bind(bind)
            .and_then(|s| s.connect(address).map(|()| s))
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .map_err(|source| SinkError::Socket { address, source })?;
        Ok(StatsdSink {
            config: config.clone(),
            socket,
        })
    }

    /// Sends one flush (a [`rvoy_stats::Store::flush`] snapshot). Send
    /// errors are ignored, as Envoy's UDP sink does.
    pub fn flush(&self, snap: &Snapshot) {
        for datagram in self.datagrams(snap) {
            let _ = self.socket.send(datagram.as_bytes());
        }
    }

    /// The datagrams of one flush.
    pub fn datagrams(&self, snap: &Snapshot) -> Vec<String> {
        let lines = render_lines(&self.config, snap);
        let limit = match self.config.flavor {
            StatsdFlavor::DogStatsd => self
                .config
                .max_bytes_per_datagram
                .map_or(0, |v| usize::try_from(v).unwrap_or(MAX_DATAGRAM)),
            StatsdFlavor::Statsd => 0,
        };
        if limit == 0 {
            return lines;
        }
        let mut out = Vec::new();
        let mut current = String::new();
        for line in lines {
            if !current.is_empty() && current.len() + 1 + line.len() > limit.min(MAX_DATAGRAM) {
                out.push(std::mem::take(&mut current));
            }
            if !current.is_empty() {
                current.push('\n');
            }
            current.push_str(&line);
        }
        if !current.is_empty() {
            out.push(current);
        }
        out
    }
}

fn tags_suffix<'a>(tags: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut s = String::new();
    for (i, (name, value)) in tags.enumerate() {
        s.push_str(if i == 0 { "|#" } else { "," });
        s.push_str(name);
        s.push(':');
        s.push_str(value);
    }
    s
}

fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Envoy's statsd lines for one flush, counters then gauges then
/// histogram values.
pub fn render_lines(config: &StatsSink, snap: &Snapshot) -> Vec<String> {
    let dog = config.flavor == StatsdFlavor::DogStatsd;
    let prefix = &config.prefix;
    let mut out = Vec::new();
    let mut line = String::new();
    for c in snap.counters().filter(|c| c.used()) {
        let delta = c.delta().unwrap_or(0);
        line.clear();
        if dog {
            let _ = write!(
                line,
                "{prefix}.{}:{delta}|c{}",
                c.tag_extracted_name(),
                tags_suffix(c.tags())
            );
        } else {
            let _ = write!(line, "{prefix}.{}:{delta}|c", c.name());
        }
        out.push(line.clone());
    }
    for g in snap
        .gauges()
        .filter(|g| g.used() && g.kind() == StatKind::Gauge)
    {
        line.clear();
        if dog {
            let _ = write!(
                line,
                "{prefix}.{}:{}|g{}",
                g.tag_extracted_name(),
                g.value(),
                tags_suffix(g.tags())
            );
        } else {
            let _ = write!(line, "{prefix}.{}:{}|g", g.name(), g.value());
        }
        out.push(line.clone());
    }
    for h in snap.histograms() {
        let kind = if h.unit() == HistogramUnit::Percent {
            "|h"
        } else {
            "|ms"
        };
        let (name, tags) = if dog {
            (h.tag_extracted_name(), tags_suffix(h.tags()))
        } else {
            (h.name(), String::new())
        };
        let mut emitted = 0u64;
        for (lower, _width, count) in h.interval_buckets() {
            let value = format_value(lower);
            for _ in 0..count {
                if emitted >= MAX_HISTOGRAM_LINES {
                    break;
                }
                out.push(format!("{prefix}.{name}:{value}{kind}{tags}"));
                emitted += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sink(flavor: StatsdFlavor, address: SocketAddr, max: Option<u64>) -> StatsSink {
        StatsSink {
            flavor,
            address,
            prefix: "envoy".to_owned(),
            max_bytes_per_datagram: max,
        }
    }

    fn store() -> rvoy_stats::Store {
        let store = rvoy_stats::Store::new();
        let scope = store.scope("cluster.backend.");
        scope.counter("upstream_rq_total").add(3);
        scope.counter("unused_counter");
        scope
            .gauge("membership_total", rvoy_stats::GaugeImportMode::Accumulate)
            .set(2);
        scope
            .histogram("upstream_rq_time", HistogramUnit::Milliseconds)
            .record(7);
        store
    }

    #[test]
    fn statsd_lines() {
        let store = store();
        let addr = SocketAddr::from(([127, 0, 0, 1], 9));
        let lines = render_lines(&sink(StatsdFlavor::Statsd, addr, None), &store.flush());
        assert!(lines.contains(&"envoy.cluster.backend.upstream_rq_total:3|c".to_owned()));
        assert!(lines.contains(&"envoy.cluster.backend.membership_total:2|g".to_owned()));
        assert!(lines.contains(&"envoy.cluster.backend.upstream_rq_time:7|ms".to_owned()));
        assert!(!lines.iter().any(|l| l.contains("unused_counter")));
        // Counters send deltas: nothing new since the last flush.
        let lines = render_lines(&sink(StatsdFlavor::Statsd, addr, None), &store.flush());
        assert!(lines.contains(&"envoy.cluster.backend.upstream_rq_total:0|c".to_owned()));
        assert!(!lines.iter().any(|l| l.ends_with("|ms")));
    }

    #[test]
    fn dogstatsd_lines_have_tags() {
        let store = store();
        let addr = SocketAddr::from(([127, 0, 0, 1], 9));
        let lines = render_lines(&sink(StatsdFlavor::DogStatsd, addr, None), &store.flush());
        assert!(
            lines.contains(
                &"envoy.cluster.upstream_rq_total:3|c|#envoy.cluster_name:backend".to_owned()
            ),
            "{lines:?}"
        );
    }

    #[test]
    fn sends_to_a_udp_receiver() {
        let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind receiver");
        receiver
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let addr = receiver.local_addr().expect("addr");
        let s = StatsdSink::new(&sink(StatsdFlavor::DogStatsd, addr, Some(1_000))).expect("sink");
        let store = store();
        s.flush(&store.flush());
        let mut buf = [0u8; 2048];
        let n = receiver.recv(&mut buf).expect("datagram");
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.contains("envoy.cluster.upstream_rq_total:3|c|#envoy.cluster_name:backend"));
        assert!(text.contains('\n'), "lines are batched: {text}");
    }
}
