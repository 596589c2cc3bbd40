//! One worker: its ring, its overflow list, its park state and its doorbell.
//!
//! ### The park/wake handshake
//! The worker, finding nothing to do, stores `PARKED`, issues a `SeqCst` fence and
//! looks at its queues once more before blocking on the doorbell. A producer pushes,
//! issues a `SeqCst` fence and reads the state; only if it reads `PARKED` and wins the
//! `PARKED -> NOTIFIED` exchange does it write to the pipe. The two fences make it
//! impossible for both sides to miss each other (the store-buffer litmus test), so
//! no wake-up is lost, and a busy worker (state `RUNNING`) costs producers no syscall.

use std::any::Any;
use std::collections::VecDeque;
use std::mem;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::ring::{Consumer, Pop, PushError, Ring};
use crate::sync::{
    fence, hint, lock, thread, Arc, AtomicU64, AtomicU8, AtomicUsize, CachePadded, Mutex, Ordering,
};
use crate::wake::Doorbell;
use crate::{PoolClosed, Task, WorkerStats};

const RUNNING: u8 = 0;
const PARKED: u8 = 1;
const NOTIFIED: u8 = 2;

/// Looks at the queues this many times (spinning, then yielding the CPU) before
/// parking: a task that arrives within a few microseconds then costs no syscall on
/// either side. Zero under loom, where the handshake itself is what is checked.
const IDLE_LOOKS: u32 = if cfg!(loom) { 0 } else { 48 };
const IDLE_SPINS: u32 = 32;

/// Tasks that found the ring full, in arrival order.
#[derive(Default)]
struct Overflow {
    queue: VecDeque<Task>,
    closed: bool,
}

#[derive(Debug, Default)]
struct Counters {
    tasks_run: AtomicU64,
    pipe_wakeups: AtomicU64,
    spills: AtomicU64,
}

/// The part of a worker that producers share.
pub(crate) struct Worker {
    index: usize,
    ring: Arc<Ring<Task>>,
    /// Mirrors `overflow.queue.len()` so that the common path never takes the lock.
    /// While it is non-zero producers append to the overflow too, which keeps each
    /// producer's tasks in order (the worker runs the ring before the overflow).
    overflow_len: CachePadded<AtomicUsize>,
    overflow: Mutex<Overflow>,
    state: CachePadded<AtomicU8>,
    doorbell: Doorbell,
    counters: CachePadded<Counters>,
}

impl Worker {
    pub(crate) fn new(index: usize, ring_capacity: usize) -> std::io::Result<(Worker, Consumer<Task>)> {
        Worker::with_doorbell(index, ring_capacity, Doorbell::new()?)
    }

    /// A worker run by a driver thread ([`crate::Builder::driven`]): its doorbell's read
    /// end is non-blocking, for the driver's poll.
    pub(crate) fn driven(index: usize, ring_capacity: usize) -> std::io::Result<(Worker, Consumer<Task>)> {
        Worker::with_doorbell(index, ring_capacity, Doorbell::polled()?)
    }

    fn with_doorbell(
        index: usize,
        ring_capacity: usize,
        doorbell: Doorbell,
    ) -> std::io::Result<(Worker, Consumer<Task>)> {
        let (ring, consumer) = Ring::with_consumer(ring_capacity);
        let worker = Worker {
            index,
            ring,
            overflow_len: CachePadded(AtomicUsize::new(0)),
            overflow: Mutex::new(Overflow::default()),
            state: CachePadded(AtomicU8::new(RUNNING)),
            doorbell,
            counters: CachePadded(Counters::default()),
        };
        Ok((worker, consumer))
    }

    /// Queues `task` for this worker and wakes it if it sleeps.
    pub(crate) fn push(&self, task: Task) -> Result<(), PoolClosed<Task>> {
        let pushed = if self.overflow_len.load(Ordering::Acquire) == 0 {
            match self.ring.push(task) {
                Ok(()) => Ok(()),
                Err(PushError::Full(task)) => self.spill(task),
                Err(PushError::Closed(task)) => Err(PoolClosed(task)),
            }
        } else {
            self.spill(task)
        };
        if pushed.is_ok() {
            self.wake_if_parked();
        }
        pushed
    }

