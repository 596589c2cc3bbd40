//! Handles: small `Copy` newtypes, never bare integers.

use mio::Token;

/// A connection's identity: its slab slot and the slot's generation when it was
/// opened. Closing a connection bumps its slot's generation, so an id kept past the
/// close can never name the next connection that reuses the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    /// Index in the reactor's slab.
    pub slot: u32,
    /// How many connections held this slot before this one.
    pub gen: u32,
}

/// One listening socket of a reactor, in the order they were added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenerId(pub u16);

/// Where a connection came from, as [`crate::Dispatch::on_open`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// Accepted on this listener.
    Listener(ListenerId),
    /// Handed over with [`crate::Handle::attach`]; the tag is the caller's.
    Attached(u64),
}

/// A scheduled timer, for [`crate::Handle::cancel`]. Never reused within a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId(pub u64);

pub(crate) const WAKER: Token = Token(usize::MAX);
pub(crate) const SIGNALS: Token = Token(usize::MAX - 1);
/// A driven pool's doorbell (see `async_pool::Builder::driven`).
pub(crate) const POOL: Token = Token(usize::MAX - 2);
const FIRST_LISTENER: usize = usize::MAX - 3;

/// Token layout: connections are `gen << 32 | slot`; slots stay below 2^31 (the
/// connection limit is capped there), so they never reach the reserved tokens at the
/// top of the range, which count down from `usize::MAX`.
pub(crate) enum Target {
    Waker,
    Signals,
    Pool,
    Listener(ListenerId),
    Conn(ConnId),
}

impl ConnId {
    pub(crate) fn token(self) -> Token {
        Token((self.gen as usize) << 32 | self.slot as usize)
    }
}

impl ListenerId {
    pub(crate) fn token(self) -> Token {
        Token(FIRST_LISTENER - usize::from(self.0))
    }
}

impl Target {
    pub(crate) fn of(token: Token) -> Target {
        match token {
            WAKER => Target::Waker,
            SIGNALS => Target::Signals,
            POOL => Target::Pool,
            Token(t) if t & 0xFFFF_FFFF >= 1 << 31 => {
                Target::Listener(ListenerId((FIRST_LISTENER - t) as u16))
            }
            Token(t) => Target::Conn(ConnId { slot: (t & 0xFFFF_FFFF) as u32, gen: (t >> 32) as u32 }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for id in [
            ConnId { slot: 0, gen: 0 },
            ConnId { slot: 7, gen: u32::MAX },
            ConnId { slot: (1 << 31) - 1, gen: 3 },
        ] {
            assert!(matches!(Target::of(id.token()), Target::Conn(back) if back == id));
        }
        for l in [0u16, 1, u16::MAX] {
            assert!(matches!(Target::of(ListenerId(l).token()), Target::Listener(back) if back.0 == l));
        }
        assert!(matches!(Target::of(WAKER), Target::Waker));
        assert!(matches!(Target::of(SIGNALS), Target::Signals));
    }
}
