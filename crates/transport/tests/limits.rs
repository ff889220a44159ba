//! Bounded resources: partial-message expiry and eviction, reassembly memory for reliable
//! fragments (congestion control has its own tests, in `congestion.rs`).

use sturnus_testkit::{Pair, Side, sim};

use std::time::Duration;

use sim::Sim;
use sturnus_netem::LinkConfig;
use sturnus_transport::{ChannelId, EndpointConfig, Event, Qos};

// On the testkit's `Pair`, driven by hand so single datagrams can be held back: `a` is the
// client, `b` the server; `capture` takes a side's datagrams off the wire and `inject` hands
// one to the other side.

/// The messages the server has received since last asked.
fn server_messages(pair: &mut Pair) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    pair.drain(|side, event| {
        if let (Side::B, Event::Data { payload, .. }) = (side, event) {
            out.push(payload.to_vec());
        }
    });
    out
}

fn fragmented_config(max_fragments: usize, max_reassembly_bytes: usize) -> EndpointConfig {
    EndpointConfig {
        channels: vec![Qos::UnreliableFragmented, Qos::ReliableFragmented],
        // One fragment per packet, so single fragments can be held back.
        max_packet_size: 150,
        fragment_size: 100,
        max_fragments,
        max_reassembly_bytes,
        reassembly_timeout: Duration::from_secs(2),
        ..EndpointConfig::default()
    }
}

#[test]
fn a_partial_unreliable_message_expires_after_the_reassembly_timeout() {
    let mut pair = Pair::new(fragmented_config(10, 10_000));
    pair.a.send(pair.a_conn, ChannelId(0), &[7; 300]).unwrap();
    let fragments = pair.capture(Side::A);
    assert_eq!(fragments.len(), 3, "three 100-byte fragments, one per packet");
    pair.inject(Side::A, &fragments[0]);
    pair.inject(Side::A, &fragments[1]);
    pair.now += Duration::from_secs(2);
    pair.b.handle_timeout(pair.now);
    assert_eq!(pair.b.connection_stats(pair.b_conn).unwrap().dropped_by_qos, 1);
    // The last piece now finds nothing to complete.
    pair.inject(Side::A, &fragments[2]);
    assert!(server_messages(&mut pair).is_empty());

    // A message whose pieces all arrive in time is delivered.
    pair.a.send(pair.a_conn, ChannelId(0), &[8; 250]).unwrap();
    for d in pair.capture(Side::A) {
        pair.inject(Side::A, &d);
    }
    assert_eq!(server_messages(&mut pair), [vec![8; 250]]);
}

#[test]
fn reassembly_memory_is_bounded_by_evicting_the_oldest_unreliable_partial() {
    // Room for two 300-byte partial messages.
    let mut pair = Pair::new(fragmented_config(3, 600));
    let mut last_pieces = Vec::new();
    for i in 1..=3u8 {
        pair.a.send(pair.a_conn, ChannelId(0), &[i; 300]).unwrap();
        let mut pieces = pair.capture(Side::A);
        last_pieces.push(pieces.pop().unwrap());
        for d in pieces {
            pair.inject(Side::A, &d);
        }
    }
    // Starting the third evicted the first.
    assert_eq!(pair.b.connection_stats(pair.b_conn).unwrap().dropped_by_qos, 1);
    pair.inject(Side::A, &last_pieces[1]);
    pair.inject(Side::A, &last_pieces[2]);
    assert_eq!(server_messages(&mut pair), [vec![2; 300], vec![3; 300]]);
    // The first message's last piece comes too late: its partial message is gone.
    pair.inject(Side::A, &last_pieces[0]);
    assert!(server_messages(&mut pair).is_empty());
}

#[test]
fn reliable_fragments_that_do_not_fit_are_refused_and_resent_never_lost() {
    // Room for one 1000-byte message at a time; five are sent at once.
    let config = fragmented_config(10, 1000);
    // Jitter reorders the packets, so several messages are partly reassembled at once.
    let link = LinkConfig {
        latency: Duration::from_millis(5),
        jitter: Duration::from_millis(4),
        ..LinkConfig::perfect()
    };
    let mut sim = Sim::new(link, 3);
    let server = sim.add(config.clone());
    let client = sim.add(config);
    let (conn, _) = sim.connect(client, server);
    for i in 0..5u8 {
        sim.nodes[client].endpoint.send(conn, ChannelId(1), &[i; 1000]).unwrap();
    }
    let done =
        sim.run_until(Duration::from_secs(30), |sim| sim.received(server, ChannelId(1)).len() == 5);
    assert!(done, "got {} messages", sim.received(server, ChannelId(1)).len());
    let mut got = sim.received(server, ChannelId(1));
    got.sort();
    assert_eq!(got, (0..5u8).map(|i| vec![i; 1000]).collect::<Vec<_>>());
    assert!(sim.nodes[server].endpoint.stats().rejected_packets > 0, "some packets were refused");
}

