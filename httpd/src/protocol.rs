//! The `Protocol`: per-connection input buffering, pipelining with backpressure,
//! body draining, the header deadline, and the access log.

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol_server::{Conn, Protocol};

use crate::request::{self, Parsed};
use crate::response::{clf_date, error, Body, Reply};
use crate::{file, Site};

/// Responses queued (not yet taken by the socket) before we stop reading requests:
/// a client that pipelines without reading must not make us hold thousands of open
/// files or megabytes of heads.
const MAX_UNSENT_RESPONSES: usize = 64;
/// Bytes (file ranges included) queued before we stop reading requests.
const MAX_UNSENT_BYTES: usize = 1 << 20;
/// Reads per `on_data` call; the framework calls again after other connections ran.
const READS_PER_TURN: usize = 4;
/// Answers to pipelined requests are gathered into one write up to this size.
const BATCH_BYTES: usize = 64 * 1024;
/// Bytes asked of the socket per read.
const READ_BYTES: usize = 16 * 1024;

thread_local! {
    /// The read buffer, one per worker thread and reused: a buffer on the stack was
    /// zeroed at every turn, which cost more than the requests of a pipelined read.
    static CHUNK: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// The thread's read buffer (a new one if it is in use: nothing keeps it long).
fn take_chunk() -> Vec<u8> {
    let chunk = CHUNK.with(Cell::take);
    if chunk.len() == READ_BYTES {
        chunk
    } else {
        vec![0; READ_BYTES]
    }
}

/// One HTTP/1.x connection. Between requests it holds only the site and (with an
/// access log) the peer's address: the state of a request in progress lives in an
/// `Exchange` that exists while there is one, so an idle keep-alive connection
/// costs a few words, not a request's worth of fields and buffers.
#[derive(Debug)]
pub struct Http {
    site: Arc<Site>,
    /// Only for the access log.
    peer: Option<Box<SocketAddr>>,
    /// The request in progress, if any.
    busy: Option<Box<Exchange>>,
}

/// What a connection holds while a request is in progress (or held back, or its
/// answer is being sent).
#[derive(Debug, Default)]
struct Exchange {
    /// Unanswered input: the start of an incomplete head, or requests held back.
    input: Vec<u8>,
    /// Body bytes of the last request still to read and drop.
    discard: u64,
    /// When the current request's first byte arrived (for the header deadline).
    started: Option<Instant>,
    /// The idle timeout to restore once the header deadline is no longer armed.
    idle_timeout: Option<Duration>,
    /// Responses queued since the output queue was last empty.
    unsent: usize,
    /// Reading stopped until queued output drains (`on_ready`).
    paused: bool,
    /// Answers not yet handed to the connection: the requests of one read go out in
    /// one write (empty, without capacity, between reads).
    out: Vec<u8>,
    /// The connection is closing: nothing more is read or answered.
    done: bool,
}

impl Http {
    /// A connection serving `site`.
    pub fn new(site: Arc<Site>) -> Http {
        Http { site, peer: None, busy: None }
    }

    /// Runs `f` on the request state and keeps it only if it is not back at rest. A
    /// request answered within the turn (the common case) uses a state on the stack:
    /// the heap is touched only for what must outlive the turn.
    fn with_exchange(&mut self, conn: &Conn, f: impl FnOnce(&mut Exchange, &Turn<'_>)) {
        let turn = Turn { site: &self.site, peer: self.peer.as_deref(), conn };
        match self.busy.take() {
            Some(mut ex) => {
                f(&mut ex, &turn);
                self.busy = (!ex.at_rest(conn)).then_some(ex);
            }
            None => {
                let mut ex = Exchange::default();
                f(&mut ex, &turn);
                self.busy = (!ex.at_rest(conn)).then(|| Box::new(ex));
            }
        }
    }
}

/// What the request state's methods need besides the state itself.
struct Turn<'a> {
    site: &'a Site,
    peer: Option<&'a SocketAddr>,
    conn: &'a Conn,
}

impl Exchange {
    /// Nothing in progress, held back or owed: the state can go.
    fn at_rest(&self, conn: &Conn) -> bool {
        !self.done
            && self.input.is_empty()
            && self.out.is_empty()
            && self.discard == 0
            && self.started.is_none()
            && self.idle_timeout.is_none()
            && !self.paused
            && (self.unsent == 0 || conn.queued() == 0)
    }

    /// Reads a bounded number of times and answers what arrived.
    fn pump(&mut self, t: &Turn<'_>) {
        let mut chunk = take_chunk();
        for _ in 0..READS_PER_TURN {
            if self.done || self.paused {
                break;
            }
            match t.conn.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    self.feed(&chunk[..n], t);
                    // A short read emptied the socket, or else the framework calls us
                    // again (`Conn::read`): no read only to see `WouldBlock`.
                    if n < chunk.len() {
                        break;
                    }
                }
            }
        }
        CHUNK.with(|cell| cell.set(chunk));
        if !self.done {
            self.check_deadline(t);
        }
    }

    /// Takes new input: drops body bytes owed, then answers every complete request.
    fn feed(&mut self, mut data: &[u8], t: &Turn<'_>) {
        let skip = usize::try_from(self.discard).unwrap_or(usize::MAX).min(data.len());
        self.discard -= skip as u64;
        data = &data[skip..];
        if data.is_empty() {
            return;
        }
        let scanned = self.input.len();
        self.input.extend_from_slice(data);
        self.answer(scanned, t);
    }

    /// Answers the complete requests at the front of the input. `scanned`: bytes at
    /// the front already known not to end a head (so a slow head costs O(n), not
    /// O(n²), however it is split).
    fn answer(&mut self, mut scanned: usize, t: &Turn<'_>) {
        let input = std::mem::take(&mut self.input);
        let mut used = 0;
        while !self.done && used < input.len() {
            if self.backlogged(t.conn) {
                self.paused = true;
                break;
            }
            let rest = &input[used..];
            if !Exchange::worth_parsing(t.site, rest, scanned) {
                break;
            }
            scanned = 0;
            match request::parse(rest, &t.site.limits) {
                Ok(Parsed::Partial) => break,
                Ok(Parsed::Complete(head, size)) => {
                    let body_here = usize::try_from(head.body).unwrap_or(usize::MAX).min(rest.len() - size);
                    used += size + body_here;
                    self.discard = head.body - body_here as u64;
                    self.head_complete(t.conn);
                    let reply = file::serve(&t.site.root, &t.site.file_cache, &head);
                    self.send(t, reply, || head.line());
                    if self.discard > 0 {
                        used = input.len(); // all that follows is body, dropped as it comes
                    }
                }
                Err(reject) => {
                    let allow: &[(&str, &str)] =
                        if reject.status == 405 { &[("Allow", "GET, HEAD")] } else { &[] };
                    let head_only = rest.starts_with(b"HEAD ");
                    self.send(t, error(reject.status, 1, true, head_only, allow), || first_line(rest));
                }
            }
        }
        if !self.done && used < input.len() {
            self.input = input[used..].to_vec();
            self.started.get_or_insert_with(Instant::now);
        }
        if self.flush(t.conn).is_err() {
            self.finish(t.conn);
        }
    }

    /// Hands the gathered answers to the connection.
    fn flush(&mut self, conn: &Conn) -> Result<(), protocol_server::WriteError> {
        if self.out.is_empty() {
            return Ok(());
        }
        conn.write_move(std::mem::take(&mut self.out))
    }

    /// No more requests on this connection: close once the answers are out.
    fn finish(&mut self, conn: &Conn) {
        self.done = true;
        self.input = Vec::new();
        self.out = Vec::new();
        conn.close();
    }

    /// Whether queued output is large enough to stop answering for now.
    fn backlogged(&mut self, conn: &Conn) -> bool {
        let queued = conn.queued();
        if queued == 0 {
            self.unsent = 0;
        }
        queued > MAX_UNSENT_BYTES || self.unsent >= MAX_UNSENT_RESPONSES
    }

    /// Whether `rest` may hold a whole head (an end marker in the bytes not scanned
    /// before), or is already past a limit the parser must report.
    fn worth_parsing(site: &Site, rest: &[u8], scanned: usize) -> bool {
        let fresh = &rest[scanned.saturating_sub(3).min(rest.len())..];
        let limits = &site.limits;
        ends_head(fresh)
            || rest.len() > limits.max_head
            || (rest.len() > limits.max_line && !rest[..=limits.max_line].contains(&b'\n'))
    }

    /// `line`: the request line for the access log, made only if there is one.
    fn send(&mut self, t: &Turn<'_>, reply: Reply, line: impl FnOnce() -> String) {
        let conn = t.conn;
        if t.site.access_log {
            let line = line();
            let peer = t.peer.map_or_else(|| "-".to_string(), |p| p.ip().to_string());
            log::info!(target: "access", "{peer} - - [{}] \"{line}\" {} {}", clf_date(), reply.status, reply.body_len());
        }
        self.unsent += 1;
        let Reply { head, body, close, .. } = reply;
        if self.out.is_empty() {
            self.out = head;
        } else {
            self.out.extend_from_slice(&head);
        }
        let mut sent = match body {
            Body::Empty => Ok(()),
            Body::Bytes(bytes) => {
                self.out.extend_from_slice(&bytes);
                Ok(())
            }
            Body::Shared { bytes, offset, len } => {
                // Both within the file's length: `send` chose the range from it.
                let start = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
                let end = start.saturating_add(usize::try_from(len).unwrap_or(usize::MAX)).min(bytes.len());
                self.out.extend_from_slice(&bytes[start..end]);
                Ok(())
            }
            Body::File { file, offset, len } => {
                // The head (and the answers gathered before it) leave with the file's
                // first bytes, in full segments.
                let head = std::mem::take(&mut self.out);
                conn.write_corked(head).and_then(|()| conn.send_file(file, offset, Some(len)))
            }
        };
        if close || self.out.len() >= BATCH_BYTES {
            sent = sent.and_then(|()| self.flush(conn));
        }
        if close || sent.is_err() {
            self.finish(conn);
        }
    }

    /// A head arrived whole: the header deadline no longer applies.
    fn head_complete(&mut self, conn: &Conn) {
        self.started = None;
        if let Some(idle) = self.idle_timeout.take() {
            conn.set_timeout(idle);
        }
    }

    /// The slowloris guard. A head still incomplete after the deadline gets 408; until
    /// then the connection's timeout is the deadline, so silence ends it too.
    fn check_deadline(&mut self, t: &Turn<'_>) {
        let Some(started) = self.started.filter(|_| !self.paused) else { return };
        let deadline = t.site.header_timeout;
        if started.elapsed() > deadline {
            self.send(t, error(408, 1, true, false, &[]), || "-".into());
        } else if self.idle_timeout.is_none() {
            self.idle_timeout = Some(t.conn.timeout());
            t.conn.set_timeout(deadline);
        }
    }
}

