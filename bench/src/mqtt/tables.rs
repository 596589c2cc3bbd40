//! The report of `bench mqtt`: throughput and latency tables for fan-out and fan-in,
//! the three time measures of the fan-out sweep, the generator's ceiling, the paced
//! latency run, fan-out under connection churn, the delivery check, and bar charts of
//! delivered msg/s and ratios.

use pubsub_protocol::packet::QoS;

use super::brokers::Contender;
use super::tally::Outcome;
use super::{Case, Kind, Runs};
use crate::error::Result;
use crate::report::{Chart, Report, Series, Table};
use crate::stats::{show, Summary};

/// A ratio to the sink above this, or a generator busier than [`BUSY`], means the
/// generator may have set the figure.
const NEAR_CEILING: f64 = 0.85;
/// Share of its CPU above which the generator counts as saturated.
const BUSY: f64 = 0.9;

/// Prints and writes every table and chart.
pub fn write(r: &mut Report, cases: &[Case], runs: &[Runs]) -> Result<()> {
    r.table(&throughput(Kind::FanOut, cases, runs))?;
    r.chart(&rates(Kind::FanOut, cases, runs))?;
    r.table(&throughput(Kind::FanIn, cases, runs))?;
    r.chart(&rates(Kind::FanIn, cases, runs))?;
    r.chart(&ratios(cases, runs))?;
    r.table(&times(cases, runs))?;
    r.table(&ceiling(cases, runs))?;
    if cases.iter().any(|c| c.kind == Kind::Paced) {
        r.table(&paced(cases, runs))?;
    }
    if cases.iter().any(|c| c.kind == Kind::Churn) {
        r.table(&churn(cases, runs))?;
    }
    r.note(&delivery_check(cases, runs));
    r.note(&setup_note(cases, runs));
    Ok(())
}

/// The slowest connection set-up per contender (not part of any measured time).
fn setup_note(cases: &[Case], runs: &[Runs]) -> String {
    let slowest = |c: Contender| {
        cases
            .iter()
            .zip(runs)
            .flat_map(|(case, r)| r[c.index()].iter().map(move |o| (o.setup, case.label())))
            .max_by_key(|(setup, _)| *setup)
            .map_or_else(
                || format!("{}: –", c.name()),
                |(s, l)| format!("{} {:.2} s ({l})", c.name(), s.as_secs_f64()),
            )
    };
    let all: Vec<String> = Contender::ALL.into_iter().map(slowest).collect();
    format!("Slowest set-up of a run (connect and subscribe every client, not timed): {}.", all.join(", "))
}

fn of(runs: &[Outcome], f: impl Fn(&Outcome) -> f64) -> Option<Summary> {
    Summary::of(&runs.iter().map(f).collect::<Vec<_>>())
}

fn ratio(ours: &[Outcome], anchor: &[Outcome], f: impl Fn(&Outcome) -> f64) -> Option<Summary> {
    let (o, a): (Vec<f64>, Vec<f64>) = (ours.iter().map(&f).collect(), anchor.iter().map(&f).collect());
    Summary::of_ratios(&o, &a)
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn p(runs: &[Outcome], pct: f64) -> Option<Summary> {
    of(runs, |o| ms(o.latency.percentile(pct)))
}

/// Lost and duplicated deliveries over all rounds, flagged where QoS 1 broke its promise.
fn losses(runs: &[Outcome], qos: QoS) -> (String, String) {
    let lost: u64 = runs.iter().map(Outcome::lost).sum();
    let dup: u64 = runs.iter().map(|o| o.duplicates).sum();
    let flag = |n: u64| {
        if n > 0 && qos == QoS::AtLeastOnce {
            format!("{n} (must be 0)")
        } else {
            n.to_string()
        }
    };
    (flag(lost), flag(dup))
}

fn count(kind: Kind, case: &Case) -> usize {
    match kind {
        Kind::FanIn => case.scenario.publishers,
        _ => case.scenario.subscribers,
    }
}

/// The sweeps every contender (the sink too) runs once per round.
fn throughput_kind(kind: Kind) -> bool {
    matches!(kind, Kind::FanOut | Kind::FanIn)
}

fn of_kind(kind: Kind, cases: &[Case]) -> impl Iterator<Item = (usize, &Case)> + '_ {
    cases.iter().enumerate().filter(move |(_, c)| c.kind == kind)
}

