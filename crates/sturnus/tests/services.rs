//! The `NetworkManager` through `sturnusd` (run in this process on real sockets): a host creates
//! a match with `host_match`, players join it by code with `join_match`, and the game plays
//! the same whether the match is relayed or direct — the same players, objects, SyncVars and
//! messages. Only the relay's counters tell the two apart.
#![allow(
    clippy::disallowed_methods,
    reason = "real processes and sockets: the test waits on the wall clock (never asserts on it)"
)]

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sturnus::prelude::*;
use sturnus::services::api::{Bytes, CreateMatch, HostMode, JoinRequest};
use sturnus::services::{JoinCode, LobbyClient};
use sturnus_services::config::Config;
use sturnus_services::server::{Bound, serve};

const PLAYER: PrefabId = PrefabId::of_name("services-test-player");
const PROTOCOL: u64 = 0x5354_5552_0000_0019;

#[derive(Default, NetworkBehaviour)]
struct Avatar {
    #[sync]
    x: SyncVar<f32>,
}

#[derive(Serialize, Deserialize, Message, Debug, Clone, PartialEq)]
struct Shout(String);

/// `sturnusd` on a thread of this process, stopped when dropped.
struct Service {
    bound: Bound,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Service {
    fn start() -> Self {
        let config = Config {
            http: "127.0.0.1:0".parse().unwrap(),
            relay: Some("127.0.0.1:0".parse().unwrap()),
            ..Config::default()
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (tell, bound) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime
                .block_on(serve(config, async { drop(stopped.await) }, |b| tell.send(b).unwrap()))
                .unwrap();
        });
        let bound = bound.recv_timeout(Duration::from_secs(20)).unwrap();
        Self { bound, stop: Some(stop), thread: Some(thread) }
    }

    fn lobby(&self) -> LobbyClient {
        LobbyClient::new(&format!("http://{}", self.bound.http)).unwrap()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

fn manager() -> NetworkManager {
    let mut manager = NetworkManager::new(ManagerConfig::default());
    manager.register_player_prefab(PLAYER, |_: &PlayerSpawn| {
        let mut avatar = Avatar::default();
        avatar.x.set(7.0);
        avatar
    });
    manager.register_message::<Shout>().unwrap();
    manager
}

/// What each side saw of a short game: avatars and their SyncVars, and the shouts heard.
#[derive(Debug, PartialEq)]
struct Seen {
    avatars: Vec<f32>,
    heard: Vec<String>,
}

fn play(service: &Service, host_mode: HostMode, bind: SocketAddr) -> Vec<Seen> {
    let lobby = service.lobby();
    let mut host = manager();
    let request = CreateMatch {
        name: "facade".into(),
        size: 4,
        listed: true,
        password: None,
        attributes: Default::default(),
        region: None,
        protocol_id: PROTOCOL,
        host: host_mode,
    };
    let hosted = host.host_match(&lobby, &request, bind).unwrap();
    let code: JoinCode = hosted.join_code();
    let mut players: Vec<NetworkManager> = ["ada", "bob"]
        .iter()
        .map(|name| {
            let mut player = manager();
            let request =
                JoinRequest { password: None, user_data: Some(Bytes(name.as_bytes().to_vec())) };
            player.join_match(&lobby, code, &request).unwrap();
            player
        })
        .collect();
    let mut shouted = [false; 2];
    let mut heard: Vec<Vec<String>> = vec![Vec::new(); 2];
    let start = driver::now();
    loop {
        let now = driver::now();
        assert!(now - start < Duration::from_secs(30), "the game never settled: {heard:?}");
        host.tick(now).unwrap();
        while let Some((_, Shout(text))) = host.poll_from_clients() {
            host.broadcast(&Shout(format!("echo {text}"))).unwrap();
        }
        for (i, player) in players.iter_mut().enumerate() {
            player.tick(now).unwrap();
            if !shouted[i] && player.local_player_id().is_some() {
                player.send_to_server(&Shout(format!("from {i}"))).unwrap();
                shouted[i] = true;
            }
            while let Some(Shout(text)) = player.poll_from_server() {
                heard[i].push(text);
            }
        }
        let everyone_sees_three = players.iter().all(|p| {
            p.objects().filter_map(|id| p.get::<Avatar>(id)).filter(|a| *a.x.get() == 7.0).count()
                == 3
        });
        if everyone_sees_three && heard.iter().all(|h| h.len() == 2) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let seen = players
        .iter()
        .zip(heard)
        .map(|(p, mut heard)| {
            heard.sort();
            let avatars = p.objects().filter_map(|id| p.get::<Avatar>(id)).map(|a| *a.x.get());
            Seen { avatars: avatars.collect(), heard }
        })
        .collect();
    host.stop();
    hosted.close().unwrap();
    // Players see the host go: told, not timed out.
    let start = driver::now();
    for player in &mut players {
        loop {
            let now = driver::now();
            assert!(now - start < Duration::from_secs(10), "a player never saw the host leave");
            player.tick(now).unwrap();
            if player.mode() == NetworkMode::Offline {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    seen
}

#[test]
fn a_relayed_match_plays_like_a_direct_one() {
    let service = Service::start();
    let lobby = service.lobby();
    let relayed = play(&service, HostMode::Relay, "127.0.0.1:0".parse().unwrap());
    // The relay publishes its counters every 100 ms.
    let start = driver::now();
    let mut forwarded = 0;
    while forwarded <= 20 && driver::now() - start < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
        forwarded = lobby.status().unwrap().relay_forwarded;
    }
    assert!(forwarded > 20, "the relayed game went through the relay ({forwarded} datagrams)");
    std::thread::sleep(Duration::from_millis(300));
    let forwarded = lobby.status().unwrap().relay_forwarded;

    let addr = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let direct = play(&service, HostMode::Direct { address: addr }, addr);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        lobby.status().unwrap().relay_forwarded,
        forwarded,
        "the direct game did not touch the relay"
    );
    assert_eq!(relayed, direct, "the same game either way");
    assert_eq!(relayed[0].heard, ["echo from 0", "echo from 1"]);
    assert_eq!(lobby.status().unwrap().matches, 0, "closed matches are destroyed");
}
