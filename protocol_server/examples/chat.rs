//! A chat room: each line a client sends goes to every other client, with `each`.
//!
//! `cargo run -p protocol_server --example chat -- --port 3000`, then several
//! `nc 127.0.0.1 3000` (or `telnet`) and type.
use std::sync::Arc;

use protocol_server::{Conn, Protocol, Server};

/// Per-connection state: the bytes of a line not finished yet.
#[derive(Default)]
struct Chat {
    partial: Vec<u8>,
}

impl Protocol for Chat {
    fn service(&self) -> &'static str {
        "chat"
    }

    fn on_open(&mut self, conn: &Conn) {
        let _ = conn.write(format!("welcome, you are #{}\n", conn.id().slot).as_bytes());
    }

    fn on_data(&mut self, conn: &Conn) {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = conn.read(&mut buf) {
            self.partial.extend_from_slice(&buf[..n]);
        }
        // Bound what one client can make us hold: a "line" of 64 KiB is a flood.
        if self.partial.len() > 64 * 1024 {
            conn.close();
            return;
        }
        while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let message: Arc<[u8]> = [format!("#{}: ", conn.id().slot).as_bytes(), &line].concat().into();
            // Runs on every other chat connection's own worker; a peer that does not
            // read is disconnected by max_output, not allowed to grow our memory.
            conn.server().each(
                Some(conn.id()),
                Some("chat"),
                move |other| drop(other.write(&message)),
                || {},
            );
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let port = std::env::args().skip_while(|a| a != "--port").nth(1).map_or(Ok(3000), |p| p.parse())?;
    Server::builder().port(port).max_output(1 << 20).protocol(Chat::default).start()?;
    Ok(())
}
