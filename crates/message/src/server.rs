//! The `NetworkServer`: players, handlers, authentication and host mode.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sturnus_transport::{ChannelId, ConnectionId, Event, QueueLimit, SendError, Transport};
use tracing::{debug, info};

use crate::auth::{
    Applicant, AuthRequest, AuthResponse, Authenticator, Erased, ErasedAuthenticator, Goodbye,
    NoopAuthenticator,
};
use crate::channels;
use crate::client::NetworkClient;
use crate::dispatch::{Dispatched, ServerDispatch};
use crate::event::{Events, GoodbyeReason};
use crate::local::{self, LocalPipe, SharedPipe};
use crate::player::{BadInput, Bucket, PlayerSlot, Route};
use crate::throttle::{Admission, Throttle};
use crate::time::{TimeRequest, TimeResponse};
use crate::{
    ChannelLayout, ClientConfig, DisconnectReason, Message, MessageError, MessageId, Player,
    PlayerId, ServerConfig, ServerEvent, codec,
};

/// A typed handler, erased: it decodes a message while the transport lends the bytes, and
/// runs once the transport is free again (so the handler may send).
trait ErasedHandler: Send {
    /// Decodes `body`, keeping the message for [`run`](Self::run); whether it decoded.
    fn decode(&mut self, body: &[u8]) -> bool;
    /// Runs the handler on the message decoded last.
    fn run(&mut self, ctx: &mut ServerContext, player: PlayerId);
    /// The handler as `Any`, to find a message queue by type.
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any;
}

struct Typed<T, F> {
    pending: Option<T>,
    handler: F,
}

