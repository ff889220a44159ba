//! The endpoint's table from a peer's address to its connection's slot.
//!
//! Every datagram looks its sender up here, so the table is built for that lookup at a
//! crowd's scale: open addressing with linear probing over 8-byte entries (eight to a cache
//! line), each a 32-bit tag of the address's keyed hash and the slot. The address itself is
//! not stored: a tag that matches is confirmed against the slot's connection, which the
//! datagram's handling reads next anyway. A lookup therefore costs one line of the table, and
//! [`AddrTable::prefetch`] can ask for that line ahead of time from the address alone (a
//! general-purpose map offers no such step). Removal shifts later entries back (no
//! tombstones), and the table stays at most half full, so probes are short.

use std::hash::BuildHasher;
use std::net::SocketAddr;

use super::addr_hash::AddrHashBuilder;
use super::prefetch;

/// An unused entry's slot.
const EMPTY: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    /// The low 32 bits of the address's hash: its home is `tag & mask`.
    tag: u32,
    slot: u32,
}

const VACANT: Entry = Entry { tag: 0, slot: EMPTY };

/// See the module documentation. Slots must be below `u32::MAX`.
#[derive(Debug)]
pub(crate) struct AddrTable {
    entries: Vec<Entry>,
    len: usize,
    hasher: AddrHashBuilder,
}

impl AddrTable {
    /// An empty table hashing under `hasher`'s key.
    pub(crate) fn new(hasher: AddrHashBuilder) -> Self {
        Self { entries: Vec::new(), len: 0, hasher }
    }

    /// The entries in use.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The tag of `addr` (the low bits of its keyed hash).
    #[expect(clippy::cast_possible_truncation, reason = "the low half of the hash is the tag")]
    pub(crate) fn tag(&self, addr: &SocketAddr) -> u32 {
        self.hasher.hash_one(addr) as u32
    }

    fn mask(&self) -> usize {
        self.entries.len().wrapping_sub(1)
    }

