//! Snapshot interpolation on virtual time: an object moving in a straight line, its states
//! sent at 20 Hz over a link with jitter and 5 % loss, rendered at 60 Hz.
#![expect(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    reason = "test arithmetic on small counts and virtual times"
)]

use std::time::{Duration, Instant};

use sturnus_object::interpolation::{InterpolationConfig, Pose, SnapshotBuffer};

#[expect(clippy::disallowed_methods, reason = "one base instant; time then advances virtually")]
fn origin() -> Instant {
    Instant::now()
}

/// A seeded generator for the link's loss and jitter (part of the test, not a secret).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 =
            self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

const SPEED: f32 = 3.0; // units per second
const SEND: Duration = Duration::from_millis(50);
const FRAME: Duration = Duration::from_micros(16_667);
const LATENCY: Duration = Duration::from_millis(40);

/// A rendered frame: the x shown, the server time it shows, the frame's time.
type Frame = (f32, f64, Duration);

/// Runs `seconds` of the scene; returns every rendered x with the server time it shows and
/// the real server time at the frame, and the buffer at the end.
fn run(
    seed: u64,
    loss: f64,
    jitter_ms: f64,
    seconds: u32,
) -> (Vec<Frame>, SnapshotBuffer<[f32; 3]>) {
    let start = origin();
    let mut rng = Lcg(seed);
    let mut buffer = SnapshotBuffer::new(InterpolationConfig::for_send_interval(SEND));
    // In flight: (arrival, server time, x).
    let mut flight: Vec<(Instant, Duration, f32)> = Vec::new();
    let mut rendered = Vec::new();
    let end = Duration::from_secs(u64::from(seconds));
    let (mut next_send, mut next_frame) = (Duration::ZERO, Duration::ZERO);
    let mut now = Duration::ZERO;
    while now < end {
        now = next_send.min(next_frame);
        if now == next_send {
            if rng.next() >= loss {
                let jitter = Duration::from_secs_f64(rng.next() * jitter_ms / 1e3);
                flight.push((start + now + LATENCY + jitter, now, SPEED * now.as_secs_f32()));
            }
            next_send += SEND;
        }
        // Deliver what has arrived (in arrival order: jitter reorders).
        flight.sort_by_key(|(at, _, _)| *at);
        while flight.first().is_some_and(|(at, _, _)| *at <= start + now) {
            let (at, server_time, x) = flight.remove(0);
            buffer.insert(at, server_time, [x, 0.0, 0.0]);
        }
        if now == next_frame {
            if let Some([x, _, _]) = buffer.sample(start + now) {
                let shown = buffer.render_time().unwrap().as_secs_f64();
                rendered.push((x, shown, now));
            }
            next_frame += FRAME;
        }
    }
    (rendered, buffer)
}

#[test]
fn a_straight_line_never_steps_back_and_lags_at_most_the_delay_plus_an_interval() {
    for seed in 0..8 {
        let (rendered, buffer) = run(seed, 0.05, 20.0, 30);
        assert!(rendered.len() > 1_500, "seed {seed}: rendered {} frames", rendered.len());
        for pair in rendered.windows(2) {
            assert!(
                pair[1].0 >= pair[0].0,
                "seed {seed}: stepped back from {} to {}",
                pair[0].0,
                pair[1].0
            );
        }
        // After a second of warm-up, the shown position is never further behind the truth
        // than the buffer's delay plus one send interval (plus the link's latency, which no
        // buffer can hide) — and never ahead of it.
        let bound = buffer.delay() + SEND + LATENCY + Duration::from_millis(20);
        for &(x, _, now) in rendered.iter().filter(|(_, _, now)| *now > Duration::from_secs(1)) {
            let truth = SPEED * now.as_secs_f32();
            let lag = (truth - x) / SPEED;
            assert!(lag >= 0.0, "seed {seed}: ahead of the truth by {} s", -lag);
            assert!(
                lag <= bound.as_secs_f32(),
                "seed {seed}: {lag} s behind at {now:?} (bound {bound:?})"
            );
        }
        // The adaptive delay stays a few intervals: three (surviving two losses) plus the
        // measured jitter, which a 20 ms spread keeps under 30 ms.
        assert!(buffer.delay() >= SEND * 3, "{:?}", buffer.delay());
        assert!(buffer.delay() <= SEND * 3 + Duration::from_millis(30), "{:?}", buffer.delay());
    }
}

#[test]
fn heavy_jitter_widens_the_delay_and_still_never_steps_back() {
    // Arrivals spread over 150 ms: the estimates swing, the target render time with them,
    // and the render clock must still only move forward.
    for seed in 0..8 {
        let (rendered, buffer) = run(seed, 0.05, 150.0, 30);
        for pair in rendered.windows(2) {
            assert!(pair[1].1 >= pair[0].1, "seed {seed}: the render clock went back");
            assert!(
                pair[1].0 >= pair[0].0,
                "seed {seed}: stepped back from {} to {}",
                pair[0].0,
                pair[1].0
            );
        }
        assert!(buffer.delay() > SEND * 3 + Duration::from_millis(30), "{:?}", buffer.delay());
    }
}

