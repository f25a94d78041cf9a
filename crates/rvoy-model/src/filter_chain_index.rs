//! Filter chain selection as Envoy's `FilterChainManagerImpl` does it: a tree
//! built once per listener, keyed level by level on destination port,
//! destination IP (longest prefix), server name (exact, then wildcard
//! suffixes), transport protocol, application protocols, direct source IP,
//! source type, source IP and source port. At each level the most specific
//! entry that exists is taken, falling back to the catch-all entry only when
//! no specific one matches; there is no backtracking, so a connection that
//! enters a specific branch and fails deeper gets the default chain.
//!
//! Lookups allocate nothing: the tree is walked with borrowed keys.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::hcm::CidrRange;
use crate::listener::{FilterChainMatch, SourceType};

/// The index's maps, looked up for every accepted connection: hashed with
/// foldhash (seeded per process), not SipHash.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// What is known about a connection when its filter chain is chosen.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnectionFacts<'a> {
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
    /// The peer of the socket itself (the remote before any PROXY protocol).
    pub direct_remote: Option<SocketAddr>,
    /// The SNI, lower case (empty: none).
    pub server_name: &'a str,
    /// `tls` or `raw_buffer`.
    pub transport_protocol: &'a str,
    /// The ALPN protocols the client offered.
    pub application_protocols: &'a [String],
}

/// A level keyed on IP ranges: the longest prefix containing the address
/// wins; `None` is the catch-all (`0.0.0.0/0` and `::/0`).
#[derive(Debug)]
struct CidrLevel<T> {
    entries: Vec<(Option<CidrRange>, T)>,
}

impl<T> Default for CidrLevel<T> {
    fn default() -> Self {
        CidrLevel {
            entries: Vec::new(),
        }
    }
}

impl<T: Default> CidrLevel<T> {
    fn entry(&mut self, range: Option<&CidrRange>) -> &mut T {
        let pos = self.entries.iter().position(|(r, _)| r.as_ref() == range);
        let pos = match pos {
            Some(p) => p,
            None => {
                self.entries.push((range.cloned(), T::default()));
                self.entries.len() - 1
            }
        };
        &mut self.entries[pos].1
    }
}

impl<T> CidrLevel<T> {
    fn find(&self, ip: Option<IpAddr>) -> Option<&T> {
        // Unix sockets match as 255.255.255.255: only catch-alls take them.
        let ip = ip.unwrap_or(IpAddr::V4(Ipv4Addr::BROADCAST));
        let mut best: Option<(u8, &T)> = None;
        for (range, value) in &self.entries {
            let len = match range {
                None => 0,
                Some(r) if r.contains(ip) => r.prefix_len,
                Some(_) => continue,
            };
            if best.is_none_or(|(l, _)| len > l) {
                best = Some((len, value));
            }
        }
        best.map(|(_, v)| v)
    }
}

#[derive(Debug, Default)]
struct SourcePorts {
    /// Port 0: any.
    ports: HashMap<u16, usize>,
}

#[derive(Debug, Default)]
struct SourceTypes {
    any: CidrLevel<SourcePorts>,
    local: CidrLevel<SourcePorts>,
    external: CidrLevel<SourcePorts>,
}

#[derive(Debug, Default)]
struct AppProtocols {
    /// `""`: any.
    map: HashMap<String, CidrLevel<SourceTypes>>,
}

#[derive(Debug, Default)]
struct TransportProtocols {
    /// `""`: any.
    map: HashMap<String, AppProtocols>,
}

#[derive(Debug, Default)]
struct ServerNames {
    /// Exact names, `.suffix` for `*.suffix`, `""` for any.
    map: HashMap<String, TransportProtocols>,
}

/// The selection tree of one listener's filter chains.
#[derive(Debug, Default)]
pub struct FilterChainIndex {
    /// Port 0: any.
    ports: HashMap<u16, CidrLevel<ServerNames>>,
    /// The listener's only chain, when it matches every connection (no
    /// criteria): the answer without walking the tree.
    only_chain: Option<usize>,
}

