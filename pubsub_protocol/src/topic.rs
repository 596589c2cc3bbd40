//! Topic names, topic filters and the subscription trie ([MQTT-4.7]).
//!
//! Levels are separated by `/`; `+` matches exactly one level, `#` the parent level
//! and every level below; a topic starting with `$` is never matched by a filter
//! starting with a wildcard ([MQTT-4.7.2-1]).
//!
//! A subscription `$share/GROUP/FILTER` is shared: each message matching `FILTER`
//! goes to one member of `GROUP` (mosquitto accepts them from 3.1.1 clients too;
//! MQTT 5 [MQTT-4.8.2]).
//!
//! Nothing here recurses: a client chooses how many levels its topics have, so every
//! walk of the trie (insert, match, remove, drop) keeps its own stack on the heap,
//! and [`Bounds`] refuses topics deeper or longer than the broker allows.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::packet::QoS;

/// A topic name a PUBLISH may carry: non-empty ([MQTT-4.7.3-1]), no wildcard
/// ([MQTT-3.3.2-2]), no U+0000, at most 65,535 bytes.
pub fn valid_name(topic: &str) -> bool {
    !topic.is_empty() && topic.len() <= usize::from(u16::MAX) && !topic.contains(['+', '#', '\0'])
}

/// A topic filter a SUBSCRIBE may carry: non-empty, `#` only as the whole last level
/// ([MQTT-4.7.1-2]), `+` only as a whole level ([MQTT-4.7.1-3]); a shared one
/// (`$share/GROUP/FILTER`) with a non-empty group name free of `+` and `#` and a
/// valid filter after it ([MQTT-4.8.2-1], -2).
pub fn valid_filter(filter: &str) -> bool {
    if filter.starts_with("$share/") {
        return match shared(filter) {
            Some((group, rest)) => {
                !group.is_empty() && !group.contains(['+', '#']) && valid_plain_filter(rest)
            }
            None => false,
        };
    }
    valid_plain_filter(filter)
}

/// The group and the filter of a shared subscription (`$share/GROUP/FILTER`); `None`
/// for any other filter.
pub fn shared(filter: &str) -> Option<(&str, &str)> {
    filter.strip_prefix("$share/")?.split_once('/')
}

fn valid_plain_filter(filter: &str) -> bool {
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

/// How deep and how long a topic name or filter may be. mosquitto refuses topics of
/// more than 200 levels (`TOPIC_HIERARCHY_LIMIT`); the standard caps the length at
/// 65,535 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Most levels (a topic without `/` has one).
    pub max_levels: usize,
    /// Most bytes.
    pub max_length: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds { max_levels: 200, max_length: usize::from(u16::MAX) }
    }
}

impl Bounds {
    /// Whether `topic` (a name or a filter) is within both bounds; `Err` says which
    /// one it exceeds.
    pub fn check(&self, topic: &str) -> Result<(), String> {
        if topic.len() > self.max_length {
            return Err(format!("{} bytes, more than {}", topic.len(), self.max_length));
        }
        let levels = topic.bytes().filter(|b| *b == b'/').count() + 1;
        if levels > self.max_levels {
            return Err(format!("{levels} levels, more than {}", self.max_levels));
        }
        Ok(())
    }
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
    /// Shared subscriptions whose filter ends here, by group name. Boxed: one word
    /// for the many nodes without any.
    #[allow(clippy::box_collection)]
    shared: Option<Box<HashMap<Box<str>, Group<S>>>>,
}

/// The members of one shared subscription group, in the order they joined, and
/// whose turn it is.
#[derive(Debug)]
struct Group<S> {
    members: Vec<(S, QoS)>,
    /// Counts messages, so each starts the search one member further (round-robin);
    /// atomic because publishes read the trie concurrently, shared with the
    /// [`Shared`] copies they take.
    turn: Arc<AtomicUsize>,
}

impl<S> Default for Node<S> {
    fn default() -> Self {
        Node { children: HashMap::new(), here: HashMap::new(), shared: None }
    }
}

impl<S: Eq> Node<S> {
    /// Subscriptions ending here, plain and shared.
    fn entries(&self) -> usize {
        self.here.len() + self.shared.iter().flat_map(|g| g.values()).map(|g| g.members.len()).sum::<usize>()
    }

    fn holds(&self, group: Option<&str>, who: &S) -> bool
    where
        S: Hash,
    {
        match group {
            None => self.here.contains_key(who),
            Some(name) => self
                .shared
                .as_ref()
                .and_then(|groups| groups.get(name))
                .is_some_and(|g| g.members.iter().any(|(w, _)| w == who)),
        }
    }

