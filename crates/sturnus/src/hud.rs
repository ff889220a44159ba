//! A terminal status view (UNET's `NetworkManagerHUD`), in plain lines: the mode, the local
//! address, the players, and per connection its round-trip time, loss and bytes per second
//! in and out.
//!
//! A [`Hud`] remembers each connection's byte counters from one render to the next, so the
//! rates it shows are the bytes that went through between two renders divided by the time
//! between them. Time is an input, as everywhere in Sturnus: pass the `now` of the frame.
//!
//! ```
//! use sturnus::hud::Hud;
//! use sturnus::manager::{ManagerConfig, NetworkManager, TransportChoice};
//! use sturnus::prelude::*;
//!
//! let config = ManagerConfig {
//!     transport: TransportChoice::Memory(MemoryNetwork::new()),
//!     ..Default::default()
//! };
//! let mut game = NetworkManager::new(config);
//! let mut hud = Hud::new();
//! assert_eq!(hud.render(&game, driver::now()), "sturnus offline\n");
//!
//! game.start_host("10.0.0.1:7777".parse().unwrap()).unwrap();
//! let text = hud.render(&game, driver::now());
//! assert!(text.starts_with("sturnus host · 10.0.0.1:7777 · 1 player\n"), "{text}");
//! // A frame later, in a server's loop: `hud.write_to(std::io::stdout(), &game, now)?`.
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! A server or client used without a [`NetworkManager`] is shown through its [`Status`]:
//! `hud.render_status(&Status::of_server(&server), now)`.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sturnus_message::{ClientContext, ClientState, PlayerId, ServerContext};
use sturnus_transport::{Bytes, ConnectionStats};

use crate::manager::{NetworkManager, NetworkMode};

/// The other end of a connection shown on the HUD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Peer {
    /// A player of this server.
    Player(PlayerId),
    /// The server this client is connected to.
    Server,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Player(player) => write!(f, "{player}"),
            Peer::Server => f.write_str("server"),
        }
    }
}

/// One connection as the HUD shows it.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct ConnectionStatus {
    /// Who is at the other end.
    pub peer: Peer,
    /// Its address, if the transport knows one.
    pub address: Option<SocketAddr>,
    /// A host's own player (a local client: no transport, no statistics).
    pub local: bool,
    /// The transport's statistics of the connection (`None` for a local client, or a
    /// transport that keeps none: `MemoryTransport`, and `ThreadedHost`, whose statistics stay
    /// on its I/O thread).
    pub stats: Option<ConnectionStats>,
}

impl ConnectionStatus {
    /// A connection to `peer` with nothing known of it yet.
    pub fn new(peer: Peer) -> Self {
        Self { peer, address: None, local: false, stats: None }
    }
}

/// What the HUD shows, read from a [`NetworkManager`], a server or a client at one instant.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Status {
    /// Where the endpoint is.
    pub mode: NetworkMode,
    /// The address its transport is bound to, if any.
    pub local_addr: Option<SocketAddr>,
    /// A client's state (`None` for servers and hosts).
    pub client_state: Option<ClientState>,
    /// Its connections: a server's players, or a client's server.
    pub connections: Vec<ConnectionStatus>,
}

impl Status {
    /// Nothing running.
    pub fn offline() -> Self {
        Self {
            mode: NetworkMode::Offline,
            local_addr: None,
            client_state: None,
            connections: Vec::new(),
        }
    }

    /// What a manager runs: its server's players (a host's own player among them, marked
    /// local) or its client's connection.
    pub fn of_manager(manager: &NetworkManager) -> Self {
        let mode = manager.mode();
        let mut status = if let Some(server) = manager.server_ref() {
            Self::of_server(server.server())
        } else if let Some(client) = manager.client_ref() {
            Self::of_client(client.client())
        } else {
            Self::offline()
        };
        status.mode = mode;
        status
    }

    /// A server's players, in id order (a server with a local client shows as a host).
    pub fn of_server(server: &ServerContext) -> Self {
        if !server.is_running() {
            return Self::offline();
        }
        let mut players: Vec<PlayerId> = server.players().collect();
        players.sort_unstable();
        let connections: Vec<ConnectionStatus> = players
            .into_iter()
            .map(|player| ConnectionStatus {
                peer: Peer::Player(player),
                address: server.player_address(player),
                local: server.is_local_player(player),
                stats: server.player_connection_stats(player),
            })
            .collect();
        let host = connections.iter().any(|c| c.local);
        Self {
            mode: if host { NetworkMode::Host } else { NetworkMode::Server },
            local_addr: server.local_addr(),
            client_state: None,
            connections,
        }
    }

    /// A client's connection to its server.
    pub fn of_client(client: &ClientContext) -> Self {
        let state = client.state();
        let connections = if state == ClientState::Disconnected {
            Vec::new()
        } else {
            vec![ConnectionStatus {
                peer: Peer::Server,
                address: client.server_addr(),
                local: client.is_local(),
                stats: client.connection_stats(),
            }]
        };
        Self {
            mode: NetworkMode::Client,
            local_addr: client.local_addr(),
            client_state: Some(state),
            connections,
        }
    }

    /// How many players the status lists.
    pub fn player_count(&self) -> usize {
        self.connections.iter().filter(|c| matches!(c.peer, Peer::Player(_))).count()
    }
}

/// A connection's byte counters at a render.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    bytes_in: u64,
    bytes_out: u64,
}

