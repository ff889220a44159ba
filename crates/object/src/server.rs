//! The server's side: spawning objects to observers, syncing their state, running commands.

use std::any::Any;
use std::collections::{BTreeSet, HashMap, VecDeque};

use rustc_hash::FxHashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;
use sturnus_message::{
    ChannelId, ChannelLayout, Dispatched, Message, MessageId, NetworkClient, NetworkServer,
    PlayerId, Qos, ServerContext, ServerDispatch, ServerEvent, Transport,
};
use tracing::{debug, warn};

use crate::behaviour::{find, find_mut};
use crate::ctx::ClientCtx;
use crate::interest::{Change, InterestEvent, InterestPolicy};
use crate::quantize::{BitReader, BitWriter};
use crate::snapshot::{TransformSync, TransformSyncConfig};
use crate::transform::{Authority, NetworkTransform};
use crate::wire;
use crate::{
    Behaviours, ClientObjectEvent, CommandSink, IntoBehaviours, NetId, NetworkBehaviour, Obj,
    ObjectError, OnChannel, PrefabId, RpcCall, RpcContext, RpcKind, RpcSink, SceneId, ServerCtx,
    ServerObjects,
};

/// Settings of the object managers.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ObjectConfig {
    /// The least time between two updates of one behaviour, unless the behaviour sets its own
    /// (`#[network(sync_interval_ms = N)]`); UNET's and Mirage's default is 100 ms. Zero sends
    /// changes at every [`update`](ServerObjectManager::update).
    pub sync_interval: Duration,
    /// The channel spawns, despawns, ownership, updates and RPCs go on unless a behaviour or
    /// RPC names its own (`None`: the first typed `ReliableFragmentedSequenced` channel of the
    /// layout). It must be a typed, reliable and ordered channel (and fragmenting, for large
    /// objects), so everything about an object arrives whole and in order; both sides must
    /// agree.
    pub channel: Option<ChannelId>,
    /// Whether the objects a player owns are despawned when it leaves (UNET's and Mirage's
    /// behaviour), or kept without an owner.
    pub despawn_owned_on_leave: bool,
    /// Whether a client becomes ready (receives the world) as soon as it is authenticated:
    /// the client says so by itself, and the server believes it. With `false` (the
    /// `NetworkManager`'s scene flow), a player is made ready only by
    /// [`ServerObjectManager::set_ready`], and a client's own `Ready` is refused and counted
    /// (`refused_ready`); both sides must agree.
    pub auto_ready: bool,
    /// How [`NetworkTransform`](crate::transform::NetworkTransform)s are synchronised: the
    /// snapshot rate, each connection's byte budget, the channel.
    pub transforms: TransformSyncConfig,
}

impl ObjectConfig {
    /// The longest [`sync_interval`](Self::sync_interval) accepted (an hour).
    pub const MAX_SYNC_INTERVAL: Duration = Duration::from_secs(3600);

    /// Checks every field against the channel layout, naming the first that is out of range;
    /// returns the channel objects go on. The object managers' `new` and `with_config` call
    /// it.
    ///
    /// ```
    /// use sturnus_message::{ChannelId, ChannelLayout, Qos};
    /// use sturnus_object::ObjectConfig;
    /// let layout = ChannelLayout::default();
    /// ObjectConfig::default().validate(&layout).unwrap();
    /// let mut unordered = ObjectConfig::default();
    /// unordered.channel = layout.first_of(Qos::Unreliable);
    /// assert!(unordered.validate(&layout).is_err());
    /// unordered.channel = Some(ChannelId(200));
    /// assert!(unordered.validate(&layout).is_err());
    /// ```
    pub fn validate(&self, layout: &ChannelLayout) -> Result<ChannelId, ObjectError> {
        if self.sync_interval > Self::MAX_SYNC_INTERVAL {
            return Err(ObjectError::InvalidConfig {
                field: "sync_interval",
                reason: "must be at most one hour",
            });
        }
        let transforms = &self.transforms;
        if transforms.interval.is_zero() || transforms.interval > Duration::from_secs(1) {
            return Err(ObjectError::InvalidConfig {
                field: "transforms.interval",
                reason: "must be above zero and at most one second",
            });
        }
        if transforms.budget_kbps == 0 {
            return Err(ObjectError::InvalidConfig {
                field: "transforms.budget_kbps",
                reason: "must be above zero: with no budget no transform is ever sent",
            });
        }
        if !(transforms.priority_distance.is_finite() && transforms.priority_distance > 0.0) {
            return Err(ObjectError::InvalidConfig {
                field: "transforms.priority_distance",
                reason: "must be finite and above zero",
            });
        }
        if let Some(channel) = transforms.channel {
            if layout.qos(channel).is_none() || layout.is_raw(channel) {
                return Err(ObjectError::InvalidConfig {
                    field: "transforms.channel",
                    reason: "must be a typed channel of the layout",
                });
            }
        }
        let bad = ObjectError::InvalidConfig {
            field: "channel",
            reason: "must be a typed ReliableSequenced or ReliableFragmentedSequenced channel \
                     of the layout: spawns, updates and RPCs of an object must arrive whole and \
                     in order",
        };
        let Some(channel) = self.channel.or(layout.first_of(Qos::ReliableFragmentedSequenced))
        else {
            return Err(bad);
        };
        match layout.qos(channel) {
            Some(qos)
                if !layout.is_raw(channel)
                    && qos.is_reliable()
                    && qos.is_sequenced()
                    && !qos.is_state_update() =>
            {
                Ok(channel)
            }
            _ => Err(bad),
        }
    }
}

impl Default for ObjectConfig {
    fn default() -> Self {
        Self {
            sync_interval: Duration::from_millis(100),
            channel: None,
            despawn_owned_on_leave: true,
            auto_ready: true,
            transforms: TransformSyncConfig::default(),
        }
    }
}

/// What a [`ServerObjectManager`] counted. Every command either ran or was rejected under
/// exactly one `rejected_*` reason (and charged to the sender's error budget).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerObjectStats {
    /// Objects spawned.
    pub spawned: u64,
    /// Objects despawned.
    pub despawned: u64,
    /// Behaviour updates sent (one per behaviour per sync, whatever the number of observers).
    pub updates_sent: u64,
    /// Full states of behaviours synced on an unreliable channel sent again to the observers
    /// that had not acknowledged them (one per behaviour per sync interval while any is
    /// behind).
    pub states_resent: u64,
    /// Acknowledgements of unreliable states dropped: for an object that is gone or that the
    /// sender does not observe (a race, not charged), or naming a behaviour not synced
    /// unreliably or a version never sent (forged: charged to the sender's error budget).
    pub acks_dropped: u64,
    /// Client and target RPCs sent.
    pub rpcs_sent: u64,
    /// Commands run.
    pub commands_run: u64,
    /// Rejected: no object has the id.
    pub rejected_unknown_object: u64,
    /// Rejected: the sender does not observe the object.
    pub rejected_not_observer: u64,
    /// Rejected: the object has no behaviour of that index.
    pub rejected_unknown_behaviour: u64,
    /// Rejected: the behaviour has no command of that id.
    pub rejected_unknown_rpc: u64,
    /// Rejected: the command needs authority and the sender does not own the object.
    pub rejected_no_authority: u64,
    /// Rejected: the arguments did not decode.
    pub rejected_undecodable: u64,
    /// Objects a late joiner (or a player they entered the interest of) was not sent because
    /// their state, grown since they were spawned, no longer fits the objects' channel (or no
    /// longer encodes); each is logged at `warn`.
    pub spawns_too_large: u64,
    /// A client's own `Ready` refused because players are made ready by the server
    /// ([`ObjectConfig::auto_ready`] is `false`).
    pub refused_ready: u64,
    /// Transform snapshots sent (one per observer per tick with something to send).
    pub snapshots_sent: u64,
    /// Their bytes (message bodies: header and entries).
    pub snapshot_bytes: u64,
    /// Transform states sent in them (one per changed transform per snapshot).
    pub transform_updates: u64,
    /// The bits of those states' entries (id, behaviour, state or delta), without the
    /// snapshots' headers: `transform_update_bits / transform_updates` is the cost of a
    /// changed transform.
    pub transform_update_bits: u64,
    /// Owner-authoritative inputs applied.
    pub transform_inputs: u64,
    /// Owner-authoritative inputs refused (too fast, or not the owner's, or undecodable) and
    /// answered with a correction.
    pub transform_inputs_refused: u64,
    /// Snapshot acknowledgements dropped: naming a snapshot never sent, or undecodable.
    pub snapshot_acks_dropped: u64,
}

/// One line: `spawned 12, despawned 2 · sent 340 updates, 12 RPCs · commands: 40 run, 1
/// rejected · 0 spawns too large · 5 states resent, 0 acks dropped · 0 ready refused`.
impl std::fmt::Display for ServerObjectStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "spawned {}, despawned {} · sent {} updates, {} RPCs · commands: {} run, {} rejected \
             · {} spawns too large · {} states resent, {} acks dropped · {} ready refused",
            self.spawned,
            self.despawned,
            self.updates_sent,
            self.rpcs_sent,
            self.commands_run,
            self.rejected(),
            self.spawns_too_large,
            self.states_resent,
            self.acks_dropped,
            self.refused_ready
        )
    }
}

impl ServerObjectStats {
    /// Every command rejected, whatever the reason.
    pub fn rejected(&self) -> u64 {
        self.rejected_unknown_object
            + self.rejected_not_observer
            + self.rejected_unknown_behaviour
            + self.rejected_unknown_rpc
            + self.rejected_no_authority
            + self.rejected_undecodable
    }
}

#[derive(Debug, Clone, Copy)]
enum Rejection {
    UnknownObject,
    NotObserver,
    UnknownBehaviour,
    UnknownRpc,
    NoAuthority,
    Undecodable,
}

#[derive(Debug)]
pub(crate) struct ServerObject {
    prefab: PrefabId,
    scene: Option<SceneId>,
    owner: Option<PlayerId>,
    /// Taken out while one of them runs a command or RPC.
    behaviours: Behaviours,
    /// When each behaviour was last synced (`None`: never since the spawn).
    last_sync: Vec<Option<Instant>>,
    /// The players it is spawned to. Changed only through
    /// [`observe_added`](Self::observe_added) and [`observe_removed`](Self::observe_removed).
    observers: BTreeSet<PlayerId>,
    /// The last position the game gave (for an interest policy set later).
    position: Option<[f32; 3]>,
    /// The behaviours synced off the objects' channel, which send versioned full states until
    /// every observer acknowledges them (empty for most objects).
    versioned: Vec<Versioned>,
    /// The newest version given to any of `versioned`'s states: one counter per object, so
    /// a spawn carries it as the floor its state is at, and a client drops any older state
    /// still in flight (from before it was last made not ready, say).
    versions_issued: u64,
    /// Whether it is in the world's `touched` list.
    touched: bool,
    /// Its `NetworkTransform`s: (behaviour index, slot in the transform sync).
    transforms: Vec<(u8, u32)>,
    /// The epoch of the object's latest spawn message (see `wire::Spawn`).
    spawn_epoch: u8,
}

