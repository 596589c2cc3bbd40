//! The few MQTT bytes the load generator and the sink handle once per message, read and
//! written in place: packet framing, PUBLISH, PUBACK, and the 64-byte payload stamp.
//!
//! `pubsub_protocol::packet::decode` allocates a topic `String` and a payload `Vec` per
//! PUBLISH; at hundreds of thousands of deliveries a second that would make the
//! generator, not the broker, the thing measured. Everything rarer (CONNACK, SUBACK)
//! still goes through the project's codec.

use pubsub_protocol::packet::Error as PacketError;

/// Largest packet the generator and the sink accept: far above anything they send.
pub const MAX_PACKET: usize = 1 << 20;

/// Size of every published payload.
pub const PAYLOAD_LEN: usize = 64;

/// PUBLISH's packet type nibble.
pub const PUBLISH: u8 = 3;
/// PUBACK's packet type nibble.
pub const PUBACK: u8 = 4;

/// Where a packet sits at the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// The first byte: type in the high nibble, flags in the low one.
    pub first: u8,
    /// Offset of the variable header (after the remaining length).
    pub body: usize,
    /// Bytes of the whole packet.
    pub total: usize,
}

impl Frame {
    /// The packet type (high nibble of the first byte).
    pub fn kind(&self) -> u8 {
        self.first >> 4
    }
}

/// The packet at the front of `buf`: `Ok(None)` until it is complete.
pub fn frame(buf: &[u8]) -> Result<Option<Frame>, PacketError> {
    let Some(&first) = buf.first() else { return Ok(None) };
    let mut remaining = 0usize;
    for i in 0..4 {
        let Some(&byte) = buf.get(1 + i) else { return Ok(None) };
        remaining |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            let total = 2 + i + remaining;
            if total > MAX_PACKET {
                return Err(PacketError::TooLarge);
            }
            return Ok((buf.len() >= total).then_some(Frame { first, body: 2 + i, total }));
        }
    }
    Err(PacketError::BadLength)
}

/// A PUBLISH read in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishView<'a> {
    /// 0 or 1 (2 is not used by the generator and is refused).
    pub qos: u8,
    /// The packet id, 0 at QoS 0.
    pub packet_id: u16,
    /// The topic name bytes.
    pub topic: &'a [u8],
    /// The application bytes.
    pub payload: &'a [u8],
}

/// Reads the PUBLISH `packet` (a whole frame `f`) without copying.
pub fn publish_view(f: Frame, packet: &[u8]) -> Result<PublishView<'_>, PacketError> {
    let qos = (f.first >> 1) & 0x03;
    if qos > 1 {
        return Err(PacketError::BadQoS);
    }
    let body = &packet[f.body..f.total];
    let topic_len = usize::from(u16::from_be_bytes([
        *body.first().ok_or(PacketError::Truncated)?,
        *body.get(1).ok_or(PacketError::Truncated)?,
    ]));
    let id_len = if qos == 1 { 2 } else { 0 };
    let rest = body.get(2 + topic_len..).ok_or(PacketError::Truncated)?;
    if rest.len() < id_len {
        return Err(PacketError::Truncated);
    }
    let packet_id = if qos == 1 { u16::from_be_bytes([rest[0], rest[1]]) } else { 0 };
    if qos == 1 && packet_id == 0 {
        return Err(PacketError::ZeroPacketId);
    }
    Ok(PublishView { qos, packet_id, topic: &body[2..2 + topic_len], payload: &rest[id_len..] })
}

/// Appends a PUBACK for `id`.
pub fn puback(out: &mut Vec<u8>, id: u16) {
    let [hi, lo] = id.to_be_bytes();
    out.extend_from_slice(&[PUBACK << 4, 2, hi, lo]);
}

/// Reads the packet id of a PUBACK frame.
pub fn puback_id(f: Frame, packet: &[u8]) -> Result<u16, PacketError> {
    if f.first != PUBACK << 4 || f.total - f.body != 2 {
        return Err(PacketError::BadFlags);
    }
    Ok(u16::from_be_bytes([packet[f.body], packet[f.body + 1]]))
}

