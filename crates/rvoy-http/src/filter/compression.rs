//! The compression libraries behind `envoy.filters.http.compressor`
//! (`envoy.compression.{gzip,brotli,zstd}.compressor`), streaming the way
//! Envoy's `Compressor::compress(buffer, Flush | Finish)` does:
//!
//! - gzip (zlib through `zlib-rs`, the backend `flate2` builds on, whose API
//!   takes every `deflateInit2` parameter: level, strategy, memory level,
//!   window bits): each chunk is compressed and sync-flushed, so a streamed
//!   response is not held back; the last one finishes the stream;
//! - brotli: each chunk is processed then flushed; the last one finishes;
//! - zstd: chunks are only fed to the encoder (`ZSTD_e_continue`, no flush:
//!   zstd emits blocks as they fill); the last one ends the frame.
//!
//! `chunk_size` is the size of the output buffer each library writes into.

use bytes::Bytes;
use rvoy_model::http_filters::compressor::{BrotliMode, CompressorLibrary, GzipStrategy};

/// A compression library failed (a broken invariant, not bad input).
#[derive(Debug, thiserror::Error)]
pub enum CompressionError {
    #[error("gzip compression failed: {0}")]
    Gzip(&'static str),
    #[error("brotli compression failed")]
    Brotli,
    #[error("zstd compression failed: {0}")]
    Zstd(std::io::Error),
}

/// One stream's compressor.
pub enum Compressor {
    Gzip(GzipCompressor),
    Brotli(Box<BrotliCompressor>),
    Zstd(ZstdCompressor),
}

impl Compressor {
    /// A compressor for one stream, configured as `lib` says.
    pub fn new(lib: &CompressorLibrary) -> Result<Compressor, CompressionError> {
        Ok(match lib {
            CompressorLibrary::Gzip(g) => Compressor::Gzip(GzipCompressor::new(g)),
            CompressorLibrary::Brotli(b) => Compressor::Brotli(Box::new(BrotliCompressor::new(b))),
            CompressorLibrary::Zstd(z) => Compressor::Zstd(ZstdCompressor::new(z)?),
        })
    }

    /// Compresses `input`; `finish` ends the compressed stream (Envoy's
    /// `Finish`), otherwise the library flushes as Envoy's `Flush` does.
    pub fn compress(&mut self, input: &[u8], finish: bool) -> Result<Bytes, CompressionError> {
        match self {
            Compressor::Gzip(c) => c.compress(input, finish),
            Compressor::Brotli(c) => c.compress(input, finish),
            Compressor::Zstd(c) => c.compress(input, finish),
        }
    }
}

/// zlib's deflate with a gzip wrapper.
pub struct GzipCompressor {
    z: zlib_rs::Deflate,
    chunk: usize,
}

impl GzipCompressor {
    fn new(g: &rvoy_model::http_filters::compressor::Gzip) -> GzipCompressor {
        let strategy = match g.strategy {
            GzipStrategy::Default => zlib_rs::Strategy::Default,
            GzipStrategy::Filtered => zlib_rs::Strategy::Filtered,
            GzipStrategy::HuffmanOnly => zlib_rs::Strategy::HuffmanOnly,
            GzipStrategy::Rle => zlib_rs::Strategy::Rle,
            GzipStrategy::Fixed => zlib_rs::Strategy::Fixed,
        };
        let config = zlib_rs::DeflateConfig {
            level: g.level,
            method: zlib_rs::Method::Deflated,
            // 16 + window bits: a gzip header and trailer, as Envoy asks zlib.
            window_bits: 16 + i32::from(g.window_bits.clamp(9, 15)),
            mem_level: i32::from(g.memory_level.clamp(1, 9)),
            strategy,
        };
        GzipCompressor {
            z: zlib_rs::Deflate::new_with_config(config),
            chunk: g.chunk_size.max(64),
        }
    }

