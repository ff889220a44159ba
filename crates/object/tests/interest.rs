//! Interest management: the grid against brute force, rooms, owner-only.

use std::collections::HashSet;

use sturnus_testkit::counting::{Counting, allocations_in};

use sturnus_object::interest::{
    Change, GridInterest, InterestConfigError, InterestEvent, InterestPolicy, OwnerOnly,
    RoomInterest,
};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A small seeded generator (splitmix64), so the scene is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    #[expect(clippy::cast_possible_truncation, reason = "an f64 in [0, 1) fits an f32")]
    fn unit(&mut self) -> f32 {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) as f32
    }

    fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }
}

/// The reference: the same exact distance as documented (`dx² + dz² ≤ r²` in f64).
fn within(a: [f32; 2], b: [f32; 2], radius: f32) -> bool {
    let dx = f64::from(a[0]) - f64::from(b[0]);
    let dz = f64::from(a[1]) - f64::from(b[1]);
    let r = f64::from(radius);
    dx * dx + dz * dz <= r * r
}

/// Applies events to the per-player visible sets a server would keep, checking that each
/// is consistent (no Enter for an object already visible, no Leave for one not visible).
fn apply(visible: &mut [HashSet<u32>], events: &[InterestEvent<u32, u32>]) {
    for e in events {
        let set = &mut visible[e.player as usize];
        match e.change {
            Change::Enter => assert!(set.insert(e.object), "Enter for a visible pair {e:?}"),
            Change::Leave => assert!(set.remove(&e.object), "Leave for an invisible pair {e:?}"),
        }
    }
}

fn step(rng: &mut Rng, pos: &mut [f32; 2], world: f32, max_step: f32) {
    if rng.unit() < 0.02 {
        // A teleport now and then, far across cells.
        *pos = [rng.range(-world, world), rng.range(-world, world)];
    } else {
        pos[0] = (pos[0] + rng.range(-max_step, max_step)).clamp(-world, world);
        pos[1] = (pos[1] + rng.range(-max_step, max_step)).clamp(-world, world);
    }
}

/// 1,000 players and 10,000 objects moving on the grid for 20 ticks (10 % of the objects and
/// 20 % of the players move each tick): after every tick, the visible set each player has
/// accumulated from the events equals the brute-force radius set, for every player.
#[test]
fn grid_matches_brute_force_1000_players_10000_objects() {
    const PLAYERS: u32 = 1_000;
    const OBJECTS: u32 = 10_000;
    const WORLD: f32 = 500.0; // coordinates in [-500, 500]
    const RADIUS: f32 = 40.0;
    let mut rng = Rng(18);
    let mut grid = GridInterest::<u32, u32>::new(RADIUS, RADIUS).unwrap();
    let mut players: Vec<[f32; 2]> =
        (0..PLAYERS).map(|_| [rng.range(-WORLD, WORLD), rng.range(-WORLD, WORLD)]).collect();
    let mut objects: Vec<[f32; 2]> =
        (0..OBJECTS).map(|_| [rng.range(-WORLD, WORLD), rng.range(-WORLD, WORLD)]).collect();
    for (i, &p) in (0..).zip(&players) {
        grid.set_player(i, p);
    }
    for (i, &o) in (0..).zip(&objects) {
        grid.set_object(i, o);
    }
    let mut visible = vec![HashSet::new(); PLAYERS as usize];
    let mut events = Vec::new();
    let mut total_visible = 0;
    let mut total_events = 0;
    for tick in 0..=20 {
        if tick > 0 {
            for (i, o) in (0..).zip(objects.iter_mut()) {
                if rng.unit() < 0.10 {
                    step(&mut rng, o, WORLD, 2.0 * RADIUS);
                    grid.set_object(i, *o);
                }
            }
            for (i, p) in (0..).zip(players.iter_mut()) {
                if rng.unit() < 0.20 {
                    step(&mut rng, p, WORLD, 2.0 * RADIUS);
                    grid.set_player(i, *p);
                }
            }
        }
        events.clear();
        grid.update(&mut events);
        total_events += events.len();
        apply(&mut visible, &events);
        total_visible = 0;
        for (p, seen) in players.iter().zip(&visible) {
            let mut expected = 0;
            for (o, object) in (0..).zip(&objects) {
                if within(*p, *object, RADIUS) {
                    expected += 1;
                    assert!(seen.contains(&o), "tick {tick}: object {o} in radius but not visible");
                }
            }
            assert_eq!(seen.len(), expected, "tick {tick}: a visible object is out of radius");
            total_visible += expected;
        }
    }
    // The scene is not degenerate: players see objects, and interest changes every tick.
    assert!(total_visible > 10 * PLAYERS as usize, "{total_visible}");
    assert!(total_events > 20 * 1_000, "{total_events}");
    // The policy's own view agrees with the events.
    for p in (0..PLAYERS).step_by(97) {
        for o in 0..OBJECTS {
            assert_eq!(grid.observes(p, o), visible[p as usize].contains(&o));
        }
    }
    for o in (0..OBJECTS).step_by(101) {
        let mut observers = HashSet::new();
        grid.for_each_observer(o, &mut |p| assert!(observers.insert(p)));
        let expected: HashSet<u32> =
            (0..PLAYERS).filter(|&p| visible[p as usize].contains(&o)).collect();
        assert_eq!(observers, expected);
    }
}

