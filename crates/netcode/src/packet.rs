//! The seven packet types, byte-exact with netcode 1.02, and the standard's normative read order.
//!
//! A connection request travels in the clear (its token is sealed already); every other packet
//! is a prefix byte (low 4 bits: the type; high 4 bits: how many bytes the sequence number
//! takes, 1 to 8, as few as it needs), the sequence number least significant byte first, and
//! the body sealed with ChaCha20-Poly1305 (IETF): the nonce is four zero bytes and the sequence
//! number, the associated data the version string, the protocol id and the prefix byte, and the
//! 16-byte tag follows the body. The key is the token's client → server key for what a client
//! sends and its server → client key for what a server sends.
//!
//! [`write()`] builds a packet into a buffer; [`read`] checks and opens one in the order the
//! standard prescribes, dropping bad input with a typed [`NetcodeError`], never a panic.

use ring::aead;

use crate::replay::ReplayWindow;
use crate::token::{
    CHALLENGE_TOKEN_BYTES, CONNECT_TOKEN_NONCE_BYTES, CONNECT_TOKEN_PRIVATE_BYTES, Reader,
    sequence_nonce,
};
use crate::{Key, MAC_BYTES, MAX_PAYLOAD_BYTES, NetcodeError, VERSION_INFO};

/// Bytes of a connection request: the zero prefix byte, the version string, the protocol id,
/// the expiry, the token's nonce and its sealed private part.
pub const REQUEST_PACKET_BYTES: usize =
    1 + VERSION_INFO.len() + 8 + 8 + CONNECT_TOKEN_NONCE_BYTES + CONNECT_TOKEN_PRIVATE_BYTES;
/// The smallest packet read: a prefix byte, one sequence byte and the tag. Anything shorter is
/// dropped unread.
pub const MIN_PACKET_BYTES: usize = 1 + 1 + MAC_BYTES;
/// Bytes of a challenge's or response's body: the challenge sequence and the sealed challenge
/// token.
pub const CHALLENGE_BODY_BYTES: usize = 8 + CHALLENGE_TOKEN_BYTES;
/// Bytes of a keep-alive's body: the client's index and the server's capacity.
pub const KEEP_ALIVE_BODY_BYTES: usize = 8;

/// The number of the packet types.
const PACKET_TYPES: u8 = 7;
/// Bytes of the associated data of a sealed packet.
const ASSOCIATED_DATA_BYTES: usize = VERSION_INFO.len() + 8 + 1;

/// The type of a packet, its number on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    /// A client asks to connect, with its token's sealed private part.
    Request = 0,
    /// The server is full.
    Denied = 1,
    /// The server's challenge.
    Challenge = 2,
    /// The client's answer to the challenge.
    Response = 3,
    /// Either side says it is alive; the server's tells the client its slot.
    KeepAlive = 4,
    /// Game data.
    Payload = 5,
    /// Either side ends the connection.
    Disconnect = 6,
}

impl PacketType {
    /// The type numbered `number`, if there is one.
    pub const fn from_number(number: u8) -> Option<Self> {
        Some(match number {
            0 => Self::Request,
            1 => Self::Denied,
            2 => Self::Challenge,
            3 => Self::Response,
            4 => Self::KeepAlive,
            5 => Self::Payload,
            6 => Self::Disconnect,
            _ => return None,
        })
    }

    /// Its number on the wire.
    pub const fn number(self) -> u8 {
        self as u8
    }

    /// Whether the replay window guards it (keep-alive, payload and disconnect).
    pub const fn is_replay_protected(self) -> bool {
        matches!(self, Self::KeepAlive | Self::Payload | Self::Disconnect)
    }
}

/// The packet types a receiver accepts; [`read`] drops the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Allowed(u8);

