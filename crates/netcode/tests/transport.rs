//! The transport mode: Sturnus's packets inside netcode payload packets. Every QoS kind over a
//! lossy secure link on virtual time, what an eavesdropper sees, the token's identity, the
//! disconnect both ways, and the same over real UDP through the `Transport` trait.
#![expect(
    clippy::cast_possible_truncation,
    reason = "test payloads are byte ramps: keeping the low bits is the point"
)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sturnus_netcode::server::ServerConfig;
use sturnus_netcode::token::TokenSpec;
use sturnus_netcode::transport::{SecureEndpoint, SecureHost};
use sturnus_netcode::{ConnectToken, Key, MAX_PACKET_BYTES};
use sturnus_socket::UdpSocketFactory;
use sturnus_testkit::reads::{ReadLogFactory, check_spacing};
use sturnus_transport::{
    ChannelId, ConnectionId, DisconnectReason, EndpointConfig, Event, Qos, Transport,
};

const PROTOCOL_ID: u64 = 0x5354_5552_4e55_5332;
const UNIX: u64 = 1_800_000_000;
const STEP: Duration = Duration::from_millis(5);

fn private_key() -> Key {
    std::array::from_fn(|i| (i * 13 + 1) as u8)
}

fn user_data() -> [u8; 256] {
    std::array::from_fn(|i| (i as u8) ^ 0x5a)
}

fn token(servers: &[SocketAddr], unix: u64, timeout_seconds: i32) -> ConnectToken {
    let spec = TokenSpec {
        protocol_id: PROTOCOL_ID,
        client_id: 77,
        server_addresses: servers.to_vec(),
        expire_seconds: 30,
        timeout_seconds,
        user_data: user_data(),
    };
    ConnectToken::generate(&spec, &private_key(), unix).unwrap()
}

/// Every QoS kind, one channel each.
fn config() -> EndpointConfig {
    EndpointConfig { channels: Qos::ALL.to_vec(), ..EndpointConfig::default() }
}

#[expect(clippy::disallowed_methods, reason = "one base instant; time then advances virtually")]
fn base_instant() -> Instant {
    Instant::now()
}

/// A message that says which channel and which number it is, long enough to be fragmented on
/// fragmented channels.
fn message(channel: usize, n: u32) -> Vec<u8> {
    let len = if Qos::ALL[channel].is_fragmented() { 2_500 } else { 40 };
    let mut bytes = vec![b'#'; len];
    bytes[..4].copy_from_slice(&n.to_le_bytes());
    bytes[4] = channel as u8;
    bytes
}

/// A server and a client shuttling datagrams over a link that drops a share of them (a small
/// LCG decides: the loss pattern is part of the test, not a secret).
struct Link {
    now: Instant,
    server: SecureEndpoint,
    client: SecureEndpoint,
    server_addr: SocketAddr,
    client_addr: SocketAddr,
    loss_per_mille: u32,
    lcg: u64,
    /// Every datagram put on the wire, for the eavesdropper.
    wire: Vec<Vec<u8>>,
}

impl Link {
    fn new(loss_per_mille: u32, timeout_seconds: i32) -> Self {
        let now = base_instant();
        let server_addr: SocketAddr = "10.1.0.1:40000".parse().unwrap();
        let client_addr: SocketAddr = "10.1.0.2:50000".parse().unwrap();
        let netcode = ServerConfig::new(PROTOCOL_ID, private_key(), server_addr);
        let server = SecureEndpoint::server(&config(), &netcode, now, UNIX).unwrap();
        let client = SecureEndpoint::client(
            &config(),
            token(&[server_addr], UNIX, timeout_seconds),
            now,
            UNIX,
        )
        .unwrap();
        Self {
            now,
            server,
            client,
            server_addr,
            client_addr,
            loss_per_mille,
            lcg: 0x2545_f491_4f6c_dd1d,
            wire: Vec::new(),
        }
    }

    fn lost(&mut self) -> bool {
        self.lcg = self.lcg.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        ((self.lcg >> 33) % 1000) < u64::from(self.loss_per_mille)
    }

