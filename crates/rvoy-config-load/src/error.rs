//! Config errors that name the file, the line and column, and the field path.
//!
//! Every error carries the path of the field in Envoy's vocabulary
//! (`static_resources.clusters[0].connect_timeout`) and, when the config came
//! from a file, where it stands in that file. Rendering:
//! `unknown field 'cluster_nme' at envoy.yaml:23:9 (static_resources.clusters[0]); did you mean 'name'?`

use std::fmt;
use std::sync::Arc;

use crate::node::Pos;

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Seg {
    /// A message field, by its proto (snake_case) name.
    Field(Arc<str>),
    /// An element of a repeated field.
    Index(usize),
    /// An entry of a map field.
    Key(Arc<str>),
}

/// A field path such as `static_resources.listeners[0].filter_chains[0]`.
/// Its `Debug` is its rendering: `FieldPath("static_resources.listeners[0]")`.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct FieldPath(pub Vec<Seg>);

impl fmt::Debug for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("FieldPath").field(&self.to_string()).finish()
    }
}

impl FieldPath {
    pub fn root() -> Self {
        FieldPath(Vec::new())
    }

    /// This path with a field appended.
    pub fn field(&self, name: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Field(name.into()));
        p
    }

    /// This path with a list index appended.
    pub fn index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }

    /// This path with a map key appended.
    pub fn key(&self, k: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.into()));
        p
    }

    pub fn push(&mut self, seg: Seg) {
        self.0.push(seg);
    }

    pub fn pop(&mut self) {
        self.0.pop();
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses the rendering of [`fmt::Display`] back (used by tests and tools).
    pub fn parse(text: &str) -> Self {
        let mut segs = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('.') {
                rest = r;
                continue;
            }
            if let Some(r) = rest.strip_prefix("['") {
                let end = r.find("']").unwrap_or(r.len());
                segs.push(Seg::Key(r[..end].into()));
                rest = r.get(end + 2..).unwrap_or("");
                continue;
            }
            if let Some(r) = rest.strip_prefix('[') {
                let end = r.find(']').unwrap_or(r.len());
                if let Ok(i) = r[..end].parse() {
                    segs.push(Seg::Index(i));
                }
                rest = r.get(end + 1..).unwrap_or("");
                continue;
            }
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            segs.push(Seg::Field(rest[..end].into()));
            rest = &rest[end..];
        }
        FieldPath(segs)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for seg in &self.0 {
            match seg {
                Seg::Field(name) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    f.write_str(name)?;
                }
                Seg::Index(i) => write!(f, "[{i}]")?,
                Seg::Key(k) => write!(f, "['{k}']")?,
            }
            first = false;
        }
        Ok(())
    }
}

/// Where a config error stands in its source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The file name as given on the command line, or `--config-yaml`.
    pub file: Arc<str>,
    pub pos: Pos,
}

/// What kind of mistake a [`ConfigError`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The file could not be read.
    Io,
    /// The text is not YAML/JSON/protobuf.
    Syntax,
    /// A field the schema does not have.
    UnknownField,
    /// A value of the wrong JSON type or out of range.
    Type,
    /// A `validate.rules` constraint failed.
    Constraint,
    /// A deprecated field that Envoy no longer accepts by default.
    Deprecated,
    /// A semantic check (duplicate names, unknown cluster, bad regex...).
    Semantic,
    /// An extension or field Envoy knows that rvoy does not implement.
    NotSupported,
    /// An extension name/type that Envoy does not know either.
    UnknownExtension,
}

/// A config error: message, field path, optional source location and hint.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub kind: ErrorKind,
    pub message: String,
    pub path: FieldPath,
    pub location: Option<Location>,
    /// A suggestion such as `did you mean 'name'?`.
    pub hint: Option<String>,
}