    /// The slots whose entries carry `tag`, in probe order: the candidates for its address.
    pub(crate) fn candidates(&self, tag: u32) -> impl Iterator<Item = u32> + '_ {
        let mask = self.mask();
        let mut at = tag as usize & mask;
        let mut left = self.entries.len();
        std::iter::from_fn(move || {
            while left > 0 {
                left -= 1;
                let entry = self.entries[at];
                at = (at + 1) & mask;
                if entry.slot == EMPTY {
                    left = 0;
                    return None;
                }
                if entry.tag == tag {
                    return Some(entry.slot);
                }
            }
            None
        })
    }

    /// The slot of the address with `tag` for which `is_it` says yes (it checks the slot's
    /// connection's address).
    pub(crate) fn find(&self, tag: u32, mut is_it: impl FnMut(u32) -> bool) -> Option<u32> {
        self.candidates(tag).find(|&slot| is_it(slot))
    }

    /// Asks for the line where a lookup of `tag` starts.
    pub(crate) fn prefetch(&self, tag: u32) {
        if let Some(entry) = self.entries.get(tag as usize & self.mask()) {
            prefetch::value(entry);
        }
    }

    /// Adds `slot` under `tag`. The caller makes sure the address is not in the table yet.
    pub(crate) fn insert(&mut self, tag: u32, slot: u32) {
        debug_assert_ne!(slot, EMPTY);
        if (self.len + 1) * 2 > self.entries.len() {
            self.grow();
        }
        let mask = self.mask();
        let mut at = tag as usize & mask;
        while self.entries[at].slot != EMPTY {
            at = (at + 1) & mask;
        }
        self.entries[at] = Entry { tag, slot };
        self.len += 1;
    }

    /// Removes the entry of `slot` under `tag`; returns whether there was one.
    pub(crate) fn remove(&mut self, tag: u32, slot: u32) -> bool {
        let mask = self.mask();
        if self.entries.is_empty() {
            return false;
        }
        let mut at = tag as usize & mask;
        loop {
            let entry = self.entries[at];
            if entry.slot == EMPTY {
                return false;
            }
            if entry == (Entry { tag, slot }) {
                break;
            }
            at = (at + 1) & mask;
        }
        // Shift back every later entry of the run that may sit at `hole` (its home is not
        // cyclically within (hole, next]), so no probe meets a gap before its entry.
        let mut hole = at;
        let mut next = (at + 1) & mask;
        loop {
            let entry = self.entries[next];
            if entry.slot == EMPTY {
                break;
            }
            let home = entry.tag as usize & mask;
            let distance_home = next.wrapping_sub(home) & mask;
            let distance_hole = next.wrapping_sub(hole) & mask;
            if distance_home >= distance_hole {
                self.entries[hole] = entry;
                hole = next;
            }
            next = (next + 1) & mask;
        }
        self.entries[hole] = VACANT;
        self.len -= 1;
        true
    }

    fn grow(&mut self) {
        let size = (self.entries.len() * 2).max(16);
        let old = std::mem::replace(&mut self.entries, vec![VACANT; size]);
        self.len = 0;
        for entry in old.into_iter().filter(|e| e.slot != EMPTY) {
            self.insert(entry.tag, entry.slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    fn addr(i: u32) -> SocketAddr {
        SocketAddr::from((i.to_be_bytes(), 4000))
    }

    /// The table and the endpoint's check against the slot's address, beside a `HashMap`.
    struct Model {
        table: AddrTable,
        by_slot: HashMap<u32, SocketAddr>,
    }

    impl Model {
        fn get(&self, a: SocketAddr) -> Option<u32> {
            self.table.find(self.table.tag(&a), |slot| self.by_slot.get(&slot) == Some(&a))
        }
    }

    #[test]
    fn addresses_are_found_until_removed_through_growth_and_shifts() {
        // 5,000 entries through several doublings, then every third removed: runs to shift.
        let mut m =
            Model { table: AddrTable::new(AddrHashBuilder::new(1)), by_slot: HashMap::new() };
        for i in 0..5000 {
            m.table.insert(m.table.tag(&addr(i)), i);
            m.by_slot.insert(i, addr(i));
        }
        assert_eq!(m.table.len(), 5000);
        for i in (0..5000).step_by(3) {
            assert!(m.table.remove(m.table.tag(&addr(i)), i));
            assert!(!m.table.remove(m.table.tag(&addr(i)), i), "removed twice");
            m.by_slot.remove(&i);
        }
        for i in 0..5000 {
            let want = (i % 3 != 0).then_some(i);
            assert_eq!(m.get(addr(i)), want, "{i}");
        }
        assert_eq!(m.get(addr(9999)), None);
    }

    #[test]
    fn a_tag_shared_by_two_addresses_finds_each_by_its_check() {
        let mut m =
            Model { table: AddrTable::new(AddrHashBuilder::new(5)), by_slot: HashMap::new() };
        // Two addresses under one tag (as a collision of the 32-bit tag would put them).
        m.table.insert(77, 1);
        m.table.insert(77, 2);
        m.by_slot.insert(1, addr(1));
        m.by_slot.insert(2, addr(2));
        assert_eq!(m.table.find(77, |s| m.by_slot[&s] == addr(2)), Some(2));
        assert_eq!(m.table.find(77, |s| m.by_slot[&s] == addr(1)), Some(1));
        assert_eq!(m.table.candidates(77).collect::<Vec<_>>(), [1, 2]);
        assert!(m.table.remove(77, 1));
        assert_eq!(m.table.find(77, |s| m.by_slot[&s] == addr(2)), Some(2));
        assert_eq!(m.table.find(77, |s| m.by_slot[&s] == addr(1)), None);
    }

    #[test]
    fn an_empty_table_finds_nothing_and_removes_nothing() {
        let t = AddrTable::new(AddrHashBuilder::new(3));
        assert_eq!(t.find(5, |_| true), None);
        t.prefetch(5);
        let mut t = t;
        assert!(!t.remove(5, 1));
    }

    proptest! {
        /// Any sequence of inserts and removes, under tags squeezed into the last few homes of
        /// the table (long runs that wrap around its end), keeps every present slot findable
        /// under its tag and no removed one anywhere.
        #[test]
        fn inserts_and_removes_agree_with_a_map(
            ops in proptest::collection::vec((any::<bool>(), 0u32..64, 0u32..8), 1..400)
        ) {
            let mut table = AddrTable::new(AddrHashBuilder::new(9));
            let mut model: HashMap<u32, u32> = HashMap::new(); // slot -> tag
            for (add, slot, low) in ops {
                // Homes near the end of any table of 16 to 256 entries.
                let tag = (slot << 8) | 0xF8 | low;
                match (add, model.get(&slot).copied()) {
                    (true, None) => {
                        table.insert(tag, slot);
                        model.insert(slot, tag);
                    }
                    (false, Some(t)) => {
                        prop_assert!(table.remove(t, slot));
                        model.remove(&slot);
                    }
                    (false, None) => prop_assert!(!table.remove(tag, slot)),
                    (true, Some(_)) => {}
                }
                prop_assert_eq!(table.len(), model.len());
                for (&s, &t) in &model {
                    prop_assert_eq!(table.find(t, |c| c == s), Some(s));
                }
                let mut held: Vec<u32> = table.entries.iter().filter(|e| e.slot != EMPTY).map(|e| e.slot).collect();
                held.sort_unstable();
                let mut want: Vec<u32> = model.keys().copied().collect();
                want.sort_unstable();
                prop_assert_eq!(held, want);
            }
        }
    }
}
