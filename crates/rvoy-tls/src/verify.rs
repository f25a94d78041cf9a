//! Peer certificate validation as Envoy's `DefaultCertValidator` does it:
//! the trust chain against the configured CAs (with CRLs, depth limit,
//! optional acceptance of expired or untrusted chains), then the SAN
//! matchers, then the certificate hash / SPKI pins; each failure counted in
//! the context's `ssl.fail_verify_*` stat. Hostname checks against the SNI
//! are not done unless asked (`auto_sni_san_validation`), as in Envoy.
//!
//! The same [`Validator`] serves as rustls' client-certificate verifier on
//! listeners and server-certificate verifier on clusters.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use rvoy_model::tls::{SanMatcher, SanType, ValidationContext};
use webpki::{
    CertRevocationList, EndEntityCert, KeyUsage, OwnedCertRevocationList, RevocationCheckDepth,
    RevocationOptionsBuilder, UnknownStatusPolicy,
};

use crate::TlsError;
use crate::material::{self, LoadedCa, San};
use crate::stats::SslStats;

/// Why a peer certificate was refused (for stats and failure reasons).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyFailure {
    NoCertificate,
    Chain,
    San,
    Hash,
}

/// A compiled validation context.
#[derive(Debug)]
pub struct Validator {
    roots: Option<Vec<TrustAnchor<'static>>>,
    crls: Vec<OwnedCertRevocationList>,
    crl_leaf_only: bool,
    san_matchers: Vec<SanMatcher>,
    spki_pins: Vec<[u8; 32]>,
    cert_hashes: Vec<[u8; 32]>,
    allow_expired: bool,
    accept_untrusted: bool,
    max_depth: Option<u32>,
    /// Check the SNI against the SANs (upstream `auto_sni_san_validation`).
    pub check_sni: bool,
    /// Validate a client certificate (listener side) or a server one.
    client_side: bool,
    /// Accept a connection without a client certificate.
    pub client_cert_optional: bool,
    /// Offer client auth at all (a validation context exists).
    pub offer_client_auth: bool,
    root_hints: Vec<DistinguishedName>,
    provider: Arc<CryptoProvider>,
    stats: Arc<SslStats>,
}

impl Validator {
    /// Builds a validator from a validation context (`None`: accept any
    /// certificate, checking only handshake signatures).
    pub fn new(
        ctx: Option<&ValidationContext>,
        provider: Arc<CryptoProvider>,
        stats: Arc<SslStats>,
        client_side: bool,
    ) -> Result<(Validator, Option<LoadedCa>), TlsError> {
        let mut ca = None;
        let mut crls = Vec::new();
        if let Some(v) = ctx {
            if let Some(src) = &v.trusted_ca {
                ca = Some(material::load_ca(src)?);
            } else if v.system_root_certs && !client_side {
                ca = Some(material::load_system_roots()?);
            }
            if let Some(src) = &v.crl {
                for der in material::load_crls(src)? {
                    crls.push(OwnedCertRevocationList::from_der(&der).map_err(|e| {
                        TlsError::Material(format!(
                            "Failed to load CRL from {}: {e:?}",
                            src.display_path()
                        ))
                    })?);
                }
            }
        }
        let root_hints = match (&ca, ctx) {
            (Some(ca), Some(v)) if client_side && !v.suppress_client_ca_list => ca
                .anchors
                .iter()
                .map(|a| DistinguishedName::in_sequence(a.subject.as_ref()))
                .collect(),
            _ => Vec::new(),
        };
        let default = ValidationContext::default();
        let v = ctx.unwrap_or(&default);
        Ok((
            Validator {
                roots: ca.as_ref().map(|c| c.anchors.clone()),
                crls,
                crl_leaf_only: v.only_verify_leaf_cert_crl,
                san_matchers: v.san_matchers.clone(),
                spki_pins: v.spki_pins.clone(),
                cert_hashes: v.cert_hashes.clone(),
                allow_expired: v.allow_expired_certificate,
                accept_untrusted: v.accept_untrusted,
                max_depth: v.max_verify_depth,
                check_sni: false,
                client_side,
                client_cert_optional: true,
                offer_client_auth: ctx.is_some(),
                root_hints,
                provider,
                stats,
            },
            ca,
        ))
    }

