//! Synchronised collections: they send the operations done on them, not their contents.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::Hash;
use std::ops::Deref;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::field::{encodes_as, put, take};
use crate::{Changes, ReadError, SyncField};

/// Applies one delta: a count, then that many operations, each handed to `apply`.
fn read_ops<Op: DeserializeOwned>(
    input: &mut &[u8],
    mut apply: impl FnMut(Op) -> Result<(), ReadError>,
) -> Result<(), ReadError> {
    let count: u32 = take(input)?;
    for _ in 0..count {
        apply(take(input)?)?;
    }
    Ok(())
}

/// Writes a log's length and each entry's wire form.
fn write_ops<'a, C, Op: Serialize>(
    log: &'a [C],
    out: &mut Vec<u8>,
    wire: impl Fn(&'a C) -> Op,
) -> Result<(), postcard::Error> {
    let count = u32::try_from(log.len()).map_err(|_| postcard::Error::SerializeBufferFull)?;
    put(out, &count)?;
    log.iter().try_for_each(|change| put(out, &wire(change)))
}

/// An index from the wire, checked against a length (`inclusive`: one past the end is valid).
fn index(index: u32, len: usize, inclusive: bool) -> Result<usize, ReadError> {
    let i = index as usize;
    if i < len || (inclusive && i == len) {
        Ok(i)
    } else {
        Err(ReadError::OutOfRange { index: u64::from(index), len })
    }
}

fn wire_index(i: usize) -> u32 {
    u32::try_from(i).expect("a synchronised list holds fewer than 2^32 items")
}

// ---------------------------------------------------------------------------------------------

/// One operation on a [`SyncList`], as a hook sees it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ListChange<T> {
    /// `value` was inserted at `index` (a push inserts at the end).
    Inserted {
        /// Where.
        index: usize,
        /// What.
        value: T,
    },
    /// The item at `index` was replaced.
    Set {
        /// Where.
        index: usize,
        /// The item before.
        old: T,
        /// The item now.
        new: T,
    },
    /// The item at `index` was removed.
    Removed {
        /// Where it was.
        index: usize,
        /// The item.
        value: T,
    },
    /// Every item was removed.
    Cleared,
}

#[derive(Serialize, Deserialize)]
enum ListOp<V> {
    Insert(u32, V),
    Set(u32, V),
    Remove(u32),
    Clear,
}

/// A list the server keeps in sync on its clients: after the first full copy, only the
/// operations done on it travel. Read it as a slice (`Deref`); change it with the `Vec`-like
/// methods. A client's hook runs once per operation with a [`ListChange`].
///
/// Like `Vec`, the methods that take an index panic when it is out of range (that is a bug in
/// the caller); an out-of-range index arriving from the network is refused and counted.
///
/// ```
/// use sturnus_object::{SyncField, SyncList};
/// let mut items = SyncList::new();
/// items.push("sword".to_string());
/// items.push("shield".to_string());
/// items.remove(0);
/// assert_eq!(&items[..], ["shield"]);
/// assert!(items.is_dirty());
/// ```
#[derive(Clone)]
pub struct SyncList<T> {
    items: Vec<T>,
    /// What was done since the last sync.
    log: Vec<ListChange<T>>,
}

impl<T> Default for SyncList<T> {
    fn default() -> Self {
        Self { items: Vec::new(), log: Vec::new() }
    }
}

impl<T: fmt::Debug> fmt::Debug for SyncList<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.items).finish()
    }
}

impl<T> Deref for SyncList<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.items
    }
}

impl<T> From<Vec<T>> for SyncList<T> {
    fn from(items: Vec<T>) -> Self {
        Self { items, log: Vec::new() }
    }
}

impl<T: Clone> SyncList<T> {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an item.
    pub fn push(&mut self, value: T) {
        self.insert(self.items.len(), value);
    }

    /// Inserts an item at `index`, shifting the later ones. Panics if `index > len`.
    pub fn insert(&mut self, index: usize, value: T) {
        self.items.insert(index, value.clone());
        self.log.push(ListChange::Inserted { index, value });
    }

    /// Replaces the item at `index`. Panics if `index >= len`.
    pub fn set(&mut self, index: usize, value: T) {
        let old = std::mem::replace(&mut self.items[index], value.clone());
        self.log.push(ListChange::Set { index, old, new: value });
    }

