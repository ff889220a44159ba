//! Connect tokens and challenge tokens, byte-exact with netcode 1.02.
//!
//! A game's web backend mints a [`ConnectToken`] for a client that logged in ([`TokenSpec`]
//! says for whom, for which servers, for how long) and hands it over HTTPS. The client sends
//! the token's sealed private part to a server in its connection request; only servers that
//! share the backend's private key can open it ([`PrivateConnectToken::open`]), and inside are
//! the keys both sides will encrypt packets with and the user data the game attached.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Tag, XChaCha20Poly1305};
use zeroize::Zeroize;

use crate::{
    KEY_BYTES, Key, MAC_BYTES, MAX_SERVERS_PER_CONNECT, NetcodeError, USER_DATA_BYTES, UserData,
    VERSION_INFO,
};

/// Bytes of a public connect token.
pub const CONNECT_TOKEN_BYTES: usize = 2048;
/// Bytes of a token's private part, sealed or not.
pub const CONNECT_TOKEN_PRIVATE_BYTES: usize = 1024;
/// Bytes of the nonce a private part is sealed with (XChaCha20's).
pub const CONNECT_TOKEN_NONCE_BYTES: usize = 24;
/// Bytes of a challenge token, sealed or not.
pub const CHALLENGE_TOKEN_BYTES: usize = 300;

const ADDRESS_IPV4: u8 = 1;
const ADDRESS_IPV6: u8 = 2;

/// What a backend mints a token for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpec {
    /// The game's protocol id: servers accept only tokens minted for theirs.
    pub protocol_id: u64,
    /// The player's id, unique among the players of a server.
    pub client_id: u64,
    /// The servers the client may connect to, in the order it tries them (1 to 32).
    pub server_addresses: Vec<SocketAddr>,
    /// How long after minting the token may start a connection (seconds; negative: never
    /// expires, for development).
    pub expire_seconds: i32,
    /// How long a connection made with it may go without a packet before it is dropped
    /// (seconds; negative: never, for development).
    pub timeout_seconds: i32,
    /// Whatever the game wants the server to know of the player, sealed with the keys.
    pub user_data: UserData,
}

/// The part of a token only servers can read: sealed under the private key the backend
/// shares with them. Its keys are zeroised when it is dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateConnectToken {
    /// The player's id.
    pub client_id: u64,
    /// The connection's timeout in seconds (negative: none).
    pub timeout_seconds: i32,
    /// The servers the token is good for, as those servers know their own addresses.
    pub server_addresses: Vec<SocketAddr>,
    /// The key the client seals its packets with.
    pub client_to_server_key: Key,
    /// The key the server seals its packets with.
    pub server_to_client_key: Key,
    /// The game's user data.
    pub user_data: UserData,
}

impl std::fmt::Debug for PrivateConnectToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateConnectToken")
            .field("client_id", &self.client_id)
            .field("timeout_seconds", &self.timeout_seconds)
            .field("server_addresses", &self.server_addresses)
            .finish_non_exhaustive()
    }
}

impl Drop for PrivateConnectToken {
    fn drop(&mut self) {
        self.client_to_server_key.zeroize();
        self.server_to_client_key.zeroize();
        self.user_data.zeroize();
    }
}

impl PrivateConnectToken {
    /// Its 1024-byte plaintext, zero-padded (the last 16 bytes are left for the tag).
    pub fn write(&self) -> Result<[u8; CONNECT_TOKEN_PRIVATE_BYTES], NetcodeError> {
        let mut out = [0; CONNECT_TOKEN_PRIVATE_BYTES];
        let mut w = Writer::new(&mut out[..CONNECT_TOKEN_PRIVATE_BYTES - MAC_BYTES]);
        w.u64(self.client_id);
        w.i32(self.timeout_seconds);
        write_addresses(&mut w, &self.server_addresses)?;
        w.bytes(&self.client_to_server_key);
        w.bytes(&self.server_to_client_key);
        w.bytes(&self.user_data);
        w.finish()?;
        Ok(out)
    }

