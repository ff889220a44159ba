//! Receive offload (UDP GRO) on Linux: the kernel hands over several datagrams of one sender
//! in one receive, as one buffer of equal-sized segments. [`GroQueue`] receives into its own
//! 64 KiB slots and splits what arrived back into datagrams, so callers still see one datagram
//! per slot of their own (smaller) buffers.

use std::net::SocketAddr;

use crate::RecvMeta;

/// The most a coalesced receive can hold (the kernel caps GRO at 64 KiB).
pub(crate) const GRO_SLOT: usize = 65_536;

/// What one GRO-enabled receive brought, and how far it has been handed out.
#[derive(Debug, Default)]
pub(crate) struct GroQueue {
    /// `slots × GRO_SLOT` bytes, grown on first use.
    pub(crate) buf: Vec<u8>,
    /// One entry per receive slot filled: its bytes and sender.
    pub(crate) meta: Vec<RecvMeta>,
    /// The segment size of each entry (its whole length when it is one datagram).
    pub(crate) segments: Vec<usize>,
    /// The entry being handed out, and the offset of its next datagram.
    next: usize,
    offset: usize,
}

impl GroQueue {
    /// Makes room for `slots` coalesced receives and forgets what was handed out. Call only
    /// when [`pending`](Self::pending) is false.
    pub(crate) fn prepare(&mut self, slots: usize) {
        if self.buf.len() < slots * GRO_SLOT {
            // A fresh zeroed allocation, not a resize: the OS maps its pages in only as
            // receives touch them, so slots that only ever see small datagrams stay cheap.
            self.buf = vec![0; slots * GRO_SLOT];
        }
        self.meta.clear();
        self.segments.clear();
        self.next = 0;
        self.offset = 0;
    }

    /// Whether datagrams received earlier are still waiting to be handed out.
    pub(crate) fn pending(&self) -> bool {
        self.next < self.meta.len()
    }

    /// How many datagrams the last receive brought (a coalesced message counts its segments).
    pub(crate) fn queued(&self) -> usize {
        self.meta
            .iter()
            .zip(&self.segments)
            .map(|(entry, &segment)| entry.len.div_ceil(segment.max(1)).max(1))
            .sum()
    }

    /// Copies the next datagram into `out` (truncating it to `out`'s length, as UDP does) and
    /// returns its length, its sender, and whether it arrived coalesced with others.
    pub(crate) fn pop(&mut self, out: &mut [u8]) -> Option<(usize, SocketAddr, bool)> {
        let entry = *self.meta.get(self.next)?;
        let segment = self.segments[self.next].max(1);
        let start = self.next * GRO_SLOT + self.offset;
        let len = segment.min(entry.len - self.offset);
        let coalesced = segment < entry.len;
        let copied = len.min(out.len());
        out[..copied].copy_from_slice(&self.buf[start..start + copied]);
        self.offset += len;
        if self.offset >= entry.len {
            self.next += 1;
            self.offset = 0;
        }
        Some((copied, entry.from, coalesced))
    }
}

/// Consecutive receives of exactly one datagram after which GRO is switched off.
const SINGLES_BEFORE_OFF: u32 = 64;
/// A receive with a run of at least this many datagrams in a row from one sender (what a
/// segmented send becomes when GRO is off) switches GRO back on.
const BURST_FOR_ON: usize = 8;
/// Receive calls after switching GRO off during which a message the kernel coalesced just
/// before may still be waiting, so receives keep asking for the segment size.
const GRACE_CALLS: u32 = 1024;

/// When a socket that may use UDP GRO should have it on.
///
/// GRO pays for bursts: one receive hands over many datagrams of a sender. An interactive flow
/// (one datagram at a time, a ping-pong) gains nothing from it and pays on every receive, as
/// learning the segment size takes `recvmsg` where `recvfrom` would do (about 0.15 µs per
/// receive on the project's machine). So GRO goes off after a run of receives that each found
/// one datagram, and back on at the first receive that finds a burst from one sender (many
/// datagrams from many senders, a busy server's, would not be coalesced anyway); each switch
/// is one `setsockopt`. This is the policy alone; the socket applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GroMode {
    /// Whether the kernel coalesces for the socket now.
    on: bool,
    /// Receive calls left in which a message coalesced before the switch may still arrive.
    grace: u32,
    /// Consecutive receives that found exactly one datagram.
    singles: u32,
    /// The kernel refused a switch: stay as things are.
    stuck: bool,
}

