//! The priority accumulator under a byte budget: the budget holds, nothing starves, important
//! candidates are in every packet, nearer ones get proportionally more updates, a candidate
//! too large for any tick is still sent, and steady state allocates nothing.

use std::time::Duration;

use sturnus_object::priority::{ByteBudget, Dirty, PriorityError, PriorityScheduler};
use sturnus_testkit::counting::{Counting, allocations_in};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// 60 Hz.
const TICK: Duration = Duration::from_nanos(16_666_667);
/// 256 kbit/s = 32,000 bytes/s.
const KBPS: u32 = 256;

fn tick_bytes() -> f64 {
    f64::from(KBPS) * 1000.0 / 8.0 * TICK.as_secs_f64()
}

/// Runs `ticks` ticks of `candidates` (all dirty, `bytes(i)` each, scale `scale(i)`, `important`
/// for those that are); returns, per candidate, the ticks at which it was selected, and checks
/// the budget every tick. Returns the total bytes selected too.
fn run(
    candidates: u32,
    ticks: u32,
    kbps: u32,
    bytes: impl Fn(u32) -> usize,
    scale: impl Fn(u32) -> f32,
    important: impl Fn(u32) -> bool,
) -> (Vec<Vec<u32>>, usize, Vec<usize>) {
    let mut scheduler = PriorityScheduler::new();
    for i in 0..candidates {
        scheduler.register(i, 1.0).unwrap();
    }
    let mut budget = ByteBudget::new(kbps);
    let mut sent = vec![Vec::new(); candidates as usize];
    let mut out = Vec::new();
    let mut total = 0;
    let mut per_tick = Vec::new();
    for t in 0..ticks {
        scheduler.begin_tick(TICK);
        for i in 0..candidates {
            let mut dirty = Dirty::new(bytes(i)).scaled(scale(i));
            if important(i) {
                dirty = dirty.important();
            }
            assert!(scheduler.mark(i, dirty));
        }
        let available = budget.refill(TICK);
        let used = scheduler.select(available, &mut out);
        budget.spend(used);
        assert_eq!(used, out.iter().map(|&i| bytes(i)).sum::<usize>());
        for &i in &out {
            sent[i as usize].push(t);
        }
        total += used;
        per_tick.push(used);
    }
    (sent, total, per_tick)
}

/// The longest gap, in ticks, between consecutive selections (from tick -1, and to the end).
fn max_wait(sent: &[u32], ticks: u32) -> u32 {
    let mut last = -1_i64;
    let mut worst = 0;
    for &t in sent.iter().chain(std::iter::once(&ticks)) {
        worst = worst.max(i64::from(t) - last);
        last = i64::from(t);
    }
    u32::try_from(worst).unwrap()
}

/// (a) 1,000 dirty candidates of 12 bytes at 256 kbit/s and 60 Hz (533⅓ bytes a tick): every
/// tick within what the bucket granted (at most two ticks' worth), the total within the rate,
/// nearly all of it used, and every candidate sent at least every ⌈1000 × 12 / 533⅓⌉ = 23
/// ticks, plus one of slack.
#[test]
fn budget_holds_and_nothing_starves() {
    let ticks = 600;
    let (sent, total, per_tick) = run(1000, ticks, KBPS, |_| 12, |_| 1.0, |_| false);
    let per = tick_bytes();
    for (t, &used) in per_tick.iter().enumerate() {
        assert!(f64::from(u32::try_from(used).unwrap()) <= 2.0 * per, "tick {t}: {used} bytes");
    }
    let granted = per * f64::from(ticks);
    let total = f64::from(u32::try_from(total).unwrap());
    assert!(total <= granted, "{total} bytes selected, {granted} granted");
    assert!(total >= granted - 12.0 * 2.0, "{total} of {granted} bytes used");
    // A round of everyone: ⌈12,000 / 533⅓⌉ = 23 ticks; one of slack.
    assert_eq!((1000.0 * 12.0 / per).ceil(), 23.0);
    let bound = 23 + 1;
    let mut worst = 0;
    for (i, s) in sent.iter().enumerate() {
        let wait = max_wait(s, ticks);
        worst = worst.max(wait);
        assert!(wait <= bound, "candidate {i} waited {wait} ticks (bound {bound})");
    }
    eprintln!("worst wait {worst} ticks, {total} of {granted} bytes");
}

