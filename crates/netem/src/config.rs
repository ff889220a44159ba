//! Link parameters and named presets.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::NetemError;

/// Parameters of one direction of an emulated link.
///
/// The default is a perfect link: no delay, no loss, no duplication, no rate limit. Every
/// probability is a number in `[0, 1]`.
///
/// The stages a datagram passes through, in order:
/// 1. **Rate limit** (when [`bandwidth`](Self::bandwidth) is set): the datagram waits behind the
///    bytes still being serialised; if that backlog plus the datagram exceeds
///    [`queue_limit`](Self::queue_limit), it is dropped (a tail-drop router queue).
/// 2. **Loss**: uniform loss with probability [`loss`](Self::loss), and independently the
///    Gilbert–Elliott burst model of [`burst_loss`](Self::burst_loss).
/// 3. **Delay**: [`latency`](Self::latency) plus a uniform jitter in
///    `[-jitter, +jitter]` (never below zero), plus [`reorder_delay`](Self::reorder_delay) with
///    probability [`reorder`](Self::reorder). Independent delays let later datagrams overtake
///    earlier ones, as on a real path with jitter.
/// 4. **Duplication**: with probability [`duplicate`](Self::duplicate) a second copy is
///    scheduled with its own independently drawn delay.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkConfig {
    /// One-way base delay.
    pub latency: Duration,
    /// Half-width of the uniform jitter added to [`latency`](Self::latency).
    pub jitter: Duration,
    /// Probability that a datagram is lost, independently of every other datagram.
    pub loss: f64,
    /// Optional bursty loss (applied in addition to [`loss`](Self::loss)).
    pub burst_loss: Option<GilbertElliott>,
    /// Probability that a delivered datagram is delivered twice.
    pub duplicate: f64,
    /// Probability that a datagram is held back by an extra
    /// [`reorder_delay`](Self::reorder_delay), letting later ones overtake it.
    pub reorder: f64,
    /// Extra delay of a datagram picked for reordering.
    pub reorder_delay: Duration,
    /// Link rate in bytes per second; `None` means unlimited.
    pub bandwidth: Option<u64>,
    /// With a rate limit: the most bytes not yet serialised (waiting, or on the wire) before
    /// new datagrams are dropped. A datagram arriving at an idle link is always accepted.
    pub queue_limit: usize,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self::perfect()
    }
}

impl LinkConfig {
    /// A link that delivers every datagram at once, exactly once, in order.
    pub const fn perfect() -> Self {
        Self {
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
            burst_loss: None,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::ZERO,
            bandwidth: None,
            queue_limit: 64 * 1024,
        }
    }

    /// A link that loses everything (a cable pulled out): useful for timeout tests.
    pub const fn dead() -> Self {
        let mut config = Self::perfect();
        config.loss = 1.0;
        config
    }

    /// Checks every field, naming the first one out of range.
    ///
    /// ```
    /// use sturnus_netem::{LinkConfig, NetemError};
    /// let config = LinkConfig { loss: 1.5, ..LinkConfig::perfect() };
    /// assert!(matches!(config.validate(), Err(NetemError::InvalidConfig { field: "loss", .. })));
    /// ```
    pub fn validate(&self) -> Result<(), NetemError> {
        probability("loss", self.loss)?;
        probability("duplicate", self.duplicate)?;
        probability("reorder", self.reorder)?;
        if let Some(ge) = &self.burst_loss {
            ge.validate()?;
        }
        if self.bandwidth == Some(0) {
            return Err(NetemError::InvalidConfig {
                field: "bandwidth",
                reason: "must be positive (use None for unlimited)",
            });
        }
        if self.bandwidth.is_some() && self.queue_limit == 0 {
            return Err(NetemError::InvalidConfig {
                field: "queue_limit",
                reason: "must be positive when a bandwidth is set",
            });
        }
        Ok(())
    }

    /// The long-run fraction of datagrams this link loses (uniform and burst loss together,
    /// queue drops not included).
    pub fn mean_loss(&self) -> f64 {
        let burst = self.burst_loss.map_or(0.0, |ge| ge.mean_loss());
        1.0 - (1.0 - self.loss) * (1.0 - burst)
    }
}