impl Allowed {
    /// None at all.
    pub const NONE: Self = Self(0);
    /// What a server takes: request, response, keep-alive, payload, disconnect.
    pub const SERVER: Self = Self::NONE
        .with(PacketType::Request)
        .with(PacketType::Response)
        .with(PacketType::KeepAlive)
        .with(PacketType::Payload)
        .with(PacketType::Disconnect);
    /// What a client takes: denied, challenge, keep-alive, payload, disconnect.
    pub const CLIENT: Self = Self::NONE
        .with(PacketType::Denied)
        .with(PacketType::Challenge)
        .with(PacketType::KeepAlive)
        .with(PacketType::Payload)
        .with(PacketType::Disconnect);

    /// These and `packet_type`.
    pub const fn with(self, packet_type: PacketType) -> Self {
        Self(self.0 | 1 << packet_type.number())
    }

    /// These without `packet_type`.
    pub const fn without(self, packet_type: PacketType) -> Self {
        Self(self.0 & !(1 << packet_type.number()))
    }

    /// Whether `packet_type` is among them.
    pub const fn contains(self, packet_type: PacketType) -> bool {
        self.0 & 1 << packet_type.number() != 0
    }
}

/// A netcode packet; what it carries borrows from the buffer it was read from (or the caller's
/// data when it is written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<'a> {
    /// A connection request (in the clear; its version string is checked when read). The
    /// private token stays sealed: the server opens it with
    /// [`PrivateConnectToken::open`](crate::PrivateConnectToken::open) and its private key.
    Request {
        /// The game's protocol id (the token's).
        protocol_id: u64,
        /// When the token stops starting connections (seconds since the Unix epoch).
        expire_timestamp: u64,
        /// The nonce the private token is sealed with.
        token_nonce: [u8; CONNECT_TOKEN_NONCE_BYTES],
        /// The sealed private token.
        private_token: &'a [u8; CONNECT_TOKEN_PRIVATE_BYTES],
    },
    /// The server is full.
    Denied,
    /// The server's challenge: a challenge token sealed under a key only the server knows.
    Challenge {
        /// The challenge token's sequence number (its nonce).
        sequence: u64,
        /// The sealed challenge token.
        token: &'a [u8; CHALLENGE_TOKEN_BYTES],
    },
    /// The client's response: the challenge's token sent back unchanged.
    Response {
        /// The challenge token's sequence number.
        sequence: u64,
        /// The sealed challenge token.
        token: &'a [u8; CHALLENGE_TOKEN_BYTES],
    },
    /// A keep-alive; the server's tells the client its slot and the server's capacity.
    KeepAlive {
        /// The client's slot on the server.
        client_index: u32,
        /// How many clients the server takes.
        max_clients: u32,
    },
    /// Game data, 1 to 1200 bytes.
    Payload(&'a [u8]),
    /// The end of the connection.
    Disconnect,
}

impl Packet<'_> {
    /// Its type.
    pub const fn packet_type(&self) -> PacketType {
        match self {
            Self::Request { .. } => PacketType::Request,
            Self::Denied => PacketType::Denied,
            Self::Challenge { .. } => PacketType::Challenge,
            Self::Response { .. } => PacketType::Response,
            Self::KeepAlive { .. } => PacketType::KeepAlive,
            Self::Payload(_) => PacketType::Payload,
            Self::Disconnect => PacketType::Disconnect,
        }
    }

    /// Bytes of its body before sealing (a request has none: it is not sealed).
    fn body_len(&self) -> usize {
        match self {
            Self::Request { .. } | Self::Denied | Self::Disconnect => 0,
            Self::Challenge { .. } | Self::Response { .. } => CHALLENGE_BODY_BYTES,
            Self::KeepAlive { .. } => KEEP_ALIVE_BODY_BYTES,
            Self::Payload(payload) => payload.len(),
        }
    }
}

/// How many bytes `sequence` takes on the wire: as few as hold it, at least one.
pub const fn sequence_bytes(sequence: u64) -> usize {
    let significant = 64 - sequence.leading_zeros() as usize;
    if significant == 0 { 1 } else { significant.div_ceil(8) }
}

