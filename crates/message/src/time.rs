//! Network time: a client's estimate of the server's clock and tick.
//!
//! The server's clock is the time elapsed since it started ([`NetworkServer::server_time`]);
//! its tick is that time times [`ServerConfig::tick_rate`], rounded down. A client learns
//! both by asking: it sends a small time request on the layer's control channel (a burst of
//! [`BURST_SAMPLES`] every [`BURST_INTERVAL`] once authenticated, then one every
//! [`SAMPLE_INTERVAL`]), the server answers at once with its clock, and each answer is a
//! sample fed to a [`ClockEstimator`]. Read the estimate with
//! [`ClientContext::server_time`] and [`ClientContext::server_tick`]; a local client (host
//! mode) reads the server's clock itself, exactly.
//!
//! # The estimator
//!
//! A sample is three readings: the client's clock when the request left (`t0`), the server's
//! clock when it answered (`ts`), the client's clock when the answer arrived (`t1`). Its
//! round trip is `rtt = t1 − t0`, and its offset (server clock − client clock) is
//! `ts − (t0 + t1) / 2`, Cristian's estimate. Whatever the split of the round trip between
//! the two directions, that offset is wrong by at most `rtt / 2`; jitter and queueing make
//! round trips long and uneven, so **the sample with the shortest round trip is the one to
//! trust** (NTP's clock filter, Cristian's minimum-RTT rule).
//!
//! 1. The estimator keeps the last [`WINDOW`] samples in a fixed ring (no allocation).
//! 2. Its *target* offset combines them. A sample proves more than its midpoint: however the
//!    round trip split, the offset lies between `ts − t1` (all of it on the way back) and
//!    `ts − t0` (all on the way out), the interval `offset ± rtt / 2`. Every sample's interval
//!    holds the true offset, so their **intersection** does too; the target is its middle.
//!    Its lower end comes from the sample with the shortest way back, its upper end from the
//!    one with the shortest way out, so the error is half the difference of the two directions'
//!    best delays in the window, not half a whole round trip's excess: the minimum-RTT
//!    filter (NTP's clock filter, Cristian's rule), taken per direction (Marzullo's
//!    intersection of NTP's clock-select). An interval is widened by [`MAX_DRIFT_PPM`] of its
//!    age, so clocks that drift are followed. A late or asymmetric sample (a reply held up
//!    500 ms) has a wide interval that contains the intersection: it cannot move the target,
//!    so outliers are rejected by construction. If the intervals do not intersect (a clock
//!    drifting faster than assumed, a server whose clock jumped), the target falls back to
//!    the offset of the sample with the shortest round trip. Samples whose round trip is
//!    negative or longer than [`MAX_RTT`] are dropped.
//! 3. Game code sees an *applied* offset, which follows the target. Until
//!    [`SYNC_SAMPLES`] samples have arrived the applied offset *steps* to the target (the
//!    first samples are all there is). After that the estimator is synchronised and the
//!    applied offset *slews*: it moves towards the target by at most [`MAX_SLEW_PERCENT`] of the time
//!    elapsed (5 %: a second of client time shows between 0.95 and 1.05 s of server time),
//!    so the server time that game code sees never goes backwards and never jumps, and a
//!    change of the chosen sample moves it smoothly. A target more than [`STEP_FORWARD`]
//!    ahead (the estimate is far behind, say after a long stall) is stepped to: a forward
//!    jump breaks no ordering.
//!
//! The estimate is as good as the two directions' best delays in the window are alike: with
//! one-way delays of 20 ms ± 10 ms and a sample a second, the error is about a millisecond
//! (the test `tests/time.rs` measures it). It assumes the path's fastest delays are the same
//! both ways, as every two-way method must: a path 30 ms out and 10 ms back shows as a clock
//! 10 ms ahead.
//!
//! [`NetworkServer::server_time`]: crate::ServerContext::server_time
//! [`ServerConfig::tick_rate`]: crate::ServerConfig::tick_rate
//! [`ClientContext::server_time`]: crate::ClientContext::server_time
//! [`ClientContext::server_tick`]: crate::ClientContext::server_tick

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::Message;

/// How many recent samples the estimator keeps.
pub const WINDOW: usize = 32;

/// How many samples the estimator steps on before it slews.
pub const SYNC_SAMPLES: u32 = 4;

/// The largest share of elapsed time, in percent, by which the applied offset moves once
/// synchronised (5 %).
pub const MAX_SLEW_PERCENT: i64 = 5;

