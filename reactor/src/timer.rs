//! The timer heap: due timers become pool tasks; the earliest deadline bounds `poll`.
//!
//! Keys are `(deadline, id)`: the id separates equal deadlines and fires them in the
//! order they were scheduled. Cancelling removes the timer from the map only; its heap
//! entry is skipped when it surfaces, and the heap is rebuilt when such dead entries
//! outnumber the live ones, so memory stays proportional to live timers.
//!
//! A repeating timer never runs twice at once: a tick that finds the previous run
//! still going is skipped (the run is not lost, it comes at the next tick that finds
//! it done, and a repetition count counts runs, not ticks).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_pool::{Pool, Task};

use crate::TimerId;

/// A task a periodic timer runs each time.
pub type Repeat = Arc<dyn Fn() + Send + Sync + 'static>;

pub(crate) enum Action {
    Once(Task),
    Every { task: Repeat, interval: Duration, left: Option<u64>, busy: Arc<AtomicBool> },
}

impl Action {
    /// A repeating action, not running.
    pub(crate) fn every(task: Repeat, interval: Duration, left: Option<u64>) -> Action {
        Action::Every { task, interval, left, busy: Arc::default() }
    }
}

/// Marks a repeating task's run as over when dropped: after it returns, after it
/// panics (the pool contains the panic), or if the pool refuses the task.
struct Running(Arc<AtomicBool>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, TimerId)>>,
    live: HashMap<TimerId, (Instant, Action)>,
}

impl Timers {
    pub(crate) fn add(&mut self, id: TimerId, deadline: Instant, action: Action) {
        self.heap.push(Reverse((deadline, id)));
        self.live.insert(id, (deadline, action));
    }

    pub(crate) fn cancel(&mut self, id: TimerId) -> bool {
        let found = self.live.remove(&id).is_some();
        if self.heap.len() > 2 * self.live.len() + 64 {
            let live = &self.live;
            self.heap.retain(|Reverse((_, id))| live.contains_key(id));
        }
        found
    }

    pub(crate) fn len(&self) -> usize {
        self.live.len()
    }

    /// The earliest live deadline.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(Reverse((deadline, id))) = self.heap.peek().copied() {
            match self.live.get(&id) {
                Some((live, _)) if *live == deadline => return Some(deadline),
                _ => {
                    self.heap.pop();
                }
            }
        }
        None
    }

    /// Hands every timer due at `now` to the pool; returns how many fired.
    pub(crate) fn fire_due(&mut self, now: Instant, pool: &Pool) -> usize {
        let mut fired = 0;
        while let Some(deadline) = self.next_deadline().filter(|d| *d <= now) {
            let Reverse((_, id)) = self.heap.pop().expect("next_deadline saw this entry");
            let (_, action) = self.live.remove(&id).expect("next_deadline checked it is live");
            fired += 1;
            match action {
                Action::Once(task) => hand_over(pool, id, task),
                Action::Every { task, interval, left, busy } => {
                    // Acquire: what the previous run wrote is seen by the next.
                    let left = if busy.swap(true, Ordering::Acquire) {
                        log::trace!("reactor: timer {id:?} still running; tick skipped");
                        left
                    } else {
                        let (run, done) = (Arc::clone(&task), Running(Arc::clone(&busy)));
                        hand_over(
                            pool,
                            id,
                            Box::new(move || {
                                let _done = done;
                                run();
                            }),
                        );
                        left.map(|n| n - 1)
                    };
                    if left != Some(0) {
                        let next = next_tick(deadline, interval, now);
                        self.add(id, next, Action::Every { task, interval, left, busy });
                    }
                }
            }
        }
        fired
    }
}

/// Keeps the period when on time; a reactor late by more than a whole period
/// restarts the schedule from now rather than firing a burst to catch up.
fn next_tick(deadline: Instant, interval: Duration, now: Instant) -> Instant {
    let next = deadline + interval;
    if next > now {
        next
    } else {
        now + interval
    }
}

fn hand_over(pool: &Pool, id: TimerId, task: Task) {
    if pool.run_boxed(task).is_err() {
        log::debug!("reactor: timer {id:?} dropped: the pool is shutting down");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn cancelled_entries_do_not_pile_up() {
        let mut timers = Timers::default();
        let far = Instant::now() + Duration::from_secs(3600);
        for i in 0..10_000 {
            timers.add(TimerId(i), far, Action::Once(Box::new(|| {})));
            assert!(timers.cancel(TimerId(i)));
        }
        assert!(timers.heap.len() <= 64 + 1, "heap kept {} dead entries", timers.heap.len());
        assert_eq!(timers.next_deadline(), None);
    }

    #[test]
    fn repeats_the_given_number_of_times() {
        let pool = Pool::new(1).expect("pool starts");
        let count = Arc::new(AtomicUsize::new(0));
        let mut timers = Timers::default();
        let start = Instant::now();
        let counter = Arc::clone(&count);
        let task: Repeat = Arc::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        timers.add(TimerId(1), start, Action::every(task, Duration::from_millis(1), Some(3)));
        // Ticks that find the previous run unfinished are skipped: keep ticking (a
        // bounded number of times) until three runs happened.
        let mut now = start;
        for _ in 0..100_000 {
            if timers.len() == 0 {
                break;
            }
            timers.fire_due(now, &pool);
            now += Duration::from_millis(1);
            std::thread::yield_now();
        }
        pool.finish();
        assert_eq!(count.load(Ordering::SeqCst), 3);
        assert_eq!(timers.len(), 0);
    }

    #[test]
    fn a_tick_that_finds_the_previous_run_unfinished_is_skipped_not_counted() {
        let pool = Pool::new(2).expect("pool starts");
        let (started, gate) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
        let (tell, hold) = (started.0, std::sync::Mutex::new(gate.1));
        let task: Repeat = Arc::new(move || {
            tell.send(()).expect("test waits");
            hold.lock().expect("no panic under lock").recv().expect("test releases");
        });
        let mut timers = Timers::default();
        let t0 = Instant::now();
        timers.add(TimerId(1), t0, Action::every(task, Duration::from_millis(1), Some(2)));
        timers.fire_due(t0, &pool);
        started.1.recv().expect("the first run started");
        for k in 1..=5 {
            timers.fire_due(t0 + Duration::from_millis(k), &pool); // the first run still holds
        }
        assert!(started.1.try_recv().is_err(), "a second run started beside the first");
        assert_eq!(timers.len(), 1, "skipped ticks do not use up the repetitions");
        gate.0.send(()).expect("release the first run");
        pool.finish();
    }

    #[test]
    fn late_ticks_restart_from_now() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(next_tick(t0, ms(10), t0 + ms(3)), t0 + ms(10));
        assert_eq!(next_tick(t0, ms(10), t0 + ms(25)), t0 + ms(35));
    }
}
