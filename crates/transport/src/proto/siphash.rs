//! SipHash-2-4 (Aumasson and Bernstein): a keyed 64-bit pseudo-random function.
//!
//! The handshake uses it as a MAC for stateless challenge cookies (only the server knows the
//! key, so a cookie cannot be forged, and checking one needs no per-client state) and, with a
//! fixed key, to fingerprint configurations and derive per-connection keys from the salts; data
//! packets carry a 32-bit tag made with it (see [`hash_two_u64`]). Written here rather than
//! taken from `std` because std's hasher cannot be keyed explicitly, and both peers must compute
//! the same values.

/// A SipHash-2-4 state over a 128-bit key. Feed bytes with [`write`](Self::write), then
/// [`finish`](Self::finish).
#[derive(Debug, Clone)]
pub struct SipHasher {
    v: [u64; 4],
    tail: u64,
    tail_len: usize,
    total_len: usize,
}

impl SipHasher {
    /// A hasher keyed with `(k0, k1)`.
    pub fn new(k0: u64, k1: u64) -> Self {
        Self {
            v: [
                k0 ^ 0x736f_6d65_7073_6575,
                k1 ^ 0x646f_7261_6e64_6f6d,
                k0 ^ 0x6c79_6765_6e65_7261,
                k1 ^ 0x7465_6462_7974_6573,
            ],
            tail: 0,
            tail_len: 0,
            total_len: 0,
        }
    }

    fn round(v: &mut [u64; 4]) {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }

    fn compress(&mut self, m: u64) {
        self.v[3] ^= m;
        Self::round(&mut self.v);
        Self::round(&mut self.v);
        self.v[0] ^= m;
    }

    /// Feeds `bytes`.
    pub fn write(&mut self, bytes: &[u8]) -> &mut Self {
        self.total_len += bytes.len();
        for &b in bytes {
            self.tail |= u64::from(b) << (8 * self.tail_len);
            self.tail_len += 1;
            if self.tail_len == 8 {
                let m = self.tail;
                self.compress(m);
                self.tail = 0;
                self.tail_len = 0;
            }
        }
        self
    }

    /// Feeds a `u64` as 8 little-endian bytes.
    pub fn write_u64(&mut self, v: u64) -> &mut Self {
        self.write(&v.to_le_bytes())
    }

    /// The 64-bit result.
    pub fn finish(&self) -> u64 {
        let mut state = self.clone();
        // The low byte of the length is part of the last block by design.
        let m = state.tail | ((state.total_len as u64 & 0xFF) << 56);
        state.compress(m);
        state.v[2] ^= 0xFF;
        for _ in 0..4 {
            Self::round(&mut state.v);
        }
        state.v[0] ^ state.v[1] ^ state.v[2] ^ state.v[3]
    }
}

/// SipHash-2-4 of the 16 bytes `a` then `b` (each little-endian) under `(k0, k1)`: the same
/// value as `SipHasher::new(k0, k1).write_u64(a).write_u64(b).finish()`, without the byte-wise
/// buffering, for the per-packet tag on the hot path.
pub fn hash_two_u64(k0: u64, k1: u64, a: u64, b: u64) -> u64 {
    let mut state = SipHasher::new(k0, k1);
    state.compress(a);
    state.compress(b);
    // The final block: no tail bytes, the length (16) in the top byte.
    state.compress(16 << 56);
    state.v[2] ^= 0xFF;
    for _ in 0..4 {
        SipHasher::round(&mut state.v);
    }
    state.v[0] ^ state.v[1] ^ state.v[2] ^ state.v[3]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_word_shortcut_equals_the_general_hasher() {
        for (k0, k1, a, b) in [(0, 0, 0, 0), (1, 2, 3, 4), (u64::MAX, 7, 0x0123_4567_89ab_cdef, 9)]
        {
            assert_eq!(
                hash_two_u64(k0, k1, a, b),
                SipHasher::new(k0, k1).write_u64(a).write_u64(b).finish()
            );
        }
    }

    /// The reference vectors of the SipHash paper: key 00..0f, messages 00, 00 01, 00 01 02, …
    #[test]
    fn matches_the_reference_vectors() {
        let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        let expected: [(usize, u64); 4] = [
            (0, 0x726f_db47_dd0e_0e31),
            (1, 0x74f8_39c5_93dc_67fd),
            (8, 0x93f5_f579_9a93_2462),
            (15, 0xa129_ca61_49be_45e5),
        ];
        let message: Vec<u8> = (0u8..64).collect();
        for (len, want) in expected {
            assert_eq!(
                SipHasher::new(k0, k1).write(&message[..len]).finish(),
                want,
                "length {len}"
            );
        }
    }

    #[test]
    fn split_writes_equal_one_write_and_keys_matter() {
        let data: Vec<u8> = (0u8..40).collect();
        let whole = SipHasher::new(1, 2).write(&data).finish();
        let split =
            SipHasher::new(1, 2).write(&data[..3]).write(&data[3..17]).write(&data[17..]).finish();
        assert_eq!(whole, split);
        assert_ne!(whole, SipHasher::new(1, 3).write(&data).finish());
    }
}
