//! One process, one reactor, one pool, two services: the MQTT broker on 1883 and the
//! static-file server on 8080, each on its own listener.
//!
//! `cargo run --release -p pubsub_protocol --example with_httpd`, then
//! `curl http://127.0.0.1:8080/hello.txt` and `mosquitto_sub -p 1883 -t '#' -v`.
use std::sync::Arc;

use httpd::{Http, Site};
use protocol_server::Server;
use pubsub_protocol::{Broker, Config, Mqtt};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let site = Arc::new(Site::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../httpd/www"))?);
    let broker = Arc::new(Broker::new(Config::default()));
    Server::builder()
        .listen("127.0.0.1:8080", move || Http::new(Arc::clone(&site)))
        .listen("127.0.0.1:1883", move || Mqtt::new(Arc::clone(&broker)))
        .on_init(|server| log::info!("http and mqtt on {:?}", server.local_addrs()))
        .start()?;
    Ok(())
}
