//! The broker's counters, published under `$SYS/broker/...`.

use std::sync::atomic::AtomicU64;

/// Counters, for `$SYS` and tests. Every refusal a bound or a rule causes is counted
/// here as well as logged with the client id.
#[derive(Debug, Default)]
pub struct Stats {
    /// PUBLISH packets received from clients.
    pub received: AtomicU64,
    /// PUBLISH packets sent.
    pub sent: AtomicU64,
    /// Messages dropped because a queue was full.
    pub dropped: AtomicU64,
    /// Messages dropped because they outlived `message_expiry`.
    pub expired: AtomicU64,
    /// Bytes read from clients.
    pub bytes_received: AtomicU64,
    /// Bytes queued to clients.
    pub bytes_sent: AtomicU64,
    /// Topic names or filters refused for their depth or length.
    pub refused_topics: AtomicU64,
    /// CONNECTs refused: client id too long, or no room for another persistent session.
    pub refused_connects: AtomicU64,
    /// Retained messages not kept: the retained bounds were reached.
    pub refused_retained: AtomicU64,
    /// Persistent sessions removed after `persistent_expiry` unused.
    pub expired_sessions: AtomicU64,
    /// CONNECTs refused by `allow_anonymous` or the password file.
    pub denied_logins: AtomicU64,
    /// PUBLISH packets acknowledged but dropped: no write access.
    pub denied_publishes: AtomicU64,
    /// Filters refused with SUBACK 0x80: no read access.
    pub denied_subscriptions: AtomicU64,
    /// Messages not delivered (or taken from a queue and dropped): no read access.
    pub denied_deliveries: AtomicU64,
}
