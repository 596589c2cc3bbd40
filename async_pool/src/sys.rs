//! What this crate needs from Linux: the pipe a parked worker sleeps on.
//!
//! Kept in one module so a port to another OS knows where to look; everything else
//! in the crate is portable Rust. Under `--cfg loom` the doorbell is a model instead
//! (`wake.rs`) and this one goes unused.
#![cfg_attr(loom, allow(dead_code))]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "async_pool needs Linux: its workers sleep on pipe2(O_CLOEXEC) pipes set non-blocking with \
     fcntl (through nix); see async_pool/src/sys.rs"
);

use std::io;
use std::os::fd::OwnedFd;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag};

/// A pipe: blocking read end for the worker, write end for producers.
#[derive(Debug)]
pub(crate) struct Doorbell {
    read: OwnedFd,
    write: OwnedFd,
}

impl Doorbell {
    pub(crate) fn new() -> io::Result<Self> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        // Only the write end is non-blocking: a producer (maybe the reactor) must
        // never block on a pipe that stale wake-up bytes have filled.
        nix::fcntl::fcntl(&write, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
        Ok(Doorbell { read, write })
    }

    /// A doorbell whose read end is non-blocking too: a driver thread polls it
    /// (`epoll`) instead of blocking in `read`, and swallows rings with `clear`.
    pub(crate) fn polled() -> io::Result<Self> {
        let bell = Doorbell::new()?;
        nix::fcntl::fcntl(&bell.read, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
        Ok(bell)
    }

    /// The read end, readable while a ring is unread.
    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.read.as_fd()
    }

    /// Swallows every ring queued so far, without blocking (a polled doorbell).
    pub(crate) fn clear(&self) -> io::Result<()> {
        let mut buf = [0u8; 64];
        loop {
            match nix::unistd::read(&self.read, &mut buf) {
                Ok(0) | Err(Errno::EAGAIN) => return Ok(()),
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Rings once. `EAGAIN` means the pipe is full of unread rings: the worker
    /// will wake anyway, so that counts as rung. `EINTR` is retried.
    pub(crate) fn ring(&self) -> io::Result<()> {
        loop {
            match nix::unistd::write(&self.write, &[1u8]) {
                Ok(_) | Err(Errno::EAGAIN) => return Ok(()),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Blocks until at least one ring, and swallows every ring queued so far.
    pub(crate) fn wait(&self) -> io::Result<()> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut buf = [0u8; 64];
        loop {
            match nix::unistd::read(&self.read, &mut buf) {
                Ok(_) => return Ok(()),
                Err(Errno::EINTR) => continue,
                // A polled doorbell's read end does not block: wait for a ring.
                Err(Errno::EAGAIN) => {
                    match poll(&mut [PollFd::new(self.fd(), PollFlags::POLLIN)], PollTimeout::NONE) {
                        Ok(_) | Err(Errno::EINTR) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// What a driven pool hands its driver to poll: the doorbell's read end.
pub(crate) type PollFd<'a> = std::os::fd::BorrowedFd<'a>;
