//! Micro-benchmark of load balancer picks (`lb::LbState::choose`) over 3 and
//! 100 healthy hosts: round robin with equal weights, smooth weighted round
//! robin, least request (two random choices) and random; plus a pick that must
//! avoid the previously tried host (a retry). Run with
//! `cargo bench -p rvoy-upstream --bench lb`.

use std::net::SocketAddr;
use std::sync::Arc;

use rvoy_model::cluster::{EdsHealth, LbPolicy};
use rvoy_upstream::host::{Host, HostAddress, HostSet};
use rvoy_upstream::lb::LbState;

const HOSTS: &[usize] = &[3, 100];

fn main() {
    divan::main();
}

fn hosts(n: usize, weighted: bool) -> HostSet {
    let hosts = (0..n)
        .map(|i| {
            let port = 10_000 + u16::try_from(i).expect("a small host count");
            let weight = if weighted { 1 + (i as u32 % 5) } else { 1 };
            Arc::new(Host::new(
                HostAddress::Tcp(SocketAddr::from(([127, 0, 0, 1], port))),
                "backend".into(),
                weight,
                0,
                EdsHealth::Healthy,
            ))
        })
        .collect();
    HostSet::new(hosts, 1)
}

fn pick(bencher: divan::Bencher<'_, '_>, n: usize, weighted: bool, policy: LbPolicy) {
    let set = hosts(n, weighted);
    let lb = LbState::default();
    bencher.bench_local(|| lb.choose(policy, divan::black_box(&set), &|_| false, 1));
}

#[divan::bench(args = HOSTS)]
fn round_robin(bencher: divan::Bencher<'_, '_>, n: usize) {
    pick(bencher, n, false, LbPolicy::RoundRobin);
}

#[divan::bench(args = HOSTS)]
fn weighted_round_robin(bencher: divan::Bencher<'_, '_>, n: usize) {
    pick(bencher, n, true, LbPolicy::RoundRobin);
}

#[divan::bench(args = HOSTS)]
fn least_request(bencher: divan::Bencher<'_, '_>, n: usize) {
    pick(
        bencher,
        n,
        false,
        LbPolicy::LeastRequest { choice_count: 2 },
    );
}

#[divan::bench(args = HOSTS)]
fn random(bencher: divan::Bencher<'_, '_>, n: usize) {
    pick(bencher, n, false, LbPolicy::Random);
}

#[divan::bench(args = HOSTS)]
fn retry_avoiding_previous(bencher: divan::Bencher<'_, '_>, n: usize) {
    let set = hosts(n, false);
    let lb = LbState::default();
    let previous = set.hosts[0].clone();
    bencher.bench_local(|| {
        lb.choose(
            LbPolicy::RoundRobin,
            divan::black_box(&set),
            &|h| std::ptr::eq(h, &*previous),
            3,
        )
    });
}
