//! Broker state shared by every connection: sessions, subscriptions, retained
//! messages, and the routing of a publish to its subscribers.
//!
//! Locks are short and taken in one order: the session map, then the trie, then one
//! session, then the leaf locks (the retained map, the rules in force, the blocked
//! publishers), each of which is never held while taking another. A takeover and
//! the expiry of sessions hold the map while taking the trie; SUBSCRIBE holds the
//! trie while taking its session; a publish takes the trie alone (read) to copy out
//! its subscribers' sessions, then each session in turn.
//!
//! The data path: a PUBLISH is decoded once (topic and payload shared), and sent to
//! each subscriber through the caller's [`Batch`], so that every subscriber gets the
//! messages of one read in one `writev`. At QoS 0 all subscribers get the same bytes,
//! encoded once ([`Wire`]); at QoS 1/2 each gets its own encoded copy (its packet id),
//! queued as one buffer so that no other write to that connection lands inside it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use protocol_server::{Batch, Conn, ConnId, Server};

pub use crate::config::{Config, Overflow};
pub(crate) use crate::session::{Inflight, Session, SessionRef, Who};
pub use crate::stats::Stats;

mod fanout;

pub(crate) use fanout::{Fanout, Wire};

use crate::packet::{Packet, Publish, QoS};
use crate::retained::{self, Retained};
use crate::security::Security;
use crate::topic::{matches, Trie};

/// Bytes waiting in a subscriber's socket output before further messages queue in
/// its session instead, where the overflow policy applies.
const SOCKET_BACKLOG: usize = 64 * 1024;

/// The broker: one per server, shared by every connection's protocol value.
#[derive(Debug, Default)]
pub struct Broker {
    pub(crate) config: Config,
    pub(crate) sessions: RwLock<HashMap<Arc<str>, Arc<Mutex<Session>>>>,
    /// Who subscribed to what, by session: a publish finds its subscribers' sessions
    /// here without the session map.
    pub(crate) subscriptions: RwLock<Trie<SessionRef>>,
    pub(crate) retained: RwLock<Retained>,
    /// Sessions in `sessions` that are persistent (not clean): changed with the
    /// session map's write lock held, read without it for the bound.
    pub(crate) persistent: AtomicUsize,
    /// The rules in force; a reload replaces the `Arc`, operations in progress keep
    /// the one they took.
    security: RwLock<Arc<Security>>,
    /// Whether `security` holds an ACL (see [`Broker::acl`]).
    acl_on: AtomicBool,
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

    /// Puts `rules` in force for every operation from now on (a reload).
    pub fn set_security(&self, rules: Security) {
        let acl = rules.has_acl();
        *self.security.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(rules);
        // Release: whoever sees `true` finds the new rules behind the lock.
        self.acl_on.store(acl, Ordering::Release);
    }

    /// The rules in force if they include an ACL. Without one (the common case) the
    /// data path pays one atomic load, not a lock and a reference count per message.
    pub(crate) fn acl(&self) -> Option<Arc<Security>> {
        self.acl_on.load(Ordering::Acquire).then(|| self.security())
    }

