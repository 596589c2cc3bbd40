//! The MQTT load generator: one thread and one `mio` poll drive every publisher and
//! subscriber of a run, so it needs a single CPU and its own cost is easy to see.
//!
//! It is closed-loop: a message is *outstanding* from its PUBLISH until the last of its
//! subscribers has it, and a publisher may have at most `window` outstanding messages
//! (`total_window` over all publishers). The broker is kept busy without letting its
//! queues grow without bound, which would measure queueing, not delivery, and make
//! brokers drop messages. Each payload carries (publisher, sequence, send time), so every
//! subscriber can tell lost and duplicated deliveries and the publish-to-receive time.
//!
//! A run: connect and subscribe everyone (not timed), publish for `duration`, then drain
//! until nothing is outstanding or nothing arrived for a second, then DISCONNECT.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use pubsub_protocol::packet::QoS;

use super::setup;
use super::tally::{Outcome, Seen};
use super::wire::{self, Frame, Stamp, PUBACK, PUBLISH};
use crate::error::{Context, Error, Result};

/// The drain ends when nothing arrived for this long.
const IDLE: Duration = Duration::from_secs(1);
/// Longest drain, whatever trickles in.
const DRAIN_CAP: Duration = Duration::from_secs(10);
/// Longest sleep in `poll`, so the stop time and pacing are seen promptly.
const TICK: Duration = Duration::from_millis(20);
/// Reads of one socket per turn before the others get theirs.
const READS_PER_TURN: usize = 64;
/// Longest wait for the broker to close every connection after DISCONNECT.
const GOODBYE: Duration = Duration::from_secs(5);
/// Bytes per `read` call.
const SCRATCH: usize = 64 * 1024;

/// What one run does.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Clients that publish (all to the same topic).
    pub publishers: usize,
    /// Clients subscribed to that topic.
    pub subscribers: usize,
    /// QoS of the publishes and the subscriptions.
    pub qos: QoS,
    /// Outstanding messages per publisher.
    pub window: usize,
    /// Outstanding messages over all publishers.
    pub total_window: usize,
    /// How long to publish.
    pub duration: Duration,
    /// Paced: one message per interval (still within the window); `None` publishes as
    /// fast as the window allows.
    pub interval: Option<Duration>,
}

/// The edges of a run's measured window, for work that must line up with it (the
/// churn thread, the allocation and syscall counts of `bench mqtt --count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Every client is connected and subscribed; publishing starts next.
    Start,
    /// The drain is over (or the run failed); DISCONNECT comes next.
    End,
}

/// The client ids and topic of run `run_id` contain this (the churn uses it too).
pub fn tag(run_id: u64) -> String {
    format!("{}-{run_id}", std::process::id())
}

/// Runs `scenario` against the broker at `addr`; `run_id` makes client ids and the
/// topic unique, so no session or subscription of an earlier run interferes.
/// `broker_cpu` reads the broker's CPU time so far (sampled when the generator's is);
/// `marks` is called at [`Mark::Start`] and, whatever happened, at [`Mark::End`].
pub fn run(
    addr: SocketAddr,
    scenario: &Scenario,
    run_id: u64,
    broker_cpu: &dyn Fn() -> Duration,
    marks: &mut dyn FnMut(Mark) -> Result<()>,
) -> Result<Outcome> {
    if scenario.publishers == 0 || scenario.subscribers == 0 || scenario.window == 0 {
        return Err(Error::Tool("a run needs a publisher, a subscriber and a window".into()));
    }
    if scenario.qos == QoS::ExactlyOnce {
        return Err(Error::Tool("the generator speaks QoS 0 and 1 only".into()));
    }
    let mut gen = Gen::connect(addr, scenario, run_id)?;
    let result = marks(Mark::Start).and_then(|()| gen.drive(broker_cpu));
    let ended = marks(Mark::End);
    gen.disconnect();
    let outcome = result?;
    ended.map(|()| outcome)
}

/// One client connection.
#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    /// The start of a packet whose end has not arrived yet.
    pending: Vec<u8>,
    /// Bytes not yet accepted by the socket.
    out: Vec<u8>,
    /// Listed in `Gen::dirty`.
    dirty: bool,
}

