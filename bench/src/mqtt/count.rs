//! `bench mqtt --count`: what our broker spends per delivered message, counted, not
//! timed: heap allocations (a `pubsub` built with the `count-alloc` feature publishes
//! its totals under `$SYS/broker/heap/`) and syscalls ([`syscalls`](super::syscalls): perf or strace).
//!
//! Each scenario runs twice: once reading the allocation count at the edges of the
//! measured window, once with the tracer attached over it (a tracer slows the broker,
//! which would change what the allocations run sees). Set-up and DISCONNECT are outside
//! the window. The broker publishes `$SYS` every second; reading a fresh value waits for
//! the next update, and the allocations of the updates inside the window, measured while
//! idle beforehand, are taken off.

use std::io::{ErrorKind, Read};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use pubsub_protocol::packet::{decode, Packet, QoS};

use super::load::{self, Mark, Scenario};
use super::setup;
use super::syscalls::{Counts, Tracer, GROUPS};
use super::tally::Outcome;
use super::wire::MAX_PACKET;
use crate::error::{Context, Error, Result};
use crate::procs::{self, Server};
use crate::report::{Report, Table};
use crate::Ctx;

/// Where the counting broker publishes its totals.
const HEAP: &str = "$SYS/broker/heap/";
/// Longest wait for a `$SYS` update (they come every second).
const UPDATE: Duration = Duration::from_secs(5);
/// Publishing time of each run.
const PUBLISH_FOR: Duration = Duration::from_secs(2);

/// Runs the count mode.
pub fn run(ctx: &Ctx) -> Result<()> {
    let bin = build()?;
    let tracer = Tracer::find()?;
    let dir = procs::temp_dir("bench-mqtt-count-")?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, procs::free_port()?));
    let mut cmd = procs::command(&bin, ctx.server_cpu());
    cmd.args(["--address", "127.0.0.1", "--port", &addr.port().to_string()])
        .args(["--threads", &ctx.threads.to_string(), "--sys-interval", "1"])
        .env("RUST_LOG", "warn");
    let server = Server::start("pubsub (count-alloc)", cmd, addr)?;
    let mut r = Report::new(&ctx.out, "mqtt_count", None)?;
    r.note(&crate::machine_note(ctx));
    let rows = ctx.client_cpu().map_or(Ok(()), procs::pin_current_thread).and_then(|()| {
        let mut heap = Heap::watch(addr)?;
        let tick = heap.idle_tick()?;
        let trace_out = dir.path().join("syscalls.txt");
        scenarios()
            .iter()
            .enumerate()
            .map(|(i, sc)| measure(&server, &mut heap, tick, &tracer, &trace_out, sc, i as u64))
            .collect::<Result<Vec<Row>>>()
            .map(|rows| (rows, tick))
    });
    server.stop();
    let (rows, tick) = rows?;
    r.note(&note(&tracer, tick));
    r.table(&table(&rows))?;
    r.finish()
}

/// Fan-out 1→100 and 1→1000 at QoS 0, 1→100 at QoS 1, windows as in the comparison.
fn scenarios() -> Vec<Scenario> {
    [(100, QoS::AtMostOnce), (1000, QoS::AtMostOnce), (100, QoS::AtLeastOnce)]
        .into_iter()
        .map(|(subscribers, qos)| {
            let w = super::fan_out_window(subscribers);
            Scenario {
                publishers: 1,
                subscribers,
                qos,
                window: w,
                total_window: w,
                duration: PUBLISH_FOR,
                interval: None,
            }
        })
        .collect()
}

/// Builds `pubsub` with the counting allocator in its own target folder (so the normal
/// build in `target/release` is not replaced) and returns the binary.
fn build() -> Result<PathBuf> {
    let root = procs::workspace_root();
    let exe = std::env::current_exe().context(|| "locating the bench binary".into())?;
    let target = exe.parent().and_then(|p| p.parent()).map_or_else(|| root.join("target"), PathBuf::from);
    let target = target.join("count-alloc");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .current_dir(&root)
        .args(["build", "--release", "--quiet", "-p", "pubsub_protocol", "--bin", "pubsub"])
        .args(["--features", "count-alloc", "--target-dir"])
        .arg(&target)
        .status()
        .context(|| format!("running {cargo} build"))?;
    if !status.success() {
        return Err(Error::Tool(format!("cargo build of pubsub --features count-alloc failed ({status})")));
    }
    Ok(target.join("release/pubsub"))
}

