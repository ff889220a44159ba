//! [`Index`]: matches in memory with the secondary indexes lists are planned on. The memory
//! store is an `Index` behind a lock; the Redis store keeps one as its local read cache.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Bound;

use sturnus_lobby::JoinCode;
use sturnus_lobby::api::{ListQuery, MatchId, MatchInfo, MatchPage, Op, Value};

use super::sorted::Sorted;
use super::{Schema, StoreCounts, StoredMatch, is_live};

/// A string range spanning more values than this is not counted: the planner takes it as
/// holding every match with the attribute.
const COUNT_CAP: usize = 4096;

/// Hashes match ids (64 random bits the service draws, not input an attacker picks) with a
/// multiply instead of SipHash: the lists look ids up in sets thousands of times a query.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
}

/// What hashes match ids.
type Ids = BuildHasherDefault<IdHasher>;
/// A set of match ids: the listed matches with a region, or with a string attribute's value.
type IdSet = HashSet<MatchId, Ids>;

/// An `f64` ordered totally, with `-0.0` read as `0.0` (they compare equal in filters).
#[derive(Debug, Clone, Copy)]
struct Num(f64);

impl Num {
    fn new(n: f64) -> Self {
        // -0.0 + 0.0 is 0.0: one key for the two zeros, which `Op::holds` finds equal.
        Self(n + 0.0)
    }
}

impl PartialEq for Num {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Num {}

impl PartialOrd for Num {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Num {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The interval a query's predicates on one attribute leave: `lo .. hi`.
#[derive(Debug, Clone)]
struct Interval<K> {
    lo: Bound<K>,
    hi: Bound<K>,
}

impl<K: Ord + Clone> Interval<K> {
    fn all() -> Self {
        Self { lo: Bound::Unbounded, hi: Bound::Unbounded }
    }

    /// Narrows the interval by `op value`; false for an operator no interval expresses (`Ne`).
    fn narrow(&mut self, op: Op, value: K) -> bool {
        match op {
            Op::Eq => {
                self.raise(Bound::Included(value.clone()));
                self.lower(Bound::Included(value));
            }
            Op::Lt => self.lower(Bound::Excluded(value)),
            Op::Le => self.lower(Bound::Included(value)),
            Op::Gt => self.raise(Bound::Excluded(value)),
            Op::Ge => self.raise(Bound::Included(value)),
            _ => return false,
        }
        true
    }

    fn raise(&mut self, b: Bound<K>) {
        let tighter = match (&self.lo, &b) {
            (Bound::Unbounded, _) => true,
            (_, Bound::Unbounded) => false,
            (Bound::Included(a) | Bound::Excluded(a), Bound::Included(v)) => v > a,
            (Bound::Included(a), Bound::Excluded(v)) => v >= a,
            (Bound::Excluded(a), Bound::Excluded(v)) => v > a,
        };
        if tighter {
            self.lo = b;
        }
    }

    fn lower(&mut self, b: Bound<K>) {
        let tighter = match (&self.hi, &b) {
            (Bound::Unbounded, _) => true,
            (_, Bound::Unbounded) => false,
            (Bound::Included(a) | Bound::Excluded(a), Bound::Included(v)) => v < a,
            (Bound::Included(a), Bound::Excluded(v)) => v <= a,
            (Bound::Excluded(a), Bound::Excluded(v)) => v < a,
        };
        if tighter {
            self.hi = b;
        }
    }