/// (b) An important candidate (the locally owned object) is in every tick's selection, even
/// with a lower base priority than everything else and a budget that is always fully used.
#[test]
fn important_is_in_every_packet() {
    let ticks = 300;
    let (sent, _, _) =
        run(1000, ticks, KBPS, |_| 12, |i| if i == 500 { 0.01 } else { 1.0 }, |i| i == 500);
    assert_eq!(sent[500], (0..ticks).collect::<Vec<_>>());
}

/// (c) Nearer candidates (scale 2) get twice the updates of far ones (scale 1): 100 of each,
/// room for about 10 a tick.
#[test]
fn nearer_get_proportionally_more() {
    let ticks = 1200;
    // 10 × 12 bytes a tick = 120 bytes = 57.6 kbit/s at 60 Hz; 58 leaves a little carry.
    let (sent, _, _) = run(200, ticks, 58, |_| 12, |i| if i < 100 { 2.0 } else { 1.0 }, |_| false);
    let near: usize = sent[..100].iter().map(Vec::len).sum();
    let far: usize = sent[100..].iter().map(Vec::len).sum();
    let ratio = near as f64 / far as f64;
    assert!((1.8..=2.2).contains(&ratio), "near {near}, far {far}: ratio {ratio}");
    eprintln!("near {near}, far {far}");
    // And within each group, fairly shared: no far one starves either.
    let (min, max) =
        sent[100..].iter().map(Vec::len).fold((usize::MAX, 0), |(a, b), n| (a.min(n), b.max(n)));
    assert!(min * 10 >= max * 9, "far candidates got {min}..={max} updates");
}

/// (d) A candidate of 2,000 bytes, larger than any tick's budget (at most 1,066 bytes with the
/// carry), among 1,000 small ones: it is sent alone, regularly, and the rate still holds over
/// time (the overuse is debt: at most one bucket plus one candidate beyond the rate).
#[test]
fn too_large_for_a_tick_is_sent_alone_eventually() {
    let ticks = 1200;
    let big = 1000;
    let (sent, total, _) =
        run(1001, ticks, KBPS, |i| if i == big { 2000 } else { 12 }, |_| 1.0, |_| false);
    assert!(sent[big as usize].len() >= 10, "sent {} times", sent[big as usize].len());
    let wait = max_wait(&sent[big as usize], ticks);
    eprintln!("big sent {} times, worst wait {wait}, {total} bytes", sent[big as usize].len());
    // A round of everyone is 1,000 × 12 + 2,000 = 14,000 bytes: ⌈14,000 / 533⅓⌉ = 27 ticks,
    // plus one of slack, for the big one and the small ones alike.
    assert!(wait <= 28, "the big one waited {wait} ticks");
    // Alone whenever it goes.
    for &t in &sent[big as usize] {
        for (i, s) in sent.iter().enumerate() {
            assert!(i == big as usize || !s.contains(&t), "{i} went with the big one at {t}");
        }
    }
    let per = tick_bytes();
    let bound = per * f64::from(ticks) + 2.0 * per + 2000.0;
    assert!((total as f64) <= bound, "{total} bytes, bound {bound}");
    // And the small ones are not starved by it.
    for s in &sent[..big as usize] {
        assert!(max_wait(s, ticks) <= 28);
    }
}

/// A candidate that fits a tick but not what is left of it waits at the head of the line (no
/// smaller one overtakes it) and goes the next tick, with the carried-over bytes.
#[test]
fn a_large_one_keeps_its_place_in_line() {
    let mut scheduler = PriorityScheduler::new();
    scheduler.register("big", 2.0).unwrap();
    scheduler.register("small", 1.0).unwrap();
    scheduler.register("important", 1.0).unwrap();
    scheduler.register("tiny", 0.5).unwrap();
    let mut out = Vec::new();
    scheduler.begin_tick(TICK);
    scheduler.mark("important", Dirty::new(60).important());
    scheduler.mark("big", Dirty::new(80));
    scheduler.mark("small", Dirty::new(10));
    // 100 bytes: the important one takes 60, the big one (first in line) does not fit the 40
    // left but some budget is left, so it goes alone over budget (rule 4).
    assert_eq!(scheduler.select(100, &mut out), 140);
    assert_eq!(out, ["important", "big"]);
    assert_eq!(scheduler.accumulated("big"), Some(0.0));
    scheduler.begin_tick(TICK);
    scheduler.mark("big", Dirty::new(80));
    scheduler.mark("small", Dirty::new(10));
    scheduler.mark("tiny", Dirty::new(3));
    // Now "small" is first (it waited); "big" does not fit the 5 left and ends the selection:
    // "tiny", last in line, would fit but does not overtake it.
    assert_eq!(scheduler.select(15, &mut out), 10);
    assert_eq!(out, ["small"]);
    assert!(scheduler.accumulated("big").unwrap() > 0.0);
    assert_eq!(scheduler.waited("big"), Some(1));
    // Nothing left at all: nothing goes, not even alone.
    scheduler.begin_tick(TICK);
    scheduler.mark("big", Dirty::new(80));
    assert_eq!(scheduler.select(0, &mut out), 0);
    assert!(out.is_empty());
}

