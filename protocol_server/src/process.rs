//! `processes(n)`: a root process that forks workers and keeps them alive.
//!
//! The root binds the listeners, forks `n` children (each runs a whole server on the
//! inherited sockets: the kernel spreads connections among their `accept`s), then
//! waits for signals: SIGINT/SIGTERM are forwarded to every child; SIGCHLD reaps, and
//! a child that died while no shutdown was asked for is logged and replaced. The root
//! returns once every child has exited after a shutdown.

use std::collections::HashSet;
use std::net::TcpListener;

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};
use signal_hook::consts::{SIGCHLD, SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

use crate::{Builder, Error};

pub(crate) fn supervise(builder: Builder, sockets: Vec<TcpListener>) -> Result<(), Error> {
    let threads = crate::sys::thread_count();
    if threads != 1 {
        return Err(Error::Threaded(builder.processes, threads));
    }
    let root = std::process::id();
    let mut signals =
        Signals::new([SIGINT, SIGTERM, SIGCHLD]).map_err(Error::io("installing signal handlers"))?;
    let handle = signals.handle();
    let mut children = HashSet::new();
    for _ in 0..builder.processes {
        children.insert(spawn(&builder, &sockets, &handle, root)?);
    }
    log::info!("root {root}: {} worker processes {children:?}", children.len());
    let mut stopping = false;
    for signal in signals.forever() {
        if signal == SIGCHLD {
            reap(&mut children, stopping, |children| {
                if let Ok(pid) = spawn(&builder, &sockets, &handle, root) {
                    children.insert(pid);
                }
            });
        } else {
            stopping = true;
            let forward = Signal::try_from(signal).unwrap_or(Signal::SIGTERM);
            log::info!("root {root}: {forward}, stopping {} worker process(es)", children.len());
            for child in &children {
                let _ = kill(*child, forward);
            }
        }
        if stopping && children.is_empty() {
            break;
        }
    }
    log::info!("root {root}: every worker process has exited");
    Ok(())
}

/// Reaps every exited child; replaces it unless a shutdown is under way.
fn reap(children: &mut HashSet<Pid>, stopping: bool, mut respawn: impl FnMut(&mut HashSet<Pid>)) {
    loop {
        let (pid, how) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => (pid, format!("exited with {code}")),
            Ok(WaitStatus::Signaled(pid, signal, _)) => (pid, format!("killed by {signal}")),
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => continue,
        };
        if !children.remove(&pid) {
            continue;
        }
        if stopping {
            log::info!("worker process {pid} {how}");
        } else {
            log::error!("worker process {pid} {how} unexpectedly; starting a new one");
            respawn(children);
        }
    }
}

fn spawn(builder: &Builder, sockets: &[TcpListener], signals: &Handle, root: u32) -> Result<Pid, Error> {
    match crate::sys::fork().map_err(|e| Error::io("forking a worker process")(e.into()))? {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => {
            // The root's handlers would write to the root's signal pipe: drop them; the
            // child's reactor installs its own.
            signals.close();
            // Never unwind out of here: above us are the root's frames (its signal loop).
            let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                child_sockets(sockets).and_then(|s| builder.clone().serve(s, root))
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
}

fn child_sockets(sockets: &[TcpListener]) -> Result<Vec<TcpListener>, Error> {
    sockets
        .iter()
        .map(|s| s.try_clone().map_err(Error::io("sharing a listener with a worker process")))
        .collect()
}
