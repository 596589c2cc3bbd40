//! Malformed and hostile MQTT input, each with the reaction MQTT 3.1.1 prescribes (or,
//! where the standard leaves a choice, what mosquitto 2.0 does): a close (EOF or reset,
//! never a mere timeout), a CONNACK refusal then a close, a SUBACK failure code, an
//! acknowledgement, or nothing at all with the connection kept. A client that was
//! connected with a will and is closed for a violation has its will published
//! ([MQTT-3.1.2-8]). After every case a fresh subscriber and publisher are served, the
//! server thread is alive and no protocol hook panicked (a caught panic closes the
//! connection, which a client cannot tell from a deliberate close).
//!
//! Beyond the table, sequences: a length of 256 MiB announced but never allocated, a
//! connection that never sends CONNECT (closed by the idle timeout), a CONNECT a byte
//! at a time, a subscriber that never acknowledges QoS 2, and one that never reads
//! while 10 MB are published.

mod util;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pubsub_protocol::packet::{LastWill, Packet, QoS, Subscribe, Unsubscribe};
use pubsub_protocol::topic::Bounds;
use pubsub_protocol::Config;
use util::{start_with, start_with_idle, Client, Next, Running, PATIENCE};

/// Largest packet the table's broker accepts.
const MAX_PACKET: usize = 8 * 1024;
/// Longest topic the table's broker accepts (its depth bound is mosquitto's 200).
const MAX_TOPIC: usize = 1024;

fn config() -> Config {
    Config {
        max_packet: MAX_PACKET,
        max_client_id: 64,
        max_queued: 100,
        max_inflight: 4,
        topic: Bounds { max_levels: 200, max_length: MAX_TOPIC },
        ..Config::default()
    }
}

/// The tests here measure this process's memory and time a close: one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

// ---- Raw packets, built byte by byte so that they can be wrong ----

/// A packet: its first byte, then the body's length as a remaining length, then the body.
fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let byte = (len % 128) as u8;
        len /= 128;
        out.push(if len > 0 { byte | 0x80 } else { byte });
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// A string or binary field: its 16-bit length, then its bytes.
fn field(bytes: &[u8]) -> Vec<u8> {
    let len = u16::try_from(bytes.len()).expect("a field under 64 KiB");
    [&len.to_be_bytes()[..], bytes].concat()
}

/// CONNECT with this protocol name, level and flags, keep-alive 60 s, then `fields`.
fn connect_raw(name: &[u8], level: u8, flags: u8, fields: &[&[u8]]) -> Vec<u8> {
    let mut body = field(name);
    body.extend_from_slice(&[level, flags, 0, 60]);
    fields.iter().for_each(|f| body.extend(field(f)));
    packet(0x10, &body)
}

/// A valid CONNECT (clean session, client id `id`).
fn good_connect(id: &str) -> Vec<u8> {
    connect_raw(b"MQTT", 4, 0x02, &[id.as_bytes()])
}

/// PUBLISH with this first byte and topic, then `rest` (packet id, payload).
fn publish_raw(first: u8, topic: &[u8], rest: &[u8]) -> Vec<u8> {
    packet(first, &[&field(topic)[..], rest].concat())
}

fn subscribe_raw(first: u8, id: u16, filters: &[(&[u8], u8)]) -> Vec<u8> {
    let mut body = id.to_be_bytes().to_vec();
    for (filter, options) in filters {
        body.extend(field(filter));
        body.push(*options);
    }
    packet(first, &body)
}

fn unsubscribe_raw(first: u8, id: u16, filters: &[&[u8]]) -> Vec<u8> {
    let mut body = id.to_be_bytes().to_vec();
    filters.iter().for_each(|f| body.extend(field(f)));
    packet(first, &body)
}

/// `n` levels: `a/a/.../a`.
fn levels(n: usize) -> Vec<u8> {
    vec!["a"; n].join("/").into_bytes()
}

// ---- The table ----

/// Where a case's bytes go.
#[derive(Debug, Clone, Copy, PartialEq)]
enum At {
    /// First on a new connection.
    Fresh,
    /// After a valid CONNECT (with a will) was accepted.
    Connected,
}

/// What the broker must do.
#[derive(Debug)]
enum Want {
    /// Close the connection, sending nothing ([MQTT-4.8.0-1] unless said otherwise).
    Close,
    /// CONNACK with this return code, then close.
    Connack(u8),
    /// These packets, in order, and nothing else; the connection stays open.
    Answer(Vec<Packet>),
    /// Nothing; the connection stays open.
    Ignore,
}

