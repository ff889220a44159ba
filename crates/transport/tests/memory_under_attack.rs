//! Reassembly memory under attack (issue 14, item 2): connections that send partial
//! 1,024-fragment messages and never become trusted can make a server hold only a bounded
//! amount, and once they are gone the server's live heap returns to about where it started.
//!
//! The live heap is counted by a global allocator (one per test binary, hence this file) for
//! the test's own thread, which runs every endpoint; time is virtual.

use sturnus_testkit::counting;
use sturnus_testkit::sim;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use counting::live_bytes;
use sim::carries_a_last_fragment;
use sturnus_transport::{ChannelId, ConnectionId, Endpoint, EndpointConfig, Event, Qos};

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

#[expect(clippy::disallowed_methods, reason = "a starting instant for the virtual clock")]
fn start() -> Instant {
    Instant::now()
}

const ATTACKERS: usize = 150;
const RELIABLE: ChannelId = ChannelId(0);
const UNRELIABLE: ChannelId = ChannelId(1);

fn config() -> EndpointConfig {
    EndpointConfig {
        channels: vec![Qos::ReliableFragmented, Qos::UnreliableFragmented],
        // As the message layer's server: peers are untrusted until they authenticate.
        trust_incoming: false,
        ..EndpointConfig::default()
    }
}

fn endpoint(seed: u64, now: Instant) -> Endpoint {
    Endpoint::with_deterministic_secrets_for_tests(config(), now, seed).unwrap()
}

/// The server and the attackers on one lossless wire that loses every last fragment.
struct Attack {
    now: Instant,
    server: Endpoint,
    server_addr: SocketAddr,
    /// Each attacker, its address, its connection and whether it has sent its large message
    /// on it.
    attackers: Vec<(Endpoint, SocketAddr, ConnectionId, bool)>,
    by_addr: HashMap<SocketAddr, usize>,
    buf: Vec<u8>,
    channels: Vec<Qos>,
}

impl Attack {
    /// Moves every datagram, drains every event and runs due timers, `step` on.
    fn round(&mut self, step: Duration) {
        self.now += step;
        let now = self.now;
        for (attacker, addr, ..) in &mut self.attackers {
            attacker.handle_timeout(now);
            while let Some(t) = attacker.poll_transmit(now, &mut self.buf) {
                let datagram = &self.buf[..t.len];
                if !carries_a_last_fragment(datagram, &self.channels) {
                    self.server.handle_datagram(now, *addr, datagram);
                }
            }
            while attacker.poll_event().is_some() {}
        }
        self.server.handle_timeout(now);
        while let Some(t) = self.server.poll_transmit(now, &mut self.buf) {
            if let Some(&i) = self.by_addr.get(&t.destination) {
                let (attacker, ..) = &mut self.attackers[i];
                attacker.handle_datagram(now, self.server_addr, &self.buf[..t.len]);
            }
        }
        while let Some(event) = self.server.poll_event() {
            assert!(!matches!(event, Event::Data { .. }), "no message can complete");
        }
    }
}

#[test]
fn after_an_attack_of_partial_messages_the_heap_returns_to_its_level_before() {
    let channels = config().channels;
    let largest = config().max_message_size(Qos::ReliableFragmented);
    assert_eq!(largest, 1024 * 1150);
    let budget = config().untrusted_reassembly_bytes_total;

    let now = start();
    let mut server = endpoint(1, now);
    let server_addr: SocketAddr = "10.0.0.1:9000".parse().unwrap();
    // Warm the server's tables up with one quick connection, so what is measured is what the
    // attack leaves behind rather than first-use growth.
    let mut buf = vec![0u8; 1500];
    {
        let mut client = endpoint(2, now);
        let addr: SocketAddr = "10.200.0.1:1".parse().unwrap();
        let conn = client.connect(now, server_addr).unwrap();
        for _ in 0..4 {
            while let Some(t) = client.poll_transmit(now, &mut buf) {
                server.handle_datagram(now, addr, &buf[..t.len]);
            }
            while let Some(t) = server.poll_transmit(now, &mut buf) {
                client.handle_datagram(now, server_addr, &buf[..t.len]);
            }
        }
        assert!(client.is_connected(conn));
        client.disconnect(now, conn);
        while let Some(t) = client.poll_transmit(now, &mut buf) {
            server.handle_datagram(now, addr, &buf[..t.len]);
        }
        while server.poll_event().is_some() {}
        while server.poll_transmit(now, &mut buf).is_some() {}
        assert_eq!(server.connection_count(), 0);
    }
    let before = live_bytes();

    let mut attack = Attack {
        now,
        server,
        server_addr,
        attackers: Vec::new(),
        by_addr: HashMap::new(),
        buf,
        channels,
    };
    for i in 0..ATTACKERS {
        // Each from its own /24, so the per-address limits are not what stops them.
        let addr: SocketAddr = format!("10.{}.{}.7:4000", 1 + i / 200, i % 200).parse().unwrap();
        let mut attacker = endpoint(100 + i as u64, now);
        let conn = attacker.connect(now, server_addr).unwrap();
        attack.by_addr.insert(addr, i);
        attack.attackers.push((attacker, addr, conn, false));
    }
    for _ in 0..4 {
        attack.round(Duration::from_millis(1));
    }
    assert_eq!(attack.server.connection_count(), ATTACKERS);

    // 100 s of attack: one largest reliable message on each connection, held open for ever
    // by the missing last fragment; and every 10 s a fresh unreliable partial of 200
    // fragments.
    let big = vec![0xA5u8; largest];
    let medium = vec![0x5Au8; 200 * 1150];
    let mut peak_held = 0;
    for round in 0..2_000u32 {
        for (attacker, _, conn, sent) in &mut attack.attackers {
            if !attacker.is_connected(*conn) {
                continue;
            }
            if !*sent {
                attacker.send(*conn, RELIABLE, &big).unwrap();
                *sent = true;
            }
            if round % 200 == 0 {
                attacker.send(*conn, UNRELIABLE, &medium).unwrap();
            }
        }
        attack.round(Duration::from_millis(50));
        let held = attack.server.untrusted_held_bytes();
        assert!(held <= budget, "{held} bytes held, past the untrusted budget of {budget}");
        peak_held = peak_held.max(held);
    }
    assert!(peak_held > budget - largest, "the attack did fill the budget: {peak_held} bytes");
    let stats = attack.server.stats();
    assert!(stats.untrusted_evictions > 0, "{stats:?}");
    eprintln!("{stats:?}");

    // The attack ends: the attackers vanish, and the server times their connections out.
    let Attack { mut now, mut server, mut buf, attackers, by_addr, .. } = attack;
    drop((attackers, by_addr, big, medium));
    for _ in 0..300 {
        now += Duration::from_millis(50);
        server.handle_timeout(now);
        while server.poll_transmit(now, &mut buf).is_some() {}
        while server.poll_event().is_some() {}
    }
    assert_eq!(server.connection_count(), 0);
    assert_eq!(server.untrusted_held_bytes(), 0);
    drop(buf);
    let after = live_bytes();
    let kept = after - before;
    eprintln!("live heap: {before} bytes before the attack, {after} after it");
    assert!(
        kept < 512 * 1024,
        "the server kept {kept} bytes after the attack ({before} before, {after} after)"
    );
    drop(server);
}
