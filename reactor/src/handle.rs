//! [`Handle`]: how other threads talk to a running reactor.
//!
//! Commands travel over a channel; the reactor is woken through a `mio::Waker` only
//! when no wake-up is pending already (`pending` flag), so a burst of commands costs
//! one `write(2)` to the eventfd.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::timer::{Action, Repeat};
use crate::{ConnId, Error, TimerId};

pub(crate) enum Command {
    Close(ConnId),
    Attach(std::net::TcpStream, u64),
    AddTimer(TimerId, Instant, Action),
    Cancel(TimerId),
    Shutdown,
}

pub(crate) struct Shared {
    pub(crate) tx: Sender<Command>,
    pub(crate) waker: mio::Waker,
    /// Set by the first sender after the reactor last drained; cleared (with a swap,
    /// so it synchronises with that sender) before the reactor drains again.
    pub(crate) pending: AtomicBool,
    next_timer: AtomicU64,
}

impl Shared {
    pub(crate) fn new(tx: Sender<Command>, waker: mio::Waker) -> Shared {
        Shared { tx, waker, pending: AtomicBool::new(false), next_timer: AtomicU64::new(1) }
    }
}

/// A cheap, cloneable, thread-safe way to command a reactor.
#[derive(Clone)]
pub struct Handle {
    pub(crate) shared: Arc<Shared>,
}

/// Periods shorter than this are raised to it: a zero period would spin the reactor.
pub const MIN_PERIOD: Duration = Duration::from_millis(1);

impl Handle {
    /// Closes the connection: the reactor stops watching it and calls
    /// [`crate::Dispatch::on_closed`]. A stale id (already closed, slot reused) is a no-op.
    pub fn close(&self, id: ConnId) -> Result<(), Error> {
        self.send(Command::Close(id))
    }

    /// Hands an already-connected socket to the reactor, which watches it like an
    /// accepted one: [`crate::Dispatch::on_open`] reports it with
    /// [`crate::Origin::Attached`]`(tag)`, or [`crate::Dispatch::on_refused`] with the
    /// tag if it cannot be taken (capacity, shutdown).
    pub fn attach(&self, stream: std::net::TcpStream, tag: u64) -> Result<(), Error> {
        stream.set_nonblocking(true).map_err(Error::io("making an attached socket non-blocking"))?;
        self.send(Command::Attach(stream, tag))
    }

    /// Runs `task` on the pool once, no earlier than `delay` from now.
    pub fn run_after(&self, delay: Duration, task: impl FnOnce() + Send + 'static) -> Result<TimerId, Error> {
        let id = self.timer_id();
        self.send(Command::AddTimer(id, Instant::now() + delay, Action::Once(Box::new(task))))?;
        Ok(id)
    }

    /// Runs `task` on the pool every `interval` (at least [`MIN_PERIOD`]), `repetitions`
    /// times, or until cancelled if `repetitions` is 0. The k-th run is no earlier than
    /// k intervals from now; if the reactor falls a whole period behind, the schedule
    /// restarts from then instead of firing a burst. Runs never overlap: a tick that
    /// finds the previous run still going is skipped, and `repetitions` counts runs.
    pub fn run_every(
        &self,
        interval: Duration,
        repetitions: u64,
        task: impl Fn() + Send + Sync + 'static,
    ) -> Result<TimerId, Error> {
        let interval = interval.max(MIN_PERIOD);
        let task: Repeat = Arc::new(task);
        let left = (repetitions > 0).then_some(repetitions);
        let id = self.timer_id();
        self.send(Command::AddTimer(id, Instant::now() + interval, Action::every(task, interval, left)))?;
        Ok(id)
    }

    /// Cancels a timer. A timer that already fired its last time is not an error.
    pub fn cancel(&self, id: TimerId) -> Result<(), Error> {
        self.send(Command::Cancel(id))
    }

    /// Starts an orderly shutdown, as SIGTERM does. A second call cuts the grace
    /// period short.
    pub fn shutdown(&self) -> Result<(), Error> {
        self.send(Command::Shutdown)
    }

    fn timer_id(&self) -> TimerId {
        TimerId(self.shared.next_timer.fetch_add(1, Ordering::Relaxed))
    }

    fn send(&self, command: Command) -> Result<(), Error> {
        self.shared.tx.send(command).map_err(|_| Error::Stopped)?;
        if !self.shared.pending.swap(true, Ordering::AcqRel) {
            if let Err(e) = self.shared.waker.wake() {
                // The command is queued (an error now would hide a timer that will
                // fire); let the next command try the wake-up again.
                self.shared.pending.store(false, Ordering::Release);
                log::error!("reactor: cannot wake the event loop: {e}");
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle").finish_non_exhaustive()
    }
}
