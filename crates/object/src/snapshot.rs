//! The snapshot streams that carry [`NetworkTransform`]s: one per observer on the server,
//! one on each client. See the [`transform`](crate::transform) module for what they do; this
//! is how.
//!
//! **Server.** Every transform has a *slot*: its quantised state and a version that grows with
//! each change past the thresholds. Each observer has a *stream*: for each slot it observes,
//! the newest state it has acknowledged (its *baseline*) and the last one sent; a list of the
//! slots that have something for it (changed since its baseline, or sent in a snapshot since
//! found lost); a [`PriorityScheduler`] and a [`ByteBudget`]; and the contents of the last 64
//! snapshots sent. Each tick it selects by priority what fits the budget, writes one snapshot
//! message (sequence, the acknowledgement it is encoded against, server time, then the
//! entries bit-packed) and remembers it.
//!
//! **Acknowledgements.** A client answers the snapshots of an update with one
//! acknowledgement message of its own sequence (`ack_id`): the newest snapshot received and
//! a bitfield of the 64 before. A snapshot names the newest `ack_id` the server has; each delta
//! in it is against the transform's newest state in a snapshot that acknowledgement lists
//! (or, if none lists one, the state the spawn carried). The client keeps the
//! acknowledgements it sent, so it resolves exactly the state the server used; a delta whose
//! base it no longer holds is read past, and the transform is asked for whole (`missing`).
//! A snapshot the client cannot read to the end (an object it does not know, before its spawn
//! arrives or after its despawn) is not acknowledged, so the server never encodes against
//! what the client did not apply.
//!
//! Nothing here allocates in steady state: lists, the snapshots' contents and the
//! schedulers are reused.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use sturnus_message::{ChannelId, PlayerId};

use crate::NetId;
use crate::interpolation::Pose;
use crate::priority::{ByteBudget, Dirty, PriorityScheduler};
use crate::quantize::{BitError, BitReader, BitWriter};
use crate::transform::{Authority, NetworkTransform, QState, TransformConfig};

/// How transforms are synchronised: the snapshot rate, the per-connection budget, the
/// channel. Part of [`ObjectConfig`](crate::ObjectConfig).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct TransformSyncConfig {
    /// How often each observer is sent a snapshot of what changed (the finest any
    /// transform's send interval can be). Default: 60 per second.
    pub interval: Duration,
    /// Each connection's budget for snapshots, in kbit/s (Gaffer's 256 by default): a
    /// snapshot holds what fits, by priority; the rest waits, rising in priority.
    pub budget_kbps: u32,
    /// The channel snapshots go on (`None`: the first typed `Unreliable` channel). An
    /// unreliable channel is the point: nothing is resent, the next snapshot makes good a lost
    /// one.
    pub channel: Option<ChannelId>,
    /// The distance (metres) at which an object's priority is halved: it is scaled by
    /// `1 / (1 + d / this)`, but never below a quarter (far objects still get their turn), for
    /// its distance `d` from the player's position (see
    /// [`set_player_position`](crate::ServerObjectManager::set_player_position)).
    pub priority_distance: f32,
}

impl Default for TransformSyncConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_nanos(1_000_000_000 / 60),
            budget_kbps: 256,
            channel: None,
            priority_distance: 10.0,
        }
    }
}

/// The least a transform's priority is scaled down for distance: however far, it still gets a
/// quarter of the turns of the nearest, so nothing starves.
const MIN_NEARNESS: f32 = 0.25;

/// How many snapshots a stream remembers (and a client's acknowledgement covers).
const WINDOW: u32 = 64;
/// How many snapshots' contents a stream keeps: twice the window, so every snapshot an
/// acknowledgement can list (at most 65 before the next to send) is still held.
const RING: u32 = 2 * WINDOW;
/// How many acknowledgements a client remembers.
const ACKS_KEPT: u32 = 256;
/// The most entries in a snapshot (12 bits).
const MAX_ENTRIES: usize = 4095;
/// The bits of a snapshot's entry count.
const COUNT_BITS: u32 = 12;

/// One transform, as the server's manager tracks it.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) net_id: NetId,
    pub(crate) behaviour: u8,
    pub(crate) generation: u32,
    pub(crate) live: bool,
    pub(crate) config: TransformConfig,
    /// The state observers are brought to, and its version.
    pub(crate) current: QState,
    pub(crate) version: u32,
    /// The pose `current` was taken from (thresholds compare against it).
    pub(crate) published: Pose,
    pub(crate) last_sample: Option<Instant>,
    /// The current version follows a rest: the version before it was published more than
    /// one and a half send intervals earlier (or there was none). A client then holds the
    /// old pose until just before the new one instead of blending across the rest.
    pub(crate) rested: bool,
    pub(crate) important: bool,
    /// In the `moved` list.
    pub(crate) moved: bool,
    /// Owner-authoritative: the owner, who is not sent its own transform.
    pub(crate) owner: Option<PlayerId>,
}

