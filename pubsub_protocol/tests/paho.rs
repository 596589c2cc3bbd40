//! The Eclipse Python client, paho-mqtt (installed by `.ci/run`), against the broker:
//! connect, subscribe, publish at every QoS, retained messages and wills.

mod util;

use std::process::Command;

use util::start;

#[test]
fn paho_mqtt_connects_subscribes_publishes_retains_and_gets_wills() {
    let running = start();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/paho_client.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(running.addr.port().to_string())
        .output()
        .expect("python3 runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "paho-mqtt session failed (is paho-mqtt installed? .ci/run installs it):\n{text}"
    );
    running.stop();
}