    /// Whether no key lies in it (a `BTreeMap::range` over it would panic).
    fn is_empty(&self) -> bool {
        match (&self.lo, &self.hi) {
            (Bound::Unbounded, _) | (_, Bound::Unbounded) => false,
            (Bound::Included(a), Bound::Included(b)) => a > b,
            (Bound::Included(a) | Bound::Excluded(a), Bound::Excluded(b))
            | (Bound::Excluded(a), Bound::Included(b)) => a >= b,
        }
    }
}

/// A bound of the numeric index: `(value, id)` pairs.
type PairBound = Bound<(Num, MatchId)>;

/// The numeric index's bounds over `(value, id)` pairs for a value interval.
fn pair_bounds(iv: &Interval<Num>) -> (PairBound, PairBound) {
    let lo = match iv.lo {
        Bound::Unbounded => Bound::Unbounded,
        Bound::Included(v) => Bound::Included((v, MatchId(0))),
        Bound::Excluded(v) => Bound::Excluded((v, MatchId(u64::MAX))),
    };
    let hi = match iv.hi {
        Bound::Unbounded => Bound::Unbounded,
        Bound::Included(v) => Bound::Included((v, MatchId(u64::MAX))),
        Bound::Excluded(v) => Bound::Excluded((v, MatchId(0))),
    };
    (lo, hi)
}

/// How a list query walks its candidates.
#[derive(Debug, Clone, PartialEq)]
enum Plan {
    /// No candidate can pass (contradictory or NaN predicates).
    Empty,
    /// Every listed match (in the order of the id → match table).
    Scan,
    /// The listed matches of a region, by id.
    Region(String),
    /// The listed matches whose string attribute lies in an interval, by (value, id).
    Str(String, Interval<String>),
    /// The listed matches whose numeric attribute lies in an interval, by (value, id).
    Num(String, Interval<Num>),
}

impl PartialEq for Interval<String> {
    fn eq(&self, other: &Self) -> bool {
        self.lo == other.lo && self.hi == other.hi
    }
}

impl PartialEq for Interval<Num> {
    fn eq(&self, other: &Self) -> bool {
        self.lo == other.lo && self.hi == other.hi
    }
}

/// Matches in memory, indexed for lists: by id, by join code, by expiry (for reaping), and —
/// for listed matches only, since lists show nothing else — by region, by each declared
/// string attribute (value → ids) and by each declared numeric attribute (ordered values).
///
/// [`list`](Index::list) plans each query: it walks the smallest candidate set one of the
/// query's indexed predicates gives (a region, a string attribute's value or range, a numeric
/// attribute's range), rejects what it can from the id sets of the other exact predicates and
/// a compact record per listed match (expiry, slots, password, region and declared attributes)
/// without reading the match, checks the rest with [`ListQuery::accepts`], and stops
/// one match after the page. Only a query with no indexed predicate scans every listed match.
#[derive(Debug)]
pub struct Index {
    schema: Schema,
    matches: HashMap<MatchId, StoredMatch, Ids>,
    codes: HashMap<JoinCode, MatchId>,
    expiry: BTreeSet<(u64, MatchId)>,
    players: u64,
    /// Listed matches (a scan walks every match and skips the others).
    listed: usize,
    regions: HashMap<String, IdSet>,
    strings: HashMap<String, BTreeMap<String, IdSet>>,
    numbers: HashMap<String, Sorted<(Num, MatchId)>>,
    /// A compact copy of what the predicates read of each listed match, checked before the
    /// match itself (which is large and far away in memory).
    records: HashMap<MatchId, Record, Ids>,
}

/// What a list's cheap checks read of a listed match, in one allocation: its expiry, free
/// slots, password flag, region and declared attributes (strings and the region as
/// [`fingerprint`]s, numbers as their bits), by schema position: the strings, then the
/// numbers.
#[derive(Debug, Clone)]
struct Record {
    expires_unix: u64,
    free_slots: u16,
    has_password: bool,
    region: Option<u64>,
    /// Bit `i`: value `i` is present and of its declared type (no filter of the declared type
    /// accepts an absent value or one of the other type). Positions past 63 are never set.
    present: u64,
    values: Box<[u64]>,
}

/// A string's hash: two strings with different fingerprints differ (equal ones may not be
/// equal; `accepts` tells).
fn fingerprint(s: &str) -> u64 {
    use std::hash::{DefaultHasher, Hash};
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

impl Record {
    fn of(schema: &Schema, info: &MatchInfo) -> Self {
        let strs = schema.strings.iter().map(|n| match info.attributes.get(n) {
            Some(Value::Str(v)) => Some(fingerprint(v)),
            _ => None,
        });
        let nums = schema.numbers.iter().map(|n| match info.attributes.get(n) {
            Some(Value::Num(v)) => Some(v.to_bits()),
            _ => None,
        });
        let mut present = 0;
        let values = strs
            .chain(nums)
            .enumerate()
            .map(|(i, v)| {
                if v.is_some() && i < 64 {
                    present |= 1 << i;
                }
                v.unwrap_or(0)
            })
            .collect();
        Self {
            expires_unix: info.expires_unix,
            free_slots: info.free_slots(),
            has_password: info.has_password,
            region: info.region.as_deref().map(fingerprint),
            present,
            values,
        }
    }

    /// Value `at`, if present (`None` also past position 63, where presence is not kept).
    fn value(&self, at: usize) -> Option<u64> {
        if at < 64 && self.present & (1 << at) != 0 { self.values.get(at).copied() } else { None }
    }
}

/// A query compiled against the schema once per list: the predicates a [`Record`] answers.
/// It only rejects what [`ListQuery::accepts`] (or the expiry) would reject; `accepts` stays
/// the final word on what it passes.
#[derive(Debug)]
struct Prefilter {
    now_unix: u64,
    min_free_slots: u16,
    hide_passworded: bool,
    /// The region's fingerprint, if the query has one.
    region: Option<u64>,
    /// Equality filters on declared string attributes: (record position, fingerprint).
    strs: Vec<(usize, u64)>,
    /// Numeric filters on declared numeric attributes: (record position, op, value).
    nums: Vec<(usize, Op, f64)>,
}

impl Prefilter {
    fn new(schema: &Schema, query: &ListQuery, now_unix: u64) -> Self {
        // Positions past 63 keep no presence bit: their filters are left to `accepts`.
        let strs = query
            .filters
            .iter()
            .filter_map(|f| {
                let (Op::Eq, Value::Str(v)) = (f.op, &f.value) else { return None };
                let at = schema.strings.iter().position(|n| *n == f.attribute)?;
                (at < 64).then(|| (at, fingerprint(v)))
            })
            .collect();
        let nums = query
            .filters
            .iter()
            .filter_map(|f| {
                let Value::Num(x) = f.value else { return None };
                let at = schema.numbers.iter().position(|n| *n == f.attribute)?;
                let at = schema.strings.len() + at;
                (at < 64).then_some((at, f.op, x))
            })
            .collect();
        Self {
            now_unix,
            min_free_slots: query.min_free_slots,
            hide_passworded: query.hide_passworded,
            region: query.region.as_deref().map(fingerprint),
            strs,
            nums,
        }
    }

    /// Whether `r` may pass (false: the query rejects its match).
    fn admits(&self, r: &Record) -> bool {
        self.now_unix < r.expires_unix
            && r.free_slots >= self.min_free_slots
            && !(self.hide_passworded && r.has_password)
            && self.region.is_none_or(|want| r.region == Some(want))
            // A string `==` holds only for a string of the same fingerprint.
            && self.strs.iter().all(|&(at, want)| r.value(at) == Some(want))
            // `accepts` holds `op` between the attribute's value and `x`; an absent or string
            // value fails every numeric comparison.
            && self
                .nums
                .iter()
                .all(|&(at, op, x)| r.value(at).is_some_and(|v| holds(op, f64::from_bits(v), x)))
    }
}

/// [`Op::holds`] between two numbers, without building `Value`s.
fn holds(op: Op, a: f64, b: f64) -> bool {
    let Some(ordering) = a.partial_cmp(&b) else { return false };
    match op {
        Op::Eq => ordering.is_eq(),
        Op::Ne => ordering.is_ne(),
        Op::Lt => ordering.is_lt(),
        Op::Le => ordering.is_le(),
        Op::Gt => ordering.is_gt(),
        Op::Ge => ordering.is_ge(),
        _ => true, // An operator this does not know: leave it to `accepts`.
    }
}

impl Index {
    /// An empty index of the attributes `schema` declares.
    pub fn new(schema: Schema) -> Self {
        let strings = schema.strings.iter().map(|s| (s.clone(), BTreeMap::new())).collect();
        let numbers = schema.numbers.iter().map(|n| (n.clone(), Sorted::default())).collect();
        Self {
            schema,
            matches: HashMap::default(),
            codes: HashMap::new(),
            expiry: BTreeSet::new(),
            players: 0,
            listed: 0,
            regions: HashMap::new(),
            strings,
            numbers,
            records: HashMap::default(),
        }
    }

    /// The declared attributes.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Matches held, expired or not.
    pub fn len(&self) -> usize {
        self.matches.len()
    }

    /// Whether it holds no match.
    pub fn is_empty(&self) -> bool {
        self.matches.is_empty()
    }

    /// A match, expired or not.
    pub fn get(&self, id: MatchId) -> Option<&StoredMatch> {
        self.matches.get(&id)
    }

    /// The match holding a join code, expired or not.
    pub fn code_holder(&self, code: JoinCode) -> Option<MatchId> {
        self.codes.get(&code).copied()
    }

    /// Adds a match or replaces the one with its id, re-indexing what changed. The match it
    /// replaced, if any.
    pub fn upsert(&mut self, m: StoredMatch) -> Option<StoredMatch> {
        let id = m.info.id;
        let old = self.matches.remove(&id);
        if let Some(old) = &old {
            if !same_keys(old, &m) {
                self.unindex(old);
                self.index(&m);
            }
            self.players -= old.members.len() as u64;
        } else {
            self.index(&m);
        }
        self.players += m.members.len() as u64;
        // Players, size and password change without moving the match in any index: the
        // record follows every change.
        if m.info.listed {
            self.records.insert(id, Record::of(&self.schema, &m.info));
        } else {
            self.records.remove(&id);
        }
        self.matches.insert(id, m);
        old
    }

    /// Removes a match; the match removed.
    pub fn remove(&mut self, id: MatchId) -> Option<StoredMatch> {
        let old = self.matches.remove(&id)?;
        self.records.remove(&id);
        self.unindex(&old);
        self.players -= old.members.len() as u64;
        Some(old)
    }

    /// Changes a match in place through `f` (re-indexing what it changed); what `f` returned,
    /// unless there is no such match.
    pub fn modify<R>(&mut self, id: MatchId, f: impl FnOnce(&mut StoredMatch) -> R) -> Option<R> {
        let mut m = self.matches.get(&id)?.clone();
        let r = f(&mut m);
        m.info.id = id;
        self.upsert(m);
        Some(r)
    }

    /// The ids of the matches expired at `now_unix`, soonest first.
    pub fn expired(&self, now_unix: u64) -> Vec<MatchId> {
        self.expiry.range(..=(now_unix, MatchId(u64::MAX))).map(|&(_, id)| id).collect()
    }

    /// Removes every match expired at `now_unix`; how many.
    pub fn reap(&mut self, now_unix: u64) -> usize {
        let gone = self.expired(now_unix);
        for &id in &gone {
            self.remove(id);
        }
        gone.len()
    }

    /// Unexpired matches and the players in them.
    pub fn counts(&self, now_unix: u64) -> StoreCounts {
        let mut counts = StoreCounts { matches: self.matches.len() as u64, players: self.players };
        for id in self.expired(now_unix) {
            if let Some(m) = self.matches.get(&id) {
                counts.matches -= 1;
                counts.players -= m.members.len() as u64;
            }
        }
        counts
    }

    /// A page of the listed, unexpired matches `query` accepts, in the order of the plan's
    /// index (stable while the matches do not change).
    pub fn list(&self, query: &ListQuery, now_unix: u64) -> MatchPage {
        let skip = u64::from(query.page).saturating_mul(u64::from(query.page_size));
        let size = usize::from(query.page_size);
        let mut page = MatchPage { matches: Vec::with_capacity(size.min(128)), more: false };
        let mut skipped = 0u64;
        let plan = self.plan(query);
        // Before a candidate's match is read, its id must be in the set of every other exact
        // predicate (a region, a string attribute's value): a few lookups in sets that stay in
        // the cache, instead of a match in memory for each candidate they reject.
        let Some(sets) = self.member_sets(query, &plan) else { return page };
        let pre = Prefilter::new(&self.schema, query, now_unix);
        let needle =
            query.name_contains.as_deref().filter(|n| n.is_ascii()).map(str::to_ascii_lowercase);
        let walk: Box<dyn Iterator<Item = &StoredMatch>> = if plan == Plan::Scan {
            // Every listed match, in the table's order: no lookup per match.
            Box::new(
                self.matches
                    .values()
                    .filter(|m| m.info.listed)
                    .filter(|m| sets.iter().all(|set| set.contains(&m.info.id))),
            )
        } else {
            // The other exact predicates' sets first (small, they stay in the cache), then one
            // lookup of a small record for the numeric filters, the slots, the password and the
            // expiry: only the matches both admit are read.
            Box::new(
                self.candidates(&plan)
                    .filter(|id| sets.iter().all(|set| set.contains(id)))
                    .filter(|id| self.records.get(id).is_some_and(|r| pre.admits(r)))
                    .filter_map(|id| self.matches.get(&id)),
            )
        };
        for m in walk {
            if let Some(needle) = &needle
                && m.info.name.is_ascii()
                && !contains_ascii_nocase(&m.info.name, needle)
            {
                continue; // What `accepts` would say, without lowercasing a copy.
            }
            if !is_live(&m.info, now_unix) || !query.accepts(&m.info) {
                continue;
            }
            if skipped < skip {
                skipped += 1;
            } else if page.matches.len() < size {
                page.matches.push(m.info.clone());
            } else {
                page.more = true;
                break;
            }
        }
        page
    }

    /// The id sets of the query's exact predicates but the plan's own (a listed match passing
    /// `region` or `attribute == "value"` is in that set); `None` if one has no set (no match
    /// passes).
    fn member_sets(&self, query: &ListQuery, plan: &Plan) -> Option<Vec<&IdSet>> {
        let mut sets = Vec::new();
        if let Some(region) = &query.region
            && !matches!(plan, Plan::Region(_))
        {
            sets.push(self.regions.get(region)?);
        }
        for f in &query.filters {
            let (Op::Eq, Value::Str(v)) = (f.op, &f.value) else { continue };
            let Some(index) = self.strings.get(&f.attribute) else { continue };
            if matches!(plan, Plan::Str(a, _) if *a == f.attribute) {
                continue;
            }
            sets.push(index.get(v)?);
        }
        // The smallest first: it rejects the most.
        sets.sort_by_key(|s| s.len());
        sets.dedup_by(|a, b| std::ptr::eq(*a, *b));
        Some(sets)
    }

    /// Picks the index with the fewest candidates among the query's indexed predicates.
    fn plan(&self, query: &ListQuery) -> Plan {
        // An index with as many candidates as a scan still beats it (ties go to the index).
        let mut best = (Plan::Scan, self.listed.saturating_add(1));
        if let Some(region) = &query.region {
            let n = self.regions.get(region).map_or(0, IdSet::len);
            if n < best.1 {
                best = (Plan::Region(region.clone()), n);
            }
        }
        // One interval per indexed attribute, all of its predicates combined.
        let mut strs: BTreeMap<&str, Interval<String>> = BTreeMap::new();
        let mut nums: BTreeMap<&str, Interval<Num>> = BTreeMap::new();
        for f in &query.filters {
            match &f.value {
                Value::Str(s) if self.strings.contains_key(&f.attribute) => {
                    let mut iv =
                        strs.get(f.attribute.as_str()).cloned().unwrap_or_else(Interval::all);
                    if iv.narrow(f.op, s.clone()) {
                        strs.insert(&f.attribute, iv);
                    }
                }
                Value::Num(n) if self.numbers.contains_key(&f.attribute) => {
                    if n.is_nan() && f.op != Op::Ne {
                        // Nothing compares with NaN: no match passes.
                        return Plan::Empty;
                    }
                    let mut iv =
                        nums.get(f.attribute.as_str()).cloned().unwrap_or_else(Interval::all);
                    if iv.narrow(f.op, Num::new(*n)) {
                        nums.insert(&f.attribute, iv);
                    }
                }
                _ => {}
            }
        }
        for (attr, iv) in strs {
            if iv.is_empty() {
                return Plan::Empty;
            }
            let n = self.count_str(attr, &iv);
            if n < best.1 {
                best = (Plan::Str(attr.to_owned(), iv), n);
            }
        }
        for (attr, iv) in nums {
            if iv.is_empty() {
                return Plan::Empty;
            }
            let n = self.count_num(attr, &iv);
            if n < best.1 {
                best = (Plan::Num(attr.to_owned(), iv), n);
            }
        }
        best.0
    }

    /// How many listed matches a string interval holds: exact (the sets of the values in it),
    /// unless it spans more than [`COUNT_CAP`] values (then every match with the attribute).
    fn count_str(&self, attr: &str, iv: &Interval<String>) -> usize {
        let Some(index) = self.strings.get(attr) else { return usize::MAX };
        if let (Bound::Included(a), Bound::Included(b)) = (&iv.lo, &iv.hi)
            && a == b
        {
            return index.get(a).map_or(0, IdSet::len);
        }
        let mut n = 0;
        for (values, (_, set)) in index.range((iv.lo.clone(), iv.hi.clone())).enumerate() {
            if values == COUNT_CAP {
                return index.values().map(IdSet::len).sum();
            }
            n += set.len();
        }
        n
    }

    /// How many listed matches a numeric interval holds (exact: the index counts a range in
    /// a few binary searches).
    fn count_num(&self, attr: &str, iv: &Interval<Num>) -> usize {
        let Some(index) = self.numbers.get(attr) else { return usize::MAX };
        let (lo, hi) = pair_bounds(iv);
        index.count(&lo, &hi)
    }

    /// The ids a plan walks, in its order.
    fn candidates<'a>(&'a self, plan: &Plan) -> Box<dyn Iterator<Item = MatchId> + 'a> {
        match plan {
            Plan::Empty => Box::new(std::iter::empty()),
            // `list` walks the matches themselves for a scan.
            Plan::Scan => {
                Box::new(self.matches.values().filter(|m| m.info.listed).map(|m| m.info.id))
            }
            Plan::Region(r) => match self.regions.get(r) {
                Some(set) => Box::new(set.iter().copied()),
                None => Box::new(std::iter::empty()),
            },
            Plan::Str(attr, iv) => match self.strings.get(attr) {
                Some(index) => Box::new(
                    index
                        .range((iv.lo.clone(), iv.hi.clone()))
                        .flat_map(|(_, s)| s.iter().copied()),
                ),
                None => Box::new(std::iter::empty()),
            },
            Plan::Num(attr, iv) => match self.numbers.get(attr) {
                Some(index) => {
                    let (lo, hi) = pair_bounds(iv);
                    Box::new(index.range(&lo, &hi).map(|&(_, id)| id))
                }
                None => Box::new(std::iter::empty()),
            },
        }
    }

