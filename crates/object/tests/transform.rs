//! `NetworkTransform`: snapshots of changed transforms, each a delta against what the
//! observer acknowledged, over the lossy simulated network in virtual time. Clients converge
//! on the server's state whatever is lost, objects at rest cost nothing, the byte budget
//! holds, owner-authoritative transforms are validated, and the 2D and child variants sync.

mod common;

use std::time::Duration;

use common::cubes::{
    AVATAR, CUBE, avatar_config, close, converged, cube, cube_config, game_with_cubes, pose,
    quantised, set_loss,
};
use common::{Game, Path};
use sturnus_object::interpolation::Pose;
use sturnus_object::transform::{NetworkTransform, TransformConfig};
use sturnus_object::{NetId, NetworkBehaviour};

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

/// Spawns `n` cubes on a clean network with `config`, then makes the links lossy.
fn budget_game(kbps: u32) -> Game {
    let mut objects = common::objects_config();
    objects.transforms.budget_kbps = kbps;
    let mut game = Game::with_configs(Path::Sim { seed: 7, loss: 0.0 }, objects);
    game.add_client(|c| c.register_prefab(CUBE, cube));
    game.join_all();
    game
}

#[test]
fn the_byte_budget_holds_and_no_moving_cube_starves() {
    let kbps = 64;
    let mut game = budget_game(kbps);
    let ids: Vec<NetId> = (0..300)
        .map(|i| {
            let (t, label) = cube();
            game.server.spawn(CUBE, (t.at(pose(i, 0)), label), None).unwrap()
        })
        .collect();
    assert!(
        game.run_until(|g| ids
            .iter()
            .all(|id| g.clients[0].get::<NetworkTransform>(*id).is_some()))
    );
    let start = game.server.stats();
    let begin = game.elapsed();
    // Every cube moves every frame for 3 s: far more than 64 kbit/s could carry whole.
    let mut worst_age = Duration::ZERO;
    for t in 1..=300 {
        for (i, id) in ids.iter().enumerate() {
            let i = u32::try_from(i).unwrap();
            game.server.get_mut::<NetworkTransform>(*id).unwrap().set_pose(pose(i, t));
        }
        game.step();
        if t > 100 {
            // Past the first second, every cube's newest state on the client is recent.
            let now = game.server.server().server_time(game.now).unwrap();
            for id in &ids {
                let last = game.clients[0].get::<NetworkTransform>(*id).unwrap().last_update();
                let age = last.map_or(Duration::MAX, |last| now.saturating_sub(last));
                worst_age = worst_age.max(age);
            }
        }
    }
    let elapsed = (game.elapsed() - begin).as_secs_f64();
    let stats = game.server.stats();
    let bytes = (stats.snapshot_bytes - start.snapshot_bytes) as f64;
    let rate = bytes * 8.0 / 1000.0 / elapsed;
    // The budget, plus one tick's carry-over and one snapshot's overshoot over the run.
    let slack = f64::from(kbps) * 0.05 + 1200.0 * 8.0 / 1000.0 / elapsed;
    assert!(rate <= f64::from(kbps) + slack, "{rate:.1} kbit/s over a {kbps} kbit/s budget");
    assert!(rate >= f64::from(kbps) * 0.8, "{rate:.1} kbit/s: the budget was not used");
    // 300 cubes at ~60 bits each take ~300 ms of a 64 kbit/s budget per round; priority by
    // waiting time gives each a turn every round or so.
    assert!(worst_age < Duration::from_millis(1500), "a cube starved: {worst_age:?} old");
}

fn avatar() -> (NetworkTransform, NetworkTransform) {
    let turret = TransformConfig::two_d([-10.0, -10.0], [10.0, 10.0], 0.01)
        .unwrap()
        .with_send_interval(Duration::from_millis(20));
    (NetworkTransform::new(avatar_config()), NetworkTransform::child(turret, 7))
}

#[test]
fn an_owner_moves_its_avatar_within_the_speed_limit_and_is_corrected_beyond_it() {
    for seed in 0..10 {
        owner_moves(seed);
    }
}

