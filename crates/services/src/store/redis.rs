//! [`RedisStore`]: matches in Redis, shared by every `sturnusd` node that names it.
//!
//! # Layout (keys under a prefix, `sturnus` by default)
//!
//! - `{p}:m:{id}`: a HASH per match (`id` in 16 hex digits). Fields: `doc` (the JSON of the
//!   [`StoredMatch`] without its members and attributes), `exp` (expiry, Unix seconds), `size`,
//!   `pw` (the password digest in hex, or empty), `next` (the next slot), `n` (players),
//!   `listed` (`1`/`0`), `code` (the join code's bits), `ht` (the host token's digest in hex,
//!   for the one-step host heartbeat; hashes written before it lack it), `s:{slot}` (a member's leave-token
//!   digest in hex) and `a:{name}` (an attribute: `s` then a string, or `n` then a number).
//!   Lua reads and writes those fields; it never parses JSON, so 64-bit integers and numbers
//!   keep every bit.
//! - `{p}:code:{bits}`: the id of the match a join code finds.
//! - `{p}:exp`: a ZSET of ids by expiry (reaping walks it).
//! - `{p}:players`: the players in all matches (counts).
//! - `{p}:seq` and `{p}:changes`: every write increments `seq` and appends an event to the
//!   `changes` stream (approximately capped at [`STREAM_MAXLEN`]): `seq`, `op`, `id` and what
//!   changed. `put` carries every field of the match's hash after the write and `del` nothing;
//!   the two hottest writes carry only what they changed: `exp` (a heartbeat) the new `exp`,
//!   `join` the new `next` and the new member's `s:{slot}`. A node applies those to the state
//!   its cache holds, which is the match's state before the event (see Consistency).
//!
//! # Consistency
//!
//! Every write is one Lua script (atomic in Redis), so a join's expiry, password and slot
//! checks and its change are one step however many nodes race. `get`, `find_code`, `join` and
//! `counts` read Redis and are exact. `list` is served from a local [`Index`] that a background
//! task keeps up to date by reading the change stream in order (`XREAD BLOCK`); a node also
//! applies its own writes as soon as they return, so it reads its own writes. The cache keeps
//! each match's event `seq` and ignores older events; a gap in `seq` (the node fell behind a
//! trim of the stream, or Redis lost its data) makes it reload the whole state and read the
//! stream from the position it captured before loading.
//!
//! A `join` or `exp` event changes the cached state instead of replacing it. That is exact:
//! the follower applies events in `seq` order, and a node's own writes only ever move a
//! match's state ahead, so when an event is newer than the cached state, the cached state is
//! the one right before it (after a reload, a replayed event may land on a newer state; the
//! events after it bring the state back, as they do for replayed `put`s).
//!
//! Everything lives in Redis: dropping a node loses nothing, and a node started later loads
//! it all.
//!
//! # Limits
//!
//! - One Redis (or Valkey, or a Sentinel-managed primary), not Redis Cluster: the scripts
//!   build the keys they touch from the prefix rather than declaring them.
//! - A match's event carries its whole hash as `XADD` arguments (Lua's `unpack`, which takes
//!   about 8,000 values): matches up to a few thousand players.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncConnectionConfig, Client, Script, Value as RValue};
use sturnus_lobby::JoinCode;
use sturnus_lobby::api::{ListQuery, MatchId, MatchInfo, MatchPage, Value};

use super::index::Index;
use super::{
    Digest, HostHeartbeat, JoinOutcome, JoinTicket, Schema, Store, StoreCounts, StoreError,
    StoredMatch, is_live,
};

/// A hash field or stream entry field: name and value.
type Field = (Vec<u8>, Vec<u8>);
/// A hash's or an entry's fields.
type Fields = Vec<Field>;

/// The change stream keeps about this many events (`XADD MAXLEN ~`). A node that falls
/// further behind reloads the whole state.
pub const STREAM_MAXLEN: u64 = 100_000;

/// The key prefix [`RedisStore::connect`] uses.
pub const DEFAULT_PREFIX: &str = "sturnus";

/// How long the follower's `XREAD` blocks before it asks again (milliseconds).
const BLOCK_MS: u64 = 1000;

/// Matches a reap removes per script call (a call stays short; `reap` loops).
const REAP_BATCH: usize = 1000;

/// What every script starts with: `ARGV[1]` is the key prefix.
const PRELUDE: &str = r"
local P = ARGV[1]
local function mkey(id) return P .. ':m:' .. id end
local function ckey(code) return P .. ':code:' .. code end
local function emit(op, id, fields)
  local seq = redis.call('INCR', P .. ':seq')
  if fields then
    redis.call('XADD', P .. ':changes', 'MAXLEN', '~', MAXLEN, '*', 'seq', seq, 'op', op, 'id', id, unpack(fields))
  else
    redis.call('XADD', P .. ':changes', 'MAXLEN', '~', MAXLEN, '*', 'seq', seq, 'op', op, 'id', id)
  end
  return seq
end
local function put(id)
  local f = redis.call('HGETALL', mkey(id))
  return emit('put', id, f), f
end
local function live(id, now)
  local exp = redis.call('HGET', mkey(id), 'exp')
  return exp and tonumber(exp) > now
end
local function purge(id)
  local k = mkey(id)
  local code = redis.call('HGET', k, 'code')
  if not code then
    redis.call('ZREM', P .. ':exp', id)
    return false
  end
  if redis.call('GET', ckey(code)) == id then redis.call('DEL', ckey(code)) end
  redis.call('DECRBY', P .. ':players', tonumber(redis.call('HGET', k, 'n')))
  redis.call('DEL', k)
  redis.call('ZREM', P .. ':exp', id)
  return emit('del', id, nil)
end
";

