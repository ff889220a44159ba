//! The compression building blocks of `sturnus_object::quantize`: error bounds over many
//! seeded random values, the smallest-three rotation error, bit packing round trips and
//! truncated input, and Gaffer's cube layout.
#![expect(
    clippy::cast_possible_truncation,
    reason = "test data: f64 samples narrowed to the f32 values under test"
)]

use sturnus_object::quantize::{
    BitError, BitReader, BitWriter, QuantizeError, Quantizer, SmallestThree, compress_quaternion,
    decompress_quaternion,
};

/// A small seeded generator (SplitMix64): deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1_u64 << 53) as f64
    }

    /// Uniform in [0, n).
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A uniformly random unit quaternion (Shoemake).
    fn quaternion(&mut self) -> [f32; 4] {
        let (u1, u2, u3) = (self.unit(), self.unit(), self.unit());
        let tau = std::f64::consts::TAU;
        let (a, b) = ((1.0 - u1).sqrt(), u1.sqrt());
        [a * (tau * u2).sin(), a * (tau * u2).cos(), b * (tau * u3).sin(), b * (tau * u3).cos()]
            .map(|c| c as f32)
    }
}

// ---------------------------------------------------------------- Quantizer

/// Every value inside the bounds comes back within half a step (plus one `f32` rounding of
/// the largest bound's magnitude).
#[test]
fn quantizer_error_is_at_most_half_a_step() {
    let configs = [
        Quantizer::with_precision(-256.0, 255.0, 1.0 / 512.0).unwrap(),
        Quantizer::with_precision(0.0, 31.0, 1.0 / 512.0).unwrap(),
        Quantizer::new(-1.0, 1.0, 1).unwrap(),
        Quantizer::new(-1.0, 1.0, 2).unwrap(),
        Quantizer::new(0.0, 1.0, 8).unwrap(),
        Quantizer::new(-32.0, 31.0, 11).unwrap(),
        Quantizer::new(-1.0e6, 1.0e6, 16).unwrap(),
        Quantizer::new(100.0, 100.5, 24).unwrap(),
        Quantizer::new(0.0, 1.0, 32).unwrap(),
    ];
    let mut rng = Rng(1);
    for q in configs {
        let (min, max) = (f64::from(q.min()), f64::from(q.max()));
        let slack = f64::from(f32::EPSILON) * min.abs().max(max.abs());
        let bound = f64::from(q.step()) / 2.0 + slack;
        let mut worst = 0.0_f64;
        for _ in 0..100_000 {
            let v = (min + rng.unit() * (max - min)) as f32;
            let code = q.quantize(v);
            assert!(code <= q.max_code(), "{q:?}: code {code} for {v}");
            let err = (f64::from(q.dequantize(code)) - f64::from(v)).abs();
            worst = worst.max(err);
            assert!(err <= bound, "{q:?}: {v} came back {err} away, bound {bound}");
        }
        // The bound is not vacuous: some value is off by more than a quarter of a step.
        if f64::from(q.step()) > 100.0 * slack {
            assert!(worst > f64::from(q.step()) / 4.0, "{q:?}: worst {worst}");
        }
    }
}