/// Two chains would answer the same connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap;

fn ranges(list: &[CidrRange]) -> Vec<Option<&CidrRange>> {
    if list.is_empty() {
        vec![None]
    } else {
        list.iter().map(Some).collect()
    }
}

fn strings(list: &[String]) -> Vec<&str> {
    if list.is_empty() {
        vec![""]
    } else {
        list.iter().map(String::as_str).collect()
    }
}

impl FilterChainIndex {
    /// Builds the tree; chain `i` of `chains` is returned as `i` by [`find`](Self::find).
    pub fn build<'a>(
        chains: impl IntoIterator<Item = &'a FilterChainMatch>,
    ) -> Result<FilterChainIndex, Overlap> {
        let mut index = FilterChainIndex::default();
        let mut matches_all = true;
        let mut count = 0;
        for (i, m) in chains.into_iter().enumerate() {
            index.add(i, m)?;
            matches_all &= *m == FilterChainMatch::default();
            count += 1;
        }
        if count == 1 && matches_all {
            index.only_chain = Some(0);
        }
        Ok(index)
    }

    fn add(&mut self, chain: usize, m: &FilterChainMatch) -> Result<(), Overlap> {
        let port = m.destination_port.unwrap_or(0);
        let dest = self.ports.entry(port).or_default();
        for dip in ranges(&m.prefix_ranges) {
            let names = dest.entry(dip);
            for name in strings(&m.server_names) {
                let key = name.strip_prefix('*').unwrap_or(name).to_owned();
                let transports = names.map.entry(key).or_default();
                let apps = transports
                    .map
                    .entry(m.transport_protocol.clone())
                    .or_default();
                for app in strings(&m.application_protocols) {
                    let direct = apps.map.entry(app.to_owned()).or_default();
                    for dsip in ranges(&m.direct_source_prefix_ranges) {
                        let types = direct.entry(dsip);
                        let by_type = match m.source_type {
                            None | Some(SourceType::Any) => &mut types.any,
                            Some(SourceType::SameIpOrLoopback) => &mut types.local,
                            Some(SourceType::External) => &mut types.external,
                        };
                        for sip in ranges(&m.source_prefix_ranges) {
                            let ports = by_type.entry(sip);
                            let list: Vec<u16> = if m.source_ports.is_empty() {
                                vec![0]
                            } else {
                                m.source_ports.clone()
                            };
                            for p in list {
                                if ports.ports.insert(p, chain).is_some() {
                                    return Err(Overlap);
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The index of the chain for a connection, if one matches.
    pub fn find(&self, facts: &ConnectionFacts<'_>) -> Option<usize> {
        if self.only_chain.is_some() {
            return self.only_chain;
        }
        if let Some(dest) = facts.local.and_then(|a| self.ports.get(&a.port())) {
            // A specific port that matches nothing deeper does not fall back
            // to the catch-all port.
            return Self::find_dest(dest, facts);
        }
        self.ports
            .get(&0)
            .and_then(|dest| Self::find_dest(dest, facts))
    }

    fn find_dest(dest: &CidrLevel<ServerNames>, facts: &ConnectionFacts<'_>) -> Option<usize> {
        let names = dest.find(facts.local.map(|a| a.ip()))?;
        let transports = Self::find_server_name(names, facts.server_name)?;
        let apps = transports
            .map
            .get(facts.transport_protocol)
            .or_else(|| transports.map.get(""))?;
        let direct = facts
            .application_protocols
            .iter()
            .find_map(|p| apps.map.get(p.as_str()))
            .or_else(|| apps.map.get(""))?;
        let types = direct.find(facts.direct_remote.or(facts.remote).map(|a| a.ip()))?;
        let has_local = !types.local.entries.is_empty();
        let has_external = !types.external.entries.is_empty();
        let level = if has_local || has_external {
            let local = is_same_ip_or_loopback(facts.local, facts.remote);
            if local && has_local {
                &types.local
            } else if !local && has_external {
                &types.external
            } else {
                &types.any
            }
        } else {
            &types.any
        };
        let ports = level.find(facts.remote.map(|a| a.ip()))?;
        let port = facts.remote.map_or(0, |a| a.port());
        ports
            .ports
            .get(&port)
            .or_else(|| if port != 0 { ports.ports.get(&0) } else { None })
            .copied()
    }

    fn find_server_name<'a>(names: &'a ServerNames, sni: &str) -> Option<&'a TransportProtocols> {
        if let Some(t) = names.map.get(sni) {
            return Some(t);
        }
        // Wildcards: ".b.example.com", then ".example.com", then ".com".
        let bytes = sni.as_bytes();
        let mut pos = 1;
        while pos < bytes.len() {
            if bytes[pos] == b'.' {
                if pos >= bytes.len() - 1 {
                    break;
                }
                if let Some(t) = names.map.get(&sni[pos..]) {
                    return Some(t);
                }
            }
            pos += 1;
        }
        names.map.get("")
    }
}

/// Envoy's `isSameIpOrLoopback`: the peer is a loopback address, or the
/// connection's own address; Unix sockets count as local.
fn is_same_ip_or_loopback(local: Option<SocketAddr>, remote: Option<SocketAddr>) -> bool {
    match (local, remote) {
        (Some(l), Some(r)) => r.ip().is_loopback() || r.ip() == l.ip(),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m() -> FilterChainMatch {
        FilterChainMatch::default()
    }

    fn addr(s: &str) -> Option<SocketAddr> {
        s.parse().ok()
    }

    fn facts<'a>(sni: &'a str, tp: &'a str, alpn: &'a [String]) -> ConnectionFacts<'a> {
        ConnectionFacts {
            local: addr("127.0.0.1:10000"),
            remote: addr("127.0.0.1:40000"),
            direct_remote: None,
            server_name: sni,
            transport_protocol: tp,
            application_protocols: alpn,
        }
    }

    /// A listener's only chain without criteria answers every connection,
    /// as the walk of its tree does.
    #[test]
    fn only_chain_without_criteria_matches_everything() {
        let mut index = FilterChainIndex::build([&m()]).unwrap();
        assert_eq!(index.only_chain, Some(0));
        let alpn = ["h2".to_string()];
        let cases = [
            facts("", "raw_buffer", &[]),
            facts("a.example.com", "tls", &alpn),
            ConnectionFacts::default(),
        ];
        let shortcut: Vec<_> = cases.iter().map(|f| index.find(f)).collect();
        index.only_chain = None;
        let walked: Vec<_> = cases.iter().map(|f| index.find(f)).collect();
        assert_eq!(shortcut, vec![Some(0); 3]);
        assert_eq!(shortcut, walked);
        // One chain with criteria, or two chains: the tree decides.
        let sni = FilterChainMatch {
            server_names: vec!["a.example.com".into()],
            ..m()
        };
        assert_eq!(FilterChainIndex::build([&sni]).unwrap().only_chain, None);
        assert_eq!(
            FilterChainIndex::build([&sni, &m()]).unwrap().only_chain,
            None
        );
    }

    #[test]
    fn server_names_exact_wildcard_and_catch_all() {
        let a = FilterChainMatch {
            server_names: vec!["a.example.com".into()],
            ..m()
        };
        let b = FilterChainMatch {
            server_names: vec!["b.example.com".into(), "*.b.example.com".into()],
            ..m()
        };
        let wide = FilterChainMatch {
            server_names: vec!["*.example.com".into()],
            ..m()
        };
        let index = FilterChainIndex::build([&a, &b, &wide]).expect("no overlap");
        assert_eq!(index.find(&facts("a.example.com", "tls", &[])), Some(0));
        assert_eq!(index.find(&facts("b.example.com", "tls", &[])), Some(1));
        assert_eq!(index.find(&facts("x.b.example.com", "tls", &[])), Some(1));
        assert_eq!(index.find(&facts("y.x.b.example.com", "tls", &[])), Some(1));
        assert_eq!(index.find(&facts("c.example.com", "tls", &[])), Some(2));
        assert_eq!(index.find(&facts("example.org", "tls", &[])), None);
        assert_eq!(index.find(&facts("", "raw_buffer", &[])), None);
        let any = m();
        let index = FilterChainIndex::build([&a, &any]).expect("no overlap");
        assert_eq!(index.find(&facts("zzz", "tls", &[])), Some(1));
    }

    #[test]
    fn transport_and_application_protocols() {
        let tls_h2 = FilterChainMatch {
            transport_protocol: "tls".into(),
            application_protocols: vec!["h2".into()],
            ..m()
        };
        let tls = FilterChainMatch {
            transport_protocol: "tls".into(),
            ..m()
        };
        let raw = m();
        let index = FilterChainIndex::build([&tls_h2, &tls, &raw]).expect("no overlap");
        let h2 = vec!["http/1.1".to_owned(), "h2".to_owned()];
        assert_eq!(index.find(&facts("", "tls", &h2)), Some(0));
        assert_eq!(index.find(&facts("", "tls", &[])), Some(1));
        assert_eq!(index.find(&facts("", "raw_buffer", &[])), Some(2));
    }

    #[test]
    fn ports_do_not_fall_back() {
        let port = FilterChainMatch {
            destination_port: Some(10000),
            server_names: vec!["a".into()],
            ..m()
        };
        let any = m();
        let index = FilterChainIndex::build([&port, &any]).expect("no overlap");
        assert_eq!(index.find(&facts("a", "tls", &[])), Some(0));
        // Port 10000 has a branch; "b" fails in it: no fallback to port 0.
        assert_eq!(index.find(&facts("b", "tls", &[])), None);
    }

    #[test]
    fn longest_prefix_and_source_type() {
        let wide = FilterChainMatch {
            source_prefix_ranges: vec![CidrRange {
                addr: "127.0.0.0".parse().expect("ip"),
                prefix_len: 8,
            }],
            ..m()
        };
        let narrow = FilterChainMatch {
            source_prefix_ranges: vec![CidrRange {
                addr: "127.0.0.1".parse().expect("ip"),
                prefix_len: 32,
            }],
            ..m()
        };
        let index = FilterChainIndex::build([&wide, &narrow]).expect("no overlap");
        assert_eq!(index.find(&facts("", "raw_buffer", &[])), Some(1));
        let external = FilterChainMatch {
            source_type: Some(SourceType::External),
            ..m()
        };
        let local = FilterChainMatch {
            source_type: Some(SourceType::SameIpOrLoopback),
            ..m()
        };
        let index = FilterChainIndex::build([&external, &local]).expect("no overlap");
        assert_eq!(index.find(&facts("", "raw_buffer", &[])), Some(1));
        let index = FilterChainIndex::build([&external]).expect("no overlap");
        assert_eq!(index.find(&facts("", "raw_buffer", &[])), None);
    }

    #[test]
    fn overlapping_rules_are_rejected() {
        let a = FilterChainMatch {
            server_names: vec!["a".into(), "b".into()],
            ..m()
        };
        let b = FilterChainMatch {
            server_names: vec!["b".into()],
            ..m()
        };
        assert_eq!(FilterChainIndex::build([&a, &b]).err(), Some(Overlap));
    }

    #[test]
    fn source_ports() {
        let p = FilterChainMatch {
            source_ports: vec![40000],
            ..m()
        };
        let any = m();
        let index = FilterChainIndex::build([&p, &any]).expect("no overlap");
        assert_eq!(index.find(&facts("", "raw_buffer", &[])), Some(0));
        let mut f = facts("", "raw_buffer", &[]);
        f.remote = addr("127.0.0.1:40001");
        assert_eq!(index.find(&f), Some(1));
    }
}
