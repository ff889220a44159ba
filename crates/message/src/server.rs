//! The `NetworkServer`: players, handlers, authentication and host mode.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sturnus_socket::{SocketFactory, UdpSocketFactory};
use sturnus_transport::{ChannelId, ConnectionId, EndpointConfig, Host, HostError, HostEvent, Qos};
use tracing::debug;

use crate::auth::{
    Applicant, AuthRequest, AuthResponse, Authenticator, Erased, ErasedAuthenticator, Goodbye,
    NoopAuthenticator,
};
use crate::client::NetworkClient;
use crate::config::{Channels, INTERNAL_QOS};
use crate::event::{Events, GoodbyeReason};
use crate::local::{self, LocalPipe, SharedPipe};
use crate::player::{BadInput, Bucket, PlayerSlot, Route};
use crate::throttle::{Admission, Throttle};
use crate::{
    ClientConfig, DisconnectReason, Message, MessageError, Player, PlayerId, ServerConfig,
    ServerEvent, codec, now,
};

type Handler = Box<dyn FnMut(Player<'_>, &[u8]) -> bool + Send>;

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
}

/// Everything of a server but its handlers: what handlers and callbacks get to use.
///
/// A [`NetworkServer`] dereferences to it, so its methods are the server's too.
#[derive(Debug)]
pub struct ServerContext {
    config: ServerConfig,
    channels: Channels,
    pub(crate) host: Option<Host<crate::BoxedSocket>>,
    running: bool,
    pub(crate) players: HashMap<PlayerId, PlayerSlot>,
    by_conn: HashMap<ConnectionId, PlayerId>,
    leaving: Vec<Leaving>,
    next_player: u32,
    names: codec::Names,
    scratch: Vec<u8>,
    broadcast_ids: Vec<PlayerId>,
    /// When each player that has not yet authenticated must have, oldest first.
    awaiting_auth: VecDeque<(Instant, PlayerId)>,
    /// Local (host-mode) players, in joining order; pruned lazily as they leave.
    local_ids: Vec<PlayerId>,
    pending: VecDeque<ServerEvent>,
    now: Instant,
    /// Authentication attempts per source address, across connections.
    throttle: Option<Throttle>,
    stats: ServerStats,
}

