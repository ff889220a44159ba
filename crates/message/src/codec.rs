//! The message layer's framing: a two-byte little-endian id, then the postcard payload.

use rustc_hash::FxHashMap;
use std::any::TypeId;

use serde::de::DeserializeOwned;

use crate::{Message, MessageError, MessageId};

/// Encodes `msg` into `buf` (replacing its contents), checking the size limit.
pub(crate) fn encode<T: Message>(
    msg: &T,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<(), MessageError> {
    encode_with::<T>(buf, max, |out| put(out, msg))
}

/// Appends `value`'s postcard encoding to `out`. A small value (most game messages) is written
/// into a stack buffer and appended in one copy: postcard's growing-`Vec` writer checks the
/// capacity for every byte.
pub fn put<T: serde::Serialize + ?Sized>(
    out: &mut Vec<u8>,
    value: &T,
) -> Result<(), postcard::Error> {
    let mut small = [0u8; 128];
    match postcard::to_slice(value, &mut small) {
        Ok(used) => {
            out.extend_from_slice(used);
            Ok(())
        }
        Err(postcard::Error::SerializeBufferFull) => {
            let buf = std::mem::take(out);
            *out = postcard::to_extend(value, buf)?;
            Ok(())
        }
        Err(err) => Err(err),
    }
}

/// Encodes a message of type `T` whose payload `write` appends after the id into `buf`
/// (replacing its contents), checking the size limit.
pub(crate) fn encode_with<T: Message>(
    buf: &mut Vec<u8>,
    max: usize,
    write: impl FnOnce(&mut Vec<u8>) -> Result<(), postcard::Error>,
) -> Result<(), MessageError> {
    buf.clear();
    buf.extend_from_slice(&T::ID.0.to_le_bytes());
    write(buf).map_err(|source| MessageError::Encode { name: T::NAME, source })?;
    if buf.len() > max {
        return Err(MessageError::TooLarge { name: T::NAME, len: buf.len(), max });
    }
    Ok(())
}

/// The id and the payload of an encoded message, or `None` if it is too short to have an id.
pub(crate) fn split(bytes: &[u8]) -> Option<(MessageId, &[u8])> {
    let (id, body) = bytes.split_first_chunk::<2>()?;
    Some((MessageId(u16::from_le_bytes(*id)), body))
}

/// Decodes a payload, refusing trailing bytes (they mean the sender meant another type).
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Option<T> {
    match postcard::take_from_bytes::<T>(body) {
        Ok((value, [])) => Some(value),
        _ => None,
    }
}

/// Which type owns each id on this side, to catch collisions. Types are told apart by
/// `TypeId`, so two types of the same name (declared in two functions of one module, which
/// hash alike) collide too.
#[derive(Debug, Default)]
pub(crate) struct Names {
    by_id: FxHashMap<MessageId, (TypeId, &'static str)>,
    /// The type claimed last: a stream of one type (the usual hot path) skips the map.
    last: Option<TypeId>,
}

impl Names {
    /// Records that `T` uses its id, or reports the type that already does.
    pub(crate) fn claim<T: Message>(&mut self) -> Result<(), MessageError> {
        let ty = TypeId::of::<T>();
        if self.last == Some(ty) {
            return Ok(());
        }
        self.claim_as(T::ID, ty, T::NAME)?;
        self.last = Some(ty);
        Ok(())
    }

    fn claim_as(
        &mut self,
        id: MessageId,
        ty: TypeId,
        name: &'static str,
    ) -> Result<(), MessageError> {
        match self.by_id.get(&id) {
            Some((first_ty, first)) if *first_ty != ty => {
                Err(MessageError::IdCollision { id, first, second: name })
            }
            Some(_) => Ok(()),
            None => {
                self.by_id.insert(id, (ty, name));
                Ok(())
            }
        }
    }

    /// The ids claimed so far.
    #[cfg(test)]
    pub(crate) fn ids(&self) -> impl Iterator<Item = MessageId> + '_ {
        self.by_id.keys().copied()
    }

    /// A registry holding the layer's own messages, so user types cannot take their ids.
    pub(crate) fn with_internal() -> Self {
        let mut names = Self::default();
        let own = [
            names.claim::<crate::auth::AuthRequest>(),
            names.claim::<crate::auth::AuthResponse>(),
            names.claim::<crate::auth::Goodbye>(),
            names.claim::<crate::time::TimeRequest>(),
            names.claim::<crate::time::TimeResponse>(),
        ];
        assert!(own.iter().all(Result::is_ok), "the layer's own message ids are distinct");
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_refuses_trailing_bytes() {
        let bytes = postcard::to_allocvec(&7u32).unwrap();
        assert_eq!(decode::<u32>(&bytes), Some(7));
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode::<u32>(&longer), None);
        assert_eq!(decode::<u32>(&[]), None);
    }

    #[derive(serde::Serialize, serde::Deserialize, crate::Message)]
    struct Say(String);

    #[test]
    fn a_message_costs_its_id_and_its_postcard_bytes() {
        let mut buf = Vec::new();
        encode(&Say("x".repeat(30)), &mut buf, 1024).unwrap();
        // Two bytes of id, one of string length, thirty of text.
        assert_eq!(buf.len(), 2 + 1 + 30);
        assert_eq!(split(&buf).map(|(id, _)| id), Some(Say::ID));
        let err = encode(&Say("x".repeat(30)), &mut buf, 32).unwrap_err();
        assert!(matches!(err, MessageError::TooLarge { len: 33, max: 32, .. }), "{err}");
    }

    #[test]
    fn split_needs_two_bytes() {
        assert_eq!(split(&[1]), None);
        assert_eq!(split(&[1, 2, 3]), Some((MessageId(0x0201), &[3u8][..])));
    }

    #[test]
    fn names_report_both_types() {
        struct A;
        struct B;
        let mut names = Names::default();
        let (a, b) = (TypeId::of::<A>(), TypeId::of::<B>());
        names.claim_as(MessageId(1), a, "m::Same").unwrap();
        names.claim_as(MessageId(1), a, "m::Same").unwrap();
        // Another type, even of the same name, collides.
        let err = names.claim_as(MessageId(1), b, "m::Same").unwrap_err();
        assert!(matches!(err, MessageError::IdCollision { .. }));
        let err = names.claim_as(MessageId(1), b, "m::Other").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("m::Same") && text.contains("m::Other"), "{text}");
    }
}
