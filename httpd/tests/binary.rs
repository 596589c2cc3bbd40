//! The `httpd` binary under real load generators: `ab` (keep-alive and not), `wrk`,
//! a 1 GiB file with flat memory, and its command line.

mod util;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use util::{tool, TempSite};

struct Httpd {
    child: Child,
    port: u16,
}

impl Httpd {
    fn start(root: &std::path::Path) -> Httpd {
        let mut child = Command::new(env!("CARGO_BIN_EXE_httpd"))
            .args(["--port", "0", "--threads", "2", "--quiet", "--root"])
            .arg(root)
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
        std::thread::spawn(move || for _ in lines.lines() {});
        Httpd { child, port }
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

#[test]
fn ab_with_and_without_keep_alive_reports_no_failures() {
    let site = TempSite::new();
    let httpd = Httpd::start(&site.root());
    for args in [&["-k", "-n", "20000", "-c", "32"][..], &["-n", "5000", "-c", "32"][..]] {
        let out = run(Command::new(tool("ab")).arg("-q").args(args).arg(httpd.url("/hello.txt")));
        let complete = number_after(&out, "Complete requests:").expect("ab reports completions");
        assert_eq!(complete, args[args.len() - 3].parse::<u64>().expect("n"), "{out}");
        assert_eq!(number_after(&out, "Failed requests:"), Some(0), "{out}");
        assert_eq!(number_after(&out, "Non-2xx responses:").unwrap_or(0), 0, "{out}");
    }
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
