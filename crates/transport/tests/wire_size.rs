//! The encoded size of a packet carrying one 32-byte message, as `PROTOCOL.md` states it,
//! measured on what a real endpoint sends.

use sturnus_testkit::sim;

use std::time::Duration;

use sim::Sim;
use sturnus_netem::LinkConfig;
use sturnus_transport::{ChannelId, ConnectionId, EndpointConfig, Qos};

/// A client endpoint connected to a server with one channel of kind `qos`, the handshake's
/// traffic settled so that no acknowledgement is owed.
fn connected(qos: Qos, seed: u64) -> (Sim, usize, ConnectionId) {
    let config = EndpointConfig { channels: vec![qos], ..EndpointConfig::default() };
    let mut sim = Sim::new(LinkConfig::perfect(), seed);
    let server = sim.add(config.clone());
    let client = sim.add(config);
    let (conn, _) = sim.connect(client, server);
    sim.run_for(Duration::from_millis(50));
    (sim, client, conn)
}

/// The size of the datagram an established connection sends for one 32-byte message on a
/// channel of kind `qos`.
fn datagram_for_one_message(qos: Qos) -> usize {
    let (mut sim, client, conn) = connected(qos, 1);
    sim.nodes[client].endpoint.send(conn, ChannelId(0), &[0xAB; 32]).unwrap();
    let datagrams = sim.capture(client);
    assert_eq!(datagrams.len(), 1, "the message goes out at once, in one datagram");
    datagrams[0].1.len()
}

#[test]
fn one_32_byte_unreliable_message_costs_10_bytes_of_overhead() {
    // 8-byte header (4 of them the tag) + channel (1) + length (1) + payload (32)
    assert_eq!(datagram_for_one_message(Qos::Unreliable), 42);
}

#[test]
fn one_32_byte_reliable_sequenced_message_costs_12_bytes_of_overhead() {
    // 8-byte header + channel (1) + length (1) + message number (2) + payload (32)
    assert_eq!(datagram_for_one_message(Qos::ReliableSequenced), 44);
}

#[test]
fn aggregated_small_reliable_messages_cost_2_bytes_each() {
    let (mut sim, client, conn) = connected(Qos::ReliableSequenced, 2);
    for _ in 0..30 {
        sim.nodes[client].endpoint.send(conn, ChannelId(0), &[0xCD; 32]).unwrap();
    }
    let datagrams = sim.capture(client);
    // Header (8) + the first message with its number (4 + 32) + 29 × (2 + 32).
    assert_eq!(datagrams[0].1.len(), 8 + 36 + 29 * 34);
}

#[test]
fn a_stream_is_acknowledged_every_second_packet_without_waiting_for_the_delay() {
    let (mut sim, client, conn) = connected(Qos::ReliableSequenced, 3);
    let (server, now, client_addr) = (0, sim.now, sim.addr(client));
    for _ in 0..2 {
        sim.nodes[client].endpoint.send(conn, ChannelId(0), &[0x11; 1000]).unwrap();
    }
    let packets = sim.capture(client);
    assert_eq!(packets.len(), 2, "one 1000-byte message per packet");
    sim.nodes[server].endpoint.handle_datagram(now, client_addr, &packets[0].1);
    assert!(sim.capture(server).is_empty(), "a lone packet waits for ack_delay");
    sim.nodes[server].endpoint.handle_datagram(now, client_addr, &packets[1].1);
    let ack = sim.capture(server);
    let ack = &ack.first().expect("the second packet is acknowledged now").1;
    assert!(ack.len() <= 12, "a bare acknowledgement, {} bytes", ack.len());
}