    fn compress(&mut self, input: &[u8], finish: bool) -> Result<Bytes, CompressionError> {
        let flush = if finish {
            zlib_rs::DeflateFlush::Finish
        } else {
            zlib_rs::DeflateFlush::SyncFlush
        };
        let mut out: Vec<u8> = Vec::with_capacity(self.chunk.min(input.len() + 64));
        let mut consumed = 0;
        loop {
            let len = out.len();
            out.resize(len + self.chunk, 0);
            let (in0, out0) = (self.z.total_in(), self.z.total_out());
            let status = self
                .z
                .compress(&input[consumed..], &mut out[len..], flush)
                .map_err(|e| CompressionError::Gzip(e.as_str()))?;
            let read = (self.z.total_in() - in0) as usize;
            let written = (self.z.total_out() - out0) as usize;
            consumed += read;
            out.truncate(len + written);
            match status {
                zlib_rs::Status::StreamEnd => break,
                // Room was left in the output: everything was taken in and flushed.
                _ if !finish && consumed == input.len() && written < self.chunk => break,
                zlib_rs::Status::BufError if read == 0 && written == 0 => {
                    return Err(CompressionError::Gzip("no progress"));
                }
                _ => {}
            }
        }
        Ok(Bytes::from(out))
    }
}

/// Brotli's streaming encoder.
pub struct BrotliCompressor {
    state: brotli::enc::encode::BrotliEncoderStateStruct<brotli::enc::StandardAlloc>,
    chunk: usize,
}

impl BrotliCompressor {
    fn new(b: &rvoy_model::http_filters::compressor::Brotli) -> BrotliCompressor {
        use brotli::enc::encode::{BrotliEncoderParameter as P, BrotliEncoderStateStruct};
        let mut state = BrotliEncoderStateStruct::new(brotli::enc::StandardAlloc::default());
        let mode = match b.mode {
            BrotliMode::Generic => 0,
            BrotliMode::Text => 1,
            BrotliMode::Font => 2,
        };
        // The state is fresh: every parameter is accepted.
        state.set_parameter(P::BROTLI_PARAM_QUALITY, b.quality.min(11));
        state.set_parameter(P::BROTLI_PARAM_LGWIN, b.window_bits.clamp(10, 24));
        state.set_parameter(P::BROTLI_PARAM_LGBLOCK, b.input_block_bits.clamp(16, 24));
        state.set_parameter(
            P::BROTLI_PARAM_DISABLE_LITERAL_CONTEXT_MODELING,
            u32::from(b.disable_literal_context_modeling),
        );
        state.set_parameter(P::BROTLI_PARAM_MODE, mode);
        BrotliCompressor {
            state,
            chunk: b.chunk_size.max(64),
        }
    }

    fn compress(&mut self, input: &[u8], finish: bool) -> Result<Bytes, CompressionError> {
        use brotli::enc::encode::BrotliEncoderOperation as Op;
        let mut out: Vec<u8> = Vec::new();
        let mut in_off = 0;
        let mut avail_in = input.len();
        while avail_in > 0 {
            self.step(
                Op::BROTLI_OPERATION_PROCESS,
                input,
                &mut in_off,
                &mut avail_in,
                &mut out,
            )?;
        }
        let op = if finish {
            Op::BROTLI_OPERATION_FINISH
        } else {
            Op::BROTLI_OPERATION_FLUSH
        };
        loop {
            self.step(op, input, &mut in_off, &mut avail_in, &mut out)?;
            if !self.state.has_more_output() {
                break;
            }
        }
        Ok(Bytes::from(out))
    }

