//! A connection's queued output: owned and shared buffers and file ranges, flushed
//! in order, several buffers per `writev(2)`.
//!
//! Nothing is held once the queue drains (the deque's buffer is released too), so
//! an idle connection costs no output memory.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice};
use std::sync::Arc;

use bytes::Bytes;

/// Buffers gathered into one `writev(2)`: a subscriber's batch of small messages
/// leaves in one call (Linux takes up to 1,024; a few dozen already amortise it).
const GATHER: usize = 64;

/// Where flushed bytes go: the socket directly, or the connection's read/write hooks.
pub(crate) trait Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize>;
    /// Writes from several buffers in order; by default only the first non-empty one
    /// (hooks that transform bytes take them one at a time).
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match bufs.iter().find(|b| !b.is_empty()) {
            Some(buf) => self.write(buf),
            None => Ok(0),
        }
    }
    /// [`Sink::write`], telling the kernel more follows at once (`MSG_MORE`).
    fn write_more(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write(buf)
    }
    /// Sends up to `len` bytes of `file` from `offset`; `None` if this sink cannot
    /// (hooks that transform bytes), in which case the file is read and written.
    fn send_file(&mut self, file: &File, offset: u64, len: usize) -> Option<io::Result<usize>>;
}

/// Bytes to send: owned by this connection, or shared with others (one encoded
/// message fanned out to many subscribers, each holding a reference).
pub(crate) enum Data {
    Owned(Vec<u8>),
    Shared(Bytes),
}

impl Data {
    fn as_slice(&self) -> &[u8] {
        match self {
            Data::Owned(v) => v,
            Data::Shared(b) => b,
        }
    }
}

pub(crate) enum Chunk {
    /// `more`: what follows is sent right after, so hold these bytes back for a full
    /// segment (a response head before its file, as nginx's `tcp_nopush`).
    Bytes {
        data: Data,
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
        Chunk::Bytes { data: Data::Owned(data), sent: 0, urgent: false, more: false }
    }

    pub(crate) fn shared(data: Bytes) -> Chunk {
        Chunk::Bytes { data: Data::Shared(data), sent: 0, urgent: false, more: false }
    }

    pub(crate) fn bytes_before_more(data: Vec<u8>) -> Chunk {
        Chunk::Bytes { data: Data::Owned(data), sent: 0, urgent: false, more: true }
    }

