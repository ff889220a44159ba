//! What one source may take of a server (issue 14, items 2 and 3): reassembly memory of
//! untrusted connections, and connections and handshakes per address and per prefix.

use sturnus_testkit::sim;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sim::carries_a_last_fragment;
use sturnus_transport::{
    AddressLimits, ChannelId, ConnectionId, DisconnectReason, Endpoint, EndpointConfig, Event, Qos,
    RejectReason,
};

#[expect(clippy::disallowed_methods, reason = "a starting instant for the virtual clock")]
fn start() -> Instant {
    Instant::now()
}

/// A server and clients on a lossless wire driven by hand; the wire may drop client packets
/// that carry the last fragment of a message (so messages stay partial).
struct Star {
    now: Instant,
    server: Endpoint,
    server_addr: SocketAddr,
    clients: Vec<Client>,
    buf: Vec<u8>,
    channels: Vec<Qos>,
    /// Events the server reported: connections and disconnections.
    server_events: Vec<(ConnectionId, Option<DisconnectReason>)>,
}

struct Client {
    endpoint: Endpoint,
    addr: SocketAddr,
    conn: Option<ConnectionId>,
    drop_last_fragments: bool,
    disconnected: Option<DisconnectReason>,
    /// The server's id of this client's connection, once accepted.
    server_conn: Option<ConnectionId>,
}

impl Star {
    fn new(config: EndpointConfig) -> Self {
        let now = start();
        let channels = config.channels.clone();
        let server = Endpoint::with_deterministic_secrets_for_tests(config, now, 1).unwrap();
        Self {
            now,
            server,
            server_addr: "192.0.2.1:9000".parse().unwrap(),
            clients: Vec::new(),
            buf: vec![0; 1500],
            channels,
            server_events: Vec::new(),
        }
    }

    /// A client at `addr` that starts connecting; returns its index.
    fn add(&mut self, config: &EndpointConfig, addr: &str) -> usize {
        let seed = 100 + self.clients.len() as u64;
        let mut endpoint =
            Endpoint::with_deterministic_secrets_for_tests(config.clone(), self.now, seed).unwrap();
        let conn = endpoint.connect(self.now, self.server_addr).unwrap();
        self.clients.push(Client {
            endpoint,
            addr: addr.parse().unwrap(),
            conn: Some(conn),
            drop_last_fragments: false,
            disconnected: None,
            server_conn: None,
        });
        self.clients.len() - 1
    }

    fn round(&mut self, step: Duration) {
        self.now += step;
        let now = self.now;
        for client in &mut self.clients {
            client.endpoint.handle_timeout(now);
            while let Some(t) = client.endpoint.poll_transmit(now, &mut self.buf) {
                let datagram = &self.buf[..t.len];
                if !(client.drop_last_fragments
                    && carries_a_last_fragment(datagram, &self.channels))
                {
                    self.server.handle_datagram(now, client.addr, datagram);
                }
            }
            while let Some(event) = client.endpoint.poll_event() {
                if let Event::Disconnected { reason, .. } = event {
                    client.disconnected = Some(reason);
                    client.conn = None;
                }
            }
        }
        self.server.handle_timeout(now);
        while let Some(t) = self.server.poll_transmit(now, &mut self.buf) {
            if let Some(client) = self.clients.iter_mut().find(|c| c.addr == t.destination) {
                client.endpoint.handle_datagram(now, self.server_addr, &self.buf[..t.len]);
            }
        }
        while let Some(event) = self.server.poll_event() {
            match event {
                Event::Connected(id) => {
                    let addr = self.server.remote_address(id).unwrap();
                    if let Some(c) = self.clients.iter_mut().find(|c| c.addr == addr) {
                        c.server_conn = Some(id);
                    }
                    self.server_events.push((id, None));
                }
                Event::Disconnected { conn, reason } => {
                    self.server_events.push((conn, Some(reason)));
                }
                _ => {}
            }
        }
    }

    fn run(&mut self, duration: Duration) {
        let step = Duration::from_millis(10);
        let rounds = duration.as_millis() / step.as_millis();
        for _ in 0..rounds {
            self.round(step);
        }
    }