/// Who sent a message and when: the first 16 bytes of every payload (the rest is
/// filler up to [`PAYLOAD_LEN`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Index of the publishing client in its run.
    pub publisher: u32,
    /// Sequence number of the message from that publisher, from 0.
    pub seq: u32,
    /// Nanoseconds since the generator's clock started, when it was encoded.
    pub sent_ns: u64,
}

impl Stamp {
    /// The stamp of a payload, `None` if it is not one of ours.
    pub fn read(payload: &[u8]) -> Option<Stamp> {
        if payload.len() != PAYLOAD_LEN {
            return None;
        }
        let u32_at =
            |i: usize| u32::from_le_bytes([payload[i], payload[i + 1], payload[i + 2], payload[i + 3]]);
        let mut ns = [0u8; 8];
        ns.copy_from_slice(&payload[8..16]);
        Some(Stamp { publisher: u32_at(0), seq: u32_at(4), sent_ns: u64::from_le_bytes(ns) })
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.publisher.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.sent_ns.to_le_bytes());
        out.resize(out.len() + PAYLOAD_LEN - 16, b'.');
    }
}

/// Appends a PUBLISH of `stamp` to `topic` (retain off, DUP off); `packet_id` is
/// written only at QoS 1.
pub fn publish(out: &mut Vec<u8>, topic: &[u8], qos: u8, packet_id: u16, stamp: Stamp) {
    let id_len = if qos == 1 { 2 } else { 0 };
    let mut remaining = 2 + topic.len() + id_len + PAYLOAD_LEN;
    out.push((PUBLISH << 4) | (qos << 1));
    loop {
        let byte = (remaining % 128) as u8;
        remaining /= 128;
        out.push(if remaining > 0 { byte | 0x80 } else { byte });
        if remaining == 0 {
            break;
        }
    }
    let topic_len = u16::try_from(topic.len()).expect("run topics are a few dozen bytes");
    out.extend_from_slice(&topic_len.to_be_bytes());
    out.extend_from_slice(topic);
    if qos == 1 {
        out.extend_from_slice(&packet_id.to_be_bytes());
    }
    stamp.write(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use pubsub_protocol::packet::{decode, Packet, QoS};

    #[test]
    fn publish_round_trips_through_the_project_codec() {
        let stamp = Stamp { publisher: 7, seq: 123_456, sent_ns: 987_654_321 };
        for qos in [0u8, 1] {
            let mut out = Vec::new();
            publish(&mut out, b"bench/t", qos, 42, stamp);
            let Ok(Some((Packet::Publish(p), used))) = decode(&out, MAX_PACKET) else {
                panic!("the codec reads our PUBLISH");
            };
            assert_eq!(used, out.len());
            assert_eq!(&*p.topic, "bench/t");
            assert_eq!(p.qos, if qos == 1 { QoS::AtLeastOnce } else { QoS::AtMostOnce });
            let f = frame(&out).expect("well formed").expect("complete");
            assert_eq!(f.total, out.len());
            let view = publish_view(f, &out).expect("well formed");
            assert_eq!((view.qos, view.topic, view.payload), (qos, &b"bench/t"[..], &p.payload[..]));
            assert_eq!(view.packet_id, if qos == 1 { 42 } else { 0 });
            assert_eq!(Stamp::read(view.payload), Some(stamp));
        }
    }

    #[test]
    fn frames_wait_for_whole_packets_and_refuse_bad_lengths() {
        let mut out = Vec::new();
        puback(&mut out, 9);
        assert_eq!(frame(&out[..3]), Ok(None));
        let f = frame(&out).expect("well formed").expect("complete");
        assert_eq!(puback_id(f, &out), Ok(9));
        assert_eq!(frame(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF]), Err(PacketError::BadLength));
        assert_eq!(frame(&[0x30, 0xFF, 0xFF, 0x7F]), Err(PacketError::TooLarge));
        assert_eq!(Stamp::read(&[0; 10]), None);
    }
}
