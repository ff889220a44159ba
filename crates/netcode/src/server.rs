//! A netcode 1.02 server, sans-IO: datagrams and time go in, datagrams and events come out.
//!
//! Feed it every datagram received on the server's socket with
//! [`handle_datagram`](Server::handle_datagram), call [`update`](Server::update) often (it
//! sends keep-alives at 10 Hz and times clients out), then send what
//! [`poll_transmit`](Server::poll_transmit) returns and handle what
//! [`poll_event`](Server::poll_event) returns.
//!
//! It follows the standard's server rules: a request is ignored unless its token opens under
//! the private key, is for this protocol, has not expired and lists this server's own public
//! address; unless neither its address nor its client id is connected; and unless its token
//! (known by its tag) was not used from another address. Stricter than the standard, a token
//! makes one connection: once it has, it is refused even from its own address (the
//! connection's keys are the token's, so a second connection would reuse the first one's
//! nonces, and its packets could be replayed into it). Only a full server answers with a
//! denial. Nothing is kept for a request until its token has opened, and what is kept (the
//! pending keys, the token-use history) is bounded; a full history refuses new tokens rather
//! than forget an unexpired one.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use zeroize::Zeroize;

use crate::native::{self, NativeConfig};
use crate::packet::{self, Allowed, Packet};
use crate::replay::ReplayWindow;
use crate::token::{CONNECT_TOKEN_PRIVATE_BYTES, ChallengeToken, PrivateConnectToken};
use crate::{Buffers, Key, MAC_BYTES, NetcodeError, UserData};

/// How often a keep-alive goes to a client the server has sent nothing else to (10 Hz).
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_millis(100);
/// How many disconnect packets a disconnect sends (the datagrams may be lost).
pub const REDUNDANT_DISCONNECT_PACKETS: usize = 10;
/// The default capacity of a server.
pub const DEFAULT_MAX_CLIENTS: usize = 4096;
/// How long the keys of a client that sent a request but no response yet are kept when its
/// token has no timeout (a negative `timeout_seconds`).
const PENDING_LIFETIME_WITHOUT_TIMEOUT: Duration = Duration::from_secs(10);
/// The first value of the server's global sequence and challenge sequence, on every start.
const SEQUENCE_START: u64 = 1 << 63;

/// What a server needs to know. Its private key is zeroised when it is dropped.
#[derive(Clone)]
pub struct ServerConfig {
    /// The game's protocol id.
    pub protocol_id: u64,
    /// The key shared with the backend that mints the tokens.
    pub private_key: Key,
    /// This server's public address, as tokens list it: a token that does not list it is
    /// refused.
    pub public_address: SocketAddr,
    /// How many clients may be connected at once (1 or more).
    pub max_clients: usize,
    /// The native secure profile (a static X25519 key; see [`crate::native`]):
    /// `None`, the default, drops native handshake packets and counts them.
    pub native: Option<NativeConfig>,
}

impl ServerConfig {
    /// A configuration with the default capacity ([`DEFAULT_MAX_CLIENTS`]).
    pub fn new(protocol_id: u64, private_key: Key, public_address: SocketAddr) -> Self {
        Self {
            protocol_id,
            private_key,
            public_address,
            max_clients: DEFAULT_MAX_CLIENTS,
            native: None,
        }
    }
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("protocol_id", &self.protocol_id)
            .field("public_address", &self.public_address)
            .field("max_clients", &self.max_clients)
            .field("native", &self.native)
            .finish_non_exhaustive()
    }
}

impl Drop for ServerConfig {
    fn drop(&mut self) {
        self.private_key.zeroize();
    }
}

/// Why a client left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// Nothing came from it for its token's timeout.
    TimedOut,
    /// It sent a disconnect packet.
    ClientDisconnected,
    /// The server disconnected it ([`Server::disconnect`]).
    ServerDisconnected,
}

