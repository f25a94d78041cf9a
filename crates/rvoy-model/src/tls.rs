//! The `envoy.transport_sockets.tls` extension (downstream and upstream): TLS
//! contexts lowered from `DownstreamTlsContext` / `UpstreamTlsContext`, their
//! certificates, validation contexts and TLS parameters, and the secrets
//! (`static_resources.secrets`, file-based SDS) they may refer to by name.
//!
//! The model keeps certificate material as it was configured (a file path or
//! inline bytes) so that the runtime can re-read SDS files when they rotate;
//! static material is parsed here once so a broken PEM fails the load, as in
//! Envoy. Crypto (rustls) lives in `rvoy-tls`; this module is pure.

use std::collections::HashMap;
use std::path::PathBuf;

use bytes::Bytes;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rvoy_api::envoy::config::core::v3 as core;
use rvoy_api::envoy::extensions::transport_sockets::tls::v3 as pb;
use rvoy_config_load::{ConfigError, FieldPath};

use crate::matcher::StringMatcher;
use crate::support::{MessageSupport, yes};

pub(crate) static SUPPORT: &[MessageSupport] = &[
    MessageSupport {
        message: "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        fields: &[
            yes("common_tls_context"),
            yes("require_client_certificate"),
            yes("require_sni"),
            yes("disable_stateless_session_resumption"),
            yes("disable_stateful_session_resumption"),
            yes("ocsp_staple_policy"),
            yes("full_scan_certs_on_sni_mismatch"),
            yes("prefer_client_ciphers"),
        ],
    },
    MessageSupport {
        message: "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        fields: &[
            yes("common_tls_context"),
            yes("sni"),
            yes("auto_host_sni"),
            yes("auto_sni_san_validation"),
            yes("allow_renegotiation"),
            yes("max_session_keys"),
            yes("enforce_rsa_key_usage"),
        ],
    },
    MessageSupport {
        message: "envoy.extensions.transport_sockets.tls.v3.CommonTlsContext",
        fields: &[
            yes("tls_params"),
            yes("tls_certificates"),
            yes("tls_certificate_sds_secret_configs"),
            yes("alpn_protocols"),
            yes("validation_context"),
            yes("validation_context_sds_secret_config"),
            yes("combined_validation_context"),
        ],
    },
    MessageSupport {
        message: "envoy.extensions.transport_sockets.tls.v3.CommonTlsContext.CombinedCertificateValidationContext",
        fields: &[
            yes("default_validation_context"),
            yes("validation_context_sds_secret_config"),
        ],
    },
    MessageSupport {
        message: "envoy.extensions.transport_sockets.tls.v3.TlsParameters",
        fields: &[
            yes("tls_minimum_protocol_version"),
            yes("tls_maximum_protocol_version"),
            yes("cipher_suites"),
            yes("ecdh_curves"),
        ],
    },
    MessageSupport {
        message: "envoy.extensions.transport_sockets.tls.v3.TlsCertificate",
        fields: &[
            yes("certificate_chain"),
            yes("private_key"),
            yes("watched_directory"),
        ],
    },
    MessageSupport {
        message: "envoy.extensions.transport_sockets.tls.v3.CertificateValidationContext",
        fields: &[
            yes("trusted_ca"),
            yes("watched_directory"),
            yes("verify_certificate_spki"),
            yes("verify_certificate_hash"),
            yes("match_typed_subject_alt_names"),
            yes("match_subject_alt_names"),
            yes("crl"),
            yes("allow_expired_certificate"),
            yes("trust_chain_verification"),
            yes("only_verify_leaf_cert_crl"),
            yes("max_verify_depth"),
            yes("system_root_certs"),
            yes("suppress_client_ca_list"),
        ],
    },
    MessageSupport {
        message: "envoy.extensions.transport_sockets.tls.v3.CertificateValidationContext.SystemRootCerts",
        fields: &[],
    },
    MessageSupport {
        message: "envoy.extensions.transport_sockets.tls.v3.SubjectAltNameMatcher",
        fields: &[yes("san_type"), yes("matcher")],
    },
    MessageSupport {
        message: "envoy.extensions.transport_sockets.tls.v3.SdsSecretConfig",
        fields: &[yes("name"), yes("sds_config")],
    },
    MessageSupport {
        message: "envoy.extensions.transport_sockets.tls.v3.Secret",
        fields: &[
            yes("name"),
            yes("tls_certificate"),
            yes("validation_context"),
        ],
    },
    MessageSupport {
        message: "envoy.config.core.v3.ConfigSource",
        fields: &[
            yes("path"),
            yes("path_config_source"),
            yes("resource_api_version"),
        ],
    },
    MessageSupport {
        message: "envoy.config.core.v3.PathConfigSource",
        fields: &[yes("path"), yes("watched_directory")],
    },
    MessageSupport {
        message: "envoy.config.core.v3.WatchedDirectory",
        fields: &[yes("path")],
    },
];

/// Where a piece of key material comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Inline(Bytes),
}

impl Source {
    /// The material's bytes (read now for a file).
    pub fn read(&self) -> std::io::Result<Bytes> {
        match self {
            Source::File(p) => crate::headers::read_config_file(p).map(Bytes::from),
            Source::Inline(b) => Ok(b.clone()),
        }
    }

