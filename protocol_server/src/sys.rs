//! What this crate needs from Linux, in one place so a port knows where to look:
//! `fork(2)` (the only `unsafe` of the crate) and the process calls around it for
//! `processes(n)`, `send(2)` with `MSG_MORE`, `sendfile(2)`, positioned reads, and
//! `/proc`. Everything else is portable Rust over `std` streams.

#[cfg(not(target_os = "linux"))]
compile_error!(
    "protocol_server needs Linux: protocol_server/src/sys.rs uses fork, prctl(PR_SET_PDEATHSIG), \
     setpgid, pthread_sigmask, waitpid and kill (processes(n)), send(MSG_MORE) and sendfile \
     (output), pread (std::os::unix FileExt) and /proc/self/status"
);

use std::fs::File;
use std::io;
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::FileExt;

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

/// Threads of this process, from `/proc/self/status` (0 if it cannot be read).
pub(crate) fn thread_count() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
}

/// Which side of a `fork` this is.
pub(crate) enum Forked {
    Child,
    Parent(u32),
}

/// Forks this process.
pub(crate) fn fork() -> io::Result<Forked> {
    // SAFETY: `supervise` checked that this process has exactly one thread and only it
    // calls here, so no lock or allocator state can be held by a thread missing from
    // the child; the child goes on to build its own threads and exits via `exit`.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Child => Ok(Forked::Child),
        ForkResult::Parent { child } => Ok(Forked::Parent(child.as_raw() as u32)),
    }
}

/// Sends `signal` (a `signal_hook::consts` number) to process `pid`.
pub(crate) fn kill(pid: u32, signal: i32) -> io::Result<()> {
    let signal = Signal::try_from(signal)?;
    Ok(nix::sys::signal::kill(Pid::from_raw(pid as i32), signal)?)
}

/// What one `waitpid(WNOHANG)` found.
pub(crate) enum Reaped {
    Exited {
        pid: u32,
        code: i32,
    },
    Killed {
        pid: u32,
        signal: i32,
    },
    /// A child stopped or continued: not an exit, look again.
    Other,
    /// No child has exited (or there are none).
    Nothing,
}

/// Reaps one exited child without blocking.
pub(crate) fn reap() -> Reaped {
    match nix::sys::wait::waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(pid, code)) => Reaped::Exited { pid: pid.as_raw() as u32, code },
        Ok(WaitStatus::Signaled(pid, signal, _)) => {
            Reaped::Killed { pid: pid.as_raw() as u32, signal: signal as i32 }
        }
        Ok(WaitStatus::StillAlive) | Err(_) => Reaped::Nothing,
        Ok(_) => Reaped::Other,
    }
}

/// In a new child: leaves the root's process group (a terminal's Ctrl-C reaches only
/// the root) and asks for SIGTERM when the parent dies. Returns the parent's pid now,
/// so the caller can tell whether the parent died before the request was made.
pub(crate) fn follow_parent() -> u32 {
    let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGTERM);
    nix::unistd::getppid().as_raw() as u32
}

/// SIGINT and SIGTERM, blocked across `fork` (see `process.rs`).
fn stop_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set
}

/// Blocks SIGINT/SIGTERM for this thread.
pub(crate) fn block_stop_signals() -> io::Result<()> {
    Ok(stop_signals().thread_block()?)
}

/// Unblocks SIGINT/SIGTERM for this thread.
pub(crate) fn unblock_stop_signals() -> io::Result<()> {
    Ok(nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&stop_signals()), None)?)
}

/// `send(2)` with `MSG_MORE`: the kernel holds the bytes for what follows at once.
pub(crate) fn send_more(stream: &TcpStream, buf: &[u8]) -> io::Result<usize> {
    // nix names no MSG_MORE (Linux-only); the bit goes to send(2) as is.
    let more = nix::sys::socket::MsgFlags::from_bits_retain(nix::libc::MSG_MORE);
    Ok(nix::sys::socket::send(stream.as_raw_fd(), buf, more)?)
}

/// `sendfile(2)` of up to `len` bytes of `file` from `offset`; `None` if the offset is
/// past what `off_t` holds.
pub(crate) fn send_file(
    stream: &TcpStream,
    file: &File,
    offset: u64,
    len: usize,
) -> Option<io::Result<usize>> {
    let mut off = i64::try_from(offset).ok()?;
    Some(nix::sys::sendfile::sendfile(stream.as_fd(), file.as_fd(), Some(&mut off), len).map_err(Into::into))
}

/// Reads from `offset` without moving the file's position (`pread(2)`), so one open
/// file can serve many connections at once.
pub(crate) fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    file.read_at(buf, offset)
}
