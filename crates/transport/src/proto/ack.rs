//! Which packets have arrived: the receiver's ack state and its compact wire form.
//!
//! Every data packet carries the newest packet sequence number received (`ack`) and a 32-bit
//! field whose bit `i` says whether packet `ack - 1 - i` was received. With the ack itself that
//! acknowledges a window of 33 packets, repeated in every packet, so one lost packet rarely loses
//! an acknowledgement.

use super::seq::PacketSeq;

/// Bits in the ack field.
pub const ACK_BITS: u16 = 32;

/// What [`AckState::record`] made of an arriving packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Seen for the first time: process it.
    New,
    /// Seen before: drop it (the network duplicated it, or the sender resent it).
    Duplicate,
    /// Older than the ack window: whether it was seen cannot be told, so it is dropped. The
    /// sender has by then counted it as lost and resent whatever it carried that was reliable.
    TooOld,
}

/// The receiving side of acknowledgements: the newest packet received and the 32 before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckState {
    latest: PacketSeq,
    bits: u32,
}

impl AckState {
    /// The state of a connection whose peer numbers its first packet `first`. Packets before
    /// `first` do not exist, so they count as received: acking them tells the sender nothing
    /// wrong, and it keeps the ack field short (see [`encoded_bits_len`]).
    pub fn new(first: PacketSeq) -> Self {
        Self { latest: first.sub(1), bits: u32::MAX }
    }

    /// The newest packet received (or the one before the first, before any arrives).
    pub fn latest(&self) -> PacketSeq {
        self.latest
    }

    /// Bit `i` set: packet `latest - 1 - i` was received.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// What [`record`](Self::record) would say about `seq`, without recording it.
    pub fn check(&self, seq: PacketSeq) -> Arrival {
        let distance = seq.distance(self.latest);
        if distance > 0 {
            Arrival::New
        } else if distance == 0 {
            Arrival::Duplicate
        } else {
            let index = distance.unsigned_abs() - 1;
            if index >= u32::from(ACK_BITS) {
                Arrival::TooOld
            } else if self.bits & (1 << index) != 0 {
                Arrival::Duplicate
            } else {
                Arrival::New
            }
        }
    }

    /// Records the arrival of packet `seq`.
    pub fn record(&mut self, seq: PacketSeq) -> Arrival {
        let arrival = self.check(seq);
        if arrival == Arrival::New {
            let distance = seq.distance(self.latest);
            if distance > 0 {
                let shift = distance.unsigned_abs();
                // The old latest moves to bit `shift - 1`; everything between is missing.
                self.bits = match shift {
                    1..=31 => (self.bits << shift) | (1 << (shift - 1)),
                    32 => 1 << 31,
                    _ => 0,
                };
                self.latest = seq;
            } else {
                self.bits |= 1 << (distance.unsigned_abs() - 1);
            }
        }
        arrival
    }
}

/// The packets an `(ack, bits)` pair acknowledges, newest first.
pub fn acknowledged(ack: PacketSeq, bits: u32) -> impl Iterator<Item = PacketSeq> {
    std::iter::once(ack)
        .chain((0..ACK_BITS).filter(move |&i| bits & (1 << i) != 0).map(move |i| ack.sub(i + 1)))
}

/// Whether an `(ack, bits)` pair acknowledges the packet `age` numbers older than `ack`.
pub fn acknowledged_by(age: u16, bits: u32) -> bool {
    age == 0 || (age <= ACK_BITS && bits & (1 << (age - 1)) != 0)
}

/// The 2-bit code and the byte count of the ack field on the wire.
///
/// High bytes that are all ones are left out (the receiver fills them back in), so a connection
/// without recent loss sends no ack field at all.
///
/// | code | bytes sent | bits sent |
/// |---|---|---|
/// | 0 | 0 | none: all 32 set |
/// | 1 | 1 | 0–7, bits 8–31 set |
/// | 2 | 2 | 0–15, bits 16–31 set |
/// | 3 | 4 | all 32 |
pub fn encoded_bits_len(bits: u32) -> (u8, usize) {
    if bits == u32::MAX {
        (0, 0)
    } else if bits | 0xFF == u32::MAX {
        (1, 1)
    } else if bits | 0xFFFF == u32::MAX {
        (2, 2)
    } else {
        (3, 4)
    }
}

/// The number of ack-field bytes that follow a header with `code`.
pub fn bits_len_of_code(code: u8) -> usize {
    match code & 0b11 {
        0 => 0,
        1 => 1,
        2 => 2,
        _ => 4,
    }
}

