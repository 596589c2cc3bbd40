//! The retained messages ([MQTT-3.3.1-5]), bounded in count and in bytes.

use std::collections::HashMap;
use std::time::Instant;

use crate::packet::Publish;

/// Retained messages by topic, with their arrival time (for expiry) and the bytes
/// they hold in total (for the bound).
#[derive(Debug, Default)]
pub(crate) struct Retained {
    by_topic: HashMap<std::sync::Arc<str>, (Instant, Publish)>,
    bytes: usize,
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
        let old = self.by_topic.get(&*msg.topic).map(|(_, m)| size(m));
        if msg.payload.is_empty() {
            self.remove(&msg.topic);
            return Ok(());
        }
        let bytes = self.bytes - old.unwrap_or(0) + size(msg);
        if old.is_none() && self.by_topic.len() >= max {
            return Err(format!("{max} retained messages held already"));
        }
        if bytes > max_bytes {
            return Err(format!("retained messages would hold {bytes} bytes, more than {max_bytes}"));
        }
        self.bytes = bytes;
        self.by_topic.insert(msg.topic.clone(), (Instant::now(), msg.clone()));
        Ok(())
    }

    fn remove(&mut self, topic: &str) {
        if let Some((_, m)) = self.by_topic.remove(topic) {
            self.bytes -= size(&m);
        }
    }

    /// Messages held.
    pub(crate) fn len(&self) -> usize {
        self.by_topic.len()
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Every message with its arrival time.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &(Instant, Publish)> {
        self.by_topic.values()
    }

    /// Drops the messages `stale` picks; returns how many.
    pub(crate) fn drop_if(&mut self, mut stale: impl FnMut(&str, Instant) -> bool) -> usize {
        let before = self.by_topic.len();
        let mut freed = 0;
        self.by_topic.retain(|topic, (at, m)| {
            let go = stale(topic, *at);
            freed += if go { size(m) } else { 0 };
            !go
        });
        self.bytes -= freed;
        before - self.by_topic.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::QoS;

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
}