/// What happened on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// A client completed the handshake.
    Connected {
        /// Its slot.
        client_index: usize,
        /// Its id, from its token.
        client_id: u64,
        /// The user data from its token (the game's login).
        user_data: Box<UserData>,
        /// The connection's binding: the same value the client's
        /// [`ClientEvent::Connected`](crate::client::ClientEvent::Connected) reports.
        binding: crate::SessionBinding,
    },
    /// A client sent a payload.
    Payload {
        /// Its slot.
        client_index: usize,
        /// The payload, 1 to 1200 bytes.
        data: Vec<u8>,
    },
    /// A client left; its slot is free.
    Disconnected {
        /// Its former slot.
        client_index: usize,
        /// Why.
        reason: DisconnectReason,
    },
}

/// What the server dropped or refused, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Datagrams dropped unread or failing the read order (size, type, decryption, …).
    pub packets_dropped: u64,
    /// Of those, replayed keep-alives, payloads and disconnects.
    pub replays_dropped: u64,
    /// Requests whose token did not open or did not list this server.
    pub requests_invalid: u64,
    /// Requests ignored: address or client id connected, token used from another address or
    /// already connected once.
    pub requests_ignored: u64,
    /// Requests refused because the token-use history or the pending table was full of
    /// unexpired entries.
    pub requests_refused_full_tables: u64,
    /// Denials sent (the server was full).
    pub denied_sent: u64,
    /// Responses whose challenge token did not open.
    pub responses_invalid: u64,
    /// Datagrams from addresses with no pending or connected client.
    pub unknown_address: u64,
    /// Native handshake packets at a server without [`ServerConfig::native`].
    pub native_disabled: u64,
    /// Native requests and responses that fail the read (size, version, protocol id,
    /// padding) or carry a low-order key.
    pub native_invalid: u64,
    /// Native responses whose cookie does not check (forged, or from another address or
    /// with another key than the request it answered) or has expired.
    pub cookies_refused: u64,
    /// Native requests and responses left unanswered because the server is full.
    pub native_refused_full: u64,
    /// Accepts sent again for a repeated response (the first was lost).
    pub accepts_resent: u64,
}

/// The keys of a client between its request and its response.
struct Pending {
    /// Its token's tag (its key in the token-use history).
    token_mac: [u8; MAC_BYTES],
    keys: SessionKeys,
    timeout_seconds: i32,
    expires: Instant,
}

/// A connected client.
struct Slot {
    address: SocketAddr,
    client_id: u64,
    keys: SessionKeys,
    timeout: Option<Duration>,
    replay: ReplayWindow,
    sequence: u64,
    last_send: Instant,
    last_receive: Instant,
    confirmed: bool,
    /// A native connection's handshake: `None` for a token's.
    native: Option<Box<NativeSlot>>,
}

/// What a native connection keeps of its handshake.
struct NativeSlot {
    /// The client's ephemeral key: a response carrying it again asks for the accept again.
    client_ephemeral: native::PublicKey,
    /// The accept, kept until the client's first sealed packet shows it arrived.
    accept: Option<Vec<u8>>,
}

/// A connection's two keys, zeroised when dropped.
struct SessionKeys {
    client_to_server: Key,
    server_to_client: Key,
}

impl Drop for SessionKeys {
    fn drop(&mut self) {
        self.client_to_server.zeroize();
        self.server_to_client.zeroize();
    }
}

/// A token seen: the address that used it, when it expires, and whether it made a
/// connection.
struct TokenUse {
    address: SocketAddr,
    expire_timestamp: u64,
    /// A token makes one connection: its keys are the connection's, and a second connection
    /// under them would number its packets from 0 again (nonces reused, and the first
    /// connection's packets replayable into it).
    connected: bool,
}

/// The server's side of the native profile.
struct NativeServer {
    secret: x25519_dalek::StaticSecret,
    public: native::PublicKey,
    timeout: Duration,
    /// The nonce counter of cookies (under the challenge key, with a nonce prefix of their own).
    cookie_sequence: u64,
    /// The next client id of a native connection.
    next_client_id: u64,
}

