//! The idle-timeout wheel: per-tick buckets, checked lazily.
//!
//! A connection has one live entry, at the tick of its deadline as last known.
//! `touch` only stores a timestamp; when the entry comes due, the real deadline is
//! recomputed and the entry moves there, or `ping` is scheduled. So the cost is per
//! expiry (at most one per timeout period per connection), never per event and
//! never a scan of all connections.

use reactor::ConnId;

/// Wheel resolution: timeouts fire within one tick after their deadline.
pub(crate) const TICK_MS: u64 = 100;
const SLOTS: usize = 512;

/// Entries hold their tick as a wrapping `u32` (12 bytes an entry instead of 16):
/// deadlines are at most `u32::MAX` ms (about 500 days of ticks) ahead, far less than
/// the 2³¹ ticks (6.8 years) at which a wrapping comparison would go wrong. `SLOTS`
/// divides 2³², so a wrapped tick still names its slot.
#[derive(Debug)]
pub(crate) struct Wheel {
    slots: Vec<Vec<(ConnId, u32)>>,
    /// The last tick processed.
    tick: u64,
}

impl Default for Wheel {
    fn default() -> Self {
        Wheel { slots: vec![Vec::new(); SLOTS], tick: 0 }
    }
}

impl Wheel {
    /// The tick a deadline is filed under: the first one at or after it, and never
    /// one already processed.
    /// Never 0, which a connection's `wheel_tick` uses for "no entry" (a wrapped 0
    /// becomes 1: due one tick later).
    pub(crate) fn tick_of(&self, deadline_ms: u64) -> u32 {
        (deadline_ms.div_ceil(TICK_MS).max(self.tick + 1) as u32).max(1)
    }

    /// Files `id` under `tick` (from [`Wheel::tick_of`]); the connection remembers the
    /// tick to recognise its live entry.
    pub(crate) fn insert_at(&mut self, id: ConnId, tick: u32) {
        self.slots[tick as usize % SLOTS].push((id, tick));
    }

    #[cfg(test)]
    fn insert(&mut self, id: ConnId, deadline_ms: u64) -> u32 {
        let tick = self.tick_of(deadline_ms);
        self.insert_at(id, tick);
        tick
    }

    /// Removes and returns every entry due at or before `now_ms`, with its tick.
    pub(crate) fn due(&mut self, now_ms: u64) -> Vec<(ConnId, u32)> {
        let now_tick = now_ms / TICK_MS;
        // At or before `now_tick`, compared as wrapping `u32`s (see `Wheel`).
        let reached = |tick: u32| (now_tick as u32).wrapping_sub(tick) < 1 << 31;
        let mut due = Vec::new();
        // After a long stall, one lap covers every slot.
        let first = self.tick + 1;
        let last = now_tick.min(self.tick + SLOTS as u64);
        for tick in first..=last {
            let slot = &mut self.slots[(tick % SLOTS as u64) as usize];
            let mut i = 0;
            while i < slot.len() {
                if reached(slot[i].1) {
                    due.push(slot.swap_remove(i));
                } else {
                    i += 1;
                }
            }
        }
        self.tick = self.tick.max(now_tick);
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(slot: u32) -> ConnId {
        ConnId { slot, gen: 0 }
    }

    #[test]
    fn entries_come_due_at_their_tick_not_before_even_laps_away() {
        let mut wheel = Wheel::default();
        wheel.insert(id(1), 250);
        let far = SLOTS as u64 * TICK_MS * 3 + 50;
        wheel.insert(id(2), far);
        assert!(wheel.due(200).is_empty());
        assert_eq!(wheel.due(300).iter().map(|e| e.0).collect::<Vec<_>>(), [id(1)]);
        assert!(wheel.due(far - TICK_MS).is_empty(), "a far entry is not due on an earlier lap");
        assert_eq!(wheel.due(far + TICK_MS).iter().map(|e| e.0).collect::<Vec<_>>(), [id(2)]);
    }

    #[test]
    fn past_deadlines_go_to_the_next_tick() {
        let mut wheel = Wheel::default();
        wheel.due(1_000);
        let tick = wheel.insert(id(3), 0);
        assert_eq!(u64::from(tick), 1_000 / TICK_MS + 1);
        assert_eq!(wheel.due(1_000 + TICK_MS).len(), 1);
    }
}
