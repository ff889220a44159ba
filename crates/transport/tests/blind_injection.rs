//! An off-path attacker against a live connection: it knows the client's address and the
//! server's (and so can forge datagrams from either), but it never sees the traffic between
//! them, so it does not know the salts of the handshake. It sends plausible data packets
//! (random packet numbers, acks, ack fields and tags; well-formed records carrying a marker)
//! and disconnect notices with random tokens, both ways, while honest traffic flows.
//!
//! `PROTOCOL.md` (*Security*) promises that such a packet is accepted with a chance of 2^-32
//! (the packet tag) and a disconnect with 2^-64 (the token). Before the tag, about one forged
//! packet in eight was accepted on a long-lived connection.

#![allow(
    clippy::cast_possible_truncation,
    reason = "random test data is cut to the width of its field on purpose"
)]

use sturnus_testkit::sim;

use std::time::Duration;

use sim::{Owned, Sim};
use sturnus_netem::{LinkConfig, Rng};
use sturnus_transport::{ChannelId, ConnectionStats, EndpointConfig, Qos};

/// The payload prefix of every forged record: delivering one means a forged packet was
/// accepted.
const MARK: &[u8] = b"FORGED";
/// Forged data packets sent each way.
const FORGED_PER_SIDE: u64 = 100_000;

/// A forged data packet: a random header of any ack-field length with a random tag, then an
/// unreliable record (channel 1) and a numbered reliable record (channel 0), both marked.
fn forged_data_packet(rng: &mut Rng) -> Vec<u8> {
    let mut packet = Vec::with_capacity(64);
    let word0 = (rng.next_u64() as u16) & 0x7FFF; // a data packet: top bit clear
    let word1 = rng.next_u64() as u16;
    packet.extend_from_slice(&word0.to_be_bytes());
    packet.extend_from_slice(&word1.to_be_bytes());
    let ack_field_len = [0, 1, 2, 4][usize::from(word1 >> 14)];
    for _ in 0..ack_field_len {
        packet.push(rng.next_u64() as u8);
    }
    packet.extend_from_slice(&(rng.next_u64() as u32).to_le_bytes()); // the tag: a guess
    let payload = [MARK, &rng.next_u64().to_le_bytes()].concat();
    let len = payload.len() as u8;
    // Unreliable (channel 1): channel, len << 1 (no number), payload.
    packet.extend_from_slice(&[1, len << 1]);
    packet.extend_from_slice(&payload);
    // ReliableSequenced (channel 0): channel, len << 1 | 1, a random message number, payload.
    packet.extend_from_slice(&[0, len << 1 | 1]);
    packet.extend_from_slice(&(rng.next_u64() as u16).to_le_bytes());
    packet.extend_from_slice(&payload);
    packet
}

/// A Disconnect control packet with a random token.
fn forged_disconnect(rng: &mut Rng) -> Vec<u8> {
    [&[0x86][..], &rng.next_u64().to_le_bytes()].concat()
}

fn marked(sim: &Sim, node: usize) -> usize {
    let is_forged =
        |e: &&Owned| matches!(e, Owned::Data { payload, .. } if payload.starts_with(MARK));
    sim.nodes[node].events.iter().filter(is_forged).count()
}

fn honest(sim: &Sim, node: usize) -> Vec<Vec<u8>> {
    sim.received(node, ChannelId(0)).into_iter().filter(|p| !p.starts_with(MARK)).collect()
}