/// Unmarked candidates neither accumulate nor go; removing and registering keep the index.
#[test]
fn unmarked_removed_and_bad_configuration() {
    let mut scheduler = PriorityScheduler::new();
    for i in 0..5_u32 {
        scheduler.register(i, 1.0).unwrap();
    }
    assert_eq!(
        scheduler.register(9, f32::NAN).unwrap_err().to_string(),
        PriorityError::BasePriority(f32::NAN).to_string()
    );
    assert!(scheduler.register(9, -1.0).is_err());
    assert!(scheduler.register(9, f32::INFINITY).is_err());
    assert!(scheduler.remove(1));
    assert!(!scheduler.remove(1));
    assert_eq!(scheduler.len(), 4);
    let mut out = Vec::new();
    scheduler.begin_tick(TICK);
    assert!(!scheduler.mark(1, Dirty::new(1)));
    assert!(scheduler.mark(4, Dirty::new(1).scaled(f32::NAN)));
    assert!(scheduler.mark(3, Dirty::new(1).scaled(f32::INFINITY)));
    assert_eq!(scheduler.select(1, &mut out), 1);
    assert_eq!(out, [3]);
    assert_eq!(scheduler.accumulated(0), Some(0.0));
    assert_eq!(scheduler.accumulated(4), Some(0.0));
    assert_eq!(scheduler.waited(4), Some(1));
    // A zero base priority stays at zero even at an infinite scale (0 × ∞ is not NaN here).
    scheduler.register(0, 0.0).unwrap();
    scheduler.begin_tick(TICK);
    scheduler.mark(0, Dirty::new(1).scaled(f32::INFINITY));
    scheduler.mark(2, Dirty::new(1));
    assert_eq!(scheduler.select(1, &mut out), 1);
    assert_eq!(out, [2]);
    assert_eq!(scheduler.accumulated(0), Some(0.0));
    // The marks are consumed: a second select takes nothing.
    assert_eq!(scheduler.select(100, &mut out), 0);
    assert!(out.is_empty());
}

/// The bucket carries at most one tick's worth extra, and debt is paid before anything more.
#[test]
fn byte_budget_carries_and_caps() {
    let mut budget = ByteBudget::new(KBPS);
    assert_eq!(budget.refill(TICK), 533);
    assert_eq!(budget.refill(TICK), 1066);
    assert_eq!(budget.refill(TICK), 1066);
    budget.spend(3000);
    assert_eq!(budget.available(), 0);
    assert_eq!(budget.refill(TICK), 0);
    assert_eq!(budget.refill(TICK), 0);
    assert_eq!(budget.refill(TICK), 0);
    assert_eq!(budget.refill(TICK), 200);
    budget.set_kbps(128);
    assert_eq!(budget.bytes_per_second(), 16_000.0);
}

/// (e) Steady state allocates nothing: register once, then tick after tick of marking and
/// selecting (the output vector reused).
#[test]
fn steady_state_allocates_nothing() {
    let mut scheduler = PriorityScheduler::new();
    for i in 0..1000_u32 {
        scheduler.register(i, 1.0 + (i % 3) as f32).unwrap();
    }
    let mut budget = ByteBudget::new(KBPS);
    let mut out = Vec::new();
    let mut tick = |scheduler: &mut PriorityScheduler<u32>, out: &mut Vec<u32>, t: u32| {
        scheduler.begin_tick(TICK);
        scheduler.mark(7, Dirty::new(40).important());
        for i in 0..1000 {
            if (i + t) % 4 != 0 {
                scheduler.mark(i, Dirty::new(8 + (i % 10) as usize).scaled(1.0 + (i % 5) as f32));
            }
        }
        let used = scheduler.select(budget.refill(TICK), out);
        budget.spend(used);
    };
    for t in 0..10 {
        tick(&mut scheduler, &mut out, t);
    }
    let allocations = allocations_in(|| {
        for t in 10..200 {
            tick(&mut scheduler, &mut out, t);
        }
    });
    assert_eq!(allocations, 0);
}
