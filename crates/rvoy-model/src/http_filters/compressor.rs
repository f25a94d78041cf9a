//! `envoy.filters.http.compressor` and its compression libraries
//! (`envoy.compression.{gzip,brotli,zstd}.compressor`): the filter's config,
//! with Envoy's defaults and its translation of the deprecated top-level
//! fields, and the per-route `CompressorPerRoute`.

use std::sync::Arc;

use bytes::Bytes;
use rvoy_api::envoy::extensions::compression::brotli::compressor::v3 as brotli_pb;
use rvoy_api::envoy::extensions::compression::gzip::compressor::v3 as gzip_pb;
use rvoy_api::envoy::extensions::compression::zstd::compressor::v3 as zstd_pb;
use rvoy_api::envoy::extensions::filters::http::compressor::v3 as pb;
use rvoy_config_load::{ConfigError, FieldPath};

use crate::extension::{self, Category};
use crate::matcher::StringMatcher;
use crate::support::{Diagnostics, MessageSupport, yes};

pub(crate) static SUPPORT: &[MessageSupport] = &[
    MessageSupport {
        message: "envoy.extensions.filters.http.compressor.v3.Compressor",
        fields: &[
            yes("content_length"),
            yes("content_type"),
            yes("disable_on_etag_header"),
            yes("remove_accept_encoding_header"),
            yes("runtime_enabled"),
            yes("compressor_library"),
            yes("request_direction_config"),
            yes("response_direction_config"),
            yes("choose_first"),
        ],
    },
    MessageSupport {
        message: "envoy.extensions.filters.http.compressor.v3.Compressor.CommonDirectionConfig",
        fields: &[
            yes("enabled"),
            yes("min_content_length"),
            yes("content_type"),
            yes("content_type_matcher"),
        ],
    },
    MessageSupport {
        message: "envoy.extensions.filters.http.compressor.v3.Compressor.RequestDirectionConfig",
        fields: &[yes("common_config")],
    },
    MessageSupport {
        message: "envoy.extensions.filters.http.compressor.v3.Compressor.ResponseDirectionConfig",
        fields: &[
            yes("common_config"),
            yes("disable_on_etag_header"),
            yes("weaken_etag_on_compress"),
            yes("remove_accept_encoding_header"),
            yes("uncompressible_response_codes"),
            yes("status_header_enabled"),
        ],
    },
    MessageSupport {
        message: "envoy.extensions.filters.http.compressor.v3.CompressorPerRoute",
        fields: &[yes("disabled"), yes("overrides")],
    },
    MessageSupport {
        message: "envoy.extensions.filters.http.compressor.v3.CompressorOverrides",
        fields: &[yes("response_direction_config"), yes("compressor_library")],
    },
    MessageSupport {
        message: "envoy.extensions.filters.http.compressor.v3.ResponseDirectionOverrides",
        fields: &[yes("remove_accept_encoding_header")],
    },
    MessageSupport {
        message: "envoy.config.core.v3.RuntimeFeatureFlag",
        fields: &[yes("default_value"), yes("runtime_key")],
    },
    MessageSupport {
        message: "envoy.extensions.compression.gzip.compressor.v3.Gzip",
        fields: &[
            yes("memory_level"),
            yes("compression_level"),
            yes("compression_strategy"),
            yes("window_bits"),
            yes("chunk_size"),
        ],
    },
    MessageSupport {
        message: "envoy.extensions.compression.brotli.compressor.v3.Brotli",
        fields: &[
            yes("quality"),
            yes("encoder_mode"),
            yes("window_bits"),
            yes("input_block_bits"),
            yes("chunk_size"),
            yes("disable_literal_context_modeling"),
        ],
    },
    MessageSupport {
        message: "envoy.extensions.compression.zstd.compressor.v3.Zstd",
        fields: &[
            yes("compression_level"),
            yes("enable_checksum"),
            yes("strategy"),
            yes("dictionary"),
            yes("chunk_size"),
        ],
    },
];

