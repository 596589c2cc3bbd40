//! Random input, with a fixed seed and a bounded number of cases: the parser never
//! panics and only ever answers with a request or one of its error statuses. Through
//! the server, every case gets whole responses (status line, fields, the full
//! `Content-Length` body) and then a close — an EOF or reset, never our timeout,
//! which fails the test: a request the parser rejects gets its status and a close
//! without our FIN; anything else is answered (if it holds a request) and closed
//! after our FIN. The server keeps serving afterwards.

mod util;

use std::io::Write;
use std::net::Shutdown;

use httpd::request::{parse, Parsed};
use httpd::Limits;
use util::{assert_closed, exchange, read_response, start, try_read_response, Ended, Running};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const SEEDS: &[&[u8]] = &[
    b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n",
    b"HEAD / HTTP/1.0\r\nConnection: keep-alive\r\nRange: bytes=0-3\r\n\r\n",
    b"GET /%2e%2e/x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
    b"GET / HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"a\", W/\"b\"\r\nIf-Range: \"c\"\r\n\r\n",
];

/// A valid request with a few random byte edits, or plain random bytes.
fn case(rng: &mut Rng) -> Vec<u8> {
    if rng.below(4) == 0 {
        return (0..rng.below(300)).map(|_| rng.next() as u8).collect();
    }
    let mut v = SEEDS[rng.below(SEEDS.len())].to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(3) {
            0 if at < v.len() => v[at] = rng.next() as u8,
            1 => {
                const ALPHABET: &[u8] = b" :\r\n\0/%.-,\"0123456789abcdefHTTP";
                v.insert(at, ALPHABET[rng.below(ALPHABET.len())]);
            }
            _ if at < v.len() => drop(v.remove(at)),
            _ => {}
        }
    }
    v
}

#[test]
fn the_parser_never_panics_and_answers_only_with_its_statuses() {
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let limits = Limits::default();
    for n in 0..50_000 {
        let input = case(&mut rng);
        match parse(&input, &limits) {
            Ok(Parsed::Partial) => {}
            Ok(Parsed::Complete(_, used)) => assert!(used <= input.len(), "case {n}"),
            // That the connection then closes is checked through the server below.
            Err(reject) => assert!(
                [400, 405, 413, 414, 431, 501, 505].contains(&reject.status),
                "case {n}: {reject:?} for {input:?}"
            ),
        }
    }
}

/// Whether the server sees a whole head in `input` (so it parses without waiting for
/// more): a blank line ends it, as in `Exchange::worth_parsing`.
fn has_head_end(input: &[u8]) -> bool {
    input.windows(2).any(|w| w == b"\n\n") || input.windows(3).any(|w| w == b"\n\r\n")
}

/// A request the parser rejects gets that status, then the server closes on its own
/// (we send no FIN): it does not trust the framing after a bad head.
fn rejected_then_closed(running: &Running, n: usize, input: &[u8], status: u16) {
    let mut s = running.connect();
    s.write_all(input).expect("write");
    let r = read_response(&mut s, input.starts_with(b"HEAD "))
        .unwrap_or_else(|| panic!("case {n}: closed without the {status} for {input:?}"));
    assert_eq!(r.status, status, "case {n}: {input:?}");
    assert_closed(&mut s, &format!("case {n}: after the {status} for {input:?}"));
}

/// Anything else: after our FIN the server sends whole responses only (at least one
/// if the parser found a request), then closes. Returns how many came.
fn answered_then_closed(running: &Running, n: usize, input: &[u8], complete: bool) -> usize {
    let mut s = running.connect();
    s.write_all(input).expect("write");
    // A partial head then ends. This fails only if the server closed already.
    let _ = s.shutdown(Shutdown::Write);
    let mut count = 0;
    loop {
        // Only the first request's method is known (later ones are leftovers).
        let head_request = count == 0 && input.starts_with(b"HEAD ");
        match try_read_response(&mut s, head_request) {
            Ok(_) => count += 1,
            Err(Ended::Closed) => break,
            Err(Ended::Broken(got)) => panic!("case {n}: a broken response {got:?} to {input:?}"),
        }
    }
    assert!(count > 0 || !complete, "case {n}: a request got no response: {input:?}");
    count
}

#[test]
fn the_server_answers_random_bytes_with_whole_responses_and_a_close() {
    let running = start();
    let limits = Limits::default();
    let mut rng = Rng(0x5EED_0000_0000_0002);
    let (mut rejected, mut answered) = (0, 0);
    for n in 0..300 {
        let input = case(&mut rng);
        util::doing(format!("case {n}: {:?}", String::from_utf8_lossy(&input)));
        match parse(&input, &limits) {
            Err(reject) if has_head_end(&input) => {
                rejected_then_closed(&running, n, &input, reject.status);
                rejected += 1;
            }
            parsed => {
                let complete = matches!(parsed, Ok(Parsed::Complete(..)));
                answered += usize::from(answered_then_closed(&running, n, &input, complete) > 0);
            }
        }
    }
    // Both paths ran often enough to mean something.
    assert!(rejected >= 30 && answered >= 30, "{rejected} rejected, {answered} answered");
    let r = exchange(&running, b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n").expect("still serving");
    assert_eq!(r.status, 200);
    running.stop();
}
