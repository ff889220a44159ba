//! The object layer's wire input: what a client receives (spawns, updates, despawns,
//! ownership, RPCs) and what a server receives (Commands).

use std::time::{Duration, Instant};

use sturnus_message::{Message, NetworkServer, PlayerId, ServerConfig, driver};
use sturnus_object::quantize::{BitReader, BitWriter};
use sturnus_object::transform::{NetworkTransform, TransformConfig};
use sturnus_object::wire::{
    self, Ack, AckEntry, Command, Despawn, Ownership, Ready, Rpc, Snapshot, SnapshotAck, Spawn,
    State, TransformCorrection, TransformInput, Update,
};
use sturnus_object::{
    ChannelId, ClientCtx, ClientObjectManager, ListChange, MapChange, NetId, NetworkBehaviour,
    ObjectConfig, PrefabId, RpcId, SceneId, ServerCtx, ServerObjectManager, SetChange, SyncList,
    SyncMap, SyncSet, SyncVar, network_rpcs,
};

/// An object made of [`Everything`] alone.
pub const EVERYTHING: PrefabId = PrefabId::of_name("fuzz.everything");
/// An object made of [`Small`], then [`Everything`].
pub const PAIR: PrefabId = PrefabId::of_name("fuzz.pair");
/// The scene object the client holds before it is spawned.
pub const SCENE: SceneId = SceneId(7);
/// An object made of an owner-authoritative 3D [`NetworkTransform`] and a 2D child part.
pub const MOVER: PrefabId = PrefabId::of_name("fuzz.mover");

/// The mover's root transform: 3D, owner-authoritative, at most 10 m/s.
fn mover_root() -> NetworkTransform {
    let config = TransformConfig::three_d([-64.0; 3], [64.0; 3], 1.0 / 256.0)
        .expect("valid bounds")
        .owner_authoritative(Some(10.0));
    NetworkTransform::new(config)
}

/// The mover's child part: a 2D angle and position.
fn mover_part() -> NetworkTransform {
    let config = TransformConfig::two_d([-8.0; 2], [8.0; 2], 0.01).expect("valid bounds");
    NetworkTransform::child(config, 1)
}

/// A behaviour with every kind of synchronised field, hooks on most, and every kind of RPC.
#[derive(Debug, Default, NetworkBehaviour)]
pub struct Everything {
    /// A number with a hook.
    #[sync(hook = Everything::on_count)]
    pub count: SyncVar<u32>,
    /// A string without one.
    #[sync]
    pub name: SyncVar<String>,
    /// A compound value.
    #[sync]
    pub pose: SyncVar<(f32, f64, Option<u8>)>,
    /// A list with a hook.
    #[sync(hook = Everything::on_list)]
    pub list: SyncList<String>,
    /// A map with a hook.
    #[sync(hook = Everything::on_map)]
    pub map: SyncMap<u16, Vec<u8>>,
    /// A set with a hook.
    #[sync(hook = Everything::on_set)]
    pub set: SyncSet<i64>,
    /// A set without one.
    #[sync]
    pub tags: SyncSet<String>,
    /// How many hooks and RPCs ran here (not networked).
    pub seen: u64,
}

impl Everything {
    fn on_count(&mut self, _old: &u32, _new: &u32) {
        self.seen += 1;
    }

    // Hooks run once the whole delta is applied, so a change they see may already be undone
    // (an insert then a remove of one key): they only count.
    fn on_list(&mut self, _change: &ListChange<String>) {
        self.seen += 1;
    }

    fn on_map(&mut self, _change: &MapChange<u16, Vec<u8>>) {
        self.seen += 1;
    }

    fn on_set(&mut self, _change: &SetChange<i64>) {
        self.seen += 1;
    }
}

#[network_rpcs]
impl Everything {
    /// Server → every observer, with arguments.
    #[client_rpc]
    pub fn hit(&mut self, _ctx: &mut ClientCtx<'_>, damage: u32, from: String) {
        self.seen += u64::from(damage % 2) + from.len() as u64 % 2;
    }

