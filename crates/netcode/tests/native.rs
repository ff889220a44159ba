//! The native secure profile: our native client against our server in memory (virtual time):
//! the handshake and payloads both ways, pinning, forged and lost accepts, the sizes of the
//! handshake's packets, no server state before a valid cookie, cookies replayed from another
//! address or too late, keep-alives past the timeout, disconnects.
#![expect(
    clippy::cast_possible_truncation,
    reason = "test payloads and addresses are byte ramps: keeping the low bits is the point"
)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sturnus_netcode::client::{Client, ClientEvent, ClientState};
use sturnus_netcode::native::{
    self, ACCEPT_BYTES, CHALLENGE_BYTES, NATIVE_VERSION_INFO, NativeConfig, REQUEST_BYTES,
    RESPONSE_BYTES,
};
use sturnus_netcode::server::{DisconnectReason, Server, ServerConfig, ServerEvent};
use sturnus_netcode::{Key, MAX_PAYLOAD_BYTES};

const PROTOCOL_ID: u64 = 0x5354_5552_4e55_5331;
/// The virtual Unix clock the server is given.
const UNIX: u64 = 1_800_000_000;
const TIMEOUT: Duration = Duration::from_secs(2);
const STEP: Duration = Duration::from_millis(10);

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
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

fn static_secret() -> Key {
    std::array::from_fn(|i| (i * 11 + 5) as u8)
}

fn native_server(max_clients: usize) -> Server {
    let mut config = ServerConfig::new(PROTOCOL_ID, [3; 32], addr("10.0.0.1:40000"));
    config.max_clients = max_clients;
    config.native = Some(NativeConfig::from_secret(static_secret(), TIMEOUT));
    Server::new(&config).unwrap()
}

/// What to do with a datagram in flight.
enum Fate {
    Deliver,
    Drop,
}

/// One server and its native clients, exchanging datagrams in memory.
struct Net {
    now: Instant,
    unix: u64,
    server_address: SocketAddr,
    server: Server,
    clients: Vec<(SocketAddr, Client)>,
    server_events: Vec<ServerEvent>,
    client_events: Vec<Vec<ClientEvent>>,
    /// Every datagram the server sent, by size, with the size of the client datagram just
    /// before it (what caused it).
    sent: Vec<(usize, usize)>,
}

impl Net {
    fn new(max_clients: usize) -> Self {
        Self {
            now: base_instant(),
            unix: UNIX,
            server_address: addr("10.0.0.1:40000"),
            server: native_server(max_clients),
            clients: Vec::new(),
            server_events: Vec::new(),
            client_events: Vec::new(),
            sent: Vec::new(),
        }
    }

    fn add_client(&mut self, pinned: Option<native::PublicKey>) -> usize {
        let address = addr(&format!("10.0.1.{}:5000", self.clients.len() + 1));
        let client =
            Client::native(self.server_address, PROTOCOL_ID, pinned, TIMEOUT, self.now).unwrap();
        assert!(client.is_native());
        self.clients.push((address, client));
        self.client_events.push(Vec::new());
        self.clients.len() - 1
    }

    fn deliver(&mut self) {
        self.deliver_with(|_| Fate::Deliver);
    }

