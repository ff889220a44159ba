//! The transport mode: Sturnus's own packets inside netcode 1.02 payload packets.
//!
//! A [`SecureEndpoint`] pairs a netcode [`Server`] or [`Client`] with a Sturnus
//! [`Endpoint`]: netcode makes the connection (connect token, handshake, keys, replay
//! protection, keep-alives, timeouts) and seals every datagram; the Sturnus endpoint runs
//! unchanged inside — its packet header, acknowledgements, congestion control, fragmentation
//! and the eleven QoS kinds of channel — with each of its datagrams as the payload of one
//! netcode payload packet. So every channel works over a secure connection exactly as over
//! plain UDP, and a netcode 1.02 peer sees a standard netcode connection.
//!
//! The Sturnus endpoint makes no handshake of its own here: when netcode connects, both
//! sides take the connection's salts from its [`SessionBinding`] (a
//! value derived from the two netcode keys), so the first payload can carry game data.
//!
//! [`SecureEndpoint`] is sans-IO like the [`Endpoint`] it wraps: datagrams and time in,
//! datagrams and events out (the wall clock, which tokens expire by, is given once at creation
//! and advanced with `now`). [`SecureHost`] drives one over a socket and is a
//! [`Transport`], so the message layer, the object layer and the `NetworkManager` run over it
//! unchanged.
//!
//! Cost on the wire, per datagram: netcode's prefix byte, 1 to 8 sequence bytes and the
//! 16-byte Poly1305 tag, on top of the Sturnus packet.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sturnus_socket::{Outgoing, RecvBatch, Socket, SocketFactory};
use sturnus_transport::{
    ChannelId, ConnectError, ConnectionId, ConnectionStats, DisconnectReason, Endpoint,
    EndpointConfig, Event, HostError, PeerIdentity, Qos, ReadPacer, RejectReason, SendError,
    Transmit, Transport,
};

use crate::client::{Client, ClientEvent, ClientState};
use crate::server::{self, Server, ServerConfig, ServerEvent};
use crate::{ConnectToken, MAX_PACKET_BYTES, MAX_PAYLOAD_BYTES, NetcodeError, SessionBinding};

/// How often the netcode side runs its timers (keep-alives go at 10 Hz, timeouts are whole
/// seconds): often enough for both, rarely enough to cost nothing.
const NETCODE_TICK: Duration = Duration::from_millis(20);

/// The Sturnus salts of a connection, from its session binding: the same on both sides.
fn salts(binding: &SessionBinding) -> (u64, u64) {
    let (client, server) = binding.split_at(8);
    let word = |bytes: &[u8]| {
        let mut word = [0; 8];
        word.copy_from_slice(bytes);
        u64::from_le_bytes(word)
    };
    (word(client), word(server))
}

/// How a client will connect.
#[derive(Clone)]
pub enum Ticket {
    /// With a connect token minted by the game's backend (netcode 1.02).
    Token(ConnectToken),
    /// With the native secure profile ([`crate::native`]): an X25519 key exchange with the
    /// server's static key, for play without a backend. Any address may be connected to.
    Native {
        /// The game's protocol id.
        protocol_id: u64,
        /// The server's static public key, if the game knows it (pinning: an active man in
        /// the middle is refused); without it, the first key seen is trusted.
        pinned_server_key: Option<crate::native::PublicKey>,
        /// How long a silent connection lasts.
        timeout: Duration,
    },
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ticket::Token(token) => f
                .debug_struct("Token")
                .field("protocol_id", &token.protocol_id)
                .finish_non_exhaustive(),
            Ticket::Native { protocol_id, pinned_server_key, timeout } => f
                .debug_struct("Native")
                .field("protocol_id", protocol_id)
                .field("pinned", &pinned_server_key.is_some())
                .field("timeout", timeout)
                .finish(),
        }
    }
}

