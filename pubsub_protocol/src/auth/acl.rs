//! mosquitto's `acl_file`: which topics a client may publish to, receive and
//! subscribe to.
//!
//! ### Format (`man/mosquitto.conf.5.xml`, `acl_file`)
//! ```text
//! # comment
//! topic read $SYS/#           # before any `user` line: anonymous clients only
//! user alice                  # the lines below apply to username alice
//! topic readwrite alice/#
//! topic deny alice/secret
//! topic sensors/+             # no access word: readwrite
//! pattern write sensor/%u/data    # every client; %c client id, %u username
//! ```
//! `topic` and `pattern` take an optional access word (`read`, `write`,
//! `readwrite`, `deny`) and then a topic filter, which may contain spaces when the
//! access word is given. `pattern` lines apply to every client wherever they stand,
//! even below a `user` line. A file with no rule for a client denies it everything.
//!
//! ### How a request is decided
//! 1. `deny` rules first: the client's own section (its `user` section, or the
//!    anonymous section when it gave no username), then `deny` patterns. A topic
//!    matched by one is refused.
//! 2. Then the grants with the right access, own section first, then patterns.
//! 3. Nothing granted: refused.
//!
//! A topic starting with `$` (such as `$SYS/…`) is matched only by rules whose
//! filter starts with `$`.
//!
//! A client whose id or username contains `+` or `#` gets nothing from `pattern`
//! grants (substituted into a filter, those would act as wildcards and reach other
//! clients' topics). A `pattern deny` rule that would substitute such a value cannot
//! be evaluated, so it refuses every request of that client: we fail closed.
//!
//! ### Subscriptions
//! [`Acl::check_subscribe`] decides whether a SUBSCRIBE filter may be granted. A
//! grant must *cover* the filter: every topic the filter can match must be readable
//! under that one rule, as mosquitto 2.1's `mosquitto_sub_matches_acl` decides for
//! its dynamic-security plugin (`+` in the subscription is covered only by `+` or
//! `#` in the rule, `#` only by `#`). A `deny` rule refuses the subscription when
//! it *covers* it too (as that plugin does): `topic deny test/nosubscribe` refuses
//! exactly that filter and leaves `+/+` or `#` grantable, and the messages on the
//! denied topic are then filtered per delivered message ([`Acl::check_deliver`]).
//! (Refusing every filter a deny rule merely overlaps would refuse `#` as soon as any
//! topic is denied: the Paho interoperability suite cannot pass that way.)
//!
//! ### Followed from mosquitto 2.0 (`src/security_default.c`)
//! - `aclfile__parse`: trailing whitespace stripped; keywords and access words are
//!   case-sensitive; `topic` with one word takes it as the filter with `readwrite`;
//!   an unknown keyword, an unknown access word or an invalid filter
//!   (`mosquitto_sub_topic_check`) fails the whole file; `user` sections with the
//!   same name add up; a pattern with neither `%c` nor `%u` loads with a warning.
//! - `mosquitto_acl_check_default`: `%c`/`%u` are substituted as text wherever they
//!   appear, in one left-to-right pass (so `dev-%c` works, and an id with `/` spans
//!   levels; the man page says a placeholder must be a whole level, which only
//!   mosquitto 2.1 enforces); a pattern with `%u` does not apply to a client
//!   without a username; clients with `+`/`#` in id or username get no pattern
//!   access; `$` topics only match `$` rules; no match means denied.
//!
//! ### Where we deliberately differ
//! - **Deny before any grant.** mosquitto checks the client's own section (deny,
//!   then grants) before the patterns, so a `topic` grant there beats a
//!   `pattern deny`. We check every `deny` first, as the man page puts it ("Any
//!   deny topics are handled before topics that grant read/write access"): a file
//!   can only lose access by this, never gain it.
//! - **Subscriptions are checked.** mosquitto 2.0's built-in ACL grants every
//!   SUBSCRIBE (a `FIXME` in `mosquitto_acl_check_default`) and filters only at
//!   delivery; we refuse what the rules do not cover, see above. A filter covered
//!   only by several rules together (`a/x` and `a/y` for `a/+`) is refused.
//! - **Fail-closed pattern deny** for `+`/`#` ids and usernames, see above.
//! - **`topic read` alone is an error** (missing filter). mosquitto takes the access
//!   word for the filter and grants readwrite on a topic named `read`.
//! - **Tabs separate words** and a comment may be indented; mosquitto splits on
//!   spaces only and calls an indented `#` line an invalid line.

use std::collections::HashMap;
use std::path::Path;

use super::filter;
use super::{numbered_lines, read_restricted, AuthError, Malformed};

/// Who is asking: what the ACL knows of a connected client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client<'a> {
    /// The client identifier (substituted for `%c`).
    pub id: &'a str,
    /// The username from CONNECT (substituted for `%u`); `None` for an anonymous
    /// client, which gets the rules above the first `user` line.
    pub username: Option<&'a str>,
}

