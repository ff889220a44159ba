//! Congestion control and pacing of a connection: a model of the path (its bottleneck rate and
//! its round-trip time) built from acknowledgements, in the manner of BBR, rather than a window
//! that halves on every loss.
//!
//! Why a model: game traffic crosses Wi-Fi and mobile links that lose packets at random, with
//! no queue anywhere near full. A loss-driven window (Reno, CUBIC) reads each such loss as
//! congestion and halves, so 5 % random loss on a 10 ms path held a reliable stream under
//! 1 MB/s. Here loss is not a signal at all. Congestion shows instead as a delivery rate that
//! stops growing when the sender sends faster, and as a round trip that grows; the controller
//! sends at the highest delivery rate measured lately (probing a quarter above it one round in
//! eight, then draining a quarter below) and caps the bytes in flight near the measured
//! bandwidth-delay product. A random loss leaves both estimates where they were.
//!
//! Every packet carrying messages counts, unreliable ones included: they are paced and held to
//! the window like the rest, so a sender cannot bury a slower receiver or bottleneck. (They are
//! acknowledged lazily, which is why the window never falls below what the receiver may hold
//! back before acknowledging.)
//!
//! Delivery rate samples follow the IETF draft "Delivery Rate Estimation" (Cheng, Cardwell et
//! al.): every packet remembers how much had been delivered when it was sent; when it is
//! acknowledged, the data delivered since, over the longer of its send and ack intervals, is a
//! sample of the path's rate. Samples taken while the sender had nothing to send are
//! "application-limited" and may only raise the estimate.

use std::time::Duration;

use super::time::{Tick, nanos};
use crate::EndpointConfig;

/// Pacing and window gain at startup: `2 / ln 2`, the smallest that doubles the delivery rate
/// every round trip (as BBR).
const STARTUP_GAIN_PERCENT: u64 = 289;
/// Pacing gains of the bandwidth probing cycle, one phase per minimum round trip: probe a
/// quarter above the estimate, drain the queue that made, then cruise.
const CYCLE_PERCENT: [u64; CYCLE_PHASES as usize] = [125, 75, 100, 100, 100, 100, 100, 100];
const CYCLE_PHASES: u8 = 8;
/// The window is this many bandwidth-delay products (plus the ack allowance below).
const CWND_GAIN_PERCENT: u64 = 200;
/// Rounds over which the highest delivery rate is the bandwidth estimate.
const BW_ROUNDS: u8 = 10;
/// How long a minimum round trip stays the estimate without being seen again.
const MIN_RTT_LIFETIME: Duration = Duration::from_secs(10);
/// Startup ends after this many rounds without 25 % growth of the estimate.
const FULL_BW_ROUNDS: u8 = 3;
/// Startup also ends after a round that lost more than one packet in this many (and at least
/// `STARTUP_LOSSES`) once the estimate has stopped growing for a round, or that lost more
/// than one in `STARTUP_HEAVY_LOSS_RATIO` (and at least `STARTUP_HEAVY_LOSSES`) at any time: a
/// shallow queue overflowed (as BBRv2). Random loss alone does not end it while the delivery rate still
/// grows by a quarter per round; if it did, the probing cycle would have to find the rest of
/// the bandwidth at a quarter more per cycle, which on a lossy link took seconds.
const STARTUP_LOSS_RATIO: u32 = 50;
/// A round that lost more than one packet in this many ends startup even while the estimate
/// grows: random loss on a game link is rarely that heavy, an overflowing queue is.
const STARTUP_HEAVY_LOSS_RATIO: u32 = 10;
/// The fewest losses in a round for the heavy-loss rule: early rounds are a few dozen packets,
/// where three random losses already make a tenth.
const STARTUP_HEAVY_LOSSES: u32 = 8;
const STARTUP_LOSSES: u32 = 3;
/// The pacer lets this much sending time accumulate while it waits (at least ten packets'
/// worth): a driver that sleeps in milliseconds then catches up in a burst instead of falling
/// behind the pacing rate.
const PACING_BURST: Duration = Duration::from_millis(1);
/// Packets' worth of burst the pacer always allows.
const PACING_BURST_PACKETS: u64 = 10;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// The state of the model's control loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Doubling the rate each round trip until the delivery rate stops growing.
    Startup,
    /// Sending below the estimate until the queue startup built has drained.
    Drain,
    /// Cruising at the estimate, probing above it one phase in eight.
    ProbeBandwidth,
}

