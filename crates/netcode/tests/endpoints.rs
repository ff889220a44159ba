//! The sans-IO endpoints: our client against our server in memory (virtual time), live
//! interop over loopback UDP with `netcode-official` 1.0.0 in both roles, the server's
//! request rules, and a flood of forged requests that leaves no state behind.
#![expect(
    clippy::cast_possible_truncation,
    reason = "test payloads are byte ramps and random bytes: keeping the low bits is the point"
)]

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use sturnus_netcode::client::{Client, ClientEvent, ClientState};
use sturnus_netcode::packet::REQUEST_PACKET_BYTES;
use sturnus_netcode::server::{DisconnectReason, Server, ServerConfig, ServerEvent};
use sturnus_netcode::token::TokenSpec;
use sturnus_netcode::{ConnectToken, Key, MAX_PAYLOAD_BYTES, VERSION_INFO};

const PROTOCOL_ID: u64 = 0x5354_5552_4e55_5331;
/// The virtual Unix clock of the in-memory tests.
const UNIX: u64 = 1_800_000_000;
const TIMEOUT_SECONDS: i32 = 2;
const STEP: Duration = Duration::from_millis(10);

fn private_key() -> Key {
    std::array::from_fn(|i| (i * 7 + 3) as u8)
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn user_data(seed: u8) -> [u8; 256] {
    std::array::from_fn(|i| (i as u8).wrapping_mul(seed))
}

fn token(client_id: u64, servers: &[SocketAddr], unix: u64) -> ConnectToken {
    let spec = TokenSpec {
        protocol_id: PROTOCOL_ID,
        client_id,
        server_addresses: servers.to_vec(),
        expire_seconds: 30,
        timeout_seconds: TIMEOUT_SECONDS,
        user_data: user_data(client_id as u8),
    };
    ConnectToken::generate(&spec, &private_key(), unix).unwrap()
}

fn ramp(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_add(seed)).collect()
}

/// A base instant for virtual time.
#[expect(
    clippy::disallowed_methods,
    reason = "tests need one base instant; time then advances virtually"
)]
fn base_instant() -> Instant {
    Instant::now()
}

/// One server and its clients, exchanging datagrams in memory.
struct Net {
    now: Instant,
    server_address: SocketAddr,
    server: Server,
    clients: Vec<(SocketAddr, Client)>,
    server_events: Vec<ServerEvent>,
    client_events: Vec<Vec<ClientEvent>>,
    /// Drop what the server sends.
    server_silent: bool,
    /// Drop what the clients send.
    clients_silent: bool,
}

impl Net {
    fn new(max_clients: usize) -> Self {
        let server_address = addr("10.0.0.1:40000");
        let mut config = ServerConfig::new(PROTOCOL_ID, private_key(), server_address);
        config.max_clients = max_clients;
        Self {
            now: base_instant(),
            server_address,
            server: Server::new(&config).unwrap(),
            clients: Vec::new(),
            server_events: Vec::new(),
            client_events: Vec::new(),
            server_silent: false,
            clients_silent: false,
        }
    }

    fn add_client(&mut self, client_id: u64, servers: &[SocketAddr]) -> usize {
        let address = addr(&format!("10.0.1.{}:5000", self.clients.len() + 1));
        let client = Client::new(token(client_id, servers, UNIX), self.now);
        self.clients.push((address, client));
        self.client_events.push(Vec::new());
        self.clients.len() - 1
    }

    /// Delivers what is queued, both ways, until nothing is left.
    fn deliver(&mut self) {
        loop {
            let mut moved = false;
            for (address, client) in &mut self.clients {
                while let Some((to, mut bytes)) = client.poll_transmit() {
                    moved = true;
                    if to == self.server_address && !self.clients_silent {
                        self.server.handle_datagram(self.now, UNIX, *address, &mut bytes);
                    }
                }
            }
            while let Some((to, mut bytes)) = self.server.poll_transmit() {
                moved = true;
                assert!(bytes.len() <= sturnus_netcode::MAX_PACKET_BYTES);
                if self.server_silent {
                    continue;
                }
                if let Some((_, client)) = self.clients.iter_mut().find(|(a, _)| *a == to) {
                    client.handle_datagram(self.now, self.server_address, &mut bytes);
                }
            }
            if !moved {
                break;
            }
        }
        while let Some(event) = self.server.poll_event() {
            self.server_events.push(event);
        }
        for (i, (_, client)) in self.clients.iter_mut().enumerate() {
            while let Some(event) = client.poll_event() {
                self.client_events[i].push(event);
            }
        }
    }

    fn step(&mut self) {
        self.now += STEP;
        self.server.update(self.now);
        for (_, client) in &mut self.clients {
            client.update(self.now);
        }
        self.deliver();
    }