/// The rules of a mosquitto `acl_file`.
#[derive(Debug, Default)]
pub struct Acl {
    /// Rules above the first `user` line.
    anonymous: Rules<String>,
    users: HashMap<String, Rules<String>>,
    patterns: Rules<Pattern>,
    /// How many `topic` and `pattern` lines were read.
    len: usize,
}

impl Acl {
    /// Reads the ACL file at `path`. Any malformed line fails the whole load with
    /// [`AuthError::Syntax`] naming the line, so a reload can keep the old rules.
    pub fn load(path: &Path) -> Result<Acl, AuthError> {
        Acl::parse(path, &read_restricted(path)?)
    }

    /// Whether `client` may publish to topic name `topic` (write access).
    pub fn check_publish(&self, client: &Client<'_>, topic: &str) -> bool {
        crate::topic::valid_name(topic) && self.decide(client, Need::Write, Relation::Topic, topic)
    }

    /// Whether `client` may receive a message on topic name `topic` (read access),
    /// for each message delivered, retained or queued.
    pub fn check_deliver(&self, client: &Client<'_>, topic: &str) -> bool {
        crate::topic::valid_name(topic) && self.decide(client, Need::Read, Relation::Topic, topic)
    }

    /// Whether `client` may be granted a subscription to `filter`: one rule with read
    /// access covers all of it, and no `deny` rule covers it.
    pub fn check_subscribe(&self, client: &Client<'_>, filter: &str) -> bool {
        filter::check(filter).is_ok() && self.decide(client, Need::Read, Relation::Subscription, filter)
    }

    /// How many `topic` and `pattern` rules the file holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the file holds no rule (every request is refused).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn decide(&self, client: &Client<'_>, need: Need, rel: Relation, asked: &str) -> bool {
        let own = match client.username {
            None => Some(&self.anonymous),
            Some(name) => self.users.get(name),
        };
        if own.is_some_and(|rules| rules.deny.iter().any(|f| rel.denies(f, asked))) {
            return false;
        }
        if self.patterns.deny.iter().any(|p| p.denies(client, rel, asked)) {
            return false;
        }
        if own.is_some_and(|rules| rules.grants(need).iter().any(|f| rel.allows(f, asked))) {
            return true;
        }
        if dangerous(client.id) || client.username.is_some_and(dangerous) {
            log::debug!("client {:?}: no pattern access for an id or username with + or #", client.id);
            return false;
        }
        self.patterns.grants(need).iter().any(|p| p.expand(client).is_some_and(|f| rel.allows(&f, asked)))
    }

    fn parse(path: &Path, bytes: &[u8]) -> Result<Acl, AuthError> {
        let mut acl = Acl::default();
        let mut user: Option<String> = None;
        for (line, raw) in numbered_lines(bytes) {
            let syntax = |reason| AuthError::Syntax { path: path.to_owned(), line, reason };
            let text = std::str::from_utf8(raw).map_err(|_| syntax(Malformed::NotUtf8))?;
            match parse_line(text).map_err(syntax)? {
                Line::Blank => {}
                Line::User(name) => user = Some(name.to_owned()),
                Line::Topic(access, f) => {
                    acl.len += 1;
                    acl.section(user.as_deref()).add(access, f.to_owned());
                }
                Line::Pattern(access, f) => {
                    acl.len += 1;
                    let pattern = Pattern::new(f);
                    if !pattern.client && !pattern.user {
                        log::warn!("{}:{line}: pattern {f:?} has neither %c nor %u", path.display());
                    }
                    acl.patterns.add(access, pattern);
                }
            }
        }
        Ok(acl)
    }

    fn section(&mut self, user: Option<&str>) -> &mut Rules<String> {
        match user {
            None => &mut self.anonymous,
            Some(name) => self.users.entry(name.to_owned()).or_default(),
        }
    }
}

/// Whether substituting `value` into a filter would add wildcards.
fn dangerous(value: &str) -> bool {
    value.contains(['+', '#'])
}

/// One section's rules, split by what they grant; a `readwrite` rule is in both
/// `read` and `write`.
#[derive(Debug)]
struct Rules<F> {
    deny: Vec<F>,
    read: Vec<F>,
    write: Vec<F>,
}

impl<F> Default for Rules<F> {
    fn default() -> Self {
        Rules { deny: Vec::new(), read: Vec::new(), write: Vec::new() }
    }
}

impl<F: Clone> Rules<F> {
    fn add(&mut self, access: Access, filter: F) {
        match access {
            Access::Deny => self.deny.push(filter),
            Access::Read => self.read.push(filter),
            Access::Write => self.write.push(filter),
            Access::ReadWrite => {
                self.read.push(filter.clone());
                self.write.push(filter);
            }
        }
    }

    fn grants(&self, need: Need) -> &[F] {
        match need {
            Need::Read => &self.read,
            Need::Write => &self.write,
        }
    }
}

/// The access word of a `topic` or `pattern` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
    ReadWrite,
    Deny,
}

impl Access {
    fn parse(word: &str) -> Option<Access> {
        match word {
            "read" => Some(Access::Read),
            "write" => Some(Access::Write),
            "readwrite" => Some(Access::ReadWrite),
            "deny" => Some(Access::Deny),
            _ => None,
        }
    }
}