    /// What Envoy shows as the `path` of this material in `/certs`.
    pub fn display_path(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Inline(_) => "<inline>".to_owned(),
        }
    }
}

/// A certificate chain and its private key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificatePair {
    pub chain: Source,
    pub key: Source,
}

/// One `SubjectAltNameMatcher`.
#[derive(Clone, Debug)]
pub struct SanMatcher {
    /// `None`: any SAN type (the deprecated `match_subject_alt_names`).
    pub san_type: Option<SanType>,
    pub matcher: StringMatcher,
}

/// SAN types a matcher can look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SanType {
    Dns,
    Uri,
    Email,
    IpAddress,
}

/// A validation context (`CertificateValidationContext`).
#[derive(Clone, Debug, Default)]
pub struct ValidationContext {
    pub trusted_ca: Option<Source>,
    /// Use the operating system's trust store (upstream only, as in Envoy).
    pub system_root_certs: bool,
    pub san_matchers: Vec<SanMatcher>,
    /// SHA-256 digests of the SubjectPublicKeyInfo (base64 in the config).
    pub spki_pins: Vec<[u8; 32]>,
    /// SHA-256 digests of the whole certificate (hex in the config).
    pub cert_hashes: Vec<[u8; 32]>,
    pub crl: Option<Source>,
    pub only_verify_leaf_cert_crl: bool,
    pub allow_expired_certificate: bool,
    /// `ACCEPT_UNTRUSTED`: verify, count failures, but accept.
    pub accept_untrusted: bool,
    pub max_verify_depth: Option<u32>,
    pub suppress_client_ca_list: bool,
    /// A `watched_directory` whose moves reload the files.
    pub watched_directory: Option<PathBuf>,
}

/// A named secret's origin: `static_resources.secrets`, or a file-based SDS
/// resource (`path_config_source`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SecretOrigin {
    Static,
    File {
        path: PathBuf,
        watched_directory: Option<PathBuf>,
    },
}

/// A reference to a named secret (`SdsSecretConfig`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SecretRef {
    pub name: String,
    pub origin: SecretOrigin,
}

/// A secret's content.
#[derive(Clone, Debug)]
pub enum SecretValue {
    TlsCertificate(CertificatePair),
    ValidationContext(ValidationContext),
}

/// Certificates of a context: given inline, or by secret name.
#[derive(Clone, Debug)]
pub enum CertificateSource {
    Inline(CertificatePair),
    /// A static secret, resolved at load.
    Static {
        name: String,
        pair: CertificatePair,
    },
    /// A file-based SDS secret, loaded and watched by the runtime.
    Sds(SecretRef),
}

/// The validation context of a TLS context.
#[derive(Clone, Debug)]
pub enum ValidationSource {
    Inline(ValidationContext),
    Static {
        name: String,
        context: ValidationContext,
    },
    Sds(SecretRef),
    /// `combined_validation_context`: the SDS secret's fields with the
    /// default's matchers.
    Combined {
        default: ValidationContext,
        sds: SecretRef,
    },
}

/// TLS protocol versions rvoy speaks (rustls has no TLS 1.0 and 1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// `TlsParameters`, with Envoy's defaults already applied for the side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsParams {
    pub min_version: TlsVersion,
    pub max_version: TlsVersion,
    /// TLS 1.2 cipher suites by their OpenSSL names, in preference order;
    /// empty: Envoy's default list.
    pub cipher_suites: Vec<String>,
    /// Key exchange groups by Envoy's names (`X25519`, `P-256`...), in
    /// preference order; empty: Envoy's default.
    pub ecdh_curves: Vec<String>,
}

/// What both contexts share (`CommonTlsContext`).
#[derive(Clone, Debug)]
pub struct CommonTls {
    pub params: TlsParams,
    pub certificates: Vec<CertificateSource>,
    pub validation: Option<ValidationSource>,
    pub alpn_protocols: Vec<String>,
}

/// A `DownstreamTlsContext`.
#[derive(Clone, Debug)]
pub struct DownstreamTls {
    pub common: CommonTls,
    pub require_client_certificate: bool,
    pub require_sni: bool,
    pub disable_stateless_session_resumption: bool,
    pub disable_stateful_session_resumption: bool,
    pub prefer_client_ciphers: bool,
    /// Envoy's default (true): when no certificate matches the SNI, pick one
    /// by key type among all certificates.
    pub full_scan_certs_on_sni_mismatch: bool,
    /// The filter chain's `server_names`, for certificate selection.
    pub server_names: Vec<String>,
}

/// An `UpstreamTlsContext`.
#[derive(Clone, Debug)]
pub struct UpstreamTls {
    pub common: CommonTls,
    /// The SNI to send; empty: none.
    pub sni: String,
    /// Send the host's `hostname` as SNI (`auto_host_sni`).
    pub auto_host_sni: bool,
    /// Check the host's SNI against the certificate's SANs.
    pub auto_sni_san_validation: bool,
    pub max_session_keys: u32,
}

/// The named secrets of `static_resources.secrets`.
#[derive(Clone, Debug, Default)]
pub struct Secrets {
    pub by_name: HashMap<String, SecretValue>,
}

/// The default TLS 1.2 cipher list Envoy uses (both sides).
pub const DEFAULT_CIPHER_SUITES: &[&str] = &[
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
];

