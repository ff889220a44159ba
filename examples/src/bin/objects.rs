//! Networked objects on the object layer: a server spawns a tank for each player and a
//! scoreboard, two clients (ada and bob) watch them and fire Commands at each other's tank.
//! The server runs each command (only the tank's owner may fire it), changes SyncVars and a
//! SyncMap, and answers with a ClientRpc (an explosion every player sees) and a TargetRpc (a
//! hit marker only the shooter sees). Everything runs in one process over UDP on 127.0.0.1;
//! the managers are sans-IO, and this program is their driver: it reads the clock with
//! `driver::now()`, passes it to every `update`, and sleeps with `wait`.
//!
//! ```text
//! cargo run -p sturnus-examples --bin objects [-- --shots N]
//! ```
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "an example prints what it does")]

use std::process::ExitCode;
use std::time::Duration;

use sturnus_examples::{udp_client, udp_server};
use sturnus_message::{
    ClientConfig, Login, NetworkClient, NetworkServer, PasswordAuthenticator, ServerConfig,
    ServerEvent, driver,
};
use sturnus_object::{
    ClientCtx, ClientObjectEvent, ClientObjectManager, MapChange, NetId, NetworkBehaviour,
    PrefabId, ServerCtx, ServerObjectManager, SyncList, SyncMap, SyncVar, network_rpcs,
};

const TANK: PrefabId = PrefabId::of_name("tank");
const SCOREBOARD: PrefabId = PrefabId::of_name("scoreboard");
const PASSWORD: &str = "starling";

/// A player's tank. The `#[sync]` fields travel from the server to every client; `viewer` and
/// `scoreboard` are local (whose screen this copy is on; where the server keeps score).
#[derive(Default, NetworkBehaviour)]
struct Tank {
    #[sync(hook = Tank::on_health_changed)]
    health: SyncVar<i32>,
    #[sync]
    name: SyncVar<String>,
    #[sync]
    shells: SyncList<String>,
    viewer: &'static str,
    scoreboard: Option<NetId>,
}

impl Tank {
    fn on_health_changed(&mut self, old: &i32, new: &i32) {
        println!("[{}] {}'s tank: health {old} -> {new}", self.viewer, *self.name);
    }
}

#[network_rpcs(vis = pub(crate))]
impl Tank {
    /// Client → server, owner only: fire a shell at `target`.
    #[command]
    fn fire(&mut self, ctx: &mut ServerCtx<'_>, target: NetId) {
        let Some(shell) = self.shells.pop() else { return };
        let shooter = self.name.get().clone();
        let Some(victim) = ctx.get_mut::<Tank>(target) else { return };
        victim.health.modify(|health| *health -= 10);
        let victim_name = victim.name.get().clone();
        println!("[server] {shooter} fires a {shell} shell at {victim_name}");
        if let Some(board) = self.scoreboard.and_then(|id| ctx.get_mut::<Scoreboard>(id)) {
            let score = board.scores.get(&shooter).copied().unwrap_or(0);
            board.scores.insert(shooter.clone(), score + 10);
        }
        let sender = ctx.sender();
        if let Some(victim) = ctx.handle::<Tank>(target) {
            let _ = victim.explode(ctx, shooter);
        }
        let _ = ctx.this::<Tank>().hit_marker(ctx, sender, 10);
    }

    /// Server → every client that sees the tank.
    #[client_rpc]
    fn explode(&mut self, _ctx: &mut ClientCtx<'_>, shooter: String) {
        println!("[{}] boom! {shooter} hit {}'s tank", self.viewer, *self.name);
    }

    /// Server → the shooter only.
    #[target_rpc]
    fn hit_marker(&mut self, _ctx: &mut ClientCtx<'_>, damage: i32) {
        println!("[{}] hit marker: {damage} damage dealt", self.viewer);
    }
}

/// Points per player: a SyncMap sends each insert, not the whole map.
#[derive(Default, NetworkBehaviour)]
struct Scoreboard {
    #[sync(hook = Scoreboard::on_score)]
    scores: SyncMap<String, u32>,
    viewer: &'static str,
}

impl Scoreboard {
    fn on_score(&mut self, change: &MapChange<String, u32>) {
        if let MapChange::Inserted { key, value } | MapChange::Set { key, new: value, .. } = change
        {
            println!("[{}] scoreboard: {key} has {value}", self.viewer);
        }
    }
}

