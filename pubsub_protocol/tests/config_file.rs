//! The `pubsub` binary with `-c FILE` in mosquitto's format, driven by the real
//! `mosquitto_pub` and `mosquitto_sub` with `-u/-P` against password files made by
//! `mosquitto_passwd` (`$7$` and `-H sha512`); SIGHUP reloads the password and ACL
//! files, and a reload that fails keeps the rules in force; a bad file stops the
//! broker at start with its file, line and key.

#[path = "util/files.rs"]
mod files;
#[path = "util/process.rs"]
mod process;
mod util;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use files::{mosquitto_passwd, Dir};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use process::Pubsub;

/// Runs one of mosquitto's tools (installed by `.ci/run`); a missing tool fails.
fn tool(name: &str, args: &[&str]) -> Output {
    Command::new(name)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {name} ({e}): install mosquitto and mosquitto-clients"))
}

/// `mosquitto_pub` once, as `user`/`password`: its output.
fn publish(broker: &Pubsub, user: &str, password: &str, topic: &str, message: &str) -> Output {
    let port = broker.addr.port().to_string();
    let args =
        ["-h", "127.0.0.1", "-p", &port, "-u", user, "-P", password, "-q", "1", "-t", topic, "-m", message];
    tool("mosquitto_pub", &args)
}