/// `with_precision` keeps its promise in the caller's terms: error at most the requested
/// step / 2, with the fewest bits that can.
#[test]
fn with_precision_picks_the_fewest_bits_for_the_step() {
    let mut rng = Rng(2);
    for _ in 0..2_000 {
        let min = (rng.unit() * 200.0 - 100.0) as f32;
        let max = min + (rng.unit() * 100.0 + 0.01) as f32;
        let step = (rng.unit() * 0.1 + 1e-4) as f32;
        let q = Quantizer::with_precision(min, max, step).unwrap();
        assert!(q.step() <= step * (1.0 + f32::EPSILON), "{q:?} step over {step}");
        if q.bits() > 1 {
            // One bit fewer would not do.
            let fewer = Quantizer::new(min, max, q.bits() - 1).unwrap();
            assert!(fewer.step() > step, "{q:?}: {} bits would do for {step}", q.bits() - 1);
        }
        let slack = f32::EPSILON * min.abs().max(max.abs());
        for _ in 0..50 {
            let v = min + (rng.unit() as f32) * (max - min);
            let err = (q.dequantize(q.quantize(v)) - v).abs();
            assert!(err <= step / 2.0 + slack, "{q:?}: {v} off by {err} > {step}/2");
        }
    }
    // Gaffer: 512 values per metre over [-256, 255] m and [0, 31] m.
    let xy = Quantizer::with_precision(-256.0, 255.0, 1.0 / 512.0).unwrap();
    let z = Quantizer::with_precision(0.0, 31.0, 1.0 / 512.0).unwrap();
    assert_eq!((xy.bits(), z.bits()), (18, 14));
    // Exact powers of two: 255 intervals fit 8 bits, 256 need 9.
    assert_eq!(Quantizer::with_precision(0.0, 255.0, 1.0).unwrap().bits(), 8);
    assert_eq!(Quantizer::with_precision(0.0, 256.0, 1.0).unwrap().bits(), 9);
    assert_eq!(Quantizer::with_precision(0.0, 0.5, 1.0).unwrap().bits(), 1);
}

#[test]
fn quantizer_clamps_and_maps_nan_to_min() {
    let q = Quantizer::new(-2.0, 6.0, 10).unwrap();
    assert_eq!(q.max_code(), 1023);
    assert_eq!(q.quantize(-2.0), 0);
    assert_eq!(q.quantize(6.0), 1023);
    assert_eq!(q.quantize(-2.5), 0);
    assert_eq!(q.quantize(1e30), 1023);
    assert_eq!(q.quantize(f32::NEG_INFINITY), 0);
    assert_eq!(q.quantize(f32::INFINITY), 1023);
    assert_eq!(q.quantize(f32::NAN), 0);
    assert_eq!(q.quantize(-f32::NAN), 0);
    assert_eq!(q.dequantize(0), -2.0);
    assert_eq!(q.dequantize(1023), 6.0);
    assert_eq!(q.dequantize(1024), 6.0);
    assert_eq!(q.dequantize(u32::MAX), 6.0);
    let full = Quantizer::new(-1.0, 1.0, 32).unwrap();
    assert_eq!(full.max_code(), u32::MAX);
    assert_eq!(full.quantize(1.0), u32::MAX);
    assert_eq!(full.dequantize(u32::MAX), 1.0);
    // Extreme but valid bounds do not overflow.
    let wide = Quantizer::new(f32::MIN, f32::MAX, 8).unwrap();
    assert_eq!(wide.quantize(f32::MAX), 255);
    assert_eq!(wide.dequantize(255), f32::MAX);
    assert!(wide.step().is_finite());
}

#[test]
fn quantizer_configuration_errors() {
    use QuantizeError::*;
    assert!(matches!(Quantizer::new(1.0, 1.0, 8), Err(InvalidBounds { .. })));
    assert!(matches!(Quantizer::new(2.0, 1.0, 8), Err(InvalidBounds { .. })));
    assert!(matches!(Quantizer::new(f32::NAN, 1.0, 8), Err(InvalidBounds { .. })));
    assert!(matches!(Quantizer::new(0.0, f32::INFINITY, 8), Err(InvalidBounds { .. })));
    assert_eq!(Quantizer::new(0.0, 1.0, 0), Err(InvalidBits(0)));
    assert_eq!(Quantizer::new(0.0, 1.0, 33), Err(InvalidBits(33)));
    assert_eq!(Quantizer::with_precision(0.0, 1.0, 0.0), Err(InvalidStep(0.0)));
    assert_eq!(Quantizer::with_precision(0.0, 1.0, -1.0), Err(InvalidStep(-1.0)));
    assert!(matches!(Quantizer::with_precision(0.0, 1.0, f32::NAN), Err(InvalidStep(_))));
    assert!(matches!(Quantizer::with_precision(1.0, 0.0, 0.1), Err(InvalidBounds { .. })));
    assert_eq!(Quantizer::with_precision(0.0, 1e6, 1e-6), Err(TooPrecise));
    assert_eq!(Quantizer::with_precision(0.0, 1.0, f32::MIN_POSITIVE), Err(TooPrecise));
}

