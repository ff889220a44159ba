//! The HUD: a terminal status view of a manager, a server or a client — the mode, the
//! address, the players, and per connection RTT, loss and bytes per second between renders.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sturnus::hud::{ConnectionStatus, Hud, Peer, Status};
use sturnus::prelude::*;
use sturnus::transport::{Bytes, ConnectionStats};
use sturnus_testkit::{SimNet, lossy_link};

fn memory_manager(network: &MemoryNetwork) -> NetworkManager {
    let config = ManagerConfig {
        transport: TransportChoice::Memory(network.clone()),
        ..ManagerConfig::default()
    };
    NetworkManager::new(config)
}

/// The line of `peer` (`player 3`, `server`) in a render.
fn line_of<'a>(text: &'a str, peer: &str) -> &'a str {
    let prefix = format!("  {peer} ");
    text.lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no line for `{peer}` in:\n{text}"))
}

/// The columns of a connection's line, `peer` counted as its words.
fn columns(line: &str) -> Vec<String> {
    // Cells are separated by at least one space; the multi-word cells (`player 3`, `12.0 %`,
    // `600 B/s`) are glued back together.
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut cells = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let word = words[i];
        let next = words.get(i + 1).copied();
        if matches!(next, Some("%" | "B/s" | "KiB/s" | "MiB/s"))
            || (word == "player" && next.is_some())
        {
            cells.push(format!("{word} {}", next.unwrap()));
            i += 2;
        } else {
            cells.push(word.to_owned());
            i += 1;
        }
    }
    cells
}

#[test]
fn an_offline_manager_says_so() {
    let network = MemoryNetwork::new();
    let mut game = memory_manager(&network);
    let mut hud = Hud::new();
    let now = driver::now();
    assert_eq!(hud.render(&game, now), "sturnus offline\n");
    // And again once a server it ran has stopped.
    game.start_server("10.0.0.1:7777".parse().unwrap()).unwrap();
    assert!(hud.render(&game, now).starts_with("sturnus server"));
    game.stop();
    assert_eq!(hud.render(&game, now), "sturnus offline\n");
    let mut written = Vec::new();
    hud.write_to(&mut written, &game, now).unwrap();
    assert_eq!(written, b"sturnus offline\n");
}

#[test]
fn a_server_lists_its_players_and_a_client_its_server() {
    let network = MemoryNetwork::new();
    let addr: SocketAddr = "10.0.0.1:7777".parse().unwrap();
    let mut server = memory_manager(&network);
    server.start_server(addr).unwrap();
    let mut clients: Vec<NetworkManager> = (0..2).map(|_| memory_manager(&network)).collect();
    for client in &mut clients {
        client.start_client(addr).unwrap();
    }
    let mut now = driver::now();
    for _ in 0..10 {
        server.tick(now).unwrap();
        for client in &mut clients {
            client.tick(now).unwrap();
        }
        now += Duration::from_millis(16);
    }
    let mut hud = Hud::new();
    let text = hud.render(&server, now);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("sturnus server · 10.0.0.1:7777 · 2 players"), "{text}");
    assert!(lines.next().unwrap().trim_start().starts_with("peer"), "{text}");
    assert_eq!(lines.count(), 2, "{text}");
    let mut players: Vec<PlayerId> = server.server_ref().unwrap().server().players().collect();
    players.sort();
    assert_eq!(players.len(), 2);
    for (player, client) in players.iter().zip(&clients) {
        let client_addr = client.client_ref().unwrap().client().local_addr().unwrap();
        let cells = columns(line_of(&text, &player.to_string()));
        // A memory transport measures nothing: the statistics columns say so.
        assert_eq!(
            cells,
            [
                player.to_string(),
                client_addr.to_string(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into()
            ],
            "{text}"
        );
    }

    let text = hud.render(&clients[0], now);
    let own = clients[0].client_ref().unwrap().client().local_addr().unwrap();
    assert_eq!(text.lines().next(), Some(&*format!("sturnus client · authenticated · {own}")));
    assert_eq!(columns(line_of(&text, "server"))[..2], ["server", "10.0.0.1:7777"], "{text}");

    // A player that leaves leaves the list.
    clients[0].stop();
    for _ in 0..3 {
        server.tick(now).unwrap();
        now += Duration::from_millis(16);
    }
    let text = hud.render(&server, now);
    assert!(text.starts_with("sturnus server · 10.0.0.1:7777 · 1 player\n"), "{text}");
    assert!(!text.contains(&format!("  {} ", players[0])), "{text}");
    line_of(&text, &players[1].to_string());
}

