//! The NetworkManager's races and failures: players joining and leaving within one update, a
//! spawn that fails for one player, a client loading scenes itself from a server without
//! scenes, stale ready reports, a failed host start, one layout for both sides. (Each test
//! here failed on an earlier version of the manager, or guards a check no other test
//! noticed missing.)

use std::time::Duration;

use sturnus::message::ClientState;
use sturnus::prelude::*;

const PLAYER: PrefabId = PrefabId::of_name("review-player");

#[derive(Default, NetworkBehaviour)]
struct Avatar {
    #[sync]
    x: SyncVar<u32>,
}

fn manager(network: &MemoryNetwork) -> NetworkManager {
    let config = ManagerConfig {
        transport: TransportChoice::Memory(network.clone()),
        ..ManagerConfig::default()
    };
    let mut manager = NetworkManager::new(config);
    manager.register_player_prefab(PLAYER, |_: &PlayerSpawn| Avatar::default());
    manager
}

/// A client that authenticates and leaves before the server's next update: the server sees
/// `Authenticated` and `Disconnected` in one update. Its tick must not fail (in `run` a failed
/// tick ends the server's loop), and no object may be left for the departed player.
#[test]
fn a_player_who_joins_and_leaves_in_one_update_does_not_break_the_server() {
    let network = MemoryNetwork::new();
    let addr = "10.0.9.1:7777".parse().unwrap();
    let mut now = driver::now();
    let mut server = manager(&network);
    server.start_server(addr).unwrap();
    let mut client = manager(&network);
    client.start_client(addr).unwrap();
    let mut left = false;
    for _ in 0..50 {
        server.tick(now).expect("the server's tick must survive a player leaving");
        if left {
            break;
        }
        client.tick(now).unwrap();
        let state = client.client_ref().unwrap().client().state();
        if state == ClientState::Authenticating {
            // The credentials are sent; leave before the server has read them.
            client.stop();
            left = true;
        }
        now += Duration::from_millis(16);
    }
    assert!(left, "the client never reached Authenticating");
    for _ in 0..5 {
        server.tick(now).expect("the server's tick must survive a player leaving");
        now += Duration::from_millis(16);
    }
    let objects = server.server().unwrap();
    assert_eq!(objects.server().players().count(), 0);
    assert_eq!(objects.object_count(), 0, "an object was spawned for a player who had left");
}

/// The same race, the tick's error ignored: the player's object must not outlive it.
#[test]
fn no_object_is_left_for_a_player_who_joined_and_left_in_one_update() {
    let network = MemoryNetwork::new();
    let addr = "10.0.9.2:7777".parse().unwrap();
    let mut now = driver::now();
    let mut server = manager(&network);
    server.start_server(addr).unwrap();
    let mut client = manager(&network);
    client.start_client(addr).unwrap();
    let mut events = Vec::new();
    for _ in 0..60 {
        let _ = server.tick(now);
        events.extend(std::iter::from_fn(|| server.poll_event()));
        if client.mode() == NetworkMode::Client {
            client.tick(now).unwrap();
            if client.client_ref().unwrap().client().state() == ClientState::Authenticating {
                client.stop();
            }
        }
        now += Duration::from_millis(16);
    }
    let objects = server.server().unwrap();
    assert_eq!(objects.server().players().count(), 0);
    assert_eq!(objects.object_count(), 0, "an orphan object is left; events: {events:?}");
}

/// A spawn hook (or the player prefab's spawn) that fails for one player must not cost the
/// other players who joined in the same update their objects and their scene.
#[test]
fn a_failed_spawn_for_one_player_does_not_strand_the_others() {
    let network = MemoryNetwork::new();
    let addr = "10.0.9.3:7777".parse().unwrap();
    let mut now = driver::now();
    let mut server = manager(&network);
    let mut calls = 0;
    server.set_add_player(move |objects, spawn| {
        calls += 1;
        if calls == 1 {
            return Err(ObjectError::NoBehaviours); // the game's own failure, for one player
        }
        objects.spawn(PLAYER, Avatar::default(), Some(spawn.player)).map(Some)
    });
    server.start_server(addr).unwrap();
    let mut a = manager(&network);
    let mut b = manager(&network);
    a.start_client(addr).unwrap();
    b.start_client(addr).unwrap();
    let mut failed = Vec::new();
    for _ in 0..30 {
        // One player's failure does not stop the server (in `run`, an error would).
        server.tick(now).unwrap();
        while let Some(event) = server.poll_event() {
            if let ManagerEvent::AddPlayerFailed { player, error } = event {
                failed.push((player, error));
            }
        }
        a.tick(now).unwrap();
        b.tick(now).unwrap();
        now += Duration::from_millis(16);
    }
    assert_eq!(failed.len(), 1, "the hook's error is reported once, as an event: {failed:?}");
    let objects = server.server().unwrap();
    let players: Vec<PlayerId> = objects.server().players().collect();
    assert_eq!(players.len(), 2);
    let ready = players.iter().filter(|p| objects.is_ready(**p)).count();
    assert_eq!(ready, 2, "a player was never told the scene, so never made ready ({ready} ready)");
    let with_object = players.iter().filter(|p| server.player_object(**p).is_some()).count();
    assert_eq!(with_object, 1, "the player whose spawn succeeded has its object");
}

