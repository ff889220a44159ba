//! Interest management wired into the server's object manager: with a policy set, an object is
//! spawned to a player when it enters the player's interest and despawned when it leaves, with
//! its current state, and a player can command only what it observes. Without one, every ready
//! player observes everything (the other tests).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::tank::{TANK, Tank, TankRpcs};
use common::{Game, Path, forge};
use sturnus_object::interest::{GridInterest, InterestPolicy, OwnerOnly, RoomInterest};
use sturnus_object::{
    ClientObjectEvent, ClientObjectManager, NetId, NetworkBehaviour, PlayerId, PrefabId, RpcId,
    SyncVar, wire,
};

type Grid = GridInterest<PlayerId, NetId>;
type Rooms = RoomInterest<PlayerId, NetId>;

const RADIUS: f32 = 10.0;

/// A small deterministic generator (xorshift), so the walk is the same at every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// In `[lo, hi)`.
    fn range(&mut self, lo: f32, hi: f32) -> f32 {
        let unit = (self.next() >> 40) as f32 / (1u64 << 24) as f32;
        lo + unit * (hi - lo)
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.next() % one_in == 0
    }
}

/// The grid's own rule, by brute force: `dx² + dz² ≤ radius²` in `f64`, on `[x, z]`.
fn within(a: [f32; 3], b: [f32; 3]) -> bool {
    let dx = f64::from(a[0]) - f64::from(b[0]);
    let dz = f64::from(a[2]) - f64::from(b[2]);
    dx * dx + dz * dz <= f64::from(RADIUS) * f64::from(RADIUS)
}

fn held(client: &ClientObjectManager) -> BTreeSet<NetId> {
    client.objects().collect()
}

fn observers(game: &Game, id: NetId) -> BTreeSet<PlayerId> {
    game.server.observers(id).collect()
}

/// The objects a client was told of since last asked: (spawned, despawned).
fn events(client: &mut ClientObjectManager) -> (BTreeSet<NetId>, BTreeSet<NetId>) {
    let (mut spawned, mut despawned) = (BTreeSet::new(), BTreeSet::new());
    while let Some(event) = client.poll_object_event() {
        match event {
            ClientObjectEvent::Spawned { net_id, .. } => assert!(spawned.insert(net_id)),
            ClientObjectEvent::Despawned(id) => assert!(despawned.insert(id)),
            other => panic!("unexpected {other:?}"),
        }
    }
    (spawned, despawned)
}

fn tank_game(path: Path, clients: usize) -> Game {
    let mut game = Game::new(path);
    for _ in 0..clients {
        game.add_client(|c| c.register_prefab(TANK, Tank::default));
    }
    game
}

/// The client's copy holds the server's synchronised state.
fn same_state(game: &Game, client: usize, id: NetId) -> bool {
    let (server, copy) =
        (game.server.get::<Tank>(id).unwrap(), game.clients[client].get::<Tank>(id));
    copy.is_some_and(|c| {
        *c.health == *server.health && c.inventory.to_vec() == server.inventory.to_vec()
    })
}