    fn forget(&mut self, group: Option<&str>, who: &S)
    where
        S: Hash,
    {
        let Some(name) = group else {
            self.here.remove(who);
            return;
        };
        let Some(groups) = self.shared.as_mut() else { return };
        if let Some(g) = groups.get_mut(name) {
            g.members.retain(|(w, _)| w != who);
            if g.members.is_empty() {
                groups.remove(name);
            }
        }
        if groups.is_empty() {
            self.shared = None;
        }
    }
}

/// What a publish reaches: plain subscribers, each once, and the matching shared
/// groups, each of which gives every message to one member.
#[derive(Debug)]
pub struct Targets<S> {
    /// Subscribers with their highest QoS among their matching plain filters.
    pub plain: Vec<(S, QoS)>,
    /// Each matching group, as it was when the publish arrived.
    pub groups: Vec<Shared<S>>,
}

/// A copy of one shared group's members, with the group's own turn counter.
#[derive(Debug, Clone)]
pub struct Shared<S> {
    members: Vec<(S, QoS)>,
    turn: Arc<AtomicUsize>,
}

impl<S> Shared<S> {
    /// The members in the order to try for the next message: from the one whose turn
    /// it is (each call moves the turn on by one), round the group.
    pub fn next_turn(&self) -> impl Iterator<Item = &(S, QoS)> {
        let start = self.turn.fetch_add(1, Ordering::Relaxed) % self.members.len().max(1);
        self.members[start..].iter().chain(&self.members[..start])
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
        let (group, plain) = split(filter);
        let node = plain
            .split('/')
            .fold(&mut self.root, |n, level| n.children.entry(level.to_string()).or_default());
        let new = match group {
            None => node.here.insert(who, qos).is_none(),
            Some(name) => {
                let groups = node.shared.get_or_insert_with(Box::default);
                let g = groups
                    .entry(name.into())
                    .or_insert_with(|| Group { members: Vec::new(), turn: Arc::default() });
                match g.members.iter_mut().find(|(w, _)| *w == who) {
                    Some(member) => {
                        member.1 = qos;
                        false
                    }
                    None => {
                        g.members.push((who, qos));
                        true
                    }
                }
            }
        };
        self.len += usize::from(new);
        new
    }

    /// Unsubscribes `who` from `filter`; returns whether it was there. Branches left
    /// empty are pruned, so memory follows live subscriptions.
    pub fn remove(&mut self, filter: &str, who: &S) -> bool {
        let (group, plain) = split(filter);
        let levels: Vec<&str> = plain.split('/').collect();
        let Some(cut) = self.prune_point(&levels, group, who) else { return false };
        let mut node = &mut self.root;
        for level in &levels[..cut] {
            node = node.children.get_mut(*level).expect("prune_point walked this path");
        }
        match levels.get(cut) {
            // The whole branch below `cut` holds nothing but `who`: drop it at once.
            Some(level) => drop(node.children.remove(*level)),
            None => node.forget(group, who),
        }
        self.len -= 1;
        true
    }

