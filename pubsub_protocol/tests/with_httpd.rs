//! The broker and httpd share one server (one reactor, one pool) on two listeners,
//! as `examples/with_httpd.rs` runs them.

mod util;

use std::io::{Read, Write};
use std::sync::Arc;

use httpd::{Http, Site};
use protocol_server::Server;
use pubsub_protocol::packet::QoS;
use pubsub_protocol::{Broker, Config, Mqtt};
use util::{Client, PATIENCE};

#[test]
fn one_server_serves_http_and_mqtt_on_two_listeners() {
    let mut site = Site::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../httpd/www")).expect("bundled site");
    site.access_log = false;
    let site = Arc::new(site);
    let broker = Arc::new(Broker::new(Config::default()));
    let builder = Server::builder()
        .threads(2)
        .signals(false)
        .listen("127.0.0.1:0", move || Http::new(Arc::clone(&site)))
        .listen("127.0.0.1:0", move || Mqtt::new(Arc::clone(&broker)));
    let (server, thread) = builder.spawn().expect("the server starts");
    let (http, mqtt) = (server.local_addrs()[0], server.local_addrs()[1]);

    let mut web = std::net::TcpStream::connect(http).expect("connect");
    web.set_read_timeout(Some(PATIENCE)).expect("set the read timeout");
    web.write_all(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("write");
    let mut page = String::new();
    web.read_to_string(&mut page).expect("httpd answers and closes (Connection: close) in time");
    assert!(page.starts_with("HTTP/1.1 200 OK") && page.ends_with("Hello, World!"), "{page}");

    let (mut sub, _) = Client::connect(mqtt, "s", true, None);
    sub.subscribe("t", QoS::AtMostOnce);
    let (mut p, _) = Client::connect(mqtt, "p", true, None);
    p.publish("t", b"both", QoS::AtMostOnce, false);
    assert_eq!(&sub.received().payload[..], b"both");
    assert_eq!(server.count(Some("mqtt")), 2);
    // The web client saw EOF before the server's own bookkeeping of the close ran (on
    // the reactor thread): poll, nothing signals it.
    let deadline = std::time::Instant::now() + PATIENCE;
    while server.count(Some("http")) != 0 {
        assert!(std::time::Instant::now() < deadline, "the closed web connection is still counted");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }

    server.stop();
    thread.join().expect("thread").expect("clean stop");
}
