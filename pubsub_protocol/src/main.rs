//! The `pubsub` binary: an MQTT 3.1.1 broker on 127.0.0.1:1883 by default.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use protocol_server::Server;
use pubsub_protocol::{Broker, Config, Mqtt};

/// An MQTT 3.1.1 broker (QoS 0/1/2, retained messages, wills, persistent sessions
/// in memory) on an epoll reactor and a lock-less thread pool.
#[derive(Debug, Parser)]
#[command(name = "pubsub", version, about)]
struct Args {
    /// Address to listen on (0.0.0.0 for every interface).
    #[arg(long, default_value = "127.0.0.1")]
    address: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 1883)]
    port: u16,
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// QoS 1/2 messages queued per client beyond its in-flight window.
    #[arg(long, default_value_t = 1000)]
    max_queued: usize,
    /// Unacknowledged QoS 1/2 messages in flight per client.
    #[arg(long, default_value_t = 20)]
    max_inflight: usize,
    /// Largest packet accepted, in bytes.
    #[arg(long, default_value_t = 256 << 20)]
    max_packet: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let config = Config {
        max_packet: args.max_packet,
        max_queued: args.max_queued,
        max_inflight: args.max_inflight.max(1),
    };
    let broker = Arc::new(Broker::new(config));
    let started = Server::builder()
        .address(args.address)
        .port(args.port)
        .threads(args.threads)
        // Keep-alive sets each connection's timeout; until CONNECT, 30 s.
        .timeout(std::time::Duration::from_secs(30))
        .on_init(|server| {
            for addr in server.local_addrs() {
                log::info!("MQTT broker listening on mqtt://{addr}");
            }
        })
        .protocol(move || Mqtt::new(Arc::clone(&broker)))
        .start();
    match started {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pubsub: {e}");
            ExitCode::FAILURE
        }
    }
}