/// The Gilbert–Elliott two-state loss model: a *good* and a *bad* state with their own loss
/// probabilities, and per-datagram probabilities of moving between them. It produces the loss
/// bursts seen on Wi-Fi and mobile links, which uniform loss does not.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GilbertElliott {
    /// Probability, per datagram, of moving from the good state to the bad one.
    pub good_to_bad: f64,
    /// Probability, per datagram, of moving from the bad state back to the good one.
    /// Its inverse is the mean length of a bad period, in datagrams.
    pub bad_to_good: f64,
    /// Loss probability in the good state.
    pub loss_good: f64,
    /// Loss probability in the bad state.
    pub loss_bad: f64,
}

impl GilbertElliott {
    /// The long-run loss rate of the model alone: the stationary mix of the two states.
    ///
    /// ```
    /// use sturnus_netem::GilbertElliott;
    /// let ge = GilbertElliott { good_to_bad: 0.01, bad_to_good: 0.09, loss_good: 0.0, loss_bad: 1.0 };
    /// assert!((ge.mean_loss() - 0.1).abs() < 1e-12);
    /// ```
    pub fn mean_loss(&self) -> f64 {
        let total = self.good_to_bad + self.bad_to_good;
        if total == 0.0 {
            // Never leaves the good state it starts in.
            return self.loss_good;
        }
        let bad = self.good_to_bad / total;
        (1.0 - bad) * self.loss_good + bad * self.loss_bad
    }

    fn validate(&self) -> Result<(), NetemError> {
        probability("burst_loss.good_to_bad", self.good_to_bad)?;
        probability("burst_loss.bad_to_good", self.bad_to_good)?;
        probability("burst_loss.loss_good", self.loss_good)?;
        probability("burst_loss.loss_bad", self.loss_bad)
    }
}

fn probability(field: &'static str, p: f64) -> Result<(), NetemError> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(NetemError::InvalidConfig { field, reason: "must be a probability in [0, 1]" })
    }
}

/// Named link profiles, for examples, demos and tests.
///
/// The figures are typical of each kind of path, not measurements of any particular one.
///
/// | preset | latency ± jitter | loss | burst (mean bad run) | dup | reorder | rate |
/// |---|---|---|---|---|---|---|
/// | `perfect` | 0 | 0 | – | 0 | 0 | unlimited |
/// | `lan` | 0.5 ms ± 0.1 ms | 0 | – | 0 | 0 | 1 Gbit/s |
/// | `wifi` | 4 ms ± 3 ms | 0.5 % | 30 % loss, ~4 datagrams | 0.1 % | 0.5 % | 50 Mbit/s |
/// | `4g` | 40 ms ± 15 ms | 0.5 % | 50 % loss, ~5 datagrams | 0.1 % | 1 % | 20 Mbit/s |
/// | `bad` | 150 ms ± 50 ms | 5 % | 60 % loss, ~5 datagrams | 2 % | 5 % | 1 Mbit/s |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Preset {
    /// No impairment at all.
    Perfect,
    /// A wired local network.
    Lan,
    /// A home Wi-Fi hop: small delay, some jitter, short loss bursts.
    Wifi,
    /// A mobile 4G path: tens of milliseconds, more jitter, bursty loss.
    Mobile4g,
    /// A link you would not want to play on, for stress tests.
    Bad,
}

impl Preset {
    /// Every preset, mildest first.
    pub const ALL: [Preset; 5] =
        [Preset::Perfect, Preset::Lan, Preset::Wifi, Preset::Mobile4g, Preset::Bad];

