//! The sending half of a channel: queued messages, split into units (whole messages or
//! fragments), written into packets, and for reliable kinds kept until acknowledged.

use std::collections::VecDeque;
use std::time::Duration;

use crate::proto::codec::Writer;
use crate::proto::packet::{Fragment, RecordHeader};
use crate::proto::pool::BufPool;
use crate::proto::seq::MessageSeq;
use crate::proto::time::Tick;
use crate::{ChannelId, EndpointConfig, Qos, QueueLimit, SendError};

/// One unit of sending: a whole message, or one fragment of a split one.
#[derive(Debug)]
struct Unit {
    seq: MessageSeq,
    fragment: Option<Fragment>,
    data: Vec<u8>,
    /// Times written into a packet (0: never).
    sends: u32,
    /// When last written (meaningful once `sends > 0`).
    last_sent: Option<Tick>,
    acked: bool,
}

impl Unit {
    /// Whether this unit ends its message (whole, or the last fragment).
    fn ends_message(&self) -> bool {
        self.fragment.is_none_or(|f| f.index + 1 == f.count)
    }
}

/// A pending resend check: unit `(seq, fragment)` was written at `sent_at` for the `sends`-th
/// time. Stale once the unit is acknowledged, dropped or written again.
#[derive(Debug, Clone, Copy)]
struct Timer {
    /// The unit's position in the channel's history of units (see `SendChannel::front_serial`).
    serial: u64,
    seq: MessageSeq,
    fragment: u16,
    sends: u32,
    sent_at: Tick,
}