#[test]
fn a_host_lists_its_own_player_as_local() {
    let network = MemoryNetwork::new();
    let mut host = memory_manager(&network);
    host.start_host("10.0.0.1:7777".parse().unwrap()).unwrap();
    let me = host.host_player().unwrap();
    let text = Hud::new().render(&host, driver::now());
    assert!(text.starts_with("sturnus host · 10.0.0.1:7777 · 1 player\n"), "{text}");
    assert_eq!(
        columns(line_of(&text, &me.to_string()))[..3],
        [me.to_string(), "local".into(), "-".into()],
        "{text}"
    );
}

fn stats(bytes_in: u64, bytes_out: u64) -> ConnectionStats {
    ConnectionStats {
        rtt: Duration::from_micros(12_300),
        packets_sent: 200,
        packets_lost_out: 10,
        packets_received: 90,
        packets_lost_in: 10,
        bytes_received: bytes_in,
        bytes_sent: bytes_out,
        ..ConnectionStats::default()
    }
}

fn server_status(connections: &[(u32, ConnectionStats)]) -> Status {
    let mut status = Status::offline();
    status.mode = NetworkMode::Server;
    status.connections = connections
        .iter()
        .map(|(id, stats)| {
            let mut connection = ConnectionStatus::new(Peer::Player(PlayerId(*id)));
            connection.stats = Some(*stats);
            connection
        })
        .collect();
    status
}

#[test]
fn rates_are_the_bytes_between_two_renders_over_the_time_between_them() {
    let mut hud = Hud::new();
    let t0 = driver::now();
    // First sight of a connection: no rate yet, but RTT and loss.
    let text = hud.render_status(&server_status(&[(7, stats(1_000, 2_000))]), t0);
    assert_eq!(
        columns(line_of(&text, "player 7")),
        ["player 7", "-", "12.3ms", "5.0 %", "10.0 %", "-", "-"],
        "{text}"
    );
    // Two seconds later: 1200 bytes more in, 500 more out.
    let t1 = t0 + Duration::from_secs(2);
    let text = hud.render_status(&server_status(&[(7, stats(2_200, 2_500))]), t1);
    assert_eq!(columns(line_of(&text, "player 7"))[5..], ["600 B/s", "250 B/s"], "{text}");
    // A render at the same instant has no rate, and keeps the base of the one before.
    let text = hud.render_status(&server_status(&[(7, stats(2_300, 2_500))]), t1);
    assert_eq!(columns(line_of(&text, "player 7"))[5..], ["-", "-"], "{text}");
    // Half a second later: 512 bytes more in since t1 is 1 KiB/s; a new player has no rate yet.
    let t2 = t1 + Duration::from_millis(500);
    let status = server_status(&[(7, stats(2_712, 2_500)), (8, stats(50, 50))]);
    let text = hud.render_status(&status, t2);
    assert!(text.starts_with("sturnus server · 2 players\n"), "{text}");
    assert_eq!(columns(line_of(&text, "player 7"))[5..], ["1.0 KiB/s", "0 B/s"], "{text}");
    assert_eq!(columns(line_of(&text, "player 8"))[5..], ["-", "-"], "{text}");
    // Counters that went back are another connection: no rate from the old one's.
    let t3 = t2 + Duration::from_secs(1);
    let text = hud.render_status(&server_status(&[(7, stats(10, 10)), (8, stats(150, 80))]), t3);
    assert_eq!(columns(line_of(&text, "player 7"))[5..], ["-", "-"], "{text}");
    assert_eq!(columns(line_of(&text, "player 8"))[5..], ["100 B/s", "30 B/s"], "{text}");
    // A player that left and came back (never under the same id, but a status may say so)
    // starts over.
    let t4 = t3 + Duration::from_secs(1);
    hud.render_status(&server_status(&[(8, stats(150, 80))]), t4);
    let t5 = t4 + Duration::from_secs(1);
    let text = hud.render_status(&server_status(&[(7, stats(20, 20))]), t5);
    assert_eq!(columns(line_of(&text, "player 7"))[5..], ["-", "-"], "{text}");
}

