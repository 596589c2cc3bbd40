//! What the broker keeps per client id: its connection, subscriptions, messages in
//! flight and the queue of messages not sent yet.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use protocol_server::Conn;

use crate::auth::Client;
use crate::packet::{Publish, QoS};
use crate::retained;

/// Who a session belongs to, for the ACL.
#[derive(Debug)]
pub(crate) struct Who {
    pub(crate) id: Arc<str>,
    pub(crate) username: Option<String>,
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
    /// Set by CONNECT (boxed: one word until then).
    pub(crate) who: Option<Box<Who>>,
    pub(crate) clean: bool,
    pub(crate) filters: HashMap<String, QoS>,
    /// Outgoing packet id → state, in sending order.
    pub(crate) inflight: Vec<(u16, Inflight)>,
    /// Messages not sent yet (offline, window full, socket backlog), with their
    /// arrival time for expiry. Changed only through the methods below, which keep
    /// `queued_bytes` true.
    pub(crate) queue: VecDeque<(Instant, Publish)>,
    /// Topic and payload bytes in `queue`.
    pub(crate) queued_bytes: usize,
    /// When a persistent session was last left by its client (for
    /// `persistent_expiry`); `None` while connected.
    pub(crate) left_at: Option<Instant>,
    /// Inbound QoS 2 packet ids between PUBREC and PUBREL; allocated on the first
    /// (most clients never publish at QoS 2, and every session is held in memory).
    #[allow(clippy::box_collection)] // one word per session, not a `HashSet`'s six
    pub(crate) receiving: Option<Box<HashSet<u16>>>,
    next_id: u16,
}

impl Session {
    /// Queues `msg` at the back.
    pub(crate) fn push(&mut self, msg: Publish) {
        self.queued_bytes += retained::size(&msg);
        self.queue.push_back((Instant::now(), msg));
    }

    /// Takes the front of the queue.
    pub(crate) fn pop(&mut self) -> Option<(Instant, Publish)> {
        let front = self.queue.pop_front()?;
        self.queued_bytes -= retained::size(&front.1);
        Some(front)
    }

    /// Removes the queued message at `i`.
    pub(crate) fn remove(&mut self, i: usize) {
        if let Some((_, m)) = self.queue.remove(i) {
            self.queued_bytes -= retained::size(&m);
        }
    }

    /// Drops the queued messages `stale` picks; returns how many.
    pub(crate) fn drop_if(&mut self, mut stale: impl FnMut(&Publish, Instant) -> bool) -> usize {
        let before = self.queue.len();
        let mut freed = 0;
        self.queue.retain(|(at, m)| {
            let go = stale(m, *at);
            freed += if go { retained::size(m) } else { 0 };
            !go
        });
        self.queued_bytes -= freed;
        before - self.queue.len()
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
