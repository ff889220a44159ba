//! Cubes with a `NetworkTransform` for the transform tests: their prefab, a moving pose, and a
//! game of them over the lossy simulated network.

use std::time::Duration;

use sturnus_object::interpolation::Pose;
use sturnus_object::transform::{NetworkTransform, TransformConfig};
use sturnus_object::{NetId, NetworkBehaviour, PrefabId, SyncVar};

use super::{Game, Path};

pub(crate) const CUBE: PrefabId = PrefabId::of_name("cube");

/// A game behaviour beside the transform.
#[derive(Debug, Default, NetworkBehaviour)]
pub(crate) struct Label {
    #[sync]
    pub(crate) name: SyncVar<u32>,
}

/// 3D, 512 values per metre, a state every 20 ms.
pub(crate) fn cube_config() -> TransformConfig {
    TransformConfig::three_d([-256.0, -16.0, -256.0], [256.0, 48.0, 256.0], 1.0 / 512.0)
        .unwrap()
        .with_send_interval(Duration::from_millis(20))
}

pub(crate) const AVATAR: PrefabId = PrefabId::of_name("avatar");

/// An avatar's transform: 2D, owner-authoritative, at most 5 m/s, a state every 20 ms.
pub(crate) fn avatar_config() -> TransformConfig {
    TransformConfig::two_d([-100.0, -100.0], [100.0, 100.0], 0.01)
        .unwrap()
        .with_send_interval(Duration::from_millis(20))
        .owner_authoritative(Some(5.0))
}

pub(crate) fn cube() -> (NetworkTransform, Label) {
    (NetworkTransform::new(cube_config()), Label::default())
}

/// A pose for cube `i` at step `t`: moving on a circle, turning about y.
pub(crate) fn pose(i: u32, t: u32) -> Pose {
    let a = (i as f32) * 0.3 + (t as f32) * 0.05;
    let half = a / 2.0;
    Pose {
        position: [10.0 * a.cos() + i as f32, 1.0 + (t % 7) as f32 * 0.01, 10.0 * a.sin()],
        rotation: [0.0, half.sin(), 0.0, half.cos()],
        scale: [1.0; 3],
    }
}

/// The pose the server's transform stands for, quantised as it travels.
pub(crate) fn quantised(config: &TransformConfig, pose: Pose) -> Pose {
    let mut t = NetworkTransform::new(*config).at(pose);
    let mut bytes = Vec::new();
    t.write_full(&mut bytes).unwrap();
    t.read_full(&mut &bytes[..]).unwrap();
    t.pose()
}

/// The same pose, to the precision a state travels at.
pub(crate) fn close(a: &Pose, b: &Pose) -> bool {
    let p = a.position.iter().zip(&b.position).all(|(x, y)| (x - y).abs() < 1e-4);
    let dot: f32 = a.rotation.iter().zip(&b.rotation).map(|(x, y)| x * y).sum();
    p && dot.abs() > 0.99999
}

/// Every link between the server and its clients loses `loss` from now on.
pub(crate) fn set_loss(game: &Game, loss: f64) {
    let server = game.server.server().local_addr().unwrap();
    for client in &game.clients {
        let client = client.client().local_addr().unwrap();
        game.sim().set_link(server, client, super::lossy(loss));
        game.sim().set_link(client, server, super::lossy(loss));
    }
}

/// A game of `clients` on a clean simulated network (seeded) with `cubes` cubes spawned and
/// seen by every client.
pub(crate) fn game_with_cubes(seed: u64, clients: usize, cubes: u32) -> (Game, Vec<NetId>) {
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

/// Every client holds the server's quantised pose of every cube of `ids`.
pub(crate) fn converged(game: &Game, ids: &[NetId]) -> bool {
    ids.iter().all(|id| {
        let server = game.server.get::<NetworkTransform>(*id).unwrap();
        let want = quantised(server.config(), server.pose());
        game.clients.iter().all(|c| close(&c.get::<NetworkTransform>(*id).unwrap().pose(), &want))
    })
}
