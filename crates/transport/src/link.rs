//! The connection-level interface the layers above speak to: [`Transport`].

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::{
    ChannelId, ConnectError, ConnectionId, ConnectionStats, Event, HostError, Qos, SendError,
};

/// A connection-oriented, message-based transport with quality-of-service channels: what the
/// message layer runs over.
///
/// The message layer (`sturnus-message`) never names a socket. It is given something that
/// opens connections, carries messages on numbered channels and reports what happened to them,
/// and it drives that through this trait. Implementations today:
///
/// - [`Host`](crate::Host): the UDP transport on the caller's thread;
/// - [`ThreadedHost`](crate::ThreadedHost): the same protocol on a background I/O thread;
/// - [`MemoryTransport`](crate::MemoryTransport): an in-process network with perfect delivery
///   (tests, single-process games, engines that simulate);
/// - the workspace's test harness (`sturnus-testkit`'s `SimEndpoint`) wraps a sans-IO
///   [`Endpoint`](crate::Endpoint) on a virtual clock and lossy links.
///
/// # Plugging in another transport
///
/// A secure (netcode-style), relayed or WebSocket transport implements this trait and is
/// handed to `NetworkServer::listen` or `NetworkClient::connect`; nothing above changes. What
/// it must provide:
///
/// - **Connections** named by [`ConnectionId`], reported once as [`Event::Connected`] and
///   once as [`Event::Disconnected`] (also for an attempt that failed); ids are never reused
///   while the layer above may still hold one.
/// - **Channels**: [`channels`](Transport::channels) lists the quality of service of each
///   [`ChannelId`]; both peers must agree on it. A transport that has only a reliable ordered
///   stream (WebSocket) may carry every channel on it, which keeps every promise except
///   "unreliable is never late": state updates and unreliable messages then arrive late rather
///   than not at all.
/// - **Lent payloads**: [`Event::Data`] lends the message until the next call on the
///   transport, so a driver that has the bytes in a buffer does not copy them again.
/// - **Time as an input**: every call that may act on time takes `now`. A sans-IO
///   implementation uses it; a driver that owns a clock and a socket (the `Host`s) may read its
///   own clock instead, as both are monotonic.
///
/// Addresses are [`SocketAddr`]s because every transport planned addresses peers by IP and
/// port (netcode connect tokens and relays included); a transport that has none reports
/// `None` from [`remote_address`](Transport::remote_address), which the layer above treats as
/// a peer it cannot rate-limit by source.
///
/// The driving contract is the transport's own: queue with [`send`](Self::send), call
/// [`poll_event`](Self::poll_event) until it returns `None` (which also reads and handles what
/// arrived), then [`flush`](Self::flush) to put queued messages on the wire, and come back no
/// later than [`poll_timeout`](Self::poll_timeout). `now` never goes backwards between calls.
pub trait Transport: fmt::Debug {
    /// The quality of service of each channel, by [`ChannelId`] index.
    fn channels(&self) -> &[Qos];

    /// The largest message [`send`](Self::send) accepts on `channel` (`None`: no such
    /// channel).
    fn max_message_size(&self, channel: ChannelId) -> Option<usize>;

    /// The local address, for transports bound to one.
    fn local_addr(&self) -> Option<SocketAddr>;

    /// Starts connecting to `remote`; [`Event::Connected`] or [`Event::Disconnected`] follows.
    fn connect(&mut self, now: Instant, remote: SocketAddr) -> Result<ConnectionId, ConnectError>;

    /// Queues a message on `channel` of `conn`; it goes out on the next
    /// [`flush`](Self::flush) (or [`poll_event`](Self::poll_event)).
    fn send(
        &mut self,
        conn: ConnectionId,
        channel: ChannelId,
        payload: &[u8],
    ) -> Result<(), SendError>;

    /// Closes a connection; the peer is told. No event follows for it.
    fn disconnect(&mut self, now: Instant, conn: ConnectionId);

    /// Trusts a connection a peer opened (once it has authenticated): it may then hold as much
    /// memory as a trusted peer. A no-op for transports with no such distinction.
    fn set_trusted(&mut self, conn: ConnectionId);

    /// Whether connections peers open are trusted from the start (`trust_incoming`), rather
    /// than once [`set_trusted`](Self::set_trusted) is called. A server that authenticates its
    /// players refuses such a transport: an unauthenticated peer could make it hold as much as
    /// a trusted one. Transports with no such distinction return `false`.
    fn trusts_incoming(&self) -> bool {
        false
    }

    /// Reads and handles what has arrived, runs due timers, and returns the next event, or
    /// `None` once there is nothing more. The payload of [`Event::Data`] is lent until the next
    /// call.
    fn poll_event(&mut self, now: Instant) -> Result<Option<Event<'_>>, HostError>;

