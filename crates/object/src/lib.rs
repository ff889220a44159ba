//! # sturnus-object
//!
//! The object layer of Sturnus (Mirage's object layer; UNET's `NetworkIdentity`,
//! `NetworkBehaviour`, SyncVars, Commands and ClientRpcs), engine-agnostic.
//!
//! DOCS_PLACEHOLDER
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod behaviour;
mod client;
mod collections;
mod ctx;
mod error;
mod field;
mod id;
mod server;
#[doc(hidden)]
pub mod wire;

pub use behaviour::{
    __private, Behaviours, CommandSink, IntoBehaviours, NetworkBehaviour, Obj, RpcContext, RpcInfo,
    RpcKind, RpcSink, SyncSettings,
};
pub use client::{ClientObjectEvent, ClientObjectManager, ClientObjectStats, SpawnInfo};
pub use collections::{ListChange, MapChange, SetChange, SyncList, SyncMap, SyncSet};
pub use ctx::{ClientCtx, ServerCtx};
pub use error::{ObjectError, ReadError};
pub use field::{SyncField, SyncVar, VarChange};
pub use id::{NetId, PrefabId, RpcId, SceneId};
pub use server::{ObjectConfig, ServerObjectManager, ServerObjectStats};
/// Derives [`NetworkBehaviour`]; see the trait.
pub use sturnus_derive::NetworkBehaviour;
/// Declares a behaviour's Commands, ClientRpcs and TargetRpcs; see the crate documentation.
pub use sturnus_derive::network_rpcs;
pub use sturnus_message::{PlayerId, Qos};

/// The clock.
#[expect(clippy::disallowed_methods, reason = "the object layer syncs in real time")]
pub(crate) fn now() -> std::time::Instant {
    std::time::Instant::now()
}