impl ServerObject {
    /// `player` starts observing the object; false if it already did.
    ///
    /// Every observer added (a spawn, a player made ready, an interest `Enter`) comes through
    /// here and only here: per-observer state (a transform's sync stream, say) starts here.
    fn observe_added(&mut self, player: PlayerId) -> bool {
        self.observers.insert(player)
    }

    /// `player` stops observing the object; false if it did not. It is owed no versioned
    /// state any more.
    ///
    /// Every observer removed (a despawn, a player made not ready or gone, an interest
    /// `Leave`) comes through here and only here: per-observer state ends here.
    fn observe_removed(&mut self, player: PlayerId) -> bool {
        let removed = self.observers.remove(&player);
        if removed {
            self.versioned.iter_mut().for_each(|v| v.forget(player));
        }
        removed
    }

    /// Every observer stops observing (the object is despawned).
    fn clear_observers(&mut self) {
        while let Some(player) = self.observers.first().copied() {
            self.observe_removed(player);
        }
    }
}

/// An interest policy as the manager keeps it, erased: typed access goes through `Any`.
trait ErasedInterest: InterestPolicy<PlayerId, NetId> + Any + Send {
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: InterestPolicy<PlayerId, NetId> + Any + Send> ErasedInterest for T {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// The interest policy in use.
struct Interest {
    policy: Box<dyn ErasedInterest>,
    /// Its type's name, to show.
    name: &'static str,
}

impl std::fmt::Debug for Interest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// A behaviour synced on an unreliable channel: its changes go as full states tagged with a
/// version, sent again at each sync interval to the observers that have not acknowledged the
/// newest (a lost update is never the last word; a full state is idempotent, where a delta
/// after a lost delta would be wrong).
#[derive(Debug)]
struct Versioned {
    /// The behaviour's index in its object.
    index: u8,
    /// The channel it syncs on.
    channel: ChannelId,
    /// The version of its newest state sent (0: none since the spawn, whose state went
    /// reliably); drawn from the object's `versions_issued`.
    version: u64,
    /// The remote observers that have not acknowledged `version`, sorted.
    behind: Vec<PlayerId>,
}

impl Versioned {
    /// The entries of `behaviours` synced on a channel of `layout` other than the objects'
    /// (`default`, reliable and ordered, which spawns go on too): there, whole versioned states
    /// are sent instead of deltas. A delta is only right if it arrives once, in order, after
    /// the spawn whose state it builds on — which only the objects' channel promises. An
    /// unreliable channel loses deltas; a reliable unordered one lets a late delta undo a newer
    /// one; a state-update one skips some; and on any other channel, even a reliable ordered
    /// one, a delta resent after the object was spawned again (a player made not ready, then
    /// ready) would be applied twice.
    fn of(behaviours: &Behaviours, layout: &ChannelLayout, default: ChannelId) -> Vec<Self> {
        let mut versioned = Vec::new();
        for (index, behaviour) in behaviours.iter().enumerate() {
            let Some(choice) = behaviour.sync_settings().channel else { continue };
            let Ok(channel) = resolve(layout, Some(choice), default) else { continue };
            if let (true, Ok(index)) = (channel != default, u8::try_from(index)) {
                versioned.push(Versioned { index, channel, version: 0, behind: Vec::new() });
            }
        }
        versioned
    }

    /// `player` stopped observing.
    fn forget(&mut self, player: PlayerId) {
        if let Ok(at) = self.behind.binary_search(&player) {
            self.behind.remove(at);
        }
    }
}

/// Everything of the server's side but the message-layer server, so a command's context can
/// borrow both.
#[derive(Debug)]
pub(crate) struct ServerWorld {
    config: ObjectConfig,
    /// The channel objects go on (the config's, resolved in the layout).
    channel: ChannelId,
    /// By id, for the lookups every change and command makes; where order matters (a late
    /// joiner gets objects in the order they came) the ids are sorted, id order being spawn
    /// order.
    objects: FxHashMap<NetId, ServerObject>,
    /// The objects whose behaviours may have changed since they were last synced: the only
    /// ones a sync visits (every way to change a behaviour — `get_mut`, a command, a host RPC —
    /// puts its object here), so a sync costs what changed, not what exists.
    touched: Vec<NetId>,
    scenes: HashMap<SceneId, NetId>,
    next_id: u32,
    ready: BTreeSet<PlayerId>,
    host_player: Option<PlayerId>,
    host_events: VecDeque<ClientObjectEvent>,
    /// Client and target RPCs for the host player, run on the server's objects, with their
    /// arguments.
    host_rpcs: VecDeque<(wire::Rpc, Vec<u8>)>,
    /// Commands the host player sent, with their arguments.
    host_commands: VecDeque<(wire::Command, Vec<u8>)>,
    stats: ServerObjectStats,
    /// Whether the host client (in host mode) is to be made the host player when it
    /// authenticates.
    expect_host: bool,
    /// The transforms and each observer's snapshot stream.
    transforms: TransformSync,
    /// Each player's point of view, if it follows an object (see `set_player_focus`).
    focus: FxHashMap<PlayerId, NetId>,
    /// Root transforms moved at the last transform tick: their objects' positions, to give
    /// the interest policy (reused).
    moved_roots: Vec<(NetId, [f32; 3])>,
    /// Who observes what, when a policy is set (`None`: every ready player observes every
    /// object).
    interest: Option<Interest>,
    /// The policy's events of an update, reused (no allocation in steady state).
    interest_events: Vec<InterestEvent<PlayerId, NetId>>,
    /// Whether observers are to be brought in line with the whole of interest at the next
    /// update (a policy was set or cleared).
    interest_resync: bool,
    /// Players made ready since the last update while a policy is set: at the next update
    /// they are spawned what the policy already says they observe (inputs the game gave it
    /// before they were ready, whose events were ignored).
    newly_ready: Vec<PlayerId>,
    /// The last position given for each player, given again to a policy when it is set or
    /// when the player is made ready again.
    player_positions: FxHashMap<PlayerId, [f32; 3]>,
    /// A spawn's state, reused.
    spawn_state: Vec<u8>,
}

impl ServerWorld {
    fn new(config: ObjectConfig, channel: ChannelId, layout: &ChannelLayout) -> Self {
        let snapshots = config.transforms.channel.or(layout.first_of(Qos::Unreliable));
        Self {
            transforms: TransformSync::new(config.transforms, snapshots),
            focus: FxHashMap::default(),
            moved_roots: Vec::new(),
            config,
            channel,
            objects: FxHashMap::default(),
            touched: Vec::new(),
            scenes: HashMap::new(),
            next_id: 0,
            ready: BTreeSet::new(),
            host_player: None,
            host_events: VecDeque::new(),
            host_rpcs: VecDeque::new(),
            host_commands: VecDeque::new(),
            stats: ServerObjectStats::default(),
            expect_host: false,
            interest: None,
            interest_events: Vec::new(),
            interest_resync: false,
            newly_ready: Vec::new(),
            player_positions: FxHashMap::default(),
            spawn_state: Vec::new(),
        }
    }

    pub(crate) fn host_player(&self) -> Option<PlayerId> {
        self.host_player
    }

    pub(crate) fn owner(&self, id: NetId) -> Option<PlayerId> {
        self.objects.get(&id)?.owner
    }

    pub(crate) fn get<B: NetworkBehaviour>(&self, id: NetId) -> Option<&B> {
        Some(find::<B>(&self.objects.get(&id)?.behaviours)?.1)
    }

    pub(crate) fn get_mut<B: NetworkBehaviour>(&mut self, id: NetId) -> Option<&mut B> {
        let object = self.objects.get_mut(&id)?;
        touch(&mut self.touched, id, object);
        find_mut::<B>(&mut object.behaviours)
    }

    pub(crate) fn handle<B: NetworkBehaviour>(&self, id: NetId) -> Option<Obj<B>> {
        let (index, _) = find::<B>(&self.objects.get(&id)?.behaviours)?;
        Some(Obj::new(id, index))
    }

    /// Queues `call` from the host player, to run at the next update; a command that requires
    /// authority over an object the host player does not own is refused here, as a remote
    /// client refuses it.
    pub(crate) fn queue_host_command<A: Serialize>(
        &mut self,
        call: RpcCall,
        args: &A,
    ) -> Result<(), ObjectError> {
        let object =
            self.objects.get(&call.net_id).ok_or(ObjectError::UnknownObject(call.net_id))?;
        if call.requires_authority
            && (self.host_player.is_none() || object.owner != self.host_player)
        {
            return Err(ObjectError::NotOwner(call.net_id));
        }
        self.host_commands.push_back((wire::Command::of(call), postcard::to_allocvec(args)?));
        Ok(())
    }

    /// The channel of `choice` (`None`: the objects' channel).
    pub(crate) fn channel_for(
        &self,
        layout: &ChannelLayout,
        choice: Option<OnChannel>,
    ) -> Result<ChannelId, ObjectError> {
        resolve(layout, choice, self.channel)
    }

    fn allocate_id(&mut self) -> NetId {
        loop {
            // Never 0, and never one in use, even after 2^32 spawns.
            self.next_id = self.next_id.wrapping_add(1);
            let id = NetId(self.next_id);
            if self.next_id != 0 && !self.objects.contains_key(&id) {
                return id;
            }
        }
    }

    pub(crate) fn spawn(
        &mut self,
        server: &mut ServerContext,
        prefab: PrefabId,
        scene: Option<SceneId>,
        behaviours: Behaviours,
        owner: Option<PlayerId>,
    ) -> Result<NetId, ObjectError> {
        match behaviours.len() {
            0 => return Err(ObjectError::NoBehaviours),
            n if n > 255 => return Err(ObjectError::TooManyBehaviours(n)),
            _ => {}
        }
        if let Some(scene) = scene {
            if self.scenes.contains_key(&scene) {
                return Err(ObjectError::DuplicateScene(scene));
            }
        }
        let mut state = Vec::new();
        for behaviour in &behaviours {
            behaviour.write_full(&mut state)?;
        }
        // A spawn that cannot fit its channel would never be delivered: refused, with the id
        // it would have had given back.
        let next_id = self.next_id;
        let id = self.allocate_id();
        let msg = wire::Spawn { net_id: id, prefab, scene, owned: false, version: 0, epoch: 0 };
        if let Err(err) = self.check_spawn_size(server, &msg, &state) {
            self.next_id = next_id;
            return Err(err);
        }
        let versioned = Versioned::of(&behaviours, server.channels(), self.channel);
        let has_transform =
            behaviours.iter().any(|b| b.as_any().downcast_ref::<NetworkTransform>().is_some());
        for behaviour in &behaviours {
            if let Some(t) = behaviour.as_any().downcast_ref::<NetworkTransform>() {
                if let Err(err) = t.config().validate() {
                    self.next_id = next_id;
                    return Err(err);
                }
            }
        }
        if has_transform && self.transforms.channel.is_none() {
            self.next_id = next_id;
            return Err(ObjectError::InvalidConfig {
                field: "transforms.channel",
                reason: "a NetworkTransform needs a channel for snapshots: the layout has no \
                         Unreliable channel and none is configured",
            });
        }
        let mut object = ServerObject {
            prefab,
            scene,
            owner,
            last_sync: vec![server.now(); behaviours.len()],
            versioned,
            versions_issued: 0,
            behaviours,
            observers: BTreeSet::new(),
            position: None,
            touched: false,
            transforms: Vec::new(),
            spawn_epoch: 0,
        };
        self.register_transforms(id, &mut object);
        match &mut self.interest {
            None => {
                for &player in &self.ready {
                    object.observe_added(player);
                }
            }
            Some(interest) => {
                // The host player observes everything; the others once the policy says so,
                // at its next update.
                if let Some(host) = self.host_player.filter(|h| self.ready.contains(h)) {
                    object.observe_added(host);
                }
                interest.policy.set_object_owner(id, owner);
            }
        }
        // The full state covers every change made before the spawn.
        for behaviour in &mut object.behaviours {
            behaviour.clear_dirty();
        }
        self.send_spawn(server, &object, msg, &state, object.observers.iter().copied());
        for player in object.observers.iter().copied() {
            self.observe_transforms(&object, player);
        }
        if let Some(scene) = scene {
            self.scenes.insert(scene, id);
        }
        let position = root_transform(&object).map(|t| t.pose().position);
        self.objects.insert(id, object);
        // An object with a transform is where its first transform is, for interest, from
        // the start.
        if let Some(position) = position {
            self.set_object_position(id, position);
        }
        self.stats.spawned += 1;
        Ok(id)
    }

    /// Whether a spawn `msg` with its `state` fits one message on the objects' channel.
    fn check_spawn_size(
        &self,
        server: &ServerContext,
        msg: &wire::Spawn,
        state: &[u8],
    ) -> Result<(), ObjectError> {
        // As the message layer encodes it: the id, the header, then the state.
        let mut header = wire::Spawn::ID.0.to_le_bytes().to_vec();
        wire::put(&mut header, msg)?;
        let len = header.len() + state.len();
        let max = server.max_message_size(self.channel);
        if len > max {
            return Err(ObjectError::TooLarge { prefab: msg.prefab, len, max });
        }
        Ok(())
    }

    /// Sends a spawn with its `state` to `to` (with `owned` set for the owner), or reports it
    /// to the host.
    fn send_spawn(
        &mut self,
        server: &mut ServerContext,
        object: &ServerObject,
        mut msg: wire::Spawn,
        state: &[u8],
        to: impl Iterator<Item = PlayerId> + Clone,
    ) {
        let host = self.host_player;
        if let Some(host) = host.filter(|h| to.clone().any(|p| p == *h)) {
            self.host_events.push_back(ClientObjectEvent::Spawned {
                net_id: msg.net_id,
                prefab: msg.prefab,
                scene: msg.scene,
                owned: object.owner == Some(host),
            });
        }
        let remote = to.filter(|p| Some(*p) != host);
        let others = remote.clone().filter(|p| Some(*p) != object.owner);
        let write = |msg: wire::Spawn| {
            move |out: &mut Vec<u8>| {
                wire::put(out, &msg)?;
                out.extend_from_slice(state);
                Ok(())
            }
        };
        send_logged(server.broadcast_to_with::<wire::Spawn>(others, self.channel, write(msg)));
        if let Some(owner) = object.owner.filter(|o| remote.clone().any(|p| p == *o)) {
            msg.owned = true;
            // A broadcast to one: a player that cannot take it is sent away, not left without
            // the object.
            let owner = std::iter::once(owner);
            send_logged(server.broadcast_to_with::<wire::Spawn>(owner, self.channel, write(msg)));
        }
    }

    pub(crate) fn despawn(&mut self, server: &mut ServerContext, id: NetId) -> Option<Behaviours> {
        let mut object = self.objects.remove(&id)?;
        if let Some(scene) = object.scene {
            self.scenes.remove(&scene);
        }
        for &(_, slot) in &object.transforms {
            self.transforms.unregister(slot, object.observers.iter().copied());
        }
        let remote = object.observers.iter().copied().filter(|p| Some(*p) != self.host_player);
        send_logged(server.broadcast_to_on(remote, &wire::Despawn { net_id: id }, self.channel));
        if self.host_player.is_some_and(|h| object.observers.contains(&h)) {
            self.host_events.push_back(ClientObjectEvent::Despawned(id));
        }
        object.clear_observers();
        if let Some(interest) = &mut self.interest {
            interest.policy.remove_object(id);
        }
        self.stats.despawned += 1;
        Some(object.behaviours)
    }

    pub(crate) fn set_owner(
        &mut self,
        server: &mut ServerContext,
        id: NetId,
        owner: Option<PlayerId>,
    ) -> Result<(), ObjectError> {
        let object = self.objects.get_mut(&id).ok_or(ObjectError::UnknownObject(id))?;
        let old = std::mem::replace(&mut object.owner, owner);
        if old == owner {
            return Ok(());
        }
        for &(_, slot) in &object.transforms {
            self.transforms.set_owner(slot, owner);
        }
        let observers = &object.observers;
        for (player, owned) in [(old, false), (owner, true)] {
            let Some(player) = player.filter(|p| observers.contains(p)) else { continue };
            if Some(player) == self.host_player {
                self.host_events
                    .push_back(ClientObjectEvent::OwnershipChanged { net_id: id, owned });
            } else {
                let msg = wire::Ownership { net_id: id, owned };
                let player = std::iter::once(player);
                send_logged(server.broadcast_to_on(player, &msg, self.channel));
            }
        }
        if let Some(interest) = &mut self.interest {
            interest.policy.set_object_owner(id, owner);
        }
        Ok(())
    }

    /// Sends `call` with `args` to every observer of its object (`to: None`) or to one: the
    /// arguments are encoded once, straight into the message layer's send buffer.
    pub(crate) fn send_rpc<A: Serialize>(
        &mut self,
        server: &mut ServerContext,
        call: RpcCall,
        to: Option<PlayerId>,
        args: &A,
    ) -> Result<(), ObjectError> {
        let net_id = call.net_id;
        let channel = self.channel_for(server.channels(), call.channel)?;
        let object = self.objects.get(&net_id).ok_or(ObjectError::UnknownObject(net_id))?;
        if let Some(player) = to {
            if !object.observers.contains(&player) {
                return Err(ObjectError::NotObserving { player, net_id });
            }
        }
        let to_host = self.host_player.filter(|h| match to {
            Some(player) => player == *h,
            None => object.observers.contains(h),
        });
        let host = self.host_player;
        let remote = object
            .observers
            .iter()
            .copied()
            .filter(|p| to.is_none_or(|t| t == *p) && Some(*p) != host);
        let header = wire::Rpc::of(call);
        server
            .broadcast_to_with::<wire::Rpc>(remote, channel, |out| {
                wire::write_with_tail(out, &header, args)
            })
            .map_err(|err| ObjectError::of_rpc(&call, err))?;
        if to_host.is_some() {
            self.host_rpcs.push_back((header, postcard::to_allocvec(args)?));
        }
        self.stats.rpcs_sent += 1;
        Ok(())
    }

    /// A player is ready: with no interest policy (and for the host player, always) it observes
    /// every object from now on and gets each one's state; with a policy, the policy is told
    /// and the player gets what it observes at the next update.
    fn make_ready(&mut self, server: &mut ServerContext, player: PlayerId) -> bool {
        if !self.ready.insert(player) {
            return false;
        }
        if Some(player) != self.host_player {
            if let Some(interest) = &mut self.interest {
                interest.policy.add_player(player);
                if let Some(&pos) = self.player_positions.get(&player) {
                    interest.policy.set_player_position(player, pos);
                }
                self.newly_ready.push(player);
                return true;
            }
        }
        // Pending changes go to the current observers first, so the state the newcomer gets
        // already holds them and no collection operation reaches it twice.
        self.sync(server, true);
        for id in sorted(self.objects.keys()) {
            self.enter(server, id, player, false);
        }
        true
    }

    /// `player` starts observing object `id` and is sent its spawn with its full state; false
    /// if no object has the id or the player observes it already. With `flush`, the object's
    /// pending changes go to its current observers first (without, the caller has synced
    /// them), so the newcomer's state already holds them and no collection operation reaches
    /// it twice: the cost is that object's changes, not a sync of the world.
    fn enter(
        &mut self,
        server: &mut ServerContext,
        id: NetId,
        player: PlayerId,
        flush: bool,
    ) -> bool {
        if self.objects.get(&id).is_none_or(|o| o.observers.contains(&player)) {
            return false;
        }
        if flush {
            self.flush(server, id);
        }
        let Some(mut object) = self.objects.remove(&id) else { return false };
        object.observe_added(player);
        let mut state = std::mem::take(&mut self.spawn_state);
        state.clear();
        let written = object.behaviours.iter().try_for_each(|b| b.write_full(&mut state));
        // Each spawn message of the object names a new epoch.
        object.spawn_epoch = object.spawn_epoch.wrapping_add(1);
        let msg = wire::Spawn {
            net_id: id,
            prefab: object.prefab,
            scene: object.scene,
            owned: false,
            version: object.versions_issued,
            epoch: object.spawn_epoch,
        };
        match written
            .map_err(ObjectError::from)
            .and_then(|()| self.check_spawn_size(server, &msg, &state))
        {
            Ok(()) => {
                // Its version floor makes the client drop any older state still in flight.
                self.send_spawn(server, &object, msg, &state, std::iter::once(player));
                self.observe_transforms(&object, player);
            }
            Err(err) => {
                // Its state grew past the channel's limit since it was spawned.
                warn!(%id, %player, %err, "an object could not be spawned to a newcomer");
                self.stats.spawns_too_large += 1;
            }
        }
        self.spawn_state = state;
        self.objects.insert(id, object);
        true
    }

    /// `player` stops observing object `id` and is told to despawn it; false if no object
    /// has the id or the player did not observe it.
    fn leave(&mut self, server: &mut ServerContext, id: NetId, player: PlayerId) -> bool {
        let Some(object) = self.objects.get_mut(&id) else { return false };
        if !object.observe_removed(player) {
            return false;
        }
        for &(_, slot) in &object.transforms {
            self.transforms.forget(player, slot);
        }
        if Some(player) == self.host_player {
            self.host_events.push_back(ClientObjectEvent::Despawned(id));
        } else {
            send_logged(server.send_on(player, &wire::Despawn { net_id: id }, self.channel));
        }
        true
    }

    /// Sends object `id`'s pending changes to its current observers now, whatever the
    /// intervals.
    fn flush(&mut self, server: &mut ServerContext, id: NetId) {
        let Some(now) = server.now() else { return };
        let ServerWorld { objects, config, host_player, stats, channel, .. } = self;
        let Some(object) = objects.get_mut(&id) else { return };
        if object.touched {
            // It stays on the touched list: the next sync drops it if nothing is left.
            sync_object(server, object, id, now, true, config, *host_player, stats, *channel);
        }
    }

    /// Uses `policy` for interest from the next update on, telling it what the manager knows
    /// (its ready players, its objects' owners, the positions given); at that update,
    /// observers are brought in line with it.
    fn set_interest(&mut self, mut policy: Box<dyn ErasedInterest>, name: &'static str) {
        for &player in &self.ready {
            if Some(player) == self.host_player {
                continue;
            }
            policy.add_player(player);
            if let Some(&pos) = self.player_positions.get(&player) {
                policy.set_player_position(player, pos);
            }
        }
        for id in sorted(self.objects.keys()) {
            let Some(object) = self.objects.get(&id) else { continue };
            policy.set_object_owner(id, object.owner);
            if let Some(pos) = object.position {
                policy.set_object_position(id, pos);
            }
        }
        self.interest = Some(Interest { policy, name });
        self.interest_resync = true;
        self.newly_ready.clear();
    }

    /// Back to every ready player observing every object, from the next update on.
    fn clear_interest(&mut self) {
        if self.interest.take().is_some() {
            self.interest_resync = true;
            self.newly_ready.clear();
        }
    }

    /// An object is at `pos`: the policy is told (and the position kept for a policy set
    /// later). Nothing if no object has the id.
    pub(crate) fn set_object_position(&mut self, id: NetId, pos: [f32; 3]) {
        let Some(object) = self.objects.get_mut(&id) else { return };
        object.position = Some(pos);
        if let Some(interest) = &mut self.interest {
            interest.policy.set_object_position(id, pos);
        }
    }

    /// A player's point of view is at `pos`: kept, and told to the policy while the player is
    /// ready (a player not ready is not in the policy: it is told when the player is made
    /// ready). The host player's is kept only: it observes everything.
    fn set_player_position(&mut self, player: PlayerId, pos: [f32; 3]) {
        self.player_positions.insert(player, pos);
        if Some(player) == self.host_player || !self.ready.contains(&player) {
            return;
        }
        if let Some(interest) = &mut self.interest {
            interest.policy.set_player_position(player, pos);
        }
    }

    /// Brings observers in line with interest: the policy's events since the last update
    /// (`Enter`: spawned to the player, `Leave`: despawned on its side), what it says players
    /// made ready since observe, and after a policy was set or cleared, everything. The host
    /// player observes every object whatever the policy (it shares the server's objects:
    /// there is no copy to spawn or despawn), and a player not ready observes nothing, so
    /// events for either are ignored, as are those for objects gone.
    ///
    /// The cost follows the events, plus a scan of the objects per player made ready and
    /// once when the policy changes.
    fn apply_interest(&mut self, server: &mut ServerContext) {
        let Some(mut interest) = self.interest.take() else {
            if std::mem::take(&mut self.interest_resync) {
                self.observe_all(server);
            }
            return;
        };
        let mut events = std::mem::take(&mut self.interest_events);
        events.clear();
        interest.policy.update(&mut events);
        for event in &events {
            let InterestEvent { player, object, change } = *event;
            if Some(player) == self.host_player || !self.ready.contains(&player) {
                continue;
            }
            match change {
                Change::Enter => self.enter(server, object, player, true),
                Change::Leave => self.leave(server, object, player),
            };
        }
        events.clear();
        self.interest_events = events;
        if std::mem::take(&mut self.interest_resync) {
            self.newly_ready.clear();
            self.resync(server, &*interest.policy);
        } else if !self.newly_ready.is_empty() {
            let mut newly = std::mem::take(&mut self.newly_ready);
            let ids = sorted(self.objects.keys());
            for &player in &newly {
                if !self.ready.contains(&player) {
                    continue;
                }
                for &id in &ids {
                    if interest.policy.observes(player, id) {
                        self.enter(server, id, player, true);
                    }
                }
            }
            newly.clear();
            self.newly_ready = newly;
        }
        self.interest = Some(interest);
    }

    /// Makes every object's observers what `policy` says (the ready players among them, and
    /// the host player): after a policy is set while running.
    fn resync(&mut self, server: &mut ServerContext, policy: &dyn ErasedInterest) {
        let host = self.host_player;
        let mut players = Vec::new();
        for id in sorted(self.objects.keys()) {
            let Some(object) = self.objects.get(&id) else { continue };
            players.clear();
            let stale = object.observers.iter().filter(|p| Some(**p) != host);
            players.extend(stale.filter(|p| !policy.observes(**p, id)).copied());
            for &player in &players {
                self.leave(server, id, player);
            }
            players.clear();
            policy.for_each_observer(id, &mut |p| players.push(p));
            players.sort_unstable();
            for &player in &players {
                if Some(player) != host && self.ready.contains(&player) {
                    self.enter(server, id, player, true);
                }
            }
        }
    }

    /// Every ready player observes every object (after a policy was cleared).
    fn observe_all(&mut self, server: &mut ServerContext) {
        let players: Vec<PlayerId> = self.ready.iter().copied().collect();
        for id in sorted(self.objects.keys()) {
            for &player in &players {
                self.enter(server, id, player, true);
            }
        }
    }

    /// A player is no longer ready: it stops observing every object, and its client is told
    /// to forget them (the host player, which shares the server's objects, cannot be).
    fn make_not_ready(&mut self, server: &mut ServerContext, player: PlayerId) -> bool {
        if self.host_player == Some(player) || !self.ready.remove(&player) {
            return false;
        }
        // Pending changes need not reach it: it gets whole states when it is ready again.
        for object in self.objects.values_mut() {
            object.observe_removed(player);
        }
        self.transforms.reset_player(player);
        if let Some(interest) = &mut self.interest {
            interest.policy.remove_player(player);
        }
        self.newly_ready.retain(|p| *p != player);
        if let Err(err) = server.send_on(player, &wire::NotReady, self.channel) {
            debug!(%player, %err, "could not tell a player it is no longer ready");
        }
        true
    }

    fn player_left(&mut self, server: &mut ServerContext, player: PlayerId) {
        self.ready.remove(&player);
        self.transforms.remove_player(player);
        self.focus.remove(&player);
        if self.host_player == Some(player) {
            self.host_player = None;
            self.host_rpcs.clear();
            self.host_commands.clear();
        }
        if let Some(interest) = &mut self.interest {
            interest.policy.remove_player(player);
        }
        self.newly_ready.retain(|p| *p != player);
        self.player_positions.remove(&player);
        let mut owned = Vec::new();
        for (id, object) in &mut self.objects {
            object.observe_removed(player);
            if object.owner == Some(player) {
                owned.push(*id);
            }
        }
        owned.sort_unstable();
        for id in owned {
            if self.config.despawn_owned_on_leave {
                self.despawn(server, id);
            } else if let Some(object) = self.objects.get_mut(&id) {
                object.owner = None;
                if let Some(interest) = &mut self.interest {
                    interest.policy.set_object_owner(id, None);
                }
            }
        }
    }

    /// Sends the changes of every dirty behaviour that is due (all of them with `force`),
    /// each encoded once, straight into the message layer's send buffer.
    fn sync(&mut self, server: &mut ServerContext, force: bool) {
        let Some(now) = server.now() else { return };
        let mut touched = std::mem::take(&mut self.touched);
        let mut kept = 0;
        let ServerWorld { objects, config, host_player, stats, channel, transforms, .. } = self;
        for i in 0..touched.len() {
            let id = touched[i];
            let Some(object) = objects.get_mut(&id) else { continue }; // despawned since
            for &(index, slot) in &object.transforms {
                let behaviour = object.behaviours.get_mut(usize::from(index));
                let transform =
                    behaviour.and_then(|b| b.as_any_mut().downcast_mut::<NetworkTransform>());
                if let Some(transform) = transform.filter(|t| t.changed) {
                    transform.changed = false;
                    transforms.note_moved(slot);
                }
            }
            let waiting =
                sync_object(server, object, id, now, force, config, *host_player, stats, *channel);
            // Changes not yet due keep the object on the list; a clean one leaves it.
            if waiting {
                touched[kept] = id;
                kept += 1;
            } else {
                object.touched = false;
            }
        }
        touched.truncate(kept);
        touched.append(&mut self.touched);
        self.touched = touched;
    }

    /// Gives each `NetworkTransform` of `object` (of id `id`) a slot.
    fn register_transforms(&mut self, id: NetId, object: &mut ServerObject) {
        for (index, behaviour) in object.behaviours.iter_mut().enumerate() {
            let Some(transform) = behaviour.as_any_mut().downcast_mut::<NetworkTransform>() else {
                continue;
            };
            let Ok(index) = u8::try_from(index) else { continue };
            let slot = self.transforms.register(id, index, transform, object.owner);
            object.transforms.push((index, slot));
        }
    }

    /// `player` was just sent `object`'s spawn: its transforms' streams start from that state.
    /// (The host player shares the server's objects and has no stream.)
    fn observe_transforms(&mut self, object: &ServerObject, player: PlayerId) {
        if Some(player) == self.host_player {
            return;
        }
        for &(index, slot) in &object.transforms {
            let behaviour = object.behaviours.get(usize::from(index));
            if let Some(t) = behaviour.and_then(|b| b.as_any().downcast_ref::<NetworkTransform>()) {
                self.transforms.observe(player, slot, t, object.spawn_epoch);
            }
        }
    }

    /// At each transform tick: samples the transforms that moved and sends each observer its
    /// snapshot.
    fn sync_transforms(&mut self, server: &mut ServerContext) {
        let Some(now) = server.now() else { return };
        let Some(channel) = self.transforms.channel else { return };
        let Some(dt) = self.transforms.due(now) else { return };
        let objects = &self.objects;
        let mut moved_roots = std::mem::take(&mut self.moved_roots);
        moved_roots.clear();
        self.transforms.sample(
            now,
            |slot| {
                let object = objects.get(&slot.net_id)?;
                let behaviour = object.behaviours.get(usize::from(slot.behaviour))?;
                let t = behaviour.as_any().downcast_ref::<NetworkTransform>()?;
                Some((t.pose(), t.is_important()))
            },
            |slot, index, streams| {
                let Some(object) = objects.get(&slot.net_id) else { return };
                // The object's first transform is where it is, for interest.
                if object.transforms.first().is_some_and(|&(_, first)| first == index) {
                    moved_roots.push((slot.net_id, slot.published.position));
                }
                for player in &object.observers {
                    if slot.owner != Some(*player) {
                        if let Some(stream) = streams.get_mut(player) {
                            stream.changed(index);
                        }
                    }
                }
            },
        );
        for &(id, pos) in &moved_roots {
            self.set_object_position(id, pos);
        }
        self.moved_roots = moved_roots;
        // Players following an object: their point of view moves with it.
        let mut focus = std::mem::take(&mut self.focus);
        for (&player, id) in &focus {
            let root = self.objects.get(id).and_then(root_transform);
            if let Some(pos) = root.map(|t| t.pose().position) {
                if self.player_positions.get(&player) != Some(&pos) {
                    self.set_player_position(player, pos);
                }
            }
        }
        focus.retain(|_, id| self.objects.contains_key(id));
        self.focus = focus;
        // Milliseconds of server time.
        let time = server.server_time(now).unwrap_or_default();
        let time_ms = u64::try_from(time.as_millis()).unwrap_or(u64::MAX);
        // Room for the message's id and the snapshot header (at most 15 bytes).
        let max_payload = server.max_message_size(channel).saturating_sub(24).min(64 * 1024);
        let positions = &self.player_positions;
        let totals =
            self.transforms.tick(now, dt, time_ms, max_payload, positions, |player, bytes| {
                let sent = server.send_with::<wire::Snapshot>(player, channel, |out| {
                    out.extend_from_slice(bytes);
                    Ok(())
                });
                sent.is_ok()
            });
        self.stats.snapshots_sent += totals.snapshots;
        self.stats.snapshot_bytes += totals.bytes;
        self.stats.transform_updates += totals.entries;
        self.stats.transform_update_bits += totals.bits;
    }

    /// A client's acknowledgement of snapshots, with the transforms it could not decode.
    fn snapshot_ack(
        &mut self,
        server: &mut ServerContext,
        player: PlayerId,
        ack: wire::SnapshotAck,
        mut missing: &[u8],
    ) -> Dispatched {
        let Some(stream) = self.transforms.streams.get_mut(&player) else {
            // Not observing any transform (any more): a race, not charged.
            self.stats.snapshot_acks_dropped += 1;
            return Dispatched::Handled;
        };
        let Some(now) = server.now() else { return Dispatched::Handled };
        if !stream.on_ack(now, ack.ack_id, ack.newest, ack.bits) {
            self.stats.snapshot_acks_dropped += 1;
            server.reject(player);
            return Dispatched::Handled;
        }
        while !missing.is_empty() {
            let Some((entry, rest)) = wire::split::<wire::Missing>(missing) else {
                return Dispatched::Undecodable;
            };
            missing = rest;
            let slot = self.objects.get(&entry.net_id).and_then(|o| {
                o.transforms.iter().find(|(b, _)| *b == entry.behaviour).map(|(_, s)| *s)
            });
            if let (Some(slot), Some(stream)) = (slot, self.transforms.streams.get_mut(&player)) {
                stream.on_missing(slot, ack.newest);
            }
        }
        Dispatched::Handled
    }

    /// An owner-authoritative transform's state from `player`: applied if it is the owner's
    /// and within the speed limit, else refused and the owner corrected.
    fn transform_input(
        &mut self,
        server: &mut ServerContext,
        player: PlayerId,
        input: wire::TransformInput,
        bits: &[u8],
    ) {
        let Some(now) = server.now() else { return };
        let Some(object) = self.objects.get_mut(&input.net_id) else {
            // Despawned while the input was on its way: a race, not charged.
            self.stats.transform_inputs_refused += 1;
            return;
        };
        let owner = object.owner;
        let behaviour = object.behaviours.get_mut(usize::from(input.behaviour));
        let Some(t) = behaviour.and_then(|b| b.as_any_mut().downcast_mut::<NetworkTransform>())
        else {
            self.stats.transform_inputs_refused += 1;
            server.reject(player);
            return;
        };
        if owner != Some(player) || t.config().authority != Authority::Owner {
            self.stats.transform_inputs_refused += 1;
            server.reject(player);
            return;
        }
        // An older input than the last one applied (overtaken on the way): dropped.
        #[expect(clippy::cast_possible_wrap, reason = "a wrapping sequence comparison")]
        if (input.seq.wrapping_sub(t.input_seq) as i32) <= 0 {
            return;
        }
        t.input_seq = input.seq;
        let config = *t.config();
        let Ok(state) = config.read_absolute(&mut BitReader::new(bits)) else {
            self.stats.transform_inputs_refused += 1;
            server.reject(player);
            return;
        };
        let pose = config.dequantize(&state, &t.pose());
        // The distance the owner may move it is a bucket refilled at the speed limit, holding
        // at most a quarter of a second's worth (or four send intervals'): inputs sent more
        // often move it no faster, and a long stand-still buys no jump. A centimetre of slack
        // covers quantisation.
        let distance = {
            let from = t.pose().position;
            (0..3).map(|k| (pose.position[k] - from[k]).powi(2)).sum::<f32>().sqrt()
        };
        let too_fast = config.max_speed.is_some_and(|max| {
            let cap = max * (4.0 * config.send_interval.as_secs_f32()).max(0.25);
            let refill = t
                .last_input
                .map_or(cap, |at| max * now.saturating_duration_since(at).as_secs_f32());
            t.allowance = (t.allowance + refill).min(cap);
            t.last_input = Some(now);
            distance > t.allowance + 0.01
        });
        if too_fast {
            self.stats.transform_inputs_refused += 1;
            debug!(%player, net_id = %input.net_id, "owner's transform input refused: too fast");
            let mut buf = [0_u8; 32];
            let mut w = BitWriter::new(&mut buf);
            let _ = config.write_absolute(&config.quantize(&t.pose()), &mut w);
            let len = w.bytes_written();
            let header =
                wire::TransformCorrection { net_id: input.net_id, behaviour: input.behaviour };
            let channel = self.channel;
            send_logged(server.send_with::<wire::TransformCorrection>(player, channel, |out| {
                wire::put(out, &header)?;
                out.extend_from_slice(&buf[..len]);
                Ok(())
            }));
            return;
        }
        t.last_input = Some(now);
        t.allowance = (t.allowance - distance).max(0.0);
        t.set_pose(pose);
        self.stats.transform_inputs += 1;
        touch(&mut self.touched, input.net_id, object);
    }

    fn reject(&mut self, server: &mut ServerContext, player: PlayerId, why: Rejection) {
        let stats = &mut self.stats;
        let counter = match why {
            Rejection::UnknownObject => &mut stats.rejected_unknown_object,
            Rejection::NotObserver => &mut stats.rejected_not_observer,
            Rejection::UnknownBehaviour => &mut stats.rejected_unknown_behaviour,
            Rejection::UnknownRpc => &mut stats.rejected_unknown_rpc,
            Rejection::NoAuthority => &mut stats.rejected_no_authority,
            Rejection::Undecodable => &mut stats.rejected_undecodable,
        };
        *counter += 1;
        debug!(%player, ?why, "command rejected");
        server.reject(player);
    }

    /// Validates and runs a command from `player`, its arguments lent.
    fn run_command(
        &mut self,
        server: &mut ServerContext,
        player: PlayerId,
        cmd: wire::Command,
        args: &[u8],
    ) {
        let Some(object) = self.objects.get_mut(&cmd.net_id) else {
            return self.reject(server, player, Rejection::UnknownObject);
        };
        if !object.observers.contains(&player) {
            return self.reject(server, player, Rejection::NotObserver);
        }
        let Some(behaviour) = object.behaviours.get(usize::from(cmd.behaviour)) else {
            return self.reject(server, player, Rejection::UnknownBehaviour);
        };
        let Some(info) = behaviour.rpc_info(cmd.rpc).filter(|i| i.kind == RpcKind::Command) else {
            return self.reject(server, player, Rejection::UnknownRpc);
        };
        if info.requires_authority && object.owner != Some(player) {
            return self.reject(server, player, Rejection::NoAuthority);
        }
        let mut behaviours = std::mem::take(&mut object.behaviours);
        let result = {
            let mut ctx = ServerCtx::new(self, server, player, cmd.net_id, cmd.behaviour);
            behaviours[usize::from(cmd.behaviour)].invoke_rpc(
                cmd.rpc,
                args,
                RpcContext::Server(&mut ctx),
            )
        };
        // The command may have despawned its own object: then its behaviours are dropped.
        if let Some(object) = self.objects.get_mut(&cmd.net_id) {
            object.behaviours = behaviours;
            touch(&mut self.touched, cmd.net_id, object);
        }
        match result {
            Ok(()) => self.stats.commands_run += 1,
            Err(_) => self.reject(server, player, Rejection::Undecodable),
        }
    }

    /// Runs a client or target RPC for the host player on the server's object.
    fn run_host_rpc(&mut self, rpc: wire::Rpc, args: &[u8]) {
        let Some(object) = self.objects.get_mut(&rpc.net_id) else { return };
        let index = usize::from(rpc.behaviour);
        let known = object.behaviours.get(index).and_then(|b| b.rpc_info(rpc.rpc));
        if !known.is_some_and(|info| info.kind != RpcKind::Command) {
            return;
        }
        let mut behaviours = std::mem::take(&mut object.behaviours);
        let result = {
            let mut ctx = ClientCtx::host(self, rpc.net_id, rpc.behaviour);
            behaviours[index].invoke_rpc(rpc.rpc, args, RpcContext::Client(&mut ctx))
        };
        if let Some(object) = self.objects.get_mut(&rpc.net_id) {
            object.behaviours = behaviours;
            touch(&mut self.touched, rpc.net_id, object);
        }
        if let Err(err) = result {
            warn!(net_id = %rpc.net_id, %err, "an RPC to the host player did not decode");
        }
    }

    /// Runs the host player's commands and RPCs, including those they cause, up to a bound
    /// per update (a command and an RPC calling each other forever cannot hang the frame).
    fn run_host_queues(&mut self, server: &mut ServerContext) {
        let Some(host) = self.host_player else { return };
        for _ in 0..4096 {
            if let Some((cmd, args)) = self.host_commands.pop_front() {
                self.run_command(server, host, cmd, &args);
            } else if let Some((rpc, args)) = self.host_rpcs.pop_front() {
                self.run_host_rpc(rpc, &args);
            } else {
                return;
            }
        }
    }
}

/// A message handler registered on the manager, erased.
type ObjectHandler = Box<dyn FnMut(&mut ServerObjects<'_>, PlayerId, &[u8]) -> bool + Send>;

/// The manager as the message layer's dispatcher: its world, and the game's message handlers
/// that need the objects.
struct Dispatch<'a> {
    world: &'a mut ServerWorld,
    handlers: &'a mut FxHashMap<MessageId, ObjectHandler>,
}

impl ServerDispatch for Dispatch<'_> {
    fn message(
        &mut self,
        server: &mut ServerContext,
        player: PlayerId,
        id: MessageId,
        body: &[u8],
    ) -> Dispatched {
        match self.handlers.get_mut(&id) {
            Some(handler) => {
                let mut objects = ServerObjects::new(self.world, server);
                if handler(&mut objects, player, body) {
                    Dispatched::Handled
                } else {
                    Dispatched::Undecodable
                }
            }
            None => self.world.message(server, player, id, body),
        }
    }

    fn event(&mut self, server: &mut ServerContext, event: &ServerEvent) {
        self.world.event(server, event);
    }
}

/// What the server's object world does with the message layer's messages and events.
impl ServerWorld {
    fn message(
        &mut self,
        server: &mut ServerContext,
        player: PlayerId,
        id: MessageId,
        body: &[u8],
    ) -> Dispatched {
        if id == wire::Ready::ID {
            if self.config.auto_ready {
                self.make_ready(server, player);
            } else {
                self.stats.refused_ready += 1;
            }
        } else if id == wire::Command::ID {
            let Some((cmd, args)) = wire::split::<wire::Command>(body) else {
                return Dispatched::Undecodable;
            };
            self.run_command(server, player, cmd, args);
        } else if id == wire::SnapshotAck::ID {
            let Some((ack, missing)) = wire::split::<wire::SnapshotAck>(body) else {
                self.stats.snapshot_acks_dropped += 1;
                return Dispatched::Undecodable;
            };
            return self.snapshot_ack(server, player, ack, missing);
        } else if id == wire::TransformInput::ID {
            let Some((input, bits)) = wire::split::<wire::TransformInput>(body) else {
                return Dispatched::Undecodable;
            };
            self.transform_input(server, player, input, bits);
        } else if id == wire::Ack::ID {
            let Some((wire::Ack, mut entries)) = wire::split::<wire::Ack>(body) else {
                return Dispatched::Undecodable;
            };
            while !entries.is_empty() {
                let Some((entry, rest)) = wire::split::<wire::AckEntry>(entries) else {
                    return Dispatched::Undecodable;
                };
                self.ack(server, player, entry);
                entries = rest;
            }
        } else {
            return Dispatched::Unknown;
        }
        Dispatched::Handled
    }

