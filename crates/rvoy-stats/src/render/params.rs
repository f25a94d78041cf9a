//! Query parameters of `/stats` and `/stats/prometheus` (Envoy's
//! `StatsParams::parse`): `usedonly`, `filter`, `type`, `histogram_buckets`,
//! `hidden`, `format`, `text_readouts`, `pretty`, with Envoy's error texts.

use crate::error::ParamsError;

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StatsFormat {
    /// `name: value` lines.
    #[default]
    Text,
    /// `{"stats":[...]}`.
    Json,
    /// Prometheus text exposition.
    Prometheus,
    /// HTML page (not rendered by this crate).
    Html,
    /// Active HTML page (not rendered by this crate).
    ActiveHtml,
}

/// `type=` filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StatsType {
    /// Text readouts only.
    TextReadouts,
    /// Counters only.
    Counters,
    /// Gauges only.
    Gauges,
    /// Histograms only.
    Histograms,
    /// Everything.
    #[default]
    All,
}

/// `histogram_buckets=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HistogramBucketsMode {
    /// Not given: quantile summary (text/JSON), cumulative buckets (Prometheus).
    #[default]
    Unset,
    /// `summary`.
    Summary,
    /// `cumulative`.
    Cumulative,
    /// `disjoint`.
    Disjoint,
    /// `detailed`.
    Detailed,
    /// `prometheusnative` (protobuf exposition only; rejected here).
    PrometheusNative,
}

/// `hidden=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HiddenFlag {
    /// Show hidden stats too.
    Include,
    /// Show only hidden stats.
    ShowOnly,
    /// Default: omit hidden stats.
    #[default]
    Exclude,
}

/// Parsed admin stats query.
#[derive(Clone, Debug, Default)]
pub struct StatsParams {
    /// `usedonly`.
    pub used_only: bool,
    /// `pretty` (accepted; output is not re-indented).
    pub pretty: bool,
    /// `text_readouts` (Prometheus).
    pub prometheus_text_readouts: bool,
    /// `filter=` as given.
    pub filter_string: Option<String>,
    /// Compiled `filter=`.
    pub filter: Option<regex::Regex>,
    /// `type=`.
    pub stats_type: StatsType,
    /// `histogram_buckets=`.
    pub histogram_buckets: HistogramBucketsMode,
    /// `hidden=`.
    pub hidden: HiddenFlag,
    /// `format=`.
    pub format: StatsFormat,
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes (no `+` to space, as Envoy).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits a query string (with or without a leading path and `?`) into
/// decoded `(key, value)` pairs, in order.
pub fn parse_query(url_or_query: &str) -> Vec<(String, String)> {
    let q = match url_or_query.find('?') {
        Some(i) => &url_or_query[i + 1..],
        None => url_or_query,
    };
    let q = q.split('#').next().unwrap_or("");
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

impl StatsParams {
    /// Parses a `/stats` (or `/stats/prometheus`) query string or URL.
    pub fn parse(url_or_query: &str) -> Result<StatsParams, ParamsError> {
        let query = parse_query(url_or_query);
        let get = |k: &str| {
            query
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        let mut p = StatsParams {
            used_only: get("usedonly").is_some(),
            pretty: get("pretty").is_some(),
            prometheus_text_readouts: get("text_readouts").is_some(),
            ..StatsParams::default()
        };
        if let Some(f) = get("filter") {
            let re = regex::Regex::new(f)
                .map_err(|e| ParamsError::InvalidFilter(describe_regex_error(f, &e)))?;
            p.filter_string = Some(f.to_string());
            p.filter = Some(re);
        }
        if let Some(b) = get("histogram_buckets") {
            p.histogram_buckets = match b {
                "cumulative" => HistogramBucketsMode::Cumulative,
                "disjoint" => HistogramBucketsMode::Disjoint,
                "detailed" => HistogramBucketsMode::Detailed,
                "summary" => HistogramBucketsMode::Summary,
                "prometheusnative" => HistogramBucketsMode::PrometheusNative,
                "none" | "" => HistogramBucketsMode::Unset,
                _ => return Err(ParamsError::InvalidHistogramBuckets),
            };
        }
        if let Some(t) = get("type") {
            p.stats_type = match t {
                "Gauges" => StatsType::Gauges,
                "Counters" => StatsType::Counters,
                "Histograms" => StatsType::Histograms,
                "TextReadouts" => StatsType::TextReadouts,
                "All" => StatsType::All,
                _ => return Err(ParamsError::InvalidType),
            };
        }
        if let Some(h) = get("hidden") {
            p.hidden = match h {
                "include" => HiddenFlag::Include,
                "only" => HiddenFlag::ShowOnly,
                _ => HiddenFlag::Exclude,
            };
        }
        if let Some(f) = get("format") {
            p.format = match f {
                "prometheus" => StatsFormat::Prometheus,
                "json" => StatsFormat::Json,
                "text" => StatsFormat::Text,
                "html" => StatsFormat::Html,
                "active-html" => StatsFormat::ActiveHtml,
                _ => return Err(ParamsError::InvalidFormat),
            };
        }
        Ok(p)
    }

    /// Checks done by the `/stats` handler for text and JSON output.
    pub fn validate_for_stats(&self) -> Result<(), ParamsError> {
        if self.histogram_buckets == HistogramBucketsMode::PrometheusNative
            && self.format != StatsFormat::Prometheus
        {
            return Err(ParamsError::NativeOutsidePrometheus);
        }
        Ok(())
    }

    /// Checks done for Prometheus text output; the error is the 400 body.
    pub fn validate_for_prometheus(&self) -> Result<(), &'static str> {
        match self.histogram_buckets {
            HistogramBucketsMode::Detailed | HistogramBucketsMode::Disjoint => {
                Err("unsupported prometheus histogram bucket mode")
            }
            HistogramBucketsMode::PrometheusNative => Err(
                "unsupported prometheusnative histogram type when not using protobuf exposition format",
            ),
            _ => Ok(()),
        }
    }

    /// Envoy's `shouldShowMetricWithoutFilter` + filter.
    pub(crate) fn should_show(&self, name: &str, used: bool, hidden: bool) -> bool {
        self.should_show_lazy(|| name, used, hidden)
    }

    /// [`Self::should_show`] that looks the name up only when there is a
    /// filter to match it against.
    #[inline]
    pub(crate) fn should_show_lazy<'a>(
        &self,
        name: impl FnOnce() -> &'a str,
        used: bool,
        hidden: bool,
    ) -> bool {
        if self.used_only && !used {
            return false;
        }
        match self.hidden {
            HiddenFlag::ShowOnly if !hidden => return false,
            HiddenFlag::Exclude if hidden => return false,
            _ => {}
        }
        self.filter.as_ref().is_none_or(|re| re.is_match(name()))
    }
}

/// RE2's wording for the most common error (an unbalanced `(`); other errors
/// fall back to the Rust regex message.
fn describe_regex_error(pattern: &str, e: &regex::Error) -> String {
    let msg = e.to_string();
    if msg.contains("unclosed group") {
        return format!("missing ): {pattern}");
    }
    if msg.contains("unopened group") {
        return format!("unexpected ): {pattern}");
    }
    msg.lines()
        .last()
        .unwrap_or("")
        .trim()
        .trim_start_matches("error: ")
        .to_string()
}