    /// Server → one player, with compound arguments.
    #[target_rpc]
    pub fn teleport(&mut self, _ctx: &mut ClientCtx<'_>, to: (f32, f32), path: Vec<Option<u16>>) {
        self.seen += u64::from(to.0.is_nan()) + path.len() as u64;
    }

    /// Server → every observer; answers with a command (what a client does from an RPC).
    #[client_rpc]
    pub fn ping(&mut self, ctx: &mut ClientCtx<'_>) {
        let me = ctx.this::<Everything>();
        let _ = me.shoot(ctx, 1, vec!["pong".into()]);
    }

    /// Client → server, owner only; answers every observer.
    #[command]
    pub fn shoot(&mut self, ctx: &mut ServerCtx<'_>, power: u8, words: Vec<String>) {
        self.count.set(u32::from(power));
        if let Some(word) = words.into_iter().next() {
            self.list.push(word);
        }
        let me = ctx.this::<Everything>();
        let _ = me.hit(ctx, 1, "server".into());
    }

    /// Client → server, from anyone.
    #[command(requires_authority = false)]
    pub fn poke(&mut self, _ctx: &mut ServerCtx<'_>, key: u16) {
        self.map.insert(key, vec![1]);
    }
}

/// A second, small behaviour, so objects have more than one.
#[derive(Debug, Default, NetworkBehaviour)]
pub struct Small {
    /// One field.
    #[sync]
    pub hp: SyncVar<i8>,
}

/// The RPC ids a record can name: every RPC of [`Everything`], and one it lacks.
const RPCS: [RpcId; 6] = [
    RpcId::of_name("hit"),
    RpcId::of_name("teleport"),
    RpcId::of_name("ping"),
    RpcId::of_name("shoot"),
    RpcId::of_name("poke"),
    RpcId(0x1234),
];

/// The prefabs a spawn record can name: three registered, and one that is not.
const PREFABS: [PrefabId; 4] = [EVERYTHING, PAIR, MOVER, PrefabId(0xdead_beef)];

/// A server object manager and a client object manager joined over host mode's in-memory path
/// (the client is a local client of the server, with a full copy of the objects), the server
/// having spawned four objects to the client (one owned by it, a pair, a scene object, and a
/// mover with two transforms, owned by it, id 4). Input
/// is a sequence of records: `[kind, a, b]`, a length byte, and a payload. Messages with a tail
/// are their header, then the payload as the tail (state, changes, arguments).
///
/// | kind % 8 | the record becomes                                                        |
/// |----------|---------------------------------------------------------------------------|
/// | 0        | to the client: `Spawn { net_id: a % 6, prefab: PREFABS[b % 4], scene: (b & 4) → SCENE, owned: b & 8, version: b >> 4 }` + state |
/// | 1        | to the client: `Update { net_id: a % 6, behaviour: b % 3 }` + changes      |
/// | 2        | to the client: `Rpc { net_id: a % 6, behaviour: b % 3, rpc: RPCS[b / 3 % 6] }` + arguments |
/// | 3        | to the client: `Despawn { net_id: a % 6 }`                                 |
/// | 4        | to the client: `Ownership { net_id: a % 6, owned: b & 1 }`                 |
/// | 5        | to the client: a message of type `[Spawn, Despawn, Update, Rpc, Ownership, Ready, Command, State, Ack, Snapshot, SnapshotAck, TransformInput, TransformCorrection][b % 13]` whose whole body is the payload |
/// | 6        | to the server, from the player: `Command { … as Rpc … }` + arguments       |
/// | 7        | to the server, from the player: as 5                                      |
///
/// Messages travel the way the server's and the client's own do (the message layer's
/// `send_with`, over the local pipe), so they reach the object layer's decoding through the
/// message layer's dispatch. After each record both managers update (a frame later in virtual
/// time), so what they decoded is applied.
pub struct ObjectHarness {
    server: ServerObjectManager,
    client: ClientObjectManager,
    player: PlayerId,
    channel: ChannelId,
    now: Instant,
}

impl std::fmt::Debug for ObjectHarness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectHarness").field("player", &self.player).finish_non_exhaustive()
    }
}