    /// `player` holds version `entry.version` of a behaviour's state (from a state, or from a
    /// spawn at that floor): if it is the newest or later, it is no longer behind. An
    /// acknowledgement of a behaviour not versioned or of a version the object never issued
    /// is forged, and charged; one for an object gone or no longer observed is a race.
    fn ack(&mut self, server: &mut ServerContext, player: PlayerId, entry: wire::AckEntry) {
        let Some(object) = self.objects.get_mut(&entry.net_id) else {
            self.stats.acks_dropped += 1;
            return;
        };
        if !object.observers.contains(&player) {
            self.stats.acks_dropped += 1;
            return;
        }
        let issued = object.versions_issued;
        let versioned = object.versioned.iter_mut().find(|v| v.index == entry.behaviour);
        match versioned {
            Some(v) if entry.version >= v.version && entry.version <= issued => v.forget(player),
            // An older version: the newest is still on its way.
            Some(v) if entry.version < v.version => {}
            _ => {
                self.stats.acks_dropped += 1;
                debug!(%player, ?entry, "forged acknowledgement dropped");
                server.reject(player);
            }
        }
    }

    fn event(&mut self, server: &mut ServerContext, event: &ServerEvent) {
        match *event {
            ServerEvent::Authenticated(id) => {
                let is_host =
                    self.expect_host && self.host_player.is_none() && server.is_local_player(id);
                if is_host {
                    self.host_player = Some(id);
                    self.make_ready(server, id);
                }
            }
            ServerEvent::Disconnected(id, _) => self.player_left(server, id),
            ServerEvent::Stopped => {
                // Every player left first; the host's own client goes with the server.
                self.ready.clear();
                self.host_player = None;
                self.expect_host = false;
                self.newly_ready.clear();
                self.player_positions.clear();
            }
            _ => {}
        }
    }
}

/// Sends the changes of `object`'s (of id `id`) dirty behaviours that are due (all of them
/// with `force`) to its observers. Returns whether some are still to be sent or acknowledged
/// (the object stays touched).
#[expect(clippy::too_many_arguments, reason = "the parts of the world a sync borrows")]
fn sync_object(
    server: &mut ServerContext,
    object: &mut ServerObject,
    id: NetId,
    now: Instant,
    force: bool,
    config: &ObjectConfig,
    host_player: Option<PlayerId>,
    stats: &mut ServerObjectStats,
    channel: ChannelId,
) -> bool {
    let mut waiting = false;
    // Who observes is asked only of objects with something to send.
    let mut audience = None;
    if !object.versioned.is_empty() {
        waiting |= sync_versioned(server, object, id, now, force, config, host_player, stats);
    }
    for (index, behaviour) in object.behaviours.iter_mut().enumerate() {
        if !behaviour.is_dirty() || object.versioned.iter().any(|v| usize::from(v.index) == index) {
            continue;
        }
        let settings = behaviour.sync_settings();
        let interval = settings.interval.unwrap_or(config.sync_interval);
        // A behaviour's own interval is not bounded like the config's: an interval
        // past the clock's range means "never by time".
        let due = object.last_sync[index]
            .is_none_or(|last| last.checked_add(interval).is_some_and(|at| now >= at));
        if !force && !due {
            waiting = true;
            continue;
        }
        let observers = &object.observers;
        let (has_remote, host_observes) = *audience.get_or_insert_with(|| {
            let host = host_player.is_some_and(|h| observers.contains(&h));
            (observers.len() > usize::from(host), host)
        });
        if has_remote {
            let header = wire::Update {
                net_id: id,
                behaviour: u8::try_from(index).expect("at most 255 behaviours"),
            };
            let remote = object.observers.iter().copied();
            let remote = remote.filter(|p| Some(*p) != host_player);
            let sent = resolve(server.channels(), settings.channel, channel)
                .map_err(|err| warn!(%id, %err, "a behaviour names no channel"))
                .ok()
                .map(|qos_channel| {
                    server.broadcast_to_with::<wire::Update>(remote, qos_channel, |out| {
                        wire::put(out, &header)?;
                        behaviour.write_changes(out)
                    })
                });
            match sent {
                Some(Ok(_)) => stats.updates_sent += 1,
                Some(Err(err)) => warn!(%id, %err, "could not send a behaviour's changes"),
                None => {}
            }
        }
        if host_observes {
            // Clears the fields, then runs the host player's hooks: a hook that
            // changes a synchronised field leaves a new change for the next sync.
            behaviour.run_local_hooks();
            waiting |= behaviour.is_dirty();
        } else {
            behaviour.clear_dirty();
        }
        object.last_sync[index] = Some(now);
    }
    waiting
}

/// Syncs the behaviours of `object` (of id `id`) that go on an unreliable channel: a changed one
/// that is due sends its full state, with a new version, to every remote observer; an unchanged
/// one sends it again to the observers that have not acknowledged it, once per interval.
/// Returns whether some are still to be sent or acknowledged (the object stays touched).
#[expect(clippy::too_many_arguments, reason = "the parts of the world a sync borrows")]
fn sync_versioned(
    server: &mut ServerContext,
    object: &mut ServerObject,
    id: NetId,
    now: Instant,
    force: bool,
    config: &ObjectConfig,
    host_player: Option<PlayerId>,
    stats: &mut ServerObjectStats,
) -> bool {
    let mut waiting = false;
    let ServerObject { behaviours, versioned, versions_issued, observers, last_sync, .. } = object;
    for v in versioned.iter_mut() {
        let index = usize::from(v.index);
        let Some(behaviour) = behaviours.get_mut(index) else { continue };
        let dirty = behaviour.is_dirty();
        if !dirty && v.behind.is_empty() {
            continue;
        }
        let interval = behaviour.sync_settings().interval.unwrap_or(config.sync_interval);
        let due = last_sync[index]
            .is_none_or(|last| last.checked_add(interval).is_some_and(|at| now >= at));
        // A forced sync sends changes, not resends.
        let send_now = due || (dirty && force);
        if !send_now {
            waiting = true;
            continue;
        }
        let resend = !dirty;
        if dirty {
            *versions_issued += 1;
            v.version = *versions_issued;
            v.behind.clear();
            v.behind.extend(observers.iter().copied().filter(|p| Some(*p) != host_player));
        } else {
            // Who stopped observing since is no longer owed anything.
            v.behind.retain(|p| observers.contains(p));
        }
        if !v.behind.is_empty() {
            let header = wire::State { net_id: id, behaviour: v.index, version: v.version };
            let to = v.behind.iter().copied();
            let sent = server.broadcast_to_with::<wire::State>(to, v.channel, |out| {
                wire::put(out, &header)?;
                behaviour.write_full(out)
            });
            match sent {
                Ok(_) if resend => stats.states_resent += 1,
                Ok(_) => stats.updates_sent += 1,
                Err(err) => {
                    // It cannot go on this channel (too large, say): logged once per change,
                    // not at every interval.
                    warn!(%id, %err, "could not send a behaviour's state");
                    v.behind.clear();
                }
            }
        }
        if dirty {
            if host_player.is_some_and(|h| observers.contains(&h)) {
                // As for other behaviours: the host player's hooks run on the server's object.
                behaviour.run_local_hooks();
            } else {
                behaviour.clear_dirty();
            }
        }
        last_sync[index] = Some(now);
        waiting |= !v.behind.is_empty() || behaviour.is_dirty();
    }
    waiting
}

/// Puts `object` (of id `id`) on the `touched` list, once.
fn touch(touched: &mut Vec<NetId>, id: NetId, object: &mut ServerObject) {
    if !object.touched {
        object.touched = true;
        touched.push(id);
    }
}

/// Object ids in id order, which is spawn order.
pub(crate) fn sorted<'a>(ids: impl Iterator<Item = &'a NetId>) -> Vec<NetId> {
    let mut ids: Vec<NetId> = ids.copied().collect();
    ids.sort_unstable();
    ids
}