/// Which netcode endpoint is underneath.
enum Role {
    Server {
        netcode: Server,
        /// By netcode client index: the Sturnus connection and what its token said (`None`
        /// for a native client, which presented no token).
        peers: Vec<Option<(ConnectionId, Option<PeerIdentity>)>>,
        /// Sturnus connection → netcode client index.
        by_conn: HashMap<ConnectionId, usize>,
    },
    Client {
        /// The token, until `connect` uses it.
        ticket: Option<Ticket>,
        netcode: Option<Client>,
        conn: Option<ConnectionId>,
    },
}

impl Role {
    /// Ends the netcode side of Sturnus connection `conn` (its redundant disconnect packets
    /// tell the peer) and forgets it.
    fn end(&mut self, now: Instant, conn: ConnectionId) {
        match self {
            Role::Server { netcode, peers, by_conn } => {
                if let Some(index) = by_conn.remove(&conn) {
                    if let Some(peer) = peers.get_mut(index) {
                        *peer = None;
                    }
                    netcode.disconnect(now, index);
                }
            }
            Role::Client { netcode, conn: own, .. } => {
                if *own == Some(conn) {
                    *own = None;
                    if let Some(client) = netcode {
                        client.disconnect(now);
                    }
                }
            }
        }
    }
}

/// A Sturnus endpoint whose every datagram travels as a netcode 1.02 payload packet (see the
/// [module documentation](self)). Sans-IO: the same driving contract as [`Endpoint`].
pub struct SecureEndpoint {
    inner: Endpoint,
    role: Role,
    /// The channel layout and settings as given (the inner endpoint's refuse handshakes).
    config: EndpointConfig,
    /// The wall clock at `epoch`, for token expiry.
    unix_at_epoch: u64,
    epoch: Instant,
    next_tick: Instant,
    /// Disconnects the netcode side reported, handed out after the inner endpoint's events
    /// (so data that arrived before a disconnect is delivered before it).
    closed: VecDeque<(ConnectionId, DisconnectReason)>,
    /// One Sturnus datagram at a time, on its way into a netcode payload packet.
    scratch: Box<[u8]>,
    stats: SecureStats,
}

/// Counters of a [`SecureEndpoint`] beyond its netcode side's and its Sturnus side's own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SecureStats {
    /// Netcode connections the Sturnus side could not take (its `max_connections` or accept
    /// filter): disconnected at once.
    pub refused: u64,
    /// Sturnus datagrams for a peer whose netcode connection had ended: dropped.
    pub orphan_datagrams: u64,
}

impl fmt::Debug for SecureEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let role = match &self.role {
            Role::Server { netcode, .. } => format!("{netcode:?}"),
            Role::Client { netcode, .. } => format!("{netcode:?}"),
        };
        f.debug_struct("SecureEndpoint")
            .field("netcode", &role)
            .field("sturnus", &self.inner)
            .finish_non_exhaustive()
    }
}

