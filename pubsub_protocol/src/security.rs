//! Who may connect, publish and receive: the broker's view of mosquitto's
//! `allow_anonymous`, `password_file` and `acl_file`, held as one value that a reload
//! (SIGHUP) swaps whole.
//!
//! Logins follow mosquitto 2.0 except where issue 11 asks for the more precise code:
//! - no username, `allow_anonymous false` → CONNACK 0x05 (not authorised);
//! - a username and a password file: unknown user or wrong password → CONNACK 0x04
//!   (bad username or password; mosquitto answers 0x05 for both);
//! - a username without a password, with a password file: 0x04, even for a user whose
//!   stored password is empty (as mosquitto);
//! - a username and no password file: accepted, as mosquitto does.
//!
//! A `$7$` check costs what the file's iteration count says (0.08 ms at
//! `mosquitto_passwd`'s 101, 0.6 s at the 1,000,000 the loader accepts) on the worker
//! that runs the CONNECT; an unknown user costs the same as a known one.
//!
//! Without an ACL file every client may do everything. With one, a SUBSCRIBE to a
//! filter the client may not read is refused (SUBACK 0x80: mosquitto grants it and
//! filters later), a PUBLISH it may not write is acknowledged and dropped, and read
//! access is checked again for every message delivered, retained or taken from a
//! queue, so rules reloaded later apply to what was queued before.

use std::path::PathBuf;

use crate::auth::{Acl, AuthError, Client, PasswordFile};
use crate::packet::ConnectReturn;

/// Where the rules come from, kept for reloads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityFiles {
    /// Clients without a username may connect.
    pub allow_anonymous: bool,
    /// mosquitto's `password_file`.
    pub password_file: Option<PathBuf>,
    /// mosquitto's `acl_file`.
    pub acl_file: Option<PathBuf>,
}

/// The rules in force.
#[derive(Debug)]
pub struct Security {
    allow_anonymous: bool,
    passwords: Option<PasswordFile>,
    acl: Option<Acl>,
}

impl Default for Security {
    /// Anyone may connect and do anything: the broker without a configuration.
    fn default() -> Self {
        Security { allow_anonymous: true, passwords: None, acl: None }
    }
}

impl Security {
    /// Reads the files named in `files`; any error leaves the caller's rules as they were.
    pub fn load(files: &SecurityFiles) -> Result<Security, AuthError> {
        Ok(Security {
            allow_anonymous: files.allow_anonymous,
            passwords: files.password_file.as_deref().map(PasswordFile::load).transpose()?,
            acl: files.acl_file.as_deref().map(Acl::load).transpose()?,
        })
    }

    /// A one-line account of the rules, for the log.
    pub fn describe(&self) -> String {
        let users =
            self.passwords.as_ref().map_or("no password file".into(), |p| format!("{} users", p.len()));
        let rules = self.acl.as_ref().map_or("no ACL".into(), |a| format!("{} ACL rules", a.len()));
        let anonymous = if self.allow_anonymous { "anonymous allowed" } else { "no anonymous" };
        format!("{anonymous}, {users}, {rules}")
    }

    /// The CONNACK refusal for these credentials, if any.
    pub(crate) fn login(&self, username: Option<&str>, password: Option<&[u8]>) -> Result<(), ConnectReturn> {
        match (username, &self.passwords) {
            (None, _) if !self.allow_anonymous => Err(ConnectReturn::NotAuthorized),
            (None, _) | (Some(_), None) => Ok(()),
            // No password field is not the empty password (mosquitto refuses it too).
            (Some(user), Some(file)) if password.is_some_and(|p| file.check(user, p)) => Ok(()),
            (Some(_), Some(_)) => Err(ConnectReturn::BadCredentials),
        }
    }

    /// Whether an ACL is in force (when not, the checks below are skipped).
    pub(crate) fn has_acl(&self) -> bool {
        self.acl.is_some()
    }

    /// Write access to topic name `topic`.
    pub(crate) fn may_publish(&self, client: &Client<'_>, topic: &str) -> bool {
        self.acl.as_ref().is_none_or(|acl| acl.check_publish(client, topic))
    }

    /// Read access to every topic `filter` matches.
    pub(crate) fn may_subscribe(&self, client: &Client<'_>, filter: &str) -> bool {
        self.acl.as_ref().is_none_or(|acl| acl.check_subscribe(client, filter))
    }

    /// Read access to a message on topic name `topic`.
    pub(crate) fn may_receive(&self, client: &Client<'_>, topic: &str) -> bool {
        self.acl.as_ref().is_none_or(|acl| acl.check_deliver(client, topic))
    }
}
