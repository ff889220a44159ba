//! Scene changes through the NetworkManager (UNET's `ServerChangeScene`): clients are told,
//! forget the old scene's objects, load, report ready and get the new scene's objects; late
//! joiners get the current scene. And the spawn hook that replaces the player prefab.

use std::time::{Duration, Instant};

use sturnus::manager::ManagerError;
use sturnus::prelude::*;

const PLAYER: PrefabId = PrefabId::of_name("scenes-test-player");
const CRATE: PrefabId = PrefabId::of_name("scenes-test-crate");

#[derive(Default, NetworkBehaviour)]
struct Avatar {
    #[sync]
    score: SyncVar<u32>,
}

#[derive(Default, NetworkBehaviour)]
struct Crate {
    #[sync]
    label: SyncVar<String>,
}

fn manager(network: &MemoryNetwork, auto_scene_ready: bool) -> NetworkManager {
    let config = ManagerConfig {
        transport: TransportChoice::Memory(network.clone()),
        auto_scene_ready,
        ..ManagerConfig::default()
    };
    let mut manager = NetworkManager::new(config);
    manager.register_player_prefab(PLAYER, |_: &PlayerSpawn| Avatar::default());
    manager.register_prefab(CRATE, Crate::default);
    manager
}

/// Ticks every manager `rounds` times, 16 ms apart; returns every event each one reported.
fn pump(
    now: &mut Instant,
    managers: &mut [&mut NetworkManager],
    rounds: usize,
) -> Vec<Vec<ManagerEvent>> {
    let mut events = vec![Vec::new(); managers.len()];
    for _ in 0..rounds {
        for (manager, events) in managers.iter_mut().zip(&mut events) {
            manager.tick(*now).unwrap();
            events.extend(std::iter::from_fn(|| manager.poll_event()));
        }
        *now += Duration::from_millis(16);
    }
    events
}

/// The labels of the crates a client has, sorted.
fn crates(client: &mut NetworkManager) -> Vec<String> {
    let objects = client.client().unwrap();
    let mut labels: Vec<String> = objects
        .objects()
        .filter_map(|id| objects.get::<Crate>(id))
        .map(|c| c.label.to_string())
        .collect();
    labels.sort();
    labels
}

fn spawn_crates(server: &mut NetworkManager, labels: &[&str]) {
    let objects = server.server().unwrap();
    for label in labels {
        let mut object = Crate::default();
        object.label.set((*label).to_owned());
        objects.spawn(CRATE, object, None).unwrap();
    }
}

