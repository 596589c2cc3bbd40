//! The doorbell a parked worker sleeps on: one pipe per worker.
//!
//! The worker blocks in `read(2)` on the read end; a producer that finds the worker
//! parked writes one byte. Under `--cfg loom` the same interface is a counting
//! semaphore made of loom's `Mutex` and `Condvar`, so that a lost wake-up shows up as
//! a deadlock the model checker reports.

#[cfg(not(loom))]
pub(crate) use pipe::Doorbell;

#[cfg(loom)]
pub(crate) use model::Doorbell;

#[cfg(not(loom))]
mod pipe {
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
}

#[cfg(loom)]
mod model {
    use std::io;

    use crate::sync::{Condvar, Mutex};

    /// The loom stand-in for the pipe: a count of unread bytes.
    #[derive(Debug)]
    pub(crate) struct Doorbell {
        bytes: Mutex<usize>,
        cond: Condvar,
    }

    impl Doorbell {
        pub(crate) fn new() -> io::Result<Self> {
            Ok(Doorbell { bytes: Mutex::new(0), cond: Condvar::new() })
        }

        pub(crate) fn ring(&self) -> io::Result<()> {
            *crate::sync::lock(&self.bytes) += 1;
            self.cond.notify_one();
            Ok(())
        }

        pub(crate) fn polled() -> io::Result<Self> {
            Doorbell::new()
        }

        pub(crate) fn clear(&self) -> io::Result<()> {
            *crate::sync::lock(&self.bytes) = 0;
            Ok(())
        }

        pub(crate) fn wait(&self) -> io::Result<()> {
            let mut bytes = self.bytes.lock().expect("the doorbell lock is never poisoned");
            while *bytes == 0 {
                bytes = self.cond.wait(bytes).expect("the doorbell lock is never poisoned");
            }
            *bytes = 0;
            Ok(())
        }
    }
}
