//! One error type for the harness: what failed, and the file, tool or address at fault.

use std::io;

/// Why a benchmark could not run or report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O call failed; `what` names the file, tool or address.
    #[error("{what}: {source}")]
    Io {
        /// The operation and its object, e.g. "writing bench/results/http.csv".
        what: String,
        /// The OS error.
        source: io::Error,
    },
    /// A tool is missing, misbehaved, or printed something we could not read.
    #[error("{0}")]
    Tool(String),
    /// Drawing a plot failed.
    #[error("plotting {file}: {message}")]
    Plot {
        /// The SVG being written.
        file: String,
        /// What plotters said.
        message: String,
    },
}

/// The harness's result type.
pub type Result<T> = std::result::Result<T, Error>;

/// Adds what was being done to an `io::Error`.
pub trait Context<T> {
    /// Wraps the error with `what` (evaluated only on error).
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io { what: what(), source })
    }
}

impl<T> Context<T> for nix::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|errno| Error::Io { what: what(), source: errno.into() })
    }
}