    /// Runs Envoy's checks on a peer chain.
    pub fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        sni: Option<&str>,
    ) -> Result<(), Error> {
        if let Some(roots) = &self.roots {
            match self.verify_chain(roots, end_entity, intermediates, now) {
                Ok(()) => {}
                Err(e) => {
                    self.stats.fail_verify_error.inc();
                    if !self.accept_untrusted {
                        return Err(e);
                    }
                }
            }
        }
        let info = material::cert_info(end_entity)
            .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if !self.san_matchers.is_empty() && !self.san_matches(&info.sans) {
            self.stats.fail_verify_san.inc();
            let sans: Vec<String> = info
                .sans
                .iter()
                .map(|s| match s {
                    San::Dns(v) | San::Uri(v) | San::Email(v) => v.clone(),
                    San::Ip(ip) => ip.to_string(),
                })
                .collect();
            return Err(failure(format!(
                "SAN matcher, certificate SANs are [{}]",
                sans.join(", ")
            )));
        }
        if self.check_sni
            && let Some(sni) = sni.filter(|s| !s.is_empty())
        {
            let ok = info.sans.iter().any(|s| match s {
                San::Dns(d) => dns_name_match(sni, d),
                San::Ip(ip) => ip.to_string() == sni,
                _ => false,
            });
            if !ok {
                self.stats.fail_verify_san.inc();
                return Err(failure(format!(
                    "SNI {sni} matches no certificate SAN (auto_sni_san_validation)"
                )));
            }
        }
        if !self.spki_pins.is_empty() || !self.cert_hashes.is_empty() {
            let ok = self.cert_hashes.contains(&info.sha256)
                || self.spki_pins.contains(&info.spki_sha256);
            if !ok {
                self.stats.fail_verify_cert_hash.inc();
                return Err(failure("cert hash and spki".to_owned()));
            }
        }
        Ok(())
    }

    fn verify_chain(
        &self,
        roots: &[TrustAnchor<'static>],
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), Error> {
        let cert = EndEntityCert::try_from(end_entity)
            .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let crl_refs: Vec<CertRevocationList<'_>> = self
            .crls
            .iter()
            .map(|c| CertRevocationList::Owned(c.clone()))
            .collect();
        let crl_ptrs: Vec<&CertRevocationList<'_>> = crl_refs.iter().collect();
        let revocation = if crl_ptrs.is_empty() {
            None
        } else {
            RevocationOptionsBuilder::new(&crl_ptrs).ok().map(|b| {
                b.with_depth(if self.crl_leaf_only {
                    RevocationCheckDepth::EndEntity
                } else {
                    RevocationCheckDepth::Chain
                })
                .with_status_policy(UnknownStatusPolicy::Deny)
                .build()
            })
        };
        let usage = if self.client_side {
            KeyUsage::client_auth()
        } else {
            KeyUsage::server_auth()
        };
        let max_depth = self.max_depth;
        let depth_check = move |path: &webpki::VerifiedPath<'_>| -> Result<(), webpki::Error> {
            if let Some(max) = max_depth {
                // Envoy's depth counts intermediates (the leaf is depth 0).
                let intermediates = path.intermediate_certificates().count() as u32;
                if intermediates > max {
                    return Err(webpki::Error::MaximumPathDepthExceeded);
                }
            }
            Ok(())
        };
        let algs = self.provider.signature_verification_algorithms.all;
        let run = |time: UnixTime| {
            cert.verify_for_usage(
                algs,
                roots,
                intermediates,
                time,
                usage,
                revocation,
                Some(&depth_check),
            )
            .map(|_| ())
        };
        match run(now) {
            Ok(()) => Ok(()),
            Err(webpki::Error::CertExpired { .. }) | Err(webpki::Error::CertNotValidYet { .. })
                if self.allow_expired =>
            {
                let info = material::cert_info(end_entity)
                    .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
                let inside = u64::try_from(info.not_before.max(0)).unwrap_or(0) + 1;
                run(UnixTime::since_unix_epoch(Duration::from_secs(inside))).map_err(webpki_error)
            }
            Err(e) => Err(webpki_error(e)),
        }
    }

    fn san_matches(&self, sans: &[San]) -> bool {
        self.san_matchers.iter().any(|m| {
            sans.iter().any(|san| {
                let (kind, value) = match san {
                    San::Dns(d) => (SanType::Dns, d.clone()),
                    San::Uri(u) => (SanType::Uri, u.clone()),
                    San::Email(e) => (SanType::Email, e.clone()),
                    San::Ip(ip) => (SanType::IpAddress, ip.to_string()),
                };
                if m.san_type.is_some_and(|t| t != kind) {
                    return false;
                }
                if kind == SanType::Dns
                    && let rvoy_model::matcher::StringMatcher::Exact { value: v, .. } = &m.matcher
                {
                    return dns_name_match(v, &value);
                }
                m.matcher.matches(&value)
            })
        })
    }

    fn signature_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }

    fn check_tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let r = verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        );
        if r.is_ok() {
            self.stats.on_sigalg(dss.scheme);
        }
        r
    }

    fn check_tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let r = verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        );
        if r.is_ok() {
            self.stats.on_sigalg(dss.scheme);
        }
        r
    }
}

