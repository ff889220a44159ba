//! Issue 17's attack tests against the sans-IO netcode endpoints:
//!
//! - a flood of 100,000 forged connection requests from 100,000 forged addresses holds no
//!   per-client state (tables and heap bytes do not grow with the flood) and every reply is
//!   smaller than the request it answers;
//! - an off-path attacker who knows the client's address, port and the protocol id (not the
//!   keys) sends 1,000,000 forged packets "from" the client to the server (and 100,000 "from"
//!   the server to the client) during a live conversation: none is accepted, the conversation
//!   goes on undisturbed;
//! - genuine packets replayed (at once, later, older than the window, and from an earlier
//!   connection) are dropped and counted, and a replayed disconnect does not disconnect.
//!
//! Time is virtual (an `Instant` advanced by arithmetic) and the Unix clock a constant.
#![expect(
    clippy::cast_possible_truncation,
    reason = "random bytes and addresses are cut from 64-bit random words: keeping the low bits is the point"
)]

use std::net::{Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use sturnus_netcode::client::{Client, ClientEvent, ClientState};
use sturnus_netcode::packet::{self, Packet, REQUEST_PACKET_BYTES};
use sturnus_netcode::server::{Server, ServerConfig, ServerEvent, ServerStats};
use sturnus_netcode::token::TokenSpec;
use sturnus_netcode::{ConnectToken, Key, MAX_PACKET_BYTES, VERSION_INFO};
use sturnus_testkit::counting::{Counting, live_bytes};

#[global_allocator]
static GLOBAL: Counting = Counting;

const PROTOCOL_ID: u64 = 0x5354_5552_4e55_5331;
/// The virtual Unix clock.
const UNIX: u64 = 1_800_000_000;
const TIMEOUT_SECONDS: i32 = 5;
const STEP: Duration = Duration::from_millis(10);

fn private_key() -> Key {
    std::array::from_fn(|i| (i * 7 + 3) as u8)
}

fn server_address() -> SocketAddr {
    "10.0.0.1:40000".parse().unwrap()
}

fn client_address() -> SocketAddr {
    "192.0.2.7:51234".parse().unwrap()
}

fn spec(client_id: u64, servers: Vec<SocketAddr>) -> TokenSpec {
    TokenSpec {
        protocol_id: PROTOCOL_ID,
        client_id,
        server_addresses: servers,
        expire_seconds: 30,
        timeout_seconds: TIMEOUT_SECONDS,
        user_data: [client_id as u8; 256],
    }
}

fn new_server() -> Server {
    Server::new(&ServerConfig::new(PROTOCOL_ID, private_key(), server_address())).unwrap()
}

#[expect(
    clippy::disallowed_methods,
    reason = "the virtual clock's origin; time then advances by arithmetic"
)]
fn base_instant() -> Instant {
    Instant::now()
}

