//! The kit's error type: every failure says what was being waited for or parsed.

use std::time::Duration;

/// A test kit failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A bounded wait ran out.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The bound.
        after: Duration,
    },
    /// A peer sent something that could not be parsed.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The proxy process exited (or never became ready).
    #[error("proxy not ready: {message}\n--- stderr (tail) ---\n{stderr_tail}")]
    NotReady {
        /// Why.
        message: String,
        /// The last lines of its stderr.
        stderr_tail: String,
    },
    /// A template or argument problem.
    #[error("{0}")]
    Usage(String),
    /// An HTTP client error (hyper).
    #[error("http client: {0}")]
    Hyper(String),
    /// A websocket error.
    #[error("websocket: {0}")]
    WebSocket(String),
}

/// The kit's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps an I/O error with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// A timeout error.
    pub fn timeout(what: impl Into<String>, after: Duration) -> Error {
        Error::Timeout {
            what: what.into(),
            after,
        }
    }
}

/// `.ctx("...")` on I/O results.
pub trait IoContext<T> {
    /// Adds context to an I/O error.
    fn ctx(self, context: &str) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, context: &str) -> Result<T> {
        self.map_err(|e| Error::io(context, e))
    }
}
