//! Compression building blocks for state synchronisation: bounded scalar quantisation,
//! "smallest three" quaternion compression and a bit writer/reader to pack them.
//!
//! Everything here is pure and allocation-free; a later `NetworkTransform` is built on it. The
//! layout follows Glenn Fiedler's "Snapshot Compression" (Gaffer on Games): a position at
//! 512 values per metre inside bounds, an orientation by smallest three at 9 bits per
//! component, packed bit by bit.
//!
//! Configuration is checked when a [`Quantizer`] or [`SmallestThree`] is built (a typed
//! [`QuantizeError`]); after that, no input panics: values outside the bounds are clamped, NaN
//! has a defined code, and a [`BitReader`] reports the end of its input as a [`BitError`].
//!
//! # Example: one of Gaffer's cubes in 79 bits
//!
//! ```
//! use sturnus_object::quantize::{BitReader, BitWriter, Quantizer, SmallestThree};
//!
//! // 512 values per metre: x and y in [-256, 255] m take 18 bits, z in [0, 31] m takes 14.
//! let xy = Quantizer::with_precision(-256.0, 255.0, 1.0 / 512.0)?;
//! let z = Quantizer::with_precision(0.0, 31.0, 1.0 / 512.0)?;
//! let rotation = SmallestThree::new(9)?; // 2 + 3 × 9 = 29 bits
//! assert_eq!((xy.bits(), z.bits(), rotation.packed_bits()), (18, 14, 29));
//!
//! let (position, orientation) = ([12.5_f32, -3.25, 1.0], [0.0_f32, 0.0, 0.0, 1.0]);
//! let mut buf = [0_u8; 16];
//! let mut w = BitWriter::new(&mut buf);
//! w.write_bits(u64::from(xy.quantize(position[0])), xy.bits())?;
//! w.write_bits(u64::from(xy.quantize(position[1])), xy.bits())?;
//! w.write_bits(u64::from(z.quantize(position[2])), z.bits())?;
//! w.write_bits(rotation.compress(orientation), rotation.packed_bits())?;
//! assert_eq!(w.bits_written(), 79);
//! let len = w.bytes_written(); // 10
//!
//! let mut r = BitReader::new(&buf[..len]);
//! let x = xy.dequantize(u32::try_from(r.read_bits(xy.bits())?)?);
//! assert!((x - 12.5).abs() <= xy.step() / 2.0);
//! let (_y, _z) = (r.read_bits(xy.bits())?, r.read_bits(z.bits())?);
//! assert_eq!(rotation.decompress(r.read_bits(29)?), orientation);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

/// A configuration that cannot quantise: bad bounds, widths or precision.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum QuantizeError {
    /// The bounds must be finite with `min < max`.
    #[error("quantisation bounds must be finite with min < max, not [{min}, {max}]")]
    InvalidBounds {
        /// The lower bound given.
        min: f32,
        /// The upper bound given.
        max: f32,
    },
    /// A scalar takes 1 to 32 bits.
    #[error("a quantised scalar takes 1 to 32 bits, not {0}")]
    InvalidBits(u32),
    /// The step (precision) must be finite and positive.
    #[error("the quantisation step must be finite and positive, not {0}")]
    InvalidStep(f32),
    /// The bounds at this step need more than 32 bits.
    #[error("the bounds at this step need more than 32 bits")]
    TooPrecise,
    /// A smallest-three component takes 2 to 20 bits (so the packed quaternion fits a `u64`).
    #[error("a smallest-three component takes 2 to 20 bits, not {0}")]
    InvalidQuaternionBits(u32),
}

/// Maps a bounded `f32` to a `bits`-bit code and back, spreading the `2^bits` codes evenly
/// over `[min, max]` (both bounds are exact codes).
///
/// [`quantize`](Self::quantize) clamps to the bounds and maps NaN to code 0 (`min`);
/// [`dequantize`](Self::dequantize) clamps codes above the largest to `max`. A value inside
/// the bounds comes back within [`step`](Self::step)` / 2` (plus the rounding of the `f32`
/// result).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantizer {
    min: f32,
    max: f32,
    bits: u32,
}

