//! The relay's wire format: an 8-byte header in front of every datagram.
//!
//! ```text
//! byte 0     magic (high nibble, 0xB) | type (low nibble)
//! byte 1     flags (0; in ERROR: the error code)
//! bytes 2-3  peer slot, big-endian. To the relay: the destination slot (DATA) or the
//!            sender's own slot (BIND). From the relay: the slot the datagram came from.
//! bytes 4-7  session id, big-endian
//! ```
//!
//! | type | value | body | direction |
//! |---|---|---|---|
//! | `DATA` | 0 | the payload, relayed unchanged (end-to-end encrypted by the game) | both |
//! | `BIND` | 1 | sealed token (94) · counter u64 LE · tag (16) | to relay |
//! | `BOUND` | 2 | — | from relay, answers BIND |
//! | `PING` | 3 | — | to relay, keeps the binding alive |
//! | `PONG` | 4 | — | from relay |
//! | `CLOSE` | 5 | — | to relay, ends the binding |
//! | `PEER_GONE` | 6 | — (slot: who left) | from relay |
//! | `ERROR` | 7 | — (flags: an [`ErrorCode`]) | from relay |
//!
//! A `BIND` proves the sender holds the allocation's bind key: its tag is the Poly1305 tag of
//! ChaCha20-Poly1305 under the bind key over an empty plaintext, with the 12-byte nonce
//! `[0; 4] ‖ counter (LE)` and the bytes before the tag as associated data. A captured BIND
//! therefore cannot be altered; a copy replayed from another address is refused because a
//! move to a new address needs a counter larger than any bound before (the allocation's
//! counter history lives as long as the token does). Clients start the counter at the wall
//! clock in microseconds, so a restarted game still counts upwards.
//!
//! No relay reply is longer than the request it answers (no amplification).

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Tag};

use crate::token::{KEY_LEN, SEALED_LEN};

/// Bytes of the relay header.
pub const HEADER_LEN: usize = 8;
/// The magic in the high nibble of byte 0 (version 1 of the format).
pub const MAGIC: u8 = 0xB0;
/// Bytes of a BIND datagram.
pub const BIND_LEN: usize = HEADER_LEN + SEALED_LEN + 8 + 16;

/// What a datagram is (the low nibble of byte 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// A relayed payload.
    Data,
    /// A request to bind an allocation to the sender's address.
    Bind,
    /// The relay bound the allocation.
    Bound,
    /// A keep-alive.
    Ping,
    /// The relay's answer to a keep-alive.
    Pong,
    /// The sender leaves: its binding ends.
    Close,
    /// A peer's binding ended (the slot field says which).
    PeerGone,
    /// The relay refused something (the flags byte holds an [`ErrorCode`]).
    Error,
}

impl Kind {
    /// The type's value on the wire.
    pub fn to_nibble(self) -> u8 {
        match self {
            Kind::Data => 0,
            Kind::Bind => 1,
            Kind::Bound => 2,
            Kind::Ping => 3,
            Kind::Pong => 4,
            Kind::Close => 5,
            Kind::PeerGone => 6,
            Kind::Error => 7,
        }
    }

    /// The type of a wire value, if known.
    pub fn from_nibble(nibble: u8) -> Option<Self> {
        Some(match nibble {
            0 => Kind::Data,
            1 => Kind::Bind,
            2 => Kind::Bound,
            3 => Kind::Ping,
            4 => Kind::Pong,
            5 => Kind::Close,
            6 => Kind::PeerGone,
            7 => Kind::Error,
            _ => return None,
        })
    }
}

/// Why the relay refused something (the flags byte of an `ERROR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The sender has no binding (never bound, timed out, or closed): bind again.
    NotBound,
    /// The token was not sealed by this relay's key.
    BadToken,
    /// The token expired.
    Expired,
    /// The BIND's counter was not larger than one already bound.
    Replayed,
    /// The relay holds as many allocations as it may.
    Full,
    /// The sender's address is bound to another allocation.
    AddressTaken,
    /// Another allocation holds this session and slot (two matches drew one session id).
    SlotTaken,
}

impl ErrorCode {
    /// The code's value on the wire.
    pub fn to_byte(self) -> u8 {
        match self {
            ErrorCode::NotBound => 1,
            ErrorCode::BadToken => 2,
            ErrorCode::Expired => 3,
            ErrorCode::Replayed => 4,
            ErrorCode::Full => 5,
            ErrorCode::AddressTaken => 6,
            ErrorCode::SlotTaken => 7,
        }
    }

    /// The code of a wire value, if known.
    pub fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            1 => ErrorCode::NotBound,
            2 => ErrorCode::BadToken,
            3 => ErrorCode::Expired,
            4 => ErrorCode::Replayed,
            5 => ErrorCode::Full,
            6 => ErrorCode::AddressTaken,
            7 => ErrorCode::SlotTaken,
            _ => return None,
        })
    }
}

/// A decoded relay header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// The datagram's type.
    pub kind: Kind,
    /// The flags byte.
    pub flags: u8,
    /// The peer slot (see the [module documentation](self)).
    pub slot: u16,
    /// The session.
    pub session: u32,
}

impl Header {
    /// A header with no flags.
    pub fn new(kind: Kind, slot: u16, session: u32) -> Self {
        Self { kind, flags: 0, slot, session }
    }

