//! The HTTP face of `sturnusd`: the matchmaker's JSON API (see [`sturnus_lobby::api`]),
//! `GET /healthz`, `GET /metrics` (Prometheus text) and a status page at `/`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use std::sync::Mutex;
use sturnus_lobby::JoinCode;
use sturnus_lobby::api::{
    ApiError, CreateMatch, ErrorKind, JoinRequest, Leave, ListQuery, MatchId, NewCode, QuickJoin,
    QuickJoined, Status, UpdateMatch,
};

use crate::matchmaker::{Matchmaker, refuse};
use crate::store::Store;

/// Per-address request limits (token buckets: a rate and a burst). An IPv6 address counts as
/// its /64: a host owns every address of its /64.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// API requests per second from one address (0: unlimited).
    pub requests_per_second: f64,
    /// Matches created per minute from one address (0: unlimited).
    pub creates_per_minute: f64,
    /// Join-code lookups per minute from one address (0: unlimited). At 60 a minute, an
    /// address guessing codes against 10,000 live 50-bit codes finds one with a chance of
    /// 8 × 10⁻⁷ a day.
    pub code_lookups_per_minute: f64,
    /// Joins (by id, by code, quick-join) per minute from one address (0: unlimited): a join
    /// holds a slot until the player leaves or the host drops it, so one address cannot fill
    /// every match of a service with joins it never uses.
    pub joins_per_minute: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            requests_per_second: 50.0,
            creates_per_minute: 30.0,
            code_lookups_per_minute: 60.0,
            joins_per_minute: 30.0,
        }
    }
}

impl Limits {
    /// No limits (benchmarks, and a service behind a proxy that limits).
    pub fn unlimited() -> Self {
        Self {
            requests_per_second: 0.0,
            creates_per_minute: 0.0,
            code_lookups_per_minute: 0.0,
            joins_per_minute: 0.0,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Request = 0,
    Create = 1,
    Code = 2,
    Join = 3,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets per source address.
#[derive(Debug)]
struct RateLimiter {
    /// (per second, burst) for each kind.
    rates: [(f64, f64); 4],
    buckets: Mutex<Buckets>,
}

/// The buckets, and the size at which refilled ones are next forgotten.
#[derive(Debug)]
struct Buckets {
    map: HashMap<IpAddr, [Bucket; 4]>,
    /// Twice what a sweep kept (at least 100,000): sweeps stay rare however many addresses
    /// stay live, instead of one on every request once the map is large.
    sweep_at: usize,
}

/// The fewest addresses at which refilled buckets are swept.
const SWEEP_AT: usize = 100_000;

impl RateLimiter {
    fn new(limits: &Limits) -> Self {
        let per = |rate: f64, per_second: f64| {
            let r = rate * per_second;
            (r, (rate * 2.0).max(1.0))
        };
        Self {
            rates: [
                (limits.requests_per_second, (limits.requests_per_second * 2.0).max(1.0)),
                per(limits.creates_per_minute, 1.0 / 60.0),
                per(limits.code_lookups_per_minute, 1.0 / 60.0),
                per(limits.joins_per_minute, 1.0 / 60.0),
            ],
            buckets: Mutex::new(Buckets { map: HashMap::new(), sweep_at: SWEEP_AT }),
        }
    }

    /// Takes a token of `kind` for `ip` at `now`; whether one was there. An IPv6 host is
    /// limited by its /64 (it owns all 2⁶⁴ addresses of it), an IPv4-mapped address as the
    /// IPv4 address it maps.
    fn allow(&self, ip: IpAddr, kind: Kind, now: Instant) -> bool {
        let (rate, burst) = self.rates[kind as usize];
        if rate <= 0.0 {
            return true;
        }
        let ip = limited_as(ip);
        let mut guard = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let buckets = &mut *guard;
        if buckets.map.len() > buckets.sweep_at {
            // Forget addresses whose buckets have refilled: they would start full anyway.
            let rates = self.rates;
            buckets.map.retain(|_, b| {
                b.iter().zip(rates).any(|(b, (rate, burst))| {
                    rate > 0.0 && b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst
                })
            });
            buckets.sweep_at = (2 * buckets.map.len()).max(SWEEP_AT);
        }
        let fresh = |(_, burst): (f64, f64)| Bucket { tokens: burst, at: now };
        let entry = buckets.map.entry(ip).or_insert_with(|| self.rates.map(fresh));
        let bucket = &mut entry[kind as usize];
        bucket.tokens =
            (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The address whose buckets `ip` spends: an IPv4 address itself, an IPv4-mapped IPv6
/// address the IPv4 one, another IPv6 address its /64.
fn limited_as(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((v6.to_bits() & !u128::from(u64::MAX)).into()),
        },
    }
}

/// Counters of the HTTP face.
#[derive(Debug, Default)]
pub struct Counters {
    /// Requests answered.
    pub requests: AtomicU64,
    /// Requests refused by the rate limits.
    pub rate_limited: AtomicU64,
    /// Errors answered, by kind (indexed as [`ErrorKind`] is listed in `KINDS`).
    errors: [AtomicU64; KINDS.len()],
    /// Matches created.
    pub created: AtomicU64,
    /// Joins that succeeded.
    pub joined: AtomicU64,
}

const KINDS: [ErrorKind; 8] = [
    ErrorKind::BadRequest,
    ErrorKind::NotFound,
    ErrorKind::Full,
    ErrorKind::WrongPassword,
    ErrorKind::Unauthorized,
    ErrorKind::RateLimited,
    ErrorKind::Unavailable,
    ErrorKind::Internal,
];

fn kind_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::BadRequest => "bad_request",
        ErrorKind::NotFound => "not_found",
        ErrorKind::Full => "full",
        ErrorKind::WrongPassword => "wrong_password",
        ErrorKind::Unauthorized => "unauthorized",
        ErrorKind::RateLimited => "rate_limited",
        ErrorKind::Unavailable => "unavailable",
        _ => "internal",
    }
}

/// The relay's figures, as the status page and the metrics show them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayFigures {
    /// Allocations bound now.
    pub bindings: u64,
    /// Sessions with a bound host.
    pub sessions: u64,
    /// Datagrams forwarded since start.
    pub forwarded: u64,
    /// Datagrams dropped since start.
    pub dropped: u64,
}

/// Reads the relay's figures (the relay runs on its own thread).
pub type RelayProbe = Arc<dyn Fn() -> RelayFigures + Send + Sync>;

/// What the handlers share.
pub struct AppState<S> {
    matchmaker: Matchmaker<S>,
    limiter: RateLimiter,
    /// The counters.
    pub counters: Counters,
    started: Instant,
    relay: Option<RelayProbe>,
}

impl<S> std::fmt::Debug for AppState<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("counters", &self.counters).finish_non_exhaustive()
    }
}

