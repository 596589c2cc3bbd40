//! The generator against the in-bench sink on 127.0.0.1: every message published must
//! reach every subscriber exactly once, at QoS 0 and 1, in fan-out, fan-in and paced
//! runs, and beside connection churn. No timing is asserted; the runs are short and
//! their loops bounded. Also the churn table's pairing of quiet and churned runs.

use std::time::Duration;

use pubsub_protocol::packet::QoS;

use super::churn::{self, Churn};
use super::load::{self, Mark, Scenario};
use super::sink::Sink;
use super::tables::churn_drops;
use super::tally::Outcome;

fn scenario(publishers: usize, subscribers: usize, qos: QoS, window: usize) -> Scenario {
    Scenario {
        publishers,
        subscribers,
        qos,
        window,
        total_window: 16,
        duration: Duration::from_millis(150),
        interval: None,
    }
}

fn assert_exact(o: &Outcome, subscribers: u64) {
    assert!(o.published > 0, "something was published");
    assert_eq!(o.expected, o.published * subscribers);
    assert_eq!(o.delivered, o.expected, "every subscriber got every message");
    assert_eq!((o.lost(), o.duplicates), (0, 0));
    assert_eq!(o.latency.count(), o.delivered);
    assert!(o.last_sum_ns <= o.latency_sum_ns);
}

#[test]
fn fan_out_and_fan_in_through_the_sink_lose_and_duplicate_nothing() {
    let sink = Sink::start(None).expect("the sink starts on 127.0.0.1");
    let mut run_id = 0;
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
        for (publishers, subscribers, window) in [(1, 5, 8), (6, 1, 2), (3, 4, 4)] {
            let s = scenario(publishers, subscribers, qos, window);
            let o = load::run(sink.addr, &s, run_id, &|| Duration::ZERO, &mut |_| Ok(()))
                .expect("a run against the sink succeeds");
            assert_exact(&o, subscribers as u64);
            run_id += 1;
        }
    }
    sink.stop().expect("the sink stops cleanly");
}

#[test]
fn paced_runs_publish_at_their_interval() {
    let sink = Sink::start(None).expect("the sink starts on 127.0.0.1");
    let s = Scenario { interval: Some(Duration::from_millis(40)), ..scenario(1, 3, QoS::AtMostOnce, 4) };
    let o = load::run(sink.addr, &s, 0, &|| Duration::ZERO, &mut |_| Ok(()))
        .expect("a paced run against the sink succeeds");
    assert_exact(&o, 3);
    // 150 ms at one per 40 ms: messages at 0, 40, 80, 120 ms.
    assert!(o.published <= 5, "pacing holds back publishing ({} published)", o.published);
    sink.stop().expect("the sink stops cleanly");
}

#[test]
fn churn_beside_a_fan_out_completes_its_cycles_and_disturbs_no_delivery() {
    let sink = Sink::start(None).expect("the sink starts on 127.0.0.1");
    let plan = churn::Plan { rate: 200, duration: Duration::from_millis(150), max_open: 64 };
    let (mut running, mut tally) = (None, None);
    let mut marks = |mark: Mark| {
        match mark {
            Mark::Start => running = Some(Churn::start(sink.addr, plan, load::tag(7), None)?),
            Mark::End => tally = running.take().map(Churn::finish).transpose()?,
        }
        Ok(())
    };
    let s = scenario(1, 5, QoS::AtLeastOnce, 8);
    let o = load::run(sink.addr, &s, 7, &|| Duration::ZERO, &mut marks).expect("a churned run succeeds");
    assert_exact(&o, 5);
    let t = tally.expect("the churn ran");
    // 200/s for 150 ms: 30 clients, every one a whole cycle (the sink closes on DISCONNECT).
    assert_eq!((t.started, t.connected, t.subscribed, t.closed), (30, 30, 30, 30));
    assert_eq!((t.failed, t.skipped), (0, 0));
    assert!(t.connect_rate() > 0.0 && t.window >= plan.duration);
    sink.stop().expect("the sink stops cleanly");
}

fn rated(delivered: u64, churned: bool) -> Outcome {
    Outcome {
        delivered,
        span: Duration::from_secs(1),
        churn: churned.then(churn::Tally::default),
        ..Outcome::default()
    }
}

#[test]
fn churn_drops_pair_each_quiet_run_with_the_churned_run_after_it() {
    let runs = [rated(1000, false), rated(900, true), rated(2000, false), rated(2100, true)];
    let drops = churn_drops(&runs);
    assert_eq!(drops.len(), 2);
    assert!((drops[0] - 10.0).abs() < 1e-9 && (drops[1] + 5.0).abs() < 1e-9, "{drops:?}");
    // A quiet run that delivered nothing has no drop to speak of.
    assert!(churn_drops(&[rated(0, false), rated(5, true)]).is_empty());
}
