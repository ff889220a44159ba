//! A timer wheel for the crowd's deadlines: a ring of one-millisecond slots, and a heap for the
//! few deadlines beyond the ring. A hundred thousand clients each reschedule about once a
//! second; a binary heap of them cost the crowd's single thread a twelfth of its time in
//! `pop` (cache misses on every level), where a slot costs a push and a pop on a short vector.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// Slots in the ring: deadlines up to about 4 s ahead go into a slot.
const SLOTS: u64 = 4096;

/// Deadlines (`Instant`, key), popped when due, in no particular order within a millisecond.
/// Stale entries are the caller's to skip, as with a heap.
pub(crate) struct Wheel {
    origin: Instant,
    slots: Vec<Vec<(Instant, usize)>>,
    /// The millisecond (since `origin`) of the first slot that may hold anything.
    cursor: u64,
    /// Entries in the ring.
    in_ring: usize,
    far: BinaryHeap<Reverse<(Instant, usize)>>,
}

impl Wheel {
    pub(crate) fn new(origin: Instant) -> Self {
        Self {
            origin,
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            cursor: 0,
            in_ring: 0,
            far: BinaryHeap::new(),
        }
    }

    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_millis()).unwrap_or(u64::MAX)
    }

    fn slot(&mut self, millis: u64) -> &mut Vec<(Instant, usize)> {
        // The remainder is below SLOTS, a small number.
        &mut self.slots[(millis % SLOTS) as usize]
    }

    pub(crate) fn push(&mut self, at: Instant, key: usize) {
        // A deadline already past goes into the first slot, which is due.
        let millis = self.millis(at).max(self.cursor);
        if millis - self.cursor >= SLOTS {
            self.far.push(Reverse((at, key)));
        } else {
            self.slot(millis).push((at, key));
            self.in_ring += 1;
        }
    }

    /// A deadline at or before `now`, if any is.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, usize)> {
        let current = self.millis(now);
        while self.in_ring > 0 && self.cursor <= current {
            let cursor = self.cursor;
            let slot = self.slot(cursor);
            let found = if cursor < current {
                slot.pop()
            } else {
                // The current millisecond: only what is due by now.
                slot.iter().position(|&(at, _)| at <= now).map(|i| slot.swap_remove(i))
            };
            if let Some(entry) = found {
                self.in_ring -= 1;
                return Some(entry);
            }
            if cursor == current {
                break;
            }
            self.cursor += 1;
        }
        if self.in_ring == 0 {
            self.cursor = self.cursor.max(current);
        }
        match self.far.peek() {
            Some(&Reverse((at, _))) if at <= now => self.far.pop().map(|Reverse(entry)| entry),
            _ => None,
        }
    }

    /// The earliest deadline, if any.
    pub(crate) fn next(&self) -> Option<Instant> {
        let far = self.far.peek().map(|&Reverse((at, _))| at);
        if self.in_ring == 0 {
            return far;
        }
        let ring = (self.cursor..self.cursor + SLOTS)
            .map(|millis| &self.slots[(millis % SLOTS) as usize])
            .find(|slot| !slot.is_empty())
            .and_then(|slot| slot.iter().map(|&(at, _)| at).min());
        match (ring, far) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// How long from `now` until the earliest deadline, at most `max` (zero if one is due).
    pub(crate) fn wait(&self, now: Instant, max: Duration) -> Duration {
        self.next().map_or(max, |at| at.saturating_duration_since(now).min(max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[expect(clippy::disallowed_methods, reason = "any instant will do as the origin")]
    fn pops_what_is_due_and_only_that_near_and_far() {
        let origin = Instant::now();
        let ms = Duration::from_millis(1);
        let mut wheel = Wheel::new(origin);
        // Within the ring (one at a fraction of a millisecond), beyond it, and already past.
        wheel.push(origin + ms * 10 + ms / 2, 1);
        wheel.push(origin + ms * 10, 2);
        wheel.push(origin + ms * 9000, 3);
        wheel.push(origin + ms * 3, 4);
        assert_eq!(wheel.next(), Some(origin + ms * 3));
        assert_eq!(wheel.pop_due(origin + ms * 2), None);
        assert_eq!(wheel.pop_due(origin + ms * 3), Some((origin + ms * 3, 4)));
        assert_eq!(wheel.pop_due(origin + ms * 3), None);
        // At 10 ms sharp, 2 is due and 1 (half a millisecond later) is not.
        assert_eq!(wheel.pop_due(origin + ms * 10), Some((origin + ms * 10, 2)));
        assert_eq!(wheel.pop_due(origin + ms * 10), None);
        assert_eq!(wheel.wait(origin + ms * 10, ms * 100), ms / 2);
        assert_eq!(wheel.pop_due(origin + ms * 11), Some((origin + ms * 10 + ms / 2, 1)));
        // A deadline pushed in the past is due at once.
        wheel.push(origin, 5);
        assert_eq!(wheel.pop_due(origin + ms * 11), Some((origin, 5)));
        assert_eq!(wheel.next(), Some(origin + ms * 9000));
        assert_eq!(wheel.pop_due(origin + ms * 8999), None);
        assert_eq!(wheel.pop_due(origin + ms * 9000), Some((origin + ms * 9000, 3)));
        assert_eq!((wheel.pop_due(origin + ms * 99_999), wheel.next()), (None, None));
    }

    #[test]
    #[expect(clippy::disallowed_methods, reason = "any instant will do as the origin")]
    fn wraps_around_the_ring_in_deadline_order_by_the_millisecond() {
        let origin = Instant::now();
        let ms = Duration::from_millis(1);
        let mut wheel = Wheel::new(origin);
        // 10,000 deadlines over 20 s, pushed as time goes (each at most 4 s ahead, as a crowd
        // does), popped as it goes: each exactly when due.
        let mut pushed = 0usize;
        let mut popped = Vec::new();
        for t in 0..20_000u64 {
            let now = origin + ms * u32::try_from(t).unwrap();
            while pushed < 10_000 && (pushed as u64) * 2 < t + 4000 {
                wheel.push(origin + ms * u32::try_from(pushed * 2).unwrap(), pushed);
                pushed += 1;
            }
            while let Some((at, key)) = wheel.pop_due(now) {
                assert!(at <= now && now - at < ms, "{key} due at {at:?} popped at {now:?}");
                popped.push(key);
            }
        }
        assert_eq!(popped, (0..10_000).collect::<Vec<_>>());
    }
}
