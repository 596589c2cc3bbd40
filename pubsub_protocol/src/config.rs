//! The broker's settings, and every bound it keeps: what a client may make it hold.
//!
//! Defaults follow mosquitto where it has one (`max_queued_messages 1000`,
//! `max_inflight_messages 20`, topics of at most 200 levels); where it has none (it
//! holds any number of retained messages and persistent sessions for ever) the
//! default is a finite bound a real deployment should not reach, so that memory has
//! a ceiling. `pubsub_protocol/CONFORMANCE.md` lists each bound with its key and
//! what a client sees when it is reached.

use std::time::Duration;

use crate::topic::Bounds;

/// What to do when a subscriber's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Drop: a queued QoS 0 message first, else the new one; every drop is counted.
    #[default]
    Drop,
    /// Stop reading from publishers until the queue has room: nothing is lost. Only a
    /// *connected* subscriber can pause publishers; an offline session's queue
    /// overflows as under `Drop`, so no absent client can stop the broker.
    Block,
}

/// Broker settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Largest packet accepted (bigger ones close the connection).
    pub max_packet: usize,
    /// Messages queued per session: offline (QoS 1/2), beyond the in-flight window,
    /// or behind a socket that is not taking what we send.
    pub max_queued: usize,
    /// Payload and topic bytes queued per session (0: no limit, as mosquitto's
    /// `max_queued_bytes 0`); whichever of this and `max_queued` is reached first.
    pub max_queued_bytes: usize,
    /// Outgoing QoS 1/2 messages awaiting acknowledgement per session.
    pub max_inflight: usize,
    /// Queued and retained messages older than this are dropped (`None`: kept).
    pub message_expiry: Option<Duration>,
    /// See [`Overflow`].
    pub overflow: Overflow,
    /// Deepest and longest topic name or filter accepted.
    pub topic: Bounds,
    /// Longest client id accepted (longer: CONNACK 0x02).
    pub max_client_id: usize,
    /// Persistent sessions held, connected or not (a new one past it: CONNACK 0x03).
    pub max_persistent_sessions: usize,
    /// A persistent session unused for longer is removed (mosquitto's
    /// `persistent_client_expiration`; `None`: kept for ever).
    pub persistent_expiry: Option<Duration>,
    /// Retained messages held (a new retained topic past it is not retained).
    pub max_retained: usize,
    /// Payload and topic bytes of all retained messages together.
    pub max_retained_bytes: usize,
    /// Largest keep-alive a client may ask for, in seconds (mosquitto's
    /// `max_keepalive`: a 3.1.1 client asking for more, or for none (0), gets
    /// CONNACK 0x02; `u16::MAX`: no limit).
    pub max_keepalive: u16,
    /// Whether clients may publish retained messages (mosquitto's
    /// `retain_available`: when false, a retained PUBLISH or will closes the connection).
    pub retain_available: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_packet: 256 << 20,
            max_queued: 1000,
            max_queued_bytes: 0,
            max_inflight: 20,
            message_expiry: None,
            overflow: Overflow::Drop,
            topic: Bounds::default(),
            max_client_id: usize::from(u16::MAX),
            max_persistent_sessions: 1_000_000,
            persistent_expiry: None,
            max_retained: 1_000_000,
            max_retained_bytes: 1 << 30,
            max_keepalive: u16::MAX,
            retain_available: true,
        }
    }
}
