//! Slow clients: a slowloris attack is cut off at the header deadline while normal
//! clients are served at once; `slowhttptest` finds the service available throughout;
//! a head left incomplete gets 408 at the deadline. The tests take turns (a lock):
//! one's thousand connections would otherwise slow the other's normal clients.

mod util;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use util::{exchange, one_at_a_time, read_until_closed, start_with, tool};

const DEADLINE: Duration = Duration::from_secs(2);

/// Normal requests made at each step of the attack.
const NORMAL_PER_STEP: usize = 10;

#[test]
fn slowloris_connections_are_closed_at_the_header_deadline_while_others_are_served() {
    let _alone = one_at_a_time();
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
    let mut normal = Vec::new();
    while attackers.iter().any(|(_, closed)| !closed) {
        // Cut off at the deadline (checked at about 1 s steps), not left to idle out.
        assert!(started.elapsed() < DEADLINE * 4, "slow connections outlived the header deadline");
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
        for _ in 0..NORMAL_PER_STEP {
            let t = Instant::now();
            let r = exchange(&running, b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
                .expect("a normal client is served");
            assert_eq!(r.status, 200);
            normal.push(t.elapsed());
        }
        std::thread::sleep(Duration::from_secs(1)); // the attacker's pace
    }
    assert!(started.elapsed() >= DEADLINE, "closed before the deadline: too eager");
    // Served at once, not after the attackers are cut off (that takes the deadline,
    // 2 s): the median is what a normal request costs; the worst has room for a
    // loaded machine's stalls but not for waiting out the attack.
    normal.sort();
    let (median, worst) = (normal[normal.len() / 2], normal[normal.len() - 1]);
    assert!(
        median < Duration::from_millis(100),
        "normal requests took {median:?} (median) during the attack"
    );
    assert!(worst < DEADLINE / 2, "a normal request took {worst:?} during the attack");
    running.stop();
}

#[test]
fn slowhttptest_finds_the_service_available_throughout() {
    let _alone = one_at_a_time();
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
    let _alone = one_at_a_time();
    let deadline = Duration::from_secs(1);
    let running = start_with(|site| site.header_timeout = deadline);
    let mut s = running.connect();
    s.write_all(b"GET / HTTP/1.1\r\nHo").expect("write");
    let started = Instant::now();
    let got = read_until_closed(&mut s);
    let took = started.elapsed();
    assert!(got.starts_with(b"HTTP/1.1 408 "), "{:?}", String::from_utf8_lossy(&got));
    // At the deadline (timers tick about once a second), long before the idle timeout.
    assert!(took >= deadline && took < deadline + Duration::from_secs(4), "408 after {took:?}");
    running.stop();
}
