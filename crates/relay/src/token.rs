//! Relay allocations: what the matchmaker mints and the relay verifies without a store.
//!
//! The matchmaker (`sturnusd`) and the relay share one [`RelayKey`]. For every participant of a
//! relayed session the matchmaker mints an [`Allocation`]: the relay's address, the session and
//! slot, an expiry, a fresh random **bind key** that only this participant learns, and a
//! **sealed token**: the [`AllocationSpec`] and the bind key sealed with XChaCha20-Poly1305
//! under the relay key. The relay opens the sealed token with its key alone — no store lookup —
//! and learns the bind key from it, so it can check that a `BIND` was made by the holder of the
//! allocation (see [`crate::wire`]).
//!
//! The sealed token is [`SEALED_LEN`] bytes:
//!
//! ```text
//! nonce (24) | ciphertext of the plaintext below (54) | Poly1305 tag (16)
//! plaintext: session u32 | slot u16 | expires_unix u64 | packets_per_sec u32 |
//!            bytes_per_sec u32 | bind_key [32]          (all integers little-endian)
//! associated data: "sturnus-relay-token-v1"
//! ```
//!
//! [`Allocation::to_bytes`] is the compact form a matchmaker hands a game (base64 inside its
//! JSON); [`Allocation::from_bytes`] reads it back.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305};
use zeroize::{Zeroize, Zeroizing};

use crate::RelayError;

/// Bytes of a relay key and of a bind key.
pub const KEY_LEN: usize = 32;
/// Bytes of an XChaCha20 nonce.
const NONCE_LEN: usize = 24;
/// Bytes of a Poly1305 tag.
const TAG_LEN: usize = 16;
/// Bytes of the sealed plaintext.
const PLAIN_LEN: usize = 4 + 2 + 8 + 4 + 4 + KEY_LEN;
/// Bytes of a sealed allocation token.
pub const SEALED_LEN: usize = NONCE_LEN + PLAIN_LEN + TAG_LEN;
/// The associated data every sealed token is bound to (its format and version).
const TOKEN_AAD: &[u8] = b"sturnus-relay-token-v1";
/// The first byte of [`Allocation::to_bytes`]: the encoding's version.
const ALLOCATION_VERSION: u8 = 1;

/// The slot of the match host in every session; clients have slots `1..=u16::MAX - 1`.
pub const HOST_SLOT: u16 = 0;

/// The secret shared by the matchmaker and the relay nodes, and nobody else. Zeroised on drop;
/// `Debug` does not show it.
#[derive(Clone)]
pub struct RelayKey([u8; KEY_LEN]);

impl RelayKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<Self, RelayError> {
        let mut key = [0; KEY_LEN];
        getrandom::fill(&mut key).map_err(|_| RelayError::Random)?;
        Ok(Self(key))
    }

    /// A key from its bytes (a configuration file or a secret store).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The key's bytes, to store or hand to another node.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl Drop for RelayKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for RelayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RelayKey(..)")
    }
}

/// What an allocation grants: one slot of one session until a time, at a rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AllocationSpec {
    /// The relayed session (the match); chosen by the matchmaker, unique on a relay.
    pub session: u32,
    /// The participant's slot: [`HOST_SLOT`] (0) for the match host, `1..=u16::MAX - 1` for
    /// clients.
    pub slot: u16,
    /// Unix time (seconds) after which the token can no longer be bound. A binding made
    /// before lives on while traffic flows (as Unity Relay's allocations do).
    pub expires_unix: u64,
    /// The most datagrams per second the participant may send through the relay (a
    /// one-second burst is allowed); 0 means no limit.
    pub packets_per_sec: u32,
    /// The most bytes per second (relay header included), with a one-second burst; 0 means
    /// no limit.
    pub bytes_per_sec: u32,
}

impl AllocationSpec {
    fn encode(&self, bind_key: &[u8; KEY_LEN], out: &mut [u8; PLAIN_LEN]) {
        out[0..4].copy_from_slice(&self.session.to_le_bytes());
        out[4..6].copy_from_slice(&self.slot.to_le_bytes());
        out[6..14].copy_from_slice(&self.expires_unix.to_le_bytes());
        out[14..18].copy_from_slice(&self.packets_per_sec.to_le_bytes());
        out[18..22].copy_from_slice(&self.bytes_per_sec.to_le_bytes());
        out[22..54].copy_from_slice(bind_key);
    }

    fn decode(plain: &[u8; PLAIN_LEN]) -> (Self, [u8; KEY_LEN]) {
        let mut bind_key = [0; KEY_LEN];
        bind_key.copy_from_slice(&plain[22..54]);
        let spec = Self {
            session: u32::from_le_bytes(word(&plain[0..4])),
            slot: u16::from_le_bytes(word(&plain[4..6])),
            expires_unix: u64::from_le_bytes(word(&plain[6..14])),
            packets_per_sec: u32::from_le_bytes(word(&plain[14..18])),
            bytes_per_sec: u32::from_le_bytes(word(&plain[18..22])),
        };
        (spec, bind_key)
    }
}