impl ServerContext {
    /// Whether the server has been started (and not stopped).
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// The address the transport listens on (`None` when not listening).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.host.as_ref().map(Host::local_addr)
    }

    /// The settings.
    pub fn config(&self) -> &ServerConfig {
        &self.config
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

    /// Sends a message to a player on its default quality of service.
    pub fn send<T: Message>(&mut self, to: PlayerId, msg: &T) -> Result<(), MessageError> {
        self.send_on(to, msg, T::QOS)
    }

    /// Sends a message to a player on the channel of kind `qos`.
    pub fn send_on<T: Message>(
        &mut self,
        to: PlayerId,
        msg: &T,
        qos: Qos,
    ) -> Result<(), MessageError> {
        let channel = self.prepare(msg, qos)?;
        self.deliver(to, channel)
    }

    /// Sends a message to every authenticated player; returns how many it was queued for.
    /// Players whose queue refused it are counted in their
    /// [`send_failures`](crate::PlayerStats::send_failures).
    pub fn broadcast<T: Message>(&mut self, msg: &T) -> Result<usize, MessageError> {
        let channel = self.prepare(msg, T::QOS)?;
        let mut reached = 0;
        // A reused list: broadcasting is a hot path and allocates nothing.
        let mut ids = std::mem::take(&mut self.broadcast_ids);
        ids.clear();
        ids.extend(self.players.iter().filter(|(_, p)| p.auth.is_some()).map(|(id, _)| *id));
        for &id in &ids {
            reached += usize::from(self.deliver(id, channel).is_ok());
        }
        self.broadcast_ids = ids;
        Ok(reached)
    }

    /// Sends a message to each of `players` that is authenticated; returns how many it was
    /// queued for.
    pub fn broadcast_to<T: Message>(
        &mut self,
        players: impl IntoIterator<Item = PlayerId>,
        msg: &T,
    ) -> Result<usize, MessageError> {
        self.broadcast_to_on(players, msg, T::QOS)
    }

    /// Sends a message to each of `players` that is authenticated on the channel of kind
    /// `qos`, encoding it once; returns how many it was queued for.
    pub fn broadcast_to_on<T: Message>(
        &mut self,
        players: impl IntoIterator<Item = PlayerId>,
        msg: &T,
        qos: Qos,
    ) -> Result<usize, MessageError> {
        let channel = self.prepare(msg, qos)?;
        let mut reached = 0;
        for id in players {
            if self.players.get(&id).is_some_and(|p| p.auth.is_some()) {
                reached += usize::from(self.deliver(id, channel).is_ok());
            }
        }
        Ok(reached)
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
        if let Some(host) = &mut self.host {
            host.flush()?;
        }
        Ok(())
    }

    /// Disconnects a player at once; it sees the connection close without a reason.
    pub fn disconnect(&mut self, id: PlayerId) {
        match self.remove_player(id, DisconnectReason::Closed) {
            Some(Route::Remote(conn)) => {
                if let Some(host) = &mut self.host {
                    host.disconnect(conn);
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

    /// Encodes `msg` into the scratch buffer and finds its channel.
    fn prepare<T: Message>(&mut self, msg: &T, qos: Qos) -> Result<ChannelId, MessageError> {
        let channel = self.channels.get(qos)?;
        self.names.claim::<T>()?;
        codec::encode(msg, &mut self.scratch, self.config.max_message_size)?;
        Ok(channel)
    }

    /// Sends the scratch buffer to a player.
    fn deliver(&mut self, to: PlayerId, channel: ChannelId) -> Result<(), MessageError> {
        let slot = self.players.get_mut(&to).ok_or(MessageError::UnknownPlayer(to))?;
        match &slot.route {
            Route::Remote(conn) => {
                let host = self.host.as_mut().expect("remote players exist only with a host");
                if let Err(err) = host.send(*conn, channel, &self.scratch) {
                    slot.stats.send_failures += 1;
                    debug!(player = %to, %err, "send refused");
                    return Err(err.into());
                }
            }
            Route::Local(pipe) => {
                let mut pipe = pipe.lock();
                let buf = pipe.buffer(&self.scratch);
                pipe.to_client.push_back(buf);
            }
        }
        slot.stats.messages_sent += 1;
        Ok(())
    }

    /// Sends a goodbye, forgets the player, and keeps its connection open a little longer so
    /// the goodbye can arrive.
    fn send_away(&mut self, id: PlayerId, goodbye: GoodbyeReason, reason: DisconnectReason) {
        if !self.players.contains_key(&id) {
            return;
        }
        // The goodbye is best effort: the reason is still reported here if it cannot be sent.
        let _ = self.send_on(id, &Goodbye(goodbye), INTERNAL_QOS);
        self.forget(id, reason);
    }

    /// Removes a player after telling it why; remote connections linger for `kick_linger`.
    fn forget(&mut self, id: PlayerId, reason: DisconnectReason) {
        match self.remove_player(id, reason) {
            Some(Route::Remote(conn)) => {
                // Current time, not the last update's: this may run between updates.
                self.leaving.push(Leaving { conn, until: now() + self.config.kick_linger });
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
        self.pending.push_back(ServerEvent::Disconnected(id, reason));
        Some(slot.route)
    }

    fn add_player(&mut self, route: Route, address: Option<SocketAddr>) -> PlayerId {
        // Called between updates too (a local client joining): the clock must be current, or
        // the authentication deadline would start in the past.
        self.now = now();
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
        self.awaiting_auth.push_back((self.now + self.config.auth_timeout, id));
        if let Route::Local(_) = route {
            self.local_ids.push(id);
        }
        let bucket = match (&route, self.config.rate_limit) {
            (Route::Remote(_), Some(limit)) => Some(Bucket::new(limit, self.now)),
            _ => None,
        };
        self.players.insert(
            id,
            PlayerSlot { route, address, auth: None, bucket, stats: Default::default() },
        );
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
        let now = self.now;
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
        if let Some(host) = &mut self.host {
            self.leaving.retain(|leaving| {
                let keep = leaving.until > now;
                if !keep {
                    host.disconnect(leaving.conn);
                }
                keep
            });
        }
    }
}

/// A server: accepts clients over the transport (and local clients in host mode), authenticates
/// them, and calls the handler registered for each message type.
///
/// Everything happens on the thread that calls [`update`](Self::update): handlers and event
/// callbacks run there, and no thread is started, so game state needs no locks.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use sturnus_message::{Message, NetworkServer, Player, ServerConfig, ServerEvent};
///
/// #[derive(Serialize, Deserialize, Message)]
/// struct Say(String);
///
/// # fn main() -> Result<(), sturnus_message::MessageError> {
/// let mut server = NetworkServer::new(ServerConfig::default())?;
/// server.register_handler(|mut player: Player<'_>, say: Say| {
///     let line = Say(format!("{}: {}", player.id(), say.0));
///     let _ = player.server().broadcast(&line);
/// })?;
/// let addr = server.start("127.0.0.1:0".parse().unwrap())?;
/// assert!(addr.port() != 0);
/// server.update()?;
/// assert_eq!(server.poll_event(), Some(ServerEvent::Started(Some(addr))));
/// server.stop();
/// # Ok(())
/// # }
/// ```
pub struct NetworkServer {
    ctx: ServerContext,
    handlers: HashMap<crate::MessageId, Handler>,
    authenticator: Box<dyn ErasedAuthenticator>,
    events: Events<ServerContext, ServerEvent>,
    recv: Vec<u8>,
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

impl NetworkServer {
    /// A server with `config`, not yet started, letting everyone in ([`NoopAuthenticator`]).
    pub fn new(config: ServerConfig) -> Result<Self, MessageError> {
        config.validate()?;
        Ok(Self {
            ctx: ServerContext {
                channels: Channels::new(&config.transport.channels),
                throttle: config.auth_throttle.map(Throttle::new),
                config,
                host: None,
                running: false,
                players: HashMap::new(),
                by_conn: HashMap::new(),
                leaving: Vec::new(),
                next_player: 0,
                names: codec::Names::with_internal(),
                scratch: Vec::new(),
                broadcast_ids: Vec::new(),
                awaiting_auth: VecDeque::new(),
                local_ids: Vec::new(),
                pending: VecDeque::new(),
                now: now(),
                stats: ServerStats::default(),
            },
            handlers: HashMap::new(),
            authenticator: Box::new(Erased(NoopAuthenticator)),
            events: Events::new(),
            recv: Vec::new(),
        })
    }

    /// Replaces the authenticator (it judges every request from now on, including those of
    /// players already connected but not yet authenticated).
    pub fn set_authenticator(&mut self, authenticator: impl Authenticator) {
        self.authenticator = Box::new(Erased(authenticator));
    }

    /// Calls `handler` with each `T` an authenticated player sends, and the player.
    ///
    /// Registering a type again replaces its handler; registering a type whose id another type
    /// already has is an [`MessageError::IdCollision`] naming both.
    pub fn register_handler<T: Message>(
        &mut self,
        mut handler: impl FnMut(Player<'_>, T) + Send + 'static,
    ) -> Result<(), MessageError> {
        self.ctx.names.claim::<T>()?;
        let erased: Handler =
            Box::new(move |player, body| codec::call_decoded(body, |msg| handler(player, msg)));
        self.handlers.insert(T::ID, erased);
        Ok(())
    }

    /// Removes the handler of `T`; its messages are then dropped and counted as unknown.
    pub fn unregister_handler<T: Message>(&mut self) {
        self.handlers.remove(&T::ID);
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

    /// Starts listening on UDP at `addr` (port 0 picks one); returns the address.
    pub fn start(&mut self, addr: SocketAddr) -> Result<SocketAddr, MessageError> {
        self.start_on(&UdpSocketFactory::default(), addr)
    }

    /// Starts listening at `addr` on a socket of `factory` (loopback, conditioned, or your
    /// own); returns the address.
    pub fn start_on<F>(&mut self, factory: &F, addr: SocketAddr) -> Result<SocketAddr, MessageError>
    where
        F: SocketFactory,
        F::Socket: std::fmt::Debug + 'static,
    {
        if self.ctx.running {
            return Err(MessageError::AlreadyStarted);
        }
        let socket: crate::BoxedSocket =
            Box::new(factory.server_socket(addr).map_err(HostError::from)?);
        // Peers are untrusted (held to the transport's small reassembly budgets) until their
        // player authenticates, whatever the transport configuration says.
        let config = EndpointConfig {
            accept_connections: true,
            trust_incoming: false,
            ..self.ctx.config.transport.clone()
        };
        let host = Host::new(config, socket)?;
        let local = host.local_addr();
        self.ctx.host = Some(host);
        self.ctx.running = true;
        self.ctx.pending.push_back(ServerEvent::Started(Some(local)));
        Ok(local)
    }

    /// Starts without a transport: only local clients can join (a single-player game that
    /// runs the same code as a multiplayer one).
    pub fn start_offline(&mut self) -> Result<(), MessageError> {
        if self.ctx.running {
            return Err(MessageError::AlreadyStarted);
        }
        self.ctx.running = true;
        self.ctx.pending.push_back(ServerEvent::Started(None));
        Ok(())
    }

    /// Host mode: starts listening on UDP at `addr` and returns a local client already joined
    /// to this server, so one process is both server and player while remote clients connect.
    pub fn start_host(&mut self, addr: SocketAddr) -> Result<NetworkClient, MessageError> {
        self.start(addr)?;
        self.connect_local()
    }

    /// A new local client of this running server, over an in-memory path that bypasses the
    /// transport. It sees the same events and handler calls, in the same order, as a remote
    /// client; set its credentials before its first [`update`](NetworkClient::update).
    pub fn connect_local(&mut self) -> Result<NetworkClient, MessageError> {
        if !self.ctx.running {
            self.start_offline()?;
        }
        let pipe: SharedPipe = Arc::new(Mutex::new(LocalPipe::default()));
        self.ctx.add_player(Route::Local(Arc::clone(&pipe)), None);
        let config = ClientConfig {
            transport: self.ctx.config.transport.clone(),
            max_message_size: self.ctx.config.max_message_size,
            ..ClientConfig::default()
        };
        NetworkClient::local(config, pipe)
    }

    /// Receives and handles everything that has arrived, runs timers (authentication
    /// timeouts), sends what is queued, and reports lifecycle events. Call it every frame or
    /// tick. It never blocks.
    pub fn update(&mut self) -> Result<(), MessageError> {
        self.events.clear();
        self.ctx.now = now();
        // Events queued between updates (started, a local client joining, a kick) come first.
        self.dispatch_events();
        self.receive_remote()?;
        self.receive_local();
        self.ctx.run_timers();
        self.dispatch_events();
        if let Some(host) = &mut self.ctx.host {
            host.flush()?;
        }
        Ok(())
    }

    /// Sleeps until a datagram may have arrived, a transport timer is due, or `timeout`
    /// passes. Returns at once if a local client has sent something.
    pub fn wait(&mut self, timeout: Duration) -> Result<(), MessageError> {
        let local_ready = self.ctx.local_ids.iter().any(|id| match self.ctx.players.get(id) {
            Some(PlayerSlot { route: Route::Local(pipe), .. }) => !pipe.lock().to_server.is_empty(),
            _ => false,
        });
        if local_ready {
            return Ok(());
        }
        match &mut self.ctx.host {
            Some(host) => host.wait(Some(timeout))?,
            None => std::thread::sleep(timeout),
        }
        Ok(())
    }

    /// Tells every player the server is stopping, disconnects them, and closes the transport.
    pub fn stop(&mut self) {
        if !self.ctx.running {
            return;
        }
        let ids: Vec<PlayerId> = self.ctx.players().collect();
        for id in ids {
            let _ = self.ctx.send_on(id, &Goodbye(GoodbyeReason::ServerStopped), INTERNAL_QOS);
            self.ctx.forget(id, DisconnectReason::ServerStopped);
        }
        if let Some(mut host) = self.ctx.host.take() {
            // The goodbyes go out first, then the transport's own close notices.
            let _ = host.flush();
            for leaving in self.ctx.leaving.drain(..) {
                host.disconnect(leaving.conn);
            }
            let _ = host.flush();
        }
        self.ctx.by_conn.clear();
        self.ctx.running = false;
        self.ctx.pending.push_back(ServerEvent::Stopped);
        self.dispatch_events();
    }

    fn receive_remote(&mut self) -> Result<(), MessageError> {
        for _ in 0..self.ctx.config.max_events_per_update {
            let Some(host) = &mut self.ctx.host else { return Ok(()) };
            let from = match host.receive()? {
                HostEvent::Nothing => return Ok(()),
                HostEvent::Connect(conn) => {
                    let address = host.endpoint().remote_address(conn);
                    self.ctx.add_player(Route::Remote(conn), address);
                    None
                }
                HostEvent::Data { conn, payload, .. } => match self.ctx.by_conn.get(&conn) {
                    Some(&id) => {
                        self.recv.clear();
                        self.recv.extend_from_slice(payload);
                        Some(id)
                    }
                    None => None, // a player sent away: its connection only lingers
                },
                HostEvent::Disconnect(conn, reason) => {
                    self.ctx.leaving.retain(|l| l.conn != conn);
                    if let Some(&id) = self.ctx.by_conn.get(&conn) {
                        self.ctx.remove_player(id, DisconnectReason::from_transport(reason));
                    }
                    None
                }
                _ => None,
            };
            if let Some(id) = from {
                self.handle_message(id);
            }
            self.dispatch_events();
        }
        Ok(())
    }

    fn receive_local(&mut self) {
        let players = &self.ctx.players;
        self.ctx.local_ids.retain(|id| players.contains_key(id));
        for index in 0..self.ctx.local_ids.len() {
            let id = self.ctx.local_ids[index];
            for _ in 0..self.ctx.config.max_events_per_update {
                let Some(Route::Local(pipe)) = self.ctx.players.get(&id).map(|p| &p.route) else {
                    break;
                };
                if !local::pop(pipe, |p| &mut p.to_server, &mut self.recv) {
                    let gone = pipe.lock().client_closed || local::abandoned(pipe);
                    if gone {
                        self.ctx.remove_player(id, DisconnectReason::ClosedByPeer);
                    }
                    break;
                }
                self.handle_message(id);
                self.dispatch_events();
            }
        }
    }

    /// Handles `bytes` as a message (a two-byte id, then the payload) from player `id`, as if
    /// it had just arrived, then dispatches the events it caused. The fuzz targets' way into
    /// the server's decode path without a transport; not a stable API. Only with the
    /// `fuzzing` feature, which a game never enables: it bypasses the transport and
    /// authentication.
    #[cfg(feature = "fuzzing")]
    #[doc(hidden)]
    pub fn handle_raw(&mut self, id: PlayerId, bytes: &[u8]) {
        self.recv.clear();
        self.recv.extend_from_slice(bytes);
        self.handle_message(id);
        self.dispatch_events();
    }

    /// Checks and dispatches the message in `self.recv` from player `id`.
    fn handle_message(&mut self, id: PlayerId) {
        let ctx = &mut self.ctx;
        let max = ctx.config.max_message_size;
        let (limit, now) = (ctx.config.rate_limit, ctx.now);
        let Some(slot) = ctx.players.get_mut(&id) else { return };
        slot.stats.messages_received += 1;
        let authenticated = slot.auth.is_some();
        let within_rate = match (&mut slot.bucket, limit) {
            (Some(bucket), Some(limit)) => bucket.take(limit, now),
            _ => true,
        };
        let drop = if !within_rate {
            Some(BadInput::RateLimited)
        } else if self.recv.len() > max {
            Some(BadInput::Oversized)
        } else {
            None
        };
        if let Some(drop) = drop {
            return ctx.bad_input(id, drop);
        }
        let Some((msg_id, body)) = codec::split(&self.recv) else {
            return ctx.bad_input(id, BadInput::Undecodable);
        };
        if msg_id == AuthRequest::ID {
            if authenticated {
                return ctx.bad_input(id, BadInput::Unknown);
            }
            ctx.stats.auth_requests += 1;
            // Throttled by source address, not by connection: a guesser reconnects. Local
            // players have no address and are not throttled.
            let source = slot.address.map(|address| address.ip());
            if let (Some(throttle), Some(ip)) = (&mut ctx.throttle, source) {
                if let Admission::Throttled { retry_after } = throttle.check(now, ip) {
                    slot.stats.count(BadInput::RateLimited);
                    ctx.stats.auth_throttled += 1;
                    return throttled(ctx, id, retry_after);
                }
            }
            slot.stats.messages_handled += 1;
            let request = codec::decode::<AuthRequest>(body);
            let applicant = Applicant { player: id, address: slot.address };
            let verdict = match request {
                Some(AuthRequest(credentials)) => {
                    self.authenticator.authenticate(&applicant, &credentials)
                }
                None => Err("malformed credentials".to_string()),
            };
            if let (Some(throttle), Some(ip)) = (&mut ctx.throttle, source) {
                throttle.record(now, ip, verdict.is_ok());
            }
            return authenticate(ctx, id, verdict);
        }
        if !authenticated {
            return ctx.bad_input(id, BadInput::Unauthenticated);
        }
        let Some(handler) = self.handlers.get_mut(&msg_id) else {
            debug!(player = %id, id = %msg_id, "no handler for message");
            return ctx.bad_input(id, BadInput::Unknown);
        };
        if handler(Player { server: ctx, id }, body) {
            if let Some(slot) = ctx.players.get_mut(&id) {
                slot.stats.messages_handled += 1;
            }
        } else {
            ctx.bad_input(id, BadInput::Undecodable);
        }
    }

    /// Hands pending lifecycle events to the callbacks and the poll queue.
    fn dispatch_events(&mut self) {
        self.events.dispatch(&mut self.ctx, |ctx| &mut ctx.pending);
    }
}

/// Applies the authenticator's verdict on player `id`.
fn authenticate(
    ctx: &mut ServerContext,
    id: PlayerId,
    verdict: Result<Box<dyn std::any::Any + Send>, String>,
) {
    match verdict {
        Ok(data) => {
            ctx.stats.auth_accepted += 1;
            let Some(slot) = ctx.players.get_mut(&id) else { return };
            slot.auth = Some(data);
            if let (Route::Remote(conn), Some(host)) = (&slot.route, ctx.host.as_mut()) {
                // The transport may now hold as much for this peer as for any trusted one.
                host.set_trusted(*conn);
            }
            ctx.pending.push_back(ServerEvent::Authenticated(id));
            if let Err(err) = ctx.send_on(id, &AuthResponse::Accepted, INTERNAL_QOS) {
                // The client would wait for an answer forever: better to tell it plainly.
                debug!(player = %id, %err, "could not confirm authentication");
                ctx.disconnect(id);
            }
        }
        Err(why) => {
            ctx.stats.auth_rejected += 1;
            debug!(player = %id, %why, "authentication rejected");
            let _ = ctx.send_on(id, &AuthResponse::Rejected(why.clone()), INTERNAL_QOS);
            ctx.forget(id, DisconnectReason::AuthRejected(why));
        }
    }
}

/// Sends player `id` away unevaluated: its source is over the authentication throttle.
fn throttled(ctx: &mut ServerContext, id: PlayerId, retry_after: Duration) {
    debug!(player = %id, ?retry_after, "authentication throttled");
    // Whole milliseconds, rounded up, so a client that waits as told is not throttled again.
    let retry_after_ms = u64::try_from(retry_after.as_micros().div_ceil(1000)).unwrap_or(u64::MAX);
    let _ = ctx.send_on(id, &AuthResponse::Throttled { retry_after_ms }, INTERNAL_QOS);
    let retry_after = Duration::from_millis(retry_after_ms);
    ctx.forget(id, DisconnectReason::AuthThrottled { retry_after });
}
