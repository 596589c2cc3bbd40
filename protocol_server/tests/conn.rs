//! The connection handle: urgent writes, files, backpressure, hijack, hooks, upgrades.

mod util;

use std::io::{self, Read, Write};
use std::sync::mpsc;
use std::time::Duration;

use protocol_server::{Conn, Protocol, RwHooks, Server, WriteError};
use util::{
    closed_by_peer, echo_round, hook, on_request, read_all, read_n, serve, shared_channel, start, Hooks,
    PATIENCE,
};

#[test]
fn write_urgent_goes_ahead_of_queued_output_but_not_into_a_started_buffer() {
    // More than loopback socket buffers hold, so most of it is still queued when the
    // urgent bytes come; the client reads only once everything was written.
    const BIG: usize = 32 << 20;
    let (tx, queued) = shared_channel();
    let hooks = Hooks {
        on_data: on_request(move |c| {
            c.write_move(vec![b'a'; BIG]).expect("queued");
            c.write(b"[tail]").expect("queued");
            c.write_urgent(b"[urgent1]".to_vec()).expect("queued");
            c.write_urgent(b"[urgent2]".to_vec()).expect("queued");
            tx.lock().expect("no panic under lock").send(c.queued()).expect("test waits");
        }),
        ..Hooks::default()
    };
    let running =
        start(Server::builder().threads(2).port(0).max_output(2 * BIG).protocol(move || hooks.clone()));
    let mut client = running.connect();
    client.write_all(b"go").expect("write");
    let still_queued = queued.recv_timeout(PATIENCE).expect("the hook wrote");
    assert!(still_queued > 6 + 18, "the socket took everything at once; the test proves nothing");
    let got = read_n(&mut client, BIG + 24);
    // The big buffer had started (the socket took part of it at once), so it is
    // finished first; the urgent bytes, in their order, then pass the queued "[tail]".
    let mut expected = vec![b'a'; BIG];
    expected.extend_from_slice(b"[urgent1][urgent2][tail]");
    assert!(
        got == expected,
        "got {} bytes, tail {:?}",
        got.len(),
        String::from_utf8_lossy(&got[got.len().saturating_sub(30)..])
    );
    running.stop();
}

#[test]
fn send_file_sends_a_byte_range_and_whole_files_after_corked_heads() {
    let path = std::env::temp_dir().join(format!("send-file-{}", std::process::id()));
    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &content).expect("temp file");
    let p = path.clone();
    let hooks = Hooks {
        on_data: on_request(move |c| {
            let open = || std::fs::File::open(&p).expect("the temp file exists");
            c.write_corked(b"head:".to_vec()).expect("head queued");
            c.send_file(open(), 10, Some(5)).expect("range queued");
            c.write_corked(b"head2:".to_vec()).expect("second head queued");
            c.send_file(open(), 0, None).expect("whole file queued");
        }),
        ..Hooks::default()
    };
    // File ranges hold no memory: a 3 MB file passes a 1 MB max_output.
    let running =
        start(Server::builder().threads(2).port(0).max_output(1 << 20).protocol(move || hooks.clone()));
    let mut client = running.connect();
    client.write_all(b"go").expect("write");
    assert_eq!(read_n(&mut client, 5), b"head:", "corked bytes come first, whole");
    assert_eq!(read_n(&mut client, 5), &content[10..15]);
    assert_eq!(read_n(&mut client, 6), b"head2:");
    assert!(read_n(&mut client, content.len()) == content, "whole file intact");
    std::fs::remove_file(&path).expect("cleanup");
    running.stop();
}