/// One row: what it is, where it goes, its bytes, the reaction wanted, and the
/// statement of the standard (or the mosquitto behaviour) that says so.
struct Case {
    what: &'static str,
    at: At,
    bytes: Vec<u8>,
    want: Want,
    rule: &'static str,
}

fn case(what: &'static str, at: At, bytes: Vec<u8>, want: Want, rule: &'static str) -> Case {
    Case { what, at, bytes, want, rule }
}

use At::{Connected, Fresh};
use Want::{Answer, Close, Connack, Ignore};

/// Reserved flag bits of every fixed-header type ([MQTT-2.2.2-1/2]).
#[rustfmt::skip]
fn flag_cases() -> Vec<Case> {
    let id = [0, 1];
    let connect_0001 = [&[0x11][..], &good_connect("f")[1..]].concat();
    vec![
        case("CONNECT flags 0001", Fresh, connect_0001, Close, "MQTT-2.2.2-2"),
        case("PUBACK flags 0001", Connected, packet(0x41, &id), Close, "MQTT-2.2.2-2"),
        case("PUBREC flags 0100", Connected, packet(0x54, &id), Close, "MQTT-2.2.2-2"),
        case("PUBREL flags 0000", Connected, packet(0x60, &id), Close, "MQTT-3.6.1-1"),
        case("PUBREL flags 0011", Connected, packet(0x63, &id), Close, "MQTT-3.6.1-1"),
        case("PUBCOMP flags 1000", Connected, packet(0x78, &id), Close, "MQTT-2.2.2-2"),
        case("SUBSCRIBE flags 0000", Connected, subscribe_raw(0x80, 1, &[(b"t", 0)]), Close, "MQTT-3.8.1-1"),
        case("SUBSCRIBE flags 0110", Connected, subscribe_raw(0x86, 1, &[(b"t", 0)]), Close, "MQTT-3.8.1-1"),
        case("UNSUBSCRIBE flags 0000", Connected, unsubscribe_raw(0xA0, 1, &[b"t"]), Close, "MQTT-3.10.1-1"),
        case("PINGREQ flags 0001", Connected, vec![0xC1, 0], Close, "MQTT-2.2.2-2"),
        case("DISCONNECT flags 0010", Connected, vec![0xE2, 0], Close, "MQTT-3.14.1-1"),
        case("PUBLISH DUP at QoS 0", Connected, publish_raw(0x38, b"t", b"x"), Close, "MQTT-3.3.1-2"),
        case("PUBLISH QoS 3", Connected, publish_raw(0x36, b"t", &[0, 1, b'x']), Close, "MQTT-3.3.1-4"),
    ]
}

/// The fixed header itself: the length's encoding, reserved types, sizes, bodies of
/// packets that have none or a fixed one (mosquitto: malformed, disconnect).
#[rustfmt::skip]
fn framing_cases() -> Vec<Case> {
    // Closed on the header alone: nothing of the 256 MiB is waited for.
    let huge = [&[0x30, 0xFF, 0xFF, 0xFF, 0x7F][..], &field(b"t"), b"x"].concat();
    let oversize = publish_raw(0x30, b"t", &[b'x'; MAX_PACKET]);
    let max = "max_packet (mosquitto: max_packet_size)";
    let pong = Answer(vec![Packet::Pingresp]);
    vec![
        case("remaining length of 5 bytes", Connected, vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], Close, "§2.2.3"),
        case("PINGREQ, length 0 in 5 bytes", Connected, vec![0xC0, 0x80, 0x80, 0x80, 0x80, 0], Close, "§2.2.3"),
        // Not minimal, but 3.1.1 does not forbid that (MQTT 5 does).
        case("PINGREQ, length 0 in 4 bytes", Connected, vec![0xC0, 0x80, 0x80, 0x80, 0], pong, "§2.2.3"),
        case("remaining length 268,435,455", Connected, huge, Close, max),
        case("whole packet > max_packet", Connected, oversize, Close, max),
        case("packet type 0", Connected, vec![0x00, 0], Close, "§2.2.1 (reserved), MQTT-4.8.0-1"),
        case("packet type 15", Connected, vec![0xF0, 0], Close, "§2.2.1 (reserved), MQTT-4.8.0-1"),
        case("PINGREQ with a body", Connected, vec![0xC0, 1, 0], Close, "§3.12.3: no payload"),
        case("DISCONNECT with a body", Connected, vec![0xE0, 1, 0], Close, "§3.14.3: no payload"),
        case("PUBACK with 3 bytes", Connected, packet(0x40, &[0, 1, 0]), Close, "§3.4.1: length 2"),
        case("PUBREL with 1 byte", Connected, packet(0x62, &[1]), Close, "§3.6.1: length 2"),
        case("PUBACK id 0", Connected, packet(0x40, &[0, 0]), Close, "MQTT-2.3.1-1 (mosquitto: protocol error)"),
    ]
}