    fn run(&mut self, duration: Duration) {
        let steps = duration.as_millis() / STEP.as_millis();
        for _ in 0..steps {
            self.step();
        }
    }

    fn take_server_events(&mut self) -> Vec<ServerEvent> {
        std::mem::take(&mut self.server_events)
    }

    fn take_client_events(&mut self, i: usize) -> Vec<ClientEvent> {
        std::mem::take(&mut self.client_events[i])
    }

    /// Connects client `i` and returns its slot on the server.
    fn connect(&mut self, i: usize) -> usize {
        for _ in 0..100 {
            self.step();
            if self.clients[i].1.state() == ClientState::Connected {
                break;
            }
        }
        assert_eq!(self.clients[i].1.state(), ClientState::Connected);
        let events = self.take_server_events();
        events
            .iter()
            .find_map(|event| match event {
                ServerEvent::Connected { client_index, .. } => Some(*client_index),
                _ => None,
            })
            .expect("the server reports the connection")
    }
}

#[test]
fn connects_exchanges_payloads_and_user_data_and_stays_up_past_the_timeout() {
    let mut net = Net::new(16);
    let server_address = net.server_address;
    net.add_client(42, &[server_address]);
    for _ in 0..100 {
        net.step();
        if net.clients[0].1.state() == ClientState::Connected {
            break;
        }
    }
    assert_eq!(net.clients[0].1.state(), ClientState::Connected);
    let events = net.take_server_events();
    let [ServerEvent::Connected { client_index, client_id, user_data: data, .. }] = &events[..]
    else {
        panic!("one connection expected, got {events:?}");
    };
    assert_eq!((*client_id, **data), (42, user_data(42)));
    let index = *client_index;
    assert!(matches!(
        net.take_client_events(0)[..],
        [ClientEvent::Connected { server, client_index: 0, max_clients: 16, .. }] if server == server_address
    ));

    for len in [1, MAX_PAYLOAD_BYTES] {
        let up = ramp(len, 1);
        net.clients[0].1.send(net.now, &up).unwrap();
        let down = ramp(len, 2);
        net.server.send(net.now, index, &down).unwrap();
        net.deliver();
        assert_eq!(
            net.take_server_events(),
            vec![ServerEvent::Payload { client_index: index, data: up }]
        );
        assert_eq!(net.take_client_events(0), vec![ClientEvent::Payload(down)]);
    }
    assert!(net.clients[0].1.send(net.now, &[]).is_err());
    assert!(net.clients[0].1.send(net.now, &[0; MAX_PAYLOAD_BYTES + 1]).is_err());

    // Keep-alives alone keep it up for three timeouts.
    net.run(Duration::from_secs(3 * TIMEOUT_SECONDS as u64));
    assert_eq!(net.clients[0].1.state(), ClientState::Connected);
    assert_eq!(net.server.connected_clients(), 1);
    assert!(net.take_server_events().is_empty());
    assert!(net.take_client_events(0).is_empty());
    assert_eq!(net.server.stats().packets_dropped, 0);
    assert_eq!(net.clients[0].1.stats().packets_dropped, 0);
}

#[test]
fn a_silent_server_times_the_client_out_and_a_silent_client_the_server() {
    let mut net = Net::new(4);
    let server_address = net.server_address;
    net.add_client(1, &[server_address]);
    let index = net.connect(0);
    net.take_client_events(0);

    net.server_silent = true;
    net.run(Duration::from_secs(TIMEOUT_SECONDS as u64) + Duration::from_millis(100));
    assert_eq!(net.clients[0].1.state(), ClientState::ConnectionTimedOut);
    assert_eq!(
        net.take_client_events(0),
        vec![ClientEvent::Stopped(ClientState::ConnectionTimedOut)]
    );
    // The client no longer sends, so the server times it out too.
    net.run(Duration::from_secs(TIMEOUT_SECONDS as u64) + Duration::from_millis(100));
    assert_eq!(
        net.take_server_events(),
        vec![ServerEvent::Disconnected { client_index: index, reason: DisconnectReason::TimedOut }]
    );
    assert_eq!(net.server.connected_clients(), 0);

    let mut net = Net::new(4);
    net.add_client(2, &[server_address]);
    let index = net.connect(0);
    net.clients_silent = true;
    net.run(Duration::from_secs(TIMEOUT_SECONDS as u64) - Duration::from_millis(100));
    assert_eq!(net.server.connected_clients(), 1, "not before the timeout");
    net.run(Duration::from_millis(200));
    assert_eq!(
        net.take_server_events(),
        vec![ServerEvent::Disconnected { client_index: index, reason: DisconnectReason::TimedOut }]
    );
}

