//! `envoy.filters.http.buffer`: the whole request body is read before the
//! request goes upstream, up to `max_request_bytes` (413 beyond); per route,
//! `BufferPerRoute` disables the filter or replaces its limit.

use rvoy_api::envoy::extensions::filters::http::buffer::v3 as pb;
use rvoy_config_load::{ConfigError, FieldPath};

use crate::support::{MessageSupport, yes};

pub(crate) static SUPPORT: &[MessageSupport] = &[
    MessageSupport {
        message: "envoy.extensions.filters.http.buffer.v3.Buffer",
        fields: &[yes("max_request_bytes")],
    },
    MessageSupport {
        message: "envoy.extensions.filters.http.buffer.v3.BufferPerRoute",
        fields: &[yes("disabled"), yes("buffer")],
    },
];

/// The filter's settings (filter level, or a route's `buffer` override).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buffer {
    /// The largest request body let through; a larger one gets 413.
    pub max_request_bytes: u64,
}

impl Buffer {
    pub fn from_proto(p: &pb::Buffer, path: &FieldPath) -> Result<Self, ConfigError> {
        // PGV requires the field and a positive value; checked again here so
        // the model never holds a zero limit.
        match p.max_request_bytes {
            Some(v) if v > 0 => Ok(Buffer {
                max_request_bytes: u64::from(v),
            }),
            _ => Err(ConfigError::semantic(
                path.field("max_request_bytes"),
                "max_request_bytes is required and must be greater than 0",
            )),
        }
    }
}

/// `BufferPerRoute`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufferPerRoute {
    /// `disabled: true`: the body streams as without the filter.
    Disabled,
    /// `buffer`: these settings instead of the filter's.
    Override(Buffer),
}

impl BufferPerRoute {
    pub fn from_proto(p: &pb::BufferPerRoute, path: &FieldPath) -> Result<Self, ConfigError> {
        use pb::buffer_per_route::Override;
        match &p.r#override {
            Some(Override::Disabled(true)) => Ok(BufferPerRoute::Disabled),
            Some(Override::Disabled(false)) => Err(ConfigError::semantic(
                path.field("disabled"),
                "value must equal true",
            )),
            Some(Override::Buffer(b)) => Ok(BufferPerRoute::Override(Buffer::from_proto(
                b,
                &path.field("buffer"),
            )?)),
            None => Err(ConfigError::semantic(
                path.clone(),
                "one of disabled, buffer is required",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_is_required_and_positive() {
        let path = FieldPath::root();
        assert!(Buffer::from_proto(&pb::Buffer::default(), &path).is_err());
        assert!(
            Buffer::from_proto(
                &pb::Buffer {
                    max_request_bytes: Some(0)
                },
                &path
            )
            .is_err()
        );
        assert_eq!(
            Buffer::from_proto(
                &pb::Buffer {
                    max_request_bytes: Some(1024)
                },
                &path
            )
            .ok(),
            Some(Buffer {
                max_request_bytes: 1024
            })
        );
    }

    #[test]
    fn per_route_variants() {
        use pb::buffer_per_route::Override;
        let path = FieldPath::root();
        let disabled = pb::BufferPerRoute {
            r#override: Some(Override::Disabled(true)),
        };
        assert_eq!(
            BufferPerRoute::from_proto(&disabled, &path).ok(),
            Some(BufferPerRoute::Disabled)
        );
        let over = pb::BufferPerRoute {
            r#override: Some(Override::Buffer(pb::Buffer {
                max_request_bytes: Some(8),
            })),
        };
        assert_eq!(
            BufferPerRoute::from_proto(&over, &path).ok(),
            Some(BufferPerRoute::Override(Buffer {
                max_request_bytes: 8
            }))
        );
        assert!(BufferPerRoute::from_proto(&pb::BufferPerRoute::default(), &path).is_err());
    }
}