impl Quantizer {
    /// A quantiser of `[min, max]` with `bits` bits (1 to 32).
    ///
    /// # Errors
    /// [`QuantizeError::InvalidBounds`] unless both bounds are finite and `min < max`;
    /// [`QuantizeError::InvalidBits`] unless `1 <= bits <= 32`.
    pub fn new(min: f32, max: f32, bits: u32) -> Result<Self, QuantizeError> {
        // `is_finite` also refuses NaN.
        if !min.is_finite() || !max.is_finite() || min >= max {
            return Err(QuantizeError::InvalidBounds { min, max });
        }
        if !(1..=32).contains(&bits) {
            return Err(QuantizeError::InvalidBits(bits));
        }
        Ok(Self { min, max, bits })
    }

    /// A quantiser of `[min, max]` with the fewest bits whose step is at most `step` (so the
    /// error is at most `step / 2`): 512 values per metre is `step = 1.0 / 512.0`.
    ///
    /// # Errors
    /// [`QuantizeError::InvalidBounds`] as for [`new`](Self::new);
    /// [`QuantizeError::InvalidStep`] unless `step` is finite and positive;
    /// [`QuantizeError::TooPrecise`] if that needs more than 32 bits.
    pub fn with_precision(min: f32, max: f32, step: f32) -> Result<Self, QuantizeError> {
        if !step.is_finite() || step <= 0.0 {
            return Err(QuantizeError::InvalidStep(step));
        }
        // Checks the bounds (the bit count is a placeholder).
        Self::new(min, max, 1)?;
        // `2^bits - 1` intervals of at most `step` must cover the range.
        let intervals = ((f64::from(max) - f64::from(min)) / f64::from(step)).ceil();
        if intervals > f64::from(u32::MAX) {
            return Err(QuantizeError::TooPrecise);
        }
        #[expect(
            clippy::cast_possible_truncation,
            reason = "1 <= intervals <= u32::MAX, checked above (a positive range over a positive step, rounded up)"
        )]
        let intervals = intervals as u32;
        let bits = (u32::BITS - intervals.leading_zeros()).max(1);
        Self::new(min, max, bits)
    }

    /// The lower bound (code 0).
    #[must_use]
    pub fn min(&self) -> f32 {
        self.min
    }

    /// The upper bound (the largest code).
    #[must_use]
    pub fn max(&self) -> f32 {
        self.max
    }

    /// The width of a code in bits.
    #[must_use]
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// The largest code, `2^bits - 1`.
    #[must_use]
    pub fn max_code(&self) -> u32 {
        u32::MAX >> (u32::BITS - self.bits)
    }

    /// The distance between neighbouring codes' values: `(max - min) / (2^bits - 1)`.
    #[must_use]
    #[expect(
        clippy::cast_possible_truncation,
        reason = "the step is at most max - min, which an f32 holds (to within its rounding)"
    )]
    pub fn step(&self) -> f32 {
        (self.range() / f64::from(self.max_code())) as f32
    }

    fn range(&self) -> f64 {
        f64::from(self.max) - f64::from(self.min)
    }

    /// The code of `value`: clamped to `[min, max]`, rounded to the nearest code; NaN is 0.
    #[must_use]
    pub fn quantize(&self, value: f32) -> u32 {
        let max_code = f64::from(self.max_code());
        let t = (f64::from(value) - f64::from(self.min)) / self.range() * max_code;
        if t.is_nan() || t <= 0.0 {
            0
        } else if t >= max_code {
            self.max_code()
        } else {
            #[expect(
                clippy::cast_possible_truncation,
                reason = "0 < t < max_code <= u32::MAX, checked above"
            )]
            let code = t.round() as u32;
            code
        }
    }

    /// The value of `code`; codes above [`max_code`](Self::max_code) give `max`.
    #[must_use]
    #[expect(clippy::cast_possible_truncation, reason = "the result lies in [min, max], two f32s")]
    pub fn dequantize(&self, code: u32) -> f32 {
        let code = code.min(self.max_code());
        if code == self.max_code() {
            return self.max;
        }
        (f64::from(self.min) + f64::from(code) / f64::from(self.max_code()) * self.range()) as f32
    }
}

/// The largest a component other than the largest-magnitude one can be in a unit quaternion:
/// `1 / √2` (two equal components of a unit vector).
const SMALLEST_THREE_BOUND: f64 = std::f64::consts::FRAC_1_SQRT_2;

