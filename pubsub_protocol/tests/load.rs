//! Fan-out and fan-in: 1 publisher to 1,000 subscribers, every QoS 1 message
//! delivered exactly once to each; 100 publishers to 1 subscriber, per-publisher
//! order kept.

mod util;

use pubsub_protocol::packet::QoS;
use pubsub_protocol::Config;
use util::{start, start_with, Client};

#[test]
fn one_publisher_to_1000_subscribers_delivers_each_message_exactly_once() {
    protocol_server::capacity(); // raise RLIMIT_NOFILE: 2,000 sockets in this process
    let running = start();
    let mut subs: Vec<Client> = (0..1000)
        .map(|i| {
            let (mut c, _) = Client::connect(running.addr, &format!("sub-{i}"), true, None);
            c.subscribe("fan/out", QoS::AtLeastOnce);
            c
        })
        .collect();
    let (mut p, _) = Client::connect(running.addr, "publisher", true, None);
    const MESSAGES: u32 = 30; // more than the in-flight window of 20: acks must free it
    for n in 0..MESSAGES {
        p.publish("fan/out", &n.to_be_bytes(), QoS::AtLeastOnce, false);
    }
    for (i, s) in subs.iter_mut().enumerate() {
        for n in 0..MESSAGES {
            let got = s.received();
            assert_eq!(
                &got.payload[..],
                n.to_be_bytes(),
                "subscriber {i}: message {n} missing, duplicated or out of order"
            );
            assert!(!got.dup);
        }
        s.expect_nothing_pending(&format!("subscriber {i}: more than {MESSAGES} messages"));
    }
    assert_eq!(running.broker.stats.dropped.load(std::sync::atomic::Ordering::Relaxed), 0);
    running.stop();
}

const EACH: u32 = 40;

#[test]
fn one_hundred_publishers_to_one_subscriber_keep_each_publishers_order() {
    // Room for every message: this test is about order, not the drop policy.
    let running = start_with(Config { max_queued: 100 * EACH as usize, ..Config::default() });
    let (mut sub, _) = Client::connect(running.addr, "collector", true, None);
    sub.subscribe("fan/in/#", QoS::AtLeastOnce);
    let addr = running.addr;
    let publishers: Vec<_> = (0..100u32)
        .map(|p| {
            std::thread::spawn(move || {
                let (mut c, _) = Client::connect(addr, &format!("pub-{p}"), true, None);
                for n in 0..EACH {
                    c.publish(
                        &format!("fan/in/{p}"),
                        &[p.to_be_bytes(), n.to_be_bytes()].concat(),
                        QoS::AtLeastOnce,
                        false,
                    );
                }
            })
        })
        .collect();
    let mut next = vec![0u32; 100];
    for _ in 0..100 * EACH {
        let got = sub.received();
        let p = u32::from_be_bytes(got.payload[..4].try_into().expect("4 bytes")) as usize;
        let n = u32::from_be_bytes(got.payload[4..].try_into().expect("4 bytes"));
        assert_eq!(n, next[p], "publisher {p} out of order");
        next[p] += 1;
    }
    publishers.into_iter().for_each(|t| t.join().expect("publisher"));
    assert!(next.iter().all(|n| *n == EACH));
    running.stop();
}
