//! The connection table: a slab plus one generation counter per slot.

use std::net::TcpStream;
use std::sync::Arc;

use slab::Slab;

use crate::ConnId;

/// What the reactor keeps per connection: the stream, shared with the layer above,
/// which reads and writes it from worker threads.
pub(crate) type Conn = Arc<TcpStream>;

#[derive(Debug, Default)]
pub(crate) struct Conns {
    slab: Slab<Conn>,
    /// INVARIANT: every slot the slab has ever handed out has an entry here, and a
    /// slot's generation changes only when its connection is removed.
    gens: Vec<u32>,
}

impl Conns {
    pub(crate) fn len(&self) -> usize {
        self.slab.len()
    }

    /// The id the next `insert` will return.
    pub(crate) fn next_id(&self) -> ConnId {
        let slot = self.slab.vacant_key();
        ConnId { slot: slot as u32, gen: self.gens.get(slot).copied().unwrap_or(0) }
    }

    pub(crate) fn insert(&mut self, conn: Conn) -> ConnId {
        let id = self.next_id();
        self.slab.insert(conn);
        if self.gens.len() <= id.slot as usize {
            self.gens.push(0);
        }
        id
    }

    pub(crate) fn get(&self, id: ConnId) -> Option<&Conn> {
        self.live(id).then(|| &self.slab[id.slot as usize])
    }

    /// Removes the connection if `id` still names it; a stale id is a no-op.
    pub(crate) fn remove(&mut self, id: ConnId) -> Option<Conn> {
        if !self.live(id) {
            return None;
        }
        let slot = id.slot as usize;
        self.gens[slot] = self.gens[slot].wrapping_add(1);
        Some(self.slab.remove(slot))
    }

    pub(crate) fn ids(&self) -> Vec<ConnId> {
        self.slab.iter().map(|(slot, _)| ConnId { slot: slot as u32, gen: self.gens[slot] }).collect()
    }

    fn live(&self, id: ConnId) -> bool {
        let slot = id.slot as usize;
        self.slab.contains(slot) && self.gens[slot] == id.gen
    }
}
