//! Envoy's logger ids ("components") and their process-global levels.
//!
//! The list and its order are exactly Envoy 1.40's `ALL_LOGGER_IDS` (what `POST /logging`
//! prints). Each component's level lives in one `AtomicU8`, so checking whether a line is
//! enabled is a single relaxed load.

use std::sync::atomic::{AtomicU8, Ordering};

use crate::level::Level;

macro_rules! components {
    ($($variant:ident => $name:literal,)+) => {
        /// One of Envoy's named loggers. `Component::ALL` is in Envoy's order.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr(u8)]
        pub enum Component {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant,
            )+
        }

        impl Component {
            /// Every component, in Envoy's order.
            pub const ALL: &'static [Component] = &[$(Component::$variant,)+];

            /// Envoy's name for the component (`upstream`, `http2`, ...).
            pub const fn name(self) -> &'static str {
                match self {
                    $(Component::$variant => $name,)+
                }
            }
        }
    };
}

components! {
    A2a => "a2a",
    Admin => "admin",
    AiProtocolManager => "ai_protocol_manager",
    AlternateProtocolsCache => "alternate_protocols_cache",
    Aws => "aws",
    Assert => "assert",
    Backtrace => "backtrace",
    BasicAuth => "basic_auth",
    CacheFilter => "cache_filter",
    Client => "client",
    Config => "config",
    Connection => "connection",
    ConnHandler => "conn_handler",
    Compression => "compression",
    CredentialInjector => "credential_injector",
    Decompression => "decompression",
    Dns => "dns",
    Dubbo => "dubbo",
    EnvoyBug => "envoy_bug",
    ExtAuthz => "ext_authz",
    ExtProc => "ext_proc",
    Rocketmq => "rocketmq",
    File => "file",
    Filter => "filter",
    ForwardProxy => "forward_proxy",
    Geolocation => "geolocation",
    Grpc => "grpc",
    HappyEyeballs => "happy_eyeballs",
    Hc => "hc",
    HealthChecker => "health_checker",
    Http => "http",
    Http2 => "http2",
    Hystrix => "hystrix",
    Init => "init",
    Io => "io",
    Jwt => "jwt",
    JsonRpc => "json_rpc",
    Kafka => "kafka",
    KeyValueStore => "key_value_store",
    Lua => "lua",
    LocalRateLimit => "local_rate_limit",
    Main => "main",
    Matcher => "matcher",
    Mcp => "mcp",
    Misc => "misc",
    Mongo => "mongo",
    MultiConnection => "multi_connection",
    Notification => "notification",
    Oauth2 => "oauth2",
    Quic => "quic",
    QuicStream => "quic_stream",
    Pool => "pool",
    RateLimitQuota => "rate_limit_quota",
    Rbac => "rbac",
    Rds => "rds",
    Redis => "redis",
    Router => "router",
    Runtime => "runtime",
    Stats => "stats",
    Secret => "secret",
    Sse => "sse",
    Tap => "tap",
    Testing => "testing",
    Thrift => "thrift",
    Tracing => "tracing",
    Upstream => "upstream",
    Udp => "udp",
    Wasm => "wasm",
    Websocket => "websocket",
    Golang => "golang",
    StatsSinks => "stats_sinks",
    DynamicModules => "dynamic_modules",
    IpTagging => "ip_tagging",
}

/// The number of components.
pub const COUNT: usize = Component::ALL.len();

impl Component {
    /// Looks a component up by Envoy's name (exact, case-sensitive).
    pub fn from_name(name: &str) -> Option<Component> {
        Component::ALL.iter().copied().find(|c| c.name() == name)
    }
}

impl std::fmt::Display for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[allow(clippy::declare_interior_mutable_const)]
const INFO: AtomicU8 = AtomicU8::new(Level::Info as u8);

/// Envoy's default level before the command line is applied is `info`.
static LEVELS: [AtomicU8; COUNT] = [INFO; COUNT];

/// Called after levels change (the `tracing` bridge rebuilds its interest cache there).
static ON_CHANGE: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
pub(crate) fn set_on_change(hook: fn()) {
    let _ = ON_CHANGE.set(hook);
}

fn changed() {
    if let Some(hook) = ON_CHANGE.get() {
        hook();
    }
}

/// The current level of `component` (one relaxed atomic load).
#[inline]
pub fn level(component: Component) -> Level {
    Level::from_u8(LEVELS[component as usize].load(Ordering::Relaxed))
}

/// Whether a line at `level` for `component` would be written. One relaxed atomic load.
#[inline]
pub fn enabled(component: Component, level: Level) -> bool {
    (level as u8) >= LEVELS[component as usize].load(Ordering::Relaxed) && level != Level::Off
}

/// Sets one component's level.
pub fn set_level(component: Component, level: Level) {
    LEVELS[component as usize].store(level as u8, Ordering::Relaxed);
    changed();
}

/// Sets every component's level (`-l`, admin `/logging?level=`).
pub fn set_all_levels(level: Level) {
    for l in &LEVELS {
        l.store(level as u8, Ordering::Relaxed);
    }
    changed();
}

/// Sets several components' levels at once (a single change notification).
pub fn set_levels(levels: &[(Component, Level)]) {
    for &(c, l) in levels {
        LEVELS[c as usize].store(l as u8, Ordering::Relaxed);
    }
    changed();
}

/// Every component with its current level, in Envoy's order.
pub fn levels() -> impl Iterator<Item = (Component, Level)> {
    Component::ALL.iter().map(|&c| (c, level(c)))
}

/// The most verbose level any component is at (what a filter in front of us may use).
pub fn most_verbose_level() -> Level {
    levels().map(|(_, l)| l).min().unwrap_or(Level::Off)
}

/// Exactly Envoy's `POST /logging` listing (without fine-grain logging):
/// `active loggers:` then `  name: level` per logger, then an empty line.
pub fn render_active_loggers() -> String {
    let mut out = String::with_capacity(32 + COUNT * 24);
    out.push_str("active loggers:\n");
    for (c, l) in levels() {
        out.push_str("  ");
        out.push_str(c.name());
        out.push_str(": ");
        out.push_str(l.as_str());
        out.push('\n');
    }
    out.push('\n');
    out
}
