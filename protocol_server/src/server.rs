//! [`Server`]: the running server's handle, with the group operations and timers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};

use async_pool::Pool;
use reactor::{ConnId, TimerId};

use crate::table::ConnTable;
use crate::timeout::Wheel;
use crate::{lock, Conn, Error};

/// Settings every connection reads.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) timeout: Duration,
    pub(crate) max_output: usize,
    pub(crate) busy_msg: Option<Vec<u8>>,
    pub(crate) grace: Duration,
}

pub(crate) type Hook = Arc<dyn Fn(&Server) + Send + Sync>;

pub(crate) struct Inner {
    pub(crate) reactor: reactor::Handle,
    pub(crate) pool: Arc<Pool>,
    pub(crate) conns: RwLock<ConnTable>,
    pub(crate) settings: Settings,
    pub(crate) epoch: Instant,
    pub(crate) addrs: OnceLock<Vec<SocketAddr>>,
    pub(crate) root_pid: u32,
    pub(crate) capacity: usize,
    pub(crate) wheel: Mutex<Wheel>,
    /// Protocols of sockets handed to `Server::attach`, by tag, until the reactor
    /// reports the socket opened or refused.
    pub(crate) attached: Mutex<HashMap<u64, Box<dyn crate::Protocol>>>,
    pub(crate) next_attach: std::sync::atomic::AtomicU64,
    pub(crate) on_tick: Option<Hook>,
    pub(crate) on_idle: Option<Hook>,
    pub(crate) tick_busy: AtomicBool,
    pub(crate) idle_busy: AtomicBool,
}

/// A running server: cheap to clone, usable from any thread and from hooks.
#[derive(Clone)]
pub struct Server(pub(crate) Arc<Inner>);

/// Every server of this process, for [`Server::stop_all`].
static SERVERS: Mutex<Vec<Weak<Inner>>> = Mutex::new(Vec::new());

impl Server {
    pub(crate) fn register(&self) {
        let mut all = lock(&SERVERS);
        all.retain(|s| s.strong_count() > 0);
        all.push(Arc::downgrade(&self.0));
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.0.settings
    }

    pub(crate) fn reactor(&self) -> &reactor::Handle {
        &self.0.reactor
    }

    pub(crate) fn pool(&self) -> &Arc<Pool> {
        &self.0.pool
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.0.epoch.elapsed().as_millis() as u64
    }