/// splitmix64: the attacker's (and the test's) deterministic randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `range` (its end included).
    fn below(&mut self, low: usize, high: usize) -> usize {
        low + (self.next() % (high - low + 1) as u64) as usize
    }

    fn fill(&mut self, bytes: &mut [u8]) {
        for chunk in bytes.chunks_mut(8) {
            let word = self.next().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

/// The request a client with `token` sends (the packet as written by the standard's layout).
fn request_of(token: &ConnectToken) -> Vec<u8> {
    let mut out = vec![0; REQUEST_PACKET_BYTES];
    let packet = Packet::Request {
        protocol_id: token.protocol_id,
        expire_timestamp: token.expire_timestamp,
        token_nonce: token.nonce,
        private_token: &token.private_data,
    };
    let len = packet::write(&packet, 0, token.protocol_id, &[0; 32], &mut out).unwrap();
    assert_eq!(len, REQUEST_PACKET_BYTES);
    out
}

/// The `i`-th forged source address: IPv4 mostly, every fifth IPv6; all distinct.
fn forged_address(i: u32) -> SocketAddr {
    if i % 5 == 0 {
        let ip = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, (i >> 16) as u16, i as u16);
        SocketAddr::from((ip, 40_000 + (i % 1000) as u16))
    } else {
        SocketAddr::from(([100, 64 + (i >> 16) as u8, (i >> 8) as u8, i as u8], 7000))
    }
}

// ---------------------------------------------------------------------------------------------
// 1. The request flood.
// ---------------------------------------------------------------------------------------------

/// The kinds of forged request, in turn (request `i` is of kind `i % KINDS`).
const KINDS: u32 = 10;

/// The requests the flood sends, made once: only their source address changes per request.
struct FloodRequests {
    /// A valid token for another server (sealed under the right key).
    other_server: Vec<u8>,
    /// A token of another protocol, as its client sends it (its header says so).
    other_protocol: Vec<u8>,
    /// The same, with this protocol's id written over the header's: the seal no longer opens.
    other_protocol_relabelled: Vec<u8>,
    /// A token expired ten minutes ago, as its client sends it.
    expired: Vec<u8>,
    /// The same, with a future expiry written over the header's: the seal no longer opens.
    expired_relabelled: Vec<u8>,
    /// A well-formed token for this server, sealed under another key.
    wrong_key: Vec<u8>,
    /// THE genuine token for this server, replayed from every address of its kind.
    genuine: Vec<u8>,
}

impl FloodRequests {
    fn new() -> Self {
        let here = vec![server_address()];
        let other_server = ConnectToken::generate(
            &spec(
                2,
                vec!["10.0.0.2:40000".parse().unwrap(), "[2001:db8::1]:40000".parse().unwrap()],
            ),
            &private_key(),
            UNIX,
        )
        .unwrap();
        let mut other_protocol_spec = spec(3, here.clone());
        other_protocol_spec.protocol_id = PROTOCOL_ID ^ 1;
        let other_protocol = request_of(
            &ConnectToken::generate(&other_protocol_spec, &private_key(), UNIX).unwrap(),
        );
        let mut other_protocol_relabelled = other_protocol.clone();
        other_protocol_relabelled[14..22].copy_from_slice(&PROTOCOL_ID.to_le_bytes());
        let expired = request_of(
            &ConnectToken::generate(&spec(4, here.clone()), &private_key(), UNIX - 600).unwrap(),
        );
        let mut expired_relabelled = expired.clone();
        expired_relabelled[22..30].copy_from_slice(&(UNIX + 30).to_le_bytes());
        let wrong_key: Key = [0x5a; 32];
        let wrong_key = ConnectToken::generate(&spec(5, here.clone()), &wrong_key, UNIX).unwrap();
        let genuine = ConnectToken::generate(&spec(6, here), &private_key(), UNIX).unwrap();
        Self {
            other_server: request_of(&other_server),
            other_protocol,
            other_protocol_relabelled,
            expired,
            expired_relabelled,
            wrong_key: request_of(&wrong_key),
            genuine: request_of(&genuine),
        }
    }

    /// Writes a request of `kind` (0 to `KINDS - 1`) into `out` (cleared first).
    fn write(&self, kind: u32, rng: &mut Rng, out: &mut Vec<u8>) {
        out.clear();
        match kind {
            // Random bytes after a request's prefix byte, of the request's size.
            0 => {
                out.resize(REQUEST_PACKET_BYTES, 0);
                rng.fill(&mut out[1..]);
            }
            // Random bytes after a request's prefix byte, of any other size.
            1 => {
                let mut len = rng.below(1, MAX_PACKET_BYTES + 200);
                if len == REQUEST_PACKET_BYTES {
                    len += 1;
                }
                out.resize(len, 0);
                rng.fill(&mut out[1..]);
            }
            // A well-formed header (version, protocol, future expiry) and a random token.
            2 => {
                out.resize(REQUEST_PACKET_BYTES, 0);
                out[1..14].copy_from_slice(VERSION_INFO);
                out[14..22].copy_from_slice(&PROTOCOL_ID.to_le_bytes());
                out[22..30].copy_from_slice(&(UNIX + 30).to_le_bytes());
                rng.fill(&mut out[30..]);
            }
            3 => out.extend_from_slice(&self.wrong_key),
            4 => out.extend_from_slice(&self.other_server),
            5 => out.extend_from_slice(&self.other_protocol),
            6 => out.extend_from_slice(&self.other_protocol_relabelled),
            7 => out.extend_from_slice(&self.expired),
            8 => out.extend_from_slice(&self.expired_relabelled),
            _ => out.extend_from_slice(&self.genuine),
        }
    }
}

/// What the flood saw of the server's replies.
#[derive(Debug, Default)]
struct Replies {
    count: u64,
    largest: usize,
    /// The largest reply as a fraction of its request, in thousandths.
    worst_ratio_per_mille: usize,
}

/// A flood in progress: what it sends and what it saw.
struct Flood {
    requests: FloodRequests,
    /// Request `i` is of kind `kind_of(i)`.
    kind_of: fn(u32) -> u32,
    now: Instant,
    rng: Rng,
    buffer: Vec<u8>,
    replies: Replies,
}

impl Flood {
    fn new(kind_of: fn(u32) -> u32) -> Self {
        Self {
            requests: FloodRequests::new(),
            kind_of,
            now: base_instant(),
            rng: Rng(0x0123_4567_89ab_cdef),
            buffer: Vec::with_capacity(MAX_PACKET_BYTES + 200),
            replies: Replies::default(),
        }
    }

    /// Sends requests `range`, each from its own address, and checks every reply against its
    /// request's size as it comes.
    fn send(&mut self, server: &mut Server, range: std::ops::Range<u32>) {
        let Self { requests, kind_of, now, rng, buffer, replies } = self;
        let now = *now;
        for i in range {
            requests.write(kind_of(i), rng, buffer);
            let request_len = buffer.len();
            let from = forged_address(i);
            server.handle_datagram(now, UNIX, from, buffer);
            while let Some((to, reply)) = server.poll_transmit() {
                assert_eq!(to, from, "a reply goes to the request's source");
                assert!(
                    reply.len() < request_len,
                    "request {i} of {request_len} bytes answered with {} bytes",
                    reply.len()
                );
                replies.count += 1;
                replies.largest = replies.largest.max(reply.len());
                replies.worst_ratio_per_mille =
                    replies.worst_ratio_per_mille.max(reply.len() * 1000 / request_len);
                server.recycle(reply);
            }
            assert!(server.poll_event().is_none(), "request {i} made an event");
        }
    }
}

#[test]
fn a_flood_of_100_000_forged_requests_holds_no_per_client_state_and_amplifies_nothing() {
    const REQUESTS: u32 = 100_000;
    const WARM_UP: u32 = 1_000;
    let mut server = new_server();
    let mut flood = Flood::new(|i| i % KINDS);

    flood.send(&mut server, 0..WARM_UP);
    let warm_state = (server.pending_clients(), server.token_history_len());
    let warm_bytes = live_bytes();
    flood.send(&mut server, WARM_UP..REQUESTS);
    let flood_bytes = live_bytes();
    let (now, replies) = (flood.now, flood.replies);

    // The heap first: it would also show state kept outside the tables below.
    let growth = flood_bytes - warm_bytes;
    println!(
        "live heap bytes: {warm_bytes} after {WARM_UP} requests, {flood_bytes} after {REQUESTS} \
         (growth {growth})"
    );
    assert!(
        growth.abs() <= 256,
        "the heap grew by {growth} bytes over {} more requests",
        REQUESTS - WARM_UP
    );

    // The genuine token's first address is the one pending client and the one history entry;
    // nothing else of the flood is kept.
    assert_eq!(warm_state, (1, 1));
    assert_eq!(server.pending_clients(), 1, "pending clients after the flood");
    assert_eq!(server.token_history_len(), 1, "token-use history after the flood");
    assert_eq!(server.connected_clients(), 0);

    // One reply in all: the challenge to the genuine token's first address (333 bytes against
    // 1,078). Every other request went unanswered.
    println!("replies: {replies:?}");
    assert_eq!(replies.count, 1);
    assert!(replies.largest < REQUEST_PACKET_BYTES / 3, "{replies:?}");

    // Every request is accounted for, kind by kind.
    let per_kind = u64::from(REQUESTS / KINDS);
    assert_eq!(REQUESTS % KINDS, 0);
    let stats = server.stats();
    let expected = {
        let mut expected = ServerStats::default();
        // Kinds 0, 1, 5, 7: dropped in the clear (version, size, protocol id, expiry).
        expected.packets_dropped = 4 * per_kind;
        // Kinds 2, 3, 4, 6, 8: the token does not open, or does not list this server.
        expected.requests_invalid = 5 * per_kind;
        // Kind 9: the genuine token from another address than its first.
        expected.requests_ignored = per_kind - 1;
        expected
    };
    assert_eq!(stats, expected);
    let challenges = replies.count;
    assert_eq!(
        stats.packets_dropped
            + stats.requests_invalid
            + stats.requests_ignored
            + stats.requests_refused_full_tables
            + stats.denied_sent
            + challenges,
        u64::from(REQUESTS)
    );

    // The pending client's keys go when its time is up; the history entry stays until the
    // token expires (the standard: never evict an unexpired entry).
    server.update(now + Duration::from_secs(u64::from(TIMEOUT_SECONDS.unsigned_abs()) + 1));
    assert_eq!(server.pending_clients(), 0);
    assert!(server.poll_transmit().is_none());
}

#[test]
fn one_genuine_token_replayed_from_100_000_addresses_is_answered_once_and_kept_once() {
    const REQUESTS: u32 = 100_000;
    const WARM_UP: u32 = 1_000;
    let mut server = new_server();
    let mut flood = Flood::new(|_| KINDS - 1);
    flood.send(&mut server, 0..WARM_UP);
    let warm_bytes = live_bytes();
    flood.send(&mut server, WARM_UP..REQUESTS);
    let growth = live_bytes() - warm_bytes;
    assert!(growth.abs() <= 256, "the heap grew by {growth} bytes");
    // Only its first address is challenged, pending and in the history.
    assert_eq!(flood.replies.count, 1);
    assert!(flood.replies.largest < REQUEST_PACKET_BYTES / 3);
    assert_eq!((server.pending_clients(), server.token_history_len()), (1, 1));
    let stats = server.stats();
    let mut expected = ServerStats::default();
    expected.requests_ignored = u64::from(REQUESTS) - 1;
    assert_eq!(stats, expected);
}

#[test]
fn a_full_server_answers_a_genuine_request_with_a_denial_smaller_than_it() {
    let mut config = ServerConfig::new(PROTOCOL_ID, private_key(), server_address());
    config.max_clients = 1;
    let mut link = Link::connect(Server::new(&config).unwrap(), client_address(), 1);
    let token =
        ConnectToken::generate(&spec(9, vec![server_address()]), &private_key(), UNIX).unwrap();
    let request = request_of(&token);
    let from: SocketAddr = "198.51.100.9:9999".parse().unwrap();
    // Resent ten times from its own address (a client's retries): ten denials, each small.
    for _ in 0..10 {
        link.server.handle_datagram(link.now, UNIX, from, &mut request.clone());
        let (to, reply) = link.server.poll_transmit().expect("a denial");
        assert_eq!(to, from);
        assert!(reply.len() < request.len() / 10, "a denial of {} bytes", reply.len());
        assert!(link.server.poll_transmit().is_none());
    }
    // From any other address: nothing (the token is bound to its first address).
    for i in 0..1000 {
        link.server.handle_datagram(link.now, UNIX, forged_address(i), &mut request.clone());
        assert!(link.server.poll_transmit().is_none());
    }
    let stats = link.server.stats();
    assert_eq!((stats.denied_sent, stats.requests_ignored), (10, 1000));
    let server = link.server;
    // The history holds the connected client's token and the denied one's.
    assert_eq!((server.pending_clients(), server.token_history_len()), (0, 2));
}

// ---------------------------------------------------------------------------------------------
// A live connection in memory.
// ---------------------------------------------------------------------------------------------

/// Which way a datagram went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    ToServer,
    ToClient,
}