fn owner_moves(seed: u64) {
    let mut game = Game::new(Path::Sim { seed, loss: 0.0 });
    for _ in 0..2 {
        game.add_client(|c| c.register_prefab(AVATAR, avatar));
    }
    game.join_all();
    set_loss(&game, 0.3);
    let owner = game.player(0);
    let id = game.server.spawn(AVATAR, avatar(), Some(owner)).unwrap();
    assert!(game.run_until(|g| g.clients.iter().all(|c| c.get::<NetworkTransform>(id).is_some())));
    // The owner walks at 2 m/s along x for 2 s, turning; the server turns the turret.
    for frame in 1..=200_u32 {
        let x = frame as f32 * 0.02;
        let owner_side = game.clients[0].get_mut::<NetworkTransform>(id).unwrap();
        owner_side.set_position([x, 0.0, 0.0]);
        owner_side.set_angle(x / 4.0);
        game.server.transform_part_mut(id, 7).unwrap().set_angle(frame as f32 * 0.01);
        game.step();
    }
    // The walk's last state reaches the server (reliably, once at rest) and the other client.
    let followed = game.run_for_until(300, |g| {
        let server = g.server.get::<NetworkTransform>(id).unwrap().pose();
        let other = g.clients[1].get::<NetworkTransform>(id).unwrap().pose();
        (server.position[0] - 4.0).abs() < 0.011 && (other.position[0] - 4.0).abs() < 0.011
    });
    assert!(followed, "seed {seed}: the server and the other client did not follow the owner");
    let stats = game.server.stats();
    assert!(stats.transform_inputs > 50, "seed {seed}: {stats:?}");
    assert_eq!(stats.transform_inputs_refused, 0, "seed {seed}: an honest input was refused");
    // The child part is the server's and reached both clients.
    let turret_ok = game.run_for_until(300, |g| {
        g.clients.iter().all(|c| {
            let child = c.transform_part(id, 7).unwrap();
            (yaw(child.pose().rotation) - 2.0).abs() < 0.01
        })
    });
    assert!(turret_ok, "seed {seed}: the turret did not reach the clients");

    // A teleport 50 m away in one step: refused, and the owner put back where the server
    // has it.
    game.clients[0].get_mut::<NetworkTransform>(id).unwrap().set_position([54.0, 0.0, 0.0]);
    let corrected =
        game.run_until(|g| g.clients[0].get::<NetworkTransform>(id).unwrap().corrections() > 0);
    assert!(corrected, "seed {seed}: the owner was never corrected");
    assert!(game.server.stats().transform_inputs_refused >= 1);
    let back = game.clients[0].get::<NetworkTransform>(id).unwrap().pose();
    assert!((back.position[0] - 4.0).abs() < 0.011, "seed {seed}: corrected to {back:?}");
    let server = game.server.get::<NetworkTransform>(id).unwrap().pose();
    assert!((server.position[0] - 4.0).abs() < 0.011, "seed {seed}: the server moved: {server:?}");
}

#[test]
fn only_the_owner_may_send_inputs() {
    let mut game = Game::new(Path::Memory);
    for _ in 0..2 {
        game.add_client(|c| c.register_prefab(AVATAR, avatar));
    }
    game.join_all();
    let id = game.server.spawn(AVATAR, avatar(), Some(game.player(0))).unwrap();
    assert!(game.run_until(|g| g.clients.iter().all(|c| c.get::<NetworkTransform>(id).is_some())));
    // Client 1 forges an input for client 0's avatar: a small, plausible step.
    let step = Pose { position: [0.05, 0.0, 0.0], ..Pose::default() };
    let mut near = Vec::new();
    NetworkTransform::new(avatar_config()).at(step).write_full(&mut near).unwrap();
    let header = sturnus_object::wire::TransformInput { net_id: id, behaviour: 0, seq: 1 };
    let channel = sturnus_message::ChannelLayout::default()
        .first_of(sturnus_message::Qos::Unreliable)
        .unwrap();
    game.clients[1]
        .client_mut()
        .send_with::<sturnus_object::wire::TransformInput>(channel, |out| {
            sturnus_object::wire::put(out, &header)?;
            out.extend_from_slice(&near);
            Ok(())
        })
        .unwrap();
    game.run_for(5);
    assert_eq!(game.server.stats().transform_inputs_refused, 1);
    assert_eq!(game.server.get::<NetworkTransform>(id).unwrap().pose().position, [0.0; 3]);
}