/// A publisher's side of the window.
#[derive(Debug, Default)]
struct Publisher {
    next_seq: u32,
    outstanding: usize,
    /// In `Gen::ready`.
    queued: bool,
    /// Per sequence number: subscribers that have not received it yet.
    remaining: Vec<u32>,
    next_id: u16,
    unacked: u64,
}

/// The state of one run: its connections, windows and tallies.
#[derive(Debug)]
struct Gen<'a> {
    sc: &'a Scenario,
    addr: SocketAddr,
    topic: Vec<u8>,
    qos: u8,
    clock: Instant,
    poll: Poll,
    /// Publishers first, then subscribers; the index is the mio token.
    conns: Vec<Conn>,
    pubs: Vec<Publisher>,
    /// Per subscriber, per publisher: the sequence numbers received.
    seen: Vec<Vec<Seen>>,
    /// Publishers with room in their window, served round-robin.
    ready: VecDeque<usize>,
    outstanding: usize,
    unacked: u64,
    dirty: Vec<usize>,
    /// Connections left readable after `READS_PER_TURN` reads.
    backlog: Vec<usize>,
    scratch: Vec<u8>,
    out: Outcome,
    first_publish_ns: Option<u64>,
    last_delivery_ns: u64,
    last_progress_ns: u64,
    next_due_ns: u64,
}