/// `ARGV`: prefix, id, code, exp, players, then the hash's field/value pairs.
const CREATE: &str = r"
local id, code, exp = ARGV[2], ARGV[3], ARGV[4]
local k = mkey(id)
if redis.call('EXISTS', k) == 1 then return {'id_taken'} end
if redis.call('EXISTS', ckey(code)) == 1 then return {'code_taken'} end
for i = 6, #ARGV, 2 do redis.call('HSET', k, ARGV[i], ARGV[i + 1]) end
redis.call('SET', ckey(code), id)
redis.call('ZADD', P .. ':exp', exp, id)
redis.call('INCRBY', P .. ':players', ARGV[5])
return {'ok', (put(id))}
";

/// `ARGV`: prefix, code, now.
const FIND_CODE: &str = r"
local id = redis.call('GET', ckey(ARGV[2]))
if not id or not live(id, tonumber(ARGV[3])) then return false end
return id
";

/// `ARGV`: prefix, id, now, password digest (hex, or empty), leave digest (hex).
const JOIN: &str = r"
local id = ARGV[2]
local k = mkey(id)
if not live(id, tonumber(ARGV[3])) then return {'not_found'} end
local pw = redis.call('HGET', k, 'pw')
if pw ~= '' and pw ~= ARGV[4] then return {'wrong_password'} end
local n = tonumber(redis.call('HGET', k, 'n'))
local slot = tonumber(redis.call('HGET', k, 'next'))
if n >= tonumber(redis.call('HGET', k, 'size')) or slot >= 65535 then return {'full'} end
redis.call('HSET', k, 'next', slot + 1, 'n', n + 1, 's:' .. slot, ARGV[5])
redis.call('INCR', P .. ':players')
local seq = emit('join', id, {'next', slot + 1, 's:' .. slot, ARGV[5]})
return {'joined', seq, slot, redis.call('HGETALL', k)}
";

/// `ARGV`: prefix, id, now, slot, leave digest (hex, or empty for the host).
const LEAVE: &str = r"
local id = ARGV[2]
local k = mkey(id)
if not live(id, tonumber(ARGV[3])) then return {'no'} end
local field = 's:' .. ARGV[4]
local held = redis.call('HGET', k, field)
if not held or (ARGV[5] ~= '' and held ~= ARGV[5]) then return {'no'} end
redis.call('HDEL', k, field)
redis.call('HINCRBY', k, 'n', -1)
redis.call('DECR', P .. ':players')
local seq, f = put(id)
return {'ok', seq, f}
";

/// `ARGV`: prefix, id, now, new expiry.
const HEARTBEAT: &str = r"
local id = ARGV[2]
if not live(id, tonumber(ARGV[3])) then return {'no'} end
redis.call('HSET', mkey(id), 'exp', ARGV[4])
redis.call('ZADD', P .. ':exp', ARGV[4], id)
local seq = emit('exp', id, {'exp', ARGV[4]})
return {'ok', seq, redis.call('HGETALL', mkey(id))}
";

/// `ARGV`: prefix, id, now, new expiry, host token digest (hex). `unknown` for a match written
/// before hashes kept `ht`.
const HOST_HEARTBEAT: &str = r"
local id = ARGV[2]
local k = mkey(id)
if not live(id, tonumber(ARGV[3])) then return {'not_found'} end
local ht = redis.call('HGET', k, 'ht')
if not ht then return {'unknown'} end
if ht ~= ARGV[5] then return {'not_host'} end
redis.call('HSET', k, 'exp', ARGV[4])
redis.call('ZADD', P .. ':exp', ARGV[4], id)
local seq = emit('exp', id, {'exp', ARGV[4]})
return {'ok', seq, redis.call('HGETALL', k)}
";

/// `ARGV`: prefix, id, now, listed (`1`, `0` or empty), then attribute field/value pairs.
const UPDATE: &str = r"
local id = ARGV[2]
local k = mkey(id)
if not live(id, tonumber(ARGV[3])) then return {'no'} end
if ARGV[4] ~= '' then redis.call('HSET', k, 'listed', ARGV[4]) end
for i = 5, #ARGV, 2 do redis.call('HSET', k, ARGV[i], ARGV[i + 1]) end
local seq, f = put(id)
return {'ok', seq, f}
";

/// `ARGV`: prefix, id, now, new code.
const REPLACE_CODE: &str = r"
local id, code = ARGV[2], ARGV[4]
local k = mkey(id)
if not live(id, tonumber(ARGV[3])) then return {'no'} end
local holder = redis.call('GET', ckey(code))
if holder and holder ~= id then return {'code_taken'} end
local old = redis.call('HGET', k, 'code')
if old ~= code then
  if redis.call('GET', ckey(old)) == id then redis.call('DEL', ckey(old)) end
  redis.call('SET', ckey(code), id)
  redis.call('HSET', k, 'code', code)
end
local seq, f = put(id)
return {'ok', seq, f}
";

/// `ARGV`: prefix, id.
const DESTROY: &str = r"
local seq = purge(ARGV[2])
if not seq then return {'no'} end
return {'ok', seq}
";

/// `ARGV`: prefix, now, batch. Answers how many ids it looked at, then id/seq pairs removed.
const REAP: &str = r"
local now = tonumber(ARGV[2])
local ids = redis.call('ZRANGEBYSCORE', P .. ':exp', '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local out = {#ids}
for _, id in ipairs(ids) do
  local exp = redis.call('HGET', mkey(id), 'exp')
  if not exp then
    redis.call('ZREM', P .. ':exp', id)
  elseif tonumber(exp) <= now then
    table.insert(out, id)
    table.insert(out, purge(id))
  end
end
return out
";

/// `ARGV`: prefix, now. Answers unexpired matches and their players.
const COUNTS: &str = r"
local now = tonumber(ARGV[2])
local matches = redis.call('ZCARD', P .. ':exp')
local players = tonumber(redis.call('GET', P .. ':players') or '0')
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. ':exp', '-inf', now)) do
  matches = matches - 1
  players = players - tonumber(redis.call('HGET', mkey(id), 'n') or '0')
