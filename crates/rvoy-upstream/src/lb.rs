//! Load balancers, one state per worker and cluster (no locks).
//!
//! - Round robin: equal weights rotate from a random start, as Envoy does;
//!   unequal weights use smooth weighted round robin, which gives each host its
//!   share spread out evenly.
//! - Least request: power of `choice_count` random choices on active requests.
//! - Random: uniform.
//!
//! A retry may ask to avoid hosts already tried (`previous_hosts`); the balancer
//! then tries up to `host_selection_retry_max_attempts` picks.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rvoy_model::cluster::LbPolicy;

use crate::host::{Host, HostSet};

/// A worker's balancing state for one cluster.
#[derive(Debug, Default)]
pub struct LbState {
    inner: RefCell<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    version: u64,
    next: usize,
    /// Smooth weighted round robin: current weights by host index.
    current: Vec<i64>,
    initialized: bool,
}

impl LbState {
    /// Picks a host from `set` for `policy`, avoiding `avoid` when possible.
    pub fn choose(
        &self,
        policy: LbPolicy,
        set: &HostSet,
        avoid: &dyn Fn(&Host) -> bool,
        attempts: u32,
    ) -> Option<Arc<Host>> {
        let hosts = set.routable();
        if hosts.is_empty() {
            return None;
        }
        let mut inner = self.inner.borrow_mut();
        if !inner.initialized || inner.version != set.version {
            inner.version = set.version;
            inner.next = fastrand::usize(..hosts.len());
            inner.current = vec![0; hosts.len()];
            inner.initialized = true;
        }
        let mut pick = None;
        for _ in 0..attempts.max(1) {
            let candidate = match policy {
                LbPolicy::RoundRobin => round_robin(&mut inner, hosts),
                LbPolicy::Random => hosts[fastrand::usize(..hosts.len())].clone(),
                LbPolicy::LeastRequest { choice_count } => least_request(hosts, choice_count),
            };
            let rejected = avoid(&candidate);
            pick = Some(candidate);
            if !rejected {
                break;
            }
        }
        pick
    }
}

fn round_robin(inner: &mut Inner, hosts: &[Arc<Host>]) -> Arc<Host> {
    let first = hosts[0].weight;
    if hosts.iter().all(|h| h.weight == first) {
        let i = inner.next % hosts.len();
        inner.next = inner.next.wrapping_add(1);
        return hosts[i].clone();
    }
    let total: i64 = hosts.iter().map(|h| i64::from(h.weight)).sum();
    let mut best = 0;
    for (i, h) in hosts.iter().enumerate() {
        inner.current[i] += i64::from(h.weight);
        if inner.current[i] > inner.current[best] {
            best = i;
        }
    }
    inner.current[best] -= total;
    hosts[best].clone()
}

fn least_request(hosts: &[Arc<Host>], choices: u32) -> Arc<Host> {
    let mut best = hosts[fastrand::usize(..hosts.len())].clone();
    for _ in 1..choices.max(2) {
        let other = &hosts[fastrand::usize(..hosts.len())];
        if other.stats.rq_active.load(Ordering::Relaxed)
            < best.stats.rq_active.load(Ordering::Relaxed)
        {
            best = other.clone();
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::HostAddress;
    use rvoy_model::cluster::EdsHealth;
    use std::collections::HashMap;
    use std::net::SocketAddr;

    fn set(weights: &[u32]) -> HostSet {
        HostSet::new(
            weights
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    Arc::new(Host::new(
                        HostAddress::Tcp(SocketAddr::from(([127, 0, 0, 1], 1000 + i as u16))),
                        "h".into(),
                        *w,
                        0,
                        EdsHealth::Healthy,
                    ))
                })
                .collect(),
            1,
        )
    }

    fn counts(lb: &LbState, s: &HostSet, n: usize) -> HashMap<String, usize> {
        let mut out = HashMap::new();
        for _ in 0..n {
            let h = lb
                .choose(LbPolicy::RoundRobin, s, &|_| false, 1)
                .expect("host");
            *out.entry(h.address.to_envoy_string()).or_default() += 1;
        }
        out
    }

    #[test]
    fn round_robin_is_even_and_weighted() {
        let lb = LbState::default();
        let s = set(&[1, 1, 1]);
        assert!(counts(&lb, &s, 30).values().all(|c| *c == 10));
        let lb = LbState::default();
        let s = set(&[1, 3]);
        let c = counts(&lb, &s, 40);
        assert_eq!(c.get("127.0.0.1:1000"), Some(&10));
        assert_eq!(c.get("127.0.0.1:1001"), Some(&30));
    }

    #[test]
    fn avoids_previous_hosts() {
        let lb = LbState::default();
        let s = set(&[1, 1]);
        let first = lb
            .choose(LbPolicy::RoundRobin, &s, &|_| false, 1)
            .expect("host");
        let again = lb
            .choose(LbPolicy::RoundRobin, &s, &|h| h.address == first.address, 3)
            .expect("host");
        assert_ne!(first.address, again.address);
    }
}
