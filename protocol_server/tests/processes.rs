//! The echo example run as a child process: 500 concurrent clients, and
//! `processes(2)` (the test harness is multi-threaded, so nothing may fork inside it):
//! a worker killed with SIGKILL is replaced, the survivor answers alone until then (the
//! root is held with SIGSTOP so that "until then" lasts), the replacement itself serves
//! (the survivor is held), and SIGTERM ends the root with status 0 only after every
//! worker, tracked by pid and start time, has exited.

mod util;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
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
        .filter(|&pid| stat_field(pid, 1) == Some(u64::from(parent)))
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
        let mut back = vec![0u8; line.len()];
        c.read_exact(&mut back).unwrap_or_else(|e| panic!("{stage}: no echo of line {i}: {e}"));
        assert_eq!(back, line.as_bytes(), "{stage}");
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
    signal(root.0.id(), Signal::SIGTERM);
    let status = eventually("the server exiting", || root.0.try_wait().expect("wait"));
    assert!(status.success(), "exited with {status}");
}

#[test]
fn a_killed_worker_process_is_replaced_and_sigterm_exits_0() {
    let (mut root, _stdout, port) = echo_example(&["--processes", "2"]);
    let root_pid = root.0.id();
    let workers = eventually("two worker processes", || Some(children_of(root_pid)).filter(|c| c.len() == 2));
    let mut tracked = Tracked(workers.iter().map(|&pid| Proc::new(pid)).collect());
    echo_works(port, "before the kill");

    // The root, stopped, cannot replace the victim: what answers now is the survivor alone.
    let (victim, survivor) = (tracked.0[0].pid, tracked.0[1].pid);
    signal(root_pid, Signal::SIGSTOP);
    signal(victim, Signal::SIGKILL);
    eventually("the victim dying", || (!Proc::new(victim).is_running()).then_some(()));
    echo_works(port, "between the kill and the replacement");
    assert_eq!(live_children(root_pid), BTreeSet::from([survivor]), "replaced while the root was stopped");
    signal(root_pid, Signal::SIGCONT);

    let replacement = eventually("a replacement worker", || {
        let now = live_children(root_pid);
        (now.len() == 2).then(|| *now.iter().find(|&&p| p != survivor).expect("two live children"))
    });
    assert_ne!(replacement, victim);
    tracked.0.push(Proc::new(replacement));
    // The survivor, stopped, cannot accept: every answer now comes from the replacement.
    signal(survivor, Signal::SIGSTOP);
    echo_works(port, "served by the replacement alone");
    signal(survivor, Signal::SIGCONT);
    echo_works(port, "after the replacement");

    // A worker that cannot exit yet (stopped) must keep the root waiting for it.
    signal(survivor, Signal::SIGSTOP);
    signal(root_pid, Signal::SIGTERM);
    let early = wait_a_while(|| root.0.try_wait().expect("wait"));
    assert!(early.is_none(), "the root exited ({early:?}) while worker {survivor} was still running");
    signal(survivor, Signal::SIGCONT);
    let status = eventually("the root exiting", || root.0.try_wait().expect("wait"));
    assert!(status.success(), "root exited with {status}");
    let outlived: Vec<u32> = tracked.0.iter().filter(|p| p.is_running()).map(|p| p.pid).collect();
    assert!(outlived.is_empty(), "worker processes {outlived:?} outlived the root");
}

/// Polls `check` for half a second: for what must *not* happen, nothing can be awaited.
fn wait_a_while<T>(mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until {
        if let Some(found) = check() {
            return Some(found);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

fn signal(pid: u32, signal: Signal) {
    kill(Pid::from_raw(pid as i32), signal).unwrap_or_else(|e| panic!("{signal} to {pid}: {e}"));
}

/// Children of `parent` that have not exited (a zombie waits for its parent to reap it).
fn live_children(parent: u32) -> BTreeSet<u32> {
    children_of(parent).into_iter().filter(|&pid| Proc::new(pid).is_running()).collect()
}

/// Worker processes seen during a test; any still running when it ends (it failed
/// half-way, perhaps with one stopped) is killed.
struct Tracked(Vec<Proc>);

impl Drop for Tracked {
    fn drop(&mut self) {
        for p in self.0.iter().filter(|p| p.is_running()) {
            let _ = kill(Pid::from_raw(p.pid as i32), Signal::SIGKILL);
        }
    }
}

/// A process seen once, recognised later by its pid *and* start time (a pid may be reused).
struct Proc {
    pid: u32,
    started: Option<u64>,
}

impl Proc {
    fn new(pid: u32) -> Proc {
        Proc { pid, started: stat_field(pid, 19) }
    }

    /// Still this process, and neither exited (zombie) nor dead.
    fn is_running(&self) -> bool {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) else { return false };
        let state = stat_fields(&stat).next();
        state.is_some_and(|s| s != "Z" && s != "X") && stat_field(self.pid, 19) == self.started
    }
}

/// Field `n` (0 = state, 1 = ppid, 19 = start time) after the command name of `/proc/PID/stat`.
fn stat_field(pid: u32, n: usize) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_fields(&stat).nth(n)?.parse().ok()
}

/// The fields after the command name, which may itself hold spaces and parentheses.
fn stat_fields(stat: &str) -> std::str::SplitWhitespace<'_> {
    stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace()
}
