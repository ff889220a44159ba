//! Which objects go into the next packet: a priority accumulator filling each packet up to a
//! per-connection byte budget, so bandwidth stays under the budget whatever the scene.
//!
//! The scheme is Glenn Fiedler's ("State Synchronization", Gaffer on Games): every tick, each
//! candidate that has something to send adds its priority (a base priority times a per-tick
//! factor, such as nearness, times the tick's length) to its accumulator; the candidates with
//! the highest accumulated priority are taken while they fit the tick's byte budget; the ones
//! taken reset to zero and the others keep what they accumulated, so a candidate that waits
//! rises until it is sent: nothing starves. Candidates flagged *important* (the locally owned
//! object, say) are taken first, every tick.
//!
//! [`ByteBudget`] turns a rate (kbit/s) into bytes per tick: a token bucket that carries unused
//! bytes over (up to one tick's worth extra, so bursts are bounded) and overused ones as debt.
//! The budget's rate can be changed at any time ([`ByteBudget::set_kbps`]), for example by a
//! congestion controller.
//!
//! Both are sans-IO (the tick's length is an input) and allocate nothing in steady state: the
//! scheduler reuses its vectors and ranks candidates with `select_nth_unstable_by`.
//!
//! # Rules of [`PriorityScheduler::select`]
//!
//! 1. Candidates not marked with [`PriorityScheduler::mark`] since the last
//!    [`begin_tick`](PriorityScheduler::begin_tick) have nothing to send: they are not taken
//!    and their accumulator neither grows nor resets.
//! 2. Marked *important* candidates are all taken first, whatever their size; their bytes are
//!    charged to the budget (with a [`ByteBudget`], more than the budget becomes debt, paid by
//!    the next ticks). If they alone exceed the rate, nothing else is ever sent: keep them few.
//! 3. The other marked candidates are taken by accumulated priority, highest first (ties: the
//!    one that has waited more ticks, then the one registered first), while they fit what is
//!    left of the budget. The first one that does not fit **ends the selection**: it stays
//!    first in line, and the bytes left over carry over in the [`ByteBudget`] so it fits the
//!    next tick (a smaller candidate does not overtake it, or a large one could wait forever).
//! 4. **A candidate too large for any tick** is sent alone rather than starving: if the first
//!    candidate of step 3 does not fit but some budget is left (more than zero bytes), it is
//!    taken anyway. The excess is debt in the [`ByteBudget`] (nothing more is sent until it is
//!    paid), so over time the rate still holds: what is selected never exceeds what the budget
//!    granted by more than one bucket (one tick's worth) plus one candidate's size.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use sturnus_object::priority::{ByteBudget, Dirty, PriorityScheduler};
//!
//! let tick = Duration::from_secs(1) / 60;
//! let mut budget = ByteBudget::new(256); // 256 kbit/s: 533 bytes per tick at 60 Hz
//! let mut scheduler = PriorityScheduler::new();
//! for object in 0..1000_u32 {
//!     scheduler.register(object, 1.0)?;
//! }
//! let mut packet = Vec::new();
//! for _ in 0..60 {
//!     scheduler.begin_tick(tick);
//!     // Object 0 is the local player's: in every packet. The others are dirty, 12 bytes each;
//!     // the near ones (< 100) count twice.
//!     scheduler.mark(0, Dirty::new(12).important());
//!     for object in 1..1000 {
//!         let nearness = if object < 100 { 2.0 } else { 1.0 };
//!         scheduler.mark(object, Dirty::new(12).scaled(nearness));
//!     }
//!     let bytes = scheduler.select(budget.refill(tick), &mut packet);
//!     budget.spend(bytes);
//!     assert!(packet.contains(&0));
//!     assert!(bytes <= 2 * 534);
//! }
//! # Ok::<(), sturnus_object::priority::PriorityError>(())
//! ```

use std::cmp::Ordering;
use std::hash::Hash;
use std::time::Duration;

use rustc_hash::FxHashMap;

/// A rejected configuration of the [`PriorityScheduler`].
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PriorityError {
    /// A base priority must be finite and not negative.
    #[error("base priority {0} is not a finite number >= 0")]
    BasePriority(f32),
}

/// What a marked candidate has to send this tick: its estimated size and priority factors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dirty {
    /// The estimated size of its update, in bytes.
    pub bytes: usize,
    /// A factor on its base priority for this tick (1 by default): nearness to the viewer,
    /// say. Negative or NaN counts as 0; infinity puts it first in line (unless its base
    /// priority is 0: nothing times infinity is still nothing).
    pub scale: f32,
    /// Taken first, every tick it is marked, whatever the budget (see the
    /// [module documentation](self)).
    pub important: bool,
}

impl Dirty {
    /// An update of `bytes` bytes, at its base priority, not important.
    #[must_use]
    pub const fn new(bytes: usize) -> Self {
        Self { bytes, scale: 1.0, important: false }
    }

    /// The same with its base priority scaled by `scale` this tick.
    #[must_use]
    pub const fn scaled(mut self, scale: f32) -> Self {
        self.scale = scale;
        self
    }