    /// The addresses the server listens on, in `listen` order (ports resolved).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        self.0.addrs.get().map_or(&[], Vec::as_slice)
    }

    /// The pid of the root process (the one that forked the workers with
    /// `processes(n)`; this process otherwise).
    pub fn root_pid(&self) -> u32 {
        self.0.root_pid
    }

    /// The connection limit of this process (from [`crate::capacity`] unless set).
    pub fn capacity(&self) -> usize {
        self.0.capacity
    }

    /// Counters of the worker pool (tasks run, pipe wake-ups, spills per worker).
    pub fn pool_stats(&self) -> async_pool::PoolStats {
        self.0.pool.stats()
    }

    /// Worker threads running hooks.
    pub fn threads(&self) -> usize {
        self.0.pool.threads()
    }

    /// Starts an orderly shutdown, as SIGTERM does. In a worker process of
    /// `processes(n)` it asks the root, which stops every worker.
    pub fn stop(&self) {
        if self.0.root_pid != std::process::id()
            && crate::sys::kill(self.0.root_pid, signal_hook::consts::SIGTERM).is_ok()
        {
            return;
        }
        if self.0.reactor.shutdown().is_err() {
            log::debug!("server already stopped");
        }
    }

    /// Stops every server of this process.
    pub fn stop_all() {
        let all: Vec<_> = lock(&SERVERS).iter().filter_map(Weak::upgrade).collect();
        all.into_iter().for_each(|inner| Server(inner).stop());
    }

    /// The open connection with this id, if it still exists.
    pub fn conn(&self, id: ConnId) -> Option<Conn> {
        self.read_conns().get(id).cloned()
    }

    fn read_conns(&self) -> std::sync::RwLockReadGuard<'_, ConnTable> {
        self.0.conns.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn write_conns(&self) -> std::sync::RwLockWriteGuard<'_, ConnTable> {
        self.0.conns.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Connections of `service` (`None`: all).
    pub fn count(&self, service: Option<&str>) -> usize {
        self.read_conns().iter().filter(|c| service.is_none_or(|s| c.service() == s)).count()
    }

    fn targets(&self, origin: Option<ConnId>, service: Option<&str>) -> Vec<Conn> {
        let conns = self.read_conns();
        let wanted = |c: &&Conn| Some(c.id()) != origin && service.is_none_or(|s| c.service() == s);
        conns.iter().filter(wanted).cloned().collect()
    }

    /// Runs `task` on every open connection of `service` (`None`: all) except
    /// `origin`, each on its connection's worker (so never during one of its hooks),
    /// then `on_finish` once, after the last. Returns at once.
    pub fn each(
        &self,
        origin: Option<ConnId>,
        service: Option<&str>,
        task: impl Fn(&Conn) + Send + Sync + 'static,
        on_finish: impl FnOnce() + Send + 'static,
    ) {
        let targets = self.targets(origin, service);
        let countdown = Countdown::new(on_finish);
        let task = Arc::new(task);
        for conn in targets {
            let (task, done) = (Arc::clone(&task), Arc::clone(&countdown));
            conn.schedule(move |c| {
                let _done = done; // counts down even if the task panics or is dropped
                if c.is_open() {
                    task(c);
                }
            });
        }
        drop(countdown); // ours: on_finish also waits for the loop above
    }

    /// [`Server::each`], returning once every task ran (or was dropped because the
    /// server stopped). Not from a hook or task: a worker waiting for other workers,
    /// which may be waiting for it, would deadlock; there use `each` and its
    /// `on_finish`. Returns [`Error::OnWorker`] then.
    pub fn each_block(
        &self,
        origin: Option<ConnId>,
        service: Option<&str>,
        task: impl Fn(&Conn) + Send + Sync + 'static,
    ) -> Result<(), Error> {
        if self.0.pool.is_worker_thread() {
            return Err(Error::OnWorker);
        }
        let (tx, rx) = mpsc::channel::<()>();
        // Every task holds a sender; once the last is dropped, run or not, recv returns.
        let task = Arc::new(task);
        for conn in self.targets(origin, service) {
            let (task, tx) = (Arc::clone(&task), tx.clone());
            conn.schedule(move |c| {
                let _tx = tx;
                if c.is_open() {
                    task(c);
                }
            });
        }
        drop(tx);
        let _ = rx.recv();
        Ok(())
    }

    /// Runs `task` on connection `id` (on its worker, between its hooks), or
    /// `fallback` (on a worker) if that connection is gone, closing, or never existed.
    pub fn fd_task(
        &self,
        id: ConnId,
        task: impl FnOnce(&Conn) + Send + 'static,
        fallback: impl FnOnce() + Send + 'static,
    ) {
        match self.conn(id) {
            Some(conn) => conn.schedule(move |c| if c.is_open() { task(c) } else { fallback() }),
            None => {
                if let Err(refused) = self.0.pool.run(fallback) {
                    (refused.0)();
                }
            }
        }
    }

    /// Serves an already-connected socket (from a client connection, a socket pair,
    /// an inherited descriptor) with `protocol`, as if accepted: the original `attach`.
    pub fn attach(
        &self,
        stream: std::net::TcpStream,
        protocol: Box<dyn crate::Protocol>,
    ) -> Result<(), Error> {
        let tag = self.0.next_attach.fetch_add(1, Ordering::Relaxed);
        lock(&self.0.attached).insert(tag, protocol);
        let sent = self.0.reactor.attach(stream, tag);
        if sent.is_err() {
            lock(&self.0.attached).remove(&tag);
        }
        Ok(sent?)
    }

    /// Runs `task` on a worker as soon as one is free (the original `run_async`).
    pub fn run(&self, task: impl FnOnce() + Send + 'static) -> Result<(), Error> {
        self.0.pool.run(task).map_err(|_| Error::Reactor(reactor::Error::Stopped))
    }

    /// Runs `task` on a worker once, no earlier than `delay` from now.
    pub fn run_after(&self, delay: Duration, task: impl FnOnce() + Send + 'static) -> Result<TimerId, Error> {
        Ok(self.0.reactor.run_after(delay, task)?)
    }

    /// Runs `task` on a worker every `interval`, `repetitions` times (0: until
    /// cancelled or the server stops). Runs never overlap: a tick that finds the
    /// previous run still going is skipped, and `repetitions` counts runs.
    pub fn run_every(
        &self,
        interval: Duration,
        repetitions: u64,
        task: impl Fn() + Send + Sync + 'static,
    ) -> Result<TimerId, Error> {
        Ok(self.0.reactor.run_every(interval, repetitions, task)?)
    }

    /// Cancels a timer from `run_after` or `run_every`.
    pub fn cancel(&self, timer: TimerId) -> Result<(), Error> {
        Ok(self.0.reactor.cancel(timer)?)
    }

    /// Files the connection's current deadline in the timeout wheel (once per tick:
    /// its live entry is the one whose tick it remembers).
    pub(crate) fn watch_timeout(&self, conn: &Conn) {
        let Some(deadline) = conn.deadline_ms() else { return };
        let mut wheel = lock(&self.0.wheel);
        let tick = wheel.tick_of(deadline);
        if conn.0.wheel_tick.swap(tick, Ordering::Relaxed) != tick {
            wheel.insert_at(conn.id(), tick);
        }
    }

    /// The wheel's tick task: act on expired connections, refile the others.
    pub(crate) fn check_timeouts(&self) {
        let now = self.now_ms();
        let Ok(due) = self.0.wheel.try_lock().map(|mut w| w.due(now)) else { return };
        for (id, tick) in due {
            let Some(conn) = self.conn(id) else { continue };
            if conn.0.wheel_tick.compare_exchange(tick, 0, Ordering::Relaxed, Ordering::Relaxed).is_err() {
                continue; // a newer entry is live
            }
            let Some(deadline) = conn.deadline_ms() else { continue };
            // Strictly past: timestamps are whole milliseconds, rounded down.
            if deadline < now {
                conn.expired(now);
            }
            self.watch_timeout(&conn);
        }
    }

    /// Runs `hook` on the pool unless its previous run is still queued or running,
    /// so a fast reactor cannot flood the pool with ticks.
    pub(crate) fn run_hook(&self, hook: &Option<Hook>, busy: fn(&Inner) -> &AtomicBool) {
        let Some(hook) = hook.clone() else { return };
        if busy(&self.0).swap(true, Ordering::AcqRel) {
            return;
        }
        let server = self.clone();
        let task = move || {
            hook(&server);
            busy(&server.0).store(false, Ordering::Release);
        };
        if self.0.pool.run(task).is_err() {
            busy(&self.0).store(false, Ordering::Release);
        }
    }
}

/// Runs `on_finish` when the last reference is dropped: each `each` task holds one
/// (so a panicking or dropped task still counts), and so does the caller's loop.
struct Countdown {
    on_finish: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl Countdown {
    fn new(on_finish: impl FnOnce() + Send + 'static) -> Arc<Countdown> {
        Arc::new(Countdown { on_finish: Mutex::new(Some(Box::new(on_finish))) })
    }
}

impl Drop for Countdown {
    fn drop(&mut self) {
        if let Some(f) = lock(&self.on_finish).take() {
            f();
        }
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addrs", &self.local_addrs())
            .field("threads", &self.threads())
            .field("connections", &self.count(None))
            .finish_non_exhaustive()
    }
}