/// The work of an update follows what moved: nothing moved, nothing checked; one object
/// moved, only the players near it checked (not objects × players).
#[test]
fn grid_cost_follows_changes() {
    let mut rng = Rng(7);
    let mut grid = GridInterest::<u32, u32>::new(10.0, 10.0).unwrap();
    for i in 0..1_000 {
        grid.set_player(i, [rng.range(-500.0, 500.0), rng.range(-500.0, 500.0)]);
    }
    for i in 0..5_000 {
        grid.set_object(i, [rng.range(-500.0, 500.0), rng.range(-500.0, 500.0)]);
    }
    let mut events = Vec::new();
    grid.update(&mut events);
    let before = grid.pair_checks();
    // Setting the same positions again is not a change.
    grid.set_player(3, grid_pos(&mut Rng(7), 3));
    grid.update(&mut events);
    grid.update(&mut events);
    let idle = grid.pair_checks() - before;
    assert_eq!(idle, 0, "an update with nothing moved checked {idle} pairs");
    // One object moves: a neighbourhood of 3 × 3 cells of 10 × 10 at 0.001 players per unit²
    // holds about one player; allow a generous margin, far below the 1,000 players.
    grid.set_object(0, [0.5, 0.5]);
    grid.update(&mut events);
    let one = grid.pair_checks() - before;
    assert!(one <= 20, "moving one object checked {one} pairs");
    // One player moves: about 5 objects in its neighbourhood, far below the 5,000.
    let mid = grid.pair_checks();
    grid.set_player(0, [1.0, 1.0]);
    grid.update(&mut events);
    let one = grid.pair_checks() - mid;
    assert!(one <= 60, "moving one player checked {one} pairs");
}

/// The position player `i` got from `Rng(7)` in `grid_cost_follows_changes`.
fn grid_pos(rng: &mut Rng, i: usize) -> [f32; 2] {
    let mut pos = [0.0; 2];
    for _ in 0..=i {
        pos = [rng.range(-500.0, 500.0), rng.range(-500.0, 500.0)];
    }
    pos
}

/// The boundary is inside, across cell edges and at negative coordinates; moving within a
/// cell across the radius still enters and leaves.
#[test]
fn grid_boundary_and_moves_within_a_cell() {
    let mut grid = GridInterest::<u32, u32>::new(10.0, 10.0).unwrap();
    let mut events = Vec::new();
    grid.set_player(1, [-10.0, -10.0]);
    grid.set_object(1, [-20.0, -10.0]); // exactly 10 away, a cell edge
    grid.set_object(2, [-4.0, -2.0]); // exactly 10 away (6, 8)
    grid.set_object(3, [-20.0, -20.0]); // 14.1 away
    grid.update(&mut events);
    let mut entered: Vec<u32> = events.iter().map(|e| e.object).collect();
    entered.sort_unstable();
    assert_eq!(entered, [1, 2]);
    assert!(events.iter().all(|e| e.change == Change::Enter && e.player == 1));
    // Object 2 moves a little further, in the same cell: it leaves.
    events.clear();
    grid.set_object(2, [-3.9, -2.0]);
    grid.update(&mut events);
    assert_eq!(events, [InterestEvent { player: 1, object: 2, change: Change::Leave }]);
    // The player moves within its cell ([-10, 0)²): object 2 enters, object 1 leaves.
    events.clear();
    grid.set_player(1, [-1.0, -1.0]);
    grid.update(&mut events);
    events.sort_by_key(|e| e.object);
    assert_eq!(
        events,
        [
            InterestEvent { player: 1, object: 1, change: Change::Leave },
            InterestEvent { player: 1, object: 2, change: Change::Enter },
        ]
    );
}