fn throughput(kind: Kind, cases: &[Case], runs: &[Runs]) -> Table {
    let (name, title, who) = match kind {
        Kind::FanIn => ("mqtt_fanin", "MQTT fan-in: N publishers → 1 subscriber, 64 B", "publishers"),
        _ => ("mqtt_fanout", "MQTT fan-out: 1 publisher → N subscribers, 64 B", "subscribers"),
    };
    let mut t = Table::new(
        name,
        title,
        &[
            who,
            "QoS",
            "broker",
            "delivered msg/s",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "lost",
            "dup",
            "broker CPU %",
            "CPU µs/delivery",
            "msg/s ours/mosquitto",
            "p99 ours/mosquitto",
            "CPU/delivery ours/mosquitto",
        ],
    );
    for (k, case) in of_kind(kind, cases) {
        let (ours, anchor) = (&runs[k][Contender::Ours.index()], &runs[k][Contender::Mosquitto.index()]);
        for c in [Contender::Ours, Contender::Mosquitto] {
            let mine = &runs[k][c.index()];
            let (lost, dup) = losses(mine, case.scenario.qos);
            let (rate_ratio, p99_ratio, cpu_ratio) = if c == Contender::Ours {
                let p99 = |o: &Outcome| o.latency.percentile(99.0) as f64;
                (
                    show(ratio(ours, anchor, Outcome::rate), 2),
                    show(ratio(ours, anchor, p99), 2),
                    show(ratio(ours, anchor, Outcome::broker_us_per_delivery), 2),
                )
            } else {
                ("".into(), "".into(), "".into())
            };
            t.push(vec![
                count(kind, case).to_string(),
                (case.scenario.qos as u8).to_string(),
                c.name().into(),
                show(of(mine, Outcome::rate), 0),
                show(p(mine, 50.0), 2),
                show(p(mine, 99.0), 2),
                show(p(mine, 99.9), 2),
                lost,
                dup,
                show(of(mine, |o| 100.0 * o.broker_load()), 0),
                show(of(mine, Outcome::broker_us_per_delivery), 2),
                rate_ratio,
                p99_ratio,
                cpu_ratio,
            ]);
        }
    }
    t
}

/// Delivered msg/s per N, one series per broker × QoS.
fn rates(kind: Kind, cases: &[Case], runs: &[Runs]) -> Chart {
    let mut ns: Vec<usize> = of_kind(kind, cases).map(|(_, c)| count(kind, c)).collect();
    ns.sort_unstable();
    ns.dedup();
    let mut series = Vec::new();
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
        for c in [Contender::Ours, Contender::Mosquitto] {
            let values = ns
                .iter()
                .map(|&n| {
                    of_kind(kind, cases)
                        .find(|(_, case)| count(kind, case) == n && case.scenario.qos == qos)
                        .and_then(|(k, _)| of(&runs[k][c.index()], Outcome::rate))
                })
                .collect();
            series.push(Series { name: format!("{} QoS {}", c.name(), qos as u8), values });
        }
    }
    let (name, title, x) = match kind {
        Kind::FanIn => ("mqtt_fanin", "MQTT fan-in: delivered msg/s (N publishers → 1)", "publishers"),
        _ => ("mqtt_fanout", "MQTT fan-out: delivered msg/s (1 → N subscribers)", "subscribers"),
    };
    Chart {
        name: name.into(),
        title: title.into(),
        y_label: "delivered msg/s".into(),
        categories: ns.iter().map(|n| format!("{n}\n{x}")).collect(),
        series,
        reference: None,
    }
}

