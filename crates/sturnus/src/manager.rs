//! The [`NetworkManager`]: UNET's NetworkManager (and Mirage's CharacterSpawner) over the
//! object layer — start a server, a client or a host, spawn each player's object, change
//! scenes, tick.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sturnus_message::{
    Authenticator, ChannelId, ClientConfig, ClientEvent, DisconnectReason, Message, MessageError,
    NetworkClient, NetworkServer, PlayerId, ServerConfig, ServerEvent, driver,
};
use sturnus_object::{
    Behaviours, ClientObjectManager, CommandSink, IntoBehaviours, NetId, NetworkBehaviour, Obj,
    ObjectConfig, ObjectError, PrefabId, RpcCall, ServerObjectManager,
};
use sturnus_socket::{SocketFactory, UdpSocketFactory};
use sturnus_transport::{EndpointConfig, Host, MemoryNetwork, ThreadedHost, Transport};
use tracing::{debug, info, warn};

/// Which side a transport is opened for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Side {
    /// A server (or host) that listens at the address.
    Server,
    /// A client that will connect to the address.
    Client,
}

#[cfg(feature = "services")]
mod services;
#[cfg(feature = "services")]
pub use services::HostedMatch;

type Open = dyn Fn(Side, SocketAddr, &EndpointConfig) -> Result<Box<dyn Transport>, ManagerError>
    + Send
    + Sync;

/// Opens the transport of a [`TransportChoice::Custom`]: told the side, the address (to listen
/// at, or the server's) and the endpoint settings the channel layout needs, it returns any
/// [`Transport`] — a secure, relayed or WebSocket one slides under the manager this way.
#[derive(Clone)]
pub struct TransportFactory(Arc<Open>);

impl TransportFactory {
    /// A factory calling `open`.
    pub fn new(
        open: impl Fn(Side, SocketAddr, &EndpointConfig) -> Result<Box<dyn Transport>, ManagerError>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        Self(Arc::new(open))
    }
}

impl fmt::Debug for TransportFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TransportFactory(..)")
    }
}

/// Opens the netcode transport mode for one side.
#[cfg(feature = "secure")]
fn open_netcode(
    settings: &NetcodeSettings,
    client: bool,
    addr: SocketAddr,
    endpoint: &EndpointConfig,
) -> Result<Box<dyn Transport>, ManagerError> {
    use sturnus_netcode::server::ServerConfig as NetcodeServer;
    use sturnus_netcode::transport::SecureHost;
    let factory = UdpSocketFactory::default();
    let host = if client {
        let ticket = settings.ticket.clone().ok_or(ManagerError::Secure(
            "a netcode client needs a ticket (NetcodeSettings::client or native_client)",
        ))?;
        SecureHost::client(endpoint, ticket, &factory, addr)
    } else {
        if settings.private_key.is_none() && settings.native.is_none() {
            return Err(ManagerError::Secure(
                "a netcode server needs the private key it shares with the token minter, or \
                 a native key (NetcodeSettings::server or native_server)",
            ));
        }
        // Without a shared key, one nobody knows: no token can open.
        let key = match settings.private_key {
            Some(key) => key,
            None => sturnus_netcode::random_key()
                .map_err(|_| ManagerError::Secure("the operating system's generator failed"))?,
        };
        let public = settings.public_address.unwrap_or(addr);
        if settings.private_key.is_some() && public.ip().is_unspecified() {
            // Tokens list the address clients reach: none lists 0.0.0.0, so every one would be
            // refused.
            return Err(ManagerError::Secure(
                "a token server bound to an unspecified address (0.0.0.0, ::) needs its public \
                 address: NetcodeSettings::public_server, or public_address",
            ));
        }
        let mut netcode = NetcodeServer::new(settings.protocol_id, key, public);
        netcode.native.clone_from(&settings.native);
        SecureHost::bind(endpoint, &netcode, &factory, addr)
    };
    Ok(Box::new(host?))
}

/// Which transport the manager opens.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum TransportChoice {
    /// Plaintext UDP on the caller's thread ([`Host`]): for development, LANs and
    /// benchmarks; nothing is encrypted (see `Netcode` for play over the internet).
    #[default]
    Udp,
    /// Plaintext UDP on a background I/O thread ([`ThreadedHost`]).
    ThreadedUdp,
    /// An in-process network (tests, single-process games): servers bind the address they are
    /// given on it, clients connect over it.
    Memory(MemoryNetwork),
    /// Whatever the factory opens.
    Custom(TransportFactory),
    /// UDP secured by netcode 1.02 (the transport mode of [`sturnus_netcode`]): every packet
    /// encrypted and authenticated, clients admitted by connect tokens the game's backend
    /// mints. What a game on the internet uses.
    #[cfg(feature = "secure")]
    Netcode(Box<NetcodeSettings>),
}

/// The settings of [`TransportChoice::Netcode`]. A server (or host) admits clients with connect
/// tokens (it needs the private key it shares with the backend that mints them), with the
/// native profile (it needs its static X25519 key: play without a backend), or both. A client
/// needs a [`Ticket`](sturnus_netcode::transport::Ticket): a token, or the native profile.
#[cfg(feature = "secure")]
#[derive(Clone)]
pub struct NetcodeSettings {
    /// The game's protocol id (servers accept only their game's clients).
    pub protocol_id: u64,
    /// The key shared with the token minter (server side). Keep it secret. A server without
    /// one draws a key nobody knows: it admits native clients only.
    pub private_key: Option<sturnus_netcode::Key>,
    /// The server's static key for the native profile (server side).
    pub native: Option<sturnus_netcode::native::NativeConfig>,
    /// The server's address as tokens list it, when it differs from the address the server
    /// binds (behind a NAT, or bound to `0.0.0.0`).
    pub public_address: Option<SocketAddr>,
    /// How the client connects (client side).
    pub ticket: Option<sturnus_netcode::transport::Ticket>,
}

#[cfg(feature = "secure")]
impl fmt::Debug for NetcodeSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetcodeSettings")
            .field("protocol_id", &format_args!("{:#018x}", self.protocol_id))
            .field("private_key", &self.private_key.map(|_| "<secret>"))
            .field("native", &self.native.as_ref().map(|_| "<secret>"))
            .field("public_address", &self.public_address)
            .field("ticket", &self.ticket)
            .finish()
    }
}

#[cfg(feature = "secure")]
impl NetcodeSettings {
    fn with(protocol_id: u64) -> Self {
        Self { protocol_id, private_key: None, native: None, public_address: None, ticket: None }
    }

    /// A server's (or host's) transport, admitting clients with tokens minted under
    /// `private_key`.
    pub fn server(protocol_id: u64, private_key: sturnus_netcode::Key) -> TransportChoice {
        let settings = Self { private_key: Some(private_key), ..Self::with(protocol_id) };
        TransportChoice::Netcode(Box::new(settings))
    }