/// What the controller remembers of one sent packet, besides its size, its send time and
/// whether it was application-limited (see [`Sent`]). Only 8-byte fields: the connection's
/// record of the packet packs its own small fields beside it without padding.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SendRecord {
    /// Bytes delivered (acknowledged) before this packet was sent.
    delivered: u64,
    /// When `delivered` was last increased, as of the send.
    delivered_at: Tick,
    /// The send time of the packet most recently acknowledged, as of the send (the start of
    /// the send interval this packet closes).
    first_sent_at: Tick,
}

/// One sent packet as the controller sees it when it is acknowledged.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sent {
    pub(crate) record: SendRecord,
    pub(crate) sent_at: Tick,
    /// Datagram bytes.
    pub(crate) size: u16,
    /// Sent while the sender had nothing more to send (as [`Congestion::on_send`] said).
    pub(crate) app_limited: bool,
}

/// The newest acknowledgement's view, collected over one incoming packet's acknowledgements
/// (by the caller, on its stack: it lives no longer than one packet).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RateSample(Option<Sample>);

#[derive(Debug, Clone, Copy)]
struct Sample {
    prior_delivered: u64,
    prior_at: Tick,
    send_elapsed: Duration,
    app_limited: bool,
}

/// The settings the controller derives from the endpoint's configuration (not kept per
/// connection: derived again where needed, which costs a few instructions).
struct Params {
    mss: u64,
    min_cwnd: u64,
    initial_cwnd: u64,
}

impl Params {
    fn of(config: &EndpointConfig) -> Self {
        let mss = config.max_packet_size as u64;
        // Lazily acknowledged packets may wait for `unreliable_ack_every` to pile up at the
        // receiver: the window always leaves room for twice that.
        let min_packets =
            (config.min_congestion_window as u64).max(2 * u64::from(config.unreliable_ack_every));
        let initial_cwnd = (config.initial_congestion_window as u64).max(min_packets) * mss;
        Self { mss, min_cwnd: min_packets * mss, initial_cwnd }
    }
}

/// One connection's congestion controller and pacer.
///
/// Its fields are ordered by size, and instants are [`Tick`]s: one of these lives in every
/// connection (see the size guard in the connection's tests).
#[derive(Debug)]
pub(crate) struct Congestion {
    /// The highest delivery rate (bytes/s) of each of the last `BW_ROUNDS` rounds.
    bw_rounds: [u64; BW_ROUNDS as usize],
    /// Their maximum: the bottleneck bandwidth estimate (0 before the first sample).
    bw: u64,
    min_rtt: Option<Duration>,
    min_rtt_at: Tick,
    round_end_delivered: u64,
    full_bw: u64,
    cycle_start: Tick,

    delivered: u64,
    delivered_at: Tick,
    first_sent_at: Tick,
    /// Nonzero: sending is application-limited until `delivered` passes this.
    app_limited_until: u64,

    pacing_rate: u64,
    /// The earliest time the next packet may go out.
    pace_at: Tick,
    cwnd: u64,
    bytes_in_flight: u64,
    /// While silent: the earliest time the next probe (a packet with new messages, asking for
    /// a prompt acknowledgement) may go out.
    probe_at: Tick,
    /// When the last silence ended: units sent before it resend at once, their backoff undone.
    silence_ended: Option<Tick>,
    /// When the peer last acknowledged something new: a packet with messages, or any packet
    /// newer than the newest it had acknowledged (a keepalive, a pure acknowledgement).
    last_ack_at: Tick,
    /// At most `MAX_TRACKED_PACKETS` (the connection forgets older packets).
    packets_in_flight: u32,
    /// Packets acknowledged and given up as lost in the current round.
    round_acked: u32,
    round_lost: u32,
    /// While silent: probes sent so far (each waits twice as long as the one before, up to
    /// the resend backoff cap).
    probes: u32,
    mode: Mode,
    /// Delivery rounds: a round ends when a packet sent after its start is acknowledged. The
    /// current round's slot in `bw_rounds`.
    round_slot: u8,
    full_bw_rounds: u8,
    /// The phase of the probing cycle (an index into `CYCLE_PERCENT`).
    cycle: u8,
    /// No acknowledgement came for a resend timeout while a packet that asked for a prompt
    /// one was in flight: the path may be down. Until an acknowledgement comes, the window is
    /// the minimum and new messages go out only as probes, one packet per `probe_at`.
    silent: bool,
}

