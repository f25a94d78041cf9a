//! Where formatted lines go: stderr (default), a file opened for appending (`--log-path`),
//! or an in-memory buffer (tests). Each line is written with a single `write_all`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// Errors of setting up the log output.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// `--log-path` could not be opened; the text is Envoy's.
    #[error("Failed to open log-file '{path}'. e.what(): unable to open file '{path}': {reason}")]
    OpenLogFile {
        /// The path as given.
        path: String,
        /// The OS error text (`strerror`).
        reason: String,
    },
}

/// The OS error text without Rust's " (os error N)" suffix, like `strerror`.
pub(crate) fn strerror(e: &io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) if s.ends_with(')') => s[..i].to_owned(),
        _ => s,
    }
}

pub(crate) fn open_append(path: &Path) -> Result<File, LogError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| LogError::OpenLogFile {
            path: path.display().to_string(),
            reason: strerror(&e),
        })
}

pub(crate) enum Output {
    Stderr,
    File { path: PathBuf, file: File },
    Memory(Arc<Mutex<Vec<u8>>>),
}

impl Output {
    pub(crate) fn write_line(&mut self, line: &[u8]) {
        // A failed log write has nowhere to be reported; like Envoy, drop it.
        match self {
            Output::Stderr => {
                let _ = io::stderr().lock().write_all(line);
            }
            Output::File { file, .. } => {
                let _ = file.write_all(line);
            }
            Output::Memory(buf) => buf
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(line),
        }
    }

    pub(crate) fn flush(&mut self) {
        match self {
            Output::Stderr => {
                let _ = io::stderr().flush();
            }
            Output::File { file, .. } => {
                let _ = file.flush();
            }
            Output::Memory(_) => {}
        }
    }

    pub(crate) fn reopen(&mut self) -> Result<(), LogError> {
        if let Output::File { path, file } = self {
            let new = open_append(path)?;
            let _ = file.flush();
            *file = new;
        }
        Ok(())
    }
}

/// Lines captured in memory by [`crate::capture_output`].
#[derive(Debug, Clone)]
pub struct CapturedOutput {
    pub(crate) buf: Arc<Mutex<Vec<u8>>>,
}

impl CapturedOutput {
    /// Everything captured so far (lossy UTF-8).
    pub fn contents(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().unwrap_or_else(PoisonError::into_inner))
            .into_owned()
    }

    /// Takes everything captured so far, leaving the buffer empty.
    pub fn take(&self) -> String {
        let bytes = std::mem::take(&mut *self.buf.lock().unwrap_or_else(PoisonError::into_inner));
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_error_text_matches_envoy() {
        let e = open_append(Path::new("/nonexistent/dir/x.log")).map(|_| ());
        assert_eq!(
            e.map_err(|e| e.to_string()),
            Err(
                "Failed to open log-file '/nonexistent/dir/x.log'. e.what(): unable to open file \
                 '/nonexistent/dir/x.log': No such file or directory"
                    .to_owned()
            )
        );
    }
}
