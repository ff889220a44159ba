//! A party through `sturnusd`: a host creates a match on the matchmaker and plays through its
//! relay (no public address, no port forwarding); friends join with the code it prints.
//!
//! ```text
//! cargo run --release -p sturnus-services --bin sturnusd           # in one terminal
//! cargo run -p sturnus-examples --bin party -- --host              # prints a code
//! cargo run -p sturnus-examples --bin party -- --join CODE --name ada
//! ```
//!
//! Each player shouts a line once connected; the host answers every shout to everyone. The
//! host leaves after `--shouts N` shouts (or `--quit-after-ms`), destroying the match; its
//! players see it go. Every packet is encrypted with keys the relay never holds.
//! `--lobby URL` names the matchmaker (default `http://127.0.0.1:7780`); `--direct ADDR`
//! hosts without the relay, listening at ADDR.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "an example prints what it does")]

use std::error::Error;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sturnus::prelude::*;
use sturnus::services::api::{Bytes, CreateMatch, HostMode, JoinRequest};
use sturnus::services::{JoinCode, LobbyClient};

const USAGE: &str = "usage: party [--lobby URL] (--host [--direct ADDR] [--shouts N] | --join CODE \
                     [--name NAME]) [--quit-after-ms N]";

/// The game's protocol id: tokens are minted for it.
const PROTOCOL: u64 = 0x5041_5254_5930_0001;

/// Player → host, and host → everyone.
#[derive(Serialize, Deserialize, Message)]
struct Shout(String);

struct Options {
    lobby: String,
    join: Option<JoinCode>,
    direct: Option<SocketAddr>,
    name: String,
    shouts: usize,
    quit_after: Option<Duration>,
}

fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
    let mut o = Options {
        lobby: "http://127.0.0.1:7780".into(),
        join: None,
        direct: None,
        name: "player".into(),
        shouts: usize::MAX,
        quit_after: None,
    };
    let mut host = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--lobby" => o.lobby = value()?,
            "--host" => host = true,
            "--join" => o.join = Some(value()?.parse().map_err(|e| format!("--join: {e}"))?),
            "--direct" => o.direct = Some(value()?.parse().map_err(|e| format!("--direct: {e}"))?),
            "--name" => o.name = value()?,
            "--shouts" => o.shouts = value()?.parse().map_err(|e| format!("--shouts: {e}"))?,
            "--quit-after-ms" => {
                let ms = value()?.parse().map_err(|e| format!("--quit-after-ms: {e}"))?;
                o.quit_after = Some(Duration::from_millis(ms));
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if host == o.join.is_some() {
        return Err(format!("choose --host or --join CODE\n{USAGE}"));
    }
    Ok(o)
}

fn say(line: &str) {
    println!("{line}");
    // Scripts read the lines as they come.
    let _ = std::io::stdout().flush();
}

fn host(o: &Options, lobby: &LobbyClient) -> Result<(), Box<dyn Error>> {
    let mut game = NetworkManager::new(ManagerConfig::default());
    game.register_message::<Shout>()?;
    let request = CreateMatch {
        name: "party".into(),
        size: 8,
        listed: false,
        password: None,
        attributes: Default::default(),
        region: None,
        protocol_id: PROTOCOL,
        host: match o.direct {
            Some(address) => HostMode::Direct { address },
            None => HostMode::Relay,
        },
    };
    let bind = o.direct.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let hosted = game.host_match(lobby, &request, bind)?;
    say(&format!("[code {}]", hosted.join_code()));
    let started = driver::now();
    let mut heard = 0;
    let mut done_at = None;
    game.run(60, |game| {
        while let Some(event) = game.poll_event() {
            if let ManagerEvent::ServerDisconnect(player, _) = event {
                say(&format!("[{player} left]"));
            }
        }
        while let Some((player, Shout(text))) = game.poll_from_clients() {
            heard += 1;
            say(&format!("{player} shouts: {text}"));
            let _ = game.broadcast(&Shout(format!("host heard {player}: {text}")));
        }
        let timed_out = o.quit_after.is_some_and(|q| started.elapsed() >= q);
        if heard >= o.shouts && done_at.is_none() {
            done_at = Some(game.ticks());
        }
        // A few ticks more after the last shout, so the answers go out before the host leaves.
        !(timed_out || done_at.is_some_and(|at| game.ticks() >= at + 10))
    })?;
    say("[host leaving]");
    game.stop();
    hosted.close()?;
    Ok(())
}

fn join(o: &Options, lobby: &LobbyClient, code: JoinCode) -> Result<(), Box<dyn Error>> {
    let mut game = NetworkManager::new(ManagerConfig::default());
    game.register_message::<Shout>()?;
    let request =
        JoinRequest { password: None, user_data: Some(Bytes(o.name.clone().into_bytes())) };
    let joined = game.join_match(lobby, code, &request)?;
    say(&format!(
        "[joined as slot {}{}]",
        joined.slot,
        if joined.relay.is_some() { " via the relay" } else { "" }
    ));
    let started = driver::now();
    let (mut connected, mut shouted, mut left) = (false, false, false);
    game.run(60, |game| {
        while let Some(event) = game.poll_event() {
            match event {
                ManagerEvent::ClientConnect => {
                    say("[connected]");
                    connected = true;
                }
                ManagerEvent::ClientDisconnect(reason) => {
                    say(&format!("[host left: {reason:?}]"));
                    left = true;
                }
                _ => {}
            }
        }
        if connected && !shouted && !left {
            shouted = game.send_to_server(&Shout(format!("hello from {}", o.name))).is_ok();
        }
        while let Some(Shout(text)) = game.poll_from_server() {
            say(&format!("heard: {text}"));
        }
        let timed_out = o.quit_after.is_some_and(|q| started.elapsed() >= q);
        !(left || timed_out)
    })?;
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    sturnus::init_logging();
    let o = match parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let lobby = LobbyClient::new(&o.lobby)?;
    match o.join {
        Some(code) => join(&o, &lobby, code),
        None => host(&o, &lobby),
    }
}