    /// [`server`](Self::server) for a server bound to an address clients do not reach it at
    /// (`0.0.0.0`, or behind a NAT): tokens list `public_address`, and the server accepts only
    /// tokens that list it.
    pub fn public_server(
        protocol_id: u64,
        private_key: sturnus_netcode::Key,
        public_address: SocketAddr,
    ) -> TransportChoice {
        let settings = Self {
            private_key: Some(private_key),
            public_address: Some(public_address),
            ..Self::with(protocol_id)
        };
        TransportChoice::Netcode(Box::new(settings))
    }

    /// A server's (or host's) transport for play without a backend: clients connect with the
    /// native profile, and may pin `native`'s public key.
    pub fn native_server(
        protocol_id: u64,
        native: sturnus_netcode::native::NativeConfig,
    ) -> TransportChoice {
        let settings = Self { native: Some(native), ..Self::with(protocol_id) };
        TransportChoice::Netcode(Box::new(settings))
    }

    /// A client's transport: the token it connects with.
    pub fn client(token: sturnus_netcode::ConnectToken) -> TransportChoice {
        let protocol_id = token.protocol_id;
        let ticket = Some(sturnus_netcode::transport::Ticket::Token(token));
        TransportChoice::Netcode(Box::new(Self { ticket, ..Self::with(protocol_id) }))
    }

    /// A client's transport with the native profile, trusting only the server key `pinned`
    /// if given (the first key seen otherwise); connections silent for 10 s end.
    pub fn native_client(
        protocol_id: u64,
        pinned: Option<sturnus_netcode::native::PublicKey>,
    ) -> TransportChoice {
        let ticket = Some(sturnus_netcode::transport::Ticket::Native {
            protocol_id,
            pinned_server_key: pinned,
            timeout: Duration::from_secs(10),
        });
        TransportChoice::Netcode(Box::new(Self { ticket, ..Self::with(protocol_id) }))
    }
}

/// Settings of a [`NetworkManager`].
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// The server's settings; its channel layout is the client's too (the one in `client` is
    /// not used).
    pub server: ServerConfig,
    /// The client's settings (its channel layout is `server`'s).
    pub client: ClientConfig,
    /// The object managers' settings.
    pub objects: ObjectConfig,
    /// The transport opened by `start_*`.
    pub transport: TransportChoice,
    /// The transport's settings beyond the channel layout (the layout's channels are always
    /// used).
    pub endpoint: EndpointConfig,
    /// Whether a client reports itself ready for a new scene as soon as it is told of it
    /// (`true`, for games that load scenes synchronously while handling
    /// [`ManagerEvent::ClientChangeScene`]), or only when the game calls
    /// [`NetworkManager::scene_ready`] (`false`, for loading over several frames).
    pub auto_scene_ready: bool,
    /// Whether [`NetworkManager::run`] stops the manager gracefully (peers are told at once)
    /// and returns on Ctrl-C or `SIGTERM`, instead of the process dying and its peers timing
    /// out. The signal is the process's end: every `run` in the process stops (a server and
    /// its clients in one process, say), and any later one returns at once; a second signal
    /// ends the process with status 130. The first `run` installs the handlers (feature
    /// `signals`, on by default); an engine driving [`NetworkManager::tick`] itself is not
    /// affected.
    pub stop_on_interrupt: bool,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        let server = ServerConfig::default();
        let endpoint = server.channels.endpoint_config();
        Self {
            server,
            client: ClientConfig::default(),
            objects: ObjectConfig::default(),
            transport: TransportChoice::default(),
            endpoint,
            auto_scene_ready: true,
            stop_on_interrupt: true,
        }
    }
}

/// Where the manager is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NetworkMode {
    /// Not started (or stopped).
    Offline,
    /// A dedicated server.
    Server,
    /// A client of a remote server.
    Client,
    /// A server with its own player (a client-hosted game).
    Host,
}

/// How the player's start position is chosen among the registered ones (UNET's
/// `PlayerSpawnMethod`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StartStrategy {
    /// One after the other, wrapping around.
    #[default]
    RoundRobin,
    /// Any, at random (not a secret: a small generator the manager seeds itself).
    Random,
}

/// A place players may start at (UNET's `NetworkStartPosition`): engine-agnostic, a point and a
/// heading the player factory turns into its own types.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StartPosition {
    /// Where.
    pub position: [f32; 3],
    /// Facing, in radians around the up axis.
    pub yaw: f32,
}

/// What the player factory is told about the player it builds an object for.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct PlayerSpawn {
    /// The player.
    pub player: PlayerId,
    /// The start position chosen for it, if any are registered.
    pub start: Option<StartPosition>,
}

/// Something that happened to a [`NetworkManager`] (UNET's `OnServerConnect`,
/// `OnServerAddPlayer`, `OnServerDisconnect`, `OnClientConnect`, `OnClientDisconnect`,
/// `OnStopHost`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ManagerEvent {
    /// The manager started, in this mode, listening on this address (servers and hosts).
    Started(NetworkMode, Option<SocketAddr>),
    /// A player connected to the server (not yet authenticated).
    ServerConnect(PlayerId),
    /// A player's object was spawned for it.
    ServerAddPlayer {
        /// The player.
        player: PlayerId,
        /// Its object.
        object: NetId,
    },
    /// A player's object could not be spawned (the spawn hook's or the player prefab's
    /// error, as text); the player plays on without one (give it one with
    /// [`NetworkManager::set_player_object`], or kick it).
    AddPlayerFailed {
        /// The player.
        player: PlayerId,
        /// Why.
        error: String,
    },
    /// A player left the server.
    ServerDisconnect(PlayerId, DisconnectReason),
    /// A player reported it has loaded the current scene: from now on it is sent the objects
    /// (UNET's `OnServerReady`).
    ServerReady(PlayerId),
    /// The server changed the scene ([`NetworkManager::change_scene`]): the old scene's objects
    /// are gone; spawn the new scene's now (UNET's `OnServerSceneChanged`).
    ServerSceneChanged(String),
    /// This client was accepted by the server.
    ClientConnect,
    /// The server's scene is this one (on joining, and at every change): load it. The client
    /// has forgotten every object and is sent the scene's once it reports ready — by itself,
    /// or at [`NetworkManager::scene_ready`] without [`ManagerConfig::auto_scene_ready`]
    /// (UNET's `OnClientChangeScene`).
    ClientChangeScene(String),
    /// This client's connection ended; the manager stops (a [`Stopped`](Self::Stopped)
    /// follows).
    ClientDisconnect(DisconnectReason),
    /// The manager stopped (a host's stop is UNET's `OnStopHost`).
    Stopped(NetworkMode),
}

