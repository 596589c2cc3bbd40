//! Closing: the state machine from `close` through lingering to `SHUT`, and `abort`
//! for errors (see the life of a connection in the parent module).

use super::*;

impl Conn {
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
    pub(super) fn abort_io(&self, op: &str, e: &io::Error) {
        use io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
        let level = if matches!(e.kind(), ConnectionReset | BrokenPipe | ConnectionAborted) {
            log::Level::Debug
        } else {
            log::Level::Warn
        };
        self.abort_logged(level, &format!("{op} failed: {e}"));
    }

    pub(super) fn abort_logged(&self, level: log::Level, why: &str) {
        if matches!(self.state(), SHUT | CLOSED | HIJACKED) {
            return;
        }
        log::log!(level, "closing {:?} ({}): {why}", self.id(), self.peer());
        lock(&self.0.output).clear();
        self.shut();
    }

    pub(super) fn peer(&self) -> String {
        self.peer_addr().map_or_else(|_| "peer gone".into(), |a| a.to_string())
    }

    pub(super) fn linger_if_flushed(&self) {
        if self.state() == CLOSING && lock(&self.0.output).is_empty() {
            self.linger();
        }
    }

    /// Everything is sent: send our FIN. If unread input is waiting (a client may still
    /// be sending), linger: drop input until the peer's FIN or a short deadline, as
    /// nginx's `lingering_close` does; otherwise close at once.
    pub(super) fn linger(&self) {
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
    pub(super) fn drain_input(&self) -> bool {
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
    pub(super) fn shut(&self) {
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
}