impl Default for GroMode {
    fn default() -> Self {
        Self { on: true, grace: 0, singles: 0, stuck: false }
    }
}

impl GroMode {
    /// Whether a receive must ask for the segment size (GRO is on, or was until recently).
    pub(crate) fn needs_segment_size(&self) -> bool {
        self.on || self.grace > 0
    }

    /// Records a receive call that found `n` datagrams, of which at most `run` in a row came
    /// from one sender; returns the state to switch GRO to, if it should change.
    pub(crate) fn after_receive(&mut self, n: usize, run: usize) -> Option<bool> {
        self.grace = self.grace.saturating_sub(1);
        match n {
            0 => {}
            1 => self.singles = self.singles.saturating_add(1),
            _ => self.singles = 0,
        }
        if self.stuck {
            return None;
        }
        if self.on && self.singles >= SINGLES_BEFORE_OFF {
            Some(false)
        } else if !self.on && run >= BURST_FOR_ON {
            Some(true)
        } else {
            None
        }
    }

    /// The switch to `on` took effect.
    pub(crate) fn switched(&mut self, on: bool) {
        self.on = on;
        self.singles = 0;
        self.grace = if on { 0 } else { GRACE_CALLS };
    }

    /// The kernel refused a switch: GRO stays as it is from now on.
    pub(crate) fn refused(&mut self) {
        self.stuck = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gro_goes_off_after_a_run_of_single_datagrams_and_on_at_a_burst() {
        let mut mode = GroMode::default();
        assert!(mode.needs_segment_size());
        // Empty polls do not break a run; a receive of two does.
        for _ in 0..SINGLES_BEFORE_OFF - 1 {
            assert_eq!(mode.after_receive(1, 1), None);
            assert_eq!(mode.after_receive(0, 0), None);
        }
        assert_eq!(mode.after_receive(2, 2), None);
        for _ in 0..SINGLES_BEFORE_OFF - 1 {
            assert_eq!(mode.after_receive(1, 1), None);
        }
        assert_eq!(mode.after_receive(1, 1), Some(false));
        mode.switched(false);
        // Off, but coalesced messages may still be queued for a while.
        for _ in 0..GRACE_CALLS {
            assert!(mode.needs_segment_size());
            assert_eq!(mode.after_receive(BURST_FOR_ON - 1, BURST_FOR_ON - 1), None);
        }
        assert!(!mode.needs_segment_size());
        // Many datagrams from many senders: nothing to coalesce.
        assert_eq!(mode.after_receive(32, 2), None);
        assert_eq!(mode.after_receive(BURST_FOR_ON, BURST_FOR_ON), Some(true));
        mode.switched(true);
        assert!(mode.needs_segment_size());
        // A refused switch is not asked for again.
        for _ in 0..SINGLES_BEFORE_OFF - 1 {
            let _ = mode.after_receive(1, 1);
        }
        assert_eq!(mode.after_receive(1, 1), Some(false));
        mode.refused();
        assert_eq!(mode.after_receive(1, 1), None);
        assert!(mode.needs_segment_size());
    }

    #[test]
    fn a_coalesced_receive_is_split_into_its_segments_and_truncated_like_udp() {
        let from: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut queue = GroQueue::default();
        queue.prepare(2);
        // Slot 0: three segments of 4 bytes then one of 2; slot 1: one empty datagram.
        queue.buf[..14].copy_from_slice(b"aaaabbbbccccdd");
        queue.meta.extend([RecvMeta { len: 14, from }, RecvMeta { len: 0, from }]);
        queue.segments.extend([4, 0]);
        assert_eq!(queue.queued(), 5);
        let mut out = [0u8; 3];
        let mut got = Vec::new();
        while let Some((len, sender, coalesced)) = queue.pop(&mut out) {
            assert_eq!(sender, from);
            got.push((out[..len].to_vec(), coalesced));
        }
        let want: [(&[u8], bool); 5] =
            [(b"aaa", true), (b"bbb", true), (b"ccc", true), (b"dd", true), (b"", false)];
        assert_eq!(got, want.map(|(d, c)| (d.to_vec(), c)));
        assert!(!queue.pending());
    }
}
