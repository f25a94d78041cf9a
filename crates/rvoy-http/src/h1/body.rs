//! HTTP/1 body framing: a decoder that turns buffered wire bytes into body
//! chunks (content-length, chunked with extensions and trailers, or
//! close-delimited), and the chunked encoder.
//!
//! Decoding is zero-copy: data chunks are split off the connection's read buffer.

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};

use super::parse::BodyFraming;

/// The largest chunk-size line accepted (hex digits plus extensions).
const MAX_CHUNK_LINE: usize = 4096;
/// The largest trailer section accepted.
const MAX_TRAILERS: usize = 60 * 1024;

/// A malformed body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("invalid chunk size")]
    ChunkSize,
    #[error("missing CRLF after chunk data")]
    ChunkCrlf,
    #[error("invalid trailers")]
    Trailers,
}

/// What one decoding step produced.
#[derive(Debug, PartialEq)]
pub enum Decoded {
    Data(Bytes),
    /// More bytes are needed from the peer.
    NeedMore,
    /// The body is complete; chunked bodies may carry trailers.
    Done(Option<HeaderMap>),
}

#[derive(Debug)]
enum State {
    Length(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkDataEnd,
    Trailers,
    UntilClose,
    Done,
}

/// Decodes one message body from a read buffer.
#[derive(Debug)]
pub struct BodyDecoder {
    state: State,
}

impl BodyDecoder {
    pub fn new(framing: BodyFraming) -> Self {
        let state = match framing {
            BodyFraming::Empty | BodyFraming::Length(0) => State::Done,
            BodyFraming::Length(n) => State::Length(n),
            BodyFraming::Chunked => State::ChunkSize,
            BodyFraming::UntilClose => State::UntilClose,
        };
        BodyDecoder { state }
    }

    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Whether the body ends only when the peer closes.
    pub fn is_close_delimited(&self) -> bool {
        matches!(self.state, State::UntilClose)
    }

    /// Called when the peer closed: a close-delimited body is then complete.
    pub fn on_eof(&mut self) -> bool {
        if matches!(self.state, State::UntilClose) {
            self.state = State::Done;
            true
        } else {
            self.is_done()
        }
    }

    /// Decodes what `buf` holds, consuming it.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, BodyError> {
        loop {
            match &mut self.state {
                State::Done => return Ok(Decoded::Done(None)),
                State::Length(remaining) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = (*remaining).min(buf.len() as u64) as usize;
                    *remaining -= take as u64;
                    if *remaining == 0 {
                        self.state = State::Done;
                    }
                    return Ok(Decoded::Data(buf.split_to(take).freeze()));
                }
                State::UntilClose => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let len = buf.len();
                    return Ok(Decoded::Data(buf.split_to(len).freeze()));
                }
                State::ChunkSize => {
                    let Some(eol) = memchr::memchr(b'\n', buf) else {
                        if buf.len() > MAX_CHUNK_LINE {
                            return Err(BodyError::ChunkSize);
                        }
                        return Ok(Decoded::NeedMore);
                    };
                    let line = &buf[..eol];
                    let line = line.strip_suffix(b"\r").ok_or(BodyError::ChunkSize)?;
                    let hex_end = line
                        .iter()
                        .position(|b| !b.is_ascii_hexdigit())
                        .unwrap_or(line.len());
                    if hex_end == 0 || hex_end > 16 {
                        return Err(BodyError::ChunkSize);
                    }
                    let rest = &line[hex_end..];
                    if !rest.is_empty() && !matches!(rest[0], b';' | b' ' | b'\t') {
                        return Err(BodyError::ChunkSize);
                    }
                    let size = u64::from_str_radix(
                        std::str::from_utf8(&line[..hex_end]).map_err(|_| BodyError::ChunkSize)?,
                        16,
                    )
                    .map_err(|_| BodyError::ChunkSize)?;
                    buf.advance(eol + 1);
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::ChunkData(size)
                    };
                }
                State::ChunkData(remaining) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = (*remaining).min(buf.len() as u64) as usize;
                    *remaining -= take as u64;
                    if *remaining == 0 {
                        self.state = State::ChunkDataEnd;
                    }
                    return Ok(Decoded::Data(buf.split_to(take).freeze()));
                }
                State::ChunkDataEnd => {
                    if buf.len() < 2 {
                        if buf.first().is_some_and(|b| *b != b'\r') {
                            return Err(BodyError::ChunkCrlf);
                        }
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(BodyError::ChunkCrlf);
                    }
                    buf.advance(2);
                    self.state = State::ChunkSize;
                }
                State::Trailers => {
                    // Either an empty line, or trailer fields ending with one.
                    if buf.starts_with(b"\r\n") {
                        buf.advance(2);
                        self.state = State::Done;
                        return Ok(Decoded::Done(None));
                    }
                    let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n") else {
                        if buf.len() > MAX_TRAILERS {
                            return Err(BodyError::Trailers);
                        }
                        if buf.len() == 1 && buf[0] != b'\r' {
                            // Not a bare CRLF: wait for the trailer section.
                        }
                        return Ok(Decoded::NeedMore);
                    };
                    let mut slots = [httparse::EMPTY_HEADER; 64];
                    let trailers = match httparse::parse_headers(&buf[..end + 4], &mut slots) {
                        Ok(httparse::Status::Complete((_, fields))) => {
                            let mut map = HeaderMap::with_capacity(fields.len());
                            for f in fields {
                                let name = HeaderName::from_bytes(f.name.as_bytes())
                                    .map_err(|_| BodyError::Trailers)?;
                                let value = HeaderValue::from_bytes(f.value)
                                    .map_err(|_| BodyError::Trailers)?;
                                map.append(name, value);
                            }
                            map
                        }
                        _ => return Err(BodyError::Trailers),
                    };
                    buf.advance(end + 4);
                    self.state = State::Done;
                    return Ok(Decoded::Done((!trailers.is_empty()).then_some(trailers)));
                }
            }
        }
    }
}

