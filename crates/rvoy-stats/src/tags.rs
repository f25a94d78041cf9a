//! Tag extraction: Envoy's default tag extractors (the regex and tokenized
//! descriptors of `source/common/config/well_known_names.cc`, Envoy 1.40, in
//! order), bootstrap `stats_config.stats_tags` (regex or fixed value),
//! `use_all_default_tags`, and `--stats-tag` CLI tags; and the tag producer
//! that turns a full stat name into its tag-extracted name plus tag list
//! exactly as Envoy's `TagProducerImpl::produceTags` does.
//!
//! Extraction order matches what Envoy 1.40 prints: tags from extractors whose
//! pattern has no literal first token (e.g. `envoy.response_code`), then the
//! fixed tags (CLI tags, then config `fixed_value` tags), then extractors keyed
//! by the name's first token (`cluster`, `http`, ...). Within each group the
//! default regex extractors come first, then the default tokenized ones, then
//! user regexes, in declaration order. All extractors run on the original
//! name; the removed character ranges are unioned at the end.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use smallvec::SmallVec;

use crate::error::StatsError;
use crate::table::NameHashBuilder;

/// A `(name, value)` tag.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Tag {
    /// Tag name, e.g. `envoy.cluster_name`.
    pub name: String,
    /// Tag value, e.g. `backend`.
    pub value: String,
}

/// Value part of a bootstrap `TagSpecifier`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TagValue {
    /// Neither `regex` nor `fixed_value`: use the default extractor(s) of that name.
    Default,
    /// `regex` (ECMAScript semantics, as Envoy's `std::regex`). Empty means `Default`.
    Regex(String),
    /// `fixed_value`: attached to every stat.
    Fixed(String),
}

/// One bootstrap `stats_config.stats_tags` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagSpecifier {
    /// `tag_name`.
    pub tag_name: String,
    /// `regex` / `fixed_value`.
    pub value: TagValue,
}

/// Inputs of the tag producer (bootstrap `stats_config` plus CLI tags).
#[derive(Clone, Debug, Default)]
pub struct TagConfig {
    /// `stats_config.use_all_default_tags` (`None` = unset = true).
    pub use_all_default_tags: Option<bool>,
    /// `stats_config.stats_tags`.
    pub stats_tags: Vec<TagSpecifier>,
    /// `--stats-tag name:value` flags, in order.
    pub cli_tags: Vec<Tag>,
}

const TAG_VALUE: &str = r"[^\.]+";

fn expand(regex: &str) -> String {
    regex
        .replace(
            "<ADDRESS>",
            r"(?:(?:\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[[a-fA-F_\d]+\])_\d+)",
        )
        .replace("<CIPHER>", r"[\w-]+")
        .replace("<TLS_VERSION>", r"TLSv\d\.\d")
        .replace("<TAG_VALUE>", TAG_VALUE)
        .replace("<ROUTE_CONFIG_NAME>", r"[\w\-\./]+")
        .replace("<SCOPED_ROUTE_CONFIG_NAME>", r"[\w\-\.]+")
        .replace(
            "<LISTENER_OR_CLUSTER_WITH_NAME>",
            r"(?:listener|cluster)\..*?",
        )
        .replace("<PROXY_PROTOCOL_VERSION>", r"\d")
}

