//! Two-sided scenarios over host mode's in-memory pipe and a transport (an in-process
//! network), on virtual time.

mod common;

use common::tank::{TANK, Tank, TankRpcs};
use common::{Game, Path, forge, paths};
use sturnus_object::{ClientObjectEvent, ListChange, ObjectError, RpcId, wire};

#[test]
fn spawn_sync_and_despawn_reach_every_observer() {
    for path in paths() {
        let mut game = Game::tanks(path, 2);
        let owner = game.player(0);
        let id = game.server.spawn(TANK, Tank::new(100, "ada"), Some(owner)).unwrap();
        let seen = game.run_until(|g| g.clients.iter().all(|c| c.get::<Tank>(id).is_some()));
        assert!(seen, "{path:?}: spawn not seen");
        for (i, client) in game.clients.iter_mut().enumerate() {
            let tank = client.get::<Tank>(id).unwrap();
            assert_eq!((*tank.health, tank.name.as_str()), (100, "ada"), "{path:?}");
            assert!(tank.health_changes.is_empty(), "{path:?}: no hook for the initial state");
            let event = client.poll_object_event();
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
            let pushed = ListChange::Inserted { index: 0, value: "shell".to_string() };
            assert_eq!(tank.inventory_changes, [pushed], "{path:?}: one callback per operation");
        }

        game.server.despawn(id).unwrap();
        let gone = game.run_until(|g| g.clients.iter().all(|c| c.object_count() == 0));
        assert!(gone, "{path:?}: despawn not seen");
        for client in &mut game.clients {
            assert_eq!(
                client.poll_object_event(),
                Some(ClientObjectEvent::Despawned(id)),
                "{path:?}"
            );
        }
    }
}

#[test]
fn the_owner_commands_and_every_observer_sees_the_client_rpc() {
    for path in paths() {
        let mut game = Game::tanks(path, 2);
        let owner = game.player(0);
        let id = game.spawn_tank(Tank::new(100, "ada"), Some(owner));
        let tank = game.clients[0].handle::<Tank>(id).unwrap();
        tank.fire(&mut game.clients[0], (1, 2)).unwrap();
        let exploded = game.run_until(|g| {
            g.clients.iter().all(|c| c.get::<Tank>(id).unwrap().explosions == [(1, 2)])
        });
        assert!(exploded, "{path:?}");
        assert_eq!(game.server.get::<Tank>(id).unwrap().fired, [(owner, (1, 2))], "{path:?}");
        assert_eq!(game.server.stats().commands_run, 1);
    }
}

#[test]
fn commands_from_a_non_owner_are_rejected_and_counted() {
    for path in paths() {
        let mut game = Game::tanks(path, 2);
        let (owner, intruder) = (game.player(0), game.player(1));
        let id = game.spawn_tank(Tank::new(100, "ada"), Some(owner));
        let tank = game.clients[1].handle::<Tank>(id).unwrap();
        // The client knows it does not own the tank: the command is refused before it is sent.
        let refused = tank.fire(&mut game.clients[1], (6, 6));
        assert!(matches!(refused, Err(ObjectError::NotOwner(i)) if i == id), "{refused:?}");
        // A client that sends it anyway (a hostile or stale one) is refused by the server.
        let header = wire::Command { net_id: id, behaviour: 0, rpc: RpcId::of_name("fire") };
        forge(&mut game.clients[1], &header, &postcard::to_allocvec(&((6, 6),)).unwrap()).unwrap();
        // A command that needs no authority, sent after it, shows the first has been handled.
        tank.poke(&mut game.clients[1]).unwrap();
        let poked = game.run_until(|g| g.server.get::<Tank>(id).unwrap().pokes == [intruder]);
        assert!(poked, "{path:?}");
        let server_tank = game.server.get::<Tank>(id).unwrap();
        assert!(server_tank.fired.is_empty(), "{path:?}: a non-owner's command ran");
        let stats = game.server.stats();
        assert_eq!((stats.rejected_no_authority, stats.rejected(), stats.commands_run), (1, 1, 1));
        let player = game.server.server().player_stats(intruder).unwrap();
        assert_eq!(player.dropped_rejected, 1, "{path:?}: charged to the error budget");
        assert_eq!(game.server.server().player_stats(owner).unwrap().dropped_rejected, 0);
        // And no explosion went anywhere.
        game.run_for(5);
        assert!(game.clients.iter().all(|c| c.get::<Tank>(id).unwrap().explosions.is_empty()));
    }
}

