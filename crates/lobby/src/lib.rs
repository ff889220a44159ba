//! The matchmaker side of Sturnus's services, for game processes: the wire types of
//! `sturnusd`'s HTTP/JSON API ([`api`]), join codes ([`JoinCode`]) and a blocking client
//! ([`LobbyClient`]) with no async runtime.
//!
//! ```no_run
//! use sturnus_lobby::{LobbyClient, api::{CreateMatch, HostMode, JoinRequest}};
//!
//! let lobby = LobbyClient::new("http://127.0.0.1:7780")?;
//! let created = lobby.create(&CreateMatch {
//!     name: "Friday night".into(),
//!     size: 8,
//!     listed: true,
//!     password: None,
//!     attributes: Default::default(),
//!     region: None,
//!     protocol_id: 0x5354_5552,
//!     host: HostMode::Relay,
//! })?;
//! println!("join with {}", created.join_code);
//! let joined = lobby.join_code(created.join_code, &JoinRequest::default())?;
//! assert_eq!(joined.slot, 1);
//! # Ok::<(), sturnus_lobby::LobbyError>(())
//! ```

pub mod api;
mod client;
pub mod code;

pub use client::{LobbyClient, LobbyError};
pub use code::JoinCode;
