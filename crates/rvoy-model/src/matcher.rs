//! Matchers shared by routes and filters: strings, regexes, headers, query
//! parameters and fractional percentages, compiled once at load.

use http::HeaderName;
use regex::Regex;
use rvoy_api::envoy::config::core::v3 as core;
use rvoy_api::envoy::config::route::v3 as route;
use rvoy_api::envoy::r#type::matcher::v3 as m;
use rvoy_api::envoy::r#type::v3 as ty;
use rvoy_config_load::{ConfigError, FieldPath};

use crate::support::{MessageSupport, ignored, yes};

pub(crate) static SUPPORT: &[MessageSupport] = &[
    MessageSupport {
        message: "envoy.type.matcher.v3.StringMatcher",
        fields: &[
            yes("exact"),
            yes("prefix"),
            yes("suffix"),
            yes("safe_regex"),
            yes("contains"),
            yes("ignore_case"),
        ],
    },
    MessageSupport {
        message: "envoy.type.matcher.v3.RegexMatcher",
        fields: &[
            yes("regex"),
            ignored(
                "google_re2",
                "the only engine; its program size limit is advisory",
            ),
        ],
    },
    MessageSupport {
        message: "envoy.type.matcher.v3.RegexMatcher.GoogleRE2",
        fields: &[ignored(
            "max_program_size",
            "program size limit is advisory",
        )],
    },
    MessageSupport {
        message: "envoy.type.matcher.v3.RegexMatchAndSubstitute",
        fields: &[yes("pattern"), yes("substitution")],
    },
    MessageSupport {
        message: "envoy.config.route.v3.HeaderMatcher",
        fields: &[
            yes("name"),
            yes("exact_match"),
            yes("safe_regex_match"),
            yes("range_match"),
            yes("present_match"),
            yes("prefix_match"),
            yes("suffix_match"),
            yes("contains_match"),
            yes("string_match"),
            yes("invert_match"),
            yes("treat_missing_header_as_empty"),
        ],
    },
    MessageSupport {
        message: "envoy.config.route.v3.QueryParameterMatcher",
        fields: &[yes("name"), yes("string_match"), yes("present_match")],
    },
    MessageSupport {
        message: "envoy.type.v3.Int64Range",
        fields: &[yes("start"), yes("end")],
    },
    MessageSupport {
        message: "envoy.type.matcher.v3.MetadataMatcher",
        fields: &[yes("filter"), yes("path"), yes("value")],
    },
    MessageSupport {
        message: "envoy.type.matcher.v3.MetadataMatcher.PathSegment",
        fields: &[yes("key")],
    },
    MessageSupport {
        message: "envoy.type.matcher.v3.ValueMatcher",
        fields: &[
            yes("null_match"),
            yes("double_match"),
            yes("string_match"),
            yes("bool_match"),
            yes("present_match"),
            yes("list_match"),
            yes("or_match"),
        ],
    },
    MessageSupport {
        message: "envoy.type.matcher.v3.ValueMatcher.NullMatch",
        fields: &[],
    },
    MessageSupport {
        message: "envoy.type.matcher.v3.DoubleMatcher",
        fields: &[yes("range"), yes("exact")],
    },
    MessageSupport {
        message: "envoy.type.v3.DoubleRange",
        fields: &[yes("start"), yes("end")],
    },
    MessageSupport {
        message: "envoy.type.matcher.v3.ListMatcher",
        fields: &[yes("one_of")],
    },
    MessageSupport {
        message: "envoy.type.matcher.v3.OrMatcher",
        fields: &[yes("value_matchers")],
    },
    MessageSupport {
        message: "envoy.type.v3.FractionalPercent",
        fields: &[yes("numerator"), yes("denominator")],
    },
    MessageSupport {
        message: "envoy.config.core.v3.RuntimeFractionalPercent",
        fields: &[yes("default_value"), yes("runtime_key")],
    },
];

/// Compiles an Envoy `safe_regex` (RE2 syntax) so that the whole input must match,
/// as Envoy's `matches()` does.
pub fn compile_regex(pattern: &str, path: &FieldPath) -> Result<Regex, ConfigError> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(32 << 20)
        .build()
        .map_err(|e| {
            ConfigError::semantic(
                path.clone(),
                format!("invalid regex '{pattern}': {}", regex_error(&e)),
            )
        })
}

