//! The echo example run as a child process: 500 concurrent clients, and
//! `processes(2)` (the test harness is multi-threaded, so nothing may fork inside it):
//! a worker killed with SIGKILL is replaced, the port keeps answering, and SIGTERM
//! ends the root with status 0.

mod util;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use util::{read_n, PATIENCE};

/// `cargo test` builds the examples next to the test binaries' folder.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps");
    let path = dir.join("examples").join(name);
    assert!(path.exists(), "{} missing: run through `cargo test`, which builds examples", path.display());
    path
}

fn children_of(parent: u32) -> BTreeSet<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return BTreeSet::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Fields after the command name (which may hold spaces): state, ppid, ...
            let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            after.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok()) == Some(parent)
        })
        .collect()
}

/// Polls `/proc` (nothing signals a fork to us) until `check` holds.
fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(Instant::now() < deadline, "{what} did not happen within {PATIENCE:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn echo_works(port: u16, stage: &str) {
    for i in 0..10 {
        let mut c = TcpStream::connect(("127.0.0.1", port)).expect("the port answers");
        c.set_read_timeout(Some(PATIENCE)).expect("timeout");
        let line = format!("ping {i}\n");
        c.write_all(line.as_bytes()).expect("write");
        assert_eq!(read_n(&mut c, line.len()), line.as_bytes(), "{stage}");
    }
}

struct Root(Child);

impl Drop for Root {
    fn drop(&mut self) {
        let _ = self.0.kill(); // only if the test failed half-way
    }
}

/// Starts the echo example with `args`; returns it, its stdout (kept open: every
/// (re)started worker prints its address) and its port.
fn echo_example(args: &[&str]) -> (Root, BufReader<std::process::ChildStdout>, u16) {
    let mut root = Root(
        Command::new(example("echo"))
            .args(["--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the echo example starts"),
    );
    let mut stdout = BufReader::new(root.0.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("a worker prints its address");
    // "echo server on [127.0.0.1:PORT] (pid N)"
    let port: u16 = line
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split(']').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    (root, stdout, port)
}

#[test]
fn the_echo_example_answers_500_concurrent_clients_each_with_its_own_lines() {
    let (mut root, _stdout, port) = echo_example(&[]);
    let mut clients: Vec<TcpStream> = (0..500)
        .map(|_| {
            let c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            c.set_read_timeout(Some(PATIENCE)).expect("timeout");
            c
        })
        .collect();
    for round in 0..3 {
        for (i, c) in clients.iter_mut().enumerate() {
            c.write_all(format!("client {i:03} line {round}\n").as_bytes()).expect("write");
        }
        for (i, c) in clients.iter_mut().enumerate() {
            let want = format!("client {i:03} line {round}\n");
            assert_eq!(read_n(c, want.len()), want.as_bytes(), "client {i} got another's bytes");
        }
    }
    kill(Pid::from_raw(root.0.id() as i32), Signal::SIGTERM).expect("signal the server");
    let status = eventually("the server exiting", || root.0.try_wait().expect("wait"));
    assert!(status.success(), "exited with {status}");
}

#[test]
fn a_killed_worker_process_is_replaced_and_sigterm_exits_0() {
    let (mut root, _stdout, port) = echo_example(&["--processes", "2"]);
    let root_pid = root.0.id();
    let workers = eventually("two worker processes", || Some(children_of(root_pid)).filter(|c| c.len() == 2));
    echo_works(port, "before the kill");

    let victim = *workers.iter().next().expect("two workers");
    kill(Pid::from_raw(victim as i32), Signal::SIGKILL).expect("kill a worker");
    let replaced = eventually("a replacement worker", || {
        let now = children_of(root_pid);
        (now.len() == 2 && !now.contains(&victim)).then_some(now)
    });
    assert_eq!(replaced.len(), 2);
    echo_works(port, "after the replacement");

    kill(Pid::from_raw(root_pid as i32), Signal::SIGTERM).expect("signal the root");
    let status = eventually("the root exiting", || root.0.try_wait().expect("wait"));
    assert!(status.success(), "root exited with {status}");
    assert!(children_of(root_pid).is_empty(), "workers outlived the root");
}