/// `(tag name, regex, substr prefilter, negative match)` of Envoy's default
/// RE2 extractors, in Envoy's order.
const DEFAULT_REGEXES: &[(&str, &str, &str, &str)] = &[
    ("envoy.response_code", r"_rq(_(\d{3}))$", "_rq_", ""),
    ("envoy.response_code_class", r"_rq_((\d))xx$", "_rq_", ""),
    (
        "envoy.dynamo_partition_id",
        r"^http\.<TAG_VALUE>\.dynamodb\.table\.<TAG_VALUE>\.capacity\.<TAG_VALUE>(\.__partition_id=(\w{7}))$",
        ".dynamodb.table.",
        "",
    ),
    (
        "envoy.dynamo_operation",
        r"^http\.<TAG_VALUE>\.dynamodb.(?:operation|table\.<TAG_VALUE>\.capacity)(\.(<TAG_VALUE>))(?:\.|$)",
        ".dynamodb.",
        "",
    ),
    (
        "envoy.dynamo_table",
        r"^http\.<TAG_VALUE>\.dynamodb.(?:table|error)\.((<TAG_VALUE>)\.)",
        ".dynamodb.",
        "",
    ),
    (
        "envoy.ssl_cipher",
        r"^listener\..*?\.ssl\.ciphers(\.(<CIPHER>))$",
        ".ssl.ciphers.",
        "",
    ),
    (
        "envoy.ssl_curve",
        r"^<LISTENER_OR_CLUSTER_WITH_NAME>\.ssl\.curves(\.(<CIPHER>))$",
        ".ssl.curves.",
        "",
    ),
    (
        "envoy.ssl_sigalg",
        r"^<LISTENER_OR_CLUSTER_WITH_NAME>\.ssl\.sigalgs(\.(<CIPHER>))$",
        ".ssl.sigalgs.",
        "",
    ),
    (
        "envoy.ssl_version",
        r"^<LISTENER_OR_CLUSTER_WITH_NAME>\.ssl\.versions(\.(<TLS_VERSION>))$",
        ".ssl.versions.",
        "",
    ),
    (
        "cipher_suite",
        r"^cluster\.<TAG_VALUE>\.ssl\.ciphers(\.(<CIPHER>))$",
        ".ssl.ciphers.",
        "",
    ),
    (
        "envoy.http_conn_manager_prefix",
        r"^listener\..*?\.http\.((<TAG_VALUE>)\.)",
        ".http.",
        "",
    ),
    (
        "envoy.worker_id",
        r"^(?:listener\.(?:<ADDRESS>|<TAG_VALUE>)|server|listener_manager|thread_local_cluster_manager)\.worker_((\d+)\.)",
        "",
        "",
    ),
    (
        "envoy.listener_address",
        r"^listener\.((<ADDRESS>|<TAG_VALUE>)\.)",
        "",
        "admin",
    ),
    (
        "envoy.rds_route_config",
        r"^http\.<TAG_VALUE>\.rds\.((<ROUTE_CONFIG_NAME>)\.)\w+?$",
        ".rds.",
        "",
    ),
    (
        "envoy.scoped_rds_config",
        r"^http\.<TAG_VALUE>\.scoped_rds\.((<SCOPED_ROUTE_CONFIG_NAME>)\.)\w+?$",
        ".scoped_rds.",
        "",
    ),
    (
        "envoy.rbac_policy_name",
        r"^http\.<TAG_VALUE>\.rbac\.(?:<TAG_VALUE>\.)?policy\.((<TAG_VALUE>)\.)(allowed|shadow_allowed|denied|shadow_denied)$",
        "",
        "",
    ),
    (
        "envoy.rbac_http_prefix",
        r"^http\.<TAG_VALUE>\.rbac\.((<TAG_VALUE>)\.).*?",
        "",
        "policy",
    ),
    (
        "envoy.proxy_protocol_prefix",
        r"^proxy_proto\.((<TAG_VALUE>)\.).+$",
        "",
        "versions",
    ),
    (
        "envoy.proxy_protocol_version",
        r"^proxy_proto\.((?:<TAG_VALUE>\.)?versions\.v(<PROXY_PROTOCOL_VERSION>)\.)\w+$",
        "",
        "",
    ),
    (
        "envoy.tls_certificate",
        r"^<LISTENER_OR_CLUSTER_WITH_NAME>\.ssl\.certificate\.((<TAG_VALUE>)\.).*$",
        ".ssl.certificate",
        "",
    ),
    (
        "envoy.xds_resource_name",
        r"^sds\.((<TAG_VALUE>)\.).+",
        "",
        "",
    ),
    (
        "envoy.health_check_name",
        r"^cluster\.<TAG_VALUE>\.health_check(\.name\.(<TAG_VALUE>))\..+",
        ".health_check.name.",
        "",
    ),
];