/// Strings: UTF-8 and U+0000 ([MQTT-1.5.3-1/2]), and a length past the packet.
#[rustfmt::skip]
fn string_cases() -> Vec<Case> {
    let bad_id = connect_raw(b"MQTT", 4, 0x02, &[b"\xFF\xFEid"]);
    let nul_id = connect_raw(b"MQTT", 4, 0x02, &[b"i\0d"]);
    let bad_user = connect_raw(b"MQTT", 4, 0x82, &[b"u-id", b"\xC0\x80"]);
    vec![
        case("invalid UTF-8 in a topic", Connected, publish_raw(0x30, b"a\xC3\x28", b""), Close, "MQTT-1.5.3-1"),
        case("UTF-16 surrogate in a topic", Connected, publish_raw(0x30, b"\xED\xA0\x80", b""), Close, "MQTT-1.5.3-1"),
        case("U+0000 in a topic", Connected, publish_raw(0x30, b"a\0b", b""), Close, "MQTT-1.5.3-2"),
        case("invalid UTF-8 in the client id", Fresh, bad_id, Close, "MQTT-1.5.3-1, MQTT-3.1.3-4"),
        case("U+0000 in the client id", Fresh, nul_id, Close, "MQTT-1.5.3-2"),
        case("overlong UTF-8 in the user name", Fresh, bad_user, Close, "MQTT-1.5.3-1, MQTT-3.1.3-11"),
        case("invalid UTF-8 in a filter", Connected, subscribe_raw(0x82, 1, &[(b"\xFF", 0)]), Close, "MQTT-3.8.3-1"),
        case("invalid UTF-8 to unsubscribe", Connected, unsubscribe_raw(0xA2, 1, &[b"\xFF"]), Close, "MQTT-3.10.3-1"),
        case("topic length past the packet", Connected, packet(0x30, &[0, 0xFF, b'a', b'b']), Close, "§1.5.3"),
    ]
}

/// PUBLISH: topic names, packet ids, and this broker's topic bounds (a PUBLISH past
/// them closes, as bounds.rs shows; the boundary itself is accepted).
#[rustfmt::skip]
fn publish_cases() -> Vec<Case> {
    let id = [0, 7];
    let acked = || Answer(vec![Packet::Puback(7)]);
    let (long, at_bound) = (vec![b'a'; MAX_TOPIC + 1], vec![b'a'; MAX_TOPIC]);
    vec![
        case("'+' in a PUBLISH topic", Connected, publish_raw(0x30, b"a/+", b""), Close, "MQTT-3.3.2-2"),
        case("'#' in a PUBLISH topic", Connected, publish_raw(0x30, b"a/#", b""), Close, "MQTT-3.3.2-2"),
        case("empty PUBLISH topic", Connected, publish_raw(0x30, b"", b"x"), Close, "MQTT-4.7.3-1"),
        case("QoS 1 PUBLISH, packet id 0", Connected, publish_raw(0x32, b"t", &[0, 0]), Close, "MQTT-2.3.1-1"),
        case("QoS 2 PUBLISH, packet id 0", Connected, publish_raw(0x34, b"t", &[0, 0]), Close, "MQTT-2.3.1-1"),
        case("QoS 1 PUBLISH, no packet id", Connected, publish_raw(0x32, b"t", &[]), Close, "§3.3.2.2"),
        case("PUBLISH of 201 levels", Connected, publish_raw(0x32, &levels(201), &id), Close, "mosquitto: 200 levels"),
        case("PUBLISH of 200 levels", Connected, publish_raw(0x32, &levels(200), &id), acked(), "MQTT-4.3.2-2"),
        case("PUBLISH topic too long", Connected, publish_raw(0x32, &long, &id), Close, "topic bound"),
        case("PUBLISH topic at the bound", Connected, publish_raw(0x32, &at_bound, &id), acked(), "MQTT-4.3.2-2"),
    ]
}

