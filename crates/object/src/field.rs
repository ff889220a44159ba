//! Synchronised fields: the [`SyncField`] trait, [`SyncVar`], and the dirty-mask encoding.

use std::fmt;
use std::ops::Deref;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ReadError;

/// Appends `value`'s postcard encoding to `out` (the message layer's fast small-value path).
pub(crate) use sturnus_message::__private::put;

/// Reads one `T` from the front of `input`, advancing it.
pub(crate) fn take<T: DeserializeOwned>(input: &mut &[u8]) -> Result<T, ReadError> {
    let (value, rest) = postcard::take_from_bytes(input)?;
    *input = rest;
    Ok(value)
}

/// Whether `value` encodes as `bytes` (on the stack when it is small).
pub(crate) fn encodes_as<T: Serialize>(value: &T, bytes: &[u8]) -> bool {
    let mut buf = [0u8; 64];
    match postcard::to_slice(value, &mut buf) {
        Ok(encoded) => encoded == bytes,
        Err(_) => postcard::to_allocvec(value).is_ok_and(|encoded| encoded == bytes),
    }
}

/// A field of a [`NetworkBehaviour`](crate::NetworkBehaviour) that the server keeps in sync on
/// its clients: [`SyncVar`], [`SyncList`](crate::SyncList), [`SyncMap`](crate::SyncMap),
/// [`SyncSet`](crate::SyncSet), or your own.
///
/// The server sends a field's full state when it spawns an object to a client, and afterwards
/// only the fields that changed, each as its delta (a new value, or the operations done on a
/// collection). `#[derive(NetworkBehaviour)]` calls these methods for every `#[sync]` field.
pub trait SyncField {
    /// One change as a client's hook sees it.
    type Change;

    /// Whether the field changed since the last [`clear_dirty`](Self::clear_dirty).
    fn is_dirty(&self) -> bool;
    /// Forgets the changes: they were sent.
    fn clear_dirty(&mut self);
    /// Appends the whole state.
    fn write_full(&self, out: &mut Vec<u8>) -> Result<(), postcard::Error>;
    /// Appends what changed since the last `clear_dirty`.
    fn write_delta(&self, out: &mut Vec<u8>) -> Result<(), postcard::Error>;
    /// Replaces the state with one written by [`write_full`](Self::write_full), advancing
    /// `input`.
    fn read_full(&mut self, input: &mut &[u8]) -> Result<(), ReadError>;
    /// Replaces the state with one written by [`write_full`](Self::write_full), like
    /// [`read_full`](Self::read_full), and appends to `changes` (when it is given: the field
    /// has a hook) how the state changed, if it did. It applies the full states that a
    /// behaviour synced on an unreliable channel receives instead of deltas. By default it
    /// reports nothing; a [`SyncVar`] reports its old and new values when their encodings
    /// differ, and the collections, when their contents differ, a clear followed by an
    /// insertion of each item.
    fn read_full_changes(
        &mut self,
        input: &mut &[u8],
        changes: Option<&mut Changes<Self::Change>>,
    ) -> Result<(), ReadError> {
        let _ = changes;
        self.read_full(input)
    }
    /// Applies a delta written by [`write_delta`](Self::write_delta), advancing `input`, and
    /// appends each change to `changes` when it is given (the field has a hook).
    fn read_delta(
        &mut self,
        input: &mut &[u8],
        changes: Option<&mut Changes<Self::Change>>,
    ) -> Result<(), ReadError>;
    /// Appends the changes made on this side since the last sync, as a client would see them:
    /// host mode runs the host player's hooks with them, since its objects are the server's.
    fn local_changes(&mut self, changes: &mut Changes<Self::Change>);
}

/// The changes one field received in one update, for its hook. A `SyncVar` gets one per
/// update and a collection usually one, so the first is kept inline: an update to a hooked
/// field allocates nothing unless it carries several operations.
#[derive(Debug, Clone, PartialEq)]
pub struct Changes<C> {
    first: Option<C>,
    rest: Vec<C>,
}

impl<C> Default for Changes<C> {
    fn default() -> Self {
        Self { first: None, rest: Vec::new() }
    }
}

impl<C> Changes<C> {
    /// No changes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a change after the others.
    pub fn push(&mut self, change: C) {
        if self.first.is_none() && self.rest.is_empty() {
            self.first = Some(change);
        } else {
            self.rest.push(change);
        }
    }

    /// The changes, in order.
    pub fn iter(&self) -> impl Iterator<Item = &C> {
        self.first.iter().chain(&self.rest)
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.first.is_none()
    }
}

impl<C> IntoIterator for Changes<C> {
    type Item = C;
    type IntoIter = std::iter::Chain<std::option::IntoIter<C>, std::vec::IntoIter<C>>;