/// Removing an object makes its observers leave it; removing a player is silent and drops
/// its undelivered events; both can come back.
#[test]
fn grid_removal() {
    let mut grid = GridInterest::<u32, u32>::new(5.0, 8.0).unwrap();
    let mut events = Vec::new();
    for p in 0..3 {
        grid.set_player(p, [f32::from(u8::try_from(p).unwrap()), 0.0]);
    }
    grid.set_object(9, [1.0, 1.0]);
    grid.update(&mut events);
    assert_eq!(events.len(), 3);
    events.clear();
    grid.remove_player(0);
    grid.remove_object(9);
    assert!(!grid.observes(1, 9));
    grid.update(&mut events);
    events.sort_by_key(|e| e.player);
    assert_eq!(
        events,
        [
            InterestEvent { player: 1, object: 9, change: Change::Leave },
            InterestEvent { player: 2, object: 9, change: Change::Leave },
        ]
    );
    // Back again: player 0 sees it anew.
    events.clear();
    grid.set_player(0, [0.0, 0.0]);
    grid.set_object(9, [0.0, 0.0]);
    grid.update(&mut events);
    assert_eq!(events.len(), 3);
    assert!(grid.observes(0, 9));
    assert_eq!((grid.player_count(), grid.object_count()), (3, 1));
    // A player removed before the update gets no event.
    events.clear();
    grid.set_player(7, [0.0, 0.0]);
    grid.remove_object(9);
    grid.remove_player(1);
    grid.update(&mut events);
    events.sort_by_key(|e| e.player);
    assert_eq!(
        events,
        [
            InterestEvent { player: 0, object: 9, change: Change::Leave },
            InterestEvent { player: 2, object: 9, change: Change::Leave },
        ]
    );
}

/// Bad configuration is a typed error, not a panic; odd positions do not panic.
#[test]
fn grid_config_and_odd_positions() {
    type G = GridInterest<u32, u32>;
    assert_eq!(G::new(0.0, 1.0).unwrap_err(), InterestConfigError::CellSize(0.0));
    assert!(matches!(G::new(f32::NAN, 1.0), Err(InterestConfigError::CellSize(_))));
    assert_eq!(G::new(1.0, -1.0).unwrap_err(), InterestConfigError::Radius(-1.0));
    assert!(matches!(G::new(1.0, f32::INFINITY), Err(InterestConfigError::Radius(_))));
    assert!(matches!(G::new(1.0, 100.0), Err(InterestConfigError::TooManyCells { .. })));
    let mut grid = G::new(1.0, 1.0).unwrap();
    let mut events = Vec::new();
    grid.set_player(0, [f32::NAN, 0.0]);
    grid.set_player(1, [f32::INFINITY, f32::NEG_INFINITY]);
    grid.set_player(2, [f32::MAX, f32::MIN]);
    grid.set_object(0, [f32::MAX, f32::MIN]);
    grid.set_object(1, [f32::NAN, f32::NAN]);
    grid.update(&mut events);
    assert_eq!(events, [InterestEvent { player: 2, object: 0, change: Change::Enter }]);
}

#[test]
fn rooms() {
    let mut rooms = RoomInterest::<u32, u32>::new();
    let mut events = Vec::new();
    rooms.set_player_room(1, Some(10));
    rooms.set_player_room(2, Some(20));
    rooms.set_object_room(100, Some(10));
    rooms.set_object_room(200, Some(20));
    rooms.set_object_room(300, None);
    rooms.update(&mut events);
    events.sort_by_key(|e| e.object);
    assert_eq!(
        events,
        [
            InterestEvent { player: 1, object: 100, change: Change::Enter },
            InterestEvent { player: 2, object: 200, change: Change::Enter },
        ]
    );
    assert!(rooms.observes(1, 100) && !rooms.observes(1, 200) && !rooms.observes(1, 300));
    // Player 1 changes room: it leaves 100, enters 200.
    events.clear();
    rooms.set_player_room(1, Some(20));
    rooms.update(&mut events);
    assert_eq!(
        events,
        [
            InterestEvent { player: 1, object: 100, change: Change::Leave },
            InterestEvent { player: 1, object: 200, change: Change::Enter },
        ]
    );
    let mut observers = Vec::new();
    rooms.for_each_observer(200, &mut |p| observers.push(p));
    observers.sort_unstable();
    assert_eq!(observers, [1, 2]);
    // An object changes room; the same room again is no change.
    events.clear();
    rooms.set_object_room(100, Some(20));
    rooms.set_object_room(100, Some(20));
    rooms.update(&mut events);
    events.sort_by_key(|e| e.player);
    assert_eq!(
        events,
        [
            InterestEvent { player: 1, object: 100, change: Change::Enter },
            InterestEvent { player: 2, object: 100, change: Change::Enter },
        ]
    );
    assert_eq!((rooms.player_room(1), rooms.object_room(100)), (Some(20), Some(20)));
    // Removals: an object's observers leave it; a player goes silently.
    events.clear();
    rooms.remove_player(2);
    rooms.remove_object(200);
    rooms.update(&mut events);
    assert_eq!(events, [InterestEvent { player: 1, object: 200, change: Change::Leave }]);
    assert!(!rooms.observes(2, 100));
}

