//! When acknowledgements go out: promptly for reliable data, lazily (on the next packet going
//! the other way, or after `unreliable_ack_every` packets) for packets that carry only
//! unreliable messages, and how a lazy acknowledgement still times the round trip (the
//! ack-delay record). Deterministic simulation, virtual time.

use sturnus_testkit::sim;

use std::time::{Duration, Instant};

use sim::{Owned, Sim};
use sturnus_netem::LinkConfig;
use sturnus_transport::{ChannelId, EndpointConfig, Qos};

const MS: Duration = Duration::from_millis(1);

fn config() -> EndpointConfig {
    EndpointConfig { channels: vec![Qos::Unreliable], ..EndpointConfig::default() }
}

/// Runs until `deadline` in steps of 0.1 ms, letting `server` echo every message it receives.
fn run_echoing(sim: &mut Sim, server: usize, deadline: Instant) {
    while sim.now < deadline {
        let next = (sim.now + Duration::from_micros(100)).min(deadline);
        sim.advance_to(next);
        let arrived: Vec<Owned> = sim.nodes[server].events.drain(..).collect();
        for event in arrived {
            if let Owned::Data { conn, channel, payload } = event {
                sim.nodes[server].endpoint.send(conn, channel, &payload).unwrap();
            }
        }
    }
}

#[test]
fn echoing_a_quiet_client_costs_no_ack_packet_per_message_and_keeps_the_rtt_true() {
    let link = LinkConfig { latency: MS, ..LinkConfig::perfect() };
    let mut sim = Sim::new(link, 7);
    let server = sim.add(config());
    let client = sim.add(config());
    let (conn, server_conn) = sim.connect(client, server);
    let start = sim.now;
    let client_sent_before = sim.sent[client].0;
    // One message every 100 ms for 10 s, each echoed on arrival (W4's pattern).
    for i in 1..=100u32 {
        sim.nodes[client].endpoint.send(conn, ChannelId(0), &i.to_le_bytes()).unwrap();
        run_echoing(&mut sim, server, start + MS * 100 * i);
    }
    let end = sim.now + MS * 50;
    run_echoing(&mut sim, server, end);
    let echoes = sim.received(client, ChannelId(0)).len();
    assert_eq!(echoes, 100, "every echo arrived");
    // The client's messages carry the acks of the echoes, and the round trip is timed by
    // the delay each side reports: not one datagram beyond the messages.
    let client_datagrams = sim.sent[client].0 - client_sent_before;
    assert_eq!(
        client_datagrams, 100,
        "the client sent {client_datagrams} datagrams for 100 messages"
    );
    // Round trips are 2 ms; acks that waited up to 100 ms for a ride must not count as samples.
    let server_stats = sim.nodes[server].endpoint.connection_stats(server_conn).unwrap();
    let client_stats = sim.nodes[client].endpoint.connection_stats(conn).unwrap();
    for (side, stats) in [("server", server_stats), ("client", client_stats)] {
        assert!(stats.rtt >= MS * 2 && stats.rtt <= MS * 8, "{side} rtt {:?}", stats.rtt);
        assert_eq!(stats.packets_lost_out, 0, "{side}: nothing was lost, late acks included");
    }
}

#[test]
fn a_one_way_unreliable_stream_is_acknowledged_in_batches_and_its_loss_counted_exactly() {
    let link = LinkConfig { latency: MS * 10, loss: 0.1, ..LinkConfig::perfect() };
    let mut sim = Sim::new(link, 11);
    let server = sim.add(config());
    let client = sim.add(config());
    let (conn, _) = sim.connect(client, server);
    let server_sent_before = sim.sent[server].0;
    let client_sent_before = sim.sent[client].0;
    // 320 messages, one every 10 ms, from client to server.
    let start = sim.now;
    for i in 1..=320u32 {
        sim.nodes[client].endpoint.send(conn, ChannelId(0), &i.to_le_bytes()).unwrap();
        sim.advance_to(start + MS * 10 * i);
    }
    // A message that waited behind its predecessor rides in the same packet (the seed
    // decides whether any does): a lost packet then loses both.
    let shared = 320u64.saturating_sub(sim.sent[client].0 - client_sent_before);
    assert!(shared <= 2, "{shared} messages shared a packet");
    sim.run_for(Duration::from_secs(3));
    let delivered = sim.received(server, ChannelId(0)).len() as u64;
    assert!((250..310).contains(&delivered), "{delivered} of 320 arrived");
    let stats = sim.nodes[client].endpoint.connection_stats(conn).unwrap();
    let undelivered = 320 - delivered;
    assert!(
        (undelivered - shared..=undelivered).contains(&stats.packets_lost_out),
        "loss is counted from the batched acks, exactly: {} packets for {undelivered} messages \
         ({shared} shared a packet)",
        stats.packets_lost_out
    );
    // A pure ack per `unreliable_ack_every` (8) packets, and keepalives: about 40, where a
    // prompt ack per packet (the rule for reliable data) would be 320.
    let acks = sim.sent[server].0 - server_sent_before;
    assert!(acks <= 60, "the server sent {acks} datagrams");
}

#[test]
fn lazy_acknowledgements_report_their_delay_so_both_sides_follow_a_slower_path() {
    let fast = LinkConfig { latency: MS, ..LinkConfig::perfect() };
    let mut sim = Sim::new(fast, 5);
    let server = sim.add(config());
    let client = sim.add(config());
    let (conn, server_conn) = sim.connect(client, server);
    let start = sim.now;
    let (client_sent_before, server_sent_before) = (sim.sent[client].0, sim.sent[server].0);
    // A message a second, echoed (a quiet client: every ack of an echo waits about a second
    // for its ride), and a delay report a second each way (`rtt_probe_interval`). After 10 s
    // the path slows from 1 to 25 ms each way.
    let slow = LinkConfig { latency: MS * 25, ..LinkConfig::perfect() };
    for i in 1..=40u32 {
        if i == 11 {
            sim.set_link(client, server, slow.clone());
            sim.set_link(server, client, slow.clone());
        }
        sim.nodes[client].endpoint.send(conn, ChannelId(0), &i.to_le_bytes()).unwrap();
        run_echoing(&mut sim, server, start + MS * 1000 * i);
    }
    assert_eq!(sim.received(client, ChannelId(0)).len(), 40, "every echo arrived");
    assert_eq!(sim.sent[client].0 - client_sent_before, 40, "nothing but the messages");
    assert_eq!(sim.sent[server].0 - server_sent_before, 40, "nothing but the echoes");
    // The round trip is now 50 ms. Untimed, the server would still believe 2 ms; timed without
    // the reported delay, it would see the second each ack waited.
    for (side, node, c) in [("server", server, server_conn), ("client", client, conn)] {
        let stats = sim.nodes[node].endpoint.connection_stats(c).unwrap();
        assert!(stats.rtt >= MS * 40 && stats.rtt <= MS * 60, "{side} rtt {:?}", stats.rtt);
    }
}