/// Why a [`SecureEndpoint`] or [`SecureHost`] could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecureError {
    /// The netcode side refused its settings, or the operating system's generator failed.
    #[error(transparent)]
    Netcode(#[from] NetcodeError),
    /// The Sturnus configuration is invalid.
    #[error(transparent)]
    Config(#[from] sturnus_transport::ConfigError),
    /// The socket could not be opened.
    #[error(transparent)]
    Socket(#[from] sturnus_socket::SocketError),
    /// Sturnus packets ride in netcode payloads of at most 1,200 bytes.
    #[error("max_packet_size is {0}; in the netcode transport mode it is at most 1200")]
    PacketSizeTooLarge(usize),
    /// A connect token with no server address.
    #[error("the connect token lists no server")]
    NoServer,
}

/// Checks a Sturnus configuration for the transport mode and makes the inner endpoint's: its
/// packets must fit a netcode payload, and it makes no handshakes of its own.
fn inner_config(config: &EndpointConfig) -> Result<EndpointConfig, SecureError> {
    config.validate()?;
    if config.max_packet_size > MAX_PAYLOAD_BYTES {
        return Err(SecureError::PacketSizeTooLarge(config.max_packet_size));
    }
    Ok(EndpointConfig { accept_connections: false, ..config.clone() })
}

impl SecureEndpoint {
    /// A server: netcode's `netcode` settings (protocol id, private key shared with the
    /// token minter, public address, capacity), Sturnus's `config` (channel layout and
    /// everything else; its `max_packet_size` must be at most 1,200 bytes, a netcode payload).
    /// `now` and `unix_seconds` are the same moment on the monotonic and the wall clock.
    /// The netcode side admits at most the smaller of `netcode.max_clients` and
    /// `config.max_connections` clients: one more is denied as by a full server.
    ///
    /// Errors: an invalid configuration, or the operating system's generator failing.
    pub fn server(
        config: &EndpointConfig,
        netcode: &ServerConfig,
        now: Instant,
        unix_seconds: u64,
    ) -> Result<Self, SecureError> {
        let inner_config = inner_config(config)?;
        // A netcode client the Sturnus side has no room for would be told it connected (the
        // handshake's keep-alive), then be disconnected: full at the smaller capacity,
        // netcode denies it instead, and the client sees a full server.
        let mut bounded = netcode.clone();
        bounded.max_clients = netcode.max_clients.min(config.max_connections);
        let role = Role::Server {
            netcode: Server::new(&bounded)?,
            peers: Vec::new(),
            by_conn: HashMap::new(),
        };
        Self::with_role(config, inner_config, role, now, unix_seconds)
    }

    /// A client that will connect with `ticket` (a token minted by the game's backend, or the
    /// native profile) when [`connect`](Self::connect) is called. Arguments as for
    /// [`server`](Self::server).
    pub fn client(
        config: &EndpointConfig,
        ticket: impl Into<Ticket>,
        now: Instant,
        unix_seconds: u64,
    ) -> Result<Self, SecureError> {
        let inner_config = inner_config(config)?;
        let role = Role::Client { ticket: Some(ticket.into()), netcode: None, conn: None };
        Self::with_role(config, inner_config, role, now, unix_seconds)
    }

    fn with_role(
        config: &EndpointConfig,
        inner_config: EndpointConfig,
        role: Role,
        now: Instant,
        unix_seconds: u64,
    ) -> Result<Self, SecureError> {
        Ok(Self {
            inner: Endpoint::new(inner_config, now)?,
            role,
            config: config.clone(),
            unix_at_epoch: unix_seconds,
            epoch: now,
            next_tick: now,
            closed: VecDeque::new(),
            scratch: vec![0; MAX_PAYLOAD_BYTES].into_boxed_slice(),
            stats: SecureStats::default(),
        })
    }

    /// The Sturnus configuration as given.
    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// The Sturnus endpoint inside (its statistics, its connections' figures).
    pub fn sturnus(&self) -> &Endpoint {
        &self.inner
    }

    /// The netcode server underneath, for a server.
    pub fn netcode_server(&self) -> Option<&Server> {
        match &self.role {
            Role::Server { netcode, .. } => Some(netcode),
            Role::Client { .. } => None,
        }
    }

    /// The netcode client underneath, for a client that has started connecting.
    pub fn netcode_client(&self) -> Option<&Client> {
        match &self.role {
            Role::Client { netcode, .. } => netcode.as_ref(),
            Role::Server { .. } => None,
        }
    }

    /// This endpoint's own counters.
    pub fn stats(&self) -> SecureStats {
        self.stats
    }

    fn unix_seconds(&self, now: Instant) -> u64 {
        self.unix_at_epoch.saturating_add(now.saturating_duration_since(self.epoch).as_secs())
    }

    /// Starts connecting with the client's ticket. With a token, `remote` is tried first (it
    /// must be one of the token's server addresses) and the token's others after it; with the
    /// native profile, `remote` is the server. One connection per ticket: a second call is an
    /// error, as is any call on a server.
    pub fn connect(
        &mut self,
        now: Instant,
        remote: SocketAddr,
    ) -> Result<ConnectionId, ConnectError> {
        let Role::Client { ticket: slot, netcode, conn } = &mut self.role else {
            return Err(ConnectError::NotPermitted(remote));
        };
        let Some(ticket) = slot.take() else {
            return Err(ConnectError::TooManyConnections(1));
        };
        let client = match ticket {
            Ticket::Token(mut token) => {
                let Some(at) = token.server_addresses.iter().position(|a| *a == remote) else {
                    *slot = Some(Ticket::Token(token));
                    return Err(ConnectError::NotPermitted(remote));
                };
                token.server_addresses[..=at].rotate_right(1);
                Client::new(token, now)
            }
            Ticket::Native { protocol_id, pinned_server_key, timeout } => {
                match Client::native(remote, protocol_id, pinned_server_key, timeout, now) {
                    Ok(client) => client,
                    Err(error) => {
                        // Kept for another try (the OS generator failing is transient).
                        *slot = Some(Ticket::Native { protocol_id, pinned_server_key, timeout });
                        return Err(ConnectError::Start(error.to_string()));
                    }
                }
            }
        };
        let id = self.inner.connect_below(now, remote)?;
        let mut client = client;
        client.update(now);
        *netcode = Some(client);
        *conn = Some(id);
        tracing::info!(conn = %id, %remote, "connecting (netcode 1.02)");
        self.next_tick = now;
        self.drain_netcode(now);
        Ok(id)
    }

    /// Queues a message on a channel of a connection, as [`Endpoint::send`].
    pub fn send(
        &mut self,
        conn: ConnectionId,
        channel: ChannelId,
        payload: &[u8],
    ) -> Result<(), SendError> {
        self.inner.send(conn, channel, payload)
    }

    /// Closes a connection: netcode's redundant disconnect packets tell the peer. No event
    /// follows.
    pub fn disconnect(&mut self, now: Instant, conn: ConnectionId) {
        self.role.end(now, conn);
        self.inner.close_below(conn, None);
        self.drain_netcode(now);
    }

    /// Trusts a connection, as [`Endpoint::set_trusted`].
    pub fn set_trusted(&mut self, conn: ConnectionId) -> bool {
        self.inner.set_trusted(conn)
    }

    /// What the connect token of `conn`'s peer said (server side). `None` for a native
    /// client: it presented no token, and its netcode client id is the server's own counter,
    /// which proves nothing about who it is.
    pub fn peer_identity(&self, conn: ConnectionId) -> Option<&PeerIdentity> {
        let Role::Server { peers, by_conn, .. } = &self.role else { return None };
        peers.get(*by_conn.get(&conn)?)?.as_ref()?.1.as_ref()
    }

    /// Handles a datagram received from `from` (decrypted in place).
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &mut [u8]) {
        let unix = self.unix_seconds(now);
        match &mut self.role {
            Role::Server { netcode, .. } => netcode.handle_datagram(now, unix, from, datagram),
            Role::Client { netcode: Some(client), .. } => {
                client.handle_datagram(now, from, datagram);
            }
            Role::Client { netcode: None, .. } => return,
        }
        self.drain_netcode(now);
    }

    /// Runs due timers: netcode's keep-alives and timeouts, and the Sturnus endpoint's.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.next_tick {
            self.next_tick = now + NETCODE_TICK;
            match &mut self.role {
                Role::Server { netcode, .. } => netcode.update(now),
                Role::Client { netcode: Some(client), .. } => client.update(now),
                Role::Client { netcode: None, .. } => {}
            }
            self.drain_netcode(now);
        }
        self.inner.handle_timeout(now);
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let netcode_active = match &self.role {
            Role::Server { .. } => true,
            Role::Client { netcode, .. } => netcode.as_ref().is_some_and(|c| c.state().is_active()),
        };
        let tick = netcode_active.then_some(self.next_tick);
        match (self.inner.poll_timeout(), tick) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Writes the next datagram to send into `buf` (at least
    /// [`MAX_PACKET_BYTES`]), or returns `None`: netcode's own
    /// packets (handshake, keep-alives, disconnects) first, then the Sturnus endpoint's, each
    /// sealed into a payload packet.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        if buf.len() < MAX_PACKET_BYTES {
            // A driver's mistake, not the network's: say so rather than send nothing quietly.
            tracing::warn!(len = buf.len(), need = MAX_PACKET_BYTES, "transmit buffer too small");
            return None;
        }
        let own = match &mut self.role {
            Role::Server { netcode, .. } => netcode.poll_transmit(),
            Role::Client { netcode, .. } => netcode.as_mut().and_then(Client::poll_transmit),
        };
        if let Some((destination, bytes)) = own {
            let len = bytes.len();
            buf[..len].copy_from_slice(&bytes);
            match &mut self.role {
                Role::Server { netcode, .. } => netcode.recycle(bytes),
                Role::Client { netcode, .. } => {
                    if let Some(client) = netcode {
                        client.recycle(bytes);
                    }
                }
            }
            return Some(Transmit { destination, len });
        }
        loop {
            let transmit = self.inner.poll_transmit(now, &mut self.scratch)?;
            let datagram = &self.scratch[..transmit.len];
            let sealed = match &mut self.role {
                Role::Server { netcode, .. } => match netcode.client_index(transmit.destination) {
                    Some(index) => netcode.send_into(now, index, datagram, buf),
                    None => Err(NetcodeError::NotConnected),
                },
                Role::Client { netcode: Some(client), .. } => client.send_into(now, datagram, buf),
                Role::Client { netcode: None, .. } => Err(NetcodeError::NotConnected),
            };
            match sealed {
                Ok((len, destination)) => {
                    tracing::trace!(%destination, len, "sealed");
                    return Some(Transmit { destination, len });
                }
                Err(_) => self.stats.orphan_datagrams += 1,
            }
        }
    }

    /// Whether [`poll_event`](Self::poll_event) has something to return.
    pub fn has_events(&self) -> bool {
        self.inner.has_events() || !self.closed.is_empty()
    }

    /// The next event, as [`Endpoint::poll_event`]. A connection the Sturnus side closes (a
    /// timeout of its own, a peer's notice) is closed on the netcode side too.
    pub fn poll_event(&mut self, now: Instant) -> Option<Event<'_>> {
        let Self { inner, role, closed, .. } = self;
        match inner.poll_event() {
            Some(Event::Disconnected { conn, reason }) => {
                role.end(now, conn);
                Some(Event::Disconnected { conn, reason })
            }
            Some(event) => Some(event),
            None => closed.pop_front().map(|(conn, reason)| Event::Disconnected { conn, reason }),
        }
    }

    /// Moves what the netcode side reported into the Sturnus side: connections opened,
    /// payloads (Sturnus datagrams) received, connections ended.
    fn drain_netcode(&mut self, now: Instant) {
        let Self { inner, role, closed, stats, .. } = self;
        match role {
            Role::Server { netcode, peers, by_conn } => {
                while let Some(event) = netcode.poll_event() {
                    match event {
                        ServerEvent::Connected { client_index, client_id, user_data, binding } => {
                            let Some(address) = netcode.client_address(client_index) else {
                                continue;
                            };
                            let (client_salt, server_salt) = salts(&binding);
                            match inner.accept_below(now, address, client_salt, server_salt) {
                                Ok(conn) => {
                                    tracing::info!(%conn, %address, client_id, "client connected (netcode 1.02)");
                                    // A native client presented no token: nothing to
                                    // report (an authenticator that admits by token must
                                    // not take the server's counter for an account).
                                    let identity =
                                        (!netcode.is_native(client_index)).then(|| PeerIdentity {
                                            client_id,
                                            user_data: Box::<[u8]>::from(&user_data[..]),
                                        });
                                    if peers.len() <= client_index {
                                        peers.resize_with(client_index + 1, || None);
                                    }
                                    peers[client_index] = Some((conn, identity));
                                    by_conn.insert(conn, client_index);
                                }
                                Err(error) => {
                                    tracing::debug!(%address, %error, "netcode client refused");
                                    stats.refused += 1;
                                    netcode.disconnect(now, client_index);
                                }
                            }
                        }
                        ServerEvent::Payload { client_index, data } => {
                            if let Some(address) = netcode.client_address(client_index) {
                                inner.handle_datagram(now, address, &data);
                            }
                            netcode.recycle(data);
                        }
                        ServerEvent::Disconnected { client_index, reason } => {
                            let Some((conn, _)) =
                                peers.get_mut(client_index).and_then(Option::take)
                            else {
                                continue;
                            };
                            by_conn.remove(&conn);
                            let reason = match reason {
                                server::DisconnectReason::TimedOut => DisconnectReason::Timeout,
                                _ => DisconnectReason::ClosedByPeer,
                            };
                            tracing::info!(%conn, %reason, "client left (netcode 1.02)");
                            if inner.close_below(conn, None) {
                                closed.push_back((conn, reason));
                            }
                        }
                    }
                }
            }
            Role::Client { netcode: Some(client), conn, .. } => {
                while let Some(event) = client.poll_event() {
                    match event {
                        ClientEvent::Connected { server, binding, .. } => {
                            let Some(id) = *conn else { continue };
                            let (client_salt, server_salt) = salts(&binding);
                            if inner.establish_below(now, id, server, client_salt, server_salt) {
                                tracing::info!(conn = %id, %server, "connected (netcode 1.02)");
                            }
                        }
                        ClientEvent::Payload(data) => {
                            if let Some(server) = client.server_address() {
                                inner.handle_datagram(now, server, &data);
                            }
                            client.recycle(data);
                        }
                        ClientEvent::Stopped(state) => {
                            let Some(id) = conn.take() else { continue };
                            let reason = match state {
                                ClientState::ConnectionTimedOut => DisconnectReason::Timeout,
                                ClientState::Denied => {
                                    DisconnectReason::Rejected(RejectReason::ServerFull)
                                }
                                ClientState::Disconnected => DisconnectReason::ClosedByPeer,
                                _ => DisconnectReason::ConnectTimeout,
                            };
                            tracing::info!(conn = %id, ?state, "connection ended (netcode 1.02)");
                            if inner.close_below(id, None) {
                                closed.push_back((id, reason));
                            }
                        }
                    }
                }
            }
            Role::Client { netcode: None, .. } => {}
        }
    }
}

