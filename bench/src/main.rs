//! `bench`: side-by-side benchmarks of this workspace against the anchors it must beat.
//!
//! In the picture of `ARCHITECTURE.md` (repository root) it sits outside the servers: it
//! starts ours and the anchors (nginx, a hyper server, mosquitto) itself on 127.0.0.1, drives them
//! with `wrk`, `ab` or its own MQTT load generator in alternating rounds (ours, anchor,
//! ours, anchor, ...), and reports every figure as a median with its min–max, beside
//! the ratio ours/anchor taken round by round. Each subcommand prints Markdown tables and
//! writes CSV and SVG under `bench/results/` (`bench/results/quick/` for `--quick`);
//! a full run also rewrites its section of `BENCHMARKS.md`, so the published numbers are
//! the printed ones.
//!
//! Unlike the library crates it has no `sys` module: measuring Linux processes is its
//! whole job (`/proc`, `sched_setaffinity`, `getrusage`, raw sockets through `nix`), so
//! the Linux-only code is everywhere by design and the crate as a whole is refused
//! elsewhere.

#[cfg(not(target_os = "linux"))]
compile_error!(
    "bench needs Linux: it reads /proc for CPU time and RSS, pins processes with \
     sched_setaffinity, and drives sockets and pipes through nix"
);

mod conns;
mod error;
mod http;
mod mqtt;
mod procs;
mod report;
mod ring;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::Result;
use crate::report::Report;

/// Side-by-side benchmarks against nginx, hyper, mosquitto, crossbeam and std mpsc.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Finish every subcommand in a few seconds (a smoke run: figures are not meaningful).
    #[arg(long, global = true)]
    quick: bool,
    /// Do not pin servers to CPU 0 and load generators to CPU 1.
    #[arg(long, global = true)]
    no_pin: bool,
    /// Alternating rounds (ours, anchor, ours, anchor, ...); default 3 (1 with --quick).
    #[arg(long, global = true)]
    rounds: Option<usize>,
    /// Worker threads (processes for nginx) of the servers under test.
    #[arg(long, global = true, default_value_t = 2)]
    threads: usize,
    /// Results folder [default: bench/results, bench/results/quick with --quick]; only
    /// a full run into the default folder updates BENCHMARKS.md.
    #[arg(long, global = true)]
    out: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// httpd against nginx and a hyper server: wrk (keep-alive, pipelined) and ab.
    Http,
    /// The MQTT broker against mosquitto: fan-out, fan-in, latency, churn, delivery
    /// check (or, with --count, our broker's allocations and syscalls per delivery).
    Mqtt(mqtt::Args),
    /// Idle connections held after one request: server RSS per connection.
    Conns,
    /// async_pool against crossbeam's ArrayQueue and std::sync::mpsc.
    Ring,
    /// Internal: a client process of `bench conns` (holds connections until stdin closes).
    #[command(hide = true)]
    ConnsClient(conns::ClientArgs),
}

/// What every subcommand needs to know about this run.
#[derive(Debug)]
pub struct Ctx {
    /// Smoke run: short and single-round.
    pub quick: bool,
    /// Pin servers and load generators to different CPUs.
    pub pin: bool,
    /// Alternating rounds.
    pub rounds: usize,
    /// Threads (or nginx workers) of the servers.
    pub threads: usize,
    out: PathBuf,
    /// Results go to the default folder, so a full run also updates `BENCHMARKS.md`.
    publish: bool,
}

impl Ctx {
    /// The CPU for servers, if pinning.
    pub fn server_cpu(&self) -> Option<usize> {
        self.pin.then_some(procs::SERVER_CPU)
    }

    /// The CPU for load generators, if pinning.
    pub fn client_cpu(&self) -> Option<usize> {
        self.pin.then_some(procs::CLIENT_CPU)
    }

    /// A report for subcommand `name`; full runs also update `BENCHMARKS.md`.
    pub fn report(&self, name: &str) -> Result<Report> {
        let md = self.publish.then(|| procs::workspace_root().join("BENCHMARKS.md"));
        let mut r = Report::new(&self.out, name, md)?;
        r.note(&machine_note(self));
        Ok(r)
    }
}

/// The machine and settings, printed above every report.
fn machine_note(ctx: &Ctx) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "Machine: {cores} × {cpu}, Linux {}. Settings: {} round(s), {} server threads, {}{}.",
        kernel.trim(),
        ctx.rounds,
        ctx.threads,
        if ctx.pin { "servers pinned to CPU 0 and load generators to CPU 1" } else { "not pinned" },
        if ctx.quick { ", --quick (smoke run, not a measurement)" } else { "" }
    )
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    if let Command::ConnsClient(args) = &cli.command {
        return exit(conns::client(args));
    }
    let root = procs::workspace_root();
    let ctx = Ctx {
        publish: !cli.quick && cli.out.is_none(),
        quick: cli.quick,
        pin: !cli.no_pin && std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2,
        rounds: cli.rounds.unwrap_or(if cli.quick { 1 } else { 3 }).max(1),
        threads: cli.threads.max(1),
        out: cli.out.unwrap_or_else(|| {
            if cli.quick {
                root.join("bench/results/quick")
            } else {
                root.join("bench/results")
            }
        }),
    };
    exit(match cli.command {
        Command::Http => http::run(&ctx),
        Command::Mqtt(args) => mqtt::run(&ctx, &args),
        Command::Conns => conns::run(&ctx),
        Command::Ring => ring::run(&ctx),
        Command::ConnsClient(_) => unreachable!("handled above"),
    })
}

fn exit(result: Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}
