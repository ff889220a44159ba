//! The client's side: building objects from prefabs, applying state, running RPCs.

use std::collections::{HashMap, VecDeque};

use rustc_hash::FxHashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;
use sturnus_message::{
    ChannelId, ClientContext, ClientDispatch, ClientEvent, Dispatched, Message, MessageId,
    NetworkClient, Transport,
};
use tracing::{debug, warn};

use crate::behaviour::{find, find_mut};
use crate::ctx::ClientCtx;
use crate::quantize::{BitReader, BitWriter};
use crate::server::{resolve, sorted};
use crate::snapshot::{
    EntryHead, Receiver, held_at, read_count, read_entry_head, read_offset, resolve_base,
};
use crate::transform::{NetworkTransform, QState};
use crate::wire;
use crate::{
    Behaviours, CommandSink, IntoBehaviours, NetId, NetworkBehaviour, Obj, ObjectConfig,
    ObjectError, PrefabId, ReadError, RpcCall, RpcContext, RpcKind, SceneId,
};

/// Something that happened to a client's objects (and, in host mode, to the host player's).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientObjectEvent {
    /// An object appeared, with its initial state applied.
    Spawned {
        /// Its id.
        net_id: NetId,
        /// Its prefab.
        prefab: PrefabId,
        /// Its scene id, when it is a scene object matched with this client's own.
        scene: Option<SceneId>,
        /// Whether this client owns it.
        owned: bool,
    },
    /// An object went away.
    Despawned(NetId),
    /// This client became, or stopped being, an object's owner.
    OwnershipChanged {
        /// The object.
        net_id: NetId,
        /// Whether this client owns it now.
        owned: bool,
    },
    /// The server spawned an object this client cannot build: no prefab or spawn handler is
    /// registered for its prefab (or, for a scene object, no scene object under its id). The
    /// object is missing here, and whatever the server sends about it is dropped and counted;
    /// it is also logged at `warn` and counted in
    /// [`dropped_unknown_prefab`](ClientObjectStats::dropped_unknown_prefab).
    UnknownPrefab {
        /// The object's id.
        net_id: NetId,
        /// Its prefab.
        prefab: PrefabId,
        /// Its scene id, for a scene object (then what is missing is the scene object).
        scene: Option<SceneId>,
    },
}

/// What a [`ClientObjectManager`] counted. The server is trusted, but what it sends is still
/// checked: anything that names an unknown object, prefab or RPC, or does not decode, is
/// dropped and counted here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientObjectStats {
    /// Objects spawned (built or matched).
    pub spawned: u64,
    /// Objects despawned.
    pub despawned: u64,
    /// Behaviour updates applied.
    pub updates_applied: u64,
    /// Client and target RPCs run.
    pub rpcs_run: u64,
    /// Dropped: the object is unknown.
    pub dropped_unknown_object: u64,
    /// Dropped: no prefab, spawn handler or scene object for a spawn (each also a
    /// [`ClientObjectEvent::UnknownPrefab`]).
    pub dropped_unknown_prefab: u64,
    /// Dropped: no behaviour of that index, or no client RPC of that id.
    pub dropped_unknown_rpc: u64,
    /// Dropped: state or arguments did not decode.
    pub dropped_undecodable: u64,
    /// Dropped: a state of a behaviour synced on an unreliable channel no newer than the one
    /// applied (reordered or duplicated on the way, or sent again before the acknowledgement
    /// arrived).
    pub dropped_stale: u64,
    /// Transform snapshots read to the end (and acknowledged).
    pub snapshots_received: u64,
    /// Transform snapshots dropped: repeated, too old, or not readable to the end (an object
    /// not spawned here yet, or despawned); not acknowledged, so the server makes them good.
    pub snapshots_dropped: u64,
    /// Transform states applied.
    pub transform_states: u64,
    /// Transform deltas against a state no longer held here: read past, and the transform
    /// asked for whole.
    pub transform_bases_missing: u64,
    /// Corrections of this client's owner-authoritative transforms by the server.
    pub transform_corrections: u64,
}

/// One line: `spawned 12, despawned 2 · applied 340 updates, ran 12 RPCs · dropped 0: 0 unknown
/// objects, 0 unknown prefabs, 0 unknown RPCs, 0 undecodable · 3 stale states`.
impl std::fmt::Display for ClientObjectStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dropped = self.dropped_unknown_object
            + self.dropped_unknown_prefab
            + self.dropped_unknown_rpc
            + self.dropped_undecodable;
        write!(
            f,
            "spawned {}, despawned {} · applied {} updates, ran {} RPCs · dropped {dropped}: {} \
             unknown objects, {} unknown prefabs, {} unknown RPCs, {} undecodable · {} stale \
             states",
            self.spawned,
            self.despawned,
            self.updates_applied,
            self.rpcs_run,
            self.dropped_unknown_object,
            self.dropped_unknown_prefab,
            self.dropped_unknown_rpc,
            self.dropped_undecodable,
            self.dropped_stale
        )
    }
}

/// What a spawn handler is told about the object to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpawnInfo {
    /// The object's id.
    pub net_id: NetId,
    /// Its prefab.
    pub prefab: PrefabId,
    /// Whether this client owns it.
    pub owned: bool,
}