/// "Smallest three" quaternion compression: `2 + 3 × bits` bits for a rotation.
///
/// A unit quaternion `(x, y, z, w)` is stored as the index of its largest-magnitude component
/// (2 bits; the first wins a tie) and the other three, each in `[-1/√2, +1/√2]`, quantised to
/// `bits` bits. The sign is flipped first so the dropped component is positive (`q` and `-q`
/// are the same rotation, and compress the same); decompression recomputes it as
/// `√(1 - a² - b² - c²)`.
///
/// The three use `2^bits - 1` evenly spread codes (one code is left unused), so 0 and
/// `±1/√2` are exact: the identity and the 180° rotations about an axis round-trip exactly.
/// Each component's error is at most `step / 2` with `step = (1/√2) / (2^(bits-1) - 1)`, which
/// bounds the rotation error by `2√3 × step` radians: 0.55° at 9 bits, 0.0086° at 15 bits
/// (the tests measure it).
///
/// The input is normalised first; a zero, infinite or NaN quaternion compresses as the
/// identity. Any packed value decompresses to a unit quaternion, never panicking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmallestThree {
    bits: u32,
}

impl SmallestThree {
    /// A codec with `bits` bits per stored component (2 to 20; Gaffer uses 9).
    ///
    /// # Errors
    /// [`QuantizeError::InvalidQuaternionBits`] unless `2 <= bits <= 20`.
    pub fn new(bits: u32) -> Result<Self, QuantizeError> {
        if (2..=20).contains(&bits) {
            Ok(Self { bits })
        } else {
            Err(QuantizeError::InvalidQuaternionBits(bits))
        }
    }

    /// Bits per stored component.
    #[must_use]
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// Bits of a packed quaternion: `2 + 3 × bits`.
    #[must_use]
    pub fn packed_bits(&self) -> u32 {
        2 + 3 * self.bits
    }

    /// The code of `0`; those of `-1/√2` and `+1/√2` are `0` and `2 × half`.
    fn half(&self) -> u32 {
        (1 << (self.bits - 1)) - 1
    }

    /// The quantisation step of a stored component: `(1/√2) / (2^(bits-1) - 1)`.
    #[must_use]
    #[expect(clippy::cast_possible_truncation, reason = "a small positive value")]
    pub fn step(&self) -> f32 {
        (SMALLEST_THREE_BOUND / f64::from(self.half())) as f32
    }

    /// Packs `q = [x, y, z, w]`: bits `0..2` hold the dropped component's index, then each
    /// of the other three (in order) takes `bits` bits, lowest first.
    #[must_use]
    pub fn compress(&self, q: [f32; 4]) -> u64 {
        let q = normalize(q);
        let mut largest = 0;
        for i in 1..4 {
            if q[i].abs() > q[largest].abs() {
                largest = i;
            }
        }
        let sign = if q[largest] < 0.0 { -1.0 } else { 1.0 };
        let half = f64::from(self.half());
        let mut packed = largest as u64;
        let mut shift = 2;
        for (i, &c) in q.iter().enumerate() {
            if i == largest {
                continue;
            }
            // In [-half, half] for a unit quaternion; clamped against rounding.
            let t = (sign * c / SMALLEST_THREE_BOUND * half).round().clamp(-half, half);
            #[expect(
                clippy::cast_possible_truncation,
                reason = "t + half is a whole number in [0, 2 × half] < 2^20"
            )]
            let code = (t + half) as u64;
            packed |= code << shift;
            shift += self.bits;
        }
        packed
    }

    /// Unpacks what [`compress`](Self::compress) packed. Bits above
    /// [`packed_bits`](Self::packed_bits) are ignored and the unused all-ones code reads as
    /// `+1/√2`, so any `u64` gives a unit quaternion.
    #[must_use]
    pub fn decompress(&self, packed: u64) -> [f32; 4] {
        let largest = usize::from(u8::try_from(packed & 3).unwrap_or(0));
        let mask = (1_u64 << self.bits) - 1;
        let half = f64::from(self.half());
        let mut q = [0.0_f64; 4];
        let mut shift = 2;
        let mut sum = 0.0;
        for (i, c) in q.iter_mut().enumerate() {
            if i == largest {
                continue;
            }
            // At most 2 × half < 2^20: fits a u32.
            let code = ((packed >> shift) & mask).min(u64::from(2 * self.half()));
            let code = f64::from(u32::try_from(code).unwrap_or(0));
            *c = (code - half) / half * SMALLEST_THREE_BOUND;
            sum += *c * *c;
            shift += self.bits;
        }
        q[largest] = (1.0 - sum).max(0.0).sqrt();
        let norm = q.iter().map(|c| c * c).sum::<f64>().sqrt();
        #[expect(
            clippy::cast_possible_truncation,
            reason = "the components of a unit quaternion, in [-1, 1]"
        )]
        q.map(|c| (c / norm) as f32)
    }
}

