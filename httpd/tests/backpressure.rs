//! Pipelining backpressure: a client that sends requests without reading the answers
//! gets at most 64 responses and about 1 MiB queued for it, not one response per
//! request it sent (each holding an open file, or bytes) — and then every answer, in
//! order, once it reads.
//!
//! The queue is watched from inside the server: each connection's `Http` is wrapped
//! in a protocol that, after every hook, records the bytes queued for the socket
//! (`Conn::queued`) and the descriptors open in this process (each queued file
//! response holds one while the open-file cache is off).

mod util;

use std::io::{BufReader, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use httpd::cache::FileCache;
use httpd::Http;
use protocol_server::{Conn, Protocol, Shutdown as OnShutdown};
use util::{one_at_a_time, start_wrapped, try_read_response, Ended, Running, PATIENCE};

/// `MAX_UNSENT_RESPONSES` in `httpd/src/protocol.rs`.
const MAX_QUEUED_RESPONSES: usize = 64;
/// `MAX_UNSENT_BYTES` in `httpd/src/protocol.rs`.
const MAX_QUEUED_BYTES: usize = 1 << 20;

/// What the watcher saw at the end of the server's hooks.
#[derive(Default)]
struct Seen {
    /// Most bytes queued for the socket (file ranges included).
    max_queued: AtomicUsize,
    /// Most descriptors open in this process (only if counted).
    max_fds: AtomicUsize,
}

/// An `Http` connection whose queue is looked at after each hook.
struct Watched {
    http: Http,
    seen: Arc<Seen>,
    count_fds: bool,
    /// Told once, the first time output stays queued: the socket is full.
    backlog: Option<SyncSender<()>>,
}

impl Watched {
    fn look(&mut self, conn: &Conn) {
        let queued = conn.queued();
        self.seen.max_queued.fetch_max(queued, Ordering::SeqCst);
        if self.count_fds {
            self.seen.max_fds.fetch_max(open_fds(), Ordering::SeqCst);
        }
        if queued > 0 {
            if let Some(tell) = self.backlog.take() {
                let _ = tell.try_send(());
            }
        }
    }
}

impl Protocol for Watched {
    fn service(&self) -> &'static str {
        self.http.service()
    }
    fn on_open(&mut self, conn: &Conn) {
        self.http.on_open(conn);
    }
    fn on_data(&mut self, conn: &Conn) {
        self.http.on_data(conn);
        self.look(conn);
    }
    fn on_ready(&mut self, conn: &Conn) {
        self.http.on_ready(conn);
        self.look(conn);
    }
    fn on_shutdown(&mut self, conn: &Conn) -> OnShutdown {
        self.http.on_shutdown(conn)
    }
    fn on_close(&mut self, conn: &Conn) {
        self.http.on_close(conn);
    }
    fn ping(&mut self, conn: &Conn) {
        self.http.ping(conn);
        self.look(conn);
    }
}

/// Descriptors open in this process now.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("procfs").count()
}

/// A server whose connections are watched into `seen` (counting descriptors if
/// `count_fds`), with the open-file cache off (each file response opens its own
/// descriptor) and a `len`-byte `name` in its site. `backlog` hears when output first
/// stays queued.
fn start_watched(
    name: &'static str,
    len: usize,
    seen: &Arc<Seen>,
    count_fds: bool,
    backlog: Option<SyncSender<()>>,
) -> Running {
    let seen = Arc::clone(seen);
    start_wrapped(
        |site| site.add_file(name, len),
        |site| site.file_cache = Arc::new(FileCache::new(Duration::ZERO)),
        move |http| Watched { http, seen: Arc::clone(&seen), count_fds, backlog: backlog.clone() },
    )
}

/// Reads responses until the server closes; each must be `status` with `body`.
/// Returns how many came.
fn read_all(s: &TcpStream, status: u16, body: &[u8]) -> usize {
    let mut reader = BufReader::with_capacity(256 * 1024, s);
    let mut n = 0;
    loop {
        match try_read_response(&mut reader, false) {
            Ok(r) => {
                assert_eq!(r.status, status, "response {n}");
                assert!(r.body == body, "response {n}: {} bytes, not the ones asked", r.body.len());
                n += 1;
            }
            Err(Ended::Closed) => return n,
            Err(Ended::Broken(got)) => panic!("response {n} cut off after {} bytes", got.len()),
        }
    }
}

