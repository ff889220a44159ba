//! Interest management: which players observe which objects, as a stream of changes.
//!
//! A server does not send every object to every player: an object is *spawned* to a player
//! when it enters the player's interest and *despawned* when it leaves. An
//! [`InterestPolicy`] decides who observes what. It is told what the game knows (positions,
//! rooms, owners) through its own methods and, at each [`update`](InterestPolicy::update),
//! appends the **changes** — `(player, object, Enter | Leave)` — to a `Vec` the caller
//! owns and reuses, so the steady state does not allocate.
//!
//! Built-ins, sans-IO and generic over the player and object keys (any `Copy + Eq + Hash`:
//! a `PlayerId`, a `NetId`, a `u32`):
//!
//! - [`GridInterest`]: a spatial hash with a radius. A player observes the objects within
//!   `radius` of it (exact Euclidean distance, 2D). The cost of an update grows with what
//!   moved, not with objects × players.
//! - [`RoomInterest`]: players and objects in rooms (scenes, matches, instances); an object is
//!   observed by the players in its room.
//! - [`OwnerOnly`]: an object is observed only by its owner.
//!
//! A server uses one through
//! [`ServerObjectManager::set_interest`](crate::ServerObjectManager::set_interest): the manager
//! calls the policy's [`update`](InterestPolicy::update) at each of its own updates, spawns an
//! object to a player on `Enter` and despawns it on `Leave`, and tells the policy what it
//! knows itself through the lifecycle hooks of [`InterestPolicy`] (a player became ready, an
//! object's owner, positions given to the manager); the game gives the rest (rooms, say)
//! through [`interest_mut`](crate::ServerObjectManager::interest_mut).
//!
//! ```
//! use sturnus_object::interest::{Change, GridInterest, InterestEvent, InterestPolicy};
//!
//! let mut grid = GridInterest::<u32, u64>::new(10.0, 10.0).unwrap();
//! let mut events = Vec::new();
//! grid.set_player(1, [0.0, 0.0]);
//! grid.set_object(100, [3.0, 4.0]); // 5 away: inside
//! grid.set_object(200, [30.0, 0.0]); // outside
//! grid.update(&mut events);
//! assert_eq!(events, [InterestEvent { player: 1, object: 100, change: Change::Enter }]);
//!
//! events.clear();
//! grid.set_object(100, [12.0, 0.0]); // moves away
//! grid.update(&mut events);
//! assert_eq!(events, [InterestEvent { player: 1, object: 100, change: Change::Leave }]);
//! ```

use std::hash::Hash;
use std::mem;

use rustc_hash::{FxHashMap, FxHashSet};

/// Whether an object entered or left a player's interest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Change {
    /// The player now observes the object (spawn it to the player).
    Enter,
    /// The player no longer observes the object (despawn it on the player's side).
    Leave,
}

/// One change of interest: `player` starts or stops observing `object`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InterestEvent<P, O> {
    /// The observing player.
    pub player: P,
    /// The observed object.
    pub object: O,
    /// Whether the object entered or left the player's interest.
    pub change: Change,
}

/// A policy deciding which players observe which objects.
///
/// Each implementation has its own inputs (positions, rooms, owners); this trait is what a
/// server needs to act on the result. The events a policy produces are consistent: for a
/// pair, `Enter` and `Leave` alternate, starting with `Enter`, and after an
/// [`update`](Self::update) [`observes`](Self::observes) agrees with the events so far.
pub trait InterestPolicy<P, O> {
    /// Brings interest up to date with the inputs given since the last call, appending one
    /// event per changed pair to `events` (which it does not clear).
    fn update(&mut self, events: &mut Vec<InterestEvent<P, O>>);

    /// Whether `player` observes `object`, as of the last [`update`](Self::update) (and the
    /// removals since).
    fn observes(&self, player: P, object: O) -> bool;

    /// Calls `f` with each player that observes `object` (in no particular order).
    fn for_each_observer(&self, object: O, f: &mut dyn FnMut(P));

    /// Forgets a player (it disconnected). It stops observing everything, silently: no
    /// `Leave` events, since there is nobody left to despawn objects for, and the events
    /// for it not yet handed out are dropped.
    fn remove_player(&mut self, player: P);

