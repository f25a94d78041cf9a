//! The server: startup order, the main thread, shutdown.
//!
//! Envoy's order is kept: parse the command line, start logging, load and
//! validate the bootstrap (the whole config, before any socket), then in
//! `serve` mode build the snapshot, bind the listeners, start the admin
//! server, warm the clusters (first DNS answers), start the workers, and run
//! the main thread (admin, DNS refresh, stats flush, signals) until told to
//! stop. `validate` stops after the config checks; `init_only` after binding.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rvoy_config_load::bootstrap::{LoadOptions, load_bootstrap};
use rvoy_log::Component;
use rvoy_model::BuildOptions;
use tokio::sync::watch;

use crate::access_log_files::AccessLogFiles;
use crate::cli::{self, Mode, Options};
use crate::process_stats::{FilesystemStats, ProcessStats, RuntimeSummary};
use crate::snapshot::{self, ListenerRuntime, Snapshot};
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
    /// The bootstrap as loaded; `/config_dump` renders it through the
    /// descriptor pool on demand.
    pub bootstrap_pb: Arc<rvoy_api::envoy::config::bootstrap::v3::Bootstrap>,
    /// When the config was loaded (`last_updated` in `/config_dump`).
    pub loaded_at: std::time::SystemTime,
    pub state: AtomicU8,
    /// Set by admin `/healthcheck/fail`; shared with the health check filters.
    pub health_failed: Arc<AtomicBool>,
    pub draining: Arc<AtomicBool>,
    pub started: Instant,
    pub start_time: std::time::SystemTime,
    pub logs: Arc<AccessLogFiles>,
    pub shutdown: watch::Sender<bool>,
    pub stop_accepting: watch::Sender<bool>,
    /// Listener name and bound address, for `/listeners`.
    pub bound: Vec<(String, Option<SocketAddr>, String)>,
    /// TLS contexts and file-based SDS secrets (for `/certs`).
    pub secrets: Arc<rvoy_tls::SecretManager>,
    /// Process-wide stats (`server.*`, `cluster_manager.*`...).
    pub stats: ProcessStats,
    /// The admin listener's stats and access logs.
    pub admin: Arc<crate::admin::AdminRuntime>,
    /// Bootstrap `stats_flush_on_admin`.
    pub flush_on_admin: bool,
    /// Stats sinks, flushed on every stats flush.
    pub sinks: Vec<crate::stats_sink::StatsdSink>,
    /// `/stats/recentlookups/enable|disable`.
    pub recent_lookups_enabled: AtomicBool,
    recent_lookups_base: AtomicU64,
    /// The admin runtime layer's overrides (`/runtime_modify`).
    runtime_overrides: Mutex<BTreeMap<String, String>>,
}

impl Server {
    pub fn state(&self) -> ServerState {
        ServerState::from_u8(self.state.load(Ordering::Relaxed))
    }

    pub fn set_state(&self, s: ServerState) {
        self.state.store(s as u8, Ordering::Relaxed);
        self.stats.server.state.set(s as u64);
        self.stats
            .server
            .live
            .set(u64::from(s == ServerState::Live));
    }

    /// A stats flush (Envoy's `flushStats`): refreshes the gauges Envoy
    /// refreshes, merges histograms (what `/stats` shows until the next
    /// flush) and sends the deltas to the sinks.
    pub fn flush_stats(&self) {
        self.refresh_server_gauges();
        self.materialize_stats();
        if self.sinks.is_empty() {
            // Nothing reads the snapshot or the counter deltas: a snapshot
            // of a large config's 100,000 stats cost 36 ms every 5 s.
            self.store.merge_histograms();
            return;
        }
        let flushed = self.store.flush();
        for sink in &self.sinks {
            sink.flush(&flushed);
        }
    }

    /// Creates the stat families Envoy creates on first use (codec stats)
    /// that are due; called before stats are shown or flushed.
    pub fn materialize_stats(&self) {
        self.stats
            .codecs
            .materialize(&self.store, &self.snapshot.load());
    }

    /// Sets the `server.*` gauges Envoy refreshes on every flush.
    pub fn refresh_server_gauges(&self) {
        let s = &self.stats.server;
        s.uptime.set(self.started.elapsed().as_secs());
        let m = crate::process_stats::MemoryFigures::read();
        s.memory_allocated.set(m.allocated);
        s.memory_heap_size.set(m.heap_size);
        s.memory_physical_size.set(m.physical);
        let snap = self.snapshot.load();
        let connections: u64 = snap
            .listeners
            .iter()
            .map(|l| self.store.gauge_value(l.stats.downstream_cx_active))
            .sum();
        s.total_connections.set(connections);
        s.stats_recent_lookups.set(self.recent_lookups_total());
    }

