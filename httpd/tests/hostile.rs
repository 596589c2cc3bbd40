//! At least 40 malformed or hostile requests, each with the status it must get (and
//! a close after it when the parser refused the head: a smuggled request needs the
//! connection to stay open), and a good request still answered after each. Whatever
//! the request, no byte from outside the root is ever sent, whole response or not.

mod util;

use std::io::Write;
use std::net::Shutdown;

use util::{assert_closed, exchange, read_response, read_until_closed, start, Running};

/// (what, request, expected status).
const CASES: &[(&str, &[u8], u16)] = &[
    ("good", b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n", 200),
    ("traversal", b"GET /../secret.txt HTTP/1.1\r\nHost: x\r\n\r\n", 403),
    ("deep traversal", b"GET /sub/../../secret.txt HTTP/1.1\r\nHost: x\r\n\r\n", 403),
    ("encoded dots", b"GET /%2e%2e/secret.txt HTTP/1.1\r\nHost: x\r\n\r\n", 403),
    ("upper encoded dots", b"GET /%2E%2E/secret.txt HTTP/1.1\r\nHost: x\r\n\r\n", 403),
    ("mixed dots", b"GET /.%2e/secret.txt HTTP/1.1\r\nHost: x\r\n\r\n", 403),
    ("encoded slash", b"GET /..%2fsecret.txt HTTP/1.1\r\nHost: x\r\n\r\n", 403),
    ("double encoded", b"GET /%252e%252e/secret.txt HTTP/1.1\r\nHost: x\r\n\r\n", 404),
    ("backslash", b"GET /..\\secret.txt HTTP/1.1\r\nHost: x\r\n\r\n", 404),
    ("symlink out", b"GET /escape HTTP/1.1\r\nHost: x\r\n\r\n", 403),
    ("symlinked index out", b"GET /idx/ HTTP/1.1\r\nHost: x\r\n\r\n", 403),
    ("encoded NUL", b"GET /hello.txt%00.html HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("raw NUL", b"GET /hello\0.txt HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("bad escape", b"GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n", 404),
    ("absolute form", b"GET http://x/hello.txt HTTP/1.1\r\nHost: x\r\n\r\n", 200),
    ("asterisk", b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("relative target", b"GET hello.txt HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("fragment", b"GET /hello.txt#frag HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("HTTP/2.0", b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    ("HTTP/1.2", b"GET / HTTP/1.2\r\nHost: x\r\n\r\n", 505),
    ("HTTP/0.9 style", b"GET /\r\n\r\n", 400),
    ("lowercase version", b"GET / http/1.1\r\nHost: x\r\n\r\n", 400),
    ("no Host in 1.1", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("two Hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("1.0 without Host", b"GET /hello.txt HTTP/1.0\r\n\r\n", 200),
    ("POST", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405),
    ("DELETE", b"DELETE / HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    ("OPTIONS", b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    ("unknown method", b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n", 501),
    ("lowercase method", b"get / HTTP/1.1\r\nHost: x\r\n\r\n", 501),
    (
        "CL and TE",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        400,
    ),
    ("TE alone", b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    (
        "two different CLs",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        400,
    ),
    ("negative CL", b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
    ("plus CL", b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\nx", 400),
    ("list CL", b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 1\r\n\r\nx", 400),
    ("huge CL", b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400),
    ("body past the limit", b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n", 413),
    ("small body dropped", b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", 200),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400),
    ("space before colon", b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    ("bare CR", b"GET / HTTP/1.1\rHost: x\r\n\r\n", 400),
    ("bare LF (accepted, RFC 9112 2.2)", b"GET /hello.txt HTTP/1.1\nHost: x\n\n", 200),
    ("header without colon", b"GET / HTTP/1.1\r\nHost: x\r\nJunk\r\n\r\n", 400),
    ("control char in header", b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n", 400),
    ("too many headers", b"", 431),      // built below
    ("overlong request line", b"", 414), // built below
    ("overlong header", b"", 431),       // built below
    ("directory without slash", b"GET /sub HTTP/1.1\r\nHost: x\r\n\r\n", 301),
    ("unsatisfiable range", b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=100-\r\n\r\n", 416),
    ("file with slash", b"GET /hello.txt/ HTTP/1.1\r\nHost: x\r\n\r\n", 404),
    ("space in target", b"GET /a b.txt HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("encoded space", b"GET /a%20b.txt HTTP/1.1\r\nHost: x\r\n\r\n", 200),
];

fn built(what: &str, template: &[u8]) -> Vec<u8> {
    match what {
        "too many headers" => {
            let mut r = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
            (0..200).for_each(|i| r.extend_from_slice(format!("X-{i}: v\r\n").as_bytes()));
            r.extend_from_slice(b"\r\n");
            r
        }
        "overlong request line" => {
            format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(10_000)).into_bytes()
        }
        "overlong header" => {
            format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "b".repeat(20_000)).into_bytes()
        }
        _ => template.to_vec(),
    }
}

/// Statuses the parser answers with: the framing after such a head is not trusted,
/// so the connection must close after the response.
const CLOSING: &[u16] = &[400, 405, 413, 414, 431, 501, 505];

/// Sends `request` on a fresh connection; returns its response's status, after
/// checking that the server then closes (EOF or reset, not our timeout) if `want` is
/// a closing status. `None`: closed with no response.
fn status_then_close(running: &Running, what: &str, request: &[u8], want: u16) -> Option<u16> {
    util::doing(what);
    let mut s = running.connect();
    s.write_all(request).expect("write");
    let r = read_response(&mut s, request.starts_with(b"HEAD"))?;
    if CLOSING.contains(&want) {
        assert_closed(&mut s, &format!("{what}: after the {}", r.status));
    }
    Some(r.status)
}

#[test]
fn every_hostile_request_gets_its_status_and_the_server_keeps_serving() {
    assert!(CASES.len() >= 40, "the issue asks for at least 40 cases");
    let running = start();
    let mut wrong = Vec::new();
    for (what, template, want) in CASES {
        let got = status_then_close(&running, what, &built(what, template), *want);
        if got != Some(*want) {
            wrong.push(format!("{what}: want {want}, got {got:?}"));
        }
        let good = exchange(&running, b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n").expect("still serving");
        assert_eq!((good.status, good.body.as_slice()), (200, &b"Hello, World!"[..]), "after {what}");
    }
    assert!(wrong.is_empty(), "{} wrong:\n{}", wrong.len(), wrong.join("\n"));
    running.stop();
}

#[test]
fn nothing_outside_the_root_is_ever_sent() {
    let running = start();
    for (what, template, _) in CASES {
        // Every byte the server sends, until it closes after our FIN: whole
        // responses or not.
        util::doing(*what);
        let mut s = running.connect();
        s.write_all(&built(what, template)).expect("write");
        let _ = s.shutdown(Shutdown::Write); // fails only if the server closed already
        let sent = read_until_closed(&mut s);
        assert!(
            sent.starts_with(b"HTTP/1.1 "),
            "{what}: not a response: {:?}",
            String::from_utf8_lossy(&sent)
        );
        assert!(!sent.windows(6).any(|w| w == b"SECRET"), "{what}: a byte from outside the root leaked");
    }
    running.stop();
}