/// How far ahead the target may be before the applied offset steps to it rather than slews.
pub const STEP_FORWARD: Duration = Duration::from_millis(500);

/// A round trip longer than this is not a sample: no use for time, and likely stale.
pub const MAX_RTT: Duration = Duration::from_secs(10);

/// How fast the two clocks may drift apart, at most, in parts per million (100: two quartz
/// clocks of ±50 ppm each): a sample's bounds widen by this much of its age.
pub const MAX_DRIFT_PPM: i64 = 100;

/// How many time requests a client sends at first, [`BURST_INTERVAL`] apart.
pub const BURST_SAMPLES: u32 = 5;

/// The spacing of the first time requests.
pub const BURST_INTERVAL: Duration = Duration::from_millis(100);

/// The spacing of time requests after the first burst.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// One sample, in microseconds.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    /// The client's clock when the answer arrived.
    at: i64,
    rtt: i64,
    offset: i64,
}

/// Estimates a server's clock from samples of it (see the [module](self) for the algorithm).
///
/// It is sans-IO: every time is an argument. Client times are [`Duration`]s since any fixed
/// instant of the client's clock (the same for every call); server times are the server's
/// clock, the time since it started.
///
/// ```
/// use std::time::Duration;
/// use sturnus_message::time::ClockEstimator;
///
/// let ms = Duration::from_millis;
/// let mut clock = ClockEstimator::new();
/// // Sent at 1000 ms (client), answered at 5020 ms (server), back at 1040 ms (client).
/// clock.add_sample(ms(1000), ms(5020), ms(1040));
/// assert_eq!(clock.server_time(ms(1040)), Some(ms(5040)));
/// assert_eq!(clock.rtt(), Some(ms(40)));
/// ```
#[derive(Debug, Clone)]
pub struct ClockEstimator {
    samples: [Sample; WINDOW],
    /// Samples ever added (the next goes at `count % WINDOW`).
    count: u64,
    /// The offset game code sees at `anchor`, and the target it moves towards after.
    anchor: i64,
    applied: i64,
    target: i64,
    /// The smoothed round trip, in microseconds (RFC 6298's SRTT).
    srtt: i64,
}

