//! The password file against files written by the real `mosquitto_passwd`, and a
//! table of malformed entries with the reaction to each.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;
use crate::auth::scratch_dir;

/// Runs `mosquitto_passwd` with `args`. A missing tool fails the test: these tests
/// exist to check our reading against its real output (CI installs `mosquitto`).
fn mosquitto_passwd(args: &[&str]) {
    let out = Command::new("mosquitto_passwd").args(args).output().unwrap_or_else(|e| {
        panic!("cannot run mosquitto_passwd ({e}): install the mosquitto package; CI does")
    });
    assert!(out.status.success(), "mosquitto_passwd {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A password file made by `mosquitto_passwd`: one call per (flags, user, password).
fn made_by_mosquitto(test: &str, users: &[(&[&str], &str, &str)]) -> PathBuf {
    let path = scratch_dir(test).join("passwd");
    let file = path.to_str().expect("UTF-8 temp path");
    for (i, (flags, user, password)) in users.iter().enumerate() {
        let mut args: Vec<&str> = if i == 0 { vec!["-c"] } else { vec![] };
        args.extend_from_slice(flags);
        args.extend_from_slice(&["-b", file, user, password]);
        mosquitto_passwd(&args);
    }
    path
}

fn scheme_of(file: &PasswordFile, user: &str) -> Scheme {
    file.users[user].scheme
}

#[test]
fn pbkdf2_entries_from_mosquitto_passwd() {
    let path = made_by_mosquitto(
        "pbkdf2",
        &[(&[], "alice", "secret"), (&["-I", "1000"], "carol", "pässwörd"), (&[], "with space", "p w")],
    );
    let file = PasswordFile::load(&path).unwrap();
    assert_eq!(file.len(), 3);
    assert_eq!(scheme_of(&file, "alice"), Scheme::Pbkdf2(DEFAULT_ITERATIONS));
    assert_eq!(scheme_of(&file, "carol"), Scheme::Pbkdf2(1000));
    assert!(file.check("alice", b"secret"));
    assert!(file.check("carol", "pässwörd".as_bytes()));
    assert!(file.check("with space", b"p w"));
    assert!(!file.check("alice", b"Secret"), "wrong password");
    assert!(!file.check("alice", b"secret "), "a byte more");
    assert!(!file.check("alice", b""), "empty password");
    assert!(!file.check("carol", b"secret"), "another user's password");
    assert!(!file.check("mallory", b"secret"), "unknown user");
    assert!(!file.check("Alice", b"secret"), "usernames are case-sensitive");
}

#[test]
fn sha512_entries_from_mosquitto_passwd() {
    let path =
        made_by_mosquitto("sha512", &[(&["-H", "sha512"], "bob", "hunter2"), (&[], "alice", "secret")]);
    let file = PasswordFile::load(&path).unwrap();
    assert_eq!(scheme_of(&file, "bob"), Scheme::Sha512);
    assert_eq!(scheme_of(&file, "alice"), Scheme::Pbkdf2(DEFAULT_ITERATIONS));
    assert!(file.check("bob", b"hunter2"));
    assert!(!file.check("bob", b"hunter3"));
    assert!(!file.check("bob", b"hunter2\0"), "every byte of the password counts");
    assert!(file.check("alice", b"secret"));
    assert!(!file.check("nobody", b"hunter2"));
}

#[test]
fn every_byte_of_the_hash_counts() {
    let path = made_by_mosquitto("bytes", &[(&[], "alice", "secret"), (&["-H", "sha512"], "bob", "hunter2")]);
    let file = PasswordFile::load(&path).unwrap();
    for (user, password) in [("alice", b"secret".as_slice()), ("bob", b"hunter2")] {
        for i in [0, 31, HASH_LEN - 1] {
            let mut entry = file.users[user].clone();
            entry.hash[i] ^= 1;
            assert!(!entry.verify(password), "{user}: hash byte {i} changed");
        }
        assert!(file.users[user].verify(password));
    }
}

#[test]
fn empty_password_from_mosquitto_passwd() {
    let path = made_by_mosquitto("empty", &[(&[], "quiet", "")]);
    let file = PasswordFile::load(&path).unwrap();
    assert!(file.check("quiet", b""));
    assert!(!file.check("quiet", b" "));
}

/// A real entry's hash part, to build malformed lines from.
fn real_hash(flags: &[&str]) -> String {
    let path = made_by_mosquitto("real", &[(flags, "x", "pw")]);
    let text = std::fs::read_to_string(path).unwrap();
    text.trim_end().strip_prefix("x:").unwrap().to_owned()
}

#[test]
fn malformed_entries_are_dropped_or_skipped() {
    let good7 = real_hash(&[]);
    let good6 = real_hash(&["-H", "sha512"]);
    let f7: Vec<&str> = good7.split('$').collect(); // ["", "7", iterations, salt, hash]
    let f6: Vec<&str> = good6.split('$').collect(); // ["", "6", salt, hash]
    let (salt, hash) = (f7[3], f7[4]);
    let long_user = "u".repeat(65_536);
    let u = || "u".to_owned();
    type Expect = Option<Result<(), Dropped>>;
    let cases: Vec<(String, Expect)> = vec![
        // Lines mosquitto skips without a word.
        ("# u:".to_owned() + &good7, None),
        ("".to_owned(), None),
        ("no colon here".to_owned(), None),
        // What a well-formed line gives.
        (format!("u:{good7}"), Some(Ok(()))),
        (format!("u:{good6}"), Some(Ok(()))),
        (format!("  u  :  {good7}  \r"), Some(Ok(()))),
        (format!("u:$7$1${salt}${hash}"), Some(Ok(()))),
        (format!("u:$7${MAX_ITERATIONS}${salt}${hash}"), Some(Ok(()))),
        // Dropped, each for its reason.
        (format!(":{good7}"), Some(Err(Dropped::EmptyUsername))),
        (format!("{long_user}:{good7}"), Some(Err(Dropped::UsernameTooLong))),
        ("u:".to_owned(), Some(Err(Dropped::NoHash(u())))),
        ("u:   ".to_owned(), Some(Err(Dropped::NoHash(u())))),
        (format!("u:{good7}:extra"), Some(Err(Dropped::ExtraColon(u())))),
        ("u:secret".to_owned(), Some(Err(Dropped::NotHashed(u())))),
        (format!("u:$5${salt}${hash}"), Some(Err(Dropped::UnknownScheme(u(), "5".into())))),
        (format!("u:$${salt}${hash}"), Some(Err(Dropped::UnknownScheme(u(), "".into())))),
        (format!("u:$7${salt}${hash}"), Some(Err(Dropped::WrongFieldCount(u())))),
        (format!("u:$6${salt}"), Some(Err(Dropped::WrongFieldCount(u())))),
        (format!("u:{good6}$junk"), Some(Err(Dropped::WrongFieldCount(u())))),
        (format!("u:$7$$101${salt}${hash}"), Some(Err(Dropped::WrongFieldCount(u())))),
        (format!("u:$7$0${salt}${hash}"), Some(Err(Dropped::BadIterations(u())))),
        (format!("u:$7$${salt}${hash}"), Some(Err(Dropped::BadIterations(u())))),
        (format!("u:$7$101abc${salt}${hash}"), Some(Err(Dropped::BadIterations(u())))),
        (format!("u:$7$+101${salt}${hash}"), Some(Err(Dropped::BadIterations(u())))),
        (format!("u:$7$-1${salt}${hash}"), Some(Err(Dropped::BadIterations(u())))),
        (format!("u:$7${}${salt}${hash}", MAX_ITERATIONS + 1), Some(Err(Dropped::TooManyIterations(u())))),
        (format!("u:$7$99999999999999999999999${salt}${hash}"), Some(Err(Dropped::TooManyIterations(u())))),
        (format!("u:$7$101$!!notbase64!!${hash}"), Some(Err(Dropped::BadSalt(u())))),
        (format!("u:$7$101${}${hash}", &salt[..12]), Some(Err(Dropped::BadSalt(u())))),
        (format!("u:$7$101${hash}${hash}"), Some(Err(Dropped::BadSalt(u())))),
        (format!("u:$6$${}", f6[3]), Some(Err(Dropped::BadSalt(u())))),
        (format!("u:$7$101${salt}${salt}"), Some(Err(Dropped::BadHash(u())))),
        (format!("u:$7$101${salt}${}", hash.trim_end_matches('=')), Some(Err(Dropped::BadHash(u())))),
        (format!("u:$7$101${salt}$ {hash}"), Some(Err(Dropped::BadHash(u())))),
        (format!("u:$6${}$", f6[2]), Some(Err(Dropped::BadHash(u())))),
    ];
    for (line, expected) in &cases {
        let got = parse_line(line.as_bytes()).map(|r| r.map(|_| ()));
        assert_eq!(&got, expected, "line {:?}", &line[..line.len().min(80)]);
    }
    let not_utf8 = [b"u:\xff".as_slice(), good7.as_bytes()].concat();
    assert_eq!(parse_line(&not_utf8).map(|r| r.map(|_| ())), Some(Err(Dropped::NotUtf8)));
}

#[test]
fn bad_entries_leave_the_rest_loaded() {
    let good = real_hash(&[]);
    let path = scratch_dir("rest").join("passwd");
    let text = format!(
        "# made by hand\nalice:{good}\nbroken:$7$101$AAAA$AAAA\r\n\nplain:secret\nhuge:$7$2000000{}\nbob:{good}\r\n",
        &good[6..]
    );
    std::fs::write(&path, text).unwrap();
    let file = PasswordFile::load(&path).unwrap();
    assert_eq!(file.len(), 2);
    assert!(file.contains("alice") && file.contains("bob"));
    for dropped in ["broken", "plain", "huge"] {
        assert!(!file.contains(dropped), "{dropped} should be dropped");
        assert!(!file.check(dropped, b"secret"));
    }
    assert!(file.check("alice", b"pw") && file.check("bob", b"pw"));
}

#[test]
fn a_later_line_for_the_same_user_wins() {
    let first = made_by_mosquitto("dup1", &[(&[], "u", "old")]);
    let second = made_by_mosquitto("dup2", &[(&[], "u", "new")]);
    let both = [std::fs::read(&first).unwrap(), std::fs::read(&second).unwrap()].concat();
    let path = first.with_file_name("both");
    std::fs::write(&path, both).unwrap();
    let file = PasswordFile::load(&path).unwrap();
    assert!(file.check("u", b"new"));
    assert!(!file.check("u", b"old"));
}

#[test]
fn unknown_users_cost_the_common_iteration_count() {
    let entry = |n| Entry { scheme: Scheme::Pbkdf2(n), salt: [0; SALT_LEN], hash: [0; HASH_LEN] };
    let sha = Entry { scheme: Scheme::Sha512, ..entry(1) };
    assert_eq!(common_iterations([].iter()), DEFAULT_ITERATIONS);
    assert_eq!(common_iterations([sha.clone()].iter()), DEFAULT_ITERATIONS);
    assert_eq!(common_iterations([entry(5), entry(900), entry(900), sha].iter()), 900);
    assert_eq!(common_iterations([entry(900), entry(5)].iter()), 5, "ties go to the cheaper count");
    let path = made_by_mosquitto("dummy", &[(&["-I", "7"], "a", "x"), (&["-I", "7"], "b", "x")]);
    let file = PasswordFile::load(&path).unwrap();
    assert_eq!(file.dummy.scheme, Scheme::Pbkdf2(7));
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let path = Path::new("/nonexistent/pubsub-passwd");
    let err = PasswordFile::load(path).unwrap_err();
    assert!(matches!(&err, AuthError::Io { path: p, .. } if p == path), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/pubsub-passwd"), "{err}");
    assert!(std::error::Error::source(&err).is_some(), "the io::Error is kept");
}

#[test]
fn debug_output_holds_no_hash() {
    let path = made_by_mosquitto("debug", &[(&[], "alice", "secret")]);
    let file = PasswordFile::load(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let salt = text.split('$').nth(3).unwrap();
    let shown = format!("{file:?} {:?}", file.users["alice"]);
    assert!(!shown.contains(salt) && !shown.contains("hash:"), "{shown}");
}