impl<'a> Gen<'a> {
    fn connect(addr: SocketAddr, sc: &'a Scenario, run_id: u64) -> Result<Gen<'a>> {
        let clock = Instant::now();
        let tag = tag(run_id);
        let topic = format!("bench/{tag}");
        let poll = Poll::new().context(|| "creating a poll".into())?;
        let mut conns = Vec::with_capacity(sc.publishers + sc.subscribers);
        for i in 0..sc.publishers + sc.subscribers {
            let (id, sub) = match i.checked_sub(sc.publishers) {
                None => (format!("b{tag}-p{i}"), None),
                Some(j) => (format!("b{tag}-s{j}"), Some(topic.as_str())),
            };
            conns.push(open(&poll, addr, &id, sub, sc.qos, i)?);
        }
        let out = Outcome { setup: clock.elapsed(), ..Outcome::default() };
        Ok(Gen {
            sc,
            addr,
            topic: topic.into_bytes(),
            qos: sc.qos as u8,
            clock,
            poll,
            conns,
            pubs: (0..sc.publishers)
                .map(|_| Publisher { queued: true, next_id: 1, ..Default::default() })
                .collect(),
            seen: (0..sc.subscribers).map(|_| vec![Seen::default(); sc.publishers]).collect(),
            ready: (0..sc.publishers).collect(),
            outstanding: 0,
            unacked: 0,
            dirty: Vec::new(),
            backlog: Vec::new(),
            scratch: vec![0; SCRATCH],
            out,
            first_publish_ns: None,
            last_delivery_ns: 0,
            last_progress_ns: 0,
            next_due_ns: 0,
        })
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Publishes for the scenario's duration, drains, and returns what was measured.
    fn drive(&mut self, broker_cpu: &dyn Fn() -> Duration) -> Result<Outcome> {
        let broker_before = broker_cpu();
        let cpu = thread_cpu()?;
        let start = self.now_ns();
        let stop = start + duration_ns(self.sc.duration);
        let hard_stop = stop + duration_ns(DRAIN_CAP);
        self.next_due_ns = start;
        self.fill();
        self.flush_dirty()?;
        let mut events = Events::with_capacity(1024);
        loop {
            let now = self.now_ns();
            if now >= hard_stop || (now >= stop && self.settled(now, stop)) {
                break;
            }
            self.wait(&mut events, now, stop)?;
            for event in events.iter() {
                let i = event.token().0;
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.read(i)?;
                }
                if event.is_writable() {
                    self.flush(i)?;
                }
            }
            for i in std::mem::take(&mut self.backlog) {
                self.read(i)?;
            }
            if self.now_ns() < stop {
                self.fill();
            }
            self.flush_dirty()?;
        }
        self.finish(cpu, broker_cpu, broker_before)
    }

    /// Everything published has arrived (and been acknowledged), or nothing has come
    /// for [`IDLE`] since publishing stopped.
    fn settled(&self, now: u64, stop: u64) -> bool {
        let done = self.outstanding == 0 && self.unacked == 0;
        done || now.saturating_sub(self.last_progress_ns.max(stop)) > duration_ns(IDLE)
    }

    fn wait(&mut self, events: &mut Events, now: u64, stop: u64) -> Result<()> {
        let mut timeout = if self.backlog.is_empty() { duration_ns(TICK) } else { 0 };
        if now < stop {
            timeout = timeout.min(stop - now);
            if self.sc.interval.is_some() && !self.ready.is_empty() {
                timeout = timeout.min(self.next_due_ns.saturating_sub(now));
            }
        }
        match self.poll.poll(events, Some(Duration::from_nanos(timeout))) {
            Err(e) if e.kind() == ErrorKind::Interrupted => {
                events.clear();
                Ok(())
            }
            other => other.context(|| "polling client sockets".into()),
        }
    }

    /// Publishes from ready publishers, round-robin, while the windows (and the pace)
    /// allow.
    fn fill(&mut self) {
        while self.outstanding < self.sc.total_window {
            let Some(&p) = self.ready.front() else { break };
            if let Some(interval) = self.sc.interval {
                if self.now_ns() < self.next_due_ns {
                    break;
                }
                self.next_due_ns += duration_ns(interval);
            }
            self.ready.pop_front();
            self.publish(p);
            if self.pubs[p].outstanding < self.sc.window {
                self.ready.push_back(p);
            } else {
                self.pubs[p].queued = false;
            }
        }
    }

    fn publish(&mut self, p: usize) {
        let subscribers = u32::try_from(self.sc.subscribers).unwrap_or(u32::MAX);
        let sent_ns = self.now_ns();
        self.first_publish_ns.get_or_insert(sent_ns);
        let qos = self.qos;
        let publisher = &mut self.pubs[p];
        let seq = publisher.next_seq;
        publisher.next_seq += 1;
        publisher.remaining.push(subscribers);
        publisher.outstanding += 1;
        let id = publisher.next_id;
        if qos == 1 {
            // Ids 1..=65535 cycle; the window keeps far fewer than 65,535 unacknowledged.
            publisher.next_id = publisher.next_id.checked_add(1).unwrap_or(1);
            publisher.unacked += 1;
            self.unacked += 1;
        }
        self.outstanding += 1;
        self.out.published += 1;
        let stamp = Stamp { publisher: p as u32, seq, sent_ns };
        wire::publish(&mut self.conns[p].out, &self.topic, qos, id, stamp);
        self.mark_dirty(p);
    }

    fn mark_dirty(&mut self, i: usize) {
        if !self.conns[i].dirty {
            self.conns[i].dirty = true;
            self.dirty.push(i);
        }
    }

    fn flush_dirty(&mut self) -> Result<()> {
        for i in std::mem::take(&mut self.dirty) {
            self.conns[i].dirty = false;
            self.flush(i)?;
        }
        Ok(())
    }

    /// Writes what the socket takes; the rest waits for its WRITABLE event.
    fn flush(&mut self, i: usize) -> Result<()> {
        let c = &mut self.conns[i];
        let mut at = 0;
        for _ in 0..1024 {
            if at == c.out.len() {
                break;
            }
            match c.stream.write(&c.out[at..]) {
                Ok(0) => return Err(Error::Tool(format!("{}: client {i} cannot write", self.addr))),
                Ok(n) => at += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e).context(|| format!("writing to {} (client {i})", self.addr)),
            }
        }
        c.out.drain(..at);
        Ok(())
    }

    fn read(&mut self, i: usize) -> Result<()> {
        let mut scratch = std::mem::take(&mut self.scratch);
        let result = self.read_into(i, &mut scratch);
        self.scratch = scratch;
        result
    }

    fn read_into(&mut self, i: usize, scratch: &mut [u8]) -> Result<()> {
        for _ in 0..READS_PER_TURN {
            let n = match self.conns[i].stream.read(scratch) {
                Ok(0) => return Err(self.bad(i, "the broker closed the connection")),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context(|| format!("reading from {} (client {i})", self.addr)),
            };
            let now = self.now_ns();
            self.take_bytes(i, &scratch[..n], now)?;
            if n < scratch.len() {
                // A short read emptied the socket; anything later raises a new edge.
                return Ok(());
            }
        }
        self.backlog.push(i);
        Ok(())
    }