    fn connected(&self, i: usize) -> bool {
        let client = &self.clients[i];
        client.conn.is_some_and(|c| client.endpoint.is_connected(c))
    }

    fn send(&mut self, i: usize, channel: ChannelId, payload: &[u8]) {
        let client = &mut self.clients[i];
        client.endpoint.send(client.conn.unwrap(), channel, payload).unwrap();
    }

    fn held(&self, i: usize) -> usize {
        let id = self.clients[i].server_conn.unwrap();
        self.server.connection_stats(id).map_or(0, |s| s.held_bytes)
    }
}

// ---------------------------------------------------------------------------------------------
// Item 2: reassembly memory of untrusted connections.

/// Fragments of 100 bytes, one per packet; messages of up to 10 fragments.
fn fragmented() -> EndpointConfig {
    EndpointConfig {
        channels: vec![Qos::ReliableFragmented, Qos::UnreliableFragmented],
        max_packet_size: 150,
        fragment_size: 100,
        max_fragments: 10,
        max_reassembly_bytes: 10_000,
        trust_incoming: false,
        max_reassembly_bytes_untrusted: 300,
        untrusted_reassembly_bytes_total: 1_500,
        ..EndpointConfig::default()
    }
}

const RELIABLE: ChannelId = ChannelId(0);
const UNRELIABLE: ChannelId = ChannelId(1);

#[test]
fn an_untrusted_peer_may_hold_only_its_small_budget_until_the_application_trusts_it() {
    let mut star = Star::new(fragmented());
    let c = star.add(&fragmented(), "198.51.100.7:5000");
    star.run(Duration::from_millis(50));
    assert!(star.connected(c));
    let id = star.clients[c].server_conn.unwrap();
    assert!(!star.server.is_trusted(id));
    assert!(star.clients[c].endpoint.is_trusted(star.clients[c].conn.unwrap()), "ours: trusted");

    // 500 bytes of unreliable partial message is past the untrusted budget of 300: dropped.
    star.clients[c].drop_last_fragments = true;
    star.send(c, UNRELIABLE, &[1; 500]);
    star.run(Duration::from_millis(50));
    assert_eq!(star.held(c), 0);
    assert!(star.server.connection_stats(id).unwrap().dropped_by_qos >= 1);

    // Trusted, it may hold up to max_reassembly_bytes.
    assert!(star.server.set_trusted(id));
    assert!(star.server.is_trusted(id));
    star.send(c, UNRELIABLE, &[2; 500]);
    star.run(Duration::from_millis(50));
    assert_eq!(star.held(c), 500, "five fragments of room");
    assert_eq!(star.server.untrusted_held_bytes(), 0, "a trusted connection is not counted");
}

#[test]
fn past_the_untrusted_budget_the_longest_holder_is_closed_and_trusted_peers_are_spared() {
    let config = fragmented();
    let mut star = Star::new(config.clone());
    let trusted = star.add(&config, "198.51.100.1:5000");
    let old = star.add(&config, "198.51.100.2:5000");
    let new = star.add(&config, "198.51.100.3:5000");
    star.run(Duration::from_millis(50));
    assert!((0..3).all(|i| star.connected(i)));
    star.server.set_trusted(star.clients[trusted].server_conn.unwrap());

    // Reliable 1,000-byte messages whose last fragment never arrives: each is the next in
    // order on its channel, so it is admitted whatever the per-connection budget.
    for i in [trusted, old] {
        star.clients[i].drop_last_fragments = true;
        star.send(i, RELIABLE, &[7; 1000]);
    }
    star.run(Duration::from_millis(200));
    assert_eq!((star.held(trusted), star.held(old)), (1000, 1000));
    assert_eq!(star.server.untrusted_held_bytes(), 1000);

    // A second untrusted holder takes the untrusted connections past their 1,500 bytes: the
    // one that has held memory longer is closed, and told.
    star.clients[new].drop_last_fragments = true;
    star.send(new, RELIABLE, &[8; 1000]);
    star.run(Duration::from_millis(200));
    let old_id = star.clients[old].server_conn.unwrap();
    assert!(
        star.server_events.contains(&(old_id, Some(DisconnectReason::ReassemblyBudget))),
        "{:?}",
        star.server_events
    );
    assert_eq!(star.clients[old].disconnected, Some(DisconnectReason::ClosedByPeer));
    assert!(star.connected(new) && star.connected(trusted));
    assert_eq!(star.server.untrusted_held_bytes(), 1000);
    assert_eq!(star.server.stats().untrusted_evictions, 1);
    assert_eq!(star.held(trusted), 1000);

    // The survivor's message completes once its last piece gets through.
    star.clients[new].drop_last_fragments = false;
    star.run(Duration::from_secs(3));
    assert_eq!(star.held(new), 0);
    assert_eq!(star.server.untrusted_held_bytes(), 0);
}