impl Default for ObjectHarness {
    fn default() -> Self {
        Self::new()
    }
}

impl ObjectHarness {
    /// The pair, with the three objects spawned and seen by the client.
    pub fn new() -> Self {
        // Nothing the fuzzer sends should cost it the connection: the budget is unlimited.
        let config =
            ServerConfig { rate_limit: None, error_budget: u32::MAX, ..Default::default() };
        let mut objects = ObjectConfig::default();
        objects.sync_interval = std::time::Duration::ZERO;
        let channel = objects.validate(&config.channels).expect("the default layout has one");
        let now = driver::now();
        let server = NetworkServer::new(config).expect("valid config");
        let mut server =
            ServerObjectManager::with_config(server, objects.clone()).expect("fresh server");
        server.server_mut().start_offline(now).expect("not started");
        let client = server.server_mut().connect_local(now).expect("running");
        let mut client = ClientObjectManager::with_config(client, objects).expect("fresh client");
        client.register_prefab(EVERYTHING, Everything::default);
        client.register_prefab(PAIR, || (Small::default(), Everything::default()));
        client.register_prefab(MOVER, || (mover_root(), mover_part()));
        client.add_scene_object(SCENE, Everything::default()).expect("one scene object");
        let player = server.server().players().next().expect("just joined");
        let mut harness = Self { server, client, player, channel, now };
        harness.pump();
        assert!(harness.server.is_ready(player), "the client says it is ready");
        let mut owned = Everything::default();
        owned.list.push("a".into());
        owned.map.insert(1, vec![2]);
        owned.set.insert(-3);
        let server = &mut harness.server;
        server.spawn(EVERYTHING, owned, Some(player)).expect("spawns");
        server.spawn(PAIR, (Small::default(), Everything::default()), None).expect("spawns");
        server.spawn_scene(SCENE, EVERYTHING, Everything::default(), None).expect("spawns");
        server.spawn(MOVER, (mover_root(), mover_part()), Some(player)).expect("spawns");
        harness.pump();
        assert_eq!(harness.client.object_count(), 4, "the client sees the objects");
        harness
    }

    /// Both managers update, a frame later.
    fn frame(&mut self) {
        self.now += Duration::from_millis(10);
        let _ = self.client.update(self.now);
        let _ = self.server.update(self.now);
    }

    fn pump(&mut self) {
        for _ in 0..4 {
            self.frame();
        }
    }

    /// Whether the pair still talks (a fuzzed goodbye or rejection ends it).
    pub fn is_alive(&self) -> bool {
        self.client.client().is_authenticated()
            && self.server.server().player_stats(self.player).is_some()
    }

    /// Sends the client a message of type `T` whose body is `body`, as the server's object
    /// layer sends its own.
    fn forge_for_client<T: Message>(&mut self, body: &[u8]) {
        let server = self.server.server_mut();
        let _ = server.send_with::<T>(self.player, self.channel, |out| {
            out.extend_from_slice(body);
            Ok(())
        });
    }

    /// Sends the server a message of type `T` whose body is `body`, from the player.
    fn forge_for_server<T: Message>(&mut self, body: &[u8]) {
        let _ = self.client.client_mut().send_with::<T>(self.channel, |out| {
            out.extend_from_slice(body);
            Ok(())
        });
    }

    /// Sends a message of type `T` to the client or to the server.
    fn send<T: Message>(&mut self, to_client: bool, body: &[u8]) {
        if to_client { self.forge_for_client::<T>(body) } else { self.forge_for_server::<T>(body) }
    }

    /// Sends a message of the object layer, picked by `kind`, with `body` as its whole body.
    fn any(&mut self, to_client: bool, kind: u8, body: &[u8]) {
        match kind % 13 {
            0 => self.send::<Spawn>(to_client, body),
            1 => self.send::<Despawn>(to_client, body),
            2 => self.send::<Update>(to_client, body),
            3 => self.send::<Rpc>(to_client, body),
            4 => self.send::<Ownership>(to_client, body),
            5 => self.send::<Ready>(to_client, body),
            6 => self.send::<Command>(to_client, body),
            // A behaviour's versioned full state; acknowledgements of them.
            7 => self.send::<State>(to_client, body),
            8 => self.send::<Ack>(to_client, body),
            // Transforms: snapshots and their acknowledgements, owners' inputs, corrections.
            9 => self.send::<Snapshot>(to_client, body),
            10 => self.send::<SnapshotAck>(to_client, body),
            11 => self.send::<TransformInput>(to_client, body),
            _ => self.send::<TransformCorrection>(to_client, body),
        }
    }

