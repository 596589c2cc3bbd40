//! Behaviour of `Pool` seen from outside: wake-up, order, panics, shutdown.
#![cfg(not(loom))]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use async_pool::{Pool, WorkerId};

/// Polls `done` (it reads a snapshot nobody signals) until it holds, for at most 5 s.
fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "{what} did not happen within 5 s");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn parked_pool_wakes_for_one_task_quickly() {
    let pool = Pool::new(2).expect("pool starts");
    let (tx, rx) = mpsc::channel();
    // A worker may still be between announcing its park and blocking on the pipe when
    // we push; then it sees the task itself and no byte is needed. Collect rounds that
    // really went through the pipe. A parked worker blocks in read(2) with no timeout,
    // so a lost wake-up shows as a task that never runs; a slow wake path (a timed
    // poll, a sleep before parking) as every round being slow. One loaded round on a
    // busy machine is not a failure: the fastest of several is judged.
    let mut through_pipe = Vec::new();
    for _ in 0..50 {
        eventually("both workers parking", || pool.parked_workers() == 2);
        let before = pool.stats().total().pipe_wakeups;
        let sent = Instant::now();
        let tx = tx.clone();
        pool.run(move || tx.send(sent.elapsed()).expect("test receiver alive")).expect("pool open");
        let Ok(latency) = rx.recv_timeout(Duration::from_secs(5)) else {
            std::mem::forget(pool); // dropping it would wait for the worker that never woke
            panic!("a parked worker did not wake for one task within 5 s");
        };
        let wakeups = pool.stats().total().pipe_wakeups - before;
        assert!(wakeups <= 1, "one task, {wakeups} pipe writes");
        if wakeups == 1 {
            through_pipe.push(latency);
        }
        if through_pipe.len() == 5 {
            let fastest = through_pipe.iter().min().expect("five rounds");
            assert!(*fastest < Duration::from_millis(50), "every wake-up was slow: {through_pipe:?}");
            return;
        }
    }
    panic!("only {} of 50 tasks reached a parked worker through its pipe", through_pipe.len());
}

#[test]
fn run_on_keeps_one_producers_order_even_through_spills() {
    let pool = Pool::builder().threads(2).ring_capacity(2).build().expect("pool starts");
    let seen = Arc::new(Mutex::new(Vec::new()));
    for i in 0..10_000 {
        let seen = Arc::clone(&seen);
        pool.run_on(WorkerId(1), move || seen.lock().expect("no panic under lock").push(i)).expect("open");
    }
    pool.finish();
    let seen = seen.lock().expect("no panic under lock");
    assert_eq!(*seen, (0..10_000).collect::<Vec<_>>());
    let stats = pool.stats();
    assert!(stats.workers[1].spills > 0, "a 2-slot ring must have spilled: {stats:?}");
    assert_eq!(stats.workers[1].tasks_run, 10_000);
    assert_eq!(stats.workers[0].tasks_run, 0);
}

#[test]
fn round_robin_spreads_tasks() {
    let pool = Pool::new(4).expect("pool starts");
    for _ in 0..400 {
        pool.run(|| {}).expect("open");
    }
    pool.finish();
    let stats = pool.stats();
    assert!(stats.workers.iter().all(|w| w.tasks_run == 100), "{stats:?}");
}

#[test]
fn a_panicking_task_does_not_kill_its_worker() {
    let pool = Pool::new(1).expect("pool starts");
    let ran = Arc::new(AtomicUsize::new(0));
    pool.run(|| panic!("task panics on purpose")).expect("open");
    for _ in 0..10 {
        let ran = Arc::clone(&ran);
        pool.run(move || {
            ran.fetch_add(1, Ordering::SeqCst);
        })
        .expect("open");
    }
    pool.finish();
    assert_eq!(ran.load(Ordering::SeqCst), 10);
    assert_eq!(pool.stats().total().tasks_run, 11);
}

#[test]
fn signal_refuses_new_tasks_and_wait_runs_queued_ones() {
    let pool = Arc::new(Pool::new(2).expect("pool starts"));
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    let ran = Arc::new(AtomicUsize::new(0));
    // Hold one worker so tasks are still queued when we signal.
    pool.run_on(WorkerId(0), move || gate_rx.recv().expect("gate sender alive")).expect("open");
    for _ in 0..100 {
        let ran = Arc::clone(&ran);
        pool.run_on(WorkerId(0), move || {
            ran.fetch_add(1, Ordering::SeqCst);
        })
        .expect("open");
    }
    pool.signal();
    assert!(pool.is_signaled());
    assert!(pool.run(|| {}).is_err(), "a signaled pool hands the task back");
    // Two waiters: each may return only once every queued task has run.
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let (pool, ran) = (Arc::clone(&pool), Arc::clone(&ran));
            std::thread::spawn(move || {
                pool.wait();
                ran.load(Ordering::SeqCst)
            })
        })
        .collect();
    gate_tx.send(()).expect("worker holds the gate");
    for waiter in waiters {
        assert_eq!(waiter.join().expect("wait returns"), 100, "wait returned before the queue drained");
    }
}

#[test]
fn wait_blocks_until_another_thread_signals() {
    let pool = Arc::new(Pool::new(2).expect("pool starts"));
    let (tx, rx) = mpsc::channel();
    let waiter = {
        let pool = Arc::clone(&pool);
        std::thread::spawn(move || {
            pool.wait();
            tx.send(()).expect("test receiver alive");
        })
    };
    assert!(rx.recv_timeout(Duration::from_millis(100)).is_err(), "wait returned before signal");
    pool.signal();
    rx.recv_timeout(Duration::from_secs(5)).expect("wait returns after signal");
    waiter.join().expect("waiter thread");
}

#[test]
fn dropping_the_pool_runs_what_was_queued() {
    let ran = Arc::new(AtomicUsize::new(0));
    {
        let pool = Pool::new(2).expect("pool starts");
        for _ in 0..1_000 {
            let ran = Arc::clone(&ran);
            pool.run(move || {
                ran.fetch_add(1, Ordering::SeqCst);
            })
            .expect("open");
        }
    }
    assert_eq!(ran.load(Ordering::SeqCst), 1_000);
}

#[test]
fn a_task_may_drop_the_last_handle_to_its_pool() {
    let pool = Arc::new(Pool::new(2).expect("pool starts"));
    let (tx, rx) = mpsc::channel();
    let inner = Arc::clone(&pool);
    drop(pool);
    let task_pool = Arc::clone(&inner);
    inner
        .run(move || {
            drop(task_pool); // may be the last Arc: Drop must not join this very thread
            tx.send(()).expect("test receiver alive");
        })
        .expect("open");
    drop(inner);
    rx.recv_timeout(Duration::from_secs(5)).expect("task ran and dropped the pool");
}

#[test]
fn zero_threads_means_one_per_core() {
    let pool = Pool::new(0).expect("pool starts");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(pool.threads(), cores);
}
