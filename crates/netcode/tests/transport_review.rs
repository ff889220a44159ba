//! The transport mode under the edge cases a review found: a server whose Sturnus side is
//! smaller than its netcode side, connections ending on every path (the netcode timeout, the
//! Sturnus timeout, the application, a reconnect from the same address) with exactly one
//! `Disconnected` and nothing left behind, and `poll_timeout` that never asks to be woken in
//! the past once everything due was done. Virtual time throughout.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sturnus_netcode::native::NativeConfig;
use sturnus_netcode::server::ServerConfig;
use sturnus_netcode::token::TokenSpec;
use sturnus_netcode::transport::{SecureEndpoint, Ticket};
use sturnus_netcode::{ConnectToken, Key, MAX_PACKET_BYTES};
use sturnus_transport::{
    ChannelId, ConnectionId, DisconnectReason, EndpointConfig, Event, Qos, RejectReason,
};

const PROTOCOL_ID: u64 = 0x5354_5552_4e55_5333;
const UNIX: u64 = 1_800_000_000;
const STEP: Duration = Duration::from_millis(5);
const TIMEOUT: Duration = Duration::from_secs(5);

fn private_key() -> Key {
    std::array::from_fn(|i| u8::try_from(i * 7 + 3).unwrap_or(0))
}

fn token(servers: &[SocketAddr], client_id: u64, timeout_seconds: i32) -> ConnectToken {
    let spec = TokenSpec {
        protocol_id: PROTOCOL_ID,
        client_id,
        server_addresses: servers.to_vec(),
        expire_seconds: 30,
        timeout_seconds,
        user_data: [7; 256],
    };
    ConnectToken::generate(&spec, &private_key(), UNIX).unwrap()
}

fn config() -> EndpointConfig {
    EndpointConfig { channels: vec![Qos::ReliableSequenced], ..EndpointConfig::default() }
}

#[expect(clippy::disallowed_methods, reason = "one base instant; time then advances virtually")]
fn base_instant() -> Instant {
    Instant::now()
}

/// An event with its payload copied out.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owned {
    Connected(ConnectionId),
    Data(ConnectionId, Vec<u8>),
    Disconnected(ConnectionId, DisconnectReason),
}

impl Owned {
    fn of(event: Event<'_>) -> Self {
        match event {
            Event::Connected(conn) => Self::Connected(conn),
            Event::Data { conn, payload, .. } => Self::Data(conn, payload.to_vec()),
            Event::Disconnected { conn, reason } => Self::Disconnected(conn, reason),
            _ => unreachable!("no other events exist"),
        }
    }
}

struct Peer {
    endpoint: SecureEndpoint,
    addr: SocketAddr,
    events: Vec<Owned>,
    /// Whether its datagrams (both ways) get through.
    up: bool,
}

/// One server and any number of clients on a lossless virtual network.
struct Net {
    now: Instant,
    server: Peer,
    clients: Vec<Peer>,
    /// `poll_timeout` answers that were in the past right after everything due was done.
    stale_timeouts: usize,
}

impl Net {
    fn new(config: &EndpointConfig, netcode: impl FnOnce(&mut ServerConfig)) -> Self {
        let now = base_instant();
        let addr: SocketAddr = "10.2.0.1:40000".parse().unwrap();
        let mut server_config = ServerConfig::new(PROTOCOL_ID, private_key(), addr);
        netcode(&mut server_config);
        let endpoint = SecureEndpoint::server(config, &server_config, now, UNIX).unwrap();
        Self {
            now,
            server: Peer { endpoint, addr, events: Vec::new(), up: true },
            clients: Vec::new(),
            stale_timeouts: 0,
        }
    }

    /// A client at `addr` that connects at once with a token for `client_id`.
    fn add_client(&mut self, addr: &str, client_id: u64, timeout_seconds: i32) -> ConnectionId {
        let ticket = token(&[self.server.addr], client_id, timeout_seconds);
        self.add_client_with(addr, ticket, self.server.addr)
    }

    /// A client at `addr` that connects at once to `remote` with `ticket`.
    fn add_client_with(
        &mut self,
        addr: &str,
        ticket: ConnectToken,
        remote: SocketAddr,
    ) -> ConnectionId {
        let mut endpoint = SecureEndpoint::client(&config(), ticket, self.now, UNIX).unwrap();
        let conn = endpoint.connect(self.now, remote).unwrap();
        let addr = addr.parse().unwrap();
        self.clients.push(Peer { endpoint, addr, events: Vec::new(), up: true });
        conn
    }

