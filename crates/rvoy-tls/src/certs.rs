//! The certificate details of a TLS context as Envoy's `/certs` admin
//! endpoint prints them (`ca_cert` and `cert_chain` entries with path,
//! serial, SANs, days until expiration and validity times).

use crate::material::{self, CertInfo, San};

/// One certificate in `/certs`.
#[derive(Clone, Debug)]
pub struct CertDetail {
    pub path: String,
    pub info: CertInfo,
}

/// One context in `/certs`.
#[derive(Clone, Debug, Default)]
pub struct ContextCerts {
    pub ca_cert: Vec<CertDetail>,
    pub cert_chain: Vec<CertDetail>,
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn detail(d: &CertDetail, indent: &str, now: i64, out: &mut String) {
    let i = indent;
    out.push_str(&format!("{i}{{\n"));
    out.push_str(&format!("{i} \"path\": {},\n", json_string(&d.path)));
    out.push_str(&format!(
        "{i} \"serial_number\": {},\n",
        json_string(&d.info.serial)
    ));
    if d.info.sans.is_empty() {
        out.push_str(&format!("{i} \"subject_alt_names\": [],\n"));
    } else {
        out.push_str(&format!("{i} \"subject_alt_names\": [\n"));
        for (n, san) in d.info.sans.iter().enumerate() {
            let (k, v) = match san {
                San::Dns(s) => ("dns", s.clone()),
                San::Uri(s) => ("uri", s.clone()),
                San::Email(s) => ("email", s.clone()),
                San::Ip(ip) => ("ip_address", ip.to_string()),
            };
            out.push_str(&format!(
                "{i}  {{\n{i}   \"{k}\": {}\n{i}  }}",
                json_string(&v)
            ));
            out.push_str(if n + 1 < d.info.sans.len() {
                ",\n"
            } else {
                "\n"
            });
        }
        out.push_str(&format!("{i} ],\n"));
    }
    let days = (d.info.not_after - now).div_euclid(86_400).max(0);
    out.push_str(&format!("{i} \"days_until_expiration\": \"{days}\",\n"));
    out.push_str(&format!(
        "{i} \"valid_from\": \"{}\",\n",
        material::rfc3339(d.info.not_before)
    ));
    out.push_str(&format!(
        "{i} \"expiration_time\": \"{}\"\n",
        material::rfc3339(d.info.not_after)
    ));
    out.push_str(&format!("{i}}}"));
}

fn list(name: &str, items: &[CertDetail], now: i64, last: bool, out: &mut String) {
    if items.is_empty() {
        out.push_str(&format!("   \"{name}\": []"));
    } else {
        out.push_str(&format!("   \"{name}\": [\n"));
        for (n, d) in items.iter().enumerate() {
            detail(d, "    ", now, out);
            out.push_str(if n + 1 < items.len() { ",\n" } else { "\n" });
        }
        out.push_str("   ]");
    }
    out.push_str(if last { "\n" } else { ",\n" });
}

/// Renders `/certs` as Envoy does (pretty JSON, one-space indentation).
pub fn render(contexts: &[ContextCerts]) -> String {
    let now = material::unix_now();
    let mut out = String::from("{\n \"certificates\": [");
    if contexts.is_empty() {
        out.push_str("]\n}\n");
        return out;
    }
    out.push('\n');
    for (n, c) in contexts.iter().enumerate() {
        out.push_str("  {\n");
        list("ca_cert", &c.ca_cert, now, false, &mut out);
        list("cert_chain", &c.cert_chain, now, true, &mut out);
        out.push_str("  }");
        out.push_str(if n + 1 < contexts.len() { ",\n" } else { "\n" });
    }
    out.push_str(" ]\n}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_one_context() {
        assert_eq!(render(&[]), "{\n \"certificates\": []\n}\n");
        let info = CertInfo {
            serial: "01".into(),
            sans: vec![San::Dns("localhost".into())],
            common_names: vec![],
            not_before: 0,
            not_after: 86_400 * 365 * 100,
            spki_sha256: [0; 32],
            sha256: [0; 32],
        };
        let text = render(&[ContextCerts {
            ca_cert: vec![],
            cert_chain: vec![CertDetail {
                path: "/x.crt".into(),
                info,
            }],
        }]);
        let v: serde_json_check::Value = serde_json_check::from_str(&text);
        assert!(v.0.contains("\"dns\": \"localhost\""));
        assert!(text.contains("\"ca_cert\": [],\n"));
        assert!(text.contains("\"valid_from\": \"1970-01-01T00:00:00Z\""));
    }

    /// A tiny well-formedness check without a JSON dependency.
    mod serde_json_check {
        pub struct Value(pub String);
        pub fn from_str(s: &str) -> Value {
            let opens = s.matches('{').count() + s.matches('[').count();
            let closes = s.matches('}').count() + s.matches(']').count();
            assert_eq!(opens, closes, "unbalanced: {s}");
            Value(s.to_owned())
        }
    }
}
