//! MQTT 3.1.1 control packets: decoding from bytes and encoding to bytes.
//!
//! Incomplete input is a state, not an error: [`decode`] returns `Ok(None)` until a
//! whole packet is there. Every malformed case the standard names is an [`Error`];
//! the broker answers any of them by closing the connection ([MQTT-4.8.0-1]).

mod connect;
mod publish;
mod subscribe;

pub use connect::{Connack, Connect, ConnectReturn, LastWill};
pub use publish::Publish;
pub use subscribe::{Subscribe, Unsubscribe};

/// Delivery guarantee of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QoS {
    /// At most once.
    AtMostOnce = 0,
    /// At least once (PUBACK).
    AtLeastOnce = 1,
    /// Exactly once (PUBREC, PUBREL, PUBCOMP).
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS of a 2-bit field; 3 is malformed ([MQTT-3.3.1-4]).
    pub fn from_bits(bits: u8) -> Result<QoS, Error> {
        match bits {
            0 => Ok(QoS::AtMostOnce),
            1 => Ok(QoS::AtLeastOnce),
            2 => Ok(QoS::ExactlyOnce),
            _ => Err(Error::BadQoS),
        }
    }
}

/// Why bytes are not a valid MQTT 3.1.1 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Packet type 0 or 15 ([MQTT-2.2.1]).
    #[error("reserved packet type")]
    ReservedType,
    /// Fixed-header flags other than the ones the type prescribes ([MQTT-2.2.2-1/2]).
    #[error("invalid fixed header flags")]
    BadFlags,
    /// A remaining length longer than four bytes ([MQTT-2.2.3]).
    #[error("malformed remaining length")]
    BadLength,
    /// Larger than the broker accepts.
    #[error("packet larger than the configured maximum")]
    TooLarge,
    /// QoS 3 ([MQTT-3.3.1-4]), or DUP on a QoS 0 publish ([MQTT-3.3.1-2]).
    #[error("invalid QoS")]
    BadQoS,
    /// The variable header or payload ends early or runs past the remaining length.
    #[error("packet fields do not fit its remaining length")]
    Truncated,
    /// A string that is not UTF-8 or contains U+0000 ([MQTT-1.5.3-1/2]).
    #[error("invalid UTF-8 string")]
    BadString,
    /// Packet identifier 0 ([MQTT-2.3.1-1]).
    #[error("packet identifier 0")]
    ZeroPacketId,
    /// A protocol name other than "MQTT" ([MQTT-3.1.2-1]).
    #[error("unknown protocol name")]
    BadProtocol,
    /// "MQTT" at a protocol level other than 4 (3.1.1), such as 5: the rest of the
    /// CONNECT has another layout, so it is not read; the broker answers CONNACK 0x01
    /// ([MQTT-3.1.2-2]) and a client may retry in 3.1.1.
    #[error("unsupported protocol level {0}")]
    UnsupportedLevel(u8),
    /// CONNECT flags break a rule ([MQTT-3.1.2-3], -11, -13, -15, -22).
    #[error("invalid CONNECT flags")]
    BadConnectFlags,
    /// A topic name with wildcards, empty, or a filter with misplaced wildcards.
    #[error("invalid topic")]
    BadTopic,
    /// SUBSCRIBE/UNSUBSCRIBE without any topic ([MQTT-3.8.3-3], [MQTT-3.10.3-2]), or
    /// reserved bits set in a requested QoS ([MQTT-3.8.3-4]).
    #[error("invalid subscription list")]
    BadSubscription,
}

/// A decoded control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// Client → server, first packet.
    Connect(Connect),
    /// Server → client.
    Connack(Connack),
    /// Either direction.
    Publish(Publish),
    /// QoS 1 acknowledgement.
    Puback(u16),
    /// QoS 2, step 1.
    Pubrec(u16),
    /// QoS 2, step 2.
    Pubrel(u16),
    /// QoS 2, step 3.
    Pubcomp(u16),
    /// Client → server.
    Subscribe(Subscribe),
    /// Server → client: one return code per filter (0x80 = failure).
    Suback(u16, Vec<u8>),
    /// Client → server.
    Unsubscribe(Unsubscribe),
    /// Server → client.
    Unsuback(u16),
    /// Keep-alive probe.
    Pingreq,
    /// Keep-alive answer.
    Pingresp,
    /// Client → server: a clean goodbye (no will).
    Disconnect,
}

