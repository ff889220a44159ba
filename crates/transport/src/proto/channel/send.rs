//! The sending half of a channel: queued messages, split into units (whole messages or
//! fragments), written into packets, and for reliable kinds kept until acknowledged.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::proto::codec::Writer;
use crate::proto::packet::{Fragment, RecordHeader};
use crate::proto::pool::BufPool;
use crate::proto::seq::MessageSeq;
use crate::{ChannelId, EndpointConfig, Qos, SendError};

/// One unit of sending: a whole message, or one fragment of a split one.
#[derive(Debug)]
struct Unit {
    seq: MessageSeq,
    fragment: Option<Fragment>,
    data: Vec<u8>,
    /// Times written into a packet (0: never).
    sends: u32,
    /// When last written (meaningful once `sends > 0`).
    last_sent: Option<Instant>,
    acked: bool,
}

impl Unit {
    /// Whether this unit ends its message (whole, or the last fragment).
    fn ends_message(&self) -> bool {
        self.fragment.is_none_or(|f| f.index + 1 == f.count)
    }
}

/// A reference from a sent packet to a reliable unit it carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UnitRef {
    pub(crate) channel: ChannelId,
    pub(crate) seq: MessageSeq,
    pub(crate) fragment: u16,
}

/// What the packet builder passes to each channel.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FillContext {
    pub(crate) now: Instant,
    /// The RTT-based resend timeout (before backoff).
    pub(crate) rto_base: Duration,
    pub(crate) max_rto: Duration,
    pub(crate) all_cost_interval: Duration,
    /// Whether congestion control lets new (never sent) reliable units go out.
    pub(crate) may_send_new_reliable: bool,
    /// Whether resends may go out (false when the in-flight window is exhausted).
    pub(crate) may_resend: bool,
    pub(crate) reliable_window: u16,
}

/// What one [`SendChannel::fill`] call wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Filled {
    /// Records written.
    pub(crate) records: usize,
    /// Of which reliable units sent for the first time.
    pub(crate) new_reliable: usize,
    /// Of which reliable units resent.
    pub(crate) resent: usize,
    /// Whether units remain that would have been written if the packet had room.
    pub(crate) more: bool,
}

/// The sending half of one channel.
#[derive(Debug)]
pub(crate) struct SendChannel {
    id: ChannelId,
    qos: Qos,
    next_seq: MessageSeq,
    units: VecDeque<Unit>,
    /// Reliable kinds: index of the first never-sent unit (all before it are in flight or
    /// acked). Unreliable kinds: always 0 (units leave the queue once sent).
    first_unsent: usize,
    /// Messages with units still queued, for the backpressure limit.
    messages: usize,
}

impl SendChannel {
    pub(crate) fn new(id: ChannelId, qos: Qos) -> Self {
        Self {
            id,
            qos,
            next_seq: MessageSeq::new(0),
            units: VecDeque::new(),
            first_unsent: 0,
            messages: 0,
        }
    }

    /// Messages queued or unacknowledged.
    pub(crate) fn depth(&self) -> usize {
        self.messages
    }

    /// Queues a message. Refuses it, changing nothing, when it is too large for the channel or
    /// the queue is full.
    pub(crate) fn enqueue(
        &mut self,
        payload: &[u8],
        config: &EndpointConfig,
        pool: &mut BufPool,
    ) -> Result<(), SendError> {
        let max = config.max_message_size(self.qos);
        if payload.len() > max {
            return Err(SendError::MessageTooLarge { channel: self.id, len: payload.len(), max });
        }
        match self.qos {
            // Only the newest state matters: whatever was queued before is superseded.
            Qos::StateUpdate => self.drop_from(self.first_unsent, pool),
            Qos::ReliableStateUpdate => self.drop_from(0, pool),
            _ => {}
        }
        if self.messages >= config.send_queue_capacity {
            return Err(SendError::QueueFull {
                channel: self.id,
                capacity: config.send_queue_capacity,
            });
        }
        let seq = self.next_seq;
        self.next_seq = seq.next();
        self.messages += 1;
        if self.qos.is_fragmented() && payload.len() > config.fragment_size {
            let count = payload.len().div_ceil(config.fragment_size);
            let count = u16::try_from(count).expect("max_message_size bounds the fragment count");
            for (index, chunk) in (0..count).zip(payload.chunks(config.fragment_size)) {
                let fragment = Some(Fragment { index, count });
                self.push(seq, fragment, pool.copy_of(chunk));
            }
        } else {
            self.push(seq, None, pool.copy_of(payload));
        }
        Ok(())
    }

    fn push(&mut self, seq: MessageSeq, fragment: Option<Fragment>, data: Vec<u8>) {
        self.units.push_back(Unit { seq, fragment, data, sends: 0, last_sent: None, acked: false });
    }

    /// Drops every unit from `index` on, returning their buffers.
    fn drop_from(&mut self, index: usize, pool: &mut BufPool) {
        while self.units.len() > index {
            let unit = self.units.pop_back().expect("len > index >= 0");
            if unit.ends_message() {
                self.messages -= 1;
            }
            pool.give(unit.data);
        }
        self.first_unsent = self.first_unsent.min(self.units.len());
    }

    fn resend_at(&self, unit: &Unit, ctx: &FillContext) -> Option<Instant> {
        if unit.acked {
            return None;
        }
        let last = unit.last_sent?;
        let wait = if self.qos == Qos::AllCostDelivery {
            ctx.all_cost_interval
        } else {
            let factor = 1u32 << unit.sends.saturating_sub(1).min(16);
            ctx.rto_base.saturating_mul(factor).min(ctx.max_rto)
        };
        Some(last + wait)
    }

