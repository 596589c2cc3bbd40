//! Bounded queues (drop and block), message expiry, keep-alive, and `$SYS`.

mod util;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use pubsub_protocol::packet::{LastWill, Packet, QoS};
use pubsub_protocol::{Config, Overflow};
use util::{start, start_with, Client, Next, PATIENCE};

/// A persistent session subscribed to `q` at QoS 1, then disconnected.
fn offline_subscriber(running: &util::Running, id: &str) {
    let (mut s, _) = Client::connect(running.addr, id, false, None);
    s.subscribe("q", QoS::AtLeastOnce);
    s.send(&Packet::Disconnect);
    s.expect_closed("DISCONNECT");
}

/// A connected subscriber to `q` at QoS 1 that reads nothing yet: with `max_inflight`
/// 1, one message goes out and the rest queue.
fn stalled_subscriber(running: &util::Running, id: &str) -> Client {
    let (mut s, _) = Client::connect(running.addr, id, false, None);
    s.subscribe("q", QoS::AtLeastOnce);
    s
}

/// Polls the broker (it signals nothing) until a publisher is paused.
fn until_paused(running: &util::Running) {
    let deadline = Instant::now() + PATIENCE;
    while running.broker.blocked_publishers().is_empty() {
        assert!(Instant::now() < deadline, "the publisher was never paused");
        std::thread::sleep(Duration::from_millis(5));
    }
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
        assert_eq!(&back.received().payload[..], [n]);
    }
    back.expect_nothing_pending("only max_queued messages are kept");
    running.stop();
}

#[test]
fn block_policy_pauses_publishers_and_loses_nothing() {
    let config = Config { max_queued: 5, max_inflight: 1, overflow: Overflow::Block, ..Config::default() };
    let running = start_with(config);
    let mut back = stalled_subscriber(&running, "slow");
    let addr = running.addr;
    let publisher = std::thread::spawn(move || {
        let (mut p, _) = Client::connect(addr, "p", true, None);
        for n in 0..50u8 {
            p.publish("q", &[n], QoS::AtLeastOnce, false);
        }
    });
    until_paused(&running);
    assert!(running.broker.queued_for("slow") <= 6, "the queue stays bounded while paused");
    for n in 0..50u8 {
        assert_eq!(&back.received().payload[..], [n], "nothing lost, in order");
    }
    publisher.join().expect("the publisher finished once resumed");
    assert_eq!(running.broker.stats.dropped.load(Ordering::Relaxed), 0);
    running.stop();
}

#[test]
fn under_block_an_offline_session_overflows_and_never_pauses_publishers() {
    // Issue 11's scenario: `--overflow block --max-queued 10`, a persistent session that
    // went away, 30 QoS 1 publishes. Its client may never come back: its queue drops.
    let running = start_with(Config { max_queued: 10, overflow: Overflow::Block, ..Config::default() });
    offline_subscriber(&running, "off1");
    let (mut p, _) = Client::connect(running.addr, "p", true, None);
    for n in 0..30u8 {
        p.publish("q", &[n], QoS::AtLeastOnce, false); // each PUBACK arrives: never paused
    }
    assert!(running.broker.blocked_publishers().is_empty());
    assert_eq!(running.broker.stats.dropped.load(Ordering::Relaxed), 20, "overflow counted");
    let (mut back, _) = Client::connect(running.addr, "off1", false, None);
    for n in 0..10u8 {
        assert_eq!(&back.received().payload[..], [n], "the first ten, in order");
    }
    back.expect_nothing_pending("an offline queue keeps max_queued messages");
    running.stop();
}

#[test]
fn a_subscriber_that_disconnects_releases_the_publishers_it_paused() {
    let config = Config { max_queued: 2, max_inflight: 1, overflow: Overflow::Block, ..Config::default() };
    let running = start_with(config);
    let mut s = stalled_subscriber(&running, "leaver");
    let (mut p, _) = Client::connect(running.addr, "p", true, None);
    for n in 0..3u8 {
        p.publish("q", &[n], QoS::AtLeastOnce, false); // 1 in flight, 2 queued: full
    }
    assert_eq!(running.broker.blocked_publishers().len(), 1, "the queue is full: p waits");
    s.send(&Packet::Disconnect);
    // The message in flight may come first; then the close.
    let end = loop {
        match s.next() {
            Next::Packet(Packet::Publish(_)) => continue,
            other => break other,
        }
    };
    assert_eq!(end, Next::Closed, "DISCONNECT closes the connection");
    p.publish("q", &[3], QoS::AtLeastOnce, false); // answered: p was released
    assert!(running.broker.blocked_publishers().is_empty());
    running.stop();
}