    /// Stat lookups since the last `/stats/recentlookups/clear`.
    pub fn recent_lookups_total(&self) -> u64 {
        (self.store.len() as u64).saturating_sub(self.recent_lookups_base.load(Ordering::Relaxed))
    }

    pub fn recent_lookups_clear(&self) {
        self.recent_lookups_base
            .store(self.store.len() as u64, Ordering::Relaxed);
    }

    /// The runtime layers in order with their flattened values as Envoy
    /// keeps them (raw strings).
    pub fn runtime_layers(&self) -> Vec<(String, BTreeMap<String, String>)> {
        use rvoy_api::envoy::config::bootstrap::v3::runtime_layer::LayerSpecifier;
        let Some(lr) = &self.bootstrap_pb.layered_runtime else {
            return Vec::new();
        };
        lr.layers
            .iter()
            .map(|layer| {
                let values = match &layer.layer_specifier {
                    Some(LayerSpecifier::StaticLayer(st)) => {
                        let mut out = BTreeMap::new();
                        flatten_runtime("", st, &mut out);
                        out
                    }
                    Some(LayerSpecifier::AdminLayer(_)) => self
                        .runtime_overrides
                        .lock()
                        .map(|o| o.clone())
                        .unwrap_or_default(),
                    _ => BTreeMap::new(),
                };
                (layer.name.clone(), values)
            })
            .collect()
    }

    /// Applies `/runtime_modify` overrides (an empty value removes one).
    pub fn runtime_modify(&self, pairs: Vec<(String, String)>) -> Result<(), String> {
        use rvoy_api::envoy::config::bootstrap::v3::runtime_layer::LayerSpecifier;
        let has_admin_layer = self
            .bootstrap_pb
            .layered_runtime
            .as_ref()
            .is_some_and(|lr| {
                lr.layers
                    .iter()
                    .any(|l| matches!(l.layer_specifier, Some(LayerSpecifier::AdminLayer(_))))
            });
        if !has_admin_layer {
            return Err("No admin layer specified".to_owned());
        }
        let active = {
            let mut o = self
                .runtime_overrides
                .lock()
                .map_err(|_| "runtime overrides unavailable".to_owned())?;
            for (k, v) in pairs {
                if v.is_empty() {
                    o.remove(&k);
                } else {
                    o.insert(k, v);
                }
            }
            !o.is_empty()
        };
        let rt = &self.stats.runtime;
        rt.load_success.inc();
        rt.override_dir_not_exists.inc();
        rt.admin_overrides_active.set(u64::from(active));
        rt.num_keys
            .set(runtime_key_count(&self.runtime_layers()) as u64);
        Ok(())
    }

