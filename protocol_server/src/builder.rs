//! [`Builder`]: the `start_server(...)` of the original, as a builder.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use async_pool::Pool;

use crate::dispatch::Dispatcher;
use crate::server::{Hook, Inner, Settings};
use crate::timeout::{Wheel, TICK_MS};
use crate::{Error, Protocol, Server};

/// Makes a fresh protocol value for each accepted connection.
pub type Factory = Arc<dyn Fn() -> Box<dyn Protocol> + Send + Sync>;

/// Settings and listeners of a server; [`Builder::start`] runs it.
///
/// ```no_run
/// use protocol_server::{Conn, Protocol, Server};
///
/// struct Echo;
/// impl Protocol for Echo {
///     fn service(&self) -> &'static str { "echo" }
///     fn on_data(&mut self, conn: &Conn) {
///         let mut buf = [0u8; 4096];
///         while let Ok(n @ 1..) = conn.read(&mut buf) {
///             let _ = conn.write(&buf[..n]);
///         }
///     }
/// }
///
/// Server::builder().port(3000).protocol(|| Echo).start()?;
/// # Ok::<(), protocol_server::Error>(())
/// ```
#[must_use = "a builder does nothing until .start()"]
#[derive(Clone)]
pub struct Builder {
    address: String,
    port: u16,
    threads: usize,
    inline: bool,
    pub(crate) processes: usize,
    timeout: Duration,
    busy_msg: Option<Vec<u8>>,
    max_output: usize,
    max_connections: Option<usize>,
    grace: Duration,
    signals: bool,
    listeners: Vec<(String, Factory)>,
    on_init: Option<Hook>,
    on_finish: Option<Hook>,
    on_tick: Option<Hook>,
    on_idle: Option<Hook>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            address: "127.0.0.1".into(),
            port: 3000,
            threads: 0,
            inline: false,
            processes: 1,
            timeout: Duration::from_secs(5),
            busy_msg: None,
            max_output: 16 << 20,
            max_connections: None,
            grace: Duration::from_secs(5),
            signals: true,
            listeners: Vec::new(),
            on_init: None,
            on_finish: None,
            on_tick: None,
            on_idle: None,
        }
    }
}

fn factory<P: Protocol>(make: impl Fn() -> P + Send + Sync + 'static) -> Factory {
    Arc::new(move || Box::new(make()) as Box<dyn Protocol>)
}

fn hook(f: impl Fn(&Server) + Send + Sync + 'static) -> Option<Hook> {
    Some(Arc::new(f))
}

impl Builder {
    /// Address for [`Builder::protocol`] (default `127.0.0.1`; `0.0.0.0` for all interfaces).
    pub fn address(mut self, address: impl Into<String>) -> Self {
        self.address = address.into();
        self
    }

    /// Port for [`Builder::protocol`] (default 3000; 0 picks a free one).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Listens on `address:port` with a protocol made per connection by `make`.
    pub fn protocol<P: Protocol>(self, make: impl Fn() -> P + Send + Sync + 'static) -> Self {
        let addr = format_addr(&self.address, self.port);
        self.listen(addr, make)
    }

    /// Listens on `addr` (`"host:port"`) with its own protocol. May be called several
    /// times: one reactor and one pool serve every listener.
    pub fn listen<P: Protocol>(
        mut self,
        addr: impl Into<String>,
        make: impl Fn() -> P + Send + Sync + 'static,
    ) -> Self {
        self.listeners.push((addr.into(), factory(make)));
        self
    }

    /// Worker threads (default 0: one per core).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Runs every connection's hooks on the reactor's own thread, between its polls,
    /// instead of handing ready connections to worker threads (default false; the
    /// thread count is then ignored). One thread per process does everything, as in
    /// nginx's workers: no hand-off between threads, so no context switch per batch
    /// of ready connections, but a hook that blocks stalls every connection of the
    /// process. Use [`Builder::processes`] to use several cores. Measured side by
    /// side with the default in `bench http` (BENCHMARKS.md).
    pub fn inline(mut self, on: bool) -> Self {
        self.inline = on;
        self
    }