// ---------------------------------------------------------------- smallest three

/// The rotation angle between two quaternions, in radians, computed stably in `f64`
/// (`2 × 2·atan2(|a − b|, |a + b|)` with `b` sign-aligned to `a`).
fn rotation_angle(a: [f32; 4], b: [f32; 4]) -> f64 {
    let unit = |q: [f32; 4]| {
        let q = q.map(f64::from);
        let n = q.iter().map(|c| c * c).sum::<f64>().sqrt();
        q.map(|c| c / n)
    };
    let (a, mut b) = (unit(a), unit(b));
    if a.iter().zip(&b).map(|(x, y)| x * y).sum::<f64>() < 0.0 {
        b = b.map(|c| -c);
    }
    let diff = a.iter().zip(&b).map(|(x, y)| (x - y).powi(2)).sum::<f64>().sqrt();
    let sum = a.iter().zip(&b).map(|(x, y)| (x + y).powi(2)).sum::<f64>().sqrt();
    4.0 * diff.atan2(sum)
}

/// The worst rotation error over many random rotations.
fn worst_angle(bits: u32, samples: usize, seed: u64) -> f64 {
    let codec = SmallestThree::new(bits).unwrap();
    let mut rng = Rng(seed);
    let mut worst = 0.0_f64;
    for _ in 0..samples {
        let q = rng.quaternion();
        let back = codec.decompress(codec.compress(q));
        worst = worst.max(rotation_angle(q, back));
    }
    worst
}

/// The analytic bound: each stored component is off by at most s/2 (s the step), so the three
/// by at most √3·s/2; recomputing the dropped component (≥ 1/2) at most doubles the distance
/// on the unit sphere, and a rotation angle is twice the angle between the quaternions:
/// 4 × √3·s/2 = 2√3·s radians (0.55° at 9 bits). One per cent covers second-order terms.
fn angle_bound(bits: u32) -> f64 {
    let step = f64::from(SmallestThree::new(bits).unwrap().step());
    2.0 * 3.0_f64.sqrt() * step * 1.01
}

#[test]
fn smallest_three_rotation_error_is_bounded() {
    let worst9 = worst_angle(9, 200_000, 3);
    let worst15 = worst_angle(15, 200_000, 4);
    println!(
        "smallest three: worst rotation error {:.4}° at 9 bits (bound {:.4}°), {:.6}° at 15 bits (bound {:.6}°)",
        worst9.to_degrees(),
        angle_bound(9).to_degrees(),
        worst15.to_degrees(),
        angle_bound(15).to_degrees()
    );
    assert!(worst9 <= angle_bound(9), "9 bits: {}°", worst9.to_degrees());
    assert!(worst15 <= angle_bound(15), "15 bits: {}°", worst15.to_degrees());
    // Six more bits are ~64× finer (the step shrinks from (1/√2)/255 to (1/√2)/16383).
    assert!(worst15 < worst9 / 32.0, "15 bits {worst15} vs 9 bits {worst9}");
    // Not vacuous: the error is a sizeable part of the bound.
    assert!(worst9 > angle_bound(9) / 4.0, "9 bits: {}°", worst9.to_degrees());
    for bits in 2..=20 {
        let worst = worst_angle(bits, 5_000, u64::from(bits));
        assert!(worst <= angle_bound(bits), "{bits} bits: {}°", worst.to_degrees());
    }
}

