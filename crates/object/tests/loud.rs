//! Loud failures: what cannot work is an error or an event at once, naming what the game
//! wrote (the prefab, the RPC), never a silent drop or an internal wire type.

mod common;

use common::tank::{TANK, Tank};
use common::{Game, object_channel, paths};
use sturnus_object::{
    ClientCtx, ClientObjectEvent, NetId, NetworkBehaviour, ObjectError, PrefabId, ServerCtx,
    SyncVar, network_rpcs,
};

/// A behaviour whose RPCs carry as much as the game gives them.
#[derive(Default, NetworkBehaviour)]
struct Speaker {
    #[sync]
    said: SyncVar<u32>,
}

#[network_rpcs(vis = pub(crate))]
impl Speaker {
    #[command(requires_authority = false)]
    fn say(&mut self, _ctx: &mut ServerCtx<'_>, _text: String) {
        let said = *self.said;
        self.said.set(said + 1);
    }

    #[client_rpc]
    fn shout(&mut self, _ctx: &mut ClientCtx<'_>, _text: String) {}
}

const SPEAKER: PrefabId = PrefabId::of_name("speaker");

/// The objects' channel's limit on the server.
fn limit(game: &Game) -> usize {
    game.server.server().max_message_size(object_channel())
}

#[test]
fn a_spawn_too_large_for_its_channel_is_an_error_naming_the_prefab() {
    for path in paths() {
        let mut game = Game::tanks(path, 1);
        let max = limit(&game);
        let huge = Tank::new(1, &"x".repeat(max));
        let err = game.server.spawn(TANK, huge, None).unwrap_err();
        let over = match err {
            ObjectError::TooLarge { prefab, len, max: limit } => {
                assert_eq!((prefab, limit), (TANK, max), "{path:?}");
                assert!(len > max, "{path:?}: {len}");
                len - max
            }
            ref other => panic!("{path:?}: {other}"),
        };
        assert!(err.to_string().contains(&TANK.to_string()), "{path:?}: {err}");
        assert_eq!(game.server.object_count(), 0, "{path:?}");
        assert_eq!(game.server.stats().spawned, 0, "{path:?}");
        // One byte over the limit is refused too; nothing was given an id, so the largest spawn
        // that fits is the first object, and it is delivered (the check is the message
        // layer's, to the byte).
        let one_over = Tank::new(1, &"x".repeat(max - over + 1));
        assert!(matches!(
            game.server.spawn(TANK, one_over, None),
            Err(ObjectError::TooLarge { .. })
        ));
        let id = game.spawn_tank(Tank::new(1, &"x".repeat(max - over)), None);
        assert_eq!(id, NetId(1), "{path:?}");
        assert_eq!(game.clients[0].object_count(), 1, "{path:?}");
    }
}

#[test]
fn an_object_grown_too_large_is_not_sent_to_a_late_joiner_and_is_counted() {
    for path in paths() {
        let mut game = Game::tanks(path, 0);
        let max = limit(&game);
        // It fits when spawned, then grows past the limit one small change at a time.
        let id = game.server.spawn(TANK, Tank::new(1, &"x".repeat(max - 1000)), None).unwrap();
        game.server.get_mut::<Tank>(id).unwrap().inventory.push("y".repeat(2000));
        let small = game.server.spawn(TANK, Tank::new(2, "small"), None).unwrap();
        game.add_client(|c| c.register_prefab(TANK, Tank::default));
        game.join_all();
        assert!(game.run_until(|g| g.clients[0].get::<Tank>(small).is_some()), "{path:?}");
        assert!(game.clients[0].get::<Tank>(id).is_none(), "{path:?}");
        assert_eq!(game.server.stats().spawns_too_large, 1, "{path:?}");
    }
}

#[test]
fn size_errors_name_the_rpc_not_a_wire_type() {
    for path in paths() {
        let mut game = Game::new(path);
        game.add_client(|c| c.register_prefab(SPEAKER, Speaker::default));
        game.join_all();
        let max = limit(&game);
        let id = game.server.spawn(SPEAKER, Speaker::default(), None).unwrap();
        assert!(game.run_until(|g| g.clients[0].object_count() == 1), "{path:?}");
        let speaker = game.server.handle::<Speaker>(id).unwrap();

        // A client RPC, from the server.
        let err = speaker.shout(&mut game.server, "x".repeat(max)).unwrap_err();
        assert!(matches!(err, ObjectError::RpcTooLarge { rpc: "shout", .. }), "{path:?}: {err}");
        assert!(err.to_string().contains("`shout`"), "{path:?}: {err}");
        assert!(!err.to_string().contains("wire"), "{path:?}: {err}");

        // A command, from a client.
        let err = speaker.say(&mut game.clients[0], "x".repeat(max)).unwrap_err();
        assert!(matches!(err, ObjectError::RpcTooLarge { rpc: "say", .. }), "{path:?}: {err}");
        assert!(!err.to_string().contains("wire"), "{path:?}: {err}");
        // What fits still goes.
        speaker.say(&mut game.clients[0], "hello".into()).unwrap();
        assert!(game.run_until(|g| *g.server.get::<Speaker>(id).unwrap().said == 1), "{path:?}");
    }
}

#[test]
fn a_spawn_of_an_unregistered_prefab_is_an_event() {
    for path in paths() {
        let mut game = Game::new(path);
        game.add_client(|c| c.register_prefab(SPEAKER, Speaker::default));
        game.join_all();
        let id = game.server.spawn(TANK, Tank::new(1, "unknown here"), None).unwrap();
        let event = ClientObjectEvent::UnknownPrefab { net_id: id, prefab: TANK, scene: None };
        let mut seen = Vec::new();
        let reported = game.run_until(|g| {
            seen.extend(std::iter::from_fn(|| g.clients[0].poll_object_event()));
            seen.contains(&event)
        });
        assert!(reported, "{path:?}: {seen:?}");
        assert_eq!(game.clients[0].stats().dropped_unknown_prefab, 1, "{path:?}");
        assert_eq!(game.clients[0].object_count(), 0, "{path:?}");
    }
}
