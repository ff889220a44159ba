//! The receiving half of a channel: duplicate suppression, ordering, sequencing and
//! reassembly, each as the channel's QoS promises.
//!
//! Memory a peer can make us hold — partial fragmented messages, and reliable messages waiting
//! for an earlier one — is charged to a per-connection budget (`max_reassembly_bytes`). Past
//! it, unreliable partials are evicted oldest first and new reliable data is refused (its
//! packet is not acknowledged, so the sender resends it later). The next message in order on a
//! reliable channel is always admitted, so a full budget can never stall a channel (the
//! endpoint enforces its budget of all untrusted connections by closing the longest holder).

use std::collections::VecDeque;

use crate::Qos;
use crate::proto::packet::Fragment;
use crate::proto::pool::BufPool;
use crate::proto::seq::MessageSeq;
use crate::proto::time::Tick;

/// What became of one arriving record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Delivered, held for in-order delivery, or stored as a fragment.
    Accepted,
    /// Already received: dropped.
    Duplicate,
    /// Dropped as the QoS allows (an older message on a sequenced channel, an evicted partial
    /// message).
    DroppedByQos,
    /// Broke the protocol (a fragment of the wrong size, a number outside the window): dropped
    /// and counted against the peer.
    Malformed,
    /// Reliable data that cannot be stored now (the budget is full): the packet carrying it
    /// must not be acknowledged, so the sender resends it.
    Refused,
}

/// Limits the receiving side works within.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecvLimits {
    pub(crate) fragment_size: usize,
    pub(crate) max_fragments: usize,
    /// The per-connection budget of held bytes (the next message in order on a reliable
    /// channel is exempt).
    pub(crate) max_held_bytes: usize,
    /// What the connection may hold at most for memory that is not exempt (the room an
    /// untrusted connection has in the endpoint-wide budget; `usize::MAX` for a trusted one).
    pub(crate) hard_held_bytes: usize,
    pub(crate) reliable_window: u16,
}

impl RecvLimits {
    /// The budget for memory that is not exempt.
    pub(crate) fn budget(&self) -> usize {
        self.max_held_bytes.min(self.hard_held_bytes)
    }
}

/// A message being put back together.
#[derive(Debug)]
struct Partial {
    seq: MessageSeq,
    count: u16,
    /// One byte per fragment, non-zero once it has arrived (a pooled buffer, like `buf`).
    received: Vec<u8>,
    missing: u16,
    buf: Vec<u8>,
    /// Bytes charged to the budget.
    charge: usize,
    /// Total length, known once the last fragment has arrived.
    len: usize,
    started: Tick,
}

/// A complete message: borrowed from the packet, or owned (after reassembly) together with the
/// bytes it is charged to the budget.
enum Whole<'a> {
    Borrowed(&'a [u8]),
    Owned(Vec<u8>, usize),
}