#[test]
fn smallest_three_q_and_minus_q_compress_the_same() {
    let codec = SmallestThree::new(9).unwrap();
    let mut rng = Rng(5);
    for _ in 0..50_000 {
        let q = rng.quaternion();
        let packed = codec.compress(q);
        assert_eq!(codec.compress(q.map(|c| -c)), packed, "{q:?}");
        // Scaling by a power of two is exact, so normalisation gives the same code.
        assert_eq!(codec.compress(q.map(|c| c * 4.0)), packed, "{q:?}");
        assert_eq!(codec.compress(q.map(|c| c * 0.125)), packed, "{q:?}");
        assert!(packed < 1 << codec.packed_bits());
    }
}

#[test]
fn smallest_three_exact_round_trips_and_degenerate_input() {
    for bits in 2..=20 {
        let codec = SmallestThree::new(bits).unwrap();
        // The identity and the 180° turns about each axis, either sign.
        for i in 0..4 {
            let mut q = [0.0_f32; 4];
            q[i] = 1.0;
            assert_eq!(codec.decompress(codec.compress(q)), q, "{bits} bits, {q:?}");
            let minus = q.map(|c| -c);
            assert_eq!(codec.decompress(codec.compress(minus)), q, "{bits} bits, {q:?}");
        }
        let identity = codec.compress([0.0, 0.0, 0.0, 1.0]);
        for bad in [
            [0.0; 4],
            [f32::NAN, 0.0, 0.0, 1.0],
            [f32::INFINITY, 0.0, 0.0, 0.0],
            [1.0, f32::NEG_INFINITY, 0.0, 0.0],
            [f32::NAN; 4],
        ] {
            assert_eq!(codec.compress(bad), identity, "{bits} bits, {bad:?}");
        }
    }
    // A quaternion with every component equal (a tie for the largest) round-trips closely.
    let codec = SmallestThree::new(9).unwrap();
    let half = [0.5_f32, -0.5, 0.5, -0.5];
    assert!(rotation_angle(half, codec.decompress(codec.compress(half))) <= angle_bound(9));
    // The free functions agree with the codec and refuse bad widths.
    let q = Rng(6).quaternion();
    let packed = compress_quaternion(q, 9).unwrap();
    assert_eq!(packed, codec.compress(q));
    assert_eq!(decompress_quaternion(packed, 9).unwrap(), codec.decompress(packed));
    for bits in [0, 1, 21, 64] {
        assert_eq!(SmallestThree::new(bits), Err(QuantizeError::InvalidQuaternionBits(bits)));
        assert!(compress_quaternion(q, bits).is_err());
        assert!(decompress_quaternion(packed, bits).is_err());
    }
}

/// Any 64-bit value (network input) decompresses to a finite unit quaternion.
#[test]
fn smallest_three_decompresses_any_input_to_a_unit_quaternion() {
    let mut rng = Rng(7);
    for bits in [2, 9, 15, 20] {
        let codec = SmallestThree::new(bits).unwrap();
        let specials = [0, u64::MAX, (1 << codec.packed_bits()) - 1, 3, !3];
        for packed in specials.into_iter().chain((0..20_000).map(|_| rng.next_u64())) {
            let q = codec.decompress(packed);
            let norm = q.iter().map(|&c| f64::from(c).powi(2)).sum::<f64>().sqrt();
            assert!(q.iter().all(|c| c.is_finite()), "{bits}: {packed:#x} → {q:?}");
            assert!((norm - 1.0).abs() < 1e-6, "{bits}: {packed:#x} → {q:?}");
        }
    }
}

// ---------------------------------------------------------------- bits

