//! The native secure profile: secure connections without a web backend (LAN, peer-to-peer, a
//! player hosting over the internet), by an X25519 key exchange after a stateless cookie.
//!
//! A netcode 1.02 connection starts from a connect token minted by a backend that shares a
//! key with the servers. The native profile replaces the token with a key exchange against
//! the server's static X25519 key ([`NativeConfig`]), and then *is* a netcode connection:
//! the same keep-alive, payload and disconnect packets, sealed with ChaCha20-Poly1305 under a
//! client → server and a server → client key, the same replay windows and timeouts, the same
//! [`ServerEvent::Connected`](crate::server::ServerEvent::Connected) and
//! [`ClientEvent::Connected`](crate::client::ClientEvent::Connected) with the connection's
//! [`SessionBinding`](crate::SessionBinding). A connected packet carries exactly netcode's
//! bytes: the prefix byte, the sequence number and the 16-byte tag, nothing more.
//!
//! The client is [`Client::native`](crate::client::Client::native); the server is the usual
//! [`Server`](crate::server::Server) with [`ServerConfig::native`](crate::server::ServerConfig)
//! set (a server without it drops native packets and counts them).
//!
//! # The handshake
//!
//! Four packets, in the clear (their prefix byte is their type, 7 to 10, which netcode 1.02
//! does not use: a netcode peer drops them as packets of an unknown type). Every integer is
//! little-endian; `‖` is concatenation.
//!
//! ```text
//! request   (client → server, 128 bytes)
//!   [0]        7
//!   [1..14]    "STURNUS NK 1\0"              NATIVE_VERSION_INFO
//!   [14..22]   protocol id                    u64
//!   [22..54]   client ephemeral public key    e_c, X25519
//!   [54..128]  zeros                          (74 bytes: the challenge is smaller)
//!
//! challenge (server → client, 41 bytes)
//!   [0]        8
//!   [1..9]     e_c[0..8]                      echo: the client takes only its own
//!   [9..41]    cookie:
//!     [9..17]    expiry                       u64, Unix seconds (now + 30)
//!     [17..25]   cookie sequence              u64, the nonce's counter
//!     [25..41]   tag                          ChaCha20-Poly1305 under the server's challenge
//!                                             key of an empty message; nonce "cook" ‖
//!                                             sequence; associated data "sturnus cookie" ‖
//!                                             protocol id ‖ expiry ‖ e_c ‖ client address
//!
//! response  (client → server, 128 bytes)
//!   [0]        9
//!   [1..14]    "STURNUS NK 1\0"
//!   [14..22]   protocol id                    u64
//!   [22..54]   e_c
//!   [54..86]   the cookie, unchanged
//!   [86..128]  zeros                          (42 bytes: the accept is smaller)
//!
//! accept    (server → client, 89 bytes)
//!   [0]        10
//!   [1..33]    server ephemeral public key    e_s
//!   [33..65]   server static public key       S
//!   [65..73]   client index ‖ max clients     u32 ‖ u32, encrypted
//!   [73..89]   tag                            ChaCha20-Poly1305 under k_confirm, nonce 12
//!                                             zero bytes, associated data h
//! ```
//!
//! The client address in the cookie's associated data is `4 ‖ the 4 address bytes ‖ port`
//! for IPv4 and `6 ‖ the 16 address bytes ‖ port` for IPv6 (the port little-endian).
//!
//! The keys, on both sides (the server with `e_s` and `s`, the client with `e_c`):
//!
//! ```text
//! h      = SHA-256("sturnus native NK 1" ‖ protocol id ‖ e_c ‖ e_s ‖ S)
//! ikm    = X25519(e_s, e_c) ‖ X25519(s, e_c)          (both must be non-zero: a low-order
//!                                                     public key is refused)
//! k_c2s ‖ k_s2c ‖ k_confirm = HKDF-SHA256(salt = h, ikm, info = "sturnus native keys", 96)
//! ```
//!
//! The server keeps **nothing** for a request: the cookie it answers with holds what it must
//! check later (the client's address and ephemeral key, the expiry) under a key only it has.
//! A response whose cookie opens for that address and key and has not expired takes a slot:
//! the server draws `e_s`, derives the keys, reports the connection and sends the accept;
//! it keeps the accept's bytes until the client's first sealed packet confirms that the
//! client has the keys, and sends them again for every repeated response meanwhile (a lost
//! accept). The client checks the accept's tag (a forged or garbled accept is dropped and
//! counted), then, if it was given a pinned key, that `S` is it
//! ([`ClientState::ServerKeyMismatch`](crate::client::ClientState::ServerKeyMismatch)
//! otherwise), and is connected. From there on the connection is netcode's.
//!
//! The client sends requests, then responses, at 10 Hz; after 15 s of responses without an
//! accept it asks for a new cookie (one lives 30 s). Its timeout counts from the first
//! challenge: a server whose accepts never arrive still times it out.
//!
//! Every reply is smaller than the packet that caused it (41 < 128, 89 < 128), so the
//! handshake amplifies nothing for a sender that forges its address. A full server answers
//! no request (the client times out).
//!
//! # What it protects against
//!
//! - **A passive eavesdropper** learns nothing of the payloads: the keys come from the
//!   ephemeral Diffie-Hellman (forward secret: a server's static key stolen later does not
//!   open a recorded connection).
//! - **An off-path attacker** (who cannot see the traffic) can neither inject into a
//!   connection (every packet is authenticated, replays are dropped by the window) nor hold
//!   server state with forged addresses (no cookie reaches it), nor derail a handshake: a
//!   challenge must echo the client's fresh ephemeral key and an accept must carry a tag
//!   under keys derived from it.
//! - **An active man in the middle** is stopped only when the client pins the server's
//!   static key: `X25519(s, e_c)` enters the keys, so only the holder of `s` can produce an
//!   accept whose tag checks. Without a pin the client trusts the first key it sees (TOFU,
//!   as SSH does): [`Client::server_static_key`](crate::client::Client::server_static_key)
//!   tells the game which key that was, to pin it next time.
//! - The client is **anonymous**: the server authenticates no one (there is no backend to
//!   vouch for players); a game that needs logins runs them over the secure connection. So
//!   anyone who can receive at an address can take a slot until the timeout, as anyone with
//!   a token could in the netcode mode.
//!
//! Native connections have no client id from a token: the server numbers them itself, from
//! `1 << 63` up on each start, reports zero user data, and keeps them out of its by-client-id
//! table, so a native client never keeps a token client of the same number out (and
//! [`Server::is_native`](crate::server::Server::is_native) tells which kind a slot holds).