    /// What the two managers counted: how deep the inputs reached.
    pub fn report(&self) -> String {
        format!("client {:?}; server {:?}", self.client.stats(), self.server.stats())
    }

    /// Feeds one fuzz input.
    pub fn feed(&mut self, data: &[u8]) {
        for ([kind, a, b], payload) in crate::records::<3>(data) {
            if !self.is_alive() {
                *self = Self::new();
            }
            let net_id = NetId(u32::from(a % 6));
            let behaviour = b % 3;
            let rpc = RPCS[usize::from(b / 3) % RPCS.len()];
            match kind % 8 {
                0 => {
                    let prefab = PREFABS[usize::from(b % 4)];
                    let scene = (b & 4 != 0).then_some(SCENE);
                    let owned = b & 8 != 0;
                    let (version, epoch) = (u64::from(b >> 4), b >> 6);
                    let spawn = Spawn { net_id, prefab, scene, owned, version, epoch };
                    self.forge_for_client::<Spawn>(&wire::body(&spawn, payload));
                }
                1 => {
                    let update = Update { net_id, behaviour };
                    self.forge_for_client::<Update>(&wire::body(&update, payload));
                }
                2 => self
                    .forge_for_client::<Rpc>(&wire::body(&Rpc { net_id, behaviour, rpc }, payload)),
                3 => self.forge_for_client::<Despawn>(&wire::body(&Despawn { net_id }, &[])),
                4 => {
                    let ownership = Ownership { net_id, owned: b & 1 != 0 };
                    self.forge_for_client::<Ownership>(&wire::body(&ownership, &[]));
                }
                5 => self.any(true, b, payload),
                6 => {
                    let command = Command { net_id, behaviour, rpc };
                    self.forge_for_server::<Command>(&wire::body(&command, payload));
                }
                _ => self.any(false, b, payload),
            }
            self.frame();
            assert!(self.client.object_count() <= 6, "at most the ids a record can name");
        }
    }