/// `q` scaled to unit length, in `f64`; the identity if `q` is zero, infinite or NaN.
fn normalize(q: [f32; 4]) -> [f64; 4] {
    let q = q.map(f64::from);
    let norm = q.iter().map(|c| c * c).sum::<f64>().sqrt();
    if norm.is_finite() && norm > 0.0 { q.map(|c| c / norm) } else { [0.0, 0.0, 0.0, 1.0] }
}

/// Compresses the quaternion `[x, y, z, w]` by smallest three at `bits` bits per component
/// (see [`SmallestThree`]).
///
/// # Errors
/// [`QuantizeError::InvalidQuaternionBits`] unless `2 <= bits <= 20`.
pub fn compress_quaternion(q: [f32; 4], bits: u32) -> Result<u64, QuantizeError> {
    Ok(SmallestThree::new(bits)?.compress(q))
}

/// Decompresses what [`compress_quaternion`] packed with the same `bits`.
///
/// # Errors
/// [`QuantizeError::InvalidQuaternionBits`] unless `2 <= bits <= 20`.
pub fn decompress_quaternion(packed: u64, bits: u32) -> Result<[f32; 4], QuantizeError> {
    Ok(SmallestThree::new(bits)?.decompress(packed))
}

/// What a [`BitWriter`] or [`BitReader`] refused; the position is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BitError {
    /// At most 64 bits go in one call.
    #[error("at most 64 bits at a time, not {0}")]
    InvalidWidth(u32),
    /// The value has bits set above the width written.
    #[error("the value does not fit in {0} bits")]
    ValueTooWide(u32),
    /// The writer's buffer has no room for the bits.
    #[error("the buffer is full")]
    BufferFull,
    /// The reader's input ends before the bits.
    #[error("unexpected end of input")]
    UnexpectedEnd,
}

/// Writes values of 0 to 64 bits into a caller's buffer, packed with no padding.
///
/// Bit `i` of the stream is bit `i % 8` of byte `i / 8`, and a value goes lowest bit first. A
/// write overwrites the bits it covers and leaves the rest of the buffer alone, so a reused
/// buffer needs no clearing. A write that does not fit is refused whole
/// ([`BitError::BufferFull`]).
#[derive(Debug)]
pub struct BitWriter<'a> {
    buf: &'a mut [u8],
    bit: usize,
}

impl<'a> BitWriter<'a> {
    /// A writer at the start of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, bit: 0 }
    }

    /// Appends the low `n` bits of `value` (`n <= 64`).
    ///
    /// # Errors
    /// [`BitError::InvalidWidth`] if `n > 64`, [`BitError::ValueTooWide`] if `value` has bits
    /// set at `n` or above, [`BitError::BufferFull`] if the buffer has fewer than `n` bits left.
    pub fn write_bits(&mut self, value: u64, n: u32) -> Result<(), BitError> {
        if n > 64 {
            return Err(BitError::InvalidWidth(n));
        }
        if n < 64 && value >> n != 0 {
            return Err(BitError::ValueTooWide(n));
        }
        let n = n as usize;
        if n > self.remaining_bits() {
            return Err(BitError::BufferFull);
        }
        let mut value = value;
        let mut left = n;
        while left > 0 {
            let (byte, offset) = (self.bit / 8, self.bit % 8);
            let take = (8 - offset).min(left);
            let mask = u8::try_from((1_u16 << take) - 1).unwrap_or(u8::MAX);
            let chunk = u8::try_from(value & u64::from(mask)).unwrap_or(0);
            let slot = &mut self.buf[byte];
            *slot = (*slot & !(mask << offset)) | (chunk << offset);
            value = value.checked_shr(u32::try_from(take).unwrap_or(64)).unwrap_or(0);
            left -= take;
            self.bit += take;
        }
        Ok(())
    }

    /// Goes back to bit `bit` (if before the current position), so what was written after it
    /// is written over: to drop a value that turned out not to fit.
    pub fn rewind(&mut self, bit: usize) {
        self.bit = self.bit.min(bit);
    }

    /// Bits written so far.
    #[must_use]
    pub fn bits_written(&self) -> usize {
        self.bit
    }

    /// Bytes touched so far (the last one perhaps partly): the length to send.
    #[must_use]
    pub fn bytes_written(&self) -> usize {
        self.bit.div_ceil(8)
    }

    /// Bits left in the buffer.
    #[must_use]
    pub fn remaining_bits(&self) -> usize {
        self.buf.len() * 8 - self.bit
    }
}

