//! # sturnus
//!
//! Multiplayer game networking in the style of UNET and Mirage, engine-agnostic: one crate
//! for the whole stack. A game depends on `sturnus` (and `serde` for its messages and RPC
//! arguments) and writes `use sturnus::prelude::*;`.
//!
//! ```text
//!  sturnus::object     networked objects, SyncVars, sync collections, Commands and RPCs
//!  sturnus::message    NetworkServer / NetworkClient / Player, typed messages, host mode
//!  sturnus::transport  connections and quality-of-service channels; the Transport trait
//!                      (UDP Host, ThreadedHost, in-process MemoryNetwork, your own)
//!  sturnus::socket     UDP, loopback, conditioned sockets
//!  sturnus::netem      the seeded link emulator, for tests and simulations (feature)
//!  sturnus::netcode    netcode 1.02 connect tokens and the secure transport mode
//!  sturnus::discovery  LAN discovery: advertise a game, search the local network for it
//! ```
//!
//! Each layer is a module re-exporting a layer crate (`sturnus-object`, `sturnus-message`,
//! …) whole; see there for each layer's guide. The [`prelude`] holds what game code needs
//! day to day; `sturnus::manager` starts a server, a client or a host in one call, and
//! `sturnus::hud` shows how it is doing. The derive macros (`#[derive(Message)]`,
//! `#[derive(NetworkBehaviour)]`, `#[network_rpcs]`) work through this crate: the code they
//! generate names `::sturnus::message` / `::sturnus::object` when the game depends on
//! `sturnus`.
//!
//! # Features
//!
//! The layer features each add a layer and the layers below it; all features are additive.
//!
//! | feature | adds | default |
//! | --- | --- | --- |
//! | `object` | `sturnus::object`, `sturnus::manager` (`NetworkManager`), `sturnus::hud`; implies `message` | yes |
//! | `message` | `sturnus::message`, implies `transport` | through `object` |
//! | `transport` | `sturnus::transport`, implies `socket` | through `message` |
//! | `socket` | `sturnus::socket` | through `transport` |
//! | `netem` | `sturnus::netem` | no |
//! | `logs` | `sturnus::init_logging`: a `tracing` subscriber honouring `RUST_LOG` | yes |
//! | `signals` | `NetworkManager::run` stops gracefully on Ctrl-C / `SIGTERM`; implies `object` | yes |
//! | `secure` | `sturnus::netcode`, `TransportChoice::Netcode`; implies `transport` | yes |
//! | `discovery` | `sturnus::discovery`; with `object`, `NetworkManager::advertise_on_lan` | yes |
//!
//! # Example
//!
//! A server and a client over an in-process `MemoryNetwork`, in
//! virtual frames (the layers are sans-IO: time is an input). The server greets the player
//! with a message and spawns a lamp it owns; the client switches the lamp on with a Command;
//! the server answers with a ClientRpc; the `lit` SyncVar reaches the client and runs its hook.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use std::time::Duration;
//! use sturnus::prelude::*;
//!
//! #[derive(Debug, Serialize, Deserialize, Message)]
//! struct Welcome {
//!     text: String,
//! }
//!
//! const LAMP: PrefabId = PrefabId::of_name("lamp");
//!
//! #[derive(Default, NetworkBehaviour)]
//! struct Lamp {
//!     #[sync(hook = Lamp::on_switch)]
//!     lit: SyncVar<bool>,
//!     switches_seen: u32, // local, not networked
//!     flashes: u32,
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
//! let mut network_client = NetworkClient::new(client_config)?;
//! network_client.register_queue::<Welcome>()?;
//! let mut client = ClientObjectManager::new(network_client)?;
//! client.register_prefab(LAMP, Lamp::default);
//! client.connect(now, network.endpoint(kinds), addr)?;
//!
//! let (mut welcomed, mut toggled) = (false, false);
//! for _frame in 0..100 {
//!     server.update(now)?;
//!     while let Some(event) = server.poll_event() {
//!         if let ServerEvent::Authenticated(player) = event {
//!             let text = format!("welcome, {player:?}");
//!             server.server_mut().send(player, &Welcome { text })?;
//!             server.spawn(LAMP, Lamp::default(), Some(player))?;
//!         }
//!     }
//!     client.update(now)?;
//!     while let Some(welcome) = client.client_mut().poll_message::<Welcome>() {
//!         assert!(welcome.text.starts_with("welcome"));
//!         welcomed = true;
//!     }
//!     let lamp = client.objects().next();
//!     if let Some(id) = lamp {
//!         if !toggled {
//!             // The generated `LampRpcs` trait sends the Command through the client.
//!             client.handle::<Lamp>(id).unwrap().toggle(&mut client)?;
//!             toggled = true;
//!         }
//!         let lamp = client.get::<Lamp>(id).unwrap();
//!         if *lamp.lit && lamp.flashes == 3 {
//!             assert_eq!(lamp.switches_seen, 1);
//!             assert!(welcomed);
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