    /// A client at `addr` that connects at once with the native profile (no token).
    fn add_native_client(&mut self, addr: &str) -> ConnectionId {
        let ticket =
            Ticket::Native { protocol_id: PROTOCOL_ID, pinned_server_key: None, timeout: TIMEOUT };
        let mut endpoint = SecureEndpoint::client(&config(), ticket, self.now, UNIX).unwrap();
        let conn = endpoint.connect(self.now, self.server.addr).unwrap();
        let addr = addr.parse().unwrap();
        self.clients.push(Peer { endpoint, addr, events: Vec::new(), up: true });
        conn
    }

    /// One step of virtual time: timers, then datagrams both ways until none is left to go,
    /// then the events.
    fn step(&mut self) {
        self.now += STEP;
        let now = self.now;
        let mut buf = vec![0; MAX_PACKET_BYTES];
        for _ in 0..10 {
            let mut moved = 0;
            self.server.endpoint.handle_timeout(now);
            for client in &mut self.clients {
                client.endpoint.handle_timeout(now);
                while let Some(t) = client.endpoint.poll_transmit(now, &mut buf) {
                    moved += 1;
                    // Anything else is an address where no server listens.
                    if t.destination == self.server.addr && client.up && self.server.up {
                        let datagram = &mut buf[..t.len];
                        self.server.endpoint.handle_datagram(now, client.addr, datagram);
                    }
                }
            }
            while let Some(t) = self.server.endpoint.poll_transmit(now, &mut buf) {
                moved += 1;
                let client = self.clients.iter_mut().find(|c| c.addr == t.destination);
                let client = client.expect("the server sends only to its clients");
                if client.up && self.server.up {
                    client.endpoint.handle_datagram(now, self.server.addr, &mut buf[..t.len]);
                }
            }
            for peer in std::iter::once(&mut self.server).chain(&mut self.clients) {
                while let Some(event) = peer.endpoint.poll_event(now) {
                    peer.events.push(Owned::of(event));
                }
            }
            if moved == 0 {
                // Every timer due was run and nothing is left to send: a wake-up asked for
                // in the past now would find nothing to do, again and again (a spin).
                for peer in std::iter::once(&self.server).chain(&self.clients) {
                    if peer.endpoint.poll_timeout().is_some_and(|at| at <= now) {
                        self.stale_timeouts += 1;
                    }
                }
                return;
            }
        }
    }

    fn run(&mut self, duration: Duration) {
        let steps = duration.as_millis() / STEP.as_millis();
        for _ in 0..steps {
            self.step();
        }
    }
}

fn disconnects(events: &[Owned], conn: ConnectionId) -> usize {
    events.iter().filter(|e| matches!(e, Owned::Disconnected(c, _) if *c == conn)).count()
}

/// Nothing about `conn` may follow its `Disconnected`.
fn nothing_after_disconnect(events: &[Owned]) {
    for (i, event) in events.iter().enumerate() {
        if let Owned::Disconnected(conn, _) = event {
            let later = events[i + 1..].iter().find(|e| match e {
                Owned::Connected(c) | Owned::Data(c, _) | Owned::Disconnected(c, _) => c == conn,
            });
            assert!(later.is_none(), "{later:?} after {event:?}: {events:?}");
        }
    }
}

/// A server whose Sturnus side takes fewer connections than its netcode side admits clients
/// (the defaults: 1,024 and 4,096) must turn the extra client away as a full server does: it
/// never reports a connection the server's application will not see.
#[test]
fn a_client_the_sturnus_side_cannot_take_is_refused_not_connected_then_dropped() {
    let small = EndpointConfig { max_connections: 1, ..config() };
    let mut net = Net::new(&small, |_| {});
    let first = net.add_client("10.2.0.2:50000", 1, 5);
    net.run(Duration::from_millis(200));
    assert_eq!(net.clients[0].events, [Owned::Connected(first)]);

    let second = net.add_client("10.2.0.3:50000", 2, 5);
    net.run(Duration::from_secs(2));
    let events = &net.clients[1].events;
    assert!(
        !events.contains(&Owned::Connected(second)),
        "the client was told it connected, then dropped: {events:?}"
    );
    assert_eq!(
        events.as_slice(),
        [Owned::Disconnected(second, DisconnectReason::Rejected(RejectReason::ServerFull))]
    );
    // The server's application saw the first client only, and holds nothing for the second.
    assert_eq!(net.server.events.len(), 1, "{:?}", net.server.events);
    assert_eq!(net.server.endpoint.netcode_server().unwrap().connected_clients(), 1);
    assert_eq!(net.stale_timeouts, 0);
}

