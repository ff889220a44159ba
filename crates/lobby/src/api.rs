//! The matchmaker's HTTP/JSON API: requests, answers and errors, shared by `sturnusd` and the
//! game-side [`LobbyClient`](crate::LobbyClient).
//!
//! | call | method and path | body → answer |
//! |---|---|---|
//! | create | `POST /v1/matches` | [`CreateMatch`] → [`Created`] |
//! | list | `POST /v1/matches/list` | [`ListQuery`] → [`MatchPage`] |
//! | get | `GET /v1/matches/{id}` | → [`MatchInfo`] |
//! | join by id | `POST /v1/matches/{id}/join` | [`JoinRequest`] → [`Joined`] |
//! | join by code | `POST /v1/codes/{code}/join` | [`JoinRequest`] → [`Joined`] |
//! | quick-join | `POST /v1/quick-join` | [`QuickJoin`] → [`QuickJoined`] |
//! | leave | `POST /v1/matches/{id}/leave` | [`Leave`] → 204 |
//! | heartbeat | `POST /v1/matches/{id}/heartbeat` | (host) → [`MatchInfo`] |
//! | set attributes | `PATCH /v1/matches/{id}` | (host) [`UpdateMatch`] → [`MatchInfo`] |
//! | new join code | `POST /v1/matches/{id}/code` | (host) → [`NewCode`] (the old one stops working) |
//! | drop a player | `DELETE /v1/matches/{id}/players/{slot}` | (host) → 204 |
//! | destroy | `DELETE /v1/matches/{id}` | (host) → 204 |
//!
//! Calls marked "host" carry the [`Created::host_token`] as `Authorization: Bearer …`.
//! Errors are a status code with an [`ApiError`] body.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::code::JoinCode;

/// A match's id: 64 random bits, written as 16 hexadecimal digits (JSON numbers lose
/// precision above 2⁵³).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MatchId(pub u64);

impl MatchId {
    /// A fresh id from the operating system's generator.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes)?;
        Ok(Self(u64::from_le_bytes(bytes)))
    }
}

impl fmt::Display for MatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for MatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MatchId({self})")
    }
}

impl FromStr for MatchId {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u64::from_str_radix(s, 16).map(Self)
    }
}

impl Serialize for MatchId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MatchId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A typed attribute value: a string or a (finite) number. In JSON, a string or a number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// A number (an ELO score, a map size, a game-mode number…).
    Num(f64),
    /// A string (a map name, a game mode, a language…).
    Str(String),
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}

impl From<f64> for Value {
    fn from(n: f64) -> Self {
        Value::Num(n)
    }
}

impl From<i32> for Value {
    fn from(n: i32) -> Self {
        Value::Num(f64::from(n))
    }
}

/// How players reach the host of a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
#[non_exhaustive]
pub enum HostMode {
    /// The host (or dedicated server) listens at a public address that connect tokens list.
    Direct {
        /// Where players connect.
        address: SocketAddr,
    },
    /// The host has no public address: everyone goes through the service's relay. Connect
    /// tokens list the relay; payloads stay encrypted end to end.
    Relay,
}

/// `POST /v1/matches`: a new match (UNET's `CreateMatch`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateMatch {
    /// The name players see in lists (1 to 64 characters).
    pub name: String,
    /// Player slots, the host's not counted (1 to the service's maximum, 250 or more).
    pub size: u16,
    /// Listed: shown by list and quick-join. An unlisted match is joined by code or id only.
    #[serde(default = "yes")]
    pub listed: bool,
    /// A password joiners must give.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Typed attributes; those the service declares are indexed and can be filtered on.
    #[serde(default)]
    pub attributes: BTreeMap<String, Value>,
    /// A region, for filtering (`eu-west`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The game's netcode protocol id: connect tokens are minted for it.
    pub protocol_id: u64,
    /// Direct or relayed.
    pub host: HostMode,
}

fn yes() -> bool {
    true
}

/// A match as lists show it (UNET's `MatchInfoSnapshot`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchInfo {
    /// Its id.
    pub id: MatchId,
    /// Its name.
    pub name: String,
    /// Player slots (the host not counted).
    pub size: u16,
    /// Players joined now.
    pub players: u16,
    /// Whether lists show it.
    pub listed: bool,
    /// Whether joining needs a password.
    pub has_password: bool,
    /// Its attributes.
    pub attributes: BTreeMap<String, Value>,
    /// Its region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Whether players go through the relay.
    pub relayed: bool,
    /// When it was created (Unix seconds).
    pub created_unix: u64,
    /// When it expires unless the host sends a heartbeat (Unix seconds).
    pub expires_unix: u64,
}