    /// Reads a plaintext written by [`write`](Self::write) (or any netcode 1.02 writer).
    pub fn read(plain: &[u8]) -> Result<Self, NetcodeError> {
        let mut r = Reader::new(plain);
        Ok(Self {
            client_id: r.u64()?,
            timeout_seconds: r.i32()?,
            server_addresses: read_addresses(&mut r)?,
            client_to_server_key: r.array()?,
            server_to_client_key: r.array()?,
            user_data: r.array()?,
        })
    }

    /// Seals it with XChaCha20-Poly1305 under `key`, bound to the protocol id and expiry
    /// (the associated data: version, protocol id, expiry).
    pub fn seal(
        &self,
        protocol_id: u64,
        expire_timestamp: u64,
        nonce: &[u8; CONNECT_TOKEN_NONCE_BYTES],
        key: &Key,
    ) -> Result<[u8; CONNECT_TOKEN_PRIVATE_BYTES], NetcodeError> {
        let mut sealed = self.write()?;
        let ad = private_associated_data(protocol_id, expire_timestamp);
        let (body, tag) = sealed.split_at_mut(CONNECT_TOKEN_PRIVATE_BYTES - MAC_BYTES);
        let cipher = XChaCha20Poly1305::new(key.into());
        let computed = cipher
            .encrypt_in_place_detached(nonce.into(), &ad, body)
            .map_err(|_| NetcodeError::Decrypt)?;
        tag.copy_from_slice(&computed);
        Ok(sealed)
    }

    /// Opens a sealed private part (what a server does with a connection request): a wrong
    /// key, protocol id or expiry, or any tampering, is [`NetcodeError::Decrypt`].
    pub fn open(
        sealed: &[u8; CONNECT_TOKEN_PRIVATE_BYTES],
        protocol_id: u64,
        expire_timestamp: u64,
        nonce: &[u8; CONNECT_TOKEN_NONCE_BYTES],
        key: &Key,
    ) -> Result<Self, NetcodeError> {
        let mut plain = *sealed;
        let ad = private_associated_data(protocol_id, expire_timestamp);
        let (body, tag) = plain.split_at_mut(CONNECT_TOKEN_PRIVATE_BYTES - MAC_BYTES);
        let tag = Tag::clone_from_slice(tag);
        let cipher = XChaCha20Poly1305::new(key.into());
        cipher
            .decrypt_in_place_detached(nonce.into(), &ad, body, &tag)
            .map_err(|_| NetcodeError::Decrypt)?;
        let token = Self::read(body);
        plain.zeroize();
        token
    }
}

/// A connect token as the client holds it: the sealed private part, and in the clear what the
/// client needs — the servers to try, the keys, the timeout. Its keys are zeroised when it is
/// dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectToken {
    /// The game's protocol id.
    pub protocol_id: u64,
    /// When it was minted (seconds since the Unix epoch).
    pub create_timestamp: u64,
    /// When it stops starting connections (seconds since the Unix epoch).
    pub expire_timestamp: u64,
    /// The nonce its private part is sealed with.
    pub nonce: [u8; CONNECT_TOKEN_NONCE_BYTES],
    /// The sealed private part, sent to the server as is.
    pub private_data: Box<[u8; CONNECT_TOKEN_PRIVATE_BYTES]>,
    /// The connection's timeout in seconds (negative: none).
    pub timeout_seconds: i32,
    /// The servers to try, in order.
    pub server_addresses: Vec<SocketAddr>,
    /// The key the client seals its packets with.
    pub client_to_server_key: Key,
    /// The key the server seals its packets with.
    pub server_to_client_key: Key,
}