#[derive(Debug, Serialize, Deserialize, Message)]
struct News {
    text: String,
}

/// Over a simulated network whose endpoints count real bytes: the rates are the counters'
/// differences between two renders, and the server's out is the client's in.
#[test]
fn rates_of_a_simulated_connection() {
    let sim = SimNet::new(lossy_link(0.0), 1);
    let server_config = ServerConfig::default();
    let endpoint = server_config.channels.endpoint_config();
    let mut server = NetworkServer::new(server_config).unwrap();
    let now = sim.now();
    server.start(now, sim.endpoint(endpoint.clone())).unwrap();
    let mut client = NetworkClient::new(ClientConfig::default()).unwrap();
    client.register_queue::<News>().unwrap();
    let client_endpoint = EndpointConfig { accept_connections: false, ..endpoint };
    let addr = server.local_addr().unwrap();
    client.connect(now, sim.endpoint(client_endpoint), addr).unwrap();
    let step = |server: &mut NetworkServer, client: &mut NetworkClient, until: Instant| {
        while sim.now() < until {
            let now = sim.now();
            server.update(now).unwrap();
            client.update(now).unwrap();
            sim.advance_to(now + Duration::from_millis(1));
        }
    };
    let start = now;
    step(&mut server, &mut client, start + Duration::from_millis(200));
    assert!(client.is_authenticated());
    let player = server.players().next().unwrap();

    let (mut server_hud, mut client_hud) = (Hud::new(), Hud::new());
    let t1 = sim.now();
    let before = server.player_connection_stats(player).unwrap();
    let client_before = client.connection_stats().unwrap();
    server_hud.render_status(&Status::of_server(&server), t1);
    client_hud.render_status(&Status::of_client(&client), t1);

    for i in 0..50 {
        server.send(player, &News { text: format!("news {i}: {}", "x".repeat(200)) }).unwrap();
        step(&mut server, &mut client, t1 + Duration::from_millis(20 * (i + 1)));
    }
    step(&mut server, &mut client, t1 + Duration::from_millis(1_500));
    let t2 = sim.now();
    let after = server.player_connection_stats(player).unwrap();
    let client_after = client.connection_stats().unwrap();
    let nanos = (t2 - t1).as_nanos();
    let per_second = |a: u64, b: u64| {
        let rate = u128::from(b - a) * 1_000_000_000 / nanos;
        format!("{}/s", Bytes(u64::try_from(rate).unwrap()))
    };
    let expected_in = per_second(before.bytes_received, after.bytes_received);
    let expected_out = per_second(before.bytes_sent, after.bytes_sent);
    assert_ne!(expected_in, expected_out, "the test tells in from out");

    let text = server_hud.render_status(&Status::of_server(&server), t2);
    let cells = columns(line_of(&text, &player.to_string()));
    assert_eq!(cells[1], client.local_addr().unwrap().to_string(), "{text}");
    assert_eq!(cells[5..], [expected_in.clone(), expected_out.clone()], "{text}");
    // The client's view of the same connection: mostly in.
    let text = client_hud.render_status(&Status::of_client(&client), t2);
    assert!(text.starts_with("sturnus client · authenticated · "), "{text}");
    let cells = columns(line_of(&text, "server"));
    assert_eq!(cells[1], addr.to_string(), "{text}");
    let expected = [
        per_second(client_before.bytes_received, client_after.bytes_received),
        per_second(client_before.bytes_sent, client_after.bytes_sent),
    ];
    assert_eq!(cells[5..], expected, "{text}");

    // A stopped server is offline.
    server.stop();
    assert_eq!(server_hud.render_status(&Status::of_server(&server), t2), "sturnus offline\n");
}
