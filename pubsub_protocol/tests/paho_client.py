"""Drives the broker with paho-mqtt (the Eclipse Python client): connect, subscribe,
publish, retained message, will. Exits 0 on success; prints what failed otherwise.

Usage: python3 paho_client.py PORT
"""
import queue
import socket
import sys

import paho.mqtt.client as mqtt

PORT = int(sys.argv[1])
TIMEOUT = 10


def client(name, will=None):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv311)
    inbox = queue.Queue()
    c.on_message = lambda _c, _u, m: inbox.put((m.topic, m.payload, m.retain, m.qos))
    subscribed = queue.Queue()
    c.on_subscribe = lambda _c, _u, _mid, codes, _p: subscribed.put(codes)
    if will:
        c.will_set(*will)
    c.connect("127.0.0.1", PORT, keepalive=30)
    c.loop_start()
    return c, inbox, subscribed


def publish(c, topic, payload, qos, retain=False):
    """Publishes and, for QoS 1/2, waits for the broker's acknowledgement: a
    wait_for_publish that times out returns quietly, so check is_published."""
    info = c.publish(topic, payload, qos=qos, retain=retain)
    info.wait_for_publish(TIMEOUT)
    if not info.is_published():
        sys.exit(f"{topic} (QoS {qos}) not acknowledged within {TIMEOUT} s")


def expect(inbox, what):
    try:
        return inbox.get(timeout=TIMEOUT)
    except queue.Empty:
        sys.exit(f"no {what} within {TIMEOUT} s")


sub, inbox, subscribed = client("paho-sub")
sub.subscribe("p/#", qos=1)
expect(subscribed, "SUBACK")

pub, _, _ = client("paho-pub")
for qos in (0, 1, 2):
    publish(pub, "p/x", f"qos{qos}", qos)
    topic, payload, retain, got_qos = expect(inbox, f"QoS {qos} message")
    assert (topic, payload, retain, got_qos) == ("p/x", f"qos{qos}".encode(), False, min(qos, 1)), (topic, payload, retain, got_qos)

publish(pub, "p/kept", "retained", 1, retain=True)
expect(inbox, "the retained message live")
late, late_inbox, late_subscribed = client("paho-late")
late.subscribe("p/kept", qos=1)
expect(late_subscribed, "SUBACK")
topic, payload, retain, _ = expect(late_inbox, "the retained message")
assert (topic, payload, retain) == ("p/kept", b"retained", True), (topic, payload, retain)

doomed, _, _ = client("paho-doomed", will=("p/will", "vanished", 1, False))
doomed.loop_stop()
doomed.socket().shutdown(socket.SHUT_RDWR)  # gone without DISCONNECT
topic, payload, _, _ = expect(inbox, "the will")
assert (topic, payload) == ("p/will", b"vanished"), (topic, payload)

for c in (sub, pub, late):
    c.disconnect()
    c.loop_stop()
print("paho-mqtt: connect, subscribe, publish (QoS 0/1/2), retain and will all work")
