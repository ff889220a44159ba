//! Hostile input: spoofed handshakes, mismatched peers, and a flood of random and mutated
//! datagrams. Nothing may panic, allocate connection state for strangers, amplify traffic, or
//! disturb an established connection.

#![allow(
    clippy::cast_possible_truncation,
    reason = "test data is made from small numbers; truncation is intended"
)]

use sturnus_testkit::sim;

use std::net::SocketAddr;
use std::time::Duration;

use sim::{Owned, Sim};
use sturnus_netem::{LinkConfig, Rng};
use sturnus_transport::proto::codec::Writer;
use sturnus_transport::proto::control::{Control, Cookie, PADDED_REQUEST_LEN};
use sturnus_transport::{ChannelId, DisconnectReason, EndpointConfig, Qos, RejectReason};

fn random_addr(rng: &mut Rng) -> SocketAddr {
    let ip = rng.next_u64().to_le_bytes();
    SocketAddr::from(([ip[0] | 1, ip[1], ip[2], ip[3]], 1024 + (rng.below(60_000) as u16)))
}

fn encode(packet: &Control) -> Vec<u8> {
    let mut buf = [0u8; 256];
    let mut w = Writer::new(&mut buf);
    packet.encode(&mut w).unwrap();
    let n = w.len();
    buf[..n].to_vec()
}

#[test]
fn a_flood_of_spoofed_connect_requests_leaves_no_state_and_is_never_amplified() {
    // The clock never moves: the whole flood arrives at one instant.
    let config = EndpointConfig::default();
    let mut sim = Sim::new(LinkConfig::perfect(), 1);
    let server = sim.add(config.clone());
    let client = sim.add(config.clone());
    let (now, server_addr) = (sim.now, sim.addr(server));
    let mut rng = Rng::new(2);
    // A genuine request (right version and fingerprint) as a template; each spoof gets its own
    // source address and salt, so every one earns a challenge.
    sim.nodes[client].endpoint.connect(now, server_addr).unwrap();
    let template = sim.capture(client).swap_remove(0).1;
    let server = &mut sim.nodes[server].endpoint;
    assert!(matches!(Control::decode(&template), Ok(Control::ConnectRequest { .. })));
    let (mut replies, mut reply_bytes) = (0u64, 0u64);
    for i in 0..100_000u64 {
        let from = random_addr(&mut rng);
        let mut datagram = template.clone();
        datagram[17..25].copy_from_slice(&rng.next_u64().to_le_bytes());
        assert_eq!(datagram.len(), PADDED_REQUEST_LEN);
        server.handle_datagram(now, from, &datagram);
        // Forged cookies in responses are rejected without a word.
        if i % 10 == 0 {
            let forged = Control::ConnectResponse {
                protocol_id: config.protocol_id,
                fingerprint: rng.next_u64(),
                client_salt: rng.next_u64(),
                cookie: Cookie { issued: 0, mac: rng.next_u64() },
            };
            server.handle_datagram(now, from, &encode(&forged));
        }
        for (_, reply) in server.capture(now) {
            assert!(
                reply.len() < datagram.len(),
                "a {}-byte reply to a {}-byte request",
                reply.len(),
                datagram.len()
            );
            replies += 1;
            reply_bytes += reply.len() as u64;
        }
    }
    assert_eq!(server.connection_count(), 0);
    let stats = server.stats();
    assert_eq!(stats.connect_requests, 100_000);
    assert_eq!(stats.invalid_cookies, 10_000);
    assert_eq!(stats.accepted, 0);
    assert_eq!(replies, 100_000, "each request gets exactly one small answer");
    assert!(reply_bytes < 100_000 * PADDED_REQUEST_LEN as u64 / 2);
    assert_eq!(server.poll_timeout(), None, "no timers: nothing is remembered");
}

/// Connects a client with `client_config` to a server with `server_config`; returns the
/// client's events.
fn attempt(server_config: EndpointConfig, client_config: EndpointConfig) -> Vec<Owned> {
    let mut sim = Sim::new(LinkConfig::perfect(), 9);
    let server = sim.add(server_config);
    let client = sim.add(client_config);
    let addr = sim.addr(server);
    let now = sim.now;
    sim.nodes[client].endpoint.connect(now, addr).unwrap();
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.nodes[server].endpoint.connection_count(), 0, "no state for a rejected client");
    sim.nodes[client].events.clone()
}

fn rejected_with(reason: RejectReason) -> impl Fn(&Owned) -> bool {
    move |e| matches!(e, Owned::Disconnected { reason: DisconnectReason::Rejected(r), .. } if *r == reason)
}

#[test]
fn mismatched_peers_are_rejected_with_the_reason() {
    let base = EndpointConfig::default();
    let events = attempt(base.clone(), EndpointConfig { protocol_id: 42, ..base.clone() });
    assert!(events.iter().any(rejected_with(RejectReason::VersionMismatch)), "{events:?}");
    for client in [
        EndpointConfig { fragment_size: 1000, ..base.clone() },
        EndpointConfig { max_packet_size: 1400, ..base.clone() },
        EndpointConfig { channels: vec![Qos::Reliable], ..base.clone() },
        EndpointConfig { disconnect_timeout: Duration::from_secs(30), ..base.clone() },
    ] {
        let events = attempt(base.clone(), client);
        assert!(events.iter().any(rejected_with(RejectReason::ConfigMismatch)), "{events:?}");
    }
}

