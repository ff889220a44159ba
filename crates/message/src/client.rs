//! The `NetworkClient`: one connection to a server, remote or local.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use serde::Serialize;
use sturnus_transport::{ChannelId, ConnectionId, ConnectionStats, Event, Transport};
use tracing::{debug, info, warn};

use crate::auth::{AuthRequest, AuthResponse, Goodbye};
use crate::channels;
use crate::dispatch::{ClientDispatch, Dispatched};
use crate::event::Events;
use crate::local::{self, SharedPipe};
use crate::time::{ClientClock, ClockEstimator, TimeResponse, tick_at};
use crate::{
    ChannelLayout, ClientConfig, ClientEvent, DisconnectReason, Message, MessageError, MessageId,
    codec,
};

/// A typed handler, erased: decodes while the transport lends the bytes, runs after.
trait ErasedHandler: Send {
    fn decode(&mut self, body: &[u8]) -> bool;
    fn run(&mut self, ctx: &mut ClientContext);
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any;
}

struct Typed<T, F> {
    pending: Option<T>,
    handler: F,
}

impl<T: Message, F: FnMut(&mut ClientContext, T) + Send + 'static> ErasedHandler for Typed<T, F> {
    fn decode(&mut self, body: &[u8]) -> bool {
        self.pending = codec::decode(body);
        self.pending.is_some()
    }

    fn run(&mut self, ctx: &mut ClientContext) {
        if let Some(msg) = self.pending.take() {
            (self.handler)(ctx, msg);
        }
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

/// The messages of one type kept for [`NetworkClient::poll_message`].
struct Queued<T> {
    pending: Option<T>,
    queue: VecDeque<T>,
}

impl<T: Message> ErasedHandler for Queued<T> {
    fn decode(&mut self, body: &[u8]) -> bool {
        self.pending = codec::decode(body);
        self.pending.is_some()
    }

    fn run(&mut self, _: &mut ClientContext) {
        if let Some(msg) = self.pending.take() {
            self.queue.push_back(msg);
        }
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

type RawHandler = Box<dyn FnMut(&mut ClientContext, ChannelId, &[u8]) + Send>;

/// Where a client is in its connection's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientState {
    /// Not connected (never, or no longer).
    Disconnected,
    /// The transport is connecting.
    Connecting,
    /// Connected; waiting for the server to accept the credentials.
    Authenticating,
    /// Accepted: messages may be sent.
    Authenticated,
}

/// What a client counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStats {
    /// Messages received from the server.
    pub messages_received: u64,
    /// Messages that reached a handler (or were the layer's own).
    pub messages_handled: u64,
    /// Messages sent.
    pub messages_sent: u64,
    /// Dropped: no handler for the id.
    pub dropped_unknown: u64,
    /// Dropped: the payload did not decode as the id's type (or had no id).
    pub dropped_undecodable: u64,
    /// Dropped: larger than `max_message_size`.
    pub dropped_oversized: u64,
}

/// One line: `received 300, handled 300, sent 120 · dropped 0: 0 unknown, 0 undecodable, 0
/// oversized`.
impl std::fmt::Display for ClientStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dropped = self.dropped_unknown + self.dropped_undecodable + self.dropped_oversized;
        write!(
            f,
            "received {}, handled {}, sent {} · dropped {dropped}: {} unknown, {} undecodable, \
             {} oversized",
            self.messages_received,
            self.messages_handled,
            self.messages_sent,
            self.dropped_unknown,
            self.dropped_undecodable,
            self.dropped_oversized
        )
    }
}

enum Route {
    None,
    Remote { transport: Box<dyn Transport>, conn: ConnectionId },
    Local(SharedPipe),
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Route::None => f.write_str("None"),
            Route::Remote { transport, conn } => {
                f.debug_struct("Remote").field("transport", transport).field("conn", conn).finish()
            }
            Route::Local(_) => f.write_str("Local"),
        }
    }
}