type Shared<S> = Arc<AppState<S>>;

#[expect(clippy::disallowed_methods, reason = "the HTTP service is a driver: it reads the clock")]
fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[expect(clippy::disallowed_methods, reason = "the HTTP service is a driver: it reads the clock")]
fn now() -> Instant {
    Instant::now()
}

/// An API answer or an [`ApiError`] with its status code.
struct Answer(Response);

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        self.0
    }
}

fn error_response(e: &ApiError) -> Response {
    let status =
        StatusCode::from_u16(e.error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(e)).into_response()
}

/// A JSON body whose rejection is an [`ApiError`].
struct Body<T>(T);

impl<T: DeserializeOwned, St: Send + Sync> FromRequest<St> for Body<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &St) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(rejection) => {
                let rejection: JsonRejection = rejection;
                Err(error_response(&refuse(ErrorKind::BadRequest, rejection.body_text())))
            }
        }
    }
}

impl<S: Store> AppState<S> {
    /// The matchmaker's store.
    pub fn store(&self) -> &S {
        self.matchmaker.store()
    }

    /// Counts the request and checks `kind`'s limit for `ip`.
    fn admit(&self, ip: IpAddr, kinds: &[Kind]) -> Result<(), ApiError> {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        self.limit(ip, kinds)
    }

    /// Checks `kind`'s limit for `ip` (a request already counted).
    fn limit(&self, ip: IpAddr, kinds: &[Kind]) -> Result<(), ApiError> {
        let now = now();
        for &kind in kinds {
            if !self.limiter.allow(ip, kind, now) {
                self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
                return Err(refuse(ErrorKind::RateLimited, "too many requests; slow down"));
            }
        }
        Ok(())
    }