/// The channel of `choice` in `layout` (`None`: `default`).
pub(crate) fn resolve(
    layout: &ChannelLayout,
    choice: Option<OnChannel>,
    default: ChannelId,
) -> Result<ChannelId, ObjectError> {
    match choice {
        None => Ok(default),
        Some(OnChannel::Id(channel)) => Ok(channel),
        Some(OnChannel::Kind(qos)) => {
            layout.first_of(qos).ok_or(sturnus_message::MessageError::NoChannel(qos).into())
        }
    }
}

/// An object's first `NetworkTransform`: where the object is.
fn root_transform(object: &ServerObject) -> Option<&NetworkTransform> {
    let &(index, _) = object.transforms.first()?;
    object.behaviours.get(usize::from(index))?.as_any().downcast_ref::<NetworkTransform>()
}

/// Logs a send the message layer refused (it also counts it in the player's stats).
fn send_logged<T>(result: Result<T, sturnus_message::MessageError>) {
    if let Err(err) = result {
        debug!(%err, "object message not sent");
    }
}

/// The server's object manager (Mirage's `ServerObjectManager`, UNET's `NetworkServer`
/// spawning): it composes a [`NetworkServer`] and keeps its players' view of the networked
/// objects in step with the server's.
///
/// - [`spawn`](Self::spawn) sends an object with its full state to every observer (every
///   ready player, or with an [interest policy](Self::set_interest) those it lets observe the
///   object: objects are then spawned to a player as they enter its interest and despawned as
///   they leave); a player that becomes ready later gets every live object, all at once: a
///   world of more objects than the transport queues per channel (`send_queue_capacity`,
///   4,096 by default) needs a larger queue, or the joiner is sent away as
///   [`Overloaded`](sturnus_message::DisconnectReason::Overloaded) rather than left with part
///   of the world.
/// - Changed `#[sync]` fields are sent at each behaviour's sync interval, only the dirty ones;
///   a behaviour synced on an unreliable channel sends its whole state, versioned, and sends
///   it again at each interval to the observers that have not acknowledged it.
/// - Commands from clients are validated (object, behaviour, RPC id, authority, arguments)
///   before they run; anything invalid is dropped, counted in [`stats`](Self::stats) and
///   charged to the sender's error budget.
/// - Host mode ([`join_host`](Self::join_host)): the host's own player shares these objects;
///   its hooks, RPCs and spawn events run here, with no copy synchronised.
///
/// The message-layer server is reached explicitly with [`server`](Self::server) and
/// [`server_mut`](Self::server_mut) (handlers, players, kicks); the manager drives it: call
/// [`update`](Self::update) with the current time every frame instead of the server's. Like the
/// server, it is sans-IO: time is an input, and nothing here reads the clock.
///
/// See the [crate documentation](crate) for a whole example.
pub struct ServerObjectManager {
    server: NetworkServer,
    world: ServerWorld,
    handlers: FxHashMap<MessageId, ObjectHandler>,
    host_client: Option<NetworkClient>,
}

