//! `bench http`: httpd against nginx and a hyper server, driven by `wrk` and `ab`.
//!
//! All three serve the same folder (a 13-byte `hello.txt`, a 4 KiB and a 1 MiB file;
//! hyper answers the same 13 bytes to any path, so it only takes part in the hello
//! cases). Each case runs in alternating rounds (httpd, nginx, hyper, httpd, ...) with
//! the servers pinned to CPU 0 and the load generator to CPU 1 unless `--no-pin`.
//! Beside requests/s, latency and bytes/s, the server's CPU time per request is taken
//! from `/proc/PID/stat` of every server process: on 2 cores the client and loopback
//! saturate before the server does, so CPU per request is the steadier figure.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::error::{Context, Error, Result};
use crate::procs::{self, Server};
use crate::Ctx;

mod publish;
use publish::publish;

/// How many of the contenders (the first ones) are ours: httpd and httpd inline.
const OURS: usize = 2;

/// The 13 bytes every server answers in the hello cases.
pub(crate) const HELLO: &[u8] = b"Hello, World!";

/// The Lua script that makes wrk write 16 pipelined requests at a time.
const PIPELINE_LUA: &str = r#"init = function(args)
  local r = {}
  for i = 1, 16 do r[i] = wrk.format(nil, wrk.path) end
  req = table.concat(r)
end
request = function() return req end
"#;

/// Which load generator a case uses and how.
#[derive(Debug, Clone, Copy)]
enum Load {
    /// `wrk -tT -cC`, optionally 16 requests per write.
    Wrk { threads: u32, conns: u32, pipelined: bool },
    /// `ab -cC [-k] -n N`.
    Ab { conns: u32, keep_alive: bool },
}

/// One row group of the report: a load on one file.
#[derive(Debug, Clone, Copy)]
struct Case {
    label: &'static str,
    path: &'static str,
    load: Load,
}

const CASES: [Case; 7] = [
    Case {
        label: "wrk -t1 -c64\nhello 13 B",
        path: "/hello.txt",
        load: Load::Wrk { threads: 1, conns: 64, pipelined: false },
    },
    Case {
        label: "wrk -t1 -c64\n4 KiB",
        path: "/4k.bin",
        load: Load::Wrk { threads: 1, conns: 64, pipelined: false },
    },
    Case {
        label: "wrk -t1 -c64\n1 MiB",
        path: "/1m.bin",
        load: Load::Wrk { threads: 1, conns: 64, pipelined: false },
    },
    Case {
        label: "wrk -t2 -c256\nhello",
        path: "/hello.txt",
        load: Load::Wrk { threads: 2, conns: 256, pipelined: false },
    },
    Case {
        label: "wrk -t2 -c256\n16 pipelined",
        path: "/hello.txt",
        load: Load::Wrk { threads: 2, conns: 256, pipelined: true },
    },
    Case { label: "ab -k -c32\nhello", path: "/hello.txt", load: Load::Ab { conns: 32, keep_alive: true } },
    Case {
        label: "ab -c32 (no -k)\nhello",
        path: "/hello.txt",
        load: Load::Ab { conns: 32, keep_alive: false },
    },
];

/// What one run of a load generator against one server measured.
#[derive(Debug, Clone, Copy, Default)]
struct Measure {
    requests: f64,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    bytes_per_s: f64,
    errors: f64,
    cpu_us_per_req: f64,
}

/// A server under test and whether it serves every file or only the hello answer.
#[derive(Debug)]
struct Contender {
    server: Server,
    files: bool,
}