/// Copies a slice of the right length into an array (callers slice exactly).
fn word<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(bytes);
    out
}

/// Seals `spec` and `bind_key` under `key` into `out` (a nonce from the OS).
fn seal(
    spec: &AllocationSpec,
    bind_key: &[u8; KEY_LEN],
    key: &RelayKey,
) -> Result<[u8; SEALED_LEN], RelayError> {
    let mut out = [0; SEALED_LEN];
    let (nonce, rest) = out.split_at_mut(NONCE_LEN);
    getrandom::fill(nonce).map_err(|_| RelayError::Random)?;
    let (body, tag_out) = rest.split_at_mut(PLAIN_LEN);
    let mut plain = Zeroizing::new([0; PLAIN_LEN]);
    spec.encode(bind_key, &mut plain);
    body.copy_from_slice(&plain[..]);
    let tag = XChaCha20Poly1305::new((&key.0).into())
        .encrypt_in_place_detached((&*nonce).into(), TOKEN_AAD, body)
        .map_err(|_| RelayError::Seal)?;
    tag_out.copy_from_slice(&tag);
    Ok(out)
}

/// Opens a sealed token with the relay key: the spec and the bind key, or `None` when it was
/// not sealed under this key (forged, altered, or for another relay).
pub(crate) fn open(
    sealed: &[u8; SEALED_LEN],
    key: &RelayKey,
) -> Option<(AllocationSpec, Zeroizing<[u8; KEY_LEN]>)> {
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (body, tag) = rest.split_at(PLAIN_LEN);
    let mut plain = Zeroizing::new([0; PLAIN_LEN]);
    plain.copy_from_slice(body);
    XChaCha20Poly1305::new((&key.0).into())
        .decrypt_in_place_detached(nonce.into(), TOKEN_AAD, &mut plain[..], Tag::from_slice(tag))
        .ok()?;
    let (spec, bind_key) = AllocationSpec::decode(&plain);
    Some((spec, Zeroizing::new(bind_key)))
}

/// One participant's allocation on a relay: where the relay is, which session and slot, the
/// bind key the participant proves itself with, and the sealed token it presents.
///
/// Minted by the matchmaker ([`Allocation::mint`]), carried to the game as
/// [`to_bytes`](Self::to_bytes), used there by
/// [`RelaySocket`](crate::RelaySocket). The bind key is zeroised on drop and hidden from
/// `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Allocation {
    /// The relay's public address.
    pub relay: SocketAddr,
    /// The session (match).
    pub session: u32,
    /// This participant's slot ([`HOST_SLOT`] for the host).
    pub slot: u16,
    /// Unix time after which the token can no longer be bound.
    pub expires_unix: u64,
    /// The key that authenticates this participant's `BIND`s (also inside `sealed`).
    pub bind_key: [u8; KEY_LEN],
    /// The sealed token, opaque to the game.
    pub sealed: [u8; SEALED_LEN],
}

impl Allocation {
    /// Mints an allocation for `spec` on the relay at `relay`: a fresh bind key, sealed with
    /// `spec` under `key`. Refuses a spec already expired at `now_unix` and a client slot of
    /// `u16::MAX` (reserved).
    pub fn mint(
        spec: &AllocationSpec,
        key: &RelayKey,
        relay: SocketAddr,
        now_unix: u64,
    ) -> Result<Self, RelayError> {
        if spec.expires_unix <= now_unix {
            return Err(RelayError::InvalidSpec("expires_unix is not in the future"));
        }
        if spec.slot == u16::MAX {
            return Err(RelayError::InvalidSpec("slot 65535 is reserved"));
        }
        let mut bind_key = [0; KEY_LEN];
        getrandom::fill(&mut bind_key).map_err(|_| RelayError::Random)?;
        let sealed = seal(spec, &bind_key, key)?;
        Ok(Self {
            relay,
            session: spec.session,
            slot: spec.slot,
            expires_unix: spec.expires_unix,
            bind_key,
            sealed,
        })
    }

    /// Whether this is the match host's allocation (slot 0).
    pub fn is_host(&self) -> bool {
        self.slot == HOST_SLOT
    }

