//! # sturnus-netcode
//!
//! netcode 1.02 (Glenn Fiedler's standard for secure game connections), byte-exact, sans-IO:
//!
//! - [`token`]: connect tokens — the 2048-byte public token a game's web backend mints and
//!   hands the client over HTTPS, its 1024-byte private part sealed with XChaCha20-Poly1305
//!   under the key the backend shares with the servers, and the challenge token a server
//!   seals under a key of its own during the handshake.
//! - [`packet`]: the seven packet types (request, denied, challenge, response, keep-alive,
//!   payload, disconnect), sealed with ChaCha20-Poly1305, read in the standard's normative
//!   order.
//! - [`replay`]: the replay window that drops packets already received or too old.
//! - [`server`] and [`client`]: the endpoints, sans-IO (datagrams and time in, datagrams and
//!   events out): the handshake, keep-alives, timeouts, payloads and disconnects.
//! - [`native`]: the native secure profile, for play without a web backend (LAN,
//!   peer-to-peer, a player hosting): an X25519 key exchange after a stateless cookie, then
//!   the same connection as a token's; the server's static key may be pinned.
//!
//! Every integer on the wire is little-endian. Keys, nonces and tokens come from the
//! operating system's generator ([`random_key`]); keys are zeroised when dropped. The formats
//! are checked byte for byte against the reference C implementation's golden vectors, and
//! tokens against the standard's Rust port (`netcode-official`) in both directions.
//!
//! # Issuing tokens from a game's backend
//!
//! The backend (a web service, a matchmaker) holds the private key it shares with the game's
//! servers. When a player logs in, it mints a token for the servers the player may join and
//! returns its 2048 bytes over HTTPS; the client connects with them. Time is an input: the
//! backend passes its clock.
//!
//! ```
//! use sturnus_netcode::token::TokenSpec;
//! use sturnus_netcode::{ConnectToken, PrivateConnectToken, random_key};
//!
//! // Once, shared with every server (from the OS generator; keep it secret).
//! let private_key = random_key()?;
//! # let now_unix_seconds = 1_720_000_000;
//! let spec = TokenSpec {
//!     protocol_id: 0x5354_5552_4e55_5331, // the game's: servers accept only theirs
//!     client_id: 42,                      // the account's id
//!     server_addresses: vec!["203.0.113.7:7777".parse().unwrap()],
//!     expire_seconds: 30,  // the token starts a connection within 30 s
//!     timeout_seconds: 10, // a connection silent for 10 s is dropped
//!     user_data: [0; 256], // what the server should know: a team, a rank…
//! };
//! let token = ConnectToken::generate(&spec, &private_key, now_unix_seconds)?;
//! let bytes = token.write()?; // 2048 bytes for the client, over HTTPS
//!
//! // A server with the same key opens the private part the client sends it.
//! let token = ConnectToken::read(&bytes[..])?;
//! let private = PrivateConnectToken::open(
//!     &token.private_data,
//!     spec.protocol_id,
//!     token.expire_timestamp,
//!     &token.nonce,
//!     &private_key,
//! )?;
//! assert_eq!(private.client_id, 42);
//! # Ok::<(), sturnus_netcode::NetcodeError>(())
//! ```
//!
//! The [`server::Server`] and [`client::Client`] endpoints run the standard's handshake,
//! keep-alives, timeouts and disconnects over these formats; they connect to
//! `netcode-official`'s client and server (live over UDP) and to `renetcode`'s (in memory) in
//! both roles (the crate's `tests/endpoints.rs`).
//!
//! [`transport`] is the transport mode: Sturnus's own packets (header, acknowledgements, the
//! eleven QoS kinds of channel) inside netcode payload packets, as a `Transport` the message
//! layer and the `NetworkManager` run over.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod native;
pub mod packet;
pub mod replay;
pub mod server;
pub mod token;
pub mod transport;

mod error;

pub use error::NetcodeError;
pub use token::{ChallengeToken, ConnectToken, PrivateConnectToken};

