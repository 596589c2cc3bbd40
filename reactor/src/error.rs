//! The reactor's error type: each variant says what failed and, where one is at
//! fault, which address.

use std::io;
use std::net::SocketAddr;

/// What can go wrong starting or running a reactor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Binding or listening on an address failed (in use, not local, no permission).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's reason.
        source: io::Error,
    },
    /// An operating-system call the reactor needs failed (`what` names it).
    #[error("{what}: {source}")]
    Io {
        /// The operation, e.g. "creating the epoll instance".
        what: &'static str,
        /// The operating system's reason.
        source: io::Error,
    },
    /// More listeners than a [`crate::ListenerId`] can name.
    #[error("too many listeners (at most 65536)")]
    TooManyListeners,
    /// The reactor's run loop has returned; commands can no longer reach it.
    #[error("the reactor has stopped")]
    Stopped,
}

impl Error {
    pub(crate) fn io(what: &'static str) -> impl FnOnce(io::Error) -> Error {
        move |source| Error::Io { what, source }
    }
}