// ---------------------------------------------------------------------------------------------
// Item 3: connections and handshakes per address and per prefix.

fn limited(limits: AddressLimits) -> EndpointConfig {
    EndpointConfig { max_connections: 1024, address_limits: limits, ..EndpointConfig::default() }
}

#[test]
fn a_flood_of_handshakes_from_one_address_takes_few_slots_and_an_honest_client_still_gets_in() {
    let config = limited(AddressLimits::default());
    let mut star = Star::new(config.clone());
    // 1,100 real handshakes from one address (different ports), all at once.
    for port in 0..1_100u16 {
        star.add(&config, &format!("203.0.113.9:{}", 10_000 + port));
    }
    star.run(Duration::from_secs(3));
    let attacker_slots = star.server.connection_count();
    assert_eq!(attacker_slots, 32, "connections_per_ip");
    let stats = star.server.stats();
    assert!(stats.handshakes_throttled > 0, "{stats:?}");
    assert!(stats.address_limit_rejections > 0, "{stats:?}");
    let rejected = star
        .clients
        .iter()
        .filter(|c| {
            c.disconnected == Some(DisconnectReason::Rejected(RejectReason::TooManyFromAddress))
        })
        .count();
    assert!(rejected > 0);

    // While the flood goes on, an honest client elsewhere connects at once.
    let honest = star.add(&config, "198.51.100.20:4000");
    star.run(Duration::from_millis(100));
    assert!(star.connected(honest));
}

#[test]
fn a_spoofed_flood_of_requests_from_a_victims_prefix_does_not_stop_its_handshake() {
    let config = limited(AddressLimits::default());
    let mut star = Star::new(config.clone());
    // A connect request as a real client sends it, replayed from forged sources: an off-path
    // attacker sends 2,000 a second (far past the burst of 64 and the rate of 20 a second)
    // claiming addresses of the victim's /24. It never sees the challenges.
    let request = {
        let seed = 999;
        let mut e =
            Endpoint::with_deterministic_secrets_for_tests(config.clone(), star.now, seed).unwrap();
        e.connect(star.now, star.server_addr).unwrap();
        let t = e.poll_transmit(star.now, &mut star.buf).unwrap();
        star.buf[..t.len].to_vec()
    };
    let mut forged = 0u32;
    let mut flood = |star: &mut Star, rounds: u32| {
        for _ in 0..rounds {
            for _ in 0..20 {
                let from: SocketAddr =
                    format!("203.0.113.{}:{}", 1 + forged % 254, 1024 + forged % 60_000)
                        .parse()
                        .unwrap();
                let now = star.now;
                star.server.handle_datagram(now, from, &request);
                forged += 1;
            }
            star.round(Duration::from_millis(10));
        }
    };
    flood(&mut star, 100);
    // The victim, in the same /24, connects while the flood goes on.
    let victim = star.add(&config, "203.0.113.77:5000");
    flood(&mut star, 50);
    assert!(star.connected(victim), "{:?}", star.server.stats());
    let stats = star.server.stats();
    assert!(stats.connect_requests > 3_000);
    assert_eq!(stats.handshakes_throttled, 0, "no forged request completed a handshake");
    assert_eq!(star.server.connection_count(), 1);
}

