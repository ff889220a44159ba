//! Zero heap allocations per message in the upper layers, in steady state: typed messages of a
//! fixed-size type both ways (a handler's reply and a broadcast included) through
//! `NetworkServer`/`NetworkClient`, and one-field SyncVar updates through the object layer, on
//! the in-process transport (the transport's own test is `crates/transport/tests/zero_alloc.rs`),
//! under a global allocator that counts what this thread allocates.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sturnus_message::{
    ClientConfig, Message, NetworkClient, NetworkServer, Player, ServerConfig, ServerEvent, driver,
};
use sturnus_object::{
    ClientObjectManager, NetworkBehaviour, ObjectConfig, PrefabId, ServerObjectManager, SyncVar,
};
use sturnus_testkit::counting::{Counting, allocations_in};
use sturnus_transport::MemoryNetwork;

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A fixed-size message: nothing in it owns heap memory.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Message)]
struct Move {
    seq: u32,
    x: f32,
    y: f32,
    z: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Message)]
struct Echo(Move);

const BALL: PrefabId = PrefabId::of_name("ball");

#[derive(Default, NetworkBehaviour)]
struct Ball {
    #[sync(hook = Ball::on_height)]
    height: SyncVar<u32>,
    /// Hook calls seen (not networked).
    bounces: u64,
}

impl Ball {
    fn on_height(&mut self, old: &u32, new: &u32) {
        self.bounces += u64::from(new > old);
    }
}

struct Rig {
    now: Instant,
    server: ServerObjectManager,
    clients: Vec<ClientObjectManager>,
    echoes: Arc<AtomicU64>,
    ball: sturnus_object::NetId,
    _network: MemoryNetwork,
}

impl Rig {
    fn new() -> Rig {
        let network = MemoryNetwork::new();
        let config = ServerConfig::default();
        let kinds = config.channels.kinds().to_vec();
        let addr = "10.0.0.1:7777".parse().unwrap();
        let now = driver::now();
        let mut server = NetworkServer::new(config).unwrap();
        // The server answers each move (a reply) and tells everyone (a broadcast).
        server
            .register_handler(|mut player: Player<'_>, m: Move| {
                player.send(&Echo(m)).unwrap();
                player.server().broadcast(&m).unwrap();
            })
            .unwrap();
        let mut objects = ObjectConfig::default();
        objects.sync_interval = Duration::ZERO;
        let mut server = ServerObjectManager::with_config(server, objects.clone()).unwrap();
        server.start(now, network.bind(addr, kinds.clone()).unwrap()).unwrap();
        let echoes = Arc::new(AtomicU64::new(0));
        let mut clients = Vec::new();
        for _ in 0..2 {
            let mut client = NetworkClient::new(ClientConfig::default()).unwrap();
            let seen = Arc::clone(&echoes);
            client
                .register_handler(move |_, Echo(m): Echo| {
                    seen.fetch_add(u64::from(m.seq > 0), Ordering::Relaxed);
                })
                .unwrap();
            client.register_handler(|_, _: Move| {}).unwrap();
            let mut client = ClientObjectManager::with_config(client, objects.clone()).unwrap();
            client.register_prefab(BALL, Ball::default);
            client.connect(now, network.endpoint(kinds.clone()), addr).unwrap();
            clients.push(client);
        }
        let mut rig =
            Rig { now, server, clients, echoes, ball: sturnus_object::NetId(0), _network: network };
        for _ in 0..5 {
            rig.frame(None, false);
        }
        rig.ball = rig.server.spawn(BALL, Ball::default(), None).unwrap();
        rig.frame(None, false);
        assert!(rig.clients.iter().all(|c| c.object_count() == 1), "the ball spawned");
        rig
    }

    /// One frame: each client sends `send` (if any), the ball moves if `bounce`, everyone
    /// updates.
    fn frame(&mut self, send: Option<Move>, bounce: bool) {
        self.now += Duration::from_millis(16);
        if let Some(m) = send {
            for client in &mut self.clients {
                client.client_mut().send(&m).unwrap();
            }
        }
        if bounce {
            let ball = self.server.get_mut::<Ball>(self.ball).unwrap();
            let height = *ball.height + 1;
            ball.height.set(height);
        }
        self.server.update(self.now).unwrap();
        while self.server.poll_event().is_some_and(|e| !matches!(e, ServerEvent::Stopped)) {}
        for client in &mut self.clients {
            client.update(self.now).unwrap();
            while client.poll_event().is_some() {}
        }
        // The replies sent during the server's update arrive at the next one: one more round
        // delivers them within this frame.
        self.server.update(self.now).unwrap();
        for client in &mut self.clients {
            client.update(self.now).unwrap();
        }
    }
}

