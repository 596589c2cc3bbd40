//! A connection's queued output: owned buffers and file ranges, flushed in order.
//!
//! Nothing is held once the queue drains (the deque's buffer is released too), so
//! an idle connection costs no output memory.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::sync::Arc;

/// Where flushed bytes go: the socket directly, or the connection's read/write hooks.
pub(crate) trait Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize>;
    /// [`Sink::write`], telling the kernel more follows at once (`MSG_MORE`).
    fn write_more(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write(buf)
    }
    /// Sends up to `len` bytes of `file` from `offset`; `None` if this sink cannot
    /// (hooks that transform bytes), in which case the file is read and written.
    fn send_file(&mut self, file: &File, offset: u64, len: usize) -> Option<io::Result<usize>>;
}

pub(crate) enum Chunk {
    /// `more`: what follows is sent right after, so hold these bytes back for a full
    /// segment (a response head before its file, as nginx's `tcp_nopush`).
    Bytes {
        data: Vec<u8>,
        sent: usize,
        urgent: bool,
        more: bool,
    },
    File {
        file: Arc<File>,
        offset: u64,
        end: u64,
        started: bool,
    },
}

impl Chunk {
    pub(crate) fn bytes(data: Vec<u8>) -> Chunk {
        Chunk::Bytes { data, sent: 0, urgent: false, more: false }
    }

    pub(crate) fn bytes_before_more(data: Vec<u8>) -> Chunk {
        Chunk::Bytes { data, sent: 0, urgent: false, more: true }
    }

    fn remaining(&self) -> usize {
        match self {
            Chunk::Bytes { data, sent, .. } => data.len() - sent,
            Chunk::File { offset, end, .. } => usize::try_from(end - offset).unwrap_or(usize::MAX),
        }
    }

    fn started(&self) -> bool {
        match self {
            Chunk::Bytes { sent, .. } => *sent > 0,
            Chunk::File { started, .. } => *started,
        }
    }

    fn urgent(&self) -> bool {
        matches!(self, Chunk::Bytes { urgent: true, .. })
    }

    /// Bytes of memory this chunk holds: a file range holds none.
    fn memory(&self) -> usize {
        match self {
            Chunk::Bytes { .. } => self.remaining(),
            Chunk::File { .. } => 0,
        }
    }

    /// Writes until done or `WouldBlock`; `Ok(true)` when the chunk is fully sent.
    fn flush(&mut self, sink: &mut dyn Sink) -> io::Result<bool> {
        loop {
            if self.remaining() == 0 {
                return Ok(true);
            }
            let n = match self {
                Chunk::Bytes { data, sent, more: false, .. } => retry(|| sink.write(&data[*sent..])),
                Chunk::Bytes { data, sent, more: true, .. } => retry(|| sink.write_more(&data[*sent..])),
                Chunk::File { file, offset, end, .. } => send_file(sink, file, *offset, *end),
            };
            let n = match n {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            };
            match self {
                Chunk::Bytes { sent, .. } => *sent += n,
                Chunk::File { offset, started, .. } => {
                    *offset += n as u64;
                    *started = true;
                }
            }
        }
    }
}

/// Largest piece handed to one `sendfile(2)` or copied through hooks at a time.
const FILE_STEP: usize = 1 << 20;

fn send_file(sink: &mut dyn Sink, file: &File, offset: u64, end: u64) -> io::Result<usize> {
    let len = usize::try_from(end - offset).unwrap_or(usize::MAX).min(FILE_STEP);
    if let Some(result) = retry_opt(|| sink.send_file(file, offset, len)) {
        return result;
    }
    // Hooks in the way: copy a bounded piece through them; only what they take counts.
    let mut buf = vec![0u8; len.min(64 * 1024)];
    let read = crate::sys::read_at(file, &mut buf, offset)?;
    if read == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shorter than the range to send"));
    }
    retry(|| sink.write(&buf[..read]))
}

fn retry(mut f: impl FnMut() -> io::Result<usize>) -> io::Result<usize> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

