//! `pubsub_protocol`: an MQTT 3.1.1 broker on `protocol_server`.
//!
//! In the picture of `DESIGN.md` this is the second service on top of the framework.
//! So far: the wire format ([`packet`]: every control packet, both directions, with
//! the malformed cases of the standard rejected) and topics ([`topic`]: validation,
//! matching, and the subscription trie a publish walks instead of scanning).
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![forbid(unsafe_code)]

pub mod packet;
pub mod topic;