impl<T: Message, F: FnMut(Player<'_>, T) + Send + 'static> ErasedHandler for Typed<T, F> {
    fn decode(&mut self, body: &[u8]) -> bool {
        self.pending = codec::decode(body);
        self.pending.is_some()
    }

    fn run(&mut self, ctx: &mut ServerContext, player: PlayerId) {
        if let Some(msg) = self.pending.take() {
            (self.handler)(Player { server: ctx, id: player }, msg);
        }
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

/// The messages of one type kept for [`NetworkServer::poll_message`].
struct Queued<T> {
    pending: Option<T>,
    queue: VecDeque<(PlayerId, T)>,
}

impl<T: Message> ErasedHandler for Queued<T> {
    fn decode(&mut self, body: &[u8]) -> bool {
        self.pending = codec::decode(body);
        self.pending.is_some()
    }

    fn run(&mut self, _: &mut ServerContext, player: PlayerId) {
        if let Some(msg) = self.pending.take() {
            self.queue.push_back((player, msg));
        }
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

type RawHandler = Box<dyn FnMut(Player<'_>, ChannelId, &[u8]) + Send>;

/// A connection kept open only until its goodbye has had time to arrive.
#[derive(Debug)]
struct Leaving {
    conn: ConnectionId,
    until: Instant,
}

/// What a server counted, over its lifetime and all its players (for what it counted per
/// player, see [`PlayerStats`](crate::PlayerStats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Authentication requests received from players not yet authenticated; each was
    /// accepted, rejected or throttled.
    pub auth_requests: u64,
    /// Requests the authenticator accepted.
    pub auth_accepted: u64,
    /// Requests turned down: by the authenticator, or because the credentials did not decode.
    pub auth_rejected: u64,
    /// Requests refused without being evaluated because their source address was over the
    /// [`auth_throttle`](crate::ServerConfig::auth_throttle).
    pub auth_throttled: u64,
    /// Source addresses the authentication throttle remembers now (bounded by its
    /// [`max_sources`](crate::AuthThrottle::max_sources)).
    pub throttle_sources: u64,
    /// Time requests answered (each client asks a few times at first, then once a second;
    /// see [`crate::time`]). They count as messages received and handled in the players'
    /// [`PlayerStats`](crate::PlayerStats).
    pub time_requests: u64,
}

/// One line: `authentication: 12 requests, 11 accepted, 1 rejected, 0 throttled (0 sources
/// remembered)`.
impl std::fmt::Display for ServerStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "authentication: {} requests, {} accepted, {} rejected, {} throttled ({} sources \
             remembered)",
            self.auth_requests,
            self.auth_accepted,
            self.auth_rejected,
            self.auth_throttled,
            self.throttle_sources
        )
    }
}

/// Everything of a server but its handlers: what handlers, callbacks and the layers above get
/// to use.
///
/// A [`NetworkServer`] dereferences to it, so its methods are the server's too.
pub struct ServerContext {
    config: ServerConfig,
    control: ChannelId,
    transport: Option<Box<dyn Transport>>,
    /// The largest encoded message of each channel (see [`channels::limits`]).
    limits: Vec<usize>,
    running: bool,
    pub(crate) players: FxHashMap<PlayerId, PlayerSlot>,
    by_conn: FxHashMap<ConnectionId, PlayerId>,
    leaving: Vec<Leaving>,
    next_player: u32,
    names: codec::Names,
    scratch: Vec<u8>,
    broadcast_ids: Vec<PlayerId>,
    /// Players a reliable broadcast could not be queued for (reused).
    overloaded: Vec<PlayerId>,
    /// When each player that has not yet authenticated must have, oldest first.
    awaiting_auth: VecDeque<(Instant, PlayerId)>,
    /// Local (host-mode) players, in joining order; pruned lazily as they leave.
    local_ids: Vec<PlayerId>,
    pending: VecDeque<ServerEvent>,
    /// The time of the latest input (`None` until the first: no player exists before it).
    now: Option<Instant>,
    /// Authentication attempts per source address, across connections.
    throttle: Option<Throttle>,
    stats: ServerStats,
    /// When the server first started: its clock counts from here.
    epoch: Option<Instant>,
}

impl std::fmt::Debug for ServerContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerContext")
            .field("running", &self.running)
            .field("transport", &self.transport)
            .field("players", &self.players.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl ServerContext {
    /// Whether the server has been started (and not stopped).
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// The address the transport listens on (`None` without a transport, or for a transport
    /// with no address).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.transport.as_ref().and_then(|t| t.local_addr())
    }

    /// The settings.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The channel layout.
    pub fn channels(&self) -> &ChannelLayout {
        &self.config.channels
    }

    /// The time of the latest input (`update`, `start`, `connect_local`): what the server
    /// believes it is (`None` before the first).
    pub fn now(&self) -> Option<Instant> {
        self.now
    }

    /// The largest encoded message (its id included) that may go on `channel`: the configured
    /// [`max_message_size`](crate::ServerConfig::max_message_size), or less if the transport's
    /// channel takes less (an unfragmented channel holds one packet). A send of more fails with
    /// [`MessageError::TooLarge`]; a layer above checks against it before committing to a
    /// send.
    pub fn max_message_size(&self, channel: ChannelId) -> usize {
        self.max_on(channel)
    }

    /// The server's clock at `now`: the time since it first started (`None` before). It is
    /// what clients estimate with
    /// [`ClientContext::server_time`](crate::ClientContext::server_time).
    pub fn server_time(&self, now: Instant) -> Option<Duration> {
        self.epoch.map(|epoch| now.saturating_duration_since(epoch))
    }

    /// The server's tick at `now`: [`server_time`](Self::server_time) times
    /// [`tick_rate`](crate::ServerConfig::tick_rate), rounded down (`None` before the start).
    pub fn server_tick(&self, now: Instant) -> Option<u64> {
        Some(crate::time::tick_at(self.server_time(now)?, self.config.tick_rate))
    }

    /// The time of the latest input, where one must have been given.
    fn time(&self) -> Instant {
        self.now.expect("players and transports exist only after an input gave the time")
    }

    /// Whether a local client has sent something not yet handled.
    pub(crate) fn local_pending(&self) -> bool {
        self.local_ids.iter().any(|id| match self.players.get(id) {
            Some(PlayerSlot { route: Route::Local(pipe), .. }) => !pipe.lock().to_server.is_empty(),
            _ => false,
        })
    }

    /// The span everything of this server happens in, naming it.
    fn span(&self) -> tracing::Span {
        tracing::info_span!("endpoint", name = %self.config.name)
    }

    /// Records the time of an input; it never goes backwards.
    fn set_time(&mut self, now: Instant) {
        self.now = Some(self.now.map_or(now, |last| last.max(now)));
    }

    /// How many players are connected (authenticated or not).
    pub fn player_count(&self) -> usize {
        self.players.len()
    }

    /// The ids of the connected players (authenticated or not), in no particular order.
    pub fn players(&self) -> impl Iterator<Item = PlayerId> + '_ {
        self.players.keys().copied()
    }

    /// What the server counted over its lifetime.
    pub fn stats(&self) -> ServerStats {
        let sources = self.throttle.as_ref().map_or(0, Throttle::len);
        ServerStats { throttle_sources: sources as u64, ..self.stats }
    }

    /// What the server counted for a connected player.
    pub fn player_stats(&self, id: PlayerId) -> Option<crate::PlayerStats> {
        self.players.get(&id).map(|slot| slot.stats)
    }

    /// A handle on a connected player.
    pub fn player(&mut self, id: PlayerId) -> Option<Player<'_>> {
        self.players.contains_key(&id).then_some(Player { server: self, id })
    }

    /// The transport's statistics of a connected player's connection (RTT, loss, bytes; `None`
    /// for a local client, or a transport that keeps none): [`Player::connection_stats`]
    /// without borrowing the server mutably, for status views.
    pub fn player_connection_stats(
        &self,
        id: PlayerId,
    ) -> Option<sturnus_transport::ConnectionStats> {
        match &self.players.get(&id)?.route {
            Route::Remote(conn) => self.transport.as_ref()?.connection_stats(*conn),
            Route::Local(_) => None,
        }
    }

    /// A connected player's remote address (`None` for a local client in host mode, or a
    /// transport with no addresses): [`Player::address`] without borrowing the server mutably.
    pub fn player_address(&self, id: PlayerId) -> Option<SocketAddr> {
        self.players.get(&id)?.address
    }

    /// Sends a message to a player on its channel ([`Message::CHANNEL`], or the first typed
    /// channel of kind [`Message::QOS`]).
    pub fn send<T: Message>(&mut self, to: PlayerId, msg: &T) -> Result<(), MessageError> {
        let channel = self.config.channels.channel_of::<T>()?;
        self.send_on(to, msg, channel)
    }

    /// Sends a message to a player on `channel` (a typed channel).
    pub fn send_on<T: Message>(
        &mut self,
        to: PlayerId,
        msg: &T,
        channel: ChannelId,
    ) -> Result<(), MessageError> {
        self.prepare(msg, channel)?;
        self.deliver_scratch(to, channel)
    }

    /// Sends raw bytes to a player on `channel` (a raw channel): they reach the player's raw
    /// handler for that channel untouched, beside the typed messages of the same connection.
    pub fn send_raw(
        &mut self,
        to: PlayerId,
        channel: ChannelId,
        bytes: &[u8],
    ) -> Result<(), MessageError> {
        self.config.channels.check_raw(channel)?;
        self.deliver(to, channel, bytes)
    }

    /// Sends a message to every authenticated player on its channel, encoding it once; returns
    /// how many it was queued for. Players whose queue refused it are counted in their
    /// [`send_failures`](crate::PlayerStats::send_failures).
    pub fn broadcast<T: Message>(&mut self, msg: &T) -> Result<usize, MessageError> {
        let channel = self.config.channels.channel_of::<T>()?;
        self.broadcast_on(msg, channel)
    }

    /// Sends a message to every authenticated player on `channel`, encoding it once.
    pub fn broadcast_on<T: Message>(
        &mut self,
        msg: &T,
        channel: ChannelId,
    ) -> Result<usize, MessageError> {
        self.prepare(msg, channel)?;
        // A reused list: broadcasting is a hot path and allocates nothing.
        let mut ids = std::mem::take(&mut self.broadcast_ids);
        ids.clear();
        ids.extend(self.players.iter().filter(|(_, p)| p.auth.is_some()).map(|(id, _)| *id));
        let reached = self.deliver_scratch_to(ids.iter().copied(), channel);
        self.broadcast_ids = ids;
        Ok(reached)
    }

    /// Sends a message to each of `players` that is authenticated, on its channel; returns how
    /// many it was queued for.
    pub fn broadcast_to<T: Message>(
        &mut self,
        players: impl IntoIterator<Item = PlayerId>,
        msg: &T,
    ) -> Result<usize, MessageError> {
        let channel = self.config.channels.channel_of::<T>()?;
        self.broadcast_to_on(players, msg, channel)
    }

    /// Sends a message to each of `players` that is authenticated on `channel`, encoding it
    /// once; returns how many it was queued for.
    pub fn broadcast_to_on<T: Message>(
        &mut self,
        players: impl IntoIterator<Item = PlayerId>,
        msg: &T,
        channel: ChannelId,
    ) -> Result<usize, MessageError> {
        self.prepare(msg, channel)?;
        Ok(self.deliver_scratch_to(players, channel))
    }

    /// Sends `to` a message of type `T` whose payload `write` appends (after the id): for a
    /// layer above whose messages end in bytes it writes itself (the object layer's state and
    /// RPC arguments), so they are encoded once, straight into the send buffer. The receiver
    /// sees a `T` message whose body is what `write` wrote.
    pub fn send_with<T: Message>(
        &mut self,
        to: PlayerId,
        channel: ChannelId,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), postcard::Error>,
    ) -> Result<(), MessageError> {
        self.prepare_with::<T>(channel, write)?;
        self.deliver_scratch(to, channel)
    }

    /// [`send_with`](Self::send_with) to each of `players` that is authenticated, encoding
    /// once; returns how many it was queued for.
    pub fn broadcast_to_with<T: Message>(
        &mut self,
        players: impl IntoIterator<Item = PlayerId>,
        channel: ChannelId,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), postcard::Error>,
    ) -> Result<usize, MessageError> {
        self.prepare_with::<T>(channel, write)?;
        Ok(self.deliver_scratch_to(players, channel))
    }

    /// Claims `T`'s id for a layer above that handles `T` itself (through
    /// [`ServerDispatch`]): a collision with another type is reported now, naming both, as
    /// registering a handler would.
    pub fn claim<T: Message>(&mut self) -> Result<(), MessageError> {
        self.names.claim::<T>()
    }

    /// Counts a message from `player` that a handler found invalid (an id that names nothing,
    /// an action it may not take) against its error budget, in
    /// [`dropped_rejected`](crate::PlayerStats::dropped_rejected); past the budget the player
    /// is disconnected as for any other bad input. Layers above the message layer (the object
    /// layer) call it for what they refuse.
    pub fn reject(&mut self, player: PlayerId) {
        self.bad_input(player, BadInput::Rejected);
    }

    /// Whether `player` is a local client (host mode) of this server.
    pub fn is_local_player(&self, player: PlayerId) -> bool {
        self.players.get(&player).is_some_and(|slot| matches!(slot.route, Route::Local(_)))
    }

    /// Sends what is queued now instead of at the end of the next
    /// [`update`](NetworkServer::update).
    pub fn flush(&mut self) -> Result<(), MessageError> {
        if let (Some(transport), Some(now)) = (&mut self.transport, self.now) {
            transport.flush(now)?;
        }
        Ok(())
    }

    /// When the server next needs an [`update`](NetworkServer::update) even if nothing
    /// arrives: the transport's next timer, an authentication deadline, or a lingering
    /// connection's end. A local client's messages need an update too, which this does not
    /// know of.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let transport = self.transport.as_ref().and_then(|t| t.poll_timeout());
        let auth = self.awaiting_auth.front().map(|(at, _)| *at);
        let linger = self.leaving.iter().map(|l| l.until).min();
        [transport, auth, linger].into_iter().flatten().min()
    }

    /// Disconnects a player at once; it sees the connection close without a reason.
    pub fn disconnect(&mut self, id: PlayerId) {
        match self.remove_player(id, DisconnectReason::Closed) {
            Some(Route::Remote(conn)) => {
                let now = self.time();
                if let Some(transport) = &mut self.transport {
                    transport.disconnect(now, conn);
                }
            }
            Some(Route::Local(pipe)) => {
                // Like the transport, an immediate disconnect drops what was not yet read.
                let mut pipe = pipe.lock();
                pipe.to_client.clear();
                pipe.server_closed = true;
            }
            None => {}
        }
    }

    /// Sends a player away with a reason it will see as
    /// [`DisconnectReason::Kicked`].
    pub fn kick(&mut self, id: PlayerId, reason: impl Into<String>) {
        let reason = reason.into();
        self.send_away(id, GoodbyeReason::Kicked(reason.clone()), DisconnectReason::Kicked(reason));
    }

    /// Encodes `msg` into the scratch buffer, checking its channel.
    fn prepare<T: Message>(&mut self, msg: &T, channel: ChannelId) -> Result<(), MessageError> {
        self.config.channels.check_typed(channel)?;
        self.names.claim::<T>()?;
        let max = self.max_on(channel);
        codec::encode(msg, &mut self.scratch, max)
    }

    /// The largest encoded `T` that may go on `channel`: the configured maximum, or less if the
    /// transport's channel takes less (an unfragmented channel holds one packet), so an
    /// oversized message is one error here rather than a refusal for every recipient.
    fn max_on(&self, channel: ChannelId) -> usize {
        let limit = self.limits.get(usize::from(channel.0));
        limit.copied().unwrap_or(self.config.max_message_size)
    }

    /// Encodes a `T` written by `write` into the scratch buffer, checking its channel.
    fn prepare_with<T: Message>(
        &mut self,
        channel: ChannelId,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), postcard::Error>,
    ) -> Result<(), MessageError> {
        self.config.channels.check_typed(channel)?;
        self.names.claim::<T>()?;
        let max = self.max_on(channel);
        codec::encode_with::<T>(&mut self.scratch, max, write)
    }

    /// Sends the scratch buffer to a player.
    fn deliver_scratch(&mut self, to: PlayerId, channel: ChannelId) -> Result<(), MessageError> {
        let scratch = std::mem::take(&mut self.scratch);
        let result = self.deliver(to, channel, &scratch);
        self.scratch = scratch;
        result
    }

    /// Sends the scratch buffer to each of `players` that is authenticated: one encoding,
    /// lent to every recipient's send.
    fn deliver_scratch_to(
        &mut self,
        players: impl IntoIterator<Item = PlayerId>,
        channel: ChannelId,
    ) -> usize {
        let scratch = std::mem::take(&mut self.scratch);
        let reliable = self.config.channels.qos(channel).is_some_and(|qos| qos.is_reliable());
        let mut reached = 0;
        for id in players {
            let Some(slot) = self.players.get_mut(&id).filter(|p| p.auth.is_some()) else {
                continue;
            };
            match send_to(slot, self.transport.as_mut(), id, channel, &scratch) {
                Ok(()) => reached += 1,
                // A player whose own queue cannot take a reliable broadcast would silently
                // miss what everyone else gets (an object's spawn, a state change): it is sent
                // away. (A transport-wide backlog, or a connection already gone, is not this
                // player's overload: those are counted in its stats like any refused send.)
                Err(MessageError::Send(SendError::QueueFull {
                    limit: QueueLimit::Messages(_),
                    ..
                })) if reliable => self.overloaded.push(id),
                Err(_) => {}
            }
        }
        self.scratch = scratch;
        while let Some(id) = self.overloaded.pop() {
            self.send_away(id, GoodbyeReason::Overloaded, DisconnectReason::Overloaded);
        }
        reached
    }

    /// Sends `bytes` to a player.
    fn deliver(
        &mut self,
        to: PlayerId,
        channel: ChannelId,
        bytes: &[u8],
    ) -> Result<(), MessageError> {
        let slot = self.players.get_mut(&to).ok_or(MessageError::UnknownPlayer(to))?;
        send_to(slot, self.transport.as_mut(), to, channel, bytes)
    }

    /// Sends a goodbye, forgets the player, and keeps its connection open a little longer so
    /// the goodbye can arrive.
    fn send_away(&mut self, id: PlayerId, goodbye: GoodbyeReason, reason: DisconnectReason) {
        if !self.players.contains_key(&id) {
            return;
        }
        // The goodbye is best effort: the reason is still reported here if it cannot be sent.
        let _ = self.send_on(id, &Goodbye(goodbye), self.control);
        self.forget(id, reason);
    }

    /// Removes a player after telling it why; remote connections linger for `kick_linger`.
    fn forget(&mut self, id: PlayerId, reason: DisconnectReason) {
        match self.remove_player(id, reason) {
            Some(Route::Remote(conn)) => {
                self.leaving.push(Leaving { conn, until: self.time() + self.config.kick_linger });
            }
            Some(Route::Local(pipe)) => pipe.lock().server_closed = true,
            None => {}
        }
    }

    /// The one way a player leaves the books: its slot and connection entry go, and
    /// `Disconnected` is queued. Returns its route, for the caller to close.
    fn remove_player(&mut self, id: PlayerId, reason: DisconnectReason) -> Option<Route> {
        let slot = self.players.remove(&id)?;
        if let Route::Remote(conn) = slot.route {
            self.by_conn.remove(&conn);
        }
        info!(player = %id, %reason, "player left");
        self.pending.push_back(ServerEvent::Disconnected(id, reason));
        Some(slot.route)
    }

    fn add_player(&mut self, route: Route, address: Option<SocketAddr>) -> PlayerId {
        let id = loop {
            // Ids are never reused while a player holds one, even after 2^32 connections.
            self.next_player = self.next_player.wrapping_add(1);
            let id = PlayerId(self.next_player);
            if !self.players.contains_key(&id) {
                break id;
            }
        };
        if let Route::Remote(conn) = route {
            self.by_conn.insert(conn, id);
        }
        let now = self.time();
        self.awaiting_auth.push_back((now + self.config.auth_timeout, id));
        if let Route::Local(_) = route {
            self.local_ids.push(id);
        }
        let bucket = match (&route, self.config.rate_limit) {
            (Route::Remote(_), Some(limit)) => Some(Bucket::new(limit, now)),
            _ => None,
        };
        self.players.insert(
            id,
            PlayerSlot { route, address, auth: None, bucket, stats: Default::default() },
        );
        info!(player = %id, ?address, "player connected");
        self.pending.push_back(ServerEvent::Connected(id));
        id
    }

    /// Counts a dropped message and disconnects the player past its error budget.
    fn bad_input(&mut self, id: PlayerId, drop: BadInput) {
        let Some(slot) = self.players.get_mut(&id) else { return };
        slot.stats.count(drop);
        debug!(player = %id, ?drop, "message dropped");
        if slot.stats.dropped() > u64::from(self.config.error_budget) {
            self.send_away(id, GoodbyeReason::ErrorBudget, DisconnectReason::ErrorBudget);
        }
    }

    /// Disconnects players that took too long to authenticate, and closes lingering
    /// connections.
    fn run_timers(&mut self) {
        let now = self.time();
        // Deadlines were queued in connection order with one timeout, so they are sorted;
        // players who authenticated or left in the meantime are skipped as they come due.
        while let Some(&(deadline, id)) = self.awaiting_auth.front() {
            if deadline > now {
                break;
            }
            self.awaiting_auth.pop_front();
            if self.players.get(&id).is_some_and(|p| p.auth.is_none()) {
                self.send_away(id, GoodbyeReason::AuthTimeout, DisconnectReason::AuthTimeout);
            }
        }
        if let Some(transport) = &mut self.transport {
            self.leaving.retain(|leaving| {
                let keep = leaving.until > now;
                if !keep {
                    transport.disconnect(now, leaving.conn);
                }
                keep
            });
        }
    }
}

