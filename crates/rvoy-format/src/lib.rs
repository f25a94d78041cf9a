//! Envoy's substitution format strings ("command operators").
//!
//! Owns compiling and rendering the formats of access logs (`text_format`,
//! `text_format_source`, `json_format`, `omit_empty_values`), of header
//! values (`request_headers_to_add`, ...) and of local reply bodies, with
//! every command operator of Envoy 1.40 (see [`OPERATORS`]). Also owns the
//! data a format reads: the [`StreamInfo`] trait the data plane implements,
//! and [`ResponseFlags`].
//!
//! ```
//! use rvoy_format::{Format, TestStreamInfo};
//!
//! let format = Format::parse("%REQ(:METHOD)% %RESPONSE_CODE% %UPSTREAM_HOST%\n")?;
//! let mut info = TestStreamInfo::new();
//! info.set_request_header(":method", "GET");
//! info.response_code = Some(200);
//! assert_eq!(format.render_to_string(&info), "GET 200 -\n");
//! # Ok::<(), rvoy_format::FormatError>(())
//! ```
//!
//! Formats compile once ([`Format::parse`], [`Format::json`],
//! [`Format::header_value`]) into literal runs and operators with their
//! arguments pre-parsed; rendering appends to a caller's buffer. A format
//! without operators is a literal ([`Format::as_literal`]) that costs nothing
//! per request.

mod error;
mod format;
mod json;
mod ops;
mod response_flags;
mod stream_info;
mod test_info;
mod time;

pub use error::FormatError;
pub use format::{DEFAULT_ACCESS_LOG_FORMAT, Format};
pub use ops::OPERATORS;
pub use response_flags::{ResponseFlag, ResponseFlags};
pub use stream_info::{
    AccessLogType, Address, AddressKind, BytesMeter, DetectedCloseType, FieldValue,
    FilterStateObject, MetadataKind, Protocol, PseudoHeader, StreamInfo, StringFilterState,
    TimePoint, TlsInfo, header_map_bytes,
};
pub use test_info::{OwnedAddress, TestStreamInfo};
