//! Every bound of `Config` holds, with what a client sees when it is reached: topics
//! too deep or too long, client ids too long, persistent sessions and retained
//! messages past their caps, queues past their bytes, sessions unused too long. After
//! each refusal a normal client is still served.

mod util;

use std::sync::atomic::Ordering;
use std::time::Duration;

use pubsub_protocol::packet::{ConnectReturn, LastWill, Packet, QoS, Subscribe};
use pubsub_protocol::topic::Bounds;
use pubsub_protocol::{Config, Overflow};
use util::{connect_packet, start, start_with, Client, Running};

/// A normal exchange on `running`: subscribe, publish, receive.
fn still_served(running: &Running) {
    let (mut s, _) = Client::connect(running.addr, "ns", true, None);
    s.subscribe("normal/t", QoS::AtMostOnce);
    let (mut p, _) = Client::connect(running.addr, "np", true, None);
    p.publish("normal/t", b"ok", QoS::AtMostOnce, false);
    assert_eq!(&s.received().payload[..], b"ok", "a normal client is still served");
}

fn levels(n: usize) -> String {
    vec!["a"; n].join("/")
}

#[test]
fn a_filter_of_32000_levels_is_refused_and_the_same_publish_disconnects_without_a_crash() {
    // The report of issue 11: this pair overflowed a worker's stack and aborted.
    let running = start();
    let deep = levels(32_000);
    let (mut s, _) = Client::connect(running.addr, "deep-sub", true, None);
    s.send(&Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![(deep.clone(), QoS::AtMostOnce), ("ok/+".into(), QoS::AtLeastOnce)],
    }));
    assert_eq!(s.recv(), Packet::Suback(1, vec![0x80, 1]), "only the deep filter is refused");
    let (mut p, _) = Client::connect(running.addr, "deep-pub", true, None);
    p.send(&Packet::Publish(pubsub_protocol::packet::Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: true,
        topic: deep.into(),
        packet_id: None,
        payload: b"x".to_vec().into(),
    }));
    p.expect_closed("a PUBLISH to a topic of 32,000 levels");
    assert_eq!(running.broker.stats.refused_topics.load(Ordering::Relaxed), 2);
    assert_eq!(running.broker.retained_count(), 0, "nothing of it was kept");
    still_served(&running);
    running.stop();
}

#[test]
fn topic_bounds_are_exact_and_configurable() {
    let running = start_with(Config { topic: Bounds { max_levels: 3, max_length: 12 }, ..Config::default() });
    let (mut s, _) = Client::connect(running.addr, "s", true, None);
    let cases = [
        ("a/b/c", 0),
        ("a/b/c/d", 0x80),
        ("a/+/#", 0),
        ("a/+/+/#", 0x80),
        ("abcdefghijkl", 0),
        ("abcdefghijklm", 0x80),
    ];
    for (i, (filter, code)) in cases.iter().enumerate() {
        let id = i as u16 + 1;
        s.send(&Packet::Subscribe(Subscribe {
            packet_id: id,
            filters: vec![((*filter).into(), QoS::AtMostOnce)],
        }));
        assert_eq!(s.recv(), Packet::Suback(id, vec![*code]), "filter {filter:?}");
    }
    let (mut p, _) = Client::connect(running.addr, "p", true, None);
    p.publish("a/b/c", b"3 levels", QoS::AtMostOnce, false);
    assert_eq!(&s.received().payload[..], b"3 levels");
    p.send(&Packet::Publish(pubsub_protocol::packet::Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "a/b/c/d".into(),
        packet_id: None,
        payload: Default::default(),
    }));
    p.expect_closed("a PUBLISH of 4 levels past max_topic_levels 3");
    // A will whose topic is too deep refuses the CONNECT itself.
    let mut w = Client::open(running.addr);
    let will =
        LastWill { topic: "w/x/y/z".into(), message: b"bye".to_vec(), qos: QoS::AtMostOnce, retain: false };
    w.send(&Packet::Connect(connect_packet("w", true, Some(will))));
    w.expect_closed("a will topic of 4 levels");
    still_served(&running);
    running.stop();
}

