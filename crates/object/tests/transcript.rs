//! Determinism: a game on the lossy simulated network (10 % loss, duplicates, reordering) is the
//! same every run for the same seed, down to the virtual time of every event, handler call and
//! datagram; another seed gives another run.

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::rc::Rc;
use std::sync::Arc;

use common::tank::{TANK, Tank, TankRpcs};
use common::{Game, Path};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sturnus_message::{Login, Message, PasswordAuthenticator, Player};
use sturnus_object::{ClientObjectManager, NetId, ServerObjectManager};
use sturnus_testkit::{Delivery, sim_addr};

#[derive(Debug, Serialize, Deserialize, Message)]
struct Chat(String);

/// Chat messages each client sends.
const CHATS: u32 = 10;

#[derive(Debug, Serialize, Deserialize, Message)]
struct Echo(String);

/// What one run produced.
#[derive(Debug, PartialEq)]
struct Transcript {
    /// Every event of the server and the clients, every typed handler call, and every change
    /// of a tank on any side (hooks, commands and RPCs leave their trace in it), each with the
    /// virtual time of the round that produced it.
    lines: Vec<String>,
    /// Every datagram the net delivered, with its time.
    deliveries: Vec<Delivery>,
    /// Datagrams the links lost, summed over every link.
    lost: u64,
    /// Resends, summed over every connection, both sides.
    resends: u64,
}

/// Records a round: handler calls first (they ran in it, in order), then each side's events,
/// then whatever changed in the tanks.
fn recorder(calls: Arc<Mutex<Vec<String>>>, lines: Rc<RefCell<Vec<String>>>) -> common::OnStep {
    let mut last: BTreeMap<(String, NetId), String> = BTreeMap::new();
    let mut tanks = move |at, side: String, ids: Vec<NetId>, get: &dyn Fn(NetId) -> String| {
        let mut out = Vec::new();
        for id in ids {
            let now = get(id);
            if last.get(&(side.clone(), id)) != Some(&now) {
                out.push(format!("{at:?} {side} {id}: {now}"));
                last.insert((side.clone(), id), now);
            }
        }
        out
    };
    Box::new(move |at, server: &mut ServerObjectManager, clients: &mut [ClientObjectManager]| {
        let mut lines = lines.borrow_mut();
        lines.extend(calls.lock().drain(..).map(|call| format!("{at:?} {call}")));
        while let Some(event) = server.poll_event() {
            lines.push(format!("{at:?} server {event:?}"));
        }
        for (i, client) in clients.iter_mut().enumerate() {
            while let Some(event) = client.poll_event() {
                lines.push(format!("{at:?} client{i} {event:?}"));
            }
            while let Some(event) = client.poll_object_event() {
                lines.push(format!("{at:?} client{i} {event:?}"));
            }
        }
        let mut ids: Vec<NetId> = server.objects().collect();
        ids.sort();
        let get = |id| format!("{:?}", server.get::<Tank>(id));
        lines.extend(tanks(at, "server".into(), ids, &get));
        for (i, client) in clients.iter().enumerate() {
            let mut ids: Vec<NetId> = client.objects().collect();
            ids.sort();
            let get = |id| format!("{:?}", client.get::<Tank>(id));
            lines.extend(tanks(at, format!("client{i}"), ids, &get));
        }
    })
}

