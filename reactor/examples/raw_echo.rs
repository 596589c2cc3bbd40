//! An echo server on the bare engine: the reactor reports readiness, the pool does
//! the I/O. `cargo run --release -p reactor --example raw_echo -- [PORT]` (default 7000),
//! then `nc 127.0.0.1 7000`. Ctrl-C shuts it down.
//!
//! Each connection is pinned to one worker (`run_on` by slot), so its tasks run one at
//! a time and in event order. The `protocol_server` crate does all of this for you.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};

use async_pool::{Pool, WorkerId};
use reactor::{ConnId, Dispatch, Handle, Origin, Ready};

/// Bytes a peer may leave unread before we hang up on it.
const MAX_PENDING: usize = 1 << 20;

struct Conn {
    stream: Arc<TcpStream>,
    pending: Mutex<Vec<u8>>, // echoed bytes the socket could not take yet
}

struct Echo {
    pool: Arc<Pool>,
    handle: Handle,
    conns: HashMap<ConnId, Arc<Conn>>,
}

impl Dispatch for Echo {
    fn on_open(&mut self, id: ConnId, _: Origin, stream: Arc<TcpStream>) {
        self.conns.insert(id, Arc::new(Conn { stream, pending: Mutex::new(Vec::new()) }));
    }

    fn on_ready(&mut self, id: ConnId, _ready: Ready) {
        let (Some(conn), handle) = (self.conns.get(&id).cloned(), self.handle.clone()) else { return };
        let task = move || {
            if let Err(e) = echo(&conn) {
                log::debug!("{id:?}: {e}");
                let _ = handle.close(id);
            }
        };
        if self.pool.run_on(WorkerId(id.slot as u16), task).is_err() {
            log::debug!("{id:?}: pool closed, event dropped during shutdown");
        }
    }

    fn on_closed(&mut self, id: ConnId) {
        self.conns.remove(&id);
    }

    fn on_shutdown(&mut self) {
        // Nothing is half-written in an echo: close everything now, not after the grace period.
        self.conns.keys().for_each(|id| drop(self.handle.close(*id)));
    }
}

/// Reads until `WouldBlock` (edge-triggered) and writes back what it can.
fn echo(conn: &Conn) -> io::Result<()> {
    let mut pending = conn.pending.lock().expect("no panic while holding the lock");
    let mut buf = [0u8; 16 * 1024];
    loop {
        match (&*conn.stream).read(&mut buf) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed")),
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    while !pending.is_empty() {
        match (&*conn.stream).write(&pending) {
            Ok(n) => drop(pending.drain(..n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break, // the next writable event resumes
            Err(e) => return Err(e),
        }
    }
    match pending.len() > MAX_PENDING {
        true => Err(io::Error::new(io::ErrorKind::OutOfMemory, "peer does not read its echo")),
        false => Ok(()),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let port: u16 = std::env::args().nth(1).map_or(Ok(7000), |p| p.parse())?;
    let pool = Arc::new(Pool::new(0)?);
    let echo = |handle| Echo { pool: Arc::clone(&pool), handle, conns: HashMap::new() };
    let mut reactor = reactor::Builder::new().build_with(Arc::clone(&pool), echo)?;
    let listener = reactor.listen(([127, 0, 0, 1], port).into())?;
    println!("echo server on {}", reactor.local_addr(listener).expect("listener just added"));
    reactor.run()?;
    pool.finish();
    Ok(())
}
