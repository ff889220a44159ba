//! The bench's own messages. Every message starts with a tag byte; data messages carry a
//! sequence number so the receiver checks delivery order end to end.

use std::time::Duration;

/// A data message the server counts.
pub(crate) const DATA: u8 = 0xD1;
/// A data message the server counts and sends back on the same channel.
pub(crate) const ECHO: u8 = 0xE1;
/// Client → server: a run starts (resets the server's counters).
pub(crate) const START: u8 = 0x51;
/// Server → client: the answer to [`START`].
pub(crate) const STARTED: u8 = 0x52;
/// Client → server: the run's data is all sent.
pub(crate) const DONE: u8 = 0xD0;
/// Server → client: the answer to [`DONE`], a [`Report`].
pub(crate) const REPORT: u8 = 0x53;

/// The smallest data message: tag and sequence number.
pub(crate) const DATA_HEADER: usize = 9;

/// Writes a data message of `buf.len()` bytes (the rest zero-filled once by the caller).
pub(crate) fn write_data(buf: &mut [u8], tag: u8, seq: u64) {
    buf[0] = tag;
    buf[1..DATA_HEADER].copy_from_slice(&seq.to_le_bytes());
}

/// The tag and sequence number of a data message.
pub(crate) fn read_data(msg: &[u8]) -> Option<(u8, u64)> {
    let seq = msg.get(1..DATA_HEADER)?;
    Some((msg[0], u64::from_le_bytes(seq.try_into().ok()?)))
}

/// A control request: `START` (`run`, whether the server should busy-poll) or `DONE` (`run`,
/// how many messages the server should expect, and whether they were sent reliably, so it
/// waits for all of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Control {
    pub(crate) tag: u8,
    pub(crate) run: u32,
    pub(crate) busy_poll: bool,
    pub(crate) expected: u64,
    pub(crate) reliable: bool,
}

impl Control {
    pub(crate) const LEN: usize = 15;

    pub(crate) fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0; Self::LEN];
        out[0] = self.tag;
        out[1..5].copy_from_slice(&self.run.to_le_bytes());
        out[5] = u8::from(self.busy_poll);
        out[6..14].copy_from_slice(&self.expected.to_le_bytes());
        out[14] = u8::from(self.reliable);
        out
    }

    pub(crate) fn decode(msg: &[u8]) -> Option<Self> {
        if msg.len() != Self::LEN {
            return None;
        }
        Some(Self {
            tag: msg[0],
            run: u32::from_le_bytes(msg[1..5].try_into().ok()?),
            busy_poll: msg[5] != 0,
            expected: u64::from_le_bytes(msg[6..14].try_into().ok()?),
            reliable: msg[14] != 0,
        })
    }
}

/// What the server measured over one run, from `START` to `DONE`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Report {
    /// `STARTED` carries only `run` and `rss_kib`; `REPORT` all of it.
    pub(crate) tag: u8,
    pub(crate) run: u32,
    /// Data messages received (`DATA` and `ECHO`).
    pub(crate) received: u64,
    /// Payload bytes of those messages.
    pub(crate) bytes_received: u64,
    /// Whether every stream's sequence numbers arrived strictly increasing.
    pub(crate) in_order: bool,
    /// From `START`'s arrival to the last data message's.
    pub(crate) window: Duration,
    /// From `START` to `DONE`, wall clock.
    pub(crate) wall: Duration,
    /// CPU time the server used from `START` to `DONE`.
    pub(crate) cpu: Duration,
    /// The server's resident memory now.
    pub(crate) rss_kib: u64,
    /// Bytes the server's socket sent from `START` to `DONE`.
    pub(crate) bytes_sent: u64,
    /// Heap allocations the server made from `START` to `DONE`.
    pub(crate) allocations: u64,
    /// Echoes sent back.
    pub(crate) echoes: u64,
    /// Echoes that could not be queued (backpressure or a gone connection).
    pub(crate) echo_failures: u64,
}

impl Report {
    pub(crate) const LEN: usize = 1 + 4 + 8 * 11 + 1;

    pub(crate) fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0; Self::LEN];
        out[0] = self.tag;
        out[1..5].copy_from_slice(&self.run.to_le_bytes());
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let fields = [
            self.received,
            self.bytes_received,
            nanos(self.window),
            nanos(self.wall),
            nanos(self.cpu),
            self.rss_kib,
            self.bytes_sent,
            self.allocations,
            self.echoes,
            self.echo_failures,
            0,
        ];
        for (i, v) in fields.iter().enumerate() {
            out[5 + i * 8..13 + i * 8].copy_from_slice(&v.to_le_bytes());
        }
        out[Self::LEN - 1] = u8::from(self.in_order);
        out
    }

    pub(crate) fn decode(msg: &[u8]) -> Option<Self> {
        if msg.len() != Self::LEN {
            return None;
        }
        let field =
            |i: usize| u64::from_le_bytes(msg[5 + i * 8..13 + i * 8].try_into().expect("8 bytes"));
        Some(Self {
            tag: msg[0],
            run: u32::from_le_bytes(msg[1..5].try_into().ok()?),
            received: field(0),
            bytes_received: field(1),
            window: Duration::from_nanos(field(2)),
            wall: Duration::from_nanos(field(3)),
            cpu: Duration::from_nanos(field(4)),
            rss_kib: field(5),
            bytes_sent: field(6),
            allocations: field(7),
            echoes: field(8),
            echo_failures: field(9),
            in_order: msg[Self::LEN - 1] != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_report_round_trip() {
        let c = Control { tag: DONE, run: 7, busy_poll: true, expected: 1 << 40, reliable: true };
        assert_eq!(Control::decode(&c.encode()), Some(c));
        let r = Report {
            tag: REPORT,
            run: 3,
            received: 5,
            bytes_received: 6,
            in_order: true,
            window: Duration::from_micros(7),
            wall: Duration::from_micros(8),
            cpu: Duration::from_micros(9),
            rss_kib: 10,
            bytes_sent: 11,
            allocations: 12,
            echoes: 13,
            echo_failures: 14,
        };
        assert_eq!(Report::decode(&r.encode()), Some(r));
        assert_eq!(Report::decode(&r.encode()[1..]), None);
    }

    #[test]
    fn data_carries_its_sequence_number() {
        let mut buf = [0u8; 32];
        write_data(&mut buf, ECHO, 0x0102_0304_0506);
        assert_eq!(read_data(&buf), Some((ECHO, 0x0102_0304_0506)));
        assert_eq!(read_data(&buf[..8]), None);
    }
}