/// Compiles a regex used for search or substitution (not anchored).
pub fn compile_regex_unanchored(pattern: &str, path: &FieldPath) -> Result<Regex, ConfigError> {
    regex::RegexBuilder::new(pattern)
        .size_limit(32 << 20)
        .build()
        .map_err(|e| {
            ConfigError::semantic(
                path.clone(),
                format!("invalid regex '{pattern}': {}", regex_error(&e)),
            )
        })
}

fn regex_error(e: &regex::Error) -> String {
    match e {
        regex::Error::Syntax(s) => s
            .lines()
            .last()
            .unwrap_or(s)
            .trim_start_matches("error: ")
            .to_owned(),
        other => other.to_string(),
    }
}

/// A compiled `type.matcher.v3.StringMatcher`.
#[derive(Clone, Debug)]
pub enum StringMatcher {
    Exact { value: String, ignore_case: bool },
    Prefix { value: String, ignore_case: bool },
    Suffix { value: String, ignore_case: bool },
    Contains { value: String, ignore_case: bool },
    Regex(Regex),
}

impl StringMatcher {
    pub fn from_proto(sm: &m::StringMatcher, path: &FieldPath) -> Result<Self, ConfigError> {
        use m::string_matcher::MatchPattern as P;
        let ic = sm.ignore_case;
        let lower = |s: &str| {
            if ic {
                s.to_ascii_lowercase()
            } else {
                s.to_owned()
            }
        };
        Ok(match &sm.match_pattern {
            Some(P::Exact(v)) => StringMatcher::Exact {
                value: lower(v),
                ignore_case: ic,
            },
            Some(P::Prefix(v)) => StringMatcher::Prefix {
                value: lower(v),
                ignore_case: ic,
            },
            Some(P::Suffix(v)) => StringMatcher::Suffix {
                value: lower(v),
                ignore_case: ic,
            },
            Some(P::Contains(v)) => StringMatcher::Contains {
                value: lower(v),
                ignore_case: ic,
            },
            Some(P::SafeRegex(r)) => StringMatcher::Regex(compile_regex(
                &r.regex,
                &path.field("safe_regex").field("regex"),
            )?),
            Some(P::Custom(_)) => {
                return Err(ConfigError::not_supported(
                    path.field("custom"),
                    "custom string matchers",
                ));
            }
            None => {
                return Err(ConfigError::semantic(
                    path.clone(),
                    "a match pattern is required",
                ));
            }
        })
    }

    /// Whether `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        fn ci_starts(h: &str, n: &str) -> bool {
            h.len() >= n.len() && h.as_bytes()[..n.len()].eq_ignore_ascii_case(n.as_bytes())
        }
        fn ci_ends(h: &str, n: &str) -> bool {
            h.len() >= n.len()
                && h.as_bytes()[h.len() - n.len()..].eq_ignore_ascii_case(n.as_bytes())
        }
        match self {
            StringMatcher::Exact {
                value: v,
                ignore_case,
            } => {
                if *ignore_case {
                    value.eq_ignore_ascii_case(v)
                } else {
                    value == v
                }
            }
            StringMatcher::Prefix {
                value: v,
                ignore_case,
            } => {
                if *ignore_case {
                    ci_starts(value, v)
                } else {
                    value.starts_with(v.as_str())
                }
            }
            StringMatcher::Suffix {
                value: v,
                ignore_case,
            } => {
                if *ignore_case {
                    ci_ends(value, v)
                } else {
                    value.ends_with(v.as_str())
                }
            }
            StringMatcher::Contains {
                value: v,
                ignore_case,
            } => {
                if *ignore_case {
                    value.to_ascii_lowercase().contains(v.as_str())
                } else {
                    value.contains(v.as_str())
                }
            }
            StringMatcher::Regex(r) => r.is_match(value),
        }
    }
}

/// How a header matcher tests the value.
#[derive(Clone, Debug)]
pub enum HeaderMatch {
    /// `present_match` (also the default when no specifier is set).
    Present(bool),
    String(StringMatcher),
    /// `range_match`: the value parsed as an integer in `[start, end)`.
    Range {
        start: i64,
        end: i64,
    },
}

/// An HTTP/2-style pseudo header a matcher may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pseudo {
    Method,
    Path,
    Authority,
    Scheme,
    Status,
    Protocol,
}

