//! Typed errors of the server and of connection operations.

use std::io;
use std::net::SocketAddr;

/// Why a server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Binding a listener failed; the address is named.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's reason.
        source: io::Error,
    },
    /// An address given as text did not parse or resolve.
    #[error("invalid listen address {addr:?}: {reason}")]
    Address {
        /// The text given.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `start` was called without any listener.
    #[error("no listener: call .listen(addr, protocol) or .protocol(factory) before .start()")]
    NoListener,
    /// The reactor failed.
    #[error(transparent)]
    Reactor(reactor::Error),
    /// Another operating-system call failed (`what` names it).
    #[error("{what}: {source}")]
    Io {
        /// The operation.
        what: &'static str,
        /// The operating system's reason.
        source: io::Error,
    },
    /// [`crate::Server::each_block`] was called from a worker thread, where waiting
    /// for other workers could deadlock.
    #[error("each_block called from a worker thread (it could wait for itself); use each with on_finish")]
    OnWorker,
    /// `processes(n)` needs to fork before any thread exists, and this process has several.
    #[error("processes({0}) must fork before any thread starts, but this process already runs {1} threads")]
    Threaded(usize, usize),
}

impl From<reactor::Error> for Error {
    fn from(e: reactor::Error) -> Error {
        match e {
            reactor::Error::Bind { addr, source } => Error::Bind { addr, source },
            other => Error::Reactor(other),
        }
    }
}

impl Error {
    pub(crate) fn io(what: &'static str) -> impl FnOnce(io::Error) -> Error {
        move |source| Error::Io { what, source }
    }
}

/// Why output could not be queued on a connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The connection is closed or closing; nothing more is sent.
    #[error("the connection is closed")]
    Closed,
    /// The peer does not read: queued output would pass `max_output`. The connection
    /// has been closed.
    #[error("output bound exceeded ({queued} bytes queued, max_output {max}); connection closed")]
    Overflow {
        /// Bytes that would have been queued.
        queued: usize,
        /// The bound in force.
        max: usize,
    },
    /// The socket (or the connection's read/write hooks) failed; the connection has
    /// been closed. The error is kept whole: its kind tells a reset from the rest.
    #[error("socket error: {0}")]
    Io(#[source] io::Error),
}

/// Equal variants; two `Io` errors are equal when their kinds are (`io::Error` itself
/// cannot be compared).
impl PartialEq for WriteError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (WriteError::Closed, WriteError::Closed) => true,
            (WriteError::Overflow { queued: a, max: m }, WriteError::Overflow { queued: b, max: n }) => {
                a == b && m == n
            }
            (WriteError::Io(a), WriteError::Io(b)) => a.kind() == b.kind(),
            _ => false,
        }
    }
}

impl Eq for WriteError {}