impl std::fmt::Debug for ServerObjectManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerObjectManager")
            .field("server", &self.server)
            .field("objects", &self.world.objects.len())
            .field("stats", &self.world.stats)
            .field("interest", &self.world.interest)
            .finish_non_exhaustive()
    }
}

impl ServerObjectManager {
    /// Takes charge of `server` with the default [`ObjectConfig`].
    pub fn new(server: NetworkServer) -> Result<Self, ObjectError> {
        Self::with_config(server, ObjectConfig::default())
    }

    /// Takes charge of `server` with `config`.
    pub fn with_config(
        mut server: NetworkServer,
        config: ObjectConfig,
    ) -> Result<Self, ObjectError> {
        let channel = config.validate(server.channels())?;
        wire::reserve(&mut *server)?;
        let world = ServerWorld::new(config, channel, server.channels());
        Ok(Self { server, world, handlers: FxHashMap::default(), host_client: None })
    }

    /// The message-layer server (players, stats, handlers' registrations).
    pub fn server(&self) -> &NetworkServer {
        &self.server
    }

    /// The message-layer server, mutably: register handlers, send messages, kick players.
    pub fn server_mut(&mut self) -> &mut NetworkServer {
        &mut self.server
    }

    /// Starts the server over `transport`; see [`NetworkServer::start`].
    pub fn start(
        &mut self,
        now: Instant,
        transport: impl Transport + 'static,
    ) -> Result<Option<SocketAddr>, ObjectError> {
        Ok(self.server.start(now, transport)?)
    }

