//! The run loop: one thread, one `mio::Poll`, edge-triggered everything.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use async_pool::Pool;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use crate::conns::Conns;
use crate::handle::{Command, Shared};
use crate::id::{Target, POOL, SIGNALS, WAKER};
use crate::sys::SignalClaim;
use crate::timer::Timers;
use crate::{ConnId, Dispatch, Error, Handle, ListenerId, Origin, Ready};

/// After `accept` fails for lack of descriptors or memory, wait this long before
/// trying again (the listener stays readable, but edge-triggered: no new event comes).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Tasks a driven pool runs per loop turn before the reactor polls again (without
/// blocking, if tasks are left): new events are not kept waiting behind a long queue.
const DRIVE_BUDGET: usize = 1024;

/// Slots are 32-bit and tokens reserve the top half of that range.
const MAX_CONNECTIONS: usize = (1 << 31) - 1;

/// Settings for a [`Reactor`].
#[derive(Debug, Clone)]
pub struct Builder {
    max_connections: Option<usize>,
    signals: bool,
    grace: Duration,
    nodelay: bool,
    events: usize,
    backlog: i32,
    wait_when_full: bool,
    batch_scheduling: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            max_connections: None,
            signals: true,
            grace: Duration::from_secs(5),
            nodelay: true,
            events: 1024,
            backlog: 4096,
            wait_when_full: false,
            batch_scheduling: true,
        }
    }
}

impl Builder {
    /// Default settings.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Connections held at once; past it, new ones go to [`Dispatch::on_rejected`].
    /// Default: the open-file limit minus 64 descriptors kept for files and pipes.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = Some(n.min(MAX_CONNECTIONS));
        self
    }

    /// At `max_connections`, stop accepting and leave new connections in the listen
    /// queue until one closes, instead of handing them to [`Dispatch::on_rejected`]
    /// (default false). For processes sharing one listener: a full process then lets
    /// a sibling with room take the connection, as nginx does when its
    /// `worker_connections` are used up.
    pub fn wait_when_full(mut self, on: bool) -> Self {
        self.wait_when_full = on;
        self
    }

    /// Whether SIGINT and SIGTERM start a shutdown (default true). Every reactor of a
    /// process that asks for it receives the signals.
    pub fn signals(mut self, on: bool) -> Self {
        self.signals = on;
        self
    }

    /// How long a shutdown waits for the layer above to close its connections before
    /// the reactor forgets the rest (default 5 s).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Sets `TCP_NODELAY` on accepted connections (default true: responses are
    /// written whole, Nagle would only delay them).
    pub fn nodelay(mut self, on: bool) -> Self {
        self.nodelay = on;
        self
    }

    /// The listen queue of sockets bound by [`Reactor::listen`] (default 4096; the
    /// kernel caps it at `net.core.somaxconn`).
    pub fn backlog(mut self, backlog: u16) -> Self {
        self.backlog = i32::from(backlog);
        self
    }

    /// Runs the loop under `SCHED_BATCH` (default true): an arriving event does not
    /// preempt a worker thread that shares the reactor's core; the reactor collects
    /// the events of the meantime when the worker blocks, yields or ends its slice.
    /// This halves the context switches of a loaded server on one core (one per batch
    /// of ready connections instead of one per connection) for a delay of at most one
    /// scheduler slice (~1 ms) while every core is busy; an idle core runs the reactor
    /// at once as before. The thread's own policy is restored when `run` returns.
    pub fn batch_scheduling(mut self, on: bool) -> Self {
        self.batch_scheduling = on;
        self
    }

    /// Events taken from the kernel per `epoll_wait` (default 1024).
    pub fn events(mut self, n: usize) -> Self {
        self.events = n.max(1);
        self
    }

    /// Makes the reactor. `pool` runs due timers; `dispatch` hears about connections.
    pub fn build<D: Dispatch>(self, pool: Arc<Pool>, dispatch: D) -> Result<Reactor<D>, Error> {
        self.build_with(pool, |_| dispatch)
    }

    /// [`Builder::build`] for a dispatcher that needs the reactor's [`Handle`] (to close
    /// connections or set timers from its tasks): `make` receives it.
    pub fn build_with<D: Dispatch>(
        self,
        pool: Arc<Pool>,
        make: impl FnOnce(Handle) -> D,
    ) -> Result<Reactor<D>, Error> {
        crate::sys::ignore_sigpipe();
        let poll = Poll::new().map_err(Error::io("creating the epoll instance"))?;
        let waker =
            mio::Waker::new(poll.registry(), WAKER).map_err(Error::io("creating the reactor's waker"))?;
        let signals = if self.signals { Some(register_signals(&poll)?) } else { None };
        if let Some(fd) = pool.doorbell_fd() {
            crate::sys::register(poll.registry(), &fd, POOL, Interest::READABLE)
                .map_err(Error::io("watching the driven pool's doorbell"))?;
        }
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared::new(tx, waker));
        let dispatch = make(Handle { shared: Arc::clone(&shared) });
        let max_connections = self.max_connections.unwrap_or_else(default_max_connections);
        Ok(Reactor {
            events: Events::with_capacity(self.events),
            poll,
            listeners: Vec::new(),
            conns: Conns::default(),
            timers: Timers::default(),
            rx,
            shared,
            dispatch,
            pool,
            signals,
            settings: self,
            max_connections,
            accept_retry: None,
            accept_paused: false,
            shutdown: None,
        })
    }
}