impl ConfigError {
    pub fn new(kind: ErrorKind, path: FieldPath, message: impl Into<String>) -> Self {
        ConfigError {
            kind,
            message: message.into(),
            path,
            location: None,
            hint: None,
        }
    }

    pub fn at(mut self, location: Option<Location>) -> Self {
        if self.location.is_none() {
            self.location = location;
        }
        self
    }

    pub fn with_hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }

    /// The error for a feature rvoy rejects: `<path>: <what> is not supported by rvoy`.
    pub fn not_supported(path: FieldPath, what: impl fmt::Display) -> Self {
        ConfigError::new(
            ErrorKind::NotSupported,
            path,
            format!("{what} is not supported by rvoy"),
        )
    }

    pub fn semantic(path: FieldPath, message: impl Into<String>) -> Self {
        ConfigError::new(ErrorKind::Semantic, path, message)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `not supported` errors lead with the path, the way users search for them.
        if self.kind == ErrorKind::NotSupported && !self.path.is_empty() {
            write!(f, "{}: {}", self.path, self.message)?;
            if let Some(loc) = &self.location {
                write!(f, " (at {}:{})", loc.file, loc.pos)?;
            }
        } else {
            f.write_str(&self.message)?;
            match (&self.location, self.path.is_empty()) {
                (Some(loc), false) => write!(f, " at {}:{} ({})", loc.file, loc.pos, self.path)?,
                (Some(loc), true) => write!(f, " at {}:{}", loc.file, loc.pos)?,
                (None, false) => write!(f, " ({})", self.path)?,
                (None, true) => {}
            }
        }
        if let Some(hint) = &self.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

/// Several errors found in one pass; displays one per line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn first(&self) -> Option<&ConfigError> {
        self.0.first()
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// The closest of `candidates` to `name`, if it is close enough to be a typo.
///
/// Each candidate is `(spelling to compare, name to propose)`: a field `name` of
/// `Cluster` is also compared as `cluster_name`, so `cluster_nme` finds it.
pub fn did_you_mean(
    name: &str,
    candidates: impl IntoIterator<Item = (String, String)>,
) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    let mut best: Option<(usize, String)> = None;
    for (spelling, proposal) in candidates {
        let distance = strsim::damerau_levenshtein(&lower, &spelling.to_ascii_lowercase());
        let allowed = (spelling.len().max(lower.len()) / 4).max(1);
        if distance <= allowed && best.as_ref().is_none_or(|(d, _)| distance < *d) {
            best = Some((distance, proposal));
        }
    }
    best.map(|(_, proposal)| format!("did you mean '{proposal}'?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_the_issue_asks() {
        let e = ConfigError::new(
            ErrorKind::UnknownField,
            FieldPath::root()
                .field("static_resources")
                .field("clusters")
                .index(0),
            "unknown field 'cluster_nme'",
        )
        .at(Some(Location {
            file: "envoy.yaml".into(),
            pos: Pos { line: 23, col: 9 },
        }))
        .with_hint(did_you_mean(
            "cluster_nme",
            ["name", "type", "connect_timeout"]
                .into_iter()
                .flat_map(|f| {
                    [
                        (f.to_owned(), f.to_owned()),
                        (format!("cluster_{f}"), f.to_owned()),
                    ]
                }),
        ));
        assert_eq!(
            e.to_string(),
            "unknown field 'cluster_nme' at envoy.yaml:23:9 (static_resources.clusters[0]); did you mean 'name'?"
        );
    }

    #[test]
    fn not_supported_leads_with_the_path() {
        let e = ConfigError::not_supported(
            FieldPath::parse(
                "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[1]",
            ),
            "envoy.filters.http.jwt_authn",
        );
        assert_eq!(
            e.to_string(),
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[1]: envoy.filters.http.jwt_authn is not supported by rvoy"
        );
    }

    #[test]
    fn path_round_trips() {
        let text = "a.b[3].c['x.y'].d";
        assert_eq!(FieldPath::parse(text).to_string(), text);
    }
}
