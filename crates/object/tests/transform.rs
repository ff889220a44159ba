//! `NetworkTransform`: snapshots of changed transforms, each a delta against what the
//! observer acknowledged, over the lossy simulated network in virtual time. Clients converge
//! on the server's state whatever is lost, objects at rest cost nothing, the byte budget
//! holds, owner-authoritative transforms are validated, and the 2D and child variants sync.

mod common;

use std::time::Duration;

use common::{Game, Path};
use sturnus_object::interpolation::Pose;
use sturnus_object::transform::{NetworkTransform, TransformConfig};
use sturnus_object::{NetId, NetworkBehaviour, PrefabId, SyncVar};

const CUBE: PrefabId = PrefabId::of_name("cube");

/// A game behaviour beside the transform.
#[derive(Debug, Default, NetworkBehaviour)]
struct Label {
    #[sync]
    name: SyncVar<u32>,
}

fn cube_config() -> TransformConfig {
    TransformConfig::three_d([-256.0, -16.0, -256.0], [256.0, 48.0, 256.0], 1.0 / 512.0)
        .unwrap()
        .with_send_interval(Duration::from_millis(20))
}

fn cube() -> (NetworkTransform, Label) {
    (NetworkTransform::new(cube_config()), Label::default())
}

/// A pose for cube `i` at step `t`: moving on a circle, turning about y.
fn pose(i: u32, t: u32) -> Pose {
    let a = (i as f32) * 0.3 + (t as f32) * 0.05;
    let half = a / 2.0;
    Pose {
        position: [10.0 * a.cos() + i as f32, 1.0 + (t % 7) as f32 * 0.01, 10.0 * a.sin()],
        rotation: [0.0, half.sin(), 0.0, half.cos()],
        scale: [1.0; 3],
    }
}

/// The pose the server's transform stands for, quantised as it travels.
fn quantised(config: &TransformConfig, pose: Pose) -> Pose {
    let mut t = NetworkTransform::new(*config).at(pose);
    let mut bytes = Vec::new();
    t.write_full(&mut bytes).unwrap();
    t.read_full(&mut &bytes[..]).unwrap();
    t.pose()
}

fn close(a: &Pose, b: &Pose) -> bool {
    let p = a.position.iter().zip(&b.position).all(|(x, y)| (x - y).abs() < 1e-4);
    let dot: f32 = a.rotation.iter().zip(&b.rotation).map(|(x, y)| x * y).sum();
    p && dot.abs() > 0.99999
}

fn set_loss(game: &Game, loss: f64) {
    let server = game.server.server().local_addr().unwrap();
    for client in &game.clients {
        let client = client.client().local_addr().unwrap();
        game.sim().set_link(server, client, common::lossy(loss));
        game.sim().set_link(client, server, common::lossy(loss));
    }
}

fn game_with_cubes(seed: u64, clients: usize, cubes: u32) -> (Game, Vec<NetId>) {
    let mut game = Game::new(Path::Sim { seed, loss: 0.0 });
    for _ in 0..clients {
        game.add_client(|c| c.register_prefab(CUBE, cube));
    }
    game.join_all();
    let ids: Vec<NetId> = (0..cubes)
        .map(|i| {
            let (t, label) = cube();
            game.server.spawn(CUBE, (t.at(pose(i, 0)), label), None).unwrap()
        })
        .collect();
    let seen = game.run_until(|g| {
        g.clients.iter().all(|c| ids.iter().all(|id| c.get::<NetworkTransform>(*id).is_some()))
    });
    assert!(seen, "the cubes were not spawned");
    (game, ids)
}

/// Every client holds the server's quantised pose of every cube.
fn converged(game: &Game, ids: &[NetId]) -> bool {
    ids.iter().all(|id| {
        let server = game.server.get::<NetworkTransform>(*id).unwrap();
        let want = quantised(server.config(), server.pose());
        game.clients.iter().all(|c| close(&c.get::<NetworkTransform>(*id).unwrap().pose(), &want))
    })
}

#[test]
fn moving_cubes_converge_at_20_percent_loss_and_cost_nothing_at_rest() {
    for seed in 0..8 {
        let (mut game, ids) = game_with_cubes(seed, 3, 40);
        // Nothing moved since the spawns: no snapshot at all.
        game.run_for(20);
        assert_eq!(game.server.stats().snapshots_sent, 0, "seed {seed}: snapshots at rest");
        set_loss(&game, 0.2);
        for t in 1..=100 {
            for (i, id) in ids.iter().enumerate() {
                let moving = i % 2 == 0; // half the cubes move
                if moving {
                    let i = u32::try_from(i).unwrap();
                    game.server.get_mut::<NetworkTransform>(*id).unwrap().set_pose(pose(i, t));
                }
            }
            game.run_for(2);
        }
        let ok = game.run_until(|g| converged(g, &ids));
        if !ok {
            for id in &ids {
                let server = game.server.get::<NetworkTransform>(*id).unwrap();
                let want = quantised(server.config(), server.pose());
                for (k, c) in game.clients.iter().enumerate() {
                    let have = c.get::<NetworkTransform>(*id).unwrap().pose();
                    if !close(&have, &want) {
                        eprintln!("{id} client {k}: have {have:?} want {want:?}");
                    }
                }
            }
            for c in &game.clients {
                eprintln!("{:?}", c.stats());
            }
            eprintln!("{:?}", game.server.stats());
        }
        assert!(ok, "seed {seed}: the clients never converged");
        // At rest and acknowledged: the server stops sending.
        let quiet = game.run_until(|g| {
            let before = g.server.stats().snapshots_sent;
            g.run_for(30);
            g.server.stats().snapshots_sent == before
        });
        assert!(quiet, "seed {seed}: snapshots never stopped");
        let stats = game.server.stats();
        assert!(stats.transform_updates > 0);
        let bits = stats.transform_update_bits as f64 / stats.transform_updates as f64;
        assert!(bits < 79.0, "seed {seed}: {bits:.1} bits per changed cube, no better than whole");
        for client in &game.clients {
            assert!(client.stats().transform_states > 0);
        }
        assert_eq!(stats.snapshot_acks_dropped, 0, "seed {seed}: an honest ack was refused");
    }
}