/// A netcode 1.02 server (sans-IO). See the [module documentation](self).
pub struct Server {
    protocol_id: u64,
    private_key: Key,
    challenge_key: Key,
    public_address: SocketAddr,
    max_clients: usize,
    global_sequence: u64,
    challenge_sequence: u64,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    by_address: HashMap<SocketAddr, usize>,
    by_client_id: HashMap<u64, usize>,
    pending: HashMap<SocketAddr, Pending>,
    pending_capacity: usize,
    token_history: HashMap<[u8; MAC_BYTES], TokenUse>,
    history_capacity: usize,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<ServerEvent>,
    buffers: Buffers,
    stats: ServerStats,
    native: Option<NativeServer>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("protocol_id", &self.protocol_id)
            .field("public_address", &self.public_address)
            .field("max_clients", &self.max_clients)
            .field("connected", &self.by_address.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.private_key.zeroize();
        self.challenge_key.zeroize();
    }
}

impl Server {
    /// A started server: its challenge key comes from the operating system's generator, its
    /// global and challenge sequences start at `1 << 63`.
    ///
    /// Errors: [`NetcodeError::Random`] if the generator fails,
    /// [`NetcodeError::MaxClients`] for a capacity of 0 or above `u32::MAX`.
    pub fn new(config: &ServerConfig) -> Result<Self, NetcodeError> {
        if config.max_clients == 0 || u32::try_from(config.max_clients).is_err() {
            return Err(NetcodeError::MaxClients(config.max_clients));
        }
        let challenge_key = crate::random_key()?;
        let max_clients = config.max_clients;
        Ok(Self {
            protocol_id: config.protocol_id,
            private_key: config.private_key,
            challenge_key,
            public_address: config.public_address,
            max_clients,
            global_sequence: SEQUENCE_START,
            challenge_sequence: SEQUENCE_START,
            // Grown as clients come (a server sized for 100,000 holds nothing for them idle).
            slots: Vec::new(),
            free: Vec::new(),
            by_address: HashMap::new(),
            by_client_id: HashMap::new(),
            pending: HashMap::new(),
            pending_capacity: max_clients.saturating_mul(4),
            token_history: HashMap::new(),
            history_capacity: max_clients.saturating_mul(4),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            buffers: Buffers::default(),
            stats: ServerStats::default(),
            native: config.native.as_ref().map(|native| NativeServer {
                secret: native.static_secret(),
                public: native.public_key(),
                timeout: native.timeout,
                cookie_sequence: 0,
                next_client_id: SEQUENCE_START,
            }),
        })
    }

    /// What was dropped or refused so far.
    pub fn stats(&self) -> ServerStats {
        self.stats
    }

    /// How many clients are connected.
    pub fn connected_clients(&self) -> usize {
        self.by_address.len()
    }

    /// How many clients sent a valid request and no response yet (their keys are kept).
    pub fn pending_clients(&self) -> usize {
        self.pending.len()
    }

    /// How many tokens the token-use history holds.
    pub fn token_history_len(&self) -> usize {
        self.token_history.len()
    }

    /// The capacity.
    pub fn max_clients(&self) -> usize {
        self.max_clients
    }

    /// The server's static public key in the native profile (what native clients pin), if it
    /// has one.
    pub fn native_public_key(&self) -> Option<native::PublicKey> {
        self.native.as_ref().map(|native| native.public)
    }

    /// Whether the client in `client_index` connected through the native profile (its
    /// client id is the server's own number, its user data zeros); `false` for a token's
    /// and for an empty slot.
    pub fn is_native(&self, client_index: usize) -> bool {
        self.slot(client_index).is_some_and(|slot| slot.native.is_some())
    }

    /// The address of the client in `client_index`, if one is connected there.
    pub fn client_address(&self, client_index: usize) -> Option<SocketAddr> {
        self.slot(client_index).map(|slot| slot.address)
    }

    /// The slot of the client connected from `address`, if one is (O(1)).
    pub fn client_index(&self, address: SocketAddr) -> Option<usize> {
        self.by_address.get(&address).copied()
    }

