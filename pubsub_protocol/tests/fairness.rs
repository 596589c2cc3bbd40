//! A publish to very many subscribers is delivered in slices: the other connections
//! of the publisher's worker are served meanwhile, and every subscriber still gets
//! every message, in order.

#[path = "util/process.rs"]
mod process;
mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use process::Pubsub;
use pubsub_protocol::packet::{Packet, Publish, QoS, Subscribe};
use util::{connect_packet, Client, PATIENCE};

const SUBSCRIBERS: usize = 10_000;
/// Messages in the burst: 500,000 deliveries, far more than one turn's worth.
const MESSAGES: usize = 50;
const TOPIC: &str = "fan/all";
const PAYLOAD: usize = 100;
/// Another connection of the same worker is answered within this, fan-out or not.
const ANSWER_WITHIN: Duration = Duration::from_millis(50);

#[test]
fn a_burst_to_10000_subscribers_leaves_the_worker_free_for_its_other_connections() {
    // 10,000 sockets here and as many in the broker: raise this process's limit.
    let fds = protocol_server::capacity();
    assert!(fds > SUBSCRIBERS + 100, "RLIMIT_NOFILE allows only {fds} connections; this test needs more");
    // One worker: every connection shares it, the publisher's included.
    let broker = Pubsub::start(&["--threads", "1"]);
    let mut subs: Vec<TcpStream> = (0..SUBSCRIBERS)
        .map(|i| {
            let mut s = TcpStream::connect(broker.addr).expect("connect a subscriber");
            s.set_read_timeout(Some(PATIENCE)).expect("read timeout");
            // Both at once: the answers are read below, for all of them.
            let mut hello = Packet::Connect(connect_packet(&format!("s{i}"), true, None)).to_bytes();
            Packet::Subscribe(Subscribe { packet_id: 1, filters: vec![(TOPIC.into(), QoS::AtMostOnce)] })
                .encode(&mut hello);
            s.write_all(&hello).expect("CONNECT and SUBSCRIBE");
            s
        })
        .collect();
    // CONNACK (4 bytes) and SUBACK (5) on every one: all are subscribed.
    for (i, s) in subs.iter_mut().enumerate() {
        let mut answers = [0u8; 9];
        s.read_exact(&mut answers).unwrap_or_else(|e| panic!("subscriber {i}: no CONNACK and SUBACK: {e}"));
        assert_eq!(answers, [0x20, 2, 0, 0, 0x90, 3, 0, 1, 0], "subscriber {i}");
    }
    let (mut pinger, _) = Client::connect(broker.addr, "pinger", true, None);
    let (mut publisher, _) = Client::connect(broker.addr, "publisher", true, None);
    let mut burst = Vec::new();
    for n in 0..MESSAGES {
        let mut payload = vec![b'.'; PAYLOAD];
        payload[0] = n as u8;
        let p = Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: TOPIC.into(),
            packet_id: None,
            payload: payload.into(),
        };
        Packet::Publish(p).encode(&mut burst);
    }
    // The pinger measures round trips on the shared worker for as long as the burst
    // is on its way: one of them waits behind the fan-out unless it is sliced.
    let done = Arc::new(AtomicBool::new(false));
    let pings = {
        let done = Arc::clone(&done);
        thread::spawn(move || {
            let started = Instant::now();
            let mut slowest = Duration::ZERO;
            let mut count = 0u32;
            while !done.load(Ordering::Acquire) && started.elapsed() < 10 * PATIENCE && count < 1_000_000 {
                let asked = Instant::now();
                pinger.send(&Packet::Pingreq);
                assert_eq!(pinger.recv(), Packet::Pingresp);
                slowest = slowest.max(asked.elapsed());
                count += 1;
            }
            (slowest, count)
        })
    };
    publisher.send_bytes(&burst);
    // Every subscriber gets every message, in order.
    for (i, s) in subs.iter_mut().enumerate() {
        let mut got = vec![0u8; burst.len()];
        s.read_exact(&mut got).unwrap_or_else(|e| panic!("subscriber {i}: messages missing: {e}"));
        assert_eq!(got, burst, "subscriber {i}: the burst, whole and in order");
    }
    done.store(true, Ordering::Release);
    let (slowest, count) = pings.join().expect("the pinger");
    eprintln!("slowest of {count} round trips during the fan-out: {slowest:?}");
    assert!(count > 1, "the fan-out ended before a second ping: nothing was measured");
    assert!(
        slowest < ANSWER_WITHIN,
        "a PINGREQ on the publisher's worker waited {slowest:?} behind a fan-out of {} deliveries ({count} pings)",
        SUBSCRIBERS * MESSAGES
    );
}