/// Decodes one packet from the front of `buf`: `Ok(None)` if incomplete, else the
/// packet and the bytes it used. `max` bounds the whole packet size.
pub fn decode(buf: &[u8], max: usize) -> Result<Option<(Packet, usize)>, Error> {
    let Some(&first) = buf.first() else { return Ok(None) };
    let Some((remaining, header)) = remaining_length(&buf[1..])? else {
        return Ok(None);
    };
    let total = 1 + header + remaining;
    if total > max {
        return Err(Error::TooLarge);
    }
    if buf.len() < total {
        return Ok(None);
    }
    let body = &buf[1 + header..total];
    let (kind, flags) = (first >> 4, first & 0x0F);
    let fixed = |want: u8| if flags == want { Ok(()) } else { Err(Error::BadFlags) };
    let packet = match kind {
        1 => fixed(0).and_then(|()| Connect::read(body)).map(Packet::Connect)?,
        2 => fixed(0).and_then(|()| Connack::read(body)).map(Packet::Connack)?,
        3 => Packet::Publish(Publish::read(flags, body)?),
        4 => fixed(0).and_then(|()| id_only(body)).map(Packet::Puback)?,
        5 => fixed(0).and_then(|()| id_only(body)).map(Packet::Pubrec)?,
        6 => fixed(2).and_then(|()| id_only(body)).map(Packet::Pubrel)?,
        7 => fixed(0).and_then(|()| id_only(body)).map(Packet::Pubcomp)?,
        8 => fixed(2).and_then(|()| Subscribe::read(body)).map(Packet::Subscribe)?,
        9 => fixed(0)
            .and_then(|()| subscribe::read_suback(body))
            .map(|(id, codes)| Packet::Suback(id, codes))?,
        10 => fixed(2).and_then(|()| Unsubscribe::read(body)).map(Packet::Unsubscribe)?,
        11 => fixed(0).and_then(|()| id_only(body)).map(Packet::Unsuback)?,
        12 => fixed(0).and_then(|()| empty(body)).map(|()| Packet::Pingreq)?,
        13 => fixed(0).and_then(|()| empty(body)).map(|()| Packet::Pingresp)?,
        14 => fixed(0).and_then(|()| empty(body)).map(|()| Packet::Disconnect)?,
        _ => return Err(Error::ReservedType),
    };
    Ok(Some((packet, total)))
}

impl Packet {
    /// Appends this packet's bytes to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Packet::Connect(c) => c.write(out),
            Packet::Connack(c) => c.write(out),
            Packet::Publish(p) => p.write(out),
            Packet::Puback(id) => write_id(out, 0x40, *id),
            Packet::Pubrec(id) => write_id(out, 0x50, *id),
            Packet::Pubrel(id) => write_id(out, 0x62, *id),
            Packet::Pubcomp(id) => write_id(out, 0x70, *id),
            Packet::Subscribe(s) => s.write(out),
            Packet::Suback(id, codes) => subscribe::write_suback(out, *id, codes),
            Packet::Unsubscribe(u) => u.write(out),
            Packet::Unsuback(id) => write_id(out, 0xB0, *id),
            Packet::Pingreq => out.extend_from_slice(&[0xC0, 0]),
            Packet::Pingresp => out.extend_from_slice(&[0xD0, 0]),
            Packet::Disconnect => out.extend_from_slice(&[0xE0, 0]),
        }
    }

    /// This packet as a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// The remaining length and how many bytes encoded it; `None` if incomplete.
fn remaining_length(buf: &[u8]) -> Result<Option<(usize, usize)>, Error> {
    let mut value = 0usize;
    for (i, byte) in buf.iter().enumerate().take(4) {
        value |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= 4 {
        return Err(Error::BadLength);
    }
    Ok(None)
}

/// Appends a fixed header: the first byte and the remaining length.
pub(crate) fn write_header(out: &mut Vec<u8>, first: u8, mut len: usize) {
    out.push(first);
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            return;
        }
    }
}

fn write_id(out: &mut Vec<u8>, first: u8, id: u16) {
    out.extend_from_slice(&[first, 2]);
    out.extend_from_slice(&id.to_be_bytes());
}

fn id_only(body: &[u8]) -> Result<u16, Error> {
    let mut r = Reader(body);
    let id = r.packet_id()?;
    r.end()?;
    Ok(id)
}

fn empty(body: &[u8]) -> Result<(), Error> {
    Reader(body).end()
}

/// Reads fields from a packet body, never past its end.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn u8(&mut self) -> Result<u8, Error> {
        let (&b, rest) = self.0.split_first().ok_or(Error::Truncated)?;
        self.0 = rest;
        Ok(b)
    }

    pub(crate) fn u16(&mut self) -> Result<u16, Error> {
        let bytes = self.take(2)?;
        Ok(u16::from_be_bytes([bytes[0], bytes[1]]))
    }

    pub(crate) fn packet_id(&mut self) -> Result<u16, Error> {
        match self.u16()? {
            0 => Err(Error::ZeroPacketId),
            id => Ok(id),
        }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.0.len() < n {
            return Err(Error::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    pub(crate) fn binary(&mut self) -> Result<&'a [u8], Error> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    pub(crate) fn string(&mut self) -> Result<&'a str, Error> {
        let s = std::str::from_utf8(self.binary()?).map_err(|_| Error::BadString)?;
        if s.contains('\0') {
            return Err(Error::BadString);
        }
        Ok(s)
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn end(&self) -> Result<(), Error> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::Truncated)
        }
    }
}

pub(crate) fn write_binary(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u16::try_from(bytes.len()).expect("MQTT strings are under 64 KiB: checked when built");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests;
