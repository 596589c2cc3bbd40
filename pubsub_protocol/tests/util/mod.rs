//! Test helpers: a broker on a free port and a bare client built on the codec.
#![allow(dead_code)] // each test file uses a different subset

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use protocol_server::Server;
use pubsub_protocol::packet::{decode, Connack, Connect, LastWill, Packet, Publish, QoS, Subscribe};
use pubsub_protocol::{Broker, Config, Mqtt};

pub const PATIENCE: Duration = Duration::from_secs(10);

pub struct Running {
    pub broker: Arc<Broker>,
    pub server: Server,
    pub addr: SocketAddr,
    pub thread: std::thread::JoinHandle<Result<(), protocol_server::Error>>,
}

pub fn start() -> Running {
    start_with(Config::default())
}

pub fn start_with(config: Config) -> Running {
    let broker = Arc::new(Broker::new(config));
    let shared = Arc::clone(&broker);
    let builder =
        Server::builder().threads(2).port(0).signals(false).protocol(move || Mqtt::new(Arc::clone(&shared)));
    let (server, thread) = builder.spawn().expect("the broker starts");
    let addr = server.local_addrs()[0];
    Running { broker, server, addr, thread }
}

impl Running {
    pub fn stop(self) {
        self.server.stop();
        self.thread.join().expect("thread").expect("clean stop");
    }
}

/// A bare client: sends packets, reads packets.
pub struct Client {
    pub stream: TcpStream,
    pub input: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr, id: &str, clean: bool, will: Option<LastWill>) -> (Client, Connack) {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        // As real MQTT clients do: small acks must not wait for Nagle and delayed ACKs.
        stream.set_nodelay(true).expect("nodelay");
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

    pub fn send(&mut self, p: &Packet) {
        self.stream.write_all(&p.to_bytes()).expect("write");
    }

    /// The next packet, or `None` once the broker closed the connection.
    pub fn recv(&mut self) -> Option<Packet> {
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

    pub fn subscribe(&mut self, filter: &str, qos: QoS) {
        self.send(&Packet::Subscribe(Subscribe { packet_id: 1, filters: vec![(filter.into(), qos)] }));
        assert_eq!(self.recv(), Some(Packet::Suback(1, vec![qos as u8])));
    }

    pub fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS, retain: bool) {
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
    pub fn received(&mut self) -> Publish {
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
    pub fn sync(&mut self) {
        self.send(&Packet::Pingreq);
        assert_eq!(self.recv(), Some(Packet::Pingresp));
    }
}
