//! `envoy.filters.http.header_mutation`: the filter's request mutations, then
//! each route level's, on the request head; the same order for the response.

use std::sync::Arc;

use http::{HeaderMap, StatusCode};
use rvoy_format::StreamInfo;
use rvoy_model::http_filters::PerRouteConfig;
use rvoy_model::http_filters::header_mutation::{HeaderMutation, Mutation, Mutations};

use super::{Decoded, RouteContext};
use crate::headers::apply_addition;
use crate::request_info::RequestInfo;
use crate::stream::Request;

/// The mutations that apply to one request.
pub struct ActiveHeaderMutation {
    config: Arc<HeaderMutation>,
    /// Per-route mutations in the order they apply.
    routes: Vec<Arc<Mutations>>,
}

pub fn decode_headers(
    config: &Arc<HeaderMutation>,
    name: &str,
    ctx: RouteContext<'_>,
    req: &mut Request,
    info: &RequestInfo,
) -> (ActiveHeaderMutation, Decoded) {
    let mut routes: Vec<Arc<Mutations>> = ctx
        .configs(name)
        .filter_map(|c| match c {
            PerRouteConfig::HeaderMutation(m) => Some(m.clone()),
            _ => None,
        })
        .collect();
    if config.most_specific_wins {
        routes.reverse();
    }
    apply(&config.mutations.request, &mut req.headers, info);
    for m in &routes {
        apply(&m.request, &mut req.headers, info);
    }
    (
        ActiveHeaderMutation {
            config: config.clone(),
            routes,
        },
        Decoded::Continue,
    )
}

impl ActiveHeaderMutation {
    pub fn encode_headers(
        &mut self,
        _status: StatusCode,
        headers: &mut HeaderMap,
        _end_stream: bool,
        info: &RequestInfo,
    ) {
        apply(&self.config.mutations.response, headers, info);
        for m in &self.routes {
            apply(&m.response, headers, info);
        }
    }
}

fn apply(mutations: &[Mutation], headers: &mut HeaderMap, info: &dyn StreamInfo) {
    for m in mutations {
        match m {
            Mutation::Remove(name) => {
                headers.remove(name);
            }
            Mutation::Append(add) => apply_addition(add, headers, info),
            Mutation::RemoveOnMatch(matcher) => {
                let doomed: Vec<http::HeaderName> = headers
                    .keys()
                    .filter(|k| matcher.matches(k.as_str()))
                    .cloned()
                    .collect();
                for k in doomed {
                    headers.remove(k);
                }
            }
        }
    }
}
