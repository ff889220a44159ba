//! Hostile clients: random bytes and bad message sequences never panic the server, never reach
//! a handler undecoded, cost the sender its connection past the error budget, and leave other
//! players alone.

mod common;

use std::sync::Arc;

use common::{Path, Raw, World, auth_request, default_channel, frame, server_config};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sturnus_message::{
    DisconnectReason, Message, MessageId, Player, PlayerId, PlayerStats, Qos, RateLimit,
    ServerConfig, ServerEvent,
};
use sturnus_netem::Rng;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
struct Checked {
    a: u32,
    b: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
struct Ping(u32);

const RELIABLE: [Qos; 4] = [
    Qos::Reliable,
    Qos::ReliableSequenced,
    Qos::ReliableFragmented,
    Qos::ReliableFragmentedSequenced,
];

/// The layer's own channel in the default layout.
fn control() -> sturnus_message::ChannelId {
    default_channel(Qos::ReliableFragmentedSequenced)
}

fn random_bytes(rng: &mut Rng, max_len: u64) -> Vec<u8> {
    let len = rng.below(max_len + 1);
    (0..len).map(|_| rng.next_u64().to_le_bytes()[0]).collect()
}

/// One attacker message: random bytes, a valid id with random bytes, or a valid message.
fn hostile(rng: &mut Rng, n: u32) -> Vec<u8> {
    match rng.below(3) {
        0 => random_bytes(rng, 64),
        1 => {
            let mut bytes = Checked::ID.0.to_le_bytes().to_vec();
            bytes.extend(random_bytes(rng, 24));
            bytes
        }
        _ => frame(Checked::ID, &Checked { a: n, b: "ok".into() }),
    }
}

/// What the server would make of `bytes` if it reached the `Checked` handler: `Some` only for
/// exactly one whole `Checked`.
fn strictly_checked(bytes: &[u8]) -> Option<Checked> {
    let body = bytes.strip_prefix(&Checked::ID.0.to_le_bytes()[..])?;
    match postcard::take_from_bytes::<Checked>(body) {
        Ok((value, [])) => Some(value),
        _ => None,
    }
}

/// A world with a `Checked` recorder, a `Ping` echo, a good client and an authenticated
/// attacker.
struct Arena {
    world: World,
    handled: Arc<Mutex<Vec<(PlayerId, Checked)>>>,
    pongs: Arc<Mutex<Vec<u32>>>,
    raw: Raw,
}

impl Arena {
    fn new(config: ServerConfig, authenticate: bool) -> Arena {
        let handled: Arc<Mutex<Vec<(PlayerId, Checked)>>> = Arc::default();
        let log = Arc::clone(&handled);
        let path = Path::Memory;
        let mut world = World::new(path, config, |server| {
            server
                .register_handler(move |mut player: Player<'_>, msg: Checked| {
                    // A value the application refuses: counted against the budget.
                    if msg.a == u32::MAX {
                        let id = player.id();
                        player.server().reject(id);
                    } else {
                        log.lock().push((player.id(), msg));
                    }
                })
                .unwrap();
            server
                .register_handler(|mut player: Player<'_>, ping: Ping| {
                    player.send(&ping).unwrap();
                })
                .unwrap();
        });
        let pongs: Arc<Mutex<Vec<u32>>> = Arc::default();
        let seen = Arc::clone(&pongs);
        world.add_client(None::<&()>, |client| {
            client.register_handler(move |_, Ping(n)| seen.lock().push(n)).unwrap();
        });
        world.authenticate_all();
        let mut raw = Raw::connect(&world);
        assert!(world.run_until(|w| {
            raw.pump(w.now());
            raw.connected
        }));
        if authenticate {
            raw.send(control(), &auth_request(&()));
            let ok = world.run_until(|w| {
                raw.pump(w.now());
                w.log.server.iter().filter(|e| matches!(e, ServerEvent::Authenticated(_))).count()
                    == 2
            });
            assert!(ok);
        }
        Arena { world, handled, pongs, raw }
    }

    fn attacker(&self) -> PlayerId {
        let good = self.good();
        self.world
            .log
            .server
            .iter()
            .find_map(|e| match e {
                ServerEvent::Connected(p) if *p != good => Some(*p),
                _ => None,
            })
            .unwrap()
    }

    fn good(&self) -> PlayerId {
        PlayerId(1)
    }

    /// Steps the world and the attacker until `done` holds.
    fn run_until(&mut self, mut done: impl FnMut(&mut World) -> bool) -> bool {
        let raw = &mut self.raw;
        self.world.run_until(|w| {
            raw.pump(w.now());
            done(w)
        })
    }

    /// Steps until `player` has left; false if it never does.
    fn run_until_gone(&mut self, player: PlayerId) -> bool {
        self.run_until(|w| w.gone(player))
    }

    /// The good client still gets answers.
    fn assert_good_client_served(&mut self, n: u32) {
        self.world.clients[0].send(&Ping(n)).unwrap();
        let pongs = Arc::clone(&self.pongs);
        assert!(self.world.run_until(|_| pongs.lock().contains(&n)), "the good client starved");
        let stats = self.world.server.player_stats(self.good()).unwrap();
        assert_eq!(stats.dropped(), 0, "{stats:?}");
    }

    fn disconnected_for(&self, id: PlayerId) -> Option<DisconnectReason> {
        self.world.log.server.iter().find_map(|e| match e {
            ServerEvent::Disconnected(p, reason) if *p == id => Some(reason.clone()),
            _ => None,
        })
    }
}

