//! A fixed pipelined load, for counting the server's instructions per request rather
//! than timing it (wall-clock figures on a shared 2-core machine move too much to
//! judge a small change; instruction counts do not).
//!
//! `pipeline_load ADDR REQUESTS [PER_WRITE] [PATH]` sends REQUESTS `GET PATH HTTP/1.1`
//! requests (default `/hello.txt`) on one connection, PER_WRITE (default 16) per write
//! as `wrk`'s pipelining script does, and reads every answer of a write before the
//! next one, so each server read holds one whole batch. It checks each answer is a
//! 200 and exits non-zero otherwise.
//!
//! Instructions per request: run the server under callgrind, once with a large and
//! once with a small REQUESTS, and divide the difference of the totals by the
//! difference of the counts (which removes start-up and shutdown):
//!
//! ```sh
//! cargo build --release -p httpd --examples
//! valgrind --tool=callgrind --separate-threads=no --callgrind-out-file=big.out \
//!     target/release/httpd --root httpd/www --port 8099 --threads 1 --quiet &
//! target/release/examples/pipeline_load 127.0.0.1:8099 20000   # then stop the server
//! # same with 2000 requests into small.out, then:
//! # (Ir(big) - Ir(small)) / 18000, Ir from `callgrind_annotate big.out | head`
//! ```
//!
//! Any server answering `Content-Length` framed responses works (the hyper anchor
//! in `bench/hyper_anchor` answers every path). Under callgrind the hyper anchor
//! stopped itself on this machine; `valgrind --tool=cachegrind --cache-sim=no` counts
//! the same instructions. It has no SIGINT handler, and a shell script's background
//! job ignores SIGINT: stop it with SIGTERM.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(addr), Some(total)) = (args.first(), args.get(1).and_then(|n| n.parse::<usize>().ok())) else {
        eprintln!("usage: pipeline_load ADDR REQUESTS [PER_WRITE] [PATH]");
        return ExitCode::FAILURE;
    };
    let per_write = args.get(2).and_then(|n| n.parse::<usize>().ok()).unwrap_or(16).max(1);
    let path = args.get(3).map_or("/hello.txt", String::as_str);
    match run(addr, total, per_write, path) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pipeline_load: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(addr: &str, total: usize, per_write: usize, path: &str) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let one = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut input = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut done = 0;
    while done < total {
        let batch = per_write.min(total - done);
        stream.write_all(one.repeat(batch).as_bytes())?;
        let mut answered = 0;
        while answered < batch {
            match take_answer(&input)? {
                Some(size) => {
                    input.drain(..size);
                    answered += 1;
                }
                None => {
                    let n = stream.read(&mut chunk)?;
                    if n == 0 {
                        return Err(std::io::Error::other(format!(
                            "closed after {} answers",
                            done + answered
                        )));
                    }
                    input.extend_from_slice(&chunk[..n]);
                }
            }
        }
        done += batch;
    }
    Ok(())
}

/// The size of the whole answer at the front of `buf`, if it is there.
fn take_answer(buf: &[u8]) -> std::io::Result<Option<usize>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { return Ok(None) };
    let head = String::from_utf8_lossy(&buf[..end]);
    if !head.starts_with("HTTP/1.1 200 ") {
        return Err(std::io::Error::other(format!("not a 200: {head}")));
    }
    let len = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("content-length")))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .ok_or_else(|| std::io::Error::other(format!("no Content-Length: {head}")))?;
    let size = end + 4 + len;
    Ok((buf.len() >= size).then_some(size))
}