#[test]
fn a_peer_that_never_reads_is_cut_off_at_max_output_and_memory_stays_bounded() {
    let max = 1 << 20;
    let (tx, rx) = mpsc::channel();
    let hooks = Hooks {
        on_open: hook(move |c: &Conn| {
            // Try to push 100 MB at a peer that reads nothing.
            let chunk = vec![7u8; 64 * 1024];
            let mut accepted = 0usize;
            let outcome = loop {
                if accepted >= 100 << 20 {
                    break Ok(());
                }
                match c.write(&chunk) {
                    Ok(()) => accepted += chunk.len(),
                    Err(e) => break Err(e),
                }
            };
            tx.send((accepted, outcome)).expect("test waits");
        }),
        ..Hooks::default()
    };
    let rss_before = rss_bytes();
    let running = start(Server::builder().threads(2).port(0).max_output(max).protocol(move || hooks.clone()));
    let mut client = running.connect();
    let (accepted, outcome) = rx.recv_timeout(PATIENCE).expect("the writer stops");
    // Process-wide, and other tests of this binary run alongside: the bound is loose,
    // but an unbounded queue would have grown by the whole 100 MB.
    let grown = rss_bytes().saturating_sub(rss_before);
    assert!(grown < 80 << 20, "resident memory grew by {} MB", grown >> 20);
    assert!(matches!(outcome, Err(WriteError::Overflow { .. })), "{outcome:?}");
    // What was accepted is at most the bound plus what the kernel's socket buffers took.
    assert!(accepted < max + (16 << 20), "accepted {accepted} bytes for a peer that reads nothing");
    assert!(closed_by_peer(&mut client), "the server hung up on it");
    running.stop();
}

fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    let kb: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line");
    kb * 1024
}