    /// The same, flagged important: taken first every tick.
    #[must_use]
    pub const fn important(mut self) -> Self {
        self.important = true;
        self
    }
}

/// One registered candidate.
#[derive(Debug, Clone)]
struct Entry<K> {
    key: K,
    base: f32,
    accumulated: f32,
    /// Marked ticks since it was last taken.
    waited: u32,
    /// What it has to send this tick, if it was marked.
    dirty: Option<Dirty>,
    /// Its accumulated priority and wait when it was last taken, for
    /// [`put_back`](PriorityScheduler::put_back).
    before_taken: (f32, u32),
}

/// A candidate being ranked: its accumulated priority, ticks waited and index.
#[derive(Debug, Clone, Copy)]
struct Ranked {
    accumulated: f32,
    waited: u32,
    index: usize,
}

/// Highest accumulated priority first, then the longest wait, then the lowest index.
fn rank(a: &Ranked, b: &Ranked) -> Ordering {
    b.accumulated
        .total_cmp(&a.accumulated)
        .then(b.waited.cmp(&a.waited))
        .then(a.index.cmp(&b.index))
}

/// Chooses, each tick, which candidates (objects, keyed by `K`) fill a packet up to a byte
/// budget, by accumulated priority. One per connection. See the [module documentation](self).
#[derive(Debug, Clone)]
pub struct PriorityScheduler<K> {
    index: FxHashMap<K, usize>,
    entries: Vec<Entry<K>>,
    /// The indices of the entries marked this tick: a tick costs what was marked, not what
    /// is registered.
    marked: Vec<usize>,
    /// Reused by `select`.
    ranked: Vec<Ranked>,
    /// The current tick's length, in seconds.
    dt: f32,
}

impl<K: Copy + Eq + Hash> Default for PriorityScheduler<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Copy + Eq + Hash> PriorityScheduler<K> {
    /// An empty scheduler.
    #[must_use]
    pub fn new() -> Self {
        Self {
            index: FxHashMap::default(),
            entries: Vec::new(),
            marked: Vec::new(),
            ranked: Vec::new(),
            dt: 0.0,
        }
    }

    /// Registers `key` with a base priority (its priority per second at scale 1), or changes
    /// the base priority of one already registered (keeping what it accumulated).
    ///
    /// # Errors
    ///
    /// [`PriorityError::BasePriority`] if `base` is negative, infinite or NaN.
    pub fn register(&mut self, key: K, base: f32) -> Result<(), PriorityError> {
        if !(base.is_finite() && base >= 0.0) {
            return Err(PriorityError::BasePriority(base));
        }
        if let Some(&i) = self.index.get(&key) {
            self.entries[i].base = base;
        } else {
            self.index.insert(key, self.entries.len());
            self.entries.push(Entry {
                key,
                base,
                accumulated: 0.0,
                waited: 0,
                dirty: None,
                before_taken: (0.0, 0),
            });
        }
        Ok(())
    }

    /// Forgets `key`; whether it was registered.
    pub fn remove(&mut self, key: K) -> bool {
        let Some(i) = self.index.remove(&key) else {
            return false;
        };
        let last = self.entries.len() - 1;
        // Marks name entries by index: drop the removed one's, renumber the moved one's.
        if self.entries[i].dirty.is_some() || self.entries[last].dirty.is_some() {
            self.marked.retain(|&m| m != i);
            for m in &mut self.marked {
                if *m == last {
                    *m = i;
                }
            }
        }
        self.entries.swap_remove(i);
        if let Some(moved) = self.entries.get(i) {
            self.index.insert(moved.key, i);
        }
        true
    }

    /// How many candidates are registered.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no candidate is registered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The accumulated priority of `key`, if registered.
    #[must_use]
    pub fn accumulated(&self, key: K) -> Option<f32> {
        self.index.get(&key).map(|&i| self.entries[i].accumulated)
    }

    /// The ticks `key` has been marked without being taken since it was last taken, if
    /// registered.
    #[must_use]
    pub fn waited(&self, key: K) -> Option<u32> {
        self.index.get(&key).map(|&i| self.entries[i].waited)
    }

    /// Starts a tick of length `dt`: forgets the previous tick's marks.
    pub fn begin_tick(&mut self, dt: Duration) {
        self.dt = dt.as_secs_f32();
        for &i in &self.marked {
            self.entries[i].dirty = None;
        }
        self.marked.clear();
    }

    /// Marks `key` as having `dirty` to send this tick (marking it again replaces it); whether
    /// it is registered (an unregistered key is ignored).
    pub fn mark(&mut self, key: K, dirty: Dirty) -> bool {
        let Some(&i) = self.index.get(&key) else {
            return false;
        };
        if self.entries[i].dirty.replace(dirty).is_none() {
            self.marked.push(i);
        }
        true
    }

