//! The `pubsub` binary: an MQTT 3.1.1 broker on 127.0.0.1:1883 by default.
//!
//! Settings come from flags, then from `-c FILE` (mosquitto's key names), then from
//! the defaults: a flag overrides the file, as with mosquitto's `-p` over `listener`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use protocol_server::Server;
use pubsub_protocol::conf::{self, ConfFile};
use pubsub_protocol::topic::Bounds;
use pubsub_protocol::{Broker, Config, Mqtt, Overflow, Security, SecurityFiles};

/// Counts allocations for `bench mqtt --count` (see `pubsub_protocol::count_alloc`).
#[cfg(feature = "count-alloc")]
#[global_allocator]
static ALLOCATOR: pubsub_protocol::count_alloc::Counting = pubsub_protocol::count_alloc::COUNTING;

/// An MQTT 3.1.1 broker (QoS 0/1/2, retained messages, wills, persistent sessions
/// in memory, $SYS topics) on an epoll reactor and a lock-less thread pool.
#[derive(Debug, Parser)]
#[command(name = "pubsub", version, about)]
struct Args {
    /// A mosquitto.conf(5) subset: listener, allow_anonymous, password_file, acl_file,
    /// max_queued_messages, ... (see the README). Flags override it.
    #[arg(short = 'c', long = "config-file", value_name = "FILE")]
    config_file: Option<PathBuf>,
    /// Address to listen on (0.0.0.0 for every interface) [default: 127.0.0.1].
    #[arg(long)]
    address: Option<String>,
    /// Port to listen on (0 picks a free one) [default: 1883].
    #[arg(short = 'p', long)]
    port: Option<u16>,
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Messages queued per client (offline, beyond the in-flight window, or behind a
    /// slow socket) [default: 1000; file: max_queued_messages].
    #[arg(long)]
    max_queued: Option<usize>,
    /// Topic and payload bytes queued per client (0: no limit) [default: 0; file:
    /// max_queued_bytes].
    #[arg(long)]
    max_queued_bytes: Option<usize>,
    /// Unacknowledged QoS 1/2 messages in flight per client [default: 20; file:
    /// max_inflight_messages].
    #[arg(long)]
    max_inflight: Option<usize>,
    /// Largest packet accepted, in bytes [default: 268435456; file: max_packet_size].
    #[arg(long)]
    max_packet: Option<usize>,
    /// Drop queued and retained messages older than this many seconds (0: never).
    #[arg(long)]
    message_expiry: Option<u64>,
    /// When a connected client's queue is full: drop messages (counted), or stop
    /// reading from publishers until it has room (nothing lost) [default: drop].
    #[arg(long, value_enum)]
    overflow: Option<OverflowArg>,
    /// Seconds between $SYS/broker/... updates (0: none) [default: 10].
    #[arg(long)]
    sys_interval: Option<u64>,
    /// Most levels of a topic name or filter [default: 200].
    #[arg(long)]
    max_topic_levels: Option<usize>,
    /// Most bytes of a topic name or filter [default: 65535].
    #[arg(long)]
    max_topic_length: Option<usize>,
    /// Longest client id accepted [default: 65535].
    #[arg(long)]
    max_client_id_length: Option<usize>,
    /// Persistent sessions held, connected or not [default: 1000000].
    #[arg(long)]
    max_persistent_sessions: Option<usize>,
    /// Remove persistent sessions unused for this many seconds (0: never) [default: 0;
    /// file: persistent_client_expiration, e.g. 2d].
    #[arg(long)]
    persistent_client_expiration: Option<u64>,
    /// Retained messages held [default: 1000000].
    #[arg(long)]
    max_retained_messages: Option<usize>,
    /// Topic and payload bytes of all retained messages [default: 1073741824].
    #[arg(long)]
    max_retained_bytes: Option<usize>,
    /// Concurrent client connections (-1: as many as the open-file limit allows).
    #[arg(long, allow_negative_numbers = true)]
    max_connections: Option<i64>,
    /// Let clients without a username connect [default: true, but false when a
    /// password file is given or the configuration file sets a listener, as in
    /// mosquitto 2.0].
    #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
    allow_anonymous: Option<bool>,
    /// mosquitto's password file (made by mosquitto_passwd); SIGHUP re-reads it.
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// mosquitto's ACL file; SIGHUP re-reads it.
    #[arg(long, value_name = "FILE")]
    acl_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OverflowArg {
    Drop,
    Block,
}

/// Everything the binary decided from flags, file and defaults.
#[derive(Debug)]
struct Settings {
    config: Config,
    security: SecurityFiles,
    listeners: Vec<String>,
    sys_interval: u64,
    max_connections: Option<usize>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let file = match args.config_file.as_deref().map(conf::load).transpose() {
        Ok(file) => file.unwrap_or_default(),
        Err(e) => {
            eprintln!("pubsub: {e}");
            return ExitCode::FAILURE;
        }
    };
    file.warnings.iter().for_each(|w| log::warn!("{w}"));
    let settings = settings(&args, &file);
    match serve(args.threads, settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pubsub: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Flags over the file over the defaults.
fn settings(args: &Args, file: &ConfFile) -> Settings {
    let d = Config::default();
    let pick = |flag: Option<usize>, key: Option<usize>, default: usize| flag.or(key).unwrap_or(default);
    // mosquitto's 0 means "no limit" for these keys.
    let unlimited_if_0 = |n: usize| if n == 0 { usize::MAX } else { n };
    let seconds = |s: u64| (s > 0).then(|| Duration::from_secs(s));
    let config = Config {
        max_packet: pick(args.max_packet, packet_limit(file), d.max_packet),
        max_queued: unlimited_if_0(pick(args.max_queued, file.max_queued_messages, d.max_queued)),
        max_queued_bytes: pick(args.max_queued_bytes, file.max_queued_bytes, d.max_queued_bytes),
        max_inflight: unlimited_if_0(pick(args.max_inflight, file.max_inflight_messages, d.max_inflight)),
        message_expiry: args.message_expiry.or(file.message_expiry).and_then(seconds),
        overflow: match args.overflow {
            Some(OverflowArg::Drop) => Overflow::Drop,
            Some(OverflowArg::Block) => Overflow::Block,
            None => file.overflow.unwrap_or(d.overflow),
        },
        topic: Bounds {
            max_levels: pick(args.max_topic_levels, file.max_topic_levels, d.topic.max_levels),
            max_length: pick(args.max_topic_length, file.max_topic_length, d.topic.max_length),
        },
        max_client_id: pick(args.max_client_id_length, file.max_client_id_length, d.max_client_id),
        max_persistent_sessions: pick(
            args.max_persistent_sessions,
            file.max_persistent_sessions,
            d.max_persistent_sessions,
        ),
        persistent_expiry: args
            .persistent_client_expiration
            .map(seconds)
            .unwrap_or(file.persistent_client_expiration.filter(|t| !t.is_zero())),
        max_retained: pick(args.max_retained_messages, file.max_retained_messages, d.max_retained),
        max_retained_bytes: pick(args.max_retained_bytes, file.max_retained_bytes, d.max_retained_bytes),
        max_keepalive: file.max_keepalive.filter(|n| *n > 0).unwrap_or(d.max_keepalive),
        retain_available: file.retain_available.unwrap_or(d.retain_available),
    };
    let max_connections = args.max_connections.or(file.max_connections).and_then(|n| usize::try_from(n).ok());
    // mosquitto 2.0 refuses anonymous clients once a listener is configured; a password
    // file given any way is taken as the same intent.
    let configured =
        !file.listeners.is_empty() || file.password_file.is_some() || args.password_file.is_some();
    let security = SecurityFiles {
        allow_anonymous: args.allow_anonymous.or(file.allow_anonymous).unwrap_or(!configured),
        password_file: args.password_file.clone().or_else(|| file.password_file.clone()),
        acl_file: args.acl_file.clone().or_else(|| file.acl_file.clone()),
    };
    Settings {
        config,
        security,
        listeners: listeners(args, file),
        sys_interval: args.sys_interval.or(file.sys_interval).unwrap_or(10),
        max_connections,
    }
}

/// `max_packet_size`, or mosquitto's `message_size_limit` (a payload bound) turned
/// into a packet bound: the payload plus the largest topic and header.
fn packet_limit(file: &ConfFile) -> Option<usize> {
    let from_payload = file.message_size_limit.filter(|n| *n > 0).map(|n| n.saturating_add(65_546));
    match (file.max_packet_size.filter(|n| *n > 0), from_payload) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The flags' listener if either is given, else the file's, else 127.0.0.1:1883.
fn listeners(args: &Args, file: &ConfFile) -> Vec<String> {
    if args.port.is_some() || args.address.is_some() || file.listeners.is_empty() {
        let address = args.address.clone().unwrap_or_else(|| "127.0.0.1".into());
        return vec![join(&address, args.port.unwrap_or(1883))];
    }
    file.listeners.iter().map(|l| join(l.address.as_deref().unwrap_or("0.0.0.0"), l.port)).collect()
}

/// `host:port`, with brackets for an IPv6 address.
fn join(address: &str, port: u16) -> String {
    if address.contains(':') && !address.starts_with('[') {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    }
}

fn serve(threads: usize, settings: Settings) -> Result<(), Box<dyn std::error::Error>> {
    let Settings { config, security, listeners, sys_interval, max_connections } = settings;
    let broker = Arc::new(Broker::new(config.clone()));
    let rules = Security::load(&security)?;
    log::info!("security: {}", rules.describe());
    broker.set_security(rules);
    reload_on_sighup(Arc::clone(&broker), security)?;
    let periodic = Arc::clone(&broker);
    let mut builder = Server::builder()
        .threads(threads)
        // Until CONNECT sets the keep-alive, a connection may idle 30 s.
        .timeout(Duration::from_secs(30))
        .on_init(move |server| schedule(server, &periodic, &config, sys_interval));
    if let Some(n) = max_connections {
        builder = builder.max_connections(n);
    }
    for address in listeners {
        let broker = Arc::clone(&broker);
        builder = builder.listen(&address, move || Mqtt::new(Arc::clone(&broker)));
    }
    Ok(builder.start()?)
}

/// SIGHUP re-reads the password and ACL files, as mosquitto does; a file that fails
/// to load leaves the rules in force as they were.
fn reload_on_sighup(broker: Arc<Broker>, files: SecurityFiles) -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])?;
    std::thread::Builder::new().name("sighup".into()).spawn(move || {
        for _ in signals.forever() {
            match Security::load(&files) {
                Ok(rules) => {
                    log::info!("SIGHUP: security reloaded: {}", rules.describe());
                    broker.set_security(rules);
                }
                Err(e) => log::error!("SIGHUP: reload failed, the previous rules stay in force: {e}"),
            }
        }
    })?;
    Ok(())
}

/// The broker's own timers: `$SYS`, message expiry, persistent session expiry.
fn schedule(server: &Server, broker: &Arc<Broker>, config: &Config, sys_interval: u64) {
    for addr in server.local_addrs() {
        log::info!("MQTT broker listening on mqtt://{addr}");
    }
    let every = |period: Duration, what: &str, task: Box<dyn Fn() + Send + Sync>| {
        if let Err(e) = server.run_every(period, 0, task) {
            log::error!("cannot schedule {what}: {e}");
        }
    };
    if sys_interval > 0 {
        let (b, s) = (Arc::clone(broker), server.clone());
        every(Duration::from_secs(sys_interval), "$SYS updates", Box::new(move || b.publish_sys(&s)));
    }
    if let Some(ttl) = config.message_expiry {
        // Expired messages leave memory even if nobody reads them.
        let b = Arc::clone(broker);
        let period = ttl.clamp(Duration::from_millis(100), Duration::from_secs(10));
        every(period, "message expiry", Box::new(move || b.sweep()));
    }
    if let Some(ttl) = config.persistent_expiry {
        let b = Arc::clone(broker);
        let period = ttl.clamp(Duration::from_secs(1), Duration::from_secs(60));
        every(period, "persistent session expiry", Box::new(move || b.expire_sessions()));
    }
}
