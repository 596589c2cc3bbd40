//! The broker over real sockets: a minimal client built on this crate's codec, and
//! the real `mosquitto_pub`/`mosquitto_sub` (Debian `mosquitto-clients`).

mod util;

use std::process::Command;
use std::time::Duration;

use pubsub_protocol::packet::{Connack, ConnectReturn, LastWill, Packet, QoS};
use util::{start, Client, PATIENCE};

#[test]
fn qos_0_1_2_round_trips_at_the_lower_of_both_qos() {
    let running = start();
    let (mut sub, ack) = Client::connect(running.addr, "sub", true, None);
    assert_eq!(ack, Connack { session_present: false, code: ConnectReturn::Accepted });
    sub.subscribe("t/#", QoS::AtLeastOnce);
    let (mut publisher, _) = Client::connect(running.addr, "pub", true, None);
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        publisher.publish("t/x", format!("{qos:?}").as_bytes(), qos, false);
        let got = sub.received();
        assert_eq!(&got.payload[..], format!("{qos:?}").as_bytes());
        assert_eq!(got.qos, qos.min(QoS::AtLeastOnce), "granted QoS caps delivery");
        assert!(!got.retain);
    }
    running.stop();
}

#[test]
fn retained_messages_are_set_replaced_cleared_and_sent_on_subscribe() {
    let running = start();
    let (mut p, _) = Client::connect(running.addr, "p", true, None);
    p.publish("r/a", b"one", QoS::AtLeastOnce, true);
    p.publish("r/a", b"two", QoS::AtLeastOnce, true);
    p.publish("r/b", b"gone", QoS::AtLeastOnce, true);
    p.publish("r/b", b"", QoS::AtLeastOnce, true);
    let (mut s, _) = Client::connect(running.addr, "s", true, None);
    s.subscribe("r/+", QoS::AtLeastOnce);
    let got = s.received();
    assert_eq!((&*got.topic, &got.payload[..], got.retain), ("r/a", &b"two"[..], true));
    s.expect_nothing_pending("the cleared retained message is not sent");
    running.stop();
}

#[test]
fn a_will_is_published_when_a_client_vanishes_but_not_after_disconnect() {
    let running = start();
    let (mut watcher, _) = Client::connect(running.addr, "w", true, None);
    watcher.subscribe("wills/#", QoS::AtLeastOnce);
    let will = |t: &str| {
        Some(LastWill { topic: t.into(), message: b"gone".to_vec(), qos: QoS::AtLeastOnce, retain: false })
    };
    let (mut polite, _) = Client::connect(running.addr, "polite", true, will("wills/polite"));
    polite.send(&Packet::Disconnect);
    polite.expect_closed("DISCONNECT");
    let (killed, _) = Client::connect(running.addr, "killed", true, will("wills/killed"));
    drop(killed); // no DISCONNECT: the network connection just ends
    let got = watcher.received();
    assert_eq!(&*got.topic, "wills/killed", "only the vanished client's will");
    watcher.expect_nothing_pending("a client that sent DISCONNECT has its will discarded");
    running.stop();
}

#[test]
fn a_persistent_session_keeps_subscriptions_and_qos1_messages_while_offline() {
    let running = start();
    let (mut s, ack) = Client::connect(running.addr, "keeper", false, None);
    assert!(!ack.session_present);
    s.subscribe("news", QoS::AtLeastOnce);
    s.send(&Packet::Disconnect);
    s.expect_closed("DISCONNECT");
    let (mut p, _) = Client::connect(running.addr, "p", true, None);
    p.publish("news", b"while you were away", QoS::AtLeastOnce, false);
    p.sync();
    let (mut back, ack) = Client::connect(running.addr, "keeper", false, None);
    assert!(ack.session_present, "the session survived");
    assert_eq!(&back.received().payload[..], b"while you were away");
    running.stop();
}

#[test]
fn the_same_client_id_takes_over_and_dollar_topics_escape_wildcards() {
    let running = start();
    let (mut first, _) = Client::connect(running.addr, "dup", true, None);
    let (mut second, _) = Client::connect(running.addr, "dup", true, None);
    first.expect_closed("a second connection with the same client id takes over");
    second.subscribe("#", QoS::AtMostOnce);
    let (mut sys, _) = Client::connect(running.addr, "sys", true, None);
    sys.subscribe("$SYS/#", QoS::AtMostOnce);
    let (mut p, _) = Client::connect(running.addr, "p", true, None);
    p.publish("$SYS/test", b"x", QoS::AtLeastOnce, false);
    p.publish("plain", b"y", QoS::AtLeastOnce, false);
    assert_eq!(&*sys.received().topic, "$SYS/test");
    assert_eq!(&*second.received().topic, "plain", "# does not match $SYS topics");
    running.stop();
}

#[test]
fn malformed_packets_close_only_their_connection() {
    let running = start();
    let (mut good, _) = Client::connect(running.addr, "good", true, None);
    good.subscribe("a", QoS::AtMostOnce);
    let mut bad = Client::open(running.addr);
    bad.send_bytes(&[0x30, 3, 0, 1, b'#']); // PUBLISH before CONNECT, wildcard topic
    bad.expect_closed("a PUBLISH with a wildcard topic before CONNECT");
    let (mut bad2, _) = Client::connect(running.addr, "bad2", true, None);
    bad2.send_bytes(&[0x36, 5, 0, 1, b'a', 0, 1]); // QoS 3
    bad2.expect_closed("a PUBLISH with QoS 3");
    let (mut p, _) = Client::connect(running.addr, "p", true, None);
    p.publish("a", b"still here", QoS::AtMostOnce, false);
    assert_eq!(&good.received().payload[..], b"still here");
    running.stop();
}

#[test]
fn mosquitto_clients_work_as_is() {
    let running = start();
    let port = running.addr.port().to_string();
    let sub = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port, "-t", "a/#", "-v", "-C", "3", "-W", "10", "-q", "2"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("mosquitto_sub is installed (.ci/run installs mosquitto-clients)");
    // Poll the broker (nothing signals us) until the subscription exists.
    let deadline = std::time::Instant::now() + PATIENCE;
    while running.broker.subscription_count() < 1 {
        assert!(std::time::Instant::now() < deadline, "mosquitto_sub never subscribed");
        std::thread::sleep(Duration::from_millis(5));
    }
    for (qos, msg) in [("0", "hi"), ("1", "one"), ("2", "two")] {
        let status = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port, "-t", "a/b", "-m", msg, "-q", qos])
            .status()
            .expect("mosquitto_pub runs");
        assert!(status.success());
    }
    let out = sub.wait_with_output().expect("mosquitto_sub ends after 3 messages");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a/b hi\na/b one\na/b two\n");
    running.stop();
}
