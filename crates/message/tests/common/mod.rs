//! A server and its clients over one of three paths, stepped together: host mode (in memory),
//! the loopback socket through a lossy netem link, or real UDP.
#![allow(dead_code, reason = "each test file uses part of the harness")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;
use sturnus_message::{
    ClientConfig, ClientEvent, MessageId, NetworkClient, NetworkServer, Qos, ServerConfig,
    ServerEvent, default_transport,
};
use sturnus_netem::LinkConfig;
use sturnus_socket::{
    ConditionedSocket, LoopbackNetwork, LoopbackSocket, LoopbackSocketFactory, SocketError,
    SocketFactory, UdpSocketFactory,
};
use sturnus_transport::{ChannelId, ConnectionId, EndpointConfig, Host, HostEvent};

/// The path between the server and its clients.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Path {
    /// Host mode: every client is a local client of the server.
    Local,
    /// The loopback socket, every client's datagrams (both ways) through a lossy link.
    Netem { seed: u64, loss: f64 },
    /// UDP on 127.0.0.1.
    Udp,
}

/// The paths every scenario runs over: host mode, UDP, and netem with `seeds` seeds.
pub(crate) fn paths(seeds: u64) -> Vec<Path> {
    let mut paths = vec![Path::Local, Path::Udp];
    paths.extend((0..seeds).map(|seed| Path::Netem { seed, loss: 0.1 }));
    paths
}

/// Transport settings that keep lossy tests short: quick connection retries.
pub(crate) fn transport() -> EndpointConfig {
    EndpointConfig {
        connect_retry_interval: Duration::from_millis(40),
        initial_rtt: Duration::from_millis(20),
        ..default_transport()
    }
}

pub(crate) fn server_config() -> ServerConfig {
    ServerConfig { transport: transport(), ..ServerConfig::default() }
}

pub(crate) fn client_config() -> ClientConfig {
    ClientConfig { transport: transport(), ..ClientConfig::default() }
}

/// A lossy link: 10 % loss (or `loss`), duplicates, reordering and jitter.
pub(crate) fn lossy(loss: f64) -> LinkConfig {
    LinkConfig {
        latency: Duration::from_millis(2),
        jitter: Duration::from_millis(1),
        loss,
        duplicate: 0.02,
        reorder: 0.05,
        reorder_delay: Duration::from_millis(3),
        ..LinkConfig::perfect()
    }
}

/// Makes loopback sockets whose traffic crosses a netem link, each with its own seed.
#[derive(Debug)]
pub(crate) struct NetemFactory {
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
        ConditionedSocket::new(socket, self.link.clone(), seed)?
            .with_incoming(self.link.clone(), seed + 1)
    }
}

/// Everything the server and the clients reported, in order.
#[derive(Debug, Default)]
pub(crate) struct Log {
    pub(crate) server: Vec<ServerEvent>,
    pub(crate) clients: Vec<Vec<ClientEvent>>,
}

/// A server and its clients.
pub(crate) struct World {
    pub(crate) path: Path,
    pub(crate) server: NetworkServer,
    pub(crate) clients: Vec<NetworkClient>,
    pub(crate) log: Arc<Mutex<Log>>,
    addr: Option<SocketAddr>,
    network: LoopbackNetwork,
    netem: Option<NetemFactory>,
}

impl World {
    /// A started server on `path` (with `setup` applied first: handlers, an authenticator).
    pub(crate) fn new(
        path: Path,
        config: ServerConfig,
        setup: impl FnOnce(&mut NetworkServer),
    ) -> World {
        let mut server = NetworkServer::new(config).unwrap();
        setup(&mut server);
        let network = LoopbackNetwork::new();
        let netem = match path {
            Path::Netem { seed, loss } => Some(NetemFactory {
                inner: LoopbackSocketFactory::on(network.clone()),
                link: lossy(loss),
                seed: AtomicU64::new(seed * 1000),
            }),
            _ => None,
        };
        let addr = match path {
            Path::Local => {
                server.start_offline().unwrap();
                None
            }
            Path::Udp => Some(server.start("127.0.0.1:0".parse().unwrap()).unwrap()),
            Path::Netem { .. } => Some(
                server
                    .start_on(
                        &LoopbackSocketFactory::on(network.clone()),
                        "10.0.0.1:7777".parse().unwrap(),
                    )
                    .unwrap(),
            ),
        };
        World { path, server, clients: Vec::new(), log: Arc::default(), addr, network, netem }
    }

