//! `NetworkTransform`: an object's position, rotation and scale, synchronised as compact
//! snapshots and shown interpolated.
//!
//! A [`NetworkTransform`] is a behaviour: put it in an object's behaviours like any other
//! (`server.spawn(CUBE, (NetworkTransform::new(config), Cube::default()), None)`), and
//! register the same on clients (`client.register_prefab(CUBE, move || (NetworkTransform::new(config), Cube::default()))`).
//! Both sides must build it with the same [`TransformConfig`]: the configuration is not sent.
//! For a runnable example, see the `swarm` example (`examples/src/bin/swarm.rs`:
//! `cargo run -p sturnus-examples --bin swarm -- --link loss=10%,jitter=20ms`): 40 drones with
//! a 2D transform, some with a child turret, drawn interpolated in the terminal.
//!
//! - **The server** (or the owner, see [`Authority::Owner`]) sets the pose
//!   ([`set_pose`](NetworkTransform::set_pose), [`set_position`](NetworkTransform::set_position),
//!   …). Every [`TransformSyncConfig::interval`](crate::TransformSyncConfig) the manager
//!   quantises the transforms that changed; a change smaller than the thresholds is not one.
//! - **Each observer** gets the changed transforms in one snapshot message per tick on an
//!   unreliable channel, each encoded **against the newest state that observer has
//!   acknowledged** (the Quake 3 / Gaffer model): an object at rest costs nothing, a moving
//!   one a few bits per axis, and nothing is resent — a lost snapshot is made good by the next
//!   one, encoded against what did arrive. A **priority accumulator** fills each snapshot up
//!   to a per-connection byte budget: objects that waited longer, are nearer the player's
//!   position ([`ServerObjectManager::set_player_position`](crate::ServerObjectManager::set_player_position))
//!   or are flagged [important](NetworkTransform::set_important) go first, so bandwidth stays
//!   under the budget whatever the scene and no object starves.
//! - **A client** puts each state in a [`SnapshotBuffer`] stamped with the server time it
//!   describes; [`sample`](NetworkTransform::sample) gives the pose to render, a little in the
//!   past, blended between states (see [`interpolation`](crate::interpolation)).
//!
//! # On the wire
//!
//! A snapshot is one `Snapshot` message on [`TransformSyncConfig::channel`](crate::TransformSyncConfig)
//! (an `Unreliable` one by default): a header — its sequence in the observer's stream, the id
//! of the observer's acknowledgement its deltas are against (0: none), the server time in
//! milliseconds — then the entries, bit-packed (lowest bit first) after a 12-bit count, sorted
//! by object id. An entry is:
//!
//! | field | bits |
//! |---|---|
//! | object id, as the gap from the previous entry's | `0` (gap 1) · `10` + 4 (gap < 16) · `110` + 8 (gap < 272) · `111` + 32 (the id) |
//! | behaviour index | `0` (the previous entry's) · `1` + 8 |
//! | delta | 1: against the acknowledged state, or 0: whole |
//! | rested | 1: the object stood still before this state (a client holds its old pose until just before it, rather than blend across the rest; a gap alone could be a loss) |
//! | whole state | each synchronised component's codes at their widths: position axes, then the rotation (smallest three: 2 + 3 × bits; 2D: the angle's code), then the scale |
//! | delta state | per component a "changed" bit; a changed position or scale then gives each axis's code difference, and a changed rotation a "same largest component" bit followed by the three differences (or, if the largest changed, the whole 2 + 3 × bits) |
//!
//! A code difference is zigzag-coded in the smallest of four classes: `0` + 3 bits (±4),
//! `10` + 6 bits (±36), `110` + 10 bits (±548), or `111` + the code whole. A cube at rest and
//! acknowledged is in no snapshot; a moving one costs its id (1–11 bits), 3 bits, 3 flags and a
//! few bits per changed axis — the `cubes` workload of `sturnus-bench` measures it.
//!
//! The client answers the snapshots of each of its updates with one `SnapshotAck` on the same
//! channel: its own id, the newest snapshot received and a bitfield of the 64 before, followed by
//! the transforms whose delta named a state it does not hold (sent whole next). The server
//! encodes a delta against a transform's newest state in a snapshot that acknowledgement lists —
//! and the client, which kept the acknowledgements it sent, resolves the same one. A snapshot
//! neither acknowledged nor overtaken by an acknowledged one within two round trips is taken as
//! lost, and what it carried is sent again (as a delta against what did arrive).
//!
//! An owner-authoritative transform's owner sends `TransformInput` messages (the object, the
//! behaviour, a sequence, then the state whole): unreliably while it moves, then once on the
//! objects' reliable channel when it comes to rest. The server applies an input newer than the
//! last one applied if the sender owns the object and it moved no faster than
//! [`TransformConfig::max_speed`]; otherwise it answers with a `TransformCorrection` holding its
//! own state, and counts the refusal.
//!
//! See the `swarm` example for a runnable scene with interpolated rendering.
//!
//! ```
//! use sturnus_object::transform::{NetworkTransform, TransformConfig};
//!
//! // A 3D world of 512 × 64 × 512 m at 2 mm, rotations at 9 bits per component.
//! let config = TransformConfig::three_d([-256.0, 0.0, -256.0], [256.0, 64.0, 256.0], 1.0 / 512.0)?;
//! let mut transform = NetworkTransform::new(config);
//! transform.set_position([1.0, 2.0, 3.0]);
//! assert_eq!(transform.pose().position, [1.0, 2.0, 3.0]);
//! # Ok::<(), sturnus_object::quantize::QuantizeError>(())
//! ```

