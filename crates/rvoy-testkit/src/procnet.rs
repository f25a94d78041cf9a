//! Readiness without probing: which TCP ports are in LISTEN state, read from
//! `/proc/net/tcp` and `/proc/net/tcp6` (so no test connection ever touches a listener or
//! its stats).

use std::collections::BTreeSet;

/// The `st` value of a listening socket.
const TCP_LISTEN: &str = "0A";

/// Ports of every socket in LISTEN state, IPv4 and IPv6.
pub fn listening_ports() -> BTreeSet<u16> {
    let mut out = BTreeSet::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(file) {
            out.extend(parse_listening(&text));
        }
    }
    out
}

/// Parses one `/proc/net/tcp*` table: local ports of the LISTEN rows.
pub fn parse_listening(table: &str) -> Vec<u16> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut cols = line.split_whitespace();
            let _slot = cols.next()?;
            let local = cols.next()?;
            let _remote = cols.next()?;
            let state = cols.next()?;
            if state != TCP_LISTEN {
                return None;
            }
            let (_, port_hex) = local.rsplit_once(':')?;
            u16::from_str_radix(port_hex, 16).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listen_rows_only() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:2710 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n   1: 0100007F:2711 0100007F:C000 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0\n";
        assert_eq!(parse_listening(table), vec![10000]);
    }

    #[test]
    fn sees_a_real_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        assert!(listening_ports().contains(&port));
    }
}
