//! Snapshot interpolation: smooth motion on a client from states that arrive late, out of
//! order or not at all.
//!
//! The server sends an object's state at its sync rate (every *send interval*), stamped with
//! the server time it describes. A client does not show the newest state it has: it shows the
//! past, a little behind, where it holds states on both sides of the moment it renders, and
//! blends between them. A [`SnapshotBuffer`] does this for one value (a position, a pose, any
//! [`Interpolate`] type), sans-IO: states go in with [`insert`](SnapshotBuffer::insert), the
//! value to render comes out of [`sample`](SnapshotBuffer::sample), and time is an input.
//!
//! How far behind is the **delay**, adaptive: `(1 + survive_losses) × send interval + 2σ`,
//! where σ is the measured jitter of arrivals (how much later than usual each state arrives),
//! and the send interval is widened to the measured spacing of states when they come further
//! apart than it.
//! With the default of surviving 2 lost states in a row this is Gaffer's rule of thumb (three
//! intervals: 150 ms at 20 Hz, 100 ms at 30 Hz) widened by what the link actually does.
//!
//! The render clock (in server time) only moves forward: each sample advances it by the local
//! time elapsed, a little faster (up to `catch_up`) when it has fallen behind its target and a
//! little slower (down to `slow_down`) when it is ahead, so the game never sees time jump
//! back; after a long stall it jumps forward to the target. Past the newest state it
//! extrapolates for at most `max_extrapolation`, then holds. Two states further apart than
//! `teleport_distance` are not blended: the value jumps when the later one's time comes.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use sturnus_object::interpolation::{InterpolationConfig, SnapshotBuffer};
//!
//! # let start = Instant::now();
//! let mut buffer = SnapshotBuffer::<[f32; 2]>::new(InterpolationConfig::for_send_interval(
//!     Duration::from_millis(50),
//! ));
//! // States of an object moving along x at 1 unit per second, arriving 30 ms after they were
//! // taken on the server.
//! for i in 0..10u32 {
//!     let server_time = Duration::from_millis(50) * i;
//!     let arrival = start + server_time + Duration::from_millis(30);
//!     buffer.insert(arrival, server_time, [server_time.as_secs_f32(), 0.0]);
//! }
//! let now = start + Duration::from_millis(480);
//! let [x, _] = buffer.sample(now).unwrap();
//! // Rendered about a delay behind the newest state, and moving.
//! assert!(x > 0.0 && x < 0.45);
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A value that can be blended between two states (and extrapolated beyond them).
pub trait Interpolate: Clone {
    /// The value a fraction `t` of the way from `self` to `to` (`t` may be above 1 to
    /// extrapolate, by at most the buffer's bound).
    fn interpolate(&self, to: &Self, t: f32) -> Self;

    /// How far apart two values are, for teleport detection (a distance in the value's own
    /// units; return 0 for types where it makes no sense).
    fn distance(&self, to: &Self) -> f32;
}

impl Interpolate for f32 {
    fn interpolate(&self, to: &Self, t: f32) -> Self {
        self + (to - self) * t
    }
    fn distance(&self, to: &Self) -> f32 {
        (to - self).abs()
    }
}

impl<const N: usize> Interpolate for [f32; N] {
    fn interpolate(&self, to: &Self, t: f32) -> Self {
        std::array::from_fn(|i| self[i] + (to[i] - self[i]) * t)
    }
    fn distance(&self, to: &Self) -> f32 {
        self.iter().zip(to).map(|(a, b)| (b - a) * (b - a)).sum::<f32>().sqrt()
    }
}

/// A position, an orientation (a unit quaternion `x, y, z, w`) and a scale: what a
/// transform interpolates. Orientations are blended along the shorter arc (normalised linear
/// interpolation, which for the small steps between two states matches a slerp closely).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pose {
    /// Where.
    pub position: [f32; 3],
    /// Which way it faces: a unit quaternion `x, y, z, w`.
    pub rotation: [f32; 4],
    /// How large.
    pub scale: [f32; 3],
}

impl Default for Pose {
    fn default() -> Self {
        Self { position: [0.0; 3], rotation: [0.0, 0.0, 0.0, 1.0], scale: [1.0; 3] }
    }
}

impl Interpolate for Pose {
    fn interpolate(&self, to: &Self, t: f32) -> Self {
        let (a, mut b) = (self.rotation, to.rotation);
        // q and -q are the same orientation: blend towards the nearer one.
        if a.iter().zip(&b).map(|(x, y)| x * y).sum::<f32>() < 0.0 {
            b = b.map(|c| -c);
        }
        let blended = a.interpolate(&b, t);
        let norm = blended.iter().map(|c| c * c).sum::<f32>().sqrt();
        let rotation = if norm > f32::EPSILON { blended.map(|c| c / norm) } else { b };
        Self {
            position: self.position.interpolate(&to.position, t),
            rotation,
            scale: self.scale.interpolate(&to.scale, t),
        }
    }
    fn distance(&self, to: &Self) -> f32 {
        self.position.distance(&to.position)
    }
}

