//! `envoy.filters.http.cors`: the filter has no config of its own; each route,
//! virtual host or route configuration carries a [`CorsPolicy`] in its
//! `typed_per_filter_config`.

use rvoy_api::envoy::extensions::filters::http::cors::v3 as pb;
use rvoy_config_load::{ConfigError, FieldPath};

use crate::matcher::{RuntimeFraction, StringMatcher};
use crate::support::{MessageSupport, yes};

pub(crate) static SUPPORT: &[MessageSupport] = &[
    MessageSupport {
        message: "envoy.extensions.filters.http.cors.v3.Cors",
        fields: &[],
    },
    MessageSupport {
        message: "envoy.extensions.filters.http.cors.v3.CorsPolicy",
        fields: &[
            yes("allow_origin_string_match"),
            yes("allow_methods"),
            yes("allow_headers"),
            yes("expose_headers"),
            yes("max_age"),
            yes("allow_credentials"),
            yes("filter_enabled"),
            yes("shadow_enabled"),
            yes("allow_private_network_access"),
            yes("forward_not_matching_preflights"),
        ],
    },
];

/// One level's CORS policy. Unset attributes fall back to less specific levels.
#[derive(Clone, Debug, Default)]
pub struct CorsPolicy {
    pub allow_origins: Vec<StringMatcher>,
    pub allow_methods: String,
    pub allow_headers: String,
    pub expose_headers: String,
    pub max_age: String,
    pub allow_credentials: Option<bool>,
    pub allow_private_network_access: Option<bool>,
    /// `None`: enabled.
    pub filter_enabled: Option<RuntimeFraction>,
    pub shadow_enabled: Option<RuntimeFraction>,
    pub forward_not_matching_preflights: Option<bool>,
}

impl CorsPolicy {
    pub fn from_proto(p: &pb::CorsPolicy, path: &FieldPath) -> Result<Self, ConfigError> {
        Ok(CorsPolicy {
            allow_origins: p
                .allow_origin_string_match
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    StringMatcher::from_proto(m, &path.field("allow_origin_string_match").index(i))
                })
                .collect::<Result<_, _>>()?,
            allow_methods: p.allow_methods.clone(),
            allow_headers: p.allow_headers.clone(),
            expose_headers: p.expose_headers.clone(),
            max_age: p.max_age.clone(),
            allow_credentials: p.allow_credentials,
            allow_private_network_access: p.allow_private_network_access,
            filter_enabled: p.filter_enabled.as_ref().map(RuntimeFraction::from_proto),
            shadow_enabled: p.shadow_enabled.as_ref().map(RuntimeFraction::from_proto),
            forward_not_matching_preflights: p.forward_not_matching_preflights,
        })
    }
}
