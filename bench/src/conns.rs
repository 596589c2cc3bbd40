//! `bench conns`: how much server memory an idle connection costs, and how many a
//! server can hold.
//!
//! Each server (httpd, nginx, our broker, mosquitto) is started alone; client processes
//! (this binary's hidden `conns-client` subcommand, because one process may open only
//! 20,000 files here) open connections, make one request on each (an HTTP GET, or an
//! MQTT CONNECT and PINGREQ) and then hold them idle. The server's RSS (all its
//! processes) is read before and after, and the clients check every socket is still
//! open. Each client binds its own source address (127.0.0.10, .11, ...) so the
//! ephemeral ports of one address (28,000) never run out.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrIn};

use crate::error::{Context, Error, Result};
use crate::procs::{self, Server};
use crate::report::{Chart, Series, Table};
use crate::stats::Summary;
use crate::Ctx;

/// Connections one client process opens at most (the per-process file limit is
/// 20,000 here; a few fds are the process's own).
const PER_CLIENT: usize = 19_000;
/// Connections being set up at once by one client: more would overflow the server's
/// SYN backlog and turn into retransmissions, not load.
const WINDOW: usize = 256;
/// A connection that gets no answer in this time counts as refused.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);

/// Arguments of the hidden client subcommand.
#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// Server address.
    #[arg(long)]
    addr: SocketAddrV4,
    /// Source address to bind (a loopback address of its own).
    #[arg(long)]
    source: Ipv4Addr,
    /// Connections to open.
    #[arg(long)]
    count: usize,
    /// `http` or `mqtt`.
    #[arg(long)]
    kind: Kind,
}

/// What request each held connection makes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Kind {
    Http,
    Mqtt,
}

impl Kind {
    fn request(self, i: usize) -> Vec<u8> {
        match self {
            Kind::Http => b"GET /hello.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec(),
            Kind::Mqtt => {
                use pubsub_protocol::packet::{Connect, Packet};
                let connect = Connect {
                    level: 4,
                    client_id: format!("idle-{}-{i}", std::process::id()),
                    clean_session: true,
                    keep_alive: 0,
                    will: None,
                    username: None,
                    password: None,
                };
                let mut out = Packet::Connect(connect).to_bytes();
                Packet::Pingreq.encode(&mut out);
                out
            }
        }
    }

    /// Whether `got` holds the whole answer: the 13-byte body, or CONNACK + PINGRESP.
    fn answered(self, got: &[u8]) -> bool {
        match self {
            Kind::Http => got.ends_with(crate::http::HELLO),
            Kind::Mqtt => got.len() >= 6 && got[0] == 0x20 && got[3] == 0 && got[4..6] == [0xD0, 0],
        }
    }
}

/// One server of the comparison, measured at each step.
#[derive(Debug, Default, Clone)]
struct Step {
    target: usize,
    held: usize,
    rss: u64,
}

/// Runs `bench conns`.
pub fn run(ctx: &Ctx) -> Result<()> {
    let steps: Vec<usize> = if ctx.quick { vec![500, 2_000] } else { vec![10_000, 2 * PER_CLIENT] };
    let tmp = procs::temp_dir("bench-conns-")?;
    let site = crate::http::write_site(tmp.path())?;
    let bins = procs::workspace_binaries()?;
    let mut report = ctx.report("conns")?;
    report.note(&format!(
        "Each connection makes one request (HTTP: GET of a 13-byte file; MQTT: CONNECT + PINGREQ, keep-alive 0) and is then held idle. \
         RSS per connection = (RSS of all server processes with N held − RSS after one request) / held. \
         Client processes of at most {PER_CLIENT} connections each, {WINDOW} being set up at a time; a connection unanswered after {} s counts as not held. \
         httpd runs with --processes 2 to pass the per-process file limit; nginx with 2 workers; the brokers are single-process.",
        ANSWER_TIMEOUT.as_secs()
    ));
    let servers: [(&str, Kind); 4] =
        [("httpd", Kind::Http), ("nginx", Kind::Http), ("pubsub", Kind::Mqtt), ("mosquitto", Kind::Mqtt)];
    let bar = crate::report::progress((servers.len() * steps.len()) as u64);
    let mut measured: Vec<(String, Vec<Step>)> = Vec::new();
    let mut notes = String::new();
    for (name, kind) in servers {
        bar.set_message(format!("{name}: starting"));
        let (cmd, addr, note) = server_command(ctx, name, &bins, tmp.path(), &site)?;
        notes.push_str(&note);
        let server = Server::start(name, cmd, addr)?;
        let steps = hold(&server, kind, &steps, &bar)?;
        server.stop();
        measured.push((name.to_string(), steps));
    }
    bar.finish_and_clear();
    report.note(&notes);
    publish(&mut report, &measured)?;
    report.finish()
}

