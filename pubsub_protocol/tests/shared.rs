//! Shared subscriptions (`$share/GROUP/FILTER`): each message to exactly one member
//! of each group, round-robin, never to an offline member while another is online;
//! no retained messages for them; a malformed one closes the connection.

mod util;

use std::collections::HashSet;
use std::net::TcpStream;
use std::sync::mpsc;
use std::thread;

use pubsub_protocol::packet::{Packet, Publish, QoS, Subscribe};
use pubsub_protocol::Config;
use util::{start, start_with, Client, Next, PATIENCE};

/// What a member's reader thread reports.
enum Seen {
    Message(usize, u32),
    /// The PINGRESP that answers the main thread's PINGREQ: nothing else was pending.
    Synced(usize),
}

/// Reads a member's deliveries (acknowledging them) until the connection closes.
fn reader(member: usize, mut client: Client, seen: mpsc::Sender<Seen>) -> thread::JoinHandle<()> {
    thread::spawn(move || loop {
        match client.next() {
            Next::Packet(Packet::Publish(p)) => {
                if let Some(id) = p.packet_id {
                    client.send(&Packet::Puback(id));
                }
                let seq = u32::from_be_bytes(p.payload[..4].try_into().expect("4-byte sequence numbers"));
                if seen.send(Seen::Message(member, seq)).is_err() {
                    return;
                }
            }
            Next::Packet(Packet::Pingresp) => {
                let _ = seen.send(Seen::Synced(member));
            }
            Next::Packet(other) => panic!("member {member}: unexpected {other:?}"),
            Next::Silent => {}
            Next::Closed => return,
        }
    })
}

/// `members` clients share `$share/GROUP/TOPIC` while one plain subscriber takes every
/// message; a publisher sends `messages` QoS 1 messages as fast as the broker acks
/// them (windows of 100). Returns how many each member got, after checking that
/// every message reached exactly one member and the plain subscriber.
fn run_group(addr: std::net::SocketAddr, members: usize, messages: u32) -> Vec<usize> {
    let topic = format!("load/{members}");
    let filter = format!("$share/g{members}/{topic}");
    let (tx, rx) = mpsc::channel();
    let mut writers: Vec<TcpStream> = Vec::new();
    let mut threads = Vec::new();
    for m in 0..=members {
        let (mut c, _) = Client::connect(addr, &format!("member-{members}-{m}"), true, None);
        // The last one is the plain subscriber, the control.
        c.subscribe(if m == members { &topic } else { &filter }, QoS::AtLeastOnce);
        writers.push(c.stream.try_clone().expect("clone the socket"));
        threads.push(reader(m, c, tx.clone()));
    }
    drop(tx);
    let (mut publisher, _) = Client::connect(addr, &format!("publisher-{members}"), true, None);
    for window in (0..messages).collect::<Vec<_>>().chunks(100) {
        for &seq in window {
            publisher.send(&Packet::Publish(Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: false,
                topic: topic.as_str().into(),
                packet_id: Some((seq % 100 + 1) as u16),
                payload: seq.to_be_bytes().to_vec().into(),
            }));
        }
        for _ in window {
            assert!(matches!(publisher.recv(), Packet::Puback(_)));
        }
    }
    let mut got: Vec<HashSet<u32>> = vec![HashSet::new(); members + 1];
    let mut group = HashSet::new();
    while group.len() < messages as usize || got[members].len() < messages as usize {
        match rx.recv_timeout(PATIENCE) {
            Ok(Seen::Message(m, seq)) => {
                assert!(got[m].insert(seq), "member {m} got message {seq} twice");
                assert!(m == members || group.insert(seq), "message {seq} reached two members of the group");
            }
            Ok(Seen::Synced(m)) => panic!("member {m} synced before any sync was asked"),
            Err(_) => panic!(
                "{members} members: {} and {} of {messages} messages arrived",
                group.len(),
                got[members].len()
            ),
        }
    }
    // Everything arrived once; a PINGREQ to each proves nothing more was on its way.
    for w in &mut writers {
        std::io::Write::write_all(w, &Packet::Pingreq.to_bytes()).expect("PINGREQ");
    }
    for _ in 0..=members {
        match rx.recv_timeout(PATIENCE) {
            Ok(Seen::Synced(_)) => {}
            Ok(Seen::Message(m, seq)) => panic!("member {m}: message {seq} delivered twice"),
            Err(_) => panic!("no PINGRESP"),
        }
    }
    for w in &writers {
        let _ = w.shutdown(std::net::Shutdown::Both);
    }
    for t in threads {
        t.join().expect("reader thread");
    }
    got.iter().take(members).map(HashSet::len).collect()
}