/// The angle about z of a unit quaternion.
fn yaw(q: [f32; 4]) -> f32 {
    let [x, y, z, w] = q;
    (2.0 * (w * z + x * y)).atan2(1.0 - 2.0 * (y * y + z * z))
}

fn unreliable() -> sturnus_message::ChannelId {
    sturnus_message::ChannelLayout::default().first_of(sturnus_message::Qos::Unreliable).unwrap()
}

#[test]
fn forged_snapshots_and_acknowledgements_are_dropped_and_counted() {
    use sturnus_object::wire::{Snapshot, SnapshotAck, put};
    let (mut game, ids) = game_with_cubes(1, 1, 10);
    let player = game.player(0);
    // The server sends garbage snapshots: random entries, truncated, an unknown base.
    let mut rng = 5_u64;
    for round in 0..300_u32 {
        rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let len = usize::try_from(rng >> 58).unwrap();
        let bytes: Vec<u8> = rng.to_le_bytes().into_iter().cycle().take(len).collect();
        let header = Snapshot { seq: 1000 + round, base: round % 3, time_ms: u64::from(round) };
        let server = game.server.server_mut();
        server
            .send_with::<Snapshot>(player, unreliable(), |out| {
                put(out, &header)?;
                out.extend_from_slice(&bytes);
                Ok(())
            })
            .unwrap();
        game.step();
    }
    let stats = game.clients[0].stats();
    assert!(stats.snapshots_dropped > 0, "{stats:?}");
    // The poses stay inside the bounds whatever was read.
    for id in &ids {
        let pose = game.clients[0].get::<NetworkTransform>(*id).unwrap().pose();
        assert!(pose.position.iter().all(|c| c.is_finite() && c.abs() <= 256.0), "{pose:?}");
    }
    // A client acknowledges a snapshot never sent: dropped, counted, charged.
    let forged = SnapshotAck { ack_id: 1, newest: 5000, bits: u64::MAX };
    let server_stats = game.server.stats();
    game.clients[0]
        .client_mut()
        .send_with::<SnapshotAck>(unreliable(), |out| put(out, &forged))
        .unwrap();
    // First make sure the server has a stream for the player: move a cube.
    game.server.get_mut::<NetworkTransform>(ids[0]).unwrap().set_position([1.0, 1.0, 1.0]);
    game.run_for(10);
    let forged = SnapshotAck { ack_id: 2, newest: 5000, bits: u64::MAX };
    game.clients[0]
        .client_mut()
        .send_with::<SnapshotAck>(unreliable(), |out| put(out, &forged))
        .unwrap();
    game.run_for(10);
    assert!(game.server.stats().snapshot_acks_dropped > server_stats.snapshot_acks_dropped);
    // The honest stream carries on: the moved cube arrives.
    let moved = game.run_until(|g| {
        g.clients[0].get::<NetworkTransform>(ids[0]).unwrap().pose().position[0] > 0.99
    });
    assert!(moved);
}

#[test]
fn a_player_made_not_ready_then_ready_again_converges_on_moving_cubes() {
    for seed in 0..5 {
        let (mut game, ids) = game_with_cubes(seed, 2, 20);
        set_loss(&game, 0.2);
        let player = game.player(0);
        for t in 1..=150 {
            for (i, id) in ids.iter().enumerate() {
                let i = u32::try_from(i).unwrap();
                game.server.get_mut::<NetworkTransform>(*id).unwrap().set_pose(pose(i, t));
            }
            // Twice out of the world and back while everything moves (snapshots from before
            // still in flight).
            if t == 40 || t == 90 {
                assert!(game.server.set_not_ready(player));
            }
            if t == 43 || t == 95 {
                assert!(game.server.set_ready(player));
            }
            game.step();
        }
        let ok = game.run_until(|g| {
            g.clients[0].object_count() == ids.len()
                && g.clients[1].object_count() == ids.len()
                && converged(g, &ids)
        });
        assert!(ok, "seed {seed}: the clients never converged");
    }
}