/// Where pseudo header values come from (the request or response being matched).
pub trait PseudoHeaders {
    fn pseudo(&self, p: Pseudo) -> Option<&str>;
}

impl PseudoHeaders for () {
    fn pseudo(&self, _: Pseudo) -> Option<&str> {
        None
    }
}

/// The header a matcher reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MatchName {
    Header(HeaderName),
    Pseudo(Pseudo),
    /// A pseudo header name Envoy accepts but no request carries (never present).
    Unknown(String),
}

/// A compiled `route.v3.HeaderMatcher`.
#[derive(Clone, Debug)]
pub struct HeaderMatcher {
    pub name: MatchName,
    pub matcher: HeaderMatch,
    pub invert: bool,
    pub treat_missing_as_empty: bool,
}

impl HeaderMatcher {
    pub fn from_proto(h: &route::HeaderMatcher, path: &FieldPath) -> Result<Self, ConfigError> {
        use route::header_matcher::HeaderMatchSpecifier as S;
        let name = if let Some(pseudo) = h.name.strip_prefix(':') {
            match pseudo.to_ascii_lowercase().as_str() {
                "method" => MatchName::Pseudo(Pseudo::Method),
                "path" => MatchName::Pseudo(Pseudo::Path),
                "authority" => MatchName::Pseudo(Pseudo::Authority),
                "scheme" => MatchName::Pseudo(Pseudo::Scheme),
                "status" => MatchName::Pseudo(Pseudo::Status),
                "protocol" => MatchName::Pseudo(Pseudo::Protocol),
                _ => MatchName::Unknown(h.name.to_ascii_lowercase()),
            }
        } else {
            MatchName::Header(header_name(&h.name, &path.field("name"))?)
        };
        let exact = |v: &str| StringMatcher::Exact {
            value: v.to_owned(),
            ignore_case: false,
        };
        let matcher = match &h.header_match_specifier {
            None => HeaderMatch::Present(true),
            Some(S::PresentMatch(p)) => HeaderMatch::Present(*p),
            Some(S::ExactMatch(v)) => HeaderMatch::String(exact(v)),
            Some(S::PrefixMatch(v)) => HeaderMatch::String(StringMatcher::Prefix {
                value: v.clone(),
                ignore_case: false,
            }),
            Some(S::SuffixMatch(v)) => HeaderMatch::String(StringMatcher::Suffix {
                value: v.clone(),
                ignore_case: false,
            }),
            Some(S::ContainsMatch(v)) => HeaderMatch::String(StringMatcher::Contains {
                value: v.clone(),
                ignore_case: false,
            }),
            Some(S::SafeRegexMatch(r)) => HeaderMatch::String(StringMatcher::Regex(compile_regex(
                &r.regex,
                &path.field("safe_regex_match").field("regex"),
            )?)),
            Some(S::RangeMatch(r)) => HeaderMatch::Range {
                start: r.start,
                end: r.end,
            },
            Some(S::StringMatch(sm)) => {
                HeaderMatch::String(StringMatcher::from_proto(sm, &path.field("string_match"))?)
            }
        };
        Ok(HeaderMatcher {
            name,
            matcher,
            invert: h.invert_match,
            treat_missing_as_empty: h.treat_missing_header_as_empty,
        })
    }

    /// Envoy's `HeaderUtility::matchHeaders` on a map without pseudo headers.
    pub fn matches(&self, headers: &http::HeaderMap) -> bool {
        self.matches_with(headers, &())
    }

