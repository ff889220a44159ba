//! Where matches live: the [`Store`] trait, an in-memory store (the default: one machine, no
//! configuration) and a Redis store (`--store redis://…`: several `sturnusd` nodes share it).
//!
//! Both pass one conformance suite (`tests/store_conformance.rs`). The matchmaker (the HTTP
//! layer) checks tokens, attribute types and limits before it calls a store, so a store trusts
//! its input; what a store guarantees is atomicity: a [`join`](Store::join) checks the
//! password, the free slots and adds the member in one step, so racing joiners never over-fill
//! a match, on one node or many.
//!
//! Time is an input (`now_unix`): a match whose `expires_unix` has passed is gone for every
//! call, reaped or not ([`is_live`]: a match is live while `now_unix < expires_unix`).
//! Reaping only frees its memory, its id and its code: until then [`Store::create`] and
//! [`Store::replace_code`] still count its id and code as taken, and [`Store::destroy`]
//! still removes it.
//!
//! [`open`] makes the store `--store` names ([`AnyStore`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;

pub mod index;
pub mod memory;
pub mod redis;
mod sorted;

pub use index::Index;
pub use memory::MemoryStore;
pub use redis::RedisStore;

use serde::{Deserialize, Serialize};
use sturnus_lobby::JoinCode;
use sturnus_lobby::api::{HostMode, ListQuery, MatchId, MatchInfo, MatchPage, Value};

/// The attributes a service declares, by type: those can be filtered on, and stores index them
/// (Unity Lobby's S1–S5 and N1–N5, named).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    /// String attributes.
    pub strings: Vec<String>,
    /// Numeric attributes.
    pub numbers: Vec<String>,
}

impl Default for Schema {
    /// `s1`…`s5` and `n1`…`n5`, as Unity Lobby.
    fn default() -> Self {
        Self {
            strings: (1..=5).map(|i| format!("s{i}")).collect(),
            numbers: (1..=5).map(|i| format!("n{i}")).collect(),
        }
    }
}

/// Whether a match is live at `now_unix` (not yet expired): `now_unix < expires_unix`.
pub fn is_live(info: &MatchInfo, now_unix: u64) -> bool {
    now_unix < info.expires_unix
}

/// A SHA-256 digest (of a password, a host or leave token): stores keep digests, not secrets.
pub type Digest = [u8; 32];

/// A match as a store keeps it.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredMatch {
    /// What lists show. `info.players` is the number of `members`.
    pub info: MatchInfo,
    /// The join code that finds it now.
    pub code: JoinCode,
    /// The digest of the host's token.
    pub host_token: Digest,
    /// The digest of the password (salted with the match id), if it has one.
    pub password: Option<Digest>,
    /// The key connect tokens are minted under (secret: the store is trusted).
    pub private_key: [u8; 32],
    /// The game's netcode protocol id.
    pub protocol_id: u64,
    /// How players reach the host.
    pub host: HostMode,
    /// The address connect tokens list: the host's (direct) or its relay's (relayed).
    pub server_address: SocketAddr,
    /// The relay session, for a relayed match.
    pub relay_session: Option<u32>,
    /// The slot the next joiner gets (slots are never reused within a match: 1, 2, …).
    pub next_slot: u16,
    /// The players in it: slot → digest of its leave token.
    pub members: BTreeMap<u16, Digest>,
}

impl std::fmt::Debug for StoredMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredMatch")
            .field("info", &self.info)
            .field("code", &self.code)
            .field("host", &self.host)
            .field("relay_session", &self.relay_session)
            .field("next_slot", &self.next_slot)
            .field("members", &self.members.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A joiner's side of [`Store::join`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinTicket {
    /// The digest of the password it gave (salted with the match id), if any.
    pub password: Option<Digest>,
    /// The digest of the leave token the joiner will get.
    pub leave_token: Digest,
    /// The time of the join.
    pub now_unix: u64,
}

