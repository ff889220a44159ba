//! Throttling of authentication attempts per source address: a token bucket and a backoff
//! after consecutive failures, remembered across connections in a bounded table.
//!
//! Sans-IO: time is an argument, so the rules are tested on a virtual clock.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::AuthThrottle;

/// The addresses that share one budget: an address cut to the configured prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Source(IpAddr);

impl Source {
    fn of(ip: IpAddr, config: &AuthThrottle) -> Self {
        // The transport's grouping (an IPv4 client on a dual-stack socket, ::ffff:a.b.c.d,
        // counts as its IPv4 address).
        Source(sturnus_transport::address_prefix(ip, config.ipv4_prefix, config.ipv6_prefix))
    }
}

/// The verdict on an attempt before it is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Within the budget: evaluate it, then [`Throttle::record`] the outcome.
    Allowed,
    /// Over the budget: refuse it unseen; the source may try again after this long.
    Throttled { retry_after: Duration },
}

/// What is remembered of one source.
#[derive(Debug)]
struct Record {
    /// Tokens in the bucket as of `last_seen`.
    tokens: f64,
    /// The source's latest attempt (the bucket was refilled up to then).
    last_seen: Instant,
    /// Failed attempts since the last accepted one.
    failures: u32,
    /// No attempt is evaluated before this.
    barred_until: Option<Instant>,
}

/// The authentication throttle of one server.
#[derive(Debug)]
pub(crate) struct Throttle {
    config: AuthThrottle,
    records: HashMap<Source, Record>,
    /// Every record by its `last_seen`, oldest first: what expires or is evicted first.
    by_age: BTreeSet<(Instant, Source)>,
    /// How long a quiet source is remembered.
    memory: Duration,
}

impl Throttle {
    /// A throttle with a validated `config`.
    pub(crate) fn new(config: AuthThrottle) -> Self {
        // Kept long enough that forgetting a source neither refills its bucket early nor lifts
        // its bar early, nor lets it start its failure count over soon after a bar ends.
        let refill = Duration::try_from_secs_f64(f64::from(config.burst) / config.per_second)
            .unwrap_or(Duration::MAX);
        let memory = refill.max(config.backoff_max).saturating_mul(2);
        Self { config, records: HashMap::new(), by_age: BTreeSet::new(), memory }
    }

    /// How many sources are remembered.
    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    /// Decides whether an attempt from `ip` at `now` may be evaluated, and takes a token from
    /// its source's bucket if so.
    pub(crate) fn check(&mut self, now: Instant, ip: IpAddr) -> Admission {
        if self.is_exempt(ip) {
            return Admission::Allowed;
        }
        let source = Source::of(ip, &self.config);
        self.expire(now);
        let burst = f64::from(self.config.burst);
        if !self.records.contains_key(&source) {
            if self.records.len() >= self.config.max_sources {
                self.evict_oldest();
            }
            let record = Record { tokens: burst, last_seen: now, failures: 0, barred_until: None };
            self.records.insert(source, record);
            self.by_age.insert((now, source));
        }
        let record = self.records.get_mut(&source).expect("inserted above if missing");
        // Time never runs backwards here, even if a caller's clock does.
        let now = now.max(record.last_seen);
        let elapsed = now.duration_since(record.last_seen).as_secs_f64();
        record.tokens = (record.tokens + elapsed * self.config.per_second).min(burst);
        if record.last_seen != now {
            self.by_age.remove(&(record.last_seen, source));
            self.by_age.insert((now, source));
            record.last_seen = now;
        }
        let barred = record.barred_until.map_or(Duration::ZERO, |until| until.duration_since(now));
        if barred.is_zero() && record.tokens >= 1.0 {
            record.tokens -= 1.0;
            return Admission::Allowed;
        }
        let refill = if record.tokens >= 1.0 {
            Duration::ZERO
        } else {
            // At least 0.001 tokens per second: at most 1,000 s.
            Duration::try_from_secs_f64((1.0 - record.tokens) / self.config.per_second)
                .unwrap_or(Duration::MAX)
        };
        Admission::Throttled { retry_after: barred.max(refill) }
    }

    /// Whether `ip` is a loopback source and those are exempt.
    fn is_exempt(&self, ip: IpAddr) -> bool {
        // Whole-address "prefixes" only canonicalise (::ffff:127.0.0.1 is 127.0.0.1).
        self.config.exempt_loopback && sturnus_transport::address_prefix(ip, 32, 128).is_loopback()
    }

