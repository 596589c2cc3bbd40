//! A custom protocol in about 30 lines: every byte a client sends comes back.
//!
//! `cargo run --release -p protocol_server --example echo -- --port 9000 [--processes N]`
use protocol_server::{Conn, Protocol, Server};

/// One value per connection; this protocol needs no per-connection state.
struct Echo;

impl Protocol for Echo {
    fn service(&self) -> &'static str {
        "echo"
    }

    fn on_data(&mut self, conn: &Conn) {
        let mut buf = [0u8; 16 * 1024];
        // Ok(0): nothing more for now; errors close the connection for us.
        while let Ok(n @ 1..) = conn.read(&mut buf) {
            if conn.write(&buf[..n]).is_err() {
                return; // closed, or the peer does not read what we echo
            }
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let arg = |name: &str| std::env::args().skip_while(|a| a != name).nth(1);
    let port = arg("--port").map_or(Ok(3000), |p| p.parse())?;
    let processes = arg("--processes").map_or(Ok(1), |p| p.parse())?;
    Server::builder()
        .port(port)
        .processes(processes)
        .on_init(|server| {
            // Not println!: a closed stdout must not kill the server.
            let line = format!("echo server on {:?} (pid {})\n", server.local_addrs(), std::process::id());
            let _ = std::io::Write::write_all(&mut std::io::stdout(), line.as_bytes());
        })
        .protocol(|| Echo)
        .start()?;
    Ok(())
}