end
return {matches, players}
";

/// `ARGV`: prefix. Answers the last `seq` and the stream id of its event.
const POSITION: &str = r"
local seq = redis.call('GET', P .. ':seq') or '0'
local last = redis.call('XREVRANGE', P .. ':changes', '+', '-', 'COUNT', 1)
if #last > 0 then return {seq, last[1][1]} end
return {seq, '0-0'}
";

/// The store's scripts, loaded once.
#[derive(Debug)]
struct Scripts {
    create: Script,
    find_code: Script,
    join: Script,
    leave: Script,
    heartbeat: Script,
    host_heartbeat: Script,
    update: Script,
    replace_code: Script,
    destroy: Script,
    reap: Script,
    counts: Script,
    position: Script,
}

impl Scripts {
    fn new() -> Self {
        let prelude = PRELUDE.replace("MAXLEN, '*'", &format!("{STREAM_MAXLEN}, '*'"));
        let s = |body: &str| Script::new(&format!("{prelude}{body}"));
        Self {
            create: s(CREATE),
            find_code: s(FIND_CODE),
            join: s(JOIN),
            leave: s(LEAVE),
            heartbeat: s(HEARTBEAT),
            host_heartbeat: s(HOST_HEARTBEAT),
            update: s(UPDATE),
            replace_code: s(REPLACE_CODE),
            destroy: s(DESTROY),
            reap: s(REAP),
            counts: s(COUNTS),
            position: s(POSITION),
        }
    }
}

/// The local read cache: an [`Index`] plus, per match, the `seq` of the event its state came
/// from, so an older event never overwrites a newer state.
#[derive(Debug)]
struct Cache {
    index: Index,
    versions: HashMap<MatchId, u64>,
    /// Matches this node deleted, by the `seq` of the delete, until the follower passes it (an
    /// older `put` read from the stream must not bring them back).
    tombstones: HashMap<MatchId, u64>,
    /// The last `seq` the follower applied from the stream.
    applied: u64,
}

impl Cache {
    fn new(schema: Schema) -> Self {
        Self {
            index: Index::new(schema),
            versions: HashMap::new(),
            tombstones: HashMap::new(),
            applied: 0,
        }
    }

    /// Applies the state of match `id` after the event `seq` (`None`: deleted), unless the
    /// cache holds a newer one.
    fn apply(&mut self, seq: u64, id: MatchId, state: Option<StoredMatch>) {
        let newest = self.versions.get(&id).max(self.tombstones.get(&id)).copied().unwrap_or(0);
        if seq <= newest {
            return;
        }
        match state {
            Some(m) => {
                self.tombstones.remove(&id);
                self.versions.insert(id, seq);
                self.index.upsert(m);
            }
            None => {
                self.versions.remove(&id);
                self.tombstones.insert(id, seq);
                self.index.remove(id);
            }
        }
    }

    /// Applies an event that changes match `id` (a [`Change`]), unless the cache holds a newer
    /// state. The cached state is the one right before the event (the follower applies events
    /// in order; a node's own writes only move a state ahead), so changing it is exact. A
    /// match the cache does not hold (deleted, or unreadable) stays absent.
    fn apply_change(&mut self, seq: u64, id: MatchId, change: Change) {
        let newest = self.versions.get(&id).max(self.tombstones.get(&id)).copied().unwrap_or(0);
        if seq <= newest {
            return;
        }
        let changed = self.index.modify(id, |m| match change {
            Change::Expiry(exp) => m.info.expires_unix = exp,
            Change::Join { next, slot, digest } => {
                m.next_slot = next;
                m.members.insert(slot, digest);
                m.info.players = u16::try_from(m.members.len()).unwrap_or(u16::MAX);
            }
        });
        if changed.is_some() {
            self.versions.insert(id, seq);
        }
    }

    /// The follower applied every event up to `seq`: no older event can come.
    fn advance(&mut self, seq: u64) {
        self.applied = seq;
        if !self.tombstones.is_empty() {
            self.tombstones.retain(|_, s| *s > seq);
        }
    }
}

/// What a `join` or `exp` event changes in a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// A heartbeat: the new expiry.
    Expiry(u64),
    /// A join: the next slot after it, and the new member.
    Join {
        /// The slot the next joiner gets.
        next: u16,
        /// The new member's slot.
        slot: u16,
        /// The digest of its leave token.
        digest: Digest,
    },
}

/// What an event in the change stream does to its match.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "short-lived, a batch at a time; boxing would allocate for every put"
)]
enum Event {
    /// The match's whole state after it (`None`: deleted, or unreadable).
    State(Option<StoredMatch>),
    /// A change to the state before it.
    Change(Change),
}

/// State shared by a store and its follower task.
#[derive(Debug)]
struct Shared {
    prefix: String,
    cache: RwLock<Cache>,
    scripts: Scripts,
    /// Full loads of the state: one at start, one more each time the node missed events.
    reloads: AtomicU64,
}