#[test]
fn each_message_reaches_exactly_one_member_and_the_spread_is_even_with_two_and_three_members() {
    // Room for every message in each subscriber's queue: the publisher outruns the
    // subscribers' acknowledgements, and the default bound (1,000) would drop some.
    let running = start_with(Config { max_queued: 10_000, ..Config::default() });
    for members in [2, 3] {
        const MESSAGES: u32 = 3_000;
        let counts = run_group(running.addr, members, MESSAGES);
        let fair = MESSAGES as usize / members;
        for (m, n) in counts.iter().enumerate() {
            assert!(
                n.abs_diff(fair) * 10 <= fair,
                "{members} members: member {m} got {n} of {MESSAGES}, more than 10 % from {fair}: {counts:?}"
            );
        }
    }
    running.stop();
}

#[test]
fn an_offline_member_gets_nothing_while_another_is_online_and_no_retained_message_is_sent() {
    let running = start();
    let (mut setter, _) = Client::connect(running.addr, "setter", true, None);
    setter.publish("jobs/x", b"retained", QoS::AtLeastOnce, true);
    let (mut away, _) = Client::connect(running.addr, "away", false, None);
    away.subscribe("$share/workers/jobs/+", QoS::AtLeastOnce);
    let (mut here, _) = Client::connect(running.addr, "here", true, None);
    here.subscribe("$share/workers/jobs/+", QoS::AtLeastOnce);
    here.expect_nothing_pending("no retained message for a shared subscription");
    away.expect_nothing_pending("no retained message for a shared subscription");
    // Persistent: its session and membership stay while it is offline. Its DISCONNECT
    // is handled (the member offline) before the broker closes the connection.
    away.send(&Packet::Disconnect);
    away.expect_closed("DISCONNECT");
    for n in 0..50u32 {
        setter.publish("jobs/y", &n.to_be_bytes(), QoS::AtLeastOnce, false);
    }
    for n in 0..50u32 {
        let p = here.received();
        assert_eq!(&p.payload[..], n.to_be_bytes(), "the online member gets every message, in order");
    }
    let (mut back, ack) = Client::connect(running.addr, "away", false, None);
    assert!(ack.session_present);
    back.expect_nothing_pending("nothing was queued for the offline member");
    // Back online: it takes its turns again.
    for n in 0..10u32 {
        setter.publish("jobs/z", &n.to_be_bytes(), QoS::AtMostOnce, false);
    }
    setter.sync();
    let mut total = 0;
    for c in [&mut here, &mut back] {
        c.send(&Packet::Pingreq);
        while let Packet::Publish(_) = c.recv() {
            total += 1;
        }
    }
    assert_eq!(total, 10, "each QoS 0 message to one of the two members");
    running.stop();
}

#[test]
fn a_malformed_shared_filter_closes_the_connection() {
    let running = start();
    for bad in ["$share/g", "$share//a", "$share/g+/a", "$share/"] {
        let (mut c, _) = Client::connect(running.addr, "bad", true, None);
        c.send(&Packet::Subscribe(Subscribe { packet_id: 1, filters: vec![(bad.into(), QoS::AtMostOnce)] }));
        c.expect_closed(bad);
    }
    let (mut ok, _) = Client::connect(running.addr, "ok", true, None);
    ok.subscribe("$share/g/a", QoS::AtMostOnce);
    running.stop();
}
