//! The NetworkManager: one call starts a server, a client or a host; each authenticated player
//! gets an object of the player prefab, owned by it, at a start position.

use std::time::Duration;

use sturnus::manager::ManagerError;
use sturnus::prelude::*;
use sturnus::transport::HostError;

const PLAYER: PrefabId = PrefabId::of_name("manager-test-player");

#[derive(Default, NetworkBehaviour)]
struct Avatar {
    #[sync]
    x: SyncVar<f32>,
}

fn manager(network: &MemoryNetwork) -> NetworkManager {
    let config = ManagerConfig {
        transport: TransportChoice::Memory(network.clone()),
        ..ManagerConfig::default()
    };
    let mut manager = NetworkManager::new(config);
    // The avatar starts where the manager puts it.
    manager.register_player_prefab(PLAYER, |spawn: &PlayerSpawn| {
        let mut avatar = Avatar::default();
        avatar.x.set(spawn.start.map_or(-1.0, |s| s.position[0]));
        avatar
    });
    for x in [10.0, 20.0, 30.0] {
        manager.add_start_position(StartPosition { position: [x, 0.0, 0.0], yaw: 0.0 });
    }
    manager
}

#[test]
fn players_get_their_objects_at_start_positions_in_turn() {
    let network = MemoryNetwork::new();
    let addr = "10.0.0.1:7777".parse().unwrap();
    let mut host = manager(&network);
    host.start_host(addr).unwrap();
    assert_eq!(host.mode(), NetworkMode::Host);
    let me = host.host_player().expect("the host player exists when start_host returns");
    let mine = host.player_object(me).expect("and has its object");

    let mut clients: Vec<NetworkManager> = (0..2).map(|_| manager(&network)).collect();
    for client in &mut clients {
        client.start_client(addr).unwrap();
    }
    let mut now = driver::now();
    for _ in 0..20 {
        host.tick(now).unwrap();
        for client in &mut clients {
            client.tick(now).unwrap();
        }
        now += Duration::from_millis(16);
    }
    // Round robin: the host's player took the first position, the clients the next two.
    let server = host.server().unwrap();
    let players: Vec<PlayerId> = server.server().players().filter(|p| *p != me).collect();
    assert_eq!(players.len(), 2);
    let x_of = |host: &mut NetworkManager, p| {
        let id = host.player_object(p).unwrap();
        *host.server().unwrap().get::<Avatar>(id).unwrap().x
    };
    assert_eq!(x_of(&mut host, me), 10.0);
    let mut others: Vec<f32> = players.iter().map(|p| x_of(&mut host, *p)).collect();
    others.sort_by(f32::total_cmp);
    assert_eq!(others, [20.0, 30.0]);
    // Each client sees every player's object, owns exactly its own, and the host's is there.
    for client in &mut clients {
        let objects = client.client().unwrap();
        assert_eq!(objects.object_count(), 3);
        let owned = objects.objects().filter(|id| objects.is_owned(*id)).count();
        assert_eq!(owned, 1);
        assert!(objects.get::<Avatar>(mine).is_some());
        let mut saw_connect = false;
        while let Some(event) = client.poll_event() {
            saw_connect |= event == ManagerEvent::ClientConnect;
        }
        assert!(saw_connect);
    }
    let mut added = 0;
    while let Some(event) = host.poll_event() {
        added += usize::from(matches!(event, ManagerEvent::ServerAddPlayer { .. }));
    }
    assert_eq!(added, 3);

    // A client leaving is an event on the server, and its object goes.
    clients[0].stop();
    for _ in 0..5 {
        host.tick(now).unwrap();
        clients[1].tick(now).unwrap();
        now += Duration::from_millis(16);
    }
    let left = std::iter::from_fn(|| host.poll_event())
        .any(|e| matches!(e, ManagerEvent::ServerDisconnect(..)));
    assert!(left);
    assert_eq!(clients[1].client().unwrap().object_count(), 2);
    assert_eq!(clients[0].poll_event(), Some(ManagerEvent::Stopped(NetworkMode::Client)));
}