/// `mosquitto_sub` as `user`, waiting for one message on `topic` (10 s at most).
fn subscriber(broker: &Pubsub, user: &str, password: &str, topic: &str) -> std::process::Child {
    let port = broker.addr.port().to_string();
    Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port, "-u", user, "-P", password, "-q", "1", "-t", topic])
        .args(["-C", "1", "-W", "10"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mosquitto_sub")
}

/// Publishes until `mosquitto_sub` got its one message (it may still be subscribing
/// when the first publish goes out), then returns the message.
fn delivered(broker: &Pubsub, sub: std::process::Child, user: &str, password: &str, topic: &str) -> String {
    let out = {
        let deadline = std::time::Instant::now() + util::PATIENCE;
        let mut sub = sub;
        loop {
            let published = publish(broker, user, password, topic, "hello");
            assert!(
                published.status.success(),
                "mosquitto_pub: {}",
                String::from_utf8_lossy(&published.stderr)
            );
            if sub.try_wait().expect("wait for mosquitto_sub").is_some() {
                break sub.wait_with_output().expect("mosquitto_sub output");
            }
            assert!(std::time::Instant::now() < deadline, "mosquitto_sub never got the message");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
}

fn refused_as(out: &Output, what: &str) {
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(!out.status.success(), "expected a refusal ({what}), mosquitto_pub succeeded");
    assert!(err.contains(what), "expected {what:?} from mosquitto_pub, got {err:?}");
}

const ACL: &str = "user alice\ntopic readwrite test/#\n\nuser bob\ntopic readwrite test/#\n";

fn config(dir: &Dir) -> (PathBuf, PathBuf) {
    let passwords = dir.0.join("passwd");
    mosquitto_passwd(&passwords, &[], "alice", "wonderland");
    mosquitto_passwd(&passwords, &["-H", "sha512"], "bob", "builder");
    let acl = dir.file("acl", ACL);
    let text = format!(
        "# as a mosquitto user writes it\nlistener 1883\nallow_anonymous false\npassword_file {}\nacl_file {}\nmax_queued_messages 100\n",
        passwords.display(),
        acl.display()
    );
    (dir.file("pubsub.conf", &text), passwords)
}

#[test]
fn mosquitto_clients_log_in_with_passwords_from_mosquitto_passwd_in_both_formats() {
    let dir = Dir::new("login");
    let (conf, _) = config(&dir);
    // The flag's port overrides the file's listener, as mosquitto's -p does.
    let broker = Pubsub::start(&["-c", conf.to_str().expect("UTF-8 path")]);
    let sub = subscriber(&broker, "bob", "builder", "test/login");
    assert_eq!(delivered(&broker, sub, "alice", "wonderland", "test/login"), "hello");
    refused_as(&publish(&broker, "alice", "builder", "test/x", "no"), "bad user name or password");
    refused_as(&publish(&broker, "carol", "x", "test/x", "no"), "bad user name or password");
    let port = broker.addr.port().to_string();
    let anonymous = tool("mosquitto_pub", &["-h", "127.0.0.1", "-p", &port, "-t", "test/x", "-m", "no"]);
    refused_as(&anonymous, "not authori");
}

#[test]
fn sighup_reloads_the_password_and_acl_files_and_a_failed_reload_keeps_the_old_rules() {
    let dir = Dir::new("reload");
    let (conf, passwords) = config(&dir);
    let broker = Pubsub::start(&["-c", conf.to_str().expect("UTF-8 path")]);
    assert!(publish(&broker, "alice", "wonderland", "test/x", "1").status.success());
    mosquitto_passwd(&passwords, &[], "alice", "looking-glass");
    kill(Pid::from_raw(broker.pid() as i32), Signal::SIGHUP).expect("signal pubsub");
    broker.await_log("security reloaded");
    refused_as(&publish(&broker, "alice", "wonderland", "test/x", "old"), "bad user name or password");
    assert!(publish(&broker, "alice", "looking-glass", "test/x", "new").status.success(), "the new password");

    dir.file("acl", "user alice\ntopic sometimes test/#\n"); // a bad access word
    kill(Pid::from_raw(broker.pid() as i32), Signal::SIGHUP).expect("signal pubsub");
    let line = broker.await_log("reload failed");
    assert!(line.contains("acl:2"), "the failure names the file and line: {line}");
    let sub = subscriber(&broker, "bob", "builder", "test/still");
    assert_eq!(
        delivered(&broker, sub, "alice", "looking-glass", "test/still"),
        "hello",
        "old rules in force"
    );
}

#[test]
fn a_bad_configuration_file_stops_the_broker_naming_file_line_and_key() {
    let dir = Dir::new("bad");
    let cases = [
        ("listener 1883\nno_such_key 1\n", ":2: no_such_key"),
        ("max_queued_messages lots\n", ":1: max_queued_messages"),
        ("listener 8883\ncertfile /etc/ssl/x.pem\n", ":2: certfile"),
    ];
    for (text, want) in cases {
        let conf = dir.file("bad.conf", text);
        let out = Command::new(env!("CARGO_BIN_EXE_pubsub"))
            .args(["-c", conf.to_str().expect("UTF-8 path"), "--port", "0"])
            .stdin(Stdio::null())
            .output()
            .expect("run pubsub");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text:?} must stop the broker");
        assert!(err.contains(&format!("bad.conf{want}")), "{text:?}: expected {want:?} in {err:?}");
    }
    let missing = Command::new(env!("CARGO_BIN_EXE_pubsub"))
        .args(["--password-file", "/nonexistent/passwd", "--port", "0"])
        .stdin(Stdio::null())
        .output()
        .expect("run pubsub");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/passwd"));
}

#[test]
fn a_password_file_given_by_flag_refuses_anonymous_clients_unless_allowed() {
    let dir = Dir::new("flag");
    let passwords = dir.0.join("passwd");
    mosquitto_passwd(&passwords, &[], "alice", "wonderland");
    let path = passwords.to_str().expect("UTF-8 path");
    let anonymous = |broker: &Pubsub| {
        let port = broker.addr.port().to_string();
        tool("mosquitto_pub", &["-h", "127.0.0.1", "-p", &port, "-t", "t", "-m", "x"])
    };
    let strict = Pubsub::start(&["--password-file", path]);
    refused_as(&anonymous(&strict), "not authori");
    assert!(publish(&strict, "alice", "wonderland", "t", "x").status.success());
    let open = Pubsub::start(&["--password-file", path, "--allow-anonymous", "true"]);
    assert!(anonymous(&open).status.success(), "--allow-anonymous true lets them in");
}