/// What a [`Store::join`] did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum JoinOutcome {
    /// Joined: the slot the joiner got and the match after the join.
    Joined {
        /// The joiner's slot.
        slot: u16,
        /// The match, with the joiner in it.
        joined: Box<StoredMatch>,
    },
    /// No free slot (nothing changed).
    Full,
    /// The match has a password and the ticket's differs (nothing changed).
    WrongPassword,
    /// No such match, or it expired.
    NotFound,
}

/// What a [`Store::host_heartbeat`] did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum HostHeartbeat {
    /// The expiry moved: the match after it.
    Moved(MatchInfo),
    /// The match has another host token (nothing changed).
    NotHost,
    /// No such match, or it expired.
    NotFound,
}

/// [`Store::host_heartbeat`] in three steps: [`Store::get`], the digests compared (in constant
/// time), [`Store::heartbeat`]. Its default, and a store's fallback.
pub async fn host_heartbeat_by_get<S: Store + ?Sized>(
    store: &S,
    id: MatchId,
    host_token: Digest,
    expires_unix: u64,
    now_unix: u64,
) -> Result<HostHeartbeat, StoreError> {
    let Some(m) = store.get(id, now_unix).await? else { return Ok(HostHeartbeat::NotFound) };
    if !crate::matchmaker::same(&m.host_token, &host_token) {
        return Ok(HostHeartbeat::NotHost);
    }
    Ok(match store.heartbeat(id, expires_unix, now_unix).await? {
        Some(info) => HostHeartbeat::Moved(info),
        None => HostHeartbeat::NotFound,
    })
}

/// What a store can fail with (its backend, not the caller's request).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another match has this join code (the caller draws another).
    #[error("the join code is taken")]
    CodeTaken,
    /// Another match has this id (the caller draws another).
    #[error("the match id is taken")]
    IdTaken,
    /// The backend failed or answered nonsense.
    #[error("the store failed: {0}")]
    Backend(String),
}

/// Counts for the status page and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreCounts {
    /// Unexpired matches.
    pub matches: u64,
    /// Players in them.
    pub players: u64,
}

