//! The [`NetworkManager`]: UNET's NetworkManager (and Mirage's CharacterSpawner) over the
//! object layer — start a server, a client or a host, spawn each player's object, tick.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sturnus_message::{
    ClientConfig, ClientEvent, DisconnectReason, MessageError, NetworkClient, NetworkServer,
    PlayerId, ServerConfig, ServerEvent, driver,
};
use sturnus_object::{
    Behaviours, ClientObjectManager, IntoBehaviours, NetId, ObjectConfig, ObjectError, PrefabId,
    ServerObjectManager,
};
use sturnus_socket::{SocketFactory, UdpSocketFactory};
use sturnus_transport::{EndpointConfig, Host, MemoryNetwork, ThreadedHost, Transport};

/// Which transport the manager opens.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum TransportChoice {
    /// UDP on the caller's thread ([`Host`]).
    #[default]
    Udp,
    /// UDP on a background I/O thread ([`ThreadedHost`]).
    ThreadedUdp,
    /// An in-process network (tests, single-process games): servers bind the address they are
    /// given on it, clients connect over it.
    Memory(MemoryNetwork),
}

/// Settings of a [`NetworkManager`].
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// The server's settings (its channel layout is the client's too).
    pub server: ServerConfig,
    /// The client's settings.
    pub client: ClientConfig,
    /// The object managers' settings.
    pub objects: ObjectConfig,
    /// The transport opened by `start_*`.
    pub transport: TransportChoice,
    /// The transport's settings beyond the channel layout (the layout's channels are always
    /// used).
    pub endpoint: EndpointConfig,
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
    /// A player left the server.
    ServerDisconnect(PlayerId, DisconnectReason),
    /// This client was accepted by the server.
    ClientConnect,
    /// This client's connection ended.
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
}

type Factory = Arc<dyn Fn() -> Behaviours + Send + Sync>;
type PlayerFactory = Box<dyn FnMut(&PlayerSpawn) -> Behaviours + Send>;