type Factory = Box<dyn FnMut(&SpawnInfo) -> Behaviours + Send>;
type Recycler = Box<dyn FnMut(NetId, Behaviours) + Send>;

struct Spawner {
    spawn: Factory,
    unspawn: Option<Recycler>,
}

#[derive(Debug)]
struct ClientObject {
    prefab: PrefabId,
    scene: Option<SceneId>,
    owned: bool,
    behaviours: Behaviours,
    /// Per behaviour, the version of the newest full state held (behaviours synced off the
    /// objects' channel): the spawn's floor, then each newer state applied.
    versions: Vec<u64>,
    /// Whether it is in the world's `touched` list.
    touched: bool,
}

impl ClientObject {
    /// Puts the object (of id `id`) on the `touched` list, once.
    fn touch(&mut self, id: NetId, touched: &mut Vec<NetId>) {
        if !self.touched {
            self.touched = true;
            touched.push(id);
        }
    }
}

/// Everything of the client's side but the message-layer client.
pub(crate) struct ClientWorld {
    /// Whether to say ready when authenticated ([`ObjectConfig::auto_ready`]).
    auto_ready: bool,
    /// The channel objects go on (the config's, resolved in the layout).
    channel: ChannelId,
    objects: FxHashMap<NetId, ClientObject>,
    /// Objects whose behaviours may hold local changes to forget at the end of the update:
    /// changed through `get_mut`, by an RPC or by a hook.
    touched: Vec<NetId>,
    spawners: HashMap<PrefabId, Spawner>,
    scene_pool: HashMap<SceneId, Behaviours>,
    events: VecDeque<ClientObjectEvent>,
    stats: ClientObjectStats,
    /// Acknowledgements of unreliable states to send at the end of the update, with the
    /// channel each goes on (the behaviour's).
    acks: Vec<(ChannelId, wire::AckEntry)>,
    /// The channel transform snapshots come on and acknowledgements go back on.
    snapshot_channel: Option<ChannelId>,
    /// Which snapshots arrived, and the acknowledgements sent.
    receiver: Receiver,
    /// Owned objects whose owner-authoritative transform changed and is not yet sent.
    pending_inputs: Vec<NetId>,
    /// A snapshot's entries as read, before they are applied (reused).
    parsed: Vec<Parsed>,
}

/// The most acknowledgements in one message: even at their largest (16 bytes each) they fit
/// the smallest unfragmented channel.
const ACKS_PER_MESSAGE: usize = 24;

