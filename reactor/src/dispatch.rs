//! The seam between the reactor and the layer above it.

use std::net::TcpStream;
use std::sync::Arc;

use crate::{ConnId, ListenerId, Origin};

/// Readiness of one connection, as one edge-triggered event reported it.
///
/// Edge-triggered: the state is reported when it *changes*. Whoever handles a
/// `readable` event must read until `WouldBlock` (or come back later on its own), as
/// no new event comes for data that was already there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ready {
    /// Data (or a FIN) can be read.
    pub readable: bool,
    /// The send buffer has room again.
    pub writable: bool,
    /// The peer shut down its sending side (a read will return 0 after the data).
    pub read_closed: bool,
    /// Our sending side is closed (the peer reset or shut down reading).
    pub write_closed: bool,
    /// The socket has a pending error (read it with `take_error`).
    pub error: bool,
}

impl Ready {
    /// Kept out of the public API (no `From` impl) so that `mio` stays an engine detail.
    pub(crate) fn of(e: &mio::event::Event) -> Ready {
        Ready {
            readable: e.is_readable(),
            writable: e.is_writable(),
            read_closed: e.is_read_closed(),
            write_closed: e.is_write_closed(),
            error: e.is_error(),
        }
    }
}

/// What the reactor tells the layer above. Every method runs **on the reactor
/// thread**: it must not block and should only hand work to the pool.
///
/// For one connection the calls come in this order: `on_open`, any number of
/// `on_ready`, then exactly one `on_closed`.
pub trait Dispatch: Send + 'static {
    /// A connection was accepted on a listener or attached (`origin` says which). The
    /// stream is non-blocking and registered for read and write readiness; read and
    /// write it from any thread. Keep the id: commands about this connection name it.
    fn on_open(&mut self, id: ConnId, origin: Origin, stream: Arc<TcpStream>);

    /// The connection became readable and/or writable.
    fn on_ready(&mut self, id: ConnId, ready: Ready);

    /// The reactor forgot the connection (after [`crate::Handle::close`], or at the end
    /// of shutdown). The socket closes once the last `Arc` of it is dropped.
    fn on_closed(&mut self, id: ConnId);

    /// Shutdown began: listeners are closed. Connections stay until closed through the
    /// handle or until the grace period ends. The default does nothing.
    fn on_shutdown(&mut self) {}

    /// Called once per loop turn, after the turn's events and due timers were handled.
    /// `idle` is true when the turn had no I/O event (it woke for a timer, a command or
    /// its timeout). The default does nothing.
    fn on_turn(&mut self, idle: bool) {
        let _ = idle;
    }

    /// A socket handed over with [`crate::Handle::attach`]`(stream, tag)` was not taken
    /// (at capacity, shutting down, or epoll refused it); it is closed. The default does
    /// nothing.
    fn on_refused(&mut self, tag: u64) {
        log::warn!("reactor: attached socket {tag} refused");
    }

    /// A connection arrived while the reactor held its maximum. The default drops it,
    /// which closes it; the layer above may write a "busy" message first.
    fn on_rejected(&mut self, stream: TcpStream, listener: ListenerId) {
        log::warn!("reactor: connection on listener {} refused: at capacity", listener.0);
        drop(stream);
    }
}
