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
//! Type lines to say them, `/me ACTION` to act (`* ada waves`); end input (Ctrl-D) or press
//! Ctrl-C to leave. Ctrl-C (or `SIGTERM`) leaves gracefully everywhere: a player tells the room
//! it is going, a server or host tells every player it is stopping, so the others see the
//! departure at once rather than after a timeout; the program then exits with success.
//! For scripts and tests, `--say TEXT` (repeatable) says lines without a terminal and leaves
//! once the room has echoed (or refused) them all, and `--quit-after-ms N` leaves after a while whatever
//! happens.
//!
//! `--hud MS` makes a server or host print its status view (`sturnus::hud`, UNET's
//! NetworkManagerHUD) to standard error every `MS` milliseconds: each player's address,
//! round-trip time, loss and bytes per second in and out.
//!
//! Names are unique in a room: a second player logging in with a name already there is
//! turned away with the reason. A line too long for the room (over its 4 KiB message limit, or
//! the action channel's one-packet limit for `/me`) is refused with an error, and the player
//! stays in the room.
//!
//! It shows both ways of receiving: the room *polls* a typed queue of `Say` messages after
//! each update, and the players register a *handler* for `Line`. Actions travel on a **raw
//! channel** beside the typed ones: plain UTF-8 bytes, no message type, relayed by a raw
//! handler. Channels are independent, so an action may overtake a line said just before it.
//! The server and clients are sans-IO; this program is their driver: it reads the
//! clock with `driver::now()`, passes it to `update`, and sleeps with `wait`, over UDP.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "an example prints what it does")]

use std::collections::HashMap;
use std::error::Error;
use std::io::BufRead;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sturnus::hud::{Hud, Status};
use sturnus_examples::{udp_client, udp_server};
use sturnus_message::{
    Applicant, Authenticator, ChannelId, ChannelLayout, ClientConfig, ClientContext, ClientEvent,
    ClientState, DisconnectReason, Login, Message, MessageError, NetworkClient, NetworkServer,
    PasswordAuthenticator, Player, PlayerId, Qos, ServerConfig, ServerEvent, driver,
};
use sturnus_transport::SendError;

/// Client → server: a line typed.
#[derive(Serialize, Deserialize, Message)]
struct Say(String);

/// Server → clients: a line to show, and who said it (`None`: the room itself).
#[derive(Serialize, Deserialize, Message)]
struct Line {
    from: Option<String>,
    text: String,
}

/// The raw channel actions (`/me waves`) go on: after the default layout's eleven typed
/// channels. Client → server it carries the action's UTF-8 text; server → clients the actor's
/// name, a zero byte, and the text.
const ACTIONS: ChannelId = ChannelId(11);

/// Every connection's channels: one typed channel of each kind, and the raw action channel.
fn layout() -> ChannelLayout {
    let mut layout = ChannelLayout::default();
    let actions = layout.add_raw(Qos::ReliableSequenced).expect("room for one more channel");
    assert_eq!(actions, ACTIONS);
    layout
}

/// The largest message the room takes, in either direction: a chat line is short. A longer line
/// is refused by the message layer (`MessageError::TooLarge`) before it is sent.
const MAX_MESSAGE_SIZE: usize = 4 * 1024;

/// What the room tells a player whose line or action fitted the player's message but not, with
/// the name in front, the room's own.
const TOO_LONG_TO_RELAY: &str = "your last line was too long to relay";

const USAGE: &str = "usage: chat (--server | --client NAME | --host NAME) [--bind ADDR] \
                     [--connect ADDR] [--password P] [--say TEXT]... [--quit-after-ms N] \
                     [--hud MS]";

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
    /// A server or host prints its status view (the HUD) to standard error this often.
    hud: Option<Duration>,
}

fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
    let mut role = None;
    let mut addr: SocketAddr = "127.0.0.1:7777".parse().expect("a valid address");
    let mut password = "starling".to_string();
    let (mut say, mut quit_after, mut hud) = (Vec::new(), None, None);
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
            "--hud" => {
                let ms = value()?.parse().map_err(|e| format!("--hud: {e}"))?;
                hud = Some(Duration::from_millis(ms));
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let role = role.ok_or("choose --server, --client NAME or --host NAME")?;
    Ok(Options { role, addr, password, say, quit_after, hud })
}

/// The names of the players in the room, shared by its gate and its event handler.
type Names = Arc<Mutex<HashMap<PlayerId, String>>>;

/// The room's door: the password, and a name no one in the room has yet.
struct Gate {
    password: PasswordAuthenticator,
    names: Names,
}

impl Authenticator for Gate {
    type Credentials = Login;
    type Data = String;

    fn authenticate(&mut self, applicant: &Applicant, login: Login) -> Result<String, String> {
        let name = self.password.authenticate(applicant, login)?;
        let mut names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        if names.values().any(|taken| *taken == name) {
            return Err(format!("the name {name} is taken in this room"));
        }
        // Held until the player leaves (the room's `Disconnected` event frees it).
        names.insert(applicant.player, name.clone());
        Ok(name)
    }
}

