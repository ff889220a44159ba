//! Reassembly memory under attack (issue 14, item 2): connections that send partial
//! 1,024-fragment messages and never become trusted can make a server hold only a bounded
//! amount, and once they are gone the server's live heap returns to about where it started.
//!
//! The live heap is counted by a global allocator (one per test binary, hence this file) for
//! the test's own thread, which runs every endpoint on the testkit's `Sim`; time is virtual.
//! What the simulation itself holds is kept out of the difference: the server's events are
//! taken out as they come, the nodes' table is shrunk to the server alone before both
//! measurements, a dropped attacker's links and send filter are freed with it, and no datagram
//! is in flight at either measurement. The net keeps a few dozen bytes of bookkeeping per
//! endpoint it ever had (about 20 KiB for the attackers): that can only make `kept` larger,
//! never hide what the server keeps.

use sturnus_testkit::counting;
use sturnus_testkit::sim;

use std::net::SocketAddr;
use std::time::Duration;

use counting::live_bytes;
use sim::{Owned, Sim, carries_a_last_fragment};
use sturnus_netem::LinkConfig;
use sturnus_transport::{ChannelId, EndpointConfig, Qos};

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

const ATTACKERS: usize = 150;
const RELIABLE: ChannelId = ChannelId(0);
const UNRELIABLE: ChannelId = ChannelId(1);
const SERVER: usize = 0;

fn config() -> EndpointConfig {
    EndpointConfig {
        channels: vec![Qos::ReliableFragmented, Qos::UnreliableFragmented],
        // As the message layer's server: peers are untrusted until they authenticate.
        trust_incoming: false,
        ..EndpointConfig::default()
    }
}

/// Moves the clock `step` on, handling every delivery and timer on the way; the server may
/// report connections and disconnections, but no message can complete. Its events are taken
/// out (and their memory given back), so that they do not count as heap it holds.
fn advance(sim: &mut Sim, step: Duration) {
    let at = sim.now + step;
    sim.advance_to(at);
    let events = std::mem::take(&mut sim.nodes[SERVER].events);
    assert!(!events.iter().any(|e| matches!(e, Owned::Data { .. })), "no message can complete");
}

#[test]
fn after_an_attack_of_partial_messages_the_heap_returns_to_its_level_before() {
    let channels = config().channels;
    let largest = config().max_message_size(Qos::ReliableFragmented);
    assert_eq!(largest, 1024 * 1150);
    let budget = config().untrusted_reassembly_bytes_total;

    // Lossless, instant links: what makes messages partial is the attackers' send filter.
    let mut sim = Sim::new(LinkConfig::perfect(), 1);
    let server_addr: SocketAddr = "10.0.0.1:9000".parse().unwrap();
    assert_eq!(sim.add_at(server_addr, config()), SERVER);
    // Warm the server's tables up with one quick connection, so what is measured is what the
    // attack leaves behind rather than first-use growth.
    {
        let client = sim.add_at("10.200.0.1:1".parse().unwrap(), config());
        let (conn, _) = sim.connect(client, SERVER);
        let now = sim.now;
        sim.nodes[client].endpoint.disconnect(now, conn);
        advance(&mut sim, Duration::from_millis(1));
        assert_eq!(sim.nodes[SERVER].endpoint.connection_count(), 0);
        // The client leaves the net, and the simulation's table of nodes is as small as it
        // will be after the attack.
        sim.truncate(1);
        sim.nodes[SERVER].events = Vec::new();
    }
    let before = live_bytes();

    // Each attacker's conn, and whether it has sent its large message on it, by node index.
    let mut attackers = Vec::new();
    for i in 0..ATTACKERS {
        // Each from its own /24, so the per-address limits are not what stops them.
        let addr: SocketAddr = format!("10.{}.{}.7:4000", 1 + i / 200, i % 200).parse().unwrap();
        let node = sim.add_at(addr, config());
        // A wire that loses every last fragment the attacker sends.
        let channels = channels.clone();
        let keep =
            move |_: SocketAddr, datagram: &[u8]| !carries_a_last_fragment(datagram, &channels);
        sim.net().set_send_filter(addr, Some(Box::new(keep)));
        let now = sim.now;
        let conn = sim.nodes[node].endpoint.connect(now, server_addr).unwrap();
        attackers.push((node, conn, false));
    }
    for _ in 0..4 {
        advance(&mut sim, Duration::from_millis(1));
    }
    assert_eq!(sim.nodes[SERVER].endpoint.connection_count(), ATTACKERS);

    // 100 s of attack: one largest reliable message on each connection, held open for ever
    // by the missing last fragment; and every 10 s a fresh unreliable partial of 200
    // fragments.
    let big = vec![0xA5u8; largest];
    let medium = vec![0x5Au8; 200 * 1150];
    let mut peak_held = 0;
    for round in 0..2_000u32 {
        for (node, conn, sent) in &mut attackers {
            let attacker = &mut sim.nodes[*node].endpoint;
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
        advance(&mut sim, Duration::from_millis(50));
        let held = sim.nodes[SERVER].endpoint.untrusted_held_bytes();
        assert!(held <= budget, "{held} bytes held, past the untrusted budget of {budget}");
        peak_held = peak_held.max(held);
    }
    assert!(peak_held > budget - largest, "the attack did fill the budget: {peak_held} bytes");
    let stats = sim.nodes[SERVER].endpoint.stats();
    assert!(stats.untrusted_evictions > 0, "{stats:?}");
    eprintln!("{stats:?}");

    // The attack ends: the attackers vanish (with their links and filters), and the server
    // times their connections out.
    sim.truncate(1);
    drop((attackers, big, medium));
    for _ in 0..300 {
        advance(&mut sim, Duration::from_millis(50));
    }
    let server = &sim.nodes[SERVER].endpoint;
    assert_eq!(server.connection_count(), 0);
    assert_eq!(server.untrusted_held_bytes(), 0);
    let after = live_bytes();
    let kept = after - before;
    eprintln!("live heap: {before} bytes before the attack, {after} after it");
    assert!(
        kept < 512 * 1024,
        "the server kept {kept} bytes after the attack ({before} before, {after} after)"
    );
}