#[test]
fn grid_interest_spawns_exactly_what_is_within_the_radius() {
    let mut game = tank_game(Path::Memory, 3);
    game.server.set_interest(Grid::new(RADIUS, RADIUS).unwrap());
    game.join_all();
    let players: Vec<PlayerId> = (0..3).map(|i| game.player(i)).collect();
    let mut rng = Rng(0x5eed_1234_abcd);
    let mut player_pos: Vec<[f32; 3]> = Vec::new();
    for &player in &players {
        let pos = [rng.range(-25.0, 25.0), 0.0, rng.range(-25.0, 25.0)];
        game.server.set_player_position(player, pos);
        player_pos.push(pos);
    }
    let mut objects: BTreeMap<NetId, [f32; 3]> = BTreeMap::new();
    for i in 0..60 {
        let id = game.server.spawn(TANK, Tank::new(i, "t"), None).unwrap();
        let pos = [rng.range(-30.0, 30.0), rng.range(0.0, 5.0), rng.range(-30.0, 30.0)];
        game.server.set_object_position(id, pos);
        objects.insert(id, pos);
    }
    let expected = |objects: &BTreeMap<NetId, [f32; 3]>, at: [f32; 3]| -> BTreeSet<NetId> {
        objects.iter().filter(|(_, pos)| within(at, **pos)).map(|(id, _)| *id).collect()
    };
    let mut before: Vec<BTreeSet<NetId>> = vec![BTreeSet::new(); players.len()];
    // Health each client last saw of an object that left it.
    let mut at_leave: BTreeMap<(usize, NetId), i32> = BTreeMap::new();
    let (mut enters, mut leaves, mut back_changed) = (0, 0, 0);

    for tick in 0..400 {
        if tick > 0 {
            for (id, pos) in objects.iter_mut() {
                if rng.chance(3) {
                    if rng.chance(40) {
                        *pos = [rng.range(-30.0, 30.0), pos[1], rng.range(-30.0, 30.0)];
                    } else {
                        pos[0] += rng.range(-3.0, 3.0);
                        pos[2] += rng.range(-3.0, 3.0);
                    }
                    game.server.set_object_position(*id, *pos);
                }
                if rng.chance(8) {
                    let tank = game.server.get_mut::<Tank>(*id).unwrap();
                    tank.health.modify(|h| *h += 1);
                    // A collection operation: it must reach a newcomer once, in its state.
                    tank.inventory.push(format!("t{tick}"));
                }
            }
            for (i, &player) in players.iter().enumerate() {
                if rng.chance(2) {
                    player_pos[i][0] += rng.range(-2.0, 2.0);
                    player_pos[i][2] += rng.range(-2.0, 2.0);
                    game.server.set_player_position(player, player_pos[i]);
                }
            }
        }
        game.step();
        for i in 0..players.len() {
            let now = expected(&objects, player_pos[i]);
            assert_eq!(held(&game.clients[i]), now, "tick {tick}: client {i} holds");
            let (spawned, despawned) = events(&mut game.clients[i]);
            let entered: BTreeSet<NetId> = now.difference(&before[i]).copied().collect();
            let left: BTreeSet<NetId> = before[i].difference(&now).copied().collect();
            assert_eq!(spawned, entered, "tick {tick}: client {i} spawned");
            assert_eq!(despawned, left, "tick {tick}: client {i} despawned");
            for &id in &left {
                at_leave.insert((i, id), *game.server.get::<Tank>(id).unwrap().health);
            }
            for &id in &entered {
                let health = *game.server.get::<Tank>(id).unwrap().health;
                if at_leave.remove(&(i, id)).is_some_and(|old| old != health) {
                    back_changed += 1;
                }
            }
            for &id in &now {
                assert!(same_state(&game, i, id), "tick {tick}: client {i}'s {id} is stale");
            }
            enters += entered.len();
            leaves += left.len();
            before[i] = now;
        }
        for (id, pos) in &objects {
            let seen: BTreeSet<PlayerId> = players
                .iter()
                .enumerate()
                .filter(|(i, _)| within(player_pos[*i], *pos))
                .map(|(_, p)| *p)
                .collect();
            assert_eq!(observers(&game, *id), seen, "tick {tick}: observers of {id}");
        }
    }
    // The walk did what it is for: objects came and went, and some came back changed.
    assert!(enters > 300 && leaves > 300, "{enters} enters, {leaves} leaves");
    assert!(back_changed > 50, "{back_changed} objects came back changed");
    let stats = game.clients.iter().map(|c| c.stats()).collect::<Vec<_>>();
    for s in &stats {
        assert_eq!(s.dropped_undecodable, 0, "{s:?}");
    }
    // Nothing in the policy scans the world per tick: the grid's checks follow what moved.
    let grid = game.server.interest::<Grid>().unwrap();
    assert_eq!((grid.player_count(), grid.object_count()), (3, 60));
}

