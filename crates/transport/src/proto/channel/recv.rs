//! The receiving half of a channel: duplicate suppression, ordering, sequencing and
//! reassembly, each as the channel's QoS promises.

use std::collections::VecDeque;
use std::time::Instant;

use crate::Qos;
use crate::proto::packet::Fragment;
use crate::proto::pool::BufPool;
use crate::proto::seq::MessageSeq;

/// What became of one arriving record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Delivered, buffered for in-order delivery, or stored as a fragment.
    Accepted,
    /// Already received: dropped.
    Duplicate,
    /// Dropped as the QoS allows (an older message on a sequenced channel, an evicted partial
    /// message).
    DroppedByQos,
    /// Broke the protocol (a fragment of the wrong size, a number outside the window): dropped
    /// and counted against the peer.
    Malformed,
    /// Reliable data that cannot be stored now (reassembly memory full): the packet carrying it
    /// must not be acknowledged, so the sender resends it.
    Refused,
}

/// Limits the receiving side works within.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecvLimits {
    pub(crate) fragment_size: usize,
    pub(crate) max_fragments: usize,
    pub(crate) max_reassembly_bytes: usize,
    pub(crate) reliable_window: u16,
}

/// A message being put back together.
#[derive(Debug)]
struct Partial {
    seq: MessageSeq,
    count: u16,
    received: Vec<bool>,
    missing: u16,
    buf: Vec<u8>,
    /// Bytes charged to the connection's reassembly budget.
    reserved: usize,
    /// Total length, known once the last fragment has arrived.
    len: usize,
    started: Instant,
}

/// The receiving half of one channel.
#[derive(Debug)]
pub(crate) struct RecvChannel {
    qos: Qos,
    /// Sequenced kinds: the newest number delivered.
    newest: Option<MessageSeq>,
    /// Reliable kinds: the lowest number not yet received (every number below it has been).
    base: MessageSeq,
    /// Reliable unordered kinds: `received[i]` is whether `base + i` has arrived.
    received: VecDeque<bool>,
    /// Reliable ordered kinds: messages waiting for a gap to fill; slot `i` is `base + i`.
    waiting: VecDeque<Option<Vec<u8>>>,
    partials: Vec<Partial>,
    /// Partial messages given up (evicted or expired) since the last `take_given_up`.
    given_up: u64,
}

impl RecvChannel {
    pub(crate) fn new(qos: Qos) -> Self {
        Self {
            qos,
            newest: None,
            base: MessageSeq::new(0),
            received: VecDeque::new(),
            waiting: VecDeque::new(),
            partials: Vec::new(),
            given_up: 0,
        }
    }

    /// Partial messages given up since the last call.
    pub(crate) fn take_given_up(&mut self) -> u64 {
        std::mem::take(&mut self.given_up)
    }