/// `(tag name, token pattern)` of Envoy's default tokenized extractors.
const DEFAULT_TOKENIZED: &[(&str, &str)] = &[
    (
        "envoy.mongo_callsite",
        "mongo.*.collection.*.callsite.$.query.**",
    ),
    ("envoy.mongo_collection", "mongo.*.collection.$.**.query.*"),
    ("envoy.mongo_cmd", "mongo.*.cmd.$.**"),
    ("envoy.grpc_bridge_method", "cluster.*.grpc.*.$.**"),
    ("envoy.http_user_agent", "http.*.user_agent.$.**"),
    ("envoy.virtual_cluster", "vhost.*.vcluster.$.**"),
    ("envoy.fault_downstream_cluster", "http.*.fault.$.**"),
    ("envoy.grpc_bridge_service", "cluster.*.grpc.$.**"),
    ("envoy.tcp_prefix", "tcp.$.**"),
    ("envoy.udp_prefix", "udp.$.**"),
    ("envoy.clientssl_prefix", "auth.clientssl.$.**"),
    ("envoy.ratelimit_prefix", "ratelimit.$.**"),
    ("envoy.cluster_name", "cluster.$.**"),
    ("envoy.ext_authz_prefix", "cluster.*.ext_authz.$.**"),
    ("envoy.ext_authz_prefix", "http.*.ext_authz.$.**"),
    ("envoy.http_conn_manager_prefix", "http.$.**"),
    ("envoy.virtual_host", "vhost.$.**"),
    ("envoy.mongo_prefix", "mongo.$.**"),
    ("envoy.route", "vhost.*.route.$.**"),
    ("envoy.thrift_prefix", "thrift.$.**"),
    ("envoy.redis_prefix", "redis.$.**"),
    (
        "envoy.local_http_ratelimit_prefix",
        "$.http_local_rate_limit.**",
    ),
    (
        "envoy.local_network_ratelimit_prefix",
        "local_rate_limit.$.**",
    ),
    (
        "envoy.local_listener_ratelimit_prefix",
        "listener_local_ratelimit.$.**",
    ),
    ("envoy.dns_filter_prefix", "dns_filter.$.**"),
    ("envoy.connection_limit_prefix", "connection_limit.$.**"),
    ("envoy.rbac_prefix", "$.rbac.**"),
    ("envoy.google_grpc_client_prefix", "grpc.$.**"),
];

/// Names of all of Envoy's default tags (deduplicated, in first-seen order).
pub fn default_tag_names() -> Vec<&'static str> {
    let mut seen = HashSet::new();
    DEFAULT_REGEXES
        .iter()
        .map(|d| d.0)
        .chain(DEFAULT_TOKENIZED.iter().map(|d| d.0))
        .filter(|n| seen.insert(*n))
        .collect()
}

enum Matcher {
    /// RE2-compatible default regex (ASCII `\d`/`\w`, leftmost-first),
    /// compiled when a stat name first gets past its prefix and substring
    /// filters: most of Envoy's ~60 defaults (Mongo, Redis, DynamoDB, ...)
    /// never see a name, and compiling them all was a sixth of start-up.
    Re2 {
        source: String,
        re: OnceLock<Option<regex::bytes::Regex>>,
        negative: String,
    },
    /// User regex, ECMAScript semantics (`std::regex_search`).
    Std(StdRegex),
    /// Dot-separated token pattern with `*`, `**` and one `$`.
    Tokens {
        tokens: Vec<String>,
        match_index: usize,
    },
}

enum StdRegex {
    Plain(regex::bytes::Regex),
    Fancy(Box<fancy_regex::Regex>),
}

struct Extractor {
    name: String,
    prefix: String,
    substr: String,
    matcher: Matcher,
}

/// A regex with ASCII classes (`\d`, `\w`), as Envoy's RE2 reads the
/// defaults and as the plain form of a user's regex is tried first.
fn compile_ascii(regex: &str) -> Result<regex::bytes::Regex, regex::Error> {
    regex::bytes::RegexBuilder::new(regex)
        .unicode(false)
        .build()
}

