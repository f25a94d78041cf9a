//! Request path normalization as Envoy's `normalize_path`, `merge_slashes` and
//! `path_with_escaped_slashes_action` do it, before routing.
//!
//! `normalize_path` follows RFC 3986 like Envoy's canonicalizer: percent-encoded
//! unreserved characters are decoded, other escapes have their hex upper-cased,
//! and dot segments (also when written `%2e`) are removed. The query string is
//! never touched.

use rvoy_model::hcm::EscapedSlashesAction;

/// What normalization decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Normalized {
    /// Route with this path (it may be unchanged).
    Path(String),
    /// Reject with 400.
    Reject,
    /// Redirect the client to this path (`UNESCAPE_AND_REDIRECT`).
    Redirect(String),
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes unreserved escapes and upper-cases the rest.
fn decode_unreserved(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            let v = h * 16 + l;
            if is_unreserved(v) {
                out.push(v as char);
            } else {
                out.push('%');
                out.push(bytes[i + 1].to_ascii_uppercase() as char);
                out.push(bytes[i + 2].to_ascii_uppercase() as char);
            }
            i += 3;
            continue;
        }
        let ch_len = utf8_len(bytes[i]);
        out.push_str(&path[i..(i + ch_len).min(path.len())]);
        i += ch_len;
    }
    out
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

/// RFC 3986 section 5.2.4 on an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate().skip(1) {
        match *seg {
            "." => trailing_slash = i == last,
            ".." => {
                out.pop();
                trailing_slash = i == last;
            }
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut result = String::with_capacity(path.len());
    for seg in &out {
        result.push('/');
        result.push_str(seg);
    }
    if trailing_slash || result.is_empty() {
        result.push('/');
    }
    result
}

fn merge_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut prev_slash = false;
    for c in path.chars() {
        if c == '/' {
            if !prev_slash {
                out.push(c);
            }
            prev_slash = true;
        } else {
            out.push(c);
            prev_slash = false;
        }
    }
    out
}

fn contains_escaped_slash(path: &str) -> bool {
    let b = path.as_bytes();
    b.windows(3).any(|w| {
        w[0] == b'%'
            && w[1] == b'2'
            && (w[2] == b'f' || w[2] == b'F' || w[2] == b'c' || w[2] == b'C')
    })
}

fn unescape_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let b = path.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if i + 2 < b.len() && b[i] == b'%' && b[i + 1] == b'2' && matches!(b[i + 2], b'f' | b'F') {
            out.push('/');
            i += 3;
        } else if i + 2 < b.len()
            && b[i] == b'%'
            && b[i + 1] == b'5'
            && matches!(b[i + 2], b'c' | b'C')
        {
            out.push('\\');
            i += 3;
        } else {
            let n = utf8_len(b[i]);
            out.push_str(&path[i..(i + n).min(path.len())]);
            i += n;
        }
    }
    out
}

/// Applies the listener's path options to a request target in origin form.
pub fn normalize(
    target: &str,
    normalize_path: bool,
    merge: bool,
    escaped: EscapedSlashesAction,
) -> Normalized {
    let (path, query) = match target.find('?') {
        Some(q) => (&target[..q], Some(&target[q..])),
        None => (target, None),
    };
    let mut p = path.to_owned();
    let mut redirect = false;
    if contains_escaped_slash(&p) {
        match escaped {
            EscapedSlashesAction::KeepUnchanged => {}
            EscapedSlashesAction::RejectRequest => return Normalized::Reject,
            EscapedSlashesAction::UnescapeAndForward => p = unescape_slashes(&p),
            EscapedSlashesAction::UnescapeAndRedirect => {
                p = unescape_slashes(&p);
                redirect = true;
            }
        }
    }
    if normalize_path {
        if !p.starts_with('/') {
            return Normalized::Reject;
        }
        p = remove_dot_segments(&decode_unreserved(&p));
    }
    if merge {
        p = merge_slashes(&p);
    }
    if let Some(q) = query {
        p.push_str(q);
    }
    if redirect {
        return Normalized::Redirect(p);
    }
    Normalized::Path(p)
}

/// Whether any option would change paths (skip the work otherwise).
pub fn is_active(normalize_path: bool, merge: bool, escaped: EscapedSlashesAction) -> bool {
    normalize_path || merge || escaped != EscapedSlashesAction::KeepUnchanged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> String {
        match normalize(p, true, true, EscapedSlashesAction::KeepUnchanged) {
            Normalized::Path(p) => p,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn envoy_examples() {
        assert_eq!(n("/a/./b/../c"), "/a/c");
        assert_eq!(n("/public/../admin/secret"), "/admin/secret");
        assert_eq!(n("//a///b//c?x=//y"), "/a/b/c?x=//y");
        assert_eq!(n("/%61dmin/x"), "/admin/x");
        assert_eq!(n("/a/%2e%2e/admin"), "/admin");
        assert_eq!(n("/a/b/../../../../etc"), "/etc");
        assert_eq!(n("/a%2fb"), "/a%2Fb");
        assert_eq!(n("/a/b/"), "/a/b/");
        assert_eq!(n("/a/b/.."), "/a/");
    }

    #[test]
    fn escaped_slashes() {
        assert_eq!(
            normalize("/a%2Fb", false, false, EscapedSlashesAction::RejectRequest),
            Normalized::Reject
        );
        assert_eq!(
            normalize(
                "/a%2Fb?q=%2F",
                false,
                false,
                EscapedSlashesAction::UnescapeAndForward
            ),
            Normalized::Path("/a/b?q=%2F".into())
        );
        assert_eq!(
            normalize(
                "/a%2fb",
                false,
                false,
                EscapedSlashesAction::UnescapeAndRedirect
            ),
            Normalized::Redirect("/a/b".into())
        );
    }
}