#[test]
fn a_slow_reader_gets_every_byte_in_order() {
    let total = 6 << 20;
    let hooks = Hooks {
        on_open: hook(move |c: &Conn| {
            let data: Vec<u8> = (0..total).map(|i| (i % 253) as u8).collect();
            c.write_move(data).expect("fits under max_output");
        }),
        ..Hooks::default()
    };
    let running =
        start(Server::builder().threads(2).port(0).max_output(8 << 20).protocol(move || hooks.clone()));
    let mut client = running.connect();
    let mut got = Vec::with_capacity(total);
    let mut buf = vec![0u8; 256 * 1024];
    while got.len() < total {
        let n = client.read(&mut buf).expect("read");
        assert!(n > 0, "closed after {} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
        std::thread::sleep(Duration::from_millis(2)); // a slow reader, on purpose
    }
    assert!(got.iter().enumerate().all(|(i, b)| *b == (i % 253) as u8), "bytes out of order");
    running.stop();
}

#[test]
fn hijack_flushes_then_hands_over_a_blocking_socket() {
    let (tx, rx) = shared_channel();
    let hooks = Hooks {
        on_data: on_request(move |c| {
            c.write(b"queued before hijack;").expect("queued");
            let stream = c.hijack().expect("hijack");
            tx.lock().expect("no panic under lock").send(stream).expect("test waits");
        }),
        ..Hooks::default()
    };
    let running = serve(hooks);
    let mut client = running.connect();
    client.write_all(b"take it").expect("write");
    let mut taken = rx.recv_timeout(PATIENCE).expect("hijacked stream");
    taken.write_all(b" now mine").expect("the hijacked socket writes");
    assert_eq!(read_n(&mut client, 30), b"queued before hijack; now mine");
    client.write_all(b"hello").expect("write");
    let mut buf = [0u8; 5];
    taken.read_exact(&mut buf).expect("blocking read on the hijacked socket");
    assert_eq!(&buf, b"hello", "the server no longer reads it");
    running.stop();
}

/// Flips every byte both ways: a stand-in for TLS.
struct Flip;

impl RwHooks for Flip {
    fn read(&mut self, stream: &std::net::TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        let n = (&*stream).read(buf)?;
        buf[..n].iter_mut().for_each(|b| *b = !*b);
        Ok(n)
    }
    fn write(&mut self, stream: &std::net::TcpStream, buf: &[u8]) -> io::Result<usize> {
        let flipped: Vec<u8> = buf.iter().map(|b| !b).collect();
        (&*stream).write(&flipped)
    }
}

#[test]
fn rw_hooks_see_every_byte_both_ways() {
    let (tx, rx) = shared_channel();
    let hooks = Hooks {
        on_open: hook(|c| c.set_rw_hooks(Box::new(Flip))),
        on_data: hook(move |c| {
            let data = read_all(c);
            if !data.is_empty() {
                tx.lock().expect("no panic under lock").send(data.clone()).expect("test waits");
                let _ = c.write(&data);
            }
        }),
        ..Hooks::default()
    };
    let running = serve(hooks);
    let mut client = running.connect();
    let wire: Vec<u8> = b"plain".iter().map(|b| !b).collect();
    client.write_all(&wire).expect("write");
    assert_eq!(rx.recv_timeout(PATIENCE).expect("protocol saw it"), b"plain");
    assert_eq!(read_n(&mut client, 5), wire, "the reply went through the write hook");
    running.stop();
}

#[test]
fn rw_hooks_set_from_on_data_apply_from_the_next_read_and_write() {
    // A STARTTLS-like switch: plain bytes until a hook sets the read/write hooks (the
    // path without hooks takes no lock), then every byte through them.
    let (tx, rx) = shared_channel();
    let hooks = Hooks {
        on_data: hook(move |c| {
            let data = read_all(c);
            if data.is_empty() {
                return;
            }
            let _ = c.write(&data);
            if data == b"starttls" {
                c.set_rw_hooks(Box::new(Flip));
            }
            tx.lock().expect("no panic under lock").send(data).expect("test waits");
        }),
        ..Hooks::default()
    };
    let running = serve(hooks);
    let mut client = running.connect();
    client.write_all(b"starttls").expect("write");
    assert_eq!(rx.recv_timeout(PATIENCE).expect("protocol saw it"), b"starttls");
    assert_eq!(read_n(&mut client, 8), b"starttls", "the reply before the switch is plain");
    let wire: Vec<u8> = b"after".iter().map(|b| !b).collect();
    client.write_all(&wire).expect("write");
    assert_eq!(rx.recv_timeout(PATIENCE).expect("protocol saw it"), b"after", "read through the hook");
    assert_eq!(read_n(&mut client, 5), wire, "the reply went through the write hook");
    running.stop();
}

/// A write hook that refuses everything, as a TLS layer does after a fatal alert.
struct Refusing;

impl RwHooks for Refusing {
    fn read(&mut self, stream: &std::net::TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        (&*stream).read(buf)
    }
    fn write(&mut self, _stream: &std::net::TcpStream, _buf: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(io::ErrorKind::PermissionDenied, "refused by the hook"))
    }
}

#[test]
fn a_failed_write_hands_back_the_io_error_with_its_kind_and_closes() {
    let (tx, rx) = shared_channel();
    let hooks = Hooks {
        on_open: hook(|c| c.set_rw_hooks(Box::new(Refusing))),
        on_data: on_request(move |c| {
            let outcome = c.write(b"never sent");
            tx.lock().expect("no panic under lock").send(outcome).expect("test waits");
        }),
        ..Hooks::default()
    };
    let running = serve(hooks);
    let mut client = running.connect();
    client.write_all(b"go").expect("write");
    match rx.recv_timeout(PATIENCE).expect("write result") {
        Err(WriteError::Io(e)) => {
            assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "the hook's error, kind kept: {e}");
            assert!(e.to_string().contains("refused by the hook"), "{e}");
        }
        other => panic!("expected WriteError::Io, got {other:?}"),
    }
    assert!(closed_by_peer(&mut client), "the connection is closed after the failed write");
    running.stop();
}

/// The protocol an upgrade switches to: answers in upper case.
struct Upper;

impl Protocol for Upper {
    fn service(&self) -> &'static str {
        "upper"
    }
    fn on_open(&mut self, conn: &Conn) {
        let _ = conn.write(b"UPGRADED\n");
    }
    fn on_data(&mut self, conn: &Conn) {
        let _ = conn.write(&read_all(conn).to_ascii_uppercase());
    }
}

