//! Connection churn beside a fan-out run: a second generator thread, with its own
//! `mio` poll, opens clients at a fixed rate while the load generator publishes.
//!
//! Each churn client connects with a clean session, subscribes to a topic of its own
//! (every [`WILDCARD_EVERY`]th also to `bench/+`, a wildcard filter matching the run's
//! topic, so the broker's routing for the hot topic changes under the publisher),
//! holds for [`HOLD`], sends DISCONNECT and waits for the broker to close. CONNECT and
//! SUBSCRIBE go out together as soon as TCP connects: the churn is open-loop, so a slow
//! broker shows as clients piling up (bounded by [`Plan::max_open`]) and a lower
//! achieved rate, not as a generator that quietly slows down.
//!
//! The thread is bounded in count (`rate × duration` clients) and time (the plan's
//! duration, then at most [`GRACE`] to close the clients still open).

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use pubsub_protocol::packet::{decode, Connect, ConnectReturn, Packet, QoS, Subscribe};

use super::load::thread_cpu;
use super::wire::{self, MAX_PACKET, PUBLISH};
use crate::error::{Context, Error, Result};
use crate::procs;

/// One client in this many also subscribes to the wildcard filter.
pub const WILDCARD_EVERY: u64 = 5;
/// The wildcard filter: it matches every run's topic (`bench/<pid>-<run>`).
pub const WILDCARD: &str = "bench/+";
/// How long a client stays subscribed before it disconnects.
pub const HOLD: Duration = Duration::from_millis(10);
/// Longest a client may take to be connected and subscribed, or to be closed.
const STEP: Duration = Duration::from_secs(5);
/// Longest wait for open clients once the churn stops.
const GRACE: Duration = Duration::from_secs(5);
/// Longest sleep in `poll`, so due clients start on time.
const TICK: Duration = Duration::from_millis(1);

/// How much churn to make.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Clients started per second.
    pub rate: u32,
    /// How long to start them.
    pub duration: Duration,
    /// Most clients open at once; a due client beyond it is skipped (and counted).
    pub max_open: usize,
}

/// What a churn thread did.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// TCP connects begun.
    pub started: u64,
    /// CONNACKs that accepted the client.
    pub connected: u64,
    /// SUBACKs that granted every filter.
    pub subscribed: u64,
    /// Whole cycles: closed by the broker after our DISCONNECT.
    pub closed: u64,
    /// Refused, reset, malformed or timed out.
    pub failed: u64,
    /// Due but not started: [`Plan::max_open`] clients were still open.
    pub skipped: u64,
    /// Fan-out messages delivered to wildcard subscribers (read and dropped).
    pub publishes: u64,
    /// From the first connect to the end of the plan's duration.
    pub window: Duration,
    /// CPU time of the churn thread.
    pub cpu: Duration,
}

impl Tally {
    /// Accepted CONNECTs per second of the window: the churn rate achieved.
    pub fn connect_rate(&self) -> f64 {
        let secs = self.window.as_secs_f64();
        if secs > 0.0 {
            self.connected as f64 / secs
        } else {
            0.0
        }
    }
}

/// A running churn thread.
#[derive(Debug)]
pub struct Churn {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<Tally>>,
}

impl Churn {
    /// Starts churning against `addr` now, on a thread pinned to `cpu` if given;
    /// `tag` makes client ids and topics unique to the run.
    pub fn start(addr: SocketAddr, plan: Plan, tag: String, cpu: Option<usize>) -> Result<Churn> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("mqtt-churn".into())
            .spawn(move || {
                if let Some(cpu) = cpu {
                    procs::pin_current_thread(cpu)?;
                }
                Driver::new(addr, plan, tag)?.run(&flag)
            })
            .context(|| "spawning the churn thread".into())?;
        Ok(Churn { stop, thread })
    }

    /// Stops starting clients (if the plan has not already), closes the open ones and
    /// returns the tally.
    pub fn finish(self) -> Result<Tally> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().map_err(|_| Error::Tool("the churn thread panicked".into()))?
    }
}

/// Where a churn client is in its cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// TCP connect in progress.
    Connecting,
    /// CONNECT and SUBSCRIBE sent; waiting for CONNACK and SUBACK.
    Acks,
    /// Subscribed until the instant given.
    Holding(Instant),
    /// DISCONNECT sent; waiting for the broker to close.
    Closing,
}

#[derive(Debug)]
struct Client {
    stream: TcpStream,
    state: State,
    /// The start of a packet whose end has not arrived yet.
    pending: Vec<u8>,
    /// When the current step times out.
    deadline: Instant,
    /// CONNECT and SUBSCRIBE, written once TCP connects.
    hello: Vec<u8>,
}