    /// Host mode: starts the server over `transport` and [joins](Self::join_host) the host's
    /// own player. Returns the transport's address.
    pub fn start_host(
        &mut self,
        now: Instant,
        transport: impl Transport + 'static,
    ) -> Result<Option<SocketAddr>, ObjectError> {
        let addr = self.server.start(now, transport)?;
        self.join_host(now)?;
        Ok(addr)
    }

    /// Joins the host's own player: a local client of this server whose player shares this
    /// manager's objects. No copy is synchronised to it; its spawn events come from
    /// [`poll_host_event`](Self::poll_host_event), its hooks and RPCs run on these objects, and
    /// commands sent through this manager come from it. Call it after starting the server, or
    /// instead of starting (a single-player game running the multiplayer code, with no
    /// transport).
    pub fn join_host(&mut self, now: Instant) -> Result<(), ObjectError> {
        let client = self.server.connect_local(now)?;
        self.host_client = Some(client);
        self.world.expect_host = true;
        Ok(())
    }

    /// Calls `handler` with each `T` an authenticated player sends, the player, and the
    /// server's objects: a message handler that can spawn, despawn or change objects and send
    /// RPCs, with no shared state. (A handler registered on the message layer itself, through
    /// [`server_mut`](Self::server_mut), runs instead of this one if both exist.)
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use sturnus_message::{Message, NetworkServer, ServerConfig};
    /// # use sturnus_object::{NetworkBehaviour, PrefabId, ServerObjectManager, ServerObjects, SyncVar};
    /// # #[derive(Default, NetworkBehaviour)] struct Ball { #[sync] x: SyncVar<f32> }
    /// #[derive(Serialize, Deserialize, Message)]
    /// struct Throw;
    ///
    /// let mut server = ServerObjectManager::new(NetworkServer::new(ServerConfig::default())?)?;
    /// server.register_handler(|objects: &mut ServerObjects<'_>, player, Throw| {
    ///     let _ = objects.spawn(PrefabId::of_name("ball"), Ball::default(), Some(player));
    /// })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn register_handler<T: Message>(
        &mut self,
        mut handler: impl FnMut(&mut ServerObjects<'_>, PlayerId, T) + Send + 'static,
    ) -> Result<(), ObjectError> {
        self.server.claim::<T>()?;
        let erased: ObjectHandler = Box::new(move |objects, player, body| {
            match sturnus_message::__private::decode::<T>(body) {
                Some(msg) => {
                    handler(objects, player, msg);
                    true
                }
                None => false,
            }
        });
        self.handlers.insert(T::ID, erased);
        Ok(())
    }

