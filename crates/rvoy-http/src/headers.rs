//! Applying configured header mutations (`*_headers_to_add/remove`) to a map,
//! rendering command operators against the request's stream info.

use http::{HeaderMap, HeaderValue};
use rvoy_format::StreamInfo;
use rvoy_model::headers::{AppendAction, HeaderAddition, HeaderMutations, HeaderValueSource};

/// Removes, then adds, as Envoy's `HeaderParser::evaluateHeaders`.
pub fn apply_mutations(m: &HeaderMutations, headers: &mut HeaderMap, info: &dyn StreamInfo) {
    for name in &m.remove {
        headers.remove(name);
    }
    for add in &m.add {
        apply_addition(add, headers, info);
    }
}

/// Adds one configured header per its append action.
pub fn apply_addition(add: &HeaderAddition, headers: &mut HeaderMap, info: &dyn StreamInfo) {
    if let Some(value) = render_addition(add, info) {
        insert_addition(add, value, headers);
    }
}

/// Applies request header mutations to `info.request_headers`, rendering each
/// added value against the request as it is at that point (so `%REQ(...)%`
/// sees the request's headers, as in Envoy).
pub fn apply_request_mutations(m: &HeaderMutations, info: &mut crate::request_info::RequestInfo) {
    if m.is_empty() {
        return;
    }
    if let Some(h) = info.request_headers.as_mut() {
        for name in &m.remove {
            h.remove(name);
        }
    }
    for add in &m.add {
        let Some(value) = render_addition(add, &*info) else {
            continue;
        };
        if let Some(h) = info.request_headers.as_mut() {
            insert_addition(add, value, h);
        }
    }
}

/// The value of a configured header for this request; `None` when it is
/// dropped (invalid, or empty without `keep_empty_value`).
pub fn render_addition(add: &HeaderAddition, info: &dyn StreamInfo) -> Option<HeaderValue> {
    let value = match &add.value {
        HeaderValueSource::Literal(v) => v.clone(),
        HeaderValueSource::Format(f) => {
            let mut out = String::new();
            f.render(info, &mut out);
            HeaderValue::from_str(&out).ok()?
        }
    };
    if value.is_empty() && !add.keep_empty {
        return None;
    }
    Some(value)
}

/// Puts a rendered value in the map per the addition's append action.
pub fn insert_addition(add: &HeaderAddition, value: HeaderValue, headers: &mut HeaderMap) {
    match add.action {
        AppendAction::AppendIfExistsOrAdd => {
            headers.append(add.name.clone(), value);
        }
        AppendAction::AddIfAbsent => {
            if !headers.contains_key(&add.name) {
                headers.insert(add.name.clone(), value);
            }
        }
        AppendAction::OverwriteIfExistsOrAdd => {
            headers.insert(add.name.clone(), value);
        }
        AppendAction::OverwriteIfExists => {
            if headers.contains_key(&add.name) {
                headers.insert(add.name.clone(), value);
            }
        }
    }
}
