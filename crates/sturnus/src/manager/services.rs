//! The `NetworkManager`'s way into `sturnusd`: host a match the matchmaker lists (directly or
//! through its relay), join one by code.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use sturnus_lobby::api::{CreateMatch, Created, JoinRequest, Joined, MatchInfo};
use sturnus_lobby::{JoinCode, LobbyClient, LobbyError};
use sturnus_netcode::server::ServerConfig as NetcodeServer;
use sturnus_netcode::transport::SecureHost;
use sturnus_netcode::{ConnectToken, Key};
use sturnus_relay::{Allocation, RelaySocketFactory};
use sturnus_transport::Transport;

use super::{
    ManagerError, NetcodeSettings, NetworkManager, Side, TransportChoice, TransportFactory,
};

/// A match this process hosts through the matchmaker. A background thread sends its
/// heartbeats; [`close`](Self::close) (or dropping it) destroys the match, so lists stop
/// showing it at once rather than when it expires.
#[derive(Debug)]
#[must_use = "dropping a HostedMatch destroys the match on the matchmaker: keep it while hosting"]
pub struct HostedMatch {
    created: Created,
    lobby: LobbyClient,
    stop: Option<mpsc::Sender<()>>,
    heartbeats: Option<JoinHandle<()>>,
}

impl HostedMatch {
    fn start(lobby: &LobbyClient, created: Created) -> Self {
        let (stop, stopped) = mpsc::channel::<()>();
        let every = Duration::from_secs(u64::from(created.heartbeat_seconds.max(1)));
        let (beat_lobby, beat_created) = (lobby.clone(), created.clone());
        let heartbeats = std::thread::Builder::new()
            .name("sturnus-heartbeat".into())
            .spawn(move || {
                // Until told to stop (or the sender is gone).
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    if let Err(e) = beat_lobby.heartbeat(&beat_created) {
                        tracing::warn!(error = %e, "match heartbeat failed");
                    }
                }
            })
            .ok();
        Self { created, lobby: lobby.clone(), stop: Some(stop), heartbeats }
    }

    /// The join code players join with.
    pub fn join_code(&self) -> JoinCode {
        self.created.join_code
    }

    /// The match as it was created.
    pub fn info(&self) -> &MatchInfo {
        &self.created.info
    }

    /// What the matchmaker answered (the host token is in it: keep it secret).
    pub fn created(&self) -> &Created {
        &self.created
    }

    /// Replaces the join code: the old one stops working (a code that leaked).
    pub fn new_code(&mut self) -> Result<JoinCode, LobbyError> {
        let code = self.lobby.new_code(&self.created)?;
        self.created.join_code = code;
        Ok(code)
    }

    fn stop_heartbeats(&mut self) {
        self.stop.take();
        if let Some(thread) = self.heartbeats.take() {
            let _ = thread.join();
        }
    }

    /// Destroys the match on the matchmaker.
    pub fn close(mut self) -> Result<(), LobbyError> {
        self.stop_heartbeats();
        let created = self.created.clone();
        // Drop does nothing more once the heartbeats are stopped and the match destroyed.
        self.created.host_token.clear();
        self.lobby.destroy(&created)
    }
}

impl Drop for HostedMatch {
    fn drop(&mut self) {
        self.stop_heartbeats();
        if !self.created.host_token.is_empty() {
            if let Err(e) = self.lobby.destroy(&self.created) {
                tracing::debug!(error = %e, "could not destroy the hosted match");
            }
        }
    }
}

fn allocation(bytes: &[u8]) -> Result<Allocation, ManagerError> {
    Allocation::from_bytes(bytes)
        .map_err(|_| ManagerError::Secure("the matchmaker's relay allocation does not read"))
}

/// A transport that reaches peers through the relay with `allocation`, secured by netcode:
/// the relay forwards datagrams it cannot read.
fn relayed(
    allocation: Allocation,
    server: Option<NetcodeServer>,
    token: Option<ConnectToken>,
) -> TransportChoice {
    let factory = RelaySocketFactory::new(allocation);
    TransportChoice::Custom(TransportFactory::new(move |side, addr, endpoint| {
        let host: Box<dyn Transport> = match (side, &server, &token) {
            (Side::Server, Some(server), _) => {
                Box::new(SecureHost::bind(endpoint, server, &factory, addr)?)
            }
            (Side::Client, _, Some(token)) => {
                Box::new(SecureHost::client(endpoint, token.clone(), &factory, addr)?)
            }
            _ => return Err(ManagerError::Secure("a relayed transport opened for the wrong side")),
        };
        Ok(host)
    }))
}

impl NetworkManager {
    /// Creates a match on the matchmaker and hosts it (host mode): players join it with its
    /// code ([`join_match`](Self::join_match)). A direct match (`HostMode::Direct`) listens at
    /// `bind` and tokens name the address the request gave; a relayed one
    /// (`HostMode::Relay`) reaches its players through the matchmaker's relay, and `bind` is
    /// not used. Either way every packet is encrypted under keys the relay never holds.
    pub fn host_match(
        &mut self,
        lobby: &LobbyClient,
        request: &CreateMatch,
        bind: SocketAddr,
    ) -> Result<HostedMatch, ManagerError> {
        self.check_offline()?;
        let created = lobby.create(request).map_err(ManagerError::Lobby)?;
        let key: Key = created
            .private_key
            .0
            .as_slice()
            .try_into()
            .map_err(|_| ManagerError::Secure("the matchmaker's key is not 32 bytes"))?;
        let hosted = HostedMatch::start(lobby, created);
        let created = &hosted.created;
        self.config.transport = match &created.relay {
            Some(bytes) => {
                let server = NetcodeServer::new(request.protocol_id, key, created.server_address);
                relayed(allocation(&bytes.0)?, Some(server), None)
            }
            None => {
                NetcodeSettings::public_server(request.protocol_id, key, created.server_address)
            }
        };
        let bind = if created.relay.is_some() { created.server_address } else { bind };
        self.start_host(bind)?;
        Ok(hosted)
    }

    /// Joins a match by its code and connects to its host, directly or through the relay.
    pub fn join_match(
        &mut self,
        lobby: &LobbyClient,
        code: JoinCode,
        request: &JoinRequest,
    ) -> Result<Joined, ManagerError> {
        self.check_offline()?;
        let joined = lobby.join_code(code, request).map_err(ManagerError::Lobby)?;
        self.connect_joined(&joined)?;
        Ok(joined)
    }

    /// Connects to the host of a match joined some other way (by id, or quick-join).
    pub fn connect_joined(&mut self, joined: &Joined) -> Result<(), ManagerError> {
        self.check_offline()?;
        let token = ConnectToken::read(&joined.connect_token.0)
            .map_err(|_| ManagerError::Secure("the matchmaker's connect token does not read"))?;
        let server = *token
            .server_addresses
            .first()
            .ok_or(ManagerError::Secure("the connect token lists no server"))?;
        self.config.transport = match &joined.relay {
            Some(bytes) => relayed(allocation(&bytes.0)?, None, Some(token)),
            None => NetcodeSettings::client(token),
        };
        self.start_client(server)
    }
}
