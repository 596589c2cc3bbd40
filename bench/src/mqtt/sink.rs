//! The "sink": a trivial MQTT broker inside `bench`, used to show the load generator's
//! own ceiling. It answers CONNECT, SUBSCRIBE, UNSUBSCRIBE and PINGREQ, acknowledges
//! QoS 1 publishes, and copies every PUBLISH's bytes unchanged to every subscribed
//! connection: no topic matching, no sessions, no queue limits, one thread.
//!
//! Whatever a real broker must do per message, the sink does less, so if the generator
//! delivers more messages a second through the sink than through a broker, the broker,
//! not the generator, set that broker's figure.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use pubsub_protocol::packet::{decode, Packet};

use super::wire::{self, Frame, MAX_PACKET, PUBACK, PUBLISH};
use crate::error::{Context, Error, Result};
use crate::procs;

const LISTENER: Token = Token(usize::MAX - 1);
const WAKE: Token = Token(usize::MAX);
/// Reads of one socket per turn before the others get theirs.
const READS_PER_TURN: usize = 64;

/// A running sink; stopped by [`Sink::stop`] or on drop.
#[derive(Debug)]
pub struct Sink {
    /// Where it listens (127.0.0.1, a port the kernel picked).
    pub addr: SocketAddr,
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Sink {
    /// Starts the sink on its own thread, pinned to `cpu` if given. It is listening
    /// when this returns.
    pub fn start(cpu: Option<usize>) -> Result<Sink> {
        let std_listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .context(|| "binding the sink to 127.0.0.1:0".into())?;
        std_listener.set_nonblocking(true).context(|| "making the sink's listener non-blocking".into())?;
        let addr = std_listener.local_addr().context(|| "reading the sink's address".into())?;
        let mut listener = TcpListener::from_std(std_listener);
        let poll = Poll::new().context(|| "creating the sink's poll".into())?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .context(|| "registering the sink's listener".into())?;
        let waker =
            Arc::new(Waker::new(poll.registry(), WAKE).context(|| "creating the sink's waker".into())?);
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("mqtt-sink".into())
            .spawn(move || {
                if let Some(cpu) = cpu {
                    procs::pin_current_thread(cpu)?;
                }
                Switch::new(poll, listener).run(&stop_flag)
            })
            .context(|| "spawning the sink thread".into())?;
        Ok(Sink { addr, waker, stop, thread: Some(thread) })
    }

    /// Stops the thread and reports how it ended.
    pub fn stop(mut self) -> Result<()> {
        self.halt()
    }

    fn halt(&mut self) -> Result<()> {
        let Some(thread) = self.thread.take() else { return Ok(()) };
        self.stop.store(true, Ordering::Release);
        self.waker.wake().context(|| "waking the sink".into())?;
        thread.join().map_err(|_| Error::Tool("the sink thread panicked".into()))?
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}

/// One client of the sink.
#[derive(Debug)]
struct Peer {
    stream: TcpStream,
    pending: Vec<u8>,
    out: Vec<u8>,
    dirty: bool,
    subscribed: bool,
}

/// The sink's event loop state.
#[derive(Debug)]
struct Switch {
    poll: Poll,
    listener: TcpListener,
    /// Indexed by token; `None` is a free slot.
    peers: Vec<Option<Peer>>,
    free: Vec<usize>,
    subscribers: Vec<usize>,
    dirty: Vec<usize>,
    backlog: Vec<usize>,
    scratch: Vec<u8>,
}

impl Switch {
    fn new(poll: Poll, listener: TcpListener) -> Switch {
        Switch {
            poll,
            listener,
            peers: Vec::new(),
            free: Vec::new(),
            subscribers: Vec::new(),
            dirty: Vec::new(),
            backlog: Vec::new(),
            scratch: vec![0; 64 * 1024],
        }
    }

    /// Serves until `stop` is set (and the waker fired).
    fn run(mut self, stop: &AtomicBool) -> Result<()> {
        let mut events = Events::with_capacity(1024);
        while !stop.load(Ordering::Acquire) {
            let timeout = (!self.backlog.is_empty()).then_some(std::time::Duration::ZERO);
            match self.poll.poll(&mut events, timeout) {
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                other => other.context(|| "polling in the sink".into())?,
            }
            for event in events.iter() {
                match event.token() {
                    WAKE => {}
                    LISTENER => self.accept()?,
                    Token(t) => {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.read(t);
                        }
                        if event.is_writable() {
                            self.flush(t);
                        }
                    }
                }
            }
            for t in std::mem::take(&mut self.backlog) {
                self.read(t);
            }
            for t in std::mem::take(&mut self.dirty) {
                self.flush(t);
            }
        }
        Ok(())
    }

    fn accept(&mut self) -> Result<()> {
        loop {
            let (mut stream, _) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // A client that reset before accept, or a full fd table: not the sink's end.
                Err(e) => {
                    log::warn!("sink: accept failed: {e}");
                    return Ok(());
                }
            };
            let t = self.free.pop().unwrap_or(self.peers.len());
            let _ = stream.set_nodelay(true);
            self.poll
                .registry()
                .register(&mut stream, Token(t), Interest::READABLE | Interest::WRITABLE)
                .context(|| "registering a sink connection".into())?;
            let peer = Peer { stream, pending: Vec::new(), out: Vec::new(), dirty: false, subscribed: false };
            if t == self.peers.len() {
                self.peers.push(Some(peer));
            } else {
                self.peers[t] = Some(peer);
            }
        }
    }