/// A state an observer holds: from a snapshot (`seq`, sent at `time_ms`) or, with `seq:
/// None`, from the spawn.
#[derive(Debug, Clone, Copy)]
struct Known {
    seq: Option<u32>,
    state: QState,
    version: u32,
    time_ms: u64,
}

/// What a snapshot carried of one slot.
#[derive(Debug, Clone, Copy)]
struct Item {
    index: u32,
    generation: u32,
    version: u32,
    state: QState,
}

/// What an observer holds of a slot, as far as the server knows.
#[derive(Debug, Clone, Copy)]
struct Entry {
    generation: u32,
    /// The first snapshot that can carry this observation of the slot: acknowledgements of
    /// older ones (from before the observer last stopped observing it, or from before it asked
    /// for the state whole) are ignored.
    since: u32,
    /// The spawn this observation began with (see the `Spawn` message's `epoch`): whole
    /// states name it.
    epoch: u8,
    /// The observer owns it and sets it (owner-authoritative): it is not sent it.
    owned: bool,
    /// The newest state it acknowledged (or the spawn's).
    baseline: Option<Known>,
    /// The newest acknowledged before `baseline` (snapshots only): with it, a delta is
    /// against the baseline carried forward by the motion between the two.
    prev: Option<Known>,
    /// The last snapshot it was sent in, and the version sent.
    sent: Option<(u32, u32)>,
    /// In the stream's `dirty` list.
    listed: bool,
}

/// One snapshot sent: its sequence and what it carried.
#[derive(Debug, Default)]
struct Sent {
    seq: u32,
    used: bool,
    acked: bool,
    /// When it was sent.
    at: Option<Instant>,
    /// Its server time stamp (ms).
    time_ms: u64,
    /// Where its items are in the stream's arena (counted from the first item ever), and how
    /// many.
    start: u64,
    len: u32,
}

/// What a stream sends with: the manager's parts it needs.
pub(crate) struct TickContext<'a> {
    pub(crate) slots: &'a [Slot],
    pub(crate) now: Instant,
    pub(crate) dt: Duration,
    pub(crate) time_ms: u64,
    pub(crate) max_payload: usize,
    pub(crate) priority_distance: f32,
}

/// One observer's snapshot stream.
#[derive(Debug)]
pub(crate) struct Stream {
    /// The observer.
    player: Option<PlayerId>,
    next_seq: u32,
    /// The newest acknowledgement: its id, newest snapshot and bitfield.
    base: Option<(u32, u32, u64)>,
    entries: FxHashMap<u32, Entry>,
    dirty: Vec<u32>,
    scheduler: PriorityScheduler<u32>,
    budget: ByteBudget,
    sent: Vec<Sent>,
    /// The items of the snapshots in `sent`, oldest first: one queue for all, so it reaches
    /// its working size once and then allocates nothing.
    items: VecDeque<Item>,
    /// Items dropped from the front of `items` so far.
    items_dropped: u64,
    selected: Vec<u32>,
    /// The player's position, for priority by distance.
    pub(crate) position: Option<[f32; 3]>,
    /// The smoothed round trip from a snapshot to its acknowledgement.
    rtt: Option<Duration>,
    /// The tick interval, for the loss timeout.
    interval: Duration,
    /// A smoothed size of an entry, in bits (the estimate the scheduler fills by).
    entry_bits: usize,
}

/// What a stream counted in one tick.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct TickOutcome {
    pub(crate) entries: u64,
    pub(crate) bits: u64,
    pub(crate) bytes: u64,
}

impl Stream {
    pub(crate) fn new(player: PlayerId, budget_kbps: u32, interval: Duration) -> Self {
        Self {
            player: Some(player),
            next_seq: 1,
            base: None,
            entries: FxHashMap::default(),
            dirty: Vec::new(),
            scheduler: PriorityScheduler::new(),
            budget: ByteBudget::new(budget_kbps),
            sent: (0..RING).map(|_| Sent::default()).collect(),
            items: VecDeque::new(),
            items_dropped: 0,
            selected: Vec::new(),
            position: None,
            rtt: None,
            interval,
            entry_bits: 64,
        }
    }

    /// The observer now holds `slot` at `state` (its spawn): dirty unless that is the
    /// slot's current version.
    pub(crate) fn observe(&mut self, index: u32, slot: &Slot, state: QState, epoch: u8) {
        let version = if state == slot.current { slot.version } else { 0 };
        let entry = Entry {
            generation: slot.generation,
            since: self.next_seq,
            epoch,
            owned: slot.owner.is_some_and(|o| Some(o) == self.player),
            baseline: Some(Known { seq: None, state, version, time_ms: 0 }),
            prev: None,
            sent: None,
            listed: false,
        };
        self.entries.insert(index, entry);
        // Registering twice is refused and harmless: the accumulator carries on.
        let _ = self.scheduler.register(index, 1.0);
        if version != slot.version {
            self.list(index);
        }
    }

    /// The observer holds nothing any more.
    fn reset(&mut self) {
        for (index, _) in self.entries.drain() {
            self.scheduler.remove(index);
        }
        self.dirty.clear();
    }

