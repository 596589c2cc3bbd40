//! `pubsub -c FILE`: the part of mosquitto's configuration file (`mosquitto.conf(5)`,
//! mosquitto 2.0) that this broker implements, read with mosquitto's key names.
//!
//! [`load`] reads a file, [`parse`] its text; both give a [`ConfFile`] whose fields are
//! `None` for keys the file does not set, so command-line flags can override them.
//!
//! ### Syntax (as mosquitto's `src/conf.c` reads it)
//! - One `key value` per line; a line whose first non-blank character is `#` is a
//!   comment; blank lines, trailing blanks and CRLF line ends are fine.
//! - Numbers and words take one value; a `#` word after it starts a comment (mosquitto
//!   ignores anything after the value), any other extra word is an error.
//! - Text values (`password_file`, `acl_file`, `bind_address`) are the rest of the line
//!   without its outer blanks; inner spaces and a `#` belong to the value, as in
//!   mosquitto, and giving one twice is an error in both. Relative paths are used as
//!   given, relative to the working directory, as mosquitto does (not to the
//!   configuration file's directory).
//! - For every other key the last value wins, as in mosquitto.
//!
//! Where this parser differs from mosquitto it is stricter or friendlier, never
//! different in meaning: tabs separate words and indented comments are comments (both
//! errors in mosquitto); a UTF-8 byte-order mark is skipped; `12abc`, `0x10`, a
//! negative count or an empty value is an error (mosquitto reads `atoi`'s guess, clamps
//! negatives to 0, which means "no limit", or ignores some empty values).
//!
//! ### Keys
//! - [`SUPPORTED`]: mosquitto keys with a field in [`ConfFile`]: `listener`, `port`,
//!   `bind_address`, `allow_anonymous`, `password_file`, `acl_file`,
//!   `max_queued_messages`, `max_queued_bytes`, `max_inflight_messages`,
//!   `max_packet_size`, `message_size_limit`, `persistent_client_expiration`,
//!   `sys_interval`, `max_connections`, `max_keepalive`, `retain_available`.
//! - [`EXTENSIONS`]: pubsub's own keys, not in mosquitto: `max_topic_levels`,
//!   `max_topic_length`, `max_client_id_length`, `max_persistent_sessions`,
//!   `max_retained_messages`, `max_retained_bytes`, `message_expiry`, `overflow`.
//! - [`DEFAULT_ONLY`]: accepted when set to mosquitto's default, which is what pubsub
//!   does (`protocol mqtt`, `per_listener_settings false`, ...); any other value is an
//!   error.
//! - [`IGNORED`]: no effect here (logging, pid file, persistence, ...); each occurrence
//!   adds a line to [`ConfFile::warnings`].
//! - [`REFUSED`] and keys starting with one of [`REFUSED_PREFIXES`]: TLS, bridges,
//!   plugins, `include_dir`, ...: an error saying it is not supported yet, so nobody
//!   believes they are protected by a setting that does nothing.
//! - Anything else: an error, as in mosquitto.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::Overflow;

mod keys;
mod lists;
#[cfg(test)]
mod tests;
mod value;

pub use lists::{DEFAULT_ONLY, EXTENSIONS, IGNORED, REFUSED, REFUSED_PREFIXES, SUPPORTED};

/// A `listener PORT [ADDRESS]` line, or mosquitto's deprecated default listener
/// (`port` / `bind_address`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// TCP port, 1–65535 (mosquitto's port 0 means a Unix socket: refused here).
    pub port: u16,
    /// Host name or IP address to bind; `None`: every interface (mosquitto listens on
    /// both IPv4 and IPv6 then).
    pub address: Option<String>,
}

