//! Model checks of the ring and of the park/wake handshake with `loom`.
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p async_pool --release --test loom`
//! (`.ci/test` does, in its own target folder). Loom replaces the atomics, the
//! mutexes, the threads and the worker's pipe, and explores their interleavings. A lost
//! wake-up leaves a thread blocked forever, which loom reports as a deadlock.
#![cfg(loom)]

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;

use async_pool::ring::{Pop, PushError, Ring};
use async_pool::{Pool, WorkerId};

/// Counts finished tasks and lets the test thread block until a number is reached
/// (blocking on loom's condvar, so a task that never runs is a reported deadlock).
#[derive(Default)]
struct Done {
    count: Mutex<usize>,
    cond: Condvar,
}

impl Done {
    fn add(&self) {
        *self.count.lock().expect("no panic under lock") += 1;
        self.cond.notify_all();
    }

    fn wait_for(&self, n: usize) {
        let mut count = self.count.lock().expect("no panic under lock");
        while *count < n {
            count = self.cond.wait(count).expect("no panic under lock");
        }
        assert_eq!(*count, n, "a task ran twice");
    }
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

#[test]
fn ring_concurrent_push_pop_each_value_once_and_in_order() {
    model(|| {
        let (ring, mut consumer) = Ring::with_consumer(2);
        // Three pushes into two slots while the consumer pops once: some interleavings
        // fill the ring, and a rejected value must come back to its producer.
        let producers: Vec<_> = [vec![0, 1], vec![10]]
            .into_iter()
            .map(|values| {
                let ring = Arc::clone(&ring);
                thread::spawn(move || {
                    values
                        .into_iter()
                        .filter_map(|v| ring.push(v).err().map(PushError::into_inner))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut got = Vec::new();
        if let Pop::Item(v) = consumer.pop() {
            got.push(v);
        }
        let mut rejected: Vec<usize> =
            producers.into_iter().flat_map(|h| h.join().expect("producer")).collect();
        while let Pop::Item(v) = consumer.pop() {
            got.push(v);
        }
        assert_eq!(consumer.pop(), Pop::Empty, "all producers finished, nothing can be Busy");
        let zeros: Vec<_> = got.iter().filter(|v| **v < 10).collect();
        assert!(zeros.windows(2).all(|w| w[0] < w[1]), "producer 0 out of order: {got:?}");
        got.append(&mut rejected);
        got.sort_unstable();
        assert_eq!(got, [0, 1, 10], "each value exactly once, popped or handed back");
    });
}

#[test]
fn ring_close_races_push() {
    model(|| {
        let (ring, mut consumer) = Ring::with_consumer(2);
        let producer = {
            let ring = Arc::clone(&ring);
            thread::spawn(move || ring.push(7).is_ok())
        };
        ring.close();
        let pushed = producer.join().expect("producer");
        // After close the contents are final: the value is there iff the push succeeded.
        let mut got = None;
        loop {
            match consumer.pop() {
                Pop::Item(v) => got = Some(v),
                Pop::Busy => thread::yield_now(),
                Pop::Closed => break,
                Pop::Empty => unreachable!("a closed ring never reports Empty"),
            }
        }
        assert_eq!(got.is_some(), pushed);
    });
}

#[test]
fn driven_pool_no_lost_wakeup_between_drive_and_wait() {
    model(|| {
        let pool = Arc::new(Pool::builder().driven(true).build().expect("pool builds"));
        let ran = Arc::new(AtomicUsize::new(0));
        let producer = {
            let (pool, ran) = (Arc::clone(&pool), Arc::clone(&ran));
            thread::spawn(move || {
                pool.run(move || {
                    ran.fetch_add(1, Ordering::Relaxed);
                })
                .expect("pool open")
            })
        };
        // The driver's loop: drive, then wait (park_driver: prepare_wait + the
        // doorbell + end_wait). A push racing the wait must ring or be seen, or the
        // driver blocks for ever, which loom reports.
        loop {
            let more = pool.drive(8);
            if ran.load(Ordering::Relaxed) == 1 {
                break;
            }
            if !more {
                pool.park_driver();
            }
        }
        producer.join().expect("producer");
        assert_eq!(pool.stats().total().tasks_run, 1);
    });
}

#[test]
fn no_lost_wakeup_two_producers_one_worker() {
    model(|| {
        let pool = Arc::new(Pool::builder().threads(1).build().expect("pool starts"));
        let done = Arc::new(Done::default());
        let producer = {
            let (pool, done) = (Arc::clone(&pool), Arc::clone(&done));
            thread::spawn(move || pool.run(move || done.add()).expect("pool open"))
        };
        let mine = Arc::clone(&done);
        pool.run(move || mine.add()).expect("pool open");
        // Wait for the tasks before any signal(): signal wakes every worker and would
        // hide a lost wake-up.
        done.wait_for(2);
        producer.join().expect("producer");
        pool.finish();
        assert_eq!(pool.stats().total().tasks_run, 2);
    });
}

#[test]
fn no_lost_wakeup_and_fifo_through_the_overflow() {
    model(|| {
        let pool = Arc::new(Pool::builder().threads(1).ring_capacity(2).build().expect("pool starts"));
        let done = Arc::new(Done::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        let producer = {
            let (pool, done, order) = (Arc::clone(&pool), Arc::clone(&done), Arc::clone(&order));
            thread::spawn(move || {
                for i in 0..3 {
                    let (done, order) = (Arc::clone(&done), Arc::clone(&order));
                    let task = move || {
                        order.lock().expect("no panic under lock").push(i);
                        done.add();
                    };
                    pool.run_on(WorkerId(0), task).expect("pool open");
                }
            })
        };
        done.wait_for(3);
        producer.join().expect("producer");
        pool.finish();
        // The third task spills (two slots): it must still run after the first two.
        assert_eq!(
            *order.lock().expect("no panic under lock"),
            [0, 1, 2],
            "one producer's tasks out of order"
        );
    });
}

#[test]
fn every_accepted_task_runs_when_signal_races_run() {
    model(|| {
        let pool = Arc::new(Pool::builder().threads(1).build().expect("pool starts"));
        let ran = Arc::new(AtomicUsize::new(0));
        let producer = {
            let (pool, ran) = (Arc::clone(&pool), Arc::clone(&ran));
            thread::spawn(move || {
                let accepted = pool
                    .run(move || {
                        ran.fetch_add(1, Ordering::SeqCst);
                    })
                    .is_ok();
                usize::from(accepted)
            })
        };
        pool.signal();
        let accepted = producer.join().expect("producer");
        pool.wait();
        assert_eq!(ran.load(Ordering::SeqCst), accepted);
    });
}
