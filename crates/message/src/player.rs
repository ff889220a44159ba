//! Players: the server's view of each connected client.

use std::any::Any;
use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sturnus_transport::{ChannelId, ConnectionId, ConnectionStats};

use crate::config::RateLimit;
use crate::local::SharedPipe;
use crate::{Message, MessageError, ServerContext};

/// A player's id on a server: unique for the server's lifetime, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PlayerId(pub u32);

impl fmt::Display for PlayerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "player {}", self.0)
    }
}

/// What the server counted for one player. Every message the player sent is either handled or
/// counted in exactly one `dropped_*` field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PlayerStats {
    /// Messages received from the player.
    pub messages_received: u64,
    /// Messages that reached a handler (or were authentication requests).
    pub messages_handled: u64,
    /// Messages sent to the player.
    pub messages_sent: u64,
    /// Sends to the player the transport refused (a full queue).
    pub send_failures: u64,
    /// Dropped: no handler for the id.
    pub dropped_unknown: u64,
    /// Dropped: the payload did not decode as the id's type (or had no id).
    pub dropped_undecodable: u64,
    /// Dropped: larger than `max_message_size`.
    pub dropped_oversized: u64,
    /// Dropped: over the rate limit, or an authentication request over the server's
    /// [`auth_throttle`](crate::ServerConfig::auth_throttle) (the player is then sent away).
    pub dropped_rate_limited: u64,
    /// Dropped: sent before the player authenticated.
    pub dropped_unauthenticated: u64,
    /// Dropped by a layer above after it reached a handler: the application or the object
    /// layer found it invalid and called [`ServerContext::reject`].
    pub dropped_rejected: u64,
}

impl PlayerStats {
    /// Every message dropped, whatever the cause: what counts against the error budget.
    pub fn dropped(&self) -> u64 {
        self.dropped_unknown
            + self.dropped_undecodable
            + self.dropped_oversized
            + self.dropped_rate_limited
            + self.dropped_unauthenticated
            + self.dropped_rejected
    }
}

/// One line: `received 120, handled 118, sent 300 (0 refused) · dropped 2: 1 unknown, 1
/// undecodable, 0 oversized, 0 over the rate, 0 before authentication, 0 rejected`.
impl fmt::Display for PlayerStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "received {}, handled {}, sent {} ({} refused) · dropped {}: {} unknown, {} \
             undecodable, {} oversized, {} over the rate, {} before authentication, {} rejected",
            self.messages_received,
            self.messages_handled,
            self.messages_sent,
            self.send_failures,
            self.dropped(),
            self.dropped_unknown,
            self.dropped_undecodable,
            self.dropped_oversized,
            self.dropped_rate_limited,
            self.dropped_unauthenticated,
            self.dropped_rejected
        )
    }
}

/// Why a message from a player was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadInput {
    Unknown,
    Undecodable,
    Oversized,
    RateLimited,
    Unauthenticated,
    Rejected,
}

impl PlayerStats {
    pub(crate) fn count(&mut self, drop: BadInput) {
        let counter = match drop {
            BadInput::Unknown => &mut self.dropped_unknown,
            BadInput::Undecodable => &mut self.dropped_undecodable,
            BadInput::Oversized => &mut self.dropped_oversized,
            BadInput::RateLimited => &mut self.dropped_rate_limited,
            BadInput::Unauthenticated => &mut self.dropped_unauthenticated,
            BadInput::Rejected => &mut self.dropped_rejected,
        };
        *counter += 1;
    }
}

/// How the server reaches a player.
#[derive(Debug)]
pub(crate) enum Route {
    Remote(ConnectionId),
    Local(SharedPipe),
}

