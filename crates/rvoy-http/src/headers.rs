//! Applying configured header mutations (`*_headers_to_add/remove`) to a map,
//! rendering command operators against the request's stream info.

use http::{HeaderMap, HeaderValue};
use rvoy_format::StreamInfo;
use rvoy_model::headers::{AppendAction, HeaderMutations, HeaderValueSource};

/// Removes, then adds, as Envoy's `HeaderParser::evaluateHeaders`.
pub fn apply_mutations(m: &HeaderMutations, headers: &mut HeaderMap, info: &dyn StreamInfo) {
    for name in &m.remove {
        headers.remove(name);
    }
    for add in &m.add {
        let value = match &add.value {
            HeaderValueSource::Literal(v) => v.clone(),
            HeaderValueSource::Format(f) => {
                let mut out = String::new();
                f.render(info, &mut out);
                match HeaderValue::from_str(&out) {
                    Ok(v) => v,
                    Err(_) => continue,
                }
            }
        };
        if value.is_empty() && !add.keep_empty {
            continue;
        }
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
}