/// Envoy's `extractRegexPrefix`: the literal first token a `^`-anchored regex
/// requires, if any.
fn regex_prefix(regex: &str) -> String {
    let b = regex.as_bytes();
    if b.first() != Some(&b'^') {
        return String::new();
    }
    for i in 1..b.len() {
        if !(b[i].is_ascii_alphanumeric() || b[i] == b'_') {
            if i > 1 {
                let last = i == b.len() - 1;
                let rest = &regex[i..];
                if (!last && (rest.starts_with("\\.") || rest.starts_with("(?=\\.")))
                    || (last && b[i] == b'$')
                {
                    return regex[1..i].to_string();
                }
            }
            break;
        }
    }
    String::new()
}

impl Extractor {
    /// One of Envoy's default regexes (`DEFAULT_REGEXES`, which all compile:
    /// see the test `every_default_regex_compiles`).
    fn re2(name: &str, regex: String, substr: &str, negative: &str) -> Self {
        Extractor {
            name: name.to_string(),
            prefix: regex_prefix(&regex),
            substr: substr.to_string(),
            matcher: Matcher::Re2 {
                source: regex,
                re: OnceLock::new(),
                negative: negative.to_string(),
            },
        }
    }

    fn std_regex(name: &str, regex: &str) -> Result<Self, StatsError> {
        if name.is_empty() {
            return Err(StatsError::EmptyTagName);
        }
        let re = match compile_ascii(regex) {
            Ok(re) => StdRegex::Plain(re),
            Err(_) => StdRegex::Fancy(Box::new(fancy_regex::Regex::new(regex).map_err(|e| {
                StatsError::InvalidRegex {
                    regex: regex.to_string(),
                    reason: e.to_string(),
                }
            })?)),
        };
        Ok(Extractor {
            name: name.to_string(),
            prefix: regex_prefix(regex),
            substr: String::new(),
            matcher: Matcher::Std(re),
        })
    }

    fn tokens(name: &str, pattern: &str) -> Self {
        let tokens: Vec<String> = pattern.split('.').map(str::to_string).collect();
        let match_index = tokens.iter().position(|t| t == "$").unwrap_or(tokens.len());
        let prefix = match tokens.first().map(String::as_str) {
            Some(t) if t != "$" && t != "*" && t != "**" => t.to_string(),
            _ => String::new(),
        };
        Extractor {
            name: name.to_string(),
            prefix,
            substr: String::new(),
            matcher: Matcher::Tokens {
                tokens,
                match_index,
            },
        }
    }

    /// Returns `(value, remove_start, remove_end)` if this extractor tags `name`.
    fn extract<'a>(
        &self,
        name: &'a str,
        input_tokens: &[&'a str],
    ) -> Option<(Cow<'a, str>, usize, usize)> {
        if !self.substr.is_empty() && !name.contains(&self.substr) {
            return None;
        }
        match &self.matcher {
            Matcher::Re2 {
                source,
                re,
                negative,
            } => {
                let re = re.get_or_init(|| compile_ascii(source).ok()).as_ref()?;
                // Most names past the substring filter do not match (every
                // `upstream_rq_*` reaches the response code extractors): a
                // match test is a fraction of a capture search.
                if !re.is_match(name.as_bytes()) {
                    return None;
                }
                let caps = re.captures(name.as_bytes())?;
                let remove = caps.get(1)?;
                if remove.is_empty() {
                    return None;
                }
                let value = match caps.get(2) {
                    Some(v) if !v.is_empty() => v,
                    _ => remove,
                };
                let value = slice_lossy(name, value.start(), value.end());
                if !negative.is_empty() && *value == **negative {
                    return None;
                }
                Some((value, remove.start(), remove.end()))
            }
            Matcher::Std(re) => {
                let (groups, g1, g2) = match re {
                    StdRegex::Plain(re) => {
                        let caps = re.captures(name.as_bytes())?;
                        (
                            caps.len(),
                            caps.get(1).map(|m| (m.start(), m.end())),
                            caps.get(2).map(|m| (m.start(), m.end())),
                        )
                    }
                    StdRegex::Fancy(re) => {
                        let caps = re.captures(name).ok()??;
                        (
                            caps.len(),
                            caps.get(1).map(|m| (m.start(), m.end())),
                            caps.get(2).map(|m| (m.start(), m.end())),
                        )
                    }
                };
                if groups <= 1 {
                    return None;
                }
                let (rs, re_) = g1.unwrap_or((name.len(), name.len()));
                let (vs, ve) = if groups > 2 {
                    g2.unwrap_or((0, 0))
                } else {
                    (rs, re_)
                };
                Some((Cow::Borrowed(name.get(vs..ve).unwrap_or("")), rs, re_))
            }
            Matcher::Tokens {
                tokens,
                match_index,
            } => {
                if *match_index >= tokens.len() {
                    return None;
                }
                let mut out = (0usize, usize::MAX);
                if !search_tokens(tokens, *match_index, input_tokens, 0, 0, 0, &mut out)
                    || out.1 >= input_tokens.len()
                {
                    return None;
                }
                let (start, idx) = out;
                let value = input_tokens[idx];
                let mut start = start;
                let mut end = start + value.len();
                if idx + 1 < input_tokens.len() {
                    end += 1;
                } else {
                    start = start.saturating_sub(1);
                }
                Some((Cow::Borrowed(value), start, end))
            }
        }
    }
}