/// Backoff levels with their own timer queue: the resend timeout doubles per send up to
/// 2^(LEVELS - 1) times the base (then `max_resend_backoff` caps it anyway).
const LEVELS: usize = 17;

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
    pub(crate) now: Tick,
    /// The RTT-based resend timeout (before backoff).
    pub(crate) rto_base: Duration,
    /// The longest a backed-off unit waits (never less than `rto_base`).
    pub(crate) max_backoff: Duration,
    /// Units last written before this instant wait only `rto_base`: the path was silent and
    /// came back, so their backoff is undone.
    pub(crate) backoff_reset: Option<Tick>,
    pub(crate) all_cost_interval: Duration,
    /// Whether congestion control and the pacer let new (never sent) units go out, reliable
    /// or not.
    pub(crate) may_send_new: bool,
    /// Whether resends may go out (the window and the pacer allow).
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
    /// Reliable kinds: resend timers, one queue per backoff level. Every write of a unit
    /// appends a timer to the queue of its level; all timers of one level wait equally long,
    /// so each queue is in deadline order and the channel's next resend is the earliest front.
    /// Finding what is due therefore costs no scan of the units in flight. Stale timers (of
    /// units since acknowledged, dropped or written again) are skipped and popped.
    timers: Vec<VecDeque<Timer>>,
    /// Bit `l` set: `timers[l]` is not empty (most channels use one or two levels, and the
    /// packet builder asks for the next resend often).
    armed: u32,
    /// The serial number of `units[0]`: unit `i` is the `front_serial + i`-th unit queued, so a
    /// timer finds its unit without a search.
    front_serial: u64,
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
            // Levels are added as units back off, so an idle channel costs no memory.
            timers: Vec::new(),
            armed: 0,
            front_serial: 0,
        }
    }

    /// Whether nothing is queued or in flight (so the packet builder can skip the channel).
    pub(crate) fn is_idle(&self) -> bool {
        self.units.is_empty()
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
                limit: QueueLimit::Messages(config.send_queue_capacity),
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
        self.prune_timers();
    }

    /// The timer queue of a unit written for the `sends`-th time.
    fn level(&self, sends: u32) -> usize {
        if self.qos == Qos::AllCostDelivery {
            0
        } else {
            (sends.saturating_sub(1) as usize).min(LEVELS - 1)
        }
    }

    /// How long a unit of timer level `level` waits for its acknowledgement.
    fn wait(&self, level: usize, ctx: &FillContext) -> Duration {
        if self.qos == Qos::AllCostDelivery {
            ctx.all_cost_interval
        } else {
            let factor = 1u32 << level;
            ctx.rto_base.saturating_mul(factor).min(ctx.max_backoff.max(ctx.rto_base))
        }
    }

    /// When a timer of level `level` falls due. Within a level this grows with `sent_at`
    /// (timers written before a backoff reset wait the shortest time), so each queue stays in
    /// deadline order.
    fn deadline(&self, timer: &Timer, level: usize, ctx: &FillContext) -> Tick {
        let reset = self.qos != Qos::AllCostDelivery
            && ctx.backoff_reset.is_some_and(|at| timer.sent_at < at);
        timer.sent_at + if reset { ctx.rto_base } else { self.wait(level, ctx) }
    }

    /// The index of the unit a timer is for, if the timer is still live. (A unit dropped from
    /// the back can have its serial reused, but never with the same number and send time.)
    fn live(&self, timer: &Timer) -> Option<usize> {
        let i = usize::try_from(timer.serial.checked_sub(self.front_serial)?).ok()?;
        let unit = self.units.get(i).filter(|_| i < self.first_unsent)?;
        let live = unit.seq == timer.seq
            && unit.fragment.map_or(0, |f| f.index) == timer.fragment
            && !unit.acked
            && unit.sends == timer.sends
            && unit.last_sent == Some(timer.sent_at);
        live.then_some(i)
    }

    /// The levels with timers, lowest first.
    fn armed_levels(&self) -> impl Iterator<Item = usize> + use<> {
        let mut armed = self.armed;
        std::iter::from_fn(move || {
            let level = armed.trailing_zeros() as usize;
            armed &= armed.wrapping_sub(1);
            (level < LEVELS).then_some(level)
        })
    }

    fn pop_timer(&mut self, level: usize) {
        let _ = self.timers[level].pop_front();
        if self.timers[level].is_empty() {
            self.armed &= !(1 << level);
        }
    }

    /// Pops stale timers off the front of every queue, so each front is live.
    fn prune_timers(&mut self) {
        for level in self.armed_levels() {
            while let Some(timer) = self.timers[level].front() {
                if self.live(timer).is_some() {
                    break;
                }
                self.pop_timer(level);
            }
        }
    }

    /// Records that unit `i` was just written.
    fn arm(&mut self, i: usize, now: Tick) {
        let unit = &mut self.units[i];
        unit.sends += 1;
        unit.last_sent = Some(now);
        let timer = Timer {
            serial: self.front_serial + i as u64,
            seq: unit.seq,
            fragment: unit.fragment.map_or(0, |f| f.index),
            sends: unit.sends,
            sent_at: now,
        };
        let level = self.level(timer.sends);
        if self.timers.len() <= level {
            self.timers.resize_with(level + 1, VecDeque::new);
        }
        self.timers[level].push_back(timer);
        self.armed |= 1 << level;
    }

    /// When the earliest resend of this channel falls due, if any unit waits for one.
    pub(crate) fn next_resend(&self, ctx: &FillContext) -> Option<Tick> {
        let mut next: Option<Tick> = None;
        for level in self.armed_levels() {
            // Every change that can make a front stale prunes it, so this finds the front.
            if let Some(timer) = self.timers[level].iter().find(|t| self.live(t).is_some()) {
                let at = self.deadline(timer, level, ctx);
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        next
    }

    /// Whether a new reliable unit with `seq` stays within the receiver's window.
    fn in_window(&self, seq: MessageSeq, window: u16) -> bool {
        let oldest = self.units.front().map_or(seq, |u| u.seq);
        seq.distance(oldest) < i32::from(window)
    }

    /// Whether units never sent wait that only congestion control or the pacer holds back.
    pub(crate) fn has_new(&self, reliable_window: u16) -> bool {
        if self.qos.is_reliable() {
            self.units
                .get(self.first_unsent)
                .is_some_and(|u| self.in_window(u.seq, reliable_window))
        } else {
            !self.units.is_empty()
        }
    }

    /// Whether `fill` would write something now (given room).
    pub(crate) fn wants_to_send(&self, ctx: &FillContext) -> bool {
        let new = ctx.may_send_new && self.has_new(ctx.reliable_window);
        new || (self.qos.is_reliable()
            && ctx.may_resend
            && self.next_resend(ctx).is_some_and(|at| at <= ctx.now))
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
            // Resends of units in flight, level by level, each level in deadline order.
            if ctx.may_resend {
                'levels: for level in self.armed_levels() {
                    while let Some(&timer) = self.timers[level].front() {
                        if self.deadline(&timer, level, ctx) > ctx.now {
                            break;
                        }
                        let Some(i) = self.live(&timer) else {
                            self.pop_timer(level);
                            continue;
                        };
                        if !write_unit(
                            &self.units[i],
                            self.id,
                            fragmented,
                            numbered,
                            &mut previous,
                            w,
                        ) {
                            filled.more = true;
                            break 'levels;
                        }
                        self.pop_timer(level);
                        self.arm(i, ctx.now);
                        refs.push(self.unit_ref(i));
                        filled.records += 1;
                        filled.resent += 1;
                    }
                }
                // Timers queued behind the ones just popped may be stale (their units were
                // acknowledged while an older unit waited): keep every front live.
                self.prune_timers();
            }
            // New units, within the receiver's window and congestion control.
            while self.first_unsent < self.units.len() {
                let i = self.first_unsent;
                if !ctx.may_send_new || !self.in_window(self.units[i].seq, ctx.reliable_window) {
                    break;
                }
                if !write_unit(&self.units[i], self.id, fragmented, numbered, &mut previous, w) {
                    filled.more = true;
                    break;
                }
                self.arm(i, ctx.now);
                refs.push(self.unit_ref(i));
                self.first_unsent += 1;
                filled.records += 1;
                filled.new_reliable += 1;
            }
        } else if ctx.may_send_new {
            // Unreliable kinds: each unit goes out once, then leaves the queue. Held back by
            // congestion control, they wait here (bounded by `send_queue_capacity`).
            while let Some(unit) = self.units.front() {
                if !write_unit(unit, self.id, fragmented, numbered, &mut previous, w) {
                    filled.more = true;
                    break;
                }
                let unit = self.units.pop_front().expect("front exists");
                self.front_serial += 1;
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
            self.front_serial += 1;
            self.first_unsent -= 1;
            if unit.ends_message() {
                self.messages -= 1;
            }
            pool.give(unit.data);
        }
        self.prune_timers();
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

#[cfg(test)]
mod tests {
    use super::*;

    const RTO: Duration = Duration::from_millis(100);

    fn ctx(now: Tick) -> FillContext {
        FillContext {
            now,
            rto_base: RTO,
            max_backoff: Duration::from_secs(2),
            backoff_reset: None,
            all_cost_interval: Duration::from_millis(20),
            may_send_new: true,
            may_resend: true,
            reliable_window: 4096,
        }
    }

    fn fill(channel: &mut SendChannel, now: Tick, pool: &mut BufPool) -> Filled {
        let mut buf = [0u8; 1200];
        let mut w = Writer::new(&mut buf);
        channel.fill(&mut w, &ctx(now), &mut Vec::new(), pool)
    }

    #[test]
    fn resends_only_the_lost_unit_and_backs_off_without_stale_timers() {
        let config = EndpointConfig::default();
        let mut pool = BufPool::new(1 << 20, 1 << 16, 16);
        let mut channel = SendChannel::new(ChannelId(0), Qos::ReliableSequenced);
        for _ in 0..3 {
            channel.enqueue(b"hello", &config, &mut pool).unwrap();
        }
        let t0 = Tick::EPOCH;
        assert_eq!(fill(&mut channel, t0, &mut pool).new_reliable, 3);
        assert_eq!(channel.next_resend(&ctx(t0)), Some(t0 + RTO));
        // Units 1 and 2 are acknowledged; unit 0's packet was lost.
        assert!(channel.on_ack(MessageSeq::new(1), 0, &mut pool));
        assert!(channel.on_ack(MessageSeq::new(2), 0, &mut pool));
        assert_eq!(channel.depth(), 3, "unit 0 holds the others back");
        assert_eq!(fill(&mut channel, t0 + RTO / 2, &mut pool).records, 0, "not due yet");
        let t1 = t0 + RTO;
        let resent = fill(&mut channel, t1, &mut pool);
        assert_eq!((resent.resent, resent.records), (1, 1));
        // The second wait is doubled, and the acked units' timers are gone, not skipped.
        assert_eq!(channel.next_resend(&ctx(t1)), Some(t1 + 2 * RTO));
        assert!(channel.timers[0].is_empty());
        assert_eq!(channel.timers[1].len(), 1);
        assert!(channel.on_ack(MessageSeq::new(0), 0, &mut pool));
        assert_eq!((channel.depth(), channel.next_resend(&ctx(t1))), (0, None));
    }

    #[test]
    fn all_cost_delivery_resends_on_its_fixed_interval() {
        let config = EndpointConfig::default();
        let mut pool = BufPool::new(1 << 20, 1 << 16, 16);
        let mut channel = SendChannel::new(ChannelId(0), Qos::AllCostDelivery);
        channel.enqueue(b"urgent", &config, &mut pool).unwrap();
        let t0 = Tick::EPOCH;
        let mut sends = 0;
        for ms in 0..=100 {
            sends += fill(&mut channel, t0 + Duration::from_millis(ms), &mut pool).records;
        }
        assert_eq!(sends, 6, "at 0, 20, 40, 60, 80 and 100 ms, without backoff");
    }
}
