//! Authentication and authorisation from mosquitto's own files.
//!
//! An operator moving from mosquitto keeps the `password_file` and the `acl_file`
//! they already have: [`PasswordFile`] reads what `mosquitto_passwd` writes and
//! [`Acl`] reads mosquitto's `acl_file`. Both are pure data: loading either is a
//! single call that either returns the whole new value or an [`AuthError`], so a
//! reload (SIGHUP) can keep the old value when the new file is broken.
//!
//! The behaviour follows mosquitto 2.0 (`src/security_default.c`,
//! `apps/mosquitto_passwd/mosquitto_passwd.c`, `lib/util_topic.c`,
//! `man/mosquitto.conf.5.xml`); each module lists what it follows and where it
//! deliberately differs.
//!
//! ### Two reactions to a bad line
//! A bad *password* line is dropped with a `warn!` naming file and line, and the rest
//! of the file loads, as mosquitto does: one corrupt entry locks out one user, not
//! everybody. A bad *ACL* line makes the whole load fail, as mosquitto does: a file
//! with a rule missing would grant or refuse something the operator did not write.
//!
//! ### File permissions
//! Both files are read the way mosquitto 2.0.16 and later read them: a file that
//! others may read or write is loaded, with a `warn!` (mosquitto announces that it
//! will refuse such files in a future version).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

pub mod acl;
mod filter;
pub mod password;

pub use acl::{Acl, Client};
pub use password::PasswordFile;

/// Why a password or ACL file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// A line of an ACL file is malformed; the whole file is refused.
    #[error("{}:{line}: {reason}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The line, counting from 1.
        line: usize,
        /// What is wrong with it.
        reason: Malformed,
    },
}

/// What is wrong with a line of an ACL file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Malformed {
    /// The line is not UTF-8 (MQTT usernames and topics are).
    NotUtf8,
    /// The first word is not `topic`, `pattern` or `user`.
    UnknownKeyword(String),
    /// `topic` or `pattern` with nothing after it, or with only an access word.
    MissingFilter,
    /// The word before the filter is not `read`, `write`, `readwrite` or `deny`.
    BadAccess(String),
    /// The filter is not a valid MQTT topic filter; the string says why.
    InvalidFilter(String),
    /// `user` with no name after it.
    MissingUsername,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::NotUtf8 => f.write_str("line is not valid UTF-8"),
            Malformed::UnknownKeyword(word) => {
                write!(f, "unknown keyword {word:?} (expected topic, pattern or user)")
            }
            Malformed::MissingFilter => f.write_str("missing topic filter"),
            Malformed::BadAccess(word) => {
                write!(f, "access {word:?} is not read, write, readwrite or deny")
            }
            Malformed::InvalidFilter(why) => write!(f, "invalid topic filter: {why}"),
            Malformed::MissingUsername => f.write_str("missing username after user"),
        }
    }
}

/// Reads a whole credentials file, warning (as mosquitto does) when others may
/// read or write it.
fn read_restricted(path: &Path) -> Result<Vec<u8>, AuthError> {
    let io_error = |source| AuthError::Io { path: path.to_owned(), source };
    let bytes = std::fs::read(path).map_err(io_error)?;
    warn_if_world_accessible(path);
    Ok(bytes)
}

fn warn_if_world_accessible(path: &Path) {
    if crate::sys::others_may_access(path) {
        log::warn!("{}: others may read or write this file; restrict it", path.display());
    }
}

/// The lines of `bytes` with their numbers counted from 1. A `\r` before the `\n`
/// stays: both parsers trim whitespace at the end of a line, as mosquitto does.
fn numbered_lines(bytes: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    bytes.split(|b| *b == b'\n').enumerate().map(|(i, line)| (i + 1, line))
}

/// A fresh directory for one test's files, under the system's temporary directory.
#[cfg(test)]
fn scratch_dir(test: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("pubsub-auth-{}-{n}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}
