//! Logs captured for a test to read back: the lifecycle-log tests check what the layers say
//! and in which span.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

/// A log sink the test reads back; clones share the buffer.
#[derive(Debug, Clone, Default)]
pub struct LogSink(Arc<Mutex<Vec<u8>>>);

impl LogSink {
    /// Everything written so far.
    pub fn contents(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `f` with a subscriber of this thread only, at `filter` (`"info"`, …), writing plain
/// lines (spans included) into a sink; returns what `f` returned and the logs.
///
/// Other tests' threads logging at the same time without a subscriber can make `tracing`
/// cache a callsite as disabled: give a log test a test binary of its own.
pub fn capture_logs<R>(filter: &str, f: impl FnOnce() -> R) -> (R, String) {
    let sink = LogSink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let result = tracing::subscriber::with_default(subscriber, f);
    (result, sink.contents())
}

/// Installs, for the whole process, a subscriber at `filter` writing plain lines with thread
/// names into the returned sink: for logs written on other threads (an I/O thread). Once per
/// test binary.
pub fn capture_global_logs(filter: &str) -> LogSink {
    let sink = LogSink::default();
    let writer = sink.clone();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(move || writer.clone())
        .with_thread_names(true)
        .with_ansi(false)
        .init();
    sink
}