/// Without `auto_scene_ready`, a game reports ready when told of a scene
/// (`ClientChangeScene`). A server that never called `change_scene` tells of none: the client
/// must still be told something it can act on, or be made ready, not wait forever.
#[test]
fn a_client_loading_scenes_itself_is_not_stranded_by_a_server_without_scenes() {
    let network = MemoryNetwork::new();
    let addr = "10.0.9.4:7777".parse().unwrap();
    let mut now = driver::now();
    let mut server = manager(&network);
    server.start_server(addr).unwrap();
    let config = ManagerConfig {
        transport: TransportChoice::Memory(network.clone()),
        auto_scene_ready: false,
        ..ManagerConfig::default()
    };
    let mut client = NetworkManager::new(config);
    client.register_player_prefab(PLAYER, |_: &PlayerSpawn| Avatar::default());
    client.start_client(addr).unwrap();
    for _ in 0..30 {
        server.tick(now).unwrap();
        client.tick(now).unwrap();
        // The game's loop: load on ClientChangeScene, then report ready.
        while let Some(event) = client.poll_event() {
            if let ManagerEvent::ClientChangeScene(_) = event {
                client.scene_ready().unwrap();
            }
        }
        now += Duration::from_millis(16);
    }
    assert_eq!(client.client_ref().unwrap().object_count(), 1, "the client never got its player");
}

/// A client that reports ready and leaves before the server's next update: the server must
/// not report `ServerReady` for a player it has already reported gone.
#[test]
fn no_ready_event_for_a_player_who_left() {
    let network = MemoryNetwork::new();
    let addr = "10.0.9.5:7777".parse().unwrap();
    let mut now = driver::now();
    let mut server = manager(&network);
    server.start_server(addr).unwrap();
    server.change_scene("lobby").unwrap();
    let mut client = manager(&network);
    client.start_client(addr).unwrap();
    let mut events = Vec::new();
    for _ in 0..40 {
        server.tick(now).unwrap();
        events.extend(std::iter::from_fn(|| server.poll_event()));
        if client.mode() == NetworkMode::Client {
            client.tick(now).unwrap();
            let told = std::iter::from_fn(|| client.poll_event())
                .any(|e| matches!(e, ManagerEvent::ClientChangeScene(_)));
            if told {
                // The ready report is on its way; leave at once.
                client.stop();
            }
        }
        now += Duration::from_millis(16);
    }
    let gone = events.iter().position(|e| matches!(e, ManagerEvent::ServerDisconnect(..)));
    let ready = events.iter().position(|e| matches!(e, ManagerEvent::ServerReady(_)));
    assert!(gone.is_some(), "{events:?}");
    assert!(
        ready.is_none() || ready < gone,
        "ServerReady reported after ServerDisconnect: {events:?}"
    );
}

/// `ManagerConfig::server`'s doc: "its channel layout is the client's too". A game that sets
/// its layout there (once, as the doc says) must be able to start a client with it.
#[test]
fn a_layout_set_on_the_server_config_serves_the_client_too() {
    use sturnus::message::{ChannelLayout, Qos};
    let network = MemoryNetwork::new();
    let addr = "10.0.9.6:7777".parse().unwrap();
    let mut config = ManagerConfig {
        transport: TransportChoice::Memory(network.clone()),
        ..ManagerConfig::default()
    };
    config.server.channels =
        ChannelLayout::typed(&[Qos::ReliableFragmentedSequenced, Qos::Unreliable]);
    let mut now = driver::now();
    let mut server = NetworkManager::new(config.clone());
    server.register_player_prefab(PLAYER, |_: &PlayerSpawn| Avatar::default());
    server.start_server(addr).unwrap();
    let mut client = NetworkManager::new(config);
    client.register_player_prefab(PLAYER, |_: &PlayerSpawn| Avatar::default());
    client.start_client(addr).expect("a client with the layout the config names");
    for _ in 0..30 {
        server.tick(now).unwrap();
        client.tick(now).unwrap();
        now += Duration::from_millis(16);
    }
    assert_eq!(client.client_ref().map(|c| c.object_count()), Some(1));
}

