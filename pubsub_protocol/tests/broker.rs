//! The broker over real sockets: a minimal client built on this crate's codec, and
//! the real `mosquitto_pub`/`mosquitto_sub` (Debian `mosquitto-clients`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use protocol_server::Server;
use pubsub_protocol::packet::{
    decode, Connack, Connect, ConnectReturn, LastWill, Packet, Publish, QoS, Subscribe,
};
use pubsub_protocol::{Broker, Config, Mqtt};

const PATIENCE: Duration = Duration::from_secs(10);

struct Running {
    broker: Arc<Broker>,
    server: Server,
    addr: SocketAddr,
    thread: std::thread::JoinHandle<Result<(), protocol_server::Error>>,
}

fn start() -> Running {
    let broker = Arc::new(Broker::new(Config::default()));
    let shared = Arc::clone(&broker);
    let (tx, rx) = mpsc::channel();
    let builder = Server::builder()
        .threads(2)
        .port(0)
        .signals(false)
        .on_init(move |s| tx.send(s.clone()).expect("test waits"))
        .protocol(move || Mqtt::new(Arc::clone(&shared)));
    let thread = std::thread::spawn(move || builder.start());
    let server = rx.recv_timeout(PATIENCE).expect("broker starts");
    let addr = server.local_addrs()[0];
    Running { broker, server, addr, thread }
}

impl Running {
    fn stop(self) {
        self.server.stop();
        self.thread.join().expect("thread").expect("clean stop");
    }
}

/// A bare client: sends packets, reads packets.
struct Client {
    stream: TcpStream,
    input: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr, id: &str, clean: bool, will: Option<LastWill>) -> (Client, Connack) {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        let mut c = Client { stream, input: Vec::new() };
        let connect = Connect {
            level: 4,
            clean_session: clean,
            keep_alive: 60,
            client_id: id.into(),
            will,
            username: None,
            password: None,
        };
        c.send(&Packet::Connect(connect));
        match c.recv() {
            Some(Packet::Connack(ack)) => (c, ack),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    fn send(&mut self, p: &Packet) {
        self.stream.write_all(&p.to_bytes()).expect("write");
    }

    /// The next packet, or `None` once the broker closed the connection.
    fn recv(&mut self) -> Option<Packet> {
        loop {
            if let Some((p, used)) = decode(&self.input, 1 << 20).expect("the broker sends valid packets") {
                self.input.drain(..used);
                return Some(p);
            }
            let mut buf = [0u8; 4096];
            match self.stream.read(&mut buf) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.input.extend_from_slice(&buf[..n]),
            }
        }
    }

    fn subscribe(&mut self, filter: &str, qos: QoS) {
        self.send(&Packet::Subscribe(Subscribe { packet_id: 1, filters: vec![(filter.into(), qos)] }));
        assert_eq!(self.recv(), Some(Packet::Suback(1, vec![qos as u8])));
    }

    fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS, retain: bool) {
        let packet_id = (qos != QoS::AtMostOnce).then_some(9);
        self.send(&Packet::Publish(Publish {
            dup: false,
            qos,
            retain,
            topic: topic.into(),
            packet_id,
            payload: payload.into(),
        }));
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => assert_eq!(self.recv(), Some(Packet::Puback(9))),
            QoS::ExactlyOnce => {
                assert_eq!(self.recv(), Some(Packet::Pubrec(9)));
                self.send(&Packet::Pubrel(9));
                assert_eq!(self.recv(), Some(Packet::Pubcomp(9)));
            }
        }
    }

    /// Receives a PUBLISH and acknowledges it as its QoS requires.
    fn received(&mut self) -> Publish {
        let Some(Packet::Publish(p)) = self.recv() else { panic!("expected PUBLISH") };
        match (p.qos, p.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => self.send(&Packet::Puback(id)),
            (QoS::ExactlyOnce, Some(id)) => {
                self.send(&Packet::Pubrec(id));
                assert_eq!(self.recv(), Some(Packet::Pubrel(id)));
                self.send(&Packet::Pubcomp(id));
            }
            _ => {}
        }
        p
    }

    /// Proves everything sent before was processed: a PINGREQ round trip.
    fn sync(&mut self) {
        self.send(&Packet::Pingreq);
        assert_eq!(self.recv(), Some(Packet::Pingresp));
    }
}

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
        assert_eq!(got.payload, format!("{qos:?}").as_bytes());
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
    assert_eq!((got.topic.as_str(), got.payload.as_slice(), got.retain), ("r/a", &b"two"[..], true));
    s.sync();
    assert_eq!(s.input.len(), 0, "the cleared retained message is not sent");
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
    let (killed, _) = Client::connect(running.addr, "killed", true, will("wills/killed"));
    drop(killed); // no DISCONNECT: the network connection just ends
    let got = watcher.received();
    assert_eq!(got.topic, "wills/killed", "only the vanished client's will");
    running.stop();
}

#[test]
fn a_persistent_session_keeps_subscriptions_and_qos1_messages_while_offline() {
    let running = start();
    let (mut s, ack) = Client::connect(running.addr, "keeper", false, None);
    assert!(!ack.session_present);
    s.subscribe("news", QoS::AtLeastOnce);
    s.send(&Packet::Disconnect);
    assert_eq!(s.recv(), None);
    let (mut p, _) = Client::connect(running.addr, "p", true, None);
    p.publish("news", b"while you were away", QoS::AtLeastOnce, false);
    p.sync();
    let (mut back, ack) = Client::connect(running.addr, "keeper", false, None);
    assert!(ack.session_present, "the session survived");
    assert_eq!(back.received().payload, b"while you were away");
    running.stop();
}

#[test]
fn the_same_client_id_takes_over_and_dollar_topics_escape_wildcards() {
    let running = start();
    let (mut first, _) = Client::connect(running.addr, "dup", true, None);
    let (mut second, _) = Client::connect(running.addr, "dup", true, None);
    assert_eq!(first.recv(), None, "the first connection is closed");
    second.subscribe("#", QoS::AtMostOnce);
    let (mut sys, _) = Client::connect(running.addr, "sys", true, None);
    sys.subscribe("$SYS/#", QoS::AtMostOnce);
    let (mut p, _) = Client::connect(running.addr, "p", true, None);
    p.publish("$SYS/test", b"x", QoS::AtLeastOnce, false);
    p.publish("plain", b"y", QoS::AtLeastOnce, false);
    assert_eq!(sys.received().topic, "$SYS/test");
    assert_eq!(second.received().topic, "plain", "# does not match $SYS topics");
    running.stop();
}

#[test]
fn malformed_packets_close_only_their_connection() {
    let running = start();
    let (mut good, _) = Client::connect(running.addr, "good", true, None);
    good.subscribe("a", QoS::AtMostOnce);
    let mut bad = TcpStream::connect(running.addr).expect("connect");
    bad.set_read_timeout(Some(PATIENCE)).expect("timeout");
    bad.write_all(&[0x30, 3, 0, 1, b'#']).expect("write"); // PUBLISH before CONNECT, wildcard topic
    let mut buf = [0u8; 16];
    assert_eq!(bad.read(&mut buf).unwrap_or(0), 0, "closed");
    let (mut bad2, _) = Client::connect(running.addr, "bad2", true, None);
    bad2.stream.write_all(&[0x36, 5, 0, 1, b'a', 0, 1]).expect("write"); // QoS 3
    assert_eq!(bad2.recv(), None);
    let (mut p, _) = Client::connect(running.addr, "p", true, None);
    p.publish("a", b"still here", QoS::AtMostOnce, false);
    assert_eq!(good.received().payload, b"still here");
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
