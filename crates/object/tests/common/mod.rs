//! A server object manager and its clients over one of three paths, stepped together: the
//! loopback socket through a lossy netem link, real UDP, or in memory only (host mode with
//! local clients).
#![allow(dead_code, reason = "each test file uses part of the harness")]

pub(crate) mod tank;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sturnus_message::{
    ClientConfig, NetworkClient, NetworkServer, PlayerId, ServerConfig, default_transport,
};
use sturnus_netem::LinkConfig;
use sturnus_object::{ClientObjectManager, NetId, ObjectConfig, ServerObjectManager};
use sturnus_socket::{
    ConditionedSocket, LoopbackNetwork, LoopbackSocket, LoopbackSocketFactory, SocketError,
    SocketFactory, UdpSocketFactory,
};
use sturnus_transport::EndpointConfig;

/// The path between the server and its remote clients.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Path {
    /// The loopback socket, every datagram (both ways) through a lossy link.
    Netem { seed: u64, loss: f64 },
    /// UDP on 127.0.0.1.
    Udp,
    /// No transport: clients are local clients of the server (full copies, in memory).
    Memory,
}

/// The paths every scenario runs over: memory, UDP, and netem with `seeds` seeds.
pub(crate) fn paths(seeds: u64) -> Vec<Path> {
    let mut paths = vec![Path::Memory, Path::Udp];
    paths.extend((0..seeds).map(|seed| Path::Netem { seed, loss: 0.1 }));
    paths
}

fn transport() -> EndpointConfig {
    EndpointConfig {
        connect_retry_interval: Duration::from_millis(40),
        initial_rtt: Duration::from_millis(20),
        ..default_transport()
    }
}

/// Object settings for tests: changes go out at every update.
pub(crate) fn objects_config() -> ObjectConfig {
    let mut config = ObjectConfig::default();
    config.sync_interval = Duration::ZERO;
    config
}

#[derive(Debug)]
struct NetemFactory {
    inner: LoopbackSocketFactory,
    link: LinkConfig,
    seed: AtomicU64,
}

impl SocketFactory for NetemFactory {
    type Socket = ConditionedSocket<LoopbackSocket>;

    fn server_socket(&self, bind: SocketAddr) -> Result<Self::Socket, SocketError> {
        self.wrap(self.inner.server_socket(bind)?)
    }

    fn client_socket(&self, remote: SocketAddr) -> Result<Self::Socket, SocketError> {
        self.wrap(self.inner.client_socket(remote)?)
    }
}

impl NetemFactory {
    fn wrap(
        &self,
        socket: LoopbackSocket,
    ) -> Result<ConditionedSocket<LoopbackSocket>, SocketError> {
        let seed = self.seed.fetch_add(2, Ordering::Relaxed);
        let link = LinkConfig {
            latency: Duration::from_millis(2),
            jitter: Duration::from_millis(1),
            duplicate: 0.02,
            reorder: 0.05,
            reorder_delay: Duration::from_millis(3),
            ..self.link.clone()
        };
        ConditionedSocket::new(socket, link.clone(), seed)?.with_incoming(link, seed + 1)
    }
}

/// A server object manager and its clients.
pub(crate) struct Game {
    pub(crate) path: Path,
    pub(crate) server: ServerObjectManager,
    pub(crate) clients: Vec<ClientObjectManager>,
    /// Each client's player on the server, once known.
    pub(crate) players: Vec<Option<PlayerId>>,
    addr: Option<SocketAddr>,
    netem: Option<NetemFactory>,
}

impl Game {
    /// A started server on `path`.
    pub(crate) fn new(path: Path) -> Game {
        Self::with_server_config(
            path,
            ServerConfig { transport: transport(), ..Default::default() },
        )
    }

