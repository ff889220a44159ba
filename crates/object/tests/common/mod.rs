//! A server object manager and its clients over one of the virtual-time paths, stepped together
//! frame by frame: host mode's in-memory pipe (every client a local client of the server), or
//! remote clients over a [`MemoryNetwork`]. Time is virtual: each frame moves `now` on by
//! [`FRAME`]; nothing sleeps or reads the clock but the origin.
//!
//! A lossy path (the testkit's `SimNet`, a sans-IO endpoint per peer on netem links) slots in
//! as another [`Path`] and [`Net`] variant: its transports come from [`Game::server_transport`]
//! and [`Game::client_transport`], its clock starts at the net's and moves in [`Game::advance`]
//! (`net.advance_to(now)`), and the scenarios run over it unchanged.
#![allow(dead_code, reason = "each test file uses part of the harness")]

pub(crate) mod tank;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sturnus_message::{ClientConfig, NetworkClient, NetworkServer, PlayerId, ServerConfig, driver};
use sturnus_object::{
    ChannelId, ClientObjectManager, NetId, ObjectConfig, ServerObjectManager, wire,
};
use sturnus_transport::{MemoryNetwork, Transport};

/// The path between the server and its clients.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Path {
    /// No transport: clients are local clients of the server (full copies, over the message
    /// layer's in-memory pipe).
    Local,
    /// Remote clients over a [`MemoryNetwork`]: the transport path, lossless.
    Memory,
}

/// The paths every scenario runs over.
pub(crate) fn paths() -> Vec<Path> {
    vec![Path::Local, Path::Memory]
}

/// Virtual time per frame.
pub(crate) const FRAME: Duration = Duration::from_millis(10);

/// Frames [`Game::run_until`] runs at most: a hang guard (a minute of virtual time) far above
/// what any scenario needs.
const MAX_FRAMES: usize = 6000;

/// The server's address on a [`MemoryNetwork`].
const SERVER_ADDR: &str = "10.0.0.1:7777";

/// Object settings for tests: changes go out at every update.
pub(crate) fn objects_config() -> ObjectConfig {
    let mut config = ObjectConfig::default();
    config.sync_interval = Duration::ZERO;
    config
}

/// The channel objects go on with the default layout (what a forged object message must use).
pub(crate) fn object_channel() -> ChannelId {
    objects_config().validate(&ServerConfig::default().channels).expect("the default is valid")
}

/// Sends `header` then `tail` to the server as a message of type `H` on the objects' channel,
/// as a hostile client would forge it.
pub(crate) fn forge<H: sturnus_message::Message + serde::Serialize>(
    client: &mut ClientObjectManager,
    header: &H,
    tail: &[u8],
) -> Result<(), sturnus_message::MessageError> {
    client.client_mut().send_with::<H>(object_channel(), |out| {
        wire::put(out, header)?;
        out.extend_from_slice(tail);
        Ok(())
    })
}

/// The network under a path, if it has one.
enum Net {
    None,
    Memory(MemoryNetwork),
}

/// A server object manager and its clients.
pub(crate) struct Game {
    pub(crate) path: Path,
    pub(crate) server: ServerObjectManager,
    pub(crate) clients: Vec<ClientObjectManager>,
    /// Each client's player on the server, once known.
    pub(crate) players: Vec<Option<PlayerId>>,
    /// The virtual time of the next frame.
    pub(crate) now: Instant,
    addr: Option<SocketAddr>,
    net: Net,
}

impl Game {
    /// A started server on `path`.
    pub(crate) fn new(path: Path) -> Game {
        Self::with_server_config(path, ServerConfig::default())
    }

    /// A started server on `path` with `config`.
    pub(crate) fn with_server_config(path: Path, config: ServerConfig) -> Game {
        let server = NetworkServer::new(config).unwrap();
        let server = ServerObjectManager::with_config(server, objects_config()).unwrap();
        // The origin of the virtual clock: only differences from it matter.
        let now = driver::now();
        let mut game = Game {
            path,
            server,
            clients: Vec::new(),
            players: Vec::new(),
            now,
            addr: None,
            net: match path {
                Path::Local => Net::None,
                Path::Memory => Net::Memory(MemoryNetwork::new()),
            },
        };
        match game.server_transport() {
            None => game.server.server_mut().start_offline(now).unwrap(),
            Some(transport) => {
                game.addr = game.server.start(now, transport).unwrap();
                assert!(game.addr.is_some());
            }
        }
        game
    }

