//! Server-wide operations: fd_task and ABA, each, count, capacity, timeouts, hooks.

mod util;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use protocol_server::{Conn, ConnId, Error, Server};
use util::{closed_by_peer, hook, read_all, read_n, serve, start, Hooks, PATIENCE};

fn reporting_ids() -> (Hooks, mpsc::Receiver<(&'static str, ConnId)>) {
    let (tx, rx) = mpsc::channel();
    let (open, close) = (tx.clone(), tx);
    let hooks = Hooks {
        on_open: hook(move |c| open.send(("open", c.id())).expect("test waits")),
        on_close: hook(move |c| close.send(("close", c.id())).expect("test waits")),
        ..Hooks::default()
    };
    (hooks, rx)
}

#[test]
fn fd_task_aimed_at_a_reused_slot_runs_its_fallback_and_never_reaches_the_new_connection() {
    let (hooks, rx) = reporting_ids();
    let running = serve(hooks);
    let first = running.connect();
    let ("open", old) = rx.recv_timeout(PATIENCE).expect("open") else { panic!("expected open") };
    drop(first);
    assert_eq!(rx.recv_timeout(PATIENCE).expect("close"), ("close", old));
    let mut second = running.connect();
    let ("open", new) = rx.recv_timeout(PATIENCE).expect("open") else { panic!("expected open") };
    assert_eq!(new.slot, old.slot, "the slot is reused");

    let (tx, fell_back) = mpsc::channel();
    running.server.fd_task(old, |c| drop(c.write(b"WRONG")), move || tx.send(()).expect("test waits"));
    fell_back.recv_timeout(PATIENCE).expect("the fallback runs for the stale id");
    running.server.fd_task(new, |c| drop(c.write(b"right")), || panic!("the live connection exists"));
    assert_eq!(read_n(&mut second, 5), b"right", "the new connection saw only its own task");
    running.stop();
}

#[test]
fn each_reaches_every_other_connection_of_the_service_then_finishes_once() {
    // Each connection tells its client its id, so the test knows which socket is which.
    let hooks = Hooks {
        on_open: hook(|c| drop(c.write(format!("{:08}\n", c.id().slot).as_bytes()))),
        ..Hooks::default()
    };
    let running = serve(hooks);
    let mut clients: Vec<_> = (0..5).map(|_| running.connect()).collect();
    let slots: Vec<u32> = clients
        .iter_mut()
        .map(|c| String::from_utf8(read_n(c, 9)).expect("ascii").trim().parse().expect("slot"))
        .collect();
    let ids: Vec<ConnId> = slots
        .iter()
        .map(|slot| {
            running.server.conn(ConnId { slot: *slot, gen: 0 }).expect("a first-generation slot").id()
        })
        .collect();
    assert_eq!(running.server.count(Some("test")), 5);
    assert_eq!(running.server.count(Some("other")), 0);
    let origin = ids[0];
    let finished = Arc::new(AtomicUsize::new(0));
    let (tx, done) = mpsc::channel();
    let f = Arc::clone(&finished);
    running.server.each(
        Some(origin),
        Some("test"),
        |c| drop(c.write(b"hi")),
        move || {
            f.fetch_add(1, Ordering::SeqCst);
            tx.send(()).expect("test waits");
        },
    );
    done.recv_timeout(PATIENCE).expect("on_finish runs");
    assert_eq!(finished.load(Ordering::SeqCst), 1);
    // The origin gets nothing: prove it with a marker written after each finished.
    running.server.fd_task(origin, |c| drop(c.write(b"xx")), || panic!("origin is open"));
    assert_eq!(read_n(&mut clients[0], 2), b"xx");
    for c in &mut clients[1..] {
        assert_eq!(read_n(c, 2), b"hi");
    }
    let hits = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&hits);
    running
        .server
        .each_block(None, None, move |_| {
            h.fetch_add(1, Ordering::SeqCst);
        })
        .expect("called from the test thread, not a worker");
    assert_eq!(hits.load(Ordering::SeqCst), 5, "each_block returns after every task ran");
    // From a task, each_block could wait for its own worker: it refuses.
    let (tx, refused) = mpsc::channel();
    running.server.fd_task(
        origin,
        move |c| tx.send(c.server().each_block(None, None, |_| {})).expect("test waits"),
        || panic!("origin is open"),
    );
    assert!(matches!(refused.recv_timeout(PATIENCE).expect("task ran"), Err(Error::OnWorker)));
    running.stop();
}