/// Envoy's minimum content length when none is configured.
pub const DEFAULT_MIN_CONTENT_LENGTH: u64 = 30;

/// The content types compressed when none is configured (Envoy's list).
pub const DEFAULT_CONTENT_TYPES: &[&str] = &[
    "text/html",
    "text/plain",
    "text/css",
    "application/javascript",
    "application/x-javascript",
    "text/javascript",
    "text/x-javascript",
    "text/ecmascript",
    "text/js",
    "text/jscript",
    "text/x-js",
    "application/ecmascript",
    "application/x-json",
    "application/xml",
    "application/json",
    "image/svg+xml",
    "text/xml",
    "application/xhtml+xml",
    "application/grpc-web",
    "application/grpc-web+proto",
];

/// The filter's config.
#[derive(Clone, Debug)]
pub struct Compressor {
    /// `compressor_library.name` (part of the stat prefix).
    pub library_name: String,
    pub library: CompressorLibrary,
    /// `None` when `request_direction_config` is unset: request bodies are
    /// never compressed.
    pub request: Option<DirectionConfig>,
    pub response: ResponseDirection,
    /// `response_direction_config` is set: the common response stats live
    /// under `response.` (otherwise directly under the library prefix).
    pub response_stats_nested: bool,
    pub choose_first: bool,
}

/// What both directions share.
#[derive(Clone, Debug)]
pub struct DirectionConfig {
    /// `enabled.default_value` (true when unset).
    pub enabled: bool,
    pub min_content_length: u64,
    pub content_types: ContentTypes,
}

/// Which content types are compressed.
#[derive(Clone, Debug)]
pub enum ContentTypes {
    /// Media types, lower case, compared case-insensitively.
    Names(Vec<String>),
    /// `content_type_matcher`: any matcher matching the media type.
    Matchers(Vec<StringMatcher>),
}

impl ContentTypes {
    /// Whether `media_type` (the `content-type` value before any `;`,
    /// trimmed) is one of them.
    pub fn allows(&self, media_type: &str) -> bool {
        match self {
            ContentTypes::Names(names) => names.iter().any(|n| n.eq_ignore_ascii_case(media_type)),
            ContentTypes::Matchers(ms) => ms.iter().any(|m| m.matches(media_type)),
        }
    }
}

/// The response direction.
#[derive(Clone, Debug)]
pub struct ResponseDirection {
    pub common: DirectionConfig,
    pub disable_on_etag_header: bool,
    pub weaken_etag_on_compress: bool,
    pub remove_accept_encoding_header: bool,
    pub uncompressible_response_codes: Vec<u16>,
    pub status_header_enabled: bool,
}

/// A compression library and its settings, with Envoy's defaults applied.
#[derive(Clone, Debug)]
pub enum CompressorLibrary {
    Gzip(Gzip),
    Brotli(Brotli),
    Zstd(Zstd),
}

impl CompressorLibrary {
    /// The `content-encoding` it produces.
    pub fn content_encoding(&self) -> &'static str {
        match self {
            CompressorLibrary::Gzip(_) => "gzip",
            CompressorLibrary::Brotli(_) => "br",
            CompressorLibrary::Zstd(_) => "zstd",
        }
    }

    /// The library's part of the filter's stat prefix.
    pub fn stats_prefix(&self) -> &'static str {
        match self {
            CompressorLibrary::Gzip(_) => "gzip.",
            CompressorLibrary::Brotli(_) => "brotli.",
            CompressorLibrary::Zstd(_) => "zstd.",
        }
    }
}

/// zlib's `deflateInit2` parameters (gzip wrapper).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gzip {
    /// -1 (zlib's default, 6) or 1..=9.
    pub level: i32,
    pub strategy: GzipStrategy,
    /// 1..=9 (Envoy's default 5).
    pub memory_level: u8,
    /// 9..=15 (Envoy's default 12), without the gzip flag.
    pub window_bits: u8,
    /// Output buffer size (default 4096).
    pub chunk_size: usize,
}

