//! The server: startup order, the main thread, shutdown.
//!
//! Envoy's order is kept: parse the command line, start logging, load and
//! validate the bootstrap (the whole config, before any socket), then in
//! `serve` mode build the snapshot, bind the listeners, start the admin
//! server, warm the clusters (first DNS answers), start the workers, and run
//! the main thread (admin, DNS refresh, stats flush, signals) until told to
//! stop. `validate` stops after the config checks; `init_only` after binding.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rvoy_config_load::bootstrap::{LoadOptions, load_bootstrap};
use rvoy_log::Component;
use rvoy_model::BuildOptions;
use tokio::sync::watch;

use crate::access_log_files::AccessLogFiles;
use crate::cli::{self, Mode, Options};
use crate::snapshot::{self, Snapshot};
use crate::workers::{self, WorkerControl};

/// Envoy's server states (`/server_info` `state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ServerState {
    Live = 0,
    Draining = 1,
    PreInitializing = 2,
    Initializing = 3,
}

impl ServerState {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerState::Live => "LIVE",
            ServerState::Draining => "DRAINING",
            ServerState::PreInitializing => "PRE_INITIALIZING",
            ServerState::Initializing => "INITIALIZING",
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            0 => ServerState::Live,
            1 => ServerState::Draining,
            3 => ServerState::Initializing,
            _ => ServerState::PreInitializing,
        }
    }
}

/// State shared by the main thread's tasks (admin, signals, lifecycle).
pub struct Server {
    pub options: Options,
    pub store: rvoy_stats::Store,
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    /// The bootstrap as loaded (what `/config_dump` renders).
    pub bootstrap: Arc<prost_reflect::DynamicMessage>,
    pub state: AtomicU8,
    pub health_failed: AtomicBool,
    pub draining: Arc<AtomicBool>,
    pub started: Instant,
    pub start_time: std::time::SystemTime,
    pub logs: Arc<AccessLogFiles>,
    pub shutdown: watch::Sender<bool>,
    pub stop_accepting: watch::Sender<bool>,
    /// Listener name and bound address, for `/listeners`.
    pub bound: Vec<(String, Option<SocketAddr>, String)>,
    pub stats: ServerStats,
}

rvoy_upstream::stats_struct!(
    /// `server.*`.
    ServerStats {
        counters: [debug_assertion_failures, envoy_bug_failures, dynamic_unknown_fields, static_unknown_fields, dropped_stat_flushes, envoy_notifications],
        gauges: [uptime, concurrency, live, state, memory_allocated, memory_heap_size, memory_physical_size, total_connections, parent_connections, days_until_first_cert_expiring, seconds_until_first_ocsp_response_expiring, version, hot_restart_epoch, hot_restart_generation, stats_recent_lookups],
        histograms: [initialization_time_ms: Milliseconds],
    }
);

impl Server {
    pub fn state(&self) -> ServerState {
        ServerState::from_u8(self.state.load(Ordering::Relaxed))
    }

    pub fn set_state(&self, s: ServerState) {
        self.state.store(s as u8, Ordering::Relaxed);
        self.stats.state.set(s as u64);
        self.stats.live.set(u64::from(s == ServerState::Live));
    }

    /// Stops accepting, then ends the process's main loop.
    pub fn request_shutdown(&self) {
        let _ = self.stop_accepting.send(true);
        let _ = self.shutdown.send(true);
    }
}