    /// Forgets an object (it was destroyed). Each player that observed it gets a `Leave`
    /// event at the next [`update`](Self::update).
    fn remove_object(&mut self, object: O);

    /// Lifecycle hook: `player` became ready (it may observe objects from now on). The
    /// [`ServerObjectManager`](crate::ServerObjectManager) calls it; a policy that needs to
    /// know its players ([`OwnerOnly`]) adds it here. The default does nothing.
    fn add_player(&mut self, _player: P) {}

    /// Lifecycle hook: `object` was spawned with `owner`, or its owner changed. The
    /// [`ServerObjectManager`](crate::ServerObjectManager) calls it on each spawn and
    /// `set_owner`; [`OwnerOnly`] follows it. The default does nothing.
    fn set_object_owner(&mut self, _object: O, _owner: Option<P>) {}

    /// Lifecycle hook: `object` is at `pos` (`[x, y, z]`, y up). The
    /// [`ServerObjectManager`](crate::ServerObjectManager) forwards its own
    /// `set_object_position` here; [`GridInterest`] places the object at `[x, z]`. The
    /// default does nothing.
    fn set_object_position(&mut self, _object: O, _pos: [f32; 3]) {}

    /// Lifecycle hook: `player`'s point of view is at `pos` (`[x, y, z]`, y up). The
    /// [`ServerObjectManager`](crate::ServerObjectManager) forwards its own
    /// `set_player_position` here (for ready players); [`GridInterest`] places the player at
    /// `[x, z]`. The default does nothing.
    fn set_player_position(&mut self, _player: P, _pos: [f32; 3]) {}
}

/// A configuration that [`GridInterest::new`] refuses.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum InterestConfigError {
    /// The cell size must be finite and above zero.
    #[error("the cell size must be finite and above zero, not {0}")]
    CellSize(f32),
    /// The radius must be finite and not negative.
    #[error("the radius must be finite and not negative, not {0}")]
    Radius(f32),
    /// The radius spans too many cells: the neighbourhood scanned per moved entity would be
    /// huge. Use larger cells.
    #[error(
        "a radius of {radius} spans more than {MAX_CELLS_PER_AXIS} cells of {cell_size} per axis"
    )]
    TooManyCells {
        /// The cell size asked for.
        cell_size: f32,
        /// The radius asked for.
        radius: f32,
    },
}

/// The most cells a neighbourhood may span along one axis (`2 × radius / cell_size + 1`).
pub const MAX_CELLS_PER_AXIS: u32 = 64;

/// A cell of the grid: `(floor(x / cell_size), floor(z / cell_size))`.
type Cell = (i32, i32);

/// Slack, in cells, added on both sides of a neighbourhood so that rounding in the cell
/// arithmetic never leaves out an entity the exact distance check would accept.
const CELL_SLACK: f64 = 1e-6;

/// A spatial hash of keys by cell. Each key knows its slot in its cell's list, so removal is
/// O(1) (swap-remove); lists of emptied cells are pooled, not freed.
#[derive(Debug)]
struct CellIndex<K> {
    cells: FxHashMap<Cell, Vec<K>>,
    pool: Vec<Vec<K>>,
}

impl<K: Copy> CellIndex<K> {
    fn new() -> Self {
        Self { cells: FxHashMap::default(), pool: Vec::new() }
    }

    /// Adds `key` to `cell`, returning its slot.
    fn insert(&mut self, cell: Cell, key: K) -> usize {
        let pool = &mut self.pool;
        let list = self.cells.entry(cell).or_insert_with(|| pool.pop().unwrap_or_default());
        list.push(key);
        list.len() - 1
    }

    /// Removes the key at `slot` of `cell`; returns the key moved into `slot`, if any (its
    /// owner must update its slot).
    fn remove(&mut self, cell: Cell, slot: usize) -> Option<K> {
        let list = self.cells.get_mut(&cell)?;
        if slot >= list.len() {
            return None;
        }
        list.swap_remove(slot);
        let moved = list.get(slot).copied();
        if list.is_empty() {
            if let Some(list) = self.cells.remove(&cell) {
                self.pool.push(list);
            }
        }
        moved
    }

    fn get(&self, cell: Cell) -> &[K] {
        self.cells.get(&cell).map_or(&[], Vec::as_slice)
    }
}