/// A Sturnus client and server connected in memory; every event is checked as it comes.
struct Link {
    now: Instant,
    at: SocketAddr,
    server: Server,
    client: Client,
    client_index: usize,
    /// Payloads the server received, in order.
    server_got: Vec<Vec<u8>>,
    /// Payloads the client received, in order.
    client_got: Vec<Vec<u8>>,
    /// Every datagram delivered, as sent (when capturing).
    captured: Option<Vec<(Way, Vec<u8>)>>,
}

impl Link {
    /// Connects a client (client id `client_id`, from `at`) to `server`.
    fn connect(server: Server, at: SocketAddr, client_id: u64) -> Self {
        let now = base_instant();
        Self::connect_at(server, at, client_id, now)
    }

    fn connect_at(server: Server, at: SocketAddr, client_id: u64, now: Instant) -> Self {
        let token =
            ConnectToken::generate(&spec(client_id, vec![server_address()]), &private_key(), UNIX)
                .unwrap();
        Self::connect_with(server, at, token, now)
    }

    fn connect_with(server: Server, at: SocketAddr, token: ConnectToken, now: Instant) -> Self {
        let client = Client::new(token, now);
        let mut link = Self {
            now,
            at,
            server,
            client,
            client_index: usize::MAX,
            server_got: Vec::new(),
            client_got: Vec::new(),
            captured: None,
        };
        for _ in 0..20 {
            link.step();
            if link.client.state() == ClientState::Connected && link.client_index != usize::MAX {
                return link;
            }
        }
        panic!("did not connect: {:?}", link.client.state());
    }