    /// The observer no longer holds `slot`.
    pub(crate) fn forget(&mut self, index: u32) {
        self.entries.remove(&index);
        self.scheduler.remove(index);
        // A listed slot leaves the list at the next tick (it has no entry).
    }

    /// `slot` changed: it has something for this observer.
    pub(crate) fn changed(&mut self, index: u32) {
        self.list(index);
    }

    fn list(&mut self, index: u32) {
        if let Some(entry) = self.entries.get_mut(&index) {
            if !entry.listed && !entry.owned {
                entry.listed = true;
                self.dirty.push(index);
            }
        }
    }

    fn slot_of(&self, seq: u32) -> usize {
        (seq % RING) as usize
    }

    /// Whether the snapshot `seq` is taken as lost at `now`: too old to tell; or not
    /// acknowledged while a later one was; or not acknowledged for twice the round trip plus
    /// two ticks (the last snapshot of a motion has no later one to reveal its loss).
    fn lost(&self, seq: u32, now: Instant) -> bool {
        let sent = &self.sent[self.slot_of(seq)];
        if !sent.used || sent.seq != seq {
            return true;
        }
        if sent.acked {
            return false;
        }
        let overtaken = self.base.is_some_and(|(_, newest, _)| newest > seq);
        let timeout = 2 * self.rtt.unwrap_or(Duration::from_millis(100)) + 2 * self.interval;
        let overdue = sent.at.is_some_and(|at| now.saturating_duration_since(at) > timeout);
        overtaken || overdue
    }

    /// Whether the acknowledgement `base` lists snapshot `seq`.
    fn listed_in(base: (u32, u32, u64), seq: u32) -> bool {
        let (_, newest, bits) = base;
        seq == newest
            || (seq < newest && newest - seq <= WINDOW && bits >> (newest - seq - 1) & 1 == 1)
    }

    /// An acknowledgement from the client. Returns `false` if it names a snapshot never sent
    /// (forged).
    pub(crate) fn on_ack(&mut self, now: Instant, ack_id: u32, newest: u32, bits: u64) -> bool {
        if newest == 0 || newest >= self.next_seq {
            return false;
        }
        let first = &self.sent[self.slot_of(newest)];
        if let (true, false, Some(at)) = (first.seq == newest, first.acked, first.at) {
            let sample = now.saturating_duration_since(at);
            self.rtt = Some(match self.rtt {
                None => sample,
                Some(rtt) => (rtt * 7 + sample) / 8,
            });
        }
        // An acknowledgement becomes the base only if every snapshot it can list is still
        // remembered: one that arrives after the ring moved on could list states whose
        // acknowledgement was never recorded, and the client would pick one of them.
        let remembered = self.next_seq.saturating_sub(newest) < RING - WINDOW;
        if remembered && self.base.is_none_or(|(id, _, _)| ack_id > id) {
            self.base = Some((ack_id, newest, bits));
        }
        let oldest = newest.saturating_sub(WINDOW);
        for seq in (oldest.max(1)..=newest).rev() {
            if !Self::listed_in((ack_id, newest, bits), seq) {
                continue;
            }
            let at = self.slot_of(seq);
            let sent = &mut self.sent[at];
            if !sent.used || sent.seq != seq || sent.acked {
                continue;
            }
            sent.acked = true;
            let (time_ms, first) = (sent.time_ms, sent.start.saturating_sub(self.items_dropped));
            let first = usize::try_from(first).unwrap_or(usize::MAX);
            let items = self.items.range(first..first.saturating_add(sent.len as usize));
            for item in items {
                let Some(entry) = self.entries.get_mut(&item.index) else { continue };
                if entry.generation != item.generation || seq < entry.since {
                    continue;
                }
                let known =
                    Known { seq: Some(seq), state: item.state, version: item.version, time_ms };
                match entry.baseline {
                    Some(Known { seq: Some(have), .. }) if seq < have => {
                        // Older than the baseline: the newest such is the one before it.
                        if entry.prev.is_none_or(|p| p.seq.is_some_and(|p| seq > p)) {
                            entry.prev = Some(known);
                        }
                    }
                    Some(Known { seq: Some(have), .. }) if seq == have => {}
                    Some(old @ Known { seq: Some(_), .. }) => {
                        entry.prev = Some(old);
                        entry.baseline = Some(known);
                    }
                    _ => entry.baseline = Some(known),
                }
            }
        }
        true
    }

    /// The client could not decode `slot`'s delta (it says so in an acknowledgement whose
    /// newest snapshot is `newest`): its next state goes whole. A report from before the last
    /// restart of the observation (it repeats until a state arrives) is already answered.
    pub(crate) fn on_missing(&mut self, index: u32, newest: u32) {
        if self.entries.get(&index).is_some_and(|entry| entry.since > newest) {
            return;
        }
        if let Some(entry) = self.entries.get_mut(&index) {
            entry.baseline = None;
            entry.prev = None;
            entry.sent = None;
            // Acknowledgements of snapshots sent before now may list states it does not hold.
            entry.since = self.next_seq;
        }
        self.list(index);
    }