    /// Starts draining the listeners (all, or the INBOUND ones): their HTTP
    /// responses get `connection: close`. Returns the listeners drained.
    pub fn drain_listeners(&self, inbound_only: bool) -> Vec<Arc<ListenerRuntime>> {
        let inbound: Vec<bool> = self
            .bootstrap_pb
            .static_resources
            .as_ref()
            .map(|sr| {
                sr.listeners
                    .iter()
                    .map(|l| {
                        l.traffic_direction
                            == rvoy_api::envoy::config::core::v3::TrafficDirection::Inbound as i32
                    })
                    .collect()
            })
            .unwrap_or_default();
        let snap = self.snapshot.load();
        snap.listeners
            .iter()
            .enumerate()
            .filter(|(i, _)| !inbound_only || inbound.get(*i).copied().unwrap_or(false))
            .map(|(_, l)| {
                l.draining.start(
                    self.options.drain_time,
                    self.options.drain_strategy == cli::DrainStrategy::Gradual,
                );
                l.clone()
            })
            .collect()
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

/// How often file-based SDS secrets are checked for changes.
const SDS_POLL_INTERVAL: Duration = Duration::from_millis(500);

fn config_label(options: &Options) -> &str {
    &options.config_path
}

/// Loads and lowers the bootstrap.
fn load(
    options: &Options,
) -> Result<
    (
        rvoy_config_load::bootstrap::LoadedBootstrap,
        rvoy_model::Config,
    ),
    String,
> {
    let load_options = LoadOptions {
        config_path: (!options.config_path.is_empty()).then(|| options.config_path.clone()),
        config_yaml: (!options.config_yaml.is_empty()).then(|| options.config_yaml.clone()),
        allow_unknown_static_fields: options.allow_unknown_static_fields,
    };
    let loaded = load_bootstrap(&load_options).map_err(|e| e.to_string())?;
    let build_options = BuildOptions {
        service_node: (!options.service_node.is_empty()).then(|| options.service_node.clone()),
        service_cluster: (!options.service_cluster.is_empty())
            .then(|| options.service_cluster.clone()),
        service_zone: (!options.service_zone.is_empty()).then(|| options.service_zone.clone()),
    };
    let config = rvoy_model::build(
        &loaded.bootstrap,
        &loaded.message,
        &loaded.sources,
        &build_options,
    )
    .map_err(|e| e.to_string())?;
    Ok((loaded, config))
}

/// [`load`], with the typed configs the loader's checks and the model open
/// decoded once for all of them; also returns those decodes, for the caller
/// to free.
#[allow(clippy::type_complexity)]
fn load_sharing_decodes(
    options: &Options,
) -> (
    Result<
        (
            rvoy_config_load::bootstrap::LoadedBootstrap,
            rvoy_model::Config,
        ),
        String,
    >,
    impl Send + use<>,
) {
    let shared = rvoy_config_load::any::SharedDecodes::begin();
    let loaded = load(options);
    (loaded, shared.end())
}

/// Limits the descriptor pool the load decodes to the types the config
/// names, and for a text config to the fields it can set (see
/// [`rvoy_api::narrow_descriptor_pool`]): start-up and validation skip most
/// of the ~20 ms the whole snapshot takes to decode.
///
/// Fields are not pruned for a binary bootstrap (it names no field) nor when
/// unknown fields are allowed: their warnings suggest field names, which
/// must come from whole descriptors.
fn narrow_descriptor_pool(options: &Options) {
    let file = (!options.config_path.is_empty())
        .then(|| std::fs::read(&options.config_path).ok())
        .flatten();
    let texts: Vec<&[u8]> = file
        .as_deref()
        .into_iter()
        .chain([options.config_yaml.as_bytes()])
        .collect();
    let binary = rvoy_config_load::bootstrap::is_binary(&options.config_path);
    let text = !binary && !options.allow_unknown_static_fields;
    rvoy_api::narrow_descriptor_pool(&texts, text);
}

/// Logs what the loaded config accepts without effect, and its size.
fn report_loaded(
    loaded: &rvoy_config_load::bootstrap::LoadedBootstrap,
    config: &rvoy_model::Config,
) {
    for w in &loaded.warnings {
        rvoy_log::warn!(Component::Config, "{}", w);
    }
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
}

fn run(options: Options) -> ExitCode {
    rvoy_log::info!(
        Component::Main,
        "initializing epoch 0 (base id=0, hot restart version=disabled)"
    );
    rvoy_log::info!(Component::Main, "rvoy version: {}", cli::version_string());
    narrow_descriptor_pool(&options);
    let (mut loaded, mut decoded) = load_sharing_decodes(&options);
    if rvoy_api::widen_descriptor_pool() {
        // What was built for the narrowed pool goes with it.
        rvoy_config_load::release_caches();
        if loaded.is_err() {
            // Perhaps a type the config does not name by a type URL was
            // missing: the verdict is the whole snapshot's.
            (loaded, decoded) = load_sharing_decodes(&options);
        }
    }
    let (loaded, config) = match loaded {
        Ok(l) => l,
        Err(e) => {
            rvoy_log::critical!(
                Component::Main,
                "error initializing configuration '{}': {}",
                config_label(&options),
                e
            );
            return ExitCode::FAILURE;
        }
    };
    report_loaded(&loaded, &config);
    if options.mode == Mode::Validate {
        println!("configuration '{}' OK", config_label(&options));
        // The process ends here: taking the config trees apart allocation by
        // allocation would only delay the exit; the system reclaims the
        // memory at once.
        std::mem::forget((loaded, config, decoded));
        return ExitCode::SUCCESS;
    }
    match serve(options, loaded, config, decoded) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            rvoy_log::critical!(Component::Main, "{}", e);
            ExitCode::FAILURE
        }
    }
}