/// The settings of a [`SnapshotBuffer`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InterpolationConfig {
    /// How often the sender sends a state.
    pub send_interval: Duration,
    /// How many lost states in a row the delay hides (Gaffer's rule: 2).
    pub survive_losses: u32,
    /// How much faster than real time the render clock may run to catch up (0.05: 5 %).
    pub catch_up: f32,
    /// How much slower than real time it may run when ahead (0.05: 5 %).
    pub slow_down: f32,
    /// How far past the newest state the value is extrapolated before it holds.
    pub max_extrapolation: Duration,
    /// Two states further apart than this are not blended (a teleport, a respawn): the value
    /// jumps. `None`: always blend.
    pub teleport_distance: Option<f32>,
    /// How many states are kept (older ones are dropped as new ones arrive).
    pub capacity: usize,
}

impl InterpolationConfig {
    /// The defaults for states sent every `send_interval`: survive 2 losses, 5 % catch-up and
    /// slow-down, extrapolate for one interval, no teleport detection, 32 states.
    pub fn for_send_interval(send_interval: Duration) -> Self {
        Self {
            send_interval,
            survive_losses: 2,
            catch_up: 0.05,
            slow_down: 0.05,
            max_extrapolation: send_interval,
            teleport_distance: None,
            capacity: 32,
        }
    }
}

/// The states of one value, and the clock it is rendered by. See the [module
/// documentation](self).
#[derive(Debug, Clone)]
pub struct SnapshotBuffer<T> {
    config: InterpolationConfig,
    /// States by server time, oldest first.
    states: VecDeque<(Duration, T)>,
    /// When the first state arrived (the origin of local time).
    origin: Option<Instant>,
    /// The smoothed offset between arrival (local time since `origin`) and server time, in
    /// seconds: the latency as this buffer sees it, plus the clocks' difference.
    offset: f64,
    /// The smoothed absolute deviation of that offset (jitter), in seconds.
    jitter: f64,
    /// The render clock, in server time (seconds), and the local instant it was set.
    render: Option<(f64, Instant)>,
    /// The server time of what was last shown (seconds): states no newer are dropped.
    floor: f64,
    /// States that arrived older than the render clock, or repeated: dropped.
    late: u64,
    /// The spacing of consecutive states in server time, in seconds (the 75th percentile of
    /// the gaps, at least the send interval; 0: not measured yet): a sender that sends less
    /// often than its send interval (a byte budget that makes a value wait its turn) widens
    /// the delay.
    spacing: f64,
}

/// How fast the offset and jitter estimates follow new arrivals (an EMA weight).
const SMOOTHING: f64 = 1.0 / 16.0;

impl<T: Interpolate> SnapshotBuffer<T> {
    /// An empty buffer.
    pub fn new(config: InterpolationConfig) -> Self {
        Self {
            // Allocated at the first state: a value that never moves costs no buffer.
            states: VecDeque::new(),
            config,
            origin: None,
            offset: 0.0,
            jitter: 0.0,
            render: None,
            floor: 0.0,
            late: 0,
            spacing: 0.0,
        }
    }

    /// The settings.
    pub fn config(&self) -> &InterpolationConfig {
        &self.config
    }

    /// The delay the buffer renders behind the newest arrivals: `(1 + survive_losses) ×
    /// interval + 2 × jitter`, where the interval is the send interval or, if states come
    /// further apart (a sender's byte budget making them wait), the measured spacing.
    pub fn delay(&self) -> Duration {
        let intervals = f64::from(1 + self.config.survive_losses);
        let interval = self.config.send_interval.as_secs_f64().max(self.spacing);
        let seconds = intervals * interval + 2.0 * self.jitter;
        Duration::from_secs_f64(seconds.max(0.0))
    }

    /// The measured jitter of arrivals (a smoothed mean deviation).
    pub fn jitter(&self) -> Duration {
        Duration::from_secs_f64(self.jitter.max(0.0))
    }

    /// States that arrived too late to be shown (older than what is rendered) or twice.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// How many states are held.
    pub fn len(&self) -> usize {
        self.states.len()
    }

    /// Whether no state is held.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// The server time being rendered, once sampling has started.
    pub fn render_time(&self) -> Option<Duration> {
        self.render.map(|(at, _)| Duration::from_secs_f64(at.max(0.0)))
    }

    fn local_seconds(&self, now: Instant) -> f64 {
        self.origin.map_or(0.0, |origin| now.saturating_duration_since(origin).as_secs_f64())
    }

