//! The `Protocol`: one MQTT connection, from CONNECT to its will.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol_server::{Batch, Conn, Protocol};

use crate::broker::{lock, Broker, Inflight, Session, SessionRef, Who};
use crate::packet::{
    self, Connack, Connect, ConnectReturn, LastWill, Packet, Publish, Subscribe, Unsubscribe,
};
use crate::topic::valid_filter;

mod publish;

use publish::{Hold, Turn, MAX_HELD, READS_PER_TURN};

/// One client connection.
#[derive(Debug)]
pub struct Mqtt {
    broker: Arc<Broker>,
    /// Bytes of an incomplete packet (or not decoded yet: see `held`).
    input: Vec<u8>,
    /// Set by CONNECT.
    client: Option<(Arc<str>, Arc<Mutex<Session>>)>,
    /// Published if the connection ends without DISCONNECT ([MQTT-3.1.2-8]).
    will: Option<Box<LastWill>>,
    /// A subscriber's queue is full (`Overflow::Block`): new PUBLISH packets wait in
    /// `held`, in order, until the broker wakes us. Or a publish is still fanning out.
    held: Hold,
}

impl Mqtt {
    /// A connection to `broker`.
    pub fn new(broker: Arc<Broker>) -> Mqtt {
        Mqtt { broker, input: Vec::new(), client: None, will: None, held: Hold::default() }
    }

    fn feed(&mut self, conn: &Conn, data: &[u8], turn: &mut Turn) -> Result<(), String> {
        self.input.extend_from_slice(data);
        let mut used = 0;
        let result = loop {
            if self.held.full() {
                break Ok(()); // the rest waits, undecoded, until a queue has room or a fan-out ends
            }
            // Before CONNECT, the first byte is enough to refuse ([MQTT-3.1.0-1]): no
            // need to buffer up to max_packet of something that is not a CONNECT.
            if self.client.is_none() && self.input.get(used).is_some_and(|b| b >> 4 != 1) {
                break Err("the first packet is not CONNECT".into());
            }
            match packet::decode(&self.input[used..], self.broker.config.max_packet) {
                Ok(Some((packet, size))) => {
                    if let Packet::Publish(p) = &packet {
                        if self.join(p) {
                            used += size;
                            continue;
                        }
                    }
                    // The publishes before go out first; if they take longer than
                    // this turn, this packet waits for the next (acknowledgements
                    // leave in order, [MQTT-4.6.0-2]).
                    if !self.fan_out(conn, turn) {
                        break Ok(());
                    }
                    used += size;
                    if let Err(e) = self.handle(conn, packet, turn) {
                        break Err(e);
                    }
                }
                Ok(None) => {
                    self.fan_out(conn, turn);
                    break Ok(());
                }
                Err(e @ packet::Error::UnsupportedLevel(_)) if self.client.is_none() => {
                    let refused = Connack { session_present: false, code: ConnectReturn::BadLevel };
                    write(conn, &Packet::Connack(refused), &mut turn.out); // [MQTT-3.1.2-2]
                    break Err(format!("CONNECT refused: {e}"));
                }
                Err(e) => break Err(format!("malformed packet: {e}")),
            }
        };
        self.input.drain(..used);
        if self.input.is_empty() {
            self.input = Vec::new(); // idle connections hold no buffer
        }
        result
    }

