//! `async_pool`: the lock-less thread pool under the server framework.
//!
//! In the picture of `ARCHITECTURE.md` (at the repository root) this is the box between
//! the reactor and the protocol hooks: the reactor (one thread, `mio`) finds ready
//! connections and due timers and hands them here as tasks; N workers run them.
//!
//! - Each worker owns a bounded lock-free [`ring::Ring`] and a pipe it sleeps on.
//! - [`Pool::run`] picks a worker round-robin; [`Pool::run_on`] targets one (the server
//!   pins a connection to a worker that way, which keeps its hooks in order).
//! - A producer writes to the pipe **only** when the worker has announced it is
//!   parked, so under load a task costs no syscall ([`PoolStats`] shows it).
//! - A full ring spills to an overflow list the worker drains after its ring: no task
//!   is dropped and no producer blocks. Per producer, tasks for one worker run in the
//!   order they were queued.
//! - [`Pool::signal`] stops intake, [`Pool::wait`] drains and joins, [`Pool::finish`]
//!   does both, and so does dropping the pool. A panicking task is logged and contained.
//! - A *driven* pool ([`Builder::driven`]) has one worker and no thread: an event loop
//!   polls its doorbell and runs its tasks with [`Pool::drive`] between polls (the
//!   same park/wake handshake, with the loop's `epoll_wait` in place of the pipe read).
//!
//! ```
//! # if async_pool::MODEL_CHECKING { return; } // loom primitives only work inside loom::model
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//!
//! let pool = async_pool::Pool::new(2).expect("two workers start");
//! let done = Arc::new(AtomicUsize::new(0));
//! for _ in 0..100 {
//!     let done = Arc::clone(&done);
//!     pool.run(move || {
//!         done.fetch_add(1, Ordering::Relaxed);
//!     })
//!     .expect("the pool is open");
//! }
//! pool.finish();
//! assert_eq!(done.load(Ordering::Relaxed), 100);
//! ```
//!
//! ### Model checking
//! `RUSTFLAGS="--cfg loom" cargo test -p async_pool --release --test loom` runs the
//! same code with `loom`'s atomics, threads and a loom doorbell in place of the pipe.
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod ring;
mod sync;
mod sys;
mod wake;
mod worker;

use std::fmt;
use std::io;

use sync::{lock, thread, AtomicBool, AtomicUsize, CachePadded, Mutex, Ordering};
use worker::Worker;

/// Whether this build is the `--cfg loom` model-checking build (doc examples skip
/// themselves there: loom's primitives only work inside `loom::model`).
#[doc(hidden)]
pub const MODEL_CHECKING: bool = cfg!(loom);

/// What a worker runs: a boxed closure. Two words, moved through the ring by value;
/// a closure that captures nothing costs no allocation.
pub type Task = Box<dyn FnOnce() + Send + 'static>;

/// Names one worker of a pool, for [`Pool::run_on`]. Out-of-range ids wrap around.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId(pub u16);

/// The pool no longer accepts tasks ([`Pool::signal`] was called); the task is handed back.
pub struct PoolClosed<T>(pub T);

impl<T> fmt::Debug for PoolClosed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PoolClosed(..)")
    }
}

impl<T> fmt::Display for PoolClosed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the thread pool is shutting down and accepts no more tasks")
    }
}

impl<T> std::error::Error for PoolClosed<T> {}

/// Counters of one worker since the pool started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Tasks this worker has run (panicked ones included).
    pub tasks_run: u64,
    /// Bytes producers wrote to this worker's pipe to wake it.
    pub pipe_wakeups: u64,
    /// Tasks that went to the overflow list because the ring was full (or because
    /// earlier tasks were already waiting there).
    pub spills: u64,
}

/// A snapshot of every worker's counters, from [`Pool::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// One entry per worker, in [`WorkerId`] order.
    pub workers: Vec<WorkerStats>,
}

impl PoolStats {
    /// The counters summed over all workers.
    pub fn total(&self) -> WorkerStats {
        self.workers.iter().fold(WorkerStats::default(), |a, w| WorkerStats {
            tasks_run: a.tasks_run + w.tasks_run,
            pipe_wakeups: a.pipe_wakeups + w.pipe_wakeups,
            spills: a.spills + w.spills,
        })
    }