/// Errors of the manager.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManagerError {
    /// `start_*` while already started: stop first.
    #[error("the network manager is already running as {0:?}")]
    AlreadyStarted(NetworkMode),
    /// The transport could not be opened.
    #[error(transparent)]
    Transport(#[from] sturnus_transport::HostError),
    /// The message layer refused.
    #[error(transparent)]
    Message(#[from] MessageError),
    /// The object layer refused.
    #[error(transparent)]
    Object(#[from] ObjectError),
    /// A server's operation (a scene change) on a manager that is not serving.
    #[error("only a server or a host can do this (the network manager is {0:?})")]
    NotServing(NetworkMode),
    /// A player's operation (sending to the server) on a manager with no player of its own: a
    /// dedicated server, or offline.
    #[error("only a client or a host has a player to do this (the network manager is {0:?})")]
    NoLocalPlayer(NetworkMode),
    /// A scene name longer than [`MAX_SCENE_NAME`] bytes.
    #[error("a scene name is at most {MAX_SCENE_NAME} bytes")]
    SceneName,
    /// [`NetworkManager::scene_ready`] with no scene being loaded.
    #[error("no scene is waiting to be reported ready")]
    NoSceneLoading,
    /// [`TransportChoice::Netcode`] without what the side needs (a key, a token).
    #[error("{0}")]
    Secure(&'static str),
    /// The netcode transport could not be opened (the socket, the configuration).
    #[cfg(feature = "secure")]
    #[error("the secure transport could not be opened: {0}")]
    SecureTransport(#[from] sturnus_netcode::transport::SecureError),
    /// LAN discovery could not start: the discovery port could not be bound, or the
    /// advertisement has no game port and the server listens on none.
    #[cfg(feature = "discovery")]
    #[error("LAN discovery could not start: {0}")]
    Discovery(#[source] std::io::Error),
    /// The matchmaker refused or could not be reached ([`NetworkManager::host_match`],
    /// [`NetworkManager::join_match`]).
    #[cfg(feature = "services")]
    #[error(transparent)]
    Lobby(sturnus_lobby::LobbyError),
}

/// The longest scene name, in bytes (it fits every channel's smallest message).
pub const MAX_SCENE_NAME: usize = 256;

/// Server → client: the current scene, and the number of the change that set it.
#[derive(Debug, Serialize, Deserialize, Message)]
#[message(crate = ::sturnus_message)]
struct SceneMsg {
    change: u32,
    name: Option<String>,
}

/// Client → server: the client has loaded the scene of this change.
#[derive(Debug, Serialize, Deserialize, Message)]
#[message(crate = ::sturnus_message)]
struct SceneReadyMsg {
    change: u32,
}

type Factory = Arc<dyn Fn() -> Behaviours + Send + Sync>;
/// Registers a message type's queue on a server and on a client.
type Queues = (
    fn(&mut NetworkServer) -> Result<(), MessageError>,
    fn(&mut NetworkClient) -> Result<(), MessageError>,
);
/// Sets the credentials on a client (the manager's, or the host's own).
type Credentials = Box<dyn Fn(&mut NetworkClient) -> Result<(), MessageError> + Send>;
/// Gives a server a new authenticator.
type Gate = Box<dyn Fn(&mut NetworkServer) + Send>;
type PlayerFactory = Box<dyn FnMut(&PlayerSpawn) -> Behaviours + Send>;
type AddPlayer = Box<
    dyn FnMut(&mut ServerObjectManager, &PlayerSpawn) -> Result<Option<NetId>, ObjectError> + Send,
>;

/// The front door for game code (UNET's `NetworkManager`): start a dedicated server, a client
/// or a host with one call, and each authenticated player gets an object of the player prefab,
/// owned by it, at a start position.
///
/// The server changes the scene for everyone with [`change_scene`](Self::change_scene):
/// clients load it, report ready and are sent its objects, and players who join later get the
/// current scene the same way. [`set_add_player`](Self::set_add_player) replaces the player
/// prefab's spawn.
///
/// Drive it with [`tick`](Self::tick) from an engine's own loop, or let
/// [`run`](Self::run) own the loop at a fixed rate. Everything the layers below offer stays
/// reachable through [`server`](Self::server) and [`client`](Self::client).
///
/// ```
/// use sturnus::manager::{ManagerConfig, NetworkManager, TransportChoice};
/// use sturnus::prelude::*;
///
/// const PLAYER: PrefabId = PrefabId::of_name("player");
/// #[derive(Default, NetworkBehaviour)]
/// struct Avatar { #[sync] x: SyncVar<f32> }
///
/// let network = MemoryNetwork::new();
/// let config = ManagerConfig { transport: TransportChoice::Memory(network), ..Default::default() };
/// let mut host = NetworkManager::new(config);
/// host.register_player_prefab(PLAYER, |spawn| Avatar::default());
/// host.start_host("10.0.0.1:7777".parse().unwrap()).unwrap();
/// // The host's own player exists as soon as the host starts, with its object.
/// let me = host.host_player().unwrap();
/// assert!(host.player_object(me).is_some());
/// ```
pub struct NetworkManager {
    config: ManagerConfig,
    mode: NetworkMode,
    server: Option<ServerObjectManager>,
    client: Option<ClientObjectManager>,
    prefabs: Vec<(PrefabId, Factory)>,
    player_prefab: Option<(PrefabId, PlayerFactory)>,
    add_player: Option<AddPlayer>,
    /// The message types game code polls ([`NetworkManager::register_message`]).
    queues: Vec<Queues>,
    credentials: Option<Credentials>,
    authenticator: Option<Gate>,
    /// The current scene (server: set by `change_scene`; client: the server's latest).
    scene: Option<String>,
    /// How many scene changes the server made: a client's ready report names the change it
    /// loaded, so a late report for an older scene is ignored.
    scene_change: u32,
    /// Client: the change told of and not yet reported ready.
    loading: Option<u32>,
    /// Objects a scene change keeps (besides players' objects).
    persistent: HashSet<NetId>,
    /// The objects' channel, the scene messages' too (so they come after the object layer's
    /// own messages, in order).
    channel: Option<ChannelId>,
    starts: Vec<StartPosition>,
    strategy: StartStrategy,
    next_start: usize,
    random: u64,
    player_objects: HashMap<PlayerId, NetId>,
    events: VecDeque<ManagerEvent>,
    now: Option<Instant>,
    /// Ticks since the last start.
    ticks: u64,
    /// Where the server listens, when serving.
    local_addr: Option<SocketAddr>,
    /// The LAN advertiser, answered inside `tick` while serving.
    #[cfg(feature = "discovery")]
    advertiser: Option<sturnus_discovery::LanAdvertiser>,
}

impl fmt::Debug for NetworkManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkManager")
            .field("mode", &self.mode)
            .field("players", &self.player_objects.len())
            .finish_non_exhaustive()
    }
}

impl NetworkManager {
    /// A manager with `config`, offline.
    pub fn new(config: ManagerConfig) -> Self {
        Self {
            config,
            mode: NetworkMode::Offline,
            server: None,
            client: None,
            prefabs: Vec::new(),
            player_prefab: None,
            add_player: None,
            queues: Vec::new(),
            credentials: None,
            authenticator: None,
            scene: None,
            scene_change: 0,
            loading: None,
            persistent: HashSet::new(),
            channel: None,
            starts: Vec::new(),
            strategy: StartStrategy::default(),
            next_start: 0,
            random: 0x9E37_79B9_7F4A_7C15,
            player_objects: HashMap::new(),
            events: VecDeque::new(),
            now: None,
            ticks: 0,
            local_addr: None,
            #[cfg(feature = "discovery")]
            advertiser: None,
        }
    }

    /// Where the manager is.
    pub fn mode(&self) -> NetworkMode {
        self.mode
    }

    /// How many times [`tick`](Self::tick) ran since the manager last started (a frame
    /// counter for the game loop).
    pub fn ticks(&self) -> u64 {
        self.ticks
    }

    /// Registers a prefab clients build objects of (the player prefab is registered by
    /// [`register_player_prefab`](Self::register_player_prefab)), for the running client and
    /// every one started afterwards.
    pub fn register_prefab<I: IntoBehaviours>(
        &mut self,
        prefab: PrefabId,
        factory: impl Fn() -> I + Send + Sync + 'static,
    ) {
        let factory: Factory = Arc::new(move || factory().into_behaviours());
        if let Some(client) = &mut self.client {
            let factory = Arc::clone(&factory);
            client.register_prefab(prefab, move || factory());
        }
        self.prefabs.push((prefab, factory));
    }

    /// The player prefab: on the server, `spawn` builds each authenticated player's object
    /// (told the player and its start position); clients build it with the prefab's default
    /// (`spawn` with no start position and an unknown player).
    pub fn register_player_prefab<I: IntoBehaviours>(
        &mut self,
        prefab: PrefabId,
        spawn: impl Fn(&PlayerSpawn) -> I + Send + Sync + 'static,
    ) {
        let spawn = Arc::new(spawn);
        let for_clients = Arc::clone(&spawn);
        self.prefabs.push((
            prefab,
            Arc::new(move || {
                for_clients(&PlayerSpawn { player: PlayerId(0), start: None }).into_behaviours()
            }),
        ));
        self.player_prefab =
            Some((prefab, Box::new(move |info: &PlayerSpawn| spawn(info).into_behaviours())));
    }

    /// Who may join a server or host this manager starts (Mirage's `NetworkAuthenticator`):
    /// `make` builds the authenticator at each start (by default every player is let in).
    /// A player turned away is a [`ManagerEvent::ServerDisconnect`] with the reason; its
    /// client sees [`ManagerEvent::ClientDisconnect`] with it.
    pub fn set_authenticator<A: Authenticator>(&mut self, make: impl Fn() -> A + Send + 'static) {
        self.authenticator = Some(Box::new(move |server| server.set_authenticator(make())));
    }

    /// What this manager's client (or a host's own player) presents to the server's
    /// authenticator: its `Credentials` type (a `Login` for a `PasswordAuthenticator`). Used
    /// from the next start.
    pub fn set_credentials<C: Serialize + Send + 'static>(&mut self, credentials: C) {
        self.credentials = Some(Box::new(move |client| client.set_credentials(&credentials)));
    }

    /// Adds a start position (UNET's `NetworkStartPosition`).
    pub fn add_start_position(&mut self, start: StartPosition) {
        self.starts.push(start);
    }

    /// How start positions are chosen.
    pub fn set_start_strategy(&mut self, strategy: StartStrategy) {
        self.strategy = strategy;
    }

    /// Starts a dedicated server listening at `addr`.
    pub fn start_server(&mut self, addr: SocketAddr) -> Result<Option<SocketAddr>, ManagerError> {
        self.start_serving(addr, NetworkMode::Server)
    }

    /// Starts a host: a server listening at `addr` with its own player, whose object is
    /// spawned before this returns.
    pub fn start_host(&mut self, addr: SocketAddr) -> Result<Option<SocketAddr>, ManagerError> {
        self.start_serving(addr, NetworkMode::Host)
    }

    /// Starts a client connecting to the server at `server`.
    pub fn start_client(&mut self, server: SocketAddr) -> Result<(), ManagerError> {
        self.check_offline()?;
        let now = self.clock();
        // One layout for both sides: the server's.
        let mut config = self.config.client.clone();
        config.channels = self.config.server.channels.clone();
        let mut client = NetworkClient::new(config)?;
        if let Some(credentials) = &self.credentials {
            credentials(&mut client)?;
        }
        client.register_queue::<SceneMsg>()?;
        for (_, on_client) in &self.queues {
            on_client(&mut client)?;
        }
        let mut client = ClientObjectManager::with_config(client, self.objects_config())?;
        self.channel = Some(self.config.objects.validate(client.client().channels())?);
        self.register_prefabs(&mut client);
        let transport = self.open(true, server)?;
        client.connect(now, transport, server)?;
        self.client = Some(client);
        self.mode = NetworkMode::Client;
        self.events.push_back(ManagerEvent::Started(NetworkMode::Client, None));
        Ok(())
    }

    /// Stops whatever runs: players are told, objects forgotten.
    pub fn stop(&mut self) {
        if let Some(client) = &mut self.client {
            client.client_mut().disconnect();
            let _ = client.client_mut().flush();
        }
        if let Some(server) = &mut self.server {
            server.stop();
        }
        self.client = None;
        self.server = None;
        self.player_objects.clear();
        self.persistent.clear();
        self.scene = None;
        self.scene_change = 0;
        self.loading = None;
        self.ticks = 0;
        self.local_addr = None;
        #[cfg(feature = "discovery")]
        {
            self.advertiser = None;
        }
        if self.mode != NetworkMode::Offline {
            self.events.push_back(ManagerEvent::Stopped(self.mode));
        }
        self.mode = NetworkMode::Offline;
    }

    /// Updates everything as of `now` (for engines that own the loop): receives, spawns the
    /// objects of players who joined, syncs, sends. Then drain [`poll_event`](Self::poll_event).
    pub fn tick(&mut self, now: Instant) -> Result<(), ManagerError> {
        self.now = Some(self.now.map_or(now, |last| last.max(now)));
        self.ticks += 1;
        if let Some(server) = &mut self.server {
            server.update(now)?;
            let mut events = Vec::new();
            while let Some(event) = server.poll_event() {
                events.push(event);
            }
            // In order: a player that joined and left in the same update is gone by now, and
            // gets no object.
            for event in events {
                match event {
                    ServerEvent::Connected(player) => {
                        self.events.push_back(ManagerEvent::ServerConnect(player));
                    }
                    ServerEvent::Authenticated(player) => self.player_joined(player),
                    ServerEvent::Disconnected(player, reason) => {
                        self.player_objects.remove(&player);
                        self.events.push_back(ManagerEvent::ServerDisconnect(player, reason));
                    }
                    _ => {}
                }
            }
            let server = self.server.as_mut().expect("checked above");
            while let Some((player, SceneReadyMsg { change })) =
                server.server_mut().poll_message::<SceneReadyMsg>()
            {
                if change != self.scene_change {
                    debug!(%player, change, "a ready report for an older scene is ignored");
                } else if server.set_ready(player) {
                    self.events.push_back(ManagerEvent::ServerReady(player));
                }
            }
            #[cfg(feature = "discovery")]
            self.answer_lan_searches();
        }
        let mut disconnected = false;
        if let Some(client) = &mut self.client {
            client.update(now)?;
            while let Some(event) = client.poll_event() {
                match event {
                    ClientEvent::Authenticated => {
                        self.events.push_back(ManagerEvent::ClientConnect)
                    }
                    ClientEvent::Disconnected(reason) => {
                        self.events.push_back(ManagerEvent::ClientDisconnect(reason));
                        disconnected = true;
                    }
                    _ => {}
                }
            }
            let mut nothing_to_load = false;
            while let Some(SceneMsg { change, name }) = client.client_mut().poll_message() {
                // The object layer's NotReady, sent before this on the same channel, has made
                // the client forget the old scene's objects already.
                self.scene_change = change;
                self.loading = Some(change);
                // No scene chosen yet: nothing to load, so nothing to wait for either.
                nothing_to_load = name.is_none();
                if let Some(name) = name {
                    let span = tracing::info_span!("endpoint", name = %self.config.client.name);
                    info!(parent: &span, scene = %name, "scene changed");
                    self.scene = Some(name.clone());
                    self.events.push_back(ManagerEvent::ClientChangeScene(name));
                }
            }
            if (self.config.auto_scene_ready || nothing_to_load) && self.loading.is_some() {
                self.scene_ready()?;
            }
        }
        if disconnected {
            // UNET's default OnClientDisconnect: the client stops.
            self.stop();
        }
        Ok(())
    }

    /// Changes the scene (UNET's `ServerChangeScene`), on a server or host: every remote
    /// player is made not ready (its client forgets every object) and told the new scene's
    /// name; every object but players' objects and [`persist`](Self::persist)ed ones is
    /// despawned; [`ManagerEvent::ServerSceneChanged`] follows, for the game to spawn the new
    /// scene's objects. Each client loads the scene ([`ManagerEvent::ClientChangeScene`]),
    /// reports ready ([`ManagerEvent::ServerReady`]) and is then sent the objects. Players who
    /// join later are told the current scene the same way. The host's own player shares the
    /// server's objects and stays ready: the host game loads the scene on
    /// `ServerSceneChanged`.
    pub fn change_scene(&mut self, name: impl Into<String>) -> Result<(), ManagerError> {
        let mode = self.mode;
        let Some(server) = self.server.as_mut() else {
            return Err(ManagerError::NotServing(mode));
        };
        let name = name.into();
        let message = SceneMsg { change: self.scene_change.wrapping_add(1), name: Some(name) };
        let channel = self.channel.expect("set when serving");
        if message.name.as_ref().is_some_and(|n| n.len() > MAX_SCENE_NAME) {
            return Err(ManagerError::SceneName);
        }
        self.scene_change = message.change;
        let players: Vec<PlayerId> = server.server().players().collect();
        for player in players {
            let authenticated =
                server.server_mut().player(player).is_some_and(|p| p.is_authenticated());
            if authenticated && server.host_player() != Some(player) {
                server.set_not_ready(player);
                tell_scene(server, player, &message, channel);
            }
        }
        let mut old: Vec<NetId> = server
            .objects()
            .filter(|id| !self.persistent.contains(id))
            .filter(|id| !self.player_objects.values().any(|o| o == id))
            .collect();
        old.sort_unstable();
        for id in old {
            server.despawn(id);
        }
        let name = message.name.expect("set above");
        // In the span the server's own lifecycle logs are in, naming it.
        let span = tracing::info_span!("endpoint", name = %self.config.server.name);
        info!(parent: &span, scene = %name, "scene changed");
        self.scene = Some(name.clone());
        self.events.push_back(ManagerEvent::ServerSceneChanged(name));
        Ok(())
    }

    /// Keeps an object of the server across scene changes (UNET's `DontDestroyOnLoad`);
    /// players' objects are always kept. An object the server does not have is
    /// [`ObjectError::UnknownObject`].
    pub fn persist(&mut self, object: NetId) -> Result<(), ManagerError> {
        self.server_object(object)?;
        self.persistent.insert(object);
        Ok(())
    }

    /// Checks that the server runs and has `object`.
    fn server_object(&self, object: NetId) -> Result<(), ManagerError> {
        let server = self.server.as_ref().ok_or(ManagerError::NotServing(self.mode))?;
        if server.contains(object) {
            Ok(())
        } else {
            Err(ObjectError::UnknownObject(object).into())
        }
    }

    /// The current scene: the server's, or the one the server last told this client.
    pub fn scene(&self) -> Option<&str> {
        self.scene.as_deref()
    }

    /// Reports the scene the server told of loaded (UNET's `ClientScene.Ready`): the server
    /// then sends its objects. Only needed without [`ManagerConfig::auto_scene_ready`];
    /// [`ManagerError::NoSceneLoading`] if no scene is waiting.
    pub fn scene_ready(&mut self) -> Result<(), ManagerError> {
        let (Some(client), Some(change)) = (self.client.as_mut(), self.loading) else {
            return Err(ManagerError::NoSceneLoading);
        };
        let channel = self.channel.expect("set when a client");
        client.client_mut().send_on(&SceneReadyMsg { change }, channel)?;
        self.loading = None;
        Ok(())
    }

    /// Replaces the player prefab's spawn (UNET's `OnServerAddPlayer` override): `hook` is
    /// called for each authenticated player with the server's objects and the player's start
    /// position, spawns what it wants, and returns the player's object (`None`: the player
    /// has none, a spectator).
    pub fn set_add_player(
        &mut self,
        hook: impl FnMut(&mut ServerObjectManager, &PlayerSpawn) -> Result<Option<NetId>, ObjectError>
        + Send
        + 'static,
    ) {
        self.add_player = Some(Box::new(hook));
    }

    /// Runs the game loop at `hz` ticks a second until `frame` returns `false`, or until the
    /// manager, running, goes offline (stopped, or a client whose connection ended): each tick
    /// updates the network, then calls `frame` with the manager, then sleeps until the next
    /// tick (for standalone servers and simple games).
    pub fn run(
        &mut self,
        hz: u32,
        mut frame: impl FnMut(&mut NetworkManager) -> bool,
    ) -> Result<(), ManagerError> {
        let period = Duration::from_secs(1) / hz.max(1);
        let mut next = driver::now();
        let mut was_running = self.mode != NetworkMode::Offline;
        let interrupt = if self.config.stop_on_interrupt { interrupt_flag() } else { None };
        loop {
            if interrupt.is_some_and(|flag| flag.load(Ordering::Relaxed)) {
                info!("interrupted: stopping");
                self.stop();
                return Ok(());
            }
            self.tick(driver::now())?;
            let running = self.mode != NetworkMode::Offline;
            if !frame(self) || (was_running && !running) {
                return Ok(());
            }
            was_running = running;
            next += period;
            let now = driver::now();
            if next > now {
                // The transport may wake early (a datagram came) or not block at all (the
                // in-memory one): the rest of the period is slept, so ticks keep their rate.
                self.wait(next - now)?;
                let now = driver::now();
                if next > now {
                    driver::sleep(next - now);
                }
            } else {
                // Late: do not try to catch up with a burst of ticks.
                next = now;
            }
        }
    }

    /// Where the server or host listens (`None` when not serving, or on a transport with no
    /// address).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Advertises the running server or host on the LAN (UNET's
    /// `NetworkDiscovery.StartAsServer`): a [`LanAdvertiser`](sturnus_discovery::LanAdvertiser)
    /// on the default discovery port ([`DEFAULT_PORT`](sturnus_discovery::DEFAULT_PORT), every
    /// interface, IPv4 and IPv6) answers players' searches for `ad`'s game and version inside
    /// [`tick`](Self::tick), until [`stop`](Self::stop) (or
    /// [`stop_advertising`](Self::stop_advertising)). An advertisement whose game port is 0
    /// gets the port the server listens on. Advertising again replaces the advertiser.
    ///
    /// # Errors
    /// [`ManagerError::NotServing`] unless the manager is a server or a host;
    /// [`ManagerError::Discovery`] if the port cannot be bound, or the game port is 0 and the
    /// server listens on no address.
    #[cfg(feature = "discovery")]
    pub fn advertise_on_lan(
        &mut self,
        ad: sturnus_discovery::Advertisement,
    ) -> Result<(), ManagerError> {
        self.check_serving()?;
        let ad = self.with_game_port(ad)?;
        let advertiser =
            sturnus_discovery::LanAdvertiser::bind(sturnus_discovery::DEFAULT_PORT, ad)
                .map_err(ManagerError::Discovery)?;
        self.advertiser = Some(advertiser);
        Ok(())
    }

    /// [`advertise_on_lan`](Self::advertise_on_lan) with an advertiser the game bound itself
    /// (another discovery port, one interface); a game port of 0 in its advertisement is
    /// filled in the same way.
    ///
    /// # Errors
    /// As [`advertise_on_lan`](Self::advertise_on_lan), but for binding.
    #[cfg(feature = "discovery")]
    pub fn advertise_on_lan_with(
        &mut self,
        mut advertiser: sturnus_discovery::LanAdvertiser,
    ) -> Result<(), ManagerError> {
        self.check_serving()?;
        let ad = advertiser.responder_mut().advertisement_mut();
        *ad = self.with_game_port(ad.clone())?;
        self.advertiser = Some(advertiser);
        Ok(())
    }

    /// The LAN advertiser, while advertising (to change the info, say the player count, with
    /// `responder_mut().advertisement_mut().set_info(..)`).
    #[cfg(feature = "discovery")]
    pub fn lan_advertiser(&mut self) -> Option<&mut sturnus_discovery::LanAdvertiser> {
        self.advertiser.as_mut()
    }

    /// Stops answering LAN searches (the server goes on); [`stop`](Self::stop) does it too.
    #[cfg(feature = "discovery")]
    pub fn stop_advertising(&mut self) {
        self.advertiser = None;
    }

    /// `ad` with the server's port if its game port is 0.
    #[cfg(feature = "discovery")]
    fn with_game_port(
        &self,
        mut ad: sturnus_discovery::Advertisement,
    ) -> Result<sturnus_discovery::Advertisement, ManagerError> {
        if ad.port() == 0 {
            let port = self.local_addr.map_or(0, |addr| addr.port());
            if port == 0 {
                return Err(ManagerError::Discovery(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "the advertisement has no game port and the server listens on none",
                )));
            }
            ad.set_port(port);
        }
        Ok(ad)
    }

    /// Answers the LAN searches waiting; an advertiser whose socket failed is dropped (said
    /// at `warn`): the game goes on, undiscoverable.
    #[cfg(feature = "discovery")]
    fn answer_lan_searches(&mut self) {
        if let Some(advertiser) = &mut self.advertiser {
            if let Err(err) = advertiser.poll() {
                warn!(%err, "LAN discovery failed: the game is no longer advertised");
                self.advertiser = None;
            }
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ManagerEvent> {
        self.events.pop_front()
    }

    /// The server's object manager, when serving.
    pub fn server(&mut self) -> Option<&mut ServerObjectManager> {
        self.server.as_mut()
    }

    /// The client's object manager, when a client.
    pub fn client(&mut self) -> Option<&mut ClientObjectManager> {
        self.client.as_mut()
    }

    /// The server's object manager, when serving, read-only (for status views such as the
    /// [`Hud`](crate::hud::Hud)).
    pub fn server_ref(&self) -> Option<&ServerObjectManager> {
        self.server.as_ref()
    }

    /// The client's object manager, when a client, read-only.
    pub fn client_ref(&self) -> Option<&ClientObjectManager> {
        self.client.as_ref()
    }

    /// The host's own player, in host mode (set when [`start_host`](Self::start_host)
    /// returns).
    pub fn host_player(&self) -> Option<PlayerId> {
        self.server.as_ref().and_then(ServerObjectManager::host_player)
    }

    /// Makes `object` the player's object (UNET's `ReplacePlayerForConnection`: after the game
    /// spawns it a new one, say), or makes it have none: [`player_object`](Self::player_object)
    /// follows, and a scene change keeps the new object. A player's object is also its point
    /// of view ([`ServerObjectManager::set_player_focus`]): with a
    /// [`NetworkTransform`](sturnus_object::NetworkTransform), interest and transform priority
    /// follow it. Its ownership is the game's
    /// (`server().set_owner`); a client's [`local_player_id`](Self::local_player_id) is the
    /// object of the player prefab it owns. A player or object the server does not have is an
    /// error.
    pub fn set_player_object(
        &mut self,
        player: PlayerId,
        object: Option<NetId>,
    ) -> Result<(), ManagerError> {
        let server = self.server.as_ref().ok_or(ManagerError::NotServing(self.mode))?;
        if server.server().player_stats(player).is_none() {
            return Err(MessageError::UnknownPlayer(player).into());
        }
        match object {
            Some(object) => {
                self.server_object(object)?;
                self.player_objects.insert(player, object);
            }
            None => {
                self.player_objects.remove(&player);
            }
        }
        if let Some(server) = self.server.as_mut() {
            server.set_player_focus(player, object);
        }
        Ok(())
    }

    /// The object spawned for a player (on the server).
    pub fn player_object(&self, player: PlayerId) -> Option<NetId> {
        self.player_objects.get(&player).copied()
    }

    /// Keeps every `T` received for polling, on every side this manager runs, now and after
    /// each start: [`poll_from_server`](Self::poll_from_server) on a client (and a host's own
    /// player), [`poll_from_clients`](Self::poll_from_clients) on a server. An id that
    /// collides with another registered type's is an error (here if running, else at start).
    pub fn register_message<T: Message>(&mut self) -> Result<(), ManagerError> {
        let queues: Queues =
            (|server| server.register_queue::<T>(), |client| client.register_queue::<T>());
        if let Some(server) = &mut self.server {
            (queues.0)(server.server_mut())?;
            if let Some(host_client) = server.host_client() {
                (queues.1)(host_client)?;
            }
        }
        if let Some(client) = &mut self.client {
            (queues.1)(client.client_mut())?;
        }
        self.queues.push(queues);
        Ok(())
    }

    /// The next `T` the server sent this client (or the host's own player), if `T` was
    /// [registered](Self::register_message).
    pub fn poll_from_server<T: Message>(&mut self) -> Option<T> {
        if let Some(client) = &mut self.client {
            return client.client_mut().poll_message::<T>();
        }
        self.server.as_mut()?.host_client()?.poll_message::<T>()
    }

    /// The next `T` a player sent the server, with the player, if `T` was
    /// [registered](Self::register_message).
    pub fn poll_from_clients<T: Message>(&mut self) -> Option<(PlayerId, T)> {
        self.server.as_mut()?.server_mut().poll_message::<T>()
    }

    /// Sends `msg` to every authenticated player (the host's own too); returns how many.
    pub fn broadcast<T: Message>(&mut self, msg: &T) -> Result<usize, ManagerError> {
        let mode = self.mode;
        let server = self.server.as_mut().ok_or(ManagerError::NotServing(mode))?;
        Ok(server.server_mut().broadcast(msg)?)
    }

    /// Sends `msg` to the server, from a client or from the host's own player.
    pub fn send_to_server<T: Message>(&mut self, msg: &T) -> Result<(), ManagerError> {
        if let Some(client) = &mut self.client {
            return Ok(client.client_mut().send(msg)?);
        }
        let mode = self.mode;
        let client = self.server.as_mut().and_then(ServerObjectManager::host_client);
        Ok(client.ok_or(ManagerError::NoLocalPlayer(mode))?.send(msg)?)
    }

    /// This game's own player object (Mirage's `localPlayer`): on a client, the object of the
    /// player prefab it owns; on a host, its own player's.
    pub fn local_player_id(&self) -> Option<NetId> {
        if let Some(client) = &self.client {
            let prefab = self.player_prefab.as_ref().map(|(prefab, _)| *prefab);
            return client
                .objects()
                .filter(|id| client.is_owned(*id))
                .find(|id| prefab.is_none() || client.prefab(*id) == prefab);
        }
        self.player_object(self.host_player()?)
    }

    /// A handle to the behaviour `B` of this game's own player object
    /// ([`local_player_id`](Self::local_player_id)), to send its commands:
    /// `game.local_player::<Avatar>()?.walk(&mut game, 1, 0)`.
    pub fn local_player<B: NetworkBehaviour>(&self) -> Option<Obj<B>> {
        self.handle(self.local_player_id()?)
    }

    /// The objects this game sees: the client's copies, or the server's objects.
    pub fn objects(&self) -> impl Iterator<Item = NetId> + '_ {
        let client = self.client.iter().flat_map(ClientObjectManager::objects);
        client.chain(self.server.iter().flat_map(ServerObjectManager::objects))
    }

    /// An object's first behaviour of type `B`: the client's copy, or the server's.
    pub fn get<B: NetworkBehaviour>(&self, id: NetId) -> Option<&B> {
        match (&self.client, &self.server) {
            (Some(client), _) => client.get(id),
            (None, Some(server)) => server.get(id),
            (None, None) => None,
        }
    }

    /// A handle to an object's behaviour of type `B`, to send its commands through this
    /// manager (`avatar.walk(&mut manager, …)`).
    pub fn handle<B: NetworkBehaviour>(&self, id: NetId) -> Option<Obj<B>> {
        match (&self.client, &self.server) {
            (Some(client), _) => client.handle(id),
            (None, Some(server)) => server.handle(id),
            (None, None) => None,
        }
    }

    #[cfg(feature = "discovery")]
    fn check_serving(&self) -> Result<(), ManagerError> {
        match self.mode {
            NetworkMode::Server | NetworkMode::Host => Ok(()),
            mode => Err(ManagerError::NotServing(mode)),
        }
    }

    fn check_offline(&self) -> Result<(), ManagerError> {
        match self.mode {
            NetworkMode::Offline => Ok(()),
            mode => Err(ManagerError::AlreadyStarted(mode)),
        }
    }

    /// The manager's clock: the latest tick's time, or the real clock before the first.
    fn clock(&mut self) -> Instant {
        *self.now.get_or_insert_with(driver::now)
    }

    fn start_serving(
        &mut self,
        addr: SocketAddr,
        mode: NetworkMode,
    ) -> Result<Option<SocketAddr>, ManagerError> {
        self.check_offline()?;
        let now = self.clock();
        let events_before = self.events.len();
        let mut server = NetworkServer::new(self.config.server.clone())?;
        if let Some(authenticator) = &self.authenticator {
            authenticator(&mut server);
        }
        server.register_queue::<SceneReadyMsg>()?;
        for (on_server, _) in &self.queues {
            on_server(&mut server)?;
        }
        let mut server = ServerObjectManager::with_config(server, self.objects_config())?;
        self.channel = Some(self.config.objects.validate(server.server().channels())?);
        let transport = self.open(false, addr)?;
        let local = server.start(now, transport)?;
        self.server = Some(server);
        self.mode = mode;
        self.local_addr = local;
        self.events.push_back(ManagerEvent::Started(mode, local));
        if mode == NetworkMode::Host {
            if let Err(err) = self.join_own_player(now) {
                // Not half started: offline, as every failed start leaves it.
                self.stop();
                self.events.truncate(events_before);
                return Err(err);
            }
        }
        Ok(local)
    }

    /// The host's own player joins in memory: a few updates at this instant let it
    /// authenticate, and spawn its object, before `start_host` returns.
    fn join_own_player(&mut self, now: Instant) -> Result<(), ManagerError> {
        let server = self.server.as_mut().expect("started just before");
        server.join_host(now)?;
        let host_client = server.host_client().expect("joined just above");
        if let Some(credentials) = &self.credentials {
            credentials(host_client)?;
        }
        for (_, on_client) in &self.queues {
            on_client(host_client)?;
        }
        for _ in 0..4 {
            self.tick(now)?;
        }
        Ok(())
    }

    fn open(&self, client: bool, addr: SocketAddr) -> Result<Box<dyn Transport>, ManagerError> {
        let endpoint = EndpointConfig {
            channels: self.config.server.channels.kinds().to_vec(),
            accept_connections: !client,
            ..self.config.endpoint.clone()
        };
        let factory = UdpSocketFactory::default();
        let socket = || {
            if client { factory.client_socket(addr) } else { factory.server_socket(addr) }
        };
        Ok(match &self.config.transport {
            TransportChoice::Udp => Box::new(Host::new(endpoint, socket().map_err(from_socket)?)?),
            TransportChoice::ThreadedUdp => {
                Box::new(ThreadedHost::new(endpoint, socket().map_err(from_socket)?)?)
            }
            TransportChoice::Custom(factory) => {
                let side = if client { Side::Client } else { Side::Server };
                (factory.0)(side, addr, &endpoint)?
            }
            #[cfg(feature = "secure")]
            TransportChoice::Netcode(settings) => open_netcode(settings, client, addr, &endpoint)?,
            TransportChoice::Memory(network) => {
                let kinds = endpoint.channels.clone();
                if client {
                    Box::new(network.endpoint(kinds))
                } else {
                    let bound = network.bind(addr, kinds);
                    Box::new(bound.map_err(|e| ManagerError::Transport(e.into()))?)
                }
            }
        })
    }

    fn register_prefabs(&self, client: &mut ClientObjectManager) {
        for (prefab, factory) in &self.prefabs {
            let factory = Arc::clone(factory);
            client.register_prefab(*prefab, move || factory());
        }
    }

    fn choose_start(&mut self) -> Option<StartPosition> {
        if self.starts.is_empty() {
            return None;
        }
        let index = match self.strategy {
            StartStrategy::RoundRobin => {
                let index = self.next_start % self.starts.len();
                self.next_start = self.next_start.wrapping_add(1);
                index
            }
            StartStrategy::Random => {
                // xorshift64: spreads players out; nothing depends on it being unpredictable.
                self.random ^= self.random << 13;
                self.random ^= self.random >> 7;
                self.random ^= self.random << 17;
                usize::try_from(self.random % self.starts.len() as u64).unwrap_or(0)
            }
        };
        self.starts.get(index).copied()
    }

    fn objects_config(&self) -> ObjectConfig {
        // Players are made ready by the scene flow, not by themselves.
        let mut config = self.config.objects.clone();
        config.auto_ready = false;
        config
    }

    /// A player authenticated: its object is spawned (a failure is an event, and the player
    /// plays on without one), and it is told the current scene, so it reports ready and gets
    /// the objects. Nothing here stops the server for one player's sake.
    fn player_joined(&mut self, player: PlayerId) {
        let server = self.server.as_mut().expect("players join only a running server");
        if server.server().player_stats(player).is_none() {
            return; // it left in the same update
        }
        if let Err(err) = self.add_player(player) {
            warn!(%player, %err, "the player's object could not be spawned");
            let error = err.to_string();
            self.events.push_back(ManagerEvent::AddPlayerFailed { player, error });
        }
        let server = self.server.as_mut().expect("players join only a running server");
        if server.host_player() == Some(player) {
            return; // ready already, sharing the server's objects
        }
        let message = SceneMsg { change: self.scene_change, name: self.scene.clone() };
        tell_scene(server, player, &message, self.channel.expect("set when serving"));
    }

    fn add_player(&mut self, player: PlayerId) -> Result<(), ObjectError> {
        let start = self.choose_start();
        let spawn = PlayerSpawn { player, start };
        let server = self.server.as_mut().expect("players join only a running server");
        let object = if let Some(hook) = &mut self.add_player {
            hook(server, &spawn)?
        } else if let Some((prefab, factory)) = &mut self.player_prefab {
            Some(server.spawn(*prefab, factory(&spawn), Some(player))?)
        } else {
            None
        };
        let Some(object) = object else { return Ok(()) };
        self.player_objects.insert(player, object);
        // Its point of view: interest and transform priority follow its object.
        server.set_player_focus(player, Some(object));
        self.events.push_back(ManagerEvent::ServerAddPlayer { player, object });
        Ok(())
    }

    fn wait(&mut self, timeout: Duration) -> Result<(), ManagerError> {
        if let Some(server) = &mut self.server {
            server.server_mut().wait(timeout)?;
        } else if let Some(client) = &mut self.client {
            client.client_mut().wait(timeout)?;
        } else {
            driver::sleep(timeout);
        }
        Ok(())
    }
}

/// The process's Ctrl-C / `SIGTERM` flag, which [`NetworkManager::run`] watches: set by the
/// first signal and left set (the process is ending); a second signal while it is set ends the
/// process with status 130, in case leaving gracefully hangs. The first call installs the
/// handlers. A loop of your own (a game on the message layer, say) checks it each frame and
/// leaves gracefully. `None` without the `signals` feature, or if the handlers could not be
/// installed (said once, at `warn`).
#[cfg(feature = "signals")]
pub fn interrupt_flag() -> Option<&'static AtomicBool> {
    static FLAG: std::sync::OnceLock<Option<Arc<AtomicBool>>> = std::sync::OnceLock::new();
    let flag = FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let installed = [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM]
            .into_iter()
            .try_for_each(|signal| {
                // The shutdown first: it acts only on a signal that finds the flag set already.
                signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(&flag))?;
                signal_hook::flag::register(signal, Arc::clone(&flag)).map(drop)
            });
        match installed {
            Ok(()) => Some(flag),
            Err(err) => {
                tracing::warn!(%err, "Ctrl-C will not be handled gracefully");
                None
            }
        }
    });
    flag.as_deref()
}