/// CONNECT, and what may come before it.
#[rustfmt::skip]
fn connect_cases() -> Vec<Case> {
    let mqtt = |level: u8, flags: u8, fields: &[&[u8]]| connect_raw(b"MQTT", level, flags, fields);
    let name = |name: &[u8], level: u8| connect_raw(name, level, 0x02, &[b"c"]);
    let long_id = "i".repeat(65);
    let v5 = packet(0x10, &[&field(b"MQTT")[..], &[5, 2, 0, 60, 0], &field(b"c")].concat());
    vec![
        case("PUBLISH before CONNECT", Fresh, publish_raw(0x30, b"t", b"x"), Close, "MQTT-3.1.0-1"),
        // Closed on its first byte: nothing is buffered for a client that did not CONNECT.
        case("PUBLISH header before CONNECT", Fresh, vec![0x30, 100, 0, 1, b't'], Close, "MQTT-3.1.0-1"),
        // A real v5 CONNECT (property length 0, client id "c"): told to fall back.
        case("MQTT 5 CONNECT", Fresh, v5, Connack(1), "MQTT-3.1.2-2"),
        case("SUBSCRIBE before CONNECT", Fresh, subscribe_raw(0x82, 1, &[(b"#", 0)]), Close, "MQTT-3.1.0-1"),
        case("PINGREQ before CONNECT", Fresh, vec![0xC0, 0], Close, "MQTT-3.1.0-1"),
        case("DISCONNECT before CONNECT", Fresh, vec![0xE0, 0], Close, "MQTT-3.1.0-1"),
        case("CONNACK before CONNECT", Fresh, vec![0x20, 2, 0, 0], Close, "MQTT-3.1.0-1"),
        case("second CONNECT", Connected, good_connect("again"), Close, "MQTT-3.1.0-2"),
        case("protocol name MQTX", Fresh, name(b"MQTX", 4), Close, "MQTT-3.1.2-1 (may disconnect)"),
        case("protocol name mqtt", Fresh, name(b"mqtt", 4), Close, "MQTT-3.1.2-1 (may disconnect)"),
        // mosquitto speaks 3.1 as well; this broker does not (CONFORMANCE.md, "Not implemented").
        case("MQTT 3.1 (MQIsdp, level 3)", Fresh, name(b"MQIsdp", 3), Close, "MQTT-3.1.2-1 (may disconnect)"),
        case("protocol level 3", Fresh, mqtt(3, 0x02, &[b"c"]), Connack(1), "MQTT-3.1.2-2"),
        case("protocol level 5, 3.1.1 layout", Fresh, mqtt(5, 0x02, &[b"c"]), Connack(1), "MQTT-3.1.2-2"),
        case("protocol level 0", Fresh, mqtt(0, 0x02, &[b"c"]), Connack(1), "MQTT-3.1.2-2"),
        case("CONNECT reserved flag", Fresh, mqtt(4, 0x03, &[b"c"]), Close, "MQTT-3.1.2-3"),
        case("will QoS 1, no will flag", Fresh, mqtt(4, 0x0A, &[b"c"]), Close, "MQTT-3.1.2-11, -13"),
        case("will retain, no will flag", Fresh, mqtt(4, 0x22, &[b"c"]), Close, "MQTT-3.1.2-11, -15"),
        case("will QoS 3", Fresh, mqtt(4, 0x1E, &[b"c", b"w", b"m"]), Close, "MQTT-3.1.2-14"),
        case("will flag, no will topic", Fresh, mqtt(4, 0x06, &[b"c"]), Close, "MQTT-3.1.2-9"),
        case("will flag, no will message", Fresh, mqtt(4, 0x06, &[b"c", b"w"]), Close, "MQTT-3.1.2-9"),
        case("wildcard in the will topic", Fresh, mqtt(4, 0x06, &[b"c", b"w/#", b"m"]), Close, "MQTT-4.7.1-1"),
        case("password flag, no user name flag", Fresh, mqtt(4, 0x42, &[b"c", b"p"]), Close, "MQTT-3.1.2-22"),
        case("user name flag, no user name", Fresh, mqtt(4, 0x82, &[b"c"]), Close, "MQTT-3.1.2-19"),
        case("password flag, no password", Fresh, mqtt(4, 0xC2, &[b"c", b"u"]), Close, "MQTT-3.1.2-21"),
        case("bytes after the CONNECT payload", Fresh, mqtt(4, 0x02, &[b"c", b"extra"]), Close, "MQTT-3.1.4-1"),
        case("CONNECT cut after its name", Fresh, packet(0x10, &field(b"MQTT")), Close, "MQTT-3.1.4-1"),
        case("empty client id, persistent", Fresh, mqtt(4, 0x00, &[b""]), Connack(2), "MQTT-3.1.3-8"),
        case("client id past max_client_id", Fresh, mqtt(4, 0x02, &[long_id.as_bytes()]), Connack(2), "MQTT-3.1.3-9"),
    ]
}

