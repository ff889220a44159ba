//! For the tests that run the drivers in real time (threads, the loopback network): a
//! generous deadline for waiting on a condition. A test only ever waits for something to
//! happen, never for time to pass, so its outcome does not depend on the machine's speed.
#![allow(dead_code, reason = "each test file uses the part it needs")]

use std::time::{Duration, Instant};

/// How long a test waits for a condition before it fails.
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

/// [`PATIENCE`] from now.
#[expect(clippy::disallowed_methods, reason = "a deadline for a real-time test")]
pub(crate) fn deadline() -> Instant {
    Instant::now() + PATIENCE
}

/// Whether `at` has passed.
#[expect(clippy::disallowed_methods, reason = "a deadline for a real-time test")]
pub(crate) fn past(at: Instant) -> bool {
    Instant::now() > at
}