#[test]
fn rooms_are_disjoint_and_moving_a_player_swaps_its_objects() {
    let mut game = tank_game(Path::Memory, 2);
    game.server.set_interest(Rooms::new());
    game.join_all();
    let (a, b) = (game.player(0), game.player(1));
    let ids: Vec<NetId> =
        (0..6).map(|i| game.server.spawn(TANK, Tank::new(i, "t"), None).unwrap()).collect();
    let (one, two): (BTreeSet<NetId>, BTreeSet<NetId>) =
        (ids[..3].iter().copied().collect(), ids[3..].iter().copied().collect());
    let rooms = game.server.interest_mut::<Rooms>().unwrap();
    for &id in &one {
        rooms.set_object_room(id, Some(1));
    }
    for &id in &two {
        rooms.set_object_room(id, Some(2));
    }
    rooms.set_player_room(a, Some(1));
    rooms.set_player_room(b, Some(2));
    game.step();
    assert_eq!(held(&game.clients[0]), one);
    assert_eq!(held(&game.clients[1]), two);
    for &id in &one {
        assert_eq!(observers(&game, id), BTreeSet::from([a]));
    }
    for &id in &two {
        assert_eq!(observers(&game, id), BTreeSet::from([b]));
    }
    assert_eq!(events(&mut game.clients[0]), (one.clone(), BTreeSet::new()));
    assert_eq!(events(&mut game.clients[1]), (two.clone(), BTreeSet::new()));

    // A changes room: it leaves room 1's objects and gets room 2's, as they are now.
    game.server.get_mut::<Tank>(ids[4]).unwrap().health.set(444);
    game.server.interest_mut::<Rooms>().unwrap().set_player_room(a, Some(2));
    game.step();
    assert_eq!(held(&game.clients[0]), two);
    assert_eq!(events(&mut game.clients[0]), (two.clone(), one.clone()));
    assert_eq!(*game.clients[0].get::<Tank>(ids[4]).unwrap().health, 444);
    assert_eq!(events(&mut game.clients[1]), (BTreeSet::new(), BTreeSet::new()));
    for &id in &one {
        assert_eq!(observers(&game, id), BTreeSet::new());
    }
    for &id in &two {
        assert_eq!(observers(&game, id), BTreeSet::from([a, b]));
    }
    // An object moved between rooms follows; a despawned one goes once.
    game.server.interest_mut::<Rooms>().unwrap().set_object_room(ids[0], Some(2));
    game.server.despawn(ids[5]);
    assert_eq!(game.server.interest::<Rooms>().unwrap().object_room(ids[5]), None);
    game.step();
    let now: BTreeSet<NetId> = [ids[0], ids[3], ids[4]].into();
    for client in &mut game.clients {
        assert_eq!(held(client), now);
        assert_eq!(events(client), ([ids[0]].into(), [ids[5]].into()));
        assert_eq!(client.stats().dropped_unknown_object, 0);
    }
}