/// Writes `packet` into `out` and returns its length.
///
/// A request is written in the clear and uses neither `sequence` nor `key`; its own protocol
/// id must be `protocol_id`. Every other packet is numbered `sequence` and sealed under `key`
/// (the sender's: client → server for a client, server → client for a server). Each sequence
/// number must be used once per key: a sender counts up (a server's global sequence, for
/// challenges and denials, starts at `1 << 63` on every start).
///
/// Errors: [`NetcodeError::PayloadSize`] for a payload outside 1 to 1200 bytes,
/// [`NetcodeError::ProtocolId`] for a request of another protocol,
/// [`NetcodeError::BufferTooSmall`] if `out` cannot hold the packet (at most 1078 bytes for a
/// request, 1225 for a payload, 333 for a challenge).
pub fn write(
    packet: &Packet<'_>,
    sequence: u64,
    protocol_id: u64,
    key: &Key,
    out: &mut [u8],
) -> Result<usize, NetcodeError> {
    if let Packet::Request { protocol_id: own, expire_timestamp, token_nonce, private_token } =
        packet
    {
        if *own != protocol_id {
            return Err(NetcodeError::ProtocolId(*own));
        }
        let out = out
            .get_mut(..REQUEST_PACKET_BYTES)
            .ok_or(NetcodeError::BufferTooSmall(REQUEST_PACKET_BYTES))?;
        let mut at = 0;
        for field in [
            &[PacketType::Request.number()][..],
            VERSION_INFO,
            &own.to_le_bytes(),
            &expire_timestamp.to_le_bytes(),
            token_nonce,
            &private_token[..],
        ] {
            out[at..at + field.len()].copy_from_slice(field);
            at += field.len();
        }
        return Ok(at);
    }

    if let Packet::Payload(payload) = packet {
        if payload.is_empty() || payload.len() > MAX_PAYLOAD_BYTES {
            return Err(NetcodeError::PayloadSize(payload.len()));
        }
    }
    let sequence_len = sequence_bytes(sequence);
    let body_start = 1 + sequence_len;
    let body_end = body_start + packet.body_len();
    let total = body_end + MAC_BYTES;
    let out = out.get_mut(..total).ok_or(NetcodeError::BufferTooSmall(total))?;

    // The count of sequence bytes is 1 to 8, so it fits the high nibble.
    let prefix = packet.packet_type().number() | (sequence_len.to_le_bytes()[0] << 4);
    out[0] = prefix;
    out[1..body_start].copy_from_slice(&sequence.to_le_bytes()[..sequence_len]);
    let body = &mut out[body_start..body_end];
    match packet {
        Packet::Request { .. } | Packet::Denied | Packet::Disconnect => {}
        Packet::Challenge { sequence, token } | Packet::Response { sequence, token } => {
            body[..8].copy_from_slice(&sequence.to_le_bytes());
            body[8..].copy_from_slice(&token[..]);
        }
        Packet::KeepAlive { client_index, max_clients } => {
            body[..4].copy_from_slice(&client_index.to_le_bytes());
            body[4..].copy_from_slice(&max_clients.to_le_bytes());
        }
        Packet::Payload(payload) => body.copy_from_slice(payload),
    }
    let tag = packet_key(key)
        .seal_in_place_separate_tag(
            aead::Nonce::assume_unique_for_key(sequence_nonce(sequence)),
            aead::Aad::from(associated_data(protocol_id, prefix)),
            body,
        )
        .map_err(|_| NetcodeError::Decrypt)?;
    out[body_end..].copy_from_slice(tag.as_ref());
    Ok(total)
}

