//! Random input, with a fixed seed and a bounded number of cases: the parser never
//! panics and only ever answers with a request or one of its error statuses; the
//! server answers random bytes with a valid response or a close, and keeps serving.

mod util;

use std::io::{Read, Write};

use httpd::request::{parse, Parsed};
use httpd::Limits;
use util::{exchange, start};

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
            Err(reject) => assert!(
                [400, 405, 413, 414, 431, 501, 505].contains(&reject.status) && reject.close,
                "case {n}: {reject:?} for {input:?}"
            ),
        }
    }
}

#[test]
fn the_server_answers_random_bytes_with_a_response_or_a_close() {
    let running = start();
    let mut rng = Rng(0x5EED_0000_0000_0002);
    for n in 0..300 {
        let input = case(&mut rng);
        let mut s = running.connect();
        s.set_read_timeout(Some(std::time::Duration::from_millis(300))).expect("timeout");
        let _ = s.write_all(&input);
        let _ = s.shutdown(std::net::Shutdown::Write); // our FIN: a partial head then ends
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        if !got.is_empty() {
            assert!(got.starts_with(b"HTTP/1.1 ") && got.len() >= 12, "case {n}: not a response: {got:?}");
            assert!(got[9..12].iter().all(u8::is_ascii_digit), "case {n}: bad status in {got:?}");
        }
    }
    let r = exchange(&running, b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n").expect("still serving");
    assert_eq!(r.status, 200);
    running.stop();
}