/// The churn thread's state.
#[derive(Debug)]
struct Driver {
    addr: SocketAddr,
    plan: Plan,
    tag: String,
    poll: Poll,
    /// Indexed by token; `None` is a free slot.
    clients: Vec<Option<Client>>,
    free: Vec<usize>,
    open: usize,
    scratch: Vec<u8>,
    tally: Tally,
}

impl Driver {
    fn new(addr: SocketAddr, plan: Plan, tag: String) -> Result<Driver> {
        let poll = Poll::new().context(|| "creating the churn poll".into())?;
        let (clients, free, scratch) = (Vec::new(), Vec::new(), vec![0; 16 * 1024]);
        Ok(Driver { addr, plan, tag, poll, clients, free, open: 0, scratch, tally: Tally::default() })
    }

    fn run(mut self, stop: &AtomicBool) -> Result<Tally> {
        let cpu = thread_cpu()?;
        let start = Instant::now();
        let total = (f64::from(self.plan.rate) * self.plan.duration.as_secs_f64()).round() as u64;
        let period = Duration::from_secs_f64(1.0 / f64::from(self.plan.rate.max(1)));
        let mut events = Events::with_capacity(256);
        let mut next = 0u64;
        let mut stopped_at = None;
        loop {
            let now = Instant::now();
            if stopped_at.is_none() && (next >= total || stop.load(Ordering::Relaxed)) {
                stopped_at = Some(now);
                // A plan carried out late took longer than its duration: that is the
                // rate achieved. One stopped early took what it took.
                let elapsed = now.duration_since(start);
                self.tally.window = if next >= total { elapsed.max(self.plan.duration) } else { elapsed };
            }
            while stopped_at.is_none() && next < total && start + period.mul_f64(next as f64) <= now {
                self.open_client(next);
                next += 1;
            }
            match stopped_at {
                Some(_) if self.open == 0 => break,
                Some(t) if now > t + GRACE => break,
                _ => {}
            }
            self.expire(now);
            let due = start + period.mul_f64(next as f64);
            let wait = if stopped_at.is_none() { due.saturating_duration_since(now).min(TICK) } else { TICK };
            match self.poll.poll(&mut events, Some(wait)) {
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                other => other.context(|| "polling churn clients".into())?,
            }
            for event in events.iter() {
                self.step(event.token().0);
            }
        }
        self.tally.failed += self.open as u64;
        self.tally.cpu = thread_cpu()?.saturating_sub(cpu);
        Ok(self.tally)
    }

