//! Temporary folders and password files made by the real `mosquitto_passwd`, for the
//! tests of logins and configuration files. Included with `#[path]` by the test
//! files that need it.
#![allow(dead_code)] // each test file uses a different subset

use std::path::{Path, PathBuf};
use std::process::Command;

/// A folder of its own under the system temp dir, removed on drop.
pub struct Dir(pub PathBuf);

impl Dir {
    /// A fresh, empty folder named after `name` and this process.
    pub fn new(name: &str) -> Dir {
        let path = std::env::temp_dir().join(format!("pubsub-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a temp dir");
        Dir(path)
    }

    /// Writes `text` to `name` in the folder; its path.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write a test file");
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Adds (or changes) `user:password` in `file` with the real `mosquitto_passwd`, with
/// `extra` flags (`-H sha512` for the older `$6$` format). A missing tool fails the
/// test: `.ci/run` installs it.
pub fn mosquitto_passwd(file: &Path, extra: &[&str], user: &str, password: &str) {
    let mut cmd = Command::new("mosquitto_passwd");
    cmd.args(extra);
    if !file.exists() {
        cmd.arg("-c");
    }
    let out = cmd.arg("-b").arg(file).args([user, password]).output().unwrap_or_else(|e| {
        panic!("cannot run mosquitto_passwd ({e}): install the mosquitto package; .ci/run does")
    });
    assert!(out.status.success(), "mosquitto_passwd: {}", String::from_utf8_lossy(&out.stderr));
}
