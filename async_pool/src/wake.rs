//! The doorbell a parked worker sleeps on: one pipe per worker (`sys.rs`).
//!
//! The worker blocks in `read(2)` on the read end; a producer that finds the worker
//! parked writes one byte. Under `--cfg loom` the same interface is a counting
//! semaphore made of loom's `Mutex` and `Condvar`, so that a lost wake-up shows up as
//! a deadlock the model checker reports.

#[cfg(not(loom))]
pub(crate) use crate::sys::Doorbell;

#[cfg(loom)]
pub(crate) use model::Doorbell;

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
