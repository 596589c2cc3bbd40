//! Timers: handed to the pool at or after their deadlines, repeat counts, cancel.

mod util;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use reactor::Builder;
use util::{start, start_on, PATIENCE};

#[test]
fn run_every_10ms_5_times_fires_exactly_5_times_never_early() {
    // One worker: a sixth tick, handed over before the sentinel, would also run first.
    let r = start_on(Builder::new().signals(false), 1);
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
    // One worker runs tasks in hand-over order: every tick handed over before the
    // cancel runs before the first sentinel, however late the machine runs them.
    let r = start_on(Builder::new().signals(false), 1);
    let (tx, rx) = mpsc::channel();
    let ticks = tx.clone();
    let period = Duration::from_millis(5);
    let id = r.handle.run_every(period, 0, move || ticks.send("tick").expect("test waits")).expect("running");
    for _ in 0..3 {
        assert_eq!(rx.recv_timeout(PATIENCE).expect("ticks"), "tick");
    }
    r.handle.cancel(id).expect("reactor running");
    // Commands apply in order: the sentinels are scheduled after the cancel was applied.
    // A live timer would be due (and handed over) between them, ten periods apart.
    for (name, delay) in [("first sentinel", Duration::ZERO), ("second sentinel", period * 10)] {
        let tx = tx.clone();
        r.handle.run_after(delay, move || tx.send(name).expect("test waits")).expect("running");
    }
    let until = |sentinel: &str| -> Vec<&str> {
        std::iter::from_fn(|| Some(rx.recv_timeout(PATIENCE).expect("the sentinels fire")))
            .take_while(|m| *m != sentinel)
            .collect()
    };
    let in_flight = until("first sentinel");
    assert!(in_flight.iter().all(|m| *m == "tick"), "{in_flight:?}");
    let after = until("second sentinel");
    assert!(after.is_empty(), "ticks after the cancel was applied: {after:?}");
    r.stop();
}

#[test]
fn a_run_every_task_that_outlasts_its_interval_never_overlaps_itself() {
    // Two workers: without a guard, the next tick would start on the other one.
    let r = start(Builder::new().signals(false));
    let active = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    let (a, m) = (Arc::clone(&active), Arc::clone(&most));
    let id = r
        .handle
        .run_every(Duration::from_millis(5), 0, move || {
            let now = a.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(30)); // six intervals
            a.fetch_sub(1, Ordering::SeqCst);
            tx.send(()).expect("test waits");
        })
        .expect("running");
    for _ in 0..4 {
        rx.recv_timeout(PATIENCE).expect("the task keeps running, one run at a time");
    }
    r.handle.cancel(id).expect("reactor running");
    assert_eq!(most.load(Ordering::SeqCst), 1, "two runs of the same repeating task overlapped");
    r.stop();
}