    /// Whether it holds no byte at all (never worth queueing).
    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    fn remaining(&self) -> usize {
        match self {
            Chunk::Bytes { data, sent, .. } => data.as_slice().len() - sent,
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

    /// The unsent bytes of a plain buffer, which may leave in one `writev` with its
    /// neighbours (not a file range, nor bytes held back for what follows).
    fn gatherable(&self) -> Option<&[u8]> {
        match self {
            Chunk::Bytes { data, sent, more: false, .. } => Some(&data.as_slice()[*sent..]),
            _ => None,
        }
    }

    /// Bytes of memory this chunk holds: a file range holds none (a shared buffer
    /// counts in full: this connection keeps it alive).
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
                Chunk::Bytes { data, sent, more: false, .. } => {
                    retry(|| sink.write(&data.as_slice()[*sent..]))
                }
                Chunk::Bytes { data, sent, more: true, .. } => {
                    retry(|| sink.write_more(&data.as_slice()[*sent..]))
                }
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
        Ok(self.drain(sink)?.is_some())
    }

    /// [`Output::flush`], telling whether the queue drained (`Some`) and, if so,
    /// whether its owner asked to hear of it ([`Output::want_ready`]).
    pub(crate) fn drain(&mut self, sink: &mut dyn Sink) -> io::Result<Option<bool>> {
        let Some(queue) = self.0.as_mut() else { return Ok(Some(false)) };
        if !queue.flush(sink)? {
            return Ok(None);
        }
        let wanted = queue.ready_wanted;
        self.0 = None; // give the memory back: idle connections hold none
        Ok(Some(wanted))
    }

    /// Asks [`Output::drain`] to report the drain of what is queued now (nothing is
    /// recorded for an empty queue: there is no drain to come).
    pub(crate) fn want_ready(&mut self) {
        if let Some(queue) = self.0.as_mut() {
            queue.ready_wanted = true;
        }
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
    /// The owner asked to hear when this queue drains (see `Conn::backlogged`).
    ready_wanted: bool,
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

    /// One `writev` of the plain buffers at the front (at least two); `Ok(false)` if
    /// the socket is full. Whole chunks that went are dropped, a partial one advanced.
    fn flush_gathered(&mut self, sink: &mut dyn Sink) -> io::Result<bool> {
        let slices: Vec<IoSlice<'_>> =
            self.chunks.iter().map_while(Chunk::gatherable).take(GATHER).map(IoSlice::new).collect();
        if slices.is_empty() {
            return Ok(true);
        }
        let mut n = match retry(|| sink.write_vectored(&slices)) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        };
        drop(slices);
        self.queued -= n;
        while n > 0 {
            let front = self.chunks.front_mut().expect("writev wrote no more than the chunks held");
            let left = front.remaining();
            if n < left {
                if let Chunk::Bytes { sent, .. } = front {
                    *sent += n;
                }
                self.memory -= n;
                return Ok(true);
            }
            n -= left;
            self.memory -= left;
            self.chunks.pop_front();
        }
        Ok(true)
    }

    fn count_in(&mut self, chunk: &Chunk) {
        self.queued = self.queued.saturating_add(chunk.remaining());
        self.memory = self.memory.saturating_add(chunk.memory());
    }

    fn flush(&mut self, sink: &mut dyn Sink) -> io::Result<bool> {
        loop {
            let gather =
                self.chunks.len() > 1 && self.chunks.iter().take(2).all(|c| c.gatherable().is_some());
            if gather {
                if !self.flush_gathered(sink)? {
                    return Ok(false);
                }
                continue;
            }
            let Some(front) = self.chunks.front_mut() else { return Ok(true) };
            let (before, memory) = (front.remaining(), front.memory());
            let done = front.flush(sink);
            self.queued -= before - front.remaining();
            self.memory -= memory - front.memory();
            if !done? {
                return Ok(false);
            }
            self.chunks.pop_front();
        }
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

    /// Takes up to `room` bytes per call across every buffer of a `writev`, and counts
    /// the calls.
    struct Gathering {
        got: Vec<u8>,
        room: usize,
        calls: usize,
    }

    impl Sink for Gathering {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            let mut n = 0;
            for buf in bufs {
                let take = buf.len().min(self.room - n);
                self.got.extend_from_slice(&buf[..take]);
                n += take;
            }
            if n == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        }
        fn send_file(&mut self, _: &File, _: u64, _: usize) -> Option<io::Result<usize>> {
            None
        }
    }

    #[test]
    fn buffers_leave_together_in_one_writev_and_a_partial_one_resumes_where_it_stopped() {
        let shared = Bytes::from_static(b"shared,");
        let mut out = Output::default();
        for i in 0..100 {
            out.push(Chunk::shared(shared.clone()));
            out.push(Chunk::bytes(format!("{i};").into_bytes()));
        }
        let expected: Vec<u8> = (0..100).flat_map(|i| format!("shared,{i};").into_bytes()).collect();
        assert_eq!((out.queued(), out.memory()), (expected.len(), expected.len()));
        let mut sink = Gathering { got: Vec::new(), room: 1000, calls: 0 };
        assert!(out.flush(&mut sink).expect("no error"));
        assert_eq!(sink.got, expected, "order kept across shared and owned buffers");
        // 200 chunks, 64 per call; the 1,000-byte room splits chunks mid-way too.
        assert!(sink.calls <= 6, "{} writes for 200 buffers", sink.calls);

        for _ in 0..3 {
            out.push(Chunk::bytes(b"abcdef".to_vec()));
        }
        let mut sink = Gathering { got: Vec::new(), room: 8, calls: 0 };
        assert!(out.drain(&mut sink).expect("no error").is_some());
        assert_eq!(sink.got, b"abcdefabcdefabcdef");
        assert_eq!(out.queued(), 0);
    }

    #[test]
    fn a_drain_reports_whether_it_was_asked_for() {
        let mut out = Output::default();
        out.want_ready(); // nothing queued: no drain to report
        out.push(Chunk::bytes(b"x".to_vec()));
        let mut sink = Gathering { got: Vec::new(), room: 0, calls: 0 };
        assert_eq!(out.drain(&mut sink).expect("no error"), None, "socket full: not drained");
        out.want_ready();
        sink.room = 10;
        assert_eq!(out.drain(&mut sink).expect("no error"), Some(true));
        out.push(Chunk::bytes(b"y".to_vec()));
        assert_eq!(out.drain(&mut sink).expect("no error"), Some(false), "a new queue starts unasked");
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