#[test]
fn clients_load_the_new_scene_and_late_joiners_get_the_current_one() {
    let network = MemoryNetwork::new();
    let addr = "10.0.1.1:7777".parse().unwrap();
    let mut now = driver::now();
    let mut server = manager(&network, true);
    server.start_server(addr).unwrap();
    server.change_scene("lobby").unwrap();
    assert_eq!(server.scene(), Some("lobby"));
    spawn_crates(&mut server, &["lobby crate"]);

    // `quick` loads scenes at once; `slow` reports ready when it wants.
    let mut quick = manager(&network, true);
    let mut slow = manager(&network, false);
    quick.start_client(addr).unwrap();
    slow.start_client(addr).unwrap();
    let events = pump(&mut now, &mut [&mut server, &mut quick, &mut slow], 10);
    let lobby = ManagerEvent::ClientChangeScene("lobby".into());
    assert!(events[1].contains(&lobby) && events[2].contains(&lobby), "{events:?}");
    assert_eq!(events[0].iter().filter(|e| matches!(e, ManagerEvent::ServerReady(_))).count(), 1);
    assert_eq!(crates(&mut quick), ["lobby crate"]);
    assert_eq!(quick.client().unwrap().object_count(), 3, "two players and the crate");
    // Not ready: sent nothing yet, whatever happens on the server.
    assert_eq!(slow.client().unwrap().object_count(), 0);
    assert_eq!(slow.scene(), Some("lobby"));
    slow.scene_ready().unwrap();
    assert!(matches!(slow.scene_ready(), Err(ManagerError::NoSceneLoading)));
    pump(&mut now, &mut [&mut server, &mut quick, &mut slow], 5);
    assert_eq!(slow.client().unwrap().object_count(), 3);

    // The players' state survives the change; the lobby's objects do not.
    let players: Vec<PlayerId> = server.server().unwrap().server().players().collect();
    for player in &players {
        let id = server.player_object(*player).unwrap();
        server.server().unwrap().get_mut::<Avatar>(id).unwrap().score.set(7);
    }
    server.change_scene("arena").unwrap();
    let changed = std::iter::from_fn(|| server.poll_event()).collect::<Vec<_>>();
    assert_eq!(changed, [ManagerEvent::ServerSceneChanged("arena".into())]);
    spawn_crates(&mut server, &["arena crate 1", "arena crate 2"]);
    assert_eq!(server.server().unwrap().object_count(), 4);
    let events = pump(&mut now, &mut [&mut server, &mut quick, &mut slow], 10);
    assert!(events[1].contains(&ManagerEvent::ClientChangeScene("arena".into())));
    assert_eq!(crates(&mut quick), ["arena crate 1", "arena crate 2"]);
    let objects = quick.client().unwrap();
    let scores: Vec<u32> =
        objects.objects().filter_map(|id| objects.get::<Avatar>(id)).map(|a| *a.score).collect();
    assert_eq!(scores, [7, 7]);
    // The slow client forgot the lobby and waits for its own report.
    assert_eq!(slow.client().unwrap().object_count(), 0);
    assert_eq!(slow.scene(), Some("arena"));
    slow.scene_ready().unwrap();
    pump(&mut now, &mut [&mut server, &mut quick, &mut slow], 5);
    assert_eq!(crates(&mut slow), ["arena crate 1", "arena crate 2"]);

    // A late joiner is told the current scene and gets its objects, its own player's too.
    let mut late = manager(&network, true);
    late.start_client(addr).unwrap();
    let events = pump(&mut now, &mut [&mut server, &mut quick, &mut slow, &mut late], 10);
    assert!(events[3].contains(&ManagerEvent::ClientChangeScene("arena".into())), "{events:?}");
    assert_eq!(crates(&mut late), ["arena crate 1", "arena crate 2"]);
    let objects = late.client().unwrap();
    assert_eq!(objects.object_count(), 5, "three players and two crates");
    assert_eq!(objects.objects().filter(|id| objects.is_owned(*id)).count(), 1);
}

#[test]
fn the_host_keeps_its_player_and_changes_scene_in_place() {
    let network = MemoryNetwork::new();
    let addr = "10.0.1.2:7777".parse().unwrap();
    let mut now = driver::now();
    let mut host = manager(&network, true);
    host.start_host(addr).unwrap();
    let me = host.host_player().unwrap();
    let mut client = manager(&network, true);
    client.start_client(addr).unwrap();
    pump(&mut now, &mut [&mut host, &mut client], 10);
    host.change_scene("arena").unwrap();
    spawn_crates(&mut host, &["arena crate"]);
    pump(&mut now, &mut [&mut host, &mut client], 10);
    // The host's player stayed ready (no scene message to itself) and sees the crate.
    assert!(host.server().unwrap().is_ready(me));
    assert_eq!(host.server().unwrap().object_count(), 3);
    assert_eq!(crates(&mut client), ["arena crate"]);
    assert_eq!(client.client().unwrap().object_count(), 3);
    // Scene changes are a server's: a client asking is an error; so is a huge name.
    assert!(matches!(client.change_scene("x"), Err(ManagerError::NotServing(NetworkMode::Client))));
    assert!(matches!(host.change_scene("x".repeat(300)), Err(ManagerError::SceneName)));
    assert_eq!(host.scene(), Some("arena"));
}