    /// Processes serving the same listeners (default 1). With more, the root forks
    /// them before any thread starts, forwards SIGINT/SIGTERM and restarts any that die.
    pub fn processes(mut self, processes: usize) -> Self {
        self.processes = processes.max(1);
        self
    }

    /// Idle time before [`Protocol::ping`] (default 5 s; zero: never).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sent to connections refused at capacity before closing them. With
    /// `processes(n > 1)` a full process refuses nothing: it stops accepting until a
    /// connection closes, so a sibling with room takes the newcomers.
    pub fn busy_msg(mut self, msg: impl Into<Vec<u8>>) -> Self {
        self.busy_msg = Some(msg.into());
        self
    }

    /// Bytes of memory queued per connection before the peer is deemed not reading
    /// and disconnected (default 16 MiB). A file range queued with
    /// [`Conn::send_file`](crate::Conn::send_file) holds a descriptor, not memory, and
    /// counts 0 here (its length still shows in `Conn::queued`), so files larger than
    /// the bound go out whole; httpd bounds how many it queues itself.
    pub fn max_output(mut self, bytes: usize) -> Self {
        self.max_output = bytes;
        self
    }

    /// Connection limit of each process (default: [`crate::capacity`]).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = Some(n);
        self
    }

    /// How long shutdown waits for queued output before dropping connections (default 5 s).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Whether SIGINT/SIGTERM shut the server down (default true). Turn it off when
    /// embedding the server in a program that handles signals itself.
    pub fn signals(mut self, on: bool) -> Self {
        self.signals = on;
        self
    }

    /// Runs on the starting thread once listening, before serving.
    pub fn on_init(mut self, f: impl Fn(&Server) + Send + Sync + 'static) -> Self {
        self.on_init = hook(f);
        self
    }

    /// Runs after shutdown, once every connection is closed and the workers stopped.
    pub fn on_finish(mut self, f: impl Fn(&Server) + Send + Sync + 'static) -> Self {
        self.on_finish = hook(f);
        self
    }

    /// Runs on a worker after reactor turns (at most one queued at a time).
    pub fn on_tick(mut self, f: impl Fn(&Server) + Send + Sync + 'static) -> Self {
        self.on_tick = hook(f);
        self
    }

    /// Runs on a worker after reactor turns with no network event.
    pub fn on_idle(mut self, f: impl Fn(&Server) + Send + Sync + 'static) -> Self {
        self.on_idle = hook(f);
        self
    }

    /// Starts the server on a new thread and returns once it listens: the [`Server`]
    /// (to stop it, read its addresses) and the thread, whose result is `start`'s.
    /// A failure to start (a bind error, say) is returned here. For tests and for
    /// programs embedding a server; `processes(n)` needs [`Builder::start`].
    pub fn spawn(mut self) -> Result<(Server, std::thread::JoinHandle<Result<(), Error>>), Error> {
        let (tx, rx) = std::sync::mpsc::channel();
        let user = self.on_init.take();
        self.on_init = hook(move |server| {
            if let Some(f) = &user {
                f(server);
            }
            let _ = tx.send(server.clone());
        });
        let thread = std::thread::Builder::new()
            .name("server".into())
            .spawn(move || self.start())
            .map_err(Error::io("starting the server thread"))?;
        match rx.recv() {
            Ok(server) => Ok((server, thread)),
            // The sender is gone without a server: `start` failed before listening.
            Err(_) => {
                let why = match thread.join() {
                    Ok(Err(e)) => return Err(e),
                    Ok(Ok(())) => "it stopped before listening",
                    Err(_) => "its thread panicked",
                };
                Err(Error::io("starting the server")(std::io::Error::other(why)))
            }
        }
    }

    /// Binds every listener and serves until SIGINT/SIGTERM or [`Server::stop`].
    /// Returns after an orderly shutdown; a bind failure names the address.
    pub fn start(self) -> Result<(), Error> {
        if self.listeners.is_empty() {
            return Err(Error::NoListener);
        }
        let addrs = self.listeners.iter().map(|(a, _)| resolve(a)).collect::<Result<Vec<_>, _>>()?;
        let sockets = addrs.iter().map(|a| reactor::bind(*a)).collect::<Result<Vec<_>, _>>()?;
        if self.processes > 1 {
            return crate::process::supervise(self, sockets);
        }
        self.serve(sockets, std::process::id())
    }

    /// One process's server on already-bound listeners.
    pub(crate) fn serve(self, sockets: Vec<std::net::TcpListener>, root_pid: u32) -> Result<(), Error> {
        let capacity = self.max_connections.unwrap_or_else(crate::capacity);
        let pool = Arc::new(
            Pool::builder()
                .threads(self.threads)
                .driven(self.inline)
                .name("worker")
                .build()
                .map_err(Error::io("starting worker threads"))?,
        );
        let factories = self.listeners.iter().map(|(_, f)| Arc::clone(f)).collect();
        let inner = |reactor| Inner {
            reactor,
            pool: Arc::clone(&pool),
            conns: RwLock::default(),
            settings: Settings {
                timeout: self.timeout,
                max_output: self.max_output,
                busy_msg: self.busy_msg.clone(),
                grace: self.grace,
            },
            epoch: Instant::now(),
            addrs: OnceLock::new(),
            root_pid,
            capacity,
            wheel: Mutex::new(Wheel::default()),
            attached: Mutex::default(),
            next_attach: std::sync::atomic::AtomicU64::new(0),
            on_tick: self.on_tick.clone(),
            on_idle: self.on_idle.clone(),
            tick_busy: AtomicBool::new(false),
            idle_busy: AtomicBool::new(false),
        };
        let mut reactor = reactor::Builder::new()
            .max_connections(capacity)
            // Processes share the listener: a full one leaves connections to a sibling
            // with room; a lone process answers busy_msg instead.
            .wait_when_full(self.processes > 1)
            // SCHED_BATCH keeps the reactor from preempting a worker on its core;
            // inline there is no worker, and it would keep sibling processes from
            // preempting each other, which costs latency (see BENCHMARKS.md).
            .batch_scheduling(!self.inline)
            .grace(self.grace)
            .signals(self.signals)
            .build_with(Arc::clone(&pool), |handle| {
                Dispatcher::new(Server(Arc::new(inner(handle))), factories)
            })?;
        // A forked worker process kept SIGINT/SIGTERM blocked until now: the reactor
        // handles them from here on.
        crate::process::accept_stop_signals();
        let server = reactor.dispatcher().server.clone();
        let mut bound = Vec::new();
        for socket in sockets {
            let id = reactor.add_std_listener(socket)?;
            bound.push(reactor.local_addr(id).expect("a listener just added has an address"));
        }
        if pool.is_driven() {
            log::info!(
                "listening on {bound:?}, hooks run on the reactor thread, at most {capacity} connections"
            );
        } else {
            log::info!(
                "listening on {bound:?} with {} worker threads, at most {capacity} connections",
                pool.threads()
            );
        }
        server.0.addrs.set(bound).expect("addresses are set once, here");
        server.register();
        let ticker = server.clone();
        server.run_every(Duration::from_millis(TICK_MS), 0, move || ticker.check_timeouts())?;
        if let Some(f) = &self.on_init {
            f(&server);
        }
        let result = reactor.run();
        pool.finish();
        if let Some(f) = &self.on_finish {
            f(&server);
        }
        log::info!("server stopped");
        Ok(result?)
    }
}

fn format_addr(address: &str, port: u16) -> String {
    if address.contains(':') && !address.starts_with('[') {
        format!("[{address}]:{port}") // a bare IPv6 address
    } else {
        format!("{address}:{port}")
    }
}

fn resolve(addr: &str) -> Result<SocketAddr, Error> {
    let bad = |reason: String| Error::Address { addr: addr.to_string(), reason };
    addr.to_socket_addrs()
        .map_err(|e| bad(e.to_string()))?
        .next()
        .ok_or_else(|| bad("resolves to nothing".into()))
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("listeners", &self.listeners.iter().map(|(a, _)| a).collect::<Vec<_>>())
            .field("threads", &self.threads)
            .field("inline", &self.inline)
            .field("processes", &self.processes)
            .field("timeout", &self.timeout)
            .field("max_output", &self.max_output)
            .finish_non_exhaustive()
    }
}