#[derive(Debug)]
struct Entry<K> {
    pos: [f32; 2],
    cell: Cell,
    slot: usize,
    /// For an object, the players observing it; for a player, the objects it observes.
    seen: FxHashSet<K>,
    /// Moved since the last update (and listed in the dirty list).
    dirty: bool,
}

/// Interest by distance: a player observes the objects within `radius` of it.
///
/// **2D**: positions are `[f32; 2]`; for a 3D world with y up pass `[x, z]` (the
/// [`set_object_position`](InterestPolicy::set_object_position) and
/// [`set_player_position`](InterestPolicy::set_player_position) hooks, which the
/// [`ServerObjectManager`](crate::ServerObjectManager) calls, do). Distances are
/// exact Euclidean (`dx² + dz² ≤ radius²`, computed in `f64`; the boundary is inside).
///
/// **How**: objects and players are hashed by cell (`cell_size` square). Setting a position
/// that differs from the last marks the entity *moved*; [`update`](InterestPolicy::update)
/// then, for each moved object, re-checks the players that observe it and the players in the
/// cells within `radius` of it, and for each moved player, the objects it observes and the
/// objects in the cells within `radius` of it. Nothing else is looked at.
///
/// **Cost** of an update: `O(moved × (players or objects in a neighbourhood + observers))`,
/// where a neighbourhood is about `(2 × radius / cell_size + 1)²` cells. Entities at rest cost
/// nothing; in particular the cost does not grow with objects × players. A cell size about
/// the radius is a good default (9 cells of which the disc covers a third); smaller cells
/// scan less area but more cells. [`pair_checks`](Self::pair_checks) counts the distance
/// checks done, to measure this.
///
/// Memory: a set of seen keys per entity (the observer relation is kept both ways) and a
/// list per occupied cell; emptied lists are pooled, so moving entities do not allocate once
/// the sets and lists have grown to their working size.
#[derive(Debug)]
pub struct GridInterest<P, O> {
    cell_size: f64,
    radius: f64,
    objects: FxHashMap<O, Entry<P>>,
    players: FxHashMap<P, Entry<O>>,
    object_cells: CellIndex<O>,
    player_cells: CellIndex<P>,
    dirty_objects: Vec<O>,
    dirty_players: Vec<P>,
    /// `Leave` events from removals, handed out at the next update.
    pending: Vec<InterestEvent<P, O>>,
    scratch_players: Vec<P>,
    scratch_objects: Vec<O>,
    pair_checks: u64,
}