    fn open_client(&mut self, i: u64) {
        if self.open >= self.plan.max_open {
            self.tally.skipped += 1;
            return;
        }
        self.tally.started += 1;
        let t = self.free.pop().unwrap_or(self.clients.len());
        let interest = Interest::READABLE | Interest::WRITABLE;
        let stream = TcpStream::connect(self.addr)
            .and_then(|mut s| self.poll.registry().register(&mut s, Token(t), interest).map(|()| s));
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                if t < self.clients.len() {
                    self.free.push(t);
                }
                return self.fail(None, &format!("connect: {e}"));
            }
        };
        let hello = hello(&self.tag, i);
        let client = Client {
            stream,
            state: State::Connecting,
            pending: Vec::new(),
            deadline: Instant::now() + STEP,
            hello,
        };
        if t == self.clients.len() {
            self.clients.push(Some(client));
        } else {
            self.clients[t] = Some(client);
        }
        self.open += 1;
    }

    /// Fails clients whose step took too long; disconnects those whose hold is over.
    fn expire(&mut self, now: Instant) {
        for t in 0..self.clients.len() {
            let Some(c) = self.clients[t].as_ref() else { continue };
            match c.state {
                State::Holding(until) if until <= now => self.goodbye(t),
                _ if c.deadline <= now => self.fail(Some(t), "timed out"),
                _ => {}
            }
        }
    }

    /// Moves client `t` on after an event.
    fn step(&mut self, t: usize) {
        let Some(c) = self.clients.get_mut(t).and_then(Option::as_mut) else { return };
        if c.state == State::Connecting {
            // A refused connect shows as a socket error; a pending one as no peer yet.
            if let Ok(Some(e)) | Err(e) = c.stream.take_error() {
                return self.fail(Some(t), &format!("connect: {e}"));
            }
            match c.stream.peer_addr() {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NotConnected => return,
                Err(e) => return self.fail(Some(t), &format!("connect: {e}")),
            }
            let _ = c.stream.set_nodelay(true);
            // The socket's buffer is empty: a short write of ~100 bytes means trouble.
            if !matches!(c.stream.write(&c.hello), Ok(n) if n == c.hello.len()) {
                return self.fail(Some(t), "cannot send CONNECT");
            }
            c.state = State::Acks;
        }
        if let Err(why) = self.read(t) {
            self.fail(Some(t), &why);
        }
    }

    /// Reads what is there and handles whole packets; `Err` says why to give up.
    fn read(&mut self, t: usize) -> std::result::Result<(), String> {
        let mut scratch = std::mem::take(&mut self.scratch);
        let result = loop {
            let Some(c) = self.clients.get_mut(t).and_then(Option::as_mut) else { break Ok(()) };
            match c.stream.read(&mut scratch) {
                Ok(0) if c.state == State::Closing => {
                    self.tally.closed += 1;
                    self.remove(t);
                    break Ok(());
                }
                Ok(0) => break Err("the broker closed the connection".into()),
                Ok(n) => {
                    c.pending.extend_from_slice(&scratch[..n]);
                    if let Err(why) = self.packets(t) {
                        break Err(why);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => break Err(e.to_string()),
            }
        };
        self.scratch = scratch;
        result
    }

    fn packets(&mut self, t: usize) -> std::result::Result<(), String> {
        let Some(c) = self.clients.get_mut(t).and_then(Option::as_mut) else { return Ok(()) };
        let mut at = 0;
        while let Some(f) = wire::frame(&c.pending[at..]).map_err(|e| e.to_string())? {
            let packet = &c.pending[at..at + f.total];
            at += f.total;
            if f.kind() == PUBLISH {
                self.tally.publishes += 1;
                continue;
            }
            match decode(packet, MAX_PACKET).map_err(|e| e.to_string())? {
                Some((Packet::Connack(a), _)) if a.code == ConnectReturn::Accepted => {
                    self.tally.connected += 1
                }
                Some((Packet::Suback(1, codes), _)) if codes.iter().all(|&q| q == 0) => {
                    self.tally.subscribed += 1;
                    c.state = State::Holding(Instant::now() + HOLD);
                    c.deadline = Instant::now() + HOLD + STEP;
                }
                other => return Err(format!("unexpected {other:?}")),
            }
        }
        c.pending.drain(..at);
        Ok(())
    }

    /// Sends DISCONNECT and half-closes; the broker's close ends the cycle.
    fn goodbye(&mut self, t: usize) {
        let Some(c) = self.clients.get_mut(t).and_then(Option::as_mut) else { return };
        if !matches!(c.stream.write(&[0xE0, 0]), Ok(2)) {
            return self.fail(Some(t), "cannot send DISCONNECT");
        }
        let _ = c.stream.shutdown(std::net::Shutdown::Write);
        c.state = State::Closing;
        c.deadline = Instant::now() + STEP;
        // The close may already be there, its edge raised before this state.
        if let Err(why) = self.read(t) {
            self.fail(Some(t), &why);
        }
    }

    fn fail(&mut self, t: Option<usize>, why: &str) {
        log::debug!("{}: churn client {t:?}: {why}", self.addr);
        self.tally.failed += 1;
        if let Some(t) = t {
            self.remove(t);
        }
    }

    fn remove(&mut self, t: usize) {
        if let Some(mut c) = self.clients.get_mut(t).and_then(Option::take) {
            let _ = self.poll.registry().deregister(&mut c.stream);
            self.free.push(t);
            self.open -= 1;
        }
    }
}

/// CONNECT (clean session, no keep-alive) and SUBSCRIBE (packet id 1, QoS 0) of churn
/// client `i`: its own topic, and for every [`WILDCARD_EVERY`]th the wildcard too.
fn hello(tag: &str, i: u64) -> Vec<u8> {
    let connect = Connect {
        level: 4,
        clean_session: true,
        keep_alive: 0,
        client_id: format!("c{tag}-{i}"),
        will: None,
        username: None,
        password: None,
    };
    let mut filters = vec![(format!("churn/{tag}/{i}"), QoS::AtMostOnce)];
    if i % WILDCARD_EVERY == 0 {
        filters.push((WILDCARD.to_string(), QoS::AtMostOnce));
    }
    let mut out = Packet::Connect(connect).to_bytes();
    out.extend_from_slice(&Packet::Subscribe(Subscribe { packet_id: 1, filters }).to_bytes());
    out
}
