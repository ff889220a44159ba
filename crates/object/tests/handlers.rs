//! A game message handler on the object manager spawns, changes objects and sends RPCs in
//! answer to a message, with no shared state: the objects are lent to it.

mod common;

use common::tank::{TANK, Tank};
use common::{Game, paths};
use serde::{Deserialize, Serialize};
use sturnus_message::{Message, MessageError};
use sturnus_object::{ClientObjectEvent, ObjectError, ServerObjects};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Message)]
struct Deploy {
    health: i32,
}

#[test]
fn a_message_handler_spawns_for_its_sender() {
    for path in paths() {
        let mut game = Game::tanks(path, 2);
        game.server
            .register_handler(|objects: &mut ServerObjects<'_>, player, Deploy { health }| {
                let mut tank = Tank::default();
                tank.health.set(health);
                objects.spawn(TANK, tank, Some(player)).unwrap();
            })
            .unwrap();
        game.clients[1].client_mut().send(&Deploy { health: 42 }).unwrap();
        let spawned = game.run_until(|g| g.clients.iter().all(|c| c.object_count() == 1));
        assert!(spawned, "{path:?}: the handler's spawn did not reach every client");
        let id = game.server.objects().next().unwrap();
        assert_eq!(game.server.owner(id), Some(game.player(1)), "{path:?}");
        for (i, client) in game.clients.iter_mut().enumerate() {
            assert_eq!(client.get::<Tank>(id).map(|t| *t.health), Some(42), "{path:?}");
            let owned = std::iter::from_fn(|| client.poll_object_event())
                .any(|e| matches!(e, ClientObjectEvent::Spawned { owned: true, .. }));
            assert_eq!(owned, i == 1, "{path:?}: client {i}");
        }
        assert_eq!(game.server.stats().spawned, 1);
        // The stats read as one line each, for a status view.
        let line = game.server.stats().to_string();
        assert!(line.starts_with("spawned 1, despawned 0 · sent "), "{line}");
        let line = game.clients[0].stats().to_string();
        assert!(line.starts_with("spawned 1, despawned 0 · applied "), "{line}");
        assert!(line.contains("dropped 0: "), "{line}");
    }
}

#[test]
fn a_handled_type_cannot_share_its_id_and_bad_payloads_are_counted() {
    #[derive(Debug, Serialize, Deserialize, Message)]
    #[message(id = 0x7777)]
    struct One(u8);
    #[derive(Debug, Serialize, Deserialize, Message)]
    #[message(id = 0x7777)]
    struct Other(String);
    let mut game = Game::tanks(paths()[0], 1);
    game.server.register_handler(|_: &mut ServerObjects<'_>, _, One(_)| {}).unwrap();
    let err = game.server.register_handler(|_: &mut ServerObjects<'_>, _, Other(_)| {});
    assert!(matches!(err, Err(ObjectError::Message(MessageError::IdCollision { .. }))), "{err:?}");
    // `Other` on the wire (a string where a byte is expected) does not decode as `One`.
    game.clients[0].client_mut().send(&Other("not a byte".into())).unwrap();
    game.run_for(5);
    let player = game.player(0);
    let stats = game.server.server().player_stats(player).unwrap();
    assert_eq!(stats.dropped_undecodable, 1);
}

/// The object layer's own message ids are reserved: a game type that happens to share one is
/// refused when it registers, rather than silently taking the object layer's traffic.
#[test]
fn the_object_layers_ids_are_reserved() {
    #[derive(Debug, Serialize, Deserialize)]
    struct Clash(u8);
    impl Message for Clash {
        const ID: sturnus_message::MessageId = <sturnus_object::wire::Command as Message>::ID;
        const NAME: &'static str = "tests::Clash";
    }
    let mut game = Game::tanks(paths()[0], 1);
    let err = game.server.server_mut().register_handler(|_, _: Clash| {});
    assert!(matches!(err, Err(MessageError::IdCollision { .. })), "{err:?}");
    let err = game.server.register_handler(|_: &mut ServerObjects<'_>, _, _: Clash| {});
    assert!(matches!(err, Err(ObjectError::Message(MessageError::IdCollision { .. }))));
    let err = game.clients[0].client_mut().register_handler(|_, _: Clash| {});
    assert!(matches!(err, Err(MessageError::IdCollision { .. })), "{err:?}");
}

/// Stopping through the manager makes it forget its players and host player, so a server
/// started again can take a new host player.
#[test]
fn a_stopped_manager_forgets_its_players_and_can_host_again() {
    use sturnus_message::{NetworkServer, ServerConfig, driver};
    use sturnus_object::ServerObjectManager;
    use sturnus_transport::MemoryNetwork;
    let network = MemoryNetwork::new();
    let config = ServerConfig::default();
    let kinds = config.channels.kinds().to_vec();
    let mut server = ServerObjectManager::new(NetworkServer::new(config).unwrap()).unwrap();
    let mut now = driver::now();
    for round in 0..2 {
        let addr = format!("10.0.0.{}:1", round + 1).parse().unwrap();
        server.start_host(now, network.bind(addr, kinds.clone()).unwrap()).unwrap();
        for _ in 0..5 {
            server.update(now).unwrap();
            now += std::time::Duration::from_millis(10);
        }
        let host = server.host_player();
        assert!(host.is_some_and(|h| server.is_ready(h)), "round {round}: no host player");
        server.stop();
        assert_eq!(server.host_player(), None, "round {round}");
        assert!(!server.is_ready(host.unwrap()), "round {round}");
    }
}