/// What a message from a player turned out to be, decided while the transport lends its bytes;
/// acted on once it is free.
#[derive(Debug, Clone, Copy)]
enum Step {
    Nothing,
    Connect(ConnectionId, Option<SocketAddr>),
    Disconnect(ConnectionId, sturnus_transport::DisconnectReason),
    Bad(PlayerId, BadInput),
    /// A typed handler decoded it.
    Handler(PlayerId, MessageId),
    /// The bytes are in `recv`.
    Auth(PlayerId),
    /// A time request carrying the client's clock, in microseconds: answered at once.
    Time(PlayerId, u64),
    /// Raw bytes on a raw channel, in `recv`.
    Raw(PlayerId, ChannelId),
    /// A typed message with no handler here, in `recv`: for the layer above.
    Above(PlayerId, MessageId),
}

/// What classifying a message needs of the server, borrowed apart from the transport.
struct Inbound<'a> {
    config: &'a ServerConfig,
    players: &'a mut FxHashMap<PlayerId, PlayerSlot>,
    handlers: &'a mut FxHashMap<MessageId, Box<dyn ErasedHandler>>,
    recv: &'a mut Vec<u8>,
    now: Instant,
}

impl Inbound<'_> {
    /// Checks a message from player `id` and decides what it is.
    fn classify(&mut self, id: PlayerId, channel: ChannelId, bytes: &[u8]) -> Step {
        let config = self.config;
        let Some(slot) = self.players.get_mut(&id) else { return Step::Nothing };
        slot.stats.messages_received += 1;
        let authenticated = slot.auth.is_some();
        let within_rate = match (&mut slot.bucket, config.rate_limit) {
            (Some(bucket), Some(limit)) => bucket.take(limit, self.now),
            _ => true,
        };
        if !within_rate {
            return Step::Bad(id, BadInput::RateLimited);
        }
        if bytes.len() > config.max_message_size {
            return Step::Bad(id, BadInput::Oversized);
        }
        if config.channels.is_raw(channel) {
            if !authenticated {
                return Step::Bad(id, BadInput::Unauthenticated);
            }
            self.recv.clear();
            self.recv.extend_from_slice(bytes);
            return Step::Raw(id, channel);
        }
        if config.channels.qos(channel).is_none() {
            return Step::Bad(id, BadInput::Undecodable);
        }
        let Some((msg_id, body)) = codec::split(bytes) else {
            return Step::Bad(id, BadInput::Undecodable);
        };
        if msg_id == AuthRequest::ID {
            if authenticated {
                return Step::Bad(id, BadInput::Unknown);
            }
            self.recv.clear();
            self.recv.extend_from_slice(body);
            return Step::Auth(id);
        }
        if !authenticated {
            return Step::Bad(id, BadInput::Unauthenticated);
        }
        if msg_id == TimeRequest::ID {
            return match codec::decode::<TimeRequest>(body) {
                Some(TimeRequest { client_us }) => {
                    slot.stats.messages_handled += 1;
                    Step::Time(id, client_us)
                }
                None => Step::Bad(id, BadInput::Undecodable),
            };
        }
        match self.handlers.get_mut(&msg_id).map(|handler| handler.decode(body)) {
            Some(true) => {
                // Counted here, where the slot is at hand: the handler runs next.
                slot.stats.messages_handled += 1;
                Step::Handler(id, msg_id)
            }
            Some(false) => Step::Bad(id, BadInput::Undecodable),
            None => {
                self.recv.clear();
                self.recv.extend_from_slice(body);
                Step::Above(id, msg_id)
            }
        }
    }
}

