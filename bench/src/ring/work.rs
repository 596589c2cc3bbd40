//! The task every contender runs, and the proof that each one ran exactly once.
//!
//! A task marks its id in a bitmap that belongs to the worker thread running it (a
//! "lane"), so workers never write the same cache line: a shared counter would turn
//! every task into a contended atomic and the bench would measure that line bouncing
//! between cores, not the queues. After a run the lanes are merged: every id must be
//! set in exactly one lane, once.
//!
//! Tasks must be `'static`, and an `Arc` captured per task would add a contended
//! reference count to every push and run, so the state lives in an [`Arena`] leaked
//! once per process and reset between runs.

use std::cell::Cell;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread::{self, Thread};
use std::time::Instant;

use async_pool::Task;

use crate::error::{Error, Result};

/// Keeps a value on its own cache line (128 bytes, as `async_pool` does: x86 prefetches
/// lines in pairs), so that one thread's writes do not slow another's reads.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Padded<T>(pub T);

impl<T> Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Adds one to a counter that only the calling thread writes: a plain load and store,
/// no locked instruction, as `async_pool` counts its own tasks.
fn bump(counter: &AtomicU64) {
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// Locks a mutex, ignoring poisoning: the guarded values are replaced whole, never left
/// half-written by a panic.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

thread_local! {
    /// The lane this thread writes: (arena id, arena generation, lane index). A thread
    /// of an earlier run or another arena claims a fresh lane on its first task.
    static LANE: Cell<(usize, u64, usize)> = const { Cell::new((0, 0, 0)) };
}

/// Arena ids start at 1 so that the zeroed thread-local matches none.
static NEXT_ARENA: AtomicUsize = AtomicUsize::new(1);

/// What one worker thread ran in the current run. Only that thread writes it while the
/// run lasts; the verifier reads it after the workers are joined.
#[derive(Debug)]
struct Lane {
    bits: Box<[AtomicU64]>,
    ran: AtomicU64,
    /// Ids this thread found already marked by itself.
    repeats: AtomicU64,
}

impl Lane {
    fn mark(&self, id: u64) {
        let word = &self.bits[(id / 64) as usize];
        let bit = 1u64 << (id % 64);
        let old = word.load(Ordering::Relaxed);
        if old & bit != 0 {
            bump(&self.repeats);
        } else {
            word.store(old | bit, Ordering::Relaxed);
        }
        bump(&self.ran);
    }
}

/// Where a producer in bursty mode waits until its burst has run.
#[derive(Debug, Default)]
struct Gate {
    /// Tasks of this producer that have run so far in this run.
    done: AtomicU64,
    /// The producer, unparked by the task that completes a burst.
    waiter: Mutex<Option<Thread>>,
}

impl Gate {
    fn arrive(&self, burst_end: u64) {
        if self.done.fetch_add(1, Ordering::AcqRel) + 1 == burst_end {
            if let Some(t) = lock(&self.waiter).as_ref() {
                t.unpark();
            }
        }
    }
}

/// The state every task of a run writes: per-worker lanes and per-producer gates.
#[derive(Debug)]
pub struct Arena {
    id: usize,
    /// Read by every task, written only between runs.
    generation: Padded<AtomicU64>,
    /// Lanes handed out this run (one claim per worker thread).
    claimed: Padded<AtomicUsize>,
    /// A task ran on a thread that found no lane left: more threads than workers.
    stray: AtomicBool,
    capacity: u64,
    lanes: Box<[Padded<Lane>]>,
    gates: Box<[Padded<Gate>]>,
}

impl Arena {
    /// An arena for runs of at most `capacity` tasks on at most `workers` worker
    /// threads from at most `producers` producers; leaked, because tasks are `'static`
    /// and must reach it without a reference count.
    pub fn leak(capacity: u64, workers: usize, producers: usize) -> &'static Arena {
        let words = capacity.div_ceil(64) as usize;
        let lanes = (0..workers)
            .map(|_| {
                Padded(Lane {
                    bits: (0..words).map(|_| AtomicU64::new(0)).collect(),
                    ran: AtomicU64::new(0),
                    repeats: AtomicU64::new(0),
                })
            })
            .collect();
        let arena = Arena {
            id: NEXT_ARENA.fetch_add(1, Ordering::Relaxed),
            generation: Padded(AtomicU64::new(0)),
            claimed: Padded(AtomicUsize::new(0)),
            stray: AtomicBool::new(false),
            capacity,
            lanes,
            gates: (0..producers).map(|_| Padded(Gate::default())).collect(),
        };
        Box::leak(Box::new(arena))
    }

    /// Clears the arena for a run of `tasks` tasks. Call it before the run's pool
    /// starts and after the previous run's pool has been joined.
    pub fn begin(&self, tasks: u64, producers: usize) -> Result<()> {
        if tasks > self.capacity || producers > self.gates.len() {
            return Err(Error::Tool(format!(
                "ring: a run of {tasks} tasks from {producers} producers does not fit an arena for {} tasks from {}",
                self.capacity,
                self.gates.len()
            )));
        }
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.claimed.store(0, Ordering::SeqCst);
        self.stray.store(false, Ordering::SeqCst);
        let words = tasks.div_ceil(64) as usize;
        for lane in self.lanes.iter() {
            lane.bits[..words].iter().for_each(|w| w.store(0, Ordering::Relaxed));
            lane.ran.store(0, Ordering::Relaxed);
            lane.repeats.store(0, Ordering::Relaxed);
        }
        for gate in self.gates.iter() {
            gate.done.store(0, Ordering::Relaxed);
            *lock(&gate.waiter) = None;
        }
        Ok(())
    }

    /// The task with id `id`; in bursty mode `gate` is (producer, tasks of that
    /// producer done once this task's burst has run). Every contender gets the same.
    pub fn task(&'static self, id: u64, gate: Option<(usize, u64)>) -> Task {
        Box::new(move || self.record(id, gate))
    }

    fn record(&self, id: u64, gate: Option<(usize, u64)>) {
        match self.lane() {
            Some(lane) => lane.mark(id),
            None => self.stray.store(true, Ordering::Relaxed),
        }
        if let Some((producer, burst_end)) = gate {
            self.gates[producer].arrive(burst_end);
        }
    }

    fn lane(&self) -> Option<&Lane> {
        let generation = self.generation.load(Ordering::Relaxed);
        let index = LANE.with(|cell| {
            let (arena, seen, index) = cell.get();
            if arena == self.id && seen == generation {
                return index;
            }
            let index = self.claimed.fetch_add(1, Ordering::Relaxed);
            cell.set((self.id, generation, index));
            index
        });
        self.lanes.get(index).map(|lane| &lane.0)
    }

    /// Registers the calling thread as producer `producer`, the one its gate wakes.
    pub fn register_producer(&self, producer: usize) {
        *lock(&self.gates[producer].waiter) = Some(thread::current());
    }

    /// Blocks the calling producer until `burst_end` of its tasks have run, or fails
    /// at `deadline` (a lost wake-up must end the run, not hang it).
    pub fn wait_burst(&self, producer: usize, burst_end: u64, deadline: Instant) -> Result<()> {
        let gate = &self.gates[producer];
        while gate.done.load(Ordering::Acquire) < burst_end {
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Tool(format!(
                    "ring: producer {producer} waited in vain for its tasks up to {burst_end} (ran {}): a lost wake-up?",
                    gate.done.load(Ordering::Acquire)
                )));
            }
            thread::park_timeout(deadline - now);
        }
        Ok(())
    }

    /// Checks that ids `0..tasks` each ran exactly once. Call it after the workers are
    /// joined (the join orders their writes before these reads).
    pub fn verify(&self, tasks: u64) -> Result<()> {
        let fail = |what: String| Err(Error::Tool(format!("ring: broken run: {what}")));
        if self.stray.load(Ordering::SeqCst) {
            return fail(format!("tasks ran on more threads than the {} workers", self.lanes.len()));
        }
        let repeats: u64 = self.lanes.iter().map(|l| l.repeats.load(Ordering::SeqCst)).sum();
        if repeats > 0 {
            return fail(format!("{repeats} tasks ran twice on the same worker"));
        }
        let ran: u64 = self.lanes.iter().map(|l| l.ran.load(Ordering::SeqCst)).sum();
        if ran != tasks {
            return fail(format!("{ran} task runs for {tasks} tasks"));
        }
        for word in 0..tasks.div_ceil(64) {
            let mut seen = 0u64;
            for lane in self.lanes.iter() {
                let bits = lane.bits[word as usize].load(Ordering::SeqCst);
                if seen & bits != 0 {
                    let id = word * 64 + u64::from((seen & bits).trailing_zeros());
                    return fail(format!("task {id} ran on two workers"));
                }
                seen |= bits;
            }
            let wanted = if (word + 1) * 64 <= tasks { u64::MAX } else { (1u64 << (tasks % 64)) - 1 };
            if seen != wanted {
                let id = word * 64 + u64::from((!seen & wanted).trailing_zeros());
                return fail(format!("task {id} never ran"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_on_threads(arena: &'static Arena, ids: &[Vec<u64>]) {
        std::thread::scope(|s| {
            for mine in ids {
                s.spawn(move || mine.iter().for_each(|&id| arena.task(id, None)()));
            }
        });
    }

    #[test]
    fn exactly_once_passes_and_every_fault_is_caught() {
        let arena = Arena::leak(200, 2, 1);
        arena.begin(130, 1).expect("fits");
        run_on_threads(arena, &[(0..65).collect(), (65..130).collect()]);
        arena.verify(130).expect("every id ran once");

        arena.begin(130, 1).expect("fits");
        run_on_threads(arena, &[(0..65).collect(), (66..130).collect()]);
        assert!(arena.verify(130).is_err(), "id 65 is missing");

        arena.begin(130, 1).expect("fits");
        run_on_threads(arena, &[(0..66).collect(), (65..130).collect()]);
        assert!(arena.verify(130).is_err(), "id 65 ran on both threads");

        arena.begin(3, 1).expect("fits");
        run_on_threads(arena, &[vec![0, 1, 1, 2]]);
        assert!(arena.verify(3).is_err(), "id 1 ran twice on one thread");

        arena.begin(3, 1).expect("fits");
        run_on_threads(arena, &[vec![0], vec![1], vec![2]]);
        assert!(arena.verify(3).is_err(), "three threads for two lanes");
    }
}