/// TLS 1.2 cipher suites rvoy can honour (rustls), by OpenSSL name.
pub const SUPPORTED_CIPHER_SUITES: &[&str] = &[
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-RSA-CHACHA20-POLY1305",
];

/// Envoy's default key exchange groups.
pub const DEFAULT_ECDH_CURVES: &[&str] = &["X25519", "P-256"];

/// Key exchange groups rvoy can honour, by Envoy (BoringSSL) name.
pub const SUPPORTED_ECDH_CURVES: &[&str] = &["X25519", "P-256", "P-384", "X25519MLKEM768"];

fn data_source(ds: &core::DataSource, path: &FieldPath) -> Result<Source, ConfigError> {
    use core::data_source::Specifier as S;
    match &ds.specifier {
        Some(S::Filename(f)) => Ok(Source::File(PathBuf::from(f))),
        Some(S::InlineBytes(b)) => Ok(Source::Inline(Bytes::from(b.clone()))),
        Some(S::InlineString(s)) => Ok(Source::Inline(Bytes::from(s.clone()))),
        Some(S::EnvironmentVariable(v)) => std::env::var(v)
            .map(|s| Source::Inline(Bytes::from(s)))
            .map_err(|_| {
                ConfigError::semantic(
                    path.field("environment_variable"),
                    format!("Environment variable doesn't exist: {v}"),
                )
            }),
        None => Err(ConfigError::semantic(
            path.clone(),
            "a data source needs filename, inline_bytes, inline_string or environment_variable",
        )),
    }
}

/// Parses a PEM certificate chain (leaf first).
pub fn parse_chain(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem).collect();
    match certs {
        Ok(c) if !c.is_empty() => Ok(c),
        Ok(_) => Err("no certificate found".to_owned()),
        Err(e) => Err(format!("{e:?}")),
    }
}

/// Parses a PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
pub fn parse_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("{e:?}"))
}

/// Parses PEM CRLs.
pub fn parse_crls(pem: &[u8]) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    let crls: Result<Vec<_>, _> = CertificateRevocationListDer::pem_slice_iter(pem).collect();
    match crls {
        Ok(c) if !c.is_empty() => Ok(c),
        Ok(_) => Err("no CRL found".to_owned()),
        Err(e) => Err(format!("{e:?}")),
    }
}

/// Checks that a certificate pair parses (Envoy's load-time errors).
pub fn check_pair(pair: &CertificatePair, path: &FieldPath) -> Result<(), ConfigError> {
    let chain = pair.chain.read().map_err(|e| {
        ConfigError::semantic(
            path.field("certificate_chain"),
            format!("Invalid path: {}: {e}", pair.chain.display_path()),
        )
    })?;
    parse_chain(&chain).map_err(|_| {
        ConfigError::semantic(
            path.field("certificate_chain"),
            format!(
                "Failed to load certificate chain from {}",
                pair.chain.display_path()
            ),
        )
    })?;
    let key = pair.key.read().map_err(|e| {
        ConfigError::semantic(
            path.field("private_key"),
            format!("Invalid path: {}: {e}", pair.key.display_path()),
        )
    })?;
    parse_key(&key).map_err(|_| {
        ConfigError::semantic(
            path.field("private_key"),
            format!(
                "Failed to load private key from {}",
                pair.key.display_path()
            ),
        )
    })?;
    Ok(())
}

/// Checks the files of a validation context.
pub fn check_validation(v: &ValidationContext, path: &FieldPath) -> Result<(), ConfigError> {
    if let Some(ca) = &v.trusted_ca {
        let pem = ca.read().map_err(|e| {
            ConfigError::semantic(
                path.field("trusted_ca"),
                format!("Invalid path: {}: {e}", ca.display_path()),
            )
        })?;
        parse_chain(&pem).map_err(|_| {
            ConfigError::semantic(
                path.field("trusted_ca"),
                format!(
                    "Failed to load trusted CA certificates from {}",
                    ca.display_path()
                ),
            )
        })?;
    }
    if let Some(crl) = &v.crl {
        let pem = crl.read().map_err(|e| {
            ConfigError::semantic(
                path.field("crl"),
                format!("Invalid path: {}: {e}", crl.display_path()),
            )
        })?;
        parse_crls(&pem).map_err(|_| {
            ConfigError::semantic(
                path.field("crl"),
                format!("Failed to load CRL from {}", crl.display_path()),
            )
        })?;
    }
    Ok(())
}

/// Lowers a `TlsCertificate`.
pub fn certificate_pair(
    c: &pb::TlsCertificate,
    path: &FieldPath,
    in_sds: bool,
) -> Result<CertificatePair, ConfigError> {
    if c.watched_directory.is_some() && !in_sds {
        return Err(ConfigError::not_supported(
            path.field("watched_directory"),
            "watched_directory outside a file-based SDS secret",
        ));
    }
    reject_unset_fields_cert(c, path)?;
    let chain = c.certificate_chain.as_ref().ok_or_else(|| {
        ConfigError::semantic(
            path.field("certificate_chain"),
            "a TLS certificate needs a certificate_chain",
        )
    })?;
    let key = c.private_key.as_ref().ok_or_else(|| {
        ConfigError::semantic(
            path.field("private_key"),
            "a TLS certificate needs a private_key",
        )
    })?;
    Ok(CertificatePair {
        chain: data_source(chain, &path.field("certificate_chain"))?,
        key: data_source(key, &path.field("private_key"))?,
    })
}

