//! Two-sided scenarios over host mode, real UDP and a lossy loopback link.

mod common;

use common::tank::{TANK, Tank, TankRpcs};
use common::{Game, Path, paths};
use sturnus_object::ClientObjectEvent;

#[test]
fn spawn_sync_and_despawn_reach_every_observer() {
    for path in paths(3) {
        let mut game = Game::new(path);
        for _ in 0..2 {
            game.add_client(|c| c.register_prefab(TANK, Tank::default));
        }
        game.join_all();
        let owner = game.player(0);
        let id = game.server.spawn(TANK, Tank::new(100, "ada"), Some(owner)).unwrap();
        let seen = game.run_until(|g| g.clients.iter().all(|c| c.get::<Tank>(id).is_some()));
        assert!(seen, "{path:?}: spawn not seen");
        for (i, client) in game.clients.iter_mut().enumerate() {
            let tank = client.get::<Tank>(id).unwrap();
            assert_eq!((*tank.health, tank.name.as_str()), (100, "ada"), "{path:?}");
            assert!(tank.health_changes.is_empty(), "{path:?}: no hook for the initial state");
            let event = client.poll_event();
            let expected =
                ClientObjectEvent::Spawned { net_id: id, prefab: TANK, scene: None, owned: i == 0 };
            assert_eq!(event, Some(expected), "{path:?}");
        }

        let tank = game.server.get_mut::<Tank>(id).unwrap();
        tank.health.set(90);
        tank.inventory.push("shell".into());
        let synced = game.run_until(|g| {
            g.clients.iter().all(|c| {
                let t = c.get::<Tank>(id).unwrap();
                *t.health == 90 && t.inventory.len() == 1
            })
        });
        assert!(synced, "{path:?}: update not seen");
        for client in &game.clients {
            let tank = client.get::<Tank>(id).unwrap();
            assert_eq!(tank.health_changes, [(100, 90)], "{path:?}");
            assert_eq!(tank.inventory.to_vec(), ["shell"], "{path:?}");
        }

        game.server.despawn(id).unwrap();
        let gone = game.run_until(|g| g.clients.iter().all(|c| c.object_count() == 0));
        assert!(gone, "{path:?}: despawn not seen");
        for client in &mut game.clients {
            assert_eq!(client.poll_event(), Some(ClientObjectEvent::Despawned(id)), "{path:?}");
        }
    }
}

#[test]
fn the_owner_commands_and_every_observer_sees_the_client_rpc() {
    for path in paths(2) {
        let mut game = Game::new(path);
        for _ in 0..2 {
            game.add_client(|c| c.register_prefab(TANK, Tank::default));
        }
        game.join_all();
        let owner = game.player(0);
        let id = game.server.spawn(TANK, Tank::new(100, "ada"), Some(owner)).unwrap();
        assert!(game.run_until(|g| g.clients.iter().all(|c| c.get::<Tank>(id).is_some())));
        let tank = game.clients[0].handle::<Tank>(id).unwrap();
        tank.fire(&mut game.clients[0], (1, 2)).unwrap();
        let exploded = game.run_until(|g| {
            g.clients.iter().all(|c| c.get::<Tank>(id).unwrap().explosions == [(1, 2)])
        });
        assert!(exploded, "{path:?}");
        assert_eq!(game.server.get::<Tank>(id).unwrap().fired, [(owner, (1, 2))], "{path:?}");
        assert_eq!(game.server.stats().commands_run, 1);
        let _ = Path::Udp;
    }
}