    /// Builds this tick's snapshot into `out` (after what is there). Returns what it wrote,
    /// or `None` if there is nothing to send.
    pub(crate) fn tick(
        &mut self,
        cx: &TickContext<'_>,
        out: &mut Vec<u8>,
        header: impl FnOnce(&mut Vec<u8>, u32, u32),
    ) -> Option<TickOutcome> {
        let available = self.budget.refill(cx.dt);
        if self.dirty.is_empty() {
            // Nothing changed for this observer: the tick costs nothing more.
            return None;
        }
        self.scheduler.begin_tick(cx.dt);
        // Which listed slots have something to send.
        let mut kept = 0;
        for i in 0..self.dirty.len() {
            let index = self.dirty[i];
            let Some(entry) = self.entries.get(&index).copied() else { continue };
            let Some(slot) = cx.slots.get(index as usize).filter(|s| s.live) else { continue };
            if entry.generation != slot.generation {
                continue;
            }
            if entry.owned {
                if let Some(entry) = self.entries.get_mut(&index) {
                    entry.listed = false;
                }
                continue;
            }
            // The observer acknowledged the current version: nothing to send. (A version is
            // one state, so a later snapshot carrying the same version changes nothing.)
            let at_baseline = entry.baseline.is_some_and(|b| b.version == slot.version);
            if at_baseline {
                if let Some(entry) = self.entries.get_mut(&index) {
                    entry.listed = false;
                }
                continue;
            }
            self.dirty[kept] = index;
            kept += 1;
            let in_flight = entry
                .sent
                .is_some_and(|(seq, version)| version == slot.version && !self.lost(seq, cx.now));
            if in_flight {
                continue;
            }
            // A delta's size from what entries have cost on this stream; a whole state's from
            // its widths.
            let bytes = if entry.baseline.is_some_and(|b| b.seq.is_some()) {
                self.entry_bits.div_ceil(8)
            } else {
                (16 + slot.config.absolute_bits() as usize).div_ceil(8)
            };
            let mut dirty = Dirty::new(bytes);
            if let Some(player) = self.position {
                let p = slot.published.position;
                let d = (0..3).map(|k| (p[k] - player[k]) * (p[k] - player[k])).sum::<f32>();
                let nearness = 1.0 / (1.0 + d.sqrt() / cx.priority_distance.max(0.001));
                dirty = dirty.scaled(nearness.max(MIN_NEARNESS));
            }
            if slot.important {
                dirty = dirty.important();
            }
            self.scheduler.mark(index, dirty);
        }
        self.dirty.truncate(kept);
        let room = available.min(cx.max_payload);
        if room == 0 {
            return None;
        }
        self.scheduler.select(room, &mut self.selected);
        if self.selected.is_empty() {
            return None;
        }
        let slots = cx.slots;
        self.selected
            .sort_unstable_by_key(|&i| (slots[i as usize].net_id, slots[i as usize].behaviour));

        let seq = self.next_seq;
        let base_id = self.base.map_or(0, |(id, _, _)| id);
        let start = out.len();
        header(out, seq, base_id);
        let payload = out.len();
        out.resize(payload + cx.max_payload, 0);
        let at = self.slot_of(seq);
        // The snapshot this one replaces in the ring is the oldest: its items leave the front.
        if self.sent[at].used {
            let len = self.sent[at].len as usize;
            self.items.drain(..len.min(self.items.len()));
            self.items_dropped += len as u64;
            self.sent[at].used = false;
            self.sent[at].len = 0;
        }
        let start_item = self.items_dropped + self.items.len() as u64;
        let (written, bits) = {
            let mut w = BitWriter::new(&mut out[payload..]);
            // The count is written last, over these bits.
            let _ = w.write_bits(0, COUNT_BITS);
            let mut previous = (NetId(0), 0_u8);
            let mut count = 0;
            let mut full = false;
            for &index in &self.selected {
                if full || count == MAX_ENTRIES {
                    // Selected, but the packet is full: first in line next time.
                    self.scheduler.put_back(index);
                    continue;
                }
                let slot = &slots[index as usize];
                let Some(entry) = self.entries.get(&index) else { continue };
                // Never against the spawn's state: the observer may still receive snapshots from
                // before it last observed the object, and could not tell which state is meant.
                let base = entry.baseline.filter(|b| match (b.seq, self.base) {
                    (Some(s), Some(ack)) => Self::listed_in(ack, s),
                    _ => false,
                });
                // Carried forward by the motion since the acknowledged state before it.
                let reference = base.map(|b| match entry.prev {
                    Some(p) if b.time_ms > p.time_ms => {
                        let (bs, ps) = (b.seq.unwrap_or(0), p.seq.unwrap_or(0));
                        let span = b.time_ms - p.time_ms;
                        let ahead = cx.time_ms.saturating_sub(b.time_ms);
                        let predicted = slot.config.predict(&b.state, &p.state, span, ahead);
                        (
                            Some(bs.wrapping_sub(ps)).filter(|&o| o > 0 && o <= MAX_OFFSET),
                            predicted,
                            b.state,
                        )
                    }
                    _ => (None, b.state, b.state),
                });
                let reference = reference.map(|(offset, predicted, plain)| match offset {
                    Some(offset) => (Some(offset), predicted),
                    None => (None, plain),
                });
                let mark = w.bits_written();
                if write_entry(&mut w, previous, slot, reference, entry.epoch).is_err() {
                    w.rewind(mark);
                    self.scheduler.put_back(index);
                    full = true;
                    continue;
                }
                previous = (slot.net_id, slot.behaviour);
                self.items.push_back(Item {
                    index,
                    generation: slot.generation,
                    version: slot.version,
                    state: slot.current,
                });
                count += 1;
            }
            let total = w.bits_written();
            // The count goes over the 12 bits left for it at the start.
            let _ = BitWriter::new(&mut out[payload..]).write_bits(count as u64, COUNT_BITS);
            (count, total)
        };
        if written == 0 {
            out.truncate(start);
            return None;
        }
        let bytes = bits.div_ceil(8);
        out.truncate(payload + bytes);
        let per_entry = (bits - COUNT_BITS as usize) / written;
        self.entry_bits = (self.entry_bits * 7 + per_entry).div_ceil(8).max(8);
        let first = usize::try_from(start_item - self.items_dropped).unwrap_or(0);
        for item in self.items.range(first..) {
            if let Some(entry) = self.entries.get_mut(&item.index) {
                entry.sent = Some((seq, item.version));
            }
        }
        let sent = &mut self.sent[at];
        sent.start = start_item;
        sent.len = u32::try_from(written).unwrap_or(u32::MAX);
        sent.time_ms = cx.time_ms;
        sent.seq = seq;
        sent.used = true;
        sent.acked = false;
        sent.at = Some(cx.now);
        self.next_seq = seq.wrapping_add(1).max(1);
        let total = out.len() - start;
        self.budget.spend(total);
        Some(TickOutcome {
            entries: written as u64,
            bits: (bits - COUNT_BITS as usize) as u64,
            bytes: total as u64,
        })
    }
}