use std::any::Any;
use std::time::{Duration, Instant};

use crate::interpolation::{InterpolationConfig, Pose, SnapshotBuffer};
use crate::quantize::{BitError, BitReader, BitWriter, QuantizeError, Quantizer, SmallestThree};
use crate::{ReadError, RpcContext, RpcId, RpcInfo, SyncSettings};

/// Which position axes are synchronised, and how finely.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum PositionSync {
    /// Not synchronised.
    Off,
    /// 2D: `x` and `y` (z stays 0).
    Xy([Quantizer; 2]),
    /// 3D: `x`, `y` and `z`.
    Xyz([Quantizer; 3]),
}

/// How the rotation is synchronised.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum RotationSync {
    /// Not synchronised.
    Off,
    /// 2D: an angle about the z axis, in radians, quantised over `[-π, π]`.
    Angle(Quantizer),
    /// 3D: a quaternion by "smallest three".
    Quaternion(SmallestThree),
}

/// How the scale is synchronised.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum ScaleSync {
    /// Not synchronised.
    Off,
    /// One factor for all three axes.
    Uniform(Quantizer),
    /// One factor per axis.
    Xyz([Quantizer; 3]),
}

/// Who decides where a transform is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Authority {
    /// The server sets it; clients only show it. The default.
    #[default]
    Server,
    /// The object's owner sets it on its client, which sends it to the server at the
    /// transform's send interval; the server checks each input (the owner's, a known object,
    /// a decodable state, at most [`TransformConfig::max_speed`]) and applies it, or refuses it
    /// and corrects the owner with the server's state. Other observers get it from the server
    /// like any transform.
    Owner,
}

/// How a [`NetworkTransform`] is synchronised: which components, at what precision, how often,
/// from whom. Both sides must use the same.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct TransformConfig {
    /// The position axes and their quantisation.
    pub position: PositionSync,
    /// The rotation and its compression.
    pub rotation: RotationSync,
    /// The scale and its quantisation.
    pub scale: ScaleSync,
    /// The least time between two states of this transform (it is also the interpolation's
    /// send interval). The manager's [`TransformSyncConfig::interval`](crate::TransformSyncConfig)
    /// is the finest it can be.
    pub send_interval: Duration,
    /// A move shorter than this (metres) is not a change.
    pub position_threshold: f32,
    /// A turn smaller than this (radians) is not a change.
    pub rotation_threshold: f32,
    /// A scale change smaller than this (per axis) is not a change.
    pub scale_threshold: f32,
    /// Who sets the transform.
    pub authority: Authority,
    /// With [`Authority::Owner`]: the fastest the owner may move it (metres per second); a
    /// faster input is refused and the owner corrected. `None`: no limit.
    pub max_speed: Option<f32>,
    /// How clients interpolate it.
    pub interpolation: InterpolationConfig,
}

/// The default rate of a transform: 30 states per second (Mirror's default).
const DEFAULT_SEND_INTERVAL: Duration = Duration::from_nanos(1_000_000_000 / 30);

impl TransformConfig {
    /// 3D: position inside `[min, max]` at `precision` metres, rotation by smallest three at
    /// 9 bits per component (Gaffer's), no scale, 30 states per second, server-authoritative.
    ///
    /// # Errors
    /// A bound or precision [`Quantizer`] refuses.
    pub fn three_d(min: [f32; 3], max: [f32; 3], precision: f32) -> Result<Self, QuantizeError> {
        let axis = |i: usize| Quantizer::with_precision(min[i], max[i], precision);
        let position = PositionSync::Xyz([axis(0)?, axis(1)?, axis(2)?]);
        Ok(Self::with(position, RotationSync::Quaternion(SmallestThree::new(9)?)))
    }

    /// 2D: position inside `[min, max]` (x, y) at `precision` metres, an angle about z at 12
    /// bits (0.09°), no scale, 30 states per second, server-authoritative.
    ///
    /// # Errors
    /// A bound or precision [`Quantizer`] refuses.
    pub fn two_d(min: [f32; 2], max: [f32; 2], precision: f32) -> Result<Self, QuantizeError> {
        let axis = |i: usize| Quantizer::with_precision(min[i], max[i], precision);
        let angle = Quantizer::new(-std::f32::consts::PI, std::f32::consts::PI, 12)?;
        Ok(Self::with(PositionSync::Xy([axis(0)?, axis(1)?]), RotationSync::Angle(angle)))
    }

    fn with(position: PositionSync, rotation: RotationSync) -> Self {
        Self {
            position,
            rotation,
            scale: ScaleSync::Off,
            send_interval: DEFAULT_SEND_INTERVAL,
            position_threshold: 0.0,
            rotation_threshold: 0.0,
            scale_threshold: 0.0,
            authority: Authority::Server,
            max_speed: None,
            interpolation: InterpolationConfig {
                max_extrapolation: Duration::ZERO,
                ..InterpolationConfig::for_send_interval(DEFAULT_SEND_INTERVAL)
            },
        }
    }

    /// With `rotation` instead.
    #[must_use]
    pub fn with_rotation(mut self, rotation: RotationSync) -> Self {
        self.rotation = rotation;
        self
    }

    /// With `scale` instead.
    #[must_use]
    pub fn with_scale(mut self, scale: ScaleSync) -> Self {
        self.scale = scale;
        self
    }

    /// With `position` instead.
    #[must_use]
    pub fn with_position(mut self, position: PositionSync) -> Self {
        self.position = position;
        self
    }

    /// With a send interval of `interval` (and the interpolation's to match).
    #[must_use]
    pub fn with_send_interval(mut self, interval: Duration) -> Self {
        self.send_interval = interval;
        self.interpolation.send_interval = interval;
        self
    }