/// SUBSCRIBE and UNSUBSCRIBE. This broker's topic bounds are not rules of the
/// standard: a filter past them gets the SUBACK failure code ([MQTT-3.9.3]) and the
/// others in the same packet are granted.
#[rustfmt::skip]
fn subscribe_cases() -> Vec<Case> {
    let sub = |filters: &[(&[u8], u8)]| subscribe_raw(0x82, 1, filters);
    let suback = |codes: &[u8]| Answer(vec![Packet::Suback(1, codes.to_vec())]);
    let (deep, long) = (levels(201), vec![b'a'; MAX_TOPIC + 1]);
    vec![
        case("SUBSCRIBE packet id 0", Connected, subscribe_raw(0x82, 0, &[(b"t", 0)]), Close, "MQTT-2.3.1-1"),
        case("SUBSCRIBE without filters", Connected, sub(&[]), Close, "MQTT-3.8.3-3"),
        case("SUBSCRIBE QoS 3", Connected, sub(&[(b"t", 3)]), Close, "MQTT-3.8.3-4"),
        case("SUBSCRIBE reserved option bits", Connected, sub(&[(b"t", 0x04)]), Close, "MQTT-3.8.3-4"),
        case("SUBSCRIBE filter, no QoS byte", Connected, packet(0x82, &[0, 1, 0, 1, b't']), Close, "§3.8.3"),
        case("UNSUBSCRIBE without filters", Connected, unsubscribe_raw(0xA2, 1, &[]), Close, "MQTT-3.10.3-2"),
        case("UNSUBSCRIBE packet id 0", Connected, unsubscribe_raw(0xA2, 0, &[b"t"]), Close, "MQTT-2.3.1-1"),
        case("filter of 201 levels", Connected, sub(&[(&deep, 1), (b"ok/+", 1)]), suback(&[0x80, 1]), "MQTT-3.9.3-1"),
        case("filter of 200 levels", Connected, sub(&[(&levels(200), 1)]), suback(&[1]), "MQTT-3.9.3-1"),
        case("filter too long", Connected, sub(&[(&long, 2)]), suback(&[0x80]), "MQTT-3.9.3-1"),
        case("filter '#' at QoS 2", Connected, sub(&[(b"#", 2)]), suback(&[2]), "MQTT-3.9.3-1"),
        case("filter a/#/b", Connected, sub(&[(b"a/#/b", 0)]), Close, "MQTT-4.7.1-2"),
        case("filter a+", Connected, sub(&[(b"a+", 0)]), Close, "MQTT-4.7.1-3"),
        case("filter #a", Connected, sub(&[(b"#a", 0)]), Close, "MQTT-4.7.1-2"),
        case("empty filter", Connected, sub(&[(b"", 0)]), Close, "MQTT-4.7.3-1"),
    ]
}

/// Acknowledgements for ids never used, and packets only a server sends.
#[rustfmt::skip]
fn ack_cases() -> Vec<Case> {
    let server_only = "MQTT-4.8.0-1 (server to client only)";
    let answer = |p: Packet| Answer(vec![p]);
    let (pubrec, pubrel) = (packet(0x50, &[0x12, 0x35]), packet(0x62, &[0x12, 0x36]));
    let unsubscribe = unsubscribe_raw(0xA2, 9, &[b"no"]);
    vec![
        case("PUBACK for an unknown id", Connected, packet(0x40, &[0x12, 0x34]), Ignore, "mosquitto: ignored"),
        // MQTT-4.3.3-1: a PUBREC gets a PUBREL; mosquitto answers unknown ids too.
        case("PUBREC for an unknown id", Connected, pubrec, answer(Packet::Pubrel(0x1235)), "MQTT-4.3.3-1"),
        case("PUBREL for an unknown id", Connected, pubrel, answer(Packet::Pubcomp(0x1236)), "MQTT-3.6.4-1"),
        case("PUBCOMP for an unknown id", Connected, packet(0x70, &[0x12, 0x37]), Ignore, "mosquitto: ignored"),
        case("UNSUBSCRIBE, never subscribed", Connected, unsubscribe, answer(Packet::Unsuback(9)), "MQTT-3.10.4-5"),
        case("CONNACK from a client", Connected, vec![0x20, 2, 0, 0], Close, server_only),
        case("SUBACK from a client", Connected, packet(0x90, &[0, 1, 0]), Close, server_only),
        case("UNSUBACK from a client", Connected, packet(0xB0, &[0, 1]), Close, server_only),
        case("PINGRESP from a client", Connected, vec![0xD0, 0], Close, server_only),
    ]
}

fn cases() -> Vec<Case> {
    let parts = [flag_cases(), framing_cases(), string_cases(), publish_cases()];
    let more = [connect_cases(), subscribe_cases(), ack_cases()];
    parts.into_iter().chain(more).flatten().collect()
}

// ---- Running a case ----

