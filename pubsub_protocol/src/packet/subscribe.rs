//! SUBSCRIBE, SUBACK, UNSUBSCRIBE ([MQTT-3.8] to [MQTT-3.11]).

use super::{write_binary, write_header, Error, QoS, Reader};

/// SUBSCRIBE: filters with their requested QoS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Echoed in SUBACK.
    pub packet_id: u16,
    /// At least one ([MQTT-3.8.3-3]).
    pub filters: Vec<(String, QoS)>,
}

impl Subscribe {
    pub(super) fn read(body: &[u8]) -> Result<Subscribe, Error> {
        let mut r = Reader(body);
        let packet_id = r.packet_id()?;
        let mut filters = Vec::new();
        while !r.is_empty() {
            let filter = r.string()?.to_string();
            let options = r.u8()?;
            if options & 0xFC != 0 {
                return Err(Error::BadSubscription); // [MQTT-3.8.3-4]
            }
            filters.push((filter, QoS::from_bits(options)?));
        }
        if filters.is_empty() {
            return Err(Error::BadSubscription);
        }
        Ok(Subscribe { packet_id, filters })
    }

    pub(super) fn write(&self, out: &mut Vec<u8>) {
        let len = 2 + self.filters.iter().map(|(f, _)| 3 + f.len()).sum::<usize>();
        write_header(out, 0x82, len);
        out.extend_from_slice(&self.packet_id.to_be_bytes());
        for (filter, qos) in &self.filters {
            write_binary(out, filter.as_bytes());
            out.push(*qos as u8);
        }
    }
}

/// UNSUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Echoed in UNSUBACK.
    pub packet_id: u16,
    /// At least one ([MQTT-3.10.3-2]).
    pub filters: Vec<String>,
}

impl Unsubscribe {
    pub(super) fn read(body: &[u8]) -> Result<Unsubscribe, Error> {
        let mut r = Reader(body);
        let packet_id = r.packet_id()?;
        let mut filters = Vec::new();
        while !r.is_empty() {
            filters.push(r.string()?.to_string());
        }
        if filters.is_empty() {
            return Err(Error::BadSubscription);
        }
        Ok(Unsubscribe { packet_id, filters })
    }

    pub(super) fn write(&self, out: &mut Vec<u8>) {
        let len = 2 + self.filters.iter().map(|f| 2 + f.len()).sum::<usize>();
        write_header(out, 0xA2, len);
        out.extend_from_slice(&self.packet_id.to_be_bytes());
        for filter in &self.filters {
            write_binary(out, filter.as_bytes());
        }
    }
}

pub(super) fn read_suback(body: &[u8]) -> Result<(u16, Vec<u8>), Error> {
    let mut r = Reader(body);
    let id = r.packet_id()?;
    let codes = r.rest().to_vec();
    if codes.is_empty() || codes.iter().any(|c| !matches!(c, 0 | 1 | 2 | 0x80)) {
        return Err(Error::BadSubscription);
    }
    Ok((id, codes))
}

pub(super) fn write_suback(out: &mut Vec<u8>, id: u16, codes: &[u8]) {
    write_header(out, 0x90, 2 + codes.len());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(codes);
}
