//! Response heads: status lines, the common headers, error pages, and dates.

use std::cell::RefCell;
use std::fs::File;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A response ready to queue: its head, then maybe a body.
#[derive(Debug)]
pub struct Reply {
    /// The status code (for the access log).
    pub status: u16,
    /// Status line and header fields, with the blank line.
    pub head: Vec<u8>,
    /// What follows the head.
    pub body: Body,
    /// Close the connection once this is sent.
    pub close: bool,
}

/// A response body.
#[derive(Debug)]
pub enum Body {
    /// None (HEAD, 304, or an empty file).
    Empty,
    /// A small generated page.
    Bytes(Vec<u8>),
    /// `len` bytes from `offset` of a small file held in memory (the open-file cache).
    Shared {
        /// The whole file.
        bytes: Arc<[u8]>,
        /// First byte to send.
        offset: u64,
        /// Bytes to send.
        len: u64,
    },
    /// `len` bytes of a file from `offset`, sent with `sendfile(2)`.
    File {
        /// The open file (shared with the open-file cache).
        file: Arc<File>,
        /// First byte to send.
        offset: u64,
        /// Bytes to send.
        len: u64,
    },
}

impl Reply {
    /// Bytes of body this reply sends (for the access log).
    pub fn body_len(&self) -> u64 {
        match &self.body {
            Body::Empty => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::Shared { len, .. } | Body::File { len, .. } => *len,
        }
    }
}

/// The reason phrase of the statuses this server sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        301 => "Moved Permanently",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        501 => "Not Implemented",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// The server's name in the `Server` field.
pub const SERVER: &str = concat!("httpd-rs/", env!("CARGO_PKG_VERSION"));

/// Builds a head: status line, `Server`, `Date`, the given fields, and `Connection`
/// when it differs from the version's default.
///
/// Appended piece by piece, not with `write!`: the formatting machinery cost more
/// than the rest of a pipelined request's answer.
pub fn head(status: u16, minor: u8, close: bool, fields: &[(&str, &str)]) -> Vec<u8> {
    let mut h = Vec::with_capacity(256);
    start(&mut h, status);
    for (name, value) in fields {
        push_field(&mut h, name, value);
    }
    end(&mut h, minor, close);
    h
}

/// [`head`] with fields already rendered by [`render`]: what does not change from
/// one response to the next is written once.
pub fn head_rendered(status: u16, minor: u8, close: bool, fields: &[u8]) -> Vec<u8> {
    let mut h = Vec::with_capacity(256);
    start(&mut h, status);
    h.extend_from_slice(fields);
    end(&mut h, minor, close);
    h
}

/// Header fields as [`head`] writes them, for [`head_rendered`].
pub fn render(fields: &[(&str, &str)]) -> Box<[u8]> {
    let mut h = Vec::new();
    for (name, value) in fields {
        push_field(&mut h, name, value);
    }
    h.into_boxed_slice()
}

fn start(h: &mut Vec<u8>, status: u16) {
    let digits =
        [b'0' + (status / 100 % 10) as u8, b'0' + (status / 10 % 10) as u8, b'0' + (status % 10) as u8];
    h.extend_from_slice(b"HTTP/1.1 ");
    h.extend_from_slice(&digits);
    h.push(b' ');
    h.extend_from_slice(reason(status).as_bytes());
    h.extend_from_slice(b"\r\nServer: ");
    h.extend_from_slice(SERVER.as_bytes());
    h.extend_from_slice(b"\r\nDate: ");
    with_date(|d| h.extend_from_slice(d.as_bytes()));
    h.extend_from_slice(b"\r\n");
}

fn push_field(h: &mut Vec<u8>, name: &str, value: &str) {
    for part in [name, ": ", value, "\r\n"] {
        h.extend_from_slice(part.as_bytes());
    }
}

fn end(h: &mut Vec<u8>, minor: u8, close: bool) {
    match (close, minor) {
        (true, _) => h.extend_from_slice(b"Connection: close\r\n"),
        (false, 0) => h.extend_from_slice(b"Connection: keep-alive\r\n"),
        (false, _) => {}
    }
    h.extend_from_slice(b"\r\n");
}

/// `n` in decimal, written into `buf` (without the formatting machinery).
pub fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &str {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[at..]).unwrap_or("0")
}

/// A small HTML error page (`head_only` for HEAD: fields without the body).
pub fn error(status: u16, minor: u8, close: bool, head_only: bool, extra: &[(&str, &str)]) -> Reply {
    let page =
        format!("<!doctype html><title>{status} {r}</title><h1>{status} {r}</h1>\n", r = reason(status));
    let len = page.len().to_string();
    let mut fields = vec![("Content-Type", "text/html; charset=utf-8"), ("Content-Length", len.as_str())];
    fields.extend_from_slice(extra);
    let body = if head_only { Body::Empty } else { Body::Bytes(page.into_bytes()) };
    Reply { status, head: head(status, minor, close, &fields), body, close }
}

/// Runs `f` with the current `Date` value, formatted at most once a second per thread.
pub fn with_date<R>(f: impl FnOnce(&str) -> R) -> R {
    thread_local!(static DATE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) });
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs || cached.1.is_empty() {
            *cached = (secs, httpdate::fmt_http_date(now));
        }
        f(&cached.1)
    })
}

/// Common Log Format time: `10/Oct/2000:13:55:36 +0000`, rearranged from the
/// IMF-fixdate `Tue, 10 Oct 2000 13:55:36 GMT`.
pub fn clf_date() -> String {
    with_date(|d| {
        let p: Vec<&str> = d.split(' ').collect();
        match p.as_slice() {
            [_, day, month, year, time, _] => format!("{day}/{month}/{year}:{time} +0000"),
            _ => d.to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_carry_the_required_fields_and_connection_only_when_needed() {
        let h = String::from_utf8(head(200, 1, false, &[("Content-Length", "5")])).expect("ascii");
        assert!(h.starts_with("HTTP/1.1 200 OK\r\nServer: httpd-rs/"));
        assert!(h.contains("\r\nDate: ") && h.contains(" GMT\r\n"));
        assert!(h.ends_with("Content-Length: 5\r\n\r\n"), "{h}");
        let h10 = String::from_utf8(head(200, 0, false, &[])).expect("ascii");
        assert!(h10.contains("Connection: keep-alive\r\n"));
        let closing = String::from_utf8(head(400, 1, true, &[])).expect("ascii");
        assert!(closing.contains("Connection: close\r\n"));
        let fields = [("Content-Length", "5"), ("ETag", "\"x\"")];
        let (plain, rendered) = (head(206, 0, true, &fields), head_rendered(206, 0, true, &render(&fields)));
        // The Date may tick between the two.
        assert_eq!(plain.len(), rendered.len());
        assert!(rendered.starts_with(b"HTTP/1.1 206 Partial Content\r\n"));
        assert_eq!(clf_date().len(), "10/Oct/2000:13:55:36 +0000".len());
    }

    #[test]
    fn decimals() {
        for n in [0, 7, 10, 13, 99, 100, 16384, 1 << 40, u64::MAX] {
            assert_eq!(decimal(n, &mut [0; 20]), n.to_string());
        }
    }
}