#[test]
fn starting_twice_is_an_error_and_stop_goes_offline() {
    let network = MemoryNetwork::new();
    let mut server = manager(&network);
    server.start_server("10.0.0.2:1".parse().unwrap()).unwrap();
    let again = server.start_client("10.0.0.2:1".parse().unwrap());
    assert!(matches!(again, Err(ManagerError::AlreadyStarted(NetworkMode::Server))));
    server.stop();
    assert_eq!(server.mode(), NetworkMode::Offline);
    // The address is free again; the manager can serve again.
    server.start_server("10.0.0.2:1".parse().unwrap()).unwrap();
}

#[test]
fn a_client_whose_server_stops_goes_offline_and_run_returns() {
    let network = MemoryNetwork::new();
    let addr = "10.0.0.3:7777".parse().unwrap();
    let mut server = manager(&network);
    server.start_server(addr).unwrap();
    let mut client = manager(&network);
    client.start_client(addr).unwrap();
    let mut now = driver::now();
    for _ in 0..5 {
        server.tick(now).unwrap();
        client.tick(now).unwrap();
        now += Duration::from_millis(16);
    }
    assert_eq!(client.mode(), NetworkMode::Client);
    server.stop();
    // The game loop ends by itself once the connection does (not after 1000 frames).
    let mut frames = 0;
    client
        .run(200, |_| {
            frames += 1;
            frames < 1000
        })
        .unwrap();
    assert!(frames < 1000, "run did not return when the client's connection ended");
    assert_eq!(client.mode(), NetworkMode::Offline);
    let events: Vec<ManagerEvent> = std::iter::from_fn(|| client.poll_event()).collect();
    let ended = events.iter().position(|e| matches!(e, ManagerEvent::ClientDisconnect(_)));
    let stopped = events.iter().position(|e| *e == ManagerEvent::Stopped(NetworkMode::Client));
    assert!(ended.is_some() && ended < stopped, "{events:?}");
}

#[test]
fn a_custom_transport_factory_opens_each_side() {
    use std::sync::{Arc, Mutex};
    use sturnus::manager::Side;
    let network = MemoryNetwork::new();
    let opened = Arc::new(Mutex::new(Vec::new()));
    let factory = {
        let (network, opened) = (network.clone(), Arc::clone(&opened));
        TransportFactory::new(move |side, addr, config: &EndpointConfig| {
            opened.lock().unwrap().push((side, addr, config.accept_connections));
            let kinds = config.channels.clone();
            Ok(match side {
                Side::Server => Box::new(network.bind(addr, kinds).map_err(HostError::from)?),
                _ => Box::new(network.endpoint(kinds)) as Box<dyn Transport>,
            })
        })
    };
    let custom = || {
        let config = ManagerConfig {
            transport: TransportChoice::Custom(factory.clone()),
            ..ManagerConfig::default()
        };
        let mut manager = NetworkManager::new(config);
        manager.register_player_prefab(PLAYER, |_: &PlayerSpawn| Avatar::default());
        manager
    };
    let addr = "10.0.0.4:7777".parse().unwrap();
    let (mut server, mut client) = (custom(), custom());
    server.start_server(addr).unwrap();
    client.start_client(addr).unwrap();
    let mut now = driver::now();
    for _ in 0..10 {
        server.tick(now).unwrap();
        client.tick(now).unwrap();
        now += Duration::from_millis(16);
    }
    assert!(client.local_player_id().is_some(), "the client's player object arrived");
    let opened = opened.lock().unwrap().clone();
    assert_eq!(opened, [(Side::Server, addr, true), (Side::Client, addr, false)]);
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize, Message)]
struct Shout(String);