/// `TagExtractorTokensImpl::searchTags`: on a full match, `out` holds the
/// `(char start, token index)` of the `$` token.
fn search_tokens(
    pattern: &[String],
    match_index: usize,
    input: &[&str],
    mut input_index: usize,
    mut pattern_index: usize,
    mut char_index: usize,
    out: &mut (usize, usize),
) -> bool {
    while input_index < input.len() && pattern_index < pattern.len() {
        if pattern_index == match_index {
            *out = (char_index, input_index);
            char_index += input[input_index].len() + 1;
        } else {
            let expected = pattern[pattern_index].as_str();
            if expected == "**" {
                if pattern_index == pattern.len() - 1 {
                    return true;
                }
                let next_pattern = pattern_index + 1;
                while input_index < input.len() {
                    if search_tokens(
                        pattern,
                        match_index,
                        input,
                        input_index,
                        next_pattern,
                        char_index,
                        out,
                    ) {
                        return true;
                    }
                    char_index += input[input_index].len() + 1;
                    input_index += 1;
                }
                return false;
            }
            let token = input[input_index];
            if expected != "*" && expected != token {
                return false;
            }
            char_index += token.len() + 1;
        }
        input_index += 1;
        pattern_index += 1;
    }
    pattern_index == pattern.len() && input_index == input.len()
}

/// Produces tag-extracted names and tags (`Stats::TagProducerImpl`).
pub struct TagProducer {
    without_prefix: Vec<Extractor>,
    by_prefix: HashMap<String, Vec<Extractor>, NameHashBuilder>,
    fixed: Vec<Tag>,
}

impl std::fmt::Debug for TagProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TagProducer")
            .field("without_prefix", &self.without_prefix.len())
            .field("by_prefix", &self.by_prefix.len())
            .field("fixed", &self.fixed)
            .finish()
    }
}

impl Default for TagProducer {
    /// All default extractors, no fixed tags.
    fn default() -> Self {
        TagProducer::new(&TagConfig::default()).unwrap_or_else(|_| TagProducer::none())
    }
}

impl TagProducer {
    /// A producer that extracts nothing (tag-extracted name = full name).
    pub fn none() -> Self {
        TagProducer {
            without_prefix: Vec::new(),
            by_prefix: HashMap::default(),
            fixed: Vec::new(),
        }
    }