/// With a budget that never runs out, exactly the messages that decode whole reach the
/// handler, and every other one is counted as dropped.
#[test]
fn random_input_never_reaches_handlers_undecoded() {
    for seed in 0..16 {
        let config = ServerConfig { error_budget: u32::MAX, rate_limit: None, ..server_config() };
        let mut arena = Arena::new(config, true);
        let attacker = arena.attacker();
        let mut rng = Rng::new(seed);
        let mut expected = Vec::new();
        for n in 0..300 {
            let bytes = hostile(&mut rng, n);
            expected.extend(strictly_checked(&bytes));
            let qos = RELIABLE[usize::try_from(rng.below(4)).unwrap()];
            arena.raw.send(default_channel(qos), &bytes);
            if n % 50 == 0 {
                arena.world.step();
                arena.raw.pump(arena.world.now());
            }
        }
        let received = |w: &World| w.server.player_stats(attacker).map(|s| s.messages_received);
        let raw = &mut arena.raw;
        assert!(arena.world.run_until(|w| {
            raw.pump(w.now());
            received(w) == Some(301)
        }));
        let mut handled: Vec<Checked> = arena
            .handled
            .lock()
            .iter()
            .map(|(p, m)| (*p == attacker).then_some(m.clone()))
            .collect::<Option<_>>()
            .unwrap();
        // Unordered reliable channels may reorder; compare as sets.
        handled.sort_by_key(|m| (m.a, m.b.clone()));
        expected.sort_by_key(|m| (m.a, m.b.clone()));
        assert_eq!(handled, expected, "seed {seed}");
        let stats = arena.world.server.player_stats(attacker).unwrap();
        assert_eq!(stats.messages_handled, 1 + expected.len() as u64, "seed {seed}: {stats:?}");
        assert_eq!(stats.dropped(), 300 - expected.len() as u64, "seed {seed}: {stats:?}");
        arena.assert_good_client_served(u32::try_from(seed).unwrap());
    }
}

/// Past the budget, the attacker is sent away; the other player keeps playing.
#[test]
fn random_input_costs_the_connection() {
    for seed in 0..8 {
        let config = ServerConfig {
            error_budget: 20,
            kick_linger: std::time::Duration::from_millis(100),
            ..server_config()
        };
        let mut arena = Arena::new(config, true);
        let attacker = arena.attacker();
        let mut rng = Rng::new(seed);
        for n in 0..300 {
            let bytes = random_bytes(&mut rng, 40);
            let qos = RELIABLE[usize::try_from(rng.below(4)).unwrap()];
            arena.raw.send(default_channel(qos), &bytes);
            if n % 100 == 0 {
                arena.world.step();
                arena.raw.pump(arena.world.now());
            }
        }
        let ok = arena.run_until_gone(attacker);
        assert!(ok, "seed {seed}: the attacker was never disconnected");
        assert_eq!(arena.disconnected_for(attacker), Some(DisconnectReason::ErrorBudget));
        arena.assert_good_client_served(7);
        // The attacker is told, then its connection closes.
        let raw = &mut arena.raw;
        assert!(arena.world.run_until(|w| {
            raw.pump(w.now());
            raw.closed.is_some()
        }));
    }
}

