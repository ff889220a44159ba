//! Sync collections converge to the server's state, whatever the operations, for clients that
//! watched them change and for one that joined halfway: losslessly, and over the lossy
//! simulated network with many seeds.

mod common;

use std::collections::HashMap;

use common::{Game, Path};
use proptest::prelude::*;
use sturnus_object::{NetworkBehaviour, PrefabId, SyncList, SyncMap, SyncSet, SyncVar};

const BAG: PrefabId = PrefabId::of_name("bag");

#[derive(Debug, Default, NetworkBehaviour)]
struct Bag {
    #[sync]
    list: SyncList<u16>,
    #[sync]
    map: SyncMap<u8, u16>,
    #[sync]
    set: SyncSet<u8>,
    #[sync]
    count: SyncVar<u32>,
}

#[derive(Debug, Clone)]
enum Op {
    Push(u16),
    Insert(usize, u16),
    Set(usize, u16),
    Remove(usize),
    ClearList,
    MapInsert(u8, u16),
    MapRemove(u8),
    ClearMap,
    SetAdd(u8),
    SetRemove(u8),
    ClearSet,
    /// Let the server and clients run a few rounds.
    Step,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<u16>().prop_map(Op::Push),
        2 => (any::<usize>(), any::<u16>()).prop_map(|(i, v)| Op::Insert(i, v)),
        2 => (any::<usize>(), any::<u16>()).prop_map(|(i, v)| Op::Set(i, v)),
        2 => any::<usize>().prop_map(Op::Remove),
        1 => Just(Op::ClearList),
        3 => (0u8..16, any::<u16>()).prop_map(|(k, v)| Op::MapInsert(k, v)),
        2 => (0u8..16).prop_map(Op::MapRemove),
        1 => Just(Op::ClearMap),
        3 => (0u8..16).prop_map(Op::SetAdd),
        2 => (0u8..16).prop_map(Op::SetRemove),
        1 => Just(Op::ClearSet),
        3 => Just(Op::Step),
    ]
}

fn apply(bag: &mut Bag, op: &Op) {
    let len = bag.list.len();
    match *op {
        Op::Push(v) => bag.list.push(v),
        Op::Insert(i, v) => bag.list.insert(i % (len + 1), v),
        Op::Set(i, v) if len > 0 => bag.list.set(i % len, v),
        Op::Remove(i) if len > 0 => {
            bag.list.remove(i % len);
        }
        Op::ClearList => bag.list.clear(),
        Op::MapInsert(k, v) => {
            bag.map.insert(k, v);
        }
        Op::MapRemove(k) => {
            bag.map.remove(&k);
        }
        Op::ClearMap => bag.map.clear(),
        Op::SetAdd(v) => {
            bag.set.insert(v);
        }
        Op::SetRemove(v) => {
            bag.set.remove(&v);
        }
        Op::ClearSet => bag.set.clear(),
        _ => {}
    }
    bag.count.modify(|c| *c += 1);
}

type State = (Vec<u16>, HashMap<u8, u16>, Vec<u8>, u32);

fn state(bag: &Bag) -> State {
    let mut set: Vec<u8> = bag.set.iter().copied().collect();
    set.sort_unstable();
    (bag.list.to_vec(), (*bag.map).clone(), set, *bag.count)
}

/// Runs `ops` on a bag, a second client joining halfway, and checks every client ends with the
/// server's state.
fn converge(mut game: Game, ops: &[Op]) -> Result<(), TestCaseError> {
    game.add_client(|c| c.register_prefab(BAG, Bag::default));
    game.join_all();
    let id = game.server.spawn(BAG, Bag::default(), None).unwrap();
    for (n, op) in ops.iter().enumerate() {
        if n == ops.len() / 2 {
            game.add_client(|c| c.register_prefab(BAG, Bag::default));
        }
        match op {
            Op::Step => game.run_for(3),
            op => apply(game.server.get_mut::<Bag>(id).unwrap(), op),
        }
    }
    game.join_all();
    let expected = state(game.server.get::<Bag>(id).unwrap());
    let converged = game.run_until(|g| {
        g.clients.iter().all(|c| c.get::<Bag>(id).map(state).as_ref() == Some(&expected))
    });
    let seen: Vec<Option<State>> =
        game.clients.iter().map(|c| c.get::<Bag>(id).map(state)).collect();
    prop_assert!(converged, "{:?}: expected {:?}, clients have {:?}", game.path, expected, seen);
    for client in &game.clients {
        prop_assert_eq!(client.stats().dropped_undecodable, 0);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn collections_converge(ops in prop::collection::vec(op(), 1..120), remote in any::<bool>()) {
        converge(Game::new(if remote { Path::Memory } else { Path::Local }), &ops)?;
    }

    #[test]
    fn collections_converge_under_loss(ops in prop::collection::vec(op(), 1..120), seed in 0u64..1000) {
        converge(Game::new(Path::Sim { seed, loss: 0.2 }), &ops)?;
    }
}
