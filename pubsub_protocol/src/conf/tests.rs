//! Tables of configuration text and what each gives, checks against mosquitto's own
//! key list and example file, and a seeded random-input run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::test_rng::Rng;

const FILE: &str = "test.conf";
const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

/// Every key mosquitto 2.0 reads (`src/conf.c` of 2.0.20), names only.
const MOSQUITTO_KEYS: &[&str] = &[
    "acl_file",
    "address",
    "addresses",
    "allow_anonymous",
    "allow_duplicate_messages",
    "allow_zero_length_clientid",
    "auth_opt_x",
    "auth_plugin",
    "auth_plugin_deny_special_chars",
    "auto_id_prefix",
    "autosave_interval",
    "autosave_on_changes",
    "bind_address",
    "bind_interface",
    "bridge_alpn",
    "bridge_attempt_unsubscribe",
    "bridge_bind_address",
    "bridge_cafile",
    "bridge_capath",
    "bridge_certfile",
    "bridge_identity",
    "bridge_insecure",
    "bridge_keyfile",
    "bridge_max_packet_size",
    "bridge_outgoing_retain",
    "bridge_protocol_version",
    "bridge_psk",
    "bridge_require_ocsp",
    "bridge_tls_version",
    "cafile",
    "capath",
    "certfile",
    "check_retain_source",
    "ciphers",
    "ciphers_tls1.3",
    "cleansession",
    "clientid",
    "clientid_prefixes",
    "connection",
    "connection_messages",
    "crlfile",
    "dhparamfile",
    "http_dir",
    "idle_timeout",
    "include_dir",
    "keepalive_interval",
    "keyfile",
    "listener",
    "local_cleansession",
    "local_clientid",
    "local_password",
    "local_username",
    "log_dest",
    "log_facility",
    "log_timestamp",
    "log_timestamp_format",
    "log_type",
    "max_connections",
    "max_inflight_bytes",
    "max_inflight_messages",
    "max_keepalive",
    "max_packet_size",
    "max_qos",
    "max_queued_bytes",
    "max_queued_messages",
    "max_topic_alias",
    "maximum_qos",
    "memory_limit",
    "message_size_limit",
    "mount_point",
    "notification_topic",
    "notifications",
    "notifications_local_only",
    "password",
    "password_file",
    "per_listener_settings",
    "persistence",
    "persistence_file",
    "persistence_location",
    "persistent_client_expiration",
    "pid_file",
    "plugin",
    "plugin_opt_x",
    "port",
    "protocol",
    "psk_file",
    "psk_hint",
    "queue_qos0_messages",
    "remote_clientid",
    "remote_password",
    "remote_username",
    "require_certificate",
    "restart_timeout",
    "retain_available",
    "retained_persistence",
    "retry_interval",
    "round_robin",
    "set_tcp_nodelay",
    "socket_domain",
    "start_type",
    "sys_interval",
    "threshold",
    "tls_engine",
    "tls_engine_kpass_sha1",
    "tls_keyform",
    "tls_version",
    "topic",
    "try_private",
    "upgrade_outgoing_qos",
    "use_identity_as_username",
    "use_subject_as_username",
    "use_username_as_clientid",
    "user",
    "username",
    "websockets_headers_size",
    "websockets_log_level",
];

