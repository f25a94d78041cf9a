//! Listener-side TLS contexts (`DownstreamTlsContext`): the rustls server
//! config with Envoy's defaults (TLS 1.2-1.3, its cipher and curve lists,
//! server cipher preference, stateful and stateless resumption), certificate
//! selection by SNI and key type among several certificates, client
//! certificate validation, and the handshake with its `ssl.*` stats.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{
    ClientHello, NoServerSessionStorage, ResolvesServerCert, ServerSessionMemoryCache,
};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, ServerConnection};
use rvoy_model::tls::{
    CertificateSource, DownstreamTls, SecretOrigin, SecretValue, ValidationContext,
    ValidationSource,
};
use rvoy_stats::Scope;
use tokio::net::TcpStream;

use crate::certs::{CertDetail, ContextCerts};
use crate::material::{self, LoadedCert, San};
use crate::names;
use crate::secrets::{ManagedContext, SecretManager};
use crate::stats::SslStats;
use crate::stream::TlsStream;
use crate::verify::{ClientVerifier, Validator, dns_name_match};
use crate::{TlsError, UNNAMED_SUFFIX};

/// Chooses the certificate for a handshake: one whose names match the SNI
/// and whose key the client can use, else (with
/// `full_scan_certs_on_sni_mismatch`) any usable one, else the first.
#[derive(Debug)]
struct CertResolver {
    certs: Vec<(Arc<CertifiedKey>, Vec<String>)>,
    require_sni: bool,
    full_scan: bool,
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = hello.server_name();
        if self.require_sni && sni.is_none() {
            return None;
        }
        let schemes = hello.signature_schemes();
        let usable = |k: &CertifiedKey| k.key.choose_scheme(schemes).is_some();
        if let Some(sni) = sni {
            let matching = self
                .certs
                .iter()
                .filter(|(_, names)| names.iter().any(|n| dns_name_match(sni, n)));
            let mut first_match = None;
            for (k, _) in matching {
                if usable(k) {
                    return Some(k.clone());
                }
                first_match.get_or_insert(k);
            }
            if let Some(k) = first_match.filter(|_| !self.full_scan) {
                return Some(k.clone());
            }
        }
        self.certs
            .iter()
            .find(|(k, _)| usable(k))
            .or(self.certs.first())
            .map(|(k, _)| k.clone())
    }
}

/// What a context currently serves with.
#[derive(Debug)]
struct State {
    config: Arc<ServerConfig>,
    certs: ContextCerts,
}

/// A listener's TLS context.
#[derive(Debug)]
pub struct ServerContext {
    model: Arc<DownstreamTls>,
    stats: Arc<SslStats>,
    state: ArcSwap<State>,
}

/// A failed downstream handshake.
#[derive(Debug)]
pub struct AcceptFailure {
    pub error: std::io::Error,
    /// Envoy's `DOWNSTREAM_TRANSPORT_FAILURE_REASON`.
    pub reason: String,
}

fn validation_for(
    source: &ValidationSource,
    secrets: &SecretManager,
) -> Result<(ValidationContext, String), TlsError> {
    Ok(match source {
        ValidationSource::Inline(v) => (v.clone(), format!("unnamed_ca_cert_{UNNAMED_SUFFIX}")),
        ValidationSource::Static { name, context } => (context.clone(), name.clone()),
        ValidationSource::Sds(r) => match secrets.get(r)? {
            SecretValue::ValidationContext(v) => (v, r.name.clone()),
            SecretValue::TlsCertificate(_) => {
                return Err(TlsError::Secret(format!(
                    "secret '{}' is not a validation context",
                    r.name
                )));
            }
        },
        ValidationSource::Combined { default, sds } => match secrets.get(sds)? {
            SecretValue::ValidationContext(v) => {
                (rvoy_model::tls::combine(default, &v), sds.name.clone())
            }
            SecretValue::TlsCertificate(_) => {
                return Err(TlsError::Secret(format!(
                    "secret '{}' is not a validation context",
                    sds.name
                )));
            }
        },
    })
}

