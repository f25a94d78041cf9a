//! An index over a virtual host's routes by their literal path matchers, so a
//! request in a host of thousands of routes checks a handful of candidates
//! instead of scanning them all.
//!
//! Envoy walks a virtual host's routes in order and takes the first that
//! matches. The index keeps exactly that answer: for a request path it yields
//! the routes whose *path* can match — case-sensitive `prefix` and
//! `path_separated_prefix` routes whose prefix starts the path, `path` routes
//! equal to it, and every route the index cannot reason about (`safe_regex`,
//! `case_sensitive: false`) — in ascending route order. The caller still runs
//! each candidate's whole matcher (path, headers, query, runtime), so the
//! first candidate that matches is the route a scan would have found.
//!
//! Lookup cost: one hash probe per distinct prefix length (plus one for exact
//! paths), independent of the number of routes.

use std::collections::HashMap;

use crate::route::{PathMatch, Route};

/// Below this many routes a scan is as fast as the index.
const MIN_ROUTES: usize = 16;

/// The index of one virtual host's routes.
#[derive(Debug, Default)]
pub struct RouteIndex {
    /// Prefix (and separated-prefix) routes by their prefix.
    prefixes: HashMap<Box<str>, Vec<u32>>,
    /// The distinct prefix lengths, ascending.
    prefix_lens: Vec<usize>,
    /// `path` routes by their path.
    exact: HashMap<Box<str>, Vec<u32>>,
    /// Routes every request must try (regex, case-insensitive matchers).
    always: Vec<u32>,
}

impl RouteIndex {
    /// Builds the index, or `None` when `routes` are too few to need one.
    pub fn build(routes: &[Route]) -> Option<RouteIndex> {
        if routes.len() < MIN_ROUTES {
            return None;
        }
        let mut index = RouteIndex::default();
        for (i, r) in routes.iter().enumerate() {
            let i = u32::try_from(i).ok()?;
            let m = &r.matcher;
            match &m.path {
                PathMatch::Prefix(p) | PathMatch::SeparatedPrefix(p) if m.case_sensitive => {
                    index.prefixes.entry(p.as_str().into()).or_default().push(i);
                }
                PathMatch::Exact(p) if m.case_sensitive => {
                    index.exact.entry(p.as_str().into()).or_default().push(i);
                }
                _ => index.always.push(i),
            }
        }
        let mut lens: Vec<usize> = index.prefixes.keys().map(|k| k.len()).collect();
        lens.sort_unstable();
        lens.dedup();
        index.prefix_lens = lens;
        Some(index)
    }

    /// The routes whose path matcher may match `path` (the path without its
    /// query), in route order, into `out` (cleared first).
    pub fn candidates(&self, path: &str, out: &mut Vec<u32>) {
        out.clear();
        out.extend_from_slice(&self.always);
        for &len in &self.prefix_lens {
            let Some(head) = path.get(..len) else {
                // Longer than the path (or not at a char boundary, so no
                // prefix of that length can equal it).
                if len > path.len() {
                    break;
                }
                continue;
            };
            if let Some(routes) = self.prefixes.get(head) {
                out.extend_from_slice(routes);
            }
        }
        if let Some(routes) = self.exact.get(path) {
            out.extend_from_slice(routes);
        }
        out.sort_unstable();
    }
}

#[cfg(test)]
mod tests {
    use crate::route::{RouteConfig, VirtualHost};

    fn vhost(routes_yaml: &str) -> std::sync::Arc<RouteConfig> {
        crate::route::tests::config_with_routes(routes_yaml)
    }

    fn scan(vh: &VirtualHost, path: &str) -> Vec<u32> {
        vh.routes
            .iter()
            .enumerate()
            .filter(|(_, r)| r.matcher.path_matches(path))
            .map(|(i, _)| i as u32)
            .collect()
    }

    /// For every probe path, the candidates are a superset of the routes a
    /// scan finds by path, in order, so the first full match is the same.
    #[test]
    fn candidates_cover_every_path_match_in_order() {
        let mut routes = String::new();
        for i in 0..40 {
            match i % 5 {
                0 => routes.push_str(&format!("- match: {{prefix: \"/a/{i}\"}}\n  direct_response: {{status: 200}}\n")),
                1 => routes.push_str(&format!("- match: {{path: \"/a/{i}/x\"}}\n  direct_response: {{status: 200}}\n")),
                2 => routes.push_str(&format!("- match: {{prefix: \"/A/{i}\", case_sensitive: false}}\n  direct_response: {{status: 200}}\n")),
                3 => routes.push_str(&format!("- match: {{safe_regex: {{regex: \"/r/{i}.*\"}}}}\n  direct_response: {{status: 200}}\n")),
                _ => routes.push_str(&format!("- match: {{path_separated_prefix: \"/s/{i}\"}}\n  direct_response: {{status: 200}}\n")),
            }
        }
        routes.push_str("- match: {prefix: \"/\"}\n  direct_response: {status: 404}\n");
        let rc = vhost(&routes);
        let vh = &rc.virtual_hosts[0];
        let index = vh.route_index.as_ref().expect("indexed");
        let mut out = Vec::new();
        for probe in [
            "/", "/a/0", "/a/05", "/a/1/x", "/a/1/xy", "/a/12", "/A/2", "/a/2z", "/r/3zz", "/s/4",
            "/s/4/", "/s/4x", "/s/44/y", "/nothing", "", "/é/a",
        ] {
            index.candidates(probe, &mut out);
            let by_scan = scan(vh, probe);
            for r in &by_scan {
                assert!(out.contains(r), "{probe}: route {r} missing from {out:?}");
            }
            assert!(
                out.windows(2).all(|w| w[0] <= w[1]),
                "{probe}: {out:?} in order"
            );
            let first = out
                .iter()
                .find(|&&i| vh.routes[i as usize].matcher.path_matches(probe));
            assert_eq!(first, by_scan.first(), "{probe}");
        }
    }

    #[test]
    fn small_hosts_are_scanned() {
        let rc = vhost("- match: {prefix: \"/\"}\n  direct_response: {status: 200}\n");
        assert!(rc.virtual_hosts[0].route_index.is_none());
    }
}