    /// The rules in force now.
    pub(crate) fn security(&self) -> Arc<Security> {
        Arc::clone(&self.security.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Whether the session's client may receive a message on `topic` under the ACL
    /// `rules` (counted if not; `None`: no ACL, everything is readable).
    fn readable(&self, rules: Option<&Security>, session: &Session, topic: &str) -> bool {
        let ok = rules.is_none_or(|r| r.may_receive(&session.client(), topic));
        if !ok {
            self.stats.denied_deliveries.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// A fresh client id for a client that sent an empty one ([MQTT-3.1.3-6]).
    pub(crate) fn assign_id(&self) -> String {
        format!("auto-{:016x}", self.next_client.fetch_add(1, Ordering::Relaxed))
    }

    /// Retained messages held.
    pub fn retained_count(&self) -> usize {
        self.retained.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Persistent sessions held, connected or not.
    pub fn persistent_sessions(&self) -> usize {
        self.persistent.load(Ordering::Relaxed)
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

    fn retain(&self, msg: &Publish, from: &str) {
        let (max, max_bytes) = (self.config.max_retained, self.config.max_retained_bytes);
        let kept = self.retained.write().unwrap_or_else(|p| p.into_inner()).set(msg, max, max_bytes);
        if let Err(why) = kept {
            // Still delivered to current subscribers: only the retaining is refused.
            log::warn!("{from}: retained message on {:?} not kept: {why}", msg.topic);
            self.stats.refused_retained.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends the retained messages matching `filter` to a new subscription, flagged
    /// retained ([MQTT-3.3.1-6]).
    pub(crate) fn send_retained(&self, session: &mut Session, filter: &str, granted: QoS, out: &mut Batch) {
        let retained: Vec<Publish> = {
            let held = self.retained.read().unwrap_or_else(|p| p.into_inner());
            // The index visits only the branches `filter` reaches, not every message.
            held.matching(filter)
                .into_iter()
                .inspect(|(_, m)| debug_assert!(matches(filter, &m.topic), "{filter:?} vs {:?}", m.topic))
                .filter(|(at, m)| !self.expired(&m.topic, *at))
                .map(|(_, m)| m.clone())
                .collect()
        };
        let rules = self.acl();
        for m in retained {
            if self.readable(rules.as_deref(), session, &m.topic) {
                self.deliver(session, &m, m.qos.min(granted), true, &mut Wire::default(), out);
            }
        }
    }

    /// Whether a message on `topic` that arrived `at` outlived `message_expiry`. The
    /// broker's own `$SYS` topics never expire: they are replaced every `sys_interval`,
    /// which may well be longer than the expiry.
    fn expired(&self, topic: &str, at: Instant) -> bool {
        self.config.message_expiry.is_some_and(|ttl| outlived(topic, at, ttl))
    }

    /// Sends `msg` at `qos` (flagged `retain`) now, or queues it: QoS 1/2 while the
    /// client is offline or its window full, any QoS while its socket is backlogged.
    /// Returns whether the queue is full.
    pub(crate) fn deliver(
        &self,
        session: &mut Session,
        msg: &Publish,
        qos: QoS,
        retain: bool,
        wire: &mut Wire,
        out: &mut Batch,
    ) -> bool {
        let online = session.online();
        if !online && qos == QoS::AtMostOnce {
            return false; // QoS 0 is not kept for offline clients
        }
        if online && session.queue.is_empty() && self.can_send(session, qos) {
            self.send_now(session, msg, qos, retain, wire, out);
            return false;
        }
        self.enqueue(session, msg.outgoing(qos, retain, None))
    }

    /// Whether a message at `qos` may go to the socket now: the window has room and
    /// the socket is not backlogged (if it is, `on_ready` follows its drain, and the
    /// session's queue goes then).
    fn can_send(&self, session: &Session, qos: QoS) -> bool {
        let Some(conn) = &session.conn else { return false };
        (qos == QoS::AtMostOnce || session.inflight.len() < self.config.max_inflight)
            && !conn.backlogged(SOCKET_BACKLOG)
    }

    fn send_now(
        &self,
        session: &mut Session,
        msg: &Publish,
        qos: QoS,
        retain: bool,
        wire: &mut Wire,
        out: &mut Batch,
    ) {
        let size = if qos == QoS::AtMostOnce {
            let Some(conn) = &session.conn else { return };
            let bytes = wire.qos0(msg, retain);
            let size = bytes.len();
            let _ = out.write_shared(conn, bytes); // a peer that cannot take it is cut off
            size
        } else {
            let id = session.next_id();
            let copy = msg.outgoing(qos, retain, Some(id));
            // One buffer, queued at once: as two (head, shared payload) another write
            // to this connection (its own PINGRESP or PUBACK) could land between them.
            let mut packet = copy.head();
            packet.extend_from_slice(&copy.payload);
            let size = packet.len();
            if let Some(conn) = &session.conn {
                let _ = out.write(conn, packet);
            }
            session.inflight.push((id, Inflight::Publish(copy)));
            size
        };
        self.stats.sent.fetch_add(1, Ordering::Relaxed);
        self.stats.bytes_sent.fetch_add(size as u64, Ordering::Relaxed);
    }

    /// Queues under the overflow policy; returns whether the queue is now full and
    /// the publisher should wait (only for a connected subscriber under Block).
    fn enqueue(&self, session: &mut Session, msg: Publish) -> bool {
        // Under Block, publishers pause at the bounds; what cannot be paused (retained
        // messages on subscribe, wills, $SYS) still meets a hard cap at twice them. An
        // offline session pauses no one: its client may never come back.
        let block = self.config.overflow == Overflow::Block && session.online();
        let slack = if block { 2 } else { 1 };
        let over = |s: &Session, extra: usize| {
            s.queue.len() >= self.config.max_queued.saturating_mul(slack)
                || (self.config.max_queued_bytes > 0
                    && s.queue.bytes() + extra > self.config.max_queued_bytes.saturating_mul(slack))
        };
        let size = retained::size(&msg);
        if over(session, size) && block {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        // Room by dropping queued QoS 0 messages, oldest first; with none, drop this one.
        while over(session, size) {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            let oldest_qos0 = session.queue.iter().position(|(_, m)| m.qos == QoS::AtMostOnce);
            match oldest_qos0 {
                Some(i) if msg.qos != QoS::AtMostOnce => session.remove(i),
                _ => return false,
            }
        }
        session.push(msg);
        block && self.full(session)
    }

    /// Whether a queue is at its bound (message count or bytes).
    fn full(&self, session: &Session) -> bool {
        session.queue.len() >= self.config.max_queued
            || (self.config.max_queued_bytes > 0 && session.queue.bytes() >= self.config.max_queued_bytes)
    }

    /// Sends queued messages while the window and the socket have room; expired ones
    /// are dropped. Wakes blocked publishers once the queue has room again.
    pub(crate) fn drain_queue(&self, session: &mut Session, out: &mut Batch) {
        let was_full = self.full(session);
        let rules = self.acl();
        while let Some((at, front)) = session.queue.front() {
            if self.expired(&front.topic, *at) {
                session.pop();
                self.stats.expired.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if !self.readable(rules.as_deref(), session, &front.topic) {
                session.pop(); // queued under rules that a reload has since revoked
                continue;
            }
            if !session.online() || !self.can_send(session, front.qos) {
                break;
            }
            let (_, msg) = session.pop().expect("front() just saw it");
            self.send_now(session, &msg, msg.qos, msg.retain, &mut Wire::default(), out);
        }
        if was_full && !self.full(session) {
            self.wake_publishers();
        }
    }

    /// A publisher found these queues full under `Overflow::Block`: it waits until a
    /// queue makes room. Returns false if they all have room already (a drain ran
    /// between the publish and this call: waiting would never be woken).
    pub(crate) fn block(&self, publisher: &Conn, full: &[Arc<Mutex<Session>>]) -> bool {
        lock(&self.blocked).insert(publisher.id(), publisher.clone());
        let still_full = full.iter().any(|s| {
            let s = lock(s);
            s.online() && self.full(&s)
        });
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
        let mut dropped = self
            .retained
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .drop_if(|topic, at| outlived(topic, at, ttl));
        let sessions: Vec<_> =
            self.sessions.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        for session in sessions {
            dropped += lock(&session).drop_if(|m, at| outlived(&m.topic, at, ttl));
        }
        self.stats.expired.fetch_add(dropped as u64, Ordering::Relaxed);
        if dropped > 0 {
            self.wake_publishers(); // queues shrank without a drain
        }
    }

    /// Removes persistent sessions whose client left longer than `persistent_expiry`
    /// ago, with their subscriptions and queues: a periodic task.
    pub fn expire_sessions(&self) {
        let Some(ttl) = self.config.persistent_expiry else { return };
        // Lock order as in a takeover: the session map, one session at a time, the trie.
        let mut sessions = self.sessions.write().unwrap_or_else(|p| p.into_inner());
        let stale: Vec<(Arc<str>, SessionRef, Vec<String>)> = sessions
            .iter()
            .filter_map(|(id, session)| {
                let s = lock(session);
                let unused = !s.clean && s.conn.is_none() && s.left_at.is_some_and(|t| t.elapsed() > ttl);
                let filters = || s.filters.keys().cloned().collect();
                unused.then(|| (Arc::clone(id), SessionRef(Arc::clone(session)), filters()))
            })
            .collect();
        if stale.is_empty() {
            return;
        }
        let mut trie = self.subscriptions.write().unwrap_or_else(|p| p.into_inner());
        for (id, session, filters) in &stale {
            sessions.remove(id);
            for filter in filters {
                trie.remove(filter, session);
            }
            log::info!("client {id}: persistent session removed, unused for over {ttl:?}");
        }
        self.persistent.fetch_sub(stale.len(), Ordering::Relaxed);
        self.stats.expired_sessions.fetch_add(stale.len() as u64, Ordering::Relaxed);
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
            (
                "retained messages/bytes".into(),
                text(self.retained.read().unwrap_or_else(|p| p.into_inner()).bytes() as u64),
            ),
            ("clients/persistent".into(), text(self.persistent_sessions() as u64)),
            ("clients/expired".into(), get(&self.stats.expired_sessions)),
            ("refused/topics".into(), get(&self.stats.refused_topics)),
            ("refused/connects".into(), get(&self.stats.refused_connects)),
            ("refused/retained".into(), get(&self.stats.refused_retained)),
            ("denied/logins".into(), get(&self.stats.denied_logins)),
            ("denied/publishes".into(), get(&self.stats.denied_publishes)),
            ("denied/subscriptions".into(), get(&self.stats.denied_subscriptions)),
            ("denied/deliveries".into(), get(&self.stats.denied_deliveries)),
            ("uptime".into(), format!("{uptime} seconds").into_bytes()),
        ];
        #[cfg(feature = "count-alloc")]
        topics.extend(crate::count_alloc::sys_topics().map(|(topic, n)| (topic.into(), text(n))));
        for (i, worker) in server.pool_stats().workers.iter().enumerate() {
            topics.push((format!("workers/{i}/tasks"), text(worker.tasks_run)));
        }
        let mut out = Batch::new();
        for (topic, payload) in topics {
            let msg = Publish {
                dup: false,
                qos: QoS::AtMostOnce,
                retain: true,
                topic: format!("$SYS/broker/{topic}").into(),
                packet_id: None,
                payload: payload.into(),
            };
            self.publish(&msg, "$SYS", &mut out);
        }
    }

    /// Sends a packet other than a first delivery (a PUBREL, a resent PUBLISH).
    pub(crate) fn send(&self, session: &Session, packet: &Packet, out: &mut Batch) {
        let Some(conn) = &session.conn else { return };
        if matches!(packet, Packet::Publish(_)) {
            self.stats.sent.fetch_add(1, Ordering::Relaxed);
        }
        let bytes = packet.to_bytes();
        self.stats.bytes_sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        // A peer too slow to take even this is cut off by max_output.
        let _ = out.write(conn, bytes);
    }
}