    /// The next datagram to send, and where. Give it back with [`recycle`](Self::recycle)
    /// once sent.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmits.pop_front()
    }

    /// Takes back a datagram from [`poll_transmit`](Self::poll_transmit) or a payload from a
    /// [`ServerEvent::Payload`], done with, to hold the next ones: a driver that recycles
    /// allocates nothing per packet once warm.
    pub fn recycle(&mut self, buffer: Vec<u8>) {
        self.buffers.recycle(buffer);
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// Handles a datagram received from `from` at `now` (`unix_seconds` is the wall clock,
    /// for token expiry). The datagram is decrypted in place. Bad input is dropped and
    /// counted in [`stats`](Self::stats); it never panics.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        unix_seconds: u64,
        from: SocketAddr,
        bytes: &mut [u8],
    ) {
        if let Some(&index) = self.by_address.get(&from) {
            if bytes.first() == Some(&native::RESPONSE_TYPE) {
                self.resend_accept(index, bytes);
            } else {
                self.handle_connected(now, index, bytes);
            }
            return;
        }
        if bytes
            .first()
            .is_some_and(|&prefix| (native::REQUEST_TYPE..=native::ACCEPT_TYPE).contains(&prefix))
        {
            self.handle_native(now, unix_seconds, from, bytes);
            return;
        }
        // A request (prefix byte 0) needs no key; anything else needs the pending keys.
        let key = self.pending.get(&from).map(|pending| pending.keys.client_to_server);
        if key.is_none() && bytes.first() != Some(&0) {
            self.stats.packets_dropped += 1;
            self.stats.unknown_address += 1;
            return;
        }
        let allowed =
            Allowed::NONE.with(packet::PacketType::Request).with(packet::PacketType::Response);
        let result =
            packet::read(bytes, self.protocol_id, key.as_ref(), allowed, None, unix_seconds);
        match result {
            Ok((_, Packet::Request { expire_timestamp, token_nonce, private_token, .. })) => {
                let private_token = *private_token;
                self.handle_request(
                    now,
                    unix_seconds,
                    from,
                    expire_timestamp,
                    &token_nonce,
                    &private_token,
                );
            }
            Ok((_, Packet::Response { sequence, token })) => {
                let token = *token;
                self.handle_response(now, from, sequence, &token);
            }
            Ok(_) | Err(_) => self.stats.packets_dropped += 1,
        }
    }

    fn handle_request(
        &mut self,
        now: Instant,
        unix_seconds: u64,
        from: SocketAddr,
        expire_timestamp: u64,
        token_nonce: &[u8; 24],
        sealed: &[u8; CONNECT_TOKEN_PRIVATE_BYTES],
    ) {
        let Ok(private) = PrivateConnectToken::open(
            sealed,
            self.protocol_id,
            expire_timestamp,
            token_nonce,
            &self.private_key,
        ) else {
            self.stats.requests_invalid += 1;
            return;
        };
        if !private.server_addresses.contains(&self.public_address) {
            self.stats.requests_invalid += 1;
            return;
        }
        if self.by_client_id.contains_key(&private.client_id) {
            self.stats.requests_ignored += 1;
            return;
        }
        let mut mac = [0; MAC_BYTES];
        mac.copy_from_slice(&sealed[CONNECT_TOKEN_PRIVATE_BYTES - MAC_BYTES..]);
        match self.token_history.get(&mac) {
            Some(used) if used.address != from || used.connected => {
                self.stats.requests_ignored += 1;
                return;
            }
            Some(_) => {}
            None => {
                if self.token_history.len() >= self.history_capacity {
                    self.token_history.retain(|_, used| used.expire_timestamp > unix_seconds);
                }
                if self.token_history.len() >= self.history_capacity {
                    self.stats.requests_refused_full_tables += 1;
                    return;
                }
                self.token_history
                    .insert(mac, TokenUse { address: from, expire_timestamp, connected: false });
            }
        }
        if self.by_address.len() >= self.max_clients {
            let sequence = self.next_global_sequence();
            self.push_packet(from, &Packet::Denied, sequence, &private.server_to_client_key);
            self.stats.denied_sent += 1;
            return;
        }
        let lifetime =
            timeout_of(private.timeout_seconds).unwrap_or(PENDING_LIFETIME_WITHOUT_TIMEOUT);
        if !self.pending.contains_key(&from) {
            if self.pending.len() >= self.pending_capacity {
                self.pending.retain(|_, pending| pending.expires > now);
            }
            if self.pending.len() >= self.pending_capacity {
                self.stats.requests_refused_full_tables += 1;
                return;
            }
        }
        self.pending.insert(
            from,
            Pending {
                token_mac: mac,
                keys: SessionKeys {
                    client_to_server: private.client_to_server_key,
                    server_to_client: private.server_to_client_key,
                },
                timeout_seconds: private.timeout_seconds,
                expires: now.checked_add(lifetime).unwrap_or(now),
            },
        );
        let challenge =
            ChallengeToken { client_id: private.client_id, user_data: private.user_data };
        let challenge_sequence = self.challenge_sequence;
        self.challenge_sequence = self.challenge_sequence.wrapping_add(1);
        let Ok(token) = challenge.seal(challenge_sequence, &self.challenge_key) else {
            return;
        };
        let sequence = self.next_global_sequence();
        self.push_packet(
            from,
            &Packet::Challenge { sequence: challenge_sequence, token: &token },
            sequence,
            &private.server_to_client_key,
        );
    }

    fn handle_response(
        &mut self,
        now: Instant,
        from: SocketAddr,
        challenge_sequence: u64,
        token: &[u8; crate::token::CHALLENGE_TOKEN_BYTES],
    ) {
        let Ok(challenge) = ChallengeToken::open(token, challenge_sequence, &self.challenge_key)
        else {
            self.stats.responses_invalid += 1;
            return;
        };
        if self.by_client_id.contains_key(&challenge.client_id) {
            self.stats.requests_ignored += 1;
            return;
        }
        let Some(pending) = self.pending.remove(&from) else {
            return;
        };
        let grown = || self.slots.len();
        let index = self.free.pop().or_else(|| (grown() < self.max_clients).then(grown));
        if index == Some(self.slots.len()) {
            self.slots.push(None);
        }
        let Some(index) = index else {
            let sequence = self.next_global_sequence();
            self.push_packet(from, &Packet::Denied, sequence, &pending.keys.server_to_client);
            self.stats.denied_sent += 1;
            return;
        };
        if let Some(used) = self.token_history.get_mut(&pending.token_mac) {
            used.connected = true;
        }
        let binding =
            crate::session_binding(&pending.keys.client_to_server, &pending.keys.server_to_client);
        let slot = Slot {
            address: from,
            client_id: challenge.client_id,
            keys: pending.keys,
            timeout: timeout_of(pending.timeout_seconds),
            replay: ReplayWindow::new(),
            sequence: 0,
            last_send: now,
            last_receive: now,
            confirmed: false,
            native: None,
        };
        self.slots[index] = Some(slot);
        self.by_address.insert(from, index);
        self.by_client_id.insert(challenge.client_id, index);
        self.events.push_back(ServerEvent::Connected {
            client_index: index,
            client_id: challenge.client_id,
            user_data: Box::new(challenge.user_data),
            binding,
        });
        self.send_keep_alive(now, index);
    }

    /// A native handshake packet from an address with no connection.
    fn handle_native(&mut self, now: Instant, unix_seconds: u64, from: SocketAddr, bytes: &[u8]) {
        let protocol_id = self.protocol_id;
        let full = self.next_index().is_none();
        let Some(native) = &mut self.native else {
            self.stats.packets_dropped += 1;
            self.stats.native_disabled += 1;
            return;
        };
        match bytes[0] {
            native::REQUEST_TYPE => {
                let Ok(client_ephemeral) = native::read_request(bytes, protocol_id) else {
                    self.stats.packets_dropped += 1;
                    self.stats.native_invalid += 1;
                    return;
                };
                if full {
                    self.stats.native_refused_full += 1;
                    return;
                }
                // Nothing is kept: the cookie carries what the response must prove.
                let sequence = native.cookie_sequence;
                native.cookie_sequence = native.cookie_sequence.wrapping_add(1);
                let expire = unix_seconds.saturating_add(native::COOKIE_LIFETIME_SECONDS);
                let Ok(cookie) = native::make_cookie(
                    &self.challenge_key,
                    sequence,
                    expire,
                    protocol_id,
                    &client_ephemeral,
                    from,
                ) else {
                    return;
                };
                let challenge = native::write_challenge(&client_ephemeral, &cookie);
                let bytes = self.buffers.copy_of(&challenge);
                self.transmits.push_back((from, bytes));
            }
            native::RESPONSE_TYPE => {
                let Ok((client_ephemeral, cookie)) = native::read_response(bytes, protocol_id)
                else {
                    self.stats.packets_dropped += 1;
                    self.stats.native_invalid += 1;
                    return;
                };
                if native::check_cookie(
                    &self.challenge_key,
                    &cookie,
                    protocol_id,
                    &client_ephemeral,
                    from,
                    unix_seconds,
                )
                .is_err()
                {
                    self.stats.packets_dropped += 1;
                    self.stats.cookies_refused += 1;
                    return;
                }
                self.accept_native(now, from, &client_ephemeral);
            }
            _ => self.stats.packets_dropped += 1,
        }
    }

    /// A native response with a good cookie: the keys, a slot, the accept.
    fn accept_native(
        &mut self,
        now: Instant,
        from: SocketAddr,
        client_ephemeral: &native::PublicKey,
    ) {
        let max_clients = u32::try_from(self.max_clients).unwrap_or(u32::MAX);
        let Some(index) = self.next_index() else {
            self.stats.native_refused_full += 1;
            return;
        };
        let Some(native) = &mut self.native else {
            return;
        };
        let Ok((ephemeral, server_ephemeral)) = native::ephemeral() else {
            return;
        };
        let client_public = x25519_dalek::PublicKey::from(*client_ephemeral);
        let keys = native::Keys::derive(
            self.protocol_id,
            client_ephemeral,
            &server_ephemeral,
            &native.public,
            &ephemeral.diffie_hellman(&client_public),
            &native.secret.diffie_hellman(&client_public),
        );
        let Ok(keys) = keys else {
            self.stats.packets_dropped += 1;
            self.stats.native_invalid += 1;
            return;
        };
        let client_index = u32::try_from(index).unwrap_or(u32::MAX);
        let Ok(accept) =
            keys.write_accept(&server_ephemeral, &native.public, client_index, max_clients)
        else {
            return;
        };
        let client_id = native.next_client_id;
        native.next_client_id = native.next_client_id.wrapping_add(1);
        let timeout = Some(native.timeout);
        if self.free.last() == Some(&index) {
            self.free.pop();
        } else {
            self.slots.push(None);
        }
        let kept = self.buffers.copy_of(&accept);
        self.slots[index] = Some(Slot {
            address: from,
            client_id,
            keys: SessionKeys {
                client_to_server: keys.client_to_server,
                server_to_client: keys.server_to_client,
            },
            timeout,
            replay: ReplayWindow::new(),
            sequence: 0,
            last_send: now,
            last_receive: now,
            confirmed: false,
            native: Some(Box::new(NativeSlot {
                client_ephemeral: *client_ephemeral,
                accept: Some(kept),
            })),
        });
        self.by_address.insert(from, index);
        self.events.push_back(ServerEvent::Connected {
            client_index: index,
            client_id,
            user_data: Box::new([0; crate::USER_DATA_BYTES]),
            binding: crate::session_binding(&keys.client_to_server, &keys.server_to_client),
        });
        let bytes = self.buffers.copy_of(&accept);
        self.transmits.push_back((from, bytes));
    }

    /// A native response from a connected address: the accept again if it is that client's
    /// and it has not confirmed yet (its accept was lost); dropped otherwise.
    fn resend_accept(&mut self, index: usize, bytes: &[u8]) {
        let protocol_id = self.protocol_id;
        let Some(slot) = self.slots.get(index).and_then(Option::as_ref) else {
            self.stats.packets_dropped += 1;
            return;
        };
        let accept = match (&slot.native, native::read_response(bytes, protocol_id)) {
            (Some(native), Ok((client_ephemeral, _)))
                if native.client_ephemeral == client_ephemeral =>
            {
                native.accept.as_deref()
            }
            _ => None,
        };
        let Some(accept) = accept else {
            self.stats.packets_dropped += 1;
            return;
        };
        let to = slot.address;
        let bytes = self.buffers.copy_of(accept);
        self.transmits.push_back((to, bytes));
        self.stats.accepts_resent += 1;
    }

    fn handle_connected(&mut self, now: Instant, index: usize, bytes: &mut [u8]) {
        let protocol_id = self.protocol_id;
        let Some(slot) = self.slots.get_mut(index).and_then(Option::as_mut) else {
            self.stats.packets_dropped += 1;
            return;
        };
        let allowed = Allowed::NONE
            .with(packet::PacketType::KeepAlive)
            .with(packet::PacketType::Payload)
            .with(packet::PacketType::Disconnect);
        let result = packet::read(
            bytes,
            protocol_id,
            Some(&slot.keys.client_to_server),
            allowed,
            Some(&mut slot.replay),
            0,
        );
        match result {
            Ok((_, Packet::KeepAlive { .. })) => {
                slot.last_receive = now;
                slot.confirm();
            }
            Ok((_, Packet::Payload(data))) => {
                slot.last_receive = now;
                slot.confirm();
                let data = self.buffers.copy_of(data);
                self.events.push_back(ServerEvent::Payload { client_index: index, data });
            }
            Ok((_, Packet::Disconnect)) => {
                self.free_slot(index, DisconnectReason::ClientDisconnected);
            }
            Ok(_) => self.stats.packets_dropped += 1,
            Err(error) => {
                self.stats.packets_dropped += 1;
                if matches!(error, NetcodeError::Replayed(_)) {
                    self.stats.replays_dropped += 1;
                }
            }
        }
    }

    /// Sends keep-alives to the clients nothing was sent to for 100 ms, drops the clients
    /// nothing came from for their token's timeout, and forgets pending clients whose time
    /// is up.
    pub fn update(&mut self, now: Instant) {
        self.pending.retain(|_, pending| pending.expires > now);
        for index in 0..self.slots.len() {
            let Some(slot) = &self.slots[index] else {
                continue;
            };
            let timed_out = slot
                .timeout
                .is_some_and(|timeout| now.saturating_duration_since(slot.last_receive) > timeout);
            if timed_out {
                self.free_slot(index, DisconnectReason::TimedOut);
            } else if now.saturating_duration_since(slot.last_send) >= KEEP_ALIVE_INTERVAL {
                self.send_keep_alive(now, index);
            }
        }
    }

    /// Sends `payload` (1 to 1200 bytes) to the client in `client_index`.
    ///
    /// Errors: [`NetcodeError::PayloadSize`]; [`NetcodeError::NoClient`] if no client is
    /// connected there.
    pub fn send(
        &mut self,
        now: Instant,
        client_index: usize,
        payload: &[u8],
    ) -> Result<(), NetcodeError> {
        if payload.is_empty() || payload.len() > crate::MAX_PAYLOAD_BYTES {
            return Err(NetcodeError::PayloadSize(payload.len()));
        }
        let confirmed =
            self.slot(client_index).ok_or(NetcodeError::NoClient(client_index))?.confirmed;
        if !confirmed {
            self.send_keep_alive(now, client_index);
        }
        self.send_to_slot(now, client_index, &Packet::Payload(payload));
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
        client_index: usize,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<(usize, SocketAddr), NetcodeError> {
        if payload.is_empty() || payload.len() > crate::MAX_PAYLOAD_BYTES {
            return Err(NetcodeError::PayloadSize(payload.len()));
        }
        let confirmed =
            self.slot(client_index).ok_or(NetcodeError::NoClient(client_index))?.confirmed;
        if !confirmed {
            self.send_keep_alive(now, client_index);
        }
        let protocol_id = self.protocol_id;
        let slot = self
            .slots
            .get_mut(client_index)
            .and_then(Option::as_mut)
            .ok_or(NetcodeError::NoClient(client_index))?;
        let len = packet::write(
            &Packet::Payload(payload),
            slot.sequence,
            protocol_id,
            &slot.keys.server_to_client,
            out,
        )?;
        slot.sequence = slot.sequence.wrapping_add(1);
        slot.last_send = now;
        Ok((len, slot.address))
    }

    /// Disconnects the client in `client_index`: sends it the redundant disconnect packets,
    /// frees the slot and reports [`DisconnectReason::ServerDisconnected`]. Does nothing if
    /// no client is there.
    pub fn disconnect(&mut self, now: Instant, client_index: usize) {
        if self.slot(client_index).is_none() {
            return;
        }
        for _ in 0..REDUNDANT_DISCONNECT_PACKETS {
            self.send_to_slot(now, client_index, &Packet::Disconnect);
        }
        self.free_slot(client_index, DisconnectReason::ServerDisconnected);
    }

    /// The slot the next client would take (a freed one, or the next one grown), if the
    /// server is not full.
    fn next_index(&self) -> Option<usize> {
        let grown = self.slots.len();
        self.free.last().copied().or_else(|| (grown < self.max_clients).then_some(grown))
    }

    fn slot(&self, index: usize) -> Option<&Slot> {
        self.slots.get(index).and_then(Option::as_ref)
    }

    fn free_slot(&mut self, index: usize, reason: DisconnectReason) {
        let Some(slot) = self.slots.get_mut(index).and_then(Option::take) else {
            return;
        };
        self.by_address.remove(&slot.address);
        if slot.native.is_none() {
            self.by_client_id.remove(&slot.client_id);
        }
        self.free.push(index);
        self.events.push_back(ServerEvent::Disconnected { client_index: index, reason });
    }

    fn send_keep_alive(&mut self, now: Instant, index: usize) {
        let client_index = u32::try_from(index).unwrap_or(u32::MAX);
        let max_clients = u32::try_from(self.max_clients).unwrap_or(u32::MAX);
        self.send_to_slot(now, index, &Packet::KeepAlive { client_index, max_clients });
    }

    fn send_to_slot(&mut self, now: Instant, index: usize, packet: &Packet<'_>) {
        let Some(slot) = self.slots.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        let sequence = slot.sequence;
        slot.sequence = slot.sequence.wrapping_add(1);
        slot.last_send = now;
        let sealed =
            self.buffers.sealed(packet, sequence, self.protocol_id, &slot.keys.server_to_client);
        if let Some(bytes) = sealed {
            self.transmits.push_back((slot.address, bytes));
        }
    }

    fn next_global_sequence(&mut self) -> u64 {
        let sequence = self.global_sequence;
        self.global_sequence = self.global_sequence.wrapping_add(1);
        sequence
    }

    fn push_packet(&mut self, to: SocketAddr, packet: &Packet<'_>, sequence: u64, key: &Key) {
        if let Some(bytes) = self.buffers.sealed(packet, sequence, self.protocol_id, key) {
            self.transmits.push_back((to, bytes));
        }
    }
}

impl Slot {
    /// The client showed it has the keys: a native accept need not be kept any more.
    fn confirm(&mut self) {
        self.confirmed = true;
        if let Some(native) = &mut self.native {
            native.accept = None;
        }
    }
}

/// A token's timeout: `None` when negative (no timeout).
fn timeout_of(timeout_seconds: i32) -> Option<Duration> {
    u64::try_from(timeout_seconds).ok().map(Duration::from_secs)
}