/// Datagrams read per pump before events are handed out.
const RECV_BUDGET: usize = 1024;
/// Datagrams moved per socket call.
const BATCH: usize = 32;

/// A [`SecureEndpoint`] driven over a socket on the caller's thread: the netcode 1.02
/// transport mode as a [`Transport`] for the message layer and the `NetworkManager`.
///
/// It reads the monotonic clock for timers and the wall clock once (tokens expire by it); no
/// thread is started. The driving contract is [`Transport`]'s.
pub struct SecureHost<S> {
    endpoint: SecureEndpoint,
    socket: S,
    send_buf: Vec<u8>,
    send_meta: Vec<(usize, SocketAddr)>,
    recv: RecvBatch,
    /// A received datagram, copied out of the batch to be decrypted in place.
    open: Box<[u8]>,
    /// The clock at the latest pump: events handed out until the next one are of that time
    /// (a clock read per event would cost more than the event).
    pumped_at: Instant,
    pacer: ReadPacer,
}

impl<S> fmt::Debug for SecureHost<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecureHost").field("endpoint", &self.endpoint).finish_non_exhaustive()
    }
}

#[expect(clippy::disallowed_methods, reason = "the host is the driver: it owns the clocks")]
fn clocks() -> (Instant, u64) {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    (Instant::now(), unix)
}