/// Random widths (0 to 64) and values written, then read back the same.
#[test]
fn bits_round_trip() {
    let mut rng = Rng(8);
    let mut buf = [0_u8; 512];
    let mut fields = Vec::new();
    for round in 0..500 {
        // Alternately a clean and a dirty buffer: the writer needs no clearing.
        buf.fill(if round % 2 == 0 { 0 } else { 0xA5 });
        fields.clear();
        let mut w = BitWriter::new(&mut buf);
        loop {
            let n = u32::try_from(rng.below(65)).unwrap();
            let value = if n == 0 { 0 } else { rng.next_u64() >> (64 - n) };
            match w.write_bits(value, n) {
                Ok(()) => fields.push((value, n)),
                Err(BitError::BufferFull) => break,
                Err(e) => panic!("{e}"),
            }
        }
        let written = w.bits_written();
        assert_eq!(written, fields.iter().map(|&(_, n)| n as usize).sum::<usize>());
        let mut r = BitReader::new(&buf);
        for &(value, n) in &fields {
            assert_eq!(r.read_bits(n), Ok(value), "{n} bits at {}", r.bits_read());
        }
        assert_eq!(r.bits_read(), written);
    }
}

#[test]
fn bits_boundaries() {
    let mut buf = [0_u8; 9];
    let mut w = BitWriter::new(&mut buf);
    assert_eq!(w.write_bits(0, 0), Ok(()));
    assert_eq!(w.write_bits(1, 1), Ok(()));
    assert_eq!(w.write_bits(u64::MAX, 64), Ok(()));
    assert_eq!(w.bits_written(), 65);
    assert_eq!(w.bytes_written(), 9);
    assert_eq!(w.write_bits(0, 65), Err(BitError::InvalidWidth(65)));
    assert_eq!(w.write_bits(4, 2), Err(BitError::ValueTooWide(2)));
    assert_eq!(w.write_bits(1, 0), Err(BitError::ValueTooWide(0)));
    assert_eq!(w.write_bits(0b101_0101, 7), Ok(()));
    assert_eq!(w.remaining_bits(), 0);
    // A full buffer refuses, and refusals move nothing.
    assert_eq!(w.write_bits(0, 1), Err(BitError::BufferFull));
    assert_eq!(w.write_bits(0, 0), Ok(()));
    assert_eq!(w.bits_written(), 72);
    // Lowest bit first, bit i in byte i / 8.
    assert_eq!(buf, [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0b1010_1011]);

    let mut r = BitReader::new(&buf);
    assert_eq!(r.read_bits(65), Err(BitError::InvalidWidth(65)));
    assert_eq!(r.read_bits(0), Ok(0));
    assert_eq!(r.read_bits(1), Ok(1));
    assert_eq!(r.read_bits(64), Ok(u64::MAX));
    assert_eq!(r.read_bits(8), Err(BitError::UnexpectedEnd));
    assert_eq!(r.bits_read(), 65);
    assert_eq!(r.read_bits(7), Ok(0b101_0101));
    assert_eq!(r.read_bits(1), Err(BitError::UnexpectedEnd));
    assert_eq!(r.read_bits(0), Ok(0));

    // A dirty buffer: written bits are overwritten, the others left alone.
    let mut dirty = [0xFF_u8; 3];
    let mut w = BitWriter::new(&mut dirty);
    w.write_bits(0, 3).unwrap();
    w.write_bits(0b1_0010, 5).unwrap();
    w.write_bits(0, 9).unwrap();
    assert_eq!(dirty, [0b1001_0000, 0, 0b1111_1110]);
    let mut r = BitReader::new(&dirty);
    assert_eq!((r.read_bits(3), r.read_bits(5), r.read_bits(9)), (Ok(0), Ok(0b1_0010), Ok(0)));

    let mut empty: [u8; 0] = [];
    assert_eq!(BitWriter::new(&mut empty).write_bits(0, 1), Err(BitError::BufferFull));
    assert_eq!(BitReader::new(&[]).read_bits(1), Err(BitError::UnexpectedEnd));
}