    /// The compact binary form (the matchmaker puts it, base64-encoded, in its JSON):
    ///
    /// ```text
    /// version (1) = 1 | family (1): 4 or 6 | ip (4 or 16) | port u16 | session u32 |
    /// slot u16 | expires_unix u64 | bind_key (32) | sealed (94)      little-endian
    /// ```
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + 16 + 2 + 4 + 2 + 8 + KEY_LEN + SEALED_LEN);
        out.push(ALLOCATION_VERSION);
        match self.relay.ip() {
            IpAddr::V4(ip) => {
                out.push(4);
                out.extend_from_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                out.push(6);
                out.extend_from_slice(&ip.octets());
            }
        }
        out.extend_from_slice(&self.relay.port().to_le_bytes());
        out.extend_from_slice(&self.session.to_le_bytes());
        out.extend_from_slice(&self.slot.to_le_bytes());
        out.extend_from_slice(&self.expires_unix.to_le_bytes());
        out.extend_from_slice(&self.bind_key);
        out.extend_from_slice(&self.sealed);
        out
    }

    /// Reads [`to_bytes`](Self::to_bytes)'s form; any other input is
    /// [`RelayError::Malformed`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, RelayError> {
        let mut reader = Reader(bytes);
        if reader.take::<1>()? != [ALLOCATION_VERSION] {
            return Err(RelayError::Malformed("unknown allocation version"));
        }
        let ip = match reader.take::<1>()? {
            [4] => IpAddr::V4(Ipv4Addr::from(reader.take::<4>()?)),
            [6] => IpAddr::V6(Ipv6Addr::from(reader.take::<16>()?)),
            _ => return Err(RelayError::Malformed("unknown address family")),
        };
        let port = u16::from_le_bytes(reader.take()?);
        let session = u32::from_le_bytes(reader.take()?);
        let slot = u16::from_le_bytes(reader.take()?);
        let expires_unix = u64::from_le_bytes(reader.take()?);
        let bind_key = reader.take()?;
        let sealed = reader.take()?;
        if !reader.0.is_empty() {
            return Err(RelayError::Malformed("trailing bytes"));
        }
        Ok(Self { relay: SocketAddr::new(ip, port), session, slot, expires_unix, bind_key, sealed })
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], RelayError> {
        let Some((head, rest)) = self.0.split_first_chunk::<N>() else {
            return Err(RelayError::Malformed("truncated allocation"));
        };
        self.0 = rest;
        Ok(*head)
    }
}

impl Drop for Allocation {
    fn drop(&mut self) {
        self.bind_key.zeroize();
    }
}

impl fmt::Debug for Allocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Allocation")
            .field("relay", &self.relay)
            .field("session", &self.session)
            .field("slot", &self.slot)
            .field("expires_unix", &self.expires_unix)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> AllocationSpec {
        AllocationSpec {
            session: 0xdead_beef,
            slot: 7,
            expires_unix: 2_000,
            packets_per_sec: 100,
            bytes_per_sec: 100_000,
        }
    }

    #[test]
    fn a_token_opens_with_its_key_only() {
        let key = RelayKey::generate().unwrap();
        let relay: SocketAddr = "192.0.2.1:9000".parse().unwrap();
        let allocation = Allocation::mint(&spec(), &key, relay, 1_000).unwrap();
        let (opened, bind_key) = open(&allocation.sealed, &key).unwrap();
        assert_eq!(opened, spec());
        assert_eq!(*bind_key, allocation.bind_key);
        assert!(open(&allocation.sealed, &RelayKey::generate().unwrap()).is_none());
        for i in 0..SEALED_LEN {
            let mut altered = allocation.sealed;
            altered[i] ^= 1;
            assert!(open(&altered, &key).is_none(), "byte {i} altered");
        }
    }

    #[test]
    fn allocations_round_trip_and_hide_their_secrets() {
        let key = RelayKey::generate().unwrap();
        for relay in ["192.0.2.1:9000", "[2001:db8::1]:9000"] {
            let allocation =
                Allocation::mint(&spec(), &key, relay.parse().unwrap(), 1_000).unwrap();
            let bytes = allocation.to_bytes();
            assert_eq!(Allocation::from_bytes(&bytes).unwrap(), allocation);
            for cut in 0..bytes.len() {
                assert!(Allocation::from_bytes(&bytes[..cut]).is_err());
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(Allocation::from_bytes(&longer).is_err());
            let shown = format!("{allocation:?} {key:?}");
            assert!(!shown.contains(&format!("{:?}", allocation.bind_key)));
            assert!(!shown.contains(&format!("{:?}", key.as_bytes())));
        }
    }

    #[test]
    fn minting_refuses_expired_specs_and_the_reserved_slot() {
        let key = RelayKey::generate().unwrap();
        let relay: SocketAddr = "192.0.2.1:9000".parse().unwrap();
        assert!(Allocation::mint(&spec(), &key, relay, 2_000).is_err());
        let reserved = AllocationSpec { slot: u16::MAX, ..spec() };
        assert!(Allocation::mint(&reserved, &key, relay, 1_000).is_err());
    }
}