#[test]
fn an_ack_covering_packets_around_a_pure_ack_settles_them_all() {
    let config =
        EndpointConfig { channels: vec![Qos::ReliableSequenced], ..EndpointConfig::default() };
    let mut pair = Pair::new(config);
    // Let the handshake's acknowledgements settle.
    pair.now += Duration::from_millis(50);
    for d in pair.capture(Side::A) {
        pair.inject(Side::A, &d);
    }
    pair.discard(Side::B);
    // Client data P0; server data S0 (which the client must acknowledge); the client's pure
    // ack P1; client data P2. The server's one acknowledgement then covers P2, P1 and P0.
    pair.a.send(pair.a_conn, ChannelId(0), b"a0").unwrap();
    let p0 = pair.capture(Side::A);
    pair.b.send(pair.b_conn, ChannelId(0), b"x").unwrap();
    for d in pair.capture(Side::B) {
        pair.inject(Side::B, &d);
    }
    pair.now += Duration::from_millis(5);
    let p1 = pair.capture(Side::A);
    assert_eq!(p1.len(), 1, "a pure ack");
    pair.a.send(pair.a_conn, ChannelId(0), b"a1").unwrap();
    let p2 = pair.capture(Side::A);
    for d in p0.iter().chain(&p1).chain(&p2) {
        pair.inject(Side::A, d);
    }
    pair.now += Duration::from_millis(5);
    for d in pair.capture(Side::B) {
        pair.inject(Side::B, &d);
    }
    // Well past the resend timeout: nothing is resent, nothing counted lost.
    pair.now += Duration::from_millis(600);
    pair.discard(Side::A);
    let stats = pair.a.connection_stats(pair.a_conn).unwrap();
    assert_eq!((stats.resends, stats.packets_lost_out, stats.in_flight), (0, 0, 0), "{stats:?}");
}

#[test]
fn reliable_messages_held_out_of_order_stay_within_the_budget_and_all_arrive() {
    let config = EndpointConfig {
        channels: vec![Qos::ReliableSequenced],
        max_reassembly_bytes: 10_000,
        ..EndpointConfig::default()
    };
    let mut pair = Pair::new(config.clone());
    // Thirty 1000-byte messages, one per packet; the first packet is lost.
    for i in 0..30u8 {
        pair.a.send(pair.a_conn, ChannelId(0), &[i; 1000]).unwrap();
    }
    let packets = pair.capture(Side::A);
    assert_eq!(packets.len(), 30);
    for d in &packets[1..] {
        pair.inject(Side::A, d);
    }
    let stats = pair.b.connection_stats(pair.b_conn).unwrap();
    assert!(stats.held_bytes <= config.max_reassembly_bytes, "{stats:?}");
    assert!(stats.held_bytes >= 9_000, "it held what fitted: {stats:?}");
    assert!(pair.b.stats().rejected_packets >= 19, "the rest was refused");
    assert!(server_messages(&mut pair).is_empty(), "nothing before message 0");

    // Message 0 arrives (always admitted): it and the held ones are delivered in order.
    pair.inject(Side::A, &packets[0]);
    let first = server_messages(&mut pair);
    assert!(first.len() >= 10);
    assert!(first.iter().enumerate().all(|(i, m)| *m == vec![u8::try_from(i).unwrap(); 1000]));
    // The refused packets' messages come with the resends, still in order.
    let mut all = first;
    for _ in 0..20 {
        pair.now += Duration::from_millis(400);
        for d in pair.capture(Side::A) {
            pair.inject(Side::A, &d);
        }
        all.extend(server_messages(&mut pair));
        for d in pair.capture(Side::B) {
            pair.inject(Side::B, &d);
        }
    }
    assert_eq!(all, (0..30u8).map(|i| vec![i; 1000]).collect::<Vec<_>>());
    assert_eq!(pair.b.connection_stats(pair.b_conn).unwrap().held_bytes, 0);
}

#[test]
fn a_refused_packet_delivers_none_of_its_unreliable_messages_even_if_duplicated() {
    let config = EndpointConfig {
        channels: vec![Qos::ReliableSequenced, Qos::Unreliable],
        max_reassembly_bytes: 1_000,
        ..EndpointConfig::default()
    };
    let mut pair = Pair::new(config);
    pair.a.send(pair.a_conn, ChannelId(0), &[0; 10]).unwrap();
    let lost = pair.capture(Side::A);
    assert_eq!(lost.len(), 1);
    // Message 1 (held, 1100 bytes: over the budget) rides with an unreliable message.
    pair.a.send(pair.a_conn, ChannelId(0), &[1; 1100]).unwrap();
    pair.a.send(pair.a_conn, ChannelId(1), b"once at most").unwrap();
    let packets = pair.capture(Side::A);
    assert_eq!(packets.len(), 1, "both in one packet");
    pair.inject(Side::A, &packets[0]);
    pair.inject(Side::A, &packets[0]); // the network duplicates it
    let unreliable =
        server_messages(&mut pair).iter().filter(|m| m.as_slice() == b"once at most").count();
    assert_eq!(unreliable, 0, "a refused packet's unreliable messages are dropped");
    assert_eq!(pair.b.stats().rejected_packets, 2);
}
