//! Timers: handed to the pool at or after their deadlines, repeat counts, cancel.

mod util;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use reactor::Builder;
use util::{start, PATIENCE};

#[test]
fn run_every_10ms_5_times_fires_exactly_5_times_never_early() {
    let r = start(Builder::new().signals(false));
    let (tx, rx) = mpsc::channel();
    let interval = Duration::from_millis(10);
    let start = Instant::now();
    let tx_every = tx.clone();
    r.handle
        .run_every(interval, 5, move || tx_every.send(("tick", Instant::now())).expect("test waits"))
        .expect("reactor running");
    let ticks: Vec<Instant> = (0..5).map(|_| rx.recv_timeout(PATIENCE).expect("a tick").1).collect();
    for (k, at) in ticks.iter().enumerate() {
        let deadline = start + interval * (k as u32 + 1);
        assert!(*at >= deadline, "tick {} came {:?} early", k + 1, deadline - *at);
    }
    // A sentinel 10 periods later: had the timer kept going, ticks would arrive first.
    r.handle
        .run_after(interval * 10, move || tx.send(("sentinel", Instant::now())).expect("test waits"))
        .expect("reactor running");
    let (what, _) = rx.recv_timeout(PATIENCE).expect("the sentinel fires");
    assert_eq!(what, "sentinel", "a sixth tick fired");
    r.stop();
}

#[test]
fn run_after_fires_once_on_a_pool_thread_and_cancel_prevents_it() {
    let r = start(Builder::new().signals(false));
    let (tx, rx) = mpsc::channel();
    let cancelled_tx = tx.clone();
    let cancelled = r
        .handle
        .run_after(Duration::from_millis(20), move || {
            cancelled_tx.send("cancelled".to_string()).expect("test waits")
        })
        .expect("reactor running");
    r.handle.cancel(cancelled).expect("reactor running");
    let start = Instant::now();
    let on_thread =
        move || tx.send(std::thread::current().name().unwrap_or("").to_string()).expect("test waits");
    r.handle.run_after(Duration::from_millis(40), on_thread).expect("reactor running");
    let thread = rx.recv_timeout(PATIENCE).expect("the timer fires");
    assert!(start.elapsed() >= Duration::from_millis(40), "fired early");
    assert!(thread.starts_with("async_pool-"), "ran on {thread:?}, not a pool worker");
    assert!(rx.try_recv().is_err(), "the cancelled timer fired");
    r.stop();
}

#[test]
fn cancelling_a_forever_timer_stops_it() {
    let r = start(Builder::new().signals(false));
    let (tx, rx) = mpsc::channel();
    let ticks = tx.clone();
    let id = r
        .handle
        .run_every(Duration::from_millis(5), 0, move || ticks.send("tick").expect("test waits"))
        .expect("running");
    for _ in 0..3 {
        assert_eq!(rx.recv_timeout(PATIENCE).expect("ticks"), "tick");
    }
    r.handle.cancel(id).expect("reactor running");
    // Commands apply in order: once the sentinel is scheduled, the cancel was applied.
    r.handle
        .run_after(Duration::from_millis(50), move || tx.send("sentinel").expect("test waits"))
        .expect("running");
    let rest: Vec<_> =
        std::iter::from_fn(|| rx.recv_timeout(PATIENCE).ok()).take_while(|m| *m != "sentinel").collect();
    assert!(rest.len() <= 1, "ticks after cancel: {rest:?}"); // one may have been in flight on the pool
    r.stop();
}