/// A stream cut at every length reads right up to the cut, then reports the end, never
/// panicking; random bytes read with random widths never overrun.
#[test]
fn bits_truncated_input() {
    let mut rng = Rng(9);
    for _ in 0..200 {
        let mut buf = [0_u8; 20 * 8];
        let mut fields = Vec::new();
        let mut w = BitWriter::new(&mut buf);
        for _ in 0..20 {
            let n = u32::try_from(rng.below(65)).unwrap();
            let value = if n == 0 { 0 } else { rng.next_u64() >> (64 - n) };
            w.write_bits(value, n).unwrap();
            fields.push((value, n));
        }
        let len = w.bytes_written();
        for cut in 0..=len {
            let mut r = BitReader::new(&buf[..cut]);
            let mut at = 0;
            for &(value, n) in &fields {
                let got = r.read_bits(n);
                if at + n as usize <= cut * 8 {
                    assert_eq!(got, Ok(value));
                    at += n as usize;
                } else {
                    assert_eq!(got, Err(BitError::UnexpectedEnd));
                    assert_eq!(r.bits_read(), at);
                    break;
                }
            }
        }
    }
    for _ in 0..2_000 {
        let bytes: Vec<u8> = (0..rng.below(16)).map(|_| rng.next_u64().to_le_bytes()[0]).collect();
        let mut r = BitReader::new(&bytes);
        loop {
            let n = u32::try_from(rng.below(70)).unwrap();
            match r.read_bits(n) {
                Ok(v) => assert!(n == 64 || v >> n == 0),
                Err(BitError::InvalidWidth(_)) => assert!(n > 64),
                Err(BitError::UnexpectedEnd) => break,
                Err(e) => panic!("{e}"),
            }
            assert!(r.bits_read() <= bytes.len() * 8);
        }
    }
}

// ---------------------------------------------------------------- Gaffer's cube

/// Gaffer's "Snapshot Compression" layout: position at 512 values per metre (18/18/14 bits)
/// and orientation by smallest three at 9 bits (29 bits) make 79 bits, 80 with the "at rest"
/// bit: one cube fits 10 bytes, and comes back within the precision.
#[test]
fn gaffer_cube_packs_in_80_bits() {
    let xy = Quantizer::with_precision(-256.0, 255.0, 1.0 / 512.0).unwrap();
    let z = Quantizer::with_precision(0.0, 31.0, 1.0 / 512.0).unwrap();
    let rotation = SmallestThree::new(9).unwrap();
    assert_eq!(xy.bits() * 2 + z.bits(), 50);
    assert_eq!(rotation.packed_bits(), 29);

    let mut rng = Rng(10);
    for _ in 0..10_000 {
        let position = [
            (rng.unit() * 511.0 - 256.0) as f32,
            (rng.unit() * 511.0 - 256.0) as f32,
            (rng.unit() * 31.0) as f32,
        ];
        let orientation = rng.quaternion();
        let at_rest = rng.below(2) == 1;

        let mut buf = [0_u8; 16];
        let mut w = BitWriter::new(&mut buf);
        w.write_bits(u64::from(at_rest), 1).unwrap();
        for (q, v) in [(xy, position[0]), (xy, position[1]), (z, position[2])] {
            w.write_bits(u64::from(q.quantize(v)), q.bits()).unwrap();
        }
        w.write_bits(rotation.compress(orientation), rotation.packed_bits()).unwrap();
        assert!((79..=80).contains(&w.bits_written()), "{} bits", w.bits_written());
        assert_eq!(w.bits_written(), 80);
        assert_eq!(w.bytes_written(), 10);

        let len = w.bytes_written();
        let mut r = BitReader::new(&buf[..len]);
        assert_eq!(r.read_bits(1), Ok(u64::from(at_rest)));
        for (q, v) in [(xy, position[0]), (xy, position[1]), (z, position[2])] {
            let code = u32::try_from(r.read_bits(q.bits()).unwrap()).unwrap();
            let err = (q.dequantize(code) - v).abs();
            assert!(err <= 1.0 / 1024.0 + 256.0 * f32::EPSILON, "{v} off by {err}");
        }
        let back = rotation.decompress(r.read_bits(rotation.packed_bits()).unwrap());
        assert!(rotation_angle(orientation, back) <= angle_bound(9));
        assert_eq!(r.remaining_bits(), 0);
    }
}