    fn spill(&self, task: Task) -> Result<(), PoolClosed<Task>> {
        let mut overflow = lock(&self.overflow);
        if overflow.closed {
            return Err(PoolClosed(task));
        }
        overflow.queue.push_back(task);
        self.overflow_len.store(overflow.queue.len(), Ordering::Release);
        self.counters.spills.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn wake_if_parked(&self) {
        fence(Ordering::SeqCst);
        if self.state.load(Ordering::Relaxed) != PARKED {
            return;
        }
        if self.state.compare_exchange(PARKED, NOTIFIED, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            self.counters.pipe_wakeups.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = self.doorbell.ring() {
                log::error!("async_pool: cannot wake worker {}: {e}", self.index);
            }
        }
    }

    /// Stops accepting tasks; what is queued still runs. The overflow closes first, so
    /// a worker that sees its ring closed knows the overflow is final too.
    pub(crate) fn close(&self) {
        lock(&self.overflow).closed = true;
        self.ring.close();
        self.wake_if_parked();
    }

    /// Whether the worker has announced it parks (it may still be re-checking its queues).
    pub(crate) fn is_parked(&self) -> bool {
        self.state.load(Ordering::Relaxed) != RUNNING
    }

    pub(crate) fn stats(&self) -> WorkerStats {
        WorkerStats {
            tasks_run: self.counters.tasks_run.load(Ordering::Relaxed),
            pipe_wakeups: self.counters.pipe_wakeups.load(Ordering::Relaxed),
            spills: self.counters.spills.load(Ordering::Relaxed),
        }
    }

    /// The worker thread's body: runs tasks until closed and drained.
    pub(crate) fn run(&self, consumer: &mut Consumer<Task>) {
        let mut busy_spins = 0u32;
        loop {
            let ring_closed = match consumer.pop() {
                Pop::Item(task) => {
                    busy_spins = 0;
                    self.execute(task);
                    continue;
                }
                Pop::Busy => {
                    // A producer was preempted between claiming a slot and filling it:
                    // spin briefly, then give it the CPU (it may share our core).
                    busy_spins += 1;
                    if busy_spins < IDLE_SPINS {
                        hint::spin_loop();
                    } else {
                        thread::yield_now();
                    }
                    continue;
                }
                Pop::Empty => false,
                Pop::Closed => true,
            };
            if self.drain_overflow() {
                continue;
            }
            if ring_closed && lock(&self.overflow).queue.is_empty() {
                return;
            }
            if !self.work_arrives_soon() {
                self.park();
            }
        }
    }

    /// A driven worker's turn ([`crate::Pool::drive`]): runs up to `budget` queued
    /// tasks on the calling thread; true if tasks are left.
    pub(crate) fn run_some(&self, consumer: &mut Consumer<Task>, budget: usize) -> bool {
        let mut ran = 0;
        let mut busy_spins = 0u32;
        while ran < budget {
            match consumer.pop() {
                Pop::Item(task) => {
                    busy_spins = 0;
                    self.execute(task);
                    ran += 1;
                }
                Pop::Busy => {
                    // A producer on another thread is between claiming a slot and
                    // filling it: a few spins, then come back on the next turn rather
                    // than hold up the driver's other work.
                    busy_spins += 1;
                    if busy_spins >= IDLE_SPINS {
                        return true;
                    }
                    hint::spin_loop();
                }
                Pop::Empty | Pop::Closed => {
                    if !self.drain_overflow() {
                        return false;
                    }
                }
            }
        }
        self.has_work()
    }

    /// The worker (or a driven worker's driver, about to block in its `epoll_wait`)
    /// announces it parks, so that producers ring the doorbell from now on. False if
    /// work is queued: it must not block then. See the module doc for the handshake.
    pub(crate) fn prepare_wait(&self) -> bool {
        self.state.store(PARKED, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if self.has_work() {
            self.state.store(RUNNING, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// The wait is over: producers need not ring any more.
    pub(crate) fn end_wait(&self) {
        // A NOTIFIED overwritten here left a byte in the pipe: the next park returns at
        // once (a driver's poll reports it and `clear_doorbell` swallows it), one
        // spurious turn, never a lost task.
        self.state.store(RUNNING, Ordering::SeqCst);
    }

    pub(crate) fn doorbell(&self) -> &Doorbell {
        &self.doorbell
    }

    /// Runs every spilled task; `false` if there was none.
    fn drain_overflow(&self) -> bool {
        if self.overflow_len.load(Ordering::Acquire) == 0 {
            return false;
        }
        if !self.ring.is_empty() {
            // A producer filled the ring and then spilled after our last pop: its
            // ring tasks are older than its spilled ones (the Acquire above makes them
            // visible), so run the ring first.
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

    pub(crate) fn has_work(&self) -> bool {
        !self.ring.is_empty() || self.overflow_len.load(Ordering::SeqCst) > 0
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

    /// Blocks on the doorbell until a task is queued (or the ring closes): a worker
    /// thread with nothing to do, or a driven worker's driver ([`crate::Pool::park_driver`]).
    pub(crate) fn park(&self) {
        if self.prepare_wait() && !self.ring.is_closed() {
            if let Err(e) = self.doorbell.wait() {
                log::error!("async_pool: worker {} cannot read its pipe: {e}", self.index);
            }
        }
        self.end_wait();
    }

    fn execute(&self, task: Task) {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(task)) {
            log::error!("async_pool: a task panicked on worker {}: {}", self.index, panic_message(&*payload));
        }
        // Only this thread writes the counter: a plain load and store, no locked add.
        let run = &self.counters.tasks_run;
        run.store(run.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(non-string panic payload)"
    }
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("index", &self.index)
            .field("ring", &self.ring)
            .field("state", &self.state.load(Ordering::Relaxed))
            .field("stats", &self.stats())
            .finish()
    }
}
