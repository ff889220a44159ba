//! The object layer's messages. Public only so hostile-input tests and fuzz targets can forge
//! them; not a stable API.
//!
//! Messages that carry state or RPC arguments are a small header (a `serde` struct) followed by
//! those bytes, written straight into the message layer's send buffer
//! ([`ServerContext::send_with`](sturnus_message::ServerContext::send_with)) and read straight
//! from the bytes the transport lends: nothing is encoded twice, and nothing is allocated per
//! update or RPC.
#![allow(missing_docs, reason = "internal wire formats, documented by their use")]

use serde::{Deserialize, Serialize};
use sturnus_message::Message;

use crate::{NetId, PrefabId, RpcCall, RpcId, SceneId};

/// Server → client: build (or match) an object; followed by the full state of every behaviour
/// in order.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Message)]
#[message(crate = ::sturnus_message)]
pub struct Spawn {
    pub net_id: NetId,
    pub prefab: PrefabId,
    pub scene: Option<SceneId>,
    pub owned: bool,
    /// The object's newest state version as of this spawn: versioned states no newer are
    /// already in it.
    pub version: u64,
    /// Which spawn of the object this is (counting every spawn message, wrapping): a whole
    /// transform state in a snapshot names it, so one meant for another spawn of the object
    /// is not applied to this one.
    pub epoch: u8,
}

/// Server → client: the object is gone.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Message)]
#[message(crate = ::sturnus_message)]
pub struct Despawn {
    pub net_id: NetId,
}

/// Server → client: one behaviour's changed fields; followed by the dirty mask and their
/// deltas.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Message)]
#[message(crate = ::sturnus_message)]
pub struct Update {
    pub net_id: NetId,
    pub behaviour: u8,
}

/// Server → client: the full state of a behaviour synced on an unreliable channel, at
/// `version` (the server's count of that behaviour's changes sent); followed by the state as
/// [`write_full`](crate::NetworkBehaviour::write_full) writes it. Resent until acknowledged;
/// a client applies only a version newer than the one it holds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Message)]
#[message(crate = ::sturnus_message)]
pub struct State {
    pub net_id: NetId,
    pub behaviour: u8,
    pub version: u64,
}

/// Client → server: acknowledgements of [`State`]s; followed by one or more [`AckEntry`]s.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Message)]
#[message(crate = ::sturnus_message)]
pub struct Ack;

/// One acknowledgement in an [`Ack`]: the client holds `version` (or newer) of a behaviour's
/// state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AckEntry {
    pub net_id: NetId,
    pub behaviour: u8,
    pub version: u64,
}

/// Server → client: a client or target RPC; followed by its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Message)]
#[message(crate = ::sturnus_message)]
pub struct Rpc {
    pub net_id: NetId,
    pub behaviour: u8,
    pub rpc: RpcId,
}

/// Server → client: the client now owns the object, or no longer does.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Message)]
#[message(crate = ::sturnus_message)]
pub struct Ownership {
    pub net_id: NetId,
    pub owned: bool,
}

/// Client → server: the client has registered its prefabs; spawn the world to it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Message)]
#[message(crate = ::sturnus_message)]
pub struct Ready;

/// Server → client: forget every object; the server sends none until the client is ready
/// again.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Message)]
#[message(crate = ::sturnus_message)]
pub struct NotReady;

/// Client → server: a command; followed by its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Message)]
#[message(crate = ::sturnus_message)]
pub struct Command {
    pub net_id: NetId,
    pub behaviour: u8,
    pub rpc: RpcId,
}

/// Server → client: transforms that changed; followed by the entries, bit-packed (see
/// `snapshot.rs`). Sent on an unreliable channel, never resent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Message)]
#[message(crate = ::sturnus_message)]
pub struct Snapshot {
    /// The snapshot's sequence in its stream (from 1).
    pub seq: u32,
    /// The client's acknowledgement its deltas are against (0: none).
    pub base: u32,
    /// The server time the states describe, in milliseconds.
    pub time_ms: u64,
}

