//! A player made not ready and ready again (the NetworkManager's scene change) gets the object
//! spawned again; datagrams of the old copy's era arriving late must not undo the new copy's
//! state: an older versioned state or a late acknowledgement (the spawn carries the object's
//! version floor), or a delta resent on a behaviour's own channel (behaviours off the
//! objects' channel send versioned states, never deltas).

mod common;

use common::{Game, Path, forge};
use sturnus_message::{ChannelLayout, Qos};
use sturnus_object::{NetworkBehaviour, PrefabId, SyncVar, wire};

const GAUGE: PrefabId = PrefabId::of_name("ready-versions gauge");

#[derive(Debug, Default, NetworkBehaviour)]
#[network(qos = Unreliable, sync_interval_ms = 50)]
struct Gauge {
    #[sync]
    value: SyncVar<u32>,
}

#[test]
fn late_datagrams_from_before_not_ready_do_not_roll_the_respawned_copy_back() {
    let mut game = Game::new(Path::Memory);
    game.add_client(|c| c.register_prefab(GAUGE, Gauge::default));
    game.join_all();
    let player = game.player(0);
    let id = game.server.spawn(GAUGE, Gauge::default(), None).unwrap();
    assert!(game.run_until(|g| g.clients[0].get::<Gauge>(id).is_some()));
    // Version 1 = 100, version 2 = 200, each applied and acknowledged.
    for value in [100, 200] {
        game.server.get_mut::<Gauge>(id).unwrap().value.set(value);
        assert!(game.run_until(|g| *g.clients[0].get::<Gauge>(id).unwrap().value == value));
    }
    game.run_for(20);

    // A scene change: not ready (the client forgets the gauge), then ready again.
    assert!(game.server.set_not_ready(player));
    assert!(game.run_until(|g| g.clients[0].object_count() == 0));
    // In flight since the old copy held version 2: its acknowledgement, delayed past the
    // round trip of the scene change. It reaches the server right after the player is ready
    // again (the client sends it now; the server reads it in its next update).
    let mut ack = Vec::new();
    wire::put(&mut ack, &wire::AckEntry { net_id: id, behaviour: 0, version: 2 }).unwrap();
    forge(&mut game.clients[0], &wire::Ack, &ack).unwrap();
    let now = game.now;
    game.clients[0].update(now).unwrap();
    game.server.set_ready(player);
    // And version 1's state (100), delayed longer still, reaches the re-spawned copy.
    let unreliable = ChannelLayout::default().first_of(Qos::Unreliable).unwrap();
    let old = Gauge { value: SyncVar::new(100) };
    let header = wire::State { net_id: id, behaviour: 0, version: 1 };
    game.server.update(now).unwrap(); // reads the ack, sends the spawn (200)
    game.server
        .server_mut()
        .send_with::<wire::State>(player, unreliable, |out| {
            wire::put(out, &header)?;
            old.write_full(out)
        })
        .unwrap();
    assert!(game.run_until(|g| g.clients[0].get::<Gauge>(id).is_some()));
    // Many sync intervals later, with nothing changing on the server:
    game.run_for(100);
    assert_eq!(*game.server.get::<Gauge>(id).unwrap().value, 200);
    assert_eq!(
        *game.clients[0].get::<Gauge>(id).unwrap().value,
        200,
        "the re-spawned copy was rolled back to version 1 and the server stopped resending"
    );
}

const BAG: PrefabId = PrefabId::of_name("ready-versions bag");

/// A list synced by deltas on a reliable ordered channel of its own (not the objects').
#[derive(Debug, Default, NetworkBehaviour)]
#[network(qos = ReliableSequenced)]
struct Bag {
    #[sync]
    items: sturnus_object::SyncList<u32>,
}

/// A delta sent before the player was made not ready, lost once and resent by its own
/// reliable channel, arrives after the re-spawn (on the objects' channel) that already holds
/// it: it must not be applied a second time.
#[test]
fn a_resent_delta_from_before_not_ready_is_not_applied_to_the_respawned_copy() {
    use std::cell::Cell;
    use std::rc::Rc;
    let mut game = Game::new(Path::Sim { seed: 3, loss: 0.0 });
    game.add_client(|c| c.register_prefab(BAG, Bag::default));
    game.join_all();
    let player = game.player(0);
    let id = game.server.spawn(BAG, Bag::default(), None).unwrap();
    assert!(game.run_until(|g| g.clients[0].get::<Bag>(id).is_some()));
    game.run_for(10);

    // The datagrams carrying the delta are lost (once).
    let drop_all = Rc::new(Cell::new(false));
    let dropping = Rc::clone(&drop_all);
    let server_addr = game.server.server().local_addr().unwrap();
    game.sim().set_send_filter(server_addr, Some(Box::new(move |_, _| !dropping.get())));
    game.server.get_mut::<Bag>(id).unwrap().items.push(1);
    drop_all.set(true);
    game.step();
    drop_all.set(false);
    // A scene change, the client quick to report ready (here: at once).
    assert!(game.server.set_not_ready(player));
    game.server.set_ready(player);
    game.run_for(300);
    let server: Vec<u32> = game.server.get::<Bag>(id).unwrap().items.iter().copied().collect();
    let client: Vec<u32> = game.clients[0].get::<Bag>(id).unwrap().items.iter().copied().collect();
    assert_eq!(server, [1]);
    assert_eq!(client, server, "the resent delta was applied on top of the re-spawn's state");
}