#[test]
fn owner_only_follows_ownership_readiness_and_a_policy_set_while_running() {
    let mut game = tank_game(Path::Memory, 2);
    game.join_all();
    let (a, b) = (game.player(0), game.player(1));
    // No policy yet: everyone sees everything.
    let mine = game.server.spawn(TANK, Tank::new(1, "a's"), Some(a)).unwrap();
    let theirs = game.server.spawn(TANK, Tank::new(2, "b's"), Some(b)).unwrap();
    let nobodys = game.server.spawn(TANK, Tank::new(3, "none"), None).unwrap();
    game.step();
    let all: BTreeSet<NetId> = [mine, theirs, nobodys].into();
    for client in &mut game.clients {
        assert_eq!(held(client), all);
        events(client);
    }

    // Set while running: the policy learns the players and owners, and what it does not let
    // a player observe is despawned on its side at the next update.
    game.server.set_interest(OwnerOnly::new());
    game.step();
    assert_eq!(held(&game.clients[0]), [mine].into());
    assert_eq!(held(&game.clients[1]), [theirs].into());
    assert_eq!(events(&mut game.clients[0]), (BTreeSet::new(), [theirs, nobodys].into()));
    assert_eq!(observers(&game, nobodys), BTreeSet::new());
    assert_eq!(game.server.interest::<OwnerOnly<PlayerId, NetId>>().unwrap().owner(mine), Some(a));

    // Ownership moves the object.
    game.server.set_owner(mine, Some(b)).unwrap();
    game.step();
    assert_eq!(held(&game.clients[0]), BTreeSet::new());
    assert_eq!(held(&game.clients[1]), [mine, theirs].into());
    assert!(game.clients[1].is_owned(mine));
    // A new object goes only to its owner.
    let new = game.server.spawn(TANK, Tank::new(4, "a's new"), Some(a)).unwrap();
    game.step();
    assert_eq!(held(&game.clients[0]), [new].into());
    assert_eq!(observers(&game, new), [a].into());

    // Not ready: the policy forgets it; ready again, it gets what it owns back.
    assert!(game.server.set_not_ready(b));
    game.step();
    assert_eq!(held(&game.clients[1]), BTreeSet::new());
    game.server.get_mut::<Tank>(theirs).unwrap().health.set(22);
    assert!(game.server.set_ready(b));
    game.step();
    assert_eq!(held(&game.clients[1]), [mine, theirs].into());
    assert_eq!(*game.clients[1].get::<Tank>(theirs).unwrap().health, 22);

    // Cleared: every ready player observes everything again.
    game.server.clear_interest();
    game.step();
    let all: BTreeSet<NetId> = [mine, theirs, nobodys, new].into();
    for client in &game.clients {
        assert_eq!(held(client), all);
    }
    for &id in &all {
        assert_eq!(observers(&game, id), [a, b].into());
    }
}

#[test]
fn a_command_on_an_object_no_longer_observed_is_rejected() {
    let mut game = tank_game(Path::Memory, 1);
    game.server.set_interest(Rooms::new());
    game.join_all();
    let player = game.player(0);
    let tank = game.server.spawn(TANK, Tank::new(5, "t"), None).unwrap();
    let rooms = game.server.interest_mut::<Rooms>().unwrap();
    rooms.set_object_room(tank, Some(1));
    rooms.set_player_room(player, Some(1));
    game.step();
    let handle = game.clients[0].handle::<Tank>(tank).unwrap();
    handle.poke(&mut game.clients[0]).unwrap();
    assert!(game.run_for_until(10, |g| g.server.stats().commands_run == 1));

    game.server.interest_mut::<Rooms>().unwrap().set_player_room(player, Some(2));
    game.step();
    assert!(game.clients[0].get::<Tank>(tank).is_none());
    // The client no longer has it; a stale or hostile one sends the command anyway.
    let poke = wire::Command { net_id: tank, behaviour: 0, rpc: RpcId::of_name("poke") };
    forge(&mut game.clients[0], &poke, &[]).unwrap();
    assert!(game.run_for_until(10, |g| g.server.stats().rejected_not_observer == 1));
    assert_eq!(game.server.stats().commands_run, 1);
    assert_eq!(game.server.get::<Tank>(tank).unwrap().pokes, [player]);
}

