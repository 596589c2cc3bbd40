//! Counting a running process's syscalls for `bench mqtt --count`: `perf stat` on the
//! syscall tracepoints where the kernel lets us (root, or a low
//! `perf_event_paranoid`), else `strace -c -f -p`.
//!
//! perf counts in the kernel and leaves the broker's timing nearly alone; strace stops
//! the traced thread at every syscall, which slows the broker, and a
//! slower broker finds more work per wake-up, so its per-message counts may come out
//! lower than the truth. The report says which one counted.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::error::{Context, Error, Result};
use crate::procs;

/// The syscalls the report groups, by group.
pub const GROUPS: [(&str, &[&str]); 4] = [
    ("write", &["write", "writev", "sendto", "sendmsg", "sendmmsg"]),
    ("read", &["read", "readv", "recvfrom", "recvmsg", "recvmmsg"]),
    ("epoll_wait", &["epoll_wait", "epoll_pwait", "epoll_pwait2"]),
    ("futex", &["futex"]),
];

/// Where the kernel lists its tracepoints.
const TRACEFS: [&str; 2] = ["/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events"];
/// Time given to a tracer to attach before the measured window opens.
const ATTACH: Duration = Duration::from_millis(500);

/// Which tool counts.
#[derive(Debug, Clone)]
pub enum Tracer {
    /// `perf stat` on these tracepoints (`raw_syscalls:sys_enter` counts every syscall).
    Perf(Vec<String>),
    /// `strace -c -f -p` (every syscall).
    Strace,
}

impl Tracer {
    /// perf if it can count syscall tracepoints here, else strace, else an error.
    pub fn find() -> Result<Tracer> {
        let events = tracepoints();
        if !events.is_empty() && perf_works(&events) {
            return Ok(Tracer::Perf(events));
        }
        procs::which("strace", "strace").map(|_| Tracer::Strace).map_err(|_| {
            Error::Tool("neither `perf stat -e syscalls:*` nor `strace` works here: install strace".into())
        })
    }

    /// The tool, for the report.
    pub fn name(&self) -> &'static str {
        match self {
            Tracer::Perf(_) => "perf stat (syscall tracepoints)",
            Tracer::Strace => "strace -c -f",
        }
    }

    /// Starts counting the syscalls of every thread of `pid`, its summary going to
    /// `out`; returns once it has (probably) attached.
    pub fn attach(&self, pid: u32, out: &Path) -> Result<Tracing> {
        let mut cmd = match self {
            Tracer::Perf(events) => {
                let mut c = Command::new("perf");
                c.args(["stat", "-x", ",", "-e", &events.join(",")]);
                c
            }
            Tracer::Strace => {
                let mut c = Command::new("strace");
                c.args(["-c", "-f", "-q"]);
                c
            }
        };
        cmd.arg("-o").arg(out).arg("-p").arg(pid.to_string());
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let mut child = cmd.spawn().context(|| format!("starting {cmd:?}"))?;
        // Neither tool says when it is attached; an idle broker makes the wait cheap.
        thread::sleep(ATTACH);
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Error::Tool(format!("{} exited at once ({status})", self.name())));
        }
        Ok(Tracing { child, out: out.to_path_buf(), perf: matches!(self, Tracer::Perf(_)) })
    }
}

/// A tracer attached to the broker.
#[derive(Debug)]
pub struct Tracing {
    child: Child,
    out: PathBuf,
    perf: bool,
}

impl Tracing {
    /// Stops the tracer (SIGINT, as at a terminal) and reads its counts.
    pub fn finish(mut self) -> Result<Counts> {
        let pid = Pid::from_raw(self.child.id() as i32);
        kill(pid, Signal::SIGINT).context(|| "stopping the tracer".into())?;
        self.child.wait().context(|| "waiting for the tracer".into())?;
        let text = fs::read_to_string(&self.out).context(|| format!("reading {}", self.out.display()))?;
        let counts = if self.perf { parse_perf(&text) } else { parse_strace(&text) };
        if counts.per_call.is_empty() {
            return Err(Error::Tool(format!("no syscall counts in {}:\n{text}", self.out.display())));
        }
        Ok(counts)
    }
}

