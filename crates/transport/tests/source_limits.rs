//! What one source may take of a server (issue 14, items 2 and 3): reassembly memory of
//! untrusted connections, and connections and handshakes per address and per prefix.

use sturnus_testkit::sim;

use std::net::SocketAddr;
use std::time::Duration;

use sim::{Owned, Sim, carries_a_last_fragment};
use sturnus_netem::LinkConfig;
use sturnus_transport::{
    AddressLimits, ChannelId, ConnectionId, DisconnectReason, EndpointConfig, Qos, RejectReason,
};

const SERVER: usize = 0;

/// A server and clients at chosen addresses on the testkit's `Sim`, over lossless, instant
/// links; a client's wire may drop the packets that carry the last fragment of a message (so
/// messages stay partial).
struct Star {
    sim: Sim,
    server_addr: SocketAddr,
    channels: Vec<Qos>,
    /// By node: the client's connection.
    conns: Vec<Option<ConnectionId>>,
    /// By node: the server's id of this client's connection, once accepted.
    server_conns: Vec<Option<ConnectionId>>,
    /// Events the server reported: connections and disconnections.
    server_events: Vec<(ConnectionId, Option<DisconnectReason>)>,
}

impl Star {
    fn new(config: EndpointConfig) -> Self {
        let mut sim = Sim::new(LinkConfig::perfect(), 1);
        let server_addr = "192.0.2.1:9000".parse().unwrap();
        let channels = config.channels.clone();
        assert_eq!(sim.add_at(server_addr, config), SERVER);
        Self {
            sim,
            server_addr,
            channels,
            conns: vec![None],
            server_conns: vec![None],
            server_events: Vec::new(),
        }
    }

    /// A client at `addr` that starts connecting; returns its index.
    fn add(&mut self, config: &EndpointConfig, addr: &str) -> usize {
        let i = self.sim.add_at(addr.parse().unwrap(), config.clone());
        let now = self.sim.now;
        let conn = self.sim.nodes[i].endpoint.connect(now, self.server_addr).unwrap();
        self.conns.push(Some(conn));
        self.server_conns.push(None);
        i
    }

    fn server(&mut self) -> &mut sturnus_transport::Endpoint {
        &mut self.sim.nodes[SERVER].endpoint
    }

    fn drop_last_fragments(&mut self, i: usize, drop: bool) {
        let channels = self.channels.clone();
        let keep =
            move |_: SocketAddr, datagram: &[u8]| !carries_a_last_fragment(datagram, &channels);
        let filter: Option<sturnus_testkit::SendFilter> = drop.then(|| Box::new(keep) as _);
        self.sim.net().set_send_filter(self.sim.addr(i), filter);
    }

    /// Runs in steps of 10 ms, noting after each which client each new server connection is.
    fn run(&mut self, duration: Duration) {
        let step = Duration::from_millis(10);
        let rounds = duration.as_millis() / step.as_millis();
        for _ in 0..rounds {
            let at = self.sim.now + step;
            self.sim.advance_to(at);
            for event in std::mem::take(&mut self.sim.nodes[SERVER].events) {
                match event {
                    Owned::Connected(id) => {
                        let addr = self.server().remote_address(id).unwrap();
                        if let Some(c) = self.sim.nodes.iter().position(|n| n.addr == addr) {
                            self.server_conns[c] = Some(id);
                        }
                        self.server_events.push((id, None));
                    }
                    Owned::Disconnected { conn, reason } => {
                        self.server_events.push((conn, Some(reason)));
                    }
                    Owned::Data { .. } => {}
                }
            }
        }
    }

    fn connected(&self, i: usize) -> bool {
        self.conns[i].is_some_and(|c| self.sim.nodes[i].endpoint.is_connected(c))
    }

    /// Why client `i`'s connection closed, if it did.
    fn disconnected(&self, i: usize) -> Option<DisconnectReason> {
        self.sim.nodes[i].events.iter().find_map(|e| match e {
            Owned::Disconnected { reason, .. } => Some(*reason),
            _ => None,
        })
    }

    fn send(&mut self, i: usize, channel: ChannelId, payload: &[u8]) {
        let conn = self.conns[i].unwrap();
        self.sim.nodes[i].endpoint.send(conn, channel, payload).unwrap();
    }