/// A connection that netcode times out (the client went silent) ends once on each side, the
/// server forgets it on both layers, and the same address connects again with a new token.
#[test]
fn a_netcode_timeout_ends_the_connection_once_and_the_address_may_return() {
    let mut net = Net::new(&config(), |_| {});
    let conn = net.add_client("10.2.0.2:50000", 1, 1);
    net.run(Duration::from_millis(200));
    let Some(&Owned::Connected(server_conn)) = net.server.events.first() else {
        panic!("no connection: {:?}", net.server.events);
    };
    net.clients[0].up = false;
    net.run(Duration::from_secs(3));
    assert_eq!(
        net.server.events.last(),
        Some(&Owned::Disconnected(server_conn, DisconnectReason::Timeout))
    );
    assert_eq!(
        net.clients[0].events.last(),
        Some(&Owned::Disconnected(conn, DisconnectReason::Timeout))
    );
    assert_eq!(net.server.endpoint.netcode_server().unwrap().connected_clients(), 0);
    assert_eq!(net.server.endpoint.sturnus().connection_count(), 0);
    assert!(net.server.endpoint.peer_identity(server_conn).is_none());

    // The player comes back from the same address with a new token.
    net.clients.remove(0);
    let again = net.add_client("10.2.0.2:50000", 1, 1);
    net.run(Duration::from_millis(300));
    assert_eq!(net.clients[0].events, [Owned::Connected(again)]);
    let Some(&Owned::Connected(server_again)) = net.server.events.last() else {
        panic!("no second connection: {:?}", net.server.events);
    };
    assert_ne!(server_again, server_conn, "a connection id was reused");
    assert!(net.server.endpoint.peer_identity(server_conn).is_none(), "the old id names the new");
    assert_eq!(net.server.endpoint.peer_identity(server_again).unwrap().client_id, 1);
    assert_eq!(disconnects(&net.server.events, server_conn), 1);
    nothing_after_disconnect(&net.server.events);
    assert_eq!(net.stale_timeouts, 0);
}

/// With tokens that never time out (development), the Sturnus side's own timeout ends a
/// silent connection: once on each side, and the netcode slot is freed with it.
#[test]
fn the_sturnus_timeout_ends_a_connection_netcode_never_times_out() {
    let mut net = Net::new(&config(), |_| {});
    let conn = net.add_client("10.2.0.2:50000", 1, -1);
    net.run(Duration::from_millis(200));
    let Some(&Owned::Connected(server_conn)) = net.server.events.first() else {
        panic!("no connection: {:?}", net.server.events);
    };
    net.clients[0].up = false;
    net.run(config().disconnect_timeout + Duration::from_secs(2));
    assert_eq!(
        net.server.events.last(),
        Some(&Owned::Disconnected(server_conn, DisconnectReason::Timeout))
    );
    assert_eq!(
        net.clients[0].events.last(),
        Some(&Owned::Disconnected(conn, DisconnectReason::Timeout))
    );
    assert_eq!(disconnects(&net.server.events, server_conn), 1);
    assert_eq!(disconnects(&net.clients[0].events, conn), 1);
    assert_eq!(net.server.endpoint.netcode_server().unwrap().connected_clients(), 0);
    assert!(net.server.endpoint.peer_identity(server_conn).is_none());
    // The client, back on the network, hears nothing of a connection it has closed.
    net.clients[0].up = true;
    net.run(Duration::from_secs(1));
    assert_eq!(disconnects(&net.clients[0].events, conn), 1);
    nothing_after_disconnect(&net.clients[0].events);
    let state = net.clients[0].endpoint.netcode_client().unwrap().state();
    assert!(!state.is_active(), "the netcode client outlived its connection: {state:?}");
    assert_eq!(net.stale_timeouts, 0);
}