/// Writes one entry: the id's gap from `previous`, the behaviour, then the state whole or as
/// a delta against `base`.
fn write_entry(
    w: &mut BitWriter<'_>,
    previous: (NetId, u8),
    slot: &Slot,
    reference: Option<(Option<u32>, QState)>,
    epoch: u8,
) -> Result<(), BitError> {
    let gap = u64::from(slot.net_id.0.wrapping_sub(previous.0.0));
    if slot.net_id.0 > previous.0.0 && gap == 1 {
        w.write_bits(0, 1)?;
    } else if slot.net_id.0 >= previous.0.0 && gap < 16 {
        w.write_bits(0b01 | (gap << 2), 6)?;
    } else if slot.net_id.0 >= previous.0.0 && gap < 16 + 256 {
        w.write_bits(0b011 | ((gap - 16) << 3), 11)?;
    } else {
        w.write_bits(0b111, 3)?;
        w.write_bits(u64::from(slot.net_id.0), 32)?;
    }
    if slot.behaviour == previous.1 {
        w.write_bits(0, 1)?;
    } else {
        w.write_bits(1, 1)?;
        w.write_bits(u64::from(slot.behaviour), 8)?;
    }
    w.write_bits(u64::from(reference.is_some()), 1)?;
    w.write_bits(u64::from(slot.rested), 1)?;
    match reference {
        Some((offset, reference)) => {
            write_offset(w, offset)?;
            slot.config.write_delta(&slot.current, &reference, w)
        }
        None => {
            w.write_bits(u64::from(epoch), 8)?;
            slot.config.write_absolute(&slot.current, w)
        }
    }
}

/// The most snapshots between the two states a prediction uses.
const MAX_OFFSET: u32 = 0xffff;

/// Writes how many snapshots before the baseline the state a prediction uses is (`None`: no
/// prediction): `0` (none), `10` (1), `110` + 3 bits (2..=9), `111` + 16 bits.
fn write_offset(w: &mut BitWriter<'_>, offset: Option<u32>) -> Result<(), BitError> {
    match offset {
        None => w.write_bits(0, 1),
        Some(1) => w.write_bits(0b01, 2),
        Some(o @ 2..=9) => w.write_bits(0b011 | (u64::from(o - 2) << 3), 6),
        Some(o) => {
            w.write_bits(0b111, 3)?;
            w.write_bits(u64::from(o.min(MAX_OFFSET)), 16)
        }
    }
}

/// Reads what [`write_offset`] wrote.
pub(crate) fn read_offset(r: &mut BitReader<'_>) -> Result<Option<u32>, BitError> {
    if r.read_bits(1)? == 0 {
        return Ok(None);
    }
    if r.read_bits(1)? == 0 {
        return Ok(Some(1));
    }
    if r.read_bits(1)? == 0 {
        return Ok(Some(2 + u32::try_from(r.read_bits(3)?).unwrap_or(0)));
    }
    Ok(Some(u32::try_from(r.read_bits(16)?).unwrap_or(0)))
}