    fn take_bytes(&mut self, i: usize, data: &[u8], now: u64) -> Result<()> {
        let mut pending = std::mem::take(&mut self.conns[i].pending);
        let result = if pending.is_empty() {
            self.packets(i, data, now).map(|used| pending.extend_from_slice(&data[used..]))
        } else {
            pending.extend_from_slice(data);
            self.packets(i, &pending, now).map(|used| drop(pending.drain(..used)))
        };
        self.conns[i].pending = pending;
        result
    }

    /// Handles the whole packets at the front of `buf`; returns the bytes they used.
    fn packets(&mut self, i: usize, buf: &[u8], now: u64) -> Result<usize> {
        let mut at = 0;
        loop {
            let f = match wire::frame(&buf[at..]) {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(at),
                Err(e) => return Err(self.bad(i, &format!("malformed packet: {e}"))),
            };
            let packet = &buf[at..at + f.total];
            match i.checked_sub(self.sc.publishers) {
                None => self.publisher_packet(i, f, packet)?,
                Some(sub) => self.subscriber_packet(i, sub, f, packet, now)?,
            }
            at += f.total;
        }
    }

    fn publisher_packet(&mut self, i: usize, f: Frame, packet: &[u8]) -> Result<()> {
        if f.kind() != PUBACK || self.qos != 1 {
            return Err(self.bad(i, &format!("unexpected packet type {} to a publisher", f.kind())));
        }
        wire::puback_id(f, packet).map_err(|e| self.bad(i, &format!("bad PUBACK: {e}")))?;
        let Some(left) = self.pubs[i].unacked.checked_sub(1) else {
            return Err(self.bad(i, "PUBACK with nothing unacknowledged"));
        };
        self.pubs[i].unacked = left;
        self.unacked -= 1;
        self.last_progress_ns = self.now_ns();
        Ok(())
    }

    fn subscriber_packet(&mut self, i: usize, sub: usize, f: Frame, packet: &[u8], now: u64) -> Result<()> {
        if f.kind() != PUBLISH {
            return Err(self.bad(i, &format!("unexpected packet type {} to a subscriber", f.kind())));
        }
        let view = wire::publish_view(f, packet).map_err(|e| self.bad(i, &format!("bad PUBLISH: {e}")))?;
        if view.qos != self.qos || view.topic != self.topic.as_slice() {
            return Err(self.bad(i, &format!("PUBLISH at QoS {} to another topic or QoS", view.qos)));
        }
        let stamp = Stamp::read(view.payload).ok_or_else(|| self.bad(i, "a payload that is not ours"))?;
        if view.qos == 1 {
            wire::puback(&mut self.conns[i].out, view.packet_id);
            self.mark_dirty(i);
        }
        self.deliver(i, sub, stamp, now)
    }

    fn deliver(&mut self, i: usize, sub: usize, stamp: Stamp, now: u64) -> Result<()> {
        let p = stamp.publisher as usize;
        let published = self.pubs.get(p).map_or(0, |pb| pb.next_seq);
        if stamp.seq >= published {
            return Err(self.bad(i, "a delivery of a message never published"));
        }
        self.last_progress_ns = now;
        if !self.seen[sub][p].insert(stamp.seq) {
            self.out.duplicates += 1;
            return Ok(());
        }
        let latency = now.saturating_sub(stamp.sent_ns);
        self.out.delivered += 1;
        self.out.latency.record(latency);
        self.out.latency_sum_ns += u128::from(latency);
        self.last_delivery_ns = now;
        let publisher = &mut self.pubs[p];
        let left = &mut publisher.remaining[stamp.seq as usize];
        *left = left.checked_sub(1).expect("each subscriber counts a message once: `seen` said it is new");
        if *left == 0 {
            self.out.last_sum_ns += u128::from(latency);
            publisher.outstanding -= 1;
            self.outstanding -= 1;
            if !publisher.queued {
                publisher.queued = true;
                self.ready.push_back(p);
            }
        }
        Ok(())
    }

