//! Logins and ACLs through a live broker, with files made by the real
//! `mosquitto_passwd` (both `$7$` and `-H sha512`): the right password connects, a
//! wrong one gets CONNACK 0x04, an anonymous client 0x05 when not allowed; a filter the
//! ACL does not let a client read gets SUBACK 0x80 (Paho's `test_subscribe_failure`),
//! a PUBLISH it may not write is acknowledged and dropped, and read access is checked
//! again for retained and queued messages after the rules change.

#[path = "util/files.rs"]
mod files;
mod util;

use std::sync::atomic::Ordering;

use files::{mosquitto_passwd, Dir};
use pubsub_protocol::packet::{Connack, Connect, ConnectReturn, Packet, QoS, Subscribe};
use pubsub_protocol::{Config, Security, SecurityFiles};
use util::{start_with, Client, Running};

fn secured(files: &SecurityFiles) -> Running {
    let running = start_with(Config::default());
    running.broker.set_security(Security::load(files).expect("the test's files load"));
    running
}

/// CONNECT as `id` (clean session) with these credentials; the client and the CONNACK.
fn login(running: &Running, id: &str, user: Option<&str>, password: Option<&str>) -> (Client, Connack) {
    login_as(running, id, true, user, password)
}

/// CONNECT as `id` with `clean` and these credentials; the client and the CONNACK.
fn login_as(
    running: &Running,
    id: &str,
    clean: bool,
    user: Option<&str>,
    password: Option<&str>,
) -> (Client, Connack) {
    let mut c = Client::open(running.addr);
    c.send(&Packet::Connect(Connect {
        level: 4,
        clean_session: clean,
        keep_alive: 60,
        client_id: id.into(),
        will: None,
        username: user.map(Into::into),
        password: password.map(|p| p.as_bytes().to_vec()),
    }));
    match c.recv() {
        Packet::Connack(ack) => (c, ack),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

fn refused(running: &Running, user: Option<&str>, password: Option<&str>, code: ConnectReturn, why: &str) {
    let (mut c, ack) = login(running, "refused", user, password);
    assert_eq!(ack.code, code, "{why}");
    c.expect_closed(why);
}

#[test]
fn password_files_from_mosquitto_passwd_in_both_formats() {
    let dir = Dir::new("passwd");
    let file = dir.0.join("passwd");
    mosquitto_passwd(&file, &[], "alice", "wonderland"); // $7$, PBKDF2-SHA512
    mosquitto_passwd(&file, &["-H", "sha512"], "bob", "builder"); // $6$, salted SHA-512
    let text = std::fs::read_to_string(&file).expect("read back");
    assert!(text.contains("alice:$7$") && text.contains("bob:$6$"), "{text}");
    let files = SecurityFiles { allow_anonymous: false, password_file: Some(file), acl_file: None };
    let running = secured(&files);
    for (user, password) in [("alice", "wonderland"), ("bob", "builder")] {
        let (_, ack) = login(&running, user, Some(user), Some(password));
        assert_eq!(ack.code, ConnectReturn::Accepted, "{user} with the right password");
    }
    refused(&running, Some("alice"), Some("builder"), ConnectReturn::BadCredentials, "a wrong password");
    refused(&running, Some("bob"), None, ConnectReturn::BadCredentials, "no password");
    refused(&running, Some("carol"), Some("x"), ConnectReturn::BadCredentials, "an unknown user");
    refused(&running, None, None, ConnectReturn::NotAuthorized, "anonymous, allow_anonymous false");
    assert_eq!(running.broker.stats.denied_logins.load(Ordering::Relaxed), 4);
    running.stop();
}

#[test]
fn anonymous_clients_are_let_in_when_allowed_even_with_a_password_file() {
    let dir = Dir::new("anon");
    let file = dir.0.join("passwd");
    mosquitto_passwd(&file, &[], "alice", "wonderland");
    let files = SecurityFiles { allow_anonymous: true, password_file: Some(file), acl_file: None };
    let running = secured(&files);
    let (_, ack) = login(&running, "anon", None, None);
    assert_eq!(ack.code, ConnectReturn::Accepted);
    refused(
        &running,
        Some("alice"),
        Some("nope"),
        ConnectReturn::BadCredentials,
        "a user still needs the password",
    );
    running.stop();
}

const ACL: &str = "\
# anonymous clients: read-only on public/
topic read public/#

user alice
topic readwrite test/#
topic deny test/nosubscribe
topic write inbox/alice

pattern read private/%u/#

user carol
topic write test/#
";

fn acl_broker(dir: &Dir) -> (Running, SecurityFiles) {
    let file = dir.0.join("passwd");
    mosquitto_passwd(&file, &[], "alice", "a");
    mosquitto_passwd(&file, &[], "bob", "b");
    mosquitto_passwd(&file, &[], "carol", "c");
    let files = SecurityFiles {
        allow_anonymous: true,
        password_file: Some(file),
        acl_file: Some(dir.file("acl", ACL)),
    };
    (secured(&files), files)
}

fn subscribe(c: &mut Client, id: u16, filter: &str) -> u8 {
    c.send(&Packet::Subscribe(Subscribe { packet_id: id, filters: vec![(filter.into(), QoS::AtLeastOnce)] }));
    match c.recv() {
        Packet::Suback(got, codes) if got == id && codes.len() == 1 => codes[0],
        other => panic!("expected SUBACK {id}, got {other:?}"),
    }
}

#[test]
fn a_filter_the_acl_does_not_let_a_client_read_gets_suback_0x80() {
    let dir = Dir::new("acl-sub");
    let (running, _) = acl_broker(&dir);
    let (mut alice, _) = login(&running, "a1", Some("alice"), Some("a"));
    // (filter, granted QoS 1 or refused 0x80)
    let table = [
        ("test/nosubscribe", 0x80), // Paho's test_subscribe_failure: a deny rule
        ("test/#", 1),              // wider than the deny rule: granted, filtered per message
        ("test/ok", 1),
        ("test/+/x", 1),
        ("inbox/alice", 0x80),  // write-only
        ("private/alice/#", 1), // pattern with %u
        ("private/bob/#", 0x80),
        ("public/news", 0x80), // anonymous rules are not alice's
        ("#", 0x80),
        ("$SYS/#", 0x80), // `$` topics only match rules that start with `$`
    ];
    for (i, (filter, want)) in table.iter().enumerate() {
        assert_eq!(subscribe(&mut alice, i as u16 + 1, filter), *want, "alice subscribing to {filter}");
    }
    let (mut anon, _) = login(&running, "anon", None, None);
    assert_eq!(subscribe(&mut anon, 1, "public/#"), 1, "anonymous rules");
    assert_eq!(subscribe(&mut anon, 2, "test/ok"), 0x80);
    assert_eq!(running.broker.stats.denied_subscriptions.load(Ordering::Relaxed), 7);
    // test/# was granted: what the deny rule covers is filtered at delivery.
    let (mut writer, _) = login(&running, "c1", Some("carol"), Some("c"));
    writer.publish("test/nosubscribe", b"hidden", QoS::AtLeastOnce, false);
    writer.publish("test/ok", b"shown", QoS::AtLeastOnce, false);
    assert_eq!(&alice.received().payload[..], b"shown", "the denied topic was not delivered");
    assert!(running.broker.stats.denied_deliveries.load(Ordering::Relaxed) >= 1);
    running.stop();
}

#[test]
fn a_publish_without_write_access_is_acknowledged_and_dropped() {
    let dir = Dir::new("acl-pub");
    let (running, _) = acl_broker(&dir);
    let (mut alice, _) = login(&running, "a1", Some("alice"), Some("a"));
    assert_eq!(subscribe(&mut alice, 1, "test/ok"), 1);
    let (mut anon, _) = login(&running, "anon", None, None);
    assert_eq!(subscribe(&mut anon, 1, "public/#"), 1);
    let (mut bob, _) = login(&running, "b1", Some("bob"), Some("b"));
    bob.publish("test/ok", b"bob may not", QoS::AtLeastOnce, false); // PUBACK all the same
    bob.publish("public/x", b"nor here", QoS::ExactlyOnce, false); // PUBREC/PUBCOMP too
    let (mut writer, _) = login(&running, "a2", Some("alice"), Some("a"));
    writer.publish("test/ok", b"alice may", QoS::AtLeastOnce, false);
    writer.publish("public/x", b"not public", QoS::AtLeastOnce, false);
    assert_eq!(&alice.received().payload[..], b"alice may", "bob's message was dropped");
    alice.expect_nothing_pending("only alice's own message");
    anon.expect_nothing_pending("nobody may write public/");
    assert_eq!(running.broker.stats.denied_publishes.load(Ordering::Relaxed), 3);
    running.stop();
}

#[test]
fn read_access_is_checked_again_for_retained_and_queued_messages_after_a_reload() {
    let dir = Dir::new("acl-reload");
    let (running, mut files) = acl_broker(&dir);
    let (mut alice, _) = login(&running, "a1", Some("alice"), Some("a"));
    alice.publish("test/kept", b"retained", QoS::AtLeastOnce, true);
    // A persistent session of alice's, offline, with one message queued for it.
    let (mut away, ack) = login_as(&running, "alice-away", false, Some("alice"), Some("a"));
    assert_eq!(ack.code, ConnectReturn::Accepted);
    assert_eq!(subscribe(&mut away, 1, "test/q"), 1);
    away.send(&Packet::Disconnect);
    away.expect_closed("DISCONNECT");
    alice.publish("test/q", b"queued", QoS::AtLeastOnce, false);
    assert_eq!(running.broker.queued_for("alice-away"), 1);

    // The new rules take test/ away from alice; a SIGHUP does exactly this swap.
    files.acl_file = Some(dir.file("acl", "user alice\ntopic readwrite other/#\n"));
    running.broker.set_security(Security::load(&files).expect("the new rules load"));
    let (mut late, ack) = login_as(&running, "alice-away", false, Some("alice"), Some("a"));
    assert!(ack.session_present, "the persistent session was kept");
    late.expect_nothing_pending("the queued message is no longer readable");
    assert_eq!(subscribe(&mut alice, 7, "test/kept"), 0x80, "the new rules refuse the filter");
    assert!(running.broker.stats.denied_deliveries.load(Ordering::Relaxed) >= 1);
    running.stop();
}

#[test]
fn a_broken_file_fails_to_load_and_names_its_line() {
    let dir = Dir::new("broken");
    let files = SecurityFiles {
        allow_anonymous: true,
        password_file: None,
        acl_file: Some(dir.file("acl", "user alice\ntopic readwrite ok/#\ntopic sometimes x/#\n")),
    };
    let e = Security::load(&files).expect_err("a bad access word").to_string();
    assert!(e.contains("acl:3"), "names the file and line: {e}");
    let files = SecurityFiles { password_file: Some(dir.0.join("missing")), ..SecurityFiles::default() };
    let e = Security::load(&files).expect_err("a missing file").to_string();
    assert!(e.contains("missing"), "names the file: {e}");
}
