//! One measured run: a fresh pool of one contender, producer threads released together,
//! the clock stopped when the pool has run every task and joined its workers.

use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use async_pool::Task;

use super::chan::MpscPool;
use super::work::Arena;
use super::xbeam::CrossbeamPool;
use crate::error::{Context, Error, Result};

/// Tasks each worker's queue holds before spilling, for `async_pool` and crossbeam
/// alike: `async_pool`'s default ring capacity.
pub const RING_CAPACITY: usize = 1024;

/// How long a producer waits for one burst before calling the run broken.
const BURST_TIMEOUT: Duration = Duration::from_secs(30);

/// The pools compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `async_pool::Pool`: ours.
    Ours,
    /// The same design around `crossbeam_queue::ArrayQueue`.
    Crossbeam,
    /// One `std::sync::mpsc` channel per worker.
    Mpsc,
}

impl Kind {
    /// Every contender, ours first: the order of each round.
    pub const ALL: [Kind; 3] = [Kind::Ours, Kind::Crossbeam, Kind::Mpsc];

    /// The name in tables and legends.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Ours => "async_pool",
            Kind::Crossbeam => "crossbeam ArrayQueue",
            Kind::Mpsc => "std mpsc",
        }
    }
}

/// What the producers of one run do.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// Producer threads, each pushing an equal share.
    pub producers: usize,
    /// Tasks in the run, over all producers.
    pub tasks: u64,
    /// `None`: push as fast as possible. `Some(n)`: push `n`, then wait until they ran.
    pub burst: Option<u64>,
}

/// What one run measured.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Tasks over wall time from the producers' start until every task had run.
    pub tasks_per_sec: f64,
    /// Pipe writes per task; `None` for a pool that does not wake through a pipe.
    pub wakeups_per_task: Option<f64>,
    /// Tasks that found the queue full; `None` for a pool that cannot be full.
    pub spills: Option<f64>,
}

/// A finished pool's counters.
#[derive(Debug, Clone, Copy)]
struct Counters {
    tasks_run: u64,
    pipe_wakeups: Option<u64>,
    spills: Option<u64>,
}

/// The two operations a run needs from a pool.
trait Contender: Sync + Sized {
    /// Queues a task on the next worker, round-robin.
    fn submit(&self, task: Task) -> Result<()>;
    /// Runs what is queued, joins the workers, returns the counters.
    fn join(self) -> Result<Counters>;
}

impl Contender for async_pool::Pool {
    fn submit(&self, task: Task) -> Result<()> {
        self.run_boxed(task).map_err(|e| Error::Tool(format!("ring: async_pool: {e}")))
    }

    fn join(self) -> Result<Counters> {
        self.finish();
        let total = self.stats().total();
        Ok(Counters {
            tasks_run: total.tasks_run,
            pipe_wakeups: Some(total.pipe_wakeups),
            spills: Some(total.spills),
        })
    }
}

impl Contender for CrossbeamPool {
    fn submit(&self, task: Task) -> Result<()> {
        self.run(task)
    }

    fn join(self) -> Result<Counters> {
        let c = self.finish()?;
        Ok(Counters { tasks_run: c.tasks_run, pipe_wakeups: Some(c.pipe_wakeups), spills: Some(c.spills) })
    }
}

impl Contender for MpscPool {
    fn submit(&self, task: Task) -> Result<()> {
        self.run(task)
    }

    fn join(self) -> Result<Counters> {
        Ok(Counters { tasks_run: self.finish()?, pipe_wakeups: None, spills: None })
    }
}

/// Runs `scenario` once on a fresh pool of `kind` with `threads` workers and checks
/// that every task ran exactly once; a broken run is an error, never a figure.
pub fn measure(kind: Kind, scenario: &Scenario, arena: &'static Arena, threads: usize) -> Result<Sample> {
    arena.begin(scenario.tasks, scenario.producers)?;
    match kind {
        Kind::Ours => {
            let pool = async_pool::Pool::builder()
                .threads(threads)
                .ring_capacity(RING_CAPACITY)
                .name("ring-ours")
                .build()
                .context(|| "ring: starting async_pool".into())?;
            drive(pool, scenario, arena)
        }
        Kind::Crossbeam => drive(CrossbeamPool::new(threads, RING_CAPACITY)?, scenario, arena),
        Kind::Mpsc => drive(MpscPool::new(threads)?, scenario, arena),
    }
}

fn drive<C: Contender>(pool: C, scenario: &Scenario, arena: &'static Arena) -> Result<Sample> {
    // Producers start together once spawned, so thread start-up is not timed.
    let start_line = Barrier::new(scenario.producers + 1);
    let (start, produced) = thread::scope(|s| {
        let handles: Vec<_> = (0..scenario.producers)
            .map(|p| {
                let (pool, start_line) = (&pool, &start_line);
                s.spawn(move || produce(pool, scenario, arena, p, start_line))
            })
            .collect();
        start_line.wait();
        let start = Instant::now();
        let produced: Vec<Result<()>> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(Error::Tool("ring: a producer panicked".into()))))
            .collect();
        (start, produced)
    });
    // Join the pool even after a producer failed, so that its workers do not outlive the run.
    let counters = pool.join();
    let elapsed = start.elapsed();
    produced.into_iter().collect::<Result<()>>()?;
    let counters = counters?;
    arena.verify(scenario.tasks)?;
    if counters.tasks_run != scenario.tasks {
        return Err(Error::Tool(format!(
            "ring: broken run: the pool counted {} tasks run for {}",
            counters.tasks_run, scenario.tasks
        )));
    }
    let tasks = scenario.tasks as f64;
    Ok(Sample {
        tasks_per_sec: tasks / elapsed.as_secs_f64(),
        wakeups_per_task: counters.pipe_wakeups.map(|w| w as f64 / tasks),
        spills: counters.spills.map(|s| s as f64),
    })
}

/// Producer `p`: pushes its share of ids, in bursts if the scenario says so.
fn produce<C: Contender>(
    pool: &C,
    scenario: &Scenario,
    arena: &'static Arena,
    p: usize,
    start_line: &Barrier,
) -> Result<()> {
    let producers = scenario.producers as u64;
    let first = scenario.tasks * p as u64 / producers;
    let end = scenario.tasks * (p as u64 + 1) / producers;
    arena.register_producer(p);
    start_line.wait();
    let Some(burst) = scenario.burst else {
        for id in first..end {
            pool.submit(arena.task(id, None))?;
        }
        return Ok(());
    };
    let mut id = first;
    while id < end {
        let stop = (id + burst).min(end);
        // The gate counts this producer's tasks, so a burst is done at `stop - first`.
        let burst_end = stop - first;
        for k in id..stop {
            pool.submit(arena.task(k, Some((p, burst_end))))?;
        }
        arena.wait_burst(p, burst_end, Instant::now() + BURST_TIMEOUT)?;
        id = stop;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_contender_runs_every_scenario_exactly_once() {
        let arena = Arena::leak(4_000, 2, 4);
        for burst in [None, Some(16)] {
            for producers in [1, 4] {
                let scenario = Scenario { producers, tasks: 4_000, burst };
                for kind in Kind::ALL {
                    let sample = measure(kind, &scenario, arena, 2).expect("the run is whole");
                    assert!(sample.tasks_per_sec > 0.0);
                    assert_eq!(sample.wakeups_per_task.is_some(), kind != Kind::Mpsc);
                }
            }
        }
    }
}
