//! The reactor's thread runs under SCHED_BATCH while it runs (so that an arriving
//! event does not preempt a worker sharing its core), and gets its policy back after.

use std::sync::mpsc::{self, Sender};
use std::sync::Arc;

use async_pool::Pool;
use reactor::{Builder, ConnId, Dispatch, Origin, Ready};
use std::net::TcpStream;

const SCHED_OTHER: u32 = 0;
const SCHED_BATCH: u32 = 3;

/// The calling thread's scheduling policy: field 41 of `/proc/thread-self/stat`.
fn policy() -> u32 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("procfs is mounted");
    // Field 2 (the name) is in parentheses and may hold spaces: count after its end.
    let after_name = &stat[stat.rfind(')').expect("stat has a name field") + 1..];
    after_name.split_whitespace().nth(41 - 3).and_then(|f| f.parse().ok()).expect("stat has a policy field")
}

/// Reports the policy of the thread that calls `on_turn` (the reactor's), then stops it.
struct Probe {
    tx: Sender<u32>,
    handle: Option<reactor::Handle>,
}

impl Dispatch for Probe {
    fn on_open(&mut self, _: ConnId, _: Origin, _: Arc<TcpStream>) {}
    fn on_ready(&mut self, _: ConnId, _: Ready) {}
    fn on_closed(&mut self, _: ConnId) {}
    fn on_turn(&mut self, _: bool) {
        if let Some(handle) = self.handle.take() {
            let _ = self.tx.send(policy());
            handle.shutdown().expect("the reactor is running");
        }
    }
}

fn policies_during_and_after(builder: Builder) -> (u32, u32, u32) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let before = policy();
        let pool = Arc::new(Pool::new(1).expect("pool starts"));
        let reactor = builder
            .signals(false)
            .build_with(pool, |handle| Probe { tx: tx.clone(), handle: Some(handle) })
            .expect("reactor builds");
        // A timer makes the first turn come at once.
        reactor.handle().run_after(std::time::Duration::ZERO, || {}).expect("reactor accepts timers");
        reactor.run().expect("reactor runs");
        let _ = tx.send(before);
        let _ = tx.send(policy());
    });
    let during = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("the reactor turned");
    let before = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("the reactor returned");
    let after = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("the thread reported");
    (before, during, after)
}

#[test]
fn the_reactor_runs_under_sched_batch_and_restores_the_policy() {
    let (before, during, after) = policies_during_and_after(Builder::new());
    assert_eq!(before, SCHED_OTHER, "the test thread starts under SCHED_OTHER");
    assert_eq!(during, SCHED_BATCH, "the reactor's loop runs under SCHED_BATCH");
    assert_eq!(after, SCHED_OTHER, "the thread's policy is restored when run returns");
}

#[test]
fn batch_scheduling_false_leaves_the_policy_alone() {
    let (_, during, _) = policies_during_and_after(Builder::new().batch_scheduling(false));
    assert_eq!(during, SCHED_OTHER, "batch_scheduling(false) keeps SCHED_OTHER");
}
