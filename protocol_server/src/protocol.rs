//! The `Protocol` trait: what a service implements, one value per connection.

use std::time::Duration;

use crate::Conn;

/// What a protocol wants when the server shuts down (see [`Protocol::on_shutdown`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Close once queued output is flushed (the default).
    Close,
    /// Keep the connection this long (e.g. to finish a response), then close it.
    DelayFor(Duration),
    /// Leave it open; the grace period ends it.
    Ignore,
}

/// A service's behaviour on one connection.
///
/// A listener makes one value per accepted connection with its factory, so the
/// value's fields *are* the connection's state: no `void *udata`, no map lookups.
///
/// ### Concurrency
/// The hooks of one connection never run concurrently and run in event order: every
/// task of a connection runs on the one worker the connection was pinned to at accept
/// (round-robin). Different connections run on different workers in parallel. A hook
/// that blocks delays the other connections of its worker; do slow work elsewhere.
///
/// ### Panics
/// A panicking hook is caught and logged; its connection is closed (its `on_close`
/// still runs) and the server goes on.
pub trait Protocol: Send + 'static {
    /// The service name, used by [`crate::Server::count`] and [`crate::Server::each`].
    fn service(&self) -> &'static str;

    /// The connection was accepted (or this protocol was switched in with
    /// [`Conn::set_protocol`]).
    fn on_open(&mut self, conn: &Conn) {
        let _ = conn;
    }

    /// Data arrived: read it with [`Conn::read`] until it returns `Ok(0)` or fewer bytes
    /// than asked for (see [`Conn::read`]: the hook is called again if that was not
    /// the end of what is there). If the hook read some of it and returns with more
    /// unread, it is called again later (after other connections had a turn), so
    /// reading one request per call is fine. If it read nothing, it is not called again until new data arrives or
    /// [`Conn::resume_reading`]: that is how a protocol pauses a client (backpressure),
    /// since edge-triggered readiness does not announce data already waiting.
    fn on_data(&mut self, conn: &Conn);

    /// Everything queued for writing has been sent (the socket can take more).
    fn on_ready(&mut self, conn: &Conn) {
        let _ = conn;
    }

    /// The server is shutting down; say what to do with this connection.
    fn on_shutdown(&mut self, conn: &Conn) -> Shutdown {
        let _ = conn;
        Shutdown::Close
    }

    /// The connection is closed (by either side, a timeout, an error or shutdown).
    /// Called exactly once, last.
    fn on_close(&mut self, conn: &Conn) {
        let _ = conn;
    }

    /// The connection was idle for its timeout. The default closes it; a protocol that
    /// keeps idle peers alive writes a ping and calls [`Conn::touch`].
    fn ping(&mut self, conn: &Conn) {
        conn.close();
    }
}
