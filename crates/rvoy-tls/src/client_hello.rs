//! A TLS ClientHello parser for the TLS inspector: from the first bytes of a
//! connection, tell whether it is TLS and read the SNI and ALPN protocols,
//! across several records if the hello is split. It never panics on input
//! and reads at most the bytes it is given.

/// What the first bytes of a connection say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hello {
    /// A ClientHello, with its (lower-cased) SNI and offered ALPN protocols.
    Tls {
        sni: Option<String>,
        alpn: Vec<String>,
        /// Bytes the hello took (records included).
        bytes: usize,
    },
    /// Not a TLS ClientHello (plaintext, or malformed).
    NotTls,
    /// The hello does not fit in `max` bytes.
    TooLarge,
    /// More bytes are needed.
    NeedMore,
}

const RECORD_HEADER: usize = 5;
const HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;

/// Parses the start of a connection. `max` bounds the ClientHello message.
pub fn parse(data: &[u8], max: usize) -> Hello {
    // Reassemble the handshake message from consecutive handshake records.
    let mut message: Vec<u8> = Vec::new();
    let mut offset = 0;
    let mut needed: Option<usize> = None;
    loop {
        if data.len() < offset + RECORD_HEADER {
            if offset == 0 && !data.is_empty() && data[0] != HANDSHAKE {
                return Hello::NotTls;
            }
            if offset == 0 && data.len() >= 2 && data[1] != 3 {
                return Hello::NotTls;
            }
            return Hello::NeedMore;
        }
        let header = &data[offset..offset + RECORD_HEADER];
        if header[0] != HANDSHAKE || header[1] != 3 {
            return Hello::NotTls;
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len == 0 {
            return Hello::NotTls;
        }
        let body_start = offset + RECORD_HEADER;
        let available = data.len().saturating_sub(body_start).min(len);
        message.extend_from_slice(&data[body_start..body_start + available]);
        if message.len() >= 4 && needed.is_none() {
            if message[0] != CLIENT_HELLO {
                return Hello::NotTls;
            }
            let msg_len = (usize::from(message[1]) << 16)
                | (usize::from(message[2]) << 8)
                | usize::from(message[3]);
            if msg_len > max {
                return Hello::TooLarge;
            }
            needed = Some(4 + msg_len);
        }
        if let Some(n) = needed
            && message.len() >= n
        {
            return match client_hello(&message[4..n]) {
                Some((sni, alpn)) => Hello::Tls {
                    sni,
                    alpn,
                    bytes: body_start + available,
                },
                None => Hello::NotTls,
            };
        }
        if available < len {
            if body_start + len > max + 4 * RECORD_HEADER + 4 && needed.is_none() {
                return Hello::TooLarge;
            }
            return Hello::NeedMore;
        }
        offset = body_start + len;
        if message.len() > max + 4 {
            return Hello::TooLarge;
        }
    }
}

/// A cursor over a byte slice that fails (returns `None`) when short.
struct Cursor<'a> {
    data: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.data.len() < n {
            return None;
        }
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = usize::from(self.u8()?);
        self.take(n)
    }

    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = usize::from(self.u16()?);
        self.take(n)
    }
}

type Parsed = (Option<String>, Vec<String>);