use std::net::SocketAddr;
use std::time::Duration;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Tag};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use x25519_dalek::StaticSecret;
use zeroize::{Zeroize, Zeroizing};

use crate::{KEY_BYTES, Key, MAC_BYTES, NetcodeError};

/// The version string of the native handshake, with its terminating zero (13 bytes, like
/// netcode's).
pub const NATIVE_VERSION_INFO: &[u8; 13] = b"STURNUS NK 1\0";
/// Bytes of an X25519 public key.
pub const PUBLIC_KEY_BYTES: usize = 32;
/// An X25519 public key (a server's static key, for pinning).
pub type PublicKey = [u8; PUBLIC_KEY_BYTES];

/// The prefix byte of a native request.
pub const REQUEST_TYPE: u8 = 7;
/// The prefix byte of a native challenge.
pub const CHALLENGE_TYPE: u8 = 8;
/// The prefix byte of a native response.
pub const RESPONSE_TYPE: u8 = 9;
/// The prefix byte of a native accept.
pub const ACCEPT_TYPE: u8 = 10;

/// Bytes of a cookie: expiry, sequence, tag.
pub const COOKIE_BYTES: usize = 8 + 8 + MAC_BYTES;
/// Bytes of the echo of the client's ephemeral key in a challenge.
pub const ECHO_BYTES: usize = 8;
/// Bytes of a native request.
pub const REQUEST_BYTES: usize = 128;
/// Bytes of a native challenge.
pub const CHALLENGE_BYTES: usize = 1 + ECHO_BYTES + COOKIE_BYTES;
/// Bytes of a native response.
pub const RESPONSE_BYTES: usize = 128;
/// Bytes of a native accept.
pub const ACCEPT_BYTES: usize = 1 + 2 * PUBLIC_KEY_BYTES + 8 + MAC_BYTES;
/// How long a cookie is good for, in seconds of the server's Unix clock.
pub const COOKIE_LIFETIME_SECONDS: u64 = 30;
/// A client that has sent responses for this long without an accept asks for a new cookie
/// (half the cookie's lifetime: its own clock and the server's need not agree on the start).
pub const COOKIE_REFRESH: Duration = Duration::from_secs(COOKIE_LIFETIME_SECONDS / 2);

