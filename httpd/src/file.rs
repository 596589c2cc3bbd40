//! Serving a file: validators, conditional requests (304) and single byte ranges
//! (206/416), per RFC 9110 §13 and §14.

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::cache::{Content, FileCache, OpenFile};
use crate::path::{resolve, Refused, Target};
use crate::request::{Head, Method};
use crate::response::{decimal, error, head, head_rendered, render, Body, Reply};

/// Answers a parsed GET/HEAD request from the files under `root` (canonical),
/// through `cache` (what a path resolved to, kept open for a while).
pub fn serve(root: &Path, cache: &FileCache, req: &Head<'_>) -> Reply {
    if let Some(hit) = cache.get(req.path) {
        return send(req, &hit);
    }
    let close = !req.keep_alive;
    let head_only = req.method == Method::Head;
    let fail = |status: u16| error(status, req.minor, close, head_only, &[]);
    match resolve(root, req.path) {
        Err(Refused::Bad) => error(400, req.minor, true, head_only, &[]),
        Err(Refused::Forbidden) => fail(403),
        Err(Refused::Missing) => fail(404),
        Ok(Target::AddSlash(path)) => {
            let location = format!("{path}{}", req.query);
            error(301, req.minor, close, head_only, &[("Location", &location)])
        }
        Ok(Target::File(path)) => match OpenFile::open(path) {
            Ok(Some(file)) => {
                let file = Arc::new(file);
                cache.insert(req.path, Arc::clone(&file));
                send(req, &file)
            }
            Ok(None) => fail(404),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => fail(403),
            // Out of descriptors is our problem, not a missing file.
            Err(e) if crate::sys::is_out_of_descriptors(&e) => fail(503),
            Err(_) => fail(404),
        },
    }
}

/// The entity tag: modification time and length, as nginx makes it.
pub(crate) fn etag(len: u64, modified: SystemTime) -> String {
    format!("\"{:x}-{len:x}\"", secs(modified))
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn send(req: &Head<'_>, file: &OpenFile) -> Reply {
    let (len, modified) = (file.len, file.modified);
    let close = !req.keep_alive;
    let tag = file.etag.as_str();
    let validators = [("ETag", tag), ("Last-Modified", file.last_modified.as_str())];
    if not_modified(req, tag, modified) {
        return Reply {
            status: 304,
            head: head(304, req.minor, close, &validators),
            body: Body::Empty,
            close,
        };
    }
    let (status, offset, count) = match chosen_range(req, tag, modified, len) {
        Chosen::Whole => (200, 0, len),
        Chosen::Part(start, end) => (206, start, end - start + 1),
        Chosen::Unsatisfiable => {
            let range = format!("bytes */{len}");
            return error(416, req.minor, close, req.method == Method::Head, &[("Content-Range", &range)]);
        }
    };
    let head = if status == 200 {
        // The fields of a whole file do not change while it is cached: rendered once.
        let whole = file.whole.get_or_init(|| render(&fields(file, decimal(len, &mut [0; 20]), "")[..5]));
        head_rendered(200, req.minor, close, whole)
    } else {
        let range = format!("bytes {offset}-{}/{len}", offset + count.saturating_sub(1));
        head(status, req.minor, close, &fields(file, decimal(count, &mut [0; 20]), &range))
    };
    let body = if req.method == Method::Head || count == 0 {
        Body::Empty
    } else {
        match &file.content {
            Content::Bytes(bytes) => Body::Shared { bytes: Arc::clone(bytes), offset, len: count },
            Content::File(open) => Body::File { file: Arc::clone(open), offset, len: count },
        }
    };
    Reply { status, head, body, close }
}

/// A 200's or 206's fields, `Content-Range` last (a 200 leaves it out).
fn fields<'a>(file: &'a OpenFile, count: &'a str, range: &'a str) -> [(&'static str, &'a str); 6] {
    [
        ("Content-Type", file.content_type.as_str()),
        ("Content-Length", count),
        ("Accept-Ranges", "bytes"),
        ("ETag", file.etag.as_str()),
        ("Last-Modified", file.last_modified.as_str()),
        ("Content-Range", range),
    ]
}

/// `If-None-Match` (weak comparison) wins over `If-Modified-Since` (RFC 9110 §13.2.2).
fn not_modified(req: &Head<'_>, tag: &str, modified: SystemTime) -> bool {
    if let Some(list) = req.if_none_match {
        return list.trim() == "*" || list.split(',').any(|t| weak(t.trim()) == weak(tag));
    }
    let Some(since) = req.if_modified_since.and_then(|d| httpdate::parse_http_date(d).ok()) else {
        return false;
    };
    // A date in the future is invalid (RFC 9110 §13.1.3): ignore it.
    since <= SystemTime::now() && secs(modified) <= secs(since)
}

fn weak(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

enum Chosen {
    Whole,
    Part(u64, u64),
    Unsatisfiable,
}

/// A single `bytes=` range, honoured only if `If-Range` (when sent) still matches.
/// Several ranges or a malformed one are ignored (RFC 9110 §14.2 allows it): the whole
/// file is sent.
fn chosen_range(req: &Head<'_>, tag: &str, modified: SystemTime, len: u64) -> Chosen {
    let Some(range) = req.range.filter(|_| req.method == Method::Get) else {
        return Chosen::Whole;
    };
    if let Some(cond) = req.if_range {
        let fresh = if cond.starts_with('"') {
            cond == tag // strong comparison; a weak tag never matches
        } else {
            httpdate::parse_http_date(cond).is_ok_and(|d| secs(d) == secs(modified))
        };
        if !fresh {
            return Chosen::Whole;
        }
    }
    let unit_ok = range.len() > 6 && range.is_char_boundary(6) && range[..6].eq_ignore_ascii_case("bytes=");
    let Some(spec) = unit_ok.then(|| &range[6..]).filter(|s| !s.contains(',')) else { return Chosen::Whole };
    let Some((first, last)) = spec.trim().split_once('-') else { return Chosen::Whole };
    // Digits only; a number too large for u64 is past any end, so it saturates.
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse::<u64>().unwrap_or(u64::MAX))
    };
    match (number(first), number(last), first.is_empty()) {
        (Some(start), _, _) if start >= len => Chosen::Unsatisfiable,
        (Some(start), None, _) if last.is_empty() => Chosen::Part(start, len - 1),
        (Some(start), Some(end), _) if start <= end => Chosen::Part(start, end.min(len - 1)),
        (None, Some(0), true) => Chosen::Unsatisfiable,
        (None, Some(suffix), true) if len == 0 => {
            let _ = suffix;
            Chosen::Unsatisfiable
        }
        (None, Some(suffix), true) => Chosen::Part(len - suffix.min(len), len - 1),
        _ => Chosen::Whole,
    }
}
