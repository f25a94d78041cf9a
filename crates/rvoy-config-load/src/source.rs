//! Where each field of a loaded config came from.
//!
//! The documents a config was read from are kept as [`Node`] trees. An error
//! found later (a constraint, a semantic check in the model) carries only a
//! [`FieldPath`]; [`SourceMap::locate`] walks the trees along that path to find
//! its file, line and column. No per-field table is built up front, so big
//! configs pay nothing for it until an error needs a position.
//!
//! Documents are searched in the order they were merged, so an element that
//! `--config-yaml` appended to a repeated field (`listeners[1]` when the file had
//! one listener) is found in the second document at index 0.

use std::sync::Arc;

use crate::error::{FieldPath, Location, Seg};
use crate::node::{Node, Value};
use crate::proto_json::snake;

/// The documents of one config, in merge order.
#[derive(Clone, Debug, Default)]
pub struct SourceMap {
    docs: Vec<(Arc<str>, Arc<Node>)>,
}

impl SourceMap {
    pub fn new() -> Self {
        SourceMap::default()
    }

    /// Adds a document read from `file` (a path, or a name like `--config-yaml`).
    pub fn push(&mut self, file: Arc<str>, doc: Arc<Node>) {
        self.docs.push((file, doc));
    }

    /// The position of the deepest node along `path`: the field itself when the
    /// config sets it, else the nearest enclosing value that is written.
    pub fn locate(&self, path: &FieldPath) -> Option<Location> {
        let mut offsets = Offsets::default();
        let mut best: Option<(usize, Location)> = None;
        for (file, doc) in &self.docs {
            let (depth, node) = walk(doc, path, &mut offsets);
            if best.as_ref().is_none_or(|(d, _)| depth > *d) && node.pos.line > 0 {
                best = Some((
                    depth,
                    Location {
                        file: file.clone(),
                        pos: node.pos,
                    },
                ));
            }
            if depth == path.0.len() {
                break;
            }
        }
        best.map(|(_, loc)| loc)
    }

    /// Adds the best known location to an error that has none.
    pub fn annotate(&self, error: crate::ConfigError) -> crate::ConfigError {
        if error.location.is_some() {
            return error;
        }
        let loc = self.locate(&error.path);
        error.at(loc)
    }
}

/// For each list along the path, how many elements earlier documents had.
#[derive(Default)]
struct Offsets(Vec<(usize, usize)>);

impl Offsets {
    fn taken(&self, depth: usize) -> usize {
        self.0
            .iter()
            .filter(|(d, _)| *d == depth)
            .map(|(_, n)| *n)
            .sum()
    }
}

/// Follows `path` from `root`; returns how many segments matched and the node reached.
fn walk<'a>(root: &'a Node, path: &FieldPath, offsets: &mut Offsets) -> (usize, &'a Node) {
    let mut node = root;
    for (depth, seg) in path.0.iter().enumerate() {
        let next = match (seg, &node.value) {
            (Seg::Field(name), Value::Map(entries)) => entries
                .iter()
                .rev()
                .find(|(k, _)| k.name == **name || snake(&k.name) == **name)
                .map(|(_, v)| v),
            (Seg::Key(key), Value::Map(entries)) => entries
                .iter()
                .rev()
                .find(|(k, _)| k.name == **key)
                .map(|(_, v)| v),
            (Seg::Index(i), Value::List(items)) => {
                let adjusted = i.checked_sub(offsets.taken(depth));
                match adjusted.and_then(|a| items.get(a)) {
                    Some(item) => Some(item),
                    None => {
                        offsets.0.push((depth, items.len()));
                        None
                    }
                }
            }
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => return (depth, node),
        }
    }
    (path.0.len(), node)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::Pos;
    use crate::yaml::parse_yaml;

    #[test]
    fn finds_fields_and_appended_elements() {
        let mut map = SourceMap::new();
        map.push(
            "a.yaml".into(),
            Arc::new(parse_yaml("static_resources:\n  clusters:\n  - name: one\n").expect("yaml")),
        );
        map.push(
            "--config-yaml".into(),
            Arc::new(
                parse_yaml("static_resources: {clusters: [{name: two, connectTimeout: 1s}]}")
                    .expect("yaml"),
            ),
        );
        let loc = map
            .locate(&FieldPath::parse("static_resources.clusters[0].name"))
            .expect("first");
        assert_eq!((&*loc.file, loc.pos), ("a.yaml", Pos { line: 3, col: 11 }));
        let loc = map
            .locate(&FieldPath::parse(
                "static_resources.clusters[1].connect_timeout",
            ))
            .expect("second");
        assert_eq!(&*loc.file, "--config-yaml");
        assert_eq!(loc.pos.line, 1);
        // A field that is not written points at its message.
        let loc = map
            .locate(&FieldPath::parse(
                "static_resources.clusters[0].load_assignment",
            ))
            .expect("parent");
        assert_eq!(loc.pos, Pos { line: 3, col: 5 });
    }
}
