//! Errors of stats configuration and admin query parsing. Messages match
//! Envoy's where Envoy has one.

use thiserror::Error;

/// A stats configuration or query error.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StatsError {
    /// A tag name used twice across defaults, CLI tags and `stats_tags`.
    #[error("Tag name '{0}' specified twice.")]
    DuplicateTagName(String),
    /// `stats_tags` entry without regex/fixed value whose name is no default tag.
    #[error("No regex specified for tag specifier and no default regex for name: '{0}'")]
    NoDefaultRegex(String),
    /// `tag_name` empty.
    #[error("tag_name cannot be empty")]
    EmptyTagName,
    /// A regex that does not compile.
    #[error("Invalid regex '{regex}': {reason}")]
    InvalidRegex {
        /// The regex text.
        regex: String,
        /// Why it was rejected.
        reason: String,
    },
}

/// An admin `/stats` query-string error; `Display` is the exact response body
/// Envoy sends with its 400.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ParamsError {
    /// `filter=` is not a valid RE2 regex.
    #[error("Invalid re2 regex: {0}")]
    InvalidFilter(String),
    /// Unknown `histogram_buckets=` value.
    #[error(
        "usage: /stats?histogram_buckets=(cumulative|disjoint|detailed|summary|prometheusnative)\n"
    )]
    InvalidHistogramBuckets,
    /// `histogram_buckets=prometheusnative` outside Prometheus output.
    #[error("Invalid histogram_buckets type for non prometheus stats type")]
    NativeOutsidePrometheus,
    /// Unknown `type=` value.
    #[error("invalid &type= param")]
    InvalidType,
    /// Unknown `format=` value.
    #[error("usage: /stats?format=(html|active-html|json|prometheus|text)\n\n")]
    InvalidFormat,
}