    /// When the earliest resend of this channel falls due, if any unit waits for one.
    pub(crate) fn next_resend(&self, ctx: &FillContext) -> Option<Instant> {
        if !self.qos.is_reliable() {
            return None;
        }
        self.units.range(..self.first_unsent).filter_map(|u| self.resend_at(u, ctx)).min()
    }

    /// Whether a new reliable unit with `seq` stays within the receiver's window.
    fn in_window(&self, seq: MessageSeq, window: u16) -> bool {
        let oldest = self.units.front().map_or(seq, |u| u.seq);
        seq.distance(oldest) < i32::from(window)
    }

    /// Whether `fill` would write something now (given room).
    pub(crate) fn wants_to_send(&self, ctx: &FillContext) -> bool {
        if self.qos.is_reliable() {
            let new = self.units.get(self.first_unsent).is_some_and(|u| {
                ctx.may_send_new_reliable && self.in_window(u.seq, ctx.reliable_window)
            });
            new || (ctx.may_resend && self.next_resend(ctx).is_some_and(|at| at <= ctx.now))
        } else {
            !self.units.is_empty()
        }
    }

    /// Writes as many due units as fit into `w`: resends first, then new units. Reliable units
    /// written are appended to `refs`.
    pub(crate) fn fill(
        &mut self,
        w: &mut Writer<'_>,
        ctx: &FillContext,
        refs: &mut Vec<UnitRef>,
        pool: &mut BufPool,
    ) -> Filled {
        let mut filled = Filled::default();
        let fragmented = self.qos.is_fragmented();
        let numbered = self.qos.is_numbered();
        let mut previous: Option<MessageSeq> = None;
        if self.qos.is_reliable() {
            // Resends of units in flight.
            if ctx.may_resend {
                for i in 0..self.first_unsent {
                    let due = self.resend_at(&self.units[i], ctx).is_some_and(|at| at <= ctx.now);
                    if !due {
                        continue;
                    }
                    if !write_unit(&self.units[i], self.id, fragmented, numbered, &mut previous, w)
                    {
                        filled.more = true;
                        break;
                    }
                    let unit = &mut self.units[i];
                    unit.sends += 1;
                    unit.last_sent = Some(ctx.now);
                    refs.push(self.unit_ref(i));
                    filled.records += 1;
                    filled.resent += 1;
                }
            }
            // New units, within the receiver's window and congestion control.
            while self.first_unsent < self.units.len() {
                let i = self.first_unsent;
                if !ctx.may_send_new_reliable
                    || !self.in_window(self.units[i].seq, ctx.reliable_window)
                {
                    break;
                }
                if !write_unit(&self.units[i], self.id, fragmented, numbered, &mut previous, w) {
                    filled.more = true;
                    break;
                }
                let unit = &mut self.units[i];
                unit.sends = 1;
                unit.last_sent = Some(ctx.now);
                refs.push(self.unit_ref(i));
                self.first_unsent += 1;
                filled.records += 1;
                filled.new_reliable += 1;
            }
        } else {
            // Unreliable kinds: each unit goes out once, then leaves the queue.
            while let Some(unit) = self.units.front() {
                if !write_unit(unit, self.id, fragmented, numbered, &mut previous, w) {
                    filled.more = true;
                    break;
                }
                let unit = self.units.pop_front().expect("front exists");
                if unit.ends_message() {
                    self.messages -= 1;
                }
                pool.give(unit.data);
                filled.records += 1;
            }
        }
        filled
    }

    fn unit_ref(&self, i: usize) -> UnitRef {
        let unit = &self.units[i];
        UnitRef { channel: self.id, seq: unit.seq, fragment: unit.fragment.map_or(0, |f| f.index) }
    }

    /// Marks the unit `(seq, fragment)` acknowledged and releases every acknowledged unit at
    /// the front of the queue. Returns whether the unit was found and newly acknowledged.
    pub(crate) fn on_ack(&mut self, seq: MessageSeq, fragment: u16, pool: &mut BufPool) -> bool {
        let Some(front) = self.units.front().map(|u| u.seq) else {
            return false;
        };
        let key = |u: &Unit| (u.seq.distance(front), u.fragment.map_or(0, |f| f.index));
        let target = (seq.distance(front), fragment);
        let i = self.units.partition_point(|u| key(u) < target);
        let found = i < self.first_unsent
            && self.units.get(i).is_some_and(|u| key(u) == target && !u.acked);
        if !found {
            return false;
        }
        self.units[i].acked = true;
        while self.units.front().is_some_and(|u| u.acked) {
            let unit = self.units.pop_front().expect("front exists");
            self.first_unsent -= 1;
            if unit.ends_message() {
                self.messages -= 1;
            }
            pool.give(unit.data);
        }
        true
    }

    /// Returns every buffer to the pool (the connection is going away).
    pub(crate) fn clear(&mut self, pool: &mut BufPool) {
        self.drop_from(0, pool);
    }
}

/// Writes one unit's record; `false` (and nothing written) when it does not fit.
fn write_unit(
    unit: &Unit,
    channel: ChannelId,
    fragmented: bool,
    numbered: bool,
    previous: &mut Option<MessageSeq>,
    w: &mut Writer<'_>,
) -> bool {
    // A number can be left out when it follows the previous record of this channel in this
    // packet; fragments always carry theirs.
    let implied = unit.fragment.is_none() && previous.is_some_and(|p| p.next() == unit.seq);
    let header = RecordHeader {
        channel,
        len: u16::try_from(unit.data.len()).expect("units are bounded by the packet size"),
        seq: (numbered && !implied).then_some(unit.seq),
        fragment: unit.fragment,
    };
    if header.encode(&unit.data, fragmented, w).is_err() {
        return false;
    }
    if numbered {
        *previous = if unit.fragment.is_none() { Some(unit.seq) } else { None };
    }
    true
}