/// The figures of one scenario.
#[derive(Debug)]
struct Row {
    label: String,
    /// The allocations run and its allocations and bytes (after the `$SYS` correction).
    alloc_run: Outcome,
    allocations: f64,
    bytes: f64,
    /// The traced run and its syscalls.
    trace_run: Outcome,
    syscalls: Counts,
}

fn measure(
    server: &Server,
    heap: &mut Heap,
    tick: Sample,
    tracer: &Tracer,
    trace_out: &std::path::Path,
    sc: &Scenario,
    i: u64,
) -> Result<Row> {
    let cpu = || server.cpu_time();
    let mut edges = Vec::new();
    let mut marks = |_: Mark| heap.fresh().map(|s| edges.push(s));
    let alloc_run = load::run(server.addr, sc, 2 * i, &cpu, &mut marks)?;
    let [before, after] = edges[..] else { return Err(Error::Tool("allocation count not read".into())) };
    let updates = (after.update - before.update) as f64;
    let allocations = (after.allocations - before.allocations) as f64 - updates * tick.allocations as f64;
    let bytes = (after.bytes - before.bytes) as f64 - updates * tick.bytes as f64;
    let (mut tracing, mut syscalls) = (None, None);
    let mut marks = |mark: Mark| {
        match mark {
            Mark::Start => tracing = Some(tracer.attach(server.pid(), trace_out)?),
            Mark::End => syscalls = tracing.take().map(|t| t.finish()).transpose()?,
        }
        Ok(())
    };
    let trace_run = load::run(server.addr, sc, 2 * i + 1, &cpu, &mut marks)?;
    let syscalls = syscalls.ok_or_else(|| Error::Tool("the tracer did not run".into()))?;
    let label = format!("fan-out 1→{} QoS {}", sc.subscribers, sc.qos as u8);
    Ok(Row { label, alloc_run, allocations, bytes, trace_run, syscalls })
}

fn note(tracer: &Tracer, tick: Sample) -> String {
    format!(
        "Counts of our broker per delivered message (a delivery is one message reaching one \
         subscriber): `pubsub` built with `--features count-alloc` (every allocation and \
         reallocation through a counting wrapper of the system allocator), `--sys-interval 1`. \
         Fan-out runs as in the comparison, publishing {:.0} s each, once per scenario (--rounds \
         does not apply); set-up and DISCONNECT are outside the counted window. Allocations: `$SYS/broker/heap/allocations` read fresh at \
         both edges, less {} allocations ({} bytes) per `$SYS` update inside the window \
         (measured idle). Syscalls: a second run of each scenario under {}, attached over the \
         same window; its own delivered msg/s shows how much the tracer slowed the broker. \
         write = write, writev, sendto, sendmsg; read = read, readv, recvfrom, recvmsg; \
         epoll_wait = epoll_wait, epoll_pwait(2); all = every syscall.",
        PUBLISH_FOR.as_secs_f64(),
        tick.allocations,
        tick.bytes,
        tracer.name(),
    )
}

/// `n / d` with `digits` decimals, `–` for no deliveries.
fn per(n: f64, d: u64, digits: usize) -> String {
    if d == 0 {
        return "–".into();
    }
    format!("{:.*}", digits, n / d as f64)
}

fn table(rows: &[Row]) -> Table {
    let mut columns = vec![
        "scenario",
        "deliveries (alloc run)",
        "msg/s (alloc run)",
        "allocs/delivery",
        "alloc bytes/delivery",
        "allocs/message",
        "deliveries (traced run)",
        "msg/s (traced run)",
    ];
    columns.extend(GROUPS.iter().map(|(g, _)| *g));
    columns.push("all syscalls");
    let mut t = Table::new("mqtt_count", "pubsub: allocations and syscalls per delivered message", &columns);
    for row in rows {
        let (a, s) = (&row.alloc_run, &row.trace_run);
        let mut cells = vec![
            row.label.clone(),
            a.delivered.to_string(),
            format!("{:.0}", a.rate()),
            per(row.allocations, a.delivered, 3),
            per(row.bytes, a.delivered, 1),
            per(row.allocations, a.published, 1),
            s.delivered.to_string(),
            format!("{:.0}", s.rate()),
        ];
        for (_, names) in GROUPS {
            cells.push(per(row.syscalls.group(names) as f64, s.delivered, 4));
        }
        let total = if row.syscalls.total > 0 {
            per(row.syscalls.total as f64, s.delivered, 4)
        } else {
            "–".into()
        };
        cells.push(total);
        t.push(cells);
    }
    t
}

