//! Scheduling and hooks: readiness coalesced into one task per connection, run on the
//! connection's worker, and the protocol hooks it calls.

use super::*;

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

    /// The reactor reported the peer's FIN or an error (reactor thread, before the
    /// event is queued): see `Inner::peer_closed`.
    pub(crate) fn on_peer_closed(&self) {
        self.0.peer_closed.store(true, Ordering::Release);
    }

    /// Readiness from the reactor (reactor thread): coalesced into one queued task.
    pub(crate) fn on_event(&self, bits: u8) {
        let before = self.0.sched.fetch_or(bits | SCHEDULED, Ordering::AcqRel);
        if before & SCHEDULED == 0 {
            self.schedule(Conn::run_events);
        }
    }

    pub(super) fn run_events(&self) {
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

    pub(super) fn on_writable(&self) {
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
                    self.on_drained();
                }
            }
            Ok(false) => {}
            Err(e) => drop(self.failed(out, e)),
        }
    }

    /// The output queue drained: `on_ready`. It may read (a protocol resuming after
    /// backpressure): if it leaves input it should come back for, `on_data` follows.
    pub(super) fn on_drained(&self) {
        if self.state() != OPEN {
            return;
        }
        self.0.read_seen.store(READ_NOTHING, Ordering::Relaxed);
        self.with_protocol(|p, c| p.on_ready(c));
        if self.state() == OPEN && wants_again(self.0.read_seen.load(Ordering::Relaxed)) {
            self.on_event(READABLE);
        }
    }

    /// Calls `on_data`; true if it left data unread (it should be called again).
    pub(super) fn on_readable(&self) -> bool {
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
        self.state() == OPEN && wants_again(self.0.read_seen.load(Ordering::Relaxed))
    }

    /// Runs a hook with the connection's protocol taken out of its slot (so the hook
    /// may call anything on `Conn`), then applies a pending `set_protocol`. A panic is
    /// contained: logged, and the connection closed.
    pub(crate) fn with_protocol<R>(&self, hook: impl FnOnce(&mut dyn Protocol, &Conn) -> R) -> Option<R> {
        let mut protocol = lock(&self.0.parts).protocol.take()?;
        let result = catch_unwind(AssertUnwindSafe(|| hook(&mut *protocol, self)));
        // No lock unless `set_protocol` was ever called on this connection.
        let next = self.0.rare.get().and_then(|rare| lock(&rare.next).take());
        let switched = next.is_some();
        {
            let mut parts = lock(&self.0.parts);
            match next {
                Some(next) => {
                    self.0.service.store(intern_service(next.service()), Ordering::Release);
                    parts.protocol = Some(next);
                }
                None => parts.protocol = Some(protocol),
            }
        }
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
        let next = self.0.rare.get().and_then(|rare| lock(&rare.next).take());
        drop(next);
    }
}

/// A named function, not a closure: `with_protocol` recursing with it does not
/// instantiate itself anew each time.
fn open_hook(protocol: &mut dyn Protocol, conn: &Conn) {
    protocol.on_open(conn);
}