    /// Puts everything queued on the wire.
    fn flush(&mut self, now: Instant) -> Result<(), HostError>;

    /// When the transport next needs a call (a timer), if it knows.
    fn poll_timeout(&self) -> Option<Instant>;

    /// Blocks until something may have arrived or `timeout` passes: for drivers on real time,
    /// never called by sans-IO code. Transports with nothing to wait on return at once.
    fn wait(&mut self, timeout: Duration) -> Result<(), HostError>;

    /// A connection's statistics (RTT, loss, resends), if the transport keeps them.
    fn connection_stats(&self, conn: ConnectionId) -> Option<ConnectionStats>;

    /// The remote address of a connection, if the transport knows one.
    fn remote_address(&self, conn: ConnectionId) -> Option<SocketAddr>;

    /// Whether every packet of this transport's connections is encrypted and authenticated
    /// (a netcode or native secure transport): what the layer above checks before it lets a
    /// secret, such as a password, cross a connection. Plaintext transports return `false`, as
    /// the default does.
    fn is_secure(&self) -> bool {
        false
    }

    /// What the transport proved about the peer of `conn` when it connected, if it proves
    /// anything: a secure transport that admits peers with connect tokens reports the token's
    /// client id and user data, so that the token is the login. `None` for transports that
    /// prove nothing (the default).
    fn peer_identity(&self, conn: ConnectionId) -> Option<PeerIdentity> {
        let _ = conn;
        None
    }

    /// The `tracing` span the transport's own logs go in when it writes them on a thread of its
    /// own: the message layer hands over the span naming its endpoint (`endpoint{name=…}`) when
    /// it is given the transport, so that two endpoints in one process are told apart.
    /// [`ThreadedHost`](crate::ThreadedHost) enters it on its I/O thread. Transports that log on
    /// the caller's thread (their logs are already inside the caller's span) ignore it, as the
    /// default does.
    fn set_log_span(&mut self, span: tracing::Span) {
        let _ = span;
    }
}

/// What a secure transport proved about a peer: the client id and user data of the connect
/// token it connected with, sealed by the game's backend under a key the server shares with it.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The id the backend gave the client (an account id, typically).
    pub client_id: u64,
    /// The user data the backend put in the token (the game's login: an account, a team, a
    /// rank, …; 256 bytes in netcode tokens).
    pub user_data: Box<[u8]>,
}

impl fmt::Debug for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerIdentity")
            .field("client_id", &self.client_id)
            .field("user_data_len", &self.user_data.len())
            .finish()
    }
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn channels(&self) -> &[Qos] {
        (**self).channels()
    }
    fn max_message_size(&self, channel: ChannelId) -> Option<usize> {
        (**self).max_message_size(channel)
    }
    fn local_addr(&self) -> Option<SocketAddr> {
        (**self).local_addr()
    }
    fn connect(&mut self, now: Instant, remote: SocketAddr) -> Result<ConnectionId, ConnectError> {
        (**self).connect(now, remote)
    }
    fn send(
        &mut self,
        conn: ConnectionId,
        channel: ChannelId,
        payload: &[u8],
    ) -> Result<(), SendError> {
        (**self).send(conn, channel, payload)
    }
    fn disconnect(&mut self, now: Instant, conn: ConnectionId) {
        (**self).disconnect(now, conn);
    }
    fn set_trusted(&mut self, conn: ConnectionId) {
        (**self).set_trusted(conn);
    }
    fn trusts_incoming(&self) -> bool {
        (**self).trusts_incoming()
    }
    fn poll_event(&mut self, now: Instant) -> Result<Option<Event<'_>>, HostError> {
        (**self).poll_event(now)
    }
    fn flush(&mut self, now: Instant) -> Result<(), HostError> {
        (**self).flush(now)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        (**self).poll_timeout()
    }
    fn wait(&mut self, timeout: Duration) -> Result<(), HostError> {
        (**self).wait(timeout)
    }
    fn connection_stats(&self, conn: ConnectionId) -> Option<ConnectionStats> {
        (**self).connection_stats(conn)
    }
    fn remote_address(&self, conn: ConnectionId) -> Option<SocketAddr> {
        (**self).remote_address(conn)
    }
    fn set_log_span(&mut self, span: tracing::Span) {
        (**self).set_log_span(span);
    }
    fn is_secure(&self) -> bool {
        (**self).is_secure()
    }
    fn peer_identity(&self, conn: ConnectionId) -> Option<PeerIdentity> {
        (**self).peer_identity(conn)
    }
}

