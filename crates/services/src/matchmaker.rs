//! The matchmaker's rules, over any [`Store`]: what a request may ask, the secrets it gets, and
//! the connect tokens and relay allocations it needs. No HTTP here (that is [`crate::http`])
//! and no clock: every call takes `now_unix`.

use std::collections::BTreeMap;

use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use sturnus_lobby::JoinCode;
use sturnus_lobby::api::{
    ApiError, Bytes, CreateMatch, Created, ErrorKind, HostMode, JoinRequest, Joined, ListQuery,
    MatchId, MatchInfo, MatchPage, QuickJoin, QuickJoined, Value,
};
use sturnus_netcode::token::{ConnectToken, TokenSpec};

use crate::relay::{AllocationLimits, RelayMinter};
use crate::store::{
    Digest, HostHeartbeat, JoinOutcome, JoinTicket, Schema, Store, StoreError, StoredMatch,
};

/// The matchmaker's limits and timings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rules {
    /// The declared (indexed, filterable) attributes.
    pub schema: Schema,
    /// The most player slots a match may have.
    pub max_match_size: u16,
    /// How often hosts send a heartbeat (seconds); a match expires after twice that without.
    pub heartbeat_seconds: u32,
    /// How long a connect token may start a connection (seconds).
    pub token_expire_seconds: i32,
    /// How long a connection may go silent before it ends (seconds).
    pub token_timeout_seconds: i32,
    /// How long a host's relay allocation may be bound (seconds): its match's longest life.
    pub allocation_seconds: u64,
    /// How long a player's relay allocation may be bound (seconds): time to connect, and to
    /// bind again after a relay restart or a NAT change.
    pub player_allocation_seconds: u64,
    /// What a relay allocation allows.
    pub relay_limits: AllocationLimits,
    /// The most attributes a match may have.
    pub max_attributes: usize,
    /// The longest name, attribute name or string value (characters).
    pub max_string: usize,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            schema: Schema::default(),
            max_match_size: 1000,
            heartbeat_seconds: 15,
            token_expire_seconds: 60,
            token_timeout_seconds: 10,
            allocation_seconds: 6 * 3600,
            player_allocation_seconds: 300,
            relay_limits: AllocationLimits::default(),
            max_attributes: 32,
            max_string: 64,
        }
    }
}

/// A refusal, as the API answers it.
pub(crate) fn refuse(kind: ErrorKind, message: impl Into<String>) -> ApiError {
    ApiError { error: kind, message: message.into() }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "matchmaker: internal error");
    refuse(ErrorKind::Internal, "the service failed; try again")
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        internal(e)
    }
}

fn not_found() -> ApiError {
    refuse(ErrorKind::NotFound, "no such match (it may have ended)")
}

/// SHA-256 of `parts`, one after the other.
fn digest(parts: &[&[u8]]) -> Digest {
    let mut h = Sha256::new();
    for part in parts {
        h.update(part);
    }
    h.finalize().into()
}

/// The digest a store keeps of a password: salted with the match id.
pub(crate) fn password_digest(id: MatchId, password: &str) -> Digest {
    digest(&[b"sturnus password", &id.0.to_le_bytes(), password.as_bytes()])
}

/// The digest a store keeps of a bearer token.
pub(crate) fn token_digest(token: &str) -> Digest {
    digest(&[b"sturnus token", token.as_bytes()])
}

/// A fresh bearer token: 256 bits from the operating system, base64url.
fn new_token() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(internal)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Constant-time equality of two digests.
pub(crate) fn same(a: &Digest, b: &Digest) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The matchmaker over a store.
#[derive(Debug)]
pub struct Matchmaker<S> {
    store: S,
    rules: Rules,
    relay: Option<RelayMinter>,
}

impl<S: Store> Matchmaker<S> {
    /// A matchmaker over `store`, relaying through `relay` when a host asks (none: relayed
    /// matches are refused).
    pub fn new(store: S, rules: Rules, relay: Option<RelayMinter>) -> Self {
        Self { store, rules, relay }
    }

