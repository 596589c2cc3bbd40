//! Connecting a client before a run: TCP connect, CONNECT/CONNACK and, for
//! subscribers, SUBSCRIBE/SUBACK, one client at a time with blocking sockets.
//!
//! One at a time keeps the broker's listen backlog from overflowing when 1,000 clients
//! arrive (a dropped SYN costs a one-second retransmission), and a round trip on
//! loopback is a few tens of microseconds, so 1,000 subscribers are ready in well under
//! a second. The set-up is not part of any measured time.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use pubsub_protocol::packet::{decode, Connect, ConnectReturn, Packet, QoS, Subscribe};

use super::wire::MAX_PACKET;
use crate::error::{Context, Error, Result};

/// How long one set-up step may take before the broker is declared stuck.
const STEP: Duration = Duration::from_secs(10);

/// A connected client and any bytes read past its last set-up packet.
#[derive(Debug)]
pub struct Ready {
    /// Blocking; the caller switches it to non-blocking.
    pub stream: TcpStream,
    /// Bytes already read that belong to the run.
    pub pending: Vec<u8>,
}

/// Connects `client_id` with a clean session and no keep-alive (nothing idles during a
/// run); subscribes it to `topic` at `qos` if `topic` is given.
pub fn client(addr: SocketAddr, client_id: &str, topic: Option<&str>, qos: QoS) -> Result<Ready> {
    let stream = TcpStream::connect_timeout(&addr, STEP).context(|| format!("connecting to {addr}"))?;
    // The generator writes small packets it wants on the wire at once.
    stream.set_nodelay(true).context(|| "setting TCP_NODELAY".into())?;
    stream.set_read_timeout(Some(STEP)).context(|| "setting a read timeout".into())?;
    stream.set_write_timeout(Some(STEP)).context(|| "setting a write timeout".into())?;
    let mut ready = Ready { stream, pending: Vec::new() };
    let connect = Connect {
        level: 4,
        clean_session: true,
        keep_alive: 0,
        client_id: client_id.to_string(),
        will: None,
        username: None,
        password: None,
    };
    match ready.ask(&Packet::Connect(connect), addr)? {
        Packet::Connack(c) if c.code == ConnectReturn::Accepted => {}
        other => return Err(Error::Tool(format!("{addr} answered CONNECT of {client_id} with {other:?}"))),
    }
    if let Some(topic) = topic {
        let subscribe = Subscribe { packet_id: 1, filters: vec![(topic.to_string(), qos)] };
        match ready.ask(&Packet::Subscribe(subscribe), addr)? {
            Packet::Suback(1, codes) if codes == [qos as u8] => {}
            other => {
                return Err(Error::Tool(format!("{addr} answered SUBSCRIBE of {client_id} with {other:?}")))
            }
        }
    }
    Ok(ready)
}

impl Ready {
    /// Sends `packet` and reads the answer.
    fn ask(&mut self, packet: &Packet, addr: SocketAddr) -> Result<Packet> {
        self.stream.write_all(&packet.to_bytes()).context(|| format!("writing to {addr}"))?;
        let deadline = Instant::now() + STEP;
        let mut buf = [0u8; 512];
        while Instant::now() < deadline {
            match decode(&self.pending, MAX_PACKET) {
                Ok(Some((answer, used))) => {
                    self.pending.drain(..used);
                    return Ok(answer);
                }
                Ok(None) => {}
                Err(e) => return Err(Error::Tool(format!("{addr} sent a malformed packet: {e}"))),
            }
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(Error::Tool(format!("{addr} closed the connection during set-up"))),
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e).context(|| format!("reading from {addr}")),
            }
        }
        Err(Error::Tool(format!("{addr} did not answer within {STEP:?}")))
    }
}