/// Client → server: the snapshots received; followed by the transforms whose delta could not
/// be decoded, each a [`Missing`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Message)]
#[message(crate = ::sturnus_message)]
pub struct SnapshotAck {
    /// This acknowledgement's own sequence (from 1).
    pub ack_id: u32,
    /// The newest snapshot received.
    pub newest: u32,
    /// Bit `i`: snapshot `newest - 1 - i` was received.
    pub bits: u64,
}

/// A transform to send whole, in a [`SnapshotAck`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Missing {
    pub net_id: NetId,
    pub behaviour: u8,
}

/// Owner → server: an owner-authoritative transform's state; followed by it whole,
/// bit-packed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Message)]
#[message(crate = ::sturnus_message)]
pub struct TransformInput {
    pub net_id: NetId,
    pub behaviour: u8,
    /// The owner's count of its inputs for this transform: an older one than the last
    /// applied is dropped.
    pub seq: u32,
}

/// Server → owner: its input was refused; the server's state follows, whole, bit-packed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Message)]
#[message(crate = ::sturnus_message)]
pub struct TransformCorrection {
    pub net_id: NetId,
    pub behaviour: u8,
}

impl Rpc {
    /// The header of `call`.
    pub fn of(call: RpcCall) -> Self {
        let RpcCall { net_id, behaviour, rpc, .. } = call;
        Self { net_id, behaviour, rpc }
    }
}

impl Command {
    /// The header of `call`.
    pub fn of(call: RpcCall) -> Self {
        let RpcCall { net_id, behaviour, rpc, .. } = call;
        Self { net_id, behaviour, rpc }
    }
}

/// Appends `header`, then `value`, to `out`: a message with a tail.
pub fn write_with_tail<H: Serialize, A: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    header: &H,
    value: &A,
) -> Result<(), postcard::Error> {
    put(out, header)?;
    put(out, value)
}

/// Appends `value`'s postcard encoding to `out` (the message layer's small-value path).
pub use sturnus_message::__private::put;

/// Splits a message body into its header and the bytes after it.
pub fn split<H: serde::de::DeserializeOwned>(body: &[u8]) -> Option<(H, &[u8])> {
    postcard::take_from_bytes(body).ok()
}

/// A whole message body: `header`, then `tail` (for tests and fuzz targets that forge them).
pub fn body<H: Serialize>(header: &H, tail: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    // Encoding a derived header into a Vec cannot fail.
    let _ = put(&mut out, header);
    out.extend_from_slice(tail);
    out
}

/// A message layer side whose message ids can be reserved.
pub(crate) trait Claims {
    fn claim_id<T: Message>(&mut self) -> Result<(), sturnus_message::MessageError>;
}

impl Claims for sturnus_message::ServerContext {
    fn claim_id<T: Message>(&mut self) -> Result<(), sturnus_message::MessageError> {
        self.claim::<T>()
    }
}

impl Claims for sturnus_message::ClientContext {
    fn claim_id<T: Message>(&mut self) -> Result<(), sturnus_message::MessageError> {
        self.claim::<T>()
    }
}

/// Reserves every object-layer message id in the message layer, so a game type whose id
/// collides with one is an error when it is registered, not a silent capture of the object
/// layer's traffic.
pub(crate) fn reserve(side: &mut impl Claims) -> Result<(), sturnus_message::MessageError> {
    side.claim_id::<Spawn>()?;
    side.claim_id::<Despawn>()?;
    side.claim_id::<Update>()?;
    side.claim_id::<Rpc>()?;
    side.claim_id::<Ownership>()?;
    side.claim_id::<Ready>()?;
    side.claim_id::<NotReady>()?;
    side.claim_id::<Command>()?;
    side.claim_id::<State>()?;
    side.claim_id::<Ack>()?;
    side.claim_id::<Snapshot>()?;
    side.claim_id::<SnapshotAck>()?;
    side.claim_id::<TransformInput>()?;
    side.claim_id::<TransformCorrection>()
}
