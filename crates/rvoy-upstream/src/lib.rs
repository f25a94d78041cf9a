//! rvoy's cluster manager.
//!
//! Owns each cluster's runtime state: its hosts ([`host`]), kept current by DNS
//! for DNS clusters ([`dns`], [`cluster`]), the per-worker load balancers
//! ([`lb`]), the circuit breakers ([`resources`]) and the cluster stats
//! ([`stats`]). Connection pools live with the HTTP data plane, per worker.

pub mod cluster;
pub mod dns;
pub mod host;
pub mod lb;
pub mod resources;
pub mod stats;
