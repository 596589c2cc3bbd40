//! mosquitto's `password_file`, as `mosquitto_passwd` writes it.
//!
//! ### Format
//! One user a line, `username:hash`, where the hash is one of
//! - `$7$<iterations>$<salt>$<hash>`: PBKDF2-HMAC-SHA512 of the password with the
//!   salt, `iterations` rounds, 64 bytes out (`mosquitto_passwd`'s default, 101
//!   rounds; `-I` changes the count);
//! - `$6$<salt>$<hash>`: one SHA-512 over the password bytes then the salt bytes
//!   (`mosquitto_passwd -H sha512`). This is *not* crypt(3)'s sha512-crypt.
//!
//! The salt is 12 bytes and the hash 64, both in standard base64 with padding
//! (`src/password_mosq.h`: `SALT_LEN`, `PW_DEFAULT_ITERATIONS`;
//! `mosquitto_passwd.c`: `output_new_password`).
//!
//! ### What mosquitto does, and we do too (`src/security_default.c`)
//! - `pwfile__parse`: a line starting with `#` and a line without `:` are skipped
//!   silently (so are blank lines); the username and the hash are trimmed of
//!   whitespace; a username over 65,535 bytes or a line with nothing after `:` is
//!   dropped with a warning.
//! - `unpwd__decode_passwords`: an unknown hash id (anything but `6` and `7`, which
//!   includes a plain-text password), iterations below 1, a salt that does not
//!   decode to 12 bytes or a hash that does not decode to 64 drop that entry with a
//!   message naming the user; the other entries load.
//! - `mosquitto_unpwd_check_default`: an unknown username is refused; the hashes are
//!   compared in constant time.
//!
//! ### Where we deliberately differ
//! - **Iteration cap.** An entry asking for more than [`MAX_ITERATIONS`] rounds is
//!   dropped at load with a warning. mosquitto has no cap, but every CONNECT naming
//!   that user costs the broker that many HMAC-SHA512 rounds whatever password the
//!   client sends, so one edited line would let anybody who knows the username burn
//!   a core. OWASP's 2023 advice for PBKDF2-HMAC-SHA512 is 210,000 rounds; the cap
//!   leaves room above it.
//! - **Unknown usernames cost a hash too.** mosquitto answers an unknown username at
//!   once, which tells a client timing the answer which usernames exist. We run the
//!   same PBKDF2 (with the file's most common iteration count) against a dummy entry
//!   first, as OpenSSH and Django do.
//! - **Stricter layout.** mosquitto reads fields with `strtok` and `atoi`, so it
//!   accepts empty fields (`$7$$101$…`), trailing junk after the hash or after a
//!   second `:`, unpadded base64 and iteration counts like `101abc`. We drop such
//!   entries with a warning; `mosquitto_passwd` never writes them.
//! - **Binary passwords.** mosquitto hashes the password up to its first zero byte
//!   (`strlen`); we hash every byte of the MQTT password field. Only a password with
//!   a zero byte in it is judged differently, and `mosquitto_passwd` cannot make one.
//! - **Duplicate usernames.** mosquitto keeps both in a hash table and which one a
//!   lookup finds is not specified; we keep the later line and warn.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

use super::{numbered_lines, read_restricted, AuthError};

/// Most PBKDF2 rounds an entry may ask for; an entry above it is dropped at load.
/// At this count one check costs about 0.6 s of one core.
pub const MAX_ITERATIONS: u32 = 1_000_000;

/// PBKDF2 rounds `mosquitto_passwd` uses unless told otherwise (`-I`).
pub const DEFAULT_ITERATIONS: u32 = 101;

const SALT_LEN: usize = 12;
const HASH_LEN: usize = 64;
const MAX_USERNAME: usize = 65_535;

/// The users of a mosquitto `password_file` and their password hashes.
///
/// Loading never fails on a bad entry (it is dropped with a warning); only an
/// unreadable file is an error. Checking a password costs one PBKDF2 of the entry's
/// rounds, for unknown users too: measured on the project's 2-core machine, 0.08 ms
/// at the default 101 rounds, 115 ms at 210,000, 0.6 s at [`MAX_ITERATIONS`]. The
/// caller should not run it on an event-loop thread at high counts.
pub struct PasswordFile {
    users: HashMap<String, Entry>,
    /// Verified against when the username is unknown, so that the answer takes as
    /// long as for a known user.
    dummy: Entry,
}

