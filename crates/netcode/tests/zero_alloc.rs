//! A driver that gives the endpoints' buffers back (`recycle`) makes them allocate nothing per
//! packet once warm: payloads both ways and the keep-alives between them.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sturnus_netcode::ConnectToken;
use sturnus_netcode::client::{Client, ClientEvent, ClientState};
use sturnus_netcode::server::{Server, ServerConfig, ServerEvent};
use sturnus_netcode::token::TokenSpec;
use sturnus_testkit::counting::{Counting, allocations_in};

#[global_allocator]
static GLOBAL: Counting = Counting;

const PROTOCOL_ID: u64 = 0x5354_5552_4e55_5331;
const UNIX: u64 = 1_800_000_000;

/// Moves every queued datagram to its peer and back, recycling each; returns the payloads
/// each side received (given back too).
fn deliver(now: Instant, server: &mut Server, client: &mut Client, at: SocketAddr) -> usize {
    let server_address = client.server_address().expect("connecting");
    let mut payloads = 0;
    loop {
        let mut moved = false;
        while let Some((_, mut bytes)) = client.poll_transmit() {
            server.handle_datagram(now, UNIX, at, &mut bytes);
            client.recycle(bytes);
            moved = true;
        }
        while let Some((_, mut bytes)) = server.poll_transmit() {
            client.handle_datagram(now, server_address, &mut bytes);
            server.recycle(bytes);
            moved = true;
        }
        while let Some(event) = server.poll_event() {
            if let ServerEvent::Payload { data, .. } = event {
                payloads += 1;
                server.recycle(data);
            }
        }
        while let Some(event) = client.poll_event() {
            if let ClientEvent::Payload(data) = event {
                payloads += 1;
                client.recycle(data);
            }
        }
        if !moved {
            return payloads;
        }
    }
}

#[test]
fn recycling_drivers_allocate_nothing_per_packet() {
    let server_address: SocketAddr = "10.0.0.1:40000".parse().unwrap();
    let client_address: SocketAddr = "10.0.0.2:50000".parse().unwrap();
    let key = sturnus_netcode::random_key().unwrap();
    let mut server = Server::new(&ServerConfig::new(PROTOCOL_ID, key, server_address)).unwrap();
    let spec = TokenSpec {
        protocol_id: PROTOCOL_ID,
        client_id: 1,
        server_addresses: vec![server_address],
        expire_seconds: 30,
        timeout_seconds: 5,
        user_data: [0; 256],
    };
    #[expect(clippy::disallowed_methods, reason = "the virtual clock's origin")]
    let mut now = Instant::now();
    let mut client = Client::new(ConnectToken::generate(&spec, &key, UNIX).unwrap(), now);
    for _ in 0..20 {
        client.update(now);
        server.update(now);
        deliver(now, &mut server, &mut client, client_address);
        now += Duration::from_millis(50);
    }
    assert_eq!(client.state(), ClientState::Connected);
    let payload = [7_u8; 1000];
    let exchange = |now: Instant, server: &mut Server, client: &mut Client| {
        client.update(now);
        server.update(now);
        client.send(now, &payload).unwrap();
        server.send(now, 0, &payload).unwrap();
        deliver(now, server, client, client_address)
    };
    // Warm-up: the queues and the spare buffers reach their working size.
    for _ in 0..50 {
        now += Duration::from_millis(50);
        assert_eq!(exchange(now, &mut server, &mut client), 2);
    }
    let mut delivered = 0;
    let allocations = allocations_in(|| {
        for _ in 0..500 {
            now += Duration::from_millis(50);
            delivered += exchange(now, &mut server, &mut client);
        }
    });
    assert_eq!(delivered, 1000, "every payload arrived");
    assert_eq!(allocations, 0, "allocations over 1,000 payloads and their keep-alives");
}
