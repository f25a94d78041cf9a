//! The HTTP filters rvoy implements: their configs as lowered from an HTTP
//! connection manager's `http_filters`, and per-route filter configs
//! (`typed_per_filter_config` on routes, virtual hosts and route configs).
//!
//! Each filter has its own module with its support tables and config
//! lowering; the router is not here (it is the connection manager's terminal
//! filter, see [`crate::hcm::RouterConfig`]).

use std::collections::HashMap;
use std::sync::Arc;

use rvoy_config_load::{ConfigError, FieldPath};

use crate::extension::{self, Resolved};
use crate::support::{Diagnostics, MessageSupport, yes};

pub mod buffer;
pub mod compressor;
pub mod cors;
pub mod fault;
pub mod header_mutation;
pub mod health_check;
pub mod local_ratelimit;

pub(crate) fn support_tables() -> impl Iterator<Item = &'static MessageSupport> {
    SUPPORT
        .iter()
        .chain(cors::SUPPORT)
        .chain(compressor::SUPPORT)
        .chain(header_mutation::SUPPORT)
        .chain(buffer::SUPPORT)
        .chain(health_check::SUPPORT)
        .chain(fault::SUPPORT)
        .chain(local_ratelimit::SUPPORT)
}

static SUPPORT: &[MessageSupport] = &[MessageSupport {
    message: "envoy.config.route.v3.FilterConfig",
    fields: &[yes("config"), yes("is_optional"), yes("disabled")],
}];

/// One configured HTTP filter (other than the router).
#[derive(Clone, Debug)]
pub struct HttpFilter {
    /// The filter's name in `http_filters` (the key of per-route configs).
    pub name: Arc<str>,
    pub config: FilterConfig,
    /// `disabled: true`: the filter runs only where a route enables it.
    pub disabled_by_default: bool,
}

/// The config of an HTTP filter.
#[derive(Clone, Debug)]
pub enum FilterConfig {
    /// `envoy.filters.http.cors`: its policies live in per-route configs.
    Cors,
    /// `envoy.filters.http.compressor`.
    Compressor(Arc<compressor::Compressor>),
    /// `envoy.filters.http.header_mutation`.
    HeaderMutation(Arc<header_mutation::HeaderMutation>),
    /// `envoy.filters.http.buffer`.
    Buffer(buffer::Buffer),
    /// `envoy.filters.http.health_check`.
    HealthCheck(Arc<health_check::HealthCheck>),
    /// `envoy.filters.http.fault`.
    Fault(Arc<fault::Fault>),
    /// `envoy.filters.http.local_ratelimit`.
    LocalRateLimit(Arc<local_ratelimit::LocalRateLimit>),
}

/// A per-route config of one filter.
#[derive(Clone, Debug)]
pub enum PerRouteConfig {
    Cors(Arc<cors::CorsPolicy>),
    Compressor(Arc<compressor::CompressorPerRoute>),
    HeaderMutation(Arc<header_mutation::Mutations>),
    Buffer(buffer::BufferPerRoute),
    Fault(Arc<fault::Fault>),
    LocalRateLimit(Arc<local_ratelimit::LocalRateLimit>),
}

/// One level's per-route entry for a filter.
#[derive(Clone, Debug)]
pub struct PerFilterEntry {
    pub name: Arc<str>,
    /// `FilterConfig.disabled` when the entry is a `FilterConfig`.
    pub disabled: Option<bool>,
    pub config: Option<PerRouteConfig>,
}

/// The per-route filter configs of one level, by filter name.
#[derive(Clone, Debug, Default)]
pub struct PerFilterConfigs(Vec<PerFilterEntry>);

impl PerFilterConfigs {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entry for the filter named `name`.
    pub fn get(&self, name: &str) -> Option<&PerFilterEntry> {
        self.0.iter().find(|e| &*e.name == name)
    }
}

/// Lowers an HTTP filter other than the router; `Ok(None)` when the resolved
/// extension is not an HTTP filter rvoy implements here.
pub(crate) fn lower(
    name: &str,
    resolved: &Resolved,
    path: &FieldPath,
    diags: &mut Diagnostics,
) -> Result<Option<FilterConfig>, ConfigError> {
    let _ = diags;
    let config = match resolved.extension.name {
        "envoy.filters.http.cors" => {
            let _: rvoy_api::envoy::extensions::filters::http::cors::v3::Cors =
                resolved.config_as(path)?;
            FilterConfig::Cors
        }
        "envoy.filters.http.header_mutation" => {
            FilterConfig::HeaderMutation(Arc::new(header_mutation::HeaderMutation::from_proto(
                &resolved.config_as(path)?,
                &path.field("typed_config"),
            )?))
        }
        "envoy.filters.http.compressor" => {
            FilterConfig::Compressor(Arc::new(compressor::Compressor::from_proto(
                &resolved.config_as(path)?,
                &path.field("typed_config"),
                diags,
            )?))
        }
        "envoy.filters.http.buffer" => FilterConfig::Buffer(buffer::Buffer::from_proto(
            &resolved.config_as(path)?,
            &path.field("typed_config"),
        )?),
        "envoy.filters.http.health_check" => {
            FilterConfig::HealthCheck(Arc::new(health_check::HealthCheck::from_proto(
                &resolved.config_as(path)?,
                &path.field("typed_config"),
            )?))
        }
        "envoy.filters.http.fault" => FilterConfig::Fault(Arc::new(fault::Fault::from_proto(
            &resolved.config_as(path)?,
            &path.field("typed_config"),
        )?)),
        "envoy.filters.http.local_ratelimit" => {
            FilterConfig::LocalRateLimit(Arc::new(local_ratelimit::LocalRateLimit::from_proto(
                &resolved.config_as(path)?,
                &path.field("typed_config"),
                false,
            )?))
        }
        _ => return Ok(None),
    };
    let _ = name;
    Ok(Some(config))
}