/// A server: accepts clients over a [`Transport`] (and local clients in host mode),
/// authenticates them, and calls the handler registered for each message type.
///
/// # Driving it
///
/// The server is sans-IO: it never reads the clock, sleeps or touches a socket itself. Time is
/// an input, and the transport it is given does the I/O.
///
/// 1. [`start`](Self::start) with a transport that accepts connections (a UDP
///    [`Host`](sturnus_transport::Host) or [`ThreadedHost`](sturnus_transport::ThreadedHost),
///    a [`MemoryTransport`](sturnus_transport::MemoryTransport), your own), or
///    [`start_offline`](Self::start_offline) for local clients only.
/// 2. Call [`update`](Self::update) with the current time every frame or tick: it receives and
///    handles what arrived (handlers and event callbacks run inside it), runs timers and
///    flushes. Drain [`poll_event`](Self::poll_event) after it.
/// 3. Sends made between updates go out at the next update (or [`flush`](ServerContext::flush)).
/// 4. Come back no later than [`poll_timeout`](ServerContext::poll_timeout). `now` must never
///    go backwards.
///
/// The [`driver`](crate::driver) module has the helpers that read the real clock and sleep.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use sturnus_message::{driver, Message, NetworkServer, Player, ServerConfig, ServerEvent};
/// use sturnus_transport::MemoryNetwork;
///
/// #[derive(Serialize, Deserialize, Message)]
/// struct Say(String);
///
/// # fn main() -> Result<(), sturnus_message::MessageError> {
/// let config = ServerConfig::default();
/// let network = MemoryNetwork::new();
/// let transport = network.bind("10.0.0.1:7777".parse().unwrap(), config.channels.kinds().to_vec())?;
/// let mut server = NetworkServer::new(config)?;
/// server.register_handler(|mut player: Player<'_>, say: Say| {
///     let line = Say(format!("{}: {}", player.id(), say.0));
///     let _ = player.server().broadcast(&line);
/// })?;
/// let now = driver::now();
/// server.start(now, transport)?;
/// server.update(now)?;
/// assert_eq!(server.poll_event(), Some(ServerEvent::Started(Some("10.0.0.1:7777".parse().unwrap()))));
/// server.stop();
/// # Ok(())
/// # }
/// ```
pub struct NetworkServer {
    ctx: ServerContext,
    handlers: FxHashMap<MessageId, Box<dyn ErasedHandler>>,
    raw_handlers: Vec<Option<RawHandler>>,
    authenticator: Box<dyn ErasedAuthenticator>,
    events: Events<ServerContext, ServerEvent>,
    /// Bytes lent to the layer above, raw handlers and the authenticator.
    recv: Vec<u8>,
    /// A local client's message, taken out of its pipe.
    local: Vec<u8>,
}

