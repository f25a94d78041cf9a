//! The rvoy server: Envoy's command line ([`cli`]), startup order and the main
//! thread ([`server`]), config snapshots ([`snapshot`]), listener sockets and
//! worker threads ([`workers`]), access log files ([`access_log_files`]) and
//! the admin server ([`admin`]).

pub mod access_log_files;
pub mod admin;
pub mod admin_pages;
pub mod cli;
pub mod server;
pub mod snapshot;
mod sockopt;
pub mod stats_config;
pub mod workers;

pub use server::main_entry;