/// A reading of the heap totals: the `update`-th `$SYS` update seen by the watcher.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Sample {
    update: u64,
    allocations: u64,
    bytes: u64,
}

/// A client subscribed to `$SYS/broker/heap/+`.
#[derive(Debug)]
struct Heap {
    ready: setup::Ready,
    last: Sample,
}

impl Heap {
    fn watch(addr: SocketAddr) -> Result<Heap> {
        let filter = format!("{HEAP}+");
        let ready = setup::client(addr, "bench-heap-watch", Some(&filter), QoS::AtMostOnce)?;
        ready.stream.set_read_timeout(Some(UPDATE)).context(|| "setting a read timeout".into())?;
        Ok(Heap { ready, last: Sample::default() })
    }

    /// The cost of one `$SYS` update on an idle broker (two updates apart, halved).
    fn idle_tick(&mut self) -> Result<Sample> {
        let a = self.fresh()?;
        self.fresh()?;
        let b = self.fresh()?;
        let half = |x: u64, y: u64| y.saturating_sub(x) / 2;
        Ok(Sample {
            update: 1,
            allocations: half(a.allocations, b.allocations),
            bytes: half(a.bytes, b.bytes),
        })
    }

    /// The totals of the first update that starts after this call.
    fn fresh(&mut self) -> Result<Sample> {
        self.take_buffered()?;
        let seen = self.last.update;
        let deadline = Instant::now() + UPDATE;
        // An update publishes allocations, then bytes: wait for both.
        while self.last.update == seen || self.last.bytes_update() != self.last.update {
            if Instant::now() > deadline {
                return Err(Error::Tool(format!(
                    "no {HEAP}... update within {UPDATE:?}: is count-alloc on?"
                )));
            }
            self.read_some()?;
        }
        Ok(self.last)
    }

    /// Takes in what arrived already, without waiting.
    fn take_buffered(&mut self) -> Result<()> {
        let stream = &self.ready.stream;
        stream.set_nonblocking(true).context(|| "making the $SYS watcher non-blocking".into())?;
        let result = loop {
            match self.read_some() {
                Err(Error::Io { source, .. }) if source.kind() == ErrorKind::WouldBlock => break Ok(()),
                Err(e) => break Err(e),
                Ok(()) => {}
            }
        };
        self.ready.stream.set_nonblocking(false).context(|| "making the $SYS watcher blocking".into())?;
        result
    }

    /// One read, and the updates it completes.
    fn read_some(&mut self) -> Result<()> {
        let mut buf = [0u8; 4096];
        let n = match self.ready.stream.read(&mut buf) {
            Ok(0) => return Err(Error::Tool("the broker closed the $SYS watcher".into())),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => 0,
            Err(e) => return Err(e).context(|| "reading $SYS updates".into()),
        };
        self.ready.pending.extend_from_slice(&buf[..n]);
        while let Some((packet, used)) =
            decode(&self.ready.pending, MAX_PACKET).map_err(|e| Error::Tool(format!("$SYS: {e}")))?
        {
            self.ready.pending.drain(..used);
            if let Packet::Publish(p) = packet {
                self.last.take(&p.topic, &p.payload);
            }
        }
        Ok(())
    }
}

impl Sample {
    /// Counts a `$SYS/broker/heap/...` message; an allocations message starts an update.
    fn take(&mut self, topic: &str, payload: &[u8]) {
        let Some(n) = std::str::from_utf8(payload).ok().and_then(|s| s.trim().parse::<u64>().ok()) else {
            return;
        };
        match topic.strip_prefix(HEAP) {
            Some("allocations") => {
                self.update += 1;
                self.allocations = n;
                self.bytes = u64::MAX;
            }
            Some("bytes") => self.bytes = n,
            _ => {}
        }
    }

    /// `update` once this update's bytes have arrived too.
    fn bytes_update(&self) -> u64 {
        if self.bytes == u64::MAX {
            self.update.wrapping_sub(1)
        } else {
            self.update
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_is_allocations_then_bytes() {
        let mut s = Sample::default();
        s.take("$SYS/broker/heap/allocations", b"1200");
        assert_eq!((s.update, s.allocations, s.bytes_update()), (1, 1200, 0), "bytes still to come");
        s.take("$SYS/broker/heap/bytes", b"64000");
        assert_eq!((s.update, s.bytes, s.bytes_update()), (1, 64000, 1));
        s.take("$SYS/broker/uptime", b"5 seconds");
        s.take("$SYS/broker/heap/allocations", b"not a number");
        assert_eq!(s.update, 1, "other topics and bad payloads are ignored");
    }
}
