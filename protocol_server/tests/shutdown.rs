//! SIGTERM with output still queued *in the server* for 20 connections: every byte is
//! delivered, `on_close` runs for each, and `start` returns `Ok`. The clients shrink
//! their receive buffers and read nothing until the signal, and the test checks that
//! every connection still had bytes queued when it was sent, so only the shutdown
//! flush can deliver the rest. Alone in its binary: the signal goes to the whole
//! test process.

mod util;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn};
use protocol_server::{Conn, Server};
use util::{hook, start_with_signals, Hooks, PATIENCE};

const CLIENTS: usize = 20;
/// Twice the most a loopback socket's send buffer grows to (`tcp_wmem` max, 4 MiB by
/// default): about 2.7 MiB of it was seen to go into socket buffers, the rest waits
/// in the server. With 256 KiB nothing at all was left queued.
const EACH: usize = 8 << 20;
/// The receive buffer the clients ask for (the kernel doubles it): far below `EACH`.
const CLIENT_RCVBUF: usize = 4 * 1024;

#[test]
fn sigterm_delivers_every_queued_byte_then_closes_each_connection() {
    reactor::raise_fd_limit().expect("RLIMIT_NOFILE can be raised");
    let closes = Arc::new(AtomicUsize::new(0));
    let (tx, opened) = mpsc::channel();
    let tx = Arc::new(Mutex::new(tx));
    let c = Arc::clone(&closes);
    let hooks = Hooks {
        on_open: hook(move |conn: &Conn| {
            conn.write_move((0..EACH).map(|i| (i % 241) as u8).collect()).expect("fits under max_output");
            tx.lock().expect("no panic under lock").send(conn.clone()).expect("test waits");
        }),
        on_close: hook(move |_| {
            c.fetch_add(1, Ordering::SeqCst);
        }),
        ..Hooks::default()
    };
    let builder = Server::builder()
        .threads(2)
        .port(0)
        .max_output(16 << 20)
        .grace(Duration::from_secs(30))
        .protocol(move || hooks.clone());
    let running = start_with_signals(builder);
    let mut clients: Vec<_> = (0..CLIENTS).map(|_| connect_with_small_rcvbuf(running.addr)).collect();
    let conns: Vec<Conn> = (0..CLIENTS)
        .map(|_| opened.recv_timeout(PATIENCE).expect("every connection queued its output"))
        .collect();
    let queued = settled_queues(&conns);
    let empty = queued.iter().filter(|q| **q == 0).count();
    assert_eq!(empty, 0, "{empty} connections had nothing queued before the signal: {queued:?}");
    drop(conns);

    nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM).expect("signal this process");
    for (i, client) in clients.iter_mut().enumerate() {
        let mut got = Vec::with_capacity(EACH);
        client.read_to_end(&mut got).unwrap_or_else(|e| panic!("client {i}: {e} after {} bytes", got.len()));
        assert_eq!(got.len(), EACH, "client {i} got {} of {EACH} bytes", got.len());
        assert!(got.iter().enumerate().all(|(i, b)| *b == (i % 241) as u8), "client {i}: bytes corrupted");
    }
    running.thread.join().expect("server thread").expect("orderly shutdown returns Ok");
    assert_eq!(closes.load(Ordering::SeqCst), CLIENTS, "on_close ran once per connection");
}

/// A blocking client whose receive buffer is set before `connect` (the window the
/// server sees is fixed at the handshake).
fn connect_with_small_rcvbuf(addr: SocketAddr) -> TcpStream {
    let SocketAddr::V4(v4) = addr else { panic!("the test server listens on IPv4") };
    let fd: OwnedFd = socket::socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
        .expect("a client socket");
    socket::setsockopt(&fd, sockopt::RcvBuf, &CLIENT_RCVBUF).expect("SO_RCVBUF");
    socket::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(v4)).expect("connect");
    let stream = TcpStream::from(fd);
    stream.set_read_timeout(Some(PATIENCE)).expect("set timeout");
    stream
}

/// Each connection's queued bytes once the kernel stopped taking more (the peers read
/// nothing, so the queues only shrink until the socket buffers are full). Nothing
/// signals "socket buffer full": poll until three readings 20 ms apart agree.
fn settled_queues(conns: &[Conn]) -> Vec<usize> {
    let deadline = Instant::now() + PATIENCE;
    let read = || conns.iter().map(Conn::queued).collect::<Vec<_>>();
    let (mut last, mut same) = (read(), 0);
    while same < 3 {
        assert!(Instant::now() < deadline, "output queues still moving after {PATIENCE:?}: {last:?}");
        std::thread::sleep(Duration::from_millis(20));
        let now = read();
        same = if now == last { same + 1 } else { 0 };
        last = now;
    }
    last
}