    /// One step of virtual time: timers, then datagrams both ways.
    fn step(&mut self, server_events: &mut Vec<Owned>, client_events: &mut Vec<Owned>) {
        self.now += STEP;
        let now = self.now;
        let mut buf = vec![0; MAX_PACKET_BYTES];
        for _ in 0..2 {
            self.client.handle_timeout(now);
            self.server.handle_timeout(now);
            while let Some(t) = self.client.poll_transmit(now, &mut buf) {
                assert_eq!(t.destination, self.server_addr);
                self.wire.push(buf[..t.len].to_vec());
                if !self.lost() {
                    let from = self.client_addr;
                    self.server.handle_datagram(now, from, &mut buf[..t.len]);
                }
            }
            while let Some(t) = self.server.poll_transmit(now, &mut buf) {
                assert_eq!(t.destination, self.client_addr);
                self.wire.push(buf[..t.len].to_vec());
                if !self.lost() {
                    let from = self.server_addr;
                    self.client.handle_datagram(now, from, &mut buf[..t.len]);
                }
            }
            while let Some(event) = self.server.poll_event(now) {
                server_events.push(Owned::of(event));
            }
            while let Some(event) = self.client.poll_event(now) {
                client_events.push(Owned::of(event));
            }
        }
    }
}

/// An event with its payload copied out.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owned {
    Connected(ConnectionId),
    Data(ConnectionId, ChannelId, Vec<u8>),
    Disconnected(ConnectionId, DisconnectReason),
}

impl Owned {
    fn of(event: Event<'_>) -> Self {
        match event {
            Event::Connected(conn) => Self::Connected(conn),
            Event::Data { conn, channel, payload } => Self::Data(conn, channel, payload.to_vec()),
            Event::Disconnected { conn, reason } => Self::Disconnected(conn, reason),
            _ => unreachable!("no other events exist"),
        }
    }
}

/// The messages of each channel, in arrival order, numbered.
fn by_channel(events: &[Owned]) -> HashMap<u8, Vec<u32>> {
    let mut out: HashMap<u8, Vec<u32>> = HashMap::new();
    for event in events {
        if let Owned::Data(_, channel, payload) = event {
            assert_eq!(payload[4], channel.0, "a message arrived on another channel");
            let n = u32::from_le_bytes(payload[..4].try_into().unwrap());
            assert_eq!(payload, &message(usize::from(channel.0), n), "a message was altered");
            out.entry(channel.0).or_default().push(n);
        }
    }
    out
}

#[test]
fn every_qos_kind_works_over_a_lossy_secure_link_and_the_token_is_the_login() {
    let mut link = Link::new(100, 5);
    let (mut server_events, mut client_events) = (Vec::new(), Vec::new());
    let conn = link.client.connect(link.now, link.server_addr).unwrap();
    // Queued before the handshake: they go out once netcode has connected.
    for channel in 0..Qos::ALL.len() {
        link.client.send(conn, ChannelId(channel as u8), &message(channel, 0)).unwrap();
    }
    for _ in 0..200 {
        link.step(&mut server_events, &mut client_events);
    }
    assert_eq!(client_events.first(), Some(&Owned::Connected(conn)));
    let Some(&Owned::Connected(server_conn)) = server_events.first() else {
        panic!("the server saw no connection: {server_events:?}");
    };
    let identity = link.server.peer_identity(server_conn).expect("the token's identity");
    assert_eq!(identity.client_id, 77);
    assert_eq!(&identity.user_data[..], &user_data()[..]);

    // 100 messages a channel each way, at 100 per second of virtual time, over 10 % loss.
    for n in 1..=100 {
        for channel in 0..Qos::ALL.len() {
            let id = ChannelId(channel as u8);
            link.client.send(conn, id, &message(channel, n)).unwrap();
            link.server.send(server_conn, id, &message(channel, n)).unwrap();
        }
        link.step(&mut server_events, &mut client_events);
        link.step(&mut server_events, &mut client_events);
    }
    for _ in 0..1_000 {
        link.step(&mut server_events, &mut client_events);
    }
    for (side, events) in [("server", &server_events), ("client", &client_events)] {
        let got = by_channel(events);
        for (channel, qos) in Qos::ALL.iter().enumerate() {
            let got = got.get(&(channel as u8)).cloned().unwrap_or_default();
            let name = qos.name();
            assert!(!got.is_empty(), "{side}: nothing arrived on {name}");
            if qos.is_state_update() {
                assert_eq!(got.last(), Some(&100), "{side}: {name} ended on an old state");
            } else if qos.is_reliable() {
                let mut sorted = got.clone();
                sorted.sort_unstable();
                let first = if side == "server" { 0 } else { 1 };
                assert_eq!(
                    sorted,
                    (first..=100).collect::<Vec<_>>(),
                    "{side}: {name} lost or doubled"
                );
                if qos.is_sequenced() {
                    assert_eq!(got, sorted, "{side}: {name} out of order");
                }
            } else {
                assert!(got.len() < 101, "{side}: {name} delivered more than was sent");
                if qos.is_sequenced() {
                    assert!(got.windows(2).all(|w| w[0] < w[1]), "{side}: {name} went backwards");
                }
            }
        }
    }
    // The link was lossy: resends happened, and still nothing broke the connection.
    assert!(link.server.sturnus().connection_stats(server_conn).unwrap().resends > 0);
    assert!(!server_events.iter().any(|e| matches!(e, Owned::Disconnected(..))));

    // An eavesdropper sees netcode packets only: never a message's bytes.
    let needle = [b'#'; 16];
    for datagram in &link.wire {
        assert!(datagram.len() <= MAX_PACKET_BYTES);
        assert!(datagram[0] & 0x0f <= 6, "not a netcode packet type");
        assert!(
            !datagram.windows(needle.len()).any(|w| w == needle),
            "plaintext message bytes on the wire"
        );
    }
}

