//! The `envoy.filters.listener.tls_inspector` listener filter's config: peek
//! at a connection's first bytes for a TLS ClientHello and record its SNI and
//! ALPN for filter chain matching.

use rvoy_api::envoy::extensions::filters::listener::tls_inspector::v3 as pb;
use rvoy_config_load::{ConfigError, FieldPath};

use crate::support::{MessageSupport, yes};

pub(crate) static SUPPORT: &[MessageSupport] = &[MessageSupport {
    message: "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector",
    fields: &[
        yes("initial_read_buffer_size"),
        yes("close_connection_on_client_hello_parsing_errors"),
        yes("max_client_hello_size"),
    ],
}];

/// Envoy's upper bound for a ClientHello the inspector reads.
pub const MAX_CLIENT_HELLO: u32 = 16 * 1024;

/// A compiled `TlsInspector`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsInspector {
    /// How many bytes to peek at first (doubled as needed).
    pub initial_read_buffer_size: u32,
    /// The largest ClientHello (record payload bytes) looked at.
    pub max_client_hello_size: u32,
    /// Close connections whose first bytes are not a parseable ClientHello
    /// (instead of treating them as plaintext).
    pub close_on_parse_errors: bool,
}

/// Lowers the filter's config.
pub fn build(c: &pb::TlsInspector, path: &FieldPath) -> Result<TlsInspector, ConfigError> {
    for (field, set) in [
        (
            "enable_ja3_fingerprinting",
            c.enable_ja3_fingerprinting == Some(true),
        ),
        (
            "enable_ja4_fingerprinting",
            c.enable_ja4_fingerprinting == Some(true),
        ),
    ] {
        if set {
            return Err(ConfigError::not_supported(path.field(field), field));
        }
    }
    let max = c.max_client_hello_size.unwrap_or(MAX_CLIENT_HELLO);
    Ok(TlsInspector {
        initial_read_buffer_size: c.initial_read_buffer_size.unwrap_or(max).min(max),
        max_client_hello_size: max,
        close_on_parse_errors: c.close_connection_on_client_hello_parsing_errors,
    })
}
