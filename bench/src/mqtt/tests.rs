//! The generator against the in-bench sink on 127.0.0.1: every message published must
//! reach every subscriber exactly once, at QoS 0 and 1, in fan-out, fan-in and paced
//! runs. No timing is asserted; the runs are short and their loops bounded.

use std::time::Duration;

use pubsub_protocol::packet::QoS;

use super::load::{self, Scenario};
use super::sink::Sink;
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
            let o = load::run(sink.addr, &s, run_id, &|| Duration::ZERO)
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
    let o = load::run(sink.addr, &s, 0, &|| Duration::ZERO).expect("a paced run against the sink succeeds");
    assert_exact(&o, 3);
    // 150 ms at one per 40 ms: messages at 0, 40, 80, 120 ms.
    assert!(o.published <= 5, "pacing holds back publishing ({} published)", o.published);
    sink.stop().expect("the sink stops cleanly");
}