/// Each kind of bad input is counted under its own name, and one more than the budget
/// disconnects.
#[test]
fn each_kind_of_bad_input_is_counted_and_budgeted() {
    let budget = 5;
    let valid = frame(Checked::ID, &Checked { a: 1, b: "x".into() });
    type Case = (&'static str, bool, fn(&PlayerStats) -> u64);
    let cases: [Case; 7] = [
        ("unknown id", true, |s| s.dropped_unknown),
        ("undecodable", true, |s| s.dropped_undecodable),
        ("too short", true, |s| s.dropped_undecodable),
        ("oversized", true, |s| s.dropped_oversized),
        ("over the rate", true, |s| s.dropped_rate_limited),
        ("unauthenticated", false, |s| s.dropped_unauthenticated),
        ("rejected by the handler", true, |s| s.dropped_rejected),
    ];
    for (index, (name, authenticate, counter)) in cases.into_iter().enumerate() {
        let config = ServerConfig {
            error_budget: budget,
            max_message_size: 256,
            rate_limit: Some(RateLimit { per_second: 0.001, burst: 10.0 }),
            ..server_config()
        };
        let mut arena = Arena::new(config, authenticate);
        let attacker = arena.attacker();
        let bad: Vec<u8> = match name {
            "unknown id" => frame(MessageId(0x0001), &0u8),
            "undecodable" => [&Checked::ID.0.to_le_bytes()[..], &[0xff, 0xff, 0xff]].concat(),
            "too short" => vec![7],
            "oversized" => frame(Checked::ID, &Checked { a: 1, b: "x".repeat(300) }),
            "rejected by the handler" => {
                frame(Checked::ID, &Checked { a: u32::MAX, b: "x".into() })
            }
            _ => valid.clone(),
        };
        // Over the rate: the burst of 10 covers the credentials and 9 valid messages.
        let prefix = if name == "over the rate" { 9 } else { 0 };
        for _ in 0..prefix {
            arena.raw.send(control(), &valid);
        }
        for _ in 0..budget {
            arena.raw.send(control(), &bad);
        }
        let handled = Arc::clone(&arena.handled);
        let handled_count = move || handled.lock().iter().filter(|(p, _)| *p == attacker).count();
        let counted = arena.run_until(|w| {
            w.server.player_stats(attacker).is_some_and(|s| counter(&s) == u64::from(budget))
                && handled_count() == prefix
        });
        let stats = arena.world.server.player_stats(attacker);
        assert!(counted, "{name}: {stats:?}");
        assert_eq!(stats.unwrap().dropped(), u64::from(budget), "{name}: counted elsewhere too");
        // One more is one too many.
        arena.raw.send(control(), &bad);
        let ok = arena.run_until_gone(attacker);
        assert!(ok, "{name}: not disconnected");
        assert_eq!(arena.disconnected_for(attacker), Some(DisconnectReason::ErrorBudget), "{name}");
        assert_eq!(handled_count(), prefix, "{name}");
        arena.assert_good_client_served(u32::try_from(index).unwrap());
    }
}

/// `handle_raw` lets its caller inject a message as any player, past the transport and
/// authentication: it exists only behind the `fuzzing` feature, which is off by default (the
/// fuzz crate turns it on).
#[test]
fn the_raw_injection_entry_points_exist_only_with_the_fuzzing_feature() {
    for (file, source) in [
        ("server.rs", include_str!("../src/server.rs")),
        ("client.rs", include_str!("../src/client.rs")),
    ] {
        let at = source.find("pub fn handle_raw(").unwrap_or_else(|| panic!("{file}"));
        // The attributes right above it.
        let before = &source[..at];
        let item_start = before.rfind("///").map_or(0, |i| i);
        let attributes = &before[item_start..];
        assert!(
            attributes.contains("#[cfg(feature = \"fuzzing\")]"),
            "{file}: handle_raw is not behind the fuzzing feature:\n{attributes}"
        );
        assert_eq!(source.matches("pub fn handle_raw(").count(), 1, "{file}");
    }
    let manifest = include_str!("../Cargo.toml");
    assert!(manifest.contains("\nfuzzing = []"), "the feature adds nothing else");
    let default = manifest.lines().find(|l| l.trim_start().starts_with("default"));
    assert!(default.is_none_or(|l| !l.contains("fuzzing")), "{default:?}");
    assert!(include_str!("../../../fuzz/Cargo.toml").contains("features = [\"fuzzing\"]"));
}
