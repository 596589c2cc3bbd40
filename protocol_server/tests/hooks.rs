//! Per-connection order without overlap, cross-connection parallelism, panics contained.

mod util;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use protocol_server::{Conn, Server};
use util::{closed_by_peer, echo_round, hook, read_all, read_n, serve, start, Hooks, PATIENCE};

/// Flags a hook that starts while another hook of the same connection runs.
#[derive(Default)]
struct Overlap {
    running: AtomicBool,
    seen: AtomicBool,
}

impl Overlap {
    fn during(&self, f: impl FnOnce()) {
        if self.running.swap(true, Ordering::SeqCst) {
            self.seen.store(true, Ordering::SeqCst);
        }
        f();
        std::thread::yield_now(); // widen the window a concurrent hook would need
        self.running.store(false, Ordering::SeqCst);
    }
}

#[test]
fn one_connection_sees_1000_messages_in_order_and_never_two_hooks_at_once() {
    let overlap = Arc::new(Overlap::default());
    let (tx, rx) = mpsc::channel();
    let pending = Arc::new(Mutex::new(Vec::new()));
    let (o1, o2) = (Arc::clone(&overlap), Arc::clone(&overlap));
    let hooks = Hooks {
        on_data: hook(move |conn| {
            o1.during(|| {
                let mut buf = pending.lock().expect("no panic under lock");
                buf.extend(read_all(conn));
                while let Some(end) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=end).collect();
                    let n: u32 = std::str::from_utf8(&line[..end]).expect("ascii").parse().expect("a number");
                    tx.send(n).expect("test waits");
                    let _ = conn.write(b"k"); // gives on_ready something to report
                }
            })
        }),
        on_ready: hook(move |_| o2.during(|| {})),
        ..Hooks::default()
    };
    let running = start(Server::builder().threads(4).port(0).protocol(move || hooks.clone()));
    let mut client = running.connect();
    for chunk in (0..1000u32).collect::<Vec<_>>().chunks(7) {
        let text: String = chunk.iter().map(|n| format!("{n}\n")).collect();
        client.write_all(text.as_bytes()).expect("write");
    }
    let got: Vec<u32> = (0..1000).map(|_| rx.recv_timeout(PATIENCE).expect("message")).collect();
    assert_eq!(got, (0..1000).collect::<Vec<_>>());
    assert_eq!(read_n(&mut client, 1000), vec![b'k'; 1000]);
    assert!(!overlap.seen.load(Ordering::SeqCst), "two hooks of one connection overlapped");
    running.stop();
}

#[test]
fn four_slow_connections_run_in_parallel_on_four_threads() {
    let hooks = Hooks {
        on_data: hook(|conn| {
            if !read_all(conn).is_empty() {
                std::thread::sleep(Duration::from_millis(200)); // a slow hook, on purpose
                let _ = conn.write(b"done");
            }
        }),
        ..Hooks::default()
    };
    let running = start(Server::builder().threads(4).port(0).protocol(move || hooks.clone()));
    let mut clients: Vec<_> = (0..4).map(|_| running.connect()).collect();
    let started = Instant::now();
    for c in &mut clients {
        c.write_all(b"go").expect("write");
    }
    for c in &mut clients {
        assert_eq!(read_n(c, 4), b"done");
    }
    let took = started.elapsed();
    assert!(took < Duration::from_millis(600), "4 x 200 ms hooks took {took:?}: not parallel");
    running.stop();
}

#[test]
fn a_panicking_hook_closes_only_its_connection() {
    let (closed_tx, closed_rx) = mpsc::channel();
    let hooks = Hooks {
        on_data: hook(|conn| {
            let data = read_all(conn);
            if data.starts_with(b"panic") {
                panic!("a protocol hook panics on purpose");
            }
            let _ = conn.write(&data);
        }),
        on_close: hook(move |conn: &Conn| closed_tx.send(conn.id()).expect("test waits")),
        ..Hooks::default()
    };
    let running = serve(hooks);
    let mut bad = running.connect();
    let mut good = running.connect();
    bad.write_all(b"panic").expect("write");
    assert!(closed_by_peer(&mut bad), "the panicking connection is closed");
    closed_rx.recv_timeout(PATIENCE).expect("on_close still runs for it");
    assert_eq!(echo_round(&mut good, b"still served"), b"still served");
    let mut next = running.connect();
    assert_eq!(echo_round(&mut next, b"new ones too"), b"new ones too");
    running.stop();
}