    /// The preset's name, as accepted by [`FromStr`].
    pub const fn name(self) -> &'static str {
        match self {
            Preset::Perfect => "perfect",
            Preset::Lan => "lan",
            Preset::Wifi => "wifi",
            Preset::Mobile4g => "4g",
            Preset::Bad => "bad",
        }
    }

    /// The link parameters of this preset.
    pub fn config(self) -> LinkConfig {
        const MBIT: u64 = 1_000_000 / 8;
        let ms = Duration::from_micros;
        match self {
            Preset::Perfect => LinkConfig::perfect(),
            Preset::Lan => LinkConfig {
                latency: ms(500),
                jitter: ms(100),
                bandwidth: Some(1000 * MBIT),
                queue_limit: 1024 * 1024,
                ..LinkConfig::perfect()
            },
            Preset::Wifi => LinkConfig {
                latency: ms(4_000),
                jitter: ms(3_000),
                loss: 0.005,
                burst_loss: Some(GilbertElliott {
                    good_to_bad: 0.005,
                    bad_to_good: 0.25,
                    loss_good: 0.0,
                    loss_bad: 0.3,
                }),
                duplicate: 0.001,
                reorder: 0.005,
                reorder_delay: ms(5_000),
                bandwidth: Some(50 * MBIT),
                queue_limit: 256 * 1024,
            },
            Preset::Mobile4g => LinkConfig {
                latency: ms(40_000),
                jitter: ms(15_000),
                loss: 0.005,
                burst_loss: Some(GilbertElliott {
                    good_to_bad: 0.005,
                    bad_to_good: 0.2,
                    loss_good: 0.0,
                    loss_bad: 0.5,
                }),
                duplicate: 0.001,
                reorder: 0.01,
                reorder_delay: ms(20_000),
                bandwidth: Some(20 * MBIT),
                queue_limit: 128 * 1024,
            },
            Preset::Bad => LinkConfig {
                latency: ms(150_000),
                jitter: ms(50_000),
                loss: 0.05,
                burst_loss: Some(GilbertElliott {
                    good_to_bad: 0.02,
                    bad_to_good: 0.2,
                    loss_good: 0.0,
                    loss_bad: 0.6,
                }),
                duplicate: 0.02,
                reorder: 0.05,
                reorder_delay: ms(60_000),
                bandwidth: Some(MBIT),
                queue_limit: 32 * 1024,
            },
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Preset {
    type Err = NetemError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Preset::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| NetemError::UnknownPreset(s.to_owned()))
    }
}

impl From<Preset> for LinkConfig {
    fn from(preset: Preset) -> Self {
        preset.config()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_round_trip_their_names() {
        for preset in Preset::ALL {
            preset.config().validate().unwrap();
            assert_eq!(preset.name().parse::<Preset>().unwrap(), preset);
            assert_eq!(preset.to_string(), preset.name());
        }
        assert!(
            matches!("mars".parse::<Preset>(), Err(NetemError::UnknownPreset(name)) if name == "mars")
        );
    }

    #[test]
    fn presets_get_worse() {
        let losses: Vec<f64> = Preset::ALL.iter().map(|p| p.config().mean_loss()).collect();
        assert!(losses.windows(2).all(|w| w[0] <= w[1]), "{losses:?}");
    }

    #[test]
    fn validate_names_the_field() {
        let bad = |config: LinkConfig| match config.validate() {
            Err(NetemError::InvalidConfig { field, .. }) => field,
            other => panic!("expected an invalid config, got {other:?}"),
        };
        assert_eq!(bad(LinkConfig { duplicate: -0.1, ..LinkConfig::perfect() }), "duplicate");
        assert_eq!(bad(LinkConfig { reorder: f64::NAN, ..LinkConfig::perfect() }), "reorder");
        assert_eq!(bad(LinkConfig { bandwidth: Some(0), ..LinkConfig::perfect() }), "bandwidth");
        assert_eq!(
            bad(LinkConfig { bandwidth: Some(10), queue_limit: 0, ..LinkConfig::perfect() }),
            "queue_limit"
        );
        let ge =
            GilbertElliott { good_to_bad: 0.1, bad_to_good: 2.0, loss_good: 0.0, loss_bad: 1.0 };
        assert_eq!(
            bad(LinkConfig { burst_loss: Some(ge), ..LinkConfig::perfect() }),
            "burst_loss.bad_to_good"
        );
    }

    #[test]
    fn mean_loss_combines_uniform_and_burst() {
        let ge =
            GilbertElliott { good_to_bad: 0.1, bad_to_good: 0.1, loss_good: 0.0, loss_bad: 0.5 };
        let config = LinkConfig { loss: 0.1, burst_loss: Some(ge), ..LinkConfig::perfect() };
        // burst alone: half the time bad, half of those lost = 0.25
        assert!((config.mean_loss() - (1.0 - 0.9 * 0.75)).abs() < 1e-12);
        assert_eq!(LinkConfig::dead().mean_loss(), 1.0);
    }
}
