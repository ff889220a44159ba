//! [`Sorted`]: an ordered set kept as a list of sorted blocks, the numeric attributes' index.
//!
//! Against a `BTreeSet` it walks a range through contiguous memory (a list walks thousands
//! of candidates) and counts a range exactly in a few binary searches (the planner counts the
//! candidates of every range a query has). Inserting moves at most a block's elements.

use std::ops::Bound;

/// Elements per block: blocks split above twice this and merge below a quarter of it.
const BLOCK: usize = 512;

/// A position: (block, offset in it); `(blocks.len(), 0)` is the end.
type Pos = (usize, usize);

/// An ordered set of `T` in sorted blocks.
#[derive(Debug, Clone)]
pub(crate) struct Sorted<T> {
    blocks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for Sorted<T> {
    fn default() -> Self {
        Self { blocks: Vec::new(), len: 0 }
    }
}

impl<T: Ord + Copy> Sorted<T> {
    /// Elements held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Adds `x`; false if it was there.
    pub(crate) fn insert(&mut self, x: T) -> bool {
        if self.blocks.is_empty() {
            self.blocks.push(vec![x]);
            self.len = 1;
            return true;
        }
        // The first block whose last element is not below x, else the last block.
        let b = self.blocks.partition_point(|blk| blk.last().is_some_and(|l| *l < x));
        let b = b.min(self.blocks.len() - 1);
        let blk = &mut self.blocks[b];
        let Err(at) = blk.binary_search(&x) else { return false };
        blk.insert(at, x);
        self.len += 1;
        if blk.len() > 2 * BLOCK {
            let tail = blk.split_off(BLOCK);
            self.blocks.insert(b + 1, tail);
        }
        true
    }

    /// Removes `x`; false if it was not there.
    pub(crate) fn remove(&mut self, x: &T) -> bool {
        let b = self.blocks.partition_point(|blk| blk.last().is_some_and(|l| l < x));
        let Some(blk) = self.blocks.get_mut(b) else { return false };
        let Ok(at) = blk.binary_search(x) else { return false };
        blk.remove(at);
        self.len -= 1;
        if blk.is_empty() {
            self.blocks.remove(b);
        } else if blk.len() < BLOCK / 4
            && let Some(next) = self.blocks.get(b + 1)
            && self.blocks[b].len() + next.len() <= 2 * BLOCK
        {
            let next = self.blocks.remove(b + 1);
            self.blocks[b].extend(next);
        }
        true
    }

    /// The position of the first element for which `before` is false (`before` holds for a
    /// prefix of the set).
    fn position(&self, before: impl Fn(&T) -> bool) -> Pos {
        let b = self.blocks.partition_point(|blk| blk.last().is_some_and(&before));
        match self.blocks.get(b) {
            Some(blk) => (b, blk.partition_point(&before)),
            None => (self.blocks.len(), 0),
        }
    }

    /// Where the range `lo .. hi` starts and ends.
    fn bounds(&self, lo: &Bound<T>, hi: &Bound<T>) -> (Pos, Pos) {
        let start = match lo {
            Bound::Unbounded => (0, 0),
            Bound::Included(k) => self.position(|e| e < k),
            Bound::Excluded(k) => self.position(|e| e <= k),
        };
        let end = match hi {
            Bound::Unbounded => (self.blocks.len(), 0),
            Bound::Included(k) => self.position(|e| e <= k),
            Bound::Excluded(k) => self.position(|e| e < k),
        };
        (start, end)
    }

    /// How many elements lie in `lo .. hi` (exact, in a few binary searches and a sum over
    /// the blocks between).
    pub(crate) fn count(&self, lo: &Bound<T>, hi: &Bound<T>) -> usize {
        let ((b0, o0), (b1, o1)) = self.bounds(lo, hi);
        if (b0, o0) >= (b1, o1) {
            return 0;
        }
        let whole: usize = self.blocks[b0..b1].iter().map(Vec::len).sum();
        whole + o1 - o0
    }

    /// The elements in `lo .. hi`, in order.
    pub(crate) fn range<'a>(
        &'a self,
        lo: &Bound<T>,
        hi: &Bound<T>,
    ) -> impl Iterator<Item = &'a T> + 'a {
        let ((b0, o0), (b1, o1)) = self.bounds(lo, hi);
        let blocks = self.blocks.get(b0..).unwrap_or(&[]);
        blocks.iter().enumerate().take_while(move |(i, _)| b0 + i <= b1).flat_map(
            move |(i, blk)| {
                let b = b0 + i;
                let start = if b == b0 { o0 } else { 0 };
                let end = if b == b1 { o1 } else { blk.len() };
                blk[start.min(end)..end].iter()
            },
        )
    }

    /// Every element, in order.
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.blocks.iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn behaves_as_a_btreeset() {
        let mut state = 0x1234_5678_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut sorted = Sorted::default();
        let mut model = BTreeSet::new();
        for step in 0..40_000u32 {
            let x = next() % 3000;
            // Grow, then shrink: blocks split and merge.
            if next() % 100 < if step < 20_000 { 70 } else { 25 } {
                assert_eq!(sorted.insert(x), model.insert(x));
            } else {
                assert_eq!(sorted.remove(&x), model.remove(&x));
            }
            assert_eq!(sorted.len(), model.len());
            if step % 500 == 0 {
                assert!(sorted.iter().eq(model.iter()));
                for _ in 0..20 {
                    let (a, b) = (next() % 3100, next() % 3100);
                    let pick = |v: u64, k: u64| match k % 3 {
                        0 => Bound::Included(v),
                        1 => Bound::Excluded(v),
                        _ => Bound::Unbounded,
                    };
                    let (lo, hi) = (pick(a, next()), pick(b, next()));
                    let empty = match (lo, hi) {
                        (Bound::Included(a), Bound::Included(b)) => a > b,
                        (Bound::Included(a) | Bound::Excluded(a), Bound::Excluded(b))
                        | (Bound::Excluded(a), Bound::Included(b)) => a >= b,
                        _ => false,
                    };
                    let want: Vec<u64> =
                        if empty { vec![] } else { model.range((lo, hi)).copied().collect() };
                    let got: Vec<u64> = sorted.range(&lo, &hi).copied().collect();
                    assert_eq!(got, want, "{lo:?} .. {hi:?}");
                    assert_eq!(sorted.count(&lo, &hi), want.len());
                }
            }
        }
        assert!(sorted.blocks.len() > 2, "the test made several blocks");
    }
}
