//! Games played through a relay over real UDP on 127.0.0.1: netcode (`SecureHost`) with the
//! relay holding only its own key (and never seeing a plaintext), 250 players in one session,
//! a host leaving, refused binds.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sturnus_netcode::server::ServerConfig;
use sturnus_netcode::token::TokenSpec;
use sturnus_netcode::transport::SecureHost;
use sturnus_netcode::{ConnectToken, Key};
use sturnus_relay::{
    Allocation, AllocationSpec, RelayConfig, RelayKey, RelayServer, RelaySocket,
    RelaySocketFactory, RelayStats,
};
use sturnus_socket::{
    Outgoing, Readiness, RecvBatch, RecvMeta, SendStatus, Socket, SocketError, SocketFactory,
    SocketStats, SocketWaker, UdpSocket, UdpSocketFactory,
};
use sturnus_transport::{ChannelId, ConnectionId, EndpointConfig, Event, Host, Qos, Transport};

const PROTOCOL_ID: u64 = 0x5354_5552_4e55_5352;
const SESSION: u32 = 0x00c0_ffee;
/// A plaintext the game sends in every message: the relay must never see it.
const MARKER: &[u8] = b"PLAINTEXT-MARKER-7f3a";

#[expect(clippy::disallowed_methods, reason = "tests of a real network read the clock")]
fn now() -> Instant {
    Instant::now()
}

#[expect(clippy::disallowed_methods, reason = "tokens expire by the wall clock")]
fn unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// What the relay's socket saw: every datagram received and sent, searched for the marker.
#[derive(Debug, Default)]
struct Seen {
    datagrams: AtomicU64,
    marker: AtomicBool,
}

impl Seen {
    fn look(&self, datagram: &[u8]) {
        self.datagrams.fetch_add(1, Ordering::Relaxed);
        if datagram.windows(MARKER.len()).any(|w| w == MARKER) {
            self.marker.store(true, Ordering::Relaxed);
        }
    }
}

/// The relay's UDP socket with a tap on everything that passes.
struct Tap {
    inner: UdpSocket,
    seen: Arc<Seen>,
}

impl Socket for Tap {
    fn send_to(&mut self, payload: &[u8], to: SocketAddr) -> Result<SendStatus, SocketError> {
        self.seen.look(payload);
        self.inner.send_to(payload, to)
    }
    fn recv_from(&mut self, buf: &mut [u8]) -> Result<Option<RecvMeta>, SocketError> {
        let meta = self.inner.recv_from(buf)?;
        if let Some(meta) = meta {
            self.seen.look(&buf[..meta.len]);
        }
        Ok(meta)
    }
    fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr()
    }
    fn wait_readable(&mut self, timeout: Option<Duration>) -> Result<Readiness, SocketError> {
        self.inner.wait_readable(timeout)
    }
    fn stats(&self) -> SocketStats {
        self.inner.stats()
    }
    fn send_batch(&mut self, batch: &[Outgoing<'_>]) -> Result<usize, SocketError> {
        for datagram in batch {
            self.seen.look(datagram.payload);
        }
        self.inner.send_batch(batch)
    }
    fn recv_batch(&mut self, batch: &mut RecvBatch) -> Result<usize, SocketError> {
        let n = self.inner.recv_batch(batch)?;
        for (_, datagram) in batch.iter() {
            self.seen.look(datagram);
        }
        Ok(n)
    }
    fn waker(&self) -> Option<SocketWaker> {
        self.inner.waker()
    }
}

/// A relay on its own thread (`RelayServer::run`), built from its key alone.
struct RunningRelay {
    addr: SocketAddr,
    key: RelayKey,
    seen: Arc<Seen>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<RelayServer<Tap>>>,
}

