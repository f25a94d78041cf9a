//! The rvoy server: Envoy's command line ([`cli`]), startup order and the main
//! thread ([`server`]), config snapshots ([`snapshot`]), listener sockets and
//! worker threads ([`workers`]), access log files ([`access_log_files`]) and
//! the admin server ([`admin`], [`admin_pages`], [`admin_config_dump`],
//! [`admin_html`]), process-wide stats ([`process_stats`]), statsd sinks
//! ([`stats_sink`]) and returning freed memory to the system ([`memory`]).

pub mod access_log_files;
pub mod admin;
pub mod admin_certs;
pub mod admin_config_dump;
pub mod admin_html;
pub mod admin_pages;
pub mod allocator;
pub mod cli;
pub mod memory;
pub mod process_stats;
pub mod server;
pub mod snapshot;
mod sockopt;
pub mod stats_config;
pub mod stats_sink;
pub mod tcp_proxy;
pub mod tls_inspector;
pub mod workers;

pub use server::main_entry;
