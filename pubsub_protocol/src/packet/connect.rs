//! CONNECT and CONNACK ([MQTT-3.1], [MQTT-3.2]).

use super::{write_binary, write_header, Error, QoS, Reader};

/// The message published for a client that disconnects without DISCONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastWill {
    /// Where.
    pub topic: String,
    /// What.
    pub message: Vec<u8>,
    /// How.
    pub qos: QoS,
    /// Kept as the retained message of the topic.
    pub retain: bool,
}

/// CONNECT: the first packet of every connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// Protocol level: 4 for 3.1.1 (others get CONNACK 0x01).
    pub level: u8,
    /// Start a fresh session, and drop it at disconnect.
    pub clean_session: bool,
    /// Seconds; 0 disables the keep-alive check.
    pub keep_alive: u16,
    /// May be empty (with clean session the broker assigns one).
    pub client_id: String,
    /// See [`LastWill`].
    pub will: Option<LastWill>,
    /// Read, not checked (anonymous access, as mosquitto's default).
    pub username: Option<String>,
    /// Read, not checked.
    pub password: Option<Vec<u8>>,
}

const USERNAME: u8 = 0x80;
const PASSWORD: u8 = 0x40;
const WILL_RETAIN: u8 = 0x20;
const WILL_QOS: u8 = 0x18;
const WILL: u8 = 0x04;
const CLEAN: u8 = 0x02;
const RESERVED: u8 = 0x01;

impl Connect {
    pub(super) fn read(body: &[u8]) -> Result<Connect, Error> {
        let mut r = Reader(body);
        if r.string()? != "MQTT" {
            return Err(Error::BadProtocol); // [MQTT-3.1.2-1]; 3.1's "MQIsdp" included
        }
        let level = r.u8()?;
        if level != 4 {
            return Err(Error::UnsupportedLevel(level)); // [MQTT-3.1.2-2]
        }
        let flags = r.u8()?;
        if flags & RESERVED != 0 {
            return Err(Error::BadConnectFlags); // [MQTT-3.1.2-3]
        }
        let will_flag = flags & WILL != 0;
        let will_qos = QoS::from_bits((flags & WILL_QOS) >> 3).map_err(|_| Error::BadConnectFlags)?;
        if !will_flag && (will_qos != QoS::AtMostOnce || flags & WILL_RETAIN != 0) {
            return Err(Error::BadConnectFlags); // [MQTT-3.1.2-11], -13, -15
        }
        if flags & USERNAME == 0 && flags & PASSWORD != 0 {
            return Err(Error::BadConnectFlags); // [MQTT-3.1.2-22]
        }
        let keep_alive = r.u16()?;
        let client_id = r.string()?.to_string();
        let will = if will_flag {
            let topic = r.string()?.to_string();
            if !crate::topic::valid_name(&topic) {
                return Err(Error::BadTopic);
            }
            let message = r.binary()?.to_vec();
            Some(LastWill { topic, message, qos: will_qos, retain: flags & WILL_RETAIN != 0 })
        } else {
            None
        };
        let username = if flags & USERNAME != 0 { Some(r.string()?.to_string()) } else { None };
        let password = if flags & PASSWORD != 0 { Some(r.binary()?.to_vec()) } else { None };
        r.end()?;
        Ok(Connect {
            level,
            clean_session: flags & CLEAN != 0,
            keep_alive,
            client_id,
            will,
            username,
            password,
        })
    }

    pub(super) fn write(&self, out: &mut Vec<u8>) {
        let mut body = Vec::new();
        write_binary(&mut body, b"MQTT");
        body.push(self.level);
        let mut flags = 0;
        flags |= if self.clean_session { CLEAN } else { 0 };
        if let Some(w) = &self.will {
            flags |= WILL | ((w.qos as u8) << 3) | if w.retain { WILL_RETAIN } else { 0 };
        }
        flags |= if self.username.is_some() { USERNAME } else { 0 };
        flags |= if self.password.is_some() { PASSWORD } else { 0 };
        body.push(flags);
        body.extend_from_slice(&self.keep_alive.to_be_bytes());
        write_binary(&mut body, self.client_id.as_bytes());
        if let Some(w) = &self.will {
            write_binary(&mut body, w.topic.as_bytes());
            write_binary(&mut body, &w.message);
        }
        if let Some(u) = &self.username {
            write_binary(&mut body, u.as_bytes());
        }
        if let Some(p) = &self.password {
            write_binary(&mut body, p);
        }
        write_header(out, 0x10, body.len());
        out.extend_from_slice(&body);
    }
}

/// CONNACK return codes ([MQTT-3.2.2.3]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectReturn {
    /// 0x00.
    Accepted = 0,
    /// 0x01: protocol level not supported.
    BadLevel = 1,
    /// 0x02: client identifier not allowed.
    IdentifierRejected = 2,
    /// 0x03.
    ServerUnavailable = 3,
    /// 0x04.
    BadCredentials = 4,
    /// 0x05.
    NotAuthorized = 5,
}

/// CONNACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connack {
    /// The server kept a session for this client id ([MQTT-3.2.2-2]).
    pub session_present: bool,
    /// The verdict.
    pub code: ConnectReturn,
}

impl Connack {
    pub(super) fn read(body: &[u8]) -> Result<Connack, Error> {
        let mut r = Reader(body);
        let flags = r.u8()?;
        let code = match r.u8()? {
            0 => ConnectReturn::Accepted,
            1 => ConnectReturn::BadLevel,
            2 => ConnectReturn::IdentifierRejected,
            3 => ConnectReturn::ServerUnavailable,
            4 => ConnectReturn::BadCredentials,
            5 => ConnectReturn::NotAuthorized,
            _ => return Err(Error::Truncated),
        };
        r.end()?;
        if flags & !1 != 0 {
            return Err(Error::BadFlags);
        }
        Ok(Connack { session_present: flags & 1 != 0, code })
    }

    pub(super) fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[0x20, 2, u8::from(self.session_present), self.code as u8]);
    }
}