#[test]
fn target_rpcs_reach_exactly_their_player() {
    for path in paths() {
        let mut game = Game::tanks(path, 3);
        let id = game.spawn_tank(Tank::new(100, "ada"), None);
        let tank = game.server.handle::<Tank>(id).unwrap();
        let target = game.player(1);
        tank.hit_marker(&mut game.server, target, 7).unwrap();
        // A client RPC after it: once everyone has that, the target RPC has been delivered.
        tank.explode(&mut game.server, (0, 0)).unwrap();
        let arrived = game.run_until(|g| {
            g.clients.iter().all(|c| c.get::<Tank>(id).unwrap().explosions.len() == 1)
        });
        assert!(arrived, "{path:?}");
        let hits: Vec<Vec<i32>> =
            game.clients.iter().map(|c| c.get::<Tank>(id).unwrap().hits.clone()).collect();
        assert_eq!(hits, [vec![], vec![7], vec![]], "{path:?}");
        assert!(game.server.get::<Tank>(id).unwrap().hits.is_empty(), "not run on the server");
    }
}

#[test]
fn a_late_joiner_gets_every_live_object_with_its_current_state() {
    for path in paths() {
        let mut game = Game::new(path);
        game.add_client(|c| c.register_prefab(TANK, Tank::default));
        game.join_all();
        let ids: Vec<_> =
            (0..5).map(|i| game.server.spawn(TANK, Tank::new(i, "t"), None).unwrap()).collect();
        let gone = ids[2];
        game.server.despawn(gone);
        assert!(game.run_until(|g| g.clients[0].object_count() == 4));
        // Changes made and already sent, and changes still pending when the newcomer joins:
        // both are in the state it gets, and no collection operation reaches it twice.
        game.server.get_mut::<Tank>(ids[0]).unwrap().inventory.push("a".into());
        game.run_for(2);
        game.server.get_mut::<Tank>(ids[0]).unwrap().inventory.push("b".into());
        game.server.get_mut::<Tank>(ids[1]).unwrap().health.set(99);

        game.add_client(|c| c.register_prefab(TANK, Tank::default));
        game.join_all();
        let late = game.run_until(|g| {
            g.clients.iter().all(|c| {
                c.object_count() == 4
                    && c.get::<Tank>(ids[0]).unwrap().inventory.len() == 2
                    && *c.get::<Tank>(ids[1]).unwrap().health == 99
            })
        });
        assert!(late, "{path:?}");
        game.run_for(5);
        let client = &game.clients[1];
        assert_eq!(client.objects().collect::<Vec<_>>(), [ids[0], ids[1], ids[3], ids[4]]);
        assert_eq!(client.get::<Tank>(ids[0]).unwrap().inventory.to_vec(), ["a", "b"], "{path:?}");
        assert_eq!(*client.get::<Tank>(ids[4]).unwrap().health, 4);
        assert!(client.get::<Tank>(gone).is_none());
        // The first client saw the same, by updates.
        assert_eq!(game.clients[0].get::<Tank>(ids[0]).unwrap().inventory.to_vec(), ["a", "b"]);
    }
}

#[test]
fn scene_objects_are_matched_not_duplicated() {
    use sturnus_object::SceneId;
    const DOOR: SceneId = SceneId(42);
    for path in paths() {
        let mut game = Game::new(path);
        game.add_client(|c| {
            c.register_prefab(TANK, Tank::default);
            // The level's own copy, with a local field the server knows nothing of.
            let mut door = Tank::new(0, "door");
            door.speed = 3.5;
            c.add_scene_object(DOOR, door).unwrap();
        });
        game.join_all();
        assert!(game.clients[0].add_scene_object(DOOR, Tank::default()).is_err());
        let id = game.server.spawn_scene(DOOR, TANK, Tank::new(1, "door"), None).unwrap();
        assert!(game.server.spawn_scene(DOOR, TANK, Tank::default(), None).is_err());
        assert!(game.run_until(|g| g.clients[0].object_count() == 1), "{path:?}");
        let client = &mut game.clients[0];
        let door = client.get::<Tank>(id).unwrap();
        assert_eq!((door.speed, *door.health), (3.5, 1), "{path:?}: the level's own object");
        assert_eq!(client.unspawned_scene_objects(), 0);
        let expected = ClientObjectEvent::Spawned {
            net_id: id,
            prefab: TANK,
            scene: Some(DOOR),
            owned: false,
        };
        assert_eq!(client.poll_object_event(), Some(expected));
        // Despawned, it goes back to the level, ready to be matched again.
        game.server.despawn(id);
        assert!(game.run_until(|g| g.clients[0].object_count() == 0));
        assert_eq!(game.clients[0].unspawned_scene_objects(), 1);
    }
}

