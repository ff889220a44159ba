//! A server and its clients over one of several paths, stepped together in lockstep.
//!
//! Time is an input of the server and the clients. On the in-process paths ([`Path::Local`],
//! [`Path::Memory`]) the harness keeps a virtual clock and moves it on by [`World::tick`] per
//! step: nothing waits, and a timeout of ten seconds takes as long to test as one of a
//! millisecond. On [`Path::Sim`] the clock is the simulated network's, and a step moves it to
//! the network's next delivery or timer, or by a tick, whichever comes first. The UDP paths ([`Path::Udp`], [`Path::Threaded`]) use real sockets, so their
//! input time is the real clock (`driver::now()`); a step there yields the thread instead of
//! waiting, and only a hang guard is measured in wall time.
#![allow(dead_code, reason = "each test file uses part of the harness")]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;
use sturnus_message::{
    ChannelLayout, ClientConfig, ClientEvent, MessageId, NetworkClient, NetworkServer,
    ServerConfig, ServerEvent, Transport, driver,
};
use sturnus_socket::{SocketFactory, UdpSocketFactory};
use sturnus_testkit::SimNet;
use sturnus_transport::{
    ChannelId, ConnectionId, EndpointConfig, Event, Host, MemoryNetwork, ThreadedHost,
};

/// The path between the server and its clients.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Path {
    /// Host mode: every client is a local client of the server (no transport).
    Local,
    /// A [`MemoryNetwork`]: every message arrives, in order; virtual time.
    Memory,
    /// A UDP [`Host`] on 127.0.0.1 on the caller's thread; real time.
    Udp,
    /// A [`ThreadedHost`] (UDP on a background I/O thread) on 127.0.0.1; real time.
    Threaded,
    /// The deterministic simulated network of `sturnus-testkit`: sans-IO endpoints on lossy
    /// netem links (`loss` each way, duplicates, reordering, jitter), virtual time.
    Sim { seed: u64, loss: f64 },
}

impl Path {
    /// Whether the path delivers every message, in the order sent, whatever the channel.
    pub(crate) fn is_lossless(self) -> bool {
        matches!(self, Path::Local | Path::Memory)
    }

    /// Whether time on the path is virtual (the harness's clock) rather than the real clock.
    pub(crate) fn is_virtual(self) -> bool {
        !matches!(self, Path::Udp | Path::Threaded)
    }
}

/// The paths every scenario runs over: host mode, memory, UDP, threaded UDP, and the
/// simulated lossy network with `seeds` seeds (10 % loss).
pub(crate) fn paths(seeds: u64) -> Vec<Path> {
    let mut paths = vec![Path::Local, Path::Memory, Path::Udp, Path::Threaded];
    paths.extend((0..seeds).map(|seed| Path::Sim { seed, loss: 0.1 }));
    paths
}

/// A lossy link: `loss`, duplicates, reordering and jitter (the testkit's).
pub(crate) use sturnus_testkit::lossy_link as lossy;

/// The default virtual step: a millisecond.
pub(crate) const TICK: Duration = Duration::from_millis(1);

/// How much virtual time [`World::run_until`] gives a condition before it gives up.
pub(crate) const VIRTUAL_LIMIT: Duration = Duration::from_secs(60);

/// How much wall time [`World::run_until`] gives a condition on a real-time path: a hang
/// guard, far above what any scenario needs.
pub(crate) const HANG_GUARD: Duration = Duration::from_secs(20);

/// Where a [`Path::Memory`] server listens.
pub(crate) fn memory_server_addr() -> SocketAddr {
    "10.0.0.1:7777".parse().unwrap()
}

/// Transport settings for `layout` that keep lossy tests short: quick connection retries.
pub(crate) fn endpoint_config(layout: &ChannelLayout) -> EndpointConfig {
    EndpointConfig {
        connect_retry_interval: Duration::from_millis(40),
        // Fixed 40 ms repeats, 20 of them (the protocol's backoff and its 12 attempts are
        // tuned for real networks; these lossy simulations were tuned for this).
        connect_retry_max_interval: Duration::from_millis(40),
        connect_attempts: 20,
        initial_rtt: Duration::from_millis(20),
        ..layout.endpoint_config()
    }
}

pub(crate) fn server_config() -> ServerConfig {
    ServerConfig::default()
}

/// A client configuration matching `server`'s layout and message size.
pub(crate) fn client_config_for(server: &ServerConfig) -> ClientConfig {
    ClientConfig {
        channels: server.channels.clone(),
        max_message_size: server.max_message_size,
        ..ClientConfig::default()
    }
}

pub(crate) fn client_config() -> ClientConfig {
    client_config_for(&server_config())
}

/// Everything the server and the clients reported, in order.
#[derive(Debug, Default)]
pub(crate) struct Log {
    pub(crate) server: Vec<ServerEvent>,
    pub(crate) clients: Vec<Vec<ClientEvent>>,
}

/// What carries a path's datagrams, and its clock.
enum Net {
    /// Host mode, on the harness's virtual clock.
    Local,
    /// An in-process network, on the harness's virtual clock.
    Memory(MemoryNetwork),
    /// Real sockets, on the real clock.
    Udp { threaded: bool },
    /// The simulated network, on its own virtual clock.
    Sim(SimNet),
}