#[test]
fn a_disconnect_is_seen_at_once_both_ways() {
    let mut net = Net::new(4);
    let server_address = net.server_address;
    net.add_client(1, &[server_address]);
    let first = net.connect(0);
    net.add_client(2, &[server_address]);
    let second = net.connect(1);
    net.take_client_events(0);
    net.take_client_events(1);

    net.clients[0].1.disconnect(net.now);
    net.deliver();
    assert_eq!(net.clients[0].1.state(), ClientState::Disconnected);
    assert_eq!(
        net.take_server_events(),
        vec![ServerEvent::Disconnected {
            client_index: first,
            reason: DisconnectReason::ClientDisconnected
        }]
    );
    // The nine redundant disconnects behind the first find no connection.
    assert_eq!(net.server.stats().unknown_address, 9);

    net.server.disconnect(net.now, second);
    net.deliver();
    assert_eq!(net.clients[1].1.state(), ClientState::Disconnected);
    assert_eq!(net.take_client_events(1), vec![ClientEvent::Stopped(ClientState::Disconnected)]);
    assert_eq!(
        net.take_server_events(),
        vec![ServerEvent::Disconnected {
            client_index: second,
            reason: DisconnectReason::ServerDisconnected
        }]
    );
    assert_eq!(net.server.connected_clients(), 0);
}

#[test]
fn the_client_tries_the_next_address_when_the_first_never_answers() {
    let mut net = Net::new(4);
    let server_address = net.server_address;
    let dead = addr("10.0.0.99:40000");
    net.add_client(5, &[dead, server_address]);
    net.run(Duration::from_secs(1));
    assert_eq!(net.clients[0].1.state(), ClientState::SendingRequest);
    assert_eq!(net.clients[0].1.server_address(), Some(dead));
    net.run(Duration::from_secs(TIMEOUT_SECONDS as u64) + Duration::from_millis(500));
    assert_eq!(net.clients[0].1.state(), ClientState::Connected);
    assert_eq!(net.clients[0].1.server_address(), Some(server_address));
}

#[test]
fn a_full_server_denies_and_the_client_stops_denied() {
    let mut net = Net::new(1);
    let server_address = net.server_address;
    net.add_client(1, &[server_address]);
    net.connect(0);
    net.add_client(2, &[server_address]);
    net.run(Duration::from_millis(500));
    assert_eq!(net.clients[1].1.state(), ClientState::Denied);
    assert!(net.server.stats().denied_sent >= 1);
    assert_eq!(net.server.connected_clients(), 1);
}

/// A connection request a client sends, captured.
fn captured_request(token: ConnectToken) -> Vec<u8> {
    let now = base_instant();
    let mut client = Client::new(token, now);
    client.update(now);
    let (_, bytes) = client.poll_transmit().unwrap();
    assert_eq!(bytes.len(), REQUEST_PACKET_BYTES);
    bytes
}

fn server(max_clients: usize) -> (Server, SocketAddr) {
    let address = addr("10.0.0.1:40000");
    let mut config = ServerConfig::new(PROTOCOL_ID, private_key(), address);
    config.max_clients = max_clients;
    (Server::new(&config).unwrap(), address)
}

#[test]
fn a_token_that_does_not_list_the_server_is_ignored() {
    let (mut server, _) = server(4);
    let mut request = captured_request(token(1, &[addr("10.0.0.2:40000")], UNIX));
    server.handle_datagram(base_instant(), UNIX, addr("10.0.1.1:5000"), &mut request);
    assert!(server.poll_transmit().is_none(), "no challenge");
    assert_eq!(server.pending_clients(), 0);
    assert_eq!(server.stats().requests_invalid, 1);
}

#[test]
fn a_token_used_from_another_address_is_ignored_and_from_the_same_one_answered() {
    let (mut server, address) = server(4);
    let now = base_instant();
    let request = captured_request(token(1, &[address], UNIX));
    server.handle_datagram(now, UNIX, addr("10.0.1.1:5000"), &mut request.clone());
    assert!(server.poll_transmit().is_some(), "challenged");
    server.handle_datagram(now, UNIX, addr("10.0.1.1:5000"), &mut request.clone());
    assert!(server.poll_transmit().is_some(), "a retransmission is challenged again");
    server.handle_datagram(now, UNIX, addr("10.0.1.2:5000"), &mut request.clone());
    assert!(server.poll_transmit().is_none(), "the stolen token is not");
    assert_eq!(server.pending_clients(), 1);
    assert_eq!(server.stats().requests_ignored, 1);
    // Expired tokens are refused before anything else.
    server.handle_datagram(now, UNIX + 31, addr("10.0.1.3:5000"), &mut request.clone());
    assert!(server.poll_transmit().is_none());
}

