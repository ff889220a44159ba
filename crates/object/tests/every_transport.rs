//! One scenario, run unchanged over every transport the managers can be given: the UDP `Host`
//! and the `ThreadedHost` (real UDP on 127.0.0.1) and a `MemoryNetwork`. Only the making of the
//! transports differs ([`Kind`]). The scenario covers what a game relies on: a spawn owned by a
//! remote player, a SyncVar change with its hook, the owner's Command, ClientRpcs and a
//! TargetRpc, and host mode (the host's player on the server's own objects) with the remote
//! client playing at the same time.
//!
//! The UDP paths take real time, so their loop feeds the clock (`driver::now`) and yields
//! between rounds; it is bounded by a number of rounds, and nothing asserts on how long anything
//! took. The memory path runs on virtual time.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::objects_config;
use common::tank::{TANK, Tank, TankRpcs};
use sturnus_message::{
    ChannelLayout, ClientConfig, NetworkClient, NetworkServer, PlayerId, ServerConfig, driver,
};
use sturnus_object::{ClientObjectEvent, ClientObjectManager, NetId, ServerObjectManager};
use sturnus_socket::{SocketFactory, UdpSocketFactory};
use sturnus_transport::{Host, MemoryNetwork, ThreadedHost, Transport};

/// The transports the scenario runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The UDP transport on the caller's thread.
    Udp,
    /// The UDP transport on a background I/O thread.
    Threaded,
    /// An in-process network.
    Memory,
}

/// Makes the transports of one run.
struct Transports {
    kind: Kind,
    memory: MemoryNetwork,
}

impl Transports {
    fn new(kind: Kind) -> Self {
        Self { kind, memory: MemoryNetwork::new() }
    }

    /// A transport that accepts connections, with `layout`'s channels.
    fn server(&self, layout: &ChannelLayout) -> Box<dyn Transport> {
        let udp = || UdpSocketFactory::default().server_socket("127.0.0.1:0".parse().unwrap());
        match self.kind {
            Kind::Udp => Box::new(Host::new(layout.endpoint_config(), udp().unwrap()).unwrap()),
            Kind::Threaded => {
                Box::new(ThreadedHost::new(layout.endpoint_config(), udp().unwrap()).unwrap())
            }
            Kind::Memory => {
                let addr = "10.0.0.1:7777".parse().unwrap();
                Box::new(self.memory.bind(addr, layout.kinds().to_vec()).unwrap())
            }
        }
    }

    /// A transport to reach `server` from, with `layout`'s channels.
    fn client(&self, layout: &ChannelLayout, server: SocketAddr) -> Box<dyn Transport> {
        let udp = || UdpSocketFactory::default().client_socket(server);
        match self.kind {
            Kind::Udp => Box::new(Host::new(layout.endpoint_config(), udp().unwrap()).unwrap()),
            Kind::Threaded => {
                Box::new(ThreadedHost::new(layout.endpoint_config(), udp().unwrap()).unwrap())
            }
            Kind::Memory => Box::new(self.memory.endpoint(layout.kinds().to_vec())),
        }
    }
}

/// The host (a server in host mode) and one remote client, stepped together.
struct Match {
    kind: Kind,
    server: ServerObjectManager,
    client: ClientObjectManager,
    /// Virtual time, for the memory transport.
    now: Instant,
    /// Object events the client has seen.
    events: Vec<ClientObjectEvent>,
}

impl Match {
    /// The time of the next round: the clock's for transports that read their own, virtual
    /// (a frame on) for the memory network.
    fn tick(&mut self) -> Instant {
        self.now = match self.kind {
            Kind::Udp | Kind::Threaded => driver::now(),
            Kind::Memory => self.now + Duration::from_millis(10),
        };
        self.now
    }

    /// Rounds until `done` holds; false if it still does not after a bound of rounds (a hang
    /// guard, not a deadline: real packets on loopback arrive within a few rounds).
    fn run_until(&mut self, mut done: impl FnMut(&mut Match) -> bool) -> bool {
        let rounds = match self.kind {
            Kind::Udp | Kind::Threaded => 500_000,
            Kind::Memory => 1_000,
        };
        for _ in 0..rounds {
            let now = self.tick();
            self.server.update(now).unwrap();
            while self.server.poll_event().is_some() {}
            self.client.update(now).unwrap();
            while let Some(event) = self.client.poll_object_event() {
                self.events.push(event);
            }
            if done(self) {
                return true;
            }
            if self.kind != Kind::Memory {
                std::thread::yield_now();
            }
        }
        false
    }

    /// The remote client's player on the server.
    fn remote(&self) -> Option<PlayerId> {
        let host = self.server.host_player();
        let mut players = self.server.server().players().filter(|p| Some(*p) != host);
        players.find(|p| self.server.is_ready(*p))
    }

    fn client_tank(&self, id: NetId) -> Option<&Tank> {
        self.client.get::<Tank>(id)
    }

    fn host_tank(&self, id: NetId) -> &Tank {
        self.server.get::<Tank>(id).expect("the server holds the tank")
    }
}