/// What precedes an entry's state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EntryHead {
    pub(crate) net_id: NetId,
    pub(crate) behaviour: u8,
    /// The state is a delta against the acknowledged one (else whole).
    pub(crate) delta: bool,
    /// The object was at rest before this state.
    pub(crate) rested: bool,
}

/// Reads an entry's id and behaviour (after `previous`), whether it is a delta and whether
/// the object rested before it.
pub(crate) fn read_entry_head(
    r: &mut BitReader<'_>,
    previous: (NetId, u8),
) -> Result<EntryHead, BitError> {
    let net_id = if r.read_bits(1)? == 0 {
        NetId(previous.0.0.wrapping_add(1))
    } else if r.read_bits(1)? == 0 {
        NetId(previous.0.0.wrapping_add(u32::try_from(r.read_bits(4)?).unwrap_or(0)))
    } else if r.read_bits(1)? == 0 {
        NetId(previous.0.0.wrapping_add(16 + u32::try_from(r.read_bits(8)?).unwrap_or(0)))
    } else {
        NetId(u32::try_from(r.read_bits(32)?).unwrap_or(0))
    };
    let behaviour =
        if r.read_bits(1)? == 0 { previous.1 } else { u8::try_from(r.read_bits(8)?).unwrap_or(0) };
    let delta = r.read_bits(1)? == 1;
    let rested = r.read_bits(1)? == 1;
    Ok(EntryHead { net_id, behaviour, delta, rested })
}

/// Reads a snapshot's entry count.
pub(crate) fn read_count(r: &mut BitReader<'_>) -> Result<usize, BitError> {
    Ok(usize::try_from(r.read_bits(COUNT_BITS)?).unwrap_or(0))
}

/// The client's side of the stream: which snapshots arrived, the acknowledgements sent.
#[derive(Debug)]
pub(crate) struct Receiver {
    /// The newest snapshot received and the 64 before it.
    newest: Option<u32>,
    bits: u64,
    next_ack: u32,
    /// The acknowledgements sent: (id, newest, bits).
    acks: Vec<(u32, u32, u64)>,
    /// Whether a snapshot arrived since the last acknowledgement.
    pub(crate) ack_due: bool,
    /// Transforms to ask whole: (object, behaviour).
    pub(crate) missing: Vec<(NetId, u8)>,
}

impl Default for Receiver {
    fn default() -> Self {
        Self {
            newest: None,
            bits: 0,
            next_ack: 1,
            acks: vec![(0, 0, 0); ACKS_KEPT as usize],
            ack_due: false,
            missing: Vec::new(),
        }
    }
}

impl Receiver {
    /// Whether snapshot `seq` is new (not received before and not too old to tell).
    pub(crate) fn is_new(&self, seq: u32) -> bool {
        match self.newest {
            None => seq != 0,
            Some(newest) if seq > newest => true,
            Some(newest) if seq == newest => false,
            Some(newest) => newest - seq <= WINDOW && self.bits >> (newest - seq - 1) & 1 == 0,
        }
    }

    /// Records snapshot `seq` as received (read to the end).
    pub(crate) fn received(&mut self, seq: u32) {
        match self.newest {
            None => self.newest = Some(seq),
            Some(newest) if seq > newest => {
                // The old newest is now `shift` behind: bit `shift - 1`.
                let shift = seq - newest;
                self.bits = match shift {
                    1..64 => (self.bits << shift) | (1 << (shift - 1)),
                    64 => 1 << 63,
                    _ => 0,
                };
                self.newest = Some(seq);
            }
            Some(newest) if seq < newest && newest - seq <= WINDOW => {
                self.bits |= 1 << (newest - seq - 1);
            }
            _ => {}
        }
        self.ack_due = true;
    }

    /// The acknowledgement a snapshot is encoded against, if this client sent it.
    pub(crate) fn base(&self, ack_id: u32) -> Option<(u32, u32, u64)> {
        if ack_id == 0 {
            return None;
        }
        let kept = self.acks[(ack_id % ACKS_KEPT) as usize];
        (kept.0 == ack_id).then_some(kept)
    }

    /// The next acknowledgement to send (and remembers it), if one is due.
    pub(crate) fn next_ack(&mut self) -> Option<(u32, u32, u64)> {
        let newest = self.newest?;
        if !self.ack_due && self.missing.is_empty() {
            return None;
        }
        self.ack_due = false;
        let id = self.next_ack;
        self.next_ack = self.next_ack.wrapping_add(1).max(1);
        let ack = (id, newest, self.bits);
        self.acks[(id % ACKS_KEPT) as usize] = ack;
        Some(ack)
    }
}