#[test]
fn a_disconnect_reaches_the_other_side_and_silence_times_out() {
    let mut link = Link::new(0, 2);
    let (mut server_events, mut client_events) = (Vec::new(), Vec::new());
    let conn = link.client.connect(link.now, link.server_addr).unwrap();
    for _ in 0..20 {
        link.step(&mut server_events, &mut client_events);
    }
    let Some(&Owned::Connected(server_conn)) = server_events.first() else {
        panic!("no connection: {server_events:?}");
    };
    // Idle for longer than the token's timeout: netcode's keep-alives hold it up.
    for _ in 0..1_000 {
        link.step(&mut server_events, &mut client_events);
    }
    assert_eq!(server_events.len(), 1, "{server_events:?}");
    assert_eq!(client_events, [Owned::Connected(conn)]);

    link.client.disconnect(link.now, conn);
    for _ in 0..4 {
        link.step(&mut server_events, &mut client_events);
    }
    assert_eq!(
        server_events.last(),
        Some(&Owned::Disconnected(server_conn, DisconnectReason::ClosedByPeer))
    );
    assert_eq!(client_events.len(), 1, "no event for the side that disconnected");
    assert_eq!(link.server.netcode_server().unwrap().connected_clients(), 0);

    // A second client whose server goes silent times out on the token's timeout.
    let mut link = Link::new(0, 1);
    let (mut server_events, mut client_events) = (Vec::new(), Vec::new());
    let conn = link.client.connect(link.now, link.server_addr).unwrap();
    for _ in 0..20 {
        link.step(&mut server_events, &mut client_events);
    }
    link.loss_per_mille = 1000;
    for _ in 0..(1_500 / 5) {
        link.step(&mut server_events, &mut client_events);
    }
    assert!(
        client_events.contains(&Owned::Disconnected(conn, DisconnectReason::Timeout)),
        "{client_events:?}"
    );
    assert!(
        matches!(server_events.last(), Some(Owned::Disconnected(_, DisconnectReason::Timeout))),
        "{server_events:?}"
    );
}

#[test]
fn the_client_connects_only_where_its_token_allows() {
    let now = base_instant();
    let server: SocketAddr = "10.1.0.1:40000".parse().unwrap();
    let elsewhere: SocketAddr = "10.1.0.9:40000".parse().unwrap();
    let mut client =
        SecureEndpoint::client(&config(), token(&[server], UNIX, 5), now, UNIX).unwrap();
    assert!(client.connect(now, elsewhere).is_err());
    assert!(client.connect(now, server).is_ok());
    assert!(client.connect(now, server).is_err(), "one connection per token");
    // Packets too large for a netcode payload are a configuration error.
    let big = EndpointConfig { max_packet_size: 1_400, ..config() };
    assert!(SecureEndpoint::client(&big, token(&[server], UNIX, 5), now, UNIX).is_err());
}

/// Runs both hosts until `done` says so, or gives up after a few seconds of real time.
fn pump_until(
    server: &mut dyn Transport,
    client: &mut dyn Transport,
    mut on: impl FnMut(bool, Owned) -> bool,
) {
    let start = base_instant();
    loop {
        for is_server in [true, false] {
            let host: &mut dyn Transport = if is_server { &mut *server } else { &mut *client };
            let now = base_instant();
            while let Some(event) = host.poll_event(now).unwrap() {
                if on(is_server, Owned::of(event)) {
                    return;
                }
            }
            host.flush(now).unwrap();
            host.wait(Duration::from_millis(1)).unwrap();
        }
        assert!(base_instant() - start < Duration::from_secs(20), "gave up waiting");
    }
}

