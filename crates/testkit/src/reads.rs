//! [`ReadLog`]: a socket that notes when each read that found datagrams was made, for tests of
//! how often a driver reads (its `read_interval`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sturnus_socket::{
    Outgoing, Readiness, RecvBatch, RecvMeta, SendStatus, Socket, SocketError, SocketFactory,
    SocketStats, SocketWaker,
};

/// The instants of a socket's reads that found datagrams, shared with the test.
pub type Reads = Arc<Mutex<Vec<Instant>>>;

/// A socket of `S` that stamps every read that found datagrams (with the real clock) into a
/// shared [`Reads`]; everything else passes through.
#[derive(Debug)]
pub struct ReadLog<S> {
    inner: S,
    reads: Reads,
}

impl<S> ReadLog<S> {
    /// `inner`, stamping its reads into `reads`.
    pub fn new(inner: S, reads: Reads) -> Self {
        Self { inner, reads }
    }

    #[expect(clippy::disallowed_methods, reason = "the log times a driver's real reads")]
    fn note(&self, found: bool) {
        if found {
            self.reads.lock().unwrap_or_else(PoisonError::into_inner).push(Instant::now());
        }
    }
}

impl<S: Socket> Socket for ReadLog<S> {
    fn send_to(&mut self, payload: &[u8], to: SocketAddr) -> Result<SendStatus, SocketError> {
        self.inner.send_to(payload, to)
    }
    fn send_batch(&mut self, batch: &[Outgoing<'_>]) -> Result<usize, SocketError> {
        self.inner.send_batch(batch)
    }
    fn recv_from(&mut self, buf: &mut [u8]) -> Result<Option<RecvMeta>, SocketError> {
        let meta = self.inner.recv_from(buf)?;
        self.note(meta.is_some());
        Ok(meta)
    }
    fn recv_batch(&mut self, batch: &mut RecvBatch) -> Result<usize, SocketError> {
        let n = self.inner.recv_batch(batch)?;
        self.note(n > 0);
        Ok(n)
    }
    fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr()
    }
    fn wait_readable(&mut self, timeout: Option<Duration>) -> Result<Readiness, SocketError> {
        self.inner.wait_readable(timeout)
    }
    fn stats(&self) -> SocketStats {
        self.inner.stats()
    }
    fn waker(&self) -> Option<SocketWaker> {
        self.inner.waker()
    }
}

/// A factory whose sockets are [`ReadLog`]s of `F`'s, all stamping into one [`Reads`].
#[derive(Debug)]
pub struct ReadLogFactory<F> {
    inner: F,
    reads: Reads,
}

impl<F> ReadLogFactory<F> {
    /// Sockets of `inner`, stamping their reads into `reads`.
    pub fn new(inner: F, reads: Reads) -> Self {
        Self { inner, reads }
    }
}

impl<F: SocketFactory> SocketFactory for ReadLogFactory<F> {
    type Socket = ReadLog<F::Socket>;

    fn server_socket(&self, bind: SocketAddr) -> Result<Self::Socket, SocketError> {
        Ok(ReadLog::new(self.inner.server_socket(bind)?, Arc::clone(&self.reads)))
    }
    fn client_socket(&self, remote: SocketAddr) -> Result<Self::Socket, SocketError> {
        Ok(ReadLog::new(self.inner.client_socket(remote)?, Arc::clone(&self.reads)))
    }
}

/// Checks that the drains in `reads` start at least `interval` apart, but for `slack` (a read
/// is stamped a little after the driver decided to make it); names the first pair that does
/// not. Reads less than a millisecond after the previous one are taken as the same drain (a
/// driver reads a full socket in several batches).
pub fn check_spacing(reads: &Reads, interval: Duration, slack: Duration) -> Result<(), String> {
    let reads = reads.lock().unwrap_or_else(PoisonError::into_inner);
    let same_drain = Duration::from_millis(1);
    let mut drain_start: Option<Instant> = None;
    let mut previous: Option<Instant> = None;
    for &read in reads.iter() {
        if previous.is_some_and(|p| read.saturating_duration_since(p) < same_drain) {
            previous = Some(read);
            continue;
        }
        if let Some(start) = drain_start {
            let gap = read.saturating_duration_since(start);
            if gap + slack < interval {
                return Err(format!("two drains {gap:?} apart (interval {interval:?}): {reads:?}"));
            }
        }
        drain_start = Some(read);
        previous = Some(read);
    }
    Ok(())
}