/// Delivered msg/s ours/mosquitto for every throughput case, QoS 0 and 1 side by side.
fn ratios(cases: &[Case], runs: &[Runs]) -> Chart {
    let mut categories: Vec<(Kind, usize, usize)> = cases
        .iter()
        .filter(|c| throughput_kind(c.kind))
        .map(|c| (c.kind, c.scenario.publishers, c.scenario.subscribers))
        .collect();
    categories.sort_by_key(|&(kind, p, s)| (kind == Kind::FanIn, p, s));
    categories.dedup();
    let series = [QoS::AtMostOnce, QoS::AtLeastOnce]
        .into_iter()
        .map(|qos| Series {
            name: format!("QoS {}", qos as u8),
            values: categories
                .iter()
                .map(|&(kind, pubs, subs)| {
                    cases
                        .iter()
                        .position(|c| {
                            (c.kind, c.scenario.publishers, c.scenario.subscribers, c.scenario.qos)
                                == (kind, pubs, subs, qos)
                        })
                        .and_then(|k| {
                            let r = &runs[k];
                            ratio(
                                &r[Contender::Ours.index()],
                                &r[Contender::Mosquitto.index()],
                                Outcome::rate,
                            )
                        })
                })
                .collect(),
        })
        .collect();
    Chart {
        name: "mqtt_ratio".into(),
        title: "MQTT delivered msg/s, pubsub / mosquitto (per-round ratios)".into(),
        y_label: "ratio".into(),
        categories: categories
            .iter()
            .map(|&(kind, p, s)| {
                format!("{}\n{p}→{s}", if kind == Kind::FanIn { "fan-in" } else { "fan-out" })
            })
            .collect(),
        series,
        reference: Some(1.0),
    }
}

fn secs(ns: u128) -> f64 {
    ns as f64 / 1e9
}

/// Per message: Σ over its deliveries of publish→receive (1), and publish→last (3).
fn per_message(o: &Outcome, sum_ns: u128) -> f64 {
    if o.published == 0 {
        return f64::NAN;
    }
    sum_ns as f64 / 1e6 / o.published as f64
}

fn times(cases: &[Case], runs: &[Runs]) -> Table {
    let mut t = Table::new(
        "mqtt_times",
        "MQTT fan-out, the kernel pub/sub study's time measures: (1) Σ publish→receive over \
         deliveries, (2) wall time, (3) Σ publish→last subscriber over messages",
        &[
            "subscribers",
            "QoS",
            "broker",
            "messages",
            "(1) s",
            "(2) s",
            "(3) s",
            "(1) per msg ms",
            "(3) per msg ms",
            "(1) per msg ours/mosquitto",
            "(3) per msg ours/mosquitto",
        ],
    );
    let one = |o: &Outcome| per_message(o, o.latency_sum_ns);
    let three = |o: &Outcome| per_message(o, o.last_sum_ns);
    for (k, case) in of_kind(Kind::FanOut, cases) {
        let (ours, anchor) = (&runs[k][Contender::Ours.index()], &runs[k][Contender::Mosquitto.index()]);
        for c in [Contender::Ours, Contender::Mosquitto] {
            let mine = &runs[k][c.index()];
            let (r1, r3) = if c == Contender::Ours {
                (show(ratio(ours, anchor, one), 2), show(ratio(ours, anchor, three), 2))
            } else {
                ("".into(), "".into())
            };
            t.push(vec![
                case.scenario.subscribers.to_string(),
                (case.scenario.qos as u8).to_string(),
                c.name().into(),
                show(of(mine, |o| o.published as f64), 0),
                show(of(mine, |o| secs(o.latency_sum_ns)), 2),
                show(of(mine, |o| o.span.as_secs_f64()), 2),
                show(of(mine, |o| secs(o.last_sum_ns)), 2),
                show(of(mine, one), 3),
                show(of(mine, three), 3),
                r1,
                r3,
            ]);
        }
    }
    t
}

