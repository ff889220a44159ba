//! The ids of the object layer: objects, prefabs, scene objects and RPCs.

use std::fmt;

use serde::{Deserialize, Serialize};

use sturnus_message::{MessageId, fnv1a};

/// A networked object's id, assigned by the server when it spawns the object; the same on every
/// peer for the object's life. Never 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NetId(pub u32);

impl fmt::Display for NetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "object {}", self.0)
    }
}

/// Which kind of object to build on a client: registered with a factory on every client, and
/// named by the server when it spawns. Stable like message ids: pick constants, or hash a name.
///
/// ```
/// use sturnus_object::PrefabId;
/// const TANK: PrefabId = PrefabId::of_name("tank");
/// assert_eq!(TANK, PrefabId::of_name("tank"));
/// assert_ne!(TANK, PrefabId::of_name("bullet"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PrefabId(pub u32);

impl PrefabId {
    /// The id of a name: its 32-bit FNV-1a hash, the same on every build and platform.
    pub const fn of_name(name: &str) -> PrefabId {
        PrefabId(fnv1a(name))
    }
}

impl fmt::Display for PrefabId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "prefab {:#010x}", self.0)
    }
}

/// A scene object's id: an object that exists on every peer before the game starts (a door, a
/// switch, placed in a level). The server spawns it under this id and clients match their own
/// copy instead of building one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SceneId(pub u64);

impl fmt::Display for SceneId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "scene object {}", self.0)
    }
}

/// An RPC's id within its behaviour type: a 16-bit hash of the method's name (so it survives
/// reordering methods), or pinned with `#[command(id = N)]`. `#[network_rpcs]` refuses two
/// methods of one type with the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RpcId(pub u16);

impl RpcId {
    /// The id of a method name: 32-bit FNV-1a folded to 16 bits by XOR of the halves (the
    /// hash of message ids).
    ///
    /// ```
    /// use sturnus_object::RpcId;
    /// assert_eq!(RpcId::of_name("fire"), RpcId::of_name("fire"));
    /// ```
    pub const fn of_name(name: &str) -> RpcId {
        RpcId(MessageId::of_path(name).0)
    }
}

impl fmt::Display for RpcId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rpc {:#06x}", self.0)
    }
}
