//! Broker state shared by every connection: sessions, subscriptions, retained
//! messages, and the routing of a publish to its subscribers.
//!
//! Locks are short and taken in one order: the trie or the retained map alone, the
//! session map (read) to find a session, then that one session.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use protocol_server::{Conn, ConnId, Server};

use crate::packet::{Packet, Publish, QoS};
use crate::topic::{matches, Trie};

/// What to do when a subscriber's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Drop: a queued QoS 0 message first, else the new one; every drop is counted.
    #[default]
    Drop,
    /// Stop reading from publishers until the queue has room: nothing is lost.
    Block,
}

/// Broker settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Largest packet accepted (bigger ones close the connection).
    pub max_packet: usize,
    /// Messages queued per session: offline (QoS 1/2), beyond the in-flight window,
    /// or behind a socket that is not taking what we send.
    pub max_queued: usize,
    /// Outgoing QoS 1/2 messages awaiting acknowledgement per session.
    pub max_inflight: usize,
    /// Queued and retained messages older than this are dropped (`None`: kept).
    pub message_expiry: Option<Duration>,
    /// See [`Overflow`].
    pub overflow: Overflow,
}

impl Default for Config {
    fn default() -> Self {
        // mosquitto's defaults: max_queued_messages 1000, max_inflight_messages 20.
        Config {
            max_packet: 256 << 20,
            max_queued: 1000,
            max_inflight: 20,
            message_expiry: None,
            overflow: Overflow::Drop,
        }
    }
}

/// Bytes waiting in a subscriber's socket output before further messages queue in
/// its session instead, where the overflow policy applies.
const SOCKET_BACKLOG: usize = 64 * 1024;

/// Counters, for `$SYS` and tests.
#[derive(Debug, Default)]
pub struct Stats {
    /// PUBLISH packets received.
    pub received: AtomicU64,
    /// PUBLISH packets sent.
    pub sent: AtomicU64,
    /// Messages dropped because a queue was full.
    pub dropped: AtomicU64,
    /// Messages dropped because they outlived `message_expiry`.
    pub expired: AtomicU64,
    /// Bytes read from clients.
    pub bytes_received: AtomicU64,
    /// Bytes queued to clients.
    pub bytes_sent: AtomicU64,
}

/// An outgoing QoS 1/2 message awaiting its acknowledgement.
#[derive(Debug, Clone)]
pub(crate) enum Inflight {
    /// Sent; waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Publish(Publish),
    /// PUBREC received, PUBREL sent; waiting for PUBCOMP.
    Released,
}

/// What the broker keeps per client id.
#[derive(Debug, Default)]
pub(crate) struct Session {
    pub(crate) conn: Option<Conn>,
    pub(crate) clean: bool,
    pub(crate) filters: HashMap<String, QoS>,
    /// Outgoing packet id → state, in sending order.
    pub(crate) inflight: Vec<(u16, Inflight)>,
    /// Messages not sent yet (offline, window full, socket backlog), with their
    /// arrival time for expiry.
    pub(crate) queue: VecDeque<(Instant, Publish)>,
    /// Inbound QoS 2 packet ids between PUBREC and PUBREL; allocated on the first
    /// (most clients never publish at QoS 2, and every session is held in memory).
    #[allow(clippy::box_collection)] // one word per session, not a `HashSet`'s six
    pub(crate) receiving: Option<Box<HashSet<u16>>>,
    next_id: u16,
}

impl Session {
    fn next_id(&mut self) -> u16 {
        loop {
            self.next_id = self.next_id.wrapping_add(1).max(1);
            let id = self.next_id;
            if !self.inflight.iter().any(|(used, _)| *used == id) {
                return id;
            }
        }
    }

    fn online(&self) -> bool {
        self.conn.as_ref().is_some_and(Conn::is_open)
    }
}