    /// Inputs that reach deep: valid states, deltas of every field and collection operation,
    /// and RPCs and commands with valid arguments.
    pub fn seeds() -> Vec<Vec<u8>> {
        let mut server_side = Everything::default();
        let mut full = Vec::new();
        server_side.write_full(&mut full).expect("encodable");
        server_side.count.set(9);
        server_side.name.set("n".into());
        server_side.pose.set((1.0, 2.0, Some(3)));
        server_side.list.push("x".into());
        server_side.list.insert(0, "y".into());
        server_side.list.set(1, "z".into());
        server_side.list.remove(0);
        server_side.map.insert(5, vec![6]);
        server_side.map.remove(&5);
        server_side.map.insert(7, vec![]);
        server_side.set.insert(11);
        server_side.set.remove(&11);
        server_side.set.insert(12);
        server_side.tags.insert("t".into());
        let mut delta = Vec::new();
        server_side.write_changes(&mut delta).expect("encodable");
        let mut changed = Vec::new();
        server_side.write_full(&mut changed).expect("encodable");
        let ack = AckEntry { net_id: NetId(1), behaviour: 0, version: 3 };
        let mut cleared = Everything::default();
        cleared.list.clear();
        cleared.map.clear();
        cleared.set.clear();
        let mut clear = Vec::new();
        cleared.write_changes(&mut clear).expect("encodable");
        let hit = postcard::to_allocvec(&(7u32, "who".to_string())).expect("encodable");
        let teleport =
            postcard::to_allocvec(&((1.0f32, 2.0f32), vec![Some(1u16), None])).expect("encodable");
        let shoot = postcard::to_allocvec(&(3u8, vec!["w".to_string()])).expect("encodable");
        let poke = postcard::to_allocvec(&4u16).expect("encodable");
        // The mover's state whole, as a spawn carries it, and a snapshot of it: one entry for
        // object 4, behaviour 1 (the part), whole, after a rest.
        let mut part = Vec::new();
        mover_part().write_full(&mut part).expect("encodable");
        let mut root_moved = mover_root();
        root_moved.set_position([0.05, 0.0, 0.0]);
        let mut input = Vec::new();
        root_moved.write_full(&mut input).expect("encodable");
        let mut bits = [0_u8; 32];
        let mut w = BitWriter::new(&mut bits);
        // Count 1; id gap 4; behaviour 1; whole; after a rest; the spawn's epoch (0).
        let head: [(u64, u32); 8] =
            [(1, 12), (0b01, 2), (4, 4), (1, 1), (1, 8), (0, 1), (1, 1), (0, 8)];
        for (value, n) in head {
            w.write_bits(value, n).expect("fits");
        }
        let mut r = BitReader::new(&part);
        for _ in 0..mover_part().config().absolute_bits() {
            w.write_bits(r.read_bits(1).expect("a bit"), 1).expect("fits");
        }
        let len = w.bytes_written();
        let snapshot = bits[..len].to_vec();
        // Object 1 is the client's own Everything, 2 the pair (Everything is behaviour 1).
        vec![
            crate::record(
                [5, 0, 9],
                &wire::body(&Snapshot { seq: 1, base: 0, time_ms: 5 }, &snapshot),
            ),
            [
                crate::record(
                    [5, 0, 9],
                    &wire::body(&Snapshot { seq: 1, base: 0, time_ms: 5 }, &snapshot),
                ),
                crate::record(
                    [7, 0, 10],
                    &wire::body(&SnapshotAck { ack_id: 1, newest: 1, bits: 0 }, &[]),
                ),
            ]
            .concat(),
            crate::record(
                [7, 0, 11],
                &wire::body(&TransformInput { net_id: NetId(4), behaviour: 0, seq: 1 }, &input),
            ),
            crate::record(
                [5, 0, 12],
                &wire::body(&TransformCorrection { net_id: NetId(4), behaviour: 0 }, &input),
            ),
            crate::record([1, 1, 0], &delta),
            crate::record([1, 2, 1], &delta),
            [crate::record([1, 1, 0], &delta), crate::record([1, 1, 0], &clear)].concat(),
            [crate::record([0, 4, 0], &full), crate::record([1, 4, 0], &delta)].concat(),
            [crate::record([0, 5, 4], &full), crate::record([3, 5, 0], &[])].concat(),
            crate::record([2, 1, 0], &hit),
            crate::record([2, 1, 3], &teleport),
            crate::record([2, 2, 7], &[]),
            crate::record([6, 1, 9], &shoot),
            crate::record([6, 2, 13], &poke),
            [crate::record([4, 1, 0], &[]), crate::record([6, 1, 9], &shoot)].concat(),
            // Whole bodies: an update of object 1 and a command, each header + tail.
            crate::record(
                [5, 0, 2],
                &wire::body(&Update { net_id: NetId(1), behaviour: 0 }, &delta),
            ),
            crate::record(
                [7, 0, 6],
                &wire::body(
                    &Command { net_id: NetId(2), behaviour: 1, rpc: RpcId::of_name("poke") },
                    &poke,
                ),
            ),
            // A versioned full state, twice (the second is stale), and its acknowledgement.
            [
                crate::record(
                    [5, 0, 7],
                    &wire::body(&State { net_id: NetId(1), behaviour: 0, version: 3 }, &changed),
                ),
                crate::record(
                    [5, 0, 7],
                    &wire::body(&State { net_id: NetId(1), behaviour: 0, version: 2 }, &full),
                ),
                crate::record(
                    [7, 0, 8],
                    &wire::body(&Ack, &postcard::to_allocvec(&ack).expect("encodable")),
                ),
            ]
            .concat(),
        ]
    }
}