impl std::fmt::Debug for NetworkServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkServer")
            .field("ctx", &self.ctx)
            .field("handlers", &self.handlers.len())
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl Deref for NetworkServer {
    type Target = ServerContext;
    fn deref(&self) -> &ServerContext {
        &self.ctx
    }
}

impl DerefMut for NetworkServer {
    fn deref_mut(&mut self) -> &mut ServerContext {
        &mut self.ctx
    }
}

/// No layer above: every message without a handler is unknown.
struct Nothing;

impl ServerDispatch for Nothing {
    fn message(
        &mut self,
        _: &mut ServerContext,
        _: PlayerId,
        _: MessageId,
        _: &[u8],
    ) -> Dispatched {
        Dispatched::Unknown
    }
}

impl NetworkServer {
    /// A server with `config`, not yet started, letting everyone in ([`NoopAuthenticator`]).
    pub fn new(config: ServerConfig) -> Result<Self, MessageError> {
        config.validate()?;
        let control = config.channels.control()?;
        Ok(Self {
            ctx: ServerContext {
                control,
                throttle: config.auth_throttle.map(Throttle::new),
                config,
                transport: None,
                limits: Vec::new(),
                running: false,
                players: FxHashMap::default(),
                by_conn: FxHashMap::default(),
                leaving: Vec::new(),
                next_player: 0,
                names: codec::Names::with_internal(),
                scratch: Vec::new(),
                broadcast_ids: Vec::new(),
                overloaded: Vec::new(),
                awaiting_auth: VecDeque::new(),
                local_ids: Vec::new(),
                pending: VecDeque::new(),
                now: None,
                stats: ServerStats::default(),
                epoch: None,
            },
            handlers: FxHashMap::default(),
            raw_handlers: Vec::new(),
            authenticator: Box::new(Erased(NoopAuthenticator)),
            events: Events::new(),
            recv: Vec::new(),
            local: Vec::new(),
        })
    }

    /// Replaces the authenticator (it judges every request from now on, including those of
    /// players already connected but not yet authenticated).
    pub fn set_authenticator(&mut self, authenticator: impl Authenticator) {
        self.authenticator = Box::new(Erased(authenticator));
    }