    /// Where removing `who` from the node at `levels` cuts the trie: the depth of the
    /// node that loses a child (the whole chain below it held only `who`), or
    /// `levels.len()` if only the subscription itself goes. `None`: not subscribed.
    fn prune_point(&self, levels: &[&str], group: Option<&str>, who: &S) -> Option<usize> {
        let mut node = &self.root;
        // The shallowest depth from which every node down to the end would be empty.
        let mut cut = 0;
        for (depth, level) in levels.iter().enumerate() {
            if node.entries() > 0 || node.children.len() > 1 {
                cut = depth; // this node stays: it has other business
            }
            node = node.children.get(*level)?;
        }
        if !node.holds(group, who) {
            return None;
        }
        let leaf_empties = node.entries() == 1 && node.children.is_empty();
        Some(if leaf_empties { cut } else { levels.len() })
    }
    /// Subscriptions held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every plain subscriber whose filters match `topic`, once each, at the highest
    /// QoS of its matching filters ([MQTT-3.3.5-1]), and every matching shared group.
    pub fn subscribers(&self, topic: &str) -> Targets<S> {
        let levels: Vec<&str> = topic.split('/').collect();
        // The nodes whose subscriptions match. Usually one (an exact filter, or one
        // wildcard), whose plain subscribers are distinct already: no need to merge.
        let mut matched: Vec<&Node<S>> = Vec::new();
        // Nodes still to visit, with how many levels of the topic they consumed; only
        // the root is visited with the topic's first level, where `$` hides wildcards.
        let mut todo = vec![(&self.root, 0)];
        while let Some((node, depth)) = todo.pop() {
            let wildcards = depth > 0 || !topic.starts_with('$');
            // `#` matches the parent level too: "a/#" matches "a" ([MQTT-4.7.1-2]).
            if let Some(hash) = node.children.get("#").filter(|_| wildcards) {
                matched.push(hash);
            }
            let Some(level) = levels.get(depth) else {
                matched.push(node);
                continue;
            };
            if let Some(exact) = node.children.get(*level) {
                todo.push((exact, depth + 1));
            }
            if let Some(plus) = node.children.get("+").filter(|_| wildcards) {
                todo.push((plus, depth + 1));
            }
        }
        let groups = matched
            .iter()
            .flat_map(|node| node.shared.iter().flat_map(|groups| groups.values()))
            .map(|g| Shared { members: g.members.clone(), turn: Arc::clone(&g.turn) })
            .collect();
        let mut plain: Vec<&HashMap<S, QoS>> = matched.iter().map(|n| &n.here).collect();
        plain.retain(|here| !here.is_empty());
        let plain = match plain.as_slice() {
            [] => Vec::new(),
            [only] => only.iter().map(|(who, qos)| (who.clone(), *qos)).collect(),
            several => {
                let mut found: HashMap<S, QoS> = HashMap::new();
                for here in several {
                    for (who, qos) in *here {
                        let best = found.entry(who.clone()).or_insert(*qos);
                        *best = (*best).max(*qos);
                    }
                }
                found.into_iter().collect()
            }
        };
        Targets { plain, groups }
    }
}

/// A filter as the trie files it: the shared group, if any, and the topic filter.
fn split(filter: &str) -> (Option<&str>, &str) {
    match shared(filter) {
        Some((group, rest)) => (Some(group), rest),
        None => (None, filter),
    }
}

