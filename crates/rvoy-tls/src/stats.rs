//! Envoy's TLS stats for one context: `<scope>.ssl.*` (handshakes, failures,
//! and the per-cipher, per-version, per-curve and per-sigalg counters, which
//! Envoy creates on first use), `<scope>.ssl.certificate.<name>.*` gauges,
//! and `<scope>.{server,client}_ssl_socket_factory.*`.

use std::sync::OnceLock;

use rustls::{CipherSuite, NamedGroup, ProtocolVersion, SignatureScheme};
use rvoy_stats::{Counter, Gauge, GaugeImportMode, Scope};

use crate::names;

/// Counters registered on first use, one per possible name.
#[derive(Debug)]
struct Dynamic {
    scope: Scope,
    names: &'static [&'static str],
    cells: Vec<OnceLock<Counter>>,
}

impl Dynamic {
    fn new(scope: Scope, names: &'static [&'static str]) -> Self {
        Dynamic {
            scope,
            names,
            cells: names.iter().map(|_| OnceLock::new()).collect(),
        }
    }

    fn inc(&self, name: &str) {
        if let Some(i) = self.names.iter().position(|n| *n == name) {
            self.cells[i]
                .get_or_init(|| self.scope.counter(self.names[i]))
                .inc();
        }
    }
}

/// The `ssl.*` stats of one context.
#[derive(Debug)]
pub struct SslStats {
    pub connection_error: Counter,
    pub handshake: Counter,
    pub session_reused: Counter,
    pub no_certificate: Counter,
    pub fail_verify_no_cert: Counter,
    pub fail_verify_error: Counter,
    pub fail_verify_san: Counter,
    pub fail_verify_cert_hash: Counter,
    pub ocsp_staple_failed: Counter,
    pub ocsp_staple_omitted: Counter,
    pub ocsp_staple_responses: Counter,
    pub ocsp_staple_requests: Counter,
    ciphers: Dynamic,
    versions: Dynamic,
    curves: Dynamic,
    sigalgs: Dynamic,
    certificates: Scope,
    /// `<factory>.ssl_context_update_by_sds`.
    pub ssl_context_update_by_sds: Counter,
    pub downstream_context_secrets_not_ready: Counter,
    pub upstream_context_secrets_not_ready: Counter,
}

impl SslStats {
    /// `scope` is the listener's or cluster's (`listener.<x>.`, `cluster.<x>.`).
    pub fn new(scope: &Scope, server: bool) -> Self {
        let ssl = scope.scope("ssl.");
        let factory = scope.scope(if server {
            "server_ssl_socket_factory."
        } else {
            "client_ssl_socket_factory."
        });
        SslStats {
            connection_error: ssl.counter("connection_error"),
            handshake: ssl.counter("handshake"),
            session_reused: ssl.counter("session_reused"),
            no_certificate: ssl.counter("no_certificate"),
            fail_verify_no_cert: ssl.counter("fail_verify_no_cert"),
            fail_verify_error: ssl.counter("fail_verify_error"),
            fail_verify_san: ssl.counter("fail_verify_san"),
            fail_verify_cert_hash: ssl.counter("fail_verify_cert_hash"),
            ocsp_staple_failed: ssl.counter("ocsp_staple_failed"),
            ocsp_staple_omitted: ssl.counter("ocsp_staple_omitted"),
            ocsp_staple_responses: ssl.counter("ocsp_staple_responses"),
            ocsp_staple_requests: ssl.counter("ocsp_staple_requests"),
            ciphers: Dynamic::new(ssl.scope("ciphers."), names::CIPHER_NAMES),
            versions: Dynamic::new(ssl.scope("versions."), names::VERSION_NAMES),
            curves: Dynamic::new(ssl.scope("curves."), names::CURVE_NAMES),
            sigalgs: Dynamic::new(ssl.scope("sigalgs."), names::SIGALG_NAMES),
            certificates: ssl.scope("certificate."),
            downstream_context_secrets_not_ready: factory
                .counter("downstream_context_secrets_not_ready"),
            ssl_context_update_by_sds: factory.counter("ssl_context_update_by_sds"),
            upstream_context_secrets_not_ready: factory
                .counter("upstream_context_secrets_not_ready"),
        }
    }

    /// Counts a completed handshake.
    pub fn on_handshake(
        &self,
        suite: Option<CipherSuite>,
        version: Option<ProtocolVersion>,
        group: Option<NamedGroup>,
        resumed: bool,
    ) {
        self.handshake.inc();
        if resumed {
            self.session_reused.inc();
        }
        if let Some(s) = suite {
            self.ciphers.inc(names::cipher_name(s));
        }
        if let Some(v) = version {
            self.versions.inc(names::version_name(v));
        }
        if let Some(g) = group {
            self.curves.inc(names::curve_name(g));
        }
    }

    /// Counts the peer's signature algorithm.
    pub fn on_sigalg(&self, scheme: SignatureScheme) {
        self.sigalgs.inc(names::sigalg_name(scheme));
    }

    /// The `expiration_unix_time_seconds` gauge of a certificate (`name` is
    /// the secret's name, or `unnamed_cert_e3b0c442` / `unnamed_ca_cert_e3b0c442`).
    pub fn certificate_expiration(&self, name: &str) -> Gauge {
        self.certificates
            .scope(&format!("{name}."))
            .gauge("expiration_unix_time_seconds", GaugeImportMode::NeverImport)
    }
}