    /// Builds a producer from bootstrap `stats_config` and CLI tags, with
    /// Envoy's validation errors.
    pub fn new(config: &TagConfig) -> Result<Self, StatsError> {
        let mut p = TagProducer::none();
        let mut names: HashSet<String> = HashSet::new();
        if config.use_all_default_tags.unwrap_or(true) {
            for &(name, re, substr, neg) in DEFAULT_REGEXES {
                names.insert(name.to_string());
                p.add(Extractor::re2(name, expand(re), substr, neg));
            }
            for &(name, pat) in DEFAULT_TOKENIZED {
                names.insert(name.to_string());
                p.add(Extractor::tokens(name, pat));
            }
        }
        for tag in &config.cli_tags {
            if !names.insert(tag.name.clone()) {
                return Err(StatsError::DuplicateTagName(tag.name.clone()));
            }
            p.fixed.push(tag.clone());
        }
        for spec in &config.stats_tags {
            let name = &spec.tag_name;
            if !names.insert(name.clone()) {
                return Err(StatsError::DuplicateTagName(name.clone()));
            }
            match &spec.value {
                TagValue::Fixed(v) => p.fixed.push(Tag {
                    name: name.clone(),
                    value: v.clone(),
                }),
                TagValue::Regex(re) if !re.is_empty() => p.add(Extractor::std_regex(name, re)?),
                _ => {
                    if p.add_defaults_matching(name) == 0 {
                        return Err(StatsError::NoDefaultRegex(name.clone()));
                    }
                }
            }
        }
        Ok(p)
    }

    fn add_defaults_matching(&mut self, name: &str) -> usize {
        let mut n = 0;
        for &(dname, re, substr, neg) in DEFAULT_REGEXES {
            if dname == name {
                self.add(Extractor::re2(dname, expand(re), substr, neg));
                n += 1;
            }
        }
        for &(dname, pat) in DEFAULT_TOKENIZED {
            if dname == name {
                self.add(Extractor::tokens(dname, pat));
                n += 1;
            }
        }
        n
    }

    fn add(&mut self, e: Extractor) {
        if e.prefix.is_empty() {
            self.without_prefix.push(e);
        } else {
            self.by_prefix.entry(e.prefix.clone()).or_default().push(e);
        }
    }

    /// Returns the tag-extracted name and tags of `name`.
    pub fn produce_tags(&self, name: &str) -> (String, Vec<Tag>) {
        let mut extracted = String::new();
        let mut tags = TagRefs::new();
        self.produce_tags_into(name, &mut extracted, &mut tags);
        let tags = tags
            .into_iter()
            .map(|t| Tag {
                name: t.name.to_string(),
                value: t.value.into_owned(),
            })
            .collect();
        (extracted, tags)
    }

    /// [`produce_tags`](Self::produce_tags) without an allocation per tag:
    /// the tag-extracted name replaces `extracted`'s contents, the tags are
    /// appended to `tags`, borrowing their names from the producer and their
    /// values from `name` (or the producer, for fixed tags). The store calls
    /// this once per stat, when its tags are first read (a large config
    /// registers a hundred thousand stats).
    pub(crate) fn produce_tags_into<'a>(
        &'a self,
        name: &'a str,
        extracted: &mut String,
        tags: &mut TagRefs<'a>,
    ) {
        let mut remove: SmallVec<[(usize, usize); 4]> = SmallVec::new();
        // `split('.')` and `find('.')` search through `memchr` per piece,
        // several times the cost of one pass over a name this short.
        let mut tokens: SmallVec<[&str; 16]> = SmallVec::new();
        let mut first_dot = None;
        let mut start = 0;
        for (i, &b) in name.as_bytes().iter().enumerate() {
            if b == b'.' {
                tokens.push(&name[start..i]);
                first_dot.get_or_insert(i);
                start = i + 1;
            }
        }
        tokens.push(&name[start..]);
        let mut run = |e: &'a Extractor, tags: &mut TagRefs<'a>| {
            if let Some((value, s, end)) = e.extract(name, &tokens) {
                tags.push(TagRef {
                    name: &e.name,
                    value,
                });
                if s < end {
                    remove.push((s, end));
                }
            }
        };
        for e in &self.without_prefix {
            run(e, tags);
        }
        tags.extend(self.fixed.iter().map(|t| TagRef {
            name: &t.name,
            value: Cow::Borrowed(t.value.as_str()),
        }));
        if let Some(dot) = first_dot
            && let Some(list) = self.by_prefix.get(&name[..dot])
        {
            for e in list {
                run(e, tags);
            }
        }
        remove_ranges(name, &mut remove, extracted);
    }
}