    /// Advances time one step, runs both ends' timers and delivers what they send.
    fn step(&mut self) {
        self.now += STEP;
        self.client.update(self.now);
        self.server.update(self.now);
        self.deliver();
    }

    /// Moves every queued datagram to its peer until both are quiet, and checks the events.
    fn deliver(&mut self) {
        let server_address = server_address();
        loop {
            let mut moved = false;
            while let Some((to, mut bytes)) = self.client.poll_transmit() {
                assert_eq!(to, server_address);
                if let Some(captured) = &mut self.captured {
                    captured.push((Way::ToServer, bytes.clone()));
                }
                self.server.handle_datagram(self.now, UNIX, self.at, &mut bytes);
                moved = true;
            }
            while let Some((to, mut bytes)) = self.server.poll_transmit() {
                assert_eq!(to, self.at);
                if let Some(captured) = &mut self.captured {
                    captured.push((Way::ToClient, bytes.clone()));
                }
                self.client.handle_datagram(self.now, server_address, &mut bytes);
                moved = true;
            }
            self.take_events();
            if !moved {
                return;
            }
        }
    }

    /// Takes both ends' events: payloads are recorded, a connection on the server noted, and
    /// anything else (a disconnect, a stop) fails the test.
    fn take_events(&mut self) {
        while let Some(event) = self.server.poll_event() {
            match event {
                ServerEvent::Payload { client_index, data } => {
                    assert_eq!(client_index, self.client_index);
                    self.server_got.push(data);
                }
                ServerEvent::Connected { client_index, .. } if self.client_index == usize::MAX => {
                    self.client_index = client_index;
                }
                other => panic!("server event {other:?}"),
            }
        }
        while let Some(event) = self.client.poll_event() {
            match event {
                ClientEvent::Payload(data) => self.client_got.push(data),
                ClientEvent::Connected { .. } => {}
                other => panic!("client event {other:?}"),
            }
        }
    }