fn ok(text: &str) -> ConfFile {
    parse(text, Path::new(FILE)).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

/// `(line, key, reason)` of the error `text` must give.
fn err(text: &str) -> (usize, String, String) {
    match parse(text, Path::new(FILE)) {
        Err(ConfError::Line { line, key, reason, .. }) => (line, key, reason),
        other => panic!("{text:?}: expected a line error, got {other:?}"),
    }
}

fn at(port: u16, address: Option<&str>) -> Listener {
    Listener { port, address: address.map(str::to_owned) }
}

fn days(n: u64) -> Option<Duration> {
    Some(Duration::from_secs(n * DAY))
}

/// The default [`ConfFile`] changed by `f`.
fn with(f: impl FnOnce(&mut ConfFile)) -> ConfFile {
    let mut conf = ConfFile::default();
    f(&mut conf);
    conf
}

#[test]
fn accepted_files() {
    let one = |l: Listener| with(|c| c.listeners = vec![l]);
    let cases: Vec<(&str, ConfFile)> = vec![
        ("", ConfFile::default()),
        ("# comment\n\n   \n\t\n#listener 1883\n", ConfFile::default()),
        ("listener 1883\n", one(at(1883, None))),
        ("listener 8883 127.0.0.1", one(at(8883, Some("127.0.0.1")))),
        ("listener 1883 # all interfaces\n", one(at(1883, None))),
        ("  # indented\nlistener\t1883 \t\n", one(at(1883, None))),
        ("\u{feff}listener 1883\n", one(at(1883, None))),
        (
            "listener 1883\r\nlistener 8883 ::1\r\n",
            with(|c| c.listeners = vec![at(1883, None), at(8883, Some("::1"))]),
        ),
        (
            "listener 1\nlistener 1 localhost\n",
            with(|c| c.listeners = vec![at(1, None), at(1, Some("localhost"))]),
        ),
        // Last value wins, as in mosquitto.
        ("allow_anonymous true\nallow_anonymous 0\n", with(|c| c.allow_anonymous = Some(false))),
        ("allow_anonymous 1", with(|c| c.allow_anonymous = Some(true))),
        ("retain_available false", with(|c| c.retain_available = Some(false))),
        (
            "max_queued_messages 10\nmax_queued_messages 20 # more\n",
            with(|c| c.max_queued_messages = Some(20)),
        ),
        // Paths are the rest of the line, spaces and `#` included, as mosquitto reads them.
        (
            "password_file /etc/mosquitto/passwd",
            with(|c| c.password_file = Some("/etc/mosquitto/passwd".into())),
        ),
        ("acl_file  my dir/acl # x \n", with(|c| c.acl_file = Some(PathBuf::from("my dir/acl # x")))),
        ("max_queued_messages 0", with(|c| c.max_queued_messages = Some(0))),
        ("max_queued_bytes 2147483647", with(|c| c.max_queued_bytes = Some(2_147_483_647))),
        ("max_inflight_messages 65535", with(|c| c.max_inflight_messages = Some(65535))),
        ("max_packet_size 20", with(|c| c.max_packet_size = Some(20))),
        ("message_size_limit 268435455", with(|c| c.message_size_limit = Some(268_435_455))),
        ("message_size_limit 0", with(|c| c.message_size_limit = Some(0))),
        ("sys_interval 0", with(|c| c.sys_interval = Some(0))),
        ("sys_interval +65535", with(|c| c.sys_interval = Some(65535))),
        ("max_keepalive 0", with(|c| c.max_keepalive = Some(0))),
        (
            "persistent_client_expiration 1h",
            with(|c| c.persistent_client_expiration = Some(Duration::from_secs(HOUR))),
        ),
        ("persistent_client_expiration 2d", with(|c| c.persistent_client_expiration = days(2))),
        ("persistent_client_expiration 1w", with(|c| c.persistent_client_expiration = days(7))),
        ("persistent_client_expiration 1m", with(|c| c.persistent_client_expiration = days(30))),
        ("persistent_client_expiration 2y", with(|c| c.persistent_client_expiration = days(730))),
        ("max_connections -1", with(|c| c.max_connections = Some(-1))),
        ("max_connections -5\nmax_connections -1", with(|c| c.max_connections = Some(-1))),
        (
            "max_connections 0\nlistener 1\nmax_connections 0",
            with(|c| {
                c.max_connections = Some(0);
                c.listeners = vec![at(1, None)];
            }),
        ),
        ("max_topic_levels 8", with(|c| c.max_topic_levels = Some(8))),
        ("max_topic_length 1024", with(|c| c.max_topic_length = Some(1024))),
        ("max_client_id_length 23", with(|c| c.max_client_id_length = Some(23))),
        ("max_persistent_sessions 0", with(|c| c.max_persistent_sessions = Some(0))),
        ("max_retained_messages 5", with(|c| c.max_retained_messages = Some(5))),
        ("max_retained_bytes 1000000", with(|c| c.max_retained_bytes = Some(1_000_000))),
        ("message_expiry 3600", with(|c| c.message_expiry = Some(3600))),
        ("overflow block", with(|c| c.overflow = Some(Overflow::Block))),
        ("overflow drop", with(|c| c.overflow = Some(Overflow::Drop))),
        (
            "protocol mqtt\nper_listener_settings false\nmax_qos 2\nmaximum_qos 2\nmemory_limit 00\n\
          allow_zero_length_clientid 1\nqueue_qos0_messages 0\nmax_inflight_bytes 0\n",
            ConfFile::default(),
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(ok(text), expected, "{text:?}");
    }
}

/// mosquitto's deprecated `port` and `bind_address` make one more listener, after the
/// others, with a warning each.
#[test]
fn default_listener() {
    let conf = ok("port 1884\n");
    assert_eq!(conf.listeners, [at(1884, None)]);
    assert_eq!(conf.warnings, ["test.conf:1: port: deprecated: use `listener PORT [ADDRESS]`"]);
    assert_eq!(ok("bind_address 127.0.0.1").listeners, [at(1883, Some("127.0.0.1"))]);
    let conf = ok("port 1\nlistener 2\nport 3\nbind_address host\n");
    assert_eq!(conf.listeners, [at(2, None), at(3, Some("host"))]);
    assert_eq!(conf.warnings[2], "test.conf:3: port: port 1 given before; only 3 is used");
    assert_eq!(conf.warnings.len(), 4);
}

#[test]
fn refused_lines() {
    let cases: &[(&str, usize, &str, &str)] = &[
        ("foo 1", 1, "foo", "unknown key"),
        ("# c\n\nListener 1883", 3, "Listener", "unknown key"),
        ("listener 1883\r\n# c\r\n\r\nbogus\r\n", 4, "bogus", "unknown key"),
        ("foo\nbar", 1, "foo", "unknown key"),
        ("allow_anonymous", 1, "allow_anonymous", "missing value"),
        ("allow_anonymous   \t", 1, "allow_anonymous", "missing value"),
        ("allow_anonymous # no", 1, "allow_anonymous", "missing value"),
        ("acl_file   \n", 1, "acl_file", "missing value"),
        ("allow_anonymous yes", 1, "allow_anonymous", "'yes' is not a boolean"),
        ("allow_anonymous True", 1, "allow_anonymous", "'True' is not a boolean"),
        ("allow_anonymous true false", 1, "allow_anonymous", "too many arguments: 'false'"),
        ("max_queued_messages 10 20", 1, "max_queued_messages", "too many arguments: '20'"),
        ("max_queued_messages abc", 1, "max_queued_messages", "'abc' is not a whole number"),
        ("max_queued_messages 12abc", 1, "max_queued_messages", "not a whole number"),
        ("max_queued_messages 0x10", 1, "max_queued_messages", "not a whole number"),
        ("max_queued_messages 1.5", 1, "max_queued_messages", "not a whole number"),
        ("max_queued_messages -5", 1, "max_queued_messages", "-5 is out of range (0..=2147483647)"),
        ("max_queued_messages 2147483648", 1, "max_queued_messages", "out of range"),
        ("max_queued_bytes -1", 1, "max_queued_bytes", "out of range"),
        ("max_inflight_messages -1", 1, "max_inflight_messages", "out of range"),
        ("max_inflight_messages 65536", 1, "max_inflight_messages", "out of range"),
        ("message_size_limit -1", 1, "message_size_limit", "out of range"),
        ("message_size_limit 268435456", 1, "message_size_limit", "out of range"),
        ("max_packet_size 19", 1, "max_packet_size", "out of range"),
        ("max_packet_size 0", 1, "max_packet_size", "out of range"),
        ("sys_interval -1", 1, "sys_interval", "out of range"),
        ("sys_interval 65536", 1, "sys_interval", "out of range"),
        ("max_keepalive 65536", 1, "max_keepalive", "out of range"),
        ("max_topic_levels -1", 1, "max_topic_levels", "out of range"),
        ("max_retained_bytes 99999999999999999999", 1, "max_retained_bytes", "out of range"),
        ("message_expiry -1", 1, "message_expiry", "out of range"),
        ("max_connections 2147483648", 1, "max_connections", "out of range"),
        (
            "max_connections 5\nlistener 1\nmax_connections 6",
            3,
            "max_connections",
            "6 differs from the earlier 5",
        ),
        ("overflow sometimes", 1, "overflow", "not `drop` or `block`"),
        ("listener", 1, "listener", "missing value"),
        ("listener 0", 1, "listener", "port 0 (a Unix socket in mosquitto) is not supported"),
        ("listener 0 /tmp/mqtt.sock", 1, "listener", "Unix socket"),
        ("listener 65536", 1, "listener", "out of range"),
        ("listener -1", 1, "listener", "out of range"),
        ("listener http", 1, "listener", "not a whole number"),
        ("listener 1883 a b", 1, "listener", "too many arguments: 'b'"),
        ("listener 1883\nlistener 1883", 2, "listener", "given twice"),
        ("listener 1 h\nlistener 1 h", 2, "listener", "given twice"),
        ("port 0", 1, "port", "Unix socket"),
        ("port 70000", 1, "port", "out of range"),
        ("persistent_client_expiration", 1, "persistent_client_expiration", "missing value"),
        ("persistent_client_expiration 5", 1, "persistent_client_expiration", "needs a unit"),
        ("persistent_client_expiration 1s", 1, "persistent_client_expiration", "needs a unit"),
        ("persistent_client_expiration 0d", 1, "persistent_client_expiration", "out of range"),
        ("persistent_client_expiration -1d", 1, "persistent_client_expiration", "out of range"),
        ("persistent_client_expiration h", 1, "persistent_client_expiration", "not a whole number"),
        ("persistent_client_expiration 1.5h", 1, "persistent_client_expiration", "not a whole number"),
        ("persistent_client_expiration 99999999999999999y", 1, "persistent_client_expiration", "too long"),
        ("persistent_client_expiration 1h 2h", 1, "persistent_client_expiration", "too many"),
        ("password_file a\npassword_file b", 2, "password_file", "given twice"),
        ("acl_file a\n\nacl_file a", 3, "acl_file", "given twice"),
        ("bind_address a\nbind_address b", 2, "bind_address", "given twice"),
        ("per_listener_settings true", 1, "per_listener_settings", "only `per_listener_settings false`"),
        ("per_listener_settings maybe", 1, "per_listener_settings", "not a boolean"),
        (
            "protocol websockets",
            1,
            "protocol",
            "only `protocol mqtt` (mosquitto's default) is supported; `websockets`",
        ),
        ("protocol", 1, "protocol", "missing value"),
        ("max_qos 1", 1, "max_qos", "only `max_qos 2`"),
        ("queue_qos0_messages true", 1, "queue_qos0_messages", "not implemented"),
        ("allow_zero_length_clientid false", 1, "allow_zero_length_clientid", "not implemented"),
        ("memory_limit 1000000", 1, "memory_limit", "not implemented"),
        ("check_retain_source true", 1, "check_retain_source", "not implemented"),
    ];
    for &(text, line, key, reason) in cases {
        let got = err(text);
        assert_eq!((got.0, got.1.as_str()), (line, key), "{text:?}: {}", got.2);
        assert!(got.2.contains(reason), "{text:?}: {:?} lacks {reason:?}", got.2);
    }
}

/// Security and features pubsub lacks: an error, never a silent no-op.
#[test]
fn unsupported_features_are_errors() {
    let cases: &[(&str, &str)] = &[
        ("certfile /etc/ssl/server.crt", "TLS"),
        ("keyfile /etc/ssl/server.key", "TLS"),
        ("cafile /etc/ssl/ca.crt", "TLS"),
        ("require_certificate true", "TLS"),
        ("require_certificate false", "TLS"),
        ("psk_file /etc/psk", "TLS"),
        ("connection upstream", "bridges"),
        ("address 10.0.0.1:1883", "bridges"),
        ("bridge_cafile ca.crt", "bridges"),
        ("bridge_anything_new x", "bridges"),
        ("auth_plugin /usr/lib/auth.so", "plugins"),
        ("plugin /usr/lib/dynsec.so", "plugins"),
        ("plugin_opt_config_file x", "plugins"),
        ("auth_opt_backends x", "plugins"),
        ("include_dir /etc/mosquitto/conf.d", "include_dir"),
        ("bind_interface eth0", "interface"),
    ];
    for &(text, feature) in cases {
        let (_, _, reason) = err(text);
        assert!(reason.starts_with("not supported yet ("), "{text:?}: {reason}");
        assert!(reason.contains(feature), "{text:?}: {reason}");
    }
}

#[test]
fn ignored_keys_warn_with_place() {
    let conf = ok("log_dest file /var/log/m.log\nlistener 1883\npersistence true\r\nlog_type bogus\n");
    assert_eq!(conf.listeners, [at(1883, None)]);
    assert_eq!(
        conf.warnings,
        [
            "test.conf:1: log_dest: ignored: pubsub logs to stderr, filtered by RUST_LOG",
            "test.conf:3: persistence: ignored: pubsub keeps sessions and retained messages in memory only, \
             lost on restart",
            "test.conf:4: log_type: ignored: pubsub logs to stderr, filtered by RUST_LOG",
        ]
    );
    for (key, _) in IGNORED {
        assert_eq!(ok(&format!("{key} x")).warnings.len(), 1, "{key}");
    }
}

#[test]
fn error_display() {
    let e = parse("\nlistener 1883\nfoo bar\n", Path::new("/etc/pubsub.conf")).unwrap_err();
    assert_eq!(e.to_string(), "/etc/pubsub.conf:3: foo: unknown key");
    let e = load(Path::new("/nonexistent/pubsub.conf")).unwrap_err();
    assert!(matches!(&e, ConfError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound), "{e:?}");
    assert!(e.to_string().starts_with("/nonexistent/pubsub.conf: "), "{e}");
    assert!(std::error::Error::source(&e).is_some());
}

#[test]
fn load_reads_a_file() {
    let path = std::env::temp_dir().join(format!("pubsub-conf-{}.conf", std::process::id()));
    std::fs::write(&path, b"listener 1883\n# caf\xe9 in Latin-1 is fine in a comment\npassword_file pw\n")
        .unwrap();
    let conf = load(&path);
    std::fs::write(&path, b"listener 1883\npassword_file /tmp/\xff\n").unwrap();
    let bad = load(&path);
    std::fs::remove_file(&path).unwrap();
    let conf = conf.unwrap();
    assert_eq!(conf.listeners, [at(1883, None)]);
    // Relative paths are kept as written, as mosquitto uses them.
    assert_eq!(conf.password_file, Some(PathBuf::from("pw")));
    match bad {
        Err(ConfError::Line { line: 2, key, reason, .. }) => {
            assert_eq!((&*key, &*reason), ("password_file", "not valid UTF-8"))
        }
        other => panic!("{other:?}"),
    }
    let dir = load(&std::env::temp_dir());
    assert!(matches!(dir, Err(ConfError::Io { .. })), "{dir:?}");
}

/// The lists cover every key mosquitto 2.0 reads, each exactly once, and each list is
/// handled the way it says.
#[test]
fn lists_cover_mosquitto() {
    for key in MOSQUITTO_KEYS {
        let homes = [
            SUPPORTED.contains(key),
            lists::default_only(key).is_some(),
            lists::ignored(key).is_some(),
            lists::refused(key).is_some(),
            EXTENSIONS.contains(key),
        ];
        assert_eq!(homes.iter().filter(|&&h| h).count(), 1, "{key}: {homes:?}");
    }
    let defaults = DEFAULT_ONLY.iter().map(|(key, _)| key);
    for key in SUPPORTED.iter().chain(EXTENSIONS).chain(defaults) {
        assert_eq!(err(key).2, "missing value", "{key}");
    }
    for (key, _) in REFUSED {
        assert!(err(&format!("{key} 1")).2.starts_with("not supported yet"), "{key}");
    }
    for (prefix, _) in REFUSED_PREFIXES {
        assert!(err(&format!("{prefix}x 1")).2.starts_with("not supported yet"), "{prefix}");
    }
    for (key, value) in DEFAULT_ONLY {
        assert_eq!(ok(&format!("{key} {value}")), ConfFile::default(), "{key}");
    }
}

/// Debian's `/usr/share/doc/mosquitto/examples/mosquitto.conf` (all comments) loads;
/// uncommenting any `#key value` line in it gives what our lists promise.
#[test]
fn mosquitto_example_file() {
    let path = Path::new("/usr/share/doc/mosquitto/examples/mosquitto.conf");
    if !path.exists() {
        eprintln!("skipped: {} is not installed", path.display());
        return;
    }
    assert_eq!(load(path).unwrap(), ConfFile::default());
    let text = std::fs::read_to_string(path).unwrap();
    let mut tried = 0;
    for line in text.lines().filter_map(|l| l.strip_prefix('#')) {
        let Some((key, value)) = line.split_once(' ') else { continue };
        if !MOSQUITTO_KEYS.contains(&key) || value.trim().is_empty() {
            continue;
        }
        tried += 1;
        let got = parse(line, Path::new(FILE));
        // The example shows `max_packet_size 0` as the default, but mosquitto itself
        // refuses 0 (checked with mosquitto 2.0.11); `check_retain_source true` is a
        // suggestion, not the default.
        let accepted =
            lists::refused(key).is_none() && !["max_packet_size", "check_retain_source"].contains(&key);
        assert_eq!(got.is_ok(), accepted, "{line:?}: {got:?}");
        if let Ok(conf) = got {
            assert_eq!(conf.warnings.len(), usize::from(lists::ignored(key).is_some()), "{line:?}");
        }
    }
    assert!(tried >= 40, "only {tried} example lines");
}

/// Debian's `/etc/mosquitto/mosquitto.conf` uses `include_dir`: refused, at its line.
#[test]
fn debian_default_file() {
    let path = Path::new("/etc/mosquitto/mosquitto.conf");
    match load(path) {
        Err(ConfError::Line { key, .. }) => assert_eq!(key, "include_dir"),
        Err(ConfError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
        other => panic!("{other:?}"),
    }
}

const WORDS: &[&str] = &[
    "",
    " ",
    "\t",
    "\r",
    "#",
    "# c",
    "0",
    "-1",
    "1",
    "+5",
    "1883",
    "65535",
    "65536",
    "2147483648",
    "99999999999999999999",
    "-9223372036854775808",
    "true",
    "false",
    "True",
    "1h",
    "0d",
    "h",
    "1y",
    "99999999999999999y",
    "drop",
    "block",
    "mqtt",
    "websockets",
    "127.0.0.1",
    "::1",
    "a b",
    "é",
    "\u{feff}",
    "\u{0}",
    "\u{2028}",
    "日本",
    "\u{a0}",
    "/tmp/x",
    "1.5",
    "0x10",
    "12abc",
];

fn random_text(rng: &mut Rng) -> String {
    let keys: Vec<&str> = MOSQUITTO_KEYS.iter().chain(EXTENSIONS).copied().chain(["x", "#x", ""]).collect();
    let mut text = String::new();
    for _ in 0..rng.next() % 8 {
        text.push_str(rng.pick(&keys));
        for _ in 0..rng.next() % 4 {
            text.push_str(rng.pick(&[" ", "  ", "\t", ""]));
            text.push_str(rng.pick(WORDS));
        }
        text.push('\n');
    }
    text
}

/// Arbitrary lines never panic; a result names a line that exists; CRLF line ends
/// change nothing.
#[test]
fn random_lines_never_panic() {
    let mut rng = Rng(0x5eed_c0f1_9000_0001);
    for _ in 0..20_000 {
        let text = random_text(&mut rng);
        let got = parse(&text, Path::new(FILE));
        if let Err(ConfError::Line { line, .. }) = &got {
            assert!(*line >= 1 && *line <= text.split('\n').count(), "{text:?}: {got:?}");
        }
        if let Ok(conf) = &got {
            assert!(conf.warnings.iter().all(|w| w.starts_with("test.conf:")), "{text:?}");
        }
        let crlf = parse(&text.replace('\n', "\r\n"), Path::new(FILE));
        assert_eq!(format!("{crlf:?}"), format!("{got:?}"), "{text:?}");
        let bytes: Vec<u8> = (0..rng.next() % 64).map(|_| rng.next() as u8).collect();
        if let Ok(text) = decode(&bytes, Path::new(FILE)) {
            let _ = parse(&text, Path::new(FILE));
        }
    }
}
