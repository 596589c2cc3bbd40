//! Publishing: a client's PUBLISH packets from their checks to their acknowledgement,
//! through runs of publishes to one topic delivered in slices ([`Fanout`]), and the
//! publisher's pause while a subscriber's queue is full (`Overflow::Block`).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use protocol_server::{Batch, Conn};

use super::{write, Mqtt};
use crate::broker::{lock, Fanout, Overflow};
use crate::packet::{Packet, Publish, QoS};

/// Held-back PUBLISH packets of a blocked publisher before we stop reading its socket
/// (everything else it sends, acknowledgements included, is still handled).
pub(super) const MAX_HELD: usize = 64;
/// Socket reads per `on_data` call: a fast publisher yields its worker regularly.
pub(super) const READS_PER_TURN: usize = 4;
/// How long one `on_data` call may spend delivering what its client published
/// before the worker's other connections get their turn (the rest of a large
/// fan-out goes on in the next call).
const TURN: Duration = Duration::from_millis(2);

/// Why a publisher's next packets wait: a full subscriber queue (`Overflow::Block`),
/// with the PUBLISH packets it sent meanwhile, in order; or a run of its publishes
/// being delivered (gathering while the input has more to the same topic, then
/// fanning out, over several turns if there are very many subscribers). Made the
/// first time and then kept: a client that never publishes pays one word for it.
#[derive(Debug, Default)]
pub(super) struct Hold(Option<Box<Waiting>>);

#[derive(Debug, Default)]
struct Waiting {
    blocked: bool,
    publishes: VecDeque<Publish>,
    fanout: Option<Fanout>,
}

impl Hold {
    fn blocked(&self) -> bool {
        self.0.as_ref().is_some_and(|h| h.blocked)
    }

    fn set_blocked(&mut self, blocked: bool) {
        if blocked || self.0.is_some() {
            self.0.get_or_insert_with(Box::default).blocked = blocked;
        }
    }

    pub(super) fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |h| h.publishes.len())
    }

    fn push_back(&mut self, p: Publish) {
        self.0.get_or_insert_with(Box::default).publishes.push_back(p);
    }

    fn pop_front(&mut self) -> Option<Publish> {
        self.0.as_mut()?.publishes.pop_front()
    }

    fn push_front(&mut self, p: Publish) {
        self.0.get_or_insert_with(Box::default).publishes.push_front(p);
    }

    /// Whether publishes are part-way through delivery: nothing else is decoded until
    /// they are all out.
    pub(super) fn fanning(&self) -> bool {
        self.fanout().is_some_and(Fanout::started)
    }

    fn fanout(&self) -> Option<&Fanout> {
        self.0.as_ref()?.fanout.as_ref()
    }

    fn fanout_mut(&mut self) -> Option<&mut Fanout> {
        self.0.as_mut()?.fanout.as_mut()
    }

    pub(super) fn take_fanout(&mut self) -> Option<Fanout> {
        self.0.as_mut()?.fanout.take()
    }

    fn set_fanout(&mut self, fanout: Fanout) {
        self.0.get_or_insert_with(Box::default).fanout = Some(fanout);
    }

    /// Whether input must wait: too many held-back publishes, or a fan-out in progress.
    pub(super) fn full(&self) -> bool {
        self.len() >= MAX_HELD || self.fanning()
    }
}

/// One `on_data` call's output, sent in one `writev` per connection, and the time
/// its deliveries may take.
pub(super) struct Turn {
    pub(super) out: Batch,
    until: Instant,
}

impl Turn {
    pub(super) fn new() -> Turn {
        Turn { out: Batch::new(), until: Instant::now() + TURN }
    }
}

impl Mqtt {
    /// Woken (or never blocked): route held-back publishes, in order, until one finds
    /// a full queue again.
    pub(super) fn release(&mut self, conn: &Conn, turn: &mut Turn) {
        if self.held.blocked() && self.broker.is_blocked(conn) {
            return;
        }
        self.held.set_blocked(false);
        while let Some(p) = self.held.pop_front() {
            // Each publish goes out before the next is routed: it may block again.
            if !self.fan_out(conn, turn) || self.held.blocked() {
                self.held.push_front(p);
                return;
            }
            self.route(conn, &p, turn);
        }
        self.fan_out(conn, turn);
    }

    /// Why a PUBLISH must close the connection, if it must.
    fn check(&self, p: &Publish) -> Result<(), String> {
        if p.qos != QoS::AtMostOnce && p.packet_id.is_none() {
            return Err("QoS > 0 without a packet id".into());
        }
        if let Err(why) = self.broker.config.topic.check(&p.topic) {
            self.broker.stats.refused_topics.fetch_add(1, Ordering::Relaxed);
            return Err(format!("PUBLISH topic refused: {why}"));
        }
        if p.retain && !self.broker.config.retain_available {
            return Err("retained PUBLISH, retain_available is false".into());
        }
        Ok(())
    }

