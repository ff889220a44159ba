//! Every QoS keeps its promise under loss, duplication, reordering and jitter, over many seeds.
//!
//! Each run connects a client to a server over netem links (the handshake itself suffers the
//! same impairments), sends numbered messages spaced over time — a few of them fragmented, one
//! of the largest size a fragmented channel allows — and checks what the server delivered
//! against what the channel promises.

#![allow(
    clippy::cast_possible_truncation,
    reason = "test data is made from small numbers; truncation is intended"
)]

use sturnus_testkit::sim;

use std::collections::HashSet;
use std::time::Duration;

use sim::Sim;
use sturnus_netem::LinkConfig;
use sturnus_transport::{ChannelId, EndpointConfig, Qos};

const SEEDS: u64 = 50;
const MESSAGES: u32 = 40;

fn config(qos: Qos) -> EndpointConfig {
    EndpointConfig {
        channels: vec![qos],
        // Small fragments and a modest maximum keep the largest message quick to simulate.
        fragment_size: 500,
        max_fragments: 40,
        max_reassembly_bytes: 500 * 40 * 4,
        ..EndpointConfig::default()
    }
}

fn link(loss: f64) -> LinkConfig {
    LinkConfig {
        latency: Duration::from_millis(20),
        jitter: Duration::from_millis(5),
        loss,
        duplicate: 0.02,
        reorder: 0.05,
        reorder_delay: Duration::from_millis(15),
        ..LinkConfig::perfect()
    }
}

/// The payload of message `i`: its number, then bytes derived from it.
fn payload(qos: Qos, i: u32, max: usize) -> Vec<u8> {
    let len = if !qos.is_fragmented() {
        40
    } else if i == MESSAGES / 2 {
        max
    } else if i % 7 == 3 {
        2_000 + 97 * i as usize
    } else {
        40
    };
    let mut p: Vec<u8> =
        (0..len).map(|k| (k as u32).wrapping_mul(31).wrapping_add(i) as u8).collect();
    p[..4].copy_from_slice(&i.to_le_bytes());
    p
}

/// Runs one scenario; returns the numbers of the messages delivered, in order.
fn run(qos: Qos, loss: f64, seed: u64) -> Vec<u32> {
    let mut sim = Sim::new(link(loss), seed);
    let server = sim.add(config(qos));
    let client = sim.add(config(qos));
    let (conn, _) = sim.connect(client, server);
    let max = config(qos).max_message_size(qos);
    for i in 0..MESSAGES {
        let message = payload(qos, i, max);
        sim.nodes[client].endpoint.send(conn, ChannelId(0), &message).unwrap();
        sim.run_for(Duration::from_millis(5));
    }
    if qos.is_reliable() {
        let expected = if qos.is_state_update() { 1 } else { MESSAGES as usize };
        let all_in = sim.run_until(Duration::from_secs(60), |sim| {
            let got = sim.received(server, ChannelId(0));
            if qos.is_state_update() {
                got.last().is_some_and(|p| p[..4] == (MESSAGES - 1).to_le_bytes())
            } else {
                got.len() >= expected
            }
        });
        assert!(all_in, "{qos} loss {loss} seed {seed}: reliable delivery incomplete");
    } else {
        sim.run_for(Duration::from_secs(2));
    }
    sim.received(server, ChannelId(0))
        .iter()
        .map(|p| {
            let i = u32::from_le_bytes(p[..4].try_into().unwrap());
            assert!(
                *p == payload(qos, i, max),
                "{qos} loss {loss} seed {seed}: message {i} corrupted"
            );
            i
        })
        .collect()
}

fn check(qos: Qos) {
    for loss in [0.0, 0.05, 0.20] {
        for seed in 0..SEEDS {
            let got = run(qos, loss, seed);
            let unique: HashSet<u32> = got.iter().copied().collect();
            let context = format!("{qos} loss {loss} seed {seed}: delivered {got:?}");
            assert_eq!(unique.len(), got.len(), "duplicate delivery; {context}");
            assert!(got.iter().all(|&i| i < MESSAGES), "{context}");
            if qos.is_sequenced() || qos.is_state_update() {
                assert!(got.windows(2).all(|w| w[0] < w[1]), "older after newer; {context}");
            }
            match qos {
                Qos::Reliable | Qos::ReliableFragmented | Qos::AllCostDelivery => {
                    assert_eq!(unique.len(), MESSAGES as usize, "{context}");
                }
                Qos::ReliableSequenced | Qos::ReliableFragmentedSequenced => {
                    assert_eq!(got, (0..MESSAGES).collect::<Vec<_>>(), "{context}");
                }
                Qos::ReliableStateUpdate => {
                    assert_eq!(
                        got.last(),
                        Some(&(MESSAGES - 1)),
                        "the newest state arrives; {context}"
                    );
                }
                _ => {}
            }
        }
    }
}

#[test]
fn unreliable() {
    check(Qos::Unreliable);
}

#[test]
fn unreliable_fragmented() {
    check(Qos::UnreliableFragmented);
}

#[test]
fn unreliable_sequenced() {
    check(Qos::UnreliableSequenced);
}

#[test]
fn unreliable_fragmented_sequenced() {
    check(Qos::UnreliableFragmentedSequenced);
}

#[test]
fn reliable() {
    check(Qos::Reliable);
}

#[test]
fn reliable_fragmented() {
    check(Qos::ReliableFragmented);
}

#[test]
fn reliable_sequenced() {
    check(Qos::ReliableSequenced);
}

#[test]
fn reliable_fragmented_sequenced() {
    check(Qos::ReliableFragmentedSequenced);
}

#[test]
fn state_update() {
    check(Qos::StateUpdate);
}

#[test]
fn reliable_state_update() {
    check(Qos::ReliableStateUpdate);
}

#[test]
fn all_cost_delivery() {
    check(Qos::AllCostDelivery);
}