impl Congestion {
    pub(crate) fn new(config: &EndpointConfig, now: Tick) -> Self {
        let start = now;
        let params = Params::of(config);
        let mut cc = Self {
            mode: Mode::Startup,
            bw_rounds: [0; BW_ROUNDS as usize],
            bw: 0,
            min_rtt: None,
            min_rtt_at: start,
            round_slot: 0,
            round_end_delivered: 0,
            full_bw: 0,
            full_bw_rounds: 0,
            round_acked: 0,
            round_lost: 0,
            cycle: 2,
            cycle_start: start,
            delivered: 0,
            delivered_at: start,
            first_sent_at: start,
            app_limited_until: 0,
            pacing_rate: 0,
            // The initial window may go out at once, as TCP's does.
            pace_at: start,
            cwnd: params.initial_cwnd,
            bytes_in_flight: 0,
            packets_in_flight: 0,
            silent: false,
            probe_at: start,
            probes: 0,
            silence_ended: None,
            last_ack_at: start,
        };
        cc.pacing_rate = cc.startup_rate(config, &params);
        // A burst of the initial window is allowed from the start.
        cc.pace_at = now - cc.pacing_time(params.initial_cwnd);
        cc
    }

    /// The pacing rate before any delivery sample: the initial window per initial round trip,
    /// with the startup gain.
    fn startup_rate(&self, config: &EndpointConfig, params: &Params) -> u64 {
        let rtt = nanos(self.min_rtt.unwrap_or(config.initial_rtt)).max(1);
        gain(mul_div(params.initial_cwnd, NANOS_PER_SEC, rtt), STARTUP_GAIN_PERCENT).max(1)
    }

    /// How long sending `bytes` takes at the pacing rate.
    fn pacing_time(&self, bytes: u64) -> Duration {
        // The rate is kept at 1 or more; `max` only makes this function safe on its own.
        Duration::from_nanos(mul_div(bytes, NANOS_PER_SEC, self.pacing_rate.max(1)))
    }

    /// Whether the window has room for another packet (one may overshoot it).
    pub(crate) fn window_open(&self, config: &EndpointConfig) -> bool {
        self.bytes_in_flight < self.window(config)
            && (self.packets_in_flight as usize) < config.max_in_flight_packets
    }

    /// When new messages (as opposed to resends) may next go out, if the window has room: when
    /// the pacer allows, and while the path is silent, no sooner than the next probe.
    pub(crate) fn new_allowed_at(&self, config: &EndpointConfig) -> Option<Tick> {
        if !self.window_open(config) {
            None
        } else if self.silent {
            Some(self.pace_at.max(self.probe_at))
        } else {
            Some(self.pace_at)
        }
    }

    /// Whether the path is taken as silent (see [`Congestion::on_probe`]).
    pub(crate) fn is_silent(&self) -> bool {
        self.silent
    }

    /// A packet with new messages went out while the path is silent: it is a probe, and asks
    /// for a prompt acknowledgement (as QUIC's probe timeout sends new data). The next may go
    /// after `rto`, doubled per probe, at most `max(cap, rto)`: the cap of resend backoff, so
    /// a flow without reliable data finds a path that came back as soon as resends would.
    pub(crate) fn on_probe(&mut self, now: Tick, rto: Duration, cap: Duration) {
        let wait = rto.saturating_mul(1 << self.probes.min(16)).min(cap.max(rto));
        self.probe_at = now + wait;
        self.probes = self.probes.saturating_add(1);
    }

    /// The peer acknowledged a packet newer than any it had acknowledged before (with messages
    /// or not): the path works both ways, whatever else was lost.
    pub(crate) fn on_answer(&mut self, now: Tick) {
        self.last_ack_at = now;
        self.end_silence(now);
    }

    fn end_silence(&mut self, now: Tick) {
        if self.silent {
            self.silent = false;
            self.silence_ended = Some(now);
        }
    }

    /// When the pacer next lets a packet carrying messages go out (may be in the past).
    pub(crate) fn pace_at(&self) -> Tick {
        self.pace_at
    }

    /// Units sent before this instant have their resend backoff undone (the path came back).
    pub(crate) fn silence_ended(&self) -> Option<Tick> {
        self.silence_ended
    }

    pub(crate) fn bytes_in_flight(&self) -> u64 {
        self.bytes_in_flight
    }

    pub(crate) fn packets_in_flight(&self) -> usize {
        self.packets_in_flight as usize
    }