    /// Adds a PUBLISH to the run of publishes to the same topic that the packets
    /// before it started, if there is one, not delivered yet, and this one would be
    /// routed as they are (allowed, not a resent QoS 2 id, no publisher blocked).
    /// False: it is handled on its own (and the run goes out first).
    pub(super) fn join(&mut self, p: &Publish) -> bool {
        // Same topic as the run's first publish, which passed `check`'s topic bound
        // (the only check that counts a refusal): no refusal is counted twice.
        let takes = self.held.fanout().is_some_and(|f| f.takes(p));
        // Under `Overflow::Block` each publish goes alone: a full queue must pause the
        // publisher before the next one is acknowledged, never drop it after.
        let block = self.broker.config.overflow == Overflow::Block;
        if !takes || block || self.held.blocked() || self.check(p).is_err() || !self.may_publish(&p.topic) {
            return false;
        }
        if let (QoS::ExactlyOnce, Some(id), Some((_, s))) = (p.qos, p.packet_id, &self.client) {
            if !lock(s).receiving.get_or_insert_with(Box::default).insert(id) {
                return false; // a resent id: acknowledged, not routed again ([MQTT-4.3.3-2])
            }
        }
        self.broker.stats.received.fetch_add(1, Ordering::Relaxed);
        let from = self.client.as_ref().map_or("-", |(id, _)| &**id);
        if let Some(fanout) = self.held.fanout_mut() {
            self.broker.join(fanout, p, from);
        }
        true
    }

    pub(super) fn publish(&mut self, conn: &Conn, p: Publish, turn: &mut Turn) -> Result<(), String> {
        self.check(&p)?;
        if self.held.blocked() {
            // Waits its turn: acknowledgements leave in the order PUBLISHes came
            // ([MQTT-4.6.0-2]), denied ones included.
            self.held.push_back(p);
            self.release(conn, turn); // woken meanwhile? then it goes now
        } else {
            self.route(conn, &p, turn);
        }
        Ok(())
    }

    /// Routes one publish and acknowledges it; under `Overflow::Block`, a full
    /// subscriber queue blocks this publisher.
    fn route(&mut self, conn: &Conn, p: &Publish, turn: &mut Turn) {
        if !self.may_publish(&p.topic) {
            // Acknowledged as the standard allows, so the client does not resend it.
            log::debug!("client {}: PUBLISH to {:?} denied by the ACL", self.client_id(), p.topic);
            self.broker.stats.denied_publishes.fetch_add(1, Ordering::Relaxed);
            return acknowledge(conn, p, &mut turn.out);
        }
        let first = match (p.qos, p.packet_id) {
            // Ids between PUBREC and PUBREL belong to the session: a PUBLISH resent after
            // a reconnect is not routed twice ([MQTT-4.3.3-2]).
            (QoS::ExactlyOnce, Some(id)) => self
                .client
                .as_ref()
                .is_some_and(|(_, s)| lock(s).receiving.get_or_insert_with(Box::default).insert(id)),
            _ => true,
        };
        if !first {
            return acknowledge(conn, p, &mut turn.out);
        }
        // Delivered with the publishes to the same topic that follow it in the input,
        // once a packet that cannot join them comes, or the input ends (`fan_out`).
        let fanout = self.broker.fanout(p, self.client_id());
        self.held.set_fanout(fanout);
    }

    /// Delivers the pending run of publishes, for this turn's time at most; true once
    /// it is done (or there was none). Then each is acknowledged, in order; under
    /// `Overflow::Block`, a full subscriber queue blocks this publisher first:
    /// whoever sees the acks sees the block.
    pub(super) fn fan_out(&mut self, conn: &Conn, turn: &mut Turn) -> bool {
        let Some(mut fanout) = self.held.take_fanout() else { return true };
        if !self.broker.deliver_some(&mut fanout, Some(turn.until), &mut turn.out) {
            self.held.set_fanout(fanout); // the rest next turn; nothing else is read meanwhile
            return false;
        }
        if !fanout.full.is_empty() && self.broker.config.overflow == Overflow::Block {
            let blocked = self.broker.block(conn, &fanout.full);
            self.held.set_blocked(blocked);
        }
        for p in fanout.messages() {
            acknowledge(conn, p, &mut turn.out);
        }
        true
    }
}

/// PUBACK or PUBREC, as the publish's QoS asks.
pub(super) fn acknowledge(conn: &Conn, p: &Publish, out: &mut Batch) {
    match (p.qos, p.packet_id) {
        (QoS::AtLeastOnce, Some(id)) => write(conn, &Packet::Puback(id), out), // [MQTT-4.3.2-2]
        (QoS::ExactlyOnce, Some(id)) => write(conn, &Packet::Pubrec(id), out), // [MQTT-4.3.3-2]
        _ => {}
    }
}