/// A fresh client id for each normal client, so no case meets a takeover.
fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The checks after every case: the server thread runs, no hook panicked, and a new
/// subscriber gets what a new publisher sends.
fn still_served(running: &Running, panics: usize, after: &str) {
    assert!(!running.thread.is_finished(), "after {after}: the server thread has ended");
    assert_eq!(util::server_panics(), panics, "after {after}: a protocol hook panicked");
    let (mut s, _) = Client::connect(running.addr, &unique("ns"), true, None);
    s.subscribe("normal/t", QoS::AtLeastOnce);
    let (mut p, _) = Client::connect(running.addr, &unique("np"), true, None);
    p.publish("normal/t", b"ok", QoS::AtLeastOnce, false);
    assert_eq!(&s.received().payload[..], b"ok", "after {after}: a normal client is still served");
}

/// A PINGREQ round trip without panicking: the connection is open and nothing else
/// was on its way.
fn quiet(c: &mut Client) -> Result<(), String> {
    c.stream.write_all(&Packet::Pingreq.to_bytes()).map_err(|e| format!("PINGREQ not sent: {e}"))?;
    match c.next() {
        Next::Packet(Packet::Pingresp) if c.input.is_empty() => Ok(()),
        Next::Packet(Packet::Pingresp) => Err(format!("bytes after PINGRESP: {:?}", c.input)),
        other => Err(format!("expected only PINGRESP (connection kept, nothing sent), got {other:?}")),
    }
}

/// Whether the broker did what `want` says on `c`.
fn observe(c: &mut Client, want: &Want) -> Result<(), String> {
    let closed = |c: &mut Client, what: &str| match c.next() {
        Next::Closed if c.input.is_empty() => Ok(()),
        Next::Closed => Err(format!("{what}closed mid-packet")),
        other => Err(format!("{what}expected a close, got {other:?}")),
    };
    match want {
        Close => closed(c, ""),
        Connack(code) => match c.next() {
            Next::Packet(Packet::Connack(a)) if a.code as u8 == *code && !a.session_present => {
                closed(c, &format!("CONNACK {code}, then "))
            }
            other => Err(format!("expected CONNACK {code}, got {other:?}")),
        },
        Answer(packets) => {
            for p in packets {
                match c.next() {
                    Next::Packet(got) if got == *p => {}
                    other => return Err(format!("expected {p:?}, got {other:?}")),
                }
            }
            quiet(c)
        }
        Ignore => quiet(c),
    }
}

/// Runs case `n` on a new connection, checking the will as well: published after a
/// close of a connected client ([MQTT-3.1.2-8]), not after its DISCONNECT otherwise.
fn run(running: &Running, watcher: &mut Client, n: usize, case: &Case) -> Result<(), String> {
    let will_topic = format!("will/{n}");
    // Its own will only: a case that went wrong cannot pass a late will to the next.
    watcher.subscribe(&will_topic, QoS::AtMostOnce);
    let result = exchange(running, watcher, n, case, &will_topic);
    watcher.send(&Packet::Unsubscribe(Unsubscribe { packet_id: 2, filters: vec![will_topic.clone()] }));
    loop {
        match watcher.recv() {
            Packet::Unsuback(2) => return result,
            Packet::Publish(p) if *p.topic == *will_topic => {} // late, after a wrong reaction
            other => panic!("the watcher got {other:?}"),
        }
    }
}

/// The case itself, on its own connection (connected first as `hostile-{n}`, with a
/// will on `will_topic`, if the case says so).
fn exchange(
    running: &Running,
    watcher: &mut Client,
    n: usize,
    case: &Case,
    will_topic: &str,
) -> Result<(), String> {
    let mut c = match case.at {
        Fresh => Client::open(running.addr),
        Connected => {
            let will = LastWill {
                topic: will_topic.into(),
                message: b"gone".to_vec(),
                qos: QoS::AtMostOnce,
                retain: false,
            };
            Client::connect(running.addr, &format!("hostile-{n}"), true, Some(will)).0
        }
    };
    let mut bytes = case.bytes.clone();
    if matches!(case.want, Close) {
        // A broker that ignored the case answers this at once instead of closing.
        bytes.extend(Packet::Pingreq.to_bytes());
    }
    c.send_bytes(&bytes);
    observe(&mut c, &case.want)?;
    if case.at == Fresh {
        return Ok(());
    }
    if !matches!(case.want, Close | Connack(_)) {
        c.send(&Packet::Disconnect);
        observe(&mut c, &Close).map_err(|e| format!("DISCONNECT afterwards: {e}"))?;
    }
    if !matches!(case.want, Close) {
        return quiet(watcher).map_err(|e| format!("no will after DISCONNECT: {e}"));
    }
    match watcher.next() {
        Next::Packet(Packet::Publish(p)) if *p.topic == *will_topic => Ok(()),
        other => Err(format!("closed for a violation, so its will is due; the watcher got {other:?}")),
    }
}