    /// Envoy's `HeaderUtility::matchHeaders`: repeated headers are joined with `,`.
    pub fn matches_with(&self, headers: &http::HeaderMap, pseudo: &dyn PseudoHeaders) -> bool {
        let name = match &self.name {
            MatchName::Header(n) => n,
            MatchName::Pseudo(p) => {
                return self.decide(pseudo.pseudo(*p).map(std::borrow::Cow::Borrowed));
            }
            MatchName::Unknown(_) => return self.decide(None),
        };
        let mut values = headers.get_all(name).iter();
        let joined: Option<std::borrow::Cow<'_, str>> = match values.next() {
            None => None,
            Some(first) => {
                let first = String::from_utf8_lossy(first.as_bytes());
                match values.next() {
                    None => Some(first),
                    Some(second) => {
                        let mut all = first.into_owned();
                        all.push(',');
                        all.push_str(&String::from_utf8_lossy(second.as_bytes()));
                        for v in values {
                            all.push(',');
                            all.push_str(&String::from_utf8_lossy(v.as_bytes()));
                        }
                        Some(std::borrow::Cow::Owned(all))
                    }
                }
            }
        };
        self.decide(joined)
    }

    fn decide(&self, joined: Option<std::borrow::Cow<'_, str>>) -> bool {
        let value = match joined {
            Some(v) => v,
            None if self.treat_missing_as_empty => std::borrow::Cow::Borrowed(""),
            None => {
                let present_false = matches!(self.matcher, HeaderMatch::Present(false));
                let present_true = matches!(self.matcher, HeaderMatch::Present(true));
                return if self.invert {
                    present_true
                } else {
                    present_false
                };
            }
        };
        let matched = match &self.matcher {
            HeaderMatch::Present(p) => *p,
            HeaderMatch::String(s) => s.matches(&value),
            HeaderMatch::Range { start, end } => {
                value.parse::<i64>().is_ok_and(|v| v >= *start && v < *end)
            }
        };
        matched != self.invert
    }
}

/// A compiled `route.v3.QueryParameterMatcher`.
#[derive(Clone, Debug)]
pub struct QueryParameterMatcher {
    pub name: String,
    /// `None`: the parameter must be present.
    pub value: Option<StringMatcher>,
}

impl QueryParameterMatcher {
    pub fn from_proto(
        q: &route::QueryParameterMatcher,
        path: &FieldPath,
    ) -> Result<Self, ConfigError> {
        use route::query_parameter_matcher::QueryParameterMatchSpecifier as S;
        let value = match &q.query_parameter_match_specifier {
            Some(S::StringMatch(sm)) => {
                Some(StringMatcher::from_proto(sm, &path.field("string_match"))?)
            }
            Some(S::PresentMatch(_)) | None => None,
        };
        Ok(QueryParameterMatcher {
            name: q.name.clone(),
            value,
        })
    }

    /// Whether the query string (without `?`) satisfies this matcher. The first
    /// occurrence of the parameter counts, as in Envoy.
    pub fn matches(&self, query: &str) -> bool {
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if k == self.name {
                return match &self.value {
                    None => true,
                    Some(m) => m.matches(v),
                };
            }
        }
        false
    }
}

/// A `FractionalPercent` as parts per million.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FractionalPercent {
    pub numerator: u32,
    pub denominator: u32,
}

impl FractionalPercent {
    pub fn from_proto(f: &ty::FractionalPercent) -> Self {
        let denominator = match ty::fractional_percent::DenominatorType::try_from(f.denominator) {
            Ok(ty::fractional_percent::DenominatorType::TenThousand) => 10_000,
            Ok(ty::fractional_percent::DenominatorType::Million) => 1_000_000,
            _ => 100,
        };
        FractionalPercent {
            numerator: f.numerator.min(denominator),
            denominator,
        }
    }

    /// Whether a draw `random` (any u64) falls inside the fraction.
    pub fn sample(&self, random: u64) -> bool {
        (random % u64::from(self.denominator)) < u64::from(self.numerator)
    }
}

/// A runtime-overridable fraction (`RuntimeFractionalPercent`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeFraction {
    pub default: FractionalPercent,
    pub runtime_key: String,
}

impl RuntimeFraction {
    pub fn from_proto(r: &core::RuntimeFractionalPercent) -> Self {
        RuntimeFraction {
            default: r
                .default_value
                .as_ref()
                .map(FractionalPercent::from_proto)
                .unwrap_or(FractionalPercent {
                    numerator: 0,
                    denominator: 100,
                }),
            runtime_key: r.runtime_key.clone(),
        }
    }
}