/// The process entry point: returns the exit code.
pub fn main_entry() -> ExitCode {
    let args = std::env::args_os().map(|a| a.to_string_lossy().into_owned());
    let options = match cli::parse(args) {
        Ok(o) => o,
        Err(exit) => {
            exit.print();
            return ExitCode::from(u8::try_from(exit.code).unwrap_or(1));
        }
    };
    if let Err(e) = rvoy_log::init(options.log_config()) {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    for (component, message) in &options.warnings {
        rvoy_log::warn!(*component, "{message}");
    }
    let code = run(options);
    rvoy_log::flush();
    code
}

fn config_label(options: &Options) -> &str {
    &options.config_path
}

/// Loads and lowers the bootstrap; logs Envoy's critical line on failure.
fn load(
    options: &Options,
) -> Result<
    (
        rvoy_config_load::bootstrap::LoadedBootstrap,
        rvoy_model::Config,
    ),
    (),
> {
    let load_options = LoadOptions {
        config_path: (!options.config_path.is_empty()).then(|| options.config_path.clone()),
        config_yaml: (!options.config_yaml.is_empty()).then(|| options.config_yaml.clone()),
        allow_unknown_static_fields: options.allow_unknown_static_fields,
    };
    let fail = |msg: String| {
        rvoy_log::critical!(
            Component::Main,
            "error initializing configuration '{}': {}",
            config_label(options),
            msg
        );
    };
    let loaded = match load_bootstrap(&load_options) {
        Ok(l) => l,
        Err(e) => {
            fail(e.to_string());
            return Err(());
        }
    };
    for w in &loaded.warnings {
        rvoy_log::warn!(Component::Config, "{}", w);
    }
    let build_options = BuildOptions {
        service_node: (!options.service_node.is_empty()).then(|| options.service_node.clone()),
        service_cluster: (!options.service_cluster.is_empty())
            .then(|| options.service_cluster.clone()),
        service_zone: (!options.service_zone.is_empty()).then(|| options.service_zone.clone()),
    };
    let config = match rvoy_model::build(
        &loaded.bootstrap,
        &loaded.message,
        &loaded.sources,
        &build_options,
    ) {
        Ok(c) => c,
        Err(e) => {
            fail(e.to_string());
            return Err(());
        }
    };
    let mut warned = std::collections::HashSet::new();
    for i in &config.ignored {
        if warned.insert(i.field.clone()) {
            rvoy_log::warn!(
                Component::Config,
                "{}: {} is accepted but has no effect in rvoy ({})",
                i.path,
                i.field,
                i.reason
            );
        }
    }
    rvoy_log::info!(
        Component::Config,
        "loading {} cluster(s)",
        config.clusters.len()
    );
    rvoy_log::info!(
        Component::Config,
        "loading {} listener(s)",
        config.listeners.len()
    );
    Ok((loaded, config))
}

fn run(options: Options) -> ExitCode {
    rvoy_log::info!(
        Component::Main,
        "initializing epoch 0 (base id=0, hot restart version=disabled)"
    );
    rvoy_log::info!(Component::Main, "rvoy version: {}", cli::version_string());
    let Ok((loaded, config)) = load(&options) else {
        return ExitCode::FAILURE;
    };
    if options.mode == Mode::Validate {
        println!("configuration '{}' OK", config_label(&options));
        return ExitCode::SUCCESS;
    }
    match serve(options, loaded, config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            rvoy_log::critical!(Component::Main, "{}", e);
            ExitCode::FAILURE
        }
    }
}

