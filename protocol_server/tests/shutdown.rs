//! SIGTERM with output still queued for 100 connections: every byte is delivered,
//! `on_close` runs for each, and `start` returns `Ok`. Alone in its binary: the
//! signal goes to the whole test process.

mod util;

use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use protocol_server::{Conn, Server};
use util::{hook, start_with_signals, Hooks, PATIENCE};

const CLIENTS: usize = 100;
const EACH: usize = 256 * 1024;

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
            tx.lock().expect("no panic under lock").send(()).expect("test waits");
        }),
        on_close: hook(move |_| {
            c.fetch_add(1, Ordering::SeqCst);
        }),
        ..Hooks::default()
    };
    let builder = Server::builder()
        .threads(2)
        .port(0)
        .max_output(1 << 20)
        .grace(Duration::from_secs(30))
        .protocol(move || hooks.clone());
    let running = start_with_signals(builder);
    let mut clients: Vec<_> = (0..CLIENTS).map(|_| running.connect()).collect();
    for _ in 0..CLIENTS {
        opened.recv_timeout(PATIENCE).expect("every connection queued its output");
    }
    nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM).expect("signal this process");
    for (i, client) in clients.iter_mut().enumerate() {
        let mut got = Vec::with_capacity(EACH);
        client.read_to_end(&mut got).expect("read until the server closes");
        assert_eq!(got.len(), EACH, "client {i} got {} of {EACH} bytes", got.len());
        assert!(got.iter().enumerate().all(|(i, b)| *b == (i % 241) as u8), "client {i}: bytes corrupted");
    }
    running.thread.join().expect("server thread").expect("orderly shutdown returns Ok");
    assert_eq!(closes.load(Ordering::SeqCst), CLIENTS, "on_close ran once per connection");
}
