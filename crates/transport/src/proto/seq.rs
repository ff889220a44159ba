//! Wrapping sequence numbers.
//!
//! Packets are numbered with 14 bits (so that the sequence number, the ack and a 2-bit field share
//! two 16-bit words of the header) and messages within a channel with 16 bits. Both wrap around;
//! comparisons are made within half the number space, as in RFC 1982 serial-number arithmetic:
//! `a` is newer than `b` when `a - b` (mod 2^BITS) lies in `(0, 2^(BITS-1))`.

use std::fmt;

/// A `BITS`-bit wrapping sequence number (`BITS` from 2 to 16).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Seq<const BITS: u32>(u16);

/// The sequence number of a packet on a connection (14 bits).
pub type PacketSeq = Seq<14>;

/// The sequence number of a message within a channel (16 bits).
pub type MessageSeq = Seq<16>;

impl<const BITS: u32> Seq<BITS> {
    const MASK: u16 = if BITS >= 16 { u16::MAX } else { (1 << BITS) - 1 };
    /// Half the number space: the largest distance at which "newer" is still well defined.
    pub const HALF: u16 = 1 << (BITS - 1);

    /// The number `value` modulo 2^BITS.
    pub const fn new(value: u16) -> Self {
        Self(value & Self::MASK)
    }

    /// The number as an integer in `[0, 2^BITS)`.
    pub const fn get(self) -> u16 {
        self.0
    }

    /// The number after this one.
    #[must_use]
    pub const fn next(self) -> Self {
        self.add(1)
    }

    /// This number plus `n`, wrapping.
    #[must_use]
    pub const fn add(self, n: u16) -> Self {
        Self::new(self.0.wrapping_add(n))
    }

    /// This number minus `n`, wrapping.
    #[must_use]
    pub const fn sub(self, n: u16) -> Self {
        Self::new(self.0.wrapping_sub(n))
    }

    /// The signed distance from `earlier` to `self`, in `[-HALF, HALF)`: positive when `self` is
    /// newer.
    pub const fn distance(self, earlier: Self) -> i32 {
        let d = self.0.wrapping_sub(earlier.0) & Self::MASK;
        if d >= Self::HALF { d as i32 - (Self::MASK as i32 + 1) } else { d as i32 }
    }

    /// Whether `self` comes after `other` (within half the number space).
    pub const fn is_newer_than(self, other: Self) -> bool {
        self.distance(other) > 0
    }
}

impl<const BITS: u32> fmt::Debug for Seq<BITS> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

impl<const BITS: u32> fmt::Display for Seq<BITS> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn wraps_at_the_width() {
        assert_eq!(PacketSeq::new(16_383).next(), PacketSeq::new(0));
        assert_eq!(PacketSeq::new(0).sub(1).get(), 16_383);
        assert_eq!(MessageSeq::new(u16::MAX).next().get(), 0);
        assert_eq!(PacketSeq::new(16_384).get(), 0, "construction reduces modulo 2^14");
    }

    #[test]
    fn newer_across_the_wrap() {
        let last = PacketSeq::new(16_383);
        let first = PacketSeq::new(0);
        assert!(first.is_newer_than(last));
        assert!(!last.is_newer_than(first));
        assert_eq!(first.distance(last), 1);
        assert_eq!(last.distance(first), -1);
        assert!(!first.is_newer_than(first));
    }

    proptest! {
        #[test]
        fn adding_n_gives_distance_n(start in 0u16..16_384, n in 0u16..8_192) {
            let a = PacketSeq::new(start);
            let b = a.add(n);
            prop_assert_eq!(b.distance(a), i32::from(n));
            prop_assert_eq!(a.distance(b), -i32::from(n));
            prop_assert_eq!(b.is_newer_than(a), n > 0);
            prop_assert_eq!(b.sub(n), a);
        }

        #[test]
        fn distance_is_in_half_open_range(a in any::<u16>(), b in any::<u16>()) {
            let d = MessageSeq::new(a).distance(MessageSeq::new(b));
            prop_assert!((-32_768..32_768).contains(&d));
            prop_assert_eq!(MessageSeq::new(b).add(d.rem_euclid(65_536).try_into().unwrap()), MessageSeq::new(a));
        }
    }
}
