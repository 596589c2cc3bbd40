//! Parsing one request head with `httparse`, and every check that decides whether
//! it can be served: limits, method, version, framing (no request smuggling).
//!
//! Pure functions of bytes, so the table and fuzz tests drive them directly.

use crate::Limits;

/// A status the parser answers with. The connection always closes after it: once a
/// head is refused, where the next request starts is unknown or untrusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    /// The response status.
    pub status: u16,
}

impl Reject {
    fn close(status: u16) -> Reject {
        Reject { status }
    }
}

/// What the head asks for, once it parsed and passed every check. It borrows from
/// the input: a request costs no allocation to parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head<'a> {
    /// `GET` or `HEAD`.
    pub method: Method,
    /// The request target's path, still percent-encoded, without the query.
    pub path: &'a str,
    /// The query, with its `?`, or empty.
    pub query: &'a str,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
    /// Body bytes to read and drop before the next request.
    pub body: u64,
    /// `If-None-Match`, `If-Modified-Since`, `Range`, `If-Range`, as given.
    pub if_none_match: Option<&'a str>,
    /// See [`Head::if_none_match`].
    pub if_modified_since: Option<&'a str>,
    /// See [`Head::if_none_match`].
    pub range: Option<&'a str>,
    /// See [`Head::if_none_match`].
    pub if_range: Option<&'a str>,
    /// The request target as received (path and query), for the access log.
    pub target: &'a str,
}

impl Head<'_> {
    /// The request line as received, for the access log (made only when logging).
    pub fn line(&self) -> String {
        let method = match self.method {
            Method::Get => "GET",
            Method::Head => "HEAD",
        };
        format!("{method} {} HTTP/1.{}", self.target, self.minor)
    }
}

/// The two methods a static-file server serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Headers and body.
    Get,
    /// Headers only.
    Head,
}

/// What [`parse`] found at the front of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A request head of this many bytes.
    Complete(Head<'a>, usize),
    /// Not a whole head yet.
    Partial,
}

/// The most header fields any configuration accepts (`Limits::max_headers` is capped).
pub const MAX_HEADERS: usize = 128;

/// Methods we know but do not allow (405 with `Allow`); anything else is 501.
const KNOWN: [&str; 7] = ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"];

/// Parses the request head at the front of `buf` and checks it.
pub fn parse<'a>(buf: &'a [u8], limits: &Limits) -> Result<Parsed<'a>, Reject> {
    check_line_length(buf, limits)?;
    // On the stack: no allocation per request. Uninitialised: zeroing 4 KiB of
    // headers cost more than parsing a short request.
    let mut headers = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let size = match req.parse_with_uninit_headers(buf, &mut headers[..limits.max_headers.min(MAX_HEADERS)]) {
        Ok(httparse::Status::Complete(size)) => size,
        Ok(httparse::Status::Partial) if buf.len() > limits.max_head => return Err(Reject::close(431)),
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(Reject::close(431)),
        Err(httparse::Error::Version) => return Err(Reject::close(version_status(buf))),
        Err(_) => return Err(Reject::close(400)),
    };
    if size > limits.max_head {
        return Err(Reject::close(431));
    }
    let head = check(&req, limits)?;
    Ok(Parsed::Complete(head, size))
}

/// A well-formed request line naming another version is 505; a malformed one (an
/// extra space in the target, a lowercase `http/`) is 400.
fn version_status(buf: &[u8]) -> u16 {
    let end = buf.iter().position(|b| *b == b'\r' || *b == b'\n').unwrap_or(buf.len());
    let tokens: Vec<&[u8]> = buf[..end].split(|b| *b == b' ').collect();
    match tokens.as_slice() {
        [_, _, version] if version.starts_with(b"HTTP/") => 505,
        _ => 400,
    }
}

/// 414 for a request line longer than the limit, complete or not.
fn check_line_length(buf: &[u8], limits: &Limits) -> Result<(), Reject> {
    let line = buf.iter().position(|b| *b == b'\n').unwrap_or(buf.len());
    if line > limits.max_line {
        return Err(Reject::close(414));
    }
    Ok(())
}

