//! Output: the writes of the public API, the queue they fill, and the socket (or
//! read/write hooks) the queue drains into.

use super::*;

impl Conn {
    /// Sends `data`, copying what the socket does not take at once.
    pub fn write(&self, data: &[u8]) -> Result<(), WriteError> {
        self.enqueue(Queued::Slice(data), false)
    }

    /// Sends an owned buffer without copying it.
    pub fn write_move(&self, data: Vec<u8>) -> Result<(), WriteError> {
        self.enqueue(Queued::Owned(data), false)
    }

    /// Sends a buffer shared with other connections (one encoded message fanned out
    /// to many peers): nothing is copied, each connection holds a reference until
    /// its socket has taken the bytes.
    pub fn write_shared(&self, data: Bytes) -> Result<(), WriteError> {
        self.enqueue(Queued::Chunk(Chunk::shared(data)), false)
    }

    /// Sends `data` ahead of queued output that has not started (a half-sent buffer
    /// is finished first, so the byte stream stays well-formed).
    pub fn write_urgent(&self, data: Vec<u8>) -> Result<(), WriteError> {
        self.enqueue(Queued::Owned(data), true)
    }

    /// [`Conn::write_move`] for bytes that something else written at once follows
    /// (a response head before [`Conn::send_file`]): the kernel holds them
    /// (`MSG_MORE`) so both leave in full segments, like nginx's `tcp_nopush`.
    pub fn write_corked(&self, data: Vec<u8>) -> Result<(), WriteError> {
        self.enqueue(Queued::Chunk(Chunk::bytes_before_more(data)), false)
    }

    /// Sends `len` bytes of `file` from `offset` (`None`: to the end) with
    /// `sendfile(2)`: the file is never read into memory (unless read/write hooks are
    /// set, which need the bytes). An `Arc<File>` lets one open file serve many
    /// connections at once: `sendfile` with an offset never moves a shared position.
    pub fn send_file(
        &self,
        file: impl Into<Arc<File>>,
        offset: u64,
        len: Option<u64>,
    ) -> Result<(), WriteError> {
        let file = file.into();
        let end = match len {
            Some(len) => offset.saturating_add(len),
            None => file.metadata().map_err(WriteError::Io)?.len(),
        };
        if end <= offset {
            return Ok(());
        }
        self.enqueue(Queued::Chunk(Chunk::File { file, offset, end, started: false }), false)
    }

    pub(super) fn enqueue(&self, data: Queued<'_>, urgent: bool) -> Result<(), WriteError> {
        let max = self.0.server.settings().max_output;
        let mut out = lock(&self.0.output);
        // Checked under the output lock, which the close path holds when it finds the
        // queue empty before sending FIN: a write racing `close()` from another thread
        // either goes out before the FIN or is refused, never hits the shut socket
        // (EPIPE, then a reset that loses what was in flight).
        if self.state() != OPEN {
            return Err(WriteError::Closed);
        }
        let nothing = match &data {
            Queued::Slice(bytes) => bytes.is_empty(),
            Queued::Owned(bytes) => bytes.is_empty(),
            Queued::Chunk(chunk) => chunk.is_empty(),
        };
        if nothing {
            return Ok(()); // queued, an empty buffer would make a `writev` read as WriteZero
        }
        let was_empty = out.is_empty();
        let mut socket_full = false;
        let chunk = match data {
            // Nothing queued: write straight from the caller's bytes, copy only the rest.
            Queued::Slice(bytes) if was_empty => match self.write_now(bytes) {
                Ok(n) if n == bytes.len() => return Ok(()),
                Ok(n) => {
                    socket_full = true;
                    Chunk::bytes(bytes[n..].to_vec())
                }
                Err(e) => return self.failed(out, e),
            },
            Queued::Slice(bytes) => Chunk::bytes(bytes.to_vec()),
            Queued::Owned(bytes) => Chunk::bytes(bytes),
            Queued::Chunk(chunk) => chunk,
        };
        if urgent {
            out.push_urgent(chunk);
        } else {
            out.push(chunk);
        }
        // With nothing queued before, no writable edge is pending: try the socket now.
        if was_empty && !socket_full {
            if let Err(e) = out.flush(&mut self.sink()) {
                return self.failed(out, e);
            }
        }
        // Bound the memory held, after the socket took what it could (a file range
        // holds none, so large files are fine).
        if out.memory() > max {
            let held = out.memory();
            drop(out);
            self.abort(&format!("peer does not read: {held} bytes queued > max_output {max}"));
            return Err(WriteError::Overflow { queued: held, max });
        }
        Ok(())
    }

