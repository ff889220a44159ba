//! The protocol's own time: [`Tick`], an instant as one `u64` of nanoseconds.
//!
//! The public API takes and returns [`Instant`]s; an endpoint turns each into a `Tick` once, as
//! it comes in, and back only for [`poll_timeout`](super::endpoint::Endpoint::poll_timeout).
//! Inside, every deadline, send time and timer is a `Tick`. An `Instant` is 16 bytes of seconds
//! and nanoseconds, and each sum, difference or comparison of two normalises or compares both
//! halves (out of line, through the standard library's checked arithmetic): in cache, that was
//! the largest single part of an echo's work. A `Tick` is 8 bytes, and those are one
//! instruction each. Exact to the nanosecond for 146 years before the endpoint's epoch and 438
//! after it.

use std::ops::{Add, AddAssign, Sub};
use std::time::{Duration, Instant};

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// An instant as nanoseconds on the endpoint's clock, which reads [`Tick::EPOCH`] at its epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Tick(u64);

impl Tick {
    /// The endpoint's epoch: 2^62 ns (146 years) from the clock's zero, so that instants
    /// before the epoch (a pacer's credit for the initial burst, a driver's instant read just
    /// before it created the endpoint) are as exact as those after it (438 years of them).
    pub(crate) const EPOCH: Self = Self(1 << 62);

    /// `at` on the clock that reads [`Tick::EPOCH`] at `epoch`.
    pub(crate) fn since(epoch: Instant, at: Instant) -> Self {
        match at.checked_duration_since(epoch) {
            Some(after) => Self::EPOCH + after,
            None => Self::EPOCH - epoch.duration_since(at),
        }
    }

    /// This tick as an instant, on the clock that reads [`Tick::EPOCH`] at `epoch`.
    pub(crate) fn instant(self, epoch: Instant) -> Instant {
        let at = match self.0.checked_sub(Self::EPOCH.0) {
            Some(after) => epoch.checked_add(Duration::from_nanos(after)),
            None => epoch.checked_sub(Duration::from_nanos(Self::EPOCH.0 - self.0)),
        };
        // Only a tick centuries from the epoch can miss (or an instant the platform cannot
        // represent): the epoch then, as a deadline "now".
        at.unwrap_or(epoch)
    }

    /// The tick `n` nanoseconds after the clock's zero.
    pub(crate) const fn from_nanos(n: u64) -> Self {
        Self(n)
    }

    /// Nanoseconds since the clock's zero.
    pub(crate) const fn as_nanos(self) -> u64 {
        self.0
    }

    /// How long after `earlier` this is; zero if it is not after it.
    pub(crate) fn saturating_duration_since(self, earlier: Self) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

/// `d` in nanoseconds, saturating (at 584 years).
pub(crate) fn nanos(d: Duration) -> u64 {
    d.as_secs().saturating_mul(NANOS_PER_SEC).saturating_add(u64::from(d.subsec_nanos()))
}

impl Add<Duration> for Tick {
    type Output = Self;

    /// Saturates at the latest tick.
    fn add(self, d: Duration) -> Self {
        Self(self.0.saturating_add(nanos(d)))
    }
}

impl AddAssign<Duration> for Tick {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl Sub<Duration> for Tick {
    type Output = Self;

    /// Saturates at the clock's zero.
    fn sub(self, d: Duration) -> Self {
        Self(self.0.saturating_sub(nanos(d)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_instants_and_saturates_at_both_ends() {
        #[expect(clippy::disallowed_methods, reason = "any instant will do as an epoch")]
        let epoch = Instant::now();
        for ns in [0, 1, 999_999_999, 1_000_000_000, 86_400_000_000_123] {
            let at = epoch + Duration::from_nanos(ns);
            let tick = Tick::since(epoch, at);
            assert_eq!(tick.as_nanos() - Tick::EPOCH.as_nanos(), ns);
            assert_eq!(tick.instant(epoch), at);
        }
        // Before the epoch, as exact (where the platform has such an instant).
        for ns in [1, 1_000_000_007] {
            if let Some(before) = epoch.checked_sub(Duration::from_nanos(ns)) {
                let tick = Tick::since(epoch, before);
                assert_eq!(Tick::EPOCH.as_nanos() - tick.as_nanos(), ns);
                assert_eq!(tick.instant(epoch), before);
            }
        }
        assert_eq!(Tick::from_nanos(5) - Duration::from_secs(1), Tick::from_nanos(0));
        assert_eq!(Tick::from_nanos(u64::MAX) + Duration::from_secs(1), Tick::from_nanos(u64::MAX));
        assert_eq!(nanos(Duration::MAX), u64::MAX);
    }

    #[test]
    fn arithmetic_matches_durations() {
        let a = Tick::from_nanos(5_000_000_007);
        let b = a + Duration::from_millis(1_500);
        assert_eq!(b.as_nanos(), 6_500_000_007);
        assert_eq!(b.saturating_duration_since(a), Duration::from_millis(1_500));
        assert_eq!(a.saturating_duration_since(b), Duration::ZERO);
        assert_eq!(b - Duration::from_millis(1_500), a);
        let mut c = a;
        c += Duration::from_nanos(3);
        assert_eq!(c.as_nanos(), 5_000_000_010);
        assert!(a < b && c > a);
    }
}