#[test]
fn typed_messages_and_syncvar_updates_allocate_nothing_per_message() {
    // The counter is installed and counts this thread: otherwise zero would prove nothing.
    assert_eq!(allocations_in(|| drop(std::hint::black_box(vec![1u8]))), 1);
    let mut rig = Rig::new();
    let m = |seq| Move { seq, x: 1.0, y: 2.0, z: 3.0 };
    // Warm-up: buffers and queues reach their working sizes.
    for seq in 1..=200 {
        rig.frame(Some(m(seq)), true);
    }
    let echoes = rig.echoes.load(Ordering::Relaxed);
    let applied: u64 = rig.clients.iter().map(|c| c.stats().updates_applied).sum();
    let frames = 1000;
    let allocations = allocations_in(|| {
        for seq in 201..201 + frames {
            rig.frame(Some(m(seq)), true);
        }
    });
    // Everything arrived: each client's moves were echoed, and every bounce was applied.
    let frames = u64::from(frames);
    assert_eq!(rig.echoes.load(Ordering::Relaxed) - echoes, 2 * frames);
    let applied_now: u64 = rig.clients.iter().map(|c| c.stats().updates_applied).sum();
    assert_eq!(applied_now - applied, 2 * frames);
    let ball = rig.clients[0].get::<Ball>(rig.ball).unwrap();
    assert_eq!(*ball.height, 200 + u32::try_from(frames).unwrap());
    // The hook ran for every update (the spawn's state runs no hook).
    assert_eq!(ball.bounces, 200 + frames);
    assert_eq!(
        allocations,
        0,
        "{allocations} allocations over {frames} frames of {} messages each",
        2 * 4 + 2
    );
}

