//! `reactor`: the epoll event loop under the server framework.
//!
//! In the picture of `ARCHITECTURE.md` (at the repository root) this is the left half:
//! one thread owns a [`mio::Poll`], accepts on its listeners (until `WouldBlock`:
//! everything is edge-triggered), watches each connection for read and write readiness,
//! keeps them in a slab under generation-checked [`ConnId`]s, runs a timer heap whose
//! earliest deadline is the `poll` timeout, and turns SIGINT/SIGTERM into an orderly
//! shutdown.
//!
//! It runs no protocol code. Readiness goes to the layer above through [`Dispatch`]
//! (which typically queues a task on the [`async_pool::Pool`]); due timers go straight
//! to the pool. A *driven* pool (`async_pool::Builder::driven`) is the exception by
//! choice: its doorbell joins the poll and the loop runs its tasks between polls
//! (the server's inline mode). The loop runs under `SCHED_BATCH` by default
//! ([`Builder::batch_scheduling`]). Other threads reach the loop through a [`Handle`]. Connections are handed
//! up as non-blocking `std::net::TcpStream`s: no `mio` type is part of this API, so the
//! engine under it can change. What is Linux-only lives in one private `sys` module.
//!
//! ```no_run
//! use std::sync::Arc;
//! use reactor::{Builder, ConnId, Dispatch, Origin, Ready};
//!
//! struct Log;
//! impl Dispatch for Log {
//!     fn on_open(&mut self, id: ConnId, _: Origin, _: Arc<std::net::TcpStream>) {
//!         println!("open {id:?}");
//!     }
//!     fn on_ready(&mut self, id: ConnId, ready: Ready) {
//!         println!("{id:?}: {ready:?}");
//!     }
//!     fn on_closed(&mut self, id: ConnId) {
//!         println!("closed {id:?}");
//!     }
//! }
//!
//! let pool = Arc::new(async_pool::Pool::new(2)?);
//! let mut reactor = Builder::new().build(pool, Log)?;
//! reactor.listen("127.0.0.1:0".parse().expect("a valid address"))?;
//! reactor.run()?; // until SIGINT/SIGTERM or Handle::shutdown
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ### Draining readiness
//! Events are edge-triggered: whoever handles [`Ready::readable`] reads until
//! `WouldBlock`, or queues itself again, or data already there is never announced.
//!
//! ### Stale ids
//! A [`ConnId`] is `(slot, generation)`. Closing bumps the slot's generation, so
//! commands and events that name a closed connection are dropped, never delivered to the
//! connection that reuses its slot.
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod conns;
mod dispatch;
mod error;
mod handle;
mod id;
mod reactor;
mod sys;
mod timer;

pub use dispatch::{Dispatch, Ready};
pub use error::Error;
pub use handle::{Handle, MIN_PERIOD};
pub use id::{ConnId, ListenerId, Origin, TimerId};
pub use reactor::{Builder, Reactor};

/// Binds a listening socket as [`Reactor::listen`] does (`SO_REUSEADDR`, a 4096
/// backlog), for callers that bind before the reactor exists (to fork after binding).
pub fn bind(addr: std::net::SocketAddr) -> Result<std::net::TcpListener, Error> {
    sys::bind_listener(addr, 4096).map_err(|source| Error::Bind { addr, source })
}

/// The soft open-file limit of this process.
pub fn fd_limit() -> std::io::Result<u64> {
    sys::fd_limit()
}

/// Raises the soft open-file limit to the hard one and returns the new soft limit.
/// Every connection is a descriptor: this is what bounds how many a process holds.
pub fn raise_fd_limit() -> std::io::Result<u64> {
    sys::raise_fd_limit()
}