/// Calls per syscall name, and the total of every syscall.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Calls per syscall (perf: only those asked for).
    pub per_call: BTreeMap<String, u64>,
    /// Every syscall of the window.
    pub total: u64,
}

impl Counts {
    /// The calls of one of [`GROUPS`].
    pub fn group(&self, names: &[&str]) -> u64 {
        names.iter().filter_map(|n| self.per_call.get(*n)).sum()
    }
}

/// The syscall tracepoints of [`GROUPS`] this kernel has, and the all-syscalls one.
fn tracepoints() -> Vec<String> {
    let Some(root) = TRACEFS.iter().map(Path::new).find(|p| p.join("syscalls").is_dir()) else {
        return Vec::new();
    };
    let mut events: Vec<String> = GROUPS
        .iter()
        .flat_map(|(_, names)| names.iter())
        .filter(|n| root.join(format!("syscalls/sys_enter_{n}")).is_dir())
        .map(|n| format!("syscalls:sys_enter_{n}"))
        .collect();
    if root.join("raw_syscalls/sys_enter").is_dir() {
        events.push("raw_syscalls:sys_enter".into());
    }
    events
}

/// Whether `perf stat` may count these events on a short command.
fn perf_works(events: &[String]) -> bool {
    Command::new("perf")
        .args(["stat", "-x", ",", "-e", &events.join(","), "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `perf stat -x ,` lines: `count,unit,event,...`; `<not counted>` is left out.
pub fn parse_perf(text: &str) -> Counts {
    let mut counts = Counts::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let fields: Vec<&str> = line.split(',').collect();
        let (Some(n), Some(event)) = (fields.first().and_then(|c| c.trim().parse().ok()), fields.get(2))
        else {
            continue;
        };
        if let Some(name) = event.strip_prefix("syscalls:sys_enter_") {
            counts.per_call.insert(name.to_string(), n);
        } else if *event == "raw_syscalls:sys_enter" {
            counts.total = n;
        }
    }
    counts
}

/// `strace -c` table rows: `% time, seconds, usecs/call, calls, [errors,] syscall`.
pub fn parse_strace(text: &str) -> Counts {
    let mut counts = Counts::default();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 || f[0].parse::<f64>().is_err() {
            continue;
        }
        let (Some(&name), Ok(calls)) = (f.last(), f[3].parse::<u64>()) else { continue };
        if name == "total" {
            // Its usecs/call column may be blank, so its calls are not at index 3.
            continue;
        }
        counts.total += calls;
        counts.per_call.insert(name.to_string(), calls);
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perf_csv_gives_calls_per_tracepoint_and_the_total() {
        let text = "# started on Mon\n\n\
                    1500,,syscalls:sys_enter_writev,2001234,100.00,,\n\
                    <not counted>,,syscalls:sys_enter_sendmsg,0,100.00,,\n\
                    42,,syscalls:sys_enter_futex,2001234,100.00,,\n\
                    9000,,raw_syscalls:sys_enter,2001234,100.00,,\n";
        let c = parse_perf(text);
        assert_eq!(c.total, 9000);
        assert_eq!(c.per_call.len(), 2);
        assert_eq!(c.group(GROUPS[0].1), 1500);
        assert_eq!(c.group(GROUPS[3].1), 42);
        assert_eq!(c.group(GROUPS[1].1), 0);
    }

    #[test]
    fn strace_table_gives_calls_with_and_without_errors() {
        let text = "% time     seconds  usecs/call     calls    errors syscall\n\
                    ------ ----------- ----------- --------- --------- ----------------\n \
                    60.00    0.060000          20      3000           writev\n \
                    30.00    0.030000          10      3000      1000 read\n \
                    10.00    0.010000          50       200           epoll_wait\n\
                    ------ ----------- ----------- --------- --------- ----------------\n\
                    100.00    0.100000                  6200      1000 total\n";
        let c = parse_strace(text);
        assert_eq!(c.total, 6200);
        assert_eq!((c.group(GROUPS[0].1), c.group(GROUPS[1].1), c.group(GROUPS[2].1)), (3000, 3000, 200));
    }
}
