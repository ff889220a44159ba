//! The `NetworkClient`: one connection to a server, remote or local.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use serde::Serialize;
use sturnus_socket::{SocketFactory, UdpSocketFactory};
use sturnus_transport::{
    ChannelId, ConnectionId, ConnectionStats, EndpointConfig, Host, HostError, HostEvent, Qos,
};
use tracing::debug;

use crate::auth::{AuthRequest, AuthResponse, Goodbye};
use crate::config::{Channels, INTERNAL_QOS};
use crate::event::Events;
use crate::local::{self, SharedPipe};
use crate::{ClientConfig, ClientEvent, DisconnectReason, Message, MessageError, MessageId, codec};

type Handler = Box<dyn FnMut(&mut ClientContext, &[u8]) -> bool + Send>;

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

#[derive(Debug)]
enum Route {
    None,
    Remote { host: Box<Host<crate::BoxedSocket>>, conn: ConnectionId },
    Local(SharedPipe),
}

/// Everything of a client but its handlers: what handlers and callbacks get to use.
///
/// A [`NetworkClient`] dereferences to it, so its methods are the client's too.
#[derive(Debug)]
pub struct ClientContext {
    config: ClientConfig,
    channels: Channels,
    route: Route,
    state: ClientState,
    names: codec::Names,
    scratch: Vec<u8>,
    credentials: Vec<u8>,
    pending: VecDeque<ClientEvent>,
    stats: ClientStats,
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

    /// The local address of the client's socket (`None` for a local client).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.route {
            Route::Remote { host, .. } => Some(host.local_addr()),
            _ => None,
        }
    }

    /// What the client counted.
    pub fn stats(&self) -> ClientStats {
        self.stats
    }

    /// The transport's statistics of the connection (RTT, loss, resends; `None` for a local
    /// client).
    pub fn connection_stats(&self) -> Option<ConnectionStats> {
        match &self.route {
            Route::Remote { host, conn } => host.connection_stats(*conn),
            _ => None,
        }
    }

    /// Sends a message to the server on its default quality of service.
    pub fn send<T: Message>(&mut self, msg: &T) -> Result<(), MessageError> {
        self.send_on(msg, T::QOS)
    }

    /// Sends a message to the server on the channel of kind `qos`. Fails with
    /// [`MessageError::NotAuthenticated`] until [`ClientEvent::Authenticated`].
    pub fn send_on<T: Message>(&mut self, msg: &T, qos: Qos) -> Result<(), MessageError> {
        if self.state != ClientState::Authenticated {
            return Err(MessageError::NotAuthenticated);
        }
        self.send_unchecked(msg, qos)
    }

    fn send_unchecked<T: Message>(&mut self, msg: &T, qos: Qos) -> Result<(), MessageError> {
        let channel = self.channels.get(qos)?;
        self.names.claim::<T>()?;
        codec::encode(msg, &mut self.scratch, self.config.max_message_size)?;
        self.deliver(channel)
    }

    fn deliver(&mut self, channel: ChannelId) -> Result<(), MessageError> {
        match &mut self.route {
            Route::Remote { host, conn } => host.send(*conn, channel, &self.scratch)?,
            Route::Local(pipe) => {
                let mut pipe = pipe.lock();
                let buf = pipe.buffer(&self.scratch);
                pipe.to_server.push_back(buf);
            }
            Route::None => return Err(MessageError::NotAuthenticated),
        }
        self.stats.messages_sent += 1;
        Ok(())
    }

    /// Sends what is queued now instead of at the end of the next
    /// [`update`](NetworkClient::update) (a local client's messages need no flushing).
    pub fn flush(&mut self) -> Result<(), MessageError> {
        if let Route::Remote { host, .. } = &mut self.route {
            host.flush()?;
        }
        Ok(())
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
        match &mut self.route {
            Route::Remote { host, conn } => {
                host.disconnect(*conn);
                // Send the first close notice now; later updates send the copies.
                let _ = host.flush();
            }
            Route::Local(pipe) => pipe.lock().client_closed = true,
            Route::None => {}
        }
        self.state = ClientState::Disconnected;
        self.pending.push_back(ClientEvent::Disconnected(reason));
    }

    /// The connection is up: present the credentials.
    fn on_connected(&mut self) {
        self.state = ClientState::Authenticating;
        self.pending.push_back(ClientEvent::Connected);
        let request = AuthRequest(self.credentials.clone());
        if let Err(err) = self.send_unchecked(&request, INTERNAL_QOS) {
            debug!(%err, "could not send the credentials");
        }
    }
}

