//! rvoy's TLS (Envoy's `envoy.transport_sockets.tls`), on rustls with the
//! aws-lc-rs crypto provider.
//!
//! Owns: server contexts for listeners ([`server`]: SNI certificate
//! selection, client certificate validation, session resumption) and client
//! contexts for clusters ([`client`]: SNI, ALPN, client certificates, server
//! validation, session cache); Envoy's validation rules ([`verify`]); secrets
//! by name with file-based SDS reloads ([`secrets`]); the TLS stream the data
//! plane reads and writes ([`stream`]); the ClientHello parser of the TLS
//! inspector ([`client_hello`]); TLS stats ([`stats`]); and the `/certs`
//! details ([`certs`]).
//!
//! Contexts publish their rustls config through an `ArcSwap`: a worker
//! takes the current one per connection without a lock, and an SDS
//! rotation swaps in a new one without touching open connections.

pub mod certs;
pub mod client;
pub mod client_hello;
pub mod material;
pub mod names;
pub mod secrets;
pub mod server;
pub mod stats;
pub mod stream;
pub mod verify;

pub use client::{AlpnFallback, ClientContext, HandshakeFailure};
pub use secrets::SecretManager;
pub use server::ServerContext;
pub use stream::TlsStream;

/// Errors building TLS contexts.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Certificates, keys, CAs or CRLs that cannot be read or used.
    #[error("{0}")]
    Material(String),
    /// rustls refused the configuration.
    #[error("{0}")]
    Config(String),
    /// A secret is missing or of the wrong kind.
    #[error("{0}")]
    Secret(String),
}

/// Envoy's statistics-name suffix for unnamed certificates: the first eight
/// hex digits of the SHA-256 of the (empty) name.
pub const UNNAMED_SUFFIX: &str = "e3b0c442";