/// Reads what a [`BitWriter`] wrote, in the same order and widths.
///
/// Reading past the end is a [`BitError::UnexpectedEnd`], never a panic: the input may come
/// from the network.
#[derive(Debug, Clone)]
pub struct BitReader<'a> {
    buf: &'a [u8],
    bit: usize,
}

impl<'a> BitReader<'a> {
    /// A reader at the start of `buf`.
    #[must_use]
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, bit: 0 }
    }

    /// The next `n` bits (`n <= 64`) as the low bits of the result.
    ///
    /// # Errors
    /// [`BitError::InvalidWidth`] if `n > 64`, [`BitError::UnexpectedEnd`] if fewer than `n`
    /// bits are left (nothing is consumed then).
    pub fn read_bits(&mut self, n: u32) -> Result<u64, BitError> {
        if n > 64 {
            return Err(BitError::InvalidWidth(n));
        }
        let n = n as usize;
        if n > self.remaining_bits() {
            return Err(BitError::UnexpectedEnd);
        }
        let mut value = 0_u64;
        let mut done = 0;
        while done < n {
            let (byte, offset) = (self.bit / 8, self.bit % 8);
            let take = (8 - offset).min(n - done);
            let chunk = u64::from(self.buf[byte] >> offset) & ((1 << take) - 1);
            value |= chunk << done;
            done += take;
            self.bit += take;
        }
        Ok(value)
    }

    /// Bits read so far.
    #[must_use]
    pub fn bits_read(&self) -> usize {
        self.bit
    }

    /// Bits left in the input.
    #[must_use]
    pub fn remaining_bits(&self) -> usize {
        self.buf.len() * 8 - self.bit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Zero is the middle code and `±1/√2` the end codes, whatever the width: what makes the
    /// identity round-trip exactly.
    #[test]
    fn smallest_three_codes_zero_and_the_bounds_exactly() {
        for bits in 2..=20 {
            let codec = SmallestThree::new(bits).unwrap();
            let half = u64::from(codec.half());
            let mask = (1 << bits) - 1;
            let identity = codec.compress([0.0, 0.0, 0.0, 1.0]);
            assert_eq!(identity & 3, 3, "{bits}: index of w");
            for i in 0..3 {
                assert_eq!((identity >> (2 + i * bits)) & mask, half, "{bits}");
            }
            let s = std::f32::consts::FRAC_1_SQRT_2;
            let packed = codec.compress([s, -s, 0.0, 0.0]);
            assert_eq!(packed & 3, 0, "{bits}: the first of a tie");
            assert_eq!((packed >> 2) & mask, 0, "{bits}: -1/√2");
            assert_eq!(codec.decompress(packed), [s, -s, 0.0, 0.0]);
        }
    }

    #[test]
    fn normalize_scales_and_falls_back_to_identity() {
        assert_eq!(normalize([0.0, 3.0, 0.0, 4.0]), [0.0, 0.6, 0.0, 0.8]);
        assert_eq!(normalize([0.0; 4]), [0.0, 0.0, 0.0, 1.0]);
        assert_eq!(normalize([f32::MAX; 4]), [0.5; 4]);
        assert_eq!(normalize([f32::NAN, 1.0, 0.0, 0.0]), [0.0, 0.0, 0.0, 1.0]);
    }
}