    /// Changes the item at `index` in place (sent as a set). Panics if `index >= len`.
    pub fn modify(&mut self, index: usize, change: impl FnOnce(&mut T)) {
        let old = self.items[index].clone();
        change(&mut self.items[index]);
        let new = self.items[index].clone();
        self.log.push(ListChange::Set { index, old, new });
    }

    /// Removes and returns the item at `index`. Panics if `index >= len`.
    pub fn remove(&mut self, index: usize) -> T {
        let value = self.items.remove(index);
        self.log.push(ListChange::Removed { index, value: value.clone() });
        value
    }

    /// Removes and returns the last item.
    pub fn pop(&mut self) -> Option<T> {
        (!self.items.is_empty()).then(|| self.remove(self.items.len() - 1))
    }

    /// Removes every item.
    pub fn clear(&mut self) {
        self.items.clear();
        self.log.push(ListChange::Cleared);
    }

    /// The items as a `Vec`.
    pub fn to_vec(&self) -> Vec<T> {
        self.items.clone()
    }
}

impl<T> SyncField for SyncList<T>
where
    T: Serialize + DeserializeOwned + Clone,
{
    type Change = ListChange<T>;

    fn is_dirty(&self) -> bool {
        !self.log.is_empty()
    }

    fn clear_dirty(&mut self) {
        self.log.clear();
    }

    fn write_full(&self, out: &mut Vec<u8>) -> Result<(), postcard::Error> {
        put(out, &self.items)
    }

    fn write_delta(&self, out: &mut Vec<u8>) -> Result<(), postcard::Error> {
        write_ops(&self.log, out, |change| match change {
            ListChange::Inserted { index, value } => ListOp::Insert(wire_index(*index), value),
            ListChange::Set { index, new, .. } => ListOp::Set(wire_index(*index), new),
            ListChange::Removed { index, .. } => ListOp::Remove(wire_index(*index)),
            ListChange::Cleared => ListOp::Clear,
        })
    }

    fn read_full(&mut self, input: &mut &[u8]) -> Result<(), ReadError> {
        self.items = take(input)?;
        Ok(())
    }

    fn read_full_changes(
        &mut self,
        input: &mut &[u8],
        changes: Option<&mut Changes<ListChange<T>>>,
    ) -> Result<(), ReadError> {
        let before = *input;
        let items: Vec<T> = take(input)?;
        let read = &before[..before.len() - input.len()];
        if let Some(changes) = changes.filter(|_| !encodes_as(&self.items, read)) {
            if !self.items.is_empty() {
                changes.push(ListChange::Cleared);
            }
            for (index, value) in items.iter().enumerate() {
                changes.push(ListChange::Inserted { index, value: value.clone() });
            }
        }
        self.items = items;
        Ok(())
    }

    fn read_delta(
        &mut self,
        input: &mut &[u8],
        mut changes: Option<&mut Changes<ListChange<T>>>,
    ) -> Result<(), ReadError> {
        let items = &mut self.items;
        read_ops(input, |op: ListOp<T>| {
            let change = match op {
                ListOp::Insert(i, value) => {
                    let index = index(i, items.len(), true)?;
                    let copy = changes.is_some().then(|| value.clone());
                    items.insert(index, value);
                    copy.map(|value| ListChange::Inserted { index, value })
                }
                ListOp::Set(i, value) => {
                    let index = index(i, items.len(), false)?;
                    let copy = changes.is_some().then(|| value.clone());
                    let old = std::mem::replace(&mut items[index], value);
                    copy.map(|new| ListChange::Set { index, old, new })
                }
                ListOp::Remove(i) => {
                    let index = index(i, items.len(), false)?;
                    let value = items.remove(index);
                    Some(ListChange::Removed { index, value })
                }
                ListOp::Clear => {
                    items.clear();
                    Some(ListChange::Cleared)
                }
            };
            if let (Some(changes), Some(change)) = (changes.as_deref_mut(), change) {
                changes.push(change);
            }
            Ok(())
        })
    }

    fn local_changes(&mut self, changes: &mut Changes<ListChange<T>>) {
        changes.extend(self.log.iter().cloned());
    }
}

// ---------------------------------------------------------------------------------------------

