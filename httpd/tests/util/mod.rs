//! Test helpers: a temporary site, a server on a free port, raw HTTP exchanges that
//! tell a close by the server (EOF or reset) from a server that hangs (a timeout,
//! which always fails the test).
#![allow(dead_code)] // each test file uses a different subset

use std::cell::RefCell;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use httpd::{Http, Site};
use protocol_server::{Error, Protocol, Server};

/// How long a client waits for the server before the test fails: generous, so a
/// loaded machine does not fail a test, but a hang does.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The servers' idle timeout: longer than [`PATIENCE`], so a connection the server
/// should have closed is caught as a timeout rather than closed later for idleness.
pub const IDLE: Duration = Duration::from_secs(60);

/// A folder removed on drop, holding a small site (and a secret next to it).
pub struct TempSite {
    pub dir: PathBuf,
}

impl TempSite {
    /// A fresh site under the temp folder, unique per process and call.
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
        std::fs::write(www.join("4k.bin"), pattern(4096)).expect("write");
        std::fs::write(www.join("sub/index.html"), "sub index\n").expect("write");
        std::fs::write(www.join("a b.txt"), "space").expect("write");
        std::fs::write(dir.join("secret.txt"), "SECRET").expect("write");
        std::os::unix::fs::symlink(dir.join("secret.txt"), www.join("escape")).expect("symlink");
        std::fs::create_dir_all(www.join("idx")).expect("mkdir");
        std::os::unix::fs::symlink(dir.join("secret.txt"), www.join("idx/index.html")).expect("symlink");
        TempSite { dir }
    }

    /// The folder served (the secret is next to it, outside).
    pub fn root(&self) -> PathBuf {
        self.dir.join("www")
    }

    /// Adds a file of `len` patterned bytes under the root.
    pub fn add_file(&self, name: &str, len: usize) {
        std::fs::write(self.root().join(name), pattern(len)).expect("write a site file");
    }
}

impl Drop for TempSite {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `len` bytes that are not all alike (a misplaced range shows).
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// The httpd protocol serving a temporary site in this process.
pub struct Running {
    pub site: TempSite,
    pub server: Server,
    pub addr: SocketAddr,
    thread: JoinHandle<Result<(), Error>>,
}

/// Starts the protocol on the default settings (access log off).
pub fn start() -> Running {
    start_with(|_| {})
}

/// Starts with `adjust` applied to the site settings (limits, deadlines).
pub fn start_with(adjust: impl FnOnce(&mut Site)) -> Running {
    start_wrapped(|_| {}, adjust, |http| http)
}

/// Starts with `prepare` run on the site's folder first (files to add), `adjust`
/// applied to the settings, and each connection's `Http` handed to `wrap` (a
/// protocol that watches it).
pub fn start_wrapped<P: Protocol>(
    prepare: impl FnOnce(&TempSite),
    adjust: impl FnOnce(&mut Site),
    wrap: impl Fn(Http) -> P + Send + Sync + 'static,
) -> Running {
    let temp = TempSite::new();
    prepare(&temp);
    let mut site = Site::new(temp.root()).expect("the temp site is a folder");
    site.access_log = false;
    adjust(&mut site);
    let site = Arc::new(site);
    let builder = Server::builder()
        .threads(2)
        .port(0)
        .signals(false)
        .timeout(IDLE)
        .protocol(move || wrap(Http::new(Arc::clone(&site))));
    let (server, thread) = builder.spawn().expect("the server starts");
    let addr = server.local_addrs()[0];
    Running { site: temp, server, addr, thread }
}

impl Running {
    /// Stops the server and waits for its thread: a clean stop is part of the test.
    pub fn stop(self) {
        self.server.stop();
        self.thread.join().expect("server thread").expect("clean stop");
    }

    /// A connection to the server whose reads give up after [`PATIENCE`].
    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(PATIENCE)).expect("timeout");
        s
    }

    /// The URL of `path` on the server.
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
    /// The value of the first header field `name` (any case).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// How a read that got no whole response ended.
#[derive(Debug)]
pub enum Ended {
    /// The server closed (EOF or reset) before sending a byte of another response.
    Closed,
    /// The server closed in the middle of a response, or sent something that is not
    /// one; the bytes it sent.
    Broken(Vec<u8>),
}

/// Whether a read error means the peer closed the connection (a reset), as opposed
/// to our read timeout running out.
fn is_reset(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe)
}

thread_local!(static DOING: RefCell<String> = const { RefCell::new(String::new()) });

