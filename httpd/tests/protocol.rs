//! HTTP semantics over real sockets: curl, pipelining, keep-alive rules (a close is
//! an EOF or reset from the server, never our timeout), conditional and range
//! requests, HEAD, the open-file cache. Backpressure on pipelining is in
//! `backpressure.rs`.

mod util;

use std::io::Write;
use std::process::Command;

use util::{exchange, read_response, start, tool, Running};

/// Runs curl with `args` against `path`; returns the status and the dumped head+body.
fn curl(running: &Running, path: &str, args: &[&str]) -> (u16, String, Vec<u8>) {
    let out = Command::new(tool("curl"))
        .args(["-s", "-D", "-", "--path-as-is", "--max-time", "10"])
        .args(args)
        .arg(running.url(path))
        .output()
        .expect("curl runs");
    assert!(out.status.success(), "curl failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = out.stdout;
    let split = text.windows(4).position(|w| w == b"\r\n\r\n").expect("a head") + 4;
    let head = String::from_utf8_lossy(&text[..split]).to_string();
    let status = head[9..12].parse().expect("a status");
    (status, head, text[split..].to_vec())
}

fn field(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_string())
    })
}

#[test]
fn curl_gets_index_file_304_206_and_404() {
    let running = start();
    let (status, head, body) = curl(&running, "/", &[]);
    assert_eq!(status, 200);
    assert_eq!(field(&head, "content-type").as_deref(), Some("text/html"));
    assert!(String::from_utf8_lossy(&body).contains("index"));
    for name in ["date", "server", "content-length", "last-modified", "etag"] {
        assert!(field(&head, name).is_some(), "{name} missing in\n{head}");
    }

    let (status, head, body) = curl(&running, "/hello.txt", &[]);
    assert_eq!((status, body.as_slice()), (200, &b"Hello, World!"[..]));
    assert_eq!(field(&head, "content-length").as_deref(), Some("13"));
    assert_eq!(field(&head, "content-type").as_deref(), Some("text/plain"));
    let etag = field(&head, "etag").expect("an ETag");
    let modified = field(&head, "last-modified").expect("a Last-Modified");

    let (status, _, body) = curl(&running, "/hello.txt", &["-H", &format!("If-None-Match: {etag}")]);
    assert_eq!((status, body.len()), (304, 0));
    let (status, _, _) = curl(&running, "/hello.txt", &["-H", &format!("If-Modified-Since: {modified}")]);
    assert_eq!(status, 304);
    let (status, _, _) = curl(&running, "/hello.txt", &["-H", "If-None-Match: \"other\""]);
    assert_eq!(status, 200);

    let (status, head, body) = curl(&running, "/hello.txt", &["-H", "Range: bytes=7-11"]);
    assert_eq!((status, body.as_slice()), (206, &b"World"[..]));
    assert_eq!(field(&head, "content-range").as_deref(), Some("bytes 7-11/13"));
    let (status, _, body) = curl(&running, "/hello.txt", &["-H", "Range: bytes=-6"]);
    assert_eq!((status, body.as_slice()), (206, &b"World!"[..]));
    let (status, head, _) = curl(&running, "/hello.txt", &["-H", "Range: bytes=13-"]);
    assert_eq!(status, 416);
    assert_eq!(field(&head, "content-range").as_deref(), Some("bytes */13"));
    let (status, _, body) =
        curl(&running, "/hello.txt", &["-H", "Range: bytes=0-1", "-H", "If-Range: \"stale\""]);
    assert_eq!((status, body.len()), (200, 13), "a stale If-Range gets the whole file");

    let (status, head, _) = curl(&running, "/sub", &[]);
    assert_eq!(status, 301);
    assert_eq!(field(&head, "location").as_deref(), Some("/sub/"));
    let (status, head, _) = curl(&running, "//evil.example/..//sub", &[]);
    assert_eq!(status, 301);
    assert_eq!(field(&head, "location").as_deref(), Some("/sub/"), "never a redirect to another host");
    let (status, _, body) = curl(&running, "/hello.txt", &["-H", "Range: bytes=7-99999999999999999999999"]);
    assert_eq!((status, body.as_slice()), (206, &b"World!"[..]), "a huge last-pos means to the end");
    let (status, _, body) = curl(&running, "/sub/", &[]);
    assert_eq!((status, body.as_slice()), (200, &b"sub index\n"[..]));
    let (status, head, _) = curl(&running, "/missing.txt", &[]);
    assert_eq!(status, 404);
    assert_eq!(field(&head, "content-type").as_deref(), Some("text/html; charset=utf-8"));
    running.stop();
}