/// Everything of a client but its handlers: what handlers, callbacks and the layers above get
/// to use.
///
/// A [`NetworkClient`] dereferences to it, so its methods are the client's too.
#[derive(Debug)]
pub struct ClientContext {
    config: ClientConfig,
    control: ChannelId,
    route: Route,
    /// The largest encoded message of each channel (see [`channels::limits`]).
    limits: Vec<usize>,
    state: ClientState,
    names: codec::Names,
    scratch: Vec<u8>,
    credentials: Vec<u8>,
    /// The credentials are a secret (a [`Login`](crate::Login)'s password): they are sent
    /// only over a connection that keeps them secret, unless allowed.
    credentials_secret: bool,
    /// Send secret credentials over plaintext to other hosts anyway.
    plaintext_credentials_allowed: bool,
    pending: VecDeque<ClientEvent>,
    stats: ClientStats,
    /// The time of the latest input (`None` before the first).
    now: Option<Instant>,
    /// The estimate of the server's clock (see [`crate::time`]).
    clock: ClientClock,
}

impl ClientContext {
    /// Where the connection is in its life.
    pub fn state(&self) -> ClientState {
        self.state
    }

    /// Whether the server accepted this client: messages may be sent.
    pub fn is_authenticated(&self) -> bool {
        self.state == ClientState::Authenticated
    }

    /// Whether this is a host's local client.
    pub fn is_local(&self) -> bool {
        matches!(self.route, Route::Local(_))
    }