fn register_signals(poll: &Poll) -> Result<(Signals, SignalClaim), Error> {
    let mut signals =
        Signals::new([SIGINT, SIGTERM]).map_err(Error::io("installing SIGINT/SIGTERM handlers"))?;
    poll.registry()
        .register(&mut signals, SIGNALS, Interest::READABLE)
        .map_err(Error::io("watching the signal pipe"))?;
    Ok((signals, crate::sys::claim_signals()))
}

fn default_max_connections() -> usize {
    match crate::fd_limit() {
        Ok(limit) => (limit.saturating_sub(64) as usize).clamp(1, MAX_CONNECTIONS),
        Err(_) => 1024,
    }
}

struct Listener {
    socket: TcpListener,
    addr: SocketAddr,
}

/// An epoll reactor: accepts on its listeners, watches connections edge-triggered,
/// runs a timer heap, and reports everything to a [`Dispatch`]. It runs no protocol
/// code and never blocks on anything but `epoll_wait`.
pub struct Reactor<D: Dispatch> {
    poll: Poll,
    events: Events,
    listeners: Vec<Option<Listener>>,
    conns: Conns,
    timers: Timers,
    rx: Receiver<Command>,
    shared: Arc<Shared>,
    dispatch: D,
    pool: Arc<Pool>,
    /// The signal pipe, and the claim that makes SIGINT/SIGTERM ours until we drop.
    signals: Option<(Signals, SignalClaim)>,
    settings: Builder,
    max_connections: usize,
    /// When to try `accept` again after running out of descriptors.
    accept_retry: Option<Instant>,
    /// Full, and told to wait: accepting resumes when a connection closes.
    accept_paused: bool,
    /// Set once shutdown began: the end of the grace period.
    shutdown: Option<Instant>,
}

impl<D: Dispatch> Reactor<D> {
    /// Binds `addr` (port 0 picks a free port; see [`Reactor::local_addr`]) and accepts on
    /// it once running. The error names the address.
    pub fn listen(&mut self, addr: SocketAddr) -> Result<ListenerId, Error> {
        let socket = crate::sys::bind_listener(addr, self.settings.backlog)
            .map_err(|source| Error::Bind { addr, source })?;
        self.add_listener(TcpListener::from_std(socket))
    }

    /// Accepts on a listener bound elsewhere (inherited, or bound with other options).
    pub fn add_std_listener(&mut self, listener: std::net::TcpListener) -> Result<ListenerId, Error> {
        listener.set_nonblocking(true).map_err(Error::io("making a listener non-blocking"))?;
        self.add_listener(TcpListener::from_std(listener))
    }

    fn add_listener(&mut self, mut socket: TcpListener) -> Result<ListenerId, Error> {
        let id = ListenerId(u16::try_from(self.listeners.len()).map_err(|_| Error::TooManyListeners)?);
        let addr = socket.local_addr().map_err(Error::io("reading a listener's address"))?;
        self.poll
            .registry()
            .register(&mut socket, id.token(), Interest::READABLE)
            .map_err(|source| Error::Bind { addr, source })?;
        self.listeners.push(Some(Listener { socket, addr }));
        Ok(id)
    }