impl std::fmt::Debug for ClientWorld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientWorld")
            .field("objects", &self.objects)
            .field("prefabs", &self.spawners.len())
            .field("scene_pool", &self.scene_pool.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl ClientWorld {
    pub(crate) fn is_owned(&self, id: NetId) -> bool {
        self.objects.get(&id).is_some_and(|o| o.owned)
    }

    pub(crate) fn get<B: NetworkBehaviour>(&self, id: NetId) -> Option<&B> {
        Some(find::<B>(&self.objects.get(&id)?.behaviours)?.1)
    }

    pub(crate) fn handle<B: NetworkBehaviour>(&self, id: NetId) -> Option<Obj<B>> {
        let (index, _) = find::<B>(&self.objects.get(&id)?.behaviours)?;
        Some(Obj::new(id, index))
    }

    /// Sends a command, its arguments encoded once, straight into the send buffer.
    pub(crate) fn send_command<A: Serialize>(
        &mut self,
        client: &mut ClientContext,
        call: RpcCall,
        args: &A,
    ) -> Result<(), ObjectError> {
        let Some(object) = self.objects.get(&call.net_id) else {
            return Err(ObjectError::UnknownObject(call.net_id));
        };
        if call.requires_authority && !object.owned {
            return Err(ObjectError::NotOwner(call.net_id));
        }
        let channel = resolve(client.channels(), call.channel, self.channel)?;
        let header = wire::Command::of(call);
        client
            .send_with::<wire::Command>(channel, |out| wire::write_with_tail(out, &header, args))
            .map_err(|err| ObjectError::of_rpc(&call, err))
    }

    /// Reads a whole state into `behaviours`, refusing leftovers.
    fn read_state(behaviours: &mut Behaviours, state: &[u8]) -> Result<(), ReadError> {
        let mut input = state;
        for behaviour in behaviours.iter_mut() {
            behaviour.read_full(&mut input)?;
            behaviour.clear_dirty();
        }
        if input.is_empty() { Ok(()) } else { Err(ReadError::Trailing(input.len())) }
    }

    fn spawn(&mut self, msg: wire::Spawn, state: &[u8]) {
        if let Some(object) = self.objects.get_mut(&msg.net_id) {
            // Spawned again (the server may resend an object): take the state.
            if Self::read_state(&mut object.behaviours, state).is_err() {
                self.stats.dropped_undecodable += 1;
            }
            set_epoch(&mut object.behaviours, msg.epoch);
            return;
        }
        let info = SpawnInfo { net_id: msg.net_id, prefab: msg.prefab, owned: msg.owned };
        let built = match msg.scene {
            Some(scene) => self.scene_pool.remove(&scene),
            None => self.spawners.get_mut(&msg.prefab).map(|s| (s.spawn)(&info)),
        };
        let Some(mut behaviours) = built else {
            warn!(
                net_id = %msg.net_id, prefab = %msg.prefab, scene = ?msg.scene,
                "no prefab, spawn handler or scene object for a spawn: the object is missing here"
            );
            self.stats.dropped_unknown_prefab += 1;
            self.events.push_back(ClientObjectEvent::UnknownPrefab {
                net_id: msg.net_id,
                prefab: msg.prefab,
                scene: msg.scene,
            });
            return;
        };
        if let Err(err) = Self::read_state(&mut behaviours, state) {
            debug!(net_id = %msg.net_id, %err, "a spawn's state did not decode");
            self.stats.dropped_undecodable += 1;
            self.recycle(msg.net_id, msg.prefab, msg.scene, behaviours);
            return;
        }
        set_local(&mut behaviours, msg.owned);
        set_epoch(&mut behaviours, msg.epoch);
        self.objects.insert(
            msg.net_id,
            ClientObject {
                prefab: msg.prefab,
                scene: msg.scene,
                owned: msg.owned,
                versions: vec![msg.version; behaviours.len()],
                behaviours,
                touched: false,
            },
        );
        self.stats.spawned += 1;
        self.events.push_back(ClientObjectEvent::Spawned {
            net_id: msg.net_id,
            prefab: msg.prefab,
            scene: msg.scene,
            owned: msg.owned,
        });
    }

    /// Gives an object's behaviours back: to the scene pool, or to the unspawn handler.
    fn recycle(&mut self, id: NetId, prefab: PrefabId, scene: Option<SceneId>, b: Behaviours) {
        if let Some(scene) = scene {
            self.scene_pool.insert(scene, b);
        } else if let Some(unspawn) =
            self.spawners.get_mut(&prefab).and_then(|s| s.unspawn.as_mut())
        {
            unspawn(id, b);
        }
    }

    fn despawn(&mut self, id: NetId) {
        let Some(object) = self.objects.remove(&id) else {
            self.stats.dropped_unknown_object += 1;
            return;
        };
        self.recycle(id, object.prefab, object.scene, object.behaviours);
        self.stats.despawned += 1;
        self.events.push_back(ClientObjectEvent::Despawned(id));
    }

    fn update(&mut self, msg: &wire::Update, changes: &[u8]) {
        let Some(object) = self.objects.get_mut(&msg.net_id) else {
            self.stats.dropped_unknown_object += 1;
            return;
        };
        let Some(behaviour) = object.behaviours.get_mut(usize::from(msg.behaviour)) else {
            self.stats.dropped_unknown_rpc += 1;
            return;
        };
        let mut input = changes;
        let applied = behaviour.read_changes(&mut input);
        // A hook that changed a synchronised field leaves a local change to forget.
        let dirty = behaviour.is_dirty();
        match applied {
            Ok(()) if input.is_empty() => self.stats.updates_applied += 1,
            _ => self.stats.dropped_undecodable += 1,
        }
        if dirty {
            object.touch(msg.net_id, &mut self.touched);
        }
    }

    /// Applies a behaviour's full state if it is newer than the one held (running the hooks of
    /// the fields it changes), and acknowledges the newest held, so the server stops sending
    /// it.
    fn state(&mut self, client: &ClientContext, msg: &wire::State, state: &[u8]) {
        let Some(object) = self.objects.get_mut(&msg.net_id) else {
            self.stats.dropped_unknown_object += 1;
            return;
        };
        let index = usize::from(msg.behaviour);
        let count = object.behaviours.len();
        let Some(behaviour) = object.behaviours.get_mut(index) else {
            self.stats.dropped_unknown_rpc += 1;
            return;
        };
        if object.versions.len() < count {
            object.versions.resize(count, 0);
        }
        // Held: the spawn's floor or a newer state; an older one is from before (lost and
        // resent, reordered, or sent to a copy since forgotten).
        let held = &mut object.versions[index];
        if msg.version > *held {
            let mut input = state;
            match behaviour.read_full_changes(&mut input) {
                Ok(()) if input.is_empty() => {
                    *held = msg.version;
                    self.stats.updates_applied += 1;
                }
                _ => self.stats.dropped_undecodable += 1,
            }
        } else {
            self.stats.dropped_stale += 1;
        }
        if *held > 0 {
            let channel =
                resolve(client.channels(), behaviour.sync_settings().channel, self.channel);
            if let Ok(channel) = channel {
                let entry =
                    wire::AckEntry { net_id: msg.net_id, behaviour: msg.behaviour, version: *held };
                self.acks.push((channel, entry));
            }
        }
        // A hook that changed a synchronised field leaves a local change to forget.
        if behaviour.is_dirty() {
            object.touch(msg.net_id, &mut self.touched);
        }
    }

    /// Sends the acknowledgements gathered this update: one message per channel (or per
    /// [`ACKS_PER_MESSAGE`]), the newest version per behaviour.
    fn send_acks(&mut self, client: &mut ClientContext) {
        if self.acks.is_empty() {
            return;
        }
        // Each behaviour's newest version first in its run, then the rest of the run dropped.
        self.acks.sort_unstable_by_key(|(channel, e)| {
            (*channel, e.net_id, e.behaviour, std::cmp::Reverse(e.version))
        });
        self.acks.dedup_by_key(|(channel, e)| (*channel, e.net_id, e.behaviour));
        let acks = &mut self.acks;
        for run in acks.chunk_by(|a, b| a.0 == b.0) {
            for chunk in run.chunks(ACKS_PER_MESSAGE) {
                let sent = client.send_with::<wire::Ack>(chunk[0].0, |out| {
                    wire::put(out, &wire::Ack)?;
                    chunk.iter().try_for_each(|(_, entry)| wire::put(out, entry))
                });
                if let Err(err) = sent {
                    debug!(%err, "acknowledgements not sent");
                }
            }
        }
        acks.clear();
    }

    /// Applies a snapshot of transforms: each entry to its transform (whole, or as a delta
    /// against the state the server says), then remembers it was received, to acknowledge.
    fn snapshot(&mut self, now: Option<Instant>, msg: wire::Snapshot, bits: &[u8]) {
        let Some(now) = now else { return };
        if !self.receiver.is_new(msg.seq) {
            self.stats.snapshots_dropped += 1;
            return;
        }
        // Read to the end first: a snapshot that cannot be read whole (an object not spawned
        // here yet, or spawned again since) is neither applied nor acknowledged, so the
        // server never builds on a state this client does not hold.
        let mut parsed = std::mem::take(&mut self.parsed);
        parsed.clear();
        let mut complete = self.parse_snapshot(&msg, bits, &mut parsed);
        // A delta against a state not held here: the transform is asked for whole, and the
        // snapshot is not applied nor acknowledged (the server would take its states as held).
        for entry in &parsed {
            if entry.state.is_none() && !entry.stale {
                complete = false;
                self.stats.transform_bases_missing += 1;
                let key = (entry.net_id, entry.behaviour);
                let missing = &mut self.receiver.missing;
                if !missing.contains(&key) && missing.len() < MISSING_PER_ACK {
                    missing.push(key);
                }
            }
        }
        if complete {
            let server_time = Duration::from_millis(msg.time_ms);
            for entry in &parsed {
                let transform = self
                    .objects
                    .get_mut(&entry.net_id)
                    .and_then(|o| o.behaviours.get_mut(usize::from(entry.behaviour)))
                    .and_then(|b| b.as_any_mut().downcast_mut::<NetworkTransform>());
                let Some(t) = transform else { continue };
                if entry.stale {
                    // A newer state is applied already; this one is kept to decode against
                    // (the server may name it as the state before its base).
                    if let Some(state) = entry.state {
                        t.hold_older(msg.seq, state, msg.time_ms);
                    }
                    continue;
                }
                let key = (entry.net_id, entry.behaviour);
                let Some(state) = entry.state else { continue };
                if let Some(keep) = entry.keep {
                    t.prune_before(keep);
                }
                t.newest = Some(msg.seq);
                t.hold_state(Some(msg.seq), state, msg.time_ms);
                // Held either way (the snapshot is acknowledged, so the server may build on
                // it), but not shown where this client sets the pose itself (a state sent
                // before it became the owner).
                if !t.local {
                    t.receive(now, server_time, &state, entry.rested);
                }
                self.stats.transform_states += 1;
                if !self.receiver.missing.is_empty() {
                    self.receiver.missing.retain(|m| *m != key);
                }
            }
            self.receiver.received(msg.seq);
            self.stats.snapshots_received += 1;
        } else {
            self.stats.snapshots_dropped += 1;
        }
        self.parsed = parsed;
    }

    /// Reads every entry of a snapshot into `parsed` (nothing is applied); whether it read to
    /// the end.
    fn parse_snapshot(&self, msg: &wire::Snapshot, bits: &[u8], parsed: &mut Vec<Parsed>) -> bool {
        let base = match msg.base {
            0 => Ok(None),
            id => self.receiver.base(id).map(Some).ok_or(()),
        };
        let mut r = BitReader::new(bits);
        let Ok(count) = read_count(&mut r) else { return false };
        let mut previous = (NetId(0), 0_u8);
        for _ in 0..count {
            let Ok(head) = read_entry_head(&mut r, previous) else { return false };
            let EntryHead { net_id, behaviour, delta, rested } = head;
            previous = (net_id, behaviour);
            let transform = self
                .objects
                .get(&net_id)
                .and_then(|o| o.behaviours.get(usize::from(behaviour)))
                .and_then(|b| b.as_any().downcast_ref::<NetworkTransform>());
            // Without the transform, the rest cannot be read (its widths are its own).
            let Some(t) = transform else { return false };
            let config = *t.config();
            let (state, keep) = if delta {
                let Ok(offset) = read_offset(&mut r) else { return false };
                let at = base.ok().and_then(|base| resolve_base(t, base));
                // With an offset, the base carried forward by the motion since the state that
                // many snapshots before it (both held, or the delta cannot be read).
                let (keep, from) = match (at, offset) {
                    (Some(b), None) => (Some(b), Some(t.history[b].state)),
                    (Some(b), Some(offset)) => {
                        let held = t.history[b];
                        match held.seq.and_then(|s| held_at(t, s.wrapping_sub(offset))) {
                            Some(p) => {
                                let prev = t.history[p];
                                let span = held.time_ms.saturating_sub(prev.time_ms);
                                let ahead = msg.time_ms.saturating_sub(held.time_ms);
                                let predicted =
                                    config.predict(&held.state, &prev.state, span, ahead);
                                (Some(p), Some(predicted))
                            }
                            None => (None, None),
                        }
                    }
                    (None, _) => (None, None),
                };
                let Ok(state) = config.read_delta(from.as_ref(), &mut r) else { return false };
                (state, keep)
            } else {
                // A whole state names the observation it belongs to: one for an instance
                // this client no longer (or not yet) has cannot be applied.
                let Ok(epoch) = r.read_bits(8) else { return false };
                if epoch != u64::from(t.epoch) {
                    return false;
                }
                let Ok(state) = config.read_absolute(&mut r) else { return false };
                (Some(state), None)
            };
            let stale = t.newest.is_some_and(|n| msg.seq <= n);
            parsed.push(Parsed { net_id, behaviour, state, keep, rested, stale });
        }
        // Padding only after the last entry.
        r.remaining_bits() < 8
    }

    /// The server refused this client's input for an owner-authoritative transform.
    fn correction(&mut self, msg: wire::TransformCorrection, bits: &[u8]) {
        let transform = self
            .objects
            .get_mut(&msg.net_id)
            .and_then(|o| o.behaviours.get_mut(usize::from(msg.behaviour)))
            .and_then(|b| b.as_any_mut().downcast_mut::<NetworkTransform>());
        let Some(t) = transform else {
            self.stats.dropped_unknown_object += 1;
            return;
        };
        let config = *t.config();
        match config.read_absolute(&mut BitReader::new(bits)) {
            Ok(state) => {
                t.correct(&state);
                self.stats.transform_corrections += 1;
            }
            Err(_) => self.stats.dropped_undecodable += 1,
        }
    }

    /// Acknowledges the snapshots received since the last update, naming the transforms to
    /// send whole.
    fn send_snapshot_ack(&mut self, client: &mut ClientContext) {
        let Some(channel) = self.snapshot_channel else { return };
        let Some((ack_id, newest, bits)) = self.receiver.next_ack() else { return };
        let header = wire::SnapshotAck { ack_id, newest, bits };
        let missing = &self.receiver.missing;
        let sent = client.send_with::<wire::SnapshotAck>(channel, |out| {
            wire::put(out, &header)?;
            missing.iter().try_for_each(|&(net_id, behaviour)| {
                wire::put(out, &wire::Missing { net_id, behaviour })
            })
        });
        if let Err(err) = sent {
            debug!(%err, "snapshot acknowledgement not sent");
        }
        // Asked again in every acknowledgement until a state arrives (an acknowledgement may
        // be lost), unless the object is gone.
        let objects = &self.objects;
        self.receiver.missing.retain(|(id, _)| objects.contains_key(id));
    }

    /// Sends the owner-authoritative transforms of owned objects that changed and are due:
    /// unreliably while they move (a lost one is overtaken by the next), and once more on the
    /// objects' reliable channel when they come to rest, so the server always ends with the
    /// final state. Each carries a sequence, so a late one never undoes a newer one.
    fn send_inputs(&mut self, client: &mut ClientContext) {
        let Some(now) = client.now() else { return };
        let unreliable = self.snapshot_channel.unwrap_or(self.channel);
        for &id in &self.touched {
            if self.objects.get(&id).is_some_and(|o| o.owned) && !self.pending_inputs.contains(&id)
            {
                self.pending_inputs.push(id);
            }
        }
        let mut kept = 0;
        for i in 0..self.pending_inputs.len() {
            let id = self.pending_inputs[i];
            let Some(object) = self.objects.get_mut(&id).filter(|o| o.owned) else { continue };
            let mut waiting = false;
            for (index, behaviour) in object.behaviours.iter_mut().enumerate() {
                let Some(t) = behaviour.as_any_mut().downcast_mut::<NetworkTransform>() else {
                    continue;
                };
                if !t.local || (!t.changed && t.settled) {
                    continue;
                }
                let config = *t.config();
                let due = t.sent_input.is_none_or(|(_, at)| {
                    now.saturating_duration_since(at) + config.send_interval / 4
                        >= config.send_interval
                });
                if !due {
                    waiting = true;
                    continue;
                }
                let state = config.quantize(&t.pose());
                let moved = t.sent_input.is_none_or(|(sent, _)| sent != state);
                let channel = if moved {
                    t.settled = false;
                    waiting = true;
                    unreliable
                } else if !t.settled {
                    // At rest for an interval: the final state, reliably.
                    t.settled = true;
                    self.channel
                } else {
                    t.changed = false;
                    continue;
                };
                t.changed = false;
                t.sent_input = Some((state, now));
                t.input_seq = t.input_seq.wrapping_add(1);
                let mut buf = [0_u8; 32];
                let mut w = BitWriter::new(&mut buf);
                let _ = config.write_absolute(&state, &mut w);
                let len = w.bytes_written();
                let Ok(behaviour) = u8::try_from(index) else { continue };
                let header = wire::TransformInput { net_id: id, behaviour, seq: t.input_seq };
                let sent = client.send_with::<wire::TransformInput>(channel, |out| {
                    wire::put(out, &header)?;
                    out.extend_from_slice(&buf[..len]);
                    Ok(())
                });
                if let Err(err) = sent {
                    debug!(%err, "transform input not sent");
                }
            }
            if waiting {
                self.pending_inputs[kept] = id;
                kept += 1;
            }
        }
        self.pending_inputs.truncate(kept);
    }

    fn ownership(&mut self, msg: &wire::Ownership) {
        let Some(object) = self.objects.get_mut(&msg.net_id) else {
            self.stats.dropped_unknown_object += 1;
            return;
        };
        if object.owned != msg.owned {
            object.owned = msg.owned;
            set_local(&mut object.behaviours, msg.owned);
            self.events.push_back(ClientObjectEvent::OwnershipChanged {
                net_id: msg.net_id,
                owned: msg.owned,
            });
        }
    }

    fn run_rpc(&mut self, client: &mut ClientContext, rpc: &wire::Rpc, args: &[u8]) {
        let Some(object) = self.objects.get_mut(&rpc.net_id) else {
            self.stats.dropped_unknown_object += 1;
            return;
        };
        let index = usize::from(rpc.behaviour);
        let info = object.behaviours.get(index).and_then(|b| b.rpc_info(rpc.rpc));
        if !info.is_some_and(|i| matches!(i.kind, RpcKind::ClientRpc | RpcKind::TargetRpc)) {
            self.stats.dropped_unknown_rpc += 1;
            return;
        }
        let mut behaviours = std::mem::take(&mut object.behaviours);
        let result = {
            let mut ctx = ClientCtx::remote(self, client, rpc.net_id, rpc.behaviour);
            behaviours[index].invoke_rpc(rpc.rpc, args, RpcContext::Client(&mut ctx))
        };
        if let Some(object) = self.objects.get_mut(&rpc.net_id) {
            object.behaviours = behaviours;
            object.touch(rpc.net_id, &mut self.touched);
        }
        match result {
            Ok(()) => self.stats.rpcs_run += 1,
            Err(_) => self.stats.dropped_undecodable += 1,
        }
    }

    fn despawn_all(&mut self) {
        let ids = sorted(self.objects.keys());
        for id in ids {
            self.despawn(id);
        }
    }
}

/// What the client's object world does with the message layer's messages and events: the
/// server's messages are read straight from the bytes the transport lends.
impl ClientDispatch for ClientWorld {
    fn message(&mut self, client: &mut ClientContext, id: MessageId, body: &[u8]) -> Dispatched {
        fn split<H: serde::de::DeserializeOwned>(body: &[u8]) -> Option<(H, &[u8])> {
            wire::split(body)
        }
        let whole = |tail: &[u8]| tail.is_empty();
        if id == wire::Update::ID {
            let Some((header, changes)) = split::<wire::Update>(body) else {
                return Dispatched::Undecodable;
            };
            self.update(&header, changes);
        } else if id == wire::State::ID {
            let Some((header, state)) = split::<wire::State>(body) else {
                return Dispatched::Undecodable;
            };
            self.state(client, &header, state);
        } else if id == wire::Snapshot::ID {
            let Some((header, bits)) = split::<wire::Snapshot>(body) else {
                self.stats.snapshots_dropped += 1;
                return Dispatched::Undecodable;
            };
            self.snapshot(client.now(), header, bits);
        } else if id == wire::TransformCorrection::ID {
            let Some((header, bits)) = split::<wire::TransformCorrection>(body) else {
                return Dispatched::Undecodable;
            };
            self.correction(header, bits);
        } else if id == wire::Rpc::ID {
            let Some((header, args)) = split::<wire::Rpc>(body) else {
                return Dispatched::Undecodable;
            };
            self.run_rpc(client, &header, args);
        } else if id == wire::Spawn::ID {
            let Some((header, state)) = split::<wire::Spawn>(body) else {
                return Dispatched::Undecodable;
            };
            self.spawn(header, state);
        } else if id == wire::Despawn::ID {
            match split::<wire::Despawn>(body) {
                Some((msg, rest)) if whole(rest) => self.despawn(msg.net_id),
                _ => return Dispatched::Undecodable,
            }
        } else if id == wire::NotReady::ID {
            match split::<wire::NotReady>(body) {
                Some((_, rest)) if whole(rest) => self.despawn_all(),
                _ => return Dispatched::Undecodable,
            }
        } else if id == wire::Ownership::ID {
            match split::<wire::Ownership>(body) {
                Some((msg, rest)) if whole(rest) => self.ownership(&msg),
                _ => return Dispatched::Undecodable,
            }
        } else {
            return Dispatched::Unknown;
        }
        Dispatched::Handled
    }

    fn event(&mut self, client: &mut ClientContext, event: &ClientEvent) {
        match event {
            ClientEvent::Authenticated if self.auto_ready => {
                if let Err(err) = client.send_on(&wire::Ready, self.channel) {
                    debug!(%err, "could not say ready");
                }
            }
            ClientEvent::Disconnected(_) => {
                self.despawn_all();
                // A new connection is a new stream, counting from 1.
                self.receiver = Receiver::default();
            }
            _ => {}
        }
    }
}

/// The client's object manager (Mirage's `ClientObjectManager`): it composes a
/// [`NetworkClient`] and mirrors the objects the server spawns to it.
///
/// - Register a factory per prefab ([`register_prefab`](Self::register_prefab)), or spawn and
///   unspawn handlers to pool objects ([`register_spawn_handler`](Self::register_spawn_handler)),
///   and the scene objects the level already holds
///   ([`add_scene_object`](Self::add_scene_object)), before connecting.
/// - Once authenticated it tells the server it is ready, and the server spawns its objects
///   (unless [`ObjectConfig::auto_ready`] is off: then the server decides, as the
///   `NetworkManager` does around scene changes). A server that makes it not ready makes it
///   despawn every object.
/// - Updates apply `#[sync]` fields and run their hooks; client and target RPCs run on the
///   objects; [`poll_object_event`](Self::poll_object_event) reports spawns, despawns, ownership
///   and spawns it cannot build ([`ClientObjectEvent::UnknownPrefab`]).
/// - Commands are sent through it: `tank.fire(&mut objects, dir)`; one that requires
///   authority over an object this client does not own is refused with
///   [`ObjectError::NotOwner`], not sent.
///
/// The message-layer client is reached explicitly with [`client`](Self::client) and
/// [`client_mut`](Self::client_mut). Call [`update`](Self::update) with the current time every
/// frame instead of the client's.
pub struct ClientObjectManager {
    client: NetworkClient,
    world: ClientWorld,
}

impl std::fmt::Debug for ClientObjectManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientObjectManager")
            .field("client", &self.client)
            .field("world", &self.world)
            .finish_non_exhaustive()
    }
}

