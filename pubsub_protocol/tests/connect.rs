//! CONNECT rules, SUBACK failure codes, UNSUBACK, and redelivery with DUP.

mod util;

use pubsub_protocol::packet::{Connect, ConnectReturn, Packet, Publish, QoS, Subscribe, Unsubscribe};
use util::{start, Client};

/// Sends `c` on a new connection and leaves the answer unread.
fn raw_connect(addr: std::net::SocketAddr, c: Connect) -> Client {
    let mut client = Client::open(addr);
    client.send(&Packet::Connect(c));
    client
}

fn connect_packet(id: &str, clean: bool, level: u8) -> Connect {
    Connect {
        level,
        clean_session: clean,
        keep_alive: 30,
        client_id: id.into(),
        will: None,
        username: None,
        password: None,
    }
}

#[test]
fn connect_rules() {
    let running = start();
    // MQTT-3.1.2-2: an unsupported level gets CONNACK 0x01, then a close.
    let mut old = raw_connect(running.addr, connect_packet("old", true, 3));
    assert!(matches!(old.recv(), Packet::Connack(a) if a.code == ConnectReturn::BadLevel));
    old.expect_closed("a refused CONNECT (bad protocol level)");
    // MQTT-3.1.3-8: an empty id without clean session gets 0x02.
    let mut anon = raw_connect(running.addr, connect_packet("", false, 4));
    assert!(matches!(anon.recv(), Packet::Connack(a) if a.code == ConnectReturn::IdentifierRejected));
    anon.expect_closed("a refused CONNECT (empty id, persistent session)");
    // MQTT-3.1.3-6: with clean session the broker assigns one and serves it.
    let mut assigned = raw_connect(running.addr, connect_packet("", true, 4));
    assert!(matches!(assigned.recv(), Packet::Connack(a) if a.code == ConnectReturn::Accepted));
    assigned.sync();
    // MQTT-3.1.0-2: a second CONNECT closes the connection.
    assigned.send(&Packet::Connect(connect_packet("again", true, 4)));
    assigned.expect_closed("a second CONNECT");
    running.stop();
}

#[test]
fn an_invalid_filter_closes_the_connection_and_unsuback_always_answers() {
    let running = start();
    let (mut c, _) = Client::connect(running.addr, "c", true, None);
    c.send(&Packet::Unsubscribe(Unsubscribe { packet_id: 4, filters: vec!["never/subscribed".into()] }));
    assert_eq!(c.recv(), Packet::Unsuback(4)); // [MQTT-3.10.4-5]
    let filters = vec![("ok/+".to_string(), QoS::AtLeastOnce), ("bad/#/x".to_string(), QoS::AtMostOnce)];
    c.send(&Packet::Subscribe(Subscribe { packet_id: 3, filters }));
    // A protocol violation ([MQTT-4.7.1-2], [MQTT-4.8.0-1]), as mosquitto treats it.
    c.expect_closed("a SUBSCRIBE with the invalid filter bad/#/x");
    running.stop();
}

#[test]
fn unacknowledged_messages_are_resent_with_dup_on_reconnect() {
    let running = start();
    let (mut s, _) = Client::connect(running.addr, "forgetful", false, None);
    s.subscribe("d", QoS::AtLeastOnce);
    let (mut p, _) = Client::connect(running.addr, "p", true, None);
    p.publish("d", b"ack me", QoS::AtLeastOnce, false);
    let Packet::Publish(first) = s.recv() else { panic!("expected the message") };
    assert!(!first.dup);
    s.stream.shutdown(std::net::Shutdown::Both).expect("vanish without PUBACK");
    let (mut back, ack) = Client::connect(running.addr, "forgetful", false, None);
    assert!(ack.session_present);
    let Packet::Publish(again) = back.recv() else { panic!("expected the redelivery") };
    assert_eq!(again, Publish { dup: true, ..first }, "same packet id and payload, DUP set");
    back.send(&Packet::Puback(again.packet_id.expect("QoS 1 has an id")));
    back.expect_nothing_pending("one redelivery, acknowledged: nothing more to send");
    running.stop();
}

#[test]
fn garbage_before_connect_is_refused() {
    let running = start();
    let mut c = Client::open(running.addr);
    c.send(&Packet::Pingreq);
    c.expect_closed("a PINGREQ before CONNECT");
    running.stop();
}

#[test]
fn a_qos2_publish_resent_after_reconnect_is_routed_once() {
    let running = start();
    let (mut sub, _) = Client::connect(running.addr, "sub", true, None);
    sub.subscribe("once", QoS::AtLeastOnce);
    let msg = Publish {
        dup: false,
        qos: QoS::ExactlyOnce,
        retain: false,
        topic: "once".into(),
        packet_id: Some(5),
        payload: b"x".to_vec().into(),
    };
    let (mut p, _) = Client::connect(running.addr, "pub2", false, None);
    p.send(&Packet::Publish(msg.clone()));
    assert_eq!(p.recv(), Packet::Pubrec(5));
    p.stream.shutdown(std::net::Shutdown::Both).expect("vanish before PUBREL");
    let (mut again, _) = Client::connect(running.addr, "pub2", false, None);
    again.send(&Packet::Publish(Publish { dup: true, ..msg }));
    assert_eq!(again.recv(), Packet::Pubrec(5));
    again.send(&Packet::Pubrel(5));
    assert_eq!(again.recv(), Packet::Pubcomp(5));
    assert_eq!(&sub.received().payload[..], b"x");
    sub.expect_nothing_pending("the resent QoS 2 PUBLISH was routed twice");
    running.stop();
}
