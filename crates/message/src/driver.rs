//! The only code of this crate that reads the clock or sleeps: helpers for a game loop on real
//! time.
//!
//! Everything else in the crate takes time as an input. A game loop on real time reads the
//! clock here, passes it to `update`, and sleeps with `wait`; an engine with its own clock, or
//! a simulation on virtual time, passes its own `now` and never calls this module.
//!
//! ```no_run
//! # use std::time::Duration;
//! # use sturnus_message::{driver, NetworkServer};
//! # fn run(server: &mut NetworkServer) -> Result<(), sturnus_message::MessageError> {
//! loop {
//!     server.update(driver::now())?;
//!     // … game logic …
//!     server.wait(Duration::from_millis(16))?;
//! }
//! # }
//! ```
#![expect(
    clippy::disallowed_methods,
    reason = "the driver is where real time enters: it reads the clock and sleeps"
)]

use std::time::{Duration, Instant};

use crate::{MessageError, NetworkClient, NetworkServer};

/// The current time, from the monotonic clock.
pub fn now() -> Instant {
    Instant::now()
}

/// Sleeps for `duration`: for a loop with nothing to wait on.
pub fn sleep(duration: Duration) {
    std::thread::sleep(duration);
}

impl NetworkServer {
    /// Sleeps until something may have arrived, the server's next deadline, or `timeout`
    /// passes, whichever is first. Returns at once if a local client has sent something.
    pub fn wait(&mut self, timeout: Duration) -> Result<(), MessageError> {
        let now = now();
        let timeout = match self.poll_timeout() {
            Some(at) => timeout.min(at.saturating_duration_since(now)),
            None => timeout,
        };
        let ready = self.local_pending();
        wait_on(ready, self.transport_mut(), timeout)
    }
}

impl NetworkClient {
    /// Sleeps until something may have arrived, the transport's next timer, or `timeout`
    /// passes.
    pub fn wait(&mut self, timeout: Duration) -> Result<(), MessageError> {
        let ready = self.local_pending();
        wait_on(ready, self.transport_mut(), timeout)
    }
}

/// Returns at once if a local peer's message is `ready`; otherwise waits on the transport, or
/// sleeps without one.
fn wait_on(
    ready: bool,
    transport: Option<&mut (dyn sturnus_transport::Transport + 'static)>,
    timeout: Duration,
) -> Result<(), MessageError> {
    match (ready, transport) {
        (true, _) => {}
        (false, Some(transport)) => transport.wait(timeout)?,
        (false, None) => sleep(timeout),
    }
    Ok(())
}