/// The chunk header for `len` bytes of data (`"1a\r\n"`).
pub fn chunk_header(len: usize, out: &mut Vec<u8>) {
    use std::io::Write;
    let _ = write!(out, "{len:x}\r\n");
}

/// The last chunk, with trailers when there are any.
pub fn last_chunk(trailers: Option<&HeaderMap>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n");
    if let Some(t) = trailers {
        for (name, value) in t {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(
        framing: BodyFraming,
        wire: &[u8],
    ) -> Result<(Vec<u8>, Option<HeaderMap>, usize), BodyError> {
        let mut d = BodyDecoder::new(framing);
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        // Feed one byte at a time to exercise every partial state.
        for &b in wire {
            buf.extend_from_slice(&[b]);
            loop {
                match d.decode(&mut buf)? {
                    Decoded::Data(c) => body.extend_from_slice(&c),
                    Decoded::NeedMore => break,
                    Decoded::Done(t) => return Ok((body, t, buf.len())),
                }
            }
        }
        Err(BodyError::ChunkSize)
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let (body, trailers, left) = decode_all(
            BodyFraming::Chunked,
            b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-t: 1\r\n\r\nNEXT",
        )
        .expect("ok");
        assert_eq!(body, b"hello world");
        assert_eq!(
            trailers.expect("trailers").get("x-t").map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
        assert_eq!(left, 0);
        let (body, trailers, _) =
            decode_all(BodyFraming::Chunked, b"3\r\nabc\r\n0\r\n\r\n").expect("ok");
        assert_eq!(body, b"abc");
        assert!(trailers.is_none());
    }

    #[test]
    fn malformed_chunks() {
        assert_eq!(
            decode_all(BodyFraming::Chunked, b"zz\r\n").unwrap_err(),
            BodyError::ChunkSize
        );
        assert_eq!(
            decode_all(BodyFraming::Chunked, b"3\r\nabcX\r\n").unwrap_err(),
            BodyError::ChunkCrlf
        );
    }

    #[test]
    fn content_length() {
        let (body, _, _) = decode_all(BodyFraming::Length(3), b"abc").expect("ok");
        assert_eq!(body, b"abc");
    }

    #[test]
    fn encoder() {
        let mut out = Vec::new();
        chunk_header(26, &mut out);
        last_chunk(None, &mut out);
        assert_eq!(out, b"1a\r\n0\r\n\r\n");
    }
}
