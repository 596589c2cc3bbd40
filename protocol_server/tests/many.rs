//! 8,000 concurrent connections, each echoing one message. Client and server share
//! this process's open-file limit (16,000 descriptors of the 20,000 here).

mod util;

use std::io::Write;

use protocol_server::Server;
use util::{hook, read_all, read_n, start, Hooks};

const CONNECTIONS: usize = 8_000;

#[test]
fn eight_thousand_connections_each_echo_one_message() {
    let limit = reactor::raise_fd_limit().expect("RLIMIT_NOFILE can be raised");
    assert!(limit as usize > 2 * CONNECTIONS + 100, "this machine allows only {limit} descriptors");
    let hooks = Hooks { on_data: hook(|c| drop(c.write(&read_all(c)))), ..Hooks::default() };
    let running = start(
        Server::builder()
            .threads(2)
            .port(0)
            .timeout(std::time::Duration::ZERO)
            .protocol(move || hooks.clone()),
    );
    let mut clients = Vec::with_capacity(CONNECTIONS);
    for i in 0..CONNECTIONS {
        let mut c = running.connect();
        c.write_all(format!("{i:05}\n").as_bytes()).expect("write");
        clients.push(c);
    }
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(read_n(c, 6), format!("{i:05}\n").as_bytes(), "connection {i}");
    }
    assert_eq!(running.server.count(None), CONNECTIONS, "all held at once");
    drop(clients);
    running.stop();
}