    /// The header's bytes.
    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut out = [0; HEADER_LEN];
        out[0] = MAGIC | self.kind.to_nibble();
        out[1] = self.flags;
        out[2..4].copy_from_slice(&self.slot.to_be_bytes());
        out[4..8].copy_from_slice(&self.session.to_be_bytes());
        out
    }

    /// Writes the header at the start of `out` (at least [`HEADER_LEN`] bytes).
    pub fn write(self, out: &mut [u8]) {
        if let Some(head) = out.first_chunk_mut::<HEADER_LEN>() {
            *head = self.to_bytes();
        }
    }

    /// Reads the header at the start of `datagram`: `None` when it is too short or has another
    /// magic or an unknown type.
    pub fn parse(datagram: &[u8]) -> Option<Self> {
        let head = datagram.first_chunk::<HEADER_LEN>()?;
        if head[0] & 0xF0 != MAGIC {
            return None;
        }
        Some(Self {
            kind: Kind::from_nibble(head[0] & 0x0F)?,
            flags: head[1],
            slot: u16::from_be_bytes([head[2], head[3]]),
            session: u32::from_be_bytes([head[4], head[5], head[6], head[7]]),
        })
    }
}

fn bind_nonce(counter: u64) -> [u8; 12] {
    let mut nonce = [0; 12];
    nonce[4..].copy_from_slice(&counter.to_le_bytes());
    nonce
}

/// Writes a BIND for the allocation (`session`, `slot`, its sealed token and bind key) with
/// `counter` into `out`, which must hold [`BIND_LEN`] bytes.
pub fn write_bind(
    out: &mut [u8; BIND_LEN],
    session: u32,
    slot: u16,
    sealed: &[u8; SEALED_LEN],
    bind_key: &[u8; KEY_LEN],
    counter: u64,
) {
    Header::new(Kind::Bind, slot, session).write(out);
    out[HEADER_LEN..HEADER_LEN + SEALED_LEN].copy_from_slice(sealed);
    out[HEADER_LEN + SEALED_LEN..BIND_LEN - 16].copy_from_slice(&counter.to_le_bytes());
    let (signed, tag_out) = out.split_at_mut(BIND_LEN - 16);
    let tag = ChaCha20Poly1305::new(bind_key.into())
        .encrypt_in_place_detached(&bind_nonce(counter).into(), signed, &mut [])
        .unwrap_or_default();
    tag_out.copy_from_slice(&tag);
}

/// A BIND's parts: the sealed token, the counter, and a check of the tag.
pub(crate) struct Bind<'a> {
    pub(crate) sealed: &'a [u8; SEALED_LEN],
    pub(crate) counter: u64,
    signed: &'a [u8],
    tag: &'a [u8],
}

impl<'a> Bind<'a> {
    /// The parts of a BIND datagram of exactly [`BIND_LEN`] bytes.
    pub(crate) fn parse(datagram: &'a [u8]) -> Option<Self> {
        if datagram.len() != BIND_LEN {
            return None;
        }
        let (signed, tag) = datagram.split_at(BIND_LEN - 16);
        let sealed = signed[HEADER_LEN..].first_chunk::<SEALED_LEN>()?;
        let counter = u64::from_le_bytes(*signed[HEADER_LEN + SEALED_LEN..].first_chunk::<8>()?);
        Some(Self { sealed, counter, signed, tag })
    }

    /// Whether the tag was made with `bind_key`.
    pub(crate) fn verify(&self, bind_key: &[u8; KEY_LEN]) -> bool {
        ChaCha20Poly1305::new(bind_key.into())
            .decrypt_in_place_detached(
                &bind_nonce(self.counter).into(),
                self.signed,
                &mut [],
                Tag::from_slice(self.tag),
            )
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_strangers_are_refused() {
        for nibble in 0..8 {
            let kind = Kind::from_nibble(nibble).unwrap();
            let header = Header { kind, flags: 3, slot: 0x1234, session: 0xdead_beef };
            let bytes = header.to_bytes();
            assert_eq!(bytes[2..8], [0x12, 0x34, 0xde, 0xad, 0xbe, 0xef]);
            assert_eq!(Header::parse(&bytes), Some(header));
        }
        assert_eq!(Header::parse(&[0xB0; 7]), None);
        assert_eq!(Header::parse(&[0xA0, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(Header::parse(&[0xB8, 0, 0, 0, 0, 0, 0, 0]), None);
        for byte in 1..=6 {
            assert_eq!(ErrorCode::from_byte(byte).unwrap().to_byte(), byte);
        }
    }

    #[test]
    fn a_bind_verifies_under_its_key_only_and_unaltered() {
        let mut bind = [0; BIND_LEN];
        let sealed = [9; SEALED_LEN];
        let key = [4; KEY_LEN];
        write_bind(&mut bind, 5, 6, &sealed, &key, 77);
        let parsed = Bind::parse(&bind).unwrap();
        assert_eq!((parsed.counter, parsed.sealed), (77, &sealed));
        assert!(parsed.verify(&key));
        assert!(!parsed.verify(&[5; KEY_LEN]));
        for i in 0..BIND_LEN {
            let mut altered = bind;
            altered[i] ^= 0x40;
            assert!(!Bind::parse(&altered).unwrap().verify(&key), "byte {i}");
        }
        assert!(Bind::parse(&bind[..BIND_LEN - 1]).is_none());
    }
}
