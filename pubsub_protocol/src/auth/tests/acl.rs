//! The ACL: a table of (rules, client, request, expected), malformed lines with their
//! line numbers, and a seeded random run that must never panic.

use std::path::Path;

use super::*;
use crate::test_rng::Rng;

#[derive(Debug, Clone, Copy)]
enum Op {
    /// `check_publish`.
    Pub,
    /// `check_deliver`.
    Get,
    /// `check_subscribe`.
    Sub,
}
use Op::{Get, Pub, Sub};

fn acl(rules: &str) -> Acl {
    Acl::parse(Path::new("test.acl"), rules.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
}

fn ask(acl: &Acl, id: &str, username: Option<&str>, op: Op, what: &str) -> bool {
    let client = Client { id, username };
    match op {
        Pub => acl.check_publish(&client, what),
        Get => acl.check_deliver(&client, what),
        Sub => acl.check_subscribe(&client, what),
    }
}

/// (client id, username, operation, topic or filter, expected, why)
type Case<'a> = (&'a str, Option<&'a str>, Op, &'a str, bool, &'a str);

fn run(rules: &str, cases: &[Case<'_>]) {
    let acl = acl(rules);
    let mut failed = Vec::new();
    for &(id, user, op, what, expected, why) in cases {
        if ask(&acl, id, user, op, what) != expected {
            failed.push(format!("{id:?}/{user:?} {op:?} {what:?}: expected {expected} ({why})"));
        }
    }
    assert!(failed.is_empty(), "{} of {} cases failed:\n{}", failed.len(), cases.len(), failed.join("\n"));
}

const SECTIONS: &str = "\
# anonymous clients
topic read public/#
topic readwrite anon/+/chat
topic read $SYS/broker/uptime

user alice
topic readwrite alice/#
topic deny alice/secret/#
topic read shared/+/status
topic write $SYS/custom
topic sensors/temp
topic readwrite clients/#

user bob
topic read #
topic deny private/#

pattern readwrite clients/%c/#
pattern read users/%u/inbox/+
pattern write devices/%c/%u
pattern deny clients/%c/locked
";

const A: Option<&str> = None;
const ALICE: Option<&str> = Some("alice");
const BOB: Option<&str> = Some("bob");

#[test]
fn sections_patterns_and_denies() {
    run(
        SECTIONS,
        &[
            ("anon1", A, Get, "public/news", true, "anonymous section, read"),
            ("anon1", A, Pub, "public/news", false, "read is not write"),
            ("anon1", A, Pub, "anon/x/chat", true, "+ in a rule"),
            ("anon1", A, Pub, "anon/x/y/chat", false, "+ is one level"),
            ("anon1", A, Get, "$SYS/broker/uptime", true, "$ rule for a $ topic"),
            ("anon1", A, Get, "$SYS/broker/load", false, "no rule"),
            ("anon1", A, Pub, "alice/x", false, "alice's section is not anonymous"),
            ("anon1", A, Pub, "clients/anon1/x", true, "%c pattern"),
            ("anon1", A, Pub, "clients/other/x", false, "someone else's %c"),
            ("anon1", A, Pub, "clients/anon1/locked", false, "pattern deny beats pattern grant"),
            ("anon1", A, Get, "users//inbox/x", false, "%u pattern skipped without username"),
            ("a1", ALICE, Pub, "alice/x", true, "user section"),
            ("a1", ALICE, Get, "alice/x/y", true, "readwrite"),
            ("a1", ALICE, Pub, "alice/secret/x", false, "deny in the same section"),
            ("a1", ALICE, Get, "alice/secret", false, "deny a/# covers its parent"),
            ("a1", ALICE, Get, "public/news", false, "anonymous rules are not for users"),
            ("a1", ALICE, Get, "shared/x/status", true, "read"),
            ("a1", ALICE, Pub, "shared/x/status", false, "read only"),
            ("a1", ALICE, Pub, "$SYS/custom", true, "$ rule"),
            ("a1", ALICE, Get, "$SYS/custom", false, "write only"),
            ("a1", ALICE, Pub, "sensors/temp", true, "no access word: readwrite"),
            ("a1", ALICE, Get, "sensors/temp", true, "no access word: readwrite"),
            ("a1", ALICE, Pub, "clients/other/x", true, "own topic rule"),
            ("a1", ALICE, Pub, "clients/a1/locked", false, "pattern deny beats a topic grant"),
            ("a1", ALICE, Get, "users/alice/inbox/m", true, "%u pattern"),
            ("a1", ALICE, Pub, "users/alice/inbox/m", false, "%u pattern is read only"),
            ("a1", ALICE, Get, "users/bob/inbox/m", false, "someone else's %u"),
            ("a1", ALICE, Pub, "devices/a1/alice", true, "%c and %u together"),
            ("a1", ALICE, Pub, "devices/a1/bob", false, "wrong %u"),
            ("b1", BOB, Get, "any/thing", true, "# rule"),
            ("b1", BOB, Get, "private/x", false, "deny"),
            ("b1", BOB, Get, "private", false, "deny private/# covers private"),
            ("b1", BOB, Get, "$SYS/broker/uptime", false, "# never matches $ topics"),
            ("b1", BOB, Pub, "any/thing", false, "read only"),
            ("b1", BOB, Pub, "clients/b1/x", true, "patterns apply to every user"),
            ("c1", Some("carol"), Pub, "clients/c1/x", true, "unlisted user: patterns only"),
            ("c1", Some("carol"), Get, "public/news", false, "unlisted user is not anonymous"),
            ("c1", Some(""), Get, "public/news", false, "empty username is not anonymous"),
            ("a1", ALICE, Pub, "alice/+", false, "not a topic name"),
            ("a1", ALICE, Get, "", false, "empty topic"),
        ],
    );
}

#[test]
fn wildcard_ids_and_usernames_get_no_pattern_access() {
    let rules = "\
topic read public/#
user x#y
topic read xy/#
user alice
topic read public/#
pattern readwrite clients/%c/#
pattern read users/%u/#
pattern deny clients/%c/locked
";
    run(
        rules,
        &[
            ("+", A, Pub, "clients/victim/x", false, "id + would match every client"),
            ("#", A, Get, "clients/victim/x", false, "id # would match everything"),
            ("a+b", A, Pub, "clients/a+b/x", false, "not a topic name either way"),
            ("+", A, Get, "public/news", false, "deny pattern with %c cannot be judged: fail closed"),
            ("ok", Some("#"), Get, "users/victim/x", false, "username #"),
            ("ok", Some("#"), Pub, "clients/ok/x", false, "any dangerous value stops all pattern grants"),
            ("ok", Some("x#y"), Get, "xy/1", true, "own section still applies"),
            ("ok", Some("x#y"), Get, "clients/ok/1", false, "but no pattern grant"),
            ("ok", Some("a+"), Get, "users/a+/x", false, "not a topic name"),
            ("+", ALICE, Get, "public/news", false, "deny pattern with a + id fails closed"),
            ("ok", ALICE, Get, "public/news", true, "same request, harmless id"),
            ("ok", ALICE, Get, "users/alice/x", true, "%u pattern"),
        ],
    );
}

#[test]
fn substitution_is_one_textual_pass() {
    let rules = "pattern readwrite c/%c/#\npattern read u/%u\npattern read x%cy/%%c\n";
    run(
        rules,
        &[
            ("%u", BOB, Pub, "c/%u/1", true, "a substituted id is not scanned again"),
            ("%u", BOB, Pub, "c/bob/1", false, "so %u in an id stays literal"),
            ("k", A, Get, "xky/%k", true, "%c inside a level, %% then %c"),
            ("k", A, Get, "u/", false, "%u without a username"),
            ("k", Some(""), Get, "u/", true, "empty username substitutes as empty"),
            ("a/b", A, Pub, "c/a/b/1", true, "a / in an id spans levels, as in mosquitto"),
        ],
    );
}

#[test]
fn dollar_topics_need_dollar_rules() {
    let rules = "topic read #\ntopic read +/x\ntopic read $SYS/#\ntopic deny $SYS/secret\n";
    run(
        rules,
        &[
            ("c", A, Get, "$SYS/broker", true, "$SYS/# rule"),
            ("c", A, Get, "$SYS/secret", false, "deny"),
            ("c", A, Get, "$other/x", false, "# and +/x never match $ topics"),
            ("c", A, Get, "plain/x", true, "# rule"),
            ("c", A, Sub, "#", true, "the $SYS deny does not overlap #"),
            ("c", A, Sub, "$SYS/#", true, "the $SYS deny does not cover $SYS/#: filtered per message"),
            ("c", A, Sub, "$SYS/secret", false, "the deny covers it"),
            ("c", A, Sub, "$SYS/broker/#", true, "covered, no overlap"),
            ("c", A, Sub, "+/x", true, "covered by # and +/x"),
            ("c", A, Sub, "$other/#", false, "# does not cover $ filters"),
        ],
    );
}

#[test]
fn subscriptions_must_be_covered_and_not_covered_by_a_deny() {
    let rules = "\
user s
topic read a/#
topic read b/+/c
topic read d/+
topic read e
topic deny a/private/#
topic write w/#
pattern read p/%u/#
pattern deny p/%u/hidden
";
    let s = Some("s");
    run(
        rules,
        &[
            ("c", s, Sub, "a/public/#", true, "inside a/#"),
            ("c", s, Sub, "a/x", true, "inside a/#"),
            ("c", s, Sub, "a/public/+", true, "+ inside a/#"),
            ("c", s, Sub, "a/#", true, "wider than deny a/private/#: granted, filtered per message"),
            ("c", s, Sub, "a/+", true, "a/+ matches a/private, which is filtered per message"),
            ("c", s, Sub, "a/+/y", true, "a/+/y is not covered by the deny"),
            ("c", s, Sub, "a/private", false, "inside the deny"),
            ("c", s, Sub, "a/private/#", false, "the deny itself"),
            ("c", s, Sub, "a/private/+/x", false, "covered by the deny"),
            ("c", s, Get, "a/private/x", false, "read of a denied topic, at delivery"),
            ("c", s, Sub, "b/+/c", true, "+ covered by +"),
            ("c", s, Sub, "b/x/c", true, "literal covered by +"),
            ("c", s, Sub, "b/#", false, "# not covered by +/c"),
            ("c", s, Sub, "b/+/+", false, "+ not covered by literal c"),
            ("c", s, Sub, "b/+/c/d", false, "deeper than the rule"),
            ("c", s, Sub, "d/+", true, "same filter"),
            ("c", s, Sub, "d/#", false, "# not covered by +"),
            ("c", s, Sub, "d", false, "d/+ does not match d"),
            ("c", s, Sub, "e", true, "literal"),
            ("c", s, Sub, "e/#", false, "e/# is wider than e"),
            ("c", s, Sub, "w/x", false, "write only"),
            ("c", s, Sub, "p/s/#", true, "wider than pattern deny p/s/hidden: filtered per message"),
            ("c", s, Sub, "p/s/hidden", false, "covered by the pattern deny"),
            ("c", s, Sub, "p/s/x/#", true, "%u pattern covers it"),
            ("c", s, Sub, "p/other/x", false, "someone else's %u"),
            ("c", s, Sub, "p/+/x", false, "+ not covered by the substituted level"),
            ("c", s, Sub, "#", false, "nothing covers #"),
            ("c", s, Sub, "a/#/b", false, "invalid filter"),
            ("c", s, Sub, "", false, "empty filter"),
            ("c", A, Sub, "a/x", false, "no anonymous rules"),
        ],
    );
}

#[test]
fn no_rules_deny_everything() {
    run(
        "# nothing\n\n",
        &[("c", A, Get, "x", false, "empty file"), ("c", ALICE, Sub, "x", false, "empty file")],
    );
    assert!(acl("# nothing\n").is_empty());
    assert_eq!(acl(SECTIONS).len(), 15);
}

#[test]
fn accepted_layouts() {
    let rules = "  # indented comment\n\ttopic\tread\tt/1\ntopic read a b/c  \r\nuser  two words \ntopic x\npattern %c\n";
    run(
        rules,
        &[
            ("c", A, Get, "t/1", true, "tabs separate words"),
            ("c", A, Get, "a b/c", true, "spaces inside a filter after an access word"),
            ("c", Some("two words"), Pub, "x", true, "username with a space, trimmed"),
            ("me", A, Pub, "me", true, "pattern without access word"),
        ],
    );
}

#[test]
fn repeated_user_sections_add_up() {
    let rules = "user a\ntopic read x\nuser b\ntopic read y\nuser a\ntopic read z\n";
    let a = Some("a");
    run(
        rules,
        &[
            ("c", a, Get, "x", true, "first a section"),
            ("c", a, Get, "z", true, "second a section"),
            ("c", a, Get, "y", false, "b's section"),
        ],
    );
}

#[test]
fn malformed_lines_name_their_line() {
    let deep_ok = vec!["a"; 200].join("/");
    let deep_bad = vec!["a"; 201].join("/");
    let cases: Vec<(String, usize, Malformed)> = vec![
        ("topic read a\nfoo bar".into(), 2, Malformed::UnknownKeyword("foo".into())),
        ("Topic a".into(), 1, Malformed::UnknownKeyword("Topic".into())),
        ("user a\n# c\n\ntopic".into(), 4, Malformed::MissingFilter),
        ("topic   ".into(), 1, Malformed::MissingFilter),
        ("pattern read".into(), 1, Malformed::MissingFilter),
        ("topic deny".into(), 1, Malformed::MissingFilter),
        ("topic reed a/b".into(), 1, Malformed::BadAccess("reed".into())),
        ("topic READ a/b".into(), 1, Malformed::BadAccess("READ".into())),
        ("topic a b".into(), 1, Malformed::BadAccess("a".into())),
        ("user".into(), 1, Malformed::MissingUsername),
        ("x\n".into(), 1, Malformed::UnknownKeyword("x".into())),
        ("topic a\r\nuser \r\n".into(), 2, Malformed::MissingUsername),
        (format!("topic {deep_ok}\ntopic {deep_bad}"), 2, Malformed::InvalidFilter(String::new())),
        ("topic a/#/b".into(), 1, Malformed::InvalidFilter(String::new())),
        ("topic read a+".into(), 1, Malformed::InvalidFilter(String::new())),
        ("pattern write x/%c#".into(), 1, Malformed::InvalidFilter(String::new())),
        ("topic a\0b".into(), 1, Malformed::InvalidFilter(String::new())),
    ];
    for (text, line, reason) in cases {
        let err = Acl::parse(Path::new("dir/acl"), text.as_bytes()).expect_err(&text);
        let AuthError::Syntax { path, line: got_line, reason: got } = &err else { panic!("{err:?}") };
        assert_eq!((path.as_path(), *got_line), (Path::new("dir/acl"), line), "{text:?}");
        match (&reason, got) {
            (Malformed::InvalidFilter(_), Malformed::InvalidFilter(_)) => {}
            _ => assert_eq!(got, &reason, "{text:?}"),
        }
        assert!(err.to_string().starts_with(&format!("dir/acl:{line}: ")), "{err}");
    }
    let err = Acl::parse(Path::new("acl"), b"topic a\ntopic \xff\n").unwrap_err();
    assert!(matches!(err, AuthError::Syntax { line: 2, reason: Malformed::NotUtf8, .. }), "{err:?}");
}

#[test]
fn load_reads_a_file_and_reports_a_missing_one() {
    let path = crate::auth::scratch_dir("acl-load").join("acl");
    std::fs::write(&path, "user alice\ntopic alice/#\n").unwrap();
    let acl = Acl::load(&path).unwrap();
    assert!(acl.check_publish(&Client { id: "c", username: ALICE }, "alice/x"));
    std::fs::remove_file(&path).unwrap();
    let err = Acl::load(&path).unwrap_err();
    assert!(matches!(&err, AuthError::Io { path: p, .. } if *p == path), "{err:?}");
}

#[test]
fn deep_topics_do_not_recurse() {
    // A thread with a small stack: matching must not grow it per level. Filters in
    // the file stop at 200 levels, but a client id substituted for %c does not.
    let handle = std::thread::Builder::new().stack_size(64 * 1024).spawn(|| {
        let acl = acl("pattern read %c\npattern deny %c/+/x\n");
        // 30,000 levels within the 65,535 bytes a topic may have.
        let deep = vec!["a"; 30_000].join("/");
        let client = Client { id: &deep, username: None };
        let sub = vec!["a"; 200].join("/");
        (acl.check_deliver(&client, &deep), acl.check_subscribe(&client, &sub))
    });
    assert_eq!(handle.unwrap().join().unwrap(), (true, false));
}

/// One to four levels, often a valid filter or topic, sometimes not.
fn random_filter(rng: &mut Rng) -> String {
    let levels = ["a", "b", "a", "b", "+", "#", "%c", "%u", "$SYS", "é", "", "x%cy"];
    let n = 1 + rng.next() % 4;
    (0..n).map(|_| rng.pick(&levels)).collect::<Vec<_>>().join("/")
}

/// A file of up to eight lines, most shaped like rules, some pure noise.
fn random_file(rng: &mut Rng) -> Vec<u8> {
    let mut text = String::new();
    for _ in 0..=rng.next() % 6 {
        let line = match rng.next() % 4 {
            0 => rng.text(PIECES, 12),
            1 => format!("user {}", rng.text(LEVELS, 3)),
            _ => {
                let access = rng.pick(&["", "read ", "write ", "readwrite ", "deny ", "bad "]);
                let filter = random_filter(rng);
                format!("{} {access}{filter}", rng.pick(&["topic", "pattern"]))
            }
        };
        text.push_str(&line);
        text.push('\n');
    }
    let mut bytes = text.into_bytes();
    if rng.next() % 10 == 0 {
        bytes.push((rng.next() % 256) as u8); // sometimes not UTF-8
    }
    bytes
}

const LEVELS: &[&str] = &["/", "+", "#", "%c", "%u", "%", "$", "$SYS", "a", "b", "é", "/+", "/#", "+/", "a/"];

const NAMES: &[&str] = &["a", "b", "a", "b", "+", "#", "/", "%u", "é"];

const PIECES: &[&str] = &[
    "topic",
    "pattern",
    "user",
    "read",
    "write",
    "readwrite",
    "deny",
    " ",
    "\t",
    "/",
    "+",
    "#",
    "%c",
    "%u",
    "%",
    "$",
    "$SYS",
    "a",
    "b",
    "é",
    "\0",
    "\r",
    "\n",
    "#x",
    "//",
    "+/",
    "/#",
];

#[test]
fn random_rules_and_requests_never_panic() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let (mut loaded, mut granted) = (0, 0);
    for _ in 0..20_000 {
        let bytes = random_file(&mut rng);
        let Ok(acl) = Acl::parse(Path::new("fuzz"), &bytes) else { continue };
        loaded += 1;
        for _ in 0..20 {
            let (id, user) = (rng.text(NAMES, 3), rng.text(NAMES, 3));
            let what = if rng.next() % 2 == 0 { random_filter(&mut rng) } else { rng.text(LEVELS, 10) };
            let username = (rng.next() % 3 != 0).then_some(user.as_str());
            for op in [Pub, Get, Sub] {
                granted += usize::from(ask(&acl, &id, username, op, &what));
            }
        }
    }
    // The run must reach the matchers, and some requests must be granted.
    eprintln!("{loaded} of 20000 random files loaded, {granted} requests granted");
    assert!(loaded > 2_000 && granted > 1_000, "{loaded} files loaded, {granted} requests granted");
}

#[test]
fn filter_relations_agree_with_matching() {
    // covers(r, s) means every topic s matches, r matches. Check it against
    // topic::matches over a small universe.
    let levels = ["a", "b", "$s"];
    let mut topics = Vec::new();
    for x in levels {
        topics.push(x.to_owned());
        for y in levels {
            topics.push(format!("{x}/{y}"));
            for z in levels {
                topics.push(format!("{x}/{y}/{z}"));
            }
        }
    }
    let parts = ["a", "b", "$s", "+", "#"];
    let mut filters = Vec::new();
    for x in parts {
        filters.push(x.to_owned());
        for y in parts {
            filters.push(format!("{x}/{y}"));
            for z in parts {
                filters.push(format!("{x}/{y}/{z}"));
            }
        }
    }
    filters.retain(|f| crate::topic::valid_filter(f));
    let m = |f: &str, t: &str| crate::topic::matches(f, t);
    for a in &filters {
        for b in &filters {
            // Within three levels the universe is exhaustive only for filters
            // without #, whose matches can be deeper.
            if !b.contains('#') {
                let within = topics.iter().all(|t| !m(b, t) || m(a, t));
                assert_eq!(filter::covers(a, b), within, "covers({a}, {b})");
            }
        }
    }
}