#[test]
fn two_lost_states_in_a_row_cause_no_stall() {
    // A link that drops every state whose index is 3 or 4 mod 10: two in a row, every half
    // second. With a delay of three intervals the render clock always has a state ahead or
    // extrapolates within its bound, so the value moves every frame after warm-up.
    let start = origin();
    let mut buffer = SnapshotBuffer::new(InterpolationConfig::for_send_interval(SEND));
    let mut last = None;
    let mut frames_still = 0;
    for frame in 0..(10 * 60) {
        let now = FRAME * frame;
        let sent_upto = (now.as_millis() / SEND.as_millis()) as u32;
        for i in 0..=sent_upto {
            let server_time = SEND * i;
            let arrival = server_time + LATENCY;
            if arrival <= now && arrival + FRAME > now && !matches!(i % 10, 3 | 4) {
                buffer.insert(
                    start + arrival,
                    server_time,
                    [SPEED * server_time.as_secs_f32(), 0.0, 0.0],
                );
            }
        }
        if let Some([x, _, _]) = buffer.sample(start + now) {
            if now > Duration::from_secs(1) && last == Some(x) {
                frames_still += 1;
            }
            last = Some(x);
        }
    }
    assert_eq!(frames_still, 0, "the rendered value stood still on {frames_still} frames");
}

#[test]
fn a_teleport_jumps_instead_of_sliding_and_late_states_are_dropped() {
    let start = origin();
    let mut config = InterpolationConfig::for_send_interval(SEND);
    config.teleport_distance = Some(5.0);
    let mut buffer = SnapshotBuffer::new(config);
    for i in 0..20u32 {
        let server_time = SEND * i;
        // At the tenth state the object respawns 100 units away.
        let x = if i < 10 { 0.1 * i as f32 } else { 100.0 + 0.1 * i as f32 };
        buffer.insert(start + server_time + LATENCY, server_time, [x, 0.0, 0.0]);
    }
    let mut seen = Vec::new();
    for frame in 0..120 {
        let now = start + FRAME * frame;
        seen.push(buffer.sample(now).unwrap()[0]);
    }
    // Never a value between the two places: it jumped.
    assert!(seen.iter().all(|x| *x < 2.0 || *x > 99.0), "slid through: {seen:?}");
    assert!(seen.iter().any(|x| *x > 99.0));
    // A state older than what is rendered is dropped and counted.
    let late_before = buffer.late();
    buffer.insert(start + FRAME * 121, SEND * 2, [0.2, 0.0, 0.0]);
    assert_eq!(buffer.late(), late_before + 1);
}

#[test]
fn poses_blend_along_the_shorter_arc() {
    let a = Pose { rotation: [0.0, 0.0, 0.0, 1.0], ..Pose::default() };
    // The same small turn written as -q: the blend must not swing the long way round.
    let half = (0.1f32 / 2.0).sin();
    let b = Pose { rotation: [0.0, 0.0, -half, -(0.1f32 / 2.0).cos()], ..Pose::default() };
    use sturnus_object::interpolation::Interpolate;
    let mid = a.interpolate(&b, 0.5);
    let dot: f32 = mid.rotation.iter().zip(&a.rotation).map(|(x, y)| x * y).sum();
    assert!(dot.abs() > 0.99, "{mid:?}");
    let norm: f32 = mid.rotation.iter().map(|c| c * c).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5);
}

/// A sender whose byte budget makes a value wait its turn sends it every third interval: the
/// delay widens to three of those gaps, so rendering does not run dry between them.
#[test]
fn states_spaced_wider_than_the_send_interval_widen_the_delay() {
    let start = origin();
    let mut buffer = SnapshotBuffer::<[f32; 1]>::new(InterpolationConfig::for_send_interval(SEND));
    let gap = SEND * 3;
    let mut dry = 0;
    let mut last = f32::MIN;
    for k in 0..200_u32 {
        let server_time = gap * k;
        buffer.insert(start + server_time + LATENCY, server_time, [server_time.as_secs_f32()]);
        // Render nine frames between arrivals.
        for f in 1..=9_u32 {
            let now = start + server_time + LATENCY + gap * f / 9;
            let [x] = buffer.sample(now).unwrap();
            if k > 20 && x == last {
                dry += 1; // the value stood still: nothing to blend towards
            }
            last = x;
        }
    }
    assert!(buffer.delay() >= gap * 3 - Duration::from_millis(20), "{:?}", buffer.delay());
    assert_eq!(dry, 0, "rendering ran dry {dry} times");
}