    fn answer<T: serde::Serialize>(&self, result: Result<T, ApiError>, ok: StatusCode) -> Answer {
        match result {
            Ok(v) if ok == StatusCode::NO_CONTENT => {
                drop(v);
                Answer(StatusCode::NO_CONTENT.into_response())
            }
            Ok(v) => Answer((ok, axum::Json(v)).into_response()),
            Err(e) => {
                if let Some(i) = KINDS.iter().position(|k| *k == e.error) {
                    self.counters.errors[i].fetch_add(1, Ordering::Relaxed);
                }
                Answer(error_response(&e))
            }
        }
    }

    async fn status(&self) -> Result<Status, ApiError> {
        let counts = self.matchmaker.store().counts(now_unix()).await?;
        let relay = self.relay.as_ref().map(|probe| probe()).unwrap_or_default();
        Ok(Status {
            matches: counts.matches,
            players: counts.players,
            relay_bindings: relay.bindings,
            relay_sessions: relay.sessions,
            relay_forwarded: relay.forwarded,
            relay_dropped: relay.dropped,
            requests: self.counters.requests.load(Ordering::Relaxed),
            uptime_seconds: self.started.elapsed().as_secs(),
            store: self.matchmaker.store().kind().to_owned(),
        })
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")
}

fn match_id(raw: &str) -> Result<MatchId, ApiError> {
    raw.parse().map_err(|_| refuse(ErrorKind::BadRequest, "a match id is 16 hex digits"))
}

/// The router of the whole HTTP face, over `matchmaker`.
pub fn router<S: Store>(
    matchmaker: Matchmaker<S>,
    limits: &Limits,
    relay: Option<RelayProbe>,
) -> (Router, Shared<S>) {
    let state = Arc::new(AppState {
        matchmaker,
        limiter: RateLimiter::new(limits),
        counters: Counters::default(),
        started: now(),
        relay,
    });
    let router = Router::new()
        .route("/", get(status_page))
        .route("/healthz", get(healthz::<S>))
        .route("/metrics", get(metrics::<S>))
        .route("/v1/status", get(status::<S>))
        .route("/v1/matches", post(create::<S>))
        .route("/v1/matches/list", post(list::<S>))
        .route("/v1/matches/{id}", get(get_match::<S>).patch(update::<S>).delete(destroy::<S>))
        .route("/v1/matches/{id}/join", post(join::<S>))
        .route("/v1/matches/{id}/leave", post(leave::<S>))
        .route("/v1/matches/{id}/heartbeat", post(heartbeat::<S>))
        .route("/v1/matches/{id}/code", post(new_code::<S>))
        .route("/v1/matches/{id}/players/{slot}", axum::routing::delete(drop_player::<S>))
        .route("/v1/codes/{code}/join", post(join_code::<S>))
        .route("/v1/quick-join", post(quick_join::<S>))
        .with_state(Arc::clone(&state));
    (router, state)
}

type Peer = ConnectInfo<SocketAddr>;

async fn create<S: Store>(
    State(s): State<Shared<S>>,
    ConnectInfo(peer): Peer,
    Body(request): Body<CreateMatch>,
) -> Answer {
    let result = match s.admit(peer.ip(), &[Kind::Request, Kind::Create]) {
        Ok(()) => s.matchmaker.create(&request, now_unix()).await,
        Err(e) => Err(e),
    };
    if result.is_ok() {
        s.counters.created.fetch_add(1, Ordering::Relaxed);
    }
    s.answer(result, StatusCode::CREATED)
}

async fn list<S: Store>(
    State(s): State<Shared<S>>,
    ConnectInfo(peer): Peer,
    Body(query): Body<ListQuery>,
) -> Answer {
    let result = match s.admit(peer.ip(), &[Kind::Request]) {
        Ok(()) => s.matchmaker.list(&query, now_unix()).await,
        Err(e) => Err(e),
    };
    s.answer(result, StatusCode::OK)
}

async fn get_match<S: Store>(
    State(s): State<Shared<S>>,
    ConnectInfo(peer): Peer,
    Path(id): Path<String>,
) -> Answer {
    let result = async {
        s.admit(peer.ip(), &[Kind::Request])?;
        s.matchmaker.get(match_id(&id)?, now_unix()).await
    }
    .await;
    s.answer(result, StatusCode::OK)
}

async fn join<S: Store>(
    State(s): State<Shared<S>>,
    ConnectInfo(peer): Peer,
    Path(id): Path<String>,
    Body(request): Body<JoinRequest>,
) -> Answer {
    let result = async {
        s.admit(peer.ip(), &[Kind::Request, Kind::Join])?;
        s.matchmaker.join(match_id(&id)?, &request, now_unix()).await
    }
    .await;
    if result.is_ok() {
        s.counters.joined.fetch_add(1, Ordering::Relaxed);
    }
    s.answer(result, StatusCode::OK)
}

async fn join_code<S: Store>(
    State(s): State<Shared<S>>,
    ConnectInfo(peer): Peer,
    Path(code): Path<String>,
    Body(request): Body<JoinRequest>,
) -> Answer {
    let result = async {
        s.admit(peer.ip(), &[Kind::Request, Kind::Code, Kind::Join])?;
        let code: JoinCode = code.parse().map_err(|e: sturnus_lobby::code::CodeError| {
            refuse(ErrorKind::BadRequest, e.to_string())
        })?;
        s.matchmaker.join_code(code, &request, now_unix()).await
    }
    .await;
    if result.is_ok() {
        s.counters.joined.fetch_add(1, Ordering::Relaxed);
    }
    s.answer(result, StatusCode::OK)
}

async fn quick_join<S: Store>(
    State(s): State<Shared<S>>,
    ConnectInfo(peer): Peer,
    Body(request): Body<QuickJoin>,
) -> Answer {
    let result = async {
        s.admit(peer.ip(), &[Kind::Request, Kind::Join])?;
        let now = now_unix();
        if let Some(joined) = s.matchmaker.quick_join_existing(&request, now).await? {
            s.counters.joined.fetch_add(1, Ordering::Relaxed);
            return Ok(QuickJoined::Joined(joined));
        }
        // Creating spends the creator's create limit, as `POST /v1/matches` does.
        s.limit(peer.ip(), &[Kind::Create])?;
        let created = s.matchmaker.create(&request.create, now).await?;
        s.counters.created.fetch_add(1, Ordering::Relaxed);
        Ok(QuickJoined::Created(created))
    }
    .await;
    s.answer(result, StatusCode::OK)
}

async fn leave<S: Store>(
    State(s): State<Shared<S>>,
    ConnectInfo(peer): Peer,
    Path(id): Path<String>,
    Body(request): Body<Leave>,
) -> Answer {
    let result = async {
        s.admit(peer.ip(), &[Kind::Request])?;
        let id = match_id(&id)?;
        s.matchmaker.leave(id, request.slot, &request.leave_token, now_unix()).await
    }
    .await;
    s.answer(result, StatusCode::NO_CONTENT)
}

async fn heartbeat<S: Store>(
    State(s): State<Shared<S>>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    let result = async {
        s.admit(peer.ip(), &[Kind::Request])?;
        s.matchmaker.heartbeat(match_id(&id)?, bearer(&headers), now_unix()).await
    }
    .await;
    s.answer(result, StatusCode::OK)
}

async fn update<S: Store>(
    State(s): State<Shared<S>>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
    Body(request): Body<UpdateMatch>,
) -> Answer {
    let result = async {
        s.admit(peer.ip(), &[Kind::Request])?;
        let id = match_id(&id)?;
        let token = bearer(&headers);
        s.matchmaker.update(id, token, request.listed, &request.attributes, now_unix()).await
    }
    .await;
    s.answer(result, StatusCode::OK)
}

async fn new_code<S: Store>(
    State(s): State<Shared<S>>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    let result = async {
        s.admit(peer.ip(), &[Kind::Request])?;
        let join_code = s.matchmaker.new_code(match_id(&id)?, bearer(&headers), now_unix()).await?;
        Ok(NewCode { join_code })
    }
    .await;
    s.answer(result, StatusCode::OK)
}

async fn drop_player<S: Store>(
    State(s): State<Shared<S>>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path((id, slot)): Path<(String, u16)>,
) -> Answer {
    let result = async {
        s.admit(peer.ip(), &[Kind::Request])?;
        s.matchmaker.drop_player(match_id(&id)?, bearer(&headers), slot, now_unix()).await
    }
    .await;
    s.answer(result, StatusCode::NO_CONTENT)
}

async fn destroy<S: Store>(
    State(s): State<Shared<S>>,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    let result = async {
        s.admit(peer.ip(), &[Kind::Request])?;
        s.matchmaker.destroy(match_id(&id)?, bearer(&headers), now_unix()).await
    }
    .await;
    s.answer(result, StatusCode::NO_CONTENT)
}

async fn status<S: Store>(State(s): State<Shared<S>>) -> Answer {
    let result = s.status().await;
    s.answer(result, StatusCode::OK)
}

/// 200 while the store answers, 503 when it does not.
async fn healthz<S: Store>(State(s): State<Shared<S>>) -> Response {
    let probe =
        tokio::time::timeout(Duration::from_secs(2), s.matchmaker.store().counts(now_unix())).await;
    match probe {
        Ok(Ok(_)) => (StatusCode::OK, "ok\n").into_response(),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}\n")).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "store: no answer in 2 s\n").into_response(),
    }
}

