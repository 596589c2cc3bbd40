//! REDbot (HTTP lint: caching headers, conditional and ranged requests) finds no
//! error on `/`, `/hello.txt` and a 4 KiB file, and its conditional and range checks
//! pass. Its HAR output is parsed as JSON: a run that checked nothing, or notes in a
//! form we do not know, fail the test rather than pass it.

mod util;

use std::process::Command;

use serde_json::Value;
use util::{start, tool};

/// REDbot's note levels (`httplint.note.levels`); `BAD` is an error.
const LEVELS: [&str; 4] = ["GOOD", "INFO", "WARN", "BAD"];

/// Notes every file must earn: the response's length is right, and conditional
/// (`If-None-Match`, `If-Modified-Since`) and range requests work.
const REQUIRED: [&str; 4] = ["CL_CORRECT", "INM_304", "IMS_304", "RANGE_CORRECT"];

/// Runs REDbot on `url`; returns its HAR document.
fn redbot(url: &str) -> Value {
    let out = Command::new(tool("redbot")).args(["-o", "har"]).arg(url).output().expect("redbot runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "redbot failed on {url}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("redbot's HAR for {url} is not JSON ({e}):\n{text}"))
}

/// Every note of an entry, subnotes included, as (id, level).
fn notes(messages: &Value, into: &mut Vec<(String, String)>) {
    for note in messages.as_array().expect("notes are a list") {
        let field =
            |name: &str| note[name].as_str().unwrap_or_else(|| panic!("a note without {name}: {note}"));
        into.push((field("note_id").to_string(), field("level").to_string()));
        if let Some(sub) = note.get("subnotes") {
            notes(sub, into);
        }
    }
}

#[test]
fn redbot_reports_no_errors() {
    let running = start();
    for path in ["/", "/hello.txt", "/4k.bin"] {
        let har = redbot(&running.url(path));
        assert!(har["log"].get("_red_error").is_none(), "redbot could not check {path}: {har}");
        let entries = har["log"]["entries"].as_array().expect("HAR entries");
        assert!(!entries.is_empty(), "redbot checked nothing on {path}: {har}");
        for entry in entries {
            assert_eq!(entry["response"]["status"], 200, "{path}");
            let mut found = Vec::new();
            notes(&entry["_red_messages"], &mut found);
            assert!(!found.is_empty(), "no notes for {path}");
            let unknown: Vec<_> =
                found.iter().filter(|(_, level)| !LEVELS.contains(&level.as_str())).collect();
            assert!(unknown.is_empty(), "notes of unknown levels for {path}: {unknown:?}");
            let errors: Vec<_> = found.iter().filter(|(_, level)| level == "BAD").collect();
            assert!(errors.is_empty(), "REDbot errors for {path}: {errors:?}");
            for id in REQUIRED {
                assert!(found.iter().any(|(n, _)| n == id), "{path}: no {id} among {found:?}");
            }
        }
    }
    running.stop();
}
