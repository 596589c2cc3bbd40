//! Writes from another thread racing `close()`: each either goes out before the FIN
//! or fails with `WriteError::Closed`. None may reach the socket after its FIN: that
//! write fails with EPIPE, the connection is reset, and the peer loses what was still
//! in flight. The stress test below never caught the old ordering (state checked
//! before taking the output lock); the gated one does, within a few rounds.

mod util;

use std::io::Read;
use std::sync::mpsc;

use protocol_server::{Conn, WriteError};
use util::{hook, serve, shared_channel, Hooks, PATIENCE};

const ROUNDS: usize = 200;
const WRITES: usize = 4_000;

#[test]
fn writes_racing_close_from_another_thread_never_reset_the_connection() {
    let (tx, results) = shared_channel::<Result<usize, WriteError>>();
    let hooks = Hooks {
        on_open: hook(move |c: &Conn| {
            // A writer thread with its own handle, racing the close below: close once
            // it is well under way, so that the two really overlap.
            let (writer, tx) = (c.clone(), tx.lock().expect("no panic under lock").clone());
            let (started, under_way) = mpsc::channel();
            std::thread::spawn(move || tx.send(write_until_refused(&writer, started)).expect("test waits"));
            let _ = under_way.recv_timeout(PATIENCE);
            c.close();
        }),
        ..Hooks::default()
    };
    let running = serve(hooks);
    for round in 0..ROUNDS {
        let mut client = running.connect();
        let mut got = Vec::new();
        if let Err(e) = client.read_to_end(&mut got) {
            panic!("round {round}: {e} after {} bytes: a write after close reset the connection", got.len());
        }
        match results.recv_timeout(PATIENCE).expect("the writer ends") {
            Ok(_) | Err(WriteError::Closed) => {}
            Err(e) => panic!("round {round}: a write racing close failed with {e:?}, not Closed"),
        }
    }
    running.stop();
}

/// Writes small chunks until one is refused, saying when it is a tenth of the way;
/// `Ok(n)` if all `WRITES` went through.
fn write_until_refused(conn: &Conn, started: mpsc::Sender<()>) -> Result<usize, WriteError> {
    for n in 0..WRITES {
        if n == WRITES / 10 {
            let _ = started.send(());
        }
        conn.write(&(n as u32).to_le_bytes())?;
    }
    Ok(WRITES)
}

/// Write hooks that can hold one write (and so the connection's output lock) until
/// released: the test's way to stop a writer at the worst moment.
struct Gate {
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    entered: mpsc::Sender<()>,
    release: std::sync::Arc<std::sync::Mutex<mpsc::Receiver<()>>>,
}

impl protocol_server::RwHooks for Gate {
    fn read(&mut self, stream: &std::net::TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
        (&*stream).read(buf)
    }
    fn write(&mut self, stream: &std::net::TcpStream, buf: &[u8]) -> std::io::Result<usize> {
        use std::io::Write;
        if self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            let _ = self.entered.send(());
            let _ = self.release.lock().expect("no panic under lock").recv_timeout(PATIENCE);
        }
        (&*stream).write(buf)
    }
}

/// One write holds the output lock (inside its hook) while a second writer waits for
/// that lock and `close()` runs; then the lock is released, and the second writer and
/// the close path (which sends FIN once it finds the queue empty) race for it. The
/// state must be checked under the lock: a writer that checked it before taking the
/// lock would, when the close path wins, write into the shut socket (EPIPE, the
/// connection reset). Either it goes out before the FIN or it is refused as `Closed`.
#[test]
fn a_writer_waiting_for_the_output_lock_while_close_runs_is_refused_or_delivered() {
    for round in 0..30 {
        let (conns, opened) = mpsc::channel();
        let conns = std::sync::Arc::new(std::sync::Mutex::new(conns));
        let hooks = Hooks {
            on_open: hook(move |c: &Conn| {
                conns.lock().expect("no panic under lock").send(c.clone()).expect("test waits")
            }),
            ..Hooks::default()
        };
        let running = serve(hooks);
        let mut client = running.connect();
        let conn = opened.recv_timeout(PATIENCE).expect("opened");
        let armed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (entered_tx, entered) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel();
        conn.set_rw_hooks(Box::new(Gate {
            armed: std::sync::Arc::clone(&armed),
            entered: entered_tx,
            release: std::sync::Arc::new(std::sync::Mutex::new(release_rx)),
        }));
        armed.store(true, std::sync::atomic::Ordering::SeqCst);
        let holder = conn.clone();
        let first = std::thread::spawn(move || holder.write(b"first"));
        entered.recv_timeout(PATIENCE).expect("the first write is inside its hook, holding the output lock");
        let racer = conn.clone();
        let second = std::thread::spawn(move || racer.write(b"second"));
        // Neither "the second writer waits for the lock" nor "the close path waits for
        // it" can be observed from here: give both time to get there.
        std::thread::sleep(std::time::Duration::from_millis(20));
        conn.close();
        std::thread::sleep(std::time::Duration::from_millis(20));
        release_tx.send(()).expect("the hook waits");
        assert!(
            first.join().expect("first writer").is_ok(),
            "round {round}: the first write was before close()"
        );
        let second = second.join().expect("second writer");
        let mut got = Vec::new();
        let _ = client.read_to_end(&mut got);
        match second {
            Ok(()) => assert_eq!(got, b"firstsecond", "round {round}: an accepted write must arrive before the FIN"),
            Err(WriteError::Closed) => assert_eq!(got, b"first", "round {round}"),
            Err(e) => panic!("round {round}: a write racing close() failed with {e:?} instead of Closed: it reached the shut socket"),
        }
        running.stop();
    }
}