#[test]
fn a_connected_client_id_or_address_cannot_connect_twice() {
    let mut net = Net::new(4);
    let server_address = net.server_address;
    net.add_client(7, &[server_address]);
    net.connect(0);
    // Another client with the same client id, from another address.
    net.add_client(7, &[server_address]);
    net.run(Duration::from_millis(500));
    assert_eq!(net.clients[1].1.state(), ClientState::SendingRequest);
    assert!(net.server.stats().requests_ignored > 0);
    // A fresh token for another id, from the connected address: dropped as a connected
    // client's packet.
    let mut request = captured_request(token(8, &[server_address], UNIX));
    let dropped = net.server.stats().packets_dropped;
    let from = net.clients[0].0;
    net.server.handle_datagram(net.now, UNIX, from, &mut request);
    assert!(net.server.poll_transmit().is_none());
    assert_eq!(net.server.stats().packets_dropped, dropped + 1);
    assert_eq!(net.server.connected_clients(), 1);
}

#[test]
fn a_replayed_payload_is_dropped_and_counted_per_connection() {
    let mut net = Net::new(4);
    let server_address = net.server_address;
    net.add_client(1, &[server_address]);
    net.connect(0);
    net.clients[0].1.send(net.now, b"once").unwrap();
    let (_, sent) = net.clients[0].1.poll_transmit().unwrap();
    let from = net.clients[0].0;
    net.server.handle_datagram(net.now, UNIX, from, &mut sent.clone());
    net.server.handle_datagram(net.now, UNIX, from, &mut sent.clone());
    let payloads = std::iter::from_fn(|| net.server.poll_event())
        .filter(|event| matches!(event, ServerEvent::Payload { .. }))
        .count();
    assert_eq!(payloads, 1);
    assert_eq!(net.server.stats().replays_dropped, 1);
    // Another client's packets are not in that window: a packet replayed from another
    // connection's address does not decrypt there (its keys differ).
}

#[test]
fn a_flood_of_forged_requests_leaves_no_state_and_no_reply() {
    let (mut server, _) = server(4096);
    let now = base_instant();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut replies = 0;
    for i in 0..10_000_u32 {
        let mut request = vec![0; REQUEST_PACKET_BYTES];
        request[1..14].copy_from_slice(VERSION_INFO);
        request[14..22].copy_from_slice(&PROTOCOL_ID.to_le_bytes());
        request[22..30].copy_from_slice(&(UNIX + 30).to_le_bytes());
        for byte in &mut request[30..] {
            *byte = next() as u8;
        }
        let from = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 5000));
        server.handle_datagram(now, UNIX, from, &mut request);
        let request_len = request.len();
        while let Some((_, reply)) = server.poll_transmit() {
            assert!(reply.len() < request_len);
            replies += 1;
        }
    }
    server.update(now + Duration::from_secs(1));
    assert!(server.poll_transmit().is_none());
    assert_eq!(replies, 0, "a forged request was answered");
    assert_eq!(server.pending_clients(), 0);
    assert_eq!(server.token_history_len(), 0);
    assert_eq!(server.connected_clients(), 0);
    assert_eq!(server.stats().requests_invalid, 10_000);
}

#[test]
fn the_token_history_refuses_rather_than_forgets_when_full() {
    // Capacity 1: history and pending hold 4 entries.
    let (mut server, address) = server(1);
    let now = base_instant();
    for i in 0..4_u8 {
        let mut request = captured_request(token(u64::from(i), &[address], UNIX));
        server.handle_datagram(now, UNIX, addr(&format!("10.0.1.{i}:5000")), &mut request);
        assert!(server.poll_transmit().is_some());
    }
    assert_eq!(server.token_history_len(), 4);
    let mut fifth = captured_request(token(9, &[address], UNIX));
    server.handle_datagram(now, UNIX, addr("10.0.1.9:5000"), &mut fifth.clone());
    assert!(server.poll_transmit().is_none(), "refused, none forgotten");
    assert_eq!(server.stats().requests_refused_full_tables, 1);
    assert_eq!(server.token_history_len(), 4);
    // Once those tokens expired, their entries make room.
    server.update(now + Duration::from_secs(60));
    server.handle_datagram(
        now + Duration::from_secs(60),
        UNIX + 20,
        addr("10.0.1.9:5000"),
        &mut fifth,
    );
    assert_eq!(server.token_history_len(), 4);
}

// ---------------------------------------------------------------------------------------
// Live interop with netcode-official 1.0.0 over loopback UDP.

#[expect(
    clippy::disallowed_methods,
    reason = "netcode-official checks token expiry against the wall clock"
)]
fn wall_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[expect(
    clippy::disallowed_methods,
    reason = "real sockets: give the kernel a moment, no speed asserted"
)]
fn pause() {
    std::thread::sleep(Duration::from_millis(1));
}

/// Whether the interop tests send payloads at `step` (of 10 ms): every 50 ms, except for a
/// quiet 2.5 s (longer than the 2 s timeout) in which only keep-alives hold the connection.
fn sends_at(step: u32) -> bool {
    step % 5 == 0 && step < 500 && !(200..450).contains(&step)
}

