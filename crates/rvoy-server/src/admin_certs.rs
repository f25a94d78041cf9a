//! The `/certs` admin endpoint: the certificates of every live TLS context
//! (listener chains and clusters), printed as Envoy prints them.

use crate::admin::AdminResponse;
use crate::server::Server;

/// Answers `GET /certs`.
pub fn handle(server: &Server) -> AdminResponse {
    let contexts: Vec<rvoy_tls::certs::ContextCerts> = server
        .secrets
        .contexts()
        .iter()
        .map(|c| c.certs())
        .collect();
    AdminResponse::json(rvoy_tls::certs::render(&contexts))
}
