//! Shared test helpers: a `Dispatch` that reports every call on a channel.
#![allow(dead_code)] // each test file uses a different subset

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_pool::Pool;
use reactor::{Builder, ConnId, Dispatch, Handle, ListenerId, Origin, Reactor, Ready};

/// How long a test waits for something that should happen at once.
pub const PATIENCE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq)]
pub enum Ev {
    Open(ConnId, Origin),
    Refused(u64),
    Ready(ConnId, Ready),
    Closed(ConnId),
    Shutdown,
    Rejected(ListenerId),
}

/// Reports every call; holds streams until `on_closed`, as a real layer would.
pub struct Recorder {
    tx: Sender<Ev>,
    streams: HashMap<ConnId, Arc<TcpStream>>,
}

impl Dispatch for Recorder {
    fn on_open(&mut self, id: ConnId, origin: Origin, stream: Arc<TcpStream>) {
        self.streams.insert(id, stream);
        let _ = self.tx.send(Ev::Open(id, origin));
    }
    fn on_refused(&mut self, tag: u64) {
        let _ = self.tx.send(Ev::Refused(tag));
    }
    fn on_ready(&mut self, id: ConnId, ready: Ready) {
        let _ = self.tx.send(Ev::Ready(id, ready));
    }
    fn on_closed(&mut self, id: ConnId) {
        self.streams.remove(&id);
        let _ = self.tx.send(Ev::Closed(id));
    }
    fn on_shutdown(&mut self) {
        let _ = self.tx.send(Ev::Shutdown);
    }
    fn on_rejected(&mut self, stream: TcpStream, listener: ListenerId) {
        drop(stream);
        let _ = self.tx.send(Ev::Rejected(listener));
    }
}

/// A reactor with a recorder and one listener on a free loopback port, not yet running.
pub fn reactor(builder: Builder) -> (Reactor<Recorder>, SocketAddr, Receiver<Ev>) {
    reactor_on(builder, 2)
}

/// [`reactor`] over a pool of `workers` threads (one worker runs tasks in the order
/// the reactor handed them over).
pub fn reactor_on(builder: Builder, workers: usize) -> (Reactor<Recorder>, SocketAddr, Receiver<Ev>) {
    let _ = env_logger::builder().is_test(true).try_init();
    let pool = Arc::new(Pool::new(workers).expect("pool starts"));
    let (tx, rx) = mpsc::channel();
    let mut reactor = builder.build(pool, Recorder { tx, streams: HashMap::new() }).expect("reactor builds");
    let listener = reactor.listen("127.0.0.1:0".parse().expect("valid address")).expect("binds a free port");
    let addr = reactor.local_addr(listener).expect("listener exists");
    (reactor, addr, rx)
}

/// Waits for the first event `pick` accepts, skipping the others; panics after `PATIENCE`.
pub fn wait_for<T>(rx: &Receiver<Ev>, what: &str, mut pick: impl FnMut(&Ev) -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(ev) => {
                if let Some(found) = pick(&ev) {
                    return found;
                }
            }
            Err(e) => panic!("no {what} within {PATIENCE:?}: {e}"),
        }
    }
}

pub fn opened(rx: &Receiver<Ev>) -> ConnId {
    wait_for(rx, "open", |ev| match ev {
        Ev::Open(id, _) => Some(*id),
        _ => None,
    })
}

/// Every event that arrives before `rx` stays quiet for a short while. Use only
/// after a round trip through the reactor (a timer) proved it processed what came before.
pub fn drain(rx: &Receiver<Ev>) -> Vec<Ev> {
    rx.try_iter().collect()
}

/// Waits for a readiness event of `id` that `check` accepts.
pub fn wait_ready(rx: &Receiver<Ev>, id: ConnId, what: &str, check: impl Fn(&Ready) -> bool) {
    wait_for(rx, what, |ev| match ev {
        Ev::Ready(got, ready) if *got == id && check(ready) => Some(()),
        _ => None,
    })
}

/// A reactor running on its own thread, with what a test needs to talk to it.
pub struct Running {
    pub handle: Handle,
    pub addr: SocketAddr,
    pub rx: Receiver<Ev>,
    pub thread: std::thread::JoinHandle<Result<(), reactor::Error>>,
}

/// Builds a reactor (see [`reactor`]) and runs it.
pub fn start(builder: Builder) -> Running {
    start_on(builder, 2)
}

/// [`start`] over a pool of `workers` threads.
pub fn start_on(builder: Builder, workers: usize) -> Running {
    let (reactor, addr, rx) = reactor_on(builder, workers);
    let handle = reactor.handle();
    let thread = reactor.spawn().expect("reactor thread starts");
    Running { handle, addr, rx, thread }
}

impl Running {
    /// Shuts the reactor down at once (the second request skips the grace period) and
    /// checks that its loop returned cleanly.
    pub fn stop(self) {
        self.handle.shutdown().expect("reactor running");
        let _ = self.handle.shutdown(); // may find the loop already gone: that is fine
        self.thread.join().expect("reactor thread").expect("clean stop");
    }
}
