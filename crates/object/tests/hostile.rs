//! Hostile clients: random object-layer messages never panic the server, never run a command
//! on an object the sender does not own, and are charged to the sender's error budget.

mod common;

use common::tank::{TANK, Tank};
use common::{Game, Path, forge};
use proptest::prelude::*;
use sturnus_message::{DisconnectReason, ServerConfig, ServerEvent};
use sturnus_object::{NetId, RpcId, SyncField, wire};

/// One forged command: ids near the real ones (so some name real objects, behaviours and
/// RPCs) and arguments that are sometimes valid.
fn forged() -> impl Strategy<Value = (wire::Command, Vec<u8>)> {
    let net_id = prop_oneof![0u32..4, any::<u32>()].prop_map(NetId);
    let rpc = prop_oneof![
        Just(RpcId::of_name("fire")),
        Just(RpcId::of_name("poke")),
        Just(RpcId::of_name("explode")),
        Just(RpcId::of_name("hit_marker")),
        any::<u16>().prop_map(RpcId),
    ];
    let args = prop_oneof![
        Just(Vec::new()),
        Just(postcard::to_allocvec(&(1i32, 2i32)).unwrap()),
        prop::collection::vec(any::<u8>(), 0..24),
    ];
    (net_id, prop_oneof![Just(0u8), any::<u8>()], rpc, args)
        .prop_map(|(net_id, behaviour, rpc, args)| (wire::Command { net_id, behaviour, rpc }, args))
}

fn game(budget: u32) -> Game {
    let config = ServerConfig { error_budget: budget, rate_limit: None, ..ServerConfig::default() };
    let mut game = Game::with_server_config(Path::Local, config);
    for _ in 0..2 {
        game.add_client(|c| c.register_prefab(TANK, Tank::default));
    }
    game.join_all();
    game
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn forged_commands_never_act_on_what_the_sender_does_not_own(
        commands in prop::collection::vec(forged(), 1..200),
    ) {
        let mut game = game(u32::MAX);
        let (owner, attacker) = (game.player(0), game.player(1));
        let mine = game.server.spawn(TANK, Tank::new(100, "owner's"), Some(owner)).unwrap();
        let free = game.server.spawn(TANK, Tank::new(50, "nobody's"), None).unwrap();
        prop_assert!(game.run_until(|g| g.clients.iter().all(|c| c.object_count() == 2)));

        for (command, args) in &commands {
            forge(&mut game.clients[1], command, args).unwrap();
        }
        let arrived = commands.len() as u64;
        let handled = game.run_until(|g| {
            let stats = g.server.stats();
            stats.commands_run + stats.rejected() == arrived
        });
        prop_assert!(handled, "{:?}", game.server.stats());

        // Only commands that need no authority ran, and only on objects the attacker sees.
        for id in [mine, free] {
            let tank = game.server.get::<Tank>(id).unwrap();
            prop_assert!(tank.fired.is_empty());
            prop_assert!(tank.pokes.iter().all(|p| *p == attacker));
            prop_assert!(!tank.health.is_dirty());
        }
        prop_assert_eq!(*game.server.get::<Tank>(mine).unwrap().health, 100);
        let ran = game.server.stats().commands_run;
        let pokes: usize = [mine, free]
            .iter()
            .map(|id| game.server.get::<Tank>(*id).unwrap().pokes.len())
            .sum();
        prop_assert_eq!(ran, pokes as u64);
        // Every rejection was charged to the attacker, none to the owner.
        let charged = game.server.server().player_stats(attacker).unwrap().dropped_rejected;
        prop_assert_eq!(charged, game.server.stats().rejected());
        prop_assert_eq!(game.server.server().player_stats(owner).unwrap().dropped_rejected, 0);
    }
}

#[test]
fn past_the_error_budget_a_forging_client_is_disconnected() {
    let mut game = game(5);
    let (owner, attacker) = (game.player(0), game.player(1));
    let id = game.server.spawn(TANK, Tank::new(100, "owner's"), Some(owner)).unwrap();
    assert!(game.run_until(|g| g.clients.iter().all(|c| c.object_count() == 1)));
    let fire = wire::Command { net_id: id, behaviour: 0, rpc: RpcId::of_name("fire") };
    let args = postcard::to_allocvec(&(1i32, 1i32)).unwrap();
    let mut left = None;
    let gone = game.run_until(|g| {
        let _ = forge(&mut g.clients[1], &fire, &args);
        while let Some(event) = g.server.poll_event() {
            if let ServerEvent::Disconnected(who, why) = event {
                left = Some((who, why));
            }
        }
        left.is_some()
    });
    assert!(gone, "never disconnected");
    assert_eq!(left, Some((attacker, DisconnectReason::ErrorBudget)));
    assert!(game.server.get::<Tank>(id).unwrap().fired.is_empty());
    // The owner is still served.
    assert!(game.server.server_mut().player(owner).is_some());
}