/// Reads a packet received for `protocol_id`, in the standard's normative order, and returns
/// its sequence number (0 for a request, which has none) and the packet.
///
/// 1. Under 18 bytes: [`NetcodeError::PacketTooSmall`].
/// 2. A type of 7 or more: [`NetcodeError::PacketType`].
/// 3. A type not in `allowed`: [`NetcodeError::PacketNotAllowed`].
///    - A request (prefix byte 0) is then checked in the clear: exactly 1078 bytes
///      ([`NetcodeError::RequestSize`]), the version string ([`NetcodeError::Version`]), the
///      protocol id ([`NetcodeError::ProtocolId`]) and the expiry against
///      `now_unix_seconds` ([`NetcodeError::Expired`] if `expire_timestamp <= now`). Its
///      private token is left sealed for the caller to open.
/// 4. A count of sequence bytes outside 1 to 8: [`NetcodeError::SequenceBytes`].
/// 5. Shorter than the prefix, the sequence number and the tag:
///    [`NetcodeError::PacketTruncated`].
/// 6. For keep-alive, payload and disconnect, if `replay` is given and says the sequence was
///    received already or is too old: [`NetcodeError::Replayed`].
/// 7. Decryption under `key` (the sender's key; `None`: [`NetcodeError::NoKey`]) with this
///    protocol id and prefix byte: [`NetcodeError::Decrypt`].
/// 8. Only now is the sequence recorded in `replay`.
/// 9. The decrypted body's size for the type: [`NetcodeError::BodySize`].
///
/// The body is decrypted in place in `bytes`, and the packet borrows from it; after an error
/// the contents of `bytes` are unspecified. `now_unix_seconds` is only looked at for requests
/// (time is an input: the caller reads the clock).
pub fn read<'a>(
    bytes: &'a mut [u8],
    protocol_id: u64,
    key: Option<&Key>,
    allowed: Allowed,
    replay: Option<&mut ReplayWindow>,
    now_unix_seconds: u64,
) -> Result<(u64, Packet<'a>), NetcodeError> {
    // 1.
    if bytes.len() < MIN_PACKET_BYTES {
        return Err(NetcodeError::PacketTooSmall(bytes.len()));
    }
    let prefix = bytes[0];
    // 2.
    let packet_type =
        PacketType::from_number(prefix & 0x0f).ok_or(NetcodeError::PacketType(prefix & 0x0f))?;
    // 3.
    if !allowed.contains(packet_type) {
        return Err(NetcodeError::PacketNotAllowed(packet_type.number()));
    }
    if packet_type == PacketType::Request {
        return read_request(bytes, protocol_id, now_unix_seconds).map(|packet| (0, packet));
    }
    // 4.
    let sequence_len = prefix >> 4;
    if !(1..=8).contains(&sequence_len) {
        return Err(NetcodeError::SequenceBytes(sequence_len));
    }
    let sequence_len = usize::from(sequence_len);
    // 5.
    if bytes.len() < 1 + sequence_len + MAC_BYTES {
        return Err(NetcodeError::PacketTruncated(bytes.len()));
    }
    let mut sequence = [0; 8];
    sequence[..sequence_len].copy_from_slice(&bytes[1..1 + sequence_len]);
    let sequence = u64::from_le_bytes(sequence);
    // 6.
    let replay = replay.filter(|_| packet_type.is_replay_protected());
    if let Some(window) = replay.as_deref() {
        if window.already_received(sequence) {
            return Err(NetcodeError::Replayed(sequence));
        }
    }
    // 7.
    let key = key.ok_or(NetcodeError::NoKey)?;
    let body = packet_key(key)
        .open_in_place(
            aead::Nonce::assume_unique_for_key(sequence_nonce(sequence)),
            aead::Aad::from(associated_data(protocol_id, prefix)),
            &mut bytes[1 + sequence_len..],
        )
        .map_err(|_| NetcodeError::Decrypt)?;
    // 8.
    if let Some(window) = replay {
        window.advance(sequence);
    }
    // 9.
    let body: &'a [u8] = body;
    let wrong_size =
        || NetcodeError::BodySize { packet_type: packet_type.number(), len: body.len() };
    let packet = match packet_type {
        PacketType::Denied | PacketType::Disconnect => {
            if !body.is_empty() {
                return Err(wrong_size());
            }
            if packet_type == PacketType::Denied { Packet::Denied } else { Packet::Disconnect }
        }
        PacketType::Challenge | PacketType::Response => {
            let (sequence_field, token) = body
                .split_first_chunk::<8>()
                .filter(|_| body.len() == CHALLENGE_BODY_BYTES)
                .ok_or_else(wrong_size)?;
            let sequence = u64::from_le_bytes(*sequence_field);
            let token = token.try_into().map_err(|_| wrong_size())?;
            if packet_type == PacketType::Challenge {
                Packet::Challenge { sequence, token }
            } else {
                Packet::Response { sequence, token }
            }
        }
        PacketType::KeepAlive => {
            if body.len() != KEEP_ALIVE_BODY_BYTES {
                return Err(wrong_size());
            }
            let mut r = Reader::new(body);
            Packet::KeepAlive { client_index: r.u32()?, max_clients: r.u32()? }
        }
        PacketType::Payload => {
            if body.is_empty() || body.len() > MAX_PAYLOAD_BYTES {
                return Err(wrong_size());
            }
            Packet::Payload(body)
        }
        // Requests returned before step 4; this arm is never taken.
        PacketType::Request => return Err(NetcodeError::Malformed("a request is not sealed")),
    };
    Ok((sequence, packet))
}

