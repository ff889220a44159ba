//! Per-source limits of an accepting endpoint (see [`AddressLimits`]): connections per IP
//! address and per network prefix, and a token bucket per prefix for completed handshakes.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::siphash::SipHasher;
use super::time::Tick;
use crate::AddressLimits;

/// Token buckets for completed handshakes. The table has a fixed size and buckets are found by a
/// keyed hash of the prefix, so a flood of spoofed sources cannot grow memory; an honest
/// prefix shares a bucket with a given other prefix with probability 1 in this many.
const BUCKETS: usize = 4096;

/// Why a connection attempt from an address is not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Admit,
    /// The prefix completed too many handshakes lately: drop the response unanswered.
    Throttle,
    /// The address or its prefix holds as many connections as it may.
    Full,
}

/// The runtime state behind [`AddressLimits`].
#[derive(Debug)]
pub(crate) struct SourceLimits {
    limits: AddressLimits,
    /// Incoming connections per canonical IP address (only when that limit is on).
    per_ip: HashMap<IpAddr, u32>,
    /// Incoming connections per prefix (only when that limit is on).
    per_prefix: HashMap<IpAddr, u32>,
    /// Per bucket, the generic cell rate algorithm's "theoretical arrival time" in nanoseconds
    /// as a [`Tick`]: a reply is allowed while it is at most a burst ahead of now. Allocated
    /// on first use.
    buckets: Vec<u64>,
    /// Nanoseconds between replies at the sustained rate.
    interval: u64,
    key: (u64, u64),
}

impl SourceLimits {
    pub(crate) fn new(limits: AddressLimits, key: (u64, u64)) -> Self {
        let rate = u64::from(limits.handshakes_per_second_per_prefix);
        let interval = 1_000_000_000u64.checked_div(rate).unwrap_or(0);
        Self {
            limits,
            per_ip: HashMap::new(),
            per_prefix: HashMap::new(),
            buckets: Vec::new(),
            interval,
            key,
        }
    }

    fn exempt(&self, ip: IpAddr) -> bool {
        self.limits.exempt_loopback && ip.is_loopback()
    }

    /// The address with its host bits cleared.
    fn prefix(&self, ip: IpAddr) -> IpAddr {
        address_prefix(ip, self.limits.ipv4_prefix_len, self.limits.ipv6_prefix_len)
    }

    /// Whether `ip`, proven by a valid cookie, may complete a handshake now; takes a token if
    /// so. Never call it for an unproven source: a spoofer would spend its victim's tokens.
    pub(crate) fn allow_handshake(&mut self, now: Tick, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        if self.interval == 0 || self.exempt(ip) {
            return true;
        }
        if self.buckets.is_empty() {
            self.buckets = vec![0; BUCKETS];
        }
        let mut h = SipHasher::new(self.key.0, self.key.1);
        match self.prefix(ip) {
            IpAddr::V4(v4) => h.write(&v4.octets()),
            IpAddr::V6(v6) => h.write(&v6.octets()),
        };
        let index = usize::try_from(h.finish() % BUCKETS as u64).expect("below BUCKETS");
        let now = now.as_nanos();
        let tolerance =
            self.interval * u64::from(self.limits.handshake_burst_per_prefix.saturating_sub(1));
        let tat = self.buckets[index].max(now);
        if tat - now > tolerance {
            return false;
        }
        self.buckets[index] = tat + self.interval;
        true
    }

    /// Whether `ip` may open another connection.
    pub(crate) fn may_connect(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        if self.exempt(ip) {
            return true;
        }
        let under = |limit: u32, map: &HashMap<IpAddr, u32>, key: IpAddr| {
            limit == 0 || map.get(&key).copied().unwrap_or(0) < limit
        };
        under(self.limits.connections_per_ip, &self.per_ip, ip)
            && under(self.limits.connections_per_prefix, &self.per_prefix, self.prefix(ip))
    }

    /// What to do with a connect response with a valid cookie from `ip`: rate first, then the
    /// connection caps.
    pub(crate) fn on_handshake(&mut self, now: Tick, ip: IpAddr) -> Verdict {
        if !self.allow_handshake(now, ip) {
            Verdict::Throttle
        } else if !self.may_connect(ip) {
            Verdict::Full
        } else {
            Verdict::Admit
        }
    }

    /// A peer at `ip` opened a connection to us.
    pub(crate) fn opened(&mut self, ip: IpAddr) {
        let ip = ip.to_canonical();
        if self.exempt(ip) {
            return;
        }
        if self.limits.connections_per_ip > 0 {
            *self.per_ip.entry(ip).or_insert(0) += 1;
        }
        if self.limits.connections_per_prefix > 0 {
            *self.per_prefix.entry(self.prefix(ip)).or_insert(0) += 1;
        }
    }

    /// A connection a peer at `ip` opened to us is gone.
    pub(crate) fn closed(&mut self, ip: IpAddr) {
        let ip = ip.to_canonical();
        if self.exempt(ip) {
            return;
        }
        let prefix = self.prefix(ip);
        for (on, map, key) in [
            (self.limits.connections_per_ip > 0, &mut self.per_ip, ip),
            (self.limits.connections_per_prefix > 0, &mut self.per_prefix, prefix),
        ] {
            if !on {
                continue;
            }
            if let Some(n) = map.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&key);
                }
            }
        }
        // Keep the tables small once a crowd has gone.
        for map in [&mut self.per_ip, &mut self.per_prefix] {
            if map.capacity() > 64 && map.len() < map.capacity() / 4 {
                map.shrink_to(map.len() * 2);
            }
        }
    }
}