/// zlib's compression strategies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GzipStrategy {
    Default,
    Filtered,
    HuffmanOnly,
    Rle,
    Fixed,
}

/// Brotli encoder parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Brotli {
    /// 0..=11 (default 3).
    pub quality: u32,
    /// 10..=24 (default 18).
    pub window_bits: u32,
    /// 16..=24 (default 24).
    pub input_block_bits: u32,
    pub mode: BrotliMode,
    pub disable_literal_context_modeling: bool,
    pub chunk_size: usize,
}

/// Brotli's encoder modes (`DEFAULT` is brotli's default, generic).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrotliMode {
    Generic,
    Text,
    Font,
}

/// Zstandard parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zstd {
    /// 0 is zstd's default level (3).
    pub level: i32,
    pub checksum: bool,
    /// 0: zstd chooses; 1..=9: `ZSTD_fast`..`ZSTD_btultra2`.
    pub strategy: u32,
    pub dictionary: Option<Bytes>,
    /// Output buffer size (default `ZSTD_CStreamOutSize()`).
    pub chunk_size: Option<usize>,
}

impl Compressor {
    pub fn from_proto(
        p: &pb::Compressor,
        path: &FieldPath,
        diags: &mut Diagnostics,
    ) -> Result<Self, ConfigError> {
        let lib_path = path.field("compressor_library");
        let lib = p.compressor_library.as_ref().ok_or_else(|| {
            ConfigError::semantic(lib_path.clone(), "compressor_library is required")
        })?;
        let library = library(lib, &lib_path, diags)?;
        let request = match &p.request_direction_config {
            Some(r) => {
                let rp = path
                    .field("request_direction_config")
                    .field("common_config");
                Some(DirectionConfig::from_proto(
                    &r.common_config.clone().unwrap_or_default(),
                    &rp,
                )?)
            }
            None => None,
        };
        let response = match &p.response_direction_config {
            Some(r) => {
                let rp = path.field("response_direction_config");
                ResponseDirection {
                    common: DirectionConfig::from_proto(
                        &r.common_config.clone().unwrap_or_default(),
                        &rp.field("common_config"),
                    )?,
                    disable_on_etag_header: r.disable_on_etag_header,
                    weaken_etag_on_compress: r.weaken_etag_on_compress,
                    remove_accept_encoding_header: r.remove_accept_encoding_header,
                    uncompressible_response_codes: r
                        .uncompressible_response_codes
                        .iter()
                        .map(|c| u16::try_from(*c).unwrap_or(u16::MAX))
                        .collect(),
                    status_header_enabled: r.status_header_enabled,
                }
            }
            // Envoy translates the deprecated top-level fields.
            None => ResponseDirection {
                common: DirectionConfig {
                    enabled: feature_flag(p.runtime_enabled.as_ref()),
                    min_content_length: min_length(p.content_length),
                    content_types: names(&p.content_type),
                },
                disable_on_etag_header: p.disable_on_etag_header,
                weaken_etag_on_compress: false,
                remove_accept_encoding_header: p.remove_accept_encoding_header,
                uncompressible_response_codes: Vec::new(),
                status_header_enabled: false,
            },
        };
        Ok(Compressor {
            library_name: lib.name.clone(),
            library,
            request,
            response,
            response_stats_nested: p.response_direction_config.is_some(),
            choose_first: p.choose_first,
        })
    }
}

impl DirectionConfig {
    fn from_proto(
        p: &pb::compressor::CommonDirectionConfig,
        path: &FieldPath,
    ) -> Result<Self, ConfigError> {
        let content_types = if p.content_type_matcher.is_empty() {
            names(&p.content_type)
        } else {
            ContentTypes::Matchers(
                p.content_type_matcher
                    .iter()
                    .enumerate()
                    .map(|(i, m)| {
                        StringMatcher::from_proto(m, &path.field("content_type_matcher").index(i))
                    })
                    .collect::<Result<_, _>>()?,
            )
        };
        Ok(DirectionConfig {
            enabled: feature_flag(p.enabled.as_ref()),
            min_content_length: min_length(p.min_content_length),
            content_types,
        })
    }
}