impl Shared {
    fn read(&self) -> RwLockReadGuard<'_, Cache> {
        // Every change to the cache is made in one call; a panic elsewhere leaves it usable.
        self.cache.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Cache> {
        self.cache.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The Redis store: matches in Redis (the authority), lists from a local cache that follows
/// Redis's change stream. See the [module docs](self) for the layout.
#[derive(Debug)]
pub struct RedisStore {
    shared: Arc<Shared>,
    conn: ConnectionManager,
    follower: tokio::task::JoinHandle<()>,
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn nonsense(what: &str) -> StoreError {
    StoreError::Backend(format!("Redis answered nonsense: {what}"))
}

impl RedisStore {
    /// Connects to the Redis at `url` (`redis://host:port/db`), loads every match into the
    /// local cache and starts following the change stream (on the current tokio runtime).
    pub async fn connect(url: &str, schema: Schema) -> Result<Self, StoreError> {
        Self::connect_prefixed(url, schema, DEFAULT_PREFIX).await
    }

    /// As [`connect`](Self::connect), with the keys under `prefix` (several services can share
    /// one Redis; nodes of one service must use the same prefix).
    pub async fn connect_prefixed(
        url: &str,
        schema: Schema,
        prefix: &str,
    ) -> Result<Self, StoreError> {
        let client = Client::open(url).map_err(backend)?;
        // One quick try first: a connection manager retries for seconds before it gives up.
        let probe_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(5)));
        let mut probe = client
            .get_multiplexed_async_connection_with_config(&probe_config)
            .await
            .map_err(backend)?;
        let _: String = redis::cmd("PING").query_async(&mut probe).await.map_err(backend)?;
        drop(probe);
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_connection_timeout(Some(Duration::from_secs(5)));
        let conn =
            client.get_connection_manager_with_config(config.clone()).await.map_err(backend)?;
        // The follower's blocking reads get their own connection.
        let follow_config = config
            .set_response_timeout(Some(Duration::from_millis(BLOCK_MS) + Duration::from_secs(5)));
        let follow_conn =
            client.get_connection_manager_with_config(follow_config).await.map_err(backend)?;
        let shared = Arc::new(Shared {
            prefix: prefix.to_owned(),
            cache: RwLock::new(Cache::new(schema.clone())),
            scripts: Scripts::new(),
            reloads: AtomicU64::new(0),
        });
        let mut follower = Follower {
            shared: Arc::clone(&shared),
            conn: follow_conn,
            schema,
            last_id: String::new(),
        };
        follower.reload().await?;
        let follower = tokio::spawn(follower.run());
        Ok(Self { shared, conn, follower })
    }

    /// How many times this node loaded the whole state from Redis: 1 (at start) while it
    /// follows the change stream without missing an event, more each time it missed some
    /// (it fell behind a trim, or Redis lost its data). For metrics.
    pub fn reloads(&self) -> u64 {
        self.shared.reloads.load(Ordering::Relaxed)
    }

    /// Runs a script with the prefix as its first argument and `args` after it.
    async fn run(&self, script: &Script, args: &[Vec<u8>]) -> Result<RValue, StoreError> {
        let mut inv = script.prepare_invoke();
        inv.arg(self.shared.prefix.as_str());
        for a in args {
            inv.arg(a.as_slice());
        }
        inv.invoke_async(&mut self.conn.clone()).await.map_err(backend)
    }

    /// Applies a write's answer (`[status, seq, …, fields]`) to the cache; the match after it.
    fn apply_put(
        &self,
        id: MatchId,
        seq: &RValue,
        fields: &RValue,
    ) -> Result<StoredMatch, StoreError> {
        let seq = int(seq).ok_or_else(|| nonsense("a write's seq"))?;
        let m = decode(id, &pairs(fields)?)?;
        self.shared.write().apply(seq, id, Some(m.clone()));
        Ok(m)
    }

    /// Runs a write answering `[status, seq, fields]`: the match after it when `status` is
    /// `ok`, `None` when it is `no`.
    async fn write_match(
        &self,
        script: &Script,
        id: MatchId,
        args: &[Vec<u8>],
    ) -> Result<Option<StoredMatch>, StoreError> {
        let reply = array(self.run(script, args).await?)?;
        match reply.first().and_then(text).as_deref() {
            Some("ok") if reply.len() == 3 => Ok(Some(self.apply_put(id, &reply[1], &reply[2])?)),
            Some("no") => Ok(None),
            Some("code_taken") => Err(StoreError::CodeTaken),
            _ => Err(nonsense("a write's status")),
        }
    }
}

fn arg(s: impl ToString) -> Vec<u8> {
    s.to_string().into_bytes()
}

fn id_arg(id: MatchId) -> Vec<u8> {
    arg(id)
}

fn hex(d: &Digest) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(64);
    for b in d {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn unhex(s: &[u8]) -> Option<Digest> {
    if s.len() != 64 {
        return None;
    }
    let mut d = [0u8; 32];
    for (i, pair) in s.chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        d[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(d)
}

/// An attribute as its hash field holds it: `s` then a string, or `n` then the number
/// (Rust's shortest form that reads back to the same bits).
fn encode_value(v: &Value) -> String {
    match v {
        Value::Str(s) => format!("s{s}"),
        Value::Num(n) => format!("n{n:?}"),
    }
}

fn decode_value(s: &str) -> Option<Value> {
    if let Some(s) = s.strip_prefix('s') {
        Some(Value::Str(s.to_owned()))
    } else {
        s.strip_prefix('n').and_then(|n| n.parse().ok()).map(Value::Num)
    }
}

/// A match as its hash's fields.
fn encode(m: &StoredMatch) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    let mut doc = m.clone();
    doc.members.clear();
    doc.info.attributes.clear();
    let mut fields = vec![
        ("doc".to_owned(), serde_json::to_vec(&doc).map_err(backend)?),
        ("exp".to_owned(), arg(m.info.expires_unix)),
        ("size".to_owned(), arg(m.info.size)),
        ("pw".to_owned(), arg(m.password.as_ref().map(hex).unwrap_or_default())),
        ("next".to_owned(), arg(m.next_slot)),
        ("n".to_owned(), arg(m.members.len())),
        ("listed".to_owned(), arg(u8::from(m.info.listed))),
        ("code".to_owned(), arg(m.code.bits())),
        ("ht".to_owned(), arg(hex(&m.host_token))),
    ];
    for (slot, digest) in &m.members {
        fields.push((format!("s:{slot}"), arg(hex(digest))));
    }
    for (name, value) in &m.info.attributes {
        fields.push((format!("a:{name}"), arg(encode_value(value))));
    }
    Ok(fields)
}

/// A match from its hash's fields.
fn decode(id: MatchId, fields: &[Field]) -> Result<StoredMatch, StoreError> {
    let bad = |what: &str| nonsense(&format!("match {id}'s {what}"));
    let mut doc: Option<StoredMatch> = None;
    let mut exp = None;
    let mut listed = None;
    let mut next = None;
    let mut code = None;
    let mut members = BTreeMap::new();
    let mut attributes = BTreeMap::new();
    for (k, v) in fields {
        let text = || std::str::from_utf8(v).map_err(|_| bad("field"));
        match k.as_slice() {
            b"doc" => doc = Some(serde_json::from_slice(v).map_err(|_| bad("doc"))?),
            b"exp" => exp = Some(text()?.parse::<u64>().map_err(|_| bad("exp"))?),
            b"listed" => listed = Some(v.as_slice() == b"1"),
            b"next" => next = Some(text()?.parse::<u16>().map_err(|_| bad("next"))?),
            b"code" => code = Some(text()?.parse::<u64>().map_err(|_| bad("code"))?),
            _ => {
                if let Some(slot) = k.strip_prefix(b"s:") {
                    let slot = std::str::from_utf8(slot)
                        .ok()
                        .and_then(|s| s.parse::<u16>().ok())
                        .ok_or_else(|| bad("slot"))?;
                    members.insert(slot, unhex(v).ok_or_else(|| bad("member"))?);
                } else if let Some(name) = k.strip_prefix(b"a:") {
                    let name = String::from_utf8(name.to_vec()).map_err(|_| bad("attribute"))?;
                    attributes.insert(name, decode_value(text()?).ok_or_else(|| bad("attribute"))?);
                }
            }
        }
    }
    let (Some(mut m), Some(exp), Some(listed), Some(next), Some(code)) =
        (doc, exp, listed, next, code)
    else {
        return Err(bad("fields"));
    };
    if m.info.id != id {
        return Err(bad("id"));
    }
    m.info.expires_unix = exp;
    m.info.listed = listed;
    m.info.attributes = attributes;
    m.info.players = u16::try_from(members.len()).unwrap_or(u16::MAX);
    m.next_slot = next;
    m.code = JoinCode::from_bits(code);
    m.members = members;
    Ok(m)
}

fn array(v: RValue) -> Result<Vec<RValue>, StoreError> {
    match v {
        RValue::Array(items) => Ok(items),
        _ => Err(nonsense("not an array")),
    }
}

fn bytes(v: &RValue) -> Option<&[u8]> {
    match v {
        RValue::BulkString(b) => Some(b),
        RValue::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn text(v: &RValue) -> Option<String> {
    match v {
        RValue::Int(i) => Some(i.to_string()),
        other => bytes(other).and_then(|b| String::from_utf8(b.to_vec()).ok()),
    }
}

fn int(v: &RValue) -> Option<u64> {
    match v {
        RValue::Int(i) => u64::try_from(*i).ok(),
        other => text(other)?.parse().ok(),
    }
}

/// A flat `[k1, v1, k2, v2, …]` array as pairs.
fn pairs(v: &RValue) -> Result<Fields, StoreError> {
    let RValue::Array(items) = v else { return Err(nonsense("fields")) };
    items
        .chunks_exact(2)
        .map(|kv| {
            let k = bytes(&kv[0]).ok_or_else(|| nonsense("a field name"))?;
            let v = match &kv[1] {
                RValue::Int(i) => i.to_string().into_bytes(),
                other => bytes(other).ok_or_else(|| nonsense("a field value"))?.to_vec(),
            };
            Ok((k.to_vec(), v))
        })
        .collect()
}

fn parse_id(v: &RValue) -> Option<MatchId> {
    text(v)?.parse().ok()
}

/// The background task that keeps a node's cache up to date with the change stream.
struct Follower {
    shared: Arc<Shared>,
    conn: ConnectionManager,
    schema: Schema,
    /// The stream id of the last event read.
    last_id: String,
}

impl Follower {
    async fn run(mut self) {
        loop {
            match self.step().await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!("the Redis change stream skipped events: reloading every match");
                    if let Err(e) = self.reload().await {
                        tracing::warn!(error = %e, "reloading from Redis failed");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "following the Redis change stream failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// Reads and applies one batch of events; false if the stream skipped some (a reload is
    /// due).
    async fn step(&mut self) -> Result<bool, StoreError> {
        let stream = format!("{}:changes", self.shared.prefix);
        let reply: RValue = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(1000)
            .arg("BLOCK")
            .arg(BLOCK_MS)
            .arg("STREAMS")
            .arg(&stream)
            .arg(&self.last_id)
            .query_async(&mut self.conn)
            .await
            .map_err(backend)?;
        let entries = match reply {
            RValue::Nil => return Ok(true),
            RValue::Array(streams) => match streams.into_iter().next() {
                Some(RValue::Array(mut s)) if s.len() == 2 => array(s.remove(1))?,
                _ => return Err(nonsense("XREAD")),
            },
            RValue::Map(streams) => match streams.into_iter().next() {
                Some((_, entries)) => array(entries)?,
                None => return Ok(true),
            },
            _ => return Err(nonsense("XREAD")),
        };
        let mut events = Vec::with_capacity(entries.len());
        for entry in entries {
            let mut entry = array(entry)?;
            if entry.len() != 2 {
                return Err(nonsense("a stream entry"));
            }
            let fields = pairs(&entry[1])?;
            let stream_id = text(&entry.remove(0)).ok_or_else(|| nonsense("a stream id"))?;
            match self.event(&fields) {
                Ok(event) => events.push((stream_id, event)),
                Err(e) => {
                    // Not written by a store: reading it again would fail forever. A reload
                    // starts after it.
                    tracing::warn!(error = %e, "an unreadable event in the Redis change stream");
                    return Ok(false);
                }
            }
        }
        let mut cache = self.shared.write();
        for (stream_id, (seq, id, event)) in events {
            if seq != cache.applied + 1 {
                return Ok(false);
            }
            match event {
                Event::State(state) => cache.apply(seq, id, state),
                Event::Change(change) => cache.apply_change(seq, id, change),
            }
            cache.advance(seq);
            self.last_id = stream_id;
        }
        Ok(true)
    }

    /// An event's `seq`, match id and what it does.
    fn event(&self, fields: &[Field]) -> Result<(u64, MatchId, Event), StoreError> {
        let get = |name: &[u8]| {
            fields.iter().find(|(k, _)| k.as_slice() == name).map(|(_, v)| v.as_slice())
        };
        let seq = get(b"seq")
            .and_then(|s| std::str::from_utf8(s).ok()?.parse::<u64>().ok())
            .ok_or_else(|| nonsense("an event's seq"))?;
        let id: MatchId = get(b"id")
            .and_then(|s| std::str::from_utf8(s).ok()?.parse().ok())
            .ok_or_else(|| nonsense("an event's id"))?;
        let number =
            |name: &[u8]| get(name).and_then(|s| std::str::from_utf8(s).ok()?.parse().ok());
        let event = match get(b"op") {
            Some(b"del") => Event::State(None),
            Some(b"put") => Event::State(match decode(id, fields) {
                Ok(m) => Some(m),
                Err(e) => {
                    // A match this node cannot read is left out of its lists, not fatal.
                    tracing::warn!(error = %e, "skipping an unreadable match in the change stream");
                    None
                }
            }),
            Some(b"exp") => Event::Change(Change::Expiry(
                number(b"exp").ok_or_else(|| nonsense("an exp event's expiry"))?,
            )),
            Some(b"join") => {
                let next = number(b"next")
                    .and_then(|n: u64| u16::try_from(n).ok())
                    .ok_or_else(|| nonsense("a join event's next slot"))?;
                let (slot, digest) = fields
                    .iter()
                    .find_map(|(k, v)| {
                        let slot =
                            std::str::from_utf8(k.strip_prefix(b"s:")?).ok()?.parse().ok()?;
                        Some((slot, unhex(v)?))
                    })
                    .ok_or_else(|| nonsense("a join event's member"))?;
                Event::Change(Change::Join { next, slot, digest })
            }
            _ => return Err(nonsense("an event's op")),
        };
        Ok((seq, id, event))
    }

    /// Loads every match into a fresh cache, then follows the stream from the position
    /// captured before loading (events after it are applied again: they are at least as new).
    async fn reload(&mut self) -> Result<(), StoreError> {
        let mut inv = self.shared.scripts.position.prepare_invoke();
        inv.arg(self.shared.prefix.as_str());
        let position = array(inv.invoke_async(&mut self.conn).await.map_err(backend)?)?;
        let (Some(seq), Some(last_id)) =
            (position.first().and_then(int), position.get(1).and_then(text))
        else {
            return Err(nonsense("the stream position"));
        };
        let mut cache = Cache::new(self.schema.clone());
        let pattern = format!("{}:m:*", self.shared.prefix);
        let key_prefix = format!("{}:m:", self.shared.prefix);
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut self.conn)
                .await
                .map_err(backend)?;
            let mut pipe = redis::pipe();
            for key in &keys {
                pipe.cmd("HGETALL").arg(key);
            }
            let hashes: Vec<RValue> = if keys.is_empty() {
                Vec::new()
            } else {
                pipe.query_async(&mut self.conn).await.map_err(backend)?
            };
            for (key, hash) in keys.iter().zip(hashes) {
                let Some(id) =
                    key.strip_prefix(&key_prefix).and_then(|s| s.parse::<MatchId>().ok())
                else {
                    continue;
                };
                let fields = match hash {
                    RValue::Map(kv) => kv
                        .iter()
                        .filter_map(|(k, v)| Some((bytes(k)?.to_vec(), bytes(v)?.to_vec())))
                        .collect(),
                    other => pairs(&other)?,
                };
                if fields.is_empty() {
                    continue; // Deleted between the scan and the read.
                }
                match decode(id, &fields) {
                    Ok(m) => cache.apply(seq.max(1), id, Some(m)),
                    Err(e) => tracing::warn!(error = %e, "skipping an unreadable match"),
                }
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        cache.applied = seq;
        // Versions at `seq` let every later event apply (a loaded state may be newer than
        // some of them; the stream brings it back up to date).
        for v in cache.versions.values_mut() {
            *v = seq;
        }
        *self.shared.write() = cache;
        self.last_id = last_id;
        self.shared.reloads.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl Store for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn create(&self, m: StoredMatch) -> Result<(), StoreError> {
        let id = m.info.id;
        let mut args =
            vec![id_arg(id), arg(m.code.bits()), arg(m.info.expires_unix), arg(m.members.len())];
        for (k, v) in encode(&m)? {
            args.push(k.into_bytes());
            args.push(v);
        }
        let reply = array(self.run(&self.shared.scripts.create, &args).await?)?;
        match reply.first().and_then(text).as_deref() {
            Some("ok") => {
                let seq = reply.get(1).and_then(int).ok_or_else(|| nonsense("create's seq"))?;
                self.shared.write().apply(seq, id, Some(m));
                Ok(())
            }
            Some("id_taken") => Err(StoreError::IdTaken),
            Some("code_taken") => Err(StoreError::CodeTaken),
            _ => Err(nonsense("create's status")),
        }
    }

    async fn get(&self, id: MatchId, now_unix: u64) -> Result<Option<StoredMatch>, StoreError> {
        let reply: RValue = redis::cmd("HGETALL")
            .arg(format!("{}:m:{id}", self.shared.prefix))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        let fields = match reply {
            RValue::Map(kv) => kv
                .iter()
                .filter_map(|(k, v)| Some((bytes(k)?.to_vec(), bytes(v)?.to_vec())))
                .collect(),
            other => pairs(&other)?,
        };
        if fields.is_empty() {
            return Ok(None);
        }
        let m = decode(id, &fields)?;
        Ok(is_live(&m.info, now_unix).then_some(m))
    }

    async fn find_code(
        &self,
        code: JoinCode,
        now_unix: u64,
    ) -> Result<Option<MatchId>, StoreError> {
        let reply =
            self.run(&self.shared.scripts.find_code, &[arg(code.bits()), arg(now_unix)]).await?;
        match reply {
            RValue::Nil => Ok(None),
            other => parse_id(&other).map(Some).ok_or_else(|| nonsense("find_code")),
        }
    }

    async fn list(&self, query: &ListQuery, now_unix: u64) -> Result<MatchPage, StoreError> {
        Ok(self.shared.read().index.list(query, now_unix))
    }

    async fn join(&self, id: MatchId, ticket: &JoinTicket) -> Result<JoinOutcome, StoreError> {
        let args = [
            id_arg(id),
            arg(ticket.now_unix),
            arg(ticket.password.as_ref().map(hex).unwrap_or_default()),
            arg(hex(&ticket.leave_token)),
        ];
        let reply = array(self.run(&self.shared.scripts.join, &args).await?)?;
        match reply.first().and_then(text).as_deref() {
            Some("joined") if reply.len() == 4 => {
                let slot = reply[2].clone();
                let slot = int(&slot)
                    .and_then(|s| u16::try_from(s).ok())
                    .ok_or_else(|| nonsense("join's slot"))?;
                let joined = self.apply_put(id, &reply[1], &reply[3])?;
                Ok(JoinOutcome::Joined { slot, joined: Box::new(joined) })
            }
            Some("full") => Ok(JoinOutcome::Full),
            Some("wrong_password") => Ok(JoinOutcome::WrongPassword),
            Some("not_found") => Ok(JoinOutcome::NotFound),
            _ => Err(nonsense("join's status")),
        }
    }

    async fn leave(
        &self,
        id: MatchId,
        slot: u16,
        leave_token: Option<Digest>,
        now_unix: u64,
    ) -> Result<bool, StoreError> {
        let args = [
            id_arg(id),
            arg(now_unix),
            arg(slot),
            arg(leave_token.as_ref().map(hex).unwrap_or_default()),
        ];
        Ok(self.write_match(&self.shared.scripts.leave, id, &args).await?.is_some())
    }

    async fn heartbeat(
        &self,
        id: MatchId,
        expires_unix: u64,
        now_unix: u64,
    ) -> Result<Option<MatchInfo>, StoreError> {
        let args = [id_arg(id), arg(now_unix), arg(expires_unix)];
        Ok(self.write_match(&self.shared.scripts.heartbeat, id, &args).await?.map(|m| m.info))
    }

    async fn host_heartbeat(
        &self,
        id: MatchId,
        host_token: Digest,
        expires_unix: u64,
        now_unix: u64,
    ) -> Result<HostHeartbeat, StoreError> {
        let args = [id_arg(id), arg(now_unix), arg(expires_unix), arg(hex(&host_token))];
        let reply = array(self.run(&self.shared.scripts.host_heartbeat, &args).await?)?;
        match reply.first().and_then(text).as_deref() {
            Some("ok") if reply.len() == 3 => {
                Ok(HostHeartbeat::Moved(self.apply_put(id, &reply[1], &reply[2])?.info))
            }
            Some("not_found") => Ok(HostHeartbeat::NotFound),
            Some("not_host") => Ok(HostHeartbeat::NotHost),
            Some("unknown") => {
                super::host_heartbeat_by_get(self, id, host_token, expires_unix, now_unix).await
            }
            _ => Err(nonsense("host_heartbeat's status")),
        }
    }

    async fn update(
        &self,
        id: MatchId,
        listed: Option<bool>,
        attributes: &BTreeMap<String, Value>,
        now_unix: u64,
    ) -> Result<Option<MatchInfo>, StoreError> {
        let mut args = vec![
            id_arg(id),
            arg(now_unix),
            arg(listed.map(|l| u8::from(l).to_string()).unwrap_or_default()),
        ];
        for (name, value) in attributes {
            args.push(arg(format!("a:{name}")));
            args.push(arg(encode_value(value)));
        }
        Ok(self.write_match(&self.shared.scripts.update, id, &args).await?.map(|m| m.info))
    }

    async fn replace_code(
        &self,
        id: MatchId,
        code: JoinCode,
        now_unix: u64,
    ) -> Result<bool, StoreError> {
        let args = [id_arg(id), arg(now_unix), arg(code.bits())];
        Ok(self.write_match(&self.shared.scripts.replace_code, id, &args).await?.is_some())
    }

    async fn destroy(&self, id: MatchId) -> Result<bool, StoreError> {
        let reply = array(self.run(&self.shared.scripts.destroy, &[id_arg(id)]).await?)?;
        match reply.first().and_then(text).as_deref() {
            Some("ok") => {
                let seq = reply.get(1).and_then(int).ok_or_else(|| nonsense("destroy's seq"))?;
                self.shared.write().apply(seq, id, None);
                Ok(true)
            }
            Some("no") => Ok(false),
            _ => Err(nonsense("destroy's status")),
        }
    }

    async fn reap(&self, now_unix: u64) -> Result<usize, StoreError> {
        let mut removed = 0;
        loop {
            let reply = array(
                self.run(&self.shared.scripts.reap, &[arg(now_unix), arg(REAP_BATCH)]).await?,
            )?;
            let looked = reply.first().and_then(int).ok_or_else(|| nonsense("reap"))?;
            let mut cache = self.shared.write();
            for pair in reply[1..].chunks_exact(2) {
                let (Some(id), Some(seq)) = (parse_id(&pair[0]), int(&pair[1])) else {
                    return Err(nonsense("reap's ids"));
                };
                cache.apply(seq, id, None);
                removed += 1;
            }
            drop(cache);
            if looked < REAP_BATCH as u64 {
                return Ok(removed);
            }
        }
    }

    async fn counts(&self, now_unix: u64) -> Result<StoreCounts, StoreError> {
        let reply = array(self.run(&self.shared.scripts.counts, &[arg(now_unix)]).await?)?;
        match (reply.first().and_then(int), reply.get(1).and_then(int)) {
            (Some(matches), Some(players)) => Ok(StoreCounts { matches, players }),
            _ => Err(nonsense("counts")),
        }
    }
}

#[cfg(test)]
mod tests {
    use sturnus_lobby::api::HostMode;

    use super::*;

    fn stored(id: u64, name: &str) -> StoredMatch {
        StoredMatch {
            info: MatchInfo {
                id: MatchId(id),
                name: name.to_owned(),
                size: 4,
                players: 0,
                listed: true,
                has_password: false,
                attributes: BTreeMap::new(),
                region: None,
                relayed: true,
                created_unix: 0,
                expires_unix: 100,
            },
            code: JoinCode::from_bits(id),
            host_token: [1; 32],
            password: Some([2; 32]),
            private_key: [3; 32],
            protocol_id: u64::MAX,
            host: HostMode::Relay,
            server_address: std::net::SocketAddr::from(([192, 0, 2, 1], 7777)),
            relay_session: Some(9),
            next_slot: 3,
            members: [(2, [4; 32])].into(),
        }
    }

    #[test]
    fn the_cache_never_goes_back_to_an_older_state() {
        let mut cache = Cache::new(Schema::default());
        let id = MatchId(1);
        let name = |c: &Cache| c.index.get(id).map(|m| m.info.name.clone());
        // This node's own write (seq 5) lands before the follower reads seq 3 and 4.
        cache.apply(5, id, Some(stored(1, "five")));
        cache.apply(3, id, Some(stored(1, "three")));
        cache.advance(3);
        assert_eq!(name(&cache).as_deref(), Some("five"));
        cache.apply(6, id, Some(stored(1, "six")));
        assert_eq!(name(&cache).as_deref(), Some("six"));
        // A delete (seq 8) is not undone by an older put (seq 7) read after it…
        cache.apply(8, id, None);
        cache.apply(7, id, Some(stored(1, "seven")));
        assert_eq!(name(&cache), None);
        assert_eq!(cache.tombstones.get(&id), Some(&8));
        // … and is forgotten once the follower has passed it.
        cache.advance(8);
        assert!(cache.tombstones.is_empty());
        cache.apply(9, id, Some(stored(1, "nine")));
        assert_eq!(name(&cache).as_deref(), Some("nine"));
    }

    #[test]
    fn a_change_event_changes_the_state_before_it_only() {
        let mut cache = Cache::new(Schema::default());
        let id = MatchId(1);
        let join = |slot: u16| Change::Join {
            next: slot + 1,
            slot,
            digest: [u8::try_from(slot).unwrap(); 32],
        };
        // A change to a match the cache does not hold leaves it absent.
        cache.apply_change(1, id, Change::Expiry(500));
        assert!(cache.index.get(id).is_none());
        cache.apply(2, id, Some(stored(1, "two")));
        cache.apply_change(3, id, join(3));
        cache.apply_change(4, id, Change::Expiry(500));
        let m = cache.index.get(id).unwrap();
        assert_eq!((m.next_slot, m.info.players, m.info.expires_unix), (4, 2, 500));
        assert_eq!(m.members.get(&3), Some(&[3; 32]));
        // An older change (this node's own write moved the state ahead) is ignored.
        let mut newer = cache.index.get(id).unwrap().clone();
        newer.info.expires_unix = 900;
        cache.apply(6, id, Some(newer));
        cache.apply_change(5, id, Change::Expiry(700));
        cache.apply_change(5, id, join(4));
        let m = cache.index.get(id).unwrap();
        assert_eq!((m.info.expires_unix, m.info.players), (900, 2));
        // … and so is one after a delete.
        cache.apply(7, id, None);
        cache.apply_change(8, id, join(5));
        assert!(cache.index.get(id).is_none());
    }

    #[test]
    fn a_match_reads_back_from_its_fields() {
        let mut m = stored(0xFFFF_FFFF_FFFF_FFFE, "naïve");
        m.info.attributes =
            [("s1".to_owned(), Value::from("a b")), ("n1".to_owned(), Value::Num(0.1 + 0.2))]
                .into();
        m.info.players = 1;
        let fields: Fields =
            encode(&m).unwrap().into_iter().map(|(k, v)| (k.into_bytes(), v)).collect();
        assert_eq!(decode(m.info.id, &fields).unwrap(), m);
        assert!(decode(MatchId(1), &fields).is_err(), "the id must be the key's");
        assert!(decode(m.info.id, &fields[1..]).is_err(), "no doc");
    }

    #[test]
    fn values_and_digests_keep_every_bit() {
        for n in [0.1 + 0.2, -0.0, 1e300, f64::MIN_POSITIVE, 123_456_789.123_456_78, f64::INFINITY]
        {
            let Some(Value::Num(back)) = decode_value(&encode_value(&Value::Num(n))) else {
                panic!("{n} did not read back");
            };
            assert_eq!(back.to_bits(), n.to_bits());
        }
        assert_eq!(
            decode_value(&encode_value(&Value::from("naïve s"))),
            Some(Value::from("naïve s"))
        );
        let d: Digest = std::array::from_fn(|i| u8::try_from(i * 7 % 256).unwrap());
        assert_eq!(unhex(hex(&d).as_bytes()), Some(d));
        assert_eq!(unhex(b"zz"), None);
    }
}