impl ClientObjectManager {
    /// Takes charge of `client` with the default [`ObjectConfig`].
    pub fn new(client: NetworkClient) -> Result<Self, ObjectError> {
        Self::with_config(client, ObjectConfig::default())
    }

    /// Takes charge of `client` with `config` (its `channel` must match the server's).
    pub fn with_config(
        mut client: NetworkClient,
        config: ObjectConfig,
    ) -> Result<Self, ObjectError> {
        let channel = config.validate(client.channels())?;
        wire::reserve(&mut *client)?;
        if config.auto_ready && client.is_authenticated() {
            client.send_on(&wire::Ready, channel)?;
        }
        let unreliable = client.channels().first_of(sturnus_message::Qos::Unreliable);
        let snapshot_channel = config.transforms.channel.or(unreliable);
        Ok(Self {
            client,
            world: ClientWorld {
                auto_ready: config.auto_ready,
                channel,
                objects: FxHashMap::default(),
                touched: Vec::new(),
                spawners: HashMap::new(),
                scene_pool: HashMap::new(),
                events: VecDeque::new(),
                stats: ClientObjectStats::default(),
                acks: Vec::new(),
                snapshot_channel,
                receiver: Receiver::default(),
                pending_inputs: Vec::new(),
                parsed: Vec::new(),
            },
        })
    }