/// A token bucket.
#[derive(Debug)]
pub(crate) struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    pub(crate) fn new(limit: RateLimit, now: Instant) -> Self {
        Self { tokens: limit.burst, last: now }
    }

    pub(crate) fn take(&mut self, limit: RateLimit, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * limit.per_second).min(limit.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The server's record of a player.
pub(crate) struct PlayerSlot {
    pub(crate) route: Route,
    pub(crate) address: Option<SocketAddr>,
    /// `Some` once authenticated: the authenticator's data.
    pub(crate) auth: Option<Box<dyn Any + Send>>,
    pub(crate) bucket: Option<Bucket>,
    pub(crate) stats: PlayerStats,
}

impl fmt::Debug for PlayerSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlayerSlot")
            .field("route", &self.route)
            .field("address", &self.address)
            .field("authenticated", &self.auth.is_some())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// A handle on one player (the seed's `INetworkPlayer`), lent by the server: to handlers with
/// each message, and by [`ServerContext::player`].
///
/// The handle stays usable after the player leaves: sends then fail with
/// [`MessageError::UnknownPlayer`] and queries return nothing.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # use sturnus_message::{Message, NetworkServer, Player, ServerConfig};
/// #[derive(Serialize, Deserialize, Message)]
/// struct Ping(u32);
///
/// let mut server = NetworkServer::new(ServerConfig::default()).unwrap();
/// server.register_handler(|mut player: Player<'_>, ping: Ping| {
///     // Answer the sender; a failed send is counted in its stats.
///     let _ = player.send(&Ping(ping.0 + 1));
/// }).unwrap();
/// ```
#[derive(Debug)]
pub struct Player<'a> {
    pub(crate) server: &'a mut ServerContext,
    pub(crate) id: PlayerId,
}

impl Player<'_> {
    /// The player's id.
    pub fn id(&self) -> PlayerId {
        self.id
    }

    fn slot(&self) -> Option<&PlayerSlot> {
        self.server.players.get(&self.id)
    }

    /// Whether the player is still connected.
    pub fn is_connected(&self) -> bool {
        self.slot().is_some()
    }

    /// Its remote address (`None` for a local client in host mode, or once it has left).
    pub fn address(&self) -> Option<SocketAddr> {
        self.slot().and_then(|slot| slot.address)
    }

    /// Whether it is the host's own local client.
    pub fn is_local(&self) -> bool {
        self.slot().is_some_and(|slot| matches!(slot.route, Route::Local(_)))
    }

    /// Whether its credentials were accepted.
    pub fn is_authenticated(&self) -> bool {
        self.slot().is_some_and(|slot| slot.auth.is_some())
    }

    /// The data the authenticator attached, if the player is authenticated and it is a `T`.
    pub fn auth_data<T: Any>(&self) -> Option<&T> {
        self.slot()?.auth.as_ref()?.downcast_ref::<T>()
    }

    /// What the server counted for this player.
    pub fn stats(&self) -> Option<PlayerStats> {
        self.slot().map(|slot| slot.stats)
    }

    /// The transport's statistics of its connection (RTT, loss, resends; `None` for a local
    /// client).
    pub fn connection_stats(&self) -> Option<ConnectionStats> {
        self.server.player_connection_stats(self.id)
    }

    /// Sends a message on its channel.
    pub fn send<T: Message>(&mut self, msg: &T) -> Result<(), MessageError> {
        self.server.send(self.id, msg)
    }

    /// Sends a message on `channel` (a typed channel).
    pub fn send_on<T: Message>(&mut self, msg: &T, channel: ChannelId) -> Result<(), MessageError> {
        self.server.send_on(self.id, msg, channel)
    }

    /// Sends raw bytes on `channel` (a raw channel).
    pub fn send_raw(&mut self, channel: ChannelId, bytes: &[u8]) -> Result<(), MessageError> {
        self.server.send_raw(self.id, channel, bytes)
    }

    /// Disconnects the player at once (queued messages to it are dropped).
    pub fn disconnect(&mut self) {
        self.server.disconnect(self.id);
    }

    /// Sends the player away with a reason it will see.
    pub fn kick(&mut self, reason: impl Into<String>) {
        self.server.kick(self.id, reason);
    }

    /// The server, to broadcast or reach other players.
    pub fn server(&mut self) -> &mut ServerContext {
        self.server
    }
}