/// A server and its clients.
pub(crate) struct World {
    pub(crate) path: Path,
    pub(crate) server: NetworkServer,
    pub(crate) clients: Vec<NetworkClient>,
    pub(crate) log: Log,
    /// How far a step moves the virtual clock (virtual paths only).
    pub(crate) tick: Duration,
    addr: Option<SocketAddr>,
    net: Net,
    now: Instant,
    start: Instant,
}

impl World {
    /// A started server on `path` (with `setup` applied first: handlers, an authenticator).
    pub(crate) fn new(
        path: Path,
        config: ServerConfig,
        setup: impl FnOnce(&mut NetworkServer),
    ) -> World {
        let endpoint = endpoint_config(&config.channels);
        let kinds = config.channels.kinds().to_vec();
        let mut server = NetworkServer::new(config).unwrap();
        setup(&mut server);
        let sim = match path {
            Path::Sim { seed, loss } => Some(SimNet::new(lossy(loss), seed)),
            _ => None,
        };
        // Where the virtual clock starts: any instant would do (the simulated network's own).
        let now = sim.as_ref().map_or_else(driver::now, SimNet::now);
        let (net, addr) = match path {
            Path::Local => {
                server.start_offline(now).unwrap();
                (Net::Local, None)
            }
            Path::Memory => {
                let network = MemoryNetwork::new();
                let transport = network.bind(memory_server_addr(), kinds).unwrap();
                let addr = server.start(now, transport).unwrap();
                (Net::Memory(network), addr)
            }
            Path::Udp => {
                let any = "127.0.0.1:0".parse().unwrap();
                let host = Host::bind(endpoint, &UdpSocketFactory::default(), any).unwrap();
                (Net::Udp { threaded: false }, server.start(now, host).unwrap())
            }
            Path::Threaded => {
                let any = "127.0.0.1:0".parse().unwrap();
                let host = ThreadedHost::bind(endpoint, &UdpSocketFactory::default(), any).unwrap();
                (Net::Udp { threaded: true }, server.start(now, host).unwrap())
            }
            Path::Sim { .. } => {
                let sim = sim.expect("made above");
                // The first endpoint of the net: 10.0.0.1.
                let transport = sim.endpoint(endpoint);
                let addr = server.start(now, transport).unwrap();
                (Net::Sim(sim), addr)
            }
        };
        World {
            path,
            server,
            clients: Vec::new(),
            log: Log::default(),
            tick: TICK,
            addr,
            net,
            now,
            start: now,
        }
    }

    /// The time of the current step: the input of every update.
    pub(crate) fn now(&self) -> Instant {
        self.now
    }

    /// Time since the world began (virtual on virtual paths).
    pub(crate) fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// A transport for a new client of this world's server, with the server's channels (`None`
    /// in host mode).
    pub(crate) fn client_transport(&self) -> Option<Box<dyn Transport>> {
        self.transport_with(endpoint_config(self.server.channels()))
    }

    /// A client transport with `config` (its channels need not be the server's).
    pub(crate) fn transport_with(&self, config: EndpointConfig) -> Option<Box<dyn Transport>> {
        let config = EndpointConfig { accept_connections: false, ..config };
        let factory = UdpSocketFactory::default();
        match &self.net {
            Net::Local => None,
            Net::Memory(network) => Some(Box::new(network.endpoint(config.channels))),
            Net::Udp { threaded } => {
                let socket = factory.client_socket(self.addr.unwrap()).unwrap();
                Some(if *threaded {
                    Box::new(ThreadedHost::new(config, socket).unwrap())
                } else {
                    Box::new(Host::new(config, socket).unwrap())
                })
            }
            Net::Sim(sim) => Some(Box::new(sim.endpoint(config))),
        }
    }

    /// The simulated network ([`Path::Sim`] only).
    pub(crate) fn sim(&self) -> &SimNet {
        match &self.net {
            Net::Sim(sim) => sim,
            _ => panic!("{:?} has no simulated network", self.path),
        }
    }

    /// The in-process network ([`Path::Memory`] only).
    pub(crate) fn memory(&self) -> &MemoryNetwork {
        match &self.net {
            Net::Memory(network) => network,
            _ => panic!("{:?} has no memory network", self.path),
        }
    }