/// Issue 18's interpolation test, end to end: a cube moving along x at 3 m/s, its states
/// sent at 20 Hz over a link of 40 ms ± 10 ms with 5 % loss each way, rendered every frame.
/// The rendered x never steps back, and never lags the newest state received by more than
/// the buffer's delay plus one send interval.
#[test]
fn rendered_motion_never_steps_back_or_lags_past_the_delay_over_a_jittery_lossy_link() {
    let send = Duration::from_millis(50);
    let mut link = common::lossy(0.05);
    link.latency = Duration::from_millis(40);
    link.jitter = Duration::from_millis(10);
    for seed in 0..5 {
        let config = cube_config().with_send_interval(send);
        let mut game = Game::new(Path::Sim { seed, loss: 0.0 });
        game.add_client(|c| c.register_prefab(CUBE, move || NetworkTransform::new(config)));
        game.join_all();
        let (server, client) = (
            game.server.server().local_addr().unwrap(),
            game.clients[0].client().local_addr().unwrap(),
        );
        game.sim().set_link(server, client, link.clone());
        game.sim().set_link(client, server, link.clone());
        let id = game.server.spawn(CUBE, NetworkTransform::new(config), None).unwrap();
        assert!(game.run_until(|g| g.clients[0].get::<NetworkTransform>(id).is_some()));
        let speed = 3.0_f32;
        let mut previous = f32::MIN;
        let mut checked = 0;
        for frame in 0..600 {
            let now = game.now;
            let server_time = game.server.server().server_time(now).unwrap().as_secs_f32();
            game.server.get_mut::<NetworkTransform>(id).unwrap().set_position([
                speed * server_time,
                0.0,
                0.0,
            ]);
            game.step();
            let at = game.now;
            let transform = game.clients[0].get_mut::<NetworkTransform>(id).unwrap();
            let x = transform.sample(at).position[0];
            if frame < 100 {
                previous = x;
                continue; // the buffer's estimates settle
            }
            assert!(
                x >= previous - 1e-4,
                "seed {seed} frame {frame}: stepped back {previous} -> {x}"
            );
            previous = x;
            let newest = transform.last_update().unwrap().as_secs_f32();
            let shown = x / speed;
            let lag = newest - shown;
            let bound = (transform.buffer().delay() + send).as_secs_f32() + 0.002;
            assert!(lag <= bound, "seed {seed} frame {frame}: {lag:.3} s behind, bound {bound:.3}");
            checked += 1;
        }
        assert!(checked >= 500);
    }
}

/// Interest from transforms: a grid fed by the cubes' own transforms and by each player's
/// avatar (its focus), no game code in between. Cubes wander in and out of the players'
/// radius at 10 % loss; once they stop, each client holds exactly the cubes within its radius,
/// at the server's poses.
#[test]
fn transforms_feed_interest_and_converge_through_enter_and_leave() {
    use sturnus_object::PlayerId;
    use sturnus_object::interest::GridInterest;
    const RADIUS: f32 = 12.0;
    for seed in 0..3 {
        let mut game = Game::new(Path::Sim { seed, loss: 0.0 });
        for _ in 0..2 {
            game.add_client(|c| c.register_prefab(CUBE, cube));
        }
        game.join_all();
        game.server.set_interest(GridInterest::<PlayerId, NetId>::new(RADIUS, RADIUS).unwrap());
        // Each player's avatar, 30 m apart, is its point of view.
        let avatars: Vec<NetId> = (0..2)
            .map(|k| {
                let at = Pose { position: [k as f32 * 30.0, 0.0, 0.0], ..Pose::default() };
                let (t, label) = cube();
                let id = game.server.spawn(CUBE, (t.at(at), label), Some(game.player(k))).unwrap();
                game.server.set_player_focus(game.player(k), Some(id));
                id
            })
            .collect();
        let cubes: Vec<NetId> = (0..30)
            .map(|i| {
                let (t, label) = cube();
                game.server.spawn(CUBE, (t.at(pose(i, 0)), label), None).unwrap()
            })
            .collect();
        set_loss(&game, 0.1);
        // The cubes sweep along x across both players' radius and back.
        for t in 1..=300_u32 {
            for (i, id) in cubes.iter().enumerate() {
                let phase = t as f32 * 0.02 + i as f32 * 0.4;
                let x = 15.0 + 25.0 * phase.sin();
                let z = (i as f32 % 5.0) * 2.0 - 4.0;
                game.server.get_mut::<NetworkTransform>(*id).unwrap().set_position([x, 1.0, z]);
            }
            game.step();
        }
        let within = |g: &Game, k: usize, id: NetId| {
            let me = g.server.get::<NetworkTransform>(avatars[k]).unwrap().pose().position;
            let p = g.server.get::<NetworkTransform>(id).unwrap().pose().position;
            ((p[0] - me[0]).powi(2) + (p[2] - me[2]).powi(2)).sqrt() <= RADIUS
        };
        let ok = game.run_until(|g| {
            (0..2).all(|k| {
                let client = &g.clients[k];
                cubes.iter().all(|&id| {
                    let held = client.get::<NetworkTransform>(id);
                    if within(g, k, id) {
                        let server = g.server.get::<NetworkTransform>(id).unwrap();
                        let want = quantised(server.config(), server.pose());
                        held.is_some_and(|t| close(&t.pose(), &want))
                    } else {
                        held.is_none()
                    }
                })
            })
        });
        assert!(ok, "seed {seed}: the clients did not converge on their interest");
        // Both saw some cubes come and go.
        let stats = game.clients[0].stats();
        assert!(stats.spawned > 30 && stats.despawned > 10, "seed {seed}: {stats:?}");
    }
}