#[test]
fn a_connection_past_capacity_gets_busy_msg_and_is_closed() {
    let hooks = Hooks::default();
    let builder = Server::builder().threads(2).port(0).max_connections(2).busy_msg("busy, try later\n");
    let running = start(builder.protocol(move || hooks.clone()));
    let _a = running.connect();
    let _b = running.connect();
    // Both are accepted before the third arrives: prove it by waiting for the count.
    let deadline = Instant::now() + PATIENCE;
    while running.server.count(None) < 2 {
        assert!(Instant::now() < deadline, "two connections never registered");
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut third = running.connect();
    assert_eq!(read_n(&mut third, 16), b"busy, try later\n");
    assert!(closed_by_peer(&mut third));
    running.stop();
}

#[test]
fn idle_connections_get_ping_after_their_timeout_and_touch_postpones_it() {
    let (tx, pings) = mpsc::channel();
    let hooks = Hooks {
        ping: hook(move |c: &Conn| {
            tx.send((c.id(), Instant::now())).expect("test waits");
            c.close();
        }),
        on_open: hook(|c| drop(c.write(b"o"))),
        ..Hooks::default()
    };
    let timeout = Duration::from_millis(300);
    let running =
        start(Server::builder().threads(2).port(0).timeout(timeout).protocol(move || hooks.clone()));
    let idle_since = Instant::now(); // before connecting: the server's clock starts later
    let mut idle = running.connect();
    read_n(&mut idle, 1);
    let mut busy = running.connect();
    read_n(&mut busy, 1);
    // Keep `busy` active for 3 timeouts: reads touch it.
    let mut last = Instant::now();
    while last.duration_since(idle_since) < timeout * 3 {
        last = Instant::now(); // before the write: the server's touch comes after it
        busy.write_all(b".").expect("write");
        std::thread::sleep(timeout / 4); // the client's pace, not synchronisation
    }
    let (first, at) = pings.recv_timeout(PATIENCE).expect("the idle connection is pinged");
    assert!(at >= idle_since + timeout, "pinged {:?} early", idle_since + timeout - at);
    assert!(closed_by_peer(&mut idle), "the default-style ping closed it");
    let (second, at2) = pings.recv_timeout(PATIENCE).expect("the busy one is pinged once it idles");
    assert_ne!(first, second);
    assert!(at2 >= last + timeout, "touch did not postpone the ping");
    running.stop();
}

#[test]
fn several_listeners_each_with_its_protocol_and_a_named_bind_error() {
    let a = Hooks {
        service: "upper",
        on_data: hook(|c| drop(c.write(&read_all(c).to_ascii_uppercase()))),
        ..Hooks::default()
    };
    let b = Hooks {
        service: "lower",
        on_data: hook(|c| drop(c.write(&read_all(c).to_ascii_lowercase()))),
        ..Hooks::default()
    };
    let builder = Server::builder()
        .threads(2)
        .listen("127.0.0.1:0", move || a.clone())
        .listen("127.0.0.1:0", move || b.clone());
    let running = start(builder);
    let addrs = running.server.local_addrs().to_vec();
    let mut up = std::net::TcpStream::connect(addrs[0]).expect("connect");
    let mut down = std::net::TcpStream::connect(addrs[1]).expect("connect");
    up.write_all(b"MiXeD").expect("write");
    down.write_all(b"MiXeD").expect("write");
    assert_eq!(read_n(&mut up, 5), b"MIXED");
    assert_eq!(read_n(&mut down, 5), b"mixed");

    let taken = addrs[0];
    let err = Server::builder()
        .signals(false)
        .listen(taken.to_string(), Hooks::default)
        .start()
        .expect_err("in use");
    assert!(matches!(err, Error::Bind { addr, .. } if addr == taken), "{err}");
    assert!(err.to_string().contains(&taken.to_string()));
    let spawned = Server::builder().signals(false).listen(taken.to_string(), Hooks::default).spawn();
    assert!(
        matches!(spawned, Err(Error::Bind { addr, .. }) if addr == taken),
        "spawn reports the bind error too"
    );
    running.stop();
}

#[test]
fn attach_serves_a_connected_socket_with_the_given_protocol() {
    let running = serve(Hooks::default());
    let side = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut outside = std::net::TcpStream::connect(side.local_addr().expect("addr")).expect("connect");
    outside.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let (inside, _) = side.accept().expect("accept");
    let echo =
        Hooks { service: "attached", on_data: hook(|c| drop(c.write(&read_all(c)))), ..Hooks::default() };
    running.server.attach(inside, Box::new(echo)).expect("server running");
    outside.write_all(b"over an attached socket").expect("write");
    assert_eq!(read_n(&mut outside, 23), b"over an attached socket");
    assert_eq!(running.server.count(Some("attached")), 1);
    running.stop();
}