/// The UDP transport on the caller's thread. It reads its own clock (it is a driver), so the
/// `now` arguments are not used.
impl<S: sturnus_socket::Socket + fmt::Debug> Transport for crate::Host<S> {
    fn channels(&self) -> &[Qos] {
        &self.endpoint().config().channels
    }
    fn max_message_size(&self, channel: ChannelId) -> Option<usize> {
        self.endpoint().config().channel_max_message_size(channel)
    }
    fn local_addr(&self) -> Option<SocketAddr> {
        Some(crate::Host::local_addr(self))
    }
    fn connect(&mut self, _now: Instant, remote: SocketAddr) -> Result<ConnectionId, ConnectError> {
        crate::Host::connect(self, remote)
    }
    fn send(
        &mut self,
        conn: ConnectionId,
        channel: ChannelId,
        payload: &[u8],
    ) -> Result<(), SendError> {
        crate::Host::send(self, conn, channel, payload)
    }
    fn disconnect(&mut self, _now: Instant, conn: ConnectionId) {
        crate::Host::disconnect(self, conn);
    }
    fn set_trusted(&mut self, conn: ConnectionId) {
        crate::Host::set_trusted(self, conn);
    }
    fn trusts_incoming(&self) -> bool {
        self.endpoint().config().trusts_incoming()
    }
    fn poll_event(&mut self, _now: Instant) -> Result<Option<Event<'_>>, HostError> {
        self.next_event()
    }
    fn flush(&mut self, _now: Instant) -> Result<(), HostError> {
        crate::Host::flush(self)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.endpoint().poll_timeout()
    }
    fn wait(&mut self, timeout: Duration) -> Result<(), HostError> {
        crate::Host::wait(self, Some(timeout))
    }
    fn connection_stats(&self, conn: ConnectionId) -> Option<ConnectionStats> {
        crate::Host::connection_stats(self, conn)
    }
    fn remote_address(&self, conn: ConnectionId) -> Option<SocketAddr> {
        self.endpoint().remote_address(conn)
    }
}

/// The UDP transport on a background I/O thread. Connection statistics stay on that thread:
/// [`connection_stats`](Transport::connection_stats) returns `None`.
impl Transport for crate::ThreadedHost {
    fn channels(&self) -> &[Qos] {
        &self.config().channels
    }
    fn max_message_size(&self, channel: ChannelId) -> Option<usize> {
        self.config().channel_max_message_size(channel)
    }
    fn local_addr(&self) -> Option<SocketAddr> {
        Some(crate::ThreadedHost::local_addr(self))
    }
    fn connect(&mut self, _now: Instant, remote: SocketAddr) -> Result<ConnectionId, ConnectError> {
        crate::ThreadedHost::connect(self, remote)
    }
    fn send(
        &mut self,
        conn: ConnectionId,
        channel: ChannelId,
        payload: &[u8],
    ) -> Result<(), SendError> {
        crate::ThreadedHost::send(self, conn, channel, payload)
    }
    fn disconnect(&mut self, _now: Instant, conn: ConnectionId) {
        crate::ThreadedHost::disconnect(self, conn);
    }
    fn set_trusted(&mut self, conn: ConnectionId) {
        crate::ThreadedHost::set_trusted(self, conn);
    }
    fn trusts_incoming(&self) -> bool {
        self.config().trusts_incoming()
    }
    fn poll_event(&mut self, _now: Instant) -> Result<Option<Event<'_>>, HostError> {
        Ok(match self.receive()? {
            crate::HostEvent::Connect(conn) => Some(Event::Connected(conn)),
            crate::HostEvent::Data { conn, channel, payload } => {
                Some(Event::Data { conn, channel, payload })
            }
            crate::HostEvent::Disconnect(conn, reason) => {
                Some(Event::Disconnected { conn, reason })
            }
            crate::HostEvent::Nothing => None,
        })
    }
    fn flush(&mut self, _now: Instant) -> Result<(), HostError> {
        crate::ThreadedHost::flush(self);
        Ok(())
    }
    fn poll_timeout(&self) -> Option<Instant> {
        // The I/O thread keeps the protocol's timers; the application has none to keep.
        None
    }
    fn wait(&mut self, timeout: Duration) -> Result<(), HostError> {
        crate::ThreadedHost::wait(self, Some(timeout));
        Ok(())
    }
    fn connection_stats(&self, _conn: ConnectionId) -> Option<ConnectionStats> {
        None
    }
    fn remote_address(&self, conn: ConnectionId) -> Option<SocketAddr> {
        crate::ThreadedHost::remote_address(self, conn)
    }
    fn set_log_span(&mut self, span: tracing::Span) {
        crate::ThreadedHost::set_log_span(self, span);
    }
}
