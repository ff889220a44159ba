//! The object layer's messages. Public only so hostile-input tests can forge them; not a
//! stable API.
#![allow(missing_docs, reason = "internal wire formats, documented by their use")]

use serde::{Deserialize, Serialize};
use sturnus_message::Message;

use crate::{NetId, PrefabId, RpcCall, RpcId, SceneId};

/// Server → client: build (or match) an object, with the full state of every behaviour in
/// order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
#[message(crate = ::sturnus_message)]
pub struct Spawn {
    pub net_id: NetId,
    pub prefab: PrefabId,
    pub scene: Option<SceneId>,
    pub owned: bool,
    pub state: Vec<u8>,
}

/// Server → client: the object is gone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
#[message(crate = ::sturnus_message)]
pub struct Despawn {
    pub net_id: NetId,
}

/// Server → client: one behaviour's changed fields (a dirty mask, then their deltas).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
#[message(crate = ::sturnus_message)]
pub struct Update {
    pub net_id: NetId,
    pub behaviour: u8,
    pub changes: Vec<u8>,
}

/// Server → client: a client or target RPC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
#[message(crate = ::sturnus_message)]
pub struct Rpc {
    pub net_id: NetId,
    pub behaviour: u8,
    pub rpc: RpcId,
    pub args: Vec<u8>,
}

/// Server → client: the client now owns the object, or no longer does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
#[message(crate = ::sturnus_message)]
pub struct Ownership {
    pub net_id: NetId,
    pub owned: bool,
}

/// Client → server: the client has registered its prefabs; spawn the world to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
#[message(crate = ::sturnus_message)]
pub struct Ready;

/// Client → server: a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
#[message(crate = ::sturnus_message)]
pub struct Command {
    pub net_id: NetId,
    pub behaviour: u8,
    pub rpc: RpcId,
    pub args: Vec<u8>,
}

impl Rpc {
    /// `call` with its arguments encoded.
    pub fn encode<A: Serialize>(call: RpcCall, args: &A) -> Result<Self, postcard::Error> {
        let RpcCall { net_id, behaviour, rpc, .. } = call;
        Ok(Self { net_id, behaviour, rpc, args: postcard::to_allocvec(args)? })
    }
}

impl Command {
    /// `call` with its arguments encoded.
    pub fn encode<A: Serialize>(call: RpcCall, args: &A) -> Result<Self, postcard::Error> {
        let RpcCall { net_id, behaviour, rpc, .. } = call;
        Ok(Self { net_id, behaviour, rpc, args: postcard::to_allocvec(args)? })
    }
}
