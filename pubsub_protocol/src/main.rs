//! The `pubsub` binary: an MQTT 3.1.1 broker on 127.0.0.1:1883 by default.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use protocol_server::Server;
use pubsub_protocol::{Broker, Config, Mqtt, Overflow};

/// An MQTT 3.1.1 broker (QoS 0/1/2, retained messages, wills, persistent sessions
/// in memory, $SYS topics) on an epoll reactor and a lock-less thread pool.
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
    /// Messages queued per client (offline, beyond the in-flight window, or behind a
    /// slow socket).
    #[arg(long, default_value_t = 1000)]
    max_queued: usize,
    /// Unacknowledged QoS 1/2 messages in flight per client.
    #[arg(long, default_value_t = 20)]
    max_inflight: usize,
    /// Largest packet accepted, in bytes.
    #[arg(long, default_value_t = 256 << 20)]
    max_packet: usize,
    /// Drop queued and retained messages older than this many seconds (0: never).
    #[arg(long, default_value_t = 0)]
    message_expiry: u64,
    /// When a client's queue is full: drop messages (counted), or stop reading from
    /// publishers until it has room (nothing lost).
    #[arg(long, value_enum, default_value_t = OverflowArg::Drop)]
    overflow: OverflowArg,
    /// Seconds between $SYS/broker/... updates (0: none).
    #[arg(long, default_value_t = 10)]
    sys_interval: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OverflowArg {
    Drop,
    Block,
}

fn main() -> ExitCode {
    let args = Args::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let config = Config {
        max_packet: args.max_packet,
        max_queued: args.max_queued.max(1),
        max_inflight: args.max_inflight.max(1),
        message_expiry: (args.message_expiry > 0).then(|| Duration::from_secs(args.message_expiry)),
        overflow: match args.overflow {
            OverflowArg::Drop => Overflow::Drop,
            OverflowArg::Block => Overflow::Block,
        },
        ..Config::default()
    };
    let broker = Arc::new(Broker::new(config.clone()));
    let periodic = Arc::clone(&broker);
    let sys_interval = args.sys_interval;
    let expiry = config.message_expiry;
    let started = Server::builder()
        .address(args.address)
        .port(args.port)
        .threads(args.threads)
        // Until CONNECT sets the keep-alive, a connection may idle 30 s.
        .timeout(Duration::from_secs(30))
        .on_init(move |server| {
            for addr in server.local_addrs() {
                log::info!("MQTT broker listening on mqtt://{addr}");
            }
            if sys_interval > 0 {
                let (broker, s) = (Arc::clone(&periodic), server.clone());
                let sys = move || broker.publish_sys(&s);
                if let Err(e) = server.run_every(Duration::from_secs(sys_interval), 0, sys) {
                    log::error!("cannot schedule $SYS updates: {e}");
                }
            }
            if let Some(ttl) = expiry {
                // Expired messages leave memory even if nobody reads them.
                let broker = Arc::clone(&periodic);
                let every = ttl.clamp(Duration::from_millis(100), Duration::from_secs(10));
                if let Err(e) = server.run_every(every, 0, move || broker.sweep()) {
                    log::error!("cannot schedule message expiry: {e}");
                }
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