/// Their client connects to our server (driven over a real socket), payloads flow both ways
/// for longer than the timeout, and their client disconnects cleanly.
#[test]
fn their_client_connects_to_our_server() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_nonblocking(true).unwrap();
    let server_address = socket.local_addr().unwrap();
    let mut config = ServerConfig::new(PROTOCOL_ID, private_key(), server_address);
    config.max_clients = 64;
    let mut server = Server::new(&config).unwrap();
    let token = token(77, &[server_address], wall_unix()).write().unwrap();

    let start = base_instant();
    let mut time = 0.0_f64;
    let mut client = netcode::Client::new(addr("127.0.0.1:0"), time).unwrap();
    client.connect(&token).unwrap();

    let mut buffer = [0_u8; 2048];
    let mut index = None;
    let mut to_server = 0;
    let mut to_client = 0;
    let mut disconnected = false;
    // 400 steps of 10 ms of virtual time: 4 s, twice the timeout.
    for step in 0..600_u32 {
        time += 0.01;
        let now = start + Duration::from_millis(u64::from(step + 1) * 10);
        client.update(time);
        pause();
        while let Ok((len, from)) = socket.recv_from(&mut buffer) {
            server.handle_datagram(now, wall_unix(), from, &mut buffer[..len]);
        }
        server.update(now);
        while let Some(event) = server.poll_event() {
            match event {
                ServerEvent::Connected { client_index, client_id, user_data: data, .. } => {
                    assert_eq!((client_id, *data), (77, user_data(77)));
                    index = Some(client_index);
                }
                ServerEvent::Payload { data, .. } => {
                    assert_eq!(data, ramp(1 + to_server % MAX_PAYLOAD_BYTES, 3));
                    to_server += 1;
                }
                ServerEvent::Disconnected { reason, .. } => {
                    assert_eq!(reason, DisconnectReason::ClientDisconnected);
                    disconnected = true;
                }
                _ => {}
            }
        }
        if let (Some(index), true) = (index, sends_at(step)) {
            let len = [1, MAX_PAYLOAD_BYTES][step as usize % 2];
            server.send(now, index, &ramp(len, 4)).unwrap();
        }
        while let Some((to, bytes)) = server.poll_transmit() {
            socket.send_to(&bytes, to).unwrap();
        }
        pause();
        client.update(time);
        while let Some((data, _)) = client.receive_packet() {
            assert!(data == ramp(1, 4) || data == ramp(MAX_PAYLOAD_BYTES, 4));
            to_client += 1;
        }
        if client.state() == netcode::ClientState::Connected && sends_at(step) {
            client.send_packet(&ramp(1 + to_server % MAX_PAYLOAD_BYTES, 3)).unwrap();
        }
        if step == 500 {
            assert_eq!(client.state(), netcode::ClientState::Connected);
            assert_eq!(server.connected_clients(), 1);
            client.disconnect();
        }
        if disconnected {
            break;
        }
    }
    assert!(disconnected, "our server saw their client disconnect");
    assert!(to_server > 40 && to_client > 40, "{to_server} up, {to_client} down");
    assert_eq!(server.connected_clients(), 0);
}

/// Our client connects to their server (driven with virtual time, real sockets), payloads
/// flow both ways for longer than the timeout, and our client disconnects cleanly.
#[test]
fn our_client_connects_to_their_server() {
    let mut time = 0.0_f64;
    let mut server =
        netcode::Server::new(addr("127.0.0.1:0"), PROTOCOL_ID, &private_key(), time).unwrap();
    server.start(16).unwrap();
    let server_address = server.address();
    let token = token(88, &[server_address], wall_unix());

    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_nonblocking(true).unwrap();
    let start = base_instant();
    let mut client = Client::new(token, start);

    let mut buffer = [0_u8; 2048];
    let mut index = None;
    let mut to_server = 0;
    let mut to_client = 0;
    let mut disconnected = false;
    for step in 0..600_u32 {
        time += 0.01;
        let now = start + Duration::from_millis(u64::from(step + 1) * 10);
        client.update(now);
        while let Some((to, bytes)) = client.poll_transmit() {
            socket.send_to(&bytes, to).unwrap();
        }
        pause();
        server.update(time);
        while let Some(event) = server.next_event() {
            match event {
                netcode::ServerEvent::ClientConnected { client_index } => {
                    assert_eq!(server.client_id(client_index), 88);
                    assert_eq!(server.client_user_data(client_index), Some(&user_data(88)));
                    index = Some(client_index);
                }
                netcode::ServerEvent::ClientDisconnected { reason, .. } => {
                    assert_eq!(reason, netcode::DisconnectReason::ClientDisconnect);
                    disconnected = true;
                }
            }
        }
        if let Some(index) = index {
            while let Some((data, _)) = server.receive_packet(index) {
                assert!(data == ramp(1, 5) || data == ramp(MAX_PAYLOAD_BYTES, 5));
                to_server += 1;
            }
            if sends_at(step) && server.client_connected(index) {
                let len = [1, MAX_PAYLOAD_BYTES][step as usize % 2];
                server.send_packet(index, &ramp(len, 6)).unwrap();
            }
        }
        pause();
        while let Ok((len, from)) = socket.recv_from(&mut buffer) {
            client.handle_datagram(now, from, &mut buffer[..len]);
        }
        while let Some(event) = client.poll_event() {
            if let ClientEvent::Payload(data) = event {
                assert!(data == ramp(1, 6) || data == ramp(MAX_PAYLOAD_BYTES, 6));
                to_client += 1;
            }
        }
        if client.state() == ClientState::Connected && sends_at(step) {
            let len = [MAX_PAYLOAD_BYTES, 1][step as usize % 2];
            client.send(now, &ramp(len, 5)).unwrap();
        }
        if step == 500 {
            assert_eq!(client.state(), ClientState::Connected);
            client.disconnect(now);
            while let Some((to, bytes)) = client.poll_transmit() {
                socket.send_to(&bytes, to).unwrap();
            }
        }
        if disconnected {
            break;
        }
    }
    assert!(disconnected, "their server saw our client disconnect");
    assert!(to_server > 40 && to_client > 40, "{to_server} up, {to_client} down");
    assert_eq!(client.stats().packets_dropped, 0);
}