    /// Queues `chunk` without trying the socket ([`crate::Batch`]). Returns whether
    /// the queue was empty: then no writable edge and no other batch will send it, so
    /// the caller must call [`Conn::flush_deferred`].
    pub(crate) fn enqueue_deferred(&self, chunk: Chunk) -> Result<bool, WriteError> {
        let max = self.0.server.settings().max_output;
        let mut out = lock(&self.0.output);
        if chunk.is_empty() {
            // Nothing to send; queued, a `writev` of empty buffers would read as WriteZero.
            return if self.state() == OPEN { Ok(false) } else { Err(WriteError::Closed) };
        }
        if self.state() != OPEN {
            return Err(WriteError::Closed); // as in `enqueue`: never past a FIN
        }
        let was_empty = out.is_empty();
        out.push(chunk);
        if out.memory() > max {
            let held = out.memory();
            drop(out);
            self.abort(&format!("peer does not read: {held} bytes queued > max_output {max}"));
            return Err(WriteError::Overflow { queued: held, max });
        }
        Ok(was_empty)
    }

    /// Sends what [`Conn::enqueue_deferred`] queued, as far as the socket takes it
    /// (the rest goes on the writable edge, as any output). Runs on the batch's
    /// thread, so what a drain must start runs as a task on this connection's worker.
    pub(crate) fn flush_deferred(&self) {
        let mut out = lock(&self.0.output);
        match out.drain(&mut self.sink()) {
            Ok(None) => {}
            Ok(Some(ready_wanted)) => {
                drop(out);
                match self.state() {
                    // `close` found output queued and left the FIN to the drain.
                    CLOSING => self.schedule(Conn::linger_if_flushed),
                    OPEN if ready_wanted => self.schedule(Conn::on_drained),
                    _ => {}
                }
            }
            Err(e) => drop(self.failed(out, e)),
        }
    }

    /// Whether more than `limit` bytes wait to be sent. If so, [`Protocol::on_ready`]
    /// follows once they have all gone, whoever sent them (the writable edge or a
    /// [`crate::Batch`] on another thread): the signal for a protocol that holds
    /// further output back while its peer is slow.
    pub fn backlogged(&self, limit: usize) -> bool {
        let mut out = lock(&self.0.output);
        let over = out.queued() > limit;
        if over {
            out.want_ready();
        }
        over
    }

    pub(super) fn failed(
        &self,
        out: std::sync::MutexGuard<'_, Output>,
        e: io::Error,
    ) -> Result<(), WriteError> {
        drop(out);
        self.abort_io("write", &e);
        Err(WriteError::Io(e))
    }

    /// Writes what the socket takes now; `Ok(n)` bytes written (maybe fewer than asked).
    pub(super) fn write_now(&self, mut bytes: &[u8]) -> io::Result<usize> {
        let total = bytes.len();
        let mut sink = self.sink();
        while !bytes.is_empty() {
            match sink.write(bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(total - bytes.len())
    }

    pub(super) fn sink(&self) -> ConnSink<'_> {
        ConnSink { stream: &self.0.stream, rare: &self.0.rare }
    }

    /// Bytes waiting to be sent.
    pub fn queued(&self) -> usize {
        lock(&self.0.output).queued()
    }
}

pub(super) enum Queued<'a> {
    Slice(&'a [u8]),
    Owned(Vec<u8>),
    Chunk(Chunk),
}

pub(super) struct ConnSink<'a> {
    stream: &'a TcpStream,
    rare: &'a OnceLock<Box<Rare>>,
}

impl Sink for ConnSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut hooks = lock_hooks(self.rare);
        match hooks.as_mut().and_then(|h| h.as_mut()) {
            Some(hooks) => hooks.write(self.stream, buf),
            None => (&*self.stream).write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        if lock_hooks(self.rare).is_some_and(|h| h.is_some()) {
            return bufs.iter().find(|b| !b.is_empty()).map_or(Ok(0), |b| self.write(b));
        }
        (&*self.stream).write_vectored(bufs)
    }

    fn write_more(&mut self, buf: &[u8]) -> io::Result<usize> {
        if lock_hooks(self.rare).is_some_and(|h| h.is_some()) {
            return self.write(buf);
        }
        crate::sys::send_more(self.stream, buf)
    }

    fn send_file(&mut self, file: &File, offset: u64, len: usize) -> Option<io::Result<usize>> {
        if lock_hooks(self.rare).is_some_and(|h| h.is_some()) {
            return None;
        }
        crate::sys::send_file(self.stream, file, offset, len)
    }
}