/// A `RuntimeFeatureFlag`'s default (`true` when the flag or its value is unset).
fn feature_flag(f: Option<&rvoy_api::envoy::config::core::v3::RuntimeFeatureFlag>) -> bool {
    f.and_then(|f| f.default_value).unwrap_or(true)
}

/// Envoy treats 0 (and unset) as the default minimum.
fn min_length(v: Option<u32>) -> u64 {
    match v {
        Some(n) if n > 0 => u64::from(n),
        _ => DEFAULT_MIN_CONTENT_LENGTH,
    }
}

fn names(types: &[String]) -> ContentTypes {
    if types.is_empty() {
        ContentTypes::Names(
            DEFAULT_CONTENT_TYPES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        )
    } else {
        ContentTypes::Names(types.iter().map(|t| t.to_ascii_lowercase()).collect())
    }
}

/// Resolves and lowers a `compressor_library` (`TypedExtensionConfig`).
fn library(
    lib: &rvoy_api::envoy::config::core::v3::TypedExtensionConfig,
    path: &FieldPath,
    diags: &mut Diagnostics,
) -> Result<CompressorLibrary, ConfigError> {
    let resolved = extension::resolve(
        Category::Compressor,
        &lib.name,
        lib.typed_config.as_ref(),
        path,
        diags,
    )?;
    let cfg_path = path.field("typed_config");
    Ok(match resolved.extension.name {
        "envoy.compression.gzip.compressor" => {
            CompressorLibrary::Gzip(gzip(&resolved.config_as(path)?))
        }
        "envoy.compression.brotli.compressor" => {
            CompressorLibrary::Brotli(brotli(&resolved.config_as(path)?))
        }
        "envoy.compression.zstd.compressor" => {
            CompressorLibrary::Zstd(zstd(&resolved.config_as(path)?, &cfg_path)?)
        }
        other => return Err(ConfigError::not_supported(path.clone(), other)),
    })
}

fn gzip(p: &gzip_pb::Gzip) -> Gzip {
    use gzip_pb::gzip::CompressionStrategy as S;
    // The enum's values are zlib's levels (BEST_SPEED = 1 ... BEST_COMPRESSION
    // = 9); DEFAULT_COMPRESSION (0) is zlib's default (-1, level 6).
    let level = match p.compression_level {
        l @ 1..=9 => l,
        _ => -1,
    };
    let strategy = match S::try_from(p.compression_strategy) {
        Ok(S::Filtered) => GzipStrategy::Filtered,
        Ok(S::HuffmanOnly) => GzipStrategy::HuffmanOnly,
        Ok(S::Rle) => GzipStrategy::Rle,
        Ok(S::Fixed) => GzipStrategy::Fixed,
        _ => GzipStrategy::Default,
    };
    // Ranges are enforced by the protos' validation rules.
    Gzip {
        level,
        strategy,
        memory_level: p.memory_level.map_or(5, |v| v.clamp(1, 9) as u8),
        window_bits: p.window_bits.map_or(12, |v| v.clamp(9, 15) as u8),
        chunk_size: p.chunk_size.map_or(4096, |v| v as usize),
    }
}

fn brotli(p: &brotli_pb::Brotli) -> Brotli {
    use brotli_pb::brotli::EncoderMode as M;
    Brotli {
        quality: p.quality.map_or(3, |v| v.min(11)),
        window_bits: p.window_bits.map_or(18, |v| v.clamp(10, 24)),
        input_block_bits: p.input_block_bits.map_or(24, |v| v.clamp(16, 24)),
        mode: match M::try_from(p.encoder_mode) {
            Ok(M::Text) => BrotliMode::Text,
            Ok(M::Font) => BrotliMode::Font,
            _ => BrotliMode::Generic,
        },
        disable_literal_context_modeling: p.disable_literal_context_modeling,
        chunk_size: p.chunk_size.map_or(4096, |v| v as usize),
    }
}

