//! # sturnus-message
//!
//! The message layer of Sturnus (Mirage's message layer, UNET's "send and receive network
//! messages" and "client hosted games"): servers, clients and players exchanging typed
//! messages, over any transport.
//!
//! ```text
//!  sturnus-object     networked objects (above this crate)
//!  sturnus-message    this crate: NetworkServer / NetworkClient / Player, typed messages,
//!                     raw channels, authenticators, host mode
//!  Transport trait    UDP Host, ThreadedHost, MemoryNetwork, your own (secure, relay, …)
//!  sturnus-socket     UDP, loopback, conditioned sockets
//! ```
//!
//! - A **message** is any `serde` type with `#[derive(Message)]`: it gets a stable two-byte id
//!   (a compile-time hash of its path) and a default channel; payloads are encoded with
//!   postcard.
//! - **Channels by id**: a [`ChannelLayout`] declares every channel (up to 255, any number of
//!   one kind); messages go on the first typed channel of their `qos` kind, on the one they
//!   name (`#[message(channel = N)]`), or on the one a send names (`send_on`). **Raw**
//!   channels carry game code's own bytes beside the typed messages, on the same connection.
//! - [`NetworkServer`] serves over a [`Transport`], gives each connection a [`PlayerId`],
//!   authenticates it with an [`Authenticator`], and calls the handler registered for each
//!   message type with a [`Player`] handle. Lifecycle events ([`ServerEvent`]) can be polled
//!   or observed with callbacks. [`NetworkClient`] connects, presents credentials, and calls
//!   its handlers.
//! - **Network time** ([`time`]): each remote client estimates the server's clock and tick
//!   ([`ClientContext::server_time`], [`ClientContext::server_tick`]) from small time requests
//!   on the control channel, to within a few milliseconds on a jittery network, never going
//!   backwards; the server's own are [`ServerContext::server_time`] and
//!   [`ServerContext::server_tick`] ([`ServerConfig::tick_rate`] ticks a second).
//! - **Host mode**: [`NetworkServer::connect_local`] returns a local client joined over an
//!   in-memory path that bypasses the transport, while remote clients keep connecting.
//! - Bad input (unknown ids, undecodable or oversized payloads, floods, messages before
//!   authentication) is dropped and counted per player ([`PlayerStats`]); past the error budget
//!   the player is disconnected. Nothing a client sends panics the server. Authentication
//!   attempts are throttled per source address across connections ([`AuthThrottle`]).
//!
//! # Sans-IO
//!
//! The server and client never read the clock, sleep or own a socket: `now` is an argument of
//! every call that acts on time, and the transport does the I/O. Call `update(now)` every
//! frame, drain events after it, and come back by `poll_timeout()`. Handlers and callbacks run
//! inside `update` on the caller's thread, so game state needs no locks. The [`driver`]
//! module is the one place that reads the real clock and sleeps. A layer above composes the
//! server or client through [`ServerDispatch`] / [`ClientDispatch`] (see there for why
//! handlers rather than a byte-queue poll API).
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use sturnus_message::{
//!     driver, ClientConfig, ClientEvent, Message, NetworkClient, NetworkServer, Player,
//!     ServerConfig,
//! };
//! use sturnus_transport::MemoryNetwork;
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize, Message)]
//! struct Ping(u32);
//! #[derive(Debug, PartialEq, Serialize, Deserialize, Message)]
//! struct Pong(u32);
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let network = MemoryNetwork::new(); // or a UDP Host, a ThreadedHost, …
//! let (server_config, client_config) = (ServerConfig::default(), ClientConfig::default());
//! let kinds = server_config.channels.kinds().to_vec();
//! let addr = "10.0.0.1:7777".parse()?;
//!
//! let mut server = NetworkServer::new(server_config)?;
//! server.register_handler(|mut player: Player<'_>, Ping(n)| {
//!     let _ = player.send(&Pong(n + 1));
//! })?;
//! let now = driver::now();
//! server.start(now, network.bind(addr, kinds.clone())?)?;
//!
//! let mut client = NetworkClient::new(client_config)?;
//! client.register_queue::<Pong>()?; // the poll style; a handler works too
//! client.connect(now, network.endpoint(kinds), addr)?;
//! let mut answers = Vec::new();
//!
//! for _ in 0..10 {
//!     server.update(now)?;
//!     client.update(now)?;
//!     while let Some(event) = client.poll_event() {
//!         if event == ClientEvent::Authenticated {
//!             client.send(&Ping(41))?;
//!         }
//!     }
//!     while let Some(pong) = client.poll_message::<Pong>() {
//!         answers.push(pong);
//!     }
//! }
//! assert_eq!(answers, [Pong(42)]);
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

// The derive names `::sturnus_message`; this lets the crate use it on its own types.
extern crate self as sturnus_message;

mod auth;
mod channels;
mod client;
mod codec;
mod config;
mod dispatch;
pub mod driver;
mod error;
mod event;
mod id;
mod local;
mod player;
mod server;
mod throttle;
pub mod time;

pub use auth::{
    Applicant, Authenticator, Login, NoopAuthenticator, PasswordAuthenticator, TokenAuthenticator,
};
pub use channels::ChannelLayout;
pub use client::{ClientContext, ClientState, ClientStats, NetworkClient};
pub use config::{AuthThrottle, ClientConfig, RateLimit, ServerConfig};
pub use dispatch::{ClientDispatch, Dispatched, ServerDispatch};
pub use error::MessageError;
pub use event::{ClientEvent, DisconnectReason, ServerEvent};
pub use id::{Message, MessageId, fnv1a};
pub use player::{Player, PlayerId, PlayerStats};
pub use server::{NetworkServer, ServerContext, ServerStats};
/// Derives [`Message`]; see the trait.
pub use sturnus_derive::Message;
pub use sturnus_transport::PeerIdentity;
pub use sturnus_transport::{ChannelId, Qos, Transport};

/// What the object layer shares with this crate. Not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::codec::{decode, put};
}
