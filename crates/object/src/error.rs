//! The crate's error types.

use sturnus_message::MessageError;

use crate::{NetId, PrefabId, SceneId};

/// What can go wrong when using the object layer.
///
/// Like the message layer, these are about local use. What a peer sends wrong is never an
/// error: it is dropped and counted ([`ServerObjectStats`](crate::ServerObjectStats),
/// [`ClientObjectStats`](crate::ClientObjectStats)) and, on the server, charged to the
/// player's error budget.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ObjectError {
    /// The message layer refused (not authenticated, a full queue, no such channel).
    #[error(transparent)]
    Message(#[from] MessageError),
    /// A value could not be encoded (a `Serialize` implementation failed).
    #[error("could not encode: {0}")]
    Encode(#[from] postcard::Error),
    /// No object has this id here (it was never spawned, or is gone).
    #[error("no {0}")]
    UnknownObject(NetId),
    /// An object may hold at most 255 behaviours (their index is one byte on the wire).
    #[error("an object holds at most 255 behaviours, not {0}")]
    TooManyBehaviours(usize),
    /// An object must hold at least one behaviour.
    #[error("an object needs at least one behaviour")]
    NoBehaviours,
    /// A scene object with this id is already spawned (server) or registered (client).
    #[error("{0} already exists")]
    DuplicateScene(SceneId),
    /// A target RPC named a player that does not observe the object.
    #[error("{player} does not observe {net_id}")]
    NotObserving {
        /// The player.
        player: sturnus_message::PlayerId,
        /// The object.
        net_id: NetId,
    },
    /// An [`ObjectConfig`](crate::ObjectConfig) field is out of range.
    #[error("invalid object configuration: {field} {reason}")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// What it must satisfy.
        reason: &'static str,
    },
    /// A command was sent through the server's object manager, which acts for its host
    /// player, but no host player has joined (see
    /// [`ServerObjectManager::join_host`](crate::ServerObjectManager::join_host)).
    #[error("no host player: this server has no local client of its own")]
    NoHostPlayer,
    /// An object's state does not fit one message on the objects' channel, so its spawn could
    /// never be delivered: nothing was spawned. Send less state, or give the channel a larger
    /// limit (a fragmenting channel, a larger
    /// [`max_message_size`](sturnus_message::ServerConfig::max_message_size)).
    #[error(
        "{prefab}: the spawn with its state is {len} bytes, more than the {max} its channel takes"
    )]
    TooLarge {
        /// The object's prefab.
        prefab: PrefabId,
        /// The spawn message's encoded size.
        len: usize,
        /// The channel's limit.
        max: usize,
    },
    /// An RPC's or command's arguments do not fit one message on its channel: nothing was sent.
    #[error("RPC `{rpc}`: {len} bytes with its arguments, more than the {max} its channel takes")]
    RpcTooLarge {
        /// The RPC's method name.
        rpc: &'static str,
        /// The message's encoded size.
        len: usize,
        /// The channel's limit.
        max: usize,
    },
    /// A command that requires authority was called on an object this client (or host
    /// player) does not own; the server would refuse it, so it is not sent.
    #[error("{0} is not owned here; the command requires authority")]
    NotOwner(NetId),
}

impl ObjectError {
    /// The error of `call`'s send refused by the message layer: a size error names the RPC,
    /// not the object layer's wire type.
    pub(crate) fn of_rpc(call: &crate::RpcCall, err: MessageError) -> Self {
        match err {
            MessageError::TooLarge { len, max, .. } => {
                ObjectError::RpcTooLarge { rpc: call.name, len, max }
            }
            err => ObjectError::Message(err),
        }
    }
}

/// Why state or RPC arguments from a peer could not be applied. The update is dropped and
/// counted; [`SyncField`](crate::SyncField) implementations return it for malformed input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The bytes did not decode as the expected type.
    #[error("undecodable: {0}")]
    Decode(#[from] postcard::Error),
    /// An operation named an index outside the collection.
    #[error("index {index} out of range for length {len}")]
    OutOfRange {
        /// The index sent.
        index: u64,
        /// The collection's length.
        len: usize,
    },
    /// A dirty mask named a field the behaviour does not have.
    #[error("field {0} does not exist")]
    UnknownField(usize),
    /// Bytes were left over after everything was read.
    #[error("{0} trailing bytes")]
    Trailing(usize),
    /// A collection operation this collection does not know.
    #[error("unknown operation")]
    UnknownOperation,
}