#[expect(clippy::disallowed_methods, reason = "the host is the driver: it owns the clock")]
fn now() -> Instant {
    Instant::now()
}

impl From<ConnectToken> for Ticket {
    fn from(token: ConnectToken) -> Self {
        Ticket::Token(token)
    }
}

impl<S: Socket> SecureHost<S> {
    /// A server on a socket of `factory` bound to `bind`. Tokens must list
    /// `netcode.public_address` (which may differ from `bind` behind a NAT); one whose port is
    /// 0 stands for the address the socket was bound to (a server on an ephemeral port).
    pub fn bind<F: SocketFactory<Socket = S>>(
        config: &EndpointConfig,
        netcode: &ServerConfig,
        factory: &F,
        bind: SocketAddr,
    ) -> Result<Self, SecureError> {
        let socket = factory.server_socket(bind)?;
        let (now, unix) = clocks();
        let endpoint = if netcode.public_address.port() == 0 {
            let mut bound = netcode.clone();
            bound.public_address = socket.local_addr();
            SecureEndpoint::server(config, &bound, now, unix)?
        } else {
            SecureEndpoint::server(config, netcode, now, unix)?
        };
        Self::over(endpoint, socket)
    }

    /// A client that connects with `ticket` (a token, or the native profile) when
    /// [`Transport::connect`] is called, on a socket of `factory` suited to reach `server`
    /// (the address it will connect to: a token's first, or the native server's).
    pub fn client<F: SocketFactory<Socket = S>>(
        config: &EndpointConfig,
        ticket: impl Into<Ticket>,
        factory: &F,
        server: SocketAddr,
    ) -> Result<Self, SecureError> {
        let socket = factory.client_socket(server)?;
        let (now, unix) = clocks();
        Self::over(SecureEndpoint::client(config, ticket, now, unix)?, socket)
    }