    fn bad(&self, i: usize, what: &str) -> Error {
        let role = match i.checked_sub(self.sc.publishers) {
            None => format!("publisher {i}"),
            Some(j) => format!("subscriber {j}"),
        };
        Error::Tool(format!("MQTT broker at {}, {role}: {what}", self.addr))
    }

    fn finish(
        &mut self,
        cpu_before: Duration,
        broker_cpu: &dyn Fn() -> Duration,
        broker_before: Duration,
    ) -> Result<Outcome> {
        if self.unacked > 0 {
            log::warn!("{}: {} PUBACKs missing at the end of the run", self.addr, self.unacked);
        }
        for (p, pb) in self.pubs.iter().enumerate() {
            if let Some(first) = pb.remaining.iter().position(|&r| r > 0) {
                let n = pb.remaining.iter().filter(|&&r| r > 0).count();
                log::debug!(
                    "{}: publisher {p}: {n} messages not fully delivered, from seq {first}",
                    self.addr
                );
            }
        }
        let mut out = std::mem::take(&mut self.out);
        out.expected = out.published * self.sc.subscribers as u64;
        let first = self.first_publish_ns.unwrap_or(0);
        out.span = Duration::from_nanos(self.last_delivery_ns.saturating_sub(first));
        out.generator_cpu = thread_cpu()?.saturating_sub(cpu_before);
        out.broker_cpu = broker_cpu().saturating_sub(broker_before);
        Ok(out)
    }

    /// Says goodbye on every connection and waits (at most [`GOODBYE`]) until the broker
    /// has closed them all: the next run, perhaps on another broker sharing the server
    /// CPU, must not pay for this run's disconnects. Best effort: the figures are taken.
    fn disconnect(&mut self) {
        let mut open = 0;
        for c in &mut self.conns {
            // Mid-packet leftovers would turn DISCONNECT into garbage; just hang up then.
            let said = c.out.is_empty() && matches!(c.stream.write(&[0xE0, 0]), Ok(2));
            c.dirty = said;
            if said {
                open += 1;
            } else {
                let _ = c.stream.shutdown(std::net::Shutdown::Both);
            }
        }
        let deadline = Instant::now() + GOODBYE;
        let mut events = Events::with_capacity(1024);
        let mut scratch = std::mem::take(&mut self.scratch);
        // `dirty` now marks connections still waiting for the broker's close; a first
        // pass catches closes that raised their edge before this loop.
        let mut check: Vec<usize> = (0..self.conns.len()).collect();
        while open > 0 && Instant::now() < deadline {
            for i in check.drain(..) {
                let c = &mut self.conns[i];
                if c.dirty && drained_to_end(&mut c.stream, &mut scratch) {
                    c.dirty = false;
                    open -= 1;
                }
            }
            if self.poll.poll(&mut events, Some(TICK)).is_err() {
                break;
            }
            check.extend(events.iter().map(|e| e.token().0));
        }
        self.scratch = scratch;
    }
}

/// Reads and drops what is there; `true` once the peer has closed (or the socket failed).
fn drained_to_end(stream: &mut TcpStream, scratch: &mut [u8]) -> bool {
    for _ in 0..READS_PER_TURN {
        match stream.read(scratch) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
    false
}

fn open(
    poll: &Poll,
    addr: SocketAddr,
    id: &str,
    topic: Option<&str>,
    qos: QoS,
    token: usize,
) -> Result<Conn> {
    let ready = setup::client(addr, id, topic, qos)?;
    ready.stream.set_nonblocking(true).context(|| "making a socket non-blocking".into())?;
    let mut stream = TcpStream::from_std(ready.stream);
    poll.registry()
        .register(&mut stream, Token(token), Interest::READABLE | Interest::WRITABLE)
        .context(|| "registering a client socket".into())?;
    Ok(Conn { stream, pending: ready.pending, out: Vec::new(), dirty: false })
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// CPU time (user + system) of the calling thread.
pub fn thread_cpu() -> Result<Duration> {
    use nix::sys::resource::{getrusage, UsageWho};
    let usage = getrusage(UsageWho::RUSAGE_THREAD).context(|| "reading the thread's CPU time".into())?;
    let micros = |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64;
    Ok(Duration::from_micros(micros(usage.user_time()) + micros(usage.system_time())))
}