impl std::fmt::Debug for ConnectToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectToken")
            .field("protocol_id", &self.protocol_id)
            .field("create_timestamp", &self.create_timestamp)
            .field("expire_timestamp", &self.expire_timestamp)
            .field("timeout_seconds", &self.timeout_seconds)
            .field("server_addresses", &self.server_addresses)
            .finish_non_exhaustive()
    }
}

impl Drop for ConnectToken {
    fn drop(&mut self) {
        self.client_to_server_key.zeroize();
        self.server_to_client_key.zeroize();
    }
}

impl ConnectToken {
    /// Mints a token for `spec` at `now_unix_seconds` (time is an input: the backend passes
    /// its clock), sealed under the servers' `private_key`. The per-connection keys and the
    /// nonce come from the operating system's generator.
    pub fn generate(
        spec: &TokenSpec,
        private_key: &Key,
        now_unix_seconds: u64,
    ) -> Result<Self, NetcodeError> {
        let mut nonce = [0; CONNECT_TOKEN_NONCE_BYTES];
        getrandom::fill(&mut nonce).map_err(|_| NetcodeError::Random)?;
        let keys = (crate::random_key()?, crate::random_key()?);
        Self::generate_with(spec, private_key, now_unix_seconds, nonce, keys)
    }

    /// [`generate`](Self::generate) with the nonce and the (client → server, server → client)
    /// keys given: for test vectors only — a token's nonce and keys must be random.
    pub fn generate_with(
        spec: &TokenSpec,
        private_key: &Key,
        now_unix_seconds: u64,
        nonce: [u8; CONNECT_TOKEN_NONCE_BYTES],
        (client_to_server_key, server_to_client_key): (Key, Key),
    ) -> Result<Self, NetcodeError> {
        check_addresses(&spec.server_addresses)?;
        let expire_timestamp = match u64::try_from(spec.expire_seconds) {
            Ok(seconds) => now_unix_seconds.saturating_add(seconds),
            Err(_) => u64::MAX,
        };
        let private = PrivateConnectToken {
            client_id: spec.client_id,
            timeout_seconds: spec.timeout_seconds,
            server_addresses: spec.server_addresses.clone(),
            client_to_server_key,
            server_to_client_key,
            user_data: spec.user_data,
        };
        let sealed = private.seal(spec.protocol_id, expire_timestamp, &nonce, private_key)?;
        Ok(Self {
            protocol_id: spec.protocol_id,
            create_timestamp: now_unix_seconds,
            expire_timestamp,
            nonce,
            private_data: Box::new(sealed),
            timeout_seconds: spec.timeout_seconds,
            server_addresses: spec.server_addresses.clone(),
            client_to_server_key,
            server_to_client_key,
        })
    }

    /// Its 2048 bytes, zero-padded, as the backend hands it to the client.
    pub fn write(&self) -> Result<Box<[u8; CONNECT_TOKEN_BYTES]>, NetcodeError> {
        let mut out = Box::new([0; CONNECT_TOKEN_BYTES]);
        let mut w = Writer::new(&mut out[..]);
        w.bytes(VERSION_INFO);
        w.u64(self.protocol_id);
        w.u64(self.create_timestamp);
        w.u64(self.expire_timestamp);
        w.bytes(&self.nonce);
        w.bytes(&self.private_data[..]);
        w.i32(self.timeout_seconds);
        write_addresses(&mut w, &self.server_addresses)?;
        w.bytes(&self.client_to_server_key);
        w.bytes(&self.server_to_client_key);
        w.finish()?;
        Ok(out)
    }