/// One operation on a [`SyncMap`], as a hook sees it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum MapChange<K, V> {
    /// A new key.
    Inserted {
        /// The key.
        key: K,
        /// Its value.
        value: V,
    },
    /// A key's value was replaced.
    Set {
        /// The key.
        key: K,
        /// The value before.
        old: V,
        /// The value now.
        new: V,
    },
    /// A key was removed.
    Removed {
        /// The key.
        key: K,
        /// Its value.
        value: V,
    },
    /// Every key was removed.
    Cleared,
}

#[derive(Serialize, Deserialize)]
enum MapOp<K, V> {
    Insert(K, V),
    Remove(K),
    Clear,
}

/// A map the server keeps in sync on its clients, by operations. Read it as a `HashMap`
/// (`Deref`); change it with [`insert`](Self::insert), [`remove`](Self::remove) and
/// [`clear`](Self::clear). A client's hook runs once per operation with a [`MapChange`].
///
/// ```
/// use sturnus_object::SyncMap;
/// let mut scores = SyncMap::new();
/// scores.insert("ada", 3);
/// scores.insert("ada", 4);
/// assert_eq!(scores.get("ada"), Some(&4));
/// ```
#[derive(Clone)]
pub struct SyncMap<K, V> {
    map: HashMap<K, V>,
    log: Vec<MapChange<K, V>>,
}

impl<K, V> Default for SyncMap<K, V> {
    fn default() -> Self {
        Self { map: HashMap::new(), log: Vec::new() }
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for SyncMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(&self.map).finish()
    }
}

impl<K, V> Deref for SyncMap<K, V> {
    type Target = HashMap<K, V>;
    fn deref(&self) -> &HashMap<K, V> {
        &self.map
    }
}

impl<K: Eq + Hash + Clone, V: Clone> SyncMap<K, V> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value`; returns the value it had.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let old = self.map.insert(key.clone(), value.clone());
        self.log.push(match &old {
            Some(old) => MapChange::Set { key, old: old.clone(), new: value },
            None => MapChange::Inserted { key, value },
        });
        old
    }

    /// Removes `key`; returns its value.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (key, value) = self.map.remove_entry(key)?;
        self.log.push(MapChange::Removed { key, value: value.clone() });
        Some(value)
    }

    /// Removes every key.
    pub fn clear(&mut self) {
        self.map.clear();
        self.log.push(MapChange::Cleared);
    }
}

impl<K, V> SyncField for SyncMap<K, V>
where
    K: Serialize + DeserializeOwned + Eq + Hash + Clone,
    V: Serialize + DeserializeOwned + Clone,
{
    type Change = MapChange<K, V>;

    fn is_dirty(&self) -> bool {
        !self.log.is_empty()
    }

    fn clear_dirty(&mut self) {
        self.log.clear();
    }

    fn write_full(&self, out: &mut Vec<u8>) -> Result<(), postcard::Error> {
        put(out, &self.map)
    }

    fn write_delta(&self, out: &mut Vec<u8>) -> Result<(), postcard::Error> {
        write_ops(&self.log, out, |change| match change {
            MapChange::Inserted { key, value } | MapChange::Set { key, new: value, .. } => {
                MapOp::Insert(key, value)
            }
            MapChange::Removed { key, .. } => MapOp::Remove(key),
            MapChange::Cleared => MapOp::Clear,
        })
    }

    fn read_full(&mut self, input: &mut &[u8]) -> Result<(), ReadError> {
        self.map = take(input)?;
        Ok(())
    }

    fn read_full_changes(
        &mut self,
        input: &mut &[u8],
        changes: Option<&mut Changes<MapChange<K, V>>>,
    ) -> Result<(), ReadError> {
        let map: HashMap<K, V> = take(input)?;
        // Compared by content: two equal maps may iterate (and encode) in different orders.
        let same = |old: &HashMap<K, V>| {
            old.len() == map.len()
                && map.iter().all(|(key, value)| {
                    old.get(key).is_some_and(|o| {
                        postcard::to_allocvec(value).is_ok_and(|bytes| encodes_as(o, &bytes))
                    })
                })
        };
        if let Some(changes) = changes.filter(|_| !same(&self.map)) {
            if !self.map.is_empty() {
                changes.push(MapChange::Cleared);
            }
            for (key, value) in &map {
                changes.push(MapChange::Inserted { key: key.clone(), value: value.clone() });
            }
        }
        self.map = map;
        Ok(())
    }

    fn read_delta(
        &mut self,
        input: &mut &[u8],
        mut changes: Option<&mut Changes<MapChange<K, V>>>,
    ) -> Result<(), ReadError> {
        let map = &mut self.map;
        read_ops(input, |op: MapOp<K, V>| {
            let change = match op {
                MapOp::Insert(key, value) => {
                    let copy = changes.is_some().then(|| (key.clone(), value.clone()));
                    let old = map.insert(key, value);
                    copy.map(|(key, value)| match old {
                        Some(old) => MapChange::Set { key, old, new: value },
                        None => MapChange::Inserted { key, value },
                    })
                }
                // Removing a key that is not there is harmless: nothing changes.
                MapOp::Remove(key) => {
                    map.remove_entry(&key).map(|(key, value)| MapChange::Removed { key, value })
                }
                MapOp::Clear => {
                    map.clear();
                    Some(MapChange::Cleared)
                }
            };
            if let (Some(changes), Some(change)) = (changes.as_deref_mut(), change) {
                changes.push(change);
            }
            Ok(())
        })
    }

    fn local_changes(&mut self, changes: &mut Changes<MapChange<K, V>>) {
        changes.extend(self.log.iter().cloned());
    }
}

// ---------------------------------------------------------------------------------------------

/// One operation on a [`SyncSet`], as a hook sees it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SetChange<T> {
    /// An item was added.
    Added(T),
    /// An item was removed.
    Removed(T),
    /// Every item was removed.
    Cleared,
}

#[derive(Serialize, Deserialize)]
enum SetOp<T> {
    Add(T),
    Remove(T),
    Clear,
}

/// A set the server keeps in sync on its clients, by operations. Read it as a `HashSet`
/// (`Deref`); change it with [`insert`](Self::insert), [`remove`](Self::remove) and
/// [`clear`](Self::clear). A client's hook runs once per operation with a [`SetChange`].
///
/// ```
/// use sturnus_object::SyncSet;
/// let mut tags = SyncSet::new();
/// assert!(tags.insert("red"));
/// assert!(!tags.insert("red"));
/// assert!(tags.contains("red"));
/// ```
#[derive(Clone)]
pub struct SyncSet<T> {
    set: HashSet<T>,
    log: Vec<SetChange<T>>,
}