    fn index(&mut self, m: &StoredMatch) {
        let id = m.info.id;
        self.codes.insert(m.code, id);
        self.expiry.insert((m.info.expires_unix, id));
        if !m.info.listed {
            return;
        }
        self.listed += 1;
        if let Some(r) = &m.info.region {
            self.regions.entry(r.clone()).or_default().insert(id);
        }
        for (attr, value) in &m.info.attributes {
            match value {
                Value::Str(s) => {
                    if let Some(index) = self.strings.get_mut(attr) {
                        index.entry(s.clone()).or_default().insert(id);
                    }
                }
                Value::Num(n) => {
                    if let Some(index) = self.numbers.get_mut(attr) {
                        index.insert((Num::new(*n), id));
                    }
                }
            }
        }
    }

    fn unindex(&mut self, m: &StoredMatch) {
        let id = m.info.id;
        if self.codes.get(&m.code) == Some(&id) {
            self.codes.remove(&m.code);
        }
        self.expiry.remove(&(m.info.expires_unix, id));
        if !m.info.listed {
            return;
        }
        self.listed -= 1;
        if let Some(r) = &m.info.region {
            self.regions.remove_id(r, id);
        }
        for (attr, value) in &m.info.attributes {
            match value {
                Value::Str(s) => {
                    if let Some(index) = self.strings.get_mut(attr) {
                        index.remove_id(s, id);
                    }
                }
                Value::Num(n) => {
                    if let Some(index) = self.numbers.get_mut(attr) {
                        index.remove(&(Num::new(*n), id));
                    }
                }
            }
        }
    }
}

/// Whether `haystack` contains `needle` (ASCII lowercase), ignoring ASCII case: for ASCII
/// strings, what `haystack.to_lowercase().contains(needle)` says.
fn contains_ascii_nocase(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    let Some((&first, rest)) = n.split_first() else { return true };
    let Some(last_start) = h.len().checked_sub(n.len()) else { return false };
    (0..=last_start).any(|i| {
        h[i].to_ascii_lowercase() == first
            && h[i + 1..i + n.len()].iter().zip(rest).all(|(a, b)| a.to_ascii_lowercase() == *b)
    })
}

/// A map of value → ids that drops a value when its last id leaves.
trait MapOfSets {
    fn remove_id(&mut self, key: &str, id: MatchId);
}

impl MapOfSets for HashMap<String, IdSet> {
    fn remove_id(&mut self, key: &str, id: MatchId) {
        if let Some(set) = self.get_mut(key) {
            set.remove(&id);
            if set.is_empty() {
                self.remove(key);
            }
        }
    }
}

impl MapOfSets for BTreeMap<String, IdSet> {
    fn remove_id(&mut self, key: &str, id: MatchId) {
        if let Some(set) = self.get_mut(key) {
            set.remove(&id);
            if set.is_empty() {
                self.remove(key);
            }
        }
    }
}

/// Whether two versions of a match sit at the same places in every index.
fn same_keys(a: &StoredMatch, b: &StoredMatch) -> bool {
    a.code == b.code && keys_of(&a.info) == keys_of(&b.info)
}

type Keys<'a> = (u64, bool, Option<&'a String>, Option<&'a BTreeMap<String, Value>>);

/// What places a match in the indexes (besides its code).
fn keys_of(i: &MatchInfo) -> Keys<'_> {
    let listed = i.listed;
    (i.expires_unix, listed, i.region.as_ref().filter(|_| listed), listed.then_some(&i.attributes))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use sturnus_lobby::api::{Filter, HostMode};