impl<P, O> GridInterest<P, O>
where
    P: Copy + Eq + Hash,
    O: Copy + Eq + Hash,
{
    /// A grid of `cell_size` cells where players observe objects within `radius`.
    ///
    /// # Errors
    /// A cell size that is not finite and positive, a radius that is not finite and
    /// non-negative, or a radius spanning more than [`MAX_CELLS_PER_AXIS`] cells.
    pub fn new(cell_size: f32, radius: f32) -> Result<Self, InterestConfigError> {
        if !(cell_size.is_finite() && cell_size > 0.0) {
            return Err(InterestConfigError::CellSize(cell_size));
        }
        if !(radius.is_finite() && radius >= 0.0) {
            return Err(InterestConfigError::Radius(radius));
        }
        let (cell, r) = (f64::from(cell_size), f64::from(radius));
        if 2.0 * r / cell + 1.0 > f64::from(MAX_CELLS_PER_AXIS) {
            return Err(InterestConfigError::TooManyCells { cell_size, radius });
        }
        Ok(Self {
            cell_size: cell,
            radius: r,
            objects: FxHashMap::default(),
            players: FxHashMap::default(),
            object_cells: CellIndex::new(),
            player_cells: CellIndex::new(),
            dirty_objects: Vec::new(),
            dirty_players: Vec::new(),
            pending: Vec::new(),
            scratch_players: Vec::new(),
            scratch_objects: Vec::new(),
            pair_checks: 0,
        })
    }

    /// Sets (or adds) a player at `pos`. It takes effect at the next update.
    pub fn set_player(&mut self, player: P, pos: [f32; 2]) {
        let cell = self.cell_of(pos);
        set_entity(
            &mut self.players,
            &mut self.player_cells,
            &mut self.dirty_players,
            player,
            pos,
            cell,
        );
    }

    /// Sets (or adds) an object at `pos`. It takes effect at the next update.
    pub fn set_object(&mut self, object: O, pos: [f32; 2]) {
        let cell = self.cell_of(pos);
        set_entity(
            &mut self.objects,
            &mut self.object_cells,
            &mut self.dirty_objects,
            object,
            pos,
            cell,
        );
    }

    /// How many player–object distance checks updates have done so far: the work, to show
    /// that it follows what moved.
    pub fn pair_checks(&self) -> u64 {
        self.pair_checks
    }

    /// The number of players.
    pub fn player_count(&self) -> usize {
        self.players.len()
    }

    /// The number of objects.
    pub fn object_count(&self) -> usize {
        self.objects.len()
    }

    fn cell_of(&self, pos: [f32; 2]) -> Cell {
        (
            cell_coord(f64::from(pos[0]) / self.cell_size),
            cell_coord(f64::from(pos[1]) / self.cell_size),
        )
    }

    /// The cells (inclusive ranges along x and z) holding every point within the radius of
    /// `pos`.
    fn neighbourhood(&self, pos: [f32; 2]) -> ([i32; 2], [i32; 2]) {
        let span = |x: f32| {
            let x = f64::from(x);
            [
                cell_coord((x - self.radius) / self.cell_size - CELL_SLACK),
                cell_coord((x + self.radius) / self.cell_size + CELL_SLACK),
            ]
        };
        (span(pos[0]), span(pos[1]))
    }

    fn recheck_object(&mut self, object: O, events: &mut Vec<InterestEvent<P, O>>) {
        let (xs, zs) = match self.objects.get(&object) {
            Some(entry) if entry.dirty => self.neighbourhood(entry.pos),
            _ => return,
        };
        let radius = self.radius;
        let Some(entry) = self.objects.get_mut(&object) else { return };
        entry.dirty = false;
        let pos = entry.pos;
        // Observers that are now too far.
        self.scratch_players.clear();
        for player in &entry.seen {
            self.pair_checks += 1;
            let inside =
                self.players.get(player).is_some_and(|p| within_radius(pos, p.pos, radius));
            if !inside {
                self.scratch_players.push(*player);
            }
        }
        for &player in &self.scratch_players {
            entry.seen.remove(&player);
            if let Some(p) = self.players.get_mut(&player) {
                p.seen.remove(&object);
            }
            events.push(InterestEvent { player, object, change: Change::Leave });
        }
        // Players around it that do not observe it yet.
        for x in xs[0]..=xs[1] {
            for z in zs[0]..=zs[1] {
                for &player in self.player_cells.get((x, z)) {
                    if entry.seen.contains(&player) {
                        continue;
                    }
                    let Some(p) = self.players.get_mut(&player) else { continue };
                    self.pair_checks += 1;
                    if within_radius(pos, p.pos, radius) {
                        p.seen.insert(object);
                        entry.seen.insert(player);
                        events.push(InterestEvent { player, object, change: Change::Enter });
                    }
                }
            }
        }
    }

    fn recheck_player(&mut self, player: P, events: &mut Vec<InterestEvent<P, O>>) {
        let (xs, zs) = match self.players.get(&player) {
            Some(entry) if entry.dirty => self.neighbourhood(entry.pos),
            _ => return,
        };
        let radius = self.radius;
        let Some(entry) = self.players.get_mut(&player) else { return };
        entry.dirty = false;
        let pos = entry.pos;
        // Observed objects that are now too far.
        self.scratch_objects.clear();
        for object in &entry.seen {
            self.pair_checks += 1;
            let inside =
                self.objects.get(object).is_some_and(|o| within_radius(pos, o.pos, radius));
            if !inside {
                self.scratch_objects.push(*object);
            }
        }
        for &object in &self.scratch_objects {
            entry.seen.remove(&object);
            if let Some(o) = self.objects.get_mut(&object) {
                o.seen.remove(&player);
            }
            events.push(InterestEvent { player, object, change: Change::Leave });
        }
        // Objects around it that it does not observe yet.
        for x in xs[0]..=xs[1] {
            for z in zs[0]..=zs[1] {
                for &object in self.object_cells.get((x, z)) {
                    if entry.seen.contains(&object) {
                        continue;
                    }
                    let Some(o) = self.objects.get_mut(&object) else { continue };
                    self.pair_checks += 1;
                    if within_radius(pos, o.pos, radius) {
                        o.seen.insert(player);
                        entry.seen.insert(object);
                        events.push(InterestEvent { player, object, change: Change::Enter });
                    }
                }
            }
        }
    }
}