/// Names what the calling thread is doing (a case), for the message if a read then
/// times out.
pub fn doing(what: impl Into<String>) {
    DOING.with(|d| *d.borrow_mut() = what.into());
}

/// Panics for a timed-out read: the server neither answered nor closed in time.
/// `what` names the step (else what [`doing`] said).
fn timed_out(e: &std::io::Error, got: &[u8], what: &str) -> ! {
    let doing = DOING.with(|d| d.borrow().clone());
    let what = [what, &doing].into_iter().find(|w| !w.is_empty()).unwrap_or("a read");
    panic!(
        "{what}: no answer and no close within {PATIENCE:?} ({e}); got so far: {:?}",
        String::from_utf8_lossy(got)
    )
}

/// Reads one byte; `None` at EOF or reset. Panics on a timeout.
fn read_byte(stream: &mut impl Read, got: &[u8]) -> Option<u8> {
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => return None,
            Ok(_) => return Some(byte[0]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if is_reset(&e) => return None,
            Err(e) => timed_out(&e, got, ""),
        }
    }
}

/// Reads one whole response (status line, header fields, `Content-Length` body;
/// `head_request`: no body whatever the length says). `Err(Closed)` if the server
/// closed first, `Err(Broken)` if it closed mid-response or sent no valid head.
/// Panics on a timeout: a server that hangs fails the test.
pub fn try_read_response(stream: &mut impl Read, head_request: bool) -> Result<Response, Ended> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        match read_byte(stream, &head) {
            Some(b) => head.push(b),
            None if head.is_empty() => return Err(Ended::Closed),
            None => return Err(Ended::Broken(head)),
        }
    }
    let Some(mut response) = parse_head(&head) else { return Err(Ended::Broken(head)) };
    let len = match response.header("content-length").map(|v| v.parse::<usize>()) {
        Some(Ok(len)) => len,
        Some(Err(_)) => return Err(Ended::Broken(head)),
        None => 0,
    };
    if !head_request && response.status != 304 {
        response.body.reserve(len);
        let read = (&mut *stream).take(len as u64).read_to_end(&mut response.body);
        match read {
            Ok(n) if n == len => {}
            Ok(_) => return Err(Ended::Broken([head, response.body].concat())),
            Err(e) if is_reset(&e) => return Err(Ended::Broken([head, response.body].concat())),
            Err(e) => timed_out(&e, &head, ""),
        }
    }
    Ok(response)
}

/// A status line `HTTP/1.1 ddd ...` and header lines `name: value`, or `None`.
fn parse_head(head: &[u8]) -> Option<Response> {
    let head = String::from_utf8(head.to_vec()).ok()?;
    let status_line = head.lines().next()?;
    let status = status_line.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
    let fields_ok =
        head.trim_end().lines().skip(1).all(|l| l.split_once(':').is_some_and(|(n, _)| !n.is_empty()));
    fields_ok.then_some(Response { status, head, body: Vec::new() })
}

/// Reads one response; `None` if the server closed (EOF or reset) before sending any
/// byte of it. Panics on a timeout or a response cut off or malformed.
pub fn read_response(stream: &mut impl Read, head_request: bool) -> Option<Response> {
    match try_read_response(stream, head_request) {
        Ok(r) => Some(r),
        Err(Ended::Closed) => None,
        Err(Ended::Broken(got)) => {
            let doing = DOING.with(|d| d.borrow().clone());
            panic!("{doing}: a broken response: {:?}", String::from_utf8_lossy(&got))
        }
    }
}

/// Reads until the server closes (EOF or reset) and returns what it sent first.
/// Panics on a timeout: a close must come from the server, not from our patience.
pub fn read_until_closed(stream: &mut impl Read) -> Vec<u8> {
    read_to_close(stream, "")
}

/// [`read_until_closed`], naming `what` if it times out.
fn read_to_close(stream: &mut impl Read, what: &str) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if is_reset(&e) => return got,
            Err(e) => timed_out(&e, &got, what),
        }
    }
}

/// Asserts the server closes the connection (EOF or reset, not our timeout) with
/// nothing more sent; `what` names the case.
pub fn assert_closed(stream: &mut impl Read, what: &str) {
    let more = read_to_close(stream, &format!("{what}: waiting for the close"));
    assert!(more.is_empty(), "{what}: bytes after the last response: {:?}", String::from_utf8_lossy(&more));
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

/// Holds a lock that makes the tests taking it run one at a time (heavy tests whose
/// timing or counts another test beside them would disturb).
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    HEAVY.lock().unwrap_or_else(PoisonError::into_inner)
}
