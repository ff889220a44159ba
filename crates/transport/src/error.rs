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
    /// A control packet of an unknown kind or with a field out of range.
    #[error("malformed control packet")]
    BadControl,
    /// A connect request or response shorter than the padding the protocol requires.
    #[error("connect request is not padded")]
    Unpadded,
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
    /// Something followed the ack-delay record, which must end the packet.
    #[error("ack-delay record is not the last record")]
    AckDelayNotLast,
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
    /// The operating system could not supply the endpoint's secret key (its random number
    /// generator failed); no configuration would help.
    #[error(transparent)]
    Randomness(#[from] RandomnessError),
}

/// The operating system's random number generator failed. Every secret of the protocol comes
/// from it; the transport never falls back to a weaker source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RandomnessError(getrandom::Error);

impl RandomnessError {
    pub(crate) fn os(error: getrandom::Error) -> Self {
        Self(error)
    }
}

/// Why a message could not be queued. Nothing was queued; the connection is unaffected.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// No connection has this id (it was never made, or it has closed).
    #[error("no such connection")]
    UnknownConnection,
    /// The connection has no channel with this id.
    #[error("{0} is not configured")]
    UnknownChannel(crate::ChannelId),
    /// The message is larger than the channel accepts.
    #[error("message of {len} bytes exceeds the {max}-byte limit of {channel}")]
    MessageTooLarge {
        /// The channel.
        channel: crate::ChannelId,
        /// The message's size.
        len: usize,
        /// The largest message this channel accepts.
        max: usize,
    },
    /// A send queue is full: backpressure. Try again after it drains (poll the endpoint or
    /// host); nothing was dropped. `limit` says which limit was reached.
    #[error("the send queue of {channel} is full ({limit})")]
    QueueFull {
        /// The channel the message was for.
        channel: crate::ChannelId,
        /// The limit that was reached.
        limit: QueueLimit,
    },
}

/// Which send-queue limit a [`SendError::QueueFull`] reached.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueLimit {
    /// The channel holds its configured number of queued or unacknowledged messages
    /// ([`EndpointConfig::send_queue_capacity`](crate::EndpointConfig::send_queue_capacity)).
    Messages(usize),
    /// A [`ThreadedHost`](crate::ThreadedHost) holds this many bytes of messages, on all
    /// connections and channels together, that its I/O thread has not yet handed to the
    /// protocol.
    PendingBytes(usize),
}

impl std::fmt::Display for QueueLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueueLimit::Messages(n) => write!(f, "{n} messages queued on the channel"),
            QueueLimit::PendingBytes(n) => {
                write!(f, "{n} bytes of messages waiting for the I/O thread")
            }
        }
    }
}

/// Why a connection attempt could not start.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// There already is a connection with this address.
    #[error("already connected (or connecting) to {0}")]
    AlreadyConnected(std::net::SocketAddr),
    /// The endpoint holds its maximum number of connections.
    #[error("the endpoint already holds its maximum of {0} connections")]
    TooManyConnections(usize),
    /// The I/O thread of a [`ThreadedHost`](crate::ThreadedHost) has stopped.
    #[error("the host's I/O thread has stopped")]
    HostStopped,
    /// The transport may not connect there (a connect token that does not list the address,
    /// a server-only transport).
    #[error("this transport may not connect to {0}")]
    NotPermitted(std::net::SocketAddr),
    /// The transport could not start the connection (a secure transport that could not draw
    /// its keys, say), with its reason.
    #[error("the transport could not start the connection: {0}")]
    Start(String),
    /// The accept filter refused the peer.
    #[error("the accept filter refused {0}")]
    Refused(std::net::SocketAddr),
    /// The operating system could not supply the connection's secret salt.
    #[error(transparent)]
    Randomness(#[from] RandomnessError),
}

/// Errors of the [`Host`](crate::Host) driver.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The socket failed.
    #[error(transparent)]
    Socket(#[from] sturnus_socket::SocketError),
    /// A connection could not be started.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// A message could not be queued.
    #[error(transparent)]
    Send(#[from] SendError),
    /// The I/O thread of a [`ThreadedHost`](crate::ThreadedHost) panicked (a bug; please
    /// report it).
    #[error("the host's I/O thread panicked")]
    IoThreadPanicked,
}

#[cfg(test)]
mod tests {
    use super::{QueueLimit, SendError};
    use crate::ChannelId;

    #[test]
    fn a_queue_limit_is_described_inside_its_send_error() {
        let full = |limit| SendError::QueueFull { channel: ChannelId(3), limit }.to_string();
        assert_eq!(QueueLimit::Messages(7).to_string(), "7 messages queued on the channel");
        assert!(full(QueueLimit::Messages(7)).ends_with("(7 messages queued on the channel)"));
        assert!(
            full(QueueLimit::PendingBytes(9)).contains("9 bytes of messages waiting"),
            "{}",
            full(QueueLimit::PendingBytes(9))
        );
    }
}