/// Runs `bench http`.
pub fn run(ctx: &Ctx) -> Result<()> {
    let tmp = procs::temp_dir("bench-http-")?;
    let site = write_site(tmp.path())?;
    let lua = tmp.path().join("pipeline.lua");
    fs::write(&lua, PIPELINE_LUA).context(|| format!("writing {}", lua.display()))?;
    let tools = Tools { wrk: procs::which("wrk", "wrk")?, ab: procs::which("ab", "apache2-utils")?, lua };

    let mut report = ctx.report("http")?;
    let (contenders, notes) = start_servers(ctx, tmp.path(), &site)?;
    report.note(&notes);
    report.note(&format!(
        "Load, pinned to CPU {} unless --no-pin: `wrk -tT -cC -d{}s --latency URL` (with `-s pipeline.lua`, \
         16 requests per write, for the pipelined case); `ab -q -c 32 [-k] -n N URL` with N = {} with -k and \
         {} without (counts, not -t: ab allocates its statistics for -n up front). Each server first gets a \
         1 s warm-up. CPU µs/req = user + system time of every server process over the run / requests done.",
        procs::CLIENT_CPU,
        if ctx.quick { 1 } else { 5 },
        ab_requests(ctx.quick, true),
        ab_requests(ctx.quick, false),
    ));

    let runs: usize = CASES.iter().map(|c| contenders.iter().filter(|k| applies(k, c)).count()).sum();
    let bar = crate::report::progress((runs * ctx.rounds + contenders.len()) as u64);
    for c in &contenders {
        bar.set_message(format!("warm-up {}", c.server.name));
        measure(ctx, &tools, &c.server, &CASES[0], true)?;
        bar.inc(1);
    }
    // results[case][contender] = one Measure per round
    let mut results: Vec<Vec<Vec<Measure>>> = vec![vec![Vec::new(); contenders.len()]; CASES.len()];
    for (ci, case) in CASES.iter().enumerate() {
        for round in 0..ctx.rounds {
            for (k, c) in contenders.iter().enumerate().filter(|(_, c)| applies(c, case)) {
                bar.set_message(format!(
                    "{} · {} · round {}",
                    case.label.replace('\n', " "),
                    c.server.name,
                    round + 1
                ));
                results[ci][k].push(measure(ctx, &tools, &c.server, case, false)?);
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    let names: Vec<String> = contenders.iter().map(|c| c.server.name.clone()).collect();
    drop(contenders);
    publish(&mut report, &names, OURS, &results)?;
    report.finish()
}

/// Paths of the load generators and the pipelining script.
#[derive(Debug)]
struct Tools {
    wrk: PathBuf,
    ab: PathBuf,
    lua: PathBuf,
}

fn applies(c: &Contender, case: &Case) -> bool {
    c.files || case.path == "/hello.txt"
}

/// The served folder: the same bytes for every server.
pub(crate) fn write_site(tmp: &Path) -> Result<PathBuf> {
    let site = tmp.join("site");
    fs::create_dir_all(&site).context(|| format!("creating {}", site.display()))?;
    let pattern = |n: usize| (0..n).map(|i| b'a' + (i % 26) as u8).collect::<Vec<u8>>();
    for (name, bytes) in
        [("hello.txt", HELLO.to_vec()), ("4k.bin", pattern(4096)), ("1m.bin", pattern(1 << 20))]
    {
        let path = site.join(name);
        fs::write(&path, bytes).context(|| format!("writing {}", path.display()))?;
    }
    Ok(site)
}

/// Starts httpd, nginx and hyper (building hyper on first use); returns them with a
/// note giving each command line and nginx's configuration.
fn start_servers(ctx: &Ctx, tmp: &Path, site: &Path) -> Result<(Vec<Contender>, String)> {
    let bins = procs::workspace_binaries()?;
    let threads = ctx.threads.to_string();
    let mut note = String::new();

    // httpd twice: the default, and the inline option side by side with it (one thread
    // per process runs everything, nginx's shape, as many processes as the others have
    // threads).
    let mut httpd = |name: &str, mode: &[&str]| -> Result<Contender> {
        let addr = loopback(procs::free_port()?);
        let mut cmd = procs::command(&bins.join("httpd"), ctx.server_cpu());
        cmd.arg("--root").arg(site).args(["--address", "127.0.0.1", "--port", &addr.port().to_string()]);
        cmd.args(mode).arg("--quiet");
        note.push_str(&format!("{name}: `{}`\n\n", show_cmd(&cmd)));
        Ok(Contender { server: Server::start(name, cmd, addr)?, files: true })
    };
    let default = httpd("httpd", &["--threads", &threads])?;
    let inline = httpd("httpd inline", &["--inline", "--processes", &threads])?;

    let addr = loopback(procs::free_port()?);
    let (cmd, conf) = nginx(ctx, tmp, site, addr)?;
    note.push_str(&format!("nginx: `{}` with\n\n```nginx\n{conf}```\n\n", show_cmd(&cmd)));
    let nginx = Contender { server: Server::start("nginx", cmd, addr)?, files: true };

    let addr = loopback(procs::free_port()?);
    let mut cmd = procs::command(&hyper_anchor()?, ctx.server_cpu());
    cmd.arg(addr.port().to_string()).arg(&threads);
    note.push_str(&format!(
        "hyper: `{}` (bench/hyper_anchor: hyper 1.x http1, tokio {} workers, 13 bytes to any path)",
        show_cmd(&cmd),
        ctx.threads
    ));
    let hyper = Contender { server: Server::start("hyper", cmd, addr)?, files: false };
    Ok((vec![default, inline, nginx, hyper], note))
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn show_cmd(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// nginx serving `site` on `addr` (its configuration and files in `dir`): the command
/// and the configuration, for the report.
pub(crate) fn nginx(ctx: &Ctx, dir: &Path, site: &Path, addr: SocketAddr) -> Result<(Command, String)> {
    let conf = nginx_conf(ctx.threads, dir, site, addr);
    let path = dir.join("nginx.conf");
    fs::write(&path, &conf).context(|| format!("writing {}", path.display()))?;
    let mut cmd = procs::command(&procs::which("nginx", "nginx")?, ctx.server_cpu());
    cmd.arg("-c").arg(&path).arg("-p").arg(dir).arg("-e").arg(dir.join("error.log"));
    Ok((cmd, conf))
}

/// nginx as its users tune it for static files, workers = our threads; connections
/// and keep-alive sized for `bench conns` too (20,000 per worker, idle for 10 minutes).
fn nginx_conf(workers: usize, tmp: &Path, site: &Path, addr: SocketAddr) -> String {
    let t = tmp.display();
    format!(
        "worker_processes {workers};
daemon off;
master_process on;
pid {t}/nginx.pid;
error_log {t}/error.log warn;
worker_rlimit_nofile 20000;
events {{ worker_connections 20000; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    open_file_cache max=1000 inactive=60s;
    keepalive_timeout 600s;
    keepalive_requests 1000000;
    client_body_temp_path {t}/body;
    proxy_temp_path {t}/proxy;
    fastcgi_temp_path {t}/fastcgi;
    uwsgi_temp_path {t}/uwsgi;
    scgi_temp_path {t}/scgi;
    types {{ text/plain txt; application/octet-stream bin; }}
    server {{
        listen {addr};
        root {};
    }}
}}
",
        site.display()
    )
}

/// The hyper anchor's binary, built (release, own target dir) on first use.
fn hyper_anchor() -> Result<PathBuf> {
    let root = procs::workspace_root();
    let target = root.join("target/hyper_anchor");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = root.join("bench/hyper_anchor/Cargo.toml");
    let status = Command::new(&cargo)
        .args(["build", "--release", "--quiet", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        .status()
        .context(|| format!("building {}", manifest.display()))?;
    if !status.success() {
        return Err(Error::Tool(format!("building {} failed ({status})", manifest.display())));
    }
    Ok(target.join("release/hyper_anchor"))
}

/// Runs one case against one server and reads what it measured.
fn measure(ctx: &Ctx, tools: &Tools, server: &Server, case: &Case, warm_up: bool) -> Result<Measure> {
    let url = format!("http://{}{}", server.addr, case.path);
    let secs = if ctx.quick || warm_up { 1 } else { 5 };
    let mut cmd;
    match case.load {
        Load::Wrk { threads, conns, pipelined } => {
            cmd = procs::command(&tools.wrk, ctx.client_cpu());
            cmd.args([
                "-t",
                &threads.to_string(),
                "-c",
                &conns.to_string(),
                "-d",
                &format!("{secs}s"),
                "--latency",
            ]);
            if pipelined {
                cmd.arg("-s").arg(&tools.lua);
            }
        }
        Load::Ab { conns, keep_alive } => {
            // Counts, not -t: ab allocates its statistics for -n up front, and
            // without -k each request leaves a TIME_WAIT socket behind.
            let n = ab_requests(ctx.quick || warm_up, keep_alive);
            cmd = procs::command(&tools.ab, ctx.client_cpu());
            cmd.args(["-q", "-n", &n.to_string(), "-c", &conns.to_string()]);
            if keep_alive {
                cmd.arg("-k");
            }
        }
    }
    cmd.arg(&url);
    let cpu_before = server.cpu_time();
    let out = cmd.output().context(|| format!("running {}", show_cmd(&cmd)))?;
    let cpu = server.cpu_time().saturating_sub(cpu_before);
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(Error::Tool(format!(
            "{} against {} failed ({}): {err}{text}",
            show_cmd(&cmd),
            server.name,
            out.status
        )));
    }
    let parsed = match case.load {
        Load::Wrk { .. } => parse_wrk(&text),
        Load::Ab { .. } => parse_ab(&text),
    };
    let mut m = parsed
        .ok_or_else(|| Error::Tool(format!("could not read the output of {}:\n{text}", show_cmd(&cmd))))?;
    m.cpu_us_per_req = cpu_per_request(cpu, m.requests);
    Ok(m)
}

/// Requests per `ab` run: enough for a few seconds, few enough that the TIME_WAIT
/// sockets of a run without keep-alive do not exhaust the ephemeral ports.
fn ab_requests(short: bool, keep_alive: bool) -> u32 {
    match (short, keep_alive) {
        (true, true) => 20_000,
        (true, false) => 2_000,
        (false, true) => 300_000,
        (false, false) => 20_000,
    }
}

fn cpu_per_request(cpu: Duration, requests: f64) -> f64 {
    if requests > 0.0 {
        cpu.as_secs_f64() * 1e6 / requests
    } else {
        f64::NAN
    }
}

/// Reads wrk's summary (run with `--latency`).
fn parse_wrk(text: &str) -> Option<Measure> {
    let mut m = Measure::default();
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", v] => m.p50_ms = duration_ms(v)?,
            ["99%", v] => m.p99_ms = duration_ms(v)?,
            [n, "requests", "in", ..] => m.requests = n.parse().ok()?,
            ["Requests/sec:", v] => m.rps = v.parse().ok()?,
            ["Transfer/sec:", v] => m.bytes_per_s = size_bytes(v)?,
            ["Socket", "errors:", rest @ ..] => {
                m.errors +=
                    rest.iter().filter_map(|w| w.trim_end_matches(',').parse::<f64>().ok()).sum::<f64>();
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => m.errors += n.parse::<f64>().ok()?,
            _ => {}
        }
    }
    (m.rps > 0.0).then_some(m)
}

/// Reads ab's summary.
fn parse_ab(text: &str) -> Option<Measure> {
    let mut m = Measure::default();
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Complete", "requests:", n] => m.requests = n.parse().ok()?,
            ["Failed", "requests:", n, ..] => m.errors += n.parse::<f64>().ok()?,
            ["Non-2xx", "responses:", n] => m.errors += n.parse::<f64>().ok()?,
            ["Requests", "per", "second:", v, ..] => m.rps = v.parse().ok()?,
            ["Transfer", "rate:", v, ..] => m.bytes_per_s = v.parse::<f64>().ok()? * 1024.0,
            ["50%", v] => m.p50_ms = v.parse().ok()?,
            ["99%", v] => m.p99_ms = v.parse().ok()?,
            _ => {}
        }
    }
    (m.rps > 0.0).then_some(m)
}

/// `1.46ms`, `537.99us`, `1.02s`, `2.00m` → milliseconds.
fn duration_ms(v: &str) -> Option<f64> {
    let split = v.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => return None,
    })
}

/// `493.89KB`, `1.20GB`, `512B` → bytes (wrk uses powers of 1024).
fn size_bytes(v: &str) -> Option<f64> {
    let split = v.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse().ok()?;
    let scale = match unit {
        "B" => 1.0,
        "KB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        "TB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(n * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK: &str = "Running 1s test @ http://127.0.0.1:18999/h.txt
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.54ms  537.99us   8.18ms   76.65%
  Latency Distribution
     50%    1.46ms
     75%    1.78ms
     99%  310.00us
  2541 requests in 1.00s, 493.99KB read
  Socket errors: connect 0, read 2, write 1, timeout 0
  Non-2xx or 3xx responses: 3
Requests/sec:   2540.47
Transfer/sec:    493.89KB
";

    const AB: &str = "Complete requests:      200
Failed requests:        4
   (Connect: 0, Receive: 0, Length: 4, Exceptions: 0)
Requests per second:    2251.85 [#/sec] (mean)
Transfer rate:          437.61 [Kbytes/sec] received
Percentage of the requests served within a certain time (ms)
  50%      2
  99%      5
 100%      6 (longest request)
";

    #[test]
    fn reads_wrk() {
        let m = parse_wrk(WRK).expect("the sample is a complete wrk summary");
        assert_eq!((m.requests, m.rps, m.p50_ms, m.p99_ms, m.errors), (2541.0, 2540.47, 1.46, 0.31, 6.0));
        assert!((m.bytes_per_s - 493.89 * 1024.0).abs() < 1e-6);
    }

    #[test]
    fn reads_ab() {
        let m = parse_ab(AB).expect("the sample is a complete ab summary");
        assert_eq!((m.requests, m.rps, m.p50_ms, m.p99_ms, m.errors), (200.0, 2251.85, 2.0, 5.0, 4.0));
    }

    #[test]
    fn refuses_output_without_a_rate() {
        assert!(parse_wrk("unable to connect to 127.0.0.1:1 Connection refused").is_none());
        assert!(parse_ab("apr_socket_recv: Connection refused (111)").is_none());
    }

    #[test]
    fn units() {
        assert_eq!(duration_ms("2.00s"), Some(2000.0));
        assert_eq!(size_bytes("1.50GB"), Some(1.5 * 1024.0 * 1024.0 * 1024.0));
        assert_eq!(size_bytes("12x"), None);
    }
}