    pub(crate) fn window(&self, config: &EndpointConfig) -> u64 {
        if self.silent { Params::of(config).min_cwnd } else { self.cwnd }
    }

    pub(crate) fn pacing_rate(&self) -> u64 {
        self.pacing_rate
    }

    pub(crate) fn bandwidth(&self) -> u64 {
        self.bw
    }

    /// A packet carrying messages of `size` bytes goes out now. `app_limited`: it takes all
    /// there was to send (and the window and pacer did not hold anything back). Returns the
    /// packet's record and whether it counts as application-limited.
    pub(crate) fn on_send(
        &mut self,
        config: &EndpointConfig,
        now: Tick,
        size: u16,
        app_limited: bool,
    ) -> (SendRecord, bool) {
        let size = u64::from(size);
        if self.packets_in_flight == 0 {
            // Nothing in flight: intervals start now, not at the last acknowledgement.
            self.first_sent_at = now;
            self.delivered_at = now;
        }
        if app_limited {
            self.app_limited_until = (self.delivered + self.bytes_in_flight + size).max(1);
        }
        let record = SendRecord {
            delivered: self.delivered,
            delivered_at: self.delivered_at,
            first_sent_at: self.first_sent_at,
        };
        self.bytes_in_flight += size;
        self.packets_in_flight += 1;
        // The pacer: time accumulates while idle, up to a burst (the whole initial window
        // before the first acknowledgement, as TCP sends its initial window at once).
        let params = Params::of(config);
        let burst_bytes = if self.delivered == 0 {
            params.initial_cwnd
        } else {
            PACING_BURST_PACKETS * params.mss
        };
        let burst = PACING_BURST.max(self.pacing_time(burst_bytes));
        let floor = now - burst;
        let pace_at = self.pace_at.max(floor) + self.pacing_time(size);
        self.pace_at = pace_at;
        (record, self.app_limited_until != 0)
    }

    /// A packet of `size` bytes too old to track left the flight unacknowledged.
    pub(crate) fn on_forgotten(&mut self, size: u16) {
        self.leave_flight(size);
    }

    /// A packet of `size` bytes sent at `sent_at` was given up as lost.
    /// `unanswered`: it asked for a prompt acknowledgement and got none within the resend
    /// timeout; if no other acknowledgement came since it was sent either, the path is silent.
    pub(crate) fn on_lost(&mut self, size: u16, sent_at: Tick, unanswered: bool) {
        self.leave_flight(size);
        self.round_lost = self.round_lost.saturating_add(1);
        // A whole resend timeout without a single acknowledgement while data was in flight:
        // the path (or the peer) is down, not merely lossy.
        if unanswered && sent_at >= self.last_ack_at && !self.silent {
            self.silent = true;
            // The first probe may go at once: this packet's resend timeout has passed.
            self.probe_at = sent_at;
            self.probes = 0;
        }
    }

    fn leave_flight(&mut self, size: u16) {
        self.bytes_in_flight = self.bytes_in_flight.saturating_sub(u64::from(size));
        self.packets_in_flight = self.packets_in_flight.saturating_sub(1);
    }

    /// A packet was acknowledged; `in_flight`: it had not been given up as lost (a late ack of
    /// one that was still counts as delivered). `sample` collects the acknowledgements of one
    /// incoming packet, for [`Congestion::on_acks_done`].
    pub(crate) fn on_ack(
        &mut self,
        now: Tick,
        sent: &Sent,
        in_flight: bool,
        sample: &mut RateSample,
    ) {
        if in_flight {
            self.leave_flight(sent.size);
        }
        self.delivered += u64::from(sent.size);
        self.delivered_at = now;
        self.round_acked = self.round_acked.saturating_add(1);
        self.last_ack_at = now;
        self.end_silence(now);
        let record = &sent.record;
        let newest = sample.0.is_none_or(|s| record.delivered >= s.prior_delivered);
        if newest {
            let sent_at = sent.sent_at;
            sample.0 = Some(Sample {
                prior_delivered: record.delivered,
                prior_at: record.delivered_at,
                send_elapsed: sent_at.saturating_duration_since(record.first_sent_at),
                app_limited: sent.app_limited,
            });
            self.first_sent_at = sent.sent_at;
        }
    }