/// Loads the certificates of a context (shared with the client side).
pub(crate) fn load_certificates(
    sources: &[CertificateSource],
    secrets: &SecretManager,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<Vec<LoadedCert>, TlsError> {
    let mut out = Vec::with_capacity(sources.len());
    for s in sources {
        out.push(match s {
            CertificateSource::Inline(pair) => {
                material::load_pair(pair, provider, &format!("unnamed_cert_{UNNAMED_SUFFIX}"))?
            }
            CertificateSource::Static { name, pair } => material::load_pair(pair, provider, name)?,
            CertificateSource::Sds(r) => match secrets.get(r)? {
                SecretValue::TlsCertificate(pair) => material::load_pair(&pair, provider, &r.name)?,
                SecretValue::ValidationContext(_) => {
                    return Err(TlsError::Secret(format!(
                        "secret '{}' is not a TLS certificate",
                        r.name
                    )));
                }
            },
        });
    }
    Ok(out)
}

/// How many secrets a context reads from SDS files.
pub(crate) fn file_secrets(common: &rvoy_model::tls::CommonTls) -> u64 {
    rvoy_model::tls::sds_refs(common)
        .iter()
        .filter(|r| matches!(r.origin, SecretOrigin::File { .. }))
        .count() as u64
}

/// Whether a context reads secrets from `path`.
pub(crate) fn uses_file(common: &rvoy_model::tls::CommonTls, path: &Path) -> bool {
    rvoy_model::tls::sds_refs(common)
        .iter()
        .any(|r| matches!(&r.origin, SecretOrigin::File { path: p, .. } if p == path))
}

impl ServerContext {
    /// Builds a context; `scope` is the listener's (`listener.<x>.`).
    pub fn new(
        model: Arc<DownstreamTls>,
        scope: &Scope,
        secrets: &Arc<SecretManager>,
    ) -> Result<Arc<ServerContext>, TlsError> {
        let stats = Arc::new(SslStats::new(scope, true));
        let state = build(&model, &stats, secrets)?;
        // Envoy counts the first delivery of each SDS secret as an update.
        stats
            .ssl_context_update_by_sds
            .add(file_secrets(&model.common));
        let ctx = Arc::new(ServerContext {
            model,
            stats,
            state: ArcSwap::from_pointee(state),
        });
        let weak: std::sync::Weak<dyn ManagedContext> = Arc::downgrade(&ctx) as _;
        secrets.register(weak);
        Ok(ctx)
    }

    /// The stats of this context.
    pub fn stats(&self) -> &SslStats {
        &self.stats
    }

    /// Runs the server handshake on an accepted socket, counting it.
    pub async fn accept(&self, tcp: TcpStream) -> Result<TlsStream, AcceptFailure> {
        let config = self.state.load().config.clone();
        let conn = match ServerConnection::new(config) {
            Ok(c) => c,
            Err(e) => {
                self.stats.connection_error.inc();
                return Err(AcceptFailure {
                    reason: failure_reason(&e),
                    error: std::io::Error::other(e),
                });
            }
        };
        let mut stream = TlsStream::new(tcp, rustls::Connection::Server(conn));
        match stream.handshake().await {
            Ok(()) => {
                let c = stream.connection();
                self.stats.on_handshake(
                    c.negotiated_cipher_suite().map(|s| s.suite()),
                    c.protocol_version(),
                    c.negotiated_key_exchange_group().map(|g| g.name()),
                    c.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
                );
                if c.peer_certificates().is_none_or(|p| p.is_empty()) {
                    self.stats.no_certificate.inc();
                }
                Ok(stream)
            }
            Err(error) => {
                let tls = error
                    .get_ref()
                    .and_then(|e| e.downcast_ref::<rustls::Error>());
                if matches!(tls, Some(rustls::Error::NoCertificatesPresented)) {
                    self.stats.fail_verify_no_cert.inc();
                }
                // Verification failures count under `fail_verify_*` only.
                if !matches!(tls, Some(rustls::Error::InvalidCertificate(_))) {
                    self.stats.connection_error.inc();
                }
                let reason = tls.map(failure_reason).unwrap_or_default();
                Err(AcceptFailure { error, reason })
            }
        }
    }

    fn rebuild(&self, secrets: &SecretManager) -> Result<(), TlsError> {
        let state = build(&self.model, &self.stats, secrets)?;
        self.state.store(Arc::new(state));
        self.stats.ssl_context_update_by_sds.inc();
        Ok(())
    }
}

impl ManagedContext for ServerContext {
    fn uses_file(&self, path: &Path) -> bool {
        uses_file(&self.model.common, path)
    }

    fn reload(&self, secrets: &SecretManager) -> Result<(), TlsError> {
        self.rebuild(secrets)
    }

    fn certs(&self) -> ContextCerts {
        self.state.load().certs.clone()
    }
}

/// Builds what a context serves with. Like Envoy's new TLS context on every
/// secret update, each build starts with new session ticket keys and an
/// empty session cache: sessions from before a certificate rotation are not
/// resumed, so every new connection is presented the current certificate.
fn build(
    model: &DownstreamTls,
    stats: &Arc<SslStats>,
    secrets: &SecretManager,
) -> Result<State, TlsError> {
    let ticketer = if model.disable_stateless_session_resumption {
        None
    } else {
        Some(
            rustls::crypto::aws_lc_rs::Ticketer::new()
                .map_err(|e| TlsError::Config(e.to_string()))?,
        )
    };
    let sessions: Arc<dyn rustls::server::StoresServerSessions> =
        if model.disable_stateful_session_resumption {
            Arc::new(NoServerSessionStorage {})
        } else {
            ServerSessionMemoryCache::new(1024)
        };
    let provider = names::provider_for(&model.common.params);
    let certs = load_certificates(&model.common.certificates, secrets, &provider)?;
    let mut details = ContextCerts::default();
    let mut resolved = Vec::with_capacity(certs.len());
    for c in certs {
        stats
            .certificate_expiration(&c.stat_name)
            .set(u64::try_from(c.info.not_after).unwrap_or(0));
        let mut names: Vec<String> = c
            .info
            .sans
            .iter()
            .filter_map(|s| match s {
                San::Dns(d) => Some(d.clone()),
                San::Ip(ip) => Some(ip.to_string()),
                _ => None,
            })
            .collect();
        if names.is_empty() {
            names = c.info.common_names.clone();
        }
        details.cert_chain.push(CertDetail {
            path: c.path.clone(),
            info: c.info.clone(),
        });
        resolved.push((c.key, names));
    }
    let validation = model
        .common
        .validation
        .as_ref()
        .map(|v| validation_for(v, secrets))
        .transpose()?;
    let (mut validator, ca) = Validator::new(
        validation.as_ref().map(|(v, _)| v),
        provider.clone(),
        stats.clone(),
        true,
    )?;
    validator.client_cert_optional = !model.require_client_certificate;
    if let (Some(ca), Some((_, name))) = (&ca, &validation) {
        for cert in &ca.certs {
            if let Ok(info) = material::cert_info(cert) {
                stats
                    .certificate_expiration(name)
                    .set(u64::try_from(info.not_after).unwrap_or(0));
                details.ca_cert.push(CertDetail {
                    path: ca.path.clone(),
                    info,
                });
                break;
            }
        }
    }
    let builder = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&names::versions(&model.common.params))
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = if validation.is_some() {
        builder.with_client_cert_verifier(Arc::new(ClientVerifier(Arc::new(validator))))
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder.with_cert_resolver(Arc::new(CertResolver {
        certs: resolved,
        require_sni: model.require_sni,
        full_scan: model.full_scan_certs_on_sni_mismatch,
    }));
    config.alpn_protocols = model
        .common
        .alpn_protocols
        .iter()
        .map(|p| p.as_bytes().to_vec())
        .collect();
    config.ignore_client_order = !model.prefer_client_ciphers;
    config.session_storage = sessions;
    if let Some(t) = &ticketer {
        config.ticketer = t.clone();
    }
    if model.disable_stateful_session_resumption && ticketer.is_none() {
        config.send_tls13_tickets = 0;
    }
    Ok(State {
        config: Arc::new(config),
        certs: details,
    })
}

/// Envoy's (BoringSSL's) text for a handshake failure, as
/// `%DOWNSTREAM_TRANSPORT_FAILURE_REASON%` / `%UPSTREAM_TRANSPORT_FAILURE_REASON%` show it.
pub fn failure_reason(e: &rustls::Error) -> String {
    use rustls::Error as E;
    let (code, name) = match e {
        E::InvalidCertificate(rustls::CertificateError::Other(other)) => {
            return format!(
                "TLS_error:|268435581:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED:verify cert failed: {}:TLS_error_end",
                other.0
            );
        }
        E::InvalidCertificate(_) => (268435581, "CERTIFICATE_VERIFY_FAILED"),
        E::NoCertificatesPresented => (268435654, "PEER_DID_NOT_RETURN_A_CERTIFICATE"),
        E::AlertReceived(a) => match a {
            rustls::AlertDescription::HandshakeFailure => {
                (268436496, "SSLV3_ALERT_HANDSHAKE_FAILURE")
            }
            rustls::AlertDescription::BadCertificate => (268436498, "SSLV3_ALERT_BAD_CERTIFICATE"),
            rustls::AlertDescription::UnknownCA => (268436502, "TLSV1_ALERT_UNKNOWN_CA"),
            rustls::AlertDescription::CertificateRequired => {
                (268436564, "TLSV1_CERTIFICATE_REQUIRED")
            }
            rustls::AlertDescription::ProtocolVersion => {
                (268436526, "TLSV1_ALERT_PROTOCOL_VERSION")
            }
            rustls::AlertDescription::NoApplicationProtocol => {
                (268436600, "TLSV1_ALERT_NO_APPLICATION_PROTOCOL")
            }
            _ => (268436496, "SSLV3_ALERT_HANDSHAKE_FAILURE"),
        },
        E::InvalidMessage(_) | E::InappropriateMessage { .. } => {
            (268435703, "WRONG_VERSION_NUMBER")
        }
        E::PeerIncompatible(_) => (268435638, "NO_SHARED_CIPHER"),
        _ => (268435459, "UNKNOWN_ERROR"),
    };
    format!("TLS_error:|{code}:SSL routines:OPENSSL_internal:{name}:TLS_error_end")
}
