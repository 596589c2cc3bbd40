//! Every packet type round-trips; every malformed case the standard names is refused.

use super::*;

const MAX: usize = 1 << 20;

fn round_trip(packet: Packet) {
    let bytes = packet.to_bytes();
    let (back, used) = decode(&bytes, MAX).expect("valid").expect("complete");
    assert_eq!(used, bytes.len());
    assert_eq!(back, packet);
    for cut in 0..bytes.len() {
        assert_eq!(
            decode(&bytes[..cut], MAX),
            Ok(None),
            "a prefix of {cut} bytes is incomplete, not an error"
        );
    }
}

fn connect() -> Connect {
    Connect {
        level: 4,
        clean_session: true,
        keep_alive: 30,
        client_id: "c1".into(),
        will: Some(LastWill {
            topic: "w/t".into(),
            message: b"bye".to_vec(),
            qos: QoS::AtLeastOnce,
            retain: true,
        }),
        username: Some("u".into()),
        password: Some(b"p".to_vec()),
    }
}

#[test]
fn every_packet_type_round_trips() {
    round_trip(Packet::Connect(connect()));
    round_trip(Packet::Connect(Connect { will: None, username: None, password: None, ..connect() }));
    round_trip(Packet::Connack(Connack { session_present: true, code: ConnectReturn::Accepted }));
    round_trip(Packet::Connack(Connack { session_present: false, code: ConnectReturn::IdentifierRejected }));
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let packet_id = (qos != QoS::AtMostOnce).then_some(7);
        let dup = qos != QoS::AtMostOnce;
        round_trip(Packet::Publish(Publish {
            dup,
            qos,
            retain: true,
            topic: "a/b".into(),
            packet_id,
            payload: vec![1; 300].into(),
        }));
    }
    round_trip(Packet::Puback(1));
    round_trip(Packet::Pubrec(2));
    round_trip(Packet::Pubrel(3));
    round_trip(Packet::Pubcomp(u16::MAX));
    round_trip(Packet::Subscribe(Subscribe {
        packet_id: 9,
        filters: vec![("a/+".into(), QoS::AtLeastOnce), ("#".into(), QoS::ExactlyOnce)],
    }));
    round_trip(Packet::Suback(9, vec![1, 2, 0x80]));
    round_trip(Packet::Unsubscribe(Unsubscribe { packet_id: 10, filters: vec!["a/+".into()] }));
    round_trip(Packet::Unsuback(10));
    round_trip(Packet::Pingreq);
    round_trip(Packet::Pingresp);
    round_trip(Packet::Disconnect);
}

#[test]
fn remaining_length_uses_up_to_four_bytes() {
    let big = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "t".into(),
        packet_id: None,
        payload: vec![0; 2_100_000].into(),
    });
    let bytes = big.to_bytes();
    assert_eq!(&bytes[1..4], &[0xA3, 0x96, 0x80], "2,100,003 in three bytes");
    assert!(matches!(decode(&bytes, 4 << 20), Ok(Some((Packet::Publish(_), _)))));
    assert_eq!(decode(&bytes, 1 << 20), Err(Error::TooLarge));
}

/// (what, bytes, error) for malformed input.
fn malformed() -> Vec<(&'static str, Vec<u8>, Error)> {
    let connect_bytes = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b =
            Packet::Connect(Connect { will: None, username: None, password: None, ..connect() }).to_bytes();
        f(&mut b);
        b
    };
    vec![
        ("reserved type 0", vec![0x00, 0], Error::ReservedType),
        ("reserved type 15", vec![0xF0, 0], Error::ReservedType),
        ("five length bytes", vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], Error::BadLength),
        ("PUBREL flags 0", vec![0x60, 2, 0, 1], Error::BadFlags),
        ("SUBSCRIBE flags 0", vec![0x80, 6, 0, 1, 0, 1, b'a', 0], Error::BadFlags),
        ("UNSUBSCRIBE flags 0", vec![0xA0, 5, 0, 1, 0, 1, b'a'], Error::BadFlags),
        ("PINGREQ flags", vec![0xC1, 0], Error::BadFlags),
        ("DISCONNECT with a body", vec![0xE0, 1, 0], Error::Truncated),
        ("PUBLISH QoS 3", vec![0x36, 5, 0, 1, b'a', 0, 1], Error::BadQoS),
        ("PUBLISH DUP at QoS 0", vec![0x38, 3, 0, 1, b'a'], Error::BadQoS),
        ("PUBLISH packet id 0", vec![0x32, 5, 0, 1, b'a', 0, 0], Error::ZeroPacketId),
        ("PUBLISH wildcard topic", vec![0x30, 3, 0, 1, b'#'], Error::BadTopic),
        ("PUBLISH empty topic", vec![0x30, 2, 0, 0], Error::BadTopic),
        ("PUBLISH topic with NUL", vec![0x30, 4, 0, 2, b'a', 0], Error::BadString),
        ("PUBLISH invalid UTF-8", vec![0x30, 4, 0, 2, 0xC3, 0x28], Error::BadString),
        ("PUBLISH topic past the end", vec![0x30, 3, 0, 9, b'a'], Error::Truncated),
        ("PUBACK id 0", vec![0x40, 2, 0, 0], Error::ZeroPacketId),
        ("PUBACK too long", vec![0x40, 3, 0, 1, 0], Error::Truncated),
        ("SUBSCRIBE without topics", vec![0x82, 2, 0, 1], Error::BadSubscription),
        ("SUBSCRIBE reserved QoS bits", vec![0x82, 6, 0, 1, 0, 1, b'a', 0x04], Error::BadSubscription),
        ("SUBSCRIBE QoS 3", vec![0x82, 6, 0, 1, 0, 1, b'a', 3], Error::BadQoS),
        ("UNSUBSCRIBE without topics", vec![0xA2, 2, 0, 1], Error::BadSubscription),
        ("CONNECT other protocol", connect_bytes(&|b| b[5] = b'X'), Error::BadProtocol),
        ("CONNECT reserved flag", connect_bytes(&|b| b[9] |= 0x01), Error::BadConnectFlags),
        ("CONNECT will QoS without will", connect_bytes(&|b| b[9] |= 0x08), Error::BadConnectFlags),
        ("CONNECT will retain without will", connect_bytes(&|b| b[9] |= 0x20), Error::BadConnectFlags),
        ("CONNECT password without username", connect_bytes(&|b| b[9] |= 0x40), Error::BadConnectFlags),
        ("CONNECT will QoS 3", connect_bytes(&|b| b[9] |= 0x04 | 0x18), Error::BadConnectFlags),
    ]
}

#[test]
fn malformed_packets_are_refused_with_their_reason() {
    for (what, bytes, want) in malformed() {
        assert_eq!(decode(&bytes, MAX), Err(want), "{what}: {bytes:?}");
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..100_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 40) as usize;
        let bytes: Vec<u8> = (0..len).map(|i| (x >> (i % 8 * 8)) as u8 ^ i as u8).collect();
        let _ = decode(&bytes, 64);
    }
}
