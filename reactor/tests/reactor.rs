//! The reactor with real sockets on 127.0.0.1: accepting, stale ids, readiness,
//! capacity and shutdown.

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::Duration;

use reactor::{Builder, Error, Origin};
use util::{drain, opened, reactor, start, wait_for, wait_ready, Ev, PATIENCE};

/// Proves the reactor processed every command sent before this call: a timer is
/// handed to the pool only after the commands queued ahead of it were applied.
fn round_trip(handle: &reactor::Handle) {
    let (tx, rx) = mpsc::channel();
    handle.run_after(Duration::ZERO, move || tx.send(()).expect("test waits")).expect("reactor running");
    rx.recv_timeout(PATIENCE).expect("the reactor processes commands");
}

#[test]
fn accepts_a_burst_of_1000_connections_arriving_at_once() {
    reactor::raise_fd_limit().expect("RLIMIT_NOFILE can be raised to its hard limit");
    let (reactor, addr, rx) = reactor(Builder::new().signals(false));
    let handle = reactor.handle();
    // All 1,000 handshakes complete into the listen backlog before the loop runs:
    // the reactor then sees ONE edge and must accept until WouldBlock to get them all.
    let clients: Vec<TcpStream> = (0..1000).map(|_| TcpStream::connect(addr).expect("connect")).collect();
    let thread = reactor.spawn().expect("reactor thread starts");
    let mut ids: Vec<_> = (0..1000).map(|_| opened(&rx)).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1000, "every connection got its own id");
    util::Running { handle, addr, rx, thread }.stop();
    drop(clients);
}

#[test]
fn closing_a_stale_id_never_reaches_the_connection_reusing_its_slot() {
    let r = start(Builder::new().signals(false));
    let mut first = TcpStream::connect(r.addr).expect("connect");
    let old = opened(&r.rx);
    r.handle.close(old).expect("reactor running");
    wait_for(&r.rx, "close of the first connection", |ev| (*ev == Ev::Closed(old)).then_some(()));
    let mut buf = [0u8; 1];
    assert_eq!(first.read(&mut buf).expect("read EOF"), 0, "closed connection sees EOF");

    let mut second = TcpStream::connect(r.addr).expect("connect");
    let new = opened(&r.rx);
    assert_eq!(new.slot, old.slot, "the slab reuses the freed slot");
    assert_ne!(new.gen, old.gen, "with a new generation");

    r.handle.close(old).expect("reactor running");
    round_trip(&r.handle);
    let after: Vec<_> = drain(&r.rx).into_iter().filter(|ev| matches!(ev, Ev::Closed(_))).collect();
    assert!(after.is_empty(), "a stale close reached a live connection: {after:?}");
    second.write_all(b"still here").expect("the new connection is open");
    wait_ready(&r.rx, new, "readiness of the new connection", |ready| ready.readable);
    r.stop();
}

#[test]
fn readiness_and_peer_close_reach_the_dispatcher() {
    let r = start(Builder::new().signals(false));
    let mut client = TcpStream::connect(r.addr).expect("connect");
    let id = opened(&r.rx);
    wait_ready(&r.rx, id, "initial writability", |ready| ready.writable);
    client.write_all(b"ping").expect("write");
    wait_ready(&r.rx, id, "readability", |ready| ready.readable);
    drop(client);
    wait_ready(&r.rx, id, "the peer's FIN", |ready| ready.read_closed);
    r.stop();
}

#[test]
fn connections_past_the_limit_are_rejected() {
    let r = start(Builder::new().signals(false).max_connections(2));
    let _a = TcpStream::connect(r.addr).expect("connect");
    let _b = TcpStream::connect(r.addr).expect("connect");
    opened(&r.rx);
    opened(&r.rx);
    let mut c = TcpStream::connect(r.addr).expect("the kernel still completes the handshake");
    wait_for(&r.rx, "rejection", |ev| matches!(ev, Ev::Rejected(_)).then_some(()));
    c.set_read_timeout(Some(PATIENCE)).expect("timeout");
    match c.read(&mut [0u8; 1]) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("a rejected connection is closed (EOF or reset), got {other:?}"),
    }
    let side = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let _outside = TcpStream::connect(side.local_addr().expect("addr")).expect("connect");
    r.handle.attach(side.accept().expect("accept").0, 7).expect("reactor running");
    wait_for(&r.rx, "attach refused at capacity", |ev| (*ev == Ev::Refused(7)).then_some(()));
    r.stop();
}