/// The broker: one per server, shared by every connection's protocol value.
#[derive(Debug, Default)]
pub struct Broker {
    pub(crate) config: Config,
    pub(crate) sessions: RwLock<HashMap<Arc<str>, Arc<Mutex<Session>>>>,
    pub(crate) subscriptions: RwLock<Trie<Arc<str>>>,
    pub(crate) retained: RwLock<HashMap<String, (Instant, Publish)>>,
    /// Publishers paused because a subscriber's queue is full (`Overflow::Block`).
    blocked: Mutex<HashMap<ConnId, Conn>>,
    /// Counters.
    pub stats: Stats,
    next_client: AtomicU64,
    started: Option<Instant>,
}

/// Whether a message on `topic` that arrived `at` outlived `ttl` (`$SYS` never does).
fn outlived(topic: &str, at: Instant, ttl: Duration) -> bool {
    !topic.starts_with("$SYS/") && at.elapsed() > ttl
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Broker {
    /// A broker with these settings.
    pub fn new(config: Config) -> Broker {
        // Packet ids are 16-bit and 0 is reserved: a window must leave ids free.
        let config = Config { max_inflight: config.max_inflight.clamp(1, 60_000), ..config };
        Broker { config, started: Some(Instant::now()), ..Broker::default() }
    }

    /// A fresh client id for a client that sent an empty one ([MQTT-3.1.3-6]).
    pub(crate) fn assign_id(&self) -> String {
        format!("auto-{:016x}", self.next_client.fetch_add(1, Ordering::Relaxed))
    }

    /// Retained messages held.
    pub fn retained_count(&self) -> usize {
        self.retained.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Subscriptions held.
    pub fn subscription_count(&self) -> usize {
        self.subscriptions.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Messages queued for `client` (0 if it has no session).
    pub fn queued_for(&self, client: &str) -> usize {
        self.session(client).map_or(0, |s| lock(&s).queue.len())
    }

    pub(crate) fn session(&self, id: &str) -> Option<Arc<Mutex<Session>>> {
        self.sessions.read().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    /// Routes an incoming publish: the retained store, then every matching subscriber
    /// once at min(publish QoS, granted QoS) ([MQTT-3.3.5-1]). Returns the sessions
    /// whose queue is now full (under `Overflow::Block` the publisher waits for them).
    pub(crate) fn publish(&self, msg: &Publish) -> Vec<Arc<Mutex<Session>>> {
        if msg.retain {
            self.retain(msg);
        }
        let targets = self.subscriptions.read().unwrap_or_else(|p| p.into_inner()).subscribers(&msg.topic);
        // One read lock of the session map for the whole fan-out, not one per subscriber.
        let sessions: Vec<_> = {
            let all = self.sessions.read().unwrap_or_else(|p| p.into_inner());
            targets
                .into_iter()
                .filter_map(|(client, granted)| Some((all.get(&client)?.clone(), granted)))
                .collect()
        };
        let mut full = Vec::new();
        for (session, granted) in sessions {
            let out = Publish {
                dup: false,
                retain: false,
                qos: msg.qos.min(granted),
                packet_id: None,
                ..msg.clone()
            };
            if self.deliver(&mut lock(&session), out) {
                full.push(session);
            }
        }
        full
    }

    fn retain(&self, msg: &Publish) {
        let mut retained = self.retained.write().unwrap_or_else(|p| p.into_inner());
        if msg.payload.is_empty() {
            retained.remove(&msg.topic); // [MQTT-3.3.1-10], -11
        } else {
            retained.insert(msg.topic.clone(), (Instant::now(), msg.clone())); // [MQTT-3.3.1-5]
        }
    }

    /// Sends the retained messages matching `filter` to a new subscription, flagged
    /// retained ([MQTT-3.3.1-6]).
    pub(crate) fn send_retained(&self, session: &mut Session, filter: &str, granted: QoS) {
        let retained: Vec<Publish> = {
            let all = self.retained.read().unwrap_or_else(|p| p.into_inner());
            all.values()
                .filter(|(at, m)| !self.expired(&m.topic, *at) && matches(filter, &m.topic))
                .map(|(_, m)| m.clone())
                .collect()
        };
        for m in retained {
            let out = Publish { dup: false, retain: true, qos: m.qos.min(granted), packet_id: None, ..m };
            self.deliver(session, out);
        }
    }

    /// Whether a message on `topic` that arrived `at` outlived `message_expiry`. The
    /// broker's own `$SYS` topics never expire: they are replaced every `sys_interval`,
    /// which may well be longer than the expiry.
    fn expired(&self, topic: &str, at: Instant) -> bool {
        self.config.message_expiry.is_some_and(|ttl| outlived(topic, at, ttl))
    }

    /// Sends now, or queues: QoS 1/2 while the client is offline or its window full,
    /// any QoS while its socket is backlogged. Returns whether the queue is full.
    pub(crate) fn deliver(&self, session: &mut Session, msg: Publish) -> bool {
        let online = session.online();
        if !online && msg.qos == QoS::AtMostOnce {
            return false; // QoS 0 is not kept for offline clients
        }
        if online && session.queue.is_empty() && self.can_send(session, msg.qos) {
            self.send_now(session, msg);
            return false;
        }
        self.enqueue(session, msg)
    }

    fn can_send(&self, session: &Session, qos: QoS) -> bool {
        let backlog = session.conn.as_ref().map_or(usize::MAX, Conn::queued);
        backlog < SOCKET_BACKLOG
            && (qos == QoS::AtMostOnce || session.inflight.len() < self.config.max_inflight)
    }

    fn send_now(&self, session: &mut Session, mut msg: Publish) {
        if msg.qos != QoS::AtMostOnce {
            let id = session.next_id();
            msg.packet_id = Some(id);
            session.inflight.push((id, Inflight::Publish(msg.clone())));
        }
        self.send(session, &Packet::Publish(msg));
    }

    /// Queues under the overflow policy; returns whether the queue is now full.
    fn enqueue(&self, session: &mut Session, msg: Publish) -> bool {
        // Under Block, publishers pause at max_queued; what cannot be paused (retained
        // messages on subscribe, wills, $SYS) still meets a hard cap at twice that.
        let cap = match self.config.overflow {
            Overflow::Drop => self.config.max_queued,
            Overflow::Block => self.config.max_queued.saturating_mul(2),
        };
        if session.queue.len() >= cap {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            if self.config.overflow == Overflow::Block {
                return true;
            }
            // Room by dropping the oldest queued QoS 0 message; with none, drop this one.
            match session.queue.iter().position(|(_, m)| m.qos == QoS::AtMostOnce) {
                Some(i) if msg.qos != QoS::AtMostOnce => drop(session.queue.remove(i)),
                _ => return true,
            }
        }
        session.queue.push_back((Instant::now(), msg));
        session.queue.len() >= self.config.max_queued
    }

    /// Sends queued messages while the window and the socket have room; expired ones
    /// are dropped. Wakes blocked publishers once the queue has room again.
    pub(crate) fn drain_queue(&self, session: &mut Session) {
        let was_full = session.queue.len() >= self.config.max_queued;
        while let Some((at, front)) = session.queue.front() {
            if self.expired(&front.topic, *at) {
                session.queue.pop_front();
                self.stats.expired.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if !session.online() || !self.can_send(session, front.qos) {
                break;
            }
            let (_, msg) = session.queue.pop_front().expect("front() just saw it");
            self.send_now(session, msg);
        }
        if was_full && session.queue.len() < self.config.max_queued {
            self.wake_publishers();
        }
    }

    /// A publisher found these queues full under `Overflow::Block`: it waits until a
    /// queue makes room. Returns false if they all have room already (a drain ran
    /// between the publish and this call: waiting would never be woken).
    pub(crate) fn block(&self, publisher: &Conn, full: &[Arc<Mutex<Session>>]) -> bool {
        lock(&self.blocked).insert(publisher.id(), publisher.clone());
        let still_full = full.iter().any(|s| lock(s).queue.len() >= self.config.max_queued);
        if !still_full {
            lock(&self.blocked).remove(&publisher.id());
        }
        still_full
    }

    /// Resumes every blocked publisher; each re-checks by publishing again.
    pub(crate) fn wake_publishers(&self) {
        let blocked = std::mem::take(&mut *lock(&self.blocked));
        blocked.values().for_each(Conn::resume_reading);
    }

    /// Forgets a publisher that went away.
    pub(crate) fn unblock(&self, publisher: &Conn) {
        lock(&self.blocked).remove(&publisher.id());
    }

    /// Whether `publisher` still waits (readiness alone must not resume it).
    pub(crate) fn is_blocked(&self, publisher: &Conn) -> bool {
        lock(&self.blocked).contains_key(&publisher.id())
    }

    /// Publishers currently paused by `Overflow::Block`.
    pub fn blocked_publishers(&self) -> Vec<ConnId> {
        lock(&self.blocked).keys().copied().collect()
    }

    /// Drops expired retained and queued messages: a periodic task, so memory follows
    /// `message_expiry` even for topics nobody reads.
    pub fn sweep(&self) {
        let Some(ttl) = self.config.message_expiry else { return };
        let mut dropped = {
            let mut retained = self.retained.write().unwrap_or_else(|p| p.into_inner());
            let before = retained.len();
            retained.retain(|topic, (at, _)| !outlived(topic, *at, ttl));
            before - retained.len()
        };
        let sessions: Vec<_> =
            self.sessions.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        for session in sessions {
            let mut s = lock(&session);
            let before = s.queue.len();
            s.queue.retain(|(at, m)| !outlived(&m.topic, *at, ttl));
            dropped += before - s.queue.len();
        }
        self.stats.expired.fetch_add(dropped as u64, Ordering::Relaxed);
        if dropped > 0 {
            self.wake_publishers(); // queues shrank without a drain
        }
    }

    /// Publishes the `$SYS/broker/...` topics, retained (as mosquitto does).
    pub fn publish_sys(&self, server: &Server) {
        let text = |n: u64| n.to_string().into_bytes();
        let get = |c: &AtomicU64| text(c.load(Ordering::Relaxed));
        let uptime = self.started.map_or(0, |s| s.elapsed().as_secs());
        let mut topics: Vec<(String, Vec<u8>)> = vec![
            ("clients/connected".into(), text(server.count(Some("mqtt")) as u64)),
            ("messages/received".into(), get(&self.stats.received)),
            ("messages/sent".into(), get(&self.stats.sent)),
            ("messages/dropped".into(), get(&self.stats.dropped)),
            ("messages/expired".into(), get(&self.stats.expired)),
            ("bytes/received".into(), get(&self.stats.bytes_received)),
            ("bytes/sent".into(), get(&self.stats.bytes_sent)),
            ("subscriptions/count".into(), text(self.subscription_count() as u64)),
            ("retained messages/count".into(), text(self.retained_count() as u64)),
            ("uptime".into(), format!("{uptime} seconds").into_bytes()),
        ];
        for (i, worker) in server.pool_stats().workers.iter().enumerate() {
            topics.push((format!("workers/{i}/tasks"), text(worker.tasks_run)));
        }
        for (topic, payload) in topics {
            let topic = format!("$SYS/broker/{topic}");
            self.publish(&Publish {
                dup: false,
                qos: QoS::AtMostOnce,
                retain: true,
                topic,
                packet_id: None,
                payload,
            });
        }
    }

    pub(crate) fn send(&self, session: &Session, packet: &Packet) {
        let Some(conn) = &session.conn else { return };
        if matches!(packet, Packet::Publish(_)) {
            self.stats.sent.fetch_add(1, Ordering::Relaxed);
        }
        let bytes = packet.to_bytes();
        self.stats.bytes_sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        // A peer too slow to take even this is cut off by max_output.
        let _ = conn.write_move(bytes);
    }
}