#[test]
fn owner_only() {
    let mut owner = OwnerOnly::<u32, u32>::new();
    let mut events = Vec::new();
    owner.set_owner(100, Some(1)); // player 1 is not here yet
    owner.add_player(2);
    owner.update(&mut events);
    assert!(events.is_empty());
    owner.add_player(1);
    owner.update(&mut events);
    assert_eq!(events, [InterestEvent { player: 1, object: 100, change: Change::Enter }]);
    assert!(owner.observes(1, 100) && !owner.observes(2, 100));
    // Ownership passes to player 2.
    events.clear();
    owner.set_owner(100, Some(2));
    owner.update(&mut events);
    assert_eq!(
        events,
        [
            InterestEvent { player: 1, object: 100, change: Change::Leave },
            InterestEvent { player: 2, object: 100, change: Change::Enter },
        ]
    );
    let mut observers = Vec::new();
    owner.for_each_observer(100, &mut |p| observers.push(p));
    assert_eq!(observers, [2]);
    assert_eq!(owner.owner(100), Some(2));
    // The owner leaves silently and comes back: it sees its object again.
    events.clear();
    owner.remove_player(2);
    owner.update(&mut events);
    assert!(events.is_empty() && !owner.observes(2, 100));
    owner.add_player(2);
    owner.remove_object(100);
    owner.update(&mut events);
    assert_eq!(
        events,
        [
            InterestEvent { player: 2, object: 100, change: Change::Enter },
            InterestEvent { player: 2, object: 100, change: Change::Leave },
        ]
    );
}

/// In steady state an update allocates nothing: entities moving back and forth between two
/// places (entering and leaving cells, interest and each other's sets) reuse the sets, the
/// pooled cell lists and the caller's event buffer once they have grown. (The hash tables
/// grow a few more times in the first ticks, as removals leave tombstones; 40 warm-up ticks
/// are plenty, and 200 measured ticks allocated nothing either.)
#[test]
fn grid_steady_state_does_not_allocate() {
    let mut rng = Rng(3);
    let mut grid = GridInterest::<u32, u32>::new(20.0, 20.0).unwrap();
    let here = |rng: &mut Rng| [rng.range(-200.0, 200.0), rng.range(-200.0, 200.0)];
    let players: Vec<[[f32; 2]; 2]> = (0..200).map(|_| [here(&mut rng), here(&mut rng)]).collect();
    let objects: Vec<[[f32; 2]; 2]> =
        (0..2_000).map(|_| [here(&mut rng), here(&mut rng)]).collect();
    let mut events = Vec::new();
    let tick = |grid: &mut GridInterest<u32, u32>, events: &mut Vec<_>, t: usize| {
        for (i, p) in (0..).zip(&players) {
            grid.set_player(i, p[t % 2]);
        }
        for (i, o) in (0..).zip(&objects) {
            grid.set_object(i, o[t % 2]);
        }
        events.clear();
        grid.update(events);
        events.len()
    };
    for t in 0..40 {
        tick(&mut grid, &mut events, t);
    }
    let mut changes = 0;
    let allocations = allocations_in(|| {
        for t in 40..100 {
            changes += tick(&mut grid, &mut events, t);
        }
    });
    assert!(changes > 1_000, "the scene changes interest: {changes}");
    assert_eq!(allocations, 0, "{allocations} allocations in 60 steady-state updates");
}