/// Data that arrived before the peer left is delivered before its `Disconnected`, and nothing
/// after; the application's own disconnect reports nothing locally.
#[test]
fn data_then_one_disconnect_on_every_path() {
    let mut net = Net::new(&config(), |_| {});
    let conn = net.add_client("10.2.0.2:50000", 1, 5);
    let other = net.add_client("10.2.0.3:50000", 2, 5);
    net.run(Duration::from_millis(200));
    let server_conns: Vec<ConnectionId> = net
        .server
        .events
        .iter()
        .filter_map(|e| match e {
            Owned::Connected(c) => Some(*c),
            _ => None,
        })
        .collect();
    assert_eq!(server_conns.len(), 2);
    for n in 0..5u8 {
        net.clients[0].endpoint.send(conn, ChannelId(0), &[n; 10]).unwrap();
    }
    // Sent and disconnected at once: the data goes out first (the same poll_transmit).
    let now = net.now;
    let mut buf = vec![0; MAX_PACKET_BYTES];
    let client = &mut net.clients[0];
    let mut wire = Vec::new();
    while let Some(t) = client.endpoint.poll_transmit(now, &mut buf) {
        wire.push(buf[..t.len].to_vec());
    }
    client.endpoint.disconnect(now, conn);
    while let Some(t) = client.endpoint.poll_transmit(now, &mut buf) {
        wire.push(buf[..t.len].to_vec());
    }
    for mut datagram in wire {
        net.server.endpoint.handle_datagram(now, net.clients[0].addr, &mut datagram);
    }
    // The server disconnects the other client itself.
    let other_on_server = *server_conns
        .iter()
        .find(|c| net.server.endpoint.peer_identity(**c).is_some_and(|id| id.client_id == 2))
        .unwrap();
    net.server.endpoint.disconnect(now, other_on_server);
    net.run(Duration::from_secs(1));
    let left = server_conns.iter().copied().find(|c| *c != other_on_server).unwrap();
    let data: Vec<&Owned> =
        net.server.events.iter().filter(|e| matches!(e, Owned::Data(c, _) if *c == left)).collect();
    assert_eq!(data.len(), 5, "{:?}", net.server.events);
    assert_eq!(disconnects(&net.server.events, left), 1);
    assert_eq!(disconnects(&net.server.events, other_on_server), 0, "no event for our own");
    nothing_after_disconnect(&net.server.events);
    assert_eq!(disconnects(&net.clients[0].events, conn), 0, "no event for our own");
    assert_eq!(
        net.clients[1].events.last(),
        Some(&Owned::Disconnected(other, DisconnectReason::ClosedByPeer))
    );
    assert_eq!(net.server.endpoint.netcode_server().unwrap().connected_clients(), 0);
    assert_eq!(net.server.endpoint.sturnus().connection_count(), 0);
    assert_eq!(net.stale_timeouts, 0);
}

/// A native client presents no token: the transport proved nothing about who it is (its
/// client id is the server's own counter, its user data zeros), so it has no identity, and an
/// authenticator that admits by token (`TokenAuthenticator`) does not let it in on a server
/// that takes both kinds of client.
#[test]
fn a_native_client_has_no_token_identity() {
    let mut net = Net::new(&config(), |netcode| {
        netcode.native = Some(NativeConfig::from_secret([9; 32], TIMEOUT));
    });
    net.add_client("10.2.0.2:50000", 1, 5);
    net.add_native_client("10.2.0.3:50000");
    net.run(Duration::from_millis(300));
    let connected: Vec<ConnectionId> = net
        .server
        .events
        .iter()
        .filter_map(|e| match e {
            Owned::Connected(c) => Some(*c),
            _ => None,
        })
        .collect();
    assert_eq!(connected.len(), 2, "{:?}", net.server.events);
    for conn in connected {
        let remote = net.server.endpoint.sturnus().remote_address(conn).unwrap();
        let identity = net.server.endpoint.peer_identity(conn);
        if remote == net.clients[0].addr {
            assert_eq!(identity.map(|i| i.client_id), Some(1), "the token's identity");
        } else {
            assert_eq!(identity, None, "a native client has no token, so no identity");
        }
    }
}

/// A client asked to connect to its token's second server tries it first; when it is silent,
/// the token's first one takes it, and the connection (its id, its remote address, its data)
/// is that one's.
#[test]
fn a_silent_first_choice_falls_back_to_the_tokens_other_server() {
    let mut net = Net::new(&config(), |_| {});
    let silent: SocketAddr = "10.2.0.9:40000".parse().unwrap();
    let ticket = token(&[net.server.addr, silent], 1, 1);
    let conn = net.add_client_with("10.2.0.2:50000", ticket, silent);
    net.run(Duration::from_secs(3));
    assert_eq!(net.clients[0].events, [Owned::Connected(conn)]);
    let client = &mut net.clients[0].endpoint;
    assert_eq!(client.sturnus().remote_address(conn), Some(net.server.addr));
    client.send(conn, ChannelId(0), b"hello").unwrap();
    net.run(Duration::from_millis(100));
    let Some(&Owned::Connected(server_conn)) = net.server.events.first() else {
        panic!("no connection: {:?}", net.server.events);
    };
    assert_eq!(net.server.events.last(), Some(&Owned::Data(server_conn, b"hello".to_vec())));
    assert_eq!(net.stale_timeouts, 0);
}
