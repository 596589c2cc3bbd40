//! Routing a run of publishes to their subscribers: found once in the trie,
//! delivered subscriber by subscriber (the whole run at once, one `writev` each),
//! in slices when there are very many; the QoS 0 wire form encoded once.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use protocol_server::{Batch, Bytes};

use super::{lock, Broker, Session, SessionRef};
use crate::packet::{Publish, QoS};
use crate::topic::Shared;

/// Deliveries between two looks at the clock while publishes fan out.
const SLICE: usize = 256;

/// Most publishes in one [`Fanout`].
pub(crate) const MAX_RUN: usize = 64;

/// A run of publishes to one topic (consecutive in their publisher's input) on its
/// way to the subscribers: who they are, found once when the first arrived, and how
/// far delivery got. Delivery goes subscriber by subscriber, each getting the whole
/// run at once (one `writev`); a run to very many subscribers is delivered over
/// several turns of its publisher's worker, so that the worker's other connections
/// are served meanwhile.
#[derive(Debug)]
pub(crate) struct Fanout {
    /// The publishes as they arrived (QoS and packet id say how to acknowledge each),
    /// each with its QoS 0 wire form once encoded.
    msgs: Vec<(Publish, Wire)>,
    /// Plain subscribers of the topic.
    targets: Vec<(SessionRef, QoS)>,
    /// The topic's shared groups, and the member each message goes to (by index).
    groups: Vec<Shared<SessionRef>>,
    chosen: Vec<(usize, SessionRef, QoS)>,
    /// Deliveries made: an index into `targets`, then into `chosen`.
    next: usize,
    /// Sessions whose queue a delivery filled (`Overflow::Block`).
    pub(crate) full: Vec<Arc<Mutex<Session>>>,
}

impl Fanout {
    /// Whether delivery began: nothing may join the run any more.
    pub(crate) fn started(&self) -> bool {
        self.next > 0
    }

    /// Whether `p` may join this run: same topic, not started, room left.
    pub(crate) fn takes(&self, p: &Publish) -> bool {
        !self.started()
            && self.msgs.len() < MAX_RUN
            && self.msgs.first().is_some_and(|(m, _)| m.topic == p.topic)
    }

    /// The publishes, in order.
    pub(crate) fn messages(&self) -> impl Iterator<Item = &Publish> {
        self.msgs.iter().map(|(m, _)| m)
    }
}

impl Broker {
    /// Routes a publish to the end at once (wills, `$SYS`): see [`Broker::fanout`].
    pub(crate) fn publish(&self, msg: &Publish, from: &str, out: &mut Batch) -> Vec<Arc<Mutex<Session>>> {
        let mut fanout = self.fanout(msg, from);
        self.deliver_some(&mut fanout, None, out);
        fanout.full
    }

    /// Starts routing an incoming publish: its subscribers, found now, get it from
    /// [`Broker::deliver_some`], each once at min(publish QoS, granted QoS)
    /// ([MQTT-3.3.5-1]), with the publishes that [`Broker::join`] it. `from` names
    /// the origin in log lines (a client id, a will, `$SYS`).
    pub(crate) fn fanout(&self, msg: &Publish, from: &str) -> Fanout {
        // Copied out, so the trie is not held while sessions are locked and written.
        let targets = self.subscriptions.read().unwrap_or_else(|p| p.into_inner()).subscribers(&msg.topic);
        let mut fanout = Fanout {
            msgs: Vec::new(),
            targets: targets.plain,
            groups: targets.groups,
            chosen: Vec::new(),
            next: 0,
            full: Vec::new(),
        };
        self.join(&mut fanout, msg, from);
        fanout
    }

    /// Adds a publish to the same topic to a run not started yet ([`Fanout::takes`]):
    /// the retained store takes it now, and each shared group picks its member.
    pub(crate) fn join(&self, fanout: &mut Fanout, msg: &Publish, from: &str) {
        if msg.retain {
            self.retain(msg, from);
        }
        let index = fanout.msgs.len();
        for group in &fanout.groups {
            // The first member online from the one whose turn it is; with none
            // online, that one (queued if persistent).
            let mut order = group.next_turn().peekable();
            let first = order.peek().copied().cloned();
            let online = order.find(|(s, _)| lock(&s.0).online()).cloned();
            if let Some((member, granted)) = online.or(first) {
                fanout.chosen.push((index, member, granted));
            }
        }
        fanout.msgs.push((msg.clone(), Wire::default()));
    }

    /// Delivers `fanout` to its next subscribers until all have it (true) or `until`
    /// passes (false: call again). What is sent leaves when `out` is flushed.
    pub(crate) fn deliver_some(&self, fanout: &mut Fanout, until: Option<Instant>, out: &mut Batch) -> bool {
        let rules = self.acl();
        let Fanout { msgs, targets, chosen, next, full, .. } = fanout;
        let Some(topic) = msgs.first().map(|(m, _)| Arc::clone(&m.topic)) else { return true };
        let total = targets.len() + chosen.len();
        let mut made = 0;
        while *next < total {
            let (session, granted, run) = match targets.get(*next) {
                Some((SessionRef(session), granted)) => (session, *granted, 0..msgs.len()),
                None => {
                    let (i, SessionRef(session), granted) = &chosen[*next - targets.len()];
                    (session, *granted, *i..*i + 1)
                }
            };
            *next += 1;
            let mut s = lock(session);
            if !self.readable(rules.as_deref(), &s, &topic) {
                continue;
            }
            let mut filled = false;
            for (msg, wire) in &mut msgs[run] {
                filled |= self.deliver(&mut s, msg, msg.qos.min(granted), false, wire, out);
                made += 1;
            }
            drop(s);
            if filled {
                full.push(Arc::clone(session));
            }
            // The clock is read once per slice of deliveries, not for each.
            if made >= SLICE && *next < total {
                made = 0;
                if until.is_some_and(|t| Instant::now() >= t) {
                    return false;
                }
            }
        }
        true
    }
}

/// The QoS 0 wire form of one message, encoded on first use and then shared by every
/// subscriber that gets it at QoS 0.
#[derive(Debug, Default)]
pub(crate) struct Wire(Option<Bytes>);

impl Wire {
    pub(super) fn qos0(&mut self, msg: &Publish, retain: bool) -> Bytes {
        self.0.get_or_insert_with(|| msg.outgoing(QoS::AtMostOnce, retain, None).to_shared()).clone()
    }
}