    /// The address a listener is bound to.
    pub fn local_addr(&self, id: ListenerId) -> Option<SocketAddr> {
        self.listeners.get(usize::from(id.0))?.as_ref().map(|l| l.addr)
    }

    /// A handle for other threads (timers, close, shutdown).
    pub fn handle(&self) -> Handle {
        Handle { shared: Arc::clone(&self.shared) }
    }

    /// The dispatcher this reactor reports to.
    pub fn dispatcher(&self) -> &D {
        &self.dispatch
    }

    /// The connection limit in force.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// Runs the loop on a new thread named `reactor`.
    pub fn spawn(self) -> io::Result<thread::JoinHandle<Result<(), Error>>> {
        thread::Builder::new().name("reactor".into()).spawn(move || self.run())
    }

    /// Runs the loop on this thread until a shutdown completes: returns `Ok` once every
    /// connection is closed (or the grace period ended), or the error that stopped it.
    pub fn run(mut self) -> Result<(), Error> {
        let _policy = if self.settings.batch_scheduling {
            crate::sys::batch_scheduling()
                .map_err(|e| log::warn!("reactor: cannot switch to SCHED_BATCH ({e}); running as before"))
                .ok()
        } else {
            None
        };
        log::info!(
            "reactor: running, {} listener(s), at most {} connections",
            self.listeners.len(),
            self.max_connections
        );
        loop {
            let mut timeout = self.timeout();
            // A driven pool runs its tasks here, between polls: announce the wait so
            // that a task queued from another thread rings the doorbell, and do not
            // block at all while tasks are queued.
            if !self.pool.prepare_wait() {
                timeout = Some(Duration::ZERO);
            }
            let polled = self.poll.poll(&mut self.events, timeout);
            self.pool.end_wait();
            match polled {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(Error::Io { what: "waiting for events", source }),
            }
            let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
            let mut io = false;
            for event in events.iter() {
                io |= self.on_event(event);
            }
            self.events = events;
            self.on_time();
            self.dispatch.on_turn(!io);
            self.pool.drive(DRIVE_BUDGET);
            if self.shutdown_done() {
                self.close_all();
                log::info!("reactor: stopped");
                return Ok(());
            }
        }
    }

    fn timeout(&mut self) -> Option<Duration> {
        let next =
            [self.timers.next_deadline(), self.accept_retry, self.shutdown].into_iter().flatten().min()?;
        Some(next.saturating_duration_since(Instant::now()))
    }

    /// Handles one event; true if it was network I/O (not a command or a signal).
    fn on_event(&mut self, event: &mio::event::Event) -> bool {
        let target = Target::of(event.token());
        let io = matches!(target, Target::Listener(_) | Target::Conn(_));
        match target {
            Target::Waker => self.drain_commands(),
            Target::Signals => self.on_signals(),
            Target::Pool => self.pool.clear_doorbell(),
            // While out of descriptors, `on_time` retries; accepting per event would
            // just fail again and log once per incoming connection.
            Target::Listener(id) if self.accept_retry.is_none() => self.accept(id),
            Target::Listener(_) => {}
            Target::Conn(id) if self.conns.get(id).is_some() => self.dispatch.on_ready(id, Ready::of(event)),
            Target::Conn(id) => log::trace!("reactor: event for closed connection {id:?} ignored"),
        }
        io
    }

    fn on_time(&mut self) {
        let now = Instant::now();
        self.timers.fire_due(now, &self.pool);
        if self.accept_retry.is_some_and(|at| at <= now) {
            self.accept_retry = None;
            (0..self.listeners.len()).for_each(|i| self.accept(ListenerId(i as u16)));
        }
    }

    fn drain_commands(&mut self) {
        self.shared.pending.swap(false, std::sync::atomic::Ordering::AcqRel);
        while let Ok(command) = self.rx.try_recv() {
            match command {
                Command::Close(id) => self.close(id),
                Command::Attach(stream, tag) => self.open(stream, Origin::Attached(tag)),
                Command::AddTimer(id, deadline, action) => self.timers.add(id, deadline, action),
                Command::Cancel(id) => {
                    self.timers.cancel(id);
                }
                Command::Shutdown => self.begin_shutdown(),
            }
        }
    }