    fn step(
        &mut self,
        op: brotli::enc::encode::BrotliEncoderOperation,
        input: &[u8],
        in_off: &mut usize,
        avail_in: &mut usize,
        out: &mut Vec<u8>,
    ) -> Result<(), CompressionError> {
        let mut nop = |_: &mut brotli::interface::PredictionModeContextMap<
            brotli::interface::InputReferenceMut<'_>,
        >,
                       _: &mut [brotli::interface::StaticCommand],
                       _: brotli::interface::InputPair<'_>,
                       _: &mut brotli::enc::StandardAlloc| ();
        let len = out.len();
        out.resize(len + self.chunk, 0);
        let mut avail_out = self.chunk;
        let mut out_off = len;
        let mut total = None;
        let ok = self.state.compress_stream(
            op,
            avail_in,
            input,
            in_off,
            &mut avail_out,
            out,
            &mut out_off,
            &mut total,
            &mut nop,
        );
        out.truncate(out_off);
        if ok {
            Ok(())
        } else {
            Err(CompressionError::Brotli)
        }
    }
}

/// Zstandard's streaming encoder.
pub struct ZstdCompressor {
    enc: zstd::stream::raw::Encoder<'static>,
    chunk: usize,
}

impl ZstdCompressor {
    fn new(
        z: &rvoy_model::http_filters::compressor::Zstd,
    ) -> Result<ZstdCompressor, CompressionError> {
        use zstd::stream::raw::{CParameter, Encoder};
        use zstd::zstd_safe::Strategy as S;
        let mut enc = match &z.dictionary {
            Some(d) => Encoder::with_dictionary(z.level, d),
            None => Encoder::new(z.level),
        }
        .map_err(CompressionError::Zstd)?;
        enc.set_parameter(CParameter::ChecksumFlag(z.checksum))
            .map_err(CompressionError::Zstd)?;
        let strategy = match z.strategy {
            1 => Some(S::ZSTD_fast),
            2 => Some(S::ZSTD_dfast),
            3 => Some(S::ZSTD_greedy),
            4 => Some(S::ZSTD_lazy),
            5 => Some(S::ZSTD_lazy2),
            6 => Some(S::ZSTD_btlazy2),
            7 => Some(S::ZSTD_btopt),
            8 => Some(S::ZSTD_btultra),
            9 => Some(S::ZSTD_btultra2),
            _ => None,
        };
        if let Some(s) = strategy {
            enc.set_parameter(CParameter::Strategy(s))
                .map_err(CompressionError::Zstd)?;
        }
        Ok(ZstdCompressor {
            enc,
            chunk: z
                .chunk_size
                .unwrap_or_else(zstd::zstd_safe::CCtx::out_size)
                .max(64),
        })
    }

