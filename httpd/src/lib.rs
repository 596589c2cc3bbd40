//! `httpd`: a static-file HTTP/1.1 server on `protocol_server`.
//!
//! In the picture of `ARCHITECTURE.md` (at the repository root) this is one of the two
//! services on top of the framework: [`Http`] is a `Protocol` whose per-connection value
//! holds only an incomplete request head (nothing while idle). Requests are parsed with
//! `httparse` ([`request`]), paths resolved under the root without ever leaving it
//! ([`path`]), files answered with validators, conditional requests and byte ranges
//! ([`mod@file`]) and sent with `sendfile(2)` by the framework.
//!
//! ```no_run
//! use std::sync::Arc;
//! use httpd::{Http, Site};
//! use protocol_server::Server;
//!
//! let site = Arc::new(Site::new("httpd/www")?);
//! Server::builder().port(8080).protocol(move || Http::new(Arc::clone(&site))).start()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![forbid(unsafe_code)]

pub mod cache;
pub mod file;
pub mod path;
mod protocol;
pub mod request;
pub mod response;
mod sys;
#[cfg(test)]
mod test_dir;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use protocol::Http;

/// Request size limits; each breach has its status.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest request line (414 past it).
    pub max_line: usize,
    /// Largest request head, request line included (431 past it).
    pub max_head: usize,
    /// Most header fields (431 past it; at most [`request::MAX_HEADERS`]).
    pub max_headers: usize,
    /// Largest body read and dropped on GET/HEAD (413 past it).
    pub max_body: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_line: 8 * 1024, max_head: 16 * 1024, max_headers: 100, max_body: 1 << 20 }
    }
}

/// What every connection of a site shares.
#[derive(Debug, Clone)]
pub struct Site {
    /// The document root, canonical (symlinks resolved).
    pub root: PathBuf,
    /// Request limits.
    pub limits: Limits,
    /// Time allowed from a request's first byte to the end of its head (slowloris guard).
    pub header_timeout: Duration,
    /// Log each request in Common Log Format (target `access`, level info).
    pub access_log: bool,
    /// Open files by request path, trusted for a second by default (see [`cache`]);
    /// replace with `FileCache::new(Duration::ZERO)` to resolve every request.
    pub file_cache: Arc<cache::FileCache>,
}

impl Site {
    /// A site serving `root`, with default limits, a 10 s header deadline, the
    /// access log on and a 1 s open-file cache. Fails if `root` is not a readable directory; the error names it.
    pub fn new(root: impl AsRef<Path>) -> std::io::Result<Site> {
        let given = root.as_ref();
        let root = given
            .canonicalize()
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", given.display())))?;
        if !root.is_dir() {
            return Err(std::io::Error::other(format!("{}: not a directory", given.display())));
        }
        Ok(Site {
            root,
            limits: Limits::default(),
            header_timeout: Duration::from_secs(10),
            access_log: true,
            file_cache: Arc::new(cache::FileCache::new(Duration::from_secs(1))),
        })
    }
}