    /// The local address of the client's transport (`None` for a local client).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.route {
            Route::Remote { transport, .. } => transport.local_addr(),
            _ => None,
        }
    }

    /// The server's address, as the transport knows it (`None` for a local client, before
    /// [`connect`](NetworkClient::connect), or for a transport with no addresses).
    pub fn server_addr(&self) -> Option<SocketAddr> {
        match &self.route {
            Route::Remote { transport, conn } => transport.remote_address(*conn),
            _ => None,
        }
    }

    /// The channel layout.
    pub fn channels(&self) -> &ChannelLayout {
        &self.config.channels
    }

    /// The time of the latest input (`None` before the first).
    pub fn now(&self) -> Option<Instant> {
        self.now
    }

    /// The server's clock at `now` (the time since the server started), as this client
    /// estimates it: `None` until the first answer to its time requests. Once a few answers
    /// are in it never goes backwards as `now` goes forwards, and follows the server within a
    /// few milliseconds on a jittery network (see [`crate::time`] for how). A local client
    /// (host mode) reads the server's clock exactly.
    pub fn server_time(&self, now: Instant) -> Option<Duration> {
        self.clock.server_time(now)
    }

    /// The server's tick at `now`: [`server_time`](Self::server_time) times the server's
    /// [`tick_rate`](crate::ServerConfig::tick_rate), rounded down (`None` until the first
    /// answer).
    pub fn server_tick(&self, now: Instant) -> Option<u64> {
        Some(tick_at(self.server_time(now)?, self.clock.tick_rate?))
    }

    /// The server's ticks per second (`None` until the first answer to a time request).
    pub fn server_tick_rate(&self) -> Option<u32> {
        self.clock.tick_rate
    }

    /// The smoothed round trip of the time requests (`None` before the first answer, and for
    /// a local client).
    pub fn rtt(&self) -> Option<Duration> {
        self.clock.estimator.rtt()
    }

    /// The estimator behind [`server_time`](Self::server_time) (its samples, whether it is
    /// synchronised); a local client's is never fed.
    pub fn clock(&self) -> &ClockEstimator {
        &self.clock.estimator
    }

    /// What the client counted.
    pub fn stats(&self) -> ClientStats {
        self.stats
    }

    /// The transport's statistics of the connection (RTT, loss, resends; `None` for a local
    /// client, or a transport that keeps none).
    pub fn connection_stats(&self) -> Option<ConnectionStats> {
        match &self.route {
            Route::Remote { transport, conn } => transport.connection_stats(*conn),
            _ => None,
        }
    }

    /// Sends a message to the server on its channel ([`Message::CHANNEL`], or the first typed
    /// channel of kind [`Message::QOS`]).
    pub fn send<T: Message>(&mut self, msg: &T) -> Result<(), MessageError> {
        let channel = self.config.channels.channel_of::<T>()?;
        self.send_on(msg, channel)
    }

    /// Sends a message to the server on `channel` (a typed channel). Fails with
    /// [`MessageError::NotAuthenticated`] until [`ClientEvent::Authenticated`].
    pub fn send_on<T: Message>(&mut self, msg: &T, channel: ChannelId) -> Result<(), MessageError> {
        if self.state != ClientState::Authenticated {
            return Err(MessageError::NotAuthenticated);
        }
        self.send_unchecked(msg, channel)
    }

    /// Sends raw bytes to the server on `channel` (a raw channel): they reach the server's raw
    /// handler for it untouched. Fails with [`MessageError::NotAuthenticated`] until
    /// [`ClientEvent::Authenticated`].
    pub fn send_raw(&mut self, channel: ChannelId, bytes: &[u8]) -> Result<(), MessageError> {
        if self.state != ClientState::Authenticated {
            return Err(MessageError::NotAuthenticated);
        }
        self.config.channels.check_raw(channel)?;
        self.deliver(channel, bytes)
    }

    /// Claims `T`'s id for a layer above that handles `T` itself (through
    /// [`ClientDispatch`]): a collision with another type is reported now, naming both.
    pub fn claim<T: Message>(&mut self) -> Result<(), MessageError> {
        self.names.claim::<T>()
    }

    /// Sends the server a message of type `T` whose payload `write` appends after the id (see
    /// [`ServerContext::send_with`](crate::ServerContext::send_with)).
    pub fn send_with<T: Message>(
        &mut self,
        channel: ChannelId,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), postcard::Error>,
    ) -> Result<(), MessageError> {
        if self.state != ClientState::Authenticated {
            return Err(MessageError::NotAuthenticated);
        }
        self.config.channels.check_typed(channel)?;
        self.names.claim::<T>()?;
        let max = self.max_on(channel);
        codec::encode_with::<T>(&mut self.scratch, max, write)?;
        let scratch = std::mem::take(&mut self.scratch);
        let result = self.deliver(channel, &scratch);
        self.scratch = scratch;
        result
    }

    fn send_unchecked<T: Message>(
        &mut self,
        msg: &T,
        channel: ChannelId,
    ) -> Result<(), MessageError> {
        self.config.channels.check_typed(channel)?;
        self.names.claim::<T>()?;
        let max = self.max_on(channel);
        codec::encode(msg, &mut self.scratch, max)?;
        let scratch = std::mem::take(&mut self.scratch);
        let result = self.deliver(channel, &scratch);
        self.scratch = scratch;
        result
    }

    /// The largest encoded message that may go on `channel`: the configured maximum, or less
    /// if the transport's channel takes less.
    fn max_on(&self, channel: ChannelId) -> usize {
        let limit = self.limits.get(usize::from(channel.0));
        limit.copied().unwrap_or(self.config.max_message_size)
    }

    fn deliver(&mut self, channel: ChannelId, bytes: &[u8]) -> Result<(), MessageError> {
        match &mut self.route {
            Route::Remote { transport, conn } => transport.send(*conn, channel, bytes)?,
            Route::Local(pipe) => local::push(pipe, |p| &mut p.to_server, channel, bytes),
            Route::None => return Err(MessageError::NotAuthenticated),
        }
        self.stats.messages_sent += 1;
        Ok(())
    }

    /// Sends what is queued now instead of at the end of the next
    /// [`update`](NetworkClient::update) (a local client's messages need no flushing).
    pub fn flush(&mut self) -> Result<(), MessageError> {
        if let (Route::Remote { transport, .. }, Some(now)) = (&mut self.route, self.now) {
            transport.flush(now)?;
        }
        Ok(())
    }

    /// When the client next needs an [`update`](NetworkClient::update) even if nothing
    /// arrives: its transport's next timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.route {
            Route::Remote { transport, .. } => {
                let asking = self.clock.next_request().filter(|_| self.is_authenticated());
                match (transport.poll_timeout(), asking) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
            _ => None,
        }
    }

    /// Sends a time request if one is due (remote and authenticated only).
    fn ask_time(&mut self) {
        let Some(now) = self.now else { return };
        if self.state != ClientState::Authenticated || !matches!(self.route, Route::Remote { .. }) {
            return;
        }
        if let Some(request) = self.clock.due(now) {
            if let Err(err) = self.send_unchecked(&request, self.control) {
                debug!(%err, "could not send a time request");
            }
        }
    }

    /// Leaves the server; [`ClientEvent::Disconnected`] with [`DisconnectReason::Closed`]
    /// follows.
    pub fn disconnect(&mut self) {
        self.close(DisconnectReason::Closed);
    }

    fn close(&mut self, reason: DisconnectReason) {
        if self.state == ClientState::Disconnected {
            return;
        }
        match (&mut self.route, self.now) {
            (Route::Remote { transport, conn }, Some(now)) => {
                transport.disconnect(now, *conn);
                // Send the first close notice now; later updates send the copies.
                let _ = transport.flush(now);
            }
            (Route::Local(pipe), _) => pipe.lock().client_closed = true,
            _ => {}
        }
        info!(%reason, "client disconnected");
        self.state = ClientState::Disconnected;
        self.pending.push_back(ClientEvent::Disconnected(reason));
    }

    /// Whether the server of a local client has sent something not yet handled.
    pub(crate) fn local_pending(&self) -> bool {
        matches!(&self.route, Route::Local(pipe) if !pipe.lock().to_client.is_empty())
    }

    /// The span everything of this client happens in, naming it.
    fn span(&self) -> tracing::Span {
        tracing::info_span!("endpoint", name = %self.config.name)
    }

    /// The connection is up: present the credentials, unless they are secret and the
    /// connection is neither encrypted nor to this machine (`private` says whether it is).
    fn on_connected(&mut self, private: bool) {
        if self.credentials_secret && !private && !self.plaintext_credentials_allowed {
            warn!(
                "not sending the password over a plaintext connection to another host: use a \
                 secure transport (netcode), or allow it with allow_plaintext_credentials"
            );
            self.close(DisconnectReason::InsecureCredentials);
            return;
        }
        self.state = ClientState::Authenticating;
        self.pending.push_back(ClientEvent::Connected);
        let request = AuthRequest(std::mem::take(&mut self.credentials));
        if let Err(err) = self.send_unchecked(&request, self.control) {
            debug!(%err, "could not send the credentials");
        }
        self.credentials = request.0;
    }
}

