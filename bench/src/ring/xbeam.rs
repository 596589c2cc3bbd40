//! The "crossbeam" contender: `async_pool`'s design with its ring swapped for
//! `crossbeam_queue::ArrayQueue`.
//!
//! Everything but the queue copies `async_pool`'s `worker.rs`: one bounded queue per
//! worker of the same capacity, round-robin through one shared cursor, a full queue
//! spilling to a locked overflow list that the worker drains after its queue, the same
//! idle spin-then-yield before parking, and the same park/wake handshake on a pipe (the
//! worker stores `PARKED`, fences, re-checks its queues, then blocks in `read(2)`; a
//! producer pushes, fences, and writes one byte only if it wins `PARKED -> NOTIFIED`).
//! So the difference between this pool and `async_pool` is the queue alone.

use std::any::Any;
use std::collections::VecDeque;
use std::mem;
use std::os::fd::OwnedFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::{fmt, hint};

use async_pool::Task;
use crossbeam_queue::ArrayQueue;
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag};

use super::work::Padded;
use crate::error::{Context, Error, Result};

const RUNNING: u8 = 0;
const PARKED: u8 = 1;
const NOTIFIED: u8 = 2;

/// `async_pool`'s idle looks before parking (private there, copied here): spinning for
/// the first [`IDLE_SPINS`] looks, then yielding.
const IDLE_LOOKS: u32 = 48;
const IDLE_SPINS: u32 = 32;

/// Counters of a finished pool, summed over its workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolCounters {
    /// Tasks the workers ran.
    pub tasks_run: u64,
    /// Bytes producers wrote to worker pipes to wake them.
    pub pipe_wakeups: u64,
    /// Tasks that went to an overflow list because the queue was full (or because
    /// earlier tasks were waiting there).
    pub spills: u64,
}

/// A worker's pipe: it blocks reading, producers write one byte to wake it.
#[derive(Debug)]
struct Doorbell {
    read: OwnedFd,
    write: OwnedFd,
}

impl Doorbell {
    fn new() -> Result<Doorbell> {
        let (read, write) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).context(|| "ring: creating a pipe".into())?;
        // As in async_pool: a producer must never block on a pipe full of stale bytes.
        nix::fcntl::fcntl(&write, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
            .context(|| "ring: making a pipe's write end non-blocking".into())?;
        Ok(Doorbell { read, write })
    }

    fn ring(&self) -> Result<()> {
        loop {
            match nix::unistd::write(&self.write, &[1u8]) {
                // A full pipe holds unread rings already: the worker wakes anyway.
                Ok(_) | Err(Errno::EAGAIN) => return Ok(()),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e).context(|| "ring: writing a worker's pipe".into()),
            }
        }
    }

    fn wait(&self) -> Result<()> {
        let mut buf = [0u8; 64];
        loop {
            match nix::unistd::read(&self.read, &mut buf) {
                Ok(_) => return Ok(()),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e).context(|| "ring: reading a worker's pipe".into()),
            }
        }
    }
}

/// Tasks that found the queue full, in arrival order.
#[derive(Default)]
struct Overflow {
    queue: VecDeque<Task>,
}

#[derive(Debug, Default)]
struct Counters {
    tasks_run: AtomicU64,
    pipe_wakeups: AtomicU64,
    spills: AtomicU64,
}

/// The part of a worker that producers share.
struct Worker {
    queue: ArrayQueue<Task>,
    /// Mirrors `overflow.queue.len()` so that the common path never takes the lock;
    /// while it is non-zero producers spill too, keeping each producer's tasks in order.
    overflow_len: Padded<AtomicUsize>,
    overflow: Mutex<Overflow>,
    state: Padded<AtomicU8>,
    /// Set by [`CrossbeamPool::finish`] once no producer is left: drain, then exit.
    closed: AtomicBool,
    doorbell: Doorbell,
    counters: Padded<Counters>,
}