/// Checks a connection request in the clear (its prefix byte is known to be of type 0).
fn read_request(
    bytes: &[u8],
    protocol_id: u64,
    now_unix_seconds: u64,
) -> Result<Packet<'_>, NetcodeError> {
    if bytes[0] != PacketType::Request.number() || bytes.len() != REQUEST_PACKET_BYTES {
        return Err(NetcodeError::RequestSize(bytes.len()));
    }
    let mut r = Reader::new(&bytes[1..]);
    if r.array::<13>()? != *VERSION_INFO {
        return Err(NetcodeError::Version);
    }
    let own = r.u64()?;
    if own != protocol_id {
        return Err(NetcodeError::ProtocolId(own));
    }
    let expire_timestamp = r.u64()?;
    if expire_timestamp <= now_unix_seconds {
        return Err(NetcodeError::Expired(expire_timestamp));
    }
    let token_nonce = r.array()?;
    let private_token = bytes[REQUEST_PACKET_BYTES - CONNECT_TOKEN_PRIVATE_BYTES..]
        .try_into()
        .map_err(|_| NetcodeError::RequestSize(bytes.len()))?;
    Ok(Packet::Request { protocol_id: own, expire_timestamp, token_nonce, private_token })
}

/// The ChaCha20-Poly1305 key of packets (IETF, 96-bit nonce: the standard's). Packets use
/// ring's implementation, whose assembly is about twice as fast as the portable one the tokens
/// use (`sturnus-bench local --workload throughput` over the netcode mode: 76 % of plaintext's
/// rate with the portable one built for the native CPU, 65 % for a generic CPU).
fn packet_key(key: &Key) -> aead::LessSafeKey {
    let unbound = aead::UnboundKey::new(&aead::CHACHA20_POLY1305, key)
        .expect("a 32-byte key is a valid ChaCha20-Poly1305 key");
    aead::LessSafeKey::new(unbound)
}

/// The associated data of a sealed packet: version string, protocol id, prefix byte.
fn associated_data(protocol_id: u64, prefix: u8) -> [u8; ASSOCIATED_DATA_BYTES] {
    let mut ad = [0; ASSOCIATED_DATA_BYTES];
    ad[..13].copy_from_slice(VERSION_INFO);
    ad[13..21].copy_from_slice(&protocol_id.to_le_bytes());
    ad[21] = prefix;
    ad
}

const _: () = assert!(REQUEST_PACKET_BYTES == 1078 && MIN_PACKET_BYTES == 18);
const _: () = assert!(PACKET_TYPES == PacketType::Disconnect.number() + 1);
