//! `processes(n)`: a root process that forks workers and keeps them alive.
//!
//! The root binds the listeners, forks `n` children (each runs a whole server on the
//! inherited sockets: the kernel spreads connections among their `accept`s), then
//! waits for signals: SIGINT/SIGTERM are forwarded to every child; SIGCHLD reaps, and
//! a child that died while no shutdown was asked for is logged and replaced. A child
//! that exits with status 0 stopped on purpose and is not replaced. The root returns
//! once every child has exited.
//!
//! Children run in their own process group (a terminal's Ctrl-C reaches only the root,
//! which forwards it once) and get SIGTERM if the root dies. SIGINT/SIGTERM are blocked
//! across `fork` and stay blocked in a child until its reactor has installed handlers,
//! so no signal is lost or handled by the root's inherited handlers.

use std::collections::{HashSet, VecDeque};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGCHLD, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use signal_hook::low_level::signal_name;

use crate::sys::{self, Forked, Reaped};
use crate::{Builder, Error};

/// More unexpected deaths than this within `RESPAWN_WINDOW` slow respawning down.
const RESPAWN_BURST: usize = 5;
const RESPAWN_WINDOW: Duration = Duration::from_secs(10);
const RESPAWN_PAUSE: Duration = Duration::from_secs(1);

pub(crate) fn supervise(builder: Builder, sockets: Vec<TcpListener>) -> Result<(), Error> {
    let threads = sys::thread_count();
    if threads != 1 {
        return Err(Error::Threaded(builder.processes, threads));
    }
    let mut signals =
        Signals::new([SIGINT, SIGTERM, SIGCHLD]).map_err(Error::io("installing signal handlers"))?;
    let mut root = Root {
        builder,
        sockets,
        pid: std::process::id(),
        children: HashSet::new(),
        respawns: VecDeque::new(),
    };
    for _ in 0..root.builder.processes {
        let child = root.spawn()?;
        root.children.insert(child);
    }
    log::info!("root {}: worker processes {:?}", root.pid, root.children);
    let mut stopping = false;
    for signal in signals.forever() {
        if signal == SIGCHLD {
            root.reap(stopping)?;
        } else {
            stopping = true;
            let name = signal_name(signal).unwrap_or("SIGTERM");
            log::info!("root {}: {name}, stopping {} worker process(es)", root.pid, root.children.len());
            for child in &root.children {
                let _ = sys::kill(*child, signal);
            }
        }
        if root.children.is_empty() {
            break;
        }
    }
    log::info!("root {}: every worker process has exited", root.pid);
    Ok(())
}

struct Root {
    builder: Builder,
    sockets: Vec<TcpListener>,
    pid: u32,
    children: HashSet<u32>,
    /// When recent unexpected deaths were replaced, for the backoff.
    respawns: VecDeque<Instant>,
}

impl Root {
    /// Reaps every exited child; replaces the ones that died unexpectedly.
    fn reap(&mut self, stopping: bool) -> Result<(), Error> {
        loop {
            let (pid, code) = match sys::reap() {
                Reaped::Exited { pid, code } => (pid, Some(code)),
                Reaped::Killed { pid, signal } => {
                    log::debug!(
                        "worker process {pid} killed by {}",
                        signal_name(signal).unwrap_or("a signal")
                    );
                    (pid, None)
                }
                Reaped::Nothing => return Ok(()),
                Reaped::Other => continue,
            };
            if !self.children.remove(&pid) {
                continue;
            }
            match (stopping, code) {
                (true, _) | (false, Some(0)) => log::info!("worker process {pid} exited"),
                (false, _) => {
                    log::error!("worker process {pid} died unexpectedly ({code:?}); starting a new one");
                    self.replace()?;
                }
            }
        }
    }

    fn replace(&mut self) -> Result<(), Error> {
        let now = Instant::now();
        self.respawns.retain(|at| now.duration_since(*at) < RESPAWN_WINDOW);
        if self.respawns.len() >= RESPAWN_BURST {
            log::warn!("worker processes keep dying; waiting {RESPAWN_PAUSE:?} before the next");
            std::thread::sleep(RESPAWN_PAUSE); // the root only supervises: nothing else waits on it
        }
        self.respawns.push_back(Instant::now());
        match self.spawn() {
            Ok(child) => {
                self.children.insert(child);
                Ok(())
            }
            Err(e) if self.children.is_empty() => Err(e),
            Err(e) => {
                log::error!("cannot replace a worker process: {e}; {} still serve", self.children.len());
                Ok(())
            }
        }
    }

    fn spawn(&self) -> Result<u32, Error> {
        sys::block_stop_signals().map_err(Error::io("blocking signals around fork"))?;
        let forked = sys::fork();
        match forked {
            Ok(Forked::Child) => self.run_child(),
            Ok(Forked::Parent(child)) => {
                sys::unblock_stop_signals().map_err(Error::io("unblocking signals"))?;
                Ok(child)
            }
            Err(e) => {
                let _ = sys::unblock_stop_signals();
                Err(Error::io("forking a worker process")(e))
            }
        }
    }

    /// The child's whole life: it never returns into the root's frames.
    fn run_child(&self) -> ! {
        let root = self.pid;
        if sys::follow_parent() != root {
            std::process::exit(0); // the root died before we asked to follow it
        }
        let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            child_sockets(&self.sockets).and_then(|s| self.builder.clone().serve(s, root))
        }));
        let code = match served {
            Ok(Ok(())) => 0,
            Ok(Err(e)) => {
                log::error!("worker process {}: {e}", std::process::id());
                1
            }
            Err(_) => {
                log::error!("worker process {}: panicked", std::process::id());
                101
            }
        };
        std::process::exit(code);
    }
}

/// Unblocks SIGINT/SIGTERM in a process whose reactor now handles them.
pub(crate) fn accept_stop_signals() {
    if let Err(e) = sys::unblock_stop_signals() {
        log::warn!("cannot unblock SIGINT/SIGTERM: {e}");
    }
}

fn child_sockets(sockets: &[TcpListener]) -> Result<Vec<TcpListener>, Error> {
    sockets
        .iter()
        .map(|s| s.try_clone().map_err(Error::io("sharing a listener with a worker process")))
        .collect()
}
