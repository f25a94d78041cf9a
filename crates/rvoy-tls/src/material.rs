//! Key material: certificate chains with their private keys, trusted CAs and
//! CRLs read from the model's sources, and the certificate details Envoy
//! shows in `/certs` and uses for SAN matching (read with `x509-parser`).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, TrustAnchor};
use rvoy_model::tls::{self as model, CertificatePair, Source};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::TlsError;

/// A subject alternative name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum San {
    Dns(String),
    Uri(String),
    Email(String),
    Ip(IpAddr),
}

/// What rvoy reads from one certificate.
#[derive(Clone, Debug)]
pub struct CertInfo {
    /// Lower-case hex without leading zero bytes (BoringSSL's `BN_bn2hex`).
    pub serial: String,
    pub sans: Vec<San>,
    /// Common names of the subject.
    pub common_names: Vec<String>,
    pub not_before: i64,
    pub not_after: i64,
    /// SHA-256 of the SubjectPublicKeyInfo.
    pub spki_sha256: [u8; 32],
    /// SHA-256 of the DER certificate.
    pub sha256: [u8; 32],
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Reads a certificate's details.
pub fn cert_info(der: &[u8]) -> Result<CertInfo, TlsError> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|e| TlsError::Material(format!("unparseable certificate: {e}")))?;
    let raw = cert.tbs_certificate.raw_serial();
    let start = raw
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    let serial: String = raw[start..].iter().map(|b| format!("{b:02x}")).collect();
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(d) => sans.push(San::Dns((*d).to_owned())),
                GeneralName::URI(u) => sans.push(San::Uri((*u).to_owned())),
                GeneralName::RFC822Name(e) => sans.push(San::Email((*e).to_owned())),
                GeneralName::IPAddress(b) => {
                    if let Ok(v4) = <[u8; 4]>::try_from(*b) {
                        sans.push(San::Ip(IpAddr::from(v4)));
                    } else if let Ok(v6) = <[u8; 16]>::try_from(*b) {
                        sans.push(San::Ip(IpAddr::from(v6)));
                    }
                }
                _ => {}
            }
        }
    }
    let common_names = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
        .collect();
    Ok(CertInfo {
        serial,
        sans,
        common_names,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        spki_sha256: sha256(cert.tbs_certificate.subject_pki.raw),
        sha256: sha256(der),
    })
}

/// A loaded certificate with its key, ready for rustls.
#[derive(Debug)]
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    pub info: CertInfo,
    /// Where the chain came from (`/certs` shows it).
    pub path: String,
    /// The stats name: the secret's, or `unnamed_cert_e3b0c442`.
    pub stat_name: String,
}

/// Loads a certificate chain and key.
pub fn load_pair(
    pair: &CertificatePair,
    provider: &CryptoProvider,
    stat_name: &str,
) -> Result<LoadedCert, TlsError> {
    let chain_pem = pair.chain.read().map_err(|e| {
        TlsError::Material(format!("Invalid path: {}: {e}", pair.chain.display_path()))
    })?;
    let chain = model::parse_chain(&chain_pem).map_err(|_| {
        TlsError::Material(format!(
            "Failed to load certificate chain from {}",
            pair.chain.display_path()
        ))
    })?;
    let key_pem = pair.key.read().map_err(|e| {
        TlsError::Material(format!("Invalid path: {}: {e}", pair.key.display_path()))
    })?;
    let key = model::parse_key(&key_pem).map_err(|_| {
        TlsError::Material(format!(
            "Failed to load private key from {}",
            pair.key.display_path()
        ))
    })?;
    let info = cert_info(&chain[0])?;
    let key = CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        TlsError::Material(format!(
            "Failed to load private key from {}: {e}",
            pair.key.display_path()
        ))
    })?;
    Ok(LoadedCert {
        key: Arc::new(key),
        info,
        path: pair.chain.display_path(),
        stat_name: stat_name.to_owned(),
    })
}

/// Trusted CA certificates.
#[derive(Debug)]
pub struct LoadedCa {
    pub anchors: Vec<TrustAnchor<'static>>,
    /// The CA certificates themselves (for `/certs` and client CA hints).
    pub certs: Vec<CertificateDer<'static>>,
    pub path: String,
}

/// Loads trusted CAs from a source.
pub fn load_ca(source: &Source) -> Result<LoadedCa, TlsError> {
    let pem = source
        .read()
        .map_err(|e| TlsError::Material(format!("Invalid path: {}: {e}", source.display_path())))?;
    let certs = model::parse_chain(&pem).map_err(|_| {
        TlsError::Material(format!(
            "Failed to load trusted CA certificates from {}",
            source.display_path()
        ))
    })?;
    let mut anchors = Vec::with_capacity(certs.len());
    for c in &certs {
        let a = webpki::anchor_from_trusted_cert(c).map_err(|e| {
            TlsError::Material(format!(
                "Failed to load trusted CA certificates from {}: {e}",
                source.display_path()
            ))
        })?;
        anchors.push(a.to_owned());
    }
    Ok(LoadedCa {
        anchors,
        certs,
        path: source.display_path(),
    })
}

/// The operating system's trust store.
pub fn load_system_roots() -> Result<LoadedCa, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        return Err(TlsError::Material(format!(
            "no system root certificates found: {:?}",
            found.errors
        )));
    }
    let mut anchors = Vec::with_capacity(found.certs.len());
    for c in &found.certs {
        if let Ok(a) = webpki::anchor_from_trusted_cert(c) {
            anchors.push(a.to_owned());
        }
    }
    Ok(LoadedCa {
        anchors,
        certs: found.certs,
        path: "<system>".to_owned(),
    })
}

/// Loads CRLs from a source.
pub fn load_crls(source: &Source) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let pem = source
        .read()
        .map_err(|e| TlsError::Material(format!("Invalid path: {}: {e}", source.display_path())))?;
    model::parse_crls(&pem).map_err(|_| {
        TlsError::Material(format!("Failed to load CRL from {}", source.display_path()))
    })
}

/// Seconds since the epoch, now.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// RFC 3339 UTC with seconds (`2026-11-25T21:12:38Z`), as `/certs` prints.
pub fn rfc3339(ts: i64) -> String {
    // Civil from days (Howard Hinnant's algorithm).
    let days = ts.div_euclid(86_400);
    let secs = ts.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(2_111_001_158), "2036-11-22T21:12:38Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