/// What a message from the server turned out to be, decided while the transport lends it.
#[derive(Debug, Clone, Copy)]
enum Step {
    Nothing,
    /// The connection is up; `private`: encrypted or to this machine (worked out once the
    /// transport's event is no longer lent).
    Connected {
        private: Option<bool>,
    },
    Disconnected(sturnus_transport::DisconnectReason),
    /// A typed handler decoded it.
    Handler(MessageId),
    /// The layer's own message, in `recv`.
    Own(MessageId),
    /// Raw bytes, in `recv`.
    Raw(ChannelId),
    /// For the layer above, in `recv`.
    Above(MessageId),
}

/// A client: connects to a [`NetworkServer`](crate::NetworkServer) over a [`Transport`],
/// authenticates, and calls the handler registered for each message type the server sends.
///
/// It is sans-IO like the server: [`connect`](Self::connect) with a transport, then
/// [`update`](Self::update) with the current time every frame (handlers and event callbacks run
/// inside it; drain [`poll_event`](Self::poll_event) after it), and come back no later than
/// [`poll_timeout`](ClientContext::poll_timeout). The [`driver`](crate::driver) module reads
/// the real clock and sleeps for you.
///
/// ```no_run
/// use std::time::Duration;
/// use serde::{Deserialize, Serialize};
/// use sturnus_message::{driver, ClientConfig, ClientEvent, Message, NetworkClient};
/// use sturnus_socket::UdpSocketFactory;
/// use sturnus_transport::Host;
///
/// #[derive(Serialize, Deserialize, Message)]
/// struct Say(String);
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = ClientConfig::default();
/// let server = "127.0.0.1:7777".parse()?;
/// let transport = Host::new(
///     config.channels.endpoint_config(),
///     sturnus_socket::SocketFactory::client_socket(&UdpSocketFactory::default(), server)?,
/// )?;
/// let mut client = NetworkClient::new(config)?;
/// client.register_handler(|_client, line: Say| println!("{}", line.0))?;
/// client.connect(driver::now(), transport, server)?;
/// loop {
///     client.update(driver::now())?;
///     while let Some(event) = client.poll_event() {
///         match event {
///             ClientEvent::Authenticated => client.send(&Say("hello".into()))?,
///             ClientEvent::Disconnected(reason) => return Ok(println!("left: {reason}")),
///             _ => {}
///         }
///     }
///     client.wait(Duration::from_millis(16))?;
/// }
/// # }
/// ```
pub struct NetworkClient {
    ctx: ClientContext,
    handlers: FxHashMap<MessageId, Box<dyn ErasedHandler>>,
    raw_handlers: Vec<Option<RawHandler>>,
    events: Events<ClientContext, ClientEvent>,
    recv: Vec<u8>,
    /// A local client's message, taken out of its pipe.
    local: Vec<u8>,
}