/// Where matches live. Every method is atomic with respect to the others, across every node
/// sharing the store.
pub trait Store: Send + Sync + 'static {
    /// `memory` or `redis`.
    fn kind(&self) -> &'static str;

    /// Adds a new match (its `members` empty, `next_slot` 1).
    fn create(&self, m: StoredMatch) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// A match, unless it is gone or expired at `now_unix`.
    fn get(
        &self,
        id: MatchId,
        now_unix: u64,
    ) -> impl Future<Output = Result<Option<StoredMatch>, StoreError>> + Send;

    /// The match a join code finds now.
    fn find_code(
        &self,
        code: JoinCode,
        now_unix: u64,
    ) -> impl Future<Output = Result<Option<MatchId>, StoreError>> + Send;

    /// A page of the listed, unexpired matches that `query` accepts
    /// ([`ListQuery::accepts`]), in an order that is stable while the matches do not change.
    /// Across nodes a list may lag a write by the store's replication delay (milliseconds);
    /// every other call is exact.
    fn list(
        &self,
        query: &ListQuery,
        now_unix: u64,
    ) -> impl Future<Output = Result<MatchPage, StoreError>> + Send;

    /// Joins atomically: checks the password, takes a free slot, adds the member.
    fn join(
        &self,
        id: MatchId,
        ticket: &JoinTicket,
    ) -> impl Future<Output = Result<JoinOutcome, StoreError>> + Send;

    /// Removes a member; with `leave_token`, only if the digest matches (a player leaving),
    /// without (the host dropping it). Whether a member was removed.
    fn leave(
        &self,
        id: MatchId,
        slot: u16,
        leave_token: Option<Digest>,
        now_unix: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Moves a match's expiry (a heartbeat); the match after it, unless it is gone.
    fn heartbeat(
        &self,
        id: MatchId,
        expires_unix: u64,
        now_unix: u64,
    ) -> impl Future<Output = Result<Option<MatchInfo>, StoreError>> + Send;

    /// A host's heartbeat: moves the expiry as [`heartbeat`](Store::heartbeat) does, if
    /// `host_token` is the digest of the match's host token. The default is
    /// [`host_heartbeat_by_get`] (`get`, compare, `heartbeat`); a store may check and move in
    /// one step, as long as it answers the same.
    fn host_heartbeat(
        &self,
        id: MatchId,
        host_token: Digest,
        expires_unix: u64,
        now_unix: u64,
    ) -> impl Future<Output = Result<HostHeartbeat, StoreError>> + Send {
        host_heartbeat_by_get(self, id, host_token, expires_unix, now_unix)
    }

    /// Sets the listing and some attributes (the others are kept); the match after it.
    fn update(
        &self,
        id: MatchId,
        listed: Option<bool>,
        attributes: &BTreeMap<String, Value>,
        now_unix: u64,
    ) -> impl Future<Output = Result<Option<MatchInfo>, StoreError>> + Send;

    /// Gives a match a new join code; the old one finds nothing from then on. Whether the
    /// match exists. [`StoreError::CodeTaken`] if another match has `code`.
    fn replace_code(
        &self,
        id: MatchId,
        code: JoinCode,
        now_unix: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Removes a match and its code. Whether it existed.
    fn destroy(&self, id: MatchId) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Removes every match expired at `now_unix` (any node may call it; it is idempotent).
    /// How many it removed.
    fn reap(&self, now_unix: u64) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// How many matches and players there are.
    fn counts(&self, now_unix: u64)
    -> impl Future<Output = Result<StoreCounts, StoreError>> + Send;
}

/// The store `--store` names: [`open`] makes it. It dispatches every call to the store inside.
#[derive(Debug)]
#[non_exhaustive]
pub enum AnyStore {
    /// `memory`: [`MemoryStore`] (boxed: it holds its index inline).
    Memory(Box<MemoryStore>),
    /// `redis://…`: [`RedisStore`].
    Redis(RedisStore),
}

/// Opens the store a `--store` argument names: `memory`, or a Redis URL (`redis://host:port`,
/// `redis://host:port/db`, `redis+unix:///path`; `rediss://` is read but refused, as this build
/// has no TLS for Redis), which it connects to, loading
/// every match into the node's list cache. A Redis store needs a tokio runtime.
pub async fn open(spec: &str, schema: Schema) -> Result<AnyStore, StoreError> {
    let spec = spec.trim();
    if spec.eq_ignore_ascii_case("memory") {
        Ok(AnyStore::Memory(Box::new(MemoryStore::new(schema))))
    } else if is_redis_url(spec) {
        Ok(AnyStore::Redis(RedisStore::connect(spec, schema).await?))
    } else {
        Err(StoreError::Backend(format!(
            "unknown store {spec:?}: expected `memory` or a Redis URL (`redis://host:port`)"
        )))
    }
}

const REDIS_SCHEMES: [&str; 4] = ["redis://", "rediss://", "redis+unix://", "unix://"];

fn is_redis_url(spec: &str) -> bool {
    REDIS_SCHEMES
        .iter()
        .any(|scheme| spec.get(..scheme.len()).is_some_and(|s| s.eq_ignore_ascii_case(scheme)))
}

/// Whether [`open`] knows the store `spec` names (`memory` or a Redis URL), without opening it.
pub fn is_store_spec(spec: &str) -> bool {
    let spec = spec.trim();
    spec.eq_ignore_ascii_case("memory") || is_redis_url(spec)
}

/// `spec` as logs may show it: a URL's password (`redis://user:secret@host`) is replaced by
/// `***`.
pub fn redacted(spec: &str) -> String {
    let Some(scheme_end) = spec.find("://").map(|i| i + 3) else { return spec.to_owned() };
    let rest = &spec[scheme_end..];
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let Some(at) = authority.rfind('@') else { return spec.to_owned() };
    let Some(colon) = authority[..at].find(':') else { return spec.to_owned() };
    format!("{}:***{}", &spec[..scheme_end + colon], &rest[at..])
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            AnyStore::Memory($s) => $call,
            AnyStore::Redis($s) => $call,
        }
    };
}

