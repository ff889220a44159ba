//! A netcode 1.02 client, sans-IO: datagrams and time go in, datagrams and events come out.
//!
//! Made from a [`ConnectToken`], it tries the token's servers in turn: it sends connection
//! requests at 10 Hz until a server challenges it, answers the challenge with responses at
//! 10 Hz, and is connected when the first keep-alive arrives. A server that stays silent for
//! the token's timeout, or denies it, makes it try the next address. Connected, it sends
//! keep-alives at 10 Hz when it sends nothing else, and drops the connection when nothing
//! came for the timeout.
//!
//! [`Client::native`] makes a client of the [native secure profile](crate::native) instead:
//! no token, one server, an X25519 key exchange (requests, then responses, at 10 Hz), and
//! from the accept on the same connection as a token's.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use x25519_dalek::StaticSecret;
use zeroize::Zeroize;

use crate::native::{self, PublicKey};
use crate::packet::{self, Allowed, Packet, PacketType};
use crate::replay::ReplayWindow;
use crate::server::{KEEP_ALIVE_INTERVAL, REDUNDANT_DISCONNECT_PACKETS};
use crate::token::CHALLENGE_TOKEN_BYTES;
use crate::{Buffers, ConnectToken, Key, NetcodeError};

/// Where the client stands (the standard's client states).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientState {
    /// The token expired before a connection was made.
    TokenExpired,
    /// The connection was up, and the server went silent for the timeout.
    ConnectionTimedOut,
    /// The last server challenged, then went silent.
    ResponseTimedOut,
    /// The last server never answered the requests.
    RequestTimedOut,
    /// The last server was full.
    Denied,
    /// Disconnected (by [`Client::disconnect`] or by the server).
    Disconnected,
    /// Sending connection requests.
    SendingRequest,
    /// Sending connection responses.
    SendingResponse,
    /// Connected: payloads flow.
    Connected,
    /// A native client's server showed a static key other than the one pinned (a man in the
    /// middle, or a server whose key changed): nothing was sent under the keys.
    ServerKeyMismatch,
}

impl ClientState {
    /// Whether the client is still trying or connected.
    pub fn is_active(self) -> bool {
        matches!(self, Self::SendingRequest | Self::SendingResponse | Self::Connected)
    }
}

/// What happened on the client.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// Connected to a server.
    Connected {
        /// The server's address.
        server: SocketAddr,
        /// The client's slot on the server.
        client_index: u32,
        /// The server's capacity.
        max_clients: u32,
        /// The connection's binding: the same value the server's
        /// [`ServerEvent::Connected`](crate::server::ServerEvent::Connected) reports.
        binding: crate::SessionBinding,
    },
    /// The server sent a payload.
    Payload(Vec<u8>),
    /// The client stopped: the state it ended in says why.
    Stopped(ClientState),
}

/// What the client dropped, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStats {
    /// Datagrams dropped: from another address, failing the read order, or wrong for the
    /// state.
    pub packets_dropped: u64,
    /// Of those, replayed keep-alives, payloads and disconnects.
    pub replays_dropped: u64,
    /// Of those, native accepts whose tag did not check (forged or garbled).
    pub accepts_forged: u64,
    /// Native accepts with a static key other than the pinned one (the client stopped in
    /// [`ClientState::ServerKeyMismatch`]).
    pub server_key_mismatches: u64,
}

/// The client → server and server → client keys (a native client's are zeros until
/// accepted, and used only from then on).
fn keys(kind: &Kind) -> (&Key, &Key) {
    match kind {
        Kind::Token(token) => (&token.client_to_server_key, &token.server_to_client_key),
        Kind::Native(native) => (&native.client_to_server_key, &native.server_to_client_key),
    }
}

/// What a client connects with: a token, or the native profile's handshake.
enum Kind {
    Token(ConnectToken),
    Native(Box<NativeClient>),
}