impl std::fmt::Debug for NetworkClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkClient")
            .field("ctx", &self.ctx)
            .field("handlers", &self.handlers.len())
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl Deref for NetworkClient {
    type Target = ClientContext;
    fn deref(&self) -> &ClientContext {
        &self.ctx
    }
}

impl DerefMut for NetworkClient {
    fn deref_mut(&mut self) -> &mut ClientContext {
        &mut self.ctx
    }
}

/// No layer above.
struct Nothing;

impl ClientDispatch for Nothing {
    fn message(&mut self, _: &mut ClientContext, _: MessageId, _: &[u8]) -> Dispatched {
        Dispatched::Unknown
    }
}

impl NetworkClient {
    /// A client with `config`, not connected, whose credentials are `()` (what
    /// [`NoopAuthenticator`](crate::NoopAuthenticator) expects).
    pub fn new(config: ClientConfig) -> Result<Self, MessageError> {
        config.validate()?;
        let control = config.channels.control()?;
        Ok(Self {
            ctx: ClientContext {
                config,
                control,
                route: Route::None,
                limits: Vec::new(),
                state: ClientState::Disconnected,
                names: codec::Names::with_internal(),
                scratch: Vec::new(),
                credentials: Vec::new(),
                credentials_secret: false,
                plaintext_credentials_allowed: false,
                pending: VecDeque::new(),
                stats: ClientStats::default(),
                now: None,
                clock: ClientClock::default(),
            },
            handlers: FxHashMap::default(),
            raw_handlers: Vec::new(),
            events: Events::new(),
            recv: Vec::new(),
            local: Vec::new(),
        })
    }

    pub(crate) fn local(
        config: ClientConfig,
        pipe: SharedPipe,
        now: Instant,
        server_epoch: Instant,
        tick_rate: u32,
    ) -> Result<Self, MessageError> {
        let mut client = Self::new(config)?;
        client.ctx.clock = ClientClock::local(server_epoch, tick_rate);
        client.ctx.route = Route::Local(pipe);
        client.ctx.state = ClientState::Connecting;
        client.ctx.now = Some(now);
        Ok(client)
    }