    /// Pipe writes per task run: near 0 under sustained load, up to 1 when idle.
    pub fn wakeups_per_task(&self) -> f64 {
        let total = self.total();
        total.pipe_wakeups as f64 / total.tasks_run.max(1) as f64
    }
}

/// Settings for a [`Pool`].
#[derive(Debug, Clone)]
pub struct Builder {
    threads: usize,
    ring_capacity: usize,
    name: String,
    driven: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Builder { threads: 0, ring_capacity: 1024, name: "async_pool".into(), driven: false }
    }
}

impl Builder {
    /// Worker threads; 0 (the default) means one per available core.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Tasks each worker's ring holds before spilling (rounded up to a power of two,
    /// at least 2; default 1024).
    pub fn ring_capacity(mut self, capacity: usize) -> Self {
        self.ring_capacity = capacity;
        self
    }

    /// Thread name prefix; workers are called `name-0`, `name-1`, ...
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// No worker thread: one worker whose tasks run on the thread that calls
    /// [`Pool::drive`] (default false; `threads` is then ignored). An event loop drives
    /// it between its polls, with the doorbell ([`Pool::doorbell_fd`]) among the
    /// descriptors it polls: tasks then run on the loop's own thread, with no hand-off
    /// between threads. The thread that builds the pool counts as the driver until
    /// another one drives it.
    pub fn driven(mut self, on: bool) -> Self {
        self.driven = on;
        self
    }

    /// Starts the workers. Fails if a pipe cannot be made or a thread cannot start;
    /// workers already started are then finished before returning.
    pub fn build(self) -> io::Result<Pool> {
        let threads = match (self.driven, self.threads) {
            (true, _) => 1,
            (false, 0) => std::thread::available_parallelism().map_or(1, |n| n.get()),
            (false, n) => n,
        }
        .min(usize::from(u16::MAX));
        let mut workers = Vec::with_capacity(threads);
        let mut consumers = Vec::with_capacity(threads);
        for index in 0..threads {
            let (worker, consumer) = if self.driven {
                Worker::driven(index, self.ring_capacity)?
            } else {
                Worker::new(index, self.ring_capacity)?
            };
            workers.push(worker);
            consumers.push(consumer);
        }
        let shared = sync::Arc::new(Shared {
            workers: workers.into_boxed_slice(),
            next: CachePadded(AtomicUsize::new(0)),
            closed: AtomicBool::new(false),
        });
        if self.driven {
            let mut pool = Pool::assemble(shared, Vec::new());
            pool.driver = Some(Driver {
                consumer: Mutex::new(consumers.pop().expect("a driven pool made its one worker")),
                thread: Mutex::new(thread::current().id()),
                driving: AtomicBool::new(false),
            });
            return Ok(pool);
        }
        let mut handles = Vec::with_capacity(threads);
        for (index, mut consumer) in consumers.into_iter().enumerate() {
            let mine = sync::Arc::clone(&shared);
            let spawned = spawn(format!("{}-{index}", self.name), move || {
                mine.workers[index].run(&mut consumer);
            });
            match spawned {
                Ok(handle) => handles.push(handle),
                Err(e) => {
                    // Finish the workers already running, then report.
                    drop(Pool::assemble(shared, handles));
                    return Err(e);
                }
            }
        }
        Ok(Pool::assemble(shared, handles))
    }
}

#[cfg(not(loom))]
fn spawn(name: String, body: impl FnOnce() + Send + 'static) -> io::Result<thread::JoinHandle<()>> {
    thread::Builder::new().name(name).spawn(body)
}

#[cfg(loom)]
fn spawn(_name: String, body: impl FnOnce() + Send + 'static) -> io::Result<thread::JoinHandle<()>> {
    Ok(thread::spawn(body))
}

struct Shared {
    workers: Box<[Worker]>,
    /// Round-robin cursor for [`Pool::run`].
    next: CachePadded<AtomicUsize>,
    closed: AtomicBool,
}