    /// A started server on `path` with `config`.
    pub(crate) fn with_server_config(path: Path, config: ServerConfig) -> Game {
        let server = NetworkServer::new(config).unwrap();
        let mut server = ServerObjectManager::with_config(server, objects_config()).unwrap();
        let network = LoopbackNetwork::new();
        let (addr, netem) = match path {
            Path::Memory => {
                server.start_offline().unwrap();
                (None, None)
            }
            Path::Udp => (Some(server.start("127.0.0.1:0".parse().unwrap()).unwrap()), None),
            Path::Netem { seed, loss } => {
                let factory = LoopbackSocketFactory::on(network.clone());
                let addr = server.start_on(&factory, "10.0.0.1:7777".parse().unwrap()).unwrap();
                let link = LinkConfig { loss, ..LinkConfig::perfect() };
                let netem =
                    NetemFactory { inner: factory, link, seed: AtomicU64::new(seed * 1000) };
                (Some(addr), Some(netem))
            }
        };
        Game { path, server, clients: Vec::new(), players: Vec::new(), addr, netem }
    }

    /// Adds a client (with `setup` applied: prefabs, scene objects) and connects it; returns its
    /// index.
    pub(crate) fn add_client(&mut self, setup: impl FnOnce(&mut ClientObjectManager)) -> usize {
        let client = match self.path {
            Path::Memory => self.server.connect_local().unwrap(),
            _ => NetworkClient::new(ClientConfig { transport: transport(), ..Default::default() })
                .unwrap(),
        };
        let mut client = ClientObjectManager::with_config(client, objects_config()).unwrap();
        setup(&mut client);
        match (&self.path, &self.netem, self.addr) {
            (Path::Udp, _, Some(addr)) => {
                client.connect_on(&UdpSocketFactory::default(), addr).unwrap()
            }
            (Path::Netem { .. }, Some(factory), Some(addr)) => {
                client.connect_on(factory, addr).unwrap()
            }
            _ => {}
        }
        self.clients.push(client);
        self.players.push(None);
        self.clients.len() - 1
    }

    /// One round: the server, then each client, updates.
    pub(crate) fn step(&mut self) {
        self.server.update().unwrap();
        for client in &mut self.clients {
            client.update().unwrap();
        }
        self.server.wait(Duration::from_micros(300)).unwrap();
    }

    /// Steps until `done` holds; false if it still does not after 20 seconds (a hang guard far
    /// above what any scenario needs).
    pub(crate) fn run_until(&mut self, mut done: impl FnMut(&mut Game) -> bool) -> bool {
        let start = clock();
        while clock().duration_since(start) < Duration::from_secs(20) {
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
    /// one's player id (joining order).
    pub(crate) fn join_all(&mut self) {
        let ok = self.run_until(|g| {
            g.clients.iter().all(|c| c.is_authenticated())
                && g.server.players().filter(|p| g.server.is_ready(*p)).count()
                    >= g.clients.len() + usize::from(g.server.host_player().is_some())
        });
        assert!(ok, "{:?}: clients did not join", self.path);
        // Over a lossy link clients may finish connecting out of order: match by address.
        // Local clients have no address, and joined in index order.
        let host = self.server.host_player();
        let mut ids: Vec<PlayerId> = self.server.players().filter(|p| Some(*p) != host).collect();
        ids.sort();
        let addresses: Vec<_> =
            ids.iter().map(|id| (*id, self.server.player(*id).and_then(|p| p.address()))).collect();
        for (i, client) in self.clients.iter().enumerate() {
            self.players[i] = match client.local_addr() {
                // A client bound to the unspecified address is seen from 127.0.0.1.
                Some(mine) => addresses
                    .iter()
                    .find(|(_, a)| {
                        a.is_some_and(|a| {
                            a.port() == mine.port() && (mine.ip().is_unspecified() || a == mine)
                        })
                    })
                    .map(|(id, _)| *id),
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

#[expect(clippy::disallowed_methods, reason = "the hang guard needs real time")]
fn clock() -> Instant {
    Instant::now()
}
