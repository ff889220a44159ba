//! Message ids and the [`Message`] trait.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sturnus_transport::{ChannelId, Qos};

/// A message type's id on the wire: two bytes in front of every message.
///
/// Derived ids are a hash of the type's path, so they never depend on registration order, build
/// or platform. Sixteen bits keep the per-message cost at two bytes; the price is that two types
/// may collide (about a 7 % chance somewhere in a protocol of 100 types). Collisions are caught,
/// naming both types, when a handler is registered or a message is sent on a side that knows
/// both; pin one of them with `#[message(id = N)]` to resolve it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub u16);

impl MessageId {
    /// The id of a type path: 32-bit FNV-1a of the UTF-8 bytes, folded to 16 bits by XOR of the
    /// halves. `#[derive(Message)]` calls this at compile time with
    /// `concat!(module_path!(), "::", TypeName)`.
    ///
    /// ```
    /// use sturnus_message::MessageId;
    /// const ID: MessageId = MessageId::of_path("game::Chat");
    /// assert_eq!(ID, MessageId(0x904d));
    /// ```
    pub const fn of_path(path: &str) -> MessageId {
        let hash = fnv1a(path);
        #[expect(clippy::cast_possible_truncation, reason = "folding to 16 bits is the point")]
        MessageId(((hash >> 16) ^ hash) as u16)
    }

    /// Whether this is the id of one of the layer's own messages (authentication, goodbye,
    /// network time), which share the control channel with typed messages: a tool that
    /// counts a game's messages at the transport leaves these out. No user type can take
    /// these ids.
    ///
    /// ```
    /// use sturnus_message::MessageId;
    /// assert!(!MessageId::of_path("game::Chat").is_internal());
    /// ```
    pub fn is_internal(self) -> bool {
        [
            <crate::auth::AuthRequest as Message>::ID,
            <crate::auth::AuthResponse as Message>::ID,
            <crate::auth::Goodbye as Message>::ID,
            <crate::time::TimeRequest as Message>::ID,
            <crate::time::TimeResponse as Message>::ID,
        ]
        .contains(&self)
    }

    /// The id a message's payload (as the transport carries it) starts with, if it is long
    /// enough to have one.
    ///
    /// ```
    /// use sturnus_message::MessageId;
    /// assert_eq!(MessageId::of_payload(&[0x4d, 0x90, 7]), Some(MessageId(0x904d)));
    /// assert_eq!(MessageId::of_payload(&[1]), None);
    /// ```
    pub fn of_payload(payload: &[u8]) -> Option<MessageId> {
        crate::codec::split(payload).map(|(id, _)| id)
    }
}

/// 32-bit FNV-1a of a string's UTF-8 bytes, at compile time: the hash behind message ids (and
/// the object layer's prefab and RPC ids).
#[doc(hidden)]
pub const fn fnv1a(text: &str) -> u32 {
    let bytes = text.as_bytes();
    let mut hash: u32 = 0x811c_9dc5;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u32;
        hash = hash.wrapping_mul(0x0100_0193);
        i += 1;
    }
    hash
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({:#06x})", self.0)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#06x}", self.0)
    }
}

/// A type that can be sent as a network message.
///
/// Derive it with [`#[derive(Message)]`](macro@crate::Message) next to serde's derives; the
/// payload is encoded with [postcard](https://docs.rs/postcard).
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use sturnus_message::{Message, MessageId, Qos};
///
/// #[derive(Serialize, Deserialize, Message)]
/// struct Chat { text: String }
///
/// #[derive(Serialize, Deserialize, Message)]
/// #[message(id = 7, qos = Unreliable)]
/// struct Position { x: f32, y: f32 }
///
/// assert_eq!(Chat::QOS, Qos::ReliableFragmentedSequenced);
/// assert_eq!(Position::ID, MessageId(7));
/// assert_eq!(Position::QOS, Qos::Unreliable);
/// assert!(Chat::NAME.ends_with("::Chat"));
/// ```
pub trait Message: Serialize + DeserializeOwned + Send + 'static {
    /// The stable id.
    const ID: MessageId;
    /// The type's path, for error messages (a collision names both types).
    const NAME: &'static str;
    /// The kind of channel it is sent on unless [`CHANNEL`](Self::CHANNEL) or the send names
    /// one: the first typed channel of this kind in the layout.
    const QOS: Qos = Qos::ReliableFragmentedSequenced;
    /// The channel it is sent on unless the send names another (`None`: the first typed
    /// channel of kind [`QOS`](Self::QOS)).
    const CHANNEL: Option<ChannelId> = None;
}

#[cfg(test)]
mod tests {
    use super::{Message, MessageId};
    use crate::time::{TimeRequest, TimeResponse};

    #[test]
    fn the_layers_own_messages_are_internal_as_encoded_and_a_games_are_not() {
        let mut buf = Vec::new();
        crate::codec::encode(&TimeRequest { client_us: 7 }, &mut buf, 1200).unwrap();
        assert!(MessageId::of_payload(&buf).is_some_and(MessageId::is_internal));
        let answer = TimeResponse { client_us: 7, server_us: 9, tick_rate: 60 };
        crate::codec::encode(&answer, &mut buf, 1200).unwrap();
        assert!(MessageId::of_payload(&buf).is_some_and(MessageId::is_internal));
        assert_eq!(MessageId::of_payload(&buf), Some(<TimeResponse as Message>::ID));

        #[derive(serde::Serialize, serde::Deserialize, crate::Message)]
        struct Chat(String);
        crate::codec::encode(&Chat("hi".into()), &mut buf, 1200).unwrap();
        assert!(!MessageId::of_payload(&buf).is_some_and(MessageId::is_internal));
    }

    /// `is_internal` names exactly the messages the layer reserves for itself.
    #[test]
    fn is_internal_matches_the_reserved_ids() {
        let reserved: Vec<MessageId> = crate::codec::Names::with_internal().ids().collect();
        assert_eq!(reserved.len(), 5);
        assert!(reserved.iter().all(|id| id.is_internal()), "{reserved:?}");
        let internal = (0..=u16::MAX).map(MessageId).filter(|id| id.is_internal()).count();
        assert_eq!(internal, reserved.len());
    }
}
