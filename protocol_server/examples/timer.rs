//! Timers: `run_every` prints a counter five times, `run_after` stops the server.
//!
//! `cargo run -p protocol_server --example timer` (exits by itself after ~1 s).
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use protocol_server::{Conn, Protocol, Server};

/// A server needs a listener; this one just hangs up on anyone who connects.
struct Nobody;

impl Protocol for Nobody {
    fn service(&self) -> &'static str {
        "nobody"
    }
    fn on_data(&mut self, conn: &Conn) {
        conn.close();
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    Server::builder()
        .port(0)
        .on_init(|server| {
            let counter = Arc::new(AtomicU32::new(0));
            // Timer tasks run on the workers, never on the reactor thread.
            let tick = move || println!("tick {}", counter.fetch_add(1, Ordering::Relaxed) + 1);
            server.run_every(Duration::from_millis(150), 5, tick).expect("the server is running");
            let stopper = server.clone();
            server.run_after(Duration::from_secs(1), move || stopper.stop()).expect("the server is running");
        })
        .on_finish(|_| println!("stopped"))
        .protocol(|| Nobody)
        .start()?;
    Ok(())
}
