//! The minimal multiplayer game, on `sturnus` and `serde` only: the server greets each player
//! who joins; each player walks its own avatar with a command. `minimal [ADDR]` plays a server
//! and two clients in one process; `--server`, `--host`, `--client ADDR` run one `play` each.
#![allow(clippy::print_stdout, reason = "an example prints what it does")]
use serde::{Deserialize, Serialize};
use std::{env, error::Error, net::SocketAddr, thread};
use sturnus::prelude::{NetworkMode::*, *};

const USAGE: &str = "usage: minimal [ADDR | --server ADDR | --host ADDR | --client ADDR]";

/// Server → clients: a greeting for each player who joins.
#[derive(Serialize, Deserialize, Message)]
struct Greeting(String);

#[derive(Default, NetworkBehaviour)]
struct Avatar {
    #[sync]
    position: SyncVar<(i32, i32)>,
}

#[network_rpcs]
impl Avatar {
    /// Client → server: one step; the server clamps it (clients are not trusted).
    #[command]
    fn walk(&mut self, _ctx: &mut ServerCtx<'_>, dx: i32, dy: i32) {
        let (x, y) = *self.position;
        self.position.set((x + dx.clamp(-1, 1), y + dy.clamp(-1, 1)));
    }
}

fn play(mode: NetworkMode, at: SocketAddr, name: &str, ticks: u64) -> Result<(), ManagerError> {
    let step = if name == "bob" { (0, 1) } else { (1, 0) }; // bob walks north, the others east
    let mut game = NetworkManager::new(ManagerConfig::default());
    game.register_player_prefab(PrefabId::of_name("avatar"), |_| Avatar::default());
    game.register_message::<Greeting>()?;
    match mode {
        Client => game.start_client(at)?,
        Host => game.start_host(at).map(drop)?,
        _ => game.start_server(at).map(drop)?,
    }
    game.run(30, |game| {
        while let Some(event) = game.poll_event() {
            if let ManagerEvent::ServerAddPlayer { player, .. } = event {
                let _ = game.broadcast(&Greeting(format!("welcome, {player}!")));
            }
        }
        while let Some(Greeting(text)) = game.poll_from_server() {
            println!("{name} hears: {text}");
        }
        if let Some(avatar) = game.local_player::<Avatar>().filter(|_| game.ticks() % 10 == 0) {
            let _ = avatar.walk(game, step.0, step.1);
        }
        if game.ticks() % 30 == 0 {
            let seen = game.objects().filter_map(|id| game.get::<Avatar>(id));
            println!("{name} sees avatars at {:?}", seen.map(|a| *a.position).collect::<Vec<_>>());
        }
        game.ticks() < ticks
    })
}

fn main() -> Result<(), Box<dyn Error>> {
    sturnus::init_logging();
    let args: Vec<String> = env::args().skip(1).collect();
    let addr = |i| args.get(i).map_or("127.0.0.1:7788", String::as_str).parse().map_err(|_| USAGE);
    match args.first().map(String::as_str) {
        Some("--server") => play(Server, addr(1)?, "server", u64::MAX)?,
        Some("--host") => play(Host, addr(1)?, "host", u64::MAX)?,
        Some("--client") => play(Client, addr(1)?, "you", u64::MAX)?,
        Some("--help" | "-h") => println!("{USAGE}"),
        _ => {
            let addr = addr(0)?;
            thread::scope(|s| {
                s.spawn(|| play(Server, addr, "server", 100).expect("the server failed"));
                s.spawn(|| play(Client, addr, "ada", 90).expect("ada failed"));
                play(Client, addr, "bob", 90)
            })?;
        }
    }
    Ok(())
}
