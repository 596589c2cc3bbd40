//! A driven pool (`Builder::driven`): no worker thread; tasks run on the thread that
//! drives it, woken through its doorbell when it waits.
#![cfg(not(loom))]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use async_pool::{Pool, WorkerId};

fn driven() -> Pool {
    Pool::builder().driven(true).build().expect("a driven pool builds")
}

#[test]
fn tasks_run_only_when_driven_in_order_on_the_driving_thread() {
    let pool = driven();
    assert!(pool.is_driven());
    assert_eq!(pool.threads(), 1, "a driven pool has one worker");
    let ran = Arc::new(Mutex::new(Vec::new()));
    for i in 0..10 {
        let ran = Arc::clone(&ran);
        pool.run_on(WorkerId(0), move || {
            ran.lock().expect("no panic").push((i, std::thread::current().id()))
        })
        .expect("pool open");
    }
    assert!(ran.lock().expect("no panic").is_empty(), "a task ran before the pool was driven");
    assert!(pool.drive(4), "6 tasks are left after a budget of 4");
    assert_eq!(ran.lock().expect("no panic").len(), 4);
    assert!(!pool.drive(100), "nothing is left");
    let ran = ran.lock().expect("no panic");
    assert_eq!(ran.iter().map(|r| r.0).collect::<Vec<_>>(), (0..10).collect::<Vec<_>>(), "FIFO");
    let me = std::thread::current().id();
    assert!(ran.iter().all(|r| r.1 == me), "every task ran on the driving thread");
    assert_eq!(pool.current_worker(), Some(WorkerId(0)), "the driver counts as the worker");
}

#[test]
fn the_doorbell_wakes_a_waiting_driver_and_only_then() {
    let pool = Arc::new(driven());
    let fd = pool.doorbell_fd().expect("a driven pool has a doorbell").try_clone_to_owned().expect("dup");
    let readable = |timeout_ms: u16| {
        use nix::poll::{poll, PollFd, PollFlags};
        let mut fds = [PollFd::new(std::os::fd::AsFd::as_fd(&fd), PollFlags::POLLIN)];
        poll(&mut fds, timeout_ms).expect("poll") == 1
    };
    // Running: a push rings nothing (no syscall while the driver is busy).
    pool.run(|| {}).expect("pool open");
    assert!(!readable(0), "a push to a running driver rang the doorbell");
    assert!(!pool.prepare_wait(), "a driver with queued work must not block");
    pool.end_wait();
    assert!(!pool.drive(10));
    // Waiting: a push from another thread rings it.
    assert!(pool.prepare_wait(), "nothing queued: the driver may block");
    let (tx, rx) = mpsc::channel();
    let producer = Arc::clone(&pool);
    std::thread::spawn(move || producer.run(move || tx.send(()).expect("test waits")).expect("pool open"));
    assert!(readable(10_000), "the doorbell did not ring for a task queued while the driver waited");
    pool.end_wait();
    pool.clear_doorbell();
    assert!(!readable(0), "clear_doorbell left the doorbell readable");
    assert!(!pool.drive(10));
    rx.recv_timeout(Duration::from_secs(5)).expect("the task ran in drive");
}

#[test]
fn finish_runs_what_is_left_on_the_calling_thread_and_refuses_more() {
    let pool = driven();
    let count = Arc::new(AtomicUsize::new(0));
    for _ in 0..5 {
        let count = Arc::clone(&count);
        pool.run(move || {
            count.fetch_add(1, Ordering::Relaxed);
        })
        .expect("pool open");
    }
    pool.finish();
    assert_eq!(count.load(Ordering::Relaxed), 5, "finish ran every queued task");
    assert!(pool.run(|| {}).is_err(), "a finished pool refuses tasks");
}

#[test]
fn wait_from_a_driven_task_returns_instead_of_deadlocking() {
    let pool = Arc::new(driven());
    let inner = Arc::clone(&pool);
    let (tx, rx) = mpsc::channel();
    pool.run(move || {
        inner.wait();
        tx.send(()).expect("test waits");
    })
    .expect("pool open");
    pool.drive(10);
    rx.recv_timeout(Duration::from_secs(5)).expect("wait() inside a driven task returned");
}

#[test]
fn park_driver_returns_when_another_thread_queues_a_task() {
    let pool = Arc::new(driven());
    let producer = Arc::clone(&pool);
    let pushing = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20)); // let the driver block first (not a sync)
        producer.run(|| {}).expect("pool open");
    });
    pool.park_driver(); // blocks until the push; a lost wake-up hangs the test
    assert!(!pool.drive(10), "one task, run within the budget");
    pushing.join().expect("producer");
    assert_eq!(pool.stats().total().tasks_run, 1);
}