    /// With extrapolation past the newest state for at most `limit` (none by default: a
    /// stopped object is shown where it stopped, not carried past it; Gaffer found
    /// extrapolation poor for rigid bodies).
    #[must_use]
    pub fn with_extrapolation(mut self, limit: Duration) -> Self {
        self.interpolation.max_extrapolation = limit;
        self
    }

    /// With change thresholds: metres, radians, scale factor.
    #[must_use]
    pub fn with_thresholds(mut self, position: f32, rotation: f32, scale: f32) -> Self {
        self.position_threshold = position;
        self.rotation_threshold = rotation;
        self.scale_threshold = scale;
        self
    }

    /// Owner-authoritative (see [`Authority::Owner`]), at most `max_speed` m/s if given.
    #[must_use]
    pub fn owner_authoritative(mut self, max_speed: Option<f32>) -> Self {
        self.authority = Authority::Owner;
        self.max_speed = max_speed;
        self
    }

    /// With teleport detection: two states further apart than `distance` metres are not
    /// blended.
    #[must_use]
    pub fn with_teleport_distance(mut self, distance: f32) -> Self {
        self.interpolation.teleport_distance = Some(distance);
        self
    }

    /// Checks what the quantisers did not: thresholds finite and not negative, a speed limit
    /// finite and not negative (a NaN one would let every input through). The server's
    /// `spawn` calls it; a spawn with an invalid transform is refused.
    ///
    /// ```
    /// use sturnus_object::transform::TransformConfig;
    /// let config = TransformConfig::two_d([-1.0; 2], [1.0; 2], 0.01)?;
    /// assert!(config.validate().is_ok());
    /// assert!(config.owner_authoritative(Some(f32::NAN)).validate().is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn validate(&self) -> Result<(), crate::ObjectError> {
        let sane = |v: f32| v.is_finite() && v >= 0.0;
        let bad = |field, reason| Err(crate::ObjectError::InvalidConfig { field, reason });
        if ![self.position_threshold, self.rotation_threshold, self.scale_threshold]
            .into_iter()
            .all(sane)
        {
            return bad("TransformConfig thresholds", "must be finite and not negative");
        }
        if self.max_speed.is_some_and(|m| !sane(m)) {
            return bad("TransformConfig::max_speed", "must be finite and not negative");
        }
        Ok(())
    }

    /// The bits of an absolute state (without the entry header).
    pub fn absolute_bits(&self) -> u32 {
        let position = match self.position {
            PositionSync::Off => 0,
            PositionSync::Xy(q) => q.iter().map(Quantizer::bits).sum(),
            PositionSync::Xyz(q) => q.iter().map(Quantizer::bits).sum(),
        };
        let rotation = match self.rotation {
            RotationSync::Off => 0,
            RotationSync::Angle(q) => q.bits(),
            RotationSync::Quaternion(s) => s.packed_bits(),
        };
        let scale = match self.scale {
            ScaleSync::Off => 0,
            ScaleSync::Uniform(q) => q.bits(),
            ScaleSync::Xyz(q) => q.iter().map(Quantizer::bits).sum(),
        };
        position + rotation + scale
    }

    /// `pose` quantised.
    pub(crate) fn quantize(&self, pose: &Pose) -> QState {
        let mut q = QState::default();
        let _ = self.each_position(|i, quant| {
            q.pos[i] = quant.quantize(pose.position[i]);
            Ok(())
        });
        match &self.rotation {
            RotationSync::Off => {}
            RotationSync::Angle(angle) => q.rot = u64::from(angle.quantize(yaw_of(pose.rotation))),
            RotationSync::Quaternion(s) => q.rot = s.compress(pose.rotation),
        }
        let _ = self.each_scale(|i, quant| {
            q.scale[i] = quant.quantize(pose.scale[i]);
            Ok(())
        });
        q
    }

    /// The pose `q` stands for; components not synchronised are taken from `local`.
    pub(crate) fn dequantize(&self, q: &QState, local: &Pose) -> Pose {
        let mut pose = *local;
        let _ = self.each_position(|i, quant| {
            pose.position[i] = quant.dequantize(q.pos[i]);
            Ok(())
        });
        match &self.rotation {
            RotationSync::Off => {}
            RotationSync::Angle(angle) => pose.rotation = about_z(angle.dequantize(low_u32(q.rot))),
            RotationSync::Quaternion(s) => pose.rotation = s.decompress(q.rot),
        }
        match &self.scale {
            ScaleSync::Off => {}
            ScaleSync::Uniform(s) => pose.scale = [s.dequantize(q.scale[0]); 3],
            ScaleSync::Xyz(_) => {
                let _ = self.each_scale(|i, quant| {
                    pose.scale[i] = quant.dequantize(q.scale[i]);
                    Ok(())
                });
            }
        }
        pose
    }

    /// Whether `to` differs from `from` by at least a threshold (and is a different state).
    pub(crate) fn changed_enough(&self, from: &Pose, to: &Pose) -> bool {
        let moved = from.position.iter().zip(&to.position).map(|(a, b)| (b - a) * (b - a));
        let moved = moved.sum::<f32>().sqrt();
        let dot = from.rotation.iter().zip(&to.rotation).map(|(a, b)| a * b).sum::<f32>();
        let turned = 2.0 * dot.abs().min(1.0).acos();
        let scaled = from.scale.iter().zip(&to.scale).map(|(a, b)| (b - a).abs());
        let scaled = scaled.fold(0.0_f32, f32::max);
        moved >= self.position_threshold
            || turned >= self.rotation_threshold
            || scaled >= self.scale_threshold
    }

    /// Writes `q` whole.
    pub(crate) fn write_absolute(&self, q: &QState, w: &mut BitWriter<'_>) -> Result<(), BitError> {
        self.each_position(|i, quant| w.write_bits(u64::from(q.pos[i]), quant.bits()))?;
        match &self.rotation {
            RotationSync::Off => {}
            RotationSync::Angle(angle) => w.write_bits(q.rot, angle.bits())?,
            RotationSync::Quaternion(s) => w.write_bits(q.rot, s.packed_bits())?,
        }
        self.each_scale(|i, quant| w.write_bits(u64::from(q.scale[i]), quant.bits()))
    }

    /// Reads what [`write_absolute`](Self::write_absolute) wrote.
    pub(crate) fn read_absolute(&self, r: &mut BitReader<'_>) -> Result<QState, BitError> {
        let mut q = QState::default();
        self.each_position(|i, quant| {
            q.pos[i] = read_code(r, quant)?;
            Ok(())
        })?;
        match &self.rotation {
            RotationSync::Off => {}
            RotationSync::Angle(angle) => q.rot = u64::from(read_code(r, angle)?),
            RotationSync::Quaternion(s) => q.rot = r.read_bits(s.packed_bits())?,
        }
        self.each_scale(|i, quant| {
            q.scale[i] = read_code(r, quant)?;
            Ok(())
        })?;
        Ok(q)
    }

    /// Writes `q` as a delta against `base`: per component a "changed" bit, then each
    /// code's difference.
    pub(crate) fn write_delta(
        &self,
        q: &QState,
        base: &QState,
        w: &mut BitWriter<'_>,
    ) -> Result<(), BitError> {
        if !matches!(self.position, PositionSync::Off) {
            let changed = q.pos != base.pos;
            w.write_bits(u64::from(changed), 1)?;
            if changed {
                self.each_position(|i, quant| write_diff(w, q.pos[i], base.pos[i], quant.bits()))?;
            }
        }
        match &self.rotation {
            RotationSync::Off => {}
            RotationSync::Angle(angle) => {
                let changed = q.rot != base.rot;
                w.write_bits(u64::from(changed), 1)?;
                if changed {
                    let (code, from) = (low_u32(q.rot), low_u32(base.rot));
                    write_diff(w, code, from, angle.bits())?;
                }
            }
            RotationSync::Quaternion(s) => {
                let changed = q.rot != base.rot;
                w.write_bits(u64::from(changed), 1)?;
                if changed {
                    let same_largest = q.rot & 3 == base.rot & 3;
                    w.write_bits(u64::from(same_largest), 1)?;
                    if same_largest {
                        let mask = (1_u64 << s.bits()) - 1;
                        for k in 0..3 {
                            let shift = 2 + k * s.bits();
                            let code = low_u32((q.rot >> shift) & mask);
                            let from = low_u32((base.rot >> shift) & mask);
                            write_diff(w, code, from, s.bits())?;
                        }
                    } else {
                        w.write_bits(q.rot, s.packed_bits())?;
                    }
                }
            }
        }
        if !matches!(self.scale, ScaleSync::Off) {
            let changed = q.scale != base.scale;
            w.write_bits(u64::from(changed), 1)?;
            if changed {
                self.each_scale(|i, quant| write_diff(w, q.scale[i], base.scale[i], quant.bits()))?;
            }
        }
        Ok(())
    }

    /// Reads what [`write_delta`](Self::write_delta) wrote; with no `base` (the reader has
    /// not the state it was written against) it reads past it and returns `None`.
    pub(crate) fn read_delta(
        &self,
        base: Option<&QState>,
        r: &mut BitReader<'_>,
    ) -> Result<Option<QState>, BitError> {
        let mut q = base.copied().unwrap_or_default();
        if !matches!(self.position, PositionSync::Off) && r.read_bits(1)? == 1 {
            self.each_position(|i, quant| {
                q.pos[i] = read_diff(r, q.pos[i], quant)?;
                Ok(())
            })?;
        }
        match &self.rotation {
            RotationSync::Off => {}
            RotationSync::Angle(angle) => {
                if r.read_bits(1)? == 1 {
                    q.rot = u64::from(read_diff(r, low_u32(q.rot), angle)?);
                }
            }
            RotationSync::Quaternion(s) => {
                if r.read_bits(1)? == 1 {
                    if r.read_bits(1)? == 1 {
                        let bits = s.bits();
                        let mask = (1_u64 << bits) - 1;
                        // Any code up to 2^bits - 1 decompresses to a unit quaternion.
                        let quant =
                            Quantizer::new(0.0, 1.0, bits).map_err(|_| BitError::UnexpectedEnd)?;
                        let mut rot = q.rot & 3;
                        for k in 0..3 {
                            let shift = 2 + k * bits;
                            let from = low_u32((q.rot >> shift) & mask);
                            rot |= u64::from(read_diff(r, from, &quant)?) << shift;
                        }
                        q.rot = rot;
                    } else {
                        q.rot = r.read_bits(s.packed_bits())?;
                    }
                }
            }
        }
        if !matches!(self.scale, ScaleSync::Off) && r.read_bits(1)? == 1 {
            self.each_scale(|i, quant| {
                q.scale[i] = read_diff(r, q.scale[i], quant)?;
                Ok(())
            })?;
        }
        Ok(base.map(|_| q))
    }

    /// `base` carried forward by the motion from `prev` to it: each code moved on by its
    /// change from `prev` × `ahead` / `span` (milliseconds: from `prev` to `base`, and from
    /// `base` to now), at most eight spans ahead, clamped to the codes. Integer arithmetic, so
    /// the server and the client predict the same state. A rotation whose largest component
    /// changed between the two is not predicted.
    pub(crate) fn predict(&self, base: &QState, prev: &QState, span: u64, ahead: u64) -> QState {
        if span == 0 || span > 60_000 {
            return *base;
        }
        let ahead = i64::try_from(ahead.min(span * 8)).unwrap_or(0);
        let span = i64::try_from(span).unwrap_or(1);
        let carry = |b: u32, p: u32, max: u32| -> u32 {
            let (b, p) = (i64::from(b), i64::from(p));
            let v = (b + (b - p) * ahead / span).clamp(0, i64::from(max));
            u32::try_from(v).unwrap_or(0)
        };
        let mut q = *base;
        let _ = self.each_position(|i, quant| {
            q.pos[i] = carry(base.pos[i], prev.pos[i], quant.max_code());
            Ok(())
        });
        match &self.rotation {
            RotationSync::Off => {}
            RotationSync::Angle(angle) => {
                q.rot = u64::from(carry(low_u32(base.rot), low_u32(prev.rot), angle.max_code()));
            }
            RotationSync::Quaternion(s) => {
                if base.rot & 3 == prev.rot & 3 {
                    let bits = s.bits();
                    let mask = (1_u64 << bits) - 1;
                    let mut rot = base.rot & 3;
                    for k in 0..3 {
                        let shift = 2 + k * bits;
                        let (b, p) = ((base.rot >> shift) & mask, (prev.rot >> shift) & mask);
                        let c = carry(low_u32(b), low_u32(p), low_u32(mask));
                        rot |= u64::from(c) << shift;
                    }
                    q.rot = rot;
                }
            }
        }
        let _ = self.each_scale(|i, quant| {
            q.scale[i] = carry(base.scale[i], prev.scale[i], quant.max_code());
            Ok(())
        });
        q
    }

    fn each_position(
        &self,
        mut f: impl FnMut(usize, &Quantizer) -> Result<(), BitError>,
    ) -> Result<(), BitError> {
        match &self.position {
            PositionSync::Off => Ok(()),
            PositionSync::Xy(axes) => axes.iter().enumerate().try_for_each(|(i, q)| f(i, q)),
            PositionSync::Xyz(axes) => axes.iter().enumerate().try_for_each(|(i, q)| f(i, q)),
        }
    }

    fn each_scale(
        &self,
        mut f: impl FnMut(usize, &Quantizer) -> Result<(), BitError>,
    ) -> Result<(), BitError> {
        match &self.scale {
            ScaleSync::Off => Ok(()),
            ScaleSync::Uniform(q) => f(0, q),
            ScaleSync::Xyz(axes) => axes.iter().enumerate().try_for_each(|(i, q)| f(i, q)),
        }
    }
}

