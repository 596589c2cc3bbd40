//! The `pubsub` binary as shipped: its flags reach the broker and its own timers run.
//! `$SYS` updates every `--sys-interval` with live counts, the `--message-expiry`
//! sweep drops messages nobody reads, `--max-queued` with `--overflow drop` keeps
//! exactly that many for an offline session, and `--overflow block` holds a publisher
//! (no PUBACK) while a subscriber's queue is full, then loses nothing. Each is
//! observed over MQTT from outside the process, as an operator would.

#[path = "util/process.rs"]
mod process;
mod util;

use std::time::{Duration, Instant};

use process::Pubsub;
use pubsub_protocol::packet::{Packet, Publish, QoS, Subscribe};
use util::{Client, Next, PATIENCE};

/// Waits up to `within` for a live (not retained) `$SYS/broker/{topic}` update
/// whose value satisfies `wanted` (described by `what`); returns how many live
/// updates arrived meanwhile. `watcher` must be subscribed to that topic only.
fn await_sys(
    watcher: &mut Client,
    topic: &str,
    what: &str,
    within: Duration,
    wanted: impl Fn(&str) -> bool,
) -> usize {
    let deadline = Instant::now() + within;
    let mut live = Vec::new();
    while Instant::now() < deadline {
        match watcher.next() {
            // A retained copy is an old value, sent on subscribe: only live ones count.
            Next::Packet(Packet::Publish(m)) if !m.retain => {
                assert_eq!(&*m.topic, format!("$SYS/broker/{topic}"));
                let value = String::from_utf8(m.payload.to_vec()).expect("$SYS values are text");
                if wanted(&value) {
                    return live.len() + 1;
                }
                live.push(value);
            }
            Next::Packet(Packet::Publish(_)) => {}
            Next::Packet(other) => panic!("expected $SYS/broker/{topic}, got {other:?}"),
            Next::Closed => panic!("the broker closed the $SYS watcher"),
            Next::Silent => {
                panic!("no $SYS/broker/{topic} update within {PATIENCE:?}: the timer never fired")
            }
        }
    }
    panic!("no $SYS/broker/{topic} {what} within {within:?}; live values seen: {live:?}");
}

/// The next live (not retained) value of `$SYS/broker/{topic}`, the only topic
/// `watcher` is subscribed to.
fn next_live(watcher: &mut Client, topic: &str) -> String {
    loop {
        match watcher.recv() {
            Packet::Publish(m) if m.retain => {}
            Packet::Publish(m) => {
                assert_eq!(&*m.topic, format!("$SYS/broker/{topic}"));
                return String::from_utf8(m.payload.to_vec()).expect("$SYS values are text");
            }
            other => panic!("expected $SYS/broker/{topic}, got {other:?}"),
        }
    }
}

/// A QoS 1 PUBLISH with packet id 9, as `Client::publish` sends it.
fn qos1(topic: &str, payload: &[u8]) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: topic.into(),
        packet_id: Some(9),
        payload: payload.to_vec().into(),
    })
}

#[test]
fn sys_topics_are_published_every_interval_with_the_live_client_count() {
    let broker = Pubsub::start(&["--sys-interval", "1"]);
    let mut watcher = broker.connect("watcher", true);
    let mut other = broker.connect("other", true);
    watcher.subscribe("$SYS/broker/clients/connected", QoS::AtMostOnce);
    // Two clients are connected; every tick computed after the subscription says so.
    let updates = await_sys(&mut watcher, "clients/connected", "= 2", PATIENCE, |v| v == "2");
    assert!(updates <= 2, "a tick after the subscription reported a wrong count");
    other.send(&Packet::Disconnect);
    other.expect_closed("DISCONNECT");
    // A later tick follows the count down: the timer repeats and the value is live.
    await_sys(&mut watcher, "clients/connected", "= 1 after a disconnect", PATIENCE, |v| v == "1");
}

#[test]
fn max_queued_with_overflow_drop_keeps_exactly_that_many_and_counts_the_rest() {
    let broker = Pubsub::start(&["--max-queued", "5", "--overflow", "drop", "--sys-interval", "1"]);
    broker.offline_subscriber("slow", "q");
    let mut p = broker.connect("p", true);
    for n in 0..10u8 {
        p.publish("q", &[n], QoS::AtLeastOnce, false); // PUBACK: routed (or dropped) already
    }
    let mut watcher = broker.connect("watcher", true);
    watcher.subscribe("$SYS/broker/messages/dropped", QoS::AtMostOnce);
    await_sys(&mut watcher, "messages/dropped", "= 5", PATIENCE, |v| v == "5");
    let mut back = broker.connect("slow", false);
    for n in 0..5u8 {
        assert_eq!(&back.received().payload[..], [n], "the first five, in order");
    }
    back.expect_nothing_pending("--max-queued 5 keeps five messages");
}