#[test]
fn ownership_changes_are_observed_and_move_authority() {
    for path in paths() {
        let mut game = Game::tanks(path, 2);
        let (a, b) = (game.player(0), game.player(1));
        let id = game.spawn_tank(Tank::new(100, "ada"), Some(a));
        for client in &mut game.clients {
            while client.poll_object_event().is_some() {}
        }
        game.server.set_owner(id, Some(b)).unwrap();
        assert!(game.run_until(|g| g.clients[1].is_owned(id) && !g.clients[0].is_owned(id)));
        let changed = |owned| Some(ClientObjectEvent::OwnershipChanged { net_id: id, owned });
        assert_eq!(game.clients[0].poll_object_event(), changed(false), "{path:?}");
        assert_eq!(game.clients[1].poll_object_event(), changed(true), "{path:?}");
        assert_eq!(game.server.owner(id), Some(b));
        // Authority moved with it.
        let tank = game.clients[1].handle::<Tank>(id).unwrap();
        tank.fire(&mut game.clients[1], (3, 3)).unwrap();
        assert!(game.run_until(|g| g.server.get::<Tank>(id).unwrap().fired == [(b, (3, 3))]));
        // And when the owner leaves, its object goes with it.
        game.clients[1].client_mut().disconnect();
        assert!(
            game.run_until(|g| g.server.object_count() == 0 && g.clients[0].object_count() == 0)
        );
    }
}

#[test]
fn spawn_handlers_pool_objects() {
    use std::sync::Arc;

    use parking_lot::Mutex;
    use sturnus_object::{Behaviours, NetId};
    let mut game = Game::new(Path::Local);
    let pool: Arc<Mutex<Vec<Behaviours>>> = Arc::default();
    let returned: Arc<Mutex<Vec<NetId>>> = Arc::default();
    let (take, give, seen) = (Arc::clone(&pool), Arc::clone(&pool), Arc::clone(&returned));
    game.add_client(move |c| {
        c.register_spawn_handler(
            TANK,
            move |_info| take.lock().pop().unwrap_or_else(|| vec![Box::new(Tank::default())]),
            move |id, behaviours| {
                seen.lock().push(id);
                give.lock().push(behaviours);
            },
        );
    });
    game.join_all();
    let first = game.server.spawn(TANK, Tank::new(1, "a"), None).unwrap();
    assert!(game.run_until(|g| g.clients[0].object_count() == 1));
    game.server.despawn(first);
    assert!(game.run_until(|g| g.clients[0].object_count() == 0));
    assert_eq!(*returned.lock(), [first]);
    assert_eq!(pool.lock().len(), 1);
    let second = game.server.spawn(TANK, Tank::new(2, "b"), None).unwrap();
    assert!(game.run_until(|g| g.clients[0].object_count() == 1));
    assert_eq!(pool.lock().len(), 0, "the pooled object was reused");
    assert_eq!(*game.clients[0].get::<Tank>(second).unwrap().health, 2);
}

/// A behaviour whose changes wait an hour unless something forces them out.
#[derive(Debug, Default, sturnus_object::NetworkBehaviour)]
#[network(sync_interval_ms = 3_600_000)]
struct Slow {
    #[sync]
    list: sturnus_object::SyncList<u8>,
}