fn reject_unset_fields_cert(c: &pb::TlsCertificate, path: &FieldPath) -> Result<(), ConfigError> {
    // The support tables reject these already; this keeps the builder honest
    // when called on secrets loaded from SDS files at run time.
    if c.private_key_provider.is_some() {
        return Err(ConfigError::not_supported(
            path.field("private_key_provider"),
            "private_key_provider",
        ));
    }
    if c.password.is_some() {
        return Err(ConfigError::not_supported(
            path.field("password"),
            "encrypted private keys (password)",
        ));
    }
    if c.ocsp_staple.is_some() {
        return Err(ConfigError::not_supported(
            path.field("ocsp_staple"),
            "ocsp_staple",
        ));
    }
    if !c.signed_certificate_timestamp.is_empty() {
        return Err(ConfigError::not_supported(
            path.field("signed_certificate_timestamp"),
            "signed_certificate_timestamp",
        ));
    }
    if c.pkcs12.is_some() {
        return Err(ConfigError::not_supported(path.field("pkcs12"), "pkcs12"));
    }
    Ok(())
}

/// Lowers a `CertificateValidationContext`.
pub fn validation_context(
    v: &pb::CertificateValidationContext,
    path: &FieldPath,
    in_sds: bool,
) -> Result<ValidationContext, ConfigError> {
    use pb::certificate_validation_context::TrustChainVerification as T;
    if v.watched_directory.is_some() && !in_sds {
        return Err(ConfigError::not_supported(
            path.field("watched_directory"),
            "watched_directory outside a file-based SDS secret",
        ));
    }
    for (field, set) in [
        (
            "ca_certificate_provider_instance",
            v.ca_certificate_provider_instance.is_some(),
        ),
        (
            "require_signed_certificate_timestamp",
            v.require_signed_certificate_timestamp.is_some(),
        ),
        (
            "custom_validator_config",
            v.custom_validator_config.is_some(),
        ),
    ] {
        if set {
            return Err(ConfigError::not_supported(path.field(field), field));
        }
    }
    let mut san_matchers = Vec::new();
    for (i, m) in v.match_typed_subject_alt_names.iter().enumerate() {
        let p = path.field("match_typed_subject_alt_names").index(i);
        use pb::subject_alt_name_matcher::SanType as S;
        let san_type = match S::try_from(m.san_type) {
            Ok(S::Dns) => SanType::Dns,
            Ok(S::Uri) => SanType::Uri,
            Ok(S::Email) => SanType::Email,
            Ok(S::IpAddress) => SanType::IpAddress,
            Ok(S::OtherName) => {
                return Err(ConfigError::not_supported(
                    p.field("san_type"),
                    "OTHER_NAME subject alt name matchers",
                ));
            }
            _ => {
                return Err(ConfigError::semantic(
                    p.field("san_type"),
                    "a SAN type is required",
                ));
            }
        };
        let matcher = m
            .matcher
            .as_ref()
            .ok_or_else(|| ConfigError::semantic(p.field("matcher"), "a matcher is required"))?;
        san_matchers.push(SanMatcher {
            san_type: Some(san_type),
            matcher: StringMatcher::from_proto(matcher, &p.field("matcher"))?,
        });
    }
    for (i, m) in v.match_subject_alt_names.iter().enumerate() {
        let p = path.field("match_subject_alt_names").index(i);
        san_matchers.push(SanMatcher {
            san_type: None,
            matcher: StringMatcher::from_proto(m, &p)?,
        });
    }
    let mut spki_pins = Vec::new();
    for (i, s) in v.verify_certificate_spki.iter().enumerate() {
        use base64::Engine;
        let p = path.field("verify_certificate_spki").index(i);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| {
                ConfigError::semantic(p, format!("Invalid base64-encoded SHA-256 {s}"))
            })?;
        spki_pins.push(bytes);
    }
    let mut cert_hashes = Vec::new();
    for (i, s) in v.verify_certificate_hash.iter().enumerate() {
        let p = path.field("verify_certificate_hash").index(i);
        let hex: String = s.chars().filter(|c| *c != ':').collect();
        let bytes = decode_hex(&hex)
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| ConfigError::semantic(p, format!("Invalid hex-encoded SHA-256 {s}")))?;
        cert_hashes.push(bytes);
    }
    let accept_untrusted = match T::try_from(v.trust_chain_verification) {
        Ok(T::AcceptUntrusted) => true,
        Ok(T::VerifyTrustChain) => false,
        Err(_) => {
            return Err(ConfigError::semantic(
                path.field("trust_chain_verification"),
                "unknown trust_chain_verification",
            ));
        }
    };
    let trusted_ca = v
        .trusted_ca
        .as_ref()
        .map(|d| data_source(d, &path.field("trusted_ca")))
        .transpose()?;
    let crl = v
        .crl
        .as_ref()
        .map(|d| data_source(d, &path.field("crl")))
        .transpose()?;
    if crl.is_some() && trusted_ca.is_none() && v.system_root_certs.is_none() {
        return Err(ConfigError::semantic(
            path.field("crl"),
            "Failed to load CRL: ca_cert is required",
        ));
    }
    Ok(ValidationContext {
        trusted_ca,
        system_root_certs: v.system_root_certs.is_some(),
        san_matchers,
        spki_pins,
        cert_hashes,
        crl,
        only_verify_leaf_cert_crl: v.only_verify_leaf_cert_crl,
        allow_expired_certificate: v.allow_expired_certificate,
        accept_untrusted,
        max_verify_depth: v.max_verify_depth,
        suppress_client_ca_list: v.suppress_client_ca_list,
        watched_directory: v.watched_directory.as_ref().map(|w| PathBuf::from(&w.path)),
    })
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Resolves an `SdsSecretConfig`: a static secret (no `sds_config`) or a
/// file-based one.
fn secret_ref(s: &pb::SdsSecretConfig, path: &FieldPath) -> Result<SecretRef, ConfigError> {
    if s.name.is_empty() {
        return Err(ConfigError::semantic(
            path.field("name"),
            "an SDS secret config needs a name",
        ));
    }
    let Some(cs) = &s.sds_config else {
        return Ok(SecretRef {
            name: s.name.clone(),
            origin: SecretOrigin::Static,
        });
    };
    let p = path.field("sds_config");
    use core::config_source::ConfigSourceSpecifier as C;
    let origin = match &cs.config_source_specifier {
        Some(C::Path(file)) => SecretOrigin::File {
            path: PathBuf::from(file),
            watched_directory: None,
        },
        Some(C::PathConfigSource(pcs)) => SecretOrigin::File {
            path: PathBuf::from(&pcs.path),
            watched_directory: pcs
                .watched_directory
                .as_ref()
                .map(|w| PathBuf::from(&w.path)),
        },
        Some(C::ApiConfigSource(_)) => {
            return Err(ConfigError::not_supported(
                p.field("api_config_source"),
                "SDS from a management server (api_config_source)",
            ));
        }
        Some(C::Ads(_)) => {
            return Err(ConfigError::not_supported(p.field("ads"), "SDS over ADS"));
        }
        Some(C::Self_(_)) => {
            return Err(ConfigError::not_supported(p.field("self"), "SDS over self"));
        }
        None => {
            return Err(ConfigError::semantic(
                p,
                "an sds_config needs a path_config_source",
            ));
        }
    };
    Ok(SecretRef {
        name: s.name.clone(),
        origin,
    })
}