impl fmt::Debug for PasswordFile {
    // Hashes stay out of logs: a leaked hash can be attacked offline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordFile").field("users", &self.users.len()).finish_non_exhaustive()
    }
}

impl PasswordFile {
    /// Reads the password file at `path`. Bad entries are dropped, each with a
    /// `warn!` naming the file, the line and (when it is readable) the user; see the
    /// module docs for which entries are bad.
    pub fn load(path: &Path) -> Result<PasswordFile, AuthError> {
        Ok(PasswordFile::parse(path, &read_restricted(path)?))
    }

    /// Whether `username` may log in with `password` (the MQTT password field, any
    /// bytes). The hashes are compared in constant time.
    ///
    /// A CONNECT that names a user but carries no password field has nothing to
    /// check: mosquitto refuses it, and so should the caller (an empty slice is the
    /// empty password, which `mosquitto_passwd` can store).
    pub fn check(&self, username: &str, password: &[u8]) -> bool {
        match self.users.get(username) {
            Some(entry) => entry.verify(password),
            None => {
                std::hint::black_box(self.dummy.verify(password));
                false
            }
        }
    }

    /// Whether the file has a usable entry for `username`.
    pub fn contains(&self, username: &str) -> bool {
        self.users.contains_key(username)
    }

    /// How many users have a usable entry.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether no user has a usable entry (everyone with a username is refused).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    fn parse(path: &Path, bytes: &[u8]) -> PasswordFile {
        let mut users = HashMap::new();
        for (line, text) in numbered_lines(bytes) {
            match parse_line(text) {
                None => {}
                Some(Err(why)) => log::warn!("{}:{line}: entry dropped: {why}", path.display()),
                Some(Ok((user, entry))) => {
                    let replaced = users.insert(user.to_owned(), entry);
                    if replaced.is_some() {
                        log::warn!("{}:{line}: {user:?} listed again; this line wins", path.display());
                    }
                }
            }
        }
        let dummy = Entry::dummy(common_iterations(users.values()));
        PasswordFile { users, dummy }
    }
}

/// The iteration count most entries use, so that an unknown user costs what a
/// typical known one does.
fn common_iterations<'a>(entries: impl Iterator<Item = &'a Entry>) -> u32 {
    let mut counts: HashMap<u32, usize> = HashMap::new();
    for entry in entries {
        if let Scheme::Pbkdf2(n) = entry.scheme {
            *counts.entry(n).or_default() += 1;
        }
    }
    // Ties go to the smaller count, so the result does not depend on map order.
    let best = counts.into_iter().max_by_key(|&(n, count)| (count, std::cmp::Reverse(n)));
    best.map_or(DEFAULT_ITERATIONS, |(n, _)| n)
}

/// How a stored hash was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    /// `$6$`: SHA-512(password ‖ salt).
    Sha512,
    /// `$7$`: PBKDF2-HMAC-SHA512 with this many rounds.
    Pbkdf2(u32),
}

/// One user's stored hash.
#[derive(Clone, PartialEq, Eq)]
struct Entry {
    scheme: Scheme,
    salt: [u8; SALT_LEN],
    hash: [u8; HASH_LEN],
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry").field("scheme", &self.scheme).finish_non_exhaustive()
    }
}

impl Entry {
    fn dummy(iterations: u32) -> Entry {
        Entry { scheme: Scheme::Pbkdf2(iterations), salt: [0; SALT_LEN], hash: [0; HASH_LEN] }
    }

    fn digest(&self, password: &[u8]) -> [u8; HASH_LEN] {
        match self.scheme {
            Scheme::Sha512 => Sha512::new().chain_update(password).chain_update(self.salt).finalize().into(),
            Scheme::Pbkdf2(rounds) => {
                let mut out = [0; HASH_LEN];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, &self.salt, rounds, &mut out);
                out
            }
        }
    }

    fn verify(&self, password: &[u8]) -> bool {
        self.digest(password).ct_eq(&self.hash).into()
    }
}