    fn into_iter(self) -> Self::IntoIter {
        self.first.into_iter().chain(self.rest)
    }
}

impl<C> Extend<C> for Changes<C> {
    fn extend<I: IntoIterator<Item = C>>(&mut self, iter: I) {
        for change in iter {
            self.push(change);
        }
    }
}

/// Writes which of `dirty` are set: bit *i* of the mask is field *i*, seven bits per byte with
/// the high bit saying another byte follows, and trailing zero bytes left out. So a change to
/// one of the first seven fields costs one byte, and there is no limit on the number of fields.
#[doc(hidden)]
pub fn write_mask(dirty: &[bool], out: &mut Vec<u8>) {
    let last = dirty.iter().rposition(|d| *d).map_or(0, |i| i / 7);
    for group in 0..=last {
        let mut byte = 0u8;
        for bit in 0..7 {
            if dirty.get(group * 7 + bit).copied().unwrap_or(false) {
                byte |= 1 << bit;
            }
        }
        if group < last {
            byte |= 0x80;
        }
        out.push(byte);
    }
}

/// Reads a mask written by [`write_mask`] into `dirty` (all false on entry), refusing a bit
/// past its end.
#[doc(hidden)]
pub fn read_mask(input: &mut &[u8], dirty: &mut [bool]) -> Result<(), ReadError> {
    let mut group = 0;
    loop {
        let (&byte, rest) = input
            .split_first()
            .ok_or(ReadError::Decode(postcard::Error::DeserializeUnexpectedEnd))?;
        *input = rest;
        for bit in 0..7 {
            if byte & (1 << bit) != 0 {
                let field = group * 7 + bit;
                *dirty.get_mut(field).ok_or(ReadError::UnknownField(field))? = true;
            }
        }
        if byte & 0x80 == 0 {
            return Ok(());
        }
        group += 1;
    }
}

/// A value the server keeps in sync on its clients (UNET's and Mirage's SyncVar).
///
/// Read it through `Deref`; change it with [`set`](Self::set) (or [`replace`](Self::replace),
/// [`modify`](Self::modify)), which marks it dirty so the next sync sends it. On a client the
/// field's hook, if any, runs with the old and new values when an update arrives.
///
/// ```
/// use sturnus_object::{SyncField, SyncVar};
/// let mut health = SyncVar::new(100);
/// assert!(!health.is_dirty());
/// health.set(100); // unchanged: nothing to send
/// assert!(!health.is_dirty());
/// health.set(90);
/// assert_eq!(*health, 90);
/// assert!(health.is_dirty());
/// ```
#[derive(Clone, Default)]
pub struct SyncVar<T> {
    value: T,
    dirty: bool,
    /// The value at the last sync, kept (moved, not cloned) from the first change after it.
    previous: Option<T>,
}

/// A [`SyncVar`]'s change, as its hook sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct VarChange<T> {
    /// The value before.
    pub old: T,
    /// The value now.
    pub new: T,
}

impl<T> SyncVar<T> {
    /// A clean field holding `value`.
    pub const fn new(value: T) -> Self {
        Self { value, dirty: false, previous: None }
    }

    /// The value.
    pub fn get(&self) -> &T {
        &self.value
    }

    /// Sets the value and marks the field dirty if it differs from the current one.
    pub fn set(&mut self, value: T)
    where
        T: PartialEq,
    {
        if self.value != value {
            self.replace(value);
        }
    }

    /// Sets the value and marks the field dirty even if it is equal; returns nothing, as the
    /// old value is kept for the hooks of host mode.
    pub fn replace(&mut self, value: T) {
        let old = std::mem::replace(&mut self.value, value);
        if !self.dirty {
            self.previous = Some(old);
            self.dirty = true;
        }
    }

    /// Changes the value in place and marks the field dirty.
    pub fn modify(&mut self, change: impl FnOnce(&mut T))
    where
        T: Clone,
    {
        if !self.dirty {
            self.previous = Some(self.value.clone());
            self.dirty = true;
        }
        change(&mut self.value);
    }

    /// The value, consuming the field.
    pub fn into_inner(self) -> T {
        self.value
    }
}

impl<T> Deref for SyncVar<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> From<T> for SyncVar<T> {
    fn from(value: T) -> Self {
        Self::new(value)
    }
}

impl<T: fmt::Debug> fmt::Debug for SyncVar<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.dirty {
            write!(f, "SyncVar({:?}, dirty)", self.value)
        } else {
            write!(f, "SyncVar({:?})", self.value)
        }
    }
}