/// Where the header of a request or response ends (prefix, version, protocol id, `e_c`).
const HEADER_BYTES: usize = 1 + NATIVE_VERSION_INFO.len() + 8 + PUBLIC_KEY_BYTES;
const TRANSCRIPT_LABEL: &[u8] = b"sturnus native NK 1";
const KEYS_INFO: &[u8] = b"sturnus native keys";
const COOKIE_LABEL: &[u8] = b"sturnus cookie";
/// The first four bytes of a cookie's nonce; a packet's or challenge token's nonce starts with
/// four zero bytes, so the challenge key never sees a nonce twice.
const COOKIE_NONCE_PREFIX: &[u8; 4] = b"cook";

const _: () = assert!(CHALLENGE_BYTES == 41 && ACCEPT_BYTES == 89);
const _: () = assert!(CHALLENGE_BYTES < REQUEST_BYTES && ACCEPT_BYTES < RESPONSE_BYTES);
const _: () = assert!(HEADER_BYTES + COOKIE_BYTES <= RESPONSE_BYTES);

/// A server's native profile: its static X25519 secret and the timeout of native
/// connections. The secret is zeroised when dropped.
#[derive(Clone)]
pub struct NativeConfig {
    secret: Key,
    /// The server drops a native connection silent this long (a native client has a timeout
    /// of its own, given to [`Client::native`](crate::client::Client::native)).
    pub timeout: Duration,
}

