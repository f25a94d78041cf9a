//! Free loopback ports and config templates.
//!
//! Ports are picked at random below the kernel's ephemeral range (so an outgoing connection
//! can never take one between the pick and the proxy's bind), checked free by binding
//! 127.0.0.1:PORT once, and remembered process-wide so two tests of the same binary never get
//! the same one. A template's `{{port:NAME}}` placeholders become those ports; `{{tmp}}` and
//! other `{{key}}` values come from [`Ports::set_var`].

use std::collections::{BTreeMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::{Mutex, OnceLock};

use crate::error::{Error, Result};

/// The lowest port handed out.
const LOW: u16 = 11_000;

fn taken() -> &'static Mutex<HashSet<u16>> {
    static TAKEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    TAKEN.get_or_init(|| Mutex::new(HashSet::new()))
}

/// The first port of the kernel's ephemeral range (`ip_local_port_range`), 32768 if unknown.
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// A free port on 127.0.0.1, below the ephemeral range, never handed out before by this
/// process.
pub fn free_port() -> Result<u16> {
    let high = ephemeral_low().max(LOW + 1000);
    let mut taken = taken()
        .lock()
        .map_err(|_| Error::Usage("port registry poisoned".into()))?;
    for _ in 0..2000 {
        let port = fastrand_port(LOW, high);
        if taken.contains(&port) {
            continue;
        }
        if TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).is_ok() {
            taken.insert(port);
            return Ok(port);
        }
    }
    Err(Error::Usage(format!("no free port found in {LOW}..{high}")))
}

/// A pseudo-random port in `low..high` (seeded from the clock, the pid and a counter).
fn fastrand_port(low: u16, high: u16) -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut x = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
        ^ u64::from(std::process::id()).rotate_left(32)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
    // splitmix64
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    let span = u64::from(high - low);
    low + (x % span) as u16
}

/// Named ports (and other template variables) for one run.
#[derive(Debug, Clone, Default)]
pub struct Ports {
    ports: BTreeMap<String, u16>,
    vars: BTreeMap<String, String>,
}

impl Ports {
    /// No ports yet.
    pub fn new() -> Ports {
        Ports::default()
    }

    /// The port named `name`, picking a free one the first time.
    pub fn port(&mut self, name: &str) -> Result<u16> {
        if let Some(p) = self.ports.get(name) {
            return Ok(*p);
        }
        let p = free_port()?;
        self.ports.insert(name.to_owned(), p);
        Ok(p)
    }

    /// Names an already bound port (an echo upstream's).
    pub fn insert(&mut self, name: &str, port: u16) {
        self.ports.insert(name.to_owned(), port);
    }

    /// The port named `name` if it was picked or inserted.
    pub fn get(&self, name: &str) -> Option<u16> {
        self.ports.get(name).copied()
    }

    /// Every named port.
    pub fn all(&self) -> &BTreeMap<String, u16> {
        &self.ports
    }

    /// Sets `{{key}}` for templates (e.g. `tmp`).
    pub fn set_var(&mut self, key: &str, value: &str) {
        self.vars.insert(key.to_owned(), value.to_owned());
    }

    /// Replaces every port number in `text` by `{{port:NAME}}` (longest numbers first, whole
    /// numbers only), for normalizing outputs of two runs.
    pub fn unport(&self, text: &str) -> String {
        let mut out = text.to_owned();
        let mut by_len: Vec<(&String, &u16)> = self.ports.iter().collect();
        by_len.sort_by_key(|(_, p)| std::cmp::Reverse(p.to_string().len()));
        for (name, port) in by_len {
            out = replace_number(&out, &port.to_string(), &format!("{{{{port:{name}}}}}"));
        }
        out
    }
}

/// Replaces `number` where it is not part of a longer digit run.
fn replace_number(text: &str, number: &str, with: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut last = 0;
    while let Some(pos) = text[i..].find(number) {
        let start = i + pos;
        let end = start + number.len();
        let before_digit = start > 0 && bytes[start - 1].is_ascii_digit();
        let after_digit = end < bytes.len() && bytes[end].is_ascii_digit();
        if !before_digit && !after_digit {
            out.push_str(&text[last..start]);
            out.push_str(with);
            last = end;
        }
        i = end;
    }
    out.push_str(&text[last..]);
    out
}

/// Renders a template: `{{port:NAME}}` becomes `ports.port(NAME)` (picked on first use) and
/// `{{key}}` a variable set with [`Ports::set_var`]. Returns the text and the port names it
/// used, in order of first use. An unknown `{{key}}` is an error.
pub fn render(template: &str, ports: &mut Ports) -> Result<(String, Vec<String>)> {
    let mut out = String::with_capacity(template.len());
    let mut used = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(Error::Usage(format!(
                "unterminated placeholder near {:?}",
                &rest[start..rest.len().min(start + 40)]
            )));
        };
        let key = after[..end].trim();
        if let Some(name) = key.strip_prefix("port:") {
            let port = ports.port(name)?;
            if !used.iter().any(|u| u == name) {
                used.push(name.to_owned());
            }
            out.push_str(&port.to_string());
        } else if let Some(v) = ports.vars.get(key) {
            out.push_str(v);
        } else {
            return Err(Error::Usage(format!("unknown placeholder {{{{{key}}}}}")));
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok((out, used))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_ports_and_vars() {
        let mut p = Ports::new();
        p.set_var("tmp", "/x");
        p.insert("up", 4242);
        let (text, used) =
            render("a {{port:l}} {{port:up}} {{ tmp }} {{port:l}}", &mut p).expect("render");
        let l = p.get("l").expect("l");
        assert_eq!(text, format!("a {l} 4242 /x {l}"));
        assert_eq!(used, vec!["l".to_owned(), "up".to_owned()]);
        assert!(l >= LOW && l < ephemeral_low().max(LOW + 1000));
        assert!(render("{{nope}}", &mut p).is_err());
        assert_eq!(
            p.unport("x:4242 14242 4242"),
            "x:{{port:up}} 14242 {{port:up}}"
        );
    }
}
