//! `stats_config.stats_matcher`: decides which stats exist at all. Rejected
//! stats get null handles that record nothing and never appear in output.
//! String matching is supplied by the caller (closures or a trait object), so
//! this crate does not depend on the config protos.

use std::sync::Arc;

/// Decides whether a stat (by full name) is rejected.
pub trait StatsMatcher: Send + Sync {
    /// True if the stat must not be created.
    fn rejects(&self, name: &str) -> bool;
}

/// A string matcher (e.g. a compiled `type.matcher.v3.StringMatcher`).
pub type NameMatcher = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Envoy's `StatsMatcherImpl` over caller-supplied string matchers.
#[derive(Clone)]
pub enum ListMatcher {
    /// `reject_all: true` (or `false`: accept all).
    RejectAll(bool),
    /// `inclusion_list`: stats matching none of these are rejected.
    Inclusion(Vec<NameMatcher>),
    /// `exclusion_list`: stats matching any of these are rejected.
    Exclusion(Vec<NameMatcher>),
}

impl std::fmt::Debug for ListMatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListMatcher::RejectAll(b) => write!(f, "RejectAll({b})"),
            ListMatcher::Inclusion(v) => write!(f, "Inclusion({} matchers)", v.len()),
            ListMatcher::Exclusion(v) => write!(f, "Exclusion({} matchers)", v.len()),
        }
    }
}

impl StatsMatcher for ListMatcher {
    fn rejects(&self, name: &str) -> bool {
        match self {
            ListMatcher::RejectAll(b) => *b,
            ListMatcher::Inclusion(list) => !list.iter().any(|m| m(name)),
            ListMatcher::Exclusion(list) => list.iter().any(|m| m(name)),
        }
    }
}

impl<F> StatsMatcher for F
where
    F: Fn(&str) -> bool + Send + Sync,
{
    fn rejects(&self, name: &str) -> bool {
        self(name)
    }
}
