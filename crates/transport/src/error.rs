//! The crate's error types.

/// A datagram that could not be decoded. Decoding never panics; each malformed input maps to
/// one of these, and the endpoint drops the datagram and counts it.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The datagram ended in the middle of a field.
    #[error("truncated: needed {needed} more bytes, {available} left")]
    Truncated {
        /// Bytes the field needed.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// A varint had more than 32 bits.
    #[error("varint does not fit in 32 bits")]
    VarintOverflow,
    /// A varint used more bytes than its value needs.
    #[error("varint has an over-long encoding")]
    VarintOverlong,
    /// A control packet was given to the data-packet decoder.
    #[error("not a data packet")]
    NotData,
    /// Bits the protocol reserves were set.
    #[error("reserved header bits are set")]
    ReservedBits,
    /// A message record named a channel the connection does not have.
    #[error("message record for channel {0}, which is not configured")]
    UnknownChannel(u8),
    /// A message record claimed more than 65,535 bytes.
    #[error("message record longer than 65535 bytes")]
    RecordTooLong,
    /// A fragment record did not carry its message number.
    #[error("fragment record without a message number")]
    FragmentWithoutSeq,
    /// A fragment's index or count was out of range.
    #[error("fragment index or count out of range")]
    BadFragment,
}

/// A configuration that cannot be used.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A field is out of range.
    #[error("invalid endpoint config: `{field}` {reason}")]
    Invalid {
        /// The field, as named in [`EndpointConfig`](crate::EndpointConfig).
        field: &'static str,
        /// What it must satisfy.
        reason: &'static str,
    },
    /// A QoS name that is not one of the eleven kinds.
    #[error("unknown QoS `{0}` (expected a kebab-case name such as `reliable-sequenced`)")]
    UnknownQos(String),
}
