//! # sturnus-message
//!
//! The message layer of Sturnus (Mirage's message layer, UNET's "send and receive network
//! messages" and "client hosted games"): servers, clients and players exchanging typed
//! messages.
//!
//! ```text
//!  sturnus-object     networked objects (above this crate)
//!  sturnus-message    this crate: NetworkServer / NetworkClient / Player, typed messages,
//!                     authenticators, host mode
//!  sturnus-transport  connections and quality-of-service channels
//!  sturnus-socket     UDP, loopback, conditioned sockets
//! ```
//!
//! - A **message** is any `serde` type with `#[derive(Message)]`: it gets a stable two-byte id
//!   (a compile-time hash of its path) and a default quality of service; payloads are encoded
//!   with postcard.
//! - [`NetworkServer`] listens on UDP (or any [`sturnus_socket::SocketFactory`]), gives each
//!   connection a [`PlayerId`], authenticates it with an [`Authenticator`], and calls the
//!   handler registered for each message type with a [`Player`] handle. Lifecycle events
//!   ([`ServerEvent`]) can be polled or observed with callbacks.
//! - [`NetworkClient`] connects, presents credentials, and calls its handlers.
//! - **Host mode**: [`NetworkServer::start_host`] returns a local client joined over an
//!   in-memory path that bypasses the transport, while remote clients keep connecting.
//! - Bad input (unknown ids, undecodable or oversized payloads, floods, messages before
//!   authentication) is dropped and counted per player ([`PlayerStats`]); past the error budget
//!   the player is disconnected. Nothing a client sends panics the server.
//! - Authentication attempts are throttled per source address across connections
//!   ([`AuthThrottle`]): a password guesser that reconnects for every guess is slowed to the
//!   configured rate, refused attempts are counted in [`ServerStats`].
//!
//! Everything runs on the thread that calls `update`; no thread is started.
//!
//! ```
//! use std::time::Duration;
//! use serde::{Deserialize, Serialize};
//! use sturnus_message::{
//!     ClientConfig, ClientEvent, Message, NetworkClient, NetworkServer, Player, ServerConfig,
//! };
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize, Message)]
//! struct Ping(u32);
//! #[derive(Debug, PartialEq, Serialize, Deserialize, Message)]
//! struct Pong(u32);
//!
//! # fn main() -> Result<(), sturnus_message::MessageError> {
//! let mut server = NetworkServer::new(ServerConfig::default())?;
//! server.register_handler(|mut player: Player<'_>, Ping(n)| {
//!     let _ = player.send(&Pong(n + 1));
//! })?;
//! let addr = server.start("127.0.0.1:0".parse().unwrap())?;
//!
//! let mut client = NetworkClient::new(ClientConfig::default())?;
//! let answer = std::sync::Arc::new(std::sync::Mutex::new(None));
//! let seen = answer.clone();
//! client.register_handler(move |_client, pong: Pong| *seen.lock().unwrap() = Some(pong))?;
//! client.connect(addr)?;
//!
//! for _ in 0..2000 {
//!     server.update()?;
//!     client.update()?;
//!     while let Some(event) = client.poll_event() {
//!         if event == ClientEvent::Authenticated {
//!             client.send(&Ping(41))?;
//!         }
//!     }
//!     if answer.lock().unwrap().is_some() {
//!         break;
//!     }
//!     server.wait(Duration::from_millis(1))?;
//! }
//! assert_eq!(*answer.lock().unwrap(), Some(Pong(42)));
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

// The derive names `::sturnus_message`; this lets the crate use it on its own types.
extern crate self as sturnus_message;

mod auth;
mod client;
mod codec;
mod config;
mod error;
mod event;
mod id;
mod local;
mod player;
mod server;
mod throttle;

pub use auth::{Applicant, Authenticator, Login, NoopAuthenticator, PasswordAuthenticator};
pub use client::{ClientContext, ClientState, ClientStats, NetworkClient};
pub use config::{AuthThrottle, ClientConfig, RateLimit, ServerConfig, default_transport};
pub use error::MessageError;
pub use event::{ClientEvent, DisconnectReason, ServerEvent};
pub use id::{Message, MessageId, fnv1a};
pub use player::{Player, PlayerId, PlayerStats};
pub use server::{NetworkServer, ServerContext, ServerStats};
/// Derives [`Message`]; see the trait.
pub use sturnus_derive::Message;
pub use sturnus_transport::Qos;

/// The clock: the message layer is a driver, like the transport's `Host`.
#[expect(
    clippy::disallowed_methods,
    reason = "the message layer drives the transport in real time"
)]
pub(crate) fn now() -> std::time::Instant {
    std::time::Instant::now()
}

/// A socket the layer can hold behind one type, whatever its factory made.
pub(crate) trait AnySocket: sturnus_socket::Socket + std::fmt::Debug {}
impl<S: sturnus_socket::Socket + std::fmt::Debug> AnySocket for S {}
pub(crate) type BoxedSocket = Box<dyn AnySocket>;