impl std::fmt::Debug for NativeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeConfig")
            .field("public_key", &self.public_key())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Drop for NativeConfig {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

impl NativeConfig {
    /// A new static key from the operating system's generator.
    ///
    /// Errors: [`NetcodeError::Random`] if the generator fails.
    pub fn generate(timeout: Duration) -> Result<Self, NetcodeError> {
        Ok(Self { secret: crate::random_key()?, timeout })
    }

    /// The profile with a static secret kept from before (so that clients that pinned its
    /// public key still connect). Any 32 bytes are a valid X25519 secret.
    pub fn from_secret(secret: Key, timeout: Duration) -> Self {
        Self { secret, timeout }
    }

    /// The static secret, to keep (secretly) for the next start.
    pub fn secret(&self) -> &Key {
        &self.secret
    }

    /// The static public key: what clients pin.
    pub fn public_key(&self) -> PublicKey {
        x25519_dalek::PublicKey::from(&StaticSecret::from(self.secret)).to_bytes()
    }

    pub(crate) fn static_secret(&self) -> StaticSecret {
        StaticSecret::from(self.secret)
    }
}

/// An X25519 secret from the operating system's generator, and its public key.
pub(crate) fn ephemeral() -> Result<(StaticSecret, PublicKey), NetcodeError> {
    let mut bytes = Zeroizing::new([0; KEY_BYTES]);
    getrandom::fill(&mut bytes[..]).map_err(|_| NetcodeError::Random)?;
    let secret = StaticSecret::from(*bytes);
    let public = x25519_dalek::PublicKey::from(&secret).to_bytes();
    Ok((secret, public))
}

/// The three keys of a native connection, zeroised when dropped.
pub(crate) struct Keys {
    pub(crate) client_to_server: Key,
    pub(crate) server_to_client: Key,
    confirm: Key,
    transcript: [u8; 32],
}

impl Drop for Keys {
    fn drop(&mut self) {
        self.client_to_server.zeroize();
        self.server_to_client.zeroize();
        self.confirm.zeroize();
    }
}

impl Keys {
    /// The keys from the two Diffie-Hellman results: `ephemeral` is `X25519(e_s, e_c)`,
    /// `static_dh` is `X25519(s, e_c)` (each computed by its side with its own secrets).
    ///
    /// Errors: [`NetcodeError::WeakKey`] if either result is all zeros (a low-order public key).
    pub(crate) fn derive(
        protocol_id: u64,
        client_ephemeral: &PublicKey,
        server_ephemeral: &PublicKey,
        server_static: &PublicKey,
        ephemeral_dh: &x25519_dalek::SharedSecret,
        static_dh: &x25519_dalek::SharedSecret,
    ) -> Result<Self, NetcodeError> {
        if !ephemeral_dh.was_contributory() || !static_dh.was_contributory() {
            return Err(NetcodeError::WeakKey);
        }
        let transcript: [u8; 32] = Sha256::new()
            .chain_update(TRANSCRIPT_LABEL)
            .chain_update(protocol_id.to_le_bytes())
            .chain_update(client_ephemeral)
            .chain_update(server_ephemeral)
            .chain_update(server_static)
            .finalize()
            .into();
        let mut ikm = Zeroizing::new([0; 64]);
        ikm[..32].copy_from_slice(ephemeral_dh.as_bytes());
        ikm[32..].copy_from_slice(static_dh.as_bytes());
        let mut okm = Zeroizing::new([0; 3 * KEY_BYTES]);
        Hkdf::<Sha256>::new(Some(&transcript), &ikm[..])
            .expand(KEYS_INFO, &mut okm[..])
            .map_err(|_| NetcodeError::Malformed("HKDF output length"))?;
        let mut keys = Self {
            client_to_server: [0; KEY_BYTES],
            server_to_client: [0; KEY_BYTES],
            confirm: [0; KEY_BYTES],
            transcript,
        };
        keys.client_to_server.copy_from_slice(&okm[..32]);
        keys.server_to_client.copy_from_slice(&okm[32..64]);
        keys.confirm.copy_from_slice(&okm[64..]);
        Ok(keys)
    }

    /// The accept packet the server sends.
    pub(crate) fn write_accept(
        &self,
        server_ephemeral: &PublicKey,
        server_static: &PublicKey,
        client_index: u32,
        max_clients: u32,
    ) -> Result<[u8; ACCEPT_BYTES], NetcodeError> {
        let mut out = [0; ACCEPT_BYTES];
        out[0] = ACCEPT_TYPE;
        out[1..33].copy_from_slice(server_ephemeral);
        out[33..65].copy_from_slice(server_static);
        let (body, tag) = out[65..].split_at_mut(8);
        body[..4].copy_from_slice(&client_index.to_le_bytes());
        body[4..].copy_from_slice(&max_clients.to_le_bytes());
        let computed = ChaCha20Poly1305::new((&self.confirm).into())
            .encrypt_in_place_detached(&[0; 12].into(), &self.transcript, body)
            .map_err(|_| NetcodeError::Decrypt)?;
        tag.copy_from_slice(&computed);
        Ok(out)
    }

    /// Opens the sealed part of an accept (the client's check): the client index and the
    /// server's capacity.
    ///
    /// Errors: [`NetcodeError::Decrypt`] for a forged or garbled accept.
    pub(crate) fn open_accept(
        &self,
        accept: &[u8; ACCEPT_BYTES],
    ) -> Result<(u32, u32), NetcodeError> {
        let mut body = [0; 8];
        body.copy_from_slice(&accept[65..73]);
        let tag = Tag::clone_from_slice(&accept[73..]);
        ChaCha20Poly1305::new((&self.confirm).into())
            .decrypt_in_place_detached(&[0; 12].into(), &self.transcript, &mut body, &tag)
            .map_err(|_| NetcodeError::Decrypt)?;
        let [a, b, c, d, e, f, g, h] = body;
        Ok((u32::from_le_bytes([a, b, c, d]), u32::from_le_bytes([e, f, g, h])))
    }
}

/// The parts of an accept in the clear: `e_s` and `S`.
pub(crate) fn read_accept(
    bytes: &[u8],
) -> Result<(&[u8; ACCEPT_BYTES], PublicKey, PublicKey), NetcodeError> {
    let accept: &[u8; ACCEPT_BYTES] =
        bytes.try_into().map_err(|_| NetcodeError::Malformed("a native accept is 89 bytes"))?;
    if accept[0] != ACCEPT_TYPE {
        return Err(NetcodeError::PacketType(accept[0]));
    }
    let mut server_ephemeral = [0; PUBLIC_KEY_BYTES];
    server_ephemeral.copy_from_slice(&accept[1..33]);
    let mut server_static = [0; PUBLIC_KEY_BYTES];
    server_static.copy_from_slice(&accept[33..65]);
    Ok((accept, server_ephemeral, server_static))
}

/// A request for `protocol_id` from the client whose ephemeral public key is `client_ephemeral`.
pub(crate) fn write_request(protocol_id: u64, client_ephemeral: &PublicKey) -> [u8; REQUEST_BYTES] {
    let mut out = [0; REQUEST_BYTES];
    write_header(&mut out, REQUEST_TYPE, protocol_id, client_ephemeral);
    out
}

/// The client's ephemeral key from a request: exactly 128 bytes, the version string, this
/// protocol id, zero padding.
pub(crate) fn read_request(bytes: &[u8], protocol_id: u64) -> Result<PublicKey, NetcodeError> {
    if bytes.len() != REQUEST_BYTES {
        return Err(NetcodeError::Malformed("a native request is 128 bytes"));
    }
    let client_ephemeral = read_header(bytes, REQUEST_TYPE, protocol_id)?;
    if bytes[HEADER_BYTES..].iter().any(|&b| b != 0) {
        return Err(NetcodeError::Malformed("a native request's padding is zeros"));
    }
    Ok(client_ephemeral)
}

/// A response carrying `cookie` back.
pub(crate) fn write_response(
    protocol_id: u64,
    client_ephemeral: &PublicKey,
    cookie: &[u8; COOKIE_BYTES],
) -> [u8; RESPONSE_BYTES] {
    let mut out = [0; RESPONSE_BYTES];
    write_header(&mut out, RESPONSE_TYPE, protocol_id, client_ephemeral);
    out[HEADER_BYTES..HEADER_BYTES + COOKIE_BYTES].copy_from_slice(cookie);
    out
}

/// The client's ephemeral key and the cookie from a response: exactly 128 bytes, the version
/// string, this protocol id, zero padding.
pub(crate) fn read_response(
    bytes: &[u8],
    protocol_id: u64,
) -> Result<(PublicKey, [u8; COOKIE_BYTES]), NetcodeError> {
    if bytes.len() != RESPONSE_BYTES {
        return Err(NetcodeError::Malformed("a native response is 128 bytes"));
    }
    let client_ephemeral = read_header(bytes, RESPONSE_TYPE, protocol_id)?;
    if bytes[HEADER_BYTES + COOKIE_BYTES..].iter().any(|&b| b != 0) {
        return Err(NetcodeError::Malformed("a native response's padding is zeros"));
    }
    let mut cookie = [0; COOKIE_BYTES];
    cookie.copy_from_slice(&bytes[HEADER_BYTES..HEADER_BYTES + COOKIE_BYTES]);
    Ok((client_ephemeral, cookie))
}

fn write_header(out: &mut [u8], packet_type: u8, protocol_id: u64, client_ephemeral: &PublicKey) {
    out[0] = packet_type;
    out[1..14].copy_from_slice(NATIVE_VERSION_INFO);
    out[14..22].copy_from_slice(&protocol_id.to_le_bytes());
    out[22..HEADER_BYTES].copy_from_slice(client_ephemeral);
}

fn read_header(bytes: &[u8], packet_type: u8, protocol_id: u64) -> Result<PublicKey, NetcodeError> {
    if bytes[0] != packet_type {
        return Err(NetcodeError::PacketType(bytes[0]));
    }
    if bytes[1..14] != NATIVE_VERSION_INFO[..] {
        return Err(NetcodeError::Version);
    }
    let mut own = [0; 8];
    own.copy_from_slice(&bytes[14..22]);
    let own = u64::from_le_bytes(own);
    if own != protocol_id {
        return Err(NetcodeError::ProtocolId(own));
    }
    let mut client_ephemeral = [0; PUBLIC_KEY_BYTES];
    client_ephemeral.copy_from_slice(&bytes[22..HEADER_BYTES]);
    Ok(client_ephemeral)
}

/// The challenge answering the client whose key is `client_ephemeral`.
pub(crate) fn write_challenge(
    client_ephemeral: &PublicKey,
    cookie: &[u8; COOKIE_BYTES],
) -> [u8; CHALLENGE_BYTES] {
    let mut out = [0; CHALLENGE_BYTES];
    out[0] = CHALLENGE_TYPE;
    out[1..1 + ECHO_BYTES].copy_from_slice(&client_ephemeral[..ECHO_BYTES]);
    out[1 + ECHO_BYTES..].copy_from_slice(cookie);
    out
}

/// The cookie from a challenge to the client whose key is `client_ephemeral`.
///
/// Errors: [`NetcodeError::Malformed`] for the wrong size or an echo of another key.
pub(crate) fn read_challenge(
    bytes: &[u8],
    client_ephemeral: &PublicKey,
) -> Result<[u8; COOKIE_BYTES], NetcodeError> {
    if bytes.len() != CHALLENGE_BYTES || bytes[0] != CHALLENGE_TYPE {
        return Err(NetcodeError::Malformed("a native challenge is 41 bytes"));
    }
    if bytes[1..1 + ECHO_BYTES] != client_ephemeral[..ECHO_BYTES] {
        return Err(NetcodeError::Malformed("a native challenge for another request"));
    }
    let mut cookie = [0; COOKIE_BYTES];
    cookie.copy_from_slice(&bytes[1 + ECHO_BYTES..]);
    Ok(cookie)
}

/// A cookie: the expiry and sequence, and a tag under the server's challenge key over them,
/// the protocol id, the client's ephemeral key and its address.
pub(crate) fn make_cookie(
    challenge_key: &Key,
    sequence: u64,
    expire: u64,
    protocol_id: u64,
    client_ephemeral: &PublicKey,
    address: SocketAddr,
) -> Result<[u8; COOKIE_BYTES], NetcodeError> {
    let mut cookie = [0; COOKIE_BYTES];
    cookie[..8].copy_from_slice(&expire.to_le_bytes());
    cookie[8..16].copy_from_slice(&sequence.to_le_bytes());
    let (ad, len) = cookie_associated_data(protocol_id, expire, client_ephemeral, address);
    let tag = ChaCha20Poly1305::new(challenge_key.into())
        .encrypt_in_place_detached(&cookie_nonce(sequence).into(), &ad[..len], &mut [])
        .map_err(|_| NetcodeError::Decrypt)?;
    cookie[16..].copy_from_slice(&tag);
    Ok(cookie)
}

/// Checks a cookie returned from `address` with `client_ephemeral` at `now_unix_seconds`.
///
/// Errors: [`NetcodeError::Decrypt`] if its tag does not check (another address, another key,
/// forged), [`NetcodeError::CookieExpired`] if its expiry has passed.
pub(crate) fn check_cookie(
    challenge_key: &Key,
    cookie: &[u8; COOKIE_BYTES],
    protocol_id: u64,
    client_ephemeral: &PublicKey,
    address: SocketAddr,
    now_unix_seconds: u64,
) -> Result<(), NetcodeError> {
    let mut expire = [0; 8];
    expire.copy_from_slice(&cookie[..8]);
    let expire = u64::from_le_bytes(expire);
    let mut sequence = [0; 8];
    sequence.copy_from_slice(&cookie[8..16]);
    let sequence = u64::from_le_bytes(sequence);
    let (ad, len) = cookie_associated_data(protocol_id, expire, client_ephemeral, address);
    ChaCha20Poly1305::new(challenge_key.into())
        .decrypt_in_place_detached(
            &cookie_nonce(sequence).into(),
            &ad[..len],
            &mut [],
            Tag::from_slice(&cookie[16..]),
        )
        .map_err(|_| NetcodeError::Decrypt)?;
    if expire <= now_unix_seconds {
        return Err(NetcodeError::CookieExpired(expire));
    }
    Ok(())
}

fn cookie_nonce(sequence: u64) -> [u8; 12] {
    let mut nonce = [0; 12];
    nonce[..4].copy_from_slice(COOKIE_NONCE_PREFIX);
    nonce[4..].copy_from_slice(&sequence.to_le_bytes());
    nonce
}

/// The most bytes of a cookie's associated data: label, protocol id, expiry, `e_c`, and an
/// IPv6 address (family, 16 bytes, port).
const COOKIE_AD_MAX: usize = COOKIE_LABEL.len() + 8 + 8 + PUBLIC_KEY_BYTES + 1 + 16 + 2;

/// The cookie's associated data (without allocating): the buffer and how much of it is used.
fn cookie_associated_data(
    protocol_id: u64,
    expire: u64,
    client_ephemeral: &PublicKey,
    address: SocketAddr,
) -> ([u8; COOKIE_AD_MAX], usize) {
    let mut ad = [0; COOKIE_AD_MAX];
    let mut at = 0;
    let mut put = |field: &[u8]| {
        ad[at..at + field.len()].copy_from_slice(field);
        at += field.len();
    };
    put(COOKIE_LABEL);
    put(&protocol_id.to_le_bytes());
    put(&expire.to_le_bytes());
    put(client_ephemeral);
    match address {
        SocketAddr::V4(v4) => {
            put(&[4]);
            put(&v4.ip().octets());
        }
        SocketAddr::V6(v6) => {
            put(&[6]);
            put(&v6.ip().octets());
        }
    }
    put(&address.port().to_le_bytes());
    (ad, at)
}
