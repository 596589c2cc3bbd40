//! `pubsub_protocol`: an MQTT 3.1.1 broker on `protocol_server`.
//!
//! In the picture of `ARCHITECTURE.md` (at the repository root) this is the second
//! service on top of the framework: [`Mqtt`] is the per-connection `Protocol`, [`Broker`]
//! the shared state (sessions, the subscription trie, retained messages). The wire format
//! is in [`packet`] (every control packet, both directions, malformed cases refused) and
//! topic rules in [`topic`] (validation, matching, the trie a publish walks instead of a
//! scan).
//!
//! ```no_run
//! use std::sync::Arc;
//! use protocol_server::Server;
//! use pubsub_protocol::{Broker, Config, Mqtt};
//!
//! let broker = Arc::new(Broker::new(Config::default()));
//! Server::builder().port(1883).protocol(move || Mqtt::new(Arc::clone(&broker))).start()?;
//! # Ok::<(), protocol_server::Error>(())
//! ```
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![forbid(unsafe_code)]

pub mod auth;
mod broker;
pub mod conf;
mod config;
#[cfg(feature = "count-alloc")]
pub mod count_alloc;
pub mod packet;
mod protocol;
mod retained;
mod security;
mod session;
mod stats;
mod sys;
#[cfg(test)]
mod test_rng;
pub mod topic;

pub use broker::{Broker, Config, Overflow, Stats};
pub use protocol::Mqtt;
pub use security::{Security, SecurityFiles};
