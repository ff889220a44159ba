//! Cache prefetching, for drivers that handle many connections (or many endpoints) in one
//! thread.
//!
//! A server with 100,000 connections meets each one cold: the state a datagram touches (its
//! entry in the address table, its slot, the connection and its channels) was last used a
//! second ago and has left every cache, so handling it waits on a chain of memory reads, each
//! about 100 ns, one after the other. A driver that holds a batch of datagrams knows which
//! connections come next. [`Pipeline`] lays out the batch so that each item's state is asked
//! for in [`PREFETCH_STAGES`] steps, one item apart, while earlier items are handled: each step
//! reads only what the step before it brought in, and the reads of several items overlap
//! instead of queueing.
//!
//! Prefetching is a hint. It never changes what the endpoint does, only how long it waits for
//! memory; on targets without a prefetch instruction it does nothing.

/// How many steps [`Endpoint::prefetch_source`](crate::Endpoint::prefetch_source) and
/// [`Endpoint::prefetch`](crate::Endpoint::prefetch) take to bring in an item's state: stage
/// `s` reads what stages below `s` brought in and asks for the next level.
pub const PREFETCH_STAGES: usize = 4;

/// Connections from which prefetching pays: below, their state mostly stays in cache and
/// asking costs more than it saves. [`Host`](crate::Host) prefetches the senders of what it
/// reads from this many connections on, and the endpoint its own queues' connections.
/// `sturnus-bench sansio` on a 2-core VM (512 KiB of L2 per core, 32 MiB of L3) measured the
/// server's time a message 17 % higher with prefetching at 1,000 clients, 18 % lower at
/// 4,000 and 43 % lower at 100,000.
pub const PREFETCH_FROM_CONNECTIONS: usize = 2048;

/// One step of a [`Pipeline`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Run prefetch `stage` (below [`PREFETCH_STAGES`]) for item `item`.
    Prefetch {
        /// The item's index in the batch.
        item: usize,
        /// The stage to run.
        stage: usize,
    },
    /// Handle item `item`: every stage has run for it, in order, one item apart.
    Handle(usize),
}

/// The order in which to prefetch and handle a batch of `len` items (datagrams, or endpoints
/// to service): item `i` gets stage `s` just before item `i + s - PREFETCH_STAGES` is handled,
/// so its stages run in order with an item's work between them, and it is handled one item's
/// work after its last stage. Every item is handled exactly once, in order.
///
/// ```
/// use sturnus_transport::proto::prefetch::{Pipeline, Step};
///
/// let handled: Vec<usize> = Pipeline::new(3)
///     .filter_map(|step| match step {
///         Step::Handle(item) => Some(item),
///         Step::Prefetch { .. } => None,
///     })
///     .collect();
/// assert_eq!(handled, [0, 1, 2]);
/// ```
#[derive(Debug, Clone)]
pub struct Pipeline {
    len: usize,
    /// The current round: item `round - s` gets stage `s`, then item `round - STAGES` is
    /// handled.
    round: usize,
    /// The next stage of this round, or `PREFETCH_STAGES` for its handling.
    stage: usize,
}

impl Pipeline {
    /// A pipeline over items `0..len`.
    pub fn new(len: usize) -> Self {
        Self { len, round: 0, stage: 0 }
    }
}

impl Iterator for Pipeline {
    type Item = Step;

    fn next(&mut self) -> Option<Step> {
        loop {
            if self.round >= self.len + PREFETCH_STAGES {
                return None;
            }
            let stage = self.stage;
            if stage == PREFETCH_STAGES {
                self.stage = 0;
                self.round += 1;
                if let Some(item) = (self.round - 1).checked_sub(PREFETCH_STAGES) {
                    return Some(Step::Handle(item));
                }
                continue;
            }
            self.stage += 1;
            if let Some(item) = self.round.checked_sub(stage).filter(|&item| item < self.len) {
                return Some(Step::Prefetch { item, stage });
            }
        }
    }
}

/// Asks for the cache lines of `len` bytes from `start`. Never reads them: any address is
/// fine, valid or not.
#[allow(unsafe_code, reason = "the prefetch intrinsic; see the SAFETY comment")]
#[inline]
pub(crate) fn bytes(start: *const u8, len: usize) {
    // Elsewhere a hint with nothing to do.
    #[cfg(not(target_arch = "x86_64"))]
    let _ = start;
    let mut offset = 0;
    while offset < len {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `prefetcht0` is a hint: it never faults and changes no architectural state,
        // whatever the address. The call is `unsafe` only for its `target_feature` (SSE), which
        // every x86-64 CPU has.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                start.wrapping_add(offset).cast(),
            );
        }
        offset += 64;
    }
}

/// Asks for the lines of `value`.
#[inline]
pub(crate) fn value<T>(value: &T) {
    bytes(std::ptr::from_ref(value).cast(), size_of::<T>());
}

/// Asks for the first line of `items` (a queue's front, a buffer's start).
#[inline]
pub(crate) fn front<T>(items: &[T]) {
    bytes(items.as_ptr().cast(), size_of_val(items).min(1));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_gets_every_stage_in_order_an_item_apart_then_is_handled_once() {
        for len in [0, 1, 2, 3, PREFETCH_STAGES, 5, 17, 64] {
            let steps: Vec<Step> = Pipeline::new(len).collect();
            let handled: Vec<usize> = steps
                .iter()
                .filter_map(|s| match s {
                    Step::Handle(i) => Some(*i),
                    Step::Prefetch { .. } => None,
                })
                .collect();
            assert_eq!(handled, (0..len).collect::<Vec<_>>(), "len {len}");
            for item in 0..len {
                let at = |stage| {
                    steps
                        .iter()
                        .position(|s| *s == Step::Prefetch { item, stage })
                        .unwrap_or_else(|| panic!("len {len}: item {item} never got stage {stage}"))
                };
                let handled_at = steps.iter().position(|s| *s == Step::Handle(item)).unwrap();
                let handles_before = |pos: usize| {
                    steps[..pos].iter().filter(|s| matches!(s, Step::Handle(_))).count()
                };
                for stage in 1..PREFETCH_STAGES {
                    assert!(at(stage - 1) < at(stage), "len {len}: item {item} stage {stage}");
                }
                assert!(at(PREFETCH_STAGES - 1) < handled_at);
                // One item's handling between consecutive stages, where there is an earlier
                // item to handle (the first items' stages run back to back).
                for stage in 1..PREFETCH_STAGES {
                    let between = handles_before(at(stage)) - handles_before(at(stage - 1));
                    assert!(between <= 1, "len {len}: item {item} stage {stage}");
                    if item >= PREFETCH_STAGES {
                        assert_eq!(between, 1, "len {len}: item {item} stage {stage}");
                    }
                }
            }
            let prefetches = steps.len() - len;
            assert_eq!(prefetches, len * PREFETCH_STAGES, "len {len}");
        }
    }

    #[test]
    fn asking_for_any_address_is_harmless() {
        bytes(std::ptr::null(), 64);
        bytes(usize::MAX as *const u8, 128);
        let v = vec![1u64; 100];
        front(&v);
        value(&v);
        assert_eq!(v.iter().sum::<u64>(), 100);
    }
}