/// Resolves the state a delta for `transform` was encoded against under acknowledgement
/// `base`: the newest held state of a snapshot the acknowledgement lists (the server never
/// encodes against a spawn's state). Returns its index in the history.
pub(crate) fn resolve_base(
    transform: &NetworkTransform,
    base: Option<(u32, u32, u64)>,
) -> Option<usize> {
    let history = &transform.history;
    if let Some(base) = base {
        for (i, held) in history.iter().enumerate().rev() {
            if let Some(seq) = held.seq {
                if Stream::listed_in(base, seq) {
                    return Some(i);
                }
            }
        }
    }
    None
}

/// The index in `transform`'s history of the state of snapshot `seq`, if held.
pub(crate) fn held_at(transform: &NetworkTransform, seq: u32) -> Option<usize> {
    transform.history.iter().position(|held| held.seq == Some(seq))
}

/// Whether a transform's owner sets it (and is not sent it).
pub(crate) fn owner_sets(config: &TransformConfig) -> bool {
    config.authority == Authority::Owner
}

/// The server's transforms and every observer's stream.
#[derive(Debug)]
pub(crate) struct TransformSync {
    pub(crate) config: TransformSyncConfig,
    /// The channel snapshots go on (`None`: the layout has no unreliable channel; transforms
    /// then go nowhere and spawning one is refused).
    pub(crate) channel: Option<ChannelId>,
    pub(crate) slots: Vec<Slot>,
    free: Vec<u32>,
    /// Slots whose transform the game changed since they were last sampled.
    moved: Vec<u32>,
    pub(crate) streams: FxHashMap<PlayerId, Stream>,
    last_tick: Option<Instant>,
    scratch: Vec<u8>,
}

/// What a transform tick did, for the manager's stats.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct TickTotals {
    pub(crate) snapshots: u64,
    pub(crate) entries: u64,
    pub(crate) bits: u64,
    pub(crate) bytes: u64,
}

impl TransformSync {
    pub(crate) fn new(config: TransformSyncConfig, channel: Option<ChannelId>) -> Self {
        Self {
            config,
            channel,
            slots: Vec::new(),
            free: Vec::new(),
            moved: Vec::new(),
            streams: FxHashMap::default(),
            last_tick: None,
            scratch: Vec::new(),
        }
    }