/// A tag of a stat, borrowed from the producer (its name)
/// and from the stat name (its value) where it can be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TagRef<'a> {
    pub(crate) name: &'a str,
    pub(crate) value: Cow<'a, str>,
}

/// The tags of one stat name (rarely more than four).
pub(crate) type TagRefs<'a> = SmallVec<[TagRef<'a>; 4]>;

/// `name[start..end]`, borrowed unless a user regex's match splits a
/// multi-byte character (matching runs on bytes).
fn slice_lossy(name: &str, start: usize, end: usize) -> Cow<'_, str> {
    match name.get(start..end) {
        Some(s) => Cow::Borrowed(s),
        None => {
            let bytes = name.as_bytes();
            let (s, e) = (start.min(bytes.len()), end.min(bytes.len()));
            String::from_utf8_lossy(bytes.get(s..e.max(s)).unwrap_or_default())
        }
    }
}

/// Writes `name` without the byte `ranges` (which may overlap) to `out`.
fn remove_ranges(name: &str, ranges: &mut [(usize, usize)], out: &mut String) {
    out.clear();
    if ranges.is_empty() {
        out.push_str(name);
        return;
    }
    ranges.sort_unstable();
    let bytes = name.as_bytes();
    let mut kept: SmallVec<[(usize, usize); 4]> = SmallVec::new();
    let mut pos = 0;
    for &(s, e) in ranges.iter() {
        let s = s.min(bytes.len());
        let e = e.min(bytes.len());
        if s > pos {
            kept.push((pos, s));
        }
        pos = pos.max(e);
    }
    if pos < bytes.len() {
        kept.push((pos, bytes.len()));
    }
    // The ranges come from matches on bytes: a user regex may cut a
    // multi-byte character, which then reads as U+FFFD (as the pieces of
    // bytes did before).
    if kept.iter().all(|&(s, e)| name.get(s..e).is_some()) {
        for &(s, e) in &kept {
            out.push_str(&name[s..e]);
        }
    } else {
        let joined: Vec<u8> = kept
            .iter()
            .flat_map(|&(s, e)| bytes[s..e].iter().copied())
            .collect();
        out.push_str(&String::from_utf8_lossy(&joined));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(p: &TagProducer, name: &str) -> (String, Vec<(String, String)>) {
        let (n, t) = p.produce_tags(name);
        (n, t.into_iter().map(|t| (t.name, t.value)).collect())
    }

    fn t(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn prefixes() {
        assert_eq!(regex_prefix(r"^cluster\.((.*?)\.)"), "cluster");
        assert_eq!(regex_prefix(r"^(?:listener|cluster)\..*?"), "");
        assert_eq!(regex_prefix(r"_rq(_(\d{3}))$"), "");
        assert_eq!(regex_prefix(r"^http(?=\.).*?"), "http");
    }

    #[test]
    fn every_default_regex_compiles() {
        for &(name, re, _, _) in DEFAULT_REGEXES {
            assert!(compile_ascii(&expand(re)).is_ok(), "{name}: {re}");
        }
    }

    #[test]
    fn response_code_and_cluster() {
        let p = TagProducer::default();
        assert_eq!(
            tags(&p, "cluster.backend.upstream_rq_200"),
            (
                "cluster.upstream_rq".to_string(),
                t(&[
                    ("envoy.response_code", "200"),
                    ("envoy.cluster_name", "backend")
                ])
            )
        );
        assert_eq!(
            tags(&p, "cluster.backend.upstream_rq_2xx"),
            (
                "cluster.upstream_rq_xx".to_string(),
                t(&[
                    ("envoy.response_code_class", "2"),
                    ("envoy.cluster_name", "backend")
                ])
            )
        );
    }
}
