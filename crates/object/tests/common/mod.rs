//! A server object manager and its clients over one of the virtual-time paths, stepped together
//! frame by frame: host mode's in-memory pipe (every client a local client of the server),
//! remote clients over a [`MemoryNetwork`], or remote clients over the testkit's lossy
//! simulated network ([`Path::Sim`]: a sans-IO endpoint per peer on netem links). Time is
//! virtual: each step moves `now` on by [`FRAME`] (on the simulated network, to its next
//! delivery or timer if that comes sooner); nothing sleeps or reads the clock but the origin.
//!
//! Transports come from [`Game::server_transport`] and [`Game::client_transport`], and the clock
//! moves in [`Game::advance`] only.
#![allow(dead_code, reason = "each test file uses part of the harness")]

pub(crate) mod cubes;
pub(crate) mod tank;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sturnus_message::{ClientConfig, NetworkClient, NetworkServer, PlayerId, ServerConfig, driver};
use sturnus_object::{
    ChannelId, ClientObjectManager, NetId, ObjectConfig, ServerObjectManager, wire,
};
use sturnus_testkit::SimNet;
use sturnus_transport::{EndpointConfig, MemoryNetwork, Transport};

/// The path between the server and its clients.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Path {
    /// No transport: clients are local clients of the server (full copies, over the message
    /// layer's in-memory pipe).
    Local,
    /// Remote clients over a [`MemoryNetwork`]: the transport path, lossless.
    Memory,
    /// Remote clients over the testkit's simulated network: `loss` each way, duplicates,
    /// reordering and jitter ([`lossy`]); `seed` seeds the links and the endpoints.
    Sim { seed: u64, loss: f64 },
}

impl Path {
    /// Whether the path may lose, duplicate or reorder datagrams.
    pub(crate) fn is_lossy(self) -> bool {
        matches!(self, Path::Sim { .. })
    }
}

/// The paths every scenario runs over: host mode, memory, and the lossy simulated network
/// with two seeds (10 % loss).
pub(crate) fn paths() -> Vec<Path> {
    vec![
        Path::Local,
        Path::Memory,
        Path::Sim { seed: 1, loss: 0.1 },
        Path::Sim { seed: 2, loss: 0.1 },
    ]
}

/// A lossy link: `loss`, duplicates, reordering and jitter (the testkit's).
pub(crate) use sturnus_testkit::lossy_link as lossy;

/// Transport settings for `channels` that keep lossy tests short: quick connection retries.
/// The layout's settings (which a server needs: they do not trust strangers) underneath.
fn endpoint_config(channels: &sturnus_message::ChannelLayout) -> EndpointConfig {
    EndpointConfig {
        connect_retry_interval: Duration::from_millis(40),
        // Fixed 40 ms repeats, 20 of them (the protocol's backoff and its 12 attempts are
        // tuned for real networks; these lossy simulations were tuned for this).
        connect_retry_max_interval: Duration::from_millis(40),
        connect_attempts: 20,
        initial_rtt: Duration::from_millis(20),
        ..channels.endpoint_config()
    }
}

/// Virtual time per frame.
pub(crate) const FRAME: Duration = Duration::from_millis(10);

/// Virtual time [`Game::run_until`] gives a condition: a hang guard far above what any
/// scenario needs.
const LIMIT: Duration = Duration::from_secs(60);

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
    Sim(SimNet),
}

/// Called at the end of every round, before the clock moves on: the virtual time of the round
/// (since the game began), the server, the clients.
pub(crate) type OnStep =
    Box<dyn FnMut(Duration, &mut ServerObjectManager, &mut [ClientObjectManager])>;