    /// Reads a token's 2048 bytes (from any netcode 1.02 backend).
    pub fn read(bytes: &[u8]) -> Result<Self, NetcodeError> {
        if bytes.len() != CONNECT_TOKEN_BYTES {
            return Err(NetcodeError::Malformed("a connect token is 2048 bytes"));
        }
        let mut r = Reader::new(bytes);
        if r.array::<13>()? != *VERSION_INFO {
            return Err(NetcodeError::Version);
        }
        Ok(Self {
            protocol_id: r.u64()?,
            create_timestamp: r.u64()?,
            expire_timestamp: r.u64()?,
            nonce: r.array()?,
            private_data: Box::new(r.array()?),
            timeout_seconds: r.i32()?,
            server_addresses: read_addresses(&mut r)?,
            client_to_server_key: r.array()?,
            server_to_client_key: r.array()?,
        })
    }
}

/// What a server seals into its challenge: the client's id and user data, so the response
/// proves the client saw the challenge without the server keeping state for it.
#[derive(Clone, PartialEq, Eq)]
pub struct ChallengeToken {
    /// The player's id.
    pub client_id: u64,
    /// The user data from its connect token.
    pub user_data: UserData,
}

impl std::fmt::Debug for ChallengeToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChallengeToken").field("client_id", &self.client_id).finish_non_exhaustive()
    }
}

impl ChallengeToken {
    /// Seals it with ChaCha20-Poly1305 under the server's challenge `key`; the nonce is the
    /// challenge's sequence number.
    pub fn seal(
        &self,
        sequence: u64,
        key: &Key,
    ) -> Result<[u8; CHALLENGE_TOKEN_BYTES], NetcodeError> {
        let mut out = [0; CHALLENGE_TOKEN_BYTES];
        let mut w = Writer::new(&mut out[..CHALLENGE_TOKEN_BYTES - MAC_BYTES]);
        w.u64(self.client_id);
        w.bytes(&self.user_data);
        w.finish()?;
        let (body, tag) = out.split_at_mut(CHALLENGE_TOKEN_BYTES - MAC_BYTES);
        let computed = ChaCha20Poly1305::new(key.into())
            .encrypt_in_place_detached(&sequence_nonce(sequence).into(), &[], body)
            .map_err(|_| NetcodeError::Decrypt)?;
        tag.copy_from_slice(&computed);
        Ok(out)
    }

    /// Opens a sealed challenge token.
    pub fn open(
        sealed: &[u8; CHALLENGE_TOKEN_BYTES],
        sequence: u64,
        key: &Key,
    ) -> Result<Self, NetcodeError> {
        let mut plain = *sealed;
        let (body, tag) = plain.split_at_mut(CHALLENGE_TOKEN_BYTES - MAC_BYTES);
        let tag = Tag::clone_from_slice(tag);
        ChaCha20Poly1305::new(key.into())
            .decrypt_in_place_detached(&sequence_nonce(sequence).into(), &[], body, &tag)
            .map_err(|_| NetcodeError::Decrypt)?;
        let mut r = Reader::new(body);
        let token = Self { client_id: r.u64()?, user_data: r.array()? };
        plain.zeroize();
        Ok(token)
    }
}

/// The 12-byte ChaCha20-Poly1305 nonce of a sequence number: four zero bytes, then the
/// number, little-endian.
pub(crate) fn sequence_nonce(sequence: u64) -> [u8; 12] {
    let mut nonce = [0; 12];
    nonce[4..].copy_from_slice(&sequence.to_le_bytes());
    nonce
}

fn private_associated_data(protocol_id: u64, expire_timestamp: u64) -> [u8; 29] {
    let mut ad = [0; 29];
    ad[..13].copy_from_slice(VERSION_INFO);
    ad[13..21].copy_from_slice(&protocol_id.to_le_bytes());
    ad[21..].copy_from_slice(&expire_timestamp.to_le_bytes());
    ad
}

fn check_addresses(addresses: &[SocketAddr]) -> Result<(), NetcodeError> {
    if addresses.is_empty() || addresses.len() > MAX_SERVERS_PER_CONNECT {
        return Err(NetcodeError::ServerAddresses);
    }
    Ok(())
}