#[test]
fn a_client_id_past_max_client_id_gets_connack_2() {
    let running = start_with(Config { max_client_id: 8, ..Config::default() });
    let (_, ack) = Client::connect(running.addr, "12345678", true, None);
    assert_eq!(ack.code, ConnectReturn::Accepted);
    let (mut c, ack) = Client::connect(running.addr, "123456789", true, None);
    assert_eq!(ack.code, ConnectReturn::IdentifierRejected);
    c.expect_closed("a refused CONNECT");
    assert_eq!(running.broker.stats.refused_connects.load(Ordering::Relaxed), 1);
    still_served(&running);
    running.stop();
}

#[test]
fn persistent_sessions_past_the_cap_get_connack_3_and_a_resumed_one_needs_no_room() {
    let running = start_with(Config { max_persistent_sessions: 2, ..Config::default() });
    let (mut a, _) = Client::connect(running.addr, "a", false, None);
    let (_b, _) = Client::connect(running.addr, "b", false, None);
    let (mut c, ack) = Client::connect(running.addr, "c", false, None);
    assert_eq!(ack.code, ConnectReturn::ServerUnavailable);
    c.expect_closed("a refused CONNECT");
    assert_eq!(running.broker.persistent_sessions(), 2);
    a.send(&Packet::Disconnect);
    a.expect_closed("DISCONNECT");
    let (_a, ack) = Client::connect(running.addr, "a", false, None);
    assert_eq!((ack.code, ack.session_present), (ConnectReturn::Accepted, true), "resumed, not new");
    // A clean session with a persistent session's id frees its slot.
    let (_b2, ack) = Client::connect(running.addr, "b", true, None);
    assert_eq!(ack.code, ConnectReturn::Accepted);
    let (_c, ack) = Client::connect(running.addr, "c", false, None);
    assert_eq!(ack.code, ConnectReturn::Accepted, "b's slot went to c");
    assert_eq!(running.broker.persistent_sessions(), 2);
    still_served(&running);
    running.stop();
}

#[test]
fn retained_messages_are_bounded_in_count_and_bytes_but_still_delivered() {
    let running = start_with(Config { max_retained: 2, max_retained_bytes: 64, ..Config::default() });
    let (mut live, _) = Client::connect(running.addr, "live", true, None);
    live.subscribe("r/#", QoS::AtMostOnce);
    let (mut p, _) = Client::connect(running.addr, "p", true, None);
    p.publish("r/1", b"one", QoS::AtLeastOnce, true);
    p.publish("r/2", b"two", QoS::AtLeastOnce, true);
    p.publish("r/3", b"three", QoS::AtLeastOnce, true); // a third topic: not retained
    p.publish("r/1", &[b'x'; 100], QoS::AtLeastOnce, true); // too many bytes: old one kept
    for want in [&b"one"[..], b"two", b"three", &[b'x'; 100]] {
        assert_eq!(&live.received().payload[..], want, "delivered to current subscribers anyway");
    }
    assert_eq!(running.broker.retained_count(), 2);
    assert_eq!(running.broker.stats.refused_retained.load(Ordering::Relaxed), 2);
    let (mut late, _) = Client::connect(running.addr, "late", true, None);
    late.subscribe("r/#", QoS::AtMostOnce);
    let mut got = vec![late.received().payload, late.received().payload];
    got.sort();
    assert_eq!(got, [b"one".to_vec(), b"two".to_vec()]);
    late.expect_nothing_pending("only the two retained messages that fit");
    still_served(&running);
    running.stop();
}