/// The socket layer ([`sturnus-socket`](sturnus_socket)): UDP (IPv4, IPv6, dual-stack),
/// in-process loopback and link-emulating sockets behind a `Socket` / `SocketFactory` pair.
#[cfg(feature = "socket")]
pub mod socket {
    #[doc(inline)]
    pub use sturnus_socket::*;
}

/// The link emulator ([`sturnus-netem`](sturnus_netem)): seeded latency, jitter, loss, burst
/// loss, duplication, reordering and rate limits, for tests and simulations.
#[cfg(feature = "netem")]
pub mod netem {
    #[doc(inline)]
    pub use sturnus_netem::*;
}

/// The transport layer ([`sturnus-transport`](sturnus_transport)): connections and per-channel
/// quality of service over a sans-IO reliable-UDP core; the `Transport` trait and its
/// implementations `Host`, `ThreadedHost` and `MemoryNetwork`'s endpoints.
#[cfg(feature = "transport")]
pub mod transport {
    #[doc(inline)]
    pub use sturnus_transport::*;
}

/// Secure connections ([`sturnus-netcode`](sturnus_netcode)): netcode 1.02 connect tokens
/// (minted by the game's backend), encrypted and authenticated packets, and the transport
/// mode that carries Sturnus's channels inside them (`SecureHost`, a `Transport`).
#[cfg(feature = "secure")]
pub mod netcode {
    #[doc(inline)]
    pub use sturnus_netcode::*;
}

/// LAN discovery ([`sturnus-discovery`](sturnus_discovery), UNET's `NetworkDiscovery`): a
/// host advertises its game on the discovery port; players search the local network and find
/// the hosts of their game and version, with the port to connect to.
///
/// A server or host started by the `NetworkManager` advertises with
/// `NetworkManager::advertise_on_lan` (answered inside its `tick`); a player searches with
/// [`lan_search`](sturnus_discovery::lan_search) (blocking for the window, one second by
/// default) or [`LanSearch`](sturnus_discovery::LanSearch) (polled each frame), and joins the
/// address found:
///
/// ```no_run
/// use sturnus::discovery::{LanSearchConfig, lan_search};
///
/// const MY_GAME: u64 = 0x5354_5552_4e55_5301;
/// let hosts = lan_search(&LanSearchConfig::new(MY_GAME, 1))?;
/// for host in &hosts {
///     println!("{} at {}", String::from_utf8_lossy(&host.info), host.addr);
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
#[cfg(feature = "discovery")]
pub mod discovery {
    #[doc(inline)]
    pub use sturnus_discovery::*;
}

/// Sturnus's services from the game's side: the blocking client of `sturnusd`'s matchmaker
/// ([`LobbyClient`](sturnus_lobby::LobbyClient): create, list, join by id or code, quick-join),
/// join codes, and the relay's game-side socket. The [`NetworkManager`](crate::manager::NetworkManager)
/// hosts a listed match with `host_match` and joins one with `join_match`, directly or through
/// the relay.
///
/// ```no_run
/// use sturnus::prelude::*;
/// use sturnus::services::api::{CreateMatch, HostMode, JoinRequest};
/// use sturnus::services::LobbyClient;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let lobby = LobbyClient::new("http://127.0.0.1:7780")?;
/// let mut host = NetworkManager::new(ManagerConfig::default());
/// let request = CreateMatch {
///     name: "Friday night".into(), size: 8, listed: true, password: None,
///     attributes: Default::default(), region: None,
///     protocol_id: 0x5354_5552, host: HostMode::Relay,
/// };
/// let hosted = host.host_match(&lobby, &request, "0.0.0.0:0".parse()?)?;
/// println!("join with {}", hosted.join_code());            // e.g. 7KQ2M-XC9TD
///
/// let mut player = NetworkManager::new(ManagerConfig::default());
/// player.join_match(&lobby, hosted.join_code(), &JoinRequest::default())?;
/// # Ok(()) }
/// ```
#[cfg(feature = "services")]
pub mod services {
    #[doc(inline)]
    pub use crate::manager::HostedMatch;
    #[doc(inline)]
    pub use sturnus_lobby::*;
    #[doc(inline)]
    pub use sturnus_relay::{Allocation, RelaySocket, RelaySocketFactory};
}

