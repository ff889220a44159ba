//! A keyed, fast hasher for the endpoint's table of peer addresses.
//!
//! Every datagram looks its sender up in that table, and SipHash (the standard library's
//! default) cost more than the rest of the lookup. This hasher mixes each written word into
//! its state with one folded 64 × 64 → 128-bit multiplication. The state starts from a key
//! drawn from the endpoint's random generator, so an attacker who cannot read the key cannot
//! choose addresses that collide (and the table holds only peers that completed the cookie
//! handshake, so flooding it with chosen addresses is not possible either way).

use std::hash::{BuildHasher, Hasher};

/// An odd constant with well-spread bits (the golden ratio's fraction).
const MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

/// The folded product of `a` and `b`: the high and low halves XORed.
#[expect(clippy::cast_possible_truncation, reason = "the halves are taken apart on purpose")]
fn fold(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ ((product >> 64) as u64)
}

/// Builds [`AddrHasher`]s with one key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AddrHashBuilder {
    key: u64,
}

impl AddrHashBuilder {
    pub(crate) fn new(key: u64) -> Self {
        Self { key }
    }
}

impl BuildHasher for AddrHashBuilder {
    type Hasher = AddrHasher;

    fn build_hasher(&self) -> AddrHasher {
        AddrHasher { state: self.key }
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub(crate) struct AddrHasher {
    state: u64,
}

impl AddrHasher {
    fn mix(&mut self, word: u64) {
        self.state = fold(self.state ^ word, MULTIPLIER);
    }
}

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        fold(self.state, MULTIPLIER.rotate_left(32))
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            // The length keeps "ab" and "ab\0" apart.
            self.mix(u64::from_le_bytes(word) ^ ((chunk.len() as u64) << 59));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.mix(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.mix(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.mix(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::hash::BuildHasher;
    use std::net::SocketAddr;

    use super::AddrHashBuilder;

    fn hash(key: u64, addr: &str) -> u64 {
        AddrHashBuilder::new(key).hash_one(addr.parse::<SocketAddr>().unwrap())
    }

    #[test]
    fn nearby_addresses_and_ports_hash_apart_and_the_key_changes_everything() {
        let mut seen = HashSet::new();
        for port in 1000..1256 {
            for host in 1..=8 {
                assert!(seen.insert(hash(7, &format!("10.0.0.{host}:{port}"))));
            }
        }
        assert!(seen.insert(hash(7, "[::1]:1000")));
        assert!(seen.insert(hash(7, "[::ffff:10.0.0.1]:1000")));
        assert_eq!(hash(7, "10.0.0.1:1000"), hash(7, "10.0.0.1:1000"));
        assert_ne!(hash(7, "10.0.0.1:1000"), hash(8, "10.0.0.1:1000"));
        // Low bits pick the bucket: they must vary too.
        let buckets: HashSet<u64> =
            (1000..1256).map(|port| hash(7, &format!("10.0.0.1:{port}")) & 0xFF).collect();
        assert!(buckets.len() > 150, "{} of 256 buckets used", buckets.len());
    }
}
