//! The crate's error type.

use sturnus_transport::{HostError, Qos, SendError};

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
    /// No channel of this quality of service is configured.
    #[error("no channel of kind {0:?} is configured")]
    NoChannel(Qos),
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
    /// The transport could not start, or its socket failed.
    #[error(transparent)]
    Transport(#[from] HostError),
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
