//! What each key does to the [`ConfFile`] being built.

use std::path::PathBuf;

use super::lists;
use super::value::{boolean, count, expiration, number, ranged, Args, INT_MAX};
use super::{ConfFile, Listener};
use crate::Overflow;

/// MQTT's largest payload: a 268,435,455-byte remaining length.
const MAX_PAYLOAD: i64 = 268_435_455;
/// Where mosquitto's deprecated default listener listens without `port`.
const DEFAULT_PORT: u16 = 1883;

/// A [`ConfFile`] under construction, with what only the end of the file settles.
#[derive(Debug, Default)]
pub(super) struct Builder {
    pub(super) conf: ConfFile,
    /// The deprecated `port` and `bind_address`: mosquitto's default listener.
    default_port: Option<u16>,
    bind_address: Option<String>,
    /// Warnings about the current line, without its place.
    notes: Vec<String>,
}

impl Builder {
    /// Applies one line; `Err` is the reason the line is wrong.
    pub(super) fn apply(&mut self, key: &str, rest: &str) -> Result<(), String> {
        let args = Args(rest);
        if let Some(feature) = lists::refused(key) {
            return Err(format!("not supported yet ({feature}); refusing to run without it"));
        }
        if let Some(why) = lists::ignored(key) {
            self.notes.push(format!("ignored: {why}"));
            return Ok(());
        }
        if let Some(only) = lists::default_only(key) {
            return default_only(key, only, args.word()?);
        }
        self.supported(key, args)
    }

    /// The warnings of the line just applied.
    pub(super) fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    /// The result, with the default listener after the others, as mosquitto opens it.
    pub(super) fn finish(mut self) -> ConfFile {
        if self.default_port.is_some() || self.bind_address.is_some() {
            let port = self.default_port.unwrap_or(DEFAULT_PORT);
            self.conf.listeners.push(Listener { port, address: self.bind_address });
        }
        self.conf
    }

    fn supported(&mut self, key: &str, args: Args<'_>) -> Result<(), String> {
        let c = &mut self.conf;
        match key {
            "listener" => listener(&mut c.listeners, args)?,
            "port" => self.port(args.word()?)?,
            "bind_address" => self.bind_address(args.text()?)?,
            "allow_anonymous" => c.allow_anonymous = Some(boolean(args.word()?)?),
            "password_file" => set_path(&mut c.password_file, args.text()?)?,
            "acl_file" => set_path(&mut c.acl_file, args.text()?)?,
            "max_queued_messages" => c.max_queued_messages = Some(count(args.word()?, INT_MAX)?),
            "max_queued_bytes" => c.max_queued_bytes = Some(count(args.word()?, INT_MAX)?),
            "max_inflight_messages" => c.max_inflight_messages = Some(count(args.word()?, 65535)?),
            // mosquitto refuses anything below 20 bytes, even 0.
            "max_packet_size" => c.max_packet_size = Some(ranged(args.word()?, 20..=INT_MAX)?),
            "message_size_limit" => c.message_size_limit = Some(count(args.word()?, MAX_PAYLOAD)?),
            "persistent_client_expiration" => {
                c.persistent_client_expiration = Some(expiration(args.word()?)?);
            }
            "sys_interval" => c.sys_interval = Some(ranged(args.word()?, 0..=65535)?),
            "max_connections" => max_connections(&mut c.max_connections, args.word()?)?,
            "max_keepalive" => c.max_keepalive = Some(ranged(args.word()?, 0..=65535)?),
            "retain_available" => c.retain_available = Some(boolean(args.word()?)?),
            _ => return self.extension(key, args),
        }
        Ok(())
    }

    fn extension(&mut self, key: &str, args: Args<'_>) -> Result<(), String> {
        let c = &mut self.conf;
        match key {
            "message_expiry" => c.message_expiry = Some(ranged(args.word()?, 0..=i64::MAX)?),
            "overflow" => c.overflow = Some(overflow(args.word()?)?),
            _ => {
                // Named first: Rust evaluates the right of `=` first, and an unknown key
                // must say so even without a value.
                let field = bound(c, key).ok_or("unknown key")?;
                *field = Some(count(args.word()?, i64::MAX)?);
            }
        }
        Ok(())
    }