#[test]
fn message_expiry_sweeps_unread_messages_and_delivers_fresh_ones() {
    const TTL_SECS: u64 = 3; // whole seconds; fresh messages must outlive a reconnect
    let ttl = Duration::from_secs(TTL_SECS);
    let broker = Pubsub::start(&["--message-expiry", &TTL_SECS.to_string(), "--sys-interval", "1"]);
    broker.offline_subscriber("late", "q");
    let mut p = broker.connect("p", true);
    p.publish("q", b"stale", QoS::AtLeastOnce, false);
    p.publish("kept", b"stale", QoS::AtLeastOnce, true);
    // Nobody reads either message, so only the periodic sweep can drop them; it runs
    // every ttl, so both are gone within two ttl. ($SYS topics, retained too, never
    // expire: nothing else counts.)
    let mut watcher = broker.connect("watcher", true);
    watcher.subscribe("$SYS/broker/messages/expired", QoS::AtMostOnce);
    let swept = |v: &str| v == "2";
    await_sys(&mut watcher, "messages/expired", "= 2 (queued + retained)", ttl * 2 + PATIENCE, swept);
    p.publish("q", b"fresh", QoS::AtLeastOnce, false);
    let mut back = broker.connect("late", false);
    assert_eq!(&back.received().payload[..], b"fresh", "the fresh message, not the stale one");
    back.expect_nothing_pending("the stale queued message expired");
    let mut reader = broker.connect("reader", true);
    reader.subscribe("kept", QoS::AtLeastOnce);
    reader.expect_nothing_pending("the stale retained message expired");
}

#[test]
fn overflow_block_holds_the_publisher_while_a_queue_is_full_and_loses_nothing() {
    // Quiet for this long counts as "held": the broker answers an unheld PUBLISH in
    // well under a millisecond, and a late answer only hides a failure, never fakes one.
    const HELD_FOR: Duration = Duration::from_secs(1);
    let flags = ["--max-queued", "3", "--max-inflight", "1", "--overflow", "block", "--sys-interval", "0"];
    let broker = Pubsub::start(&flags);
    // An online subscriber that does not acknowledge yet: one message in flight, then
    // its queue fills. (An offline one would hold publishers for good: issue 11.)
    let mut s = broker.connect("slow", true);
    s.subscribe("q", QoS::AtLeastOnce);
    let mut p = broker.connect("p", true);
    for n in 0..4u8 {
        p.publish("q", &[n], QoS::AtLeastOnce, false); // 1 in flight + 3 queued: acked
    }
    p.send(&qos1("q", &[4]));
    p.expect_silent(HELD_FOR, "the queue is full (--max-queued 3): the publisher is held");
    let publisher = std::thread::spawn(move || {
        assert_eq!(p.recv(), Packet::Puback(9), "the held PUBLISH is acknowledged once resumed");
        for n in 5..10u8 {
            p.publish("q", &[n], QoS::AtLeastOnce, false);
        }
    });
    for n in 0..10u8 {
        assert_eq!(&s.received().payload[..], [n], "nothing lost, in order");
    }
    publisher.join().expect("the publisher finished once the subscriber caught up");
    s.expect_nothing_pending("each message once");
}

#[test]
fn sys_topics_outlive_a_shorter_message_expiry_and_are_not_counted_as_received() {
    // $SYS is refreshed every 4 s and messages expire after 1 s (the sweep runs every
    // second): the broker's own topics must still be there between two refreshes.
    let broker = Pubsub::start(&["--message-expiry", "1", "--sys-interval", "4"]);
    let mut watcher = broker.connect("watcher", true);
    watcher.subscribe("$SYS/broker/messages/received", QoS::AtMostOnce);
    // No client published: the broker's own $SYS publications (a dozen per tick) are
    // not "received", so a tick after others still says 0.
    for tick in ["first", "second"] {
        let value = next_live(&mut watcher, "messages/received");
        assert_eq!(value, "0", "messages/received at the {tick} live tick");
    }
    let refreshed = Instant::now();
    // Past the expiry (and a sweep), before the next refresh: what is being tested is an
    // age, so the wait is the test itself.
    std::thread::sleep(Duration::from_millis(2_500));
    let mut reader = broker.connect("reader", true);
    reader.send(&Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![("$SYS/broker/uptime".into(), QoS::AtMostOnce)],
    }));
    assert_eq!(reader.recv(), Packet::Suback(1, vec![0]));
    match reader.recv() {
        Packet::Publish(m) => assert!(m.retain, "the retained $SYS copy, not a live one"),
        other => panic!("expected the retained $SYS/broker/uptime, got {other:?}"),
    }
    assert!(refreshed.elapsed() < Duration::from_secs(4), "a refresh came first: the check proved nothing");
}