#[test]
fn every_hostile_packet_gets_its_reaction_and_the_broker_keeps_serving() {
    let _serial = serial();
    let cases = cases();
    assert!(cases.len() >= 40, "the issue asks for at least 40 cases, there are {}", cases.len());
    let panics = util::server_panics();
    let running = start_with(config());
    let (mut watcher, _) = Client::connect(running.addr, "watcher", true, None);
    let mut wrong = Vec::new();
    for (n, case) in cases.iter().enumerate() {
        if let Err(e) = run(&running, &mut watcher, n, case) {
            wrong.push(format!("{} ({}): {e}", case.what, case.rule));
        }
        still_served(&running, panics, case.what);
    }
    assert!(wrong.is_empty(), "{} of {} wrong:\n{}", wrong.len(), cases.len(), wrong.join("\n"));
    running.stop();
}

// ---- Sequences ----

#[test]
fn an_announced_length_is_not_allocated_before_its_bytes_arrive() {
    let _serial = serial();
    let panics = util::server_panics();
    let running = start_with(Config { max_packet: 1 << 30, ..config() });
    still_served(&running, panics, "start"); // the workers' allocator arenas exist now
    let before = util::memory();
    // Four PUBLISH packets of 268,435,455 bytes (the largest remaining length), 16 KiB
    // of each sent: a broker that reserved what is announced maps 1 GiB.
    let mut clients: Vec<Client> = (0..4)
        .map(|i| {
            let (mut c, _) = Client::connect(running.addr, &format!("huge-{i}"), true, None);
            c.send_bytes(
                &[&[0x30, 0xFF, 0xFF, 0xFF, 0x7F][..], &field(b"huge/t"), &[b'x'; 16 * 1024]].concat(),
            );
            c
        })
        .collect();
    for c in &mut clients {
        c.expect_silent(Duration::from_millis(200), "a partial packet: the broker waits for the rest");
    }
    let after = util::memory();
    let (mapped, resident) =
        (after.mapped.saturating_sub(before.mapped), after.resident.saturating_sub(before.resident));
    println!("4 x 256 MiB announced: mapped +{} KiB, resident +{} KiB", mapped >> 10, resident >> 10);
    // Untouched reservations show in the mapping only; a glibc arena (64 MiB) may
    // appear meanwhile, 1 GiB may not.
    assert!(mapped < 256 << 20, "mapped memory grew by {mapped} bytes for 64 KiB received");
    assert!(resident < 16 << 20, "resident memory grew by {resident} bytes for 64 KiB received");
    still_served(&running, panics, "four partial packets of 256 MiB");
    drop(clients);
    running.stop();
}

#[test]
fn a_connection_that_never_sends_connect_is_closed_by_the_idle_timeout() {
    let _serial = serial();
    let panics = util::server_panics();
    let idle = Duration::from_millis(500);
    let running = start_with_idle(config(), idle);
    let started = Instant::now();
    let mut silent = Client::open(running.addr);
    let mut partial = Client::open(running.addr);
    partial.send_bytes(&good_connect("slow")[..6]); // and never the rest
    silent.expect_closed("no byte within the idle timeout");
    partial.expect_closed("6 bytes of a CONNECT within the idle timeout");
    let waited = started.elapsed();
    // The timer wheel ticks every 100 ms: never early by more than a tick.
    assert!(
        waited + Duration::from_millis(100) >= idle,
        "closed after {waited:?}, before the {idle:?} timeout"
    );
    still_served(&running, panics, "connections without CONNECT");
    running.stop();
}