fn check<'a>(req: &httparse::Request<'_, 'a>, limits: &Limits) -> Result<Head<'a>, Reject> {
    let method_name = req.method.ok_or(Reject::close(400))?;
    let target = req.path.ok_or(Reject::close(400))?;
    let minor = req.version.ok_or(Reject::close(400))?;
    let method = match method_name {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        m if KNOWN.contains(&m) => return Err(Reject::close(405)),
        _ => return Err(Reject::close(501)),
    };
    let (path, query) = split_target(target)?;
    let mut fields = Fields::default();
    for h in req.headers.iter() {
        fields.add(h)?;
    }
    if (minor == 1 && fields.hosts != 1) || fields.hosts > 1 {
        return Err(Reject::close(400)); // RFC 9112 §3.2: exactly one Host in 1.1
    }
    if fields.transfer_encoding {
        // With Content-Length it is smuggling; alone, a chunked body on GET/HEAD we
        // do not decode. Either way the framing is not ours to trust: answer, close.
        return Err(Reject::close(400));
    }
    let body = fields.content_length.unwrap_or(0);
    if body > limits.max_body {
        return Err(Reject::close(413));
    }
    let keep_alive = match (minor, fields.connection_close, fields.connection_keep_alive) {
        (_, true, _) => false,
        (1, false, _) => true,
        (_, false, keep) => keep,
    };
    // A client waiting for "100 Continue" may never send the body we would drop:
    // answer at once and close rather than guess where the next request starts.
    let keep_alive = keep_alive && !(fields.expect_continue && body > 0);
    Ok(Head {
        method,
        path,
        query,
        minor,
        keep_alive,
        body,
        if_none_match: fields.if_none_match,
        if_modified_since: fields.if_modified_since,
        range: fields.range,
        if_range: fields.if_range,
        target,
    })
}

/// Origin form `/path?query`, or absolute form `http://host/path?query` (RFC 9112
/// §3.2.2: servers must accept it). Anything else (`*`, authority form) is 400.
fn split_target(target: &str) -> Result<(&str, &str), Reject> {
    let origin = if target.starts_with('/') {
        target
    } else if let Some(rest) = strip_scheme(target) {
        rest.find('/').map_or("/", |i| &rest[i..])
    } else {
        return Err(Reject::close(400));
    };
    let (path, query) = origin.split_at(origin.find('?').unwrap_or(origin.len()));
    if path.contains('#') {
        return Err(Reject::close(400)); // a fragment is never sent
    }
    Ok((path, query))
}

/// `http://` or `https://`, in any case (schemes are case-insensitive).
fn strip_scheme(target: &str) -> Option<&str> {
    ["http://", "https://"].iter().find_map(|scheme| {
        let head = target.get(..scheme.len())?;
        head.eq_ignore_ascii_case(scheme).then(|| &target[scheme.len()..])
    })
}

#[derive(Default)]
struct Fields<'a> {
    hosts: usize,
    content_length: Option<u64>,
    transfer_encoding: bool,
    connection_close: bool,
    connection_keep_alive: bool,
    expect_continue: bool,
    if_none_match: Option<&'a str>,
    if_modified_since: Option<&'a str>,
    range: Option<&'a str>,
    if_range: Option<&'a str>,
}

impl<'a> Fields<'a> {
    fn add(&mut self, h: &httparse::Header<'a>) -> Result<(), Reject> {
        let text = || std::str::from_utf8(h.value).map(str::trim).map_err(|_| Reject::close(400));
        // Compared in place: no lowercase copy of every header name of every request.
        let is = |name: &str| h.name.eq_ignore_ascii_case(name);
        if is("host") {
            self.hosts += 1;
        } else if is("content-length") {
            self.content_length(text()?)?;
        } else if is("transfer-encoding") {
            self.transfer_encoding = true;
        } else if is("connection") {
            for token in text()?.split(',').map(str::trim) {
                self.connection_close |= token.eq_ignore_ascii_case("close");
                self.connection_keep_alive |= token.eq_ignore_ascii_case("keep-alive");
            }
        } else if is("expect") {
            self.expect_continue |= text()?.eq_ignore_ascii_case("100-continue");
        } else if is("if-none-match") {
            self.if_none_match = Some(text()?);
        } else if is("if-modified-since") {
            self.if_modified_since = Some(text()?);
        } else if is("range") {
            self.range = Some(text()?);
        } else if is("if-range") {
            self.if_range = Some(text()?);
        }
        Ok(())
    }

    /// Digits only (no sign, no list); a repeat must carry the same value.
    fn content_length(&mut self, value: &str) -> Result<(), Reject> {
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Reject::close(400));
        }
        let n: u64 = value.parse().map_err(|_| Reject::close(400))?;
        match self.content_length {
            Some(seen) if seen != n => Err(Reject::close(400)),
            _ => {
                self.content_length = Some(n);
                Ok(())
            }
        }
    }
}
