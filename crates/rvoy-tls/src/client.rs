//! Cluster-side TLS contexts (`UpstreamTlsContext`): the rustls client config
//! with Envoy's defaults (TLS 1.2 only unless configured, its cipher and
//! curve lists, one cached session), the SNI to send (`sni`, or the host's
//! name with `auto_host_sni`), ALPN (configured, or the HTTP protocol the
//! pool speaks as Envoy's fallback), client certificates, server validation,
//! and the handshake with its `ssl.*` stats and failure reason.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::client::{ClientSessionMemoryCache, ClientSessionStore, Resumption};
use rustls::{ClientConfig, ClientConnection};
use rustls_pki_types::ServerName;
use rvoy_model::tls::UpstreamTls;
use rvoy_stats::Scope;
use tokio::net::TcpStream;

use crate::certs::{CertDetail, ContextCerts};
use crate::material;
use crate::names;
use crate::secrets::{ManagedContext, SecretManager};
use crate::server::{failure_reason, file_secrets, load_certificates, uses_file};
use crate::stats::SslStats;
use crate::stream::TlsStream;
use crate::verify::{ServerVerifier, Validator};
use crate::{TlsError, UNNAMED_SUFFIX};

/// The ALPN Envoy offers when the context configures none: the protocol of
/// the connection pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlpnFallback {
    /// No ALPN (TCP proxy).
    None,
    Http1,
    Http2,
}

#[derive(Debug)]
struct State {
    none: Arc<ClientConfig>,
    http1: Arc<ClientConfig>,
    http2: Arc<ClientConfig>,
    certs: ContextCerts,
}

/// A cluster's TLS context.
#[derive(Debug)]
pub struct ClientContext {
    model: Arc<UpstreamTls>,
    stats: Arc<SslStats>,
    state: ArcSwap<State>,
}

/// A failed upstream handshake.
#[derive(Debug)]
pub struct HandshakeFailure {
    pub error: std::io::Error,
    /// Envoy's transport failure reason (`TLS_error:|...:TLS_error_end`).
    pub reason: String,
}