#[test]
fn the_spawn_hook_replaces_the_player_prefab() {
    let network = MemoryNetwork::new();
    let addr = "10.0.1.3:7777".parse().unwrap();
    let mut now = driver::now();
    let mut server = manager(&network, true);
    // Every other player is a spectator; the others get a crate with their name on it.
    let mut joined = 0;
    server.set_add_player(move |objects, spawn| {
        joined += 1;
        if joined % 2 == 0 {
            return Ok(None);
        }
        let mut object = Crate::default();
        object.label.set(format!("{}", spawn.player));
        objects.spawn(CRATE, object, Some(spawn.player)).map(Some)
    });
    server.start_server(addr).unwrap();
    let mut a = manager(&network, true);
    let mut b = manager(&network, true);
    a.start_client(addr).unwrap();
    pump(&mut now, &mut [&mut server, &mut a], 5);
    b.start_client(addr).unwrap();
    let events = pump(&mut now, &mut [&mut server, &mut a, &mut b], 10);
    let added: Vec<_> =
        events[0].iter().filter(|e| matches!(e, ManagerEvent::ServerAddPlayer { .. })).collect();
    assert_eq!(added.len(), 0, "the second player is a spectator: {events:?}");
    let players: Vec<PlayerId> = server.server().unwrap().server().players().collect();
    let with_objects = players.iter().filter(|p| server.player_object(**p).is_some()).count();
    assert_eq!(with_objects, 1);
    assert_eq!(server.server().unwrap().object_count(), 1);
    // Both clients see the one crate; only its player owns it; no avatar exists.
    for client in [&mut a, &mut b] {
        let objects = client.client().unwrap();
        assert_eq!(objects.object_count(), 1);
        assert!(objects.objects().all(|id| objects.get::<Avatar>(id).is_none()));
    }
    let owned = |c: &mut NetworkManager| {
        let o = c.client().unwrap();
        o.objects().filter(|id| o.is_owned(*id)).count()
    };
    assert_eq!((owned(&mut a), owned(&mut b)), (1, 0));
}

#[test]
fn persisted_and_replacement_player_objects_survive_a_scene_change_and_misuse_is_an_error() {
    let network = MemoryNetwork::new();
    let addr = "10.0.1.5:7777".parse().unwrap();
    let mut now = driver::now();
    let mut server = manager(&network, true);
    // Not serving yet: both are errors, not silent.
    assert!(matches!(server.persist(NetId(1)), Err(ManagerError::NotServing(_))));
    assert!(matches!(
        server.set_player_object(PlayerId(1), None),
        Err(ManagerError::NotServing(_))
    ));
    server.start_server(addr).unwrap();
    let mut client = manager(&network, true);
    client.start_client(addr).unwrap();
    pump(&mut now, &mut [&mut server, &mut client], 10);
    let player = server.server().unwrap().server().players().next().unwrap();
    let objects = server.server().unwrap();
    let kept = objects.spawn(CRATE, Crate::default(), None).unwrap();
    let mount = objects.spawn(CRATE, Crate::default(), Some(player)).unwrap();
    let old = server.player_object(player).unwrap();
    // Unknown objects and players are errors.
    assert!(matches!(
        server.persist(NetId(9999)),
        Err(ManagerError::Object(ObjectError::UnknownObject(NetId(9999))))
    ));
    assert!(matches!(
        server.set_player_object(player, Some(NetId(9999))),
        Err(ManagerError::Object(ObjectError::UnknownObject(_)))
    ));
    assert!(matches!(
        server.set_player_object(PlayerId(77), Some(mount)),
        Err(ManagerError::Message(MessageError::UnknownPlayer(PlayerId(77))))
    ));
    server.persist(kept).unwrap();
    server.set_player_object(player, Some(mount)).unwrap();
    assert_eq!(server.player_object(player), Some(mount));
    server.change_scene("arena").unwrap();
    // The persisted object and the player's new object stay; its old one and the rest go.
    let objects = server.server().unwrap();
    assert!(objects.contains(kept) && objects.contains(mount));
    assert!(!objects.contains(old));
}