/// The command line of one server, its address, and a note with its configuration.
fn server_command(
    ctx: &Ctx,
    name: &str,
    bins: &Path,
    tmp: &Path,
    site: &Path,
) -> Result<(Command, SocketAddr, String)> {
    let port = procs::free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let p = port.to_string();
    let threads = ctx.threads.to_string();
    let cpu = ctx.server_cpu();
    let mut note = String::new();
    let cmd = match name {
        "httpd" => {
            let mut c = procs::command(&bins.join("httpd"), cpu);
            c.arg("--root").arg(site).args([
                "--port",
                &p,
                "--threads",
                &threads,
                "--processes",
                "2",
                "--timeout",
                "600",
                "--quiet",
            ]);
            c
        }
        "nginx" => {
            let dir = tmp.join("nginx");
            std::fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
            let (c, conf) = crate::http::nginx(ctx, &dir, site, addr)?;
            note = format!("nginx.conf:\n\n```nginx\n{conf}```\n\n");
            c
        }
        "pubsub" => {
            let mut c = procs::command(&bins.join("pubsub"), cpu);
            c.args(["--port", &p, "--threads", &threads, "--sys-interval", "0"]);
            c
        }
        _ => {
            let conf = crate::mqtt::brokers::mosquitto_conf(port);
            let path = tmp.join("mosquitto.conf");
            std::fs::write(&path, &conf).context(|| format!("writing {}", path.display()))?;
            note = format!("mosquitto.conf:\n\n```\n{conf}```\n\n");
            let mut c = procs::command(&procs::which("mosquitto", "mosquitto")?, cpu);
            c.arg("-c").arg(&path);
            c
        }
    };
    Ok((cmd, addr, note))
}

/// A running client process and its pipes.
#[derive(Debug)]
struct ClientProc {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl ClientProc {
    fn line(&mut self) -> Result<String> {
        let mut line = String::new();
        self.stdout.read_line(&mut line).context(|| "reading a conns client".into())?;
        if line.is_empty() {
            return Err(Error::Tool("a conns client exited early".into()));
        }
        Ok(line)
    }
}

impl Drop for ClientProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Grows the number of held connections through `steps`, measuring at each.
fn hold(server: &Server, kind: Kind, steps: &[usize], bar: &indicatif::ProgressBar) -> Result<Vec<Step>> {
    one_request(server.addr, kind)?;
    let base = server.rss();
    let mut clients: Vec<ClientProc> = Vec::new();
    let mut opened = 0;
    let mut out = Vec::new();
    for &target in steps {
        bar.set_message(format!("{}: {target} connections", server.name));
        while opened < target {
            let count = (target - opened).min(PER_CLIENT);
            let mut c = spawn_client(server.addr, kind, clients.len(), count)?;
            c.line()?; // "ready ..." once every connection is answered or given up
            clients.push(c);
            opened += count;
        }
        let rss = server.rss();
        let mut held = 0;
        for c in &mut clients {
            writeln!(c.stdin, "check").context(|| "asking a conns client".into())?;
            let line = c.line()?;
            held += line.trim().strip_prefix("alive ").and_then(|n| n.parse::<usize>().ok()).unwrap_or(0);
        }
        out.push(Step { target, held, rss: rss.saturating_sub(base) });
        bar.inc(1);
    }
    Ok(out)
}

/// The "after one request" baseline: one connection, one answer, closed.
fn one_request(addr: SocketAddr, kind: Kind) -> Result<()> {
    let mut s = std::net::TcpStream::connect(addr).context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).context(|| "setting a timeout".into())?;
    s.write_all(&kind.request(0)).context(|| format!("writing to {addr}"))?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !kind.answered(&got) {
        let n = s.read(&mut buf).context(|| format!("reading from {addr}"))?;
        if n == 0 {
            return Err(Error::Tool(format!("{addr} closed before answering the first request")));
        }
        got.extend_from_slice(&buf[..n]);
    }
    Ok(())
}

