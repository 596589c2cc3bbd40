//! The servers under test as child processes: started (optionally pinned with
//! `taskset`), waited for until they accept, measured through `/proc` (CPU time and RSS
//! of the whole process tree), and stopped.

use std::collections::HashMap;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::error::{Context, Error, Result};

/// The CPU the servers run on when pinned; the load generator gets [`CLIENT_CPU`].
pub const SERVER_CPU: usize = 0;
/// The CPU the load generator runs on when pinned.
pub const CLIENT_CPU: usize = 1;

/// A command for `program`, prefixed with `taskset -c cpu` when `cpu` is given
/// (`taskset` execs, so the child's pid is the program's).
pub fn command(program: &Path, cpu: Option<usize>) -> Command {
    match cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpu.to_string()).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// Pins the calling thread to `cpu` (the in-process load generators).
pub fn pin_current_thread(cpu: usize) -> Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).context(|| format!("CPU {cpu} out of range"))?;
    nix::sched::sched_setaffinity(Pid::from_raw(0), &set).context(|| format!("pinning to CPU {cpu}"))
}

/// A loopback port free right now (bound, read, released).
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context(|| "binding 127.0.0.1:0".into())?;
    Ok(l.local_addr().context(|| "reading a bound port".into())?.port())
}

/// The path of `program` on `PATH` (and the usual sbin folders, where Debian puts
/// nginx and mosquitto), or an error saying which package provides it.
pub fn which(program: &str, package: &str) -> Result<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"])
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file());
    found.ok_or_else(|| Error::Tool(format!("`{program}` not found: install the Debian package `{package}`")))
}

/// Builds this workspace's server binaries (release) and returns their folder.
pub fn workspace_binaries() -> Result<PathBuf> {
    let root = workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .current_dir(&root)
        .args(["build", "--release", "--quiet", "-p", "httpd", "-p", "pubsub_protocol", "--bins"])
        .status()
        .context(|| format!("running {cargo} build"))?;
    if !status.success() {
        return Err(Error::Tool(format!("cargo build of httpd and pubsub failed ({status})")));
    }
    let exe = std::env::current_exe().context(|| "locating the bench binary".into())?;
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_else(|| root.join("target/release"));
    Ok(dir)
}

/// A temporary folder for an anchor's configuration and files, removed on drop.
/// World-readable: nginx started as root serves from it with unprivileged workers.
pub fn temp_dir(prefix: &str) -> Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .prefix(prefix)
        .permissions(fs::Permissions::from_mode(0o755))
        .tempdir()
        .context(|| format!("creating a temp dir {prefix}*"))
}

/// The workspace this binary was built from.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .expect("bench/ sits in the workspace")
}

/// A running server and everything needed to measure and stop it.
#[derive(Debug)]
pub struct Server {
    /// Short name for tables ("httpd", "nginx", ...).
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    child: Child,
}

impl Server {
    /// Spawns `cmd` and waits (up to 60 s) until `addr` accepts a connection.
    pub fn start(name: &str, mut cmd: Command, addr: SocketAddr) -> Result<Server> {
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
        let child = cmd.spawn().context(|| format!("starting {name} ({cmd:?})"))?;
        let mut server = Server { name: name.to_string(), addr, child };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(server);
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(Error::Tool(format!("{name} exited before listening on {addr}: {status}")));
            }
            if Instant::now() > deadline {
                return Err(Error::Tool(format!("{name} did not listen on {addr} within 60 s")));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its pid and every descendant's (nginx workers, `--processes` children).
    pub fn pids(&self) -> Vec<u32> {
        tree(self.pid())
    }

    /// User + system CPU time of the whole tree so far (`/proc/PID/stat`, all threads).
    pub fn cpu_time(&self) -> Duration {
        let ticks: u64 = self.pids().iter().filter_map(|p| cpu_ticks(*p)).sum();
        Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second())
    }

    /// Resident memory of the whole tree, bytes (`VmRSS`).
    pub fn rss(&self) -> u64 {
        self.pids().iter().filter_map(|p| rss_bytes(*p)).sum()
    }

    /// SIGTERM, then SIGKILL after 10 s; waits for the exit.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        for p in self.pids() {
            let _ = kill(Pid::from_raw(p as i32), Signal::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// `pid` and its descendants, from the parent links in `/proc/*/stat`.
fn tree(pid: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(p) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            if let Some(parent) = stat_fields(p).and_then(|f| f.get(1).and_then(|x| x.parse().ok())) {
                children.entry(parent).or_default().push(p);
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        out.extend(children.get(&out[i]).into_iter().flatten());
        i += 1;
    }
    out
}

/// The fields of `/proc/PID/stat` after the command name (field 3 onwards), so
/// index 0 is the state, 1 the parent pid, 11 utime and 12 stime.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &text[text.rfind(')')? + 1..];
    Some(after_name.split_whitespace().map(str::to_string).collect())
}

fn cpu_ticks(pid: u32) -> Option<u64> {
    let f = stat_fields(pid)?;
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn rss_bytes(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

fn clock_ticks_per_second() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as f64,
        _ => 100.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_measurable() {
        let me = std::process::id();
        assert!(tree(me).contains(&me));
        assert!(rss_bytes(me).is_some_and(|b| b > 0));
        assert!(cpu_ticks(me).is_some());
    }
}
