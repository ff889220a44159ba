//! Round-trip time estimation and the resend timeout derived from it (RFC 6298's estimator).

use std::time::Duration;

use super::time::nanos;

/// Smoothed round-trip time and its variation, with the resend timeout (RTO) they give.
///
/// Follows RFC 6298: the first sample `R` sets `srtt = R` and `rttvar = R / 2`; each later one
/// moves `rttvar` a quarter and `srtt` an eighth of the way towards it; `rto = srtt + 4 × rttvar`,
/// clamped to `[min_rto, max_rto]`. Unlike TCP's one-second floor, the floor is configurable:
/// games want resends in tens of milliseconds. Samples are taken only from packets sent once
/// (Karn's rule is the caller's job: resent data is sent in new packets, so every ack names the
/// packet it answers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RttEstimator {
    // Nanoseconds: the estimator runs on every prompt acknowledgement, and integer arithmetic
    // costs a fraction of `Duration`'s (which gives the same results, rounded the same way).
    smoothed: Option<u64>,
    variation: u64,
    latest: u64,
    min_seen: u64,
    initial: u64,
    min_rto: u64,
    max_rto: u64,
    /// `rto()`, kept up to date by `sample` (the packet builder asks for it on every packet).
    rto: Duration,
}

impl RttEstimator {
    /// An estimator that assumes `initial` until the first sample, with the RTO clamped to
    /// `[min_rto, max_rto]`.
    pub fn new(initial: Duration, min_rto: Duration, max_rto: Duration) -> Self {
        let initial = nanos(initial);
        let mut estimator = Self {
            smoothed: None,
            variation: initial / 2,
            latest: initial,
            min_seen: u64::MAX,
            initial,
            min_rto: nanos(min_rto),
            max_rto: nanos(max_rto).max(nanos(min_rto)),
            rto: Duration::ZERO,
        };
        estimator.rto = estimator.compute_rto();
        estimator
    }

    fn compute_rto(&self) -> Duration {
        let srtt = self.smoothed.unwrap_or(self.initial);
        let rto = srtt.saturating_add(self.variation.saturating_mul(4));
        Duration::from_nanos(rto.clamp(self.min_rto, self.max_rto))
    }

    /// Feeds one measured round trip.
    pub fn sample(&mut self, rtt: Duration) {
        let rtt = nanos(rtt);
        self.latest = rtt;
        self.min_seen = self.min_seen.min(rtt);
        match self.smoothed {
            None => {
                self.smoothed = Some(rtt);
                self.variation = rtt / 2;
            }
            Some(srtt) => {
                let deviation = srtt.abs_diff(rtt);
                // u128: exact even for absurd samples (a `Duration` would panic there).
                self.variation = weigh(self.variation, 3, deviation, 4);
                self.smoothed = Some(weigh(srtt, 7, rtt, 8));
            }
        }
        self.rto = self.compute_rto();
    }

    /// Whether a sample has been taken.
    pub fn has_samples(&self) -> bool {
        self.smoothed.is_some()
    }

    /// The smoothed round-trip time (the initial guess before any sample).
    pub fn smoothed(&self) -> Duration {
        Duration::from_nanos(self.smoothed.unwrap_or(self.initial))
    }

    /// The round-trip variation (`rttvar`).
    pub fn variation(&self) -> Duration {
        Duration::from_nanos(self.variation)
    }

    /// The most recent sample.
    pub fn latest(&self) -> Duration {
        Duration::from_nanos(self.latest)
    }

    /// The smallest sample seen, if any.
    pub fn min(&self) -> Option<Duration> {
        self.has_samples().then(|| Duration::from_nanos(self.min_seen))
    }

    /// The resend timeout: `srtt + 4 × rttvar`, clamped.
    pub fn rto(&self) -> Duration {
        self.rto
    }

    /// The resend timeout after `resends` unanswered resends: doubled each time, still clamped.
    pub fn rto_backed_off(&self, resends: u32) -> Duration {
        let factor = 1u32 << resends.min(16);
        self.rto().saturating_mul(factor).min(Duration::from_nanos(self.max_rto))
    }
}

/// `(old × keep + new) / total`, the weighted average of RFC 6298, without overflow.
fn weigh(old: u64, keep: u64, new: u64, total: u64) -> u64 {
    // In 64 bits when the sum fits (always, for round trips under a few years).
    if let Some(sum) = old.checked_mul(keep).and_then(|k| k.checked_add(new)) {
        return sum / total;
    }
    let sum = u128::from(old) * u128::from(keep) + u128::from(new);
    u64::try_from(sum / u128::from(total)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// The 64-bit shortcut of the weighted average gives what the 128-bit sum gives.
        #[test]
        fn weigh_matches_the_wide_computation(
            old in any::<u64>(), keep in 0u64..16, new in any::<u64>(), total in 1u64..16,
        ) {
            let wide = (u128::from(old) * u128::from(keep) + u128::from(new)) / u128::from(total);
            prop_assert_eq!(weigh(old, keep, new, total), u64::try_from(wide).unwrap_or(u64::MAX));
        }
    }

    const MS: Duration = Duration::from_millis(1);

    fn estimator() -> RttEstimator {
        RttEstimator::new(MS * 100, MS * 5, MS * 2000)
    }

    #[test]
    fn first_sample_sets_srtt_and_half_variation() {
        let mut e = estimator();
        assert_eq!((e.smoothed(), e.rto()), (MS * 100, MS * 300));
        e.sample(MS * 40);
        assert_eq!((e.smoothed(), e.variation(), e.rto()), (MS * 40, MS * 20, MS * 120));
        assert_eq!(e.min(), Some(MS * 40));
    }

    #[test]
    fn later_samples_follow_rfc_6298_weights() {
        let mut e = estimator();
        e.sample(MS * 40);
        e.sample(MS * 80);
        // rttvar = 3/4 × 20 + 1/4 × |40 − 80| = 25; srtt = 7/8 × 40 + 1/8 × 80 = 45
        assert_eq!((e.smoothed(), e.variation()), (MS * 45, MS * 25));
        assert_eq!(e.rto(), MS * 145);
    }

    #[test]
    fn steady_samples_converge_and_the_rto_respects_its_floor() {
        let mut e = estimator();
        for _ in 0..200 {
            e.sample(Duration::from_micros(50));
        }
        assert_eq!(e.smoothed(), Duration::from_micros(50));
        assert_eq!(e.rto(), MS * 5, "clamped to min_rto");
    }

    #[test]
    fn backoff_doubles_up_to_the_ceiling() {
        let mut e = estimator();
        e.sample(MS * 100); // rto = 100 + 4 × 50 = 300 ms
        assert_eq!(e.rto_backed_off(0), MS * 300);
        assert_eq!(e.rto_backed_off(1), MS * 600);
        assert_eq!(e.rto_backed_off(2), MS * 1200);
        assert_eq!(e.rto_backed_off(3), MS * 2000);
        assert_eq!(e.rto_backed_off(40), MS * 2000);
    }

    #[test]
    fn absurd_samples_saturate_instead_of_panicking() {
        let mut e = estimator();
        e.sample(Duration::MAX);
        e.sample(Duration::MAX);
        e.sample(MS);
        assert_eq!(e.rto(), MS * 2000, "clamped to max_rto");
        assert_eq!(e.latest(), MS);
        assert_eq!(e.min(), Some(MS));
    }
}