/// A cube that rests, then moves: the client shows it standing still until just before the
/// first state of the move (the server marks that state as following a rest), not creeping
/// across the whole rest.
#[test]
fn after_a_rest_the_move_starts_on_time() {
    let send = Duration::from_millis(50);
    let config = cube_config().with_send_interval(send);
    let mut game = Game::new(Path::Sim { seed: 4, loss: 0.0 });
    game.add_client(|c| c.register_prefab(CUBE, move || NetworkTransform::new(config)));
    game.join_all();
    let id = game.server.spawn(CUBE, NetworkTransform::new(config), None).unwrap();
    assert!(game.run_until(|g| g.clients[0].get::<NetworkTransform>(id).is_some()));
    // A first short move, so the client has states, then a rest of a second.
    for t in 1..=20_u32 {
        game.server.get_mut::<NetworkTransform>(id).unwrap().set_position([
            t as f32 * 0.01,
            0.0,
            0.0,
        ]);
        game.step();
    }
    game.run_for(100);
    let start = game.server.get::<NetworkTransform>(id).unwrap().pose().position[0];
    let moved_at = game.server.server().server_time(game.now).unwrap();
    let mut early = 0;
    for t in 1..=100_u32 {
        let x = start + t as f32 * 0.03;
        game.server.get_mut::<NetworkTransform>(id).unwrap().set_position([x, 0.0, 0.0]);
        game.step();
        let at = game.now;
        let transform = game.clients[0].get_mut::<NetworkTransform>(id).unwrap();
        let shown = transform.sample(at).position[0];
        let render = transform.buffer().render_time().unwrap();
        // Before the move began (less one interval for the hold), the cube stands at `start`.
        if render + send < moved_at && shown > start + 0.002 {
            early += 1;
        }
    }
    assert_eq!(early, 0, "the move was shown {early} frames early");
}