    /// Handles one record; calls `deliver` for each message it makes deliverable, in order.
    /// `reassembly_in_use` is the connection-wide count of bytes held by partial messages.
    #[allow(
        clippy::too_many_arguments,
        reason = "one call per record on the hot path; a context struct would be built per record"
    )]
    pub(crate) fn on_record(
        &mut self,
        seq: Option<MessageSeq>,
        fragment: Option<Fragment>,
        payload: &[u8],
        now: Instant,
        limits: &RecvLimits,
        reassembly_in_use: &mut usize,
        pool: &mut BufPool,
        deliver: &mut impl FnMut(&[u8]),
    ) -> Outcome {
        let Some(seq) = seq else {
            return match self.qos {
                // Plain unreliable messages carry no number.
                Qos::Unreliable => {
                    deliver(payload);
                    Outcome::Accepted
                }
                _ => Outcome::Malformed,
            };
        };
        if !self.qos.is_numbered() {
            return Outcome::Malformed;
        }
        // Cheap rejections before any reassembly work.
        match self.precheck(seq, limits) {
            Outcome::Accepted => {}
            other => return other,
        }
        match fragment {
            None => {
                if self.qos.is_fragmented() && payload.len() > limits.fragment_size {
                    return Outcome::Malformed;
                }
                self.complete(seq, Whole::Borrowed(payload), pool, deliver)
            }
            Some(fragment) => {
                if !self.qos.is_fragmented() {
                    return Outcome::Malformed;
                }
                match self.add_fragment(
                    seq,
                    fragment,
                    payload,
                    now,
                    limits,
                    reassembly_in_use,
                    pool,
                ) {
                    Ok(Some(message)) => self.complete(seq, Whole::Owned(message), pool, deliver),
                    Ok(None) => Outcome::Accepted,
                    Err(outcome) => outcome,
                }
            }
        }
    }

    /// Whether a message numbered `seq` could still be useful.
    fn precheck(&self, seq: MessageSeq, limits: &RecvLimits) -> Outcome {
        if self.qos.is_sequenced() && !self.qos.is_reliable() || self.qos.is_state_update() {
            // Sequenced kinds without ordering: older than what was delivered is useless.
            if self.newest.is_some_and(|newest| !seq.is_newer_than(newest)) {
                return Outcome::DroppedByQos;
            }
            return Outcome::Accepted;
        }
        if self.qos.is_reliable() {
            let d = seq.distance(self.base);
            if d < 0 {
                return Outcome::Duplicate;
            }
            if d >= i32::from(limits.reliable_window) {
                return Outcome::Malformed;
            }
            let i = d.unsigned_abs() as usize;
            let seen = if self.qos.is_sequenced() {
                self.waiting.get(i).is_some_and(Option::is_some)
            } else {
                self.received.get(i).copied().unwrap_or(false)
            };
            if seen {
                return Outcome::Duplicate;
            }
        }
        Outcome::Accepted
    }

    /// A whole message `seq` has arrived (or been reassembled): deliver it as the QoS says.
    fn complete(
        &mut self,
        seq: MessageSeq,
        message: Whole<'_>,
        pool: &mut BufPool,
        deliver: &mut impl FnMut(&[u8]),
    ) -> Outcome {
        let reliable = self.qos.is_reliable();
        let ordered = reliable && self.qos.is_sequenced() && !self.qos.is_state_update();
        if !reliable || self.qos.is_state_update() {
            // Unreliable kinds and both state-update kinds: newest wins.
            if self.qos.is_sequenced() || self.qos.is_state_update() {
                if self.newest.is_some_and(|newest| !seq.is_newer_than(newest)) {
                    message.recycle(pool);
                    return Outcome::DroppedByQos;
                }
                self.newest = Some(seq);
            }
            if self.qos == Qos::ReliableStateUpdate {
                // Keep the reliable window moving so numbers never fall outside it.
                self.base = seq.next();
            }
            deliver(message.bytes());
            message.recycle(pool);
            return Outcome::Accepted;
        }
        let i = seq.distance(self.base).unsigned_abs() as usize;
        if ordered {
            if i == 0 {
                deliver(message.bytes());
                message.recycle(pool);
                self.base = self.base.next();
                self.waiting.pop_front();
                while let Some(Some(buf)) = self.waiting.front() {
                    deliver(buf);
                    if let Some(Some(buf)) = self.waiting.pop_front() {
                        pool.give(buf);
                    }
                    self.base = self.base.next();
                }
                // A leading `None` means the next message has not arrived yet.
            } else {
                if self.waiting.len() <= i {
                    self.waiting.resize_with(i + 1, || None);
                }
                self.waiting[i] = Some(message.into_owned(pool));
            }
        } else {
            deliver(message.bytes());
            message.recycle(pool);
            if self.received.len() <= i {
                self.received.resize(i + 1, false);
            }
            self.received[i] = true;
            while self.received.front() == Some(&true) {
                self.received.pop_front();
                self.base = self.base.next();
            }
        }
        Outcome::Accepted
    }

    #[allow(clippy::too_many_arguments, reason = "internal step of on_record")]
    fn add_fragment(
        &mut self,
        seq: MessageSeq,
        fragment: Fragment,
        payload: &[u8],
        now: Instant,
        limits: &RecvLimits,
        reassembly_in_use: &mut usize,
        pool: &mut BufPool,
    ) -> Result<Option<Vec<u8>>, Outcome> {
        let count = usize::from(fragment.count);
        let last = fragment.index + 1 == fragment.count;
        let size_ok = if last {
            (1..=limits.fragment_size).contains(&payload.len())
        } else {
            payload.len() == limits.fragment_size
        };
        if count > limits.max_fragments || !size_ok {
            return Err(Outcome::Malformed);
        }
        let slot = match self.partials.iter().position(|p| p.seq == seq) {
            Some(slot) => slot,
            None => {
                let need = count * limits.fragment_size;
                if *reassembly_in_use + need > limits.max_reassembly_bytes {
                    if self.qos.is_reliable() {
                        return Err(Outcome::Refused);
                    }
                    // Unreliable: make room by giving up the oldest partial messages.
                    while *reassembly_in_use + need > limits.max_reassembly_bytes
                        && !self.partials.is_empty()
                    {
                        let oldest = (0..self.partials.len())
                            .min_by_key(|&i| self.partials[i].started)
                            .expect("not empty");
                        let gone = self.partials.swap_remove(oldest);
                        *reassembly_in_use -= gone.reserved;
                        pool.give(gone.buf);
                        self.given_up += 1;
                    }
                    if *reassembly_in_use + need > limits.max_reassembly_bytes {
                        return Err(Outcome::DroppedByQos);
                    }
                }
                let mut buf = pool.take(need);
                buf.resize(need, 0);
                *reassembly_in_use += need;
                self.partials.push(Partial {
                    seq,
                    count: fragment.count,
                    received: vec![false; count],
                    missing: fragment.count,
                    buf,
                    reserved: need,
                    len: 0,
                    started: now,
                });
                self.partials.len() - 1
            }
        };
        let partial = &mut self.partials[slot];
        if partial.count != fragment.count {
            return Err(Outcome::Malformed);
        }
        let index = usize::from(fragment.index);
        if partial.received[index] {
            return Err(Outcome::Duplicate);
        }
        partial.received[index] = true;
        partial.missing -= 1;
        let start = index * limits.fragment_size;
        partial.buf[start..start + payload.len()].copy_from_slice(payload);
        if last {
            partial.len = start + payload.len();
        }
        if partial.missing > 0 {
            return Ok(None);
        }
        let mut done = self.partials.swap_remove(slot);
        *reassembly_in_use -= done.reserved;
        done.buf.truncate(done.len);
        Ok(Some(done.buf))
    }

    /// Gives up partial unreliable messages started at or before `cutoff`; returns how many.
    pub(crate) fn expire_partials(
        &mut self,
        cutoff: Instant,
        reassembly_in_use: &mut usize,
        pool: &mut BufPool,
    ) -> usize {
        if self.qos.is_reliable() {
            return 0;
        }
        let before = self.partials.len();
        let mut i = 0;
        while i < self.partials.len() {
            if self.partials[i].started <= cutoff {
                let gone = self.partials.swap_remove(i);
                *reassembly_in_use -= gone.reserved;
                pool.give(gone.buf);
            } else {
                i += 1;
            }
        }
        before - self.partials.len()
    }

    /// When the oldest unreliable partial message was started, if any.
    pub(crate) fn oldest_partial(&self) -> Option<Instant> {
        if self.qos.is_reliable() {
            return None;
        }
        self.partials.iter().map(|p| p.started).min()
    }

    /// Returns every buffer to the pool (the connection is going away).
    pub(crate) fn clear(&mut self, pool: &mut BufPool) {
        for partial in self.partials.drain(..) {
            pool.give(partial.buf);
        }
        for buf in self.waiting.drain(..).flatten() {
            pool.give(buf);
        }
    }
}

/// A complete message: borrowed from the packet, or owned after reassembly.
enum Whole<'a> {
    Borrowed(&'a [u8]),
    Owned(Vec<u8>),
}

impl Whole<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Whole::Borrowed(b) => b,
            Whole::Owned(v) => v,
        }
    }

    fn into_owned(self, pool: &mut BufPool) -> Vec<u8> {
        match self {
            Whole::Borrowed(b) => pool.copy_of(b),
            Whole::Owned(v) => v,
        }
    }

    fn recycle(self, pool: &mut BufPool) {
        if let Whole::Owned(v) = self {
            pool.give(v);
        }
    }
}