/// The message layer ([`sturnus-message`](sturnus_message)): `NetworkServer`,
/// `NetworkClient`, players, typed messages, authenticators and host mode.
#[cfg(feature = "message")]
pub mod message {
    #[doc(inline)]
    pub use sturnus_message::*;
}

/// The object layer ([`sturnus-object`](sturnus_object)): networked objects, SyncVars, sync
/// collections, Commands and RPCs.
#[cfg(feature = "object")]
pub mod object {
    #[doc(inline)]
    pub use sturnus_object::*;
}

#[cfg(feature = "object")]
pub mod manager;

/// Prints the library's logs to standard error, filtered by `RUST_LOG` (`RUST_LOG=info` for
/// the lifecycle — started, joined, authenticated, left, scene changed — each inside a span
/// naming its endpoint; `RUST_LOG=trace` for every packet); only errors without it. For games
/// without a `tracing` subscriber of their own; a second call changes nothing.
#[cfg(feature = "logs")]
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("error"));
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

#[cfg(feature = "object")]
pub mod hud;

/// What game code needs day to day: `use sturnus::prelude::*;`.
///
/// Everything here is also in its layer's module. The derive macros share their trait's name
/// (`Message`, `NetworkBehaviour`), so one import brings both. The `#[network_rpcs]` macro
/// generates a trait `<Type>Rpcs` in the game's module, implemented for `Obj<Type>` handles:
/// bring it into scope where RPCs are sent from (it is where the type is declared). Its
/// methods take the `CommandSink` (a client) or the `RpcSink` (a server) to send through.
/// `#[command]`, `#[client_rpc]` and `#[target_rpc]` are here so that one written outside a
/// `#[network_rpcs]` block is an error saying where it belongs (inside one, the block reads it).
pub mod prelude {
    #[cfg(feature = "transport")]
    #[doc(no_inline)]
    pub use crate::transport::{
        ChannelId, EndpointConfig, Host, MemoryNetwork, MemoryTransport, Qos, ThreadedHost,
        Transport,
    };

    #[cfg(feature = "message")]
    #[doc(no_inline)]
    pub use crate::message::{
        ChannelLayout, ClientConfig, ClientEvent, DisconnectReason, Message, MessageError,
        NetworkClient, NetworkServer, Player, PlayerId, ServerConfig, ServerEvent, driver,
    };

    #[cfg(feature = "object")]
    #[doc(no_inline)]
    pub use crate::object::{
        ClientCtx, ClientObjectEvent, ClientObjectManager, CommandSink, ListChange, MapChange,
        NetId, NetworkBehaviour, Obj, ObjectConfig, ObjectError, PrefabId, RpcSink, SceneId,
        ServerCtx, ServerObjectManager, ServerObjects, SetChange, SyncList, SyncMap, SyncSet,
        SyncVar, client_rpc, command, network_rpcs, target_rpc,
    };

    #[cfg(feature = "object")]
    #[doc(no_inline)]
    pub use crate::object::{
        NetworkTransform, TransformSyncConfig, interpolation::Pose, transform::TransformConfig,
    };

    #[cfg(feature = "object")]
    #[doc(no_inline)]
    pub use crate::manager::{
        ManagerConfig, ManagerError, ManagerEvent, NetworkManager, NetworkMode, PlayerSpawn,
        StartPosition, StartStrategy, TransportChoice, TransportFactory,
    };

    #[cfg(feature = "object")]
    #[doc(no_inline)]
    pub use crate::hud::Hud;
}
