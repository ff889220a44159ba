//! The link state machine.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use crate::{LinkConfig, NetemError, Rng};

/// Something a [`Link`] can carry: it knows its size on the wire and can be copied for
/// duplication.
pub trait Packet: Clone {
    /// Bytes this packet occupies on the link (used by the rate limit and the counters).
    fn wire_len(&self) -> usize;
}

impl Packet for Vec<u8> {
    fn wire_len(&self) -> usize {
        self.len()
    }
}

impl Packet for Box<[u8]> {
    fn wire_len(&self) -> usize {
        self.len()
    }
}

impl<T: Packet> Packet for (std::net::SocketAddr, T) {
    fn wire_len(&self) -> usize {
        self.1.wire_len()
    }
}

/// What became of one datagram handed to [`Link::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fate {
    /// It will be delivered (possibly twice, see [`LinkStats::duplicated`]).
    Scheduled,
    /// The loss model dropped it.
    Lost,
    /// The rate limiter's queue was full.
    QueueFull,
}

/// Counters of everything a [`Link`] did. All counts are of datagrams unless named `bytes_*`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Datagrams handed to [`Link::send`].
    pub sent: u64,
    /// Bytes handed to [`Link::send`].
    pub bytes_sent: u64,
    /// Datagrams returned by [`Link::poll_deliver`] (duplicates included).
    pub delivered: u64,
    /// Bytes returned by [`Link::poll_deliver`].
    pub bytes_delivered: u64,
    /// Datagrams dropped by the loss model (uniform or burst).
    pub lost: u64,
    /// Datagrams dropped because the rate limiter's queue was full.
    pub dropped_queue_full: u64,
    /// Extra copies scheduled by the duplication model.
    pub duplicated: u64,
    /// Copies given the extra reorder delay.
    pub reordered: u64,
    /// Copies scheduled for a time later than the moment they were sent.
    pub delayed: u64,
    /// The sum of the delays of all scheduled copies.
    pub total_delay: Duration,
}

/// One line: `sent 100 (12000 B), delivered 92 (11040 B) · lost 10, queue full 0, duplicated
/// 2, reordered 5, delayed 92, mean delay 41.3 ms`.
impl std::fmt::Display for LinkStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The copies scheduled: every datagram not dropped, and every duplicate.
        let scheduled = (self.sent + self.duplicated)
            .saturating_sub(self.lost + self.dropped_queue_full)
            .max(1);
        let mean = self.total_delay.as_secs_f64() / scheduled as f64;
        write!(
            f,
            "sent {} ({} B), delivered {} ({} B) · lost {}, queue full {}, duplicated {}, \
             reordered {}, delayed {}, mean delay {:.1} ms",
            self.sent,
            self.bytes_sent,
            self.delivered,
            self.bytes_delivered,
            self.lost,
            self.dropped_queue_full,
            self.duplicated,
            self.reordered,
            self.delayed,
            mean * 1000.0
        )
    }
}

/// One direction of an emulated network path: a sans-IO state machine.
///
/// It reads no clock and opens no socket: the caller passes `now` to every call, and time must
/// never go backwards. The driving loop is:
///
/// 1. [`send`](Self::send) each datagram that enters the link;
/// 2. [`poll_deliver`](Self::poll_deliver) until it returns `None` to collect what has arrived;
/// 3. sleep (or jump a virtual clock) until [`poll_timeout`](Self::poll_timeout), then repeat.
///
/// ```
/// use std::time::{Duration, Instant};
/// use sturnus_netem::{Link, LinkConfig};
///
/// let config = LinkConfig { latency: Duration::from_millis(20), ..LinkConfig::perfect() };
/// let mut link = Link::new(config, 1).unwrap();
/// let t0 = Instant::now();
/// link.send(t0, b"hello".to_vec());
/// assert_eq!(link.poll_deliver(t0), None); // still in flight
/// assert_eq!(link.poll_timeout(), Some(t0 + Duration::from_millis(20)));
/// assert_eq!(link.poll_deliver(t0 + Duration::from_millis(20)), Some(b"hello".to_vec()));
/// ```
#[derive(Debug)]
pub struct Link<P> {
    config: LinkConfig,
    rng: Rng,
    in_flight: BinaryHeap<InFlight<P>>,
    next_order: u64,
    /// When the rate limiter finishes serialising what it already holds.
    busy_until: Option<Instant>,
    /// Gilbert–Elliott state: `true` while in the bad state.
    in_bad_state: bool,
    stats: LinkStats,
}