    fn over(endpoint: SecureEndpoint, socket: S) -> Result<Self, SecureError> {
        let pacer = ReadPacer::new(endpoint.config().read_interval)?;
        Ok(Self {
            endpoint,
            socket,
            send_buf: vec![0; MAX_PACKET_BYTES * BATCH],
            send_meta: Vec::with_capacity(BATCH),
            recv: RecvBatch::new(BATCH, MAX_PACKET_BYTES + 1),
            open: vec![0; MAX_PACKET_BYTES].into_boxed_slice(),
            pumped_at: now(),
            pacer,
        })
    }

    /// The endpoint (its statistics, the netcode side's).
    pub fn endpoint(&self) -> &SecureEndpoint {
        &self.endpoint
    }

    /// The socket.
    pub fn socket(&self) -> &S {
        &self.socket
    }

    fn settle(&mut self, now: Instant) {
        if self.endpoint.poll_timeout().is_some_and(|at| at <= now) {
            self.endpoint.handle_timeout(now);
        }
    }

    fn flush_at(&mut self, now: Instant) -> Result<(), HostError> {
        loop {
            self.send_meta.clear();
            for slot in self.send_buf.chunks_exact_mut(MAX_PACKET_BYTES) {
                let Some(transmit) = self.endpoint.poll_transmit(now, slot) else { break };
                self.send_meta.push((transmit.len, transmit.destination));
            }
            let count = self.send_meta.len();
            if count == 0 {
                return Ok(());
            }
            if count == 1 {
                // The usual case of an interactive flow: no batch to set up.
                let (len, to) = self.send_meta[0];
                let batch = [Outgoing { to, payload: &self.send_buf[..len] }];
                self.socket.send_batch(&batch).map_err(HostError::from)?;
                return Ok(());
            }
            let mut batch = [Outgoing { to: self.send_meta[0].1, payload: &[] }; BATCH];
            for (i, (&(len, to), slot)) in
                self.send_meta.iter().zip(self.send_buf.chunks_exact(MAX_PACKET_BYTES)).enumerate()
            {
                batch[i] = Outgoing { to, payload: &slot[..len] };
            }
            let mut done = 0;
            while done < count {
                let n = self.socket.send_batch(&batch[done..count]).map_err(HostError::from)?;
                if n == 0 {
                    // The socket is full: what it would not take is lost to the protocol,
                    // which resends what was reliable.
                    break;
                }
                done += n;
            }
            if count < BATCH {
                return Ok(());
            }
        }
    }