#[test]
fn messages_and_commands_go_through_the_manager_in_every_mode() {
    let network = MemoryNetwork::new();
    let addr = "10.0.0.5:7777".parse().unwrap();
    let mut host = manager(&network);
    let mut client = manager(&network);
    // Registered before one start and after the other: both work.
    client.register_message::<Shout>().unwrap();
    host.start_host(addr).unwrap();
    host.register_message::<Shout>().unwrap();
    client.start_client(addr).unwrap();
    let mut now = driver::now();
    let mut pump = |host: &mut NetworkManager, client: &mut NetworkManager| {
        for _ in 0..10 {
            host.tick(now).unwrap();
            client.tick(now).unwrap();
            now += Duration::from_millis(16);
        }
    };
    pump(&mut host, &mut client);
    client.send_to_server(&Shout("from the client".into())).unwrap();
    host.send_to_server(&Shout("from the host's player".into())).unwrap();
    assert_eq!(host.broadcast(&Shout("to all".into())).unwrap(), 2);
    assert!(matches!(client.broadcast(&Shout("x".into())), Err(ManagerError::NotServing(_))));
    pump(&mut host, &mut client);
    let mut heard: Vec<String> =
        std::iter::from_fn(|| host.poll_from_clients::<Shout>()).map(|(_, Shout(s))| s).collect();
    heard.sort();
    assert_eq!(heard, ["from the client", "from the host's player"]);
    assert_eq!(host.poll_from_server::<Shout>(), Some(Shout("to all".into())));
    assert_eq!(client.poll_from_server::<Shout>(), Some(Shout("to all".into())));

    // The local player, in both modes, and the objects each sees.
    let mine = client.local_player_id().expect("the client's own object");
    let hosts = host.local_player_id().expect("the host's own object");
    assert_ne!(mine, hosts);
    assert_eq!(host.local_player_id(), host.player_object(host.host_player().unwrap()));
    assert_eq!(client.objects().count(), 2);
    assert_eq!(host.objects().count(), 2);
    assert!(client.get::<Avatar>(hosts).is_some() && host.get::<Avatar>(mine).is_some());
    assert!(client.local_player::<Avatar>().is_some());
    // An offline manager has no objects and sends nothing.
    let mut offline = manager(&network);
    assert!(offline.send_to_server(&Shout("x".into())).is_err());
    assert_eq!(offline.objects().count(), 0);
    assert!(offline.local_player_id().is_none());
}

#[test]
fn the_manager_lets_in_only_who_the_authenticator_accepts() {
    use sturnus::message::{Login, PasswordAuthenticator};
    let network = MemoryNetwork::new();
    let addr = "10.0.0.6:7777".parse().unwrap();
    let login = |password: &str| Login { name: "ada".into(), password: password.into() };
    let mut host = manager(&network);
    host.set_authenticator(|| PasswordAuthenticator::new("starling"));
    // The host's own player presents the password too.
    host.set_credentials(login("starling"));
    host.start_host(addr).unwrap();
    let me = host.host_player().expect("the host's player was let in");
    assert!(host.player_object(me).is_some());
    let (mut friend, mut stranger) = (manager(&network), manager(&network));
    friend.set_credentials(login("starling"));
    stranger.set_credentials(login("guess"));
    friend.start_client(addr).unwrap();
    stranger.start_client(addr).unwrap();
    let mut now = driver::now();
    let mut events = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..20 {
        host.tick(now).unwrap();
        friend.tick(now).unwrap();
        stranger.tick(now).unwrap();
        events.0.extend(std::iter::from_fn(|| host.poll_event()));
        events.1.extend(std::iter::from_fn(|| friend.poll_event()));
        events.2.extend(std::iter::from_fn(|| stranger.poll_event()));
        now += Duration::from_millis(16);
    }
    assert!(friend.local_player_id().is_some(), "{:?}", events.1);
    let rejected = events
        .2
        .iter()
        .any(|e| matches!(e, ManagerEvent::ClientDisconnect(DisconnectReason::AuthRejected(_))));
    assert!(rejected, "{:?}", events.2);
    assert_eq!(stranger.mode(), NetworkMode::Offline);
    let added = events.0.iter().filter(|e| matches!(e, ManagerEvent::ServerAddPlayer { .. }));
    assert_eq!(added.count(), 2, "the host's player and the friend only: {:?}", events.0);
}
