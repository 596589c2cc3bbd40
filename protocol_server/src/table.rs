//! Open connections by id, indexed by the reactor's slab slot.
//!
//! Slots are dense and reused, so a vector of pointers is the whole table: one word
//! per slot where a hash map entry costs three or four, and a lookup is an index and
//! a generation check instead of a hash.

use reactor::ConnId;

use crate::Conn;

/// Connections by [`ConnId`]; a stale id (its slot reused) finds nothing.
#[derive(Default)]
pub(crate) struct ConnTable {
    slots: Vec<Option<Conn>>,
    open: usize,
}

impl ConnTable {
    /// The live connection `id` names, if it is still that one.
    pub(crate) fn get(&self, id: ConnId) -> Option<&Conn> {
        self.slots.get(id.slot as usize)?.as_ref().filter(|c| c.id() == id)
    }

    pub(crate) fn insert(&mut self, id: ConnId, conn: Conn) {
        let slot = id.slot as usize;
        if self.slots.len() <= slot {
            self.slots.resize_with(slot + 1, || None);
        }
        if self.slots[slot].replace(conn).is_none() {
            self.open += 1;
        }
    }

    pub(crate) fn remove(&mut self, id: ConnId) -> Option<Conn> {
        let conn = self.slots.get_mut(id.slot as usize)?.take_if(|c| c.id() == id)?;
        self.open -= 1;
        Some(conn)
    }

    /// Connections open now.
    pub(crate) fn len(&self) -> usize {
        self.open
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Conn> {
        self.slots.iter().flatten()
    }
}