impl Default for ClockEstimator {
    fn default() -> Self {
        Self::new()
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl ClockEstimator {
    /// An estimator with no samples.
    pub fn new() -> Self {
        Self {
            samples: [Sample::default(); WINDOW],
            count: 0,
            anchor: 0,
            applied: 0,
            target: 0,
            srtt: 0,
        }
    }

    /// Adds a sample: a request sent at `sent` (client clock), answered at `server`
    /// (server clock), the answer received at `received` (client clock). Returns whether it
    /// was kept (a round trip that is negative or over [`MAX_RTT`] is not).
    pub fn add_sample(&mut self, sent: Duration, server: Duration, received: Duration) -> bool {
        let (t0, ts, t1) = (micros(sent), micros(server), micros(received));
        let rtt = t1 - t0;
        if rtt < 0 || rtt > micros(MAX_RTT) {
            return false;
        }
        // ts − (t0 + t1) / 2, without overflow.
        let offset = ts - t0 - rtt / 2;
        let applied_now = self.applied_at(t1);
        let first = self.count == 0;
        let slot = usize::try_from(self.count % WINDOW as u64).unwrap_or(0);
        self.samples[slot] = Sample { at: t1, rtt, offset };
        self.count += 1;
        self.srtt = if first { rtt } else { self.srtt + (rtt - self.srtt) / 8 };
        let target = self.best(t1);
        if self.count <= u64::from(SYNC_SAMPLES) || target - applied_now > micros(STEP_FORWARD) {
            self.applied = target;
        } else {
            self.applied = applied_now;
        }
        self.anchor = t1;
        self.target = target;
        true
    }

    /// The target offset at client time `now`: the middle of the intersection of the
    /// samples' bounds, each widened by the drift since it was taken; if they do not
    /// intersect, the offset of the sample with the shortest round trip (age counted
    /// against it).
    fn best(&self, now: i64) -> i64 {
        let kept = usize::try_from(self.count).unwrap_or(WINDOW).min(WINDOW);
        let samples = &self.samples[..kept];
        let drift = |s: &Sample| (now - s.at).max(0).saturating_mul(MAX_DRIFT_PPM) / 1_000_000;
        let (mut low, mut high) = (i64::MIN, i64::MAX);
        for s in samples {
            // offset = ts − t0 − ⌊rtt / 2⌋: the bounds are ts − t1 and ts − t0.
            low = low.max(s.offset - (s.rtt - s.rtt / 2) - drift(s));
            high = high.min(s.offset + s.rtt / 2 + drift(s));
        }
        if low <= high {
            return low + (high - low) / 2;
        }
        let cost = |s: &Sample| s.rtt + 2 * drift(s);
        samples.iter().min_by_key(|s| cost(s)).map_or(0, |s| s.offset)
    }

    /// The offset game code sees at client time `now` (µs): the applied offset, moved
    /// towards the target by at most [`MAX_SLEW_PERCENT`] of the time since it was set.
    fn applied_at(&self, now: i64) -> i64 {
        let elapsed = (now - self.anchor).max(0);
        let room = elapsed.saturating_mul(MAX_SLEW_PERCENT) / 100;
        self.applied + (self.target - self.applied).clamp(-room, room)
    }

    /// The offset, server clock − client clock, the estimate moves towards: that of the
    /// chosen sample (`None` before the first), in microseconds.
    pub fn target_micros(&self) -> Option<i64> {
        (self.count > 0).then_some(self.target)
    }

    /// Whether the estimator has had enough samples to slew rather than step.
    pub fn is_synchronised(&self) -> bool {
        self.count >= u64::from(SYNC_SAMPLES)
    }

    /// How many samples were kept, ever.
    pub fn samples(&self) -> u64 {
        self.count
    }

    /// The estimated offset, server clock − client clock, at client time `now` (`None`
    /// before the first sample), in microseconds.
    pub fn offset_micros(&self, now: Duration) -> Option<i64> {
        (self.count > 0).then(|| self.applied_at(micros(now)))
    }

    /// The estimated server clock at client time `now` (`None` before the first sample; zero
    /// if the estimate is before the server started).
    pub fn server_time(&self, now: Duration) -> Option<Duration> {
        let offset = self.offset_micros(now)?;
        let server = micros(now).saturating_add(offset).max(0);
        Some(Duration::from_micros(server.unsigned_abs()))
    }

    /// The smoothed round trip of the samples (`None` before the first).
    pub fn rtt(&self) -> Option<Duration> {
        (self.count > 0).then(|| Duration::from_micros(self.srtt.unsigned_abs()))
    }
}

/// The tick of a clock at `time` ticking `rate` times a second.
pub fn tick_at(time: Duration, rate: u32) -> u64 {
    let ticks = time.as_micros() * u128::from(rate) / 1_000_000;
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

/// Client → server: what time is it? The client's clock when it asked, in microseconds,
/// echoed back so the client keeps no state per request.
#[derive(Serialize, Deserialize, Message)]
pub(crate) struct TimeRequest {
    pub(crate) client_us: u64,
}

/// Server → client: the answer, at once.
#[derive(Serialize, Deserialize, Message)]
pub(crate) struct TimeResponse {
    /// The request's `client_us`.
    pub(crate) client_us: u64,
    /// The server's clock (time since it started) when it answered, in microseconds.
    pub(crate) server_us: u64,
    /// The server's ticks per second.
    pub(crate) tick_rate: u32,
}

/// A client's side of network time: when to ask, and what it learnt.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientClock {
    pub(crate) estimator: ClockEstimator,
    /// The instant the client's clock counts from (the connection's start).
    epoch: Option<Instant>,
    /// When the next request is due (`None`: at once, once authenticated).
    next_request: Option<Instant>,
    /// Requests sent on this connection.
    requests: u32,
    /// The server's ticks per second, once heard.
    pub(crate) tick_rate: Option<u32>,
    /// A local client's server: its start and tick rate, read directly (host mode).
    pub(crate) exact: Option<(Instant, u32)>,
}

impl ClientClock {
    /// A clock for a connection starting at `now`.
    pub(crate) fn remote(now: Instant) -> Self {
        Self { epoch: Some(now), ..Self::default() }
    }

    /// A local client's clock: the server's own.
    pub(crate) fn local(server_epoch: Instant, tick_rate: u32) -> Self {
        Self {
            exact: Some((server_epoch, tick_rate)),
            tick_rate: Some(tick_rate),
            ..Self::default()
        }
    }

    /// The client's clock at `now`.
    fn local_time(&self, now: Instant) -> Duration {
        self.epoch.map_or(Duration::ZERO, |epoch| now.saturating_duration_since(epoch))
    }

    /// If a request is due at `now`, the request to send (and the next one is scheduled).
    pub(crate) fn due(&mut self, now: Instant) -> Option<TimeRequest> {
        if self.exact.is_some() || self.next_request.is_some_and(|at| now < at) {
            return None;
        }
        self.requests = self.requests.saturating_add(1);
        let interval = if self.requests < BURST_SAMPLES { BURST_INTERVAL } else { SAMPLE_INTERVAL };
        self.next_request = Some(now + interval);
        let client_us = u64::try_from(self.local_time(now).as_micros()).unwrap_or(u64::MAX);
        Some(TimeRequest { client_us })
    }

    /// When the next request is due, if the client asks at all.
    pub(crate) fn next_request(&self) -> Option<Instant> {
        if self.exact.is_some() { None } else { self.next_request }
    }

    /// Takes in an answer received at `now`; false if it cannot be one (from the future).
    pub(crate) fn on_response(&mut self, now: Instant, response: &TimeResponse) -> bool {
        let received = self.local_time(now);
        let sent = Duration::from_micros(response.client_us);
        if sent > received || !(1..=MAX_TICK_RATE).contains(&response.tick_rate) {
            return false;
        }
        self.tick_rate = Some(response.tick_rate);
        self.estimator.add_sample(sent, Duration::from_micros(response.server_us), received);
        true
    }

    /// The server's clock at `now`: exact for a local client, estimated otherwise.
    pub(crate) fn server_time(&self, now: Instant) -> Option<Duration> {
        match self.exact {
            Some((epoch, _)) => Some(now.saturating_duration_since(epoch)),
            None => self.estimator.server_time(self.local_time(now)),
        }
    }
}

/// The most ticks per second a server may have.
pub const MAX_TICK_RATE: u32 = 1000;

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Feeds a sample of a server whose clock is the client's + `offset` ms, with one-way
    /// delays `up` and `down` ms, sent at client time `at` ms.
    fn feed(clock: &mut ClockEstimator, offset: u64, at: u64, up: u64, down: u64) {
        assert!(clock.add_sample(ms(at), ms(at + up + offset), ms(at + up + down)));
    }

    #[test]
    fn first_samples_step_then_it_slews() {
        let mut clock = ClockEstimator::new();
        assert_eq!(clock.server_time(ms(0)), None);
        feed(&mut clock, 1000, 0, 30, 10); // 10 ms off: (30 − 10) / 2
        assert_eq!(clock.server_time(ms(40)), Some(ms(1050)));
        feed(&mut clock, 1000, 100, 10, 10); // shorter, exact: stepped to
        assert_eq!(clock.server_time(ms(120)), Some(ms(1120)));
    }

    #[test]
    fn the_shortest_round_trip_wins_and_a_late_reply_is_ignored() {
        let mut clock = ClockEstimator::new();
        for i in 0..8 {
            feed(&mut clock, 5000, i * 100, 10 + i % 3, 10 + (i + 1) % 3);
        }
        let before = clock.offset_micros(ms(900)).unwrap();
        // One reply held up 500 ms on its way back: its offset is 250 ms off.
        feed(&mut clock, 5000, 900, 10, 510);
        let after = clock.offset_micros(ms(1410)).unwrap();
        assert!((after - before).abs() <= 1000, "moved {} µs", after - before);
        assert!((after - 5_000_000).abs() <= 1000, "off by {} µs", after - 5_000_000);
    }

    #[test]
    fn once_synchronised_time_never_goes_backwards() {
        let mut clock = ClockEstimator::new();
        for i in 0..SYNC_SAMPLES as u64 {
            feed(&mut clock, 1000, i * 100, 10, 10);
        }
        // The server turns out to be 100 ms behind what was thought.
        let mut last = clock.server_time(ms(400)).unwrap();
        for i in 4..200 {
            feed(&mut clock, 900, i * 100, 5, 5);
            for t in 0..10 {
                let now = clock.server_time(ms(i * 100 + 10 + t * 10)).unwrap();
                assert!(now >= last, "went back from {last:?} to {now:?}");
                last = now;
            }
        }
        assert_eq!(clock.offset_micros(ms(20_000)), Some(900_000), "slewed all the way");
    }

    #[test]
    fn bad_round_trips_are_dropped() {
        let mut clock = ClockEstimator::new();
        assert!(!clock.add_sample(ms(100), ms(5), ms(99)));
        assert!(!clock.add_sample(ms(0), ms(5), MAX_RTT + ms(1)));
        assert_eq!(clock.samples(), 0);
    }

    #[test]
    fn ticks() {
        assert_eq!(tick_at(ms(999), 60), 59);
        assert_eq!(tick_at(ms(1000), 60), 60);
        assert_eq!(tick_at(Duration::MAX, 1000), u64::MAX);
    }
}
