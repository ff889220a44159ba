//! # sturnus-object
//!
//! The object layer of Sturnus (Mirage's object layer; UNET's `NetworkIdentity`,
//! `NetworkBehaviour`, SyncVars, Commands and ClientRpcs), engine-agnostic.
//!
//! ```text
//!  sturnus-object     this crate: networked objects, SyncVars, sync collections, RPCs
//!  sturnus-message    NetworkServer / NetworkClient / Player, typed messages
//!  sturnus-transport  connections and quality-of-service channels
//!  sturnus-socket     UDP, loopback, conditioned sockets
//! ```
//!
//! - A **behaviour** is a struct with `#[derive(NetworkBehaviour)]`: its `#[sync]` fields
//!   ([`SyncVar`], [`SyncList`], [`SyncMap`], [`SyncSet`]) are kept in sync from the server to
//!   the clients; hooks (`#[sync(hook = …)]`) run on clients with each change. An object holds
//!   one or more behaviours and has a [`NetId`] (given by the server), a [`PrefabId`] (which
//!   factory builds it on clients), an optional owner and an optional [`SceneId`].
//! - **RPCs** are methods in a `#[network_rpcs]` impl block: `#[command]` (client → server,
//!   owner only unless `requires_authority = false`), `#[client_rpc]` (server → every
//!   observer), `#[target_rpc]` (server → one player). Each has a stable id; arguments are
//!   `serde` types. Calling one on an [`Obj`] handle sends it: `lamp.toggle(&mut client)`.
//! - [`ServerObjectManager`] composes a `NetworkServer`: it spawns objects to every ready
//!   player, or to those an interest policy lets observe them (and all live objects they
//!   observe to late joiners), sends only the dirty fields of dirty
//!   behaviours at each behaviour's interval, and validates every command (object, behaviour,
//!   RPC id, authority, arguments), charging what it rejects to the sender's error budget.
//! - [`ClientObjectManager`] composes a `NetworkClient`: it builds objects from prefab
//!   factories, pooling spawn handlers or scene objects, applies updates and runs RPCs.
//! - **Interest management** ([`ServerObjectManager::set_interest`]): a pluggable
//!   [`InterestPolicy`](interest::InterestPolicy) (a [grid](interest::GridInterest) with a
//!   radius, [rooms](interest::RoomInterest), [owner only](interest::OwnerOnly), or the game's
//!   own) decides who observes what; an object is spawned to a player when it enters the
//!   player's interest and despawned when it leaves, and a player commands only what it
//!   observes. Without one, every ready player observes every object.
//! - **Host mode** ([`ServerObjectManager::join_host`]): the host's player shares the server's
//!   objects; its hooks, RPCs and spawn events run on them, with no copy synchronised.
//! - **Channels**: objects go on the [`ObjectConfig::channel`]; a behaviour or RPC may name
//!   its own (`#[network(channel = N)]`, `#[client_rpc(qos = Unreliable)]`). A behaviour
//!   synced on a channel other than the objects' (an unreliable one, typically) sends its
//!   full state with a version instead of deltas,
//!   again at each sync interval to the observers that have not acknowledged the newest:
//!   a lost update is made good, an older one arriving late is dropped, and every client
//!   converges within a few intervals of the last change.
//!
//! - **Transforms** ([`NetworkTransform`], a behaviour): position, rotation and scale,
//!   quantised, sent in one snapshot per observer per tick holding only what changed, each
//!   encoded against what that observer acknowledged, filled by priority up to a per-connection
//!   byte budget ([`TransformSyncConfig`]); clients render them interpolated
//!   ([`NetworkTransform::sample`]). Server-authoritative, or owner-authoritative with the
//!   server validating. See the [`transform`] module.
//!
//! Like the message layer, the managers are sans-IO: `update(now)` every frame, time as an
//! input, the transport doing the I/O. Updates and RPC arguments are encoded once, straight
//! into the send buffer, and read straight from the bytes the transport lends.
//!
//! ```
//! use std::time::Duration;
//! use sturnus_message::{driver, ClientConfig, NetworkClient, NetworkServer, ServerConfig, ServerEvent};
//! use sturnus_object::{
//!     ClientCtx, ClientObjectManager, NetworkBehaviour, PrefabId, ServerCtx, ServerObjectManager,
//!     SyncVar, network_rpcs,
//! };
//! use sturnus_transport::MemoryNetwork;
//!
//! pub const LAMP: PrefabId = PrefabId::of_name("lamp");
//!
//! #[derive(Default, NetworkBehaviour)]
//! pub struct Lamp {
//!     #[sync(hook = Lamp::on_switch)]
//!     pub lit: SyncVar<bool>,
//!     pub switches_seen: u32, // local, not networked
//!     pub flashes: u32,
//! }
//!
//! impl Lamp {
//!     fn on_switch(&mut self, _old: &bool, _new: &bool) {
//!         self.switches_seen += 1;
//!     }
//! }
//!
//! #[network_rpcs]
//! impl Lamp {
//!     /// Client → server: only the lamp's owner may switch it.
//!     #[command]
//!     fn toggle(&mut self, ctx: &mut ServerCtx<'_>) {
//!         let lit = !*self.lit;
//!         self.lit.set(lit);
//!         let _ = ctx.this::<Lamp>().flash(ctx, 3);
//!     }
//!
//!     /// Server → every client that sees the lamp.
//!     #[client_rpc]
//!     fn flash(&mut self, _ctx: &mut ClientCtx<'_>, times: u32) {
//!         self.flashes += times;
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Any transport: a UDP Host, a ThreadedHost, or (here) an in-process network.
//! let network = MemoryNetwork::new();
//! let (server_config, client_config) = (ServerConfig::default(), ClientConfig::default());
//! let kinds = server_config.channels.kinds().to_vec();
//! let addr = "10.0.0.1:7777".parse()?;
//! let mut now = driver::now();
//!
//! let mut server = ServerObjectManager::new(NetworkServer::new(server_config)?)?;
//! server.start(now, network.bind(addr, kinds.clone())?)?;
//!
//! let mut client = ClientObjectManager::new(NetworkClient::new(client_config)?)?;
//! client.register_prefab(LAMP, Lamp::default);
//! client.connect(now, network.endpoint(kinds), addr)?;
//!
//! let mut toggled = false;
//! for _frame in 0..100 {
//!     server.update(now)?;
//!     while let Some(event) = server.poll_event() {
//!         if let ServerEvent::Authenticated(player) = event {
//!             // The first player gets a lamp of its own.
//!             server.spawn(LAMP, Lamp::default(), Some(player))?;
//!         }
//!     }
//!     client.update(now)?;
//!     // Once the client sees its lamp, it switches it on: a command to the server.
//!     let lamp = client.objects().next();
//!     if let Some(id) = lamp {
//!         if !toggled {
//!             client.handle::<Lamp>(id).unwrap().toggle(&mut client)?;
//!             toggled = true;
//!         }
//!         let lamp = client.get::<Lamp>(id).unwrap();
//!         if *lamp.lit && lamp.flashes == 3 {
//!             assert_eq!(lamp.switches_seen, 1);
//!             return Ok(());
//!         }
//!     }
//!     now += Duration::from_millis(16); // the next frame
//! }
//! panic!("the lamp never lit");
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod behaviour;
mod client;
mod collections;
mod ctx;
mod error;
mod field;
mod id;
pub mod interest;
pub mod interpolation;
pub mod priority;
pub mod quantize;
mod server;
mod snapshot;
pub mod transform;
#[doc(hidden)]
pub mod wire;