#[test]
fn a_full_server_rejects_with_server_full_and_the_application_can_refuse() {
    let mut sim = Sim::new(LinkConfig::perfect(), 3);
    let server = sim.add(EndpointConfig { max_connections: 1, ..EndpointConfig::default() });
    let first = sim.add(EndpointConfig::default());
    let second = sim.add(EndpointConfig::default());
    sim.connect(first, server);
    let (addr, now) = (sim.addr(server), sim.now);
    sim.nodes[second].endpoint.connect(now, addr).unwrap();
    sim.run_for(Duration::from_secs(1));
    assert!(sim.nodes[second].events.iter().any(rejected_with(RejectReason::ServerFull)));
    assert_eq!(sim.nodes[server].endpoint.connection_count(), 1);

    let mut sim = Sim::new(LinkConfig::perfect(), 4);
    let server = sim.add(EndpointConfig::default());
    let client = sim.add(EndpointConfig::default());
    let refused = sim.addr(client);
    sim.nodes[server].endpoint.set_accept_filter(move |addr| addr != refused);
    let (addr, now) = (sim.addr(server), sim.now);
    sim.nodes[client].endpoint.connect(now, addr).unwrap();
    sim.run_for(Duration::from_secs(1));
    assert!(sim.nodes[client].events.iter().any(rejected_with(RejectReason::Refused)));
}

#[test]
fn a_server_that_never_answers_gives_a_connect_timeout_after_the_configured_attempts() {
    let config = EndpointConfig {
        connect_attempts: 4,
        connect_retry_interval: Duration::from_millis(100),
        ..EndpointConfig::default()
    };
    let mut sim = Sim::new(LinkConfig::dead(), 5);
    let server = sim.add(config.clone());
    let client = sim.add(config);
    let (addr, now) = (sim.addr(server), sim.now);
    let conn = sim.nodes[client].endpoint.connect(now, addr).unwrap();
    let done = sim.run_until(Duration::from_secs(5), |sim| !sim.nodes[client].events.is_empty());
    assert!(done);
    assert_eq!(
        sim.nodes[client].events,
        [Owned::Disconnected { conn, reason: DisconnectReason::ConnectTimeout }]
    );
    // Waits of 100, 200, 400 and 800 ms, each cut by up to a quarter: 1,125 to 1,500 ms.
    let elapsed = sim.elapsed();
    assert!(
        (Duration::from_millis(1125)..=Duration::from_millis(1500)).contains(&elapsed),
        "four attempts with doubling waits, gave up after {elapsed:?}"
    );
    assert_eq!(sim.sent[client].0, 4);
}

#[test]
fn random_and_mutated_datagrams_neither_panic_nor_connect_nor_disturb_a_connection() {
    let config = EndpointConfig { channels: Qos::ALL.to_vec(), ..EndpointConfig::default() };
    let mut sim = Sim::new(LinkConfig::perfect(), 6);
    let server = sim.add(config.clone());
    let client = sim.add(config);
    let (conn, _) = sim.connect(client, server);

    // Capture real traffic to mutate: control packets and data packets of every kind.
    let mut samples: Vec<Vec<u8>> = Vec::new();
    for (i, _) in Qos::ALL.iter().enumerate() {
        let payload = vec![i as u8; 1 + i * 100];
        sim.nodes[client].endpoint.send(conn, sim::channel(i), &payload).unwrap();
    }
    let now = sim.now;
    samples.extend(sim.capture(client).into_iter().map(|(_, datagram)| datagram));
    for packet in [
        Control::ConnectRequest { protocol_id: 1, fingerprint: 2, client_salt: 3 },
        Control::Challenge { client_salt: 3, cookie: Cookie { issued: 1, mac: 2 } },
        Control::Accept { client_salt: 3, server_salt: 4 },
        Control::Disconnect { token: 5 },
    ] {
        samples.push(encode(&packet));
    }

    let mut rng = Rng::new(7);
    let endpoint = &mut sim.nodes[server].endpoint;
    for i in 0..100_000 {
        let datagram: Vec<u8> = if i % 2 == 0 {
            let len = rng.below(1300) as usize;
            (0..len).map(|_| rng.next_u64() as u8).collect()
        } else {
            let mut d = samples[rng.below(samples.len() as u64) as usize].clone();
            for _ in 0..=rng.below(4) {
                let at = rng.below(d.len() as u64) as usize;
                d[at] ^= 1 << rng.below(8);
            }
            if rng.chance(0.2) {
                d.truncate(rng.below(d.len() as u64 + 1) as usize);
            }
            d
        };
        let from = random_addr(&mut rng);
        endpoint.handle_datagram(now, from, &datagram);
        // Replies go to the forged sources: off the wire, into the void.
        endpoint.capture(now);
        if i % 1000 == 0 {
            endpoint.handle_timeout(now);
        }
    }
    assert_eq!(endpoint.connection_count(), 1, "strangers got no connection");
    while let Some(event) = sim.nodes[server].endpoint.poll_event() {
        assert!(!matches!(event, sturnus_transport::Event::Connected(_)));
    }

    // The original messages (whose packets were captured, not delivered) are resent and all
    // arrive intact, and the connection carries new traffic.
    sim.nodes[client].endpoint.send(conn, ChannelId(6), b"still here").unwrap();
    sim.run_for(Duration::from_secs(2));
    assert_eq!(sim.received(server, ChannelId(6)), [vec![6u8; 601], b"still here".to_vec()]);
    assert!(sim.nodes[server].events.iter().all(|e| !matches!(e, Owned::Disconnected { .. })));
}
