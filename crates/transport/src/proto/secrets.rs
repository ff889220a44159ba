//! Where an endpoint's secrets come from: the cookie key, and the salts of its connections
//! (from which each connection's packet-tag keys and disconnect token derive).
//!
//! In production every secret is read from the operating system's generator (`getrandom`), one
//! call per draw: an endpoint draws twice when it is made and once per connection it opens or
//! accepts (after a cookie round trip, for an accept). The system call costs about a
//! microsecond (1.3 µs measured on the project's VM), in the same range as the allocations of
//! the connection it serves, so a CSPRNG in between would save nothing worth its key kept in
//! memory. Nothing secret is kept in a generator state that could be predicted from a seed.
//!
//! Tests that must be reproducible use [`Secrets::Deterministic`], made only by
//! [`Endpoint::with_deterministic_secrets_for_tests`](super::endpoint::Endpoint::with_deterministic_secrets_for_tests):
//! a keyed counter whose every output follows from a 64-bit seed, so it is not secret at all.

use super::siphash::SipHasher;
use crate::RandomnessError;

/// The source of an endpoint's secrets.
#[derive(Debug)]
pub(crate) enum Secrets {
    /// The operating system's generator: the default, and the only source fit for secrets.
    Os,
    /// SipHash of a counter under a key made from a seed: repeatable, and therefore known to
    /// anyone who knows the seed. Tests only.
    Deterministic { seed: u64, counter: u64 },
    /// Fails every draw, to test how the endpoint copes.
    #[cfg(test)]
    Failing,
}

impl Secrets {
    /// The next secret 64-bit number.
    pub(crate) fn u64(&mut self) -> Result<u64, RandomnessError> {
        match self {
            Secrets::Os => getrandom::u64().map_err(RandomnessError::os),
            Secrets::Deterministic { seed, counter } => {
                *counter += 1;
                Ok(SipHasher::new(*seed, 0x7465_7374_206f_6e6c).write_u64(*counter).finish())
            }
            #[cfg(test)]
            Secrets::Failing => Err(RandomnessError::os(getrandom::Error::UNSUPPORTED)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Secrets;

    #[test]
    fn the_os_source_differs_from_draw_to_draw_and_the_test_source_repeats_its_seed() {
        let mut os = Secrets::Os;
        let draws: Vec<u64> = (0..4).map(|_| os.u64().unwrap()).collect();
        assert!(draws.windows(2).all(|w| w[0] != w[1]), "{draws:x?}");
        let run = |seed| {
            let mut s = Secrets::Deterministic { seed, counter: 0 };
            [s.u64().unwrap(), s.u64().unwrap()]
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        assert_ne!(run(7)[0], run(7)[1]);
    }
}
