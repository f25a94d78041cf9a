//! Bootstrap `stats_config` and `--stats-tag` as the stats store's options:
//! tag extraction, the stats matcher and histogram buckets.

use std::sync::Arc;

use rvoy_api::envoy::config::bootstrap::v3::Bootstrap;
use rvoy_api::envoy::config::metrics::v3 as metrics;
use rvoy_config_load::FieldPath;
use rvoy_model::matcher::StringMatcher;
use rvoy_stats::{
    HistogramBucketRule, ListMatcher, NameMatcher, StoreOptions, Tag, TagConfig, TagProducer,
    TagSpecifier, TagValue,
};

use crate::cli::Options;

fn matchers(
    list: &[rvoy_api::envoy::r#type::matcher::v3::StringMatcher],
    path: &FieldPath,
) -> Result<Vec<NameMatcher>, String> {
    list.iter()
        .enumerate()
        .map(|(i, m)| {
            let compiled =
                StringMatcher::from_proto(m, &path.index(i)).map_err(|e| e.to_string())?;
            Ok(Arc::new(move |name: &str| compiled.matches(name)) as NameMatcher)
        })
        .collect()
}

/// Builds the store options from the bootstrap and command line.
pub fn store_options(bootstrap: &Bootstrap, options: &Options) -> Result<StoreOptions, String> {
    let sc = bootstrap.stats_config.clone().unwrap_or_default();
    let path = FieldPath::root().field("stats_config");
    let tag_config = TagConfig {
        use_all_default_tags: sc.use_all_default_tags,
        stats_tags: sc
            .stats_tags
            .iter()
            .map(|t| TagSpecifier {
                tag_name: t.tag_name.clone(),
                value: match &t.tag_value {
                    Some(metrics::tag_specifier::TagValue::Regex(r)) if !r.is_empty() => {
                        TagValue::Regex(r.clone())
                    }
                    Some(metrics::tag_specifier::TagValue::FixedValue(v)) => {
                        TagValue::Fixed(v.clone())
                    }
                    _ => TagValue::Default,
                },
            })
            .collect(),
        cli_tags: options
            .stats_tags
            .iter()
            .map(|(n, v)| Tag {
                name: n.clone(),
                value: v.clone(),
            })
            .collect(),
    };
    let tag_producer = TagProducer::new(&tag_config).map_err(|e| e.to_string())?;
    let matcher = match sc.stats_matcher.and_then(|m| m.stats_matcher) {
        None => None,
        Some(metrics::stats_matcher::StatsMatcher::RejectAll(b)) => {
            Some(Arc::new(ListMatcher::RejectAll(b)) as Arc<dyn rvoy_stats::StatsMatcher>)
        }
        Some(metrics::stats_matcher::StatsMatcher::InclusionList(l)) => {
            Some(Arc::new(ListMatcher::Inclusion(matchers(
                &l.patterns,
                &path
                    .field("stats_matcher")
                    .field("inclusion_list")
                    .field("patterns"),
            )?)) as Arc<dyn rvoy_stats::StatsMatcher>)
        }
        Some(metrics::stats_matcher::StatsMatcher::ExclusionList(l)) => {
            Some(Arc::new(ListMatcher::Exclusion(matchers(
                &l.patterns,
                &path
                    .field("stats_matcher")
                    .field("exclusion_list")
                    .field("patterns"),
            )?)) as Arc<dyn rvoy_stats::StatsMatcher>)
        }
    };
    let mut histogram_buckets = Vec::new();
    for (i, h) in sc.histogram_bucket_settings.iter().enumerate() {
        let p = path
            .field("histogram_bucket_settings")
            .index(i)
            .field("match");
        let m = h
            .r#match
            .as_ref()
            .ok_or_else(|| format!("{p}: a matcher is required"))?;
        let compiled = StringMatcher::from_proto(m, &p).map_err(|e| e.to_string())?;
        histogram_buckets.push(HistogramBucketRule {
            matcher: Arc::new(move |name: &str| compiled.matches(name)),
            buckets: h.buckets.clone(),
        });
    }
    Ok(StoreOptions {
        tag_producer,
        matcher,
        histogram_buckets,
    })
}
