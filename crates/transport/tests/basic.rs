//! The endpoint end to end on a perfect simulated network: handshake, data on every QoS,
//! disconnect.

use sturnus_testkit::sim;

use std::time::Duration;

use sim::{Owned, Sim};
use sturnus_netem::LinkConfig;
use sturnus_transport::{DisconnectReason, EndpointConfig, Qos};

fn all_channels() -> EndpointConfig {
    EndpointConfig { channels: Qos::ALL.to_vec(), ..EndpointConfig::default() }
}

#[test]
fn a_message_on_every_qos_arrives_over_a_perfect_link() {
    let mut sim = Sim::new(LinkConfig::perfect(), 1);
    let server = sim.add(all_channels());
    let client = sim.add(all_channels());
    let (conn, _) = sim.connect(client, server);
    for (i, _) in Qos::ALL.iter().enumerate() {
        let channel = sim::channel(i);
        sim.nodes[client].endpoint.send(conn, channel, format!("hello {i}").as_bytes()).unwrap();
    }
    sim.run_for(Duration::from_millis(100));
    for (i, qos) in Qos::ALL.iter().enumerate() {
        let got = sim.received(server, sim::channel(i));
        assert_eq!(got, vec![format!("hello {i}").into_bytes()], "{qos}");
    }
}

#[test]
fn a_large_message_is_fragmented_and_reassembled() {
    let mut sim = Sim::new(LinkConfig::perfect(), 2);
    let server = sim.add(all_channels());
    let client = sim.add(all_channels());
    let (conn, _) = sim.connect(client, server);
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    for qos in
        [Qos::ReliableFragmented, Qos::ReliableFragmentedSequenced, Qos::UnreliableFragmented]
    {
        let channel = sim::channel_of(qos);
        sim.nodes[client].endpoint.send(conn, channel, &big).unwrap();
        sim.run_for(Duration::from_millis(200));
        assert_eq!(sim.received(server, channel), vec![big.clone()], "{qos}");
    }
}

#[test]
fn disconnect_is_seen_by_the_peer_and_silence_times_out() {
    let mut sim = Sim::new(LinkConfig::perfect(), 3);
    let server = sim.add(EndpointConfig::default());
    let client = sim.add(EndpointConfig::default());
    let (conn, server_conn) = sim.connect(client, server);
    let now = sim.now;
    sim.nodes[client].endpoint.disconnect(now, conn);
    sim.run_for(Duration::from_millis(100));
    assert!(sim.nodes[server].events.contains(&Owned::Disconnected {
        conn: server_conn,
        reason: DisconnectReason::ClosedByPeer
    }));
    assert_eq!(sim.nodes[server].endpoint.connection_count(), 0);

    // A second connection whose link then dies: both sides time out.
    let (conn, server_conn) = sim.connect(client, server);
    sim.set_link(client, server, LinkConfig::dead());
    sim.set_link(server, client, LinkConfig::dead());
    let timeout = EndpointConfig::default().disconnect_timeout;
    sim.run_for(timeout + Duration::from_millis(500));
    assert!(
        sim.nodes[client]
            .events
            .contains(&Owned::Disconnected { conn, reason: DisconnectReason::Timeout })
    );
    assert!(
        sim.nodes[server].events.contains(&Owned::Disconnected {
            conn: server_conn,
            reason: DisconnectReason::Timeout
        })
    );
}