fn client_hello(body: &[u8]) -> Option<Parsed> {
    let mut c = Cursor { data: body };
    let version = c.u16()?;
    if version >> 8 != 3 {
        return None;
    }
    c.take(32)?; // random
    c.vec8()?; // session id
    c.vec16()?; // cipher suites
    c.vec8()?; // compression methods
    let mut sni = None;
    let mut alpn = Vec::new();
    if c.data.is_empty() {
        return Some((sni, alpn));
    }
    let mut exts = Cursor { data: c.vec16()? };
    while !exts.data.is_empty() {
        let kind = exts.u16()?;
        let mut ext = Cursor {
            data: exts.vec16()?,
        };
        match kind {
            0 => {
                let mut list = Cursor { data: ext.vec16()? };
                while !list.data.is_empty() {
                    let name_type = list.u8()?;
                    let name = list.vec16()?;
                    if name_type == 0 && sni.is_none() {
                        let s = std::str::from_utf8(name).ok()?;
                        sni = Some(s.to_ascii_lowercase());
                    }
                }
            }
            16 => {
                let mut list = Cursor { data: ext.vec16()? };
                while !list.data.is_empty() {
                    let proto = list.vec8()?;
                    alpn.push(String::from_utf8_lossy(proto).into_owned());
                }
            }
            _ => {}
        }
    }
    Some((sni, alpn))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello with the given extensions, in one record.
    fn hello(exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7u8; 32]);
        body.push(0);
        body.extend_from_slice(&[0, 2, 0x13, 0x01]);
        body.extend_from_slice(&[1, 0]);
        let mut ext_bytes = Vec::new();
        for (k, v) in exts {
            ext_bytes.extend_from_slice(&k.to_be_bytes());
            ext_bytes.extend_from_slice(&(v.len() as u16).to_be_bytes());
            ext_bytes.extend_from_slice(v);
        }
        body.extend_from_slice(&(ext_bytes.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext_bytes);
        let mut msg = vec![1];
        msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        msg.extend_from_slice(&body);
        let mut rec = vec![22, 3, 1];
        rec.extend_from_slice(&(msg.len() as u16).to_be_bytes());
        rec.extend_from_slice(&msg);
        rec
    }

    fn sni_ext(name: &str) -> (u16, Vec<u8>) {
        let mut entry = vec![0];
        entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
        entry.extend_from_slice(name.as_bytes());
        let mut v = (entry.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(&entry);
        (0, v)
    }

    fn alpn_ext(protos: &[&str]) -> (u16, Vec<u8>) {
        let mut list = Vec::new();
        for p in protos {
            list.push(p.len() as u8);
            list.extend_from_slice(p.as_bytes());
        }
        let mut v = (list.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(&list);
        (16, v)
    }

    #[test]
    fn reads_sni_and_alpn() {
        let h = hello(&[sni_ext("A.Example.com"), alpn_ext(&["h2", "http/1.1"])]);
        assert_eq!(
            parse(&h, 16384),
            Hello::Tls {
                sni: Some("a.example.com".into()),
                alpn: vec!["h2".into(), "http/1.1".into()],
                bytes: h.len(),
            }
        );
    }

    #[test]
    fn partial_input_needs_more_at_every_cut() {
        let h = hello(&[sni_ext("a.example.com")]);
        for cut in 0..h.len() {
            assert_eq!(parse(&h[..cut], 16384), Hello::NeedMore, "cut at {cut}");
        }
    }

    #[test]
    fn split_across_records() {
        let h = hello(&[sni_ext("split.example.com")]);
        let msg = &h[5..];
        let (a, b) = msg.split_at(10);
        let mut two = vec![22, 3, 1];
        two.extend_from_slice(&(a.len() as u16).to_be_bytes());
        two.extend_from_slice(a);
        two.extend_from_slice(&[22, 3, 1]);
        two.extend_from_slice(&(b.len() as u16).to_be_bytes());
        two.extend_from_slice(b);
        match parse(&two, 16384) {
            Hello::Tls { sni, .. } => assert_eq!(sni.as_deref(), Some("split.example.com")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plaintext_and_garbage_are_not_tls() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\n", 16384), Hello::NotTls);
        assert_eq!(parse(b"\x16\x05", 16384), Hello::NotTls);
        assert_eq!(parse(&[22, 3, 1, 0, 4, 2, 0, 0, 0], 16384), Hello::NotTls);
        let mut h = hello(&[]);
        let last = h.len() - 1;
        h[last] ^= 0xff;
        // Truncated extensions inside a complete message: malformed.
        let mut bad = hello(&[sni_ext("x")]);
        bad[RECORD_HEADER + 4 + 2 + 32 + 1 + 4 + 2 + 1] = 0xff;
        assert_eq!(parse(&bad, 16384), Hello::NotTls);
    }

    #[test]
    fn too_large() {
        let h = hello(&[sni_ext(&"a".repeat(300))]);
        assert_eq!(parse(&h, 256), Hello::TooLarge);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x1234_5678u64;
        for len in 0..600 {
            let bytes: Vec<u8> = (0..len)
                .map(|i| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    if i < 2 {
                        [22, 3][i]
                    } else {
                        (seed >> 33) as u8
                    }
                })
                .collect();
            let _ = parse(&bytes, 16384);
        }
    }
}