/// Under a budget too small for everything, nearer cubes go first (the player's position is
/// its focus object's), and an important one is in every snapshot.
#[test]
fn near_and_important_cubes_go_first_under_a_tight_budget() {
    let mut game = budget_game(24);
    let player = game.player(0);
    let avatar = {
        let (t, label) = cube();
        game.server.spawn(CUBE, (t, label), Some(player)).unwrap()
    };
    game.server.set_player_focus(player, Some(avatar));
    // 100 cubes around the player (within 10 m) and 100 far away (200 m).
    let place = |i: u32| {
        let far = i >= 100;
        let x = if far { 200.0 } else { 0.0 } + (i % 10) as f32;
        [x, 1.0, (i % 100 / 10) as f32]
    };
    let ids: Vec<NetId> = (0..200)
        .map(|i| {
            let (t, label) = cube();
            let at = Pose { position: place(i), ..Pose::default() };
            game.server.spawn(CUBE, (t.at(at), label), None).unwrap()
        })
        .collect();
    let important = ids[150]; // a far one, flagged
    game.server.get_mut::<NetworkTransform>(important).unwrap().set_important(true);
    assert!(
        game.run_until(|g| ids
            .iter()
            .all(|id| g.clients[0].get::<NetworkTransform>(*id).is_some()))
    );
    let mut updates = vec![0_u32; ids.len()];
    let mut last = vec![None; ids.len()];
    let mut important_worst = Duration::ZERO;
    for t in 1..=400_u32 {
        for (i, id) in ids.iter().enumerate() {
            let i = u32::try_from(i).unwrap();
            let mut p = place(i);
            p[1] = 1.0 + (t as f32 * 0.1 + i as f32).sin(); // every cube bobs
            game.server.get_mut::<NetworkTransform>(*id).unwrap().set_position(p);
        }
        game.step();
        let now = game.server.server().server_time(game.now).unwrap();
        for (k, id) in ids.iter().enumerate() {
            let seen = game.clients[0].get::<NetworkTransform>(*id).unwrap().last_update();
            if seen != last[k] {
                updates[k] += 1;
                last[k] = seen;
            }
        }
        if t > 100 {
            let seen = game.clients[0].get::<NetworkTransform>(important).unwrap().last_update();
            important_worst = important_worst.max(now.saturating_sub(seen.unwrap_or_default()));
        }
    }
    let near: u32 = updates[..100].iter().sum();
    let far: u32 = updates[100..].iter().sum();
    // Nearness scales priority down to a quarter, no further: the far cubes get their turns.
    assert!(2 * near > 3 * far, "near cubes were updated {near} times, far ones {far}");
    assert!(updates.iter().all(|&n| n >= 3), "a cube starved: {updates:?}");
    assert!(
        important_worst < Duration::from_millis(150),
        "the important cube waited {important_worst:?}"
    );
}

/// The uplink stalls for 2.5 s while the cubes keep moving: acknowledgements arrive later than
/// the server remembers its snapshots (128), then overtaken by fresh ones. The client still
/// converges exactly. (The rule that such a late acknowledgement never becomes the base was
/// found by a model of the protocol; this run does not hit the case it guards.)
#[test]
fn acknowledgements_later_than_the_ring_do_not_become_the_base() {
    for seed in 0..4 {
        let (mut game, ids) = game_with_cubes(seed, 1, 6);
        let (server, client) = (
            game.server.server().local_addr().unwrap(),
            game.clients[0].client().local_addr().unwrap(),
        );
        for t in 1..=700_u32 {
            if t == 100 {
                let mut slow = common::lossy(0.0);
                slow.latency = Duration::from_millis(2500);
                game.sim().set_link(client, server, slow);
            }
            if t == 400 {
                game.sim().set_link(client, server, common::lossy(0.0));
            }
            for (i, id) in ids.iter().enumerate() {
                let i = u32::try_from(i).unwrap();
                game.server.get_mut::<NetworkTransform>(*id).unwrap().set_pose(pose(i, t));
            }
            game.step();
        }
        let ok = game.run_until(|g| converged(g, &ids));
        assert!(ok, "seed {seed}: the client never converged");
    }
}

/// Misuse is an error, not silence: a transform whose speed limit is NaN (it would let every
/// input through) or whose thresholds are negative is not spawned, and a budget of zero (no
/// transform would ever be sent) is not a configuration.
#[test]
fn invalid_transform_settings_are_refused() {
    let mut game = Game::new(Path::Memory);
    let nan = avatar_config().owner_authoritative(Some(f32::NAN));
    let err = game.server.spawn(AVATAR, NetworkTransform::new(nan), None).unwrap_err();
    assert!(matches!(err, sturnus_object::ObjectError::InvalidConfig { .. }), "{err}");
    let negative = cube_config().with_thresholds(-1.0, 0.0, 0.0);
    assert!(game.server.spawn(CUBE, NetworkTransform::new(negative), None).is_err());
    assert_eq!(game.server.object_count(), 0);
    // A valid one still spawns, with the next id.
    assert!(game.server.spawn(CUBE, NetworkTransform::new(cube_config()), None).is_ok());

    let mut objects = sturnus_object::ObjectConfig::default();
    objects.transforms.budget_kbps = 0;
    let layout = sturnus_message::ChannelLayout::default();
    assert!(objects.validate(&layout).is_err());
}