#[test]
fn when_told_to_wait_a_full_reactor_leaves_new_connections_queued_until_one_closes() {
    let r = start(Builder::new().signals(false).max_connections(2).wait_when_full(true));
    let _a = TcpStream::connect(r.addr).expect("connect");
    let _b = TcpStream::connect(r.addr).expect("connect");
    let first = opened(&r.rx);
    opened(&r.rx);
    let mut c = TcpStream::connect(r.addr).expect("the kernel queues the handshake");
    round_trip(&r.handle);
    let early: Vec<_> =
        drain(&r.rx).into_iter().filter(|ev| matches!(ev, Ev::Open(..) | Ev::Rejected(_))).collect();
    assert!(early.is_empty(), "a full reactor neither accepted nor rejected: {early:?}");
    r.handle.close(first).expect("reactor running");
    let third = opened(&r.rx);
    assert_ne!(third, first, "the queued connection got a fresh id");
    c.write_all(b"x").expect("the queued connection is open");
    wait_ready(&r.rx, third, "readability of the queued connection", |ready| ready.readable);
    r.stop();
}

#[test]
fn attached_sockets_are_watched_like_accepted_ones() {
    let r = start(Builder::new().signals(false));
    let side = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut outside = TcpStream::connect(side.local_addr().expect("addr")).expect("connect");
    let (inside, _) = side.accept().expect("accept");
    r.handle.attach(inside, 42).expect("reactor running");
    let id = wait_for(&r.rx, "attach", |ev| match ev {
        Ev::Open(id, Origin::Attached(42)) => Some(*id),
        _ => None,
    });
    outside.write_all(b"x").expect("write");
    wait_ready(&r.rx, id, "readability", |ready| ready.readable);
    r.stop();
}

#[test]
fn shutdown_stops_accepting_and_waits_for_open_connections() {
    let r = start(Builder::new().signals(false).grace(Duration::from_secs(60)));
    let _client = TcpStream::connect(r.addr).expect("connect");
    let id = opened(&r.rx);
    r.handle.shutdown().expect("reactor running");
    wait_for(&r.rx, "on_shutdown", |ev| (*ev == Ev::Shutdown).then_some(()));
    assert!(TcpStream::connect(r.addr).is_err(), "the listener is closed once shutdown begins");
    assert!(!r.thread.is_finished(), "the loop waits for the open connection");
    r.handle.close(id).expect("reactor still running during grace");
    r.thread.join().expect("reactor thread").expect("clean stop");
    assert!(drain(&r.rx).contains(&Ev::Closed(id)));
    assert!(matches!(r.handle.shutdown(), Err(Error::Stopped)), "a stopped reactor says so");
}

#[test]
fn grace_period_ends_with_every_connection_closed() {
    let r = start(Builder::new().signals(false).grace(Duration::from_millis(200)));
    let _client = TcpStream::connect(r.addr).expect("connect");
    let id = opened(&r.rx);
    r.handle.shutdown().expect("reactor running");
    r.thread.join().expect("reactor thread").expect("clean stop after the grace period");
    assert!(drain(&r.rx).contains(&Ev::Closed(id)), "the dispatcher hears about the dropped connection");
}

#[test]
fn bind_failure_names_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let (mut reactor, _, _rx) = reactor(Builder::new().signals(false));
    let err = reactor.listen(addr).expect_err("the port is taken");
    assert!(matches!(err, Error::Bind { addr: a, .. } if a == addr));
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}