    /// The server's transport on this game's network (`None`: the path has none).
    fn server_transport(&self) -> Option<Box<dyn Transport>> {
        let kinds = self.server.server().channels().kinds().to_vec();
        match &self.net {
            Net::None => None,
            Net::Memory(network) => {
                Some(Box::new(network.bind(SERVER_ADDR.parse().unwrap(), kinds).unwrap()))
            }
        }
    }

    /// A client transport on this game's network.
    fn client_transport(&self) -> Option<Box<dyn Transport>> {
        let kinds = ClientConfig::default().channels.kinds().to_vec();
        match &self.net {
            Net::None => None,
            Net::Memory(network) => Some(Box::new(network.endpoint(kinds))),
        }
    }

    /// Moves the clock on by a frame.
    fn advance(&mut self) {
        self.now += FRAME;
    }

    /// Adds a client (with `setup` applied: prefabs, scene objects) and connects it; returns its
    /// index.
    pub(crate) fn add_client(&mut self, setup: impl FnOnce(&mut ClientObjectManager)) -> usize {
        let client = match self.path {
            Path::Local => self.server.server_mut().connect_local(self.now).unwrap(),
            Path::Memory => NetworkClient::new(ClientConfig::default()).unwrap(),
        };
        let mut client = ClientObjectManager::with_config(client, objects_config()).unwrap();
        setup(&mut client);
        if let (Some(transport), Some(addr)) = (self.client_transport(), self.addr) {
            client.connect(self.now, transport, addr).unwrap();
        }
        self.clients.push(client);
        self.players.push(None);
        self.clients.len() - 1
    }

    /// One frame: the server, then each client, updates; then time moves on by a frame.
    pub(crate) fn step(&mut self) {
        self.server.update(self.now).unwrap();
        for client in &mut self.clients {
            client.update(self.now).unwrap();
        }
        self.advance();
    }

    /// Steps until `done` holds; false if it still does not after [`MAX_FRAMES`] frames.
    pub(crate) fn run_until(&mut self, mut done: impl FnMut(&mut Game) -> bool) -> bool {
        for _ in 0..MAX_FRAMES {
            self.step();
            if done(self) {
                return true;
            }
        }
        false
    }

    /// Steps `rounds` times.
    pub(crate) fn run_for(&mut self, rounds: usize) {
        for _ in 0..rounds {
            self.step();
        }
    }

    /// Steps until every client is authenticated and ready on the server, and learns each
    /// one's player id.
    pub(crate) fn join_all(&mut self) {
        let ok = self.run_until(|g| {
            let server = g.server.server();
            g.clients.iter().all(|c| c.client().is_authenticated())
                && server.players().filter(|p| g.server.is_ready(*p)).count()
                    >= g.clients.len() + usize::from(g.server.host_player().is_some())
        });
        assert!(ok, "{:?}: clients did not join", self.path);
        // Remote clients are matched by address; local clients have none, and joined in index
        // order.
        let host = self.server.host_player();
        let mut ids: Vec<PlayerId> =
            self.server.server().players().filter(|p| Some(*p) != host).collect();
        ids.sort();
        let server = self.server.server_mut();
        let addresses: Vec<_> =
            ids.iter().map(|id| (*id, server.player(*id).and_then(|p| p.address()))).collect();
        for (i, client) in self.clients.iter().enumerate() {
            self.players[i] = match client.client().local_addr() {
                Some(mine) => addresses.iter().find(|(_, a)| *a == Some(mine)).map(|(id, _)| *id),
                None => Some(ids[i]),
            };
        }
    }

    /// A started server on `path` with `clients` joined clients that build tanks.
    pub(crate) fn tanks(path: Path, clients: usize) -> Game {
        let mut game = Game::new(path);
        for _ in 0..clients {
            game.add_client(|c| c.register_prefab(tank::TANK, tank::Tank::default));
        }
        game.join_all();
        game
    }

    /// Spawns a tank and steps until every client has it; returns its id.
    pub(crate) fn spawn_tank(&mut self, tank: tank::Tank, owner: Option<PlayerId>) -> NetId {
        let id = self.server.spawn(tank::TANK, tank, owner).unwrap();
        let seen = self.run_until(|g| g.clients.iter().all(|c| c.get::<tank::Tank>(id).is_some()));
        assert!(seen, "{:?}: {id} not seen by every client", self.path);
        id
    }

    /// Client `i`'s player.
    pub(crate) fn player(&self, i: usize) -> PlayerId {
        self.players[i].expect("join_all first")
    }
}