fn lock(m: &Mutex<Overflow>) -> MutexGuard<'_, Overflow> {
    // The critical sections only move tasks in and out of a VecDeque, never panic.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Worker {
    fn new(capacity: usize) -> Result<Worker> {
        Ok(Worker {
            queue: ArrayQueue::new(capacity),
            overflow_len: Padded(AtomicUsize::new(0)),
            overflow: Mutex::new(Overflow::default()),
            state: Padded(AtomicU8::new(RUNNING)),
            closed: AtomicBool::new(false),
            doorbell: Doorbell::new()?,
            counters: Padded(Counters::default()),
        })
    }

    fn push(&self, task: Task) -> Result<()> {
        if self.overflow_len.load(Ordering::Acquire) == 0 {
            if let Err(task) = self.queue.push(task) {
                self.spill(task);
            }
        } else {
            self.spill(task);
        }
        self.wake_if_parked()
    }

    fn spill(&self, task: Task) {
        let mut overflow = lock(&self.overflow);
        overflow.queue.push_back(task);
        self.overflow_len.store(overflow.queue.len(), Ordering::Release);
        self.counters.spills.fetch_add(1, Ordering::Relaxed);
    }

    fn wake_if_parked(&self) -> Result<()> {
        fence(Ordering::SeqCst);
        if self.state.load(Ordering::Relaxed) != PARKED {
            return Ok(());
        }
        if self.state.compare_exchange(PARKED, NOTIFIED, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            self.counters.pipe_wakeups.fetch_add(1, Ordering::Relaxed);
            self.doorbell.ring()?;
        }
        Ok(())
    }

    fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::SeqCst);
        self.wake_if_parked()
    }

    /// The worker thread's body: runs tasks until closed and drained.
    fn run(&self) -> Result<()> {
        loop {
            if let Some(task) = self.queue.pop() {
                self.execute(task);
                continue;
            }
            if self.drain_overflow() {
                continue;
            }
            // `closed` is set only after every producer is done, so once it is seen,
            // empty queues stay empty.
            if self.closed.load(Ordering::SeqCst) && !self.has_work() {
                return Ok(());
            }
            if !self.work_arrives_soon() {
                self.park()?;
            }
        }
    }

    /// Runs every spilled task; `false` if there was none.
    fn drain_overflow(&self) -> bool {
        if self.overflow_len.load(Ordering::Acquire) == 0 {
            return false;
        }
        if !self.queue.is_empty() {
            // A producer filled the queue and then spilled after our last pop: its
            // queued tasks are older than its spilled ones, so run the queue first.
            return true;
        }
        let batch = {
            let mut overflow = lock(&self.overflow);
            self.overflow_len.store(0, Ordering::Release);
            mem::take(&mut overflow.queue)
        };
        batch.into_iter().for_each(|task| self.execute(task));
        true
    }

    fn has_work(&self) -> bool {
        !self.queue.is_empty() || self.overflow_len.load(Ordering::SeqCst) > 0
    }

    fn work_arrives_soon(&self) -> bool {
        (0..IDLE_LOOKS).any(|look| {
            if look < IDLE_SPINS {
                hint::spin_loop();
            } else {
                thread::yield_now();
            }
            self.has_work()
        })
    }

    fn park(&self) -> Result<()> {
        self.state.store(PARKED, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let waited = if !self.has_work() && !self.closed.load(Ordering::SeqCst) {
            self.doorbell.wait()
        } else {
            Ok(())
        };
        // A NOTIFIED overwritten here left a byte in the pipe: the next park returns
        // at once, one spurious turn, never a lost task.
        self.state.store(RUNNING, Ordering::SeqCst);
        waited
    }

    fn execute(&self, task: Task) {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(task)) {
            log::error!("ring: a task panicked on a crossbeam worker: {}", panic_message(&*payload));
        }
        let run = &self.counters.tasks_run;
        run.store(run.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
}

/// The text of a panic payload, for the log.
pub fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(non-string panic payload)"
    }
}

/// Worker threads, each with an `ArrayQueue`, an overflow list and a pipe, driven
/// exactly like `async_pool::Pool`.
pub struct CrossbeamPool {
    workers: Arc<[Worker]>,
    /// Round-robin cursor shared by all producers, as in `async_pool`.
    next: Padded<AtomicUsize>,
    threads: Vec<JoinHandle<Result<()>>>,
}

impl CrossbeamPool {
    /// Starts `threads` workers whose queues hold `capacity` tasks each.
    pub fn new(threads: usize, capacity: usize) -> Result<CrossbeamPool> {
        let workers: Arc<[Worker]> =
            (0..threads.max(1)).map(|_| Worker::new(capacity)).collect::<Result<Vec<_>>>()?.into();
        let mut pool = CrossbeamPool { workers, next: Padded(AtomicUsize::new(0)), threads: Vec::new() };
        for index in 0..pool.workers.len() {
            let workers = Arc::clone(&pool.workers);
            let handle = thread::Builder::new()
                .name(format!("crossbeam-{index}"))
                .spawn(move || workers[index].run())
                .context(|| format!("ring: starting crossbeam worker {index}"))?;
            // On error `pool` drops here and its Drop finishes the workers started.
            pool.threads.push(handle);
        }
        Ok(pool)
    }