#[test]
fn a_prefix_is_capped_as_a_whole_and_its_handshakes_are_rate_limited() {
    let limits = AddressLimits {
        connections_per_ip: 0,
        connections_per_prefix: 10,
        handshakes_per_second_per_prefix: 5,
        handshake_burst_per_prefix: 5,
        ..AddressLimits::default()
    };
    let config = limited(limits);
    let mut star = Star::new(config.clone());
    // One client per address, 40 addresses of one /24.
    for host in 1..=40 {
        star.add(&config, &format!("203.0.113.{host}:7000"));
    }
    // The first second: the burst of five handshakes, then one per 200 ms (the responses
    // past it are dropped and repeated), so fewer than the cap of ten.
    star.run(Duration::from_millis(990));
    assert!(
        (5..=9).contains(&star.server.connection_count()),
        "{}",
        star.server.connection_count()
    );
    assert!(star.server.stats().handshakes_throttled > 0);
    star.run(Duration::from_secs(4));
    assert_eq!(star.server.connection_count(), 10, "connections_per_prefix");
    // Another /24 is not affected.
    let other = star.add(&config, "203.0.114.1:7000");
    star.run(Duration::from_millis(100));
    assert!(star.connected(other));
}

/// A client whose responses the server drops under its handshake rate asks for a fresh cookie
/// after a few repeats, rather than repeating one that has meanwhile gone stale until its
/// attempts run out.
#[test]
fn a_client_throttled_past_its_cookies_life_asks_for_a_new_one() {
    let limits = AddressLimits {
        connections_per_ip: 0,
        connections_per_prefix: 0,
        handshakes_per_second_per_prefix: 1,
        handshake_burst_per_prefix: 1,
        ..AddressLimits::default()
    };
    let config = EndpointConfig {
        cookie_lifetime: Duration::from_secs(1),
        connect_attempts: 60,
        ..limited(limits)
    };
    let mut star = Star::new(config.clone());
    // Five clients of one /24 at once: one handshake a second, so the last waits about four
    // seconds, far past the one-second life of its first cookie.
    let clients: Vec<usize> =
        (1..=5).map(|host| star.add(&config, &format!("198.51.100.{host}:7000"))).collect();
    star.run(Duration::from_secs(8));
    for &i in &clients {
        assert!(star.connected(i), "client {i} did not connect: {:?}", star.server.stats());
    }
}

#[test]
fn loopback_is_exempt_by_default_and_limits_can_be_turned_off() {
    for (limits, addr) in [
        (AddressLimits::default(), "127.0.0.1"),
        (AddressLimits { exempt_loopback: false, ..AddressLimits::UNLIMITED }, "127.0.0.1"),
        (AddressLimits::UNLIMITED, "203.0.113.9"),
    ] {
        let config = limited(limits);
        let mut star = Star::new(config.clone());
        for port in 0..200u16 {
            star.add(&config, &format!("{addr}:{}", 10_000 + port));
        }
        star.run(Duration::from_millis(500));
        assert_eq!(star.server.connection_count(), 200, "{limits:?} from {addr}");
        assert_eq!(star.server.stats().handshakes_throttled, 0);
    }
}

#[test]
fn a_closed_connection_frees_its_place_under_the_address_limit() {
    let limits = AddressLimits { connections_per_ip: 1, ..AddressLimits::default() };
    let config = limited(limits);
    let mut star = Star::new(config.clone());
    let first = star.add(&config, "203.0.113.9:1000");
    star.run(Duration::from_millis(50));
    assert!(star.connected(first));
    let second = star.add(&config, "203.0.113.9:1001");
    star.run(Duration::from_millis(50));
    assert_eq!(
        star.clients[second].disconnected,
        Some(DisconnectReason::Rejected(RejectReason::TooManyFromAddress))
    );
    let conn = star.clients[first].conn.take().unwrap();
    let now = star.now;
    star.clients[first].endpoint.disconnect(now, conn);
    star.run(Duration::from_millis(200));
    assert_eq!(star.server.connection_count(), 0);
    let third = star.add(&config, "203.0.113.9:1002");
    star.run(Duration::from_millis(50));
    assert!(star.connected(third));
}
