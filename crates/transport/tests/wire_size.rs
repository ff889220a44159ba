//! The encoded size of a packet carrying one 32-byte message, as `PROTOCOL.md` states it.

use sturnus_transport::proto::codec::Writer;
use sturnus_transport::proto::packet::{DataHeader, RecordHeader};
use sturnus_transport::proto::seq::{MessageSeq, PacketSeq};
use sturnus_transport::{ChannelId, EndpointConfig, Qos};

/// Encodes one data packet (no recent loss, so no ack field) with one 32-byte message on a
/// channel of kind `qos`, numbered as its kind requires.
fn packet_with_one_message(qos: Qos) -> usize {
    let config = EndpointConfig {
        channels: vec![qos],
        ..EndpointConfig::default()
    };
    config.validate().unwrap();
    let mut buf = [0u8; 1200];
    let mut w = Writer::new(&mut buf);
    let header = DataHeader {
        seq: PacketSeq::new(1),
        ack: PacketSeq::new(0),
        ack_bits: u32::MAX,
    };
    header.encode(&mut w).unwrap();
    let record = RecordHeader {
        channel: ChannelId(0),
        len: 32,
        seq: qos.is_numbered().then(|| MessageSeq::new(0)),
        fragment: None,
    };
    record
        .encode(&[0xAB; 32], qos.is_fragmented(), &mut w)
        .unwrap();
    w.len()
}

#[test]
fn one_32_byte_unreliable_message_costs_6_bytes_of_overhead() {
    // 4-byte header + channel (1) + length (1) + payload (32)
    assert_eq!(packet_with_one_message(Qos::Unreliable), 38);
}

#[test]
fn one_32_byte_reliable_sequenced_message_costs_8_bytes_of_overhead() {
    // 4-byte header + channel (1) + length (1) + message number (2) + payload (32)
    assert_eq!(packet_with_one_message(Qos::ReliableSequenced), 40);
}
