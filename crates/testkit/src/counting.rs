//! A global allocator that counts: [`Counting`].
//!
//! It counts, beside the system allocator:
//!
//! - per thread, the allocations (and reallocations) made while [`allocations_in`] runs a
//!   closure, and the bytes allocated and not freed ([`live_bytes`]): for tests that assert on
//!   their own thread's work (zero allocations per message, bounded memory);
//! - for the whole process, every allocation ([`process_allocations`]): for a benchmark's
//!   report, where the work is spread over threads.
//!
//! A test or benchmark binary installs it with
//! `#[global_allocator] static GLOBAL: Counting = Counting;` (one per binary: the library
//! only provides it).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// The counting allocator: the system allocator, with counters beside it. See the
/// [module documentation](self).
#[derive(Debug, Clone, Copy, Default)]
pub struct Counting;

/// Allocations of the whole process.
static PROCESS_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    /// Bytes allocated minus bytes freed by this thread (always kept).
    static LIVE: Cell<i64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counters are a static
// atomic and const-initialised thread locals, so touching them never allocates or re-enters.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        live(layout.size(), 0);
        // SAFETY: the caller's contract for `alloc` is passed through unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        live(0, layout.size());
        // SAFETY: `ptr` came from `System.alloc` with this layout (every allocation does).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        live(new_size, layout.size());
        // SAFETY: the caller's contract for `realloc` is passed through unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn count() {
    PROCESS_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            ALLOCATIONS.with(|n| n.set(n.get() + 1));
        }
    });
}

fn live(added: usize, freed: usize) {
    let delta = i64::try_from(added).unwrap_or(i64::MAX) - i64::try_from(freed).unwrap_or(i64::MAX);
    let _ = LIVE.try_with(|live| live.set(live.get() + delta));
}

/// Allocations (and reallocations) made by `f` on this thread. Zero unless [`Counting`] is the
/// global allocator.
pub fn allocations_in(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    COUNTING.with(|on| on.set(true));
    f();
    COUNTING.with(|on| on.set(false));
    ALLOCATIONS.with(Cell::get) - before
}

/// Bytes this thread has allocated and not freed (it may free what others allocated, so the
/// figure is meaningful as a difference over single-threaded work).
#[must_use]
pub fn live_bytes() -> i64 {
    LIVE.with(Cell::get)
}

/// Allocations (and reallocations) the whole process has made so far.
#[must_use]
pub fn process_allocations() -> u64 {
    PROCESS_ALLOCATIONS.load(Ordering::Relaxed)
}
