//! `bench ring`: `async_pool` against the same pool built on
//! `crossbeam_queue::ArrayQueue`, and against `std::sync::mpsc`.
//!
//! In `ARCHITECTURE.md`'s picture this measures the box between the reactor and the hooks:
//! how many tasks per second the pool moves from producer threads to its workers, and
//! how often a task costs a pipe write to wake a parked worker. The crossbeam pool
//! keeps `async_pool`'s whole design (queue capacity, overflow, idle spin, park/wake
//! handshake on a pipe) and swaps only the ring, so ours/crossbeam isolates our ring;
//! `std::sync::mpsc` is the pool one writes without either, so ours/mpsc says whether
//! the design pays for itself.
//!
//! Four scenarios, 1 and 4 producers into `--threads` workers (default 2):
//! - saturated: producers push as fast as they can; the queues fill and spill, and the
//!   workers rarely park, so this is the queues' throughput;
//! - bursty: each producer pushes 16 tasks, then waits until they have run; workers
//!   go idle between bursts, so this is the wake-up path, where the doorbell matters.
//!
//! Every task is the same `Box<dyn FnOnce() + Send>` for all three pools and marks its
//! id in a bitmap of the worker running it (see [`work`]), so after each run the bench
//! checks that every task ran exactly once and refuses to report a broken run. Rounds
//! alternate (ours, crossbeam, mpsc, ours, ...) and ratios are taken round by round.

mod chan;
mod drive;
mod work;
mod xbeam;

use crate::error::Result;
use crate::report::{self, Chart, Report, Series, Table};
use crate::stats::{self, Summary};
use crate::Ctx;

use drive::{Kind, Sample, Scenario, RING_CAPACITY};
use work::Arena;

/// Tasks a bursty producer pushes before waiting for them.
const BURST: u64 = 16;

/// The most producers of any scenario.
const MAX_PRODUCERS: usize = 4;