    /// The host's own local client (for its messages), in host mode.
    pub fn host_client(&mut self) -> Option<&mut NetworkClient> {
        self.host_client.as_mut()
    }

    /// The host's own player, once it has joined.
    pub fn host_player(&self) -> Option<PlayerId> {
        self.world.host_player
    }

    /// Stops the server (see [`NetworkServer::stop`]); the manager forgets its players and its
    /// host player, and keeps its objects (a restarted server serves them again).
    pub fn stop(&mut self) {
        let mut dispatch = Dispatch { world: &mut self.world, handlers: &mut self.handlers };
        self.server.stop_with(&mut dispatch);
        self.host_client = None;
    }

    /// The next lifecycle event of the server's latest update (see
    /// [`NetworkServer::poll_event`]).
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.server.poll_event()
    }

    /// Updates the server (and the host client) as of `now`: readiness, commands and
    /// departures are handled as they arrive, the host player's RPCs run, interest is brought
    /// up to date (with a [policy](Self::set_interest): objects spawned to the players they
    /// entered the interest of, despawned on the side of those they left), the changes that
    /// are due are sent, and everything is flushed. Call it every frame.
    pub fn update(&mut self, now: Instant) -> Result<(), ObjectError> {
        let mut dispatch = Dispatch { world: &mut self.world, handlers: &mut self.handlers };
        self.server.update_with(now, &mut dispatch)?;
        if let Some(client) = &mut self.host_client {
            client.update(now)?;
        }
        self.world.run_host_queues(&mut self.server);
        self.world.apply_interest(&mut self.server);
        self.world.sync(&mut self.server, false);
        self.world.sync_transforms(&mut self.server);
        self.server.flush()?;
        Ok(())
    }

    /// When the manager next needs an [`update`](Self::update) even if nothing arrives: the
    /// server's next deadline, the next sync interval while objects have changed, or now when
    /// observers are to be brought in line with a policy just set or cleared (or with what it
    /// says a player just made ready observes). Inputs given to an interest policy take
    /// effect at the next update, whenever that is.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let server = self.server.poll_timeout();
        let sync = match (self.world.touched.is_empty(), self.server.now()) {
            (false, Some(now)) => now.checked_add(self.world.config.sync_interval),
            _ => None,
        };
        // While anyone observes a transform, snapshots go out at their rate.
        let transforms = match (self.world.transforms.streams.is_empty(), self.server.now()) {
            (false, Some(now)) => now.checked_add(self.world.config.transforms.interval),
            _ => None,
        };
        // A policy set or cleared, or players made ready under one: observers to bring in line.
        let interest = self.world.interest_resync || !self.world.newly_ready.is_empty();
        let interest = self.server.now().filter(|_| interest);
        server.into_iter().chain(sync).chain(transforms).chain(interest).min()
    }

    /// Sends every pending change now, whatever the sync intervals (before a scene change, or
    /// to make one change go out at once); it goes out at the next
    /// [`update`](Self::update)'s flush.
    pub fn sync_now(&mut self) {
        self.world.sync(&mut self.server, true);
    }

    /// Spawns an object built from `behaviours` (one behaviour, a tuple, or a
    /// [`Behaviours`] list) as `prefab` on every ready player, owned by `owner`; returns its
    /// id. With an [interest policy](Self::set_interest), it is spawned only to the host
    /// player now, and to the others as the policy's next update lets them observe it. Changes made to it before the spawn are part of its initial state. A state too large
    /// for one message on the objects' channel is [`ObjectError::TooLarge`], and nothing is
    /// spawned.
    pub fn spawn(
        &mut self,
        prefab: PrefabId,
        behaviours: impl IntoBehaviours,
        owner: Option<PlayerId>,
    ) -> Result<NetId, ObjectError> {
        self.world.spawn(&mut self.server, prefab, None, behaviours.into_behaviours(), owner)
    }

    /// Spawns a scene object: clients match it with the object they registered under `scene`
    /// ([`ClientObjectManager::add_scene_object`](crate::ClientObjectManager::add_scene_object))
    /// instead of building one from `prefab`.
    pub fn spawn_scene(
        &mut self,
        scene: SceneId,
        prefab: PrefabId,
        behaviours: impl IntoBehaviours,
        owner: Option<PlayerId>,
    ) -> Result<NetId, ObjectError> {
        let behaviours = behaviours.into_behaviours();
        self.world.spawn(&mut self.server, prefab, Some(scene), behaviours, owner)
    }

    /// Despawns an object everywhere; returns its behaviours (to pool them), or `None` if no
    /// object has the id.
    pub fn despawn(&mut self, id: NetId) -> Option<Behaviours> {
        self.world.despawn(&mut self.server, id)
    }

    /// Gives an object to a player (or to nobody); the old and new owners are told.
    pub fn set_owner(&mut self, id: NetId, owner: Option<PlayerId>) -> Result<(), ObjectError> {
        self.world.set_owner(&mut self.server, id, owner)
    }

    /// An object's owner.
    pub fn owner(&self, id: NetId) -> Option<PlayerId> {
        self.world.owner(id)
    }

    /// Whether an object of this id is spawned.
    pub fn contains(&self, id: NetId) -> bool {
        self.world.objects.contains_key(&id)
    }

    /// The ids of the live objects, in spawn order.
    pub fn objects(&self) -> impl Iterator<Item = NetId> + '_ {
        sorted(self.world.objects.keys()).into_iter()
    }

    /// How many objects are live.
    pub fn object_count(&self) -> usize {
        self.world.objects.len()
    }

    /// The players that observe an object: every ready player, or with an
    /// [interest policy](Self::set_interest) those it let observe the object as of the last
    /// [`update`](Self::update) (and the host player).
    pub fn observers(&self, id: NetId) -> impl Iterator<Item = PlayerId> + '_ {
        self.world.objects.get(&id).into_iter().flat_map(|o| o.observers.iter().copied())
    }

    /// Makes `player` ready: it observes every object from now on and is sent each one's
    /// state (what a client's `Ready` does when [`ObjectConfig::auto_ready`] is on). With an
    /// [interest policy](Self::set_interest), the policy is told
    /// ([`add_player`](InterestPolicy::add_player), and its last
    /// [position](Self::set_player_position)) and the player is sent, at the next update, the
    /// objects the policy says it observes. Returns
    /// whether it was made ready: not if it is ready already or not an authenticated player
    /// (one that left, say).
    pub fn set_ready(&mut self, player: PlayerId) -> bool {
        let authenticated = self.server.player(player).is_some_and(|p| p.is_authenticated());
        authenticated && self.world.make_ready(&mut self.server, player)
    }

    /// Makes `player` not ready (UNET's `SetClientNotReady`, before a scene change): it stops
    /// observing objects, and its client despawns every object it has (each a
    /// [`ClientObjectEvent::Despawned`]) until it is made ready again. Returns whether it was
    /// ready; the host player, which shares the server's objects, stays ready (`false`). An
    /// [interest policy](Self::set_interest) forgets it
    /// ([`remove_player`](InterestPolicy::remove_player)): inputs of the player given to the
    /// policy directly (its room, say) are to be given again once it is ready again; a
    /// position given through [`set_player_position`](Self::set_player_position) is given
    /// again by the manager.
    pub fn set_not_ready(&mut self, player: PlayerId) -> bool {
        self.world.make_not_ready(&mut self.server, player)
    }

    /// Whether a player is ready (it observes objects).
    pub fn is_ready(&self, player: PlayerId) -> bool {
        self.world.ready.contains(&player)
    }

    /// Decides who observes what with `policy` from the next [`update`](Self::update) on,
    /// instead of every ready player observing every object; it replaces any policy set
    /// before.
    ///
    /// The policy is told what the manager knows: its ready players
    /// ([`add_player`](InterestPolicy::add_player)), its objects' owners
    /// ([`set_object_owner`](InterestPolicy::set_object_owner)) and the positions given
    /// ([`set_object_position`](Self::set_object_position),
    /// [`set_player_position`](Self::set_player_position)); the game gives it the rest
    /// through [`interest_mut`](Self::interest_mut). At each update the manager applies its
    /// events: an object that enters a ready player's interest is spawned to that player with
    /// its full state (its pending changes sent to its other observers first); one that
    /// leaves is despawned on that player's side
    /// ([`ClientObjectEvent::Despawned`]). Set while running, the next update also brings
    /// every object's observers in line with the policy, once.
    ///
    /// The **host player** observes every object whatever the policy: it shares the server's
    /// objects, so there is nothing to spawn or despawn for it (the game hides what its own
    /// player should not see). Events about it are ignored, as are those about players not
    /// ready and objects gone.
    ///
    /// The per-update cost is the policy's own plus one spawn or despawn per event; nothing
    /// scans every object but setting or clearing a policy and making a player ready.
    ///
    /// ```
    /// use sturnus_message::{NetworkServer, PlayerId, ServerConfig};
    /// use sturnus_object::interest::GridInterest;
    /// use sturnus_object::{NetId, ServerObjectManager};
    ///
    /// let mut server = ServerObjectManager::new(NetworkServer::new(ServerConfig::default())?)?;
    /// // Players observe the objects within 50 units of them ([x, z] of their positions).
    /// server.set_interest(GridInterest::<PlayerId, NetId>::new(50.0, 50.0)?);
    /// assert!(server.interest::<GridInterest<PlayerId, NetId>>().is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_interest(&mut self, policy: impl InterestPolicy<PlayerId, NetId> + Send + 'static) {
        let name = std::any::type_name_of_val(&policy);
        self.world.set_interest(Box::new(policy), name);
    }

    /// Back to every ready player observing every object: at the next
    /// [`update`](Self::update), each ready player is spawned the objects it does not
    /// observe yet. Nothing if no policy is set.
    pub fn clear_interest(&mut self) {
        self.world.clear_interest();
    }

    /// The interest policy, if one of type `T` is set.
    pub fn interest<T: Any>(&self) -> Option<&T> {
        self.world.interest.as_ref()?.policy.as_any().downcast_ref()
    }

    /// The interest policy, mutably, if one of type `T` is set: give it its inputs (rooms,
    /// positions). They take effect at the next [`update`](Self::update).
    pub fn interest_mut<T: Any>(&mut self) -> Option<&mut T> {
        self.world.interest.as_mut()?.policy.as_any_mut().downcast_mut()
    }

    /// An object is at `pos` (`[x, y, z]`, y up): the interest policy is told
    /// ([`set_object_position`](InterestPolicy::set_object_position); a
    /// [`GridInterest`](crate::interest::GridInterest) places it at `[x, z]`), and the
    /// position is kept for a policy set later. Nothing if no object has the id.
    pub fn set_object_position(&mut self, id: NetId, pos: [f32; 3]) {
        self.world.set_object_position(id, pos);
    }

    /// A player's point of view is at `pos` (`[x, y, z]`, y up). Transforms nearer it go
    /// first in its snapshots when they do not all fit its budget (see
    /// [`TransformSyncConfig::priority_distance`]), and the interest policy is told
    /// while the player is ready
    /// ([`set_player_position`](InterestPolicy::set_player_position); a
    /// [`GridInterest`](crate::interest::GridInterest) places it at `[x, z]`), and the
    /// position is kept, given to the policy when the player is made ready (again) or a
    /// policy is set. Nothing if the server has no such player; the host player observes
    /// everything, so its position is kept only.
    pub fn set_player_position(&mut self, player: PlayerId, pos: [f32; 3]) {
        if self.server.player(player).is_some() {
            self.world.set_player_position(player, pos);
        }
    }

    /// Makes object `focus` the player's point of view (its avatar, its camera), or none:
    /// at each transform tick, the position of the object's first [`NetworkTransform`] is the
    /// player's position ([`set_player_position`](Self::set_player_position)), for interest
    /// and for priority by distance. The `NetworkManager` focuses each player on its player
    /// object.
    pub fn set_player_focus(&mut self, player: PlayerId, focus: Option<NetId>) {
        match focus {
            Some(id) if self.server.player(player).is_some() => {
                self.world.focus.insert(player, id);
                let root = self.world.objects.get(&id).and_then(root_transform);
                if let Some(position) = root.map(|t| t.pose().position) {
                    self.world.set_player_position(player, position);
                }
            }
            _ => {
                self.world.focus.remove(&player);
            }
        }
    }

    /// The first behaviour of type `B` of an object.
    pub fn get<B: NetworkBehaviour>(&self, id: NetId) -> Option<&B> {
        self.world.get(id)
    }

    /// The first behaviour of type `B` of an object, to change it (changes to `#[sync]`
    /// fields are sent at the next sync).
    pub fn get_mut<B: NetworkBehaviour>(&mut self, id: NetId) -> Option<&mut B> {
        self.world.get_mut(id)
    }

    /// An object's [`NetworkTransform`] of part `part` (the child variant,
    /// [`NetworkTransform::child`]).
    pub fn transform_part(&self, id: NetId, part: u16) -> Option<&NetworkTransform> {
        self.world.objects.get(&id)?.behaviours.iter().find_map(|b| {
            b.as_any().downcast_ref::<NetworkTransform>().filter(|t| t.part() == Some(part))
        })
    }

    /// An object's [`NetworkTransform`] of part `part`, to move it.
    pub fn transform_part_mut(&mut self, id: NetId, part: u16) -> Option<&mut NetworkTransform> {
        let world = &mut self.world;
        let object = world.objects.get_mut(&id)?;
        touch(&mut world.touched, id, object);
        object.behaviours.iter_mut().find_map(|b| {
            b.as_any_mut().downcast_mut::<NetworkTransform>().filter(|t| t.part() == Some(part))
        })
    }

    /// A handle on the first behaviour of type `B` of an object, to call its RPCs.
    pub fn handle<B: NetworkBehaviour>(&self, id: NetId) -> Option<Obj<B>> {
        self.world.handle(id)
    }

    /// What the manager counted.
    pub fn stats(&self) -> ServerObjectStats {
        self.world.stats
    }

    /// The next object event of the host's own player (spawns, despawns and ownership changes
    /// as its client would see them).
    pub fn poll_host_event(&mut self) -> Option<ClientObjectEvent> {
        self.world.host_events.pop_front()
    }
}

impl RpcSink for ServerObjectManager {
    fn send_rpc<A: Serialize>(
        &mut self,
        call: RpcCall,
        to: Option<PlayerId>,
        args: &A,
    ) -> Result<(), ObjectError> {
        self.world.send_rpc(&mut self.server, call, to, args)
    }
}

/// In host mode, commands sent through the manager come from the host's own player and run
/// at the next [`update`](ServerObjectManager::update), checked like anyone's.
impl CommandSink for ServerObjectManager {
    fn send_command<A: Serialize>(&mut self, call: RpcCall, args: &A) -> Result<(), ObjectError> {
        if self.world.host_player.is_none() {
            return Err(ObjectError::NoHostPlayer);
        }
        self.world.queue_host_command(call, args)
    }
}
