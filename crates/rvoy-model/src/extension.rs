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
    /// Whether Envoy accepts it without a `typed_config`.
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
    let registry = crate::implemented_extensions();
    let config_path = path.field("typed_config");
    let type_url = typed_config.map(effective_type_url).unwrap_or_default();
    let type_name = type_name_of(&type_url);
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

/// The error for an extension rvoy does not implement: "not supported" when
/// Envoy 1.40 has it, Envoy's own error otherwise.
pub fn unimplemented_error(
    category: Category,
    name: &str,
    type_url: &str,
    has_config: bool,
    path: &FieldPath,
) -> ConfigError {
    let pool = rvoy_api::descriptor_pool();
    let type_name = type_name_of(type_url);
    let envoy_has_type = !type_name.is_empty()
        && type_name.starts_with("envoy.")
        && pool.get_message_by_name(type_name).is_some();
    let envoy_has_name = envoy_knows(category, name);
    if envoy_has_type || (envoy_has_name && !has_config) {
        let what = if envoy_has_name || type_name.is_empty() {
            name.to_owned()
        } else {
            format!("{name} ({type_name})")
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

#[cfg(test)]
mod tests {
    use super::*;

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