    /// Calls `handler` with each `T` an authenticated player sends, and the player. The
    /// handler may reply, broadcast, kick: the [`Player`] handle reaches the whole server.
    ///
    /// Registering a type again replaces its handler; registering a type whose id another type
    /// already has is an [`MessageError::IdCollision`] naming both.
    pub fn register_handler<T: Message>(
        &mut self,
        handler: impl FnMut(Player<'_>, T) + Send + 'static,
    ) -> Result<(), MessageError> {
        self.ctx.names.claim::<T>()?;
        self.handlers.insert(T::ID, Box::new(Typed { pending: None, handler }));
        Ok(())
    }

    /// Keeps each `T` an authenticated player sends for [`poll_message`](Self::poll_message)
    /// instead of calling a handler: the poll style, for a game loop that reads its input
    /// after [`update`](Self::update). It replaces a handler of `T`, and the other way round.
    /// Messages stay queued until polled: poll after every update (what a player can make the
    /// queue hold is bounded only by its rate limit).
    pub fn register_queue<T: Message>(&mut self) -> Result<(), MessageError> {
        self.ctx.names.claim::<T>()?;
        self.handlers
            .insert(T::ID, Box::new(Queued::<T> { pending: None, queue: VecDeque::new() }));
        Ok(())
    }

    /// The oldest `T` not yet polled, with its sender, if `T` was registered with
    /// [`register_queue`](Self::register_queue).
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use sturnus_message::{Message, NetworkServer, ServerConfig};
    /// #[derive(Serialize, Deserialize, Message)]
    /// struct Say(String);
    ///
    /// let mut server = NetworkServer::new(ServerConfig::default()).unwrap();
    /// server.register_queue::<Say>().unwrap();
    /// // … after each update:
    /// while let Some((player, Say(text))) = server.poll_message::<Say>() {
    ///     println!("{player}: {text}");
    /// }
    /// ```
    pub fn poll_message<T: Message>(&mut self) -> Option<(PlayerId, T)> {
        let handler = self.handlers.get_mut(&T::ID)?;
        handler.as_any_mut().downcast_mut::<Queued<T>>()?.queue.pop_front()
    }

    /// Removes the handler of `T`; its messages are then dropped and counted as unknown.
    pub fn unregister_handler<T: Message>(&mut self) {
        self.handlers.remove(&T::ID);
    }

    /// Calls `handler` with the bytes each authenticated player sends on raw channel
    /// `channel` (see [`ChannelLayout::add_raw`]). Bytes on a raw channel without a handler
    /// are dropped and counted as unknown.
    pub fn register_raw_handler(
        &mut self,
        channel: ChannelId,
        handler: impl FnMut(Player<'_>, ChannelId, &[u8]) + Send + 'static,
    ) -> Result<(), MessageError> {
        self.ctx.config.channels.check_raw(channel)?;
        let index = usize::from(channel.0);
        if self.raw_handlers.len() <= index {
            self.raw_handlers.resize_with(index + 1, || None);
        }
        self.raw_handlers[index] = Some(Box::new(handler));
        Ok(())
    }

    /// Calls `callback` with every lifecycle event, as it happens during
    /// [`update`](Self::update). Events are also queued for [`poll_event`](Self::poll_event);
    /// use either style, or both.
    pub fn on_event(
        &mut self,
        callback: impl FnMut(&mut ServerContext, &ServerEvent) + Send + 'static,
    ) {
        self.events.subscribe(callback);
    }

    /// The next lifecycle event of the latest [`update`](Self::update) (events not polled
    /// before the next update are dropped, so the queue stays bounded).
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.poll()
    }

    /// Starts serving over `transport` (one that accepts connections, with the layout's
    /// channels, and does not trust them before they authenticate: build it from
    /// [`ChannelLayout::endpoint_config`]); returns its address, if it has one.
    pub fn start(
        &mut self,
        now: Instant,
        mut transport: impl Transport + 'static,
    ) -> Result<Option<SocketAddr>, MessageError> {
        let span = self.ctx.span();
        let _span = span.clone().entered();
        if self.ctx.running {
            return Err(MessageError::AlreadyStarted);
        }
        self.ctx.config.channels.check_transport(transport.channels())?;
        if transport.trusts_incoming() {
            return Err(MessageError::TrustsIncoming);
        }
        // A transport that logs on a thread of its own logs under this server's name too.
        transport.set_log_span(span);
        self.ctx.set_time(now);
        self.ctx.epoch.get_or_insert(now);
        let local = transport.local_addr();
        self.ctx.limits = channels::limits(self.ctx.config.max_message_size, Some(&transport));
        self.ctx.transport = Some(Box::new(transport));
        self.ctx.running = true;
        info!(address = ?local, "server started");
        self.ctx.pending.push_back(ServerEvent::Started(local));
        Ok(local)
    }

    /// Starts without a transport: only local clients can join (a single-player game that
    /// runs the same code as a multiplayer one).
    pub fn start_offline(&mut self, now: Instant) -> Result<(), MessageError> {
        if self.ctx.running {
            return Err(MessageError::AlreadyStarted);
        }
        self.ctx.set_time(now);
        self.ctx.epoch.get_or_insert(now);
        self.ctx.running = true;
        self.ctx.pending.push_back(ServerEvent::Started(None));
        Ok(())
    }

    /// The transport, if the server has one (to reach what the trait does not cover).
    pub fn transport_mut(&mut self) -> Option<&mut (dyn Transport + 'static)> {
        self.ctx.transport.as_deref_mut()
    }

    /// A new local client of this server (host mode), over an in-memory path that bypasses the
    /// transport; the server starts offline first if it is not running. The client sees the
    /// same events and handler calls, in the same order, as a remote client; set its
    /// credentials before its first [`update`](NetworkClient::update).
    pub fn connect_local(&mut self, now: Instant) -> Result<NetworkClient, MessageError> {
        if !self.ctx.running {
            self.start_offline(now)?;
        }
        self.ctx.set_time(now);
        let pipe: SharedPipe = Arc::new(Mutex::new(LocalPipe::default()));
        self.ctx.add_player(Route::Local(Arc::clone(&pipe)), None);
        let config = ClientConfig {
            name: format!("{} (local client)", self.ctx.config.name),
            channels: self.ctx.config.channels.clone(),
            max_message_size: self.ctx.config.max_message_size,
            ..ClientConfig::default()
        };
        let epoch = self.ctx.epoch.unwrap_or(now);
        NetworkClient::local(config, pipe, now, epoch, self.ctx.config.tick_rate)
    }

    /// Receives and handles everything that has arrived, runs timers (authentication
    /// timeouts), sends what is queued, and reports lifecycle events, as of `now`. Call it
    /// every frame or tick. It never blocks.
    pub fn update(&mut self, now: Instant) -> Result<(), MessageError> {
        self.update_with(now, &mut Nothing)
    }

    /// [`update`](Self::update), handing typed messages that have no handler here, and every
    /// lifecycle event, to `above`: how a layer above (the object layer) composes the server.
    pub fn update_with(
        &mut self,
        now: Instant,
        above: &mut dyn ServerDispatch,
    ) -> Result<(), MessageError> {
        let _span = self.ctx.span().entered();
        self.events.clear();
        self.ctx.set_time(now);
        // Events queued between updates (started, a local client joining, a kick) come first.
        self.dispatch_events(above);
        self.receive_remote(above)?;
        self.receive_local(above);
        self.ctx.run_timers();
        self.dispatch_events(above);
        self.ctx.flush()
    }

    /// Tells every player the server is stopping, disconnects them, and closes the transport.
    pub fn stop(&mut self) {
        self.stop_with(&mut Nothing);
    }

    /// [`stop`](Self::stop), handing the departures and `Stopped` to `above` too, so a layer
    /// above (the object layer) forgets its players.
    pub fn stop_with(&mut self, above: &mut dyn ServerDispatch) {
        let _span = self.ctx.span().entered();
        if !self.ctx.running {
            return;
        }
        let ids: Vec<PlayerId> = self.ctx.players().collect();
        let control = self.ctx.control;
        for id in ids {
            let _ = self.ctx.send_on(id, &Goodbye(GoodbyeReason::ServerStopped), control);
            self.ctx.forget(id, DisconnectReason::ServerStopped);
        }
        self.ctx.limits.clear();
        if let Some(mut transport) = self.ctx.transport.take() {
            let now = self.ctx.time();
            // The goodbyes go out first, then the transport's own close notices.
            let _ = transport.flush(now);
            for leaving in self.ctx.leaving.drain(..) {
                transport.disconnect(now, leaving.conn);
            }
            let _ = transport.flush(now);
        }
        self.ctx.by_conn.clear();
        self.ctx.running = false;
        info!("server stopped");
        self.ctx.pending.push_back(ServerEvent::Stopped);
        self.dispatch_events(above);
    }

    fn receive_remote(&mut self, above: &mut dyn ServerDispatch) -> Result<(), MessageError> {
        let now = self.ctx.time();
        for _ in 0..self.ctx.config.max_events_per_update {
            let ServerContext { transport, config, players, by_conn, .. } = &mut self.ctx;
            let Some(transport) = transport else { return Ok(()) };
            let step = match transport.poll_event(now)? {
                None => return Ok(()),
                Some(Event::Connected(conn)) => Step::Connect(conn, None),
                Some(Event::Data { conn, channel, payload }) => match by_conn.get(&conn) {
                    Some(&id) => Inbound {
                        config,
                        players,
                        handlers: &mut self.handlers,
                        recv: &mut self.recv,
                        now,
                    }
                    .classify(id, channel, payload),
                    None => Step::Nothing, // a player sent away: its connection only lingers
                },
                Some(Event::Disconnected { conn, reason }) => Step::Disconnect(conn, reason),
                Some(_) => Step::Nothing,
            };
            let step = match step {
                Step::Connect(conn, _) => Step::Connect(conn, transport.remote_address(conn)),
                other => other,
            };
            self.apply(step, above);
            self.dispatch_events(above);
        }
        Ok(())
    }

    fn receive_local(&mut self, above: &mut dyn ServerDispatch) {
        let players = &self.ctx.players;
        self.ctx.local_ids.retain(|id| players.contains_key(id));
        let now = self.ctx.time();
        for index in 0..self.ctx.local_ids.len() {
            let id = self.ctx.local_ids[index];
            for _ in 0..self.ctx.config.max_events_per_update {
                let Some(Route::Local(pipe)) = self.ctx.players.get(&id).map(|p| &p.route) else {
                    break;
                };
                let Some(channel) = local::pop(pipe, |p| &mut p.to_server, &mut self.local) else {
                    let gone = pipe.lock().client_closed || local::abandoned(pipe);
                    if gone {
                        self.ctx.remove_player(id, DisconnectReason::ClosedByPeer);
                    }
                    break;
                };
                let step = Inbound {
                    config: &self.ctx.config,
                    players: &mut self.ctx.players,
                    handlers: &mut self.handlers,
                    recv: &mut self.recv,
                    now,
                }
                .classify(id, channel, &self.local);
                self.apply(step, above);
                self.dispatch_events(above);
            }
        }
    }

    /// Handles `bytes` as a message on `channel` from player `id`, as if it had just arrived,
    /// then dispatches the events it caused. The fuzz targets' way into the server's decode
    /// path without a transport; not a stable API. Only with the `fuzzing` feature, which a
    /// game never enables: it bypasses the transport and authentication.
    #[cfg(feature = "fuzzing")]
    #[doc(hidden)]
    pub fn handle_raw(&mut self, id: PlayerId, channel: ChannelId, bytes: &[u8]) {
        let now = self.ctx.now.unwrap_or_else(crate::driver::now);
        self.ctx.set_time(now);
        let step = Inbound {
            config: &self.ctx.config,
            players: &mut self.ctx.players,
            handlers: &mut self.handlers,
            recv: &mut self.recv,
            now,
        }
        .classify(id, channel, bytes);
        self.apply(step, &mut Nothing);
        self.dispatch_events(&mut Nothing);
    }

    /// Acts on what a message or transport event turned out to be.
    fn apply(&mut self, step: Step, above: &mut dyn ServerDispatch) {
        let ctx = &mut self.ctx;
        match step {
            Step::Nothing => {}
            Step::Connect(conn, address) => {
                ctx.add_player(Route::Remote(conn), address);
            }
            Step::Disconnect(conn, reason) => {
                ctx.leaving.retain(|l| l.conn != conn);
                if let Some(&id) = ctx.by_conn.get(&conn) {
                    ctx.remove_player(id, DisconnectReason::from_transport(reason));
                }
            }
            Step::Bad(id, drop) => ctx.bad_input(id, drop),
            Step::Handler(id, msg_id) => {
                if let Some(handler) = self.handlers.get_mut(&msg_id) {
                    handler.run(ctx, id);
                }
            }
            Step::Raw(id, channel) => {
                match self.raw_handlers.get_mut(usize::from(channel.0)).and_then(Option::as_mut) {
                    Some(handler) => {
                        handled(ctx, id);
                        handler(Player { server: ctx, id }, channel, &self.recv);
                    }
                    None => ctx.bad_input(id, BadInput::Unknown),
                }
            }
            Step::Above(id, msg_id) => match above.message(ctx, id, msg_id, &self.recv) {
                Dispatched::Handled => handled(ctx, id),
                Dispatched::Unknown => {
                    debug!(player = %id, id = %msg_id, "no handler for message");
                    ctx.bad_input(id, BadInput::Unknown);
                }
                Dispatched::Undecodable => ctx.bad_input(id, BadInput::Undecodable),
            },
            Step::Auth(id) => self.authenticate(id),
            Step::Time(id, client_us) => {
                let now = ctx.time();
                ctx.stats.time_requests += 1;
                let server_time = ctx.server_time(now).unwrap_or_default();
                let server_us = u64::try_from(server_time.as_micros()).unwrap_or(u64::MAX);
                let response =
                    TimeResponse { client_us, server_us, tick_rate: ctx.config.tick_rate };
                if let Err(err) = ctx.send_on(id, &response, ctx.control) {
                    debug!(player = %id, %err, "could not answer a time request");
                }
            }
        }
    }

    /// Judges the authentication request in `recv` from player `id`.
    fn authenticate(&mut self, id: PlayerId) {
        let ctx = &mut self.ctx;
        let now = ctx.time();
        let Some(slot) = ctx.players.get_mut(&id) else { return };
        ctx.stats.auth_requests += 1;
        // Throttled by source address, not by connection: a guesser reconnects. Local players
        // have no address and are not throttled.
        let source = slot.address.map(|address| address.ip());
        if let (Some(throttle), Some(ip)) = (&mut ctx.throttle, source) {
            if let Admission::Throttled { retry_after } = throttle.check(now, ip) {
                slot.stats.count(BadInput::RateLimited);
                ctx.stats.auth_throttled += 1;
                return throttled(ctx, id, retry_after);
            }
        }
        slot.stats.messages_handled += 1;
        let applicant = match &slot.route {
            Route::Remote(conn) => {
                let (secure, identity) = ctx
                    .transport
                    .as_ref()
                    .map_or((false, None), |t| (t.is_secure(), t.peer_identity(*conn)));
                Applicant::new(id, slot.address, secure, identity)
            }
            // In-process: nothing crossed a network.
            Route::Local(_) => Applicant::local(id),
        };
        let verdict = match codec::decode::<AuthRequest>(&self.recv) {
            Some(AuthRequest(credentials)) => {
                self.authenticator.authenticate(&applicant, &credentials)
            }
            None => Err("malformed credentials".to_string()),
        };
        if let (Some(throttle), Some(ip)) = (&mut ctx.throttle, source) {
            throttle.record(now, ip, verdict.is_ok());
        }
        verdict_on(ctx, id, verdict);
    }

    /// Hands pending lifecycle events to the layer above, the callbacks and the poll queue.
    fn dispatch_events(&mut self, above: &mut dyn ServerDispatch) {
        self.events.dispatch(&mut self.ctx, |ctx| &mut ctx.pending, &mut |ctx, event| {
            above.event(ctx, event);
        });
    }
}

/// Sends `bytes` to the player in `slot`, counting it.
fn send_to(
    slot: &mut PlayerSlot,
    transport: Option<&mut Box<dyn Transport>>,
    id: PlayerId,
    channel: ChannelId,
    bytes: &[u8],
) -> Result<(), MessageError> {
    match &slot.route {
        Route::Remote(conn) => {
            let transport = transport.expect("remote players exist only with a transport");
            if let Err(err) = transport.send(*conn, channel, bytes) {
                slot.stats.send_failures += 1;
                debug!(player = %id, %err, "send refused");
                return Err(err.into());
            }
        }
        Route::Local(pipe) => local::push(pipe, |p| &mut p.to_client, channel, bytes),
    }
    slot.stats.messages_sent += 1;
    Ok(())
}

/// Counts a message that reached its handler.
fn handled(ctx: &mut ServerContext, id: PlayerId) {
    if let Some(slot) = ctx.players.get_mut(&id) {
        slot.stats.messages_handled += 1;
    }
}

/// Applies the authenticator's verdict on player `id`.
fn verdict_on(
    ctx: &mut ServerContext,
    id: PlayerId,
    verdict: Result<Box<dyn std::any::Any + Send>, String>,
) {
    let control = ctx.control;
    match verdict {
        Ok(data) => {
            ctx.stats.auth_accepted += 1;
            let Some(slot) = ctx.players.get_mut(&id) else { return };
            slot.auth = Some(data);
            if let (Route::Remote(conn), Some(transport)) = (&slot.route, ctx.transport.as_mut()) {
                // The transport may now hold as much for this peer as for any trusted one.
                transport.set_trusted(*conn);
            }
            info!(player = %id, "player authenticated");
            ctx.pending.push_back(ServerEvent::Authenticated(id));
            if let Err(err) = ctx.send_on(id, &AuthResponse::Accepted, control) {
                // The client would wait for an answer forever: better to tell it plainly.
                debug!(player = %id, %err, "could not confirm authentication");
                ctx.disconnect(id);
            }
        }
        Err(why) => {
            ctx.stats.auth_rejected += 1;
            debug!(player = %id, %why, "authentication rejected");
            let _ = ctx.send_on(id, &AuthResponse::Rejected(why.clone()), control);
            ctx.forget(id, DisconnectReason::AuthRejected(why));
        }
    }
}

/// Sends player `id` away unevaluated: its source is over the authentication throttle.
fn throttled(ctx: &mut ServerContext, id: PlayerId, retry_after: Duration) {
    debug!(player = %id, ?retry_after, "authentication throttled");
    // Whole milliseconds, rounded up, so a client that waits as told is not throttled again.
    let retry_after_ms = u64::try_from(retry_after.as_micros().div_ceil(1000)).unwrap_or(u64::MAX);
    let control = ctx.control;
    let _ = ctx.send_on(id, &AuthResponse::Throttled { retry_after_ms }, control);
    let retry_after = Duration::from_millis(retry_after_ms);
    ctx.forget(id, DisconnectReason::AuthThrottled { retry_after });
}