/// `decoded`: what the load decoded on the side, freed with the dynamic
/// message.
fn serve(
    options: Options,
    loaded: rvoy_config_load::bootstrap::LoadedBootstrap,
    config: rvoy_model::Config,
    decoded: impl Send + 'static,
) -> Result<(), String> {
    // Only the typed bootstrap is kept: the dynamic message and the source
    // map hold the descriptor pool, which is released once start-up is done.
    let rvoy_config_load::bootstrap::LoadedBootstrap {
        bootstrap,
        message,
        sources,
        warnings,
    } = loaded;
    // Start-up does not wait for the trees (tens of MiB on a big config) to
    // be taken apart: see `free_in_background`.
    let config_freed = crate::memory::free_in_background((message, sources, warnings, decoded));
    let concurrency = options.concurrency.max(1) as usize;
    let mut store_options = crate::stats_config::store_options(&bootstrap, &options)?;
    let tag_producer = std::mem::replace(
        &mut store_options.tag_producer,
        rvoy_stats::TagProducer::none(),
    );
    let store = rvoy_stats::Store::with_options(store_options);
    let _main_stats = store.register_thread();
    // Envoy creates `filesystem.*` before it installs the bootstrap's tag
    // producer: those stats have no tags.
    let filesystem = FilesystemStats::new(&store.scope("filesystem."));
    store.set_tag_producer(tag_producer);
    let logs = AccessLogFiles::start(options.file_flush_interval, options.file_flush_min_size_kb);
    let machine = snapshot::machine_address(options.local_address_ip_version == cli::IpVersion::V6);
    let draining = Arc::new(AtomicBool::new(false));
    let health_failed = Arc::new(AtomicBool::new(false));
    let config = Arc::new(config);
    let secrets = rvoy_tls::SecretManager::new();
    secrets.set_stats(store.scope(""));
    let snap = snapshot::build(
        1,
        config.clone(),
        &store,
        &logs,
        concurrency,
        machine,
        &draining,
        &health_failed,
        &secrets,
    )
    .map_err(|e| e.to_string())?;
    if secrets.has_files() {
        secrets
            .watch(SDS_POLL_INTERVAL)
            .map_err(|e| format!("unable to watch SDS files: {e}"))?;
    }
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
    let process_stats = ProcessStats::new(&store, concurrency, filesystem);
    let runtime_summary = runtime_summary(&bootstrap);
    process_stats.on_config(&config, &runtime_summary);
    process_stats.server.version.set(
        bootstrap
            .stats_server_version_override
            .unwrap_or_else(|| crate::process_stats::server_version(cli::BUILD_SHA)),
    );
    let admin_logs = match &config.admin {
        Some(a) => snapshot::loggers(&a.access_logs, &logs).map_err(|e| e.to_string())?,
        None => Vec::new(),
    };
    let admin_runtime = Arc::new(crate::admin::AdminRuntime::new(&store, admin_logs));
    let sinks = config
        .stats_sinks
        .iter()
        .map(crate::stats_sink::StatsdSink::new)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let server = Arc::new(Server {
        stats: process_stats,
        admin: admin_runtime,
        flush_on_admin: matches!(
            bootstrap.stats_flush,
            Some(
                rvoy_api::envoy::config::bootstrap::v3::bootstrap::StatsFlush::StatsFlushOnAdmin(
                    true
                )
            )
        ),
        sinks,
        recent_lookups_enabled: AtomicBool::new(false),
        recent_lookups_base: AtomicU64::new(0),
        runtime_overrides: Mutex::new(BTreeMap::new()),
        bootstrap_pb: Arc::new(bootstrap.clone()),
        loaded_at: std::time::SystemTime::now(),
        options: options.clone(),
        store: store.clone(),
        snapshot: snapshot_handle.clone(),
        state: AtomicU8::new(ServerState::PreInitializing as u8),
        health_failed,
        draining: draining.clone(),
        started: Instant::now(),
        start_time: std::time::SystemTime::now(),
        logs: logs.clone(),
        shutdown: shutdown_tx,
        stop_accepting: stop_tx,
        bound,
        secrets: secrets.clone(),
    });
    server.set_state(ServerState::PreInitializing);
    server.refresh_server_gauges();

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
            .server
            .initialization_time_ms
            .record(init_started.elapsed().as_millis() as u64);
        if options.mode == Mode::InitOnly {
            return Ok(());
        }
        // Before the first connection is accepted: a client that was served
        // may rely on SIGTERM stopping the server cleanly.
        spawn_signal_handlers(server.clone());
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
        server
            .stats
            .on_workers_started(server.bound.len(), concurrency);
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

        spawn_descriptor_pool_release();
        crate::memory::collect_after(config_freed);
        if !server.flush_on_admin {
            // With `stats_flush_on_admin`, Envoy creates no flush timer.
            spawn_periodic(server.clone(), config.stats_flush_interval);
        }

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

/// Installs the handlers at once (not when their tasks first run): from here
/// on a SIGTERM is a clean shutdown, never the default action's kill.
fn spawn_signal_handlers(server: Arc<Server>) {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    let usr1 = signal(SignalKind::user_defined1());
    let s = server.clone();
    tokio::task::spawn_local(async move {
        let Ok(mut term) = term else {
            return;
        };
        term.recv().await;
        rvoy_log::warn!(Component::Main, "caught SIGTERM");
        s.request_shutdown();
    });
    let s = server.clone();
    tokio::task::spawn_local(async move {
        let Ok(mut int) = int else {
            return;
        };
        int.recv().await;
        rvoy_log::warn!(Component::Main, "caught SIGINT");
        s.request_shutdown();
    });
    tokio::task::spawn_local(async move {
        let Ok(mut usr1) = usr1 else {
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

/// The stats flush timer: every `stats_flush_interval`, first one interval
/// after startup (as Envoy's).
fn spawn_periodic(server: Arc<Server>, flush_interval: Duration) {
    tokio::task::spawn_local(async move {
        let period = flush_interval.max(Duration::from_millis(1));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            server.flush_stats();
        }
    });
}

/// Flattens a static runtime layer as Envoy does: nested objects become
/// dotted keys; values are kept as raw strings.
fn flatten_runtime(prefix: &str, s: &prost_types::Struct, out: &mut BTreeMap<String, String>) {
    use prost_types::value::Kind;
    for (k, v) in &s.fields {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match &v.kind {
            Some(Kind::StructValue(inner)) if !inner.fields.contains_key("numerator") => {
                flatten_runtime(&key, inner, out)
            }
            Some(Kind::StringValue(text)) => {
                out.insert(key, text.clone());
            }
            Some(Kind::NumberValue(n)) => {
                out.insert(key, format!("{n}"));
            }
            Some(Kind::BoolValue(b)) => {
                out.insert(key, b.to_string());
            }
            Some(other) => {
                let value = rvoy_config_load::any::value_to_json(&prost_types::Value {
                    kind: Some(other.clone()),
                });
                out.insert(key, value.to_string());
            }
            None => {}
        }
    }
}

fn runtime_key_count(layers: &[(String, BTreeMap<String, String>)]) -> usize {
    let mut keys = std::collections::HashSet::new();
    for (_, values) in layers {
        keys.extend(values.keys());
    }
    keys.len()
}

fn runtime_summary(
    bootstrap: &rvoy_api::envoy::config::bootstrap::v3::Bootstrap,
) -> RuntimeSummary {
    use rvoy_api::envoy::config::bootstrap::v3::runtime_layer::LayerSpecifier;
    let Some(lr) = &bootstrap.layered_runtime else {
        return RuntimeSummary::default();
    };
    let layers: Vec<(String, BTreeMap<String, String>)> = lr
        .layers
        .iter()
        .map(|l| {
            let mut values = BTreeMap::new();
            if let Some(LayerSpecifier::StaticLayer(st)) = &l.layer_specifier {
                flatten_runtime("", st, &mut values);
            }
            (l.name.clone(), values)
        })
        .collect();
    RuntimeSummary {
        layers: layers.len(),
        keys: runtime_key_count(&layers),
    }
}

/// Lets the descriptor pool (~17 MiB, only needed to read, check or dump
/// config) go as soon as start-up is done, then whenever it has been unused
/// for a while after a later use (`/config_dump`, an SDS file rotation).
fn spawn_descriptor_pool_release() {
    const IDLE: Duration = Duration::from_secs(5);
    let release = |idle| {
        if rvoy_api::release_idle_descriptor_pool(idle) {
            rvoy_config_load::release_caches();
            rvoy_log::debug!(Component::Config, "released the descriptor pool");
        }
    };
    release(Duration::ZERO);
    crate::memory::return_freed_memory(true);
    crate::memory::spawn_purge_tick();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(IDLE);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            release(IDLE);
        }
    });
}