fn write_addresses(w: &mut Writer<'_>, addresses: &[SocketAddr]) -> Result<(), NetcodeError> {
    check_addresses(addresses)?;
    w.u32(u32::try_from(addresses.len()).map_err(|_| NetcodeError::ServerAddresses)?);
    for address in addresses {
        match address {
            SocketAddr::V4(v4) => {
                w.bytes(&[ADDRESS_IPV4]);
                w.bytes(&v4.ip().octets());
                w.u16(v4.port());
            }
            SocketAddr::V6(v6) => {
                w.bytes(&[ADDRESS_IPV6]);
                for segment in v6.ip().segments() {
                    w.u16(segment);
                }
                w.u16(v6.port());
            }
        }
    }
    Ok(())
}

fn read_addresses(r: &mut Reader<'_>) -> Result<Vec<SocketAddr>, NetcodeError> {
    let count = usize::try_from(r.u32()?).unwrap_or(usize::MAX);
    if count == 0 || count > MAX_SERVERS_PER_CONNECT {
        return Err(NetcodeError::ServerAddresses);
    }
    let mut addresses = Vec::with_capacity(count);
    for _ in 0..count {
        let address = match r.array::<1>()?[0] {
            ADDRESS_IPV4 => {
                let ip = Ipv4Addr::from(r.array::<4>()?);
                SocketAddr::V4(SocketAddrV4::new(ip, r.u16()?))
            }
            ADDRESS_IPV6 => {
                let mut segments = [0; 8];
                for segment in &mut segments {
                    *segment = r.u16()?;
                }
                let ip = Ipv6Addr::from(segments);
                SocketAddr::V6(SocketAddrV6::new(ip, r.u16()?, 0, 0))
            }
            _ => return Err(NetcodeError::Malformed("an address type is 1 (IPv4) or 2 (IPv6)")),
        };
        addresses.push(address);
    }
    Ok(addresses)
}

/// Writes little-endian fields into a fixed buffer; running out of room is an error at
/// [`finish`](Self::finish), never a panic.
pub(crate) struct Writer<'a> {
    out: &'a mut [u8],
    at: usize,
    overflow: bool,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(out: &'a mut [u8]) -> Self {
        Self { out, at: 0, overflow: false }
    }

    pub(crate) fn bytes(&mut self, bytes: &[u8]) {
        match self.out.get_mut(self.at..self.at + bytes.len()) {
            Some(slot) if !self.overflow => {
                slot.copy_from_slice(bytes);
                self.at += bytes.len();
            }
            _ => self.overflow = true,
        }
    }

    pub(crate) fn u16(&mut self, v: u16) {
        self.bytes(&v.to_le_bytes());
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }

    pub(crate) fn i32(&mut self, v: i32) {
        self.bytes(&v.to_le_bytes());
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }

    /// The bytes written, or an error if they did not fit.
    pub(crate) fn finish(self) -> Result<usize, NetcodeError> {
        if self.overflow { Err(NetcodeError::Malformed("does not fit")) } else { Ok(self.at) }
    }
}

/// Reads little-endian fields; running out of input is an error, never a panic.
pub(crate) struct Reader<'a> {
    input: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(input: &'a [u8]) -> Self {
        Self { input }
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], NetcodeError> {
        let (head, rest) =
            self.input.split_first_chunk::<N>().ok_or(NetcodeError::Malformed("too short"))?;
        self.input = rest;
        Ok(*head)
    }

    pub(crate) fn u16(&mut self) -> Result<u16, NetcodeError> {
        self.array().map(u16::from_le_bytes)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, NetcodeError> {
        self.array().map(u32::from_le_bytes)
    }

    pub(crate) fn i32(&mut self) -> Result<i32, NetcodeError> {
        self.array().map(i32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, NetcodeError> {
        self.array().map(u64::from_le_bytes)
    }
}

// The sizes the formats depend on.
const _: () = assert!(KEY_BYTES == 32 && USER_DATA_BYTES == 256);