fn zstd(p: &zstd_pb::Zstd, path: &FieldPath) -> Result<Zstd, ConfigError> {
    let dictionary = match &p.dictionary {
        Some(ds) => {
            let bytes = crate::headers::data_source(ds, &path.field("dictionary"))?;
            if bytes.is_empty() {
                return Err(ConfigError::semantic(
                    path.field("dictionary"),
                    "the zstd dictionary is empty",
                ));
            }
            Some(bytes)
        }
        None => None,
    };
    Ok(Zstd {
        level: p
            .compression_level
            .map_or(0, |v| i32::try_from(v).unwrap_or(i32::MAX)),
        checksum: p.enable_checksum,
        strategy: u32::try_from(p.strategy).unwrap_or(0),
        dictionary,
        chunk_size: p.chunk_size.map(|v| v as usize),
    })
}

/// `CompressorPerRoute`, resolved.
#[derive(Clone, Debug, Default)]
pub struct CompressorPerRoute {
    /// Overrides whether responses are compressed (`disabled`: false; an
    /// `overrides.response_direction_config`: true).
    pub response_enabled: Option<bool>,
    pub remove_accept_encoding_header: Option<bool>,
    /// Replaces the filter's compression library on this route.
    pub library: Option<Arc<CompressorLibrary>>,
}

