//! `protocol_server`: the part of the framework its users touch.
//!
//! In the picture of `ARCHITECTURE.md` (at the repository root) this is the middle layer,
//! between the engine and the services: a [`Server`] owns one `reactor` (epoll, accept,
//! timers, signals) and one `async_pool` (the workers), and hosts one or more listeners,
//! each with its own [`Protocol`]. Each accepted connection gets a fresh protocol value
//! (its state) and is pinned to a worker chosen round-robin, so its hooks never run
//! concurrently and run in event order, while different connections run in parallel.
//!
//! - [`Builder`] (from [`Server::builder`]) is the original `start_server(...)`.
//! - [`Conn`] is the connection handle: `read`, `write`, `write_move`,
//!   `write_shared`, `write_urgent`, `send_file`, `backlogged`, `close`, `touch`, `set_timeout`, `hijack`,
//!   `set_rw_hooks`, `set_protocol`.
//! - [`Server`] has the group operations: `count`, `each`, `each_block`, `fd_task`,
//!   `run_after`, `run_every`, `stop`, `stop_all`, `root_pid`.
//!
//! - [`Batch`] queues writes to many connections and sends each connection's share
//!   in one `writev` when flushed (a broker's fan-out).
//!
//! Output is buffered per connection up to `max_output` and flushed on writability;
//! a peer that stops reading past it is disconnected. Idle connections get
//! [`Protocol::ping`] after their timeout (a timing wheel, no scans). SIGINT/SIGTERM
//! run an orderly shutdown: `on_shutdown` for each connection, flush within a grace
//! period, `on_close`, join the workers, `on_finish`.
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod batch;
mod builder;
mod conn;
mod dispatch;
mod error;
mod output;
mod process;
mod protocol;
mod server;
mod sys;
mod table;
mod timeout;

use std::io;
use std::net::TcpStream;
use std::sync::{Mutex, MutexGuard};

pub use batch::Batch;
pub use builder::{Builder, Factory};
pub use bytes::Bytes;
pub use conn::Conn;
pub use error::{Error, WriteError};
pub use protocol::{Protocol, Shutdown};
pub use reactor::{ConnId, TimerId};
pub use server::Server;

impl Server {
    /// Settings for a new server: `Server::builder().port(3000).protocol(make).start()`.
    pub fn builder() -> Builder {
        Builder::default()
    }
}

/// Replaces how one connection reads and writes its socket ([`Conn::set_rw_hooks`]):
/// the seam for TLS or any byte transformation. Both run on non-blocking sockets and
/// report `WouldBlock` like the socket does. `&TcpStream` implements `Read` and `Write`:
/// `(&*stream).read(buf)` reads the socket.
pub trait RwHooks: Send + 'static {
    /// Reads into `buf` (the plain bytes the protocol will see).
    fn read(&mut self, stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes `buf` (plain bytes from the protocol); returns how many were consumed.
    fn write(&mut self, stream: &TcpStream, buf: &[u8]) -> io::Result<usize>;
}

/// Descriptors kept back from the connection limit for files, pipes and logs.
const RESERVED_FDS: u64 = 64;

/// Raises the open-file limit to its hard limit and returns how many connections
/// this process can hold (the limit minus a reserve for files and pipes).
pub fn capacity() -> usize {
    match reactor::raise_fd_limit() {
        Ok(limit) => limit.saturating_sub(RESERVED_FDS).max(1) as usize,
        Err(e) => {
            log::warn!("cannot read or raise RLIMIT_NOFILE ({e}); assuming 1024 descriptors");
            1024 - RESERVED_FDS as usize
        }
    }
}

/// Locks, ignoring poisoning: hooks run outside our locks, so a panic never leaves
/// the data they guard half-updated.
pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
