//! Resolving an extension (`name` + `typed_config`) the way Envoy's registry does.
//!
//! Envoy finds an extension's factory by the type URL of its `typed_config`
//! (the inner type of a `TypedStruct`), and by `name` when there is no config.
//! rvoy answers in three ways:
//! - the extension is one rvoy implements: its config is unpacked, checked
//!   against the support tables and returned;
//! - Envoy 1.40 has it but rvoy does not: `<path>: <name> is not supported by rvoy`;
//! - Envoy 1.40 does not have it either: Envoy's own error,
//!   `Didn't find a registered implementation for '<name>' with type URL: '<url>'`.
//!
//! `envoy-1.40-extensions.txt` is the list of extension names by category that
//! Envoy 1.40 prints at startup.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use rvoy_config_load::any::{Unpacked, effective_type_url, type_name_of, unpack};
use rvoy_config_load::{ConfigError, ErrorKind, FieldPath};

use crate::support::{Diagnostics, check};

/// The extension categories rvoy resolves (Envoy's registry category names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Category {
    NetworkFilter,
    HttpFilter,
    ListenerFilter,
    AccessLogger,
    AccessLogFilter,
    DownstreamTransportSocket,
    UpstreamTransportSocket,
    Cluster,
    StatsSink,
    Tracer,
    UpstreamOptions,
    RetryHostPredicate,
    RetryPriority,
    InternalRedirectPredicate,
    OriginalIpDetection,
    RequestId,
    Bootstrap,
    ResourceMonitor,
    DnsResolver,
    LoadBalancingPolicy,
    HealthChecker,
    Compressor,
    Formatter,
    Other,
}

impl Category {
    /// Every category rvoy knows by name.
    pub const ALL: [Category; 23] = [
        Category::NetworkFilter,
        Category::HttpFilter,
        Category::ListenerFilter,
        Category::AccessLogger,
        Category::AccessLogFilter,
        Category::DownstreamTransportSocket,
        Category::UpstreamTransportSocket,
        Category::Cluster,
        Category::StatsSink,
        Category::Tracer,
        Category::UpstreamOptions,
        Category::RetryHostPredicate,
        Category::RetryPriority,
        Category::InternalRedirectPredicate,
        Category::OriginalIpDetection,
        Category::RequestId,
        Category::Bootstrap,
        Category::ResourceMonitor,
        Category::DnsResolver,
        Category::LoadBalancingPolicy,
        Category::HealthChecker,
        Category::Compressor,
        Category::Formatter,
    ];

    /// Envoy's name for the category, as in its startup log.
    pub fn envoy_name(self) -> &'static str {
        match self {
            Category::NetworkFilter => "envoy.filters.network",
            Category::HttpFilter => "envoy.filters.http",
            Category::ListenerFilter => "envoy.filters.listener",
            Category::AccessLogger => "envoy.access_loggers",
            Category::AccessLogFilter => "envoy.access_loggers.extension_filters",
            Category::DownstreamTransportSocket => "envoy.transport_sockets.downstream",
            Category::UpstreamTransportSocket => "envoy.transport_sockets.upstream",
            Category::Cluster => "envoy.clusters",
            Category::StatsSink => "envoy.stats_sinks",
            Category::Tracer => "envoy.tracers",
            Category::UpstreamOptions => "envoy.upstream_options",
            Category::RetryHostPredicate => "envoy.retry_host_predicates",
            Category::RetryPriority => "envoy.retry_priorities",
            Category::InternalRedirectPredicate => "envoy.internal_redirect_predicates",
            Category::OriginalIpDetection => "envoy.http.original_ip_detection",
            Category::RequestId => "envoy.request_id",
            Category::Bootstrap => "envoy.bootstrap",
            Category::ResourceMonitor => "envoy.resource_monitors",
            Category::DnsResolver => "envoy.network.dns_resolver",
            Category::LoadBalancingPolicy => "envoy.load_balancing_policies",
            Category::HealthChecker => "envoy.health_checkers",
            Category::Compressor => "envoy.compression.compressor",
            Category::Formatter => "envoy.formatter",
            Category::Other => "",
        }
    }
}

static ENVOY_NAMES: LazyLock<HashMap<&'static str, HashSet<&'static str>>> = LazyLock::new(|| {
    let mut map: HashMap<&'static str, HashSet<&'static str>> = HashMap::new();
    for line in include_str!("envoy-1.40-extensions.txt").lines() {
        if let Some((category, names)) = line.split_once(": ") {
            map.entry(category)
                .or_default()
                .extend(names.split(", ").map(str::trim).filter(|n| !n.is_empty()));
        }
    }
    map
});