/// The detail of a failed verification, as Envoy words it after
/// `verify cert failed: ` in the transport failure reason.
#[derive(Debug)]
pub struct VerifyDetail(pub String);

impl std::fmt::Display for VerifyDetail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for VerifyDetail {}

fn failure(detail: String) -> Error {
    Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
        VerifyDetail(detail),
    ))))
}

fn webpki_error(e: webpki::Error) -> Error {
    use webpki::Error as W;
    // BoringSSL's `X509_verify_cert_error_string` for the nearest error.
    let text = match e {
        W::CertExpired { .. } => "certificate has expired",
        W::CertNotValidYet { .. } => "certificate is not yet valid",
        W::CertRevoked => "certificate revoked",
        W::UnknownIssuer => "unable to get local issuer certificate",
        W::InvalidSignatureForPublicKey => "certificate signature failure",
        W::UnknownRevocationStatus => "unable to get certificate CRL",
        W::MaximumPathDepthExceeded => "certificate chain too long",
        W::RequiredEkuNotFoundContext(_) => "unsupported certificate purpose",
        _ => "certificate verification error",
    };
    failure(format!(
        "X509_verify_cert: certificate verification error at depth 0: {text}"
    ))
}

/// BoringSSL's DNS name match as Envoy uses it: `*.example.com` in a
/// certificate matches one label (`a.example.com`, not `a.b.example.com`).
pub fn dns_name_match(name: &str, pattern: &str) -> bool {
    if name.eq_ignore_ascii_case(pattern) {
        return true;
    }
    if let Some(suffix) = pattern.strip_prefix("*.")
        && let Some(dot) = name.find('.')
    {
        let (label, rest) = name.split_at(dot);
        return !label.is_empty() && rest[1..].eq_ignore_ascii_case(suffix);
    }
    false
}

/// The listener side: rustls' client certificate verifier.
#[derive(Debug)]
pub struct ClientVerifier(pub Arc<Validator>);

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.0.offer_client_auth
    }

    fn client_auth_mandatory(&self) -> bool {
        !self.0.client_cert_optional
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.0.root_hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.0
            .verify(end_entity, intermediates, now, None)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.check_tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.check_tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_schemes()
    }
}

/// The cluster side: rustls' server certificate verifier.
#[derive(Debug)]
pub struct ServerVerifier(pub Arc<Validator>);

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let sni = match server_name {
            ServerName::DnsName(d) => Some(d.as_ref()),
            _ => None,
        };
        self.0
            .verify(end_entity, intermediates, now, sni)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.check_tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.check_tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::dns_name_match;

    #[test]
    fn dns_wildcards_cover_one_label() {
        assert!(dns_name_match("a.example.com", "*.example.com"));
        assert!(dns_name_match("A.Example.com", "a.example.COM"));
        assert!(!dns_name_match("a.b.example.com", "*.example.com"));
        assert!(!dns_name_match("example.com", "*.example.com"));
    }
}