/// Why an entry of the password file was dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Dropped {
    NotUtf8,
    EmptyUsername,
    UsernameTooLong,
    NoHash(String),
    ExtraColon(String),
    NotHashed(String),
    UnknownScheme(String, String),
    WrongFieldCount(String),
    BadIterations(String),
    TooManyIterations(String),
    BadSalt(String),
    BadHash(String),
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dropped::NotUtf8 => f.write_str("line is not valid UTF-8"),
            Dropped::EmptyUsername => f.write_str("empty username"),
            Dropped::UsernameTooLong => write!(f, "username longer than {MAX_USERNAME} bytes"),
            Dropped::NoHash(u) => write!(f, "{u:?}: no password hash after ':'"),
            Dropped::ExtraColon(u) => write!(f, "{u:?}: a second ':' (usernames cannot hold one)"),
            Dropped::NotHashed(u) => {
                write!(f, "{u:?}: not a mosquitto_passwd hash (plain text? run mosquitto_passwd -U)")
            }
            Dropped::UnknownScheme(u, id) => {
                write!(f, "{u:?}: unknown hash type ${id}$ (expected $6$ or $7$)")
            }
            Dropped::WrongFieldCount(u) => write!(f, "{u:?}: hash does not have the fields of $6$ or $7$"),
            Dropped::BadIterations(u) => write!(f, "{u:?}: iteration count is not a number of at least 1"),
            Dropped::TooManyIterations(u) => write!(f, "{u:?}: more than {MAX_ITERATIONS} iterations"),
            Dropped::BadSalt(u) => write!(f, "{u:?}: salt is not {SALT_LEN} bytes of base64"),
            Dropped::BadHash(u) => write!(f, "{u:?}: hash is not {HASH_LEN} bytes of base64"),
        }
    }
}

/// One line of the file: `None` for a line mosquitto skips silently, else the
/// user's entry or why it was dropped.
fn parse_line(line: &[u8]) -> Option<Result<(&str, Entry), Dropped>> {
    if line.starts_with(b"#") || !line.contains(&b':') {
        return None;
    }
    let Ok(text) = std::str::from_utf8(line) else { return Some(Err(Dropped::NotUtf8)) };
    let (user, hash) = text.split_once(':')?;
    let (user, hash) = (user.trim_ascii(), hash.trim_ascii());
    Some(check_username(user).and_then(|()| parse_hash(user, hash)).map(|entry| (user, entry)))
}

fn check_username(user: &str) -> Result<(), Dropped> {
    match user.len() {
        0 => Err(Dropped::EmptyUsername),
        n if n > MAX_USERNAME => Err(Dropped::UsernameTooLong),
        _ => Ok(()),
    }
}

/// Decodes `$6$salt$hash` or `$7$iterations$salt$hash` for `user`.
fn parse_hash(user: &str, text: &str) -> Result<Entry, Dropped> {
    let user = || user.to_owned();
    if text.is_empty() {
        return Err(Dropped::NoHash(user()));
    }
    if text.contains(':') {
        return Err(Dropped::ExtraColon(user()));
    }
    let Some(fields) = text.strip_prefix('$') else { return Err(Dropped::NotHashed(user())) };
    let fields: Vec<&str> = fields.split('$').collect();
    let (scheme, salt, hash) = match fields[..] {
        ["6", salt, hash] => (Scheme::Sha512, salt, hash),
        ["7", rounds, salt, hash] => {
            (Scheme::Pbkdf2(parse_rounds(rounds).map_err(|f| f(user()))?), salt, hash)
        }
        ["6" | "7", ..] => return Err(Dropped::WrongFieldCount(user())),
        [id, ..] => return Err(Dropped::UnknownScheme(user(), id.to_owned())),
        [] => unreachable!("split yields at least one field"),
    };
    let salt = decode::<SALT_LEN>(salt).ok_or_else(|| Dropped::BadSalt(user()))?;
    let hash = decode::<HASH_LEN>(hash).ok_or_else(|| Dropped::BadHash(user()))?;
    Ok(Entry { scheme, salt, hash })
}

/// The iteration count of a `$7$` entry: decimal digits only, 1 to
/// [`MAX_ITERATIONS`].
fn parse_rounds(text: &str) -> Result<u32, fn(String) -> Dropped> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Dropped::BadIterations);
    }
    // All digits, so parsing fails only on a number too big for u32: above the cap.
    match text.parse::<u32>() {
        Ok(0) => Err(Dropped::BadIterations),
        Ok(n) if n <= MAX_ITERATIONS => Ok(n),
        _ => Err(Dropped::TooManyIterations),
    }
}

/// Standard padded base64 that decodes to exactly `N` bytes.
fn decode<const N: usize>(text: &str) -> Option<[u8; N]> {
    STANDARD.decode(text).ok()?.try_into().ok()
}

#[cfg(test)]
#[path = "tests/password.rs"]
mod tests;