/// Whether `a` and `b` are at most `radius` apart (`dx² + dz² ≤ radius²`, in `f64`).
fn within_radius(a: [f32; 2], b: [f32; 2], radius: f64) -> bool {
    let dx = f64::from(a[0]) - f64::from(b[0]);
    let dz = f64::from(a[1]) - f64::from(b[1]);
    dx * dx + dz * dz <= radius * radius
}

/// The cell coordinate of a position already divided by the cell size.
#[expect(
    clippy::cast_possible_truncation,
    reason = "saturating on purpose: positions beyond ±2³¹ cells share the edge cells, NaN goes to cell 0, and the distance check stays exact"
)]
fn cell_coord(scaled: f64) -> i32 {
    scaled.floor() as i32
}

/// Adds or moves an entity: its cell list follows at once, its interest at the next update.
fn set_entity<K: Copy + Eq + Hash, S>(
    entries: &mut FxHashMap<K, Entry<S>>,
    cells: &mut CellIndex<K>,
    dirty: &mut Vec<K>,
    key: K,
    pos: [f32; 2],
    cell: Cell,
) {
    match entries.get_mut(&key) {
        Some(entry) => {
            if entry.pos == pos {
                return;
            }
            entry.pos = pos;
            if !entry.dirty {
                entry.dirty = true;
                dirty.push(key);
            }
            if entry.cell != cell {
                let (old, slot) = (entry.cell, entry.slot);
                entry.cell = cell;
                entry.slot = cells.insert(cell, key);
                if let Some(moved) = cells.remove(old, slot) {
                    if let Some(m) = entries.get_mut(&moved) {
                        m.slot = slot;
                    }
                }
            }
        }
        None => {
            let slot = cells.insert(cell, key);
            entries.insert(key, Entry { pos, cell, slot, seen: FxHashSet::default(), dirty: true });
            dirty.push(key);
        }
    }
}

/// Removes an entity from the map and its cell; returns its entry.
fn remove_entity<K: Copy + Eq + Hash, S>(
    entries: &mut FxHashMap<K, Entry<S>>,
    cells: &mut CellIndex<K>,
    key: K,
) -> Option<Entry<S>> {
    let entry = entries.remove(&key)?;
    if let Some(moved) = cells.remove(entry.cell, entry.slot) {
        if let Some(m) = entries.get_mut(&moved) {
            m.slot = entry.slot;
        }
    }
    Some(entry)
}

impl<P, O> InterestPolicy<P, O> for GridInterest<P, O>
where
    P: Copy + Eq + Hash,
    O: Copy + Eq + Hash,
{
    fn update(&mut self, events: &mut Vec<InterestEvent<P, O>>) {
        events.append(&mut self.pending);
        let mut dirty = mem::take(&mut self.dirty_objects);
        for &object in &dirty {
            self.recheck_object(object, events);
        }
        dirty.clear();
        self.dirty_objects = dirty;
        let mut dirty = mem::take(&mut self.dirty_players);
        for &player in &dirty {
            self.recheck_player(player, events);
        }
        dirty.clear();
        self.dirty_players = dirty;
    }

    fn observes(&self, player: P, object: O) -> bool {
        self.players.get(&player).is_some_and(|p| p.seen.contains(&object))
    }

    fn for_each_observer(&self, object: O, f: &mut dyn FnMut(P)) {
        if let Some(o) = self.objects.get(&object) {
            o.seen.iter().copied().for_each(f);
        }
    }

    fn remove_player(&mut self, player: P) {
        self.pending.retain(|e| e.player != player);
        if let Some(entry) = remove_entity(&mut self.players, &mut self.player_cells, player) {
            for object in &entry.seen {
                if let Some(o) = self.objects.get_mut(object) {
                    o.seen.remove(&player);
                }
            }
        }
    }

    fn remove_object(&mut self, object: O) {
        if let Some(entry) = remove_entity(&mut self.objects, &mut self.object_cells, object) {
            for &player in &entry.seen {
                if let Some(p) = self.players.get_mut(&player) {
                    p.seen.remove(&object);
                }
                self.pending.push(InterestEvent { player, object, change: Change::Leave });
            }
        }
    }

    /// Places the object at `[x, z]` of `pos` ([`set_object`](GridInterest::set_object)).
    fn set_object_position(&mut self, object: O, pos: [f32; 3]) {
        self.set_object(object, [pos[0], pos[2]]);
    }

    /// Places the player at `[x, z]` of `pos` ([`set_player`](GridInterest::set_player)).
    fn set_player_position(&mut self, player: P, pos: [f32; 3]) {
        self.set_player(player, [pos[0], pos[2]]);
    }
}