/// The low 32 bits (codes are at most 20 bits wide).
#[expect(clippy::cast_possible_truncation, reason = "codes fit 32 bits")]
fn low_u32(v: u64) -> u32 {
    v as u32
}

/// A code of `quant`'s width, clamped to its largest.
fn read_code(r: &mut BitReader<'_>, quant: &Quantizer) -> Result<u32, BitError> {
    Ok(low_u32(r.read_bits(quant.bits())?).min(quant.max_code()))
}

/// The widths of the three size classes of a code difference (after their prefixes `0`,
/// `10`, `110`; `111` is followed by the code whole).
const CLASS_BITS: [u32; 3] = [4, 7, 10];

/// Where each class's zigzag values start.
const fn class_starts() -> [u64; 3] {
    let mut starts = [0_u64; 3];
    let mut k = 1;
    while k < 3 {
        starts[k] = starts[k - 1] + (1 << CLASS_BITS[k - 1]);
        k += 1;
    }
    starts
}

const CLASS_STARTS: [u64; 3] = class_starts();

/// Writes `code - from` (zigzag) in the smallest class of [`CLASS_BITS`] that holds it, or
/// `111` and the code whole (`bits` bits).
fn write_diff(w: &mut BitWriter<'_>, code: u32, from: u32, bits: u32) -> Result<(), BitError> {
    let diff = i64::from(code) - i64::from(from);
    let zigzag = ((diff << 1) ^ (diff >> 63)).unsigned_abs();
    for (k, (&width, &start)) in CLASS_BITS.iter().zip(&CLASS_STARTS).enumerate() {
        if zigzag < start + (1 << width) {
            // k ones then a zero, lowest bit first, then the value.
            let prefix = (1_u64 << k) - 1;
            let k = u32::try_from(k).unwrap_or(0);
            return w.write_bits(prefix | ((zigzag - start) << (k + 1)), k + 1 + width);
        }
    }
    w.write_bits(0b111, 3)?;
    w.write_bits(u64::from(code), bits)
}