/// The status view: renders a [`Status`] as plain lines, with the rates since the previous
/// render.
///
/// ```text
/// sturnus server · 0.0.0.0:7777 · 2 players
///   peer        address               rtt         loss out   loss in        in/s       out/s
///   player 1    192.168.1.20:50113    12.3ms         0.5 %     0.0 %   1.2 KiB/s   3.4 KiB/s
///   player 2    192.168.1.31:61002    40.1ms         0.0 %     1.0 %       0 B/s     512 B/s
/// ```
///
/// A column the HUD cannot fill shows `-`: the rates on a connection's first render, and
/// everything the transport does not measure (a host's own player; a `MemoryTransport` or a
/// `ThreadedHost`, which keep no statistics the application can read: use `Host`, the
/// manager's default `TransportChoice::Udp`, to see them).
#[derive(Debug, Default)]
pub struct Hud {
    samples: HashMap<Peer, Sample>,
}

impl Hud {
    /// A HUD that has not rendered yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Renders what `manager` runs as of `now`.
    pub fn render(&mut self, manager: &NetworkManager, now: Instant) -> String {
        self.render_status(&Status::of_manager(manager), now)
    }

    /// Writes what `manager` runs as of `now` to `out` (a terminal, a log file).
    pub fn write_to(
        &mut self,
        mut out: impl io::Write,
        manager: &NetworkManager,
        now: Instant,
    ) -> io::Result<()> {
        out.write_all(self.render(manager, now).as_bytes())
    }

    /// Renders `status` as of `now`: a header line, then a line per connection. The rates
    /// are the bytes counted since this HUD's previous render of the same connection, per
    /// second of `now`'s advance; a connection seen for the first time, or a `now` that did
    /// not advance, shows `-`.
    pub fn render_status(&mut self, status: &Status, now: Instant) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_status(&mut out, status, now);
        out
    }

    fn write_status(&mut self, out: &mut String, status: &Status, now: Instant) -> fmt::Result {
        let mode = match status.mode {
            NetworkMode::Offline => "offline",
            NetworkMode::Server => "server",
            NetworkMode::Client => "client",
            NetworkMode::Host => "host",
        };
        write!(out, "sturnus {mode}")?;
        if status.mode == NetworkMode::Offline {
            self.samples.clear();
            return writeln!(out);
        }
        if let Some(state) = status.client_state {
            write!(out, " · {}", format!("{state:?}").to_lowercase())?;
        }
        if let Some(addr) = status.local_addr {
            write!(out, " · {addr}")?;
        }
        if status.client_state.is_none() {
            let players = status.player_count();
            write!(out, " · {players} player{}", if players == 1 { "" } else { "s" })?;
        }
        writeln!(out)?;
        if status.connections.is_empty() {
            self.samples.clear();
            return Ok(());
        }
        writeln!(
            out,
            "  {:<11} {:<21} {:<10} {:>9} {:>9} {:>11} {:>11}",
            "peer", "address", "rtt", "loss out", "loss in", "in/s", "out/s"
        )?;
        let mut samples = HashMap::with_capacity(status.connections.len());
        for connection in &status.connections {
            let address = match (connection.address, connection.local) {
                (Some(addr), _) => addr.to_string(),
                (None, true) => "local".to_owned(),
                (None, false) => "-".to_owned(),
            };
            let Some(stats) = connection.stats else {
                writeln!(
                    out,
                    "  {:<11} {address:<21} {:<10} {:>9} {:>9} {:>11} {:>11}",
                    connection.peer.to_string(),
                    "-",
                    "-",
                    "-",
                    "-",
                    "-"
                )?;
                continue;
            };
            let sample =
                Sample { at: now, bytes_in: stats.bytes_received, bytes_out: stats.bytes_sent };
            let (rate_in, rate_out, kept) = match self.samples.get(&connection.peer) {
                Some(last) if now > last.at => {
                    let elapsed = now - last.at;
                    (
                        rate(last.bytes_in, sample.bytes_in, elapsed),
                        rate(last.bytes_out, sample.bytes_out, elapsed),
                        sample,
                    )
                }
                // Time did not advance: no rate, and the older sample stays the base.
                Some(last) => (None, None, *last),
                None => (None, None, sample),
            };
            samples.insert(connection.peer, kept);
            writeln!(
                out,
                "  {:<11} {address:<21} {:<10} {:>9} {:>9} {:>11} {:>11}",
                connection.peer.to_string(),
                format!("{:.1?}", stats.rtt),
                format!("{:.1} %", stats.loss_out_percent()),
                format!("{:.1} %", stats.loss_in_percent()),
                per_second(rate_in),
                per_second(rate_out),
            )?;
        }
        // Connections that are gone are forgotten: a player id is never reused, and a client
        // that reconnects starts its counters again.
        self.samples = samples;
        Ok(())
    }
}

/// Bytes per second between two counter readings `elapsed` apart (`None` if the counter went
/// back: a new connection under the same name).
fn rate(before: u64, after: u64, elapsed: Duration) -> Option<u64> {
    let bytes = after.checked_sub(before)?;
    let nanos = elapsed.as_nanos();
    if nanos == 0 {
        return None;
    }
    u64::try_from(u128::from(bytes) * 1_000_000_000 / nanos).ok()
}

fn per_second(rate: Option<u64>) -> String {
    rate.map_or_else(|| "-".to_owned(), |bytes| format!("{}/s", Bytes(bytes)))
}
