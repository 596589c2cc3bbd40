//! [`Conn`]: the handle a protocol gets for its connection, and what the framework
//! keeps per connection.
//!
//! ### Life of a connection
//! `OPEN` → `close` → `CLOSING` (queued output flushes; a peer that stops reading for
//! a whole timeout is cut off) → `LINGERING` (our FIN is sent; unread input is read
//! and dropped until the peer's FIN or a short deadline, because closing a socket with
//! unread input makes Linux send RST and discard what the peer has not read yet) →
//! `SHUT` → the reactor forgets it → `on_close` runs on its worker → `CLOSED`.
//! `abort` (errors, overflow, panics) goes to `SHUT` at once and drops queued output.
//! `hijack` leaves for `HIJACKED`.
//!
//! Every task of a connection runs on the worker chosen for it at accept, so hooks
//! never overlap; `sched` coalesces readiness so at most one event task is queued.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_pool::WorkerId;
use reactor::ConnId;

use crate::output::{Chunk, Output, Sink};
use crate::{lock, Protocol, RwHooks, Server, WriteError};

mod close;
mod schedule;
mod write;

const OPEN: u8 = 0;
const CLOSING: u8 = 1;
const SHUT: u8 = 2;
const CLOSED: u8 = 3;
const HIJACKED: u8 = 4;
const LINGERING: u8 = 5;

/// A closing connection whose timeout is "never" still gets this long to drain.
const CLOSING_MS: u64 = 30_000;
/// How long a lingering close waits for the peer's FIN.
const LINGER_MS: u64 = 2_000;

pub(crate) const READABLE: u8 = 1;
pub(crate) const WRITABLE: u8 = 2;
const SCHEDULED: u8 = 4;

/// What `read` saw during one `on_data` call, to decide whether to call it again.
const READ_NOTHING: u8 = 0;
const READ_SOME: u8 = 1;
const READ_DRAINED: u8 = 2;

struct Parts {
    protocol: Option<Box<dyn Protocol>>,
    next: Option<Box<dyn Protocol>>,
    service: &'static str,
}

pub(crate) struct Inner {
    id: ConnId,
    worker: WorkerId,
    stream: Arc<TcpStream>,
    server: Server,
    state: AtomicU8,
    sched: AtomicU8,
    read_seen: AtomicU8,
    parts: Mutex<Parts>,
    output: Mutex<Output>,
    hooks: Mutex<Option<Box<dyn RwHooks>>>,
    /// Milliseconds since the server's epoch at the last activity.
    pub(crate) last_active: AtomicU64,
    /// 0: never times out.
    pub(crate) timeout_ms: AtomicU64,
    /// The timeout wheel tick of this connection's live entry (older entries are stale).
    pub(crate) wheel_tick: AtomicU64,
}

/// A connection, as hooks and tasks see it. Cheap to clone and usable from any
/// thread; operations on a closed connection fail or do nothing, and never reach
/// another connection (ids are generation-checked).
#[derive(Clone)]
pub struct Conn(pub(crate) Arc<Inner>);

impl Conn {
    pub(crate) fn new(
        id: ConnId,
        worker: WorkerId,
        stream: Arc<TcpStream>,
        server: Server,
        protocol: Box<dyn Protocol>,
    ) -> Conn {
        let now = server.now_ms();
        let timeout_ms = server.settings().timeout.as_millis() as u64;
        let service = protocol.service();
        Conn(Arc::new(Inner {
            id,
            worker,
            stream,
            server,
            state: AtomicU8::new(OPEN),
            sched: AtomicU8::new(0),
            read_seen: AtomicU8::new(READ_NOTHING),
            parts: Mutex::new(Parts { protocol: Some(protocol), next: None, service }),
            output: Mutex::new(Output::default()),
            hooks: Mutex::new(None),
            last_active: AtomicU64::new(now),
            timeout_ms: AtomicU64::new(timeout_ms),
            wheel_tick: AtomicU64::new(0),
        }))
    }

    /// This connection's id (generation-checked: it never names a later connection).
    pub fn id(&self) -> ConnId {
        self.0.id
    }

    /// The server this connection belongs to.
    pub fn server(&self) -> &Server {
        &self.0.server
    }