fn ceiling(cases: &[Case], runs: &[Runs]) -> Table {
    let mut t = Table::new(
        "mqtt_ceiling",
        "MQTT generator ceiling: the same runs against bench's trivial sink",
        &[
            "scenario",
            "sink msg/s",
            "generator CPU % (sink)",
            "pubsub / sink",
            "generator CPU % (pubsub)",
            "mosquitto / sink",
            "generator CPU % (mosquitto)",
            "verdict",
        ],
    );
    for (k, case) in cases.iter().enumerate().filter(|(_, c)| throughput_kind(c.kind)) {
        let sink = &runs[k][Contender::Sink.index()];
        let load = |c: Contender| of(&runs[k][c.index()], |o| o.generator_load() * 100.0);
        let near = |c: Contender| {
            let share =
                ratio(&runs[k][c.index()], sink, Outcome::rate).is_some_and(|s| s.median >= NEAR_CEILING);
            share || load(c).is_some_and(|l| l.median >= BUSY * 100.0)
        };
        let bound: Vec<&str> = [Contender::Ours, Contender::Mosquitto]
            .into_iter()
            .filter(|&c| near(c))
            .map(Contender::name)
            .collect();
        let verdict = if bound.is_empty() {
            "generator has headroom".to_string()
        } else {
            format!("{}: may be generator-bound", bound.join(", "))
        };
        let share = |c: Contender| show(ratio(&runs[k][c.index()], sink, Outcome::rate), 2);
        t.push(vec![
            case.label(),
            show(of(sink, Outcome::rate), 0),
            show(load(Contender::Sink), 0),
            share(Contender::Ours),
            show(load(Contender::Ours), 0),
            share(Contender::Mosquitto),
            show(load(Contender::Mosquitto), 0),
            verdict,
        ]);
    }
    t
}

fn paced(cases: &[Case], runs: &[Runs]) -> Table {
    let mut t = Table::new(
        "mqtt_paced",
        "MQTT latency at a low fixed rate (DESIGN.md: 1,000 subscribers at 1 msg/s)",
        &[
            "subscribers",
            "msg/s",
            "broker",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "lost",
            "dup",
            "p99 ours/mosquitto",
        ],
    );
    for (k, case) in of_kind(Kind::Paced, cases) {
        let (ours, anchor) = (&runs[k][Contender::Ours.index()], &runs[k][Contender::Mosquitto.index()]);
        let rate = case.scenario.interval.map_or(0.0, |i| 1.0 / i.as_secs_f64());
        for c in [Contender::Ours, Contender::Mosquitto] {
            let mine = &runs[k][c.index()];
            let (lost, dup) = losses(mine, case.scenario.qos);
            let p99 = |o: &Outcome| o.latency.percentile(99.0) as f64;
            let r = if c == Contender::Ours { show(ratio(ours, anchor, p99), 2) } else { String::new() };
            t.push(vec![
                case.scenario.subscribers.to_string(),
                format!("{rate:.0}"),
                c.name().into(),
                show(p(mine, 50.0), 2),
                show(p(mine, 99.0), 2),
                show(p(mine, 99.9), 2),
                lost,
                dup,
                r,
            ]);
        }
    }
    t
}

/// Issue 13's goal for fan-out under churn: delivered msg/s drops by less than this
/// (median of the per-round drops) and nothing is lost.
const CHURN_GOAL_DROP_PCT: f64 = 10.0;

/// Per round, the drop in delivered msg/s from the quiet run to the churned one, %:
/// the k-th quiet run pairs with the k-th churned run.
pub(super) fn churn_drops(runs: &[Outcome]) -> Vec<f64> {
    let quiet = runs.iter().filter(|o| o.churn.is_none());
    let churned = runs.iter().filter(|o| o.churn.is_some());
    quiet
        .zip(churned)
        .filter(|(q, _)| q.rate() > 0.0)
        .map(|(q, c)| 100.0 * (1.0 - c.rate() / q.rate()))
        .collect()
}