/// The protocol's version string, with its terminating zero: 13 bytes in tokens, packets and
/// associated data.
pub const VERSION_INFO: &[u8; 13] = b"NETCODE 1.02\0";
/// Bytes of a key (ChaCha20-Poly1305 and XChaCha20-Poly1305 both use 256-bit keys).
pub const KEY_BYTES: usize = 32;
/// Bytes of an authentication tag (Poly1305).
pub const MAC_BYTES: usize = 16;
/// Bytes of the user data a token carries to the server (the game's login: an account id,
/// a team, …).
pub const USER_DATA_BYTES: usize = 256;
/// The most server addresses a connect token holds.
pub const MAX_SERVERS_PER_CONNECT: usize = 32;
/// The largest payload a payload packet carries.
pub const MAX_PAYLOAD_BYTES: usize = 1200;
/// The largest packet on the wire.
pub const MAX_PACKET_BYTES: usize = 1300;

/// A 256-bit key.
pub type Key = [u8; KEY_BYTES];
/// The user data of a token.
pub type UserData = [u8; USER_DATA_BYTES];

/// The byte buffers an endpoint hands out — datagrams to send, payloads received — and takes
/// back through its `recycle`, so a driver that gives them back allocates nothing once warm.
#[derive(Debug, Default)]
pub(crate) struct Buffers {
    spare: Vec<Vec<u8>>,
}

impl Buffers {
    /// At most this many spares are kept (what a burst needs; more is memory held for nothing).
    const MAX_SPARE: usize = 256;

    fn take(&mut self) -> Vec<u8> {
        let mut buffer = self.spare.pop().unwrap_or_default();
        buffer.clear();
        buffer
    }

    /// `bytes`, in a spare buffer.
    pub(crate) fn copy_of(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut buffer = self.take();
        buffer.extend_from_slice(bytes);
        buffer
    }

    /// `packet` written and sealed into a spare buffer of the datagram's length.
    pub(crate) fn sealed(
        &mut self,
        packet: &packet::Packet<'_>,
        sequence: u64,
        protocol_id: u64,
        key: &Key,
    ) -> Option<Vec<u8>> {
        let mut out = self.take();
        out.resize(MAX_PACKET_BYTES, 0);
        match packet::write(packet, sequence, protocol_id, key, &mut out) {
            Ok(len) => {
                out.truncate(len);
                Some(out)
            }
            Err(_) => {
                self.recycle(out);
                None
            }
        }
    }

    /// Keeps `buffer` for reuse (unless enough are kept already, or it is not one of ours
    /// by its size).
    pub(crate) fn recycle(&mut self, buffer: Vec<u8>) {
        if self.spare.len() < Self::MAX_SPARE && buffer.capacity() <= 2 * MAX_PACKET_BYTES {
            self.spare.push(buffer);
        }
    }
}

/// Bytes of a [`SessionBinding`].
pub const SESSION_BINDING_BYTES: usize = 16;

/// A value only the two ends of one connection know, derived from its two keys (a "channel
/// binding"): layers above that need a shared secret of their own for the connection (the
/// transport mode numbers and tags its packets with it) take it from here, so they agree
/// without a message of their own, and an eavesdropper learns nothing of it.
pub type SessionBinding = [u8; SESSION_BINDING_BYTES];

/// The [`SessionBinding`] of the connection with these keys: the first 8 bytes of ChaCha20's
/// keystream under each key, with a nonce of its own (`"sturnus-bind"`) that no packet uses
/// (packet nonces start with four zero bytes).
pub(crate) fn session_binding(
    client_to_server_key: &Key,
    server_to_client_key: &Key,
) -> SessionBinding {
    use chacha20poly1305::aead::{AeadInPlace, KeyInit};
    use chacha20poly1305::{ChaCha20Poly1305, Nonce};
    let nonce = Nonce::from_slice(b"sturnus-bind");
    let mut binding = [0; SESSION_BINDING_BYTES];
    for (half, key) in binding.chunks_exact_mut(8).zip([client_to_server_key, server_to_client_key])
    {
        // Encrypting zeros yields the keystream; the tag is not needed.
        let _ = ChaCha20Poly1305::new(key.into()).encrypt_in_place_detached(nonce, b"", half);
    }
    binding
}

/// A new random key from the operating system's generator (for a server's private key, a
/// token's per-connection keys, a server's challenge key).
pub fn random_key() -> Result<Key, NetcodeError> {
    let mut key = [0; KEY_BYTES];
    getrandom::fill(&mut key).map_err(|_| NetcodeError::Random)?;
    Ok(key)
}