#[test]
fn the_servers_challenges_are_numbered_from_1_shl_63() {
    let (mut server, address) = server(4);
    let token = token(1, &[address], UNIX);
    let key = token.server_to_client_key;
    let mut request = captured_request(token);
    server.handle_datagram(base_instant(), UNIX, addr("10.0.1.1:5000"), &mut request);
    let (_, mut challenge) = server.poll_transmit().unwrap();
    assert!(challenge.len() < REQUEST_PACKET_BYTES);
    let (sequence, packet) = sturnus_netcode::packet::read(
        &mut challenge,
        PROTOCOL_ID,
        Some(&key),
        sturnus_netcode::packet::Allowed::CLIENT,
        None,
        0,
    )
    .unwrap();
    assert_eq!(sequence, 1 << 63);
    let sturnus_netcode::packet::Packet::Challenge { sequence: challenge_sequence, .. } = packet
    else {
        panic!("a challenge expected, got {packet:?}");
    };
    assert_eq!(challenge_sequence, 1 << 63);
}

#[test]
fn each_connection_has_its_own_replay_window() {
    let mut net = Net::new(4);
    let server_address = net.server_address;
    net.add_client(1, &[server_address]);
    net.connect(0);
    // The first client's sequence runs far ahead of the second's.
    for _ in 0..400 {
        net.clients[0].1.send(net.now, b"a").unwrap();
    }
    net.deliver();
    net.add_client(2, &[server_address]);
    let second = net.connect(1);
    net.clients[1].1.send(net.now, b"b").unwrap();
    net.deliver();
    assert!(
        net.take_server_events()
            .contains(&ServerEvent::Payload { client_index: second, data: b"b".to_vec() })
    );
    assert_eq!(net.server.stats().replays_dropped, 0);
}

#[test]
fn garbage_never_panics_either_endpoint() {
    let mut net = Net::new(4);
    let server_address = net.server_address;
    net.add_client(1, &[server_address]);
    net.connect(0);
    let from = net.clients[0].0;
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let len = (next() % 1400) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        net.server.handle_datagram(net.now, UNIX, from, &mut bytes.clone());
        net.server.handle_datagram(net.now, UNIX, addr("10.9.9.9:1"), &mut bytes.clone());
        net.clients[0].1.handle_datagram(net.now, server_address, &mut bytes);
    }
    assert!(net.server.poll_transmit().is_none());
    assert_eq!(net.server.connected_clients(), 1);
    assert_eq!(net.clients[0].1.state(), ClientState::Connected);
    assert!(net.take_server_events().is_empty());
}

#[test]
fn a_server_takes_4096_clients_and_denies_the_next() {
    let (mut server, address) = server(sturnus_netcode::server::DEFAULT_MAX_CLIENTS);
    assert_eq!(server.max_clients(), 4096);
    let now = base_instant();
    let handshake = |server: &mut Server, i: u32| -> ClientState {
        let from = SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 5000));
        let mut client = Client::new(token(u64::from(i), &[address], UNIX), now);
        client.update(now);
        for _ in 0..3 {
            while let Some((_, mut bytes)) = client.poll_transmit() {
                server.handle_datagram(now, UNIX, from, &mut bytes);
            }
            while let Some((_, mut bytes)) = server.poll_transmit() {
                client.handle_datagram(now, address, &mut bytes);
            }
        }
        client.state()
    };
    for i in 0..4096 {
        assert_eq!(handshake(&mut server, i), ClientState::Connected, "client {i}");
    }
    assert_eq!(server.connected_clients(), 4096);
    assert_eq!(handshake(&mut server, 4096), ClientState::Denied);
    assert_eq!(server.connected_clients(), 4096);
    assert!(server.client_address(4095).is_some());
}