pub use behaviour::{
    __private, Behaviours, CommandSink, IntoBehaviours, NetworkBehaviour, Obj, OnChannel, RpcCall,
    RpcContext, RpcInfo, RpcKind, RpcSink, SyncSettings,
};
pub use client::{ClientObjectEvent, ClientObjectManager, ClientObjectStats, SpawnInfo};
pub use collections::{ListChange, MapChange, SetChange, SyncList, SyncMap, SyncSet};
pub use ctx::{ClientCtx, ServerCtx, ServerObjects};
pub use error::{ObjectError, ReadError};
pub use field::{Changes, SyncField, SyncVar, VarChange};
pub use id::{NetId, PrefabId, RpcId, SceneId};
pub use server::{ObjectConfig, ServerObjectManager, ServerObjectStats};
pub use snapshot::TransformSyncConfig;
/// Derives [`NetworkBehaviour`]; see the trait.
pub use sturnus_derive::NetworkBehaviour;
/// Marks a ClientRpc in a [`network_rpcs`] block; an error anywhere else.
pub use sturnus_derive::client_rpc;
/// Marks a Command in a [`network_rpcs`] block; an error anywhere else.
pub use sturnus_derive::command;
/// Declares a behaviour's Commands, ClientRpcs and TargetRpcs; see the crate documentation.
pub use sturnus_derive::network_rpcs;
/// Marks a TargetRpc in a [`network_rpcs`] block; an error anywhere else.
pub use sturnus_derive::target_rpc;
pub use sturnus_message::{ChannelId, PlayerId, Qos};
pub use transform::NetworkTransform;