/// Without the `signals` feature: no flag (see the feature's version).
#[cfg(not(feature = "signals"))]
pub fn interrupt_flag() -> Option<&'static AtomicBool> {
    None
}

/// Tells `player` the scene; one that cannot be told would wait for a scene forever, so it is
/// kicked instead.
fn tell_scene(
    server: &mut ServerObjectManager,
    player: PlayerId,
    message: &SceneMsg,
    channel: ChannelId,
) {
    if let Err(err) = server.server_mut().send_on(player, message, channel) {
        warn!(%player, %err, "a player could not be told the scene");
        server.server_mut().kick(player, "could not be told the scene");
    }
}

fn from_socket(err: sturnus_socket::SocketError) -> ManagerError {
    ManagerError::Transport(err.into())
}

/// Dropping a running manager stops it: its peers are told at once, instead of timing out.
impl Drop for NetworkManager {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Commands go through the client, or, on a host, come from its own player; a dedicated
/// server has no player to send them ([`ObjectError::NoHostPlayer`]) and an offline manager
/// none either.
impl CommandSink for NetworkManager {
    fn send_command<A: Serialize>(&mut self, call: RpcCall, args: &A) -> Result<(), ObjectError> {
        match (&mut self.client, &mut self.server) {
            (Some(client), _) => client.send_command(call, args),
            (None, Some(server)) => server.send_command(call, args),
            (None, None) => Err(MessageError::NotAuthenticated.into()),
        }
    }
}