    /// Fills `out` (cleared first) with the candidates to send this tick within `budget`
    /// bytes, highest accumulated priority first after the important ones, and returns their
    /// total size; the tick's marks are consumed. The rules, including when the total may
    /// exceed `budget`, are in the [module documentation](self).
    pub fn select(&mut self, budget: usize, out: &mut Vec<K>) -> usize {
        out.clear();
        self.ranked.clear();
        let mut used = 0_usize;
        for &index in &self.marked {
            let entry = &mut self.entries[index];
            let Some(dirty) = entry.dirty.take() else {
                continue;
            };
            let scale = if dirty.scale.is_nan() || dirty.scale <= 0.0 { 0.0 } else { dirty.scale };
            // NaN only from 0 × ∞ (a zero base priority or tick, an infinite scale).
            let gain = entry.base * scale * self.dt;
            let gain = if gain.is_nan() { 0.0 } else { gain };
            entry.accumulated = (entry.accumulated + gain).min(f32::MAX);
            if dirty.important {
                used = used.saturating_add(dirty.bytes);
                entry.before_taken = (entry.accumulated, entry.waited);
                entry.accumulated = 0.0;
                entry.waited = 0;
                out.push(entry.key);
            } else {
                entry.waited = entry.waited.saturating_add(1);
                self.ranked.push(Ranked {
                    accumulated: entry.accumulated,
                    waited: entry.waited,
                    index,
                });
                // Kept for the fill below.
                entry.dirty = Some(Dirty { scale, ..dirty });
            }
        }
        let mut remaining = budget.saturating_sub(used);
        // How many could fit at most: rank only those (a partial sort), the rest if needed.
        let smallest = self
            .ranked
            .iter()
            .map(|r| self.entries[r.index].dirty.map_or(0, |d| d.bytes))
            .min()
            .unwrap_or(0)
            .max(1);
        let head = (remaining / smallest + 1).min(self.ranked.len());
        if head > 0 && head < self.ranked.len() {
            self.ranked.select_nth_unstable_by(head - 1, rank);
        }
        self.ranked[..head].sort_unstable_by(rank);
        let mut sorted = head;
        let mut first = true;
        let mut at = 0;
        while at < self.ranked.len() {
            if at == sorted {
                // Everything ranked so far was taken and budget is left: rank the rest.
                self.ranked[sorted..].sort_unstable_by(rank);
                sorted = self.ranked.len();
            }
            let entry = &mut self.entries[self.ranked[at].index];
            let bytes = entry.dirty.map_or(0, |d| d.bytes);
            // Too large for what is left: the selection ends, unless it is the first and some
            // budget is left (rule 4: sent alone rather than starving).
            let alone = first && remaining > 0;
            if bytes > remaining && !alone {
                break;
            }
            remaining = remaining.saturating_sub(bytes);
            used = used.saturating_add(bytes);
            entry.before_taken = (entry.accumulated, entry.waited);
            entry.accumulated = 0.0;
            entry.waited = 0;
            out.push(entry.key);
            first = false;
            at += 1;
        }
        for &i in &self.marked {
            self.entries[i].dirty = None;
        }
        self.marked.clear();
        used
    }

    /// `key` was selected but could not be sent after all (its estimate was short and the
    /// packet filled up): it gets back the priority and wait it had, so it goes first next
    /// time instead of starting over. Whether it is registered.
    pub fn put_back(&mut self, key: K) -> bool {
        let Some(&i) = self.index.get(&key) else {
            return false;
        };
        let entry = &mut self.entries[i];
        (entry.accumulated, entry.waited) = entry.before_taken;
        true
    }
}

/// A per-connection byte budget from a rate: a token bucket refilled each tick, carrying unused
/// bytes over up to one tick's worth extra, and overused bytes as debt.
#[derive(Debug, Clone, PartialEq)]
pub struct ByteBudget {
    /// Bytes per second.
    rate: f64,
    /// Bytes available (negative: debt).
    tokens: f64,
}

impl ByteBudget {
    /// A budget of `kbps` kilobits (1,000 bits) per second, starting empty.
    #[must_use]
    pub fn new(kbps: u32) -> Self {
        Self { rate: f64::from(kbps) * 1000.0 / 8.0, tokens: 0.0 }
    }

    /// Changes the rate (congestion avoidance, say); what is carried over stays.
    pub fn set_kbps(&mut self, kbps: u32) {
        self.rate = f64::from(kbps) * 1000.0 / 8.0;
    }

    /// The rate in bytes per second.
    #[must_use]
    pub fn bytes_per_second(&self) -> f64 {
        self.rate
    }

    /// Adds a tick of length `dt` worth of bytes, keeping at most two ticks' worth (one
    /// tick's extra), and returns the whole bytes available now (0 while in debt).
    pub fn refill(&mut self, dt: Duration) -> usize {
        let tick = self.rate * dt.as_secs_f64();
        self.tokens = (self.tokens + tick).min(2.0 * tick);
        self.available()
    }

    /// The whole bytes available now (0 while in debt).
    #[must_use]
    pub fn available(&self) -> usize {
        #[expect(
            clippy::cast_possible_truncation,
            reason = "floor of a non-negative value below 2^53, clamped to usize by `as`"
        )]
        let bytes = self.tokens.max(0.0).floor() as usize;
        bytes
    }

    /// Charges `bytes` sent; more than available becomes debt.
    pub fn spend(&mut self, bytes: usize) {
        // Exact for any packet size (below 2^53 bytes).
        self.tokens -= bytes as f64;
    }
}
