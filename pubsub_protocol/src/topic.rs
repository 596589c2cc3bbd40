//! Topic names, topic filters and the subscription trie ([MQTT-4.7]).
//!
//! Levels are separated by `/`; `+` matches exactly one level, `#` the parent level
//! and every level below; a topic starting with `$` is never matched by a filter
//! starting with a wildcard ([MQTT-4.7.2-1]).

use std::collections::HashMap;
use std::hash::Hash;

use crate::packet::QoS;

/// A topic name a PUBLISH may carry: non-empty ([MQTT-4.7.3-1]), no wildcard
/// ([MQTT-3.3.2-2]), no U+0000, at most 65,535 bytes.
pub fn valid_name(topic: &str) -> bool {
    !topic.is_empty() && topic.len() <= usize::from(u16::MAX) && !topic.contains(['+', '#', '\0'])
}

/// A topic filter a SUBSCRIBE may carry: non-empty, `#` only as the whole last level
/// ([MQTT-4.7.1-2]), `+` only as a whole level ([MQTT-4.7.1-3]).
pub fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.len() > usize::from(u16::MAX) || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    levels.iter().enumerate().all(|(i, level)| match *level {
        "#" => i == levels.len() - 1,
        "+" => true,
        l => !l.contains(['+', '#']),
    })
}

/// Whether `filter` matches `topic` (both valid).
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut t = topic.split('/');
    for f in filter.split('/') {
        match (f, t.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (f, Some(level)) if f == level => {}
            _ => return false,
        }
    }
    t.next().is_none()
}

/// Subscriptions by filter level, so a publish visits only the branches its topic can
/// match instead of every subscription.
#[derive(Debug)]
pub struct Trie<S> {
    root: Node<S>,
    len: usize,
}

#[derive(Debug)]
struct Node<S> {
    children: HashMap<String, Node<S>>,
    /// Subscribers whose filter ends here, with their QoS.
    here: HashMap<S, QoS>,
}

impl<S> Default for Node<S> {
    fn default() -> Self {
        Node { children: HashMap::new(), here: HashMap::new() }
    }
}

impl<S> Default for Trie<S> {
    fn default() -> Self {
        Trie { root: Node::default(), len: 0 }
    }
}

impl<S: Clone + Eq + Hash> Trie<S> {
    /// Subscribes `who` to `filter` (valid), replacing its QoS if already there
    /// ([MQTT-3.8.4-3]). Returns whether it is new.
    pub fn insert(&mut self, filter: &str, who: S, qos: QoS) -> bool {
        let node = filter
            .split('/')
            .fold(&mut self.root, |n, level| n.children.entry(level.to_string()).or_default());
        let new = node.here.insert(who, qos).is_none();
        self.len += usize::from(new);
        new
    }

    /// Unsubscribes `who` from `filter`; returns whether it was there.
    pub fn remove(&mut self, filter: &str, who: &S) -> bool {
        let levels: Vec<&str> = filter.split('/').collect();
        let removed = remove(&mut self.root, &levels, who);
        self.len -= usize::from(removed);
        removed
    }

    /// Subscriptions held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every subscriber whose filters match `topic`, once each, at the highest QoS of
    /// its matching filters ([MQTT-3.3.5-1]).
    pub fn subscribers(&self, topic: &str) -> HashMap<S, QoS> {
        let levels: Vec<&str> = topic.split('/').collect();
        let mut found = HashMap::new();
        let dollar = topic.starts_with('$');
        collect(&self.root, &levels, dollar, &mut found);
        found
    }
}

fn remove<S: Eq + Hash>(node: &mut Node<S>, levels: &[&str], who: &S) -> bool {
    let Some((first, rest)) = levels.split_first() else {
        return node.here.remove(who).is_some();
    };
    let Some(child) = node.children.get_mut(*first) else { return false };
    let removed = remove(child, rest, who);
    if child.here.is_empty() && child.children.is_empty() {
        node.children.remove(*first); // prune: memory follows live subscriptions
    }
    removed
}