/// A fixed set of worker threads, each with its own lock-free ring and pipe.
pub struct Pool {
    shared: sync::Arc<Shared>,
    threads: Mutex<Vec<thread::JoinHandle<()>>>,
    worker_threads: Vec<thread::ThreadId>,
    /// Set for a driven pool ([`Builder::driven`]): its one worker has no thread.
    driver: Option<Driver>,
}

/// The consuming side of a driven pool's worker, used by whoever drives it.
struct Driver {
    /// Only the driving thread takes it, once per turn: never contended in a server.
    consumer: Mutex<ring::Consumer<Task>>,
    /// The thread that drove last (or built the pool): it counts as the worker.
    thread: Mutex<thread::ThreadId>,
    /// True while a turn runs tasks: `wait` called from one of them must not drive.
    driving: AtomicBool,
}

impl Pool {
    fn assemble(shared: sync::Arc<Shared>, handles: Vec<thread::JoinHandle<()>>) -> Pool {
        let worker_threads = handles.iter().map(|h| h.thread().id()).collect();
        Pool { shared, threads: Mutex::new(handles), worker_threads, driver: None }
    }

    /// Whether this pool has no worker thread and runs its tasks in [`Pool::drive`].
    pub fn is_driven(&self) -> bool {
        self.driver.is_some()
    }

    /// A driven pool's one worker; `None` for a pool with threads.
    fn driven_worker(&self) -> Option<&Worker> {
        self.driver.as_ref().map(|_| &self.shared.workers[0])
    }

    /// A driven pool's turn: runs up to `budget` queued tasks on the calling thread
    /// and returns whether tasks are left (then come back soon, without blocking).
    /// Does nothing and returns false on a pool with worker threads, or while a turn
    /// is already running (called from one of its tasks, or from a second thread).
    pub fn drive(&self, budget: usize) -> bool {
        let Some(driver) = &self.driver else { return false };
        if driver.driving.swap(true, Ordering::Acquire) {
            return false;
        }
        *lock(&driver.thread) = thread::current().id();
        let more = self.shared.workers[0].run_some(&mut lock(&driver.consumer), budget);
        driver.driving.store(false, Ordering::Release);
        more
    }

    /// A driven pool's driver is about to block in its own poll (which watches
    /// [`Pool::doorbell_fd`]): from now on producers ring the doorbell. Returns false
    /// if tasks are queued: do not block then (poll with a zero timeout). Call
    /// [`Pool::end_wait`] when the poll returns. Always true on a pool with threads.
    pub fn prepare_wait(&self) -> bool {
        self.driven_worker().is_none_or(Worker::prepare_wait)
    }

    /// The driver's poll returned (see [`Pool::prepare_wait`]).
    pub fn end_wait(&self) {
        self.driven_worker().inspect(|w| w.end_wait());
    }

    /// Blocks the calling thread until a task is queued for a driven pool, for a
    /// driver that has nothing else to poll. Returns at once on a pool with threads.
    pub fn park_driver(&self) {
        self.driven_worker().inspect(|w| w.park());
    }

