//! Writes from another thread racing `close()`: each either goes out before the FIN
//! or fails with `WriteError::Closed`. None may reach the socket after its FIN: that
//! write fails with EPIPE, the connection is reset, and the peer loses what was still
//! in flight.

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