#[test]
fn changes_pending_when_a_player_joins_reach_it_exactly_once() {
    const SLOW: sturnus_object::PrefabId = sturnus_object::PrefabId::of_name("slow");
    for path in paths() {
        let mut game = Game::new(path);
        game.add_client(|c| c.register_prefab(SLOW, Slow::default));
        game.join_all();
        let id = game.server.spawn(SLOW, Slow::default(), None).unwrap();
        assert!(game.run_until(|g| g.clients[0].object_count() == 1));
        game.server.get_mut::<Slow>(id).unwrap().list.push(1);
        game.run_for(3);
        assert!(game.clients[0].get::<Slow>(id).unwrap().list.is_empty(), "not due yet");
        // The newcomer's state holds the pending push; the others get it as an update.
        game.add_client(|c| c.register_prefab(SLOW, Slow::default));
        game.join_all();
        game.server.get_mut::<Slow>(id).unwrap().list.push(2);
        game.server.sync_now();
        let synced = game.run_until(|g| {
            g.clients.iter().all(|c| c.get::<Slow>(id).is_some_and(|s| s.list.len() >= 2))
        });
        assert!(synced, "{path:?}");
        game.run_for(3);
        for client in &game.clients {
            assert_eq!(client.get::<Slow>(id).unwrap().list.to_vec(), [1, 2], "{path:?}");
        }
    }
}

/// A second behaviour, on its own unreliable channel, with an unreliable RPC.
#[derive(Debug, Default, sturnus_object::NetworkBehaviour)]
#[network(qos = Unreliable)]
struct Radar {
    #[sync]
    heading: sturnus_object::SyncVar<u16>,
    pings: Vec<u16>,
}

#[sturnus_object::network_rpcs(vis = pub(crate))]
impl Radar {
    #[client_rpc(qos = Unreliable)]
    fn ping(&mut self, _ctx: &mut sturnus_object::ClientCtx<'_>, at: u16) {
        self.pings.push(at);
    }

    #[command(requires_authority = false, qos = UnreliableSequenced)]
    fn turn(&mut self, _ctx: &mut sturnus_object::ServerCtx<'_>, to: u16) {
        self.heading.set(to);
    }
}

#[test]
fn an_object_holds_several_behaviours_each_with_its_own_channels() {
    for path in paths() {
        let mut game = Game::new(path);
        game.add_client(|c| c.register_prefab(TANK, || (Tank::default(), Radar::default())));
        game.join_all();
        let id = game.server.spawn(TANK, (Tank::new(5, "two"), Radar::default()), None).unwrap();
        assert!(game.run_until(|g| g.clients[0].object_count() == 1), "{path:?}");
        let radar = game.clients[0].handle::<Radar>(id).unwrap();
        assert_eq!(radar.behaviour_index(), 1);
        // A command to the second behaviour changes its SyncVar, which comes back on the
        // unreliable channel (resent until acknowledged); an unreliable RPC reaches it too. On
        // a lossy path the command or the RPC may be lost: like a game, the test sends again
        // (a new heading each time, since a lost command is not resent) until one makes it.
        let mut turned = false;
        for to in 270..300 {
            radar.turn(&mut game.clients[0], to).unwrap();
            turned =
                game.run_for_until(20, |g| *g.clients[0].get::<Radar>(id).unwrap().heading == to);
            if turned || !path.is_lossy() {
                break;
            }
        }
        assert!(turned, "{path:?}");
        let radar = game.server.handle::<Radar>(id).unwrap();
        let mut pinged = Vec::new();
        for at in 90..120 {
            radar.ping(&mut game.server, at).unwrap();
            pinged.push(at);
            if game.run_for_until(20, |g| !g.clients[0].get::<Radar>(id).unwrap().pings.is_empty())
                || !path.is_lossy()
            {
                break;
            }
        }
        game.run_for(20);
        let pings = &game.clients[0].get::<Radar>(id).unwrap().pings;
        if path.is_lossy() {
            assert!(!pings.is_empty() && pings.iter().all(|p| pinged.contains(p)), "{pings:?}");
        } else {
            assert_eq!(*pings, [90], "{path:?}");
        }
        // The first behaviour is untouched by both.
        let tank = game.clients[0].get::<Tank>(id).unwrap();
        assert_eq!((*tank.health, tank.name.as_str()), (5, "two"));
        assert_eq!(game.clients[0].stats().dropped_unknown_rpc, 0);
    }
}
