//! The crypto provider rvoy builds every context on (rustls with aws-lc-rs),
//! narrowed to a context's TLS parameters, and the OpenSSL/BoringSSL names
//! Envoy uses for cipher suites, key exchange groups, signature algorithms
//! and protocol versions in its config and stats.

use std::sync::Arc;

use rustls::crypto::aws_lc_rs::{self as provider, cipher_suite as cs, kx_group as kx};
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::{CipherSuite, NamedGroup, ProtocolVersion, SignatureScheme, SupportedCipherSuite};
use rvoy_model::tls::{DEFAULT_CIPHER_SUITES, DEFAULT_ECDH_CURVES, TlsParams, TlsVersion};

/// The TLS 1.2 suites by OpenSSL name.
fn tls12_suite(name: &str) -> Option<SupportedCipherSuite> {
    Some(match name {
        "ECDHE-ECDSA-AES128-GCM-SHA256" => cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "ECDHE-ECDSA-AES256-GCM-SHA384" => cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "ECDHE-ECDSA-CHACHA20-POLY1305" => cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        "ECDHE-RSA-AES128-GCM-SHA256" => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "ECDHE-RSA-AES256-GCM-SHA384" => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "ECDHE-RSA-CHACHA20-POLY1305" => cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        _ => return None,
    })
}

fn kx_group(name: &str) -> Option<&'static dyn SupportedKxGroup> {
    Some(match name {
        "X25519" => kx::X25519,
        "P-256" => kx::SECP256R1,
        "P-384" => kx::SECP384R1,
        "X25519MLKEM768" => kx::X25519MLKEM768,
        _ => return None,
    })
}

/// A provider offering exactly the suites and groups of `params` (TLS 1.3
/// suites are not configurable in Envoy: all are offered, as BoringSSL does).
pub fn provider_for(params: &TlsParams) -> Arc<CryptoProvider> {
    let base = provider::default_provider();
    let mut suites: Vec<SupportedCipherSuite> = vec![
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
    ];
    let names: Vec<&str> = if params.cipher_suites.is_empty() {
        DEFAULT_CIPHER_SUITES.to_vec()
    } else {
        params.cipher_suites.iter().map(String::as_str).collect()
    };
    suites.extend(names.iter().filter_map(|n| tls12_suite(n)));
    let curves: Vec<&str> = if params.ecdh_curves.is_empty() {
        DEFAULT_ECDH_CURVES.to_vec()
    } else {
        params.ecdh_curves.iter().map(String::as_str).collect()
    };
    let kx_groups = curves.iter().filter_map(|n| kx_group(n)).collect();
    Arc::new(CryptoProvider {
        cipher_suites: suites,
        kx_groups,
        ..base
    })
}

/// The rustls protocol versions of `params`.
pub fn versions(params: &TlsParams) -> Vec<&'static rustls::SupportedProtocolVersion> {
    let mut out = Vec::new();
    if params.min_version <= TlsVersion::Tls13 && params.max_version >= TlsVersion::Tls13 {
        out.push(&rustls::version::TLS13);
    }
    if params.min_version <= TlsVersion::Tls12 && params.max_version >= TlsVersion::Tls12 {
        out.push(&rustls::version::TLS12);
    }
    out
}

/// The OpenSSL name of a cipher suite (`ssl.ciphers.<name>`).
pub fn cipher_name(suite: CipherSuite) -> &'static str {
    match suite {
        CipherSuite::TLS13_AES_128_GCM_SHA256 => "TLS_AES_128_GCM_SHA256",
        CipherSuite::TLS13_AES_256_GCM_SHA384 => "TLS_AES_256_GCM_SHA384",
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => "TLS_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => "ECDHE-ECDSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => {
            "ECDHE-ECDSA-CHACHA20-POLY1305"
        }
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => "ECDHE-RSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => "ECDHE-RSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-RSA-CHACHA20-POLY1305",
        _ => "unknown",
    }
}

/// Every cipher name [`cipher_name`] can return.
pub const CIPHER_NAMES: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "unknown",
];