/// The network prefix of `ip`: the address with all but its first `ipv4_prefix_len` (IPv4) or
/// `ipv6_prefix_len` (IPv6) bits cleared. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, as an
/// IPv4 client appears on a dual-stack socket) counts as its IPv4 address. A length of 0 gives
/// the unspecified address (every source is one); a length past the address's size keeps the
/// whole address. This is how [`AddressLimits`] groups sources, and the message layer's
/// authentication throttle too.
///
/// ```
/// use std::net::IpAddr;
/// use sturnus_transport::address_prefix;
///
/// let ip = |s: &str| s.parse::<IpAddr>().unwrap();
/// assert_eq!(address_prefix(ip("203.0.113.77"), 24, 64), ip("203.0.113.0"));
/// assert_eq!(address_prefix(ip("::ffff:203.0.113.77"), 24, 64), ip("203.0.113.0"));
/// assert_eq!(address_prefix(ip("2001:db8:1:2:3:4:5:6"), 24, 64), ip("2001:db8:1:2::"));
/// ```
pub fn address_prefix(ip: IpAddr, ipv4_prefix_len: u8, ipv6_prefix_len: u8) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let len = u32::from(ipv4_prefix_len).min(32);
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let len = u32::from(ipv6_prefix_len).min(128);
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn origin() -> Tick {
        Tick::EPOCH
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_prefix_keeps_the_leading_bits_of_the_canonical_address() {
        assert_eq!(address_prefix(ip("10.1.2.3"), 24, 64), ip("10.1.2.0"));
        assert_eq!(address_prefix(ip("10.1.2.3"), 20, 64), ip("10.1.0.0"));
        assert_eq!(address_prefix(ip("10.1.2.3"), 32, 64), ip("10.1.2.3"));
        assert_eq!(address_prefix(ip("10.1.2.3"), 0, 64), ip("0.0.0.0"));
        assert_eq!(address_prefix(ip("10.1.2.3"), 99, 64), ip("10.1.2.3"), "clamped");
        assert_eq!(address_prefix(ip("::ffff:10.1.2.3"), 24, 64), ip("10.1.2.0"));
        assert_eq!(address_prefix(ip("2001:db8:1:2:3::9"), 24, 64), ip("2001:db8:1:2::"));
        assert_eq!(address_prefix(ip("2001:db8:1:2:3::9"), 24, 0), ip("::"));
        assert_eq!(address_prefix(ip("2001:db8::9"), 24, 200), ip("2001:db8::9"), "clamped");
    }

    #[test]
    fn connections_are_capped_per_ip_and_per_prefix_and_freed_on_close() {
        let limits = AddressLimits {
            connections_per_ip: 2,
            connections_per_prefix: 3,
            ..AddressLimits::default()
        };
        let mut s = SourceLimits::new(limits, (1, 2));
        s.opened(ip("10.1.2.3"));
        s.opened(ip("10.1.2.3"));
        assert!(!s.may_connect(ip("10.1.2.3")));
        // The IPv4-mapped form is the same address.
        assert!(!s.may_connect(ip("::ffff:10.1.2.3")));
        assert!(s.may_connect(ip("10.1.2.4")));
        s.opened(ip("10.1.2.4"));
        assert!(!s.may_connect(ip("10.1.2.5")), "the /24 is full");
        assert!(s.may_connect(ip("10.1.3.5")));
        assert!(s.may_connect(ip("127.0.0.1")), "loopback is exempt");
        s.closed(ip("10.1.2.3"));
        assert!(s.may_connect(ip("10.1.2.3")));
        assert!(s.may_connect(ip("10.1.2.5")));
    }

    #[test]
    fn ipv6_sources_share_a_slash_64() {
        let limits = AddressLimits { connections_per_prefix: 1, ..AddressLimits::default() };
        let mut s = SourceLimits::new(limits, (1, 2));
        s.opened(ip("2001:db8:1:2::1"));
        assert!(!s.may_connect(ip("2001:db8:1:2:ffff::9")));
        assert!(s.may_connect(ip("2001:db8:1:3::1")));
    }

    #[test]
    fn handshake_replies_follow_the_token_bucket() {
        let limits = AddressLimits {
            handshakes_per_second_per_prefix: 10,
            handshake_burst_per_prefix: 5,
            ..AddressLimits::default()
        };
        let start = origin();
        let mut s = SourceLimits::new(limits, (1, 2));
        let allowed = (0..100).filter(|_| s.allow_handshake(start, ip("10.0.0.1"))).count();
        assert_eq!(allowed, 5, "the burst");
        // Another /24 has its own bucket (the keys are fixed, so no collision here).
        assert!(s.allow_handshake(start, ip("10.0.1.1")));
        // One more each 100 ms.
        let later = start + Duration::from_millis(1000);
        let allowed = (0..100).filter(|_| s.allow_handshake(later, ip("10.0.0.2"))).count();
        assert_eq!(allowed, 5, "refilled to the burst after a second, no more");
        let t = later + Duration::from_millis(100);
        assert!(s.allow_handshake(t, ip("10.0.0.3")));
        assert!(!s.allow_handshake(t, ip("10.0.0.3")));
        assert!(s.allow_handshake(start, ip("127.0.0.1")), "loopback is exempt");
    }
}
