//! The `httpd` binary under real load generators: `ab` (keep-alive and not), `wrk`,
//! a 1 GiB file with flat memory; its command line; and its access log: one Common
//! Log Format line per request, with the request line, status and body size right.

mod util;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{SystemTime, UNIX_EPOCH};

use util::{read_response, tool, TempSite, PATIENCE};

struct Httpd {
    child: Child,
    port: u16,
    /// Every line the server writes to stderr after it listens.
    stderr: Receiver<String>,
}

impl Httpd {
    /// Starts the binary serving `root`, without the access log.
    fn start(root: &std::path::Path) -> Httpd {
        Httpd::start_with(root, &["--quiet"])
    }

    /// Starts the binary serving `root` with `args` added; returns once it listens.
    fn start_with(root: &std::path::Path, args: &[&str]) -> Httpd {
        let mut child = Command::new(env!("CARGO_BIN_EXE_httpd"))
            .args(["--port", "0", "--threads", "2", "--root"])
            .arg(root)
            .args(args)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .expect("httpd starts");
        let mut lines = BufReader::new(child.stderr.take().expect("piped"));
        let mut line = String::new();
        let port = loop {
            line.clear();
            assert!(lines.read_line(&mut line).expect("read stderr") > 0, "httpd exited before listening");
            if let Some(rest) = line.split("on http://127.0.0.1:").nth(1) {
                break rest.trim_end().trim_end_matches('/').parse().expect("a port");
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        let (tx, stderr) = channel();
        std::thread::spawn(move || {
            for line in lines.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Httpd { child, port, stderr }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("procfs");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }
}

impl Drop for Httpd {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("the tool runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

fn number_after(text: &str, label: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// `ab` with and without keep-alive: every request completes with a 2xx.
fn ab_completes_everything(httpd: &Httpd) {
    for args in [&["-k", "-n", "20000", "-c", "32"][..], &["-n", "5000", "-c", "32"][..]] {
        let out = run(Command::new(tool("ab")).arg("-q").args(args).arg(httpd.url("/hello.txt")));
        let complete = number_after(&out, "Complete requests:").expect("ab reports completions");
        assert_eq!(complete, args[args.len() - 3].parse::<u64>().expect("n"), "{out}");
        assert_eq!(number_after(&out, "Failed requests:"), Some(0), "{out}");
        assert_eq!(number_after(&out, "Non-2xx responses:").unwrap_or(0), 0, "{out}");
    }
}

#[test]
fn ab_with_and_without_keep_alive_reports_no_failures() {
    let site = TempSite::new();
    let httpd = Httpd::start(&site.root());
    ab_completes_everything(&httpd);
}

#[test]
fn inline_with_two_processes_serves_ab_and_exits_0_on_sigterm() {
    let site = TempSite::new();
    let mut httpd = Httpd::start_with(&site.root(), &["--quiet", "--inline", "--processes", "2"]);
    ab_completes_everything(&httpd);
    let pid = nix::unistd::Pid::from_raw(httpd.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal the root");
    let deadline = std::time::Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = httpd.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the inline server did not exit within {PATIENCE:?} of SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert!(status.success(), "exit status after SIGTERM: {status}");
}

#[test]
fn wrk_reports_no_socket_errors_and_no_non_2xx() {
    let site = TempSite::new();
    let httpd = Httpd::start(&site.root());
    let out = run(Command::new(tool("wrk")).args(["-t1", "-c64", "-d3s"]).arg(httpd.url("/hello.txt")));
    assert!(!out.contains("Socket errors"), "{out}");
    assert!(!out.contains("Non-2xx"), "{out}");
    assert!(out.contains("requests in"), "{out}");
}

#[test]
fn a_1_gib_file_is_served_with_flat_memory() {
    let site = TempSite::new();
    let big = site.root().join("big.bin");
    std::fs::File::create(&big).and_then(|f| f.set_len(1 << 30)).expect("a sparse 1 GiB file");
    let httpd = Httpd::start(&site.root());
    let before = httpd.rss_kb();
    let out = run(Command::new(tool("curl"))
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download}"])
        .arg(httpd.url("/big.bin")));
    assert_eq!(out.trim(), format!("200 {}", 1u64 << 30));
    let grown_kb = httpd.rss_kb().saturating_sub(before);
    assert!(grown_kb < 32 * 1024, "serving 1 GiB grew the server by {grown_kb} kB");
}

#[test]
fn the_command_line_helps_and_names_what_is_wrong() {
    let help = run(Command::new(env!("CARGO_BIN_EXE_httpd")).arg("--help"));
    for flag in
        ["--root", "--address", "--port", "--threads", "--processes", "--timeout", "--access-log", "--quiet"]
    {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    let out =
        Command::new(env!("CARGO_BIN_EXE_httpd")).args(["--root", "/no/such/folder"]).output().expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/folder"), "the error names the folder");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_httpd")).args(["--port", &port]).output().expect("runs");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("127.0.0.1:{port}")),
        "the error names the address"
    );
}

/// One request of the access-log test: the bytes sent, its request line as logged,
/// and whether it is a HEAD (no body follows its head).
struct Logged {
    request: String,
    line: &'static str,
    head: bool,
}

/// A round of requests: every kind of answer (file from memory and by sendfile,
/// HEAD, range, 304, 404, redirect, a request the parser refuses).
fn log_round() -> Vec<Logged> {
    let get = |line: &'static str, fields: &str| Logged {
        request: format!("{line}\r\nHost: x\r\n{fields}\r\n"),
        line,
        head: line.starts_with("HEAD"),
    };
    vec![
        get("GET /hello.txt HTTP/1.1", ""),
        get("HEAD /hello.txt HTTP/1.1", ""),
        get("GET /4k.bin HTTP/1.1", "Range: bytes=10-19\r\n"),
        get("GET /20k.bin?q=1 HTTP/1.1", ""),
        get("GET /missing.txt HTTP/1.1", ""),
        get("GET /hello.txt HTTP/1.1", "If-None-Match: *\r\n"),
        get("GET /sub HTTP/1.0", ""),
        get("BREW /pot HTTP/1.1", ""),
    ]
}

/// The fields of one Common Log Format line:
/// `host ident user [date] "request line" status size`.
#[derive(Debug, PartialEq)]
struct Clf {
    host: String,
    ident: String,
    user: String,
    /// Seconds since the epoch.
    time: u64,
    request: String,
    status: u16,
    size: u64,
}

/// Parses the message of a log line (after the logger's `[time LEVEL target] `).
fn parse_clf(message: &str) -> Option<Clf> {
    let (who, rest) = message.split_once(" [")?;
    let (date, rest) = rest.split_once("] \"")?;
    let (request, rest) = rest.rsplit_once("\" ")?;
    let mut who = who.split(' ');
    let (host, ident, user) = (who.next()?, who.next()?, who.next()?);
    let (status, size) = rest.split_once(' ')?;
    Some(Clf {
        host: host.into(),
        ident: ident.into(),
        user: user.into(),
        time: clf_time(date)?,
        request: request.into(),
        status: status.parse().ok()?,
        size: size.parse().ok()?,
    })
}

/// `10/Oct/2000:13:55:36 +0000` as seconds since the epoch (UTC only).
fn clf_time(date: &str) -> Option<u64> {
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let (stamp, zone) = date.split_once(' ')?;
    let parts: Vec<&str> = stamp.split(['/', ':']).collect();
    let [day, month, year, h, m, s] = parts.as_slice() else { return None };
    let month = MONTHS.iter().position(|x| x == month)? as u64 + 1;
    let two = |v: &str| (v.len() == 2).then(|| v.parse::<u64>().ok()).flatten();
    let (day, h, m, s) = (two(day)?, two(h)?, two(m)?, two(s)?);
    let year: u64 = year.parse().ok().filter(|_| year.len() == 4)?;
    (zone == "+0000" && (1..=31).contains(&day) && h < 24 && m < 60 && s < 61).then_some(())?;
    Some(days_since_epoch(year, month, day) * 86_400 + h * 3600 + m * 60 + s)
}

/// Days from 1970-01-01 to a civil date (Howard Hinnant's `days_from_civil`).
fn days_since_epoch(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl Httpd {
    /// The next access-log line, parsed (other log lines are skipped); fails the test
    /// if none comes within the patience.
    fn next_access_line(&self) -> Clf {
        loop {
            let line = self.stderr.recv_timeout(PATIENCE).expect("an access-log line within the patience");
            // env_logger's `[time LEVEL target] message`: the access log's target is `access`.
            if let Some((_, message)) = line.split_once(" access] ") {
                return parse_clf(message).unwrap_or_else(|| panic!("not Common Log Format: {line}"));
            }
        }
    }
}

#[test]
fn the_access_log_has_one_common_log_format_line_per_request() {
    let site = TempSite::new();
    site.add_file("20k.bin", 20 * 1024);
    let httpd = Httpd::start_with(&site.root(), &[]);
    let now = || SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs();
    let mut conn: Option<TcpStream> = None;
    let mut count = 0;
    for _round in 0..3 {
        for req in log_round() {
            let s = conn.get_or_insert_with(|| {
                let s = TcpStream::connect(("127.0.0.1", httpd.port)).expect("connect");
                s.set_read_timeout(Some(PATIENCE)).expect("timeout");
                s
            });
            s.write_all(req.request.as_bytes()).expect("write");
            let r = read_response(s, req.head).unwrap_or_else(|| panic!("{}: no response", req.line));
            if r.header("connection").as_deref() == Some("close") {
                conn = None;
            }
            // The line is written before the response: it is there to read now.
            let logged = httpd.next_access_line();
            let want = Clf {
                host: "127.0.0.1".into(),
                ident: "-".into(),
                user: "-".into(),
                time: logged.time,
                request: req.line.into(),
                status: r.status,
                size: r.body.len() as u64,
            };
            assert_eq!(logged, want, "the line for {}", req.line);
            assert!(now().abs_diff(logged.time) <= 60, "{} is not the time of the request", logged.time);
            count += 1;
        }
    }
    assert_eq!(count, 24);
    // One last request: the next line is its own, so none came twice before it.
    let mut s = TcpStream::connect(("127.0.0.1", httpd.port)).expect("connect");
    s.set_read_timeout(Some(PATIENCE)).expect("timeout");
    s.write_all(b"GET /last HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
    assert_eq!(read_response(&mut s, false).expect("a response").status, 404);
    assert_eq!(httpd.next_access_line().request, "GET /last HTTP/1.1", "one line per request");
}