    /// A round-trip sample: the newest packet an acknowledgement names, prompt or lazy (a lazy
    /// one includes the receiver's wait, so it can only overstate; the minimum is what counts).
    pub(crate) fn on_rtt(&mut self, now: Tick, rtt: Duration) {
        let since = now.saturating_duration_since(self.min_rtt_at);
        let expired = since > MIN_RTT_LIFETIME;
        if self.min_rtt.is_none_or(|min| rtt <= min) || expired {
            self.min_rtt = Some(rtt);
            self.min_rtt_at = now;
        }
    }

    /// The acknowledgements of one incoming packet are processed: take the rate sample and
    /// update the model, the pacing rate and the window.
    pub(crate) fn on_acks_done(&mut self, config: &EndpointConfig, now: Tick, sample: RateSample) {
        let Some(sample) = sample.0 else { return };
        if self.app_limited_until != 0 && self.delivered > self.app_limited_until {
            self.app_limited_until = 0;
        }
        // A new round starts when a packet sent after the previous round's end is acknowledged.
        let new_round = sample.prior_delivered >= self.round_end_delivered;
        let lost = self.round_lost;
        let sent = self.round_acked.saturating_add(lost);
        if self.mode == Mode::Startup
            && lost >= STARTUP_LOSSES
            && ((lost >= STARTUP_HEAVY_LOSSES
                && lost.saturating_mul(STARTUP_HEAVY_LOSS_RATIO) > sent)
                || (self.full_bw_rounds >= 1 && lost.saturating_mul(STARTUP_LOSS_RATIO) > sent))
        {
            self.mode = Mode::Drain;
        }
        if new_round {
            self.round_acked = 0;
            self.round_lost = 0;
            self.round_slot = (self.round_slot + 1) % BW_ROUNDS;
            self.round_end_delivered = self.delivered;
            self.bw_rounds[usize::from(self.round_slot)] = 0;
        }
        let ack_elapsed = now.saturating_duration_since(sample.prior_at);
        let interval = nanos(sample.send_elapsed.max(ack_elapsed));
        let bytes = self.delivered - sample.prior_delivered;
        if interval > 0 && bytes > 0 {
            let rate = mul_div(bytes, NANOS_PER_SEC, interval);
            if !sample.app_limited || rate > self.bw {
                let slot = &mut self.bw_rounds[usize::from(self.round_slot)];
                *slot = (*slot).max(rate);
                self.bw = self.bw_rounds.iter().copied().max().unwrap_or(0);
            }
            if new_round && !sample.app_limited {
                self.check_full_bandwidth();
            }
        }
        self.advance_mode(config, now);
        self.update_control(config);
    }

    fn check_full_bandwidth(&mut self) {
        if self.mode != Mode::Startup {
            return;
        }
        if self.bw >= gain(self.full_bw, 125) {
            self.full_bw = self.bw;
            self.full_bw_rounds = 0;
            return;
        }
        self.full_bw_rounds += 1;
        if self.full_bw_rounds >= FULL_BW_ROUNDS {
            self.mode = Mode::Drain;
        }
    }

    /// The bandwidth-delay product (with the initial round trip until one is measured).
    fn bdp(&self, config: &EndpointConfig) -> u64 {
        let rtt = self.min_rtt.unwrap_or(config.initial_rtt);
        mul_div(self.bw, nanos(rtt), NANOS_PER_SEC)
    }

    fn advance_mode(&mut self, config: &EndpointConfig, now: Tick) {
        match self.mode {
            Mode::Startup => {}
            Mode::Drain => {
                if self.bytes_in_flight <= self.bdp(config) {
                    self.mode = Mode::ProbeBandwidth;
                    self.cycle = 2;
                    self.cycle_start = now;
                }
            }
            Mode::ProbeBandwidth => {
                let phase = self.min_rtt.unwrap_or(config.initial_rtt);
                let since = now.saturating_duration_since(self.cycle_start);
                if since >= phase {
                    self.cycle = (self.cycle + 1) % CYCLE_PHASES;
                    self.cycle_start = now;
                }
            }
        }
    }

