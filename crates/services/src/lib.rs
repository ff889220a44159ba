//! `sturnusd`, Sturnus's self-hosted services: a matchmaker (UNET's `NetworkMatch` and more)
//! and a relay, on one machine with an embedded store or scaled out on Redis.
//!
//! The game side talks to it with [`sturnus_lobby::LobbyClient`]; this crate is the service:
//! [`store`] (where matches live), [`matchmaker`] (the rules), [`http`] (the API, health,
//! metrics and status page) and [`relay`] (allocations for relayed matches).

pub mod config;
pub mod http;
pub mod matchmaker;
pub mod relay;
pub mod server;
pub mod store;
