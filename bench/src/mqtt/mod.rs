//! `bench mqtt`: our broker against mosquitto, driven by bench's own MQTT load
//! generator, with an in-process sink as the generator's ceiling.
//!
//! Scenarios (each on every contender, in alternating runs per round): fan-out (one
//! publisher, 1 to 1,000 subscribers), fan-in (1 to 1,000 publishers, one subscriber),
//! both at QoS 0 and 1 with 64-byte payloads, and a paced latency run (1,000
//! subscribers at 1 msg/s). Every run counts lost and duplicated deliveries.
//! Fan-out 1→100 also runs under connection churn (500 clients a second connect,
//! subscribe and disconnect beside it), each churn run paired with a quiet run of the
//! same round, for the drop in delivered msg/s (issue 13: under 10 %, nothing lost).
//! `bench mqtt --count` instead counts our broker's allocations and syscalls per
//! delivered message ([`count`], with [`syscalls`] attaching perf or strace).
//!
//! Files: [`brokers`] starts the contenders, [`load`] is the generator (with [`setup`]
//! connecting its clients and [`wire`] its per-message bytes), [`churn`] the second
//! generator thread, [`sink`] the trivial broker, [`tally`] what a run counts,
//! [`tables`] the report.

pub(crate) mod brokers;
mod churn;
mod count;
mod load;
mod setup;
mod sink;
mod syscalls;
mod tables;
mod tally;
mod wire;

#[cfg(test)]
mod tests;

use std::time::Duration;

use pubsub_protocol::packet::QoS;

use self::brokers::{Brokers, Contender};
use self::churn::Churn;
use self::load::{Mark, Scenario};
use self::tally::Outcome;
use crate::error::{Error, Result};
use crate::{procs, report, Ctx};

/// What a case measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One publisher, many subscribers, as fast as the window allows.
    FanOut,
    /// Many publishers, one subscriber, as fast as the window allows.
    FanIn,
    /// One publisher at a low fixed rate, many subscribers: latency, not throughput.
    Paced,
    /// Fan-out, once quiet and once beside connection churn.
    Churn,
}

/// One scenario and who runs it.
#[derive(Debug, Clone)]
pub struct Case {
    /// Which table it belongs to.
    pub kind: Kind,
    /// What the generator does.
    pub scenario: Scenario,
    /// Who serves it, in the order they alternate.
    pub contenders: Vec<Contender>,
    /// [`Kind::Churn`]: the churn of the second run of each pair.
    pub churn: Option<churn::Plan>,
}

impl Case {
    /// "fan-out 1→100 QoS 1" and the like.
    pub fn label(&self) -> String {
        let s = &self.scenario;
        let kind = match self.kind {
            Kind::FanOut => "fan-out",
            Kind::FanIn => "fan-in",
            Kind::Paced => "paced",
            Kind::Churn => "churn fan-out",
        };
        format!("{kind} {}→{} QoS {}", s.publishers, s.subscribers, s.qos as u8)
    }
}

/// Outcomes of one case: per contender (index of [`Contender::ALL`]), one per round.
pub type Runs = [Vec<Outcome>; 3];

/// Options of `bench mqtt`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Instead of the comparison: build pubsub with a counting allocator and count its
    /// allocations and syscalls per delivered message (needs perf or strace).
    #[arg(long)]
    pub count: bool,
    /// Only the cases whose label contains TEXT ("fan-out 1→100", "churn", "paced"), for
    /// an A/B of one change; needs --out or --quick (BENCHMARKS.md takes whole runs).
    #[arg(long, value_name = "TEXT")]
    pub only: Option<String>,
}

/// Runs the subcommand.
pub fn run(ctx: &Ctx, args: &Args) -> Result<()> {
    if args.count {
        return count::run(ctx);
    }
    let mut cases = plan(ctx);
    if let Some(only) = &args.only {
        if ctx.publish {
            return Err(Error::Tool("--only measures some cases: give --out DIR (or --quick)".into()));
        }
        cases.retain(|c| c.label().contains(only.as_str()));
        if cases.is_empty() {
            return Err(Error::Tool(format!("no case's label contains {only:?}")));
        }
    }
    let mut r = ctx.report("mqtt")?;
    let brokers = Brokers::start(ctx)?;
    r.note(&brokers.note);
    r.note(&plan_note(ctx, &cases));
    let measured = ctx.client_cpu().map_or(Ok(()), procs::pin_current_thread).and_then(|()| {
        let started = std::time::Instant::now();
        let runs = measure(ctx, &cases, &brokers)?;
        Ok((runs, started.elapsed()))
    });
    let stopped = brokers.stop();
    let (runs, took) = measured?;
    stopped?;
    tables::write(&mut r, &cases, &runs)?;
    r.note(&format!("Measured in {:.0} s.", took.as_secs_f64()));
    r.finish()
}

