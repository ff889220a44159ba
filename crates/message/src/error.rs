//! The crate's error type.

use sturnus_transport::{ChannelId, ConnectError, HostError, Qos, SendError};

use crate::{MessageId, PlayerId};

/// What can go wrong when using the message layer.
///
/// Errors are about local use (a misconfiguration, a send that cannot be done). What a peer does
/// wrong is never an error here: bad input is dropped and counted (see
/// [`PlayerStats`](crate::PlayerStats)), and connection loss is an event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// Two message types have the same id.
    #[error(
        "message id {id} is used by both `{first}` and `{second}`; pin one with #[message(id = N)]"
    )]
    IdCollision {
        /// The id.
        id: MessageId,
        /// The type registered first.
        first: &'static str,
        /// The type that collided with it.
        second: &'static str,
    },
    /// The message could not be encoded.
    #[error("could not encode `{name}`: {source}")]
    Encode {
        /// The message type.
        name: &'static str,
        /// Why.
        #[source]
        source: postcard::Error,
    },
    /// The encoded message is larger than `max_message_size`.
    #[error("`{name}` is {len} bytes encoded, over the {max}-byte max_message_size")]
    TooLarge {
        /// The message type.
        name: &'static str,
        /// Its encoded size.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// No typed channel of this quality of service is in the layout.
    #[error("no typed channel of kind {0:?} is in the channel layout")]
    NoChannel(Qos),
    /// The channel layout has no channel of this id.
    #[error("no channel {0:?} in the channel layout")]
    UnknownChannel(ChannelId),
    /// A typed message was sent on a raw channel.
    #[error("channel {0:?} is raw: typed messages go on typed channels")]
    RawChannel(ChannelId),
    /// Raw bytes were sent on a typed channel.
    #[error("channel {0:?} is typed: raw bytes go on raw channels")]
    TypedChannel(ChannelId),
    /// The transport's channels are not the layout's: both peers and the transport must agree.
    #[error("the transport's channels {transport:?} are not the layout's {layout:?}")]
    ChannelMismatch {
        /// The layout's kinds.
        layout: Vec<Qos>,
        /// The transport's kinds.
        transport: Vec<Qos>,
    },
    /// The client is not connected, or not yet authenticated (messages may be sent once
    /// [`ClientEvent::Authenticated`](crate::ClientEvent::Authenticated) has been seen).
    #[error("not authenticated with a server")]
    NotAuthenticated,
    /// No player has this id (it never existed or has left).
    #[error("no player {0}")]
    UnknownPlayer(PlayerId),
    /// The transport refused the message (a full send queue, for example).
    #[error(transparent)]
    Send(#[from] SendError),
    /// The transport could not start a connection.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The transport could not start, or its socket failed.
    #[error(transparent)]
    Transport(#[from] HostError),
    /// A server was given a transport that trusts incoming connections from the start
    /// (`trust_incoming`): unauthenticated peers could make it hold as much memory as
    /// authenticated ones. Build it from [`ChannelLayout::endpoint_config`](crate::ChannelLayout::endpoint_config)
    /// or set `trust_incoming: false`.
    #[error(
        "the transport trusts incoming connections before they authenticate; set trust_incoming: false"
    )]
    TrustsIncoming,
    /// The server or client is already running.
    #[error("already started")]
    AlreadyStarted,
    /// A configuration field is out of range.
    #[error("invalid configuration: {field} {reason}")]
    Config {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}