fn serve(
    options: Options,
    loaded: rvoy_config_load::bootstrap::LoadedBootstrap,
    config: rvoy_model::Config,
) -> Result<(), String> {
    let concurrency = options.concurrency.max(1) as usize;
    let store = rvoy_stats::Store::with_options(crate::stats_config::store_options(
        &loaded.bootstrap,
        &options,
    )?);
    let _main_stats = store.register_thread();
    let logs = AccessLogFiles::start(options.file_flush_interval, options.file_flush_min_size_kb);
    let machine = snapshot::machine_address(options.local_address_ip_version == cli::IpVersion::V6);
    let draining = Arc::new(AtomicBool::new(false));
    let config = Arc::new(config);
    let snap = snapshot::build(
        1,
        config.clone(),
        &store,
        &logs,
        concurrency,
        machine,
        &draining,
    )
    .map_err(|e| e.to_string())?;
    let sockets = workers::bind_all(&snap, concurrency).map_err(|e| e.to_string())?;
    let bound: Vec<(String, Option<SocketAddr>, String)> = sockets
        .iter()
        .zip(&snap.listeners)
        .map(|(s, l)| (s.name.clone(), s.bound, l.config.address.envoy_string()))
        .collect();
    let snapshot_handle = Arc::new(ArcSwap::from_pointee(snap));
    let (shutdown_tx, mut shutdown_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let (terminate_tx, terminate_rx) = watch::channel(false);
    let server = Arc::new(Server {
        stats: ServerStats::new(&store.scope("server.")),
        options: options.clone(),
        store: store.clone(),
        snapshot: snapshot_handle.clone(),
        bootstrap: Arc::new(loaded.message.clone()),
        state: AtomicU8::new(ServerState::PreInitializing as u8),
        health_failed: AtomicBool::new(false),
        draining: draining.clone(),
        started: Instant::now(),
        start_time: std::time::SystemTime::now(),
        logs: logs.clone(),
        shutdown: shutdown_tx,
        stop_accepting: stop_tx,
        bound,
    });
    server.stats.concurrency.set(concurrency as u64);
    server.set_state(ServerState::PreInitializing);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("unable to start the main thread runtime: {e}"))?;
    let local = tokio::task::LocalSet::new();
    let result: Result<(), String> = local.block_on(&rt, async {
        // Admin first, so operators can watch initialization.
        if let Some(admin) = &config.admin {
            let addr = crate::admin::start(server.clone(), admin)
                .await
                .map_err(|e| e.to_string())?;
            rvoy_log::info!(Component::Main, "admin address: {}", addr);
            if !options.admin_address_path.is_empty() {
                std::fs::write(&options.admin_address_path, addr.to_string()).map_err(|e| {
                    format!(
                        "Unable to open admin address path: {}: {e}",
                        options.admin_address_path
                    )
                })?;
            }
        }
        server.set_state(ServerState::Initializing);
        let init_started = Instant::now();
        let clusters = snapshot_handle.load().clusters.clone();
        clusters.initialize().await;
        server
            .stats
            .initialization_time_ms
            .record(init_started.elapsed().as_millis() as u64);
        if options.mode == Mode::InitOnly {
            return Ok(());
        }
        let control = WorkerControl {
            stop_accepting: stop_rx,
            terminate: terminate_rx,
        };
        let handles = workers::start(
            concurrency,
            snapshot_handle.clone(),
            sockets,
            control,
            store.clone(),
        )
        .map_err(|e| format!("unable to start workers: {e}"))?;
        rvoy_log::info!(Component::Main, "starting main dispatch loop");
        server.set_state(ServerState::Live);
        rvoy_log::info!(
            Component::Main,
            "all clusters initialized. initializing init manager"
        );
        rvoy_log::info!(
            Component::Config,
            "all dependencies initialized. starting workers"
        );

        spawn_signal_handlers(server.clone());
        spawn_periodic(server.clone(), config.stats_flush_interval);

        while !*shutdown_rx.borrow() {
            if shutdown_rx.changed().await.is_err() {
                break;
            }
        }
        rvoy_log::info!(Component::Main, "shutting down server instance");
        let _ = terminate_tx.send(true);
        for h in handles {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
        Ok(())
    });
    logs.shutdown();
    rvoy_log::info!(Component::Main, "exiting");
    result
}

fn spawn_signal_handlers(server: Arc<Server>) {
    use tokio::signal::unix::{SignalKind, signal};
    let s = server.clone();
    tokio::task::spawn_local(async move {
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            return;
        };
        term.recv().await;
        rvoy_log::warn!(Component::Main, "caught SIGTERM");
        s.request_shutdown();
    });
    let s = server.clone();
    tokio::task::spawn_local(async move {
        let Ok(mut int) = signal(SignalKind::interrupt()) else {
            return;
        };
        int.recv().await;
        rvoy_log::warn!(Component::Main, "caught SIGINT");
        s.request_shutdown();
    });
    tokio::task::spawn_local(async move {
        let Ok(mut usr1) = signal(SignalKind::user_defined1()) else {
            return;
        };
        loop {
            usr1.recv().await;
            rvoy_log::info!(Component::Main, "caught SIGUSR1. Reopening access logs.");
            server.logs.reopen_all();
            let _ = rvoy_log::reopen();
        }
    });
}

fn spawn_periodic(server: Arc<Server>, flush_interval: Duration) {
    tokio::task::spawn_local(async move {
        let mut tick = tokio::time::interval(flush_interval.max(Duration::from_millis(100)));
        loop {
            tick.tick().await;
            server.stats.uptime.set(server.started.elapsed().as_secs());
            server.store.merge_histograms();
        }
    });
}