impl Whole<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Whole::Borrowed(b) => b,
            Whole::Owned(v, _) => v,
        }
    }

    /// Returns the buffer and the charge once the message has been delivered or dropped.
    fn release(self, held: &mut usize, pool: &mut BufPool) {
        if let Whole::Owned(v, charge) = self {
            *held -= charge;
            pool.give(v);
        }
    }
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
    /// Reliable ordered kinds: messages waiting for a gap to fill, with their charge; slot `i`
    /// is `base + i`.
    waiting: VecDeque<Option<(Vec<u8>, usize)>>,
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

    /// Whether messages of this channel are delivered strictly in order.
    fn is_ordered(&self) -> bool {
        self.qos.is_reliable() && self.qos.is_sequenced() && !self.qos.is_state_update()
    }

    /// Whether `seq` is exempt from the budget: the next message in order on a reliable
    /// channel, which is always admitted so that the channel keeps moving.
    fn is_exempt(&self, seq: MessageSeq) -> bool {
        self.qos.is_reliable() && !self.qos.is_state_update() && seq == self.base
    }

    /// Bytes a reliable record would newly charge to the budget if accepted (0 for records
    /// that need no new storage, are exempt, or will be dropped anyway). Two fragments of one
    /// new message in the same packet each report the full need; the caller counts it once.
    pub(crate) fn reliable_need(
        &self,
        seq: MessageSeq,
        fragment: Option<Fragment>,
        len: usize,
        limits: &RecvLimits,
    ) -> usize {
        if !self.qos.is_reliable()
            || self.qos.is_state_update()
            || self.is_exempt(seq)
            || self.precheck(seq, limits) != Outcome::Accepted
        {
            return 0;
        }
        match fragment {
            Some(f) if !self.partials.iter().any(|p| p.seq == seq) => {
                usize::from(f.count) * limits.fragment_size
            }
            Some(_) => 0,
            None if self.is_ordered() => len,
            None => 0,
        }
    }

    /// Handles one record; calls `deliver` for each message it makes deliverable, in order.
    /// `held` is the connection-wide count of bytes charged to the budget.
    #[allow(
        clippy::too_many_arguments,
        reason = "one call per record on the hot path; a context struct would be built per record"
    )]
    pub(crate) fn on_record(
        &mut self,
        seq: Option<MessageSeq>,
        fragment: Option<Fragment>,
        payload: &[u8],
        now: Tick,
        limits: &RecvLimits,
        held: &mut usize,
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
                self.complete(seq, Whole::Borrowed(payload), limits, held, pool, deliver)
            }
            Some(fragment) => {
                if !self.qos.is_fragmented() {
                    return Outcome::Malformed;
                }
                match self.add_fragment(seq, fragment, payload, now, limits, held, pool) {
                    Ok(Some(message)) => self.complete(seq, message, limits, held, pool, deliver),
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
        limits: &RecvLimits,
        held: &mut usize,
        pool: &mut BufPool,
        deliver: &mut impl FnMut(&[u8]),
    ) -> Outcome {
        if !self.qos.is_reliable() || self.qos.is_state_update() {
            // Unreliable kinds and both state-update kinds: newest wins.
            if self.qos.is_sequenced() || self.qos.is_state_update() {
                if self.newest.is_some_and(|newest| !seq.is_newer_than(newest)) {
                    message.release(held, pool);
                    return Outcome::DroppedByQos;
                }
                self.newest = Some(seq);
            }
            if self.qos == Qos::ReliableStateUpdate {
                // Keep the reliable window moving so numbers never fall outside it.
                self.base = seq.next();
            }
            deliver(message.bytes());
            message.release(held, pool);
            return Outcome::Accepted;
        }
        let i = seq.distance(self.base).unsigned_abs() as usize;
        if !self.is_ordered() {
            deliver(message.bytes());
            message.release(held, pool);
            if self.received.len() <= i {
                self.received.resize(i + 1, false);
            }
            self.received[i] = true;
            while self.received.front() == Some(&true) {
                self.received.pop_front();
                self.base = self.base.next();
            }
            return Outcome::Accepted;
        }
        if i > 0 {
            // Hold it until the gap before it fills.
            let stored = match message {
                Whole::Owned(buf, charge) => (buf, charge),
                Whole::Borrowed(bytes) => {
                    if *held + bytes.len() > limits.budget() {
                        return Outcome::Refused;
                    }
                    *held += bytes.len();
                    (pool.copy_of(bytes), bytes.len())
                }
            };
            if self.waiting.len() <= i {
                self.waiting.resize_with(i + 1, || None);
            }
            self.waiting[i] = Some(stored);
            return Outcome::Accepted;
        }
        deliver(message.bytes());
        message.release(held, pool);
        self.base = self.base.next();
        self.waiting.pop_front();
        // Deliver what was waiting for this one; a `None` is the next gap.
        while let Some(Some((buf, _))) = self.waiting.front() {
            deliver(buf);
            if let Some(Some((buf, charge))) = self.waiting.pop_front() {
                *held -= charge;
                pool.give(buf);
            }
            self.base = self.base.next();
        }
        Outcome::Accepted
    }

    /// Stores one fragment; returns the message when it is complete (still charged to the
    /// budget until it is delivered).
    #[allow(clippy::too_many_arguments, reason = "internal step of on_record")]
    fn add_fragment(
        &mut self,
        seq: MessageSeq,
        fragment: Fragment,
        payload: &[u8],
        now: Tick,
        limits: &RecvLimits,
        held: &mut usize,
        pool: &mut BufPool,
    ) -> Result<Option<Whole<'static>>, Outcome> {
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
            None => self.start_partial(seq, fragment.count, now, limits, held, pool)?,
        };
        let partial = &mut self.partials[slot];
        if partial.count != fragment.count {
            return Err(Outcome::Malformed);
        }
        let index = usize::from(fragment.index);
        if partial.received[index] != 0 {
            return Err(Outcome::Duplicate);
        }
        partial.received[index] = 1;
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
        pool.give(done.received);
        done.buf.truncate(done.len);
        Ok(Some(Whole::Owned(done.buf, done.charge)))
    }

    /// Makes room for and starts a partial message; returns its slot.
    fn start_partial(
        &mut self,
        seq: MessageSeq,
        count: u16,
        now: Tick,
        limits: &RecvLimits,
        held: &mut usize,
        pool: &mut BufPool,
    ) -> Result<usize, Outcome> {
        let need = usize::from(count) * limits.fragment_size;
        if *held + need > limits.budget() && !self.is_exempt(seq) {
            if self.qos.is_reliable() {
                return Err(Outcome::Refused);
            }
            // Unreliable: make room by giving up the oldest partial messages.
            while *held + need > limits.budget() && !self.partials.is_empty() {
                let oldest = (0..self.partials.len())
                    .min_by_key(|&i| self.partials[i].started)
                    .expect("not empty");
                let gone = self.partials.swap_remove(oldest);
                *held -= gone.charge;
                pool.give(gone.buf);
                pool.give(gone.received);
                self.given_up += 1;
            }
            if *held + need > limits.budget() {
                return Err(Outcome::DroppedByQos);
            }
        }
        let mut buf = pool.take(need);
        buf.resize(need, 0);
        let mut received = pool.take(usize::from(count));
        received.resize(usize::from(count), 0);
        *held += need;
        self.partials.push(Partial {
            seq,
            count,
            received,
            missing: count,
            buf,
            charge: need,
            len: 0,
            started: now,
        });
        Ok(self.partials.len() - 1)
    }

    /// Gives up partial unreliable messages started at or before `cutoff`; returns how many.
    pub(crate) fn expire_partials(
        &mut self,
        cutoff: Tick,
        held: &mut usize,
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
                *held -= gone.charge;
                pool.give(gone.buf);
                pool.give(gone.received);
            } else {
                i += 1;
            }
        }
        before - self.partials.len()
    }

    /// When the oldest unreliable partial message was started, if any.
    pub(crate) fn oldest_partial(&self) -> Option<Tick> {
        if self.qos.is_reliable() {
            return None;
        }
        self.partials.iter().map(|p| p.started).min()
    }

    /// Returns every buffer to the pool (the connection is going away).
    pub(crate) fn clear(&mut self, pool: &mut BufPool) {
        for partial in self.partials.drain(..) {
            pool.give(partial.buf);
            pool.give(partial.received);
        }
        for (buf, _) in self.waiting.drain(..).flatten() {
            pool.give(buf);
        }
    }
}