    /// Delivers what is queued, both ways, until nothing is left; `server_to_client` sees
    /// (and may change or drop) each datagram the server sends.
    fn deliver_with(&mut self, mut server_to_client: impl FnMut(&mut Vec<u8>) -> Fate) {
        loop {
            let mut moved = false;
            for i in 0..self.clients.len() {
                while let Some((to, mut bytes)) = self.clients[i].1.poll_transmit() {
                    moved = true;
                    assert_eq!(to, self.server_address);
                    let cause = bytes.len();
                    let from = self.clients[i].0;
                    self.server.handle_datagram(self.now, self.unix, from, &mut bytes);
                    while let Some((to, reply)) = self.server.poll_transmit() {
                        self.sent.push((reply.len(), cause));
                        self.forward(to, reply, &mut server_to_client);
                    }
                }
            }
            while let Some((to, bytes)) = self.server.poll_transmit() {
                moved = true;
                self.sent.push((bytes.len(), 0));
                self.forward(to, bytes, &mut server_to_client);
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

    fn forward(
        &mut self,
        to: SocketAddr,
        mut bytes: Vec<u8>,
        server_to_client: &mut impl FnMut(&mut Vec<u8>) -> Fate,
    ) {
        if let Fate::Drop = server_to_client(&mut bytes) {
            return;
        }
        if let Some((_, client)) = self.clients.iter_mut().find(|(a, _)| *a == to) {
            client.handle_datagram(self.now, self.server_address, &mut bytes);
        }
    }

    fn step_with(&mut self, server_to_client: impl FnMut(&mut Vec<u8>) -> Fate) {
        self.now += STEP;
        self.server.update(self.now);
        for (_, client) in &mut self.clients {
            client.update(self.now);
        }
        self.deliver_with(server_to_client);
    }

    fn step(&mut self) {
        self.step_with(|_| Fate::Deliver);
    }

    fn run(&mut self, duration: Duration) {
        for _ in 0..duration.as_millis() / STEP.as_millis() {
            self.step();
        }
    }

    fn take_server_events(&mut self) -> Vec<ServerEvent> {
        std::mem::take(&mut self.server_events)
    }

    fn take_client_events(&mut self, i: usize) -> Vec<ClientEvent> {
        std::mem::take(&mut self.client_events[i])
    }

    /// Steps until client `i` is connected (or a second passed).
    fn connect(&mut self, i: usize) {
        for _ in 0..100 {
            self.step();
            if self.clients[i].1.state() == ClientState::Connected {
                break;
            }
        }
        assert_eq!(self.clients[i].1.state(), ClientState::Connected);
    }
}

#[test]
fn connects_exchanges_payloads_both_ways_and_stays_up_past_the_timeout() {
    let mut net = Net::new(16);
    net.add_client(None);
    net.connect(0);

    let events = net.take_server_events();
    let [ServerEvent::Connected { client_index, client_id, user_data, binding }] = &events[..]
    else {
        panic!("one connection expected, got {events:?}");
    };
    let index = *client_index;
    assert!(net.server.is_native(index));
    assert_eq!(**user_data, [0; 256], "a native connection has no user data");
    assert!(*client_id >= 1 << 63, "native ids are the server's own numbers");
    let client_events = net.take_client_events(0);
    let [ClientEvent::Connected { server, client_index: ci, max_clients: 16, binding: b }] =
        &client_events[..]
    else {
        panic!("one connection expected, got {client_events:?}");
    };
    assert_eq!(*server, net.server_address);
    assert_eq!(*ci as usize, index);
    assert_eq!(b, binding, "both ends derive the same binding");
    assert_ne!(*binding, [0; 16]);
    // Trust on first use: the client saw the server's static key.
    assert_eq!(net.clients[0].1.server_static_key(), net.server.native_public_key());
    assert_eq!(
        net.server.native_public_key(),
        Some(NativeConfig::from_secret(static_secret(), TIMEOUT).public_key())
    );

    for len in [1, 2, 100, MAX_PAYLOAD_BYTES] {
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

    // Keep-alives alone keep it up for three timeouts.
    net.run(3 * TIMEOUT);
    assert_eq!(net.clients[0].1.state(), ClientState::Connected);
    assert_eq!(net.server.connected_clients(), 1);
    assert!(net.take_server_events().is_empty());
    assert!(net.take_client_events(0).is_empty());
    assert_eq!(net.server.stats().packets_dropped, 0);
    assert_eq!(net.clients[0].1.stats().packets_dropped, 0);
}

#[test]
fn two_clients_get_their_own_keys_and_ids() {
    let mut net = Net::new(16);
    net.add_client(None);
    net.add_client(None);
    net.connect(0);
    net.connect(1);
    let bindings: Vec<_> = net
        .take_server_events()
        .into_iter()
        .filter_map(|event| match event {
            ServerEvent::Connected { client_id, binding, .. } => Some((client_id, binding)),
            _ => None,
        })
        .collect();
    assert_eq!(bindings.len(), 2);
    assert_ne!(bindings[0].0, bindings[1].0);
    assert_ne!(bindings[0].1, bindings[1].1);
}

#[test]
fn a_pinned_key_connects_and_a_wrong_one_stops_typed() {
    let mut net = Net::new(16);
    let right = net.server.native_public_key();
    net.add_client(right);
    net.connect(0);

    let mut wrong = right.unwrap();
    wrong[0] ^= 1;
    net.add_client(Some(wrong));
    for _ in 0..20 {
        net.step();
    }
    let client = &net.clients[1].1;
    assert_eq!(client.state(), ClientState::ServerKeyMismatch);
    assert!(!client.state().is_active());
    assert_eq!(client.stats().server_key_mismatches, 1);
    assert_eq!(client.stats().accepts_forged, 0);
    // It tells which key it saw.
    assert_eq!(client.server_static_key(), right);
    assert_eq!(
        net.take_client_events(1),
        vec![ClientEvent::Stopped(ClientState::ServerKeyMismatch)]
    );
    // It sent nothing under the keys: the server's slot for it never hears from it.
    net.run(TIMEOUT + Duration::from_millis(100));
    assert!(net.take_server_events().iter().any(|event| matches!(
        event,
        ServerEvent::Disconnected { reason: DisconnectReason::TimedOut, .. }
    )));
    assert_eq!(net.server.connected_clients(), 1);
}

#[test]
fn a_forged_or_garbled_accept_is_dropped_and_the_real_one_connects() {
    let mut net = Net::new(16);
    net.add_client(None);
    // Each accept is garbled in flight (one byte flipped: the keys, the sealed body, the tag).
    let positions = [1, 20, 33, 50, 65, 70, 73, ACCEPT_BYTES - 1];
    let mut garbled = 0;
    for _ in 0..500 {
        let Some(&position) = positions.get(garbled as usize) else {
            break;
        };
        net.step_with(|bytes| {
            if bytes.len() == ACCEPT_BYTES {
                bytes[position] ^= 0x40;
                garbled += 1;
            }
            Fate::Deliver
        });
        let client = &net.clients[0].1;
        assert_ne!(client.state(), ClientState::Connected);
        assert_eq!(client.stats().accepts_forged, garbled);
    }
    assert_eq!(garbled as usize, positions.len());
    assert_eq!(net.clients[0].1.state(), ClientState::SendingResponse);
    // An accept made up by an off-path attacker with its own keys.
    let mut made_up = vec![native::ACCEPT_TYPE];
    made_up.extend((1..ACCEPT_BYTES).map(|i| (i * 7) as u8));
    let client = &mut net.clients[0].1;
    client.handle_datagram(net.now, net.server_address, &mut made_up);
    assert_eq!(client.stats().accepts_forged, garbled + 1);
    assert_eq!(client.state(), ClientState::SendingResponse);
    // The real accept, sent again for the next response, connects it.
    net.connect(0);
    assert!(net.server.stats().accepts_resent >= 1);
}

#[test]
fn a_lost_accept_is_sent_again_until_the_client_confirms() {
    let mut net = Net::new(16);
    net.add_client(None);
    let mut lost = 0;
    for _ in 0..50 {
        net.step_with(|bytes| {
            if bytes.len() == ACCEPT_BYTES && lost < 3 {
                lost += 1;
                Fate::Drop
            } else {
                Fate::Deliver
            }
        });
        if net.clients[0].1.state() == ClientState::Connected {
            break;
        }
    }
    assert_eq!(lost, 3);
    assert_eq!(net.clients[0].1.state(), ClientState::Connected);
    assert_eq!(net.server.stats().accepts_resent, 3);
    // One slot, one connection event, however many accepts.
    let connected = net
        .take_server_events()
        .iter()
        .filter(|event| matches!(event, ServerEvent::Connected { .. }))
        .count();
    assert_eq!(connected, 1);
    assert_eq!(net.server.connected_clients(), 1);
}

#[test]
fn after_the_confirmation_a_repeated_response_gets_no_accept() {
    let mut net = Net::new(16);
    net.add_client(None);
    let mut response = None;
    let address = net.clients[0].0;
    for _ in 0..100 {
        net.now += STEP;
        net.server.update(net.now);
        net.clients[0].1.update(net.now);
        // Both ways until nothing moves, keeping a copy of the first response.
        loop {
            let mut moved = false;
            while let Some((_, mut bytes)) = net.clients[0].1.poll_transmit() {
                moved = true;
                if bytes[0] == native::RESPONSE_TYPE && response.is_none() {
                    response = Some(bytes.clone());
                }
                net.server.handle_datagram(net.now, net.unix, address, &mut bytes);
            }
            while let Some((_, mut bytes)) = net.server.poll_transmit() {
                moved = true;
                net.clients[0].1.handle_datagram(net.now, net.server_address, &mut bytes);
            }
            if !moved {
                break;
            }
        }
        if net.clients[0].1.state() == ClientState::Connected {
            break;
        }
    }
    assert_eq!(net.clients[0].1.state(), ClientState::Connected);
    while net.server.poll_transmit().is_some() {}
    let dropped = net.server.stats().packets_dropped;
    let mut replayed = response.unwrap();
    net.server.handle_datagram(net.now, net.unix, address, &mut replayed);
    assert!(net.server.poll_transmit().is_none(), "an accept after the confirmation");
    assert_eq!(net.server.stats().accepts_resent, 0);
    assert_eq!(net.server.stats().packets_dropped, dropped + 1);
}

#[test]
fn every_reply_is_smaller_than_the_request_that_caused_it() {
    assert_eq!((REQUEST_BYTES, CHALLENGE_BYTES, RESPONSE_BYTES, ACCEPT_BYTES), (128, 41, 128, 89));
    let mut net = Net::new(16);
    net.add_client(None);
    net.connect(0);
    let challenges = net.sent.iter().filter(|(len, _)| *len == CHALLENGE_BYTES).count();
    let accepts = net.sent.iter().filter(|(len, _)| *len == ACCEPT_BYTES).count();
    assert!(challenges >= 1 && accepts >= 1);
    for &(reply, cause) in &net.sent {
        if reply == CHALLENGE_BYTES {
            assert_eq!(cause, REQUEST_BYTES);
        }
        if reply == ACCEPT_BYTES {
            assert_eq!(cause, RESPONSE_BYTES);
        }
        if cause != 0 {
            assert!(reply < cause, "a reply of {reply} bytes to a datagram of {cause}");
        }
    }
}

/// A native request with this client key, laid out by hand from the module's documentation.
fn request(client_key: &[u8; 32]) -> Vec<u8> {
    let mut request = vec![0; REQUEST_BYTES];
    request[0] = native::REQUEST_TYPE;
    request[1..14].copy_from_slice(NATIVE_VERSION_INFO);
    request[14..22].copy_from_slice(&PROTOCOL_ID.to_le_bytes());
    request[22..54].copy_from_slice(client_key);
    request
}

/// The response answering `challenge` for this client key, by hand.
fn response(client_key: &[u8; 32], challenge: &[u8]) -> Vec<u8> {
    let mut response = request(client_key);
    response[0] = native::RESPONSE_TYPE;
    response[54..86].copy_from_slice(&challenge[9..41]);
    response
}

fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

#[test]
fn a_flood_of_requests_keeps_no_state_and_every_reply_is_smaller() {
    let mut server = native_server(4096);
    let now = base_instant();
    let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
    let mut challenges = 0;
    for i in 0..10_000_u32 {
        let key: [u8; 32] = std::array::from_fn(|_| next() as u8);
        let mut bytes = request(&key);
        let from = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 5000));
        server.handle_datagram(now, UNIX, from, &mut bytes);
        while let Some((to, reply)) = server.poll_transmit() {
            assert_eq!(to, from);
            assert_eq!(reply.len(), CHALLENGE_BYTES);
            assert!(reply.len() < REQUEST_BYTES);
            assert_eq!(reply[1..9], key[..8], "the challenge echoes the request's key");
            challenges += 1;
        }
        // And a response with a made-up cookie from each: refused, nothing kept.
        let mut forged = response(&key, &[0x5a; 41]);
        server.handle_datagram(now, UNIX, from, &mut forged);
        assert!(server.poll_transmit().is_none());
    }
    assert_eq!(challenges, 10_000);
    assert_eq!(server.pending_clients(), 0);
    assert_eq!(server.connected_clients(), 0);
    assert_eq!(server.stats().cookies_refused, 10_000);
    server.update(now + Duration::from_secs(1));
    assert!(server.poll_transmit().is_none());
    assert!(server.poll_event().is_none());
}

/// A request from `from`, its challenge, and the response that answers it.
fn challenge_for(server: &mut Server, now: Instant, from: SocketAddr, key: &[u8; 32]) -> Vec<u8> {
    let mut bytes = request(key);
    server.handle_datagram(now, UNIX, from, &mut bytes);
    let (_, challenge) = server.poll_transmit().expect("a challenge");
    response(key, &challenge)
}

/// A real client's ephemeral key, so that the response leads to a connection.
fn some_public_key(seed: u8) -> [u8; 32] {
    NativeConfig::from_secret([seed; 32], TIMEOUT).public_key()
}

#[test]
fn a_cookie_from_another_address_key_or_time_is_refused_and_the_right_one_accepted() {
    let mut server = native_server(16);
    let now = base_instant();
    let client = addr("10.0.1.1:5000");
    let key = some_public_key(9);
    let good = challenge_for(&mut server, now, client, &key);

    // From another address (or port).
    for other in [addr("10.0.1.2:5000"), addr("10.0.1.1:5001"), addr("[::1]:5000")] {
        server.handle_datagram(now, UNIX, other, &mut good.clone());
    }
    // With another client key (the cookie is bound to the request's).
    let mut other_key = good.clone();
    other_key[30] ^= 1;
    server.handle_datagram(now, UNIX, client, &mut other_key);
    // A cookie garbled.
    let mut garbled = good.clone();
    garbled[60] ^= 1;
    server.handle_datagram(now, UNIX, client, &mut garbled);
    // Its expiry moved (it is under the tag).
    let mut later = good.clone();
    later[54] ^= 1;
    server.handle_datagram(now, UNIX, client, &mut later);
    // Too late: the cookie lives 30 s of the server's Unix clock.
    let expired = UNIX + native::COOKIE_LIFETIME_SECONDS;
    server.handle_datagram(now, expired, client, &mut good.clone());
    assert_eq!(server.stats().cookies_refused, 7);
    assert!(server.poll_transmit().is_none());
    assert_eq!(server.connected_clients(), 0);

    // The right address, in time: a slot and an accept.
    server.handle_datagram(now, expired - 1, client, &mut good.clone());
    let (to, accept) = server.poll_transmit().expect("an accept");
    assert_eq!((to, accept.len(), accept[0]), (client, ACCEPT_BYTES, native::ACCEPT_TYPE));
    assert_eq!(server.connected_clients(), 1);
    assert_eq!(server.stats().cookies_refused, 7);
}

#[test]
fn malformed_native_requests_and_weak_keys_are_dropped_and_counted() {
    let mut server = native_server(16);
    let now = base_instant();
    let from = addr("10.0.1.1:5000");
    let key = some_public_key(3);
    let good = request(&key);
    let mut bad = Vec::new();
    bad.push(good[..REQUEST_BYTES - 1].to_vec()); // short
    let mut long = good.clone();
    long.push(0);
    bad.push(long);
    let mut version = good.clone();
    version[5] ^= 1;
    bad.push(version);
    let mut protocol = good.clone();
    protocol[14] ^= 1;
    bad.push(protocol);
    let mut padding = good.clone();
    padding[100] = 1;
    bad.push(padding);
    for mut bytes in bad {
        server.handle_datagram(now, UNIX, from, &mut bytes);
    }
    assert_eq!(server.stats().native_invalid, 5);
    assert!(server.poll_transmit().is_none());

    // A low-order client key (zero): the cookie checks, the key exchange refuses it.
    let mut weak = challenge_for(&mut server, now, from, &[0; 32]);
    server.handle_datagram(now, UNIX, from, &mut weak);
    assert_eq!(server.stats().native_invalid, 6);
    assert!(server.poll_transmit().is_none());
    assert_eq!(server.connected_clients(), 0);
    // A challenge or accept sent to a server is dropped.
    let mut challenge = vec![native::CHALLENGE_TYPE; CHALLENGE_BYTES];
    server.handle_datagram(now, UNIX, from, &mut challenge);
    assert!(server.poll_transmit().is_none());
}

#[test]
fn a_server_without_the_profile_drops_native_packets_and_counts_them() {
    let mut server =
        Server::new(&ServerConfig::new(PROTOCOL_ID, [3; 32], addr("10.0.0.1:40000"))).unwrap();
    assert_eq!(server.native_public_key(), None);
    let now = base_instant();
    let mut bytes = request(&some_public_key(1));
    server.handle_datagram(now, UNIX, addr("10.0.1.1:5000"), &mut bytes);
    let mut bytes = response(&some_public_key(1), &[0; 41]);
    server.handle_datagram(now, UNIX, addr("10.0.1.1:5000"), &mut bytes);
    assert!(server.poll_transmit().is_none());
    assert_eq!(server.stats().native_disabled, 2);
    assert_eq!(server.stats().packets_dropped, 2);
}

#[test]
fn a_full_server_answers_no_request_and_the_client_times_out() {
    let mut net = Net::new(1);
    net.add_client(None);
    net.connect(0);
    net.add_client(None);
    net.run(TIMEOUT + Duration::from_millis(200));
    assert_eq!(net.clients[1].1.state(), ClientState::RequestTimedOut);
    assert!(net.server.stats().native_refused_full > 0);
    assert_eq!(net.clients[0].1.state(), ClientState::Connected);
}

#[test]
fn the_client_takes_only_a_challenge_to_its_own_request() {
    let mut net = Net::new(16);
    net.add_client(None);
    // A challenge echoing another key, made up off-path.
    let mut challenge = vec![0; CHALLENGE_BYTES];
    challenge[0] = native::CHALLENGE_TYPE;
    let client = &mut net.clients[0].1;
    client.handle_datagram(net.now, net.server_address, &mut challenge);
    assert_eq!(client.state(), ClientState::SendingRequest);
    assert_eq!(client.stats().packets_dropped, 1);
    // From another address than the server's.
    let mut bytes = vec![native::ACCEPT_TYPE; ACCEPT_BYTES];
    client.handle_datagram(net.now, addr("10.9.9.9:40000"), &mut bytes);
    assert_eq!(client.stats().packets_dropped, 2);
    net.connect(0);
}

#[test]
fn a_silent_server_times_the_client_out_and_a_silent_client_the_server() {
    let mut net = Net::new(16);
    net.add_client(None);
    // Nothing reaches the client: it stops when the timeout has passed.
    for _ in 0..(TIMEOUT.as_millis() / STEP.as_millis() + 5) {
        net.step_with(|_| Fate::Drop);
    }
    assert_eq!(net.clients[0].1.state(), ClientState::RequestTimedOut);
    assert_eq!(net.server.connected_clients(), 0);

    // The accepts are lost: the client stops, and the slot it took times out on the server.
    let mut net = Net::new(16);
    net.add_client(None);
    for _ in 0..(TIMEOUT.as_millis() / STEP.as_millis() + 5) {
        net.step_with(|bytes| if bytes.len() == ACCEPT_BYTES { Fate::Drop } else { Fate::Deliver });
    }
    assert_eq!(net.clients[0].1.state(), ClientState::ResponseTimedOut);
    net.run(TIMEOUT);
    assert_eq!(net.server.connected_clients(), 0);
    assert!(net.take_server_events().iter().any(|event| matches!(
        event,
        ServerEvent::Disconnected { reason: DisconnectReason::TimedOut, .. }
    )));

    let mut net = Net::new(16);
    net.add_client(None);
    net.connect(0);
    for _ in 0..(TIMEOUT.as_millis() / STEP.as_millis() + 5) {
        net.step_with(|_| Fate::Drop);
    }
    assert_eq!(net.clients[0].1.state(), ClientState::ConnectionTimedOut);
}

#[test]
fn a_disconnect_is_seen_at_once_both_ways() {
    let mut net = Net::new(16);
    net.add_client(None);
    net.connect(0);
    let index = match net.take_server_events()[..] {
        [ServerEvent::Connected { client_index, .. }] => client_index,
        _ => panic!("one connection"),
    };
    net.clients[0].1.disconnect(net.now);
    net.deliver();
    assert_eq!(net.clients[0].1.state(), ClientState::Disconnected);
    assert_eq!(
        net.take_server_events(),
        vec![ServerEvent::Disconnected {
            client_index: index,
            reason: DisconnectReason::ClientDisconnected
        }]
    );
    assert_eq!(net.server.connected_clients(), 0);

    net.add_client(None);
    net.connect(1);
    let index = match net.take_server_events()[..] {
        [ServerEvent::Connected { client_index, .. }] => client_index,
        _ => panic!("one connection"),
    };
    net.take_client_events(1);
    net.server.disconnect(net.now, index);
    net.deliver();
    assert_eq!(net.clients[1].1.state(), ClientState::Disconnected);
    assert_eq!(net.take_client_events(1), vec![ClientEvent::Stopped(ClientState::Disconnected)]);
}

#[test]
fn a_replayed_payload_is_dropped_and_counted() {
    let mut net = Net::new(16);
    net.add_client(None);
    net.connect(0);
    net.take_server_events();
    net.clients[0].1.send(net.now, b"once").unwrap();
    let (_, datagram) = net.clients[0].1.poll_transmit().unwrap();
    let address = net.clients[0].0;
    for _ in 0..3 {
        net.server.handle_datagram(net.now, net.unix, address, &mut datagram.clone());
    }
    net.deliver();
    let payloads = net
        .take_server_events()
        .into_iter()
        .filter(|event| matches!(event, ServerEvent::Payload { .. }))
        .count();
    assert_eq!(payloads, 1);
    assert_eq!(net.server.stats().replays_dropped, 2);
    // A connected packet is netcode's: prefix, sequence, body, 16-byte tag, nothing more.
    assert_eq!(datagram.len(), 1 + 1 + 4 + 16);
}

#[test]
fn garbage_never_panics_either_end() {
    let mut net = Net::new(16);
    net.add_client(None);
    let mut next = xorshift(77);
    for round in 0..3_000_usize {
        let len = (next() % 140) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if let Some(first) = bytes.first_mut() {
            *first = 7 + (round % 5) as u8;
        }
        let from = net.clients[0].0;
        net.server.handle_datagram(net.now, net.unix, from, &mut bytes.clone());
        net.clients[0].1.handle_datagram(net.now, net.server_address, &mut bytes);
        if round % 100 == 0 {
            net.step();
        }
    }
    net.connect(0);
}

/// A server written from the module documentation's formulas alone, with static secret
/// `secret`, showing `shown` as its static key: it answers a client's request and response,
/// and returns the accept and the keys it derived (client → server, server → client).
fn by_hand_accept(
    client: &mut Client,
    now: Instant,
    server: SocketAddr,
    secret: [u8; 32],
    shown: [u8; 32],
) -> (Vec<u8>, [u8; 32], [u8; 32]) {
    use chacha20poly1305::aead::{AeadInPlace, KeyInit};
    use sha2::Digest;
    client.update(now);
    let (_, request) = client.poll_transmit().expect("a request");
    assert_eq!(request.len(), REQUEST_BYTES);
    let e_c: [u8; 32] = request[22..54].try_into().unwrap();
    // Any cookie will do: only the server reads it.
    let mut challenge = vec![native::CHALLENGE_TYPE];
    challenge.extend_from_slice(&e_c[..8]);
    challenge.extend_from_slice(&[0xc0; 32]);
    client.handle_datagram(now, server, &mut challenge);
    let (_, response) = client.poll_transmit().expect("a response");
    assert_eq!(response[54..86], [0xc0; 32], "the response carries the cookie back");

    let e_s_secret = x25519_dalek::StaticSecret::from([0x42; 32]);
    let e_s = x25519_dalek::PublicKey::from(&e_s_secret).to_bytes();
    let s = x25519_dalek::StaticSecret::from(secret);
    let h: [u8; 32] = sha2::Sha256::new()
        .chain_update(b"sturnus native NK 1")
        .chain_update(PROTOCOL_ID.to_le_bytes())
        .chain_update(e_c)
        .chain_update(e_s)
        .chain_update(shown)
        .finalize()
        .into();
    let mut ikm = [0; 64];
    ikm[..32].copy_from_slice(e_s_secret.diffie_hellman(&e_c.into()).as_bytes());
    ikm[32..].copy_from_slice(s.diffie_hellman(&e_c.into()).as_bytes());
    let mut okm = [0; 96];
    hkdf::Hkdf::<sha2::Sha256>::new(Some(&h), &ikm)
        .expand(b"sturnus native keys", &mut okm)
        .unwrap();
    let mut accept = vec![native::ACCEPT_TYPE];
    accept.extend_from_slice(&e_s);
    accept.extend_from_slice(&shown);
    let mut body = [0; 8];
    body[..4].copy_from_slice(&7_u32.to_le_bytes());
    body[4..].copy_from_slice(&64_u32.to_le_bytes());
    let tag = chacha20poly1305::ChaCha20Poly1305::new(okm[64..].into())
        .encrypt_in_place_detached(&[0; 12].into(), &h, &mut body)
        .unwrap();
    accept.extend_from_slice(&body);
    accept.extend_from_slice(&tag);
    assert_eq!(accept.len(), ACCEPT_BYTES);
    (accept, okm[..32].try_into().unwrap(), okm[32..64].try_into().unwrap())
}

#[test]
fn the_documented_formulas_make_an_accept_the_client_takes() {
    use sturnus_netcode::packet::{self, Allowed, Packet};
    let now = base_instant();
    let server = addr("10.0.0.1:40000");
    let pinned = NativeConfig::from_secret(static_secret(), TIMEOUT).public_key();
    let mut client = Client::native(server, PROTOCOL_ID, Some(pinned), TIMEOUT, now).unwrap();
    let (mut accept, c2s, s2c) = by_hand_accept(&mut client, now, server, static_secret(), pinned);
    client.handle_datagram(now, server, &mut accept);
    assert_eq!(client.state(), ClientState::Connected);
    let events: Vec<_> = std::iter::from_fn(|| client.poll_event()).collect();
    assert!(matches!(
        events[..],
        [ClientEvent::Connected { client_index: 7, max_clients: 64, .. }]
    ));
    // Its first packet is a keep-alive sealed under the documented client → server key.
    let (_, mut keep_alive) = client.poll_transmit().expect("the confirmation");
    let read = packet::read(&mut keep_alive, PROTOCOL_ID, Some(&c2s), Allowed::SERVER, None, 0);
    assert!(matches!(read, Ok((0, Packet::KeepAlive { .. }))));
    // And it reads a payload sealed under the server → client key.
    let mut out = [0; 64];
    let len = packet::write(&Packet::Payload(b"hi"), 0, PROTOCOL_ID, &s2c, &mut out).unwrap();
    client.handle_datagram(now, server, &mut out[..len]);
    assert_eq!(client.poll_event(), Some(ClientEvent::Payload(b"hi".to_vec())));
}

#[test]
fn an_impostor_showing_the_pinned_key_without_its_secret_is_refused() {
    let now = base_instant();
    let server = addr("10.0.0.1:40000");
    let pinned = NativeConfig::from_secret(static_secret(), TIMEOUT).public_key();
    let mut client = Client::native(server, PROTOCOL_ID, Some(pinned), TIMEOUT, now).unwrap();
    // A man in the middle shows the pinned public key, but holds another secret.
    let (mut accept, _, _) = by_hand_accept(&mut client, now, server, [0x99; 32], pinned);
    client.handle_datagram(now, server, &mut accept);
    assert_eq!(client.state(), ClientState::SendingResponse);
    assert_eq!(client.stats().accepts_forged, 1);
    assert_eq!(client.stats().server_key_mismatches, 0);
    // Showing its own key instead: the tag checks, the pin does not.
    let impostor = NativeConfig::from_secret([0x99; 32], TIMEOUT).public_key();
    let mut client = Client::native(server, PROTOCOL_ID, Some(pinned), TIMEOUT, now).unwrap();
    let (mut accept, _, _) = by_hand_accept(&mut client, now, server, [0x99; 32], impostor);
    client.handle_datagram(now, server, &mut accept);
    assert_eq!(client.state(), ClientState::ServerKeyMismatch);
    assert_eq!(client.server_static_key(), Some(impostor));
    // Unpinned, the same impostor is trusted on first use: that is what pinning is for.
    let mut client = Client::native(server, PROTOCOL_ID, None, TIMEOUT, now).unwrap();
    let (mut accept, _, _) = by_hand_accept(&mut client, now, server, [0x99; 32], impostor);
    client.handle_datagram(now, server, &mut accept);
    assert_eq!(client.state(), ClientState::Connected);
    assert_eq!(client.server_static_key(), Some(impostor));
}

#[test]
fn native_ids_never_keep_a_token_client_of_the_same_number_out() {
    use sturnus_netcode::ConnectToken;
    use sturnus_netcode::token::TokenSpec;
    let mut net = Net::new(16);
    net.add_client(None);
    net.connect(0);
    let native_id = match net.take_server_events()[..] {
        [ServerEvent::Connected { client_id, .. }] => client_id,
        _ => panic!("one connection"),
    };
    // A token client with the very same id, on the same server (its private key is [3; 32]).
    let spec = TokenSpec {
        protocol_id: PROTOCOL_ID,
        client_id: native_id,
        server_addresses: vec![net.server_address],
        expire_seconds: 30,
        timeout_seconds: 2,
        user_data: [1; 256],
    };
    let token = ConnectToken::generate(&spec, &[3; 32], UNIX).unwrap();
    net.clients.push((addr("10.0.2.1:5000"), Client::new(token, net.now)));
    net.client_events.push(Vec::new());
    net.connect(1);
    let token_index = match net.take_server_events()[..] {
        [ServerEvent::Connected { client_index, client_id, .. }] if client_id == native_id => {
            client_index
        }
        ref events => panic!("the token client connects: {events:?}"),
    };
    assert!(!net.server.is_native(token_index));
    // The native client leaving does not free the token client's id: a second token client
    // with that id is still refused.
    net.clients[0].1.disconnect(net.now);
    net.deliver();
    let spec = TokenSpec { server_addresses: vec![net.server_address], ..spec };
    let token = ConnectToken::generate(&spec, &[3; 32], UNIX).unwrap();
    net.clients.push((addr("10.0.2.2:5000"), Client::new(token, net.now)));
    net.client_events.push(Vec::new());
    net.run(Duration::from_millis(500));
    assert_ne!(net.clients[2].1.state(), ClientState::Connected);
    assert!(net.server.stats().requests_ignored > 0);
}

#[test]
fn a_client_whose_responses_are_lost_fetches_a_new_cookie_before_the_old_one_expires() {
    let mut net = Net::new(16);
    // A long timeout, on both ends, so that the cookie's 30 s are what matters.
    let long = Duration::from_secs(120);
    let mut config = ServerConfig::new(PROTOCOL_ID, [3; 32], net.server_address);
    config.native = Some(NativeConfig::from_secret(static_secret(), long));
    net.server = Server::new(&config).unwrap();
    let address = addr("10.0.1.1:5000");
    let client = Client::native(net.server_address, PROTOCOL_ID, None, long, net.now).unwrap();
    net.clients.push((address, client));
    net.client_events.push(Vec::new());
    let start = net.now;
    // The server's Unix clock runs with virtual time. Every response is lost for 40 s: its
    // first cookie has expired by then.
    let mut responses_lost = 0;
    while net.now - start < Duration::from_secs(40) {
        net.now += STEP;
        net.unix = UNIX + (net.now - start).as_secs();
        net.server.update(net.now);
        let (_, client) = &mut net.clients[0];
        client.update(net.now);
        while let Some((_, mut bytes)) = client.poll_transmit() {
            if bytes[0] == native::RESPONSE_TYPE {
                responses_lost += 1;
                continue;
            }
            net.server.handle_datagram(net.now, net.unix, address, &mut bytes);
        }
        while let Some((_, mut bytes)) = net.server.poll_transmit() {
            net.clients[0].1.handle_datagram(net.now, net.server_address, &mut bytes);
        }
    }
    assert!(responses_lost > 300);
    assert_eq!(net.clients[0].1.state(), ClientState::SendingResponse);
    // Now they arrive: a cookie fetched after 15 s or 30 s is still good.
    for _ in 0..100 {
        net.now += STEP;
        net.unix = UNIX + (net.now - start).as_secs();
        net.server.update(net.now);
        net.clients[0].1.update(net.now);
        net.deliver();
        if net.clients[0].1.state() == ClientState::Connected {
            break;
        }
    }
    assert_eq!(net.clients[0].1.state(), ClientState::Connected);
    assert_eq!(net.server.stats().cookies_refused, 0);
}

#[test]
fn a_server_whose_accepts_never_arrive_times_the_client_out_despite_fresh_cookies() {
    let mut net = Net::new(16);
    // The client waits 40 s; it fetches a new cookie every 15 s, and the server (whose
    // native timeout is 2 s) answers each with a challenge. Those do not count as hearing
    // from the server: only the first challenge did.
    let long = Duration::from_secs(40);
    let client = Client::native(net.server_address, PROTOCOL_ID, None, long, net.now).unwrap();
    net.clients.push((addr("10.0.1.1:5000"), client));
    net.client_events.push(Vec::new());
    let start = net.now;
    let mut challenges = 0;
    while net.now - start < Duration::from_secs(60) && net.clients[0].1.state().is_active() {
        net.unix = UNIX + (net.now - start).as_secs();
        net.step_with(|bytes| match bytes.len() {
            ACCEPT_BYTES => Fate::Drop,
            CHALLENGE_BYTES => {
                challenges += 1;
                Fate::Deliver
            }
            _ => Fate::Deliver,
        });
    }
    assert!(challenges >= 3, "{challenges} challenges: the cookie was not fetched again");
    assert!(!net.clients[0].1.state().is_active());
    let elapsed = net.now - start;
    assert!(elapsed > long && elapsed < long + Duration::from_secs(1), "{elapsed:?}");
}