#[test]
fn configuration_and_api_misuse_are_errors_not_panics() {
    let mut config = ServerConfig::new(PROTOCOL_ID, private_key(), addr("10.0.0.1:1"));
    config.max_clients = 0;
    assert!(matches!(Server::new(&config), Err(sturnus_netcode::NetcodeError::MaxClients(0))));
    let (mut server, _) = server(4);
    let now = base_instant();
    assert!(matches!(server.send(now, 3, b"x"), Err(sturnus_netcode::NetcodeError::NoClient(3))));
    assert!(server.send(now, usize::MAX, b"x").is_err());
    server.disconnect(now, usize::MAX);
    assert!(server.poll_transmit().is_none());
    let mut client = Client::new(token(1, &[addr("10.0.0.1:1")], UNIX), now);
    assert!(matches!(client.send(now, b"x"), Err(sturnus_netcode::NetcodeError::NotConnected)));
}

#[test]
fn the_client_drops_a_replayed_payload() {
    let mut net = Net::new(4);
    let server_address = net.server_address;
    net.add_client(1, &[server_address]);
    let index = net.connect(0);
    net.take_client_events(0);
    net.server.send(net.now, index, b"once").unwrap();
    // The payload is the last datagram (a keep-alive goes first while the server waits for
    // the client's first packet).
    let mut sent: Vec<_> = std::iter::from_fn(|| net.server.poll_transmit()).collect();
    assert_eq!(sent.len(), 2, "a keep-alive, then the payload");
    let (_, sent) = sent.pop().unwrap();
    let client = &mut net.clients[0].1;
    client.handle_datagram(net.now, server_address, &mut sent.clone());
    client.handle_datagram(net.now, server_address, &mut sent.clone());
    let payloads: Vec<_> = std::iter::from_fn(|| client.poll_event()).collect();
    assert_eq!(payloads, vec![ClientEvent::Payload(b"once".to_vec())]);
    assert_eq!(client.stats().replays_dropped, 1);
}

// ---------------------------------------------------------------------------------------
// Interop with renetcode 2.0.0, in memory (it is sans-IO). Its deviations met here: its token
// writer puts the client id in front of the 2048 bytes, its client sends one disconnect, it
// writes sequence number 0 with no sequence bytes, and its server sends payloads to an
// unconfirmed client without a keep-alive first.

/// The time renetcode is given: the Unix clock (its server checks token expiry against it).
fn renet_time(step: u32) -> Duration {
    Duration::from_secs(UNIX) + STEP * step
}

/// Their client connects to our server; payloads both ways past the timeout; it disconnects.
#[test]
fn renetcode_client_connects_to_our_server() {
    let (mut server, server_address) = server(16);
    let ours = token(91, &[server_address], UNIX);
    let mut bytes = 91_u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(&ours.write().unwrap()[..]);
    let connect_token = renetcode::ConnectToken::read(&mut &bytes[..]).unwrap();
    let mut client = renetcode::NetcodeClient::new(
        renet_time(0),
        renetcode::ClientAuthentication::Secure { connect_token },
    )
    .unwrap();
    let client_address = addr("10.0.1.1:5000");
    let start = base_instant();
    let (mut index, mut to_server, mut to_client, mut disconnected) = (None, 0, 0, false);
    for step in 1..=600_u32 {
        let now = start + STEP * step;
        let unix = renet_time(step).as_secs();
        if let Some((packet, _)) = client.update(STEP) {
            server.handle_datagram(now, unix, client_address, packet);
        }
        if client.is_connected() && sends_at(step) {
            let len = [1, MAX_PAYLOAD_BYTES][step as usize % 2];
            let (_, packet) = client.generate_payload_packet(&ramp(len, 7)).unwrap();
            server.handle_datagram(now, unix, client_address, packet);
        }
        if step == 500 {
            assert!(client.is_connected());
            let (_, packet) = client.disconnect().unwrap();
            server.handle_datagram(now, unix, client_address, packet);
        }
        server.update(now);
        while let Some(event) = server.poll_event() {
            match event {
                ServerEvent::Connected { client_index, client_id, user_data: data, .. } => {
                    assert_eq!((client_id, *data), (91, user_data(91)));
                    index = Some(client_index);
                }
                ServerEvent::Payload { data, .. } => {
                    assert!(data == ramp(1, 7) || data == ramp(MAX_PAYLOAD_BYTES, 7));
                    to_server += 1;
                }
                ServerEvent::Disconnected { reason, .. } => {
                    assert_eq!(reason, DisconnectReason::ClientDisconnected);
                    disconnected = true;
                }
                _ => {}
            }
        }
        if let (Some(index), true) = (index, sends_at(step)) {
            let len = [MAX_PAYLOAD_BYTES, 1][step as usize % 2];
            server.send(now, index, &ramp(len, 8)).unwrap();
        }
        while let Some((_, mut bytes)) = server.poll_transmit() {
            if let Some(data) = client.process_packet(&mut bytes) {
                assert!(data == ramp(1, 8) || data == ramp(MAX_PAYLOAD_BYTES, 8));
                to_client += 1;
            }
        }
        if disconnected {
            break;
        }
    }
    assert!(disconnected, "our server saw their client disconnect");
    assert!(to_server > 40 && to_client > 40, "{to_server} up, {to_client} down");
    assert_eq!(server.stats().packets_dropped, 0);
}