/// Lowers a `TlsParameters` for one side, with Envoy's defaults: TLS 1.2 to
/// 1.3 for servers, TLS 1.2 only for clients.
fn tls_params(
    p: Option<&pb::TlsParameters>,
    path: &FieldPath,
    server: bool,
) -> Result<TlsParams, ConfigError> {
    use pb::tls_parameters::TlsProtocol as V;
    let default_max = if server {
        TlsVersion::Tls13
    } else {
        TlsVersion::Tls12
    };
    let Some(p) = p else {
        return Ok(TlsParams {
            min_version: TlsVersion::Tls12,
            max_version: default_max,
            cipher_suites: Vec::new(),
            ecdh_curves: Vec::new(),
        });
    };
    let version = |v: i32, field: &str, default: TlsVersion| -> Result<TlsVersion, ConfigError> {
        match V::try_from(v) {
            Ok(V::TlsAuto) => Ok(default),
            Ok(V::TlSv12) => Ok(TlsVersion::Tls12),
            Ok(V::TlSv13) => Ok(TlsVersion::Tls13),
            Ok(V::TlSv10) | Ok(V::TlSv11) => Err(ConfigError::not_supported(
                path.field(field),
                "TLS 1.0 and 1.1 (rvoy's TLS library, rustls, speaks TLS 1.2 and 1.3 only)",
            )),
            Err(_) => Err(ConfigError::semantic(
                path.field(field),
                "unknown TLS protocol version",
            )),
        }
    };
    let min_version = version(
        p.tls_minimum_protocol_version,
        "tls_minimum_protocol_version",
        TlsVersion::Tls12,
    )?;
    let max_version = version(
        p.tls_maximum_protocol_version,
        "tls_maximum_protocol_version",
        default_max,
    )?;
    if min_version > max_version {
        return Err(ConfigError::semantic(
            path.clone(),
            "tls_minimum_protocol_version is above tls_maximum_protocol_version",
        ));
    }
    let mut cipher_suites = Vec::new();
    for (i, entry) in p.cipher_suites.iter().enumerate() {
        // OpenSSL cipher list syntax: `[A|B]` groups of equal preference
        // and `:`-separated names; rustls has no equal-preference groups,
        // so a group is taken in order.
        for name in entry
            .split([':', '|'])
            .map(|n| n.trim_matches(|c| c == '[' || c == ']' || c == ' '))
            .filter(|n| !n.is_empty())
        {
            if !SUPPORTED_CIPHER_SUITES.contains(&name) {
                return Err(ConfigError::not_supported(
                    path.field("cipher_suites").index(i),
                    format_args!(
                        "cipher suite '{name}' (rvoy can honour {})",
                        SUPPORTED_CIPHER_SUITES.join(", ")
                    ),
                ));
            }
            if !cipher_suites.iter().any(|c| c == name) {
                cipher_suites.push(name.to_owned());
            }
        }
    }
    let mut ecdh_curves = Vec::new();
    for (i, entry) in p.ecdh_curves.iter().enumerate() {
        for name in entry.split(':').map(str::trim).filter(|n| !n.is_empty()) {
            let canonical = match name {
                "prime256v1" | "secp256r1" => "P-256",
                "secp384r1" => "P-384",
                other => other,
            };
            if !SUPPORTED_ECDH_CURVES.contains(&canonical) {
                return Err(ConfigError::not_supported(
                    path.field("ecdh_curves").index(i),
                    format_args!(
                        "ECDH curve '{name}' (rvoy can honour {})",
                        SUPPORTED_ECDH_CURVES.join(", ")
                    ),
                ));
            }
            if !ecdh_curves.iter().any(|c| c == canonical) {
                ecdh_curves.push(canonical.to_owned());
            }
        }
    }
    if !p.signature_algorithms.is_empty() {
        return Err(ConfigError::not_supported(
            path.field("signature_algorithms"),
            "signature_algorithms",
        ));
    }
    if !p.compliance_policies.is_empty() {
        return Err(ConfigError::not_supported(
            path.field("compliance_policies"),
            "compliance_policies",
        ));
    }
    Ok(TlsParams {
        min_version,
        max_version,
        cipher_suites,
        ecdh_curves,
    })
}

