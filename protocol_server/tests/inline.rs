//! `Builder::inline(true)`: no worker threads; every hook and task runs on the thread
//! that runs the reactor, woken through the driven pool's doorbell when another
//! thread queues work while the reactor waits in `epoll_wait`.

mod util;

use std::io::Write;
use std::sync::mpsc;
use std::thread::ThreadId;

use protocol_server::{Conn, Error, Server};
use util::{hook, read_n, shared_channel, start, Hooks, PATIENCE};

fn inline(hooks: Hooks) -> util::Running {
    start(Server::builder().inline(true).threads(4).port(0).protocol(move || hooks.clone()))
}

#[test]
fn every_hook_runs_on_the_one_server_thread_and_connections_are_served() {
    let (tx, threads) = shared_channel::<(&'static str, ThreadId, String)>();
    let (t1, t2) = (tx.clone(), tx);
    let me = |what| {
        let t = std::thread::current();
        (what, t.id(), t.name().unwrap_or("").to_string())
    };
    let hooks = Hooks {
        on_open: hook(move |_| t1.lock().expect("no panic under lock").send(me("open")).expect("test waits")),
        on_data: hook(move |c: &Conn| {
            let data = util::read_all(c);
            if !data.is_empty() {
                t2.lock().expect("no panic under lock").send(me("data")).expect("test waits");
                c.write(&data).expect("echo");
            }
        }),
        ..Hooks::default()
    };
    let running = inline(hooks);
    assert_eq!(
        running.server.threads(),
        1,
        "an inline server has one (driven) worker, whatever threads(n) says"
    );
    let mut clients: Vec<_> = (0..3).map(|_| running.connect()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.write_all(format!("hello {i}").as_bytes()).expect("write");
        assert_eq!(read_n(c, 7), format!("hello {i}").as_bytes(), "echo through an inline server");
    }
    let seen: Vec<_> = (0..6).map(|_| threads.recv_timeout(PATIENCE).expect("a hook ran")).collect();
    let first = seen[0].1;
    assert!(seen.iter().all(|s| s.1 == first), "hooks ran on several threads: {seen:?}");
    assert_eq!(seen[0].2, "server", "hooks run on the thread that runs the reactor: {seen:?}");
    running.stop();
}

#[test]
fn work_queued_from_another_thread_wakes_an_idle_inline_server() {
    let running = inline(Hooks::default());
    let mut client = running.connect();
    let (tx, timer_ran) = mpsc::channel();
    // The reactor is idle in epoll_wait: only the doorbell can wake it for these.
    let server = running.server.clone();
    std::thread::spawn(move || {
        server.run(move || tx.send(std::thread::current().name().map(str::to_string)).expect("test waits"))
    })
    .join()
    .expect("the queuing thread")
    .expect("the server accepts tasks");
    assert_eq!(
        timer_ran.recv_timeout(PATIENCE).expect("a task queued from another thread ran"),
        Some("server".into())
    );
    // each_block from a foreign thread: tasks on every connection, then it returns.
    running.server.each_block(None, None, |c| c.write(b"each").expect("write")).expect("not on the worker");
    assert_eq!(read_n(&mut client, 4), b"each");
    running.stop();
}

#[test]
fn each_block_from_the_server_thread_is_refused_not_a_deadlock() {
    let (tx, got) = mpsc::channel();
    let builder = Server::builder().inline(true).port(0).protocol(Hooks::default).on_init(move |server| {
        let refused = matches!(server.each_block(None, None, |_| {}), Err(Error::OnWorker));
        tx.send(refused).expect("test waits");
    });
    let running = start(builder);
    assert!(
        got.recv_timeout(PATIENCE).expect("on_init ran"),
        "each_block on the reactor thread must fail with OnWorker"
    );
    running.stop();
}

#[test]
fn on_close_runs_for_every_connection_at_shutdown() {
    let (tx, closed) = shared_channel();
    let hooks = Hooks {
        on_close: hook(move |_| tx.lock().expect("no panic under lock").send(()).expect("test waits")),
        ..Hooks::default()
    };
    let running = inline(hooks);
    let clients: Vec<_> = (0..5).map(|_| running.connect()).collect();
    // Every connection is open before the stop.
    let deadline = std::time::Instant::now() + PATIENCE;
    while running.server.count(None) < 5 {
        assert!(std::time::Instant::now() < deadline, "5 connections were not all opened");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    running.stop();
    for i in 0..5 {
        closed.recv_timeout(PATIENCE).unwrap_or_else(|_| panic!("on_close {i} of 5 did not run"));
    }
    drop(clients);
}
