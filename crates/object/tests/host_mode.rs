//! Host mode: the host's own player shares the server's objects. Nothing is synchronised to
//! it, yet its hooks, RPCs and spawn events behave as for a remote client.

mod common;

use common::tank::{TANK, Tank, TankRpcs};
use common::{Game, Path, paths};
use sturnus_object::{ClientObjectEvent, ObjectError};

fn host_game(path: Path, remote_clients: usize) -> Game {
    let mut game = Game::new(path);
    let now = game.now;
    game.server.join_host(now).unwrap();
    for _ in 0..remote_clients {
        game.add_client(|c| c.register_prefab(TANK, Tank::default));
    }
    let joined = game.run_until(|g| g.server.host_player().is_some());
    assert!(joined, "{path:?}: the host player did not join");
    game.join_all();
    game
}

#[test]
fn the_host_player_shares_the_servers_objects() {
    let mut game = host_game(Path::Local, 0);
    let host = game.server.host_player().expect("the host joined");
    let id = game.server.spawn(TANK, Tank::new(100, "host"), Some(host)).unwrap();
    let spawned = ClientObjectEvent::Spawned { net_id: id, prefab: TANK, scene: None, owned: true };
    assert_eq!(game.server.poll_host_event(), Some(spawned));
    let before = game.server.host_client().unwrap().stats().messages_received;

    game.server.get_mut::<Tank>(id).unwrap().health.set(90);
    game.server.get_mut::<Tank>(id).unwrap().health.set(80);
    game.step();
    // The hook ran once on the server's own object, from the last synced value to the new.
    assert_eq!(game.server.get::<Tank>(id).unwrap().health_changes, [(100, 80)]);
    game.server.get_mut::<Tank>(id).unwrap().inventory.push("flag".into());
    game.step();
    assert_eq!(game.server.get::<Tank>(id).unwrap().inventory_changes.len(), 1);
    // Nothing was sent to the host's client: no copy exists.
    assert_eq!(game.server.stats().updates_sent, 0);
    assert_eq!(game.server.host_client().unwrap().stats().messages_received, before);
    assert_eq!(game.server.object_count(), 1);

    game.server.despawn(id);
    assert_eq!(game.server.poll_host_event(), Some(ClientObjectEvent::Despawned(id)));
}

#[test]
fn host_commands_and_rpcs_run_once_on_the_shared_object() {
    for path in paths() {
        let mut game = host_game(path, 1);
        let host = game.server.host_player().unwrap();
        let remote = game.player(0);
        let id = game.server.spawn(TANK, Tank::new(100, "host"), Some(host)).unwrap();
        assert!(game.run_until(|g| g.clients[0].get::<Tank>(id).is_some()), "{path:?}");

        // The host fires: its command runs on the server (it owns the tank), and the
        // explosion runs once on the shared object and once on the remote client's copy.
        let tank = game.server.handle::<Tank>(id).unwrap();
        tank.fire(&mut game.server, (4, 2)).unwrap();
        let done = game.run_until(|g| g.clients[0].get::<Tank>(id).unwrap().explosions.len() == 1);
        assert!(done, "{path:?}");
        let shared = game.server.get::<Tank>(id).unwrap();
        assert_eq!(shared.fired, [(host, (4, 2))], "{path:?}");
        assert_eq!(shared.explosions, [(4, 2)], "{path:?}");

        // A target RPC to the host runs on the shared object only.
        tank.hit_marker(&mut game.server, host, 3).unwrap();
        tank.hit_marker(&mut game.server, remote, 5).unwrap();
        assert!(game.run_until(|g| g.clients[0].get::<Tank>(id).unwrap().hits == [5]));
        assert_eq!(game.server.get::<Tank>(id).unwrap().hits, [3], "{path:?}");

        // The host has authority only over what it owns: it knows, so it refuses to send a
        // command that needs authority over another's object; one that needs none runs.
        let theirs = game.server.spawn(TANK, Tank::new(1, "theirs"), Some(remote)).unwrap();
        let other = game.server.handle::<Tank>(theirs).unwrap();
        let refused = other.fire(&mut game.server, (9, 9));
        assert!(matches!(refused, Err(ObjectError::NotOwner(id)) if id == theirs), "{refused:?}");
        other.poke(&mut game.server).unwrap();
        game.step();
        let shared = game.server.get::<Tank>(theirs).unwrap();
        assert!(shared.fired.is_empty(), "{path:?}");
        assert_eq!(shared.pokes, [host], "{path:?}");
        assert_eq!(game.server.stats().rejected(), 0);

        // Ownership changes reach the host as events.
        while game.server.poll_host_event().is_some() {}
        game.server.set_owner(id, Some(remote)).unwrap();
        let lost = ClientObjectEvent::OwnershipChanged { net_id: id, owned: false };
        assert_eq!(game.server.poll_host_event(), Some(lost));
        assert!(game.run_until(|g| g.clients[0].is_owned(id)), "{path:?}");
    }
}

#[test]
fn commands_through_the_server_need_a_host_player() {
    let mut game = Game::new(Path::Local);
    let id = game.server.spawn(TANK, Tank::default(), None).unwrap();
    let tank = game.server.handle::<Tank>(id).unwrap();
    assert!(matches!(tank.poke(&mut game.server), Err(ObjectError::NoHostPlayer)));
}

mod vital {
    use sturnus_object::{NetworkBehaviour, PrefabId, SyncVar};

    pub(crate) const VITAL: PrefabId = PrefabId::of_name("vital");

    /// A hook that changes another synchronised field: health reaching zero marks it dead.
    #[derive(Default, NetworkBehaviour)]
    pub(crate) struct Vital {
        #[sync(hook = Vital::on_health)]
        pub(crate) health: SyncVar<i32>,
        #[sync]
        pub(crate) dead: SyncVar<bool>,
    }

    impl Vital {
        fn on_health(&mut self, _old: &i32, new: &i32) {
            if *new <= 0 {
                self.dead.set(true);
            }
        }
    }

    /// The same fields without the hook: what a client that only mirrors the server builds, so
    /// `dead` is true there only if the server sent it.
    #[derive(Default, NetworkBehaviour)]
    pub(crate) struct Mirror {
        #[sync]
        pub(crate) health: SyncVar<i32>,
        #[sync]
        pub(crate) dead: SyncVar<bool>,
    }
}

/// In host mode the host player's hooks run on the server's own objects; what such a hook
/// changes in a synchronised field reaches the remote clients too.
#[test]
fn what_a_host_hook_changes_reaches_remote_clients() {
    use vital::{Mirror, VITAL, Vital};
    for path in paths().into_iter().filter(|p| *p != Path::Local) {
        let mut game = Game::new(path);
        let now = game.now;
        game.server.join_host(now).unwrap();
        game.add_client(|c| c.register_prefab(VITAL, Mirror::default));
        assert!(game.run_until(|g| g.server.host_player().is_some()));
        game.join_all();
        let id = game.server.spawn(VITAL, Vital::default(), None).unwrap();
        assert!(game.run_until(|g| g.clients[0].get::<Mirror>(id).is_some()));
        game.server.get_mut::<Vital>(id).unwrap().health.set(-5);
        let seen = game.run_until(|g| g.clients[0].get::<Mirror>(id).is_some_and(|v| *v.dead));
        assert!(seen, "{path:?}: the remote client never saw what the host's hook changed");
        assert!(*game.server.get::<Vital>(id).unwrap().dead);
    }
}