fn resolve_static_validation(
    r: SecretRef,
    secrets: &Secrets,
    path: &FieldPath,
) -> Result<ValidationSource, ConfigError> {
    if r.origin != SecretOrigin::Static {
        return Ok(ValidationSource::Sds(r));
    }
    match secrets.by_name.get(&r.name) {
        Some(SecretValue::ValidationContext(v)) => Ok(ValidationSource::Static {
            name: r.name,
            context: v.clone(),
        }),
        Some(SecretValue::TlsCertificate(_)) => Err(ConfigError::semantic(
            path.clone(),
            format!("secret '{}' is not a validation context", r.name),
        )),
        None => Err(ConfigError::semantic(
            path.clone(),
            format!("Unknown static certificate validation context: {}", r.name),
        )),
    }
}

fn common(
    c: Option<&pb::CommonTlsContext>,
    path: &FieldPath,
    secrets: &Secrets,
    server: bool,
) -> Result<CommonTls, ConfigError> {
    let default = pb::CommonTlsContext::default();
    let c = c.unwrap_or(&default);
    for (field, set) in [
        (
            "tls_certificate_provider_instance",
            c.tls_certificate_provider_instance.is_some(),
        ),
        (
            "custom_tls_certificate_selector",
            c.custom_tls_certificate_selector.is_some(),
        ),
        (
            "tls_certificate_certificate_provider",
            c.tls_certificate_certificate_provider.is_some(),
        ),
        (
            "tls_certificate_certificate_provider_instance",
            c.tls_certificate_certificate_provider_instance.is_some(),
        ),
        ("custom_handshaker", c.custom_handshaker.is_some()),
        ("key_log", c.key_log.is_some()),
    ] {
        if set {
            return Err(ConfigError::not_supported(path.field(field), field));
        }
    }
    let params = tls_params(c.tls_params.as_ref(), &path.field("tls_params"), server)?;
    let mut certificates = Vec::new();
    for (i, cert) in c.tls_certificates.iter().enumerate() {
        let p = path.field("tls_certificates").index(i);
        let pair = certificate_pair(cert, &p, false)?;
        check_pair(&pair, &p)?;
        certificates.push(CertificateSource::Inline(pair));
    }
    for (i, s) in c.tls_certificate_sds_secret_configs.iter().enumerate() {
        let p = path.field("tls_certificate_sds_secret_configs").index(i);
        let r = secret_ref(s, &p)?;
        if r.origin == SecretOrigin::Static {
            match secrets.by_name.get(&r.name) {
                Some(SecretValue::TlsCertificate(pair)) => {
                    certificates.push(CertificateSource::Static {
                        name: r.name,
                        pair: pair.clone(),
                    })
                }
                Some(SecretValue::ValidationContext(_)) => {
                    return Err(ConfigError::semantic(
                        p,
                        format!("secret '{}' is not a TLS certificate", r.name),
                    ));
                }
                None => {
                    return Err(ConfigError::semantic(
                        p,
                        format!("Unknown static secret: {}", r.name),
                    ));
                }
            }
        } else {
            certificates.push(CertificateSource::Sds(r));
        }
    }
    use pb::common_tls_context::ValidationContextType as VT;
    let validation = match &c.validation_context_type {
        None => None,
        Some(VT::ValidationContext(v)) => {
            let p = path.field("validation_context");
            let ctx = validation_context(v, &p, false)?;
            check_validation(&ctx, &p)?;
            Some(ValidationSource::Inline(ctx))
        }
        Some(VT::ValidationContextSdsSecretConfig(s)) => {
            let p = path.field("validation_context_sds_secret_config");
            Some(resolve_static_validation(secret_ref(s, &p)?, secrets, &p)?)
        }
        Some(VT::CombinedValidationContext(cv)) => {
            let p = path.field("combined_validation_context");
            if cv.validation_context_certificate_provider.is_some()
                || cv
                    .validation_context_certificate_provider_instance
                    .is_some()
            {
                return Err(ConfigError::not_supported(
                    p.field("validation_context_certificate_provider"),
                    "certificate providers",
                ));
            }
            let default = match &cv.default_validation_context {
                Some(v) => validation_context(v, &p.field("default_validation_context"), false)?,
                None => ValidationContext::default(),
            };
            check_validation(&default, &p.field("default_validation_context"))?;
            let s = cv
                .validation_context_sds_secret_config
                .as_ref()
                .ok_or_else(|| {
                    ConfigError::semantic(
                        p.field("validation_context_sds_secret_config"),
                        "a combined validation context needs validation_context_sds_secret_config",
                    )
                })?;
            let sp = p.field("validation_context_sds_secret_config");
            let r = secret_ref(s, &sp)?;
            match resolve_static_validation(r.clone(), secrets, &sp)? {
                ValidationSource::Static { name, context } => Some(ValidationSource::Static {
                    name,
                    context: combine(&default, &context),
                }),
                _ => Some(ValidationSource::Combined { default, sds: r }),
            }
        }
        Some(VT::ValidationContextCertificateProvider(_))
        | Some(VT::ValidationContextCertificateProviderInstance(_)) => {
            return Err(ConfigError::not_supported(
                path.field("validation_context_certificate_provider"),
                "certificate providers",
            ));
        }
    };
    Ok(CommonTls {
        params,
        certificates,
        validation,
        alpn_protocols: c.alpn_protocols.clone(),
    })
}