/// Whether Envoy 1.40 registers `name` in `category`.
pub fn envoy_knows(category: Category, name: &str) -> bool {
    ENVOY_NAMES
        .get(category.envoy_name())
        .is_some_and(|names| names.contains(name))
}

/// Config types whose Envoy extension name does not follow from the type name.
const NAMES_BY_TYPE: &[(&str, &str)] = &[
    (
        "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
        "envoy.access_loggers.stdout",
    ),
    (
        "envoy.extensions.access_loggers.stream.v3.StderrAccessLog",
        "envoy.access_loggers.stderr",
    ),
    (
        "envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig",
        "envoy.access_loggers.http_grpc",
    ),
    (
        "envoy.extensions.access_loggers.grpc.v3.TcpGrpcAccessLogConfig",
        "envoy.access_loggers.tcp_grpc",
    ),
    (
        "envoy.extensions.common.matching.v3.ExtensionWithMatcher",
        "envoy.filters.http.match_delegate",
    ),
    (
        "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "envoy.transport_sockets.tls",
    ),
    (
        "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        "envoy.transport_sockets.tls",
    ),
    (
        "envoy.extensions.transport_sockets.quic.v3.QuicUpstreamTransport",
        "envoy.transport_sockets.quic",
    ),
    (
        "envoy.extensions.transport_sockets.quic.v3.QuicDownstreamTransport",
        "envoy.transport_sockets.quic",
    ),
    (
        "envoy.extensions.transport_sockets.proxy_protocol.v3.ProxyProtocolUpstreamTransport",
        "envoy.transport_sockets.upstream_proxy_protocol",
    ),
    (
        "envoy.extensions.transport_sockets.internal_upstream.v3.InternalUpstreamTransport",
        "envoy.transport_sockets.internal_upstream",
    ),
    (
        "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer",
        "envoy.transport_sockets.raw_buffer",
    ),
];

/// Envoy's canonical name for the extension of `category` configured with
/// `type_name`, when it can be told: Envoy picks the implementation by config
/// type, so an error about an unimplemented extension names it by its type
/// rather than by whatever `name` the config gave it. Most names follow from
/// the type (`envoy.extensions.filters.http.lua.v3.Lua` is
/// `envoy.filters.http.lua`); the others are listed; the result is always a
/// name Envoy 1.40 registers in `category`.
pub fn canonical_name(category: Category, type_name: &str) -> Option<&'static str> {
    let names = ENVOY_NAMES.get(category.envoy_name())?;
    if let Some((_, name)) = NAMES_BY_TYPE.iter().find(|(t, _)| *t == type_name) {
        return names.get(name).copied();
    }
    let rest = type_name.strip_prefix("envoy.extensions.")?;
    let parts: Vec<&str> = rest.split('.').collect();
    let version = parts.iter().position(|p| {
        p.strip_prefix('v')
            .is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit()))
    })?;
    let candidate = format!("envoy.{}", parts[..version].join("."));
    names.get(candidate.as_str()).copied()
}

/// [`canonical_name`] in whichever category has it.
pub fn canonical_name_any(type_name: &str) -> Option<&'static str> {
    Category::ALL
        .iter()
        .find_map(|c| canonical_name(*c, type_name))
}

/// Whether Envoy 1.40 registers `name` in any category rvoy knows.
pub fn envoy_knows_any(name: &str) -> bool {
    Category::ALL.iter().any(|c| envoy_knows(*c, name))
}

/// One extension rvoy implements.
#[derive(Clone, Copy, Debug)]
pub struct Implemented {
    pub category: Category,
    /// Canonical Envoy name.
    pub name: &'static str,
    /// Older names Envoy still accepts for it.
    pub aliases: &'static [&'static str],
    /// Full proto name of its config message.
    pub config_type: &'static str,
    /// Whether Envoy accepts it without a `typed_config` (only where Envoy
    /// still looks extensions up by name, see `looks_up_by_name`).
    pub config_optional: bool,
}

/// A resolved extension: which one, and its (checked) config.
#[derive(Debug)]
pub struct Resolved {
    pub extension: &'static Implemented,
    /// `None` when the config was omitted and the extension allows that.
    pub config: Option<Unpacked>,
}