    fn pump(&mut self) -> Result<(), HostError> {
        let now = now();
        self.pumped_at = now;
        self.flush_at(now)?;
        let (mut read, mut drained) = (0, false);
        // Within a read interval the socket waits (timers and the host's sends do not).
        let budget = if self.pacer.may_read(now) { RECV_BUDGET } else { 0 };
        while read < budget {
            let n = self.socket.recv_batch(&mut self.recv).map_err(HostError::from)?;
            read += n;
            drained = n < self.recv.capacity();
            for i in 0..n {
                let Some((from, datagram)) = self.recv.get(i) else { continue };
                let Some(open) = self.open.get_mut(..datagram.len()) else {
                    continue; // longer than any netcode packet: dropped unread
                };
                open.copy_from_slice(datagram);
                self.endpoint.handle_datagram(now, from, open);
            }
            if drained {
                break;
            }
            self.flush_at(now)?;
        }
        if drained {
            // A read that stopped at its budget left a backlog: the next one goes at once.
            self.pacer.on_drained(now, read);
        }
        self.settle(now);
        if self.endpoint.has_events() {
            return Ok(());
        }
        self.flush_at(now)?;
        self.settle(now);
        Ok(())
    }
}

impl<S: Socket> Transport for SecureHost<S> {
    fn channels(&self) -> &[Qos] {
        &self.endpoint.config().channels
    }
    fn max_message_size(&self, channel: ChannelId) -> Option<usize> {
        self.endpoint.config().channel_max_message_size(channel)
    }
    fn local_addr(&self) -> Option<SocketAddr> {
        Some(self.socket.local_addr())
    }
    fn connect(&mut self, _now: Instant, remote: SocketAddr) -> Result<ConnectionId, ConnectError> {
        self.endpoint.connect(now(), remote)
    }
    fn send(
        &mut self,
        conn: ConnectionId,
        channel: ChannelId,
        payload: &[u8],
    ) -> Result<(), SendError> {
        self.endpoint.send(conn, channel, payload)
    }
    fn disconnect(&mut self, _now: Instant, conn: ConnectionId) {
        let now = now();
        self.endpoint.disconnect(now, conn);
        // Netcode's disconnect packets go out at once: the application may drop the host
        // next.
        let _ = self.flush_at(now);
    }
    fn set_trusted(&mut self, conn: ConnectionId) {
        self.endpoint.set_trusted(conn);
    }
    fn trusts_incoming(&self) -> bool {
        self.endpoint.config().trusts_incoming()
    }
    fn poll_event(&mut self, _now: Instant) -> Result<Option<Event<'_>>, HostError> {
        if !self.endpoint.has_events() {
            self.pump()?;
        }
        Ok(self.endpoint.poll_event(self.pumped_at))
    }
    fn flush(&mut self, _now: Instant) -> Result<(), HostError> {
        let now = now();
        self.flush_at(now)?;
        self.settle(now);
        Ok(())
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.endpoint.poll_timeout()
    }
    fn wait(&mut self, timeout: Duration) -> Result<(), HostError> {
        let until = self.endpoint.poll_timeout().map(|at| at.saturating_duration_since(now()));
        let wait = until.map_or(timeout, |until| until.min(timeout));
        self.pacer.wait(&mut self.socket, Some(wait)).map_err(HostError::from)?;
        Ok(())
    }
    fn connection_stats(&self, conn: ConnectionId) -> Option<ConnectionStats> {
        self.endpoint.sturnus().connection_stats(conn)
    }
    fn remote_address(&self, conn: ConnectionId) -> Option<SocketAddr> {
        self.endpoint.sturnus().remote_address(conn)
    }
    fn is_secure(&self) -> bool {
        true
    }
    fn peer_identity(&self, conn: ConnectionId) -> Option<PeerIdentity> {
        self.endpoint.peer_identity(conn).cloned()
    }
}