/// The settings a configuration file gives; `None` (or empty) where it is silent.
///
/// Values are kept as mosquitto defines them (0 = "no limit" where mosquitto says so);
/// turning them into broker settings, with flags taking precedence, is the caller's job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfFile {
    /// `listener` lines in file order, then the default listener if the file uses the
    /// deprecated `port` or `bind_address` (mosquitto 2.0 accepts them and opens that
    /// listener after the others; `bind_address` alone means port 1883).
    ///
    /// Empty: mosquitto 2.0 then runs in "local only" mode: it listens on 127.0.0.1 and
    /// ::1 port 1883 and allows anonymous clients whatever `allow_anonymous` says.
    pub listeners: Vec<Listener>,
    /// `allow_anonymous`: may clients connect without a username? mosquitto 2.0:
    /// default `false` when the file defines a listener, `true` (local only) when not.
    pub allow_anonymous: Option<bool>,
    /// `password_file`: mosquitto password file (`mosquitto_passwd`); as written, so a
    /// relative path is relative to the working directory, as in mosquitto.
    pub password_file: Option<PathBuf>,
    /// `acl_file`: mosquitto ACL file; as written (relative to the working directory).
    pub acl_file: Option<PathBuf>,
    /// `max_queued_messages`: QoS 1/2 messages queued per client beyond those in
    /// flight. Default 1000; 0 = no maximum.
    pub max_queued_messages: Option<usize>,
    /// `max_queued_bytes`: bytes of QoS 1/2 messages queued per client beyond those in
    /// flight. Default 0 = no maximum.
    pub max_queued_bytes: Option<usize>,
    /// `max_inflight_messages`: outgoing QoS 1/2 messages in flight per client, 0–65535.
    /// Default 20; 0 = no maximum (mosquitto also reads 65535 as no maximum).
    pub max_inflight_messages: Option<usize>,
    /// `max_packet_size`: largest packet accepted from a client, at least 20. Default:
    /// no limit beyond MQTT's own.
    pub max_packet_size: Option<usize>,
    /// `message_size_limit`: largest PUBLISH payload accepted, 0–268435455. Default 0 =
    /// no limit. A bigger message is not delivered, but its QoS flow completes.
    pub message_size_limit: Option<usize>,
    /// `persistent_client_expiration`: a disconnected clean-session-0 session is removed
    /// after this long. Written `<n>h|d|w|m|y` (`m` = 30 days, `y` = 365 days), n ≥ 1.
    /// Default: never.
    pub persistent_client_expiration: Option<Duration>,
    /// `sys_interval`: seconds between `$SYS` updates, 0–65535. Default 10; 0 = no `$SYS`.
    pub sys_interval: Option<u64>,
    /// `max_connections`: most clients connected at once. Default -1 = unlimited (any
    /// negative value is stored as -1, as mosquitto does). mosquitto sets it per
    /// listener; pubsub has one limit, so a file may give only one value.
    pub max_connections: Option<i64>,
    /// `max_keepalive`: largest keep-alive a client may ask for, 0–65535; a 3.1.1
    /// client asking for more, or for 0, is refused (CONNACK "identifier rejected").
    /// 0 = no limit: the default since mosquitto 2.0.16 (65535 before).
    pub max_keepalive: Option<u16>,
    /// `retain_available`: `false` disconnects a client that publishes a retained
    /// message. Default `true`.
    pub retain_available: Option<bool>,
    /// `max_topic_levels` (pubsub): most levels in a topic name or filter.
    pub max_topic_levels: Option<usize>,
    /// `max_topic_length` (pubsub): longest topic name or filter, in bytes.
    pub max_topic_length: Option<usize>,
    /// `max_client_id_length` (pubsub): longest client id accepted.
    pub max_client_id_length: Option<usize>,
    /// `max_persistent_sessions` (pubsub): persistent sessions held, connected or not.
    pub max_persistent_sessions: Option<usize>,
    /// `max_retained_messages` (pubsub): retained messages held.
    pub max_retained_messages: Option<usize>,
    /// `max_retained_bytes` (pubsub): payload and topic bytes of all retained messages.
    pub max_retained_bytes: Option<usize>,
    /// `message_expiry` (pubsub): seconds after which queued and retained messages are
    /// dropped; 0 = never, as the `--message-expiry` flag.
    pub message_expiry: Option<u64>,
    /// `overflow` (pubsub): `drop` or `block` when a client's queue is full, as the
    /// `--overflow` flag.
    pub overflow: Option<Overflow>,
    /// One line per ignored key or deprecated form, `FILE:LINE: key: why`, in file
    /// order, for the caller to log.
    pub warnings: Vec<String>,
}

/// Why a configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// A line is wrong: unknown or refused key, missing or bad value, ...
    #[error("{}:{line}: {key}: {reason}", path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// Line number, from 1.
        line: usize,
        /// The line's first word.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Reads and parses the configuration file at `path`.
pub fn load(path: &Path) -> Result<ConfFile, ConfError> {
    let bytes = std::fs::read(path).map_err(|source| ConfError::Io { path: path.to_owned(), source })?;
    parse(&decode(&bytes, path)?, path)
}

/// Parses configuration text; `path` only names the file in errors and warnings.
pub fn parse(text: &str, path: &Path) -> Result<ConfFile, ConfError> {
    // Editors on Windows may start a file with a byte-order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut builder = keys::Builder::default();
    for (index, line) in text.split('\n').enumerate() {
        let Some((key, rest)) = split_line(line) else { continue };
        let at = Place { path, line: index + 1, key };
        builder.apply(key, rest).map_err(|reason| at.error(reason))?;
        for note in builder.take_notes() {
            builder.conf.warnings.push(format!("{at}: {note}"));
        }
    }
    Ok(builder.finish())
}

/// The key and the rest of a line, or `None` for a blank or comment line.
fn split_line(line: &str) -> Option<(&str, &str)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (key, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    Some((key, rest.trim_start()))
}

/// Checks the file is UTF-8 line by line, so an error names its line. Comment lines
/// are not checked (mosquitto never reads them): they become empty.
fn decode(bytes: &[u8], path: &Path) -> Result<String, ConfError> {
    let mut text = String::with_capacity(bytes.len());
    for (index, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if index > 0 {
            text.push('\n');
        }
        match std::str::from_utf8(line) {
            Ok(line) => text.push_str(line),
            Err(_) if line.trim_ascii_start().starts_with(b"#") => {}
            Err(_) => return Err(bad_utf8(path, index + 1, line)),
        }
    }
    Ok(text)
}

fn bad_utf8(path: &Path, line: usize, bytes: &[u8]) -> ConfError {
    let key = bytes.trim_ascii().split(|b| b.is_ascii_whitespace()).next().unwrap_or_default();
    let key = String::from_utf8_lossy(key).into_owned();
    Place { path, line, key: &key }.error("not valid UTF-8".to_owned())
}

/// Where a line is, for errors and warnings: displays as `FILE:LINE: key`.
struct Place<'a> {
    path: &'a Path,
    line: usize,
    key: &'a str,
}

impl Place<'_> {
    fn error(&self, reason: String) -> ConfError {
        let Place { path, line, key } = *self;
        ConfError::Line { path: path.to_owned(), line, key: key.to_owned(), reason }
    }
}

impl fmt::Display for Place<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.key)
    }
}