/// Runs the subcommand.
pub fn run(ctx: &Ctx) -> Result<()> {
    // A bursty producer waits for every burst, so it moves several times fewer tasks per
    // second; fewer tasks keep its runs about as long as the saturated ones.
    let (saturated, bursty) = if ctx.quick { (200_000, 20_000) } else { (4_000_000, 800_000) };
    let scenarios = [
        Scenario { producers: 1, tasks: saturated, burst: None },
        Scenario { producers: MAX_PRODUCERS, tasks: saturated, burst: None },
        Scenario { producers: 1, tasks: bursty, burst: Some(BURST) },
        Scenario { producers: MAX_PRODUCERS, tasks: bursty, burst: Some(BURST) },
    ];
    let arena = Arena::leak(saturated.max(bursty), ctx.threads, MAX_PRODUCERS);

    let mut r = ctx.report("ring")?;
    r.note(&setup_note(ctx, saturated, bursty));

    let runs = Kind::ALL.len() * (1 + ctx.rounds * scenarios.len());
    let bar = report::progress(runs as u64);
    // One unrecorded run each, so that no contender pays alone for growing the heap.
    for kind in Kind::ALL {
        bar.set_message(format!("warm-up {}", kind.name()));
        drive::measure(kind, &scenarios[1], arena, ctx.threads)?;
        bar.inc(1);
    }
    // results[scenario][contender]: one sample per round.
    let mut results = vec![vec![Vec::new(); Kind::ALL.len()]; scenarios.len()];
    for round in 0..ctx.rounds {
        for (si, scenario) in scenarios.iter().enumerate() {
            for (k, kind) in Kind::ALL.into_iter().enumerate() {
                bar.set_message(format!("{} · {} · round {}", label(scenario, " "), kind.name(), round + 1));
                results[si][k].push(drive::measure(kind, scenario, arena, ctx.threads)?);
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    publish(&mut r, &scenarios, &results)?;
    r.finish()
}

/// What was run and how, printed above the table.
fn setup_note(ctx: &Ctx, saturated: u64, bursty: u64) -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let pinning = if ctx.pin {
        "Threads are not pinned here, despite the default pinning of the other subcommands"
    } else {
        "Threads are not pinned"
    };
    format!(
        "Each run starts a fresh pool of {threads} workers and times the producers' start until \
         every task has run and the workers are joined: {saturated} tasks per saturated run, \
         {bursty} per bursty run (bursts of {BURST}, each producer waiting for its burst to run). \
         Queues hold {RING_CAPACITY} tasks per worker (async_pool's default), then spill. Every \
         task is a `Box<dyn FnOnce() + Send>` marking its id in its worker's bitmap; each run is \
         checked to have run every task exactly once. {pinning}: the {threads} workers and up to \
         {MAX_PRODUCERS} producers share the {cores} cores as the scheduler places them (pinning \
         the workers to one CPU would measure time-slicing, not the queues). Wake-ups/task counts \
         pipe writes; mpsc wakes its workers inside the channel (futex), so it has none to count \
         and, being unbounded, never spills.",
        threads = ctx.threads,
    )
}

/// How a scenario's producers push.
fn mode(s: &Scenario) -> String {
    match s.burst {
        None => "saturated".to_string(),
        Some(n) => format!("bursts of {n}"),
    }
}

/// A scenario's name, its two parts joined by `sep` (a newline under a chart bar).
fn label(s: &Scenario, sep: &str) -> String {
    let mode = mode(s);
    let producers =
        if s.producers == 1 { "1 producer".to_string() } else { format!("{} producers", s.producers) };
    format!("{mode}{sep}{producers}")
}

/// A warning under the table when most tasks of some run went through the overflow
/// list: such a row no longer compares the queues alone.
fn spill_note(scenarios: &[Scenario], results: &[Vec<Vec<Sample>>]) -> Option<String> {
    let fractions: Vec<f64> = scenarios
        .iter()
        .zip(results)
        .flat_map(|(s, per_kind)| {
            per_kind.iter().flatten().filter_map(move |x| x.spills.map(|n| n / s.tasks as f64))
        })
        .collect();
    let spilled = Summary::of(&fractions).filter(|f| f.max > 0.5)?;
    Some(format!(
        "Up to {:.0} % of the tasks of a run spilled: the producers outran the workers, filled \
         the {RING_CAPACITY}-task queues, and from then on queued behind the overflow list (a \
         `Mutex<VecDeque>`, the same in async_pool and the crossbeam pool) until the workers \
         caught up. Rows with that many spills measure the overflow path as much as the queues; \
         rows with no spills compare the queues and the wake-up path alone.",
        spilled.max * 100.0
    ))
}

/// The table and the two charts.
fn publish(r: &mut Report, scenarios: &[Scenario], results: &[Vec<Vec<Sample>>]) -> Result<()> {
    let mut table = Table::new(
        "ring",
        "Tasks/s into the worker pool (median, min–max over rounds) and pipe wake-ups per task",
        &[
            "scenario",
            "producers",
            "contender",
            "M tasks/s",
            "wake-ups/task",
            "spills/run",
            "tasks/s ratio ours/this",
        ],
    );
    let anchors = [Kind::Crossbeam, Kind::Mpsc];
    let mut ratio_series: Vec<Series> = anchors
        .iter()
        .map(|a| Series { name: format!("async_pool / {}", a.name()), values: Vec::new() })
        .collect();
    let mut rate_series: Vec<Series> =
        Kind::ALL.iter().map(|k| Series { name: k.name().to_string(), values: Vec::new() }).collect();
    for (scenario, per_kind) in scenarios.iter().zip(results) {
        let rates = |k: usize| per_kind[k].iter().map(|s| s.tasks_per_sec / 1e6).collect::<Vec<f64>>();
        for (k, kind) in Kind::ALL.into_iter().enumerate() {
            let pick = |f: fn(&Sample) -> Option<f64>| {
                Summary::of(&per_kind[k].iter().filter_map(f).collect::<Vec<_>>())
            };
            let ratio = if k == 0 {
                "–".to_string()
            } else {
                stats::show(Summary::of_ratios(&rates(0), &rates(k)), 2)
            };
            table.push(vec![
                mode(scenario),
                scenario.producers.to_string(),
                kind.name().to_string(),
                stats::show(Summary::of(&rates(k)), 2),
                stats::show(pick(|s| s.wakeups_per_task), 4),
                stats::show(pick(|s| s.spills), 0),
                ratio,
            ]);
            rate_series[k].values.push(Summary::of(&rates(k)));
        }
        for (series, anchor) in ratio_series.iter_mut().zip(anchors) {
            let a = Kind::ALL.iter().position(|k| *k == anchor).expect("every anchor is in Kind::ALL");
            series.values.push(Summary::of_ratios(&rates(0), &rates(a)));
        }
    }
    r.table(&table)?;
    if let Some(note) = spill_note(scenarios, results) {
        r.note(&note);
    }
    let categories: Vec<String> = scenarios.iter().map(|s| label(s, "\n")).collect();
    r.chart(&Chart {
        name: "ring_ratio".into(),
        title: "async_pool tasks/s relative to each anchor (median, min–max over rounds; > 1: ours faster)"
            .into(),
        y_label: "tasks/s ratio async_pool / anchor".into(),
        categories: categories.clone(),
        series: ratio_series,
        reference: Some(1.0),
    })?;
    r.chart(&Chart {
        name: "ring_tasks".into(),
        title: "Tasks/s per pool (median, min–max over rounds)".into(),
        y_label: "million tasks/s".into(),
        categories,
        series: rate_series,
        reference: None,
    })
}
