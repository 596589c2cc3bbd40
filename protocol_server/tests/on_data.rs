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