impl RunningRelay {
    fn start(config: RelayConfig) -> Self {
        let key = RelayKey::generate().unwrap();
        let udp =
            UdpSocketFactory::default().server_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        let seen = Arc::new(Seen::default());
        let tap = Tap { inner: udp, seen: seen.clone() };
        let mut server = RelayServer::new(tap, config, key.clone()).unwrap();
        let addr = server.local_addr();
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut reports = 0;
            server
                .run_reporting(&thread_stop, Duration::from_millis(100), |_, _| reports += 1)
                .unwrap();
            assert!(reports >= 1, "the last report is always made");
            server
        });
        Self { addr, key, seen, stop, thread: Some(thread) }
    }

    fn allocation(&self, slot: u16) -> Allocation {
        let spec = AllocationSpec {
            session: SESSION,
            slot,
            expires_unix: unix() + 120,
            packets_per_sec: 0,
            bytes_per_sec: 0,
        };
        Allocation::mint(&spec, &self.key, self.addr, unix()).unwrap()
    }

    /// Stops the relay; its counters.
    fn finish(mut self) -> RelayStats {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap().stats()
    }
}

impl Drop for RunningRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The game's key, shared by its backend and its host; never given to the relay.
fn game_key() -> Key {
    std::array::from_fn(|i| u8::try_from(i * 7 + 3).unwrap())
}

fn config() -> EndpointConfig {
    EndpointConfig {
        channels: vec![Qos::ReliableSequenced, Qos::Unreliable],
        ..EndpointConfig::default()
    }
}

fn netcode_token(relay: SocketAddr, client_id: u64) -> ConnectToken {
    let spec = TokenSpec {
        protocol_id: PROTOCOL_ID,
        client_id,
        // The relay's address is "the server": the client's relay socket takes it there.
        server_addresses: vec![relay],
        expire_seconds: 60,
        timeout_seconds: 5,
        user_data: [0; 256],
    };
    ConnectToken::generate(&spec, &game_key(), unix()).unwrap()
}

fn message(n: u64) -> Vec<u8> {
    let mut bytes = n.to_le_bytes().to_vec();
    bytes.extend_from_slice(MARKER);
    bytes
}

const RELIABLE: ChannelId = ChannelId(0);

enum Owned {
    Connected(ConnectionId),
    Data(ConnectionId, Vec<u8>),
    Disconnected,
}

fn drain(host: &mut dyn Transport) -> Vec<Owned> {
    let mut events = Vec::new();
    let now = now();
    while let Some(event) = host.poll_event(now).unwrap() {
        events.push(match event {
            Event::Connected(conn) => Owned::Connected(conn),
            Event::Data { conn, payload, .. } => Owned::Data(conn, payload.to_vec()),
            Event::Disconnected { .. } => Owned::Disconnected,
            _ => continue,
        });
    }
    host.flush(now).unwrap();
    events
}

/// A host and `clients` clients exchange a message each way per client through the relay:
/// every client connects, the host hears from each and answers each, each client hears the
/// answer. Returns how long it took and the host's connections.
fn play<T: Transport>(
    host: &mut T,
    clients: &mut [T],
    relay: SocketAddr,
) -> (Duration, Vec<ConnectionId>) {
    let start = now();
    let conns: Vec<ConnectionId> =
        clients.iter_mut().map(|c| c.connect(now(), relay).unwrap()).collect();
    let mut connected = vec![false; clients.len()];
    let mut answered = vec![false; clients.len()];
    let mut heard = 0;
    let mut host_conns = Vec::new();
    while answered.iter().any(|a| !a) {
        assert!(now() - start < Duration::from_secs(60), "gave up: heard {heard}");
        for event in drain(host) {
            if let Owned::Data(conn, payload) = event {
                assert!(payload.ends_with(MARKER));
                heard += 1;
                host_conns.push(conn);
                let mut answer = payload.clone();
                answer.extend_from_slice(b" back");
                host.send(conn, RELIABLE, &answer).unwrap();
            }
        }
        let mut idle = true;
        for (i, client) in clients.iter_mut().enumerate() {
            for event in drain(client) {
                idle = false;
                match event {
                    Owned::Connected(conn) => {
                        assert_eq!(conn, conns[i]);
                        connected[i] = true;
                        client.send(conn, RELIABLE, &message(i as u64)).unwrap();
                    }
                    Owned::Data(_, payload) => {
                        assert_eq!(payload[..8], (i as u64).to_le_bytes());
                        answered[i] = true;
                    }
                    Owned::Disconnected => panic!("client {i} disconnected"),
                }
            }
        }
        if idle {
            host.wait(Duration::from_millis(1)).unwrap();
        }
    }
    assert_eq!(heard, clients.len());
    assert!(connected.iter().all(|c| *c));
    (now() - start, host_conns)
}