/// A native client's handshake and, once accepted, its keys (zeroised when dropped; its
/// ephemeral secret zeroises itself).
struct NativeClient {
    server: SocketAddr,
    protocol_id: u64,
    timeout: Duration,
    pinned: Option<PublicKey>,
    secret: StaticSecret,
    public: PublicKey,
    cookie: Option<[u8; native::COOKIE_BYTES]>,
    /// When the cookie came: one older than [`native::COOKIE_REFRESH`] is fetched anew (the
    /// server refuses it once its lifetime is over).
    cookie_at: Option<Instant>,
    /// Whether a challenge came already: only the first counts as hearing from the server for
    /// the timeout (so a server whose accepts are all lost still times the client out).
    challenged: bool,
    server_static: Option<PublicKey>,
    client_to_server_key: Key,
    server_to_client_key: Key,
}

impl Drop for NativeClient {
    fn drop(&mut self) {
        self.client_to_server_key.zeroize();
        self.server_to_client_key.zeroize();
    }
}

/// A netcode 1.02 client (sans-IO). See the [module documentation](self).
pub struct Client {
    kind: Kind,
    state: ClientState,
    server_index: usize,
    connect_start: Instant,
    last_send: Option<Instant>,
    last_receive: Instant,
    sequence: u64,
    replay: ReplayWindow,
    challenge: Option<(u64, Box<[u8; CHALLENGE_TOKEN_BYTES]>)>,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<ClientEvent>,
    buffers: Buffers,
    stats: ClientStats,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("state", &self.state)
            .field("server", &self.server_address())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client that starts connecting at `now` to the token's first server (the first
    /// request goes out at the first [`update`](Self::update)).
    pub fn new(token: ConnectToken, now: Instant) -> Self {
        let state = if token.server_addresses.is_empty() {
            ClientState::RequestTimedOut
        } else {
            ClientState::SendingRequest
        };
        Self::with_kind(Kind::Token(token), state, now)
    }

    /// A client of the [native secure profile](crate::native) that starts connecting at `now`
    /// to `server` (the first request goes out at the first [`update`](Self::update)). With
    /// `pinned_server_key`, it connects only to the server holding that static key (it stops
    /// in [`ClientState::ServerKeyMismatch`] otherwise); without, it trusts the key the
    /// server shows ([`server_static_key`](Self::server_static_key) tells which). A server
    /// silent for `timeout` stops it (while connecting, and once connected).
    ///
    /// Errors: [`NetcodeError::Random`] if the operating system's generator fails.
    pub fn native(
        server: SocketAddr,
        protocol_id: u64,
        pinned_server_key: Option<PublicKey>,
        timeout: Duration,
        now: Instant,
    ) -> Result<Self, NetcodeError> {
        let (secret, public) = native::ephemeral()?;
        let native = NativeClient {
            server,
            protocol_id,
            timeout,
            pinned: pinned_server_key,
            secret,
            public,
            cookie: None,
            cookie_at: None,
            challenged: false,
            server_static: None,
            client_to_server_key: [0; crate::KEY_BYTES],
            server_to_client_key: [0; crate::KEY_BYTES],
        };
        Ok(Self::with_kind(Kind::Native(Box::new(native)), ClientState::SendingRequest, now))
    }

    fn with_kind(kind: Kind, state: ClientState, now: Instant) -> Self {
        Self {
            kind,
            state,
            server_index: 0,
            connect_start: now,
            last_send: None,
            last_receive: now,
            sequence: 0,
            replay: ReplayWindow::new(),
            challenge: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            buffers: Buffers::default(),
            stats: ClientStats::default(),
        }
    }

    /// Where it stands.
    pub fn state(&self) -> ClientState {
        self.state
    }

    /// The server it is trying or connected to.
    pub fn server_address(&self) -> Option<SocketAddr> {
        match &self.kind {
            Kind::Token(token) => token.server_addresses.get(self.server_index).copied(),
            Kind::Native(native) => Some(native.server),
        }
    }

    /// Whether it is a client of the native profile ([`Client::native`]).
    pub fn is_native(&self) -> bool {
        matches!(self.kind, Kind::Native(_))
    }

    /// The static public key the server showed in its accept (a native client's, once
    /// accepted, even when it did not match the pinned one): the key to pin for the next
    /// connections (trust on first use).
    pub fn server_static_key(&self) -> Option<PublicKey> {
        match &self.kind {
            Kind::Native(native) => native.server_static,
            Kind::Token(_) => None,
        }
    }