/// Lowers a `typed_per_filter_config` map. Configs are found by their type,
/// as Envoy does; a type rvoy does not implement is rejected unless wrapped
/// in a `FilterConfig` marked `is_optional`.
pub(crate) fn per_filter_configs(
    map: &HashMap<String, prost_types::Any>,
    path: &FieldPath,
    diags: &mut Diagnostics,
) -> Result<PerFilterConfigs, ConfigError> {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        let p = path.key(key);
        let any = &map[key];
        if let Some(entry) = per_route(Arc::from(key.as_str()), any, &p, diags)? {
            out.push(entry);
        }
    }
    Ok(PerFilterConfigs(out))
}

fn per_route(
    name: Arc<str>,
    any: &prost_types::Any,
    path: &FieldPath,
    diags: &mut Diagnostics,
) -> Result<Option<PerFilterEntry>, ConfigError> {
    let Some(unpacked) = extension::unpack_checked(any, path, diags)? else {
        return unsupported(any, path, false).map(|_| None);
    };
    if unpacked.type_name == "envoy.config.route.v3.FilterConfig" {
        let fc: rvoy_api::envoy::config::route::v3::FilterConfig =
            rvoy_config_load::any::to_prost(&unpacked, path)?;
        let config = match &fc.config {
            Some(inner) => typed_config(inner, &path.field("config"), fc.is_optional, diags)?,
            None => None,
        };
        if config.is_none() && fc.config.is_some() && !fc.disabled {
            // An optional config rvoy does not implement: the entry is skipped.
            return Ok(None);
        }
        return Ok(Some(PerFilterEntry {
            name,
            disabled: Some(fc.disabled),
            config,
        }));
    }
    Ok(Some(PerFilterEntry {
        name,
        disabled: None,
        config: typed_config(any, path, false, diags)?,
    }))
}

fn typed_config(
    any: &prost_types::Any,
    path: &FieldPath,
    optional: bool,
    diags: &mut Diagnostics,
) -> Result<Option<PerRouteConfig>, ConfigError> {
    use rvoy_api::envoy::extensions::filters::http as f;
    let Some(unpacked) = extension::unpack_checked(any, path, diags)? else {
        return unsupported(any, path, optional);
    };
    let config = match unpacked.type_name.as_str() {
        "envoy.extensions.filters.http.cors.v3.CorsPolicy" => {
            let p: f::cors::v3::CorsPolicy = rvoy_config_load::any::to_prost(&unpacked, path)?;
            PerRouteConfig::Cors(Arc::new(cors::CorsPolicy::from_proto(&p, path)?))
        }
        "envoy.extensions.filters.http.header_mutation.v3.HeaderMutationPerRoute" => {
            let p: f::header_mutation::v3::HeaderMutationPerRoute =
                rvoy_config_load::any::to_prost(&unpacked, path)?;
            let m = p.mutations.unwrap_or_default();
            PerRouteConfig::HeaderMutation(Arc::new(header_mutation::Mutations::from_proto(
                &m,
                &path.field("mutations"),
            )?))
        }
        "envoy.extensions.filters.http.compressor.v3.CompressorPerRoute" => {
            let p: f::compressor::v3::CompressorPerRoute =
                rvoy_config_load::any::to_prost(&unpacked, path)?;
            PerRouteConfig::Compressor(Arc::new(compressor::CompressorPerRoute::from_proto(
                &p, path, diags,
            )?))
        }
        "envoy.extensions.filters.http.buffer.v3.BufferPerRoute" => {
            let p: f::buffer::v3::BufferPerRoute =
                rvoy_config_load::any::to_prost(&unpacked, path)?;
            PerRouteConfig::Buffer(buffer::BufferPerRoute::from_proto(&p, path)?)
        }
        "envoy.extensions.filters.http.fault.v3.HTTPFault" => {
            let p: f::fault::v3::HttpFault = rvoy_config_load::any::to_prost(&unpacked, path)?;
            PerRouteConfig::Fault(Arc::new(fault::Fault::from_proto(&p, path)?))
        }
        "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit" => {
            let p: f::local_ratelimit::v3::LocalRateLimit =
                rvoy_config_load::any::to_prost(&unpacked, path)?;
            PerRouteConfig::LocalRateLimit(Arc::new(local_ratelimit::LocalRateLimit::from_proto(
                &p, path, true,
            )?))
        }
        _ => return unsupported(any, path, optional),
    };
    Ok(Some(config))
}

fn unsupported(
    any: &prost_types::Any,
    path: &FieldPath,
    optional: bool,
) -> Result<Option<PerRouteConfig>, ConfigError> {
    if optional {
        return Ok(None);
    }
    let type_name = rvoy_config_load::any::type_name_of(&any.type_url);
    Err(ConfigError::not_supported(
        path.clone(),
        filter_of_per_route_type(type_name),
    ))
}

/// The filter a per-route config type belongs to
/// (`envoy.extensions.filters.http.lua.v3.LuaPerRoute` → `envoy.filters.http.lua`),
/// or the type itself when it is not an HTTP filter's.
fn filter_of_per_route_type(type_name: &str) -> String {
    type_name
        .strip_prefix("envoy.extensions.filters.http.")
        .and_then(|rest| rest.split('.').next())
        .map(|filter| format!("envoy.filters.http.{filter}"))
        .unwrap_or_else(|| format!("per-route config {type_name}"))
}