/// Publishing time of a throughput run.
fn duration(ctx: &Ctx) -> Duration {
    Duration::from_millis(if ctx.quick { 300 } else { 1500 })
}

/// Fan-out window: 64 messages in flight, fewer for 1,000 subscribers so that no more
/// than about 16,000 deliveries are outstanding (the latency under load stays a
/// measure of the broker, not of a queue the generator built).
fn fan_out_window(subscribers: usize) -> usize {
    (16_384 / subscribers.max(1)).clamp(16, 64)
}

/// Fan-in: 64 messages in flight over all publishers, at least one each turn.
const FAN_IN_WINDOW: usize = 64;

/// Churn: clients started per second beside the fan-out (issue 13), and the most open
/// at once (a broker taking 0.5 s per client would reach it).
const CHURN_RATE: u32 = 500;
const CHURN_MAX_OPEN: usize = 256;
/// Subscribers of the fan-out under churn.
const CHURN_FAN_OUT: usize = 100;

/// The cases of this run: a reduced set with `--quick`.
fn plan(ctx: &Ctx) -> Vec<Case> {
    let (fan_out, fan_in): (&[usize], &[usize]) =
        if ctx.quick { (&[1, 100], &[10]) } else { (&[1, 10, 100, 1000], &[1, 10, 100, 1000]) };
    let all = Contender::ALL.to_vec();
    let mut cases = Vec::new();
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
        for &n in fan_out {
            let w = fan_out_window(n);
            let scenario = throughput(ctx, 1, n, qos, w, w);
            cases.push(Case { kind: Kind::FanOut, scenario, contenders: all.clone(), churn: None });
        }
        for &n in fan_in {
            let scenario = throughput(ctx, n, 1, qos, (FAN_IN_WINDOW / n).max(1), FAN_IN_WINDOW);
            cases.push(Case { kind: Kind::FanIn, scenario, contenders: all.clone(), churn: None });
        }
    }
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
        let w = fan_out_window(CHURN_FAN_OUT);
        let plan = churn::Plan { rate: CHURN_RATE, duration: duration(ctx), max_open: CHURN_MAX_OPEN };
        cases.push(Case {
            kind: Kind::Churn,
            scenario: throughput(ctx, 1, CHURN_FAN_OUT, qos, w, w),
            // The sink does no routing, so churn has nothing to disturb there.
            contenders: vec![Contender::Ours, Contender::Mosquitto],
            churn: Some(plan),
        });
    }
    cases.push(paced(ctx));
    cases
}

fn throughput(
    ctx: &Ctx,
    publishers: usize,
    subscribers: usize,
    qos: QoS,
    window: usize,
    total: usize,
) -> Scenario {
    Scenario {
        publishers,
        subscribers,
        qos,
        window,
        total_window: total,
        duration: duration(ctx),
        interval: None,
    }
}

/// DESIGN.md's latency target: 1,000 subscribers at 1 msg/s (100 at 20 msg/s quick).
fn paced(ctx: &Ctx) -> Case {
    let (subscribers, interval, secs) = if ctx.quick { (100, 50, 0.5) } else { (1000, 1000, 5.0) };
    let scenario = Scenario {
        publishers: 1,
        subscribers,
        qos: QoS::AtMostOnce,
        window: 64,
        total_window: 64,
        duration: Duration::from_secs_f64(secs),
        interval: Some(Duration::from_millis(interval)),
    };
    Case { kind: Kind::Paced, scenario, contenders: vec![Contender::Ours, Contender::Mosquitto], churn: None }
}

