//! The `httpd` binary: serves a folder over HTTP/1.1.
//!
//! With no arguments it serves the bundled `httpd/www` on http://127.0.0.1:8080/.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use httpd::{Http, Site};
use protocol_server::Server;

/// A static-file HTTP/1.1 server (GET and HEAD, conditional and range requests,
/// sendfile), built on an epoll reactor and a lock-less thread pool.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Folder to serve.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/www"))]
    root: PathBuf,
    /// Address to listen on (0.0.0.0 for every interface).
    #[arg(long, default_value = "127.0.0.1")]
    address: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Worker threads per process (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Worker processes sharing the port.
    #[arg(long, default_value_t = 1)]
    processes: usize,
    /// Serve on the event-loop thread itself, without worker threads (--threads is
    /// ignored): one thread per process, like nginx's workers; use --processes for
    /// more cores. Fewer context switches; a slow disk read stalls the process.
    #[arg(long)]
    inline: bool,
    /// Seconds an idle keep-alive connection is kept.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// Seconds a client may take to send a request head (slowloris guard).
    #[arg(long, default_value_t = 10)]
    header_timeout: u64,
    /// Log every request in Common Log Format (the default).
    #[arg(long, conflicts_with = "quiet")]
    access_log: bool,
    /// No access log (benchmarks).
    #[arg(long)]
    quiet: bool,
    /// Seconds an opened file (and a small file's bytes) is reused before its path is
    /// resolved again, like nginx's open_file_cache_valid (0: resolve every request).
    #[arg(long, default_value_t = 1)]
    open_file_cache: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut site = match Site::new(&args.root) {
        Ok(site) => site,
        Err(e) => {
            eprintln!("httpd: cannot serve {e}");
            return ExitCode::FAILURE;
        }
    };
    site.access_log = !args.quiet;
    site.header_timeout = Duration::from_secs(args.header_timeout.max(1));
    site.file_cache = Arc::new(httpd::cache::FileCache::new(Duration::from_secs(args.open_file_cache)));
    let root = site.root.clone();
    let site = Arc::new(site);
    let started = Server::builder()
        .address(args.address)
        .port(args.port)
        .threads(args.threads)
        .inline(args.inline)
        .processes(args.processes)
        .timeout(Duration::from_secs(args.timeout))
        .busy_msg("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .on_init(move |server| {
            for addr in server.local_addrs() {
                log::info!("serving {} on http://{addr}/", root.display());
            }
        })
        .protocol(move || Http::new(Arc::clone(&site)))
        .start();
    match started {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("httpd: {e}");
            ExitCode::FAILURE
        }
    }
}