    /// Queues `task` on the next worker in round-robin order. Never blocks.
    pub fn run(&self, task: Task) -> Result<()> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.workers[n % self.workers.len()].push(task)
    }

    /// Lets every queued task run, joins the workers and returns their counters.
    /// Taking `self` means no producer can still be pushing.
    pub fn finish(mut self) -> Result<PoolCounters> {
        self.shut_down()?;
        let sum = |f: fn(&Counters) -> &AtomicU64| {
            self.workers.iter().map(|w| f(&w.counters).load(Ordering::SeqCst)).sum::<u64>()
        };
        Ok(PoolCounters {
            tasks_run: sum(|c| &c.tasks_run),
            pipe_wakeups: sum(|c| &c.pipe_wakeups),
            spills: sum(|c| &c.spills),
        })
    }

    fn shut_down(&mut self) -> Result<()> {
        let mut first_error = None;
        for w in self.workers.iter() {
            if let Err(e) = w.close() {
                first_error.get_or_insert(e);
            }
        }
        for handle in self.threads.drain(..) {
            let outcome = handle.join().unwrap_or_else(|_| {
                Err(Error::Tool("ring: a crossbeam worker panicked outside a task".into()))
            });
            if let Err(e) = outcome {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for CrossbeamPool {
    fn drop(&mut self) {
        if let Err(e) = self.shut_down() {
            log::error!("{e}");
        }
    }
}

impl fmt::Debug for CrossbeamPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CrossbeamPool")
            .field("workers", &self.workers.len())
            .field("running", &self.threads.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn every_task_runs_once_with_several_producers() {
        const PRODUCERS: usize = 4;
        const PER_PRODUCER: usize = 5_000;
        // A small queue makes producers spill, so the overflow path runs too.
        let pool = CrossbeamPool::new(2, 8).expect("two workers start");
        let ran: Arc<Vec<AtomicU32>> =
            Arc::new((0..PRODUCERS * PER_PRODUCER).map(|_| AtomicU32::new(0)).collect());
        thread::scope(|s| {
            for p in 0..PRODUCERS {
                let (pool, ran) = (&pool, &ran);
                s.spawn(move || {
                    for i in 0..PER_PRODUCER {
                        let (ran, id) = (Arc::clone(ran), p * PER_PRODUCER + i);
                        pool.run(Box::new(move || {
                            ran[id].fetch_add(1, Ordering::Relaxed);
                        }))
                        .expect("pushing never fails while the pool is open");
                    }
                });
            }
        });
        let counters = pool.finish().expect("the workers exit cleanly");
        assert!(ran.iter().all(|n| n.load(Ordering::Relaxed) == 1), "a task ran twice or never");
        assert_eq!(counters.tasks_run, (PRODUCERS * PER_PRODUCER) as u64);
    }

    #[test]
    fn finish_runs_queued_tasks_and_joins() {
        let pool = CrossbeamPool::new(2, 1024).expect("two workers start");
        let ran = Arc::new(AtomicU32::new(0));
        for _ in 0..10 {
            let ran = Arc::clone(&ran);
            pool.run(Box::new(move || {
                ran.fetch_add(1, Ordering::Relaxed);
            }))
            .expect("the pool is open");
        }
        let counters = pool.finish().expect("the workers exit cleanly");
        // finish returned, so the workers were joined: every task has run.
        assert_eq!(ran.load(Ordering::Relaxed), 10);
        assert_eq!(counters.tasks_run, 10);
        assert_eq!(Arc::strong_count(&ran), 1, "no task is left holding its state");
    }

    #[test]
    fn parked_worker_is_woken_through_its_pipe() {
        let pool = CrossbeamPool::new(1, 1024).expect("one worker starts");
        // An idle worker parks after its idle looks; wait for that state, not for a time.
        while pool.workers[0].state.load(Ordering::SeqCst) != PARKED {
            thread::yield_now();
        }
        let (tx, rx) = std::sync::mpsc::channel();
        pool.run(Box::new(move || tx.send(()).expect("the test still listens"))).expect("the pool is open");
        rx.recv_timeout(std::time::Duration::from_secs(30)).expect("the parked worker woke and ran the task");
        let counters = pool.finish().expect("the worker exits cleanly");
        assert!(counters.pipe_wakeups >= 1, "the push found the worker parked and wrote to its pipe");
        assert_eq!(counters.tasks_run, 1);
    }
}