    /// Its store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Its rules.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Its relay, if it has one.
    pub fn relay(&self) -> Option<&RelayMinter> {
        self.relay.as_ref()
    }

    fn check_string(&self, what: &str, s: &str) -> Result<(), ApiError> {
        if s.chars().count() > self.rules.max_string {
            return Err(refuse(
                ErrorKind::BadRequest,
                format!("{what} is longer than {} characters", self.rules.max_string),
            ));
        }
        Ok(())
    }

    /// Checks attributes against the schema: declared ones must have their type; undeclared
    /// ones are kept (shown in lists) but cannot be filtered on.
    fn check_attributes(&self, attributes: &BTreeMap<String, Value>) -> Result<(), ApiError> {
        if attributes.len() > self.rules.max_attributes {
            return Err(refuse(
                ErrorKind::BadRequest,
                format!("more than {} attributes", self.rules.max_attributes),
            ));
        }
        for (name, value) in attributes {
            self.check_string("an attribute name", name)?;
            match value {
                Value::Str(s) => {
                    self.check_string("an attribute value", s)?;
                    if self.rules.schema.numbers.contains(name) {
                        return Err(refuse(
                            ErrorKind::BadRequest,
                            format!("attribute `{name}` is declared numeric"),
                        ));
                    }
                }
                Value::Num(n) => {
                    if !n.is_finite() {
                        return Err(refuse(
                            ErrorKind::BadRequest,
                            format!("attribute `{name}` is not a finite number"),
                        ));
                    }
                    if self.rules.schema.strings.contains(name) {
                        return Err(refuse(
                            ErrorKind::BadRequest,
                            format!("attribute `{name}` is declared a string"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn check_query(&self, query: &ListQuery) -> Result<(), ApiError> {
        if query.page_size == 0 || query.page_size > 100 {
            return Err(refuse(ErrorKind::BadRequest, "page_size is 1 to 100"));
        }
        if let Some(name) = &query.name_contains {
            self.check_string("name_contains", name)?;
        }
        if let Some(region) = &query.region {
            self.check_string("the region", region)?;
        }
        if query.filters.len() > 16 {
            return Err(refuse(ErrorKind::BadRequest, "at most 16 filters"));
        }
        for filter in &query.filters {
            let numeric = self.rules.schema.numbers.contains(&filter.attribute);
            let string = self.rules.schema.strings.contains(&filter.attribute);
            match (&filter.value, numeric, string) {
                (Value::Num(n), true, _) if n.is_finite() => {}
                (Value::Str(s), _, true) => self.check_string("a filter value", s)?,
                (_, false, false) => {
                    return Err(refuse(
                        ErrorKind::BadRequest,
                        format!(
                            "attribute `{}` is not declared: only declared attributes can be \
                             filtered on",
                            filter.attribute
                        ),
                    ));
                }
                _ => {
                    return Err(refuse(
                        ErrorKind::BadRequest,
                        format!(
                            "the filter on `{}` compares with the wrong type",
                            filter.attribute
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Creates a match.
    pub async fn create(&self, request: &CreateMatch, now_unix: u64) -> Result<Created, ApiError> {
        let name_chars = request.name.chars().count();
        if name_chars == 0 {
            return Err(refuse(ErrorKind::BadRequest, "a match needs a name"));
        }
        self.check_string("the name", &request.name)?;
        if request.size == 0 || request.size > self.rules.max_match_size {
            return Err(refuse(
                ErrorKind::BadRequest,
                format!("size is 1 to {}", self.rules.max_match_size),
            ));
        }
        if let Some(region) = &request.region {
            self.check_string("the region", region)?;
        }
        if let Some(password) = &request.password {
            self.check_string("the password", password)?;
        }
        self.check_attributes(&request.attributes)?;
        let (server_address, relay_session) = match request.host {
            HostMode::Direct { address } => {
                if address.ip().is_unspecified() || address.port() == 0 {
                    return Err(refuse(
                        ErrorKind::BadRequest,
                        "a direct host names the address players reach it at (not 0.0.0.0 or \
                         port 0)",
                    ));
                }
                (address, None)
            }
            HostMode::Relay => {
                let relay = self
                    .relay
                    .as_ref()
                    .ok_or_else(|| refuse(ErrorKind::Unavailable, "this service runs no relay"))?;
                (relay.public_address(), Some(relay.new_session().map_err(internal)?))
            }
            _ => {
                return Err(refuse(
                    ErrorKind::BadRequest,
                    "a host mode this service does not know",
                ));
            }
        };
        let private_key = sturnus_netcode::random_key().map_err(internal)?;
        let host_token = new_token()?;
        let expires_unix = now_unix + 2 * u64::from(self.rules.heartbeat_seconds);
        // An id or code collision is astronomically rare, but a store says so rather than
        // overwrite: draw again.
        for _ in 0..8 {
            let id = MatchId::generate().map_err(internal)?;
            let code = JoinCode::generate().map_err(internal)?;
            let info = MatchInfo {
                id,
                name: request.name.clone(),
                size: request.size,
                players: 0,
                listed: request.listed,
                has_password: request.password.is_some(),
                attributes: request.attributes.clone(),
                region: request.region.clone(),
                relayed: relay_session.is_some(),
                created_unix: now_unix,
                expires_unix,
            };
            let stored = StoredMatch {
                info: info.clone(),
                code,
                host_token: token_digest(&host_token),
                password: request.password.as_deref().map(|p| password_digest(id, p)),
                private_key,
                protocol_id: request.protocol_id,
                host: request.host,
                server_address,
                relay_session,
                next_slot: 1,
                members: BTreeMap::new(),
            };
            match self.store.create(stored).await {
                Ok(()) => {
                    tracing::info!(%id, relayed = info.relayed, size = info.size, "match created");
                    let relay = match (relay_session, &self.relay) {
                        (Some(session), Some(relay)) => Some(Bytes(
                            relay.mint(session, 0, info.size, now_unix).map_err(internal)?,
                        )),
                        _ => None,
                    };
                    return Ok(Created {
                        info,
                        join_code: code,
                        host_token,
                        heartbeat_seconds: self.rules.heartbeat_seconds,
                        private_key: Bytes(private_key.to_vec()),
                        server_address,
                        relay,
                    });
                }
                Err(StoreError::CodeTaken | StoreError::IdTaken) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(internal("eight id or code collisions in a row"))
    }

    /// Lists matches.
    pub async fn list(&self, query: &ListQuery, now_unix: u64) -> Result<MatchPage, ApiError> {
        self.check_query(query)?;
        Ok(self.store.list(query, now_unix).await?)
    }

    /// One match.
    pub async fn get(&self, id: MatchId, now_unix: u64) -> Result<MatchInfo, ApiError> {
        let m = self.store.get(id, now_unix).await?.ok_or_else(not_found)?;
        Ok(m.info)
    }

    /// The match a code finds (the caller rate-limits lookups).
    pub async fn find_code(&self, code: JoinCode, now_unix: u64) -> Result<MatchId, ApiError> {
        self.store.find_code(code, now_unix).await?.ok_or_else(|| {
            refuse(ErrorKind::NotFound, "no match has this code (it may have been replaced)")
        })
    }

    /// Joins a match.
    pub async fn join(
        &self,
        id: MatchId,
        request: &JoinRequest,
        now_unix: u64,
    ) -> Result<Joined, ApiError> {
        let user_data = match &request.user_data {
            Some(data) if data.0.len() > sturnus_netcode::USER_DATA_BYTES => {
                return Err(refuse(ErrorKind::BadRequest, "user_data is at most 256 bytes"));
            }
            Some(data) => data.0.as_slice(),
            None => &[],
        };
        if let Some(password) = &request.password {
            self.check_string("the password", password)?;
        }
        let leave_token = new_token()?;
        let ticket = JoinTicket {
            password: request.password.as_deref().map(|p| password_digest(id, p)),
            leave_token: token_digest(&leave_token),
            now_unix,
        };
        let (slot, joined) = match self.store.join(id, &ticket).await? {
            JoinOutcome::Joined { slot, joined } => (slot, joined),
            JoinOutcome::Full => return Err(refuse(ErrorKind::Full, "the match is full")),
            JoinOutcome::WrongPassword => {
                return Err(refuse(ErrorKind::WrongPassword, "wrong or missing password"));
            }
            JoinOutcome::NotFound => return Err(not_found()),
            #[allow(unreachable_patterns, reason = "JoinOutcome is non_exhaustive")]
            _ => return Err(internal("an outcome this matchmaker does not know")),
        };
        let mut data = [0u8; sturnus_netcode::USER_DATA_BYTES];
        data[..user_data.len()].copy_from_slice(user_data);
        let spec = TokenSpec {
            protocol_id: joined.protocol_id,
            client_id: u64::from(slot),
            server_addresses: vec![joined.server_address],
            expire_seconds: self.rules.token_expire_seconds,
            timeout_seconds: self.rules.token_timeout_seconds,
            user_data: data,
        };
        let token = ConnectToken::generate(&spec, &joined.private_key, now_unix)
            .and_then(|t| t.write())
            .map_err(internal)?;
        let relay = match (joined.relay_session, &self.relay) {
            (Some(session), Some(relay)) => Some(Bytes(
                relay.mint(session, slot, joined.info.size, now_unix).map_err(internal)?,
            )),
            (Some(_), None) => {
                return Err(refuse(ErrorKind::Unavailable, "this node runs no relay"));
            }
            _ => None,
        };
        tracing::debug!(%id, slot, "joined");
        Ok(Joined {
            info: joined.info.clone(),
            slot,
            connect_token: Bytes(token.to_vec()),
            relay,
            leave_token,
        })
    }

    /// Joins the match a code finds.
    pub async fn join_code(
        &self,
        code: JoinCode,
        request: &JoinRequest,
        now_unix: u64,
    ) -> Result<Joined, ApiError> {
        let id = self.find_code(code, now_unix).await?;
        self.join(id, request, now_unix).await
    }

    /// Joins the first listed match the query finds with a free slot, or creates one. A match
    /// filled between the list and the join is skipped, and so is one whose password is not
    /// the joiner's.
    pub async fn quick_join(
        &self,
        request: &QuickJoin,
        now_unix: u64,
    ) -> Result<QuickJoined, ApiError> {
        match self.quick_join_existing(request, now_unix).await? {
            Some(joined) => Ok(QuickJoined::Joined(joined)),
            None => Ok(QuickJoined::Created(self.create(&request.create, now_unix).await?)),
        }
    }

    /// The joining half of [`quick_join`](Self::quick_join): joins the first listed match the
    /// query finds that lets the joiner in; `None` if none does (the caller then creates
    /// `request.create`, under its own limits).
    pub async fn quick_join_existing(
        &self,
        request: &QuickJoin,
        now_unix: u64,
    ) -> Result<Option<Joined>, ApiError> {
        let mut query = request.query.clone();
        query.page = 0;
        query.page_size = 20;
        query.min_free_slots = query.min_free_slots.max(1);
        // A passworded match would refuse a joiner without its password.
        query.hide_passworded |= request.join.password.is_none();
        let page = self.list(&query, now_unix).await?;
        for candidate in &page.matches {
            match self.join(candidate.id, &request.join, now_unix).await {
                Ok(joined) => return Ok(Some(joined)),
                Err(e)
                    if matches!(
                        e.error,
                        ErrorKind::Full | ErrorKind::NotFound | ErrorKind::WrongPassword
                    ) =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Checks a host's bearer token against the match; the match if it is the host's.
    pub async fn authorize(
        &self,
        id: MatchId,
        host_token: Option<&str>,
        now_unix: u64,
    ) -> Result<StoredMatch, ApiError> {
        let token = host_token
            .ok_or_else(|| refuse(ErrorKind::Unauthorized, "the host's token is missing"))?;
        let m = self.store.get(id, now_unix).await?.ok_or_else(not_found)?;
        if !same(&m.host_token, &token_digest(token)) {
            return Err(refuse(ErrorKind::Unauthorized, "not this match's host token"));
        }
        Ok(m)
    }

    /// A player leaves.
    pub async fn leave(
        &self,
        id: MatchId,
        slot: u16,
        leave_token: &str,
        now_unix: u64,
    ) -> Result<(), ApiError> {
        if self.store.leave(id, slot, Some(token_digest(leave_token)), now_unix).await? {
            tracing::debug!(%id, slot, "left");
            Ok(())
        } else {
            Err(refuse(ErrorKind::Unauthorized, "no such player, or not its leave token"))
        }
    }

    /// The host drops a player.
    pub async fn drop_player(
        &self,
        id: MatchId,
        host_token: Option<&str>,
        slot: u16,
        now_unix: u64,
    ) -> Result<(), ApiError> {
        self.authorize(id, host_token, now_unix).await?;
        if self.store.leave(id, slot, None, now_unix).await? {
            Ok(())
        } else {
            Err(refuse(ErrorKind::NotFound, "no such player in the match"))
        }
    }

    /// The host's heartbeat.
    pub async fn heartbeat(
        &self,
        id: MatchId,
        host_token: Option<&str>,
        now_unix: u64,
    ) -> Result<MatchInfo, ApiError> {
        // As `authorize` then the store's heartbeat, in one store call (one Redis round trip).
        let token = host_token
            .ok_or_else(|| refuse(ErrorKind::Unauthorized, "the host's token is missing"))?;
        let expires = now_unix + 2 * u64::from(self.rules.heartbeat_seconds);
        match self.store.host_heartbeat(id, token_digest(token), expires, now_unix).await? {
            HostHeartbeat::Moved(info) => Ok(info),
            HostHeartbeat::NotHost => {
                Err(refuse(ErrorKind::Unauthorized, "not this match's host token"))
            }
            HostHeartbeat::NotFound => Err(not_found()),
            #[allow(unreachable_patterns, reason = "HostHeartbeat is non_exhaustive")]
            _ => Err(internal("an outcome this matchmaker does not know")),
        }
    }

    /// The host sets attributes or the listing.
    pub async fn update(
        &self,
        id: MatchId,
        host_token: Option<&str>,
        listed: Option<bool>,
        attributes: &BTreeMap<String, Value>,
        now_unix: u64,
    ) -> Result<MatchInfo, ApiError> {
        let m = self.authorize(id, host_token, now_unix).await?;
        self.check_attributes(attributes)?;
        let merged = m.info.attributes.len()
            + attributes.keys().filter(|k| !m.info.attributes.contains_key(*k)).count();
        if merged > self.rules.max_attributes {
            return Err(refuse(
                ErrorKind::BadRequest,
                format!("more than {} attributes", self.rules.max_attributes),
            ));
        }
        self.store.update(id, listed, attributes, now_unix).await?.ok_or_else(not_found)
    }

    /// The host replaces the join code.
    pub async fn new_code(
        &self,
        id: MatchId,
        host_token: Option<&str>,
        now_unix: u64,
    ) -> Result<JoinCode, ApiError> {
        self.authorize(id, host_token, now_unix).await?;
        for _ in 0..8 {
            let code = JoinCode::generate().map_err(internal)?;
            match self.store.replace_code(id, code, now_unix).await {
                Ok(true) => return Ok(code),
                Ok(false) => return Err(not_found()),
                Err(StoreError::CodeTaken) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(internal("eight code collisions in a row"))
    }

    /// The host destroys the match.
    pub async fn destroy(
        &self,
        id: MatchId,
        host_token: Option<&str>,
        now_unix: u64,
    ) -> Result<(), ApiError> {
        self.authorize(id, host_token, now_unix).await?;
        if self.store.destroy(id).await? {
            tracing::info!(%id, "match destroyed");
            Ok(())
        } else {
            Err(not_found())
        }
    }
}