    /// The service name of the connection's current protocol.
    pub fn service(&self) -> &'static str {
        lock(&self.0.parts).service
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.stream.peer_addr()
    }

    /// Whether the connection is open and not closing.
    pub fn is_open(&self) -> bool {
        self.state() == OPEN
    }

    fn state(&self) -> u8 {
        self.0.state.load(Ordering::Acquire)
    }

    /// Reads available bytes into `buf` (through the read hook if one is set).
    /// `Ok(0)` means nothing more for now: the next arrival calls `on_data` again.
    /// When the peer has closed, the connection closes after its output is flushed and
    /// `Ok(0)` is returned; a socket error closes it and is returned.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        if !matches!(self.state(), OPEN | CLOSING) {
            return Err(io::ErrorKind::NotConnected.into());
        }
        let result = loop {
            let r = match lock(&self.0.hooks).as_mut() {
                Some(hooks) => hooks.read(&self.0.stream, buf),
                None => (&*self.0.stream).read(buf),
            };
            if !matches!(&r, Err(e) if e.kind() == io::ErrorKind::Interrupted) {
                break r;
            }
        };
        match result {
            Ok(0) if !buf.is_empty() => {
                self.0.read_seen.store(READ_DRAINED, Ordering::Relaxed);
                self.close();
                Ok(0)
            }
            Ok(n) => {
                self.0.read_seen.fetch_max(READ_SOME, Ordering::Relaxed);
                self.touch();
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.0.read_seen.store(READ_DRAINED, Ordering::Relaxed);
                Ok(0)
            }
            Err(e) => {
                self.abort_io("read", &e);
                Err(e)
            }
        }
    }

    /// When this connection's current deadline falls (idle timeout, closing drain or
    /// linger), or `None` if it has none.
    pub(crate) fn deadline_ms(&self) -> Option<u64> {
        let timeout = self.0.timeout_ms.load(Ordering::Relaxed);
        let span = match self.state() {
            OPEN if timeout > 0 => timeout,
            CLOSING if timeout > 0 => timeout,
            CLOSING => CLOSING_MS,
            LINGERING => LINGER_MS,
            _ => return None,
        };
        Some(self.0.last_active.load(Ordering::Relaxed) + span)
    }

    /// The deadline passed (timer task): ping an open connection, cut off a closing
    /// one whose peer stopped reading, end a lingering one.
    pub(crate) fn expired(&self, now_ms: u64) {
        match self.state() {
            OPEN => {
                self.0.last_active.store(now_ms, Ordering::Relaxed); // next ping one timeout later
                self.schedule(|c| {
                    c.with_protocol(|p, c| p.ping(c));
                });
            }
            CLOSING => self.schedule(|c| c.abort("peer stopped reading while we were closing")),
            LINGERING => self.schedule(Conn::shut),
            _ => {}
        }
    }

    /// Postpones the timeout: the connection counts as active now.
    pub fn touch(&self) {
        self.0.last_active.store(self.0.server.now_ms(), Ordering::Relaxed);
    }

    /// Sets this connection's idle timeout (zero: never); counts from now.
    pub fn set_timeout(&self, timeout: Duration) {
        self.0.timeout_ms.store(timeout.as_millis() as u64, Ordering::Relaxed);
        self.touch();
        self.0.server.watch_timeout(self);
    }

    /// This connection's idle timeout (zero: never).
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.0.timeout_ms.load(Ordering::Relaxed))
    }

    /// Replaces how this connection reads and writes its socket (the seam for TLS).
    pub fn set_rw_hooks(&self, hooks: Box<dyn RwHooks>) {
        *lock(&self.0.hooks) = Some(hooks);
    }

    /// Switches the connection to another protocol (an HTTP `Upgrade`, say). Takes
    /// effect when the running hook returns (at once from outside a hook); the new
    /// protocol's `on_open` is then called. The old value is dropped without `on_close`.
    pub fn set_protocol(&self, protocol: Box<dyn Protocol>) {
        lock(&self.0.parts).next = Some(protocol);
        self.schedule(|conn| {
            conn.with_protocol(|_, _| ());
        });
    }

    /// Takes the socket out of the server: queued output is flushed first (blocking,
    /// for at most the server's grace period), then the caller owns a blocking
    /// `TcpStream`; the server forgets the connection and calls `on_close`. Called in a
    /// hook it blocks that worker while flushing.
    pub fn hijack(&self) -> io::Result<std::net::TcpStream> {
        let state = self.state();
        if !matches!(state, OPEN | CLOSING)
            || self.0.state.compare_exchange(state, HIJACKED, Ordering::AcqRel, Ordering::Acquire).is_err()
        {
            return Err(io::ErrorKind::NotConnected.into());
        }
        let stream = self.0.stream.try_clone()?;
        // Out of the lock: a peer slow to read must not freeze this connection's worker.
        let mut pending = std::mem::take(&mut *lock(&self.0.output));
        // O_NONBLOCK and SO_SNDTIMEO belong to the socket, shared by both descriptors:
        // our own writes below block too, for a bounded time.
        let flushed = stream
            .set_nonblocking(false)
            .and_then(|()| {
                stream.set_write_timeout(Some(self.0.server.settings().grace.max(Duration::from_millis(1))))
            })
            .and_then(|()| pending.flush(&mut self.sink()));
        if self.0.server.reactor().close(self.id()).is_err() {
            log::debug!("{:?}: hijacked while the reactor stops", self.id());
        }
        flushed?;
        stream.set_write_timeout(None)?;
        Ok(stream)
    }
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn").field("id", &self.id()).field("state", &self.state()).finish_non_exhaustive()
    }
}