/// A client: connects to a [`NetworkServer`](crate::NetworkServer), authenticates, and calls
/// the handler registered for each message type the server sends.
///
/// Like the server, it does everything on the thread that calls [`update`](Self::update).
///
/// ```no_run
/// use std::time::Duration;
/// use serde::{Deserialize, Serialize};
/// use sturnus_message::{ClientConfig, ClientEvent, Message, NetworkClient};
///
/// #[derive(Serialize, Deserialize, Message)]
/// struct Say(String);
///
/// # fn main() -> Result<(), sturnus_message::MessageError> {
/// let mut client = NetworkClient::new(ClientConfig::default())?;
/// client.register_handler(|_client, line: Say| println!("{}", line.0))?;
/// client.connect("127.0.0.1:7777".parse().unwrap())?;
/// loop {
///     client.update()?;
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
    handlers: HashMap<MessageId, Handler>,
    events: Events<ClientContext, ClientEvent>,
    recv: Vec<u8>,
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

impl NetworkClient {
    /// A client with `config`, not connected, whose credentials are `()` (what
    /// [`NoopAuthenticator`](crate::NoopAuthenticator) expects).
    pub fn new(config: ClientConfig) -> Result<Self, MessageError> {
        config.validate()?;
        Ok(Self {
            ctx: ClientContext {
                channels: Channels::new(&config.transport.channels),
                config,
                route: Route::None,
                state: ClientState::Disconnected,
                names: codec::Names::with_internal(),
                scratch: Vec::new(),
                credentials: Vec::new(),
                pending: VecDeque::new(),
                stats: ClientStats::default(),
            },
            handlers: HashMap::new(),
            events: Events::new(),
            recv: Vec::new(),
        })
    }

    pub(crate) fn local(config: ClientConfig, pipe: SharedPipe) -> Result<Self, MessageError> {
        let mut client = Self::new(config)?;
        client.ctx.route = Route::Local(pipe);
        client.ctx.state = ClientState::Connecting;
        Ok(client)
    }

    /// Sets the credentials sent to the server when the connection is made: the server's
    /// [`Authenticator::Credentials`](crate::Authenticator::Credentials).
    pub fn set_credentials<C: Serialize>(&mut self, credentials: &C) -> Result<(), MessageError> {
        self.ctx.credentials = postcard::to_allocvec(credentials)
            .map_err(|source| MessageError::Encode { name: "credentials", source })?;
        Ok(())
    }

    /// Connects over UDP to a server at `server`.
    pub fn connect(&mut self, server: SocketAddr) -> Result<(), MessageError> {
        self.connect_on(&UdpSocketFactory::default(), server)
    }

    /// Connects to a server at `server` with a socket of `factory`.
    pub fn connect_on<F>(&mut self, factory: &F, server: SocketAddr) -> Result<(), MessageError>
    where
        F: SocketFactory,
        F::Socket: std::fmt::Debug + 'static,
    {
        if self.ctx.state != ClientState::Disconnected || self.ctx.is_local() {
            return Err(MessageError::AlreadyStarted);
        }
        let socket: crate::BoxedSocket =
            Box::new(factory.client_socket(server).map_err(HostError::from)?);
        let config =
            EndpointConfig { accept_connections: false, ..self.ctx.config.transport.clone() };
        let mut host = Host::new(config, socket)?;
        let conn = host.connect(server).map_err(HostError::from)?;
        self.ctx.route = Route::Remote { host: Box::new(host), conn };
        self.ctx.state = ClientState::Connecting;
        Ok(())
    }

    /// Calls `handler` with each `T` the server sends.
    ///
    /// Registering a type again replaces its handler; registering a type whose id another type
    /// already has is an [`MessageError::IdCollision`] naming both.
    pub fn register_handler<T: Message>(
        &mut self,
        mut handler: impl FnMut(&mut ClientContext, T) + Send + 'static,
    ) -> Result<(), MessageError> {
        self.ctx.names.claim::<T>()?;
        let erased: Handler =
            Box::new(move |ctx, body| codec::call_decoded(body, |msg| handler(ctx, msg)));
        self.handlers.insert(T::ID, erased);
        Ok(())
    }