/// Whether `bytes` hold a blank line (`\n\n` or `\n\r\n`). It stops at the first one:
/// with pipelined requests the rest of the input is the following requests, and
/// scanning all of it for every request made a batch cost O(n²).
fn ends_head(bytes: &[u8]) -> bool {
    let mut at = 0;
    while let Some(i) = bytes[at..].iter().position(|b| *b == b'\n') {
        let after = &bytes[at + i + 1..];
        if after.starts_with(b"\n") || after.starts_with(b"\r\n") {
            return true;
        }
        at += i + 1;
    }
    false
}

fn first_line(buf: &[u8]) -> String {
    let end = buf.iter().position(|b| *b == b'\r' || *b == b'\n').unwrap_or(buf.len()).min(200);
    String::from_utf8_lossy(&buf[..end]).escape_debug().to_string()
}

impl Protocol for Http {
    fn service(&self) -> &'static str {
        "http"
    }

    fn on_open(&mut self, conn: &Conn) {
        // Only the access log wants it: a system call per connection otherwise.
        if self.site.access_log {
            self.peer = conn.peer_addr().ok().map(Box::new);
        }
    }

    fn on_data(&mut self, conn: &Conn) {
        self.with_exchange(conn, |ex, t| ex.pump(t));
    }

    fn on_ready(&mut self, conn: &Conn) {
        // Queued output drained: answer what was held back, then read on.
        if self.busy.as_ref().is_some_and(|ex| ex.paused) {
            self.with_exchange(conn, |ex, t| {
                ex.paused = false;
                ex.unsent = 0;
                ex.answer(0, t);
                ex.pump(t);
            });
        }
    }

    fn ping(&mut self, conn: &Conn) {
        // Idle past the timeout: between requests just close; mid-head, say why.
        match self.busy.as_deref() {
            Some(ex) if !ex.input.is_empty() && !ex.paused => {
                self.with_exchange(conn, |ex, t| ex.send(t, error(408, 1, true, false, &[]), || "-".into()));
            }
            _ => conn.close(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_ends_at_a_blank_line_with_or_without_cr() {
        for (bytes, ends) in [
            (&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], true),
            (b"GET / HTTP/1.1\nHost: x\n\n", true),
            (b"\n\r\n", true),
            (b"GET / HTTP/1.1\r\nHost: x\r\n", false),
            (b"GET / HTTP/1.1\r\nHost: x\r\n\r", false),
            (b"\n", false),
            (b"", false),
        ] {
            assert_eq!(ends_head(bytes), ends, "{:?}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn an_idle_connection_holds_a_few_words() {
        // Site, peer and the request state are pointers; the state goes when at rest.
        assert!(std::mem::size_of::<Http>() <= 3 * std::mem::size_of::<usize>());
    }
}