fn spawn_client(addr: SocketAddr, kind: Kind, index: usize, count: usize) -> Result<ClientProc> {
    let exe = std::env::current_exe().context(|| "locating the bench binary".into())?;
    let source = Ipv4Addr::new(127, 0, 0, 10 + index as u8);
    let mut child = Command::new(exe)
        .args(["conns-client", "--addr", &addr.to_string(), "--source", &source.to_string()])
        .args(["--count", &count.to_string(), "--kind", if kind == Kind::Http { "http" } else { "mqtt" }])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context(|| "starting a conns client".into())?;
    let stdin = child.stdin.take().expect("stdin was piped");
    let stdout = BufReader::new(child.stdout.take().expect("stdout was piped"));
    Ok(ClientProc { child, stdin, stdout })
}

fn publish(report: &mut crate::report::Report, measured: &[(String, Vec<Step>)]) -> Result<()> {
    let mut table = Table::new(
        "conns",
        "bench conns: idle connections held after one request, and the server's RSS per connection",
        &["server", "target", "held", "all held", "RSS growth MiB", "RSS bytes/conn"],
    );
    let targets: Vec<usize> =
        measured.first().map(|(_, s)| s.iter().map(|s| s.target).collect()).unwrap_or_default();
    let mut series = Vec::new();
    for (name, steps) in measured {
        let mut values = Vec::new();
        for s in steps {
            let per = if s.held > 0 { s.rss as f64 / s.held as f64 } else { f64::NAN };
            table.push(vec![
                name.clone(),
                s.target.to_string(),
                s.held.to_string(),
                if s.held >= s.target { "yes" } else { "no" }.to_string(),
                format!("{:.1}", s.rss as f64 / (1024.0 * 1024.0)),
                format!("{per:.0}"),
            ]);
            values.push(Summary::of(&[per]));
        }
        series.push(Series { name: name.clone(), values });
    }
    report.table(&table)?;
    report.chart(&Chart {
        name: "conns".into(),
        title: "Server RSS per idle connection (bytes, lower is better)".into(),
        y_label: "bytes per connection".into(),
        categories: targets.iter().map(|t| format!("{t} connections")).collect(),
        series,
        reference: None,
    })
}

/// One connection of a client process.
#[derive(Debug)]
struct Held {
    stream: TcpStream,
    got: Vec<u8>,
    sent: bool,
    answered: bool,
    dead: bool,
    since: Instant,
}