    /// Gives `transform` (behaviour `behaviour` of `net_id`) a slot.
    pub(crate) fn register(
        &mut self,
        net_id: NetId,
        behaviour: u8,
        transform: &mut NetworkTransform,
        owner: Option<PlayerId>,
    ) -> u32 {
        let config = *transform.config();
        let pose = transform.pose();
        let slot = Slot {
            net_id,
            behaviour,
            generation: 0,
            live: true,
            config,
            current: config.quantize(&pose),
            version: 1,
            published: pose,
            last_sample: None,
            rested: true,
            important: transform.is_important(),
            moved: false,
            owner: if owner_sets(&config) { owner } else { None },
        };
        let index = match self.free.pop() {
            Some(index) => {
                let generation = self.slots[index as usize].generation.wrapping_add(1);
                self.slots[index as usize] = Slot { generation, ..slot };
                index
            }
            None => {
                self.slots.push(slot);
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        transform.slot = Some(index);
        transform.changed = false;
        index
    }

    /// The transform of `index` is gone; `observers` forget it.
    pub(crate) fn unregister(&mut self, index: u32, observers: impl Iterator<Item = PlayerId>) {
        for player in observers {
            if let Some(stream) = self.streams.get_mut(&player) {
                stream.forget(index);
            }
        }
        if let Some(slot) = self.slots.get_mut(index as usize) {
            if slot.live {
                slot.live = false;
                self.free.push(index);
            }
        }
    }

    /// `player` now holds the transform of `index` as `transform`'s pose (its spawn).
    pub(crate) fn observe(
        &mut self,
        player: PlayerId,
        index: u32,
        transform: &NetworkTransform,
        epoch: u8,
    ) {
        let Some(slot) = self.slots.get(index as usize) else { return };
        let state = slot.config.quantize(&transform.pose());
        let (budget, interval) = (self.config.budget_kbps, self.config.interval);
        let stream =
            self.streams.entry(player).or_insert_with(|| Stream::new(player, budget, interval));
        stream.observe(index, slot, state, epoch);
    }

    /// `player` no longer observes the transform of `index`.
    pub(crate) fn forget(&mut self, player: PlayerId, index: u32) {
        if let Some(stream) = self.streams.get_mut(&player) {
            stream.forget(index);
        }
    }

    /// `player` left: its stream goes.
    pub(crate) fn remove_player(&mut self, player: PlayerId) {
        self.streams.remove(&player);
    }

    /// `player` observes nothing any more (it was made not ready): its stream forgets every
    /// transform but keeps counting snapshots, so its client never mistakes a new snapshot for
    /// an old one.
    pub(crate) fn reset_player(&mut self, player: PlayerId) {
        if let Some(stream) = self.streams.get_mut(&player) {
            stream.reset();
        }
    }

    /// The game changed the transform of `index`: it is sampled at its next due tick.
    pub(crate) fn note_moved(&mut self, index: u32) {
        if let Some(slot) = self.slots.get_mut(index as usize) {
            if slot.live && !slot.moved {
                slot.moved = true;
                self.moved.push(index);
            }
        }
    }

    /// The owner of the transform of `index` (for an owner-authoritative one) is now `owner`:
    /// the old one is sent it from now on (whole, as the server has it), the new one no more.
    pub(crate) fn set_owner(&mut self, index: u32, owner: Option<PlayerId>) {
        let Some(slot) = self.slots.get_mut(index as usize) else { return };
        if !owner_sets(&slot.config) {
            return;
        }
        let old = std::mem::replace(&mut slot.owner, owner);
        for (player, owned) in [(old, false), (owner, true)] {
            let Some(stream) = player.and_then(|p| self.streams.get_mut(&p)) else { continue };
            let Some(entry) = stream.entries.get_mut(&index) else { continue };
            entry.owned = owned;
            if !owned {
                // Its client held its own pose, which the server may not share.
                entry.baseline = None;
                entry.prev = None;
                entry.since = stream.next_seq;
                stream.list(index);
            }
        }
    }

    /// Whether a tick is due at `now`; if so, advances the tick clock and returns its length.
    pub(crate) fn due(&mut self, now: Instant) -> Option<Duration> {
        let interval = self.config.interval;
        match self.last_tick {
            None => {
                self.last_tick = Some(now);
                Some(interval)
            }
            Some(last) => {
                let elapsed = now.saturating_duration_since(last);
                if elapsed + interval / 8 < interval {
                    return None;
                }
                // Keep the cadence (a tick's length is the time it moves the cadence on, so the
                // budget is granted once per unit of time), but never owe more than a few
                // ticks after a stall.
                let (next, dt) = if elapsed > 4 * interval {
                    (now, 4 * interval)
                } else {
                    (last + interval, interval)
                };
                self.last_tick = Some(next);
                Some(dt)
            }
        }
    }

    /// Samples the moved transforms that are due: `pose_of` gives a slot's pose (or `None` if
    /// its object is gone); a change past the thresholds gets a new version, and `changed` is
    /// called with the slot (to tell its observers and the interest policy).
    pub(crate) fn sample(
        &mut self,
        now: Instant,
        mut pose_of: impl FnMut(&Slot) -> Option<(Pose, bool)>,
        mut changed: impl FnMut(&Slot, u32, &mut FxHashMap<PlayerId, Stream>),
    ) {
        let mut kept = 0;
        let margin = self.config.interval / 2;
        for i in 0..self.moved.len() {
            let index = self.moved[i];
            let Some(slot) = self.slots.get_mut(index as usize) else { continue };
            if !slot.live {
                slot.moved = false;
                continue;
            }
            let due = slot.last_sample.is_none_or(|at| {
                now.saturating_duration_since(at) + margin >= slot.config.send_interval
            });
            if !due {
                self.moved[kept] = index;
                kept += 1;
                continue;
            }
            slot.moved = false;
            let Some((pose, important)) = pose_of(slot) else { continue };
            slot.important = important;
            let state = slot.config.quantize(&pose);
            if state == slot.current || !slot.config.changed_enough(&slot.published, &pose) {
                continue;
            }
            slot.rested = slot.last_sample.is_none_or(|at| {
                now.saturating_duration_since(at) > slot.config.send_interval * 3 / 2
            });
            slot.current = state;
            slot.version = slot.version.wrapping_add(1);
            slot.published = pose;
            slot.last_sample = Some(now);
            changed(slot, index, &mut self.streams);
        }
        self.moved.truncate(kept);
    }

    /// Sends each observer its snapshot for this tick through `send` (player, bytes after
    /// the message id). Returns the totals.
    pub(crate) fn tick(
        &mut self,
        now: Instant,
        dt: Duration,
        time_ms: u64,
        max_payload: usize,
        positions: &FxHashMap<PlayerId, [f32; 3]>,
        mut send: impl FnMut(PlayerId, &[u8]) -> bool,
    ) -> TickTotals {
        let mut totals = TickTotals::default();
        let cx = TickContext {
            slots: &self.slots,
            now,
            dt,
            time_ms,
            max_payload,
            priority_distance: self.config.priority_distance,
        };
        for (&player, stream) in &mut self.streams {
            self.scratch.clear();
            stream.position = positions.get(&player).copied();
            let header = |out: &mut Vec<u8>, seq: u32, base: u32| {
                let msg = crate::wire::Snapshot { seq, base, time_ms: cx.time_ms };
                // A derived header encodes into a Vec without failing.
                let _ = crate::wire::put(out, &msg);
            };
            let Some(outcome) = stream.tick(&cx, &mut self.scratch, header) else { continue };
            if send(player, &self.scratch) {
                totals.snapshots += 1;
                totals.entries += outcome.entries;
                totals.bits += outcome.bits;
                totals.bytes += outcome.bytes;
            }
        }
        totals
    }
}
