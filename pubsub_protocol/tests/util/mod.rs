//! Test helpers: a broker on a free port and a bare client built on the codec.
//!
//! The client tells "the broker closed the connection" (EOF or a reset) apart from
//! "the broker said nothing" (a read timeout): a test that expects a close must not
//! pass because the broker merely stopped answering.
#![allow(dead_code)] // each test file uses a different subset

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use protocol_server::Server;
use pubsub_protocol::packet::{decode, Connack, Connect, LastWill, Packet, Publish, QoS, Subscribe};
use pubsub_protocol::{Broker, Config, Mqtt};

/// How long a wait that should succeed may take: generous, so a loaded machine does
/// not fail a test that would pass.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// How long a connection may idle before CONNECT sets its keep-alive (the binary
/// uses 30 s too). Longer than `PATIENCE`: a broker that should close a connection
/// but ignores it must not be rescued by the idle timeout closing it instead.
pub const IDLE: Duration = Duration::from_secs(30);

/// A broker on its own server thread, on a free port of 127.0.0.1.
pub struct Running {
    pub broker: Arc<Broker>,
    pub server: Server,
    pub addr: SocketAddr,
    pub thread: std::thread::JoinHandle<Result<(), protocol_server::Error>>,
}

/// Starts a broker with the default settings.
pub fn start() -> Running {
    start_with(Config::default())
}

/// Starts a broker with `config`, listening once this returns.
pub fn start_with(config: Config) -> Running {
    start_with_idle(config, IDLE)
}

impl Running {
    /// Stops the server and checks it stopped cleanly.
    pub fn stop(self) {
        self.server.stop();
        self.thread.join().expect("thread").expect("clean stop");
    }
}

/// What one wait for the broker found.
#[derive(Debug, PartialEq)]
pub enum Next {
    /// A whole packet.
    Packet(Packet),
    /// EOF, or the connection was reset or aborted: the broker closed it.
    Closed,
    /// Nothing within the read timeout: the connection is open, the broker silent.
    Silent,
}

/// An anonymous 3.1.1 CONNECT as `id` with keep-alive 60 s.
pub fn connect_packet(id: &str, clean: bool, will: Option<LastWill>) -> Connect {
    Connect {
        level: 4,
        clean_session: clean,
        keep_alive: 60,
        client_id: id.into(),
        will,
        username: None,
        password: None,
    }
}

/// A bare client: sends packets, reads packets.
pub struct Client {
    pub stream: TcpStream,
    pub input: Vec<u8>,
}

impl Client {
    /// A TCP connection to the broker with nothing sent yet (for raw bytes, a refused
    /// CONNECT, or a client that must stay silent).
    pub fn open(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect to the broker");
        stream.set_read_timeout(Some(PATIENCE)).expect("set the read timeout");
        // As real MQTT clients do: small acks must not wait for Nagle and delayed ACKs.
        stream.set_nodelay(true).expect("set TCP_NODELAY");
        Client { stream, input: Vec::new() }
    }

    /// Connects as `id` (keep-alive 60 s) and returns the CONNACK, whatever its code.
    pub fn connect(addr: SocketAddr, id: &str, clean: bool, will: Option<LastWill>) -> (Client, Connack) {
        let mut c = Client::open(addr);
        c.send(&Packet::Connect(connect_packet(id, clean, will)));
        match c.recv() {
            Packet::Connack(ack) => (c, ack),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Sends one packet.
    pub fn send(&mut self, p: &Packet) {
        self.send_bytes(&p.to_bytes());
    }

    /// Sends raw bytes (malformed packets, packets out of order).
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to the broker");
    }

    /// Waits up to the read timeout for the next packet, or for the broker to close.
    pub fn next(&mut self) -> Next {
        loop {
            if let Some((p, used)) = decode(&self.input, 1 << 20).expect("the broker sends valid packets") {
                self.input.drain(..used);
                return Next::Packet(p);
            }
            let mut buf = [0u8; 4096];
            match self.stream.read(&mut buf) {
                Ok(0) => return Next::Closed,
                Ok(n) => self.input.extend_from_slice(&buf[..n]),
                Err(e) => match e.kind() {
                    ErrorKind::Interrupted => {}
                    // A read timeout: Linux reports EAGAIN (WouldBlock), others ETIMEDOUT.
                    ErrorKind::WouldBlock | ErrorKind::TimedOut => return Next::Silent,
                    // A close with our bytes unread in the broker is a reset, not a FIN.
                    ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
                        return Next::Closed
                    }
                    _ => panic!("reading from the broker failed: {e}"),
                },
            }
        }
    }

    /// The next packet; panics if the broker closes the connection or stays silent
    /// for the whole read timeout instead.
    pub fn recv(&mut self) -> Packet {
        match self.next() {
            Next::Packet(p) => p,
            Next::Closed => panic!("expected a packet, but the broker closed the connection"),
            Next::Silent => panic!("expected a packet, but the broker went silent for {}", self.timeout()),
        }
    }

    /// Asserts that the broker closes the connection (EOF or reset), for the reason
    /// `why`; a packet instead, or silence for the whole read timeout, fails.
    pub fn expect_closed(&mut self, why: &str) {
        match self.next() {
            Next::Closed => assert!(self.input.is_empty(), "{why}: the broker closed mid-packet"),
            Next::Packet(p) => panic!("{why}: expected the broker to close the connection, it sent {p:?}"),
            Next::Silent => panic!(
                "{why}: expected the broker to close the connection, it went silent for {} and kept it open",
                self.timeout()
            ),
        }
    }