#[test]
fn one_hundred_pipelined_requests_get_one_hundred_responses_in_order() {
    let running = start();
    let mut batch = Vec::new();
    for i in 0..100 {
        let path = if i % 2 == 0 { "/hello.txt" } else { "/4k.bin" };
        batch.extend_from_slice(format!("GET {path}?n={i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    }
    let mut s = running.connect();
    s.write_all(&batch).expect("one write");
    for i in 0..100 {
        let r = read_response(&mut s, false).unwrap_or_else(|| panic!("response {i} missing"));
        assert_eq!(r.status, 200);
        let want = if i % 2 == 0 { 13 } else { 4096 };
        assert_eq!(r.body.len(), want, "response {i} out of order");
    }
    running.stop();
}

#[test]
fn keep_alive_rules_and_head() {
    let running = start();
    // HTTP/1.0 closes unless asked; asked, it says keep-alive.
    let mut s = running.connect();
    s.write_all(b"GET /hello.txt HTTP/1.0\r\n\r\n").expect("write");
    let r = read_response(&mut s, false).expect("a response");
    assert_eq!(r.header("connection").as_deref(), Some("close"));
    util::assert_closed(&mut s, "HTTP/1.0 without keep-alive");
    let mut s = running.connect();
    s.write_all(b"GET /hello.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /hello.txt HTTP/1.0\r\n\r\n")
        .expect("write");
    let r = read_response(&mut s, false).expect("first");
    assert_eq!(r.header("connection").as_deref(), Some("keep-alive"));
    assert_eq!(read_response(&mut s, false).expect("second on the same connection").status, 200);
    // HTTP/1.1 Connection: close is honoured.
    let mut s = running.connect();
    s.write_all(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("write");
    assert_eq!(
        read_response(&mut s, false).expect("a response").header("connection").as_deref(),
        Some("close")
    );
    util::assert_closed(&mut s, "HTTP/1.1 with Connection: close");
    // A rejected HEAD gets no body either.
    let mut s = running.connect();
    s.write_all(b"HEAD / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n").expect("write");
    assert_eq!(read_response(&mut s, true).expect("413").status, 413);
    // A close (EOF or reset, not a timeout), with no body after the HEAD response.
    util::assert_closed(&mut s, "a HEAD answered with 413");
    // HEAD: the same fields, no body.
    let head = exchange(&running, b"HEAD /4k.bin HTTP/1.1\r\nHost: x\r\n\r\n").expect("a response");
    assert_eq!(head.header("content-length").as_deref(), Some("4096"));
    let mut s = running.connect();
    s.write_all(b"HEAD /4k.bin HTTP/1.1\r\nHost: x\r\n\r\nGET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    read_response(&mut s, true).expect("HEAD response");
    let next = read_response(&mut s, false).expect("the next response starts right after the head");
    assert_eq!(next.body, b"Hello, World!");
    running.stop();
}

#[test]
fn the_open_file_cache_serves_what_it_opened_until_it_expires_and_can_be_turned_off() {
    use std::sync::Arc;
    use std::time::Duration;

    let get = |running: &Running, path: &str| curl(running, path, &[]);
    let cached = util::start_with(|site| {
        site.file_cache = Arc::new(httpd::cache::FileCache::new(Duration::from_secs(3600)))
    });
    let file = cached.site.root().join("hello.txt");
    assert_eq!(get(&cached, "/hello.txt").2, b"Hello, World!");
    std::fs::write(&file, "changed, and longer").expect("rewrite the file");
    let (status, head, body) = get(&cached, "/hello.txt");
    assert_eq!(
        (status, body.as_slice()),
        (200, &b"Hello, World!"[..]),
        "a trusted entry is served as opened"
    );
    assert_eq!(field(&head, "content-length").as_deref(), Some("13"));
    let (status, _, body) = get(&cached, "/hello.txt");
    assert_eq!((status, body.as_slice()), (200, &b"Hello, World!"[..]));
    let (status, _, body) = curl(&cached, "/hello.txt", &["-r", "7-11"]);
    assert_eq!((status, body.as_slice()), (206, &b"World"[..]), "ranges of a held file come from memory");
    assert_eq!(get(&cached, "/4k.bin").2.len(), 4096);

    let uncached =
        util::start_with(|site| site.file_cache = Arc::new(httpd::cache::FileCache::new(Duration::ZERO)));
    let file = uncached.site.root().join("hello.txt");
    assert_eq!(get(&uncached, "/hello.txt").2, b"Hello, World!");
    std::fs::write(&file, "changed").expect("rewrite the file");
    assert_eq!(get(&uncached, "/hello.txt").2, b"changed", "with the cache off every request resolves again");
    std::fs::remove_file(&file).expect("remove the file");
    assert_eq!(get(&uncached, "/hello.txt").0, 404);
}