    /// Adds the state the server had at `server_time`, which arrived at `now`. A state older
    /// than what is being rendered, or with a server time already held, is dropped and
    /// counted ([`late`](Self::late)); the oldest state goes when the buffer is full.
    pub fn insert(&mut self, now: Instant, server_time: Duration, value: T) {
        if self.origin.is_none() {
            self.origin = Some(now);
        }
        if self.states.capacity() == 0 {
            self.states.reserve_exact(self.config.capacity.max(2));
        }
        let server = server_time.as_secs_f64();
        let sample = self.local_seconds(now) - server;
        if self.states.is_empty() && self.render.is_none() {
            self.offset = sample;
        } else {
            let deviation = (sample - self.offset).abs();
            self.jitter += (deviation - self.jitter) * SMOOTHING;
            self.offset += (sample - self.offset) * SMOOTHING;
        }
        if self.render.is_some() && server <= self.floor {
            self.late += 1;
            return;
        }
        // How far apart states come, in server time: a running estimate of the 75th
        // percentile of the gaps, never below the send interval. Lost states (gaps of a whole
        // number of intervals, now and then) leave it at the interval; a sender that makes
        // states wait their turn raises it. A gap of more than eight intervals is a rest.
        if let Some((newest, _)) = self.states.back() {
            let gap = server - newest.as_secs_f64();
            let interval = self.config.send_interval.as_secs_f64();
            if gap > 0.0 && gap <= 8.0 * interval {
                let step = interval / 8.0;
                let spacing = self.spacing.max(interval);
                let moved =
                    if gap > spacing { spacing + 0.75 * step } else { spacing - 0.25 * step };
                self.spacing = moved.clamp(interval, 8.0 * interval);
            }
        }
        // Keep the states in server-time order (they may arrive out of order).
        let at = self.states.partition_point(|(t, _)| *t < server_time);
        if self.states.get(at).is_some_and(|(t, _)| *t == server_time) {
            self.late += 1;
            return;
        }
        if self.states.len() >= self.config.capacity.max(2) {
            if at == 0 {
                self.late += 1;
                return;
            }
            self.states.pop_front();
            self.states.insert(at - 1, (server_time, value));
        } else {
            self.states.insert(at, (server_time, value));
        }
    }

    /// Repeats the newest state at `server_time` (if later), leaving the delay's estimates
    /// alone: the value stood still until then. A sender that sends nothing while a value
    /// rests calls for it before the first state after the rest, or the blend would spread
    /// the new motion over the whole rest.
    pub fn hold(&mut self, server_time: Duration) {
        let Some((newest, value)) = self.states.back() else { return };
        if server_time <= *newest
            || (self.render.is_some() && server_time.as_secs_f64() <= self.floor)
        {
            return;
        }
        let value = value.clone();
        if self.states.len() >= self.config.capacity.max(2) {
            self.states.pop_front();
        }
        self.states.push_back((server_time, value));
    }

    /// Advances the render clock to `now` and returns the value to show, or `None` before
    /// the first state.
    pub fn sample(&mut self, now: Instant) -> Option<T> {
        let (newest, _) = self.states.back()?;
        let newest = newest.as_secs_f64();
        let target = self.local_seconds(now) - self.offset - self.delay().as_secs_f64();
        let interval = self.config.send_interval.as_secs_f64();
        let at = match self.render {
            None => target.min(newest),
            Some((at, then)) => {
                let elapsed = now.saturating_duration_since(then).as_secs_f64();
                let behind = target - at;
                let rate = if behind > interval * 0.25 {
                    1.0 + f64::from(self.config.catch_up)
                } else if behind < -interval * 0.25 {
                    1.0 - f64::from(self.config.slow_down)
                } else {
                    1.0
                };
                let mut next = at + elapsed * rate;
                if behind > 4.0 * interval + self.delay().as_secs_f64() {
                    // A long stall: jump (forward only) rather than crawl.
                    next = next.max(target);
                }
                next
            }
        };
        self.render = Some((at, now));
        // Before the oldest state held, that state is what is shown: an older one arriving
        // later must not take its place (it is dropped as late).
        self.floor = at.max(self.states[0].0.as_secs_f64());
        // Forget states the render clock has passed, keeping the one before it.
        while self.states.len() > 2 && self.states[1].0.as_secs_f64() <= at {
            self.states.pop_front();
        }
        Some(self.value_at(at))
    }

    /// The value at server time `at` (seconds).
    fn value_at(&self, at: f64) -> T {
        let first = &self.states[0];
        if self.states.len() == 1 || at <= first.0.as_secs_f64() {
            return first.1.clone();
        }
        let after = self.states.partition_point(|(t, _)| t.as_secs_f64() <= at);
        let (from, to) = if after >= self.states.len() {
            // Past the newest state: extrapolate from the last two, for a bounded time.
            let n = self.states.len();
            (&self.states[n - 2], &self.states[n - 1])
        } else {
            (&self.states[after - 1], &self.states[after])
        };
        let (t0, t1) = (from.0.as_secs_f64(), to.0.as_secs_f64());
        let span = t1 - t0;
        if span <= 0.0 {
            return to.1.clone();
        }
        if self.config.teleport_distance.is_some_and(|d| from.1.distance(&to.1) > d) {
            return if at >= t1 { to.1.clone() } else { from.1.clone() };
        }
        let limit = t1 + self.config.max_extrapolation.as_secs_f64();
        let t = (at.min(limit) - t0) / span;
        // f64 → f32: a blend factor, where f32's precision is plenty.
        #[expect(clippy::cast_possible_truncation, reason = "a blend factor near 0..1")]
        let t = t as f32;
        from.1.interpolate(&to.1, t)
    }
}
