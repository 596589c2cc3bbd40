//! The reactor's [`Dispatch`] for a server: turns reactor reports into connection
//! tasks. Runs on the reactor thread, so it only looks things up and queues.

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;

use async_pool::WorkerId;
use reactor::{ConnId, Dispatch, ListenerId, Origin, Ready};

use crate::conn::{READABLE, WRITABLE};
use crate::table::ConnTable;
use crate::{lock, Conn, Factory, Protocol, Server, Shutdown};

pub(crate) struct Dispatcher {
    pub(crate) server: Server,
    /// One factory per listener, indexed by `ListenerId`.
    pub(crate) factories: Vec<Factory>,
    /// Reactor-thread copy of the table, so events need no lock.
    conns: ConnTable,
    next_worker: usize,
}

impl Dispatcher {
    pub(crate) fn new(server: Server, factories: Vec<Factory>) -> Dispatcher {
        Dispatcher { server, factories, conns: ConnTable::default(), next_worker: 0 }
    }

    /// Round-robin at accept; the connection stays on that worker for life.
    fn pick_worker(&mut self) -> WorkerId {
        let threads = self.server.threads().max(1);
        self.next_worker = (self.next_worker + 1) % threads;
        WorkerId(self.next_worker as u16)
    }

    fn protocol_for(&self, origin: Origin) -> Option<Box<dyn Protocol>> {
        match origin {
            Origin::Listener(l) => Some(self.factories.get(usize::from(l.0))?()),
            Origin::Attached(tag) => lock(&self.server.0.attached).remove(&tag),
        }
    }
}

impl Dispatch for Dispatcher {
    fn on_open(&mut self, id: ConnId, origin: Origin, stream: Arc<TcpStream>) {
        let Some(protocol) = self.protocol_for(origin) else {
            log::warn!("{id:?}: no protocol for this socket; closing it");
            let _ = self.server.reactor().close(id);
            return;
        };
        let worker = self.pick_worker();
        let conn = Conn::new(id, worker, stream, self.server.clone(), protocol);
        // Queued before the connection is visible to other threads: no `each` or
        // `fd_task` can reach it ahead of `on_open`.
        conn.schedule(|c| {
            c.with_protocol(|p, c| p.on_open(c));
        });
        self.server.write_conns().insert(id, conn.clone());
        self.server.watch_timeout(&conn);
        self.conns.insert(id, conn);
    }

    fn on_ready(&mut self, id: ConnId, ready: Ready) {
        let Some(conn) = self.conns.get(id) else { return };
        if ready.read_closed || ready.error {
            conn.on_peer_closed();
        }
        let mut bits = 0;
        if ready.readable || ready.read_closed || ready.error {
            bits |= READABLE;
        }
        if ready.writable || ready.write_closed || ready.error {
            bits |= WRITABLE;
        }
        conn.on_event(bits);
    }

    fn on_closed(&mut self, id: ConnId) {
        self.server.write_conns().remove(id);
        if let Some(conn) = self.conns.remove(id) {
            conn.schedule(Conn::finish);
        }
    }

    fn on_shutdown(&mut self) {
        log::info!("shutting down: {} connection(s) to close", self.conns.len());
        for conn in self.conns.iter() {
            conn.schedule(|c| match c.with_protocol(|p, c| p.on_shutdown(c)) {
                Some(Shutdown::Close) | None => c.close(),
                Some(Shutdown::DelayFor(delay)) => {
                    let later = c.clone();
                    if c.server().run_after(delay, move || later.close()).is_err() {
                        c.close();
                    }
                }
                Some(Shutdown::Ignore) => {}
            });
        }
    }

    fn on_refused(&mut self, tag: u64) {
        if lock(&self.server.0.attached).remove(&tag).is_some() {
            log::warn!("an attached socket was refused (at capacity or shutting down); closed");
        }
    }

    fn on_rejected(&mut self, stream: TcpStream, listener: ListenerId) {
        log::warn!("connection on listener {} refused: at capacity ({})", listener.0, self.server.capacity());
        if let Some(msg) = &self.server.settings().busy_msg {
            // Best effort, never blocking the reactor: a fresh socket's buffer takes it.
            let _ = (&stream).write(msg);
        }
        let _ = stream.shutdown(std::net::Shutdown::Both);
    }

    fn on_turn(&mut self, idle: bool) {
        let server = &self.server;
        server.run_hook(&server.0.on_tick, |i| &i.tick_busy);
        if idle {
            server.run_hook(&server.0.on_idle, |i| &i.idle_busy);
        }
    }
}