#[test]
fn max_queued_bytes_bounds_an_offline_queue_by_size() {
    let config = Config { max_queued_bytes: 100, overflow: Overflow::Block, ..Config::default() };
    let running = start_with(config);
    let (mut s, _) = Client::connect(running.addr, "off", false, None);
    s.subscribe("q", QoS::AtLeastOnce);
    s.send(&Packet::Disconnect);
    s.expect_closed("DISCONNECT");
    let (mut p, _) = Client::connect(running.addr, "p", true, None);
    for n in 0..10u8 {
        p.publish("q", &[n; 29], QoS::AtLeastOnce, false); // 30 bytes each with the topic
    }
    let (mut back, _) = Client::connect(running.addr, "off", false, None);
    for n in 0..3u8 {
        assert_eq!(&back.received().payload[..], [n; 29], "the three that fit in 100 bytes");
    }
    back.expect_nothing_pending("max_queued_bytes 100 holds three 30-byte messages");
    assert_eq!(running.broker.stats.dropped.load(Ordering::Relaxed), 7);
    running.stop();
}

#[test]
fn a_persistent_session_unused_past_its_expiry_is_removed_with_its_subscriptions() {
    let ttl = Duration::from_millis(200);
    let running = start_with(Config { persistent_expiry: Some(ttl), ..Config::default() });
    let (mut s, _) = Client::connect(running.addr, "old", false, None);
    s.subscribe("q", QoS::AtLeastOnce);
    s.send(&Packet::Disconnect);
    s.expect_closed("DISCONNECT");
    let (_connected, ack) = Client::connect(running.addr, "connected", false, None);
    assert_eq!(ack.code, ConnectReturn::Accepted);
    running.broker.expire_sessions();
    assert_eq!(running.broker.persistent_sessions(), 2, "not expired yet");
    std::thread::sleep(ttl * 2); // the age is what is tested
    running.broker.expire_sessions();
    assert_eq!(running.broker.persistent_sessions(), 1, "only the connected one stays");
    assert_eq!(running.broker.subscription_count(), 0);
    assert_eq!(running.broker.stats.expired_sessions.load(Ordering::Relaxed), 1);
    let (_, ack) = Client::connect(running.addr, "old", false, None);
    assert!(!ack.session_present, "its session is gone");
    running.stop();
}

#[test]
fn max_keepalive_and_retain_available_behave_as_in_mosquitto() {
    let config = Config { max_keepalive: 60, retain_available: false, ..Config::default() };
    let running = start_with(config);
    let (_, ack) = Client::connect(running.addr, "k60", true, None); // keep-alive 60: the bound
    assert_eq!(ack.code, ConnectReturn::Accepted);
    let mut long = Client::open(running.addr);
    long.send(&Packet::Connect(pubsub_protocol::packet::Connect {
        keep_alive: 61,
        ..connect_packet("k61", true, None)
    }));
    assert_eq!(
        long.recv(),
        Packet::Connack(pubsub_protocol::packet::Connack {
            session_present: false,
            code: ConnectReturn::IdentifierRejected
        })
    );
    long.expect_closed("a keep-alive over max_keepalive");
    let mut never = Client::open(running.addr);
    never.send(&Packet::Connect(pubsub_protocol::packet::Connect {
        keep_alive: 0,
        ..connect_packet("k0", true, None)
    }));
    assert!(matches!(never.recv(), Packet::Connack(a) if a.code == ConnectReturn::IdentifierRejected));
    never.expect_closed("keep-alive 0 (never) with max_keepalive set, as mosquitto");
    let (mut p, _) = Client::connect(running.addr, "p", true, None);
    p.publish("t", b"not retained", QoS::AtMostOnce, false);
    p.send(&Packet::Publish(pubsub_protocol::packet::Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: true,
        topic: "t".into(),
        packet_id: None,
        payload: b"retained".to_vec().into(),
    }));
    p.expect_closed("a retained PUBLISH with retain_available false");
    let mut w = Client::open(running.addr);
    let will = LastWill { topic: "w".into(), message: b"bye".to_vec(), qos: QoS::AtMostOnce, retain: true };
    w.send(&Packet::Connect(connect_packet("w", true, Some(will))));
    w.expect_closed("a retained will with retain_available false");
    assert_eq!(running.broker.retained_count(), 0);
    still_served(&running);
    running.stop();
}
