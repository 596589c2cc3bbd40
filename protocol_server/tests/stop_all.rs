//! on_tick/on_idle/on_finish hooks, server timers and `Server::stop_all`. Alone in its
//! binary: `stop_all` stops every server of the process.

mod util;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use protocol_server::Server;
use util::{start, Hooks, PATIENCE};

#[test]
fn hooks_timers_and_stop_all() {
    let ticks = Arc::new(AtomicUsize::new(0));
    let idles = Arc::new(AtomicUsize::new(0));
    let (t, i) = (Arc::clone(&ticks), Arc::clone(&idles));
    let (done_tx, done) = mpsc::channel();
    let hooks = Hooks::default();
    let builder = Server::builder()
        .threads(2)
        .port(0)
        .on_tick(move |_| {
            t.fetch_add(1, Ordering::SeqCst);
        })
        .on_idle(move |_| {
            i.fetch_add(1, Ordering::SeqCst);
        })
        .on_finish(move |_| done_tx.send(()).expect("test waits"))
        .protocol(move || hooks.clone());
    let running = start(builder);
    let (tx, rx) = mpsc::channel();
    let every = tx.clone();
    running
        .server
        .run_every(Duration::from_millis(10), 3, move || every.send("every").expect("test waits"))
        .expect("timer");
    running
        .server
        .run_after(Duration::from_millis(50), move || tx.send("after").expect("test waits"))
        .expect("timer");
    let got: Vec<_> = (0..4).map(|_| rx.recv_timeout(PATIENCE).expect("timer fires")).collect();
    assert_eq!(got, ["every", "every", "every", "after"]);
    assert!(ticks.load(Ordering::SeqCst) > 0, "on_tick ran");
    assert!(idles.load(Ordering::SeqCst) > 0, "on_idle ran (timer turns have no I/O)");
    Server::stop_all();
    running.thread.join().expect("server thread").expect("clean stop");
    done.recv_timeout(PATIENCE).expect("on_finish ran");
}
