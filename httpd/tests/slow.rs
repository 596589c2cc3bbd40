//! Slow clients: a slowloris attack is cut off at the header deadline while normal
//! clients are served at once; `slowhttptest` finds the service available throughout.

mod util;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use util::{exchange, start_with, tool};

const DEADLINE: Duration = Duration::from_secs(2);

#[test]
fn slowloris_connections_are_closed_at_the_header_deadline_while_others_are_served() {
    let running = start_with(|site| site.header_timeout = DEADLINE);
    let request = b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaa\r\n";
    let mut attackers: Vec<(TcpStream, bool)> = (0..200)
        .map(|_| {
            let s = running.connect();
            s.set_nonblocking(true).expect("non-blocking");
            (s, false)
        })
        .collect();
    let started = Instant::now();
    let mut byte = 0;
    let mut worst_normal = Duration::ZERO;
    while attackers.iter().any(|(_, closed)| !closed) {
        assert!(started.elapsed() < DEADLINE * 3, "slow connections outlived the header deadline");
        for (s, closed) in attackers.iter_mut().filter(|(_, c)| !c) {
            // One byte per second each; a refused write means the server closed it.
            if s.write(&request[byte % request.len()..][..1]).is_err() {
                *closed = true;
                continue;
            }
            let mut buf = [0u8; 512];
            match s.read(&mut buf) {
                Ok(_) => *closed = true, // EOF, or the 408 that precedes it
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => *closed = true,
            }
        }
        byte += 1;
        let t = Instant::now();
        let r = exchange(&running, b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("a normal client is served");
        assert_eq!(r.status, 200);
        worst_normal = worst_normal.max(t.elapsed());
        std::thread::sleep(Duration::from_secs(1)); // the attacker's pace
    }
    assert!(started.elapsed() >= DEADLINE, "closed before the deadline: too eager");
    assert!(
        worst_normal < Duration::from_millis(100),
        "a normal request took {worst_normal:?} during the attack"
    );
    running.stop();
}

#[test]
fn slowhttptest_finds_the_service_available_throughout() {
    let running = start_with(|site| site.header_timeout = DEADLINE);
    let out = Command::new(tool("slowhttptest"))
        .args([
            "-c", "1000", "-H", "-i", "1", "-r", "500", "-t", "GET", "-x", "24", "-p", "2", "-l", "6", "-u",
        ])
        .arg(running.url("/hello.txt"))
        .output()
        .expect("slowhttptest runs");
    let text = strip_ansi(&String::from_utf8_lossy(&out.stdout));
    let verdicts: Vec<&str> =
        text.lines().filter_map(|l| l.split_once("service available:")).map(|(_, v)| v.trim()).collect();
    assert!(!verdicts.is_empty(), "slowhttptest printed no status:\n{text}");
    assert!(verdicts.iter().all(|v| *v == "YES"), "service unavailable at some point: {verdicts:?}\n{text}");
    running.stop();
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn a_head_left_incomplete_in_silence_gets_408_at_the_deadline() {
    let running = start_with(|site| site.header_timeout = Duration::from_secs(1));
    let mut s = running.connect();
    s.write_all(b"GET / HTTP/1.1\r\nHo").expect("write");
    let started = Instant::now();
    let mut got = Vec::new();
    s.read_to_end(&mut got).expect("the server answers and closes");
    let took = started.elapsed();
    assert!(got.starts_with(b"HTTP/1.1 408 "), "{:?}", String::from_utf8_lossy(&got));
    assert!(took >= Duration::from_secs(1) && took < Duration::from_secs(3), "408 after {took:?}");
    running.stop();
}