    /// Removes the handler of `T`; its messages are then dropped and counted as unknown.
    pub fn unregister_handler<T: Message>(&mut self) {
        self.handlers.remove(&T::ID);
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
    /// lifecycle events. Call it every frame or tick. It never blocks.
    pub fn update(&mut self) -> Result<(), MessageError> {
        self.events.clear();
        match &self.ctx.route {
            Route::Remote { .. } => self.receive_remote()?,
            Route::Local(_) => self.receive_local(),
            Route::None => {}
        }
        self.dispatch_events();
        if let Route::Remote { host, .. } = &mut self.ctx.route {
            host.flush()?;
        }
        Ok(())
    }

    /// Sleeps until something may have arrived, a transport timer is due, or `timeout`
    /// passes.
    pub fn wait(&mut self, timeout: Duration) -> Result<(), MessageError> {
        match &mut self.ctx.route {
            Route::Remote { host, .. } => host.wait(Some(timeout))?,
            Route::Local(pipe) => {
                if pipe.lock().to_client.is_empty() {
                    std::thread::sleep(timeout);
                }
            }
            Route::None => std::thread::sleep(timeout),
        }
        Ok(())
    }

    fn receive_remote(&mut self) -> Result<(), MessageError> {
        for _ in 0..self.ctx.config.max_events_per_update {
            let Route::Remote { host, conn } = &mut self.ctx.route else { return Ok(()) };
            let conn = *conn;
            let data = match host.receive()? {
                HostEvent::Nothing => return Ok(()),
                HostEvent::Connect(c) => {
                    if c == conn && self.ctx.state == ClientState::Connecting {
                        self.ctx.on_connected();
                    }
                    false
                }
                HostEvent::Data { conn: c, payload, .. } => {
                    self.recv.clear();
                    self.recv.extend_from_slice(payload);
                    c == conn && self.ctx.state != ClientState::Disconnected
                }
                HostEvent::Disconnect(c, reason) => {
                    if c == conn && self.ctx.state != ClientState::Disconnected {
                        self.ctx.state = ClientState::Disconnected;
                        let reason = DisconnectReason::from_transport(reason);
                        self.ctx.pending.push_back(ClientEvent::Disconnected(reason));
                    }
                    false
                }
                _ => false,
            };
            if data {
                self.handle_message();
            }
            self.dispatch_events();
        }
        Ok(())
    }

    fn receive_local(&mut self) {
        if self.ctx.state == ClientState::Connecting {
            self.ctx.on_connected();
            self.dispatch_events();
        }
        for _ in 0..self.ctx.config.max_events_per_update {
            let Route::Local(pipe) = &self.ctx.route else { return };
            if self.ctx.state == ClientState::Disconnected {
                return;
            }
            if !local::pop(pipe, |p| &mut p.to_client, &mut self.recv) {
                let gone = pipe.lock().server_closed || local::abandoned(pipe);
                if gone {
                    self.ctx.state = ClientState::Disconnected;
                    let reason = DisconnectReason::ClosedByPeer;
                    self.ctx.pending.push_back(ClientEvent::Disconnected(reason));
                    self.dispatch_events();
                }
                return;
            }
            self.handle_message();
            self.dispatch_events();
        }
    }

    /// Handles `bytes` as a message (a two-byte id, then the payload) from the server, as if
    /// it had just arrived, then dispatches the events it caused. The fuzz targets' way into
    /// the client's decode path without a transport; not a stable API. Only with the
    /// `fuzzing` feature, which a game never enables: it bypasses the transport and
    /// authentication.
    #[cfg(feature = "fuzzing")]
    #[doc(hidden)]
    pub fn handle_raw(&mut self, bytes: &[u8]) {
        self.recv.clear();
        self.recv.extend_from_slice(bytes);
        self.handle_message();
        self.dispatch_events();
    }

    /// Dispatches the message in `self.recv`.
    fn handle_message(&mut self) {
        let ctx = &mut self.ctx;
        ctx.stats.messages_received += 1;
        if self.recv.len() > ctx.config.max_message_size {
            ctx.stats.dropped_oversized += 1;
            return;
        }
        let Some((id, body)) = codec::split(&self.recv) else {
            ctx.stats.dropped_undecodable += 1;
            return;
        };
        let handled = if id == AuthResponse::ID {
            codec::decode::<AuthResponse>(body).map(|response| match response {
                AuthResponse::Accepted => {
                    if ctx.state == ClientState::Authenticating {
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
        } else if id == Goodbye::ID {
            codec::decode::<Goodbye>(body).map(|Goodbye(reason)| ctx.close(reason.into()))
        } else if let Some(handler) = self.handlers.get_mut(&id) {
            handler(ctx, body).then_some(())
        } else {
            debug!(id = %id, "no handler for message");
            ctx.stats.dropped_unknown += 1;
            return;
        };
        match handled {
            Some(()) => self.ctx.stats.messages_handled += 1,
            None => self.ctx.stats.dropped_undecodable += 1,
        }
    }

    fn dispatch_events(&mut self) {
        self.events.dispatch(&mut self.ctx, |ctx| &mut ctx.pending);
    }
}