    /// The message-layer client.
    pub fn client(&self) -> &NetworkClient {
        &self.client
    }

    /// The message-layer client, mutably: register handlers, send messages, set credentials.
    pub fn client_mut(&mut self) -> &mut NetworkClient {
        &mut self.client
    }

    /// Connects to the server at `server` over `transport`; see [`NetworkClient::connect`].
    pub fn connect(
        &mut self,
        now: Instant,
        transport: impl Transport + 'static,
        server: SocketAddr,
    ) -> Result<(), ObjectError> {
        Ok(self.client.connect(now, transport, server)?)
    }

    /// The next lifecycle event of the client's latest update (see
    /// [`NetworkClient::poll_event`]).
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.client.poll_event()
    }

    /// When the manager next needs an [`update`](Self::update) even if nothing arrives.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.client.poll_timeout()
    }

    /// Builds objects of `prefab` with `factory` (one behaviour, a tuple, or a
    /// [`Behaviours`] list, in the order the server's objects hold them).
    pub fn register_prefab<I: IntoBehaviours>(
        &mut self,
        prefab: PrefabId,
        mut factory: impl FnMut() -> I + Send + 'static,
    ) {
        let spawn: Factory = Box::new(move |_| factory().into_behaviours());
        self.world.spawners.insert(prefab, Spawner { spawn, unspawn: None });
    }

    /// Builds objects of `prefab` with `spawn` and hands them to `unspawn` when they are
    /// despawned, to pool them (Mirage's spawn handlers).
    pub fn register_spawn_handler<I: IntoBehaviours>(
        &mut self,
        prefab: PrefabId,
        mut spawn: impl FnMut(&SpawnInfo) -> I + Send + 'static,
        unspawn: impl FnMut(NetId, Behaviours) + Send + 'static,
    ) {
        let spawn: Factory = Box::new(move |info| spawn(info).into_behaviours());
        self.world.spawners.insert(prefab, Spawner { spawn, unspawn: Some(Box::new(unspawn)) });
    }

    /// Registers an object the level already holds: when the server spawns scene object
    /// `scene`, this one takes its state instead of a new one being built, and it returns here
    /// when despawned.
    pub fn add_scene_object(
        &mut self,
        scene: SceneId,
        behaviours: impl IntoBehaviours,
    ) -> Result<(), ObjectError> {
        let spawned = self.world.objects.values().any(|o| o.scene == Some(scene));
        if spawned || self.world.scene_pool.contains_key(&scene) {
            return Err(ObjectError::DuplicateScene(scene));
        }
        self.world.scene_pool.insert(scene, behaviours.into_behaviours());
        Ok(())
    }

    /// Tells the server this client is ready for objects. It happens by itself when the client
    /// authenticates (with [`ObjectConfig::auto_ready`], the default); a server without it
    /// makes players ready itself and refuses this.
    pub fn ready(&mut self) -> Result<(), ObjectError> {
        self.client.send_on(&wire::Ready, self.world.channel)?;
        Ok(())
    }

    /// Updates the client as of `now`, applying what the server sent as it arrives: spawns,
    /// updates (running hooks), RPCs, ownership, despawns, in arrival order. Sends the
    /// commands queued, and forgets local changes to `#[sync]` fields (the server's state is
    /// the truth; a client's own changes are never sent).
    pub fn update(&mut self, now: Instant) -> Result<(), ObjectError> {
        self.client.update_with(now, &mut self.world)?;
        self.world.send_acks(&mut self.client);
        self.world.send_snapshot_ack(&mut self.client);
        self.world.send_inputs(&mut self.client);
        // Only objects something could have changed: local changes, RPCs and hooks.
        let world = &mut self.world;
        for id in world.touched.drain(..) {
            if let Some(object) = world.objects.get_mut(&id) {
                object.touched = false;
                for behaviour in &mut object.behaviours {
                    behaviour.clear_dirty();
                }
            }
        }
        self.client.flush()?;
        Ok(())
    }

    /// The next object event.
    pub fn poll_object_event(&mut self) -> Option<ClientObjectEvent> {
        self.world.events.pop_front()
    }

    /// The ids of the objects this client sees, in spawn order.
    pub fn objects(&self) -> impl Iterator<Item = NetId> + '_ {
        sorted(self.world.objects.keys()).into_iter()
    }

    /// How many objects this client sees.
    pub fn object_count(&self) -> usize {
        self.world.objects.len()
    }

    /// How many scene objects are registered and not spawned.
    pub fn unspawned_scene_objects(&self) -> usize {
        self.world.scene_pool.len()
    }

    /// An object's prefab.
    pub fn prefab(&self, id: NetId) -> Option<PrefabId> {
        self.world.objects.get(&id).map(|o| o.prefab)
    }

    /// Whether this client owns an object.
    pub fn is_owned(&self, id: NetId) -> bool {
        self.world.is_owned(id)
    }

    /// The first behaviour of type `B` of an object.
    pub fn get<B: NetworkBehaviour>(&self, id: NetId) -> Option<&B> {
        self.world.get(id)
    }

    /// The first behaviour of type `B` of an object, mutably (for its local, unsynchronised
    /// fields: changes to `#[sync]` fields are overwritten by the server's).
    pub fn get_mut<B: NetworkBehaviour>(&mut self, id: NetId) -> Option<&mut B> {
        let object = self.world.objects.get_mut(&id)?;
        object.touch(id, &mut self.world.touched);
        find_mut::<B>(&mut object.behaviours)
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
        object.touch(id, &mut world.touched);
        object.behaviours.iter_mut().find_map(|b| {
            b.as_any_mut().downcast_mut::<NetworkTransform>().filter(|t| t.part() == Some(part))
        })
    }

    /// A handle on the first behaviour of type `B` of an object, to send its commands.
    pub fn handle<B: NetworkBehaviour>(&self, id: NetId) -> Option<Obj<B>> {
        self.world.handle(id)
    }

    /// What the manager counted.
    pub fn stats(&self) -> ClientObjectStats {
        self.world.stats
    }
}

