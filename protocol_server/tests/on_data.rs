//! When `on_data` is called again (what `Protocol::on_data`'s doc promises): a hook
//! that read some input but left more is called again by itself; a hook that read
//! nothing is not (that is how a protocol pauses a client for backpressure) until
//! `Conn::resume_reading`.

mod util;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use protocol_server::Conn;
use util::{hook, serve, shared_channel, Hooks, PATIENCE};

#[test]
fn a_hook_that_reads_part_of_the_input_is_called_again_until_it_is_drained() {
    let (tx, got) = shared_channel();
    let hooks = Hooks {
        on_data: hook(move |c: &Conn| {
            let mut one = [0u8; 1];
            if let Ok(1) = c.read(&mut one) {
                tx.lock().expect("no panic under lock").send(one[0]).expect("test waits");
            }
        }),
        ..Hooks::default()
    };
    let running = serve(hooks);
    let mut client = running.connect();
    client.write_all(b"abcdef").expect("write"); // one edge, six calls of one byte each
    let bytes: Vec<u8> = (0..6).map(|_| got.recv_timeout(PATIENCE).expect("called again")).collect();
    assert_eq!(bytes, b"abcdef");
    running.stop();
}

#[test]
fn a_hook_that_reads_nothing_is_not_called_again_until_resume_reading() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (conns, opened) = mpsc::channel();
    let conns = Arc::new(std::sync::Mutex::new(conns));
    let (c1, c2) = (Arc::clone(&calls), Arc::clone(&calls));
    let hooks = Hooks {
        on_open: hook(move |c: &Conn| {
            conns.lock().expect("no panic under lock").send(c.clone()).expect("test waits")
        }),
        // Reads only from the third call on: the first two pause the connection.
        on_data: hook(move |c: &Conn| {
            if c1.fetch_add(1, Ordering::SeqCst) >= 2 {
                while let Ok(1..) = c.read(&mut [0u8; 64]) {}
            }
        }),
        ..Hooks::default()
    };
    let running = serve(hooks);
    let mut client = running.connect();
    let conn = opened.recv_timeout(PATIENCE).expect("opened");
    client.write_all(b"waiting").expect("write");
    let until = |n: usize| {
        let deadline = std::time::Instant::now() + PATIENCE;
        while c2.load(Ordering::SeqCst) < n {
            assert!(std::time::Instant::now() < deadline, "on_data never reached call {n}");
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    until(1);
    // Paused: nothing calls it again on its own (a window, since this is an absence).
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "called again although it read nothing");
    conn.resume_reading();
    until(2);
    conn.resume_reading();
    until(3); // reads and drains now
    running.stop();
}

#[test]
fn a_short_read_without_hooks_counts_as_drained_so_no_call_only_finds_nothing() {
    // Each call reads once into a 64-byte buffer and echoes; it records what it read.
    let (tx, reads) = shared_channel::<Vec<u8>>();
    let hooks = Hooks {
        on_data: hook(move |c: &Conn| {
            let mut buf = [0u8; 64];
            let n = c.read(&mut buf).unwrap_or(0);
            if n > 0 {
                c.write(&buf[..n]).expect("echo");
            }
            tx.lock().expect("no panic under lock").send(buf[..n].to_vec()).expect("test waits");
        }),
        ..Hooks::default()
    };
    let running = serve(hooks);
    let mut client = running.connect();
    for word in [&b"hello"[..], b"world"] {
        client.write_all(word).expect("write");
        assert_eq!(util::read_n(&mut client, word.len()), word, "echo");
    }
    let first = reads.recv_timeout(PATIENCE).expect("a call");
    let second = reads.recv_timeout(PATIENCE).expect("a call");
    // 5 of 64 bytes read: the socket was emptied, so the next call is for "world", not
    // one that only finds nothing (the old rule: read on until WouldBlock).
    assert_eq!((first, second), (b"hello".to_vec(), b"world".to_vec()), "a call in between read nothing");
    running.stop();
}

#[test]
fn a_fin_reported_while_the_hook_paused_is_still_read_after_a_short_read() {
    // The hook reads nothing until told to (backpressure), so the FIN's edge comes and
    // goes unread; then it reads once per call. A short read must not count as drained
    // then, or the end of input would never be read and the connection never closed.
    let reading = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let (conns, opened) = mpsc::channel();
    let conns = Arc::new(std::sync::Mutex::new(conns));
    let (closed_tx, closed) = shared_channel();
    let (r, c1) = (Arc::clone(&reading), Arc::clone(&calls));
    let hooks = Hooks {
        on_open: hook(move |c: &Conn| {
            conns.lock().expect("no panic under lock").send(c.clone()).expect("test waits")
        }),
        on_data: hook(move |c: &Conn| {
            c1.fetch_add(1, Ordering::SeqCst);
            if r.load(Ordering::SeqCst) {
                let _ = c.read(&mut [0u8; 64]);
            }
        }),
        on_close: hook(move |_| closed_tx.lock().expect("no panic under lock").send(()).expect("test waits")),
        // The idle timeout must not be what closes it.
        ping: hook(|_| {}),
        ..Hooks::default()
    };
    let running = serve(hooks);
    let mut client = running.connect();
    let conn = opened.recv_timeout(PATIENCE).expect("opened");
    client.write_all(b"abc").expect("write");
    client.shutdown(std::net::Shutdown::Write).expect("FIN");
    let deadline = std::time::Instant::now() + PATIENCE;
    while calls.load(Ordering::SeqCst) == 0 {
        assert!(std::time::Instant::now() < deadline, "on_data never called");
        std::thread::sleep(Duration::from_millis(1));
    }
    // Let the FIN's event arrive and be handled by a call that reads nothing (a window:
    // the test needs that edge gone before reading resumes).
    std::thread::sleep(Duration::from_millis(200));
    reading.store(true, Ordering::SeqCst);
    conn.resume_reading();
    closed.recv_timeout(PATIENCE).expect("the end of input was read and the connection closed");
    running.stop();
}