    fn protocol_id(&self) -> u64 {
        match &self.kind {
            Kind::Token(token) => token.protocol_id,
            Kind::Native(native) => native.protocol_id,
        }
    }

    fn server_count(&self) -> usize {
        match &self.kind {
            Kind::Token(token) => token.server_addresses.len(),
            Kind::Native(_) => 1,
        }
    }

    /// What was dropped so far.
    pub fn stats(&self) -> ClientStats {
        self.stats
    }

    /// The next datagram to send, and where. Give it back with [`recycle`](Self::recycle)
    /// once sent.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmits.pop_front()
    }

    /// Takes back a datagram from [`poll_transmit`](Self::poll_transmit) or a payload from a
    /// [`ClientEvent::Payload`], done with, to hold the next ones: a driver that recycles
    /// allocates nothing per packet once warm.
    pub fn recycle(&mut self, buffer: Vec<u8>) {
        self.buffers.recycle(buffer);
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    fn timeout(&self) -> Option<Duration> {
        match &self.kind {
            Kind::Token(token) => {
                u64::try_from(token.timeout_seconds).ok().map(Duration::from_secs)
            }
            Kind::Native(native) => Some(native.timeout),
        }
    }

    /// Sends what is due at `now` (requests, responses or keep-alives at 10 Hz) and applies
    /// the timeouts: a silent server makes it try the next one.
    pub fn update(&mut self, now: Instant) {
        if !self.state.is_active() {
            return;
        }
        if let (Kind::Token(token), false) = (&self.kind, self.state == ClientState::Connected) {
            let expire = token.expire_timestamp.saturating_sub(token.create_timestamp);
            if now.saturating_duration_since(self.connect_start) >= Duration::from_secs(expire) {
                self.stop(ClientState::TokenExpired);
                return;
            }
        }
        if let Some(timeout) = self.timeout() {
            if now.saturating_duration_since(self.last_receive) > timeout {
                match self.state {
                    ClientState::SendingRequest => {
                        self.next_server(now, ClientState::RequestTimedOut)
                    }
                    ClientState::SendingResponse => {
                        self.next_server(now, ClientState::ResponseTimedOut);
                    }
                    _ => self.stop(ClientState::ConnectionTimedOut),
                }
                if !self.state.is_active() {
                    return;
                }
            }
        }
        if let Kind::Native(native) = &mut self.kind {
            let stale = native
                .cookie_at
                .is_some_and(|at| now.saturating_duration_since(at) >= native::COOKIE_REFRESH);
            if self.state == ClientState::SendingResponse && stale {
                native.cookie = None;
                native.cookie_at = None;
                self.state = ClientState::SendingRequest;
                self.last_send = None;
            }
        }
        let due = self
            .last_send
            .is_none_or(|last| now.saturating_duration_since(last) >= KEEP_ALIVE_INTERVAL);
        if due {
            self.send_due(now);
        }
    }

    fn send_due(&mut self, now: Instant) {
        if let Kind::Native(native) = &self.kind {
            let handshake = match (self.state, native.cookie) {
                (ClientState::SendingRequest, _) => {
                    Some(native::write_request(native.protocol_id, &native.public))
                }
                (ClientState::SendingResponse, Some(cookie)) => {
                    Some(native::write_response(native.protocol_id, &native.public, &cookie))
                }
                _ => None,
            };
            if let Some(bytes) = handshake {
                let bytes = self.buffers.copy_of(&bytes);
                self.transmits.push_back((native.server, bytes));
                self.last_send = Some(now);
                return;
            }
        }
        match self.state {
            ClientState::SendingRequest => {
                let Kind::Token(token) = &self.kind else {
                    return;
                };
                let private_token = token.private_data.clone();
                let packet = Packet::Request {
                    protocol_id: token.protocol_id,
                    expire_timestamp: token.expire_timestamp,
                    token_nonce: token.nonce,
                    private_token: &private_token,
                };
                self.push(now, &packet);
            }
            ClientState::SendingResponse => {
                if let Some((sequence, token)) = self.challenge.take() {
                    self.push(now, &Packet::Response { sequence, token: &token });
                    self.challenge = Some((sequence, token));
                }
            }
            ClientState::Connected => {
                self.push(now, &Packet::KeepAlive { client_index: 0, max_clients: 0 });
            }
            _ => {}
        }
    }

    /// Handles a datagram received from `from` at `now`; it is decrypted in place. Bad input
    /// is dropped and counted; it never panics.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &mut [u8]) {
        if !self.state.is_active() || Some(from) != self.server_address() {
            self.stats.packets_dropped += 1;
            return;
        }
        if self.is_native() && self.state != ClientState::Connected {
            self.handle_native(now, from, bytes);
            return;
        }
        let allowed = match self.state {
            ClientState::SendingRequest => {
                Allowed::NONE.with(PacketType::Denied).with(PacketType::Challenge)
            }
            ClientState::SendingResponse => {
                Allowed::NONE.with(PacketType::Denied).with(PacketType::KeepAlive)
            }
            _ => Allowed::NONE
                .with(PacketType::KeepAlive)
                .with(PacketType::Payload)
                .with(PacketType::Disconnect),
        };
        let protocol_id = self.protocol_id();
        let result = packet::read(
            bytes,
            protocol_id,
            Some(keys(&self.kind).1),
            allowed,
            Some(&mut self.replay),
            0,
        );
        let packet = match result {
            Ok((_, packet)) => packet,
            Err(error) => {
                self.stats.packets_dropped += 1;
                if matches!(error, NetcodeError::Replayed(_)) {
                    self.stats.replays_dropped += 1;
                }
                return;
            }
        };
        match packet {
            Packet::Denied => self.next_server(now, ClientState::Denied),
            Packet::Challenge { sequence, token } => {
                self.challenge = Some((sequence, Box::new(*token)));
                self.state = ClientState::SendingResponse;
                self.last_receive = now;
                self.send_due(now);
            }
            Packet::KeepAlive { client_index, max_clients } => {
                self.last_receive = now;
                if self.state == ClientState::SendingResponse {
                    self.state = ClientState::Connected;
                    self.challenge = None;
                    self.events.push_back(ClientEvent::Connected {
                        server: from,
                        client_index,
                        max_clients,
                        binding: crate::session_binding(keys(&self.kind).0, keys(&self.kind).1),
                    });
                }
            }
            Packet::Payload(data) => {
                self.last_receive = now;
                let data = self.buffers.copy_of(data);
                self.events.push_back(ClientEvent::Payload(data));
            }
            Packet::Disconnect => self.stop(ClientState::Disconnected),
            Packet::Request { .. } | Packet::Response { .. } => self.stats.packets_dropped += 1,
        }
    }

    /// A native client's handshake packet (challenge or accept), before it is connected.
    fn handle_native(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let Kind::Native(native) = &mut self.kind else {
            return;
        };
        match (self.state, bytes.first()) {
            (ClientState::SendingRequest, Some(&native::CHALLENGE_TYPE)) => {
                let Ok(cookie) = native::read_challenge(bytes, &native.public) else {
                    self.stats.packets_dropped += 1;
                    return;
                };
                native.cookie = Some(cookie);
                native.cookie_at = Some(now);
                if !native.challenged {
                    native.challenged = true;
                    self.last_receive = now;
                }
                self.state = ClientState::SendingResponse;
                self.send_due(now);
            }
            (ClientState::SendingResponse, Some(&native::ACCEPT_TYPE)) => {
                let Ok((accept, server_ephemeral, server_static)) = native::read_accept(bytes)
                else {
                    self.stats.packets_dropped += 1;
                    return;
                };
                let keys = native::Keys::derive(
                    native.protocol_id,
                    &native.public,
                    &server_ephemeral,
                    &server_static,
                    &native.secret.diffie_hellman(&server_ephemeral.into()),
                    &native.secret.diffie_hellman(&server_static.into()),
                );
                // Only the server (or, unpinned, whoever it is) can make the tag check: a
                // forged accept is dropped and the handshake goes on.
                let opened =
                    keys.and_then(|keys| keys.open_accept(accept).map(|opened| (keys, opened)));
                let Ok((keys, (client_index, max_clients))) = opened else {
                    self.stats.packets_dropped += 1;
                    self.stats.accepts_forged += 1;
                    return;
                };
                native.server_static = Some(server_static);
                if native.pinned.is_some_and(|pinned| pinned != server_static) {
                    self.stats.server_key_mismatches += 1;
                    self.stop(ClientState::ServerKeyMismatch);
                    return;
                }
                native.client_to_server_key = keys.client_to_server;
                native.server_to_client_key = keys.server_to_client;
                native.cookie = None;
                self.state = ClientState::Connected;
                self.last_receive = now;
                self.events.push_back(ClientEvent::Connected {
                    server: from,
                    client_index,
                    max_clients,
                    binding: crate::session_binding(
                        &native.client_to_server_key,
                        &native.server_to_client_key,
                    ),
                });
                // The first sealed packet tells the server the accept arrived.
                self.push(now, &Packet::KeepAlive { client_index: 0, max_clients: 0 });
            }
            _ => self.stats.packets_dropped += 1,
        }
    }

    /// Sends `payload` (1 to 1200 bytes) to the server.
    ///
    /// Errors: [`NetcodeError::PayloadSize`]; [`NetcodeError::NotConnected`].
    pub fn send(&mut self, now: Instant, payload: &[u8]) -> Result<(), NetcodeError> {
        if payload.is_empty() || payload.len() > crate::MAX_PAYLOAD_BYTES {
            return Err(NetcodeError::PayloadSize(payload.len()));
        }
        if self.state != ClientState::Connected {
            return Err(NetcodeError::NotConnected);
        }
        self.push(now, &Packet::Payload(payload));
        Ok(())
    }

    /// [`send`](Self::send), sealing the payload packet straight into `out` (at least
    /// [`MAX_PACKET_BYTES`](crate::MAX_PACKET_BYTES) bytes) instead of queueing it: returns its
    /// length and where it goes, for a driver that sends it at once without a copy of its own.
    ///
    /// Errors: as [`send`](Self::send), and [`NetcodeError::BufferTooSmall`].
    pub fn send_into(
        &mut self,
        now: Instant,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<(usize, SocketAddr), NetcodeError> {
        if payload.is_empty() || payload.len() > crate::MAX_PAYLOAD_BYTES {
            return Err(NetcodeError::PayloadSize(payload.len()));
        }
        let (ClientState::Connected, Some(to)) = (self.state, self.server_address()) else {
            return Err(NetcodeError::NotConnected);
        };
        let len = packet::write(
            &Packet::Payload(payload),
            self.sequence,
            self.protocol_id(),
            keys(&self.kind).0,
            out,
        )?;
        self.sequence = self.sequence.wrapping_add(1);
        self.last_send = Some(now);
        Ok((len, to))
    }

    /// Disconnects: when connected, sends the redundant disconnect packets; the client ends
    /// in [`ClientState::Disconnected`].
    pub fn disconnect(&mut self, now: Instant) {
        if self.state == ClientState::Connected {
            for _ in 0..REDUNDANT_DISCONNECT_PACKETS {
                self.push(now, &Packet::Disconnect);
            }
        }
        if self.state.is_active() {
            self.stop(ClientState::Disconnected);
        }
    }

    fn stop(&mut self, state: ClientState) {
        self.state = state;
        self.challenge = None;
        if let Kind::Native(native) = &mut self.kind {
            native.cookie = None;
        }
        self.events.push_back(ClientEvent::Stopped(state));
    }

    /// Moves on to the token's next server, or stops in `failure` after the last.
    fn next_server(&mut self, now: Instant, failure: ClientState) {
        if self.server_index + 1 >= self.server_count() {
            self.stop(failure);
            return;
        }
        self.server_index += 1;
        self.state = ClientState::SendingRequest;
        self.challenge = None;
        self.replay.reset();
        self.last_receive = now;
        self.last_send = None;
        self.send_due(now);
    }

    fn push(&mut self, now: Instant, packet: &Packet<'_>) {
        let Some(to) = self.server_address() else {
            return;
        };
        let sequence = self.sequence;
        if !matches!(packet, Packet::Request { .. }) {
            self.sequence = self.sequence.wrapping_add(1);
        }
        let protocol_id = self.protocol_id();
        let sealed = self.buffers.sealed(packet, sequence, protocol_id, keys(&self.kind).0);
        if let Some(bytes) = sealed {
            self.transmits.push_back((to, bytes));
            self.last_send = Some(now);
        }
    }
}