#[test]
fn expired_messages_are_not_delivered() {
    let ttl = Duration::from_millis(300);
    // No sweep timer here (the binary schedules it; tests/binary.rs covers it): what
    // expires before a sweep must still not be delivered.
    let running = start_with(Config { message_expiry: Some(ttl), ..Config::default() });
    offline_subscriber(&running, "late");
    let (mut p, _) = Client::connect(running.addr, "p", true, None);
    p.publish("q", b"stale", QoS::AtLeastOnce, true); // queued for "late", and retained
    std::thread::sleep(ttl * 2); // expiry is about time passing: let it pass
    let (mut back, _) = Client::connect(running.addr, "late", false, None);
    back.expect_nothing_pending("the queued message expired: the drain on reconnect drops it");
    let (mut reader, _) = Client::connect(running.addr, "reader", true, None);
    reader.subscribe("q", QoS::AtLeastOnce);
    reader.expect_nothing_pending("the retained message expired: a new subscription does not get it");
    let expired = || running.broker.stats.expired.load(Ordering::Relaxed);
    assert_eq!((expired(), running.broker.retained_count()), (1, 1), "only a sweep frees a retained message");
    running.broker.sweep();
    assert_eq!(
        (expired(), running.broker.retained_count()),
        (2, 0),
        "the sweep dropped the retained message"
    );
    p.publish("q", b"fresh", QoS::AtLeastOnce, false);
    assert_eq!(&back.received().payload[..], b"fresh");
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
    let mut silent = Client::open(running.addr);
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
    assert!(matches!(silent.recv(), Packet::Connack(_)));
    silent.expect_closed("no packet within 1.5 x the keep-alive");
    assert!(started.elapsed() >= Duration::from_millis(1500), "closed before 1.5 x keep-alive");
    assert_eq!(&watcher.received().payload[..], b"timed out");
    running.stop();
}

#[test]
fn sys_topics_report_the_broker() {
    let running = start();
    let (mut s, _) = Client::connect(running.addr, "ops", true, None);
    s.subscribe("$SYS/broker/#", QoS::AtMostOnce);
    running.broker.publish_sys(&running.server);
    // Everything publish_sys sent was queued before the PINGRESP is.
    s.send(&Packet::Pingreq);
    let mut seen = std::collections::HashMap::new();
    loop {
        match s.recv() {
            Packet::Publish(m) => {
                seen.insert(m.topic.to_string(), String::from_utf8(m.payload.to_vec()).expect("text"))
            }
            Packet::Pingresp => break,
            other => panic!("unexpected {other:?}"),
        };
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

#[test]
fn block_policy_never_deadlocks_a_client_subscribed_to_its_own_topic() {
    let running =
        start_with(Config { max_queued: 2, max_inflight: 1, overflow: Overflow::Block, ..Config::default() });
    let (mut me, _) = Client::connect(running.addr, "echo-chamber", true, None);
    me.subscribe("self", QoS::AtLeastOnce);
    // Publish 30 messages to ourselves, acknowledging what comes back as it comes: our
    // acks must be read even while our own publishes wait for queue room.
    let mut next_id = 1u16;
    let mut got = Vec::new();
    let mut acked = 0;
    while got.len() < 30 || acked < 30 {
        if next_id <= 30 {
            let p = pubsub_protocol::packet::Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: false,
                topic: "self".into(),
                packet_id: Some(next_id),
                payload: vec![next_id as u8].into(),
            };
            me.send(&Packet::Publish(p));
            next_id += 1;
        }
        match me.recv() {
            Packet::Puback(_) => acked += 1,
            Packet::Publish(m) => {
                me.send(&Packet::Puback(m.packet_id.expect("QoS 1")));
                got.push(m.payload[0]);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, (1..=30).collect::<Vec<u8>>(), "every message, once, in order");
    running.stop();
}

#[test]
fn a_blocked_publisher_that_leaves_is_forgotten_and_a_discarded_queue_wakes_the_others() {
    let config = Config { max_queued: 2, max_inflight: 1, overflow: Overflow::Block, ..Config::default() };
    let running = start_with(config);
    let _gone = stalled_subscriber(&running, "gone");
    let (mut p, _) = Client::connect(running.addr, "p", true, None);
    for n in 0..3u8 {
        p.publish("q", &[n], QoS::AtLeastOnce, false); // 1 in flight, 2 queued: full
    }
    assert_eq!(running.broker.blocked_publishers().len(), 1, "the queue is full: p waits");
    drop(p);
    let deadline = Instant::now() + PATIENCE;
    while !running.broker.blocked_publishers().is_empty() {
        assert!(Instant::now() < deadline, "a departed publisher stayed in the blocked list");
        std::thread::sleep(Duration::from_millis(5));
    }
    let (mut p2, _) = Client::connect(running.addr, "p2", true, None);
    p2.publish("q", b"x", QoS::AtLeastOnce, false);
    assert_eq!(running.broker.blocked_publishers().len(), 1);
    // A clean session with the subscriber's id (taking over its connection) discards
    // the full queue: p2 goes on.
    let _fresh = Client::connect(running.addr, "gone", true, None);
    p2.publish("q", b"y", QoS::AtLeastOnce, false); // answered: p2 was woken
    running.stop();
}
