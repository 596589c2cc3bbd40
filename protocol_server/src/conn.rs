//! [`Conn`]: the handle a protocol gets for its connection, and what the framework
//! keeps per connection.
//!
//! ### Life of a connection
//! `OPEN` → (`close`: `CLOSING`, flush, then) `SHUT` → the reactor forgets it →
//! `on_close` runs on its worker → `CLOSED`. `abort` (errors, overflow, panics) goes
//! to `SHUT` at once and drops queued output. `hijack` leaves for `HIJACKED`.
//!
//! Every task of a connection runs on the worker chosen for it at accept, so hooks
//! never overlap; `sched` coalesces readiness so at most one event task is queued.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsFd;
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

    /// Whether this connection's tasks run on worker `w`.
    pub(crate) fn worker_matches(&self, w: WorkerId) -> bool {
        self.0.worker == w
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
        if matches!(self.state(), CLOSED | HIJACKED | SHUT) {
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
                self.abort(&format!("read failed: {e}"));
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

    /// Sends `len` bytes of `file` from `offset` (`None`: to the end) with
    /// `sendfile(2)`: the file is never read into memory (unless read/write hooks are
    /// set, which need the bytes).
    pub fn send_file(&self, file: File, offset: u64, len: Option<u64>) -> Result<(), WriteError> {
        let end = match len {
            Some(len) => offset.saturating_add(len),
            None => file.metadata().map_err(|e| WriteError::Io(e.to_string()))?.len(),
        };
        if end <= offset {
            return Ok(());
        }
        self.enqueue(Queued::Chunk(Chunk::File { file, offset, end, started: false }), false)
    }

    fn enqueue(&self, data: Queued<'_>, urgent: bool) -> Result<(), WriteError> {
        if self.state() != OPEN {
            return Err(WriteError::Closed);
        }
        let max = self.0.server.settings().max_output;
        let mut out = lock(&self.0.output);
        let rest = match data {
            // Nothing queued: write straight from the caller's bytes, copy only the rest.
            Queued::Slice(bytes) if out.is_empty() => match self.write_now(bytes) {
                Ok(n) => Queued::Slice(&bytes[n..]),
                Err(e) => return self.failed(out, e),
            },
            other => other,
        };
        let chunk = match rest {
            Queued::Slice([]) => return Ok(()),
            Queued::Slice(bytes) => Chunk::bytes(bytes.to_vec()),
            Queued::Owned(bytes) => Chunk::bytes(bytes),
            Queued::Chunk(chunk) => chunk,
        };
        let was_empty = out.is_empty();
        if urgent {
            out.push_urgent(chunk);
        } else {
            out.push(chunk);
        }
        if out.queued() > max {
            let queued = out.queued();
            drop(out);
            self.abort(&format!("peer does not read: {queued} bytes queued > max_output {max}"));
            return Err(WriteError::Overflow { queued, max });
        }
        if was_empty {
            // The socket may have room: no writable edge would come for it.
            if let Err(e) = out.flush(&mut self.sink()) {
                return self.failed(out, e);
            }
        }
        Ok(())
    }

    fn failed(&self, out: std::sync::MutexGuard<'_, Output>, e: io::Error) -> Result<(), WriteError> {
        drop(out);
        self.abort(&format!("write failed: {e}"));
        Err(WriteError::Io(e.to_string()))
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

    /// Closes the connection once its queued output is flushed. Later writes fail.
    pub fn close(&self) {
        if self.0.state.compare_exchange(OPEN, CLOSING, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            // Queued output may be empty already: finish on the worker, in order.
            self.schedule(|conn| conn.shut_if_flushed());
        }
    }

    /// Closes at once, dropping queued output (errors, misbehaving peers).
    pub(crate) fn abort(&self, why: &str) {
        let state = self.state();
        if matches!(state, SHUT | CLOSED | HIJACKED) {
            return;
        }
        log::warn!("closing {:?} ({}): {why}", self.id(), self.peer());
        lock(&self.0.output).clear();
        self.shut();
    }

    fn peer(&self) -> String {
        self.peer_addr().map_or_else(|_| "peer gone".into(), |a| a.to_string())
    }

    fn shut_if_flushed(&self) {
        if self.state() == CLOSING && lock(&self.0.output).is_empty() {
            self.shut();
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
        let _ = self.0.stream.shutdown(std::net::Shutdown::Both);
        if self.0.server.reactor().close(self.id()).is_err() {
            log::debug!("{:?}: the reactor is gone; it closed every connection on its way out", self.id());
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

    /// Takes the socket out of the server: queued output is flushed first (blocking),
    /// then the caller owns a blocking `TcpStream`; the server forgets the connection
    /// and calls `on_close`. Called in a hook it blocks that worker while flushing.
    pub fn hijack(&self) -> io::Result<std::net::TcpStream> {
        let state = self.state();
        if !matches!(state, OPEN | CLOSING)
            || self.0.state.compare_exchange(state, HIJACKED, Ordering::AcqRel, Ordering::Acquire).is_err()
        {
            return Err(io::ErrorKind::NotConnected.into());
        }
        let stream = std::net::TcpStream::from(self.0.stream.as_fd().try_clone_to_owned()?);
        if self.0.server.reactor().close(self.id()).is_err() {
            log::debug!("{:?}: hijacked while the reactor stops", self.id());
        }
        // O_NONBLOCK belongs to the open file, shared by both descriptors: from here on
        // our own writes block too, which is what flushing before handing over needs.
        stream.set_nonblocking(false)?;
        lock(&self.0.output).flush(&mut self.sink())?;
        Ok(stream)
    }
}

/// Scheduling and hooks: everything here runs on the connection's worker.
impl Conn {
    /// Runs `task` on this connection's worker, after the tasks queued before it.
    /// If the pool has stopped (end of shutdown), runs it here: no other task of the
    /// connection can run any more.
    pub(crate) fn schedule(&self, task: impl FnOnce(&Conn) + Send + 'static) {
        let conn = self.clone();
        if let Err(refused) = self.0.server.pool().run_on(self.0.worker, move || task(&conn)) {
            (refused.0)();
        }
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
        match out.flush(&mut self.sink()) {
            Ok(true) => {
                drop(out);
                self.touch();
                if self.state() == CLOSING {
                    self.shut();
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
        if self.state() != OPEN {
            return false;
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