/// The scenario: the same for every transport.
fn scenario(kind: Kind) {
    let transports = Transports::new(kind);
    let (server_config, client_config) = (ServerConfig::default(), ClientConfig::default());
    let server_transport = transports.server(&server_config.channels);
    let client_layout = client_config.channels.clone();
    let now = driver::now();

    // Host mode over the transport: the host's own player joins at once.
    let server = NetworkServer::new(server_config).unwrap();
    let mut server = ServerObjectManager::with_config(server, objects_config()).unwrap();
    let addr = server.start_host(now, server_transport).unwrap().expect("bound to an address");
    let client = NetworkClient::new(client_config).unwrap();
    let mut client = ClientObjectManager::with_config(client, objects_config()).unwrap();
    client.register_prefab(TANK, Tank::default);
    client.connect(now, transports.client(&client_layout, addr), addr).unwrap();
    let mut game = Match { kind, server, client, now, events: Vec::new() };

    let joined = game.run_until(|g| {
        g.client.client().is_authenticated()
            && g.server.host_player().is_some()
            && g.remote().is_some()
    });
    assert!(joined, "{kind:?}: the host player and the remote client did not both join");
    let host = game.server.host_player().unwrap();
    let remote = game.remote().unwrap();

    // A spawn owned by the remote player: the client builds it with its state and is told it
    // owns it; the host player sees it too, as not its own.
    let id = game.server.spawn(TANK, Tank::new(100, "ada"), Some(remote)).unwrap();
    let spawned =
        |owned| ClientObjectEvent::Spawned { net_id: id, prefab: TANK, scene: None, owned };
    assert_eq!(game.server.poll_host_event(), Some(spawned(false)), "{kind:?}: host spawn event");
    assert!(game.run_until(|g| g.client_tank(id).is_some()), "{kind:?}: spawn not seen");
    assert_eq!(game.events, [spawned(true)], "{kind:?}: the client's spawn event");
    assert!(game.client.is_owned(id), "{kind:?}");
    let tank = game.client_tank(id).unwrap();
    assert_eq!((*tank.health, tank.name.as_str()), (100, "ada"), "{kind:?}: initial state");
    assert!(tank.health_changes.is_empty(), "{kind:?}: no hook for the initial state");

    // A SyncVar change reaches the client, with its hook; the host's hook runs on the server's
    // own object.
    game.server.get_mut::<Tank>(id).unwrap().health.set(90);
    let synced = game.run_until(|g| g.client_tank(id).is_some_and(|t| *t.health == 90));
    assert!(synced, "{kind:?}: the SyncVar change did not reach the client");
    assert_eq!(game.client_tank(id).unwrap().health_changes, [(100, 90)], "{kind:?}: client hook");
    assert_eq!(game.host_tank(id).health_changes, [(100, 90)], "{kind:?}: host hook");

    // The owner's Command changes state on the server; the ClientRpc it answers with reaches
    // the client and runs for the host player on the server's object.
    let handle = game.client.handle::<Tank>(id).unwrap();
    handle.fire(&mut game.client, (1, 2)).unwrap();
    let fired = game.run_until(|g| g.client_tank(id).is_some_and(|t| !t.explosions.is_empty()));
    assert!(fired, "{kind:?}: the command's ClientRpc did not reach the client");
    assert_eq!(game.host_tank(id).fired, [(remote, (1, 2))], "{kind:?}: the command ran once");
    assert_eq!(game.client_tank(id).unwrap().explosions, [(1, 2)], "{kind:?}");
    assert_eq!(game.host_tank(id).explosions, [(1, 2)], "{kind:?}: the host's RPC ran once");

    // A ClientRpc from the server reaches every observer; a TargetRpc only its player.
    let handle = game.server.handle::<Tank>(id).unwrap();
    handle.explode(&mut game.server, (3, 4)).unwrap();
    handle.hit_marker(&mut game.server, remote, 5).unwrap();
    handle.hit_marker(&mut game.server, host, 7).unwrap();
    let arrived = game.run_until(|g| g.client_tank(id).is_some_and(|t| t.explosions.len() == 2));
    assert!(arrived, "{kind:?}: the server's ClientRpc did not reach the client");
    let tank = game.client_tank(id).unwrap();
    assert_eq!(
        (tank.explosions.as_slice(), tank.hits.as_slice()),
        (&[(1, 2), (3, 4)][..], &[5][..])
    );
    let shared = game.host_tank(id);
    assert_eq!(
        (shared.explosions.as_slice(), shared.hits.as_slice()),
        (&[(1, 2), (3, 4)][..], &[7][..])
    );

    // The host player's own object: its Command runs on the server with the host as sender,
    // and its ClientRpc reaches the remote client's copy and the shared object.
    let mine = game.server.spawn(TANK, Tank::new(50, "host"), Some(host)).unwrap();
    let own = ClientObjectEvent::Spawned { net_id: mine, prefab: TANK, scene: None, owned: true };
    assert_eq!(game.server.poll_host_event(), Some(own), "{kind:?}");
    let handle = game.server.handle::<Tank>(mine).unwrap();
    handle.fire(&mut game.server, (8, 9)).unwrap();
    let seen = game.run_until(|g| g.client_tank(mine).is_some_and(|t| t.explosions == [(8, 9)]));
    assert!(seen, "{kind:?}: the host's command's ClientRpc did not reach the client");
    assert!(!game.client.is_owned(mine), "{kind:?}");
    assert_eq!(game.host_tank(mine).fired, [(host, (8, 9))], "{kind:?}");
    assert_eq!(game.host_tank(mine).explosions, [(8, 9)], "{kind:?}");
    // Nothing was refused on the way.
    assert_eq!(game.server.stats().rejected(), 0, "{kind:?}");
    assert_eq!(game.client.stats().dropped_unknown_rpc, 0, "{kind:?}");
}

#[test]
fn over_the_udp_host() {
    scenario(Kind::Udp);
}

#[test]
fn over_the_threaded_host() {
    scenario(Kind::Threaded);
}

#[test]
fn over_a_memory_network() {
    scenario(Kind::Memory);
}