    fn handle(&mut self, conn: &Conn, packet: Packet, turn: &mut Turn) -> Result<(), String> {
        let Some((_, session)) = self.client.clone() else {
            return match packet {
                Packet::Connect(c) => self.connect(conn, c, turn),
                other => Err(format!("{other:?} before CONNECT")), // [MQTT-3.1.0-1]
            };
        };
        if matches!(packet, Packet::Publish(_)) {
            // Here, not in `Broker::publish`: wills and `$SYS` are not received.
            self.broker.stats.received.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        match packet {
            Packet::Connect(_) => Err("second CONNECT".into()), // [MQTT-3.1.0-2]
            Packet::Publish(p) => self.publish(conn, p, turn),
            Packet::Puback(id) | Packet::Pubcomp(id) => {
                let mut s = lock(&session);
                s.inflight.retain(|(used, _)| *used != id);
                self.broker.drain_queue(&mut s, &mut turn.out);
                Ok(())
            }
            Packet::Pubrec(id) => {
                let mut s = lock(&session);
                if let Some(entry) = s.inflight.iter_mut().find(|(used, _)| *used == id) {
                    entry.1 = Inflight::Released;
                }
                self.broker.send(&s, &Packet::Pubrel(id), &mut turn.out);
                Ok(())
            }
            Packet::Pubrel(id) => {
                if let Some(ids) = lock(&session).receiving.as_mut() {
                    ids.remove(&id);
                }
                write(conn, &Packet::Pubcomp(id), &mut turn.out);
                Ok(())
            }
            Packet::Subscribe(s) => {
                // An invalid filter is a protocol violation ([MQTT-4.7.1-2], -3,
                // [MQTT-4.7.3-1]), so the connection closes ([MQTT-4.8.0-1]), as in
                // mosquitto; 0x80 is for filters that are valid but refused.
                if let Some((bad, _)) = s.filters.iter().find(|(f, _)| !valid_filter(f)) {
                    return Err(format!("invalid topic filter {bad:?}"));
                }
                self.subscribe(conn, &session, s, turn);
                Ok(())
            }
            Packet::Unsubscribe(u) => {
                self.unsubscribe(conn, &session, u, turn);
                Ok(())
            }
            Packet::Pingreq => {
                write(conn, &Packet::Pingresp, &mut turn.out);
                Ok(())
            }
            Packet::Disconnect => {
                self.will = None; // [MQTT-3.14.4-3]
                conn.close();
                Ok(())
            }
            other => Err(format!("{other:?} is not sent by clients")),
        }
    }

    fn connect(&mut self, conn: &Conn, c: Connect, turn: &mut Turn) -> Result<(), String> {
        let mut refuse = |code| {
            write(conn, &Packet::Connack(Connack { session_present: false, code }), &mut turn.out);
            Err(format!("CONNECT refused: {code:?}"))
        };
        if c.level != 4 {
            return refuse(ConnectReturn::BadLevel); // [MQTT-3.1.2-2]
        }
        let client_id = match (c.client_id.is_empty(), c.clean_session) {
            (true, true) => self.broker.assign_id(),
            (true, false) => return refuse(ConnectReturn::IdentifierRejected), // [MQTT-3.1.3-8]
            (false, _) => c.client_id,
        };
        let stats = &self.broker.stats;
        if let Err(code) = self.broker.security().login(c.username.as_deref(), c.password.as_deref()) {
            let user = c.username.as_deref().unwrap_or("(anonymous)");
            log::warn!("client {client_id}: login refused for user {user}: {code:?}");
            stats.denied_logins.fetch_add(1, Ordering::Relaxed);
            return refuse(code);
        }
        if client_id.len() > self.broker.config.max_client_id {
            log::warn!("client id of {} bytes refused (max_client_id_length)", client_id.len());
            stats.refused_connects.fetch_add(1, Ordering::Relaxed);
            return refuse(ConnectReturn::IdentifierRejected); // [MQTT-3.1.3-9]
        }
        let most = self.broker.config.max_keepalive;
        // As mosquitto: with a limit set, 0 ("never") asks for more than the limit.
        if c.keep_alive > most || (c.keep_alive == 0 && most < u16::MAX) {
            log::warn!("client {client_id}: keep-alive {} s over max_keepalive", c.keep_alive);
            stats.refused_connects.fetch_add(1, Ordering::Relaxed);
            return refuse(ConnectReturn::IdentifierRejected); // what mosquitto answers 3.1.1
        }
        if let Some(will) = &c.will {
            if will.retain && !self.broker.config.retain_available {
                return Err(format!("client {client_id}: retained will, retain_available is false"));
            }
            if let Err(why) = self.broker.config.topic.check(&will.topic) {
                stats.refused_topics.fetch_add(1, Ordering::Relaxed);
                return Err(format!("client {client_id}: will topic refused: {why}"));
            }
        }
        let id: Arc<str> = client_id.into();
        let Some((session, present)) = self.take_over(&id, c.clean_session) else {
            log::warn!("client {id}: no room for another persistent session (max_persistent_sessions)");
            stats.refused_connects.fetch_add(1, Ordering::Relaxed);
            return refuse(ConnectReturn::ServerUnavailable);
        };
        // Keep-alive: the connection may be idle one and a half periods ([MQTT-3.1.2-24]).
        conn.set_timeout(Duration::from_millis(u64::from(c.keep_alive) * 1500));
        self.will = c.will.map(Box::new);
        self.client = Some((Arc::clone(&id), Arc::clone(&session)));
        // One lock from attaching the connection to draining its queue: no PUBLISH can
        // overtake CONNACK ([MQTT-3.1.4-4]) or the resent older messages ([MQTT-4.6.0]).
        let mut s = lock(&session);
        s.conn = Some(conn.clone());
        s.who = Some(Who { id: Arc::clone(&id), username: c.username.map(String::into_boxed_str) });
        let accepted = Connack { session_present: present, code: ConnectReturn::Accepted };
        write(conn, &Packet::Connack(accepted), &mut turn.out);
        self.resend(&mut s, &mut turn.out); // a resumed session: unacknowledged messages first, with DUP
        self.broker.drain_queue(&mut s, &mut turn.out);
        Ok(())
    }

    /// Attaches this connection to the session of `id`, closing a connection that
    /// held it ([MQTT-3.1.4-2]); a clean session starts empty ([MQTT-3.1.2-6]).
    /// The connection itself is attached by `connect`, under the session lock.
    /// `None`: a new persistent session is needed and `max_persistent_sessions` are
    /// held already (nothing was changed).
    fn take_over(&self, id: &Arc<str>, clean: bool) -> Option<(Arc<Mutex<Session>>, bool)> {
        let mut sessions = self.broker.sessions.write().unwrap_or_else(|p| p.into_inner());
        let existing = sessions.get(id).cloned();
        let was_persistent = existing.as_ref().is_some_and(|old| !lock(old).clean);
        let persistent = &self.broker.persistent;
        if !clean
            && !was_persistent
            && persistent.load(Ordering::Relaxed) >= self.broker.config.max_persistent_sessions
        {
            return None;
        }
        // Under the map's write lock: the count stays exact.
        if was_persistent && clean {
            persistent.fetch_sub(1, Ordering::Relaxed);
        } else if !was_persistent && !clean {
            persistent.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(old) = &existing {
            let mut old = lock(old);
            if let Some(previous) = old.conn.take() {
                log::info!("client {id}: taken over by a new connection");
                previous.close();
            }
        }
        let (session, present) = match existing {
            Some(old) if !clean && !lock(&old).clean => (old, true),
            Some(old) => {
                let filters = lock(&old).filters.keys().cloned().collect();
                self.forget(&old, filters);
                self.broker.wake_publishers(); // its queue is gone: blocked publishers may go on
                (Arc::default(), false)
            }
            None => (Arc::default(), false),
        };
        {
            let mut s = lock(&session);
            s.clean = clean;
            s.left_at = None;
        }
        sessions.insert(Arc::clone(id), Arc::clone(&session));
        Some((session, present))
    }

    /// Removes a session's subscriptions. Lock order everywhere: the trie is never
    /// taken while a session is locked and then waited for the other way round.
    fn forget(&self, session: &Arc<Mutex<Session>>, filters: Vec<String>) {
        let who = SessionRef(Arc::clone(session));
        let mut trie = self.broker.subscriptions.write().unwrap_or_else(|p| p.into_inner());
        for filter in &filters {
            trie.remove(filter, &who);
        }
    }

    fn resend(&self, s: &mut Session, out: &mut Batch) {
        let pending: Vec<Packet> = s
            .inflight
            .iter()
            .map(|(id, state)| match state {
                Inflight::Publish(p) => Packet::Publish(Publish { dup: true, ..p.clone() }), // [MQTT-4.4.0-1]
                Inflight::Released => Packet::Pubrel(*id),
            })
            .collect();
        for packet in pending {
            self.broker.send(s, &packet, out);
        }
    }

    fn subscribe(&self, conn: &Conn, session: &Arc<Mutex<Session>>, sub: Subscribe, turn: &mut Turn) {
        let Some((id, _)) = &self.client else { return };
        let mut codes = Vec::with_capacity(sub.filters.len());
        let mut granted = Vec::new();
        let rules = self.broker.security();
        {
            let mut trie = self.broker.subscriptions.write().unwrap_or_else(|p| p.into_inner());
            let mut s = lock(session);
            for (filter, qos) in &sub.filters {
                let bounded = self.broker.config.topic.check(filter);
                if let Err(why) = &bounded {
                    log::warn!("client {id}: filter refused: {why}");
                    self.broker.stats.refused_topics.fetch_add(1, Ordering::Relaxed);
                }
                // A shared subscription is allowed as its filter would be.
                let topics = crate::topic::shared(filter).map_or(filter.as_str(), |(_, f)| f);
                let allowed = bounded.is_ok() && rules.may_subscribe(&s.client(), topics);
                if bounded.is_ok() && !allowed {
                    log::warn!("client {id}: subscription to {filter:?} denied by the ACL");
                    self.broker.stats.denied_subscriptions.fetch_add(1, Ordering::Relaxed);
                }
                if allowed {
                    trie.insert(filter, SessionRef(Arc::clone(session)), *qos);
                    s.filters.insert(filter.clone(), *qos);
                    codes.push(*qos as u8);
                    if crate::topic::shared(filter).is_none() {
                        // As mosquitto: retained messages are not sent to a shared
                        // subscription (MQTT 5 says the same, [MQTT-4.8.2]).
                        granted.push((filter.clone(), *qos));
                    }
                } else {
                    codes.push(0x80); // failure for this filter ([MQTT-3.9.3])
                }
            }
        }
        write(conn, &Packet::Suback(sub.packet_id, codes), &mut turn.out); // before any retained message ([MQTT-3.8.4-4])
        let mut s = lock(session);
        for (filter, qos) in granted {
            self.broker.send_retained(&mut s, &filter, qos, &mut turn.out);
        }
    }

    fn unsubscribe(&self, conn: &Conn, session: &Arc<Mutex<Session>>, unsub: Unsubscribe, turn: &mut Turn) {
        if self.client.is_none() {
            return;
        }
        {
            let who = SessionRef(Arc::clone(session));
            let mut trie = self.broker.subscriptions.write().unwrap_or_else(|p| p.into_inner());
            let mut s = lock(session);
            for filter in &unsub.filters {
                trie.remove(filter, &who);
                s.filters.remove(filter);
            }
        }
        write(conn, &Packet::Unsuback(unsub.packet_id), &mut turn.out); // even if nothing matched ([MQTT-3.10.4-5])
    }
}

impl Mqtt {
    /// Whether the ACL in force lets this client publish to `topic`.
    fn may_publish(&self, topic: &str) -> bool {
        let Some(rules) = self.broker.acl() else { return true };
        let Some((_, session)) = &self.client else { return false };
        rules.may_publish(&lock(session).client(), topic)
    }

    /// The client id for log lines ("-" before CONNECT).
    fn client_id(&self) -> &str {
        self.client.as_ref().map_or("-", |(id, _)| id)
    }

    fn refuse(&mut self, conn: &Conn, why: &str) {
        log::warn!("{:?} (client {}): {why}; closing", conn.id(), self.client_id());
        self.input = Vec::new();
        conn.close(); // [MQTT-4.8.0-1]
    }
}

/// Queues `packet` in `out`: it leaves with the rest of this turn's output.
fn write(conn: &Conn, packet: &Packet, out: &mut Batch) {
    let _ = out.write(conn, packet.to_bytes());
}

impl Protocol for Mqtt {
    fn service(&self) -> &'static str {
        "mqtt"
    }

    fn on_data(&mut self, conn: &Conn) {
        // What the packets of one read send (to subscribers, acknowledgements) leaves
        // after that read: one `writev` per connection for all of it.
        let mut turn = Turn::new();
        if !self.fan_out(conn, &mut turn) {
            return conn.call_again(); // `turn` flushes as it goes
        }
        // Also how the broker wakes a blocked publisher: held-back publishes go first.
        self.release(conn, &mut turn);
        if let Err(why) = self.feed(conn, &[], &mut turn) {
            return self.refuse(conn, &why);
        }
        turn.out.flush();
        let mut chunk = [0u8; 16 * 1024];
        for _ in 0..READS_PER_TURN {
            if self.held.fanning() {
                return conn.call_again();
            }
            if self.held.len() >= MAX_HELD {
                return;
            }
            let Ok(n @ 1..) = conn.read(&mut chunk) else { return };
            self.broker.stats.bytes_received.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
            if let Err(why) = self.feed(conn, &chunk[..n], &mut turn) {
                return self.refuse(conn, &why);
            }
            turn.out.flush();
            if n < chunk.len() {
                // The socket is drained (`Conn::read` calls us again if it may not
                // be): a read only to hear `EAGAIN` would cost a system call per
                // message from a publisher sending one at a time.
                break;
            }
        }
        if self.held.fanning() {
            conn.call_again();
        }
    }

    fn ping(&mut self, conn: &Conn) {
        // Keep-alive expired ([MQTT-3.1.2-24]), unless we stopped reading this client
        // ourselves (its PINGREQs may be waiting behind held-back publishes).
        if self.held.full() {
            conn.touch();
        } else {
            conn.close();
        }
    }

    fn on_ready(&mut self, _conn: &Conn) {
        // Our socket took everything: send what queued behind its backlog.
        if let Some((_, session)) = &self.client {
            self.broker.drain_queue(&mut lock(session), &mut Batch::new());
        }
    }

    fn on_close(&mut self, conn: &Conn) {
        self.broker.unblock(conn);
        if let Some(mut fanout) = self.held.take_fanout() {
            // Its client is gone, but what it published goes to every subscriber (a
            // QoS 2 message would not be routed again when resent).
            self.broker.deliver_some(&mut fanout, None, &mut Batch::new());
        }
        if let Some(will) = self.will.take() {
            let msg = Publish {
                dup: false,
                qos: will.qos,
                retain: will.retain,
                topic: will.topic.into(),
                packet_id: None,
                payload: will.message.into(),
            };
            let from = format!("will of {}", self.client_id());
            if self.may_publish(&msg.topic) {
                self.broker.publish(&msg, &from, &mut Batch::new());
            } else {
                log::warn!("{from}: not published, the ACL denies {:?}", msg.topic);
                self.broker.stats.denied_publishes.fetch_add(1, Ordering::Relaxed);
            }
        }
        let Some((id, session)) = self.client.take() else { return };
        let mut s = lock(&session);
        // Only if this connection still owns the session (not after a takeover).
        if s.conn.as_ref().is_none_or(|c| c.id() != conn.id()) {
            return;
        }
        s.conn = None;
        if !s.clean {
            s.left_at = Some(std::time::Instant::now());
            drop(s);
            self.broker.wake_publishers(); // an offline queue holds no publisher back
            return;
        }
        let filters = s.filters.keys().cloned().collect();
        drop(s);
        self.forget(&session, filters);
        let mut sessions = self.broker.sessions.write().unwrap_or_else(|p| p.into_inner());
        if sessions.get(&id).is_some_and(|cur| Arc::ptr_eq(cur, &session)) {
            sessions.remove(&id); // [MQTT-3.1.2-6]
        }
        drop(sessions);
        self.broker.wake_publishers(); // its queue is gone: blocked publishers may go on
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    #[test]
    fn a_connections_protocol_value_stays_in_its_malloc_size_class() {
        // Boxed once per connection (the framework holds `Box<dyn Protocol>`). glibc
        // serves n bytes from a chunk of n + 8 rounded up to 16: up to 72 bytes take
        // an 80-byte chunk.
        let size = std::mem::size_of::<Mqtt>();
        assert!(
            size <= 72,
            "Mqtt grew to {size} bytes, past the 80-byte malloc chunk: every connection pays \
             for it (bench conns); box what most connections leave empty"
        );
    }
}