#[expect(clippy::disallowed_methods, reason = "a real server checks tokens on the wall clock")]
fn wall_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[test]
fn over_real_udp_through_the_transport_trait() {
    let factory = UdpSocketFactory::default();
    let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
    // Bind first to learn the port, then give the server that public address.
    let probe = std::net::UdpSocket::bind(bind).unwrap();
    let public = probe.local_addr().unwrap();
    drop(probe);
    let netcode = ServerConfig::new(PROTOCOL_ID, private_key(), public);
    let mut server = SecureHost::bind(&config(), &netcode, &factory, public).unwrap();
    let unix = wall_unix();
    let mut client =
        SecureHost::client(&config(), token(&[public], unix, 5), &factory, public).unwrap();
    assert!(Transport::is_secure(&server) && Transport::is_secure(&client));
    let conn = Transport::connect(&mut client, base_instant(), public).unwrap();
    let reliable = ChannelId(
        Qos::ALL.iter().position(|q| *q == Qos::ReliableFragmentedSequenced).unwrap() as u8,
    );
    let big: Vec<u8> = (0..20_000u32).map(|i| (i * 31) as u8).collect();
    Transport::send(&mut client, conn, reliable, &big).unwrap();
    let mut server_conn = None;
    let mut got = None;
    pump_until(&mut server, &mut client, |is_server, event| {
        match (is_server, event) {
            (true, Owned::Connected(c)) => server_conn = Some(c),
            (true, Owned::Data(_, channel, payload)) if channel == reliable => {
                got = Some(payload);
                return true;
            }
            _ => {}
        }
        false
    });
    assert_eq!(got.as_deref(), Some(&big[..]));
    let server_conn = server_conn.unwrap();
    let identity = Transport::peer_identity(&server, server_conn).unwrap();
    assert_eq!((identity.client_id, &identity.user_data[..]), (77, &user_data()[..]));
    assert!(Transport::peer_identity(&server, conn).is_none() || conn == server_conn);

    // The server answers; then it disconnects the client, which hears of it.
    Transport::send(&mut server, server_conn, reliable, b"welcome").unwrap();
    let mut welcomed = false;
    pump_until(&mut server, &mut client, |is_server, event| {
        if let (false, Owned::Data(_, _, payload)) = (is_server, event) {
            welcomed = payload == b"welcome";
            return true;
        }
        false
    });
    assert!(welcomed);
    Transport::disconnect(&mut server, base_instant(), server_conn);
    let mut reason = None;
    pump_until(&mut server, &mut client, |is_server, event| {
        if let (false, Owned::Disconnected(c, r)) = (is_server, event) {
            assert_eq!(c, conn);
            reason = Some(r);
            return true;
        }
        false
    });
    assert_eq!(reason, Some(DisconnectReason::ClosedByPeer));
}

#[test]
fn a_read_interval_keeps_the_secure_hosts_reads_apart() {
    const INTERVAL: Duration = Duration::from_millis(40);
    let reads = std::sync::Arc::default();
    let logged = ReadLogFactory::new(UdpSocketFactory::default(), std::sync::Arc::clone(&reads));
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let public = probe.local_addr().unwrap();
    drop(probe);
    let netcode = ServerConfig::new(PROTOCOL_ID, private_key(), public);
    let paced = EndpointConfig { read_interval: INTERVAL, ..config() };
    let mut server = SecureHost::bind(&paced, &netcode, &logged, public).unwrap();
    let mut client = SecureHost::client(
        &config(),
        token(&[public], wall_unix(), 5),
        &UdpSocketFactory::default(),
        public,
    )
    .unwrap();
    let conn = Transport::connect(&mut client, base_instant(), public).unwrap();
    let reliable =
        ChannelId(Qos::ALL.iter().position(|q| *q == Qos::ReliableSequenced).unwrap() as u8);
    // Ten messages sent 5 ms apart once connected, each a separate datagram.
    let mut connected = false;
    let (mut sent, mut got) = (0u32, Vec::new());
    let start = base_instant();
    while got.len() < 10 {
        assert!(base_instant() - start < Duration::from_secs(20), "got {got:?}");
        let now = base_instant();
        while let Some(event) = client.poll_event(now).unwrap() {
            connected |= matches!(event, Event::Connected(c) if c == conn);
        }
        if connected && sent < 10 {
            Transport::send(&mut client, conn, reliable, &sent.to_le_bytes()).unwrap();
            sent += 1;
        }
        client.flush(now).unwrap();
        while let Some(event) = server.poll_event(now).unwrap() {
            if let Event::Data { payload, .. } = event {
                got.push(u32::from_le_bytes(payload.try_into().unwrap()));
            }
        }
        server.flush(now).unwrap();
        server.wait(Duration::from_millis(5)).unwrap();
    }
    assert_eq!(got, (0..10).collect::<Vec<_>>());
    check_spacing(&reads, INTERVAL, Duration::from_millis(10)).unwrap();
}
