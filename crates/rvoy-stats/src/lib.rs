//! Envoy's stats model for rvoy: counters, gauges and histograms with
//! lock-free per-thread shards, Envoy's tag extraction, `stats_matcher`,
//! histogram merging with libcircllhist-identical statistics, and the admin
//! renderers (`/stats` text/JSON, `/stats/prometheus`) over snapshots.
//!
//! Threading model: each worker (and the main thread) records into its own
//! shard (see [`Store::register_thread`]); the main thread registers stats,
//! merges histograms ([`Store::merge_histograms`] / [`Store::flush`]) and
//! renders [`Snapshot`]s with the functions in [`render`].
//!
//! ```
//! use rvoy_stats::{Store, render};
//! let store = Store::new();
//! let rq = store.scope("cluster.backend").counter("upstream_rq_200");
//! rq.inc();
//! let mut out = String::new();
//! let params = render::StatsParams::parse("").expect("params");
//! render::render_prometheus(&store.snapshot(), &params, &mut out);
//! assert!(out.contains(
//!     "envoy_cluster_upstream_rq{envoy_response_code=\"200\",envoy_cluster_name=\"backend\"} 1"
//! ));
//! ```

pub mod error;
pub mod histogram;
pub mod matcher;
pub mod numfmt;
mod recorder;
pub mod render;
mod shard;
pub mod snapshot;
pub mod store;
mod table;
pub mod tags;

pub use error::{ParamsError, StatsError};
pub use histogram::{HistogramStatistics, HistogramUnit};
pub use matcher::{ListMatcher, NameMatcher, StatsMatcher};
pub use recorder::Recorder;
pub use snapshot::{HistogramView, Snapshot, StatKind, StatView};
pub use store::{
    Counter, Gauge, GaugeImportMode, Histogram, HistogramBucketRule, Scope, StatusCodeCounters,
    Store, StoreOptions, ThreadGuard,
};
pub use tags::{Tag, TagConfig, TagProducer, TagSpecifier, TagValue};