    /// Records the outcome of an attempt [`check`](Self::check) allowed from `ip` at `now`.
    pub(crate) fn record(&mut self, now: Instant, ip: IpAddr, accepted: bool) {
        if self.is_exempt(ip) {
            return;
        }
        let source = Source::of(ip, &self.config);
        let Some(record) = self.records.get_mut(&source) else { return };
        if accepted {
            record.failures = 0;
            record.barred_until = None;
            return;
        }
        record.failures = record.failures.saturating_add(1);
        if let Some(doublings) = record.failures.checked_sub(self.config.backoff_after + 1) {
            let factor = 1u32.checked_shl(doublings).unwrap_or(u32::MAX);
            let bar = self.config.backoff_base.saturating_mul(factor).min(self.config.backoff_max);
            record.barred_until = now.checked_add(bar).or(record.barred_until);
        }
    }

    /// Forgets the sources quiet for longer than `memory`.
    fn expire(&mut self, now: Instant) {
        while let Some(&(last_seen, source)) = self.by_age.first() {
            if now.saturating_duration_since(last_seen) < self.memory {
                break;
            }
            self.by_age.pop_first();
            self.records.remove(&source);
        }
    }

    /// Forgets the source heard from least recently, to make room.
    fn evict_oldest(&mut self) {
        if let Some((_, source)) = self.by_age.pop_first() {
            self.records.remove(&source);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn config() -> AuthThrottle {
        AuthThrottle {
            per_second: 2.0,
            burst: 3,
            backoff_after: 2,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(8),
            ipv4_prefix: 32,
            ipv6_prefix: 64,
            max_sources: 4,
            exempt_loopback: true,
        }
    }

    /// Loopback (as the transport's address limits) is exempt unless the config says
    /// otherwise; IPv4-mapped loopback counts as loopback.
    #[test]
    fn loopback_is_exempt_unless_configured_otherwise() {
        let now = origin();
        for exempt in [true, false] {
            let mut throttle = Throttle::new(AuthThrottle { exempt_loopback: exempt, ..config() });
            for local in ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.2"] {
                let allowed = (0..50)
                    .filter(|_| {
                        let admitted = throttle.check(now, ip(local)) == Admission::Allowed;
                        throttle.record(now, ip(local), false);
                        admitted
                    })
                    .count();
                let expected = if exempt { 50 } else { 3 };
                assert_eq!(allowed, expected, "{local}, exempt {exempt}");
            }
            assert_eq!(throttle.len(), if exempt { 0 } else { 4 }, "exempt {exempt}");
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// Any instant will do as an origin.
    fn origin() -> Instant {
        crate::driver::now()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Allowed attempts over a span: the bucket lets `burst` through at once, then
    /// `per_second`.
    #[test]
    fn bucket_allows_burst_then_rate() {
        let config = AuthThrottle { backoff_after: 1_000_000, ..config() };
        let mut throttle = Throttle::new(config);
        let start = origin();
        let a = ip("192.0.2.1");
        let mut allowed = 0;
        // 1,000 attempts over 10 s (one every 10 ms), all accepted so no backoff.
        for i in 0..1000 {
            let now = start + ms(10 * i);
            if throttle.check(now, a) == Admission::Allowed {
                throttle.record(now, a, true);
                allowed += 1;
            }
        }
        // 3 at once, then 2 per second for the 9.99 s that follow (the clock advances in
        // 10 ms steps, so the last token may come one step late).
        assert!((21..=22).contains(&allowed), "allowed {allowed}");
    }

    #[test]
    fn throttled_attempt_says_when_to_retry() {
        let mut throttle = Throttle::new(config());
        let now = origin();
        let a = ip("192.0.2.1");
        for _ in 0..3 {
            assert_eq!(throttle.check(now, a), Admission::Allowed);
            throttle.record(now, a, true);
        }
        // Empty bucket at 2 tokens/s: one token in 500 ms.
        assert_eq!(throttle.check(now, a), Admission::Throttled { retry_after: ms(500) });
        assert_eq!(throttle.check(now + ms(200), a), Admission::Throttled { retry_after: ms(300) });
        assert_eq!(throttle.check(now + ms(500), a), Admission::Allowed);
    }

    /// After `backoff_after` failures in a row, each failure bars the source for a doubling
    /// time, capped; success clears it.
    #[test]
    fn failures_back_off_exponentially_and_success_clears() {
        let config = AuthThrottle { per_second: 1000.0, burst: 1000, ..config() };
        let mut throttle = Throttle::new(config);
        let mut now = origin();
        let a = ip("192.0.2.1");
        // Two free failures.
        for _ in 0..2 {
            assert_eq!(throttle.check(now, a), Admission::Allowed);
            throttle.record(now, a, false);
        }
        assert_eq!(throttle.check(now, a), Admission::Allowed);
        let mut bars = Vec::new();
        for _ in 0..6 {
            throttle.record(now, a, false);
            let Admission::Throttled { retry_after } = throttle.check(now, a) else {
                panic!("a failure past backoff_after bars the source");
            };
            bars.push(retry_after.as_secs());
            now += retry_after;
            assert_eq!(throttle.check(now, a), Admission::Allowed);
        }
        assert_eq!(bars, [1, 2, 4, 8, 8, 8]);
        // An accepted attempt clears the count: two free failures again.
        throttle.record(now, a, true);
        for _ in 0..2 {
            assert_eq!(throttle.check(now, a), Admission::Allowed);
            throttle.record(now, a, false);
        }
        assert_eq!(throttle.check(now, a), Admission::Allowed);
    }

    /// Throttled attempts are not evaluated and do not lengthen the bar.
    #[test]
    fn hammering_does_not_extend_the_bar() {
        let config = AuthThrottle { backoff_after: 0, ..config() };
        let mut throttle = Throttle::new(config);
        let now = origin();
        let a = ip("192.0.2.1");
        assert_eq!(throttle.check(now, a), Admission::Allowed);
        throttle.record(now, a, false);
        for i in 0..100 {
            assert!(matches!(throttle.check(now + ms(i), a), Admission::Throttled { .. }));
        }
        assert_eq!(throttle.check(now + ms(1000), a), Admission::Allowed);
    }

    /// Addresses in one prefix share a budget; others have their own.
    #[test]
    fn sources_are_prefixes() {
        let config = AuthThrottle { burst: 1, ipv4_prefix: 24, ..config() };
        let mut throttle = Throttle::new(config);
        let now = origin();
        assert_eq!(throttle.check(now, ip("192.0.2.1")), Admission::Allowed);
        assert!(matches!(throttle.check(now, ip("192.0.2.200")), Admission::Throttled { .. }));
        // The IPv4-mapped form of the same address is the same source.
        assert!(matches!(throttle.check(now, ip("::ffff:192.0.2.7")), Admission::Throttled { .. }));
        assert_eq!(throttle.check(now, ip("192.0.3.1")), Admission::Allowed);
        // IPv6 by /64 (the default).
        assert_eq!(throttle.check(now, ip("2001:db8:0:1::1")), Admission::Allowed);
        assert!(matches!(
            throttle.check(now, ip("2001:db8:0:1:ffff::9")),
            Admission::Throttled { .. }
        ));
        assert_eq!(throttle.check(now, ip("2001:db8:0:2::1")), Admission::Allowed);
        // Prefix 0: the whole family is one source; a full prefix keeps each address apart.
        let mut all = Throttle::new(AuthThrottle { burst: 1, ipv4_prefix: 0, ..config });
        assert_eq!(all.check(now, ip("1.2.3.4")), Admission::Allowed);
        assert!(matches!(all.check(now, ip("200.1.1.1")), Admission::Throttled { .. }));
        let mut each = Throttle::new(AuthThrottle { burst: 1, ipv6_prefix: 128, ..config });
        assert_eq!(each.check(now, ip("2001:db8::1")), Admission::Allowed);
        assert_eq!(each.check(now, ip("2001:db8::2")), Admission::Allowed);
    }

    /// The table never holds more than `max_sources`; the least recently heard goes first,
    /// and quiet sources are forgotten.
    #[test]
    fn memory_is_bounded() {
        let config = AuthThrottle { burst: 1, ..config() };
        let mut throttle = Throttle::new(config);
        let start = origin();
        for i in 0..1000u32 {
            let _ = throttle.check(start, IpAddr::V4(Ipv4Addr::from(i)));
            assert!(throttle.len() <= 4);
        }
        // Sources 996..999 are remembered (throttled); touching 996 makes 997 the oldest.
        let now = start + ms(1);
        let recent = |i: u32| IpAddr::V4(Ipv4Addr::from(i));
        assert!(matches!(throttle.check(now, recent(996)), Admission::Throttled { .. }));
        let _ = throttle.check(now, recent(5000));
        assert_eq!(throttle.check(now, recent(997)), Admission::Allowed, "997 was evicted");
        assert!(matches!(throttle.check(now, recent(996)), Admission::Throttled { .. }));
        // Quiet for twice the longest bar (16 s > 1.5 s to refill): all forgotten.
        let later = now + Duration::from_secs(16);
        let _ = throttle.check(later, recent(1));
        assert_eq!(throttle.len(), 1);
    }

    /// A forgotten source would start afresh, so a quiet source is kept through its bar.
    #[test]
    fn barred_sources_are_remembered() {
        let config = AuthThrottle { backoff_after: 0, ..config() };
        let mut throttle = Throttle::new(config);
        let now = origin();
        let a = ip("192.0.2.1");
        for i in 0..10u64 {
            let at = now + Duration::from_secs(8 * i);
            assert_eq!(throttle.check(at, a), Admission::Allowed, "attempt {i}");
            throttle.record(at, a, false);
        }
        // Ten failures in a row: barred for the full 8 s, still remembered 7 s later.
        let at = now + Duration::from_secs(79);
        assert!(matches!(throttle.check(at, a), Admission::Throttled { .. }));
    }
}
