//! A chat room on the message layer: a server, clients, and a host (a server with its own
//! player, in the same process, that remote clients can still join). Players log in with a
//! name and the room's password (`PasswordAuthenticator`); every line typed is broadcast.
//!
//! ```text
//! cargo run -p sturnus-examples --bin chat -- --server [--bind ADDR] [--password P]
//! cargo run -p sturnus-examples --bin chat -- --client NAME [--connect ADDR] [--password P]
//! cargo run -p sturnus-examples --bin chat -- --host NAME [--bind ADDR] [--password P]
//! ```
//!
//! Type lines to say them; end input (Ctrl-D) to leave. For scripts and tests, `--say TEXT`
//! (repeatable) says lines without a terminal and leaves once the room has echoed them all, and
//! `--quit-after-ms N` leaves after a while whatever happens.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "an example prints what it does")]
#![allow(clippy::disallowed_methods, reason = "an example measures real time")]

use std::collections::HashMap;
use std::io::BufRead;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sturnus_message::{
    ClientConfig, ClientEvent, Login, Message, MessageError, NetworkClient, NetworkServer,
    PasswordAuthenticator, Player, PlayerId, ServerConfig, ServerEvent,
};

/// Client → server: a line typed.
#[derive(Serialize, Deserialize, Message)]
struct Say(String);

/// Server → clients: a line to show, and who said it (`None`: the room itself).
#[derive(Serialize, Deserialize, Message)]
struct Line {
    from: Option<String>,
    text: String,
}

const USAGE: &str = "usage: chat (--server | --client NAME | --host NAME) [--bind ADDR] \
                     [--connect ADDR] [--password P] [--say TEXT]... [--quit-after-ms N]";

enum Role {
    Server,
    Client(String),
    Host(String),
}

struct Options {
    role: Role,
    addr: SocketAddr,
    password: String,
    say: Vec<String>,
    quit_after: Option<Duration>,
}

fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
    let mut role = None;
    let mut addr: SocketAddr = "127.0.0.1:7777".parse().expect("a valid address");
    let mut password = "starling".to_string();
    let (mut say, mut quit_after) = (Vec::new(), None);
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--server" => role = Some(Role::Server),
            "--client" => role = Some(Role::Client(value()?)),
            "--host" => role = Some(Role::Host(value()?)),
            "--bind" | "--connect" => addr = value()?.parse().map_err(|e| format!("{e}"))?,
            "--password" => password = value()?,
            "--say" => say.push(value()?),
            "--quit-after-ms" => {
                let ms = value()?.parse().map_err(|e| format!("--quit-after-ms: {e}"))?;
                quit_after = Some(Duration::from_millis(ms));
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let role = role.ok_or("choose --server, --client NAME or --host NAME")?;
    Ok(Options { role, addr, password, say, quit_after })
}

/// The room: says who joins and leaves, and relays every line with its speaker's name.
fn room(password: &str) -> Result<NetworkServer, MessageError> {
    let mut server = NetworkServer::new(ServerConfig::default())?;
    server.set_authenticator(PasswordAuthenticator::new(password));
    server.register_handler(|mut player: Player<'_>, Say(text)| {
        let from = player.auth_data::<String>().cloned();
        let _ = player.server().broadcast(&Line { from, text });
    })?;
    let mut names: HashMap<PlayerId, String> = HashMap::new();
    server.on_event(move |server, event| {
        let notice = match event {
            ServerEvent::Started(Some(addr)) => {
                println!("[room open on {addr}]");
                return;
            }
            ServerEvent::Authenticated(id) => {
                let Some(name) = server.player(*id).and_then(|p| p.auth_data::<String>().cloned())
                else {
                    return;
                };
                names.insert(*id, name.clone());
                format!("{name} joined")
            }
            ServerEvent::Disconnected(id, reason) => match names.remove(id) {
                Some(name) => format!("{name} left ({reason})"),
                None => return,
            },
            _ => return,
        };
        println!("[{notice}]");
        let _ = server.broadcast(&Line { from: None, text: notice });
    });
    Ok(server)
}

/// A player: prints what the room says, counting the lines it hears from itself.
fn player(
    mut client: NetworkClient,
    name: &str,
    password: &str,
    heard_own: Arc<AtomicUsize>,
) -> Result<NetworkClient, MessageError> {
    client.set_credentials(&Login { name: name.into(), password: password.into() })?;
    let me = name.to_string();
    client.register_handler(move |_, line: Line| match line.from {
        Some(from) => {
            if from == me {
                heard_own.fetch_add(1, Ordering::Relaxed);
            }
            println!("{from}: {}", line.text);
        }
        None => println!("* {}", line.text),
    })?;
    client.on_event(|_, event| match event {
        ClientEvent::Connected => println!("[connected; logging in]"),
        ClientEvent::Authenticated => println!("[in the room]"),
        ClientEvent::Disconnected(reason) => println!("[disconnected: {reason}]"),
        _ => {}
    });
    Ok(client)
}

/// Lines typed on standard input, read on their own thread so the game loop never blocks.
fn typed_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn run(options: Options) -> Result<(), MessageError> {
    let start = Instant::now();
    let heard_own = Arc::new(AtomicUsize::new(0));
    let mut server = None;
    let mut client = None;
    match &options.role {
        Role::Server => {
            let mut room = room(&options.password)?;
            room.start(options.addr)?;
            server = Some(room);
        }
        Role::Host(name) => {
            let mut room = room(&options.password)?;
            let local = room.start_host(options.addr)?;
            client = Some(player(local, name, &options.password, Arc::clone(&heard_own))?);
            server = Some(room);
        }
        Role::Client(name) => {
            let fresh = NetworkClient::new(ClientConfig::default())?;
            let mut remote = player(fresh, name, &options.password, Arc::clone(&heard_own))?;
            remote.connect(options.addr)?;
            client = Some(remote);
        }
    }
    let typed = typed_lines();
    let mut to_say: Vec<String> = options.say.iter().rev().cloned().collect();
    let mut stdin_open = true;
    loop {
        if let Some(server) = &mut server {
            server.update()?;
        }
        if let Some(client) = &mut client {
            client.update()?;
            if client.state() == sturnus_message::ClientState::Disconnected {
                break;
            }
            if client.is_authenticated() {
                if let Some(text) = to_say.pop() {
                    client.send(&Say(text))?;
                }
                match typed.try_recv() {
                    Ok(text) => client.send(&Say(text))?,
                    Err(mpsc::TryRecvError::Disconnected)
                        if stdin_open && options.say.is_empty() =>
                    {
                        stdin_open = false;
                        client.disconnect();
                    }
                    Err(_) => {}
                }
            }
        }
        let said_all =
            !options.say.is_empty() && heard_own.load(Ordering::Relaxed) == options.say.len();
        if said_all || options.quit_after.is_some_and(|limit| start.elapsed() >= limit) {
            break;
        }
        match (&mut server, &mut client) {
            (Some(server), _) => server.wait(Duration::from_millis(5))?,
            (None, Some(client)) => client.wait(Duration::from_millis(5))?,
            (None, None) => break,
        }
    }
    if let Some(client) = &mut client {
        client.disconnect();
        client.update()?;
    }
    if let Some(server) = &mut server {
        server.stop();
    }
    Ok(())
}

fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(err) => {
            eprintln!("{err}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("chat: {err}");
            ExitCode::FAILURE
        }
    }
}