/// Who and what is in one room.
#[derive(Debug)]
struct Room<P, O> {
    players: FxHashSet<P>,
    objects: FxHashSet<O>,
}

impl<P, O> Default for Room<P, O> {
    fn default() -> Self {
        Self { players: FxHashSet::default(), objects: FxHashSet::default() }
    }
}

/// Interest by room: an object is observed by the players in its room (a scene, a match, an
/// instance). A player or an object in no room observes, or is observed by, nobody.
///
/// Changes are worked out as they are made (moving a player to another room leaves every
/// object of the old room and enters every object of the new: the cost is the events) and
/// handed out at the next [`update`](InterestPolicy::update).
#[derive(Debug)]
pub struct RoomInterest<P, O, R = u32> {
    rooms: FxHashMap<R, Room<P, O>>,
    player_room: FxHashMap<P, R>,
    object_room: FxHashMap<O, R>,
    pending: Vec<InterestEvent<P, O>>,
}

impl<P, O, R> Default for RoomInterest<P, O, R> {
    fn default() -> Self {
        Self {
            rooms: FxHashMap::default(),
            player_room: FxHashMap::default(),
            object_room: FxHashMap::default(),
            pending: Vec::new(),
        }
    }
}

impl<P, O, R> RoomInterest<P, O, R>
where
    P: Copy + Eq + Hash,
    O: Copy + Eq + Hash,
    R: Copy + Eq + Hash,
{
    /// No rooms, players or objects yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts a player in `room` (or in none), leaving the room it was in.
    pub fn set_player_room(&mut self, player: P, room: Option<R>) {
        let old = self.player_room.get(&player).copied();
        if old == room {
            return;
        }
        if let Some(old) = old {
            self.player_room.remove(&player);
            if let Some(r) = self.rooms.get_mut(&old) {
                r.players.remove(&player);
                for &object in &r.objects {
                    self.pending.push(InterestEvent { player, object, change: Change::Leave });
                }
            }
        }
        if let Some(new) = room {
            self.player_room.insert(player, new);
            let r = self.rooms.entry(new).or_default();
            r.players.insert(player);
            for &object in &r.objects {
                self.pending.push(InterestEvent { player, object, change: Change::Enter });
            }
        }
    }

    /// Puts an object in `room` (or in none), leaving the room it was in.
    pub fn set_object_room(&mut self, object: O, room: Option<R>) {
        let old = self.object_room.get(&object).copied();
        if old == room {
            return;
        }
        if let Some(old) = old {
            self.object_room.remove(&object);
            if let Some(r) = self.rooms.get_mut(&old) {
                r.objects.remove(&object);
                for &player in &r.players {
                    self.pending.push(InterestEvent { player, object, change: Change::Leave });
                }
            }
        }
        if let Some(new) = room {
            self.object_room.insert(object, new);
            let r = self.rooms.entry(new).or_default();
            r.objects.insert(object);
            for &player in &r.players {
                self.pending.push(InterestEvent { player, object, change: Change::Enter });
            }
        }
    }

    /// The room a player is in.
    pub fn player_room(&self, player: P) -> Option<R> {
        self.player_room.get(&player).copied()
    }

    /// The room an object is in.
    pub fn object_room(&self, object: O) -> Option<R> {
        self.object_room.get(&object).copied()
    }
}

