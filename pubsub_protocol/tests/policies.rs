//! Bounded queues (drop and block), message expiry, keep-alive, and `$SYS`.

mod util;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use pubsub_protocol::packet::{LastWill, Packet, QoS};
use pubsub_protocol::{Config, Overflow};
use util::{start, start_with, Client, PATIENCE};

fn offline_subscriber(running: &util::Running, id: &str) {
    let (mut s, _) = Client::connect(running.addr, id, false, None);
    s.subscribe("q", QoS::AtLeastOnce);
    s.send(&Packet::Disconnect);
    assert_eq!(s.recv(), None);
}

#[test]
fn drop_policy_bounds_the_queue_and_counts_every_drop() {
    let running = start_with(Config { max_queued: 5, ..Config::default() });
    offline_subscriber(&running, "slow");
    let (mut p, _) = Client::connect(running.addr, "p", true, None);
    for n in 0..10u8 {
        p.publish("q", &[n], QoS::AtLeastOnce, false);
    }
    assert_eq!(running.broker.queued_for("slow"), 5, "bounded");
    assert_eq!(running.broker.stats.dropped.load(Ordering::Relaxed), 5, "each drop counted");
    let (mut back, _) = Client::connect(running.addr, "slow", false, None);
    for n in 0..5u8 {
        assert_eq!(back.received().payload, [n]);
    }
    running.stop();
}

#[test]
fn block_policy_pauses_publishers_and_loses_nothing() {
    let running = start_with(Config { max_queued: 5, overflow: Overflow::Block, ..Config::default() });
    offline_subscriber(&running, "slow");
    let addr = running.addr;
    let publisher = std::thread::spawn(move || {
        let (mut p, _) = Client::connect(addr, "p", true, None);
        for n in 0..50u8 {
            p.publish("q", &[n], QoS::AtLeastOnce, false);
        }
    });
    // Poll the broker (it signals nothing) until the publisher is paused.
    let deadline = Instant::now() + PATIENCE;
    while running.broker.blocked_publishers().is_empty() {
        assert!(Instant::now() < deadline, "the publisher was never paused");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(running.broker.queued_for("slow") <= 6, "the queue stays bounded while paused");
    let (mut back, _) = Client::connect(running.addr, "slow", false, None);
    for n in 0..50u8 {
        assert_eq!(back.received().payload, [n], "nothing lost, in order");
    }
    publisher.join().expect("the publisher finished once resumed");
    assert_eq!(running.broker.stats.dropped.load(Ordering::Relaxed), 0);
    running.stop();
}

#[test]
fn expired_messages_are_not_delivered() {
    let ttl = Duration::from_millis(300);
    let running = start_with(Config { message_expiry: Some(ttl), ..Config::default() });
    offline_subscriber(&running, "late");
    let (mut p, _) = Client::connect(running.addr, "p", true, None);
    p.publish("q", b"stale", QoS::AtLeastOnce, true);
    std::thread::sleep(ttl * 2); // expiry is about time passing: let it pass
    running.broker.sweep();
    assert_eq!(running.broker.retained_count(), 0, "the retained message expired");
    let (mut back, _) = Client::connect(running.addr, "late", false, None);
    back.sync();
    assert!(back.input.is_empty(), "the queued message expired");
    p.publish("q", b"fresh", QoS::AtLeastOnce, false);
    assert_eq!(back.received().payload, b"fresh");
    running.stop();
}

#[test]
fn keep_alive_expiry_closes_and_publishes_the_will() {
    let running = start();
    let (mut watcher, _) = Client::connect(running.addr, "watcher", true, None);
    watcher.subscribe("will", QoS::AtMostOnce);
    let will = LastWill {
        topic: "will".into(),
        message: b"timed out".to_vec(),
        qos: QoS::AtMostOnce,
        retain: false,
    };
    let stream = std::net::TcpStream::connect(running.addr).expect("connect");
    let mut silent = Client { stream, input: Vec::new() };
    let connect = pubsub_protocol::packet::Connect {
        level: 4,
        clean_session: true,
        keep_alive: 1,
        client_id: "silent".into(),
        will: Some(will),
        username: None,
        password: None,
    };
    let started = Instant::now();
    silent.send(&Packet::Connect(connect));
    assert!(matches!(silent.recv(), Some(Packet::Connack(_))));
    assert_eq!(watcher.received().payload, b"timed out");
    assert!(started.elapsed() >= Duration::from_millis(1500), "closed before 1.5 x keep-alive");
    running.stop();
}

#[test]
fn sys_topics_report_the_broker() {
    let running = start();
    let (mut s, _) = Client::connect(running.addr, "ops", true, None);
    s.subscribe("$SYS/broker/#", QoS::AtMostOnce);
    running.broker.publish_sys(&running.server);
    let mut seen = std::collections::HashMap::new();
    for _ in 0..12 {
        let m = s.received();
        seen.insert(m.topic, String::from_utf8(m.payload).expect("text"));
    }
    assert_eq!(seen.get("$SYS/broker/clients/connected").map(String::as_str), Some("1"));
    assert_eq!(seen.get("$SYS/broker/subscriptions/count").map(String::as_str), Some("1"));
    for topic in [
        "messages/received",
        "messages/sent",
        "messages/dropped",
        "bytes/received",
        "bytes/sent",
        "uptime",
        "workers/0/tasks",
    ] {
        assert!(seen.contains_key(&format!("$SYS/broker/{topic}")), "{topic} missing: {seen:?}");
    }
    running.stop();
}