/// Envoy's merge of a combined validation context: the dynamic secret's
/// fields, with the default context's matchers and pins added.
pub fn combine(default: &ValidationContext, dynamic: &ValidationContext) -> ValidationContext {
    let mut out = dynamic.clone();
    out.san_matchers
        .extend(default.san_matchers.iter().cloned());
    out.spki_pins.extend(default.spki_pins.iter().copied());
    out.cert_hashes.extend(default.cert_hashes.iter().copied());
    if out.trusted_ca.is_none() {
        out.trusted_ca = default.trusted_ca.clone();
    }
    if out.crl.is_none() {
        out.crl = default.crl.clone();
    }
    out.allow_expired_certificate |= default.allow_expired_certificate;
    out.accept_untrusted |= default.accept_untrusted;
    out.system_root_certs |= default.system_root_certs;
    out
}

/// Lowers a `DownstreamTlsContext` of a filter chain.
pub fn downstream(
    c: &pb::DownstreamTlsContext,
    path: &FieldPath,
    secrets: &Secrets,
    server_names: &[String],
) -> Result<DownstreamTls, ConfigError> {
    use pb::downstream_tls_context::OcspStaplePolicy as O;
    use pb::downstream_tls_context::SessionTicketKeysType as K;
    match &c.session_ticket_keys_type {
        Some(K::SessionTicketKeys(_)) => {
            return Err(ConfigError::not_supported(
                path.field("session_ticket_keys"),
                "session_ticket_keys (rvoy's tickets use keys it generates)",
            ));
        }
        Some(K::SessionTicketKeysSdsSecretConfig(_)) => {
            return Err(ConfigError::not_supported(
                path.field("session_ticket_keys_sds_secret_config"),
                "session ticket keys from SDS",
            ));
        }
        _ => {}
    }
    if c.session_timeout.is_some() {
        return Err(ConfigError::not_supported(
            path.field("session_timeout"),
            "session_timeout",
        ));
    }
    if !matches!(O::try_from(c.ocsp_staple_policy), Ok(O::LenientStapling)) {
        return Err(ConfigError::not_supported(
            path.field("ocsp_staple_policy"),
            "OCSP stapling policies other than LENIENT_STAPLING",
        ));
    }
    let common = common(
        c.common_tls_context.as_ref(),
        &path.field("common_tls_context"),
        secrets,
        true,
    )?;
    if common.certificates.is_empty() {
        return Err(ConfigError::semantic(
            path.field("common_tls_context"),
            "No TLS certificates found for server context",
        ));
    }
    let require_client_certificate = c.require_client_certificate.unwrap_or(false);
    if require_client_certificate && common.validation.is_none() {
        return Err(ConfigError::semantic(
            path.field("require_client_certificate"),
            "require_client_certificate needs a validation context to check the certificate with",
        ));
    }
    Ok(DownstreamTls {
        common,
        require_client_certificate,
        require_sni: c.require_sni.unwrap_or(false),
        disable_stateless_session_resumption: matches!(
            c.session_ticket_keys_type,
            Some(K::DisableStatelessSessionResumption(true))
        ),
        disable_stateful_session_resumption: c.disable_stateful_session_resumption,
        prefer_client_ciphers: c.prefer_client_ciphers,
        full_scan_certs_on_sni_mismatch: c.full_scan_certs_on_sni_mismatch.unwrap_or(true),
        server_names: server_names.to_vec(),
    })
}

/// Lowers an `UpstreamTlsContext` of a cluster.
pub fn upstream(
    c: &pb::UpstreamTlsContext,
    path: &FieldPath,
    secrets: &Secrets,
) -> Result<UpstreamTls, ConfigError> {
    if c.allow_renegotiation {
        return Err(ConfigError::not_supported(
            path.field("allow_renegotiation"),
            "TLS renegotiation (rustls refuses it)",
        ));
    }
    if c.enforce_rsa_key_usage == Some(false) {
        return Err(ConfigError::not_supported(
            path.field("enforce_rsa_key_usage"),
            "enforce_rsa_key_usage: false (rustls always enforces key usage)",
        ));
    }
    let common = common(
        c.common_tls_context.as_ref(),
        &path.field("common_tls_context"),
        secrets,
        false,
    )?;
    if common.certificates.len() > 1 {
        return Err(ConfigError::semantic(
            path.field("common_tls_context").field("tls_certificates"),
            "Multiple TLS certificates are not supported for client contexts",
        ));
    }
    if c.sni.len() > 255 {
        return Err(ConfigError::semantic(
            path.field("sni"),
            "SNI names are at most 255 bytes",
        ));
    }
    Ok(UpstreamTls {
        common,
        sni: c.sni.clone(),
        auto_host_sni: c.auto_host_sni,
        auto_sni_san_validation: c.auto_sni_san_validation,
        max_session_keys: c.max_session_keys.unwrap_or(1),
    })
}