#[test]
fn netcode_through_the_relay_which_holds_no_game_key() {
    let relay = RunningRelay::start(RelayConfig::default());
    // The host: a netcode server whose public address is the relay's (port 0: the socket's
    // local address, which a host's relay socket reports as the relay's).
    let netcode = ServerConfig::new(PROTOCOL_ID, game_key(), "0.0.0.0:0".parse().unwrap());
    let host_factory = RelaySocketFactory::new(relay.allocation(0));
    let mut host = SecureHost::bind(&config(), &netcode, &host_factory, relay.addr).unwrap();
    assert_eq!(Transport::local_addr(&host), Some(relay.addr));
    let mut clients: Vec<_> = (1..=3u16)
        .map(|slot| {
            let factory = RelaySocketFactory::new(relay.allocation(slot));
            let token = netcode_token(relay.addr, u64::from(slot));
            SecureHost::client(&config(), token, &factory, relay.addr).unwrap()
        })
        .collect();
    let (_, conns) = play(&mut host, &mut clients, relay.addr);
    // The host saw each client at its own virtual address.
    let mut seen_at: Vec<SocketAddr> =
        conns.iter().map(|&conn| Transport::remote_address(&host, conn).unwrap()).collect();
    seen_at.sort();
    let mut expected: Vec<SocketAddr> =
        (1..=3).map(|slot| RelaySocket::peer_address(SESSION, slot)).collect();
    expected.sort();
    assert_eq!(seen_at, expected);

    // The host leaves: every client's relay socket hears it.
    drop(host);
    let start = now();
    while clients.iter().any(|c| c.socket().relay_stats().peer_gone == 0) {
        assert!(now() - start < Duration::from_secs(10), "no PEER_GONE");
        for client in &mut clients {
            drain(client);
            client.wait(Duration::from_millis(1)).unwrap();
        }
    }
    drop(clients);
    let seen = relay.seen.clone();
    let stats = relay.finish();
    assert!(stats.forwarded >= 12 && stats.peer_gone_sent >= 3, "{stats:?}");
    assert!(seen.datagrams.load(Ordering::Relaxed) >= 2 * stats.forwarded);
    assert!(!seen.marker.load(Ordering::Relaxed), "the relay saw a game plaintext");
}

#[test]
fn the_tap_sees_plaintext_when_the_game_sends_it() {
    // The control of the test above: plain Sturnus (unencrypted) through the same relay and
    // tap shows the marker, so the tap would catch a leak.
    let relay = RunningRelay::start(RelayConfig::default());
    let mut host =
        Host::bind(config(), &RelaySocketFactory::new(relay.allocation(0)), relay.addr).unwrap();
    let mut clients: Vec<_> = (1..=2u16)
        .map(|slot| {
            Host::bind(config(), &RelaySocketFactory::new(relay.allocation(slot)), relay.addr)
                .unwrap()
        })
        .collect();
    play(&mut host, &mut clients, relay.addr);
    assert!(relay.seen.marker.load(Ordering::Relaxed));
}

#[test]
fn two_hundred_fifty_players_in_one_relayed_session() {
    let relay = RunningRelay::start(RelayConfig::default());
    let netcode = ServerConfig::new(PROTOCOL_ID, game_key(), "0.0.0.0:0".parse().unwrap());
    let host_factory = RelaySocketFactory::new(relay.allocation(0));
    let mut host = SecureHost::bind(&config(), &netcode, &host_factory, relay.addr).unwrap();
    let mut clients: Vec<_> = (1..=250u16)
        .map(|slot| {
            let factory = RelaySocketFactory::new(relay.allocation(slot));
            let token = netcode_token(relay.addr, u64::from(slot));
            SecureHost::client(&config(), token, &factory, relay.addr).unwrap()
        })
        .collect();
    let (took, _) = play(&mut host, &mut clients, relay.addr);
    println!("250 netcode clients connected and answered through the relay in {took:?}");
    let seen = relay.seen.clone();
    let stats = relay.finish();
    assert_eq!((stats.binds, stats.bindings), (251, 251), "{stats:?}");
    assert!(!seen.marker.load(Ordering::Relaxed));
}

