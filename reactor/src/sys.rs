//! What this crate needs from Linux, in one place so a port knows where to look:
//! signal disposition (the only `unsafe` of the crate), listening sockets with our
//! backlog, registering `std` streams with epoll by descriptor, the open-file limit
//! and the errno `accept` can report. The rest of the crate is portable Rust on `mio`.

#[cfg(not(target_os = "linux"))]
compile_error!(
    "reactor needs Linux: epoll via mio is portable, but reactor/src/sys.rs is not: \
     signal(SIGPIPE), socket/bind/listen with SOCK_NONBLOCK|SOCK_CLOEXEC (nix), \
     epoll registration by raw descriptor (mio::unix::SourceFd), RLIMIT_NOFILE and EPROTO"
);

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::signal::{signal, SigHandler, Signal};

/// Makes writes to a closed socket fail with `EPIPE` instead of killing the process.
pub(crate) fn ignore_sigpipe() {
    // SAFETY: SIG_IGN installs no handler code, so there is nothing to make
    // async-signal-safe; replacing whatever disposition was there is the intent.
    if let Err(e) = unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) } {
        log::warn!("reactor: cannot ignore SIGPIPE: {e}");
    }
}

/// Binds a listening TCP socket with `SO_REUSEADDR` and the given backlog (the kernel
/// caps it at `net.core.somaxconn`). `mio` and `std` hard-code 128, which a burst of
/// connections overflows: the excess then waits for SYN retransmits (a second or more).
pub(crate) fn bind_listener(addr: std::net::SocketAddr, backlog: i32) -> io::Result<std::net::TcpListener> {
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{self, sockopt, AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage};

    let family = if addr.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
    let flags = SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK;
    let fd = socket::socket(family, SockType::Stream, flags, None)?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    socket::listen(&fd, Backlog::new(backlog).unwrap_or(Backlog::MAXCONN))?;
    Ok(std::net::TcpListener::from(fd))
}

/// The soft open-file limit of this process.
pub(crate) fn fd_limit() -> io::Result<u64> {
    Ok(getrlimit(Resource::RLIMIT_NOFILE)?.0)
}

/// Raises the soft open-file limit to the hard one; returns the new soft limit.
pub(crate) fn raise_fd_limit() -> io::Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    fd_limit()
}

/// `EPROTO` from `accept`: Linux passes on a protocol error of the new connection,
/// which is that connection's problem, not the listener's.
pub(crate) fn is_protocol_error(e: &io::Error) -> bool {
    e.raw_os_error() == Some(nix::libc::EPROTO)
}

/// Watches a descriptor (a connection, or a driven pool's doorbell): the reactor
/// keeps `std` streams (the public API names no `mio` type) and hands epoll their
/// descriptor, the same `epoll_ctl` mio's own `TcpStream` would make.
pub(crate) fn register(
    registry: &mio::Registry,
    fd: &impl std::os::fd::AsRawFd,
    token: mio::Token,
    interest: mio::Interest,
) -> io::Result<()> {
    registry.register(&mut mio::unix::SourceFd(&fd.as_raw_fd()), token, interest)
}

/// Stops watching a connection registered with [`register`].
pub(crate) fn deregister(registry: &mio::Registry, stream: &std::net::TcpStream) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    registry.deregister(&mut mio::unix::SourceFd(&stream.as_raw_fd()))
}

/// Reactors of this process that turn SIGINT/SIGTERM into a shutdown.
static LISTENING: AtomicUsize = AtomicUsize::new(0);
static FALLBACK: Once = Once::new();

/// Marks one more reactor as handling SIGINT/SIGTERM until the returned claim drops.
///
/// signal-hook never restores a signal's default action: once every reactor is gone
/// the signals would be silently ignored, and Ctrl-C would no longer stop a process
/// stuck after its reactor returned. A fallback action, installed once, performs the
/// default action (terminate) whenever no reactor is listening.
pub(crate) fn claim_signals() -> SignalClaim {
    FALLBACK.call_once(|| {
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // SAFETY: the action runs in signal context and only loads an atomic and
            // calls `emulate_default_handler`, which signal-hook documents as
            // async-signal-safe.
            let registered = unsafe {
                signal_hook::low_level::register(signal, move || {
                    if LISTENING.load(Ordering::SeqCst) == 0 {
                        let _ = signal_hook::low_level::emulate_default_handler(signal);
                    }
                })
            };
            if let Err(e) = registered {
                log::warn!("reactor: cannot install the default-action fallback for signal {signal}: {e}");
            }
        }
    });
    LISTENING.fetch_add(1, Ordering::SeqCst);
    SignalClaim(())
}

/// Held by a reactor that handles SIGINT/SIGTERM; see [`claim_signals`].
#[derive(Debug)]
pub(crate) struct SignalClaim(());

impl Drop for SignalClaim {
    fn drop(&mut self) {
        LISTENING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The calling thread's scheduling policy before [`batch_scheduling`] changed it,
/// restored when dropped.
#[derive(Debug)]
pub(crate) struct PolicyGuard {
    policy: i32,
    param: nix::libc::sched_param,
}

/// Puts the calling thread under `SCHED_BATCH`: it no longer preempts a running
/// thread when it wakes, it waits for that thread to block, yield or use up its slice.
///
/// For the reactor this turns one wake-up per arriving request into one per batch:
/// a worker sharing the reactor's core finishes its connections before the reactor
/// collects the events that arrived meanwhile (see BENCHMARKS.md, "What limits us").
pub(crate) fn batch_scheduling() -> std::io::Result<PolicyGuard> {
    // SAFETY: pid 0 names the calling thread; `sched_getscheduler` only reads it.
    let policy = unsafe { nix::libc::sched_getscheduler(0) };
    if policy < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut param = nix::libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid, writable `sched_param` for the call to fill.
    if unsafe { nix::libc::sched_getparam(0, &mut param) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let batch = nix::libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 names the calling thread; `batch` is a valid `sched_param`
    // (SCHED_BATCH requires priority 0) that the call only reads.
    if unsafe { nix::libc::sched_setscheduler(0, nix::libc::SCHED_BATCH, &batch) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(PolicyGuard { policy, param })
}

impl Drop for PolicyGuard {
    fn drop(&mut self) {
        // SAFETY: pid 0 names the calling thread (the guard never leaves the thread
        // that made it: `run` holds it on its stack); `param` is the valid value read
        // from the same thread.
        if unsafe { nix::libc::sched_setscheduler(0, self.policy, &self.param) } < 0 {
            log::debug!("reactor: cannot restore the scheduling policy: {}", std::io::Error::last_os_error());
        }
    }
}