#[test]
fn the_host_player_observes_everything_whatever_the_policy() {
    let mut game = Game::new(Path::Memory);
    let now = game.now;
    game.server.join_host(now).unwrap();
    game.add_client(|c| c.register_prefab(TANK, Tank::default));
    game.server.set_interest(Rooms::new());
    game.join_all();
    let host = game.server.host_player().unwrap();
    let remote = game.player(0);
    let here = game.server.spawn(TANK, Tank::new(1, "here"), None).unwrap();
    let there = game.server.spawn(TANK, Tank::new(2, "there"), None).unwrap();
    let rooms = game.server.interest_mut::<Rooms>().unwrap();
    rooms.set_object_room(here, Some(1));
    rooms.set_object_room(there, Some(2));
    rooms.set_player_room(remote, Some(1));
    // Putting the host player in a room changes nothing for it.
    rooms.set_player_room(host, Some(1));
    game.step();
    assert_eq!(held(&game.clients[0]), [here].into());
    assert_eq!(observers(&game, here), [host, remote].into());
    assert_eq!(observers(&game, there), [host].into());
    let mut spawned = Vec::new();
    while let Some(event) = game.server.poll_host_event() {
        if let ClientObjectEvent::Spawned { net_id, .. } = event {
            spawned.push(net_id);
        }
    }
    assert_eq!(spawned, [here, there]);
    // Its hooks run on the shared object, in view or not.
    game.server.get_mut::<Tank>(there).unwrap().health.set(20);
    game.step();
    assert_eq!(game.server.get::<Tank>(there).unwrap().health_changes, [(2, 20)]);
    game.server.interest_mut::<Rooms>().unwrap().set_player_room(host, Some(2));
    game.step();
    assert_eq!(observers(&game, here), [host, remote].into());
    assert_eq!(game.server.poll_host_event(), None);
}

#[test]
fn a_policy_forgets_players_not_ready_or_gone_and_learns_them_again_when_ready() {
    let mut game = tank_game(Path::Memory, 2);
    game.server.set_interest(Grid::new(RADIUS, RADIUS).unwrap());
    game.join_all();
    let (a, b) = (game.player(0), game.player(1));
    game.server.set_player_position(a, [0.0, 0.0, 0.0]);
    game.server.set_player_position(b, [100.0, 0.0, 0.0]);
    let near = game.server.spawn(TANK, Tank::new(1, "near a"), None).unwrap();
    game.server.set_object_position(near, [3.0, 1.0, 4.0]);
    let far = game.server.spawn(TANK, Tank::new(2, "near b"), None).unwrap();
    game.server.set_object_position(far, [100.0, 0.0, 5.0]);
    game.step();
    assert_eq!(held(&game.clients[0]), [near].into());
    assert_eq!(held(&game.clients[1]), [far].into());
    let players = |g: &Game| g.server.interest::<Grid>().unwrap().player_count();
    assert_eq!(players(&game), 2);

    // Not ready: out of the policy, and sent nothing however it moves.
    assert!(game.server.set_not_ready(a));
    assert_eq!(players(&game), 1);
    game.server.set_player_position(a, [100.0, 0.0, 0.0]);
    game.step();
    assert_eq!(held(&game.clients[0]), BTreeSet::new());
    assert_eq!(players(&game), 1);
    assert_eq!(observers(&game, far), [b].into());
    // Ready again: back in the policy at the position last given, and sent what is near it.
    assert!(game.server.set_ready(a));
    assert_eq!(players(&game), 2);
    game.step();
    assert_eq!(held(&game.clients[0]), [far].into());
    assert_eq!(observers(&game, far), [a, b].into());

    // Gone: out of the policy too.
    game.server.server_mut().disconnect(b);
    game.step();
    assert_eq!(players(&game), 1);
    assert_eq!(observers(&game, far), [a].into());
    // A despawned object is out of it.
    game.server.despawn(near);
    assert_eq!(game.server.interest::<Grid>().unwrap().object_count(), 1);
}

#[test]
fn inputs_given_while_a_player_is_not_ready_take_effect_when_it_is() {
    let mut game = tank_game(Path::Memory, 1);
    game.server.set_interest(Rooms::new());
    game.join_all();
    let player = game.player(0);
    let tank = game.server.spawn(TANK, Tank::new(1, "t"), None).unwrap();
    game.server.interest_mut::<Rooms>().unwrap().set_object_room(tank, Some(1));
    assert!(game.server.set_not_ready(player));
    game.step();
    // The game puts it in a room before it is ready (a scene change, say): it is sent nothing
    // while not ready...
    game.server.interest_mut::<Rooms>().unwrap().set_player_room(player, Some(1));
    game.run_for(3);
    assert_eq!(held(&game.clients[0]), BTreeSet::new());
    assert_eq!(observers(&game, tank), BTreeSet::new());
    // ...and what the policy says it observes once it is.
    assert!(game.server.set_ready(player));
    game.step();
    assert_eq!(held(&game.clients[0]), [tank].into());
    assert_eq!(observers(&game, tank), [player].into());
}