    /// mosquitto 2.0 still accepts `port` with a notice; a second one replaces the
    /// first with a warning.
    fn port(&mut self, word: &str) -> Result<(), String> {
        let port = port(word)?;
        self.notes.push("deprecated: use `listener PORT [ADDRESS]`".to_owned());
        if let Some(old) = self.default_port.replace(port) {
            self.notes.push(format!("port {old} given before; only {port} is used"));
        }
        Ok(())
    }

    /// Kept as text: mosquitto resolves the name while reading the file, this
    /// parser leaves that to whoever binds the listener.
    fn bind_address(&mut self, text: &str) -> Result<(), String> {
        if self.bind_address.is_some() {
            return Err("given twice (mosquitto refuses this too)".to_owned());
        }
        self.bind_address = Some(text.to_owned());
        self.notes.push("deprecated: use `listener PORT ADDRESS`".to_owned());
        Ok(())
    }
}

/// `listener PORT [ADDRESS]`. The same port and address twice is an error here
/// rather than a bind failure (or, with `SO_REUSEPORT`, two silent listeners).
fn listener(listeners: &mut Vec<Listener>, args: Args<'_>) -> Result<(), String> {
    let mut words = args.words();
    let port = port(words.next().ok_or("missing value")?)?;
    let address = words.next().map(str::to_owned);
    if let Some(extra) = words.next() {
        return Err(format!("too many arguments: '{extra}' after the address"));
    }
    let new = Listener { port, address };
    if listeners.contains(&new) {
        return Err("the same port and address are given twice".to_owned());
    }
    listeners.push(new);
    Ok(())
}

fn port(word: &str) -> Result<u16, String> {
    match ranged(word, 0..=65535)? {
        0 => Err("port 0 (a Unix socket in mosquitto) is not supported".to_owned()),
        port => Ok(port),
    }
}

/// Paths are taken as written: relative ones are relative to the working directory,
/// as in mosquitto. A second value is an error, as in mosquitto.
fn set_path(field: &mut Option<PathBuf>, text: &str) -> Result<(), String> {
    if field.is_some() {
        return Err("given twice (mosquitto refuses this too)".to_owned());
    }
    *field = Some(PathBuf::from(text));
    Ok(())
}

/// Any negative value means unlimited, stored as -1 as mosquitto does. One value for
/// the file: mosquitto sets it per listener and pubsub cannot.
fn max_connections(field: &mut Option<i64>, word: &str) -> Result<(), String> {
    let n = number(word, i64::from(i32::MIN)..=INT_MAX)?.max(-1);
    match field.replace(n) {
        Some(old) if old != n => {
            Err(format!("{n} differs from the earlier {old}: pubsub has one limit for all listeners"))
        }
        _ => Ok(()),
    }
}

/// The field of one of pubsub's own bounds.
fn bound<'c>(c: &'c mut ConfFile, key: &str) -> Option<&'c mut Option<usize>> {
    Some(match key {
        "max_topic_levels" => &mut c.max_topic_levels,
        "max_topic_length" => &mut c.max_topic_length,
        "max_client_id_length" => &mut c.max_client_id_length,
        "max_persistent_sessions" => &mut c.max_persistent_sessions,
        "max_retained_messages" => &mut c.max_retained_messages,
        "max_retained_bytes" => &mut c.max_retained_bytes,
        _ => return None,
    })
}

fn overflow(word: &str) -> Result<Overflow, String> {
    match word {
        "drop" => Ok(Overflow::Drop),
        "block" => Ok(Overflow::Block),
        _ => Err(format!("'{word}' is not `drop` or `block`")),
    }
}

/// Compares by kind: numbers as numbers, booleans in any of mosquitto's spellings.
fn default_only(key: &str, only: &str, given: &str) -> Result<(), String> {
    let same = if let Ok(expected) = only.parse::<i64>() {
        number(given, i64::MIN..=i64::MAX)? == expected
    } else if let Ok(expected) = boolean(only) {
        boolean(given)? == expected
    } else {
        given == only
    };
    if same {
        return Ok(());
    }
    Err(format!("only `{key} {only}` (mosquitto's default) is supported; `{given}` is not implemented"))
}
