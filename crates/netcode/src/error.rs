//! The crate's errors.

/// What can go wrong making or reading netcode tokens and packets. Reading network input
/// never panics: a bad token or packet is one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetcodeError {
    /// The operating system's random generator failed.
    #[error("the operating system's random generator failed")]
    Random,
    /// A token needs between 1 and 32 server addresses.
    #[error("a connect token holds 1 to 32 server addresses")]
    ServerAddresses,
    /// Too short, or a field out of range.
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// The version string is not netcode 1.02's.
    #[error("not a netcode 1.02 token or packet")]
    Version,
    /// Decryption failed: a wrong key, a wrong protocol id or expiry, or tampering.
    #[error("decryption failed")]
    Decrypt,
    /// A packet under 18 bytes (the prefix byte, one sequence byte and the tag): dropped unread.
    #[error("a packet of {0} bytes is under netcode's 18-byte minimum")]
    PacketTooSmall(usize),
    /// The prefix byte names a packet type that does not exist (7 to 15).
    #[error("packet type {0} does not exist")]
    PacketType(u8),
    /// A packet type this role does not accept (a server does not take challenges, …).
    #[error("packet type {0} is not accepted here")]
    PacketNotAllowed(u8),
    /// The prefix byte's count of sequence bytes is outside 1 to 8.
    #[error("{0} sequence bytes; a packet has 1 to 8")]
    SequenceBytes(u8),
    /// Shorter than its prefix byte, sequence bytes and tag.
    #[error("a packet of {0} bytes is too short for its sequence number and tag")]
    PacketTruncated(usize),
    /// The replay window says this sequence number was received already, or is too old.
    #[error("sequence {0} already received or too old (replay)")]
    Replayed(u64),
    /// An encrypted packet, and no key to open it with.
    #[error("no key to decrypt the packet with")]
    NoKey,
    /// The decrypted body's size is wrong for its packet type.
    #[error("packet type {packet_type}: a body of {len} bytes is the wrong size")]
    BodySize {
        /// The packet type.
        packet_type: u8,
        /// The decrypted body's length.
        len: usize,
    },
    /// A connection request that is not exactly 1078 bytes (or whose prefix byte is not 0).
    #[error("a connection request of {0} bytes; it is exactly 1078")]
    RequestSize(usize),
    /// A connection request for another game's protocol id.
    #[error("protocol id {0:#018x} is not this game's")]
    ProtocolId(u64),
    /// A connection request whose token expired (`expire_timestamp <= now`).
    #[error("the connect token expired at {0}")]
    Expired(u64),
    /// A payload to send is empty or larger than 1200 bytes.
    #[error("a payload of {0} bytes; netcode carries 1 to 1200")]
    PayloadSize(usize),
    /// No client is connected in this slot of a server.
    #[error("no client is connected in slot {0}")]
    NoClient(usize),
    /// A client that is not connected cannot send payloads.
    #[error("the client is not connected")]
    NotConnected,
    /// A server's capacity must be 1 to `u32::MAX` clients.
    #[error("a server takes 1 to u32::MAX clients, not {0}")]
    MaxClients(usize),
    /// The output buffer is too small for the packet.
    #[error("the packet needs {0} bytes of buffer")]
    BufferTooSmall(usize),
    /// A native handshake's Diffie-Hellman gave all zeros: the peer sent a public key of low
    /// order, which contributes nothing to the keys.
    #[error("a public key of low order: the key exchange contributes nothing")]
    WeakKey,
    /// A native handshake's cookie expired.
    #[error("the native cookie expired at {0}")]
    CookieExpired(u64),
}