    /// Both ends send the `n`-th genuine payload of the conversation.
    fn exchange(&mut self, n: u64, rng: &mut Rng) {
        let (to_server, to_client) = genuine_payloads(n, rng);
        self.client.send(self.now, &to_server).unwrap();
        self.server.send(self.now, self.client_index, &to_client).unwrap();
    }

    fn assert_up(&self) {
        assert_eq!(self.client.state(), ClientState::Connected);
        assert_eq!(self.server.connected_clients(), 1);
        assert_eq!(self.server.client_address(self.client_index), Some(self.at));
    }
}

/// The `n`-th genuine payload each way: numbered, of a size from 1 to 1200 bytes.
fn genuine_payloads(n: u64, rng: &mut Rng) -> (Vec<u8>, Vec<u8>) {
    let make = |tag: u8, len: usize| {
        let mut payload = vec![tag; len.max(9)];
        payload[1..9].copy_from_slice(&n.to_le_bytes());
        payload
    };
    let up = rng.below(1, 1200);
    let down = rng.below(1, 1200);
    (make(b'c', up), make(b's', down))
}

/// What a checker replays to tell the genuine payloads: the same sequence of sizes.
fn expected_payloads(count: u64, seed: u64) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut rng = Rng(seed);
    let (mut up, mut down) = (Vec::new(), Vec::new());
    for n in 0..count {
        let (to_server, to_client) = genuine_payloads(n, &mut rng);
        up.push(to_server);
        down.push(to_client);
    }
    (up, down)
}

// ---------------------------------------------------------------------------------------------
// 2. The off-path attacker.
// ---------------------------------------------------------------------------------------------

/// Writes a forged packet into `out`: what an attacker who knows the addresses and the
/// protocol id, but no key, can send. `types` are the packet types the receiver takes.
fn forge(rng: &mut Rng, types: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let roll = rng.below(0, 99);
    if roll < 85 {
        // A sealed packet of a type the receiver takes, with every sequence-number width, a
        // body of that type's size and random ciphertext and tag.
        let packet_type = types[rng.below(0, types.len() - 1)];
        let width = rng.below(1, 8);
        let body = match packet_type {
            4 => 8,
            5 => rng.below(1, 1200),
            2 => 308,
            _ => 0,
        };
        out.resize(1 + width + body + 16, 0);
        rng.fill(out);
        out[0] = packet_type | ((width as u8) << 4);
        // The sequence number: the width's bytes, the top one non-zero (a minimal encoding),
        // and sometimes just ahead of a genuine sender's (small numbers).
        if width > 1 && rng.below(0, 3) == 0 {
            out[1..=width].fill(0);
            out[1] = rng.next() as u8;
        }
        if out[width] == 0 {
            out[width] = 1;
        }
    } else if roll < 90 {
        // Truncated: shorter than the smallest packet, or than its sequence number and tag.
        let width = rng.below(1, 8);
        let len = rng.below(0, width + 16);
        out.resize(len, 0);
        rng.fill(out);
        if let Some(prefix) = out.first_mut() {
            *prefix = types[rng.below(0, types.len() - 1)] | ((width as u8) << 4);
        }
    } else if roll < 95 {
        // Oversized: beyond the largest packet.
        let len = rng.below(MAX_PACKET_BYTES + 1, 4 * MAX_PACKET_BYTES);
        out.resize(len, 0);
        rng.fill(out);
        out[0] = types[rng.below(0, types.len() - 1)] | ((rng.below(1, 8) as u8) << 4);
    } else {
        // Anything else: types the receiver does not take or that do not exist, widths of 0
        // and 9 to 15.
        let len = rng.below(18, 1300);
        out.resize(len, 0);
        rng.fill(out);
        if rng.below(0, 1) == 0 {
            out[0] = (out[0] & 0xf0) | rng.below(0, 15) as u8;
            if out[0] & 0x0f == 0 && out.len() == REQUEST_PACKET_BYTES {
                out.pop();
            }
        } else {
            out[0] = types[rng.below(0, types.len() - 1)]
                | ([0_u8, 9, 10, 11, 12, 13, 14, 15][rng.below(0, 7)] << 4);
        }
    }
}

