//! The `std::sync::mpsc` contender: one unbounded channel per worker, fed round-robin.
//!
//! This is the pool most Rust code would write first. Its wake-ups happen inside the
//! channel (a futex after a short spin), so there is no pipe to count, and an unbounded
//! channel never spills.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::thread::{self, JoinHandle};

use async_pool::Task;

use super::work::Padded;
use super::xbeam::panic_message;
use crate::error::{Context, Error, Result};

/// Worker threads, each draining its own `mpsc` channel.
#[derive(Debug)]
pub struct MpscPool {
    senders: Vec<Sender<Task>>,
    /// Round-robin cursor shared by all producers, as in `async_pool`.
    next: Padded<AtomicUsize>,
    threads: Vec<JoinHandle<u64>>,
}

impl MpscPool {
    /// Starts `threads` workers.
    pub fn new(threads: usize) -> Result<MpscPool> {
        let mut pool =
            MpscPool { senders: Vec::new(), next: Padded(AtomicUsize::new(0)), threads: Vec::new() };
        for index in 0..threads.max(1) {
            let (tx, rx) = mpsc::channel::<Task>();
            let handle = thread::Builder::new()
                .name(format!("mpsc-{index}"))
                .spawn(move || {
                    let mut ran = 0u64;
                    for task in rx {
                        if let Err(payload) = catch_unwind(AssertUnwindSafe(task)) {
                            log::error!(
                                "ring: a task panicked on an mpsc worker: {}",
                                panic_message(&*payload)
                            );
                        }
                        ran += 1;
                    }
                    ran
                })
                .context(|| format!("ring: starting mpsc worker {index}"))?;
            // On error `pool` drops here and its Drop finishes the workers started.
            pool.senders.push(tx);
            pool.threads.push(handle);
        }
        Ok(pool)
    }

    /// Sends `task` to the next worker in round-robin order. Never blocks.
    pub fn run(&self, task: Task) -> Result<()> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.senders[n % self.senders.len()]
            .send(task)
            .map_err(|_| Error::Tool("ring: an mpsc worker hung up before the pool finished".into()))
    }

    /// Hangs up, lets every queued task run, joins the workers and returns how many
    /// tasks they ran. Taking `self` means no producer can still be sending.
    pub fn finish(mut self) -> Result<u64> {
        self.shut_down()
    }

    fn shut_down(&mut self) -> Result<u64> {
        // Dropping the senders ends each worker's `for task in rx` once drained.
        self.senders.clear();
        let mut ran = 0;
        let mut panicked = false;
        for handle in self.threads.drain(..) {
            match handle.join() {
                Ok(n) => ran += n,
                Err(_) => panicked = true,
            }
        }
        if panicked {
            return Err(Error::Tool("ring: an mpsc worker panicked outside a task".into()));
        }
        Ok(ran)
    }
}

impl Drop for MpscPool {
    fn drop(&mut self) {
        if let Err(e) = self.shut_down() {
            log::error!("{e}");
        }
    }
}
