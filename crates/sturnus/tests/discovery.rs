//! The NetworkManager advertises a running host on the LAN: a player's search finds it, and
//! the address found is where the player joins. On loopback (the advertiser on a free port,
//! searched by unicast): broadcast and multicast across a link are tested in
//! crates/discovery/tests/netns.rs.

use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

use sturnus::discovery::{Advertisement, FoundHost, LanAdvertiser, LanSearchConfig, lan_search};
use sturnus::manager::ManagerError;
use sturnus::prelude::*;

const PLAYER: PrefabId = PrefabId::of_name("discovery-test-player");
const GAME: u64 = 0x5354_5552_4e55_5303;

#[derive(Default, NetworkBehaviour)]
struct Avatar {
    #[sync]
    x: SyncVar<f32>,
}

fn manager() -> NetworkManager {
    let config = ManagerConfig { transport: TransportChoice::Udp, ..ManagerConfig::default() };
    let mut manager = NetworkManager::new(config);
    manager.register_player_prefab(PLAYER, |_: &PlayerSpawn| Avatar::default());
    manager
}

/// A loopback advertiser of `GAME` v1 with no game port (the manager fills it in).
fn advertiser() -> (LanAdvertiser, SocketAddr) {
    let ad = Advertisement::new(GAME, 1, 0, b"Alice's game".to_vec()).unwrap();
    let advertiser = LanAdvertiser::bind_addr("127.0.0.1:0".parse().unwrap(), ad).unwrap();
    let addr = advertiser.local_addr().unwrap();
    (advertiser, addr)
}

/// Searches `discovery` from another thread (the game's `sturnus::discovery::lan_search`)
/// while `host` ticks, as a game loop would.
fn search_while_ticking(host: &mut NetworkManager, discovery: SocketAddr) -> Vec<FoundHost> {
    let mut config = LanSearchConfig::new(GAME, 1);
    config.targets = vec![discovery];
    let search = thread::spawn(move || lan_search(&config).unwrap());
    while !search.is_finished() {
        host.tick(driver::now()).unwrap();
        driver::sleep(Duration::from_millis(2));
    }
    search.join().unwrap()
}

#[test]
fn a_host_advertised_on_the_lan_is_found_and_joined_at_the_address_found() {
    let mut host = manager();
    let listening = host.start_host("127.0.0.1:0".parse().unwrap()).unwrap().unwrap();
    assert_eq!(host.local_addr(), Some(listening));
    let (advertiser, discovery) = advertiser();
    host.advertise_on_lan_with(advertiser).unwrap();

    let found = search_while_ticking(&mut host, discovery);
    assert_eq!(found.len(), 1, "{found:?}");
    // The game port is the one the host listens on, filled in by the manager.
    assert_eq!(found[0].addr, listening);
    assert_eq!(found[0].info, b"Alice's game");
    assert!(found[0].found_after <= Duration::from_secs(1), "{:?}", found[0].found_after);

    // The player joins at the address found.
    let mut player = manager();
    player.start_client(found[0].addr).unwrap();
    let (mut joined, mut connected) = (None, false);
    for _ in 0..2_000 {
        let now = driver::now();
        host.tick(now).unwrap();
        player.tick(now).unwrap();
        while let Some(event) = host.poll_event() {
            if let ManagerEvent::ServerAddPlayer { player, object } = event {
                if Some(player) != host.host_player() {
                    joined = Some(object);
                }
            }
        }
        while let Some(event) = player.poll_event() {
            connected |= event == ManagerEvent::ClientConnect;
        }
        if joined.is_some() && connected && player.local_player_id().is_some() {
            break;
        }
        driver::sleep(Duration::from_millis(2));
    }
    assert!(connected, "the player was not accepted");
    let object = joined.expect("the player's object was spawned on the host");
    assert_eq!(player.local_player_id(), Some(object), "the player has its own object");

    // Stopped, the host no longer answers (its advertiser is gone with the server).
    host.stop();
    assert!(host.lan_advertiser().is_none());
    assert!(search_while_ticking(&mut host, discovery).is_empty());
}

#[test]
fn only_a_running_server_or_host_advertises() {
    let ad = || Advertisement::new(GAME, 1, 7777, Vec::new()).unwrap();
    let mut offline = manager();
    let err = offline.advertise_on_lan(ad()).unwrap_err();
    assert!(matches!(err, ManagerError::NotServing(NetworkMode::Offline)), "{err}");
    let err = offline.advertise_on_lan_with(advertiser().0).unwrap_err();
    assert!(matches!(err, ManagerError::NotServing(NetworkMode::Offline)), "{err}");

    let mut host = manager();
    let server = host.start_server("127.0.0.1:0".parse().unwrap()).unwrap().unwrap();
    let mut client = manager();
    client.start_client(server).unwrap();
    let err = client.advertise_on_lan(ad()).unwrap_err();
    assert!(matches!(err, ManagerError::NotServing(NetworkMode::Client)), "{err}");
    assert!(client.lan_advertiser().is_none());

    // A dedicated server advertises; stopping the advertising leaves it serving.
    host.advertise_on_lan_with(advertiser().0).unwrap();
    assert_eq!(host.lan_advertiser().unwrap().responder_mut().advertisement_mut().port(), {
        server.port()
    });
    host.stop_advertising();
    assert!(host.lan_advertiser().is_none());
    assert_eq!(host.mode(), NetworkMode::Server);
}