fn plan_note(ctx: &Ctx, cases: &[Case]) -> String {
    let paced = cases.iter().find(|c| c.kind == Kind::Paced).map(|c| &c.scenario);
    let (paced_subs, paced_rate, paced_secs) = paced.map_or((0, 0.0, 0.0), |s| {
        let rate = s.interval.map_or(0.0, |i| 1.0 / i.as_secs_f64());
        (s.subscribers, rate, s.duration.as_secs_f64())
    });
    format!(
        "Load generator: one bench thread (on the client CPU when pinning) drives every client \
         through one mio poll; clients connect with clean sessions and unique ids, subscribers \
         subscribe to the run's own topic and wait for SUBACK before publishing starts (set-up \
         is not timed). Payload 64 bytes: publisher id, sequence number, send time (ns). \
         Closed loop: a message is outstanding until its last subscriber has it; fan-out keeps \
         at most W = clamp(16384 / subscribers, 16, 64) messages outstanding (64 up to 100 \
         subscribers, 16 for 1,000); fan-in at most {FAN_IN_WINDOW} over all publishers and \
         max(1, {FAN_IN_WINDOW} / publishers) per publisher, served round-robin. Publishing \
         lasts {:.1} s, then the run drains until nothing is outstanding or nothing arrives for \
         1 s. Delivered msg/s = distinct deliveries / (last delivery − first publish). \
         Latency = receive − send time of each distinct delivery (log-bucketed histogram, \
         ±1.6 %). Lost = published × subscribers − distinct deliveries; dup = deliveries of \
         a message a subscriber already had; both summed over rounds. Time measures (fan-out): \
         (1) Σ over deliveries of publish→receive, (2) wall time first publish → last \
         delivery, (3) Σ over messages of publish → its last subscriber's receive; runs last a \
         fixed time, so per-message values compare brokers. Paced: {paced_subs} subscribers, \
         {paced_rate:.0} msg/s QoS 0 for {paced_secs:.1} s. Churn: fan-out 1→{CHURN_FAN_OUT} \
         runs twice per broker and round, quiet then under churn; a second bench thread (its \
         own mio poll, on the client CPU when pinning) starts {CHURN_RATE} clients a second \
         while publishing lasts (at most {CHURN_MAX_OPEN} open), each sending CONNECT (clean \
         session) and SUBSCRIBE to a topic of its own (one in {} also to `{}`, which matches \
         the run's topic, so its routing changes and that client gets deliveries too, which \
         the broker pays for), holding {} ms after SUBACK, then DISCONNECT and waiting for \
         the broker's close. Ratios ours/mosquitto are taken per round, then summarised as \
         median (min–max).",
        duration(ctx).as_secs_f64(),
        churn::WILDCARD_EVERY,
        churn::WILDCARD,
        churn::HOLD.as_millis(),
    )
}

/// Runs every case on every contender, alternating within each round.
fn measure(ctx: &Ctx, cases: &[Case], brokers: &Brokers) -> Result<Vec<Runs>> {
    let per_round: usize = cases.iter().map(|c| c.contenders.len() * passes(c).len()).sum();
    let bar = report::progress((per_round * ctx.rounds) as u64);
    let mut runs: Vec<Runs> = cases.iter().map(|_| Default::default()).collect();
    let mut run_id = 0u64;
    for round in 1..=ctx.rounds {
        for (case, slot) in cases.iter().zip(&mut runs) {
            for &c in &case.contenders {
                for &churn in passes(case) {
                    let what =
                        format!("{}{} on {}", case.label(), if churn { "" } else { " (quiet)" }, c.name());
                    bar.set_message(format!("round {round}: {what}"));
                    let cpu = || brokers.cpu_time(c);
                    let plan = case.churn.filter(|_| churn);
                    let outcome = run_once(ctx, brokers.addr(c), &case.scenario, plan, run_id, &cpu)
                        .map_err(|e| Error::Tool(format!("{what}, round {round}: {e}")))?;
                    slot[c.index()].push(outcome);
                    run_id += 1;
                    bar.inc(1);
                }
            }
        }
    }
    bar.finish_and_clear();
    Ok(runs)
}

/// Per contender and round: one run, or for a churn case a quiet run then a churned one
/// (`true`), back to back, so their ratio sees the same machine state.
fn passes(case: &Case) -> &'static [bool] {
    if case.churn.is_some() {
        &[false, true]
    } else {
        &[false]
    }
}

/// One run, with the churn thread going from [`Mark::Start`] to [`Mark::End`] if
/// `churn` is given; its tally lands in the outcome.
fn run_once(
    ctx: &Ctx,
    addr: std::net::SocketAddr,
    scenario: &Scenario,
    churn: Option<churn::Plan>,
    run_id: u64,
    cpu: &dyn Fn() -> Duration,
) -> Result<Outcome> {
    let Some(plan) = churn else { return load::run(addr, scenario, run_id, cpu, &mut |_| Ok(())) };
    let (mut running, mut tally) = (None, None);
    let mut marks = |mark: Mark| -> Result<()> {
        match mark {
            Mark::Start => running = Some(Churn::start(addr, plan, load::tag(run_id), ctx.client_cpu())?),
            Mark::End => tally = running.take().map(Churn::finish).transpose()?,
        }
        Ok(())
    };
    let mut outcome = load::run(addr, scenario, run_id, cpu, &mut marks)?;
    outcome.churn = tally;
    Ok(outcome)
}