/// Rebuilds the 32-bit field from the `bytes` sent (little-endian low bytes; the rest are ones).
pub fn expand_bits(bytes: &[u8]) -> u32 {
    let mut buf = [0xFF; 4];
    buf[..bytes.len()].copy_from_slice(bytes);
    u32::from_le_bytes(buf)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_fresh_state_acks_nothing_real_and_encodes_to_nothing() {
        let state = AckState::new(PacketSeq::new(100));
        assert_eq!(state.latest(), PacketSeq::new(99));
        assert_eq!(encoded_bits_len(state.bits()), (0, 0));
    }

    #[test]
    fn in_order_arrivals_keep_the_field_full() {
        let mut state = AckState::new(PacketSeq::new(16_380));
        for i in 0..10 {
            assert_eq!(state.record(PacketSeq::new(16_380).add(i)), Arrival::New);
        }
        assert_eq!(state.latest(), PacketSeq::new(5), "wrapped past 16383");
        assert_eq!(state.bits(), u32::MAX);
    }

    #[test]
    fn a_gap_shows_as_a_zero_bit_until_filled() {
        let mut state = AckState::new(PacketSeq::new(0));
        state.record(PacketSeq::new(0));
        state.record(PacketSeq::new(2));
        assert_eq!(state.bits() & 0b11, 0b10, "1 missing, 0 received");
        assert_eq!(encoded_bits_len(state.bits()), (1, 1));
        assert_eq!(state.record(PacketSeq::new(1)), Arrival::New);
        assert_eq!(state.record(PacketSeq::new(1)), Arrival::Duplicate);
        assert_eq!(state.bits(), u32::MAX);
    }

    #[test]
    fn far_jumps_clear_the_field_and_old_packets_are_too_old() {
        let mut state = AckState::new(PacketSeq::new(0));
        state.record(PacketSeq::new(0));
        state.record(PacketSeq::new(32));
        assert_eq!(state.bits(), 1 << 31, "only packet 0 is known, at the last bit");
        state.record(PacketSeq::new(65));
        assert_eq!(state.bits(), 0, "packet 32 is one past the window");
        state.record(PacketSeq::new(100));
        assert_eq!(state.bits(), 0);
        assert_eq!(state.record(PacketSeq::new(60)), Arrival::TooOld);
        assert_eq!(state.record(PacketSeq::new(68)), Arrival::New);
    }

    #[test]
    fn expand_fills_missing_high_bytes_with_ones() {
        assert_eq!(expand_bits(&[]), u32::MAX);
        assert_eq!(expand_bits(&[0x0F]), 0xFFFF_FF0F);
        assert_eq!(expand_bits(&[1, 2, 3, 4]), 0x0403_0201);
        for code in 0..4 {
            assert!(matches!(bits_len_of_code(code), 0 | 1 | 2 | 4));
        }
    }

    proptest! {
        /// Whatever the arrival pattern (loss, duplication, reordering, wraparound), the pair
        /// (latest, bits) acknowledges exactly the packets received within the window, and the
        /// shortened wire form decodes back to the same field.
        #[test]
        fn the_ack_field_matches_what_arrived(
            first in 0u16..16_384,
            offsets in proptest::collection::vec(0u16..200, 1..300),
        ) {
            let first = PacketSeq::new(first);
            let mut state = AckState::new(first);
            let mut received = BTreeSet::new();
            for &offset in &offsets {
                let seq = first.add(offset);
                let arrival = state.record(seq);
                let latest_offset = state.latest().distance(first);
                let expected_new = !received.contains(&offset);
                match arrival {
                    Arrival::New => {
                        prop_assert!(expected_new);
                        received.insert(offset);
                    }
                    Arrival::Duplicate => prop_assert!(!expected_new),
                    Arrival::TooOld => {
                        prop_assert!(i32::from(offset) < latest_offset - i32::from(ACK_BITS));
                    }
                }
            }
            let latest = state.latest();
            let latest_offset = latest.distance(first);
            prop_assert_eq!(latest_offset, i32::from(*received.iter().max().unwrap()));
            let acked: BTreeSet<i32> = acknowledged(latest, state.bits())
                .map(|s| s.distance(first))
                .filter(|&d| d >= 0)
                .collect();
            let window: BTreeSet<i32> = received
                .iter()
                .map(|&o| i32::from(o))
                .filter(|&o| o >= latest_offset - i32::from(ACK_BITS))
                .collect();
            prop_assert_eq!(acked, window);

            let (code, len) = encoded_bits_len(state.bits());
            prop_assert_eq!(bits_len_of_code(code), len);
            let wire = state.bits().to_le_bytes();
            prop_assert_eq!(expand_bits(&wire[..len]), state.bits());
        }

        /// The per-packet test the sender uses agrees with the list of acknowledged packets.
        #[test]
        fn acknowledged_by_agrees_with_the_list(ack in 0u16..16_384, bits in any::<u32>()) {
            let ack = PacketSeq::new(ack);
            let listed: BTreeSet<u16> = acknowledged(ack, bits)
                .map(|s| u16::try_from(ack.distance(s)).unwrap())
                .collect();
            for age in 0..=ACK_BITS + 8 {
                prop_assert_eq!(acknowledged_by(age, bits), listed.contains(&age), "age {}", age);
            }
        }
    }
}
