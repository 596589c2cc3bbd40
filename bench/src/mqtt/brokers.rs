//! The three contenders of `bench mqtt`, started once and kept up for the whole
//! subcommand: our `pubsub`, Debian's `mosquitto` (configured in a temporary folder),
//! and the in-process [`Sink`] that shows the load generator's ceiling.

use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::sink::Sink;
use crate::error::{Context, Result};
use crate::procs::{self, Server};
use crate::Ctx;

/// Who serves a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contender {
    /// This workspace's broker.
    Ours,
    /// The anchor.
    Mosquitto,
    /// The trivial in-process forwarder.
    Sink,
}

impl Contender {
    /// Every contender, in table order.
    pub const ALL: [Contender; 3] = [Contender::Ours, Contender::Mosquitto, Contender::Sink];

    /// Its name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Contender::Ours => "pubsub",
            Contender::Mosquitto => "mosquitto",
            Contender::Sink => "sink",
        }
    }

    /// Its index in [`Contender::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The running contenders.
#[derive(Debug)]
pub struct Brokers {
    ours: Server,
    mosquitto: Server,
    sink: Sink,
    /// Holds the configuration and logs until the brokers stop.
    dir: tempfile::TempDir,
    /// How each was started, for the report.
    pub note: String,
}

impl Brokers {
    /// Builds and starts `pubsub`, starts `mosquitto` and the sink.
    pub fn start(ctx: &Ctx) -> Result<Brokers> {
        let dir = procs::temp_dir("bench-mqtt-")?;
        let pubsub = procs::workspace_binaries()?.join("pubsub");
        let mosquitto = procs::which("mosquitto", "mosquitto")?;
        let (ours, ours_args) = start_ours(ctx, &pubsub, dir.path())?;
        let (anchor, conf) = start_mosquitto(ctx, &mosquitto, dir.path())?;
        let sink = Sink::start(ctx.server_cpu())?;
        let note = format!(
            "Brokers, started by bench on 127.0.0.1 and kept up for the whole run (files in {}):\n\n\
             - pubsub: `pubsub {ours_args}`, with its defaults max-queued 1000, max-inflight 20, \
             overflow drop.\n\
             - mosquitto ({}): `mosquitto -c mosquitto.conf`, anonymous, with this mosquitto.conf \
             (queue limits as its defaults, the same as ours; \
             TCP_NODELAY on, as ours sets it: without it Nagle's algorithm and the subscribers' \
             delayed ACKs stall QoS 0 deliveries for 40 ms at a time):\n\n```\n{conf}```\n\
             - sink: a thread of bench (on the server CPU when pinning) that answers CONNECT, \
             SUBSCRIBE and QoS 1 PUBLISH and copies each PUBLISH's bytes to every subscriber, \
             with no topic matching: the load generator's ceiling.",
            dir.path().display(),
            mosquitto_version(&mosquitto),
        );
        Ok(Brokers { ours, mosquitto: anchor, sink, dir, note })
    }

    /// Where `c` listens.
    pub fn addr(&self, c: Contender) -> SocketAddr {
        match c {
            Contender::Ours => self.ours.addr,
            Contender::Mosquitto => self.mosquitto.addr,
            Contender::Sink => self.sink.addr,
        }
    }

    /// CPU time of `c`'s processes so far; zero for the in-process sink.
    pub fn cpu_time(&self, c: Contender) -> Duration {
        match c {
            Contender::Ours => self.ours.cpu_time(),
            Contender::Mosquitto => self.mosquitto.cpu_time(),
            Contender::Sink => Duration::ZERO,
        }
    }

    /// Stops all three.
    pub fn stop(self) -> Result<()> {
        self.ours.stop();
        self.mosquitto.stop();
        let sink = self.sink.stop();
        drop(self.dir);
        sink
    }
}

/// Starts `pubsub` with its log in `dir`; returns it and its arguments.
fn start_ours(ctx: &Ctx, bin: &Path, dir: &Path) -> Result<(Server, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, procs::free_port()?));
    let args = [
        "--address".to_string(),
        "127.0.0.1".into(),
        "--port".into(),
        addr.port().to_string(),
        "--threads".into(),
        ctx.threads.to_string(),
        "--sys-interval".into(),
        "0".into(),
    ];
    let mut cmd = procs::command(bin, ctx.server_cpu());
    cmd.args(&args).env("RUST_LOG", "warn").stderr(log_file(dir, "pubsub.log")?);
    Ok((Server::start("pubsub", cmd, addr)?, args.join(" ")))
}

/// Writes `mosquitto.conf` in `dir` and starts mosquitto with it; returns it and the
/// configuration text.
fn start_mosquitto(ctx: &Ctx, bin: &Path, dir: &Path) -> Result<(Server, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, procs::free_port()?));
    // TCP_NODELAY as ours (and nginx) set it: with Nagle's algorithm, mosquitto's small
    // writes to a QoS 0 subscriber, which never writes back, wait for delayed ACKs
    // (40 ms stalls; fan-in 10→1 fell from ~60–90k to 1–20k msg/s here).
    // Logging goes to stderr, which is a file in `dir`: no file for mosquitto to open
    // after it drops root for its own user.
    let conf = mosquitto_conf(addr.port());
    let path = dir.join("mosquitto.conf");
    fs::write(&path, &conf).context(|| format!("writing {}", path.display()))?;
    let mut cmd = procs::command(bin, ctx.server_cpu());
    cmd.arg("-c").arg(&path).stderr(log_file(dir, "mosquitto.log")?);
    Ok((Server::start("mosquitto", cmd, addr)?, conf))
}

/// mosquitto on 127.0.0.1:`port`, anonymous, its default queue limits spelled out,
/// TCP_NODELAY on, errors and warnings to stderr.
pub(crate) fn mosquitto_conf(port: u16) -> String {
    format!(
        "listener {port} 127.0.0.1\n\
         allow_anonymous true\n\
         persistence false\n\
         max_queued_messages 1000\n\
         max_inflight_messages 20\n\
         set_tcp_nodelay true\n\
         log_dest stderr\n\
         log_type error\n\
         log_type warning\n"
    )
}

fn log_file(dir: &Path, name: &str) -> Result<File> {
    let path = dir.join(name);
    File::create(&path).context(|| format!("creating {}", path.display()))
}

/// "mosquitto version 2.0.11", as `mosquitto -h` prints it first.
fn mosquitto_version(bin: &Path) -> String {
    Command::new(bin)
        .arg("-h")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().next().map(str::to_string))
        .unwrap_or_else(|| "version unknown".into())
}