/// Reads what [`write_diff`] wrote against `from`; the result is clamped to `quant`'s codes.
fn read_diff(r: &mut BitReader<'_>, from: u32, quant: &Quantizer) -> Result<u32, BitError> {
    let mut zigzag = None;
    for (&width, &start) in CLASS_BITS.iter().zip(&CLASS_STARTS) {
        if r.read_bits(1)? == 0 {
            zigzag = Some(start + r.read_bits(width)?);
            break;
        }
    }
    let Some(zigzag) = zigzag else { return read_code(r, quant) };
    let magnitude = i64::try_from(zigzag >> 1).unwrap_or(0);
    let diff = if zigzag & 1 == 0 { magnitude } else { -magnitude - 1 };
    let code = (i64::from(from) + diff).clamp(0, i64::from(quant.max_code()));
    Ok(u32::try_from(code).unwrap_or(0))
}

/// The angle about z of the unit quaternion `q` (radians).
fn yaw_of(q: [f32; 4]) -> f32 {
    let [x, y, z, w] = q;
    (2.0 * (w * z + x * y)).atan2(1.0 - 2.0 * (y * y + z * z))
}

/// The rotation by `angle` radians about z.
fn about_z(angle: f32) -> [f32; 4] {
    let half = angle / 2.0;
    [0.0, 0.0, half.sin(), half.cos()]
}