    fn compress(&mut self, input: &[u8], finish: bool) -> Result<Bytes, CompressionError> {
        use zstd::stream::raw::{InBuffer, Operation as _, OutBuffer};
        let mut out: Vec<u8> = Vec::new();
        let mut src = InBuffer::around(input);
        while src.pos() < input.len() {
            out.reserve(self.chunk);
            let len = out.len();
            let mut dst = OutBuffer::around_pos(&mut out, len);
            self.enc
                .run(&mut src, &mut dst)
                .map_err(CompressionError::Zstd)?;
        }
        if finish {
            loop {
                out.reserve(self.chunk);
                let len = out.len();
                let mut dst = OutBuffer::around_pos(&mut out, len);
                let remaining = self
                    .enc
                    .finish(&mut dst, true)
                    .map_err(CompressionError::Zstd)?;
                if remaining == 0 {
                    break;
                }
            }
        }
        Ok(Bytes::from(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvoy_model::http_filters::compressor::{Brotli, Gzip, Zstd};
    use std::io::Read as _;

    fn gzip_lib() -> CompressorLibrary {
        CompressorLibrary::Gzip(Gzip {
            level: -1,
            strategy: GzipStrategy::Default,
            memory_level: 5,
            window_bits: 12,
            chunk_size: 4096,
        })
    }

    fn brotli_lib() -> CompressorLibrary {
        CompressorLibrary::Brotli(Brotli {
            quality: 3,
            window_bits: 18,
            input_block_bits: 24,
            mode: BrotliMode::Generic,
            disable_literal_context_modeling: false,
            chunk_size: 4096,
        })
    }

    fn zstd_lib(dictionary: Option<Bytes>) -> CompressorLibrary {
        CompressorLibrary::Zstd(Zstd {
            level: 0,
            checksum: true,
            strategy: 0,
            dictionary,
            chunk_size: None,
        })
    }

    fn text(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| b"the quick brown fox jumps over the lazy dog "[i % 44])
            .collect()
    }

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(data)
            .read_to_end(&mut out)
            .expect("valid gzip");
        out
    }

    fn unbrotli(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        brotli::Decompressor::new(data, 4096)
            .read_to_end(&mut out)
            .expect("valid brotli");
        out
    }

    fn chunked(lib: &CompressorLibrary, input: &[u8], pieces: usize) -> (Vec<u8>, Vec<usize>) {
        let mut c = Compressor::new(lib).expect("compressor");
        let mut out = Vec::new();
        let mut sizes = Vec::new();
        let step = input.len().div_ceil(pieces);
        for piece in input.chunks(step) {
            let b = c.compress(piece, false).expect("compress");
            sizes.push(b.len());
            out.extend_from_slice(&b);
        }
        out.extend_from_slice(&c.compress(&[], true).expect("finish"));
        (out, sizes)
    }

    #[test]
    fn gzip_round_trips_and_flushes_every_chunk() {
        let input = text(100_000);
        let (out, sizes) = chunked(&gzip_lib(), &input, 7);
        assert!(
            sizes.iter().all(|s| *s > 0),
            "every flush emits bytes: {sizes:?}"
        );
        assert!(out.len() < input.len() / 10);
        assert_eq!(gunzip(&out), input);
        // A flushed prefix decompresses to the data sent so far.
        let mut c = Compressor::new(&gzip_lib()).expect("compressor");
        let first = c
            .compress(b"hello, streaming world", false)
            .expect("compress");
        let mut partial = Vec::new();
        let _ = flate2::read::GzDecoder::new(&first[..]).read_to_end(&mut partial);
        assert_eq!(partial, b"hello, streaming world");
    }

    #[test]
    fn gzip_every_option_is_accepted() {
        for strategy in [
            GzipStrategy::Default,
            GzipStrategy::Filtered,
            GzipStrategy::HuffmanOnly,
            GzipStrategy::Rle,
            GzipStrategy::Fixed,
        ] {
            for (level, memory_level, window_bits) in [(1, 1, 9), (9, 9, 15), (-1, 8, 12)] {
                let lib = CompressorLibrary::Gzip(Gzip {
                    level,
                    strategy,
                    memory_level,
                    window_bits,
                    chunk_size: 4096,
                });
                let input = text(20_000);
                let (out, _) = chunked(&lib, &input, 3);
                assert_eq!(gunzip(&out), input, "{strategy:?} {level} {memory_level}");
            }
        }
    }

    #[test]
    fn gzip_small_output_buffer() {
        let lib = CompressorLibrary::Gzip(Gzip {
            level: 0,
            strategy: GzipStrategy::Default,
            memory_level: 5,
            window_bits: 12,
            chunk_size: 64,
        });
        let input = text(50_000);
        let (out, _) = chunked(&lib, &input, 2);
        assert_eq!(gunzip(&out), input);
    }

    #[test]
    fn gzip_empty_stream() {
        let mut c = Compressor::new(&gzip_lib()).expect("compressor");
        let out = c.compress(&[], true).expect("finish");
        assert!(gunzip(&out).is_empty());
    }

    #[test]
    fn brotli_round_trips_and_flushes() {
        let input = text(100_000);
        let (out, sizes) = chunked(&brotli_lib(), &input, 5);
        assert!(sizes.iter().all(|s| *s > 0), "{sizes:?}");
        assert_eq!(unbrotli(&out), input);
    }

    #[test]
    fn brotli_modes_and_qualities() {
        for (quality, mode) in [
            (0, BrotliMode::Text),
            (11, BrotliMode::Font),
            (5, BrotliMode::Generic),
        ] {
            let lib = CompressorLibrary::Brotli(Brotli {
                quality,
                window_bits: 10,
                input_block_bits: 16,
                mode,
                disable_literal_context_modeling: true,
                chunk_size: 4096,
            });
            let input = text(30_000);
            let (out, _) = chunked(&lib, &input, 3);
            assert_eq!(unbrotli(&out), input);
        }
    }

    #[test]
    fn zstd_round_trips() {
        let input = text(100_000);
        let (out, _) = chunked(&zstd_lib(None), &input, 5);
        assert_eq!(zstd::decode_all(&out[..]).expect("valid zstd"), input);
    }

    #[test]
    fn zstd_with_dictionary_and_strategy() {
        let dict = Bytes::from(text(4096));
        let lib = CompressorLibrary::Zstd(Zstd {
            level: 19,
            checksum: false,
            strategy: 9,
            dictionary: Some(dict.clone()),
            chunk_size: Some(4096),
        });
        let input = text(10_000);
        let (out, _) = chunked(&lib, &input, 2);
        let mut d = zstd::stream::read::Decoder::with_dictionary(&out[..], &dict).expect("decoder");
        let mut back = Vec::new();
        d.read_to_end(&mut back).expect("valid zstd");
        assert_eq!(back, input);
    }
}