#[test]
fn refused_allocations_fail_to_bind() {
    let relay = RunningRelay::start(RelayConfig::default());
    // Sealed under another relay's key.
    let stranger = RelayKey::generate().unwrap();
    let spec = AllocationSpec {
        session: SESSION,
        slot: 1,
        expires_unix: unix() + 60,
        packets_per_sec: 0,
        bytes_per_sec: 0,
    };
    let forged = Allocation::mint(&spec, &stranger, relay.addr, unix()).unwrap();
    let factory = RelaySocketFactory::new(forged).with_bind_timeout(Duration::from_secs(2));
    let error = factory.client_socket(relay.addr).unwrap_err();
    assert!(error.to_string().contains("refused the token"), "{error}");
    // Nobody answers at all.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut lost = relay.allocation(2);
    lost.relay = silent.local_addr().unwrap();
    let factory = RelaySocketFactory::new(lost).with_bind_timeout(Duration::from_millis(600));
    let error = factory.client_socket(relay.addr).unwrap_err();
    assert!(error.to_string().contains("did not answer"), "{error}");
    // A genuine one binds.
    let factory = RelaySocketFactory::new(relay.allocation(3));
    assert!(factory.client_socket(relay.addr).unwrap().is_bound());
    let stats = relay.finish();
    assert_eq!((stats.dropped_bad_token, stats.binds), (1, 1), "{stats:?}");
}

/// Waits `how_long` on `socket` (which keeps its binding up meanwhile), reading what comes.
fn idle(socket: &mut RelaySocket, how_long: Duration) {
    let until = now() + how_long;
    let mut buf = [0; 2048];
    while now() < until {
        socket.wait_readable(Some(until.saturating_duration_since(now()))).unwrap();
        while socket.recv_from(&mut buf).unwrap().is_some() {}
    }
}

#[test]
fn keepalives_hold_a_silent_binding_and_a_forgotten_one_is_bound_again() {
    let relay = RunningRelay::start(RelayConfig {
        idle_timeout: Duration::from_millis(600),
        sweep_interval: Duration::from_millis(20),
        ..RelayConfig::default()
    });
    // Twelve keep-alives per idle timeout: a margin for a loaded machine.
    let fast = Duration::from_millis(50);
    let mut host = RelaySocketFactory::new(relay.allocation(0))
        .with_keepalive(fast)
        .server_socket(relay.addr)
        .unwrap();
    // Three idle timeouts of silence from the game: the keep-alives hold the binding.
    idle(&mut host, Duration::from_millis(1_200));
    assert!(host.relay_stats().pings_sent >= 5, "{:?}", host.relay_stats());
    let mut client = RelaySocketFactory::new(relay.allocation(1))
        .with_keepalive(Duration::from_secs(60))
        .client_socket(relay.addr)
        .unwrap();
    // The client is silent past the idle timeout (its keep-alive is a minute): the relay
    // forgets it and tells the host; the client's next send is answered NOT_BOUND, and it
    // binds again.
    idle(&mut host, Duration::from_millis(1_200));
    assert_eq!(host.take_peer_gone(), Some(1));
    let mut buf = [0; 2048];
    let start = now();
    let got = loop {
        assert!(now() - start < Duration::from_secs(10), "{:?}", client.relay_stats());
        let _ = client.send_to(b"again", relay.addr).unwrap();
        client.wait_readable(Some(Duration::from_millis(20))).unwrap();
        while client.recv_from(&mut buf).unwrap().is_some() {}
        host.wait_readable(Some(Duration::from_millis(20))).unwrap();
        if let Some(meta) = host.recv_from(&mut buf).unwrap() {
            break meta;
        }
    };
    assert_eq!((&buf[..got.len], got.from), (&b"again"[..], RelaySocket::peer_address(SESSION, 1)));
    let stats = client.relay_stats();
    assert!(stats.errors >= 1 && stats.binds_sent >= 2 && stats.bound >= 2, "{stats:?}");
    drop((host, client));
    let stats = relay.finish();
    assert_eq!(stats.timed_out, 1, "{stats:?}");
}