/// Lowers `static_resources.secrets`.
pub fn secrets(list: &[pb::Secret], path: &FieldPath) -> Result<Secrets, ConfigError> {
    let mut out = Secrets::default();
    for (i, s) in list.iter().enumerate() {
        let p = path.index(i);
        let value = secret_value(s, &p, false)?;
        if out.by_name.insert(s.name.clone(), value).is_some() {
            return Err(ConfigError::semantic(
                p.field("name"),
                format!("Duplicate static TlsCertificate secret name {}", s.name),
            ));
        }
    }
    Ok(out)
}

/// Lowers one `Secret` (static, or read from an SDS file at run time).
pub fn secret_value(
    s: &pb::Secret,
    path: &FieldPath,
    in_sds: bool,
) -> Result<SecretValue, ConfigError> {
    use pb::secret::Type as T;
    match &s.r#type {
        Some(T::TlsCertificate(c)) => {
            let p = path.field("tls_certificate");
            let pair = certificate_pair(c, &p, in_sds)?;
            check_pair(&pair, &p)?;
            Ok(SecretValue::TlsCertificate(pair))
        }
        Some(T::ValidationContext(v)) => {
            let p = path.field("validation_context");
            let ctx = validation_context(v, &p, in_sds)?;
            check_validation(&ctx, &p)?;
            Ok(SecretValue::ValidationContext(ctx))
        }
        Some(T::SessionTicketKeys(_)) => Err(ConfigError::not_supported(
            path.field("session_ticket_keys"),
            "session ticket key secrets",
        )),
        Some(T::GenericSecret(_)) => Err(ConfigError::not_supported(
            path.field("generic_secret"),
            "generic secrets",
        )),
        None => Err(ConfigError::semantic(
            path.clone(),
            format!("secret '{}' has no content", s.name),
        )),
    }
}

/// Every secret reference of a context that the runtime must load.
pub fn sds_refs(common: &CommonTls) -> Vec<&SecretRef> {
    let mut out = Vec::new();
    for c in &common.certificates {
        if let CertificateSource::Sds(r) = c {
            out.push(r);
        }
    }
    match &common.validation {
        Some(ValidationSource::Sds(r)) | Some(ValidationSource::Combined { sds: r, .. }) => {
            out.push(r)
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Key material is read like Envoy's `fileReadToEnd`: `/dev/zero` is refused
    /// instead of read until memory runs out (found while fuzzing, docs/fuzzing.md).
    #[test]
    fn special_files_are_not_read() {
        let err = Source::File(PathBuf::from("/dev/zero"))
            .read()
            .expect_err("refused");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert!(
            Source::File(PathBuf::from("/proc/self/environ"))
                .read()
                .is_err()
        );
    }

    #[test]
    fn cipher_lists_and_curves() {
        let p = pb::TlsParameters {
            cipher_suites: vec![
                "[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-ECDSA-CHACHA20-POLY1305]".into(),
                "ECDHE-RSA-AES256-GCM-SHA384".into(),
            ],
            ecdh_curves: vec!["X25519:P-256".into()],
            ..Default::default()
        };
        let t = tls_params(Some(&p), &FieldPath::root(), true).expect("valid");
        assert_eq!(
            t.cipher_suites,
            vec![
                "ECDHE-ECDSA-AES128-GCM-SHA256",
                "ECDHE-ECDSA-CHACHA20-POLY1305",
                "ECDHE-RSA-AES256-GCM-SHA384"
            ]
        );
        assert_eq!(t.ecdh_curves, vec!["X25519", "P-256"]);
        let bad = pb::TlsParameters {
            cipher_suites: vec!["AES128-SHA".into()],
            ..Default::default()
        };
        let e = tls_params(Some(&bad), &FieldPath::root(), true).expect_err("rejected");
        assert!(e.to_string().contains("AES128-SHA"), "{e}");
        let old = pb::TlsParameters {
            tls_minimum_protocol_version: pb::tls_parameters::TlsProtocol::TlSv10 as i32,
            ..Default::default()
        };
        assert!(tls_params(Some(&old), &FieldPath::root(), true).is_err());
    }

    #[test]
    fn defaults_per_side() {
        let server = tls_params(None, &FieldPath::root(), true).expect("default");
        assert_eq!(server.max_version, TlsVersion::Tls13);
        let client = tls_params(None, &FieldPath::root(), false).expect("default");
        assert_eq!(client.max_version, TlsVersion::Tls12);
    }

    #[test]
    fn hex_pins() {
        assert_eq!(decode_hex("0aFF"), Some(vec![0x0a, 0xff]));
        assert_eq!(decode_hex("0"), None);
        assert_eq!(decode_hex("zz"), None);
    }
}