impl Store for AnyStore {
    fn kind(&self) -> &'static str {
        dispatch!(self, s => s.kind())
    }

    async fn create(&self, m: StoredMatch) -> Result<(), StoreError> {
        dispatch!(self, s => s.create(m).await)
    }

    async fn get(&self, id: MatchId, now_unix: u64) -> Result<Option<StoredMatch>, StoreError> {
        dispatch!(self, s => s.get(id, now_unix).await)
    }

    async fn find_code(
        &self,
        code: JoinCode,
        now_unix: u64,
    ) -> Result<Option<MatchId>, StoreError> {
        dispatch!(self, s => s.find_code(code, now_unix).await)
    }

    async fn list(&self, query: &ListQuery, now_unix: u64) -> Result<MatchPage, StoreError> {
        dispatch!(self, s => s.list(query, now_unix).await)
    }

    async fn join(&self, id: MatchId, ticket: &JoinTicket) -> Result<JoinOutcome, StoreError> {
        dispatch!(self, s => s.join(id, ticket).await)
    }

    async fn leave(
        &self,
        id: MatchId,
        slot: u16,
        leave_token: Option<Digest>,
        now_unix: u64,
    ) -> Result<bool, StoreError> {
        dispatch!(self, s => s.leave(id, slot, leave_token, now_unix).await)
    }

    async fn heartbeat(
        &self,
        id: MatchId,
        expires_unix: u64,
        now_unix: u64,
    ) -> Result<Option<MatchInfo>, StoreError> {
        dispatch!(self, s => s.heartbeat(id, expires_unix, now_unix).await)
    }

    async fn host_heartbeat(
        &self,
        id: MatchId,
        host_token: Digest,
        expires_unix: u64,
        now_unix: u64,
    ) -> Result<HostHeartbeat, StoreError> {
        dispatch!(self, s => s.host_heartbeat(id, host_token, expires_unix, now_unix).await)
    }

    async fn update(
        &self,
        id: MatchId,
        listed: Option<bool>,
        attributes: &BTreeMap<String, Value>,
        now_unix: u64,
    ) -> Result<Option<MatchInfo>, StoreError> {
        dispatch!(self, s => s.update(id, listed, attributes, now_unix).await)
    }

    async fn replace_code(
        &self,
        id: MatchId,
        code: JoinCode,
        now_unix: u64,
    ) -> Result<bool, StoreError> {
        dispatch!(self, s => s.replace_code(id, code, now_unix).await)
    }

    async fn destroy(&self, id: MatchId) -> Result<bool, StoreError> {
        dispatch!(self, s => s.destroy(id).await)
    }

    async fn reap(&self, now_unix: u64) -> Result<usize, StoreError> {
        dispatch!(self, s => s.reap(now_unix).await)
    }

    async fn counts(&self, now_unix: u64) -> Result<StoreCounts, StoreError> {
        dispatch!(self, s => s.counts(now_unix).await)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacted_hides_a_url_password_only() {
        use super::redacted;
        assert_eq!(redacted("memory"), "memory");
        assert_eq!(redacted("redis://127.0.0.1:6379/2"), "redis://127.0.0.1:6379/2");
        assert_eq!(redacted("redis://:s3cret@10.0.0.1:6379"), "redis://:***@10.0.0.1:6379");
        assert_eq!(redacted("rediss://app:p:w@@r.example/0"), "rediss://app:***@r.example/0");
        assert_eq!(redacted("redis://app@r.example"), "redis://app@r.example");
        assert_eq!(redacted("redis+unix:///run/redis.sock"), "redis+unix:///run/redis.sock");
    }
}