    /// Adds a client (with credentials, if given, and `setup` applied: handlers) and starts
    /// connecting it; returns its index.
    pub(crate) fn add_client<C: Serialize>(
        &mut self,
        credentials: Option<&C>,
        setup: impl FnOnce(&mut NetworkClient),
    ) -> usize {
        let mut client = match self.path {
            Path::Local => self.server.connect_local().unwrap(),
            _ => NetworkClient::new(client_config()).unwrap(),
        };
        if let Some(credentials) = credentials {
            client.set_credentials(credentials).unwrap();
        }
        setup(&mut client);
        let addr = self.addr.unwrap_or_else(|| "0.0.0.0:0".parse().unwrap());
        match (&self.path, &self.netem) {
            (Path::Udp, _) => client.connect_on(&UdpSocketFactory::default(), addr).unwrap(),
            (Path::Netem { .. }, Some(factory)) => client.connect_on(factory, addr).unwrap(),
            _ => {}
        }
        self.clients.push(client);
        self.log.lock().clients.push(Vec::new());
        self.clients.len() - 1
    }

    /// The loopback network (for raw transport clients in netem and local worlds).
    pub(crate) fn network(&self) -> &LoopbackNetwork {
        &self.network
    }

    /// The server's address, when it listens.
    pub(crate) fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// One round: the server, then each client, updates; events are logged.
    pub(crate) fn step(&mut self) {
        self.server.update().unwrap();
        let mut log = self.log.lock();
        while let Some(event) = self.server.poll_event() {
            log.server.push(event);
        }
        for (i, client) in self.clients.iter_mut().enumerate() {
            client.update().unwrap();
            while let Some(event) = client.poll_event() {
                log.clients[i].push(event);
            }
        }
        drop(log);
        self.server.wait(Duration::from_micros(500)).unwrap();
    }

    /// Steps until `done` holds; false if it still does not after 20 seconds (a hang guard,
    /// far above what any scenario needs).
    pub(crate) fn run_until(&mut self, mut done: impl FnMut(&mut World) -> bool) -> bool {
        let start = clock();
        while clock().duration_since(start) < Duration::from_secs(20) {
            self.step();
            if done(self) {
                return true;
            }
        }
        false
    }

    /// Steps for `rounds` rounds.
    pub(crate) fn run_for(&mut self, rounds: usize) {
        for _ in 0..rounds {
            self.step();
        }
    }

    /// Steps until every client is authenticated.
    pub(crate) fn authenticate_all(&mut self) {
        let ok = self.run_until(|w| w.clients.iter().all(|c| c.is_authenticated()));
        assert!(ok, "{:?}: clients did not authenticate; log {:?}", self.path, self.log.lock());
    }
}

#[expect(clippy::disallowed_methods, reason = "the hang guard needs real time")]
fn clock() -> Instant {
    Instant::now()
}

/// A transport-level client that speaks the message layer's framing by hand: the attacker in
/// abuse tests. Needs a world on the loopback network ([`Path::Netem`]).
pub(crate) struct Raw {
    pub(crate) host: Host<LoopbackSocket>,
    pub(crate) conn: ConnectionId,
    pub(crate) connected: bool,
    pub(crate) closed: Option<sturnus_transport::DisconnectReason>,
    pub(crate) received: Vec<Vec<u8>>,
}

impl Raw {
    pub(crate) fn connect(world: &World) -> Raw {
        let factory = LoopbackSocketFactory::on(world.network().clone());
        let (host, conn) = Host::connect_to(transport(), &factory, world.addr().unwrap()).unwrap();
        Raw { host, conn, connected: false, closed: None, received: Vec::new() }
    }

    /// Handles everything that has arrived.
    pub(crate) fn pump(&mut self) {
        loop {
            match self.host.receive().unwrap() {
                HostEvent::Nothing => break,
                HostEvent::Connect(_) => self.connected = true,
                HostEvent::Data { payload, .. } => self.received.push(payload.to_vec()),
                HostEvent::Disconnect(_, reason) => self.closed = Some(reason),
                _ => {}
            }
        }
    }

    /// Sends raw bytes on the channel of kind `qos`.
    pub(crate) fn send(&mut self, qos: Qos, bytes: &[u8]) {
        let index = Qos::ALL.iter().position(|q| *q == qos).unwrap();
        self.host.send(self.conn, ChannelId(u8::try_from(index).unwrap()), bytes).unwrap();
    }
}

/// A message as the layer frames it: the id, little-endian, then postcard.
pub(crate) fn frame<T: Serialize>(id: MessageId, value: &T) -> Vec<u8> {
    let mut bytes = id.0.to_le_bytes().to_vec();
    bytes.extend(postcard::to_allocvec(value).unwrap());
    bytes
}

/// The layer's authentication request carrying `credentials`.
pub(crate) fn auth_request<C: Serialize>(credentials: &C) -> Vec<u8> {
    let id = MessageId::of_path("sturnus_message::auth::AuthRequest");
    frame(id, &postcard::to_allocvec(credentials).unwrap())
}