fn churn(cases: &[Case], runs: &[Runs]) -> Table {
    let mut t = Table::new(
        "mqtt_churn",
        "MQTT fan-out under connection churn: 1 → 100 subscribers, 64 B, quiet run vs. the \
         same beside 500 connect/subscribe/disconnect cycles a second",
        &[
            "QoS",
            "broker",
            "quiet msg/s",
            "churn msg/s",
            "drop %",
            "lost quiet / churn",
            "dup quiet / churn",
            "connects/s achieved",
            "cycles done / failed / skipped",
            "wildcard deliveries",
            "churn thread CPU %",
            "goal: drop < 10 %, 0 lost",
        ],
    );
    for (k, case) in of_kind(Kind::Churn, cases) {
        for c in [Contender::Ours, Contender::Mosquitto] {
            let mine = &runs[k][c.index()];
            let quiet: Vec<Outcome> = mine.iter().filter(|o| o.churn.is_none()).cloned().collect();
            let churned: Vec<Outcome> = mine.iter().filter(|o| o.churn.is_some()).cloned().collect();
            let (lost_q, dup_q) = losses(&quiet, case.scenario.qos);
            let (lost_c, dup_c) = losses(&churned, case.scenario.qos);
            let drops = Summary::of(&churn_drops(mine));
            let tallies: Vec<_> = churned.iter().filter_map(|o| o.churn.as_ref()).collect();
            let sum = |f: fn(&super::churn::Tally) -> u64| tallies.iter().map(|t| f(t)).sum::<u64>();
            let lost: u64 = churned.iter().map(Outcome::lost).sum();
            let goal = match drops {
                None => "–".to_string(),
                Some(d) if d.median < CHURN_GOAL_DROP_PCT && lost == 0 => "met".into(),
                Some(d) if lost == 0 => format!("missed: drop {:.1} %", d.median),
                Some(_) => format!("missed: {lost} lost"),
            };
            let cpu = |t: &&super::churn::Tally| 100.0 * t.cpu.as_secs_f64() / t.window.as_secs_f64();
            t.push(vec![
                (case.scenario.qos as u8).to_string(),
                c.name().into(),
                show(of(&quiet, Outcome::rate), 0),
                show(of(&churned, Outcome::rate), 0),
                show(drops, 1),
                format!("{lost_q} / {lost_c}"),
                format!("{dup_q} / {dup_c}"),
                show(Summary::of(&tallies.iter().map(|t| t.connect_rate()).collect::<Vec<_>>()), 0),
                format!("{} / {} / {}", sum(|t| t.closed), sum(|t| t.failed), sum(|t| t.skipped)),
                sum(|t| t.publishes).to_string(),
                show(Summary::of(&tallies.iter().map(cpu).collect::<Vec<_>>()), 0),
                goal,
            ]);
        }
    }
    t
}

/// One sentence on lost and duplicated deliveries over every run.
fn delivery_check(cases: &[Case], runs: &[Runs]) -> String {
    let mut broken = Vec::new();
    let mut qos0 = Vec::new();
    for (case, r) in cases.iter().zip(runs) {
        for c in Contender::ALL {
            let lost: u64 = r[c.index()].iter().map(Outcome::lost).sum();
            let dup: u64 = r[c.index()].iter().map(|o| o.duplicates).sum();
            if lost + dup == 0 {
                continue;
            }
            let what = format!("{} on {}: {lost} lost, {dup} duplicated", case.label(), c.name());
            if case.scenario.qos == QoS::AtMostOnce {
                qos0.push(what);
            } else {
                broken.push(what);
            }
        }
    }
    let verdict = if broken.is_empty() {
        "Delivery check: no QoS 1 delivery lost or duplicated in any run.".to_string()
    } else {
        format!("Delivery check FAILED at QoS 1: {}.", broken.join("; "))
    };
    let qos0 = if qos0.is_empty() {
        " No QoS 0 delivery lost or duplicated either.".to_string()
    } else {
        format!(" QoS 0 (at most once, losses allowed): {}.", qos0.join("; "))
    };
    format!(
        "{verdict}{qos0} Lost means never delivered: each run waits for its outstanding \
         messages until 1 s passes without any delivery."
    )
}