#[test]
fn a_connect_and_a_subscribe_sent_a_byte_at_a_time_complete() {
    let _serial = serial();
    let panics = util::server_panics();
    let running = start_with(config());
    let mut c = Client::open(running.addr);
    let trickle = |c: &mut Client, bytes: &[u8]| {
        for b in bytes {
            c.send_bytes(&[*b]); // TCP_NODELAY: each byte its own segment
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    let connect = connect_raw(b"MQTT", 4, 0x2E, &[b"trickle", b"will/trickle", b"bye"]); // will QoS 1, retain
    trickle(&mut c, &connect);
    assert!(matches!(c.recv(), Packet::Connack(a) if a.code as u8 == 0), "CONNACK 0 after the last byte");
    let subscribe =
        Packet::Subscribe(Subscribe { packet_id: 3, filters: vec![("slow/+".into(), QoS::ExactlyOnce)] });
    trickle(&mut c, &subscribe.to_bytes());
    assert_eq!(c.recv(), Packet::Suback(3, vec![2]));
    let (mut p, _) = Client::connect(running.addr, "fast", true, None);
    p.publish("slow/t", b"hi", QoS::AtLeastOnce, false);
    assert_eq!(&c.received().payload[..], b"hi");
    still_served(&running, panics, "a trickled CONNECT");
    running.stop();
}

#[test]
fn a_subscriber_that_never_acknowledges_qos_2_holds_only_its_own_window() {
    let _serial = serial();
    let panics = util::server_panics();
    let running = start_with(config()); // max_inflight 4
    let (mut stuck, _) = Client::connect(running.addr, "stuck", true, None);
    stuck.subscribe("q2/#", QoS::ExactlyOnce);
    let (mut p, _) = Client::connect(running.addr, "p2", true, None);
    for i in 0..10u8 {
        p.publish("q2/t", &[i], QoS::ExactlyOnce, false); // the publisher's side completes
    }
    let mut ids = Vec::new();
    for i in 0..4u8 {
        match stuck.recv() {
            Packet::Publish(m) if (m.qos, &m.payload[..]) == (QoS::ExactlyOnce, &[i][..]) => {
                ids.extend(m.packet_id)
            }
            other => panic!("expected QoS 2 PUBLISH {i}, got {other:?}"),
        }
    }
    // Never a PUBREC: the window stays full, the rest waits in the session.
    stuck.expect_nothing_pending("a window of 4 unacknowledged QoS 2 messages");
    assert_eq!(running.broker.queued_for("stuck"), 6);
    still_served(&running, panics, "a QoS 2 window never acknowledged");
    // PUBREC for the first releases one more.
    stuck.send(&Packet::Pubrec(ids[0]));
    assert_eq!(stuck.recv(), Packet::Pubrel(ids[0]));
    stuck.send(&Packet::Pubcomp(ids[0]));
    assert!(
        matches!(stuck.recv(), Packet::Publish(m) if m.payload[..] == [4]),
        "the fifth, once the window has room"
    );
    running.stop();
}

/// A client whose receive buffer is set small before `connect`, so that what it does
/// not read stays in the broker, not in the kernel.
fn open_small_window(addr: std::net::SocketAddr) -> Client {
    use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn};
    let std::net::SocketAddr::V4(v4) = addr else { panic!("the test broker listens on IPv4") };
    let fd = socket::socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
        .expect("a socket");
    socket::setsockopt(&fd, sockopt::RcvBuf, &4096).expect("SO_RCVBUF");
    socket::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(v4)).expect("connect");
    let stream = std::net::TcpStream::from(fd);
    stream.set_read_timeout(Some(PATIENCE)).expect("set the read timeout");
    Client { stream, input: Vec::new() }
}

#[test]
fn a_subscriber_to_everything_that_never_reads_costs_bounded_memory() {
    let _serial = serial();
    let panics = util::server_panics();
    let running = start_with(config()); // max_queued 100
    still_served(&running, panics, "start");
    let mut slow = open_small_window(running.addr);
    slow.send_bytes(&good_connect("slow"));
    assert!(matches!(slow.recv(), Packet::Connack(a) if a.code as u8 == 0));
    slow.subscribe("#", QoS::AtMostOnce);
    let before = util::memory();
    // 10 MB in 2,560 messages of 4 KiB, while `slow` reads nothing.
    let (mut p, _) = Client::connect(running.addr, "flood", true, None);
    let payload = vec![b'x'; 4096];
    let one = Packet::Publish(pubsub_protocol::packet::Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "bulk/t".into(),
        packet_id: None,
        payload: payload.into(),
    })
    .to_bytes();
    for chunk in 0..40 {
        p.send_bytes(&one.repeat(64));
        if chunk % 10 == 9 {
            p.sync(); // the broker routed all of it so far
        }
    }
    let after = util::memory();
    let grew = after.resident.saturating_sub(before.resident);
    let dropped = running.broker.stats.dropped.load(Ordering::Relaxed);
    println!("10 MB to a subscriber that does not read: resident +{} KiB, {dropped} dropped", grew >> 10);
    // It may hold 64 KiB in its socket output and 100 queued messages (400 KiB).
    assert!(grew < 4 << 20, "resident memory grew by {grew} bytes: the broker kept what it could not send");
    assert!(dropped > 0 || matches!(slow.next(), Next::Closed), "neither dropped nor cut off");
    still_served(&running, panics, "a subscriber that does not read");
    drop(slow); // or the server's stop waits its grace period for output nobody reads
    running.stop();
}
