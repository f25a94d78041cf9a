//! A compact, stable text rendering of the model, for snapshot tests and
//! debugging.
//!
//! [`compact`] takes the pretty `Debug` output of a model value and leaves out
//! what says nothing: fields at their empty value (`None`, `false`, `[]`, `{}`,
//! `""`), struct fields left with nothing in them and newtypes around nothing;
//! `Some(x)` is written as `x` (an all-default `Some` stays, as `Type {}`),
//! and nesting is indented by two spaces. The model's `Debug` is made to suit it: maps are ordered,
//! regexes and formats print their source, `Arc`s are transparent.

use std::fmt::Debug;

/// `value`'s pretty `Debug` output without its empty fields.
pub fn compact(value: &impl Debug) -> String {
    compact_skipping(value, &[])
}

/// [`compact`], also leaving out every field named in `skip` (lookup
/// structures derived from the rest, say).
pub fn compact_skipping(value: &impl Debug, skip: &[&str]) -> String {
    let text = format!("{value:#?}");
    let lines: Vec<&str> = text.lines().collect();
    let mut pos = 0;
    let mut out = String::new();
    while pos < lines.len() {
        let node = parse(&lines, &mut pos);
        if let Some(node) = prune(without(node, skip), false) {
            write(&node, 0, &mut out);
        }
    }
    out
}

/// One line of `Debug` output, with the block it opens.
struct Node {
    line: String,
    /// `Some` for a line opening a block (`{`, `[`, `(`): its closing line.
    close: Option<String>,
    children: Vec<Node>,
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn opens(line: &str) -> bool {
    line.ends_with('{') || line.ends_with('[') || line.ends_with('(')
}

fn parse(lines: &[&str], pos: &mut usize) -> Node {
    let raw = lines[*pos];
    *pos += 1;
    let line = raw.trim().to_owned();
    if !opens(&line) {
        return Node {
            line,
            close: None,
            children: Vec::new(),
        };
    }
    let indent = indent_of(raw);
    let mut children = Vec::new();
    let mut close = String::new();
    while *pos < lines.len() {
        let next = lines[*pos];
        let trimmed = next.trim();
        if indent_of(next) == indent && trimmed.starts_with(['}', ']', ')']) {
            close = trimmed.to_owned();
            *pos += 1;
            break;
        }
        children.push(parse(lines, pos));
    }
    Node {
        line,
        close: Some(close),
        children,
    }
}

/// `node` without the fields named in `skip`, at any depth.
fn without(node: Node, skip: &[&str]) -> Node {
    if skip.is_empty() {
        return node;
    }
    Node {
        children: node
            .children
            .into_iter()
            .filter(|c| !field_name(&c.line).is_some_and(|n| skip.contains(&n)))
            .map(|c| without(c, skip))
            .collect(),
        ..node
    }
}

/// The field name of `line` (`name: ...`), if it is a struct field.
fn field_name(line: &str) -> Option<&str> {
    let (name, _) = line.split_once(": ")?;
    let ident = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    ident.then_some(name)
}

fn is_empty_value(value: &str) -> bool {
    matches!(
        value.trim_end_matches(','),
        "None" | "false" | "[]" | "{}" | "\"\""
    )
}

fn prune(node: Node, in_some: bool) -> Option<Node> {
    let Some(close) = node.close else {
        if let Some(name) = field_name(&node.line)
            && is_empty_value(&node.line[name.len() + 2..])
        {
            return None;
        }
        return Some(node);
    };
    let is_some = node.line.ends_with("Some(");
    let children: Vec<Node> = node
        .children
        .into_iter()
        .filter_map(|c| prune(c, is_some))
        .collect();
    if is_some && children.len() == 1 {
        // `Some(x)` is written `x`.
        let prefix = node.line.trim_end_matches("Some(");
        let mut child = children.into_iter().next()?;
        child.line = format!("{prefix}{}", child.line);
        if child.close.is_none() && !child.line.ends_with(',') && close.ends_with(',') {
            child.line.push(',');
        }
        if let Some(c) = &mut child.close
            && !c.ends_with(',')
            && close.ends_with(',')
        {
            c.push(',');
        }
        return Some(child);
    }
    if children.is_empty() && node.line.ends_with('{') {
        if in_some || field_name(&node.line).is_none() {
            // Present but all default: `Type {}`.
            let comma = if close.ends_with(',') { "," } else { "" };
            return Some(Node {
                line: format!("{}}}{comma}", node.line),
                close: None,
                children: Vec::new(),
            });
        }
        return None;
    }
    if children.is_empty() && field_name(&node.line).is_some() && node.line.ends_with('[') {
        return None;
    }
    // A field holding a newtype around nothing: `per_filter: Configs([])`.
    let empty_newtype = node.line.ends_with('(')
        && !is_some
        && match children.as_slice() {
            [] => true,
            [only] => only.close.is_none() && is_empty_value(&only.line),
            _ => false,
        };
    if empty_newtype && field_name(&node.line).is_some() {
        return None;
    }
    Some(Node {
        line: node.line,
        close: Some(close),
        children,
    })
}

fn write(node: &Node, depth: usize, out: &mut String) {
    for _ in 0..depth {
        out.push_str("  ");
    }
    out.push_str(&node.line);
    out.push('\n');
    if let Some(close) = &node.close {
        for child in &node.children {
            write(child, depth + 1, out);
        }
        for _ in 0..depth {
            out.push_str("  ");
        }
        out.push_str(close);
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(dead_code)] // Read through `Debug` only.
    #[derive(Debug, Default)]
    struct Inner {
        a: u32,
        on: bool,
    }

    #[allow(dead_code)] // Read through `Debug` only.
    #[derive(Debug, Default)]
    struct Outer {
        name: String,
        list: Vec<u32>,
        inner: Inner,
        maybe: Option<Inner>,
        set: Option<Inner>,
        value: Option<u32>,
        items: Vec<Inner>,
        wrapped: Wrapper,
    }

    #[allow(dead_code)] // Read through `Debug` only.
    #[derive(Debug, Default)]
    struct Wrapper(Vec<u32>);

    #[test]
    fn drops_empty_fields_and_unwraps_some() {
        let v = Outer {
            name: "x".into(),
            set: Some(Inner { a: 0, on: false }),
            value: Some(3),
            items: vec![Inner { a: 1, on: true }, Inner::default()],
            ..Outer::default()
        };
        assert_eq!(
            compact(&v),
            "Outer {\n  name: \"x\",\n  inner: Inner {\n    a: 0,\n  },\n  set: Inner {\n    a: 0,\n  },\n  value: 3,\n  items: [\n    Inner {\n      a: 1,\n      on: true,\n    },\n    Inner {\n      a: 0,\n    },\n  ],\n}\n"
        );
    }
}
