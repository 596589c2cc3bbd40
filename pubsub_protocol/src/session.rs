//! What the broker keeps per client id: its connection, subscriptions, messages in
//! flight and the queue of messages not sent yet.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use protocol_server::Conn;

use crate::auth::Client;
use crate::packet::{Publish, QoS};
use crate::retained;

/// Who a session belongs to, for the ACL. Held in the session itself (four words,
/// no allocation of its own): the id is the session map's key, shared.
#[derive(Debug)]
pub(crate) struct Who {
    pub(crate) id: Arc<str>,
    pub(crate) username: Option<Box<str>>,
}

/// A session as the subscription trie holds it: by identity (the pointer), so that a
/// publish reaches its subscribers' sessions without looking each id up in the
/// session map. A clean session that is replaced is a new `Arc`, and leaves the trie
/// with its subscriptions; a resumed persistent one is the same `Arc`.
#[derive(Debug, Clone)]
pub(crate) struct SessionRef(pub(crate) Arc<Mutex<Session>>);

impl PartialEq for SessionRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for SessionRef {}

impl Hash for SessionRef {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.0).hash(state);
    }
}

/// An outgoing QoS 1/2 message awaiting its acknowledgement.
#[derive(Debug, Clone)]
pub(crate) enum Inflight {
    /// Sent; waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Publish(Publish),
    /// PUBREC received, PUBREL sent; waiting for PUBCOMP.
    Released,
}

/// What the broker keeps per client id. Every session is held in memory for as long
/// as its client is connected (and a persistent one after), so what is empty for most
/// clients (subscriptions of a publisher, a queue) is one word until used:
/// `session_stays_in_its_malloc_size_class` pins the size.
#[derive(Debug, Default)]
pub(crate) struct Session {
    pub(crate) conn: Option<Conn>,
    /// Set by CONNECT.
    pub(crate) who: Option<Who>,
    pub(crate) clean: bool,
    pub(crate) filters: Filters,
    /// Outgoing packet id → state, in sending order.
    pub(crate) inflight: Window,
    /// Messages not sent yet (offline, window full, socket backlog), with their
    /// arrival time for expiry. Changed only through the methods below, which keep
    /// its byte count true.
    pub(crate) queue: Queue,
    /// When a persistent session was last left by its client (for
    /// `persistent_expiry`); `None` while connected.
    pub(crate) left_at: Option<Instant>,
    /// Inbound QoS 2 packet ids between PUBREC and PUBREL; allocated on the first
    /// (most clients never publish at QoS 2, and every session is held in memory).
    #[allow(clippy::box_collection)] // one word per session, not a `HashSet`'s six
    pub(crate) receiving: Option<Box<HashSet<u16>>>,
    next_id: u16,
}

/// A client's subscriptions, filter → granted QoS. The map is made by the first
/// SUBSCRIBE and dropped when the last filter goes: a client that never subscribes
/// (a publisher) pays one word, not a `HashMap`'s six.
#[derive(Debug, Default)]
#[allow(clippy::box_collection)] // one word until used, not a `HashMap`'s six
pub(crate) struct Filters(Option<Box<HashMap<String, QoS>>>);

impl Filters {
    pub(crate) fn insert(&mut self, filter: String, qos: QoS) -> Option<QoS> {
        self.0.get_or_insert_with(Box::default).insert(filter, qos)
    }

    pub(crate) fn remove(&mut self, filter: &str) -> Option<QoS> {
        let map = self.0.as_mut()?;
        let removed = map.remove(filter);
        if map.is_empty() {
            self.0 = None;
        }
        removed
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().flat_map(|map| map.keys())
    }
}

/// The messages a session has sent at QoS 1 or 2 and not seen acknowledged yet, as
/// `(packet id, state)` in sending order. Made by the first such message and kept
/// (so a QoS 1 stream does not allocate it anew per message): a client that never
/// receives QoS 1/2 pays one word instead of a `Vec`'s three.
#[derive(Debug, Default)]
#[allow(clippy::box_collection)] // one word until used, not a `Vec`'s three
pub(crate) struct Window(Option<Box<Vec<(u16, Inflight)>>>);