impl<P: Packet> Link<P> {
    /// Creates a link with the given parameters and random seed. The same configuration, seed and
    /// sequence of calls always produce the same deliveries.
    pub fn new(config: LinkConfig, seed: u64) -> Result<Self, NetemError> {
        config.validate()?;
        Ok(Self {
            config,
            rng: Rng::new(seed),
            in_flight: BinaryHeap::new(),
            next_order: 0,
            busy_until: None,
            in_bad_state: false,
            stats: LinkStats::default(),
        })
    }

    /// The parameters in force.
    pub fn config(&self) -> &LinkConfig {
        &self.config
    }

    /// Changes the parameters from now on (for example to cut the link in the middle of a test).
    /// Datagrams already in flight keep the delivery time they were given.
    pub fn set_config(&mut self, config: LinkConfig) -> Result<(), NetemError> {
        config.validate()?;
        self.config = config;
        Ok(())
    }

    /// What the link has done so far.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// Copies scheduled but not yet delivered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Hands a datagram to the link at time `now`.
    pub fn send(&mut self, now: Instant, packet: P) -> Fate {
        let len = packet.wire_len();
        self.stats.sent += 1;
        self.stats.bytes_sent += len as u64;

        let departure = match self.config.bandwidth {
            None => now,
            Some(rate) => match self.serialise(now, len, rate) {
                Some(done) => done,
                None => {
                    self.stats.dropped_queue_full += 1;
                    return Fate::QueueFull;
                }
            },
        };

        if self.draw_loss() {
            self.stats.lost += 1;
            return Fate::Lost;
        }

        if self.rng.chance(self.config.duplicate) {
            self.stats.duplicated += 1;
            self.schedule(now, departure, packet.clone());
        }
        self.schedule(now, departure, packet);
        Fate::Scheduled
    }

    /// Returns the next datagram due at or before `now`, earliest first; `None` when nothing is
    /// due yet. Datagrams due at the same instant come out in the order they were sent.
    pub fn poll_deliver(&mut self, now: Instant) -> Option<P> {
        if self.in_flight.peek()?.at > now {
            return None;
        }
        let next = self.in_flight.pop()?;
        self.stats.delivered += 1;
        self.stats.bytes_delivered += next.packet.wire_len() as u64;
        Some(next.packet)
    }

    /// When the next datagram is due, if any is in flight.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.in_flight.peek().map(|f| f.at)
    }

    /// Queues `len` bytes behind the rate limiter; returns when their serialisation ends, or
    /// `None` when the queue has no room.
    fn serialise(&mut self, now: Instant, len: usize, rate: u64) -> Option<Instant> {
        let start = self.busy_until.map_or(now, |busy| busy.max(now));
        let waiting = start.saturating_duration_since(now);
        let backlog = bytes_in(waiting, rate);
        if backlog > 0 && backlog.saturating_add(len as u64) > self.config.queue_limit as u64 {
            return None;
        }
        let done = start + transmission_time(len as u64, rate);
        self.busy_until = Some(done);
        Some(done)
    }

    fn draw_loss(&mut self) -> bool {
        let uniform = self.rng.chance(self.config.loss);
        let burst = match self.config.burst_loss {
            None => false,
            Some(ge) => {
                let leave = if self.in_bad_state { ge.bad_to_good } else { ge.good_to_bad };
                if self.rng.chance(leave) {
                    self.in_bad_state = !self.in_bad_state;
                }
                let p = if self.in_bad_state { ge.loss_bad } else { ge.loss_good };
                self.rng.chance(p)
            }
        };
        uniform || burst
    }

    fn schedule(&mut self, now: Instant, departure: Instant, packet: P) {
        let mut delay = self.config.latency;
        let jitter = duration_nanos(self.config.jitter);
        if jitter > 0 {
            // Uniform in [-jitter, +jitter], clamped so a datagram never arrives before it left.
            let offset = self.rng.below(2 * jitter + 1);
            delay = Duration::from_nanos((duration_nanos(delay) + offset).saturating_sub(jitter));
        }
        if self.config.reorder > 0.0 && self.rng.chance(self.config.reorder) {
            delay += self.config.reorder_delay;
            self.stats.reordered += 1;
        }
        let at = departure + delay;
        if at > now {
            self.stats.delayed += 1;
        }
        self.stats.total_delay += at - now;
        let order = self.next_order;
        self.next_order += 1;
        self.in_flight.push(InFlight { at, order, packet });
    }
}