/// The front door for game code (UNET's `NetworkManager`): start a dedicated server, a client
/// or a host with one call, and each authenticated player gets an object of the player prefab,
/// owned by it, at a start position.
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
    starts: Vec<StartPosition>,
    strategy: StartStrategy,
    next_start: usize,
    random: u64,
    player_objects: HashMap<PlayerId, NetId>,
    events: VecDeque<ManagerEvent>,
    now: Option<Instant>,
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
            starts: Vec::new(),
            strategy: StartStrategy::default(),
            next_start: 0,
            random: 0x9E37_79B9_7F4A_7C15,
            player_objects: HashMap::new(),
            events: VecDeque::new(),
            now: None,
        }
    }

    /// Where the manager is.
    pub fn mode(&self) -> NetworkMode {
        self.mode
    }

    /// Registers a prefab clients build objects of (the player prefab is registered by
    /// [`register_player_prefab`](Self::register_player_prefab)). Takes effect for clients
    /// started afterwards.
    pub fn register_prefab<I: IntoBehaviours>(
        &mut self,
        prefab: PrefabId,
        factory: impl Fn() -> I + Send + Sync + 'static,
    ) {
        self.prefabs.push((prefab, Arc::new(move || factory().into_behaviours())));
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
        let client = NetworkClient::new(self.config.client.clone())?;
        let mut client = ClientObjectManager::with_config(client, self.config.objects.clone())?;
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
        if self.mode != NetworkMode::Offline {
            self.events.push_back(ManagerEvent::Stopped(self.mode));
        }
        self.mode = NetworkMode::Offline;
    }

    /// Updates everything as of `now` (for engines that own the loop): receives, spawns the
    /// objects of players who joined, syncs, sends. Then drain [`poll_event`](Self::poll_event).
    pub fn tick(&mut self, now: Instant) -> Result<(), ManagerError> {
        self.now = Some(self.now.map_or(now, |last| last.max(now)));
        if let Some(server) = &mut self.server {
            server.update(now)?;
            let mut joined = Vec::new();
            while let Some(event) = server.poll_event() {
                match event {
                    ServerEvent::Connected(player) => {
                        self.events.push_back(ManagerEvent::ServerConnect(player));
                    }
                    ServerEvent::Authenticated(player) => joined.push(player),
                    ServerEvent::Disconnected(player, reason) => {
                        self.player_objects.remove(&player);
                        self.events.push_back(ManagerEvent::ServerDisconnect(player, reason));
                    }
                    _ => {}
                }
            }
            for player in joined {
                self.add_player(player)?;
            }
        }
        if let Some(client) = &mut self.client {
            client.update(now)?;
            while let Some(event) = client.poll_event() {
                match event {
                    ClientEvent::Authenticated => {
                        self.events.push_back(ManagerEvent::ClientConnect)
                    }
                    ClientEvent::Disconnected(reason) => {
                        self.events.push_back(ManagerEvent::ClientDisconnect(reason));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Runs the game loop at `hz` ticks a second until `frame` returns `false`: each tick
    /// updates the network, then calls `frame` with the manager, then sleeps until the next
    /// tick (for standalone servers and simple games).
    pub fn run(
        &mut self,
        hz: u32,
        mut frame: impl FnMut(&mut NetworkManager) -> bool,
    ) -> Result<(), ManagerError> {
        let period = Duration::from_secs(1) / hz.max(1);
        let mut next = driver::now();
        loop {
            self.tick(driver::now())?;
            if !frame(self) {
                return Ok(());
            }
            next += period;
            let now = driver::now();
            if next > now {
                self.wait(next - now)?;
            } else {
                // Late: do not try to catch up with a burst of ticks.
                next = now;
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

    /// The host's own player, in host mode (set when [`start_host`](Self::start_host)
    /// returns).
    pub fn host_player(&self) -> Option<PlayerId> {
        self.server.as_ref().and_then(ServerObjectManager::host_player)
    }

    /// The object spawned for a player (on the server).
    pub fn player_object(&self, player: PlayerId) -> Option<NetId> {
        self.player_objects.get(&player).copied()
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
        let server = NetworkServer::new(self.config.server.clone())?;
        let mut server = ServerObjectManager::with_config(server, self.config.objects.clone())?;
        let transport = self.open(false, addr)?;
        let local = server.start(now, transport)?;
        self.server = Some(server);
        self.mode = mode;
        self.events.push_back(ManagerEvent::Started(mode, local));
        if mode == NetworkMode::Host {
            let server = self.server.as_mut().expect("set just above");
            server.join_host(now)?;
            // The local client authenticates in memory: a few updates at this instant let it
            // join, and spawn its player, before this returns.
            for _ in 0..4 {
                self.tick(now)?;
            }
        }
        Ok(local)
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

    fn add_player(&mut self, player: PlayerId) -> Result<(), ManagerError> {
        let start = self.choose_start();
        let Some((prefab, factory)) = &mut self.player_prefab else { return Ok(()) };
        let behaviours = factory(&PlayerSpawn { player, start });
        let prefab = *prefab;
        let server = self.server.as_mut().expect("players join only a running server");
        let object = server.spawn(prefab, behaviours, Some(player))?;
        self.player_objects.insert(player, object);
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

fn from_socket(err: sturnus_socket::SocketError) -> ManagerError {
    ManagerError::Transport(err.into())
}

// Read-only views, for status displays (the HUD) that hold the manager by shared reference.
impl NetworkManager {
    /// The server's object manager, when serving, read-only (see [`server`](Self::server)).
    pub fn server_ref(&self) -> Option<&ServerObjectManager> {
        self.server.as_ref()
    }

    /// The client's object manager, when a client, read-only (see [`client`](Self::client)).
    pub fn client_ref(&self) -> Option<&ClientObjectManager> {
        self.client.as_ref()
    }
}