    /// Adds a client (with credentials, if given, and `setup` applied: handlers) and starts
    /// connecting it; returns its index.
    pub(crate) fn add_client<C: Serialize + 'static>(
        &mut self,
        credentials: Option<&C>,
        setup: impl FnOnce(&mut NetworkClient),
    ) -> usize {
        let now = self.now;
        let mut client = match self.path {
            Path::Local => self.server.connect_local(now).unwrap(),
            _ => NetworkClient::new(client_config_for(self.server.config())).unwrap(),
        };
        if let Some(credentials) = credentials {
            client.set_credentials(credentials).unwrap();
            // The simulated links are plaintext between 10.x addresses; the tests of passwords
            // over them are about authentication, not the plaintext guard (auth.rs tests that).
            client.allow_plaintext_credentials(true);
        }
        setup(&mut client);
        if let Some(transport) = self.client_transport() {
            client.connect(now, transport, self.addr.unwrap()).unwrap();
        }
        self.clients.push(client);
        self.log.clients.push(Vec::new());
        self.clients.len() - 1
    }

    /// Adds a local client of the server (host mode, beside the remote ones); returns its
    /// index.
    pub(crate) fn add_local_client(&mut self) -> usize {
        let client = self.server.connect_local(self.now).unwrap();
        self.clients.push(client);
        self.log.clients.push(Vec::new());
        self.clients.len() - 1
    }

    /// The server's address, when it listens.
    pub(crate) fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// One round at the current time: the server, then each client, updates; events are
    /// logged.
    pub(crate) fn update(&mut self) {
        let now = self.now;
        self.server.update(now).unwrap();
        while let Some(event) = self.server.poll_event() {
            self.log.server.push(event);
        }
        for (i, client) in self.clients.iter_mut().enumerate() {
            client.update(now).unwrap();
            while let Some(event) = client.poll_event() {
                self.log.clients[i].push(event);
            }
        }
    }

    /// Moves time on: by [`tick`](Self::tick) on a virtual path (on the simulated network, to
    /// its next delivery or timer if that comes sooner); on a real one, lets the sockets (and
    /// the I/O thread) work and reads the clock.
    pub(crate) fn advance(&mut self) {
        match &self.net {
            Net::Local | Net::Memory(_) => self.now += self.tick,
            Net::Sim(sim) => {
                let tick = self.now + self.tick;
                // A deadline not after now is one this round has just serviced (or one nobody
                // services, such as a raw attacker's that is not pumped): the tick bounds it.
                let next =
                    sim.next_deadline().filter(|&at| at > self.now).map_or(tick, |at| at.min(tick));
                sim.advance_to(next);
                self.now = sim.now();
            }
            Net::Udp { .. } => {
                std::thread::yield_now();
                self.now = driver::now();
            }
        }
    }

    /// One round, then time moves on.
    pub(crate) fn step(&mut self) {
        self.update();
        self.advance();
    }

    /// Steps until `done` holds (checked after each round); false if it still does not after
    /// [`VIRTUAL_LIMIT`] of virtual time (or, on a real-time path, the [`HANG_GUARD`]).
    pub(crate) fn run_until(&mut self, mut done: impl FnMut(&mut World) -> bool) -> bool {
        let start = self.now;
        let wall = driver::now();
        loop {
            self.update();
            if done(self) {
                return true;
            }
            let out_of_time = if self.path.is_virtual() {
                self.now.duration_since(start) >= VIRTUAL_LIMIT
            } else {
                driver::now().duration_since(wall) >= HANG_GUARD
            };
            if out_of_time {
                return false;
            }
            self.advance();
        }
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
        assert!(ok, "{:?}: clients did not authenticate; log {:?}", self.path, self.log);
    }

    /// Whether the server reported `player`'s departure.
    pub(crate) fn gone(&self, player: sturnus_message::PlayerId) -> bool {
        self.log.server.iter().any(|e| matches!(e, ServerEvent::Disconnected(p, _) if *p == player))
    }
}

/// A transport-level client that speaks the message layer's framing by hand: the attacker in
/// abuse tests. It runs on any path with a transport.
pub(crate) struct Raw {
    pub(crate) transport: Box<dyn Transport>,
    pub(crate) conn: ConnectionId,
    pub(crate) connected: bool,
    pub(crate) closed: Option<sturnus_transport::DisconnectReason>,
    /// What arrived, with its channel.
    pub(crate) received: Vec<(ChannelId, Vec<u8>)>,
}

impl Raw {
    pub(crate) fn connect(world: &World) -> Raw {
        let mut transport = world.client_transport().expect("a path with a transport");
        let conn = transport.connect(world.now(), world.addr().unwrap()).unwrap();
        Raw { transport, conn, connected: false, closed: None, received: Vec::new() }
    }

    /// Handles everything that has arrived by `now`, and sends what is queued.
    pub(crate) fn pump(&mut self, now: Instant) {
        while let Some(event) = self.transport.poll_event(now).unwrap() {
            match event {
                Event::Connected(_) => self.connected = true,
                Event::Data { channel, payload, .. } => {
                    self.received.push((channel, payload.to_vec()));
                }
                Event::Disconnected { reason, .. } => self.closed = Some(reason),
                _ => {}
            }
        }
        self.transport.flush(now).unwrap();
    }

    /// Queues raw bytes on `channel` (the next pump sends them).
    pub(crate) fn send(&mut self, channel: ChannelId, bytes: &[u8]) {
        self.transport.send(self.conn, channel, bytes).unwrap();
    }
}

/// The channel of kind `qos` in the default layout (channel *i* is `Qos::ALL[i]`).
pub(crate) fn default_channel(qos: sturnus_message::Qos) -> ChannelId {
    ChannelLayout::default().first_of(qos).unwrap()
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
