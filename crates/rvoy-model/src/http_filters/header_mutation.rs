//! `envoy.filters.http.header_mutation`: ordered header mutations on the
//! request and the response, at filter level and per route.

use http::HeaderName;
use rvoy_api::envoy::config::common::mutation_rules::v3 as rules;
use rvoy_api::envoy::extensions::filters::http::header_mutation::v3 as pb;
use rvoy_config_load::{ConfigError, FieldPath};

use crate::headers::{HeaderAddition, HeaderMutations};
use crate::matcher::{StringMatcher, header_name};
use crate::support::{MessageSupport, yes};

pub(crate) static SUPPORT: &[MessageSupport] = &[
    MessageSupport {
        message: "envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
        fields: &[yes("mutations"), yes("most_specific_header_mutations_wins")],
    },
    MessageSupport {
        message: "envoy.extensions.filters.http.header_mutation.v3.HeaderMutationPerRoute",
        fields: &[yes("mutations")],
    },
    MessageSupport {
        message: "envoy.extensions.filters.http.header_mutation.v3.Mutations",
        fields: &[yes("request_mutations"), yes("response_mutations")],
    },
    MessageSupport {
        message: "envoy.config.common.mutation_rules.v3.HeaderMutation",
        fields: &[yes("remove"), yes("append"), yes("remove_on_match")],
    },
    MessageSupport {
        message: "envoy.config.common.mutation_rules.v3.HeaderMutation.RemoveOnMatch",
        fields: &[yes("key_matcher")],
    },
];

/// The filter's config.
#[derive(Clone, Debug)]
pub struct HeaderMutation {
    pub mutations: Mutations,
    /// Per-route mutations run least specific first (most specific wins).
    pub most_specific_wins: bool,
}

impl HeaderMutation {
    pub fn from_proto(p: &pb::HeaderMutation, path: &FieldPath) -> Result<Self, ConfigError> {
        Ok(HeaderMutation {
            mutations: Mutations::from_proto(
                &p.mutations.clone().unwrap_or_default(),
                &path.field("mutations"),
            )?,
            most_specific_wins: p.most_specific_header_mutations_wins,
        })
    }
}

/// Request and response mutations, applied in order.
#[derive(Clone, Debug, Default)]
pub struct Mutations {
    pub request: Vec<Mutation>,
    pub response: Vec<Mutation>,
}

/// One mutation.
#[derive(Clone, Debug)]
pub enum Mutation {
    Remove(HeaderName),
    Append(HeaderAddition),
    /// Removes every header whose name matches.
    RemoveOnMatch(StringMatcher),
}

impl Mutations {
    pub fn from_proto(p: &pb::Mutations, path: &FieldPath) -> Result<Self, ConfigError> {
        Ok(Mutations {
            request: list(&p.request_mutations, &path.field("request_mutations"), true)?,
            response: list(
                &p.response_mutations,
                &path.field("response_mutations"),
                false,
            )?,
        })
    }
}

fn list(
    ms: &[rules::HeaderMutation],
    path: &FieldPath,
    request: bool,
) -> Result<Vec<Mutation>, ConfigError> {
    use rules::header_mutation::Action;
    ms.iter()
        .enumerate()
        .map(|(i, m)| {
            let p = path.index(i);
            match &m.action {
                Some(Action::Remove(name)) => {
                    Ok(Mutation::Remove(header_name(name, &p.field("remove"))?))
                }
                Some(Action::Append(option)) => {
                    let one = HeaderMutations::from_proto(
                        std::slice::from_ref(option),
                        &[],
                        &p.field("append"),
                        &p,
                        request,
                    )?;
                    one.add
                        .into_iter()
                        .next()
                        .map(Mutation::Append)
                        .ok_or_else(|| {
                            ConfigError::semantic(p.field("append"), "a header is required")
                        })
                }
                Some(Action::RemoveOnMatch(r)) => {
                    let m = r.key_matcher.as_ref().ok_or_else(|| {
                        ConfigError::semantic(
                            p.field("remove_on_match").field("key_matcher"),
                            "required",
                        )
                    })?;
                    Ok(Mutation::RemoveOnMatch(StringMatcher::from_proto(
                        m,
                        &p.field("remove_on_match").field("key_matcher"),
                    )?))
                }
                None => Err(ConfigError::semantic(
                    p,
                    "one of remove, append, remove_on_match is required",
                )),
            }
        })
        .collect()
}