    /// Sets the credentials sent to the server when the connection is made: the server's
    /// [`Authenticator::Credentials`](crate::Authenticator::Credentials).
    ///
    /// A [`Login`](crate::Login) carries a password: it is sent only over a secure transport
    /// (one whose [`is_secure`](sturnus_transport::Transport::is_secure) says so: the netcode
    /// transport mode) or to a loopback address. Over plaintext to another host the client
    /// does not send it and disconnects with [`DisconnectReason::InsecureCredentials`],
    /// unless [`allow_plaintext_credentials`](Self::allow_plaintext_credentials) says
    /// otherwise.
    pub fn set_credentials<C: Serialize + 'static>(
        &mut self,
        credentials: &C,
    ) -> Result<(), MessageError> {
        self.ctx.credentials = postcard::to_allocvec(credentials)
            .map_err(|source| MessageError::Encode { name: "credentials", source })?;
        self.ctx.credentials_secret =
            std::any::TypeId::of::<C>() == std::any::TypeId::of::<crate::Login>();
        Ok(())
    }

    /// Lets a password ([`Login`](crate::Login)) cross a plaintext connection to another host
    /// (`true`): for development on a trusted network only — anyone on the path reads it.
    pub fn allow_plaintext_credentials(&mut self, allowed: bool) {
        self.ctx.plaintext_credentials_allowed = allowed;
    }

    /// Connects to the server at `server` over `transport` (which must have the layout's
    /// channels).
    pub fn connect(
        &mut self,
        now: Instant,
        mut transport: impl Transport + 'static,
        server: SocketAddr,
    ) -> Result<(), MessageError> {
        let span = self.ctx.span();
        let _span = span.clone().entered();
        if self.ctx.state != ClientState::Disconnected || self.ctx.is_local() {
            return Err(MessageError::AlreadyStarted);
        }
        self.ctx.config.channels.check_transport(transport.channels())?;
        // A transport that logs on a thread of its own logs under this client's name too.
        transport.set_log_span(span);
        self.ctx.now = Some(self.ctx.now.map_or(now, |last| last.max(now)));
        let conn = transport.connect(now, server)?;
        self.ctx.limits = channels::limits(self.ctx.config.max_message_size, Some(&transport));
        info!(%server, "client connecting");
        self.ctx.route = Route::Remote { transport: Box::new(transport), conn };
        self.ctx.state = ClientState::Connecting;
        Ok(())
    }

    /// The transport, if the client is connected through one.
    pub fn transport_mut(&mut self) -> Option<&mut (dyn Transport + 'static)> {
        match &mut self.ctx.route {
            Route::Remote { transport, .. } => Some(&mut **transport),
            _ => None,
        }
    }

    /// Calls `handler` with each `T` the server sends. The handler may send: the context is
    /// the client's.
    ///
    /// Registering a type again replaces its handler; registering a type whose id another type
    /// already has is an [`MessageError::IdCollision`] naming both.
    pub fn register_handler<T: Message>(
        &mut self,
        handler: impl FnMut(&mut ClientContext, T) + Send + 'static,
    ) -> Result<(), MessageError> {
        self.ctx.names.claim::<T>()?;
        self.handlers.insert(T::ID, Box::new(Typed { pending: None, handler }));
        Ok(())
    }

    /// Keeps each `T` the server sends for [`poll_message`](Self::poll_message) instead of
    /// calling a handler (the poll style). Messages stay queued until polled: poll after every
    /// update.
    pub fn register_queue<T: Message>(&mut self) -> Result<(), MessageError> {
        self.ctx.names.claim::<T>()?;
        self.handlers
            .insert(T::ID, Box::new(Queued::<T> { pending: None, queue: VecDeque::new() }));
        Ok(())
    }

    /// The oldest `T` not yet polled, if `T` was registered with
    /// [`register_queue`](Self::register_queue).
    pub fn poll_message<T: Message>(&mut self) -> Option<T> {
        let handler = self.handlers.get_mut(&T::ID)?;
        handler.as_any_mut().downcast_mut::<Queued<T>>()?.queue.pop_front()
    }

    /// Removes the handler of `T`; its messages are then dropped and counted as unknown.
    pub fn unregister_handler<T: Message>(&mut self) {
        self.handlers.remove(&T::ID);
    }

    /// Calls `handler` with the bytes the server sends on raw channel `channel`.
    pub fn register_raw_handler(
        &mut self,
        channel: ChannelId,
        handler: impl FnMut(&mut ClientContext, ChannelId, &[u8]) + Send + 'static,
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
    /// [`update`](Self::update). Events are also queued for [`poll_event`](Self::poll_event).
    pub fn on_event(
        &mut self,
        callback: impl FnMut(&mut ClientContext, &ClientEvent) + Send + 'static,
    ) {
        self.events.subscribe(callback);
    }

    /// The next lifecycle event of the latest [`update`](Self::update) (events not polled
    /// before the next update are dropped).
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.poll()
    }

    /// Receives and handles everything that has arrived, sends what is queued, and reports
    /// lifecycle events, as of `now`. Call it every frame or tick. It never blocks.
    pub fn update(&mut self, now: Instant) -> Result<(), MessageError> {
        self.update_with(now, &mut Nothing)
    }

    /// [`update`](Self::update), handing typed messages without a handler here, and every
    /// lifecycle event, to `above` (the object layer).
    pub fn update_with(
        &mut self,
        now: Instant,
        above: &mut dyn ClientDispatch,
    ) -> Result<(), MessageError> {
        let _span = self.ctx.span().entered();
        self.events.clear();
        self.ctx.now = Some(self.ctx.now.map_or(now, |last| last.max(now)));
        self.dispatch_events(above);
        match &self.ctx.route {
            Route::Remote { .. } => self.receive_remote(above)?,
            Route::Local(_) => self.receive_local(above),
            Route::None => {}
        }
        self.dispatch_events(above);
        self.ctx.ask_time();
        self.ctx.flush()
    }

    fn receive_remote(&mut self, above: &mut dyn ClientDispatch) -> Result<(), MessageError> {
        let Some(now) = self.ctx.now else { return Ok(()) };
        for _ in 0..self.ctx.config.max_events_per_update {
            let ClientContext { route, state, config, stats, .. } = &mut self.ctx;
            let Route::Remote { transport, conn } = route else { return Ok(()) };
            let conn = *conn;
            let step = match transport.poll_event(now)? {
                None => return Ok(()),
                Some(Event::Connected(c)) if c == conn && *state == ClientState::Connecting => {
                    Step::Connected { private: None }
                }
                Some(Event::Data { conn: c, channel, payload })
                    if c == conn && *state != ClientState::Disconnected =>
                {
                    classify(config, stats, &mut self.handlers, &mut self.recv, channel, payload)
                }
                Some(Event::Disconnected { conn: c, reason })
                    if c == conn && *state != ClientState::Disconnected =>
                {
                    Step::Disconnected(reason)
                }
                Some(_) => Step::Nothing,
            };
            let step = match (step, &self.ctx.route) {
                (Step::Connected { .. }, Route::Remote { transport, conn }) => {
                    self.ctx.clock = ClientClock::remote(now);
                    let private = transport.is_secure()
                        || transport.remote_address(*conn).is_some_and(|a| a.ip().is_loopback());
                    Step::Connected { private: Some(private) }
                }
                (step, _) => step,
            };
            self.apply(step, above);
            self.dispatch_events(above);
        }
        Ok(())
    }

    fn receive_local(&mut self, above: &mut dyn ClientDispatch) {
        if self.ctx.state == ClientState::Connecting {
            // In-process: nothing crosses a network.
            self.ctx.on_connected(true);
            self.dispatch_events(above);
        }
        let mut local = std::mem::take(&mut self.local);
        for _ in 0..self.ctx.config.max_events_per_update {
            let Route::Local(pipe) = &self.ctx.route else { break };
            if self.ctx.state == ClientState::Disconnected {
                break;
            }
            let Some(channel) = local::pop(pipe, |p| &mut p.to_client, &mut local) else {
                let gone = pipe.lock().server_closed || local::abandoned(pipe);
                if gone {
                    self.apply(
                        Step::Disconnected(sturnus_transport::DisconnectReason::ClosedByPeer),
                        above,
                    );
                    self.dispatch_events(above);
                }
                break;
            };
            let ClientContext { config, stats, .. } = &mut self.ctx;
            let step = classify(config, stats, &mut self.handlers, &mut self.recv, channel, &local);
            self.apply(step, above);
            self.dispatch_events(above);
        }
        // Kept for the next update: a steady exchange allocates nothing.
        self.local = local;
    }

    /// Handles `bytes` as a message on `channel` from the server, as if it had just arrived,
    /// then dispatches the events it caused. The fuzz targets' way into the client's decode
    /// path without a transport; not a stable API. Only with the `fuzzing` feature, which a
    /// game never enables.
    #[cfg(feature = "fuzzing")]
    #[doc(hidden)]
    pub fn handle_raw(&mut self, channel: ChannelId, bytes: &[u8]) {
        let ClientContext { config, stats, .. } = &mut self.ctx;
        let step = classify(config, stats, &mut self.handlers, &mut self.recv, channel, bytes);
        self.apply(step, &mut Nothing);
        self.dispatch_events(&mut Nothing);
    }

    fn apply(&mut self, step: Step, above: &mut dyn ClientDispatch) {
        let ctx = &mut self.ctx;
        let handled = match step {
            Step::Nothing => return,
            Step::Connected { private } => {
                info!("client connected");
                ctx.on_connected(private.unwrap_or(false));
                return;
            }
            Step::Disconnected(reason) => {
                if ctx.state != ClientState::Disconnected {
                    ctx.state = ClientState::Disconnected;
                    let reason = DisconnectReason::from_transport(reason);
                    info!(%reason, "client disconnected");
                    ctx.pending.push_back(ClientEvent::Disconnected(reason));
                }
                return;
            }
            Step::Handler(id) => {
                if let Some(handler) = self.handlers.get_mut(&id) {
                    ctx.stats.messages_handled += 1;
                    handler.run(ctx);
                }
                return;
            }
            Step::Raw(channel) => {
                match self.raw_handlers.get_mut(usize::from(channel.0)).and_then(Option::as_mut) {
                    Some(handler) => {
                        handler(ctx, channel, &self.recv);
                        Dispatched::Handled
                    }
                    None => Dispatched::Unknown,
                }
            }
            Step::Own(id) => own_message(ctx, id, &self.recv),
            Step::Above(id) => above.message(ctx, id, &self.recv),
        };
        match handled {
            Dispatched::Handled => self.ctx.stats.messages_handled += 1,
            Dispatched::Unknown => self.ctx.stats.dropped_unknown += 1,
            Dispatched::Undecodable => self.ctx.stats.dropped_undecodable += 1,
        }
    }

    fn dispatch_events(&mut self, above: &mut dyn ClientDispatch) {
        self.events.dispatch(&mut self.ctx, |ctx| &mut ctx.pending, &mut |ctx, event| {
            above.event(ctx, event);
        });
    }
}