impl Resolved {
    /// The config as its prost type (the default message when omitted).
    pub fn config_as<T: prost::Message + Default>(
        &self,
        path: &FieldPath,
    ) -> Result<T, ConfigError> {
        match &self.config {
            Some(u) => rvoy_config_load::any::to_prost(u, &path.field("typed_config")),
            None => Ok(T::default()),
        }
    }
}

/// Finds the implementation of an extension configured at `path` with `name` and
/// an optional `typed_config`, checks its config against the support tables and
/// reports unknown fields inside a `TypedStruct` per `unknown_fields_fatal`.
pub fn resolve(
    category: Category,
    name: &str,
    typed_config: Option<&prost_types::Any>,
    path: &FieldPath,
    diags: &mut Diagnostics,
) -> Result<Resolved, ConfigError> {
    resolve_at(
        category,
        name,
        typed_config,
        path,
        &path.field("typed_config"),
        diags,
    )
}

/// [`resolve`] for a config that is not in a `typed_config` field beside the
/// name, such as a value of `typed_extension_protocol_options` (keyed by the
/// name): `config_path` is where the config itself stands.
pub fn resolve_at(
    category: Category,
    name: &str,
    typed_config: Option<&prost_types::Any>,
    path: &FieldPath,
    config_path: &FieldPath,
    diags: &mut Diagnostics,
) -> Result<Resolved, ConfigError> {
    let registry = crate::implemented_extensions();
    let config_path = config_path.clone();
    let type_url = typed_config.map(effective_type_url).unwrap_or_default();
    let type_name = type_name_of(&type_url);
    if type_name.is_empty() && !looks_up_by_name(category) {
        // Envoy 1.40 finds extensions by the type of their config only.
        return Err(ConfigError::new(
            ErrorKind::UnknownExtension,
            path.clone(),
            format!("Didn't find a registered implementation for '{name}' with type URL: ''"),
        ));
    }
    let found = if type_name.is_empty() {
        registry
            .iter()
            .find(|e| e.category == category && (e.name == name || e.aliases.contains(&name)))
    } else {
        registry
            .iter()
            .find(|e| e.category == category && e.config_type == type_name)
    };
    let Some(extension) = found else {
        return Err(unimplemented_error(
            category,
            name,
            &type_url,
            typed_config.is_some(),
            path,
        ));
    };
    let Some(any) = typed_config.filter(|a| !a.type_url.is_empty()) else {
        if extension.config_optional {
            return Ok(Resolved {
                extension,
                config: None,
            });
        }
        return Err(ConfigError::new(
            ErrorKind::Semantic,
            path.clone(),
            format!("{name}: a typed_config is required"),
        ));
    };
    let unpacked = unpack(any, &config_path)?
        .ok_or_else(|| unimplemented_error(category, name, &type_url, true, path))?;
    for e in &unpacked.unknown_fields {
        diags.error(e.clone());
    }
    check(&unpacked.message, &config_path, diags);
    Ok(Resolved {
        extension,
        config: Some(unpacked),
    })
}

/// Unpacks a config `Any` (a per-route filter config...) and checks it
/// against the support tables; `Ok(None)` when its type is not in the pool.
pub fn unpack_checked(
    any: &prost_types::Any,
    path: &FieldPath,
    diags: &mut Diagnostics,
) -> Result<Option<Unpacked>, ConfigError> {
    let Some(unpacked) = unpack(any, path)? else {
        return Ok(None);
    };
    for e in &unpacked.unknown_fields {
        diags.error(e.clone());
    }
    check(&unpacked.message, path, diags);
    Ok(Some(unpacked))
}

/// Whether Envoy 1.40 still finds an extension of `category` by its name when
/// it has no config: custom cluster types (by `cluster_type.name`) and the
/// request ID extension of an HTTP connection manager (the UUID one when
/// `typed_config` is absent). Every other extension needs a `typed_config`.
fn looks_up_by_name(category: Category) -> bool {
    matches!(category, Category::Cluster | Category::RequestId)
}

