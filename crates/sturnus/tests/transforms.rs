//! The NetworkManager with transforms and interest: a player prefab holding a
//! `NetworkTransform` is the player's point of view, so a grid interest set on the server
//! spawns each client only what is near its own avatar, with no game code feeding positions.

use std::time::Duration;

use sturnus::object::interest::GridInterest;
use sturnus::prelude::*;

const PLAYER: PrefabId = PrefabId::of_name("transforms-test-player");
const ROCK: PrefabId = PrefabId::of_name("transforms-test-rock");

fn transform_config() -> TransformConfig {
    TransformConfig::three_d([-500.0, -10.0, -500.0], [500.0, 50.0, 500.0], 0.01).unwrap()
}

fn manager(network: &MemoryNetwork) -> NetworkManager {
    let config = ManagerConfig {
        transport: TransportChoice::Memory(network.clone()),
        ..ManagerConfig::default()
    };
    let mut manager = NetworkManager::new(config);
    manager.register_player_prefab(PLAYER, |spawn: &PlayerSpawn| {
        let at = spawn.start.map_or([0.0; 3], |s| s.position);
        NetworkTransform::new(transform_config()).at(Pose { position: at, ..Pose::default() })
    });
    manager.register_prefab(ROCK, || NetworkTransform::new(transform_config()));
    // Two start positions 200 m apart.
    for x in [0.0, 200.0] {
        manager.add_start_position(StartPosition { position: [x, 0.0, 0.0], yaw: 0.0 });
    }
    manager
}

#[test]
fn each_player_sees_what_is_near_its_own_avatar() {
    let network = MemoryNetwork::new();
    let addr = "10.0.0.1:7777".parse().unwrap();
    let mut server = manager(&network);
    server.start_server(addr).unwrap();
    let objects = server.server().unwrap();
    objects.set_interest(GridInterest::<PlayerId, NetId>::new(20.0, 20.0).unwrap());
    // A rock near each start position, and one far from both.
    let rocks: Vec<NetId> = [[5.0, 0.0, 0.0], [205.0, 0.0, 0.0], [100.0, 0.0, 100.0]]
        .into_iter()
        .map(|position| {
            let rock =
                NetworkTransform::new(transform_config()).at(Pose { position, ..Pose::default() });
            objects.spawn(ROCK, rock, None).unwrap()
        })
        .collect();
    let mut clients: Vec<NetworkManager> = (0..2).map(|_| manager(&network)).collect();
    for client in &mut clients {
        client.start_client(addr).unwrap();
    }
    let mut now = driver::now();
    let mut tick = |server: &mut NetworkManager, clients: &mut [NetworkManager], frames| {
        for _ in 0..frames {
            server.tick(now).unwrap();
            for client in clients.iter_mut() {
                client.tick(now).unwrap();
            }
            now += Duration::from_millis(16);
        }
    };
    tick(&mut server, &mut clients, 40);
    // Each client sees its own avatar and the rock beside it: not the other player, not the
    // far rock.
    let near = |client: &mut NetworkManager| {
        let mut ids: Vec<NetId> = client.objects().collect();
        ids.sort();
        ids
    };
    let seen: Vec<Vec<NetId>> = clients.iter_mut().map(near).collect();
    let mine: Vec<NetId> = clients.iter().map(|c| c.local_player_id().unwrap()).collect();
    for (k, ids) in seen.iter().enumerate() {
        assert_eq!(ids.len(), 2, "client {k} sees {ids:?}");
        assert!(ids.contains(&mine[k]));
    }
    let mut rocks_seen: Vec<NetId> =
        seen.iter().flatten().filter(|id| rocks.contains(id)).copied().collect();
    rocks_seen.sort();
    assert_eq!(rocks_seen, rocks[..2]);

    // The second player's avatar walks to the far rock (the server moves it): its client
    // gets the far rock and loses the one it left, with no game code feeding positions.
    let player = server.server().unwrap().owner(mine[1]).unwrap();
    let walker = mine[1];
    for step in 0..=50_u32 {
        let t = step as f32 / 50.0;
        let position = [200.0 - 100.0 * t, 0.0, 100.0 * t];
        let objects = server.server().unwrap();
        objects.get_mut::<NetworkTransform>(walker).unwrap().set_position(position);
        tick(&mut server, &mut clients, 2);
    }
    tick(&mut server, &mut clients, 20);
    let ids = near(&mut clients[1]);
    assert!(ids.contains(&rocks[2]), "{ids:?}");
    assert!(!ids.contains(&rocks[1]), "{ids:?}");
    assert!(server.server().unwrap().observers(rocks[2]).any(|p| p == player));
}