/// Our client connects to their server; payloads both ways past the timeout; ours
/// disconnects.
#[test]
fn our_client_connects_to_a_renetcode_server() {
    let server_address = addr("10.0.0.1:40000");
    let mut server = renetcode::NetcodeServer::new(renetcode::ServerConfig {
        current_time: renet_time(0),
        max_clients: 16,
        protocol_id: PROTOCOL_ID,
        public_addresses: vec![server_address],
        authentication: renetcode::ServerAuthentication::Secure { private_key: private_key() },
    });
    let start = base_instant();
    let mut client = Client::new(token(92, &[server_address], UNIX), start);
    let client_address = addr("10.0.1.1:5000");
    let (mut connected, mut to_server, mut to_client, mut disconnected) = (false, 0, 0, false);
    let mut zero_sequence_bytes = 0;
    for step in 1..=600_u32 {
        let now = start + STEP * step;
        client.update(now);
        if client.state() == ClientState::Connected && sends_at(step) {
            let len = [1, MAX_PAYLOAD_BYTES][step as usize % 2];
            client.send(now, &ramp(len, 9)).unwrap();
        }
        if step == 500 {
            assert_eq!(client.state(), ClientState::Connected);
            client.disconnect(now);
        }
        let mut replies = Vec::new();
        while let Some((to, mut bytes)) = client.poll_transmit() {
            assert_eq!(to, server_address);
            match server.process_packet(client_address, &mut bytes) {
                renetcode::ServerResult::PacketToSend { payload, .. } => {
                    replies.push(payload.to_vec())
                }
                renetcode::ServerResult::ClientConnected {
                    client_id,
                    user_data: data,
                    payload,
                    ..
                } => {
                    assert_eq!((client_id, *data), (92, user_data(92)));
                    connected = true;
                    replies.push(payload.to_vec());
                }
                renetcode::ServerResult::Payload { payload, .. } => {
                    assert!(payload == ramp(1, 9) || payload == ramp(MAX_PAYLOAD_BYTES, 9));
                    to_server += 1;
                }
                renetcode::ServerResult::ClientDisconnected { .. } => disconnected = true,
                renetcode::ServerResult::None => {}
            }
        }
        server.update(STEP);
        if server.is_client_connected(92) {
            if let renetcode::ServerResult::PacketToSend { payload, .. } = server.update_client(92)
            {
                replies.push(payload.to_vec());
            }
            // It sends payloads to a client it has not heard from since the handshake without
            // a keep-alive first (the standard sends one), so a game using it would wait for
            // the client's first message; so does this test.
            if sends_at(step) && client.state() == ClientState::Connected {
                let len = [MAX_PAYLOAD_BYTES, 1][step as usize % 2];
                let (_, payload) = server.generate_payload_packet(92, &ramp(len, 10)).unwrap();
                replies.push(payload.to_vec());
            }
        }
        for mut reply in replies {
            if reply[0] >> 4 == 0 {
                zero_sequence_bytes += 1;
            }
            client.handle_datagram(now, server_address, &mut reply);
        }
        while let Some(event) = client.poll_event() {
            if let ClientEvent::Payload(data) = event {
                assert!(data == ramp(1, 10) || data == ramp(MAX_PAYLOAD_BYTES, 10));
                to_client += 1;
            }
        }
        if disconnected {
            break;
        }
    }
    assert!(connected, "their server saw our client connect");
    assert!(disconnected, "their server saw our client disconnect");
    assert!(to_server > 40 && to_client > 40, "{to_server} up, {to_client} down");
    // renetcode writes sequence 0 with no sequence bytes (the standard: 1 to 8); its first
    // challenge and the first keep-alive of the connection are such, and dropped, as the
    // reference implementation drops them; the next ones connect.
    assert_eq!(zero_sequence_bytes, 2);
    assert_eq!(client.stats().packets_dropped, zero_sequence_bytes);
}