/// A transform's state quantised: what travels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct QState {
    pub(crate) pos: [u32; 3],
    pub(crate) rot: u64,
    pub(crate) scale: [u32; 3],
}

/// A state a client holds to decode deltas against: from a snapshot (its sequence) or from
/// the spawn.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Held {
    /// The snapshot it came in; `None`: the spawn.
    pub(crate) seq: Option<u32>,
    pub(crate) state: QState,
    /// That snapshot's server time (ms).
    pub(crate) time_ms: u64,
}

/// The most states a client holds per transform to decode deltas against.
pub(crate) const HISTORY: usize = 128;

/// An object's position, rotation and scale, synchronised from the server (or its owner) to
/// every observer; see the [module documentation](self).
#[derive(Debug, Clone)]
pub struct NetworkTransform {
    config: TransformConfig,
    /// Server (and owner): the pose set. Client: the newest state received.
    pose: Pose,
    /// The sub-part of the object it moves (the child variant), if any.
    part: Option<u16>,
    important: bool,
    /// Client: the states to interpolate between.
    buffer: SnapshotBuffer<Pose>,
    /// Client: the states held to decode deltas against, oldest first.
    pub(crate) history: Vec<Held>,
    /// Client: the snapshot of the newest state applied.
    pub(crate) newest: Option<u32>,
    /// Client: a delta arrived against a state not held; the server is asked for a whole one.
    pub(crate) needs_whole: bool,
    /// Client: the server time of the newest state put in the buffer.
    last_time: Option<Duration>,
    /// Owner: the state last sent to the server, and when.
    pub(crate) sent_input: Option<(QState, Instant)>,
    /// Owner: the sequence of the last input sent; server: of the last applied.
    pub(crate) input_seq: u32,
    /// Owner: the state at rest was sent reliably (nothing more to send until it moves).
    pub(crate) settled: bool,
    /// Server: the manager's slot of this transform.
    pub(crate) slot: Option<u32>,
    /// Server (owner-authoritative): when the last input was accepted.
    pub(crate) last_input: Option<Instant>,
    /// Whether the local game changed the pose since the manager last looked.
    pub(crate) changed: bool,
    /// Client: this client owns it and it is owner-authoritative: the game sets it here.
    pub(crate) local: bool,
    /// Client: the epoch of the spawn that made it (see the `Spawn` message).
    pub(crate) epoch: u8,
    /// Server (owner-authoritative): metres the owner may still move it (a bucket refilled
    /// at the speed limit).
    pub(crate) allowance: f32,
    /// Owner, on a client: the server refused an input and sent its own state.
    corrections: u64,
}

impl NetworkTransform {
    /// A transform at the origin, synchronised as `config` says.
    pub fn new(config: TransformConfig) -> Self {
        Self {
            buffer: SnapshotBuffer::new(config.interpolation),
            config,
            pose: Pose::default(),
            part: None,
            important: false,
            history: Vec::new(),
            newest: None,
            needs_whole: false,
            last_time: None,
            sent_input: None,
            input_seq: 0,
            settled: true,
            slot: None,
            last_input: None,
            changed: false,
            local: false,
            epoch: 0,
            allowance: 0.0,
            corrections: 0,
        }
    }

    /// The child variant: a transform of a sub-part of the object (a turret, a hand), named by
    /// `part` so the game knows which node it moves. An object may hold several.
    pub fn child(config: TransformConfig, part: u16) -> Self {
        Self { part: Some(part), ..Self::new(config) }
    }

    /// At `pose` from the start (part of the spawn's state).
    #[must_use]
    pub fn at(mut self, pose: Pose) -> Self {
        self.pose = pose;
        self
    }

    /// The settings.
    pub fn config(&self) -> &TransformConfig {
        &self.config
    }

    /// The sub-part it moves (see [`child`](Self::child)).
    pub fn part(&self) -> Option<u16> {
        self.part
    }

    /// The pose: on the server (or for its owner, owner-authoritative) the one set; on other
    /// clients the newest received (render [`sample`](Self::sample) instead).
    pub fn pose(&self) -> Pose {
        self.pose
    }

    /// Sets the pose (on the server; or on the owner's client, owner-authoritative).
    pub fn set_pose(&mut self, pose: Pose) {
        self.pose = pose;
        self.changed = true;
    }

    /// Sets the position.
    pub fn set_position(&mut self, position: [f32; 3]) {
        self.pose.position = position;
        self.changed = true;
    }

    /// Sets the rotation (a unit quaternion `x, y, z, w`).
    pub fn set_rotation(&mut self, rotation: [f32; 4]) {
        self.pose.rotation = rotation;
        self.changed = true;
    }

    /// Sets the rotation of a 2D transform: `angle` radians about z.
    pub fn set_angle(&mut self, angle: f32) {
        self.set_rotation(about_z(angle));
    }

    /// Sets the scale.
    pub fn set_scale(&mut self, scale: [f32; 3]) {
        self.pose.scale = scale;
        self.changed = true;
    }