#[test]
fn blind_packets_and_disconnects_from_an_off_path_attacker_are_never_accepted() {
    let config = EndpointConfig {
        channels: vec![Qos::ReliableSequenced, Qos::Unreliable],
        ..EndpointConfig::default()
    };
    let link = LinkConfig { latency: Duration::from_millis(10), ..LinkConfig::perfect() };
    let mut sim = Sim::new(link, 14);
    let server = sim.add(config.clone());
    let client = sim.add(config);
    let (client_conn, server_conn) = sim.connect(client, server);
    let (client_addr, server_addr) = (sim.addr(client), sim.addr(server));
    let mut rng = Rng::new(0xB11D);

    // A long-lived connection: 20 s of honest traffic both ways (a reliable message every
    // 10 ms) before the attack, then 10 s under attack, then 5 s to settle.
    let tick = Duration::from_millis(1);
    let (warm_up, attack, settle) = (20_000u32, 10_000u32, 5_000u32);
    let forged_per_tick = FORGED_PER_SIDE / u64::from(attack);
    let mut sent = 0u32;
    let (mut forged, mut forged_disconnects) = (0u64, 0u64);
    for t in 0..warm_up + attack + settle {
        sim.advance_to(sim.start + tick * t);
        if t % 10 == 0 && t < warm_up + attack {
            let message = format!("honest {sent}").into_bytes();
            // (A connection closed by a forged disconnect is reported below.)
            let _ = sim.nodes[client].endpoint.send(client_conn, ChannelId(0), &message);
            let _ = sim.nodes[server].endpoint.send(server_conn, ChannelId(0), &message);
            sent += 1;
        }
        if (warm_up..warm_up + attack).contains(&t) {
            let now = sim.now;
            for _ in 0..forged_per_tick {
                let packet = forged_data_packet(&mut rng);
                sim.nodes[server].endpoint.handle_datagram(now, client_addr, &packet);
                let packet = forged_data_packet(&mut rng);
                sim.nodes[client].endpoint.handle_datagram(now, server_addr, &packet);
                forged += 1;
            }
            if t % 10 == 5 {
                let packet = forged_disconnect(&mut rng);
                sim.nodes[server].endpoint.handle_datagram(now, client_addr, &packet);
                sim.nodes[client].endpoint.handle_datagram(now, server_addr, &packet);
                forged_disconnects += 1;
            }
        }
    }
    assert_eq!(forged, FORGED_PER_SIDE);

    let accepted = [marked(&sim, server), marked(&sim, client)];
    let rate = (accepted[0] + accepted[1]) as f64 / (2 * forged) as f64;
    eprintln!(
        "blind injection: {} of {forged} forged packets accepted by the server, {} of {forged} \
         by the client (rate {rate:.2e}); {forged_disconnects} forged disconnects each way",
        accepted[0], accepted[1],
    );
    for node in [server, client] {
        let disconnected =
            sim.nodes[node].events.iter().find(|e| matches!(e, Owned::Disconnected { .. }));
        assert_eq!(disconnected, None, "node {node}");
    }
    assert_eq!(accepted, [0, 0], "forged packets were accepted");

    // Every forged packet was dropped at the tag, and counted there.
    let stats = |node: usize, conn| -> ConnectionStats {
        sim.nodes[node].endpoint.connection_stats(conn).expect("the connection is still open")
    };
    let (at_server, at_client) = (stats(server, server_conn), stats(client, client_conn));
    assert_eq!(at_server.packets_bad_tag, forged, "{at_server:?}");
    assert_eq!(at_client.packets_bad_tag, forged, "{at_client:?}");

    // The honest traffic never noticed: every message arrived, in order.
    let expected: Vec<Vec<u8>> = (0..sent).map(|i| format!("honest {i}").into_bytes()).collect();
    for node in [server, client] {
        assert_eq!(honest(&sim, node), expected, "node {node}");
    }
}

/// An attacker who captures a packet one peer sent and sends it back to that peer, as if the
/// other peer had sent it (a reflection): each direction has its own tag key, so the copy fails
/// its tag like any forgery, however the two peers' packet numbers happen to line up.
#[test]
fn a_packet_reflected_back_to_its_sender_fails_its_tag() {
    let config = EndpointConfig {
        channels: vec![Qos::ReliableSequenced, Qos::Unreliable],
        ..EndpointConfig::default()
    };
    let mut reflected_total = 0;
    // Several connections, so that some have both directions' packet numbers close together
    // (with one key for both ways, the tag of such a reflected packet would be valid).
    for seed in 0..16 {
        let mut sim = Sim::new(LinkConfig::perfect(), 1000 + seed);
        let server = sim.add(config.clone());
        let client = sim.add(config.clone());
        let (client_conn, server_conn) = sim.connect(client, server);
        let (client_addr, server_addr) = (sim.addr(client), sim.addr(server));
        let conns = [(client, client_conn, server_addr), (server, server_conn, client_addr)];
        for &(node, conn, peer_addr) in &conns {
            // Packets this node sends, captured from its endpoint directly.
            let mut captured = Vec::new();
            for i in 0..4u8 {
                let endpoint = &mut sim.nodes[node].endpoint;
                endpoint.send(conn, ChannelId(1), &[MARK, &[i][..]].concat()).unwrap();
                captured.extend(sim.capture(node).into_iter().map(|(_, datagram)| datagram));
                let now = sim.now;
                sim.nodes[node].endpoint.handle_timeout(now);
            }
            assert!(!captured.is_empty());
            let before = sim.nodes[node].endpoint.connection_stats(conn).unwrap();
            let now = sim.now;
            for packet in &captured {
                sim.nodes[node].endpoint.handle_datagram(now, peer_addr, packet);
            }
            let after = sim.nodes[node].endpoint.connection_stats(conn).unwrap();
            assert_eq!(
                after.packets_bad_tag - before.packets_bad_tag,
                captured.len() as u64,
                "seed {seed}, node {node}: {after:?}"
            );
            reflected_total += captured.len();
            while let Some(event) = sim.nodes[node].endpoint.poll_event() {
                let delivered = format!("{event:?}");
                assert!(
                    !delivered.contains("Data"),
                    "a reflected packet was accepted: {delivered}"
                );
            }
        }
    }
    assert!(reflected_total >= 16 * 2 * 4);
}