impl<P, O, R> InterestPolicy<P, O> for RoomInterest<P, O, R>
where
    P: Copy + Eq + Hash,
    O: Copy + Eq + Hash,
    R: Copy + Eq + Hash,
{
    fn update(&mut self, events: &mut Vec<InterestEvent<P, O>>) {
        events.append(&mut self.pending);
    }

    fn observes(&self, player: P, object: O) -> bool {
        match (self.player_room.get(&player), self.object_room.get(&object)) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
    }

    fn for_each_observer(&self, object: O, f: &mut dyn FnMut(P)) {
        if let Some(r) = self.object_room.get(&object).and_then(|room| self.rooms.get(room)) {
            r.players.iter().copied().for_each(f);
        }
    }

    fn remove_player(&mut self, player: P) {
        self.pending.retain(|e| e.player != player);
        if let Some(old) = self.player_room.remove(&player) {
            if let Some(r) = self.rooms.get_mut(&old) {
                r.players.remove(&player);
            }
        }
    }

    fn remove_object(&mut self, object: O) {
        self.set_object_room(object, None);
    }
}

/// Interest by ownership: an object is observed only by its owner (a player's inventory, its
/// own avatar's private state). An owner is observed for once it is added as a player.
#[derive(Debug)]
pub struct OwnerOnly<P, O> {
    players: FxHashSet<P>,
    owner: FxHashMap<O, P>,
    owned: FxHashMap<P, FxHashSet<O>>,
    pending: Vec<InterestEvent<P, O>>,
}

impl<P, O> Default for OwnerOnly<P, O> {
    fn default() -> Self {
        Self {
            players: FxHashSet::default(),
            owner: FxHashMap::default(),
            owned: FxHashMap::default(),
            pending: Vec::new(),
        }
    }
}

impl<P, O> OwnerOnly<P, O>
where
    P: Copy + Eq + Hash,
    O: Copy + Eq + Hash,
{
    /// No players or objects yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a player: it observes the objects it owns.
    pub fn add_player(&mut self, player: P) {
        if self.players.insert(player) {
            if let Some(objects) = self.owned.get(&player) {
                for &object in objects {
                    self.pending.push(InterestEvent { player, object, change: Change::Enter });
                }
            }
        }
    }

    /// Gives an object an owner (or none): the old owner stops observing it, the new one
    /// starts (if it is a player here).
    pub fn set_owner(&mut self, object: O, owner: Option<P>) {
        let old = self.owner.get(&object).copied();
        if old == owner {
            return;
        }
        if let Some(old) = old {
            self.owner.remove(&object);
            if let Some(set) = self.owned.get_mut(&old) {
                set.remove(&object);
                if set.is_empty() {
                    self.owned.remove(&old);
                }
            }
            if self.players.contains(&old) {
                self.pending.push(InterestEvent { player: old, object, change: Change::Leave });
            }
        }
        if let Some(new) = owner {
            self.owner.insert(object, new);
            self.owned.entry(new).or_default().insert(object);
            if self.players.contains(&new) {
                self.pending.push(InterestEvent { player: new, object, change: Change::Enter });
            }
        }
    }

    /// The owner of an object.
    pub fn owner(&self, object: O) -> Option<P> {
        self.owner.get(&object).copied()
    }
}

impl<P, O> InterestPolicy<P, O> for OwnerOnly<P, O>
where
    P: Copy + Eq + Hash,
    O: Copy + Eq + Hash,
{
    fn update(&mut self, events: &mut Vec<InterestEvent<P, O>>) {
        events.append(&mut self.pending);
    }

    fn observes(&self, player: P, object: O) -> bool {
        self.players.contains(&player) && self.owner.get(&object) == Some(&player)
    }

    fn for_each_observer(&self, object: O, f: &mut dyn FnMut(P)) {
        if let Some(&owner) = self.owner.get(&object) {
            if self.players.contains(&owner) {
                f(owner);
            }
        }
    }

    /// Forgets a player; the objects it owns keep their owner (they are observed again if
    /// the player is added back).
    fn remove_player(&mut self, player: P) {
        self.pending.retain(|e| e.player != player);
        self.players.remove(&player);
    }

    fn remove_object(&mut self, object: O) {
        self.set_owner(object, None);
    }

    /// Adds the player ([`OwnerOnly::add_player`]).
    fn add_player(&mut self, player: P) {
        OwnerOnly::add_player(self, player);
    }

    /// Follows the owner ([`set_owner`](OwnerOnly::set_owner)).
    fn set_object_owner(&mut self, object: O, owner: Option<P>) {
        self.set_owner(object, owner);
    }
}