impl<S> Drop for Node<S> {
    /// Takes a branch apart level by level: the default drop would recurse once per
    /// level of the deepest filter below. Each node taken out has no children left
    /// when it is dropped in turn.
    fn drop(&mut self) {
        let mut todo: Vec<Node<S>> = self.children.drain().map(|(_, n)| n).collect();
        while let Some(mut node) = todo.pop() {
            todo.extend(node.children.drain().map(|(_, n)| n));
        }
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
            assert_eq!(
                trie.subscribers(topic).plain.iter().any(|(w, _)| *w == 1),
                *want,
                "trie: {filter:?} vs {topic:?}"
            );
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

    /// Runs `f` on a thread with a small stack: anything recursing per level overflows.
    fn on_small_stack(f: impl FnOnce() + Send + 'static) {
        let t = std::thread::Builder::new().stack_size(64 * 1024).spawn(f).expect("thread");
        t.join().expect("no stack overflow");
    }

    #[test]
    fn a_filter_of_100k_levels_is_inserted_matched_removed_and_dropped_without_recursion() {
        on_small_stack(|| {
            let deep = vec!["a"; 100_000].join("/");
            let mut trie = Trie::default();
            trie.insert(&deep, 1u32, QoS::AtMostOnce);
            trie.insert("a/+/#", 2u32, QoS::AtMostOnce);
            let got = trie.subscribers(&deep).plain;
            assert_eq!(got.len(), 2, "both the exact deep filter and a/+/# match");
            assert!(trie.remove(&deep, &1));
            assert_eq!(trie.subscribers(&deep).plain.len(), 1);
            trie.insert(&deep, 3u32, QoS::AtMostOnce);
            drop(trie); // the deep branch goes with it
        });
    }

    #[test]
    fn removing_prunes_exactly_the_branch_that_held_only_that_subscription() {
        let mut trie = Trie::default();
        trie.insert("a/b/c/d", "x", QoS::AtMostOnce);
        trie.insert("a/b", "y", QoS::AtMostOnce);
        trie.insert("a/b/c/d", "z", QoS::AtMostOnce);
        trie.insert("a/e", "x", QoS::AtMostOnce);
        assert!(!trie.remove("a/b/c", &"x"), "not subscribed there");
        assert!(!trie.remove("a/b/c/d/e", &"x"), "no such branch");
        assert!(trie.remove("a/b/c/d", &"x"));
        assert_eq!(trie.subscribers("a/b/c/d").plain.len(), 1, "z is still there");
        assert!(trie.remove("a/b/c/d", &"z"));
        let b = &trie.root.children["a"].children["b"];
        assert!(b.children.is_empty(), "c/d pruned below a/b, which y keeps");
        assert!(trie.remove("a/b", &"y"));
        assert_eq!(trie.root.children["a"].children.len(), 1, "only e is left under a");
        assert!(trie.remove("a/e", &"x"));
        assert!(trie.root.children.is_empty() && trie.is_empty());
    }

    #[test]
    fn bounds_count_levels_and_bytes() {
        let b = Bounds { max_levels: 3, max_length: 10 };
        assert!(b.check("a/b/c").is_ok());
        assert!(b.check("a/b/c/d").unwrap_err().contains("4 levels"));
        assert!(b.check("//").is_ok(), "three empty levels");
        assert!(b.check("///").is_err());
        assert!(b.check("abcdefghijk").unwrap_err().contains("11 bytes"));
        let default = Bounds::default();
        assert!(default.check(&vec!["a"; 200].join("/")).is_ok());
        assert!(default.check(&vec!["a"; 201].join("/")).is_err());
    }

    #[test]
    fn overlapping_subscriptions_deliver_once_at_the_highest_qos_and_unsubscribe_prunes() {
        let mut trie = Trie::default();
        trie.insert("a/#", "x", QoS::AtMostOnce);
        trie.insert("a/+", "x", QoS::ExactlyOnce);
        trie.insert("a/b", "y", QoS::AtLeastOnce);
        assert!(!trie.insert("a/b", "y", QoS::AtMostOnce), "resubscribing replaces");
        let got: HashMap<_, _> = trie.subscribers("a/b").plain.into_iter().collect();
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

    #[test]
    fn shared_filters_are_checked_and_split() {
        for good in ["$share/g/a", "$share/g/#", "$share/g/+/b", "$share/group-1/a/b/#", "$share/g//"] {
            assert!(valid_filter(good), "{good:?} is a valid shared filter");
        }
        for bad in ["$share/", "$share/g", "$share//a", "$share/g+/a", "$share/#/a", "$share/g/a/#/b"] {
            assert!(!valid_filter(bad), "{bad:?} is not");
        }
        assert!(valid_filter("$share"), "without the slash it is a plain filter");
        assert_eq!(shared("$share/g/a/+"), Some(("g", "a/+")));
        assert_eq!(shared("$SYS/a"), None);
    }

    #[test]
    fn each_message_goes_to_one_member_of_each_group_in_turn() {
        let mut trie = Trie::default();
        trie.insert("$share/g/a/+", "x", QoS::AtLeastOnce);
        trie.insert("$share/g/a/+", "y", QoS::AtMostOnce);
        trie.insert("$share/g/a/+", "z", QoS::AtMostOnce);
        assert!(!trie.insert("$share/g/a/+", "z", QoS::ExactlyOnce), "rejoining replaces the QoS");
        trie.insert("$share/h/a/#", "x", QoS::AtMostOnce);
        trie.insert("a/b", "p", QoS::AtMostOnce);
        assert_eq!(trie.len(), 5);
        let mut firsts = Vec::new();
        let t = trie.subscribers("a/b");
        assert_eq!(t.plain, vec![("p", QoS::AtMostOnce)]);
        assert_eq!(t.groups.len(), 2, "g (a/+) and h (a/#) both match");
        let g = t.groups.iter().find(|g| g.members.len() == 3).expect("group g");
        for _ in 0..6 {
            firsts.push(*g.next_turn().next().expect("three members"));
        }
        let names: Vec<_> = firsts.iter().map(|(w, _)| *w).collect();
        assert_eq!(names, ["x", "y", "z", "x", "y", "z"], "round-robin");
        assert_eq!(firsts[2].1, QoS::ExactlyOnce);
        assert!(trie.subscribers("$SYS/b").groups.is_empty(), "no wildcard match on $ topics");
        assert!(trie.remove("$share/g/a/+", &"y"));
        assert!(!trie.remove("$share/g/a/+", &"y"));
        assert!(!trie.remove("a/+", &"x"), "a plain filter is another subscription");
        assert!(trie.remove("$share/g/a/+", &"x"));
        assert!(trie.remove("$share/g/a/+", &"z"));
        assert!(trie.remove("$share/h/a/#", &"x"));
        assert!(trie.remove("a/b", &"p"));
        assert!(trie.is_empty() && trie.root.children.is_empty(), "empty groups and branches are pruned");
    }
}