fn collect<S: Clone + Eq + Hash>(
    node: &Node<S>,
    levels: &[&str],
    first_is_dollar: bool,
    found: &mut HashMap<S, QoS>,
) {
    let mut add = |here: &HashMap<S, QoS>| {
        for (who, qos) in here {
            let best = found.entry(who.clone()).or_insert(*qos);
            *best = (*best).max(*qos);
        }
    };
    // `#` matches the parent level too: "a/#" matches "a" ([MQTT-4.7.1-2]).
    if let Some(hash) = node.children.get("#").filter(|_| !first_is_dollar) {
        add(&hash.here);
    }
    let Some((level, rest)) = levels.split_first() else {
        add(&node.here);
        return;
    };
    if let Some(exact) = node.children.get(*level) {
        collect(exact, rest, false, found);
    }
    if let Some(plus) = node.children.get("+").filter(|_| !first_is_dollar) {
        collect(plus, rest, false, found);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (filter, topic, matches) — the standard's examples ([MQTT-4.7.1]) and edges.
    const TABLE: &[(&str, &str, bool)] = &[
        ("sport/tennis/player1/#", "sport/tennis/player1", true),
        ("sport/tennis/player1/#", "sport/tennis/player1/ranking", true),
        ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true),
        ("sport/#", "sport", true),
        ("#", "sport/tennis", true),
        ("#", "/", true),
        ("sport/tennis/+", "sport/tennis/player1", true),
        ("sport/tennis/+", "sport/tennis/player1/ranking", false),
        ("sport/+", "sport", false),
        ("sport/+", "sport/", true),
        ("+/+", "/finance", true),
        ("/+", "/finance", true),
        ("+", "/finance", false),
        ("+", "finance", true),
        ("+/tennis/#", "sport/tennis/player1", true),
        ("+/tennis/#", "sport/tennis", true),
        ("sport/+/player1", "sport/tennis/player1", true),
        ("sport/+/player1", "sport/tennis/player2", false),
        ("a/b", "a/b", true),
        ("a/b", "a/b/c", false),
        ("a/b", "a", false),
        ("a/b", "A/b", false),
        ("a//b", "a//b", true),
        ("a/+/b", "a//b", true),
        ("#", "$SYS/broker", false),
        ("+/broker", "$SYS/broker", false),
        ("$SYS/#", "$SYS/broker/uptime", true),
        ("$SYS/+/uptime", "$SYS/broker/uptime", true),
        ("$SYS", "$SYS", true),
        ("a/$b", "a/$b", true),
        ("+/$b", "a/$b", true),
        ("a/#", "a/b/c/d/e", true),
        ("a/+/+", "a/b", false),
        ("a b/+", "a b/c d", true),
    ];

    #[test]
    fn wildcard_table_by_function_and_by_trie() {
        assert!(TABLE.len() >= 30);
        for (filter, topic, want) in TABLE {
            assert!(valid_filter(filter), "{filter} should be valid");
            assert_eq!(matches(filter, topic), *want, "matches({filter:?}, {topic:?})");
            let mut trie = Trie::default();
            trie.insert(filter, 1u32, QoS::AtLeastOnce);
            assert_eq!(trie.subscribers(topic).contains_key(&1), *want, "trie: {filter:?} vs {topic:?}");
        }
    }

    #[test]
    fn invalid_names_and_filters() {
        for bad in ["", "a/+", "a/#", "#", "+", "a\0b"] {
            assert!(!valid_name(bad), "name {bad:?}");
        }
        for bad in ["", "a/#/b", "a#", "a/b#", "#/a", "a+/b", "a/+b", "++", "a\0"] {
            assert!(!valid_filter(bad), "filter {bad:?}");
        }
        for good in ["a", "/", "a/b", "$SYS/x", "a b"] {
            assert!(valid_name(good), "name {good:?}");
        }
    }

    #[test]
    fn overlapping_subscriptions_deliver_once_at_the_highest_qos_and_unsubscribe_prunes() {
        let mut trie = Trie::default();
        trie.insert("a/#", "x", QoS::AtMostOnce);
        trie.insert("a/+", "x", QoS::ExactlyOnce);
        trie.insert("a/b", "y", QoS::AtLeastOnce);
        assert!(!trie.insert("a/b", "y", QoS::AtMostOnce), "resubscribing replaces");
        let got = trie.subscribers("a/b");
        assert_eq!(got.len(), 2);
        assert_eq!(got["x"], QoS::ExactlyOnce);
        assert_eq!(got["y"], QoS::AtMostOnce);
        assert_eq!(trie.len(), 3);
        assert!(trie.remove("a/+", &"x"));
        assert!(!trie.remove("a/+", &"x"));
        assert!(trie.remove("a/#", &"x"));
        assert!(trie.remove("a/b", &"y"));
        assert!(trie.is_empty() && trie.root.children.is_empty(), "empty branches are pruned");
    }
}
