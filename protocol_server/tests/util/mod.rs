//! Test helpers: a protocol made of closures, and a server running on a thread.
#![allow(dead_code)] // each test file uses a different subset

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use protocol_server::{Builder, Conn, Error, Protocol, Server, Shutdown};

/// How long a test waits for something that should happen at once.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub type Hook = Arc<dyn Fn(&Conn) + Send + Sync>;
pub type ShutdownHook = Arc<dyn Fn(&Conn) -> Shutdown + Send + Sync>;

/// A protocol whose hooks are closures; missing ones keep the trait's defaults
/// (`on_data` then reads and drops).
#[derive(Clone, Default)]
pub struct Hooks {
    pub service: &'static str,
    pub on_open: Option<Hook>,
    pub on_data: Option<Hook>,
    pub on_ready: Option<Hook>,
    pub on_close: Option<Hook>,
    pub ping: Option<Hook>,
    pub on_shutdown: Option<ShutdownHook>,
}

pub fn hook(f: impl Fn(&Conn) + Send + Sync + 'static) -> Option<Hook> {
    Some(Arc::new(f))
}

impl Protocol for Hooks {
    fn service(&self) -> &'static str {
        if self.service.is_empty() {
            "test"
        } else {
            self.service
        }
    }
    fn on_open(&mut self, conn: &Conn) {
        self.on_open.as_ref().inspect(|f| f(conn));
    }
    fn on_data(&mut self, conn: &Conn) {
        match &self.on_data {
            Some(f) => f(conn),
            None => while let Ok(1..) = conn.read(&mut [0u8; 4096]) {},
        }
    }
    fn on_ready(&mut self, conn: &Conn) {
        self.on_ready.as_ref().inspect(|f| f(conn));
    }
    fn on_close(&mut self, conn: &Conn) {
        self.on_close.as_ref().inspect(|f| f(conn));
    }
    fn ping(&mut self, conn: &Conn) {
        match &self.ping {
            Some(f) => f(conn),
            None => conn.close(),
        }
    }
    fn on_shutdown(&mut self, conn: &Conn) -> Shutdown {
        self.on_shutdown.as_ref().map_or(Shutdown::Close, |f| f(conn))
    }
}

/// An `on_data` hook that drains the input and, if any arrived, runs `f`.
pub fn on_request(f: impl Fn(&Conn) + Send + Sync + 'static) -> Option<Hook> {
    hook(move |c| {
        if !read_all(c).is_empty() {
            f(c);
        }
    })
}

/// A channel whose sender hooks can share (`Hooks` must be `Sync`).
pub fn shared_channel<T: Send + 'static>() -> (Arc<std::sync::Mutex<mpsc::Sender<T>>>, mpsc::Receiver<T>) {
    let (tx, rx) = mpsc::channel();
    (Arc::new(std::sync::Mutex::new(tx)), rx)
}

/// Reads everything available into one `Vec` (the echo pattern).
pub fn read_all(conn: &Conn) -> Vec<u8> {
    let mut data = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n @ 1..) = conn.read(&mut buf) {
        data.extend_from_slice(&buf[..n]);
    }
    data
}

/// A server serving on a thread.
pub struct Running {
    pub server: Server,
    pub addr: SocketAddr,
    pub thread: JoinHandle<Result<(), Error>>,
}

/// Starts `builder` (whose listeners should use port 0) without signal handling.
pub fn start(builder: Builder) -> Running {
    start_with_signals(builder.signals(false))
}

/// Starts `builder` as given.
pub fn start_with_signals(builder: Builder) -> Running {
    let _ = env_logger::builder().is_test(std::env::var_os("TEST_LOG_STDERR").is_none()).try_init();
    let (server, thread) = builder.spawn().expect("the server starts");
    let addr = server.local_addrs()[0];
    Running { server, addr, thread }
}

/// A protocol on a free loopback port with few threads and signals off.
pub fn serve(hooks: Hooks) -> Running {
    start(Server::builder().threads(2).port(0).protocol(move || hooks.clone()))
}

impl Running {
    /// Stops the server and checks that `start` returned `Ok`.
    pub fn stop(self) {
        self.server.stop();
        self.thread.join().expect("server thread").expect("server stopped cleanly");
    }

    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).expect("connect to the test server");
        stream.set_read_timeout(Some(PATIENCE)).expect("set timeout");
        stream
    }
}

/// Reads exactly `n` bytes or panics.
pub fn read_n(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    stream.read_exact(&mut buf).expect("the expected bytes arrive");
    buf
}

/// True once the peer closed (EOF or reset), within `PATIENCE`.
pub fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// Sends `line` and reads back as many bytes.
pub fn echo_round(stream: &mut TcpStream, line: &[u8]) -> Vec<u8> {
    stream.write_all(line).expect("write");
    read_n(stream, line.len())
}