impl MatchInfo {
    /// Free player slots.
    pub fn free_slots(&self) -> u16 {
        self.size.saturating_sub(self.players)
    }
}

/// Base64 bytes in JSON (keys, tokens, relay allocations).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Bytes(pub Vec<u8>);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bytes({} bytes)", self.0.len())
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use base64::Engine as _;
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map(Bytes)
            .map_err(serde::de::Error::custom)
    }
}

/// What the host of a new match needs, answered to [`CreateMatch`]. Keep it secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Created {
    /// The match.
    pub info: MatchInfo,
    /// The code players join with (revocable: [`NewCode`]).
    pub join_code: JoinCode,
    /// Authorises the host's calls (heartbeat, set attributes, new code, drop, destroy).
    pub host_token: String,
    /// How often to send a heartbeat (seconds); the match expires after twice that without.
    pub heartbeat_seconds: u32,
    /// The key the service mints this match's connect tokens under (32 bytes): the host's
    /// netcode server admits players with it. The relay never sees it.
    pub private_key: Bytes,
    /// The address the host's netcode server must name as its own (tokens list it): its
    /// direct address, or the relay's.
    pub server_address: SocketAddr,
    /// The host's relay allocation (slot 0), for a relayed match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<Bytes>,
}

/// A comparison in a [`Filter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Op {
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
    /// Less than.
    Lt,
    /// Less than or equal.
    Le,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Ge,
}

impl Op {
    /// Whether `lhs op rhs` holds (values of different types never compare).
    pub fn holds(self, lhs: &Value, rhs: &Value) -> bool {
        let ordering = match (lhs, rhs) {
            (Value::Num(a), Value::Num(b)) => a.partial_cmp(b),
            (Value::Str(a), Value::Str(b)) => Some(a.cmp(b)),
            _ => None,
        };
        let Some(ordering) = ordering else { return false };
        match self {
            Op::Eq => ordering.is_eq(),
            Op::Ne => ordering.is_ne(),
            Op::Lt => ordering.is_lt(),
            Op::Le => ordering.is_le(),
            Op::Gt => ordering.is_gt(),
            Op::Ge => ordering.is_ge(),
        }
    }
}

/// A typed predicate on a declared attribute: `attribute op value`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    /// The attribute's name (declared by the service).
    pub attribute: String,
    /// The comparison.
    pub op: Op,
    /// The value compared with (of the attribute's type).
    pub value: Value,
}

impl Filter {
    /// `attribute op value`.
    pub fn new(attribute: impl Into<String>, op: Op, value: impl Into<Value>) -> Self {
        Self { attribute: attribute.into(), op, value: value.into() }
    }
}

/// `POST /v1/matches/list`: which listed matches to show (UNET's `ListMatches`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListQuery {
    /// The page, from 0.
    #[serde(default)]
    pub page: u32,
    /// Matches per page (1 to 100).
    #[serde(default = "default_page_size")]
    pub page_size: u16,
    /// Only matches whose name contains this (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_contains: Option<String>,
    /// Only matches of this region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Only matches with at least this many free slots (default 1: joinable).
    #[serde(default = "one")]
    pub min_free_slots: u16,
    /// Leave out matches that need a password.
    #[serde(default)]
    pub hide_passworded: bool,
    /// Predicates on declared attributes, all of which must hold.
    #[serde(default)]
    pub filters: Vec<Filter>,
}

fn default_page_size() -> u16 {
    20
}

fn one() -> u16 {
    1
}

impl Default for ListQuery {
    fn default() -> Self {
        Self {
            page: 0,
            page_size: default_page_size(),
            name_contains: None,
            region: None,
            min_free_slots: 1,
            hide_passworded: false,
            filters: Vec::new(),
        }
    }
}