    use super::*;

    const NOW: u64 = 1_000;

    /// SplitMix64: the tests' seeded generator.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[usize::try_from(self.below(items.len() as u64)).unwrap()]
        }

        fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }
    }

    const STRS: [&str; 6] = ["dust", "inferno", "nuke", "Mirage", "", "zz"];
    const NUMS: [f64; 9] = [-3.5, -0.0, 0.0, 1.0, 2.5, 7.0, 10.0, 99.0, 1e9];

    fn random_value(rng: &mut Rng, string: bool) -> Value {
        // Now and then a value of the other type (a store trusts its input; lists must still
        // agree with `accepts`).
        if rng.chance(5) != string {
            Value::from(*rng.pick(&STRS))
        } else if rng.chance(50) {
            Value::Num(*rng.pick(&NUMS))
        } else {
            Value::Num(f64::from(u32::try_from(rng.below(200)).unwrap()) / 2.0)
        }
    }

    fn random_match(rng: &mut Rng, id: u64) -> StoredMatch {
        let size = u16::try_from(1 + rng.below(8)).unwrap();
        let players = u16::try_from(rng.below(u64::from(size) + 1)).unwrap();
        let mut attributes = BTreeMap::new();
        for attr in ["s1", "s2", "s3"] {
            if rng.chance(85) {
                attributes.insert(attr.to_owned(), random_value(rng, true));
            }
        }
        for attr in ["n1", "n2", "n3"] {
            if rng.chance(85) {
                attributes.insert(attr.to_owned(), random_value(rng, false));
            }
        }
        if rng.chance(20) {
            attributes.insert("free".to_owned(), random_value(rng, true));
        }
        let names = ["Friday Night", "casual", "RANKED night", "pro league"];
        StoredMatch {
            info: MatchInfo {
                id: MatchId(id),
                name: format!("{} {id}", rng.pick(&names)),
                size,
                players,
                listed: rng.chance(90),
                has_password: rng.chance(20),
                attributes,
                region: rng.pick(&[Some("eu"), Some("us"), Some("ap"), None]).map(str::to_owned),
                relayed: false,
                created_unix: 0,
                expires_unix: NOW - 10 + rng.below(40),
            },
            code: JoinCode::from_bits(id),
            host_token: [0; 32],
            password: None,
            private_key: [0; 32],
            protocol_id: 1,
            host: HostMode::Relay,
            server_address: std::net::SocketAddr::from(([192, 0, 2, 1], 7777)),
            relay_session: None,
            next_slot: players + 1,
            members: (1..=players).map(|s| (s, [0; 32])).collect(),
        }
    }

    fn random_query(rng: &mut Rng) -> ListQuery {
        let ops = [Op::Eq, Op::Ne, Op::Lt, Op::Le, Op::Gt, Op::Ge];
        let attrs = ["s1", "s2", "s3", "n1", "n2", "n3", "free"];
        let filters = (0..rng.below(4))
            .map(|_| {
                let attr = *rng.pick(&attrs);
                let string = attr.starts_with('s') || attr == "free";
                let value =
                    if rng.chance(3) { Value::Num(f64::NAN) } else { random_value(rng, string) };
                Filter { attribute: attr.to_owned(), op: *rng.pick(&ops), value }
            })
            .collect();
        ListQuery {
            page: 0,
            page_size: u16::try_from(1 + rng.below(25)).unwrap(),
            name_contains: rng.chance(15).then(|| (*rng.pick(&["NIGHT", "cas", "x"])).to_owned()),
            region: rng.chance(25).then(|| (*rng.pick(&["eu", "us", "mars"])).to_owned()),
            min_free_slots: u16::try_from(rng.below(3)).unwrap(),
            hide_passworded: rng.chance(20),
            filters,
        }
    }

    fn schema() -> Schema {
        Schema {
            strings: vec!["s1".into(), "s2".into(), "s3".into()],
            numbers: vec!["n1".into(), "n2".into(), "n3".into()],
        }
    }

    /// Walks every page of `query` and checks them against a brute-force filter of `truth`.
    fn check(index: &Index, truth: &BTreeMap<MatchId, StoredMatch>, query: &ListQuery, now: u64) {
        let expected: BTreeMap<MatchId, &MatchInfo> = truth
            .values()
            .filter(|m| is_live(&m.info, now) && query.accepts(&m.info))
            .map(|m| (m.info.id, &m.info))
            .collect();
        let mut seen = BTreeMap::new();
        for page in 0.. {
            let got = index.list(&ListQuery { page, ..query.clone() }, now);
            for m in &got.matches {
                assert!(seen.insert(m.id, m.clone()).is_none(), "{:?} twice for {query:?}", m.id);
            }
            if !got.more {
                break;
            }
            assert_eq!(
                got.matches.len(),
                usize::from(query.page_size),
                "a short page before the end"
            );
        }
        let seen: BTreeMap<MatchId, &MatchInfo> = seen.iter().map(|(k, v)| (*k, v)).collect();
        assert_eq!(seen, expected, "{query:?} with plan {:?}", index.plan(query));
    }

    #[test]
    fn planned_lists_equal_a_brute_force_filter() {
        for seed in 0..6 {
            let mut rng = Rng(seed);
            let mut index = Index::new(schema());
            let mut truth = BTreeMap::new();
            for id in 0..600 {
                let m = random_match(&mut rng, id);
                truth.insert(m.info.id, m.clone());
                index.upsert(m);
            }
            for round in 0..250 {
                // Change some matches between queries: every index must follow.
                for _ in 0..3 {
                    let id = MatchId(rng.below(700));
                    match rng.below(5) {
                        0 => {
                            truth.remove(&id);
                            index.remove(id);
                        }
                        1 => {
                            let m = random_match(&mut rng, id.0);
                            truth.insert(id, m.clone());
                            index.upsert(m);
                        }
                        2 => {
                            let listed = rng.chance(50);
                            let string = rng.chance(50);
                            let value = random_value(&mut rng, string);
                            let attr = (*rng.pick(&["s1", "n1", "s2", "n2"])).to_owned();
                            let exp = NOW - 10 + rng.below(40);
                            let change = |m: &mut StoredMatch| {
                                m.info.listed = listed;
                                m.info.attributes.insert(attr.clone(), value.clone());
                                m.info.expires_unix = exp;
                            };
                            if let Some(m) = truth.get_mut(&id) {
                                change(m);
                            }
                            index.modify(id, change);
                        }
                        _ => {
                            let region =
                                rng.pick(&[Some("eu"), None, Some("ap")]).map(str::to_owned);
                            let code = JoinCode::from_bits(id.0 + 10_000 * (1 + rng.below(5)));
                            if let Some(m) = truth.get_mut(&id) {
                                m.info.region = region.clone();
                                m.code = code;
                            }
                            index.modify(id, |m| {
                                m.info.region = region;
                                m.code = code;
                            });
                        }
                    }
                }
                let now = NOW - 5 + rng.below(30);
                check(&index, &truth, &random_query(&mut rng), now);
                if round % 50 == 0 {
                    check(
                        &index,
                        &truth,
                        &ListQuery { min_free_slots: 0, ..Default::default() },
                        now,
                    );
                }
            }
            // Reaping and counting agree with the truth too.
            let now = NOW + 10;
            let live: Vec<&StoredMatch> =
                truth.values().filter(|m| is_live(&m.info, now)).collect();
            let players = live.iter().map(|m| m.members.len() as u64).sum();
            assert_eq!(index.counts(now), StoreCounts { matches: live.len() as u64, players });
            let expired = truth.len() - live.len();
            assert_eq!(index.reap(now), expired);
            assert_eq!(index.len(), live.len());
            for m in truth.values() {
                let holder = index.code_holder(m.code);
                if is_live(&m.info, now) {
                    assert_eq!(index.get(m.info.id), Some(m));
                    assert_eq!(holder, Some(m.info.id));
                } else {
                    assert_eq!(index.get(m.info.id), None);
                }
            }
        }
    }

    fn plain(id: u64, s1: &str, n1: f64, region: &str) -> StoredMatch {
        let mut rng = Rng(id);
        let mut m = random_match(&mut rng, id);
        m.info.listed = true;
        m.info.players = 0;
        m.members.clear();
        m.info.expires_unix = NOW + 100;
        m.info.attributes =
            [("s1".to_owned(), Value::from(s1)), ("n1".to_owned(), Value::Num(n1))].into();
        m.info.region = Some(region.to_owned());
        m
    }

    #[test]
    fn the_plan_walks_the_most_selective_index() {
        let mut index = Index::new(schema());
        for i in 0..10_000u32 {
            let s1 = if i % 1000 == 0 { "rare" } else { "common" };
            let region = if i < 3 { "small" } else { "big" };
            index.upsert(plain(u64::from(i), s1, f64::from(i), region));
        }
        let q = |filters: Vec<Filter>| ListQuery { filters, ..ListQuery::default() };
        let plan = |query: &ListQuery| index.plan(query);
        let kind = |p: Plan| match p {
            Plan::Empty => "empty".to_owned(),
            Plan::Scan => "scan".to_owned(),
            Plan::Region(r) => format!("region {r}"),
            Plan::Str(a, _) => format!("string {a}"),
            Plan::Num(a, _) => format!("number {a}"),
        };
        // A rare string value beats a range holding everything.
        let query = q(vec![Filter::new("n1", Op::Ge, 0.0), Filter::new("s1", Op::Eq, "rare")]);
        assert_eq!(kind(plan(&query)), "string s1");
        // A narrow range beats a common value (counted exactly)…
        let query = q(vec![Filter::new("s1", Op::Eq, "common"), Filter::new("n1", Op::Lt, 20.0)]);
        assert_eq!(kind(plan(&query)), "number n1");
        // … and so does a wide one (about half).
        let query = q(vec![Filter::new("s1", Op::Eq, "common"), Filter::new("n1", Op::Ge, 5000.0)]);
        assert_eq!(kind(plan(&query)), "number n1");
        // Unless the value is rarer.
        let query = q(vec![Filter::new("s1", Op::Eq, "rare"), Filter::new("n1", Op::Ge, 5000.0)]);
        assert_eq!(kind(plan(&query)), "string s1");
        // A small region beats both.
        let query =
            ListQuery { region: Some("small".into()), ..q(vec![Filter::new("n1", Op::Lt, 20.0)]) };
        assert_eq!(kind(plan(&query)), "region small");
        // Any indexed predicate beats a scan, even one holding everything.
        assert_eq!(kind(plan(&q(vec![Filter::new("n1", Op::Ge, 0.0)]))), "number n1");
        assert_eq!(kind(plan(&q(vec![Filter::new("s1", Op::Ge, "a")]))), "string s1");
        // Scans only without one: a name, an undeclared attribute, `Ne`.
        let name = ListQuery { name_contains: Some("night".into()), ..ListQuery::default() };
        assert_eq!(kind(plan(&name)), "scan");
        assert_eq!(kind(plan(&q(vec![Filter::new("free", Op::Eq, "x")]))), "scan");
        assert_eq!(kind(plan(&q(vec![Filter::new("s1", Op::Ne, "rare")]))), "scan");
        // Nothing to walk when nothing can pass.
        assert_eq!(kind(plan(&q(vec![Filter::new("n1", Op::Eq, f64::NAN)]))), "empty");
        let contradiction = q(vec![Filter::new("n1", Op::Gt, 5.0), Filter::new("n1", Op::Lt, 5.0)]);
        assert_eq!(kind(plan(&contradiction)), "empty");
        assert_eq!(index.list(&contradiction, NOW).matches, vec![]);
        // And the rare plan's page is right.
        let query = q(vec![Filter::new("s1", Op::Eq, "rare"), Filter::new("n1", Op::Ge, 5000.0)]);
        let page = index.list(&query, NOW);
        let mut ids: Vec<u64> = page.matches.iter().map(|m| m.id.0).collect();
        ids.sort_unstable();
        assert_eq!(ids, vec![5000, 6000, 7000, 8000, 9000]);
    }

    /// Not a test of speed: how long a list takes at 100,000 matches, printed for the report
    /// (`cargo test -p sturnus-services --release --lib -- --ignored list_latency --nocapture`).
    #[test]
    #[ignore = "a measurement, run by hand in release"]
    fn list_latency_at_100k_matches() {
        let schema = Schema::default();
        let mut index = Index::new(schema.clone());
        let mut rng = Rng(7);
        let maps =
            ["dust", "inferno", "nuke", "mirage", "vertigo", "ancient", "anubis", "overpass"];
        for id in 0..100_000u64 {
            let mut m = plain(id, "", 0.0, "eu");
            m.info.region = Some((*rng.pick(&["eu", "us", "ap", "sa"])).to_owned());
            m.info.size = 8;
            m.info.players = u16::try_from(rng.below(9)).unwrap();
            m.members = (1..=m.info.players).map(|s| (s, [0; 32])).collect();
            m.info.has_password = rng.chance(10);
            m.info.attributes = BTreeMap::new();
            for (i, s) in schema.strings.iter().enumerate() {
                let v = if i == 0 {
                    (*rng.pick(&maps)).to_owned()
                } else {
                    format!("v{}", rng.below(20))
                };
                m.info.attributes.insert(s.clone(), Value::Str(v));
            }
            for n in &schema.numbers {
                m.info.attributes.insert(n.clone(), Value::Num(rng.below(3000) as f64));
            }
            index.upsert(m);
        }
        let queries: Vec<ListQuery> = (0..2000)
            .map(|i| {
                let elo = (rng.below(2800)) as f64;
                let mut filters =
                    vec![Filter::new("n1", Op::Ge, elo), Filter::new("n1", Op::Le, elo + 200.0)];
                if i % 2 == 0 {
                    filters.push(Filter::new("s1", Op::Eq, *rng.pick(&maps)));
                }
                ListQuery {
                    region: (i % 3 == 0).then(|| "eu".to_owned()),
                    hide_passworded: i % 4 == 0,
                    filters,
                    page: u32::try_from(rng.below(3)).unwrap(),
                    ..ListQuery::default()
                }
            })
            .collect();
        #[expect(clippy::disallowed_methods, reason = "a measurement printed for people")]
        let started = std::time::Instant::now();
        let mut found = 0;
        for q in &queries {
            found += index.list(q, NOW).matches.len();
        }
        let per = started.elapsed() / u32::try_from(queries.len()).unwrap();
        println!(
            "{} filtered lists at 100k matches: {per:?} each ({found} matches)",
            queries.len()
        );
        #[expect(clippy::disallowed_methods, reason = "a measurement printed for people")]
        let started = std::time::Instant::now();
        let mut walked = 0;
        for q in &queries {
            let plan = index.plan(q);
            walked += index.candidates(&plan).count();
        }
        println!(
            "planning and walking every candidate: {:?} ({} candidates a query)",
            started.elapsed() / u32::try_from(queries.len()).unwrap(),
            walked / queries.len()
        );
        // Shaped as `sturnus-bench services` lists: one of 8 `s1` values and a 500-wide `n1`
        // range, page 0 of 20.
        let bench: Vec<ListQuery> = (0..2000)
            .map(|_| {
                let skill = rng.below(2500) as f64;
                ListQuery {
                    filters: vec![
                        Filter::new("s1", Op::Eq, *rng.pick(&maps)),
                        Filter::new("n1", Op::Ge, skill),
                        Filter::new("n1", Op::Le, skill + 500.0),
                    ],
                    ..ListQuery::default()
                }
            })
            .collect();
        #[expect(clippy::disallowed_methods, reason = "a measurement printed for people")]
        let started = std::time::Instant::now();
        let mut found = 0;
        for q in &bench {
            found += index.list(q, NOW).matches.len();
        }
        println!(
            "{} benchmark-shaped lists (s1 == v && n1 in x..=x+500): {:?} each ({found} matches)",
            bench.len(),
            started.elapsed() / u32::try_from(bench.len()).unwrap()
        );
        let unfiltered = ListQuery::default();
        #[expect(clippy::disallowed_methods, reason = "a measurement printed for people")]
        let started = std::time::Instant::now();
        for _ in 0..100 {
            index.list(&unfiltered, NOW);
        }
        println!("an unfiltered first page: {:?}", started.elapsed() / 100);
        let name = ListQuery { name_contains: Some("zzz".into()), ..ListQuery::default() };
        #[expect(clippy::disallowed_methods, reason = "a measurement printed for people")]
        let started = std::time::Instant::now();
        index.list(&name, NOW);
        println!("a full scan (a name no match has): {:?}", started.elapsed());
    }
}