impl CommandSink for ClientObjectManager {
    fn send_command<A: Serialize>(&mut self, call: RpcCall, args: &A) -> Result<(), ObjectError> {
        self.world.send_command(&mut self.client, call, args)
    }
}

/// An entry of a snapshot, read but not yet applied.
#[derive(Debug, Clone, Copy)]
struct Parsed {
    net_id: NetId,
    behaviour: u8,
    /// The state (`None`: a delta against a state not held here).
    state: Option<QState>,
    /// The oldest held state still needed (what the delta was read against).
    keep: Option<usize>,
    rested: bool,
    /// A newer state of the transform is applied already (a snapshot names a transform
    /// once, so this holds from reading to applying).
    stale: bool,
}

/// The most transforms one acknowledgement asks for whole.
const MISSING_PER_ACK: usize = 32;

/// Gives an object's transforms the epoch of the spawn that made them.
fn set_epoch(behaviours: &mut Behaviours, epoch: u8) {
    for behaviour in behaviours.iter_mut() {
        if let Some(t) = behaviour.as_any_mut().downcast_mut::<NetworkTransform>() {
            t.epoch = epoch;
        }
    }
}

/// Marks the owner-authoritative transforms of an object as set here (`owned`) or not.
fn set_local(behaviours: &mut Behaviours, owned: bool) {
    for behaviour in behaviours.iter_mut() {
        if let Some(t) = behaviour.as_any_mut().downcast_mut::<NetworkTransform>() {
            t.local = owned && crate::snapshot::owner_sets(t.config());
        }
    }
}