impl ListQuery {
    /// Whether `m` passes this query's predicates (not its paging). Every store answers with
    /// exactly the listed, unexpired matches this accepts.
    pub fn accepts(&self, m: &MatchInfo) -> bool {
        m.listed
            && m.free_slots() >= self.min_free_slots
            && !(self.hide_passworded && m.has_password)
            && self.region.as_ref().is_none_or(|r| m.region.as_ref() == Some(r))
            && self
                .name_contains
                .as_ref()
                .is_none_or(|needle| m.name.to_lowercase().contains(&needle.to_lowercase()))
            && self
                .filters
                .iter()
                .all(|f| m.attributes.get(&f.attribute).is_some_and(|v| f.op.holds(v, &f.value)))
    }
}

/// A page of [`ListQuery`] results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchPage {
    /// The matches of the page, in a stable order.
    pub matches: Vec<MatchInfo>,
    /// Whether a next page has matches.
    pub more: bool,
}

/// `POST …/join`: joining a match by id or code.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct JoinRequest {
    /// The match's password, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Up to 256 bytes the host receives sealed in the connect token (a player name, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<Bytes>,
}

/// What a joiner needs to connect, answered to a join.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Joined {
    /// The match.
    pub info: MatchInfo,
    /// The player's slot in the match (1, 2, …; the host is 0).
    pub slot: u16,
    /// A netcode 1.02 connect token (2,048 bytes) for the host, or for the relay.
    pub connect_token: Bytes,
    /// The player's relay allocation, for a relayed match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<Bytes>,
    /// Authorises [`Leave`].
    pub leave_token: String,
}

/// `POST /v1/quick-join`: join the first match the query finds, or create one (Photon's
/// `JoinRandomOrCreateRoom`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuickJoin {
    /// Which matches would do (its paging is ignored).
    pub query: ListQuery,
    /// The joiner's request.
    #[serde(default)]
    pub join: JoinRequest,
    /// The match to create when none will do.
    pub create: CreateMatch,
}

/// The answer to [`QuickJoin`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
#[allow(clippy::large_enum_variant, reason = "answers are built once per request")]
#[non_exhaustive]
pub enum QuickJoined {
    /// A match was joined.
    Joined(Joined),
    /// None would do: the caller now hosts a new one.
    Created(Created),
}

/// `POST …/leave`: a player leaves, freeing its slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leave {
    /// The player's slot.
    pub slot: u16,
    /// Its [`Joined::leave_token`].
    pub leave_token: String,
}

/// `PATCH /v1/matches/{id}` (host): UNET's `SetMatchAttributes`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct UpdateMatch {
    /// Show or hide the match in lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listed: Option<bool>,
    /// Attributes to set (the others are kept).
    #[serde(default)]
    pub attributes: BTreeMap<String, Value>,
}

/// `POST /v1/matches/{id}/code` (host): a new join code; the old one stops working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewCode {
    /// The new code.
    pub join_code: JoinCode,
}

/// The kind of an [`ApiError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request is malformed or breaks a limit (HTTP 400).
    BadRequest,
    /// No such match, or no such code, or it expired (404).
    NotFound,
    /// The match is full (409).
    Full,
    /// Wrong or missing password (403).
    WrongPassword,
    /// Missing or wrong host or leave token (401).
    Unauthorized,
    /// Too many requests from this address (429).
    RateLimited,
    /// The service is out of capacity (relay allocations, matches) (503).
    Unavailable,
    /// Something failed inside the service (500).
    Internal,
}

impl ErrorKind {
    /// The HTTP status code.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::BadRequest => 400,
            ErrorKind::NotFound => 404,
            ErrorKind::Full => 409,
            ErrorKind::WrongPassword => 403,
            ErrorKind::Unauthorized => 401,
            ErrorKind::RateLimited => 429,
            ErrorKind::Unavailable => 503,
            ErrorKind::Internal => 500,
        }
    }
}

/// An error answer's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong, for programs.
    pub error: ErrorKind,
    /// What went wrong, for people.
    pub message: String,
}

/// `GET /v1/status`: the service's load (the status page reads it).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Status {
    /// Open matches.
    pub matches: u64,
    /// Players in them.
    pub players: u64,
    /// Relay allocations bound now.
    pub relay_bindings: u64,
    /// Relayed sessions with a bound host.
    pub relay_sessions: u64,
    /// Datagrams the relay forwarded since start.
    pub relay_forwarded: u64,
    /// Datagrams the relay dropped since start.
    pub relay_dropped: u64,
    /// API requests since start.
    pub requests: u64,
    /// Seconds since start.
    pub uptime_seconds: u64,
    /// The store (`memory` or `redis`).
    pub store: String,
}
