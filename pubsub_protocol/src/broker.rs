//! Broker state shared by every connection: sessions, subscriptions, retained
//! messages, and the routing of a publish to its subscribers.
//!
//! Locks are short and never nested the other way round: `sessions` (read) then
//! one `Session`; the trie and the retained map are locked alone.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use protocol_server::Conn;

use crate::packet::{Packet, Publish, QoS};
use crate::topic::{matches, Trie};

/// Broker settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Largest packet accepted (bigger ones close the connection).
    pub max_packet: usize,
    /// QoS 1/2 messages queued per session (offline, or beyond the in-flight window);
    /// past it the oldest is dropped and counted.
    pub max_queued: usize,
    /// Outgoing QoS 1/2 messages awaiting acknowledgement per session.
    pub max_inflight: usize,
}

impl Default for Config {
    fn default() -> Self {
        // mosquitto's defaults: max_queued_messages 1000, max_inflight_messages 20.
        Config { max_packet: 256 << 20, max_queued: 1000, max_inflight: 20 }
    }
}

/// Counters, for `$SYS` and tests.
#[derive(Debug, Default)]
pub struct Stats {
    /// PUBLISH packets received.
    pub received: AtomicU64,
    /// PUBLISH packets sent.
    pub sent: AtomicU64,
    /// Messages dropped because a queue was full.
    pub dropped: AtomicU64,
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
    /// QoS 1/2 messages not yet sent (offline, or the window is full).
    pub(crate) queue: VecDeque<Publish>,
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
}

/// The broker: one per server, shared by every connection's protocol value.
#[derive(Debug, Default)]
pub struct Broker {
    pub(crate) config: Config,
    pub(crate) sessions: RwLock<HashMap<Arc<str>, Arc<Mutex<Session>>>>,
    pub(crate) subscriptions: RwLock<Trie<Arc<str>>>,
    pub(crate) retained: RwLock<HashMap<String, Publish>>,
    /// Counters.
    pub stats: Stats,
    next_client: AtomicU64,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Broker {
    /// A broker with these settings.
    pub fn new(config: Config) -> Broker {
        Broker { config, ..Broker::default() }
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

    pub(crate) fn session(&self, id: &str) -> Option<Arc<Mutex<Session>>> {
        self.sessions.read().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    /// Routes an incoming publish: the retained store, then every matching
    /// subscriber once at min(publish QoS, granted QoS) ([MQTT-3.3.5-1]).
    pub(crate) fn publish(&self, msg: &Publish) {
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        if msg.retain {
            let mut retained = self.retained.write().unwrap_or_else(|p| p.into_inner());
            if msg.payload.is_empty() {
                retained.remove(&msg.topic); // [MQTT-3.3.1-10], -11
            } else {
                retained.insert(msg.topic.clone(), msg.clone()); // [MQTT-3.3.1-5]
            }
        }
        let targets = self.subscriptions.read().unwrap_or_else(|p| p.into_inner()).subscribers(&msg.topic);
        for (client, granted) in targets {
            if let Some(session) = self.session(&client) {
                let out = Publish {
                    dup: false,
                    retain: false,
                    qos: msg.qos.min(granted),
                    packet_id: None,
                    ..msg.clone()
                };
                self.deliver(&mut lock(&session), out);
            }
        }
    }

    /// Sends the retained messages matching `filter` to a new subscription, flagged
    /// retained ([MQTT-3.3.1-6]).
    pub(crate) fn send_retained(&self, session: &mut Session, filter: &str, granted: QoS) {
        let retained: Vec<Publish> = self
            .retained
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|m| matches(filter, &m.topic))
            .cloned()
            .collect();
        for m in retained {
            let out = Publish { dup: false, retain: true, qos: m.qos.min(granted), packet_id: None, ..m };
            self.deliver(session, out);
        }
    }

    /// Sends now, or queues (QoS 1/2) if the client is offline or its window full.
    pub(crate) fn deliver(&self, session: &mut Session, mut msg: Publish) {
        let online = session.conn.as_ref().is_some_and(Conn::is_open);
        if msg.qos == QoS::AtMostOnce {
            if online {
                self.send(session, &Packet::Publish(msg));
            }
            return;
        }
        if !online || session.inflight.len() >= self.config.max_inflight {
            if session.queue.len() >= self.config.max_queued {
                session.queue.pop_front();
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
            session.queue.push_back(msg);
            return;
        }
        let id = session.next_id();
        msg.packet_id = Some(id);
        session.inflight.push((id, Inflight::Publish(msg.clone())));
        self.send(session, &Packet::Publish(msg));
    }

    /// Moves queued messages into the window while it has room.
    pub(crate) fn drain_queue(&self, session: &mut Session) {
        while session.inflight.len() < self.config.max_inflight {
            let Some(msg) = session.queue.pop_front() else { return };
            self.deliver(session, msg);
        }
    }

    pub(crate) fn send(&self, session: &Session, packet: &Packet) {
        let Some(conn) = &session.conn else { return };
        if matches!(packet, Packet::Publish(_)) {
            self.stats.sent.fetch_add(1, Ordering::Relaxed);
        }
        // A peer too slow to take its messages is cut off by max_output.
        let _ = conn.write_move(packet.to_bytes());
    }
}
