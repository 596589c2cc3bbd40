//! The retained messages ([MQTT-3.3.1-5]), bounded in count and in bytes.
//!
//! They are kept in a tree by topic level, so a new subscription visits only the
//! branches its filter can match ([`Retained::matching`]) instead of testing every
//! retained message: `+` follows every child of one level, `#` takes the whole branch
//! below its parent level (the parent included), and neither enters a first level
//! starting with `$` ([MQTT-4.7.2-1]). This is the reverse of [`crate::topic::Trie`],
//! which walks one topic against many filters.
//!
//! As in `topic`, nothing recurses: a client chooses how deep its topics go, so every
//! walk keeps its stack on the heap, and a node dropping its branch takes it apart
//! level by level. Removing a message prunes the branch it leaves empty, so memory
//! follows the messages held.

use std::collections::HashMap;
use std::fmt;
use std::time::Instant;

use crate::packet::Publish;

/// Retained messages by topic, with their arrival time (for expiry) and the bytes
/// they hold in total (for the bound).
#[derive(Default)]
pub(crate) struct Retained {
    /// INVARIANT: every node but the root holds a message or has children, so a leaf
    /// always holds a message.
    root: Node,
    len: usize,
    bytes: usize,
}

/// One topic level: the message retained on the topic that ends here, if any, and the
/// next levels.
#[derive(Default)]
struct Node {
    children: HashMap<Box<str>, Node>,
    here: Option<(Instant, Publish)>,
}

/// What a retained message costs against `max_retained_bytes`.
pub(crate) fn size(msg: &Publish) -> usize {
    msg.topic.len() + msg.payload.len()
}

impl Retained {
    /// Keeps `msg` as its topic's retained message (replacing any), or removes it for
    /// an empty payload ([MQTT-3.3.1-10], -11). `Err` if it would exceed `max` messages
    /// or `max_bytes`: the message is then not retained (it is still delivered).
    pub(crate) fn set(&mut self, msg: &Publish, max: usize, max_bytes: usize) -> Result<(), String> {
        let topic: &str = &msg.topic;
        if msg.payload.is_empty() {
            self.remove(topic);
            return Ok(());
        }
        let old = self.get(topic).map(|(_, m)| size(m));
        let bytes = self.bytes - old.unwrap_or(0) + size(msg);
        if old.is_none() && self.len >= max {
            return Err(format!("{max} retained messages held already"));
        }
        if bytes > max_bytes {
            return Err(format!("retained messages would hold {bytes} bytes, more than {max_bytes}"));
        }
        // Checked before a node is made: a refused message leaves no empty branch.
        self.bytes = bytes;
        self.len += usize::from(old.is_none());
        self.root.make_path(topic).here = Some((Instant::now(), msg.clone()));
        Ok(())
    }

    /// The message retained on `topic`, if any.
    fn get(&self, topic: &str) -> Option<&(Instant, Publish)> {
        let mut node = &self.root;
        for level in topic.split('/') {
            node = node.children.get(level)?;
        }
        node.here.as_ref()
    }

    fn remove(&mut self, topic: &str) {
        if let Some((_, m)) = self.take(topic) {
            self.bytes -= size(&m);
            self.len -= 1;
        }
    }

    /// Takes the message retained on `topic` out, pruning the branch it leaves empty.
    fn take(&mut self, topic: &str) -> Option<(Instant, Publish)> {
        let levels: Vec<&str> = topic.split('/').collect();
        let cut = self.prune_point(&levels)?;
        let mut node = &mut self.root;
        for level in &levels[..cut] {
            node = node.children.get_mut(*level).expect("prune_point walked this path");
        }
        let Some(level) = levels.get(cut) else { return node.here.take() };
        // The branch below `cut` holds nothing but this message: it goes whole.
        let mut branch = node.children.remove(*level)?;
        let leaf = levels[cut + 1..].iter().try_fold(&mut branch, |n, l| n.children.get_mut(*l))?;
        leaf.here.take()
    }

    /// Where taking the message at `levels` out cuts the tree: the depth of the node
    /// that loses a child (every node below it on the path would be left empty), or
    /// `levels.len()` if the message's node stays for its children. `None`: no message.
    fn prune_point(&self, levels: &[&str]) -> Option<usize> {
        let mut node = &self.root;
        // The root always stays, so the cut is at least there.
        let mut cut = 0;
        for (depth, level) in levels.iter().enumerate() {
            if node.here.is_some() || node.children.len() > 1 {
                cut = depth; // this node stays: it has other business
            }
            node = node.children.get(*level)?;
        }
        node.here.as_ref()?;
        Some(if node.children.is_empty() { cut } else { levels.len() })
    }