impl<T> SyncField for SyncVar<T>
where
    T: Serialize + DeserializeOwned + Clone,
{
    type Change = VarChange<T>;

    fn is_dirty(&self) -> bool {
        self.dirty
    }

    fn clear_dirty(&mut self) {
        self.dirty = false;
        self.previous = None;
    }

    fn write_full(&self, out: &mut Vec<u8>) -> Result<(), postcard::Error> {
        put(out, &self.value)
    }

    fn write_delta(&self, out: &mut Vec<u8>) -> Result<(), postcard::Error> {
        put(out, &self.value)
    }

    fn read_full(&mut self, input: &mut &[u8]) -> Result<(), ReadError> {
        self.value = take(input)?;
        Ok(())
    }

    fn read_full_changes(
        &mut self,
        input: &mut &[u8],
        changes: Option<&mut Changes<VarChange<T>>>,
    ) -> Result<(), ReadError> {
        let before = *input;
        let new: T = take(input)?;
        let Some(changes) = changes else {
            self.value = new;
            return Ok(());
        };
        // The same value again (a newer state that left this field as it was) is no change.
        let read = &before[..before.len() - input.len()];
        if encodes_as(&self.value, read) {
            self.value = new;
        } else {
            let old = std::mem::replace(&mut self.value, new);
            changes.push(VarChange { old, new: self.value.clone() });
        }
        Ok(())
    }

    fn read_delta(
        &mut self,
        input: &mut &[u8],
        changes: Option<&mut Changes<VarChange<T>>>,
    ) -> Result<(), ReadError> {
        let new: T = take(input)?;
        let old = std::mem::replace(&mut self.value, new);
        if let Some(changes) = changes {
            changes.push(VarChange { old, new: self.value.clone() });
        }
        Ok(())
    }

    fn local_changes(&mut self, changes: &mut Changes<VarChange<T>>) {
        if let Some(old) = self.previous.take() {
            changes.push(VarChange { old, new: self.value.clone() });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask_round_trip(dirty: &[bool]) -> Vec<u8> {
        let mut out = Vec::new();
        write_mask(dirty, &mut out);
        let mut read = vec![false; dirty.len()];
        let mut input = &out[..];
        read_mask(&mut input, &mut read).unwrap();
        assert!(input.is_empty());
        assert_eq!(read, dirty);
        out
    }

    #[test]
    fn masks_cost_a_byte_per_seven_fields_up_to_the_last_dirty_one() {
        let mut dirty = vec![false; 100];
        assert_eq!(mask_round_trip(&dirty), [0]);
        dirty[0] = true;
        assert_eq!(mask_round_trip(&dirty), [1]);
        dirty[6] = true;
        assert_eq!(mask_round_trip(&dirty), [0x41]);
        dirty[7] = true;
        assert_eq!(mask_round_trip(&dirty).len(), 2);
        dirty[99] = true;
        assert_eq!(mask_round_trip(&dirty).len(), 15);
    }

    #[test]
    fn masks_refuse_fields_that_do_not_exist_and_truncation() {
        let mut dirty = [false; 3];
        assert!(matches!(read_mask(&mut &[0x08][..], &mut dirty), Err(ReadError::UnknownField(3))));
        assert!(read_mask(&mut &[0x80][..], &mut dirty).is_err());
        assert!(read_mask(&mut &[][..], &mut dirty).is_err());
    }

    #[test]
    fn a_sync_var_reports_old_and_new_on_both_sides() {
        let mut server = SyncVar::new(String::from("a"));
        server.set("b".into());
        server.set("c".into());
        let mut wire = Vec::new();
        server.write_delta(&mut wire).unwrap();
        let mut local = Changes::new();
        server.local_changes(&mut local);
        // The host sees one change from the last synced value to the current one.
        let seen: Vec<_> = local.iter().cloned().collect();
        assert_eq!(seen, [VarChange { old: "a".into(), new: "c".into() }]);

        let mut client = SyncVar::new(String::from("a"));
        let mut changes = Changes::new();
        client.read_delta(&mut &wire[..], Some(&mut changes)).unwrap();
        assert_eq!(*client, "c");
        assert!(!client.is_dirty());
        assert_eq!(changes, local);
        server.clear_dirty();
        assert!(!server.is_dirty());
    }
}

#[cfg(test)]
mod changes_tests {
    use super::Changes;

    #[test]
    fn changes_keep_their_order_with_the_first_inline() {
        let mut changes = Changes::new();
        assert!(changes.is_empty());
        changes.push(1);
        assert_eq!((changes.len(), changes.rest.capacity()), (1, 0));
        changes.extend([2, 3]);
        assert_eq!(changes.iter().copied().collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(changes.len(), 3);
    }
}