/// The room: checks names at the door, says who joins and leaves, and relays actions. Lines
/// are relayed by [`relay`], which polls them after each update.
fn room(password: &str) -> Result<NetworkServer, MessageError> {
    let config = ServerConfig {
        channels: layout(),
        max_message_size: MAX_MESSAGE_SIZE,
        ..Default::default()
    };
    let mut server = NetworkServer::new(config)?;
    let names = Names::default();
    server.set_authenticator(Gate {
        password: PasswordAuthenticator::new(password),
        names: Arc::clone(&names),
    });
    // The poll style: `Say`s wait in a typed queue until `relay` reads them.
    server.register_queue::<Say>()?;
    // Raw bytes: the actor's name is prepended and the result sent to everyone in the room.
    server.register_raw_handler(ACTIONS, |mut player: Player<'_>, channel, action| {
        let Some(name) = player.auth_data::<String>() else { return };
        let mut relayed = name.clone().into_bytes();
        relayed.push(0);
        relayed.extend_from_slice(action);
        let actor = player.id();
        let server = player.server();
        if relayed.len() > server.max_message_size(channel) {
            // It fitted the channel, but not with the actor's name in front.
            let _ = server.send(actor, &Line { from: None, text: TOO_LONG_TO_RELAY.into() });
            return;
        }
        let everyone: Vec<PlayerId> = server.players().collect();
        for id in everyone {
            if server.player(id).is_some_and(|p| p.is_authenticated()) {
                let _ = server.send_raw(id, channel, &relayed);
            }
        }
    })?;
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
                format!("{name} joined")
            }
            ServerEvent::Disconnected(id, reason) => match lock(&names).remove(id) {
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

fn lock(names: &Names) -> std::sync::MutexGuard<'_, HashMap<PlayerId, String>> {
    names.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Relays every line said since the last call, with its speaker's name.
fn relay(server: &mut NetworkServer) -> Result<(), MessageError> {
    while let Some((id, Say(text))) = server.poll_message::<Say>() {
        let from = server.player(id).and_then(|p| p.auth_data::<String>().cloned());
        match server.broadcast(&Line { from, text }) {
            Ok(_) => {}
            // The line fitted the player's `Say`, but not with the speaker's name added: the
            // speaker is told, and the room goes on.
            Err(MessageError::TooLarge { .. }) => {
                let _ = server.send(id, &Line { from: None, text: TOO_LONG_TO_RELAY.into() });
            }
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// A player: prints what the room says and does, counting what it hears from itself (and the
/// room's word that one of its lines was too long to relay: that line is done with too).
fn player(
    mut client: NetworkClient,
    name: &str,
    password: &str,
    heard_own: &Arc<AtomicUsize>,
) -> Result<NetworkClient, MessageError> {
    client.set_credentials(&Login { name: name.into(), password: password.into() })?;
    let (me, heard) = (name.to_string(), Arc::clone(heard_own));
    // The handler style: `Line`s are shown as they arrive, inside `update`.
    client.register_handler(move |_, line: Line| match line.from {
        Some(from) => {
            if from == me {
                heard.fetch_add(1, Ordering::Relaxed);
            }
            println!("{from}: {}", line.text);
        }
        None => {
            if line.text == TOO_LONG_TO_RELAY {
                heard.fetch_add(1, Ordering::Relaxed);
            }
            println!("* {}", line.text);
        }
    })?;
    let (me, heard) = (name.to_string(), Arc::clone(heard_own));
    client.register_raw_handler(ACTIONS, move |_: &mut ClientContext, _, bytes: &[u8]| {
        let Some(split) = bytes.iter().position(|b| *b == 0) else { return };
        let (actor, action) = (String::from_utf8_lossy(&bytes[..split]), &bytes[split + 1..]);
        if actor == me {
            heard.fetch_add(1, Ordering::Relaxed);
        }
        println!("* {actor} {}", String::from_utf8_lossy(action));
    })?;
    client.on_event(|_, event| match event {
        ClientEvent::Connected => println!("[connected; logging in]"),
        ClientEvent::Authenticated => println!("[in the room]"),
        ClientEvent::Disconnected(reason) => println!("[disconnected: {reason}]"),
        _ => {}
    });
    Ok(client)
}

/// Says a typed line: `/me ACTION` as raw bytes on the action channel, anything else as a
/// `Say`. A line too long to send is refused with an error, and the player stays in the room:
/// `Ok(false)`.
fn say(client: &mut NetworkClient, text: &str) -> Result<bool, MessageError> {
    let sent = match text.strip_prefix("/me ") {
        Some(action) => client.send_raw(ACTIONS, action.as_bytes()),
        None => client.send(&Say(text.to_string())),
    };
    match sent {
        Ok(()) => Ok(true),
        // The message layer checks a typed message against the room's limit; the transport
        // checks raw bytes against the channel's.
        Err(
            MessageError::TooLarge { len, max, .. }
            | MessageError::Send(SendError::MessageTooLarge { len, max, .. }),
        ) => {
            eprintln!("chat: line not sent: {len} bytes, over the {max}-byte limit");
            Ok(false)
        }
        Err(err) => Err(err),
    }
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

fn run(options: Options, interrupted: &AtomicBool) -> Result<(), Box<dyn Error>> {
    // The one place time comes from: the server and clients take it as an input.
    let start = driver::now();
    let heard_own = Arc::new(AtomicUsize::new(0));
    let mut server = None;
    let mut client = None;
    match &options.role {
        Role::Server => {
            let mut room = room(&options.password)?;
            room.start(start, udp_server(&layout(), options.addr)?)?;
            server = Some(room);
        }
        Role::Host(name) => {
            // A server that remote players join over UDP, and the host's own player, joined
            // over an in-memory path.
            let mut room = room(&options.password)?;
            room.start(start, udp_server(&layout(), options.addr)?)?;
            let local = room.connect_local(start)?;
            client = Some(player(local, name, &options.password, &heard_own)?);
            server = Some(room);
        }
        Role::Client(name) => {
            let config = ClientConfig {
                channels: layout(),
                max_message_size: MAX_MESSAGE_SIZE,
                ..Default::default()
            };
            let mut remote =
                player(NetworkClient::new(config)?, name, &options.password, &heard_own)?;
            remote.connect(start, udp_client(&layout(), options.addr)?, options.addr)?;
            client = Some(remote);
        }
    }
    let typed = typed_lines();
    let mut to_say: Vec<String> = options.say.iter().rev().cloned().collect();
    // Scripted lines refused as too long: they will not come back.
    let mut refused = 0;
    let mut stdin_open = true;
    // Why the server ended this player's connection, if it did.
    let mut ended = None;
    let mut now;
    let (mut hud, mut next_hud) = (Hud::new(), start);
    loop {
        now = driver::now();
        if let (Some(every), Some(server)) = (options.hud, &server) {
            if now >= next_hud {
                eprint!("{}", hud.render_status(&Status::of_server(server), now));
                next_hud = now + every;
            }
        }
        if interrupted.load(Ordering::Relaxed) {
            println!("[interrupted; leaving]");
            break;
        }
        if let Some(server) = &mut server {
            server.update(now)?;
            relay(server)?;
        }
        if let Some(client) = &mut client {
            client.update(now)?;
            while let Some(event) = client.poll_event() {
                if let ClientEvent::Disconnected(reason) = event {
                    ended = Some(reason);
                }
            }
            if client.state() == ClientState::Disconnected {
                break;
            }
            if client.is_authenticated() {
                if let Some(text) = to_say.pop() {
                    if !say(client, &text)? {
                        refused += 1;
                    }
                }
                match typed.try_recv() {
                    Ok(text) => {
                        say(client, &text)?;
                    }
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
        let said_all = !options.say.is_empty()
            && heard_own.load(Ordering::Relaxed) + refused == options.say.len();
        let timed_out = options.quit_after.is_some_and(|limit| now - start >= limit);
        if said_all || timed_out {
            break;
        }
        // Sleep until something arrives, a timer is due, or 5 ms pass.
        match (&mut server, &mut client) {
            (Some(server), _) => server.wait(Duration::from_millis(5))?,
            (None, Some(client)) => client.wait(Duration::from_millis(5))?,
            (None, None) => break,
        }
    }
    if let Some(client) = &mut client {
        // Tells the server at once (the first close notice goes out now) ...
        client.disconnect();
        client.update(now)?;
        // ... and repeats the notice a few times, against loss, before the socket goes away.
        let until = now + Duration::from_millis(500);
        while server.is_none() && client.poll_timeout().is_some() && now < until {
            client.wait(Duration::from_millis(10))?;
            now = driver::now();
            client.update(now)?;
        }
    }
    if let Some(server) = &mut server {
        // Let the room hear its own player leave before it closes; closing tells every
        // remote player the server is stopping.
        server.update(now)?;
        server.stop();
    }
    match ended {
        // Leaving of our own accord is a normal end; being turned away or dropped is not.
        None | Some(DisconnectReason::Closed) => Ok(()),
        Some(reason) => Err(format!("left the room: {reason}").into()),
    }
}

fn main() -> ExitCode {
    sturnus_examples::init_logging();
    if sturnus_examples::wants_help() {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(err) => {
            eprintln!("{err}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let Some(interrupted) = sturnus_examples::interrupt_flag() else {
        eprintln!("chat: cannot handle Ctrl-C");
        return ExitCode::FAILURE;
    };
    match run(options, interrupted) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("chat: {err}");
            ExitCode::FAILURE
        }
    }
}