    fn held(&mut self, i: usize) -> usize {
        let id = self.server_conns[i].unwrap();
        self.server().connection_stats(id).map_or(0, |s| s.held_bytes)
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
    let id = star.server_conns[c].unwrap();
    assert!(!star.server().is_trusted(id));
    assert!(star.sim.nodes[c].endpoint.is_trusted(star.conns[c].unwrap()), "ours: trusted");

    // 500 bytes of unreliable partial message is past the untrusted budget of 300: dropped.
    star.drop_last_fragments(c, true);
    star.send(c, UNRELIABLE, &[1; 500]);
    star.run(Duration::from_millis(50));
    assert_eq!(star.held(c), 0);
    assert!(star.server().connection_stats(id).unwrap().dropped_by_qos >= 1);

    // Trusted, it may hold up to max_reassembly_bytes.
    assert!(star.server().set_trusted(id));
    assert!(star.server().is_trusted(id));
    star.send(c, UNRELIABLE, &[2; 500]);
    star.run(Duration::from_millis(50));
    assert_eq!(star.held(c), 500, "five fragments of room");
    assert_eq!(star.server().untrusted_held_bytes(), 0, "a trusted connection is not counted");
}

#[test]
fn past_the_untrusted_budget_the_longest_holder_is_closed_and_trusted_peers_are_spared() {
    let config = fragmented();
    let mut star = Star::new(config.clone());
    let trusted = star.add(&config, "198.51.100.1:5000");
    let old = star.add(&config, "198.51.100.2:5000");
    let new = star.add(&config, "198.51.100.3:5000");
    star.run(Duration::from_millis(50));
    assert!([trusted, old, new].iter().all(|&i| star.connected(i)));
    let trusted_id = star.server_conns[trusted].unwrap();
    star.server().set_trusted(trusted_id);

    // Reliable 1,000-byte messages whose last fragment never arrives: each is the next in
    // order on its channel, so it is admitted whatever the per-connection budget.
    for i in [trusted, old] {
        star.drop_last_fragments(i, true);
        star.send(i, RELIABLE, &[7; 1000]);
    }
    star.run(Duration::from_millis(200));
    assert_eq!((star.held(trusted), star.held(old)), (1000, 1000));
    assert_eq!(star.server().untrusted_held_bytes(), 1000);

    // A second untrusted holder takes the untrusted connections past their 1,500 bytes: the
    // one that has held memory longer is closed, and told.
    star.drop_last_fragments(new, true);
    star.send(new, RELIABLE, &[8; 1000]);
    star.run(Duration::from_millis(200));
    let old_id = star.server_conns[old].unwrap();
    assert!(
        star.server_events.contains(&(old_id, Some(DisconnectReason::ReassemblyBudget))),
        "{:?}",
        star.server_events
    );
    assert_eq!(star.disconnected(old), Some(DisconnectReason::ClosedByPeer));
    assert!(star.connected(new) && star.connected(trusted));
    assert_eq!(star.server().untrusted_held_bytes(), 1000);
    assert_eq!(star.server().stats().untrusted_evictions, 1);
    assert_eq!(star.held(trusted), 1000);

    // The survivor's message completes once its last piece gets through.
    star.drop_last_fragments(new, false);
    star.run(Duration::from_secs(3));
    assert_eq!(star.held(new), 0);
    assert_eq!(star.server().untrusted_held_bytes(), 0);
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
    let attacker_slots = star.server().connection_count();
    assert_eq!(attacker_slots, 32, "connections_per_ip");
    let stats = star.server().stats();
    assert!(stats.handshakes_throttled > 0, "{stats:?}");
    assert!(stats.address_limit_rejections > 0, "{stats:?}");
    let rejected = (1..star.sim.nodes.len())
        .filter(|&i| {
            star.disconnected(i)
                == Some(DisconnectReason::Rejected(RejectReason::TooManyFromAddress))
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
        let mut forge = Sim::new(LinkConfig::perfect(), 999);
        let client = forge.add(config.clone());
        let now = forge.now;
        forge.nodes[client].endpoint.connect(now, star.server_addr).unwrap();
        forge.capture(client).swap_remove(0).1
    };
    let mut forged = 0u32;
    let mut flood = |star: &mut Star, rounds: u32| {
        for _ in 0..rounds {
            for _ in 0..20 {
                let from: SocketAddr =
                    format!("203.0.113.{}:{}", 1 + forged % 254, 1024 + forged % 60_000)
                        .parse()
                        .unwrap();
                let now = star.sim.now;
                star.server().handle_datagram(now, from, &request);
                forged += 1;
            }
            star.run(Duration::from_millis(10));
        }
    };
    flood(&mut star, 100);
    // The victim, in the same /24, connects while the flood goes on.
    let victim = star.add(&config, "203.0.113.77:5000");
    flood(&mut star, 50);
    assert!(star.connected(victim), "{:?}", star.server().stats());
    let stats = star.server().stats();
    assert!(stats.connect_requests > 3_000);
    assert_eq!(stats.handshakes_throttled, 0, "no forged request completed a handshake");
    assert_eq!(star.server().connection_count(), 1);
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
        (5..=9).contains(&star.server().connection_count()),
        "{}",
        star.server().connection_count()
    );
    assert!(star.server().stats().handshakes_throttled > 0);
    star.run(Duration::from_secs(4));
    assert_eq!(star.server().connection_count(), 10, "connections_per_prefix");
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
    // Retries back off to one every 2 s at most: allow for the last client's waits.
    star.run(Duration::from_secs(16));
    for &i in &clients {
        assert!(star.connected(i), "client {i} did not connect: {:?}", star.server().stats());
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
        assert_eq!(star.server().connection_count(), 200, "{limits:?} from {addr}");
        assert_eq!(star.server().stats().handshakes_throttled, 0);
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
        star.disconnected(second),
        Some(DisconnectReason::Rejected(RejectReason::TooManyFromAddress))
    );
    let conn = star.conns[first].take().unwrap();
    let now = star.sim.now;
    star.sim.nodes[first].endpoint.disconnect(now, conn);
    star.run(Duration::from_millis(200));
    assert_eq!(star.server().connection_count(), 0);
    let third = star.add(&config, "203.0.113.9:1002");
    star.run(Duration::from_millis(50));
    assert!(star.connected(third));
}
