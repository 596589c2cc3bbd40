//! Relations between two topic filters that the ACL needs beyond
//! [`crate::topic::matches`] (a filter against a topic name).
//!
//! All walks iterate level by level; none recurses, so a filter of many levels
//! costs time in proportion to its length and no stack.

/// Whether `filter` is a topic filter an ACL rule may hold; `Err` says why not.
/// mosquitto's `mosquitto_sub_topic_check` applies the same rules: wildcards only as
/// whole levels, `#` last, at most 65,535 bytes and 200 levels.
pub(crate) fn check(filter: &str) -> Result<(), String> {
    if !crate::topic::valid_filter(filter) {
        return Err(format!("{filter:?}: `+` and `#` must be whole levels, `#` the last"));
    }
    crate::topic::Bounds::default().check(filter).map_err(|why| format!("{filter:?}: {why}"))
}

/// Whether the first level of a topic matched by `filter` may start with `$`:
/// only a filter whose first level is literal can match a `$` topic
/// ([MQTT-4.7.2-1]).
fn dollar(filter: &str) -> bool {
    filter.starts_with('$')
}

/// Whether every topic that subscription `sub` can match is matched by `rule`.
///
/// This is mosquitto's `sub_matches_acl` (2.1's `libcommon/topic_common.c`, used by
/// the dynamic-security plugin for SUBSCRIBE): a `+` in `sub` is covered only by `+`
/// or `#` in `rule`, a `#` in `sub` only by `#`, and a `$` filter only by a rule
/// starting with `$`.
pub(crate) fn covers(rule: &str, sub: &str) -> bool {
    if dollar(rule) != dollar(sub) {
        return false;
    }
    let mut subs = sub.split('/');
    for r in rule.split('/') {
        match (r, subs.next()) {
            ("#", _) => return true,
            ("+", Some(s)) if s != "#" => {}
            (r, Some(s)) if r == s => {}
            _ => return false,
        }
    }
    subs.next().is_none()
}