fn main() -> ExitCode {
    sturnus_examples::init_logging();
    if sturnus_examples::wants_help() {
        println!("usage: objects [--shots N]");
        return ExitCode::SUCCESS;
    }
    let mut shots = 3;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next().and_then(|n| n.parse().ok())) {
            ("--shots", Some(n)) => shots = n,
            _ => {
                eprintln!("usage: objects [--shots N]");
                return ExitCode::FAILURE;
            }
        }
    }
    match run(shots) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("objects: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(shots: usize) -> Result<(), Box<dyn std::error::Error>> {
    // The server: a message-layer server under an object manager.
    let start = driver::now();
    let config = ServerConfig::default();
    let transport = udp_server(&config.channels, "127.0.0.1:0".parse()?)?;
    let mut server = ServerObjectManager::new(NetworkServer::new(config)?)?;
    server.server_mut().set_authenticator(PasswordAuthenticator::new(PASSWORD));
    let addr = server.start(start, transport)?.ok_or("a UDP transport has an address")?;
    let board = server.spawn(SCOREBOARD, Scoreboard::default(), None)?;
    println!("[server] listening on {addr}");

    // Two clients, each knowing how to build the prefabs the server spawns.
    let mut clients = Vec::new();
    for name in ["ada", "bob"] {
        let config = ClientConfig::default();
        let transport = udp_client(&config.channels, addr)?;
        let mut client = ClientObjectManager::new(NetworkClient::new(config)?)?;
        client.register_prefab(TANK, move || Tank { viewer: name, ..Tank::default() });
        client
            .register_prefab(SCOREBOARD, move || Scoreboard { viewer: name, ..Default::default() });
        let login = Login { name: name.into(), password: PASSWORD.into() };
        client.client_mut().set_credentials(&login)?;
        client.connect(start, transport, addr)?;
        clients.push((name, client, 0));
    }

    let final_health = 100 - 10 * i32::try_from(shots)?;
    let final_score = 10 * u32::try_from(shots)?;
    let clients_count = clients.len();
    let mut done_at = None;
    let mut frame = 0u64;
    loop {
        let now = driver::now();
        if now - start > Duration::from_secs(20) {
            break;
        }
        frame += 1;
        server.update(now)?;
        while let Some(event) = server.poll_event() {
            if let ServerEvent::Authenticated(player) = event {
                // Each player gets a tank it owns, with a few shells.
                let name = server.server_mut().player(player);
                let name = name.and_then(|p| p.auth_data::<String>().cloned());
                let name = name.unwrap_or_default();
                let mut tank = Tank { scoreboard: Some(board), ..Tank::default() };
                tank.health.set(100);
                tank.name.set(name.clone());
                for _ in 0..shots {
                    tank.shells.push("HE".into());
                }
                let id = server.spawn(TANK, tank, Some(player))?;
                println!("[server] {name} joined; spawned {id}");
            }
        }
        for (name, client, fired) in &mut clients {
            client.update(now)?;
            while let Some(event) = client.poll_object_event() {
                if let ClientObjectEvent::Spawned { net_id, prefab, owned, .. } = event {
                    if prefab == TANK {
                        let tank = client.get::<Tank>(net_id).expect("just spawned");
                        let whose = if owned { "mine" } else { "theirs" };
                        println!(
                            "[{name}] sees {}'s tank ({whose}), health {}",
                            *tank.name, *tank.health
                        );
                    }
                }
            }
            // Every 20 frames, fire at the first tank that is not ours.
            let mine = client.objects().find(|id| client.is_owned(*id));
            let target = client
                .objects()
                .find(|id| !client.is_owned(*id) && client.prefab(*id) == Some(TANK));
            if let (Some(mine), Some(target)) = (mine, target) {
                if *fired < shots && frame % 20 == 0 {
                    let tank = client.handle::<Tank>(mine).expect("our tank");
                    tank.fire(client, target)?;
                    *fired += 1;
                }
            }
        }
        // Once every shot has landed everywhere (health and score: the tanks and the
        // scoreboard are synced on their own timers), let the last updates arrive and stop.
        let landed = clients.iter().all(|(_, client, fired)| {
            let tanks: Vec<_> = client.objects().filter_map(|id| client.get::<Tank>(id)).collect();
            let scored = client.get::<Scoreboard>(board).is_some_and(|b| {
                tanks.iter().all(|tank| b.scores.get(tank.name.get()) == Some(&final_score))
            });
            *fired == shots
                && scored
                && tanks.len() == clients_count
                && tanks.iter().all(|tank| *tank.health == final_health)
        });
        match done_at {
            None if landed => done_at = Some(frame),
            Some(at) if frame > at + 20 => break,
            _ => {}
        }
        // Sleep until a datagram arrives, a timer is due, or 2 ms pass.
        server.server_mut().wait(Duration::from_millis(2))?;
    }
    for (name, client, _) in &clients {
        let scores = client.get::<Scoreboard>(board).map(|b| {
            let mut scores: Vec<_> = b.scores.iter().map(|(k, v)| format!("{k} {v}")).collect();
            scores.sort();
            scores.join(", ")
        });
        println!("[{name}] final scores: {}", scores.unwrap_or_default());
    }
    if done_at.is_none() {
        return Err("not every shot landed in time".into());
    }
    Ok(())
}