/// The error for an extension rvoy does not implement: "not supported" when
/// Envoy 1.40 has it, Envoy's own error otherwise.
pub fn unimplemented_error(
    category: Category,
    name: &str,
    type_url: &str,
    has_config: bool,
    path: &FieldPath,
) -> ConfigError {
    let pool = &rvoy_api::descriptor_pool();
    let type_name = type_name_of(type_url);
    let envoy_has_type = !type_name.is_empty()
        && type_name.starts_with("envoy.")
        && pool.get_message_by_name(type_name).is_some();
    let envoy_has_name = envoy_knows(category, name);
    // A config type Envoy has a proto for but no extension registered under
    // (platform-specific or contrib builds): Envoy's own error.
    let envoy_lacks_extension = envoy_has_type
        && !envoy_has_name
        && canonical_name(category, type_name).is_none()
        && category != Category::Other
        && is_regular_extension_type(category, type_name);
    if !envoy_lacks_extension && (envoy_has_type || (envoy_has_name && !has_config)) {
        let what = match canonical_name(category, type_name) {
            Some(canonical) => canonical.to_owned(),
            None if envoy_has_name || type_name.is_empty() => name.to_owned(),
            None => format!("{name} ({type_name})"),
        };
        return ConfigError::not_supported(path.clone(), what);
    }
    ConfigError::new(
        ErrorKind::UnknownExtension,
        path.clone(),
        format!(
            "Didn't find a registered implementation for '{name}' with type URL: '{type_name}'"
        ),
    )
}

/// Whether `type_name` names its extension the usual way
/// (`envoy.extensions.<category path>.<name>.vN.Type` for
/// `envoy.<category path>.<name>`), so that a missing canonical name means
/// Envoy registers no such extension in `category`.
fn is_regular_extension_type(category: Category, type_name: &str) -> bool {
    let prefix = category.envoy_name().trim_start_matches("envoy.");
    type_name
        .strip_prefix("envoy.extensions.")
        .is_some_and(|rest| !prefix.is_empty() && rest.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_extension_envoy_does_not_build_gets_envoys_error() {
        let e = unimplemented_error(
            Category::DnsResolver,
            "envoy.network.dns_resolver.apple",
            "type.googleapis.com/envoy.extensions.network.dns_resolver.apple.v3.AppleDnsResolverConfig",
            true,
            &FieldPath::root(),
        );
        assert_eq!(e.kind, ErrorKind::UnknownExtension, "{e}");
        let e = unimplemented_error(
            Category::HttpFilter,
            "envoy.filters.http.lua",
            "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
            true,
            &FieldPath::root(),
        );
        assert_eq!(e.kind, ErrorKind::NotSupported, "{e}");
    }

    #[test]
    fn canonical_names_from_types() {
        assert_eq!(
            canonical_name(
                Category::NetworkFilter,
                "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
            ),
            Some("envoy.filters.network.tcp_proxy")
        );
        assert_eq!(
            canonical_name(
                Category::UpstreamTransportSocket,
                "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
            ),
            Some("envoy.transport_sockets.tls")
        );
        assert_eq!(
            canonical_name(
                Category::Compressor,
                "envoy.extensions.compression.gzip.compressor.v3.Gzip"
            ),
            Some("envoy.compression.gzip.compressor")
        );
        assert_eq!(
            canonical_name(
                Category::HttpFilter,
                "envoy.extensions.filters.http.nope.v3.X"
            ),
            None
        );
    }

    #[test]
    fn knows_envoy_names() {
        assert!(envoy_knows(
            Category::HttpFilter,
            "envoy.filters.http.jwt_authn"
        ));
        assert!(envoy_knows(Category::NetworkFilter, "envoy.tcp_proxy"));
        assert!(!envoy_knows(Category::HttpFilter, "istio.stats"));
    }

    #[test]
    fn unknown_and_unsupported() {
        let path = FieldPath::parse("http_filters[1]");
        let e = unimplemented_error(
            Category::HttpFilter,
            "envoy.filters.http.jwt_authn",
            "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            true,
            &path,
        );
        assert_eq!(
            e.to_string(),
            "http_filters[1]: envoy.filters.http.jwt_authn is not supported by rvoy"
        );
        // Named by its type whatever the config calls it.
        let e = unimplemented_error(
            Category::HttpFilter,
            "my-lua",
            "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
            true,
            &path,
        );
        assert_eq!(
            e.to_string(),
            "http_filters[1]: envoy.filters.http.lua is not supported by rvoy"
        );
        let e = unimplemented_error(
            Category::HttpFilter,
            "x",
            "type.googleapis.com/io.istio.Foo",
            true,
            &path,
        );
        assert_eq!(e.kind, ErrorKind::UnknownExtension);
    }
}