/// Parses a header name as Envoy stores it (lower case).
pub fn header_name(name: &str, path: &FieldPath) -> Result<HeaderName, ConfigError> {
    HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
        .map_err(|_| ConfigError::semantic(path.clone(), format!("invalid header name '{name}'")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hm(
        name: &str,
        spec: route::header_matcher::HeaderMatchSpecifier,
        invert: bool,
    ) -> HeaderMatcher {
        HeaderMatcher::from_proto(
            &route::HeaderMatcher {
                name: name.into(),
                header_match_specifier: Some(spec),
                invert_match: invert,
                ..Default::default()
            },
            &FieldPath::root(),
        )
        .expect("valid")
    }

    #[test]
    fn header_matching_follows_envoy() {
        use route::header_matcher::HeaderMatchSpecifier as S;
        let mut headers = http::HeaderMap::new();
        headers.append("x-a", "1".parse().expect("v"));
        headers.append("x-a", "2".parse().expect("v"));
        assert!(hm("x-a", S::ExactMatch("1,2".into()), false).matches(&headers));
        assert!(hm("x-b", S::PresentMatch(false), false).matches(&headers));
        assert!(!hm("x-b", S::PresentMatch(true), false).matches(&headers));
        assert!(hm("x-b", S::PresentMatch(true), true).matches(&headers));
        assert!(!hm("x-b", S::ExactMatch("x".into()), true).matches(&headers));
        headers.insert("x-n", "42".parse().expect("v"));
        assert!(
            hm(
                "x-n",
                S::RangeMatch(ty::Int64Range { start: 40, end: 43 }),
                false
            )
            .matches(&headers)
        );
        assert!(
            !hm(
                "x-n",
                S::RangeMatch(ty::Int64Range { start: 40, end: 42 }),
                false
            )
            .matches(&headers)
        );
    }

    #[test]
    fn regex_is_full_match_and_errors_read_well() {
        let r = compile_regex("/api/v[0-9]+", &FieldPath::root()).expect("ok");
        assert!(r.is_match("/api/v1"));
        assert!(!r.is_match("/api/v1/x"));
        let e = compile_regex("*.example.com", &FieldPath::parse("a.b")).expect_err("bad");
        assert!(
            e.to_string().starts_with("invalid regex '*.example.com'"),
            "{e}"
        );
    }

    #[test]
    fn query_parameters() {
        let q = QueryParameterMatcher {
            name: "debug".into(),
            value: None,
        };
        assert!(q.matches("a=1&debug"));
        assert!(!q.matches("a=1"));
    }
}

/// A compiled `type.matcher.v3.ValueMatcher`: a test on one
/// `google.protobuf.Value` (metadata).
#[derive(Clone, Debug)]
pub enum ValueMatcher {
    Null,
    /// `start <= v < end`.
    DoubleRange {
        start: f64,
        end: f64,
    },
    DoubleExact(f64),
    String(StringMatcher),
    Bool(bool),
    /// `present_match`: a value is there (`false` never matches, as in Envoy).
    Present(bool),
    /// A list with an element matching.
    List(Box<ValueMatcher>),
    Or(Vec<ValueMatcher>),
}

impl ValueMatcher {
    pub fn from_proto(v: &m::ValueMatcher, path: &FieldPath) -> Result<Self, ConfigError> {
        use m::double_matcher::MatchPattern as D;
        use m::value_matcher::MatchPattern as P;
        Ok(match &v.match_pattern {
            Some(P::NullMatch(_)) => ValueMatcher::Null,
            Some(P::DoubleMatch(d)) => match &d.match_pattern {
                Some(D::Range(r)) => ValueMatcher::DoubleRange {
                    start: r.start,
                    end: r.end,
                },
                Some(D::Exact(e)) => ValueMatcher::DoubleExact(*e),
                None => {
                    return Err(ConfigError::semantic(
                        path.field("double_match"),
                        "a match pattern is required",
                    ));
                }
            },
            Some(P::StringMatch(sm)) => {
                ValueMatcher::String(StringMatcher::from_proto(sm, &path.field("string_match"))?)
            }
            Some(P::BoolMatch(b)) => ValueMatcher::Bool(*b),
            Some(P::PresentMatch(b)) => ValueMatcher::Present(*b),
            Some(P::ListMatch(l)) => {
                let p = path.field("list_match");
                let Some(m::list_matcher::MatchPattern::OneOf(one)) = &l.match_pattern else {
                    return Err(ConfigError::semantic(p, "a match pattern is required"));
                };
                ValueMatcher::List(Box::new(Self::from_proto(one, &p.field("one_of"))?))
            }
            Some(P::OrMatch(o)) => {
                let p = path.field("or_match").field("value_matchers");
                ValueMatcher::Or(
                    o.value_matchers
                        .iter()
                        .enumerate()
                        .map(|(i, v)| Self::from_proto(v, &p.index(i)))
                        .collect::<Result<_, _>>()?,
                )
            }
            None => {
                return Err(ConfigError::semantic(
                    path.clone(),
                    "a match pattern is required",
                ));
            }
        })
    }

    /// Whether `value` matches (`None`: no value at that path).
    pub fn matches(&self, value: Option<&prost_types::Value>) -> bool {
        use prost_types::value::Kind;
        let kind = value.and_then(|v| v.kind.as_ref());
        match (self, kind) {
            (ValueMatcher::Null, Some(Kind::NullValue(_))) => true,
            (ValueMatcher::DoubleRange { start, end }, Some(Kind::NumberValue(n))) => {
                *start <= *n && *n < *end
            }
            (ValueMatcher::DoubleExact(e), Some(Kind::NumberValue(n))) => e == n,
            (ValueMatcher::String(sm), Some(Kind::StringValue(s))) => sm.matches(s),
            (ValueMatcher::Bool(b), Some(Kind::BoolValue(v))) => b == v,
            (ValueMatcher::Present(p), k) => *p && k.is_some(),
            (ValueMatcher::List(one), Some(Kind::ListValue(l))) => {
                l.values.iter().any(|v| one.matches(Some(v)))
            }
            (ValueMatcher::Or(any), _) => any.iter().any(|m| m.matches(value)),
            _ => false,
        }
    }
}

/// The value at `path` (keys into nested structs) in a metadata namespace,
/// as Envoy's `Metadata::metadataValue` finds it.
pub fn metadata_value<'a>(
    namespace: Option<&'a prost_types::Struct>,
    path: &[String],
) -> Option<&'a prost_types::Value> {
    use prost_types::value::Kind;
    let (last, parents) = path.split_last()?;
    let mut current = namespace?;
    for key in parents {
        match current.fields.get(key)?.kind.as_ref()? {
            Kind::StructValue(s) => current = s,
            _ => return None,
        }
    }
    current.fields.get(last)
}