/// BoringSSL's name of a key exchange group (`ssl.curves.<name>`).
pub fn curve_name(group: NamedGroup) -> &'static str {
    match group {
        NamedGroup::X25519 => "X25519",
        NamedGroup::secp256r1 => "P-256",
        NamedGroup::secp384r1 => "P-384",
        NamedGroup::secp521r1 => "P-521",
        NamedGroup::X25519MLKEM768 => "X25519MLKEM768",
        _ => "unknown",
    }
}

/// Every curve name [`curve_name`] can return.
pub const CURVE_NAMES: &[&str] = &[
    "X25519",
    "P-256",
    "P-384",
    "P-521",
    "X25519MLKEM768",
    "unknown",
];

/// BoringSSL's name of a signature algorithm (`ssl.sigalgs.<name>`).
pub fn sigalg_name(scheme: SignatureScheme) -> &'static str {
    match scheme {
        SignatureScheme::RSA_PKCS1_SHA1 => "rsa_pkcs1_sha1",
        SignatureScheme::ECDSA_SHA1_Legacy => "ecdsa_sha1",
        SignatureScheme::RSA_PKCS1_SHA256 => "rsa_pkcs1_sha256",
        SignatureScheme::ECDSA_NISTP256_SHA256 => "ecdsa_secp256r1_sha256",
        SignatureScheme::RSA_PKCS1_SHA384 => "rsa_pkcs1_sha384",
        SignatureScheme::ECDSA_NISTP384_SHA384 => "ecdsa_secp384r1_sha384",
        SignatureScheme::RSA_PKCS1_SHA512 => "rsa_pkcs1_sha512",
        SignatureScheme::ECDSA_NISTP521_SHA512 => "ecdsa_secp521r1_sha512",
        SignatureScheme::RSA_PSS_SHA256 => "rsa_pss_rsae_sha256",
        SignatureScheme::RSA_PSS_SHA384 => "rsa_pss_rsae_sha384",
        SignatureScheme::RSA_PSS_SHA512 => "rsa_pss_rsae_sha512",
        SignatureScheme::ED25519 => "ed25519",
        _ => "unknown",
    }
}

/// Every name [`sigalg_name`] can return.
pub const SIGALG_NAMES: &[&str] = &[
    "rsa_pkcs1_sha1",
    "ecdsa_sha1",
    "rsa_pkcs1_sha256",
    "ecdsa_secp256r1_sha256",
    "rsa_pkcs1_sha384",
    "ecdsa_secp384r1_sha384",
    "rsa_pkcs1_sha512",
    "ecdsa_secp521r1_sha512",
    "rsa_pss_rsae_sha256",
    "rsa_pss_rsae_sha384",
    "rsa_pss_rsae_sha512",
    "ed25519",
    "unknown",
];

/// Envoy's name of a protocol version (`ssl.versions.<name>`).
pub fn version_name(v: ProtocolVersion) -> &'static str {
    match v {
        ProtocolVersion::TLSv1_3 => "TLSv1.3",
        ProtocolVersion::TLSv1_2 => "TLSv1.2",
        _ => "unknown",
    }
}

/// Every name [`version_name`] can return.
pub const VERSION_NAMES: &[&str] = &["TLSv1.2", "TLSv1.3", "unknown"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_provider_follows_envoy_defaults() {
        let params = TlsParams {
            min_version: TlsVersion::Tls12,
            max_version: TlsVersion::Tls13,
            cipher_suites: Vec::new(),
            ecdh_curves: Vec::new(),
        };
        let p = provider_for(&params);
        assert_eq!(p.cipher_suites.len(), 3 + 6);
        assert_eq!(p.kx_groups.len(), 2);
        assert_eq!(versions(&params).len(), 2);
        for s in &p.cipher_suites {
            assert_ne!(cipher_name(s.suite()), "unknown");
        }
        for g in &p.kx_groups {
            assert_ne!(curve_name(g.name()), "unknown");
        }
    }

    #[test]
    fn every_supported_name_maps() {
        for n in rvoy_model::tls::SUPPORTED_CIPHER_SUITES {
            assert!(tls12_suite(n).is_some(), "{n}");
        }
        for n in rvoy_model::tls::SUPPORTED_ECDH_CURVES {
            assert!(kx_group(n).is_some(), "{n}");
        }
    }
}