impl<T> Default for SyncSet<T> {
    fn default() -> Self {
        Self { set: HashSet::new(), log: Vec::new() }
    }
}

impl<T: fmt::Debug> fmt::Debug for SyncSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(&self.set).finish()
    }
}

impl<T> Deref for SyncSet<T> {
    type Target = HashSet<T>;
    fn deref(&self) -> &HashSet<T> {
        &self.set
    }
}

impl<T: Eq + Hash + Clone> SyncSet<T> {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an item; whether it was new (only a new item is sent).
    pub fn insert(&mut self, value: T) -> bool {
        let added = self.set.insert(value.clone());
        if added {
            self.log.push(SetChange::Added(value));
        }
        added
    }

    /// Removes an item; whether it was there (only then is the removal sent).
    pub fn remove<Q>(&mut self, value: &Q) -> bool
    where
        T: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self.set.take(value) {
            Some(value) => {
                self.log.push(SetChange::Removed(value));
                true
            }
            None => false,
        }
    }

    /// Removes every item.
    pub fn clear(&mut self) {
        self.set.clear();
        self.log.push(SetChange::Cleared);
    }
}

impl<T> SyncField for SyncSet<T>
where
    T: Serialize + DeserializeOwned + Eq + Hash + Clone,
{
    type Change = SetChange<T>;

    fn is_dirty(&self) -> bool {
        !self.log.is_empty()
    }

    fn clear_dirty(&mut self) {
        self.log.clear();
    }

    fn write_full(&self, out: &mut Vec<u8>) -> Result<(), postcard::Error> {
        put(out, &self.set)
    }

    fn write_delta(&self, out: &mut Vec<u8>) -> Result<(), postcard::Error> {
        write_ops(&self.log, out, |change| match change {
            SetChange::Added(value) => SetOp::Add(value),
            SetChange::Removed(value) => SetOp::Remove(value),
            SetChange::Cleared => SetOp::Clear,
        })
    }

    fn read_full(&mut self, input: &mut &[u8]) -> Result<(), ReadError> {
        self.set = take(input)?;
        Ok(())
    }

    fn read_full_changes(
        &mut self,
        input: &mut &[u8],
        changes: Option<&mut Changes<SetChange<T>>>,
    ) -> Result<(), ReadError> {
        let set: HashSet<T> = take(input)?;
        let same = |old: &HashSet<T>| old.len() == set.len() && set.iter().all(|i| old.contains(i));
        if let Some(changes) = changes.filter(|_| !same(&self.set)) {
            if !self.set.is_empty() {
                changes.push(SetChange::Cleared);
            }
            for item in &set {
                changes.push(SetChange::Added(item.clone()));
            }
        }
        self.set = set;
        Ok(())
    }

    fn read_delta(
        &mut self,
        input: &mut &[u8],
        mut changes: Option<&mut Changes<SetChange<T>>>,
    ) -> Result<(), ReadError> {
        let set = &mut self.set;
        read_ops(input, |op: SetOp<T>| {
            let change = match op {
                SetOp::Add(value) => {
                    let copy = changes.is_some().then(|| value.clone());
                    set.insert(value).then_some(copy).flatten().map(SetChange::Added)
                }
                SetOp::Remove(value) => set.take(&value).map(SetChange::Removed),
                SetOp::Clear => {
                    set.clear();
                    Some(SetChange::Cleared)
                }
            };
            if let (Some(changes), Some(change)) = (changes.as_deref_mut(), change) {
                changes.push(change);
            }
            Ok(())
        })
    }

    fn local_changes(&mut self, changes: &mut Changes<SetChange<T>>) {
        changes.extend(self.log.iter().cloned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `server`'s delta to `client`; returns the changes the client saw.
    fn sync<F: SyncField>(server: &mut F, client: &mut F) -> Vec<F::Change> {
        let mut wire = Vec::new();
        server.write_delta(&mut wire).unwrap();
        server.clear_dirty();
        let mut changes = Changes::new();
        let mut input = &wire[..];
        client.read_delta(&mut input, Some(&mut changes)).unwrap();
        assert!(input.is_empty());
        changes.into_iter().collect()
    }

    #[test]
    fn list_operations_replay_with_their_old_values() {
        let mut server = SyncList::from(vec![1, 2, 3]);
        let mut client = server.clone();
        server.push(4);
        server.set(0, 10);
        server.remove(1);
        server.insert(0, 0);
        let changes = sync(&mut server, &mut client);
        assert_eq!(&client[..], &server[..]);
        assert_eq!(
            changes,
            [
                ListChange::Inserted { index: 3, value: 4 },
                ListChange::Set { index: 0, old: 1, new: 10 },
                ListChange::Removed { index: 1, value: 2 },
                ListChange::Inserted { index: 0, value: 0 },
            ]
        );
        server.clear();
        assert_eq!(sync(&mut server, &mut client), [ListChange::Cleared]);
        assert!(client.is_empty());
    }

    #[test]
    fn out_of_range_list_indices_from_the_wire_are_refused() {
        let mut wire = Vec::new();
        put(&mut wire, &1u32).unwrap();
        put(&mut wire, &ListOp::<u8>::Remove(5)).unwrap();
        let mut client = SyncList::<u8>::from(vec![1]);
        let err = client.read_delta(&mut &wire[..], None).unwrap_err();
        assert!(matches!(err, ReadError::OutOfRange { index: 5, len: 1 }), "{err}");
        assert_eq!(&client[..], [1]);
    }

    #[test]
    fn maps_and_sets_converge_and_report_each_operation() {
        let mut server = SyncMap::new();
        let mut client = SyncMap::new();
        server.insert(1, "a".to_string());
        server.insert(1, "b".to_string());
        server.insert(2, "c".to_string());
        server.remove(&2);
        let changes = sync(&mut server, &mut client);
        assert_eq!(*client, *server);
        assert_eq!(changes.len(), 4);
        assert_eq!(changes[1], MapChange::Set { key: 1, old: "a".into(), new: "b".into() });

        let mut server = SyncSet::new();
        let mut client = SyncSet::new();
        server.insert(5);
        server.insert(6);
        server.remove(&5);
        let changes = sync(&mut server, &mut client);
        assert_eq!(*client, *server);
        assert_eq!(changes, [SetChange::Added(5), SetChange::Added(6), SetChange::Removed(5)]);
    }
}
