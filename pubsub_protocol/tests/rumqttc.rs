//! A real Rust MQTT client, `rumqttc`, against the broker: QoS 0/1/2, retained
//! messages, and a will when the client vanishes.

mod util;

use std::time::{Duration, Instant};

use rumqttc::{Client, Connection, Event, LastWill, MqttOptions, Packet, QoS};
use util::{start, PATIENCE};

fn client(id: &str, port: u16, will: Option<LastWill>) -> (Client, Connection) {
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30));
    if let Some(will) = will {
        opts.set_last_will(will);
    }
    Client::new(opts, 64)
}

/// Polls `conn` until `pick` returns something (every event is needed for the
/// client's protocol to progress).
fn wait<T>(conn: &mut Connection, what: &str, mut pick: impl FnMut(&Packet) -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match conn.recv_timeout(left) {
            Ok(Ok(Event::Incoming(p))) => {
                if let Some(found) = pick(&p) {
                    return found;
                }
            }
            Ok(Ok(Event::Outgoing(_))) => {}
            other => panic!("no {what}: {other:?}"),
        }
    }
}

/// Drives a client's event loop on a thread until it ends.
fn drive(mut conn: Connection) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || for _ in conn.iter().take_while(Result::is_ok) {})
}

#[test]
fn rumqttc_publishes_and_receives_at_every_qos_with_retained_messages_and_wills() {
    let running = start();
    let port = running.addr.port();
    let (sub, mut sub_conn) = client("rumqttc-sub", port, None);
    sub.subscribe("r/#", QoS::ExactlyOnce).expect("queued");
    wait(&mut sub_conn, "SUBACK", |p| matches!(p, Packet::SubAck(_)).then_some(()));

    let (publisher, pub_conn) = client("rumqttc-pub", port, None);
    let driver = drive(pub_conn);
    for (qos, body) in [(QoS::AtMostOnce, "zero"), (QoS::AtLeastOnce, "one"), (QoS::ExactlyOnce, "two")] {
        publisher.publish("r/x", qos, false, body).expect("queued");
        let got = wait(&mut sub_conn, body, |p| match p {
            Packet::Publish(m) => Some((m.qos, m.payload.to_vec())),
            _ => None,
        });
        assert_eq!(got, (qos, body.as_bytes().to_vec()));
    }
    publisher.publish("r/kept", QoS::AtLeastOnce, true, "retained").expect("queued");
    wait(&mut sub_conn, "the retained publish live", |p| matches!(p, Packet::Publish(_)).then_some(()));

    let (late, mut late_conn) = client("rumqttc-late", port, None);
    late.subscribe("r/kept", QoS::AtLeastOnce).expect("queued");
    let retained = wait(&mut late_conn, "retained", |p| match p {
        Packet::Publish(m) => Some((m.retain, m.payload.to_vec())),
        _ => None,
    });
    assert_eq!(retained, (true, b"retained".to_vec()));

    let will = LastWill::new("r/will", "vanished", QoS::AtLeastOnce, false);
    let (_doomed, mut doomed_conn) = client("rumqttc-doomed", port, Some(will));
    wait(&mut doomed_conn, "CONNACK", |p| matches!(p, Packet::ConnAck(_)).then_some(()));
    drop(doomed_conn); // the socket closes without DISCONNECT
    let got = wait(&mut sub_conn, "the will", |p| match p {
        Packet::Publish(m) if m.topic == "r/will" => Some(m.payload.to_vec()),
        _ => None,
    });
    assert_eq!(got, b"vanished");

    publisher.disconnect().expect("queued");
    driver.join().expect("publisher loop");
    running.stop();
}