/// The client process: opens `count` connections, prints `ready`, then answers each
/// `check` line with `alive N` until its stdin closes.
pub fn client(args: &ClientArgs) -> Result<()> {
    let mut poll = Poll::new().context(|| "creating a poll".into())?;
    let mut conns: Vec<Held> = Vec::with_capacity(args.count);
    let mut events = Events::with_capacity(1024);
    let (mut pending, mut failures_in_a_row) = (0usize, 0usize);
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        while pending < WINDOW && conns.len() < args.count && failures_in_a_row < 2 * WINDOW {
            let mut stream = open(args.source, args.addr)?;
            poll.registry()
                .register(&mut stream, Token(conns.len()), Interest::READABLE | Interest::WRITABLE)
                .context(|| "registering a connection".into())?;
            conns.push(Held {
                stream,
                got: Vec::new(),
                sent: false,
                answered: false,
                dead: false,
                since: Instant::now(),
            });
            pending += 1;
        }
        if pending == 0 {
            break;
        }
        poll.poll(&mut events, Some(Duration::from_millis(100))).context(|| "polling".into())?;
        for ev in &events {
            let (i, kind) = (ev.token().0, args.kind);
            let c = &mut conns[i];
            if c.answered || c.dead {
                continue;
            }
            step(c, kind, i);
            if c.answered || c.dead {
                pending -= 1;
                failures_in_a_row = if c.answered { 0 } else { failures_in_a_row + 1 };
                let _ = poll.registry().deregister(&mut c.stream);
            }
        }
        for c in conns.iter_mut().filter(|c| !c.answered && !c.dead && c.since.elapsed() > ANSWER_TIMEOUT) {
            c.dead = true;
            pending -= 1;
            failures_in_a_row += 1;
            let _ = poll.registry().deregister(&mut c.stream);
        }
    }
    let answered = conns.iter().filter(|c| c.answered).count();
    println!("ready answered={answered} tried={}", conns.len());
    std::io::stdout().flush().context(|| "writing to the parent".into())?;
    conns.retain(|c| c.answered);
    for line in std::io::stdin().lock().lines() {
        if line.context(|| "reading the parent".into())?.trim() == "check" {
            println!("alive {}", conns.iter().filter(|c| is_open(&c.stream)).count());
            std::io::stdout().flush().context(|| "writing to the parent".into())?;
        }
    }
    Ok(())
}

/// A non-blocking connect from `source` (its own ephemeral port range) to `addr`.
fn open(source: Ipv4Addr, addr: SocketAddrV4) -> Result<TcpStream> {
    let fd = socket::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context(|| "creating a socket".into())?;
    // The port is then chosen at connect time for the whole 4-tuple, so the TIME_WAIT
    // sockets of an earlier run (to another server port) never make bind fail.
    socket::setsockopt(&fd, socket::sockopt::IpBindAddressNoPort, &true)
        .context(|| "setting IP_BIND_ADDRESS_NO_PORT".into())?;
    // Closing resets instead of leaving tens of thousands of TIME_WAIT sockets that
    // would hold these ports for a minute after the run.
    socket::setsockopt(&fd, socket::sockopt::Linger, &nix::libc::linger { l_onoff: 1, l_linger: 0 })
        .context(|| "setting SO_LINGER".into())?;
    socket::bind(fd.as_raw_fd(), &SockaddrIn::from(SocketAddrV4::new(source, 0)))
        .context(|| format!("binding {source}"))?;
    match socket::connect(fd.as_raw_fd(), &SockaddrIn::from(addr)) {
        Ok(()) | Err(Errno::EINPROGRESS) => {}
        Err(e) => return Err(Error::Io { what: format!("connecting to {addr}"), source: e.into() }),
    }
    Ok(TcpStream::from_std(std::net::TcpStream::from(fd)))
}

/// Advances one connection: send the request once connected, read the answer.
fn step(c: &mut Held, kind: Kind, i: usize) {
    if !c.sent {
        if c.stream.peer_addr().is_err() {
            if matches!(c.stream.take_error(), Ok(Some(_)) | Err(_)) {
                c.dead = true;
            }
            return;
        }
        // The request is far smaller than a fresh socket's send buffer.
        c.sent = c.stream.write(&kind.request(i)).is_ok();
        c.since = Instant::now();
    }
    let mut buf = [0u8; 1024];
    loop {
        match c.stream.read(&mut buf) {
            Ok(0) => {
                c.dead = true;
                return;
            }
            Ok(n) => c.got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(_) => {
                c.dead = true;
                return;
            }
        }
    }
    if kind.answered(&c.got) {
        c.answered = true;
        c.got = Vec::new();
    }
}

/// Still open: nothing to read and no EOF or error.
fn is_open(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 1];
    matches!(stream.peek(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}
