//! The `pubsub` binary run as a child process, for tests of what only the binary
//! does (flags, the configuration file, its timers, SIGHUP). Included by the test
//! files that need it with `#[path]`, beside `mod util`.
#![allow(dead_code)] // each test file uses a different subset

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Instant;

use pubsub_protocol::packet::{Packet, QoS};

use crate::util::{Client, PATIENCE};

/// A `pubsub` process listening on a free port of 127.0.0.1, killed on drop.
pub struct Pubsub {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its log lines, drained by a thread so a full pipe never stalls the broker.
    log: Receiver<String>,
}

impl Pubsub {
    /// Starts `pubsub --port 0` with `flags` and returns once it logged where it
    /// listens (the port is picked by the kernel: no race for a free one).
    pub fn start(flags: &[&str]) -> Pubsub {
        let mut args = vec!["--address", "127.0.0.1", "--port", "0"];
        args.extend_from_slice(flags);
        Pubsub::spawn(&args)
    }

    /// Starts `pubsub` with exactly `args` (and two threads unless they say) and
    /// returns once it logged where it listens.
    pub fn spawn(args: &[&str]) -> Pubsub {
        let threads: &[&str] = if args.contains(&"--threads") { &[] } else { &["--threads", "2"] };
        let mut child = Command::new(env!("CARGO_BIN_EXE_pubsub"))
            .args(threads)
            .args(args)
            .env("RUST_LOG", "info") // the "listening on" line is at info
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the pubsub binary");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line); // the test may be gone: keep draining anyway
            }
        });
        let mut broker = Pubsub { child, addr: SocketAddr::from(([127, 0, 0, 1], 0)), log };
        broker.addr = broker.listening_addr();
        broker
    }

    /// Reads the log until the "listening on mqtt://ADDR" line.
    fn listening_addr(&self) -> SocketAddr {
        let line = self.await_log("listening on mqtt://");
        let (_, addr) = line.split_once("listening on mqtt://").expect("await_log found it");
        addr.trim().parse().expect("a socket address in the log")
    }

    /// Reads the log until a line containing `text`, and returns that line.
    pub fn await_log(&self, text: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(line) => seen.push(line),
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no {text:?} in pubsub's log after {PATIENCE:?}: {seen:?}")
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("pubsub exited before logging {text:?}: {seen:?}")
                }
            }
        }
    }

    /// Its process id (for signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A client connected with `id`.
    pub fn connect(&self, id: &str, clean: bool) -> Client {
        Client::connect(self.addr, id, clean, None).0
    }

    /// A persistent session `id` subscribed to `topic` at QoS 1, then disconnected:
    /// its messages queue in the broker.
    pub fn offline_subscriber(&self, id: &str, topic: &str) {
        let mut s = self.connect(id, false);
        s.subscribe(topic, QoS::AtLeastOnce);
        s.send(&Packet::Disconnect);
        s.expect_closed("DISCONNECT");
    }
}

impl Drop for Pubsub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