impl Window {
    pub(crate) fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |w| w.len())
    }

    pub(crate) fn push(&mut self, entry: (u16, Inflight)) {
        self.0.get_or_insert_with(Box::default).push(entry);
    }

    pub(crate) fn retain(&mut self, keep: impl FnMut(&(u16, Inflight)) -> bool) {
        if let Some(w) = self.0.as_mut() {
            w.retain(keep);
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &(u16, Inflight)> {
        self.0.iter().flat_map(|w| w.iter())
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut (u16, Inflight)> {
        self.0.iter_mut().flat_map(|w| w.iter_mut())
    }
}

/// The queue of a session: messages with their arrival time, and their topic and
/// payload bytes. Made when a message first waits and then kept, like a `VecDeque`'s
/// buffer (a subscriber whose window fills queues and drains again and again): a
/// client that never waits pays one word instead of a `VecDeque` and a count.
#[derive(Debug, Default)]
#[allow(clippy::type_complexity)]
pub(crate) struct Queue(Option<Box<(VecDeque<(Instant, Publish)>, usize)>>);

impl Queue {
    pub(crate) fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |q| q.0.len())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn front(&self) -> Option<&(Instant, Publish)> {
        self.0.as_ref()?.0.front()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &(Instant, Publish)> {
        self.0.iter().flat_map(|q| q.0.iter())
    }

    /// Topic and payload bytes queued.
    pub(crate) fn bytes(&self) -> usize {
        self.0.as_ref().map_or(0, |q| q.1)
    }
}

impl Session {
    /// Queues `msg` at the back.
    pub(crate) fn push(&mut self, msg: Publish) {
        let queue = self.queue.0.get_or_insert_with(Box::default);
        queue.1 += retained::size(&msg);
        queue.0.push_back((Instant::now(), msg));
    }

    /// Takes the front of the queue.
    pub(crate) fn pop(&mut self) -> Option<(Instant, Publish)> {
        let queue = self.queue.0.as_mut()?;
        let front = queue.0.pop_front()?;
        queue.1 -= retained::size(&front.1);
        Some(front)
    }

    /// Removes the queued message at `i`.
    pub(crate) fn remove(&mut self, i: usize) {
        let Some(queue) = self.queue.0.as_mut() else { return };
        if let Some((_, m)) = queue.0.remove(i) {
            queue.1 -= retained::size(&m);
        }
    }

    /// Drops the queued messages `stale` picks; returns how many.
    pub(crate) fn drop_if(&mut self, mut stale: impl FnMut(&Publish, Instant) -> bool) -> usize {
        let Some(queue) = self.queue.0.as_mut() else { return 0 };
        let before = queue.0.len();
        let mut freed = 0;
        queue.0.retain(|(at, m)| {
            let go = stale(m, *at);
            freed += if go { retained::size(m) } else { 0 };
            !go
        });
        queue.1 -= freed;
        before - queue.0.len()
    }

    pub(crate) fn next_id(&mut self) -> u16 {
        loop {
            self.next_id = self.next_id.wrapping_add(1).max(1);
            let id = self.next_id;
            if !self.inflight.iter().any(|(used, _)| *used == id) {
                return id;
            }
        }
    }

    /// Its client, as the ACL sees it.
    pub(crate) fn client(&self) -> Client<'_> {
        match &self.who {
            Some(who) => Client { id: &who.id, username: who.username.as_deref() },
            None => Client { id: "", username: None },
        }
    }

    /// Whether its client is connected.
    pub(crate) fn online(&self) -> bool {
        self.conn.as_ref().is_some_and(Conn::is_open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_stays_in_its_malloc_size_class() {
        // A session lives in an `Arc<Mutex<Session>>`: two counters and the mutex's
        // word before it. glibc serves n bytes from a chunk of n + 8 rounded up to 16.
        let held = 2 * std::mem::size_of::<usize>() + std::mem::size_of::<std::sync::Mutex<Session>>();
        assert!(
            held <= 120,
            "Arc<Mutex<Session>> grew to {held} bytes, past the 128-byte malloc chunk: every \
             client pays for it (bench conns); box what most sessions leave empty"
        );
    }
}