    fn update_control(&mut self, config: &EndpointConfig) {
        let params = Params::of(config);
        if self.bw == 0 {
            self.pacing_rate = self.startup_rate(config, &params);
            return;
        }
        let (pacing_gain, cwnd_gain) = match self.mode {
            Mode::Startup => (STARTUP_GAIN_PERCENT, STARTUP_GAIN_PERCENT),
            // 1 / 2.89, the inverse of startup's gain.
            Mode::Drain => (35, STARTUP_GAIN_PERCENT),
            Mode::ProbeBandwidth => (CYCLE_PERCENT[usize::from(self.cycle)], CWND_GAIN_PERCENT),
        };
        let rate = gain(self.bw, pacing_gain);
        // Never below a packet per initial round trip, so a stale low estimate recovers.
        // (At least 1 byte/s: with an initial round trip of more seconds than a packet has
        // bytes, which validates, the floor is 0, and so is a drain gain of a tiny estimate.)
        self.pacing_rate = if self.mode == Mode::Startup {
            rate.max(self.startup_rate(config, &params))
        } else {
            rate.max(params.mss * NANOS_PER_SEC / nanos(config.initial_rtt).max(1)).max(1)
        };
        // Acknowledgements may be held for up to `ack_delay` (or bunched by a receiver that
        // runs in bursts): the window adds what the path delivers in that time.
        let allowance = mul_div(self.bw, nanos(config.ack_delay), NANOS_PER_SEC);
        let cwnd = gain(self.bdp(config), cwnd_gain).saturating_add(allowance);
        self.cwnd = cwnd.max(params.min_cwnd);
    }
}

/// `value × percent / 100`, saturating.
fn gain(value: u64, percent: u64) -> u64 {
    mul_div(value, percent, 100)
}

/// `a × b / c` rounded down, saturating at `u64::MAX`; `c` must not be 0. In 64 bits when the
/// product fits, as it does on every packet of a real path: a 128-bit division is a library
/// call several times slower, and these run on every packet sent and acknowledged.
pub(crate) fn mul_div(a: u64, b: u64, c: u64) -> u64 {
    match a.checked_mul(b) {
        Some(product) => product / c,
        None => u64::try_from(u128::from(a) * u128::from(b) / u128::from(c)).unwrap_or(u64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::{Congestion, Mode, RateSample, Sent, mul_div};
    use crate::EndpointConfig;
    use crate::proto::time::Tick;

    proptest! {
        /// The 64-bit shortcut gives what the 128-bit computation gives, saturated, whether
        /// or not the product fits.
        #[test]
        fn mul_div_matches_the_wide_computation(
            a in prop_oneof![any::<u64>(), 0u64..1 << 34],
            b in prop_oneof![any::<u64>(), Just(1_000_000_000u64), 0u64..1 << 34],
            c in 1u64..,
        ) {
            let wide = u128::from(a) * u128::from(b) / u128::from(c);
            prop_assert_eq!(mul_div(a, b, c), u64::try_from(wide).unwrap_or(u64::MAX));
        }
    }

    #[test]
    fn the_pacing_rate_never_reaches_zero_with_a_configuration_that_validates() {
        // An initial round trip of more seconds than a packet has bytes (an hour, 1200-byte
        // packets) puts the floor of the pacing rate, a packet per initial round trip, at 0
        // bytes/s; a bandwidth estimate of 2 bytes/s gives 0 at the drain gain. The next
        // packet's pacing time divided by zero.
        let config = EndpointConfig {
            initial_rtt: Duration::from_secs(3600),
            disconnect_timeout: Duration::from_secs(3600),
            ..EndpointConfig::default()
        };
        config.validate().unwrap();
        let t0 = Tick::EPOCH;
        let mut cc = Congestion::new(&config, t0);
        let sent_at = t0;
        let records: Vec<_> = (0..10)
            .map(|_| {
                let (record, app_limited) = cc.on_send(&config, t0, 100, false);
                Sent { record, sent_at, size: 100, app_limited }
            })
            .collect();
        // More in flight than the estimate's bandwidth-delay product: draining takes a while.
        for _ in 0..80 {
            let _ = cc.on_send(&config, t0, 100, false);
        }
        // Nine of the first ten lost in the first round (heavy loss): startup ends.
        for sent in &records[1..] {
            cc.on_lost(sent.size, sent.sent_at, false);
        }
        // The first acknowledged 50 s on: 100 bytes in 50 s.
        let later = t0 + Duration::from_secs(50);
        let mut sample = RateSample::default();
        cc.on_ack(later, &records[0], true, &mut sample);
        cc.on_acks_done(&config, later, sample);
        assert_eq!((cc.mode, cc.bandwidth()), (Mode::Drain, 2));
        assert!(cc.pacing_rate() >= 1, "pacing rate {}", cc.pacing_rate());
        let _ = cc.on_send(&config, later, 100, false);
    }
}
