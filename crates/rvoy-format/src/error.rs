//! Errors from compiling a format, worded as Envoy words them so a config
//! rejected by rvoy reads like one rejected by Envoy.

/// Why a format string (or JSON format) does not compile.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The text at `position` is not `%COMMAND(ARG):LEN%`.
    #[error(
        "Incorrect configuration: {format}. Couldn't find valid command at position {position}"
    )]
    InvalidSyntax { format: String, position: usize },
    /// A well-formed command that no formatter knows.
    #[error("Not supported field in StreamInfo: {0}")]
    UnknownOperator(String),
    /// A command that takes neither an argument nor a length got one.
    #[error("{0} does not take any parameters or length")]
    NoParameters(String),
    /// A command that needs an argument got none.
    #[error("{0} requires parameters")]
    ParametersRequired(String),
    /// A command that takes no `:LEN` got one.
    #[error("{0} does not allow length to be specified.")]
    LengthNotAllowed(String),
    /// A command Envoy knows that rvoy does not implement (e.g. `%CEL(...)%`).
    #[error("{operator} is not supported by rvoy: {reason}")]
    Unsupported { operator: String, reason: String },
    /// A bad argument, with Envoy's message.
    #[error("{0}")]
    Invalid(String),
    /// A JSON format that is not a JSON object of supported values.
    #[error("{0}")]
    Json(String),
}

impl FormatError {
    pub(crate) fn invalid(msg: impl Into<String>) -> FormatError {
        FormatError::Invalid(msg.into())
    }
}
