//! [`RelayServer`]: a [`Relay`] driven over a socket with batched I/O.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sturnus_socket::{Outgoing, RecvBatch, Socket, SocketFactory, SocketStats};

use crate::RelayError;
use crate::relay::{Relay, RelayConfig, RelayStats};
use crate::token::RelayKey;
use crate::wire::HEADER_LEN;

/// Datagrams moved per socket call.
const BATCH: usize = 64;
/// The longest a [`RelayServer::run`] loop sleeps, so it sees its stop flag.
const MAX_WAIT: Duration = Duration::from_millis(50);

#[expect(clippy::disallowed_methods, reason = "the relay server is the driver: it owns the clocks")]
fn clocks() -> (Instant, u64) {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    (Instant::now(), unix)
}

/// A [`Relay`] on a socket: receives a batch, rewrites each datagram in place, sends the batch
/// on (`recvmmsg`/`sendmmsg` on Linux UDP), and runs the relay's timers. It reads the clocks
/// (monotonic for timers and rates, wall for token expiry) once per batch.
pub struct RelayServer<S> {
    socket: S,
    relay: Relay,
    recv: RecvBatch,
    /// `BATCH` slots of `max_datagram` bytes: each received datagram is copied into one and
    /// rewritten there, then the filled slots go out in one `send_batch`.
    send_buf: Vec<u8>,
    send_meta: Vec<(usize, SocketAddr, usize)>,
    slot: usize,
    busy_poll: Duration,
}

impl<S> fmt::Debug for RelayServer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayServer").field("relay", &self.relay).finish_non_exhaustive()
    }
}

impl<S: Socket> RelayServer<S> {
    /// A relay on `socket`, opening tokens with `key`.
    pub fn new(socket: S, config: RelayConfig, key: RelayKey) -> Result<Self, RelayError> {
        let slot = config.max_datagram;
        let relay = Relay::new(config, key)?;
        Ok(Self {
            socket,
            relay,
            // One byte more than the longest datagram relayed: a full slot was too long.
            recv: RecvBatch::new(BATCH, slot + 1),
            send_buf: vec![0; slot * BATCH],
            send_meta: Vec::with_capacity(BATCH),
            slot,
            busy_poll: Duration::ZERO,
        })
    }

    /// A relay on a socket of `factory` bound to `bind`.
    pub fn bind<F: SocketFactory<Socket = S>>(
        factory: &F,
        bind: SocketAddr,
        config: RelayConfig,
        key: RelayKey,
    ) -> Result<Self, RelayError> {
        Self::new(factory.server_socket(bind)?, config, key)
    }

    /// The address the relay listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.socket.local_addr()
    }

    /// The relay core (its bindings, its configuration).
    pub fn relay(&self) -> &Relay {
        &self.relay
    }

    /// The relay's counters.
    pub fn stats(&self) -> RelayStats {
        self.relay.stats()
    }

    /// The socket's counters.
    pub fn socket_stats(&self) -> SocketStats {
        self.socket.stats()
    }

    /// The socket.
    pub fn socket(&self) -> &S {
        &self.socket
    }

    /// Reads and relays whatever is waiting (up to a few batches), runs the timers and sends
    /// the notices they cause; returns how many datagrams were read. Never blocks.
    pub fn pump(&mut self) -> Result<usize, RelayError> {
        let (now, unix) = clocks();
        let mut read = 0;
        for _ in 0..16 {
            let n = self.socket.recv_batch(&mut self.recv)?;
            read += n;
            self.send_meta.clear();
            for (index, ((from, datagram), out)) in
                self.recv.iter().zip(self.send_buf.chunks_exact_mut(self.slot)).enumerate()
            {
                if datagram.len() > self.slot {
                    // Too long to relay: counted as oversized without being copied.
                    self.relay.note_oversized();
                    continue;
                }
                let out = &mut out[..datagram.len()];
                out.copy_from_slice(datagram);
                if let Some(forward) = self.relay.handle(now, unix, from, out) {
                    self.send_meta.push((index, forward.to, forward.len));
                }
            }
            self.send_filled()?;
            if n < self.recv.capacity() {
                break;
            }
        }
        self.relay.handle_timeout(now, unix);
        self.send_notices()?;
        Ok(read)
    }

    fn send_filled(&mut self) -> Result<(), RelayError> {
        let count = self.send_meta.len();
        let Some(&(_, first, _)) = self.send_meta.first() else { return Ok(()) };
        let mut batch = [Outgoing { to: first, payload: &[] }; BATCH];
        for (out, &(index, to, len)) in batch.iter_mut().zip(&self.send_meta) {
            let start = index * self.slot;
            *out = Outgoing { to, payload: &self.send_buf[start..start + len] };
        }
        let mut done = 0;
        while done < count {
            let n = self.socket.send_batch(&batch[done..count])?;
            if n == 0 {
                // The send buffer is full: the rest is lost, as on any congested hop.
                break;
            }
            done += n;
        }
        Ok(())
    }

    fn send_notices(&mut self) -> Result<(), RelayError> {
        while let Some((to, notice)) = self.relay.poll_transmit() {
            let _ = self.socket.send_to(&notice[..HEADER_LEN], to)?;
        }
        Ok(())
    }

    /// Keeps polling the socket for `busy_poll` after the last datagram before sleeping in
    /// `wait_readable` (default zero: sleep at once). Polling spares the relay hop a thread
    /// wake-up while traffic flows, at the cost of a core spinning for that long after it
    /// stops. Only for a machine with cores to spare: on two cores shared with the game
    /// processes it made the tail latency worse (`benches/README.md`, issue 19).
    pub fn set_busy_poll(&mut self, busy_poll: Duration) {
        self.busy_poll = busy_poll.min(Duration::from_millis(100));
    }

    /// Relays until `stop` is set: waits for datagrams (or the next timer, at most 50 ms),
    /// pumps, repeats (polling for [`set_busy_poll`](Self::set_busy_poll) before waiting).
    pub fn run(&mut self, stop: &AtomicBool) -> Result<(), RelayError> {
        self.run_reporting(stop, Duration::MAX, |_, _| {})
    }

    /// [`run`](Self::run), calling `report` with the relay's and the socket's counters about
    /// every `every` (and once at the end): how a service publishes its metrics while the
    /// relay runs on its own thread.
    pub fn run_reporting(
        &mut self,
        stop: &AtomicBool,
        every: Duration,
        mut report: impl FnMut(&RelayStats, &SocketStats),
    ) -> Result<(), RelayError> {
        let (mut last_read, _) = clocks();
        let mut last_report = last_read;
        while !stop.load(Ordering::Relaxed) {
            let read = self.pump()?;
            let (now, _) = clocks();
            if now.saturating_duration_since(last_report) >= every {
                report(&self.relay.stats(), &self.socket.stats());
                last_report = now;
            }
            if read > 0 {
                last_read = now;
                continue;
            }
            if now.saturating_duration_since(last_read) < self.busy_poll {
                std::hint::spin_loop();
                continue;
            }
            let wait = self
                .relay
                .poll_timeout()
                .map_or(MAX_WAIT, |at| at.saturating_duration_since(now).min(MAX_WAIT));
            self.socket.wait_readable(Some(wait))?;
        }
        report(&self.relay.stats(), &self.socket.stats());
        Ok(())
    }
}