    /// Messages held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The messages (with their arrival time) whose topic `filter` (valid) matches,
    /// found by visiting only the branches the filter can reach, in no given order.
    pub(crate) fn matching(&self, filter: &str) -> Vec<&(Instant, Publish)> {
        let levels: Vec<&str> = filter.split('/').collect();
        let mut found = Vec::new();
        // Nodes still to visit, with how many levels of the filter they consumed. Every
        // node is reached by one path only, so nothing is found twice.
        let mut todo = vec![(&self.root, 0)];
        while let Some((node, depth)) = todo.pop() {
            // Only the root's children are first levels, where `$` hides from wildcards.
            let first = depth == 0;
            match levels.get(depth).copied() {
                None => found.extend(&node.here),
                // `#` matches the parent level too: "a/#" matches "a" ([MQTT-4.7.1-2]).
                Some("#") => node.branch(first, &mut found),
                Some("+") => todo.extend(node.visible(first).map(|n| (n, depth + 1))),
                Some(level) => todo.extend(node.children.get(level).map(|n| (n, depth + 1))),
            }
        }
        found
    }

    /// Drops the messages `stale` picks; returns how many.
    pub(crate) fn drop_if(&mut self, mut stale: impl FnMut(&str, Instant) -> bool) -> usize {
        // Picked in one walk, then taken out by topic, which prunes as it goes.
        let mut all = Vec::new();
        self.root.branch(false, &mut all);
        let picked: Vec<String> = all
            .into_iter()
            .filter(|(at, m)| stale(&m.topic, *at))
            .map(|(_, m)| m.topic.to_string())
            .collect();
        for topic in &picked {
            self.remove(topic);
        }
        picked.len()
    }
}

impl fmt::Debug for Retained {
    /// The totals only: a derived `Debug` would print every message and recurse once per
    /// level of the deepest topic.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retained").field("len", &self.len).field("bytes", &self.bytes).finish()
    }
}

impl Node {
    /// The node for `topic`, made (with the levels above it) if missing.
    fn make_path(&mut self, topic: &str) -> &mut Node {
        let mut node = self;
        for level in topic.split('/') {
            // A key is allocated only for a new level; a replacement allocates nothing.
            if !node.children.contains_key(level) {
                node.children.insert(level.into(), Node::default());
            }
            node = node.children.get_mut(level).expect("just made");
        }
        node
    }

    /// The children a `+` or `#` may enter: at the first level (`first`), not those
    /// starting with `$` ([MQTT-4.7.2-1]).
    fn visible(&self, first: bool) -> impl Iterator<Item = &Node> {
        self.children.iter().filter(move |(level, _)| !(first && level.starts_with('$'))).map(|(_, n)| n)
    }

    /// Adds every message in this node and below it to `found`, leaving out the
    /// children starting with `$` when this is the root (`first`).
    fn branch<'a>(&'a self, first: bool, found: &mut Vec<&'a (Instant, Publish)>) {
        found.extend(&self.here);
        let mut todo: Vec<&Node> = self.visible(first).collect();
        while let Some(node) = todo.pop() {
            found.extend(&node.here);
            todo.extend(node.children.values());
        }
    }
}

