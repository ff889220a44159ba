//! A batch handoff between two threads: the producer fills a batch of its own and publishes it
//! in one short critical section; the consumer swaps everything published out in another. The
//! two sides exchange their batches' buffers, so steady traffic allocates nothing, and a
//! lock is taken once per batch, not per message.
//!
//! Real threads share this state, so it is model-checked with `loom` (`cargo xtask loom`).

use std::time::Duration;

#[cfg(loom)]
use loom::sync::{
    Condvar, Mutex, MutexGuard,
    atomic::{AtomicBool, Ordering},
};
#[cfg(not(loom))]
use std::sync::{
    Condvar, Mutex, MutexGuard,
    atomic::{AtomicBool, Ordering},
};

/// What a [`Handoff`] carries: a batch of items whose buffers are reused.
pub(crate) trait Batch: Default {
    fn is_empty(&self) -> bool;
    fn clear(&mut self);
    /// Moves `other`'s items after this batch's own, leaving `other` empty.
    fn append(&mut self, other: &mut Self);
}

/// One direction of a two-thread handoff.
#[derive(Debug, Default)]
pub(crate) struct Handoff<B> {
    slot: Mutex<B>,
    /// Set (under the lock) when the slot holds something; lets the consumer skip the lock
    /// when nothing was published.
    pending: AtomicBool,
    published: Condvar,
}

fn lock<B>(mutex: &Mutex<B>) -> MutexGuard<'_, B> {
    // A panic while holding the lock leaves a batch that is still structurally sound.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<B: Batch> Handoff<B> {
    /// Hands over everything in `local`, which is left empty (possibly with the consumer's
    /// spare buffers).
    pub(crate) fn publish(&self, local: &mut B) {
        if local.is_empty() {
            return;
        }
        let mut slot = lock(&self.slot);
        if slot.is_empty() {
            std::mem::swap(&mut *slot, local);
            local.clear();
        } else {
            slot.append(local);
        }
        self.pending.store(true, Ordering::Release);
        drop(slot);
        self.published.notify_all();
    }

    /// Takes everything published since the last take into `out` (whose old contents are
    /// dropped). Returns whether there was anything.
    pub(crate) fn take(&self, out: &mut B) -> bool {
        if !self.pending.load(Ordering::Acquire) {
            return false;
        }
        let mut slot = lock(&self.slot);
        out.clear();
        std::mem::swap(&mut *slot, out);
        self.pending.store(false, Ordering::Relaxed);
        !out.is_empty()
    }

    /// Blocks until something is published or `timeout` passes (`None`: no limit). May return
    /// early.
    pub(crate) fn wait(&self, timeout: Option<Duration>) {
        let slot = lock(&self.slot);
        if !slot.is_empty() {
            return;
        }
        match timeout {
            None => drop(self.published.wait(slot)),
            #[cfg(not(loom))]
            Some(t) => drop(self.published.wait_timeout(slot, t)),
            #[cfg(loom)]
            Some(_) => drop(slot),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Numbers, for the tests.
    #[derive(Debug, Default, PartialEq)]
    struct Numbers(Vec<u32>);

    impl Batch for Numbers {
        fn is_empty(&self) -> bool {
            self.0.is_empty()
        }
        fn clear(&mut self) {
            self.0.clear();
        }
        fn append(&mut self, other: &mut Self) {
            self.0.append(&mut other.0);
        }
    }

    #[cfg(not(loom))]
    #[test]
    fn batches_arrive_whole_in_order_and_buffers_are_exchanged() {
        let handoff = Handoff::<Numbers>::default();
        let mut local = Numbers(Vec::with_capacity(64));
        let mut out = Numbers::default();
        assert!(!handoff.take(&mut out));
        local.0.extend([1, 2]);
        handoff.publish(&mut local);
        local.0.push(3);
        handoff.publish(&mut local);
        assert!(local.is_empty());
        assert!(handoff.take(&mut out));
        assert_eq!(out.0, [1, 2, 3]);
        assert!(out.0.capacity() >= 64, "the producer's buffer went over, not a copy");
        assert!(!handoff.take(&mut out));
        handoff.wait(Some(Duration::from_millis(1)));
    }

    /// Every interleaving of a producer publishing three batches and a consumer taking and
    /// waiting: nothing is lost, duplicated or reordered, and the consumer never sleeps
    /// through a publication.
    #[cfg(loom)]
    #[test]
    fn no_interleaving_loses_reorders_or_sleeps_through_a_batch() {
        loom::model(|| {
            let handoff = loom::sync::Arc::new(Handoff::<Numbers>::default());
            let producer = {
                let handoff = loom::sync::Arc::clone(&handoff);
                loom::thread::spawn(move || {
                    let mut local = Numbers::default();
                    for n in 0..3 {
                        local.0.push(n);
                        handoff.publish(&mut local);
                    }
                })
            };
            let mut seen = Vec::new();
            let mut out = Numbers::default();
            while seen.len() < 3 {
                if handoff.take(&mut out) {
                    seen.extend_from_slice(&out.0);
                } else {
                    handoff.wait(None);
                }
            }
            producer.join().unwrap();
            assert_eq!(seen, [0, 1, 2]);
        });
    }
}
