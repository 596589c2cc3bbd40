//! Load: many producers that never pause, every task run exactly once.
//!
//! Prints tasks/s and pipe wake-ups per task (`cargo test -p async_pool --release
//! -- --nocapture stress`). The figures are printed, not asserted, except the
//! wake-up ratio, which is a property of the park/wake protocol, not of speed.
#![cfg(not(loom))]

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Instant;

use async_pool::Pool;

const PRODUCERS: usize = 4;
const PER_PRODUCER: usize = 1_000_000;

fn stress(workers: usize) {
    let pool = Arc::new(Pool::new(workers).expect("pool starts"));
    let runs: Arc<Vec<AtomicU8>> =
        Arc::new((0..PRODUCERS * PER_PRODUCER).map(|_| AtomicU8::new(0)).collect());
    let started = Instant::now();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let (pool, runs) = (Arc::clone(&pool), Arc::clone(&runs));
            std::thread::spawn(move || {
                for i in p * PER_PRODUCER..(p + 1) * PER_PRODUCER {
                    let runs = Arc::clone(&runs);
                    pool.run(move || {
                        runs[i].fetch_add(1, Ordering::Relaxed);
                    })
                    .expect("pool open while producing");
                }
            })
        })
        .collect();
    producers.into_iter().for_each(|h| h.join().expect("producer thread"));
    pool.finish();
    let elapsed = started.elapsed();
    let stats = pool.stats();
    let total = stats.total();
    println!(
        "stress {PRODUCERS} producers -> {workers} workers: {} tasks in {elapsed:.2?} = {:.0} tasks/s, \
         {} pipe wake-ups = {:.5} per task, {} spills",
        total.tasks_run,
        total.tasks_run as f64 / elapsed.as_secs_f64(),
        total.pipe_wakeups,
        stats.wakeups_per_task(),
        total.spills,
    );
    assert_eq!(total.tasks_run, (PRODUCERS * PER_PRODUCER) as u64);
    let wrong: Vec<_> =
        runs.iter().enumerate().filter(|(_, r)| r.load(Ordering::Relaxed) != 1).take(5).collect();
    assert!(wrong.is_empty(), "tasks not run exactly once: {wrong:?}");
    assert!(stats.wakeups_per_task() < 0.1, "too many pipe wake-ups: {stats:?}");
}

#[test]
fn stress_4_producers_into_2_workers() {
    stress(2);
}

#[test]
fn stress_4_producers_into_8_workers() {
    stress(8);
}
