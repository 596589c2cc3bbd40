//! SIGTERM and SIGINT sent to this test process stop the reactor's loop cleanly.
//! Alone in its binary: the signals go to the whole process.

mod util;

use nix::sys::signal::{raise, Signal};
use reactor::Builder;
use util::{start, wait_for, Ev};

#[test]
fn sigterm_then_sigint_each_end_a_running_reactor() {
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        let r = start(Builder::new().signals(true));
        raise(signal).expect("signal sent to this process");
        wait_for(&r.rx, "on_shutdown", |ev| (*ev == Ev::Shutdown).then_some(()));
        r.thread.join().expect("reactor thread").expect("clean stop on {signal}");
    }
}