    /// Asserts that the broker sends nothing and keeps the connection open for `quiet`
    /// (a short, explicit wait: silence can only be sampled, not proved), because `why`.
    pub fn expect_silent(&mut self, quiet: Duration, why: &str) {
        self.stream.set_read_timeout(Some(quiet)).expect("set the read timeout");
        let next = self.next();
        self.stream.set_read_timeout(Some(PATIENCE)).expect("restore the read timeout");
        match next {
            Next::Silent => {}
            Next::Packet(p) => panic!("{why}: expected silence for {quiet:?}, the broker sent {p:?}"),
            Next::Closed => panic!("{why}: expected silence for {quiet:?}, the broker closed the connection"),
        }
    }

    fn timeout(&self) -> String {
        match self.stream.read_timeout() {
            Ok(Some(t)) => format!("{t:?}"),
            _ => "ever".into(),
        }
    }

    /// Subscribes to one filter and checks the SUBACK grants `qos`.
    pub fn subscribe(&mut self, filter: &str, qos: QoS) {
        self.send(&Packet::Subscribe(Subscribe { packet_id: 1, filters: vec![(filter.into(), qos)] }));
        assert_eq!(self.recv(), Packet::Suback(1, vec![qos as u8]), "SUBACK for {filter}");
    }

    /// Publishes and completes the QoS handshake (packet id 9 for QoS 1/2).
    pub fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS, retain: bool) {
        let packet_id = (qos != QoS::AtMostOnce).then_some(9);
        self.send(&Packet::Publish(Publish {
            dup: false,
            qos,
            retain,
            topic: topic.into(),
            packet_id,
            payload: payload.to_vec().into(),
        }));
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => assert_eq!(self.recv(), Packet::Puback(9)),
            QoS::ExactlyOnce => {
                assert_eq!(self.recv(), Packet::Pubrec(9));
                self.send(&Packet::Pubrel(9));
                assert_eq!(self.recv(), Packet::Pubcomp(9));
            }
        }
    }

    /// Receives a PUBLISH and acknowledges it as its QoS requires.
    pub fn received(&mut self) -> Publish {
        let p = match self.recv() {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        };
        match (p.qos, p.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => self.send(&Packet::Puback(id)),
            (QoS::ExactlyOnce, Some(id)) => {
                self.send(&Packet::Pubrec(id));
                assert_eq!(self.recv(), Packet::Pubrel(id));
                self.send(&Packet::Pubcomp(id));
            }
            _ => {}
        }
        p
    }

    /// Proves everything sent before was processed: a PINGREQ round trip.
    pub fn sync(&mut self) {
        self.send(&Packet::Pingreq);
        assert_eq!(self.recv(), Packet::Pingresp);
    }

    /// Asserts nothing is on its way to us: the broker answers a PINGREQ after it has
    /// sent whatever it had for us, so the next packet must be the PINGRESP.
    pub fn expect_nothing_pending(&mut self, why: &str) {
        self.send(&Packet::Pingreq);
        match self.recv() {
            Packet::Pingresp => {}
            other => panic!("{why}: expected nothing before PINGRESP, got {other:?}"),
        }
        assert!(self.input.is_empty(), "{why}: bytes after PINGRESP: {:?}", self.input);
    }
}

/// `start_with`, but a connection may idle only `idle` before CONNECT sets its
/// keep-alive: for the tests of that timeout itself (others keep `IDLE`, longer than
/// `PATIENCE`, so the timeout cannot pose as a close they expect).
pub fn start_with_idle(config: Config, idle: Duration) -> Running {
    let broker = Arc::new(Broker::new(config));
    let shared = Arc::clone(&broker);
    let builder = Server::builder()
        .threads(2)
        .port(0)
        .signals(false)
        .timeout(idle)
        .protocol(move || Mqtt::new(Arc::clone(&shared)));
    let (server, thread) = builder.spawn().expect("the broker starts");
    let addr = server.local_addrs()[0];
    Running { broker, server, addr, thread }
}

/// This process's memory, from `/proc/self/status` (the broker runs in-process).
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// Resident bytes (`VmRSS`): pages actually touched.
    pub resident: u64,
    /// Mapped bytes (`VmSize`): also counts an allocation that was never touched,
    /// which `resident` does not see (a large `Vec::with_capacity` is a fresh mmap).
    pub mapped: u64,
}

/// This process's memory now.
pub fn memory() -> Memory {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let kib = |key: &str| -> u64 {
        let line =
            status.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("no {key} in status"));
        let n = line[key.len()..].trim().trim_end_matches("kB").trim();
        n.parse::<u64>().unwrap_or_else(|e| panic!("{key} {n:?}: {e}")) * 1024
    };
    Memory { resident: kib("VmRSS:"), mapped: kib("VmSize:") }
}

/// Panics on the server's own threads (workers, reactor, server thread), counted from
/// the first call of this function, which installs the counting hook. A panicking
/// protocol hook is
/// caught and its connection closed, which a client cannot tell from a deliberate
/// close: a test that expects a close checks this too.
pub fn server_panics() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static PANICS: AtomicUsize = AtomicUsize::new(0);
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let name = std::thread::current().name().unwrap_or("").to_string();
            if name.starts_with("worker") || name == "reactor" || name == "server" {
                PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
    });
    PANICS.load(Ordering::SeqCst)
}