#[test]
fn a_policy_set_later_learns_the_positions_given_before_and_replaces_the_last() {
    let mut game = tank_game(Path::Memory, 1);
    game.join_all();
    let player = game.player(0);
    let near = game.server.spawn(TANK, Tank::new(1, "near"), Some(player)).unwrap();
    let far = game.server.spawn(TANK, Tank::new(2, "far"), None).unwrap();
    // Given with no policy: nothing changes (everyone sees everything), but it is kept.
    game.server.set_object_position(near, [1.0, 0.0, 1.0]);
    game.server.set_object_position(far, [50.0, 0.0, 0.0]);
    game.server.set_player_position(player, [0.0, 0.0, 0.0]);
    game.step();
    assert_eq!(held(&game.clients[0]), [near, far].into());

    game.server.set_interest(Grid::new(RADIUS, RADIUS).unwrap());
    game.step();
    assert_eq!(held(&game.clients[0]), [near].into());
    assert_eq!(game.server.interest::<Grid>().unwrap().object_count(), 2);
    assert!(game.server.interest::<Rooms>().is_none());

    // Another policy replaces it: observers follow the new one.
    game.server.set_interest(Rooms::new());
    assert!(game.server.interest::<Grid>().is_none());
    let rooms = game.server.interest_mut::<Rooms>().unwrap();
    rooms.set_object_room(far, Some(7));
    rooms.set_player_room(player, Some(7));
    game.step();
    assert_eq!(held(&game.clients[0]), [far].into());
    assert_eq!(observers(&game, near), BTreeSet::new());
    assert_eq!(observers(&game, far), [player].into());

    // A policy the game filled and updated itself (its events gone): what it says is what
    // players get, events or not.
    let mut filled = Rooms::new();
    filled.set_object_room(near, Some(3));
    filled.set_player_room(player, Some(3));
    filled.update(&mut Vec::new());
    game.server.set_interest(filled);
    game.step();
    assert_eq!(held(&game.clients[0]), [near].into());
    assert_eq!(observers(&game, near), [player].into());
    assert_eq!(observers(&game, far), BTreeSet::new());
}

#[test]
fn grid_interest_converges_over_a_lossy_network() {
    for seed in [1, 2, 3] {
        let path = Path::Sim { seed, loss: 0.1 };
        let mut game = tank_game(path, 2);
        game.server.set_interest(Grid::new(RADIUS, RADIUS).unwrap());
        game.join_all();
        let players = [game.player(0), game.player(1)];
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut player_pos = [[0.0, 0.0, 0.0], [8.0, 0.0, 0.0]];
        let mut objects: BTreeMap<NetId, [f32; 3]> = BTreeMap::new();
        for i in 0..30 {
            let id = game.server.spawn(TANK, Tank::new(i, "t"), None).unwrap();
            let pos = [rng.range(-20.0, 20.0), 0.0, rng.range(-20.0, 20.0)];
            game.server.set_object_position(id, pos);
            objects.insert(id, pos);
        }
        for tick in 0..150 {
            for (id, pos) in objects.iter_mut() {
                if rng.chance(3) {
                    pos[0] += rng.range(-3.0, 3.0);
                    pos[2] += rng.range(-3.0, 3.0);
                    game.server.set_object_position(*id, *pos);
                }
                if rng.chance(6) {
                    let tank = game.server.get_mut::<Tank>(*id).unwrap();
                    tank.health.modify(|h| *h += 1);
                    tank.inventory.push(format!("t{tick}"));
                }
            }
            for (i, &player) in players.iter().enumerate() {
                player_pos[i][0] += rng.range(-2.0, 2.0);
                game.server.set_player_position(player, player_pos[i]);
            }
            game.step();
        }
        // Once things stop moving, every client holds exactly what is within reach, as it is.
        let expected: Vec<BTreeSet<NetId>> = player_pos
            .iter()
            .map(|at| objects.iter().filter(|(_, p)| within(*at, **p)).map(|(id, _)| *id).collect())
            .collect();
        let converged = game.run_until(|g| {
            (0..2).all(|i| {
                held(&g.clients[i]) == expected[i]
                    && expected[i].iter().all(|&id| same_state(g, i, id))
            })
        });
        let held_now: Vec<_> = game.clients.iter().map(held).collect();
        assert!(converged, "{path:?}: expected {expected:?}, clients hold {held_now:?}");
        for (i, &player) in players.iter().enumerate() {
            for (id, pos) in &objects {
                assert_eq!(
                    game.server.observers(*id).any(|p| p == player),
                    within(player_pos[i], *pos)
                );
            }
        }
        for client in &game.clients {
            assert_eq!(client.stats().dropped_undecodable, 0, "{path:?}");
        }
    }
}

