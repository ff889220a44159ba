//! Bounded resources: partial-message expiry and eviction, reassembly memory for reliable
//! fragments (congestion control has its own tests, in `congestion.rs`).

use sturnus_testkit::sim;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sim::Sim;
use sturnus_netem::LinkConfig;
use sturnus_transport::{ChannelId, ConnectionId, Endpoint, EndpointConfig, Event, Qos};

#[expect(clippy::disallowed_methods, reason = "a starting instant for the virtual clock")]
fn start() -> Instant {
    Instant::now()
}

/// A connected pair driven by hand, so single datagrams can be held back.
struct Pair {
    now: Instant,
    client: Endpoint,
    server: Endpoint,
    conn: ConnectionId,
    server_conn: ConnectionId,
    client_addr: SocketAddr,
}

impl Pair {
    fn new(config: EndpointConfig) -> Self {
        let now = start();
        let mut client =
            Endpoint::with_deterministic_secrets_for_tests(config.clone(), now, 1).unwrap();
        let server = Endpoint::with_deterministic_secrets_for_tests(config, now, 2).unwrap();
        let client_addr: SocketAddr = "10.0.0.2:1".parse().unwrap();
        let server_addr: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let conn = client.connect(now, server_addr).unwrap();
        let mut pair = Self { now, client, server, conn, server_conn: conn, client_addr };
        for _ in 0..4 {
            for d in pair.client_datagrams() {
                pair.server.handle_datagram(now, client_addr, &d);
            }
            for d in pair.server_datagrams() {
                pair.client.handle_datagram(now, server_addr, &d);
            }
        }
        while let Some(event) = pair.server.poll_event() {
            if let Event::Connected(c) = event {
                pair.server_conn = c;
            }
        }
        assert!(pair.client.is_connected(conn) && pair.server.is_connected(pair.server_conn));
        pair
    }

    fn client_datagrams(&mut self) -> Vec<Vec<u8>> {
        let mut buf = [0u8; 1500];
        std::iter::from_fn(|| {
            self.client.poll_transmit(self.now, &mut buf).map(|t| buf[..t.len].to_vec())
        })
        .collect()
    }

    fn server_datagrams(&mut self) -> Vec<Vec<u8>> {
        let mut buf = [0u8; 1500];
        std::iter::from_fn(|| {
            self.server.poll_transmit(self.now, &mut buf).map(|t| buf[..t.len].to_vec())
        })
        .collect()
    }

    fn deliver_to_server(&mut self, datagram: &[u8]) {
        self.server.handle_datagram(self.now, self.client_addr, datagram);
    }

    fn server_messages(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(event) = self.server.poll_event() {
            if let Event::Data { payload, .. } = event {
                out.push(payload.to_vec());
            }
        }
        out
    }
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
    pair.client.send(pair.conn, ChannelId(0), &[7; 300]).unwrap();
    let fragments = pair.client_datagrams();
    assert_eq!(fragments.len(), 3, "three 100-byte fragments, one per packet");
    pair.deliver_to_server(&fragments[0]);
    pair.deliver_to_server(&fragments[1]);
    pair.now += Duration::from_secs(2);
    pair.server.handle_timeout(pair.now);
    assert_eq!(pair.server.connection_stats(pair.server_conn).unwrap().dropped_by_qos, 1);
    // The last piece now finds nothing to complete.
    pair.deliver_to_server(&fragments[2]);
    assert!(pair.server_messages().is_empty());

    // A message whose pieces all arrive in time is delivered.
    pair.client.send(pair.conn, ChannelId(0), &[8; 250]).unwrap();
    for d in pair.client_datagrams() {
        pair.deliver_to_server(&d);
    }
    assert_eq!(pair.server_messages(), [vec![8; 250]]);
}

