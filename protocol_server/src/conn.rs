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
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_pool::WorkerId;
use mio::net::TcpStream;
use reactor::ConnId;

use crate::output::{Chunk, Output, Sink};
use crate::{lock, Protocol, RwHooks, Server, WriteError};

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

    /// Sends `data`, copying what the socket does not take at once.
    pub fn write(&self, data: &[u8]) -> Result<(), WriteError> {
        self.enqueue(Queued::Slice(data), false)
    }

    /// Sends an owned buffer without copying it.
    pub fn write_move(&self, data: Vec<u8>) -> Result<(), WriteError> {
        self.enqueue(Queued::Owned(data), false)
    }

    /// Sends `data` ahead of queued output that has not started (a half-sent buffer
    /// is finished first, so the byte stream stays well-formed).
    pub fn write_urgent(&self, data: Vec<u8>) -> Result<(), WriteError> {
        self.enqueue(Queued::Owned(data), true)
    }

    /// [`Conn::write_move`] for bytes that something else written at once follows
    /// (a response head before [`Conn::send_file`]): the kernel holds them
    /// (`MSG_MORE`) so both leave in full segments, like nginx's `tcp_nopush`.
    pub fn write_corked(&self, data: Vec<u8>) -> Result<(), WriteError> {
        self.enqueue(Queued::Chunk(Chunk::bytes_before_more(data)), false)
    }

    /// Sends `len` bytes of `file` from `offset` (`None`: to the end) with
    /// `sendfile(2)`: the file is never read into memory (unless read/write hooks are
    /// set, which need the bytes). An `Arc<File>` lets one open file serve many
    /// connections at once: `sendfile` with an offset never moves a shared position.
    pub fn send_file(
        &self,
        file: impl Into<Arc<File>>,
        offset: u64,
        len: Option<u64>,
    ) -> Result<(), WriteError> {
        let file = file.into();
        let end = match len {
            Some(len) => offset.saturating_add(len),
            None => file.metadata().map_err(WriteError::Io)?.len(),
        };
        if end <= offset {
            return Ok(());
        }
        self.enqueue(Queued::Chunk(Chunk::File { file, offset, end, started: false }), false)
    }

    fn enqueue(&self, data: Queued<'_>, urgent: bool) -> Result<(), WriteError> {
        let max = self.0.server.settings().max_output;
        let mut out = lock(&self.0.output);
        // Checked under the output lock, which the close path holds when it finds the
        // queue empty before sending FIN: a write racing `close()` from another thread
        // either goes out before the FIN or is refused, never hits the shut socket
        // (EPIPE, then a reset that loses what was in flight).
        if self.state() != OPEN {
            return Err(WriteError::Closed);
        }
        let was_empty = out.is_empty();
        let mut socket_full = false;
        let chunk = match data {
            // Nothing queued: write straight from the caller's bytes, copy only the rest.
            Queued::Slice(bytes) if was_empty => match self.write_now(bytes) {
                Ok(n) if n == bytes.len() => return Ok(()),
                Ok(n) => {
                    socket_full = true;
                    Chunk::bytes(bytes[n..].to_vec())
                }
                Err(e) => return self.failed(out, e),
            },
            Queued::Slice(bytes) => Chunk::bytes(bytes.to_vec()),
            Queued::Owned(bytes) => Chunk::bytes(bytes),
            Queued::Chunk(chunk) => chunk,
        };
        if urgent {
            out.push_urgent(chunk);
        } else {
            out.push(chunk);
        }
        // With nothing queued before, no writable edge is pending: try the socket now.
        if was_empty && !socket_full {
            if let Err(e) = out.flush(&mut self.sink()) {
                return self.failed(out, e);
            }
        }
        // Bound the memory held, after the socket took what it could (a file range
        // holds none, so large files are fine).
        if out.memory() > max {
            let held = out.memory();
            drop(out);
            self.abort(&format!("peer does not read: {held} bytes queued > max_output {max}"));
            return Err(WriteError::Overflow { queued: held, max });
        }
        Ok(())
    }

    fn failed(&self, out: std::sync::MutexGuard<'_, Output>, e: io::Error) -> Result<(), WriteError> {
        drop(out);
        self.abort_io("write", &e);
        Err(WriteError::Io(e))
    }

    /// Writes what the socket takes now; `Ok(n)` bytes written (maybe fewer than asked).
    fn write_now(&self, mut bytes: &[u8]) -> io::Result<usize> {
        let total = bytes.len();
        let mut sink = self.sink();
        while !bytes.is_empty() {
            match sink.write(bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(total - bytes.len())
    }

    fn sink(&self) -> ConnSink<'_> {
        ConnSink { stream: &self.0.stream, hooks: &self.0.hooks }
    }

    /// Bytes waiting to be sent.
    pub fn queued(&self) -> usize {
        lock(&self.0.output).queued()
    }

    /// Closes the connection once its queued output is flushed (a peer that stops
    /// reading for a whole timeout is cut off). Later writes fail.
    pub fn close(&self) {
        if self.0.state.compare_exchange(OPEN, CLOSING, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.touch();
            self.0.server.watch_timeout(self);
            // Queued output may be empty already: finish on the worker, in order.
            self.schedule(|conn| conn.linger_if_flushed());
        }
    }

    /// Closes at once, dropping queued output (errors, misbehaving peers).
    pub(crate) fn abort(&self, why: &str) {
        self.abort_logged(log::Level::Warn, why);
    }

    /// [`Conn::abort`] after a failed `op`: a peer that reset or vanished is routine
    /// (clients are killed, benchmarks stop mid-request), so only other errors warn.
    fn abort_io(&self, op: &str, e: &io::Error) {
        use io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
        let level = if matches!(e.kind(), ConnectionReset | BrokenPipe | ConnectionAborted) {
            log::Level::Debug
        } else {
            log::Level::Warn
        };
        self.abort_logged(level, &format!("{op} failed: {e}"));
    }

    fn abort_logged(&self, level: log::Level, why: &str) {
        if matches!(self.state(), SHUT | CLOSED | HIJACKED) {
            return;
        }
        log::log!(level, "closing {:?} ({}): {why}", self.id(), self.peer());
        lock(&self.0.output).clear();
        self.shut();
    }

    fn peer(&self) -> String {
        self.peer_addr().map_or_else(|_| "peer gone".into(), |a| a.to_string())
    }

    fn linger_if_flushed(&self) {
        if self.state() == CLOSING && lock(&self.0.output).is_empty() {
            self.linger();
        }
    }

    /// Everything is sent: send our FIN. If unread input is waiting (a client may still
    /// be sending), linger: drop input until the peer's FIN or a short deadline, as
    /// nginx's `lingering_close` does; otherwise close at once.
    fn linger(&self) {
        if self.0.state.compare_exchange(CLOSING, LINGERING, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return;
        }
        let _ = self.0.stream.shutdown(std::net::Shutdown::Write);
        if !self.drain_input() {
            return self.shut();
        }
        self.touch();
        self.0.server.watch_timeout(self);
    }

    /// Reads and drops input of a lingering connection; shuts it at the peer's FIN or
    /// an error. Returns whether it is still lingering and some input was dropped.
    fn drain_input(&self) -> bool {
        let mut scratch = [0u8; 4096];
        let mut dropped = false;
        loop {
            match (&*self.0.stream).read(&mut scratch) {
                Ok(0) => {
                    self.shut();
                    return false;
                }
                Ok(_) => dropped = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return dropped,
                Err(_) => {
                    self.shut();
                    return false;
                }
            }
        }
    }

    /// Sends FIN (even if someone still holds a `Conn`) and tells the reactor to forget
    /// the connection; `on_close` follows when it has.
    fn shut(&self) {
        let previous = self.0.state.swap(SHUT, Ordering::AcqRel);
        if matches!(previous, SHUT | CLOSED | HIJACKED) {
            self.0.state.store(previous, Ordering::Release);
            return;
        }
        // A lingering connection sent its FIN already; the descriptor closes when
        // the reactor lets go of it.
        if previous != LINGERING {
            let _ = self.0.stream.shutdown(std::net::Shutdown::Both);
        }
        if self.0.server.reactor().close(self.id()).is_err() {
            log::debug!("{:?}: the reactor is gone; it closed every connection on its way out", self.id());
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
        let stream = std::net::TcpStream::from(self.0.stream.as_fd().try_clone_to_owned()?);
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

/// Scheduling and hooks: everything here runs on the connection's worker.
impl Conn {
    /// Runs `task` on this connection's worker, after the tasks queued before it.
    /// Dropped (with whatever it owns) once the server has stopped.
    pub(crate) fn schedule(&self, task: impl FnOnce(&Conn) + Send + 'static) {
        let conn = self.clone();
        if self.0.server.pool().run_on(self.0.worker, move || task(&conn)).is_err() {
            // Only after the reactor returned and every connection's `on_close` was
            // queued: running it here could overlap the worker still draining.
            log::debug!("{:?}: task dropped, the server has stopped", self.id());
        }
    }

    /// Calls `on_data` again soon (on this connection's worker), as if data arrived.
    /// For a protocol that stopped reading to apply backpressure and now resumes:
    /// edge-triggered readiness will not announce data that is already waiting.
    pub fn resume_reading(&self) {
        self.on_event(READABLE);
    }

    /// Readiness from the reactor (reactor thread): coalesced into one queued task.
    pub(crate) fn on_event(&self, bits: u8) {
        let before = self.0.sched.fetch_or(bits | SCHEDULED, Ordering::AcqRel);
        if before & SCHEDULED == 0 {
            self.schedule(Conn::run_events);
        }
    }

    fn run_events(&self) {
        loop {
            let bits = self.0.sched.swap(SCHEDULED, Ordering::AcqRel);
            if bits & WRITABLE != 0 {
                self.on_writable();
            }
            if bits & READABLE != 0 && self.on_readable() {
                // Data left unread: let the worker's other connections go first.
                self.0.sched.fetch_or(READABLE, Ordering::AcqRel);
                self.schedule(Conn::run_events);
                return;
            }
            if self.0.sched.compare_exchange(SCHEDULED, 0, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                return;
            }
        }
    }

    fn on_writable(&self) {
        if !matches!(self.state(), OPEN | CLOSING) {
            return;
        }
        let mut out = lock(&self.0.output);
        if out.is_empty() {
            return;
        }
        let before = out.queued();
        let flushed = out.flush(&mut self.sink());
        if out.queued() < before {
            self.touch(); // progress: a slow reader is not an idle one
        }
        match flushed {
            Ok(true) => {
                drop(out);
                if self.state() == CLOSING {
                    self.linger();
                } else {
                    self.with_protocol(|p, c| p.on_ready(c));
                }
            }
            Ok(false) => {}
            Err(e) => drop(self.failed(out, e)),
        }
    }

    /// Calls `on_data`; true if it left data unread (it should be called again).
    fn on_readable(&self) -> bool {
        match self.state() {
            OPEN => {}
            LINGERING => {
                self.drain_input();
                return false;
            }
            _ => return false,
        }
        self.0.read_seen.store(READ_NOTHING, Ordering::Relaxed);
        self.with_protocol(|p, c| p.on_data(c));
        self.state() == OPEN && self.0.read_seen.load(Ordering::Relaxed) == READ_SOME
    }

    /// Runs a hook with the connection's protocol taken out of its slot (so the hook
    /// may call anything on `Conn`), then applies a pending `set_protocol`. A panic is
    /// contained: logged, and the connection closed.
    pub(crate) fn with_protocol<R>(&self, hook: impl FnOnce(&mut dyn Protocol, &Conn) -> R) -> Option<R> {
        let mut protocol = lock(&self.0.parts).protocol.take()?;
        let result = catch_unwind(AssertUnwindSafe(|| hook(&mut *protocol, self)));
        let switched = {
            let mut parts = lock(&self.0.parts);
            match parts.next.take() {
                Some(next) => {
                    parts.service = next.service();
                    parts.protocol = Some(next);
                    true
                }
                None => {
                    parts.protocol = Some(protocol);
                    false
                }
            }
        };
        if switched && self.is_open() {
            self.with_protocol(open_hook);
        }
        match result {
            Ok(value) => Some(value),
            Err(payload) => {
                let why = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic".into());
                log::error!("{:?}: a protocol hook panicked: {why}", self.id());
                self.abort("its protocol hook panicked");
                None
            }
        }
    }

    /// The reactor forgot the connection: `on_close`, once, then the protocol is dropped.
    pub(crate) fn finish(&self) {
        if self.0.state.swap(CLOSED, Ordering::AcqRel) == CLOSED {
            return;
        }
        lock(&self.0.output).clear();
        let protocol = lock(&self.0.parts).protocol.take();
        if let Some(mut protocol) = protocol {
            if catch_unwind(AssertUnwindSafe(|| protocol.on_close(self))).is_err() {
                log::error!("{:?}: on_close panicked", self.id());
            }
        }
        lock(&self.0.parts).next = None;
    }
}

/// A named function, not a closure: `with_protocol` recursing with it does not
/// instantiate itself anew each time.
fn open_hook(protocol: &mut dyn Protocol, conn: &Conn) {
    protocol.on_open(conn);
}

enum Queued<'a> {
    Slice(&'a [u8]),
    Owned(Vec<u8>),
    Chunk(Chunk),
}

struct ConnSink<'a> {
    stream: &'a TcpStream,
    hooks: &'a Mutex<Option<Box<dyn RwHooks>>>,
}

impl Sink for ConnSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match lock(self.hooks).as_mut() {
            Some(hooks) => hooks.write(self.stream, buf),
            None => (&*self.stream).write(buf),
        }
    }

    fn write_more(&mut self, buf: &[u8]) -> io::Result<usize> {
        if lock(self.hooks).is_some() {
            return self.write(buf);
        }
        // nix names no MSG_MORE (Linux-only); the bit goes to send(2) as is.
        let more = nix::sys::socket::MsgFlags::from_bits_retain(nix::libc::MSG_MORE);
        nix::sys::socket::send(self.stream.as_fd().as_raw_fd(), buf, more).map_err(Into::into)
    }

    fn send_file(&mut self, file: &File, offset: u64, len: usize) -> Option<io::Result<usize>> {
        if lock(self.hooks).is_some() {
            return None;
        }
        let mut off = i64::try_from(offset).ok()?;
        Some(
            nix::sys::sendfile::sendfile(self.stream.as_fd(), file.as_fd(), Some(&mut off), len)
                .map_err(Into::into),
        )
    }
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn").field("id", &self.id()).field("state", &self.state()).finish_non_exhaustive()
    }
}
