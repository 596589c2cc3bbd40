//! REDbot (HTTP lint: caching headers, conditional and ranged requests) finds no
//! error on `/`, `/hello.txt` and a 4 KiB file.

mod util;

use std::process::Command;

use util::{start, tool};

#[test]
fn redbot_reports_no_errors() {
    let running = start();
    for path in ["/", "/hello.txt", "/4k.bin"] {
        let out = Command::new(tool("redbot"))
            .args(["-o", "har"])
            .arg(running.url(path))
            .output()
            .expect("redbot runs");
        let har = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && har.contains("\"level\""),
            "redbot gave no verdict for {path}:\n{har}"
        );
        let errors: Vec<&str> = har
            .lines()
            .zip(har.lines().skip(1))
            .filter(|(level, _)| level.contains("\"level\": \"BAD\""))
            .map(|(_, summary)| summary.trim())
            .collect();
        assert!(errors.is_empty(), "REDbot errors for {path}: {errors:?}");
    }
    running.stop();
}