/// The Prometheus text exposition format (version 0.0.4).
async fn metrics<S: Store>(State(s): State<Shared<S>>) -> Response {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let c = &s.counters;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let counts = s.matchmaker.store().counts(now_unix()).await.unwrap_or_default();
    metric("sturnus_matches", "gauge", "Open matches.", &[("", counts.matches)]);
    metric("sturnus_players", "gauge", "Players in open matches.", &[("", counts.players)]);
    metric("sturnus_requests_total", "counter", "API requests.", &[("", load(&c.requests))]);
    metric(
        "sturnus_rate_limited_total",
        "counter",
        "Requests refused by per-address limits.",
        &[("", load(&c.rate_limited))],
    );
    metric(
        "sturnus_matches_created_total",
        "counter",
        "Matches created.",
        &[("", load(&c.created))],
    );
    metric("sturnus_joins_total", "counter", "Successful joins.", &[("", load(&c.joined))]);
    let labels: Vec<String> =
        KINDS.iter().map(|k| format!("{{kind=\"{}\"}}", kind_name(*k))).collect();
    let errors: Vec<(&str, u64)> =
        labels.iter().zip(&c.errors).map(|(l, a)| (l.as_str(), load(a))).collect();
    metric("sturnus_api_errors_total", "counter", "Error answers by kind.", &errors);
    if let Some(probe) = &s.relay {
        let r = probe();
        metric("sturnus_relay_bindings", "gauge", "Relay allocations bound.", &[("", r.bindings)]);
        metric(
            "sturnus_relay_sessions",
            "gauge",
            "Relayed sessions with a host.",
            &[("", r.sessions)],
        );
        metric(
            "sturnus_relay_forwarded_total",
            "counter",
            "Datagrams the relay forwarded.",
            &[("", r.forwarded)],
        );
        metric(
            "sturnus_relay_dropped_total",
            "counter",
            "Datagrams the relay dropped.",
            &[("", r.dropped)],
        );
    }
    metric(
        "sturnus_uptime_seconds",
        "gauge",
        "Seconds since the service started.",
        &[("", s.started.elapsed().as_secs())],
    );
    let mut response = out.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

async fn status_page() -> Html<&'static str> {
    Html(include_str!("status.html"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One IPv6 host owns a /64 (2⁶⁴ addresses): limits per /128 would let it guess join codes
    /// and create matches without bound. Addresses of one /64 share their buckets; an IPv4
    /// address reached through an IPv4-mapped IPv6 one shares the IPv4 address's.
    #[test]
    #[expect(clippy::disallowed_methods, reason = "a start instant; the test never waits")]
    fn an_ipv6_host_cannot_dodge_its_limits_by_changing_its_address() {
        let limits = Limits { code_lookups_per_minute: 1.0, ..Limits::default() };
        let limiter = RateLimiter::new(&limits);
        let now = Instant::now();
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        // The burst: two lookups.
        assert!(limiter.allow(a, Kind::Code, now));
        assert!(limiter.allow(a, Kind::Code, now));
        assert!(!limiter.allow(a, Kind::Code, now));
        let same_64: IpAddr = "2001:db8:1:2:ffff:1234:5678:9abc".parse().unwrap();
        assert!(!limiter.allow(same_64, Kind::Code, now), "another address of the same /64");
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(limiter.allow(other_64, Kind::Code, now), "another /64 is another host");
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(limiter.allow(v4, Kind::Code, now));
        assert!(limiter.allow(v4, Kind::Code, now));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert!(!limiter.allow(mapped, Kind::Code, now), "an IPv4-mapped address is the IPv4 one");
    }
}
