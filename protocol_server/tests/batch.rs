//! `Batch` and shared buffers: writes queued to many connections leave when the
//! batch is flushed, in order with every other write to the same connection; a close
//! in between still sends them before the FIN; a batch that drains a backlogged
//! connection's queue brings its `on_ready`, as a writable edge would.

mod util;

use std::io::Read;
use std::sync::mpsc;

use protocol_server::{Batch, Bytes, Conn};
use util::{hook, read_n, serve, shared_channel, Hooks, PATIENCE};

/// A server that hands each accepted connection to the test.
fn conns() -> (util::Running, mpsc::Receiver<Conn>) {
    let (tx, opened) = shared_channel::<Conn>();
    let hooks = Hooks {
        on_open: hook(move |c: &Conn| {
            tx.lock().expect("no panic under lock").send(c.clone()).expect("test waits")
        }),
        ..Hooks::default()
    };
    (serve(hooks), opened)
}

#[test]
fn a_batch_defers_its_bytes_until_flushed_and_keeps_order_with_direct_writes() {
    let (running, opened) = conns();
    let mut client = running.connect();
    let conn = opened.recv_timeout(PATIENCE).expect("on_open");
    let mut batch = Batch::new();
    batch.write(&conn, b"a".to_vec()).expect("queued");
    // A direct write behind bytes a batch holds waits behind them, never overtakes.
    conn.write(b"b").expect("queued behind");
    batch.write_shared(&conn, Bytes::from_static(b"c")).expect("queued");
    assert_eq!(batch.len(), 1, "one connection to flush");
    assert_eq!(conn.queued(), 3, "nothing sent before the flush");
    batch.flush();
    assert!(batch.is_empty());
    assert_eq!(read_n(&mut client, 3), b"abc");
    running.stop();
}

#[test]
fn one_shared_buffer_reaches_many_connections_each_once() {
    let (running, opened) = conns();
    let mut clients: Vec<_> = (0..50).map(|_| running.connect()).collect();
    let conns: Vec<Conn> = (0..50).map(|_| opened.recv_timeout(PATIENCE).expect("on_open")).collect();
    let message = Bytes::from(vec![7u8; 1000]);
    let mut batch = Batch::new();
    for round in 0..3u8 {
        for c in &conns {
            batch.write_shared(c, message.clone()).expect("queued");
            batch.write(c, vec![round]).expect("queued");
        }
    }
    drop(batch); // flushes
    let mut expected = Vec::new();
    for round in 0..3u8 {
        expected.extend_from_slice(&message);
        expected.push(round);
    }
    for client in &mut clients {
        assert_eq!(read_n(client, expected.len()), expected);
    }
    running.stop();
}

#[test]
fn a_close_while_a_batch_holds_output_sends_it_before_the_fin() {
    let (running, opened) = conns();
    for _ in 0..20 {
        let mut client = running.connect();
        let conn = opened.recv_timeout(PATIENCE).expect("on_open");
        let mut batch = Batch::new();
        batch.write(&conn, vec![1u8; 100_000]).expect("queued");
        conn.close();
        assert!(batch.write(&conn, b"late".to_vec()).is_err(), "nothing is queued after close");
        batch.flush();
        let mut got = Vec::new();
        client.read_to_end(&mut got).expect("a FIN, not a reset");
        assert_eq!(got.len(), 100_000, "everything queued before close, then the FIN");
    }
    running.stop();
}

#[test]
fn a_backlogged_connection_drained_by_a_batch_gets_on_ready() {
    let (ready_tx, ready) = shared_channel::<()>();
    let (tx, opened) = shared_channel::<Conn>();
    let hooks = Hooks {
        on_open: hook(move |c: &Conn| {
            tx.lock().expect("no panic under lock").send(c.clone()).expect("test waits")
        }),
        on_ready: hook(move |_: &Conn| {
            let _ = ready_tx.lock().expect("no panic under lock").send(());
        }),
        ..Hooks::default()
    };
    let running = serve(hooks);
    let mut client = running.connect();
    let conn = opened.recv_timeout(PATIENCE).expect("on_open");
    let mut batch = Batch::new();
    batch.write(&conn, vec![2u8; 10]).expect("queued");
    assert!(!conn.backlogged(10), "10 bytes are not more than 10");
    assert!(conn.backlogged(9), "10 bytes are more than 9: on_ready is asked for");
    batch.flush(); // the socket takes them all: no writable edge will come
    ready.recv_timeout(PATIENCE).expect("on_ready after the batch drained the queue");
    assert_eq!(read_n(&mut client, 10), vec![2u8; 10]);
    running.stop();
}

#[test]
fn empty_buffers_are_not_queued_and_do_not_close_the_connection() {
    let (running, opened) = conns();
    let mut client = running.connect();
    let conn = opened.recv_timeout(PATIENCE).expect("on_open");
    let mut batch = Batch::new();
    batch.write(&conn, Vec::new()).expect("nothing to queue");
    batch.write_shared(&conn, Bytes::new()).expect("nothing to queue");
    conn.write_move(Vec::new()).expect("nothing to queue");
    batch.write(&conn, b"ok".to_vec()).expect("queued");
    batch.flush();
    assert_eq!(read_n(&mut client, 2), b"ok");
    assert!(conn.is_open(), "empty writes never read as a failed write");
    running.stop();
}
