//! The streams a `Dispatch` receives are `std::net::TcpStream`s: a dispatcher written
//! against `std` alone (no `mio` import) echoes through them, and writes to a
//! connection refused at capacity.

mod util;

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;

use async_pool::{Pool, WorkerId};
use reactor::{Builder, ConnId, Dispatch, Handle, ListenerId, Origin, Ready};
use util::PATIENCE;

/// Echoes on the pool, and says who it echoed to on `opened`.
struct Echo {
    pool: Arc<Pool>,
    handle: Handle,
    streams: HashMap<ConnId, Arc<TcpStream>>,
    opened: Sender<std::net::SocketAddr>,
}

impl Dispatch for Echo {
    fn on_open(&mut self, id: ConnId, _: Origin, stream: Arc<std::net::TcpStream>) {
        let peer = stream.peer_addr().expect("an accepted stream has a peer");
        self.opened.send(peer).expect("test waits");
        self.streams.insert(id, stream);
    }

    fn on_ready(&mut self, id: ConnId, ready: Ready) {
        let Some(stream) = self.streams.get(&id).cloned() else { return };
        if !ready.readable {
            return;
        }
        let handle = self.handle.clone();
        // One worker: this connection's tasks run in order.
        let _ = self.pool.run_on(WorkerId(0), move || {
            if echo(&stream).is_err() {
                let _ = handle.close(id);
            }
        });
    }

    fn on_closed(&mut self, id: ConnId) {
        self.streams.remove(&id);
    }

    fn on_rejected(&mut self, stream: std::net::TcpStream, _: ListenerId) {
        let _ = (&stream).write(b"busy\n");
    }
}

/// Reads until `WouldBlock` (the event was an edge) and writes every byte back; the
/// test sends little enough for the socket to take it at once.
fn echo(mut stream: &TcpStream) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => stream.write_all(&buf[..n])?,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[test]
fn a_dispatch_written_against_std_streams_echoes_and_answers_rejected_connections() {
    let _ = env_logger::builder().is_test(true).try_init();
    let pool = Arc::new(Pool::new(1).expect("pool starts"));
    let (tx, opened) = mpsc::channel();
    let make = |handle| Echo { pool: Arc::clone(&pool), handle, streams: HashMap::new(), opened: tx };
    let builder = Builder::new().signals(false).max_connections(1);
    let mut reactor = builder.build_with(Arc::clone(&pool), make).expect("reactor builds");
    let listener = reactor.listen("127.0.0.1:0".parse().expect("valid address")).expect("binds");
    let addr = reactor.local_addr(listener).expect("listener exists");
    let handle = reactor.handle();
    let thread = reactor.spawn().expect("reactor thread starts");

    let mut client = TcpStream::connect(addr).expect("connect");
    client.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let peer = opened.recv_timeout(PATIENCE).expect("on_open ran");
    assert_eq!(peer, client.local_addr().expect("local address"), "on_open saw our end as its peer");
    client.write_all(b"through std").expect("write");
    let mut back = [0u8; 11];
    client.read_exact(&mut back).expect("the echo comes back");
    assert_eq!(&back, b"through std");

    let mut refused = TcpStream::connect(addr).expect("connect");
    refused.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let mut answer = Vec::new();
    refused.read_to_end(&mut answer).expect("on_rejected wrote, then the stream was dropped");
    assert_eq!(answer, b"busy\n");

    handle.shutdown().expect("reactor running");
    let _ = handle.shutdown();
    thread.join().expect("reactor thread").expect("clean stop");
    pool.finish();
}