    fn on_signals(&mut self) {
        let Some((signals, _)) = self.signals.as_mut() else { return };
        let received: Vec<i32> = signals.pending().collect();
        for signal in received {
            log::info!("reactor: received signal {signal}, shutting down");
            self.begin_shutdown();
        }
    }

    /// Accepts until `WouldBlock`: the listener is edge-triggered.
    fn accept(&mut self, id: ListenerId) {
        loop {
            if self.settings.wait_when_full && self.conns.len() >= self.max_connections {
                self.accept_paused = true;
                return;
            }
            let Some(Some(listener)) = self.listeners.get(usize::from(id.0)) else { return };
            match listener.socket.accept() {
                // Hands over the descriptor: no system call.
                Ok((stream, _peer)) => self.open(TcpStream::from(stream), Origin::Listener(id)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if transient_accept_error(&e) => continue,
                Err(e) => {
                    log::warn!(
                        "reactor: accept on {} failed: {e}; retrying in {ACCEPT_BACKOFF:?}",
                        listener.addr
                    );
                    self.accept_retry = Some(Instant::now() + ACCEPT_BACKOFF);
                    return;
                }
            }
        }
    }

    fn open(&mut self, stream: TcpStream, origin: Origin) {
        if self.shutdown.is_some() || self.conns.len() >= self.max_connections {
            match origin {
                Origin::Listener(l) => self.dispatch.on_rejected(stream, l),
                Origin::Attached(tag) => self.dispatch.on_refused(tag),
            }
            return;
        }
        if self.settings.nodelay {
            if let Err(e) = stream.set_nodelay(true) {
                log::debug!("reactor: TCP_NODELAY not set: {e}");
            }
        }
        let id = self.conns.next_id();
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = crate::sys::register(self.poll.registry(), &stream, id.token(), interest) {
            log::warn!("reactor: cannot watch a new connection: {e}");
            if let Origin::Attached(tag) = origin {
                self.dispatch.on_refused(tag);
            }
            return;
        }
        let stream = Arc::new(stream);
        let inserted = self.conns.insert(Arc::clone(&stream));
        debug_assert_eq!(inserted, id);
        self.dispatch.on_open(id, origin, stream);
    }

    fn close(&mut self, id: ConnId) {
        let Some(conn) = self.conns.remove(id) else {
            log::trace!("reactor: close of stale id {id:?} ignored");
            return;
        };
        // The layer above may still hold the stream; stop its events reaching us now.
        if let Err(e) = crate::sys::deregister(self.poll.registry(), &conn) {
            log::debug!("reactor: deregistering {id:?}: {e}");
        }
        self.dispatch.on_closed(id);
        if self.accept_paused && self.shutdown.is_none() {
            // The listeners' edges were consumed while full: drain their queues now.
            self.accept_paused = false;
            for l in 0..self.listeners.len() {
                self.accept(ListenerId(u16::try_from(l).expect("listener ids fit in u16")));
            }
        }
    }

    fn begin_shutdown(&mut self) {
        if self.shutdown.is_some() {
            log::info!("reactor: second shutdown request, closing now");
            self.shutdown = Some(Instant::now());
            return;
        }
        self.shutdown = Some(Instant::now() + self.settings.grace);
        for listener in self.listeners.iter_mut().filter_map(Option::take) {
            log::info!("reactor: no longer accepting on {}", listener.addr);
        }
        self.accept_retry = None;
        self.dispatch.on_shutdown();
    }

    fn shutdown_done(&self) -> bool {
        self.shutdown.is_some_and(|deadline| self.conns.len() == 0 || Instant::now() >= deadline)
    }

    fn close_all(&mut self) {
        if self.conns.len() > 0 {
            log::warn!("reactor: grace period over, dropping {} connection(s)", self.conns.len());
        }
        self.conns.ids().into_iter().for_each(|id| self.close(id));
    }
}

fn transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    ) || crate::sys::is_protocol_error(e)
}

impl<D: Dispatch> std::fmt::Debug for Reactor<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactor")
            .field("listeners", &self.listeners.iter().flatten().map(|l| l.addr).collect::<Vec<_>>())
            .field("connections", &self.conns.len())
            .field("timers", &self.timers.len())
            .field("shutting_down", &self.shutdown.is_some())
            .finish()
    }
}