/// What a request needs of a grant.
#[derive(Debug, Clone, Copy)]
enum Need {
    Read,
    Write,
}

/// What the client named: a topic (publish, delivery) or a filter (subscribe).
#[derive(Debug, Clone, Copy)]
enum Relation {
    Topic,
    Subscription,
}

impl Relation {
    fn allows(self, rule: &str, asked: &str) -> bool {
        match self {
            Relation::Topic => crate::topic::matches(rule, asked),
            Relation::Subscription => filter::covers(rule, asked),
        }
    }

    fn denies(self, rule: &str, asked: &str) -> bool {
        match self {
            Relation::Topic => crate::topic::matches(rule, asked),
            Relation::Subscription => filter::covers(rule, asked),
        }
    }
}

/// A `pattern` filter with the placeholders it uses.
#[derive(Debug, Clone)]
struct Pattern {
    template: String,
    /// Uses `%c`.
    client: bool,
    /// Uses `%u`.
    user: bool,
}

impl Pattern {
    fn new(template: &str) -> Pattern {
        let (mut client, mut user) = (false, false);
        for token in tokens(template) {
            client |= token == Token::Client;
            user |= token == Token::User;
        }
        Pattern { template: template.to_owned(), client, user }
    }

    /// The filter for `client`; `None` when it uses `%u` and there is no username.
    fn expand(&self, client: &Client<'_>) -> Option<String> {
        let mut out = String::with_capacity(self.template.len() + client.id.len());
        for token in tokens(&self.template) {
            match token {
                Token::Text(text) => out.push_str(text),
                Token::Client => out.push_str(client.id),
                Token::User => out.push_str(client.username?),
            }
        }
        Some(out)
    }

    /// Whether this `deny` pattern refuses the request. One that would substitute a
    /// value containing a wildcard cannot be judged, so it refuses (fail closed).
    fn denies(&self, client: &Client<'_>, rel: Relation, asked: &str) -> bool {
        let unsafe_id = self.client && dangerous(client.id);
        let unsafe_user = self.user && client.username.is_some_and(dangerous);
        unsafe_id || unsafe_user || self.expand(client).is_some_and(|f| rel.denies(&f, asked))
    }
}

/// A piece of a pattern: literal text or a placeholder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    Text(&'a str),
    Client,
    User,
}

/// Splits a pattern into text and placeholders in one left-to-right pass, so a
/// substituted value is never scanned again (an id of `%u` stays `%u`), and `%%c`
/// is `%` then `%c`, as in mosquitto.
fn tokens(template: &str) -> impl Iterator<Item = Token<'_>> {
    let mut rest = template;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let token = match rest.as_bytes() {
            [b'%', b'c', ..] => Token::Client,
            [b'%', b'u', ..] => Token::User,
            _ => {
                // Text up to the next `%` after the first character.
                let next = rest.char_indices().skip(1).find(|&(_, c)| c == '%');
                let end = next.map_or(rest.len(), |(i, _)| i);
                let (text, tail) = rest.split_at(end);
                rest = tail;
                return Some(Token::Text(text));
            }
        };
        rest = &rest[2..];
        Some(token)
    })
}

/// One line of the file.
#[derive(Debug, PartialEq, Eq)]
enum Line<'a> {
    Blank,
    User(&'a str),
    Topic(Access, &'a str),
    Pattern(Access, &'a str),
}

fn parse_line(text: &str) -> Result<Line<'_>, Malformed> {
    let text = text.trim_ascii();
    if text.is_empty() || text.starts_with('#') {
        return Ok(Line::Blank);
    }
    match split_word(text) {
        ("user", "") => Err(Malformed::MissingUsername),
        ("user", name) => Ok(Line::User(name)),
        ("topic", rest) => parse_rule(rest).map(|(access, f)| Line::Topic(access, f)),
        ("pattern", rest) => parse_rule(rest).map(|(access, f)| Line::Pattern(access, f)),
        (word, _) => Err(Malformed::UnknownKeyword(word.to_owned())),
    }
}

/// The first word of `text` (up to a space or tab) and the rest, trimmed.
fn split_word(text: &str) -> (&str, &str) {
    match text.find([' ', '\t']) {
        Some(i) => (&text[..i], text[i..].trim_ascii_start()),
        None => (text, ""),
    }
}

/// `[access] filter` after `topic` or `pattern`.
fn parse_rule(rest: &str) -> Result<(Access, &str), Malformed> {
    let (first, tail) = split_word(rest);
    let (access, filter) = match (Access::parse(first), tail) {
        _ if first.is_empty() => return Err(Malformed::MissingFilter),
        (Some(_), "") => return Err(Malformed::MissingFilter),
        (None, "") => (Access::ReadWrite, first),
        (Some(access), filter) => (access, filter),
        (None, _) => return Err(Malformed::BadAccess(first.to_owned())),
    };
    filter::check(filter).map_err(Malformed::InvalidFilter)?;
    Ok((access, filter))
}

#[cfg(test)]
#[path = "tests/acl.rs"]
mod tests;
