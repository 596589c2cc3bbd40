//! CONNECT rules, SUBACK failure codes, UNSUBACK, and redelivery with DUP.

mod util;

use std::io::Write;
use std::net::TcpStream;

use pubsub_protocol::packet::{Connect, ConnectReturn, Packet, Publish, QoS, Subscribe, Unsubscribe};
use util::{start, Client, PATIENCE};

fn raw_connect(addr: std::net::SocketAddr, c: Connect) -> Client {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let mut client = Client { stream, input: Vec::new() };
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
    assert!(matches!(old.recv(), Some(Packet::Connack(a)) if a.code == ConnectReturn::BadLevel));
    assert_eq!(old.recv(), None);
    // MQTT-3.1.3-8: an empty id without clean session gets 0x02.
    let mut anon = raw_connect(running.addr, connect_packet("", false, 4));
    assert!(matches!(anon.recv(), Some(Packet::Connack(a)) if a.code == ConnectReturn::IdentifierRejected));
    assert_eq!(anon.recv(), None);
    // MQTT-3.1.3-6: with clean session the broker assigns one and serves it.
    let mut assigned = raw_connect(running.addr, connect_packet("", true, 4));
    assert!(matches!(assigned.recv(), Some(Packet::Connack(a)) if a.code == ConnectReturn::Accepted));
    assigned.sync();
    // MQTT-3.1.0-2: a second CONNECT closes the connection.
    assigned.send(&Packet::Connect(connect_packet("again", true, 4)));
    assert_eq!(assigned.recv(), None);
    running.stop();
}

#[test]
fn suback_fails_invalid_filters_and_unsuback_always_answers() {
    let running = start();
    let (mut c, _) = Client::connect(running.addr, "c", true, None);
    let filters = vec![("ok/+".to_string(), QoS::AtLeastOnce), ("bad/#/x".to_string(), QoS::AtMostOnce)];
    c.send(&Packet::Subscribe(Subscribe { packet_id: 3, filters }));
    assert_eq!(c.recv(), Some(Packet::Suback(3, vec![1, 0x80])));
    c.send(&Packet::Unsubscribe(Unsubscribe { packet_id: 4, filters: vec!["never/subscribed".into()] }));
    assert_eq!(c.recv(), Some(Packet::Unsuback(4)));
    running.stop();
}

#[test]
fn unacknowledged_messages_are_resent_with_dup_on_reconnect() {
    let running = start();
    let (mut s, _) = Client::connect(running.addr, "forgetful", false, None);
    s.subscribe("d", QoS::AtLeastOnce);
    let (mut p, _) = Client::connect(running.addr, "p", true, None);
    p.publish("d", b"ack me", QoS::AtLeastOnce, false);
    let Some(Packet::Publish(first)) = s.recv() else { panic!("expected the message") };
    assert!(!first.dup);
    s.stream.shutdown(std::net::Shutdown::Both).expect("vanish without PUBACK");
    let (mut back, ack) = Client::connect(running.addr, "forgetful", false, None);
    assert!(ack.session_present);
    let Some(Packet::Publish(again)) = back.recv() else { panic!("expected the redelivery") };
    assert_eq!(again, Publish { dup: true, ..first }, "same packet id and payload, DUP set");
    back.send(&Packet::Puback(again.packet_id.expect("QoS 1 has an id")));
    back.sync();
    running.stop();
}

#[test]
fn garbage_before_connect_is_refused() {
    let running = start();
    let mut s = TcpStream::connect(running.addr).expect("connect");
    s.set_read_timeout(Some(PATIENCE)).expect("timeout");
    s.write_all(&[0xC0, 0]).expect("PINGREQ before CONNECT");
    let mut buf = [0u8; 4];
    assert_eq!(std::io::Read::read(&mut s, &mut buf).unwrap_or(0), 0);
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
        payload: b"x".to_vec(),
    };
    let (mut p, _) = Client::connect(running.addr, "pub2", false, None);
    p.send(&Packet::Publish(msg.clone()));
    assert_eq!(p.recv(), Some(Packet::Pubrec(5)));
    p.stream.shutdown(std::net::Shutdown::Both).expect("vanish before PUBREL");
    let (mut again, _) = Client::connect(running.addr, "pub2", false, None);
    again.send(&Packet::Publish(Publish { dup: true, ..msg }));
    assert_eq!(again.recv(), Some(Packet::Pubrec(5)));
    again.send(&Packet::Pubrel(5));
    assert_eq!(again.recv(), Some(Packet::Pubcomp(5)));
    assert_eq!(sub.received().payload, b"x");
    sub.sync();
    assert!(sub.input.is_empty(), "routed twice");
    running.stop();
}
