//! [`Batch`]: writes to many connections that leave together, one `writev(2)` per
//! connection, when the batch is flushed.
//!
//! A broker that routes 64 messages from one read to 100 subscribers would make 6,400
//! `write(2)` calls writing each at once; queued in a batch and flushed after the
//! read, it makes 100. Queued bytes wait only until the flush (or the batch's drop),
//! in the thread that queued them: a batch lives for one hook call, not longer.

use bytes::Bytes;

use crate::output::Chunk;
use crate::{Conn, WriteError};

/// Writes queued to connections and sent when [`Batch::flush`] runs (or the batch is
/// dropped). Order is kept per connection, with every other write to it: a
/// connection's bytes leave in the order they were queued, whoever queued them.
#[derive(Default)]
pub struct Batch {
    /// Connections whose queue this batch found empty: nobody else will send it.
    pending: Vec<Conn>,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch").field("pending", &self.pending.len()).finish()
    }
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Queues an owned buffer for `conn`.
    pub fn write(&mut self, conn: &Conn, data: Vec<u8>) -> Result<(), WriteError> {
        self.queue(conn, Chunk::bytes(data))
    }

    /// Queues a buffer shared with other connections for `conn` (see
    /// [`Conn::write_shared`]).
    pub fn write_shared(&mut self, conn: &Conn, data: Bytes) -> Result<(), WriteError> {
        self.queue(conn, Chunk::shared(data))
    }

    fn queue(&mut self, conn: &Conn, chunk: Chunk) -> Result<(), WriteError> {
        if conn.enqueue_deferred(chunk)? {
            self.pending.push(conn.clone());
        }
        Ok(())
    }

    /// Connections with output queued by this batch and not sent yet.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing waits for [`Batch::flush`].
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Sends what was queued: one `writev` per connection, as far as its socket takes
    /// it (the rest leaves on its writable edge, as any output).
    pub fn flush(&mut self) {
        for conn in self.pending.drain(..) {
            conn.flush_deferred();
        }
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.flush();
    }
}