#[test]
fn a_client_that_does_not_read_gets_about_1_mib_queued_not_a_response_per_request() {
    let _alone = one_at_a_time();
    // 1 MiB files go out with sendfile and cost no memory: only the hold-back keeps
    // 80 of them (80 MiB) from being queued at once (max_output bounds memory only).
    const LEN: usize = 1 << 20;
    const REQUESTS: usize = 80;
    let seen = Arc::new(Seen::default());
    let running = start_watched("1m.bin", LEN, &seen, false, None);
    let mut s = running.connect();
    // One write: the server reads every request in one hook, before we read a byte.
    s.write_all(&b"GET /1m.bin HTTP/1.1\r\nHost: x\r\n\r\n".repeat(REQUESTS)).expect("write");
    s.shutdown(Shutdown::Write).expect("FIN");
    let answered = read_all(&s, 200, &util::pattern(LEN));
    assert_eq!(answered, REQUESTS);
    let most = seen.max_queued.load(Ordering::SeqCst);
    // Requests are answered while at most 1 MiB is queued: one more response past it.
    let bound = MAX_QUEUED_BYTES + LEN + 64 * 1024;
    assert!(most <= bound, "{most} bytes queued for a client not reading (bound {bound})");
    assert!(most > MAX_QUEUED_BYTES / 2, "only {most} bytes ever queued: the socket never filled");
    running.stop();
}

#[test]
fn a_client_that_does_not_read_gets_at_most_64_responses_queued_each_holding_a_file() {
    let _alone = one_at_a_time();
    // One-byte ranges of a file too large to be held in memory: each response is a
    // few hundred bytes (the 1 MiB bound is ~3,500 of them) but holds an open file.
    let seen = Arc::new(Seen::default());
    let (tell, backlog) = sync_channel(1);
    let running = start_watched("20k.bin", 20 * 1024, &seen, true, Some(tell));
    let before = open_fds();
    let s = running.connect();
    let stop = Arc::new(AtomicBool::new(false));
    let (writer, written) = pipeline(&s, &stop);
    // Until the socket is full, answers leave at once; from then on they queue.
    backlog.recv_timeout(6 * PATIENCE).expect("output never queued: the socket never filled");
    stop.store(true, Ordering::SeqCst);
    // Besides the queued files: the client socket, its clone, the server's end and
    // the /proc listing (4), with room to spare.
    let held = seen.max_fds.load(Ordering::SeqCst).saturating_sub(before);
    assert!(
        held <= MAX_QUEUED_RESPONSES + 16,
        "{held} descriptors held for one client not reading (queued responses)"
    );
    let answered = read_all(&s, 206, &[0]);
    writer.join().expect("writer");
    assert_eq!(answered, written.load(Ordering::SeqCst));
    let held = seen.max_fds.load(Ordering::SeqCst).saturating_sub(before);
    assert!(held <= MAX_QUEUED_RESPONSES + 16, "{held} descriptors held while the client read");
    running.stop();
}

/// Writes one-byte range requests in batches until `stop` (or a bound), then sends
/// FIN. Returns the writer and the count of requests written.
fn pipeline(s: &TcpStream, stop: &Arc<AtomicBool>) -> (JoinHandle<()>, Arc<AtomicUsize>) {
    const BATCH: usize = 1_000;
    const MOST: usize = 1_000_000;
    let batch = b"GET /20k.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=0-0\r\n\r\n".repeat(BATCH);
    let written = Arc::new(AtomicUsize::new(0));
    let mut w = s.try_clone().expect("clone");
    let (stop, count) = (Arc::clone(stop), Arc::clone(&written));
    let writer = std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) && count.load(Ordering::SeqCst) < MOST {
            // Blocks while the server holds requests back, until we read.
            w.write_all(&batch).expect("the server reads on as we read");
            count.fetch_add(BATCH, Ordering::SeqCst);
        }
        w.shutdown(Shutdown::Write).expect("FIN");
    });
    (writer, written)
}
