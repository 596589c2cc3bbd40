//! Files that are not regular files under the root: a FIFO is answered 404 at once
//! (opening one without a writer would block the worker for ever), and the server goes
//! on serving. The open uses `O_NONBLOCK | O_NOFOLLOW` and `fstat`, so neither a FIFO
//! nor a symlink swapped in for the file after the path was checked is followed.

mod util;

use std::time::{Duration, Instant};

use util::{exchange, start_wrapped};

#[test]
fn a_fifo_under_the_root_is_refused_at_once_and_others_are_still_served() {
    let running = start_wrapped(
        |site| {
            nix::unistd::mkfifo(&site.root().join("pipe"), nix::sys::stat::Mode::S_IRUSR)
                .expect("mkfifo under the site root");
        },
        |_| {},
        |http| http,
    );
    // Both workers get a FIFO request: a blocking open would take them both out.
    for _ in 0..2 {
        let asked = Instant::now();
        let r = exchange(&running, b"GET /pipe HTTP/1.1\r\nHost: x\r\n\r\n").expect("an answer, not a hang");
        assert_eq!(r.status, 404, "a FIFO is not a file to serve");
        assert!(asked.elapsed() < Duration::from_secs(5), "answered after {:?}", asked.elapsed());
    }
    let r = exchange(&running, b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n").expect("served");
    assert_eq!(r.status, 200);
    running.stop();
}