    /// Flags it important: in every snapshot it has a change for, before the others (the
    /// player's own avatar, say). Keep such transforms few: they are sent whatever the budget.
    pub fn set_important(&mut self, important: bool) {
        self.important = important;
    }

    /// Whether it is flagged important.
    pub fn is_important(&self) -> bool {
        self.important
    }

    /// On a client: the pose to render at `now`, interpolated between the states received
    /// (the newest if none is buffered yet; the local pose for its owner, owner-authoritative).
    pub fn sample(&mut self, now: Instant) -> Pose {
        if self.local {
            return self.pose;
        }
        self.buffer.sample(now).unwrap_or(self.pose)
    }

    /// On a client: the server time of the newest state received (`None` before the first
    /// one after the spawn). How old the newest news of the object is: the server's time now
    /// minus this.
    pub fn last_update(&self) -> Option<Duration> {
        self.last_time
    }

    /// The interpolation buffer (its delay, jitter and late states).
    pub fn buffer(&self) -> &SnapshotBuffer<Pose> {
        &self.buffer
    }

    /// How many times the server refused this client's input and corrected it.
    pub fn corrections(&self) -> u64 {
        self.corrections
    }

    /// Client: a state of the server at `server_time`, which arrived at `now`; `rested`: the
    /// object stood still before it (the server says so: a gap in the states may as well be
    /// a loss).
    pub(crate) fn receive(
        &mut self,
        now: Instant,
        server_time: Duration,
        state: &QState,
        rested: bool,
    ) {
        let pose = self.config.dequantize(state, &self.pose);
        // After a rest the object stood where it was until just before this state: blending
        // across the whole rest would start the move early and slowly.
        let interval = self.config.send_interval;
        if rested && self.last_time.is_some_and(|last| server_time > last + interval) {
            self.buffer.hold(server_time - interval);
        }
        if self.last_time.is_none_or(|last| server_time > last) {
            self.last_time = Some(server_time);
        }
        self.pose = pose;
        self.buffer.insert(now, server_time, pose);
    }

    /// Client (owner): the server corrected the pose.
    pub(crate) fn correct(&mut self, state: &QState) {
        self.pose = self.config.dequantize(state, &self.pose);
        self.corrections += 1;
        // The server holds this state: nothing to send until the game moves it again.
        if let Some((_, at)) = self.sent_input {
            self.sent_input = Some((*state, at));
        }
        self.settled = true;
    }

    /// Client: forgets held states older than `seq` (a delta was decoded against `seq`: the
    /// server never uses an older one again).
    pub(crate) fn prune_before(&mut self, keep: usize) {
        if keep > 0 && keep <= self.history.len() {
            self.history.drain(..keep);
        }
    }

    /// Client: holds `state` of snapshot `seq` to decode later deltas against.
    pub(crate) fn hold_state(&mut self, seq: Option<u32>, state: QState, time_ms: u64) {
        if self.history.capacity() == 0 {
            self.history.reserve_exact(16);
        }
        if self.history.len() >= HISTORY {
            self.history.remove(0);
        }
        self.history.push(Held { seq, state, time_ms });
    }

    /// Client: holds `state` of snapshot `seq`, older than the newest held, in its place (a
    /// snapshot that arrived late): the server may name it as the state before its base.
    pub(crate) fn hold_older(&mut self, seq: u32, state: QState, time_ms: u64) {
        let at = self.history.partition_point(|held| held.seq < Some(seq));
        if self.history.get(at).is_some_and(|held| held.seq == Some(seq)) || at == 0 {
            return; // held already, or older than anything kept
        }
        if self.history.len() >= HISTORY {
            return;
        }
        self.history.insert(at, Held { seq: Some(seq), state, time_ms });
    }

    /// The encoded whole state: what a spawn carries.
    fn encode_whole(&self, buf: &mut [u8; 32]) -> usize {
        let q = self.config.quantize(&self.pose);
        let mut w = BitWriter::new(buf);
        // At most 3 × 32 + 62 + 3 × 32 bits: fits 32 bytes.
        let _ = self.config.write_absolute(&q, &mut w);
        w.bytes_written()
    }
}

impl crate::NetworkBehaviour for NetworkTransform {
    fn write_full(&self, out: &mut Vec<u8>) -> Result<(), postcard::Error> {
        let mut buf = [0_u8; 32];
        let len = self.encode_whole(&mut buf);
        out.extend_from_slice(&buf[..len]);
        Ok(())
    }

    fn write_changes(&self, _out: &mut Vec<u8>) -> Result<(), postcard::Error> {
        // Never dirty: a transform travels in snapshots, not as behaviour updates.
        Ok(())
    }

    fn read_full(&mut self, input: &mut &[u8]) -> Result<(), ReadError> {
        let len = usize::try_from(self.config.absolute_bits().div_ceil(8)).unwrap_or(usize::MAX);
        if input.len() < len {
            return Err(ReadError::Decode(postcard::Error::DeserializeUnexpectedEnd));
        }
        let (bytes, rest) = input.split_at(len);
        let q = self
            .config
            .read_absolute(&mut BitReader::new(bytes))
            .map_err(|_| ReadError::Decode(postcard::Error::DeserializeUnexpectedEnd))?;
        *input = rest;
        self.pose = self.config.dequantize(&q, &self.pose);
        self.history.clear();
        self.hold_state(None, q, 0);
        self.newest = None;
        self.needs_whole = false;
        Ok(())
    }

    fn read_changes(&mut self, _input: &mut &[u8]) -> Result<(), ReadError> {
        Ok(())
    }

    fn run_local_hooks(&mut self) {}

    fn is_dirty(&self) -> bool {
        false
    }

    fn clear_dirty(&mut self) {}