/// Checks a message from the server and decides what it is.
fn classify(
    config: &ClientConfig,
    stats: &mut ClientStats,
    handlers: &mut FxHashMap<MessageId, Box<dyn ErasedHandler>>,
    recv: &mut Vec<u8>,
    channel: ChannelId,
    bytes: &[u8],
) -> Step {
    stats.messages_received += 1;
    if bytes.len() > config.max_message_size {
        stats.dropped_oversized += 1;
        return Step::Nothing;
    }
    let keep = |recv: &mut Vec<u8>, bytes: &[u8]| {
        recv.clear();
        recv.extend_from_slice(bytes);
    };
    if config.channels.is_raw(channel) {
        keep(recv, bytes);
        return Step::Raw(channel);
    }
    let Some((id, body)) = codec::split(bytes).filter(|_| config.channels.qos(channel).is_some())
    else {
        stats.dropped_undecodable += 1;
        return Step::Nothing;
    };
    if id == AuthResponse::ID || id == Goodbye::ID || id == TimeResponse::ID {
        keep(recv, body);
        return Step::Own(id);
    }
    match handlers.get_mut(&id).map(|handler| handler.decode(body)) {
        Some(true) => Step::Handler(id),
        Some(false) => {
            stats.dropped_undecodable += 1;
            Step::Nothing
        }
        None => {
            keep(recv, body);
            Step::Above(id)
        }
    }
}

