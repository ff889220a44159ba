//! Channels: the per-QoS sending and receiving halves.

pub(crate) mod recv;
pub(crate) mod send;

/// A set of channel ids (a bit per id), so that per-packet work visits only the channels that
/// have something to do rather than every configured one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ChannelSet([u64; 4]);

impl ChannelSet {
    pub(crate) fn insert(&mut self, channel: u8) {
        self.0[usize::from(channel / 64)] |= 1 << (channel % 64);
    }

    pub(crate) fn remove(&mut self, channel: u8) {
        self.0[usize::from(channel / 64)] &= !(1 << (channel % 64));
    }

    /// The members in ascending order.
    pub(crate) fn iter(&self) -> Members {
        Members::new(self.0)
    }

    /// The members from `start` upwards, then those below it: a round-robin order.
    pub(crate) fn iter_from(&self, start: u8) -> Rotation {
        if self.0.iter().map(|w| w.count_ones()).sum::<u32>() <= 1 {
            // The usual case (one busy channel): no order to work out.
            return Rotation::One(self.iter().next());
        }
        let (word, bit) = (usize::from(start / 64), start % 64);
        let mut high = self.0;
        high[..word].fill(0);
        high[word] &= u64::MAX << bit;
        let mut low = self.0;
        low[word + 1..].fill(0);
        low[word] &= !(u64::MAX << bit);
        Rotation::Many(Members::new(high).chain(Members::new(low)))
    }
}

/// The members of a [`ChannelSet`] in round-robin order (see [`ChannelSet::iter_from`]).
#[derive(Debug, Clone)]
pub(crate) enum Rotation {
    /// At most one member.
    One(Option<u8>),
    /// Several.
    Many(std::iter::Chain<Members, Members>),
}

impl Iterator for Rotation {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        match self {
            Rotation::One(only) => only.take(),
            Rotation::Many(members) => members.next(),
        }
    }
}

/// The members of a [`ChannelSet`], lowest first.
#[derive(Debug, Clone)]
pub(crate) struct Members {
    words: [u64; 4],
    word: usize,
    /// One past the last word to look at: 1 when only the first has members (most endpoints
    /// have under 64 channels).
    end: usize,
}

impl Members {
    fn new(words: [u64; 4]) -> Self {
        let end = if words[1] | words[2] | words[3] == 0 { 1 } else { 4 };
        Self { words, word: 0, end }
    }
}

impl Iterator for Members {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        while self.word < self.end {
            let bits = &mut self.words[self.word];
            if *bits != 0 {
                let id = self.word * 64 + bits.trailing_zeros() as usize;
                *bits &= *bits - 1;
                // Four words of 64: the id fits a byte.
                return u8::try_from(id).ok();
            }
            self.word += 1;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::ChannelSet;

    #[test]
    fn a_set_iterates_its_members_in_order_and_round_robin() {
        let mut set = ChannelSet::default();
        assert_eq!(set.iter().next(), None);
        for c in [200, 3, 64, 0, 63, 255] {
            set.insert(c);
        }
        set.remove(63);
        assert_eq!(set.iter().collect::<Vec<_>>(), [0, 3, 64, 200, 255]);
        assert_eq!(set.iter_from(64).collect::<Vec<_>>(), [64, 200, 255, 0, 3]);
        assert_eq!(set.iter_from(201).collect::<Vec<_>>(), [255, 0, 3, 64, 200]);
        assert_eq!(set.iter_from(0).collect::<Vec<_>>(), [0, 3, 64, 200, 255]);
        let mut one = ChannelSet::default();
        one.insert(70);
        assert_eq!(one.iter_from(100).collect::<Vec<_>>(), [70]);
        assert_eq!(ChannelSet::default().iter_from(3).next(), None);
    }
}