const DIAL: PrefabId = PrefabId::of_name("dial");

/// A value synced on the unreliable channel: versioned full states, resent until acknowledged.
#[derive(Debug, Default, NetworkBehaviour)]
#[network(qos = Unreliable, sync_interval_ms = 20)]
struct Dial {
    #[sync]
    value: SyncVar<u32>,
}

#[test]
fn versioned_state_converges_for_players_that_come_and_go() {
    for seed in [4, 5] {
        let path = Path::Sim { seed, loss: 0.2 };
        let mut game = Game::new(path);
        for _ in 0..2 {
            game.add_client(|c| c.register_prefab(DIAL, Dial::default));
        }
        game.server.set_interest(Rooms::new());
        game.join_all();
        let (a, b) = (game.player(0), game.player(1));
        let dials: Vec<NetId> =
            (0..4).map(|_| game.server.spawn(DIAL, Dial::default(), None).unwrap()).collect();
        let rooms = game.server.interest_mut::<Rooms>().unwrap();
        for (i, &id) in dials.iter().enumerate() {
            rooms.set_object_room(id, Some(u32::from(i % 2 == 0)));
        }
        rooms.set_player_room(b, Some(1));
        for tick in 0..300u32 {
            // A hops between the rooms while every dial turns.
            if tick % 25 == 0 {
                let room = (tick / 25) % 2;
                game.server.interest_mut::<Rooms>().unwrap().set_player_room(a, Some(room));
            }
            for &id in &dials {
                game.server.get_mut::<Dial>(id).unwrap().value.modify(|v| *v += 1);
            }
            game.step();
        }
        let rooms = game.server.interest::<Rooms>().unwrap();
        let room_of = |player| rooms.player_room(player);
        let expected: Vec<BTreeSet<NetId>> = [a, b]
            .iter()
            .map(|&p| {
                dials.iter().copied().filter(|&id| rooms.object_room(id) == room_of(p)).collect()
            })
            .collect();
        let converged = game.run_until(|g| {
            (0..2).all(|i| {
                held(&g.clients[i]) == expected[i]
                    && expected[i].iter().all(|&id| {
                        g.clients[i].get::<Dial>(id).map(|d| *d.value)
                            == g.server.get::<Dial>(id).map(|d| *d.value)
                    })
            })
        });
        assert!(converged, "{path:?}: the dials did not converge");
        // Once the last acknowledgements are in, nobody is owed anything: resends stop
        // (those to a player that left a room stopped when it left).
        game.run_for(100);
        let resent = game.server.stats().states_resent;
        game.run_for(50);
        assert_eq!(game.server.stats().states_resent, resent, "{path:?}");
    }
}