    fn read(&mut self, t: usize) {
        let mut scratch = std::mem::take(&mut self.scratch);
        if let Err(why) = self.read_into(t, &mut scratch) {
            log::debug!("sink: closing connection {t}: {why}");
            self.close(t);
        }
        self.scratch = scratch;
    }

    fn read_into(&mut self, t: usize, scratch: &mut [u8]) -> std::result::Result<(), String> {
        for _ in 0..READS_PER_TURN {
            let Some(peer) = self.peers.get_mut(t).and_then(Option::as_mut) else { return Ok(()) };
            let n = match peer.stream.read(scratch) {
                Ok(0) => return Err("end of stream".into()),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.to_string()),
            };
            let mut pending = std::mem::take(&mut peer.pending);
            if pending.is_empty() {
                let used = self.packets(t, &scratch[..n])?;
                pending.extend_from_slice(&scratch[used..n]);
            } else {
                pending.extend_from_slice(&scratch[..n]);
                let used = self.packets(t, &pending)?;
                pending.drain(..used);
            }
            match self.peers.get_mut(t).and_then(Option::as_mut) {
                Some(peer) => peer.pending = pending,
                None => return Ok(()),
            }
            if n < scratch.len() {
                return Ok(());
            }
        }
        self.backlog.push(t);
        Ok(())
    }

    fn packets(&mut self, t: usize, buf: &[u8]) -> std::result::Result<usize, String> {
        let mut at = 0;
        while let Some(f) = wire::frame(&buf[at..]).map_err(|e| e.to_string())? {
            self.packet(t, f, &buf[at..at + f.total])?;
            at += f.total;
        }
        Ok(at)
    }

    fn packet(&mut self, t: usize, f: Frame, packet: &[u8]) -> std::result::Result<(), String> {
        match f.kind() {
            PUBLISH => return self.forward(t, f, packet),
            PUBACK => return Ok(()),
            _ => {}
        }
        let answer = match decode(packet, MAX_PACKET).map_err(|e| e.to_string())? {
            Some((Packet::Connect(_), _)) => Packet::Connack(pubsub_protocol::packet::Connack {
                session_present: false,
                code: pubsub_protocol::packet::ConnectReturn::Accepted,
            }),
            Some((Packet::Subscribe(s), _)) => {
                self.set_subscribed(t, true);
                Packet::Suback(s.packet_id, s.filters.iter().map(|(_, q)| *q as u8).collect())
            }
            Some((Packet::Unsubscribe(u), _)) => {
                self.set_subscribed(t, false);
                Packet::Unsuback(u.packet_id)
            }
            Some((Packet::Pingreq, _)) => Packet::Pingresp,
            other => return Err(format!("not served: {other:?}")),
        };
        self.send(t, |out| answer.encode(out));
        Ok(())
    }

    fn forward(&mut self, t: usize, f: Frame, packet: &[u8]) -> std::result::Result<(), String> {
        let view = wire::publish_view(f, packet).map_err(|e| e.to_string())?;
        for k in 0..self.subscribers.len() {
            let s = self.subscribers[k];
            self.send(s, |out| out.extend_from_slice(packet));
        }
        if view.qos == 1 {
            self.send(t, |out| wire::puback(out, view.packet_id));
        }
        Ok(())
    }

    fn send(&mut self, t: usize, write: impl FnOnce(&mut Vec<u8>)) {
        if let Some(peer) = self.peers.get_mut(t).and_then(Option::as_mut) {
            write(&mut peer.out);
            if !peer.dirty {
                peer.dirty = true;
                self.dirty.push(t);
            }
        }
    }

    fn set_subscribed(&mut self, t: usize, on: bool) {
        let Some(peer) = self.peers.get_mut(t).and_then(Option::as_mut) else { return };
        if peer.subscribed != on {
            peer.subscribed = on;
            if on {
                self.subscribers.push(t);
            } else {
                self.subscribers.retain(|&s| s != t);
            }
        }
    }

    fn flush(&mut self, t: usize) {
        let Some(peer) = self.peers.get_mut(t).and_then(Option::as_mut) else { return };
        peer.dirty = false;
        let mut at = 0;
        let mut failed = false;
        for _ in 0..1024 {
            if at == peer.out.len() {
                break;
            }
            match peer.stream.write(&peer.out[at..]) {
                Ok(0) => failed = true,
                Ok(n) => at += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => failed = true,
            }
            if failed {
                break;
            }
        }
        peer.out.drain(..at);
        if failed {
            self.close(t);
        }
    }

    fn close(&mut self, t: usize) {
        let Some(mut peer) = self.peers.get_mut(t).and_then(Option::take) else { return };
        let _ = self.poll.registry().deregister(&mut peer.stream);
        if peer.subscribed {
            self.subscribers.retain(|&s| s != t);
        }
        self.free.push(t);
    }
}