impl Drop for Node {
    /// Takes a branch apart level by level: the default drop would recurse once per
    /// level of the deepest topic below. Each node taken out has no children left
    /// when it is dropped in turn.
    fn drop(&mut self) {
        let mut todo: Vec<Node> = self.children.drain().map(|(_, n)| n).collect();
        while let Some(mut node) = todo.pop() {
            todo.extend(node.children.drain().map(|(_, n)| n));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::packet::QoS;
    use crate::test_rng::Rng;
    use crate::topic::matches;

    /// Bounds no test reaches.
    const MANY: usize = usize::MAX;

    fn msg(topic: &str, payload: &[u8]) -> Publish {
        Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: true,
            topic: topic.into(),
            packet_id: None,
            payload: payload.to_vec().into(),
        }
    }

    #[test]
    fn count_and_bytes_are_bounded_and_follow_replacements_and_removals() {
        let mut r = Retained::default();
        r.set(&msg("a", b"1234"), 2, 20).expect("fits");
        r.set(&msg("b", b"12"), 2, 20).expect("fits");
        assert_eq!((r.len(), r.bytes()), (2, 8));
        assert!(r.set(&msg("c", b"1"), 2, 20).unwrap_err().contains("2 retained"));
        r.set(&msg("a", b"123456789"), 2, 20).expect("a replacement needs no new slot");
        assert_eq!(r.bytes(), 13);
        assert!(r.set(&msg("b", &[0; 30]), 2, 20).unwrap_err().contains("bytes"));
        assert_eq!(r.bytes(), 13, "a refused replacement keeps the old message");
        r.set(&msg("a", b""), 2, 20).expect("an empty payload removes");
        assert_eq!((r.len(), r.bytes()), (1, 3));
        assert_eq!(r.drop_if(|t, _| t == "b"), 1);
        assert_eq!((r.len(), r.bytes()), (0, 0));
    }

    /// The topics `filter` finds, sorted; panics if one is found twice.
    fn found(r: &Retained, filter: &str) -> Vec<String> {
        let mut got: Vec<String> = r.matching(filter).iter().map(|(_, m)| m.topic.to_string()).collect();
        got.sort();
        let before = got.len();
        got.dedup();
        assert_eq!(got.len(), before, "{filter:?} found a message twice");
        got
    }

    /// Nodes below the root, checking on the way that each holds a message or has
    /// children (no empty branch left behind).
    fn nodes(r: &Retained) -> usize {
        let mut todo: Vec<&Node> = r.root.children.values().collect();
        let mut count = 0;
        while let Some(node) = todo.pop() {
            assert!(node.here.is_some() || !node.children.is_empty(), "an empty node was left");
            count += 1;
            todo.extend(node.children.values());
        }
        count
    }

    const TOPICS: &[&str] =
        &["$SYS/broker/uptime", "$SYS", "a/b/c", "a/b", "a", "a/", "/a", "/", "a//c", "b/$c", "$x/a"];

    /// (filter, the topics of `TOPICS` it matches).
    const TABLE: &[(&str, &[&str])] = &[
        ("#", &["/", "/a", "a", "a/", "a//c", "a/b", "a/b/c", "b/$c"]),
        ("+/#", &["/", "/a", "a", "a/", "a//c", "a/b", "a/b/c", "b/$c"]),
        ("+", &["a"]),
        ("+/+", &["/", "/a", "a/", "a/b", "b/$c"]),
        ("+/+/+", &["a//c", "a/b/c"]),
        ("a/#", &["a", "a/", "a//c", "a/b", "a/b/c"]),
        ("a/+", &["a/", "a/b"]),
        ("a/+/c", &["a//c", "a/b/c"]),
        ("a//+", &["a//c"]),
        ("+/b/#", &["a/b", "a/b/c"]),
        ("a/b/c/#", &["a/b/c"]),
        ("a/b/c/+", &[]),
        ("/+", &["/", "/a"]),
        ("/#", &["/", "/a"]),
        ("+/", &["/", "a/"]),
        ("a", &["a"]),
        ("a/", &["a/"]),
        ("/", &["/"]),
        ("a//c", &["a//c"]),
        ("c", &[]),
        ("b/#", &["b/$c"]),
        ("+/$c", &["b/$c"]),
        ("$SYS/#", &["$SYS", "$SYS/broker/uptime"]),
        ("$SYS", &["$SYS"]),
        ("$SYS/+", &[]),
        ("$SYS/+/uptime", &["$SYS/broker/uptime"]),
        ("+/broker/uptime", &[]),
        ("+/a", &["/a"]),
        ("$x/+", &["$x/a"]),
    ];

    #[test]
    fn a_table_of_filters_finds_exactly_the_matching_topics() {
        let mut r = Retained::default();
        for topic in TOPICS {
            r.set(&msg(topic, b"x"), MANY, MANY).expect("fits");
        }
        for (filter, want) in TABLE {
            let mut scan: Vec<&str> = TOPICS.iter().copied().filter(|t| matches(filter, t)).collect();
            scan.sort();
            assert_eq!(&scan, want, "the table disagrees with topic::matches for {filter:?}");
            assert_eq!(found(&r, filter), *want, "matching({filter:?})");
        }
    }

    /// A random topic of up to 5 levels, or a filter (with `+` and a final `#`).
    fn random(rng: &mut Rng, filter: bool) -> String {
        let levels: &[&str] = if filter { &["a", "b", "$s", "", "+"] } else { &["a", "b", "$s", "", "c"] };
        let mut out: Vec<&str> = (0..=rng.next() % 5).map(|_| rng.pick(levels)).collect();
        if filter && rng.next() % 3 == 0 {
            *out.last_mut().expect("one level at least") = "#";
        }
        out.join("/")
    }

    /// Every filter finds what a scan of `held` with `topic::matches` finds, and the
    /// totals agree.
    fn agree(r: &Retained, held: &HashMap<String, usize>, rng: &mut Rng) {
        for _ in 0..500 {
            let filter = random(rng, true);
            let mut scan: Vec<String> = held.keys().filter(|t| matches(&filter, t)).cloned().collect();
            scan.sort();
            assert_eq!(found(r, &filter), scan, "matching({filter:?})");
        }
        assert_eq!(r.len(), held.len());
        assert_eq!(r.bytes(), held.values().sum::<usize>());
        nodes(r);
    }

    #[test]
    fn seeded_random_filters_find_what_a_scan_finds_after_sets_removals_and_drops() {
        let mut rng = Rng(0x5eed_0f4e_7a14_ed01);
        let mut r = Retained::default();
        let mut held = HashMap::new();
        for round in 0..6 {
            for _ in 0..3000 {
                let topic = random(&mut rng, false);
                // One in four is an empty payload: a removal ([MQTT-3.3.1-10]).
                let payload = vec![b'x'; (rng.next() % 4) as usize * (rng.next() % 8) as usize];
                r.set(&msg(&topic, &payload), MANY, MANY).expect("fits");
                match payload.is_empty() {
                    true => held.remove(&topic),
                    false => held.insert(topic.clone(), topic.len() + payload.len()),
                };
            }
            agree(&r, &held, &mut rng);
            let dropped = r.drop_if(|topic, _| {
                let go = (rng.next() + round) % 3 == 0;
                if go {
                    held.remove(topic).expect("held");
                }
                go
            });
            assert!(dropped > 0 || held.is_empty());
            agree(&r, &held, &mut rng);
        }
    }

    #[test]
    fn removing_every_message_leaves_no_node() {
        let mut r = Retained::default();
        let topics = ["a/b/c", "a", "a/b", "a/b/c/d", "x//y", "$SYS/q", "/", "a/"];
        for topic in topics {
            r.set(&msg(topic, b"12"), MANY, MANY).expect("fits");
        }
        assert_eq!(nodes(&r), 12);
        assert!(r.set(&msg("new/branch", b"1"), topics.len(), MANY).is_err());
        assert_eq!(nodes(&r), 12, "a refused message makes no node");
        r.set(&msg("a/b", b""), MANY, MANY).expect("removes");
        assert_eq!(nodes(&r), 12, "a/b stays: a/b/c is below it");
        r.set(&msg("a/b/c/d", b""), MANY, MANY).expect("removes");
        assert_eq!(nodes(&r), 11, "d goes, c keeps its message");
        r.set(&msg("a/b/c", b""), MANY, MANY).expect("removes");
        assert_eq!(nodes(&r), 9, "b and c go: b held nothing any more");
        r.set(&msg("nothing/here", b""), MANY, MANY).expect("removing nothing");
        assert_eq!(r.drop_if(|t, _| t.starts_with('a') || t.starts_with('$')), 3);
        assert_eq!(r.drop_if(|_, _| true), 2);
        assert_eq!((r.len(), r.bytes(), nodes(&r)), (0, 0, 0));
        assert!(r.root.children.is_empty() && r.root.here.is_none());
    }

    #[test]
    fn a_topic_of_100k_levels_is_set_matched_removed_and_dropped_without_recursion() {
        let t = std::thread::Builder::new().stack_size(64 * 1024).spawn(|| {
            let deep = vec!["a"; 100_000].join("/");
            let mut r = Retained::default();
            r.set(&msg(&deep, b"1"), MANY, MANY).expect("fits");
            r.set(&msg("a/b", b"1"), MANY, MANY).expect("fits");
            assert_eq!(r.matching("#").len(), 2);
            assert_eq!(r.matching("a/+/#").len(), 2);
            assert_eq!(r.matching(&deep).len(), 1);
            assert!(format!("{r:?}").len() < 100, "Debug prints totals only");
            r.set(&msg(&deep, b""), MANY, MANY).expect("removes");
            assert_eq!(nodes(&r), 2);
            r.set(&msg(&deep, b"1"), MANY, MANY).expect("fits");
            assert_eq!(r.drop_if(|t, _| t == "a/b"), 1);
            drop(r); // the deep branch goes with it
        });
        t.expect("thread").join().expect("no stack overflow");
    }
}