impl CompressorPerRoute {
    pub fn from_proto(
        p: &pb::CompressorPerRoute,
        path: &FieldPath,
        diags: &mut Diagnostics,
    ) -> Result<Self, ConfigError> {
        use pb::compressor_per_route::Override;
        match &p.r#override {
            Some(Override::Disabled(_)) => Ok(CompressorPerRoute {
                response_enabled: Some(false),
                ..Default::default()
            }),
            Some(Override::Overrides(o)) => {
                let op = path.field("overrides");
                let mut out = CompressorPerRoute::default();
                if let Some(r) = &o.response_direction_config {
                    out.response_enabled = Some(true);
                    out.remove_accept_encoding_header = r.remove_accept_encoding_header;
                }
                if let Some(lib) = &o.compressor_library {
                    out.library = Some(Arc::new(library(
                        lib,
                        &op.field("compressor_library"),
                        diags,
                    )?));
                }
                Ok(out)
            }
            None => Err(ConfigError::semantic(
                path.clone(),
                "one of disabled, overrides is required",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_envoy() {
        let g = gzip(&gzip_pb::Gzip::default());
        assert_eq!(
            g,
            Gzip {
                level: -1,
                strategy: GzipStrategy::Default,
                memory_level: 5,
                window_bits: 12,
                chunk_size: 4096,
            }
        );
        let b = brotli(&brotli_pb::Brotli::default());
        assert_eq!((b.quality, b.window_bits, b.input_block_bits), (3, 18, 24));
        assert_eq!(b.mode, BrotliMode::Generic);
        let z = zstd(&zstd_pb::Zstd::default(), &FieldPath::root()).expect("zstd");
        assert_eq!((z.level, z.strategy, z.chunk_size), (0, 0, None));
    }

    fn gzip_library() -> rvoy_api::envoy::config::core::v3::TypedExtensionConfig {
        use prost::Message as _;
        rvoy_api::envoy::config::core::v3::TypedExtensionConfig {
            name: "lib".into(),
            typed_config: Some(prost_types::Any {
                type_url:
                    "type.googleapis.com/envoy.extensions.compression.gzip.compressor.v3.Gzip"
                        .into(),
                value: gzip_pb::Gzip {
                    compression_level: 9,
                    window_bits: Some(15),
                    ..Default::default()
                }
                .encode_to_vec(),
            }),
        }
    }

    #[test]
    fn deprecated_fields_feed_the_response_direction() {
        let p = pb::Compressor {
            content_length: Some(100),
            content_type: vec!["Text/Plain".into()],
            disable_on_etag_header: true,
            runtime_enabled: Some(rvoy_api::envoy::config::core::v3::RuntimeFeatureFlag {
                default_value: Some(false),
                runtime_key: "k".into(),
            }),
            compressor_library: Some(gzip_library()),
            ..Default::default()
        };
        let mut diags = Diagnostics::default();
        let c = Compressor::from_proto(&p, &FieldPath::root(), &mut diags).expect("valid");
        assert!(diags.errors.is_empty(), "{:?}", diags.errors);
        assert!(!c.response.common.enabled);
        assert!(c.response.disable_on_etag_header);
        assert_eq!(c.response.common.min_content_length, 100);
        assert!(c.response.common.content_types.allows("text/PLAIN"));
        assert!(!c.response.common.content_types.allows("text/html"));
        assert!(c.request.is_none());
        assert!(!c.response_stats_nested);
        assert_eq!(c.library_name, "lib");
        match c.library {
            CompressorLibrary::Gzip(g) => assert_eq!((g.level, g.window_bits), (9, 15)),
            other => panic!("not gzip: {other:?}"),
        }
    }

    #[test]
    fn response_direction_config_replaces_deprecated_fields() {
        let p = pb::Compressor {
            content_length: Some(100),
            compressor_library: Some(gzip_library()),
            response_direction_config: Some(pb::compressor::ResponseDirectionConfig {
                uncompressible_response_codes: vec![206],
                ..Default::default()
            }),
            request_direction_config: Some(Default::default()),
            ..Default::default()
        };
        let mut diags = Diagnostics::default();
        let c = Compressor::from_proto(&p, &FieldPath::root(), &mut diags).expect("valid");
        assert_eq!(c.response.common.min_content_length, 30);
        assert_eq!(c.response.uncompressible_response_codes, vec![206]);
        assert!(c.response_stats_nested);
        assert!(c.request.as_ref().is_some_and(|r| r.enabled));
    }

    #[test]
    fn library_is_required() {
        let mut diags = Diagnostics::default();
        let e = Compressor::from_proto(&pb::Compressor::default(), &FieldPath::root(), &mut diags)
            .expect_err("no library");
        assert!(e.to_string().contains("compressor_library"), "{e}");
    }

    #[test]
    fn per_route_overrides() {
        let mut diags = Diagnostics::default();
        let disabled = pb::CompressorPerRoute {
            r#override: Some(pb::compressor_per_route::Override::Disabled(true)),
        };
        let d = CompressorPerRoute::from_proto(&disabled, &FieldPath::root(), &mut diags)
            .expect("valid");
        assert_eq!(d.response_enabled, Some(false));
        let o = pb::CompressorPerRoute {
            r#override: Some(pb::compressor_per_route::Override::Overrides(
                pb::CompressorOverrides {
                    response_direction_config: Some(pb::ResponseDirectionOverrides {
                        remove_accept_encoding_header: Some(true),
                    }),
                    compressor_library: Some(gzip_library()),
                },
            )),
        };
        let o = CompressorPerRoute::from_proto(&o, &FieldPath::root(), &mut diags).expect("valid");
        assert_eq!(o.response_enabled, Some(true));
        assert_eq!(o.remove_accept_encoding_header, Some(true));
        assert!(o.library.is_some());
    }

    #[test]
    fn zero_min_length_is_the_default() {
        assert_eq!(min_length(Some(0)), 30);
        assert_eq!(min_length(None), 30);
        assert_eq!(min_length(Some(7)), 7);
        assert!(feature_flag(None));
    }

    #[test]
    fn default_content_types() {
        let t = names(&[]);
        assert!(t.allows("application/json"));
        assert!(t.allows("TEXT/HTML"));
        assert!(!t.allows("application/octet-stream"));
    }
}