fn retry_opt(mut f: impl FnMut() -> Option<io::Result<usize>>) -> Option<io::Result<usize>> {
    loop {
        match f() {
            Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// A connection's output queue: one word while empty (every idle connection), the
/// queue itself only while something waits for the socket.
#[derive(Default)]
pub(crate) struct Output(Option<Box<Queue>>);

impl Output {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|q| q.chunks.is_empty())
    }

    /// Bytes (and file bytes) waiting.
    pub(crate) fn queued(&self) -> usize {
        self.0.as_ref().map_or(0, |q| q.queued)
    }

    /// Bytes of memory held by queued buffers.
    pub(crate) fn memory(&self) -> usize {
        self.0.as_ref().map_or(0, |q| q.memory)
    }

    pub(crate) fn push(&mut self, chunk: Chunk) {
        self.0.get_or_insert_with(Box::default).push(chunk);
    }

    /// Queues ahead of everything not yet started, after earlier urgent chunks (a
    /// chunk half-sent stays first: splitting it would corrupt the stream).
    pub(crate) fn push_urgent(&mut self, chunk: Chunk) {
        self.0.get_or_insert_with(Box::default).push_urgent(chunk);
    }

    /// Writes in order until empty (`Ok(true)`) or the socket is full (`Ok(false)`).
    pub(crate) fn flush(&mut self, sink: &mut dyn Sink) -> io::Result<bool> {
        let Some(queue) = self.0.as_mut() else { return Ok(true) };
        let done = queue.flush(sink)?;
        if done {
            self.0 = None; // give the memory back: idle connections hold none
        }
        Ok(done)
    }

    /// Drops everything queued (the connection is going away).
    pub(crate) fn clear(&mut self) {
        self.0 = None;
    }
}

#[derive(Default)]
struct Queue {
    chunks: VecDeque<Chunk>,
    /// Bytes waiting, file ranges included.
    queued: usize,
    /// Bytes of memory held: what `max_output` bounds (file ranges cost none).
    memory: usize,
}

impl Queue {
    fn push(&mut self, chunk: Chunk) {
        self.count_in(&chunk);
        self.chunks.push_back(chunk);
    }

    fn push_urgent(&mut self, mut chunk: Chunk) {
        if let Chunk::Bytes { urgent, .. } = &mut chunk {
            *urgent = true;
        }
        self.count_in(&chunk);
        let started = usize::from(self.chunks.front().is_some_and(Chunk::started));
        let at = started + self.chunks.iter().skip(started).take_while(|c| c.urgent()).count();
        self.chunks.insert(at, chunk);
    }

    fn count_in(&mut self, chunk: &Chunk) {
        self.queued = self.queued.saturating_add(chunk.remaining());
        self.memory = self.memory.saturating_add(chunk.memory());
    }

    fn flush(&mut self, sink: &mut dyn Sink) -> io::Result<bool> {
        while let Some(front) = self.chunks.front_mut() {
            let (before, memory) = (front.remaining(), front.memory());
            let done = front.flush(sink);
            self.queued -= before - front.remaining();
            self.memory -= memory - front.memory();
            if !done? {
                return Ok(false);
            }
            self.chunks.pop_front();
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes at most `room` bytes, then says WouldBlock.
    struct Slow {
        got: Vec<u8>,
        room: usize,
    }

    impl Sink for Slow {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.room).min(3);
            self.got.extend_from_slice(&buf[..n]);
            self.room -= n;
            Ok(n)
        }
        fn send_file(&mut self, _: &File, _: u64, _: usize) -> Option<io::Result<usize>> {
            None
        }
    }

    #[test]
    fn flushes_in_order_across_would_block_and_urgent_skips_only_unstarted() {
        let mut out = Output::default();
        out.push(Chunk::bytes(b"hello ".to_vec()));
        out.push(Chunk::bytes(b"world".to_vec()));
        let mut sink = Slow { got: Vec::new(), room: 4 };
        assert!(!out.flush(&mut sink).expect("no error"));
        assert_eq!(out.queued(), 7);
        out.push_urgent(Chunk::bytes(b"[!]".to_vec())); // "hello " is half-sent: stays first
        out.push_urgent(Chunk::bytes(b"[!!]".to_vec())); // after the earlier urgent one
        sink.room = 100;
        assert!(out.flush(&mut sink).expect("no error"));
        assert_eq!(sink.got, b"hello [!][!!]world");
        assert_eq!(out.queued(), 0);
        assert!(out.is_empty());
    }

    #[test]
    fn files_go_through_hooks_when_sendfile_is_not_possible() {
        let path = std::env::temp_dir().join(format!("output-test-{}", std::process::id()));
        std::fs::write(&path, b"0123456789").expect("temp file");
        let file = File::open(&path).expect("open");
        let mut out = Output::default();
        out.push(Chunk::File { file: Arc::new(file), offset: 2, end: 7, started: false });
        assert_eq!((out.queued(), out.memory()), (5, 0), "a file range holds no memory");
        out.push_urgent(Chunk::bytes(b">".to_vec()));
        let mut sink = Slow { got: Vec::new(), room: 100 };
        assert!(out.flush(&mut sink).expect("no error"));
        std::fs::remove_file(&path).expect("cleanup");
        assert_eq!(sink.got, b">23456");
    }
}
