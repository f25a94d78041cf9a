//! The admin's HTML pages: the home page (Envoy's command table with a form
//! per endpoint and its parameters) and `/stats?format=html`, the parameter
//! form above the text stats. rvoy serves `format=active-html` as the same
//! static page (Envoy's active page is a JavaScript application).

use std::collections::HashMap;

use crate::admin::{ENDPOINTS, Endpoint, Param, ParamKind};

/// The page head (Envoy's styles and icon).
const HEAD: &str = include_str!("admin_head.html");

/// Escapes text for HTML content and attributes, as Envoy does.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn gray(index: usize) -> &'static str {
    if index % 2 == 1 { " class='gray'" } else { "" }
}

/// One parameter row. `submit_on_change` is the stats page's auto-submit.
fn param_row(
    out: &mut String,
    index: usize,
    ep: &Endpoint,
    param: &Param,
    current: &HashMap<String, String>,
    submit_on_change: bool,
) {
    let action = ep.path.trim_start_matches('/');
    let id = format!("param-{index}-{}-{}", action.replace('/', "-"), param.name);
    let onchange = if submit_on_change {
        format!(" onchange='{}.submit()'", action.replace('/', "_"))
    } else {
        String::new()
    };
    out.push_str(&format!("<tr{}>\n", gray(index)));
    match param.kind {
        ParamKind::Bool => out.push_str(&format!(
            "  <td class='option'><input type='checkbox' name='{}' id='{id}' form='{action}'{onchange}{}></td>\n",
            param.name,
            if current.contains_key(param.name) { " checked" } else { "" },
        )),
        ParamKind::Str => out.push_str(&format!(
            "  <td class='option'><input type='text' name='{}' id='{id}' form='{action}'{onchange}{} /></td>\n",
            param.name,
            current
                .get(param.name)
                .map(|v| format!(" value='{}'", escape(v)))
                .unwrap_or_default(),
        )),
        ParamKind::Enum(choices) => {
            let selected = current.get(param.name).map_or("", String::as_str);
            out.push_str("  <td class='option'>\n");
            out.push_str(&format!(
                "    <select name='{}' id='{id}' form='{action}'{onchange}>\n",
                param.name
            ));
            for c in choices {
                let sel = if *c == selected { " selected" } else { "" };
                out.push_str(&format!(
                    "      <option value='{c}'{sel}>{c}</option>\n"
                ));
            }
            out.push_str("    </select>\n  </td>\n");
        }
    }
    out.push_str(&format!(
        "  <td class='home-data'><label for='{id}'>{}</label></td>\n</tr>\n",
        escape(param.help)
    ));
}

const TABLE_START: &str = "<body>\n\n  <table class='home-table'>\n    <thead>\n      <tr>\n        <th class='home-data'>Command</th>\n        <th class='home-data'>Description</th>\n      </tr>\n    </thead>\n    <tbody>\n";

/// The admin home page.
pub fn home() -> String {
    let mut out = String::with_capacity(24 * 1024);
    out.push_str(HEAD);
    out.push_str(TABLE_START);
    let none = HashMap::new();
    for (i, ep) in ENDPOINTS.iter().enumerate() {
        let index = i + 1;
        if ep.path == "/" {
            continue;
        }
        let action = ep.path.trim_start_matches('/');
        out.push_str("\n<tr class='vert-space'><td></td><td></td></tr>\n");
        out.push_str(&format!("<tr{}>\n", gray(index)));
        if ep.post || !ep.params.is_empty() {
            let (method, button) = if ep.post {
                ("post", String::from("<button>"))
            } else {
                ("get", String::from("<button class='button-as-link'>"))
            };
            out.push_str(&format!(
                "  <td class='home-data'><form action='{action}' method='{method}' id='{action}' class='home-form'>\n    {button}{action}</button>\n  </form></td>\n"
            ));
        } else {
            out.push_str(&format!(
                "  <td class='home-data'><a href='{action}'>{action}</a></td>\n"
            ));
        }
        out.push_str(&format!(
            "  <td class='home-data'>{}</td>\n</tr>\n",
            escape(ep.help)
        ));
        for param in ep.params {
            param_row(&mut out, index, ep, param, &none, false);
        }
    }
    out.push_str("\n    </tbody>\n  </table>\n</body>\n</html>\n");
    out
}

/// `/stats?format=html`: the `/stats` parameters as a form, then the stats.
pub fn stats_page(query: &str, _params: &rvoy_stats::render::StatsParams, text: &str) -> String {
    let current = crate::admin::query_params(query);
    let mut out = String::with_capacity(text.len() + 16 * 1024);
    out.push_str(HEAD);
    out.push_str(TABLE_START);
    out.push_str("\n<tr><td><form action='stats' method='get' id='stats' class='home-form'></form></td><td></td></tr>\n");
    if let Some(ep) = crate::admin::endpoint("/stats") {
        for param in ep.params {
            param_row(&mut out, 1, ep, param, &current, true);
        }
    }
    out.push_str("\n    </tbody>\n  </table>\n<pre>\n");
    out.push_str(&escape(text));
    out.push_str("</pre>\n</body>\n</html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_lists_every_endpoint() {
        let page = home();
        assert!(page.starts_with("<!DOCTYPE html>"));
        for ep in ENDPOINTS.iter().filter(|e| e.path != "/") {
            assert!(
                page.contains(&format!("'{}'", ep.path.trim_start_matches('/'))),
                "{}",
                ep.path
            );
        }
        assert!(page.contains("&lt;logger_name1&gt;"));
        assert!(page.ends_with("</html>\n"));
    }

    #[test]
    fn escapes() {
        assert_eq!(escape("a<b>'&\""), "a&lt;b&gt;&#39;&amp;&quot;");
    }
}