    /// The descriptor a driven pool's driver polls for readability: it becomes
    /// readable when a producer queues a task while the driver waits. After it is
    /// reported, [`Pool::clear_doorbell`]. `None` on a pool with threads.
    #[cfg(not(loom))]
    pub fn doorbell_fd(&self) -> Option<sys::PollFd<'_>> {
        self.driven_worker().map(|w| w.doorbell().fd())
    }

    /// Swallows the doorbell's rings (a driven pool, after its descriptor was
    /// reported readable), so that the next ring is a new edge.
    pub fn clear_doorbell(&self) {
        if let Err(e) = self.driven_worker().map_or(Ok(()), |w| w.doorbell().clear()) {
            log::error!("async_pool: cannot read the driven worker's pipe: {e}");
        }
    }

    /// Starts `threads` workers (0: one per core) with default settings.
    pub fn new(threads: usize) -> io::Result<Pool> {
        Builder::default().threads(threads).build()
    }

    /// Settings beyond the thread count.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// How many workers run.
    pub fn threads(&self) -> usize {
        self.shared.workers.len()
    }

    /// Queues `task` on the next worker in round-robin order. Never blocks.
    pub fn run(&self, task: impl FnOnce() + Send + 'static) -> Result<(), PoolClosed<Task>> {
        self.run_boxed(Box::new(task))
    }

    /// [`Pool::run`] for a task that is boxed already (avoids boxing it twice).
    pub fn run_boxed(&self, task: Task) -> Result<(), PoolClosed<Task>> {
        let n = self.shared.next.fetch_add(1, Ordering::Relaxed);
        self.shared.workers[n % self.threads()].push(task)
    }

    /// Queues `task` on one given worker (its index is taken modulo [`Pool::threads`]).
    /// Tasks one thread queues on one worker run in the order they were queued.
    pub fn run_on(
        &self,
        worker: WorkerId,
        task: impl FnOnce() + Send + 'static,
    ) -> Result<(), PoolClosed<Task>> {
        self.run_boxed_on(worker, Box::new(task))
    }

    /// [`Pool::run_on`] for a task that is boxed already.
    pub fn run_boxed_on(&self, worker: WorkerId, task: Task) -> Result<(), PoolClosed<Task>> {
        self.shared.workers[usize::from(worker.0) % self.threads()].push(task)
    }

    /// Stops accepting tasks: later [`Pool::run`] calls hand their task back. Tasks
    /// already queued still run. Idempotent.
    pub fn signal(&self) {
        if !self.shared.closed.swap(true, Ordering::SeqCst) {
            self.shared.workers.iter().for_each(Worker::close);
        }
    }

    /// Whether [`Pool::signal`] has been called.
    pub fn is_signaled(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }

    /// Blocks until [`Pool::signal`] has been called (by anyone), every queued task
    /// has run, and the workers have exited. Several threads may wait at once.
    ///
    /// Called from one of this pool's own tasks it returns at once: a worker cannot
    /// wait for itself (this is what makes dropping the last `Arc<Pool>` inside a task
    /// safe; the workers then exit on their own once drained).
    pub fn wait(&self) {
        if let Some(driver) = &self.driver {
            // No thread to join: the waiting thread runs what is left, unless it is
            // inside one of the tasks (it cannot wait for itself).
            if driver.driving.load(Ordering::Acquire) && self.is_worker_thread() {
                log::debug!("async_pool: wait() called from a driven task; not waiting for itself");
                return;
            }
            loop {
                let more = self.drive(usize::MAX);
                if !more && self.is_signaled() && !self.shared.workers[0].has_work() {
                    return;
                }
                if !more {
                    self.park_driver();
                }
            }
        }
        if self.is_worker_thread() {
            log::debug!("async_pool: wait() called from a worker; not waiting for itself");
            return;
        }
        // Joining under the lock makes a second waiter block until the first is done.
        let mut threads = lock(&self.threads);
        for handle in threads.drain(..) {
            if handle.join().is_err() {
                log::error!("async_pool: a worker thread panicked outside a task");
            }
        }
    }

    /// [`Pool::signal`] then [`Pool::wait`].
    pub fn finish(&self) {
        self.signal();
        self.wait();
    }

    /// Whether the calling thread is one of this pool's workers (a task of this pool).
    pub fn is_worker_thread(&self) -> bool {
        self.current_worker().is_some()
    }

    /// The worker running the calling thread, if it is one of this pool's.
    pub fn current_worker(&self) -> Option<WorkerId> {
        let me = thread::current().id();
        if let Some(driver) = &self.driver {
            return (*lock(&driver.thread) == me).then_some(WorkerId(0));
        }
        let index = self.worker_threads.iter().position(|t| *t == me)?;
        Some(WorkerId(u16::try_from(index).expect("at most u16::MAX workers are started")))
    }

    /// How many workers are parked (idle, blocked on their pipe or about to be) at this
    /// instant: a snapshot for monitoring; the next task may change it.
    pub fn parked_workers(&self) -> usize {
        self.shared.workers.iter().filter(|w| w.is_parked()).count()
    }

    /// Counters per worker.
    pub fn stats(&self) -> PoolStats {
        PoolStats { workers: self.shared.workers.iter().map(Worker::stats).collect() }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.finish();
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("threads", &self.threads())
            .field("signaled", &self.is_signaled())
            .field("workers", &self.shared.workers)
            .finish()
    }
}