/// Handles the layer's own messages: the answer to the credentials, the server's time, and
/// goodbyes.
fn own_message(ctx: &mut ClientContext, id: MessageId, body: &[u8]) -> Dispatched {
    let handled = if id == AuthResponse::ID {
        codec::decode::<AuthResponse>(body).map(|response| match response {
            AuthResponse::Accepted => {
                if ctx.state == ClientState::Authenticating {
                    info!("client authenticated");
                    ctx.state = ClientState::Authenticated;
                    ctx.pending.push_back(ClientEvent::Authenticated);
                }
            }
            AuthResponse::Rejected(why) => ctx.close(DisconnectReason::AuthRejected(why)),
            AuthResponse::Throttled { retry_after_ms } => {
                let retry_after = Duration::from_millis(retry_after_ms);
                ctx.close(DisconnectReason::AuthThrottled { retry_after });
            }
        })
    } else if id == TimeResponse::ID {
        let now = ctx.now;
        codec::decode::<TimeResponse>(body)
            .filter(|response| now.is_some_and(|now| ctx.clock.on_response(now, response)))
            .map(drop)
    } else {
        codec::decode::<Goodbye>(body).map(|Goodbye(reason)| ctx.close(reason.into()))
    };
    if handled.is_some() { Dispatched::Handled } else { Dispatched::Undecodable }
}