#[test]
fn an_off_path_attacker_gets_0_of_1_000_000_forged_packets_accepted() {
    const ROUNDS: u64 = 1_000;
    const TO_SERVER_PER_ROUND: u64 = 1_000;
    const TO_CLIENT_PER_ROUND: u64 = 100;
    const PAYLOAD_SEED: u64 = 0xfeed;
    let mut link = Link::connect(new_server(), client_address(), 1);
    let mut attacker = Rng(0xbad_c0de);
    let mut genuine = Rng(PAYLOAD_SEED);
    let mut forged = Vec::with_capacity(4 * MAX_PACKET_BYTES);
    let server_types = [4, 5, 6];
    let client_types = [1, 2, 4, 5, 6];
    let server_before = link.server.stats();
    let client_before = link.client.stats();

    for round in 0..ROUNDS {
        link.now += STEP;
        link.client.update(link.now);
        link.server.update(link.now);
        link.exchange(round, &mut genuine);
        // Half the round's forgeries reach the server before the genuine packets, half after.
        for half in 0..2 {
            for _ in 0..TO_SERVER_PER_ROUND / 2 {
                forge(&mut attacker, &server_types, &mut forged);
                link.server.handle_datagram(link.now, UNIX, link.at, &mut forged);
            }
            for _ in 0..TO_CLIENT_PER_ROUND / 2 {
                forge(&mut attacker, &client_types, &mut forged);
                link.client.handle_datagram(link.now, server_address(), &mut forged);
            }
            assert!(link.server.poll_event().is_none(), "a forged packet made a server event");
            assert!(link.client.poll_event().is_none(), "a forged packet made a client event");
            if half == 0 {
                link.deliver();
            }
        }
        link.assert_up();
    }
    // Both ends still talk: a last genuine round.
    for _ in 0..20 {
        link.step();
    }
    link.assert_up();

    let (up, down) = expected_payloads(ROUNDS, PAYLOAD_SEED);
    assert!(link.server_got == up, "the server's payloads are exactly the client's");
    assert!(link.client_got == down, "the client's payloads are exactly the server's");
    let server = link.server.stats();
    let client = link.client.stats();
    println!("server {server:?}\nclient {client:?}");
    assert_eq!(
        server.packets_dropped - server_before.packets_dropped,
        ROUNDS * TO_SERVER_PER_ROUND
    );
    assert_eq!(
        client.packets_dropped - client_before.packets_dropped,
        ROUNDS * TO_CLIENT_PER_ROUND
    );
    // Nothing of the attack reached the request path (the address is a connected client's).
    assert_eq!(
        (server.requests_invalid, server.requests_ignored, server.responses_invalid),
        (0, 0, 0)
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Replays.
// ---------------------------------------------------------------------------------------------

/// The sealed packet's type (low nibble of its prefix byte).
fn type_of(datagram: &[u8]) -> u8 {
    datagram[0] & 0x0f
}

#[test]
fn replayed_packets_are_dropped_and_counted_at_once_later_and_beyond_the_window() {
    const PAYLOAD_SEED: u64 = 0x5eed;
    let mut link = Link::connect(new_server(), client_address(), 1);
    let mut genuine = Rng(PAYLOAD_SEED);
    let mut sent = 0;
    link.captured = Some(Vec::new());
    // A stretch of conversation: payloads both ways, and keep-alives in the quiet steps.
    for _ in 0..20 {
        link.exchange(sent, &mut genuine);
        sent += 1;
        link.step();
        link.step();
        link.step();
        link.step();
        link.step();
        link.step();
        link.step();
        link.step();
        link.step();
        link.step();
        link.step();
    }
    let captured = link.captured.take().unwrap();
    let count = |way: Way, packet_type: u8| {
        captured.iter().filter(|(w, d)| *w == way && type_of(d) == packet_type).count()
    };
    // Keep-alives and payloads each way were captured.
    for way in [Way::ToServer, Way::ToClient] {
        assert!(count(way, 4) >= 10 && count(way, 5) == 20, "{way:?}: {captured:?}");
    }
    let captured_len = captured.len() as u64;

    // Replays of everything, three times: at once, after some more traffic (inside the
    // window), and after more than 256 further packets each way (beyond it).
    let mut replays = 0;
    let mut replay_all = |link: &mut Link| {
        let (server_before, client_before) = (link.server.stats(), link.client.stats());
        for (way, datagram) in &captured {
            let mut bytes = datagram.clone();
            match way {
                Way::ToServer => link.server.handle_datagram(link.now, UNIX, link.at, &mut bytes),
                Way::ToClient => {
                    link.client.handle_datagram(link.now, server_address(), &mut bytes)
                }
            }
        }
        replays += 1;
        let (server, client) = (link.server.stats(), link.client.stats());
        let to_server = captured.iter().filter(|(w, _)| *w == Way::ToServer).count() as u64;
        let to_client = captured_len - to_server;
        // Each replay is dropped, and counted as a replay: the window treats a sequence
        // number older than itself as received.
        assert_eq!(server.packets_dropped - server_before.packets_dropped, to_server);
        assert_eq!(server.replays_dropped - server_before.replays_dropped, to_server);
        assert_eq!(client.packets_dropped - client_before.packets_dropped, to_client);
        assert_eq!(client.replays_dropped - client_before.replays_dropped, to_client);
        link.take_events();
        link.assert_up();
    };
    replay_all(&mut link);
    for _ in 0..50 {
        link.exchange(sent, &mut genuine);
        sent += 1;
        link.step();
    }
    replay_all(&mut link);
    for _ in 0..300 {
        link.exchange(sent, &mut genuine);
        sent += 1;
        link.step();
    }
    replay_all(&mut link);
    assert_eq!(replays, 3);

    // The conversation goes on; every genuine payload arrived once.
    for _ in 0..10 {
        link.exchange(sent, &mut genuine);
        sent += 1;
        link.step();
    }
    link.assert_up();
    let (up, down) = expected_payloads(sent, PAYLOAD_SEED);
    assert!(link.server_got == up, "the server's payloads are exactly the client's, once");
    assert!(link.client_got == down, "the client's payloads are exactly the server's, once");
    let (server, client) = (link.server.stats(), link.client.stats());
    println!("server {server:?}\nclient {client:?}");
    assert_eq!(server.packets_dropped, server.replays_dropped);
    assert_eq!(client.packets_dropped, client.replays_dropped);
}

#[test]
fn a_tampered_genuine_packet_is_dropped_and_a_retyped_one_cannot_disconnect() {
    let mut link = Link::connect(new_server(), client_address(), 1);
    let mut genuine = Rng(1);
    link.exchange(0, &mut genuine);
    let (_, payload) = link.client.poll_transmit().unwrap();
    assert_eq!(type_of(&payload), 5);
    // The server's payload (a keep-alive may go first, to a client not yet confirmed).
    let down = std::iter::from_fn(|| link.server.poll_transmit())
        .map(|(_, bytes)| bytes)
        .find(|bytes| type_of(bytes) == 5)
        .unwrap();
    let before = (link.server.stats(), link.client.stats());
    // Every bit of the server-bound payload flipped in turn, and the prefix retyped to a
    // keep-alive and a disconnect (the prefix byte is authenticated).
    let mut forgeries = 0;
    for bit in 0..payload.len() * 8 {
        let mut bytes = payload.clone();
        bytes[bit / 8] ^= 1 << (bit % 8);
        link.server.handle_datagram(link.now, UNIX, link.at, &mut bytes);
        forgeries += 1;
    }
    for packet_type in [4, 6] {
        let mut bytes = payload.clone();
        bytes[0] = (bytes[0] & 0xf0) | packet_type;
        link.server.handle_datagram(link.now, UNIX, link.at, &mut bytes);
        let mut bytes = down.clone();
        bytes[0] = (bytes[0] & 0xf0) | packet_type;
        link.client.handle_datagram(link.now, server_address(), &mut bytes);
        forgeries += 1;
    }
    link.take_events();
    link.assert_up();
    assert!(link.server_got.is_empty() && link.client_got.is_empty());
    let after = (link.server.stats(), link.client.stats());
    assert_eq!(after.0.packets_dropped - before.0.packets_dropped, forgeries);
    assert_eq!(after.1.packets_dropped - before.1.packets_dropped, 2);
    // The genuine packets, untouched, still arrive.
    link.server.handle_datagram(link.now, UNIX, link.at, &mut payload.clone());
    link.client.handle_datagram(link.now, server_address(), &mut down.clone());
    link.take_events();
    assert_eq!((link.server_got.len(), link.client_got.len()), (1, 1));
}

#[test]
fn a_disconnect_replayed_into_a_later_connection_from_the_same_address_does_not_disconnect() {
    // The first connection ends with the client's ten redundant disconnect packets; the
    // server acts on the first, and the other nine come from an address no longer connected.
    let mut first = Link::connect(new_server(), client_address(), 1);
    let mut rng = Rng(2);
    first.exchange(0, &mut rng);
    first.deliver();
    let mut old: Vec<Vec<u8>> = Vec::new();
    first.client.disconnect(first.now);
    while let Some((_, bytes)) = first.client.poll_transmit() {
        old.push(bytes);
    }
    assert_eq!(old.len(), 10);
    assert!(old.iter().all(|d| type_of(d) == 6));
    let mut server = first.server;
    for datagram in &old {
        server.handle_datagram(first.now, UNIX, client_address(), &mut datagram.clone());
    }
    assert!(matches!(server.poll_event(), Some(ServerEvent::Disconnected { .. })));
    assert!(server.poll_event().is_none());
    assert_eq!(server.stats().unknown_address, 9);

    // A new connection from the same address and port (a new token: new keys). Every packet
    // of the first connection replayed into it — the disconnects first — is dropped.
    let mut second = Link::connect_at(server, client_address(), 2, first.now);
    let mut rng = Rng(3);
    second.exchange(0, &mut rng);
    second.deliver();
    let before = second.server.stats();
    for _ in 0..3 {
        for datagram in &old {
            second.server.handle_datagram(
                second.now,
                UNIX,
                client_address(),
                &mut datagram.clone(),
            );
        }
    }
    second.take_events();
    second.assert_up();
    let after = second.server.stats();
    assert_eq!(after.packets_dropped - before.packets_dropped, 30);
    // It goes on.
    second.exchange(1, &mut rng);
    second.deliver();
    second.assert_up();
    assert_eq!((second.server_got.len(), second.client_got.len()), (2, 2));
}

#[test]
fn a_token_makes_one_connection_so_its_packets_cannot_be_replayed_into_a_second() {
    // A connection, its packets recorded by someone on the path, ended by the client.
    let token =
        ConnectToken::generate(&spec(1, vec![server_address()]), &private_key(), UNIX).unwrap();
    let mut link =
        Link::connect_with(new_server(), client_address(), token.clone(), base_instant());
    link.captured = Some(Vec::new());
    let mut rng = Rng(4);
    for n in 0..20 {
        link.exchange(n, &mut rng);
        link.step();
    }
    let recorded: Vec<Vec<u8>> = link
        .captured
        .take()
        .unwrap()
        .into_iter()
        .filter_map(|(way, bytes)| (way == Way::ToServer).then_some(bytes))
        .collect();
    link.client.disconnect(link.now);
    let disconnect = link.client.poll_transmit().unwrap().1;
    link.server.handle_datagram(link.now, UNIX, link.at, &mut disconnect.clone());
    let mut server = link.server;
    assert!(matches!(server.poll_event(), Some(ServerEvent::Disconnected { .. })));

    // The same token again from the same address and port, well before it expires: its keys
    // would be the first connection's, its packets numbered from 0 again. It is refused.
    let mut now = link.now;
    let mut client = Client::new(token, now);
    let ignored_before = server.stats().requests_ignored;
    for _ in 0..100 {
        now += STEP;
        client.update(now);
        server.update(now);
        while let Some((_, mut bytes)) = client.poll_transmit() {
            server.handle_datagram(now, UNIX, client_address(), &mut bytes);
        }
        assert!(server.poll_transmit().is_none(), "the server answered a used token");
    }
    assert_eq!(client.state(), ClientState::SendingRequest);
    assert_eq!(server.stats().requests_ignored - ignored_before, 10, "a request each 100 ms");
    assert_eq!((server.connected_clients(), server.pending_clients()), (0, 0));
    // So the recording, and the disconnect, replay into nothing.
    for bytes in recorded.iter().chain([&disconnect]) {
        server.handle_datagram(now, UNIX, client_address(), &mut bytes.clone());
    }
    assert!(server.poll_event().is_none());
}
