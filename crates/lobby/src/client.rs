//! The blocking client of the matchmaker API.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::{
    ApiError, CreateMatch, Created, ErrorKind, JoinRequest, Joined, Leave, ListQuery, MatchId,
    MatchInfo, MatchPage, NewCode, QuickJoin, QuickJoined, Status, UpdateMatch,
};
use crate::code::JoinCode;

/// What a matchmaker call can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LobbyError {
    /// The service answered with an error.
    #[error("the matchmaker refused: {} ({:?})", .0.message, .0.error)]
    Api(ApiError),
    /// The service could not be reached, or answered with something that is not the API.
    #[error("the matchmaker could not be reached: {0}")]
    Transport(String),
    /// The base URL is not one.
    #[error("not a matchmaker URL: {0}")]
    BadUrl(String),
}

impl LobbyError {
    /// The API error's kind, if the service answered with one.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            LobbyError::Api(e) => Some(e.error),
            _ => None,
        }
    }
}

/// A blocking client of `sturnusd`'s matchmaker (UNET's `NetworkMatch`), for game processes:
/// no async runtime, one HTTP/1.1 connection kept alive between calls.
#[derive(Debug, Clone)]
pub struct LobbyClient {
    base: String,
    agent: ureq::Agent,
}

enum Method {
    Get,
    Post,
    Patch,
    Delete,
}

impl LobbyClient {
    /// A client of the service at `base` (`http://host:port` or `https://…`), with a 10 s
    /// timeout per call.
    pub fn new(base: &str) -> Result<Self, LobbyError> {
        Self::with_timeout(base, Duration::from_secs(10))
    }

    /// [`new`](Self::new) with another timeout per call.
    pub fn with_timeout(base: &str, timeout: Duration) -> Result<Self, LobbyError> {
        let base = base.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(LobbyError::BadUrl(base.to_owned()));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build()
            .into();
        Ok(Self { base: base.to_owned(), agent })
    }

    /// The service's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        body: Option<&B>,
    ) -> Result<Option<T>, LobbyError> {
        let url = format!("{}{}", self.base, path);
        let bearer = auth.map(|token| format!("Bearer {token}"));
        let transport = |e: ureq::Error| LobbyError::Transport(e.to_string());
        let mut response = match method {
            Method::Get | Method::Delete => {
                let mut request = match method {
                    Method::Get => self.agent.get(&url),
                    _ => self.agent.delete(&url),
                };
                if let Some(bearer) = &bearer {
                    request = request.header("Authorization", bearer);
                }
                request.call().map_err(transport)?
            }
            Method::Post | Method::Patch => {
                let mut request = match method {
                    Method::Post => self.agent.post(&url),
                    _ => self.agent.patch(&url),
                };
                if let Some(bearer) = &bearer {
                    request = request.header("Authorization", bearer);
                }
                match body {
                    Some(body) => request.send_json(body).map_err(transport)?,
                    None => request.send_empty().map_err(transport)?,
                }
            }
        };
        let status = response.status().as_u16();
        if status == 204 {
            return Ok(None);
        }
        if !(200..300).contains(&status) {
            let error = response.body_mut().read_json::<ApiError>().map_err(|e| {
                LobbyError::Transport(format!("HTTP {status} without an API error: {e}"))
            })?;
            return Err(LobbyError::Api(error));
        }
        response.body_mut().read_json::<T>().map(Some).map_err(transport)
    }

    fn expect<T>(answer: Option<T>) -> Result<T, LobbyError> {
        answer.ok_or_else(|| LobbyError::Transport("an empty answer where one was due".into()))
    }

    /// Creates a match; the caller hosts it.
    pub fn create(&self, request: &CreateMatch) -> Result<Created, LobbyError> {
        Self::expect(self.call(Method::Post, "/v1/matches", None, Some(request))?)
    }

    /// Lists listed matches that pass `query`.
    pub fn list(&self, query: &ListQuery) -> Result<MatchPage, LobbyError> {
        Self::expect(self.call(Method::Post, "/v1/matches/list", None, Some(query))?)
    }

    /// One match.
    pub fn get(&self, id: MatchId) -> Result<MatchInfo, LobbyError> {
        Self::expect(self.call::<(), _>(Method::Get, &format!("/v1/matches/{id}"), None, None)?)
    }

    /// Joins a match by id.
    pub fn join(&self, id: MatchId, request: &JoinRequest) -> Result<Joined, LobbyError> {
        Self::expect(self.call(
            Method::Post,
            &format!("/v1/matches/{id}/join"),
            None,
            Some(request),
        )?)
    }

    /// Joins a match by its join code.
    pub fn join_code(&self, code: JoinCode, request: &JoinRequest) -> Result<Joined, LobbyError> {
        let path = format!("/v1/codes/{}/join", code.compact());
        Self::expect(self.call(Method::Post, &path, None, Some(request))?)
    }

    /// Joins the first match that passes the query, or creates one.
    pub fn quick_join(&self, request: &QuickJoin) -> Result<QuickJoined, LobbyError> {
        Self::expect(self.call(Method::Post, "/v1/quick-join", None, Some(request))?)
    }

    /// Leaves a joined match.
    pub fn leave(&self, joined: &Joined) -> Result<(), LobbyError> {
        let body = Leave { slot: joined.slot, leave_token: joined.leave_token.clone() };
        let path = format!("/v1/matches/{}/leave", joined.info.id);
        self.call::<_, serde_json::Value>(Method::Post, &path, None, Some(&body)).map(drop)
    }

    /// Keeps a hosted match alive (send one every [`Created::heartbeat_seconds`]).
    pub fn heartbeat(&self, created: &Created) -> Result<MatchInfo, LobbyError> {
        let path = format!("/v1/matches/{}/heartbeat", created.info.id);
        Self::expect(self.call::<(), _>(Method::Post, &path, Some(&created.host_token), None)?)
    }

    /// Sets a hosted match's attributes or listing.
    pub fn update(&self, created: &Created, update: &UpdateMatch) -> Result<MatchInfo, LobbyError> {
        let path = format!("/v1/matches/{}", created.info.id);
        Self::expect(self.call(Method::Patch, &path, Some(&created.host_token), Some(update))?)
    }

    /// Replaces a hosted match's join code; the old one stops working.
    pub fn new_code(&self, created: &Created) -> Result<JoinCode, LobbyError> {
        let path = format!("/v1/matches/{}/code", created.info.id);
        let answer: NewCode = Self::expect(self.call::<(), _>(
            Method::Post,
            &path,
            Some(&created.host_token),
            None,
        )?)?;
        Ok(answer.join_code)
    }

    /// Drops a player from a hosted match, freeing its slot.
    pub fn drop_player(&self, created: &Created, slot: u16) -> Result<(), LobbyError> {
        let path = format!("/v1/matches/{}/players/{slot}", created.info.id);
        self.call::<(), serde_json::Value>(Method::Delete, &path, Some(&created.host_token), None)
            .map(drop)
    }

    /// Destroys a hosted match.
    pub fn destroy(&self, created: &Created) -> Result<(), LobbyError> {
        let path = format!("/v1/matches/{}", created.info.id);
        self.call::<(), serde_json::Value>(Method::Delete, &path, Some(&created.host_token), None)
            .map(drop)
    }

    /// The service's load.
    pub fn status(&self) -> Result<Status, LobbyError> {
        Self::expect(self.call::<(), _>(Method::Get, "/v1/status", None, None)?)
    }
}