/// Host mode's in-memory path between the server and its local client allocates nothing per
/// message either, both ways.
#[test]
fn a_local_client_exchanges_messages_without_allocating() {
    let mut server = NetworkServer::new(ServerConfig::default()).unwrap();
    server
        .register_handler(|mut player: Player<'_>, m: Move| player.send(&Echo(m)).unwrap())
        .unwrap();
    let mut now = driver::now();
    let mut client = server.connect_local(now).unwrap();
    let echoes = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&echoes);
    client
        .register_handler(move |_, Echo(_): Echo| {
            seen.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
    let mut frame = |seq: u32| {
        now += Duration::from_millis(16);
        if client.is_authenticated() {
            client.send(&Move { seq, x: 0.0, y: 0.0, z: 0.0 }).unwrap();
        }
        server.update(now).unwrap();
        while server.poll_event().is_some() {}
        client.update(now).unwrap();
        while client.poll_event().is_some() {}
    };
    for seq in 0..200 {
        frame(seq);
    }
    let before = echoes.load(Ordering::Relaxed);
    let allocations = allocations_in(|| {
        for seq in 200..1200 {
            frame(seq);
        }
    });
    assert_eq!(echoes.load(Ordering::Relaxed) - before, 1000);
    assert_eq!(allocations, 0, "{allocations} allocations over 1,000 local round trips");
}

const CUBE: PrefabId = PrefabId::of_name("cube");

fn cube_config() -> sturnus_object::transform::TransformConfig {
    sturnus_object::transform::TransformConfig::three_d(
        [-256.0, -16.0, -256.0],
        [256.0, 48.0, 256.0],
        1.0 / 512.0,
    )
    .unwrap()
    .with_send_interval(Duration::from_millis(16))
}

/// Moving transforms: snapshots built and sent by the server (priority, budget, deltas) and
/// read, acknowledged and interpolated by the clients allocate nothing per update in steady
/// state.
#[test]
fn transform_snapshots_allocate_nothing_per_update() {
    use sturnus_object::transform::NetworkTransform;
    let network = MemoryNetwork::new();
    let config = ServerConfig::default();
    let kinds = config.channels.kinds().to_vec();
    let addr = "10.0.0.1:7777".parse().unwrap();
    let mut now = driver::now();
    let mut objects = ObjectConfig::default();
    objects.transforms.interval = Duration::from_millis(16);
    let mut server =
        ServerObjectManager::with_config(NetworkServer::new(config).unwrap(), objects.clone())
            .unwrap();
    server.start(now, network.bind(addr, kinds.clone()).unwrap()).unwrap();
    let mut clients: Vec<ClientObjectManager> = (0..2)
        .map(|_| {
            let client = NetworkClient::new(ClientConfig::default()).unwrap();
            let mut client = ClientObjectManager::with_config(client, objects.clone()).unwrap();
            client.register_prefab(CUBE, || NetworkTransform::new(cube_config()));
            client.connect(now, network.endpoint(kinds.clone()), addr).unwrap();
            client
        })
        .collect();
    let mut frame = |server: &mut ServerObjectManager, clients: &mut [ClientObjectManager]| {
        now += Duration::from_millis(16);
        server.update(now).unwrap();
        while server.poll_event().is_some() {}
        for client in clients.iter_mut() {
            client.update(now).unwrap();
            while client.poll_event().is_some() {}
            while client.poll_object_event().is_some() {}
        }
        now
    };
    for _ in 0..10 {
        frame(&mut server, &mut clients);
    }
    let ids: Vec<_> = (0..100)
        .map(|_| server.spawn(CUBE, NetworkTransform::new(cube_config()), None).unwrap())
        .collect();
    // Half the cubes move every frame: on a circle, turning.
    let step = |t: u32, server: &mut ServerObjectManager| {
        for (i, id) in ids.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
            let a = t as f32 * 0.02 + i as f32;
            let transform = server.get_mut::<NetworkTransform>(*id).unwrap();
            transform.set_position([10.0 * a.cos(), 1.0, 10.0 * a.sin()]);
            transform.set_rotation([0.0, (a / 2.0).sin(), 0.0, (a / 2.0).cos()]);
        }
    };
    for t in 0..300 {
        step(t, &mut server);
        let at = frame(&mut server, &mut clients);
        for client in clients.iter_mut() {
            for id in &ids {
                std::hint::black_box(client.get_mut::<NetworkTransform>(*id).unwrap().sample(at));
            }
        }
    }
    let before: u64 = clients.iter().map(|c| c.stats().transform_states).sum();
    let sent = server.stats().transform_updates;
    let allocations = allocations_in(|| {
        for t in 300..1300 {
            step(t, &mut server);
            let at = frame(&mut server, &mut clients);
            for client in clients.iter_mut() {
                for id in &ids {
                    let pose = client.get_mut::<NetworkTransform>(*id).unwrap().sample(at);
                    std::hint::black_box(pose);
                }
            }
        }
    });
    let applied = clients.iter().map(|c| c.stats().transform_states).sum::<u64>() - before;
    let sent = server.stats().transform_updates - sent;
    // At 256 kbit/s, 50 moving cubes fit every snapshot: each client applies most of them.
    assert!(applied > 2 * 1000 * 40, "{applied} states applied");
    assert_eq!(allocations, 0, "{allocations} allocations over {sent} transform updates");
}

/// With an interest policy, objects moving inside the players' interest allocate nothing per
/// frame either: the policy's events go through a reused list, and positions through the
/// grid's pooled cells.
#[test]
fn moving_objects_under_grid_interest_allocate_nothing() {
    use sturnus_object::interest::GridInterest;
    use sturnus_object::{NetId, PlayerId};
    type Grid = GridInterest<PlayerId, NetId>;

    let mut rig = Rig::new();
    rig.server.set_interest(Grid::new(4.0, 50.0).unwrap());
    let players: Vec<PlayerId> = rig.server.server().players().collect();
    assert_eq!(players.len(), 2);
    for (i, &player) in players.iter().enumerate() {
        rig.server.set_player_position(player, [i as f32 * 5.0, 0.0, 0.0]);
    }
    let ball = rig.ball;
    let frame = |rig: &mut Rig, n: u32| {
        // Back and forth across cells, always within reach of both players.
        let x = (n % 40) as f32 - 20.0;
        rig.server.set_object_position(ball, [x, 1.0, (n % 7) as f32]);
        rig.frame(None, true);
    };
    for n in 0..200 {
        frame(&mut rig, n);
    }
    let applied: u64 = rig.clients.iter().map(|c| c.stats().updates_applied).sum();
    let before = rig.server.interest::<Grid>().unwrap().pair_checks();
    let frames = 1000;
    let allocations = allocations_in(|| {
        for n in 200..200 + frames {
            frame(&mut rig, n);
        }
    });
    // The policy did its work every frame, and both clients kept the ball and its changes.
    assert!(rig.server.interest::<Grid>().unwrap().pair_checks() - before >= u64::from(frames));
    let applied_now: u64 = rig.clients.iter().map(|c| c.stats().updates_applied).sum();
    assert_eq!(applied_now - applied, 2 * u64::from(frames));
    assert_eq!(rig.server.observers(ball).count(), 2);
    assert_eq!(allocations, 0, "{allocations} allocations over {frames} frames");
}
