//! PUBLISH ([MQTT-3.3]); its acknowledgements are bare packet ids.
//!
//! A broker decodes a PUBLISH once and sends it to many subscribers, so the topic and
//! the payload are shared (`Arc<str>`, [`Bytes`]): queuing a message for a subscriber,
//! keeping it in flight or retaining it copies neither.

use std::sync::Arc;

use bytes::Bytes;

use super::{write_binary, write_header, Error, QoS, Reader};

/// PUBLISH, either direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// A redelivery of an earlier attempt.
    pub dup: bool,
    /// Delivery guarantee.
    pub qos: QoS,
    /// Keep as the topic's retained message (to the broker), or sent because it was
    /// retained (from the broker).
    pub retain: bool,
    /// A topic name: no wildcards.
    pub topic: Arc<str>,
    /// Present iff QoS > 0.
    pub packet_id: Option<u16>,
    /// Application bytes.
    pub payload: Bytes,
}

impl Publish {
    pub(super) fn read(flags: u8, body: &[u8]) -> Result<Publish, Error> {
        let dup = flags & 0x08 != 0;
        let qos = QoS::from_bits((flags >> 1) & 0x03)?;
        if dup && qos == QoS::AtMostOnce {
            return Err(Error::BadQoS); // [MQTT-3.3.1-2]
        }
        let mut r = Reader(body);
        let topic = r.string()?;
        if !crate::topic::valid_name(topic) {
            return Err(Error::BadTopic); // [MQTT-3.3.2-2]
        }
        let packet_id = if qos == QoS::AtMostOnce { None } else { Some(r.packet_id()?) };
        let payload = Bytes::copy_from_slice(r.rest());
        Ok(Publish { dup, qos, retain: flags & 0x01 != 0, topic: topic.into(), packet_id, payload })
    }

    pub(super) fn write(&self, out: &mut Vec<u8>) {
        self.write_head(out);
        out.extend_from_slice(&self.payload);
    }

    /// This message as the broker sends it: at `qos`, flagged `retain`, with `packet_id`
    /// and no DUP. Topic and payload are shared, not copied.
    pub fn outgoing(&self, qos: QoS, retain: bool, packet_id: Option<u16>) -> Publish {
        Publish {
            dup: false,
            qos,
            retain,
            topic: Arc::clone(&self.topic),
            packet_id,
            payload: self.payload.clone(),
        }
    }

    /// Everything but the payload: the fixed header, the topic and the packet id (a
    /// subscriber's QoS 1/2 copy differs from the others only here).
    pub fn head(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + 2 + self.topic.len() + 2);
        self.write_head(&mut out);
        out
    }

    /// The whole packet in one shared buffer: a QoS 0 message has the same bytes for
    /// every subscriber, so it is encoded once and each of them holds a reference.
    pub fn to_shared(&self) -> Bytes {
        let mut out = Vec::with_capacity(5 + 2 + self.topic.len() + 2 + self.payload.len());
        self.write(&mut out);
        out.into()
    }

    fn write_head(&self, out: &mut Vec<u8>) {
        let first = 0x30 | (u8::from(self.dup) << 3) | ((self.qos as u8) << 1) | u8::from(self.retain);
        let id_len = if self.packet_id.is_some() { 2 } else { 0 };
        write_header(out, first, 2 + self.topic.len() + id_len + self.payload.len());
        write_binary(out, self.topic.as_bytes());
        if let Some(id) = self.packet_id {
            out.extend_from_slice(&id.to_be_bytes());
        }
    }
}