/// A server object manager and its clients.
pub(crate) struct Game {
    pub(crate) path: Path,
    pub(crate) server: ServerObjectManager,
    pub(crate) clients: Vec<ClientObjectManager>,
    /// Each client's player on the server, once known.
    pub(crate) players: Vec<Option<PlayerId>>,
    /// The virtual time of the next frame.
    pub(crate) now: Instant,
    /// Where the clock started.
    start: Instant,
    /// Runs after every round (a test that records everything the round produced).
    pub(crate) on_step: Option<OnStep>,
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
        Self::with_all(path, config, objects_config())
    }

    /// A started server on `path` whose object manager has `objects`.
    pub(crate) fn with_configs(path: Path, objects: ObjectConfig) -> Game {
        Self::with_all(path, ServerConfig::default(), objects)
    }

    fn with_all(path: Path, config: ServerConfig, objects: ObjectConfig) -> Game {
        let server = NetworkServer::new(config).unwrap();
        let server = ServerObjectManager::with_config(server, objects).unwrap();
        let net = match path {
            Path::Local => Net::None,
            Path::Memory => Net::Memory(MemoryNetwork::new()),
            Path::Sim { seed, loss } => Net::Sim(SimNet::new(lossy(loss), seed)),
        };
        // The origin of the virtual clock: only differences from it matter (the simulated
        // network has its own).
        let now = match &net {
            Net::Sim(sim) => sim.now(),
            _ => driver::now(),
        };
        let mut game = Game {
            path,
            server,
            clients: Vec::new(),
            players: Vec::new(),
            now,
            start: now,
            on_step: None,
            addr: None,
            net,
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
            // The net's first endpoint: 10.0.0.1.
            Net::Sim(sim) => {
                Some(Box::new(sim.endpoint(endpoint_config(self.server.server().channels()))))
            }
        }
    }

    /// A client transport on this game's network.
    fn client_transport(&self) -> Option<Box<dyn Transport>> {
        let kinds = ClientConfig::default().channels.kinds().to_vec();
        match &self.net {
            Net::None => None,
            Net::Memory(network) => Some(Box::new(network.endpoint(kinds))),
            Net::Sim(sim) => {
                let config = EndpointConfig {
                    accept_connections: false,
                    ..endpoint_config(&ClientConfig::default().channels)
                };
                Some(Box::new(sim.endpoint(config)))
            }
        }
    }

    /// The simulated network ([`Path::Sim`] only).
    pub(crate) fn sim(&self) -> &SimNet {
        match &self.net {
            Net::Sim(sim) => sim,
            _ => panic!("{:?} has no simulated network", self.path),
        }
    }

    /// Moves the clock on by a frame; on the simulated network, to its next delivery or timer
    /// if that comes sooner.
    fn advance(&mut self) {
        let frame = self.now + FRAME;
        match &self.net {
            Net::Sim(sim) => {
                // A deadline not after now was serviced by this round (or is one nobody
                // services): the frame bounds it.
                let next = sim
                    .next_deadline()
                    .filter(|&at| at > self.now)
                    .map_or(frame, |at| at.min(frame));
                sim.advance_to(next);
                self.now = sim.now();
            }
            _ => self.now = frame,
        }
    }

    /// Adds a client (with `setup` applied: prefabs, scene objects) and connects it; returns its
    /// index.
    pub(crate) fn add_client(&mut self, setup: impl FnOnce(&mut ClientObjectManager)) -> usize {
        let client = match self.path {
            Path::Local => self.server.server_mut().connect_local(self.now).unwrap(),
            Path::Memory | Path::Sim { .. } => NetworkClient::new(ClientConfig::default()).unwrap(),
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

    /// Virtual time since the game began (on the simulated network, the net's own count).
    pub(crate) fn elapsed(&self) -> Duration {
        match &self.net {
            Net::Sim(sim) => sim.elapsed(),
            _ => self.now - self.start,
        }
    }

    /// One round: the server, then each client, updates (then [`on_step`](Self::on_step) runs);
    /// then time moves on.
    pub(crate) fn step(&mut self) {
        self.server.update(self.now).unwrap();
        for client in &mut self.clients {
            client.update(self.now).unwrap();
        }
        let elapsed = self.elapsed();
        if let Some(on_step) = &mut self.on_step {
            on_step(elapsed, &mut self.server, &mut self.clients);
        }
        self.advance();
    }

    /// Steps until `done` holds; false if it still does not after [`LIMIT`] of virtual time.
    pub(crate) fn run_until(&mut self, mut done: impl FnMut(&mut Game) -> bool) -> bool {
        let end = self.now + LIMIT;
        while self.now < end {
            self.step();
            if done(self) {
                return true;
            }
        }
        false
    }

    /// Steps until `done` holds, at most `rounds` times; returns whether it holds.
    pub(crate) fn run_for_until(
        &mut self,
        rounds: usize,
        mut done: impl FnMut(&mut Game) -> bool,
    ) -> bool {
        for _ in 0..rounds {
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