#[cfg(test)]
mod value_matcher_tests {
    use super::*;
    use prost_types::value::Kind;
    use prost_types::{ListValue, Struct, Value};

    fn v(kind: Kind) -> Value {
        Value { kind: Some(kind) }
    }

    #[test]
    fn matches_each_kind_as_envoy() {
        let s = ValueMatcher::String(StringMatcher::Exact {
            value: "a".into(),
            ignore_case: false,
        });
        assert!(s.matches(Some(&v(Kind::StringValue("a".into())))));
        assert!(!s.matches(Some(&v(Kind::NumberValue(1.0)))));
        assert!(!s.matches(None));
        let r = ValueMatcher::DoubleRange {
            start: 1.0,
            end: 2.0,
        };
        assert!(r.matches(Some(&v(Kind::NumberValue(1.0)))));
        assert!(!r.matches(Some(&v(Kind::NumberValue(2.0)))));
        assert!(ValueMatcher::Present(true).matches(Some(&v(Kind::BoolValue(false)))));
        assert!(!ValueMatcher::Present(false).matches(Some(&v(Kind::BoolValue(false)))));
        assert!(!ValueMatcher::Present(true).matches(None));
        let list = v(Kind::ListValue(ListValue {
            values: vec![v(Kind::BoolValue(false)), v(Kind::StringValue("a".into()))],
        }));
        assert!(ValueMatcher::List(Box::new(s.clone())).matches(Some(&list)));
        assert!(
            ValueMatcher::Or(vec![ValueMatcher::Null, s])
                .matches(Some(&v(Kind::StringValue("a".into()))))
        );
    }

    #[test]
    fn metadata_paths_walk_nested_structs() {
        let inner = Struct {
            fields: [("k".to_owned(), v(Kind::StringValue("x".into())))].into(),
        };
        let ns = Struct {
            fields: [("outer".to_owned(), v(Kind::StructValue(inner)))].into(),
        };
        let path = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(metadata_value(Some(&ns), &path(&["outer", "k"])).is_some());
        assert!(metadata_value(Some(&ns), &path(&["outer", "nope"])).is_none());
        assert!(metadata_value(Some(&ns), &path(&["outer", "k", "deeper"])).is_none());
        assert!(metadata_value(None, &path(&["outer"])).is_none());
    }
}
