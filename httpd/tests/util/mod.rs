//! Test helpers: a temporary site, a server on a free port, raw HTTP exchanges.
#![allow(dead_code)] // each test file uses a different subset

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use httpd::{Http, Site};
use protocol_server::{Error, Server};

pub const PATIENCE: Duration = Duration::from_secs(10);

/// A folder removed on drop, holding a small site (and a secret next to it).
pub struct TempSite {
    pub dir: PathBuf,
}

impl TempSite {
    pub fn new() -> TempSite {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "httpd-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let www = dir.join("www");
        std::fs::create_dir_all(www.join("sub")).expect("temp site");
        std::fs::write(www.join("index.html"), "<!doctype html><title>t</title><p>index</p>\n")
            .expect("write");
        std::fs::write(www.join("hello.txt"), "Hello, World!").expect("write");
        std::fs::write(www.join("4k.bin"), (0..4096u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
            .expect("write");
        std::fs::write(www.join("sub/index.html"), "sub index\n").expect("write");
        std::fs::write(www.join("a b.txt"), "space").expect("write");
        std::fs::write(dir.join("secret.txt"), "SECRET").expect("write");
        std::os::unix::fs::symlink(dir.join("secret.txt"), www.join("escape")).expect("symlink");
        std::fs::create_dir_all(www.join("idx")).expect("mkdir");
        std::os::unix::fs::symlink(dir.join("secret.txt"), www.join("idx/index.html")).expect("symlink");
        TempSite { dir }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.join("www")
    }
}

impl Drop for TempSite {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The httpd protocol serving a temporary site in this process.
pub struct Running {
    pub site: TempSite,
    pub server: Server,
    pub addr: SocketAddr,
    thread: JoinHandle<Result<(), Error>>,
}

pub fn start() -> Running {
    start_with(|_| {})
}

/// Starts with `adjust` applied to the site settings (limits, deadlines).
pub fn start_with(adjust: impl FnOnce(&mut Site)) -> Running {
    let temp = TempSite::new();
    let mut site = Site::new(temp.root()).expect("the temp site is a folder");
    site.access_log = false;
    adjust(&mut site);
    let site = Arc::new(site);
    let builder =
        Server::builder().threads(2).port(0).signals(false).protocol(move || Http::new(Arc::clone(&site)));
    let (server, thread) = builder.spawn().expect("the server starts");
    let addr = server.local_addrs()[0];
    Running { site: temp, server, addr, thread }
}

impl Running {
    pub fn stop(self) {
        self.server.stop();
        self.thread.join().expect("server thread").expect("clean stop");
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(PATIENCE)).expect("timeout");
        s
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// One parsed response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// Reads one response; `head_request` means no body follows whatever Content-Length says.
/// `None` if the server closed before a whole response.
pub fn read_response(stream: &mut TcpStream, head_request: bool) -> Option<Response> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    let head = String::from_utf8(head).expect("ASCII head");
    let status = head.get(9..12)?.parse().ok()?;
    let mut response = Response { status, head, body: Vec::new() };
    let len: usize = response.header("content-length").map_or(0, |v| v.parse().expect("a number"));
    if !head_request && status != 304 {
        response.body = vec![0u8; len];
        stream.read_exact(&mut response.body).ok()?;
    }
    Some(response)
}

/// Sends raw bytes on a fresh connection and reads one response.
pub fn exchange(running: &Running, request: &[u8]) -> Option<Response> {
    let mut s = running.connect();
    s.write_all(request).expect("write");
    read_response(&mut s, request.starts_with(b"HEAD"))
}

/// The path of an external tool, or a failure telling `.ci/run` installs it.
pub fn tool(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join(name)).find(|p| p.is_file()));
    found.unwrap_or_else(|| {
        panic!("`{name}` is not installed: run the tests through `bash .ci/run`, which installs it")
    })
}

/// True if `path` is inside `dir`.
pub fn inside(path: &Path, dir: &Path) -> bool {
    path.starts_with(dir)
}
