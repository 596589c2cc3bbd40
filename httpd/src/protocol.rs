//! The `Protocol`: per-connection input buffering, pipelining, body draining,
//! the header deadline, and the access log.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use protocol_server::{Conn, Protocol};

use crate::request::{self, Parsed};
use crate::response::{clf_date, error, Body, Reply};
use crate::{file, Site};

/// One HTTP/1.x connection. Holds no buffer between requests: the input buffer
/// exists only while a request head is incomplete.
#[derive(Debug)]
pub struct Http {
    site: Arc<Site>,
    /// The start of an incomplete request head.
    partial: Vec<u8>,
    /// Body bytes of the last request still to read and drop.
    discard: u64,
    /// When the current request's first byte arrived (for the header deadline).
    started: Option<Instant>,
    peer: Option<SocketAddr>,
    done: bool,
}

impl Http {
    /// A connection serving `site`.
    pub fn new(site: Arc<Site>) -> Http {
        Http { site, partial: Vec::new(), discard: 0, started: None, peer: None, done: false }
    }

    /// Takes new input: drops body bytes owed, then answers every complete request.
    fn feed(&mut self, mut data: &[u8], conn: &Conn) {
        let skip = usize::try_from(self.discard).unwrap_or(usize::MAX).min(data.len());
        self.discard -= skip as u64;
        data = &data[skip..];
        if data.is_empty() {
            return;
        }
        if self.partial.is_empty() {
            let used = self.answer(data, conn);
            self.keep(&data[used..]);
        } else {
            let mut buf = std::mem::take(&mut self.partial);
            buf.extend_from_slice(data);
            let used = self.answer(&buf, conn);
            self.keep(&buf[used..]);
        }
    }

    fn keep(&mut self, rest: &[u8]) {
        self.partial = rest.to_vec(); // empty: no allocation, nothing held while idle
        if self.partial.is_empty() {
            self.started = None;
        } else if self.started.is_none() {
            self.started = Some(Instant::now());
        }
    }

    /// Answers the complete requests at the front of `buf`; returns the bytes used.
    fn answer(&mut self, buf: &[u8], conn: &Conn) -> usize {
        let mut used = 0;
        while !self.done && used < buf.len() {
            let rest = &buf[used..];
            match request::parse(rest, &self.site.limits) {
                Ok(Parsed::Partial) => break,
                Ok(Parsed::Complete(head, size)) => {
                    let body_here = usize::try_from(head.body).unwrap_or(usize::MAX).min(rest.len() - size);
                    used += size + body_here;
                    self.discard = head.body - body_here as u64;
                    self.started = None;
                    let reply = file::serve(&self.site.root, &head);
                    self.send(conn, reply, &head.line);
                    if self.discard > 0 {
                        break; // the rest of the input is body, dropped as it comes
                    }
                }
                Err(reject) => {
                    let allow: &[(&str, &str)] =
                        if reject.status == 405 { &[("Allow", "GET, HEAD")] } else { &[] };
                    let line = first_line(rest);
                    self.send(conn, error(reject.status, 1, true, false, allow), &line);
                    return buf.len();
                }
            }
        }
        if self.done {
            return buf.len();
        }
        used
    }

    fn send(&mut self, conn: &Conn, reply: Reply, line: &str) {
        if self.site.access_log {
            let peer = self.peer.map_or_else(|| "-".to_string(), |p| p.ip().to_string());
            log::info!(target: "access", "{peer} - - [{}] \"{line}\" {} {}", clf_date(), reply.status, reply.body_len());
        }
        let Reply { mut head, body, close, .. } = reply;
        let sent = match body {
            Body::Empty => conn.write_move(head),
            Body::Bytes(bytes) => {
                head.extend_from_slice(&bytes);
                conn.write_move(head)
            }
            Body::File { file, offset, len } => {
                conn.write_move(head).and_then(|()| conn.send_file(file, offset, Some(len)))
            }
        };
        if close || sent.is_err() {
            self.done = true;
            conn.close();
        }
    }

    /// The slowloris guard: a head still incomplete after the deadline gets 408.
    fn check_deadline(&mut self, conn: &Conn) {
        if self.started.is_some_and(|t| t.elapsed() > self.site.header_timeout) {
            self.send(conn, error(408, 1, true, false, &[]), "-");
            self.partial = Vec::new();
        }
    }
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
        self.peer = conn.peer_addr().ok();
    }

    fn on_data(&mut self, conn: &Conn) {
        let mut chunk = [0u8; 16 * 1024];
        while !self.done {
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => self.feed(&chunk[..n], conn),
            }
        }
        if !self.done {
            self.check_deadline(conn);
        }
    }

    fn ping(&mut self, conn: &Conn) {
        // Idle past the timeout: between requests just close; mid-head, say why.
        if self.partial.is_empty() {
            conn.close();
        } else {
            self.send(conn, error(408, 1, true, false, &[]), "-");
        }
    }
}