    fn sync_settings(&self) -> SyncSettings {
        SyncSettings::default()
    }

    fn rpc_info(&self, _id: RpcId) -> Option<RpcInfo> {
        None
    }

    fn invoke_rpc(
        &mut self,
        _id: RpcId,
        _args: &[u8],
        _ctx: RpcContext<'_, '_>,
    ) -> Result<(), ReadError> {
        Err(ReadError::UnknownOperation)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn type_name(&self) -> &'static str {
        "NetworkTransform"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (splitmix64) for the round trips.
    fn next(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn configs() -> Vec<TransformConfig> {
        let scale = Quantizer::with_precision(0.0, 4.0, 0.01).unwrap();
        vec![
            TransformConfig::three_d([-256.0, -16.0, -256.0], [256.0, 48.0, 256.0], 1.0 / 512.0)
                .unwrap()
                .with_scale(ScaleSync::Uniform(scale)),
            TransformConfig::two_d([-50.0, -50.0], [50.0, 50.0], 0.01)
                .unwrap()
                .with_scale(ScaleSync::Xyz([scale; 3])),
            TransformConfig::three_d([-1.0; 3], [1.0; 3], 0.001)
                .unwrap()
                .with_position(PositionSync::Off)
                .with_rotation(RotationSync::Quaternion(SmallestThree::new(15).unwrap())),
        ]
    }

    fn random_pose(rng: &mut u64) -> Pose {
        let mut f = |lo: f32, hi: f32| lo + (next(rng) % 10_000) as f32 / 10_000.0 * (hi - lo);
        let q = [f(-1.0, 1.0), f(-1.0, 1.0), f(-1.0, 1.0), f(-1.0, 1.0)];
        Pose {
            position: [f(-300.0, 300.0), f(-20.0, 50.0), f(-300.0, 300.0)],
            rotation: q,
            scale: [f(0.0, 4.0), f(0.0, 4.0), f(0.0, 4.0)],
        }
    }

    /// Every state, whole or as a delta against any other (near or far), reads back exactly.
    #[test]
    fn whole_and_delta_states_round_trip() {
        let mut rng = 7;
        for config in configs() {
            for _ in 0..2000 {
                let base = config.quantize(&random_pose(&mut rng));
                let mut near = random_pose(&mut rng);
                let state = if next(&mut rng) % 2 == 0 {
                    config.quantize(&near)
                } else {
                    // A small move from the base: the short classes.
                    let from = config.dequantize(&base, &Pose::default());
                    near.position = from.position.map(|c| c + 0.01);
                    near.rotation = from.rotation;
                    config.quantize(&near)
                };
                let mut buf = [0_u8; 64];
                let mut w = BitWriter::new(&mut buf);
                config.write_delta(&state, &base, &mut w).unwrap();
                config.write_absolute(&state, &mut w).unwrap();
                let bits = w.bits_written();
                let mut r = BitReader::new(&buf);
                assert_eq!(config.read_delta(Some(&base), &mut r).unwrap(), Some(state));
                assert_eq!(config.read_absolute(&mut r).unwrap(), state);
                assert_eq!(r.bits_read(), bits);
                // Read without the base, the delta is skipped just the same.
                let mut r = BitReader::new(&buf);
                assert_eq!(config.read_delta(None, &mut r).unwrap(), None);
                assert_eq!(config.read_absolute(&mut r).unwrap(), state);
            }
        }
    }

    /// A state at rest against itself is one bit per component; a small move is a few bits
    /// per axis.
    #[test]
    fn deltas_are_small() {
        let config = &configs()[0];
        let pose = Pose { position: [1.0, 2.0, 3.0], ..Pose::default() };
        let base = config.quantize(&pose);
        let mut buf = [0_u8; 64];
        let mut w = BitWriter::new(&mut buf);
        config.write_delta(&base, &base, &mut w).unwrap();
        assert_eq!(w.bits_written(), 3);
        let moved = Pose { position: [1.002, 2.0, 3.0], ..pose }; // 2 codes of ~1/1024 m
        let mut w = BitWriter::new(&mut buf);
        config.write_delta(&config.quantize(&moved), &base, &mut w).unwrap();
        // 3 changed bits (position, rotation, scale), then 3 axes at 5 bits each (a 2-code
        // step and two zeros, each in the first class: a 0 and 4 bits).
        assert_eq!(w.bits_written(), 3 + 3 * (1 + CLASS_BITS[0] as usize));
    }

    /// Random bits never panic the reader, and whatever it reads dequantises to finite values
    /// inside the bounds.
    #[test]
    fn random_input_reads_safely() {
        let mut rng = 11;
        for config in configs() {
            for _ in 0..5000 {
                let mut buf = [0_u8; 24];
                for b in &mut buf {
                    *b = u8::try_from(next(&mut rng) & 0xff).unwrap();
                }
                let len = usize::try_from(next(&mut rng) % 25).unwrap();
                let base = config.quantize(&random_pose(&mut rng));
                for read in 0..2 {
                    let mut r = BitReader::new(&buf[..len]);
                    let state = if read == 0 {
                        config.read_delta(Some(&base), &mut r).ok().flatten()
                    } else {
                        config.read_absolute(&mut r).ok()
                    };
                    if let Some(state) = state {
                        let pose = config.dequantize(&state, &Pose::default());
                        assert!(pose.position.iter().all(|c| c.is_finite() && c.abs() <= 300.0));
                        let norm: f32 = pose.rotation.iter().map(|c| c * c).sum();
                        assert!((norm - 1.0).abs() < 1e-3, "{pose:?}");
                    }
                }
            }
        }
    }
}
