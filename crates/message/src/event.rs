//! Lifecycle events of servers and clients, and why connections end.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::PlayerId;

/// Why a player or client was disconnected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// This side closed the connection (the server dropped the player, or the client left).
    Closed,
    /// The other side closed the connection without giving a reason.
    ClosedByPeer,
    /// The transport ended the connection: a timeout, a refused or failed connection attempt.
    Transport(sturnus_transport::DisconnectReason),
    /// The server's authenticator turned the credentials down.
    AuthRejected(String),
    /// The server did not look at the credentials: too many authentication attempts came from
    /// the client's address (see [`AuthThrottle`](crate::AuthThrottle)). Connecting again
    /// after `retry_after` may succeed.
    AuthThrottled {
        /// How long the address stays over its budget, as the server saw it.
        retry_after: std::time::Duration,
    },
    /// The player did not authenticate within the server's `auth_timeout`.
    AuthTimeout,
    /// The player sent more bad messages than the server's `error_budget` allows.
    ErrorBudget,
    /// The server application sent the player away, with its reason.
    Kicked(String),
    /// The server stopped.
    ServerStopped,
    /// The player could not keep up: a reliable broadcast could not be queued for it (its
    /// transport send queue was full), so it would have missed what every other player got.
    Overloaded,
    /// The client did not send its password: the connection is plaintext and to another host
    /// (see [`NetworkClient::set_credentials`](crate::NetworkClient::set_credentials)).
    InsecureCredentials,
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectReason::Closed => f.write_str("closed"),
            DisconnectReason::ClosedByPeer => f.write_str("closed by the peer"),
            DisconnectReason::Transport(reason) => write!(f, "{reason}"),
            DisconnectReason::AuthRejected(why) => write!(f, "authentication rejected: {why}"),
            DisconnectReason::InsecureCredentials => f.write_str(
                "the password was not sent: the connection is neither encrypted nor local",
            ),
            DisconnectReason::AuthThrottled { retry_after } => write!(
                f,
                "authentication throttled: too many attempts from this address, retry after {} ms",
                retry_after.as_millis()
            ),
            DisconnectReason::AuthTimeout => f.write_str("authentication timed out"),
            DisconnectReason::ErrorBudget => f.write_str("too many bad messages"),
            DisconnectReason::Kicked(why) => write!(f, "kicked: {why}"),
            DisconnectReason::ServerStopped => f.write_str("the server stopped"),
            DisconnectReason::Overloaded => {
                f.write_str("could not keep up: a reliable message could not be queued")
            }
        }
    }
}

impl DisconnectReason {
    pub(crate) fn from_transport(reason: sturnus_transport::DisconnectReason) -> Self {
        match reason {
            sturnus_transport::DisconnectReason::ClosedByPeer => DisconnectReason::ClosedByPeer,
            other => DisconnectReason::Transport(other),
        }
    }
}

/// A reason the server gives a client it sends away (on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum GoodbyeReason {
    AuthTimeout,
    ErrorBudget,
    Kicked(String),
    ServerStopped,
    Overloaded,
}

impl From<GoodbyeReason> for DisconnectReason {
    fn from(reason: GoodbyeReason) -> Self {
        match reason {
            GoodbyeReason::AuthTimeout => DisconnectReason::AuthTimeout,
            GoodbyeReason::ErrorBudget => DisconnectReason::ErrorBudget,
            GoodbyeReason::Kicked(why) => DisconnectReason::Kicked(why),
            GoodbyeReason::ServerStopped => DisconnectReason::ServerStopped,
            GoodbyeReason::Overloaded => DisconnectReason::Overloaded,
        }
    }
}

/// Something that happened to a [`NetworkServer`](crate::NetworkServer).
///
/// For each player the order is `Connected`, then `Authenticated` (unless it never
/// authenticates), then `Disconnected`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// The server started; the address it listens on (`None` without a transport: a host with
    /// only local clients).
    Started(Option<SocketAddr>),
    /// A player connected (it is not yet authenticated).
    Connected(PlayerId),
    /// A player's credentials were accepted; from now on its messages reach handlers.
    Authenticated(PlayerId),
    /// A player left.
    Disconnected(PlayerId, DisconnectReason),
    /// The server stopped; every player was disconnected first.
    Stopped,
}

/// Something that happened to a [`NetworkClient`](crate::NetworkClient).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// Connected to the server; the credentials are on their way.
    Connected,
    /// The server accepted the credentials; messages may be sent.
    Authenticated,
    /// The connection ended (or never began).
    Disconnected(DisconnectReason),
}

type Callback<C, E> = Box<dyn FnMut(&mut C, &E) + Send>;

/// Lifecycle events on their way out: to each registered callback (given the context `C`), then
/// to the poll queue.
pub(crate) struct Events<C, E> {
    callbacks: Vec<Callback<C, E>>,
    polled: VecDeque<E>,
}

impl<C, E> Events<C, E> {
    pub(crate) fn new() -> Self {
        Self { callbacks: Vec::new(), polled: VecDeque::new() }
    }

    pub(crate) fn subscribe(&mut self, callback: impl FnMut(&mut C, &E) + Send + 'static) {
        self.callbacks.push(Box::new(callback));
    }

    pub(crate) fn poll(&mut self) -> Option<E> {
        self.polled.pop_front()
    }

    /// Forgets what was not polled: called at the start of each update.
    pub(crate) fn clear(&mut self) {
        self.polled.clear();
    }

    /// Hands each event of `pending(ctx)` to the layer above (`above`), then to the callbacks,
    /// in order (either may queue more), then to the poll queue.
    pub(crate) fn dispatch(
        &mut self,
        ctx: &mut C,
        pending: fn(&mut C) -> &mut VecDeque<E>,
        above: &mut dyn FnMut(&mut C, &E),
    ) {
        while let Some(event) = pending(ctx).pop_front() {
            above(ctx, &event);
            for callback in &mut self.callbacks {
                callback(ctx, &event);
            }
            self.polled.push_back(event);
        }
    }
}

impl<C, E> fmt::Debug for Events<C, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events")
            .field("callbacks", &self.callbacks.len())
            .field("polled", &self.polled.len())
            .finish()
    }
}