impl ClientContext {
    /// Builds a context; `scope` is the cluster's (`cluster.<name>.`).
    pub fn new(
        model: Arc<UpstreamTls>,
        scope: &Scope,
        secrets: &Arc<SecretManager>,
    ) -> Result<Arc<ClientContext>, TlsError> {
        let stats = Arc::new(SslStats::new(scope, false));
        let state = build(&model, &stats, secrets)?;
        // Envoy counts the first delivery of each SDS secret as an update.
        stats
            .ssl_context_update_by_sds
            .add(file_secrets(&model.common));
        let ctx = Arc::new(ClientContext {
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

    /// The SNI sent to a host named `hostname` (its endpoint `hostname`).
    pub fn sni_for<'a>(&'a self, hostname: &'a str) -> &'a str {
        if !self.model.sni.is_empty() {
            &self.model.sni
        } else if self.model.auto_host_sni {
            hostname
        } else {
            ""
        }
    }

    /// Runs the client handshake on a connected socket, counting it.
    pub async fn connect(
        &self,
        tcp: TcpStream,
        hostname: &str,
        peer: IpAddr,
        fallback: AlpnFallback,
    ) -> Result<TlsStream, HandshakeFailure> {
        let state = self.state.load();
        let config = match fallback {
            AlpnFallback::None => state.none.clone(),
            AlpnFallback::Http1 => state.http1.clone(),
            AlpnFallback::Http2 => state.http2.clone(),
        };
        drop(state);
        let sni = self.sni_for(hostname);
        let name = if sni.is_empty() {
            ServerName::IpAddress(peer.into())
        } else {
            match ServerName::try_from(sni.to_owned()) {
                Ok(n) => n,
                Err(_) => ServerName::IpAddress(peer.into()),
            }
        };
        let conn = ClientConnection::new(config, name).map_err(|e| {
            self.stats.connection_error.inc();
            HandshakeFailure {
                reason: failure_reason(&e),
                error: std::io::Error::other(e),
            }
        })?;
        let mut stream = TlsStream::new(tcp, rustls::Connection::Client(conn));
        match stream.handshake().await {
            Ok(()) => {
                let c = stream.connection();
                self.stats.on_handshake(
                    c.negotiated_cipher_suite().map(|s| s.suite()),
                    c.protocol_version(),
                    c.negotiated_key_exchange_group().map(|g| g.name()),
                    c.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
                );
                Ok(stream)
            }
            Err(error) => {
                let tls = error
                    .get_ref()
                    .and_then(|e| e.downcast_ref::<rustls::Error>());
                // Verification failures count under `fail_verify_*` only.
                if !matches!(tls, Some(rustls::Error::InvalidCertificate(_))) {
                    self.stats.connection_error.inc();
                }
                let reason = tls.map(failure_reason).unwrap_or_default();
                Err(HandshakeFailure { error, reason })
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

impl ManagedContext for ClientContext {
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

/// Builds the client configs. Like Envoy's new TLS context on every secret
/// update, each build starts with an empty session cache.
fn build(
    model: &UpstreamTls,
    stats: &Arc<SslStats>,
    secrets: &SecretManager,
) -> Result<State, TlsError> {
    let sessions: Option<Arc<dyn ClientSessionStore>> = if model.max_session_keys == 0 {
        None
    } else {
        Some(Arc::new(ClientSessionMemoryCache::new(
            model.max_session_keys as usize,
        )))
    };
    use rvoy_model::tls::{SecretValue, ValidationSource};
    let provider = names::provider_for(&model.common.params);
    let certs = load_certificates(&model.common.certificates, secrets, &provider)?;
    let mut details = ContextCerts::default();
    for c in &certs {
        stats
            .certificate_expiration(&c.stat_name)
            .set(u64::try_from(c.info.not_after).unwrap_or(0));
        details.cert_chain.push(CertDetail {
            path: c.path.clone(),
            info: c.info.clone(),
        });
    }
    let validation = match &model.common.validation {
        None => None,
        Some(ValidationSource::Inline(v)) => {
            Some((v.clone(), format!("unnamed_ca_cert_{UNNAMED_SUFFIX}")))
        }
        Some(ValidationSource::Static { name, context }) => Some((context.clone(), name.clone())),
        Some(ValidationSource::Sds(r)) => match secrets.get(r)? {
            SecretValue::ValidationContext(v) => Some((v, r.name.clone())),
            SecretValue::TlsCertificate(_) => {
                return Err(TlsError::Secret(format!(
                    "secret '{}' is not a validation context",
                    r.name
                )));
            }
        },
        Some(ValidationSource::Combined { default, sds }) => match secrets.get(sds)? {
            SecretValue::ValidationContext(v) => {
                Some((rvoy_model::tls::combine(default, &v), sds.name.clone()))
            }
            SecretValue::TlsCertificate(_) => {
                return Err(TlsError::Secret(format!(
                    "secret '{}' is not a validation context",
                    sds.name
                )));
            }
        },
    };
    let (mut validator, ca) = Validator::new(
        validation.as_ref().map(|(v, _)| v),
        provider.clone(),
        stats.clone(),
        false,
    )?;
    validator.check_sni = model.auto_sni_san_validation && model.auto_host_sni;
    if let (Some(ca), Some((_, name))) = (&ca, &validation)
        && let Some(info) = ca.certs.iter().find_map(|c| material::cert_info(c).ok())
    {
        stats
            .certificate_expiration(name)
            .set(u64::try_from(info.not_after).unwrap_or(0));
        details.ca_cert.push(CertDetail {
            path: ca.path.clone(),
            info,
        });
    }
    let verifier = Arc::new(ServerVerifier(Arc::new(validator)));
    let make = |alpn: &[&str]| -> Result<Arc<ClientConfig>, TlsError> {
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&names::versions(&model.common.params))
            .map_err(|e| TlsError::Config(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone());
        let mut config = match certs.first() {
            Some(c) => builder.with_client_cert_resolver(Arc::new(ClientCert(c.key.clone()))),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = if model.common.alpn_protocols.is_empty() {
            alpn.iter().map(|p| p.as_bytes().to_vec()).collect()
        } else {
            model
                .common
                .alpn_protocols
                .iter()
                .map(|p| p.as_bytes().to_vec())
                .collect()
        };
        config.resumption = match &sessions {
            Some(store) => Resumption::store(store.clone()),
            None => Resumption::disabled(),
        };
        Ok(Arc::new(config))
    };
    Ok(State {
        none: make(&[])?,
        http1: make(&["http/1.1"])?,
        http2: make(&["h2"])?,
        certs: details,
    })
}

/// The one client certificate of a context, offered whatever the server asks.
#[derive(Debug)]
struct ClientCert(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for ClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
