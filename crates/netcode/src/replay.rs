//! The replay window: drops a packet already received, or older than the window.
//!
//! A sealed packet's sequence number is its nonce, so an attacker cannot change it without
//! failing decryption; but a recorded packet replayed as is decrypts fine. The window remembers
//! which of the last [`ReplayWindow::SIZE`] sequence numbers up to the newest have arrived, and
//! treats anything older as already received. netcode applies it to keep-alive, payload and
//! disconnect packets.
//!
//! Use it in the standard's order: ask [`already_received`](ReplayWindow::already_received)
//! before decrypting, and [`advance`](ReplayWindow::advance) only after the packet decrypted —
//! otherwise a forged packet with a fresh sequence number would move the window and make the
//! genuine packets behind it look old. [`packet::read`](crate::packet::read) does both.

/// Words of the bitmap (64 sequence numbers each).
const WORDS: usize = 4;

/// Which of the last [`SIZE`](Self::SIZE) sequence numbers have been received.
///
/// Sequence numbers are full 64-bit values (a netcode server's start at `1 << 63`); the window
/// handles every value up to `u64::MAX` without overflow. It is 40 bytes, so a server keeps one
/// per client cheaply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplayWindow {
    /// The newest sequence number received, if any.
    newest: Option<u64>,
    /// Bit `d` (word `d / 64`, bit `d % 64`) says whether `newest - d` was received.
    received: [u64; WORDS],
}

impl ReplayWindow {
    /// How many sequence numbers the window remembers, the newest included (the reference
    /// implementation's 256).
    pub const SIZE: u64 = 256;

    /// An empty window: nothing received yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The newest sequence number received, if any.
    pub fn newest(&self) -> Option<u64> {
        self.newest
    }

    /// Whether a packet with `sequence` must be dropped: it was received already, or it is too
    /// old to tell (`sequence + SIZE <= newest`, tested as `newest - sequence >= SIZE` so that
    /// nothing overflows near `u64::MAX`).
    pub fn already_received(&self, sequence: u64) -> bool {
        let Some(newest) = self.newest else {
            return false;
        };
        if sequence > newest {
            return false;
        }
        let distance = newest - sequence;
        if distance >= Self::SIZE {
            return true;
        }
        self.bit(distance)
    }

    /// Records `sequence` as received. Call it only after the packet decrypted.
    pub fn advance(&mut self, sequence: u64) {
        let Some(newest) = self.newest else {
            self.newest = Some(sequence);
            self.received = [0; WORDS];
            self.set_bit(0);
            return;
        };
        if sequence > newest {
            self.shift(sequence - newest);
            self.newest = Some(sequence);
            self.set_bit(0);
        } else {
            let distance = newest - sequence;
            if distance < Self::SIZE {
                self.set_bit(distance);
            }
        }
    }

    /// Forgets everything (a new connection).
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    fn bit(&self, distance: u64) -> bool {
        let (word, bit) = split(distance);
        self.received[word] & (1 << bit) != 0
    }

    fn set_bit(&mut self, distance: u64) {
        let (word, bit) = split(distance);
        self.received[word] |= 1 << bit;
    }

    /// Moves every remembered sequence number `by` places further from the newest.
    fn shift(&mut self, by: u64) {
        if by >= Self::SIZE {
            self.received = [0; WORDS];
            return;
        }
        let (words, bits) = split(by);
        let old = self.received;
        for (i, word) in self.received.iter_mut().enumerate() {
            *word = match i.checked_sub(words) {
                None => 0,
                Some(from) => {
                    let mut value = old[from] << bits;
                    if bits > 0 && from > 0 {
                        value |= old[from - 1] >> (64 - bits);
                    }
                    value
                }
            };
        }
    }
}

/// The word and bit of a distance below [`ReplayWindow::SIZE`].
fn split(distance: u64) -> (usize, u32) {
    let word = usize::try_from(distance / 64).unwrap_or(WORDS - 1).min(WORDS - 1);
    let bit = u32::try_from(distance % 64).unwrap_or(0);
    (word, bit)
}

const _: () = assert!(ReplayWindow::SIZE == (WORDS as u64) * 64);