/// Nanoseconds in `d`, saturating at `u64::MAX` (about 584 years).
fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Bytes a link of `rate` bytes/s serialises in `d`.
fn bytes_in(d: Duration, rate: u64) -> u64 {
    let bytes = d.as_nanos() * u128::from(rate) / 1_000_000_000;
    u64::try_from(bytes).unwrap_or(u64::MAX)
}

/// Time a link of `rate` bytes/s needs for `len` bytes, rounded up to the nanosecond.
fn transmission_time(len: u64, rate: u64) -> Duration {
    let nanos = (u128::from(len) * 1_000_000_000).div_ceil(u128::from(rate));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// A scheduled copy. Ordered so that the max-heap pops the earliest `at`, ties by send order.
#[derive(Debug)]
struct InFlight<P> {
    at: Instant,
    order: u64,
    packet: P,
}

impl<P> PartialEq for InFlight<P> {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at && self.order == other.order
    }
}

impl<P> Eq for InFlight<P> {}

impl<P> PartialOrd for InFlight<P> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<P> Ord for InFlight<P> {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.order).cmp(&(self.at, self.order))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[expect(clippy::disallowed_methods, reason = "tests need some base instant")]
    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn stats_read_as_one_line_with_the_mean_delay_of_the_copies_scheduled() {
        let stats = LinkStats {
            sent: 10,
            bytes_sent: 1000,
            delivered: 9,
            bytes_delivered: 900,
            lost: 2,
            duplicated: 1,
            delayed: 9,
            total_delay: Duration::from_millis(90),
            ..LinkStats::default()
        };
        assert_eq!(
            stats.to_string(),
            "sent 10 (1000 B), delivered 9 (900 B) · lost 2, queue full 0, duplicated 1, \
             reordered 0, delayed 9, mean delay 10.0 ms"
        );
    }

    #[test]
    fn perfect_link_delivers_immediately_in_order() {
        let mut link = Link::new(LinkConfig::perfect(), 0).unwrap();
        let now = t0();
        for i in 0u8..10 {
            assert_eq!(link.send(now, vec![i]), Fate::Scheduled);
        }
        let got: Vec<u8> = std::iter::from_fn(|| link.poll_deliver(now)).map(|p| p[0]).collect();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        assert_eq!(link.poll_timeout(), None);
        assert_eq!(link.stats().delayed, 0);
    }

    #[test]
    fn queue_limit_drops_when_backlog_is_full() {
        // 1000 B/s and room for 2500 bytes not yet serialised: the first two (2000 bytes) fit,
        // a third would make 3000.
        let config =
            LinkConfig { bandwidth: Some(1000), queue_limit: 2500, ..LinkConfig::perfect() };
        let mut link = Link::new(config, 0).unwrap();
        let now = t0();
        let fates: Vec<Fate> = (0..4).map(|_| link.send(now, vec![0; 1000])).collect();
        assert_eq!(fates, [Fate::Scheduled, Fate::Scheduled, Fate::QueueFull, Fate::QueueFull]);
        assert_eq!(link.stats().dropped_queue_full, 2);
        // After a second the first has gone and there is room again.
        assert_eq!(link.send(now + Duration::from_secs(1), vec![0; 1000]), Fate::Scheduled);
    }

    #[test]
    fn reorder_delay_lets_later_datagrams_overtake() {
        let config = LinkConfig {
            reorder: 1.0,
            reorder_delay: Duration::from_millis(10),
            ..LinkConfig::perfect()
        };
        let mut link = Link::new(config, 0).unwrap();
        let now = t0();
        link.send(now, vec![1]);
        link.set_config(LinkConfig::perfect()).unwrap();
        link.send(now, vec![2]);
        assert_eq!(link.poll_deliver(now), Some(vec![2]));
        assert_eq!(link.poll_deliver(now), None);
        assert_eq!(link.poll_deliver(now + Duration::from_millis(10)), Some(vec![1]));
        assert_eq!(link.stats().reordered, 1);
    }

    #[test]
    fn dead_link_loses_everything() {
        let mut link = Link::new(LinkConfig::dead(), 3).unwrap();
        let now = t0();
        for _ in 0..100 {
            assert_eq!(link.send(now, vec![0; 10]), Fate::Lost);
        }
        assert_eq!(link.stats().lost, 100);
        assert_eq!(link.in_flight(), 0);
    }

    #[test]
    fn new_rejects_invalid_config() {
        let config = LinkConfig { loss: 2.0, ..LinkConfig::perfect() };
        assert!(Link::<Vec<u8>>::new(config, 0).is_err());
    }
}
