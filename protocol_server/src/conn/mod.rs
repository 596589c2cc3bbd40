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
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use async_pool::WorkerId;
use bytes::Bytes;
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

/// What `read` saw during one `on_data` call, to decide whether to call it again;
/// ordered so that a later, stronger fact wins (`fetch_max`).
const READ_NOTHING: u8 = 0;
const READ_SOME: u8 = 1;
const READ_DRAINED: u8 = 2;
/// `call_again`: the protocol asked to come back, whatever its reads saw.
const READ_AGAIN: u8 = 3;

/// Whether what a hook's reads saw means `on_data` must be called again.
fn wants_again(read_seen: u8) -> bool {
    matches!(read_seen, READ_SOME | READ_AGAIN)
}

struct Parts {
    protocol: Option<Box<dyn Protocol>>,
}

/// Service names, each stored once per process, so that a connection keeps a
/// one-byte index (`Inner::service`) instead of a `&'static str`'s two words.
/// Protocols name a handful of services; past 255 distinct names, the others share
/// the index `OTHER_SERVICE` and read as "(other)" (`Conn::service`, group filters).
static SERVICES: [OnceLock<&'static str>; 255] = [const { OnceLock::new() }; 255];
const OTHER_SERVICE: u8 = 255;

/// The index of `service` in `SERVICES`, stored there on first use. Slots fill in
/// order and never change; two threads racing for a free slot with different names
/// leave one name in it and the other moves on to the next slot.
fn intern_service(service: &'static str) -> u8 {
    for (i, slot) in SERVICES.iter().enumerate() {
        if *slot.get_or_init(|| service) == service {
            return i as u8;
        }
    }
    OTHER_SERVICE
}

/// What few connections use, in one allocation made on first use (`Inner::rare`), so
/// that an idle connection without them pays two words instead of five and the
/// common read and write path takes no lock to learn there are no hooks.
#[derive(Default)]
struct Rare {
    /// Read/write hooks (the TLS seam), locked around each socket read and write once
    /// set: reads on the worker and writes from any thread must not interleave in them.
    hooks: Mutex<Option<Box<dyn RwHooks>>>,
    /// A protocol waiting to take over (`set_protocol`) when the running hook returns.
    next: Mutex<Option<Box<dyn Protocol>>>,
}

/// Per-connection state, shared by the tables, the tasks and every `Conn` clone. It
/// is held for as long as a connection is, so its size is most of what an idle
/// connection costs: `conn_state_stays_in_its_malloc_size_class` pins it.
pub(crate) struct Inner {
    id: ConnId,
    worker: WorkerId,
    stream: Arc<TcpStream>,
    server: Server,
    state: AtomicU8,
    sched: AtomicU8,
    read_seen: AtomicU8,
    /// The reactor reported the peer's FIN (or an error). Sticky: that edge may have
    /// been consumed while the protocol was not reading, so a short read no longer
    /// proves there is nothing left to see (the end of input still is).
    peer_closed: AtomicBool,
    /// The current protocol's service name, as an index in `SERVICES`.
    service: AtomicU8,
    parts: Mutex<Parts>,
    output: Mutex<Output>,
    /// Hooks and a pending protocol switch; empty (no allocation) for most connections.
    /// `OnceLock::get` is one atomic load, so the common path takes no lock.
    rare: OnceLock<Box<Rare>>,
    /// Milliseconds since the server's epoch at the last activity.
    pub(crate) last_active: AtomicU64,
    /// 0: never times out. A `u32` (4 bytes less per connection): longer timeouts are
    /// clamped to `MAX_TIMEOUT_MS`, about 49.7 days.
    pub(crate) timeout_ms: AtomicU32,
    /// The timeout wheel tick of this connection's live entry (older entries are stale),
    /// 0 for none. A `u32` of 100 ms ticks lasts 13.6 years of server uptime.
    pub(crate) wheel_tick: AtomicU32,
}

/// The longest idle timeout a connection keeps (`u32::MAX` milliseconds, about 49.7
/// days); `set_timeout` clamps longer ones to it.
const MAX_TIMEOUT_MS: u32 = u32::MAX;

/// A timeout in the `u32` milliseconds `Inner::timeout_ms` holds, clamped.
fn timeout_ms(timeout: Duration) -> u32 {
    u32::try_from(timeout.as_millis()).unwrap_or(MAX_TIMEOUT_MS)
}

/// The read/write hooks if any were set, locked. Without hooks (almost every
/// connection) this is one atomic load and no lock.
fn lock_hooks(rare: &OnceLock<Box<Rare>>) -> Option<MutexGuard<'_, Option<Box<dyn RwHooks>>>> {
    rare.get().map(|rare| lock(&rare.hooks))
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
        let timeout_ms = timeout_ms(server.settings().timeout);
        let service = intern_service(protocol.service());
        Conn(Arc::new(Inner {
            id,
            worker,
            stream,
            server,
            state: AtomicU8::new(OPEN),
            sched: AtomicU8::new(0),
            read_seen: AtomicU8::new(READ_NOTHING),
            peer_closed: AtomicBool::new(false),
            service: AtomicU8::new(service),
            parts: Mutex::new(Parts { protocol: Some(protocol) }),
            output: Mutex::new(Output::default()),
            rare: OnceLock::new(),
            last_active: AtomicU64::new(now),
            timeout_ms: AtomicU32::new(timeout_ms),
            wheel_tick: AtomicU32::new(0),
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
        let index = usize::from(self.0.service.load(Ordering::Acquire));
        SERVICES.get(index).and_then(OnceLock::get).copied().unwrap_or("(other)")
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
    /// A read that returns fewer bytes than `buf` holds may also be the last of a
    /// turn: if anything can still be there (read hooks buffer, or the peer has
    /// closed), the hook is called again as for a read that left data unread.
    /// When the peer has closed, the connection closes after its output is flushed and
    /// `Ok(0)` is returned; a socket error closes it and is returned.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        if !matches!(self.state(), OPEN | CLOSING) {
            return Err(io::ErrorKind::NotConnected.into());
        }
        let mut hooked = false;
        let result = loop {
            let mut hooks = lock_hooks(&self.0.rare);
            let r = match hooks.as_mut().and_then(|h| h.as_mut()) {
                Some(hooks) => {
                    hooked = true;
                    hooks.read(&self.0.stream, buf)
                }
                None => (&*self.0.stream).read(buf),
            };
            drop(hooks);
            if !matches!(&r, Err(e) if e.kind() == io::ErrorKind::Interrupted) {
                break r;
            }
        };
        match result {
            Ok(0) if !buf.is_empty() => {
                self.0.read_seen.fetch_max(READ_DRAINED, Ordering::Relaxed);
                self.close();
                Ok(0)
            }
            // A socket read that did not fill `buf` emptied the receive queue: data
            // arriving later is a new edge, so the socket counts as drained and the
            // hook may stop without a read that only says `WouldBlock` (tokio clears
            // readiness the same way). Not through hooks (a TLS layer may hold plain
            // bytes back), and not once the peer's FIN was reported: its edge may be
            // gone, and the hook must still come back to read the end of input.
            Ok(n) if n < buf.len() && !hooked && !self.0.peer_closed.load(Ordering::Acquire) => {
                self.0.read_seen.fetch_max(READ_DRAINED, Ordering::Relaxed);
                self.touch();
                Ok(n)
            }
            Ok(n) => {
                self.0.read_seen.fetch_max(READ_SOME, Ordering::Relaxed);
                self.touch();
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.0.read_seen.fetch_max(READ_DRAINED, Ordering::Relaxed);
                Ok(0)
            }
            Err(e) => {
                self.abort_io("read", &e);
                Err(e)
            }
        }
    }

    /// Asks for `on_data` to be called again once the tasks queued on this worker now
    /// have run, with or without new input. For a protocol that stops a long job
    /// part-way (a publish to very many subscribers) so that the worker's other
    /// connections are served, and resumes it then. Call it from `on_data` or
    /// `on_ready`; elsewhere it has no effect.
    pub fn call_again(&self) {
        self.0.read_seen.store(READ_AGAIN, Ordering::Relaxed);
    }

    /// When this connection's current deadline falls (idle timeout, closing drain or
    /// linger), or `None` if it has none.
    pub(crate) fn deadline_ms(&self) -> Option<u64> {
        let timeout = u64::from(self.0.timeout_ms.load(Ordering::Relaxed));
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

    /// Sets this connection's idle timeout (zero: never); counts from now. Timeouts
    /// past about 49.7 days (`u32::MAX` milliseconds) are clamped to that.
    pub fn set_timeout(&self, timeout: Duration) {
        self.0.timeout_ms.store(timeout_ms(timeout), Ordering::Relaxed);
        self.touch();
        self.0.server.watch_timeout(self);
    }

    /// This connection's idle timeout (zero: never).
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.0.timeout_ms.load(Ordering::Relaxed)))
    }

    /// Replaces how this connection reads and writes its socket (the seam for TLS).
    pub fn set_rw_hooks(&self, hooks: Box<dyn RwHooks>) {
        let old = lock(&self.rare().hooks).replace(hooks);
        drop(old); // outside the lock: its `Drop` is user code
    }

    /// The rarely used parts, allocated on first use. Once set, `rare` never changes,
    /// so a reader seeing it empty (one atomic load) knows no hooks were set before it.
    fn rare(&self) -> &Rare {
        self.0.rare.get_or_init(Box::default)
    }

    /// Switches the connection to another protocol (an HTTP `Upgrade`, say). Takes
    /// effect when the running hook returns (at once from outside a hook); the new
    /// protocol's `on_open` is then called. The old value is dropped without `on_close`.
    pub fn set_protocol(&self, protocol: Box<dyn Protocol>) {
        let old = lock(&self.rare().next).replace(protocol);
        drop(old); // a switch not applied yet is replaced; dropped outside the lock
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conn_state_stays_in_its_malloc_size_class() {
        // `Arc` puts two counters before `Inner`. glibc serves a request of n bytes
        // from a chunk of n + 8 rounded up to 16: up to 120 bytes take a 128-byte
        // chunk, 121 take 144. Every held connection has one.
        let arc = 2 * std::mem::size_of::<usize>() + std::mem::size_of::<Inner>();
        assert!(
            arc <= 120,
            "Arc<conn::Inner> grew to {arc} bytes, past the 128-byte malloc chunk: every idle \
             connection pays for it (bench conns); put rarely used fields in `Rare`"
        );
    }

    #[test]
    fn service_names_are_stored_once_and_read_back() {
        let a = intern_service("test-service-a");
        let b = intern_service("test-service-b");
        assert_ne!(a, b);
        assert_eq!(intern_service("test-service-a"), a, "the same name, the same index");
        assert_eq!(SERVICES[usize::from(b)].get(), Some(&"test-service-b"));
    }
}