#[test]
fn reassembly_memory_is_bounded_by_evicting_the_oldest_unreliable_partial() {
    // Room for two 300-byte partial messages.
    let mut pair = Pair::new(fragmented_config(3, 600));
    let mut last_pieces = Vec::new();
    for i in 1..=3u8 {
        pair.client.send(pair.conn, ChannelId(0), &[i; 300]).unwrap();
        let mut pieces = pair.client_datagrams();
        last_pieces.push(pieces.pop().unwrap());
        for d in pieces {
            pair.deliver_to_server(&d);
        }
    }
    // Starting the third evicted the first.
    assert_eq!(pair.server.connection_stats(pair.server_conn).unwrap().dropped_by_qos, 1);
    pair.deliver_to_server(&last_pieces[1]);
    pair.deliver_to_server(&last_pieces[2]);
    assert_eq!(pair.server_messages(), [vec![2; 300], vec![3; 300]]);
    // The first message's last piece comes too late: its partial message is gone.
    pair.deliver_to_server(&last_pieces[0]);
    assert!(pair.server_messages().is_empty());
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
    for d in pair.client_datagrams() {
        pair.deliver_to_server(&d);
    }
    pair.server_datagrams();
    // Client data P0; server data S0 (which the client must acknowledge); the client's pure
    // ack P1; client data P2. The server's one acknowledgement then covers P2, P1 and P0.
    pair.client.send(pair.conn, ChannelId(0), b"a0").unwrap();
    let p0 = pair.client_datagrams();
    pair.server.send(pair.server_conn, ChannelId(0), b"x").unwrap();
    for d in pair.server_datagrams() {
        pair.client.handle_datagram(pair.now, "10.0.0.1:1".parse().unwrap(), &d);
    }
    pair.now += Duration::from_millis(5);
    let p1 = pair.client_datagrams();
    assert_eq!(p1.len(), 1, "a pure ack");
    pair.client.send(pair.conn, ChannelId(0), b"a1").unwrap();
    let p2 = pair.client_datagrams();
    for d in p0.iter().chain(&p1).chain(&p2) {
        pair.deliver_to_server(d);
    }
    pair.now += Duration::from_millis(5);
    for d in pair.server_datagrams() {
        pair.client.handle_datagram(pair.now, "10.0.0.1:1".parse().unwrap(), &d);
    }
    // Well past the resend timeout: nothing is resent, nothing counted lost.
    pair.now += Duration::from_millis(600);
    pair.client_datagrams();
    let stats = pair.client.connection_stats(pair.conn).unwrap();
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
        pair.client.send(pair.conn, ChannelId(0), &[i; 1000]).unwrap();
    }
    let packets = pair.client_datagrams();
    assert_eq!(packets.len(), 30);
    for d in &packets[1..] {
        pair.deliver_to_server(d);
    }
    let stats = pair.server.connection_stats(pair.server_conn).unwrap();
    assert!(stats.held_bytes <= config.max_reassembly_bytes, "{stats:?}");
    assert!(stats.held_bytes >= 9_000, "it held what fitted: {stats:?}");
    assert!(pair.server.stats().rejected_packets >= 19, "the rest was refused");
    assert!(pair.server_messages().is_empty(), "nothing before message 0");

    // Message 0 arrives (always admitted): it and the held ones are delivered in order.
    pair.deliver_to_server(&packets[0]);
    let first = pair.server_messages();
    assert!(first.len() >= 10);
    assert!(first.iter().enumerate().all(|(i, m)| *m == vec![u8::try_from(i).unwrap(); 1000]));
    // The refused packets' messages come with the resends, still in order.
    let mut all = first;
    for _ in 0..20 {
        pair.now += Duration::from_millis(400);
        for d in pair.client_datagrams() {
            pair.deliver_to_server(&d);
        }
        all.extend(pair.server_messages());
        for d in pair.server_datagrams() {
            pair.client.handle_datagram(pair.now, "10.0.0.1:1".parse().unwrap(), &d);
        }
    }
    assert_eq!(all, (0..30u8).map(|i| vec![i; 1000]).collect::<Vec<_>>());
    assert_eq!(pair.server.connection_stats(pair.server_conn).unwrap().held_bytes, 0);
}

#[test]
fn a_refused_packet_delivers_none_of_its_unreliable_messages_even_if_duplicated() {
    let config = EndpointConfig {
        channels: vec![Qos::ReliableSequenced, Qos::Unreliable],
        max_reassembly_bytes: 1_000,
        ..EndpointConfig::default()
    };
    let mut pair = Pair::new(config);
    pair.client.send(pair.conn, ChannelId(0), &[0; 10]).unwrap();
    let lost = pair.client_datagrams();
    assert_eq!(lost.len(), 1);
    // Message 1 (held, 1100 bytes: over the budget) rides with an unreliable message.
    pair.client.send(pair.conn, ChannelId(0), &[1; 1100]).unwrap();
    pair.client.send(pair.conn, ChannelId(1), b"once at most").unwrap();
    let packets = pair.client_datagrams();
    assert_eq!(packets.len(), 1, "both in one packet");
    pair.deliver_to_server(&packets[0]);
    pair.deliver_to_server(&packets[0]); // the network duplicates it
    let unreliable =
        pair.server_messages().iter().filter(|m| m.as_slice() == b"once at most").count();
    assert_eq!(unreliable, 0, "a refused packet's unreliable messages are dropped");
    assert_eq!(pair.server.stats().rejected_packets, 2);
}