/// A server and two clients on the lossy net with `seed`: they connect and authenticate, chat
/// both ways, and play with a tank (spawn, SyncVar and SyncList changes, a Command answered by
/// a ClientRpc).
fn run(seed: u64) -> Transcript {
    let mut game = Game::new(Path::Sim { seed, loss: 0.1 });
    game.sim().record_deliveries(true);
    let calls: Arc<Mutex<Vec<String>>> = Arc::default();
    let lines: Rc<RefCell<Vec<String>>> = Rc::default();
    game.on_step = Some(recorder(Arc::clone(&calls), Rc::clone(&lines)));

    let server = game.server.server_mut();
    // The simulated links are plaintext between 10.x addresses: passwords allowed for the test.
    server.set_authenticator(PasswordAuthenticator::new("sesame").allow_plaintext());
    let log = Arc::clone(&calls);
    server
        .register_handler(move |mut player: Player<'_>, Chat(text)| {
            log.lock().push(format!("server handles Chat({text:?}) from {}", player.id()));
            player.send(&Echo(text.to_uppercase())).unwrap();
        })
        .unwrap();
    for i in 0..2 {
        let log = Arc::clone(&calls);
        game.add_client(move |c| {
            c.register_prefab(TANK, Tank::default);
            let client = c.client_mut();
            client
                .set_credentials(&Login { name: format!("p{i}"), password: "sesame".into() })
                .unwrap();
            client.allow_plaintext_credentials(true);
            client
                .register_handler(move |_, Echo(text)| {
                    log.lock().push(format!("client{i} handles Echo({text:?})"));
                })
                .unwrap();
        });
    }
    game.join_all();

    for (i, client) in game.clients.iter_mut().enumerate() {
        for n in 0..CHATS {
            client.client_mut().send(&Chat(format!("hello {n} from {i}"))).unwrap();
        }
    }
    let echoed = |lines: &[String]| lines.iter().filter(|l| l.contains("handles Echo")).count();
    assert!(
        game.run_until(|_| echoed(&lines.borrow()) == 2 * CHATS as usize),
        "seed {seed}: echoes lost"
    );

    let owner = game.player(0);
    let id = game.spawn_tank(Tank::new(100, "ada"), Some(owner));
    let tank = game.server.get_mut::<Tank>(id).unwrap();
    tank.health.set(90);
    tank.inventory.push("shell".into());
    game.step();
    let tank = game.server.get_mut::<Tank>(id).unwrap();
    tank.health.set(80);
    tank.inventory.push("flag".into());
    let synced = game.run_until(|g| {
        g.clients.iter().all(|c| {
            let t = c.get::<Tank>(id).unwrap();
            *t.health == 80 && t.inventory.len() == 2
        })
    });
    assert!(synced, "seed {seed}: update not seen");
    let tank = game.clients[0].handle::<Tank>(id).unwrap();
    tank.fire(&mut game.clients[0], (1, 2)).unwrap();
    let exploded = game
        .run_until(|g| g.clients.iter().all(|c| c.get::<Tank>(id).unwrap().explosions == [(1, 2)]));
    assert!(exploded, "seed {seed}: the command's ClientRpc not seen");
    assert_eq!(game.server.get::<Tank>(id).unwrap().fired, [(owner, (1, 2))]);
    game.run_for(20);

    let addrs: Vec<_> = (0..3).map(sim_addr).collect();
    let lost = addrs
        .iter()
        .flat_map(|a| addrs.iter().map(move |b| (*a, *b)))
        .filter_map(|(a, b)| game.sim().link_stats(a, b))
        .map(|s| s.lost)
        .sum();
    let players: Vec<_> = game.server.server().players().collect();
    let server = game.server.server_mut();
    let on_server: u64 = players
        .iter()
        .map(|p| server.player(*p).unwrap().connection_stats().unwrap().resends)
        .sum();
    let on_clients: u64 =
        game.clients.iter().map(|c| c.client().connection_stats().unwrap().resends).sum();
    let resends = on_server + on_clients;
    let deliveries = game.sim().deliveries();
    let mut lines = lines.take();
    let bytes: usize = deliveries.iter().map(|d| d.len).sum();
    let mut summary = format!("{} deliveries, {bytes} bytes", deliveries.len());
    for (from, to) in addrs.iter().flat_map(|a| addrs.iter().map(move |b| (*a, *b))) {
        let n = deliveries.iter().filter(|d| d.from == from && d.to == to).count();
        if n > 0 {
            write!(summary, "; {from} -> {to}: {n}").unwrap();
        }
    }
    lines.push(summary);
    lines.push(format!("ended at {:?}", game.elapsed()));
    Transcript { lines, deliveries, lost, resends }
}

#[test]
fn the_same_seed_gives_the_same_transcript_under_loss() {
    let first = run(7);
    // Not trivial: the run had losses to recover from, and did.
    assert!(first.lost > 0 && first.resends > 0, "lost {}, resends {}", first.lost, first.resends);
    assert!(first.lines.len() > 30, "{:#?}", first.lines);
    for needle in
        ["Authenticated", "handles Chat", "handles Echo", "Spawned", "explosions: [(1, 2)]"]
    {
        assert!(first.lines.iter().any(|l| l.contains(needle)), "no {needle}: {:#?}", first.lines);
    }
    let again = run(7);
    if again != first {
        let diverged = first.lines.iter().zip(&again.lines).position(|(a, b)| a != b);
        let delivery = first.deliveries.iter().zip(&again.deliveries).position(|(a, b)| a != b);
        panic!(
            "same seed, another run: lines diverge at {diverged:?} ({:?} vs {:?}; {} vs {} \
             lines), deliveries at {delivery:?} ({} vs {}), lost {} vs {}, resends {} vs {}",
            diverged.map(|i| &first.lines[i]),
            diverged.map(|i| &again.lines[i]),
            first.lines.len(),
            again.lines.len(),
            first.deliveries.len(),
            again.deliveries.len(),
            first.lost,
            again.lost,
            first.resends,
            again.resends,
        );
    }
    let other = run(8);
    assert_ne!(other.lines, first.lines, "another seed, the same run");
    assert_ne!(other.deliveries, first.deliveries);
}