#[test]
fn set_protocol_switches_a_live_connection() {
    let hooks = Hooks {
        on_data: hook(|c| {
            let data = read_all(c);
            if data.starts_with(b"upgrade") {
                c.set_protocol(Box::new(Upper));
            } else {
                let _ = c.write(&data);
            }
        }),
        ..Hooks::default()
    };
    let running = serve(hooks);
    let mut client = running.connect();
    assert_eq!(echo_round(&mut client, b"echo"), b"echo");
    client.write_all(b"upgrade").expect("write");
    assert_eq!(read_n(&mut client, 9), b"UPGRADED\n");
    assert_eq!(echo_round(&mut client, b"shout"), b"SHOUT");
    assert_eq!(running.server.count(Some("upper")), 1);
    assert_eq!(running.server.count(Some("test")), 0);
    running.stop();
}

#[test]
fn writes_after_close_fail_and_close_flushes_first() {
    let (tx, rx) = shared_channel();
    let hooks = Hooks {
        on_data: on_request(move |c| {
            c.write_move(vec![b'z'; 2 << 20]).expect("queued");
            c.close();
            tx.lock().expect("no panic under lock").send(c.write(b"late")).expect("test waits");
        }),
        ..Hooks::default()
    };
    let running =
        start(Server::builder().threads(2).port(0).max_output(4 << 20).protocol(move || hooks.clone()));
    let mut client = running.connect();
    client.write_all(b"go").expect("write");
    assert_eq!(rx.recv_timeout(PATIENCE).expect("write result"), Err(WriteError::Closed));
    assert_eq!(read_n(&mut client, 2 << 20), vec![b'z'; 2 << 20], "close waited for the queue");
    assert!(closed_by_peer(&mut client));
    running.stop();
}

#[test]
fn close_with_unread_input_still_delivers_the_whole_response() {
    let hooks = Hooks {
        on_data: hook(|c| {
            let mut two = [0u8; 2];
            if c.read(&mut two).unwrap_or(0) == 2 {
                // Leave the rest of the input unread, answer big, close: a plain close
                // would send RST and cut the response short.
                c.write_move(vec![b'r'; 4 << 20]).expect("queued");
                c.close();
            }
        }),
        ..Hooks::default()
    };
    let running =
        start(Server::builder().threads(2).port(0).max_output(8 << 20).protocol(move || hooks.clone()));
    let mut client = running.connect();
    client.write_all(b"GO and some bytes the server never reads").expect("write");
    std::thread::sleep(Duration::from_millis(50)); // let the response queue up before we read
    let mut got = Vec::new();
    client.read_to_end(&mut got).expect("a clean EOF, not a reset");
    assert_eq!(got.len(), 4 << 20, "the response was cut short");
    running.stop();
}

#[test]
fn a_closing_connection_whose_peer_stopped_reading_is_freed_after_a_timeout() {
    let (tx, closed) = shared_channel();
    let hooks = Hooks {
        on_data: hook(|c| {
            if !read_all(c).is_empty() {
                c.write_move(vec![b'x'; 8 << 20]).expect("queued");
                c.close();
            }
        }),
        on_close: hook(move |_| tx.lock().expect("no panic under lock").send(()).expect("test waits")),
        ..Hooks::default()
    };
    let timeout = Duration::from_millis(300);
    let running = start(
        Server::builder()
            .threads(2)
            .port(0)
            .timeout(timeout)
            .max_output(16 << 20)
            .protocol(move || hooks.clone()),
    );
    let mut client = running.connect();
    client.write_all(b"go").expect("write");
    // The client never reads: the server must give up on the flush, not hold 8 MB forever.
    closed.recv_timeout(PATIENCE).expect("on_close after the closing timeout");
    assert_eq!(running.server.count(None), 0);
    running.stop();
}