/// A spawn hook refusing the host's own player does not fail `start_host`: the host runs,
/// its player exists without an object, and the game is told.
#[test]
fn a_host_whose_own_spawn_fails_runs_and_is_told() {
    let network = MemoryNetwork::new();
    let addr = "10.0.9.7:7777".parse().unwrap();
    let mut host = manager(&network);
    host.set_add_player(|_, _| Err(ObjectError::NoBehaviours));
    host.start_host(addr).unwrap();
    assert_eq!(host.mode(), NetworkMode::Host);
    let me = host.host_player().expect("the host's player joined");
    assert_eq!(host.player_object(me), None);
    let failed = std::iter::from_fn(|| host.poll_event())
        .any(|e| matches!(e, ManagerEvent::AddPlayerFailed { player, .. } if player == me));
    assert!(failed);
}

/// A failed start leaves the manager offline, with nothing half started: the address is taken.
#[test]
fn a_failed_start_leaves_the_manager_offline() {
    let network = MemoryNetwork::new();
    let addr = "10.0.9.8:7777".parse().unwrap();
    let mut first = manager(&network);
    first.start_host(addr).unwrap();
    let mut second = manager(&network);
    assert!(second.start_host(addr).is_err());
    assert_eq!(second.mode(), NetworkMode::Offline);
    assert_eq!(second.poll_event(), None, "no Started for a start that failed");
}

/// A ready report for a scene the server has since changed away from is ignored: the client
/// is still loading the new one and gets no objects until it reports that. (Passes on main;
/// no test there fails when the manager's `change == self.scene_change` guard is removed —
/// this one does.)
#[test]
fn a_ready_report_for_an_older_scene_is_ignored() {
    let network = MemoryNetwork::new();
    let addr = "10.0.9.8:7777".parse().unwrap();
    let mut now = driver::now();
    let mut server = manager(&network);
    server.start_server(addr).unwrap();
    server.change_scene("a").unwrap();
    let config = ManagerConfig {
        transport: TransportChoice::Memory(network.clone()),
        auto_scene_ready: false,
        ..ManagerConfig::default()
    };
    let mut client = NetworkManager::new(config);
    client.register_player_prefab(PLAYER, |_: &PlayerSpawn| Avatar::default());
    client.start_client(addr).unwrap();
    for _ in 0..20 {
        server.tick(now).unwrap();
        client.tick(now).unwrap();
        now += Duration::from_millis(16);
    }
    assert_eq!(client.scene(), Some("a"));
    // The client reports "a" loaded while the server moves on to "b".
    client.scene_ready().unwrap();
    client.tick(now).unwrap();
    server.change_scene("b").unwrap();
    for _ in 0..20 {
        server.tick(now).unwrap();
        client.tick(now).unwrap();
        now += Duration::from_millis(16);
    }
    assert_eq!(client.scene(), Some("b"));
    assert_eq!(client.client_ref().unwrap().object_count(), 0, "sent objects while loading b");
    client.scene_ready().unwrap();
    for _ in 0..20 {
        server.tick(now).unwrap();
        client.tick(now).unwrap();
        now += Duration::from_millis(16);
    }
    assert_eq!(client.client_ref().unwrap().object_count(), 1);
}

/// A client cannot skip the scene flow: its own `Ready` (the object layer's, which a client
/// sends by itself outside the manager) is refused and counted while it is loading.
#[test]
fn a_client_saying_ready_by_itself_is_refused() {
    let network = MemoryNetwork::new();
    let addr = "10.0.9.9:7777".parse().unwrap();
    let mut now = driver::now();
    let mut server = manager(&network);
    server.start_server(addr).unwrap();
    server.change_scene("arena").unwrap();
    let config = ManagerConfig {
        transport: TransportChoice::Memory(network.clone()),
        auto_scene_ready: false,
        ..ManagerConfig::default()
    };
    let mut client = NetworkManager::new(config);
    client.start_client(addr).unwrap();
    for _ in 0..10 {
        server.tick(now).unwrap();
        client.tick(now).unwrap();
        now += Duration::from_millis(16);
    }
    let channel = ChannelLayout::default().first_of(Qos::ReliableFragmentedSequenced).unwrap();
    let objects = client.client().unwrap();
    objects.client_mut().send_on(&sturnus::object::wire::Ready, channel).unwrap();
    for _ in 0..5 {
        server.tick(now).unwrap();
        client.tick(now).unwrap();
        now += Duration::from_millis(16);
    }
    let objects = server.server().unwrap();
    let player = objects.server().players().next().unwrap();
    assert!(!objects.is_ready(player), "the client made itself ready");
    assert_eq!(objects.stats().refused_ready, 1);
    assert_eq!(client.client().unwrap().object_count(), 0);
}
